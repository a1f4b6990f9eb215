/**
 * Replaying a recorded trace (format.ts) against a fresh device, without a VM.
 *
 * The replayer builds the device the header describes, on a VirtualClock with
 * a MemoryBackend, in its own guest memory with real split or packed rings
 * (SplitDriverQueue / PackedDriverQueue from src/driver/). It then does what
 * the recorded driver and host did, at the recorded times: feature
 * negotiation, queue setup, kicks, resets, jack and control changes. Each
 * recorded chain is rebuilt with the same descriptor layout and readable bytes
 * and made available when the device looks for a chain on that queue after the
 * action that preceded it in the trace (the device took it then too).
 *
 * What the device returns is compared with what the recorded device returned:
 *   - control and event queues: every completion, in order, used length and bytes;
 *   - tx and rx: per stream, completions in the same order, the used length, the
 *     captured data (rx) byte for byte and the status code (latency_bytes only
 *     with `compareLatency`: it measures the backend's timing);
 *   - tx: the bytes the backend played equal the recorded messages' audio, in
 *     order (a message returned early, by RELEASE or a stopped queue, up to
 *     where the device had read it);
 *   - feature negotiation answers and needs-reset.
 * Timing is not compared: a real-time recording and a virtual replay complete
 * messages at slightly different instants. The order within a queue (control,
 * event) or a stream (tx, rx) is.
 *
 * Capture input: by default, each capture session (PREPARE to RELEASE) of an
 * input stream gets the bytes the recorded guest received in that session (the
 * rx completions' data, concatenated), delivered at the stream's rate; bytes
 * only count as taken when a buffer took them, so an overrun in the replay does
 * not shift what follows. Give `input` (as MemoryBackendOptions.input) to
 * capture from a known source instead, which also checks the recorded rx data.
 *
 * replayTrace runs the whole replay at once on a VirtualClock of its own.
 * LiveReplay (live-replay.ts) runs the same steps (the Replay class below) on
 * a clock and into an audio backend the caller gives, asynchronously, e.g. in
 * real time to a speaker.
 *
 * The parts: replay-types.ts (options and results), trace-analysis.ts (the
 * trace worked out beforehand), feeder.ts (the device's observer),
 * buffer-pool.ts, recorded-input.ts (capture from the recording),
 * completion-check.ts (the comparison), replay-report.ts (divergences in words).
 *
 * No Node built-ins: this is core code.
 */
import { type Clock, VirtualClock } from "../audio/clock.js";
import { MemoryBackend } from "../audio/memory-backend.js";
import type { ControlValueInput } from "../device/controls.js";
import { VirtioSound } from "../device/virtio-sound.js";
import { BumpAllocator } from "../driver/allocator.js";
import type { Buf, DriverQueue } from "../driver/driver-queue.js";
import { PackedDriverQueue } from "../driver/packed-driver.js";
import { SplitDriverQueue } from "../driver/split-driver.js";
import { VirtioSndError } from "../errors.js";
import { FlatMemory } from "../memory/flat-memory.js";
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../spec/constants.js";
import { type CtlTlv, VIRTIO_SND_PCM_XFER_SIZE } from "../spec/structs.js";
import { BufferPool } from "./buffer-pool.js";
import { CompletionCheck } from "./completion-check.js";
import { sha256Hex } from "./bytes.js";
import { Feeder } from "./feeder.js";
import { type Trace, type TraceEvent, TraceError, parseTrace } from "./format.js";
import { ReplayBackend } from "./recorded-input.js";
import { describeDivergence } from "./replay-report.js";
import type {
  Divergence,
  PlayedSession,
  ReplayCompletion,
  ReplayEnv,
  ReplayOptions,
  ReplayResult,
  ReplayStats,
  ReplayWait,
} from "./replay-types.js";
import { Analysis, type ChainInfo, INPUT_EVENTS } from "./trace-analysis.js";

const MEMORY_BASE = 0x10_0000;
const RING_AREA = 4 * 1024 * 1024;

/**
 * Replays a trace (its text, its lines, or a parsed Trace) and compares the
 * device's answers with the recorded ones. Returns the first divergence, or
 * ok. A malformed trace, or one this replayer cannot reproduce, throws a
 * TraceError naming the line.
 */
export function replayTrace(
  input: string | readonly string[] | Trace,
  options: ReplayOptions = {},
): ReplayResult {
  const trace =
    typeof input === "string" || Array.isArray(input) ? parseTrace(input as string | string[]) : input;
  return new Replay(trace as Trace, options).run();
}

interface InFlight {
  readonly chain: ChainInfo;
  /** Every buffer, for freeing. */
  readonly bufs: Buf[];
  readonly writable: Buf[];
  readonly writableBytes: number;
  /** tx: the audio bytes the chain holds (after the xfer header). */
  readonly audio: Uint8Array | null;
}

/**
 * One replay of a trace. replayTrace() runs it on a VirtualClock in one go
 * (run()); LiveReplay drives the same steps on any clock (runWith()).
 * @internal
 */
export class Replay {
  private readonly a: Analysis;
  private readonly events: readonly TraceEvent[];
  readonly clock: Clock;
  /** Clock time of trace time 0 (a live replay moves it to skip idle time). */
  origin: number;
  private readonly memory: FlatMemory;
  private readonly rings: BumpAllocator;
  private readonly pool: BufferPool;
  /** Inputs with `options.input`, and outputs when the environment names no backend. */
  private readonly memoryBackend: MemoryBackend;
  /** Every output voice's bytes, in the order the voices were opened. */
  readonly played: readonly PlayedSession[];
  private readonly backend: ReplayBackend;
  private readonly check: CompletionCheck;
  device!: VirtioSound;

  private readonly driver: (DriverQueue | null)[] = [null, null, null, null];
  private readonly stopped = [false, false, false, false];
  private readonly stoppedBase = [0, 0, 0, 0];
  private readonly inFlight = [0, 1, 2, 3].map(() => new Map<number, InFlight>());
  private readonly availPtr = [0, 0, 0, 0];
  /** Per TX return not yet reaped, in used-ring order: bytes each output stream had played then. */
  private readonly txReturns: Record<number, number>[] = [];
  private readonly txCursor = new Map<number, number>();
  private readonly txSource = new Map<number, Uint8Array>();
  private features = 0n;
  /** Chains recorded before this event index may be made available now. */
  private frontier = 0;
  private current = -1;
  private afterEnd = false;
  private broken: string | null = null;
  private brokenMatched = false;
  private divergence: Divergence | null = null;
  private error: unknown = null;
  readonly stats: ReplayStats;

  constructor(
    readonly trace: Trace,
    readonly options: ReplayOptions,
    private readonly env: ReplayEnv = { clock: new VirtualClock() },
  ) {
    this.events = trace.events;
    this.a = new Analysis(trace);
    this.frontier = this.a.firstInput;
    this.clock = env.clock;
    this.origin = env.clock.now();
    const size = options.memorySize ?? 64 * 1024 * 1024;
    this.memory = new FlatMemory(new ArrayBuffer(size), MEMORY_BASE);
    const ringEnd = MEMORY_BASE + Math.min(RING_AREA, Math.floor(size / 4));
    this.rings = new BumpAllocator(MEMORY_BASE, ringEnd);
    this.pool = new BufferPool(new BumpAllocator(ringEnd, MEMORY_BASE + size));
    this.memoryBackend = new MemoryBackend({
      clock: this.clock,
      ...(options.input !== undefined ? { input: options.input } : {}),
      ...(options.chunkFrames !== undefined ? { chunkFrames: options.chunkFrames } : {}),
    });
    this.played = env.output?.sessions ?? this.memoryBackend.playbacks;
    this.backend = new ReplayBackend(
      this.clock,
      env.output?.backend ?? this.memoryBackend,
      this.memoryBackend,
      options.input === undefined ? this.a : null,
      options.chunkFrames,
    );
    this.stats = {
      events: this.events.length,
      chains: 0,
      completions: 0,
      extraCompletions: 0,
      played: {},
      captured: {},
      endTime: 0,
    };
    this.check = new CompletionCheck(this.a, options.compareLatency === true, {
      played: this.played,
      lineOf: (index) => this.lineOf(index),
      traceNow: () => this.traceNow(),
      diverge: (d) => this.diverge(d),
      done: () => this.done,
      afterEnd: () => this.afterEnd,
      extraCompletion: () => this.stats.extraCompletions++,
    });
  }

  private get done(): boolean {
    return this.divergence !== null || this.error !== null;
  }

  /** Trace time now (ns). */
  traceNow(): number {
    return this.clock.now() - this.origin;
  }

  /** Runs the whole replay on its VirtualClock. */
  run(): ReplayResult {
    const clock = this.clock;
    if (!(clock instanceof VirtualClock))
      throw new VirtioSndError("ERR_INVALID_CONFIG", "Replay.run() needs a VirtualClock");
    try {
      const steps = this.steps();
      for (let w = steps.next(); w.done !== true; w = steps.next()) this.advanceVirtual(clock, w.value);
    } catch (err) {
      if (this.error === null) this.error = err;
    }
    return this.result();
  }

  /**
   * Runs the replay, letting `advance` bring the clock to each step's time
   * (for a VirtualClock, advanceVirtual does it).
   */
  async runWith(advance: (wait: ReplayWait) => Promise<void> | void): Promise<ReplayResult> {
    try {
      const steps = this.steps();
      for (let w = steps.next(); w.done !== true; w = steps.next()) await advance(w.value);
    } catch (err) {
      if (this.error === null) this.error = err;
    }
    return this.result();
  }

  /** Brings a VirtualClock to a step's time, firing timers on the way. */
  advanceVirtual(clock: VirtualClock, w: ReplayWait): void {
    const target = this.origin + w.t;
    if (w.until === undefined) {
      clock.advanceTo(target);
      return;
    }
    while (!w.until()) {
      const next = clock.nextDeadline();
      if (next === undefined || next > target) break;
      clock.advanceTo(next);
      this.settle();
    }
  }

  /** The replay, as the times it needs to reach in turn. */
  private *steps(): Generator<ReplayWait, void, undefined> {
    this.build();
    const maxTime = this.options.maxTimeNs ?? 24 * 3600e9;
    for (let i = 0; i < this.events.length && !this.done; i++) {
      const e = this.events[i]!;
      this.current = i;
      if (e.t > maxTime) {
        throw new TraceError(
          this.lineOf(i),
          `time ${e.t} ns is past the replay's limit of ${maxTime} ns (ReplayOptions.maxTimeNs)`,
        );
      }
      yield { t: e.t };
      this.settle();
      if (this.done) break;
      if (INPUT_EVENTS.has(e.ev)) {
        this.frontier = this.a.nextInput[i]!;
        this.apply(e, i);
      } else if (e.ev === "needs-reset") {
        if (this.broken === null) {
          this.diverge({
            reason: "needs-reset",
            queue: -1,
            message: -1,
            expected: "",
            actual: "",
            t: e.t,
            line: this.lineOf(i),
            detail: `the recorded device needed a reset here (${e.message}); the replayed one did not`,
          });
        } else {
          this.brokenMatched = true;
        }
      }
      this.settle();
      if (this.env.onEvent !== undefined) this.guard(() => this.env.onEvent!(e, i));
    }
    if (this.done) return;
    // The end: time for the device to complete what the recording completed.
    this.afterEnd = true;
    this.frontier = this.events.length;
    yield {
      t: this.traceNow() + (this.options.graceNs ?? 1_000_000_000),
      until: () => this.done || this.check.allMatched(),
    };
    this.finish();
  }

  private result(): ReplayResult {
    if (this.error !== null) throw this.asTraceError(this.error);
    this.stats.endTime = this.traceNow();
    for (const p of this.played)
      this.stats.played[p.streamId] = (this.stats.played[p.streamId] ?? 0) + p.data.length;
    for (const [s, n] of this.backend.captured) this.stats.captured[s] = n;
    for (const c of this.memoryBackend.captures)
      this.stats.captured[c.streamId] = (this.stats.captured[c.streamId] ?? 0) + c.delivered.length;
    const d = this.divergence;
    if (d === null) return { ok: true, stats: this.stats };
    return { ok: false, divergence: d, message: describeDivergence(d), stats: this.stats };
  }

  private lineOf(index: number): number {
    return this.trace.lines[index] ?? 0;
  }

  private asTraceError(err: unknown): TraceError {
    if (err instanceof TraceError) return err;
    const message = err instanceof Error ? err.message : String(err);
    const line = this.current >= 0 ? this.lineOf(this.current) : 1;
    return new TraceError(line, `cannot replay this event: ${message}`, { cause: err });
  }

  // ---- setting up ------------------------------------------------------------------

  private build(): void {
    const header = this.trace.header;
    const packed = (header.device.features & (1n << BigInt(VIRTIO_F_RING_PACKED))) !== 0n;
    try {
      this.device = new VirtioSound({
        memory: this.memory,
        backend: this.backend,
        clock: this.clock,
        config: header.device.config,
        packed,
        interrupt: (q) => this.guard(() => this.reap(q)),
        ...(this.env.onStreamEvent !== undefined ? { onStreamEvent: this.env.onStreamEvent } : {}),
        onNeedsReset: (e) => {
          this.broken = e.message;
          this.brokenMatched = false;
        },
        recorder: new Feeder(this),
      });
    } catch (err) {
      throw new TraceError(1, `header.device.config: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
    if (this.device.deviceFeatures !== header.device.features) {
      this.diverge({
        reason: "features",
        queue: -1,
        message: -1,
        expected: "",
        actual: "",
        t: 0,
        line: 1,
        detail: `the recorded device offered features 0x${header.device.features.toString(16)}, this one offers 0x${this.device.deviceFeatures.toString(16)}`,
      });
    }
  }

  private apply(e: TraceEvent, i: number): void {
    const line = this.lineOf(i);
    switch (e.ev) {
      case "features": {
        const accepted = this.device.setDriverFeatures(e.features);
        if (accepted) this.features = e.features;
        if (accepted !== e.accepted) {
          this.diverge({
            reason: "features",
            queue: -1,
            message: -1,
            expected: "",
            actual: "",
            t: e.t,
            line,
            detail: `the recorded device ${e.accepted ? "accepted" : "refused"} features 0x${e.features.toString(16)}; this one ${accepted ? "accepted" : "refused"} them`,
          });
        }
        break;
      }
      case "queue": {
        const old = this.driver[e.q];
        if (
          e.base !== undefined &&
          old !== null &&
          old !== undefined &&
          this.stopped[e.q] &&
          old.layout.size === e.size
        ) {
          // A restart after a stop (vhost-user): the same ring, from where the device left it.
          this.stopped[e.q] = false;
          this.setupQueue(e.q, old, this.stoppedBase[e.q]!, line);
          break;
        }
        this.dropQueue(e.q, i);
        let dq: DriverQueue;
        try {
          dq = this.newDriverQueue(e.size);
        } catch (err) {
          throw new TraceError(line, `queue ${e.q}: ${err instanceof Error ? err.message : String(err)}`, {
            cause: err,
          });
        }
        this.driver[e.q] = dq;
        this.setupQueue(e.q, dq, undefined, line);
        break;
      }
      case "stop":
        this.stoppedBase[e.q] = this.device.stopQueue(e.q);
        this.stopped[e.q] = true;
        break;
      case "kick":
        this.device.notify(e.q);
        break;
      case "reset":
        this.device.reset();
        for (let q = 0; q < 4; q++) this.dropQueue(q, i);
        this.features = 0n;
        this.broken = null;
        this.brokenMatched = false;
        break;
      case "jack":
        try {
          this.device.setJackConnected(e.jack, e.connected);
        } catch {
          // The recorded call failed the same way (an unknown jack).
        }
        break;
      case "control":
        try {
          if (e.op === "value") this.device.setControlValue(e.id, e.value as ControlValueInput);
          else if (e.op === "tlv") this.device.setControlTlv(e.id, e.value as CtlTlv | Uint8Array);
          else this.device.setControlActive(e.id, e.value === true);
        } catch {
          // As for jacks: the recorded call failed too.
        }
        break;
      default:
        break;
    }
  }

  private setupQueue(q: number, dq: DriverQueue, base: number | undefined, line: number): void {
    try {
      this.device.setupQueue(q, dq.layout, base);
    } catch (err) {
      throw new TraceError(line, `queue ${q}: ${err instanceof Error ? err.message : String(err)}`, {
        cause: err,
      });
    }
  }

  private newDriverQueue(size: number): DriverQueue {
    const opts = {
      mem: this.memory,
      alloc: (n: number, align: number) => this.rings.alloc(n, align),
      size,
      eventIdx: this.has(VIRTIO_F_EVENT_IDX),
      indirect: this.has(VIRTIO_F_INDIRECT_DESC),
    };
    return this.has(VIRTIO_F_RING_PACKED) ? new PackedDriverQueue(opts) : new SplitDriverQueue(opts);
  }

  private has(bit: number): boolean {
    return (this.features & (1n << BigInt(bit))) !== 0n;
  }

  /** Forgets queue q's ring and chains (reset, or a new ring); chains recorded before event `i` are skipped. */
  private dropQueue(q: number, i: number): void {
    for (const f of this.inFlight[q]!.values()) this.freeBuffers(f);
    this.inFlight[q]!.clear();
    if (q === VIRTIO_SND_VQ_TX) this.txReturns.length = 0;
    this.driver[q] = null;
    this.stopped[q] = false;
    const list = this.a.avail[q]!;
    while (this.availPtr[q]! < list.length && list[this.availPtr[q]!]!.index < i) this.availPtr[q]!++;
  }

  // ---- feeding chains ----------------------------------------------------------------

  /** The device looks for a chain on queue q: make the next recorded one available if it is due. */
  beforePop(q: number): void {
    if (this.done) return;
    const dq = this.driver[q];
    if (dq === null || dq === undefined) return;
    const info = this.a.avail[q]![this.availPtr[q]!];
    if (info === undefined || info.index >= this.frontier) return;
    this.guard(() => {
      if (this.addChain(q, dq, info)) this.availPtr[q]!++;
    });
  }

  private addChain(q: number, dq: DriverQueue, info: ChainInfo): boolean {
    const ev = info.ev;
    const line = this.lineOf(info.index);
    if (ev.fault !== undefined) {
      throw new TraceError(
        line,
        `chain ${ev.seq} of queue ${q} was malformed (fault ${ev.fault}): it cannot be rebuilt`,
      );
    }
    const total = ev.r.length + ev.w.length;
    if (total > dq.layout.size) {
      throw new TraceError(line, `chain of ${total} descriptors does not fit a queue of ${dq.layout.size}`);
    }
    const indirect = this.has(VIRTIO_F_INDIRECT_DESC) && total > 1;
    const slots = indirect ? 1 : total;
    if (dq.freeCount < slots) {
      this.reap(q);
      if (dq.freeCount < slots) return false;
    }
    const bufs: Buf[] = [];
    const out: Buf[] = [];
    const inn: Buf[] = [];
    const isTx = q === VIRTIO_SND_VQ_TX;
    const audioParts: Uint8Array[] = [];
    let offset = 0;
    try {
      ev.r.forEach((seg, k) => {
        const bytes = "data" in seg ? seg.data : this.hashedAudio(info, seg.len, seg.sha256, k, offset);
        if ("data" in seg && isTx) this.advanceTxCursor(info.stream, seg.len, offset);
        const addr = this.pool.alloc(seg.len);
        this.memory.write(addr, bytes, 0, seg.len);
        const b = { addr, len: seg.len };
        bufs.push(b);
        out.push(b);
        if (isTx && offset + seg.len > VIRTIO_SND_PCM_XFER_SIZE)
          audioParts.push(bytes.subarray(Math.max(0, VIRTIO_SND_PCM_XFER_SIZE - offset)));
        offset += seg.len;
      });
      for (const len of ev.w) {
        const addr = this.pool.alloc(len);
        this.memory.fill(addr, len, 0);
        const b = { addr, len };
        bufs.push(b);
        inn.push(b);
      }
    } catch (err) {
      for (const b of bufs) this.pool.release(b.addr, b.len);
      if (err instanceof TraceError) throw err;
      throw new TraceError(
        line,
        `replay memory exhausted (${this.memory.size} bytes): pass a larger memorySize (${err instanceof Error ? err.message : String(err)})`,
        { cause: err },
      );
    }
    const token = dq.add(out, inn, { indirect });
    let audio: Uint8Array | null = null;
    if (isTx) {
      audio = new Uint8Array(audioParts.reduce((a, p) => a + p.length, 0));
      let o = 0;
      for (const p of audioParts) {
        audio.set(p, o);
        o += p.length;
      }
    }
    this.inFlight[q]!.set(token, {
      chain: info,
      bufs,
      writable: inn,
      writableBytes: ev.w.reduce((a, b) => a + b, 0),
      audio,
    });
    this.stats.chains++;
    return true;
  }

  /** Bytes for a TX descriptor recorded as a hash: from `txAudio` (checked), or a pattern. */
  private hashedAudio(info: ChainInfo, len: number, hash: string, k: number, offset: number): Uint8Array {
    const source = this.options.txAudio;
    if (source === undefined || info.stream < 0) return pattern(info.ev.seq, k, len);
    let all = this.txSource.get(info.stream);
    if (all === undefined) this.txSource.set(info.stream, (all = source(info.stream)));
    const start = this.txCursor.get(info.stream) ?? 0;
    const bytes = new Uint8Array(len);
    bytes.set(all.subarray(start, start + len), 0);
    this.advanceTxCursor(info.stream, len, offset);
    const got = sha256Hex(bytes);
    if (got !== hash) {
      this.diverge({
        reason: "tx-audio",
        queue: VIRTIO_SND_VQ_TX,
        message: info.ev.seq,
        stream: info.stream,
        expected: hash,
        actual: got,
        part: "hash",
        t: info.ev.t,
        line: this.lineOf(info.index),
        detail: `descriptor ${k} holds bytes ${start} to ${start + len} of the audio supplied for stream ${info.stream}, but their SHA-256 is not the recorded one`,
      });
    }
    return bytes;
  }

  private advanceTxCursor(stream: number, len: number, offset: number): void {
    const audio = Math.max(0, offset + len - Math.max(offset, VIRTIO_SND_PCM_XFER_SIZE));
    if (audio > 0) this.txCursor.set(stream, (this.txCursor.get(stream) ?? 0) + audio);
  }

  private freeBuffers(f: InFlight): void {
    for (const b of f.bufs) this.pool.release(b.addr, b.len);
  }

  // ---- completions -------------------------------------------------------------------

  /** The device returns a TX chain: note how much each output stream has played. */
  beforeReturn(q: number): void {
    if (q !== VIRTIO_SND_VQ_TX) return;
    const played: Record<number, number> = {};
    for (const p of this.played) played[p.streamId] = (played[p.streamId] ?? 0) + p.data.length;
    this.txReturns.push(played);
  }

  private reap(q: number): void {
    const dq = this.driver[q];
    if (dq === null || dq === undefined) return;
    for (;;) {
      let u;
      try {
        u = dq.getUsed();
      } catch (err) {
        this.diverge({
          reason: "ring",
          queue: q,
          message: -1,
          expected: "",
          actual: "",
          t: this.traceNow(),
          line: this.lineOf(Math.max(0, this.current)),
          detail: err instanceof Error ? err.message : String(err),
        });
        return;
      }
      if (u === null) return;
      const returned = q === VIRTIO_SND_VQ_TX ? this.txReturns.shift() : undefined;
      const f = this.inFlight[q]!.get(u.token);
      if (f === undefined) continue;
      this.inFlight[q]!.delete(u.token);
      const written = new Uint8Array(f.writableBytes);
      let off = 0;
      for (const b of f.writable) {
        this.memory.read(b.addr, written, off, b.len);
        off += b.len;
      }
      this.freeBuffers(f);
      this.stats.completions++;
      if (this.env.onCompletion !== undefined) this.report(q, f, u.len, written);
      if (!this.done) this.check.completed(q, f.chain, f.audio, u.len, written, returned);
    }
  }

  private report(q: number, f: InFlight, len: number, written: Uint8Array): void {
    const ev = f.chain.ev;
    const parts: Uint8Array[] = [];
    for (const seg of ev.r) {
      if (!("data" in seg)) break;
      parts.push(seg.data);
    }
    const request = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let off = 0;
    for (const p of parts) {
      request.set(p, off);
      off += p.length;
    }
    const io = q === VIRTIO_SND_VQ_TX || q === VIRTIO_SND_VQ_RX;
    const completion: ReplayCompletion = {
      t: this.traceNow(),
      queue: q,
      message: ev.seq,
      ...(io ? { stream: f.chain.stream } : {}),
      len,
      request,
      readableBytes: ev.r.reduce((a, seg) => a + seg.len, 0),
      response: written.subarray(0, Math.min(len, written.length)),
    };
    this.guard(() => this.env.onCompletion!(completion));
  }

  // ---- the end ------------------------------------------------------------------------

  /** Takes what the device returned and checks what was played (also as a live replay's time passes). */
  settle(): void {
    for (let q = 0; q < 4; q++) this.reap(q);
    this.check.checkPlayed();
    if (this.broken !== null && !this.brokenMatched && !this.done) {
      if (this.afterEnd || this.a.breakAhead[Math.max(0, this.current)] !== 1) {
        this.diverge({
          reason: "needs-reset",
          queue: -1,
          message: -1,
          expected: "",
          actual: "",
          t: this.events[Math.max(0, this.current)]?.t ?? 0,
          line: this.lineOf(Math.max(0, this.current)),
          detail: `the replayed device needs a reset (${this.broken}); the recorded one did not`,
        });
      }
    }
  }

  private finish(): void {
    this.settle();
    if (this.done) return;
    this.check.reportMissing();
  }

  private diverge(d: Divergence): void {
    if (this.divergence === null && this.error === null) this.divergence = d;
  }

  /** Runs a callback the device makes: nothing may escape into the device. */
  private guard(fn: () => void): void {
    try {
      fn();
    } catch (err) {
      if (this.error === null) this.error = err;
    }
  }
}

/** A deterministic stand-in for hashed audio: distinct per message and descriptor. */
function pattern(seq: number, k: number, len: number): Uint8Array {
  const out = new Uint8Array(len);
  let x = (Math.imul(seq + 1, 0x9e3779b1) ^ Math.imul(k + 1, 0x85ebca6b)) >>> 0 || 1;
  for (let i = 0; i < len; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
