import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { type Clock, type ClockTimer, VirtualClock, framesToNs } from "../../src/audio/clock.js";
import { PacedVoice, periodFrames } from "../../src/audio/paced-voice.js";
import type { PcmParams } from "../../src/audio/pcm-params.js";
import {
  PCM_RATE_HZ,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_PCM_FMT_IMA_ADPCM,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24_3,
} from "../../src/spec/constants.js";

function params(rate: number, periodFrames = 441, format = VIRTIO_SND_PCM_FMT_S16, channels = 2): PcmParams {
  const fb = format === VIRTIO_SND_PCM_FMT_S16 ? 2 * channels : 3 * channels;
  return {
    direction: VIRTIO_SND_D_OUTPUT,
    format,
    rate,
    channels,
    bufferBytes: periodFrames * fb * 4,
    periodBytes: periodFrames * fb,
    features: 0,
  };
}

/** A voice that counts chunks and remembers when they ran. */
class CountingVoice extends PacedVoice {
  chunks = 0;
  times: number[] = [];
  closedHook = 0;
  onEachChunk: (() => void) | null = null;
  keepTimes = true;

  constructor(clock: Clock, p: PcmParams, chunkFrames: number) {
    super(clock, p, chunkFrames);
  }

  get frames(): number {
    return this.chunkFrames;
  }
  get bytes(): number {
    return this.chunkBytes;
  }

  protected onChunk(): void {
    this.chunks++;
    if (this.keepTimes) this.times.push(this.clock.now());
    this.onEachChunk?.();
  }

  protected override onClose(): void {
    this.closedHook++;
  }
}

/** A clock whose timers fire only when the test says so, at whatever time it sets: a late host. */
class ManualClock implements Clock {
  time = 0;
  armed: ClockTimer | null = null;
  arms: number[] = [];
  now(): number {
    return this.time;
  }
  arm(timer: ClockTimer, at: number): void {
    timer.at = at;
    timer.armed = true;
    this.armed = timer;
    this.arms.push(at);
  }
  disarm(timer: ClockTimer): void {
    timer.armed = false;
    if (this.armed === timer) this.armed = null;
  }
  /** Sets the time and fires the armed timer (late by however far `time` is past its deadline). */
  fireAt(time: number): void {
    this.time = time;
    const t = this.armed;
    if (t === null) throw new Error("no timer armed");
    this.armed = null;
    t.armed = false;
    t.fire();
  }
}

/** Chunks whose rounded deadline is <= t: max k with round(k*chunk*1e9/rate) <= t. */
function dueChunks(t: number, rate: number, chunk: number): number {
  // round(x) <= t  <=>  x < t + 1/2  <=>  2*k*chunk*1e9 < (2t+1)*rate
  const num = (2n * BigInt(t) + 1n) * BigInt(rate) - 1n;
  return Number(num / (2n * BigInt(chunk) * 1_000_000_000n));
}

describe("PacedVoice", () => {
  it("derives chunkBytes from chunkFrames and the format, flooring fractional frames", () => {
    const clock = new VirtualClock();
    const v = new CountingVoice(clock, params(48000), 480);
    expect(v.frames).toBe(480);
    expect(v.bytes).toBe(480 * 4);
    expect(new CountingVoice(clock, params(48000), 10.9).frames).toBe(10);
    expect(new CountingVoice(clock, params(48000), 0).frames).toBe(1);
    expect(new CountingVoice(clock, params(48000, 100, VIRTIO_SND_PCM_FMT_S24_3, 1), 7).bytes).toBe(21);
  });

  it("periodFrames is the period in frames (at least 1)", () => {
    expect(periodFrames(params(44100, 441))).toBe(441);
    expect(periodFrames({ ...params(48000), periodBytes: 1001 })).toBe(250);
    expect(periodFrames({ ...params(48000), periodBytes: 2 })).toBe(1);
    // Unknown format: no frame size, one frame per chunk.
    expect(periodFrames({ ...params(48000), format: 99 })).toBe(1);
    // ADPCM mono is half a byte per frame.
    expect(
      periodFrames({ ...params(8000), format: VIRTIO_SND_PCM_FMT_IMA_ADPCM, channels: 1, periodBytes: 100 }),
    ).toBe(200);
  });

  it("does nothing until started; chunk k runs at start + k chunk durations", () => {
    const clock = new VirtualClock(1_000_000);
    const v = new CountingVoice(clock, params(44100), 441);
    clock.advance(1e9);
    expect(v.chunks).toBe(0);
    expect(v.isRunning).toBe(false);
    const t0 = clock.now();
    v.start();
    expect(v.isRunning).toBe(true);
    clock.advanceTo(t0 + 5e7);
    expect(v.times).toEqual([1, 2, 3, 4, 5].map((k) => t0 + k * 1e7));
    expect(v.framesDone).toBe(5 * 441);
    // start() while running is a no-op (no new origin).
    v.start();
    clock.advanceTo(t0 + 6e7);
    expect(v.chunks).toBe(6);
  });

  it("consumes exactly rate x elapsed frames over 1 hour at 44100 Hz with 441-frame periods", () => {
    const clock = new VirtualClock();
    const v = new CountingVoice(clock, params(44100), 441);
    v.keepTimes = false;
    v.start();
    const hour = 3600 * 1e9;
    // Check along the way, at times that are not chunk boundaries.
    for (const t of [1e9, 1e9 + 9_999_999, 60e9 + 5e6, 1800e9 - 1]) {
      clock.advanceTo(t);
      expect(v.framesDone).toBe(Math.floor((t * 44100) / 1e9 / 441) * 441);
    }
    clock.advanceTo(hour);
    expect(v.framesDone).toBe(44100 * 3600);
    expect(v.chunks).toBe(360_000);
    clock.advanceTo(hour + 1e7 - 1);
    expect(v.framesDone).toBe(44100 * 3600);
    clock.advanceTo(hour + 1e7);
    expect(v.framesDone).toBe(44100 * 3600 + 441);
  });

  it("rounds each deadline to the nearest ns: a chunk may run up to 0.5 ns before its exact time", () => {
    // Chunk 13 of 1000 frames at 44100 Hz is exactly due at 294784580.48 ns; it runs at 294784580.
    const clock = new VirtualClock();
    const v = new CountingVoice(clock, params(44100), 1000);
    v.start();
    clock.advanceTo(294_784_579);
    expect(v.chunks).toBe(12);
    clock.advanceTo(294_784_580);
    expect(v.chunks).toBe(13);
    expect(v.times[12]).toBe(framesToNs(13_000, 44100));
  });

  it("does not drift with an awkward chunk (1000 frames at 44100 Hz: 22675736.96 ns)", () => {
    const clock = new VirtualClock();
    const v = new CountingVoice(clock, params(44100), 1000);
    v.keepTimes = false;
    v.start();
    const hour = 3600e9;
    for (const t of [1e9, 10e9, 59e9 + 123_456, 1234e9 + 7]) {
      clock.advanceTo(t);
      expect(v.framesDone).toBe(Math.floor((t * 44100) / 1e9 / 1000) * 1000);
      expect(v.framesDone).toBe(dueChunks(t, 44100, 1000) * 1000);
    }
    clock.advanceTo(hour);
    // 3600 s * 44100 = 158,760,000 frames = exactly 158,760 chunks; the last is due at exactly 1 h.
    expect(v.framesDone).toBe(158_760_000);
    expect(v.framesDone).toBe(Math.floor((hour * 44100) / 1e9 / 1000) * 1000);
    clock.advanceTo(hour + framesToNs(1000, 44100) - 1);
    expect(v.framesDone).toBe(158_760_000);
  });

  it("at any time t, frames done = chunks whose (nearest-ns) deadline is <= t, never drifting (property)", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(...PCM_RATE_HZ),
        fc.integer({ min: 1, max: 5000 }),
        // Up to 1 s of virtual time per run keeps the worst case (1-frame chunks at 384 kHz) fast.
        fc.array(fc.integer({ min: 0, max: 5e7 }), { minLength: 1, maxLength: 20 }),
        (rate, chunk, steps) => {
          const clock = new VirtualClock();
          const v = new CountingVoice(clock, params(rate), chunk);
          v.keepTimes = false;
          v.start();
          let t = 0;
          for (const s of steps) {
            t += s;
            clock.advanceTo(t);
            expect(v.framesDone).toBe(dueChunks(t, rate, chunk) * chunk);
            // Within one chunk of the exact frame count, whatever the run length
            // (a chunk may run up to 0.5 ns early: deadlines are rounded to the nearest ns).
            const exact = (t * rate) / 1e9;
            expect(v.framesDone).toBeLessThanOrEqual(exact + rate * 0.5e-9 + 1e-6);
            expect(exact - v.framesDone).toBeLessThan(chunk);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it("stop() pauses and start() resumes with a new time origin", () => {
    const clock = new VirtualClock();
    const v = new CountingVoice(clock, params(44100), 441);
    v.start();
    clock.advanceTo(25e6);
    expect(v.times).toEqual([1e7, 2e7]);
    v.stop();
    expect(v.isRunning).toBe(false);
    expect(clock.pendingTimers).toBe(0);
    clock.advanceTo(100e6);
    expect(v.chunks).toBe(2);
    v.stop(); // stopping twice is harmless
    v.start();
    clock.advanceTo(135e6);
    // New origin at 100 ms: the half-chunk before the stop is not carried over.
    expect(v.times).toEqual([1e7, 2e7, 110e6, 120e6, 130e6]);
    expect(v.framesDone).toBe(5 * 441);
  });

  it("a late clock processes every due chunk at once, none lost, and re-arms on schedule", () => {
    const clock = new ManualClock();
    const v = new CountingVoice(clock, params(44100), 441);
    v.start();
    expect(clock.arms).toEqual([1e7]);
    // Fires 5.5 periods late-ish: chunks 1..5 are due.
    clock.fireAt(55e6);
    expect(v.chunks).toBe(5);
    expect(v.framesDone).toBe(5 * 441);
    expect(clock.arms.at(-1)).toBe(6e7);
    // On time.
    clock.fireAt(6e7);
    expect(v.chunks).toBe(6);
    expect(clock.arms.at(-1)).toBe(7e7);
    // Very late: 1 s after chunk 7 was due.
    clock.fireAt(7e7 + 1e9);
    expect(v.chunks).toBe(107);
    expect(clock.arms.at(-1)).toBe(108e7);
    // Exactly on a deadline boundary: that chunk is included.
    clock.fireAt(110e7);
    expect(v.chunks).toBe(110);
  });

  it("close() stops callbacks, calls onClose once per close, and start() after close does nothing", () => {
    const clock = new VirtualClock();
    const v = new CountingVoice(clock, params(44100), 441);
    v.start();
    clock.advanceTo(3e7);
    v.close();
    expect(v.closedHook).toBe(1);
    expect(v.isRunning).toBe(false);
    expect(clock.pendingTimers).toBe(0);
    clock.advanceTo(1e9);
    expect(v.chunks).toBe(3);
    v.start();
    clock.advanceTo(2e9);
    expect(v.chunks).toBe(3);
    expect(clock.pendingTimers).toBe(0);
  });

  it("a chunk that closes the voice ends the catch-up loop at once", () => {
    const clock = new ManualClock();
    const v = new CountingVoice(clock, params(44100), 441);
    v.onEachChunk = () => {
      if (v.chunks === 3) v.close();
    };
    v.start();
    clock.fireAt(1e8); // 10 chunks due
    expect(v.chunks).toBe(3);
    expect(clock.armed).toBeNull();
  });

  it("a chunk that stops the voice is not re-armed", () => {
    const clock = new VirtualClock();
    const v = new CountingVoice(clock, params(48000), 480);
    v.onEachChunk = () => {
      if (v.chunks === 2) v.stop();
    };
    v.start();
    clock.advanceTo(1e9);
    expect(v.chunks).toBe(2);
    expect(clock.pendingTimers).toBe(0);
  });

  it("latencyBytes is 0 for a paced voice", () => {
    expect(new CountingVoice(new VirtualClock(), params(48000), 480).latencyBytes()).toBe(0);
  });

  it("clock timers are reused: one timer per voice", () => {
    const clock = new VirtualClock();
    const voices = Array.from({ length: 3 }, () => new CountingVoice(clock, params(48000), 480));
    for (const v of voices) v.start();
    clock.advanceTo(1e9);
    expect(clock.pendingTimers).toBe(3);
    expect(voices.map((v) => v.chunks)).toEqual([100, 100, 100]);
    // All three ran at each deadline, in start order (ties keep arming order).
    expect(voices[0]!.times).toEqual(voices[2]!.times);
  });
});
