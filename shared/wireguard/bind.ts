/**
 * The ciphertext side of a WireGuard device: where WireGuard datagrams go and come from. A UDP
 * socket (sidecar/bind/udp.ts) or a stream that a tunnel transport carries (stream-bind.ts).
 */
export interface Bind {
  /**
   * Starts delivering received datagrams. `datagrams` are views valid only until the handler
   * returns; `from` identifies the sender for roaming and cookie replies.
   */
  open(handler: BindReceiveHandler): Promise<void>;
  /** Sends datagrams to one endpoint. Never throws for a full queue: drops and counts instead. */
  send(datagrams: readonly Uint8Array[], to: Endpoint): void;
  /** Parses an endpoint as `wg` writes it (`1.2.3.4:51820`, `[fd00::1]:51820`). */
  parseEndpoint(text: string): Endpoint;
  /** The listening port, where the bind has one (UDP), else 0. */
  readonly port: number;
  close(): Promise<void>;
}

/** Where a datagram came from or goes to. Equal endpoints have equal `key`s. */
export interface Endpoint {
  /** Stable identity for maps and comparisons, e.g. "[fd00::1]:51820". */
  readonly key: string;
  /** Source address bytes (4 or 16) for cookie MAC2, or an empty array for a stream. */
  readonly addressBytes: Uint8Array;
  toString(): string;
}

export type BindReceiveHandler = (datagrams: readonly Uint8Array[], from: Endpoint) => void;
