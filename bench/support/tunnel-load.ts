/**
 * Idle node tunnels for the relay scale benchmark, run as its own process:
 *
 *   node tunnel-load.ts RELAY_URL NETWORK ADDRESSES_FILE COUNT
 *
 * Opens COUNT node streams (WebSockets to /v1/networks/NETWORK/tunnel), one per virtual address
 * from ADDRESSES_FILE (a JSON array), at most Concurrency upgrades at a time, then keeps them open
 * and alive (the text ping every PING_INTERVAL_MS) and prints { opened, failed, seconds }.
 * Raise the open-files limit for large counts. Runs until SIGTERM.
 */
import { readFileSync } from "node:fs";
import WebSocket from "ws";
import { VIRTUAL_PEER_PORT } from "../../shared/siderolink/addressing.ts";
import { PEER_ADDRESS_HEADER, tunnelPath } from "../../shared/siderolink/relay-api.ts";
import { PING_INTERVAL_MS, PING_TEXT } from "../../shared/tunnel/frame.ts";

const [url, network, addressesFile, countText] = process.argv.slice(2);
const addresses = JSON.parse(readFileSync(addressesFile, "utf8")) as string[];
const count = Number(countText);
if (!url || !network || !(count > 0) || count > addresses.length) {
  process.stderr.write(
    `usage: tunnel-load.ts RELAY_URL NETWORK ADDRESSES_FILE COUNT (COUNT <= ${addresses.length} addresses)\n`,
  );
  process.exit(2);
}
const Concurrency = 200;
const target = new URL(tunnelPath(network), url).href.replace(/^http/, "ws");
const sockets: WebSocket[] = [];
let failed = 0;
const started = performance.now();

function open(address: string): Promise<void> {
  return new Promise((resolve) => {
    const ws = new WebSocket(target, {
      headers: { [PEER_ADDRESS_HEADER]: `[${address}]:${VIRTUAL_PEER_PORT}` },
      perMessageDeflate: false,
    });
    ws.once("open", () => {
      sockets.push(ws);
      resolve();
    });
    ws.once("error", () => {
      failed++;
      resolve();
    });
    // A refusal arrives as a close right after the upgrade.
    ws.once("close", () => resolve());
  });
}

let next = 0;
await Promise.all(
  Array.from({ length: Concurrency }, async () => {
    while (next < count) await open(addresses[next++]);
  }),
);
// Wait a moment for refusals (closed right after opening) to show.
await new Promise((resolve) => setTimeout(resolve, 500));
const opened = sockets.filter((ws) => ws.readyState === WebSocket.OPEN).length;
process.stdout.write(
  `${JSON.stringify({ opened, failed: count - opened, errors: failed, seconds: (performance.now() - started) / 1000 })}\n`,
);
setInterval(() => {
  for (const ws of sockets) if (ws.readyState === WebSocket.OPEN) ws.send(PING_TEXT);
}, PING_INTERVAL_MS);
process.once("SIGTERM", () => {
  for (const ws of sockets) ws.terminate();
  process.exit(0);
});
