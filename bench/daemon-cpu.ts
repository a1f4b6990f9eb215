/**
 * CPU of the vhost-user daemon per audio period, in real time, without QEMU.
 *
 *   npx tsx bench/daemon-cpu.ts [--backend wav|null|both] [--seconds 10] [--period-ms 10]
 *
 * The parent plays QEMU and the guest (guest RAM in a memfd, eventfd kicks
 * and calls, split rings with EVENT_IDX, the Linux driver's requests); a
 * child process runs only the daemon: VhostUserDaemon on a RealTimeClock with
 * a WavFileBackend (files in a temporary folder) or a NullBackend. The
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
 * Linux only (memfd, eventfd, /proc).
 */
import { fork } from "node:child_process";
import { mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { RealTimeClock } from "../src/audio/clock.js";
import { NullBackend } from "../src/audio/null-backend.js";
import { WavFileBackend } from "../src/node/file-backend.js";
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_VERSION_1,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_TX,
} from "../src/spec/constants.js";
import { VhostUserDaemon } from "../src/vhost-user/daemon.js";
import {
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_PROTOCOL_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_SET_FEATURES,
  VHOST_USER_SET_MEM_TABLE,
  VHOST_USER_SET_OWNER,
  VHOST_USER_SET_PROTOCOL_FEATURES,
  VHOST_USER_SET_VRING_ADDR,
  VHOST_USER_SET_VRING_BASE,
  VHOST_USER_SET_VRING_CALL,
  VHOST_USER_SET_VRING_ENABLE,
  VHOST_USER_SET_VRING_KICK,
  VHOST_USER_SET_VRING_NUM,
  VHOST_USER_VERSION,
  decodeHeader,
  decodeU64,
  encodeConfig,
  encodeMemTable,
  encodeMessage,
  encodeU64,
  encodeVringAddr,
  encodeVringFile,
  encodeVringState,
} from "../src/vhost-user/messages.js";
import { type NativeBinding, loadNative } from "../src/vhost-user/native.js";
import { GUEST_BASE, GuestSide, USER_BASE } from "../test/vhost-user/guest-side.js";

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const bit = (n: number): bigint => 1n << BigInt(n);

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

// ---- child: the daemon ------------------------------------------------------------------------

function runDaemon(socketPath: string, backendKind: string, wavDir: string): void {
  const clock = new RealTimeClock();
  const backend =
    backendKind === "wav"
      ? new WavFileBackend({ dir: wavDir, clock, overwrite: true })
      : new NullBackend({ clock });
  const daemon = new VhostUserDaemon({ socketPath, backend, clock });
  daemon.on("log", (e) => {
    if (e.level === "warn" || e.level === "error") process.stderr.write(`daemon: ${e.message}\n`);
  });
  let arms = 0;
  const lateness: number[] = [];
  if (process.env["DAEMON_CPU_THREADS"]) {
    const arm = clock.arm.bind(clock);
    const wrapped = new WeakSet<object>();
    clock.arm = (t, at) => {
      arms++;
      if (!wrapped.has(t)) {
        wrapped.add(t);
        const fire = t.fire;
        (t as { fire: () => void }).fire = () => {
          lateness.push(clock.now() - t.at);
          fire();
        };
      }
      arm(t, at);
    };
  }
  process.on("message", (m) => {
    if (m === "exit") {
      if (process.env["DAEMON_CPU_THREADS"]) {
        lateness.sort((a, b) => a - b);
        const q = (f: number): string => (lateness[Math.floor(f * (lateness.length - 1))]! / 1e6).toFixed(2);
        process.stderr.write(
          `daemon: ${arms} clock arms, ${lateness.length} fires, lateness ms p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)}\n`,
        );
      }
      daemon.close();
      process.exit(0);
    }
  });
  process.send!("ready");
}

// ---- parent: QEMU and the guest ----------------------------------------------------------------

/** CPU seconds of every thread of `pid` (schedstat run time: ns, so short runs are precise). */
function cpuOf(pid: number): number {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`))
    total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
  return total / 1e9;
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

class FrontEnd {
  readonly fd: number;
  readonly memFd: number;
  readonly guest: GuestSide;
  readonly kickFds: number[] = [];
  readonly callFds: number[] = [];
  static readonly RAM = 64 * 1024 * 1024;

  constructor(
    private readonly n: NativeBinding,
    path: string,
  ) {
    this.fd = n.connect(path);
    this.memFd = n.memfd("guest-ram", FrontEnd.RAM);
    const ram = n.mmap(this.memFd, FrontEnd.RAM, 0);
    for (let i = 0; i < 4; i++) {
      this.kickFds.push(n.eventfd(0));
      this.callFds.push(n.eventfd(0));
    }
    this.guest = new GuestSide({
      ram: new Uint8Array(ram),
      kick: (i) => n.eventfdWrite(this.kickFds[i]!, 1),
      settle: () => sleep(1),
    });
  }

  send(request: number, payload?: Uint8Array, fds?: number[], flags = VHOST_USER_VERSION): void {
    const m = encodeMessage(request, flags, payload);
    let off = 0;
    while (off < m.length) {
      const sent = this.n.sendmsg(this.fd, m.subarray(off), off === 0 ? fds : undefined);
      if (sent > 0) off += sent;
    }
  }

  async reply(): Promise<Uint8Array> {
    const header = await this.read(VHOST_USER_HDR_SIZE);
    const h = decodeHeader(header);
    return h.size === 0 ? new Uint8Array(0) : this.read(h.size);
  }

  private async read(n: number): Promise<Uint8Array> {
    const buf = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = this.n.recvmsg(this.fd, buf.subarray(got), 8);
      for (const fd of r.fds) this.n.close(fd);
      if (r.bytes === 0) throw new Error("the back-end closed the connection");
      if (r.bytes > 0) got += r.bytes;
      else await sleep(1);
    }
    return buf;
  }

  async u64(request: number): Promise<bigint> {
    this.send(request);
    const v = decodeU64(await this.reply());
    if (!v.ok) throw new Error(v.reason);
    return v.value;
  }

  async acked(request: number, payload: Uint8Array, fds?: number[]): Promise<void> {
    this.send(request, payload, fds, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK);
    await this.reply();
  }

  async connect(): Promise<void> {
    const features = await this.u64(VHOST_USER_GET_FEATURES);
    const protocol = await this.u64(VHOST_USER_GET_PROTOCOL_FEATURES);
    this.send(VHOST_USER_SET_PROTOCOL_FEATURES, encodeU64(protocol));
    await this.u64(VHOST_USER_GET_QUEUE_NUM);
    this.send(VHOST_USER_SET_OWNER);
    this.send(VHOST_USER_GET_CONFIG, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(16) }));
    await this.reply();
    const acked = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VHOST_USER_F_PROTOCOL_FEATURES);
    if ((acked & ~features) !== 0n) throw new Error("features missing");
    this.send(VHOST_USER_SET_FEATURES, encodeU64(acked));
    const region = {
      guestAddr: BigInt(GUEST_BASE),
      size: BigInt(FrontEnd.RAM),
      userAddr: BigInt(USER_BASE),
      mmapOffset: 0n,
    };
    await this.acked(VHOST_USER_SET_MEM_TABLE, encodeMemTable([region]), [this.memFd]);
    for (let i = 0; i < 4; i++) {
      this.send(VHOST_USER_SET_VRING_NUM, encodeVringState({ index: i, num: 64 }));
      this.send(VHOST_USER_SET_VRING_BASE, encodeVringState({ index: i, num: 0 }));
      this.send(VHOST_USER_SET_VRING_ADDR, encodeVringAddr(this.guest.vringAddr(i)));
      this.send(VHOST_USER_SET_VRING_KICK, encodeVringFile({ index: i, noFd: false }), [this.kickFds[i]!]);
      this.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: i, noFd: false }), [this.callFds[i]!]);
    }
    for (let i = 0; i < 4; i++)
      await this.acked(VHOST_USER_SET_VRING_ENABLE, encodeVringState({ index: i, num: 1 }));
  }
}

interface Result {
  backend: string;
  periods: number;
  audioSeconds: number;
  cpuSeconds: number;
  idleCpuPerSecond: number;
  wallSeconds: number;
}

async function runOne(
  n: NativeBinding,
  backendKind: string,
  seconds: number,
  periodMs: number,
  profDir: string | null,
): Promise<Result> {
  const dir = mkdtempSync(join(tmpdir(), "virtio-snd-cpu-"));
  const socketPath = join(dir, "snd.sock");
  const execArgv = [...process.execArgv];
  if (profDir !== null) execArgv.push("--cpu-prof", "--cpu-prof-dir", profDir);
  const extra = process.env["DAEMON_NODE_ARGS"];
  if (extra) execArgv.push(...extra.split(" "));
  const child = fork(process.argv[1]!, ["--daemon", socketPath, backendKind, join(dir, "wav")], {
    execArgv,
    stdio: ["ignore", "inherit", "inherit", "ipc"],
  });
  await new Promise<void>((resolve, reject) => {
    child.once("message", () => resolve());
    child.once("exit", (code) => reject(new Error(`daemon exited (${code})`)));
  });
  const pid = child.pid!;
  if (process.env["DAEMON_CPU_THREADS"]) console.log(`daemon pid ${pid}`);
  try {
    const fe = new FrontEnd(n, socketPath);
    await fe.connect();
    const g = fe.guest;
    g.queueEventBuffers(8);
    await g.probe({ jacks: 2, streams: 2, chmaps: 6 });

    // Idle: connected, nothing playing.
    await sleep(200);
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
    for (; queued < bufferPeriods; queued++) g.queueTx(0, period, periodBytes);
    if ((await g.pcm("start", 0)) !== VIRTIO_SND_S_OK) throw new Error("START failed");
    c0 = cpuOf(pid);
    const threads0 = threadsOf(pid);
    t0 = performance.now();
    const callFd = fe.callFds[VIRTIO_SND_VQ_TX]!;
    await new Promise<void>((resolve) => {
      const poll = n.poll(callFd, 1, () => {
        n.eventfdRead(callFd);
        const got = g.reapTx();
        done += got.length;
        for (let i = 0; i < got.length && queued < total; i++, queued++) g.queueTx(0, period, periodBytes);
        if (done >= total) {
          poll.stop();
          resolve();
        }
      });
    });
    const cpuSeconds = cpuOf(pid) - c0;
    if (process.env["DAEMON_CPU_THREADS"])
      for (const [k, v] of threadsOf(pid))
        console.log(`  ${k}: ${(v - (threads0.get(k) ?? 0)).toFixed(3)} s`);
    const wallSeconds = (performance.now() - t0) / 1000;
    await g.pcm("stop", 0);
    await g.pcm("release", 0);
    n.close(fe.fd);
    return {
      backend: backendKind,
      periods: total,
      audioSeconds: (total * periodMs) / 1000,
      cpuSeconds,
      idleCpuPerSecond,
      wallSeconds,
    };
  } finally {
    child.send("exit");
    await new Promise((r) => child.once("exit", r));
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const d = process.argv.indexOf("--daemon");
  if (d >= 0) {
    runDaemon(process.argv[d + 1]!, process.argv[d + 2]!, process.argv[d + 3]!);
    return;
  }
  const n = loadNative();
  const which = arg("backend", "both");
  const seconds = Number(arg("seconds", "10"));
  const periodMs = Number(arg("period-ms", "10"));
  const profDir = process.argv.includes("--prof-dir") ? arg("prof-dir", "") : null;
  const kinds = which === "both" ? ["null", "wav"] : [which];
  console.log(`daemon CPU, 48 kHz S16 stereo, ${periodMs} ms periods, ${seconds} s of audio in real time`);
  for (const kind of kinds) {
    const r = await runOne(n, kind, seconds, periodMs, profDir);
    console.log(
      `${kind.padEnd(5)} ${r.periods} periods in ${r.wallSeconds.toFixed(2)} s: ` +
        `${((r.cpuSeconds / r.periods) * 1e6).toFixed(0)} µs CPU/period, ` +
        `${(r.cpuSeconds / r.audioSeconds).toFixed(4)} CPU s/audio s; idle ${(r.idleCpuPerSecond * 1000).toFixed(2)} ms CPU/s`,
    );
  }
}

await main();
