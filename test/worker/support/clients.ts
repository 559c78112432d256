/**
 * Clients that talk to a running relay the way sidecars do: the admin API over fetch,
 * Provision through connect-web's transports, and WebSocket streams with assertion methods
 * that fail fast (each waits at most a few seconds).
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport, createGrpcWebTransport } from "@connectrpc/connect-web";
import WebSocket from "ws";
import { ProvisionService } from "../../../shared/gen/sidero/link/provision_pb.ts";
import {
  ackFrame,
  helloFrame,
  PEER_ADDED,
  PEER_LIST,
  PEER_REMOVED,
  type PeerEvent,
  readPeerEvent,
  readPeerList,
} from "./frames.ts";

export const WAIT_MS = 5_000;
const CLOSE_TIMEOUT_MS = 200;

/** A network name no other test uses. */
export function uniqueNetworkName(prefix = "net"): string {
  return `${prefix}-${randomBytes(6).toString("hex")}`;
}

/** A WireGuard public key as SideroLink carries it: 32 bytes, padded base64. */
export function randomKey(): string {
  return randomBytes(32).toString("base64");
}

export interface NetworkSummary {
  readonly name: string;
  readonly apiUrl: string;
  readonly joinToken: string;
  readonly adminSecret: string;
  /** Opens the network's uplink; shown once, at creation. */
  readonly uplinkSecret: string;
  readonly prefix: string;
  readonly serverAddress: string;
}

export async function adminCall(
  base: URL,
  token: string,
  method: string,
  path: string,
  body?: unknown,
): Promise<{ status: number; json: Record<string, unknown> }> {
  const response = await fetch(new URL(path, base), {
    method,
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(WAIT_MS),
  });
  return { status: response.status, json: (await response.json()) as Record<string, unknown> };
}

export async function createNetwork(
  base: URL,
  operatorToken: string,
  name: string,
): Promise<NetworkSummary> {
  const { status, json } = await adminCall(base, operatorToken, "POST", "/v1/networks", { name });
  assert.equal(status, 201, `creating network ${name}: ${JSON.stringify(json)}`);
  return json as unknown as NetworkSummary;
}

export type ProvisionClient = Client<typeof ProvisionService>;

/** Provision through connect-web's Connect or gRPC-web transport, protobuf or JSON. */
export function provisionClient(
  base: URL,
  protocol: "connect" | "grpc-web",
  format: "binary" | "json" = "binary",
): ProvisionClient {
  const options = { baseUrl: base.href.replace(/\/$/, ""), useBinaryFormat: format === "binary" };
  const transport =
    protocol === "connect" ? createConnectTransport(options) : createGrpcWebTransport(options);
  return createClient(ProvisionService, transport);
}

/** A WebSocket with a queue of what it received and waits that fail after WAIT_MS. */
export class TestSocket {
  readonly ws: WebSocket;
  readonly #binary: Uint8Array[] = [];
  readonly #text: string[] = [];
  #wake: (() => void) | undefined;
  #closed: { code: number; reason: string } | undefined;
  readonly opened: Promise<void>;

  constructor(url: string, headers: Record<string, string> = {}) {
    // workerd keeps the TCP connection of a hibernatable WebSocket open after the closing
    // handshake that the relay starts; the close frame is final, so do not wait 30 s for FIN.
    // (closeTimeout is a ws 8.23 option that @types/ws does not list yet.)
    this.ws = new WebSocket(url, {
      headers,
      closeTimeout: CLOSE_TIMEOUT_MS,
    } as WebSocket.ClientOptions);
    this.ws.binaryType = "nodebuffer";
    this.opened = new Promise((resolve, reject) => {
      this.ws.once("open", () => resolve());
      this.ws.once("error", reject);
      this.ws.once("unexpected-response", (_request, response) =>
        reject(new Error(`upgrade refused with HTTP ${response.statusCode}`)),
      );
    });
    this.opened.catch(() => {});
    this.ws.on("message", (data: Buffer, isBinary) => {
      if (isBinary) this.#binary.push(new Uint8Array(data));
      else this.#text.push(data.toString());
      this.#wake?.();
    });
    this.ws.on("close", (code, reason) => {
      this.#closed = { code, reason: reason.toString() };
      this.#wake?.();
    });
    this.ws.on("error", () => {});
  }

  send(data: Uint8Array | string): void {
    this.ws.send(data);
  }

  /** The next binary message. */
  async nextBinary(what = "a binary message"): Promise<Uint8Array> {
    await this.#until(() => this.#binary.length > 0, what);
    return this.#binary.shift()!;
  }

  async nextText(what = "a text message"): Promise<string> {
    await this.#until(() => this.#text.length > 0, what);
    return this.#text.shift()!;
  }

  /** Asserts the socket closes with this code and reason. */
  async wantClosed(code: number, reason?: string | RegExp): Promise<void> {
    await this.#until(() => this.#closed !== undefined, `close ${code}`);
    assert.equal(this.#closed!.code, code, `close code (reason ${this.#closed!.reason})`);
    if (typeof reason === "string") assert.equal(this.#closed!.reason, reason);
    else if (reason) assert.match(this.#closed!.reason, reason);
  }

  get isOpen(): boolean {
    return this.#closed === undefined && this.ws.readyState === WebSocket.OPEN;
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.terminate();
    }
  }

  async #until(ready: () => boolean, what: string): Promise<void> {
    const deadline = Date.now() + WAIT_MS;
    while (!ready()) {
      if (Date.now() > deadline) throw new Error(`no ${what} within ${WAIT_MS} ms`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, deadline - Date.now());
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }
}

/** A node's tunnel stream, authorised by its grpc_peer_addr_port. */
export function openNodeStream(base: URL, network: string, peerAddrPort: string): TestSocket {
  return new TestSocket(webSocketUrl(base, `/v1/networks/${network}/tunnel`), {
    "x-siderolink-ipv6-addr": peerAddrPort,
  });
}

/**
 * The management server's uplink: says HELLO with `serverKey` and reads the peer list. With
 * `autoAck`, PEER_ADDED/PEER_REMOVED are acknowledged as they arrive and kept in `events`.
 */
export class TestUplink {
  readonly socket: TestSocket;
  readonly serverKey: Uint8Array;
  readonly events: PeerEvent[] = [];
  peerList: ReturnType<typeof readPeerList> | undefined;
  /** Datagram frames, in order, that arrived while acknowledging. */
  readonly frames: Uint8Array[] = [];

  /** `serverKey`: the key HELLO presents (default: a fresh one, which only a new network pins). */
  constructor(base: URL, network: string, uplinkSecret: string, serverKey?: Uint8Array) {
    this.socket = new TestSocket(webSocketUrl(base, `/v1/networks/${network}/uplink`), {
      authorization: `Bearer ${uplinkSecret}`,
    });
    this.serverKey = serverKey ?? new Uint8Array(randomBytes(32));
  }

  get serverKeyText(): string {
    return Buffer.from(this.serverKey).toString("base64");
  }

  /** Opens, says HELLO, and waits for the (last chunk of the) peer list. */
  async hello(): Promise<this> {
    await this.socket.opened;
    this.socket.send(helloFrame(this.serverKey));
    const frame = await this.socket.nextBinary("PEER_LIST after HELLO");
    assert.equal(frame[0], PEER_LIST, "first frame after HELLO");
    this.peerList = readPeerList(frame);
    this.socket.send(ackFrame(this.peerList.seq));
    return this;
  }

  /** Reads the next PEER_* event and acknowledges it. */
  async nextEvent(): Promise<PeerEvent> {
    for (;;) {
      const frame = await this.socket.nextBinary("a peer event");
      if (frame[0] !== PEER_ADDED && frame[0] !== PEER_REMOVED) {
        this.frames.push(frame);
        continue;
      }
      const event = readPeerEvent(frame);
      this.events.push(event);
      this.socket.send(ackFrame(event.seq));
      return event;
    }
  }

  /** The next datagram frame (events met on the way are acknowledged). */
  async nextDatagrams(): Promise<Uint8Array> {
    const queued = this.frames.shift();
    if (queued) return queued;
    for (;;) {
      const frame = await this.socket.nextBinary("a datagram frame on the uplink");
      if (frame[0] === PEER_ADDED || frame[0] === PEER_REMOVED) {
        const event = readPeerEvent(frame);
        this.events.push(event);
        this.socket.send(ackFrame(event.seq));
        continue;
      }
      return frame;
    }
  }
}

/**
 * Provisions while the uplink acknowledges the events it causes; returns the reply and the
 * PEER_ADDED.
 * `request` fills a ProvisionRequest (join token, key, UUID...).
 */
export async function provisionWithAck(
  client: ProvisionClient,
  uplink: TestUplink,
  request: Parameters<ProvisionClient["provision"]>[0],
): Promise<{ response: Awaited<ReturnType<ProvisionClient["provision"]>>; event: PeerEvent }> {
  const added = async () => {
    for (;;) {
      const event = await uplink.nextEvent();
      if (event.type === PEER_ADDED) return event;
    }
  };
  const [response, event] = await Promise.all([
    client.provision(request, { signal: AbortSignal.timeout(WAIT_MS) }),
    added(),
  ]);
  return { response, event };
}

export function webSocketUrl(base: URL, path: string): string {
  return new URL(path, base).href.replace(/^http/, "ws");
}
