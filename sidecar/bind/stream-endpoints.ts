/**
 * One StreamEndpoint per virtual address: the server meets each node's tag on every datagram
 * batch, and the device compares endpoints by identity of their keys, so endpoints are made
 * once per tag and reused. The cache is bounded; a flood of tags costs only a reset.
 */
import { StreamEndpoint } from "../../shared/wireguard/stream-bind.ts";

const CACHE_LIMIT = 65_536;

export interface StreamEndpoints {
  /** The endpoint for a 16-byte virtual address (copied on first use) and port. */
  get(tag: Uint8Array, port: number): StreamEndpoint;
}

export function createStreamEndpoints(): StreamEndpoints {
  const cache = new Map<string, StreamEndpoint>();
  return {
    get(tag, port) {
      if (tag.length !== 16) throw new RangeError(`expected 16 bytes for tag, got ${tag.length}`);
      // One UTF-16 unit per byte pair, then the port: cheaper than formatting the address.
      let key = String.fromCharCode(port);
      for (let i = 0; i < 16; i += 2) key += String.fromCharCode((tag[i] << 8) | tag[i + 1]);
      let endpoint = cache.get(key);
      if (endpoint === undefined) {
        if (cache.size >= CACHE_LIMIT) cache.clear();
        endpoint = new StreamEndpoint(tag.slice(), port);
        cache.set(key, endpoint);
      }
      return endpoint;
    },
  };
}
