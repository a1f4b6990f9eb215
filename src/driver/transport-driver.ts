/**
 * The guest's side of a virtio transport, for the test guest: what Linux's
 * virtio_pci_modern and virtio_mmio drivers do with the registers during probe
 * (§3.1.1) and afterwards (notifications, interrupt handling). SimulatedGuest
 * talks to the device through one of these, so the same driver model runs
 * directly against the device API or through the register paths.
 */
import { VirtioSndError } from "../errors.js";
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_MMIO as R,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_MAGIC_VALUE,
  VIRTIO_MMIO_VERSION,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_CAP,
  VIRTIO_PCI_CAP_COMMON_CFG,
  VIRTIO_PCI_CAP_DEVICE_CFG,
  VIRTIO_PCI_CAP_ISR_CFG,
  VIRTIO_PCI_CAP_NOTIFY_CFG,
  VIRTIO_PCI_COMMON_CFG as C,
  VIRTIO_PCI_ISR_CONFIG,
  VIRTIO_PCI_ISR_QUEUE,
  VIRTIO_PCI_MODERN_DEVICE_ID_BASE,
  VIRTIO_PCI_VENDOR_ID,
} from "../spec/constants.js";
import type { VirtioMmioTransport } from "../transport/mmio.js";
import {
  PCI_BASE_ADDRESS_0,
  PCI_CAPABILITY_LIST,
  PCI_CAP_ID_MSIX,
  PCI_CAP_ID_VNDR,
  PCI_COMMAND,
  PCI_COMMAND_IO,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  PCI_DEVICE_ID,
  PCI_MSIX_ENTRY_SIZE,
  PCI_MSIX_FLAGS_ENABLE,
  PCI_MSIX_FLAGS_MASKALL,
  PCI_STATUS,
  PCI_STATUS_CAP_LIST,
  PCI_VENDOR_ID,
  type VirtioPciTransport,
} from "../transport/pci.js";
import type { QueueLayout } from "../virtqueue/virtqueue.js";

/** How the test guest reaches the device. */
export interface DeviceLink {
  /**
   * §3.1.1 steps 1–6: reset, ACKNOWLEDGE, DRIVER, read the offer, write the
   * driver's features, FEATURES_OK and read it back. Returns whether the device
   * accepted the features.
   */
  negotiate(features: bigint): boolean;
  /** The largest size queue `index` takes; 0 when it does not exist. */
  queueSizeMax(index: number): number;
  /** §3.1.1 step 7: one queue's size and addresses, and enable it. */
  setupQueue(index: number, layout: QueueLayout): void;
  /** §3.1.1 step 8. */
  driverOk(): void;
  /** An available buffer notification. */
  notify(index: number): void;
  readConfig(offset: number, length: number): Uint8Array;
  /** The device status register. */
  status(): number;
}

/** What a transport link tells the guest's interrupt handlers. */
export interface LinkHandlers {
  /** A used buffer notification for queue `index`, or for some queue (`null`: INTx does not say which). */
  readonly queue: (index: number | null) => void;
  /** A configuration change notification. */
  readonly config: () => void;
}

const fail = (message: string): never => {
  throw new VirtioSndError("ERR_INVALID_STATE", message);
};

/** How the guest reaches a PCI function: its configuration space, and I/O and memory space. */
export interface PciBus {
  configRead(offset: number, width: number): number;
  configWrite(offset: number, width: number, value: number): void;
  read(space: "io" | "mem", address: number, width: number): number;
  write(space: "io" | "mem", address: number, width: number, value: number): void;
}

/** A bus with only this transport on it: addresses decode through the BARs the guest programmed. */
export function transportBus(pci: VirtioPciTransport): PciBus {
  return {
    configRead: (offset, width) => pci.configRead(offset, width),
    configWrite: (offset, width, value) => pci.configWrite(offset, width, value),
    read: (space, address, width) => {
      const hit = pci.decode(space, address);
      // A read nothing claims: all ones, as on a real bus.
      return hit === null ? 2 ** (8 * width) - 1 : pci.barRead(hit.bar, hit.offset, width);
    },
    write: (space, address, width, value) => {
      const hit = pci.decode(space, address);
      if (hit !== null) pci.barWrite(hit.bar, hit.offset, width, value);
    },
  };
}

/** Where the guest's firmware places BARs: an I/O window and a memory window, clear of the test guest's RAM. */
const IO_WINDOW = 0xc000;
const MEM_WINDOW = 0xfe00_0000;
/** An x86 MSI address (the local APIC's window); the data is the vector number. */
const MSI_ADDRESS = 0xfee0_0000;

interface Structure {
  space: "io" | "mem";
  base: number;
  length: number;
}

/**
 * virtio_pci_modern's probe and run-time register accesses over a PCI bus
 * (a VirtioPciTransport through transportBus(), or an emulator's own ports):
 * optionally firmware sizing and assigning the BARs, the capability walk, feature negotiation, queue setup with MSI-X vectors or INTx, notifications
 * at queue_notify_off × notify_off_multiplier, and the INTx handler that reads
 * (and so clears) the ISR.
 */
export class PciGuestDriver implements DeviceLink {
  private readonly common: Structure;
  private readonly notifyBase: Structure;
  private readonly notifyMultiplier: number;
  private readonly isr: Structure;
  private readonly deviceCfg: Structure | null;
  private readonly msixCap: number;
  private msixTable: Structure | null = null;
  /** Whether MSI-X vectors are in use (config vector 0, queue i on vector i + 1). */
  readonly usesMsix: boolean;
  private inIrq = false;
  private irqAgain = false;

  /**
   * `firmware` (default true): size the BARs and give them addresses, as
   * firmware does; false keeps the addresses a real firmware gave them.
   */
  constructor(
    private readonly bus: PciBus,
    private readonly handlers: LinkHandlers,
    opts: { msix?: boolean; firmware?: boolean } = {},
  ) {
    const pci = bus;
    const cfg8 = (o: number): number => pci.configRead(o, 1);
    const cfg16 = (o: number): number => pci.configRead(o, 2);
    const cfg32 = (o: number): number => pci.configRead(o, 4);
    if (cfg16(PCI_VENDOR_ID) !== VIRTIO_PCI_VENDOR_ID) fail("not a virtio PCI function");
    const deviceId = cfg16(PCI_DEVICE_ID);
    if (deviceId < VIRTIO_PCI_MODERN_DEVICE_ID_BASE || deviceId > 0x107f)
      fail(`PCI device ${deviceId} is not modern virtio`);
    if ((cfg16(PCI_STATUS) & PCI_STATUS_CAP_LIST) === 0) fail("no capability list");

    // Firmware: size every BAR, give it an address, enable decoding and bus mastering.
    let io = IO_WINDOW;
    let mem = MEM_WINDOW;
    const barBase: number[] = [];
    const barSpace: ("io" | "mem")[] = [];
    for (let i = 0; i < 6; i++) {
      const off = PCI_BASE_ADDRESS_0 + 4 * i;
      const original = cfg32(off);
      const type = original & 1;
      pci.configWrite(off, 4, 0xffff_ffff);
      const mask = cfg32(off);
      if (mask === 0) continue;
      const size = (~(mask & (type === 1 ? ~0x3 : ~0xf)) + 1) >>> 0;
      let base = (original & (type === 1 ? ~0x3 : ~0xf)) >>> 0;
      if (opts.firmware !== false) {
        base = type === 1 ? Math.ceil(io / size) * size : Math.ceil(mem / size) * size;
        if (type === 1) io = base + size;
        else mem = base + size;
      }
      pci.configWrite(off, 4, base | type);
      barBase[i] = base;
      barSpace[i] = type === 1 ? "io" : "mem";
    }
    pci.configWrite(PCI_COMMAND, 2, PCI_COMMAND_IO | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER);

    // virtio_pci_find_capability: the first vendor capability of each type whose BAR exists.
    const found = new Map<number, Structure & { extra: number }>();
    let msixCap = -1;
    const seen = new Set<number>();
    for (let at = cfg8(PCI_CAPABILITY_LIST) & ~3; at !== 0; at = cfg8(at + 1) & ~3) {
      if (seen.has(at)) fail("capability list loops");
      seen.add(at);
      const id = cfg8(at);
      if (id === PCI_CAP_ID_MSIX) msixCap = at;
      if (id !== PCI_CAP_ID_VNDR) continue;
      const type = cfg8(at + VIRTIO_PCI_CAP.cfg_type);
      const bar = cfg8(at + VIRTIO_PCI_CAP.bar);
      if (found.has(type) || barBase[bar] === undefined) continue;
      found.set(type, {
        space: barSpace[bar]!,
        base: barBase[bar]! + cfg32(at + VIRTIO_PCI_CAP.offset),
        length: cfg32(at + VIRTIO_PCI_CAP.length),
        extra: cfg8(at + VIRTIO_PCI_CAP.cap_len) >= 20 ? cfg32(at + VIRTIO_PCI_CAP.notify_off_multiplier) : 0,
      });
    }
    const need = (type: number, what: string): Structure & { extra: number } =>
      found.get(type) ?? fail(`no ${what} capability`);
    this.common = need(VIRTIO_PCI_CAP_COMMON_CFG, "common configuration");
    const notify = need(VIRTIO_PCI_CAP_NOTIFY_CFG, "notification");
    this.notifyBase = notify;
    this.notifyMultiplier = notify.extra;
    this.isr = need(VIRTIO_PCI_CAP_ISR_CFG, "ISR");
    this.deviceCfg = found.get(VIRTIO_PCI_CAP_DEVICE_CFG) ?? null;
    if (this.common.length < C.queue_device + 8) fail("common configuration too short");
    this.msixCap = msixCap;

    this.usesMsix = opts.msix === true && msixCap >= 0;
    if (this.usesMsix) {
      // pci_alloc_irq_vectors: the table is programmed with all vectors masked, then MSI-X enabled.
      const tableReg = cfg32(msixCap + 4);
      const bar = tableReg & 7;
      const base = barBase[bar] ?? fail("MSI-X table BAR missing");
      this.msixTable = { space: barSpace[bar]!, base: base + (tableReg & ~7), length: 0 };
      const vectors = (cfg16(msixCap + 2) & 0x7ff) + 1;
      pci.configWrite(msixCap + 2, 2, PCI_MSIX_FLAGS_ENABLE | PCI_MSIX_FLAGS_MASKALL);
      for (let v = 0; v < vectors; v++) {
        const e = this.msixTable.base + v * PCI_MSIX_ENTRY_SIZE;
        this.busWrite("mem", e, 4, MSI_ADDRESS);
        this.busWrite("mem", e + 4, 4, 0);
        this.busWrite("mem", e + 8, 4, v);
        this.busWrite("mem", e + 12, 4, 0); // unmasked
      }
      pci.configWrite(msixCap + 2, 2, PCI_MSIX_FLAGS_ENABLE);
    }
  }

  private busRead(space: "io" | "mem", addr: number, width: number): number {
    return this.bus.read(space, addr, width);
  }

  private busWrite(space: "io" | "mem", addr: number, width: number, value: number): void {
    this.bus.write(space, addr, width, value);
  }

  private read(s: Structure, off: number, width: number): number {
    return this.busRead(s.space, s.base + off, width);
  }

  private write(s: Structure, off: number, width: number, value: number): void {
    this.busWrite(s.space, s.base + off, width, value);
  }

  /** The MSI-X message the transport sent: vector 0 is the configuration's, vector i + 1 queue i's. */
  onMsi(address: number, data: number): void {
    if (address !== MSI_ADDRESS) return;
    if (data === 0) this.handlers.config();
    else this.handlers.queue(data - 1);
  }

  /** vp_interrupt: on INTA# the handler reads the ISR, which clears it and deasserts the line. */
  onIrq(level: boolean): void {
    if (!level || this.usesMsix) return;
    if (this.inIrq) {
      // Raised again while the handler runs: it loops instead of nesting, as a level-triggered line does.
      this.irqAgain = true;
      return;
    }
    this.inIrq = true;
    try {
      do {
        this.irqAgain = false;
        const isr = this.read(this.isr, 0, 1);
        if ((isr & VIRTIO_PCI_ISR_CONFIG) !== 0) this.handlers.config();
        if ((isr & VIRTIO_PCI_ISR_QUEUE) !== 0) this.handlers.queue(null);
      } while (this.irqAgain);
    } finally {
      this.inIrq = false;
    }
  }

  status(): number {
    return this.read(this.common, C.device_status, 1);
  }

  private setStatus(bits: number): void {
    this.write(this.common, C.device_status, 1, bits);
  }

  negotiate(features: bigint): boolean {
    // vp_reset: write 0, wait until it reads 0.
    this.setStatus(0);
    if (this.status() !== 0) fail("device did not reset");
    this.setStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE);
    this.setStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    let offered = 0n;
    for (let sel = 0; sel < 2; sel++) {
      this.write(this.common, C.device_feature_select, 4, sel);
      offered |= BigInt(this.read(this.common, C.device_feature, 4)) << BigInt(32 * sel);
    }
    const wanted = features & offered;
    for (let sel = 0; sel < 2; sel++) {
      this.write(this.common, C.driver_feature_select, 4, sel);
      this.write(this.common, C.driver_feature, 4, Number(BigInt.asUintN(32, wanted >> BigInt(32 * sel))));
    }
    if (wanted !== features) return false;
    this.setStatus(VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK);
    const accepted = (this.status() & VIRTIO_CONFIG_S_FEATURES_OK) !== 0;
    if (accepted && this.usesMsix) {
      this.write(this.common, C.config_msix_vector, 2, 0);
      if (this.read(this.common, C.config_msix_vector, 2) === VIRTIO_MSI_NO_VECTOR)
        fail("config vector refused");
    }
    return accepted;
  }

  queueSizeMax(index: number): number {
    if (index >= this.read(this.common, C.num_queues, 2)) return 0;
    this.write(this.common, C.queue_select, 2, index);
    if (this.read(this.common, C.queue_enable, 2) !== 0) fail(`queue ${index} already enabled`);
    return this.read(this.common, C.queue_size, 2);
  }

  setupQueue(index: number, layout: QueueLayout): void {
    if (this.queueSizeMax(index) === 0) fail(`queue ${index} unavailable`);
    this.write(this.common, C.queue_size, 2, layout.size);
    if (this.read(this.common, C.queue_size, 2) !== layout.size)
      fail(`queue ${index} size ${layout.size} refused`);
    const split = (off: number, addr: number): void => {
      this.write(this.common, off, 4, addr % 0x1_0000_0000);
      this.write(this.common, off + 4, 4, Math.floor(addr / 0x1_0000_0000));
    };
    split(C.queue_desc, layout.descAddr);
    split(C.queue_driver, layout.driverAddr);
    split(C.queue_device, layout.deviceAddr);
    if (this.usesMsix) {
      this.write(this.common, C.queue_msix_vector, 2, index + 1);
      if (this.read(this.common, C.queue_msix_vector, 2) !== index + 1) fail(`queue ${index} vector refused`);
    }
    this.write(this.common, C.queue_enable, 2, 1);
    if (this.read(this.common, C.queue_enable, 2) !== 1) fail(`queue ${index} not enabled`);
  }

  driverOk(): void {
    this.setStatus(this.status() | VIRTIO_CONFIG_S_DRIVER_OK);
  }

  notify(index: number): void {
    this.write(this.common, C.queue_select, 2, index);
    const off = this.read(this.common, C.queue_notify_off, 2) * this.notifyMultiplier;
    if (off + 2 > this.notifyBase.length) fail(`queue ${index} notification address outside the capability`);
    this.write(this.notifyBase, off, 2, index);
  }

  readConfig(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    const cfg = this.deviceCfg;
    if (cfg === null) return out;
    // virtio_cread: read until the generation is stable around the bytes.
    for (;;) {
      const before = this.read(this.common, C.config_generation, 1);
      for (let i = 0; i < length; i++) out[i] = i + offset < cfg.length ? this.read(cfg, offset + i, 1) : 0;
      if (this.read(this.common, C.config_generation, 1) === before) return out;
    }
  }

  /** The MSI-X capability's offset in configuration space, or -1. */
  get msixCapability(): number {
    return this.msixCap;
  }
}

/**
 * virtio_mmio's probe and run-time register accesses over a VirtioMmioTransport:
 * magic and version checks, feature negotiation, QueueNumMax/QueueNum/addresses/
 * QueueReady per queue, QueueNotify, and the handler that reads InterruptStatus
 * and acknowledges it.
 */
export class MmioGuestDriver implements DeviceLink {
  private inIrq = false;
  private irqAgain = false;

  constructor(
    private readonly mmio: VirtioMmioTransport,
    private readonly handlers: LinkHandlers,
  ) {
    if (mmio.read(R.MagicValue, 4) !== VIRTIO_MMIO_MAGIC_VALUE) fail("bad virtio-mmio magic");
    if (mmio.read(R.Version, 4) !== VIRTIO_MMIO_VERSION) fail("not a version 2 virtio-mmio device");
    if (mmio.read(R.DeviceID, 4) === 0) fail("no device behind the virtio-mmio window");
  }

  /** vm_interrupt: read InterruptStatus, acknowledge what was read, dispatch. */
  onIrq(level: boolean): void {
    if (!level) return;
    if (this.inIrq) {
      this.irqAgain = true;
      return;
    }
    this.inIrq = true;
    try {
      do {
        this.irqAgain = false;
        const status = this.mmio.read(R.InterruptStatus, 4);
        this.mmio.write(R.InterruptACK, 4, status);
        if ((status & VIRTIO_MMIO_INT_CONFIG) !== 0) this.handlers.config();
        if ((status & VIRTIO_MMIO_INT_VRING) !== 0) this.handlers.queue(null);
      } while (this.irqAgain);
    } finally {
      this.inIrq = false;
    }
  }

  status(): number {
    return this.mmio.read(R.Status, 4);
  }

  negotiate(features: bigint): boolean {
    this.mmio.write(R.Status, 4, 0);
    if (this.status() !== 0) fail("device did not reset");
    this.mmio.write(R.Status, 4, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    this.mmio.write(R.Status, 4, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    let offered = 0n;
    for (let sel = 0; sel < 2; sel++) {
      this.mmio.write(R.DeviceFeaturesSel, 4, sel);
      offered |= BigInt(this.mmio.read(R.DeviceFeatures, 4)) << BigInt(32 * sel);
    }
    const wanted = features & offered;
    for (let sel = 0; sel < 2; sel++) {
      this.mmio.write(R.DriverFeaturesSel, 4, sel);
      this.mmio.write(R.DriverFeatures, 4, Number(BigInt.asUintN(32, wanted >> BigInt(32 * sel))));
    }
    if (wanted !== features) return false;
    this.mmio.write(
      R.Status,
      4,
      VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
    );
    return (this.status() & VIRTIO_CONFIG_S_FEATURES_OK) !== 0;
  }

  queueSizeMax(index: number): number {
    this.mmio.write(R.QueueSel, 4, index);
    if (this.mmio.read(R.QueueReady, 4) !== 0) fail(`queue ${index} already ready`);
    return this.mmio.read(R.QueueNumMax, 4);
  }

  setupQueue(index: number, layout: QueueLayout): void {
    if (this.queueSizeMax(index) === 0) fail(`queue ${index} unavailable`);
    this.mmio.write(R.QueueNum, 4, layout.size);
    const split = (low: number, addr: number): void => {
      this.mmio.write(low, 4, addr % 0x1_0000_0000);
      this.mmio.write(low + 4, 4, Math.floor(addr / 0x1_0000_0000));
    };
    split(R.QueueDescLow, layout.descAddr);
    split(R.QueueDriverLow, layout.driverAddr);
    split(R.QueueDeviceLow, layout.deviceAddr);
    this.mmio.write(R.QueueReady, 4, 1);
    if (this.mmio.read(R.QueueReady, 4) !== 1) fail(`queue ${index} not ready`);
  }

  driverOk(): void {
    this.mmio.write(R.Status, 4, this.status() | VIRTIO_CONFIG_S_DRIVER_OK);
  }

  notify(index: number): void {
    this.mmio.write(R.QueueNotify, 4, index);
  }

  readConfig(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (;;) {
      const before = this.mmio.read(R.ConfigGeneration, 4);
      for (let i = 0; i < length; i++) out[i] = this.mmio.read(R.Config + offset + i, 1);
      if (this.mmio.read(R.ConfigGeneration, 4) === before) return out;
    }
  }
}
