import { parseAddress } from "../../../shared/wireguard/allowed-ips.ts";
import type { CryptoProvider } from "../../../shared/wireguard/crypto.ts";
import { Device, type DeviceLimits } from "../../../shared/wireguard/device.ts";
import type { Peer } from "../../../shared/wireguard/peer.ts";
import { createNodeCryptoProvider } from "../../../sidecar/wireguard/crypto-node.ts";
import { FakeClock } from "./fake-clock.ts";
import { type MemoryBind, MemoryNetwork } from "./memory-bind.ts";
import { MemoryTun } from "./memory-tun.ts";

export interface Side {
  device: Device;
  tun: MemoryTun;
  bind: MemoryBind;
  privateKey: Uint8Array;
  publicKey: Uint8Array;
  ipv4: string;
  ipv6: string;
  /** This side's view of the other side. */
  peer(): Peer;
}

export interface PairOptions {
  crypto?: CryptoProvider;
  limitsA?: Partial<DeviceLimits>;
  limitsB?: Partial<DeviceLimits>;
  /** Whether B is configured with A's endpoint (otherwise it learns it from A's packets). */
  bKnowsA?: boolean;
  presharedKey?: Uint8Array;
}

/**
 * Two devices, A (192.0.2.1:51820, overlay 10.0.0.1 / fd00::1) and B (192.0.2.2:51820,
 * 10.0.0.2 / fd00::2), on a MemoryNetwork under one FakeClock. Timer-driven sends are
 * delivered as they happen (`clock.afterEach`); packets injected by a test are delivered by
 * `settle()` or step by step with `network.step()`.
 */
export class DevicePair {
  readonly clock = new FakeClock();
  readonly network = new MemoryNetwork();
  readonly crypto: CryptoProvider;
  readonly a: Side;
  readonly b: Side;

  constructor(options: PairOptions = {}) {
    this.crypto = options.crypto ?? createNodeCryptoProvider();
    this.a = this.#side("a", "192.0.2.1:51820", "10.0.0.1", "fd00::1", options.limitsA);
    this.b = this.#side("b", "192.0.2.2:51820", "10.0.0.2", "fd00::2", options.limitsB);
    const psk = options.presharedKey ?? null;
    this.a.device.setPeer({
      publicKey: this.b.publicKey,
      presharedKey: psk,
      endpoint: "192.0.2.2:51820",
      allowedIps: ["10.0.0.2/32", "fd00::2/128"],
    });
    this.b.device.setPeer({
      publicKey: this.a.publicKey,
      presharedKey: psk,
      endpoint: options.bKnowsA ? "192.0.2.1:51820" : null,
      allowedIps: ["10.0.0.1/32", "fd00::1/128"],
    });
    this.clock.afterEach = () => this.network.deliver();
  }

  async start(): Promise<void> {
    await this.a.device.start();
    await this.b.device.start();
  }

  async close(): Promise<void> {
    await this.a.device.close();
    await this.b.device.close();
  }

  /** Delivers everything in flight, including what the deliveries cause. */
  settle(): void {
    this.network.deliver();
  }

  /** Sends one packet from A to B and one back, so both have a confirmed current keypair. */
  handshake(): void {
    this.a.tun.inject([ipv4(this.a.ipv4, this.b.ipv4, "hello")]);
    this.settle();
    this.b.tun.inject([ipv4(this.b.ipv4, this.a.ipv4, "hello back")]);
    this.settle();
    this.a.tun.take();
    this.b.tun.take();
  }

  #side(
    name: string,
    address: string,
    ip4: string,
    ip6: string,
    limits?: Partial<DeviceLimits>,
  ): Side {
    const privateKey = this.crypto.randomBytes(32);
    const tun = new MemoryTun(`wg${name}`);
    const bind = this.network.bind(address);
    const device = new Device({ tun, bind, crypto: this.crypto, clock: this.clock, limits });
    device.setPrivateKey(privateKey);
    const side: Side = {
      device,
      tun,
      bind,
      privateKey,
      publicKey: device.publicKey!,
      ipv4: ip4,
      ipv6: ip6,
      peer: () => {
        const other = side === this.a ? this.b : this.a;
        return device.peer(other.publicKey)!;
      },
    };
    return side;
  }
}

const utf8 = new TextEncoder();

/** A minimal IPv4 packet (no options, checksum left zero: the device does not verify it). */
export function ipv4(
  source: string,
  destination: string,
  payload: string | Uint8Array,
): Uint8Array {
  const body = typeof payload === "string" ? utf8.encode(payload) : payload;
  const packet = new Uint8Array(20 + body.length);
  packet[0] = 0x45;
  packet[2] = packet.length >> 8;
  packet[3] = packet.length & 0xff;
  packet[8] = 64;
  packet[9] = 17;
  packet.set(parseAddress(source), 12);
  packet.set(parseAddress(destination), 16);
  packet.set(body, 20);
  return packet;
}

/** A minimal IPv6 packet. */
export function ipv6(
  source: string,
  destination: string,
  payload: string | Uint8Array,
): Uint8Array {
  const body = typeof payload === "string" ? utf8.encode(payload) : payload;
  const packet = new Uint8Array(40 + body.length);
  packet[0] = 0x60;
  packet[4] = body.length >> 8;
  packet[5] = body.length & 0xff;
  packet[6] = 17;
  packet[7] = 64;
  packet.set(parseAddress(source), 8);
  packet.set(parseAddress(destination), 24);
  packet.set(body, 40);
  return packet;
}

/** Datagrams of WireGuard message `type` sent from `from` so far. */
export function sentOfType(network: MemoryNetwork, from: string, type: number): Uint8Array[] {
  return network.sent
    .filter((batch) => batch.from.key === from)
    .flatMap((batch) => batch.datagrams)
    .filter((datagram) => datagram[0] === type);
}
