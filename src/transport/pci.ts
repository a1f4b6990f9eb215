import { VirtioSndError } from "../errors.js";
import {
  VIRTIO_ID_SOUND,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_CAP,
  VIRTIO_PCI_CAP_COMMON_CFG,
  VIRTIO_PCI_CAP_DEVICE_CFG,
  VIRTIO_PCI_CAP_ISR_CFG,
  VIRTIO_PCI_CAP_NOTIFY_CFG,
  VIRTIO_PCI_CAP_PCI_CFG,
  VIRTIO_PCI_CAP_SIZE,
  VIRTIO_PCI_CFG_CAP_SIZE,
  VIRTIO_PCI_COMMON_CFG as C,
  VIRTIO_PCI_COMMON_CFG_SIZE,
  VIRTIO_PCI_ISR_CONFIG,
  VIRTIO_PCI_ISR_QUEUE,
  VIRTIO_PCI_MODERN_DEVICE_ID_BASE,
  VIRTIO_PCI_NOTIFY_CAP_SIZE,
  VIRTIO_PCI_VENDOR_ID,
} from "../spec/constants.js";
import { TransportCore, u32 } from "./core.js";
import type { VirtioDevice, VirtioDeviceSource } from "./device.js";
import { decodeSnapshot, encodeSnapshot, fromHex, toHex } from "./snapshot.js";

// ---- PCI Local Bus Specification 3.0: the type 0 configuration header -----------------
/** Offsets in the configuration header (PCI 3.0 §6.1). */
export const PCI_VENDOR_ID = 0x00;
export const PCI_DEVICE_ID = 0x02;
export const PCI_COMMAND = 0x04;
export const PCI_STATUS = 0x06;
export const PCI_REVISION_ID = 0x08;
export const PCI_CLASS_PROG = 0x09;
export const PCI_CACHE_LINE_SIZE = 0x0c;
export const PCI_LATENCY_TIMER = 0x0d;
export const PCI_HEADER_TYPE = 0x0e;
export const PCI_BASE_ADDRESS_0 = 0x10;
export const PCI_SUBSYSTEM_VENDOR_ID = 0x2c;
export const PCI_SUBSYSTEM_ID = 0x2e;
export const PCI_ROM_ADDRESS = 0x30;
export const PCI_CAPABILITY_LIST = 0x34;
export const PCI_INTERRUPT_LINE = 0x3c;
export const PCI_INTERRUPT_PIN = 0x3d;
/** Command register bits. */
export const PCI_COMMAND_IO = 0x1;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_INTX_DISABLE = 0x400;
/** Status register bits. */
export const PCI_STATUS_INTERRUPT = 0x08;
export const PCI_STATUS_CAP_LIST = 0x10;
/** BAR low bits. */
export const PCI_BASE_ADDRESS_SPACE_IO = 0x1;
/** Capability IDs (PCI 3.0 appendix H). */
export const PCI_CAP_ID_VNDR = 0x09;
export const PCI_CAP_ID_MSIX = 0x11;
/** MSI-X capability (PCI 3.0 §6.8.2): message control bits, entry layout. */
export const PCI_MSIX_FLAGS_MASKALL = 0x4000;
export const PCI_MSIX_FLAGS_ENABLE = 0x8000;
export const PCI_MSIX_ENTRY_SIZE = 16;
export const PCI_MSIX_ENTRY_CTRL_MASKBIT = 0x1;

/** The size of a conventional PCI function's configuration space. */
export const PCI_CONFIG_SPACE_SIZE = 256;

/** Multimedia audio controller (class 0x04, subclass 0x01), as QEMU's virtio-sound-pci. */
const CLASS_MULTIMEDIA_AUDIO = 0x040100;
/** "Device does not fit any defined class". */
const CLASS_OTHER = 0xff0000;
/** QEMU's subsystem ID for its virtio devices: any value of 0x40 or more will do (§4.1.2.1). */
const DEFAULT_SUBSYSTEM_ID = 0x1100;

export type PciBarKind = "io" | "mem32";

/** A BAR as the guest has programmed it. */
export interface PciBarInfo {
  readonly index: number;
  readonly kind: PciBarKind;
  /** Bytes it decodes (a power of 2). */
  readonly size: number;
  /** The base address the guest wrote (type bits removed); after a sizing write, the size mask. */
  readonly address: number;
  /** Whether the command register enables its address space (I/O or memory). */
  readonly enabled: boolean;
  /** The virtio structures, or the MSI-X table and PBA. */
  readonly role: "virtio" | "msix";
}

export interface VirtioPciTransportOptions {
  /** The device, or a factory given the hooks to pass to its constructor. */
  readonly device: VirtioDeviceSource;
  /** The level of INTA# (INTx, the default interrupt): true asserts it. */
  readonly irq?: (level: boolean) => void;
  /** MSI-X vectors to offer (1..2048); none by default. */
  readonly msixVectors?: number;
  /** An MSI-X message: write `data` (32-bit) at guest-physical `address` (64-bit, exact below 2^53). */
  readonly msi?: (address: number, data: number) => void;
  /** The BAR of the virtio structures: index 0..5 and I/O or 32-bit memory space. Default BAR 0, memory. */
  readonly bar?: { readonly index?: number; readonly kind?: PciBarKind };
  /** The BAR of the MSI-X table and PBA (32-bit memory). Default: the one after the virtio BAR. */
  readonly msixBar?: number;
  /** notify_off_multiplier (§4.1.4.4): 0 (one address for all queues) or an even power of 2. Default 4. */
  readonly notifyOffMultiplier?: number;
  /** Queue count, when the device does not say (VirtioSound: 4). */
  readonly numQueues?: number;
  /** The largest queue size offered (a power of 2, default 256). */
  readonly queueSizeMax?: number;
  readonly subsystemVendorId?: number;
  readonly subsystemId?: number;
  /** Class code, 24 bits (class, subclass, programming interface). Default: audio for a sound device. */
  readonly classCode?: number;
  /** Revision ID; non-transitional devices have 1 or more (§4.1.2.1). Default 1. */
  readonly revision?: number;
  /** Offer the VIRTIO_PCI_CAP_PCI_CFG access window (§4.1.4.9). Default true: the spec requires one. */
  readonly pciCfgCapability?: boolean;
  /** A BAR's address or its enable bit changed: map it where it now is. */
  readonly onBarChange?: (bar: PciBarInfo) => void;
  /** The device set DEVICE_NEEDS_RESET, with why (for logs). */
  readonly onNeedsReset?: (error: Error) => void;
}

interface Region {
  readonly offset: number;
  readonly length: number;
}

interface BarDef {
  readonly index: number;
  readonly kind: PciBarKind;
  readonly size: number;
  readonly role: "virtio" | "msix";
}

const align = (n: number, a: number): number => Math.ceil(n / a) * a;
const nextPow2 = (n: number): number => 2 ** Math.ceil(Math.log2(Math.max(1, n)));
const within = (offset: number, width: number, r: Region): boolean =>
  offset >= r.offset && offset + width <= r.offset + r.length;
const isWidth = (w: number): boolean => w === 1 || w === 2 || w === 4 || w === 8;

function readLE(bytes: Uint8Array, offset: number, width: number): number {
  let v = 0;
  for (let i = width - 1; i >= 0; i--) v = v * 256 + (bytes[offset + i] ?? 0);
  return v;
}

function writeLE(bytes: Uint8Array, offset: number, width: number, value: number): void {
  let v = value;
  for (let i = 0; i < width; i++) {
    bytes[offset + i] = v % 256;
    v = Math.floor(v / 256);
  }
}

/** A value of `width` bytes from anything the caller passed: widths above 4 keep up to 53 bits. */
function toWidth(value: number, width: number): number {
  if (typeof value !== "number" || !Number.isFinite(value)) return 0;
  if (width <= 4) return u32(value) % 2 ** (8 * width);
  const v = Math.trunc(value);
  return v >= 0 ? v % 2 ** 64 : 0;
}

/**
 * virtio over PCI, non-transitional ("modern", virtio 1.3 §4.1): the register
 * model of one PCI function that an emulator wires to its PCI bus. Reads and
 * writes of the configuration space and of the BARs go in; INTx levels (or
 * MSI-X messages) come out.
 *
 * Layout: the configuration header (vendor 0x1af4, device 0x1040 + device ID,
 * revision 1), a capability list with the virtio structures (common, notify,
 * ISR, device configuration, the PCI configuration access window) and
 * optionally MSI-X; one BAR (I/O or 32-bit memory, the embedder's choice)
 * holding the virtio structures, and with MSI-X one memory BAR holding the
 * table and the PBA.
 *
 * Every access of width 1, 2, 4 or 8 at any offset is defined and never
 * throws. Fields are meant to be accessed at their natural width (§4.1.3.1);
 * reads of the common configuration at any other offset or width return its
 * bytes, writes that do not match one field exactly are ignored; reads outside
 * any structure return 0. barRead/barWrite do not check the command register's
 * enable bits (an emulator that keeps its own copy of the configuration space
 * still routes BAR accesses here); decode() does.
 *
 * The device's DMA is not gated on Bus Master Enable.
 */
export class VirtioPciTransport {
  readonly device: VirtioDevice;
  /** The shared register state (features, status, queues). */
  readonly core: TransportCore;
  readonly msixVectors: number;
  readonly notifyOffMultiplier: number;

  private readonly config = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  /** Per byte, the bits the guest may write (PCI 3.0 §6.1: everything else is read-only). */
  private readonly wmask = new Uint8Array(PCI_CONFIG_SPACE_SIZE);
  private readonly initialConfig: Uint8Array;
  private readonly barDefs: BarDef[] = [];
  private readonly virtioBar: BarDef;
  private readonly msixBarDef: BarDef | null;
  private readonly common: Region;
  private readonly notifyRegion: Region;
  private readonly isrRegion: Region;
  private readonly deviceRegion: Region | null;
  private readonly pciCfgCap: number;
  private readonly msixCap: number;
  private readonly msixTable: Uint8Array;
  private readonly msixPba: Uint8Array;
  private readonly msixTableRegion: Region;
  private readonly msixPbaRegion: Region;
  private readonly commonScratch = new Uint8Array(VIRTIO_PCI_COMMON_CFG_SIZE);
  private readonly commonView = new DataView(this.commonScratch.buffer);

  private isr = 0;
  private configVector = VIRTIO_MSI_NO_VECTOR;
  private line = false;
  private readonly reported = new Map<number, string>();

  constructor(private readonly options: VirtioPciTransportOptions) {
    this.core = new TransportCore({
      device: options.device,
      ...(options.numQueues !== undefined ? { numQueues: options.numQueues } : {}),
      ...(options.queueSizeMax !== undefined ? { queueSizeMax: options.queueSizeMax } : {}),
      signalQueue: (index) => this.signalQueue(index),
      signalConfig: () => this.signalConfig(),
      onNeedsReset: options.onNeedsReset,
    });
    this.device = this.core.device;
    const numQueues = this.core.numQueues;

    const mult = options.notifyOffMultiplier ?? 4;
    if (!Number.isInteger(mult) || mult < 0 || (mult !== 0 && (mult < 2 || (mult & (mult - 1)) !== 0))) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `notifyOffMultiplier ${mult} is neither 0 nor an even power of 2`,
      );
    }
    this.notifyOffMultiplier = mult;
    const vectors = options.msixVectors ?? 0;
    if (!Number.isInteger(vectors) || vectors < 0 || vectors > 2048) {
      throw new VirtioSndError("ERR_INVALID_CONFIG", `msixVectors ${vectors} is not in 0..2048`);
    }
    this.msixVectors = vectors;

    // The virtio structures, packed into one BAR at the alignments §4.1.4 asks for.
    this.common = { offset: 0, length: VIRTIO_PCI_COMMON_CFG_SIZE };
    // §4.1.4.4: at least queue_notify_off * multiplier + 2 bytes for every queue.
    const notifyLength = align(mult === 0 ? 2 : (numQueues - 1) * mult + 2, 4);
    this.notifyRegion = { offset: align(this.common.offset + this.common.length, 4), length: notifyLength };
    this.isrRegion = { offset: this.notifyRegion.offset + notifyLength, length: 1 };
    const configSize = this.device.configSize;
    if (!Number.isInteger(configSize) || configSize < 0 || configSize > 0x1000) {
      throw new VirtioSndError("ERR_INVALID_CONFIG", `device configSize ${configSize} is not in 0..4096`);
    }
    this.deviceRegion =
      configSize > 0 ? { offset: align(this.isrRegion.offset + 4, 8), length: configSize } : null;
    const used = this.deviceRegion
      ? this.deviceRegion.offset + this.deviceRegion.length
      : this.isrRegion.offset + 4;

    const barIndex = options.bar?.index ?? 0;
    const kind = options.bar?.kind ?? "mem32";
    if (!Number.isInteger(barIndex) || barIndex < 0 || barIndex > 5 || (kind !== "io" && kind !== "mem32")) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `bar ${String(barIndex)} ${String(kind)} is not a BAR 0..5 of kind io or mem32`,
      );
    }
    // I/O BARs stay within 256 bytes (PCI 3.0 §6.2.5.1); memory BARs take a page of their own.
    const barSize = Math.max(kind === "io" ? 16 : 4096, nextPow2(used));
    if (kind === "io" && barSize > 256) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `the virtio structures need ${barSize} bytes: too many for an I/O BAR (lower notifyOffMultiplier)`,
      );
    }
    this.virtioBar = { index: barIndex, kind, size: barSize, role: "virtio" };
    this.barDefs.push(this.virtioBar);

    const tableLength = vectors * PCI_MSIX_ENTRY_SIZE;
    this.msixTableRegion = { offset: 0, length: tableLength };
    this.msixPbaRegion = { offset: align(tableLength, 8), length: align(Math.ceil(vectors / 8), 8) };
    this.msixTable = new Uint8Array(tableLength);
    this.msixPba = new Uint8Array(this.msixPbaRegion.length);
    if (vectors > 0) {
      const index = options.msixBar ?? barIndex + 1;
      if (!Number.isInteger(index) || index < 0 || index > 5 || index === barIndex) {
        throw new VirtioSndError("ERR_INVALID_CONFIG", `msixBar ${index} is not a free BAR 0..5`);
      }
      const size = Math.max(4096, nextPow2(this.msixPbaRegion.offset + this.msixPbaRegion.length));
      this.msixBarDef = { index, kind: "mem32", size, role: "msix" };
      this.barDefs.push(this.msixBarDef);
    } else {
      this.msixBarDef = null;
    }

    const caps = this.buildConfigSpace();
    this.pciCfgCap = caps.pciCfg;
    this.msixCap = caps.msix;
    this.initialConfig = this.config.slice();
    this.maskAllVectors();
  }

  // ---- configuration space ------------------------------------------------------------

  private buildConfigSpace(): { pciCfg: number; msix: number } {
    const o = this.options;
    const cfg = this.config;
    const w16 = (off: number, v: number): void => writeLE(cfg, off, 2, v);
    const w32 = (off: number, v: number): void => writeLE(cfg, off, 4, v);
    w16(PCI_VENDOR_ID, VIRTIO_PCI_VENDOR_ID);
    w16(PCI_DEVICE_ID, (VIRTIO_PCI_MODERN_DEVICE_ID_BASE + this.device.deviceId) & 0xffff);
    const revision = o.revision ?? 1;
    if (!Number.isInteger(revision) || revision < 1 || revision > 0xff) {
      throw new VirtioSndError("ERR_INVALID_CONFIG", `revision ${revision} is not in 1..255 (§4.1.2.1)`);
    }
    cfg[PCI_REVISION_ID] = revision;
    const classCode =
      o.classCode ?? (this.device.deviceId === VIRTIO_ID_SOUND ? CLASS_MULTIMEDIA_AUDIO : CLASS_OTHER);
    writeLE(cfg, PCI_CLASS_PROG, 3, classCode & 0xffffff);
    cfg[PCI_HEADER_TYPE] = 0x00;
    w16(PCI_SUBSYSTEM_VENDOR_ID, (o.subsystemVendorId ?? VIRTIO_PCI_VENDOR_ID) & 0xffff);
    w16(PCI_SUBSYSTEM_ID, (o.subsystemId ?? DEFAULT_SUBSYSTEM_ID) & 0xffff);
    cfg[PCI_INTERRUPT_PIN] = 1; // INTA#
    w16(PCI_STATUS, PCI_STATUS_CAP_LIST);

    // Writable: I/O, memory, bus master and INTx disable; cache line, latency timer, interrupt line.
    this.wmask[PCI_COMMAND] = PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
    this.wmask[PCI_COMMAND + 1] = PCI_COMMAND_INTX_DISABLE >> 8;
    this.wmask[PCI_CACHE_LINE_SIZE] = 0xff;
    this.wmask[PCI_LATENCY_TIMER] = 0xff;
    this.wmask[PCI_INTERRUPT_LINE] = 0xff;
    for (const bar of this.barDefs) {
      const off = PCI_BASE_ADDRESS_0 + 4 * bar.index;
      cfg[off] = bar.kind === "io" ? PCI_BASE_ADDRESS_SPACE_IO : 0; // memory: 32-bit, not prefetchable
      // The address bits below the size read as 0, so writing all ones reads back the size (PCI 3.0 §6.2.5.1).
      writeLE(this.wmask, off, 4, (~(bar.size - 1) & (bar.kind === "io" ? ~0x3 : ~0xf)) >>> 0);
    }

    // Capabilities, each at a dword boundary, chained from 0x40.
    const caps: { build: (at: number) => void; length: number }[] = [];
    const vendorCap = (type: number, region: Region, extra = 0, length = VIRTIO_PCI_CAP_SIZE) => ({
      length,
      build: (at: number) => {
        cfg[at + VIRTIO_PCI_CAP.cap_vndr] = PCI_CAP_ID_VNDR;
        cfg[at + VIRTIO_PCI_CAP.cap_len] = length;
        cfg[at + VIRTIO_PCI_CAP.cfg_type] = type;
        cfg[at + VIRTIO_PCI_CAP.bar] = this.virtioBar.index;
        w32(at + VIRTIO_PCI_CAP.offset, region.offset);
        w32(at + VIRTIO_PCI_CAP.length, region.length);
        if (length > VIRTIO_PCI_CAP_SIZE) w32(at + VIRTIO_PCI_CAP.notify_off_multiplier, extra);
      },
    });
    caps.push(vendorCap(VIRTIO_PCI_CAP_COMMON_CFG, this.common));
    caps.push(
      vendorCap(
        VIRTIO_PCI_CAP_NOTIFY_CFG,
        this.notifyRegion,
        this.notifyOffMultiplier,
        VIRTIO_PCI_NOTIFY_CAP_SIZE,
      ),
    );
    caps.push(vendorCap(VIRTIO_PCI_CAP_ISR_CFG, this.isrRegion));
    if (this.deviceRegion !== null) caps.push(vendorCap(VIRTIO_PCI_CAP_DEVICE_CFG, this.deviceRegion));
    let pciCfg = -1;
    if (this.options.pciCfgCapability !== false) {
      caps.push({
        length: VIRTIO_PCI_CFG_CAP_SIZE,
        build: (at) => {
          pciCfg = at;
          cfg[at + VIRTIO_PCI_CAP.cap_vndr] = PCI_CAP_ID_VNDR;
          cfg[at + VIRTIO_PCI_CAP.cap_len] = VIRTIO_PCI_CFG_CAP_SIZE;
          cfg[at + VIRTIO_PCI_CAP.cfg_type] = VIRTIO_PCI_CAP_PCI_CFG;
          // The driver chooses bar, offset and length, and moves data through pci_cfg_data (§4.1.4.9).
          this.wmask[at + VIRTIO_PCI_CAP.bar] = 0xff;
          for (let i = 0; i < 4; i++) {
            this.wmask[at + VIRTIO_PCI_CAP.offset + i] = 0xff;
            this.wmask[at + VIRTIO_PCI_CAP.length + i] = 0xff;
            this.wmask[at + VIRTIO_PCI_CAP.pci_cfg_data + i] = 0xff;
          }
        },
      });
    }
    let msix = -1;
    if (this.msixBarDef !== null) {
      const bar = this.msixBarDef;
      caps.push({
        length: 12,
        build: (at) => {
          msix = at;
          cfg[at] = PCI_CAP_ID_MSIX;
          w16(at + 2, this.msixVectors - 1);
          w32(at + 4, this.msixTableRegion.offset | bar.index);
          w32(at + 8, this.msixPbaRegion.offset | bar.index);
          this.wmask[at + 3] = (PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL) >> 8;
        },
      });
    }
    let at = 0x40;
    cfg[PCI_CAPABILITY_LIST] = at;
    caps.forEach((cap, i) => {
      cap.build(at);
      const next = align(at + cap.length, 4);
      cfg[at + 1] = i + 1 < caps.length ? next : 0;
      at = next;
    });
    return { pciCfg, msix };
  }

  /** The configuration space as it is now (a copy): what an emulator that keeps its own copy starts from. */
  configSpace(): Uint8Array {
    this.refreshStatus();
    return this.config.slice();
  }

  /** A configuration space read (conventional PCI, 256 bytes: beyond them reads 0). Width 1, 2 or 4. */
  configRead(offset: number, width: number): number {
    if (!this.validAccess(offset, width) || width === 8) return 0;
    if (offset >= PCI_CONFIG_SPACE_SIZE) return 0;
    if (this.touchesPciCfgData(offset, width)) this.pciCfgAccess(false);
    this.refreshStatus();
    return readLE(this.config, offset, Math.min(width, PCI_CONFIG_SPACE_SIZE - offset));
  }

  /** A configuration space write: read-only bits stay as they are. Width 1, 2 or 4. */
  configWrite(offset: number, width: number, value: number): void {
    if (!this.validAccess(offset, width) || width === 8 || offset >= PCI_CONFIG_SPACE_SIZE) return;
    const v = toWidth(value, width);
    const end = Math.min(offset + width, PCI_CONFIG_SPACE_SIZE);
    const oldMsix = this.msixCap >= 0 ? this.config[this.msixCap + 3]! : 0;
    for (let i = offset, x = v; i < end; i++, x = Math.floor(x / 256)) {
      const m = this.wmask[i]!;
      this.config[i] = (this.config[i]! & ~m) | (x & 0xff & m);
    }
    const touches = (start: number, length: number): boolean => offset < start + length && start < end;
    if (this.touchesPciCfgData(offset, width)) this.pciCfgAccess(true);
    if (this.msixCap >= 0 && touches(this.msixCap + 3, 1) && oldMsix !== this.config[this.msixCap + 3]) {
      this.msixControlChanged();
    }
    if (touches(PCI_COMMAND, 2)) this.updateIntx();
    if (touches(PCI_COMMAND, 2) || touches(PCI_BASE_ADDRESS_0, 24)) this.reportBars();
  }

  private get command(): number {
    return readLE(this.config, PCI_COMMAND, 2);
  }

  /** The Interrupt Status bit follows INTx's condition, whether or not INTx is disabled (PCI 3.0 §6.2.3). */
  private refreshStatus(): void {
    const pending = this.isr !== 0 && !this.msixEnabled;
    if (pending) this.config[PCI_STATUS]! |= PCI_STATUS_INTERRUPT;
    else this.config[PCI_STATUS]! &= ~PCI_STATUS_INTERRUPT;
  }

  private validAccess(offset: number, width: number): boolean {
    return Number.isSafeInteger(offset) && offset >= 0 && isWidth(width);
  }

  // ---- BARs ---------------------------------------------------------------------------

  /** The BARs this function has, as the guest programmed them. */
  get bars(): readonly PciBarInfo[] {
    return this.barDefs.map((b) => this.barInfo(b));
  }

  private barInfo(b: BarDef): PciBarInfo {
    const raw = readLE(this.config, PCI_BASE_ADDRESS_0 + 4 * b.index, 4);
    const address = b.kind === "io" ? raw & ~0x3 : raw & ~0xf;
    const enabled = (this.command & (b.kind === "io" ? PCI_COMMAND_IO : PCI_COMMAND_MEMORY)) !== 0;
    return { index: b.index, kind: b.kind, size: b.size, address: address >>> 0, enabled, role: b.role };
  }

  private reportBars(): void {
    const cb = this.options.onBarChange;
    for (const b of this.barDefs) {
      const info = this.barInfo(b);
      const key = `${info.address}:${info.enabled}`;
      if (this.reported.get(b.index) === key) continue;
      this.reported.set(b.index, key);
      cb?.(info);
    }
  }

  /**
   * Which BAR claims an address of I/O or memory space, with the offset in it;
   * null when none does (or its space is disabled in the command register).
   */
  decode(space: "io" | "mem", address: number): { bar: number; offset: number } | null {
    for (const b of this.barDefs) {
      if ((b.kind === "io") !== (space === "io")) continue;
      const info = this.barInfo(b);
      if (info.enabled && address >= info.address && address < info.address + b.size) {
        return { bar: b.index, offset: address - info.address };
      }
    }
    return null;
  }

  /** A read of `width` bytes (1, 2, 4 or 8) at `offset` in BAR `bar`. Width 8 is exact below 2^53. */
  barRead(bar: number, offset: number, width: number): number {
    if (!this.validAccess(offset, width)) return 0;
    if (width === 8) return this.barRead(bar, offset, 4) + this.barRead(bar, offset + 4, 4) * 0x1_0000_0000;
    if (bar === this.virtioBar.index && offset + width <= this.virtioBar.size)
      return this.virtioRead(offset, width);
    if (this.msixBarDef !== null && bar === this.msixBarDef.index) return this.msixRead(offset, width);
    return 0;
  }

  /** A write of `width` bytes (1, 2, 4 or 8; 8 as two 4-byte writes, low first) at `offset` in BAR `bar`. */
  barWrite(bar: number, offset: number, width: number, value: number): void {
    if (!this.validAccess(offset, width)) return;
    const v = toWidth(value, width);
    if (width === 8) {
      this.barWrite(bar, offset, 4, v % 0x1_0000_0000);
      this.barWrite(bar, offset + 4, 4, Math.floor(v / 0x1_0000_0000));
      return;
    }
    if (bar === this.virtioBar.index && offset + width <= this.virtioBar.size)
      this.virtioWrite(offset, width, v);
    else if (this.msixBarDef !== null && bar === this.msixBarDef.index) this.msixWrite(offset, width, v);
  }

  // ---- the virtio structures (§4.1.4) --------------------------------------------------

  private virtioRead(offset: number, width: number): number {
    if (within(offset, width, this.common)) return this.commonRead(offset - this.common.offset, width);
    if (offset === this.isrRegion.offset) return this.readIsr();
    if (this.deviceRegion !== null && within(offset, width, this.deviceRegion)) {
      return this.core.readConfig(offset - this.deviceRegion.offset, width);
    }
    return 0; // notify region, padding, and accesses across structures
  }

  private virtioWrite(offset: number, width: number, value: number): void {
    if (within(offset, width, this.common)) this.commonWrite(offset - this.common.offset, width, value);
    else if (within(offset, width, this.notifyRegion))
      this.notifyWrite(offset - this.notifyRegion.offset, value);
    else if (this.deviceRegion !== null && within(offset, width, this.deviceRegion)) {
      this.core.writeConfig(offset - this.deviceRegion.offset, width, value);
    }
    // The ISR status is read-only; padding ignores writes.
  }

  /** §4.1.4.5: reading the ISR status returns and clears it, and deasserts INTx. */
  private readIsr(): number {
    const v = this.isr;
    this.isr = 0;
    this.updateIntx();
    return v;
  }

  private commonRead(offset: number, width: number): number {
    const dv = this.commonView;
    const core = this.core;
    const q = core.selected;
    dv.setUint32(C.device_feature_select, core.deviceFeatureSelect, true);
    dv.setUint32(C.device_feature, core.deviceFeatureWindow(), true);
    dv.setUint32(C.driver_feature_select, core.driverFeatureSelect, true);
    dv.setUint32(C.driver_feature, core.driverFeatureWindow(), true);
    dv.setUint16(C.config_msix_vector, this.configVector, true);
    dv.setUint16(C.num_queues, core.numQueues, true);
    dv.setUint8(C.device_status, core.status);
    dv.setUint8(C.config_generation, core.configGeneration);
    dv.setUint16(C.queue_select, core.queueSelect, true);
    // A queue_select beyond the queues reads as an unavailable queue: size 0 (§4.1.4.3).
    dv.setUint16(C.queue_size, q?.size ?? 0, true);
    dv.setUint16(C.queue_msix_vector, q?.vector ?? VIRTIO_MSI_NO_VECTOR, true);
    dv.setUint16(C.queue_enable, q?.enabled === true ? 1 : 0, true);
    // Each queue has its own notification address: queue_notify_off is the queue's index.
    dv.setUint16(C.queue_notify_off, q !== undefined ? core.queueSelect : 0, true);
    dv.setUint32(C.queue_desc, q?.descLo ?? 0, true);
    dv.setUint32(C.queue_desc + 4, q?.descHi ?? 0, true);
    dv.setUint32(C.queue_driver, q?.driverLo ?? 0, true);
    dv.setUint32(C.queue_driver + 4, q?.driverHi ?? 0, true);
    dv.setUint32(C.queue_device, q?.deviceLo ?? 0, true);
    dv.setUint32(C.queue_device + 4, q?.deviceHi ?? 0, true);
    // Notification data, queue reset and the admin queue are features this transport does not offer.
    dv.setUint32(C.queue_notif_config_data, 0, true);
    dv.setUint32(C.admin_queue_index, 0, true);
    return readLE(this.commonScratch, offset, width);
  }

  private commonWrite(offset: number, width: number, v: number): void {
    const core = this.core;
    const is = (field: number, w: number): boolean => offset === field && width === w;
    if (is(C.device_feature_select, 4)) core.deviceFeatureSelect = v;
    else if (is(C.driver_feature_select, 4)) core.driverFeatureSelect = v;
    else if (is(C.driver_feature, 4)) core.writeDriverFeatureWindow(v);
    else if (is(C.config_msix_vector, 2)) this.configVector = this.checkVector(v);
    else if (is(C.device_status, 1)) this.writeStatus(v);
    else if (is(C.queue_select, 2)) core.writeQueueSelect(v);
    else if (is(C.queue_size, 2)) core.writeQueueSize(v);
    else if (is(C.queue_msix_vector, 2)) {
      const q = core.selected;
      if (q !== undefined) q.vector = this.checkVector(v);
    } else if (is(C.queue_enable, 2)) {
      // §4.1.4.3.2: the driver must not write 0; without queue_reset there is nothing to disable.
      if (v === 1) core.enableQueue();
    } else if (is(C.queue_desc, 4)) core.writeQueueAddress("desc", false, v);
    else if (is(C.queue_desc + 4, 4)) core.writeQueueAddress("desc", true, v);
    else if (is(C.queue_driver, 4)) core.writeQueueAddress("driver", false, v);
    else if (is(C.queue_driver + 4, 4)) core.writeQueueAddress("driver", true, v);
    else if (is(C.queue_device, 4)) core.writeQueueAddress("device", false, v);
    else if (is(C.queue_device + 4, 4)) core.writeQueueAddress("device", true, v);
    // Everything else is read-only, or a field of a feature not offered (queue_reset).
  }

  private writeStatus(v: number): void {
    const resetting = (v & 0xff) === 0;
    this.core.writeStatus(v);
    if (resetting) {
      // §4.1.4.3.2 / §2.4: the reset also clears the ISR and forgets the vectors.
      this.isr = 0;
      this.configVector = VIRTIO_MSI_NO_VECTOR;
      this.updateIntx();
    }
  }

  /**
   * §4.1.5.1.2: a vector the MSI-X table does not have (or any vector without
   * MSI-X) reads back as NO_VECTOR, which is how the driver learns it was refused.
   */
  private checkVector(v: number): number {
    const vector = v & 0xffff;
    return vector < this.msixVectors ? vector : VIRTIO_MSI_NO_VECTOR;
  }

  /**
   * §4.1.4.4: the queue is the write's offset divided by the multiplier (the
   * value written is the queue index, which a multiplier of 0 relies on).
   */
  private notifyWrite(offset: number, value: number): void {
    const mult = this.notifyOffMultiplier;
    if (mult === 0) {
      this.core.notify(value & 0xffff);
    } else if (offset % mult === 0) {
      this.core.notify(offset / mult);
    }
  }

  // ---- the PCI configuration access window (§4.1.4.9) ----------------------------------

  private touchesPciCfgData(offset: number, width: number): boolean {
    if (this.pciCfgCap < 0) return false;
    const start = this.pciCfgCap + VIRTIO_PCI_CAP.pci_cfg_data;
    return offset < start + 4 && start < offset + width;
  }

  /**
   * §4.1.4.9.1: an access to pci_cfg_data is an access of cap.length bytes at
   * cap.offset in BAR cap.bar; a length other than 1, 2 or 4, or an offset not
   * aligned to it, is ignored.
   */
  private pciCfgAccess(write: boolean): void {
    const at = this.pciCfgCap;
    const bar = this.config[at + VIRTIO_PCI_CAP.bar]!;
    const offset = readLE(this.config, at + VIRTIO_PCI_CAP.offset, 4);
    const length = readLE(this.config, at + VIRTIO_PCI_CAP.length, 4);
    if ((length !== 1 && length !== 2 && length !== 4) || offset % length !== 0) return;
    const data = at + VIRTIO_PCI_CAP.pci_cfg_data;
    if (write) this.barWrite(bar, offset, length, readLE(this.config, data, length));
    else writeLE(this.config, data, length, this.barRead(bar, offset, length));
  }

  // ---- interrupts: INTx (§4.1.4.5) and MSI-X (§4.1.5.1.2) -----------------------------

  private get msixEnabled(): boolean {
    return this.msixCap >= 0 && (this.config[this.msixCap + 3]! & (PCI_MSIX_FLAGS_ENABLE >> 8)) !== 0;
  }

  private get msixFunctionMasked(): boolean {
    return (this.config[this.msixCap + 3]! & (PCI_MSIX_FLAGS_MASKALL >> 8)) !== 0;
  }

  /** The level INTA# should have: the ISR has bits, MSI-X is off and INTx is not disabled. */
  private intxLevel(): boolean {
    return this.isr !== 0 && !this.msixEnabled && (this.command & PCI_COMMAND_INTX_DISABLE) === 0;
  }

  private updateIntx(): void {
    const level = this.intxLevel();
    if (level === this.line) return;
    this.line = level;
    this.options.irq?.(level);
  }

  private signalQueue(index: number): void {
    if (this.msixEnabled) {
      this.msixSignal(this.core.queues[index]?.vector ?? VIRTIO_MSI_NO_VECTOR);
    } else {
      this.isr |= VIRTIO_PCI_ISR_QUEUE;
      this.updateIntx();
    }
  }

  private signalConfig(): void {
    // §4.1.4.5.1: the configuration bit is set before any configuration change notification.
    this.isr |= VIRTIO_PCI_ISR_CONFIG;
    if (this.msixEnabled) this.msixSignal(this.configVector);
    else this.updateIntx();
  }

  private entryMasked(vector: number): boolean {
    return (this.msixTable[vector * PCI_MSIX_ENTRY_SIZE + 12]! & PCI_MSIX_ENTRY_CTRL_MASKBIT) !== 0;
  }

  /** A message for `vector`; NO_VECTOR sends none (§4.1.5.1.2.1); a masked vector waits in the PBA. */
  private msixSignal(vector: number): void {
    if (vector >= this.msixVectors) return;
    if (this.msixFunctionMasked || this.entryMasked(vector)) {
      this.msixPba[vector >> 3]! |= 1 << (vector & 7);
      return;
    }
    this.msixDeliver(vector);
  }

  private msixDeliver(vector: number): void {
    const e = vector * PCI_MSIX_ENTRY_SIZE;
    const address = readLE(this.msixTable, e, 8);
    const data = readLE(this.msixTable, e + 8, 4);
    this.options.msi?.(address, data);
  }

  /** Sends the pending messages of vectors that are now unmasked (PCI 3.0 §6.8.3.4). */
  private msixFlushPending(): void {
    if (!this.msixEnabled || this.msixFunctionMasked) return;
    for (let v = 0; v < this.msixVectors; v++) {
      const byte = v >> 3;
      const b = 1 << (v & 7);
      if ((this.msixPba[byte]! & b) !== 0 && !this.entryMasked(v)) {
        this.msixPba[byte]! &= ~b;
        this.msixDeliver(v);
      }
    }
  }

  private msixControlChanged(): void {
    this.updateIntx();
    this.msixFlushPending();
  }

  private maskAllVectors(): void {
    // Every entry starts masked (PCI 3.0 §6.8.2.9).
    for (let v = 0; v < this.msixVectors; v++) this.msixTable[v * PCI_MSIX_ENTRY_SIZE + 12] = 1;
  }

  private msixRead(offset: number, width: number): number {
    if (within(offset, width, this.msixTableRegion)) return readLE(this.msixTable, offset, width);
    if (within(offset, width, this.msixPbaRegion))
      return readLE(this.msixPba, offset - this.msixPbaRegion.offset, width);
    return 0;
  }

  private msixWrite(offset: number, width: number, value: number): void {
    // Table entries are written a dword (or a qword split in two) at a time (PCI 3.0 §6.8.2); the PBA is read-only.
    if (width !== 4 || offset % 4 !== 0 || !within(offset, width, this.msixTableRegion)) return;
    writeLE(this.msixTable, offset, 4, value);
    if (offset % PCI_MSIX_ENTRY_SIZE === 12) this.msixFlushPending();
  }

  // ---- the device's side -------------------------------------------------------------------

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

  /** Whether INTA# is asserted now. */
  get irqLevel(): boolean {
    return this.line;
  }

  /**
   * A platform reset (machine reset, PCI reset): the configuration space, the
   * MSI-X table and the device all return to their power-on state.
   */
  reset(): void {
    this.core.reset();
    this.config.set(this.initialConfig);
    this.msixTable.fill(0);
    this.msixPba.fill(0);
    this.maskAllVectors();
    this.isr = 0;
    this.configVector = VIRTIO_MSI_NO_VECTOR;
    this.updateIntx();
    this.reportBars();
  }

  // ---- snapshots ------------------------------------------------------------------------------

  /** The transport's registers (not the device's state) as bytes. */
  saveState(): Uint8Array {
    return encodeSnapshot({
      format: "virtio-pci-transport",
      version: 1,
      core: this.core.saveState(),
      config: toHex(this.config),
      msixTable: toHex(this.msixTable),
      msixPba: toHex(this.msixPba),
      isr: this.isr,
      configVector: this.configVector,
    });
  }

  /**
   * Puts back registers saved by saveState() of a transport made with the same
   * options, then drives INTA# to the level they imply. The device is not
   * touched. Throws ERR_INVALID_SNAPSHOT (changing nothing) for bytes that do not fit.
   */
  restoreState(bytes: Uint8Array): void {
    const doc = decodeSnapshot(bytes, "virtio-pci-transport");
    const config = fromHex(doc["config"], PCI_CONFIG_SPACE_SIZE);
    const table = fromHex(doc["msixTable"], this.msixTable.length);
    const pba = fromHex(doc["msixPba"], this.msixPba.length);
    const isr = doc["isr"];
    const vector = doc["configVector"];
    const fits =
      config !== null &&
      table !== null &&
      pba !== null &&
      typeof isr === "number" &&
      Number.isInteger(isr) &&
      isr >= 0 &&
      isr <= 3 &&
      typeof vector === "number" &&
      Number.isInteger(vector) &&
      vector >= 0 &&
      vector <= 0xffff &&
      // Read-only bytes (identity, capabilities, BAR types) must be this transport's.
      config.every(
        (b, i) => (b & ~this.wmask[i]!) === (this.initialConfig[i]! & ~this.wmask[i]!) || i === PCI_STATUS,
      );
    if (!fits)
      throw new VirtioSndError("ERR_INVALID_SNAPSHOT", "virtio-pci snapshot does not fit this transport");
    this.core.restoreState(doc["core"]);
    this.config.set(config);
    this.msixTable.set(table);
    this.msixPba.set(pba);
    this.isr = isr;
    this.configVector = vector;
    // Call back whatever the level: the emulator's interrupt controller learns it.
    this.line = !this.intxLevel();
    this.updateIntx();
    this.reported.clear();
    this.reportBars();
  }
}
