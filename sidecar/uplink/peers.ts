/**
 * The server's view of the relay's peer set, kept equal to it. The relay sends PEER_ADDED,
 * PEER_REMOVED and, on every (re)connection, the whole set as PEER_LIST chunks; each message is
 * applied to WireGuard (a PeerTable) before its sequence number is acknowledged, because the
 * relay holds a node's Provision answer until then.
 *
 * Messages are applied one at a time in arrival order. A PEER_LIST reconciles: peers it does
 * not name are removed, missing or changed ones are set, unchanged ones are left alone, so a
 * reconnect never duplicates or churns a peer.
 */
import { formatIPv6 } from "../../shared/net/ip.ts";
import { formatKey } from "../../shared/siderolink/keys.ts";
import type { ControlMessage, PeerEntry } from "../../shared/tunnel/decode.ts";
import { FrameType } from "../../shared/tunnel/frame.ts";

/** A node as the server configures it. */
export interface UplinkPeer {
  /** Base64 WireGuard key: the peer's identity. */
  readonly publicKey: string;
  readonly publicKeyBytes: Uint8Array;
  /** The node's overlay address (its allowed IP, /128). */
  readonly address: string;
  /** The node's virtual address: the tag of its datagrams. */
  readonly virtualAddress: string;
  readonly tag: Uint8Array;
}

/** Where peers are configured: the WireGuard device (or `wg`). */
export interface PeerTable {
  /** Creates or updates the peer; resolves once WireGuard has it. */
  setPeer(peer: UplinkPeer): Promise<void>;
  removePeer(peer: UplinkPeer): Promise<void>;
}

export function uplinkPeer(entry: PeerEntry): UplinkPeer {
  return {
    publicKey: formatKey(entry.publicKey),
    publicKeyBytes: entry.publicKey,
    address: formatIPv6(entry.address),
    virtualAddress: formatIPv6(entry.virtualAddress),
    tag: entry.virtualAddress,
  };
}

function samePeer(a: UplinkPeer, b: UplinkPeer): boolean {
  return a.address === b.address && a.virtualAddress === b.virtualAddress;
}

export class PeerReconciler {
  readonly #table: PeerTable;
  /** Configured peers by public key. */
  readonly #peers = new Map<string, UplinkPeer>();
  /** Chunks of the PEER_LIST being received. */
  #listSeq: number | undefined;
  #listed: UplinkPeer[] = [];

  constructor(table: PeerTable) {
    this.#table = table;
  }

  /** The peers WireGuard has now, by public key. */
  get peers(): ReadonlyMap<string, UplinkPeer> {
    return this.#peers;
  }

  /** A new connection: forget a half-received list (the relay sends a whole one again). */
  connectionReset(): void {
    this.#listSeq = undefined;
    this.#listed = [];
  }

  /**
   * Applies one control message from the relay and resolves with the sequence number to
   * acknowledge, or undefined when there is none yet (a PEER_LIST chunk before the last).
   */
  async handle(message: ControlMessage): Promise<number | undefined> {
    switch (message.type) {
      case FrameType.PeerAdded:
        await this.#add(uplinkPeer(message.peer));
        return message.seq;
      case FrameType.PeerRemoved:
        await this.#remove(uplinkPeer(message.peer));
        return message.seq;
      case FrameType.PeerList: {
        if (this.#listSeq !== message.seq) {
          this.#listSeq = message.seq;
          this.#listed = [];
        }
        for (const entry of message.peers) this.#listed.push(uplinkPeer(entry));
        if (!message.last) return undefined;
        const listed = this.#listed;
        this.connectionReset();
        await this.#reconcile(listed);
        return message.seq;
      }
      case FrameType.Hello:
      case FrameType.Ack:
        throw new Error(`frame type 0x${message.type.toString(16)} does not go to the server`);
    }
  }

  async #add(peer: UplinkPeer): Promise<void> {
    const existing = this.#peers.get(peer.publicKey);
    if (existing && samePeer(existing, peer)) return;
    // Another key on the same addresses is a node that provisioned again with a new key.
    for (const other of [...this.#peers.values()]) {
      if (
        other.publicKey !== peer.publicKey &&
        (other.virtualAddress === peer.virtualAddress || other.address === peer.address)
      ) {
        await this.#remove(other);
      }
    }
    await this.#table.setPeer(peer);
    this.#peers.set(peer.publicKey, peer);
  }

  async #remove(peer: UplinkPeer): Promise<void> {
    const existing = this.#peers.get(peer.publicKey);
    if (!existing) return;
    await this.#table.removePeer(existing);
    this.#peers.delete(peer.publicKey);
  }

  async #reconcile(listed: readonly UplinkPeer[]): Promise<void> {
    const wanted = new Map(listed.map((peer) => [peer.publicKey, peer]));
    for (const peer of [...this.#peers.values()]) {
      const want = wanted.get(peer.publicKey);
      if (!want || !samePeer(want, peer)) await this.#remove(peer);
    }
    for (const peer of wanted.values()) await this.#add(peer);
  }
}
