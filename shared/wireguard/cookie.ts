/**
 * Handshake MACs and cookies (WireGuard paper, section 5.4.4 and 5.4.7).
 *
 * MAC1 = MAC(HASH("mac1----" || receiver's public key), message up to mac1) is always checked:
 * only someone who knows our public key gets a handshake processed. Under load a responder
 * also demands MAC2 = MAC(cookie, message up to mac2), where the cookie is
 * MAC(secret rotated every COOKIE_REFRESH_TIME, sender's address); a sender without a valid one
 * gets a cookie reply instead, the cookie sealed with XChaCha20-Poly1305 under
 * HASH("cookie--" || responder's public key), bound to the MAC1 it answers.
 */
import type { Clock } from "./clock.ts";
import {
  COOKIE_REFRESH_TIME,
  COOKIE_REPLY_COOKIE,
  COOKIE_REPLY_NONCE,
  COOKIE_REPLY_RECEIVER,
  MESSAGE_COOKIE_REPLY_SIZE,
  MessageType,
  mac1Offset,
  mac2Offset,
} from "./constants.ts";
import type { CryptoProvider } from "./crypto.ts";
import { constantTimeEqual, LABEL_COOKIE, LABEL_MAC1, writeUint32LE } from "./noise-helpers.ts";

const MAC_SIZE = 16;
const NONCE_SIZE = 24;

/** The responder's side: checks MACs and issues cookie replies. */
export class CookieChecker {
  readonly #crypto: CryptoProvider;
  readonly #clock: Clock;
  #mac1Key: Uint8Array | null = null;
  #cookieKey: Uint8Array | null = null;
  #secret: Uint8Array;
  #secretSet = Number.NEGATIVE_INFINITY;

  constructor(crypto: CryptoProvider, clock: Clock) {
    this.#crypto = crypto;
    this.#clock = clock;
    this.#secret = new Uint8Array(32);
  }

  /** Keys both MACs to our public key (null while the device has no private key). */
  init(publicKey: Uint8Array | null): void {
    this.#mac1Key = publicKey === null ? null : this.#crypto.hash(LABEL_MAC1, publicKey);
    this.#cookieKey = publicKey === null ? null : this.#crypto.hash(LABEL_COOKIE, publicKey);
  }

  checkMac1(message: Uint8Array): boolean {
    if (this.#mac1Key === null) return false;
    const offset = mac1Offset(message.length);
    const mac = this.#crypto.mac(this.#mac1Key, message.subarray(0, offset));
    return constantTimeEqual(mac, message.subarray(offset, offset + MAC_SIZE));
  }

  /** Whether MAC2 is valid for a cookie issued to `source` within COOKIE_REFRESH_TIME. */
  checkMac2(message: Uint8Array, source: Uint8Array): boolean {
    if (this.#clock.now() - this.#secretSet > COOKIE_REFRESH_TIME) return false;
    const cookie = this.#crypto.mac(this.#secret, source);
    const offset = mac2Offset(message.length);
    const mac = this.#crypto.mac(cookie, message.subarray(0, offset));
    return constantTimeEqual(mac, message.subarray(offset, offset + MAC_SIZE));
  }

  /** A cookie reply to handshake `message` (whose sender index is `receiver`) from `source`. */
  createReply(message: Uint8Array, receiver: number, source: Uint8Array): Uint8Array | null {
    if (this.#cookieKey === null) return null;
    const now = this.#clock.now();
    if (now - this.#secretSet > COOKIE_REFRESH_TIME) {
      this.#secret = this.#crypto.randomBytes(32);
      this.#secretSet = now;
    }
    const cookie = this.#crypto.mac(this.#secret, source);
    const nonce = this.#crypto.randomBytes(NONCE_SIZE);
    const mac1 = mac1Offset(message.length);
    const sealed = this.#crypto.xaeadSeal(
      this.#cookieKey,
      nonce,
      cookie,
      message.subarray(mac1, mac1 + MAC_SIZE),
    );
    const reply = new Uint8Array(MESSAGE_COOKIE_REPLY_SIZE);
    reply[0] = MessageType.CookieReply;
    writeUint32LE(reply, COOKIE_REPLY_RECEIVER, receiver);
    reply.set(nonce, COOKIE_REPLY_NONCE);
    reply.set(sealed, COOKIE_REPLY_COOKIE);
    return reply;
  }
}

/** The initiator's side, one per peer: adds MACs and keeps the cookie the peer gave us. */
export class CookieGenerator {
  readonly #crypto: CryptoProvider;
  readonly #clock: Clock;
  readonly #mac1Key: Uint8Array;
  readonly #cookieKey: Uint8Array;
  #cookie: Uint8Array | null = null;
  #cookieSet = Number.NEGATIVE_INFINITY;
  #lastMac1: Uint8Array | null = null;

  constructor(crypto: CryptoProvider, clock: Clock, peerPublicKey: Uint8Array) {
    this.#crypto = crypto;
    this.#clock = clock;
    this.#mac1Key = crypto.hash(LABEL_MAC1, peerPublicKey);
    this.#cookieKey = crypto.hash(LABEL_COOKIE, peerPublicKey);
  }

  /** Accepts a cookie reply to the last message we MACed; false if it does not decrypt. */
  consumeReply(reply: Uint8Array): boolean {
    if (this.#lastMac1 === null || reply.length !== MESSAGE_COOKIE_REPLY_SIZE) return false;
    const cookie = this.#crypto.xaeadOpen(
      this.#cookieKey,
      reply.subarray(COOKIE_REPLY_NONCE, COOKIE_REPLY_COOKIE),
      reply.subarray(COOKIE_REPLY_COOKIE),
      this.#lastMac1,
    );
    if (cookie === null) return false;
    this.#cookie = cookie;
    this.#cookieSet = this.#clock.now();
    this.#lastMac1 = null;
    return true;
  }

  /** Fills in MAC1, and MAC2 while we hold a fresh cookie, of an outgoing handshake message. */
  addMacs(message: Uint8Array): void {
    const mac1 = mac1Offset(message.length);
    const mac2 = mac2Offset(message.length);
    const mac = this.#crypto.mac(this.#mac1Key, message.subarray(0, mac1));
    message.set(mac, mac1);
    this.#lastMac1 = mac;
    if (this.#cookie !== null && this.#clock.now() - this.#cookieSet <= COOKIE_REFRESH_TIME) {
      message.set(this.#crypto.mac(this.#cookie, message.subarray(0, mac2)), mac2);
    } else {
      message.fill(0, mac2, mac2 + MAC_SIZE);
    }
  }
}
