/**
 * Handshake MACs and cookies (WireGuard paper, section 5.4.4 and 5.4.7).
 *
 * MAC1 = MAC(HASH("mac1----" || receiver's public key), message up to mac1) is always checked:
 * only someone who knows our public key gets a handshake processed. Under load a responder
 * also demands MAC2 = MAC(cookie, message up to mac2), where the cookie is
 * MAC(secret rotated every CookieRefreshTime, sender's address); a sender without a valid one
 * gets a cookie reply instead, the cookie sealed with XChaCha20-Poly1305 under
 * HASH("cookie--" || responder's public key), bound to the MAC1 it answers.
 */
import type { Clock } from "./clock.ts";
import {
  CookieRefreshTime,
  CookieReplyCookie,
  CookieReplyNonce,
  CookieReplyReceiver,
  MessageCookieReplySize,
  MessageCookieReplyType,
  mac1Offset,
  mac2Offset,
} from "./constants.ts";
import type { CryptoProvider } from "./crypto.ts";
import { constantTimeEqual, LabelCookie, LabelMac1, writeUint32LE } from "./noise-helpers.ts";

const MacSize = 16;
const NonceSize = 24;

/** The responder's side: checks MACs and issues cookie replies. */
export class CookieChecker {
  private readonly crypto: CryptoProvider;
  private readonly clock: Clock;
  private mac1Key: Uint8Array | null = null;
  private cookieKey: Uint8Array | null = null;
  private secret: Uint8Array;
  private secretSet = Number.NEGATIVE_INFINITY;

  constructor(crypto: CryptoProvider, clock: Clock) {
    this.crypto = crypto;
    this.clock = clock;
    this.secret = new Uint8Array(32);
  }

  /** Keys both MACs to our public key (null while the device has no private key). */
  init(publicKey: Uint8Array | null): void {
    this.mac1Key = publicKey === null ? null : this.crypto.hash(LabelMac1, publicKey);
    this.cookieKey = publicKey === null ? null : this.crypto.hash(LabelCookie, publicKey);
  }

  checkMac1(message: Uint8Array): boolean {
    if (this.mac1Key === null) return false;
    const offset = mac1Offset(message.length);
    const mac = this.crypto.mac(this.mac1Key, message.subarray(0, offset));
    return constantTimeEqual(mac, message.subarray(offset, offset + MacSize));
  }

  /** Whether MAC2 is valid for a cookie issued to `source` within CookieRefreshTime. */
  checkMac2(message: Uint8Array, source: Uint8Array): boolean {
    if (this.clock.now() - this.secretSet > CookieRefreshTime) return false;
    const cookie = this.crypto.mac(this.secret, source);
    const offset = mac2Offset(message.length);
    const mac = this.crypto.mac(cookie, message.subarray(0, offset));
    return constantTimeEqual(mac, message.subarray(offset, offset + MacSize));
  }

  /** A cookie reply to handshake `message` (whose sender index is `receiver`) from `source`. */
  createReply(message: Uint8Array, receiver: number, source: Uint8Array): Uint8Array | null {
    if (this.cookieKey === null) return null;
    const now = this.clock.now();
    if (now - this.secretSet > CookieRefreshTime) {
      this.secret = this.crypto.randomBytes(32);
      this.secretSet = now;
    }
    const cookie = this.crypto.mac(this.secret, source);
    const nonce = this.crypto.randomBytes(NonceSize);
    const mac1 = mac1Offset(message.length);
    const sealed = this.crypto.xaeadSeal(
      this.cookieKey,
      nonce,
      cookie,
      message.subarray(mac1, mac1 + MacSize),
    );
    const reply = new Uint8Array(MessageCookieReplySize);
    reply[0] = MessageCookieReplyType;
    writeUint32LE(reply, CookieReplyReceiver, receiver);
    reply.set(nonce, CookieReplyNonce);
    reply.set(sealed, CookieReplyCookie);
    return reply;
  }
}

/** The initiator's side, one per peer: adds MACs and keeps the cookie the peer gave us. */
export class CookieGenerator {
  private readonly crypto: CryptoProvider;
  private readonly clock: Clock;
  private readonly mac1Key: Uint8Array;
  private readonly cookieKey: Uint8Array;
  private cookie: Uint8Array | null = null;
  private cookieSet = Number.NEGATIVE_INFINITY;
  private lastMac1: Uint8Array | null = null;

  constructor(crypto: CryptoProvider, clock: Clock, peerPublicKey: Uint8Array) {
    this.crypto = crypto;
    this.clock = clock;
    this.mac1Key = crypto.hash(LabelMac1, peerPublicKey);
    this.cookieKey = crypto.hash(LabelCookie, peerPublicKey);
  }

  /** Accepts a cookie reply to the last message we MACed; false if it does not decrypt. */
  consumeReply(reply: Uint8Array): boolean {
    if (this.lastMac1 === null || reply.length !== MessageCookieReplySize) return false;
    const cookie = this.crypto.xaeadOpen(
      this.cookieKey,
      reply.subarray(CookieReplyNonce, CookieReplyCookie),
      reply.subarray(CookieReplyCookie),
      this.lastMac1,
    );
    if (cookie === null) return false;
    this.cookie = cookie;
    this.cookieSet = this.clock.now();
    this.lastMac1 = null;
    return true;
  }

  /** Fills in MAC1, and MAC2 while we hold a fresh cookie, of an outgoing handshake message. */
  addMacs(message: Uint8Array): void {
    const mac1 = mac1Offset(message.length);
    const mac2 = mac2Offset(message.length);
    const mac = this.crypto.mac(this.mac1Key, message.subarray(0, mac1));
    message.set(mac, mac1);
    this.lastMac1 = mac;
    if (this.cookie !== null && this.clock.now() - this.cookieSet <= CookieRefreshTime) {
      message.set(this.crypto.mac(this.cookie, message.subarray(0, mac2)), mac2);
    } else {
      message.fill(0, mac2, mac2 + MacSize);
    }
  }
}
