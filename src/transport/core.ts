import { VirtioSndError } from "../errors.js";
import {
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_NOTIFICATION_DATA,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_VERSION_1,
  VIRTIO_MSI_NO_VECTOR,
} from "../spec/constants.js";
import { type VirtioDevice, type VirtioDeviceSource, queueCount, resolveDevice } from "./device.js";

const bit = (n: number): bigint => 1n << BigInt(n);

/**
 * Feature bits a transport must not pass on until it implements them: both
 * change what the driver writes to the registers (§4.1.4.4 notification data,
 * §4.1.4.3 queue_reset).
 */
const TRANSPORT_FEATURES_NOT_CARRIED = bit(VIRTIO_F_NOTIFICATION_DATA) | bit(VIRTIO_F_RING_RESET);

/** Feature windows (32 bits each) the registers reach; beyond them features read 0. */
export const FEATURE_WINDOWS = 8;

/** The largest queue size the transports offer by default (both ring layouts take it). */
export const DEFAULT_QUEUE_SIZE_MAX = 256;

/** One virtqueue's registers as the driver programs them. */
export interface QueueRegisters {
  /** queue_size / QueueNum: the size the driver chose (the maximum after reset). */
  size: number;
  enabled: boolean;
  /** 64-bit addresses as two 32-bit halves, exactly as written. */
  descLo: number;
  descHi: number;
  driverLo: number;
  driverHi: number;
  deviceLo: number;
  deviceHi: number;
  /** queue_msix_vector (virtio-pci with MSI-X). */
  vector: number;
}

export interface TransportCoreOptions {
  readonly device: VirtioDeviceSource;
  readonly numQueues?: number;
  readonly queueSizeMax?: number;
  /** Send a used buffer notification for queue `index` (after DRIVER_OK). */
  readonly signalQueue: (index: number) => void;
  /** Send a configuration change notification. */
  readonly signalConfig: () => void;
  /** Told when the device entered the needs-reset state, with why. */
  readonly onNeedsReset?: ((error: Error) => void) | undefined;
}

/** The registers' state that a snapshot keeps (JSON-safe). */
export interface TransportCoreState {
  deviceFeatureSelect: number;
  driverFeatureSelect: number;
  driverFeatures: string;
  driverFeaturesInvalid: boolean;
  status: number;
  configGeneration: number;
  queueSelect: number;
  queues: QueueRegisters[];
  pendingNotify: boolean[];
  pendingInterrupt: boolean[];
}

/** A 32-bit register value from any number an emulator may pass (ToUint32: modulo 2^32, NaN is 0). */
export function u32(value: number): number {
  // A JavaScript caller may pass anything; a bigint would make `>>>` throw.
  return typeof value === "number" ? value >>> 0 : 0;
}

/**
 * The state every virtio transport has in common (virtio 1.3 §2, §3.1, §4.1.4.3,
 * §4.2.2): feature windows, device status, the per-queue registers, and the
 * rules for when the device may run. VirtioPciTransport and VirtioMmioTransport
 * map their registers onto it.
 *
 * Everything a guest writes is checked here; nothing it writes makes a method
 * throw. Calls into the device are made only when the state allows them, and
 * an exception out of the device (which would be a device bug) is turned into
 * the needs-reset state rather than passed to the emulator.
 */
export class TransportCore {
  readonly device: VirtioDevice;
  readonly numQueues: number;
  readonly queueSizeMax: number;
  /** The features offered to the driver: the device's, less those this transport cannot carry. */
  readonly offeredFeatures: bigint;

  deviceFeatureSelect = 0;
  driverFeatureSelect = 0;
  driverFeatures = 0n;
  /** The driver wrote feature bits beyond the reachable windows: FEATURES_OK will be refused. */
  private driverFeaturesInvalid = false;
  status = 0;
  configGeneration = 0;
  queueSelect = 0;
  readonly queues: QueueRegisters[];
  /** Notifications that arrived before DRIVER_OK (§3.1.1: the device must not use buffers before it). */
  private readonly pendingNotify: boolean[];
  /** Used buffer notifications the device raised before DRIVER_OK (§2.1: held until then). */
  private readonly pendingInterrupt: boolean[];
  private readonly options: TransportCoreOptions;

  constructor(options: TransportCoreOptions) {
    this.options = options;
    this.device = resolveDevice(options.device, {
      interrupt: (index) => this.deviceInterrupt(index),
      onNeedsReset: (error) => this.deviceNeedsReset(error),
    });
    if (
      typeof this.device.deviceFeatures !== "bigint" ||
      (this.device.deviceFeatures & bit(VIRTIO_F_VERSION_1)) === 0n
    ) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        "the device must offer VIRTIO_F_VERSION_1: these transports are non-transitional (§4.1.2, §4.2.2)",
      );
    }
    this.numQueues = queueCount(this.device, options.numQueues);
    const max = options.queueSizeMax ?? DEFAULT_QUEUE_SIZE_MAX;
    if (!Number.isInteger(max) || max < 1 || max > 32768 || (max & (max - 1)) !== 0) {
      // A power of 2 so that the maximum is a valid split ring size too (§2.7).
      throw new VirtioSndError("ERR_INVALID_CONFIG", `queueSizeMax ${max} is not a power of 2 in 1..32768`);
    }
    this.queueSizeMax = max;
    this.offeredFeatures = this.device.deviceFeatures & ~TRANSPORT_FEATURES_NOT_CARRIED;
    this.queues = Array.from({ length: this.numQueues }, () => this.freshQueue());
    this.pendingNotify = new Array<boolean>(this.numQueues).fill(false);
    this.pendingInterrupt = new Array<boolean>(this.numQueues).fill(false);
  }

  private freshQueue(): QueueRegisters {
    return {
      size: this.queueSizeMax,
      enabled: false,
      descLo: 0,
      descHi: 0,
      driverLo: 0,
      driverHi: 0,
      deviceLo: 0,
      deviceHi: 0,
      vector: VIRTIO_MSI_NO_VECTOR,
    };
  }

  get driverOk(): boolean {
    return (this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0;
  }

  get featuresOk(): boolean {
    return (this.status & VIRTIO_CONFIG_S_FEATURES_OK) !== 0;
  }

  /** The selected queue's registers, or undefined when queue_select names no queue. */
  get selected(): QueueRegisters | undefined {
    return this.queues[this.queueSelect];
  }

  // ---- features (§2.2) ---------------------------------------------------------------

  /** device_feature / DeviceFeatures: 32 bits of the offer, chosen by the select register. */
  deviceFeatureWindow(): number {
    if (this.deviceFeatureSelect >= FEATURE_WINDOWS) return 0;
    return Number(BigInt.asUintN(32, this.offeredFeatures >> BigInt(32 * this.deviceFeatureSelect)));
  }

  driverFeatureWindow(): number {
    if (this.driverFeatureSelect >= FEATURE_WINDOWS) return 0;
    return Number(BigInt.asUintN(32, this.driverFeatures >> BigInt(32 * this.driverFeatureSelect)));
  }

  /** driver_feature / DriverFeatures. Ignored once FEATURES_OK is set: the negotiation is over (§3.1.1). */
  writeDriverFeatureWindow(value: number): void {
    if (this.featuresOk) return;
    const v = BigInt(u32(value));
    if (this.driverFeatureSelect >= FEATURE_WINDOWS) {
      // Bits nobody offered: remember them so FEATURES_OK is refused, without growing a huge number.
      if (v !== 0n) this.driverFeaturesInvalid = true;
      return;
    }
    const shift = BigInt(32 * this.driverFeatureSelect);
    this.driverFeatures = (this.driverFeatures & ~(0xffff_ffffn << shift)) | (v << shift);
  }

  /** Whether the negotiated features include `n` (meaningful once FEATURES_OK is set). */
  negotiated(n: number): boolean {
    return this.featuresOk && (this.driverFeatures & bit(n)) !== 0n;
  }

  // ---- device status (§2.1, §3.1) -------------------------------------------------------

  /**
   * A write of device_status / Status. 0 resets the device (§2.4). Otherwise bits
   * are only ever added (the driver must not clear them, §2.1.1); FEATURES_OK
   * stays clear when the device refuses the features (§2.2.2: the driver reads
   * it back), DRIVER_OK stays clear without FEATURES_OK, and DEVICE_NEEDS_RESET
   * is the device's to set.
   */
  writeStatus(value: number): void {
    const v = u32(value) & 0xff;
    if (v === 0) {
      this.reset();
      return;
    }
    const was = this.status;
    let next = was | (v & ~VIRTIO_CONFIG_S_NEEDS_RESET);
    if ((next & VIRTIO_CONFIG_S_FEATURES_OK) !== 0 && (was & VIRTIO_CONFIG_S_FEATURES_OK) === 0) {
      if (!this.acceptFeatures()) next &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    }
    if ((next & VIRTIO_CONFIG_S_FEATURES_OK) === 0) next &= ~VIRTIO_CONFIG_S_DRIVER_OK;
    this.status = next;
    if ((next & VIRTIO_CONFIG_S_DRIVER_OK) !== 0 && (was & VIRTIO_CONFIG_S_DRIVER_OK) === 0) this.started();
  }

  private acceptFeatures(): boolean {
    if (this.driverFeaturesInvalid) return false;
    // Bits the transport withheld are refused even if the device would take them.
    if ((this.driverFeatures & ~this.offeredFeatures) !== 0n) return false;
    try {
      return this.device.setDriverFeatures(this.driverFeatures) === true;
    } catch {
      return false;
    }
  }

  /** DRIVER_OK was just set: what the driver did before it now reaches the device. */
  private started(): void {
    // The device broke during setup: the configuration interrupt it could not send yet (§2.1.2).
    if ((this.status & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0) {
      this.options.signalConfig();
      return;
    }
    for (let i = 0; i < this.numQueues; i++) {
      if (this.pendingInterrupt[i]) {
        this.pendingInterrupt[i] = false;
        this.options.signalQueue(i);
      }
    }
    for (let i = 0; i < this.numQueues; i++) {
      if (this.pendingNotify[i]) {
        this.pendingNotify[i] = false;
        this.notify(i);
      }
    }
  }

  /** Device reset (status 0 written, or a platform reset): every register back to its initial value. */
  reset(): void {
    try {
      this.device.reset();
    } catch (err) {
      // A device that cannot reset is still a device to talk to: say so, keep the transport sane.
      this.options.onNeedsReset?.(err instanceof Error ? err : new Error(String(err)));
    }
    this.deviceFeatureSelect = 0;
    this.driverFeatureSelect = 0;
    this.driverFeatures = 0n;
    this.driverFeaturesInvalid = false;
    this.status = 0;
    this.queueSelect = 0;
    for (let i = 0; i < this.numQueues; i++) {
      this.queues[i] = this.freshQueue();
      this.pendingNotify[i] = false;
      this.pendingInterrupt[i] = false;
    }
  }

  // ---- queues (§4.1.4.3, §4.2.2) -----------------------------------------------------

  writeQueueSelect(value: number): void {
    this.queueSelect = u32(value) & 0xffff;
  }

  /**
   * queue_size / QueueNum. The driver may only shrink a queue, to a power of 2
   * for the split ring (§2.7) or any size for the packed ring (§2.8). Other
   * values, and writes to an enabled queue, are ignored: the register keeps a
   * size the device can use, and the driver sees its write was not taken.
   */
  writeQueueSize(value: number): void {
    const q = this.selected;
    if (q === undefined || q.enabled) return;
    const v = u32(value);
    if (v < 1 || v > this.queueSizeMax) return;
    if (!this.negotiated(VIRTIO_F_RING_PACKED) && (v & (v - 1)) !== 0) return;
    q.size = v;
  }

  /** One 32-bit half of queue_desc/driver/device (QueueDesc/Driver/Device Low/High); ignored once enabled. */
  writeQueueAddress(which: "desc" | "driver" | "device", high: boolean, value: number): void {
    const q = this.selected;
    if (q === undefined || q.enabled) return;
    const v = u32(value);
    if (which === "desc") {
      if (high) q.descHi = v;
      else q.descLo = v;
    } else if (which === "driver") {
      if (high) q.driverHi = v;
      else q.driverLo = v;
    } else if (high) q.deviceHi = v;
    else q.deviceLo = v;
  }

  /**
   * queue_enable = 1 / QueueReady = 1: the device gets the queue. Only after
   * FEATURES_OK (the ring layout depends on the features, §3.1.1); before it the
   * write is ignored and the register reads 0. A ring the device cannot use
   * puts it into needs-reset through its own path.
   */
  enableQueue(): void {
    const index = this.queueSelect;
    const q = this.queues[index];
    if (q === undefined || q.enabled || !this.featuresOk) return;
    q.enabled = true;
    try {
      this.device.setupQueue(index, {
        size: q.size,
        descAddr: q.descLo + q.descHi * 0x1_0000_0000,
        driverAddr: q.driverLo + q.driverHi * 0x1_0000_0000,
        deviceAddr: q.deviceLo + q.deviceHi * 0x1_0000_0000,
      });
    } catch (err) {
      this.deviceNeedsReset(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** QueueReady = 0 (virtio-mmio, §4.2.2): the device gives the queue back. */
  disableQueue(): void {
    const index = this.queueSelect;
    const q = this.queues[index];
    if (q === undefined || !q.enabled) return;
    q.enabled = false;
    this.pendingNotify[index] = false;
    this.pendingInterrupt[index] = false;
    try {
      this.device.stopQueue(index);
    } catch (err) {
      this.deviceNeedsReset(err instanceof Error ? err : new Error(String(err)));
    }
  }

  /** The driver notified queue `index`: passed on once DRIVER_OK is set, held until then. */
  notify(index: number): void {
    const q = this.queues[index];
    if (q === undefined || !q.enabled) return;
    if (!this.driverOk) {
      this.pendingNotify[index] = true;
      return;
    }
    try {
      this.device.notify(index);
    } catch (err) {
      this.deviceNeedsReset(err instanceof Error ? err : new Error(String(err)));
    }
  }

  // ---- from the device ----------------------------------------------------------------

  /** The device's used buffer notification for queue `index`. */
  deviceInterrupt(index: number): void {
    const q = this.queues[index];
    if (q === undefined || !q.enabled) return;
    if (!this.driverOk) {
      this.pendingInterrupt[index] = true;
      return;
    }
    this.options.signalQueue(index);
  }

  /**
   * The device entered an error state (§2.1.2): DEVICE_NEEDS_RESET is set and,
   * once DRIVER_OK is, the driver gets a configuration change notification.
   */
  deviceNeedsReset(error: Error): void {
    if (this.status === 0 || (this.status & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0) return;
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    this.options.onNeedsReset?.(error);
    if (this.driverOk) this.options.signalConfig();
  }

  /** The device-specific configuration changed (§2.5.1): a new generation and a notification. */
  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) & 0xff;
    if (this.driverOk) this.options.signalConfig();
  }

  /** device.readConfig, as `width` little-endian bytes; 0 where the device has none or fails. */
  readConfig(offset: number, width: number): number {
    let bytes: Uint8Array;
    try {
      bytes = this.device.readConfig(offset, width);
    } catch {
      return 0;
    }
    let v = 0;
    for (let i = width - 1; i >= 0; i--) v = v * 256 + (bytes[i] ?? 0);
    return v;
  }

  writeConfig(offset: number, width: number, value: number): void {
    const data = new Uint8Array(width);
    let v = value;
    for (let i = 0; i < width; i++) {
      data[i] = v % 256;
      v = Math.floor(v / 256);
    }
    try {
      this.device.writeConfig(offset, data);
    } catch {
      // The configuration space is the device's; a write it rejects changes nothing.
    }
  }

  // ---- snapshots --------------------------------------------------------------------------

  saveState(): TransportCoreState {
    return {
      deviceFeatureSelect: this.deviceFeatureSelect,
      driverFeatureSelect: this.driverFeatureSelect,
      driverFeatures: this.driverFeatures.toString(16),
      driverFeaturesInvalid: this.driverFeaturesInvalid,
      status: this.status,
      configGeneration: this.configGeneration,
      queueSelect: this.queueSelect,
      queues: this.queues.map((q) => ({ ...q })),
      pendingNotify: [...this.pendingNotify],
      pendingInterrupt: [...this.pendingInterrupt],
    };
  }

  /**
   * Puts the registers back as saved. The device is not told: its own snapshot
   * carries its queues and streams. Throws ERR_INVALID_SNAPSHOT for a state that
   * does not fit this transport, and then changes nothing.
   */
  restoreState(state: unknown): void {
    if (!this.isState(state)) {
      throw new VirtioSndError("ERR_INVALID_SNAPSHOT", "transport snapshot does not fit this transport");
    }
    this.deviceFeatureSelect = state.deviceFeatureSelect;
    this.driverFeatureSelect = state.driverFeatureSelect;
    this.driverFeatures = BigInt(`0x${state.driverFeatures}`);
    this.driverFeaturesInvalid = state.driverFeaturesInvalid;
    this.status = state.status;
    this.configGeneration = state.configGeneration;
    this.queueSelect = state.queueSelect;
    state.queues.forEach((q, i) => (this.queues[i] = { ...q }));
    state.pendingNotify.forEach((f, i) => (this.pendingNotify[i] = f));
    state.pendingInterrupt.forEach((f, i) => (this.pendingInterrupt[i] = f));
  }

  private isState(state: unknown): state is TransportCoreState {
    const s = state as Partial<TransportCoreState> | null;
    return (
      s !== null &&
      typeof s === "object" &&
      isU32(s.deviceFeatureSelect) &&
      isU32(s.driverFeatureSelect) &&
      typeof s.driverFeatures === "string" &&
      /^[0-9a-f]{1,64}$/.test(s.driverFeatures) &&
      typeof s.driverFeaturesInvalid === "boolean" &&
      isU32(s.status) &&
      s.status <= 0xff &&
      isU32(s.configGeneration) &&
      s.configGeneration <= 0xff &&
      isU32(s.queueSelect) &&
      s.queueSelect <= 0xffff &&
      Array.isArray(s.queues) &&
      s.queues.length === this.numQueues &&
      s.queues.every((q) => this.isQueue(q)) &&
      isFlags(s.pendingNotify, this.numQueues) &&
      isFlags(s.pendingInterrupt, this.numQueues)
    );
  }

  private isQueue(q: unknown): q is QueueRegisters {
    const r = q as Partial<QueueRegisters> | null;
    return (
      r !== null &&
      typeof r === "object" &&
      isU32(r.size) &&
      r.size >= 1 &&
      r.size <= this.queueSizeMax &&
      typeof r.enabled === "boolean" &&
      [r.descLo, r.descHi, r.driverLo, r.driverHi, r.deviceLo, r.deviceHi].every(isU32) &&
      isU32(r.vector) &&
      r.vector <= 0xffff
    );
  }
}

function isU32(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff_ffff;
}

function isFlags(v: unknown, n: number): v is boolean[] {
  return Array.isArray(v) && v.length === n && v.every((f) => typeof f === "boolean");
}
