import { parseIP } from "../../shared/net/ip.ts";
import type { Bind, BindReceiveHandler, Endpoint } from "../../shared/wireguard/bind.ts";
import { ADDRESS_RECORD_SIZE, loadPacketAddon, type PacketAddon } from "../native/addon.ts";
import { parseUdpEndpoint, UdpEndpoint } from "./endpoint.ts";

/**
 * WireGuard's UDP bind on Linux: one non-blocking socket (dual-stack `::`, IPv4-mapped senders,
 * or IPv4 alone where the host has no IPv6) driven through the packet addon. A readable event
 * drains up to `Batch` datagrams with one recvmmsg(2) and hands them to the device in runs of
 * one sender each; a send is one sendmmsg(2) per 64 datagrams. Node's dgram costs a JS object,
 * a nextTick and a syscall per datagram, which at WireGuard's packet rates is most of the time.
 */

export interface UdpBindOptions {
  /** Listening port; 0 picks a free one (read it from `port` after open). */
  port?: number;
  /** Local address to bind, e.g. "127.0.0.1" in tests; default all addresses. */
  host?: string;
}

export interface UdpBind extends Bind {
  /** Datagrams dropped on send: unroutable family, socket buffer full, or refused. */
  readonly sendDrops: number;
}

/** Datagrams per receive batch. */
const Batch = 64;
/** Largest UDP payload, so no datagram is ever truncated. */
const SLOT_SIZE = 65536;
/** Sender endpoints remembered for reuse; a flood of sources only costs a cache reset. */
const ENDPOINT_CACHE_LIMIT = 4096;
const Any = new Uint8Array(16);

export function createUdpBind(options: UdpBindOptions = {}): UdpBind {
  return new LinuxUdpBind(options.port ?? 0, options.host);
}

class LinuxUdpBind implements UdpBind {
  #native: PacketAddon | undefined;
  #fd = -1;
  #family: 4 | 6 = 6;
  #port = 0;
  #sendDrops = 0;
  #wantPort: number;
  #host: string | undefined;
  #reader: object | undefined;
  #endpoints = new Map<string, UdpEndpoint>();
  #last: UdpEndpoint | undefined;

  constructor(port: number, host: string | undefined) {
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      throw new RangeError(`listen port must be 0-65535, got ${port}`);
    }
    this.#wantPort = port;
    this.#host = host;
  }

  get port(): number {
    return this.#port;
  }

  get sendDrops(): number {
    return this.#sendDrops;
  }

  async open(handler: BindReceiveHandler): Promise<void> {
    if (this.#native !== undefined) throw new Error("UDP bind is already open");
    const native = loadPacketAddon();
    let address: Uint8Array = Any;
    if (this.#host !== undefined) {
      const parsed = parseIP(this.#host);
      if (parsed === undefined) throw new Error(`invalid listen address "${this.#host}"`);
      address = parsed.length === 16 ? parsed : mapped(parsed);
    }
    const { fd, port, family } = native.udpOpen(this.#wantPort, address);
    this.#native = native;
    this.#fd = fd;
    this.#port = port;
    this.#family = family;

    const slots = new ArrayBuffer(SLOT_SIZE * Batch);
    const lengths = new Uint32Array(Batch);
    const records = new Uint8Array(ADDRESS_RECORD_SIZE * Batch);
    const datagrams: Uint8Array[] = [];
    const onBatch = (count: number): void => {
      let i = 0;
      while (i < count) {
        const from = this.#sender(records, i);
        datagrams.length = 0;
        do {
          if (lengths[i] > 0) datagrams.push(new Uint8Array(slots, i * SLOT_SIZE, lengths[i]));
          i++;
        } while (i < count && this.#sender(records, i) === from);
        if (datagrams.length > 0) handler(datagrams, from);
      }
    };
    const onGone = (code: string): void => {
      this.#reader = undefined;
      process.emitWarning(`UDP socket on port ${port} stopped receiving: ${code}`);
    };
    this.#reader = native.startReader(fd, slots, SLOT_SIZE, lengths, onBatch, onGone, records);
  }

  parseEndpoint(text: string): Endpoint {
    return parseUdpEndpoint(text);
  }

  send(datagrams: readonly Uint8Array[], to: Endpoint): void {
    const native = this.#native;
    if (
      native === undefined ||
      !(to instanceof UdpEndpoint) ||
      (to.family === 6 && this.#family === 4) ||
      datagrams.length === 0
    ) {
      this.#sendDrops += datagrams.length;
      return;
    }
    const sent = native.udpSend(
      this.#fd,
      this.#family,
      datagrams,
      to.socketAddress,
      to.port,
      to.scopeId,
    );
    this.#sendDrops += datagrams.length - sent;
  }

  async close(): Promise<void> {
    const native = this.#native;
    if (native === undefined) return;
    this.#native = undefined;
    if (this.#reader !== undefined) native.stopReader(this.#reader);
    this.#reader = undefined;
    native.close(this.#fd);
    this.#fd = -1;
  }

  /** The endpoint for sender record `i`: usually the previous one, else from the cache. */
  #sender(records: Uint8Array, i: number): UdpEndpoint {
    const at = i * ADDRESS_RECORD_SIZE;
    const last = this.#last;
    if (last !== undefined && sameSender(last, records, at)) return last;
    let key = "";
    for (let b = 0; b < ADDRESS_RECORD_SIZE; b += 2) {
      key += String.fromCharCode((records[at + b] << 8) | records[at + b + 1]);
    }
    let endpoint = this.#endpoints.get(key);
    if (endpoint === undefined) {
      const scope =
        records[at + 20] |
        (records[at + 21] << 8) |
        (records[at + 22] << 16) |
        (records[at + 23] << 24);
      endpoint = UdpEndpoint.fromSocketAddress(
        records.slice(at, at + 16),
        (records[at + 16] << 8) | records[at + 17],
        scope >>> 0,
      );
      if (this.#endpoints.size >= ENDPOINT_CACHE_LIMIT) this.#endpoints.clear();
      this.#endpoints.set(key, endpoint);
    }
    this.#last = endpoint;
    return endpoint;
  }
}

function sameSender(endpoint: UdpEndpoint, records: Uint8Array, at: number): boolean {
  const address = endpoint.socketAddress;
  for (let b = 0; b < 16; b++) if (address[b] !== records[at + b]) return false;
  return (
    endpoint.port === ((records[at + 16] << 8) | records[at + 17]) &&
    endpoint.scopeId ===
      (records[at + 20] |
        (records[at + 21] << 8) |
        (records[at + 22] << 16) |
        (records[at + 23] << 24)) >>>
        0
  );
}

function mapped(v4: Uint8Array): Uint8Array {
  const out = new Uint8Array(16);
  out[10] = 0xff;
  out[11] = 0xff;
  out.set(v4, 12);
  return out;
}
