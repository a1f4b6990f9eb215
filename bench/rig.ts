/**
 * One virtio-snd device on a VirtualClock with real rings in guest memory,
 * driven like Linux's sound/virtio driver drives a playback or capture stream:
 * SET_PARAMS, PREPARE, one message per period of the buffer queued, START,
 * and each completed period requeued from the interrupt handler.
 *
 * The device raises interrupts synchronously (from inside a voice tick); the
 * handler here only latches them, as a hard IRQ would, and the "guest" runs
 * its completion handler after the device returns. That keeps the device's
 * work (clock advance = voice tick, notify = kick) and the driver's work
 * (reap, requeue, kick decision) apart, so they can be timed separately.
 */
import type { AudioBackend, InputSink, OutputSource, Voice } from "../src/audio/backend.js";
import { VirtualClock } from "../src/audio/clock.js";
import { MemoryBackend, type MemoryCapture } from "../src/audio/memory-backend.js";
import { PacedVoice, periodFrames } from "../src/audio/paced-voice.js";
import type { PcmParams } from "../src/audio/pcm-params.js";
import { VirtioSound } from "../src/device/virtio-sound.js";
import { FlatMemory } from "../src/memory/flat-memory.js";
import type { GuestMemory } from "../src/memory/guest-memory.js";
import { RegionMemory } from "../src/memory/region-memory.js";
import {
  PCM_RATE_HZ,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../src/spec/constants.js";
import { encodePcmSetParams } from "../src/spec/structs.js";
import { BumpAllocator } from "../src/driver/allocator.js";
import type { DriverQueue } from "../src/driver/driver-queue.js";
import { PackedDriverQueue } from "../src/driver/packed-driver.js";
import { SplitDriverQueue } from "../src/driver/split-driver.js";
import { type IoRing, LeanPackedRing, LeanSplitRing, type MessageSlots } from "./lean-rings.js";

export type RingKind = "split" | "packed";
export type Direction = "tx" | "rx";
/**
 * RX source. "memory": the MemoryBackend's input voice (no source data, so it
 * captures silence; it also appends every captured chunk to its `delivered`
 * log, which the rig clears each period so it cannot grow). "loop": a minimal
 * PacedVoice in this file that hands the stream one prepared period per tick,
 * so the row measures the device without the MemoryBackend's extra copies.
 */
export type InputKind = "memory" | "loop";

export interface RigOptions {
  ring: RingKind;
  direction: Direction;
  periodBytes: number;
  /** Periods in the ALSA buffer = messages in flight. */
  periods: number;
  input?: InputKind;
  queueSize?: number;
  /** TX: keep what was played (MemoryBackend retain: true), for the correctness check only. */
  retain?: boolean;
  /**
   * The device's view of guest memory. "flat" (default): one FlatMemory. "windowed": a
   * RegionMemory exposing it 1 MiB at a time, as the vhost-user daemon sees a guest's RAM.
   */
  memory?: "flat" | "windowed";
}

export const RATE = 48_000;
export const CHANNELS = 2;
export const BYTES_PER_SECOND = RATE * CHANNELS * 2;
const GUEST_BASE = 0x10_0000;
const TX_STREAM = 0;
const RX_STREAM = 1;
const STATUS_SIZE = 8;

/** A capture voice that delivers the same prepared period on every tick and keeps nothing. */
class LoopInputVoice extends PacedVoice {
  overruns = 0;
  private readonly source: Uint8Array;

  constructor(
    clock: VirtualClock,
    params: PcmParams,
    private readonly sink: InputSink,
  ) {
    super(clock, params, periodFrames(params));
    this.source = new Uint8Array(this.chunkBytes);
    for (let i = 0; i < this.source.length; i++) this.source[i] = (i * 7 + 3) & 0xff;
  }

  protected onChunk(): void {
    const n = this.chunkBytes;
    if (this.sink.write(this.source, 0, n) < n) this.overruns++;
  }
}

class LoopInputBackend implements AudioBackend {
  readonly name = "bench-loop-input";
  readonly voices: LoopInputVoice[] = [];
  private readonly output: MemoryBackend;

  constructor(private readonly clock: VirtualClock) {
    this.output = new MemoryBackend({ clock, retain: false });
  }

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    return this.output.openOutput(streamId, params, source);
  }

  openInput(_streamId: number, params: PcmParams, sink: InputSink): Voice {
    const v = new LoopInputVoice(this.clock, params, sink);
    this.voices.push(v);
    return v;
  }
}

/**
 * Phase times of a timed run, in ms (performance.now), summed over the guest
 * steps (one per period) that took less than `clipMs`; longer ones (the
 * process was descheduled, or a GC ran) are only counted in `clipped`.
 */
export interface PhaseTimes {
  device: number;
  driver: number;
  steps: number;
  clipped: number;
  clipMs: number;
}

export class Rig {
  readonly clock = new VirtualClock();
  readonly memory: FlatMemory;
  readonly device: VirtioSound;
  readonly backend: MemoryBackend | LoopInputBackend;
  readonly ring: IoRing;
  readonly slots: MessageSlots;
  /** Messages completed since open(), and those that came back wrong. */
  completed = 0;
  errors = 0;
  xruns = 0;
  needsReset: Error | null = null;

  private readonly irq = new Uint8Array(4);
  private readonly ctl: DriverQueue;
  private readonly ctlReq: number;
  private readonly ctlResp: number;
  private readonly queueIndex: number;
  private readonly streamId: number;
  private readonly expectedUsed: number;
  private capture: MemoryCapture | null = null;
  /** Guest address of the ALSA buffer. */
  readonly dma: number;

  constructor(readonly options: RigOptions) {
    const { ring, direction, periodBytes, periods } = options;
    const queueSize = options.queueSize ?? 64;
    const rx = direction === "rx";
    const size = periodBytes * periods + 1024 * 1024;
    const ram = new ArrayBuffer(size);
    this.memory = new FlatMemory(ram, GUEST_BASE);
    const deviceMemory: GuestMemory =
      options.memory === "windowed"
        ? new RegionMemory([
            {
              guestAddr: GUEST_BASE,
              length: size,
              windowBytes: 1 << 20,
              window: (offset, length) => new Uint8Array(ram, offset, length),
            },
          ])
        : this.memory;
    const alloc = new BumpAllocator(GUEST_BASE, GUEST_BASE + size).alloc;
    this.backend =
      rx && options.input === "loop"
        ? new LoopInputBackend(this.clock)
        : new MemoryBackend({ clock: this.clock, retain: options.retain ?? false });
    this.device = new VirtioSound({
      memory: deviceMemory,
      backend: this.backend,
      clock: this.clock,
      interrupt: (i) => {
        this.irq[i] = 1;
      },
      onNeedsReset: (e) => {
        this.needsReset = e;
      },
      onStreamEvent: (e) => {
        if (e.type === "xrun") this.xruns++;
        else if (e.type === "error") this.errors++;
      },
    });

    const bit = (n: number): bigint => 1n << BigInt(n);
    const packed = ring === "packed";
    let features = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX);
    if (packed) features |= bit(VIRTIO_F_RING_PACKED);
    if (!this.device.setDriverFeatures(features)) throw new Error("features refused");

    // Control and event queues: the test driver (not on the measured path).
    const mk = (): DriverQueue => {
      const o = { mem: this.memory, alloc, size: queueSize, eventIdx: true };
      return packed ? new PackedDriverQueue(o) : new SplitDriverQueue(o);
    };
    this.ctl = mk();
    this.device.setupQueue(VIRTIO_SND_VQ_CONTROL, this.ctl.layout);
    const events = mk();
    this.device.setupQueue(VIRTIO_SND_VQ_EVENT, events.layout);
    for (let i = 0; i < 8; i++) events.add([], [{ addr: alloc(8, 8), len: 8 }]);
    if (events.kickNeeded()) this.device.notify(VIRTIO_SND_VQ_EVENT);
    this.ctlReq = alloc(64, 16);
    this.ctlResp = alloc(64, 16);

    // The ALSA buffer (one DMA area) and per-period header and status, as virtsnd_pcm_msg_alloc lays them out.
    const dma = alloc(periodBytes * periods, 4096);
    for (let i = 0; i < periodBytes * periods; i++)
      this.memory.bytes[dma - GUEST_BASE + i] = (i * 13 + 1) & 0xff;
    const hdr = new Float64Array(periods);
    const data = new Float64Array(periods);
    const status = new Float64Array(periods);
    this.streamId = rx ? RX_STREAM : TX_STREAM;
    for (let k = 0; k < periods; k++) {
      hdr[k] = alloc(4, 4);
      this.memory.writeU32(hdr[k]!, this.streamId);
      status[k] = alloc(STATUS_SIZE, 8);
      data[k] = dma + k * periodBytes;
    }
    this.slots = { hdr, data, status, dataLen: periodBytes, rx };
    this.dma = dma;
    this.ring = packed
      ? new LeanPackedRing(this.memory, alloc, queueSize, this.slots)
      : new LeanSplitRing(this.memory, alloc, queueSize, this.slots);
    this.queueIndex = rx ? VIRTIO_SND_VQ_RX : VIRTIO_SND_VQ_TX;
    this.device.setupQueue(this.queueIndex, this.ring.layout);
    this.expectedUsed = rx ? periodBytes + STATUS_SIZE : STATUS_SIZE;
  }

  /** SET_PARAMS, PREPARE, queue the whole buffer, START (virtsnd_pcm_prepare / trigger). */
  open(): void {
    const { periodBytes, periods } = this.options;
    const req = new Uint8Array(24);
    encodePcmSetParams(new DataView(req.buffer), 0, {
      code: VIRTIO_SND_R_PCM_SET_PARAMS,
      streamId: this.streamId,
      bufferBytes: periodBytes * periods,
      periodBytes,
      features: 0,
      channels: CHANNELS,
      format: VIRTIO_SND_PCM_FMT_S16,
      rate: PCM_RATE_HZ.indexOf(RATE),
    });
    this.check("SET_PARAMS", this.control(req));
    this.check("PREPARE", this.command(VIRTIO_SND_R_PCM_PREPARE));
    const capture = this.backend instanceof MemoryBackend ? this.backend.captures.at(-1) : undefined;
    this.capture = capture !== undefined && !capture.closed ? capture : null;
    this.completed = 0;
    for (let k = 0; k < periods; k++) this.ring.add(k);
    if (this.ring.kickNeeded()) this.device.notify(this.queueIndex);
    this.check("START", this.command(VIRTIO_SND_R_PCM_START));
  }

  /** STOP and RELEASE (the device completes what is still queued); the stream can be opened again. */
  close(): void {
    this.check("STOP", this.command(VIRTIO_SND_R_PCM_STOP));
    this.check("RELEASE", this.command(VIRTIO_SND_R_PCM_RELEASE));
    const ring = this.ring;
    this.irq[this.queueIndex] = 0;
    while (ring.getUsed() >= 0) {
      // Released messages: status OK, nothing more played or recorded.
    }
    ring.enableCb();
    if (this.needsReset !== null) throw this.needsReset;
  }

  /**
   * Plays or records `n` more periods: the clock fires the voice's timer one
   * deadline at a time, and between two deadlines the guest runs its
   * interrupt handler (and kicks when asked to).
   */
  run(n: number): void {
    this.target = this.completed + n;
    if (!this.clock.runUntil(this.guestStep, Number.MAX_SAFE_INTEGER))
      throw new Error("no voice timer armed");
  }

  private target = 0;
  private readonly guestStep = (): boolean => {
    if (this.onInterrupt()) this.device.notify(this.queueIndex);
    return this.completed >= this.target;
  };

  /**
   * Like run(), with two performance.now() stamps per period: on entering the
   * guest's step (the device's voice tick is done) and between the interrupt
   * handler and the kick. Device = from the kick to the next step (notify +
   * the clock firing the voice), driver = the interrupt handler.
   */
  runTimed(n: number, into: PhaseTimes): void {
    this.target = this.completed + n;
    this.phases = into;
    this.lastKick = performance.now();
    if (!this.clock.runUntil(this.timedStep, Number.MAX_SAFE_INTEGER))
      throw new Error("no voice timer armed");
  }

  private phases: PhaseTimes = { device: 0, driver: 0, steps: 0, clipped: 0, clipMs: 0 };
  private lastKick = 0;
  private readonly timedStep = (): boolean => {
    const t0 = performance.now();
    const kick = this.onInterrupt();
    const t1 = performance.now();
    const p = this.phases;
    if (t1 - this.lastKick < p.clipMs) {
      p.device += t0 - this.lastKick;
      p.driver += t1 - t0;
      p.steps++;
    } else {
      p.clipped++;
    }
    this.lastKick = t1;
    if (kick) this.device.notify(this.queueIndex);
    return this.completed >= this.target;
  };

  /**
   * The guest's interrupt handler, as virtsnd_pcm_notify_cb: reap every used
   * message (read its status, account the period, requeue it), re-enable
   * callbacks and re-check; returns whether the device wants a kick.
   */
  private onInterrupt(): boolean {
    const q = this.queueIndex;
    if (this.irq[q] === 0) return false;
    this.irq[q] = 0;
    const ring = this.ring;
    const mem = this.memory;
    const status = this.slots.status;
    do {
      for (let slot = ring.getUsed(); slot >= 0; slot = ring.getUsed()) {
        if (mem.readU32(status[slot]!) !== VIRTIO_SND_S_OK || ring.usedLen !== this.expectedUsed)
          this.errors++;
        this.completed++;
        ring.add(slot);
      }
    } while (ring.enableCb());
    // The MemoryBackend's capture log would otherwise grow by a period per tick.
    if (this.capture !== null) this.capture.delivered.clear();
    return ring.kickNeeded();
  }

  private command(code: number): number {
    const req = new Uint8Array(8);
    const dv = new DataView(req.buffer);
    dv.setUint32(0, code, true);
    dv.setUint32(4, this.streamId, true);
    return this.control(req);
  }

  private control(req: Uint8Array): number {
    this.memory.write(this.ctlReq, req, 0, req.length);
    this.ctl.add([{ addr: this.ctlReq, len: req.length }], [{ addr: this.ctlResp, len: 4 }]);
    if (this.ctl.kickNeeded()) this.device.notify(VIRTIO_SND_VQ_CONTROL);
    const used = this.ctl.getUsed();
    if (used === null) throw new Error("control request not answered");
    this.irq[VIRTIO_SND_VQ_CONTROL] = 0;
    return used.len >= 4 ? this.memory.readU32(this.ctlResp) : -1;
  }

  private check(what: string, status: number): void {
    if (status !== VIRTIO_SND_S_OK) throw new Error(`${what} failed: 0x${status.toString(16)}`);
  }

  /** Periods the backend voice found no message for (TX underruns / RX overruns). */
  get backendMisses(): number {
    if (this.backend instanceof LoopInputBackend)
      return this.backend.voices.reduce((a, v) => a + v.overruns, 0);
    const b = this.backend;
    return b.playbacks.reduce((a, p) => a + p.underruns, 0) + b.captures.reduce((a, c) => a + c.overruns, 0);
  }
}
