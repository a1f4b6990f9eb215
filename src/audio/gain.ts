/**
 * Gain in place on PCM samples of every format virtio-snd names, and
 * GainBackend: an AudioBackend that applies a per-stream, per-channel gain
 * between the device and the backend it wraps (what a guest's mixer volume
 * and mute switch do). Core code: no Node built-ins.
 *
 * Exactness (what a guest's dB scale promises):
 * - integer formats (and G.711 through its 16-bit linear value): the signed
 *   value v becomes round(v * gain), rounding half away from zero (so a
 *   waveform and its negation stay each other's negation), clamped to the
 *   format's range; unsigned formats are scaled about their midpoint;
 * - FLOAT and FLOAT64: x * gain in the format's precision, never clamped;
 * - gain 0 gives the format's silence (0x80 for U8, 0xff for µ-law...);
 * - gain 1 on every channel leaves the bytes untouched (bit-exact passthrough);
 * - formats without linear samples (DSD, IEC958 subframes) pass unscaled.
 */
import { BackendError, VirtioSndError } from "../errors.js";
import type { AudioBackend, InputSink, OutputSource, Voice } from "./backend.js";
import { aLawToLinear, linearToALaw, linearToMuLaw, muLawToLinear } from "./convert.js";
import type { PcmParams } from "./pcm-params.js";
import {
  KIND_A_LAW,
  KIND_FLOAT32,
  KIND_FLOAT64,
  KIND_MU_LAW,
  SAMPLE_FORMATS,
  type SampleFormat,
} from "./sample-format.js";

/** Can gain be applied to samples of this VIRTIO_SND_PCM_FMT_*? (Every linear and G.711 format.) */
export function gainSupported(format: number): boolean {
  return SAMPLE_FORMATS.has(format);
}

/** The linear factor of a level in dB: 10^(dB/20); -Infinity gives 0. */
export function dbToGain(db: number): number {
  return db === -Infinity ? 0 : 10 ** (db / 20);
}

/** round(y), halves away from zero. */
function roundHalfAway(y: number): number {
  return y < 0 ? -Math.floor(-y + 0.5) : Math.floor(y + 0.5);
}

function scaleInt(y: number, bits: number): number {
  const max = 2 ** (bits - 1) - 1;
  const r = roundHalfAway(y);
  return r > max ? max : r < -max - 1 ? -max - 1 : r;
}

/** Reads the signed value of an integer sample (only its low `bits` bits count). */
function readInt(b: Uint8Array, o: number, s: SampleFormat): number {
  let u = 0;
  for (let i = s.bytes - 1; i >= 0; i--) u = u * 256 + b[o + i]!;
  const span = 2 ** s.bits;
  u %= span;
  const half = span / 2;
  return s.signed ? (u >= half ? u - span : u) : u - half;
}

/** Writes a signed value: sign-extended to the container (signed), or offset and zero-extended (unsigned). */
function writeInt(b: Uint8Array, o: number, s: SampleFormat, v: number): void {
  const container = 2 ** (8 * s.bytes);
  let u = s.signed ? (v < 0 ? v + container : v) : v + 2 ** (s.bits - 1);
  for (let i = 0; i < s.bytes; i++) {
    b[o + i] = u % 256;
    u = Math.floor(u / 256);
  }
}

/**
 * Multiplies whole samples of `bytes[offset, offset + length)` (a whole number
 * of samples) in place: the sample at `offset` is of channel `channel`, and
 * channel c takes gains[c % gains.length]. Returns the channel of the sample
 * after the last. Throws ERR_BACKEND_NOT_SUPPORTED for an unknown format.
 */
export function applyGain(
  format: number,
  channels: number,
  bytes: Uint8Array,
  offset: number,
  length: number,
  gains: readonly number[],
  channel = 0,
): number {
  const s = SAMPLE_FORMATS.get(format);
  if (s === undefined)
    throw new BackendError(`gain: unknown sample format ${format}`, { notSupported: true });
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const end = offset + length - (length % s.bytes);
  let c = channel;
  for (let o = offset; o < end; o += s.bytes) {
    const g = gains.length === 0 ? 1 : gains[c % gains.length]!;
    if (g !== 1) {
      switch (s.kind) {
        case KIND_FLOAT32:
          view.setFloat32(o, view.getFloat32(o, true) * g, true);
          break;
        case KIND_FLOAT64:
          view.setFloat64(o, view.getFloat64(o, true) * g, true);
          break;
        case KIND_MU_LAW:
          bytes[o] = linearToMuLaw(scaleInt(muLawToLinear(bytes[o]!) * g, 16));
          break;
        case KIND_A_LAW:
          bytes[o] = linearToALaw(scaleInt(aLawToLinear(bytes[o]!) * g, 16));
          break;
        default:
          writeInt(bytes, o, s, scaleInt(readInt(bytes, o, s) * g, s.bits));
      }
    }
    if (++c === channels) c = 0;
  }
  return c;
}

const isUnity = (gains: readonly number[]): boolean => gains.every((g) => g === 1);

/** Where a voice's byte stream stands: the channel of the current sample, and how far into it. */
interface Position {
  channel: number;
  /** Bytes of the current sample already seen (0 at a sample boundary). */
  partial: number;
}

/**
 * Scales `length` bytes of a voice's stream at `pos`. Buffers end on sample
 * boundaries (guests send whole frames); a sample split between two buffers
 * passes unscaled rather than be held back.
 */
function scaleStream(
  params: PcmParams,
  s: SampleFormat,
  bytes: Uint8Array,
  offset: number,
  length: number,
  gains: readonly number[],
  pos: Position,
): void {
  let o = offset;
  let n = length;
  if (pos.partial > 0) {
    const rest = Math.min(n, s.bytes - pos.partial);
    o += rest;
    n -= rest;
    pos.partial += rest;
    if (pos.partial < s.bytes) return;
    pos.partial = 0;
    pos.channel = (pos.channel + 1) % params.channels;
  }
  const whole = n - (n % s.bytes);
  pos.channel = isUnity(gains)
    ? (pos.channel + whole / s.bytes) % params.channels
    : applyGain(params.format, params.channels, bytes, o, whole, gains, pos.channel);
  pos.partial = n - whole;
}

/**
 * An AudioBackend that scales each stream's samples by its gain on the way
 * between the device and `inner`: output streams after the guest's bytes
 * leave the stream and before `inner` plays them, input streams after `inner`
 * captured them and before the guest gets them. Gains change at once, mid
 * stream included; at unity (the default) bytes pass untouched.
 */
export class GainBackend implements AudioBackend {
  readonly name: string;
  private readonly gains = new Map<number, readonly number[]>();

  constructor(readonly inner: AudioBackend) {
    this.name = inner.name;
  }

  /**
   * Stream `streamId`'s linear gain per channel: channel c takes
   * gains[c % gains.length]; 0 mutes; [] or all 1 is unity. A gain that is
   * negative or not finite throws ERR_INVALID_CONFIG.
   */
  setGain(streamId: number, gains: readonly number[]): void {
    for (const g of gains)
      if (!Number.isFinite(g) || g < 0)
        throw new VirtioSndError("ERR_INVALID_CONFIG", `gain: ${g} is not a finite factor >= 0`);
    this.gains.set(streamId, [...gains]);
  }

  /** Stream `streamId`'s gains as last set ([] when never set: unity). */
  gain(streamId: number): readonly number[] {
    return this.gains.get(streamId) ?? [];
  }

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    const s = SAMPLE_FORMATS.get(params.format);
    // No linear samples to scale (DSD, IEC958 subframes): the stream passes as it is.
    if (s === undefined) return this.inner.openOutput(streamId, params, source);
    // The wrapper tells what is queued only when its source does (a voice reads differently without).
    const scaler = new StreamScaler(this, streamId, params, s);
    const scaled = hasQueuedBytes(source)
      ? new ScaledQueuedSource(source, scaler)
      : new ScaledSource(source, scaler);
    return this.inner.openOutput(streamId, params, scaled);
  }

  openInput(streamId: number, params: PcmParams, sink: InputSink): Voice {
    const s = SAMPLE_FORMATS.get(params.format);
    if (s === undefined) return this.inner.openInput(streamId, params, sink);
    return this.inner.openInput(
      streamId,
      params,
      new ScaledSink(sink, new StreamScaler(this, streamId, params, s)),
    );
  }

  close(): void {
    this.inner.close?.();
  }
}

// Classes, not objects of closures: the voice's calls through them then reach the same functions
// for every stream, so the JIT's code for one stream stays valid for the next.

/** One stream's scaling: its format, its gains as last set, and where in a frame the bytes are. */
class StreamScaler {
  private readonly pos: Position = { channel: 0, partial: 0 };

  constructor(
    private readonly backend: GainBackend,
    private readonly streamId: number,
    private readonly params: PcmParams,
    private readonly format: SampleFormat,
  ) {}

  /** The stream's gains now. */
  gains(): readonly number[] {
    return this.backend.gain(this.streamId);
  }

  /** Scales the next `length` bytes of the stream, in bytes[offset...]. */
  scale(bytes: Uint8Array, offset: number, length: number, gains: readonly number[]): void {
    scaleStream(this.params, this.format, bytes, offset, length, gains, this.pos);
  }
}

/** An output stream's source, scaled as it is read. */
class ScaledSource implements OutputSource {
  constructor(
    private readonly source: OutputSource,
    private readonly scaler: StreamScaler,
  ) {}

  read(dest: Uint8Array, offset: number, length: number): number {
    const n = this.source.read(dest, offset, length);
    this.scaler.scale(dest, offset, n, this.scaler.gains());
    return n;
  }

  fail(error: Error): void {
    this.source.fail(error);
  }
}

function hasQueuedBytes(source: OutputSource): source is OutputSource & { queuedBytes(): number } {
  return source.queuedBytes !== undefined;
}

/** A ScaledSource whose source tells how many bytes are queued. */
class ScaledQueuedSource extends ScaledSource {
  constructor(
    private readonly queued: OutputSource & { queuedBytes(): number },
    scaler: StreamScaler,
  ) {
    super(queued, scaler);
  }

  queuedBytes(): number {
    return this.queued.queuedBytes();
  }
}

/** An input stream's sink, given the captured audio scaled. */
class ScaledSink implements InputSink {
  private scratch = new Uint8Array(0);

  constructor(
    private readonly sink: InputSink,
    private readonly scaler: StreamScaler,
  ) {}

  write(src: Uint8Array, offset: number, length: number): number {
    const gains = this.scaler.gains();
    if (isUnity(gains)) {
      this.scaler.scale(src, offset, length, gains);
      return this.sink.write(src, offset, length);
    }
    // The backend's buffer is its own: scale a copy.
    if (this.scratch.length < length) this.scratch = new Uint8Array(length);
    this.scratch.set(src.subarray(offset, offset + length));
    this.scaler.scale(this.scratch, 0, length, gains);
    return this.sink.write(this.scratch, 0, length);
  }

  fail(error: Error): void {
    this.sink.fail(error);
  }
}
