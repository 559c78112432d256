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
 *
 * Packets move through send.ts (Tun to Bind) and receive.ts (Bind to Tun); this file holds
 * the configuration and what the peers share.
 */
import { parseNetworkPrefix } from "../net/ip.ts";
import { AllowedIps } from "./allowed-ips.ts";
import type { Bind, Endpoint } from "./bind.ts";
import type { Clock } from "./clock.ts";
import {
  COUNTER_LIMIT,
  REKEY_AFTER_MESSAGES,
  UNDER_LOAD_HANDSHAKES_PER_SECOND,
} from "./constants.ts";
import { CookieChecker } from "./cookie.ts";
import { type CryptoProvider, checkKey, KEY_SIZE } from "./crypto.ts";
import { createDropCounters, type DropCounters } from "./drop-counters.ts";
import { toHex as hex } from "./hex.ts";
import { IndexTable } from "./index-table.ts";
import { isZero } from "./noise-helpers.ts";
import type { NoiseContext, StaticIdentity } from "./noise-protocol.ts";
import { Peer, type PeerHost } from "./peer.ts";
import { Receiver } from "./receive.ts";
import { sendKeepalive, sendStagedPackets, sendTunPackets } from "./send.ts";
import type { Tun } from "./tun.ts";

export interface DeviceLimits {
  /** Initiator starts a new handshake after sending this many messages on a keypair. */
  rekeyAfterMessages: number;
  /** No message is sent or accepted at or beyond this counter. */
  rejectAfterMessages: number;
  /** Handshake messages per second above which cookies are demanded. */
  underLoadHandshakesPerSecond: number;
}

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

/** Datagrams are carved from slabs: one allocation per many packets, never reused. */
const SLAB_SIZE = 256 * 1024;

export class Device implements PeerHost {
  readonly crypto: CryptoProvider;
  readonly clock: Clock;
  readonly limits: DeviceLimits;
  readonly drops: DropCounters = createDropCounters();
  readonly allowedIps = new AllowedIps<Peer>();
  readonly indexTable: IndexTable<Peer>;
  readonly tun: Tun;
  /** Stored and reported for `wg`; applying it to sockets is the bind's business. */
  fwmark = 0;
  #isRunning = false;
  #context: NoiseContext;
  #bind: Bind;
  readonly #openBind: ((port: number) => Bind) | null;
  readonly #log: (message: string) => void;
  readonly #peersByKey = new Map<string, Peer>();
  readonly #cookieChecker: CookieChecker;
  readonly #receiver: Receiver;
  #slab = new Uint8Array(SLAB_SIZE);
  #slabOffset = 0;
  /** Scratch list of the peers a Tun batch was routed to. */
  readonly #touched: Peer[] = [];
  readonly #onTunPackets = (packets: readonly Uint8Array[]): void => {
    sendTunPackets(this.allowedIps, this.drops, packets, this.#touched);
  };

  constructor(options: DeviceOptions) {
    this.tun = options.tun;
    this.#bind = options.bind;
    this.crypto = options.crypto;
    this.clock = options.clock;
    this.#openBind = options.openBind ?? null;
    this.#log = options.log ?? (() => {});
    this.limits = {
      rekeyAfterMessages: REKEY_AFTER_MESSAGES,
      rejectAfterMessages: COUNTER_LIMIT,
      underLoadHandshakesPerSecond: UNDER_LOAD_HANDSHAKES_PER_SECOND,
      ...options.limits,
    };
    this.#context = { crypto: this.crypto, clock: this.clock, identity: null };
    this.indexTable = new IndexTable(this.crypto);
    this.#cookieChecker = new CookieChecker(this.crypto, this.clock);
    this.#receiver = new Receiver(this, this.#cookieChecker, this.#log);
  }

  get running(): boolean {
    return this.#isRunning;
  }

  /** Crypto, clock and static identity, as the handshake functions take them. */
  get noise(): NoiseContext {
    return this.#context;
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
    return this.#bind.port;
  }

  async start(): Promise<void> {
    if (this.running) return;
    await this.#bind.open(this.#receiver.receive);
    this.#isRunning = true;
    this.tun.start(this.#onTunPackets);
    for (const peer of this.#peersByKey.values()) {
      if (peer.persistentKeepaliveInterval > 0) sendKeepalive(peer);
      else sendStagedPackets(peer);
    }
  }

  async close(): Promise<void> {
    this.#isRunning = false;
    for (const peer of this.#peersByKey.values()) peer.stop();
    await Promise.all([this.#bind.close(), this.tun.close()]);
  }

  /** Sets (or with null or all zero, clears) the private key; peers rekey with it. */
  setPrivateKey(privateKey: Uint8Array | null): void {
    const key = privateKey === null || isZero(privateKey) ? null : privateKey.slice();
    if (key !== null) checkKey(key, "privateKey");
    const old = this.privateKey;
    if (old === key || (old !== null && key !== null && hex(old) === hex(key))) return;
    const identity: StaticIdentity | null =
      key === null ? null : { privateKey: key, keyPair: this.crypto.importPrivateKey(key) };
    this.#context = { crypto: this.crypto, clock: this.clock, identity };
    const publicKey = identity?.keyPair.publicKey ?? null;
    this.#cookieChecker.init(publicKey);
    if (publicKey !== null) this.removePeer(publicKey);
    for (const peer of this.#peersByKey.values()) {
      peer.handshake.precompute(identity);
      peer.expireCurrentKeypairs();
    }
    this.#log("private key updated");
  }

  async setListenPort(port: number): Promise<void> {
    if (this.#openBind === null) {
      throw new Error(`cannot change listen port to ${port}: this device's bind has a fixed port`);
    }
    const next = this.#openBind(port);
    if (this.running) await next.open(this.#receiver.receive);
    const old = this.#bind;
    this.#bind = next;
    await old.close();
  }

  /** Parses an endpoint as `wg` writes it, for this device's bind. */
  parseEndpoint(text: string): Endpoint {
    return this.#bind.parseEndpoint(text);
  }

  peer(publicKey: Uint8Array): Peer | undefined {
    return this.#peersByKey.get(hex(publicKey));
  }

  peers(): IterableIterator<Peer> {
    return this.#peersByKey.values();
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
      this.#peersByKey.set(hex(config.publicKey), peer);
    }
    if (config.presharedKey !== undefined) {
      const psk = config.presharedKey ?? new Uint8Array(KEY_SIZE);
      checkKey(psk, "presharedKey");
      peer.handshake.presharedKey = psk.slice();
    }
    if (config.endpoint !== undefined) {
      const endpoint = config.endpoint;
      peer.endpoint = typeof endpoint === "string" ? this.#bind.parseEndpoint(endpoint) : endpoint;
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
      if (turnedOn && this.running) sendKeepalive(peer);
    }
    if (this.running) sendStagedPackets(peer);
    return peer;
  }

  removePeer(publicKey: Uint8Array): boolean {
    const peer = this.peer(publicKey);
    if (peer === undefined) return false;
    peer.stop();
    this.allowedIps.removeValue(peer);
    this.#peersByKey.delete(hex(publicKey));
    return true;
  }

  removeAllPeers(): void {
    for (const peer of [...this.#peersByKey.values()]) this.removePeer(peer.publicKey);
  }

  // PeerHost

  send(datagrams: Uint8Array[], to: Endpoint): void {
    this.#bind.send(datagrams, to);
  }

  allocate(size: number): Uint8Array {
    if (this.#slabOffset + size > this.#slab.length) {
      this.#slab = new Uint8Array(Math.max(SLAB_SIZE, size));
      this.#slabOffset = 0;
    }
    const out = this.#slab.subarray(this.#slabOffset, this.#slabOffset + size);
    // Keep datagrams 8-byte aligned; it costs at most 7 bytes each.
    this.#slabOffset += (size + 7) & ~7;
    return out;
  }
}
