/**
 * Many guests in one daemon: RSS, CPU per playing stream and xruns.
 *
 *   npx tsx bench/many-guests.ts [--guests 1,8,32] [--seconds 10] [--period-ms 10] [--runs 3]
 *
 * For each count N, a child process runs `virtio-snd vhost-user --socket-dir
 * DIR --guests N --output null` (the command users run, from the sources),
 * and the parent plays N QEMU-like front-ends (test/vhost-user's
 * NativeFrontEnd: memfd guest RAM, eventfd kicks and calls), each playing
 * one 48 kHz S16 stereo stream from a fixed ring of 4 periods, all at once.
 * Reported: the child's RSS (VmRSS) with nobody connected and while all N
 * play, RSS per added guest, its CPU per stream and period (all threads,
 * schedstat) beside the minimal C daemon's per period
 * (bench/minimal-daemon.c, run just before), and the xruns the daemon
 * printed. Linux only.
 */
import { fork } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { main as cliMain } from "../src/cli/main.js";
import { VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_S_OK, VIRTIO_SND_VQ_TX } from "../src/spec/constants.js";
import { type NativeBinding, loadNative } from "../src/vhost-user/native.js";
import { NativeFrontEnd, sleep, until } from "../test/vhost-user/native-front-end.js";
import { buildBaseline, runBaseline } from "./minimal-daemon.js";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

function cpuOf(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`))
    total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
  return total / 1e9;
}

function rssMiB(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  return Number(m?.[1] ?? 0) / 1024;
}

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

interface Result {
  idleRss: number;
  playingRss: number;
  cpuPerStreamPeriod: number;
  xruns: number;
}

async function runOne(n: NativeBinding, guests: number, seconds: number, periodMs: number): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), "virtio-snd-guests-"));
  const sockets = join(dir, "sockets");
  let out = "";
  const child = fork(
    process.argv[1]!,
    ["--daemon", "--socket-dir", sockets, "--guests", String(guests), "--output", "null"],
    { execArgv: process.execArgv, stdio: ["ignore", "pipe", "inherit", "ipc"] },
  );
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  const released: (() => void)[] = [];
  try {
    await until("the daemon to listen", () => /listening on/.test(out), 30_000);
    const pid = child.pid!;
    await sleep(500);
    const idleRss = rssMiB(pid);
    const periodBytes = 48 * periodMs * 4;
    const total = Math.round((seconds * 1000) / periodMs);
    const params = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000, periodBytes };
    const period = new Uint8Array(periodBytes);
    for (let i = 0; i < periodBytes; i += 2) period[i] = i & 0xff;
    const fes: NativeFrontEnd[] = [];
    for (let i = 1; i <= guests; i++) {
      const fe = new NativeFrontEnd(n, join(sockets, `guest-${i}.sock`), released);
      await fe.connect("set");
      fe.guest.queueEventBuffers(8);
      await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
      const st = await fe.guest.setParams(0, { ...params, bufferBytes: periodBytes * 4 });
      if (st !== VIRTIO_SND_S_OK) throw new Error(`SET_PARAMS failed: 0x${st.toString(16)}`);
      if ((await fe.guest.pcm("prepare", 0)) !== VIRTIO_SND_S_OK) throw new Error("PREPARE failed");
      fes.push(fe);
    }
    const finished: Promise<void>[] = [];
    const polls: { stop(): void }[] = [];
    for (const fe of fes) {
      const g = fe.guest;
      for (let k = 0; k < 4; k++) g.queueTxSlot(0, k, period);
      if ((await g.pcm("start", 0)) !== VIRTIO_SND_S_OK) throw new Error("START failed");
      let queued = 4;
      let done = 0;
      const callFd = fe.callFds[VIRTIO_SND_VQ_TX]!;
      finished.push(
        new Promise<void>((resolve) => {
          // Requeued until the stream is stopped, so no guest starves while the others are told to stop.
          polls.push(
            n.poll(callFd, 1, () => {
              n.eventfdRead(callFd);
              const got = g.reapTx().length;
              done += got;
              for (let i = 0; i < got; i++, queued++) g.queueTxSlot(0, queued % 4, period);
              if (done >= total) resolve();
            }),
          );
        }),
      );
    }
    // Measured from one second in (every guest started), for `seconds - 2` seconds.
    await sleep(1000);
    const c0 = cpuOf(pid);
    const t0 = performance.now();
    await sleep((seconds - 2) * 1000);
    const cpu = cpuOf(pid) - c0;
    const wall = (performance.now() - t0) / 1000;
    const playingRss = rssMiB(pid);
    await Promise.all(finished);
    for (const fe of fes) await fe.guest.pcm("stop", 0);
    for (const p of polls) p.stop();
    for (const fe of fes) await fe.guest.pcm("release", 0);
    for (const f of released.reverse()) f();
    released.length = 0;
    // MANY_GUESTS_LOG=1: the daemon's start, stop and xrun lines, to see when xruns happen.
    if (process.env["MANY_GUESTS_LOG"])
      for (const l of out.split("\n")) if (/start|stop|xrun/.test(l)) console.log(`  ${l}`);
    const periods = (wall * 1000) / periodMs;
    return {
      idleRss,
      playingRss,
      cpuPerStreamPeriod: cpu / periods / guests,
      xruns: (out.match(/ xrun/g) ?? []).length,
    };
  } finally {
    for (const f of released.reverse()) f();
    child.kill("SIGTERM");
    await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const d = process.argv.indexOf("--daemon");
  if (d >= 0) {
    process.exitCode = await cliMain(["vhost-user", ...process.argv.slice(d + 1)]);
    return;
  }
  const n = loadNative();
  const counts = arg("guests", "1,8,32").split(",").map(Number);
  const seconds = Number(arg("seconds", "10"));
  const periodMs = Number(arg("period-ms", "10"));
  const runs = Math.max(1, Number(arg("runs", "3")));
  const baseline = buildBaseline();
  console.log(
    `many guests in one daemon, each one 48 kHz S16 stereo stream, ${periodMs} ms periods, ${seconds} s, ${runs} runs`,
  );
  const rows: {
    guests: number;
    rss: number[];
    cpu: number[];
    ratio: number[];
    xruns: number;
  }[] = [];
  for (const guests of counts) {
    const row = {
      guests,
      rss: [] as number[],
      cpu: [] as number[],
      ratio: [] as number[],
      xruns: 0,
    };
    for (let run = 0; run < runs; run++) {
      const c = baseline === null ? null : runBaseline(baseline, periodMs, Math.min(seconds, 5));
      const r = await runOne(n, guests, seconds, periodMs);
      const cPer = c === null ? NaN : c.cpu / c.periods;
      row.rss.push(r.playingRss);
      row.cpu.push(r.cpuPerStreamPeriod);
      row.ratio.push(r.cpuPerStreamPeriod / cPer);
      row.xruns += r.xruns;
      console.log(
        `${guests} guests, run ${run + 1}: RSS ${r.idleRss.toFixed(1)} MiB idle, ${r.playingRss.toFixed(1)} MiB playing ` +
          `; ` +
          `${(r.cpuPerStreamPeriod * 1e6).toFixed(0)} µs CPU per stream and period ` +
          `(C baseline ${(cPer * 1e6).toFixed(0)} µs, ratio ${(r.cpuPerStreamPeriod / cPer).toFixed(2)}), ${r.xruns} xruns`,
      );
    }
    rows.push(row);
  }
  // Each added guest: the median RSS playing over the first row's, per guest more than it had.
  console.log(
    "\nguests | RSS playing, MiB | per added guest, MiB | µs CPU per stream-period | ratio to C | xruns",
  );
  const first = rows[0]!;
  for (const r of rows) {
    const f = (xs: number[], k: number, digits: number): string => {
      const s = stats(xs.map((x) => x * k));
      return `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
    };
    const added =
      r === first
        ? "–"
        : ((stats(r.rss).median - stats(first.rss).median) / (r.guests - first.guests)).toFixed(2);
    console.log(
      `${r.guests} | ${f(r.rss, 1, 1)} | ${added} | ${f(r.cpu, 1e6, 0)} | ${f(r.ratio, 1, 2)} | ${r.xruns}`,
    );
  }
}

await main();
