/**
 * The Node relay: one port serving HTTP/1.1 (the Hono app and WebSockets) and HTTP/2 (plain
 * gRPC for Talos: Provision and CreateStream, plus Connect and gRPC-web, then the same app).
 * Without TLS the first bytes decide: the HTTP/2 connection preface means h2c, anything else
 * HTTP/1.1. With TLS, ALPN decides (h2 or http/1.1).
 */
import { readFileSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import net from "node:net";
import tls from "node:tls";
import { createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { getRequestListener } from "@hono/node-server";
import type { Prefix } from "../../shared/net/ip.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { createRelayApp } from "../app/app.ts";
import { clientAddress, FORWARDED_FOR_HEADER } from "../app/client-address.ts";
import { MAX_PROVISION_REQUEST_BYTES, registerProvision } from "../app/connect.ts";
import { clientAddressKey, DEFAULT_RELAY_LIMITS, type RelayLimits } from "../app/limits.ts";
import { jsonLineLog, type RelayLog } from "../app/log.ts";
import { tunnelsFull } from "../app/tunnel.ts";
import type { HubLimits } from "../hub/hub.ts";
import {
  type ConnectionLimits,
  createConnectionGate,
  resolveConnectionLimits,
} from "./connection-limits.ts";
import { createNodeDirectory, type NodeDirectory } from "./directory.ts";
import {
  CREATE_STREAM_PATH,
  createWireGuardOverGrpc,
  TUNNEL_HTTP2_SETTINGS,
  TUNNEL_SESSION_WINDOW_BYTES,
} from "./grpc-stream.ts";
import { closeWhenIdle, withStreamDeadlines } from "./http2-deadlines.ts";
import { createNodeMeshDirectory, type NodeMeshDirectory } from "./mesh.ts";
import { openSqliteDatabase, type SqliteDatabase } from "./sqlite.ts";
import { createWebSocketUpgrades } from "./websocket.ts";

export interface RelayServerOptions {
  readonly host: string;
  /** 0 picks a free port. */
  readonly port: number;
  readonly dataDir: string;
  readonly tls?: { readonly certFile: string; readonly keyFile: string } | undefined;
  /** Enables the admin API for this token. */
  readonly operatorToken?: string | undefined;
  /** How nodes reach this relay, when not the listen address (behind a proxy, NAT). */
  readonly nodeBaseUrl?: string | undefined;
  readonly hubLimits?: Partial<HubLimits>;
  readonly sweepIntervalMs?: number;
  /** Abuse limits (Provision rates, peer and tunnel caps); defaults in relay/app/limits.ts. */
  readonly limits?: Partial<RelayLimits>;
  /**
   * Reverse proxies whose `X-Forwarded-For` names the client for per-client limits; without
   * any, the TCP peer is the client.
   */
  readonly trustedProxies?: readonly Prefix[];
  /** Where structured log lines go; default one JSON object per line on stdout. */
  readonly log?: RelayLog;
  /** Time a client has to send its request headers (and, on a new connection, its first bytes). */
  readonly headersTimeoutMs?: number;
  /** How long a store write waits for another process's lock. */
  readonly storeBusyTimeoutMs?: number;
  /** Connection, HTTP/2 session and stream caps; defaults in connection-limits.ts. */
  readonly connections?: Partial<ConnectionLimits>;
}

/** Default time a client has to send its request headers. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 10_000;
/** Largest request header block on HTTP/1.1 and HTTP/2; larger gets 431 or a stream reset. */
export const MAX_HEADER_BYTES = 16 * 1024;

export interface RelayServer {
  /** `http://host:port` or `https://host:port`: admin API, WebSockets, Connect. */
  readonly url: string;
  /** The base of apiUrl for nodes: `grpc://host:port` or `https://host:port`. */
  readonly nodeBaseUrl: string;
  readonly port: number;
  readonly directory: NodeDirectory;
  readonly mesh: NodeMeshDirectory;
  readonly database: SqliteDatabase;
  /** Closes every stream (GoingAway), stops listening and closes the database. */
  close(): Promise<void>;
}

/** What @hono/node-server passes as the app's env. */
interface NodeBindings {
  readonly incoming?: { readonly socket?: net.Socket };
}

/** "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" (RFC 9113 section 3.4); its first bytes suffice. */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0");

export async function startRelayServer(options: RelayServerOptions): Promise<RelayServer> {
  const database = openSqliteDatabase(options.dataDir, {
    busyTimeoutMs: options.storeBusyTimeoutMs,
  });
  const limits: RelayLimits = { ...DEFAULT_RELAY_LIMITS, ...options.limits };
  const headersTimeoutMs = options.headersTimeoutMs ?? DEFAULT_HEADERS_TIMEOUT_MS;
  const connectionLimits = resolveConnectionLimits(options.connections);
  const log = options.log ?? jsonLineLog((line) => process.stdout.write(line));
  const trustedProxies = options.trustedProxies ?? [];
  const directory = createNodeDirectory(database, {
    hubLimits: options.hubLimits,
    sweepIntervalMs: options.sweepIntervalMs,
    log,
  });
  const scheme = options.tls ? "https" : "http";
  let upgrades: ReturnType<typeof createWebSocketUpgrades> | undefined;
  const mesh = createNodeMeshDirectory(() => upgrades!);
  const { app, provision } = createRelayApp({
    mesh,
    directory,
    operatorToken: options.operatorToken,
    nodeBaseUrl: options.nodeBaseUrl,
    limits,
    log,
    clientAddress: (c) =>
      clientAddress(
        (c.env as NodeBindings | undefined)?.incoming?.socket?.remoteAddress,
        c.req.header(FORWARDED_FOR_HEADER),
        trustedProxies,
      ),
  });
  const honoListener = getRequestListener((request, env) => app.fetch(request, env));
  upgrades = createWebSocketUpgrades((request, incoming) => app.fetch(request, { incoming }));
  directory.setUpgrades(upgrades);

  const createStream = createWireGuardOverGrpc(
    (address) => directory.locatePeer(address),
    (runtime, address) =>
      runtime.hub.hasNode(address) || !tunnelsFull(directory, limits.maxTunnels),
    { firstMessageDeadlineMs: connectionLimits.firstMessageDeadlineMs },
  );
  const grpcHandler = connectNodeAdapter({
    readMaxBytes: MAX_PROVISION_REQUEST_BYTES,
    contextValues: (request) =>
      createContextValues().set(
        clientAddressKey,
        clientAddress(
          request.socket?.remoteAddress,
          forwardedFor(request.headers[FORWARDED_FOR_HEADER]),
          trustedProxies,
        ),
      ),
    routes: (router) => {
      registerProvision(router, provision);
    },
    fallback: (request, response) => {
      honoListener(
        request as http2.Http2ServerRequest,
        response as http2.Http2ServerResponse,
      ).catch((error: unknown) => {
        console.error("relay: request failed", error);
      });
    },
  });

  const http1 = http.createServer(
    {
      headersTimeout: headersTimeoutMs,
      requestTimeout: Math.max(headersTimeoutMs, 30_000),
      // Node enforces both timeouts on this tick; the default (30 s) would let a slow client
      // hold its socket well past headersTimeout.
      connectionsCheckingInterval: Math.min(1_000, headersTimeoutMs),
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    honoListener,
  );
  http1.on("upgrade", (request, socket, head) => upgrades.handle(request, socket, head));
  // http1 never listens itself (the front server hands it sockets), and Node starts the timer
  // that enforces headersTimeout and requestTimeout on "listening": start it here.
  http1.emit("listening");
  const h2 = http2.createServer(
    {
      settings: {
        maxHeaderListSize: MAX_HEADER_BYTES,
        maxConcurrentStreams: connectionLimits.maxConcurrentStreams,
        ...TUNNEL_HTTP2_SETTINGS,
      },
      maxSessionMemory: connectionLimits.maxSessionMemoryMb,
    },
    withStreamDeadlines((request, response) => {
      if (request.url === CREATE_STREAM_PATH && request.method === "POST")
        createStream(request.stream, request.headers);
      else grpcHandler(request, response);
    }, connectionLimits),
  );
  const sockets = new Set<net.Socket>();
  const sessions = new Set<http2.Http2Session>();
  h2.on("session", (session) => {
    sessions.add(session);
    session.setLocalWindowSize(TUNNEL_SESSION_WINDOW_BYTES);
    session.on("close", () => sessions.delete(session));
    closeWhenIdle(session, connectionLimits.idleSessionTimeoutMs);
  });

  const dispatch = (socket: net.Socket, http2Wanted: boolean): void => {
    (http2Wanted ? h2 : http1).emit("connection", socket);
  };

  const gate = createConnectionGate(connectionLimits);
  let front: net.Server;
  if (options.tls) {
    front = tls.createServer(
      {
        cert: readFileSync(options.tls.certFile),
        key: readFileSync(options.tls.keyFile),
        ALPNProtocols: ["h2", "http/1.1"],
      },
      (socket) => dispatch(socket, socket.alpnProtocol === "h2"),
    );
  } else {
    front = net.createServer();
  }
  // A connection over a cap is destroyed in the tick it arrives: before any HTTP parser, HTTP/2
  // session or TLS handshake has read from it.
  front.on("connection", (socket: net.Socket) => {
    if (!gate.admit(socket)) return;
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    if (!options.tls) sniff(socket, dispatch, headersTimeoutMs);
  });

  await new Promise<void>((resolve, reject) => {
    front.once("error", reject);
    front.listen(options.port, options.host, () => {
      front.off("error", reject);
      resolve();
    });
  });
  const address = front.address() as net.AddressInfo;
  const host = address.family === "IPv6" ? `[${address.address}]` : address.address;
  const url = `${scheme}://${host}:${address.port}`;
  const nodeBaseUrl = options.nodeBaseUrl ?? (options.tls ? url : `grpc://${host}:${address.port}`);

  let closed: Promise<void> | undefined;
  return {
    url,
    nodeBaseUrl,
    port: address.port,
    directory,
    mesh,
    database,
    close() {
      closed ??= (async () => {
        upgrades.close();
        mesh.close();
        await directory.close(CloseCode.GoingAway, "relay shutting down");
        await new Promise<void>((resolve) => {
          front.close(() => resolve());
          http1.close();
          for (const session of sessions) session.close();
          http1.closeIdleConnections();
          setTimeout(() => {
            for (const socket of sockets) socket.destroy();
          }, 250).unref();
        });
        database.close();
      })();
      return closed;
    },
  };
}

/** A header Node may hand over as several values, as one comma-separated list. */
function forwardedFor(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value.join(",") : value;
}

/** Reads just enough of a plaintext connection to tell HTTP/2 prior knowledge from HTTP/1.1. */
function sniff(
  socket: net.Socket,
  dispatch: (socket: net.Socket, http2Wanted: boolean) => void,
  timeoutMs: number,
): void {
  let seen = Buffer.alloc(0);
  // A connection that sends nothing would otherwise sit here, before any server's timeouts.
  const silent = setTimeout(() => socket.destroy(), timeoutMs);
  silent.unref();
  socket.once("close", () => clearTimeout(silent));
  const onData = (chunk: Buffer): void => {
    seen = Buffer.concat([seen, chunk]);
    const compared = Math.min(seen.length, HTTP2_PREFACE.length);
    const matches = seen.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
    if (matches && seen.length < HTTP2_PREFACE.length) return;
    clearTimeout(silent);
    socket.off("data", onData);
    socket.pause();
    socket.unshift(seen);
    dispatch(socket, matches);
    // The HTTP/2 session takes the sniffed bytes from the stream's buffer itself; the HTTP/1.1
    // parser reads the handle directly and gets them only as 'data' once the stream resumes.
    if (!matches) socket.resume();
  };
  socket.on("data", onData);
  socket.on("error", () => socket.destroy());
}
