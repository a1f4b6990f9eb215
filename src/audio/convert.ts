/**
 * PCM conversion between the sample formats, channel counts and frame rates of
 * virtio-snd (virtio 1.3 §5.14.6.6.2). Core code: no Node built-ins.
 *
 * Sample formats (all little-endian):
 * - S8 … U32: integers. "_3" formats take 3 bytes, S20/U20/S24/U24 take a
 *   4-byte container with the value in the low bits (ALSA's S24_LE). Decoding
 *   reads only the low `bits` bits (sign-extending signed formats), so whatever
 *   the upper bits hold is ignored; encoding writes the value sign-extended to
 *   the container for signed formats and zero-extended for unsigned ones.
 *   Unsigned = signed + 2^(bits-1).
 * - FLOAT, FLOAT64: nominal range [-1, 1). Float output is never clamped.
 * - MU_LAW, A_LAW: G.711, through their 16-bit linear values (Sun's g711.c).
 *
 * Every sample becomes a float64 `x = v / 2^(bits-1)` (v the signed value), which
 * is exact for every integer width. Going back to an integer format:
 * - integer (or G.711) to integer at the same rate: `floor(x * 2^(bits-1))`, so
 *   widening is exact, widening then narrowing returns the original bits, and
 *   narrowing truncates toward negative infinity (drops the low bits, no dither);
 * - from a float format, or after resampling: round to nearest
 *   (`floor(y + 0.5)`) and clamp to the format's range; NaN becomes 0.
 *
 * Channels (ALSA / virtio chmap order FL FR RL RR FC LFE SL SR, as in
 * CHMAP_PRESETS): same count unchanged; mono -> N copies to every channel;
 * N -> mono averages; quad, 5.0, 5.1 and 7.1 -> stereo use a normalised downmix
 * (see {@link downmixToStereo}); any other change keeps the first min(from, to)
 * channels and fills the others with silence. A custom matrix can be given.
 *
 * Rates: a windowed-sinc (Kaiser) polyphase resampler in float64, time-aligned
 * (output frame k is the input signal at time k * from / to; the filter looks
 * ahead, so the converter holds back a few input frames until flush()). Output
 * of the whole stream is round(inputFrames * to / from) frames (ties round down),
 * identical whatever the push() chunking.
 */

import { BackendError } from "../errors.js";
import { frameBits } from "./pcm-params.js";
import {
  KIND_A_LAW,
  KIND_FLOAT32,
  KIND_FLOAT64,
  KIND_MU_LAW,
  SAMPLE_FORMATS,
  type SampleFormat,
} from "./sample-format.js";

export interface PcmFormatSpec {
  /** VIRTIO_SND_PCM_FMT_* */
  format: number;
  channels: number;
  /** Frames per second (a positive integer). */
  rate: number;
}

export interface StreamConverterOptions {
  /**
   * Channel mixing matrix: `mixMatrix[o][i]` is the gain of input channel i in
   * output channel o (to.channels rows of from.channels numbers). Replaces the
   * default channel rule when the channel counts differ.
   */
  readonly mixMatrix?: readonly (readonly number[])[];
}

// ---------------------------------------------------------------------------
// Sample formats

const FORMATS = SAMPLE_FORMATS;

/**
 * Formats convert() handles: MU_LAW A_LAW S8 U8 S16 U16 S18_3 U18_3 S20_3 U20_3
 * S24_3 U24_3 S20 U20 S24 U24 S32 U32 FLOAT FLOAT64. (Not IMA ADPCM, DSD or
 * IEC958 subframes; an identity StreamConverter passes those through anyway.)
 */
export function isConvertible(format: number): boolean {
  return FORMATS.has(format);
}

// G.711 (after Sun Microsystems' public-domain g711.c).

const MU_LAW_TO_LINEAR = new Int16Array(256);
const A_LAW_TO_LINEAR = new Int16Array(256);
for (let code = 0; code < 256; code++) {
  const u = ~code & 0xff;
  const t = (((u & 0x0f) << 3) + 0x84) << ((u & 0x70) >> 4);
  MU_LAW_TO_LINEAR[code] = u & 0x80 ? 0x84 - t : t - 0x84;
  const a = code ^ 0x55;
  const seg = (a & 0x70) >> 4;
  let m = (a & 0x0f) << 4;
  m = seg === 0 ? m + 8 : (m + 0x108) << (seg - 1);
  A_LAW_TO_LINEAR[code] = a & 0x80 ? m : -m;
}

/** The G.711 µ-law code of a 16-bit linear sample. */
export function linearToMuLaw(pcm: number): number {
  let v = pcm >> 2;
  let mask = 0xff;
  if (v < 0) {
    v = -v;
    mask = 0x7f;
  }
  if (v > 8159) v = 8159;
  v += 0x84 >> 2;
  let seg = 0;
  while (seg < 8 && v > (0x40 << seg) - 1) seg++; // seg_uend: 0x3f, 0x7f, 0xff, …, 0x1fff
  if (seg >= 8) return 0x7f ^ mask;
  return ((seg << 4) | ((v >> (seg + 1)) & 0x0f)) ^ mask;
}

/** The G.711 A-law code of a 16-bit linear sample. */
export function linearToALaw(pcm: number): number {
  let v = pcm >> 3;
  let mask = 0xd5;
  if (v < 0) {
    mask = 0x55;
    v = -v - 1;
  }
  let seg = 0;
  while (seg < 8 && v > (0x20 << seg) - 1) seg++; // seg_aend: 0x1f, 0x3f, …, 0xfff
  if (seg >= 8) return 0x7f ^ mask;
  const aval = (seg << 4) | ((seg < 2 ? v >> 1 : v >> seg) & 0x0f);
  return aval ^ mask;
}

/** The 16-bit linear value of a G.711 µ-law code. */
export function muLawToLinear(code: number): number {
  return MU_LAW_TO_LINEAR[code & 0xff]!;
}

/** The 16-bit linear value of a G.711 A-law code. */
export function aLawToLinear(code: number): number {
  return A_LAW_TO_LINEAR[code & 0xff]!;
}

/** Decodes `n` samples from src[off…] into dst[0…n) as float64 (v / 2^(bits-1)). */
function decode(
  f: SampleFormat,
  src: Uint8Array,
  dv: DataView | null,
  off: number,
  n: number,
  dst: Float64Array,
) {
  switch (f.kind) {
    case KIND_FLOAT32:
      for (let i = 0, p = off; i < n; i++, p += 4) dst[i] = dv!.getFloat32(p, true);
      return;
    case KIND_FLOAT64:
      for (let i = 0, p = off; i < n; i++, p += 8) dst[i] = dv!.getFloat64(p, true);
      return;
    case KIND_MU_LAW:
    case KIND_A_LAW: {
      const table = f.kind === KIND_MU_LAW ? MU_LAW_TO_LINEAR : A_LAW_TO_LINEAR;
      for (let i = 0; i < n; i++) dst[i] = table[src[off + i]!]! * 2 ** -15;
      return;
    }
  }
  const scale = 2 ** -(f.bits - 1);
  const sh = 32 - f.bits;
  const bias = f.signed ? 0 : 2 ** (f.bits - 1);
  const signed = f.signed;
  switch (f.bytes) {
    case 1:
      for (let i = 0; i < n; i++) {
        const raw = src[off + i]!;
        dst[i] = (signed ? (raw << 24) >> 24 : raw - 128) * scale;
      }
      return;
    case 2:
      for (let i = 0, p = off; i < n; i++, p += 2) {
        const raw = src[p]! | (src[p + 1]! << 8);
        dst[i] = (signed ? (raw << 16) >> 16 : raw - 32768) * scale;
      }
      return;
    case 3:
      for (let i = 0, p = off; i < n; i++, p += 3) {
        const raw = src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16);
        dst[i] = (signed ? (raw << sh) >> sh : ((raw << sh) >>> sh) - bias) * scale;
      }
      return;
    default:
      for (let i = 0, p = off; i < n; i++, p += 4) {
        const raw = src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24);
        dst[i] = (signed ? (raw << sh) >> sh : ((raw << sh) >>> sh) - bias) * scale;
      }
  }
}

/**
 * Encodes `n` float64 samples into dst[off…]. Integer formats take
 * floor(x * 2^(bits-1) + bias), clamped (NaN -> 0): bias 0 truncates, 0.5 rounds.
 */
function encode(
  f: SampleFormat,
  x: Float64Array,
  n: number,
  dst: Uint8Array,
  dv: DataView,
  off: number,
  bias: number,
) {
  switch (f.kind) {
    case KIND_FLOAT32:
      for (let i = 0, p = off; i < n; i++, p += 4) dv.setFloat32(p, x[i]!, true);
      return;
    case KIND_FLOAT64:
      for (let i = 0, p = off; i < n; i++, p += 8) dv.setFloat64(p, x[i]!, true);
      return;
  }
  const mul = 2 ** (f.bits - 1);
  const max = mul - 1;
  const min = -mul;
  switch (f.kind) {
    case KIND_MU_LAW:
    case KIND_A_LAW: {
      const mu = f.kind === KIND_MU_LAW;
      for (let i = 0; i < n; i++) {
        let s = Math.floor(x[i]! * mul + bias);
        s = s >= max ? max : s >= min ? s : s < min ? min : 0;
        dst[off + i] = mu ? linearToMuLaw(s) : linearToALaw(s);
      }
      return;
    }
  }
  const offset = f.signed ? 0 : mul;
  switch (f.bytes) {
    case 1:
      for (let i = 0; i < n; i++) {
        let s = Math.floor(x[i]! * mul + bias);
        s = s >= max ? max : s >= min ? s : s < min ? min : 0;
        dst[off + i] = (s + offset) & 0xff;
      }
      return;
    case 2:
      for (let i = 0, p = off; i < n; i++, p += 2) {
        let s = Math.floor(x[i]! * mul + bias);
        s = s >= max ? max : s >= min ? s : s < min ? min : 0;
        const v = s + offset;
        dst[p] = v & 0xff;
        dst[p + 1] = (v >> 8) & 0xff;
      }
      return;
    case 3:
      for (let i = 0, p = off; i < n; i++, p += 3) {
        let s = Math.floor(x[i]! * mul + bias);
        s = s >= max ? max : s >= min ? s : s < min ? min : 0;
        const v = s + offset;
        dst[p] = v & 0xff;
        dst[p + 1] = (v >> 8) & 0xff;
        dst[p + 2] = (v >> 16) & 0xff;
      }
      return;
    default:
      for (let i = 0, p = off; i < n; i++, p += 4) {
        let s = Math.floor(x[i]! * mul + bias);
        s = s >= max ? max : s >= min ? s : s < min ? min : 0;
        const v = s + offset; // up to 2^32 - 1 for U32: the bit operations below wrap it modulo 2^32
        dst[p] = v & 0xff;
        dst[p + 1] = (v >> 8) & 0xff;
        dst[p + 2] = (v >> 16) & 0xff;
        dst[p + 3] = (v >>> 24) & 0xff;
      }
  }
}

// ---------------------------------------------------------------------------
// Channels

const MIX_SELECT = 0; // keep the first min(from, to) channels, silence in the others
const MIX_DUPLICATE = 1; // mono -> every channel
const MIX_AVERAGE = 2; // every channel -> mono, averaged
const MIX_MATRIX = 3;

const SQRT1_2 = Math.SQRT1_2;

/**
 * The stereo downmix used for quad (4), 5.0 (5), 5.1 (6) and 7.1 (8) channels in
 * ALSA / virtio chmap order FL FR RL RR FC LFE SL SR:
 *   L = FL + FC/√2 + RL/√2 + SL/√2,  R = FR + FC/√2 + RR/√2 + SR/√2,  LFE dropped,
 * each row then divided by the sum of its gains so a full-scale input cannot clip
 * (5.1: L = (FL + 0.7071 FC + 0.7071 RL) / 2.4142). Returns null for other counts.
 */
export function downmixToStereo(channels: number): number[][] | null {
  if (channels !== 4 && channels !== 5 && channels !== 6 && channels !== 8) return null;
  const left = new Array<number>(channels).fill(0);
  const right = new Array<number>(channels).fill(0);
  left[0] = 1; // FL
  right[1] = 1; // FR
  left[2] = SQRT1_2; // RL
  right[3] = SQRT1_2; // RR
  if (channels >= 5) {
    left[4] = SQRT1_2; // FC
    right[4] = SQRT1_2;
  }
  if (channels === 8) {
    left[6] = SQRT1_2; // SL
    right[7] = SQRT1_2; // SR
  }
  const norm = (row: number[]) => {
    const sum = row.reduce((a, b) => a + b, 0);
    return row.map((g) => g / sum);
  };
  return [norm(left), norm(right)];
}

function mixChannels(
  mode: number,
  matrix: Float64Array | null,
  src: Float64Array,
  frames: number,
  fromCh: number,
  dst: Float64Array,
  toCh: number,
): void {
  switch (mode) {
    case MIX_DUPLICATE:
      for (let f = 0, o = 0; f < frames; f++) {
        const v = src[f]!;
        for (let c = 0; c < toCh; c++) dst[o++] = v;
      }
      return;
    case MIX_AVERAGE:
      for (let f = 0, i = 0; f < frames; f++) {
        let sum = 0;
        for (let c = 0; c < fromCh; c++) sum += src[i++]!;
        dst[f] = sum / fromCh;
      }
      return;
    case MIX_MATRIX:
      for (let f = 0, i = 0, o = 0; f < frames; f++, i += fromCh) {
        for (let c = 0, m = 0; c < toCh; c++) {
          let sum = 0;
          for (let k = 0; k < fromCh; k++) sum += matrix![m++]! * src[i + k]!;
          dst[o++] = sum;
        }
      }
      return;
    default: {
      const keep = Math.min(fromCh, toCh);
      for (let f = 0, i = 0, o = 0; f < frames; f++, i += fromCh) {
        for (let c = 0; c < keep; c++) dst[o++] = src[i + c]!;
        for (let c = keep; c < toCh; c++) dst[o++] = 0;
      }
    }
  }
}

// ---------------------------------------------------------------------------
// Resampling

/** Zero crossings of the sinc on each side of the centre (at the lower of the two rates). */
const RESAMPLER_ZERO_CROSSINGS = 32;
/** Cutoff as a fraction of the lower rate: the Kaiser transition band ends at its Nyquist frequency. */
const RESAMPLER_CUTOFF = 0.46;
/** Kaiser window beta: about 80 dB of stopband attenuation. */
const RESAMPLER_BETA = 8;
/** Up to this many coefficients, keep one exact row per phase of the rational ratio. */
const RESAMPLER_MAX_EXACT_COEFFS = 65536;
/** Otherwise, rows per input frame (at the lower rate), interpolated linearly. */
const RESAMPLER_ROWS_PER_CROSSING = 512;

function gcd(a: number, b: number): number {
  while (b !== 0) [a, b] = [b, a % b];
  return a;
}

/**
 * Modified Bessel function of the first kind, order 0 (Abramowitz & Stegun
 * 9.8.1 and 9.8.2, relative error below 2e-7: ample for a window).
 */
function besselI0(x: number): number {
  const ax = Math.abs(x);
  if (ax < 3.75) {
    const t = (x / 3.75) ** 2;
    return (
      1 +
      t * (3.5156229 + t * (3.0899424 + t * (1.2067492 + t * (0.2659732 + t * (0.0360768 + t * 0.0045813)))))
    );
  }
  const t = 3.75 / ax;
  const p =
    0.39894228 +
    t *
      (0.01328592 +
        t *
          (0.00225319 +
            t *
              (-0.00157565 +
                t *
                  (0.00916281 + t * (-0.02057706 + t * (0.02635537 + t * (-0.01647633 + t * 0.00392377)))))));
  return (Math.exp(ax) / Math.sqrt(ax)) * p;
}

/** Filter tables are immutable: converters for the same rate pair share them. */
const FILTER_CACHE_SIZE = 8;
const filterCache = new Map<string, Float64Array>();

/**
 * (nRows + 1) rows of 2 * half coefficients of a Kaiser-windowed sinc with cutoff
 * `fc` (cycles per input frame) and window half-width `width` (input frames).
 * Row r is for an output time r / nRows past an input frame; tap j of a row
 * multiplies the input frame half - 1 - j before it, at distance
 * r / nRows + half - 1 - j. Each row sums to 1 (unity gain at DC). Row nRows - r
 * is row r reversed (h is even), so only half the rows are computed.
 */
function filterRows(nRows: number, half: number, width: number, fc: number): Float64Array {
  const taps = 2 * half;
  const i0beta = besselI0(RESAMPLER_BETA);
  const rows = new Float64Array((nRows + 1) * taps);
  for (let r = 0; 2 * r <= nRows; r++) {
    const phase = r / nRows;
    const at = r * taps;
    let sum = 0;
    for (let j = 0; j < taps; j++) {
      const d = phase + half - 1 - j;
      const u = d / width;
      let c = 0;
      if (u < 1 && u > -1) {
        const x = Math.PI * 2 * fc * d;
        c = (x === 0 ? 1 : Math.sin(x) / x) * (besselI0(RESAMPLER_BETA * Math.sqrt(1 - u * u)) / i0beta);
      }
      rows[at + j] = c;
      sum += c;
    }
    for (let j = 0; j < taps; j++) rows[at + j]! /= sum;
    const mirror = (nRows - r) * taps;
    if (mirror !== at) for (let j = 0; j < taps; j++) rows[mirror + j] = rows[at + taps - 1 - j]!;
  }
  return rows;
}

/**
 * A streaming windowed-sinc resampler on interleaved float64 frames. Output frame
 * k is the band-limited input at time t_k = k * from / to (input frames), kept as
 * an exact rational (integer part `ipos`, numerator `frac` over `den`), so it
 * never drifts. Input frames before the first one are zero, and so are those
 * after the last one at flush().
 */
export class Resampler {
  readonly channels: number;
  /** Input frames each side of the output time the filter reads. */
  readonly half: number;
  readonly taps: number;
  private readonly inc: number;
  private readonly den: number;
  private readonly incInt: number;
  private readonly incFrac: number;
  /** (nRows + 1) rows of `taps` coefficients; row r is for the fractional time r / nRows. */
  private readonly rows: Float64Array;
  private readonly nRows: number;
  private readonly blend: Float64Array;
  /** Input frames from absolute index histStart on, interleaved. */
  private hist: Float64Array;
  private histStart = 0;
  private histFrames = 0;
  private ipos = 0;
  private frac = 0;
  private totalIn = 0;
  /** Output of the last process() or flush(), interleaved. */
  out: Float64Array;

  constructor(fromRate: number, toRate: number, channels: number) {
    const g = gcd(fromRate, toRate);
    this.inc = fromRate / g;
    this.den = toRate / g;
    this.incInt = Math.floor(this.inc / this.den);
    this.incFrac = this.inc % this.den;
    this.channels = channels;
    const scale = Math.min(1, toRate / fromRate);
    const width = RESAMPLER_ZERO_CROSSINGS / scale; // window half-width in input frames
    this.half = Math.ceil(width);
    this.taps = 2 * this.half;
    this.nRows =
      this.den * this.taps <= RESAMPLER_MAX_EXACT_COEFFS
        ? this.den
        : Math.max(16, Math.ceil(RESAMPLER_ROWS_PER_CROSSING * scale));
    const taps = this.taps;
    const key = `${this.inc}/${this.den}`;
    let rows = filterCache.get(key);
    if (rows === undefined) {
      rows = filterRows(this.nRows, this.half, width, RESAMPLER_CUTOFF * scale);
      if (filterCache.size >= FILTER_CACHE_SIZE) filterCache.delete(filterCache.keys().next().value!);
      filterCache.set(key, rows);
    }
    this.rows = rows;
    this.blend = new Float64Array(taps);
    this.hist = new Float64Array(Math.max(1024, 4 * taps) * channels);
    this.out = new Float64Array(1024 * channels);
    this.reset();
  }

  /** Forgets the stream: the next input is frame 0 again. */
  reset(): void {
    this.histStart = -(this.half - 1);
    this.histFrames = this.half - 1;
    this.hist.fill(0, 0, this.histFrames * this.channels);
    this.ipos = 0;
    this.frac = 0;
    this.totalIn = 0;
  }

  /** Input frames taken but not yet reflected in the output (the look-ahead). */
  get pendingFrames(): number {
    return Math.max(0, this.totalIn - (this.ipos + this.frac / this.den));
  }

  /** Appends `frames` interleaved frames; returns the number of output frames now in `out`. */
  process(src: Float64Array, frames: number): number {
    this.append(src, frames);
    this.totalIn += frames;
    return this.run(false);
  }

  /** Ends the stream: emits the remaining output frames into `out`, then resets. */
  flush(): number {
    this.appendZeros(this.half);
    const n = this.run(true);
    this.reset();
    return n;
  }

  private reserveHist(frames: number): void {
    const need = (this.histFrames + frames) * this.channels;
    if (need > this.hist.length) {
      let cap = this.hist.length * 2;
      while (cap < need) cap *= 2;
      const next = new Float64Array(cap);
      next.set(this.hist.subarray(0, this.histFrames * this.channels));
      this.hist = next;
    }
  }

  private append(src: Float64Array, frames: number): void {
    this.reserveHist(frames);
    const n = frames * this.channels;
    this.hist.set(n === src.length ? src : src.subarray(0, n), this.histFrames * this.channels);
    this.histFrames += frames;
  }

  private appendZeros(frames: number): void {
    this.reserveHist(frames);
    const at = this.histFrames * this.channels;
    this.hist.fill(0, at, at + frames * this.channels);
    this.histFrames += frames;
  }

  private run(final: boolean): number {
    const ch = this.channels;
    const taps = this.taps;
    const half = this.half;
    const den = this.den;
    const nRows = this.nRows;
    const exact = nRows === den;
    const rows = this.rows;
    const blend = this.blend;
    const hist = this.hist;
    const histEnd = this.histStart + this.histFrames; // one past the last frame held
    // Bound on the frames this call can produce, to size `out` once.
    const avail = Math.max(0, histEnd - half - this.ipos);
    const bound = Math.ceil(((avail + 1) * den) / this.inc) + 1;
    if (bound * ch > this.out.length) {
      let cap = this.out.length * 2;
      while (cap < bound * ch) cap *= 2;
      this.out = new Float64Array(cap);
    }
    const out = this.out;
    let ipos = this.ipos;
    let frac = this.frac;
    let o = 0;
    let produced = 0;
    while (ipos + half < histEnd) {
      // At flush: only outputs whose time is within the input, t + step/2 < totalIn.
      if (final && 2 * frac + this.inc >= 2 * (this.totalIn - ipos) * den) break;
      let coef: Float64Array;
      let cOff: number;
      if (exact) {
        coef = rows;
        cOff = frac * taps;
      } else {
        const p = frac * nRows;
        const r = Math.floor(p / den);
        const a = (p - r * den) / den;
        cOff = r * taps;
        if (a === 0) {
          coef = rows;
        } else {
          const b = 1 - a;
          for (let j = 0; j < taps; j++) blend[j] = b * rows[cOff + j]! + a * rows[cOff + taps + j]!;
          coef = blend;
          cOff = 0;
        }
      }
      const base = (ipos - half + 1 - this.histStart) * ch;
      if (ch === 1) {
        let acc = 0;
        for (let j = 0; j < taps; j++) acc += coef[cOff + j]! * hist[base + j]!;
        out[o++] = acc;
      } else if (ch === 2) {
        let l = 0;
        let r = 0;
        for (let j = 0, p = base; j < taps; j++, p += 2) {
          const c = coef[cOff + j]!;
          l += c * hist[p]!;
          r += c * hist[p + 1]!;
        }
        out[o++] = l;
        out[o++] = r;
      } else {
        for (let c = 0; c < ch; c++) {
          let acc = 0;
          for (let j = 0, p = base + c; j < taps; j++, p += ch) acc += coef[cOff + j]! * hist[p]!;
          out[o++] = acc;
        }
      }
      produced++;
      ipos += this.incInt;
      frac += this.incFrac;
      if (frac >= den) {
        frac -= den;
        ipos++;
      }
    }
    this.ipos = ipos;
    this.frac = frac;
    // Drop the frames no later output can read.
    const drop = Math.min(ipos - half + 1 - this.histStart, this.histFrames);
    if (drop > 0) {
      hist.copyWithin(0, drop * ch, this.histFrames * ch);
      this.histStart += drop;
      this.histFrames -= drop;
    }
    return produced;
  }
}

// ---------------------------------------------------------------------------
// The converter

/** Input frames converted per step: bounds the float64 scratch buffers. */
const BLOCK_FRAMES = 1024;

function checkSpec(s: PcmFormatSpec, what: string, needConvertible: boolean): void {
  const bits = frameBits(s.format, s.channels);
  if (!Number.isInteger(s.channels) || s.channels < 1 || bits === 0 || bits % 8 !== 0) {
    throw new BackendError(`cannot convert ${what}: format ${s.format} with ${s.channels} channels`, {
      notSupported: true,
    });
  }
  if (needConvertible && !isConvertible(s.format)) {
    throw new BackendError(`cannot convert ${what}: format ${s.format} is not convertible`, {
      notSupported: true,
    });
  }
  if (!Number.isSafeInteger(s.rate) || s.rate < 1) {
    throw new BackendError(`cannot convert ${what}: rate ${s.rate}`, { notSupported: true });
  }
}

/**
 * A streaming converter from one format / channel count / rate to another.
 * Not safe to share between streams: it holds the partial frame and the
 * resampler's history of one stream.
 */
export class StreamConverter {
  readonly from: Readonly<PcmFormatSpec>;
  readonly to: Readonly<PcmFormatSpec>;
  /** All three equal: push() copies whole frames bit for bit. */
  readonly identity: boolean;
  readonly inFrameBytes: number;
  readonly outFrameBytes: number;
  private readonly inFmt: SampleFormat | undefined;
  private readonly outFmt: SampleFormat | undefined;
  private readonly bias: number;
  private readonly mixMode: number;
  private readonly matrix: Float64Array | null;
  private readonly mixBefore: boolean;
  private readonly mixAfter: boolean;
  private readonly resampler: Resampler | null;
  private readonly partial: Uint8Array;
  private partialLen = 0;
  private decoded: Float64Array;
  private mixed: Float64Array;
  private out: Uint8Array;
  private outView: DataView;
  private outLen = 0;

  constructor(from: PcmFormatSpec, to: PcmFormatSpec, options: StreamConverterOptions = {}) {
    this.from = { format: from.format, channels: from.channels, rate: from.rate };
    this.to = { format: to.format, channels: to.channels, rate: to.rate };
    this.identity = from.format === to.format && from.channels === to.channels && from.rate === to.rate;
    checkSpec(from, "from", !this.identity);
    checkSpec(to, "to", !this.identity);
    this.inFrameBytes = frameBits(from.format, from.channels) / 8;
    this.outFrameBytes = frameBits(to.format, to.channels) / 8;
    this.inFmt = FORMATS.get(from.format);
    this.outFmt = FORMATS.get(to.format);
    const inFloat =
      this.inFmt !== undefined && (this.inFmt.kind === KIND_FLOAT32 || this.inFmt.kind === KIND_FLOAT64);
    const resample = from.rate !== to.rate;
    this.bias = inFloat || resample ? 0.5 : 0;

    const fromCh = from.channels;
    const toCh = to.channels;
    let matrix: Float64Array | null = null;
    let mode = MIX_SELECT;
    const rows = options.mixMatrix ?? (toCh === 2 ? downmixToStereo(fromCh) : null);
    if (fromCh === toCh) {
      mode = MIX_SELECT;
    } else if (options.mixMatrix === undefined && fromCh === 1) {
      mode = MIX_DUPLICATE;
    } else if (options.mixMatrix === undefined && toCh === 1) {
      mode = MIX_AVERAGE;
    } else if (rows !== null) {
      if (
        rows.length !== toCh ||
        rows.some((r) => r.length !== fromCh || r.some((g) => !Number.isFinite(g)))
      ) {
        throw new BackendError(`mixMatrix must have ${toCh} rows of ${fromCh} finite gains`, {
          notSupported: true,
        });
      }
      mode = MIX_MATRIX;
      matrix = Float64Array.from(rows.flat());
    }
    this.mixMode = mode;
    this.matrix = matrix;
    const channelsDiffer = fromCh !== toCh;
    this.mixBefore = channelsDiffer && (!resample || fromCh > toCh);
    this.mixAfter = channelsDiffer && resample && fromCh < toCh;
    this.resampler =
      resample && !this.identity ? new Resampler(from.rate, to.rate, this.mixBefore ? toCh : fromCh) : null;

    this.partial = new Uint8Array(this.inFrameBytes);
    this.decoded = new Float64Array(this.identity ? 0 : BLOCK_FRAMES * fromCh);
    this.mixed = new Float64Array(channelsDiffer ? BLOCK_FRAMES * toCh : 0);
    this.out = new Uint8Array(4096);
    this.outView = new DataView(this.out.buffer);
  }

  /** Input frames pushed whose output the resampler still holds back (0 without resampling). */
  get pendingFrames(): number {
    return this.resampler === null ? 0 : this.resampler.pendingFrames;
  }

  /** Bytes of an incomplete input frame kept for the next push(). */
  get partialBytes(): number {
    return this.partialLen;
  }

  /**
   * Converts the whole input frames of `input` (after any partial frame left by
   * the previous call; a trailing partial frame is kept for the next call).
   * Returns the output bytes: a view into an internal buffer, valid until the
   * next push(), flush() or reset(). The input is not modified or retained.
   */
  push(input: Uint8Array): Uint8Array {
    this.outLen = 0;
    const fb = this.inFrameBytes;
    let off = 0;
    if (this.partialLen > 0) {
      const take = Math.min(fb - this.partialLen, input.length);
      this.partial.set(input.subarray(0, take), this.partialLen);
      this.partialLen += take;
      off = take;
      if (this.partialLen < fb) return this.out.subarray(0, 0);
      this.partialLen = 0;
      this.convert(this.partial, null, 0, 1);
    }
    const frames = Math.floor((input.length - off) / fb);
    if (frames > 0) {
      const inFmt = this.inFmt;
      const dv =
        !this.identity && inFmt !== undefined && (inFmt.kind === KIND_FLOAT32 || inFmt.kind === KIND_FLOAT64)
          ? new DataView(input.buffer, input.byteOffset, input.byteLength)
          : null;
      if (this.identity) {
        this.convert(input, dv, off, frames);
      } else {
        for (let done = 0; done < frames; done += BLOCK_FRAMES) {
          this.convert(input, dv, off + done * fb, Math.min(BLOCK_FRAMES, frames - done));
        }
      }
    }
    const rest = off + frames * fb;
    if (rest < input.length) {
      this.partial.set(input.subarray(rest), 0);
      this.partialLen = input.length - rest;
    }
    return this.out.subarray(0, this.outLen);
  }

  /**
   * Ends the stream: returns the frames the resampler still holds (empty without
   * resampling) and drops an incomplete trailing input frame. The converter is
   * then ready for a new stream. The result is valid until the next call.
   */
  flush(): Uint8Array {
    this.outLen = 0;
    this.partialLen = 0;
    if (this.resampler !== null) {
      const frames = this.resampler.flush();
      this.finish(this.resampler.out, frames);
    }
    return this.out.subarray(0, this.outLen);
  }

  /** Drops the partial frame and the resampler's history without output. */
  reset(): void {
    this.outLen = 0;
    this.partialLen = 0;
    this.resampler?.reset();
  }

  private reserveOut(bytes: number): void {
    const need = this.outLen + bytes;
    if (need > this.out.length) {
      let cap = this.out.length * 2;
      while (cap < need) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.out.subarray(0, this.outLen));
      this.out = next;
      this.outView = new DataView(next.buffer);
    }
  }

  private reserveMixed(frames: number): Float64Array {
    const need = frames * this.to.channels;
    if (need > this.mixed.length) {
      let cap = Math.max(16, this.mixed.length * 2);
      while (cap < need) cap *= 2;
      this.mixed = new Float64Array(cap);
    }
    return this.mixed;
  }

  private convert(src: Uint8Array, dv: DataView | null, off: number, frames: number): void {
    if (this.identity) {
      const n = frames * this.inFrameBytes;
      this.reserveOut(n);
      this.out.set(src.subarray(off, off + n), this.outLen);
      this.outLen += n;
      return;
    }
    const fromCh = this.from.channels;
    if (this.inFmt!.kind === KIND_FLOAT32 || this.inFmt!.kind === KIND_FLOAT64) {
      dv ??= new DataView(src.buffer, src.byteOffset, src.byteLength);
    }
    decode(this.inFmt!, src, dv, off, frames * fromCh, this.decoded);
    let cur = this.decoded;
    let n = frames;
    if (this.mixBefore) {
      const dst = this.reserveMixed(n);
      mixChannels(this.mixMode, this.matrix, cur, n, fromCh, dst, this.to.channels);
      cur = dst;
    }
    if (this.resampler !== null) {
      n = this.resampler.process(cur, n);
      cur = this.resampler.out;
    }
    this.finish(cur, n);
  }

  /** Mixes after resampling if that is the order, then encodes `frames` frames to the output. */
  private finish(src: Float64Array, frames: number): void {
    let cur = src;
    if (this.mixAfter) {
      const dst = this.reserveMixed(frames);
      mixChannels(this.mixMode, this.matrix, cur, frames, this.from.channels, dst, this.to.channels);
      cur = dst;
    }
    const bytes = frames * this.outFrameBytes;
    this.reserveOut(bytes);
    encode(this.outFmt!, cur, frames * this.to.channels, this.out, this.outView, this.outLen, this.bias);
    this.outLen += bytes;
  }
}

/** Converts a whole buffer (push + flush); returns a new array. */
export function convertBuffer(
  input: Uint8Array,
  from: PcmFormatSpec,
  to: PcmFormatSpec,
  options?: StreamConverterOptions,
): Uint8Array {
  const conv = new StreamConverter(from, to, options);
  const head = conv.push(input).slice(); // flush() reuses the buffer push() returned
  const tail = conv.flush();
  if (tail.length === 0) return head;
  const all = new Uint8Array(head.length + tail.length);
  all.set(head);
  all.set(tail, head.length);
  return all;
}
