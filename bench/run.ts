/**
 * Throughput and allocation benchmark of the virtio-snd data path: TX and RX
 * messages through real split and packed rings in guest memory, the device on
 * a VirtualClock with the MemoryBackend, compared with a plain copy of the
 * same bytes. See bench/README.md.
 *
 *   npm run bench                 full run (~30 s on 2 cores)
 *   npm run bench -- --quick      a tenth of the messages, one repetition
 *   npm run bench -- --sites      also list where the loop allocates (sampling heap profiler)
 */
import { type PerformanceEntry, PerformanceObserver } from "node:perf_hooks";
import v8 from "node:v8";
import vm from "node:vm";
import { type AllocationSite, allocationSites } from "./alloc-sites.js";
import {
  BYTES_PER_SECOND,
  type Direction,
  type InputKind,
  type PhaseTimes,
  Rig,
  type RingKind,
} from "./rig.js";

const args = new Set(process.argv.slice(2));
const QUICK = args.has("--quick");
const SITES = args.has("--sites");
const SCALE = QUICK ? 0.1 : 1;
const REPS = QUICK ? 1 : 5;
const WARMUP_MS = QUICK ? 50 : 150;
/** Timed steps longer than this (ms) were interrupted (descheduled, GC) and are left out of the breakdown. */
const CLIP_MS = 0.1;
const PERIODS = 4;
const SMALL = 1920; // 10 ms of 48 kHz S16 stereo
const LARGE = 64 * 1024;

// gc() without --expose-gc on the command line, so that `tsx bench/run.ts` is enough:
// the flag is set at run time and the function taken from a fresh context.
v8.setFlagsFromString("--expose-gc");
const gc = vm.runInNewContext("gc") as () => void;

/** A full GC, then a pause so that its background threads (sweeping, unmapping) are not billed to the next run. */
async function collect(): Promise<void> {
  gc();
  await new Promise((r) => setTimeout(r, 15));
}

// ---- GC observation --------------------------------------------------------------

interface GcEvent {
  start: number;
  kind: number;
}
const gcEvents: GcEvent[] = [];
const observer = new PerformanceObserver((list) => {
  for (const e of list.getEntries()) {
    const detail = (e as PerformanceEntry & { detail?: { kind?: number } }).detail;
    gcEvents.push({ start: e.startTime, kind: detail?.kind ?? 0 });
  }
});
observer.observe({ entryTypes: ["gc"] });

/** GC entries are delivered asynchronously: let them arrive, then count those that started in [t0, t1]. */
async function gcsBetween(t0: number, t1: number): Promise<{ minor: number; major: number }> {
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 1));
  let minor = 0;
  let major = 0;
  for (const e of gcEvents) {
    if (e.start < t0 || e.start > t1) continue;
    // NODE_PERFORMANCE_GC_MINOR = 1; everything else (major, incremental, weak callbacks) counts as major.
    if (e.kind === 1) minor++;
    else major++;
  }
  return { minor, major };
}

// ---- measurement helpers ---------------------------------------------------------

interface Sample {
  cpuMs: number;
  wallMs: number;
  t0: number;
  t1: number;
}

function measure(fn: () => void): Sample {
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  fn();
  const t1 = performance.now();
  const c = process.cpuUsage(c0);
  return { cpuMs: (c.user + c.system) / 1000, wallMs: t1 - t0, t0, t1 };
}

function median<T>(xs: T[], key: (x: T) => number): T {
  const s = [...xs].sort((a, b) => key(a) - key(b));
  return s[Math.floor((s.length - 1) / 2)]!;
}

/**
 * The baseline: the same number of period-sized Uint8Array.set calls between
 * two buffers shaped like the device's (an N-period ring buffer and one
 * period-sized chunk), TX from ring to chunk, RX from chunk to ring. The
 * subarray views are made once, so the loop allocates nothing.
 */
class CopyBaseline {
  private readonly ring: Uint8Array[];
  private readonly chunk: Uint8Array;
  private i = 0;
  sink = 0;

  constructor(
    period: number,
    private readonly toRing: boolean,
  ) {
    const buf = new Uint8Array(period * PERIODS);
    for (let k = 0; k < buf.length; k++) buf[k] = (k * 13 + 1) & 0xff;
    this.ring = Array.from({ length: PERIODS }, (_, k) => buf.subarray(k * period, (k + 1) * period));
    this.chunk = new Uint8Array(period);
  }

  run(n: number): void {
    const ring = this.ring;
    const chunk = this.chunk;
    let i = this.i;
    for (let m = 0; m < n; m++) {
      if (this.toRing) ring[i]!.set(chunk);
      else chunk.set(ring[i]!);
      i = i + 1 === PERIODS ? 0 : i + 1;
    }
    this.i = i;
    this.sink += chunk[0]! + ring[0]![0]!;
  }
}

/**
 * Cost of one performance.now() call (ns), subtracted once per timed interval:
 * the best of many short batches, so that being descheduled does not inflate it.
 */
function timerCost(): number {
  let best = Infinity;
  for (let r = 0; r < 2000; r++) {
    const t0 = performance.now();
    let t = t0;
    for (let i = 0; i < 200; i++) t = performance.now();
    best = Math.min(best, ((t - t0) * 1e6) / 200);
  }
  return best;
}

/** Bytes allocated on the V8 heap per message, from used_heap_size deltas across GC-free windows. */
async function heapBytesPerMessage(
  run: (n: number) => void,
  n: number,
): Promise<{ heap: number; external: number; clean: boolean }> {
  // What reading the statistics itself allocates.
  gc();
  const e0 = v8.getHeapStatistics().used_heap_size;
  const e1 = v8.getHeapStatistics().used_heap_size;
  const overhead = e1 - e0;
  const heap: number[] = [];
  const external: number[] = [];
  let clean = true;
  for (let w = 0; w < 5; w++) {
    gc();
    const t0 = performance.now();
    const s0 = v8.getHeapStatistics();
    run(n);
    const s1 = v8.getHeapStatistics();
    const t1 = performance.now();
    const g = await gcsBetween(t0, t1);
    if (g.minor + g.major > 0) clean = false;
    heap.push((s1.used_heap_size - s0.used_heap_size - overhead) / n);
    external.push((s1.external_memory - s0.external_memory) / n);
  }
  return { heap: median(heap, (x) => x), external: median(external, (x) => x), clean };
}

// ---- the rows -------------------------------------------------------------------

interface RowSpec {
  direction: Direction;
  ring: RingKind;
  period: number;
  input: InputKind;
  messages: number;
}

interface RowResult {
  spec: RowSpec;
  dev: Sample;
  copy: Sample;
  gcs: { minor: number; major: number };
  phases: PhaseTimes;
  alloc: { heap: number; external: number; clean: boolean };
  copyAlloc: { heap: number; external: number; clean: boolean };
}

const specs: RowSpec[] = [];
for (const direction of ["tx", "rx"] as const) {
  for (const input of direction === "tx" ? (["memory"] as const) : (["memory", "loop"] as const)) {
    for (const period of [SMALL, LARGE]) {
      for (const ring of ["split", "packed"] as const) {
        const messages = Math.round((period === SMALL ? 200_000 : 20_000) * SCALE);
        specs.push({ direction, ring, period, input, messages });
      }
    }
  }
}

function label(s: RowSpec): string {
  return s.direction + (s.input === "loop" ? "*" : "");
}

/** A short run with the bytes kept, to show the rig moves the right bytes before timing it. */
function verify(): void {
  for (const ring of ["split", "packed"] as const) {
    const tx = new Rig({ ring, direction: "tx", periodBytes: SMALL, periods: PERIODS, retain: true });
    tx.open();
    tx.run(100);
    tx.close();
    const ringBytes = tx.memory.bytes.subarray(
      tx.dma - tx.memory.base,
      tx.dma - tx.memory.base + SMALL * PERIODS,
    );
    const played = (
      tx.backend as { playbacks: { data: { bytes(): Uint8Array } }[] }
    ).playbacks[0]!.data.bytes();
    let bad = played.length !== 100 * SMALL ? 1 : 0;
    for (let i = 0; i < played.length && bad === 0; i++)
      if (played[i] !== ringBytes[i % ringBytes.length]) bad++;
    for (const input of ["memory", "loop"] as const) {
      const rx = new Rig({ ring, direction: "rx", periodBytes: SMALL, periods: PERIODS, input });
      rx.open();
      rx.run(100);
      const got = rx.memory.bytes.subarray(
        rx.dma - rx.memory.base,
        rx.dma - rx.memory.base + SMALL * PERIODS,
      );
      for (let i = 0; i < got.length && bad === 0; i++) {
        const want = input === "loop" ? ((i % SMALL) * 7 + 3) & 0xff : 0;
        if (got[i] !== want) bad++;
      }
      rx.close();
      if (rx.errors + rx.xruns + rx.backendMisses > 0) bad++;
    }
    if (bad > 0 || tx.errors + tx.xruns + tx.backendMisses > 0)
      throw new Error(`${ring} ring: wrong bytes moved`);
  }
}

async function main(): Promise<void> {
  const started = performance.now();
  verify();
  const tNow = timerCost();

  // Warm-up: every configuration, twice round, so the JIT has seen all of them
  // (split and packed queues, TX and RX streams, both voices) before anything is timed.
  const rigs = specs.map((s) => {
    const rig = new Rig({
      ring: s.ring,
      direction: s.direction,
      periodBytes: s.period,
      periods: PERIODS,
      input: s.input,
    });
    rig.open();
    return rig;
  });
  const copies = specs.map((s) => new CopyBaseline(s.period, s.direction === "rx"));
  // Time-based: the JIT compiles on background threads that process.cpuUsage
  // also bills, and a 64 KiB row has ten times fewer messages to amortise it over.
  for (let round = 0; round < 2; round++) {
    specs.forEach((s, i) => {
      const chunk = Math.ceil(s.messages / 20);
      const until = performance.now() + WARMUP_MS;
      while (performance.now() < until) {
        rigs[i]!.run(chunk);
        rigs[i]!.runTimed(chunk, { device: 0, driver: 0, steps: 0, clipped: 0, clipMs: CLIP_MS });
        copies[i]!.run(chunk);
      }
    });
  }

  const results: RowResult[] = [];
  for (let i = 0; i < specs.length; i++) {
    const spec = specs[i]!;
    const rig = rigs[i]!;
    const copy = copies[i]!;
    const devSamples: Sample[] = [];
    const copySamples: Sample[] = [];
    for (let r = 0; r < REPS; r++) {
      await collect();
      devSamples.push(measure(() => rig.run(spec.messages)));
      await collect();
      copySamples.push(measure(() => copy.run(spec.messages)));
    }
    const dev = median(devSamples, (s) => s.cpuMs);
    const cp = median(copySamples, (s) => s.cpuMs);
    const gcs = await gcsBetween(dev.t0, dev.t1);

    const timed: PhaseTimes[] = [];
    for (let r = 0; r < Math.min(REPS, 3); r++) {
      const p: PhaseTimes = { device: 0, driver: 0, steps: 0, clipped: 0, clipMs: CLIP_MS };
      await collect();
      rig.runTimed(spec.messages, p);
      timed.push(p);
    }
    const phases = median(timed, (p) => (p.device + p.driver) / p.steps);

    const window = Math.max(200, Math.round((spec.period === SMALL ? 5000 : 1000) * SCALE));
    const alloc = await heapBytesPerMessage((n) => rig.run(n), window);
    const copyAlloc = await heapBytesPerMessage((n) => copy.run(n), window);
    results.push({ spec, dev, copy: cp, gcs, phases, alloc, copyAlloc });
    if (rig.errors + rig.xruns + rig.backendMisses > 0 || rig.needsReset !== null) {
      throw new Error(`${label(spec)} ${spec.ring} ${spec.period}: the stream did not run cleanly`);
    }
  }
  const sites: AllocationSite[][] = [];
  if (SITES) {
    for (let i = 0; i < specs.length; i++) {
      const n = Math.round((specs[i]!.period === SMALL ? 20_000 : 5_000) * SCALE);
      sites.push(await allocationSites((k) => rigs[i]!.run(k), n));
    }
  }
  for (const rig of rigs) rig.close();
  observer.disconnect();

  report(results, tNow, (performance.now() - started) / 1000);
  if (SITES) {
    console.log("\nAllocation sites (sampling heap profiler, bytes per message, innermost frame first):");
    specs.forEach((s, i) => {
      console.log(`${label(s)} ${s.ring} ${s.period}:`);
      for (const site of sites[i]!) {
        const frames = site.stack.slice(0, 4).join(" <- ");
        console.log(`  ${site.bytesPerMessage.toFixed(1).padStart(6)} B  ${frames}`);
      }
    });
  }
}

// ---- output ---------------------------------------------------------------------

function table(head: string[], rows: string[][]): string {
  const w = head.map((h, c) => Math.max(h.length, ...rows.map((r) => r[c]!.length)));
  const line = (r: string[]): string =>
    r.map((x, c) => (c < 3 ? x.padEnd(w[c]!) : x.padStart(w[c]!))).join("  ");
  return [line(head), w.map((n) => "-".repeat(n)).join("  "), ...rows.map(line)].join("\n");
}

const f = (x: number, d = 0): string => x.toFixed(d);

function report(results: RowResult[], tNow: number, elapsed: number): void {
  const main = results.map((r) => {
    const s = r.spec;
    const audio = (s.messages * s.period) / BYTES_PER_SECOND;
    const ns = (r.dev.cpuMs * 1e6) / s.messages;
    const copyNs = (r.copy.cpuMs * 1e6) / s.messages;
    return [
      label(s),
      s.ring,
      String(s.period),
      String(s.messages),
      f(audio, 0),
      f(r.dev.cpuMs / 1000, 3),
      f(audio / (r.dev.cpuMs / 1000), 0),
      f(ns),
      f(copyNs),
      f(ns / copyNs, 1),
      `${r.gcs.minor}/${r.gcs.major}`,
    ];
  });
  const detail = results.map((r) => {
    const s = r.spec;
    // Per guest step (one period, one message), less one performance.now() per interval.
    const devNs = (r.phases.device * 1e6) / r.phases.steps - tNow;
    const drvNs = (r.phases.driver * 1e6) / r.phases.steps - tNow;
    const copyNs = (r.copy.cpuMs * 1e6) / s.messages;
    const heap = (x: { heap: number; clean: boolean }): string =>
      f(Math.max(0, x.heap), 1) + (x.clean ? "" : "?");
    return [
      label(s),
      s.ring,
      String(s.period),
      f((r.dev.wallMs * 1e6) / s.messages),
      f(devNs),
      f(drvNs),
      f((100 * devNs) / (devNs + drvNs)) + "%",
      f((100 * r.phases.clipped) / (r.phases.steps + r.phases.clipped), 2) + "%",
      f(devNs / copyNs, 1),
      heap(r.alloc),
      f(Math.max(0, r.alloc.external), 1),
      heap(r.copyAlloc),
    ];
  });

  const out = [
    "virtio-snd data path: 48 kHz S16 stereo, one message per period, " +
      `${PERIODS} periods in flight, queue size 64, EVENT_IDX, direct descriptors`,
    "Device: VirtualClock + MemoryBackend, output voice with retain: false (played bytes read into one",
    "reused period-sized scratch chunk and dropped). Guest: bench/lean-rings.ts, allocation-free.",
    "tx  = playback; rx = capture through the MemoryBackend input voice (captures silence; its",
    "      `delivered` log is cleared every period so it stays one buffer long);",
    "rx* = capture through a minimal PacedVoice (bench/rig.ts) that hands over one prepared period",
    "      per tick: the device without the MemoryBackend's extra fill + copy per period.",
    `Timings: process.cpuUsage (user+system), median of ${REPS} run(s) per row (breakdown: of ${Math.min(REPS, 3)}); copy baseline measured`,
    "      right after each device run, same message count and chunk size.",
    "",
    table(
      [
        "dir",
        "ring",
        "period B",
        "messages",
        "audio s",
        "CPU s",
        "audio s/CPU s",
        "ns/msg",
        "copy ns/msg",
        "ratio",
        "GCs min/maj",
      ],
      main,
    ),
    "",
    "ns/msg and ratio include the guest driver (reap + requeue + kick decision) and the loop; the",
    "breakdown below stamps performance.now() twice per period in a separate run of the same length",
    `(one call costs ${f(tNow)} ns here and is subtracted from each interval); periods that took`,
    `longer than ${CLIP_MS * 1000} µs (descheduled, or a GC ran) are left out ("clipped").`,
    "  device = the voice tick the clock fires (backend + stream + used ring + interrupt) + device.notify",
    "  driver = the guest's interrupt handler: getUsed, status check, add, enable_cb, kick_prepare",
    "  heap B/msg: V8 used_heap_size growth per message over GC-free windows (median of 5), the",
    "  whole loop (device + driver); ext B/msg: external (ArrayBuffer) memory growth. '?' = a GC",
    "  ran inside a window, so that figure is a lower bound.",
    "",
    table(
      [
        "dir",
        "ring",
        "period B",
        "wall ns/msg",
        "device ns",
        "driver ns",
        "device share",
        "clipped",
        "device/copy",
        "heap B/msg",
        "ext B/msg",
        "copy heap B/msg",
      ],
      detail,
    ),
    "",
    `Total ${f(elapsed, 1)} s, Node ${process.version}, ${process.arch}.`,
  ];
  console.log(out.join("\n"));
}

await main();
