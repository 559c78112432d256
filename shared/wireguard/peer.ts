/**
 * A WireGuard peer: its configuration, handshake, keypairs, timers and counters. The send
 * path (send.ts) and the receive path (receive.ts) move packets for it; what is here changes
 * its session: installing a derived keypair, completing a handshake, forgetting keys.
 */
import type { Endpoint } from "./bind.ts";
import type { Clock } from "./clock.ts";
import { CookieGenerator } from "./cookie.ts";
import type { CryptoProvider } from "./crypto.ts";
import type { DeviceLimits } from "./device.ts";
import type { DropCounters } from "./drop-counters.ts";
import type { IndexTable } from "./index-table.ts";
import { Keypairs } from "./keypair.ts";
import { beginSymmetricSession, Handshake, type NoiseContext } from "./noise-protocol.ts";
import { PeerTimers } from "./timers.ts";

/** What a peer needs from its device. */
export interface PeerHost {
  readonly crypto: CryptoProvider;
  readonly clock: Clock;
  readonly noise: NoiseContext;
  readonly limits: DeviceLimits;
  readonly drops: DropCounters;
  readonly indexTable: IndexTable<Peer>;
  readonly running: boolean;
  /** Largest plaintext packet; padding never takes a packet past it. */
  readonly mtu: number;
  send(datagrams: Uint8Array[], to: Endpoint): void;
  /** A zeroed buffer for one outgoing datagram. */
  allocate(size: number): Uint8Array;
}

export class Peer {
  readonly host: PeerHost;
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

  constructor(host: PeerHost, publicKey: Uint8Array) {
    this.host = host;
    this.publicKey = publicKey;
    this.handshake = new Handshake(publicKey);
    this.handshake.precompute(host.noise.identity);
    this.keypairs = new Keypairs((keypair) => host.indexTable.delete(keypair.localIndex));
    this.timers = new PeerTimers(host.clock, this);
    this.cookieGenerator = new CookieGenerator(host.crypto, host.clock, publicKey);
  }

  /** Roaming: the last authenticated packet's source is where replies go. */
  setEndpoint(endpoint: Endpoint): void {
    if (this.endpoint === null || this.endpoint.key !== endpoint.key) this.endpoint = endpoint;
  }

  /**
   * Derives the transport keypair from the completed handshake, points the handshake's index
   * at it and installs it. False when the handshake yields no keypair.
   */
  beginSession(): boolean {
    const keypair = beginSymmetricSession(this.host.noise, this.handshake);
    if (keypair === null) return false;
    this.host.indexTable.swapIndexForKeypair(keypair);
    this.keypairs.install(keypair);
    this.timers.sessionDerived();
    return true;
  }

  handshakeComplete(): void {
    this.timers.handshakeComplete();
    this.lastHandshake = this.host.clock.wallNow();
  }

  /** Frees the index of a handshake in progress, if any. */
  releaseHandshakeIndex(): void {
    if (this.handshake.localIndex !== 0) this.host.indexTable.delete(this.handshake.localIndex);
    this.handshake.localIndex = 0;
  }

  /** Handshake attempts ran out: the staged packets will not be sent. */
  dropStagedPackets(): void {
    this.host.drops.handshakeGaveUp += this.staged.length;
    this.staged.length = 0;
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
}
