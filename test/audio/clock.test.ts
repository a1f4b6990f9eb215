import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { ClockTimer, NS_PER_SECOND, RealTimeClock, VirtualClock, framesToNs } from "../../src/audio/clock.js";
import { PCM_RATE_HZ } from "../../src/spec/constants.js";

describe("framesToNs", () => {
  it("is exact for whole seconds and common periods", () => {
    expect(NS_PER_SECOND).toBe(1e9);
    expect(framesToNs(48000, 48000)).toBe(1e9);
    expect(framesToNs(441, 44100)).toBe(1e7);
    expect(framesToNs(44100 * 3600, 44100)).toBe(3600e9);
    expect(framesToNs(480, 48000)).toBe(1e7);
    expect(framesToNs(0, 44100)).toBe(0);
  });

  it("rounds to the nearest nanosecond", () => {
    // 1e9 / 44100 = 22675.73...
    expect(framesToNs(1, 44100)).toBe(22676);
    // 1000 frames = 22675736.96 ns
    expect(framesToNs(1000, 44100)).toBe(22675737);
    // 1e9 / 48000 = 20833.33...
    expect(framesToNs(1, 48000)).toBe(20833);
  });

  it("is within 0.5 ns of the exact value, however long the run (property)", () => {
    fc.assert(
      fc.property(
        // Up to 30 days (2.6e15 ns, below 2^53) at any rate.
        fc.oneof(fc.nat(100), fc.nat(86400 * 30)),
        fc.nat(383_999),
        fc.constantFrom(...PCM_RATE_HZ),
        (seconds, extra, rate) => {
          const frames = seconds * rate + (extra % rate);
          const ns = framesToNs(frames, rate);
          // |ns - frames*1e9/rate| <= 0.5  <=>  |2*ns*rate - 2*frames*1e9| <= rate
          const diff = 2n * BigInt(ns) * BigInt(rate) - 2n * BigInt(frames) * 1_000_000_000n;
          expect(diff <= BigInt(rate) && diff >= -BigInt(rate)).toBe(true);
          // Ties round up.
          if (diff === -BigInt(rate)) throw new Error(`tie rounded down: ${frames} @ ${rate}`);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it("rounds correctly where frames * 1e9 / rate in doubles would not (17 h at 22050 Hz)", () => {
    // Exactly 62338774784580.4988... ns: the plain double quotient rounds to .5 and then up.
    expect(framesToNs(1374569984, 22050)).toBe(62338774784580);
    expect(framesToNs(22050 * 3600 * 17, 22050)).toBe(17 * 3600e9);
  });
});

describe("VirtualClock", () => {
  it("starts at the given time and only moves when told", () => {
    expect(new VirtualClock().now()).toBe(0);
    const clock = new VirtualClock(5000);
    expect(clock.now()).toBe(5000);
    clock.advance(100);
    expect(clock.now()).toBe(5100);
    clock.advanceTo(6000);
    expect(clock.now()).toBe(6000);
    // Never backwards.
    clock.advanceTo(10);
    expect(clock.now()).toBe(6000);
  });

  it("fires timers in deadline order, whatever the arming order", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    const at: Record<string, number> = { a: 300, b: 100, c: 200, d: 50, e: 250 };
    const timers = Object.entries(at).map(([name, t]) => {
      const timer = new ClockTimer(() => fired.push(name));
      clock.arm(timer, t);
      return timer;
    });
    expect(clock.pendingTimers).toBe(5);
    expect(clock.nextDeadline()).toBe(50);
    clock.advanceTo(1000);
    expect(fired).toEqual(["d", "b", "c", "e", "a"]);
    expect(clock.pendingTimers).toBe(0);
    expect(clock.nextDeadline()).toBeUndefined();
    expect(timers.every((t) => !t.armed && t.heapIndex === -1)).toBe(true);
  });

  it("fires timers with equal deadlines in arming order", () => {
    const clock = new VirtualClock();
    const fired: number[] = [];
    for (let i = 0; i < 20; i++) clock.arm(new ClockTimer(() => fired.push(i)), 100);
    clock.advanceTo(100);
    expect(fired).toEqual(Array.from({ length: 20 }, (_, i) => i));
  });

  it("sets now() to each timer's deadline while it fires, then to the target", () => {
    const clock = new VirtualClock();
    const seen: number[] = [];
    clock.arm(new ClockTimer(() => seen.push(clock.now())), 30);
    clock.arm(new ClockTimer(() => seen.push(clock.now())), 70);
    clock.advanceTo(100);
    expect(seen).toEqual([30, 70]);
    expect(clock.now()).toBe(100);
  });

  it("fires everything due up to and including the target, nothing after", () => {
    const clock = new VirtualClock();
    const fired: number[] = [];
    for (const t of [10, 20, 30, 40]) clock.arm(new ClockTimer(() => fired.push(t)), t);
    clock.advanceTo(30);
    expect(fired).toEqual([10, 20, 30]);
    expect(clock.now()).toBe(30);
    expect(clock.pendingTimers).toBe(1);
    clock.advance(9);
    expect(fired).toEqual([10, 20, 30]);
    clock.advance(1);
    expect(fired).toEqual([10, 20, 30, 40]);
  });

  it("re-arming moves a timer (later, earlier, and behind an equal deadline)", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    const a = new ClockTimer(() => fired.push("a"));
    const b = new ClockTimer(() => fired.push("b"));
    clock.arm(a, 100);
    clock.arm(b, 200);
    clock.arm(a, 300);
    expect(clock.pendingTimers).toBe(2);
    expect(a.at).toBe(300);
    clock.advanceTo(250);
    expect(fired).toEqual(["b"]);
    clock.arm(a, 260);
    clock.advanceTo(260);
    expect(fired).toEqual(["b", "a"]);

    // Equal deadlines: re-arming puts the timer behind ones armed before it.
    fired.length = 0;
    clock.arm(a, 500);
    clock.arm(b, 500);
    clock.arm(a, 500);
    clock.advanceTo(500);
    expect(fired).toEqual(["b", "a"]);
  });

  it("disarm removes a timer; disarming twice or an unarmed timer is harmless", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    const a = new ClockTimer(() => fired.push("a"));
    const b = new ClockTimer(() => fired.push("b"));
    const c = new ClockTimer(() => fired.push("c"));
    clock.arm(a, 10);
    clock.arm(b, 20);
    clock.arm(c, 30);
    clock.disarm(b);
    clock.disarm(b);
    clock.disarm(new ClockTimer(() => fired.push("never")));
    expect(b.armed).toBe(false);
    expect(clock.pendingTimers).toBe(2);
    clock.advanceTo(100);
    expect(fired).toEqual(["a", "c"]);
  });

  it("a timer disarmed by an earlier timer's callback does not fire", () => {
    const clock = new VirtualClock();
    const fired: string[] = [];
    const b = new ClockTimer(() => fired.push("b"));
    const a = new ClockTimer(() => {
      fired.push("a");
      clock.disarm(b);
    });
    clock.arm(a, 10);
    clock.arm(b, 10);
    clock.advanceTo(10);
    expect(fired).toEqual(["a"]);
  });

  it("a periodic timer that re-arms itself fires the exact number of times", () => {
    const clock = new VirtualClock();
    const period = framesToNs(441, 44100);
    let count = 0;
    const timer = new ClockTimer(() => {
      count++;
      clock.arm(timer, timer.at + period);
    });
    clock.arm(timer, period);
    clock.advanceTo(1000 * period);
    expect(count).toBe(1000);
    expect(clock.now()).toBe(1000 * period);
    expect(timer.at).toBe(1001 * period);
    clock.advanceTo(1001 * period - 1);
    expect(count).toBe(1000);
    clock.advance(1);
    expect(count).toBe(1001);
  });

  it("a timer armed in the past from a callback fires in the same advance without moving time back", () => {
    const clock = new VirtualClock();
    const seen: number[] = [];
    const late = new ClockTimer(() => seen.push(clock.now()));
    clock.arm(new ClockTimer(() => clock.arm(late, 5)), 50);
    clock.advanceTo(60);
    expect(seen).toEqual([50]);
    expect(clock.now()).toBe(60);
  });

  it("runUntil fires one deadline at a time until the condition holds", () => {
    const clock = new VirtualClock();
    let count = 0;
    const timer = new ClockTimer(() => {
      count++;
      clock.arm(timer, clock.now() + 10);
    });
    clock.arm(timer, 10);
    expect(clock.runUntil(() => count === 5)).toBe(true);
    expect(count).toBe(5);
    expect(clock.now()).toBe(50);
    // Already true: fires nothing.
    expect(clock.runUntil(() => true)).toBe(true);
    expect(count).toBe(5);
  });

  it("runUntil stops after maxFires and reports failure", () => {
    const clock = new VirtualClock();
    let count = 0;
    const timer = new ClockTimer(() => {
      count++;
      clock.arm(timer, clock.now() + 10);
    });
    clock.arm(timer, 10);
    expect(clock.runUntil(() => false, 7)).toBe(false);
    expect(count).toBe(7);
    expect(clock.now()).toBe(70);
  });

  it("runUntil returns the condition when no timer is armed", () => {
    const clock = new VirtualClock();
    expect(clock.runUntil(() => false)).toBe(false);
    let done = false;
    clock.arm(
      new ClockTimer(() => {
        done = true;
      }),
      42,
    );
    expect(clock.runUntil(() => done)).toBe(true);
    expect(clock.now()).toBe(42);
  });

  it("keeps the heap consistent under random arm/disarm/advance (property)", () => {
    type Op =
      | { kind: "arm"; t: number; at: number }
      | { kind: "disarm"; t: number }
      | { kind: "advance"; by: number };
    const op: fc.Arbitrary<Op> = fc.oneof(
      fc.record({ kind: fc.constant("arm" as const), t: fc.nat(9), at: fc.nat(200) }),
      fc.record({ kind: fc.constant("disarm" as const), t: fc.nat(9) }),
      fc.record({ kind: fc.constant("advance" as const), by: fc.nat(60) }),
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 80 }), (ops) => {
        const clock = new VirtualClock();
        const fired: number[] = [];
        const timers = Array.from({ length: 10 }, (_, i) => new ClockTimer(() => fired.push(i)));
        // Model: armed timers with deadline and arming sequence.
        const model = new Map<number, { at: number; seq: number }>();
        let seq = 0;
        let now = 0;
        for (const o of ops) {
          if (o.kind === "arm") {
            clock.arm(timers[o.t]!, o.at);
            model.set(o.t, { at: o.at, seq: seq++ });
          } else if (o.kind === "disarm") {
            clock.disarm(timers[o.t]!);
            model.delete(o.t);
          } else {
            const target = now + o.by;
            const due = [...model.entries()]
              .filter(([, v]) => v.at <= target)
              .sort(([, x], [, y]) => x.at - y.at || x.seq - y.seq)
              .map(([k]) => k);
            for (const k of due) model.delete(k);
            fired.length = 0;
            clock.advanceTo(target);
            expect(fired).toEqual(due);
            now = Math.max(now, target);
            expect(clock.now()).toBe(now);
          }
          expect(clock.pendingTimers).toBe(model.size);
          const next = Math.min(...[...model.values()].map((v) => v.at));
          expect(clock.nextDeadline()).toBe(model.size === 0 ? undefined : next);
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe("RealTimeClock", () => {
  it("fires a timer no earlier than its deadline, within a generous bound; disarm cancels", async () => {
    const before = performance.now();
    const clock = new RealTimeClock();
    const t0 = clock.now();
    // Nanoseconds since the clock was made.
    expect(t0).toBeLessThanOrEqual(Math.ceil((performance.now() - before) * 1_000_000) + 1);
    let cancelledFired = false;
    const cancelled = new ClockTimer(() => {
      cancelledFired = true;
    });
    clock.arm(cancelled, t0 + 5_000_000);
    clock.disarm(cancelled);
    expect(cancelled.armed).toBe(false);

    const firedAt = await new Promise<number>((resolve) => {
      const timer = new ClockTimer(() => resolve(clock.now()));
      clock.arm(timer, t0 + 20_000_000);
      expect(timer.armed).toBe(true);
    });
    expect(firedAt).toBeGreaterThanOrEqual(t0 + 20_000_000);
    expect(firedAt - t0).toBeLessThan(2_000_000_000);
    expect(cancelledFired).toBe(false);
  });
});
