/**
 * Figures for the README, measured against a real Linux guest under QEMU 10
 * (TCG), the same way for both devices:
 *
 * 1. Frames lost at the end of a playback: the guest plays one WAV file
 *    (S16 stereo 48 kHz, a sweep that never repeats) with `aplay -D hw:0,0`
 *    through `virtio-snd vhost-user --output wav:DIR` (vhost-user-snd-pci) and
 *    through QEMU's own virtio-sound-pci with a wav audiodev fixed at the
 *    file's format (out.frequency=48000,out.channels=2,out.format=s16), one
 *    boot per run. The output is aligned on the input's first frames; "lost"
 *    is the input frames absent at the end.
 * 2. The daemon's CPU time (utime + stime of /proc/PID/stat, all its threads)
 *    while a guest is connected and idle, and while it plays a longer file,
 *    per second of audio played.
 *
 *   npx tsx scripts/measure-guest.ts [--runs N] [--seconds S] [--cpu-seconds S] [--idle-seconds S]
 *
 * Needs QEMU >= 10, the native addon and the test guest (built on first use
 * by scripts/guest/build-guest.sh); builds dist/ when it is older than src/.
 * It is not part of the test suite.
 */
import { type ChildProcessByStdio, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { WavWriter, parseWav } from "../src/node/wav.js";
import { VIRTIO_SND_PCM_FMT_S16 } from "../src/spec/constants.js";
import { nativeAvailable } from "../src/vhost-user/native.js";
import {
  type BootOptions,
  type BootResult,
  REPO_DIR,
  bootGuest,
  describeBoot,
  ensureGuest,
  findQemu,
} from "../test/guest-helpers/qemu.js";

const RATE = 48_000;
const CHANNELS = 2;
const FRAME_BYTES = CHANNELS * 2;

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
}
const RUNS = option("runs", 3);
const SECONDS = option("seconds", 3);
const CPU_SECONDS = option("cpu-seconds", 10);
const IDLE_SECONDS = option("idle-seconds", 5);

// ------------------------------------------------------------------ setup --

const qemu = findQemu({ minMajor: 10, devices: ["vhost-user-snd-pci", "virtio-sound-pci"] });
if (!qemu.ok) throw new Error(qemu.reason);
const native = nativeAvailable();
if (!native.ok) throw new Error(native.reason);

function distStale(): boolean {
  const src = join(REPO_DIR, "src");
  return readdirSync(src, { recursive: true, encoding: "utf8" }).some((entry) => {
    if (!entry.endsWith(".ts") || entry.endsWith(".d.ts")) return false;
    const out = join(REPO_DIR, "dist", entry.replace(/\.ts$/, ".js"));
    return !existsSync(out) || statSync(out).mtimeMs < statSync(join(src, entry)).mtimeMs;
  });
}
if (distStale()) {
  console.error("building dist/ ...");
  execFileSync("npm", ["run", "build"], { cwd: REPO_DIR, stdio: ["ignore", "ignore", "inherit"] });
}

const guest = await ensureGuest(undefined, { log: (l) => console.error(l) });
const dir = mkdtempSync(join(tmpdir(), "vsnd-measure-"));
const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/**
 * S16 stereo: a sweep from 200 Hz to 2 kHz on the left, the same 1/4 turn
 * later on the right, at half scale. No stretch of it repeats, so the
 * output can be aligned on the input's first frames.
 */
function sweep(seconds: number): Uint8Array {
  const frames = Math.round(RATE * seconds);
  const bytes = new Uint8Array(frames * FRAME_BYTES);
  const v = new DataView(bytes.buffer);
  const f0 = 200;
  const k = (2000 - f0) / seconds;
  for (let i = 0; i < frames; i++) {
    const t = i / RATE;
    const phase = 2 * Math.PI * (f0 * t + (k * t * t) / 2);
    v.setInt16(i * 4, Math.round(16_000 * Math.sin(phase)), true);
    v.setInt16(i * 4 + 2, Math.round(16_000 * Math.sin(phase + Math.PI / 2)), true);
  }
  return bytes;
}

function wavFile(name: string, data: Uint8Array): Uint8Array {
  const path = join(dir, name);
  const w = new WavWriter(path, { format: VIRTIO_SND_PCM_FMT_S16, channels: CHANNELS, rate: RATE });
  w.write(data);
  w.close();
  return new Uint8Array(readFileSync(path));
}

const tone = sweep(SECONDS);
const toneWav = wavFile("tone.wav", tone);
const long = sweep(CPU_SECONDS);
const longWav = wavFile("long.wav", long);

// ----------------------------------------------------------------- loss --

interface Loss {
  /** Output frames before the input's first frame (null: the input's first frames are not in the output). */
  lead: number | null;
  /** Input frames found in place, in order. */
  matched: number;
  /** Input frames in range that differ. */
  differing: number;
  /** Input frames absent at the end. */
  lost: number;
  /** Output frames after the last input frame. */
  trailing: number;
  outputFrames: number;
}

function frameEqual(a: Uint8Array, ai: number, b: Uint8Array, bi: number): boolean {
  for (let k = 0; k < FRAME_BYTES; k++) if (a[ai * FRAME_BYTES + k] !== b[bi * FRAME_BYTES + k]) return false;
  return true;
}

/** Aligns `output` (S16 stereo) on the first 64 frames of `input` and counts what is missing at the end. */
function loss(input: Uint8Array, output: Uint8Array): Loss {
  const inFrames = input.length / FRAME_BYTES;
  const outFrames = Math.floor(output.length / FRAME_BYTES);
  const probe = Math.min(64, inFrames);
  let lead: number | null = null;
  for (let o = 0; o + probe <= outFrames && lead === null; o++) {
    let ok = true;
    for (let i = 0; i < probe && ok; i++) ok = frameEqual(input, i, output, o + i);
    if (ok) lead = o;
  }
  if (lead === null)
    return { lead, matched: 0, differing: 0, lost: inFrames, trailing: 0, outputFrames: outFrames };
  const present = Math.min(inFrames, outFrames - lead);
  let matched = 0;
  for (let i = 0; i < present; i++) if (frameEqual(input, i, output, lead + i)) matched++;
  return {
    lead,
    matched,
    differing: present - matched,
    lost: inFrames - present,
    trailing: outFrames - lead - present,
    outputFrames: outFrames,
  };
}

// --------------------------------------------------------------- daemon --

interface CpuSample {
  /** Date.now() */
  at: number;
  /** utime + stime, s. */
  stat: number;
  /** Sum of the threads' schedstat run time, s. */
  sched: number;
}

interface CpuWindow {
  what: string;
  wall: number;
  stat: number;
  sched: number;
  /** Seconds of audio played in the window (0: idle). */
  audio: number;
}

function window(what: string, a: CpuSample, b: CpuSample, audio = 0): CpuWindow {
  return { what, wall: (b.at - a.at) / 1000, stat: b.stat - a.stat, sched: b.sched - a.sched, audio };
}

class CliDaemon {
  readonly child: ChildProcessByStdio<null, Readable, Readable>;
  readonly lines: { at: number; text: string }[] = [];
  private readonly listeners: ((text: string) => void)[] = [];

  constructor(args: string[]) {
    this.child = spawn(process.execPath, [join(REPO_DIR, "bin/virtio-snd.js"), "vhost-user", ...args], {
      cwd: REPO_DIR,
      stdio: ["ignore", "pipe", "pipe"],
    });
    let partial = "";
    this.child.stdout.setEncoding("utf8").on("data", (chunk: string) => {
      const parts = (partial + chunk).split("\n");
      partial = parts.pop()!;
      for (const text of parts) {
        this.lines.push({ at: Date.now(), text });
        for (const l of this.listeners) l(text);
      }
    });
    this.child.stderr.setEncoding("utf8").on("data", (s: string) => process.stderr.write(`[daemon] ${s}`));
  }

  /** Calls `f` with each later stdout line. */
  onLine(f: (text: string) => void): void {
    this.listeners.push(f);
  }

  /** Resolves at the first stdout line from index `from` on that matches `re`. */
  waitFor(re: RegExp, ms: number, from = 0): Promise<void> {
    if (this.lines.slice(from).some((l) => re.test(l.text))) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`daemon: no line matching ${re}`)), ms);
      this.onLine((text) => {
        if (re.test(text)) {
          clearTimeout(timer);
          resolve();
        }
      });
    });
  }

  /**
   * The process's CPU time so far, in seconds: utime + stime of
   * /proc/PID/stat (every thread, in clock ticks), and the sum of the
   * threads' run time in /proc/PID/task/TID/schedstat (nanoseconds; threads
   * that have exited are missing from it).
   */
  cpu(): CpuSample {
    const pid = this.child.pid!;
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    let sched = 0;
    for (const tid of readdirSync(`/proc/${pid}/task`)) {
      try {
        sched += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]) / 1e9;
      } catch {
        // The thread exited meanwhile.
      }
    }
    return { at: Date.now(), stat: (Number(fields[11]) + Number(fields[12])) / CLK_TCK, sched };
  }

  async stop(): Promise<number | null> {
    const exited = new Promise<number | null>((resolve) => this.child.on("close", (code) => resolve(code)));
    this.child.kill("SIGTERM");
    return exited;
  }
}

function boot(
  o: Pick<BootOptions, "devices" | "payload" | "sharedMemory" | "onConsole">,
): Promise<BootResult> {
  return bootGuest({
    kernel: guest.kernel,
    initrd: guest.initrd,
    memory: 256,
    timeoutMs: 150_000,
    payloadTimeoutMs: 100_000,
    ...o,
  });
}

function checked(name: string, r: BootResult, steps: string[]): void {
  const bad = steps.filter((s) => r.markers[s] !== "0");
  if (r.timedOut || r.exitCode !== 0 || bad.length)
    throw new Error(
      `${name}: ${describeBoot(r)}; failed steps: ${bad.join(", ")}\n${r.console}\n${r.stderr}`,
    );
  console.error(`${name}: ${describeBoot(r)}`);
}

// ----------------------------------------------------------------- runs --

const outDir = join(dir, "out");
const socket = join(dir, "snd.sock");
const daemon = new CliDaemon(["--socket", socket, "--output", `wav:${outDir}`, "--input", "silence"]);
await daemon.waitFor(/listening on/, 15_000);
const vhostDevices = [
  "-chardev",
  `socket,id=vsnd,path=${socket}`,
  "-device",
  "vhost-user-snd-pci,chardev=vsnd",
];
const play = (file: string): string[] => [
  'for d in /sys/bus/virtio/devices/*; do [ "$(cat $d/device)" = 0x0019 ] && marker features "$(cat $d/features)"; done',
  `step aplay aplay -q -D hw:0,0 /payload/${file}`,
];

const ours: Loss[] = [];
let session = 0;
let ring = "?";
for (let run = 1; run <= RUNS; run++) {
  const from = daemon.lines.length;
  const r = await boot({
    sharedMemory: true,
    devices: vhostDevices,
    payload: { script: play("tone.wav").join("\n"), files: { "tone.wav": toneWav } },
  });
  checked(`vhost-user run ${run}`, r, ["aplay"]);
  ring = r.markers["features"]?.[34] === "1" ? "packed" : "split";
  // QEMU gone: the device is reset, which closes the file.
  await daemon.waitFor(/front-end (disconnected|lost)/, 10_000, from);
  session++;
  const out = parseWav(new Uint8Array(readFileSync(join(outDir, `stream0-${session}.wav`))));
  ours.push(loss(tone, out.data));
}

const qemus: Loss[] = [];
for (let run = 1; run <= RUNS; run++) {
  const path = join(dir, `qemu-${run}.wav`);
  const r = await boot({
    devices: [
      "-audiodev",
      `wav,id=snd0,path=${path},out.frequency=${RATE},out.channels=${CHANNELS},out.format=s16`,
      "-device",
      "virtio-sound-pci,audiodev=snd0",
    ],
    payload: { script: play("tone.wav").join("\n"), files: { "tone.wav": toneWav } },
  });
  checked(`QEMU virtio-sound-pci run ${run}`, r, ["aplay"]);
  const out = parseWav(new Uint8Array(readFileSync(path)));
  if (out.rate !== RATE || out.channels !== CHANNELS || out.format !== VIRTIO_SND_PCM_FMT_S16)
    throw new Error(`QEMU wrote ${out.rate} Hz x${out.channels} format ${out.format}`);
  qemus.push(loss(tone, out.data));
}

// CPU: idle with a guest connected (the driver probed, nothing playing), then
// the long file with aplay's default periods (125 ms here) and with 10 ms ones.
const cpu: CpuWindow[] = [];
const marks = new Map<string, CpuSample>();
let consoleText = "";
const from = daemon.lines.length;
let playStart: CpuSample | undefined;
const plays: { a: CpuSample; b: CpuSample }[] = [];
daemon.onLine((text) => {
  if (/stream 0 start/.test(text)) playStart = daemon.cpu();
  if (/stream 0 stop/.test(text) && playStart) plays.push({ a: playStart, b: daemon.cpu() });
});
const r = await boot({
  sharedMemory: true,
  devices: vhostDevices,
  payload: {
    script: [
      "marker idle_begin 1",
      `sleep ${IDLE_SECONDS}`,
      "marker idle_end 1",
      "step aplay aplay -q -D hw:0,0 /payload/long.wav",
      "step aplay10 aplay -q -D hw:0,0 --period-time=10000 --buffer-time=40000 /payload/long.wav",
    ].join("\n"),
    files: { "long.wav": longWav },
  },
  onConsole: (text) => {
    consoleText += text;
    for (const m of ["idle_begin", "idle_end"])
      if (!marks.has(m) && consoleText.includes(`@@VSND ${m}=`)) marks.set(m, daemon.cpu());
  },
});
checked("vhost-user CPU run", r, ["aplay", "aplay10"]);
await daemon.waitFor(/front-end (disconnected|lost)/, 10_000, from);
const idleBegin = marks.get("idle_begin");
const idleEnd = marks.get("idle_end");
if (idleBegin && idleEnd) cpu.push(window("guest connected, idle", idleBegin, idleEnd));
const longLoss: Loss[] = [];
for (const [i, what] of ["default periods", "10 ms periods"].entries()) {
  session++;
  const out = parseWav(new Uint8Array(readFileSync(join(outDir, `stream0-${session}.wav`))));
  longLoss.push(loss(long, out.data));
  const p = plays[i];
  const setParams = daemon.lines.slice(from).filter((l) => /stream 0 parameters set/.test(l.text));
  const periods = setParams[i]?.text.match(/period (\d+) B/)?.[1];
  const label = `playing ${CPU_SECONDS} s, ${what}${periods ? ` (${Number(periods) / FRAME_BYTES} frames)` : ""}`;
  if (p) cpu.push(window(label, p.a, p.b, out.frames / RATE));
}
const code = await daemon.stop();
rmSync(dir, { recursive: true, force: true });
if (code !== 0) throw new Error(`the daemon exited ${code}`);

// ---------------------------------------------------------------- table --

const inFrames = tone.length / FRAME_BYTES;
const cell = (l: Loss): string =>
  l.lead === null ? "unaligned" : `${l.lost}${l.differing ? ` (${l.differing} differ)` : ""}`;
const row = (cells: string[]): string => `| ${cells.join(" | ")} |`;
const runs = Array.from({ length: RUNS }, (_, i) => `run ${i + 1}`);
console.log(
  `Frames lost at the end of a ${SECONDS} s S16_LE stereo 48 kHz playback (${inFrames} frames; ` +
    `aplay -D hw:0,0, one boot per run; QEMU ${qemu.version}, TCG):\n`,
);
console.log(row(["device", ...runs]));
console.log(row(["---", ...runs.map(() => "---:")]));
console.log(row([`virtio-snd vhost-user --output wav:DIR (${ring} rings)`, ...ours.map(cell)]));
console.log(row(["QEMU virtio-sound-pci, -audiodev wav", ...qemus.map(cell)]));
console.log("\nDetails (output frames before the input / frames after it / output frames):");
for (const [name, ls] of [
  ["vhost-user", ours],
  ["QEMU", qemus],
] as const)
  console.log(`  ${name}: ${ls.map((l) => `${l.lead ?? "-"}/${l.trailing}/${l.outputFrames}`).join(", ")}`);
console.log(
  `\nThe daemon's CPU time (utime+stime from /proc/PID/stat at CLK_TCK ${CLK_TCK}; ` +
    "in brackets the threads' schedstat run time):\n",
);
console.log(row(["daemon", "wall s", "CPU s", "CPU s per second"]));
console.log(row(["---", "---:", "---:", "---:"]));
for (const w of cpu) {
  const per = w.audio > 0 ? w.audio : w.wall;
  console.log(
    row([
      w.what,
      w.wall.toFixed(2),
      `${w.stat.toFixed(2)} (${w.sched.toFixed(4)})`,
      `${(w.stat / per).toFixed(4)} (${(w.sched / per).toFixed(5)}) per ${w.audio > 0 ? "audio" : "wall"} s`,
    ]),
  );
}
console.log(
  `\nThe ${CPU_SECONDS} s playbacks lost ${longLoss.map(cell).join(" and ")} frames at the end; ` +
    `the idle window is ${IDLE_SECONDS} s of \`sleep\` in the guest.`,
);
