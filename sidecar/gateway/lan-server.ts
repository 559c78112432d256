/**
 * The gateway's SideroLink API on the site's LAN: one HTTP/2 port, plaintext (h2c, Talos's
 * `grpc://`) or TLS with ALPN h2 (`https://`), serving plain gRPC through connect-node, as the
 * Node relay serves Talos. Handlers learn which LAN connection a call came on (lanConnectionKey):
 * the Provision's source address is how the gateway recognises a UDP machine's datagrams.
 */
import { readFileSync } from "node:fs";
import http2 from "node:http2";
import type net from "node:net";
import type tls from "node:tls";
import { type ConnectRouter, createContextKey, createContextValues } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import { MAX_PROVISION_REQUEST_BYTES } from "../../relay/app/connect.ts";
import { formatIP, isIPv4Mapped, parseIP } from "../../shared/net/ip.ts";

/** Largest request header block a machine may send, the Node relay's limit too. */
const MAX_HEADER_BYTES = 16 * 1024;

export interface LanConnection {
  /** The machine's address, IPv4 in dotted form even on a dual-stack socket. */
  readonly remote: string;
  /** The gateway's address the machine reached. */
  readonly local: string;
}

export const lanConnectionKey = createContextKey<LanConnection | undefined>(undefined, {
  description: "the LAN connection of a gateway call",
});

export interface LanServerOptions {
  readonly host: string;
  readonly port: number;
  readonly tls?: { readonly certFile: string; readonly keyFile: string } | undefined;
  readonly routes: (router: ConnectRouter) => void;
  /** A machine's connection failed its TLS handshake (a plaintext client, an untrusted CA). */
  readonly onTlsError?: (remote: string, error: Error) => void;
}

export interface LanServer {
  readonly port: number;
  close(): Promise<void>;
}

export async function startLanServer(options: LanServerOptions): Promise<LanServer> {
  const handler = connectNodeAdapter({
    readMaxBytes: MAX_PROVISION_REQUEST_BYTES,
    contextValues: (request) =>
      createContextValues().set(lanConnectionKey, {
        remote: lanAddress(request.socket?.remoteAddress),
        local: lanAddress(request.socket?.localAddress),
      }),
    routes: options.routes,
  });
  const settings = { maxHeaderListSize: MAX_HEADER_BYTES };
  const server = options.tls
    ? http2.createSecureServer(
        {
          cert: readFileSync(options.tls.certFile),
          key: readFileSync(options.tls.keyFile),
          ALPNProtocols: ["h2"],
          settings,
        },
        handler,
      )
    : http2.createServer({ settings }, handler);
  server.on("tlsClientError", (error: Error, socket: tls.TLSSocket) => {
    options.onTlsError?.(lanAddress(socket.remoteAddress), error);
  });
  const sessions = new Set<http2.ServerHttp2Session>();
  server.on("session", (session: http2.ServerHttp2Session) => {
    sessions.add(session);
    session.on("close", () => sessions.delete(session));
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(options.port, options.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const session of sessions) session.destroy();
      }),
  };
}

/** An address as a socket reports it, IPv4-mapped IPv6 turned back into IPv4. */
export function lanAddress(text: string | undefined): string {
  const bytes = parseIP(text ?? "");
  if (bytes === undefined) return text ?? "";
  return isIPv4Mapped(bytes) ? bytes.subarray(12).join(".") : formatIP(bytes);
}
