/**
 * How the hub sees a connection: a few methods each runtime implements over its own socket
 * (ws on Node, a hibernatable WebSocket on a Durable Object, a gRPC stream on Node).
 */
export interface HubSocket {
  /**
   * Sends the first `count` of `datagrams`, framed the way the transport carries them: as
   * NODE_DATAGRAMS on a node stream (`tags` undefined), as PEER_DATAGRAMS on the uplink with
   * `tags[i]` the virtual address of the node of `datagrams[i]`. The arrays and the bytes they
   * view are valid only during the call: a runtime that sends later must copy.
   */
  sendDatagrams(
    datagrams: readonly Uint8Array[],
    tags: readonly Uint8Array[] | undefined,
    count: number,
  ): void;
  /**
   * Sends one control frame (PEER_* to the uplink) or one text message (the answer to a ping).
   * The hub does not touch the frame again.
   */
  sendControl(message: Uint8Array | string): void;
  /** Closes with a WebSocket close code (CloseCode in shared/tunnel/frame.ts) and reason. */
  close(code: number, reason: string): void;
  /**
   * False once the socket can no longer send (closing or closed), so the hub counts what it
   * would have sent as dropped; undefined where the runtime cannot tell.
   */
  readonly writable?: boolean;
  /** Bytes the send methods accepted and not yet written out; 0 where the runtime cannot tell. */
  readonly bufferedAmount: number;
  /**
   * Stores the attachment with the socket so the hub can be rebuilt from it (a Durable Object's
   * `serializeAttachment`); a no-op where the hub never goes away while the socket lives.
   */
  persist(attachment: SocketAttachment): void;
  /**
   * When the runtime last answered a ping on the hub's behalf (a Durable Object's WebSocket
   * auto-response), in ms since the epoch; undefined where the hub sees every ping itself.
   */
  readonly lastPingAt?: number | undefined;
}

/**
 * What the hub knows about a socket, small and JSON-safe (well under a Durable Object's 16 KiB
 * attachment limit). Version 1 layouts:
 *   { v: 1, role: "node", virtualAddress: "fdae:41e4:649b:9304:...", connectedAt, candidate?,
 *     initiations? }
 *   { v: 1, role: "uplink", serverPublicKey: "<base64>" | null, connectedAt }
 * An uplink's key is null until its HELLO; the hub persists the attachment again when it lands.
 * A node stream that has not yet proven it holds the node's key carries `candidate: true`
 * (ownership.ts); the hub persists the attachment without it once the stream proves itself.
 */
export type SocketAttachment = NodeAttachment | UplinkAttachment;

export interface NodeAttachment {
  readonly v: 1;
  readonly role: "node";
  /** Canonical IPv6 text of the node's virtual address: its tag on the uplink. */
  readonly virtualAddress: string;
  readonly connectedAt: number;
  /** Present (true) while the stream is a candidate for its address, not its owner. */
  readonly candidate?: true;
  /** A candidate's last initiation sender indices, so that a proof survives an eviction. */
  readonly initiations?: readonly number[];
}

export interface UplinkAttachment {
  readonly v: 1;
  readonly role: "uplink";
  readonly serverPublicKey: string | null;
  readonly connectedAt: number;
}

/** Whether a deserialized value is an attachment this version understands. */
export function isSocketAttachment(value: unknown): value is SocketAttachment {
  if (typeof value !== "object" || value === null) return false;
  const v = value as Record<string, unknown>;
  if (v.v !== 1 || typeof v.connectedAt !== "number") return false;
  if (v.role === "node")
    return (
      typeof v.virtualAddress === "string" &&
      (v.candidate === undefined || v.candidate === true) &&
      (v.initiations === undefined ||
        (Array.isArray(v.initiations) &&
          v.initiations.every((index) => Number.isInteger(index) && index >= 0)))
    );
  if (v.role === "uplink")
    return v.serverPublicKey === null || typeof v.serverPublicKey === "string";
  return false;
}
