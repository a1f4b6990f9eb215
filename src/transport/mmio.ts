import { VirtioSndError } from "../errors.js";
import {
  VIRTIO_MMIO as R,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_MAGIC_VALUE,
  VIRTIO_MMIO_VERSION,
  VIRTIO_PCI_VENDOR_ID,
} from "../spec/constants.js";
import { TransportCore, u32 } from "./core.js";
import type { VirtioDevice, VirtioDeviceSource } from "./device.js";
import { decodeSnapshot, encodeSnapshot } from "./snapshot.js";

export interface VirtioMmioTransportOptions {
  /** The device, or a factory given the hooks to pass to its constructor. */
  readonly device: VirtioDeviceSource;
  /** The level of the device's interrupt line: true asserts it. */
  readonly irq?: (level: boolean) => void;
  /** VendorID register (§4.2.2); default 0x1af4. */
  readonly vendorId?: number;
  /** Queue count, when the device does not say (VirtioSound: 4). */
  readonly numQueues?: number;
  /** The largest queue size offered (a power of 2, default 256). */
  readonly queueSizeMax?: number;
  /** The device set DEVICE_NEEDS_RESET, with why (for logs). */
  readonly onNeedsReset?: (error: Error) => void;
}

/** Bytes of register space before the device-specific configuration (§4.2.2). */
export const VIRTIO_MMIO_CONFIG_OFFSET = R.Config;

/**
 * virtio over MMIO, version 2 (virtio 1.3 §4.2): the register model of one
 * device window an emulator maps into its physical address space. Reads and
 * writes of (offset, width) go in; the interrupt line's level comes out.
 *
 * §4.2.2.2: the control registers are 32-bit and accessed 32 bits wide and
 * aligned; any other access to them reads 0 and a write is ignored. The
 * device-specific configuration at 0x100 takes any width. Write-only registers
 * read 0. No shared memory regions: SHMLen and SHMBase read all ones
 * (§4.2.2: "no such region"). Nothing a guest writes makes a method throw.
 */
export class VirtioMmioTransport {
  readonly device: VirtioDevice;
  readonly core: TransportCore;
  private readonly vendorId: number;
  private interruptStatus = 0;
  private shmSel = 0;
  private line = false;

  constructor(private readonly options: VirtioMmioTransportOptions) {
    this.core = new TransportCore({
      device: options.device,
      ...(options.numQueues !== undefined ? { numQueues: options.numQueues } : {}),
      ...(options.queueSizeMax !== undefined ? { queueSizeMax: options.queueSizeMax } : {}),
      signalQueue: () => this.raise(VIRTIO_MMIO_INT_VRING),
      signalConfig: () => this.raise(VIRTIO_MMIO_INT_CONFIG),
      onNeedsReset: options.onNeedsReset,
    });
    this.device = this.core.device;
    const vendor = options.vendorId ?? VIRTIO_PCI_VENDOR_ID;
    if (!Number.isInteger(vendor) || vendor < 0 || vendor > 0xffff_ffff) {
      throw new VirtioSndError("ERR_INVALID_CONFIG", `vendorId ${vendor} is not a 32-bit value`);
    }
    this.vendorId = vendor;
  }

  /** Bytes of the window: the registers and the device-specific configuration, rounded to a page. */
  get size(): number {
    return Math.max(0x200, Math.ceil((R.Config + this.device.configSize) / 0x1000) * 0x1000);
  }

  /** A read of `width` bytes (1, 2, 4 or 8) at `offset` in the window. */
  read(offset: number, width: number): number {
    if (
      !Number.isSafeInteger(offset) ||
      offset < 0 ||
      !(width === 1 || width === 2 || width === 4 || width === 8)
    ) {
      return 0;
    }
    if (offset >= R.Config) return this.core.readConfig(offset - R.Config, width);
    if (width !== 4 || offset % 4 !== 0) return 0;
    const core = this.core;
    const q = core.selected;
    switch (offset) {
      case R.MagicValue:
        return VIRTIO_MMIO_MAGIC_VALUE;
      case R.Version:
        return VIRTIO_MMIO_VERSION;
      case R.DeviceID:
        return this.device.deviceId;
      case R.VendorID:
        return this.vendorId;
      case R.DeviceFeatures:
        return core.deviceFeatureWindow();
      case R.QueueNumMax:
        // 0: the selected queue does not exist (§4.2.2).
        return q === undefined ? 0 : core.queueSizeMax;
      case R.QueueReady:
        return q?.enabled === true ? 1 : 0;
      case R.InterruptStatus:
        return this.interruptStatus;
      case R.Status:
        return core.status;
      case R.SHMLenLow:
      case R.SHMLenHigh:
      case R.SHMBaseLow:
      case R.SHMBaseHigh:
        return 0xffff_ffff;
      case R.ConfigGeneration:
        return core.configGeneration;
      default:
        // Write-only registers, QueueReset (VIRTIO_F_RING_RESET is not offered) and reserved offsets.
        return 0;
    }
  }

  /** A write of `width` bytes at `offset` in the window. */
  write(offset: number, width: number, value: number): void {
    if (
      !Number.isSafeInteger(offset) ||
      offset < 0 ||
      !(width === 1 || width === 2 || width === 4 || width === 8)
    ) {
      return;
    }
    if (offset >= R.Config) {
      this.core.writeConfig(
        offset - R.Config,
        width,
        typeof value === "number" && value >= 0 ? Math.trunc(value) : 0,
      );
      return;
    }
    if (width !== 4 || offset % 4 !== 0) return;
    const v = u32(value);
    const core = this.core;
    switch (offset) {
      case R.DeviceFeaturesSel:
        core.deviceFeatureSelect = v;
        break;
      case R.DriverFeatures:
        core.writeDriverFeatureWindow(v);
        break;
      case R.DriverFeaturesSel:
        core.driverFeatureSelect = v;
        break;
      case R.QueueSel:
        // A selector beyond 16 bits names no queue rather than wrapping onto one.
        core.queueSelect = v > 0xffff ? 0xffff : v;
        break;
      case R.QueueNum:
        core.writeQueueSize(v);
        break;
      case R.QueueReady:
        if (v === 1) core.enableQueue();
        else if (v === 0) core.disableQueue();
        break;
      case R.QueueNotify:
        // Without VIRTIO_F_NOTIFICATION_DATA the value is the queue index.
        core.notify(v & 0xffff);
        break;
      case R.InterruptACK:
        this.interruptStatus &= ~v;
        this.update();
        break;
      case R.Status:
        core.writeStatus(v);
        if ((v & 0xff) === 0) {
          this.interruptStatus = 0;
          this.update();
        }
        break;
      case R.QueueDescLow:
        core.writeQueueAddress("desc", false, v);
        break;
      case R.QueueDescHigh:
        core.writeQueueAddress("desc", true, v);
        break;
      case R.QueueDriverLow:
        core.writeQueueAddress("driver", false, v);
        break;
      case R.QueueDriverHigh:
        core.writeQueueAddress("driver", true, v);
        break;
      case R.QueueDeviceLow:
        core.writeQueueAddress("device", false, v);
        break;
      case R.QueueDeviceHigh:
        core.writeQueueAddress("device", true, v);
        break;
      case R.SHMSel:
        this.shmSel = v;
        break;
      default:
      // Read-only registers and reserved offsets ignore writes.
    }
  }

  private raise(bits: number): void {
    this.interruptStatus |= bits;
    this.update();
  }

  private update(): void {
    const level = this.interruptStatus !== 0;
    if (level === this.line) return;
    this.line = level;
    this.options.irq?.(level);
  }

  /** A used buffer notification for queue `index` (give this to a device made without the factory). */
  interrupt(index: number): void {
    this.core.deviceInterrupt(index);
  }

  /** The device needs a reset (give this to a device made without the factory). */
  deviceNeedsReset(error: Error): void {
    this.core.deviceNeedsReset(error);
  }

  /** The device-specific configuration changed: a new generation and a configuration interrupt. */
  configChanged(): void {
    this.core.configChanged();
  }

  get irqLevel(): boolean {
    return this.line;
  }

  /** A platform reset: the device and every register back to the power-on state. */
  reset(): void {
    this.core.reset();
    this.interruptStatus = 0;
    this.shmSel = 0;
    this.update();
  }

  /** The transport's registers (not the device's state) as bytes. */
  saveState(): Uint8Array {
    return encodeSnapshot({
      format: "virtio-mmio-transport",
      version: 1,
      core: this.core.saveState(),
      interruptStatus: this.interruptStatus,
      shmSel: this.shmSel,
    });
  }

  /** Puts back saved registers and drives the interrupt line to their level; ERR_INVALID_SNAPSHOT for bytes that do not fit. */
  restoreState(bytes: Uint8Array): void {
    const doc = decodeSnapshot(bytes, "virtio-mmio-transport");
    const status = doc["interruptStatus"];
    const shm = doc["shmSel"];
    const fits =
      typeof status === "number" &&
      Number.isInteger(status) &&
      status >= 0 &&
      status <= 3 &&
      typeof shm === "number" &&
      Number.isInteger(shm) &&
      shm >= 0 &&
      shm <= 0xffff_ffff;
    if (!fits)
      throw new VirtioSndError("ERR_INVALID_SNAPSHOT", "virtio-mmio snapshot does not fit this transport");
    this.core.restoreState(doc["core"]);
    this.interruptStatus = status;
    this.shmSel = shm;
    this.line = !(status !== 0);
    this.update();
  }
}
