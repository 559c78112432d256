/**
 * A WireGuard device: one static key, one Tun (plaintext IP packets) and one Bind
 * (ciphertext datagrams), many peers.
 *
 * API: `new Device({ tun, bind, crypto, clock, openBind?, limits?, log? })` builds it idle;
 * configure it with `setPrivateKey(key | null)`, `setPeer({ publicKey, presharedKey?,
 * endpoint?, persistentKeepaliveInterval?, allowedIps?, replaceAllowedIps? })`,
 * `removePeer(publicKey)`, `removeAllPeers()`, `setListenPort(port)` (re-opens the bind
 * through `openBind`) and `fwmark`; or through the `wg` text protocol in uapi.ts
 * (`handleUapiRequest(device, text)`). `start()` opens the bind and starts reading the Tun;
 * `close()` stops timers and closes both. Status: `peer(publicKey)` / `peers()` give each
 * peer's `endpoint`, `lastHandshake` (wall ms), `rxBytes`, `txBytes`; `drops` counts every
 * discarded packet by reason. Keys are raw 32-byte arrays; all work happens on the caller's
 * event loop, in the Tun's and Bind's handlers and in clock timers.
 */
import { parseNetworkPrefix } from "../net/ip.ts";
import { AllowedIps } from "./allowed-ips.ts";
import type { Bind, Endpoint } from "./bind.ts";
import type { Clock } from "./clock.ts";
import {
  CounterLimit,
  isWellFormedMessage,
  MessageCookieReplyType,
  MessageInitiationType,
  MessageResponseType,
  MessageTransportType,
  RejectAfterTime,
  RekeyAfterMessages,
  TransportContent,
  TransportCounter,
  TransportReceiver,
  UnderLoadAfterTime,
  UnderLoadHandshakesPerSecond,
} from "./constants.ts";
import { CookieChecker } from "./cookie.ts";
import { type CryptoProvider, checkKey, KeySize } from "./crypto.ts";
import { toHex as hex } from "./hex.ts";
import type { Keypair } from "./keypair.ts";
import { isZero, readUint32LE } from "./noise-helpers.ts";
import {
  consumeMessageInitiation,
  consumeMessageResponse,
  type NoiseContext,
  type StaticIdentity,
} from "./noise-protocol.ts";
import {
  createDropCounters,
  type DeviceLimits,
  type DropCounters,
  Peer,
  type PeerHost,
} from "./peer.ts";
import { RateLimiter } from "./ratelimiter.ts";
import type { Tun } from "./tun.ts";

export type { DeviceLimits, DropCounters } from "./peer.ts";
export { Peer } from "./peer.ts";

export interface DeviceOptions {
  tun: Tun;
  bind: Bind;
  crypto: CryptoProvider;
  clock: Clock;
  /** Makes a bind on another port for `listen_port` (0: any free port). Without it the port is fixed. */
  openBind?: (port: number) => Bind;
  limits?: Partial<DeviceLimits>;
  /** Debug log: why handshakes and packets were dropped, configuration changes. */
  log?: (message: string) => void;
}

export interface PeerConfig {
  publicKey: Uint8Array;
  /** 32 bytes; null or all zero means none. */
  presharedKey?: Uint8Array | null;
  /** An endpoint, or its text as `wg` writes it; null forgets it. */
  endpoint?: Endpoint | string | null;
  /** Seconds, 0 to disable. */
  persistentKeepaliveInterval?: number;
  /** CIDR texts, e.g. "fd00::1/128". */
  allowedIps?: readonly string[];
  /** Replace rather than add to the peer's allowed IPs. */
  replaceAllowedIps?: boolean;
}

interface IndexEntry {
  peer: Peer;
  /** Null while the index names a handshake in progress. */
  keypair: Keypair | null;
}

/** Datagrams are carved from slabs: one allocation per many packets, never reused. */
const SlabSize = 256 * 1024;

export class Device implements PeerHost {
  readonly crypto: CryptoProvider;
  readonly clock: Clock;
  readonly limits: DeviceLimits;
  readonly drops: DropCounters = createDropCounters();
  readonly allowedIps = new AllowedIps<Peer>();
  readonly tun: Tun;
  /** Stored and reported for `wg`; applying it to sockets is the bind's business. */
  fwmark = 0;
  private isRunning = false;
  private context: NoiseContext;
  private bind: Bind;
  private readonly openBind: ((port: number) => Bind) | null;
  private readonly log: (message: string) => void;
  private readonly peersByKey = new Map<string, Peer>();
  private readonly indexTable = new Map<number, IndexEntry>();
  private readonly cookieChecker: CookieChecker;
  private readonly rateLimiter: RateLimiter;
  private slab = new Uint8Array(SlabSize);
  private slabOffset = 0;
  private loadWindowStart = Number.NEGATIVE_INFINITY;
  private loadWindowCount = 0;
  private underLoadUntil = Number.NEGATIVE_INFINITY;
  private readonly touched: Peer[] = [];
  private readonly received: Uint8Array[] = [];

  constructor(options: DeviceOptions) {
    this.tun = options.tun;
    this.bind = options.bind;
    this.crypto = options.crypto;
    this.clock = options.clock;
    this.openBind = options.openBind ?? null;
    this.log = options.log ?? (() => {});
    this.limits = {
      rekeyAfterMessages: RekeyAfterMessages,
      rejectAfterMessages: CounterLimit,
      underLoadHandshakesPerSecond: UnderLoadHandshakesPerSecond,
      ...options.limits,
    };
    this.context = { crypto: this.crypto, clock: this.clock, identity: null };
    this.cookieChecker = new CookieChecker(this.crypto, this.clock);
    this.rateLimiter = new RateLimiter(this.clock);
  }

  get running(): boolean {
    return this.isRunning;
  }

  /** Crypto, clock and static identity, as the handshake functions take them. */
  get noise(): NoiseContext {
    return this.context;
  }

  get mtu(): number {
    return this.tun.mtu;
  }

  get privateKey(): Uint8Array | null {
    return this.noise.identity?.privateKey ?? null;
  }

  get publicKey(): Uint8Array | null {
    return this.noise.identity?.keyPair.publicKey ?? null;
  }

  /** The bound port (0 for a bind without one). */
  get listenPort(): number {
    return this.bind.port;
  }

  async start(): Promise<void> {
    if (this.running) return;
    await this.bind.open(this.onDatagrams);
    this.isRunning = true;
    this.tun.start(this.onTunPackets);
    for (const peer of this.peersByKey.values()) {
      if (peer.persistentKeepaliveInterval > 0) peer.sendKeepalive();
      else peer.sendStaged();
    }
  }

  async close(): Promise<void> {
    this.isRunning = false;
    for (const peer of this.peersByKey.values()) peer.stop();
    await Promise.all([this.bind.close(), this.tun.close()]);
  }

  /** Sets (or with null or all zero, clears) the private key; peers rekey with it. */
  setPrivateKey(privateKey: Uint8Array | null): void {
    const key = privateKey === null || isZero(privateKey) ? null : privateKey.slice();
    if (key !== null) checkKey(key, "privateKey");
    const old = this.privateKey;
    if (old === key || (old !== null && key !== null && hex(old) === hex(key))) return;
    const identity: StaticIdentity | null =
      key === null ? null : { privateKey: key, keyPair: this.crypto.importPrivateKey(key) };
    this.context = { crypto: this.crypto, clock: this.clock, identity };
    const publicKey = identity?.keyPair.publicKey ?? null;
    this.cookieChecker.init(publicKey);
    if (publicKey !== null) this.removePeer(publicKey);
    for (const peer of this.peersByKey.values()) {
      peer.handshake.precompute(identity);
      peer.expireCurrentKeypairs();
    }
    this.log("private key updated");
  }

  async setListenPort(port: number): Promise<void> {
    if (this.openBind === null) {
      throw new Error(`cannot change listen port to ${port}: this device's bind has a fixed port`);
    }
    const next = this.openBind(port);
    if (this.running) await next.open(this.onDatagrams);
    const old = this.bind;
    this.bind = next;
    await old.close();
  }

  /** Parses an endpoint as `wg` writes it, for this device's bind. */
  parseEndpoint(text: string): Endpoint {
    return this.bind.parseEndpoint(text);
  }

  peer(publicKey: Uint8Array): Peer | undefined {
    return this.peersByKey.get(hex(publicKey));
  }

  peers(): IterableIterator<Peer> {
    return this.peersByKey.values();
  }

  /**
   * Creates or updates a peer. A peer with the device's own public key is ignored (null), as
   * wireguard-go does.
   */
  setPeer(config: PeerConfig): Peer | null {
    checkKey(config.publicKey, "publicKey");
    const own = this.publicKey;
    if (own !== null && hex(own) === hex(config.publicKey)) return null;
    let peer = this.peer(config.publicKey);
    if (peer === undefined) {
      peer = new Peer(this, config.publicKey.slice());
      this.peersByKey.set(hex(config.publicKey), peer);
    }
    if (config.presharedKey !== undefined) {
      const psk = config.presharedKey ?? new Uint8Array(KeySize);
      checkKey(psk, "presharedKey");
      peer.handshake.presharedKey = psk.slice();
    }
    if (config.endpoint !== undefined) {
      const endpoint = config.endpoint;
      peer.endpoint = typeof endpoint === "string" ? this.bind.parseEndpoint(endpoint) : endpoint;
    }
    const prefixes = (config.allowedIps ?? []).map((text) =>
      parseNetworkPrefix(text, "allowedIps"),
    );
    if (config.replaceAllowedIps) this.allowedIps.removeValue(peer);
    for (const prefix of prefixes) this.allowedIps.insert(prefix, peer);
    if (config.persistentKeepaliveInterval !== undefined) {
      const interval = config.persistentKeepaliveInterval;
      if (!Number.isInteger(interval) || interval < 0 || interval > 65535) {
        throw new RangeError(
          `persistent keepalive interval must be 0-65535 seconds, got ${interval}`,
        );
      }
      const turnedOn = peer.persistentKeepaliveInterval === 0 && interval > 0;
      peer.persistentKeepaliveInterval = interval;
      if (turnedOn && this.running) peer.sendKeepalive();
    }
    if (this.running) peer.sendStaged();
    return peer;
  }

  removePeer(publicKey: Uint8Array): boolean {
    const peer = this.peer(publicKey);
    if (peer === undefined) return false;
    peer.stop();
    this.allowedIps.removeValue(peer);
    this.peersByKey.delete(hex(publicKey));
    return true;
  }

  removeAllPeers(): void {
    for (const peer of [...this.peersByKey.values()]) this.removePeer(peer.publicKey);
  }

  // PeerHost

  send(datagrams: Uint8Array[], to: Endpoint): void {
    this.bind.send(datagrams, to);
  }

  allocate(size: number): Uint8Array {
    if (this.slabOffset + size > this.slab.length) {
      this.slab = new Uint8Array(Math.max(SlabSize, size));
      this.slabOffset = 0;
    }
    const out = this.slab.subarray(this.slabOffset, this.slabOffset + size);
    // Keep datagrams 8-byte aligned; it costs at most 7 bytes each.
    this.slabOffset += (size + 7) & ~7;
    return out;
  }

  newHandshakeIndex(peer: Peer): number {
    for (;;) {
      const index = readUint32LE(this.crypto.randomBytes(4), 0);
      if (index !== 0 && !this.indexTable.has(index)) {
        this.indexTable.set(index, { peer, keypair: null });
        return index;
      }
    }
  }

  bindKeypairIndex(keypair: Keypair): void {
    const entry = this.indexTable.get(keypair.localIndex);
    if (entry !== undefined) entry.keypair = keypair;
  }

  releaseIndex(index: number): void {
    this.indexTable.delete(index);
  }

  // Data path

  /** Routes a batch read from the Tun to peers and sends one batch per peer. */
  private readonly onTunPackets = (packets: readonly Uint8Array[]): void => {
    const touched = this.touched;
    for (const packet of packets) {
      const version = packet.length > 0 ? packet[0] >>> 4 : 0;
      let peer: Peer | null;
      if (version === 4 && packet.length >= 20) peer = this.allowedIps.lookup(4, packet, 16);
      else if (version === 6 && packet.length >= 40) peer = this.allowedIps.lookup(16, packet, 24);
      else {
        this.drops.invalidOutbound++;
        continue;
      }
      if (peer === null) {
        this.drops.noRoute++;
        continue;
      }
      if (peer.outbox.length === 0) touched.push(peer);
      peer.outbox.push(packet);
    }
    for (const peer of touched) {
      peer.sendPackets(peer.outbox);
      peer.outbox.length = 0;
    }
    touched.length = 0;
  };

  /** Handles a batch of datagrams from one endpoint; decrypted packets go out in one write. */
  private readonly onDatagrams = (datagrams: readonly Uint8Array[], from: Endpoint): void => {
    const received = this.received;
    for (const datagram of datagrams) {
      if (!isWellFormedMessage(datagram)) {
        this.drops.malformed++;
        continue;
      }
      switch (datagram[0]) {
        case MessageTransportType:
          this.receiveTransport(datagram, from);
          break;
        case MessageInitiationType:
        case MessageResponseType:
          this.receiveHandshake(datagram, from);
          break;
        case MessageCookieReplyType:
          this.receiveCookieReply(datagram);
          break;
      }
    }
    if (received.length > 0) {
      this.tun.write(received);
      received.length = 0;
    }
  };

  private receiveTransport(datagram: Uint8Array, from: Endpoint): void {
    const entry = this.indexTable.get(readUint32LE(datagram, TransportReceiver));
    const keypair = entry?.keypair;
    if (entry === undefined || keypair == null) {
      this.drops.unknownIndex++;
      return;
    }
    const peer = entry.peer;
    const low = readUint32LE(datagram, TransportCounter);
    const high = readUint32LE(datagram, TransportCounter + 4);
    const counter = high * 0x1_0000_0000 + low;
    const limit = this.limits.rejectAfterMessages;
    if (counter >= limit || this.clock.now() - keypair.created >= RejectAfterTime) {
      this.drops.keypairExpired++;
      return;
    }
    const packet = keypair.receive.open(counter, datagram.subarray(TransportContent));
    if (packet === null) {
      this.drops.decryptFailed++;
      return;
    }
    if (!keypair.replay.validate(counter, limit)) {
      this.drops.replayed++;
      return;
    }
    peer.setEndpoint(from);
    if (peer.keypairs.confirm(keypair)) {
      peer.handshakeComplete();
      peer.sendStaged();
    }
    peer.keepKeyFreshReceiving();
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
      owner = this.allowedIps.lookup(4, packet, 12);
    } else if (version === 6 && packet.length >= 40) {
      length = 40 + ((packet[4] << 8) | packet[5]);
      owner = this.allowedIps.lookup(16, packet, 8);
    } else {
      this.drops.invalidInner++;
      return;
    }
    if (length > packet.length || length < (version === 4 ? 20 : 40)) {
      this.drops.invalidInner++;
      return;
    }
    if (owner !== peer) {
      this.drops.disallowedSource++;
      return;
    }
    this.received.push(packet.subarray(0, length));
  }

  private receiveHandshake(message: Uint8Array, from: Endpoint): void {
    if (!this.cookieChecker.checkMac1(message)) {
      this.drops.invalidMac1++;
      return;
    }
    if (this.underLoad()) {
      const source = cookieSource(from);
      if (!this.cookieChecker.checkMac2(message, source)) {
        const reply = this.cookieChecker.createReply(message, readUint32LE(message, 4), source);
        if (reply !== null) this.bind.send([reply], from);
        this.drops.cookieRequired++;
        return;
      }
      if (!this.rateLimiter.allow(rateLimitKey(from))) {
        this.drops.rateLimited++;
        return;
      }
    }
    const peer =
      message[0] === MessageInitiationType
        ? consumeMessageInitiation(this.noise, message, (key) => this.peer(key) ?? null)
        : consumeMessageResponse(this.noise, message, (index) => {
            const entry = this.indexTable.get(index);
            return entry !== undefined && entry.keypair === null ? entry.peer : null;
          });
    if (peer === null) {
      this.drops.handshakeRejected++;
      this.log(`rejected handshake message type ${message[0]} from ${from}`);
      return;
    }
    peer.setEndpoint(from);
    peer.timers.anyAuthenticatedPacketTraversal();
    peer.timers.anyAuthenticatedPacketReceived();
    peer.rxBytes += message.length;
    if (message[0] === MessageInitiationType) peer.sendHandshakeResponse();
    else peer.completeInitiatorHandshake();
  }

  private receiveCookieReply(reply: Uint8Array): void {
    const entry = this.indexTable.get(readUint32LE(reply, 4));
    if (entry === undefined || !entry.peer.cookieGenerator.consumeReply(reply)) {
      this.drops.invalidCookieReply++;
    }
  }

  /** Counts handshake messages per second; above the limit, cookies are required for a while. */
  private underLoad(): boolean {
    const now = this.clock.now();
    if (now - this.loadWindowStart >= 1000) {
      this.loadWindowStart = now;
      this.loadWindowCount = 0;
    }
    this.loadWindowCount++;
    if (this.loadWindowCount > this.limits.underLoadHandshakesPerSecond) {
      this.underLoadUntil = now + UnderLoadAfterTime;
    }
    return now < this.underLoadUntil;
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
