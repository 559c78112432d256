/** Lower-case hex, as the `wg` configuration protocol writes keys. */

export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i++) out += bytes[i].toString(16).padStart(2, "0");
  return out;
}

/** Parses exactly `length` bytes of hex (either case); throws naming `field` otherwise. */
export function fromHex(text: string, length: number, field: string): Uint8Array {
  if (text.length !== length * 2 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new RangeError(
      `expected ${length * 2} hex digits for ${field}, got ${JSON.stringify(text)}`,
    );
  }
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Number.parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}
