/**
 * The daemon's clock: every voice of every guest in the process on one
 * timerfd. A RealTimeClock costs a setTimeout per period and voice (a Timeout
 * object and a closure, Node's timer lists, and whole-millisecond deadlines
 * that fire early on libuv's coarse loop clock and need a second wake-up);
 * here a min-heap of ClockTimers keeps the earliest deadline armed on one
 * CLOCK_MONOTONIC timerfd with nanosecond precision, so a period costs one
 * wake-up and allocates nothing.
 */
import { type Clock, ClockTimer } from "../audio/clock.js";
import { VirtioSndError } from "../errors.js";
import { type NativeBinding, POLL_READABLE, type PollHandle } from "./native.js";

/** timerfd deadlines are placed this much after a timer's time: performance.now() and CLOCK_MONOTONIC are read apart. */
const MARGIN_NS = 2_000;

export class NativeClock implements Clock {
  private readonly origin = performance.now();
  /** CLOCK_MONOTONIC (ns) at this clock's time 0. */
  private readonly monoOrigin: number;
  private readonly fd: number;
  private poll: PollHandle | null = null;
  private readonly heap: ClockTimer[] = [];
  /** Deadline the timerfd is armed for, ns of this clock; -1 when disarmed. */
  private armedAt = -1;
  private firing = false;
  private closed = false;

  /** Throws VirtioSndError ERR_BACKEND when the timerfd cannot be made or watched. */
  constructor(private readonly native: NativeBinding) {
    const mono = native.monotonicNow();
    this.monoOrigin = (mono - (performance.now() - this.origin)) * 1_000_000;
    try {
      this.fd = native.timerfd();
    } catch (err) {
      throw new VirtioSndError("ERR_BACKEND", `cannot make a timer: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  now(): number {
    return Math.round((performance.now() - this.origin) * 1_000_000);
  }

  arm(timer: ClockTimer, at: number): void {
    if (this.closed) return;
    if (timer.armed) this.remove(timer);
    timer.at = at;
    timer.armed = true;
    timer.heapIndex = this.heap.length;
    this.heap.push(timer);
    this.up(timer.heapIndex);
    if (!this.firing) this.update();
  }

  disarm(timer: ClockTimer): void {
    if (!timer.armed) return;
    this.remove(timer);
    if (!this.firing) this.update();
  }

  /** Timers armed. */
  get pendingTimers(): number {
    return this.heap.length;
  }

  /** Stops the timer for good (armed timers never fire) and closes its fd. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.poll?.stop();
    this.poll = null;
    for (const t of this.heap) {
      t.armed = false;
      t.heapIndex = -1;
    }
    this.heap.length = 0;
    try {
      this.native.close(this.fd);
    } catch {
      // Nothing to release.
    }
  }

  private onExpiry(): void {
    if (this.closed) return;
    this.armedAt = -1;
    this.firing = true;
    try {
      const now = this.now();
      for (;;) {
        const first = this.heap[0];
        if (first === undefined || first.at > now) break;
        this.remove(first);
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
    const first = this.heap[0];
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

  private remove(timer: ClockTimer): void {
    const i = timer.heapIndex;
    const last = this.heap.pop()!;
    timer.armed = false;
    timer.heapIndex = -1;
    if (last !== timer) {
      this.heap[i] = last;
      last.heapIndex = i;
      this.up(i);
      this.down(last.heapIndex);
    }
  }

  private up(i: number): void {
    const h = this.heap;
    const t = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p]!;
      if (parent.at <= t.at) break;
      h[i] = parent;
      parent.heapIndex = i;
      i = p;
    }
    h[i] = t;
    t.heapIndex = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const n = h.length;
    const t = h[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r]!.at < h[l]!.at ? r : l;
      const child = h[c]!;
      if (child.at >= t.at) break;
      h[i] = child;
      child.heapIndex = i;
      i = c;
    }
    h[i] = t;
    t.heapIndex = i;
  }
}
