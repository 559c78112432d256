/**
 * Cryptokey routing table: IP prefixes to peers, longest-prefix match, one path-compressed
 * binary trie per address family. Outgoing packets find their peer by destination; incoming
 * packets must find their own peer by source.
 *
 * Each node holds a masked prefix; a child hangs off the first bit after its parent's prefix.
 * Nodes without a value only join two diverging branches and vanish when no longer needed.
 */

import { formatIP, maskAddress, type Prefix, parseIP } from "../net/ip.ts";

interface Node<T> {
  key: Uint8Array;
  bits: number;
  value: T | null;
  children: [Node<T> | null, Node<T> | null];
  parent: Node<T> | null;
}

function bitAt(bytes: Uint8Array, offset: number, index: number): 0 | 1 {
  return ((bytes[offset + (index >>> 3)] >>> (7 - (index & 7))) & 1) as 0 | 1;
}

/** Leading bits (at most `limit`) that `a` and `b` (at `offset`) have in common. */
function commonBits(a: Uint8Array, b: Uint8Array, offset: number, limit: number): number {
  let bits = 0;
  for (let i = 0; bits < limit; i++) {
    const x = a[i] ^ b[offset + i];
    if (x !== 0) return Math.min(limit, bits + Math.clz32(x) - 24);
    bits += 8;
  }
  return limit;
}

/** Parses dotted-quad IPv4 or RFC 4291 IPv6 text (with `::` and an embedded IPv4 tail). */
export function parseAddress(text: string): Uint8Array {
  const address = parseIP(text);
  if (address === undefined) throw new RangeError(`invalid IP address ${JSON.stringify(text)}`);
  return address;
}

/** Formats an address as Go's netip does: dotted quad, or RFC 5952 IPv6. */
export const formatAddress: (address: Uint8Array) => string = formatIP;

export class AllowedIps<T> {
  readonly #roots: { 4: Node<T> | null; 16: Node<T> | null } = { 4: null, 16: null };

  /** Maps `prefix` to `value`, replacing any previous owner of exactly that prefix. */
  insert(prefix: Prefix, value: T): void {
    const key = maskAddress(prefix.address, prefix.bits);
    const family = key.length as 4 | 16;
    const fresh = (): Node<T> => ({
      key,
      bits: prefix.bits,
      value,
      children: [null, null],
      parent: null,
    });
    const root = this.#roots[family];
    if (root === null) {
      this.#roots[family] = fresh();
      return;
    }
    let node: Node<T> = root;
    for (;;) {
      const common = commonBits(node.key, key, 0, Math.min(node.bits, prefix.bits));
      if (common === node.bits && node.bits === prefix.bits) {
        node.value = value;
        return;
      }
      if (common === node.bits) {
        const side = bitAt(key, 0, node.bits);
        const child: Node<T> | null = node.children[side];
        if (child === null) {
          const leaf = fresh();
          this.#attach(node, side, leaf);
          return;
        }
        node = child;
        continue;
      }
      const parent = node.parent;
      const side = parent === null ? 0 : parent.children[0] === node ? 0 : 1;
      let replacement: Node<T>;
      if (common === prefix.bits) {
        replacement = fresh();
        this.#attach(replacement, bitAt(node.key, 0, common), node);
      } else {
        replacement = {
          key: maskAddress(key, common),
          bits: common,
          value: null,
          children: [null, null],
          parent: null,
        };
        this.#attach(replacement, bitAt(node.key, 0, common), node);
        this.#attach(replacement, bitAt(key, 0, common), fresh());
      }
      this.#replace(family, parent, side, replacement);
      return;
    }
  }

  /** Removes exactly `prefix`; returns whether it was present. */
  remove(prefix: Prefix): boolean {
    const node = this.#find(maskAddress(prefix.address, prefix.bits), prefix.bits);
    if (node === null || node.value === null) return false;
    this.#removeNode(node);
    return true;
  }

  /** Removes every prefix that maps to `value`. */
  removeValue(value: T): void {
    for (const prefix of this.entriesFor(value)) this.remove(prefix);
  }

  /** The value of the longest prefix containing the address at `packet[offset..]`. */
  lookup(family: 4 | 16, packet: Uint8Array, offset: number): T | null {
    let node = this.#roots[family];
    let found: T | null = null;
    while (node !== null) {
      if (commonBits(node.key, packet, offset, node.bits) !== node.bits) break;
      if (node.value !== null) found = node.value;
      if (node.bits === family * 8) break;
      node = node.children[bitAt(packet, offset, node.bits)];
    }
    return found;
  }

  lookupAddress(address: Uint8Array): T | null {
    return this.lookup(address.length as 4 | 16, address, 0);
  }

  /** Prefixes mapping to `value`, IPv4 first, each family in trie order. */
  entriesFor(value: T): Prefix[] {
    const out: Prefix[] = [];
    const walk = (node: Node<T> | null): void => {
      if (node === null) return;
      if (node.value === value) out.push({ address: node.key, bits: node.bits });
      walk(node.children[0]);
      walk(node.children[1]);
    };
    walk(this.#roots[4]);
    walk(this.#roots[16]);
    return out;
  }

  #find(key: Uint8Array, bits: number): Node<T> | null {
    let node = this.#roots[key.length as 4 | 16];
    while (node !== null && node.bits <= bits) {
      if (commonBits(node.key, key, 0, node.bits) !== node.bits) return null;
      if (node.bits === bits) return node;
      node = node.children[bitAt(key, 0, node.bits)];
    }
    return null;
  }

  #removeNode(node: Node<T>): void {
    node.value = null;
    const family = node.key.length as 4 | 16;
    let current: Node<T> | null = node;
    // Collapse value-less nodes with fewer than two children, walking up.
    while (current !== null && current.value === null) {
      const [left, right] = current.children;
      if (left !== null && right !== null) return;
      const only = left ?? right;
      const parent: Node<T> | null = current.parent;
      const side = parent === null ? 0 : parent.children[0] === current ? 0 : 1;
      this.#replace(family, parent, side, only);
      current = parent;
    }
  }

  #attach(parent: Node<T>, side: 0 | 1, child: Node<T>): void {
    parent.children[side] = child;
    child.parent = parent;
  }

  #replace(family: 4 | 16, parent: Node<T> | null, side: 0 | 1, node: Node<T> | null): void {
    if (parent === null) this.#roots[family] = node;
    else parent.children[side] = node;
    if (node !== null) node.parent = parent;
  }
}
