import type { Bind, BindReceiveHandler, Endpoint } from "../../../shared/wireguard/bind.ts";

/** An IPv4 "a.b.c.d:port" endpoint on a MemoryNetwork. */
export class MemoryEndpoint implements Endpoint {
  readonly key: string;
  readonly addressBytes: Uint8Array;
  readonly port: number;

  constructor(text: string) {
    const match = /^(\d+)\.(\d+)\.(\d+)\.(\d+):(\d+)$/.exec(text);
    if (match === null) throw new RangeError(`expected a.b.c.d:port, got ${JSON.stringify(text)}`);
    this.addressBytes = Uint8Array.from(match.slice(1, 5), Number);
    this.port = Number(match[5]);
    this.key = text;
  }

  toString(): string {
    return this.key;
  }
}

export interface InFlight {
  datagrams: Uint8Array[];
  from: MemoryEndpoint;
  to: string;
}

/**
 * Datagrams between MemoryBinds. `send` only queues (copies); `deliver()` hands queued
 * batches to their receivers until the network is quiet, so a test controls every step.
 */
export class MemoryNetwork {
  readonly queue: InFlight[] = [];
  /** Everything ever sent, in order. */
  readonly sent: InFlight[] = [];
  /** Return false to drop a batch in flight (loss, capture). */
  filter: (batch: InFlight) => boolean = () => true;
  readonly #binds = new Map<string, MemoryBind>();

  bind(address: string): MemoryBind {
    return new MemoryBind(this, new MemoryEndpoint(address));
  }

  register(bind: MemoryBind): void {
    this.#binds.set(bind.endpoint.key, bind);
  }

  unregister(bind: MemoryBind): void {
    if (this.#binds.get(bind.endpoint.key) === bind) this.#binds.delete(bind.endpoint.key);
  }

  enqueue(batch: InFlight): void {
    this.sent.push(batch);
    this.queue.push(batch);
  }

  /** Delivers one queued batch; false when none is queued. */
  step(): boolean {
    const batch = this.queue.shift();
    if (batch === undefined) return false;
    if (this.filter(batch)) this.#binds.get(batch.to)?.receive(batch.datagrams, batch.from);
    return true;
  }

  /** Delivers until nothing is queued; returns the number of batches delivered. */
  deliver(limit = 10_000): number {
    let count = 0;
    while (this.step()) {
      if (++count > limit) throw new Error(`network still busy after ${limit} batches: a loop?`);
    }
    return count;
  }
}

export class MemoryBind implements Bind {
  endpoint: MemoryEndpoint;
  readonly #network: MemoryNetwork;
  #handler: BindReceiveHandler | null = null;

  constructor(network: MemoryNetwork, endpoint: MemoryEndpoint) {
    this.#network = network;
    this.endpoint = endpoint;
  }

  get port(): number {
    return this.endpoint.port;
  }

  async open(handler: BindReceiveHandler): Promise<void> {
    this.#handler = handler;
    this.#network.register(this);
  }

  send(datagrams: readonly Uint8Array[], to: Endpoint): void {
    this.#network.enqueue({
      datagrams: datagrams.map((d) => d.slice()),
      from: this.endpoint,
      to: to.key,
    });
  }

  parseEndpoint(text: string): Endpoint {
    return new MemoryEndpoint(text);
  }

  /** Moves to another address, as a host behind a NAT that changed its mapping. */
  moveTo(address: string): void {
    this.#network.unregister(this);
    this.endpoint = new MemoryEndpoint(address);
    this.#network.register(this);
  }

  receive(datagrams: Uint8Array[], from: MemoryEndpoint): void {
    this.#handler?.(datagrams, from);
  }

  async close(): Promise<void> {
    this.#handler = null;
    this.#network.unregister(this);
  }
}
