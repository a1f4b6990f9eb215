/**
 * NativeClock: every timer of the process on one timerfd. Timers fire in
 * deadline order, never before their time; re-arming moves, disarming and
 * closing cancel; a timer that throws does not stop the others.
 */
import { describe, expect, it } from "vitest";
import { ClockTimer } from "../../src/audio/clock.js";
import { PacedVoice } from "../../src/audio/paced-voice.js";
import { VIRTIO_SND_D_OUTPUT, VIRTIO_SND_PCM_FMT_S16 } from "../../src/spec/constants.js";
import { NativeClock } from "../../src/vhost-user/native-clock.js";
import { loadNative, nativeAvailable } from "../../src/vhost-user/native.js";
import { until } from "./native-front-end.js";

const status = nativeAvailable();
const name = status.ok ? "NativeClock" : `NativeClock (skipped: ${status.reason})`;

describe.skipIf(!status.ok)(name, () => {
  const n = status.ok ? loadNative() : (undefined as never);
  const MS = 1_000_000;

  it("fires timers in deadline order, none before its time, re-armed, disarmed or closed", async () => {
    const clock = new NativeClock(n);
    const fired: { id: string; late: number }[] = [];
    const timer = (id: string): ClockTimer => {
      const t: ClockTimer = new ClockTimer(() => fired.push({ id, late: clock.now() - t.at }));
      return t;
    };
    const t0 = clock.now();
    const a = timer("a");
    const b = timer("b");
    const c = timer("c");
    const d = timer("d");
    const e = timer("e");
    clock.arm(c, t0 + 30 * MS);
    clock.arm(a, t0 + 10 * MS);
    clock.arm(b, t0 + 20 * MS);
    clock.arm(d, t0 + 15 * MS);
    clock.arm(d, t0 + 25 * MS); // moved
    clock.arm(e, t0 + 5 * MS);
    clock.disarm(e);
    expect(clock.pendingTimers).toBe(4);
    await until("four timers", () => fired.length === 4);
    expect(fired.map((f) => f.id)).toEqual(["a", "b", "d", "c"]);
    for (const f of fired) expect(f.late).toBeGreaterThanOrEqual(0);
    expect(e.armed).toBe(false);
    expect(clock.pendingTimers).toBe(0);
    // Closed: armed timers never fire.
    clock.arm(a, clock.now() + MS);
    clock.close();
    await new Promise((r) => setTimeout(r, 20));
    expect(fired).toHaveLength(4);
    clock.arm(a, clock.now());
    expect(a.armed).toBe(false);
  });

  it("reads CLOCK_MONOTONIC; while timers fire, now() is the time they were found due", async () => {
    const clock = new NativeClock(n);
    // now() and the addon's CLOCK_MONOTONIC (ms) move together.
    const m0 = n.monotonicNow();
    const c0 = clock.now();
    await new Promise((r) => setTimeout(r, 20));
    const dm = (n.monotonicNow() - m0) * MS;
    const dc = clock.now() - c0;
    expect(Math.abs(dc - dm)).toBeLessThan(MS);
    expect(dc).toBeGreaterThanOrEqual(19 * MS);
    const seen: number[] = [];
    const late = new ClockTimer(() => seen.push(clock.now()));
    const first = new ClockTimer(() => {
      seen.push(clock.now());
      busyWait(2);
      seen.push(clock.now());
      // Due at the time the expiry found: fires in the same expiry.
      clock.arm(late, clock.now());
    });
    clock.arm(first, clock.now() + 5 * MS);
    await until("both timers", () => seen.length === 3);
    expect(seen[1]).toBe(seen[0]);
    expect(seen[2]).toBe(seen[0]);
    expect(seen[0]!).toBeGreaterThanOrEqual(first.at);
    // Outside a callback, time moves again.
    expect(clock.now()).toBeGreaterThan(seen[0]!);
    clock.close();
  });

  it("a timer that throws does not stop the others", async () => {
    const clock = new NativeClock(n);
    let ran = false;
    const bad = new ClockTimer(() => {
      throw new Error("boom");
    });
    const good = new ClockTimer(() => (ran = true));
    const at = clock.now() + 2 * MS;
    clock.arm(bad, at);
    clock.arm(good, at);
    await until("the good timer", () => ran);
    clock.close();
  });

  it("paces a voice: every chunk on time, none early, several voices on one timer", async () => {
    const clock = new NativeClock(n);
    const params = {
      direction: VIRTIO_SND_D_OUTPUT,
      format: VIRTIO_SND_PCM_FMT_S16,
      channels: 2,
      rate: 48_000,
      bufferBytes: 1920 * 4,
      periodBytes: 1920,
      features: 0,
    };
    class Probe extends PacedVoice {
      readonly due: number[] = [];
      readonly at: number[] = [];
      private start0 = 0;
      begin(): void {
        this.start0 = clock.now();
        this.start();
      }
      protected onChunk(): void {
        this.at.push(clock.now());
        this.due.push(this.start0 + ((this.framesDone * 1e9) / 48_000 - 1000));
      }
    }
    const voices = [new Probe(clock, params, 480), new Probe(clock, params, 240)];
    for (const v of voices) v.begin();
    await until("ten chunks each", () => voices.every((v) => v.at.length >= 10));
    for (const v of voices) {
      v.close();
      v.at.forEach((t, i) => expect(t).toBeGreaterThanOrEqual(v.due[i]!));
    }
    expect(clock.pendingTimers).toBe(0);
    clock.close();
  });
});

function busyWait(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    // Spins: time passes inside a timer's callback.
  }
}
