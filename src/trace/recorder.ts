/**
 * Recording what a driver does to the device, as a trace (format.ts).
 *
 * The device calls a DeviceTracer (VirtioSoundOptions.recorder) at each
 * driver and host action, and wraps every queue it sets up in the tracer's
 * decorator, which copies each chain's readable bytes when the device takes it
 * and the bytes it wrote when it returns it. Without a recorder none of this
 * runs.
 *
 * No Node built-ins: this is core code. Lines go to a TraceSink (an array in
 * tests, a file through src/node/trace-file.ts).
 */
import type { Clock } from "../audio/clock.js";
import type { SoundConfig } from "../device/config.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { VIRTIO_SND_VQ_RX, VIRTIO_SND_VQ_TX } from "../spec/constants.js";
import type { Chain } from "../virtqueue/chain.js";
import { DelegatingQueue } from "../virtqueue/delegating-queue.js";
import type { DeviceQueue } from "../virtqueue/virtqueue.js";
import { sha256Hex } from "./bytes.js";
import {
  type ControlOp,
  type TraceEvent,
  type TraceHeader,
  type TraceSegment,
  TRACE_FORMAT,
  TRACE_VERSION,
  encodeEvent,
  encodeHeader,
  ringOf,
} from "./format.js";

/** What the device tells its tracer about itself when it is built. */
export interface TraceDeviceInfo {
  /** Features the device offers. */
  readonly features: bigint;
  readonly config: SoundConfig;
  readonly clock: Clock;
  readonly memory: GuestMemory;
}

/**
 * The hooks a VirtioSound calls when given one (VirtioSoundOptions.recorder).
 * TraceRecorder implements them; so does the replayer, to feed chains.
 */
export interface DeviceTracer {
  attach(info: TraceDeviceInfo): void;
  /** setDriverFeatures, with the device's answer. */
  features(features: bigint, accepted: boolean): void;
  /** Queue `index` was set up; returns the queue the device uses instead (a decorator). */
  queue(index: number, queue: DeviceQueue, base: number | undefined): DeviceQueue;
  /** The transport stopped queue `index` at ring position `base`. */
  stopQueue(index: number, base: number): void;
  kick(index: number): void;
  interrupt(index: number): void;
  reset(): void;
  needsReset(error: Error): void;
  jack(jackId: number, connected: boolean): void;
  control(op: ControlOp, controlId: number, value: unknown): void;
}

/** Where trace lines go: each call is one line, without its "\n". */
export interface TraceSink {
  write(line: string): void;
}

/** A sink that keeps the lines in memory. */
export class MemoryTraceSink implements TraceSink {
  readonly lines: string[] = [];

  write(line: string): void {
    this.lines.push(line);
  }

  /** The trace as text, "\n" after every line. */
  text(): string {
    return this.lines.length === 0 ? "" : this.lines.join("\n") + "\n";
  }
}

export interface TraceRecorderOptions {
  readonly sink: TraceSink;
  /**
   * How TX audio descriptors are stored: "full" (default) keeps their bytes
   * as hex; "hash" keeps only length and SHA-256 (a much smaller trace whose
   * replay checks that every byte is played once and in order, not the audio).
   */
  readonly txAudio?: "full" | "hash";
  /** Free text for the header. */
  readonly note?: string;
}

/** Bytes of the xfer header before TX audio (§5.14.6.8). */
const XFER_SIZE = 4;
const STATUS_SIZE = 8;

/**
 * Records a device's traffic as trace lines. Give it to the device as
 * VirtioSoundOptions.recorder, then call close() at the end of the session.
 *
 * The header (line 1) names the ring layout the driver chose, so it is written
 * at the first accepted feature negotiation; events before that wait in memory.
 */
export class TraceRecorder implements DeviceTracer {
  private info: TraceDeviceInfo | null = null;
  private origin = 0;
  private headerWritten = false;
  private closed = false;
  private readonly waiting: string[] = [];
  private readonly nextSeq = [0, 0, 0, 0];
  /** Per queue: chains taken and not yet returned, with their number. */
  private readonly inFlight = [0, 1, 2, 3].map(() => new Map<Chain, number>());
  private readonly hashTx: boolean;
  /** Events written, header excluded. */
  events = 0;
  /** Why recording stopped early: the sink threw (recording never makes the device fail). */
  error: unknown = null;

  constructor(private readonly options: TraceRecorderOptions) {
    this.hashTx = options.txAudio === "hash";
  }

  attach(info: TraceDeviceInfo): void {
    this.info = info;
    this.origin = info.clock.now();
  }

  features(features: bigint, accepted: boolean): void {
    if (accepted && !this.headerWritten) this.writeHeader(features);
    this.emit({ t: this.now(), ev: "features", features, accepted });
  }

  queue(index: number, queue: DeviceQueue, base: number | undefined): DeviceQueue {
    this.emit(
      base === undefined
        ? { t: this.now(), ev: "queue", q: index, size: queue.size }
        : { t: this.now(), ev: "queue", q: index, size: queue.size, base },
    );
    return new RecordingQueue(this, index, queue);
  }

  stopQueue(index: number, base: number): void {
    this.emit({ t: this.now(), ev: "stop", q: index, base });
  }

  kick(index: number): void {
    this.emit({ t: this.now(), ev: "kick", q: index });
  }

  interrupt(index: number): void {
    this.emit({ t: this.now(), ev: "interrupt", q: index });
  }

  reset(): void {
    for (const m of this.inFlight) m.clear();
    this.emit({ t: this.now(), ev: "reset" });
  }

  needsReset(error: Error): void {
    this.emit({ t: this.now(), ev: "needs-reset", message: error.message });
  }

  jack(jackId: number, connected: boolean): void {
    this.emit({ t: this.now(), ev: "jack", jack: jackId, connected });
  }

  control(op: ControlOp, controlId: number, value: unknown): void {
    this.emit({ t: this.now(), ev: "control", op, id: controlId, value });
  }

  /** Ends the trace: writes the header if no negotiation ever did. Later events are dropped. */
  close(): void {
    if (this.closed) return;
    if (!this.headerWritten) this.writeHeader(null);
    this.closed = true;
  }

  // ---- chains ----------------------------------------------------------------------

  /** The device took `chain` from queue `index`. */
  taken(index: number, chain: Chain): void {
    const seq = this.nextSeq[index]!++;
    this.inFlight[index]!.set(chain, seq);
    const t = this.now();
    if (chain.fault !== 0) {
      this.emit({ t, ev: "avail", q: index, seq, r: [], w: [], fault: chain.fault });
      return;
    }
    const r: TraceSegment[] = [];
    let offset = 0;
    for (let i = 0; i < chain.readableCount; i++) {
      const len = chain.len[i]!;
      const data = this.read(chain.addr[i]!, len);
      // Only descriptors that hold nothing but audio become hashes: the xfer header stays readable.
      if (this.hashTx && index === VIRTIO_SND_VQ_TX && offset >= XFER_SIZE)
        r.push({ len, sha256: sha256Hex(data) });
      else r.push({ len, data });
      offset += len;
    }
    const w: number[] = [];
    for (let i = chain.readableCount; i < chain.readableCount + chain.writableCount; i++)
      w.push(chain.len[i]!);
    this.emit({ t, ev: "avail", q: index, seq, r, w });
  }

  /** The device returns `chain` to queue `index` with `written` bytes written. */
  returned(index: number, chain: Chain, written: number): void {
    const seq = this.inFlight[index]!.get(chain);
    if (seq === undefined) return;
    this.inFlight[index]!.delete(chain);
    const total = chain.writableBytes;
    const n = Math.max(0, Math.min(written, total));
    const data = this.readWritable(chain, 0, n);
    const io = index === VIRTIO_SND_VQ_TX || index === VIRTIO_SND_VQ_RX;
    const t = this.now();
    if (io && total >= STATUS_SIZE && written < total) {
      const status = this.readWritable(chain, total - STATUS_SIZE, STATUS_SIZE);
      this.emit({ t, ev: "used", q: index, seq, len: written, data, status });
    } else {
      this.emit({ t, ev: "used", q: index, seq, len: written, data });
    }
  }

  // ---- internals -------------------------------------------------------------------

  private now(): number {
    const info = this.info;
    return info === null ? 0 : Math.max(0, Math.round(info.clock.now() - this.origin));
  }

  private read(addr: number, len: number): Uint8Array {
    const out = new Uint8Array(len);
    try {
      this.info?.memory.read(addr, out, 0, len);
    } catch {
      // The walker checked the chain; memory changed under it since. Record zeros, never fail the device.
    }
    return out;
  }

  private readWritable(chain: Chain, offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    let skip = offset;
    let done = 0;
    const end = chain.readableCount + chain.writableCount;
    for (let i = chain.readableCount; i < end && done < length; i++) {
      const len = chain.len[i]!;
      if (skip >= len) {
        skip -= len;
        continue;
      }
      const n = Math.min(len - skip, length - done);
      try {
        this.info?.memory.read(chain.addr[i]! + skip, out, done, n);
      } catch {
        // As in read(): zeros.
      }
      done += n;
      skip = 0;
    }
    return out;
  }

  private writeHeader(features: bigint | null): void {
    const info = this.info;
    const header: TraceHeader = {
      format: TRACE_FORMAT,
      version: TRACE_VERSION,
      device: {
        features: info?.features ?? 0n,
        ...(features !== null ? { ring: ringOf(features) } : {}),
        config: info?.config ?? {},
      },
      ...(this.options.note !== undefined ? { note: this.options.note } : {}),
    };
    this.headerWritten = true;
    this.write(encodeHeader(header));
    for (const line of this.waiting) this.write(line);
    this.waiting.length = 0;
  }

  private emit(event: TraceEvent): void {
    if (this.closed) return;
    let line: string;
    try {
      line = encodeEvent(event);
    } catch (err) {
      // A value JSON cannot hold (a host's control value with cycles): stop, never fail the device.
      this.error = err;
      this.closed = true;
      return;
    }
    this.events++;
    if (this.headerWritten) this.write(line);
    else this.waiting.push(line);
  }

  private write(line: string): void {
    if (this.error !== null) return;
    try {
      this.options.sink.write(line);
    } catch (err) {
      // A full disk must not break the device: stop recording and say why.
      this.error = err;
      this.closed = true;
    }
  }
}

/**
 * A DeviceTracer that records a device's sessions one after the other, each
 * with its own TraceRecorder: a vhost-user daemon serves its front-ends in
 * turn with one device, and each connection makes a trace of its own. Give it
 * to the device as VirtioSoundOptions.recorder; begin() a recorder when a
 * session starts, with the device reset (as after a disconnect: a trace
 * replays against a fresh device), and end() it when the session ends.
 * Between sessions nothing is recorded.
 */
export class SessionTracer implements DeviceTracer {
  private info: TraceDeviceInfo | null = null;
  private current: TraceRecorder | null = null;

  /** The recorder of the session under way, if any. */
  get recorder(): TraceRecorder | null {
    return this.current;
  }

  attach(info: TraceDeviceInfo): void {
    this.info = info;
  }

  /** Starts a session recorded by `recorder` (ending the one under way); its times start now. */
  begin(recorder: TraceRecorder): void {
    this.end();
    if (this.info !== null) recorder.attach(this.info);
    this.current = recorder;
  }

  /** Ends the session under way: its recorder is closed (the caller closes its sink) and returned. */
  end(): TraceRecorder | null {
    const r = this.current;
    this.current = null;
    r?.close();
    return r;
  }

  features(features: bigint, accepted: boolean): void {
    this.current?.features(features, accepted);
  }

  queue(index: number, queue: DeviceQueue, base: number | undefined): DeviceQueue {
    return this.current === null ? queue : this.current.queue(index, queue, base);
  }

  stopQueue(index: number, base: number): void {
    this.current?.stopQueue(index, base);
  }

  kick(index: number): void {
    this.current?.kick(index);
  }

  interrupt(index: number): void {
    this.current?.interrupt(index);
  }

  reset(): void {
    this.current?.reset();
  }

  needsReset(error: Error): void {
    this.current?.needsReset(error);
  }

  jack(jackId: number, connected: boolean): void {
    this.current?.jack(jackId, connected);
  }

  control(op: ControlOp, controlId: number, value: unknown): void {
    this.current?.control(op, controlId, value);
  }
}

/** A queue that tells the recorder about every chain taken and returned. */
class RecordingQueue extends DelegatingQueue {
  constructor(
    private readonly recorder: TraceRecorder,
    private readonly index: number,
    inner: DeviceQueue,
  ) {
    super(inner);
  }

  override pop(): Chain | null {
    const chain = this.inner.pop();
    if (chain !== null) this.recorder.taken(this.index, chain);
    return chain;
  }

  override push(chain: Chain, written: number): void {
    // Before the real push: the chain goes back to its pool there.
    this.recorder.returned(this.index, chain, written);
    this.inner.push(chain, written);
  }
}
