/**
 * The audio backend of a replay: capture from what the recorded guest
 * received, a period at a time, as the recorded device captured it.
 *
 * No Node built-ins: this is core code.
 */
import type { AudioBackend, InputSink, OutputSource, Voice } from "../audio/backend.js";
import type { Clock } from "../audio/clock.js";
import type { MemoryBackend } from "../audio/memory-backend.js";
import { PacedVoice, periodFrames } from "../audio/paced-voice.js";
import { type PcmParams, fillSilence, silencePattern } from "../audio/pcm-params.js";

/** What the recording captured (trace-analysis.ts's Analysis is one). */
export interface RecordedCapture {
  /** The bytes input stream `streamId` received in its `k`th capture session (PREPARE to RELEASE). */
  rxSession(streamId: number, k: number): Uint8Array;
}

/**
 * Outputs play into the replay's output backend (a MemoryBackend unless a live
 * replay gives another); inputs capture what the recording received (or, with
 * `input`, from the MemoryBackend).
 */
export class ReplayBackend implements AudioBackend {
  readonly name = "replay";
  /** Bytes taken per input stream by recorded-input voices. */
  readonly captured = new Map<number, number>();
  private readonly sessions = new Map<number, number>();

  constructor(
    private readonly clock: Clock,
    private readonly output: AudioBackend,
    private readonly memory: MemoryBackend,
    private readonly recording: RecordedCapture | null,
    private readonly chunkFrames: number | undefined,
  ) {}

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    return this.output.openOutput(streamId, params, source);
  }

  openInput(streamId: number, params: PcmParams, sink: InputSink): Voice {
    if (this.recording === null) return this.memory.openInput(streamId, params, sink);
    const k = this.sessions.get(streamId) ?? 0;
    this.sessions.set(streamId, k + 1);
    return new RecordedInputVoice(
      this.clock,
      params,
      this.chunkFrames ?? periodFrames(params),
      sink,
      this.recording.rxSession(streamId, k),
      (n) => this.captured.set(streamId, (this.captured.get(streamId) ?? 0) + n),
    );
  }
}

/**
 * Offers the recorded bytes a period at a time, then silence; bytes count as
 * captured only when the stream took them, so a replay overrun shifts nothing.
 */
class RecordedInputVoice extends PacedVoice {
  private readonly chunk: Uint8Array;
  private readonly silence: Uint8Array;
  private position = 0;

  constructor(
    clock: Clock,
    params: PcmParams,
    chunkFrames: number,
    private readonly sink: InputSink,
    private readonly data: Uint8Array,
    private readonly taken: (n: number) => void,
  ) {
    super(clock, params, chunkFrames);
    this.chunk = new Uint8Array(this.chunkBytes);
    this.silence = silencePattern(params.format);
  }

  protected onChunk(): void {
    const n = this.chunkBytes;
    const fromData = Math.max(0, Math.min(n, this.data.length - this.position));
    if (fromData > 0) this.chunk.set(this.data.subarray(this.position, this.position + fromData), 0);
    if (fromData < n) fillSilence(this.chunk, fromData, n - fromData, this.silence, this.position + fromData);
    const took = this.sink.write(this.chunk, 0, n);
    this.position += Math.min(took, fromData);
    this.taken(took);
  }
}
