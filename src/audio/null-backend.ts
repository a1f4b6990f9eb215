import type { AudioBackend, InputSink, OutputSource, Voice } from "./backend.js";
import { type Clock, RealTimeClock } from "./clock.js";
import { openCaptureVoice } from "./paced-input-voice.js";
import { PacedVoice, periodFrames } from "./paced-voice.js";
import type { PcmParams } from "./pcm-params.js";
import { type CaptureSource, SilenceSource } from "./sources.js";

export interface NullBackendOptions {
  /** What paces the voices; default a RealTimeClock (give the device's clock to share one). */
  clock?: Clock;
  /** Frames per tick; by default one period of the stream. */
  chunkFrames?: number;
  /** What input streams record; default silence. */
  input?: CaptureSource;
}

/**
 * A backend with no sound card: output voices take the stream's bytes on
 * time and throw them away, so TX messages complete as a real card would
 * complete them; input voices record from a CaptureSource (silence unless
 * told otherwise). For headless guests, CI and benchmarks.
 */
export class NullBackend implements AudioBackend {
  readonly name = "null";
  readonly clock: Clock;
  /** Bytes taken from output streams, over the backend's life. */
  bytesPlayed = 0;
  /** Bytes of silence played because an output stream had nothing. */
  underrunBytes = 0;
  private readonly input: CaptureSource;

  constructor(private readonly options: NullBackendOptions = {}) {
    this.clock = options.clock ?? new RealTimeClock();
    this.input = options.input ?? new SilenceSource();
  }

  openOutput(_streamId: number, params: PcmParams, source: OutputSource): Voice {
    return new NullOutputVoice(this, params, source, this.options.chunkFrames ?? periodFrames(params));
  }

  openInput(_streamId: number, params: PcmParams, sink: InputSink): Voice {
    return openCaptureVoice(this.input, this.clock, params, sink, this.options.chunkFrames);
  }
}

class NullOutputVoice extends PacedVoice {
  private readonly scratch: Uint8Array;

  constructor(
    private readonly backend: NullBackend,
    params: PcmParams,
    private readonly source: OutputSource,
    chunkFrames: number,
  ) {
    super(backend.clock, params, chunkFrames);
    this.scratch = new Uint8Array(this.chunkBytes);
  }

  protected onChunk(): void {
    const got = this.source.read(this.scratch, 0, this.chunkBytes);
    this.backend.bytesPlayed += got;
    this.backend.underrunBytes += this.chunkBytes - got;
  }
}
