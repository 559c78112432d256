import type { Socket } from "node:net";
import { uapiRequestLength } from "../../shared/wireguard/uapi.ts";
import { serveUnixSocket, type UnixSocketServer } from "../net/unix-socket.ts";

/**
 * Serves WireGuard's cross-platform configuration protocol on a Unix stream socket, where
 * `wg` looks for userspace devices: /var/run/wireguard/<iface>.sock.
 *
 * Framing: a request is the line `get=1` or `set=1`, then (for set) `key=value` lines, ended
 * by an empty line. The reply is `key=value` lines (for get) and `errno=N`, ended by an empty
 * line. A connection may carry several requests; `wg` sends one and closes.
 */

export const UAPI_SOCKET_DIRECTORY = "/var/run/wireguard";

/** Answers one whole request (its text includes the final empty line) with a whole reply. */
export type UapiHandler = (request: string) => string | Promise<string>;

export type UapiSocket = UnixSocketServer;

/** Longest request accepted: a full `wg setconf` of thousands of peers fits many times over. */
const MAX_REQUEST_BYTES = 16 * 1024 * 1024;

export function uapiSocketPath(iface: string, directory = UAPI_SOCKET_DIRECTORY): string {
  return `${directory}/${iface}.sock`;
}

/**
 * Listens on the interface's socket. A socket file left by a process that died is replaced;
 * one that still answers belongs to a running device, and that is an error.
 */
export function serveUapi(
  iface: string,
  handler: UapiHandler,
  directory = UAPI_SOCKET_DIRECTORY,
): Promise<UapiSocket> {
  const path = uapiSocketPath(iface, directory);
  return serveUnixSocket({
    path,
    directoryMode: 0o700,
    inUse: () =>
      new Error(
        `${path} is in use: another WireGuard process serves interface ${iface}; stop it first`,
      ),
    onConnection: (socket) => handleConnection(socket, handler),
  });
}

function handleConnection(socket: Socket, handler: UapiHandler): void {
  let buffered = "";
  let busy = Promise.resolve();
  socket.setEncoding("utf8");
  socket.on("error", () => socket.destroy());
  socket.on("data", (chunk: string) => {
    buffered += chunk;
    if (buffered.length > MAX_REQUEST_BYTES) {
      socket.end(`errno=${Errno.EMSGSIZE}\n\n`);
      return;
    }
    for (let end = uapiRequestLength(buffered); end > 0; end = uapiRequestLength(buffered)) {
      const request = buffered.slice(0, end);
      buffered = buffered.slice(end);
      busy = busy.then(async () => {
        let reply: string;
        try {
          reply = await handler(request);
        } catch {
          reply = `errno=${Errno.EIO}\n\n`;
        }
        if (!socket.destroyed) socket.write(reply);
      });
    }
  });
  socket.on("end", () => {
    void busy.then(() => socket.end());
  });
}

/** `errno=` values are negated Linux errnos, as wireguard-go reports them. */
const Errno = { EIO: -5, EMSGSIZE: -90 } as const;
