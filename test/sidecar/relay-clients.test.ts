/**
 * The sidecar's clients against the real Node relay on loopback: Provision over gRPC, Connect
 * and gRPC-web; the server uplink (HELLO, peer list, ACK gating, reconnect reconciliation);
 * and the node's WebSocket, gRPC and HTTP-only tunnel transports, including the relay's terminal
 * closes. Everything runs twice: with the uplink over a WebSocket, and over the HTTP-only tunnel.
 * WireGuard itself is replaced by a recording peer table and WireGuard-shaped datagrams.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
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
import { type ApiUrl, parseApiUrl } from "../../shared/siderolink/api-url.ts";
import { formatKey, generatePrivateKey, publicKey } from "../../shared/siderolink/keys.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { ExitCode, SidecarError } from "../../sidecar/exit-codes.ts";
import { createLogger } from "../../sidecar/log.ts";
import { NO_PROXY } from "../../sidecar/net/proxy.ts";
import {
  createProvisionTransport,
  type ProvisionProtocol,
  type ProvisionResult,
  ProvisionRetryableError,
  provision,
} from "../../sidecar/provision-client.ts";
import { createGrpcNodeTransport } from "../../sidecar/transport/grpc.ts";
import { createHttpTunnelTransport, httpTunnelUrl } from "../../sidecar/transport/http-tunnel.ts";
import { type NodeTransport, SEND_QUEUE_LIMIT } from "../../sidecar/transport/transport.ts";
import { createWebSocketTransport, tunnelUrl } from "../../sidecar/transport/websocket.ts";
import { connectUplink, type Uplink } from "../../sidecar/uplink/client.ts";
import { PeerReconciler, type PeerTable, type UplinkPeer } from "../../sidecar/uplink/peers.ts";
import { eventually } from "../support/eventually.ts";

const quiet = createLogger("test", { write: () => {}, level: "error" });
const insecure = { insecure: false };

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
  readonly calls: string[] = [];
  async setPeer(peer: UplinkPeer): Promise<void> {
    // Configuring WireGuard takes a moment; the relay must wait for it.
    await new Promise((resolve) => setTimeout(resolve, 30));
    this.calls.push(`set ${peer.publicKey}`);
    this.peers.set(peer.publicKey, peer);
  }
  async removePeer(peer: UplinkPeer): Promise<void> {
    this.calls.push(`remove ${peer.publicKey}`);
    this.peers.delete(peer.publicKey);
  }
}

for (const uplinkTransport of ["websocket", "http"] as const) {
  describe(`sidecar clients against the Node relay (uplink over ${uplinkTransport})`, {
    timeout: 60_000,
  }, () => {
    let dataDir: string;
    let server: RelayServer;
    let network: NetworkSummary & NetworkSecrets;
    let api: ApiUrl;
    let uplink: Uplink | undefined;
    const table = new RecordingTable();
    const serverKey = generatePrivateKey();
    const fromNodes: { tag: string; marker: number }[] = [];
    const transports: NodeTransport[] = [];

    const startRelay = async (port = 0): Promise<void> => {
      server = await startRelayServer({ host: "127.0.0.1", port, dataDir });
    };

    const provisionAs = (
      protocol: ProvisionProtocol,
      joinToken = network.joinToken!,
    ): Promise<ProvisionResult> =>
      provision(createProvisionTransport(api, protocol, insecure), {
        nodeUuid: randomUUID(),
        nodePublicKey: formatKey(publicKey(generatePrivateKey())),
        joinToken,
        uniqueToken: "unique",
        wireguardOverGrpc: true,
      });

    const startUplink = (
      secret = network.uplinkSecret,
      onFatal: Parameters<typeof connectUplink>[0]["onFatal"] = () => {},
      key = serverKey,
    ): Uplink =>
      connectUplink({
        relayUrl: server.url,
        network: "edge",
        secret,
        serverPublicKey: publicKey(key),
        reconciler: new PeerReconciler(table),
        tls: insecure,
        proxy: NO_PROXY,
        transport: uplinkTransport,
        log: quiet,
        retryIntervalMs: 100,
        onDatagrams(tags, datagrams) {
          for (let i = 0; i < datagrams.length; i++) {
            fromNodes.push({
              tag: Buffer.from(tags[i]).toString("hex"),
              marker: markerOf(datagrams[i]),
            });
          }
        },
        onFatal,
      });

    before(async () => {
      dataDir = mkdtempSync(join(tmpdir(), "sidecar-clients-"));
      await startRelay();
      const runtime = await server.directory.runtime("edge");
      const created = await initializeNetwork(runtime);
      network = { ...(await describeNetwork(runtime, server.nodeBaseUrl, created)), ...created };
      api = parseApiUrl(network.apiUrl);
    });

    after(async () => {
      for (const transport of transports) await transport.close();
      await uplink?.close();
      await server?.close();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("Provision before any server uplink is retryable and says the management server is missing", async () => {
      await assert.rejects(provisionAs("grpc"), (error: unknown) => {
        assert.ok(error instanceof ProvisionRetryableError);
        assert.match(error.message, /^Unavailable: the management server is not connected/);
        return true;
      });
    });

    it("a wrong join token is refused with the credentials exit status on every protocol", async () => {
      for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
        await assert.rejects(provisionAs(protocol, "edge.wrong"), (error: unknown) => {
          assert.ok(error instanceof SidecarError, `${protocol}: ${error}`);
          assert.equal(error.exitCode, ExitCode.BadCredentials);
          assert.match(error.message, /the relay refused the join token \(invalid join token\)/);
          return true;
        });
      }
    });

    it("an unreachable relay is retryable", async () => {
      const down = parseApiUrl("grpc://127.0.0.1:9?jointoken=edge.x");
      await assert.rejects(
        provision(createProvisionTransport(down, "grpc", insecure), {
          nodeUuid: randomUUID(),
          nodePublicKey: formatKey(publicKey(generatePrivateKey())),
          uniqueToken: "u",
          wireguardOverGrpc: true,
        }),
        ProvisionRetryableError,
      );
    });

    it("the uplink registers the server key and the relay's Provision answers only after the peer is configured", async () => {
      uplink = startUplink();
      await eventually("the uplink to sync", () => uplink!.synced);
      for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
        const result = await provisionAs(protocol);
        assert.equal(result.serverPublicKey, formatKey(publicKey(serverKey)), protocol);
        assert.equal(result.serverAddress, network.serverAddress);
        assert.match(result.grpcPeerAddrPort, /^\[fdae:41e4:649b:9304:[0-9a-f:]+\]:50888$/);
        assert.deepEqual(result.endpoints, [result.grpcPeerAddrPort]);
        const address = result.nodeAddressPrefix.split("/")[0];
        const configured = [...table.peers.values()].find((peer) => peer.address === address);
        assert.ok(configured, `${protocol}: the peer was configured before Provision returned`);
        assert.equal(`[${configured.virtualAddress}]:50888`, result.grpcPeerAddrPort);
      }
    });

    for (const kind of ["websocket", "grpc", "http"] as const) {
      it(`the ${kind} tunnel carries datagrams both ways, tagged with the node's virtual address`, async () => {
        const result = await provisionAs("grpc");
        const received: number[] = [];
        const transport = openTransport(kind, result.grpcPeerAddrPort, {
          onDatagrams: (datagrams) => {
            for (const d of datagrams) received.push(markerOf(d));
          },
        });
        // The gRPC stream counts as connected once the relay answers, so keep sending until then.
        const tag = Buffer.from(parseAddrPort(result.grpcPeerAddrPort).address).toString("hex");
        await eventually("datagrams to reach the uplink", () => {
          transport.send([datagram(1), datagram(2)]);
          return fromNodes.some((d) => d.tag === tag && d.marker === 2);
        });
        const tagBytes = parseAddrPort(result.grpcPeerAddrPort).address;
        uplink!.send([datagram(10), datagram(11)], tagBytes);
        await eventually("datagrams to reach the node", () => received.includes(11));
        assert.deepEqual(received.slice(0, 2), [10, 11]);
        assert.equal(transport.state, "connected");
      });

      it(`the ${kind} tunnel sends what WireGuard gave it while it opened, once open: the newest ${SEND_QUEUE_LIMIT}, in order`, async () => {
        const result = await provisionAs("grpc");
        const tag = Buffer.from(parseAddrPort(result.grpcPeerAddrPort).address).toString("hex");
        const transport = openTransport(kind, result.grpcPeerAddrPort, {});
        assert.equal(transport.state, "connecting");
        // A restarted node's first handshake initiation comes before any stream is open; five
        // more than the queue holds push the five oldest out.
        for (let marker = 1; marker <= SEND_QUEUE_LIMIT + 5; marker++)
          transport.send([datagram(1000 + marker)]);
        const markers = () => fromNodes.filter((d) => d.tag === tag).map((d) => d.marker - 1000);
        await eventually(
          "the last held datagram to reach the uplink",
          () => markers().at(-1) === SEND_QUEUE_LIMIT + 5,
        );
        assert.deepEqual(
          markers(),
          Array.from({ length: SEND_QUEUE_LIMIT }, (_, i) => i + 6),
        );
        assert.equal(transport.stats.txDatagrams, SEND_QUEUE_LIMIT);
        assert.equal(transport.stats.dropsCongested, 5);
        assert.equal(transport.stats.dropsNotConnected, 0);
      });

      it(`the ${kind} tunnel reports "peer not allowed" as terminal`, async () => {
        let terminal: string | undefined;
        openTransport(kind, "[fdae:41e4:649b:9304::dead]:50888", {
          onTerminal: (reason) => {
            terminal = reason;
          },
        });
        assert.equal(await eventually("a terminal close", () => terminal), "peer not allowed");
      });

      it(`a second ${kind} stream for the same node ends the first with "peer replaced"`, async () => {
        const result = await provisionAs("grpc");
        let terminal: string | undefined;
        const first = openTransport(kind, result.grpcPeerAddrPort, {
          onTerminal: (reason) => {
            terminal = reason;
          },
        });
        // A gRPC stream counts as connected once the relay has answered: the server answers here.
        const tag = parseAddrPort(result.grpcPeerAddrPort).address;
        await eventually("the first stream to connect", () => {
          first.send([datagram(1)]);
          uplink!.send([datagram(2)], tag);
          return first.state === "connected";
        });
        // The second takes the address over once the server answers its handshake initiation
        // (a response whose receiver index is the initiation's sender index).
        const second = openTransport(kind, result.grpcPeerAddrPort, {});
        const initiation = new Uint8Array(148);
        initiation.set([1, 0, 0, 0, 0x2a, 0, 0, 0]);
        const response = new Uint8Array(92);
        response.set([2, 0, 0, 0, 7, 0, 0, 0, 0x2a, 0, 0, 0]);
        // Until the proof lands: the response counts only after the initiation reached the relay,
        // and a transport may report itself connected before its first message is through.
        const ended = await eventually("the first to be replaced", () => {
          second.send([initiation]);
          uplink!.send([response], tag);
          return terminal;
        });
        assert.equal(ended, "peer replaced");
        assert.equal(first.state, "stopped");
        await eventually("the second stream to be connected", () => second.state === "connected");
      });
    }

    it("after the relay restarts, the uplink reconnects and reconciles without setting any peer twice", async () => {
      const before = [...table.peers.keys()].sort();
      const sets = table.calls.filter((call) => call.startsWith("set")).length;
      const port = server.port;
      await server.close();
      await eventually("the uplink to notice", () => !uplink!.synced);
      await startRelay(port);
      await eventually("the uplink to sync again", () => uplink!.synced);
      assert.deepEqual([...table.peers.keys()].sort(), before);
      assert.equal(
        table.calls.filter((call) => call.startsWith("set")).length,
        sets,
        "no peer set again",
      );
      assert.equal(uplink!.stats.connects, 2);
    });

    it("a grpc stream cut by a relay restart reopens on the next outgoing datagram, without a retry timer", async () => {
      const result = await provisionAs("grpc");
      const tag = parseAddrPort(result.grpcPeerAddrPort).address;
      const tagHex = Buffer.from(tag).toString("hex");
      const transport = openTransport("grpc", result.grpcPeerAddrPort, {});
      await eventually("the stream to connect", () => transport.state === "connected");
      const port = server.port;
      await server.close();
      await eventually("the stream to notice", () => transport.state === "retrying");
      await startRelay(port);
      await eventually("the uplink to sync again", () => uplink!.synced);
      // Nothing reopens the stream until WireGuard sends: it stays down while the node is quiet.
      assert.equal(transport.state, "retrying");
      transport.send([datagram(21)]);
      assert.equal(transport.state, "connecting", "the datagram opened the stream at once");
      await eventually("the datagram to reach the uplink", () =>
        fromNodes.some((d) => d.tag === tagHex && d.marker === 21),
      );
      assert.equal(transport.state, "connected");
      assert.equal(transport.stats.connects, 2);
      assert.match(transport.lastError ?? "", /reset|without a status|Unavailable|GOAWAY|closed/i);
    });

    it("a wrong uplink secret, or the admin secret, is fatal for the uplink, with the relay's reason", async () => {
      for (const [secret, reason] of [
        ["wrong", /invalid uplink secret/],
        [network.adminSecret, /admin secret does not open the uplink/],
      ] as const) {
        let fatal: { reason: string; code: number } | undefined;
        const refused = startUplink(secret, (why, code) => {
          fatal = { reason: why, code };
        });
        const result = await eventually("the refusal", () => fatal);
        assert.equal(result.code, 4401);
        assert.match(result.reason, reason);
        assert.equal(refused.state, "stopped");
      }
    });

    it("a server key other than the pinned one is fatal for the uplink, naming the operator's reset", async () => {
      // The uplink of the tests above pinned serverKey.
      let fatal: { reason: string; code: number } | undefined;
      const refused = startUplink(
        network.uplinkSecret,
        (reason, code) => {
          fatal = { reason, code };
        },
        generatePrivateKey(),
      );
      const result = await eventually("the refusal", () => fatal);
      assert.equal(result.code, CloseCode.ServerKeyMismatch);
      assert.match(result.reason, /siderolink-relay network reset-server-key edge/);
      assert.equal(refused.state, "stopped");
    });

    function openTransport(
      kind: "websocket" | "grpc" | "http",
      peerAddrPort: string,
      handlers: {
        onDatagrams?: (d: readonly Uint8Array[]) => void;
        onTerminal?: (reason: string) => void;
      },
    ): NodeTransport {
      const common = {
        onDatagrams: handlers.onDatagrams ?? (() => {}),
        onTerminal: handlers.onTerminal ?? (() => {}),
        log: quiet,
        retryIntervalMs: 100,
        peerAddrPort,
        tls: insecure,
        proxy: NO_PROXY,
      };
      const origin = `http://127.0.0.1:${server.port}`;
      const transport =
        kind === "websocket"
          ? createWebSocketTransport({ ...common, url: tunnelUrl(origin, "edge") })
          : kind === "http"
            ? createHttpTunnelTransport({ ...common, url: httpTunnelUrl(origin, "edge") })
            : createGrpcNodeTransport({
                ...common,
                api: parseApiUrl(`grpc://127.0.0.1:${server.port}`),
              });
      transports.push(transport);
      return transport;
    }
  });
}
