/**
 * Output to the host's sound device through the `speaker` package (mpg123's
 * output modules: ALSA on Linux, CoreAudio on macOS, winmm on Windows).
 *
 * Loading `speaker` where it cannot open a device aborts the process, so a
 * SpeakerBackend exists only through SpeakerBackend.create(), which first asks
 * probeSpeaker() (a child process) and loads the module in this process only
 * when the child succeeded.
 *
 * Timing comes from the backend's Clock, not from the device: ALSA's file and
 * null devices do not pace, and writes to a real one only block once its
 * buffer (0.5 s with mpg123's ALSA output) is full. Each output voice is a
 * PacedVoice: at START it writes a cushion of a few chunks at once, then one
 * chunk per chunk duration, so the device holds about `cushionMs` of audio
 * ahead of the clock. A chunk the guest did not fill is completed with
 * silence, which keeps the device's timeline in step with the clock.
 *
 * latencyBytes() is the guest's bytes written to the Speaker whose play time,
 * by the clock, has not come: frames written since START (plus what was still
 * unplayed from a previous run) minus frames elapsed since START. It is an
 * approximation: it does not see the device start a little after the first
 * write, the drift between the device's crystal and the clock, or audio the
 * resampler holds back.
 *
 * Formats: the guest's samples go to the device unchanged when speaker takes
 * them (S8, U8, S16, U16, S24_3, U24_3, S32, U32, FLOAT, FLOAT64, as far as the
 * device's format list says so) and through a StreamConverter otherwise (S24
 * and S20 in 32-bit containers, the 18/20-bit 3-byte formats, A-law, µ-law).
 * Rates: a stream whose rate the device did not open at exactly in the probe
 * is resampled to 48000 Hz (or 44100 Hz when only that one is exact); the
 * `rate` option resamples every stream to one rate.
 */
import { createRequire } from "node:module";
import type { AudioBackend, InputSink, OutputSource, Voice } from "../audio/backend.js";
import { type Clock, NS_PER_SECOND, RealTimeClock, framesToNs } from "../audio/clock.js";
import { type PcmFormatSpec, StreamConverter, isConvertible } from "../audio/convert.js";
import { PacedVoice, periodFrames } from "../audio/paced-voice.js";
import {
  type PcmParams,
  bytesToFrames,
  fillSilence,
  framesToBytes,
  silencePattern,
} from "../audio/pcm-params.js";
import { BackendError } from "../errors.js";
import {
  VIRTIO_SND_PCM_FMT_A_LAW,
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_FMT_MU_LAW,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_S8,
  VIRTIO_SND_PCM_FMT_U16,
  VIRTIO_SND_PCM_FMT_U8,
} from "../spec/constants.js";
import { pcmFormatName } from "../spec/names.js";
import { AUDIO_ENV_KEYS, SPEAKER_FORMATS, type SpeakerProbeResult, probeSpeaker } from "./speaker-probe.js";

/** The constructor options of speaker's Speaker that this backend uses. */
export interface SpeakerConstructorOptions {
  channels: number;
  sampleRate: number;
  bitDepth: number;
  signed: boolean;
  float: boolean;
  device?: string;
}

/** What this backend needs of a Speaker instance (a Writable). */
export interface SpeakerLike {
  write(chunk: Uint8Array, callback: (error?: Error | null) => void): boolean;
  /** Closes the device; `flush` true drops what it has not played, false drains it. */
  close(flush?: boolean): void;
  on(event: "error", listener: (error: Error) => void): unknown;
  /** speaker's private synchronous open: lets PREPARE fail at once instead of at the first write. */
  _open?(): unknown;
}

/** speaker's default export, or anything shaped like it. */
export interface SpeakerClass {
  new (options: SpeakerConstructorOptions): SpeakerLike;
  getFormat?(format: { bitDepth: number; signed: boolean; float: boolean }): number | null;
  isSupported?(format: number): boolean;
  readonly module_name?: string;
}

export interface SpeakerBackendOptions {
  /** Paces the voices. Default: a RealTimeClock. */
  clock?: Clock;
  /** Device name for speaker (ALSA: "hw:1,0", "plughw:0", a name from asound.conf). Default: the default device. */
  device?: string;
  /**
   * The environment to probe with. ALSA reads its settings from the process
   * environment, so once the probe passes, the variables in AUDIO_ENV_KEYS
   * (ALSA_CONFIG_PATH, AUDIODEV, HOME, XDG_RUNTIME_DIR, ...) are copied from
   * `env` into process.env (set, or deleted where `env` lacks them). Default:
   * process.env (nothing is copied).
   */
  env?: NodeJS.ProcessEnv;
  /** Probe timeout, ms (default 5000). */
  timeoutMs?: number;
  /** Play every stream at this rate, resampling the others. Default: see the module comment. */
  rate?: number;
  /**
   * Rates the device plays exactly; a stream at another rate is resampled to
   * 48000 (or 44100, or the highest of these). Default: what the probe found
   * (every rate, with a `speakerClass`).
   */
  rates?: readonly number[];
  /** Duration of one write, ms (default 10; never more than one period of the stream). */
  chunkMs?: number;
  /** Audio kept in the device ahead of the clock, ms (default 40; at least 2 chunks, at most half the guest buffer). */
  cushionMs?: number;
  /**
   * Use this Speaker-compatible class instead of loading `speaker`; no probe
   * runs. For tests and for other output modules with speaker's interface.
   */
  speakerClass?: SpeakerClass;
}

/** One output voice of the backend, for logs and tests. */
export interface SpeakerOutput {
  readonly streamId: number;
  readonly params: PcmParams;
  /** What the Speaker was opened with. */
  readonly deviceFormat: PcmFormatSpec;
  /** Whether samples go through a StreamConverter. */
  readonly converted: boolean;
  readonly chunkFrames: number;
  /** Frames written at START before the clock takes over. */
  readonly cushionFrames: number;
  /** Bytes handed to the Speaker (device format). */
  bytesWritten: number;
  /** Guest bytes of silence written because the stream had nothing. */
  underrunBytes: number;
  /** Chunks read but not written because their play time had passed (the clock was late by more than the cushion). */
  droppedChunks: number;
  /** The error that stopped the voice. */
  error: Error | undefined;
  /** The Speaker has been closed. */
  closed: boolean;
}

const DEFAULT_CHUNK_MS = 10;
const DEFAULT_CUSHION_MS = 40;
/** Longest wait at close for written audio to play out before the device is closed. */
const MAX_TAIL_MS = 1000;

/** Where a format goes when the device cannot take it as it is, best first. */
function conversionTargets(format: number): readonly number[] {
  switch (format) {
    case VIRTIO_SND_PCM_FMT_MU_LAW:
    case VIRTIO_SND_PCM_FMT_A_LAW:
    case VIRTIO_SND_PCM_FMT_S8:
    case VIRTIO_SND_PCM_FMT_U8:
    case VIRTIO_SND_PCM_FMT_S16:
    case VIRTIO_SND_PCM_FMT_U16:
      return [VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_FLOAT];
    case VIRTIO_SND_PCM_FMT_FLOAT:
    case VIRTIO_SND_PCM_FMT_FLOAT64:
      return [
        VIRTIO_SND_PCM_FMT_FLOAT,
        VIRTIO_SND_PCM_FMT_FLOAT64,
        VIRTIO_SND_PCM_FMT_S32,
        VIRTIO_SND_PCM_FMT_S16,
      ];
    default:
      // 18 to 32 bits: S32 holds them exactly (the value moved to the top bits).
      return [
        VIRTIO_SND_PCM_FMT_S32,
        VIRTIO_SND_PCM_FMT_FLOAT,
        VIRTIO_SND_PCM_FMT_S24_3,
        VIRTIO_SND_PCM_FMT_S16,
      ];
  }
}

/** SpeakerBackend.create() found that speaker cannot play here (code ERR_BACKEND). */
export class SpeakerUnavailableError extends BackendError {
  constructor(
    /** The probe's reason, without advice. */
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "SpeakerUnavailableError";
  }
}

/** Plays PCM output streams on the host's sound device through `speaker`. */
export class SpeakerBackend implements AudioBackend {
  readonly name = "speaker";
  /** Every output voice opened, oldest first. */
  readonly outputs: SpeakerOutput[] = [];
  /** Virtio formats the device takes unconverted. */
  readonly deviceFormats: ReadonlySet<number>;
  /** Rates the device opened at exactly in the probe (empty: not known, every rate is used as it is). */
  readonly deviceRates: ReadonlySet<number>;
  private readonly clock: Clock;
  private readonly live = new Set<SpeakerOutputVoice>();
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  private constructor(
    private readonly Speaker: SpeakerClass,
    private readonly options: SpeakerBackendOptions,
    /** The probe's answer (undefined with a `speakerClass`). */
    readonly probe: SpeakerProbeResult | undefined,
  ) {
    this.clock = options.clock ?? new RealTimeClock();
    if (probe?.ok) {
      this.deviceFormats = new Set(probe.formats);
      this.deviceRates = new Set(options.rates ?? probe.rates);
    } else {
      this.deviceFormats = new Set(
        [...SPEAKER_FORMATS]
          .filter(([, f]) => {
            const code = Speaker.getFormat?.(f);
            return code === undefined || code === null || Speaker.isSupported === undefined
              ? true
              : Speaker.isSupported(code);
          })
          .map(([id]) => id),
      );
      this.deviceRates = new Set(options.rates ?? []);
    }
  }

  /**
   * Probes `speaker` in a child process and, when it works, loads it here.
   * Throws BackendError (ERR_BACKEND) saying why and what to do when it cannot.
   */
  static async create(options: SpeakerBackendOptions = {}): Promise<SpeakerBackend> {
    if (options.speakerClass !== undefined)
      return new SpeakerBackend(options.speakerClass, options, undefined);
    const where =
      options.device === undefined ? "the default audio device" : `audio device "${options.device}"`;
    const probe = await probeSpeaker({
      ...(options.env !== undefined ? { env: options.env } : {}),
      ...(options.device !== undefined ? { device: options.device } : {}),
      ...(options.timeoutMs !== undefined ? { timeoutMs: options.timeoutMs } : {}),
    });
    if (!probe.ok) {
      throw new SpeakerUnavailableError(
        probe.reason,
        `cannot play through speaker on ${where}: ${probe.reason}. ` +
          `Give the host a working ALSA device (a sound card, or a default pcm in ALSA_CONFIG_PATH / ~/.asoundrc), ` +
          `or choose another sink ("wav:DIR" or "null").`,
      );
    }
    if (options.env !== undefined) {
      for (const key of AUDIO_ENV_KEYS) {
        const value = options.env[key];
        if (value === undefined) delete process.env[key];
        else process.env[key] = value;
      }
    }
    let Speaker: SpeakerClass;
    try {
      Speaker = createRequire(import.meta.url)(probe.modulePath) as SpeakerClass;
    } catch (err) {
      throw new BackendError(`cannot load speaker from ${probe.modulePath}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new SpeakerBackend(Speaker, options, probe);
  }

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    if (this.closed) throw new BackendError("the speaker backend is closed");
    const target = this.deviceFormatFor(params);
    const converter =
      target.format === params.format && target.rate === params.rate
        ? null
        : new StreamConverter(
            { format: params.format, channels: params.channels, rate: params.rate },
            target,
          );
    const speakerFormat = SPEAKER_FORMATS.get(target.format)!;
    // A hw: device opens once at a time: let released voices still playing their tail finish first.
    for (const v of this.live) v.finishTailNow();
    const speaker = new this.Speaker({
      channels: target.channels,
      sampleRate: target.rate,
      bitDepth: speakerFormat.bitDepth,
      signed: speakerFormat.signed,
      float: speakerFormat.float,
      ...(this.options.device !== undefined ? { device: this.options.device } : {}),
    });
    // A Writable without an 'error' listener throws; the voice takes errors once it exists.
    const holder: { voice?: SpeakerOutputVoice } = {};
    speaker.on("error", (err) => holder.voice?.deviceError(err));
    try {
      speaker._open?.();
    } catch (err) {
      const what = `${pcmFormatName(target.format)}, ${params.channels} ch at ${target.rate} Hz`;
      throw new BackendError(
        `speaker cannot open ${this.options.device ?? "the default device"} for ${what}: ${(err as Error).message}`,
        { cause: err },
      );
    }

    const chunkMs = this.options.chunkMs ?? DEFAULT_CHUNK_MS;
    const cushionMs = this.options.cushionMs ?? DEFAULT_CUSHION_MS;
    const chunkFrames = Math.max(
      1,
      Math.min(periodFrames(params), Math.round((params.rate * chunkMs) / 1000)),
    );
    const bufferFrames = bytesToFrames(params, params.bufferBytes);
    const cushionChunks = Math.max(
      2,
      Math.min(
        Math.ceil((params.rate * cushionMs) / 1000 / chunkFrames),
        Math.floor(bufferFrames / 2 / chunkFrames),
      ),
    );
    const info: SpeakerOutput = {
      streamId,
      params,
      deviceFormat: target,
      converted: converter !== null,
      chunkFrames,
      cushionFrames: cushionChunks * chunkFrames,
      bytesWritten: 0,
      underrunBytes: 0,
      droppedChunks: 0,
      error: undefined,
      closed: false,
    };
    this.outputs.push(info);
    const voice = new SpeakerOutputVoice(
      this.clock,
      params,
      chunkFrames,
      cushionChunks,
      source,
      speaker,
      converter,
      info,
      (v) => this.onVoiceFinished(v),
    );
    holder.voice = voice;
    this.live.add(voice);
    return voice;
  }

  openInput(_streamId: number, _params: PcmParams, _sink: InputSink): Voice {
    throw new BackendError("the speaker backend only plays: capture comes from an input source", {
      notSupported: true,
    });
  }

  /** Closes every voice; their Speakers close once written audio has played (see whenIdle). */
  close(): void {
    this.closed = true;
    for (const v of [...this.live]) v.close();
  }

  /** Resolves when every Speaker this backend opened has been closed. */
  whenIdle(): Promise<void> {
    if (this.live.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * The format, channels and rate a stream is played at: its own where the
   * device takes them, otherwise what it is converted to. Throws BackendError
   * (not supported) when neither works.
   */
  deviceFormatFor(params: Pick<PcmParams, "format" | "channels" | "rate">): PcmFormatSpec {
    const direct = SPEAKER_FORMATS.has(params.format) && this.deviceFormats.has(params.format);
    const rate = this.options.rate ?? (this.rateIsExact(params.rate) ? params.rate : this.fallbackRate());
    const format = direct
      ? params.format
      : conversionTargets(params.format).find((f) => this.deviceFormats.has(f) && SPEAKER_FORMATS.has(f));
    if (format === undefined) {
      throw new BackendError(
        `speaker: the device takes none of the formats format ${params.format} converts to`,
        {
          notSupported: true,
        },
      );
    }
    if ((format !== params.format || rate !== params.rate) && !isConvertible(params.format)) {
      throw new BackendError(
        `speaker: ${pcmFormatName(params.format)} ${direct ? `at ${params.rate} Hz ` : ""}cannot be played or converted`,
        { notSupported: true },
      );
    }
    return { format, channels: params.channels, rate };
  }

  private rateIsExact(rate: number): boolean {
    return this.deviceRates.size === 0 || this.deviceRates.has(rate);
  }

  private fallbackRate(): number {
    if (this.rateIsExact(48000)) return 48000;
    if (this.rateIsExact(44100)) return 44100;
    return Math.max(...this.deviceRates);
  }

  private onVoiceFinished(voice: SpeakerOutputVoice): void {
    this.live.delete(voice);
    if (this.live.size > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }
}

/**
 * One output stream on one Speaker. Chunk k of a run is read from the source
 * and written when the clock reaches its deadline (PacedVoice); the cushion
 * written at START keeps the device `cushionChunks` chunks ahead of it.
 */
class SpeakerOutputVoice extends PacedVoice {
  private readonly silence: Uint8Array;
  /** Converter input; without a converter each chunk gets its own Buffer (writes are asynchronous). */
  private readonly scratch: Uint8Array;
  private readonly pool: Buffer[] = [];
  /** Clock time at which frame 0 of the current run's timeline plays. */
  private playStart = 0;
  /** Frames of the stream written on the current run's timeline (with any left over from the last run). */
  private framesQueued = 0;
  private pendingWrites = 0;
  private failed = false;
  private closing = false;
  private finished = false;
  private tailTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    clock: Clock,
    params: PcmParams,
    chunkFrames: number,
    private readonly cushionChunks: number,
    private readonly source: OutputSource,
    private readonly speaker: SpeakerLike,
    private readonly converter: StreamConverter | null,
    private readonly info: SpeakerOutput,
    private readonly onFinished: (voice: SpeakerOutputVoice) => void,
  ) {
    super(clock, params, chunkFrames);
    this.silence = silencePattern(params.format);
    this.scratch = new Uint8Array(converter !== null ? this.chunkBytes : 0);
  }

  override start(aheadNs = 0): void {
    if (this.isRunning || this.closing || this.failed) return;
    const now = this.clock.now();
    const residual = this.unplayedFrames(now);
    super.start(aheadNs);
    if (!this.isRunning) return;
    this.playStart = now;
    this.framesQueued = residual;
    // The cushion: what the device still holds from the last run counts towards it.
    for (let i = Math.ceil(residual / this.chunkFrames); i < this.cushionChunks && this.isRunning; i++) {
      this.writeChunk();
    }
  }

  override latencyBytes(): number {
    return framesToBytes(this.params, this.unplayedFrames(this.clock.now()));
  }

  protected onChunk(): void {
    this.writeChunk();
  }

  protected override onClose(): void {
    this.closing = true;
    if (!this.failed && this.converter !== null) {
      try {
        const tail = this.converter.flush();
        if (tail.length > 0) this.send(Buffer.from(tail));
      } catch {
        // The tail is a few frames of resampler history: not worth an error.
      }
    }
    this.maybeFinish();
  }

  /**
   * A closed voice waiting for its tail to play closes its Speaker now
   * (draining what is left, a few ms by the clock).
   */
  finishTailNow(): void {
    if (this.tailTimer === undefined) return;
    clearTimeout(this.tailTimer);
    this.tailTimer = undefined;
    this.finish();
  }

  /** A Speaker 'error' event. */
  deviceError(err: Error): void {
    this.fail(err);
  }

  private unplayedFrames(now: number): number {
    const elapsed = Math.floor(((now - this.playStart) * this.params.rate) / NS_PER_SECOND);
    return Math.max(0, this.framesQueued - Math.max(0, elapsed));
  }

  private writeChunk(): void {
    const n = this.chunkBytes;
    const buf = this.converter !== null ? this.scratch : (this.pool.pop() ?? Buffer.allocUnsafe(n));
    const got = this.source.read(buf, 0, n);
    // Reading can complete messages, and the guest can react by stopping or resetting.
    if (this.closing || this.failed) return;
    if (got < n) {
      fillSilence(buf, got, n - got, this.silence, got);
      this.info.underrunBytes += n - got;
    }
    // A chunk whose play time has wholly passed would only add delay: drop it.
    const endsAt = this.playStart + framesToNs(this.framesQueued + this.chunkFrames, this.params.rate);
    this.framesQueued += this.chunkFrames;
    const late = endsAt <= this.clock.now();
    if (late) this.info.droppedChunks++;
    if (this.converter !== null) {
      const out = this.converter.push(buf);
      if (!late && out.length > 0) this.send(Buffer.from(out));
    } else if (!late) {
      this.send(buf as Buffer);
    } else {
      this.pool.push(buf as Buffer);
    }
  }

  private send(buf: Buffer): void {
    this.pendingWrites++;
    this.info.bytesWritten += buf.length;
    try {
      this.speaker.write(buf, (err) => this.written(buf, err));
    } catch (err) {
      this.pendingWrites--;
      this.fail(err as Error);
    }
  }

  private written(buf: Buffer, err: Error | null | undefined): void {
    this.pendingWrites--;
    if (err) this.fail(err);
    else if (this.converter === null && buf.length === this.chunkBytes && this.pool.length < 8)
      this.pool.push(buf);
    this.maybeFinish();
  }

  private fail(err: Error): void {
    if (this.failed || this.finished) return;
    this.failed = true;
    this.info.error = err;
    if (this.closing) {
      this.maybeFinish();
      return;
    }
    this.stop();
    // The stream completes its messages with IO_ERR and closes this voice.
    this.source.fail(
      err instanceof BackendError ? err : new BackendError(`speaker: ${err.message}`, { cause: err }),
    );
    this.maybeFinish();
  }

  /**
   * After close: once every write has completed, waits (in real time) until
   * the clock says the written audio has played, then closes the Speaker,
   * draining the little that may be left. A failed voice closes at once.
   */
  private maybeFinish(): void {
    if (!this.closing || this.finished || this.tailTimer !== undefined || this.pendingWrites > 0) return;
    const tailMs = this.failed
      ? 0
      : framesToNs(this.unplayedFrames(this.clock.now()), this.params.rate) / 1e6;
    if (tailMs <= 0) {
      this.finish();
      return;
    }
    this.tailTimer = setTimeout(
      () => {
        this.tailTimer = undefined;
        this.finish();
      },
      Math.min(MAX_TAIL_MS, tailMs),
    );
  }

  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    try {
      this.speaker.close(this.failed);
    } catch {
      // Closing a failed device can fail too; nothing more to do.
    }
    this.info.closed = true;
    this.onFinished(this);
  }
}
