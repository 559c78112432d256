/**
 * Preloaded into a sidecar (`node --import ws-counter.ts ...`) to count its tunnel's WebSocket
 * messages and the datagrams they carry, without touching the sidecar: it wraps the `ws`
 * module's send and message delivery. Every 200 ms it writes
 * { txMessages, txDatagrams, rxMessages, rxDatagrams } to the file named by WS_COUNTER_FILE.
 *
 * Datagram frames are read by their layout (shared/tunnel/frame.ts): a type byte, then
 * { [16B tag,] u16 length, datagram }+, the tag only on PEER_DATAGRAMS (0x02).
 */
import { writeFileSync } from "node:fs";
import { WebSocket } from "ws";

const file = process.env.WS_COUNTER_FILE;
if (!file) throw new Error("ws-counter.ts needs WS_COUNTER_FILE: where to write the counts");
const counts = { txMessages: 0, txDatagrams: 0, rxMessages: 0, rxDatagrams: 0 };

function datagramsIn(frame: Uint8Array): number {
  const tagSize = frame[0] === 0x02 ? 16 : frame[0] === 0x01 ? 0 : -1;
  if (tagSize < 0) return 0;
  let count = 0;
  for (let at = 1; at + tagSize + 2 <= frame.length; count++) {
    at += tagSize + 2 + ((frame[at + tagSize] << 8) | frame[at + tagSize + 1]);
  }
  return count;
}

const prototype = WebSocket.prototype as unknown as {
  send(data: unknown, ...rest: unknown[]): void;
  emit(event: string | symbol, ...args: unknown[]): boolean;
};
const send = prototype.send;
prototype.send = function (this: unknown, data: unknown, ...rest: unknown[]) {
  if (data instanceof Uint8Array) {
    counts.txMessages++;
    counts.txDatagrams += datagramsIn(data);
  }
  return send.call(this, data, ...rest);
};
const emit = prototype.emit;
prototype.emit = function (this: unknown, event: string | symbol, ...args: unknown[]) {
  if (event === "message" && args[1] === true && args[0] instanceof Uint8Array) {
    counts.rxMessages++;
    counts.rxDatagrams += datagramsIn(args[0]);
  }
  return emit.call(this, event, ...args);
};
setInterval(() => writeFileSync(file, JSON.stringify(counts)), 200).unref();
