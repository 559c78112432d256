/**
 * The receive path (wireguard-go receive.go). Each datagram from the bind is checked for
 * shape first. A transport message is looked up by its receiver index, authenticated,
 * replay-checked and its packet source checked against the peer's allowed IPs; the packets
 * of a batch reach the Tun in one write. A handshake message must pass MAC1, and while the
 * device is under load also MAC2 (or it gets a cookie reply) and the per-source rate limit,
 * before the costly Noise work. Whatever fails is dropped without an answer and counted.
 */
import type { Endpoint } from "./bind.ts";
import {
  isWellFormedMessage,
  KEEPALIVE_TIMEOUT,
  MessageType,
  REJECT_AFTER_TIME,
  REKEY_TIMEOUT,
  TRANSPORT_CONTENT,
  TRANSPORT_COUNTER,
  TRANSPORT_RECEIVER,
  UNDER_LOAD_AFTER_TIME,
} from "./constants.ts";
import type { CookieChecker } from "./cookie.ts";
import type { Device } from "./device.ts";
import { readUint32LE } from "./noise-helpers.ts";
import { consumeMessageInitiation, consumeMessageResponse } from "./noise-protocol.ts";
import type { Peer } from "./peer.ts";
import { RateLimiter } from "./ratelimiter.ts";
import {
  sendHandshakeInitiation,
  sendHandshakeResponse,
  sendKeepalive,
  sendStagedPackets,
} from "./send.ts";

/** The receive side of one device: its bind's handler and the state that guards handshakes. */
export class Receiver {
  readonly #device: Device;
  readonly #cookieChecker: CookieChecker;
  readonly #rateLimiter: RateLimiter;
  readonly #log: (message: string) => void;
  /** Decrypted packets of the batch being processed, written to the Tun together. */
  readonly #received: Uint8Array[] = [];
  #loadWindowStart = Number.NEGATIVE_INFINITY;
  #loadWindowCount = 0;
  #underLoadUntil = Number.NEGATIVE_INFINITY;
  // Lookups for the handshake functions, bound once rather than per message.
  readonly #peerByKey = (publicKey: Uint8Array): Peer | null =>
    this.#device.peer(publicKey) ?? null;
  readonly #peerByHandshakeIndex = (index: number): Peer | null =>
    this.#device.indexTable.lookupHandshake(index);

  constructor(device: Device, cookieChecker: CookieChecker, log: (message: string) => void) {
    this.#device = device;
    this.#cookieChecker = cookieChecker;
    this.#rateLimiter = new RateLimiter(device.clock);
    this.#log = log;
  }

  /** Handles a batch of datagrams from one endpoint; decrypted packets go out in one write. */
  readonly receive = (datagrams: readonly Uint8Array[], from: Endpoint): void => {
    const received = this.#received;
    for (const datagram of datagrams) {
      if (!isWellFormedMessage(datagram)) {
        this.#device.drops.malformed++;
        continue;
      }
      switch (datagram[0]) {
        case MessageType.Transport:
          this.#receiveTransport(datagram, from);
          break;
        case MessageType.Initiation:
        case MessageType.Response:
          this.#receiveHandshake(datagram, from);
          break;
        case MessageType.CookieReply:
          this.#receiveCookieReply(datagram);
          break;
      }
    }
    if (received.length > 0) {
      this.#device.tun.write(received);
      received.length = 0;
    }
  };

  #receiveTransport(datagram: Uint8Array, from: Endpoint): void {
    const device = this.#device;
    const entry = device.indexTable.lookup(readUint32LE(datagram, TRANSPORT_RECEIVER));
    const keypair = entry?.keypair;
    if (entry === undefined || keypair == null) {
      device.drops.unknownIndex++;
      return;
    }
    const peer = entry.peer;
    const low = readUint32LE(datagram, TRANSPORT_COUNTER);
    const high = readUint32LE(datagram, TRANSPORT_COUNTER + 4);
    const counter = high * 0x1_0000_0000 + low;
    const limit = device.limits.rejectAfterMessages;
    if (counter >= limit || device.clock.now() - keypair.created >= REJECT_AFTER_TIME) {
      device.drops.keypairExpired++;
      return;
    }
    const packet = keypair.receive.open(counter, datagram.subarray(TRANSPORT_CONTENT));
    if (packet === null) {
      device.drops.decryptFailed++;
      return;
    }
    if (!keypair.replay.validate(counter, limit)) {
      device.drops.replayed++;
      return;
    }
    peer.setEndpoint(from);
    if (peer.keypairs.confirm(keypair)) {
      peer.handshakeComplete();
      sendStagedPackets(peer);
    }
    keepKeyFreshReceiving(peer);
    peer.timers.anyAuthenticatedPacketTraversal();
    peer.timers.anyAuthenticatedPacketReceived();
    peer.rxBytes += datagram.length;
    if (packet.length === 0) return;
    peer.timers.dataReceived();

    let length: number;
    let owner: Peer | null;
    const version = packet[0] >>> 4;
    if (version === 4 && packet.length >= 20) {
      length = (packet[2] << 8) | packet[3];
      owner = device.allowedIps.lookup(4, packet, 12);
    } else if (version === 6 && packet.length >= 40) {
      length = 40 + ((packet[4] << 8) | packet[5]);
      owner = device.allowedIps.lookup(16, packet, 8);
    } else {
      device.drops.invalidInner++;
      return;
    }
    if (length > packet.length || length < (version === 4 ? 20 : 40)) {
      device.drops.invalidInner++;
      return;
    }
    if (owner !== peer) {
      device.drops.disallowedSource++;
      return;
    }
    this.#received.push(packet.subarray(0, length));
  }

  #receiveHandshake(message: Uint8Array, from: Endpoint): void {
    const device = this.#device;
    if (!this.#cookieChecker.checkMac1(message)) {
      device.drops.invalidMac1++;
      return;
    }
    if (this.#underLoad()) {
      const source = cookieSource(from);
      if (!this.#cookieChecker.checkMac2(message, source)) {
        const reply = this.#cookieChecker.createReply(message, readUint32LE(message, 4), source);
        if (reply !== null) device.send([reply], from);
        device.drops.cookieRequired++;
        return;
      }
      if (!this.#rateLimiter.allow(rateLimitKey(from))) {
        device.drops.rateLimited++;
        return;
      }
    }
    const peer =
      message[0] === MessageType.Initiation
        ? consumeMessageInitiation(device.noise, message, this.#peerByKey)
        : consumeMessageResponse(device.noise, message, this.#peerByHandshakeIndex);
    if (peer === null) {
      device.drops.handshakeRejected++;
      this.#log(`rejected handshake message type ${message[0]} from ${from}`);
      return;
    }
    peer.setEndpoint(from);
    peer.timers.anyAuthenticatedPacketTraversal();
    peer.timers.anyAuthenticatedPacketReceived();
    peer.rxBytes += message.length;
    if (message[0] === MessageType.Initiation) sendHandshakeResponse(peer);
    else completeInitiatorHandshake(peer);
  }

  #receiveCookieReply(reply: Uint8Array): void {
    const entry = this.#device.indexTable.lookup(readUint32LE(reply, 4));
    if (entry === undefined || !entry.peer.cookieGenerator.consumeReply(reply)) {
      this.#device.drops.invalidCookieReply++;
    }
  }

  /** Counts handshake messages per second; above the limit, cookies are required for a while. */
  #underLoad(): boolean {
    const now = this.#device.clock.now();
    if (now - this.#loadWindowStart >= 1000) {
      this.#loadWindowStart = now;
      this.#loadWindowCount = 0;
    }
    this.#loadWindowCount++;
    if (this.#loadWindowCount > this.#device.limits.underLoadHandshakesPerSecond) {
      this.#underLoadUntil = now + UNDER_LOAD_AFTER_TIME;
    }
    return now < this.#underLoadUntil;
  }
}

/** The initiator's side after a valid response: install the keypair and confirm it. */
function completeInitiatorHandshake(peer: Peer): void {
  if (!peer.beginSession()) return;
  peer.handshakeComplete();
  sendKeepalive(peer);
}

/** Initiator near the end of a keypair's life: start the next handshake, once. */
function keepKeyFreshReceiving(peer: Peer): void {
  const current = peer.keypairs.current;
  if (current === null || !current.isInitiator || peer.timers.sentLastMinuteHandshake) return;
  const age = peer.host.clock.now() - current.created;
  if (age > REJECT_AFTER_TIME - KEEPALIVE_TIMEOUT - REKEY_TIMEOUT) {
    peer.timers.sentLastMinuteHandshake = true;
    sendHandshakeInitiation(peer, false);
  }
}

const utf8 = new TextEncoder();

/** What a cookie is bound to: the source address and port (the endpoint's identity). */
function cookieSource(from: Endpoint): Uint8Array {
  const key = utf8.encode(from.key);
  const out = new Uint8Array(from.addressBytes.length + key.length);
  out.set(from.addressBytes);
  out.set(key, from.addressBytes.length);
  return out;
}

/** Rate limits apply per source address (any port); a stream endpoint is its own source. */
function rateLimitKey(from: Endpoint): string {
  return from.addressBytes.length > 0 ? from.addressBytes.join(",") : from.key;
}
