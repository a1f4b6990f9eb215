import { mkdirSync } from "node:fs";
import { resolve } from "node:path";
import type { AudioBackend, InputSink, OutputSource, Voice } from "../audio/backend.js";
import { type Clock, RealTimeClock } from "../audio/clock.js";
import { openCaptureVoice } from "../audio/paced-input-voice.js";
import { PacedVoice, periodFrames } from "../audio/paced-voice.js";
import type { PcmParams } from "../audio/pcm-params.js";
import type { CaptureSource } from "../audio/sources.js";
import { BackendError, VirtioSndError } from "../errors.js";
import { NODE_FILE_SYSTEM, type WavFileSystem, WavWriter, pcmFormatName, wavLayoutFor } from "./wav.js";

export interface WavFileBackendOptions {
  /** Folder for the files; created if missing. */
  dir: string;
  /** What paces the voices; default a RealTimeClock (the guest's driver relies on real-time pacing). */
  clock?: Clock;
  /**
   * The file of playback session `session` (1, 2, ...) of stream `streamId`,
   * relative to `dir` (or absolute): a function, or a pattern in which
   * `{stream}` and `{n}` are replaced. Default "stream{stream}-{n}.wav".
   */
  name?: string | ((streamId: number, session: number) => string);
  /**
   * Replace files that exist (default false: a session whose name is taken
   * moves on to the next number, so earlier runs are never overwritten).
   */
  overwrite?: boolean;
  /** Frames per tick; by default one period of the stream. */
  chunkFrames?: number;
  /** What input streams record; without it, input streams are not supported (PREPARE gets NOT_SUPP). */
  input?: CaptureSource;
  /** The file calls to make (tests inject failures); default node:fs. */
  fs?: WavFileSystem;
}

/** One playback session's file. */
export interface WavFileRecord {
  readonly streamId: number;
  /** 1 for the stream's first session, then 2, ... */
  readonly session: number;
  readonly path: string;
  readonly params: PcmParams;
  /** Guest bytes taken from the stream (all of them reach the file, converted if the format needs it). */
  bytes: number;
  /** Bytes that were due while the stream had none (not written: the file holds only the guest's bytes). */
  underrunBytes: number;
  closed: boolean;
  /** The error that ended the session early, if any. */
  error: Error | null;
}

function defaultName(pattern: string): (streamId: number, session: number) => string {
  return (s, n) => pattern.replaceAll("{stream}", String(s)).replaceAll("{n}", String(n));
}

/** How many taken names a session skips before giving up. */
const MAX_SKIP = 100_000;

/**
 * A backend that records every playback session to a WAV file, paced like a
 * sound card: output voices are PacedVoices on the backend's clock (real time
 * by default), reading one period per tick from the stream and appending it
 * to the file.
 *
 * A session is one voice: PREPARE (the file is created, with a valid header)
 * through START/STOP (appended to) to RELEASE (closed). Stream S's sessions
 * are stream<S>-1.wav, stream<S>-2.wav, ...
 *
 * The file is exactly the guest's bytes: an underrun writes nothing (no
 * silence is inserted), and formats WAV cannot hold are converted exactly
 * (see wav.ts). Its header is rewritten after every write, so the file is
 * readable at any moment, even after a crash.
 *
 * Errors: a file that cannot be created fails PREPARE (IO_ERR); a write that
 * fails (disk full) fails the stream through source.fail(), so its pending
 * messages complete with IO_ERR until the next PREPARE, which starts a new
 * file; the bytes of the failed chunk may be lost (messages completed in that
 * chunk had already been given OK). Other streams are not affected.
 */
export class WavFileBackend implements AudioBackend {
  readonly name = "wav";
  readonly dir: string;
  readonly clock: Clock;
  /** Every session's file, oldest first. */
  readonly files: WavFileRecord[] = [];
  private readonly fileName: (streamId: number, session: number) => string;
  private readonly sessions = new Map<number, number>();
  private readonly voices = new Set<WavOutputVoice>();
  private readonly fs: WavFileSystem;

  constructor(private readonly options: WavFileBackendOptions) {
    this.dir = resolve(options.dir);
    this.clock = options.clock ?? new RealTimeClock();
    const name = options.name ?? "stream{stream}-{n}.wav";
    this.fileName = typeof name === "string" ? defaultName(name) : name;
    this.fs = options.fs ?? NODE_FILE_SYSTEM;
    try {
      mkdirSync(this.dir, { recursive: true });
    } catch (err) {
      throw new VirtioSndError("ERR_INVALID_CONFIG", `cannot create ${this.dir}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    if (wavLayoutFor(params.format) === null)
      throw new BackendError(`WAV files cannot hold ${pcmFormatName(params.format)} samples`, {
        notSupported: true,
      });
    const writer = this.createFile(streamId, params);
    const record: WavFileRecord = {
      streamId,
      session: this.sessions.get(streamId)!,
      path: writer.path,
      params,
      bytes: 0,
      underrunBytes: 0,
      closed: false,
      error: null,
    };
    this.files.push(record);
    const voice = new WavOutputVoice(this, params, source, writer, record);
    this.voices.add(voice);
    return voice;
  }

  openInput(_streamId: number, params: PcmParams, sink: InputSink): Voice {
    if (this.options.input === undefined)
      throw new BackendError("this WAV backend has no input source", { notSupported: true });
    return openCaptureVoice(this.options.input, this.clock, params, sink, this.options.chunkFrames);
  }

  /** Closes every open file (the voices stop). */
  close(): void {
    let first: unknown = null;
    for (const v of [...this.voices]) {
      try {
        v.close();
      } catch (err) {
        first ??= err;
      }
    }
    if (first !== null) throw first;
  }

  /** The files of one stream's sessions, oldest first. */
  filesOf(streamId: number): WavFileRecord[] {
    return this.files.filter((f) => f.streamId === streamId);
  }

  /** @internal */
  chunkFramesFor(params: PcmParams): number {
    return this.options.chunkFrames ?? periodFrames(params);
  }

  /** @internal */
  forget(voice: WavOutputVoice): void {
    this.voices.delete(voice);
  }

  private createFile(streamId: number, params: PcmParams): WavWriter {
    const spec = { format: params.format, channels: params.channels, rate: params.rate };
    const overwrite = this.options.overwrite ?? false;
    let n = this.sessions.get(streamId) ?? 0;
    for (let tries = 0; ; tries++) {
      n++;
      const path = resolve(this.dir, this.fileName(streamId, n));
      try {
        const writer = new WavWriter(path, spec, { overwrite, fs: this.fs });
        this.sessions.set(streamId, n);
        return writer;
      } catch (err) {
        const taken = (err as { code?: unknown }).code === "EEXIST";
        // Skip a taken name, unless the name does not depend on the session (a device such as /dev/null).
        if (taken && tries < MAX_SKIP && this.fileName(streamId, n + 1) !== this.fileName(streamId, n))
          continue;
        this.sessions.set(streamId, n);
        throw new BackendError(`stream ${streamId}: cannot create ${path}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
  }
}

class WavOutputVoice extends PacedVoice {
  private readonly scratch: Uint8Array;
  private writer: WavWriter | null;
  /** Inside onChunk: a close() from a callback of the stream waits until the chunk is written. */
  private inChunk = false;
  private closePending = false;

  constructor(
    private readonly backend: WavFileBackend,
    params: PcmParams,
    private readonly source: OutputSource,
    writer: WavWriter,
    private readonly record: WavFileRecord,
  ) {
    super(backend.clock, params, backend.chunkFramesFor(params));
    this.scratch = new Uint8Array(this.chunkBytes);
    this.writer = writer;
  }

  protected onChunk(): void {
    if (this.writer === null) return;
    this.inChunk = true;
    let failure: unknown = null;
    try {
      const want = this.chunkBytes;
      const got = this.source.read(this.scratch, 0, want);
      this.record.underrunBytes += want - got;
      if (got > 0) {
        try {
          this.writer.write(this.scratch, 0, got);
          this.record.bytes += got;
        } catch (err) {
          failure = err;
        }
      }
    } finally {
      this.inChunk = false;
    }
    if (failure !== null) this.fail(failure);
    else if (this.closePending) this.finish();
  }

  protected override onClose(): void {
    if (this.inChunk) this.closePending = true;
    else this.finish();
  }

  private fail(err: unknown): void {
    const writer = this.writer;
    const message = err instanceof Error ? err.message : String(err);
    const error = new BackendError(
      `stream ${this.record.streamId}: writing ${this.record.path} failed: ${message}`,
      {
        cause: err,
      },
    );
    this.record.error = error;
    // The file keeps what was written; its header already covers it.
    this.writer = null;
    try {
      writer?.abandon();
    } catch {
      // Already failing: the write error is the one to report.
    }
    this.record.closed = true;
    this.backend.forget(this);
    this.source.fail(error);
  }

  private finish(): void {
    const writer = this.writer;
    this.writer = null;
    this.closePending = false;
    this.record.closed = true;
    this.backend.forget(this);
    if (writer === null) return;
    try {
      writer.close();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.record.error = new BackendError(`closing ${this.record.path} failed: ${message}`, { cause: err });
      throw this.record.error;
    }
  }
}
