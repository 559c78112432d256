/** Small byte-array helpers shared by every part. */

/**
 * Whether two byte arrays hold the same bytes. Not constant-time: for public values (addresses,
 * tags), never for secrets.
 */
export function equalBytes(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}
