/**
 * WireGuard constants: the specification's (named as in the WireGuard paper, section 6) and
 * this implementation's, plus the four message layouts.
 *
 * Times are milliseconds. Message counters are JavaScript numbers (see keypair.ts for why
 * that is exact for every counter a device can reach).
 */

// Specification constants (WireGuard paper, section 6.1).
export const RekeyAfterMessages = 2 ** 60;
/** 2^64 - 2^13 - 1: not representable as a number; see `CounterLimit`. */
export const RejectAfterMessages = 2n ** 64n - 2n ** 13n - 1n;
export const RekeyAfterTime = 120_000;
export const RejectAfterTime = 180_000;
export const RekeyAttemptTime = 90_000;
export const RekeyTimeout = 5_000;
export const KeepaliveTimeout = 10_000;
export const CookieRefreshTime = 120_000;
export const HandshakeInitationRate = 50;

// Implementation constants.
/**
 * Counters are numbers, exact up to 2^53. At ten million packets per second a keypair would
 * need 28 years to get there, and every keypair is retired after RejectAfterTime, so 2^53
 * stands in for RejectAfterMessages: it is smaller, hence never more permissive.
 */
export const CounterLimit = 2 ** 53;
/** Upper bound of the random jitter added to RekeyTimeout, as wireguard-go does. */
export const RekeyTimeoutJitterMax = 334;
/** Handshake retransmissions before giving up: RekeyAttemptTime / RekeyTimeout. */
export const MaxTimerHandshakes = RekeyAttemptTime / RekeyTimeout;
/** Once under load, stay there this long (cookies stay required). */
export const UnderLoadAfterTime = 1_000;
/** Handshake messages per second above which the device is "under load" by default. */
export const UnderLoadHandshakesPerSecond = 128;
/** Packets queued per peer while a handshake is pending; the oldest is dropped beyond it. */
export const MaxStagedPackets = 128;
/** Largest datagram: an IP packet of 65535 bytes plus the transport overhead fits. */
export const MaxMessageSize = 65535;
export const PaddingMultiple = 16;

// Message layouts. All integers little-endian; byte 0 is the type, bytes 1-3 are reserved zero.

export const MessageInitiationType = 1;
export const MessageResponseType = 2;
export const MessageCookieReplyType = 3;
export const MessageTransportType = 4;

/**
 * Initiation, 148 bytes: type(1) reserved(3) sender(4) ephemeral(32)
 * static(32 + 16 tag) timestamp(12 + 16 tag) mac1(16) mac2(16).
 */
export const MessageInitiationSize = 148;
export const InitiationSender = 4;
export const InitiationEphemeral = 8;
export const InitiationStatic = 40;
export const InitiationTimestamp = 88;
export const InitiationMac1 = 116;
export const InitiationMac2 = 132;

/**
 * Response, 92 bytes: type(1) reserved(3) sender(4) receiver(4) ephemeral(32)
 * empty(0 + 16 tag) mac1(16) mac2(16).
 */
export const MessageResponseSize = 92;
export const ResponseSender = 4;
export const ResponseReceiver = 8;
export const ResponseEphemeral = 12;
export const ResponseEmpty = 44;
export const ResponseMac1 = 60;
export const ResponseMac2 = 76;

/** Cookie reply, 64 bytes: type(1) reserved(3) receiver(4) nonce(24) cookie(16 + 16 tag). */
export const MessageCookieReplySize = 64;
export const CookieReplyReceiver = 4;
export const CookieReplyNonce = 8;
export const CookieReplyCookie = 32;

/**
 * Transport, 32 bytes or more: type(1) reserved(3) receiver(4) counter(8)
 * packet(padded plaintext + 16 tag). An empty plaintext is a keepalive.
 */
export const MessageTransportHeaderSize = 16;
export const MessageTransportSize = 32;
export const TransportReceiver = 4;
export const TransportCounter = 8;
export const TransportContent = 16;

/** Bytes of a handshake message covered by MAC1 and by MAC2, for messages of `size` bytes. */
export const mac1Offset = (size: number): number => size - 32;
export const mac2Offset = (size: number): number => size - 16;

/**
 * Whether a datagram has the shape of a WireGuard message: a known type, zero reserved bytes
 * and that type's length (exact for handshake messages; for transport at least the header and
 * tag, at most MaxMessageSize). It proves nothing about authenticity; it lets a relay drop junk
 * before forwarding it.
 */
export function isWellFormedMessage(datagram: Uint8Array): boolean {
  const length = datagram.length;
  if (length < 4 || datagram[1] !== 0 || datagram[2] !== 0 || datagram[3] !== 0) return false;
  switch (datagram[0]) {
    case MessageInitiationType:
      return length === MessageInitiationSize;
    case MessageResponseType:
      return length === MessageResponseSize;
    case MessageCookieReplyType:
      return length === MessageCookieReplySize;
    case MessageTransportType:
      return length >= MessageTransportSize && length <= MaxMessageSize;
    default:
      return false;
  }
}
