/**
 * What the relay app needs to serve one network, and how it finds networks. Each runtime
 * provides these: on Node an in-process directory over one SQLite file (relay/node/), on
 * Workers one Durable Object per network, whose directory knows only itself (relay/worker/).
 */

import { parseIPv6 } from "../../shared/net/ip.ts";
import { parseKey } from "../../shared/siderolink/keys.ts";
import type { PeerEntry } from "../../shared/tunnel/decode.ts";
import type { Clock } from "../../shared/wireguard/clock.ts";
import { Hub, type HubLimits } from "../hub/hub.ts";
import type { SocketAttachment } from "../hub/socket.ts";
import type { NetworkStore, PeerRecord } from "../store/store.ts";
import { type RelayLog, SILENT_LOG } from "./log.ts";

/** One network's live state: its storage and its packet switch. */
export interface NetworkRuntime {
  readonly name: string;
  readonly store: NetworkStore;
  readonly hub: Hub;
  /** Where the runtime's adapters log stream opens and closes (log.ts). */
  readonly log: RelayLog;
  /**
   * Completes the WebSocket upgrade `request` asks for and returns the response that does so.
   * With `attach`, the accepted socket joins the hub under that attachment; with `refuse`, it is
   * closed at once with that code and reason (a WebSocket client reads the reason; an HTTP
   * status it mostly cannot).
   */
  acceptWebSocket(request: Request, admission: Admission): Response | Promise<Response>;
}

export type Admission =
  | { readonly attach: SocketAttachment }
  | { readonly refuse: { readonly code: number; readonly reason: string } };

/** How the app finds networks. */
export interface RelayDirectory {
  /**
   * The runtime for network `name` (a validated name), whether or not the network exists in its
   * store yet: `runtime.store.network()` says.
   */
  runtime(name: string): Promise<NetworkRuntime>;
  /** Names of the networks this directory holds. */
  list(): Promise<string[]>;
  /** Runtimes whose hubs are live in this process, for /metrics. */
  live(): Iterable<NetworkRuntime>;
}

export interface NetworkRuntimeOptions {
  readonly store: NetworkStore;
  readonly acceptWebSocket: NetworkRuntime["acceptWebSocket"];
  readonly hubLimits?: Partial<HubLimits>;
  readonly clock?: Clock;
  readonly log?: RelayLog;
}

/** Builds a runtime whose hub reads and records the uplink's state through `store`. */
export function createNetworkRuntime(options: NetworkRuntimeOptions): NetworkRuntime {
  const { store } = options;
  const log = options.log ?? SILENT_LOG;
  const hub = new Hub({
    limits: options.hubLimits,
    clock: options.clock,
    hooks: {
      async uplinkHello(serverPublicKey) {
        await store.setServerPublicKey(serverPublicKey);
        log({ event: "uplink_hello", network: store.name, serverPublicKey });
        return (await store.peers()).map(peerEntry);
      },
    },
  });
  return { name: store.name, store, hub, log, acceptWebSocket: options.acceptWebSocket };
}

/** A stored peer as the uplink's codec carries it. */
export function peerEntry(peer: PeerRecord): PeerEntry {
  return {
    publicKey: parseKey(peer.publicKey, "peer public key"),
    address: parseIPv6(peer.address),
    virtualAddress: parseIPv6(peer.virtualAddress),
  };
}
