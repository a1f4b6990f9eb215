/**
 * Can the `speaker` package play here? Asked in a child process, because the
 * answer "no" can be fatal: `speaker` opens the ALSA default device while it
 * LOADS (to list the formats it takes), and when that fails (no sound card, an
 * ALSA default that names a missing card) alsa-lib hits an assertion and
 * aborts the whole process. try/catch cannot stop an abort, so the only safe
 * way to find out is to let another process take the risk.
 *
 * The child (process.execPath with an inline CommonJS script) loads speaker,
 * plays 10 ms of silence in S16 stereo at 48 kHz and closes, then opens the
 * device once at every virtio rate to see which rates ALSA takes as they are
 * (mpg123's ALSA output does not fail on a rate the device lacks: it plays at
 * the nearest one and prints "rate R not available, using R2" on stderr, which
 * the parent reads). It exits 0 when all went well. The result is cached per
 * process, per module path, device and ALSA-related environment.
 */
import { spawn } from "node:child_process";
import { createRequire } from "node:module";
import {
  PCM_RATE_HZ,
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_S8,
  VIRTIO_SND_PCM_FMT_U16,
  VIRTIO_SND_PCM_FMT_U24_3,
  VIRTIO_SND_PCM_FMT_U32,
  VIRTIO_SND_PCM_FMT_U8,
} from "../spec/constants.js";

/** A `speaker` PCM format (its constructor options). */
export interface SpeakerFormat {
  readonly bitDepth: number;
  readonly signed: boolean;
  readonly float: boolean;
}

/**
 * The virtio formats `speaker` can be given as they are, and how. Its
 * getFormat() maps these to mpg123 encodings and mpg123's ALSA output maps
 * those to SND_PCM_FORMAT_S8/U8, S16/U16 (LE), S24_3LE/U24_3LE (24 bits in 3
 * bytes; its block align is bitDepth / 8 * channels), S32/U32, FLOAT and
 * FLOAT64 (deps/mpg123/src/output/alsa.c, format_map). Native endianness only
 * (little-endian hosts, as virtio's formats are). A-law and µ-law are in the
 * ALSA map too, but getFormat() cannot ask for them.
 */
export const SPEAKER_FORMATS: ReadonlyMap<number, SpeakerFormat> = new Map([
  [VIRTIO_SND_PCM_FMT_S8, { bitDepth: 8, signed: true, float: false }],
  [VIRTIO_SND_PCM_FMT_U8, { bitDepth: 8, signed: false, float: false }],
  [VIRTIO_SND_PCM_FMT_S16, { bitDepth: 16, signed: true, float: false }],
  [VIRTIO_SND_PCM_FMT_U16, { bitDepth: 16, signed: false, float: false }],
  [VIRTIO_SND_PCM_FMT_S24_3, { bitDepth: 24, signed: true, float: false }],
  [VIRTIO_SND_PCM_FMT_U24_3, { bitDepth: 24, signed: false, float: false }],
  [VIRTIO_SND_PCM_FMT_S32, { bitDepth: 32, signed: true, float: false }],
  [VIRTIO_SND_PCM_FMT_U32, { bitDepth: 32, signed: false, float: false }],
  [VIRTIO_SND_PCM_FMT_FLOAT, { bitDepth: 32, signed: true, float: true }],
  [VIRTIO_SND_PCM_FMT_FLOAT64, { bitDepth: 64, signed: true, float: true }],
]);

export interface SpeakerProbeOptions {
  /** The environment the child runs with (ALSA reads ALSA_CONFIG_PATH etc. from it). Default: process.env. */
  env?: NodeJS.ProcessEnv;
  /** Milliseconds before the child is killed and the probe fails. Default 5000. */
  timeoutMs?: number;
  /** ALSA device name (speaker's `device` option, e.g. "hw:1,0"); default: the ALSA default device. */
  device?: string;
  /** Path of the speaker module to load; default: `speaker` as resolved from this package. */
  modulePath?: string;
  /** Ignore (and replace) a cached result. */
  refresh?: boolean;
}

export type SpeakerProbeResult =
  | {
      readonly ok: true;
      /** mpg123's output module ("alsa" on Linux). */
      readonly module: string;
      /** The resolved speaker module. */
      readonly modulePath: string;
      /** Virtio formats speaker and the device take unconverted (from speaker's isSupported()). */
      readonly formats: readonly number[];
      /**
       * Virtio rates the device opened at exactly (in S16 stereo); others would be
       * played at a substituted rate. Empty when the rate check could not run.
       */
      readonly rates: readonly number[];
      /** How long the probe took, ms. */
      readonly elapsedMs: number;
    }
  | {
      readonly ok: false;
      /** What happened and what to do, in one sentence. */
      readonly reason: string;
      /** The child's last stderr lines (ALSA's own messages), for diagnostics. */
      readonly detail?: string;
      readonly elapsedMs: number;
    };

/** Environment variables that change what ALSA (or a sound server behind it) does. */
export const AUDIO_ENV_KEYS: readonly string[] = [
  "ALSA_CONFIG_PATH",
  "ALSA_CONFIG_DIR",
  "ALSA_CONFIG_UCM",
  "ALSA_CONFIG_UCM2",
  "ALSA_PLUGIN_DIR",
  "ALSA_CARD",
  "ALSA_CTL_CARD",
  "ALSA_PCM_CARD",
  "ALSA_PCM_DEVICE",
  "AUDIODEV",
  "HOME",
  "XDG_CONFIG_HOME",
  "XDG_RUNTIME_DIR",
  "PULSE_SERVER",
  "PULSE_SINK",
  "PIPEWIRE_REMOTE",
  "PIPEWIRE_RUNTIME_DIR",
];

const DEFAULT_TIMEOUT_MS = 5000;
const MARK = "@@virtio-snd-probe ";
const INSTALL_HINT = "install libasound2-dev and run npm ci";
const ABORT_REASON = "no working ALSA device (speaker aborts the process when loaded without a sound card)";

/**
 * The child's script (CommonJS, for `node -e`). It reports on stdout, one JSON
 * object a line, and writes markers on stderr so the parent can tell which
 * rate ALSA complained about. fs.writeSync keeps the markers in order with
 * the native fprintf(stderr) messages.
 */
const CHILD_SCRIPT = String.raw`"use strict";
const fs = require("fs");
const args = JSON.parse(process.argv[1]);
const say = (o) => fs.writeSync(1, JSON.stringify(o) + "\n");
const mark = (s) => fs.writeSync(2, "\n${MARK}" + s + "\n");
const msg = (e) => String((e && e.message) || e);
let Speaker;
mark("load");
try { Speaker = require(args.modulePath); } catch (e) { say({ stage: "load", error: msg(e) }); process.exit(2); }
const formats = [];
for (const [id, f] of args.formats) {
  try { if (Speaker.isSupported(Speaker.getFormat(f))) formats.push(id); } catch (e) {}
}
say({ stage: "loaded", module: String(Speaker.module_name), formats });
const base = { channels: 2, bitDepth: 16, signed: true, float: false };
if (args.device) base.device = args.device;
mark("play");
let done = false;
const s = new Speaker({ ...base, sampleRate: 48000 });
s.on("error", (e) => { if (done) return; done = true; say({ stage: "play", error: msg(e) }); process.exit(3); });
s.on("close", () => { if (done) return; done = true; say({ stage: "played" }); rates(); });
s.end(Buffer.alloc(480 * 4));
function rates() {
  const opened = [];
  for (const rate of args.rates) {
    mark("rate " + rate);
    try {
      const t = new Speaker({ ...base, sampleRate: rate });
      t.on("error", () => {});
      t._open();
      t.close(true);
      opened.push(rate);
    } catch (e) {}
  }
  mark("end");
  say({ stage: "rates", opened });
  process.exit(0);
}
`;

const cache = new Map<string, Promise<SpeakerProbeResult>>();

/** Forgets every cached probe result. */
export function clearSpeakerProbeCache(): void {
  cache.clear();
}

/** Where `speaker` resolves from this package, or undefined when it is not installed. */
export function resolveSpeakerModule(): string | undefined {
  try {
    return createRequire(import.meta.url).resolve("speaker");
  } catch {
    return undefined;
  }
}

/**
 * Decides whether `speaker` can be loaded and can open its device, without
 * risking this process. Never rejects.
 */
export function probeSpeaker(options: SpeakerProbeOptions = {}): Promise<SpeakerProbeResult> {
  const env = options.env ?? process.env;
  const modulePath = options.modulePath ?? resolveSpeakerModule();
  const key = JSON.stringify([
    modulePath ?? null,
    options.device ?? null,
    AUDIO_ENV_KEYS.map((k) => env[k] ?? null),
  ]);
  const cached = cache.get(key);
  if (cached !== undefined && options.refresh !== true) return cached;
  const result =
    modulePath === undefined
      ? Promise.resolve<SpeakerProbeResult>({
          ok: false,
          reason: `the optional dependency speaker is not installed: ${INSTALL_HINT}`,
          elapsedMs: 0,
        })
      : runProbe(modulePath, env, options.device, options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
  cache.set(key, result);
  return result;
}

interface ChildReport {
  stage: string;
  error?: string;
  module?: string;
  formats?: number[];
  opened?: number[];
}

function runProbe(
  modulePath: string,
  env: NodeJS.ProcessEnv,
  device: string | undefined,
  timeoutMs: number,
): Promise<SpeakerProbeResult> {
  const started = performance.now();
  const elapsed = (): number => Math.round(performance.now() - started);
  const args = {
    modulePath,
    device: device ?? null,
    formats: [...SPEAKER_FORMATS],
    rates: [...new Set(PCM_RATE_HZ)].sort((a, b) => a - b),
  };
  // NODE_OPTIONS could preload loaders (tsx, coverage) into a child that needs none.
  const childEnv: NodeJS.ProcessEnv = { ...env };
  delete childEnv.NODE_OPTIONS;
  return new Promise((resolve) => {
    let stdout = "";
    let stderr = "";
    let timedOut = false;
    let settled = false;
    const finish = (r: SpeakerProbeResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(r);
    };
    let child: ReturnType<typeof spawn>;
    try {
      child = spawn(process.execPath, ["-e", CHILD_SCRIPT, JSON.stringify(args)], {
        env: childEnv,
        stdio: ["ignore", "pipe", "pipe"],
        windowsHide: true,
      });
    } catch (err) {
      resolve({ ok: false, reason: `cannot run the speaker probe: ${(err as Error).message}`, elapsedMs: 0 });
      return;
    }
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, timeoutMs);
    child.stdout!.setEncoding("utf8").on("data", (d: string) => (stdout += d));
    child.stderr!.setEncoding("utf8").on("data", (d: string) => (stderr += d));
    child.on("error", (err) =>
      finish({ ok: false, reason: `cannot run the speaker probe: ${err.message}`, elapsedMs: elapsed() }),
    );
    child.on("close", (code, signal) => {
      const reports = parseReports(stdout);
      const last = (stage: string): ChildReport | undefined => {
        for (let i = reports.length - 1; i >= 0; i--) if (reports[i]!.stage === stage) return reports[i];
        return undefined;
      };
      const detail = alsaDetail(stderr);
      const failed = (reason: string): SpeakerProbeResult => ({
        ok: false,
        reason,
        ...(detail !== "" ? { detail } : {}),
        elapsedMs: elapsed(),
      });
      const loaded = last("loaded");
      if (timedOut) {
        finish(
          failed(
            `the speaker probe timed out after ${timeoutMs} ms ${loaded ? "opening" : "loading"} the audio device (is it busy or hung?)`,
          ),
        );
      } else if (signal !== null) {
        finish(
          failed(
            loaded === undefined
              ? `${ABORT_REASON}; killed by ${signal}${firstAlsaError(stderr)}`
              : `speaker crashed (${signal}) while opening the audio device${firstAlsaError(stderr)}`,
          ),
        );
      } else if (code === 0 && loaded !== undefined) {
        finish({
          ok: true,
          module: loaded.module ?? "unknown",
          modulePath,
          formats: loaded.formats ?? [],
          rates: exactRates(last("rates")?.opened ?? [], stderr),
          elapsedMs: elapsed(),
        });
      } else {
        const load = last("load");
        const play = last("play");
        if (load !== undefined) {
          const why = (load.error ?? "unknown error").split("\n")[0];
          finish(failed(`the speaker module cannot be loaded (${why}): ${INSTALL_HINT}`));
        } else if (play !== undefined) {
          finish(failed(`the audio device cannot be opened (${play.error})${firstAlsaError(stderr)}`));
        } else {
          finish(failed(`the speaker probe exited with code ${code}${firstAlsaError(stderr)}`));
        }
      }
    });
  });
}

function parseReports(stdout: string): ChildReport[] {
  const out: ChildReport[] = [];
  for (const line of stdout.split("\n")) {
    if (!line.startsWith("{")) continue;
    try {
      out.push(JSON.parse(line) as ChildReport);
    } catch {
      // Not one of ours.
    }
  }
  return out;
}

/** The stderr lines that are not our markers, last few. */
function alsaDetail(stderr: string): string {
  return stderr
    .split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith(MARK))
    .slice(-12)
    .join("\n");
}

/** The most telling ALSA / mpg123 complaint, as "; ALSA: ..." (or ""). */
function firstAlsaError(stderr: string): string {
  const lines = stderr.split("\n").filter((l) => l.trim() !== "" && !l.startsWith(MARK));
  const pick =
    lines.find((l) => /cannot open device|Unknown PCM|cannot find card|No such device/i.test(l)) ??
    lines.find((l) => /error|assert/i.test(l));
  if (pick === undefined) return "";
  const text = pick
    .replace(/^ALSA lib \S+ /, "")
    .replace(/^\[[^\]]*\] error: /, "")
    .trim();
  return `; ALSA: ${text}`;
}

/**
 * Rates that opened and about which mpg123 did not say "rate R not available,
 * using R2" between the child's "rate R" marker and the next one.
 * @internal exported for tests
 */
export function exactRates(opened: readonly number[], stderr: string): number[] {
  const substituted = new Set<number>();
  let current: number | undefined;
  for (const line of stderr.split("\n")) {
    if (line.startsWith(MARK)) {
      const m = /^rate (\d+)$/.exec(line.slice(MARK.length).trim());
      current = m ? Number(m[1]) : undefined;
    } else if (current !== undefined && /not available|cannot set rate/.test(line)) {
      substituted.add(current);
    }
  }
  return opened.filter((r) => !substituted.has(r));
}
