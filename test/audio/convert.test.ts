import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  type PcmFormatSpec,
  Resampler,
  StreamConverter,
  aLawToLinear,
  convertBuffer,
  downmixToStereo,
  isConvertible,
  linearToALaw,
  linearToMuLaw,
  muLawToLinear,
} from "../../src/audio/convert.js";
import { silencePattern } from "../../src/audio/pcm-params.js";
import {
  VIRTIO_SND_PCM_FMT_A_LAW,
  VIRTIO_SND_PCM_FMT_DSD_U8,
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_FMT_IMA_ADPCM,
  VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME,
  VIRTIO_SND_PCM_FMT_MU_LAW,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S18_3,
  VIRTIO_SND_PCM_FMT_S20,
  VIRTIO_SND_PCM_FMT_S20_3,
  VIRTIO_SND_PCM_FMT_S24,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_S8,
  VIRTIO_SND_PCM_FMT_U16,
  VIRTIO_SND_PCM_FMT_U18_3,
  VIRTIO_SND_PCM_FMT_U20,
  VIRTIO_SND_PCM_FMT_U20_3,
  VIRTIO_SND_PCM_FMT_U24,
  VIRTIO_SND_PCM_FMT_U24_3,
  VIRTIO_SND_PCM_FMT_U32,
  VIRTIO_SND_PCM_FMT_U8,
} from "../../src/spec/constants.js";

// ---------------------------------------------------------------------------
// Independent reference encoders for the integer formats (the test's own model).

interface IntFormat {
  readonly name: string;
  readonly format: number;
  readonly bytes: number;
  readonly bits: number;
  readonly signed: boolean;
}

const INT_FORMATS: readonly IntFormat[] = [
  { name: "S8", format: VIRTIO_SND_PCM_FMT_S8, bytes: 1, bits: 8, signed: true },
  { name: "U8", format: VIRTIO_SND_PCM_FMT_U8, bytes: 1, bits: 8, signed: false },
  { name: "S16", format: VIRTIO_SND_PCM_FMT_S16, bytes: 2, bits: 16, signed: true },
  { name: "U16", format: VIRTIO_SND_PCM_FMT_U16, bytes: 2, bits: 16, signed: false },
  { name: "S18_3", format: VIRTIO_SND_PCM_FMT_S18_3, bytes: 3, bits: 18, signed: true },
  { name: "U18_3", format: VIRTIO_SND_PCM_FMT_U18_3, bytes: 3, bits: 18, signed: false },
  { name: "S20_3", format: VIRTIO_SND_PCM_FMT_S20_3, bytes: 3, bits: 20, signed: true },
  { name: "U20_3", format: VIRTIO_SND_PCM_FMT_U20_3, bytes: 3, bits: 20, signed: false },
  { name: "S24_3", format: VIRTIO_SND_PCM_FMT_S24_3, bytes: 3, bits: 24, signed: true },
  { name: "U24_3", format: VIRTIO_SND_PCM_FMT_U24_3, bytes: 3, bits: 24, signed: false },
  { name: "S20", format: VIRTIO_SND_PCM_FMT_S20, bytes: 4, bits: 20, signed: true },
  { name: "U20", format: VIRTIO_SND_PCM_FMT_U20, bytes: 4, bits: 20, signed: false },
  { name: "S24", format: VIRTIO_SND_PCM_FMT_S24, bytes: 4, bits: 24, signed: true },
  { name: "U24", format: VIRTIO_SND_PCM_FMT_U24, bytes: 4, bits: 24, signed: false },
  { name: "S32", format: VIRTIO_SND_PCM_FMT_S32, bytes: 4, bits: 32, signed: true },
  { name: "U32", format: VIRTIO_SND_PCM_FMT_U32, bytes: 4, bits: 32, signed: false },
];

/** Canonical bytes of signed sample values (sign-extended / zero-extended to the container). */
function pack(f: IntFormat, values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * f.bytes);
  values.forEach((v, i) => {
    // As an unsigned integer of 8*bytes bits: two's complement for signed formats.
    let u = f.signed ? v : v + 2 ** (f.bits - 1);
    if (u < 0) u += 2 ** (8 * f.bytes);
    for (let b = 0; b < f.bytes; b++) out[i * f.bytes + b] = Math.floor(u / 2 ** (8 * b)) % 256;
  });
  return out;
}

/** Signed values of samples, reading the low `bits` bits only. */
function unpack(f: IntFormat, bytes: Uint8Array): number[] {
  const values: number[] = [];
  for (let i = 0; i < bytes.length; i += f.bytes) {
    let u = 0;
    for (let b = 0; b < f.bytes; b++) u += bytes[i + b]! * 2 ** (8 * b);
    u %= 2 ** f.bits;
    values.push(f.signed ? (u >= 2 ** (f.bits - 1) ? u - 2 ** f.bits : u) : u - 2 ** (f.bits - 1));
  }
  return values;
}

function sampleArb(f: IntFormat): fc.Arbitrary<number> {
  return fc.integer({ min: -(2 ** (f.bits - 1)), max: 2 ** (f.bits - 1) - 1 });
}

function edges(f: IntFormat): number[] {
  const h = 2 ** (f.bits - 1);
  return [-h, -h + 1, -1, 0, 1, h - 2, h - 1];
}

const mono = (format: number, rate = 48000): PcmFormatSpec => ({ format, channels: 1, rate });
const spec = (format: number, channels: number, rate = 48000): PcmFormatSpec => ({ format, channels, rate });

function f32Bytes(values: readonly number[]): Uint8Array {
  const out = new Uint8Array(values.length * 4);
  const dv = new DataView(out.buffer);
  values.forEach((v, i) => dv.setFloat32(i * 4, v, true));
  return out;
}

function f64Bytes(values: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(values.length * 8);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) dv.setFloat64(i * 8, values[i]!, true);
  return out;
}

function readF32(bytes: Uint8Array): number[] {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: bytes.length / 4 }, (_, i) => dv.getFloat32(i * 4, true));
}

function readF64(bytes: Uint8Array): Float64Array {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Float64Array.from({ length: bytes.length / 8 }, (_, i) => dv.getFloat64(i * 8, true));
}

const hex = (...b: number[]) => new Uint8Array(b);

/** Pushes `input` in chunks of the given sizes (cycled; a zero-size push is allowed), then flushes. */
function pushInChunks(
  c: StreamConverter,
  input: Uint8Array,
  sizes: readonly number[],
  flush = true,
): Uint8Array {
  const parts: Uint8Array[] = [];
  let off = 0;
  for (let i = 0; off < input.length; i++) {
    const size = i % sizes.length === 0 ? Math.max(1, sizes[0]!) : sizes[i % sizes.length]!;
    parts.push(c.push(input.subarray(off, off + size)).slice());
    off += size;
  }
  if (flush) parts.push(c.flush().slice());
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  parts.reduce((at, p) => (out.set(p, at), at + p.length), 0);
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}
const S16 = INT_FORMATS[2]!;
const S32 = INT_FORMATS[14]!;

// ---------------------------------------------------------------------------

describe("isConvertible", () => {
  it("accepts the PCM formats and refuses ADPCM, DSD and IEC958", () => {
    for (let f = VIRTIO_SND_PCM_FMT_MU_LAW; f <= VIRTIO_SND_PCM_FMT_FLOAT64; f++)
      expect(isConvertible(f)).toBe(true);
    for (const f of [
      VIRTIO_SND_PCM_FMT_IMA_ADPCM,
      21,
      22,
      23,
      VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME,
      25,
      -1,
      1.5,
    ]) {
      expect(isConvertible(f)).toBe(false);
    }
  });

  it("refuses unconvertible specs with ERR_BACKEND_NOT_SUPPORTED", () => {
    const bad: [PcmFormatSpec, PcmFormatSpec][] = [
      [mono(VIRTIO_SND_PCM_FMT_DSD_U8), mono(VIRTIO_SND_PCM_FMT_S16)],
      [mono(VIRTIO_SND_PCM_FMT_S16), mono(VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME)],
      [mono(VIRTIO_SND_PCM_FMT_IMA_ADPCM), mono(VIRTIO_SND_PCM_FMT_IMA_ADPCM)], // half-byte frames
      [spec(VIRTIO_SND_PCM_FMT_S16, 0), spec(VIRTIO_SND_PCM_FMT_S16, 2)],
      [mono(VIRTIO_SND_PCM_FMT_S16, 0), mono(VIRTIO_SND_PCM_FMT_S16)],
      [mono(VIRTIO_SND_PCM_FMT_S16, 44100.5), mono(VIRTIO_SND_PCM_FMT_S16)],
    ];
    for (const [from, to] of bad) {
      expect(() => new StreamConverter(from, to)).toThrow(
        expect.objectContaining({ code: "ERR_BACKEND_NOT_SUPPORTED" }),
      );
    }
  });
});

describe("known values", () => {
  const one = (input: Uint8Array, from: number, to: number) => convertBuffer(input, mono(from), mono(to));

  it("S16 <-> FLOAT", () => {
    expect(readF32(one(hex(0x00, 0x80), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_FLOAT))).toEqual([-1]);
    expect(readF32(one(hex(0xff, 0x7f), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_FLOAT))).toEqual([
      32767 / 32768,
    ]);
    expect(readF32(one(hex(0x00, 0x40), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_FLOAT))).toEqual([0.5]);
    const f = (v: number) =>
      unpack(S16, one(f32Bytes([v]), VIRTIO_SND_PCM_FMT_FLOAT, VIRTIO_SND_PCM_FMT_S16))[0];
    expect(f(1)).toBe(32767); // clamps
    expect(f(-1)).toBe(-32768);
    expect(f(2)).toBe(32767);
    expect(f(-7)).toBe(-32768);
    expect(f(Infinity)).toBe(32767);
    expect(f(-Infinity)).toBe(-32768);
    expect(f(NaN)).toBe(0);
    expect(f(0.5)).toBe(16384);
    expect(f(1.4 / 32768)).toBe(1); // rounds to nearest
    expect(f(1.6 / 32768)).toBe(2);
    expect(f(-1.4 / 32768)).toBe(-1);
    expect(f(-1.6 / 32768)).toBe(-2);
    expect(f(1.5 / 32768)).toBe(2); // ties toward +infinity
    expect(f(-1.5 / 32768)).toBe(-1);
  });

  it("NaN becomes the format's zero, whatever the signedness", () => {
    expect(one(f32Bytes([NaN]), VIRTIO_SND_PCM_FMT_FLOAT, VIRTIO_SND_PCM_FMT_U16)).toEqual(hex(0x00, 0x80));
    expect(one(f32Bytes([NaN]), VIRTIO_SND_PCM_FMT_FLOAT, VIRTIO_SND_PCM_FMT_U32)).toEqual(
      hex(0, 0, 0, 0x80),
    );
    expect(one(f32Bytes([NaN]), VIRTIO_SND_PCM_FMT_FLOAT, VIRTIO_SND_PCM_FMT_U8)).toEqual(hex(0x80));
    expect(one(f32Bytes([NaN]), VIRTIO_SND_PCM_FMT_FLOAT, VIRTIO_SND_PCM_FMT_MU_LAW)).toEqual(hex(0xff));
  });

  it("8-bit formats", () => {
    expect(one(hex(0x80), VIRTIO_SND_PCM_FMT_U8, VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0, 0));
    expect(one(hex(0x00), VIRTIO_SND_PCM_FMT_U8, VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0x00, 0x80));
    expect(one(hex(0xff), VIRTIO_SND_PCM_FMT_U8, VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0x00, 0x7f));
    expect(one(hex(0x80), VIRTIO_SND_PCM_FMT_S8, VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0x00, 0x80));
    expect(one(hex(0x80), VIRTIO_SND_PCM_FMT_S8, VIRTIO_SND_PCM_FMT_U8)).toEqual(hex(0x00));
    expect(one(hex(0x7f), VIRTIO_SND_PCM_FMT_S8, VIRTIO_SND_PCM_FMT_U8)).toEqual(hex(0xff));
    expect(readF32(one(hex(0xc0), VIRTIO_SND_PCM_FMT_S8, VIRTIO_SND_PCM_FMT_FLOAT))).toEqual([-0.5]);
    expect(readF32(one(hex(0x40), VIRTIO_SND_PCM_FMT_U8, VIRTIO_SND_PCM_FMT_FLOAT))).toEqual([-0.5]);
  });

  it("16-bit unsigned", () => {
    expect(one(hex(0x00, 0x80), VIRTIO_SND_PCM_FMT_U16, VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0, 0));
    expect(one(hex(0x34, 0x12), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_U16)).toEqual(hex(0x34, 0x92));
  });

  it("3-byte formats: value in the low bits, sign-extended", () => {
    const s24_3 = (b: Uint8Array, to: number) => one(b, VIRTIO_SND_PCM_FMT_S24_3, to);
    expect(s24_3(hex(0x00, 0x00, 0x80), VIRTIO_SND_PCM_FMT_S32)).toEqual(hex(0, 0, 0, 0x80));
    expect(s24_3(hex(0xff, 0xff, 0x7f), VIRTIO_SND_PCM_FMT_S32)).toEqual(hex(0, 0xff, 0xff, 0x7f));
    expect(s24_3(hex(0x56, 0x34, 0x12), VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0x34, 0x12));
    expect(one(hex(0x00, 0x00, 0x80), VIRTIO_SND_PCM_FMT_U24_3, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0, 0, 0, 0),
    );
    // S20_3: bit 19 is the sign; bits 20-23 are ignored on input and sign-extended on output.
    expect(one(hex(0x00, 0x00, 0x08), VIRTIO_SND_PCM_FMT_S20_3, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0, 0, 0, 0x80),
    );
    expect(one(hex(0x00, 0x00, 0xf8), VIRTIO_SND_PCM_FMT_S20_3, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0, 0, 0, 0x80),
    );
    expect(one(hex(0x00, 0x00, 0x78), VIRTIO_SND_PCM_FMT_S20_3, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0, 0, 0, 0x80),
    );
    expect(one(hex(0xff, 0xff, 0x07), VIRTIO_SND_PCM_FMT_S20_3, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0, 0xf0, 0xff, 0x7f),
    );
    expect(one(hex(0x00, 0x00, 0x00, 0x80), VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_S20_3)).toEqual(
      hex(0, 0, 0xf8),
    );
    expect(one(hex(0x00, 0x00, 0x08), VIRTIO_SND_PCM_FMT_U20_3, VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0, 0));
    expect(one(hex(0x00, 0x00, 0x02), VIRTIO_SND_PCM_FMT_S18_3, VIRTIO_SND_PCM_FMT_S16)).toEqual(
      hex(0x00, 0x80),
    );
    expect(one(hex(0x00, 0x00, 0x02), VIRTIO_SND_PCM_FMT_U18_3, VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0, 0));
    expect(one(hex(0x00, 0x80), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_S18_3)).toEqual(hex(0, 0, 0xfe));
    expect(one(hex(0x00, 0x80), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_U18_3)).toEqual(hex(0, 0, 0));
  });

  it("4-byte containers: value in the low bits; upper bits ignored on input, extended on output", () => {
    // U24: 2^23 is zero.
    expect(one(hex(0x00, 0x00, 0x80, 0x00), VIRTIO_SND_PCM_FMT_U24, VIRTIO_SND_PCM_FMT_S16)).toEqual(
      hex(0, 0),
    );
    expect(one(hex(0x00, 0x00, 0x80, 0xff), VIRTIO_SND_PCM_FMT_U24, VIRTIO_SND_PCM_FMT_S16)).toEqual(
      hex(0, 0),
    );
    expect(one(hex(0x00, 0x00, 0x00, 0x00), VIRTIO_SND_PCM_FMT_U24, VIRTIO_SND_PCM_FMT_S16)).toEqual(
      hex(0, 0x80),
    );
    expect(one(hex(0x00, 0x00, 0x00, 0x80), VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_U24)).toEqual(
      hex(0, 0, 0, 0),
    );
    expect(one(hex(0xff, 0xff, 0xff, 0x7f), VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_U24)).toEqual(
      hex(0xff, 0xff, 0xff, 0x00),
    );
    // S24 with or without sign extension in the top byte.
    expect(one(hex(0x00, 0x00, 0x80, 0x00), VIRTIO_SND_PCM_FMT_S24, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0, 0, 0, 0x80),
    );
    expect(one(hex(0x00, 0x00, 0x80, 0xff), VIRTIO_SND_PCM_FMT_S24, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0, 0, 0, 0x80),
    );
    expect(one(hex(0x00, 0x00, 0x00, 0x80), VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_S24)).toEqual(
      hex(0, 0, 0x80, 0xff),
    );
    expect(one(hex(0x00, 0x00, 0x08, 0x00), VIRTIO_SND_PCM_FMT_S20, VIRTIO_SND_PCM_FMT_S16)).toEqual(
      hex(0, 0x80),
    );
    expect(one(hex(0x00, 0x80), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_S20)).toEqual(
      hex(0, 0, 0xf8, 0xff),
    );
    expect(one(hex(0x00, 0x80), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_U20)).toEqual(hex(0, 0, 0, 0));
    expect(one(hex(0xff, 0x7f), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_U20)).toEqual(
      hex(0xf0, 0xff, 0x0f, 0), // 32767 * 16 + 2^19 = 0xffff0,
    );
  });

  it("32-bit formats", () => {
    expect(one(hex(0, 0, 0, 0x80), VIRTIO_SND_PCM_FMT_U32, VIRTIO_SND_PCM_FMT_S16)).toEqual(hex(0, 0));
    expect(one(hex(0xff, 0xff, 0xff, 0xff), VIRTIO_SND_PCM_FMT_U32, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0xff, 0xff, 0xff, 0x7f),
    );
    expect(readF64(one(hex(0, 0, 0, 0x80), VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_FLOAT64))[0]).toBe(-1);
    expect(readF64(one(hex(1, 0, 0, 0), VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_FLOAT64))[0]).toBe(
      2 ** -31,
    );
    expect(one(f64Bytes([1]), VIRTIO_SND_PCM_FMT_FLOAT64, VIRTIO_SND_PCM_FMT_S32)).toEqual(
      hex(0xff, 0xff, 0xff, 0x7f),
    );
    expect(one(f64Bytes([1]), VIRTIO_SND_PCM_FMT_FLOAT64, VIRTIO_SND_PCM_FMT_U32)).toEqual(
      hex(0xff, 0xff, 0xff, 0xff),
    );
    expect(one(f64Bytes([-1]), VIRTIO_SND_PCM_FMT_FLOAT64, VIRTIO_SND_PCM_FMT_U32)).toEqual(hex(0, 0, 0, 0));
  });

  it("narrowing integers truncates toward negative infinity", () => {
    const s32ToS16 = (v: number) =>
      unpack(S16, one(pack(S32, [v]), VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_S16))[0];
    expect(s32ToS16(0x0001ffff)).toBe(1);
    expect(s32ToS16(-1)).toBe(-1);
    expect(s32ToS16(-65536)).toBe(-1);
    expect(s32ToS16(-65537)).toBe(-2);
    expect(s32ToS16(0x7fffffff)).toBe(32767);
    expect(one(hex(0xff), VIRTIO_SND_PCM_FMT_U8, VIRTIO_SND_PCM_FMT_S8)).toEqual(hex(0x7f));
    expect(one(hex(0xff, 0xff), VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_S8)).toEqual(hex(0xff));
  });

  it("FLOAT64 -> FLOAT rounds to the nearest float, FLOAT -> FLOAT64 is exact", () => {
    const x = 1 / 3;
    expect(readF32(one(f64Bytes([x]), VIRTIO_SND_PCM_FMT_FLOAT64, VIRTIO_SND_PCM_FMT_FLOAT))).toEqual([
      Math.fround(x),
    ]);
    expect(readF64(one(f32Bytes([x]), VIRTIO_SND_PCM_FMT_FLOAT, VIRTIO_SND_PCM_FMT_FLOAT64))[0]).toBe(
      Math.fround(x),
    );
    // Floats are not clamped.
    expect(readF32(one(f64Bytes([1.5]), VIRTIO_SND_PCM_FMT_FLOAT64, VIRTIO_SND_PCM_FMT_FLOAT))).toEqual([
      1.5,
    ]);
  });
});

describe("G.711", () => {
  it("decodes to the standard linear values", () => {
    expect(muLawToLinear(0xff)).toBe(0);
    expect(muLawToLinear(0x7f)).toBe(0);
    expect(muLawToLinear(0x80)).toBe(32124);
    expect(muLawToLinear(0x00)).toBe(-32124);
    expect(aLawToLinear(0xd5)).toBe(8);
    expect(aLawToLinear(0x55)).toBe(-8);
    expect(aLawToLinear(0xaa)).toBe(32256);
    expect(aLawToLinear(0x2a)).toBe(-32256);
    expect(linearToMuLaw(0)).toBe(0xff);
    expect(linearToALaw(0)).toBe(0xd5);
    expect(linearToMuLaw(32767)).toBe(0x80);
    expect(linearToMuLaw(-32768)).toBe(0x00);
    expect(linearToALaw(32767)).toBe(0xaa);
    expect(linearToALaw(-32768)).toBe(0x2a);
  });

  it("every code survives a trip through S16 (µ-law's negative zero 0x7f becomes 0xff)", () => {
    const codes = Uint8Array.from({ length: 256 }, (_, i) => i);
    const mu = convertBuffer(
      convertBuffer(codes, mono(VIRTIO_SND_PCM_FMT_MU_LAW), mono(VIRTIO_SND_PCM_FMT_S16)),
      mono(VIRTIO_SND_PCM_FMT_S16),
      mono(VIRTIO_SND_PCM_FMT_MU_LAW),
    );
    expect(Array.from(mu)).toEqual(Array.from(codes, (c) => (c === 0x7f ? 0xff : c)));
    const a = convertBuffer(
      convertBuffer(codes, mono(VIRTIO_SND_PCM_FMT_A_LAW), mono(VIRTIO_SND_PCM_FMT_S32)),
      mono(VIRTIO_SND_PCM_FMT_S32),
      mono(VIRTIO_SND_PCM_FMT_A_LAW),
    );
    expect(a).toEqual(codes);
  });

  it("encoding is monotonic and within one quantisation step", () => {
    for (const [enc, dec] of [
      [linearToMuLaw, muLawToLinear],
      [linearToALaw, aLawToLinear],
    ] as const) {
      let prev = -Infinity;
      const bad: number[] = [];
      for (let s = -32768; s <= 32767; s++) {
        const back = dec(enc(s));
        if (back < prev || Math.abs(back - s) > 1024) bad.push(s);
        prev = back;
      }
      expect(bad).toEqual([]);
    }
  });
});

describe("integer round trips", () => {
  it("widening is exact and scales by 2^(bits difference); narrowing back restores every bit", () => {
    for (const a of INT_FORMATS) {
      for (const b of INT_FORMATS) {
        if (b.bits < a.bits) continue;
        const values = [
          ...edges(a),
          ...fc.sample(sampleArb(a), { numRuns: 32, seed: a.format * 100 + b.format }),
        ];
        const input = pack(a, values);
        const wide = convertBuffer(input, mono(a.format), mono(b.format));
        expect(unpack(b, wide), `${a.name} -> ${b.name}`).toEqual(
          values.map((v) => v * 2 ** (b.bits - a.bits)),
        );
        expect(wide, `${a.name} -> ${b.name} canonical`).toEqual(pack(b, unpack(b, wide)));
        expect(
          convertBuffer(wide, mono(b.format), mono(a.format)),
          `${a.name} -> ${b.name} -> ${a.name}`,
        ).toEqual(input);
      }
    }
  });

  it("property: widening then narrowing is the identity, stereo, any pair", () => {
    const pairs = INT_FORMATS.flatMap((a) =>
      INT_FORMATS.filter((b) => b.bits >= a.bits).map((b) => [a, b] as const),
    );
    fc.assert(
      fc.property(
        fc
          .constantFrom(...pairs)
          .chain(([a, b]) =>
            fc.tuple(fc.constant(a), fc.constant(b), fc.array(sampleArb(a), { minLength: 0, maxLength: 64 })),
          ),
        ([a, b, raw]) => {
          const values = raw.length % 2 === 0 ? raw : raw.slice(1);
          const input = pack(a, values);
          const conv = new StreamConverter(spec(a.format, 2), spec(b.format, 2));
          const back = new StreamConverter(spec(b.format, 2), spec(a.format, 2));
          expect(back.push(conv.push(input).slice())).toEqual(input);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("property: narrowing drops the low bits (floor)", () => {
    const pairs = INT_FORMATS.flatMap((a) =>
      INT_FORMATS.filter((b) => b.bits < a.bits).map((b) => [a, b] as const),
    );
    fc.assert(
      fc.property(
        fc
          .constantFrom(...pairs)
          .chain(([a, b]) =>
            fc.tuple(fc.constant(a), fc.constant(b), fc.array(sampleArb(a), { maxLength: 32 })),
          ),
        ([a, b, values]) => {
          const out = convertBuffer(pack(a, values), mono(a.format), mono(b.format));
          expect(unpack(b, out)).toEqual(values.map((v) => Math.floor(v / 2 ** (a.bits - b.bits))));
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe("float round trips", () => {
  it("FLOAT -> FLOAT64 -> FLOAT is exact (including -0, infinities and subnormals)", () => {
    fc.assert(
      fc.property(fc.array(fc.float({ noNaN: true }), { maxLength: 64 }), (values) => {
        const input = f32Bytes(values);
        const wide = convertBuffer(input, mono(VIRTIO_SND_PCM_FMT_FLOAT), mono(VIRTIO_SND_PCM_FMT_FLOAT64));
        expect(Array.from(readF64(wide))).toEqual(values);
        expect(convertBuffer(wide, mono(VIRTIO_SND_PCM_FMT_FLOAT64), mono(VIRTIO_SND_PCM_FMT_FLOAT))).toEqual(
          input,
        );
      }),
      { numRuns: 200 },
    );
  });

  it("int -> FLOAT -> int is exact up to 24 bits, int -> FLOAT64 -> int for every width", () => {
    for (const a of INT_FORMATS) {
      const floats =
        a.bits <= 24 ? [VIRTIO_SND_PCM_FMT_FLOAT, VIRTIO_SND_PCM_FMT_FLOAT64] : [VIRTIO_SND_PCM_FMT_FLOAT64];
      for (const fl of floats) {
        const values = [...edges(a), ...fc.sample(sampleArb(a), { numRuns: 200, seed: a.format + fl })];
        const input = pack(a, values);
        const f = convertBuffer(input, mono(a.format), mono(fl));
        const x = fl === VIRTIO_SND_PCM_FMT_FLOAT ? readF32(f) : Array.from(readF64(f));
        expect(x, `${a.name} -> float`).toEqual(values.map((v) => v / 2 ** (a.bits - 1)));
        expect(convertBuffer(f, mono(fl), mono(a.format)), `${a.name} -> ${fl} -> ${a.name}`).toEqual(input);
      }
    }
  });

  it("S32 -> FLOAT -> S32 is within float32 precision", () => {
    const values = [...edges(S32), ...fc.sample(sampleArb(S32), { numRuns: 200, seed: 7 })];
    const f = convertBuffer(pack(S32, values), mono(VIRTIO_SND_PCM_FMT_S32), mono(VIRTIO_SND_PCM_FMT_FLOAT));
    const back = unpack(S32, convertBuffer(f, mono(VIRTIO_SND_PCM_FMT_FLOAT), mono(VIRTIO_SND_PCM_FMT_S32)));
    back.forEach((v, i) => expect(Math.abs(v - values[i]!)).toBeLessThanOrEqual(128));
  });
});

describe("identity", () => {
  it("is detected and returns the same bytes, whole frames only", () => {
    fc.assert(
      fc.property(
        fc.constantFrom(
          ...INT_FORMATS.map((f) => f.format),
          VIRTIO_SND_PCM_FMT_FLOAT,
          VIRTIO_SND_PCM_FMT_FLOAT64,
        ),
        fc.integer({ min: 1, max: 8 }),
        fc.uint8Array({ maxLength: 200 }),
        (format, channels, bytes) => {
          const conv = new StreamConverter(spec(format, channels, 44100), spec(format, channels, 44100));
          expect(conv.identity).toBe(true);
          const fb = conv.inFrameBytes;
          const whole = bytes.length - (bytes.length % fb);
          expect(conv.push(bytes)).toEqual(bytes.subarray(0, whole));
          expect(conv.partialBytes).toBe(bytes.length - whole);
          expect(conv.flush().length).toBe(0);
          expect(convertBuffer(bytes, spec(format, channels), spec(format, channels))).toEqual(
            bytes.subarray(0, whole),
          );
        },
      ),
      { numRuns: 100 },
    );
  });

  it("passes formats it cannot convert through untouched (NaN payloads, DSD)", () => {
    const nan = hex(0x01, 0x00, 0xc0, 0x7f, 0xff, 0xff, 0xff, 0xff);
    expect(convertBuffer(nan, mono(VIRTIO_SND_PCM_FMT_FLOAT), mono(VIRTIO_SND_PCM_FMT_FLOAT))).toEqual(nan);
    const dsd = hex(0x69, 0x12, 0x96, 0x00);
    expect(
      convertBuffer(dsd, spec(VIRTIO_SND_PCM_FMT_DSD_U8, 2), spec(VIRTIO_SND_PCM_FMT_DSD_U8, 2)),
    ).toEqual(dsd);
  });

  it("is not claimed when anything differs", () => {
    expect(new StreamConverter(mono(VIRTIO_SND_PCM_FMT_S16), spec(VIRTIO_SND_PCM_FMT_S16, 2)).identity).toBe(
      false,
    );
    expect(new StreamConverter(mono(VIRTIO_SND_PCM_FMT_S16), mono(VIRTIO_SND_PCM_FMT_U16)).identity).toBe(
      false,
    );
    expect(
      new StreamConverter(mono(VIRTIO_SND_PCM_FMT_S16, 8000), mono(VIRTIO_SND_PCM_FMT_S16)).identity,
    ).toBe(false);
  });

  it("the output is a copy: changing the input afterwards does not change it", () => {
    const input = hex(1, 2, 3, 4);
    const conv = new StreamConverter(mono(VIRTIO_SND_PCM_FMT_S16), mono(VIRTIO_SND_PCM_FMT_S16));
    const out = conv.push(input);
    input.fill(0);
    expect(out).toEqual(hex(1, 2, 3, 4));
  });
});

describe("channels", () => {
  it("mono -> stereo -> mono is exact for every integer format", () => {
    for (const f of INT_FORMATS) {
      const values = [...edges(f), ...fc.sample(sampleArb(f), { numRuns: 50, seed: f.format })];
      const input = pack(f, values);
      const stereo = convertBuffer(input, spec(f.format, 1), spec(f.format, 2));
      expect(unpack(f, stereo)).toEqual(values.flatMap((v) => [v, v]));
      expect(convertBuffer(stereo, spec(f.format, 2), spec(f.format, 1)), f.name).toEqual(input);
    }
  });

  it("mono -> N copies to every channel; N -> mono averages (floor for integers)", () => {
    expect(unpack(S16, convertBuffer(pack(S16, [5, -7]), spec(5, 1), spec(5, 6)))).toEqual([
      5, 5, 5, 5, 5, 5, -7, -7, -7, -7, -7, -7,
    ]);
    expect(
      unpack(S16, convertBuffer(pack(S16, [1, 2, -1, -2, 32767, 32767]), spec(5, 2), spec(5, 1))),
    ).toEqual([1, -2, 32767]);
    expect(unpack(S16, convertBuffer(pack(S16, [3, 3, 4, 0, 0, 9]), spec(5, 3), spec(5, 1)))).toEqual([3, 3]);
    const f = convertBuffer(f32Bytes([0.5, 0.25, -1, 0]), spec(VIRTIO_SND_PCM_FMT_FLOAT, 2), mono(19));
    expect(readF32(f)).toEqual([0.375, -0.5]);
  });

  it("other changes keep the first channels and fill the rest with the format's silence", () => {
    const U16 = INT_FORMATS[3]!;
    const out = convertBuffer(pack(U16, [100, -100]), spec(U16.format, 2), spec(U16.format, 4));
    expect(unpack(U16, out)).toEqual([100, -100, 0, 0]);
    expect(out.subarray(4, 6)).toEqual(silencePattern(U16.format));
    expect(unpack(S16, convertBuffer(pack(S16, [1, 2, 3]), spec(5, 3), spec(5, 2)))).toEqual([1, 2]);
    expect(unpack(S16, convertBuffer(pack(S16, [1, 2, 3, 4, 5, 6]), spec(5, 6), spec(5, 3)))).toEqual([
      1, 2, 3,
    ]);
    const u8 = convertBuffer(hex(0x10, 0x20), spec(VIRTIO_SND_PCM_FMT_U8, 2), spec(VIRTIO_SND_PCM_FMT_U8, 3));
    expect(u8).toEqual(hex(0x10, 0x20, 0x80));
  });

  it("5.1 and 7.1 downmix to stereo (FL FR RL RR FC LFE SL SR), normalised", () => {
    const m51 = downmixToStereo(6)!;
    const k = 1 + 2 * Math.SQRT1_2;
    expect(m51[0]![0]).toBeCloseTo(1 / k, 12);
    expect(m51[0]![4]).toBeCloseTo(Math.SQRT1_2 / k, 12);
    expect(m51[0]![5]).toBe(0);
    expect(m51[1]![1]).toBeCloseTo(1 / k, 12);
    expect(downmixToStereo(2)).toBeNull();
    expect(downmixToStereo(8)![1]!.reduce((a, b) => a + b)).toBeCloseTo(1, 12);
    // FL only, then all channels at full scale: no clipping.
    const x = f64Bytes([0.5, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1]);
    const y = readF64(
      convertBuffer(x, spec(VIRTIO_SND_PCM_FMT_FLOAT64, 6), spec(VIRTIO_SND_PCM_FMT_FLOAT64, 2)),
    );
    expect(y[0]).toBeCloseTo(0.5 / k, 12);
    expect(y[1]).toBe(0);
    expect(y[2]).toBeCloseTo(1, 12);
    expect(y[3]).toBeCloseTo(1, 12);
    const s = convertBuffer(pack(S16, new Array<number>(8).fill(-32768)), spec(5, 8), spec(5, 2));
    expect(unpack(S16, s)).toEqual([-32768, -32768]);
  });

  it("a custom mixing matrix", () => {
    const swap = { mixMatrix: [[0, 1, 0], [1, 0, 0]] }; // prettier-ignore
    const out = convertBuffer(pack(S16, [1, 2, 3, 4, 5, 6]), spec(5, 3), spec(5, 2), swap);
    expect(unpack(S16, out)).toEqual([2, 1, 5, 4]);
    expect(() => new StreamConverter(spec(5, 3), spec(5, 2), { mixMatrix: [[1, 0, 0]] })).toThrow(
      /mixMatrix/,
    );
    expect(() => new StreamConverter(spec(5, 3), spec(5, 2), { mixMatrix: [[1, 0], [0, 1]] })).toThrow(/mixMatrix/); // prettier-ignore
  });

  it("channel changes combine with resampling (both orders)", () => {
    const n = 4800;
    const x = Float64Array.from({ length: n }, (_, i) => 0.5 * Math.sin((2 * Math.PI * 440 * i) / 48000));
    const up = readF64(
      convertBuffer(
        f64Bytes(x),
        spec(VIRTIO_SND_PCM_FMT_FLOAT64, 1, 48000),
        spec(VIRTIO_SND_PCM_FMT_FLOAT64, 2, 44100),
      ),
    );
    const ref = readF64(
      convertBuffer(
        f64Bytes(x),
        spec(VIRTIO_SND_PCM_FMT_FLOAT64, 1, 48000),
        spec(VIRTIO_SND_PCM_FMT_FLOAT64, 1, 44100),
      ),
    );
    expect(up.length).toBe(2 * ref.length);
    expect(ref.every((v, i) => up[2 * i] === v && up[2 * i + 1] === v)).toBe(true);
    const down = readF64(convertBuffer(f64Bytes(up), spec(20, 2, 44100), spec(20, 1, 48000)));
    expect(down.length).toBe(n);
    let err = 0;
    for (let i = 200; i < n - 200; i++) err = Math.max(err, Math.abs(down[i]! - x[i]!));
    expect(err).toBeLessThan(1e-3);
  });
});

// ---------------------------------------------------------------------------
// Resampling

function sine(n: number, freq: number, rate: number, amp = 0.5): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => amp * Math.sin((2 * Math.PI * freq * i) / rate));
}

/** Frequency from rising zero crossings (interpolated), over y[from, to). */
function zeroCrossingFrequency(y: ArrayLike<number>, rate: number, from: number, to: number): number {
  const times: number[] = [];
  for (let i = from; i < to - 1; i++) {
    const a = y[i]!;
    const b = y[i + 1]!;
    if (a < 0 && b >= 0) times.push(i + a / (a - b));
  }
  return ((times.length - 1) * rate) / (times[times.length - 1]! - times[0]!);
}

/** Magnitude of the DFT of y at `freq` Hz, normalised to a sine's amplitude. */
function toneAmplitude(y: ArrayLike<number>, rate: number, freq: number, from: number, to: number): number {
  let re = 0;
  let im = 0;
  for (let i = from; i < to; i++) {
    re += y[i]! * Math.cos((2 * Math.PI * freq * i) / rate);
    im += y[i]! * Math.sin((2 * Math.PI * freq * i) / rate);
  }
  return (2 * Math.hypot(re, im)) / (to - from);
}

function resampleF64(x: Float64Array, from: number, to: number, channels = 1): Float64Array {
  return readF64(
    convertBuffer(f64Bytes(x), spec(VIRTIO_SND_PCM_FMT_FLOAT64, channels, from), spec(20, channels, to)),
  );
}

/** The output frame count of the whole stream: outputs k with k*from/to + from/(2*to) < n. */
function expectedFrames(n: number, from: number, to: number): number {
  let k = Math.max(0, Math.floor((n * to) / from) - 2);
  while ((2 * k + 1) * from < 2 * n * to) k++;
  return k;
}

describe("resampling", () => {
  for (const [from, to] of [
    [44100, 48000],
    [48000, 8000],
    [48000, 44100],
    [8000, 48000],
    [5512, 48000], // the interpolated-phase path (6000 phases)
    [44100, 22050],
  ] as const) {
    it(`${from} -> ${to}: a 1 kHz sine keeps its frequency, amplitude and phase`, () => {
      const n = Math.round(from * 0.25);
      const y = resampleF64(sine(n, 1000, from), from, to);
      expect(y.length).toBe(expectedFrames(n, from, to));
      expect(Math.abs(y.length - Math.round((n * to) / from))).toBeLessThanOrEqual(1);
      const a = Math.floor(y.length * 0.1);
      const b = Math.floor(y.length * 0.9);
      const f = zeroCrossingFrequency(y, to, a, b);
      expect(Math.abs(f - 1000) / 1000).toBeLessThan(0.01);
      expect(Math.abs(f - 1000) / 1000).toBeLessThan(1e-4); // and in fact far better
      expect(toneAmplitude(y, to, 1000, a, b)).toBeCloseTo(0.5, 3);
      // Time-aligned with the input: output k is the tone at time k / to.
      let err = 0;
      for (let k = a; k < b; k++)
        err = Math.max(err, Math.abs(y[k]! - 0.5 * Math.sin((2 * Math.PI * 1000 * k) / to)));
      expect(err).toBeLessThan(1e-3);
    });
  }

  it("48000 -> 8000 rejects a tone above the new Nyquist frequency (no aliasing)", () => {
    const y = resampleF64(sine(12000, 6000, 48000), 48000, 8000);
    let peak = 0;
    for (let k = 200; k < y.length - 200; k++) peak = Math.max(peak, Math.abs(y[k]!));
    expect(peak).toBeLessThan(0.5e-3); // > 60 dB down; 6 kHz would alias to 2 kHz
    // A 3 kHz tone (below Nyquist, in the passband) goes through.
    const z = resampleF64(sine(12000, 3000, 48000), 48000, 8000);
    expect(toneAmplitude(z, 8000, 3000, 200, z.length - 200)).toBeCloseTo(0.5, 2);
  });

  it("keeps DC at unity gain", () => {
    const y = resampleF64(new Float64Array(3000).fill(0.25), 44100, 48000);
    let err = 0;
    for (let k = 100; k < y.length - 100; k++) err = Math.max(err, Math.abs(y[k]! - 0.25));
    expect(err).toBeLessThan(1e-9);
  });

  it("output length over the whole stream = round(n * to / from), within 1 frame", () => {
    const rates = [5512, 8000, 11025, 16000, 22050, 44100, 48000, 96000, 192000];
    fc.assert(
      fc.property(
        fc.constantFrom(...rates),
        fc.constantFrom(...rates),
        fc.integer({ min: 0, max: 2000 }),
        (from, to, n) => {
          if (from === to) return;
          const c = new StreamConverter(spec(VIRTIO_SND_PCM_FMT_S16, 1, from), spec(5, 1, to));
          const pushed = c.push(new Uint8Array(2 * n)).length / 2;
          const total = pushed + c.flush().length / 2;
          expect(total).toBe(expectedFrames(n, from, to));
          expect(Math.abs(total - Math.round((n * to) / from))).toBeLessThanOrEqual(1);
        },
      ),
      { numRuns: 150 },
    );
  });

  it("any chunking gives exactly the same output as one push, including partial frames", () => {
    const cases = [
      [44100, 48000],
      [48000, 8000],
      [5512, 48000],
      [48000, 44100],
    ] as const;
    const input = pack(
      S16,
      Array.from({ length: 2 * 2000 }, (_, i) =>
        Math.round(20000 * Math.sin(i * 0.05) + 5000 * Math.sin(i * 1.3)),
      ),
    );
    const reference = cases.map(([from, to]) =>
      convertBuffer(input, spec(VIRTIO_SND_PCM_FMT_S16, 2, from), spec(VIRTIO_SND_PCM_FMT_FLOAT, 2, to)),
    );
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: cases.length - 1 }),
        fc.array(fc.integer({ min: 0, max: 2500 }), { minLength: 1, maxLength: 20 }),
        (which, sizes) => {
          const [from, to] = cases[which]!;
          const c = new StreamConverter(spec(VIRTIO_SND_PCM_FMT_S16, 2, from), spec(19, 2, to));
          const out = pushInChunks(c, input, sizes);
          expect(sameBytes(out, reference[which]!)).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
  });

  it("flush() ends the stream and the converter starts a new one", () => {
    const x = f64Bytes(sine(1000, 1000, 44100));
    const c = new StreamConverter(spec(20, 1, 44100), spec(20, 1, 48000));
    const first = [...c.push(x), ...c.flush()];
    expect(c.pendingFrames).toBe(0);
    const second = [...c.push(x), ...c.flush()];
    expect(second).toEqual(first);
    c.push(x);
    expect(c.pendingFrames).toBeGreaterThan(0);
    c.reset();
    expect([...c.push(x), ...c.flush()]).toEqual(first);
  });

  it("holds back only the filter's look-ahead", () => {
    const c = new StreamConverter(spec(20, 1, 44100), spec(20, 1, 48000));
    c.push(new Uint8Array(8 * 1000));
    expect(c.pendingFrames).toBeGreaterThan(30);
    expect(c.pendingFrames).toBeLessThan(34);
    const r = new Resampler(48000, 8000, 2);
    expect(r.taps).toBe(384); // 32 zero crossings each side at 8 kHz
  });
});

describe("partial frames across push() calls", () => {
  it("byte-by-byte input gives the same output as one push", () => {
    const S24_3 = INT_FORMATS[8]!;
    const values = fc.sample(sampleArb(S24_3), { numRuns: 40, seed: 3 });
    const input = pack(S24_3, values);
    const from = spec(S24_3.format, 2);
    const to = spec(VIRTIO_SND_PCM_FMT_S16, 1);
    const c = new StreamConverter(from, to);
    const parts: number[] = [];
    for (let i = 0; i < input.length; i++) {
      const out = c.push(input.subarray(i, i + 1));
      expect(out.length).toBe((i + 1) % 6 === 0 ? 2 : 0);
      expect(c.partialBytes).toBe((i + 1) % 6);
      parts.push(...out);
    }
    expect(new Uint8Array(parts)).toEqual(convertBuffer(input, from, to));
  });

  it("property: random chunks of a FLOAT stereo stream", () => {
    const values = fc.sample(fc.float({ min: -1, max: 1, noNaN: true }), { numRuns: 200, seed: 11 });
    const input = f32Bytes(values);
    const from = spec(VIRTIO_SND_PCM_FMT_FLOAT, 2);
    const to = spec(VIRTIO_SND_PCM_FMT_S24_3, 2);
    const whole = convertBuffer(input, from, to);
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 50 }), { minLength: 1, maxLength: 10 }), (sizes) => {
        const c = new StreamConverter(from, to);
        expect(pushInChunks(c, input, sizes, false)).toEqual(whole);
        expect(c.flush().length).toBe(0);
      }),
      { numRuns: 100 },
    );
  });

  it("flush() drops an incomplete trailing frame", () => {
    const c = new StreamConverter(mono(VIRTIO_SND_PCM_FMT_S16), mono(VIRTIO_SND_PCM_FMT_S32));
    expect(c.push(hex(1, 2, 3)).length).toBe(4);
    expect(c.flush().length).toBe(0);
    expect(c.push(hex(4, 5))).toEqual(hex(0, 0, 4, 5));
  });

  it("works on views with an offset into a larger buffer", () => {
    const big = new Uint8Array(11);
    big.set(f32Bytes([0.5, -0.25]), 3);
    const out = convertBuffer(
      big.subarray(3, 11),
      mono(VIRTIO_SND_PCM_FMT_FLOAT),
      mono(VIRTIO_SND_PCM_FMT_S16),
    );
    expect(unpack(S16, out)).toEqual([16384, -8192]);
  });
});

describe("large inputs", () => {
  it("converts more than one internal block in a call", () => {
    const n = 5000;
    const values = Array.from({ length: 2 * n }, (_, i) => ((i * 7919) % 65536) - 32768);
    const input = pack(S16, values);
    const out = convertBuffer(input, spec(5, 2), spec(VIRTIO_SND_PCM_FMT_S32, 2));
    expect(unpack(S32, out)).toEqual(values.map((v) => v * 65536));
  });
});
