// The child processes of bench/daemon-cpu.ts, in plain JavaScript on the compiled package (dist/),
// started with the options of the installed command (`--no-memory-reducer`): what a user runs,
// without the TypeScript loader's own thread and hooks.
//
//   node --no-memory-reducer bench/daemon-child.mjs daemon SOCKET null|wav WAVDIR native|timeout
//   node --no-memory-reducer bench/daemon-child.mjs empty-tick PERIOD_MS PERIODS
import { readFileSync, readdirSync } from "node:fs";
import { NullBackend, RealTimeClock } from "../dist/index.js";
import { NativeClock, VhostUserDaemon, WavFileBackend, loadNative } from "../dist/node/index.js";

const [mode, ...args] = process.argv.slice(2);

/** CPU seconds of every thread of `pid` (schedstat run time, ns). */
function cpuOf(pid) {
  let total = 0;
  for (const tid of readdirSync(`/proc/${pid}/task`))
    total += Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ")[0]);
  return total / 1e9;
}

if (mode === "daemon") {
  const [socketPath, backendKind, wavDir, clockKind] = args;
  // What `virtio-snd vhost-user` runs (one timerfd for every voice), or `timeout`: setTimeout per period.
  const clock = clockKind === "timeout" ? new RealTimeClock() : new NativeClock(loadNative());
  const backend =
    backendKind === "wav"
      ? new WavFileBackend({ dir: wavDir, clock, overwrite: true })
      : new NullBackend({ clock });
  const daemon = new VhostUserDaemon({ socketPath, backend, clock });
  daemon.on("log", (e) => {
    if (e.level === "warn" || e.level === "error") process.stderr.write(`daemon: ${e.message}\n`);
  });
  let arms = 0;
  const lateness = [];
  if (process.env["DAEMON_CPU_THREADS"]) {
    const arm = clock.arm.bind(clock);
    const wrapped = new WeakSet();
    clock.arm = (t, at) => {
      arms++;
      if (!wrapped.has(t)) {
        wrapped.add(t);
        const fire = t.fire;
        t.fire = () => {
          lateness.push(clock.now() - t.at);
          fire();
        };
      }
      arm(t, at);
    };
  }
  process.on("message", (m) => {
    if (m !== "exit") return;
    if (process.env["DAEMON_CPU_THREADS"]) {
      lateness.sort((a, b) => a - b);
      const q = (f) => (lateness[Math.floor(f * (lateness.length - 1))] / 1e6).toFixed(2);
      process.stderr.write(
        `daemon: ${arms} clock arms, ${lateness.length} fires, lateness ms p50 ${q(0.5)} p90 ${q(0.9)} p99 ${q(0.99)} max ${q(1)}\n`,
      );
    }
    daemon.close();
    process.exit(0);
  });
  process.send("ready");
} else if (mode === "empty-tick") {
  // `periods` wake-ups of a timerfd watched with the addon's poll, doing nothing but re-arm it:
  // what any Node daemon pays per period before doing work. Prints its CPU per tick.
  const periodMs = Number(args[0]);
  const periods = Number(args[1]);
  const n = loadNative();
  const fd = n.timerfd();
  const t0 = n.monotonicNow();
  let ticks = 0;
  let c0 = 0;
  const set = (k) => {
    const ms = t0 + k * periodMs;
    const sec = Math.floor(ms / 1000);
    n.timerfdSet(fd, sec, Math.round((ms - sec * 1000) * 1e6));
  };
  const poll = n.poll(fd, 1, () => {
    ticks++;
    if (ticks === 10) c0 = cpuOf(process.pid);
    if (ticks === periods + 10) {
      poll.stop();
      n.close(fd);
      process.stdout.write(`${(cpuOf(process.pid) - c0) / periods}\n`);
      return;
    }
    set(ticks + 1);
  });
  set(1);
} else {
  process.stderr.write(`daemon-child: unknown mode ${mode}\n`);
  process.exit(2);
}
