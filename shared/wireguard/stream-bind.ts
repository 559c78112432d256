/**
 * A Bind whose datagrams ride a tunnel stream (WebSocket, gRPC) instead of UDP. The tunnel
 * transport plugs in from outside: `attach(sink)` receives what the device sends, `deliver`
 * hands the device what arrived. Streams come and go; while none is attached, sends are
 * dropped and counted, never queued (deep queues inside a TCP stream only add latency).
 *
 * Endpoints are SideroLink's virtual `addr:port` (`[fdae:41e4:649b:9304::1]:50888`): what `wg`
 * shows as the peer's endpoint in tunnel mode, and on the server's uplink the tag that routes
 * each datagram to its node. The address bytes (cookie MAC2, rate limiting) are the virtual
 * address, so every node behind one relay is its own source.
 */
import { formatAddress, parseAddress } from "./allowed-ips.ts";
import type { Bind, BindReceiveHandler, Endpoint } from "./bind.ts";

export class StreamEndpoint implements Endpoint {
  readonly key: string;
  readonly addressBytes: Uint8Array;
  readonly port: number;

  constructor(addressBytes: Uint8Array, port: number) {
    this.addressBytes = addressBytes;
    this.port = port;
    const address = formatAddress(addressBytes);
    this.key = addressBytes.length === 16 ? `[${address}]:${port}` : `${address}:${port}`;
  }

  toString(): string {
    return this.key;
  }
}

/** Parses `1.2.3.4:5` or `[fd00::1]:5`; throws naming the text when it is neither. */
export function parseStreamEndpoint(text: string): StreamEndpoint {
  const match = /^(?:\[([0-9A-Fa-f:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(text);
  const port = match === null ? Number.NaN : Number(match[3]);
  if (match === null || port > 65535) {
    throw new RangeError(
      `invalid endpoint ${JSON.stringify(text)}: expected addr:port or [addr]:port`,
    );
  }
  return new StreamEndpoint(parseAddress(match[1] ?? match[2]), port);
}

export type StreamSink = (datagrams: readonly Uint8Array[], to: StreamEndpoint) => void;

export interface StreamBind extends Bind {
  /** Connects (or with null disconnects) the tunnel that carries outgoing datagrams. */
  attach(sink: StreamSink | null): void;
  /** Hands datagrams that arrived through the tunnel to the device. */
  deliver(datagrams: readonly Uint8Array[], from: StreamEndpoint): void;
  /** Datagrams sent while no tunnel was attached, or to a non-stream endpoint. */
  readonly drops: number;
}

export function createStreamBind(): StreamBind {
  let handler: BindReceiveHandler | null = null;
  let sink: StreamSink | null = null;
  let drops = 0;
  return {
    port: 0,
    get drops() {
      return drops;
    },
    async open(receive) {
      handler = receive;
    },
    send(datagrams, to) {
      if (sink === null || !(to instanceof StreamEndpoint)) drops += datagrams.length;
      else sink(datagrams, to);
    },
    parseEndpoint: parseStreamEndpoint,
    attach(next) {
      sink = next;
    },
    deliver(datagrams, from) {
      handler?.(datagrams, from);
    },
    async close() {
      handler = null;
      sink = null;
    },
  };
}
