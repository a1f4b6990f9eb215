import { type PcmFormatSpec, StreamConverter, isConvertible } from "./convert.js";
import { BackendError, VirtioSndError } from "../errors.js";
import { VIRTIO_SND_PCM_FMT_FLOAT64 } from "../spec/constants.js";
import { type PcmParams, fillSilence, frameBytes, silencePattern } from "./pcm-params.js";

/** What a capture source needs to know about the stream it feeds. */
export type CaptureParams = Pick<PcmParams, "format" | "channels" | "rate">;

/** One stream's view of a capture source, from its first frame on. */
export interface CaptureReader {
  /** Writes the next `length` bytes of the stream (in its own format) into dest[offset...]. */
  fill(dest: Uint8Array, offset: number, length: number): void;
  /** The stream is done with it. */
  close?(): void;
}

/**
 * Something an input stream can record from: a file, a tone, silence. Each
 * open() (one per prepared input voice) starts from the beginning. open()
 * throws BackendError (notSupported) when it cannot produce the stream's
 * format, so the stream's PREPARE fails with NOT_SUPP.
 */
export interface CaptureSource {
  open(params: CaptureParams): CaptureReader;
}

/** Silence in the stream's format (half scale for unsigned formats, the codec's zero for µ-law and A-law). */
export class SilenceSource implements CaptureSource {
  open(params: CaptureParams): CaptureReader {
    const pattern = silencePattern(params.format);
    let position = 0;
    return {
      fill(dest, offset, length) {
        fillSilence(dest, offset, length, pattern, position);
        position += length;
      },
    };
  }
}

function requireConvertible(format: number, what: string): void {
  if (!isConvertible(format))
    throw new BackendError(`${what} cannot produce format ${format}`, { notSupported: true });
}

function sameSpec(a: CaptureParams, b: CaptureParams): boolean {
  return a.format === b.format && a.channels === b.channels && a.rate === b.rate;
}

/**
 * A reader fed by `pull`, which returns the next bytes in the stream's format
 * (a view valid until the next call) or null when there are no more; after
 * that, silence. Bytes a fill() did not take wait for the next one.
 */
class PullReader implements CaptureReader {
  private readonly silence: Uint8Array;
  private held = new Uint8Array(0);
  private heldStart = 0;
  private heldEnd = 0;
  private ended = false;
  /** Bytes of the stream handed out so far (keeps silence in phase with the samples). */
  private position = 0;

  constructor(
    params: CaptureParams,
    private readonly pull: () => Uint8Array | null,
  ) {
    this.silence = silencePattern(params.format);
  }

  fill(dest: Uint8Array, offset: number, length: number): void {
    let done = 0;
    while (done < length) {
      if (this.heldEnd > this.heldStart) {
        const n = Math.min(this.heldEnd - this.heldStart, length - done);
        dest.set(this.held.subarray(this.heldStart, this.heldStart + n), offset + done);
        this.heldStart += n;
        done += n;
        continue;
      }
      if (this.ended) break;
      const next = this.pull();
      if (next === null) {
        this.ended = true;
        break;
      }
      const n = Math.min(next.length, length - done);
      dest.set(next.subarray(0, n), offset + done);
      done += n;
      if (n < next.length) this.hold(next.subarray(n));
    }
    if (done < length) fillSilence(dest, offset + done, length - done, this.silence, this.position + done);
    this.position += length;
  }

  private hold(rest: Uint8Array): void {
    if (this.held.length < rest.length) this.held = new Uint8Array(rest.length);
    this.held.set(rest, 0);
    this.heldStart = 0;
    this.heldEnd = rest.length;
  }
}

/** Input bytes per pull: enough for a few periods, small enough to keep conversions incremental. */
const PULL_FRAMES = 4096;

/**
 * Recorded samples: `data` from the first frame at START, then silence. With
 * `spec` (the format, channels and rate of `data`), a stream that differs
 * gets the samples through a StreamConverter, a block at a time; without it,
 * `data` is taken to be in the stream's own format, byte for byte.
 */
export class BytesSource implements CaptureSource {
  constructor(
    readonly data: Uint8Array,
    readonly spec?: PcmFormatSpec,
  ) {}

  open(params: CaptureParams): CaptureReader {
    const data = this.data;
    const from = this.spec;
    const inFormat = from ?? params;
    const block = Math.max(1, Math.floor(PULL_FRAMES * frameBytes(inFormat.format, inFormat.channels)));
    let pos = 0;
    if (from === undefined || sameSpec(from, params)) {
      return new PullReader(params, () => {
        if (pos >= data.length) return null;
        const end = Math.min(data.length, pos + block);
        const out = data.subarray(pos, end);
        pos = end;
        return out;
      });
    }
    requireConvertible(from.format, "this recording");
    requireConvertible(params.format, "this recording");
    const converter = new StreamConverter(
      { format: from.format, channels: from.channels, rate: from.rate },
      { format: params.format, channels: params.channels, rate: params.rate },
    );
    let flushed = false;
    return new PullReader(params, () => {
      while (pos < data.length) {
        const end = Math.min(data.length, pos + block);
        const out = converter.push(data.subarray(pos, end));
        pos = end;
        if (out.length > 0) return out;
      }
      if (flushed) return null;
      flushed = true;
      return converter.flush();
    });
  }
}

export interface ToneOptions {
  /** Hz; default 440. */
  frequency?: number;
  /** Peak amplitude as a fraction of full scale, 0 to 1; default 0.5 (-6 dBFS). */
  level?: number;
}

/**
 * A sine wave on every channel, in the stream's own format: frame n is
 * level × sin(2π·frequency·n / rate), computed from n each time so the phase
 * never drifts. Samples are made as 64-bit floats and converted by a
 * StreamConverter.
 */
export class ToneSource implements CaptureSource {
  readonly frequency: number;
  readonly level: number;

  constructor(options: ToneOptions = {}) {
    this.frequency = options.frequency ?? 440;
    this.level = options.level ?? 0.5;
    if (!Number.isFinite(this.frequency) || this.frequency < 0)
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `tone frequency must be a finite number >= 0, not ${this.frequency}`,
      );
    if (!Number.isFinite(this.level) || this.level < 0 || this.level > 1)
      throw new VirtioSndError("ERR_INVALID_CONFIG", `tone level must be from 0 to 1, not ${this.level}`);
  }

  open(params: CaptureParams): CaptureReader {
    requireConvertible(params.format, "a tone source");
    const { channels, rate } = params;
    const f64: PcmFormatSpec = { format: VIRTIO_SND_PCM_FMT_FLOAT64, channels, rate };
    const converter = new StreamConverter(f64, { format: params.format, channels, rate });
    const samples = new Float64Array(PULL_FRAMES * channels);
    const bytes = new Uint8Array(samples.buffer);
    const { frequency, level } = this;
    let frame = 0;
    return new PullReader(params, () => {
      for (let i = 0; i < PULL_FRAMES; i++, frame++) {
        // (n·f mod rate) / rate: the phase in cycles, exact for whole frequencies however long it runs.
        const x = level * Math.sin((2 * Math.PI * ((frame * frequency) % rate)) / rate);
        for (let c = 0; c < channels; c++) samples[i * channels + c] = x;
      }
      return converter.identity ? bytes : converter.push(bytes);
    });
  }
}
