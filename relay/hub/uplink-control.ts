/**
 * The uplink's control conversation. The server sidecar opens with HELLO (protocol version and
 * its WireGuard key); the hub has the key checked against the network's pinned key (the first
 * HELLO pins it), and only then does the uplink replace the live one and get the network's peers
 * as PEER_LIST, after which it is ready. The hub then announces each peer change as
 * PEER_ADDED or PEER_REMOVED, and the uplink acknowledges each once applied (ACK of its
 * sequence number), which Provision waits for.
 */
import { formatKey } from "../../shared/siderolink/keys.ts";
import { decodeControl, FrameError, type PeerEntry } from "../../shared/tunnel/decode.ts";
import { encodePeerEvent, encodePeerList } from "../../shared/tunnel/encode.ts";
import { CloseCode, FrameType, PROTOCOL_VERSION } from "../../shared/tunnel/frame.ts";
import type { Clock } from "../../shared/wireguard/clock.ts";
import { AckWaiters } from "./acks.ts";
import type { UplinkConnection } from "./connection.ts";
import type { AckResult, HubHooks, HubLimits } from "./hub.ts";
import type { HubMetrics } from "./metrics.ts";
import type { Registry } from "./registry.ts";
import type { UplinkAttachment } from "./socket.ts";

export interface UplinkControlOptions {
  readonly registry: Registry;
  readonly hooks: HubHooks;
  readonly limits: HubLimits;
  readonly clock: Clock;
  readonly metrics: HubMetrics;
}

/** Raised by `addPeer` when no uplink is ready to take the peer. */
export class NoUplinkError extends Error {
  override readonly name = "NoUplinkError";
}

/**
 * Raised by the `uplinkHello` hook when HELLO names a server key other than the pinned one; the
 * uplink is closed with CloseCode.ServerKeyMismatch and this message.
 */
export class ServerKeyMismatchError extends Error {
  override readonly name = "ServerKeyMismatchError";
}

export class UplinkControl {
  readonly #registry: Registry;
  readonly #hooks: HubHooks;
  readonly #limits: HubLimits;
  readonly #metrics: HubMetrics;
  readonly #acks: AckWaiters;
  #seq = 0;

  constructor(options: UplinkControlOptions) {
    this.#registry = options.registry;
    this.#hooks = options.hooks;
    this.#limits = options.limits;
    this.#metrics = options.metrics;
    this.#acks = new AckWaiters(options.clock, () => {
      this.#metrics.ackTimeouts++;
    });
  }

  /** A control frame from the uplink; throws FrameError for one that breaks the protocol. */
  frame(uplink: UplinkConnection, frame: Uint8Array): void {
    const message = decodeControl(frame);
    switch (message.type) {
      case FrameType.Hello:
        if (uplink.attachment.serverPublicKey !== null)
          throw new FrameError("unexpected_type", "second HELLO on one uplink");
        if (message.version !== PROTOCOL_VERSION) {
          this.#registry.drop(
            uplink,
            CloseCode.UnsupportedVersion,
            `protocol version ${message.version} is not supported; this relay speaks ${PROTOCOL_VERSION}`,
          );
          return;
        }
        this.#hello(uplink, formatKey(message.serverPublicKey));
        return;
      case FrameType.Ack:
        if (this.#acks.ack(message.seq)) this.#metrics.acks++;
        return;
      case FrameType.PeerAdded:
      case FrameType.PeerRemoved:
      case FrameType.PeerList:
        throw new FrameError(
          "unexpected_type",
          `frame type 0x${message.type.toString(16)} goes from the relay to the uplink, not back`,
        );
    }
  }

  /**
   * Tells the uplink about a new or changed peer and waits (up to ackTimeoutMs) for its ACK.
   * Throws NoUplinkError when no uplink is ready.
   */
  addPeer(peer: PeerEntry): Promise<AckResult> {
    const uplink = this.#registry.uplink;
    if (!uplink?.ready)
      throw new NoUplinkError("the management server is not connected to the relay");
    const seq = this.#nextSeq();
    const acked = this.#acks.wait(seq, this.#limits.ackTimeoutMs);
    uplink.socket.sendControl(encodePeerEvent(FrameType.PeerAdded, seq, peer));
    return acked;
  }

  /** Tells a ready uplink, if any, that a peer is gone; does not wait for the ACK. */
  removePeer(peer: PeerEntry): void {
    const uplink = this.#registry.uplink;
    if (uplink?.ready)
      uplink.socket.sendControl(encodePeerEvent(FrameType.PeerRemoved, this.#nextSeq(), peer));
  }

  /** The uplink is gone: nobody will acknowledge what it was told. */
  uplinkGone(): void {
    this.#acks.abandonAll();
  }

  #hello(uplink: UplinkConnection, serverPublicKey: string): void {
    const attachment: UplinkAttachment = { ...uplink.attachment, serverPublicKey };
    uplink.attachment = attachment;
    this.#admit(uplink, serverPublicKey).catch((error: unknown) => {
      if (uplink.closed) return;
      if (error instanceof ServerKeyMismatchError) {
        this.#registry.drop(uplink, CloseCode.ServerKeyMismatch, error.message);
        return;
      }
      this.#registry.drop(
        uplink,
        CloseCode.Unauthorized,
        `uplink refused: ${error instanceof Error ? error.message : String(error)}`,
      );
    });
  }

  /**
   * The key passed the pin: the uplink goes live (the old one is closed), then reads the peers,
   * so that a peer added meanwhile either is in the list or meets no ready uplink and is retried.
   */
  async #admit(uplink: UplinkConnection, serverPublicKey: string): Promise<void> {
    await this.#hooks.uplinkHello(serverPublicKey);
    if (uplink.closed) return;
    this.#registry.promoteUplink(uplink);
    const peers = await this.#hooks.peers();
    if (uplink.closed) return;
    for (const chunk of encodePeerList(this.#nextSeq(), peers)) uplink.socket.sendControl(chunk);
    uplink.ready = true;
    uplink.socket.persist(uplink.attachment);
  }

  #nextSeq(): number {
    this.#seq = (this.#seq + 1) >>> 0;
    return this.#seq;
  }
}
