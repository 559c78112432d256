/**
 * Forward proxy selection (flag, HTTPS_PROXY/HTTP_PROXY, NO_PROXY) and the CONNECT client, the
 * latter against a small CONNECT proxy on loopback that demands a Basic credential and records
 * what it was asked, spoken to over plain TCP and, as an https:// proxy, over TLS. The real
 * proxies (tinyproxy, nginx) are in test/e2e/proxies.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, it } from "node:test";
import { SidecarError } from "../../sidecar/exit-codes.ts";
import {
  connectThroughProxy,
  createProxyAgent,
  type ForwardProxy,
  http2ProxyConnection,
  loadProxySettings,
  NO_PROXY,
  proxyAuthorization,
  proxyFor,
  proxyTls,
} from "../../sidecar/net/proxy.ts";
import { makeCertificates } from "../support/certificates.ts";

const viaProxy = (url: string, tls = NO_PROXY.tls): ForwardProxy => ({ url: new URL(url), tls });

/** The body of GET `url` through `agent`. */
function getThrough(agent: http.Agent, url: string): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    http
      .get(url, { agent }, (response) => {
        let text = "";
        response.on("data", (chunk) => {
          text += chunk;
        });
        response.on("end", () => resolve(text));
      })
      .on("error", reject);
  });
}

describe("proxy selection", () => {
  const env = {
    HTTPS_PROXY: "http://secure-proxy:3128",
    http_proxy: "plain-proxy:8080",
    NO_PROXY: "localhost, .internal.example, 10.0.0.5:8443, [fd00::1]",
  };

  it("takes HTTPS_PROXY for https and wss targets, HTTP_PROXY for the rest; --proxy for all", () => {
    const settings = loadProxySettings(undefined, env);
    assert.equal(
      proxyFor(settings, new URL("https://relay.example.com"))?.url.host,
      "secure-proxy:3128",
    );
    assert.equal(
      proxyFor(settings, new URL("wss://relay.example.com/x"))?.url.host,
      "secure-proxy:3128",
    );
    assert.equal(
      proxyFor(settings, new URL("http://relay.example.com"))?.url.host,
      "plain-proxy:8080",
    );
    const flagged = loadProxySettings("http://u:p@flag-proxy:1", env);
    assert.equal(proxyFor(flagged, new URL("http://relay.example.com"))?.url.host, "flag-proxy:1");
    assert.equal(proxyFor(flagged, new URL("https://relay.example.com"))?.url.host, "flag-proxy:1");
  });

  it("NO_PROXY names hosts, domain suffixes, host:port and bracketed IPv6", () => {
    const settings = loadProxySettings(undefined, env);
    for (const direct of [
      "https://localhost:8787",
      "https://relay.internal.example",
      "https://internal.example",
      "https://10.0.0.5:8443",
      "https://[fd00::1]:443",
    ]) {
      assert.equal(proxyFor(settings, new URL(direct)), undefined, direct);
    }
    for (const proxied of [
      "https://10.0.0.5:443",
      "https://notinternal.example",
      "https://fd00::2".replace("fd00::2", "[fd00::2]"),
    ]) {
      assert.ok(proxyFor(settings, new URL(proxied)), proxied);
    }
    const all = loadProxySettings(undefined, { ...env, NO_PROXY: "*" });
    assert.equal(proxyFor(all, new URL("https://relay.example.com")), undefined);
  });

  it("refuses a proxy URL of another scheme, naming where it came from", () => {
    assert.throws(
      () => loadProxySettings(undefined, { HTTPS_PROXY: "socks5://proxy:1080" }),
      (error: unknown) =>
        error instanceof SidecarError &&
        /HTTPS_PROXY socks5:\/\/proxy:1080: only http/.test(error.message),
    );
  });

  it("turns the URL's userinfo into a Basic credential, percent-decoded", () => {
    assert.equal(
      proxyAuthorization(new URL("http://al%40ice:p%3Ass@proxy:1")),
      `Basic ${Buffer.from("al@ice:p:ss").toString("base64")}`,
    );
    assert.equal(proxyAuthorization(new URL("http://proxy:1")), undefined);
  });
});

describe("CONNECT through a proxy that wants a credential", () => {
  const credential = `Basic ${Buffer.from("user:pass").toString("base64")}`;
  const asked: string[] = [];
  let proxy: http.Server;
  let tlsProxy: https.Server;
  let target: http.Server;
  let h2Target: http2.Http2SecureServer;
  let h2TargetPort: number;
  let proxyPort: number;
  let tlsProxyPort: number;
  let targetPort: number;
  let certDir: string;
  let ca: Buffer;

  const onConnect = (request: http.IncomingMessage, socket: net.Socket): void => {
    asked.push(request.url ?? "");
    if (request.headers["proxy-authorization"] !== credential) {
      socket.end("HTTP/1.1 407 Proxy Authentication Required\r\n\r\n");
      return;
    }
    const [host, port] = (request.url ?? "").split(":");
    const upstream = net.connect(Number(port), host, () => {
      socket.write("HTTP/1.1 200 Connection established\r\n\r\n");
      upstream.pipe(socket).pipe(upstream);
    });
    upstream.on("error", () => socket.destroy());
  };

  before(async () => {
    target = http.createServer((request, response) => {
      response.end(`hello ${request.url}`);
    });
    proxy = http.createServer((_request, response) => response.writeHead(405).end());
    proxy.on("connect", onConnect);
    certDir = mkdtempSync(join(tmpdir(), "proxy-tls-"));
    const certificates = makeCertificates(certDir, ["127.0.0.1"]);
    ca = readFileSync(certificates.ca);
    tlsProxy = https.createServer(
      { cert: readFileSync(certificates.cert), key: readFileSync(certificates.key) },
      (_request, response) => response.writeHead(405).end(),
    );
    tlsProxy.on("connect", onConnect);
    h2Target = http2.createSecureServer(
      { cert: readFileSync(certificates.cert), key: readFileSync(certificates.key) },
      (request, response) => response.end(`h2 ${request.url}`),
    );
    await new Promise<void>((resolve) => h2Target.listen(0, "127.0.0.1", resolve));
    h2TargetPort = (h2Target.address() as net.AddressInfo).port;
    await new Promise<void>((resolve) => target.listen(0, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
    await new Promise<void>((resolve) => tlsProxy.listen(0, "127.0.0.1", resolve));
    proxyPort = (proxy.address() as net.AddressInfo).port;
    tlsProxyPort = (tlsProxy.address() as net.AddressInfo).port;
    targetPort = (target.address() as net.AddressInfo).port;
  });

  after(() => {
    proxy.close();
    tlsProxy.close();
    h2Target.close();
    target.close();
    rmSync(certDir, { recursive: true, force: true });
  });

  it("an http request through the agent arrives by CONNECT, with the credential", async () => {
    const agent = createProxyAgent(viaProxy(`http://user:pass@127.0.0.1:${proxyPort}`), false);
    const body = await getThrough(agent, `http://127.0.0.1:${targetPort}/path`);
    assert.equal(body, "hello /path");
    assert.equal(asked.at(-1), `127.0.0.1:${targetPort}`);
    agent.destroy();
  });

  it("a wrong credential fails with the proxy's status line and what to check", async () => {
    await assert.rejects(
      connectThroughProxy(
        viaProxy(`http://user:nope@127.0.0.1:${proxyPort}`),
        "127.0.0.1",
        targetPort,
      ),
      /CONNECT 127\.0\.0\.1:\d+ refused: HTTP\/1\.1 407 Proxy Authentication Required \(check the user and password in the proxy URL\)/,
    );
  });

  it("HTTP/2 over TLS to a target named by IP address goes through CONNECT, its certificate checked for that address", async () => {
    const origin = `https://127.0.0.1:${h2TargetPort}`;
    const settings = loadProxySettings(`http://user:pass@127.0.0.1:${proxyPort}`, {});
    const createConnection = http2ProxyConnection(settings, origin, { ca });
    assert.ok(createConnection);
    const session = http2.connect(origin, { createConnection });
    try {
      const body = await new Promise<string>((resolve, reject) => {
        const request = session.request({ ":path": "/h2-path" });
        let text = "";
        request.on("data", (chunk) => {
          text += chunk;
        });
        request.on("end", () => resolve(text));
        request.on("error", reject);
        session.on("error", reject);
        request.end();
      });
      assert.equal(body, "h2 /h2-path");
      assert.equal(asked.at(-1), `127.0.0.1:${h2TargetPort}`);
    } finally {
      session.destroy();
    }
  });

  it("an https:// proxy is spoken to over TLS, trusting --ca-file, then CONNECT inside it", async () => {
    const settings = loadProxySettings(
      `https://user:pass@127.0.0.1:${tlsProxyPort}`,
      {},
      { ca, insecure: false },
    );
    const forward = proxyFor(settings, new URL(`http://127.0.0.1:${targetPort}`));
    assert.ok(forward);
    const agent = createProxyAgent(forward, false);
    const body = await getThrough(agent, `http://127.0.0.1:${targetPort}/over-tls`);
    assert.equal(body, "hello /over-tls");
    assert.equal(asked.at(-1), `127.0.0.1:${targetPort}`);
    agent.destroy();
  });

  it("an https:// proxy whose certificate is not trusted fails saying TLS to the proxy and what to check", async () => {
    await assert.rejects(
      connectThroughProxy(
        viaProxy(`https://user:pass@127.0.0.1:${tlsProxyPort}`, proxyTls({ insecure: false })),
        "127.0.0.1",
        targetPort,
      ),
      /proxy https:\/\/127\.0\.0\.1:\d+: TLS to the proxy failed: .*certificate.* \(an https:\/\/ proxy URL needs a proxy that speaks TLS on that port, with a certificate for 127\.0\.0\.1 from the system's CAs or --ca-file\)/,
    );
  });

  it("an https:// proxy URL for a proxy that speaks plain HTTP fails at the TLS handshake", async () => {
    await assert.rejects(
      connectThroughProxy(
        viaProxy(`https://user:pass@127.0.0.1:${proxyPort}`, proxyTls({ ca, insecure: false })),
        "127.0.0.1",
        targetPort,
      ),
      /proxy https:\/\/127\.0\.0\.1:\d+: TLS to the proxy failed: /,
    );
  });
});
