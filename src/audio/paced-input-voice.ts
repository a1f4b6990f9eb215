import type { InputSink } from "./backend.js";
import type { Clock } from "./clock.js";
import { PacedVoice, periodFrames } from "./paced-voice.js";
import type { PcmParams } from "./pcm-params.js";
import type { CaptureReader, CaptureSource } from "./sources.js";
import { BackendError } from "../errors.js";

function asBackendError(err: unknown, what: string): BackendError {
  if (err instanceof BackendError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new BackendError(`${what}: ${message}`, { cause: err });
}

/**
 * An input voice for backends without a clock of their own: every chunk (one
 * period by default) it takes the next bytes from a CaptureReader and hands
 * them to the stream. Bytes the stream has no buffer for are dropped (an
 * overrun), as a sound card drops them. A reader that throws fails the stream
 * (its messages complete with IO_ERR).
 */
export class PacedInputVoice extends PacedVoice {
  /** Bytes the stream took. */
  bytesDelivered = 0;
  /** Chunks in which the stream had no buffer for some bytes, and how many bytes were dropped. */
  overruns = 0;
  overrunBytes = 0;
  private readonly chunk: Uint8Array;
  private readerClosed = false;

  constructor(
    clock: Clock,
    params: PcmParams,
    private readonly sink: InputSink,
    private readonly reader: CaptureReader,
    chunkFrames: number = periodFrames(params),
  ) {
    super(clock, params, chunkFrames);
    this.chunk = new Uint8Array(this.chunkBytes);
  }

  protected onChunk(): void {
    const n = this.chunkBytes;
    try {
      this.reader.fill(this.chunk, 0, n);
    } catch (err) {
      this.sink.fail(asBackendError(err, "capture source failed"));
      return;
    }
    const taken = this.sink.write(this.chunk, 0, n);
    this.bytesDelivered += taken;
    if (taken < n) {
      this.overruns++;
      this.overrunBytes += n - taken;
    }
  }

  protected override onClose(): void {
    if (this.readerClosed) return;
    this.readerClosed = true;
    this.reader.close?.();
  }
}

/**
 * Opens `source` for a stream and wraps it in a PacedInputVoice. A source that
 * cannot open throws BackendError (its own, or ERR_BACKEND around its error),
 * which makes the stream's PREPARE fail.
 */
export function openCaptureVoice(
  source: CaptureSource,
  clock: Clock,
  params: PcmParams,
  sink: InputSink,
  chunkFrames?: number,
): PacedInputVoice {
  let reader: CaptureReader;
  try {
    reader = source.open(params);
  } catch (err) {
    throw asBackendError(err, "capture source cannot open");
  }
  return new PacedInputVoice(clock, params, sink, reader, chunkFrames ?? periodFrames(params));
}
