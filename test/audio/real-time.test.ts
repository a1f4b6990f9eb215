import { describe, expect, it } from "vitest";
import type { OutputSource } from "../../src/audio/backend.js";
import { NS_PER_SECOND, RealTimeClock } from "../../src/audio/clock.js";
import { NullBackend } from "../../src/audio/null-backend.js";
import { VIRTIO_SND_D_OUTPUT, VIRTIO_SND_PCM_FMT_S16 } from "../../src/spec/constants.js";

/**
 * One short run on the host's monotonic clock. A loaded machine can only make
 * timers late, and a late voice catches up by deadline: so the voice never
 * gets ahead of the clock, and once it has run it has consumed whole periods.
 * Nothing here asserts how late a timer may be.
 */
describe("a voice paced by the real clock", () => {
  it("consumes audio at the stream's rate, never ahead of the clock", async () => {
    const clock = new RealTimeClock();
    const backend = new NullBackend({ clock });
    let bytes = 0;
    const source: OutputSource = {
      read: (_d, _o, length) => {
        bytes += length;
        return length;
      },
      fail: () => undefined,
    };
    const rate = 48000;
    const periodBytes = 480 * 4; // 10 ms of S16 stereo
    const voice = backend.openOutput(
      0,
      {
        direction: VIRTIO_SND_D_OUTPUT,
        format: VIRTIO_SND_PCM_FMT_S16,
        rate,
        channels: 2,
        bufferBytes: 4 * periodBytes,
        periodBytes,
        features: 0,
      },
      source,
    );
    const start = clock.now();
    voice.start();
    const checks: { elapsed: number; frames: number }[] = [];
    for (let i = 0; i < 10; i++) {
      await new Promise((r) => setTimeout(r, 25));
      checks.push({ elapsed: clock.now() - start, frames: bytes / 4 });
    }
    voice.close();
    for (const c of checks) {
      // Never ahead: the frames consumed are at most what the elapsed time allows.
      expect(c.frames).toBeLessThanOrEqual((c.elapsed * rate) / NS_PER_SECOND);
      expect(c.frames % 480).toBe(0);
    }
    // And it did run: 250 ms of waiting leaves at least one period played.
    expect(checks.at(-1)!.frames).toBeGreaterThan(0);
  });
});
