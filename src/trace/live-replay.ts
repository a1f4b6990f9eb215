/**
 * Replaying a trace live: the replay of replayer.ts (the device the header
 * describes, fed the recorded chains at the recorded times, its answers
 * compared with the recorded ones), on a clock and into an audio backend the
 * caller gives, asynchronously (awaiting each event's time), reporting trace
 * events, completions and stream events as they happen.
 *
 * Three ways to run, by the clock given (the backend must run on it too):
 *   - a VirtualClock with pace "real-time": the clock follows the host's, so
 *     the trace plays at its recorded speed, audibly on a speaker, and the
 *     device's timers and the trace's events still meet in the exact order of
 *     a virtual replay: the result is replayTrace's. What the demo does.
 *   - a VirtualClock with pace "fast" (the default): as fast as the CPU allows.
 *   - a RealTimeClock (or any other clock): the device runs on host timers.
 *     Those fire a little late, so an event recorded within a timer's lateness
 *     of a voice's tick (a STOP just after a period ended) may meet it in the
 *     other order and the replay diverge where the recording was exact.
 *
 *   const clock = new VirtualClock();
 *   const live = new LiveReplay(trace, { clock, pace: "real-time", backend: speakerOn(clock),
 *     onCompletion: (c) => ..., onStreamEvent: (e) => ... });
 *   const result = await live.run(); // as replayTrace's
 *
 * replayTrace stays the tool for tests: synchronous, on its own VirtualClock.
 *
 * No Node built-ins: this is core code.
 */
import type { AudioBackend, InputSink, OutputSource, Voice } from "../audio/backend.js";
import { ByteBuffer } from "../audio/byte-buffer.js";
import { type Clock, ClockTimer, RealTimeClock, VirtualClock } from "../audio/clock.js";
import { VirtioSndError } from "../errors.js";
import type { PcmParams } from "../audio/pcm-params.js";
import type { VirtioSound } from "../device/virtio-sound.js";
import { VIRTIO_SND_VQ_TX } from "../spec/constants.js";
import { PcmState } from "../stream/pcm-state.js";
import type { StreamEvent } from "../stream/pcm-stream.js";
import { type Trace, type TraceEvent, parseTrace } from "./format.js";
import type {
  PlayedSession,
  ReplayCompletion,
  ReplayOptions,
  ReplayResult,
  ReplayWait,
} from "./replay-types.js";
import { Replay } from "./replayer.js";

export interface LiveReplayOptions extends ReplayOptions {
  /**
   * The clock the device and its voices run on (give the backend the same
   * one): a VirtualClock, run at `pace`, or a RealTimeClock (see above).
   */
  readonly clock: Clock;
  /**
   * For a VirtualClock: "fast" (default) runs it as fast as the CPU allows;
   * "real-time" moves it with the host's clock, so the trace takes its own time.
   */
  readonly pace?: "fast" | "real-time";
  /**
   * Where output streams play (a speaker, WAV files). Default: a MemoryBackend
   * on the clock. Either way the bytes each voice takes are kept and checked
   * against the trace. Input streams capture the recorded input (or `input`).
   */
  readonly backend?: AudioBackend;
  /**
   * Idle stretches (no stream running) longer than this (ns) are shortened to
   * it: the boot of a recorded guest need not be waited out. Default: kept.
   */
  readonly maxIdleNs?: number;
  /** Every trace event, when the replay reaches its time (driver and host actions once applied). */
  readonly onEvent?: (event: TraceEvent, index: number) => void;
  /** Every message the replayed device completes. */
  readonly onCompletion?: (completion: ReplayCompletion) => void;
  /** The replayed device's stream events (state changes, xruns, backend errors). */
  readonly onStreamEvent?: (event: StreamEvent) => void;
}

export interface LiveReplayRunOptions {
  /**
   * Aborting it stops the replay at its next step (a wait is cut short): the
   * device is reset, as at the end, and run() rejects with signal.reason.
   */
  readonly signal?: AbortSignal;
}

/** How often a real-time replay looks again while it waits for the last completions. */
const POLL_NS = 5_000_000;
/** A VirtualClock paced in real time is moved at least this often while a timer is armed (a voice runs). */
const STEP_NS = 5_000_000;

/**
 * One live replay of a trace. A malformed trace throws TraceError from the
 * constructor; run() resolves with the result (as replayTrace's) or rejects
 * with a TraceError for a trace it cannot reproduce.
 */
export class LiveReplay {
  readonly trace: Trace;
  readonly clock: Clock;
  /** Clock time (ns) at which run() began. */
  startTime = 0;
  /** Idle time skipped so far (ns), see maxIdleNs. */
  skippedNs = 0;
  private readonly replay: Replay;
  private readonly maxIdleNs: number | undefined;
  private readonly pace: "fast" | "real-time";
  /** The host's clock, for a VirtualClock paced in real time. */
  private readonly host = new RealTimeClock();
  /** Host time and virtual time at the start of a paced run. */
  private hostStart = 0;
  private virtualStart = 0;
  private started = false;
  private signal: AbortSignal | undefined;

  constructor(input: string | readonly string[] | Trace, options: LiveReplayOptions) {
    this.trace =
      typeof input === "string" || Array.isArray(input)
        ? parseTrace(input as string | string[])
        : (input as Trace);
    this.clock = options.clock;
    this.maxIdleNs = options.maxIdleNs;
    this.pace = options.pace ?? "fast";
    const { backend, onEvent, onCompletion, onStreamEvent } = options;
    const tap = backend !== undefined ? new TapBackend(backend) : null;
    this.replay = new Replay(this.trace, options, {
      clock: this.clock,
      ...(tap !== null ? { output: { backend: tap, sessions: tap.sessions } } : {}),
      ...(onEvent !== undefined ? { onEvent } : {}),
      ...(onCompletion !== undefined ? { onCompletion } : {}),
      ...(onStreamEvent !== undefined ? { onStreamEvent } : {}),
    });
  }

  /** The replayed device (built when run() starts). */
  get device(): VirtioSound {
    return this.replay.device;
  }

  /** Trace time now (ns): the recorded time the replay has reached. */
  get traceTime(): number {
    return this.replay.traceNow();
  }

  /** Bytes output stream `streamId` has played so far, over all its sessions. */
  playedBytes(streamId: number): number {
    let n = 0;
    for (const s of this.replay.played) if (s.streamId === streamId) n += s.data.length;
    return n;
  }

  /** Every byte output stream `streamId` played, its sessions one after the other. */
  playedAudio(streamId: number): Uint8Array {
    const sessions = this.replay.played.filter((s) => s.streamId === streamId);
    const out = new Uint8Array(sessions.reduce((a, s) => a + s.data.length, 0));
    let off = 0;
    for (const s of sessions) {
      out.set(s.data.bytes(), off);
      off += s.data.length;
    }
    return out;
  }

  /**
   * Runs the replay to its end: every event at its time, then until the
   * device has completed what the recording completed (or graceNs passed).
   * The device is reset at the end, so every voice is closed (files finished).
   * A replay runs once: a second call rejects with ERR_INVALID_STATE.
   */
  async run(options: LiveReplayRunOptions = {}): Promise<ReplayResult> {
    if (this.started)
      throw new VirtioSndError(
        "ERR_INVALID_STATE",
        "LiveReplay.run() was called already: a replay runs once",
      );
    this.started = true;
    const signal = options.signal;
    signal?.throwIfAborted();
    this.signal = signal;
    this.startTime = this.clock.now();
    this.replay.origin = this.startTime;
    this.hostStart = this.host.now();
    this.virtualStart = this.startTime;
    const clock = this.clock;
    try {
      const result = await this.replay
        .runWith((w) => {
          // Thrown into the replay's loop, which ends it; the reason is rethrown below.
          signal?.throwIfAborted();
          return !(clock instanceof VirtualClock)
            ? this.advanceReal(w)
            : this.pace === "real-time"
              ? this.advancePaced(clock, w)
              : this.advanceVirtual(clock, w);
        })
        .catch((err: unknown) => {
          // The replay wraps what its steps throw (a TraceError naming the line): an abort is not that.
          signal?.throwIfAborted();
          throw err;
        });
      signal?.throwIfAborted();
      return result;
    } finally {
      this.signal = undefined;
      // Undefined when the header's configuration could not build one.
      if ((this.replay.device as VirtioSound | undefined) !== undefined) this.replay.device.reset();
    }
  }

  private advanceVirtual(clock: VirtualClock, w: ReplayWait): void {
    if (w.until === undefined) this.skipIdle(w.t);
    this.replay.advanceVirtual(clock, w);
  }

  /**
   * A VirtualClock moved with the host's clock: timers fire in deadline order
   * at their exact virtual times (as in a fast replay), each when the host's
   * clock reaches it.
   */
  private async advancePaced(clock: VirtualClock, w: ReplayWait): Promise<void> {
    const r = this.replay;
    if (w.until === undefined) this.skipIdle(w.t);
    for (;;) {
      const target = r.origin + w.t;
      // Virtual time may go as far as the host's clock has.
      const reached = Math.min(target, this.virtualStart + (this.host.now() - this.hostStart));
      if (w.until === undefined) {
        if (reached > clock.now()) clock.advanceTo(reached);
        if (clock.now() >= target) return;
      } else {
        r.advanceVirtual(clock, { t: reached - r.origin, until: w.until });
        if (w.until() || reached >= target) return;
        if (clock.now() < reached) clock.advanceTo(reached);
      }
      // Sleep until the next timer or the target is due; while voices run, a step at most, so
      // that what reads the clock between their ticks (a speaker's latency) finds it current.
      const deadline = clock.nextDeadline();
      const next = deadline === undefined ? target : Math.min(target, deadline, clock.now() + STEP_NS);
      const hostAt = this.hostStart + (next - this.virtualStart);
      const ms = Math.max(0, (hostAt - this.host.now()) / 1e6);
      await this.abortable((wake) => {
        const handle = setTimeout(wake, ms);
        return () => clearTimeout(handle);
      });
      this.signal?.throwIfAborted();
    }
  }

  private async advanceReal(w: ReplayWait): Promise<void> {
    const r = this.replay;
    if (w.until === undefined) {
      this.skipIdle(w.t);
      await this.sleepUntil(r.origin + w.t);
      return;
    }
    while (!w.until()) {
      const now = this.clock.now();
      const target = r.origin + w.t;
      if (now >= target) break;
      await this.sleepUntil(Math.min(target, now + POLL_NS));
      this.signal?.throwIfAborted();
      r.settle();
    }
  }

  /** When no stream runs, nothing depends on time: a long wait until trace time `t` is cut short. */
  private skipIdle(t: number): void {
    const max = this.maxIdleNs;
    if (max === undefined) return;
    const gap = t - this.replay.traceNow();
    if (gap <= max) return;
    const streams = this.replay.device?.streams ?? [];
    if (streams.some((s) => s.state === PcmState.Running)) return;
    this.replay.origin -= gap - max;
    this.skippedNs += gap - max;
  }

  private sleepUntil(at: number): Promise<void> {
    if (this.clock.now() >= at) return Promise.resolve();
    return this.abortable((wake) => {
      const timer = new ClockTimer(wake);
      this.clock.arm(timer, at);
      return () => this.clock.disarm(timer);
    });
  }

  /** A wait that `start` begins (returning its cancel), cut short when the run's signal aborts. */
  private abortable(start: (wake: () => void) => () => void): Promise<void> {
    const signal = this.signal;
    return new Promise<void>((resolve) => {
      const done = (): void => {
        signal?.removeEventListener("abort", onAbort);
        resolve();
      };
      const cancel = start(done);
      const onAbort = (): void => {
        cancel();
        done();
      };
      if (signal?.aborted) onAbort();
      else signal?.addEventListener("abort", onAbort, { once: true });
    });
  }
}

/**
 * The audio output stream `streamId` sent in a trace: the TX messages' bytes
 * after their xfer headers, in order, or null when the trace holds them only
 * as hashes. (What a complete playback plays; a message cut short by RELEASE
 * plays only in part.)
 */
export function traceTxAudio(trace: Trace, streamId: number): Uint8Array | null {
  const out = new ByteBuffer();
  for (const e of trace.events) {
    if (e.ev !== "avail" || e.q !== VIRTIO_SND_VQ_TX) continue;
    const chain = new ByteBuffer();
    for (const seg of e.r) {
      if (!("data" in seg)) return null;
      chain.append(seg.data);
    }
    const b = chain.bytes();
    if (b.length < 4) continue;
    const stream = (b[0]! | (b[1]! << 8) | (b[2]! << 16)) + b[3]! * 0x100_0000;
    if (stream === streamId) out.append(b, 4);
  }
  return out.bytes().slice();
}

/** Passes output voices to a backend, keeping the bytes each one takes. */
class TapBackend implements AudioBackend {
  readonly name: string;
  readonly sessions: PlayedSession[] = [];

  constructor(private readonly inner: AudioBackend) {
    this.name = inner.name;
  }

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    const session = { streamId, data: new ByteBuffer(params.bufferBytes) };
    const voice = this.inner.openOutput(streamId, params, {
      read: (dest, offset, length) => {
        const n = source.read(dest, offset, length);
        if (n > 0) session.data.append(dest, offset, n);
        return n;
      },
      ...(source.queuedBytes !== undefined ? { queuedBytes: () => source.queuedBytes!() } : {}),
      fail: (error) => source.fail(error),
    });
    this.sessions.push(session);
    return voice;
  }

  openInput(streamId: number, params: PcmParams, sink: InputSink): Voice {
    return this.inner.openInput(streamId, params, sink);
  }
}
