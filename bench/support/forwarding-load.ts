/**
 * A load generator that speaks the tunnel codec (shared/tunnel) to a relay, Node or workerd,
 * as a management server's uplink and one node stream, and measures how many datagrams per
 * second the relay forwards for a given batch size (datagrams per WebSocket message).
 *
 * A window of in-flight messages keeps the relay's buffers short, so the rate is what the relay
 * sustains rather than what it queues. A window that stops draining for StallMs counts its
 * messages as lost and opens again (the Node hub drops the oldest when a stream is congested).
 */
import { randomBytes, randomUUID } from "node:crypto";
import { type Client, createClient } from "@connectrpc/connect";
import { createConnectTransport } from "@connectrpc/connect-web";
import WebSocket from "ws";
import { ProvisionService } from "../../shared/gen/sidero/link/provision_pb.ts";
import { parseAddrPort } from "../../shared/net/ip.ts";
import { PEER_ADDRESS_HEADER, tunnelPath, uplinkPath } from "../../shared/siderolink/relay-api.ts";
import {
  decodeControl,
  decodeNodeDatagrams,
  decodePeerDatagrams,
  frameType,
} from "../../shared/tunnel/decode.ts";
import { createBatchEncoder, encodeAck, encodeHello } from "../../shared/tunnel/encode.ts";
import { FrameType, PROTOCOL_VERSION } from "../../shared/tunnel/frame.ts";

const StallMs = 250;
/** WireGuard transport message type (data), the only type the relay sees in bulk. */
const TransportMessageType = 4;

export interface RelayNetwork {
  /** http://host:port of the relay. */
  readonly url: string;
  readonly network: string;
  readonly uplinkSecret: string;
  readonly joinToken: string;
}

export type ForwardingDirection = "node-to-uplink" | "uplink-to-node";

export interface ForwardingSample {
  readonly direction: ForwardingDirection;
  readonly batch: number;
  readonly size: number;
  readonly messagesPerSecond: number;
  readonly datagramsPerSecond: number;
  readonly mbitPerSecond: number;
  /** Datagrams sent that never arrived. */
  readonly lost: number;
}

function webSocketUrl(base: string, path: string): string {
  return new URL(path, base).href.replace(/^http/, "ws");
}

function opened(ws: WebSocket): Promise<void> {
  return new Promise((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
    ws.once("unexpected-response", (_request, response) =>
      reject(new Error(`WebSocket upgrade refused with HTTP ${response.statusCode}`)),
    );
  });
}

/** A WireGuard-shaped transport message of `size` bytes (type 4, three zero bytes, noise). */
export function transportMessage(size: number): Uint8Array {
  const message = new Uint8Array(randomBytes(size));
  message.set([TransportMessageType, 0, 0, 0]);
  return message;
}

/**
 * A management server's uplink that says HELLO and acknowledges every peer change at once, as
 * the server sidecar does once WireGuard has the peer. Resolves after the first peer list.
 */
export async function openUplink(relay: RelayNetwork): Promise<WebSocket> {
  const uplink = new WebSocket(webSocketUrl(relay.url, uplinkPath(relay.network)), {
    headers: { authorization: `Bearer ${relay.uplinkSecret}` },
    perMessageDeflate: false,
  });
  uplink.binaryType = "nodebuffer";
  let listed: () => void = () => {};
  const peerList = new Promise<void>((resolve) => {
    listed = resolve;
  });
  // Acknowledge every peer change, as the server sidecar does once WireGuard has the peer.
  uplink.on("message", (data: Buffer, isBinary: boolean) => {
    if (!isBinary) return;
    const type = frameType(data);
    if (type === FrameType.PeerDatagrams) return;
    const message = decodeControl(data);
    if (message.type === FrameType.PeerList && message.last) {
      uplink.send(encodeAck(message.seq));
      listed();
    } else if (message.type === FrameType.PeerAdded || message.type === FrameType.PeerRemoved) {
      uplink.send(encodeAck(message.seq));
    }
  });
  await opened(uplink);
  uplink.send(encodeHello(PROTOCOL_VERSION, randomBytes(32)));
  await peerList;

  return uplink;
}

/** An uplink and one provisioned node stream on one relay network. */
export class ForwardingPair {
  readonly uplink: WebSocket;
  readonly node: WebSocket;
  readonly tag: Uint8Array;
  /** Called with the datagram count of each datagram frame either side receives. */
  onUplinkDatagrams: (count: number) => void = () => {};
  onNodeDatagrams: (count: number) => void = () => {};

  private constructor(uplink: WebSocket, node: WebSocket, tag: Uint8Array) {
    this.uplink = uplink;
    this.node = node;
    this.tag = tag;
    const tags: Uint8Array[] = [];
    const views: Uint8Array[] = [];
    uplink.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary && frameType(data) === FrameType.PeerDatagrams) {
        this.onUplinkDatagrams(decodePeerDatagrams(data, tags, views));
      }
    });
    node.on("message", (data: Buffer, isBinary: boolean) => {
      if (isBinary) this.onNodeDatagrams(decodeNodeDatagrams(data, views));
    });
  }

  static async open(relay: RelayNetwork): Promise<ForwardingPair> {
    const uplink = await openUplink(relay);
    const client: Client<typeof ProvisionService> = createClient(
      ProvisionService,
      createConnectTransport({ baseUrl: relay.url.replace(/\/$/, "") }),
    );
    const response = await client.provision({
      nodeUuid: randomUUID(),
      nodePublicKey: randomBytes(32).toString("base64"),
      joinToken: relay.joinToken,
    });
    const node = new WebSocket(webSocketUrl(relay.url, tunnelPath(relay.network)), {
      headers: { [PEER_ADDRESS_HEADER]: response.grpcPeerAddrPort },
      perMessageDeflate: false,
    });
    node.binaryType = "nodebuffer";
    await opened(node);
    return new ForwardingPair(
      uplink,
      node,
      parseAddrPort(response.grpcPeerAddrPort, "grpc_peer_addr_port").address,
    );
  }

  /**
   * Sends batches of `batch` datagrams of `size` bytes one way for `seconds`, keeping at most
   * `window` messages in flight, and counts what arrives.
   */
  async measure(
    direction: ForwardingDirection,
    batch: number,
    size: number,
    seconds: number,
    window: number,
  ): Promise<ForwardingSample> {
    const toUplink = direction === "node-to-uplink";
    const encoder = createBatchEncoder(!toUplink);
    const datagram = transportMessage(size);
    for (let i = 0; i < batch; i++) {
      if (!encoder.add(datagram, toUplink ? undefined : this.tag)) {
        throw new Error(`a batch of ${batch} datagrams of ${size} bytes exceeds one frame`);
      }
    }
    // ws copies (masks) a client frame when sending, so one frame serves every message.
    const frame = encoder.finish().slice();
    const sender = toUplink ? this.node : this.uplink;
    let received = 0;
    let wake: (() => void) | undefined;
    const count = (n: number) => {
      received += n;
      wake?.();
    };
    if (toUplink) this.onUplinkDatagrams = count;
    else this.onNodeDatagrams = count;
    let sent = 0;
    let lost = 0;
    const start = performance.now();
    const end = start + seconds * 1000;
    while (performance.now() < end) {
      while (sent - (received + lost) / batch < window) {
        sender.send(frame);
        sent++;
      }
      const before = received;
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, StallMs);
      });
      if (received === before) lost = sent * batch - received;
    }
    const drainUntil = performance.now() + 2000;
    while (received + lost < sent * batch && performance.now() < drainUntil) {
      await new Promise<void>((resolve) => {
        wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    const elapsed = (performance.now() - start) / 1000;
    const datagrams = received;
    return {
      direction,
      batch,
      size,
      messagesPerSecond: datagrams / batch / elapsed,
      datagramsPerSecond: datagrams / elapsed,
      mbitPerSecond: (datagrams * size * 8) / elapsed / 1e6,
      lost: sent * batch - received,
    };
  }

  close(): void {
    this.node.terminate();
    this.uplink.terminate();
  }
}
