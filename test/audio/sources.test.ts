import { describe, expect, it } from "vitest";
import { isConvertible } from "../../src/audio/convert.js";
import { silencePattern } from "../../src/audio/pcm-params.js";
import {
  BytesSource,
  type CaptureParams,
  type CaptureReader,
  SilenceSource,
  ToneSource,
} from "../../src/audio/sources.js";
import { BackendError } from "../../src/errors.js";
import * as C from "../../src/spec/constants.js";

function fillIn(reader: CaptureReader, sizes: number[]): Uint8Array {
  const out = new Uint8Array(sizes.reduce((a, b) => a + b, 0)).fill(0xaa);
  let off = 0;
  for (const n of sizes) {
    reader.fill(out, off, n);
    off += n;
  }
  return out;
}

const S16_MONO_48K: CaptureParams = { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 1, rate: 48000 };

describe("SilenceSource", () => {
  it("fills each format's silence, in phase however the fills are cut", () => {
    for (let format = 0; format < C.VIRTIO_SND_PCM_FMT_COUNT; format++) {
      const pattern = silencePattern(format);
      const out = fillIn(new SilenceSource().open({ format, channels: 2, rate: 8000 }), [1, 2, 5, 11, 3, 26]);
      for (let i = 0; i < out.length; i++) expect(out[i]).toBe(pattern[i % pattern.length]);
    }
  });
});

describe("BytesSource", () => {
  it("gives its bytes, then silence, however the fills are cut, from the top at each open", () => {
    const data = Uint8Array.from({ length: 10_001 }, (_, i) => (i * 7 + 1) & 0xff);
    const src = new BytesSource(data);
    const p = { format: C.VIRTIO_SND_PCM_FMT_U16, channels: 1, rate: 8000 };
    const out = fillIn(src.open(p), [3, 9000, 1, 1, 1000, 11]);
    expect(Buffer.from(out.subarray(0, data.length)).equals(Buffer.from(data))).toBe(true);
    // U16 silence is 0x00 0x80, in phase with the stream (byte 10001 is the high byte of a sample).
    expect([...out.subarray(data.length, data.length + 4)]).toEqual([0x80, 0x00, 0x80, 0x00]);
    expect([...fillIn(src.open(p), [4])]).toEqual([...data.subarray(0, 4)]);
  });

  it("converts when given the data's format and the stream's differs", () => {
    const data = Uint8Array.from([0x00, 0x7f, 0x80, 0xff]); // S8: 0, 127, -128, -1
    const src = new BytesSource(data, { format: C.VIRTIO_SND_PCM_FMT_S8, channels: 1, rate: 8000 });
    const out = fillIn(src.open({ format: C.VIRTIO_SND_PCM_FMT_S16, channels: 1, rate: 8000 }), [3, 5, 4]);
    expect([...out]).toEqual([0x00, 0x00, 0x00, 0x7f, 0x00, 0x80, 0x00, 0xff, 0, 0, 0, 0]);
    // Same spec: byte for byte.
    expect([...fillIn(src.open({ format: C.VIRTIO_SND_PCM_FMT_S8, channels: 1, rate: 8000 }), [5])]).toEqual([
      0x00, 0x7f, 0x80, 0xff, 0x00,
    ]);
  });

  it("refuses (NOT_SUPP) a conversion it cannot make", () => {
    const src = new BytesSource(new Uint8Array(4), {
      format: C.VIRTIO_SND_PCM_FMT_S16,
      channels: 1,
      rate: 8000,
    });
    expect(() => src.open({ format: C.VIRTIO_SND_PCM_FMT_DSD_U8, channels: 1, rate: 8000 })).toThrow(
      expect.objectContaining({ code: "ERR_BACKEND_NOT_SUPPORTED" }),
    );
  });
});

/** Goertzel power of `x` at frequency f (Hz). */
function power(x: Float64Array, f: number, rate: number): number {
  const w = (2 * Math.PI * f) / rate;
  const k = 2 * Math.cos(w);
  let s1 = 0;
  let s2 = 0;
  for (const v of x) {
    const s = v + k * s1 - s2;
    s2 = s1;
    s1 = s;
  }
  return (s1 * s1 + s2 * s2 - k * s1 * s2) / (x.length * x.length);
}

describe("ToneSource", () => {
  it("makes a sine of the asked frequency and level (S16, 1 kHz at 48 kHz)", () => {
    const out = fillIn(new ToneSource({ frequency: 1000, level: 0.5 }).open(S16_MONO_48K), [96_000]);
    const dv = new DataView(out.buffer);
    const x = Float64Array.from({ length: 48_000 }, (_, i) => dv.getInt16(i * 2, true) / 32768);
    // 1000 cycles in one second: 2000 sign changes.
    let crossings = 0;
    for (let i = 1; i < x.length; i++) if (x[i - 1]! < 0 !== x[i]! < 0) crossings++;
    expect(Math.abs(crossings - 2000)).toBeLessThanOrEqual(1);
    expect(Math.max(...x)).toBeCloseTo(0.5, 4);
    expect(Math.min(...x)).toBeCloseTo(-0.5, 4);
    // All the power is at 1 kHz (amplitude 0.5: power 0.0625), none at 900 Hz or 2 kHz.
    expect(power(x, 1000, 48000)).toBeCloseTo(0.0625, 4);
    expect(power(x, 900, 48000)).toBeLessThan(1e-8);
    expect(power(x, 2000, 48000)).toBeLessThan(1e-8);
  });

  it("is exactly level x sin(2 pi f n / rate) in FLOAT64, on every channel, however the fills are cut", () => {
    const p = { format: C.VIRTIO_SND_PCM_FMT_FLOAT64, channels: 3, rate: 44100 };
    const tone = new ToneSource({ frequency: 440.5, level: 0.8 });
    const a = fillIn(tone.open(p), [24 * 5000]);
    const b = fillIn(tone.open(p), [1, 23, 7, 100_000, 19_969]);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
    const dv = new DataView(a.buffer);
    for (const n of [0, 1, 100, 4095, 4096, 4097, 4999]) {
      const want = 0.8 * Math.sin((2 * Math.PI * ((n * 440.5) % 44100)) / 44100);
      for (let c = 0; c < 3; c++) expect(dv.getFloat64((n * 3 + c) * 8, true)).toBeCloseTo(want, 12);
    }
  });

  it("produces every convertible format, with the right size, and refuses the others (NOT_SUPP)", () => {
    for (let format = 0; format < C.VIRTIO_SND_PCM_FMT_COUNT; format++) {
      const p = { format, channels: 2, rate: 8000 };
      if (isConvertible(format)) {
        const out = fillIn(new ToneSource().open(p), [1000]);
        expect(out.some((b) => b !== 0xaa)).toBe(true);
      } else {
        expect(() => new ToneSource().open(p)).toThrow(BackendError);
      }
    }
  });

  it("validates its options", () => {
    expect(() => new ToneSource({ frequency: -1 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_CONFIG" }),
    );
    expect(() => new ToneSource({ frequency: Number.NaN })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_CONFIG" }),
    );
    expect(() => new ToneSource({ level: 1.5 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_CONFIG" }),
    );
    expect(new ToneSource()).toMatchObject({ frequency: 440, level: 0.5 });
  });
});
