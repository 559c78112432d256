/**
 * An HTTP/2 client that writes frames itself, so it can do what node:http2 will not: open more
 * streams than the server allows and leave them half-open. It speaks just enough of RFC 9113 and
 * RFC 7541 (HPACK, literals only) for an attacker, and records what the server answers.
 *
 * Frame header (9 bytes): length u24 | type u8 | flags u8 | stream id u31.
 */
import net from "node:net";

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

export const FrameKind = {
  Data: 0x0,
  Headers: 0x1,
  RstStream: 0x3,
  Settings: 0x4,
  GoAway: 0x7,
} as const;

const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const SETTINGS_MAX_CONCURRENT_STREAMS = 0x3;

/** RST_STREAM and GOAWAY error codes (RFC 9113 section 7). */
export const H2Error = { ProtocolError: 0x1, RefusedStream: 0x7 } as const;

export class RawHttp2Client {
  readonly socket: net.Socket;
  /** Error code of the first RST_STREAM the server sent on each stream, by stream id. */
  readonly resets = new Map<number, number>();
  /** Stream ids the server sent HEADERS on. */
  readonly answered = new Set<number>();
  goAway: number | undefined;
  serverSettings: Map<number, number> | undefined;
  closed = false;
  readonly #ackSettings: boolean;
  #nextStream = 1;
  #pending = Buffer.alloc(0);

  /**
   * `ackSettings: false` leaves the server's SETTINGS unacknowledged, as a client racing ahead
   * of them would: nghttp2 then refuses streams beyond the cap one by one (REFUSED_STREAM)
   * instead of ending the connection for breaking a limit the client acknowledged.
   */
  constructor(port: number, localAddress = "127.0.0.1", ackSettings = true) {
    this.#ackSettings = ackSettings;
    this.socket = net.connect({ port, host: "127.0.0.1", localAddress });
    this.socket.on("connect", () => {
      this.socket.write(PREFACE);
      this.#frame(FrameKind.Settings, 0, 0, Buffer.alloc(0));
    });
    this.socket.on("data", (chunk: Buffer) => this.#read(chunk));
    this.socket.on("error", () => {});
    this.socket.on("close", () => {
      this.closed = true;
    });
  }

  /** Resolves once the server's first SETTINGS arrived. */
  async ready(): Promise<Map<number, number>> {
    while (!this.serverSettings) {
      if (this.closed) throw new Error("the server closed the connection before its SETTINGS");
      await new Promise((resolve) => this.socket.once("data", resolve).once("close", resolve));
    }
    return this.serverSettings;
  }

  get maxConcurrentStreams(): number | undefined {
    return this.serverSettings?.get(SETTINGS_MAX_CONCURRENT_STREAMS);
  }

  /**
   * Opens a POST stream on `path` whose body never ends: HEADERS without END_STREAM, then
   * `bodyBytes` (if any) of a gRPC message that claims to be larger. Returns the stream id.
   */
  openHalfOpen(path: string, bodyBytes = 0): number {
    const id = this.#nextStream;
    this.#nextStream += 2;
    const block = Buffer.concat([
      Buffer.from([0x83, 0x86]), // :method POST, :scheme http (static table 3 and 6)
      literal(4, path), // :path
      literal(1, "relay"), // :authority
      literal(31, "application/grpc"), // content-type
      literalName("te", "trailers"),
    ]);
    this.#frame(FrameKind.Headers, FLAG_END_HEADERS, id, block);
    if (bodyBytes > 0) {
      const body = Buffer.alloc(5 + bodyBytes);
      body.writeUInt32BE(bodyBytes * 16, 1);
      this.#frame(FrameKind.Data, 0, id, body);
    }
    return id;
  }

  close(): void {
    this.socket.destroy();
  }

  #frame(type: number, flags: number, stream: number, payload: Buffer): void {
    if (this.socket.destroyed) return;
    const header = Buffer.alloc(9);
    header.writeUIntBE(payload.length, 0, 3);
    header[3] = type;
    header[4] = flags;
    header.writeUInt32BE(stream, 5);
    this.socket.write(Buffer.concat([header, payload]));
  }

  #read(chunk: Buffer): void {
    this.#pending = Buffer.concat([this.#pending, chunk]);
    while (this.#pending.length >= 9) {
      const length = this.#pending.readUIntBE(0, 3);
      if (this.#pending.length < 9 + length) return;
      const type = this.#pending[3];
      const flags = this.#pending[4];
      const stream = this.#pending.readUInt32BE(5) & 0x7fffffff;
      const payload = this.#pending.subarray(9, 9 + length);
      this.#pending = this.#pending.subarray(9 + length);
      if (type === FrameKind.Settings && (flags & FLAG_ACK) === 0) {
        const settings = new Map<number, number>();
        for (let i = 0; i + 6 <= payload.length; i += 6)
          settings.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2));
        this.serverSettings ??= settings;
        if (this.#ackSettings) this.#frame(FrameKind.Settings, FLAG_ACK, 0, Buffer.alloc(0));
      } else if (type === FrameKind.RstStream) {
        // The first code counts: DATA already on its way to a refused stream draws STREAM_CLOSED.
        if (!this.resets.has(stream)) this.resets.set(stream, payload.readUInt32BE(0));
      } else if (type === FrameKind.Headers) {
        this.answered.add(stream);
      } else if (type === FrameKind.GoAway) {
        this.goAway = payload.readUInt32BE(4);
      }
    }
  }
}

/** HPACK literal header field without indexing, name from the static table (4-bit prefix). */
function literal(nameIndex: number, value: string): Buffer {
  const index = nameIndex < 15 ? [nameIndex] : [0x0f, nameIndex - 15];
  return Buffer.concat([Buffer.from(index), stringLiteral(value)]);
}

/** HPACK literal header field without indexing, with a literal name. */
function literalName(name: string, value: string): Buffer {
  return Buffer.concat([Buffer.from([0]), stringLiteral(name), stringLiteral(value)]);
}

function stringLiteral(text: string): Buffer {
  if (text.length > 126) throw new RangeError(`HPACK literal too long for this client: ${text}`);
  return Buffer.concat([Buffer.from([text.length]), Buffer.from(text, "latin1")]);
}
