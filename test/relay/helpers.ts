/**
 * Scripted clients for the relay tests: a server uplink and node streams over real WebSockets,
 * WireGuard-shaped datagrams, and a relay on loopback port 0 in a temporary data dir.
 */

import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { x25519 } from "@noble/curves/ed25519.js";
import { WebSocket } from "ws";
import { SILENT_LOG } from "../../relay/app/log.ts";
import {
  describeNetwork,
  initializeNetwork,
  type NetworkSecrets,
  type NetworkSummary,
} from "../../relay/app/networks.ts";
import {
  type RelayServer,
  type RelayServerOptions,
  startRelayServer,
} from "../../relay/node/server.ts";
import {
  type ControlMessage,
  decodeControl,
  decodeNodeDatagrams,
  decodePeerDatagrams,
} from "../../shared/tunnel/decode.ts";
import { createBatchEncoder, encodeAck, encodeHello } from "../../shared/tunnel/encode.ts";
import { FrameType, PROTOCOL_VERSION } from "../../shared/tunnel/frame.ts";
import { eventually } from "../support/eventually.ts";

export const WAIT_MS = 3_000;

export function tempDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), "relay-test-"));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export async function startRelay(
  dataDir: string,
  options: Partial<RelayServerOptions> = {},
): Promise<RelayServer> {
  return startRelayServer({
    host: "127.0.0.1",
    port: 0,
    dataDir,
    operatorToken: "operator-test-token",
    // Log records are tested where a relay runs as its own process (secrets-in-logs.test.ts).
    log: SILENT_LOG,
    ...options,
  });
}

/** Creates the network; the summary carries its secrets, as only the creating call's does. */
export async function createNetwork(
  server: RelayServer,
  name: string,
): Promise<NetworkSummary & NetworkSecrets> {
  const runtime = await server.directory.runtime(name);
  const created = await initializeNetwork(runtime);
  const summary = await describeNetwork(
    await server.directory.runtime(name),
    server.nodeBaseUrl,
    created,
  );
  return {
    ...summary,
    adminSecret: created.adminSecret,
    uplinkSecret: created.uplinkSecret,
    joinToken: created.joinToken,
  };
}

export function randomKey(): Uint8Array {
  return x25519.getPublicKey(x25519.utils.randomSecretKey());
}

export function base64(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString("base64");
}

/** A WireGuard transport data message (type 4) of `size` bytes whose body carries `marker`. */
export function transportMessage(marker: number, size = 64): Uint8Array {
  const datagram = new Uint8Array(size);
  datagram[0] = 4;
  new DataView(datagram.buffer).setUint32(8, marker);
  return datagram;
}

export function markerOf(datagram: Uint8Array): number {
  return new DataView(datagram.buffer, datagram.byteOffset, datagram.byteLength).getUint32(8);
}

export interface Closed {
  readonly code: number;
  readonly reason: string;
}

/** A WebSocket that records what it receives. */
class RecordingSocket {
  readonly ws: WebSocket;
  readonly binary: Uint8Array[] = [];
  readonly text: string[] = [];
  closed: Closed | undefined;
  readonly opened: Promise<void>;

  constructor(url: string, headers: Record<string, string>) {
    this.ws = new WebSocket(url, { headers });
    this.ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.binary.push(new Uint8Array(data));
      else this.text.push(data.toString());
    });
    this.ws.on("close", (code, reason) => {
      this.closed = { code, reason: reason.toString() };
    });
    this.ws.on("error", () => {});
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("unexpected-response", (_request, response) =>
        reject(new Error(`upgrade refused with HTTP ${response.statusCode}`)),
      );
    });
  }

  send(data: Uint8Array | string): void {
    this.ws.send(data);
  }

  async waitClosed(): Promise<Closed> {
    return eventually("the socket to close", () => this.closed);
  }

  close(): void {
    this.ws.close();
  }
}

/** A node's tunnel stream. */
export class NodeStream extends RecordingSocket {
  constructor(
    server: RelayServer,
    network: string,
    peerAddrPort: string,
    via: "header" | "query" = "header",
  ) {
    const path = `/v1/networks/${network}/tunnel`;
    const url =
      via === "query"
        ? `${server.url}${path}?x-siderolink-ipv6-addr=${encodeURIComponent(peerAddrPort)}`
        : `${server.url}${path}`;
    super(
      url.replace(/^http/, "ws"),
      via === "header" ? { "x-siderolink-ipv6-addr": peerAddrPort } : {},
    );
  }

  sendDatagrams(datagrams: readonly Uint8Array[]): void {
    const encoder = createBatchEncoder(false);
    for (const datagram of datagrams) assert.ok(encoder.add(datagram));
    this.send(encoder.finish().slice());
  }

  /** Every datagram received so far, batches flattened. */
  datagrams(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const frame of this.binary) {
      const views: Uint8Array[] = [];
      const count = decodeNodeDatagrams(frame, views);
      out.push(...views.slice(0, count));
    }
    return out;
  }
}

/** The management server's uplink; acknowledges peer events unless told not to. */
export class Uplink extends RecordingSocket {
  readonly serverKey: Uint8Array;
  autoAck = true;
  readonly control: ControlMessage[] = [];
  readonly received: { tag: Uint8Array; datagram: Uint8Array }[] = [];

  /** `serverKey`: the key HELLO presents (default: a fresh one, which only a new network pins). */
  constructor(
    server: Pick<RelayServer, "url">,
    network: string,
    uplinkSecret: string,
    serverKey?: Uint8Array,
  ) {
    super(`${server.url.replace(/^http/, "ws")}/v1/networks/${network}/uplink`, {
      authorization: `Bearer ${uplinkSecret}`,
    });
    this.serverKey = serverKey ?? randomKey();
    this.ws.on("message", (data: Buffer, isBinary: boolean) => {
      if (!isBinary) return;
      const frame = new Uint8Array(data);
      if (frame[0] === FrameType.PeerDatagrams) {
        const tags: Uint8Array[] = [];
        const views: Uint8Array[] = [];
        const count = decodePeerDatagrams(frame, tags, views);
        for (let i = 0; i < count; i++) this.received.push({ tag: tags[i], datagram: views[i] });
        return;
      }
      const message = decodeControl(frame);
      this.control.push(message);
      if (this.autoAck && message.type !== FrameType.Hello && message.type !== FrameType.Ack) {
        if (message.type !== FrameType.PeerList || message.last) this.send(encodeAck(message.seq));
      }
    });
  }

  /** Opens, says HELLO and waits for the peer list. */
  async ready(): Promise<ControlMessage & { type: typeof FrameType.PeerList }> {
    await this.opened;
    this.send(encodeHello(PROTOCOL_VERSION, this.serverKey));
    return eventually("the peer list", () =>
      this.control.find(
        (m): m is ControlMessage & { type: typeof FrameType.PeerList } =>
          m.type === FrameType.PeerList && m.last,
      ),
    );
  }

  sendDatagrams(items: readonly { tag: Uint8Array; datagram: Uint8Array }[]): void {
    const encoder = createBatchEncoder(true);
    for (const { tag, datagram } of items) assert.ok(encoder.add(datagram, tag));
    this.send(encoder.finish().slice());
  }
}
