/**
 * WireGuard's Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s handshake (WireGuard paper, section 5.4),
 * as paired verbs over one `Handshake` per peer:
 *
 *   initiator                              responder
 *   createMessageInitiation  -- type 1 --> consumeMessageInitiation
 *   consumeMessageResponse   <-- type 2 -- createMessageResponse
 *   beginSymmetricSession                  beginSymmetricSession
 *
 * Messages are built and parsed here without MACs; cookie.ts adds and checks MAC1/MAC2. A
 * message that fails any check yields null: the sender learns nothing, the caller counts it.
 */
import type { Clock } from "./clock.ts";
import {
  HANDSHAKE_INITIATION_RATE,
  INITIATION_EPHEMERAL,
  INITIATION_SENDER,
  INITIATION_STATIC,
  INITIATION_TIMESTAMP,
  MESSAGE_INITIATION_SIZE,
  MESSAGE_RESPONSE_SIZE,
  MessageType,
  RESPONSE_EMPTY,
  RESPONSE_EPHEMERAL,
  RESPONSE_RECEIVER,
  RESPONSE_SENDER,
} from "./constants.ts";
import { type CryptoProvider, type DhKeyPair, KEY_SIZE, TAG_SIZE } from "./crypto.ts";
import { Keypair } from "./keypair.ts";
import {
  initialChainKeyAndHash,
  isZero,
  mixHash,
  mixKey,
  readUint32LE,
  writeUint32LE,
} from "./noise-helpers.ts";
import { isAfter, TIMESTAMP_SIZE, tai64n } from "./tai64n.ts";

export type HandshakeState =
  | "zeroed"
  | "initiationCreated"
  | "initiationConsumed"
  | "responseCreated"
  | "responseConsumed";

export interface StaticIdentity {
  readonly privateKey: Uint8Array;
  readonly keyPair: DhKeyPair;
}

export interface NoiseContext {
  readonly crypto: CryptoProvider;
  readonly clock: Clock;
  readonly identity: StaticIdentity | null;
}

/** One peer's handshake state, plus the per-peer secrets the handshake needs. */
export class Handshake {
  state: HandshakeState = "zeroed";
  hash: Uint8Array = new Uint8Array(KEY_SIZE);
  chainKey: Uint8Array = new Uint8Array(KEY_SIZE);
  presharedKey: Uint8Array = new Uint8Array(KEY_SIZE);
  localEphemeral: DhKeyPair | null = null;
  localIndex = 0;
  remoteIndex = 0;
  readonly remoteStatic: Uint8Array;
  remoteEphemeral: Uint8Array = new Uint8Array(KEY_SIZE);
  /** DH(our static, their static), or null when there is no private key or it is all zero. */
  precomputedStaticStatic: Uint8Array | null = null;
  /** Newest TAI64N timestamp accepted from this peer. */
  lastTimestamp: Uint8Array = new Uint8Array(TIMESTAMP_SIZE);
  lastInitiationConsumption = Number.NEGATIVE_INFINITY;
  lastSentHandshake = Number.NEGATIVE_INFINITY;

  constructor(remoteStatic: Uint8Array) {
    this.remoteStatic = remoteStatic;
  }

  /** Recomputes the static-static DH after the device's private key changed. */
  precompute(identity: StaticIdentity | null): void {
    this.precomputedStaticStatic =
      identity === null ? null : identity.keyPair.dh(this.remoteStatic);
  }

  clear(): void {
    this.state = "zeroed";
    this.hash = new Uint8Array(KEY_SIZE);
    this.chainKey = new Uint8Array(KEY_SIZE);
    this.localEphemeral = null;
    this.remoteEphemeral = new Uint8Array(KEY_SIZE);
    this.localIndex = 0;
    this.remoteIndex = 0;
  }
}

/** Builds an initiation (MACs left zero) and moves `handshake` to "initiationCreated". */
export function createMessageInitiation(
  context: NoiseContext,
  handshake: Handshake,
  localIndex: number,
): Uint8Array | null {
  const { crypto, identity } = context;
  const staticStatic = handshake.precomputedStaticStatic;
  if (identity === null || staticStatic === null) return null;
  const initial = initialChainKeyAndHash(crypto);
  let hash = mixHash(crypto, initial.hash, handshake.remoteStatic);
  let chainKey = initial.chainKey;

  const ephemeral = crypto.generateKeyPair();
  const message = new Uint8Array(MESSAGE_INITIATION_SIZE);
  message[0] = MessageType.Initiation;
  writeUint32LE(message, INITIATION_SENDER, localIndex);
  message.set(ephemeral.publicKey, INITIATION_EPHEMERAL);
  chainKey = mixKey(crypto, chainKey, ephemeral.publicKey);
  hash = mixHash(crypto, hash, ephemeral.publicKey);

  const es = ephemeral.dh(handshake.remoteStatic);
  if (es === null) return null;
  let key: Uint8Array;
  [chainKey, key] = crypto.kdf(chainKey, es, 2);
  const sealedStatic = crypto.aeadSeal(key, 0, identity.keyPair.publicKey, hash);
  message.set(sealedStatic, INITIATION_STATIC);
  hash = mixHash(crypto, hash, sealedStatic);

  [chainKey, key] = crypto.kdf(chainKey, staticStatic, 2);
  const sealedTimestamp = crypto.aeadSeal(key, 0, tai64n(context.clock.wallNow()), hash);
  message.set(sealedTimestamp, INITIATION_TIMESTAMP);
  hash = mixHash(crypto, hash, sealedTimestamp);

  handshake.hash = hash;
  handshake.chainKey = chainKey;
  handshake.localEphemeral = ephemeral;
  handshake.localIndex = localIndex;
  handshake.state = "initiationCreated";
  return message;
}

/**
 * Authenticates an initiation, finds its peer by the decrypted static key, and rejects
 * replays (timestamp not newer) and floods (initiations closer than HANDSHAKE_INITIATION_RATE).
 */
export function consumeMessageInitiation<P extends { readonly handshake: Handshake }>(
  context: NoiseContext,
  message: Uint8Array,
  lookupPeer: (publicKey: Uint8Array) => P | null,
): P | null {
  const { crypto, identity } = context;
  if (identity === null || message.length !== MESSAGE_INITIATION_SIZE) return null;
  const initial = initialChainKeyAndHash(crypto);
  let hash = mixHash(crypto, initial.hash, identity.keyPair.publicKey);
  let chainKey = initial.chainKey;

  const ephemeral = message.slice(INITIATION_EPHEMERAL, INITIATION_STATIC);
  chainKey = mixKey(crypto, chainKey, ephemeral);
  hash = mixHash(crypto, hash, ephemeral);

  const es = identity.keyPair.dh(ephemeral);
  if (es === null) return null;
  let key: Uint8Array;
  [chainKey, key] = crypto.kdf(chainKey, es, 2);
  const sealedStatic = message.subarray(INITIATION_STATIC, INITIATION_TIMESTAMP);
  const remoteStatic = crypto.aeadOpen(key, 0, sealedStatic, hash);
  if (remoteStatic === null) return null;
  hash = mixHash(crypto, hash, sealedStatic);

  const peer = lookupPeer(remoteStatic);
  if (peer === null) return null;
  const handshake = peer.handshake;
  const staticStatic = handshake.precomputedStaticStatic;
  if (staticStatic === null) return null;
  [chainKey, key] = crypto.kdf(chainKey, staticStatic, 2);
  const sealedTimestamp = message.subarray(
    INITIATION_TIMESTAMP,
    INITIATION_TIMESTAMP + TIMESTAMP_SIZE + TAG_SIZE,
  );
  const timestamp = crypto.aeadOpen(key, 0, sealedTimestamp, hash);
  if (timestamp === null) return null;
  hash = mixHash(crypto, hash, sealedTimestamp);

  const now = context.clock.now();
  if (!isAfter(timestamp, handshake.lastTimestamp)) return null;
  if (now - handshake.lastInitiationConsumption <= HANDSHAKE_INITIATION_RATE) return null;

  handshake.hash = hash;
  handshake.chainKey = chainKey;
  handshake.remoteIndex = readUint32LE(message, INITIATION_SENDER);
  handshake.remoteEphemeral = ephemeral;
  handshake.lastTimestamp = timestamp;
  handshake.lastInitiationConsumption = now;
  handshake.state = "initiationConsumed";
  return peer;
}

/** Builds the response to a consumed initiation (MACs left zero). */
export function createMessageResponse(
  context: NoiseContext,
  handshake: Handshake,
  localIndex: number,
): Uint8Array | null {
  const { crypto } = context;
  if (handshake.state !== "initiationConsumed") return null;
  const message = new Uint8Array(MESSAGE_RESPONSE_SIZE);
  message[0] = MessageType.Response;
  writeUint32LE(message, RESPONSE_SENDER, localIndex);
  writeUint32LE(message, RESPONSE_RECEIVER, handshake.remoteIndex);

  const ephemeral = crypto.generateKeyPair();
  message.set(ephemeral.publicKey, RESPONSE_EPHEMERAL);
  let hash = mixHash(crypto, handshake.hash, ephemeral.publicKey);
  let chainKey = mixKey(crypto, handshake.chainKey, ephemeral.publicKey);
  const ee = ephemeral.dh(handshake.remoteEphemeral);
  const se = ephemeral.dh(handshake.remoteStatic);
  if (ee === null || se === null) return null;
  chainKey = mixKey(crypto, chainKey, ee);
  chainKey = mixKey(crypto, chainKey, se);

  const [nextChainKey, tau, key] = crypto.kdf(chainKey, handshake.presharedKey, 3);
  hash = mixHash(crypto, hash, tau);
  const sealedEmpty = crypto.aeadSeal(key, 0, new Uint8Array(0), hash);
  message.set(sealedEmpty, RESPONSE_EMPTY);
  hash = mixHash(crypto, hash, sealedEmpty);

  handshake.hash = hash;
  handshake.chainKey = nextChainKey;
  handshake.localEphemeral = ephemeral;
  handshake.localIndex = localIndex;
  handshake.state = "responseCreated";
  return message;
}

/** Authenticates a response to our pending initiation; `lookup` finds it by receiver index. */
export function consumeMessageResponse<P extends { readonly handshake: Handshake }>(
  context: NoiseContext,
  message: Uint8Array,
  lookup: (localIndex: number) => P | null,
): P | null {
  const { crypto, identity } = context;
  if (identity === null || message.length !== MESSAGE_RESPONSE_SIZE) return null;
  const peer = lookup(readUint32LE(message, RESPONSE_RECEIVER));
  if (peer === null) return null;
  const handshake = peer.handshake;
  const localEphemeral = handshake.localEphemeral;
  if (handshake.state !== "initiationCreated" || localEphemeral === null) return null;

  const ephemeral = message.slice(RESPONSE_EPHEMERAL, RESPONSE_EMPTY);
  let hash = mixHash(crypto, handshake.hash, ephemeral);
  let chainKey = mixKey(crypto, handshake.chainKey, ephemeral);
  const ee = localEphemeral.dh(ephemeral);
  const se = identity.keyPair.dh(ephemeral);
  if (ee === null || se === null) return null;
  chainKey = mixKey(crypto, chainKey, ee);
  chainKey = mixKey(crypto, chainKey, se);

  const [nextChainKey, tau, key] = crypto.kdf(chainKey, handshake.presharedKey, 3);
  hash = mixHash(crypto, hash, tau);
  const sealedEmpty = message.subarray(RESPONSE_EMPTY, RESPONSE_EMPTY + TAG_SIZE);
  if (crypto.aeadOpen(key, 0, sealedEmpty, hash) === null) return null;
  hash = mixHash(crypto, hash, sealedEmpty);

  handshake.hash = hash;
  handshake.chainKey = nextChainKey;
  handshake.remoteIndex = readUint32LE(message, RESPONSE_SENDER);
  handshake.state = "responseConsumed";
  return peer;
}

/**
 * Derives the transport keypair from a completed handshake (initiator after consuming the
 * response, responder after creating it) and wipes the handshake's secrets.
 */
export function beginSymmetricSession(context: NoiseContext, handshake: Handshake): Keypair | null {
  const { crypto } = context;
  let isInitiator: boolean;
  if (handshake.state === "responseConsumed") isInitiator = true;
  else if (handshake.state === "responseCreated") isInitiator = false;
  else return null;
  const [first, second] = crypto.kdf(handshake.chainKey, new Uint8Array(0), 2);
  if (isZero(first) || isZero(second)) return null;
  const keypair = new Keypair({
    send: crypto.createTransportAead(isInitiator ? first : second),
    receive: crypto.createTransportAead(isInitiator ? second : first),
    created: context.clock.now(),
    isInitiator,
    localIndex: handshake.localIndex,
    remoteIndex: handshake.remoteIndex,
  });
  handshake.clear();
  return keypair;
}
