/**
 * TAI64N timestamps for handshake initiations: 8 bytes of big-endian seconds offset by 2^62
 * (plus the 10 s TAI-UTC offset of 1972, as wireguard-go writes it) and 4 bytes of big-endian
 * nanoseconds. A responder accepts an initiation only if its timestamp is strictly greater
 * than the last one it accepted from that peer, which defeats replayed initiations.
 */

export const TIMESTAMP_SIZE = 12;

/** 2^62 + 10: the TAI64 label of the Unix epoch. */
const UNIX_EPOCH_LABEL = 2n ** 62n + 10n;
/**
 * Nanoseconds are rounded down to 2^24 ns (about 16 ms) so the timestamp does not reveal the
 * sender's clock finely; ordering at that granularity is all the protocol needs.
 */
const WHITENER_MASK = 0x1000000 - 1;

export function tai64n(wallMs: number): Uint8Array {
  const out = new Uint8Array(TIMESTAMP_SIZE);
  const view = new DataView(out.buffer);
  const seconds = Math.floor(wallMs / 1000);
  const nanos = Math.floor((wallMs - seconds * 1000) * 1e6);
  view.setBigUint64(0, UNIX_EPOCH_LABEL + BigInt(seconds));
  view.setUint32(8, (nanos & ~WHITENER_MASK) >>> 0);
  return out;
}

/** Whether timestamp `a` is strictly after `b` (bytewise big-endian comparison). */
export function isAfter(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < TIMESTAMP_SIZE; i++) {
    if (a[i] !== b[i]) return a[i] > b[i];
  }
  return false;
}
