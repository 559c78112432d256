/**
 * A WireGuard peer: its configuration, handshake, keypairs and timers, and the send side of
 * the data path (encrypting batches of IP packets into transport messages).
 */
import type { Endpoint } from "./bind.ts";
import type { Clock } from "./clock.ts";
import {
  KeepaliveTimeout,
  MaxStagedPackets,
  MessageTransportHeaderSize,
  MessageTransportType,
  PaddingMultiple,
  RejectAfterTime,
  RekeyAfterTime,
  RekeyTimeout,
  TransportCounter,
  TransportReceiver,
} from "./constants.ts";
import { CookieGenerator } from "./cookie.ts";
import { type CryptoProvider, TagSize } from "./crypto.ts";
import { type Keypair, Keypairs } from "./keypair.ts";
import { writeUint32LE } from "./noise-helpers.ts";
import {
  beginSymmetricSession,
  createMessageInitiation,
  createMessageResponse,
  Handshake,
  type NoiseContext,
} from "./noise-protocol.ts";
import { PeerTimers, type TimerTarget } from "./timers.ts";

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
  /** Transport message under a keypair past RejectAfterTime or its message limit. */
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

export interface DeviceLimits {
  /** Initiator starts a new handshake after sending this many messages on a keypair. */
  rekeyAfterMessages: number;
  /** No message is sent or accepted at or beyond this counter. */
  rejectAfterMessages: number;
  /** Handshake messages per second above which cookies are demanded. */
  underLoadHandshakesPerSecond: number;
}

/** What a peer needs from its device. */
export interface PeerHost {
  readonly crypto: CryptoProvider;
  readonly clock: Clock;
  readonly noise: NoiseContext;
  readonly limits: DeviceLimits;
  readonly drops: DropCounters;
  readonly running: boolean;
  /** Largest plaintext packet; padding never takes a packet past it. */
  readonly mtu: number;
  send(datagrams: Uint8Array[], to: Endpoint): void;
  /** A zeroed buffer for one outgoing datagram. */
  allocate(size: number): Uint8Array;
  /** Registers a fresh local index for this peer's handshake. */
  newHandshakeIndex(peer: Peer): number;
  /** Points a handshake's index at the keypair derived from it. */
  bindKeypairIndex(keypair: Keypair): void;
  releaseIndex(index: number): void;
}

const Empty = new Uint8Array(0);

export function paddingFor(length: number, mtu: number): number {
  const padded = Math.min((length + PaddingMultiple - 1) & ~(PaddingMultiple - 1), mtu);
  return padded > length ? padded - length : 0;
}

export class Peer implements TimerTarget {
  readonly publicKey: Uint8Array;
  readonly handshake: Handshake;
  readonly keypairs: Keypairs;
  readonly timers: PeerTimers;
  readonly cookieGenerator: CookieGenerator;
  endpoint: Endpoint | null = null;
  persistentKeepaliveInterval = 0;
  rxBytes = 0;
  txBytes = 0;
  /** Wall-clock ms of the last completed handshake, 0 if none. */
  lastHandshake = 0;
  /** Packets waiting for a keypair (copies: Tun buffers are reused). */
  readonly staged: Uint8Array[] = [];
  /** Packets routed to this peer in the batch being processed (views, not copies). */
  readonly outbox: Uint8Array[] = [];
  private readonly host: PeerHost;

  constructor(host: PeerHost, publicKey: Uint8Array) {
    this.host = host;
    this.publicKey = publicKey;
    this.handshake = new Handshake(publicKey);
    this.handshake.precompute(host.noise.identity);
    this.keypairs = new Keypairs((keypair) => host.releaseIndex(keypair.localIndex));
    this.timers = new PeerTimers(host.clock, this);
    this.cookieGenerator = new CookieGenerator(host.crypto, host.clock, publicKey);
  }

  /** Encrypts and sends `packets` (IP packets; empty means keepalive), queueing on no key. */
  sendPackets(packets: readonly Uint8Array[]): void {
    let sent = 0;
    if (this.staged.length === 0) sent = this.transmit(packets);
    for (let i = sent; i < packets.length; i++) this.stage(packets[i].slice());
    if (sent < packets.length) this.sendStaged();
  }

  sendKeepalive(): void {
    if (this.staged.length === 0) this.sendPackets([Empty]);
    else this.sendStaged();
  }

  /** Sends queued packets if a keypair can carry them, else asks for a handshake. */
  sendStaged(): void {
    if (this.staged.length > 0) {
      const sent = this.transmit(this.staged);
      this.staged.splice(0, sent);
    }
    if (this.staged.length > 0) this.sendHandshakeInitiation(false);
  }

  dropStagedPackets(): void {
    this.host.drops.handshakeGaveUp += this.staged.length;
    this.staged.length = 0;
  }

  sendHandshakeInitiation(isRetry: boolean): void {
    const host = this.host;
    if (!isRetry) this.timers.handshakeAttempts = 0;
    const now = host.clock.now();
    if (!host.running || now - this.handshake.lastSentHandshake < RekeyTimeout) return;
    this.handshake.lastSentHandshake = now;
    this.releaseHandshakeIndex();
    const index = host.newHandshakeIndex(this);
    const message = createMessageInitiation(host.noise, this.handshake, index);
    if (message === null) {
      host.releaseIndex(index);
      return;
    }
    this.cookieGenerator.addMacs(message);
    this.timers.anyAuthenticatedPacketTraversal();
    this.timers.anyAuthenticatedPacketSent();
    this.sendMessage(message);
    this.timers.handshakeInitiated();
  }

  /** Answers a consumed initiation and installs the (unconfirmed) responder keypair. */
  sendHandshakeResponse(): void {
    const host = this.host;
    this.handshake.lastSentHandshake = host.clock.now();
    this.releaseHandshakeIndex();
    const index = host.newHandshakeIndex(this);
    const message = createMessageResponse(host.noise, this.handshake, index);
    if (message === null) {
      host.releaseIndex(index);
      return;
    }
    this.cookieGenerator.addMacs(message);
    if (!this.beginSession()) return;
    this.timers.anyAuthenticatedPacketTraversal();
    this.timers.anyAuthenticatedPacketSent();
    this.sendMessage(message);
  }

  /** The initiator's side after a valid response: install the keypair and confirm it. */
  completeInitiatorHandshake(): void {
    if (!this.beginSession()) return;
    this.handshakeComplete();
    this.sendKeepalive();
  }

  handshakeComplete(): void {
    this.timers.handshakeComplete();
    this.lastHandshake = this.host.clock.wallNow();
  }

  /** Initiator near the end of a keypair's life starts the next handshake once. */
  keepKeyFreshReceiving(): void {
    const current = this.keypairs.current;
    if (current === null || !current.isInitiator || this.timers.sentLastMinuteHandshake) return;
    const age = this.host.clock.now() - current.created;
    if (age > RejectAfterTime - KeepaliveTimeout - RekeyTimeout) {
      this.timers.sentLastMinuteHandshake = true;
      this.sendHandshakeInitiation(false);
    }
  }

  setEndpoint(endpoint: Endpoint): void {
    if (this.endpoint === null || this.endpoint.key !== endpoint.key) this.endpoint = endpoint;
  }

  zeroKeyMaterial(): void {
    this.keypairs.clear();
    this.releaseHandshakeIndex();
    this.handshake.clear();
  }

  /** Forgets keys and timers (peer removal, device close). */
  stop(): void {
    this.timers.stop();
    this.zeroKeyMaterial();
    this.staged.length = 0;
  }

  /** Stops sending on current keys and lets a handshake start at once (private key changed). */
  expireCurrentKeypairs(): void {
    this.releaseHandshakeIndex();
    this.handshake.clear();
    this.handshake.lastSentHandshake = Number.NEGATIVE_INFINITY;
    this.keypairs.expireSending();
  }

  private beginSession(): boolean {
    const keypair = beginSymmetricSession(this.host.noise, this.handshake);
    if (keypair === null) return false;
    this.host.bindKeypairIndex(keypair);
    this.keypairs.install(keypair);
    this.timers.sessionDerived();
    return true;
  }

  private releaseHandshakeIndex(): void {
    if (this.handshake.localIndex !== 0) this.host.releaseIndex(this.handshake.localIndex);
    this.handshake.localIndex = 0;
  }

  private stage(packet: Uint8Array): void {
    if (this.staged.length >= MaxStagedPackets) {
      this.staged.shift();
      this.host.drops.stagedOverflow++;
    }
    this.staged.push(packet);
  }

  private sendMessage(message: Uint8Array): void {
    if (this.endpoint === null) {
      this.host.drops.noEndpoint++;
      return;
    }
    this.txBytes += message.length;
    this.host.send([message], this.endpoint);
  }

  /**
   * Encrypts as many of `packets` as the current keypair may carry and sends them as one
   * batch. Returns how many were sent (0 when there is no usable keypair or endpoint).
   */
  private transmit(packets: readonly Uint8Array[]): number {
    const host = this.host;
    const keypair = this.keypairs.current;
    const endpoint = this.endpoint;
    if (keypair === null || endpoint === null || !host.running) return 0;
    const now = host.clock.now();
    if (now - keypair.created >= RejectAfterTime) return 0;
    const limit = host.limits.rejectAfterMessages;
    const count = Math.min(packets.length, Math.max(0, limit - keypair.sendCounter));
    if (count === 0) return 0;
    const datagrams: Uint8Array[] = new Array(count);
    let bytes = 0;
    let data = false;
    for (let i = 0; i < count; i++) {
      const packet = packets[i];
      const padding = paddingFor(packet.length, host.mtu);
      const size = MessageTransportHeaderSize + packet.length + padding + TagSize;
      const datagram = host.allocate(size);
      const counter = keypair.sendCounter++;
      const low = counter >>> 0;
      datagram[0] = MessageTransportType;
      writeUint32LE(datagram, TransportReceiver, keypair.remoteIndex);
      writeUint32LE(datagram, TransportCounter, low);
      writeUint32LE(datagram, TransportCounter + 4, (counter - low) / 0x1_0000_0000);
      keypair.send.seal(counter, packet, padding, datagram, MessageTransportHeaderSize);
      datagrams[i] = datagram;
      bytes += size;
      if (packet.length > 0) data = true;
    }
    this.txBytes += bytes;
    host.send(datagrams, endpoint);
    this.timers.anyAuthenticatedPacketTraversal();
    this.timers.anyAuthenticatedPacketSent();
    if (data) this.timers.dataSent();
    // Keep keys fresh: the initiator rekeys by age or by use; the responder waits for it.
    if (
      keypair.isInitiator &&
      (keypair.sendCounter > host.limits.rekeyAfterMessages ||
        now - keypair.created > RekeyAfterTime)
    ) {
      this.sendHandshakeInitiation(false);
    }
    return count;
  }
}
