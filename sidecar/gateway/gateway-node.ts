/**
 * One Talos machine behind the gateway: its relay tunnel (tagged with its virtual address) and
 * its LAN side, either a CreateStream the machine holds open (`wireguard_over_grpc`) or its
 * kernel WireGuard's UDP source on the LAN. Datagrams pass through as they are: the gateway has
 * no WireGuard key and sees only ciphertext.
 *
 * The relay tunnel opens with the machine's first sign of life (its Provision, stream or
 * datagram) and ends once the machine has been silent for the idle timeout with no stream open.
 * A relay that ends the tunnel for good (peer not allowed, replaced, removed) ends the machine's
 * stream with the status Talos expects: Aborted for "peer replaced", PermissionDenied otherwise.
 */
import { Code, ConnectError } from "@connectrpc/connect";
import { DatagramStream } from "../../shared/tunnel/datagram-stream.ts";
import { REASON_PEER_REPLACED } from "../../shared/tunnel/frame.ts";
import type { Endpoint } from "../../shared/wireguard/bind.ts";
import type { Logger } from "../log.ts";
import type { AutoTransport } from "../transport/auto.ts";
import {
  HIGH_WATER_BYTES,
  type NodeTransport,
  type TransportHandlers,
} from "../transport/transport.ts";

export type MachineMode = "grpc" | "udp";

/** Why a datagram for or from one machine went nowhere (the relay side counts its own). */
export const NodeDropReason = {
  /** From the relay for a gRPC machine with no stream open. */
  NoMachineStream: "noMachineStream",
  /** From the relay while the machine's stream had HIGH_WATER_BYTES unread. */
  MachineCongested: "machineCongested",
  /** From the relay for a UDP machine whose source port is not known yet. */
  NoMachineEndpoint: "noMachineEndpoint",
} as const;
export type NodeDropReason = (typeof NodeDropReason)[keyof typeof NodeDropReason];

export interface NodeReport {
  readonly virtual: string;
  readonly mode: MachineMode;
  /** The machine's LAN address (UDP: with the source port once learned). */
  readonly lan: string | null;
  readonly relay: {
    /** The transport in use: websocket, grpc, http, or none while no tunnel is open. */
    readonly transport: string;
    /** Under `--transport auto`: which transport is in use and why; null otherwise. */
    readonly reason: string | null;
    readonly state: string;
    readonly connects: number;
    readonly lastError: string | null;
  };
  readonly streamOpen: boolean;
  readonly streams: number;
  readonly fromMachine: { readonly datagrams: number; readonly bytes: number };
  readonly toMachine: { readonly datagrams: number; readonly bytes: number };
  readonly drops: Readonly<Record<string, number>>;
  readonly lastHeardSecondsAgo: number;
}

export interface GatewayNodeOptions {
  readonly peerAddrPort: string;
  readonly mode: MachineMode;
  readonly openTunnel: (handlers: TransportHandlers) => NodeTransport;
  /** Sends to a UDP machine on the LAN. */
  readonly sendUdp: (datagrams: readonly Uint8Array[], to: Endpoint) => void;
  /** The relay refused this machine for good; the gateway forgets it. */
  readonly onRefused: (node: GatewayNode, reason: string) => void;
  readonly log: Logger;
  readonly now: () => number;
}

export class GatewayNode {
  readonly peerAddrPort: string;
  readonly #options: GatewayNodeOptions;
  #mode: MachineMode;
  #lan: string | null = null;
  #udpTo: Endpoint | undefined;
  #transport: NodeTransport | undefined;
  #stream: DatagramStream | undefined;
  #lastHeard: number;
  #streams = 0;
  readonly #from = { datagrams: 0, bytes: 0 };
  readonly #to = { datagrams: 0, bytes: 0 };
  readonly #drops: Record<NodeDropReason, number> = {
    noMachineStream: 0,
    machineCongested: 0,
    noMachineEndpoint: 0,
  };

  constructor(options: GatewayNodeOptions) {
    this.peerAddrPort = options.peerAddrPort;
    this.#options = options;
    this.#mode = options.mode;
    this.#lastHeard = options.now();
  }

  get mode(): MachineMode {
    return this.#mode;
  }

  /** Opens the relay tunnel now (a machine that just provisioned will send soon). */
  touch(mode: MachineMode, lan: string | undefined): void {
    this.#mode = mode;
    if (lan !== undefined && mode === "grpc") this.#lan = lan;
    this.#lastHeard = this.#options.now();
    this.#tunnel();
  }

  /** A new CreateStream from the machine; an older one ends as replaced. */
  attachStream(lan: string | undefined): DatagramStream {
    this.#stream?.end(new ConnectError(REASON_PEER_REPLACED, Code.Aborted));
    const stream = new DatagramStream();
    this.#stream = stream;
    this.#streams++;
    this.touch("grpc", lan);
    return stream;
  }

  detachStream(stream: DatagramStream): void {
    stream.end();
    if (this.#stream !== stream) return;
    this.#stream = undefined;
    this.#lastHeard = this.#options.now();
  }

  /** Datagrams from the machine; `from` is its UDP source (UDP mode). */
  fromMachine(datagrams: readonly Uint8Array[], from?: Endpoint): void {
    this.#lastHeard = this.#options.now();
    if (from !== undefined && from !== this.#udpTo) {
      this.#udpTo = from;
      this.#lan = from.toString();
    }
    this.#from.datagrams += datagrams.length;
    for (const datagram of datagrams) this.#from.bytes += datagram.length;
    this.#tunnel().send(datagrams);
  }

  /** Whether the machine has been silent past `timeoutMs` with no stream open. */
  idle(now: number, timeoutMs: number): boolean {
    return this.#stream === undefined && now - this.#lastHeard > timeoutMs;
  }

  /** Ends the relay tunnel and the machine's stream. */
  async close(): Promise<void> {
    this.#stream?.end(new ConnectError("the site gateway is shutting down", Code.Unavailable));
    this.#stream = undefined;
    const transport = this.#transport;
    this.#transport = undefined;
    await transport?.close();
  }

  report(now: number): NodeReport {
    const transport = this.#transport;
    return {
      virtual: this.peerAddrPort,
      mode: this.#mode,
      lan: this.#lan,
      relay: {
        transport: transport?.kind ?? "none",
        reason:
          transport !== undefined && "reason" in transport
            ? (transport as AutoTransport).reason
            : null,
        state: transport?.state ?? "closed",
        connects: transport?.stats.connects ?? 0,
        lastError: transport?.lastError ?? null,
      },
      streamOpen: this.#stream !== undefined,
      streams: this.#streams,
      fromMachine: { ...this.#from },
      toMachine: { ...this.#to },
      drops: {
        ...this.#drops,
        relayNotConnected: transport?.stats.dropsNotConnected ?? 0,
        relayCongested: transport?.stats.dropsCongested ?? 0,
      },
      lastHeardSecondsAgo: Math.max(0, Math.round((now - this.#lastHeard) / 1000)),
    };
  }

  #tunnel(): NodeTransport {
    this.#transport ??= this.#options.openTunnel({
      onDatagrams: (datagrams) => this.#toMachine(datagrams),
      onTerminal: (reason) => this.#refused(reason),
      log: this.#options.log,
    });
    return this.#transport;
  }

  #toMachine(datagrams: readonly Uint8Array[]): void {
    if (this.#mode === "udp") {
      if (this.#udpTo === undefined) {
        this.#drops.noMachineEndpoint += datagrams.length;
        return;
      }
      this.#options.sendUdp(datagrams, this.#udpTo);
      this.#counted(datagrams);
      return;
    }
    const stream = this.#stream;
    if (stream === undefined) {
      this.#drops.noMachineStream += datagrams.length;
      return;
    }
    for (const datagram of datagrams) {
      if (stream.bufferedAmount > HIGH_WATER_BYTES) {
        this.#drops.machineCongested++;
        continue;
      }
      stream.push(datagram);
      this.#to.datagrams++;
      this.#to.bytes += datagram.length;
    }
  }

  #counted(datagrams: readonly Uint8Array[]): void {
    this.#to.datagrams += datagrams.length;
    for (const datagram of datagrams) this.#to.bytes += datagram.length;
  }

  #refused(reason: string): void {
    const code = reason === REASON_PEER_REPLACED ? Code.Aborted : Code.PermissionDenied;
    this.#stream?.end(new ConnectError(reason, code));
    this.#stream = undefined;
    this.#transport = undefined;
    this.#options.onRefused(this, reason);
  }
}
