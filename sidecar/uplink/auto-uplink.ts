/**
 * The uplink with `--transport auto`: the node role's transport switch (transport/auto.ts) over
 * uplinks. It starts on the WebSocket, falls back to the HTTP-only tunnel when the management
 * host's way to the relay drops `Upgrade`, and moves back once a probe gets through.
 *
 * The probe opens the uplink route without a credential: the relay completes the upgrade and
 * closes it at once ("unauthorized"), which proves the path carries WebSockets without touching
 * the live uplink. (A second uplink with the secret would take over from the live one at HELLO.)
 */
import { createTransportSwitch, SwitchedTransport } from "../transport/auto.ts";
import { probeWebSocket } from "../transport/probe.ts";
import { connectUplink, type Uplink, type UplinkOptions, uplinkUrl } from "./client.ts";

export interface AutoUplinkOptions extends Omit<UplinkOptions, "transport"> {
  /** Overrides FALLBACK_AFTER_MS and PROBE_INTERVAL_MS of transport/auto.ts (tests). */
  readonly fallbackAfterMs?: number;
  readonly probeIntervalMs?: number;
}

export interface AutoUplink extends Uplink {
  /** Which transport is in use and why. */
  readonly reason: string;
}

class AutoUplinkTransport extends SwitchedTransport<Uplink> implements AutoUplink {
  get synced(): boolean {
    return this.current.synced;
  }

  send(datagrams: readonly Uint8Array[], tag: Uint8Array): void {
    this.current.send(datagrams, tag);
  }
}

export function connectAutoUplink(options: AutoUplinkOptions): AutoUplink {
  const { relayUrl, network, tls, proxy } = options;
  const chosen = createTransportSwitch({
    preferred: "websocket",
    create: (kind, isCurrent) =>
      connectUplink({
        ...options,
        transport: kind,
        onFatal(reason, code) {
          if (isCurrent()) options.onFatal(reason, code);
        },
      }),
    probe: () => probeWebSocket(uplinkUrl(relayUrl, network), tls, proxy),
    log: options.log,
    fallbackAfterMs: options.fallbackAfterMs,
    probeIntervalMs: options.probeIntervalMs,
  });
  return new AutoUplinkTransport(chosen);
}
