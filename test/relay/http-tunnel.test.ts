/**
 * The HTTP-only tunnel's own rules on the Node relay, beyond the contract suite (which runs every
 * contract case over it): the headers that keep proxies from buffering the stream, and the
 * session binding. Each attack is performed: a Send that names another node's session with its
 * own address, a session used on another network or on the uplink's path, and a body that is not
 * one gRPC-web message.
 */
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { after, before, describe, it } from "node:test";
import { MAX_SENDS_IN_FLIGHT } from "../../shared/tunnel/http-tunnel.ts";
import { framesMessage } from "../contract/fixtures/http-tunnel.ts";
import { NodeRelay } from "../contract/fixtures/node-relay.ts";
import { randomKey, type TestUplink } from "../worker/support/clients.ts";
import {
  nodeFrame,
  PEER_ADDED,
  readPeerFrame,
  wireguardMessage,
} from "../worker/support/frames.ts";

const SERVICE = "siderolink.edge.v1.HttpTunnel";

describe("the HTTP-only tunnel on the Node relay", () => {
  const relay = new NodeRelay();
  const closers: { close(): void }[] = [];
  before(() => relay.start());
  after(async () => {
    for (const closer of closers) closer.close();
    await relay.close();
  });

  async function networkWithNode() {
    const summary = await relay.createNetwork();
    const uplink = relay.openUplink(summary.name, summary.uplinkSecret);
    closers.push(uplink.socket);
    await uplink.hello();
    const provisionOne = async () => {
      const added = (async () => {
        for (;;) if ((await uplink.nextEvent()).type === PEER_ADDED) return;
      })();
      const [reply] = await Promise.all([
        relay.provisionOverHttp("connect", {
          nodeUuid: randomUUID(),
          nodePublicKey: randomKey(),
          joinToken: summary.joinToken,
        }),
        added,
      ]);
      return reply.grpcPeerAddrPort;
    };
    return { summary, uplink, provisionOne };
  }

  /** Opens Receive by hand and returns the response (its body left unread). */
  async function receive(network: string, peerAddrPort: string): Promise<Response> {
    const abort = new AbortController();
    closers.push({ close: () => abort.abort() });
    return fetch(new URL(`/v1/networks/${network}/tunnel/${SERVICE}/Receive`, relay.url), {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "x-siderolink-ipv6-addr": peerAddrPort,
      },
      body: framesMessage([]),
      signal: abort.signal,
    });
  }

  async function send(
    path: string,
    session: string,
    headers: Record<string, string>,
    body: Uint8Array,
  ): Promise<Response> {
    const response = await fetch(new URL(path, relay.url), {
      method: "POST",
      headers: {
        "content-type": "application/grpc-web+proto",
        "x-siderolink-session": session,
        ...headers,
      },
      body,
    });
    await response.body?.cancel();
    return response;
  }

  async function atUplink(uplink: TestUplink): Promise<[Uint8Array, Uint8Array][]> {
    return readPeerFrame(await uplink.nextDatagrams());
  }

  it("answers Receive as a gRPC-web stream that proxies must not buffer, with an unguessable session id", async () => {
    const { summary, provisionOne } = await networkWithNode();
    const address = await provisionOne();
    const ids = new Set<string>();
    for (let i = 0; i < 2; i++) {
      const response = await receive(summary.name, address);
      assert.equal(response.status, 200);
      assert.equal(response.headers.get("content-type"), "application/grpc-web+proto");
      assert.equal(response.headers.get("x-accel-buffering"), "no");
      assert.match(response.headers.get("cache-control") ?? "", /no-transform/);
      const id = response.headers.get("x-siderolink-session") ?? "";
      assert.match(id, /^[A-Za-z0-9_-]{22}$/, "128 bits of base64url");
      ids.add(id);
      // The first message is an empty Frames: five zero bytes, at once.
      const reader = response.body!.getReader();
      const { value } = await reader.read();
      assert.deepEqual([...(value ?? [])].slice(0, 5), [0, 0, 0, 0, 0]);
      await reader.cancel();
    }
    assert.equal(ids.size, 2);
  });

  it("a Send naming another node's session with its own address is NotFound and reaches nothing", async () => {
    const { summary, uplink, provisionOne } = await networkWithNode();
    const [victim, attacker] = [await provisionOne(), await provisionOne()];
    // The victim's only stream, so it owns the address; the attacker names its session.
    const victimSession = (await receive(summary.name, victim)).headers.get(
      "x-siderolink-session",
    )!;
    const forged = wireguardMessage(4, 99);
    const path = `/v1/networks/${summary.name}/tunnel/${SERVICE}/Send`;
    const response = await send(
      path,
      victimSession,
      { "x-siderolink-ipv6-addr": attacker },
      framesMessage([nodeFrame([forged])]),
    );
    assert.equal(response.headers.get("grpc-status"), "5", "NotFound");
    // The same session with the right address works, and is the first thing the uplink sees.
    const genuine = wireguardMessage(4, 42);
    const ok = await send(
      path,
      victimSession,
      { "x-siderolink-ipv6-addr": victim },
      framesMessage([nodeFrame([genuine])]),
    );
    assert.equal(ok.headers.get("grpc-status"), "0");
    const [[tag, datagram]] = await atUplink(uplink);
    assert.deepEqual(datagram, genuine, "the forged datagram never reached the uplink");
    assert.equal(Buffer.from(tag).length, 16);
  });

  it("a session is bound to its network and its path: another network's route or the uplink's path is NotFound", async () => {
    const here = await networkWithNode();
    const there = await networkWithNode();
    const address = await here.provisionOne();
    const session = (await receive(here.summary.name, address)).headers.get(
      "x-siderolink-session",
    )!;
    const body = framesMessage([nodeFrame([wireguardMessage(4)])]);
    const header = { "x-siderolink-ipv6-addr": address };
    for (const path of [
      `/v1/networks/${there.summary.name}/tunnel/${SERVICE}/Send`,
      `/v1/networks/${here.summary.name}/uplink/${SERVICE}/Send`,
    ]) {
      const response = await send(path, session, header, body);
      assert.equal(response.headers.get("grpc-status"), "5", path);
    }
    const uplinkPath = `/v1/networks/${here.summary.name}/uplink/${SERVICE}/Send`;
    const withSecret = await send(
      uplinkPath,
      session,
      { authorization: `Bearer ${here.summary.uplinkSecret}` },
      body,
    );
    assert.equal(withSecret.headers.get("grpc-status"), "5", "a node's session is no uplink's");
  });

  it("a Send body that is not exactly one gRPC-web message ends the session with 1007 naming the problem", async () => {
    const { summary, provisionOne } = await networkWithNode();
    const address = await provisionOne();
    for (const [body, reason] of [
      [Uint8Array.of(0, 0, 0, 0, 9, 0x0a), /claims 9 bytes but the body holds 1/],
      [Uint8Array.of(1, 0, 0, 0, 0), /flags 0x1: expected 0/],
      [Uint8Array.of(0, 0, 0, 0, 2, 0x12, 0x00), /expected field 1 \(0x0a\)/],
    ] as const) {
      // The address's only stream: the previous one ended with the previous bad body.
      const response = await receive(summary.name, address);
      const session = response.headers.get("x-siderolink-session")!;
      const answer = await send(
        `/v1/networks/${summary.name}/tunnel/${SERVICE}/Send`,
        session,
        { "x-siderolink-ipv6-addr": address },
        body,
      );
      assert.equal(answer.headers.get("grpc-status"), "3", "InvalidArgument");
      assert.equal(answer.headers.get("siderolink-close-code"), "1007");
      assert.match(decodeURIComponent(answer.headers.get("grpc-message") ?? ""), reason);
      const text = Buffer.from(await response.arrayBuffer());
      const trailer = text.subarray(text.lastIndexOf(0x80) + 5).toString();
      assert.match(trailer, /siderolink-close-code:1007/);
    }
  });

  it("numbered Sends are switched in their order whatever order they arrive in, an early one answered only then; one too far ahead ends the session", async () => {
    const { summary, uplink, provisionOne } = await networkWithNode();
    const address = await provisionOne();
    const response = await receive(summary.name, address);
    const session = response.headers.get("x-siderolink-session")!;
    const path = `/v1/networks/${summary.name}/tunnel/${SERVICE}/Send`;
    const [first, second] = [wireguardMessage(4, 61), wireguardMessage(4, 62)];
    const numbered = (seq: number, datagram: Uint8Array) =>
      send(
        path,
        session,
        { "x-siderolink-ipv6-addr": address, "x-siderolink-seq": String(seq) },
        framesMessage([nodeFrame([datagram])]),
      );
    let overtakerAnswered = false;
    const overtaker = numbered(1, second).then((answer) => {
      overtakerAnswered = true;
      return answer;
    });
    // An unnumbered Send is switched at once: once its datagram is at the uplink, the relay has
    // had its turn to answer Send 1 early, and must not have.
    const marker = wireguardMessage(4, 60);
    await send(
      path,
      session,
      { "x-siderolink-ipv6-addr": address },
      framesMessage([nodeFrame([marker])]),
    );
    assert.deepEqual(
      (await atUplink(uplink)).map(([, datagram]) => datagram),
      [marker],
    );
    assert.equal(overtakerAnswered, false, "Send 1 is answered only once Send 0 has arrived");
    assert.equal((await numbered(0, first)).headers.get("grpc-status"), "0");
    assert.equal((await overtaker).headers.get("grpc-status"), "0");
    const arrived = [...(await atUplink(uplink)), ...(await atUplink(uplink))];
    assert.deepEqual(
      arrived.map(([, datagram]) => datagram),
      [first, second],
    );
    // Two switched: the next is 2, and 2 + MAX_SENDS_IN_FLIGHT is more than may be out at once.
    const tooFar = await numbered(2 + MAX_SENDS_IN_FLIGHT, wireguardMessage(4));
    assert.equal(tooFar.headers.get("siderolink-close-code"), "1007");
    assert.match(
      decodeURIComponent(tooFar.headers.get("grpc-message") ?? ""),
      new RegExp(`Send ${2 + MAX_SENDS_IN_FLIGHT} out of order: expected 2`),
    );
  });

  it("a Send waiting for an earlier one is answered Unavailable when its stream ends", async () => {
    const { summary, provisionOne } = await networkWithNode();
    const address = await provisionOne();
    const abort = new AbortController();
    const response = await fetch(
      new URL(`/v1/networks/${summary.name}/tunnel/${SERVICE}/Receive`, relay.url),
      {
        method: "POST",
        headers: {
          "content-type": "application/grpc-web+proto",
          "x-siderolink-ipv6-addr": address,
        },
        body: framesMessage([]),
        signal: abort.signal,
      },
    );
    const session = response.headers.get("x-siderolink-session")!;
    const waiting = send(
      `/v1/networks/${summary.name}/tunnel/${SERVICE}/Send`,
      session,
      { "x-siderolink-ipv6-addr": address, "x-siderolink-seq": "1" },
      framesMessage([nodeFrame([wireguardMessage(4)])]),
    );
    // The node's Receive goes away (a proxy cut it, the node stopped): its session ends.
    abort.abort();
    const answer = await waiting;
    assert.equal(answer.headers.get("grpc-status"), "14", "Unavailable");
    assert.match(
      decodeURIComponent(answer.headers.get("grpc-message") ?? ""),
      /stream ended before the Sends ahead of this one arrived/,
    );
  });

  it("a Send number sent twice, to keep more requests waiting than the window, ends the session", async () => {
    const { summary, provisionOne } = await networkWithNode();
    const address = await provisionOne();
    const response = await receive(summary.name, address);
    const session = response.headers.get("x-siderolink-session")!;
    const path = `/v1/networks/${summary.name}/tunnel/${SERVICE}/Send`;
    const numbered = () =>
      send(
        path,
        session,
        { "x-siderolink-ipv6-addr": address, "x-siderolink-seq": "1" },
        framesMessage([nodeFrame([wireguardMessage(4)])]),
      );
    // Whichever of the two the relay sees second ends the session; the first is then let go.
    const answers = await Promise.all([numbered(), numbered()]);
    const refused = answers.find(
      (answer) => answer.headers.get("siderolink-close-code") === "1007",
    );
    assert.ok(refused, "one of the two ends the session");
    assert.match(
      decodeURIComponent(refused.headers.get("grpc-message") ?? ""),
      /Send 1 out of order: expected 0 \(at most \d+ in flight, each number once\)/,
    );
    const other = answers.find((answer) => answer !== refused)!;
    assert.equal(other.headers.get("grpc-status"), "14", "the waiting one is let go");
  });
});
