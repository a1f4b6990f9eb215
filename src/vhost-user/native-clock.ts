/**
 * The daemon's clock: every voice of every guest in the process on one
 * timerfd. A RealTimeClock costs a setTimeout per period and voice (a Timeout
 * object and a closure, Node's timer lists, and whole-millisecond deadlines
 * that fire early on libuv's coarse loop clock and need a second wake-up);
 * here a min-heap of ClockTimers keeps the earliest deadline armed on one
 * CLOCK_MONOTONIC timerfd with nanosecond precision, so a period costs one
 * wake-up and allocates nothing. Time is read from CLOCK_MONOTONIC too (the
 * addon's monotonicNow: less than half of performance.now()'s cost before V8 has
 * optimized the caller), once per expiry: while timers fire, now() is the
 * time they were found due, as with VirtualClock.
 */
import type { Clock, ClockTimer } from "../audio/clock.js";
import { TimerHeap } from "../audio/timer-heap.js";
import { VirtioSndError } from "../errors.js";
import { type NativeBinding, POLL_READABLE, type PollHandle } from "./native.js";

/** timerfd deadlines are placed this much after a timer's time: now() rounds CLOCK_MONOTONIC to whole ns from a double of ms. */
const MARGIN_NS = 2_000;

export class NativeClock implements Clock {
  /** CLOCK_MONOTONIC (ms) at this clock's time 0. */
  private readonly origin: number;
  /** CLOCK_MONOTONIC (ns) at this clock's time 0. */
  private readonly monoOrigin: number;
  /** now() while timers fire. */
  private firingNow = 0;
  private readonly fd: number;
  private poll: PollHandle | null = null;
  private readonly timers = new TimerHeap();
  /** Deadline the timerfd is armed for, ns of this clock; -1 when disarmed. */
  private armedAt = -1;
  private firing = false;
  private closed = false;

  /** Throws VirtioSndError ERR_BACKEND when the timerfd cannot be made or watched. */
  constructor(private readonly native: NativeBinding) {
    this.origin = native.monotonicNow();
    this.monoOrigin = this.origin * 1_000_000;
    try {
      this.fd = native.timerfd();
    } catch (err) {
      throw new VirtioSndError("ERR_BACKEND", `cannot make a timer: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  now(): number {
    if (this.firing) return this.firingNow;
    return Math.round((this.native.monotonicNow() - this.origin) * 1_000_000);
  }

  arm(timer: ClockTimer, at: number): void {
    if (this.closed) return;
    this.timers.insert(timer, at);
    if (!this.firing) this.update();
  }

  disarm(timer: ClockTimer): void {
    if (!timer.armed) return;
    this.timers.remove(timer);
    if (!this.firing) this.update();
  }

  /** Timers armed. */
  get pendingTimers(): number {
    return this.timers.size;
  }

  /** Stops the timer for good (armed timers never fire) and closes its fd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll?.stop();
    this.poll = null;
    this.timers.clear();
    try {
      this.native.close(this.fd);
    } catch {
      // Nothing to release.
    }
  }

  private onExpiry(): void {
    if (this.closed) return;
    this.armedAt = -1;
    const now = this.now();
    this.firingNow = now;
    this.firing = true;
    try {
      for (;;) {
        const first = this.timers.first();
        if (first === undefined || first.at > now) break;
        this.timers.remove(first);
        // A voice's failure is its own (the stream reports it); the other voices keep their pace.
        try {
          first.fire();
        } catch {
          // PacedVoice callers catch what their backend throws; nothing is expected here.
        }
      }
    } finally {
      this.firing = false;
    }
    this.update();
  }

  /** Arms the timerfd for the earliest deadline, or disarms it. */
  private update(): void {
    const first = this.timers.first();
    const at = first === undefined ? -1 : first.at;
    if (at === this.armedAt) return;
    try {
      if (at < 0) {
        this.native.timerfdSet(this.fd, 0, 0);
        // Nothing armed: the clock must not keep the event loop alive.
        this.poll?.stop();
        this.poll = null;
      } else {
        if (this.poll === null) this.poll = this.native.poll(this.fd, POLL_READABLE, () => this.onExpiry());
        const mono = Math.max(1, Math.ceil(this.monoOrigin + at + MARGIN_NS));
        const sec = Math.floor(mono / 1_000_000_000);
        this.native.timerfdSet(this.fd, sec, mono - sec * 1_000_000_000);
      }
      this.armedAt = at;
    } catch {
      // A timerfd that cannot be set (the process is out of resources): fall back to a host timer.
      this.armedAt = -1;
      if (at >= 0) setTimeout(() => this.onExpiry(), Math.max(0, Math.ceil((at - this.now()) / 1e6)));
    }
  }
}
