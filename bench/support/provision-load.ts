/**
 * Provision load for the relay scale benchmark, run as its own process:
 *
 *   node provision-load.ts RELAY_URL JOIN_TOKEN grpc-web|grpc CONCURRENCY SECONDS IDENTITIES
 *
 * CONCURRENCY clients call sidero.link.ProvisionService/Provision back to back for SECONDS,
 * over gRPC-web (HTTP/1.1, connect-web's transport on fetch) or plain gRPC (HTTP/2 without TLS,
 * connect-node's transport). Node identities cycle through IDENTITIES fixed UUIDs, the same in
 * every run, each call with a new WireGuard key, as a rebooting Talos node does; so the network
 * never holds more than IDENTITIES peers however many runs there are. Prints
 * { ok, errors: { code: count }, seconds, cpuSeconds } (cpuSeconds: this process's own CPU time).
 */
import { randomBytes } from "node:crypto";
import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";

const [url, joinToken, protocol, concurrencyText, secondsText, identitiesText] =
  process.argv.slice(2);
if (!url || !joinToken || (protocol !== "grpc-web" && protocol !== "grpc")) {
  process.stderr.write(
    "usage: provision-load.ts RELAY_URL JOIN_TOKEN grpc-web|grpc CONCURRENCY SECONDS IDENTITIES\n",
  );
  process.exit(2);
}
const baseUrl = url.replace(/\/$/, "");
const transport =
  protocol === "grpc" ? createGrpcTransport({ baseUrl }) : createGrpcWebTransport({ baseUrl });
const client = createClient(ProvisionService, transport);
const identities = Array.from(
  { length: Number(identitiesText) },
  (_, i) => `00000000-0000-4000-8000-${i.toString(16).padStart(12, "0")}`,
);
const errors: Record<string, number> = {};
let ok = 0;
let next = 0;
const started = performance.now();
const end = started + Number(secondsText) * 1000;
await Promise.all(
  Array.from({ length: Number(concurrencyText) }, async () => {
    while (performance.now() < end) {
      try {
        await client.provision({
          nodeUuid: identities[next++ % identities.length],
          nodePublicKey: randomBytes(32).toString("base64"),
          joinToken,
        });
        ok++;
      } catch (error) {
        const code = error instanceof ConnectError ? Code[error.code] : String(error);
        errors[code] = (errors[code] ?? 0) + 1;
      }
    }
  }),
);
const cpu = process.cpuUsage();
process.stdout.write(
  `${JSON.stringify({ ok, errors, seconds: (performance.now() - started) / 1000, cpuSeconds: (cpu.user + cpu.system) / 1e6 })}\n`,
);
