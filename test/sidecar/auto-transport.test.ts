/**
 * `--transport auto` (sidecar/transport/auto.ts) over stand-in transports whose state a test sets:
 * the fallback to the HTTP-only tunnel when the preferred transport fails, the probes back, the
 * reason it reports, and that a replaced transport's terminal close provisions nothing.
 */
import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { createLogger } from "../../sidecar/log.ts";
import { type AutoTransport, createAutoTransport } from "../../sidecar/transport/auto.ts";
import {
  createTransportStats,
  type NodeTransport,
  type TransportKind,
  type TransportState,
} from "../../sidecar/transport/transport.ts";
import { eventually } from "../support/eventually.ts";

class StandIn implements NodeTransport {
  readonly kind: TransportKind;
  readonly stats = createTransportStats();
  state: TransportState = "connecting";
  lastError: string | undefined;
  closed = false;
  readonly sent: number[] = [];
  readonly isCurrent: () => boolean;
  constructor(kind: TransportKind, isCurrent: () => boolean) {
    this.kind = kind;
    this.isCurrent = isCurrent;
  }
  send(datagrams: readonly Uint8Array[]): void {
    for (const d of datagrams) this.sent.push(d[0]);
  }
  async close(): Promise<void> {
    this.closed = true;
    this.state = "stopped";
  }
}

function autoOver(probe: () => boolean) {
  const opened: StandIn[] = [];
  const lines: string[] = [];
  const transport: AutoTransport = createAutoTransport({
    preferred: "websocket",
    create(kind, isCurrent) {
      const created = new StandIn(kind, isCurrent);
      opened.push(created);
      return created;
    },
    probe: async () => probe(),
    log: createLogger("test", { write: (line) => lines.push(line), level: "info" }),
    fallbackAfterMs: 200,
    probeIntervalMs: 300,
  });
  return { transport, opened, lines };
}

describe("--transport auto", () => {
  it("starts on the preferred transport and stays while it is connected", async () => {
    const { transport, opened } = autoOver(() => true);
    opened[0].state = "connected";
    opened[0].stats.connects = 1;
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.equal(transport.kind, "websocket");
    assert.equal(opened.length, 1);
    assert.equal(transport.reason, "websocket: preferred for this relay URL");
    transport.send([Uint8Array.of(4)]);
    assert.deepEqual(opened[0].sent, [4]);
    await transport.close();
  });

  it("falls back to http when the preferred transport fails before connecting, saying why", async () => {
    let works = false;
    const { transport, opened, lines } = autoOver(() => works);
    opened[0].state = "retrying";
    opened[0].lastError = "HTTP 426 from wss://relay/v1/networks/edge/tunnel";
    await eventually("the fallback", () => transport.kind === "http", 5_000);
    assert.equal(opened[0].closed, true, "the failed transport is closed");
    assert.match(
      transport.reason,
      /^http: websocket failed \(HTTP 426 from wss:\/\/relay\/v1\/networks\/edge\/tunnel\); probing websocket every 300 ms$/,
    );
    assert.ok(lines.some((line) => /"msg":"transport changed".*"to":"http"/.test(line)));
    opened[1].state = "connected";
    transport.send([Uint8Array.of(7)]);
    assert.deepEqual(opened[1].sent, [7], "datagrams go to the transport in use");

    // A failed probe keeps http and says when the next comes; a good one moves back.
    await eventually("a failed probe", () => /still fails/.test(transport.reason), 5_000);
    assert.equal(transport.kind, "http");
    works = true;
    await eventually("the move back", () => transport.kind === "websocket", 10_000);
    assert.equal(transport.reason, "websocket: gets through again (probe succeeded)");
    assert.equal(opened[1].closed, true, "the fallback is closed once replaced");
    assert.equal(opened[1].isCurrent(), false, "a replaced transport's terminal close is ignored");
    assert.equal(opened[2].isCurrent(), true);
    await transport.close();
    assert.equal(opened[2].closed, true);
  });

  it("a preferred transport that worked gets fallbackAfterMs to come back before the fallback", async () => {
    const { transport, opened } = autoOver(() => false);
    opened[0].state = "connected";
    opened[0].stats.connects = 1;
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    opened[0].state = "retrying";
    await new Promise((resolve) => setTimeout(resolve, 50));
    assert.equal(transport.kind, "websocket", "not at once");
    await eventually("the fallback after the grace", () => transport.kind === "http", 5_000);
    await transport.close();
  });

  it("reports counters summed over every transport it held, so a switch does not reset status", async () => {
    let works = false;
    const { transport, opened } = autoOver(() => works);
    opened[0].stats.connects = 1;
    opened[0].stats.txDatagrams = 5;
    opened[0].state = "retrying";
    await eventually("the fallback", () => transport.kind === "http", 5_000);
    opened[1].state = "connected";
    opened[1].stats.connects = 1;
    opened[1].stats.txDatagrams = 3;
    assert.equal(transport.stats.connects, 2);
    assert.equal(transport.stats.txDatagrams, 8);
    works = true;
    await eventually("the move back", () => transport.kind === "websocket", 10_000);
    opened[2].stats.connects = 1;
    assert.equal(transport.stats.connects, 3, "the first, the fallback and the return");
    assert.equal(transport.stats.txDatagrams, 8);
    await transport.close();
  });
});
