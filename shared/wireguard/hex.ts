/** Lower-case hex, as the `wg` configuration protocol writes keys. */

export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += bytes[i].toString(16).padStart(2, "0");
  return out;
}

/**
 * Parses exactly `length` bytes of hex (either case); throws naming `field` otherwise. The error
 * gives the text's shape, never the text: a malformed private key is still most of the key.
 */
export function fromHex(text: string, length: number, field: string): Uint8Array {
  if (text.length !== length * 2 || !/^[0-9a-fA-F]*$/.test(text)) {
    const bad = text.search(/[^0-9a-fA-F]/);
    const where = bad >= 0 ? `, not hex at position ${bad}` : "";
    throw new RangeError(
      `expected ${length * 2} hex digits for ${field}, got ${text.length} characters${where}`,
    );
  }
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}
