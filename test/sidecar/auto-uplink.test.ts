/**
 * `serve --transport auto` at the transport level (sidecar/uplink/auto-uplink.ts): the server's
 * uplink to the real Node relay on loopback, through a small reverse proxy in this test that
 * passes ordinary requests (streamed both ways) and, until the test allows it, forwards a
 * WebSocket handshake as a plain GET without `Upgrade`, as nginx's stock proxy_pass does: the
 * relay then answers 426 itself. The uplink must fall back to the HTTP-only tunnel, carry peers
 * and datagrams there, probe without disturbing it, and move back to the WebSocket once upgrades
 * pass. WireGuard is replaced by a recording peer table and WireGuard-shaped datagrams; the node
 * side is the sidecar's own WebSocket transport, straight to the relay.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import http from "node:http";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import {
  describeNetwork,
  initializeNetwork,
  type NetworkSecrets,
  type NetworkSummary,
} from "../../relay/app/networks.ts";
import { type RelayServer, startRelayServer } from "../../relay/node/server.ts";
import { parseAddrPort } from "../../shared/net/ip.ts";
import { parseApiUrl } from "../../shared/siderolink/api-url.ts";
import { formatKey, generatePrivateKey, publicKey } from "../../shared/siderolink/keys.ts";
import { createLogger } from "../../sidecar/log.ts";
import { NO_PROXY } from "../../sidecar/net/proxy.ts";
import { createProvisionTransport, provision } from "../../sidecar/provision-client.ts";
import type { NodeTransport } from "../../sidecar/transport/transport.ts";
import { createWebSocketTransport, tunnelUrl } from "../../sidecar/transport/websocket.ts";
import { type AutoUplink, connectAutoUplink } from "../../sidecar/uplink/auto-uplink.ts";
import { PeerReconciler, type PeerTable, type UplinkPeer } from "../../sidecar/uplink/peers.ts";
import { eventually } from "../support/eventually.ts";

const tls = { insecure: false };
const HOP_BY_HOP = ["upgrade", "connection", "sec-websocket-key", "sec-websocket-version"];

/** A WireGuard transport message (type 4) whose body carries `marker`. */
function datagram(marker: number): Uint8Array {
  const bytes = new Uint8Array(64);
  bytes[0] = 4;
  new DataView(bytes.buffer).setUint32(8, marker);
  return bytes;
}
const markerOf = (bytes: Uint8Array): number =>
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).getUint32(8);

class RecordingTable implements PeerTable {
  readonly peers = new Map<string, UplinkPeer>();
  async setPeer(peer: UplinkPeer): Promise<void> {
    this.peers.set(peer.publicKey, peer);
  }
  async removePeer(peer: UplinkPeer): Promise<void> {
    this.peers.delete(peer.publicKey);
  }
}

/** The reverse proxy: `allowUpgrade` decides whether a WebSocket handshake gets through. */
function startReverseProxy(relayPort: number) {
  const state = { allowUpgrade: false, upgradesRefused: 0 };
  const forward = (request: http.IncomingMessage, headers: http.OutgoingHttpHeaders) =>
    http.request({
      host: "127.0.0.1",
      port: relayPort,
      method: request.method,
      path: request.url,
      headers,
    });
  const server = http.createServer((request, response) => {
    const upstream = forward(request, request.headers);
    upstream.on("response", (answer) => {
      response.writeHead(answer.statusCode ?? 502, answer.headers);
      response.flushHeaders();
      answer.pipe(response);
    });
    upstream.on("error", () => response.destroy());
    request.pipe(upstream);
  });
  server.on("upgrade", (request: http.IncomingMessage, socket: net.Socket, head: Buffer) => {
    // A client that hangs up first (a probe, done with its answer) is no error of the proxy's.
    socket.on("error", () => socket.destroy());
    if (!state.allowUpgrade) {
      state.upgradesRefused++;
      const headers = { ...request.headers };
      for (const name of HOP_BY_HOP) delete headers[name];
      const upstream = forward(request, headers);
      upstream.on("response", (answer) => {
        socket.write(
          `HTTP/1.1 ${answer.statusCode} ${answer.statusMessage}\r\nconnection: close\r\ncontent-type: ${answer.headers["content-type"]}\r\n\r\n`,
        );
        answer.pipe(socket);
      });
      upstream.on("error", () => socket.destroy());
      upstream.end();
      return;
    }
    const upstream = net.connect(relayPort, "127.0.0.1", () => {
      const lines = [`${request.method} ${request.url} HTTP/1.1`];
      for (let i = 0; i < request.rawHeaders.length; i += 2)
        lines.push(`${request.rawHeaders[i]}: ${request.rawHeaders[i + 1]}`);
      upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
      upstream.write(head);
      upstream.pipe(socket).pipe(upstream);
    });
    upstream.on("error", () => socket.destroy());
    socket.on("close", () => upstream.destroy());
  });
  return { server, state };
}

describe("serve --transport auto: the uplink behind a proxy that drops Upgrade", {
  timeout: 60_000,
}, () => {
  let dataDir: string;
  let relay: RelayServer;
  let proxy: ReturnType<typeof startReverseProxy>;
  let proxyUrl: string;
  let network: NetworkSummary & NetworkSecrets;
  let uplink: AutoUplink;
  const table = new RecordingTable();
  const lines: string[] = [];
  const fromNodes: { tag: string; marker: number }[] = [];
  const transports: NodeTransport[] = [];
  let fatal: string | undefined;

  before(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "auto-uplink-"));
    relay = await startRelayServer({ host: "127.0.0.1", port: 0, dataDir });
    const runtime = await relay.directory.runtime("edge");
    const created = await initializeNetwork(runtime);
    network = { ...(await describeNetwork(runtime, relay.nodeBaseUrl, created)), ...created };
    proxy = startReverseProxy(relay.port);
    await new Promise<void>((resolve) => proxy.server.listen(0, "127.0.0.1", resolve));
    proxyUrl = `http://127.0.0.1:${(proxy.server.address() as net.AddressInfo).port}`;
  });

  after(async () => {
    for (const transport of transports) await transport.close();
    await uplink?.close();
    proxy?.server.closeAllConnections();
    proxy?.server.close();
    await relay?.close();
    rmSync(dataDir, { recursive: true, force: true });
  });

  /** A provisioned node on its own WebSocket tunnel; returns its tag and what it received. */
  const startNode = async () => {
    const api = parseApiUrl(network.apiUrl);
    const result = await provision(createProvisionTransport(api, "grpc", tls), {
      nodeUuid: randomUUID(),
      nodePublicKey: formatKey(publicKey(generatePrivateKey())),
      joinToken: network.joinToken,
      uniqueToken: "unique",
      wireguardOverGrpc: true,
    });
    const received: number[] = [];
    const transport = createWebSocketTransport({
      url: tunnelUrl(`http://127.0.0.1:${relay.port}`, "edge"),
      peerAddrPort: result.grpcPeerAddrPort,
      tls,
      proxy: NO_PROXY,
      log: createLogger("node", { write: () => {}, level: "error" }),
      retryIntervalMs: 100,
      onDatagrams: (datagrams) => {
        for (const d of datagrams) received.push(markerOf(d));
      },
      onTerminal: () => {},
    });
    transports.push(transport);
    const tag = parseAddrPort(result.grpcPeerAddrPort).address;
    return { transport, tag, received, address: result.nodeAddressPrefix.split("/")[0] };
  };

  /** Datagrams go node -> server and server -> node over the uplink in use. */
  const roundTrip = async (node: Awaited<ReturnType<typeof startNode>>, marker: number) => {
    const tagHex = Buffer.from(node.tag).toString("hex");
    await eventually("a datagram to reach the server", () => {
      node.transport.send([datagram(marker)]);
      return fromNodes.some((d) => d.tag === tagHex && d.marker === marker);
    });
    await eventually("a datagram to reach the node", () => {
      uplink.send([datagram(marker + 1)], node.tag);
      return node.received.includes(marker + 1);
    });
  };

  it("falls back to the HTTP-only tunnel when the relay answers the handshake with 426, and carries peers and datagrams there", async () => {
    uplink = connectAutoUplink({
      relayUrl: proxyUrl,
      network: "edge",
      secret: network.uplinkSecret,
      serverPublicKey: publicKey(generatePrivateKey()),
      reconciler: new PeerReconciler(table),
      tls,
      proxy: NO_PROXY,
      log: createLogger("serve", { write: (line) => lines.push(line), level: "info" }),
      retryIntervalMs: 100,
      fallbackAfterMs: 500,
      probeIntervalMs: 300,
      onDatagrams(tags, datagrams) {
        for (let i = 0; i < datagrams.length; i++) {
          fromNodes.push({
            tag: Buffer.from(tags[i]).toString("hex"),
            marker: markerOf(datagrams[i]),
          });
        }
      },
      onFatal(reason) {
        fatal = reason;
      },
    });
    await eventually("the uplink on http, synced", () => uplink.kind === "http" && uplink.synced);
    assert.match(
      uplink.reason,
      /^http: websocket failed \(.*426.*\); probing websocket every 300 ms$/,
    );
    assert.ok(proxy.state.upgradesRefused >= 1, "the handshake went through the proxy");
    assert.ok(lines.some((line) => /"msg":"transport changed".*"to":"http"/.test(line)));

    const node = await startNode();
    assert.ok(
      [...table.peers.values()].some((peer) => peer.address === node.address),
      "the uplink on http applied the new peer before Provision answered",
    );
    await roundTrip(node, 100);

    // Probes fail while upgrades are dropped, and leave the live uplink alone.
    const refused = proxy.state.upgradesRefused;
    await eventually(
      "a probe through the proxy",
      () => proxy.state.upgradesRefused > refused,
      10_000,
    );
    await eventually("the failed probe's reason", () => /still fails/.test(uplink.reason), 10_000);
    assert.equal(uplink.kind, "http");
    await roundTrip(node, 200);
    assert.equal(fatal, undefined);
  });

  it("moves back to the WebSocket once upgrades pass, and carries datagrams there", async () => {
    proxy.state.allowUpgrade = true;
    await eventually(
      "the uplink back on websocket, synced",
      () => uplink.kind === "websocket" && uplink.synced,
      20_000,
    );
    assert.equal(uplink.reason, "websocket: gets through again (probe succeeded)");
    const node = await startNode();
    await roundTrip(node, 300);
    assert.equal(fatal, undefined, "the probe's refusal (no credential) is not the uplink's");
  });
});
