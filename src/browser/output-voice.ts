/// <reference lib="dom" />
import type { OutputSource, Voice } from "../audio/backend.js";
import { StreamConverter } from "../audio/convert.js";
import type { PcmParams } from "../audio/pcm-params.js";
import { BackendError } from "../errors.js";
import { VIRTIO_SND_PCM_FMT_FLOAT } from "../spec/constants.js";
import { OUTPUT_PROCESSOR, type RingNotice, type RingProcessorOptions } from "./protocol.js";
import { FloatRing, Slot } from "./ring.js";

/** Counters of one voice, for a page's display and for tests. */
export interface VoiceStats {
  readonly streamId: number;
  readonly direction: "output" | "input";
  /** Frames of the stream (in its own format and rate) taken from the guest (output) or given to it (input). */
  readonly streamFrames: number;
  /** Frames at the context's rate the worklet played from the ring (output) or captured (input). */
  readonly contextFrames: number;
  /** Output: times the worklet ran out of frames while the stream ran and the guest had some. */
  readonly underruns: number;
  /** Output: frames of silence those underruns played. */
  readonly underrunFrames: number;
  /** Output: frames of silence played while the guest had nothing to play (its own underrun, or its end). */
  readonly starvedFrames: number;
  /** Input: frames the worklet captured that found no room in the ring. */
  readonly overrunFrames: number;
  /** Frames in the ring now. */
  readonly queuedFrames: number;
  /** Output: frames the voice keeps queued now (raised by underruns). */
  readonly targetFrames: number;
}

export interface OutputVoiceOptions {
  /** Frames at the context's rate to keep in the ring (at most half the guest's buffer). */
  readonly targetFrames: number;
  /** Up to this many after underruns: each one raises the target by half. */
  readonly maxTargetFrames: number;
  /** Frames the worklet plays between two refills. */
  readonly notifyFrames: number;
  readonly destination: AudioNode;
  /** Channels of the worklet's output (the stream's, or fewer: the converter downmixes). */
  readonly channels: number;
}

/**
 * An output voice: the stream's bytes, converted to float32 at the context's
 * rate, go through a FloatRing to the output processor. The ring is topped up
 * to `targetFrames` each time the worklet says it has played `notifyFrames`,
 * so the guest's bytes are taken exactly as fast as the audio hardware plays
 * them, whatever the main thread's timers do.
 */
export class WebAudioOutputVoice implements Voice {
  readonly ring: FloatRing;
  private readonly node: AudioWorkletNode;
  private readonly converter: StreamConverter;
  private readonly scratch: Uint8Array;
  private readonly inFrameBytes: number;
  private readonly ratio: number;
  private running = false;
  private closed = false;
  private streamFrames = 0;
  private targetFrames: number;
  private readonly maxTargetFrames: number;
  private underrunsSeen = 0;

  constructor(
    private readonly context: BaseAudioContext,
    readonly streamId: number,
    params: PcmParams,
    private readonly source: OutputSource,
    private readonly options: OutputVoiceOptions,
  ) {
    const rate = context.sampleRate;
    this.converter = new StreamConverter(
      { format: params.format, channels: params.channels, rate: params.rate },
      { format: VIRTIO_SND_PCM_FMT_FLOAT, channels: options.channels, rate },
    );
    this.inFrameBytes = this.converter.inFrameBytes;
    this.ratio = params.rate / rate;
    // Never ask the guest for more than half its buffer: a read it cannot fill is an underrun
    // the stream reports to the guest (an XRUN event), though the ring still plays.
    const half = Math.floor(params.bufferBytes / this.inFrameBytes / 2 / this.ratio);
    this.maxTargetFrames = Math.max(128, Math.min(options.maxTargetFrames, half));
    this.targetFrames = Math.min(options.targetFrames, this.maxTargetFrames);
    // A refill asks for at most targetFrames (plus rounding); the resampler may release a few more.
    const capacity = this.maxTargetFrames * 2 + options.notifyFrames + 4096;
    this.ring = FloatRing.create(options.channels, capacity);
    this.scratch = new Uint8Array((Math.ceil(this.maxTargetFrames * this.ratio) + 2) * this.inFrameBytes);
    const processorOptions: RingProcessorOptions = {
      buffer: this.ring.buffer,
      channels: options.channels,
      notifyFrames: options.notifyFrames,
    };
    this.node = new AudioWorkletNode(context, OUTPUT_PROCESSOR, {
      numberOfInputs: 0,
      numberOfOutputs: 1,
      outputChannelCount: [options.channels],
      processorOptions,
    });
    this.node.port.onmessage = (e: MessageEvent<RingNotice>) => {
      if (e.data.ended) this.disconnect();
      else this.refill();
    };
    this.node.connect(options.destination);
  }

  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.ring.set(Slot.Dry, 0);
    // Filled first: the stream's first bytes are not late however long the first conversion takes.
    this.refill();
    this.ring.set(Slot.Active, 1);
  }

  /**
   * Stops taking the guest's bytes. What the ring holds still plays: those
   * bytes were taken (their messages completed) as not yet audible, so the
   * tail of a drained stream is heard in full.
   */
  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.ring.set(Slot.Active, 0);
    // The resampler's held-back frames belong to what was taken.
    this.queue(this.converter.flush());
  }

  close(): void {
    if (this.closed) return;
    this.stop();
    this.closed = true;
    this.ring.set(Slot.Closing, 1);
    if (this.context.state === "closed") this.disconnect();
  }

  latencyBytes(): number {
    const ctx = this.context as Partial<AudioContext>;
    const outputSeconds = (ctx.baseLatency ?? 0) + (ctx.outputLatency ?? 0);
    const frames =
      Math.round((this.ring.available() + outputSeconds * this.context.sampleRate) * this.ratio) +
      this.converter.pendingFrames;
    return frames * this.inFrameBytes + this.converter.partialBytes;
  }

  stats(): VoiceStats {
    const r = this.ring;
    return {
      streamId: this.streamId,
      direction: "output",
      streamFrames: this.streamFrames,
      contextFrames: r.get(Slot.Frames) >>> 0,
      underruns: r.get(Slot.Underruns),
      underrunFrames: r.get(Slot.UnderrunFrames),
      starvedFrames: r.get(Slot.StarvedFrames),
      overrunFrames: 0,
      queuedFrames: r.available(),
      targetFrames: this.targetFrames,
    };
  }

  /** The AudioContext closed: nothing will play again. */
  contextClosed(): void {
    if (this.closed) return;
    this.running = false;
    this.source.fail(new BackendError(`stream ${this.streamId}: the AudioContext was closed`));
  }

  /** Tops the ring up to targetFrames from the stream. */
  private refill(): void {
    if (!this.running) return;
    const underruns = this.ring.get(Slot.Underruns);
    if (underruns !== this.underrunsSeen) {
      // The page's main thread stalled longer than the ring lasts: keep more from now on.
      this.underrunsSeen = underruns;
      this.targetFrames = Math.min(this.maxTargetFrames, Math.ceil(this.targetFrames * 1.5));
    }
    const queued = this.ring.available() + this.converter.pendingFrames / this.ratio;
    const need = this.targetFrames - queued;
    if (need <= 0) return;
    const frames = Math.min(Math.ceil(need * this.ratio), this.scratch.length / this.inFrameBytes);
    let want = frames * this.inFrameBytes;
    // While the ring still has audio, take only what the guest has queued: a short read is an
    // underrun the guest is told of, and the sound has not stopped. Near empty, ask in full.
    const queuedBytes = this.source.queuedBytes?.();
    if (
      queuedBytes !== undefined &&
      queuedBytes < want &&
      this.ring.available() >= this.options.notifyFrames * 2
    ) {
      want = queuedBytes - (queuedBytes % this.inFrameBytes);
      if (want === 0) return;
    }
    const got = this.source.read(this.scratch, 0, want);
    // The stream may have failed the voice meanwhile.
    if (!this.running) return;
    this.ring.set(Slot.Dry, got < want ? 1 : 0);
    this.streamFrames += got / this.inFrameBytes;
    this.queue(this.converter.push(this.scratch.subarray(0, got)));
  }

  private queue(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    // The converter's output starts at offset 0 of its own buffer: aligned for float32.
    const floats = new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length >> 2);
    const frames = floats.length / this.options.channels;
    const put = this.ring.write(floats, frames);
    if (put < frames) {
      this.running = false;
      this.source.fail(
        new BackendError(`stream ${this.streamId}: ${frames - put} frames did not fit the worklet's ring`),
      );
    }
  }

  private disconnect(): void {
    this.node.port.onmessage = null;
    this.node.port.close();
    this.node.disconnect();
  }
}
