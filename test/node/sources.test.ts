import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { convertBuffer } from "../../src/audio/convert.js";
import { NullBackend } from "../../src/audio/null-backend.js";
import { WavSource } from "../../src/node/sources.js";
import { WavWriter } from "../../src/node/wav.js";
import * as C from "../../src/spec/constants.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { record } from "../../src/driver/pcm-session.js";
import { intSample, intSample32, sox, soxAvailable, tempDir, testSignal } from "./wav-helpers.js";
import { missing } from "../guest-helpers/required-parts.js";

const noSox = missing("sox", soxAvailable() ? null : "sox is not installed");

let tmp: ReturnType<typeof tempDir>;
let stereo16: string;
let input: Uint8Array;
const FRAMES = 4800; // 100 ms at 48 kHz

beforeAll(() => {
  tmp = tempDir("wav-source-");
  stereo16 = join(tmp.path, "in.wav");
  input = testSignal(C.VIRTIO_SND_PCM_FMT_S16, 2, FRAMES, 5);
  const w = new WavWriter(stereo16, { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000 });
  w.write(input);
  w.close();
});
afterAll(() => tmp.remove());

function take(
  src: WavSource,
  p: { format: number; channels: number; rate: number },
  sizes: number[],
): Uint8Array {
  const reader = src.open(p);
  const total = sizes.reduce((a, b) => a + b, 0);
  const out = new Uint8Array(total).fill(0xaa);
  let off = 0;
  for (const n of sizes) {
    reader.fill(out, off, n);
    off += n;
  }
  return out;
}

describe("WavSource", () => {
  it("delivers the file's samples from the first frame, then silence, for a stream of the same format", () => {
    const src = new WavSource(stereo16);
    expect(src.wav.frames).toBe(FRAMES);
    const p = { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000 };
    const out = take(src, p, [1920, 7, 1913, ...Array<number>(12).fill(1920)]);
    expect(Buffer.from(out.subarray(0, input.length)).equals(Buffer.from(input))).toBe(true);
    expect(out.subarray(input.length).every((b) => b === 0)).toBe(true);
    // Each open (each PREPARE) starts again from the top.
    expect(Buffer.from(take(src, p, [100])).equals(Buffer.from(input.subarray(0, 100)))).toBe(true);
  });

  it("converts to the stream's format exactly when only the sample format differs (S16 -> S32, U8)", () => {
    const src = new WavSource(stereo16);
    const s32 = take(src, { format: C.VIRTIO_SND_PCM_FMT_S32, channels: 2, rate: 48000 }, [FRAMES * 8 + 800]);
    for (let i = 0; i < FRAMES * 2; i++)
      if (intSample32(C.VIRTIO_SND_PCM_FMT_S32, s32, i) !== intSample32(C.VIRTIO_SND_PCM_FMT_S16, input, i))
        expect.fail(`sample ${i}`);
    expect(s32.subarray(FRAMES * 8).every((b) => b === 0)).toBe(true);
    const u8 = take(src, { format: C.VIRTIO_SND_PCM_FMT_U8, channels: 2, rate: 48000 }, [FRAMES * 2 + 10]);
    for (let i = 0; i < FRAMES * 2; i++)
      expect(intSample(C.VIRTIO_SND_PCM_FMT_U8, u8, i)).toBe(
        intSample(C.VIRTIO_SND_PCM_FMT_S16, input, i) >> 8,
      );
    expect(u8.subarray(FRAMES * 2).every((b) => b === 0x80)).toBe(true); // U8 silence
  });

  it("converts channels and rate: mono to stereo duplicates, 48 kHz to 16 kHz gives a third of the frames", () => {
    const mono = join(tmp.path, "mono.wav");
    const m = testSignal(C.VIRTIO_SND_PCM_FMT_S16, 1, 1000, 6);
    const w = new WavWriter(mono, { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 1, rate: 48000 });
    w.write(m);
    w.close();
    const st = take(
      new WavSource(mono),
      { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000 },
      [4000, 400],
    );
    for (let f = 0; f < 1000; f++) {
      const v = intSample(C.VIRTIO_SND_PCM_FMT_S16, m, f);
      expect([
        intSample(C.VIRTIO_SND_PCM_FMT_S16, st, 2 * f),
        intSample(C.VIRTIO_SND_PCM_FMT_S16, st, 2 * f + 1),
      ]).toEqual([v, v]);
    }
    expect(st.subarray(4000).every((b) => b === 0)).toBe(true);

    // Resampled in blocks, it must equal a whole-buffer conversion, then silence.
    const to = { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 16000 };
    const whole = convertBuffer(input, { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000 }, to);
    expect(whole.length).toBe((FRAMES / 3) * 4);
    const got = take(new WavSource(stereo16), to, [640, 3, 637, ...Array<number>(10).fill(640)]);
    expect(Buffer.from(got.subarray(0, whole.length)).equals(Buffer.from(whole))).toBe(true);
    expect(got.subarray(whole.length).every((b) => b === 0)).toBe(true);
  });

  it.skipIf(noSox)("reads a file SoX made (24-bit) into an S24 stream", () => {
    const path = join(tmp.path, "sox24.wav");
    sox("-D", "-n", "-r", "44100", "-c", "1", "-b", "24", path, "synth", "0.01", "sine", "1000");
    const src = new WavSource(path);
    expect(src.wav.format).toBe(C.VIRTIO_SND_PCM_FMT_S24_3);
    const out = take(src, { format: C.VIRTIO_SND_PCM_FMT_S24, channels: 1, rate: 44100 }, [441 * 4]);
    for (let i = 0; i < 441; i++)
      expect(intSample(C.VIRTIO_SND_PCM_FMT_S24, out, i)).toBe(
        intSample(C.VIRTIO_SND_PCM_FMT_S24_3, src.wav.data, i),
      );
  });

  it("fails at once, with ERR_INVALID_CONFIG, on a file that is not WAV", () => {
    const bad = join(tmp.path, "bad.wav");
    writeFileSync(bad, "not a wav file at all");
    expect(() => new WavSource(bad)).toThrow(expect.objectContaining({ code: "ERR_INVALID_CONFIG" }));
    expect(() => new WavSource(join(tmp.path, "missing.wav"))).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_CONFIG" }),
    );
  });

  it("a stream records the file through the device, then silence", () => {
    const guest = new SimulatedGuest({
      audioBackend: (clock) => new NullBackend({ clock, input: new WavSource(stereo16) }),
    });
    guest.init();
    guest.probe();
    const bytes = input.length + 4 * 1920;
    const r = record(guest, 1, bytes, {
      format: C.VIRTIO_SND_PCM_FMT_S16,
      rate: 48000,
      channels: 2,
      periodBytes: 1920,
      periods: 4,
    });
    expect(Buffer.from(r.data.subarray(0, input.length)).equals(Buffer.from(input))).toBe(true);
    expect(r.data.subarray(input.length).every((b) => b === 0)).toBe(true);
    expect(r.completions.every((c) => c.status === C.VIRTIO_SND_S_OK)).toBe(true);
  });
});
