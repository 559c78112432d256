/**
 * Forward HTTP proxies for every connection the sidecar makes to the relay (Provision, the
 * WebSocket, gRPC and HTTP-only tunnels, the uplink): `--proxy URL`, else HTTPS_PROXY for https
 * targets and HTTP_PROXY for plain ones (lower-case names too), minus the hosts NO_PROXY names.
 *
 * Every target is reached through an HTTP CONNECT tunnel, plain http ones too: a WebSocket
 * upgrade and an HTTP/2 connection only survive a proxy that passes bytes through unread. The
 * proxy URL's userinfo becomes `Proxy-Authorization: Basic`. The proxy itself is spoken to over
 * plain TCP (`http://` proxy URLs) or TLS (`https://`): verified against the system roots plus
 * `--ca-file` (a site's proxy and a private relay may have different CAs), unless `--insecure`.
 */
import http from "node:http";
import https from "node:https";
import net from "node:net";
import { Duplex } from "node:stream";
import tls from "node:tls";
import { ExitCode, SidecarError } from "../exit-codes.ts";
import type { TlsSettings } from "../tls.ts";

/** How long the proxy has to answer CONNECT. */
const CONNECT_TIMEOUT_MS = 10_000;
/** Largest CONNECT response header block read. */
const MAX_CONNECT_RESPONSE_BYTES = 16 * 1024;

/** How an `https://` proxy's own certificate is checked. */
export interface ProxyTls {
  readonly ca?: (string | Buffer)[];
  readonly rejectUnauthorized: boolean;
}

/** A proxy to go through: its URL, and the TLS trust for an `https://` one. */
export interface ForwardProxy {
  readonly url: URL;
  readonly tls: ProxyTls;
}

export interface ProxySettings {
  /** `--proxy`: used for every target, NO_PROXY aside. */
  readonly explicit: URL | undefined;
  readonly httpsProxy: URL | undefined;
  readonly httpProxy: URL | undefined;
  /** NO_PROXY entries, lower-cased: `*`, hosts, `.domain` suffixes, optionally `:port`. */
  readonly noProxy: readonly string[];
  readonly tls: ProxyTls;
}

export const NO_PROXY: ProxySettings = {
  explicit: undefined,
  httpsProxy: undefined,
  httpProxy: undefined,
  noProxy: [],
  tls: { rejectUnauthorized: true },
};

/** The trust for `https://` proxies: the system roots, plus the `--ca-file` CA when given. */
export function proxyTls(settings: TlsSettings): ProxyTls {
  return {
    ...(settings.ca ? { ca: [...tls.rootCertificates, settings.ca] } : {}),
    rejectUnauthorized: !settings.insecure,
  };
}

/** The settings from `--proxy` and the environment; `tlsSettings` for `https://` proxies. */
export function loadProxySettings(
  flag: string | undefined,
  env: NodeJS.ProcessEnv = process.env,
  tlsSettings: TlsSettings = { insecure: false },
): ProxySettings {
  const read = (name: string, text: string | undefined): URL | undefined => {
    if (text === undefined || text === "") return undefined;
    return parseProxyUrl(text, name);
  };
  return {
    explicit: read("--proxy", flag),
    httpsProxy: read("HTTPS_PROXY", env.HTTPS_PROXY ?? env.https_proxy),
    httpProxy: read("HTTP_PROXY", env.HTTP_PROXY ?? env.http_proxy),
    noProxy: (env.NO_PROXY ?? env.no_proxy ?? "")
      .split(",")
      .map((entry) => entry.trim().toLowerCase())
      .filter((entry) => entry !== ""),
    tls: proxyTls(tlsSettings),
  };
}

function parseProxyUrl(text: string, name: string): URL {
  let url: URL;
  try {
    // A bare host:port is how many tools write proxies.
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `http://${text}`);
  } catch {
    throw new SidecarError(ExitCode.Usage, `${name} ${JSON.stringify(text)} is not a URL`);
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new SidecarError(
      ExitCode.Usage,
      `${name} ${url.protocol}//${url.host}: only http:// and https:// proxies are supported`,
    );
  }
  return url;
}

/** The proxy for a target URL (http(s):, ws(s):, grpc:), or undefined to connect directly. */
export function proxyFor(settings: ProxySettings, target: URL): ForwardProxy | undefined {
  const secure = target.protocol === "https:" || target.protocol === "wss:";
  const proxy = settings.explicit ?? (secure ? settings.httpsProxy : settings.httpProxy);
  if (proxy === undefined) return undefined;
  const host = target.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const port = target.port || (secure ? "443" : "80");
  for (const entry of settings.noProxy) {
    if (entry === "*") return undefined;
    const [name, entryPort] = splitHostPort(entry);
    if (entryPort !== undefined && entryPort !== port) continue;
    const bare = name.replace(/^\*?\./, "");
    if (host === bare || host.endsWith(`.${bare}`)) return undefined;
  }
  return { url: proxy, tls: settings.tls };
}

function splitHostPort(entry: string): [string, string | undefined] {
  const bracketed = /^\[([^\]]+)\](?::(\d+))?$/.exec(entry);
  if (bracketed) return [bracketed[1], bracketed[2]];
  const colon = entry.lastIndexOf(":");
  if (colon > 0 && entry.indexOf(":") === colon && /^\d+$/.test(entry.slice(colon + 1)))
    return [entry.slice(0, colon), entry.slice(colon + 1)];
  return [entry, undefined];
}

/** `user:pass` of a proxy URL as a Basic credential, or undefined without userinfo. */
export function proxyAuthorization(proxy: URL): string | undefined {
  if (proxy.username === "" && proxy.password === "") return undefined;
  const credential = `${decodeURIComponent(proxy.username)}:${decodeURIComponent(proxy.password)}`;
  return `Basic ${Buffer.from(credential).toString("base64")}`;
}

/** A proxy URL without its credential, for logs and errors. */
export function describeProxy(proxy: URL): string {
  return `${proxy.protocol}//${proxy.host}`;
}

/**
 * A TCP stream to `host:port` through the proxy's CONNECT, resolved once the proxy answered 2xx.
 * A refusal names the proxy's status line (407: the credential in the proxy URL); a failed TLS
 * handshake with an `https://` proxy says so, and what to check.
 */
export function connectThroughProxy(
  forward: ForwardProxy,
  host: string,
  port: number,
): Promise<net.Socket> {
  const proxy = forward.url;
  const authority = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  const secure = proxy.protocol === "https:";
  const proxyPort = Number(proxy.port || (secure ? 443 : 80));
  const proxyHost = proxy.hostname.replace(/^\[|\]$/g, "");
  return new Promise((resolve, reject) => {
    let handshaken = !secure;
    const socket: net.Socket = secure
      ? tls.connect(
          {
            host: proxyHost,
            port: proxyPort,
            ...(net.isIP(proxyHost) ? {} : { servername: proxyHost }),
            ...forward.tls,
          },
          () => {
            handshaken = true;
          },
        )
      : net.connect({ host: proxyHost, port: proxyPort });
    const fail = (message: string): void => {
      socket.destroy();
      reject(new Error(`proxy ${describeProxy(proxy)}: ${message}`));
    };
    socket.setTimeout(CONNECT_TIMEOUT_MS, () => fail(`no answer to CONNECT ${authority}`));
    socket.once("error", (error: NodeJS.ErrnoException) => {
      if (handshaken || error.syscall === "connect") {
        fail(error.message);
        return;
      }
      fail(
        `TLS to the proxy failed: ${error.message} (an https:// proxy URL needs a proxy that speaks TLS on that port, with a certificate for ${proxyHost} from the system's CAs or --ca-file)`,
      );
    });
    const authorization = proxyAuthorization(proxy);
    socket.write(
      `CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n` +
        (authorization ? `Proxy-Authorization: ${authorization}\r\n` : "") +
        "\r\n",
    );
    let seen = Buffer.alloc(0);
    const onData = (chunk: Buffer): void => {
      seen = Buffer.concat([seen, chunk]);
      const end = seen.indexOf("\r\n\r\n");
      if (end < 0) {
        if (seen.length > MAX_CONNECT_RESPONSE_BYTES) fail("CONNECT response headers too long");
        return;
      }
      socket.off("data", onData);
      socket.removeAllListeners("error");
      socket.setTimeout(0);
      const statusLine = seen.subarray(0, seen.indexOf("\r\n")).toString("latin1");
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
      if (status < 200 || status > 299) {
        // 407 is the standard answer; tinyproxy's BasicAuth answers 401.
        const hint =
          status === 407 || status === 401 ? " (check the user and password in the proxy URL)" : "";
        fail(`CONNECT ${authority} refused: ${statusLine}${hint}`);
        return;
      }
      socket.pause();
      const rest = seen.subarray(end + 4);
      if (rest.length > 0) socket.unshift(rest);
      resolve(socket);
    };
    socket.on("data", onData);
  });
}

/**
 * An http(s) Agent whose connections go through the proxy: for `ws`, Provision over HTTP/1.1 and
 * the HTTP-only tunnel. TLS to the target runs inside the tunnel with the request's own options
 * (servername, ca, rejectUnauthorized).
 */
export function createProxyAgent(
  proxy: ForwardProxy,
  secure: boolean,
  keepAlive = false,
): http.Agent {
  const open = (
    options: http.ClientRequestArgs & tls.ConnectionOptions,
    callback: (error: Error | null, socket?: net.Socket) => void,
  ): void => {
    const host = String(options.host ?? options.hostname ?? "localhost").replace(/^\[|\]$/g, "");
    const port = Number(options.port ?? (secure ? 443 : 80));
    connectThroughProxy(proxy, host, port).then(
      (socket) => {
        if (!secure) {
          socket.resume();
          callback(null, socket);
          return;
        }
        const secured = tls.connect({
          ...options,
          socket,
          servername: options.servername || (net.isIP(host) ? undefined : host),
        });
        callback(null, secured);
      },
      (error: Error) => callback(error),
    );
  };
  const AgentClass = secure ? https.Agent : http.Agent;
  const agent = new AgentClass({ keepAlive });
  (agent as unknown as { createConnection: typeof open }).createConnection = open;
  return agent;
}

/**
 * A Duplex to `host:port` through the proxy, usable at once (http2.connect's createConnection
 * must return synchronously): writes wait for the CONNECT answer, errors surface as stream errors.
 */
export function proxyTunnelStream(proxy: ForwardProxy, host: string, port: number): Duplex {
  let socket: net.Socket | undefined;
  const waiting: [Buffer, () => void][] = [];
  const stream = new Duplex({
    write(chunk: Buffer, _encoding, callback) {
      if (socket) socket.write(chunk, (error) => callback(error ?? null));
      else waiting.push([chunk, () => callback()]);
    },
    read() {
      socket?.resume();
    },
    final(callback) {
      socket?.end();
      callback();
    },
    destroy(error, callback) {
      socket?.destroy();
      callback(error);
    },
  });
  connectThroughProxy(proxy, host, port).then(
    (connected) => {
      if (stream.destroyed) {
        connected.destroy();
        return;
      }
      socket = connected;
      connected.on("data", (data: Buffer) => {
        if (!stream.push(data)) connected.pause();
      });
      connected.on("end", () => stream.push(null));
      connected.on("error", (error) => stream.destroy(error));
      connected.on("close", () => stream.destroy());
      for (const [chunk, done] of waiting.splice(0)) connected.write(chunk, done);
      connected.resume();
    },
    (error: Error) => stream.destroy(error),
  );
  return stream;
}

/**
 * `createConnection` for http2.connect to `origin` through the proxy it needs (TLS with ALPN h2
 * inside the tunnel for https), or undefined to connect directly.
 */
export function http2ProxyConnection(
  settings: ProxySettings,
  origin: string,
  tlsOptions: tls.ConnectionOptions,
): (() => Duplex) | undefined {
  const target = new URL(origin);
  const proxy = proxyFor(settings, target);
  if (proxy === undefined) return undefined;
  const secure = target.protocol === "https:";
  const host = target.hostname.replace(/^\[|\]$/g, "");
  const port = Number(target.port || (secure ? 443 : 80));
  return () => {
    const tunnel = proxyTunnelStream(proxy, host, port);
    if (!secure) return tunnel;
    // `host` is what the certificate is checked against: without it, over a given socket, that
    // is "localhost", and a relay addressed by IP fails the check.
    return tls.connect({
      ...tlsOptions,
      socket: tunnel,
      host,
      servername: net.isIP(host) ? undefined : host,
      ALPNProtocols: ["h2"],
    });
  };
}
