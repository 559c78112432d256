/** TLS on one port: ALPN h2 for gRPC, http/1.1 for WebSockets and the admin API. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { after, before, test } from "node:test";
import * as grpc from "@grpc/grpc-js";
import * as protoLoader from "@grpc/proto-loader";
import { WebSocket } from "ws";
import type { RelayServer } from "../../relay/node/server.ts";
import { CloseCode } from "../../shared/tunnel/frame.ts";
import { makeCertificates } from "../support/certificates.ts";
import { base64, createNetwork, randomKey, startRelay, tempDir } from "./helpers.ts";

const dir = tempDir();
let server: RelayServer;
let cert: Buffer;
let joinToken: string;

before(async () => {
  const certs = makeCertificates(dir.path, ["127.0.0.1"]);
  cert = readFileSync(certs.ca);
  server = await startRelay(join(dir.path, "data"), {
    tls: { certFile: certs.cert, keyFile: certs.key },
  });
  joinToken = (await createNetwork(server, "tls")).joinToken!;
});

after(async () => {
  await server?.close();
  dir.remove();
});

test("gRPC over TLS (ALPN h2) answers Provision", async () => {
  assert.match(server.nodeBaseUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
  const definition = protoLoader.loadSync("sidero/link/provision.proto", {
    includeDirs: [join(import.meta.dirname, "../../shared/proto")],
    keepCase: true,
  });
  // biome-ignore lint/suspicious/noExplicitAny: grpc-js builds client constructors at run time.
  const link = (grpc.loadPackageDefinition(definition) as any).sidero.link;
  const client = new link.ProvisionService(
    `127.0.0.1:${server.port}`,
    grpc.credentials.createSsl(cert),
  );
  try {
    const error = await new Promise<grpc.ServiceError>((resolve, reject) => {
      client.Provision(
        {
          node_uuid: "00000000-0000-4000-8000-000000000007",
          node_public_key: base64(randomKey()),
          join_token: joinToken,
        },
        (err: grpc.ServiceError | null) =>
          err ? resolve(err) : reject(new Error("expected Unavailable")),
      );
    });
    assert.equal(error.code, grpc.status.UNAVAILABLE, error.details);
  } finally {
    client.close();
  }
});

test("HTTP/1.1 over TLS serves the app and WebSocket streams", async () => {
  const body = await new Promise<string>((resolve, reject) => {
    https
      .get(`${server.url}/healthz`, { ca: cert }, (response) => {
        let text = "";
        response.on("data", (chunk) => {
          text += chunk;
        });
        response.on("end", () => resolve(text));
      })
      .on("error", reject);
  });
  assert.equal(body, "ok");
  const ws = new WebSocket(`${server.url.replace("https", "wss")}/v1/networks/tls/tunnel`, {
    ca: cert,
    headers: { "x-siderolink-ipv6-addr": "[fdae:41e4:649b:9304::5]:50888" },
  });
  const closed = await new Promise<{ code: number; reason: string }>((resolve, reject) => {
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString() }));
    ws.on("error", reject);
  });
  assert.deepEqual(closed, { code: CloseCode.PeerNotAllowed, reason: "peer not allowed" });
});
