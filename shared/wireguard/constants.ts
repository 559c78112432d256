/**
 * WireGuard constants: the specification's (named as in the WireGuard paper, section 6) and
 * this implementation's, plus the four message layouts.
 *
 * Times are milliseconds. Message counters are JavaScript numbers (see keypair.ts for why
 * that is exact for every counter a device can reach).
 */

// Specification constants (WireGuard paper, section 6.1).
export const REKEY_AFTER_MESSAGES = 2 ** 60;
/** 2^64 - 2^13 - 1: not representable as a number; see `COUNTER_LIMIT`. */
export const REJECT_AFTER_MESSAGES = 2n ** 64n - 2n ** 13n - 1n;
export const REKEY_AFTER_TIME = 120_000;
export const REJECT_AFTER_TIME = 180_000;
export const REKEY_ATTEMPT_TIME = 90_000;
export const REKEY_TIMEOUT = 5_000;
export const KEEPALIVE_TIMEOUT = 10_000;
export const COOKIE_REFRESH_TIME = 120_000;
export const HANDSHAKE_INITIATION_RATE = 50;

// Implementation constants.
/**
 * Counters are numbers, exact up to 2^53. At ten million packets per second a keypair would
 * need 28 years to get there, and every keypair is retired after REJECT_AFTER_TIME, so 2^53
 * stands in for REJECT_AFTER_MESSAGES: it is smaller, hence never more permissive.
 */
export const COUNTER_LIMIT = 2 ** 53;
/** Upper bound of the random jitter added to REKEY_TIMEOUT, as wireguard-go does. */
export const REKEY_TIMEOUT_JITTER_MAX = 334;
/** Handshake retransmissions before giving up: REKEY_ATTEMPT_TIME / REKEY_TIMEOUT. */
export const MAX_TIMER_HANDSHAKES = REKEY_ATTEMPT_TIME / REKEY_TIMEOUT;
/** Once under load, stay there this long (cookies stay required). */
export const UNDER_LOAD_AFTER_TIME = 1_000;
/** Handshake messages per second above which the device is "under load" by default. */
export const UNDER_LOAD_HANDSHAKES_PER_SECOND = 128;
/** Packets queued per peer while a handshake is pending; the oldest is dropped beyond it. */
export const MAX_STAGED_PACKETS = 128;
/** Largest datagram: an IP packet of 65535 bytes plus the transport overhead fits. */
export const MAX_MESSAGE_SIZE = 65535;
export const PADDING_MULTIPLE = 16;

// Message layouts. All integers little-endian; byte 0 is the type, bytes 1-3 are reserved zero.

/** Byte 0 of every message. */
export const MessageType = {
  Initiation: 1,
  Response: 2,
  CookieReply: 3,
  Transport: 4,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

/**
 * Initiation, 148 bytes: type(1) reserved(3) sender(4) ephemeral(32)
 * static(32 + 16 tag) timestamp(12 + 16 tag) mac1(16) mac2(16).
 */
export const MESSAGE_INITIATION_SIZE = 148;
export const INITIATION_SENDER = 4;
export const INITIATION_EPHEMERAL = 8;
export const INITIATION_STATIC = 40;
export const INITIATION_TIMESTAMP = 88;
export const INITIATION_MAC1 = 116;
export const INITIATION_MAC2 = 132;

/**
 * Response, 92 bytes: type(1) reserved(3) sender(4) receiver(4) ephemeral(32)
 * empty(0 + 16 tag) mac1(16) mac2(16).
 */
export const MESSAGE_RESPONSE_SIZE = 92;
export const RESPONSE_SENDER = 4;
export const RESPONSE_RECEIVER = 8;
export const RESPONSE_EPHEMERAL = 12;
export const RESPONSE_EMPTY = 44;
export const RESPONSE_MAC1 = 60;
export const RESPONSE_MAC2 = 76;

/** Cookie reply, 64 bytes: type(1) reserved(3) receiver(4) nonce(24) cookie(16 + 16 tag). */
export const MESSAGE_COOKIE_REPLY_SIZE = 64;
export const COOKIE_REPLY_RECEIVER = 4;
export const COOKIE_REPLY_NONCE = 8;
export const COOKIE_REPLY_COOKIE = 32;

/**
 * Transport, 32 bytes or more: type(1) reserved(3) receiver(4) counter(8)
 * packet(padded plaintext + 16 tag). An empty plaintext is a keepalive.
 */
export const MESSAGE_TRANSPORT_HEADER_SIZE = 16;
export const MESSAGE_TRANSPORT_SIZE = 32;
export const TRANSPORT_RECEIVER = 4;
export const TRANSPORT_COUNTER = 8;
export const TRANSPORT_CONTENT = 16;

/** Bytes of a handshake message covered by MAC1 and by MAC2, for messages of `size` bytes. */
export const mac1Offset = (size: number): number => size - 32;
export const mac2Offset = (size: number): number => size - 16;

/**
 * Whether a datagram has the shape of a WireGuard message: a known type, zero reserved bytes
 * and that type's length (exact for handshake messages; for transport at least the header and
 * tag, at most MAX_MESSAGE_SIZE). It proves nothing about authenticity; it lets a relay drop junk
 * before forwarding it.
 */
export function isWellFormedMessage(datagram: Uint8Array): boolean {
  const length = datagram.length;
  if (length < 4 || datagram[1] !== 0 || datagram[2] !== 0 || datagram[3] !== 0) return false;
  switch (datagram[0]) {
    case MessageType.Initiation:
      return length === MESSAGE_INITIATION_SIZE;
    case MessageType.Response:
      return length === MESSAGE_RESPONSE_SIZE;
    case MessageType.CookieReply:
      return length === MESSAGE_COOKIE_REPLY_SIZE;
    case MessageType.Transport:
      return length >= MESSAGE_TRANSPORT_SIZE && length <= MAX_MESSAGE_SIZE;
    default:
      return false;
  }
}
