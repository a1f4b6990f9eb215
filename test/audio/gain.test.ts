/**
 * GainBackend and applyGain: exactly what a dB scale promises on every
 * format the device offers (round half away from zero, clamped), silence on
 * mute, untouched bytes at unity, per channel, across reads of any length,
 * both directions.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { AudioBackend, InputSink, OutputSource, Voice } from "../../src/audio/backend.js";
import { linearToALaw, linearToMuLaw } from "../../src/audio/convert.js";
import { GainBackend, applyGain, dbToGain, gainSupported } from "../../src/audio/gain.js";
import type { PcmParams } from "../../src/audio/pcm-params.js";
import { DEFAULT_FORMATS } from "../../src/device/config.js";
import * as C from "../../src/spec/constants.js";

/** A backend that lets the test pull from output voices and push into input voices. */
class Tap implements AudioBackend {
  readonly name = "tap";
  source: OutputSource | null = null;
  sink: InputSink | null = null;
  openOutput(_id: number, _p: PcmParams, source: OutputSource): Voice {
    this.source = source;
    return voice;
  }
  openInput(_id: number, _p: PcmParams, sink: InputSink): Voice {
    this.sink = sink;
    return voice;
  }
}
const voice: Voice = { start() {}, stop() {}, close() {}, latencyBytes: () => 0 };

function params(format: number, channels: number, direction = C.VIRTIO_SND_D_OUTPUT): PcmParams {
  return { direction, format, channels, rate: 48000, bufferBytes: 4096, periodBytes: 1024, features: 0 };
}

/** A source that hands out `data` in the order asked. */
function sourceOf(data: Uint8Array): OutputSource {
  let at = 0;
  return {
    read(dest, offset, length) {
      const n = Math.min(length, data.length - at);
      dest.set(data.subarray(at, at + n), offset);
      at += n;
      return n;
    },
    fail() {},
  };
}

/** Plays `data` through a GainBackend with `gains`, in reads of `chunk` bytes; returns what the inner backend got. */
function play(format: number, channels: number, data: Uint8Array, gains: number[], chunk = 64): Uint8Array {
  const tap = new Tap();
  const gain = new GainBackend(tap);
  gain.setGain(0, gains);
  gain.openOutput(0, params(format, channels), sourceOf(data));
  const out = new Uint8Array(data.length);
  for (let at = 0; at < data.length;) at += tap.source!.read(out, at, Math.min(chunk, data.length - at));
  return out;
}

const roundHalfAway = (y: number): number => Math.sign(y) * Math.floor(Math.abs(y) + 0.5) + 0;
const clamp = (v: number, bits: number): number =>
  Math.min(2 ** (bits - 1) - 1, Math.max(-(2 ** (bits - 1)), v));

function s16(values: number[]): Uint8Array {
  return new Uint8Array(Int16Array.from(values).buffer);
}
function readS16(bytes: Uint8Array): number[] {
  return Array.from(new Int16Array(bytes.buffer, bytes.byteOffset, bytes.length / 2));
}

function noise(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed || 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

const ALL_FORMATS = Array.from({ length: C.VIRTIO_SND_PCM_FMT_COUNT }, (_, f) => f).filter(gainSupported);

describe("applyGain and GainBackend", () => {
  it("covers every format the device offers by default, and the rest of the linear and G.711 ones", () => {
    for (const f of DEFAULT_FORMATS) expect(gainSupported(f), `format ${f}`).toBe(true);
    expect(ALL_FORMATS.length).toBe(20);
  });

  it.each(ALL_FORMATS)("unity gain passes format %i through bit for bit", (format) => {
    const data = noise(24 * 8 * 3, format + 7);
    expect(Buffer.from(play(format, 2, data, [1, 1], 50)).equals(Buffer.from(data))).toBe(true);
    expect(Buffer.from(play(format, 2, data, [], 50)).equals(Buffer.from(data))).toBe(true);
  });

  it("-6 dB on S16: every sample times 10^(-6/20), rounded half away from zero", () => {
    const g = dbToGain(-6);
    expect(g).toBeCloseTo(0.501187, 6);
    const values = [0, 1, -1, 2, -2, 3, -3, 1000, -1000, 32767, -32768, 12345, -12345];
    const out = readS16(play(C.VIRTIO_SND_PCM_FMT_S16, 1, s16(values), [g]));
    expect(out).toEqual(values.map((v) => roundHalfAway(v * g)));
    // A waveform and its negation stay each other's negation (except where -32768 has no partner).
    expect(out[7]).toBe(-out[8]!);
  });

  it("S16 for any value and any dB from -60 to +12: round(v * g), clamped", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: -32768, max: 32767 }), { minLength: 2, maxLength: 64 }),
        fc.integer({ min: -120, max: 24 }),
        (values, halfDb) => {
          if (values.length % 2) values.pop();
          const g = dbToGain(halfDb / 2);
          const out = readS16(play(C.VIRTIO_SND_PCM_FMT_S16, 2, s16(values), [g, g], 6));
          expect(out).toEqual(values.map((v) => clamp(roundHalfAway(v * g), 16)));
        },
      ),
    );
  });

  it("clamps at the format's range", () => {
    const out = readS16(play(C.VIRTIO_SND_PCM_FMT_S16, 1, s16([30000, -30000, 20000]), [2]));
    expect(out).toEqual([32767, -32768, 32767]);
  });

  it("per channel: each channel its own member (channel c takes gains[c % n]), across odd reads", () => {
    const frames = Array.from({ length: 30 }, (_, i) => [1000 + i, -2000 - i, 3000 + i]).flat();
    const out = readS16(play(C.VIRTIO_SND_PCM_FMT_S16, 3, s16(frames), [0.5, 0], 10));
    frames.forEach((v, i) => {
      const g = [0.5, 0, 0.5][i % 3]!;
      expect(out[i], `sample ${i}`).toBe(roundHalfAway(v * g) || 0);
    });
  });

  it("unsigned formats scale about their midpoint; mute is each format's silence", () => {
    const u8 = play(C.VIRTIO_SND_PCM_FMT_U8, 1, Uint8Array.from([0x80, 0xff, 0x00, 0x90]), [0.5]);
    expect(Array.from(u8)).toEqual([0x80, 0x80 + 64, 0x80 - 64, 0x80 + 8]);
    const silence: Record<number, number[]> = {
      [C.VIRTIO_SND_PCM_FMT_U8]: [0x80],
      [C.VIRTIO_SND_PCM_FMT_U16]: [0, 0x80],
      [C.VIRTIO_SND_PCM_FMT_U24_3]: [0, 0, 0x80],
      [C.VIRTIO_SND_PCM_FMT_U24]: [0, 0, 0x80, 0],
      [C.VIRTIO_SND_PCM_FMT_U32]: [0, 0, 0, 0x80],
      [C.VIRTIO_SND_PCM_FMT_S24]: [0, 0, 0, 0],
      [C.VIRTIO_SND_PCM_FMT_MU_LAW]: [linearToMuLaw(0)],
      [C.VIRTIO_SND_PCM_FMT_A_LAW]: [linearToALaw(0)],
    };
    for (const [format, pattern] of Object.entries(silence)) {
      const data = noise(pattern.length * 16, 3);
      const out = play(Number(format), 2, data, [0, 0]);
      expect(Array.from(out), `format ${format}`).toEqual(Array.from({ length: 16 }, () => pattern).flat());
    }
    // Floats: zero (the sign of -0 does not matter to anyone listening).
    const f = new Float32Array([0.5, -0.25, 1.5, -2]);
    const muted = new Float32Array(play(C.VIRTIO_SND_PCM_FMT_FLOAT, 2, new Uint8Array(f.buffer), [0]).buffer);
    expect(Array.from(muted).map(Math.abs)).toEqual([0, 0, 0, 0]);
  });

  it("24-bit in 4 bytes: the low 24 bits count, written back sign-extended", () => {
    const v = new DataView(new ArrayBuffer(8));
    v.setInt32(0, -0x400000, true);
    v.setUint32(4, 0x7f_7fffff, true); // junk in the top byte is ignored: 0x7fffff
    const out = new DataView(play(C.VIRTIO_SND_PCM_FMT_S24, 2, new Uint8Array(v.buffer), [0.5]).buffer);
    expect(out.getInt32(0, true)).toBe(-0x200000);
    expect(out.getInt32(4, true)).toBe(roundHalfAway(0x7fffff * 0.5));
  });

  it("FLOAT is scaled in float32 and never clamped; FLOAT64 in float64", () => {
    const f = new Float32Array([0.3, -0.7, 1.5, 1e-3]);
    const out = new Float32Array(
      play(C.VIRTIO_SND_PCM_FMT_FLOAT, 2, new Uint8Array(f.slice().buffer), [2]).buffer,
    );
    expect(Array.from(out)).toEqual(Array.from(f).map((x) => Math.fround(x * 2)));
    const d = new Float64Array([0.3, -0.7]);
    const g = dbToGain(-6);
    const out64 = new Float64Array(
      play(C.VIRTIO_SND_PCM_FMT_FLOAT64, 2, new Uint8Array(d.slice().buffer), [g]).buffer,
    );
    expect(Array.from(out64)).toEqual([0.3 * g, -0.7 * g]);
  });

  it("a gain set mid-stream applies from the next read, on the right channel", () => {
    const tap = new Tap();
    const gain = new GainBackend(tap);
    const data = s16(Array.from({ length: 12 }, () => 1000));
    gain.openOutput(3, params(C.VIRTIO_SND_PCM_FMT_S16, 2), sourceOf(data));
    const out = new Uint8Array(data.length);
    expect(tap.source!.read(out, 0, 6)).toBe(6); // three samples: L R L
    gain.setGain(3, [1, 0]);
    tap.source!.read(out, 6, 18);
    expect(readS16(out)).toEqual([1000, 1000, 1000, 0, 1000, 0, 1000, 0, 1000, 0, 1000, 0]);
    expect(gain.gain(3)).toEqual([1, 0]);
    expect(gain.gain(4)).toEqual([]);
  });

  it("input streams: the guest gets the captured samples scaled; the backend's buffer is left alone", () => {
    const tap = new Tap();
    const gain = new GainBackend(tap);
    gain.setGain(1, [0.5]);
    const got: number[] = [];
    gain.openInput(1, params(C.VIRTIO_SND_PCM_FMT_S16, 2, C.VIRTIO_SND_D_INPUT), {
      write: (src, offset, length) => {
        got.push(...readS16(src.slice(offset, offset + length)));
        return length;
      },
      fail() {},
    });
    const captured = s16([1000, -1001, 3, -3]);
    expect(tap.sink!.write(captured, 0, captured.length)).toBe(8);
    expect(got).toEqual([500, -501, 2, -2]);
    expect(readS16(captured)).toEqual([1000, -1001, 3, -3]);
  });

  it("the scaled source tells what is queued only when its own source does, and passes failures on", () => {
    const tap = new Tap();
    const gain = new GainBackend(tap);
    const failed: string[] = [];
    gain.openOutput(0, params(C.VIRTIO_SND_PCM_FMT_S16, 2), {
      read: () => 0,
      queuedBytes: () => 4096,
      fail: (e) => failed.push(e.message),
    });
    expect(tap.source!.queuedBytes?.()).toBe(4096);
    tap.source!.fail(new Error("device gone"));
    expect(failed).toEqual(["device gone"]);
    gain.openOutput(1, params(C.VIRTIO_SND_PCM_FMT_S16, 2), sourceOf(new Uint8Array(8)));
    // A voice that reads ahead plays differently when it cannot know: the wrapper must not pretend.
    expect(tap.source!.queuedBytes).toBeUndefined();
    gain.openInput(2, params(C.VIRTIO_SND_PCM_FMT_S16, 2, C.VIRTIO_SND_D_INPUT), {
      write: () => 0,
      fail: (e) => failed.push(`in: ${e.message}`),
    });
    tap.sink!.fail(new Error("source gone"));
    expect(failed).toEqual(["device gone", "in: source gone"]);
  });

  it("refuses a negative or non-finite gain; formats without linear samples pass unscaled", () => {
    const gain = new GainBackend(new Tap());
    expect(() => gain.setGain(0, [-1])).toThrow(expect.objectContaining({ code: "ERR_INVALID_CONFIG" }));
    expect(() => gain.setGain(0, [Infinity])).toThrow(/finite/);
    // DSD has no linear samples: it passes unscaled.
    const tap = new Tap();
    const dsd = new GainBackend(tap);
    dsd.setGain(0, [0]);
    const data = Uint8Array.from([0x69, 0x96, 0x55]);
    dsd.openOutput(0, params(C.VIRTIO_SND_PCM_FMT_DSD_U8, 1), sourceOf(data));
    const out = new Uint8Array(3);
    expect(tap.source!.read(out, 0, 3)).toBe(3);
    expect(Array.from(out)).toEqual([0x69, 0x96, 0x55]);
    expect(() => applyGain(99, 1, new Uint8Array(2), 0, 2, [0.5])).toThrow(/unknown sample format/);
    expect(dbToGain(-Infinity)).toBe(0);
    expect(dbToGain(0)).toBe(1);
  });
});
