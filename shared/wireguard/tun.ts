/**
 * The plaintext side of a WireGuard device: a source and sink of IP packets. On Linux this is
 * a TUN interface (sidecar/tun/); in tests, an in-memory pair.
 *
 * Packets move in batches so that one wake-up of the event loop carries many of them.
 */
export interface Tun {
  /** Interface name, e.g. "siderolink". */
  readonly name: string;
  /** Largest IP packet the device accepts, in bytes. */
  readonly mtu: number;
  /**
   * Starts delivering packets read from the device. `packets` are views into buffers the Tun
   * reuses: they are valid only until the handler returns.
   */
  start(handler: TunReadHandler): void;
  /** Writes a batch of complete IP packets to the device; the buffers may be reused on return. */
  write(packets: readonly Uint8Array[]): void;
  /** Resolves when the device has gone away (closed, or the interface was deleted). */
  readonly closed: Promise<void>;
  close(): Promise<void>;
}

export type TunReadHandler = (packets: readonly Uint8Array[]) => void;
