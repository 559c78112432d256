/**
 * Liveness on the Worker: the object's alarm closes streams that stay silent past the timeout,
 * while pings, answered by the runtime without waking the object, keep a stream alive. The same
 * for the HTTP-only tunnel's streams, which are no WebSockets: the alarm must run for them too.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { openHttpTunnel } from "../contract/fixtures/http-tunnel.ts";
import { eventually } from "../support/eventually.ts";
import { wireguardMessage } from "./support/frames.ts";
import { removePersistDirectory, startWorkerRelay, type WorkerRelay } from "./support/miniflare.ts";
import { startTestNetwork, type TestNetwork } from "./support/network.ts";

/** The shortest timeout the relay accepts; the alarm then sweeps every 250 ms. */
const LIVENESS_TIMEOUT_MS = 1_000;

let relay: WorkerRelay;
let net: TestNetwork | undefined;

before(async () => {
  relay = await startWorkerRelay({ livenessTimeoutMs: LIVENESS_TIMEOUT_MS });
});

after(async () => {
  net?.close();
  await relay?.stop();
  if (relay) await removePersistDirectory(relay);
});

test("a silent stream is closed, a pinging one stays open", async () => {
  net = await startTestNetwork(relay.url, relay.operatorToken);
  const [silent, pinging] = [await net.provisionNode(), await net.provisionNode()];
  const silentStream = await net.connect(silent);
  const pingingStream = await net.connect(pinging);
  const pings = setInterval(() => {
    pingingStream.send("ping");
    net?.uplink.socket.send("ping");
  }, LIVENESS_TIMEOUT_MS / 5);
  try {
    // The object may be evicted meanwhile: pings must count without it.
    await relay.evictNetwork(net.network.name);
    await silentStream.wantClosed(4408, /^nothing received for \d+ s \(limit 1 s\)/);
    // A second silent stream, opened now, is the marker: once the alarm has closed it too, the
    // pinging stream has lived through more than twice the timeout.
    const marker = await net.connect(await net.provisionNode());
    await marker.wantClosed(4408, /^nothing received for \d+ s \(limit 1 s\)/);
    assert.equal(pingingStream.isOpen, true, "a stream that pings was closed");
    assert.equal(net.uplink.socket.isOpen, true, "the uplink that pings was closed");
    assert.equal(await pingingStream.nextText(), "pong");
  } finally {
    clearInterval(pings);
  }
});

test("a silent HTTP-only tunnel stream is closed by the alarm, one that sends stays open", async () => {
  const http = await startTestNetwork(relay.url, relay.operatorToken);
  const [silent, sending, third] = [
    await http.provisionNode(),
    await http.provisionNode(),
    await http.provisionNode(),
  ];
  // Without its WebSocket uplink the object holds no WebSocket at all: only the alarm armed for
  // the HTTP streams closes the silent one.
  http.uplink.socket.close();
  await eventually("the uplink to close", () => !http.uplink.socket.isOpen);
  const silentStream = openHttpTunnel(relay.url, http.network.name, silent.peerAddrPort);
  const sendingStream = openHttpTunnel(relay.url, http.network.name, sending.peerAddrPort);
  const sends = setInterval(() => {
    sendingStream.sendDatagrams([wireguardMessage(4)]);
  }, LIVENESS_TIMEOUT_MS / 5);
  try {
    const ending = await silentStream.ended();
    assert.equal(ending.code, 4408);
    assert.match(ending.reason, /^nothing received for \d+ s \(limit 1 s\)/);
    const marker = openHttpTunnel(relay.url, http.network.name, third.peerAddrPort);
    assert.equal((await marker.ended()).code, 4408);
    assert.equal(sendingStream.isOpen, true, "a stream that sends was closed");
  } finally {
    clearInterval(sends);
    for (const stream of [silentStream, sendingStream]) stream.close();
    http.close();
  }
});
