/**
 * Per-peer handshake and data-plane timers (WireGuard paper, section 6), driven by the
 * injected clock:
 *
 * - retransmitHandshake: REKEY_TIMEOUT (+ jitter) after an initiation without a response;
 *   retries until REKEY_ATTEMPT_TIME is used up, then gives up and drops queued packets.
 * - sendKeepalive: KEEPALIVE_TIMEOUT after receiving data we did not answer: send a keepalive.
 * - newHandshake: KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (+ jitter) after sending data that got no
 *   answer: the session looks dead, start a handshake.
 * - zeroKeyMaterial: REJECT_AFTER_TIME * 3 after the last new session: forget all keys.
 * - persistentKeepalive: the configured interval after any authenticated packet either way.
 *
 * Events come per packet, so re-arming must be cheap: a `Timer` only records its new deadline
 * and lets an earlier wake-up re-schedule itself for the remainder.
 */
import type { Clock, TimerHandle } from "./clock.ts";
import {
  KEEPALIVE_TIMEOUT,
  MAX_TIMER_HANDSHAKES,
  REJECT_AFTER_TIME,
  REKEY_TIMEOUT,
  REKEY_TIMEOUT_JITTER_MAX,
} from "./constants.ts";
import type { Peer } from "./peer.ts";
import { sendHandshakeInitiation, sendKeepalive } from "./send.ts";

class Timer {
  readonly #clock: Clock;
  readonly #action: () => void;
  #handle: TimerHandle | null = null;
  #scheduledAt = 0;
  #deadline = 0;
  #active = false;

  constructor(clock: Clock, action: () => void) {
    this.#clock = clock;
    this.#action = action;
  }

  get pending(): boolean {
    return this.#active;
  }

  /** (Re)arms the timer to fire `delay` ms from now. */
  mod(delay: number): void {
    const deadline = this.#clock.now() + delay;
    this.#deadline = deadline;
    this.#active = true;
    if (this.#handle !== null) {
      if (this.#scheduledAt <= deadline) return;
      this.#clock.clearTimeout(this.#handle);
    }
    this.#schedule(delay);
  }

  del(): void {
    this.#active = false;
  }

  stop(): void {
    this.#active = false;
    if (this.#handle !== null) this.#clock.clearTimeout(this.#handle);
    this.#handle = null;
  }

  #schedule(delay: number): void {
    this.#scheduledAt = this.#clock.now() + delay;
    this.#handle = this.#clock.setTimeout(this.#fire, delay);
  }

  readonly #fire = (): void => {
    this.#handle = null;
    if (!this.#active) return;
    const remaining = this.#deadline - this.#clock.now();
    if (remaining > 0) {
      this.#schedule(remaining);
      return;
    }
    this.#active = false;
    this.#action();
  };
}

const jitter = (): number => Math.random() * REKEY_TIMEOUT_JITTER_MAX;

export class PeerTimers {
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  /** Set once the initiator asked for a new handshake because the keypair is about to expire. */
  sentLastMinuteHandshake = false;
  readonly #peer: Peer;
  readonly #retransmitHandshake: Timer;
  readonly #sendKeepalive: Timer;
  readonly #newHandshake: Timer;
  readonly #zeroKeyMaterial: Timer;
  readonly #persistentKeepalive: Timer;

  constructor(clock: Clock, peer: Peer) {
    this.#peer = peer;
    this.#retransmitHandshake = new Timer(clock, () => this.#expiredRetransmitHandshake());
    this.#sendKeepalive = new Timer(clock, () => this.#expiredSendKeepalive());
    this.#newHandshake = new Timer(clock, () => sendHandshakeInitiation(peer, false));
    this.#zeroKeyMaterial = new Timer(clock, () => peer.zeroKeyMaterial());
    this.#persistentKeepalive = new Timer(clock, () => {
      if (peer.persistentKeepaliveInterval > 0) sendKeepalive(peer);
    });
  }

  /** A transport packet with data (not a keepalive) was sent. */
  dataSent(): void {
    if (!this.#newHandshake.pending)
      this.#newHandshake.mod(KEEPALIVE_TIMEOUT + REKEY_TIMEOUT + jitter());
  }

  /** A transport packet with data was received. */
  dataReceived(): void {
    if (!this.#sendKeepalive.pending) this.#sendKeepalive.mod(KEEPALIVE_TIMEOUT);
    else this.needAnotherKeepalive = true;
  }

  /** Any authenticated packet (handshake, data or keepalive) was sent. */
  anyAuthenticatedPacketSent(): void {
    this.#sendKeepalive.del();
  }

  /** Any authenticated packet was received. */
  anyAuthenticatedPacketReceived(): void {
    this.#newHandshake.del();
  }

  /** Any authenticated packet went either way. */
  anyAuthenticatedPacketTraversal(): void {
    const interval = this.#peer.persistentKeepaliveInterval;
    if (interval > 0) this.#persistentKeepalive.mod(interval * 1000);
  }

  handshakeInitiated(): void {
    this.#retransmitHandshake.mod(REKEY_TIMEOUT + jitter());
  }

  handshakeComplete(): void {
    this.#retransmitHandshake.del();
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
  }

  sessionDerived(): void {
    this.#zeroKeyMaterial.mod(REJECT_AFTER_TIME * 3);
  }

  stop(): void {
    this.#retransmitHandshake.stop();
    this.#sendKeepalive.stop();
    this.#newHandshake.stop();
    this.#zeroKeyMaterial.stop();
    this.#persistentKeepalive.stop();
    this.handshakeAttempts = 0;
    this.needAnotherKeepalive = false;
    this.sentLastMinuteHandshake = false;
  }

  #expiredRetransmitHandshake(): void {
    if (this.handshakeAttempts > MAX_TIMER_HANDSHAKES) {
      this.#sendKeepalive.del();
      this.#peer.dropStagedPackets();
      if (!this.#zeroKeyMaterial.pending) this.#zeroKeyMaterial.mod(REJECT_AFTER_TIME * 3);
      return;
    }
    this.handshakeAttempts++;
    sendHandshakeInitiation(this.#peer, true);
  }

  #expiredSendKeepalive(): void {
    sendKeepalive(this.#peer);
    if (this.needAnotherKeepalive) {
      this.needAnotherKeepalive = false;
      this.#sendKeepalive.mod(KEEPALIVE_TIMEOUT);
    }
  }
}
