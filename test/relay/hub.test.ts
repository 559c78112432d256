/** The hub alone, over in-memory sockets and a hand-driven clock (timers included). */
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { Hub, type HubLimits, NoUplinkError } from "../../relay/hub/hub.ts";
import type { HubSocket, SocketAttachment } from "../../relay/hub/socket.ts";
import { formatIPv6, parseIPv6 } from "../../shared/net/ip.ts";
import { createBatchSender } from "../../shared/tunnel/batch-sender.ts";
import {
  decodeControl,
  decodeNodeDatagrams,
  decodePeerDatagrams,
  type PeerEntry,
} from "../../shared/tunnel/decode.ts";
import { createBatchEncoder, encodeAck, encodeHello } from "../../shared/tunnel/encode.ts";
import {
  CloseCode,
  FrameType,
  MAX_FRAME_SIZE,
  PROTOCOL_VERSION,
} from "../../shared/tunnel/frame.ts";
import { eventually } from "../support/eventually.ts";
import { FakeClock } from "../wireguard/support/fake-clock.ts";
import { markerOf, transportMessage } from "./helpers.ts";

/** Frames what the hub sends as a WebSocket runtime does, and keeps copies of the frames. */
class MemorySocket implements HubSocket {
  readonly sent: (Uint8Array | string)[] = [];
  closed: { code: number; reason: string } | undefined;
  bufferedAmount = 0;
  attachment: SocketAttachment | undefined;
  lastPingAt: number | undefined;
  readonly #record = (frame: Uint8Array): void => {
    this.sent.push(frame.slice());
  };
  readonly #toNode = createBatchSender(createBatchEncoder(false), this.#record);
  readonly #toUplink = createBatchSender(createBatchEncoder(true), this.#record);

  sendDatagrams(
    datagrams: readonly Uint8Array[],
    tags: readonly Uint8Array[] | undefined,
    count: number,
  ): void {
    const sender = tags ? this.#toUplink : this.#toNode;
    for (let i = 0; i < count; i++) sender.add(datagrams[i], tags?.[i]);
    sender.flush();
  }
  sendControl(message: Uint8Array | string): void {
    this.sent.push(message);
  }
  close(code: number, reason: string): void {
    this.closed ??= { code, reason };
  }
  persist(attachment: SocketAttachment): void {
    this.attachment = attachment;
  }
  datagrams(): number[] {
    const out: number[] = [];
    for (const frame of this.sent) {
      if (typeof frame === "string" || frame[0] !== FrameType.NodeDatagrams) continue;
      const views: Uint8Array[] = [];
      const count = decodeNodeDatagrams(frame, views);
      for (let i = 0; i < count; i++) out.push(markerOf(views[i]));
    }
    return out;
  }
  /** Every datagram sent to this node stream, as copies. */
  nodeMessages(): Uint8Array[] {
    const out: Uint8Array[] = [];
    for (const frame of this.sent) {
      if (typeof frame === "string" || frame[0] !== FrameType.NodeDatagrams) continue;
      const views: Uint8Array[] = [];
      const count = decodeNodeDatagrams(frame, views);
      for (let i = 0; i < count; i++) out.push(views[i].slice());
    }
    return out;
  }
  tagged(): { tag: string; marker: number }[] {
    const out: { tag: string; marker: number }[] = [];
    for (const frame of this.sent) {
      if (typeof frame === "string" || frame[0] !== FrameType.PeerDatagrams) continue;
      const tags: Uint8Array[] = [];
      const views: Uint8Array[] = [];
      const count = decodePeerDatagrams(frame, tags, views);
      for (let i = 0; i < count; i++)
        out.push({ tag: formatIPv6(tags[i]), marker: markerOf(views[i]) });
    }
    return out;
  }
  control() {
    return this.sent
      .filter((f): f is Uint8Array => typeof f !== "string" && f[0] >= 0x10)
      .map(decodeControl);
  }
}

const VIRTUAL_A = "fdae:41e4:649b:9304::a";
const VIRTUAL_B = "fdae:41e4:649b:9304::b";
const entry = (virtual: string, key = 1): PeerEntry => ({
  publicKey: new Uint8Array(32).fill(key),
  address: new Uint8Array(16).fill(2),
  virtualAddress: parseIPv6(virtual),
});

function setup(limits: Partial<HubLimits> = {}) {
  const clock = new FakeClock();
  const hub = new Hub({
    limits,
    clock,
    hooks: { uplinkHello: async () => {}, peers: async () => [entry(VIRTUAL_A)] },
  });
  return {
    hub,
    /** Moves time on, running the hub's timers that fall due. */
    advance(ms: number) {
      clock.advance(ms);
    },
    now: () => clock.wallNow(),
  };
}

function batch(markers: number[]): Uint8Array {
  const encoder = createBatchEncoder(false);
  for (const marker of markers) encoder.add(transportMessage(marker));
  return encoder.finish().slice();
}

function tagged(items: [string, number][]): Uint8Array {
  const encoder = createBatchEncoder(true);
  for (const [virtual, marker] of items)
    encoder.add(transportMessage(marker), entry(virtual).virtualAddress);
  return encoder.finish().slice();
}

async function readyUplink(hub: Hub, now: number): Promise<MemorySocket> {
  const uplink = new MemorySocket();
  hub.attach(uplink, { v: 1, role: "uplink", serverPublicKey: null, connectedAt: now });
  hub.message(uplink, encodeHello(PROTOCOL_VERSION, new Uint8Array(32).fill(7)));
  await eventually("the uplink to be ready", () => hub.hasUplink || undefined);
  return uplink;
}

describe("hub", () => {
  test("HELLO persists the key in the attachment and answers with the peer list", async () => {
    const { hub, now } = setup();
    const uplink = await readyUplink(hub, now());
    assert.deepEqual(uplink.attachment, {
      v: 1,
      role: "uplink",
      serverPublicKey: Buffer.from(new Uint8Array(32).fill(7)).toString("base64"),
      connectedAt: now(),
    });
    const [list] = uplink.control();
    assert.equal(list.type, FrameType.PeerList);
    assert.ok(list.type === FrameType.PeerList && list.last && list.peers.length === 1);
  });

  test("datagrams before HELLO close the uplink; a wrong version is refused by name", () => {
    const { hub, now } = setup();
    const early = new MemorySocket();
    hub.attach(early, { v: 1, role: "uplink", serverPublicKey: null, connectedAt: now() });
    hub.message(early, tagged([[VIRTUAL_A, 1]]));
    assert.deepEqual(early.closed, { code: CloseCode.Malformed, reason: "datagrams before HELLO" });
    const old = new MemorySocket();
    hub.attach(old, { v: 1, role: "uplink", serverPublicKey: null, connectedAt: now() });
    hub.message(old, encodeHello(9, new Uint8Array(32)));
    assert.equal(old.closed?.code, CloseCode.UnsupportedVersion);
    assert.match(old.closed?.reason ?? "", /version 9 is not supported; this relay speaks 1/);
  });

  test("drops are counted by reason: no uplink, unknown peer, not WireGuard", async () => {
    const { hub, now } = setup();
    const node = new MemorySocket();
    hub.attach(node, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now() });
    hub.message(node, batch([1, 2]));
    assert.equal(hub.metrics.drops.no_uplink, 2);
    const uplink = await readyUplink(hub, now());
    hub.message(
      uplink,
      tagged([
        [VIRTUAL_B, 3],
        [VIRTUAL_A, 4],
      ]),
    );
    assert.equal(hub.metrics.drops.unknown_peer, 1);
    assert.deepEqual(node.datagrams(), [4]);
    const encoder = createBatchEncoder(false);
    encoder.add(new Uint8Array([1, 0, 0, 0, 5]));
    hub.message(node, encoder.finish().slice());
    assert.equal(hub.metrics.drops.not_wireguard, 1);
    assert.deepEqual(uplink.tagged(), []);
  });

  test("a frame over the size limit closes the stream with 1009 and says why", () => {
    const { hub, now } = setup();
    const node = new MemorySocket();
    hub.attach(node, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now() });
    const huge = new Uint8Array(MAX_FRAME_SIZE + 10);
    huge[0] = FrameType.NodeDatagrams;
    hub.message(node, huge);
    assert.equal(node.closed?.code, CloseCode.TooBig);
    assert.equal(
      node.closed?.reason,
      `frame too big: ${MAX_FRAME_SIZE + 10} bytes (limit ${MAX_FRAME_SIZE})`,
    );
    assert.equal(hub.nodeCount, 0);
  });

  test("silent streams are closed within the liveness timeout; pings keep a stream alive", () => {
    const { hub, now, advance } = setup({ livenessTimeoutMs: 45_000 });
    const silent = new MemorySocket();
    const pinging = new MemorySocket();
    const autoAnswered = new MemorySocket();
    for (const [socket, virtual] of [
      [silent, VIRTUAL_A],
      [pinging, VIRTUAL_B],
    ] as const) {
      hub.attach(socket, { v: 1, role: "node", virtualAddress: virtual, connectedAt: now() });
    }
    hub.attach(autoAnswered, { v: 1, role: "uplink", serverPublicKey: null, connectedAt: now() });
    for (let second = 0; second < 60; second += 10) {
      advance(10_000);
      hub.message(pinging, "ping");
      autoAnswered.lastPingAt = now();
      hub.sweep();
    }
    assert.equal(silent.closed?.code, CloseCode.LivenessTimeout);
    assert.match(silent.closed?.reason ?? "", /nothing received for 50 s \(limit 45 s\)/);
    assert.equal(pinging.closed, undefined);
    assert.equal(autoAnswered.closed, undefined, "a runtime's auto-answered pings count");
    assert.ok(pinging.sent.includes("pong"));
    assert.equal(hub.metrics.livenessTimeouts, 1);
  });

  test("addPeer: refused without an uplink, waits for the ACK, gives up after the timeout", async () => {
    const { hub, now, advance } = setup({ ackTimeoutMs: 50 });
    assert.throws(() => hub.addPeer(entry(VIRTUAL_B)), NoUplinkError);
    const uplink = await readyUplink(hub, now());
    const acked = hub.addPeer(entry(VIRTUAL_B));
    const added = uplink.control().find((m) => m.type === FrameType.PeerAdded);
    assert.ok(added?.type === FrameType.PeerAdded);
    hub.message(uplink, encodeAck(added.seq));
    assert.equal(await acked, "acked");
    const unanswered = hub.addPeer(entry(VIRTUAL_B, 2));
    advance(50);
    assert.equal(await unanswered, "timeout");
    assert.equal(hub.metrics.ackTimeouts, 1);
    const pending = hub.addPeer(entry(VIRTUAL_B, 3));
    hub.closed(uplink);
    assert.equal(await pending, "uplink_gone");
  });

  test("an ACK wait ends on the hub's clock: not before ackTimeoutMs, and an ACK after it is late", async () => {
    const { hub, now, advance } = setup({ ackTimeoutMs: 5_000 });
    const uplink = await readyUplink(hub, now());
    let result: string | undefined;
    const waiting = hub.addPeer(entry(VIRTUAL_B)).then((r) => {
      result = r;
    });
    const added = uplink.control().find((m) => m.type === FrameType.PeerAdded);
    assert.ok(added?.type === FrameType.PeerAdded);
    // setImmediate runs after every settled promise's callbacks, and before any real timer.
    const settled = () => new Promise((resolve) => setImmediate(resolve));
    advance(4_999);
    await settled();
    assert.equal(result, undefined, "still waiting 1 ms before the timeout");
    assert.equal(hub.metrics.ackTimeouts, 0);
    advance(1);
    await settled();
    assert.equal(result, "timeout");
    await waiting;
    assert.equal(hub.metrics.ackTimeouts, 1);
    hub.message(uplink, encodeAck(added.seq));
    assert.equal(hub.metrics.acks, 0, "a late ACK settles nothing");
    assert.equal(uplink.closed, undefined, "a late ACK is no protocol error");
  });

  test("removePeer tells the uplink and closes the node's stream", async () => {
    const { hub, now } = setup();
    const uplink = await readyUplink(hub, now());
    const node = new MemorySocket();
    hub.attach(node, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now() });
    hub.removePeer(entry(VIRTUAL_A), "node revoked by the operator");
    assert.deepEqual(node.closed, {
      code: CloseCode.PeerRemoved,
      reason: "node revoked by the operator",
    });
    assert.ok(uplink.control().some((m) => m.type === FrameType.PeerRemoved));
  });

  test("a congested destination keeps a bounded drop-oldest backlog and drains it in order", async () => {
    const { hub, now, advance } = setup({
      nodeQueue: { datagrams: 4, bytes: 1 << 20 },
      highWaterBytes: 1000,
      retryMs: 5,
    });
    const uplink = await readyUplink(hub, now());
    const node = new MemorySocket();
    hub.attach(node, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now() });
    node.bufferedAmount = 5000;
    for (let marker = 0; marker < 10; marker++) hub.message(uplink, tagged([[VIRTUAL_A, marker]]));
    assert.equal(hub.queuedDatagrams, 4);
    assert.equal(hub.metrics.drops.queue_full, 6);
    assert.deepEqual(node.datagrams(), []);
    node.bufferedAmount = 0;
    advance(5);
    assert.deepEqual(node.datagrams(), [6, 7, 8, 9]);
    assert.equal(hub.queuedDatagrams, 0);
  });

  test("a congested uplink is retried every retryMs on the hub's clock, backlog first, tags kept", async () => {
    const { hub, now, advance } = setup({ highWaterBytes: 1000, retryMs: 20 });
    const uplink = await readyUplink(hub, now());
    const nodeA = new MemorySocket();
    const nodeB = new MemorySocket();
    hub.attach(nodeA, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now() });
    hub.attach(nodeB, { v: 1, role: "node", virtualAddress: VIRTUAL_B, connectedAt: now() });
    uplink.bufferedAmount = 5000;
    hub.message(nodeA, batch([1, 2]));
    hub.message(nodeB, batch([3]));
    assert.equal(hub.queuedDatagrams, 3);
    advance(19);
    assert.deepEqual(uplink.tagged(), [], "nothing is retried before retryMs");
    advance(1);
    assert.deepEqual(uplink.tagged(), [], "a retry that finds the socket still congested waits");
    assert.equal(hub.queuedDatagrams, 3);
    uplink.bufferedAmount = 0;
    advance(19);
    assert.deepEqual(uplink.tagged(), []);
    advance(1);
    assert.deepEqual(uplink.tagged(), [
      { tag: VIRTUAL_A, marker: 1 },
      { tag: VIRTUAL_A, marker: 2 },
      { tag: VIRTUAL_B, marker: 3 },
    ]);
    assert.equal(hub.queuedDatagrams, 0);
    // Once drained, a message goes out at once, behind nothing.
    hub.message(nodeB, batch([4]));
    assert.deepEqual(uplink.tagged().at(-1), { tag: VIRTUAL_B, marker: 4 });
    assert.equal(hub.metrics.drops.queue_full, 0);
  });

  test("a message to a congested destination whose socket frees up sends the backlog before it", async () => {
    const { hub, now } = setup({ highWaterBytes: 1000, retryMs: 20 });
    const uplink = await readyUplink(hub, now());
    const node = new MemorySocket();
    hub.attach(node, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now() });
    node.bufferedAmount = 5000;
    hub.message(uplink, tagged([[VIRTUAL_A, 1]]));
    node.bufferedAmount = 0;
    hub.message(uplink, tagged([[VIRTUAL_A, 2]]));
    assert.deepEqual(node.datagrams(), [1, 2]);
    assert.equal(node.sent.length, 1, "backlog and new datagrams share one batch frame");
    assert.equal(hub.queuedDatagrams, 0);
  });

  test("a hub rebuilt from the sockets' attachments switches as before, without sending anything", async () => {
    const first = setup();
    const uplink = await readyUplink(first.hub, first.now());
    const nodeA = new MemorySocket();
    const nodeB = new MemorySocket();
    first.hub.attach(nodeA, {
      v: 1,
      role: "node",
      virtualAddress: VIRTUAL_A,
      connectedAt: first.now(),
    });
    first.hub.attach(nodeB, {
      v: 1,
      role: "node",
      virtualAddress: VIRTUAL_B,
      connectedAt: first.now(),
    });
    const sentBefore = uplink.sent.length;

    // Attachments go through JSON, as a Durable Object's serializeAttachment stores them.
    const saved = [uplink, nodeA, nodeB].map(
      (s) => [s, JSON.parse(JSON.stringify(s.attachment))] as const,
    );
    assert.ok(saved.every(([, a]) => JSON.stringify(a).length < 16 * 1024));
    const second = setup();
    second.hub.restore(saved);
    assert.equal(uplink.sent.length, sentBefore, "restore sends nothing");
    assert.ok(second.hub.hasUplink);
    assert.equal(second.hub.nodeCount, 2);
    second.hub.message(nodeB, batch([5]));
    assert.deepEqual(uplink.tagged(), [{ tag: VIRTUAL_B, marker: 5 }]);
    second.hub.message(uplink, tagged([[VIRTUAL_A, 6]]));
    assert.deepEqual(nodeA.datagrams(), [6]);
  });
});

test("restoring an older socket for a taken address keeps the newer one", () => {
  const { hub, now } = setup();
  const newer = new MemorySocket();
  const older = new MemorySocket();
  hub.attach(newer, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now() });
  hub.restore([
    [older, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now() - 5000 }],
  ]);
  assert.deepEqual(older.closed, { code: CloseCode.Replaced, reason: "peer replaced" });
  assert.equal(newer.closed, undefined);
  assert.equal(hub.nodeCount, 1);
});

/** A handshake message of `type` with `index` (little-endian) at `offset`, the rest zero. */
function handshake(type: 1 | 2 | 3, index: number): Uint8Array {
  const sizes = { 1: 148, 2: 92, 3: 64 };
  const message = new Uint8Array(sizes[type]);
  message[0] = type;
  // Initiation: sender at 4. Response: sender at 4, receiver at 8. Cookie reply: receiver at 4.
  const view = new DataView(message.buffer);
  if (type === 2) {
    view.setUint32(4, 0xabcdef, true);
    view.setUint32(8, index, true);
  } else view.setUint32(4, index, true);
  return message;
}

function nodeBatch(datagrams: Uint8Array[]): Uint8Array {
  const encoder = createBatchEncoder(false);
  for (const datagram of datagrams) encoder.add(datagram);
  return encoder.finish().slice();
}

function uplinkBatch(items: [string, Uint8Array][]): Uint8Array {
  const encoder = createBatchEncoder(true);
  for (const [virtual, datagram] of items) encoder.add(datagram, parseIPv6(virtual));
  return encoder.finish().slice();
}

describe("hub: tunnel ownership (an address alone proves nothing)", () => {
  async function owned(limits: Partial<HubLimits> = {}) {
    const ctx = setup(limits);
    const uplink = await readyUplink(ctx.hub, ctx.now());
    const owner = new MemorySocket();
    ctx.hub.attach(owner, {
      v: 1,
      role: "node",
      virtualAddress: VIRTUAL_A,
      connectedAt: ctx.now(),
    });
    return { ...ctx, uplink, owner };
  }
  function candidate(hub: Hub, now: number): MemorySocket {
    const socket = new MemorySocket();
    hub.attach(socket, { v: 1, role: "node", virtualAddress: VIRTUAL_A, connectedAt: now });
    return socket;
  }

  test("a second stream for an owned address does not pre-empt it: the owner keeps the server's data, the candidate gets none and can send only initiations", async () => {
    const { hub, now, uplink, owner } = await owned();
    const attacker = candidate(hub, now());
    assert.equal(owner.closed, undefined, "the live stream was not closed");
    assert.equal(attacker.closed, undefined);
    assert.equal(attacker.attachment?.role === "node" && attacker.attachment.candidate, true);
    assert.equal(hub.hasNode(VIRTUAL_A), true);
    hub.message(uplink, tagged([[VIRTUAL_A, 1]]));
    assert.deepEqual(owner.datagrams(), [1]);
    assert.deepEqual(attacker.nodeMessages(), []);
    // Injected transport data and responses go nowhere; an initiation reaches the server.
    hub.message(attacker, nodeBatch([transportMessage(2), handshake(2, 5), handshake(1, 77)]));
    assert.deepEqual(
      uplink.tagged().map((t) => t.tag),
      [VIRTUAL_A],
      "only the initiation reached the uplink",
    );
    assert.equal(hub.metrics.drops.unproven, 2);
  });

  test("a candidate whose initiation the server answers (response receiver = its sender index) becomes the owner; the old owner ends with 'peer replaced'", async () => {
    const { hub, now, uplink, owner } = await owned();
    const restarted = candidate(hub, now());
    hub.message(restarted, nodeBatch([handshake(1, 0x1234_5678)]));
    const response = handshake(2, 0x1234_5678);
    hub.message(uplink, uplinkBatch([[VIRTUAL_A, response]]));
    assert.deepEqual(restarted.nodeMessages(), [response]);
    assert.deepEqual(owner.closed, { code: CloseCode.Replaced, reason: "peer replaced" });
    assert.deepEqual(restarted.attachment, {
      v: 1,
      role: "node",
      virtualAddress: VIRTUAL_A,
      connectedAt: now(),
    });
    hub.message(uplink, tagged([[VIRTUAL_A, 9]]));
    assert.deepEqual(restarted.datagrams().at(-1), 9);
    hub.message(restarted, batch([10]));
    assert.deepEqual(uplink.tagged().at(-1), { tag: VIRTUAL_A, marker: 10 });
    assert.equal(hub.nodeCount, 1);
  });

  test("a response for an index the candidate did not send does not promote it and goes to the owner", async () => {
    const { hub, now, uplink, owner } = await owned();
    const attacker = candidate(hub, now());
    hub.message(attacker, nodeBatch([handshake(1, 1)]));
    const other = handshake(2, 2);
    hub.message(uplink, uplinkBatch([[VIRTUAL_A, other]]));
    assert.equal(owner.closed, undefined);
    assert.deepEqual(owner.nodeMessages(), [other]);
    assert.deepEqual(attacker.nodeMessages(), []);
    // An index the owner itself used stays the owner's even when a candidate copies it.
    hub.message(owner, nodeBatch([handshake(1, 3)]));
    hub.message(attacker, nodeBatch([handshake(1, 3)]));
    const ownersAnswer = handshake(2, 3);
    hub.message(uplink, uplinkBatch([[VIRTUAL_A, ownersAnswer]]));
    assert.equal(owner.closed, undefined);
    assert.deepEqual(owner.nodeMessages().at(-1), ownersAnswer);
    assert.deepEqual(attacker.nodeMessages(), []);
  });

  test("a cookie reply for a candidate's index goes to that candidate and does not promote it", async () => {
    const { hub, now, uplink, owner } = await owned();
    const pending = candidate(hub, now());
    hub.message(pending, nodeBatch([handshake(1, 42)]));
    const cookie = handshake(3, 42);
    hub.message(uplink, uplinkBatch([[VIRTUAL_A, cookie]]));
    assert.deepEqual(pending.nodeMessages(), [cookie]);
    assert.deepEqual(owner.nodeMessages(), []);
    assert.equal(owner.closed, undefined);
    assert.equal(pending.attachment?.role === "node" && pending.attachment.candidate, true);
  });

  test("candidates per address are capped (the newest displaces the oldest) and time out unproven", async () => {
    const { hub, now, advance, owner } = await owned({
      maxCandidatesPerAddress: 2,
      candidateTimeoutMs: 60_000,
      livenessTimeoutMs: 1_000_000,
    });
    const [first, second, third] = [
      candidate(hub, now()),
      candidate(hub, now()),
      candidate(hub, now()),
    ];
    assert.equal(first.closed?.code, CloseCode.Replaced);
    assert.match(first.closed?.reason ?? "", /waiting to prove itself/);
    assert.equal(hub.nodeCount, 3, "the owner and two candidates");
    advance(60_001);
    hub.sweep();
    assert.equal(second.closed?.code, CloseCode.LivenessTimeout);
    assert.match(third.closed?.reason ?? "", /no handshake answered within 60 s/);
    assert.equal(owner.closed, undefined);
    assert.equal(hub.nodeCount, 1);
  });

  test("when the owner leaves, the newest candidate inherits the address; a revoked peer's candidates close too", async () => {
    const { hub, now, uplink, owner } = await owned();
    const heir = candidate(hub, now());
    hub.closed(owner);
    hub.message(uplink, tagged([[VIRTUAL_A, 5]]));
    assert.deepEqual(heir.datagrams(), [5]);
    const late = candidate(hub, now());
    hub.removePeer(entry(VIRTUAL_A), "node revoked by the operator");
    assert.equal(heir.closed?.code, CloseCode.PeerRemoved);
    assert.equal(late.closed?.code, CloseCode.PeerRemoved);
    assert.equal(hub.nodeCount, 0);
  });

  test("a hub rebuilt from attachments keeps owner and candidate apart", async () => {
    const { hub, now, uplink, owner } = await owned();
    const pending = candidate(hub, now());
    const saved = [uplink, owner, pending].map(
      (s) => [s, JSON.parse(JSON.stringify(s.attachment))] as const,
    );
    const second = setup();
    second.hub.restore(saved);
    second.hub.message(uplink, tagged([[VIRTUAL_A, 8]]));
    assert.deepEqual(owner.datagrams(), [8]);
    assert.deepEqual(pending.nodeMessages(), []);
    assert.equal(owner.closed, undefined);
  });
});
