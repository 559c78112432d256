/**
 * The relay's structured log: one record per event an operator follows (provisions, refusals,
 * stream opens and closes, uplink changes), as one JSON object per line on Node and as an
 * object passed to console.log on Workers, whose Workers Logs index its fields.
 *
 * Nothing secret reaches a record: join tokens appear as their network name only, and a node's
 * virtual address (the handle a tunnel is opened with) as a short digest, `peer`, which ties a
 * node's lines together without giving the address away.
 */
import { sha256 } from "@noble/hashes/sha2.js";
import { formatIPv6, parseAddrPort } from "../../shared/net/ip.ts";
import { parseJoinToken } from "../../shared/siderolink/relay-api.ts";
import type { HubSocket } from "../hub/socket.ts";
import type { ProvisionOutcome } from "./provision.ts";

/** Field values a record may carry: flat, so every log backend can index them. */
export type LogValue = string | number | boolean | undefined;

export interface LogRecord {
  /** What happened: "provision", "stream_open", "stream_close", "uplink_hello", ... */
  readonly event: string;
  readonly [field: string]: LogValue;
}

export type RelayLog = (record: LogRecord) => void;

/** A log that drops everything (the local CLI, unit tests). */
export const SILENT_LOG: RelayLog = () => {};

/** One JSON object per line, with the time, written by `write` (Node: process.stdout). */
export function jsonLineLog(write: (line: string) => void, now = Date.now): RelayLog {
  return (record) => {
    write(`${JSON.stringify({ time: new Date(now()).toISOString(), ...record })}\n`);
  };
}

/** console.log of the record itself: Workers Logs index each field (and add the time). */
export const CONSOLE_OBJECT_LOG: RelayLog = (record) => {
  console.log(record);
};

/** Hex digits of a virtual address's digest kept in logs: enough to tell a network's nodes apart. */
const PEER_DIGEST_HEX = 12;

/**
 * A virtual address as logs carry it: `p-` and the first hex digits of its SHA-256. The same
 * address always gives the same text; the text does not give the address back.
 */
export function maskPeer(virtualAddress: string): string {
  const digest = sha256(new TextEncoder().encode(virtualAddress));
  let hex = "";
  for (let i = 0; i < PEER_DIGEST_HEX / 2; i++) hex += digest[i].toString(16).padStart(2, "0");
  return `p-${hex}`;
}

/** A join token as logs carry it: its network's name, the secret starred out. */
export function maskJoinToken(token: string): string {
  const parsed = parseJoinToken(token);
  return parsed ? `${parsed.network}.***` : "***";
}

/** Fields that name a stream in its log lines. */
export interface StreamFields {
  readonly network: string;
  readonly role: "node" | "uplink";
  readonly virtualAddress?: string | undefined;
}

function streamRecord(event: string, stream: StreamFields): LogRecord {
  return {
    event,
    network: stream.network,
    role: stream.role,
    peer: stream.virtualAddress === undefined ? undefined : maskPeer(stream.virtualAddress),
  };
}

/**
 * Logs the stream's opening, and arranges that its end is logged once: with the relay's code
 * and reason when the relay closes it (liveness, replacement, revocation, a malformed frame),
 * else with what `gone` reports. `close` is replaced in place, so the hub keeps knowing the
 * socket by the same object. Returns `gone`, for the runtime to call when the socket ended.
 */
export function logStream(
  log: RelayLog,
  socket: HubSocket,
  stream: StreamFields,
  opened = true,
): (code: number, reason: string) => void {
  let ended = false;
  const end = (by: "relay" | "peer", code: number, reason: string): void => {
    if (ended) return;
    ended = true;
    log({ ...streamRecord("stream_close", stream), by, code, reason });
  };
  const close = socket.close.bind(socket);
  socket.close = (code, reason) => {
    end("relay", code, reason);
    close(code, reason);
  };
  if (opened) log(streamRecord("stream_open", stream));
  return (code, reason) => end("peer", code, reason);
}

/** Longest node UUID a log line repeats (the field is the caller's to fill). */
const LOGGED_UUID_CHARS = 64;

/** A Provision outcome as a log record: the join token's secret and the address masked. */
export function provisionRecord(outcome: ProvisionOutcome): LogRecord {
  const { request, response } = outcome;
  let peer: string | undefined;
  if (response?.grpcPeerAddrPort) {
    peer = maskPeer(formatIPv6(parseAddrPort(response.grpcPeerAddrPort).address));
  }
  return {
    event: "provision",
    result: outcome.result,
    reason: outcome.reason,
    network: parseJoinToken(request.joinToken ?? "")?.network,
    client: outcome.client,
    node: request.nodeUuid.slice(0, LOGGED_UUID_CHARS),
    peer,
  };
}
