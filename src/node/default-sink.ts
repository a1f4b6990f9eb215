/**
 * Which backend plays the guest's audio: the host's sound device when
 * `speaker` works here, WAV files otherwise, or what the user named.
 */
import { resolve } from "node:path";
import type { AudioBackend } from "../audio/backend.js";
import type { Clock } from "../audio/clock.js";
import { NullBackend } from "../audio/null-backend.js";
import { BackendError, VirtioSndError } from "../errors.js";
import { SpeakerBackend, type SpeakerBackendOptions, SpeakerUnavailableError } from "./speaker-backend.js";

/** Makes the WAV-file backend writing into `dir` (e.g. `(dir, clock) => new WavFileBackend({ dir, clock })`). */
export type WavBackendFactory = (dir: string, clock: Clock | undefined) => AudioBackend;

export interface DefaultSinkOptions {
  /** Folder for WAV files when there is no sound device. Default: the working directory. */
  dir?: string;
  /** Paces the backend's voices. Default: a RealTimeClock. */
  clock?: Clock;
  /** Receives the one line that says what was chosen. */
  log?: (line: string) => void;
  /** Makes the WAV backend when there is no sound device; default: WavFileBackend. */
  wavBackend?: WavBackendFactory;
  /** Environment for the speaker probe (see SpeakerBackendOptions.env). Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** ALSA device for speaker. Default: the default device. */
  device?: string;
  /** Probe timeout, ms. */
  timeoutMs?: number;
}

export interface ResolveSinkOptions extends Omit<DefaultSinkOptions, "wavBackend" | "dir" | "log"> {
  /** Makes the WAV backend; default: WavFileBackend from ./file-backend.js. */
  wavBackend?: WavBackendFactory;
}

function speakerOptions(o: Omit<DefaultSinkOptions, "wavBackend">): SpeakerBackendOptions {
  return {
    ...(o.clock !== undefined ? { clock: o.clock } : {}),
    ...(o.env !== undefined ? { env: o.env } : {}),
    ...(o.device !== undefined ? { device: o.device } : {}),
    ...(o.timeoutMs !== undefined ? { timeoutMs: o.timeoutMs } : {}),
  };
}

/** "audio: speaker (ALSA default device)" and the like. */
function speakerLine(backend: SpeakerBackend, device: string | undefined): string {
  const probe = backend.probe;
  const module = probe?.ok ? (probe.module === "alsa" ? "ALSA" : probe.module) : "speaker";
  return `audio: speaker (${module} ${device === undefined ? "default device" : `device ${device}`})`;
}

/** Why SpeakerBackend.create failed, without its advice. */
function shortReason(err: unknown): string {
  if (err instanceof SpeakerUnavailableError) return err.reason;
  return err instanceof Error ? err.message : String(err);
}

/**
 * The host's sound device through `speaker` when the probe passes, otherwise
 * WAV files in `dir`. Announces the choice in one line through `log`.
 */
export async function chooseDefaultSink(options: DefaultSinkOptions = {}): Promise<AudioBackend> {
  const log = options.log ?? (() => {});
  let reason: string;
  try {
    const backend = await SpeakerBackend.create(speakerOptions(options));
    log(speakerLine(backend, options.device));
    return backend;
  } catch (err) {
    reason = shortReason(err);
  }
  const dir = resolve(options.dir ?? process.cwd());
  const factory = options.wavBackend ?? (await loadWavFileBackend());
  const backend = factory(dir, options.clock);
  log(`audio: no sound device (${reason}); writing WAV files to ${dir}`);
  return backend;
}

const SINK_SPECS = `"speaker", "speaker:DEVICE", "wav", "wav:DIR" or "null"`;

/**
 * A backend from a command-line spec:
 * - "speaker" or "speaker:DEVICE": the sound device; rejects with BackendError
 *   (ERR_BACKEND) saying why and what to do when speaker cannot play here;
 * - "wav" or "wav:DIR": WAV files in DIR (default: the working directory);
 * - "null": a NullBackend (plays nothing and records silence, paced like a device).
 * Anything else rejects with ERR_INVALID_CONFIG.
 */
export async function resolveSink(spec: string, options: ResolveSinkOptions = {}): Promise<AudioBackend> {
  const colon = spec.indexOf(":");
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const arg = colon < 0 ? undefined : spec.slice(colon + 1);
  switch (kind) {
    case "speaker": {
      if (arg === "")
        throw new VirtioSndError("ERR_INVALID_CONFIG", `sink "${spec}": the device name is empty`);
      return SpeakerBackend.create(
        speakerOptions({ ...options, ...(arg !== undefined ? { device: arg } : {}) }),
      );
    }
    case "wav": {
      const dir = resolve(arg === undefined || arg === "" ? process.cwd() : arg);
      const factory = options.wavBackend ?? (await loadWavFileBackend());
      return factory(dir, options.clock);
    }
    case "null":
      if (arg !== undefined) break;
      return new NullBackend(options.clock !== undefined ? { clock: options.clock } : {});
    default:
      break;
  }
  throw new VirtioSndError("ERR_INVALID_CONFIG", `unknown sink "${spec}": expected ${SINK_SPECS}`);
}

interface WavFileBackendModule {
  WavFileBackend: new (options: { dir: string; clock?: Clock }) => AudioBackend;
}

/** WavFileBackend, loaded when first needed (a specifier in a variable keeps it out of this module's static graph). */
async function loadWavFileBackend(): Promise<WavBackendFactory> {
  const specifier = "./file-backend.js";
  let mod: WavFileBackendModule;
  try {
    mod = (await import(specifier)) as WavFileBackendModule;
  } catch (err) {
    throw new BackendError(`the WAV file backend cannot be loaded: ${(err as Error).message}`, {
      cause: err,
    });
  }
  return (dir, clock) => new mod.WavFileBackend({ dir, ...(clock !== undefined ? { clock } : {}) });
}
