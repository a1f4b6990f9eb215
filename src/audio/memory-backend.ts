import type { AudioBackend, InputSink, OutputSource, Voice } from "./backend.js";
import { ByteBuffer } from "./byte-buffer.js";
import type { Clock } from "./clock.js";
import { PacedVoice, periodFrames } from "./paced-voice.js";
import { type PcmParams, fillSilence, silencePattern } from "./pcm-params.js";

/** What one output voice of the memory backend received. */
export interface MemoryPlayback {
  readonly streamId: number;
  readonly params: PcmParams;
  /** Every byte the stream supplied, in order (silence for underruns is not included). */
  readonly data: ByteBuffer;
  /** Chunks in which the stream supplied fewer bytes than were due. */
  underruns: number;
  /** Bytes of silence played because the stream had nothing. */
  underrunBytes: number;
  /** Clock time (ns) of each chunk and how many bytes it got, when `log` is on. */
  readonly chunks: { time: number; bytes: number }[];
  closed: boolean;
}

/** What one input voice of the memory backend delivered. */
export interface MemoryCapture {
  readonly streamId: number;
  readonly params: PcmParams;
  /** Bytes the stream took, in order. */
  readonly delivered: ByteBuffer;
  /** Chunks in which some bytes had no buffer (an overrun). */
  overruns: number;
  overrunBytes: number;
  closed: boolean;
}

export interface MemoryBackendOptions {
  clock: Clock;
  /** Frames per tick; by default one period of the stream. */
  chunkFrames?: number;
  /**
   * What input stream `streamId` captures: these bytes from the first frame at
   * START, then silence. Default: silence.
   */
  input?: (streamId: number, params: PcmParams) => Uint8Array;
  /** Keep a per-chunk log of times and sizes (for timing tests). */
  log?: boolean;
  /** Keep the played bytes (default true); false makes this a paced null sink. */
  retain?: boolean;
}

/**
 * A backend that plays into memory and records from memory, on a Clock.
 * With a VirtualClock, tests run faster than real time and deterministically.
 */
export class MemoryBackend implements AudioBackend {
  readonly name = "memory";
  readonly playbacks: MemoryPlayback[] = [];
  readonly captures: MemoryCapture[] = [];

  constructor(private readonly options: MemoryBackendOptions) {}

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    const record: MemoryPlayback = {
      streamId,
      params,
      data: new ByteBuffer(this.options.retain === false ? 16 : params.bufferBytes),
      underruns: 0,
      underrunBytes: 0,
      chunks: [],
      closed: false,
    };
    this.playbacks.push(record);
    return new MemoryOutputVoice(this.options, params, source, record);
  }

  openInput(streamId: number, params: PcmParams, sink: InputSink): Voice {
    const record: MemoryCapture = {
      streamId,
      params,
      delivered: new ByteBuffer(params.bufferBytes),
      overruns: 0,
      overrunBytes: 0,
      closed: false,
    };
    this.captures.push(record);
    const data = this.options.input?.(streamId, params) ?? new Uint8Array(0);
    return new MemoryInputVoice(this.options, params, sink, record, data);
  }

  /** Playbacks of one stream, oldest first. */
  playbacksOf(streamId: number): MemoryPlayback[] {
    return this.playbacks.filter((p) => p.streamId === streamId);
  }

  capturesOf(streamId: number): MemoryCapture[] {
    return this.captures.filter((c) => c.streamId === streamId);
  }
}

class MemoryOutputVoice extends PacedVoice {
  private readonly silence: Uint8Array;
  private readonly scratch: Uint8Array;

  constructor(
    private readonly options: MemoryBackendOptions,
    params: PcmParams,
    private readonly source: OutputSource,
    private readonly record: MemoryPlayback,
  ) {
    super(options.clock, params, options.chunkFrames ?? periodFrames(params));
    this.silence = silencePattern(params.format);
    this.scratch = new Uint8Array(options.retain === false ? this.chunkBytes : 0);
  }

  protected onChunk(): void {
    const want = this.chunkBytes;
    let got: number;
    if (this.options.retain === false) {
      got = this.source.read(this.scratch, 0, want);
    } else {
      const data = this.record.data;
      // Guest bytes land straight in the recording: one copy.
      got = this.source.read(data.reserve(want), data.length, want);
      data.commit(got);
    }
    if (got < want) {
      this.record.underruns++;
      this.record.underrunBytes += want - got;
      if (this.options.retain === false) fillSilence(this.scratch, got, want - got, this.silence);
    }
    if (this.options.log) this.record.chunks.push({ time: this.clock.now(), bytes: got });
  }

  protected override onClose(): void {
    this.record.closed = true;
  }
}

class MemoryInputVoice extends PacedVoice {
  private readonly chunk: Uint8Array;
  private readonly silence: Uint8Array;
  private readonly retain: boolean;
  private position = 0;

  constructor(
    options: MemoryBackendOptions,
    params: PcmParams,
    private readonly sink: InputSink,
    private readonly record: MemoryCapture,
    private readonly data: Uint8Array,
  ) {
    super(options.clock, params, options.chunkFrames ?? periodFrames(params));
    this.chunk = new Uint8Array(this.chunkBytes);
    this.silence = silencePattern(params.format);
    this.retain = options.retain !== false;
  }

  protected onChunk(): void {
    const n = this.chunkBytes;
    const fromData = Math.max(0, Math.min(n, this.data.length - this.position));
    if (fromData > 0) this.chunk.set(this.data.subarray(this.position, this.position + fromData), 0);
    if (fromData < n) fillSilence(this.chunk, fromData, n - fromData, this.silence, this.position + fromData);
    this.position += n;
    const taken = this.sink.write(this.chunk, 0, n);
    if (this.retain) this.record.delivered.append(this.chunk, 0, taken);
    if (taken < n) {
      this.record.overruns++;
      this.record.overrunBytes += n - taken;
    }
  }

  protected override onClose(): void {
    this.record.closed = true;
  }
}
