/**
 * Why a device discarded packets and messages: one counter per reason, so that `drops` tells
 * an operator which side of the tunnel loses traffic and why (no route, no endpoint, bad MAC,
 * replay, ...). The device never answers a dropped message; the count is all that is left of it.
 */

/** Packets and messages the device dropped, by reason. */
export interface DropCounters {
  /** Outgoing packet whose destination no peer's allowed IPs cover. */
  noRoute: number;
  /** Outgoing packet that is not IPv4 or IPv6, or is truncated. */
  invalidOutbound: number;
  /** Peer without an endpoint: nowhere to send. */
  noEndpoint: number;
  /** Oldest queued packet pushed out while waiting for a handshake. */
  stagedOverflow: number;
  /** Staged packets discarded when handshake attempts ran out. */
  handshakeGaveUp: number;
  /** Datagram that is not a well-formed WireGuard message. */
  malformed: number;
  invalidMac1: number;
  /** Handshake under load without a valid MAC2: answered with a cookie reply instead. */
  cookieRequired: number;
  rateLimited: number;
  /** Initiation or response that failed authentication, replay or state checks. */
  handshakeRejected: number;
  invalidCookieReply: number;
  /** Transport message for an index we do not have. */
  unknownIndex: number;
  /** Transport message under a keypair past REJECT_AFTER_TIME or its message limit. */
  keypairExpired: number;
  decryptFailed: number;
  replayed: number;
  /** Decrypted packet that is not a complete IPv4 or IPv6 packet. */
  invalidInner: number;
  /** Decrypted packet whose source address is not among its peer's allowed IPs. */
  disallowedSource: number;
}

export function createDropCounters(): DropCounters {
  return {
    noRoute: 0,
    invalidOutbound: 0,
    noEndpoint: 0,
    stagedOverflow: 0,
    handshakeGaveUp: 0,
    malformed: 0,
    invalidMac1: 0,
    cookieRequired: 0,
    rateLimited: 0,
    handshakeRejected: 0,
    invalidCookieReply: 0,
    unknownIndex: 0,
    keypairExpired: 0,
    decryptFailed: 0,
    replayed: 0,
    invalidInner: 0,
    disallowedSource: 0,
  };
}
