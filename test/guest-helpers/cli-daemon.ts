/**
 * Helpers for tests that run the command users run (`node bin/virtio-snd.js
 * vhost-user ...`) as a child process against real Linux guests: the daemon
 * and its output, dist/ kept current for it, noise WAV inputs, exact
 * comparison of what was played, and the guest's dmesg complaints.
 *
 * Test code, Node only.
 */
import { type ChildProcessByStdio, execFileSync, spawn } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import type { Readable } from "node:stream";
import { WavWriter } from "../../src/node/wav.js";
import {
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_U8,
} from "../../src/spec/constants.js";
import { nativeAvailable } from "../../src/vhost-user/native.js";
import { REPO_DIR, findQemu } from "./qemu.js";

export const BIN = join(REPO_DIR, "bin/virtio-snd.js");

/**
 * Why a real guest cannot reach the vhost-user back end here, or "" when it
 * can: that needs QEMU >= 10 with vhost-user-snd-pci, and the native addon.
 */
export function vhostUserGuestProblem(): string {
  const qemu = findQemu({ minMajor: 10, devices: ["vhost-user-snd-pci"] });
  if (!qemu.ok) return qemu.reason;
  const native = nativeAvailable();
  return native.ok ? "" : native.reason;
}

/** Boot options that stream the guest's console when VSND_GUEST_DEBUG is set. */
export const guestDebug: { onConsole?: (s: string) => void } = process.env["VSND_GUEST_DEBUG"]
  ? { onConsole: (s: string) => process.stdout.write(s) }
  : {};

// ------------------------------------------------------------------ dist --

/** Why dist/ must be rebuilt (a source newer than its output, or missing), or "" when it is current. */
export function distStale(): string {
  const src = join(REPO_DIR, "src");
  for (const entry of readdirSync(src, { recursive: true, encoding: "utf8" })) {
    if (!entry.endsWith(".ts") || entry.endsWith(".d.ts")) continue;
    const out = join(REPO_DIR, "dist", entry.replace(/\.ts$/, ".js"));
    if (!existsSync(out)) return `${relative(REPO_DIR, out)} is missing`;
    if (statSync(out).mtimeMs < statSync(join(src, entry)).mtimeMs)
      return `${relative(REPO_DIR, out)} is older than src/${entry}`;
  }
  return "";
}

/** `npm run build` when dist/ is stale (the command runs from dist/, not from src/); throws its output on failure. */
export function buildDistIfStale(): void {
  const stale = distStale();
  if (!stale) return;
  console.log(`building dist/ (${stale})`);
  try {
    execFileSync("npm", ["run", "build"], { cwd: REPO_DIR, stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const { stdout, stderr } = e as { stdout?: Buffer; stderr?: Buffer };
    throw new Error(`npm run build failed:\n${stdout?.toString() ?? ""}${stderr?.toString() ?? ""}`);
  }
}

// -------------------------------------------------------------- signals --

export interface Sample {
  name: string;
  /** aplay's name for the format, and ours. */
  alsa: string;
  format: number;
  channels: number;
  rate: number;
  seconds: number;
  /** Bytes per sample. */
  width: number;
  /** One sample of silence. */
  silence: number[];
}

const FORMATS = {
  s16: { alsa: "S16_LE", format: VIRTIO_SND_PCM_FMT_S16, width: 2, silence: [0, 0] },
  u8: { alsa: "U8", format: VIRTIO_SND_PCM_FMT_U8, width: 1, silence: [0x80] },
  s32: { alsa: "S32_LE", format: VIRTIO_SND_PCM_FMT_S32, width: 4, silence: [0, 0, 0, 0] },
  float: { alsa: "FLOAT_LE", format: VIRTIO_SND_PCM_FMT_FLOAT, width: 4, silence: [0, 0, 0, 0] },
  s24_3: { alsa: "S24_3LE", format: VIRTIO_SND_PCM_FMT_S24_3, width: 3, silence: [0, 0, 0] },
} as const;

/** The signal to play in format `name` (its ALSA name, width and silence follow from it). */
export function sample(name: keyof typeof FORMATS, channels: number, rate: number, seconds: number): Sample {
  const { alsa, format, width, silence } = FORMATS[name];
  return { name, alsa, format, channels, rate, seconds, width, silence: [...silence] };
}

/**
 * Noise that never repeats (xorshift32 from `seed`) in the sample's format:
 * a dropped, repeated or reordered period would not match. Floats are in
 * [-0.5, 0.5) so every value is an ordinary number.
 */
export function noise(
  s: Pick<Sample, "format" | "channels" | "rate" | "seconds" | "width">,
  seed: number,
): Uint8Array {
  const frames = Math.round(s.rate * s.seconds);
  const bytes = new Uint8Array(frames * s.channels * s.width);
  const view = new DataView(bytes.buffer);
  let x = seed >>> 0 || 1;
  const next = (): number => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x;
  };
  for (let o = 0; o < bytes.length; o += s.width) {
    if (s.format === VIRTIO_SND_PCM_FMT_FLOAT) {
      view.setFloat32(o, next() / 2 ** 32 - 0.5, true);
    } else {
      const v = next();
      for (let b = 0; b < s.width; b++) bytes[o + b] = (v >>> (8 * b)) & 0xff;
    }
  }
  return bytes;
}

/** A WAV file (the project's writer) holding `data`; returns its bytes. */
export function wavFile(
  path: string,
  s: Pick<Sample, "format" | "channels" | "rate">,
  data: Uint8Array,
): Uint8Array {
  const w = new WavWriter(path, { format: s.format, channels: s.channels, rate: s.rate });
  w.write(data);
  w.close();
  return new Uint8Array(readFileSync(path));
}

/**
 * Compares a played file with its input: every input frame, in order, from
 * the first, then nothing but silence. Returns "" or what is wrong.
 */
export function playedExactly(
  input: Uint8Array,
  output: Uint8Array,
  frameBytes: number,
  silence: number[],
): string {
  const inFrames = input.length / frameBytes;
  const outFrames = Math.floor(output.length / frameBytes);
  if (outFrames < inFrames) {
    // Find how far it matches, for the message.
    let same = 0;
    while (same < output.length && output[same] === input[same]) same++;
    return `${inFrames - outFrames} of ${inFrames} frames missing (the first ${Math.floor(same / frameBytes)} match)`;
  }
  for (let f = 0; f < inFrames; f++) {
    const o = f * frameBytes;
    for (let b = 0; b < frameBytes; b++)
      if (output[o + b] !== input[o + b]) return `frame ${f} of ${inFrames} differs (byte ${b})`;
  }
  for (let o = input.length; o < output.length; o++)
    if (output[o] !== silence[(o - input.length) % silence.length])
      return `the ${outFrames - inFrames} frames after the input are not silence (byte ${o - input.length})`;
  return "";
}

/** A WAV file whose RIFF and data sizes describe the whole file (as a finished writer leaves it). */
export function finished(bytes: Uint8Array): string {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (v.getUint32(4, true) !== bytes.length - 8)
    return `RIFF size ${v.getUint32(4, true)}, file ${bytes.length} bytes`;
  let o = 12;
  while (o + 8 <= bytes.length) {
    const id = String.fromCharCode(...bytes.subarray(o, o + 4));
    const size = v.getUint32(o + 4, true);
    if (id === "data")
      return o + 8 + size + (size % 2) === bytes.length ? "" : `data size ${size} does not end the file`;
    o += 8 + size + (size % 2);
  }
  return "no data chunk";
}

// ---------------------------------------------------------------- daemon --

export interface Line {
  /** ms since the daemon started. */
  at: number;
  text: string;
}

/** `node bin/virtio-snd.js vhost-user ...` as a child process, its output as lines. */
export class CliDaemon {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly out: Line[] = [];
  readonly err: Line[] = [];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly t0 = Date.now();
  private waiters: (() => void)[] = [];

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [BIN, "vhost-user", ...args], {
      cwd: REPO_DIR,
      stdio: ["ignore", "pipe", "pipe"],
    });
    const collect = (stream: Readable, into: Line[]): void => {
      let partial = "";
      stream.setEncoding("utf8").on("data", (chunk: string) => {
        const parts = (partial + chunk).split("\n");
        partial = parts.pop()!;
        for (const text of parts) into.push({ at: Date.now() - this.t0, text });
        for (const w of this.waiters.splice(0)) w();
      });
    };
    collect(this.child.stdout, this.out);
    collect(this.child.stderr, this.err);
    this.exited = new Promise((resolve) => {
      this.child.on("close", (code, signal) => {
        for (const w of this.waiters.splice(0)) w();
        resolve({ code, signal });
      });
    });
  }

  /** Resolves with the first stdout line after `from` matching `re`; rejects after `ms` or if the daemon exits. */
  async waitFor(re: RegExp, ms: number, from = 0): Promise<Line> {
    const deadline = Date.now() + ms;
    for (;;) {
      const hit = this.out.slice(from).find((l) => re.test(l.text));
      if (hit) return hit;
      if (this.child.exitCode !== null || this.child.signalCode !== null)
        throw new Error(`the daemon exited before printing ${re}\n${this.transcript()}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no line matching ${re} within ${ms} ms\n${this.transcript()}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  transcript(): string {
    return [
      "--- daemon stdout ---",
      ...this.out.map((l) => l.text),
      "--- daemon stderr ---",
      ...this.err.map((l) => l.text),
    ].join("\n");
  }

  kill(): void {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill("SIGKILL");
  }
}

// ----------------------------------------------------------------- guest --

/**
 * A line of the guest's dmesg in which virtio_snd, ALSA or a virtio device
 * complains (virtio_snd's dev_err lines read "virtio_snd virtioN: ...", such
 * as "SID 0: failed to flush I/O queue" or "control message (0x...)
 * timeout"; when all goes well it prints nothing).
 */
export const DMESG_COMPLAINT = /fail|invalid|time(d)? ?out|error|warn|bug|oops|unexpected/i;
export const DMESG_SOUND = /virtio[_-]?snd|virtio\d+:|snd[_-]pcm|\bALSA\b/i;

export function complaints(dmesg: string): string[] {
  return dmesg
    .split("\n")
    .filter((l) => DMESG_SOUND.test(l) && DMESG_COMPLAINT.test(l) && !/command line:/i.test(l));
}

/** The virtio feature bits the guest negotiated with the sound device (sysfs string: bit i is character i). */
export const FEATURES_SCRIPT =
  'for d in /sys/bus/virtio/devices/*; do [ "$(cat $d/device)" = 0x0019 ] && marker features "$(cat $d/features)"; done';
