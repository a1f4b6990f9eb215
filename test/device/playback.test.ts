import { describe, expect, it } from "vitest";
import { VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_S_OK } from "../../src/spec/constants.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { play, record } from "../../src/driver/pcm-session.js";
import { signal } from "../signal.js";

const S16_STEREO_48K = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000 as const, channels: 2 };
const PERIOD_10MS = 1920; // 480 frames x 4 bytes
const MS = 1_000_000;

const variants = [
  { name: "split ring", packed: false, eventIdx: true, indirect: false },
  { name: "split ring, no EVENT_IDX", packed: false, eventIdx: false, indirect: false },
  { name: "split ring, indirect", packed: false, eventIdx: true, indirect: true },
  { name: "packed ring", packed: true, eventIdx: true, indirect: false },
  { name: "packed ring, no EVENT_IDX, indirect", packed: true, eventIdx: false, indirect: true },
];

describe.each(variants)("one second of 48 kHz S16 stereo ($name)", (v) => {
  it("plays exactly 192,000 bytes, in order, each period completing at its time", () => {
    const guest = new SimulatedGuest({ ...v, backend: { log: true } });
    guest.init();
    guest.probe();
    const input = signal(192_000);
    const r = play(
      guest,
      0,
      input,
      { ...S16_STEREO_48K, periodBytes: PERIOD_10MS, periods: 4 },
      { splitData: true },
    );

    const pb = guest.backend.playbacksOf(0);
    expect(pb).toHaveLength(1);
    expect(pb[0]!.data.length).toBe(192_000);
    expect(Buffer.from(pb[0]!.data.bytes()).equals(Buffer.from(input))).toBe(true);
    expect(pb[0]!.underruns).toBe(0);

    // 100 periods, the k-th completing when its last frame has been played: START + (k+1) x 10 ms.
    expect(r.completions).toHaveLength(100);
    r.completions.forEach((c, k) => {
      expect(c.time - r.startTime).toBe((k + 1) * 10 * MS);
      expect(c.status).toBe(VIRTIO_SND_S_OK);
      expect(c.used).toBe(8);
      expect(c.latency).toBe(0);
    });
    expect(guest.needsReset).toBeNull();
    expect(guest.pendingCount(false)).toBe(0);
  });

  it("captures exactly 192,000 bytes of the source, in order, each period at its time", () => {
    const source = signal(192_000, 7);
    const guest = new SimulatedGuest({ ...v, backend: { input: () => source } });
    guest.init();
    guest.probe();
    const r = record(guest, 1, 192_000, { ...S16_STEREO_48K, periodBytes: PERIOD_10MS, periods: 4 });
    expect(Buffer.from(r.data).equals(Buffer.from(source))).toBe(true);
    expect(r.completions.length).toBeGreaterThanOrEqual(100);
    r.completions.slice(0, 100).forEach((c, k) => {
      expect(c.time - r.startTime).toBe((k + 1) * 10 * MS);
      expect(c.status).toBe(VIRTIO_SND_S_OK);
      expect(c.used).toBe(8 + PERIOD_10MS);
    });
    expect(guest.backend.capturesOf(1)[0]!.overruns).toBe(0);
    expect(guest.needsReset).toBeNull();
  });
});
