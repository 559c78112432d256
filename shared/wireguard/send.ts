/**
 * The send path (wireguard-go send.go). IP packets read from the Tun are routed to peers by
 * destination, encrypted under each peer's current keypair into transport messages and sent
 * as one batch per peer. A packet with no usable keypair is staged (copied) and a handshake
 * initiation goes out; the initiator also rekeys from here when a keypair grows old or busy.
 *
 * Per packet, nothing is allocated but its datagram, carved from the device's slab.
 */
import type { AllowedIps } from "./allowed-ips.ts";
import {
  MAX_STAGED_PACKETS,
  MESSAGE_TRANSPORT_HEADER_SIZE,
  MessageType,
  PADDING_MULTIPLE,
  REJECT_AFTER_TIME,
  REKEY_AFTER_TIME,
  REKEY_TIMEOUT,
  TRANSPORT_COUNTER,
  TRANSPORT_RECEIVER,
} from "./constants.ts";
import { TAG_SIZE } from "./crypto.ts";
import type { DropCounters } from "./drop-counters.ts";
import type { Keypair } from "./keypair.ts";
import { writeUint32LE } from "./noise-helpers.ts";
import { createMessageInitiation, createMessageResponse } from "./noise-protocol.ts";
import type { Peer } from "./peer.ts";

const EMPTY = new Uint8Array(0);

/**
 * Routes a batch read from the Tun to peers by destination and sends one batch per peer.
 * `touched` is the caller's scratch list, empty between calls.
 */
export function sendTunPackets(
  allowedIps: AllowedIps<Peer>,
  drops: DropCounters,
  packets: readonly Uint8Array[],
  touched: Peer[],
): void {
  for (const packet of packets) {
    const version = packet.length > 0 ? packet[0] >>> 4 : 0;
    let peer: Peer | null;
    if (version === 4 && packet.length >= 20) peer = allowedIps.lookup(4, packet, 16);
    else if (version === 6 && packet.length >= 40) peer = allowedIps.lookup(16, packet, 24);
    else {
      drops.invalidOutbound++;
      continue;
    }
    if (peer === null) {
      drops.noRoute++;
      continue;
    }
    if (peer.outbox.length === 0) touched.push(peer);
    peer.outbox.push(packet);
  }
  for (const peer of touched) {
    sendPackets(peer, peer.outbox);
    peer.outbox.length = 0;
  }
  touched.length = 0;
}

/** Encrypts and sends `packets` (IP packets; empty means keepalive), staging what has no key. */
export function sendPackets(peer: Peer, packets: readonly Uint8Array[]): void {
  let sent = 0;
  if (peer.staged.length === 0) sent = encryptAndSend(peer, packets);
  for (let i = sent; i < packets.length; i++) stagePacket(peer, packets[i].slice());
  if (sent < packets.length) sendStagedPackets(peer);
}

export function sendKeepalive(peer: Peer): void {
  if (peer.staged.length === 0) sendPackets(peer, [EMPTY]);
  else sendStagedPackets(peer);
}

/** Sends staged packets if a keypair can carry them, else asks for a handshake. */
export function sendStagedPackets(peer: Peer): void {
  if (peer.staged.length > 0) {
    const sent = encryptAndSend(peer, peer.staged);
    peer.staged.splice(0, sent);
  }
  if (peer.staged.length > 0) sendHandshakeInitiation(peer, false);
}

/** Starts a handshake, at most once per REKEY_TIMEOUT; retries come from the timers. */
export function sendHandshakeInitiation(peer: Peer, isRetry: boolean): void {
  const host = peer.host;
  if (!isRetry) peer.timers.handshakeAttempts = 0;
  const now = host.clock.now();
  if (!host.running || now - peer.handshake.lastSentHandshake < REKEY_TIMEOUT) return;
  peer.handshake.lastSentHandshake = now;
  peer.releaseHandshakeIndex();
  const index = host.indexTable.newIndexForHandshake(peer);
  const message = createMessageInitiation(host.noise, peer.handshake, index);
  if (message === null) {
    host.indexTable.delete(index);
    return;
  }
  peer.cookieGenerator.addMacs(message);
  peer.timers.anyAuthenticatedPacketTraversal();
  peer.timers.anyAuthenticatedPacketSent();
  sendHandshakeMessage(peer, message);
  peer.timers.handshakeInitiated();
}

/** Answers a consumed initiation and installs the (unconfirmed) responder keypair. */
export function sendHandshakeResponse(peer: Peer): void {
  const host = peer.host;
  peer.handshake.lastSentHandshake = host.clock.now();
  peer.releaseHandshakeIndex();
  const index = host.indexTable.newIndexForHandshake(peer);
  const message = createMessageResponse(host.noise, peer.handshake, index);
  if (message === null) {
    host.indexTable.delete(index);
    return;
  }
  peer.cookieGenerator.addMacs(message);
  if (!peer.beginSession()) return;
  peer.timers.anyAuthenticatedPacketTraversal();
  peer.timers.anyAuthenticatedPacketSent();
  sendHandshakeMessage(peer, message);
}

function stagePacket(peer: Peer, packet: Uint8Array): void {
  if (peer.staged.length >= MAX_STAGED_PACKETS) {
    peer.staged.shift();
    peer.host.drops.stagedOverflow++;
  }
  peer.staged.push(packet);
}

function sendHandshakeMessage(peer: Peer, message: Uint8Array): void {
  if (peer.endpoint === null) {
    peer.host.drops.noEndpoint++;
    return;
  }
  peer.txBytes += message.length;
  peer.host.send([message], peer.endpoint);
}

/**
 * Encrypts as many of `packets` as the current keypair may carry and sends them as one
 * batch. Returns how many were sent (0 when there is no usable keypair or endpoint).
 */
function encryptAndSend(peer: Peer, packets: readonly Uint8Array[]): number {
  const host = peer.host;
  const keypair = peer.keypairs.current;
  const endpoint = peer.endpoint;
  if (keypair === null || endpoint === null || !host.running) return 0;
  const now = host.clock.now();
  if (now - keypair.created >= REJECT_AFTER_TIME) return 0;
  const limit = host.limits.rejectAfterMessages;
  const count = Math.min(packets.length, Math.max(0, limit - keypair.sendCounter));
  if (count === 0) return 0;
  const datagrams: Uint8Array[] = new Array(count);
  let bytes = 0;
  let data = false;
  for (let i = 0; i < count; i++) {
    const packet = packets[i];
    const padding = paddingFor(packet.length, host.mtu);
    const size = MESSAGE_TRANSPORT_HEADER_SIZE + packet.length + padding + TAG_SIZE;
    const datagram = host.allocate(size);
    const counter = keypair.sendCounter++;
    const low = counter >>> 0;
    datagram[0] = MessageType.Transport;
    writeUint32LE(datagram, TRANSPORT_RECEIVER, keypair.remoteIndex);
    writeUint32LE(datagram, TRANSPORT_COUNTER, low);
    writeUint32LE(datagram, TRANSPORT_COUNTER + 4, (counter - low) / 0x1_0000_0000);
    keypair.send.seal(counter, packet, padding, datagram, MESSAGE_TRANSPORT_HEADER_SIZE);
    datagrams[i] = datagram;
    bytes += size;
    if (packet.length > 0) data = true;
  }
  peer.txBytes += bytes;
  host.send(datagrams, endpoint);
  peer.timers.anyAuthenticatedPacketTraversal();
  peer.timers.anyAuthenticatedPacketSent();
  if (data) peer.timers.dataSent();
  keepKeyFreshSending(peer, keypair, now);
  return count;
}

/** The initiator rekeys by age or by use; the responder waits for it. */
function keepKeyFreshSending(peer: Peer, keypair: Keypair, now: number): void {
  if (
    keypair.isInitiator &&
    (keypair.sendCounter > peer.host.limits.rekeyAfterMessages ||
      now - keypair.created > REKEY_AFTER_TIME)
  ) {
    sendHandshakeInitiation(peer, false);
  }
}

/** Zero bytes that round `length` up to a multiple of PADDING_MULTIPLE, never past `mtu`. */
function paddingFor(length: number, mtu: number): number {
  const padded = Math.min((length + PADDING_MULTIPLE - 1) & ~(PADDING_MULTIPLE - 1), mtu);
  return padded > length ? padded - length : 0;
}
