/**
 * Per-peer handshake and data-plane timers (WireGuard paper, section 6), driven by the
 * injected clock:
 *
 * - retransmitHandshake: RekeyTimeout (+ jitter) after an initiation without a response;
 *   retries until RekeyAttemptTime is used up, then gives up and drops queued packets.
 * - sendKeepalive: KeepaliveTimeout after receiving data we did not answer: send a keepalive.
 * - newHandshake: KeepaliveTimeout + RekeyTimeout (+ jitter) after sending data that got no
 *   answer: the session looks dead, start a handshake.
 * - zeroKeyMaterial: RejectAfterTime * 3 after the last new session: forget all keys.
 * - persistentKeepalive: the configured interval after any authenticated packet either way.
 *
 * Events come per packet, so re-arming must be cheap: a `Timer` only records its new deadline
 * and lets an earlier wake-up re-schedule itself for the remainder.
 */
import type { Clock, TimerHandle } from "./clock.ts";
import {
  KeepaliveTimeout,
  MaxTimerHandshakes,
  RejectAfterTime,
  RekeyTimeout,
  RekeyTimeoutJitterMax,
} from "./constants.ts";

class Timer {
  private readonly clock: Clock;
  private readonly action: () => void;
  private handle: TimerHandle | null = null;
  private scheduledAt = 0;
  private deadline = 0;
  private active = false;

  constructor(clock: Clock, action: () => void) {
    this.clock = clock;
    this.action = action;
  }

  get pending(): boolean {
    return this.active;
  }

  /** (Re)arms the timer to fire `delay` ms from now. */
  mod(delay: number): void {
    const deadline = this.clock.now() + delay;
    this.deadline = deadline;
    this.active = true;
    if (this.handle !== null) {
      if (this.scheduledAt <= deadline) return;
      this.clock.clearTimeout(this.handle);
    }
    this.schedule(delay);
  }

  del(): void {
    this.active = false;
  }

  stop(): void {
    this.active = false;
    if (this.handle !== null) this.clock.clearTimeout(this.handle);
    this.handle = null;
  }

  private schedule(delay: number): void {
    this.scheduledAt = this.clock.now() + delay;
    this.handle = this.clock.setTimeout(this.fire, delay);
  }

  private readonly fire = (): void => {
    this.handle = null;
    if (!this.active) return;
    const remaining = this.deadline - this.clock.now();
    if (remaining > 0) {
      this.schedule(remaining);
      return;
    }
    this.active = false;
    this.action();
  };
}

/** What the timers do to their peer when they expire. */
export interface TimerTarget {
  /** Seconds; 0 disables persistent keepalives. */
  readonly persistentKeepaliveInterval: number;
  sendHandshakeInitiation(isRetry: boolean): void;
  sendKeepalive(): void;
  dropStagedPackets(): void;
  zeroKeyMaterial(): void;
}

const jitter = (): number => Math.random() * RekeyTimeoutJitterMax;

export class PeerTimers {
  handshakeAttempts = 0;
  needAnotherKeepalive = false;
  /** Set once the initiator asked for a new handshake because the keypair is about to expire. */
  sentLastMinuteHandshake = false;
  private readonly target: TimerTarget;
  private readonly retransmitHandshake: Timer;
  private readonly sendKeepalive: Timer;
  private readonly newHandshake: Timer;
  private readonly zeroKeyMaterial: Timer;
  private readonly persistentKeepalive: Timer;

  constructor(clock: Clock, target: TimerTarget) {
    this.target = target;
    this.retransmitHandshake = new Timer(clock, () => this.expiredRetransmitHandshake());
    this.sendKeepalive = new Timer(clock, () => this.expiredSendKeepalive());
    this.newHandshake = new Timer(clock, () => target.sendHandshakeInitiation(false));
    this.zeroKeyMaterial = new Timer(clock, () => target.zeroKeyMaterial());
    this.persistentKeepalive = new Timer(clock, () => {
      if (target.persistentKeepaliveInterval > 0) target.sendKeepalive();
    });
  }

  /** A transport packet with data (not a keepalive) was sent. */
  dataSent(): void {
    if (!this.newHandshake.pending)
      this.newHandshake.mod(KeepaliveTimeout + RekeyTimeout + jitter());
  }

  /** A transport packet with data was received. */
  dataReceived(): void {
    if (!this.sendKeepalive.pending) this.sendKeepalive.mod(KeepaliveTimeout);
    else this.needAnotherKeepalive = true;
  }

  /** Any authenticated packet (handshake, data or keepalive) was sent. */
  anyAuthenticatedPacketSent(): void {
    this.sendKeepalive.del();
  }

  /** Any authenticated packet was received. */
  anyAuthenticatedPacketReceived(): void {
    this.newHandshake.del();
  }

  /** Any authenticated packet went either way. */
  anyAuthenticatedPacketTraversal(): void {
    const interval = this.target.persistentKeepaliveInterval;
    if (interval > 0) this.persistentKeepalive.mod(interval * 1000);
  }

  handshakeInitiated(): void {
    this.retransmitHandshake.mod(RekeyTimeout + jitter());
  }

  handshakeComplete(): void {
    this.retransmitHandshake.del();
    this.handshakeAttempts = 0;
    this.sentLastMinuteHandshake = false;
  }

  sessionDerived(): void {
    this.zeroKeyMaterial.mod(RejectAfterTime * 3);
  }

  stop(): void {
    this.retransmitHandshake.stop();
    this.sendKeepalive.stop();
    this.newHandshake.stop();
    this.zeroKeyMaterial.stop();
    this.persistentKeepalive.stop();
    this.handshakeAttempts = 0;
    this.needAnotherKeepalive = false;
    this.sentLastMinuteHandshake = false;
  }

  private expiredRetransmitHandshake(): void {
    if (this.handshakeAttempts > MaxTimerHandshakes) {
      this.sendKeepalive.del();
      this.target.dropStagedPackets();
      if (!this.zeroKeyMaterial.pending) this.zeroKeyMaterial.mod(RejectAfterTime * 3);
      return;
    }
    this.handshakeAttempts++;
    this.target.sendHandshakeInitiation(true);
  }

  private expiredSendKeepalive(): void {
    this.target.sendKeepalive();
    if (this.needAnotherKeepalive) {
      this.needAnotherKeepalive = false;
      this.sendKeepalive.mod(KeepaliveTimeout);
    }
  }
}
