/**
 * WebSockets on Node: the HTTP/1.1 `upgrade` event runs the request through the relay app, and
 * when a route admitted it (NetworkRuntime.acceptWebSocket), `ws` completes the handshake and
 * the socket joins that network's hub.
 */
import type { IncomingMessage } from "node:http";
import { STATUS_CODES } from "node:http";
import type { Duplex } from "node:stream";
import { type WebSocket, WebSocketServer } from "ws";
import { CloseCode, MAX_FRAME_SIZE } from "../../shared/tunnel/frame.ts";
import { logStream } from "../app/log.ts";
import type { Admission, NetworkRuntime } from "../app/runtime.ts";
import type { HubSocket } from "../hub/socket.ts";
import { webSocketDatagrams } from "../hub/websocket-batches.ts";

/** What to do with the socket once `ws` completes the handshake. */
type PendingUpgrade = (ws: WebSocket) => void;

export interface WebSocketUpgrades {
  /** NetworkRuntime.acceptWebSocket for runtimes of this process. */
  accept(runtime: NetworkRuntime, request: Request, admission: Admission): Response;
  /** Completes the upgrade of `request` and hands the socket to `open` (mesh sockets). */
  adopt(request: Request, open: PendingUpgrade): Response;
  /** The http server's `upgrade` listener. */
  handle(incoming: IncomingMessage, socket: Duplex, head: Buffer): void;
  /** Stops accepting; open sockets are closed through their hubs. */
  close(): void;
}

/** Runs the app for an upgrade request; `incoming` gives routes the TCP peer's address. */
export type FetchFn = (request: Request, incoming: IncomingMessage) => Response | Promise<Response>;

export function createWebSocketUpgrades(fetch: FetchFn): WebSocketUpgrades {
  const wss = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_FRAME_SIZE,
    perMessageDeflate: false,
  });
  const pending = new WeakMap<Request, PendingUpgrade>();
  let closing = false;

  const reject = (socket: Duplex, status: number, body: string): void => {
    socket.end(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ""}\r\nConnection: close\r\nContent-Type: application/json\r\n` +
        `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`,
    );
  };

  return {
    accept(runtime, request, admission) {
      pending.set(request, (ws) => adopt(ws, runtime, admission));
      return new Response(null, { status: 200 });
    },

    adopt(request, open) {
      pending.set(request, open);
      return new Response(null, { status: 200 });
    },

    handle(incoming, socket, head) {
      socket.on("error", () => socket.destroy());
      if (closing) {
        reject(socket, 503, JSON.stringify({ error: "relay is shutting down" }));
        return;
      }
      let request: Request;
      try {
        request = toFetchRequest(incoming);
      } catch {
        reject(socket, 400, JSON.stringify({ error: "malformed request target or Host header" }));
        return;
      }
      Promise.resolve()
        .then(() => fetch(request, incoming))
        .then(
          async (response) => {
            const upgrade = pending.get(request);
            pending.delete(request);
            if (!upgrade) {
              reject(socket, response.status, await response.text());
              return;
            }
            wss.handleUpgrade(incoming, socket, head, upgrade);
          },
          (error: unknown) => {
            console.error("relay: upgrade failed", error);
            reject(socket, 500, JSON.stringify({ error: "internal error; see the relay's log" }));
          },
        );
    },

    close() {
      closing = true;
      wss.close();
    },
  };
}

function adopt(ws: WebSocket, runtime: NetworkRuntime, admission: Admission): void {
  if ("refuse" in admission) {
    ws.close(admission.refuse.code, admission.refuse.reason);
    return;
  }
  const socket = wsHubSocket(ws);
  const { hub } = runtime;
  const { attach } = admission;
  const gone = logStream(runtime.log, socket, {
    network: runtime.name,
    role: attach.role,
    virtualAddress: attach.role === "node" ? attach.virtualAddress : undefined,
  });
  ws.on("message", (data: Buffer, isBinary: boolean) => {
    hub.message(socket, isBinary ? data : data.toString("utf8"));
  });
  ws.on("close", (code: number, reason: Buffer) => {
    gone(code, reason.toString());
    hub.closed(socket);
  });
  ws.on("error", (error) => {
    gone(CloseCode.Abnormal, error.message);
    hub.closed(socket);
  });
  hub.attach(socket, attach);
}

/** HubSocket over a `ws` WebSocket. */
export function wsHubSocket(ws: WebSocket): HubSocket {
  // ws may write a frame after send returns, and the batch buffer is reused at once: copy.
  const sendDatagrams = webSocketDatagrams((frame) => ws.send(Buffer.from(frame)));
  return {
    sendDatagrams(datagrams, tags, count) {
      if (ws.readyState === ws.OPEN) sendDatagrams(datagrams, tags, count);
    },
    sendControl(message) {
      // Control frames are the hub's to give away: no copy.
      if (ws.readyState === ws.OPEN) ws.send(message);
    },
    close(code, reason) {
      if (ws.readyState === ws.OPEN || ws.readyState === ws.CONNECTING) ws.close(code, reason);
    },
    get writable() {
      return ws.readyState === ws.OPEN;
    },
    get bufferedAmount() {
      return ws.bufferedAmount;
    },
    persist() {},
  };
}

function toFetchRequest(incoming: IncomingMessage): Request {
  const headers = new Headers();
  for (const [name, value] of Object.entries(incoming.headers)) {
    if (value === undefined) continue;
    for (const item of Array.isArray(value) ? value : [value]) headers.append(name, item);
  }
  const scheme = "encrypted" in incoming.socket && incoming.socket.encrypted ? "https" : "http";
  return new Request(`${scheme}://${incoming.headers.host ?? "localhost"}${incoming.url ?? "/"}`, {
    headers,
  });
}
