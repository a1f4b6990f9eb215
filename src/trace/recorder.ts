/**
 * Recording what a driver does to the device, as a trace (format.ts).
 *
 * A TraceRecorder is the device's observer (VirtioSoundOptions.recorder,
 * src/device/observer.ts): it writes a line for each driver and host action,
 * copies each chain's readable bytes when the device takes it and the bytes it
 * wrote when it returns it. Without a recorder none of this runs.
 *
 * No Node built-ins: this is core code. Lines go to a TraceSink (an array in
 * tests, a file through src/node/trace-file.ts).
 */
import type { DeviceEvent, DeviceObserver, ObservedDevice } from "../device/observer.js";
import { VIRTIO_SND_VQ_RX, VIRTIO_SND_VQ_TX } from "../spec/constants.js";
import { VIRTIO_SND_PCM_STATUS_SIZE, VIRTIO_SND_PCM_XFER_SIZE } from "../spec/structs.js";
import type { Chain } from "../virtqueue/chain.js";
import { sha256Hex } from "./bytes.js";
import {
  type TraceEvent,
  type TraceHeader,
  type TraceSegment,
  TRACE_FORMAT,
  TRACE_VERSION,
  encodeEvent,
  encodeHeader,
  ringOf,
} from "./format.js";

/** The earlier name of ObservedDevice (src/device/observer.ts), kept for code that uses it. */
export type TraceDeviceInfo = ObservedDevice;

/** The earlier name of DeviceObserver (src/device/observer.ts), kept for code that uses it. */
export type DeviceTracer = DeviceObserver;

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

/**
 * Records a device's traffic as trace lines. Give it to the device as
 * VirtioSoundOptions.recorder, then call close() at the end of the session.
 *
 * The header (line 1) names the ring layout the driver chose, so it is written
 * at the first accepted feature negotiation; events before that wait in memory.
 */
export class TraceRecorder implements DeviceObserver {
  private info: ObservedDevice | null = null;
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

  attach(info: ObservedDevice): void {
    this.info = info;
    this.origin = info.clock.now();
  }

  event(e: DeviceEvent): void {
    const t = this.now();
    switch (e.type) {
      case "features":
        if (e.accepted && !this.headerWritten) this.writeHeader(e.features);
        this.emit({ t, ev: "features", features: e.features, accepted: e.accepted });
        break;
      case "queue":
        this.emit(
          e.base === undefined
            ? { t, ev: "queue", q: e.index, size: e.size }
            : { t, ev: "queue", q: e.index, size: e.size, base: e.base },
        );
        break;
      case "stop":
        this.emit({ t, ev: "stop", q: e.index, base: e.base });
        break;
      case "kick":
        this.emit({ t, ev: "kick", q: e.index });
        break;
      case "interrupt":
        this.emit({ t, ev: "interrupt", q: e.index });
        break;
      case "reset":
        for (const m of this.inFlight) m.clear();
        this.emit({ t, ev: "reset" });
        break;
      case "needs-reset":
        this.emit({ t, ev: "needs-reset", message: e.error.message });
        break;
      case "jack":
        this.emit({ t, ev: "jack", jack: e.jackId, connected: e.connected });
        break;
      case "control":
        this.emit({ t, ev: "control", op: e.op, id: e.controlId, value: e.value });
        break;
    }
  }

  /** Ends the trace: writes the header if no negotiation ever did. Later events are dropped. */
  close(): void {
    if (this.closed) return;
    if (!this.headerWritten) this.writeHeader(null);
    this.closed = true;
  }

  // ---- chains ----------------------------------------------------------------------

  /** Nothing to record until a chain is taken. */
  taking(): void {}

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
      if (this.hashTx && index === VIRTIO_SND_VQ_TX && offset >= VIRTIO_SND_PCM_XFER_SIZE)
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
  returning(index: number, chain: Chain, written: number): void {
    const seq = this.inFlight[index]!.get(chain);
    if (seq === undefined) return;
    this.inFlight[index]!.delete(chain);
    const total = chain.writableBytes;
    const n = Math.max(0, Math.min(written, total));
    const data = this.readWritable(chain, 0, n);
    const io = index === VIRTIO_SND_VQ_TX || index === VIRTIO_SND_VQ_RX;
    const t = this.now();
    if (io && total >= VIRTIO_SND_PCM_STATUS_SIZE && written < total) {
      const status = this.readWritable(chain, total - VIRTIO_SND_PCM_STATUS_SIZE, VIRTIO_SND_PCM_STATUS_SIZE);
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
 * A device observer that records its sessions one after the other, each
 * with its own TraceRecorder: a vhost-user daemon serves its front-ends in
 * turn with one device, and each connection makes a trace of its own. Give it
 * to the device as VirtioSoundOptions.recorder; begin() a recorder when a
 * session starts, with the device reset (as after a disconnect: a trace
 * replays against a fresh device), and end() it when the session ends.
 * Between sessions nothing is recorded.
 */
export class SessionTracer implements DeviceObserver {
  private info: ObservedDevice | null = null;
  private current: TraceRecorder | null = null;
  /** Per queue: the recorder current when it was set up. */
  private readonly owners: (TraceRecorder | null)[] = [null, null, null, null];

  /** The recorder of the session under way, if any. */
  get recorder(): TraceRecorder | null {
    return this.current;
  }

  attach(info: ObservedDevice): void {
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

  event(e: DeviceEvent): void {
    // A queue's chains go to the recorder of the session it was set up in (none
    // if it was set up between sessions): a trace never has chains of a queue it
    // does not know.
    if (e.type === "queue") this.owners[e.index] = this.current;
    this.current?.event(e);
  }

  taking(): void {}

  taken(index: number, chain: Chain): void {
    this.owners[index]?.taken(index, chain);
  }

  returning(index: number, chain: Chain, written: number): void {
    this.owners[index]?.returning(index, chain, written);
  }
}
