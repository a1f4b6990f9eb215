/**
 * The daemon's CPU with a real guest, per audio second, over whole sessions:
 * `virtio-snd vhost-user --output null` (the command users run) serves one
 * Linux 6.12 guest under QEMU 10 (TCG) per session, which boots, probes the
 * card, plays an 8 s S16 stereo 48 kHz file with `aplay -D hw:0,0` and powers
 * off. "Session" is the daemon's CPU (all threads, schedstat) from before
 * QEMU starts until the daemon has seen the front-end leave; "set-up" is the
 * part of it until the guest first sets the stream's parameters (connection,
 * memory table, rings, the driver's probe); "playing" is from its "stream 0
 * start" line to "stream 0 stop". Each session is run
 * with aplay's default periods (125 ms here) and with 10 ms ones, --runs
 * times, alternating; before each session the minimal C daemon
 * (bench/minimal-daemon.c) plays 5 s at the same period, for the ratio.
 * --empty-tick also runs, while the guest plays, a Node process whose only
 * work is an empty tick of a timerfd per period (bench/daemon-child.mjs
 * empty-tick): the floor of any Node daemon under the same load (QEMU's TCG
 * thread busy on the other core), printed beside the daemon's figure.
 *
 * --warm-up N first has the daemon serve N such sessions at 10 ms periods,
 * unmeasured (800 periods each at the default --seconds): the figures are
 * then those of a daemon whose per-period code V8 has compiled, as one that
 * has served guests for a while.
 *
 *   npx tsx scripts/measure-daemon-cpu.ts [--runs 3] [--seconds 8] [--empty-tick] [--warm-up N] [--bin PATH/bin/virtio-snd.js]
 *
 * --bin measures another build of the command (an older checkout, for a
 * before/after in one run). Needs QEMU >= 10, the native addon, cc and the
 * test guest; builds dist/ when it is older than src/. Not part of the tests.
 */
import { type ChildProcessByStdio, fork, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { Readable } from "node:stream";
import { WavWriter } from "../src/node/wav.js";
import { VIRTIO_SND_PCM_FMT_S16 } from "../src/spec/constants.js";
import { buildBaseline, runBaseline } from "../bench/minimal-daemon.js";
import { BIN, buildDistIfStale } from "../test/guest-helpers/cli-daemon.js";
import { REPO_DIR, bootGuest, describeBoot, ensureGuest, findQemu } from "../test/guest-helpers/qemu.js";

function option(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}
const RUNS = Number(option("runs", "3"));
const SECONDS = Number(option("seconds", "8"));
const bin = option("bin", BIN);
const EMPTY_TICK = process.argv.includes("--empty-tick");
const WARM_UP = Number(option("warm-up", "0"));
const EMPTY_TICK_CHILD = join(REPO_DIR, "bench", "daemon-child.mjs");

/** CPU per tick of an empty Node tick, `periods` of `periodMs`, started now. */
async function emptyTicks(periodMs: number, periods: number): Promise<number> {
  const child = fork(EMPTY_TICK_CHILD, ["empty-tick", String(periodMs), String(periods)], {
    execArgv: ["--no-memory-reducer"],
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  let text = "";
  child.stdout!.on("data", (d: Buffer) => (text += d.toString()));
  await new Promise((r) => child.once("exit", r));
  return Number(text.trim());
}

const qemu = findQemu({ minMajor: 10, devices: ["vhost-user-snd-pci"] });
if (!qemu.ok) throw new Error(qemu.reason);
if (bin === BIN) buildDistIfStale();
const guest = await ensureGuest(undefined, { log: (l) => console.error(l) });
const baseline = buildBaseline();
const dir = mkdtempSync(join(tmpdir(), "vsnd-daemon-cpu-"));

function cpuOf(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
    } catch {
      // The thread exited meanwhile.
    }
  }
  return total / 1e9;
}

// A signal that never repeats: the file's content does not matter to the CPU, its length does.
const frames = 48_000 * SECONDS;
const data = new Uint8Array(frames * 4);
let x = 0x1234_5678;
for (let i = 0; i < data.length; i++) {
  x ^= x << 13;
  x ^= x >>> 17;
  x ^= x << 5;
  data[i] = x & 0xff;
}
const wavPath = join(dir, "long.wav");
const w = new WavWriter(wavPath, { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48_000 });
w.write(data);
w.close();
const wav = new Uint8Array(readFileSync(wavPath));

// Node's options from the command's #! line: the daemon runs as the installed command runs it.
const shebang = readFileSync(bin, "utf8").split("\n", 1)[0]!;
const nodeArgs = /\bnode\b(.*)$/.exec(shebang)?.[1]?.trim().split(/\s+/).filter(Boolean) ?? [];
const socket = join(dir, "snd.sock");
const child: ChildProcessByStdio<null, Readable, Readable> = spawn(
  process.execPath,
  [...nodeArgs, bin, "vhost-user", "--socket", socket, "--output", "null"],
  { cwd: REPO_DIR, stdio: ["ignore", "pipe", "pipe"] },
);
const pid = child.pid!;
let out = "";
let onLine: ((line: string) => void) | null = null;
child.stdout.setEncoding("utf8").on("data", (s: string) => {
  out += s;
  for (const line of s.split("\n")) if (line) onLine?.(line);
});
child.stderr.setEncoding("utf8").on("data", (s: string) => process.stderr.write(`daemon: ${s}`));
const until = async (what: RegExp, from: number, ms: number): Promise<void> => {
  const end = Date.now() + ms;
  while (!what.test(out.slice(from))) {
    if (Date.now() > end) throw new Error(`no ${what} from the daemon:\n${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
};
await until(/listening on/, 0, 20_000);

interface Row {
  mode: string;
  session: number;
  /** CPU ms until the stream's parameters were set (connect, boot, probe). */
  setUpMs: number;
  playing: number;
  periodUs: number;
  cUs: number;
  /** The empty Node tick beside the guest (--empty-tick), µs per period. */
  emptyUs: number;
  xruns: number;
}
const rows: Row[] = [];
let c0 = 0;
const modes = [
  { mode: "default periods", args: "" },
  { mode: "10 ms periods", args: " --period-time=10000 --buffer-time=40000" },
];
/** One guest: boots, plays the file with aplay's `args`, powers off. */
async function playOnce(args: string): Promise<Awaited<ReturnType<typeof bootGuest>>> {
  const r = await bootGuest({
    kernel: guest.kernel,
    initrd: guest.initrd,
    sharedMemory: true,
    memory: 256,
    devices: ["-chardev", `socket,id=vsnd,path=${socket}`, "-device", "vhost-user-snd-pci,chardev=vsnd"],
    payload: {
      script: `step play aplay -q -D hw:0,0${args} /payload/long.wav`,
      files: { "long.wav": wav },
    },
    timeoutMs: 120_000,
    payloadTimeoutMs: 90_000,
  });
  if (r.markers["play"] !== "0") throw new Error(`aplay failed: ${describeBoot(r)}\n${r.console}`);
  return r;
}

for (let w = 1; w <= WARM_UP; w++) {
  const from = out.length;
  const c = cpuOf(pid);
  await playOnce(modes[1]!.args);
  await until(/front-end (disconnected|lost)/, from, 10_000);
  console.log(`warm-up ${w}: ${((cpuOf(pid) - c) / SECONDS).toFixed(4)} CPU s per audio s (not counted)`);
}

for (let run = 1; run <= RUNS; run++) {
  for (const m of modes) {
    const from = out.length;
    // aplay restarts the stream after an xrun: every start-stop window counts.
    let start = 0;
    let playing = 0;
    // CPU until the guest first sets the stream's parameters: connecting, the guest's boot and probe.
    let setUp = NaN;
    const periodMs = m.args ? 10 : 125;
    let empty: Promise<number> | null = null;
    onLine = (line) => {
      if (/stream 0 parameters set/.test(line) && Number.isNaN(setUp)) setUp = cpuOf(pid) - c0;
      if (/stream 0 start/.test(line)) start = cpuOf(pid);
      // The empty tick runs over most of the playing, beside it.
      if (/stream 0 start/.test(line) && EMPTY_TICK && empty === null)
        empty = emptyTicks(periodMs, Math.floor(((SECONDS - 1) * 1000) / periodMs) - 10);
      if (/stream 0 stop/.test(line)) playing += cpuOf(pid) - start;
    };
    const c = baseline === null ? null : runBaseline(baseline, periodMs, 5);
    c0 = cpuOf(pid);
    const r = await playOnce(m.args);
    await until(/front-end (disconnected|lost)/, from, 10_000);
    const session = cpuOf(pid) - c0;
    const emptyS = empty === null ? NaN : await (empty as Promise<number>);
    const text = out.slice(from);
    const period = Number(/period (\d+) B/.exec(text)?.[1] ?? 0);
    const periods = (frames * 4) / Math.max(1, period);
    const row: Row = {
      mode: `${m.mode} (${period / 4} frames)`,
      session: session / SECONDS,
      setUpMs: setUp * 1000,
      playing: playing / SECONDS,
      periodUs: (playing / periods) * 1e6,
      cUs: c === null ? NaN : (c.cpu / c.periods) * 1e6,
      emptyUs: emptyS * 1e6,
      xruns: (text.match(/ xrun/g) ?? []).length,
    };
    rows.push(row);
    // Where an xrun fell (the daemon's clock): mid-stream, or after the guest's last period
    // and before its STOP (a guest late to stop after draining).
    for (const line of text.split("\n"))
      if (/stream 0 (start|stop|xrun)/.test(line) && row.xruns > 0) console.log(`  daemon: ${line}`);
    console.log(
      `run ${run}, ${row.mode}: session ${row.session.toFixed(4)} CPU s per audio s, playing ${row.playing.toFixed(4)}, ` +
        `set-up ${row.setUpMs.toFixed(1)} ms CPU; ` +
        `${row.periodUs.toFixed(0)} µs per period while playing (C baseline ${row.cUs.toFixed(0)} µs, ratio ` +
        `${(row.periodUs / row.cUs).toFixed(2)})` +
        (EMPTY_TICK ? `; empty Node tick beside it ${row.emptyUs.toFixed(0)} µs` : "") +
        `; ${row.xruns} xruns; ${describeBoot(r)}`,
    );
  }
}
child.kill("SIGTERM");
await new Promise((r) => child.once("close", r));
rmSync(dir, { recursive: true, force: true });

const med = (xs: number[], digits = 4): string => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  const v = s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return `${v.toFixed(digits)} (${s[0]!.toFixed(digits)}–${s.at(-1)!.toFixed(digits)})`;
};
console.log(
  `\nnode ${[...nodeArgs, bin].join(" ")}: QEMU ${qemu.version}, TCG; ` +
    (WARM_UP > 0 ? `after ${WARM_UP} unmeasured 10 ms sessions; ` : "a daemon just started; ") +
    `medians of ${RUNS} (range)`,
);
console.log(
  "| aplay periods | whole session, CPU s per audio s | set-up, CPU ms | while playing | µs per period / C baseline |" +
    (EMPTY_TICK ? " empty Node tick beside it, µs (CPU s per audio s) |" : "") +
    " xruns |",
);
console.log(`| --- | --- | --- | --- | --- |${EMPTY_TICK ? " --- |" : ""} --- |`);
for (const m of modes) {
  const rs = rows.filter((r) => r.mode.startsWith(m.mode));
  console.log(
    `| ${rs[0]!.mode} | ${med(rs.map((r) => r.session))} | ${med(
      rs.map((r) => r.setUpMs),
      1,
    )} | ` +
      `${med(rs.map((r) => r.playing))} | ` +
      `${med(rs.map((r) => r.periodUs / r.cUs))} | ` +
      (EMPTY_TICK
        ? `${med(
            rs.map((r) => r.emptyUs),
            0,
          )} (${med(rs.map((r) => (r.emptyUs * 1e-6 * 1000) / (m.args ? 10 : 125)))}) | `
        : "") +
      `${rs.reduce((a, r) => a + r.xruns, 0)} |`,
  );
}
