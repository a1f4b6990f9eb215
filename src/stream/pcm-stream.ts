import type { AudioBackend, Voice } from "../audio/backend.js";
import { type PcmParams, frameBits } from "../audio/pcm-params.js";
import { BackendError, VirtioSndError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import {
  VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED,
  VIRTIO_SND_EVT_PCM_XRUN,
  VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_PCM_F_MSG_POLLING,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
} from "../spec/constants.js";
import type { Chain } from "../virtqueue/chain.js";
import { type ChainState, type DeviceQueue, chainState } from "../virtqueue/virtqueue.js";
import type { IoCompleter } from "./io-completer.js";
import { type CursorState, MessageCursor } from "./message-cursor.js";
import { PcmCommand, PcmState, acceptsIo, commandAllowed } from "./pcm-state.js";

/** The most lag a snapshot keeps (a minute): past it a restored voice would only replay a stall. */
export const MAX_LAG_NS = 60_000_000_000;

/** What happened to a stream, for logs and tests. */
export type StreamEventType =
  "set-params" | "prepare" | "start" | "stop" | "release" | "xrun" | "error" | "dropped";

export interface StreamEvent {
  readonly type: StreamEventType;
  /** The stream; -1 for a dropped message that names no stream of its queue. */
  readonly streamId: number;
  /** Clock time, ns. */
  readonly time: number;
  readonly params?: PcmParams;
  readonly error?: Error;
  /** "dropped": why the device returned a message unplayed (reported once per stream until its next PREPARE). */
  readonly reason?: string;
}

/** A stream's state in a device snapshot: everything but its voice, which a restore opens anew. */
export interface PcmStreamState {
  readonly state: PcmState;
  readonly params: PcmParams | null;
  readonly failed: boolean;
  /** Pending messages, oldest first, and the cursor into the first. */
  readonly pending: readonly ChainState[];
  readonly cursor: CursorState;
  readonly bytesMoved: number;
  readonly nextPeriodMark: number;
  readonly starved: boolean;
  readonly dropReported: boolean;
  readonly dropped: number;
  readonly bytesTotal: number;
  readonly xruns: number;
  /**
   * How far the running voice was behind its clock at the save (Voice.lagNs),
   * ns: the restored voice starts that far into its schedule, so the audio
   * due by the saved moment is not owed twice or skipped.
   */
  readonly lagNs: number;
}

/** What a stream needs from the device that owns it. */
export interface StreamHost {
  readonly memory: GuestMemory;
  readonly backend: AudioBackend;
  now(): number;
  /** Raise the interrupts due after a voice callback (the completers' batches among them). */
  flush(): void;
  postEvent(code: number, data: number): void;
  emit(event: StreamEvent): void;
  /** Takes messages the driver queued without a notification (VIRTIO_SND_PCM_F_MSG_POLLING, or kicks suppressed). */
  poll(direction: number): void;
  /** The stream began or ceased to tick (see PcmStream.ticking). */
  runningChanged?(direction: number): void;
  /** Something that cannot happen did: the device must stop and need a reset, not crash its host. */
  fatal(error: unknown): void;
}

/**
 * One PCM stream: its state machine (§5.14.6.6.1, the table in ./pcm-state.ts),
 * its queue of pending I/O messages with the cursor into the oldest, and the
 * voice that plays or records it. What differs with the direction (which part
 * of a message is data, which voice to open, how data moves) is in
 * OutputStream (./output-stream.ts) and InputStream (./input-stream.ts).
 *
 * A message is completed through the completer of the stream's queue
 * (./io-completer.ts), which writes its status and returns it to the driver.
 */
export abstract class PcmStream {
  state: PcmState = PcmState.Idle;
  params: PcmParams | null = null;
  private voice: Voice | null = null;
  /** Voice failed: messages fail with IO_ERR until the next PREPARE. */
  private failed = false;
  /** The driver does not notify about new messages: look for them at every voice callback. */
  protected polling = false;
  /** Set by the device while it suppresses this queue's notifications: look for new messages at every voice callback. */
  pollOnTick = false;

  // Pending messages: a ring of chains, oldest at `head`.
  protected pending: (Chain | null)[] = new Array<Chain | null>(16).fill(null);
  protected head = 0;
  protected count = 0;
  /** Position in the head message's data. */
  protected readonly cursor = new MessageCursor();

  /** Bytes moved since PREPARE, for period-elapsed events. */
  private bytesMoved = 0;
  private nextPeriodMark = 0;
  /** One XRUN event per starvation, not one per tick. */
  private starved = false;
  /** One "dropped" event per preparation of the stream. */
  private dropReported = false;
  /** Messages the device returned unplayed because it could not parse them. */
  dropped = 0;
  /** Buffers the pending messages hold, and how many they may (set by the device from its limits). */
  private segmentsHeld = 0;
  /** No bound until the device sets one; an integer, so the field stays a small integer for V8. */
  segmentShare = 0x3fff_ffff;
  /**
   * A message's data must be whole frames: `frameBits` per frame (0 without
   * parameters). When the bytes that hold whole frames are the multiples of a
   * power of two, `frameMask` is that power minus one, which spares the hot
   * path a division; otherwise it is -1.
   */
  private frameBits = 0;
  private frameMask = -1;
  private completedInCallback = false;

  /** Lifetime counters, for summaries. */
  bytesTotal = 0;
  xruns = 0;

  constructor(
    readonly id: number,
    readonly direction: number,
    protected readonly host: StreamHost,
    protected readonly completer: IoCompleter,
  ) {}

  /** Opens the voice that plays or records the stream, with this stream as its source or sink. */
  protected abstract openVoice(params: PcmParams): Voice;
  /** Whether `chain` has the shape of an I/O message of this direction (§5.14.6.8). */
  protected abstract wellFormed(chain: Chain): boolean;
  /** The data bytes of a well-formed message. */
  protected abstract dataBytes(chain: Chain): number;
  /** Places the cursor at the start of `chain`'s data. */
  protected abstract startCursor(chain: Chain): void;
  /**
   * The queue is being stopped (vhost-user GET_VRING_BASE, a paused VM): give
   * every pending message back now, while its ring still exists, so the ring
   * position handed over is exact.
   */
  abstract returnPending(): void;

  get pendingCount(): number {
    return this.count;
  }

  /** Running with a voice that calls back every period (so it can take new messages then). */
  get ticking(): boolean {
    return this.state === PcmState.Running && this.voice !== null && !this.failed;
  }

  // ---- control commands (§5.14.6.6) -----------------------------------------

  /** SET_PARAMS, already validated against the stream's capabilities by the device. */
  setParams(params: PcmParams): number {
    if (!commandAllowed(PcmCommand.SetParams, this.state)) return VIRTIO_SND_S_BAD_MSG;
    // New parameters invalidate a prepared voice and any messages queued for it.
    this.closeVoice();
    this.failAll(VIRTIO_SND_S_IO_ERR);
    this.params = params;
    this.setFrameUnit(params);
    this.polling = (params.features & (1 << VIRTIO_SND_PCM_F_MSG_POLLING)) !== 0;
    this.state = PcmState.ParamsSet;
    this.emit("set-params");
    return VIRTIO_SND_S_OK;
  }

  prepare(): number {
    if (!commandAllowed(PcmCommand.Prepare, this.state) || this.params === null) return VIRTIO_SND_S_BAD_MSG;
    if (this.voice === null || this.failed) {
      this.closeVoice();
      try {
        this.voice = this.openVoice(this.params);
      } catch (err) {
        this.emitError(err);
        return err instanceof BackendError && err.code === "ERR_BACKEND_NOT_SUPPORTED"
          ? VIRTIO_SND_S_NOT_SUPP
          : VIRTIO_SND_S_IO_ERR;
      }
      this.failed = false;
    }
    this.bytesMoved = 0;
    this.nextPeriodMark = this.params.periodBytes;
    this.starved = false;
    this.dropReported = false;
    this.state = PcmState.Prepared;
    this.emit("prepare");
    return VIRTIO_SND_S_OK;
  }

  start(): number {
    if (!commandAllowed(PcmCommand.Start, this.state)) return VIRTIO_SND_S_BAD_MSG;
    if (this.voice === null || this.failed) return VIRTIO_SND_S_IO_ERR;
    this.state = PcmState.Running;
    this.starved = false;
    this.emit("start");
    try {
      this.voice.start();
    } catch (err) {
      this.voiceFailed(err);
      return VIRTIO_SND_S_IO_ERR;
    }
    this.host.runningChanged?.(this.direction);
    return VIRTIO_SND_S_OK;
  }

  stop(): number {
    if (!commandAllowed(PcmCommand.Stop, this.state)) return VIRTIO_SND_S_BAD_MSG;
    // The driver never kicks in MSG_POLLING mode: what it queued since the last
    // tick is in the ring only. Take it now, while the stream still plays it.
    this.pollNow();
    this.state = PcmState.Stopped;
    try {
      this.voice?.stop();
    } catch (err) {
      this.voiceFailed(err);
    }
    this.emit("stop");
    this.host.runningChanged?.(this.direction);
    return VIRTIO_SND_S_OK;
  }

  /**
   * RELEASE: completes every pending message first (§5.14.6.6.5: the device
   * MUST complete all pending I/O messages and MUST NOT answer before that).
   */
  release(): number {
    if (!commandAllowed(PcmCommand.Release, this.state)) return VIRTIO_SND_S_BAD_MSG;
    // MSG_POLLING: messages queued without a kick must be completed too, or the
    // driver waits for them in virtsnd_pcm_sync_stop until it times out.
    this.pollNow();
    this.closeVoice();
    this.failAll(VIRTIO_SND_S_OK);
    this.state = PcmState.Released;
    this.emit("release");
    return VIRTIO_SND_S_OK;
  }

  /**
   * Device reset: drop everything without touching the rings (the driver has
   * abandoned them), but keep the parameters. Linux's restore after suspend
   * (virtsnd_restore, then virtsnd_pcm_prepare) sends PREPARE alone for a
   * stream that was prepared and not running, expecting the device to still
   * know them, as QEMU's does; the stream is then in the params-set state.
   */
  reset(): void {
    this.closeVoice();
    this.forgetPending();
    this.state = this.params === null ? PcmState.Idle : PcmState.ParamsSet;
    this.failed = false;
    this.pollOnTick = false;
    this.polling = this.params !== null && (this.params.features & (1 << VIRTIO_SND_PCM_F_MSG_POLLING)) !== 0;
  }

  // ---- snapshot --------------------------------------------------------------------

  saveState(): PcmStreamState {
    const pending: ChainState[] = [];
    for (let i = 0; i < this.count; i++)
      pending.push(chainState(this.pending[(this.head + i) % this.pending.length]!));
    return {
      state: this.state,
      params: this.params,
      failed: this.failed,
      pending,
      cursor: this.cursor.saveState(),
      bytesMoved: this.bytesMoved,
      nextPeriodMark: this.nextPeriodMark,
      starved: this.starved,
      dropReported: this.dropReported,
      dropped: this.dropped,
      bytesTotal: this.bytesTotal,
      xruns: this.xruns,
      lagNs: this.state === PcmState.Running ? this.voiceLag() : 0,
    };
  }

  private voiceLag(): number {
    try {
      const lag = this.voice?.lagNs?.() ?? 0;
      return Number.isFinite(lag) ? Math.max(-MAX_LAG_NS, Math.min(MAX_LAG_NS, Math.round(lag))) : 0;
    } catch {
      return 0;
    }
  }

  /**
   * Takes a saved state on a fresh stream: its messages back from `queue`,
   * and a new voice where the stream had one (started if it was running), so
   * playback carries on from the byte where it was saved. `elapsedNs`: how
   * long the guest's clock has run since the save (negative: it will re-run
   * that much); a running voice starts that much further into its schedule,
   * plus the lag it had. Throws ERR_INVALID_SNAPSHOT (or the queue's
   * VirtqueueBrokenError) for a state that does not fit.
   */
  restoreState(saved: PcmStreamState, queue: DeviceQueue | null, elapsedNs = 0): void {
    if (saved.pending.length > 0 && queue === null) {
      throw new VirtioSndError("ERR_INVALID_SNAPSHOT", `stream ${this.id}: saved messages but no queue`);
    }
    this.reset();
    this.params = saved.params;
    this.setFrameUnit(saved.params);
    this.state = saved.state;
    this.failed = saved.failed;
    this.polling =
      saved.params !== null && (saved.params.features & (1 << VIRTIO_SND_PCM_F_MSG_POLLING)) !== 0;
    for (const c of saved.pending) {
      if (this.count === this.pending.length) this.growPending();
      const chain = queue!.adoptChain(c);
      this.pending[(this.head + this.count) % this.pending.length] = chain;
      this.count++;
      this.segmentsHeld += chain.segmentCount;
    }
    this.cursor.restoreState(this.count === 0 ? null : this.pending[this.head]!, saved.cursor);
    this.bytesMoved = saved.bytesMoved;
    this.nextPeriodMark = saved.nextPeriodMark;
    this.starved = saved.starved;
    this.dropReported = saved.dropReported;
    this.dropped = saved.dropped;
    this.bytesTotal = saved.bytesTotal;
    this.xruns = saved.xruns;
    if (acceptsIo(this.state) && !this.failed && this.params !== null) {
      try {
        this.voice = this.openVoice(this.params);
        if (this.state === PcmState.Running) this.voice.start(saved.lagNs + elapsedNs);
      } catch (err) {
        // The new host cannot play it: the stream fails its messages, as a voice failing at PREPARE does.
        this.failed = true;
        this.emitError(err);
        this.closeVoice();
      }
    }
  }

  /** Drops every pending message without returning it (its ring is gone or replaced). */
  forgetPending(): void {
    this.segmentsHeld = 0;
    this.pending.fill(null);
    this.head = 0;
    this.count = 0;
    this.cursor.clear();
  }

  private setFrameUnit(params: PcmParams | null): void {
    const bits = params === null ? 0 : frameBits(params.format, params.channels);
    this.frameBits = bits;
    // Whole frames fill a multiple of `unit` bytes: bits / gcd(bits, 8).
    const unit = bits === 0 ? 0 : bits / (bits % 8 === 0 ? 8 : bits % 4 === 0 ? 4 : bits % 2 === 0 ? 2 : 1);
    this.frameMask = unit > 0 && (unit & (unit - 1)) === 0 ? unit - 1 : -1;
  }

  private pollNow(): void {
    if (!this.polling) return;
    try {
      this.host.poll(this.direction);
    } catch (err) {
      this.host.fatal(err);
    }
  }

  // ---- I/O messages (§5.14.6.8) ----------------------------------------------

  /**
   * Takes an I/O message whose xfer header named this stream. Returns false
   * when it was completed at once (with IO_ERR or BAD_MSG); true when queued.
   */
  enqueue(chain: Chain): boolean {
    let status = 0;
    if (!this.wellFormed(chain) || !acceptsIo(this.state) || this.failed) {
      status = VIRTIO_SND_S_IO_ERR;
    } else {
      // §5.14.6.1: a malformed message is BAD_MSG. Data that is not a whole number
      // of frames would shift every later frame: the message is refused whole.
      const dataBytes = this.dataBytes(chain);
      const mask = this.frameMask;
      if (mask >= 0 ? (dataBytes & mask) !== 0 : (dataBytes * 8) % this.frameBits !== 0) {
        status = VIRTIO_SND_S_BAD_MSG;
      } else if (this.segmentsHeld + chain.segmentCount > this.segmentShare) {
        // The stream already holds as many buffers as its share of the queue's
        // budget: taking more would starve the streams beside it.
        status = VIRTIO_SND_S_IO_ERR;
        this.reportDrop(
          `refused a message: the stream holds ${this.segmentsHeld} buffers, its bound is ${this.segmentShare}`,
        );
      }
    }
    if (status !== 0) {
      this.completer.complete(chain, status, 0, 0);
      return false;
    }
    if (this.count === this.pending.length) this.growPending();
    this.pending[(this.head + this.count) % this.pending.length] = chain;
    this.count++;
    this.segmentsHeld += chain.segmentCount;
    if (this.count === 1) this.startCursor(chain);
    this.starved = false;
    return true;
  }

  /** The device dropped a message for this stream that it could not parse. */
  reportDrop(reason: string): void {
    this.dropped++;
    if (this.dropReported) return;
    this.dropReported = true;
    this.host.emit({ type: "dropped", streamId: this.id, time: this.host.now(), reason });
  }

  /** OutputSource.fail / InputSink.fail: the voice can no longer run. */
  fail(error: Error): void {
    this.voiceFailed(error);
    this.host.flush();
  }

  /** latency_bytes for a status written now. */
  latencyBytes(): number {
    try {
      return this.voice?.latencyBytes() ?? 0;
    } catch {
      return 0;
    }
  }

  // ---- internals ---------------------------------------------------------------

  /**
   * After a voice callback moved `done` of the `wanted` bytes: period and xrun
   * events, and the interrupts for what completed.
   */
  protected afterTransfer(done: number, wanted: number): void {
    const params = this.params;
    // Events posted here need their interrupt too, even when no message completed.
    let posted = false;
    if (params !== null && done > 0) {
      this.bytesTotal += done;
      this.bytesMoved += done;
      // §5.14.6.7: period elapsed notifications, when the driver asked for them.
      if ((params.features & (1 << VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS)) !== 0)
        posted = this.periodsElapsed(params);
    }
    if (done < wanted && this.state === PcmState.Running) {
      if (!this.starved && this.starve(params)) posted = true;
    } else if (done === wanted) {
      this.starved = false;
    }
    if (this.completedInCallback || posted) {
      this.completedInCallback = false;
      this.host.flush();
    }
  }

  // The rare parts of afterTransfer, apart, so that the per-message path stays small enough for V8 to inline.

  /** Posts a period-elapsed event per period boundary crossed; returns whether it posted any. */
  private periodsElapsed(params: PcmParams): boolean {
    let posted = false;
    while (this.bytesMoved >= this.nextPeriodMark) {
      this.nextPeriodMark += params.periodBytes;
      this.host.postEvent(VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED, this.id);
      posted = true;
    }
    return posted;
  }

  /** The stream ran dry (output) or had no buffer (input): one xrun; returns whether an event was posted. */
  private starve(params: PcmParams | null): boolean {
    this.starved = true;
    this.xruns++;
    this.emit("xrun");
    if (params !== null && (params.features & (1 << VIRTIO_SND_PCM_F_EVT_XRUNS)) !== 0) {
      this.host.postEvent(VIRTIO_SND_EVT_PCM_XRUN, this.id);
      return true;
    }
    return false;
  }

  /**
   * Completes the head message with `status` (RX: with the data the cursor
   * wrote into it) and moves the cursor to the next one.
   */
  protected completeHead(status: number): void {
    const chain = this.pending[this.head]!;
    this.segmentsHeld -= chain.segmentCount;
    this.pending[this.head] = null;
    this.head = (this.head + 1) % this.pending.length;
    this.count--;
    this.completer.complete(chain, status, this.latencyBytes(), this.cursor.filled);
    this.completedInCallback = true;
    if (this.count > 0) this.startCursor(this.pending[this.head]!);
    else this.cursor.end();
  }

  /** Completes every pending message with `status` (RX messages keep what they recorded). */
  protected failAll(status: number): void {
    while (this.count > 0) this.completeHead(status);
    this.completedInCallback = false;
  }

  private voiceFailed(err: unknown): void {
    this.failed = true;
    this.emitError(err);
    this.closeVoice();
    while (this.count > 0) this.completeHead(VIRTIO_SND_S_IO_ERR);
    this.host.runningChanged?.(this.direction);
  }

  private closeVoice(): void {
    const v = this.voice;
    this.voice = null;
    if (v === null) return;
    try {
      v.close();
    } catch (err) {
      this.emitError(err);
    }
  }

  private growPending(): void {
    const next = new Array<Chain | null>(this.pending.length * 2).fill(null);
    for (let i = 0; i < this.count; i++) next[i] = this.pending[(this.head + i) % this.pending.length]!;
    this.pending = next;
    this.head = 0;
  }

  private emit(type: StreamEventType): void {
    this.host.emit(
      this.params === null || type !== "set-params"
        ? { type, streamId: this.id, time: this.host.now() }
        : { type, streamId: this.id, time: this.host.now(), params: this.params },
    );
  }

  private emitError(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    this.host.emit({ type: "error", streamId: this.id, time: this.host.now(), error });
  }
}
