/**
 * CPU of the vhost-user daemon per audio period, in real time, without QEMU.
 *
 *   npx tsx bench/daemon-cpu.ts [--backend wav|null|both] [--seconds 10] [--period-ms 10]
 *
 * The parent plays QEMU and the guest (guest RAM in a memfd, eventfd kicks
 * and calls, rings with EVENT_IDX, the Linux driver's requests); a
 * child process (bench/daemon-child.mjs, on the compiled dist/ with the
 * installed command's node options) runs only the daemon: VhostUserDaemon on
 * the NativeClock with a WavFileBackend (files in a temporary folder) or a
 * NullBackend. The
 * child's CPU (all its threads, from /proc/<pid>/task/<tid>/schedstat, so the
 * measurement costs it nothing) is read when the stream starts and when the last period
 * completes; the front-end keeps 4 periods queued and requeues one per
 * completion interrupt, as Linux's sound/virtio does. An idle second (the
 * front-end connected, no stream) is measured first.
 *
 * Profile the daemon with --prof-dir <dir>: the child runs with
 * node --cpu-prof --cpu-prof-dir <dir>. DAEMON_NODE_ARGS="--trace-gc ..." adds
 * node options to the child; DAEMON_CPU_THREADS=1 prints the child's pid, its
 * per-thread CPU and time slices, and its clock's arms and timer lateness.
 * DAEMON_EXEC_PATH=<program> starts the child with another program in
 * place of node (a wrapper that runs node under valgrind, say).
 * --empty-tick-baseline also runs, after the daemon, a Node process whose
 * only work is an empty tick of a timerfd per period: the floor of any Node
 * daemon here, printed beside the C one.
 * --sessions N (default 1): one daemon serves N front-ends in turn, each
 * connecting, probing, playing and leaving; the first session's figures
 * (the daemon's code not yet compiled) and the last one's (a warm daemon, as
 * one that has served guests before) are summarized apart.
 * --runs N (default 3) repeats each measurement; before each run the minimal C
 * daemon (bench/minimal-daemon.c, built with cc into the temporary folder)
 * plays the same stream, and the daemon's CPU per period is printed as a
 * ratio to it, with the median and range over the runs.
 * --ring packed|split (default packed) and --direct choose the rings: by
 * default packed ones with every message in an indirect table, as Linux 6.12's
 * driver lays them out behind QEMU 10's vhost-user-snd-pci (which offers the
 * guest the back-end's packed ring); --ring split --direct is the layout of a
 * front-end that negotiates neither.
 * Linux only (memfd, eventfd, /proc).
 */
import { fork } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_S_OK, VIRTIO_SND_VQ_TX } from "../src/spec/constants.js";
import { type NativeBinding, loadNative } from "../src/vhost-user/native.js";
import { buildDistIfStale } from "../test/guest-helpers/cli-daemon.js";
import { NativeFrontEnd, sleep } from "../test/vhost-user/native-front-end.js";
import { buildBaseline, runBaseline } from "./minimal-daemon.js";

/** The children run the compiled package with the installed command's node options (bin/virtio-snd.js). */
const CHILD = fileURLToPath(new URL("./daemon-child.mjs", import.meta.url));
const CHILD_NODE_ARGS = ["--no-memory-reducer"];

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

const RING = arg("ring", "packed");
if (RING !== "packed" && RING !== "split") throw new Error(`--ring ${RING}: packed or split`);
const INDIRECT = !process.argv.includes("--direct");

// ---- parent: QEMU and the guest ----------------------------------------------------------------

/** CPU seconds of every thread of `pid` (schedstat run time: ns, so short runs are precise). */
function cpuOf(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`))
    total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
  return total / 1e9;
}

/** user and system seconds, voluntary context switches (wake-ups) and minor faults, all threads of `pid`. */
function procStats(pid: number): { user: number; system: number; switches: number; minorFaults: number } {
  const tick = 100; // USER_HZ
  let user = 0;
  let system = 0;
  let switches = 0;
  let minorFaults = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    minorFaults += Number(f[7]);
    user += Number(f[11]) / tick;
    system += Number(f[12]) / tick;
    const status = readFileSync(`/proc/${pid}/task/${tid}/status`, "utf8");
    switches += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return { user, system, switches, minorFaults };
}

/** Per thread: CPU seconds and time slices (a slice ends at each wake-up's sleep). */
function threadsOf(pid: number): Map<string, number> {
  const m = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, "utf8").trim();
    const sched = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
    m.set(`${tid} ${comm} cpu s`, Number(sched[0]) / 1e9);
    m.set(`${tid} ${comm} timeslices`, Number(sched[2]));
  }
  return m;
}

interface Result {
  backend: string;
  periods: number;
  audioSeconds: number;
  cpuSeconds: number;
  userSeconds: number;
  systemSeconds: number;
  /** Voluntary context switches of all threads: each is a sleep, so a wake-up follows. */
  switches: number;
  minorFaults: number;
  idleCpuPerSecond: number;
  /** CPU seconds from before the front-end connected to the end of its probe (memory table, rings, control requests). */
  setUpSeconds: number;
  wallSeconds: number;
}

/** One daemon child serving `sessions` front-ends in turn; the figures of each session. */
async function runOne(
  n: NativeBinding,
  backendKind: string,
  seconds: number,
  periodMs: number,
  profDir: string | null,
  sessions: number,
): Promise<Result[]> {
  const dir = mkdtempSync(join(tmpdir(), "virtio-snd-cpu-"));
  const socketPath = join(dir, "snd.sock");
  const execArgv = [...CHILD_NODE_ARGS];
  if (profDir !== null) execArgv.push("--cpu-prof", "--cpu-prof-dir", profDir);
  const extra = process.env["DAEMON_NODE_ARGS"];
  if (extra) execArgv.push(...extra.split(" "));
  const child = fork(CHILD, ["daemon", socketPath, backendKind, join(dir, "wav"), arg("clock", "native")], {
    execArgv,
    execPath: process.env["DAEMON_EXEC_PATH"] ?? process.execPath,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  await new Promise<void>((resolve, reject) => {
    child.once("message", () => resolve());
    child.once("exit", (code) => reject(new Error(`daemon exited (${code})`)));
  });
  const pid = child.pid!;
  if (process.env["DAEMON_CPU_THREADS"]) console.log(`daemon pid ${pid}`);
  try {
    const results: Result[] = [];
    for (let session = 0; session < sessions; session++)
      results.push(await playSession(n, pid, socketPath, backendKind, seconds, periodMs));
    return results;
  } finally {
    child.send("exit");
    await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}

/** One front-end's session with the daemon `pid`: connect, probe, play `seconds`, leave. */
async function playSession(
  n: NativeBinding,
  pid: number,
  socketPath: string,
  backendKind: string,
  seconds: number,
  periodMs: number,
): Promise<Result> {
  const released: (() => void)[] = [];
  try {
    const setUp0 = cpuOf(pid);
    const fe = new NativeFrontEnd(n, socketPath, released, RING === "packed", undefined, INDIRECT);
    await fe.connect("set");
    const g = fe.guest;
    g.queueEventBuffers(8);
    await g.probe({ jacks: 2, streams: 2, chmaps: 6 });

    // Idle: connected, nothing playing.
    await sleep(200);
    const setUpSeconds = cpuOf(pid) - setUp0;
    let c0 = cpuOf(pid);
    let t0 = performance.now();
    await sleep(1000);
    const idleCpuPerSecond = (cpuOf(pid) - c0) / ((performance.now() - t0) / 1000);

    const periodBytes = 48 * periodMs * 4;
    const bufferPeriods = 4;
    const total = Math.round((seconds * 1000) / periodMs);
    const params = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000, periodBytes };
    const st = await g.setParams(0, { ...params, bufferBytes: periodBytes * bufferPeriods });
    if (st !== VIRTIO_SND_S_OK) throw new Error(`SET_PARAMS failed: 0x${st.toString(16)}`);
    if ((await g.pcm("prepare", 0)) !== VIRTIO_SND_S_OK) throw new Error("PREPARE failed");
    // One period of signal, queued again and again (the guest's ring buffer).
    const period = new Uint8Array(periodBytes);
    for (let i = 0; i < periodBytes; i += 2) period[i] = i & 0xff;
    let queued = 0;
    let done = 0;
    // The periods of a fixed buffer, requeued in turn, as Linux's driver does with its ALSA buffer.
    for (; queued < bufferPeriods; queued++) g.queueTxSlot(0, queued % bufferPeriods, period);
    if ((await g.pcm("start", 0)) !== VIRTIO_SND_S_OK) throw new Error("START failed");
    c0 = cpuOf(pid);
    const p0 = procStats(pid);
    const threads0 = threadsOf(pid);
    t0 = performance.now();
    const callFd = fe.callFds[VIRTIO_SND_VQ_TX]!;
    await new Promise<void>((resolve) => {
      const poll = n.poll(callFd, 1, () => {
        n.eventfdRead(callFd);
        const got = g.reapTx();
        done += got.length;
        for (let i = 0; i < got.length && queued < total; i++, queued++)
          g.queueTxSlot(0, queued % bufferPeriods, period);
        if (done >= total) {
          poll.stop();
          resolve();
        }
      });
    });
    const cpuSeconds = cpuOf(pid) - c0;
    const p1 = procStats(pid);
    if (process.env["DAEMON_CPU_THREADS"])
      for (const [k, v] of threadsOf(pid))
        console.log(`  ${k}: ${(v - (threads0.get(k) ?? 0)).toFixed(3)} s`);
    const wallSeconds = (performance.now() - t0) / 1000;
    await g.pcm("stop", 0);
    await g.pcm("release", 0);
    return {
      backend: backendKind,
      periods: total,
      audioSeconds: (total * periodMs) / 1000,
      cpuSeconds,
      userSeconds: p1.user - p0.user,
      systemSeconds: p1.system - p0.system,
      switches: p1.switches - p0.switches,
      minorFaults: p1.minorFaults - p0.minorFaults,
      idleCpuPerSecond,
      setUpSeconds,
      wallSeconds,
    };
  } finally {
    // The front-end leaves: the daemon resets the device and takes the next connection.
    for (const f of released.reverse()) f();
  }
}

// ---- the floor of Node: an empty tick ------------------------------------------------------------

async function runEmptyTicks(periodMs: number, seconds: number): Promise<number> {
  const periods = Math.round((seconds * 1000) / periodMs);
  const child = fork(CHILD, ["empty-tick", String(periodMs), String(periods)], {
    execArgv: CHILD_NODE_ARGS,
    execPath: process.env["DAEMON_EXEC_PATH"] ?? process.execPath,
    stdio: ["ignore", "pipe", "inherit", "ipc"],
  });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  await new Promise((r) => child.once("exit", r));
  return Number(out.trim());
}

/** Median and range of `xs`. */
function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

const us = (s: number): string => (s * 1e6).toFixed(0);

async function main(): Promise<void> {
  buildDistIfStale();
  const n = loadNative();
  const which = arg("backend", "both");
  const seconds = Number(arg("seconds", "10"));
  const periodMs = Number(arg("period-ms", "10"));
  const runs = Math.max(1, Number(arg("runs", "3")));
  const profDir = process.argv.includes("--prof-dir") ? arg("prof-dir", "") : null;
  const kinds = which === "both" ? ["null", "wav"] : [which];
  const baseline = buildBaseline();
  const emptyTick = process.argv.includes("--empty-tick-baseline");
  const sessions = Math.max(1, Number(arg("sessions", "1")));
  console.log(
    `daemon CPU, 48 kHz S16 stereo, ${periodMs} ms periods, ${seconds} s of audio in real time, ` +
      `${runs} runs of ${sessions} session${sessions === 1 ? "" : "s"}, ${RING} rings, ` +
      `${INDIRECT ? "indirect tables" : "direct descriptors"}`,
  );
  if (baseline === null) console.log("(no C compiler: the C baseline is left out)");
  for (const kind of kinds) {
    // Per session number: the daemon's CPU per period and its ratio to the C baseline, over the runs.
    const perPeriod: number[][] = Array.from({ length: sessions }, () => []);
    const ratios: number[][] = Array.from({ length: sessions }, () => []);
    const cPerPeriod: number[] = [];
    const emptyPerPeriod: number[] = [];
    for (let run = 0; run < runs; run++) {
      // The baseline runs right before the daemon, so both see the same load.
      const c = baseline === null ? null : runBaseline(baseline, periodMs, seconds);
      const cPer = c === null ? null : c.cpu / c.periods;
      if (c !== null && cPer !== null) {
        cPerPeriod.push(cPer);
        console.log(
          `${kind.padEnd(5)} run ${run + 1}: C baseline ${us(cPer)} µs/period (${(c.wakeups / c.periods).toFixed(2)} wake-ups)`,
        );
      }
      const results = await runOne(n, kind, seconds, periodMs, profDir, sessions);
      results.forEach((r, i) => {
        const per = r.cpuSeconds / r.periods;
        perPeriod[i]!.push(per);
        let line =
          `${kind.padEnd(5)} run ${run + 1}, session ${i + 1}: ${r.periods} periods in ${r.wallSeconds.toFixed(2)} s: ` +
          `${us(per)} µs CPU/period (user ${us(r.userSeconds / r.periods)}, sys ${us(r.systemSeconds / r.periods)}), ` +
          `${(r.cpuSeconds / r.audioSeconds).toFixed(4)} CPU s/audio s, ` +
          `${(r.switches / r.periods).toFixed(2)} wake-ups/period, ${(r.minorFaults / r.periods).toFixed(2)} faults/period, ` +
          `idle ${(r.idleCpuPerSecond * 1000).toFixed(2)} ms CPU/s, set-up ${(r.setUpSeconds * 1000).toFixed(1)} ms CPU`;
        if (cPer !== null) {
          ratios[i]!.push(per / cPer);
          line += `, ratio to C ${(per / cPer).toFixed(2)}`;
        }
        console.log(line);
      });
      if (emptyTick) {
        const empty = await runEmptyTicks(periodMs, Math.min(seconds, 5));
        emptyPerPeriod.push(empty);
        console.log(`${kind.padEnd(5)} run ${run + 1}: empty Node tick ${us(empty)} µs`);
      }
    }
    const range = (xs: number[], f: (x: number) => string): string => {
      const q = stats(xs);
      return `${f(q.median)} (${f(q.min)}–${f(q.max)})`;
    };
    const ratio = (x: number): string => x.toFixed(2);
    if (cPerPeriod.length > 0)
      console.log(`${kind.padEnd(5)} C baseline: median ${range(cPerPeriod, us)} µs/period`);
    // The first session meets a daemon just started (its code not yet compiled); the last one a warm daemon.
    const shown = sessions === 1 ? [0] : [0, sessions - 1];
    for (const i of shown) {
      const label =
        sessions === 1 ? "" : i === 0 ? " first session (fresh daemon)" : ` session ${i + 1} (warm daemon)`;
      let line = `${kind.padEnd(5)}${label}: median ${range(perPeriod[i]!, us)} µs CPU/period`;
      if (ratios[i]!.length > 0) line += `, ratio to C ${range(ratios[i]!, ratio)}`;
      console.log(line);
    }
    if (emptyPerPeriod.length > 0 && cPerPeriod.length > 0) {
      const q = emptyPerPeriod.map((x, i) => x / cPerPeriod[i]!);
      console.log(
        `${kind.padEnd(5)} empty Node tick: median ${range(emptyPerPeriod, us)} µs, ratio to C ${range(q, ratio)}`,
      );
    }
  }
}

await main();
