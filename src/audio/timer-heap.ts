import type { ClockTimer } from "./clock.js";

/**
 * The armed ClockTimers of a clock that keeps its own deadlines (the virtual
 * clock, the daemon's one-timerfd clock): a binary min-heap by deadline, and
 * by arming order between equal deadlines, so timers due at the same instant
 * fire first-armed first. Each timer knows its place (heapIndex), so moving or
 * removing one is O(log n) and nothing is allocated per arm.
 *
 * The array never shrinks: a daemon's one voice removes and re-inserts its
 * timer every period, and an array popped to empty gives up its backing store
 * (V8 trims it), so the next push would allocate a new one, through the
 * runtime, every period.
 */
export class TimerHeap {
  private readonly heap: (ClockTimer | null)[] = [];
  private n = 0;
  private seq = 0;

  get size(): number {
    return this.n;
  }

  /** The timer due first, or undefined. */
  first(): ClockTimer | undefined {
    return this.n > 0 ? this.heap[0]! : undefined;
  }

  /** Arms `timer` for `at`, moving it if it was armed. */
  insert(timer: ClockTimer, at: number): void {
    if (timer.armed) this.remove(timer);
    timer.at = at;
    timer.armed = true;
    timer.seq = this.seq++;
    const i = this.n++;
    if (i === this.heap.length) this.heap.push(timer);
    else this.heap[i] = timer;
    this.up(i);
  }

  /** Disarms `timer` (it must be armed in this heap). */
  remove(timer: ClockTimer): void {
    const i = timer.heapIndex;
    const last = this.heap[--this.n]!;
    this.heap[this.n] = null;
    timer.armed = false;
    timer.heapIndex = -1;
    if (last !== timer) {
      this.heap[i] = last;
      last.heapIndex = i;
      this.up(i);
      this.down(last.heapIndex);
    }
  }

  /** Disarms every timer. */
  clear(): void {
    for (let i = 0; i < this.n; i++) {
      const t = this.heap[i]!;
      t.armed = false;
      t.heapIndex = -1;
      this.heap[i] = null;
    }
    this.n = 0;
  }

  private less(a: ClockTimer, b: ClockTimer): boolean {
    return a.at < b.at || (a.at === b.at && a.seq < b.seq);
  }

  private up(i: number): void {
    const h = this.heap;
    const t = h[i]!;
    while (i > 0) {
      const p = (i - 1) >> 1;
      const parent = h[p]!;
      if (!this.less(t, parent)) break;
      h[i] = parent;
      parent.heapIndex = i;
      i = p;
    }
    h[i] = t;
    t.heapIndex = i;
  }

  private down(i: number): void {
    const h = this.heap;
    const n = this.n;
    const t = h[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && this.less(h[r]!, h[l]!) ? r : l;
      const child = h[c]!;
      if (!this.less(child, t)) break;
      h[i] = child;
      child.heapIndex = i;
      i = c;
    }
    h[i] = t;
    t.heapIndex = i;
  }
}
