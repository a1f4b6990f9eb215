import { TimerHeap } from "./timer-heap.js";

/**
 * Time for voices and streams, in nanoseconds since an arbitrary origin.
 * Voices schedule absolute deadlines (frame n is due at start + n / rate), so
 * no error accumulates however long a stream runs.
 */
export interface Clock {
  now(): number;
  /** Fires `timer` at absolute time `at` (or as soon as possible after). Re-arming moves it. */
  arm(timer: ClockTimer, at: number): void;
  disarm(timer: ClockTimer): void;
}

/**
 * A reusable timer: a voice owns one and re-arms it every period, so the hot
 * path allocates no timer objects.
 */
export class ClockTimer {
  /** Absolute deadline, ns. */
  at = 0;
  armed = false;
  /** Position in a clock's TimerHeap; -1 when not in one. */
  heapIndex = -1;
  /** Arming order in a TimerHeap: breaks ties between equal deadlines. */
  seq = 0;
  /** Host handle of a RealTimeClock. */
  handle: unknown = undefined;

  constructor(readonly fire: () => void) {}
}

export const NS_PER_SECOND = 1_000_000_000;

/** Nanoseconds that `frames` frames last at `rate` Hz, rounded to the nearest ns. */
export function framesToNs(frames: number, rate: number): number {
  // Whole seconds apart from the remainder: after tens of minutes the double
  // quotient frames * 1e9 / rate has too few fraction bits to round correctly.
  const seconds = Math.floor(frames / rate);
  return seconds * NS_PER_SECOND + Math.round(((frames - seconds * rate) * NS_PER_SECOND) / rate);
}

/**
 * A clock that only moves when told to: tests and replays run as fast as the
 * CPU allows and give the same result every time.
 */
export class VirtualClock implements Clock {
  // Initialised here, not only in the constructor, so V8 keeps it a number field (no boxing per store).
  private time = 0;
  private readonly timers = new TimerHeap();

  constructor(start = 0) {
    this.time = start;
  }

  now(): number {
    return this.time;
  }

  arm(timer: ClockTimer, at: number): void {
    this.timers.insert(timer, at);
  }

  disarm(timer: ClockTimer): void {
    if (timer.armed) this.timers.remove(timer);
  }

  /** The earliest armed deadline, or undefined. */
  nextDeadline(): number | undefined {
    return this.timers.first()?.at;
  }

  /** Moves time forward to `target`, firing every timer due on the way, in deadline order. */
  advanceTo(target: number): void {
    for (;;) {
      const first = this.timers.first();
      if (first === undefined || first.at > target) break;
      this.timers.remove(first);
      if (first.at > this.time) this.time = first.at;
      first.fire();
    }
    if (target > this.time) this.time = target;
  }

  advance(ns: number): void {
    this.advanceTo(this.time + ns);
  }

  /**
   * Fires timers one deadline at a time until `until` returns true or no timer
   * is armed; returns whether `until` was satisfied. `maxFires` bounds the run.
   */
  runUntil(until: () => boolean, maxFires = 1_000_000): boolean {
    for (let i = 0; i < maxFires; i++) {
      if (until()) return true;
      if (!this.fireEarliest()) return until();
    }
    return until();
  }

  /**
   * Moves time to the earliest deadline and fires every timer due by then
   * (those armed meanwhile for that instant too); false when none is armed.
   * The deadline stays a local: passed to a call V8 does not inline, a time in
   * ns (past 2^31) would be boxed, one heap number per tick.
   */
  private fireEarliest(): boolean {
    const first = this.timers.first();
    if (first === undefined) return false;
    const target = first.at;
    for (;;) {
      const t = this.timers.first();
      if (t === undefined || t.at > target) break;
      this.timers.remove(t);
      if (t.at > this.time) this.time = t.at;
      t.fire();
    }
    if (target > this.time) this.time = target;
    return true;
  }

  get pendingTimers(): number {
    return this.timers.size;
  }
}

/**
 * The host's monotonic clock (performance.now, available in Node and browsers)
 * with setTimeout for deadlines. Timers fire late by the event loop's jitter,
 * never early; voices catch up by deadline, so lateness never accumulates.
 */
export class RealTimeClock implements Clock {
  private readonly origin = performance.now();

  now(): number {
    return Math.round((performance.now() - this.origin) * 1_000_000);
  }

  arm(timer: ClockTimer, at: number): void {
    this.disarm(timer);
    timer.at = at;
    timer.armed = true;
    const remainingMs = (at - this.now()) / 1_000_000;
    // Whole milliseconds, rounded up. Node measures timeouts on libuv's loop
    // clock (whole ms, read once per loop turn, so behind performance.now()):
    // the exact fractional delay fired early 4 times in 5 at 10 ms periods, each
    // early fire costing a second wake-up to re-arm; rounded up, at most 1 in 5
    // (median lateness 0.8 -> 1.0 ms, p99 unchanged; bench/daemon-cpu.ts). Whole
    // values also let Node reuse its per-duration timer lists.
    const delayMs = remainingMs > 0 ? Math.ceil(remainingMs) : 0;
    timer.handle = setTimeout(() => {
      timer.armed = false;
      timer.handle = undefined;
      // setTimeout may fire a fraction of a millisecond early on some hosts.
      if (this.now() < timer.at) this.arm(timer, timer.at);
      else timer.fire();
    }, delayMs);
  }

  disarm(timer: ClockTimer): void {
    if (timer.handle !== undefined) clearTimeout(timer.handle as ReturnType<typeof setTimeout>);
    timer.handle = undefined;
    timer.armed = false;
  }
}
