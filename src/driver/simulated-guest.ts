/**
 * A test guest: real rings in guest memory, driven the way Linux's
 * sound/virtio driver drives them (probe, set-params, one message per period,
 * prepare, pre-buffered periods, start, stop, release).
 */
import { VirtioSndError } from "../errors.js";
import type { AudioBackend } from "../audio/backend.js";
import { VirtualClock } from "../audio/clock.js";
import { MemoryBackend, type MemoryBackendOptions } from "../audio/memory-backend.js";
import type { SoundConfig } from "../device/config.js";
import { VirtioSound, type VirtioSoundOptions } from "../device/virtio-sound.js";
import { FlatMemory } from "../memory/flat-memory.js";
import {
  PCM_RATE_HZ,
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_SND_F_CTLS,
  VIRTIO_SND_R_CHMAP_INFO,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_PCM_INFO,
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
} from "../spec/constants.js";
import {
  type ChmapInfo,
  type JackInfo,
  type PcmInfo,
  VIRTIO_SND_CHMAP_INFO_SIZE,
  VIRTIO_SND_JACK_INFO_SIZE,
  VIRTIO_SND_PCM_INFO_SIZE,
  decodeChmapInfo,
  decodeJackInfo,
  decodePcmInfo,
  decodeSndConfig,
  encodePcmSetParams,
  encodeQueryInfo,
} from "../spec/structs.js";
import type { StreamEvent } from "../stream/pcm-stream.js";
import type { VirtioDeviceHooks } from "../transport/device.js";
import type { QueueLayout } from "../virtqueue/virtqueue.js";
import { VirtioMmioTransport } from "../transport/mmio.js";
import { VirtioPciTransport } from "../transport/pci.js";
import { BumpAllocator } from "./allocator.js";
import type { Buf, DriverQueue } from "./driver-queue.js";
import { PackedDriverQueue } from "./packed-driver.js";
import { SplitDriverQueue } from "./split-driver.js";
import { type DeviceLink, MmioGuestDriver, PciGuestDriver, transportBus } from "./transport-driver.js";

/** The spec's name of a request or status code (src/spec/names.ts; re-exported for those who import it from here). */
export { controlName } from "../spec/names.js";

export interface GuestOptions {
  packed?: boolean;
  eventIdx?: boolean;
  indirect?: boolean;
  queueSize?: number;
  config?: SoundConfig;
  backend?: Omit<MemoryBackendOptions, "clock">;
  /** A backend to use instead of the MemoryBackend (which is still made, unused), given the guest's clock. */
  audioBackend?: (clock: VirtualClock) => AudioBackend;
  /** Guest RAM size; it sits at a non-zero guest-physical base so address bugs show. */
  memorySize?: number;
  /** Negotiate VIRTIO_SND_F_CTLS (the device must offer it: configure controls). */
  ctls?: boolean;
  /** Passed to the device (VirtioSoundOptions.onControlChange). */
  onControlChange?: VirtioSoundOptions["onControlChange"];
  /** Told about every control request and its answer, for logs and demos. */
  log?: (message: ControlLogEntry) => void;
  /** Passed to the device (VirtioSoundOptions.recorder): records the session as a trace. */
  recorder?: VirtioSoundOptions["recorder"];
  /** Passed to the device (VirtioSoundOptions.limits). */
  limits?: VirtioSoundOptions["limits"];
  /**
   * Reach the device through a transport's registers instead of its API:
   * virtio-pci with INTx and the structures in a memory BAR ("pci") or an I/O
   * BAR ("pci-io"), virtio-pci with MSI-X ("pci-msix"), or virtio-mmio ("mmio").
   */
  transport?: GuestTransportKind;
}

export type GuestTransportKind = "pci" | "pci-io" | "pci-msix" | "mmio";

/** The device API itself as the guest's link: what the tests did before transports existed. */
class DirectLink implements DeviceLink {
  private bits = 0;

  /** The device may be replaced (SimulatedGuest.snapshotAndRestore): always ask for the current one. */
  constructor(private readonly current: () => VirtioSound) {}

  negotiate(features: bigint): boolean {
    const ok = this.current().setDriverFeatures(features);
    this.bits = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | (ok ? VIRTIO_CONFIG_S_FEATURES_OK : 0);
    return ok;
  }
  queueSizeMax(): number {
    return 32768;
  }
  setupQueue(index: number, layout: QueueLayout): void {
    this.current().setupQueue(index, layout);
  }
  driverOk(): void {
    this.bits |= VIRTIO_CONFIG_S_DRIVER_OK;
  }
  notify(index: number): void {
    this.current().notify(index);
  }
  readConfig(offset: number, length: number): Uint8Array {
    return this.current().readConfig(offset, length);
  }
  status(): number {
    return this.bits | (this.current().needsReset ? VIRTIO_CONFIG_S_NEEDS_RESET : 0);
  }
}

/** One control request as the guest saw it. */
export interface ControlLogEntry {
  /** The request code (VIRTIO_SND_R_*), or -1 for a request too short to have one. */
  code: number;
  /** What the request named: "stream 0", "0..2 of 24 B", ... */
  detail: string;
  /** The answer's status (VIRTIO_SND_S_*), or -1 when the device wrote none. */
  status: number;
}

function describeRequest(req: Uint8Array): string {
  if (req.length < 8) return "";
  const dv = new DataView(req.buffer, req.byteOffset, req.byteLength);
  const code = dv.getUint32(0, true);
  const isQuery = code === 0x0001 || code === 0x0100 || code === 0x0200 || code === 0x0300;
  if (isQuery && req.length >= 16) {
    const start = dv.getUint32(4, true);
    const count = dv.getUint32(8, true);
    return `items ${start}..${start + count - 1}`;
  }
  if (code >= 0x0100 && code < 0x0200) return `stream ${dv.getUint32(4, true)}`;
  if (code < 0x0100) return `jack ${dv.getUint32(4, true)}`;
  return `control ${dv.getUint32(4, true)}`;
}

export interface ControlReply {
  status: number;
  /** Bytes the device wrote (used length). */
  used: number;
  /** The response bytes after the 4-byte header. */
  payload: Uint8Array;
}

export interface Completion {
  token: number;
  /** Virtual time (ns) at which the guest saw the completion (in its interrupt handler). */
  time: number;
  used: number;
  status: number;
  latency: number;
  /** RX: the recorded bytes. */
  data?: Uint8Array;
}

interface PendingIo {
  statusAddr: number;
  dataAddr: number;
  dataLen: number;
  rx: boolean;
  onDone?: (c: Completion) => void;
}

export const GUEST_BASE = 0x10_0000;

export class SimulatedGuest {
  readonly clock = new VirtualClock();
  readonly memory: FlatMemory;
  private currentBackend: MemoryBackend;
  private currentDevice: VirtioSound;
  readonly alloc: (size: number, align: number) => number;
  readonly queues: DriverQueue[] = [];
  readonly interrupts = [0, 0, 0, 0];
  readonly streamEvents: StreamEvent[] = [];
  /** Called for every stream event as it happens. */
  onStreamEvent: ((event: StreamEvent) => void) | undefined;
  readonly events: { code: number; data: number; time: number }[] = [];
  needsReset: Error | null = null;
  /** How the guest reaches the device: the device API, or a transport's registers. */
  readonly link: DeviceLink;
  /** The transport, when the guest goes through one. */
  readonly transport: VirtioPciTransport | VirtioMmioTransport | null;
  /** Configuration change notifications the guest received (through a transport). */
  configInterrupts = 0;
  /** Outstanding I/O messages by token: [tx, rx]. */
  private readonly pendingIo = [new Map<number, PendingIo>(), new Map<number, PendingIo>()];
  private eventBufs = new Map<number, number>();
  /** Scratch area for control messages. */
  private ctlReq = 0;
  private ctlResp = 0;
  private static readonly CTL_AREA = 80 * 1024;

  constructor(readonly options: GuestOptions = {}) {
    const size = options.memorySize ?? 16 * 1024 * 1024;
    this.memory = new FlatMemory(new ArrayBuffer(size), GUEST_BASE);
    const bump = new BumpAllocator(GUEST_BASE, GUEST_BASE + size);
    this.alloc = bump.alloc;
    this.currentBackend = new MemoryBackend({ clock: this.clock, ...options.backend });
    const kind = options.transport;
    if (kind === undefined) {
      this.currentDevice = this.makeDevice(this.currentBackend, {
        interrupt: (i) => this.onInterrupt(i),
        onNeedsReset: (e) => {
          this.needsReset = e;
        },
      });
      this.transport = null;
      this.link = new DirectLink(() => this.currentDevice);
      return;
    }
    const make = (hooks: VirtioDeviceHooks): VirtioSound =>
      this.makeDevice(this.currentBackend, {
        interrupt: hooks.interrupt,
        onNeedsReset: (e) => {
          // The guest learns of it from the status register; the error is kept for the tests' messages.
          this.needsReset = e;
          hooks.onNeedsReset(e);
        },
      });
    const handlers = {
      queue: (index: number | null) => (index === null ? this.onSharedInterrupt() : this.onInterrupt(index)),
      config: () => {
        this.configInterrupts++;
      },
    };
    let irq: (level: boolean) => void = () => undefined;
    if (kind === "mmio") {
      const mmio = new VirtioMmioTransport({ device: make, irq: (level) => irq(level) });
      const driver = new MmioGuestDriver(mmio, handlers);
      irq = (level) => driver.onIrq(level);
      this.transport = mmio;
      this.link = driver;
    } else {
      let msi: (address: number, data: number) => void = () => undefined;
      const pci = new VirtioPciTransport({
        device: make,
        irq: (level) => irq(level),
        msi: (address, data) => msi(address, data),
        bar: { index: kind === "pci-io" ? 2 : 4, kind: kind === "pci-io" ? "io" : "mem32" },
        ...(kind === "pci-msix" ? { msixVectors: 5, msixBar: 1 } : {}),
      });
      const driver = new PciGuestDriver(transportBus(pci), handlers, { msix: kind === "pci-msix" });
      irq = (level) => driver.onIrq(level);
      msi = (address, data) => driver.onMsi(address, data);
      this.transport = pci;
      this.link = driver;
    }
    this.currentDevice = this.transport.device as VirtioSound;
  }

  /** The device the guest talks to (a new one after snapshotAndRestore()). */
  get device(): VirtioSound {
    return this.currentDevice;
  }

  /** The memory backend of the current device. */
  get backend(): MemoryBackend {
    return this.currentBackend;
  }

  /**
   * An emulator's snapshot and restore: saves the device's state, retires the
   * device (a reset, which writes nothing to guest memory and closes its
   * voices), and restores the state into a new device with a new memory
   * backend over the same guest memory. Returns the bytes and the retired
   * backend (what was played before the cut). Only for a guest that calls the
   * device API directly (no `transport`). `elapsedNs`: the guest's clock ran
   * that long between the save and the restore (VirtioSound.restoreState).
   */
  snapshotAndRestore(options: { elapsedNs?: number } = {}): { state: Uint8Array; before: MemoryBackend } {
    if (this.transport !== null)
      throw new VirtioSndError("ERR_DRIVER", "snapshotAndRestore() needs a guest without a transport");
    const state = this.currentDevice.saveState();
    const before = this.currentBackend;
    this.currentDevice.reset();
    this.currentBackend = new MemoryBackend({ clock: this.clock, ...this.options.backend });
    this.currentDevice = this.makeDevice(this.currentBackend, {
      interrupt: (i) => this.onInterrupt(i),
      onNeedsReset: (e) => {
        this.needsReset = e;
      },
    });
    this.currentDevice.restoreState(state, options);
    return { state, before };
  }

  private makeDevice(
    backend: MemoryBackend,
    hooks: Pick<VirtioSoundOptions, "interrupt" | "onNeedsReset">,
  ): VirtioSound {
    const options = this.options;
    return new VirtioSound({
      memory: this.memory,
      backend: options.audioBackend?.(this.clock) ?? backend,
      clock: this.clock,
      ...(options.config !== undefined ? { config: options.config } : {}),
      ...hooks,
      onStreamEvent: (e: StreamEvent) => {
        this.streamEvents.push(e);
        this.onStreamEvent?.(e);
      },
      ...(options.onControlChange !== undefined ? { onControlChange: options.onControlChange } : {}),
      ...(options.recorder !== undefined ? { recorder: options.recorder } : {}),
      ...(options.limits !== undefined ? { limits: options.limits } : {}),
    });
  }

  /** Feature negotiation and queue setup, as virtio_dev_probe + init_vqs do it. */
  init(): void {
    const o = this.options;
    const bit = (n: number): bigint => 1n << BigInt(n);
    let features = bit(VIRTIO_F_VERSION_1);
    if (o.eventIdx ?? true) features |= bit(VIRTIO_F_EVENT_IDX);
    if (o.indirect ?? false) features |= bit(VIRTIO_F_INDIRECT_DESC);
    if (o.packed ?? false) features |= bit(VIRTIO_F_RING_PACKED);
    if (o.ctls ?? false) features |= bit(VIRTIO_SND_F_CTLS);
    if (!this.link.negotiate(features)) throw new VirtioSndError("ERR_DRIVER", "features refused");
    for (let i = 0; i < 4; i++) {
      // Linux's vring_create_virtqueue takes the device's maximum when it is smaller.
      const size = Math.min(o.queueSize ?? 64, this.link.queueSizeMax(i));
      const opts = {
        mem: this.memory,
        alloc: this.alloc,
        size,
        eventIdx: o.eventIdx ?? true,
        indirect: o.indirect ?? false,
      };
      const q = o.packed ? new PackedDriverQueue(opts) : new SplitDriverQueue(opts);
      this.queues.push(q);
      this.link.setupQueue(i, q.layout);
    }
    this.link.driverOk();
    this.ctlReq = this.alloc(SimulatedGuest.CTL_AREA, 16);
    this.ctlResp = this.alloc(SimulatedGuest.CTL_AREA, 16);
  }

  config(): { jacks: number; streams: number; chmaps: number; controls: number } {
    const bytes = this.link.readConfig(0, 16);
    return decodeSndConfig(new DataView(bytes.buffer), 0);
  }

  /** Adds a chain and kicks when the device asks for it, like virtqueue_kick. */
  submit(
    queue: number,
    out: readonly Buf[],
    inn: readonly Buf[],
    beforeKick?: (token: number) => void,
  ): number {
    const q = this.queues[queue]!;
    const token = q.add(out, inn, this.options.indirect ? { indirect: true } : undefined);
    // Bookkeeping first: the device may complete the chain during the kick.
    beforeKick?.(token);
    if (q.kickNeeded()) this.link.notify(queue);
    return token;
  }

  /** Queues an 8-byte event buffer, as virtsnd_event_send does. */
  private queueEventBuffer(addr: number): void {
    this.submit(VIRTIO_SND_VQ_EVENT, [], [{ addr, len: 8 }], (token) => this.eventBufs.set(token, addr));
  }

  /** A synchronous control request, as virtsnd_ctl_msg_send_sync. */
  control(request: Uint8Array, responseSize: number): ControlReply {
    this.memory.write(this.ctlReq, request, 0, request.length);
    this.memory.fill(this.ctlResp, responseSize, 0xee);
    const token = this.submit(
      VIRTIO_SND_VQ_CONTROL,
      request.length > 0 ? [{ addr: this.ctlReq, len: request.length }] : [],
      responseSize > 0 ? [{ addr: this.ctlResp, len: responseSize }] : [],
    );
    const used = this.queues[VIRTIO_SND_VQ_CONTROL]!.getUsed();
    if (used === null || used.token !== token)
      throw new VirtioSndError("ERR_DRIVER", "control request not answered synchronously");
    const resp = new Uint8Array(responseSize);
    this.memory.read(this.ctlResp, resp, 0, responseSize);
    const status = used.len >= 4 ? new DataView(resp.buffer).getUint32(0, true) : -1;
    this.options.log?.({
      code: request.length >= 4 ? new DataView(request.buffer, request.byteOffset).getUint32(0, true) : -1,
      detail: describeRequest(request),
      status,
    });
    return { status, used: used.len, payload: resp.subarray(4, Math.max(4, used.len)) };
  }

  /** Builds a request from little-endian u32 fields. */
  static u32s(...values: number[]): Uint8Array {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setUint32(i * 4, v, true));
    return b;
  }

  pcmCommand(code: number, streamId: number): number {
    return this.control(SimulatedGuest.u32s(code, streamId), 4).status;
  }

  queryInfo(code: number, startId: number, count: number, size: number): ControlReply {
    const req = new Uint8Array(16);
    encodeQueryInfo(new DataView(req.buffer), 0, { code, startId, count, size });
    return this.control(req, 4 + count * size);
  }

  /** The Linux probe: event buffers, then JACK_INFO, PCM_INFO, CHMAP_INFO (each skipped when its count is 0). */
  probe(eventBuffers = 8): { jacks: JackInfo[]; streams: PcmInfo[]; chmaps: ChmapInfo[] } {
    for (let i = 0; i < eventBuffers; i++) {
      this.queueEventBuffer(this.alloc(8, 8));
    }
    const cfg = this.config();
    const read = <T>(code: number, n: number, size: number, decode: (dv: DataView, o: number) => T): T[] => {
      if (n === 0) return [];
      const r = this.queryInfo(code, 0, n, size);
      if (r.status !== VIRTIO_SND_S_OK)
        throw new VirtioSndError(
          "ERR_DRIVER",
          `query 0x${code.toString(16)} failed: 0x${r.status.toString(16)}`,
        );
      const dv = new DataView(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength);
      return Array.from({ length: n }, (_, i) => decode(dv, i * size));
    };
    return {
      jacks: read(VIRTIO_SND_R_JACK_INFO, cfg.jacks, VIRTIO_SND_JACK_INFO_SIZE, decodeJackInfo),
      streams: read(VIRTIO_SND_R_PCM_INFO, cfg.streams, VIRTIO_SND_PCM_INFO_SIZE, decodePcmInfo),
      chmaps: read(VIRTIO_SND_R_CHMAP_INFO, cfg.chmaps, VIRTIO_SND_CHMAP_INFO_SIZE, decodeChmapInfo),
    };
  }

  setParams(
    streamId: number,
    p: {
      bufferBytes: number;
      periodBytes: number;
      channels: number;
      format: number;
      rate: number;
      features?: number;
    },
  ): number {
    const req = new Uint8Array(24);
    const rateIndex = PCM_RATE_HZ.indexOf(p.rate);
    encodePcmSetParams(new DataView(req.buffer), 0, {
      code: VIRTIO_SND_R_PCM_SET_PARAMS,
      streamId,
      bufferBytes: p.bufferBytes,
      periodBytes: p.periodBytes,
      features: p.features ?? 0,
      channels: p.channels,
      format: p.format,
      rate: rateIndex >= 0 ? rateIndex : p.rate,
    });
    return this.control(req, 4).status;
  }

  prepare(streamId: number): number {
    return this.pcmCommand(VIRTIO_SND_R_PCM_PREPARE, streamId);
  }
  start(streamId: number): number {
    return this.pcmCommand(VIRTIO_SND_R_PCM_START, streamId);
  }
  stop(streamId: number): number {
    return this.pcmCommand(VIRTIO_SND_R_PCM_STOP, streamId);
  }
  release(streamId: number): number {
    return this.pcmCommand(VIRTIO_SND_R_PCM_RELEASE, streamId);
  }

  /**
   * Queues one I/O message as Linux does: xfer header (readable), data
   * (readable for TX, writable for RX), status (writable). Data may be split
   * into several descriptors, as non-contiguous pages are.
   */
  queueIo(
    streamId: number,
    rx: boolean,
    dataAddr: number,
    dataLen: number,
    onDone?: (c: Completion) => void,
    splitAt: readonly number[] = [],
  ): number {
    const hdr = this.alloc(4, 4);
    const status = this.alloc(8, 8);
    this.memory.writeU32(hdr, streamId);
    this.memory.fill(status, 8, 0xee);
    const data: Buf[] = [];
    let start = 0;
    for (const cut of [...splitAt, dataLen]) {
      if (cut > start) data.push({ addr: dataAddr + start, len: cut - start });
      start = Math.max(start, cut);
    }
    const queue = rx ? VIRTIO_SND_VQ_RX : VIRTIO_SND_VQ_TX;
    const out = rx ? [{ addr: hdr, len: 4 }] : [{ addr: hdr, len: 4 }, ...data];
    const inn = rx ? [...data, { addr: status, len: 8 }] : [{ addr: status, len: 8 }];
    const q = this.queues[queue]!;
    const token = q.add(out, inn, this.options.indirect ? { indirect: true } : undefined);
    this.pendingIo[rx ? 1 : 0]!.set(token, {
      statusAddr: status,
      dataAddr,
      dataLen,
      rx,
      ...(onDone ? { onDone } : {}),
    });
    if (q.kickNeeded()) this.link.notify(queue);
    return token;
  }

  /**
   * Queues an I/O message laid out by the caller (any split of header, data
   * and status into descriptors). The completion's `status` and `latency` are
   * read from the first 8 bytes of the last writable buffer when it holds them,
   * else reported as -1; RX data is not gathered.
   */
  queueChain(
    rx: boolean,
    out: readonly Buf[],
    inn: readonly Buf[],
    onDone?: (c: Completion) => void,
    opts: { kick?: boolean } = {},
  ): number {
    const queue = rx ? VIRTIO_SND_VQ_RX : VIRTIO_SND_VQ_TX;
    const q = this.queues[queue]!;
    const token = q.add(out, inn, this.options.indirect ? { indirect: true } : undefined);
    const last = inn[inn.length - 1];
    this.pendingIo[rx ? 1 : 0]!.set(token, {
      statusAddr: last !== undefined && last.len >= 8 ? last.addr + last.len - 8 : -1,
      dataAddr: 0,
      dataLen: 0,
      rx,
      ...(onDone ? { onDone } : {}),
    });
    // A driver in MSG_POLLING mode never kicks (kick: false).
    if ((opts.kick ?? true) && q.kickNeeded()) this.device.notify(queue);
    return token;
  }

  /** Reaps the used rings now (the interrupt handler also does this). */
  reap(): void {
    this.reapIo(VIRTIO_SND_VQ_TX);
    this.reapIo(VIRTIO_SND_VQ_RX);
    this.reapEvents();
  }

  private onInterrupt(index: number): void {
    this.interrupts[index]!++;
    if (index === VIRTIO_SND_VQ_TX || index === VIRTIO_SND_VQ_RX) this.reapIo(index);
    else if (index === VIRTIO_SND_VQ_EVENT) this.reapEvents();
  }

  /**
   * An interrupt that does not say which queue (INTx, virtio-mmio): every
   * queue's callback looks for used buffers, as vp_vring_interrupt does, and
   * counts as interrupted when it found some. The control queue is left to
   * control(), which waits for its answer.
   */
  private onSharedInterrupt(): void {
    for (const index of [VIRTIO_SND_VQ_TX, VIRTIO_SND_VQ_RX]) {
      if (this.reapIo(index) > 0) this.interrupts[index]!++;
    }
    if (this.reapEvents() > 0) this.interrupts[VIRTIO_SND_VQ_EVENT]!++;
  }

  private reapIo(index: number): number {
    const q = this.queues[index];
    if (q === undefined) return 0;
    const map = this.pendingIo[index === VIRTIO_SND_VQ_RX ? 1 : 0]!;
    let reaped = 0;
    for (let u = q.getUsed(); u !== null; u = q.getUsed()) {
      reaped++;
      const io = map.get(u.token);
      if (io === undefined)
        throw new VirtioSndError("ERR_DRIVER", `device returned unknown token ${u.token}`);
      map.delete(u.token);
      const statusBytes = new Uint8Array(8);
      if (io.statusAddr >= 0) this.memory.read(io.statusAddr, statusBytes, 0, 8);
      const dv = new DataView(statusBytes.buffer);
      const c: Completion = {
        token: u.token,
        time: this.clock.now(),
        used: u.len,
        status: io.statusAddr >= 0 ? dv.getUint32(0, true) : -1,
        latency: io.statusAddr >= 0 ? dv.getUint32(4, true) : -1,
      };
      if (io.rx) {
        const n = Math.max(0, Math.min(io.dataLen, u.len - 8));
        const data = new Uint8Array(n);
        this.memory.read(io.dataAddr, data, 0, n);
        c.data = data;
      }
      io.onDone?.(c);
    }
    return reaped;
  }

  private reapEvents(): number {
    const q = this.queues[VIRTIO_SND_VQ_EVENT];
    if (q === undefined) return 0;
    let reaped = 0;
    for (let u = q.getUsed(); u !== null; u = q.getUsed()) {
      reaped++;
      const addr = this.eventBufs.get(u.token);
      if (addr === undefined) throw new VirtioSndError("ERR_DRIVER", "unknown event buffer");
      this.eventBufs.delete(u.token);
      this.events.push({
        code: this.memory.readU32(addr),
        data: this.memory.readU32(addr + 4),
        time: this.clock.now(),
      });
      // Requeue, as virtsnd_event_notify_cb does.
      this.queueEventBuffer(addr);
    }
    return reaped;
  }

  /** I/O messages not yet completed for the given direction. */
  pendingCount(rx: boolean): number {
    return this.pendingIo[rx ? 1 : 0]!.size;
  }
}
