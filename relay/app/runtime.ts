/**
 * What the relay app needs to serve one network, and how it finds networks. Each runtime
 * provides these: on Node an in-process directory over one SQLite file (relay/node/), on
 * Workers one Durable Object per network, whose directory knows only itself (relay/worker/).
 */

import { parseIPv6 } from "../../shared/net/ip.ts";
import { parseKey } from "../../shared/siderolink/keys.ts";
import type { PeerEntry } from "../../shared/tunnel/decode.ts";
import type { Clock } from "../../shared/wireguard/clock.ts";
import { Hub, type HubLimits, ServerKeyMismatchError } from "../hub/hub.ts";
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
  /**
   * Network `name` was just created through `runtime(name)` (or a create found it existing):
   * the directory records it, idempotently. On Workers this is what lets requests reach the
   * network's object at all (relay/worker/index.ts).
   */
  created(name: string): Promise<void>;
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
        if (!(await store.pinServerPublicKey(serverPublicKey))) {
          log({ event: "uplink_key_refused", network: store.name, serverPublicKey });
          throw new ServerKeyMismatchError(serverKeyMismatch(store.name));
        }
        log({ event: "uplink_hello", network: store.name, serverPublicKey });
      },
      async peers() {
        return (await store.peers()).map(peerEntry);
      },
    },
  });
  return { name: store.name, store, hub, log, acceptWebSocket: options.acceptWebSocket };
}

/**
 * Why an uplink with another server key is refused, and the operator action that lets it in
 * (a WebSocket close reason: at most 123 bytes).
 */
function serverKeyMismatch(network: string): string {
  return `server key is not the pinned one; reset: siderolink-relay network reset-server-key ${network}`;
}

/** A stored peer as the uplink's codec carries it. */
export function peerEntry(peer: PeerRecord): PeerEntry {
  return {
    publicKey: parseKey(peer.publicKey, "peer public key"),
    address: parseIPv6(peer.address),
    virtualAddress: parseIPv6(peer.virtualAddress),
  };
}
