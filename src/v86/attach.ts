import type { AudioBackend } from "../audio/backend.js";
import type { Clock } from "../audio/clock.js";
import type { SoundConfig } from "../device/config.js";
import { VirtioSound, type VirtioSoundOptions } from "../device/virtio-sound.js";
import { VirtioSndError } from "../errors.js";
import {
  PCI_BASE_ADDRESS_0,
  PCI_BASE_ADDRESS_SPACE_IO,
  PCI_INTERRUPT_LINE,
  VirtioPciTransport,
} from "../transport/pci.js";
import { V86GuestMemory } from "./memory.js";
import type { V86Cpu, V86Emulator, V86IoPortEntry, V86PciDevice } from "./types.js";

export interface AttachToV86Options {
  readonly backend: AudioBackend;
  readonly clock: Clock;
  /** Streams, jacks and channel maps; DEFAULT_CONFIG when absent. */
  readonly config?: SoundConfig;
  /** PCI device number (1..31); default a free one from 13 whose interrupt no other device shares. */
  readonly pciSlot?: number;
  /** Offer VIRTIO_F_RING_PACKED (default true). */
  readonly packed?: boolean;
  readonly onStreamEvent?: VirtioSoundOptions["onStreamEvent"];
  readonly onControlChange?: VirtioSoundOptions["onControlChange"];
  readonly recorder?: VirtioSoundOptions["recorder"];
  /** The device set DEVICE_NEEDS_RESET, with why (for logs). */
  readonly onNeedsReset?: (error: Error) => void;
  /**
   * The I/O port the BAR starts at until the firmware moves it; default a free
   * block from 0x8000. Keep it outside SeaBIOS's I/O window (0xc000 and up):
   * v86 clears a BAR's old ports when it moves, and must not clear another's.
   */
  readonly ioPort?: number;
  /** The name in v86's PCI logs (default "virtio-snd"). */
  readonly name?: string;
}

/** A sound card attached to a v86 emulator. */
export interface V86Sound {
  readonly device: VirtioSound;
  readonly transport: VirtioPciTransport;
  readonly memory: V86GuestMemory;
  /** v86's id of the PCI function: device number << 3. */
  readonly pciId: number;
  /**
   * Takes the card off v86's PCI bus and I/O ports, resets the device (its
   * streams stop) and undoes the reset hook. The guest must not be using it.
   */
  detach(): void;
  /**
   * The card's state: the transport's registers, the device's own snapshot
   * and the guest's clock. Save it in the same tick as v86's save_state()
   * (the emulator stopped, before or after it), and restore it after v86's
   * restore_state(), before the emulator runs (ERR_INVALID_SNAPSHOT for bytes
   * that are not such a state). The guest's clock ran on between the two
   * calls of each pair: the restored streams start that far into their
   * schedule, so the guest finds its audio where its clock expects it.
   */
  saveState(): Uint8Array;
  restoreState(bytes: Uint8Array): void;
}

/**
 * "VSND" then "V86\0": the container of saveState(). Version 2: magic, u32
 * version, f64 guest time at the save and f64 guest time when the emulator
 * stopped (ns; NaN when unknown or running), u32 length + transport state,
 * u32 length + device state. Version 1 lacks the two times.
 */
const MAGIC = [0x56, 0x53, 0x4e, 0x44, 0x56, 0x38, 0x36, 0x00];
const SNAPSHOT_VERSION = 2;
const TIMES_BYTES = 16;
/** v86's time-stamp counter counts 10^6 per millisecond of its clock (TSC_RATE): one per ns. */
const TSC_PER_NS = 1;
/** A restore trusts no more than this much elapsed guest time (10 s): more means the states are not a pair. */
const MAX_ELAPSED_NS = 10_000_000_000;

/**
 * The guest's clock in ns: its time-stamp counter, which v86 saves and
 * restores with the machine (its timers and the kernel's clock follow it).
 * null when this v86 does not expose it.
 */
function guestNs(cpu: V86Cpu): number | null {
  const tsc = cpu.current_tsc;
  if (typeof cpu.store_current_tsc !== "function" || tsc === undefined || tsc.length !== 2) return null;
  cpu.store_current_tsc();
  const ns = ((tsc[1]! >>> 0) * 2 ** 32 + (tsc[0]! >>> 0)) / TSC_PER_NS;
  return Number.isFinite(ns) ? ns : null;
}

const U64 = 1n << 64n;

/**
 * Sets the guest's clock to `ns` (to within a millisecond); false when this
 * v86 cannot. v86 0.5's set_tsc(v) does not make the counter read v: it keeps
 * the offset it had (the counter reads v + now - what it read before, as
 * restore_state()'s own call finds it on a fresh emulator). So the value
 * passed is worked out from a reading just before, and the result checked.
 */
function setGuestNs(cpu: V86Cpu, ns: number): boolean {
  if (typeof cpu.set_tsc !== "function" || !Number.isFinite(ns) || ns < 0) return false;
  const target = Math.round(ns * TSC_PER_NS);
  if (!Number.isSafeInteger(target)) return false;
  for (let attempt = 0; attempt < 3; attempt++) {
    const before = guestNs(cpu);
    if (before === null) return false;
    // v86's clock in TSC ticks (its microtick is performance.now()).
    const host = BigInt(Math.round(performance.now() * 1e6 * TSC_PER_NS));
    const v = (((BigInt(target) - host + BigInt(Math.round(before * TSC_PER_NS))) % U64) + U64) % U64;
    cpu.set_tsc(Number(v & 0xffff_ffffn), Number(v >> 32n));
    const after = guestNs(cpu);
    if (after !== null && Math.abs(after - ns) < 1_000_000) return true;
  }
  return false;
}

/** The emulator's CPU, once v86 has loaded (the `emulator-loaded` event). */
function cpuOf(emulator: V86Emulator): V86Cpu {
  const cpu = emulator?.v86?.cpu;
  if (
    cpu === undefined ||
    typeof cpu.devices?.pci?.register_device !== "function" ||
    typeof cpu.io?.register_read !== "function" ||
    typeof cpu.jit_dirty_cache !== "function"
  ) {
    throw new VirtioSndError(
      "ERR_INVALID_STATE",
      "not a loaded v86 emulator: create it with autostart: false and attach on emulator-loaded",
    );
  }
  return cpu;
}

/** Resolves once `emulator` has loaded (at once if it has): the moment to attach, before it runs. */
export function whenV86Loaded(emulator: V86Emulator): Promise<void> {
  try {
    cpuOf(emulator);
    return Promise.resolve();
  } catch {
    // Not loaded yet: wait for it.
  }
  if (typeof emulator?.add_listener !== "function") {
    return Promise.reject(
      new VirtioSndError("ERR_INVALID_STATE", "not a v86 emulator: it has no add_listener"),
    );
  }
  return new Promise((resolve) => {
    const listener = (): void => {
      emulator.remove_listener?.("emulator-loaded", listener);
      resolve();
    };
    emulator.add_listener?.("emulator-loaded", listener);
  });
}

function isFree(entry: V86IoPortEntry | undefined, empty: V86IoPortEntry): boolean {
  return entry !== undefined && entry.read8 === empty.read8 && entry.write8 === empty.write8;
}

/**
 * Puts a virtio sound card on a v86 emulator's PCI bus: virtio-pci modern with
 * its structures in an I/O BAR and INTx, as v86's own virtio devices are (v86
 * has no MSI and keeps memory BARs where they start). Call it on a `V86`
 * created with `autostart: false`, once loaded and before it runs, so SeaBIOS
 * finds the device, gives it its ports and its interrupt line.
 *
 * The device reaches guest RAM through V86GuestMemory; a machine reset
 * (v86's reboot_internal) resets it as v86 resets its own virtio devices.
 */
export function attachToV86(emulator: V86Emulator, options: AttachToV86Options): V86Sound {
  const cpu = cpuOf(emulator);
  const pci = cpu.devices.pci;
  const io = cpu.io;
  const memory = new V86GuestMemory(cpu);

  const pciId = choosePciId(pci, options.pciSlot);
  let attached = false;
  // The guest's clock (its TSC) keeps running while the emulator is stopped, and
  // restore_state() restarts it before it unpacks the memory. Where it stood when the
  // guest last ran is the moment a snapshot holds, and where it resumes.
  let running = false;
  let stoppedAt = Number.NaN;
  const onStarted = (): void => {
    running = true;
    stoppedAt = Number.NaN;
  };
  const onStopped = (): void => {
    running = false;
    stoppedAt = guestNs(cpu) ?? Number.NaN;
  };
  let line = false;
  /** After a restore the level is passed on even if it looks unchanged: v86's own state was replaced. */
  let force = false;
  const transport = new VirtioPciTransport({
    device: (hooks) =>
      new VirtioSound({
        memory,
        backend: options.backend,
        clock: options.clock,
        ...(options.config !== undefined ? { config: options.config } : {}),
        ...(options.packed !== undefined ? { packed: options.packed } : {}),
        ...(options.onStreamEvent !== undefined ? { onStreamEvent: options.onStreamEvent } : {}),
        ...(options.onControlChange !== undefined ? { onControlChange: options.onControlChange } : {}),
        ...(options.recorder !== undefined ? { recorder: options.recorder } : {}),
        ...hooks,
      }),
    bar: { index: 0, kind: "io" },
    irq: (level) => {
      if (!attached || (level === line && !force)) return;
      force = false;
      line = level;
      if (level) pci.raise_irq(pciId);
      else pci.lower_irq(pciId);
    },
    ...(options.onNeedsReset !== undefined ? { onNeedsReset: options.onNeedsReset } : {}),
  });
  const device = transport.device as VirtioSound;
  const barSize = transport.bars[0]!.size;
  const port = chooseIoPort(io, barSize, options.ioPort);

  // The v86 object for this function: the configuration space it starts from, with the BAR at `port`.
  const space = transport.configSpace();
  const bar = port | PCI_BASE_ADDRESS_SPACE_IO;
  for (let i = 0; i < 4; i++) space[PCI_BASE_ADDRESS_0 + i] = (bar >>> (8 * i)) & 0xff;
  const v86Device: V86PciDevice = {
    pci_id: pciId,
    pci_space: Array.from(space),
    pci_bars: [{ size: barSize }],
    name: options.name ?? "virtio-snd",
  };

  // One handler per port, each knowing its offset: v86 passes writes no port, and moves the
  // handlers to wherever the firmware puts the BAR (register_device records them first).
  for (let off = 0; off < barSize; off++) {
    io.register_read(
      port + off,
      v86Device,
      () => transport.barRead(0, off, 1),
      () => transport.barRead(0, off, 2),
      () => transport.barRead(0, off, 4) | 0,
    );
    io.register_write(
      port + off,
      v86Device,
      (v) => transport.barWrite(0, off, 1, v),
      (v) => transport.barWrite(0, off, 2, v),
      (v) => transport.barWrite(0, off, 4, v >>> 0),
    );
  }
  pci.register_device(v86Device);
  attached = true;
  emulator.add_listener?.("emulator-started", onStarted);
  emulator.add_listener?.("emulator-stopped", onStopped);

  const ownReboot = Object.prototype.hasOwnProperty.call(cpu, "reboot_internal");
  const previousReboot = cpu.reboot_internal;
  if (typeof previousReboot === "function") {
    cpu.reboot_internal = function rebootWithSound(this: unknown): void {
      previousReboot.call(cpu);
      if (attached) transport.reset();
    };
  }

  return {
    device,
    transport,
    memory,
    pciId,
    detach(): void {
      if (!attached) return;
      transport.reset();
      attached = false;
      if (line) pci.lower_irq(pciId);
      line = false;
      for (let p = 0; p < io.ports.length; p++) {
        if (io.ports[p]!.device === v86Device) io.ports[p] = io.create_empty_entry();
      }
      if (pci.devices[pciId] === v86Device) {
        pci.devices[pciId] = undefined;
        pci.device_spaces[pciId] = undefined;
      }
      if (typeof previousReboot === "function") {
        if (ownReboot) cpu.reboot_internal = previousReboot;
        else delete cpu.reboot_internal;
      }
      emulator.remove_listener?.("emulator-started", onStarted);
      emulator.remove_listener?.("emulator-stopped", onStopped);
    },
    saveState(): Uint8Array {
      // The guest's clock and the device's state at the same instant (the voices keep their lag).
      const time = guestNs(cpu) ?? Number.NaN;
      const t = transport.saveState();
      const d = device.saveState();
      const head = MAGIC.length + 4 + TIMES_BYTES;
      const out = new Uint8Array(head + 8 + t.length + d.length);
      const dv = new DataView(out.buffer);
      out.set(MAGIC, 0);
      dv.setUint32(MAGIC.length, SNAPSHOT_VERSION, true);
      dv.setFloat64(MAGIC.length + 4, time, true);
      dv.setFloat64(MAGIC.length + 12, running ? Number.NaN : stoppedAt, true);
      dv.setUint32(head, t.length, true);
      out.set(t, head + 4);
      dv.setUint32(head + 4 + t.length, d.length, true);
      out.set(d, head + 8 + t.length);
      return out;
    },
    restoreState(bytes: Uint8Array): void {
      const bad = (): never => {
        throw new VirtioSndError("ERR_INVALID_SNAPSHOT", "not a virtio-snd v86 snapshot");
      };
      if (!(bytes instanceof Uint8Array) || bytes.length < MAGIC.length + 12) bad();
      if (MAGIC.some((b, i) => bytes[i] !== b)) bad();
      const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
      const version = dv.getUint32(MAGIC.length, true);
      if (version !== 1 && version !== SNAPSHOT_VERSION) bad();
      // Version 1 has no guest times.
      const head = MAGIC.length + 4 + (version === 1 ? 0 : TIMES_BYTES);
      if (bytes.length < head + 8) bad();
      const time = (at: number): number => {
        const v = version === 1 ? Number.NaN : dv.getFloat64(at, true);
        if (!Number.isNaN(v) && !(Number.isFinite(v) && v >= 0)) bad();
        return v;
      };
      const savedAt = time(MAGIC.length + 4);
      const savedStop = time(MAGIC.length + 12);
      const tLen = dv.getUint32(head, true);
      if (head + 8 + tLen > bytes.length) bad();
      const dLen = dv.getUint32(head + 4 + tLen, true);
      if (head + 8 + tLen + dLen !== bytes.length) bad();
      const t = bytes.subarray(head + 4, head + 4 + tLen);
      const d = bytes.subarray(head + 8 + tLen);

      // restore_state() restarted the guest's clock from its saved value and ran it on while it
      // unpacked the memory (hundreds of ms on a loaded host): the guest would resume to find
      // that time gone, with no audio played in it, and ALSA fails the write (EIO) once it
      // passes 1.1 buffers. Before the guest runs, put its clock back where it stopped (a
      // moment the restored guest never saw pass), then start the voices as far into their
      // schedule as the guest's clock has run since the card was saved (with their lag).
      const now = guestNs(cpu);
      const rewind =
        !running &&
        now !== null &&
        typeof cpu.set_tsc === "function" &&
        !Number.isNaN(savedStop) &&
        now >= savedStop &&
        now - savedStop <= MAX_ELAPSED_NS;
      const resumeAt = rewind ? savedStop : now;
      let elapsedNs = Number.isNaN(savedAt) || resumeAt === null ? 0 : resumeAt - savedAt;
      if (Math.abs(elapsedNs) > MAX_ELAPSED_NS) elapsedNs = 0;
      force = true;
      try {
        transport.restoreState(t);
      } finally {
        force = false;
      }
      device.restoreState(d, { elapsedNs });
      // Last, so a state that does not fit leaves the clock alone.
      if (rewind) setGuestNs(cpu, savedStop);
    },
  };
}

/**
 * v86's id for device number `slot` (function 0), checking it is free; or a free
 * slot from 13 whose interrupt is not shared. v86's PIC keeps one level per IRQ
 * line, so two devices on one line lose each other's interrupts; INTA# of slot s
 * reaches PIRQ (s - 1) mod 4, and SeaBIOS maps PIRQ A and B to one IRQ and C and
 * D to another. The slot chosen avoids the PIRQs, then the pairs, in use.
 */
function choosePciId(pci: V86Cpu["devices"]["pci"], slot: number | undefined): number {
  const devices = pci.devices;
  if (slot !== undefined) {
    if (!Number.isInteger(slot) || slot < 1 || slot > 31) {
      throw new VirtioSndError("ERR_INVALID_CONFIG", `pciSlot ${slot} is not a PCI device number 1..31`);
    }
    if (devices[slot << 3] !== undefined) {
      throw new VirtioSndError("ERR_INVALID_CONFIG", `PCI slot ${slot} is taken`);
    }
    return slot << 3;
  }
  const pirqOf = (s: number, pin: number): number => (pin - 1 + s - 1) & 3;
  const usedPirqs = new Set<number>();
  devices.forEach((d, id) => {
    const pin = ((pci.device_spaces[id]?.[PCI_INTERRUPT_LINE >> 2] ?? 0) >> 8) & 0xff;
    if (d !== undefined && pin >= 1 && pin <= 4) usedPirqs.add(pirqOf(id >> 3, pin));
  });
  const score = (s: number): number => {
    const pirq = pirqOf(s, 1);
    return (usedPirqs.has(pirq) ? 2 : 0) + (usedPirqs.has(pirq ^ 1) ? 1 : 0);
  };
  const order = [
    ...Array.from({ length: 19 }, (_, i) => 13 + i),
    ...Array.from({ length: 11 }, (_, i) => 2 + i),
  ];
  const free = order.filter((s) => devices[s << 3] === undefined);
  if (free.length === 0) throw new VirtioSndError("ERR_INVALID_CONFIG", "no free PCI slot on v86's bus");
  let best = free[0]!;
  for (const s of free) if (score(s) < score(best)) best = s;
  return best << 3;
}

/** `size` free ports at `wanted`, or the first free block of them from 0x8000 (aligned to the size). */
function chooseIoPort(io: V86Cpu["io"], size: number, wanted: number | undefined): number {
  const empty = io.create_empty_entry();
  const free = (base: number): boolean => {
    for (let i = 0; i < size; i++) if (!isFree(io.ports[base + i], empty)) return false;
    return true;
  };
  if (wanted !== undefined) {
    if (!Number.isInteger(wanted) || wanted < 0x1000 || wanted + size > 0x10000 || wanted % size !== 0) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `ioPort ${wanted} is not a ${size}-aligned port from 0x1000 (v86 moves only those)`,
      );
    }
    if (!free(wanted))
      throw new VirtioSndError("ERR_INVALID_CONFIG", `I/O ports at 0x${wanted.toString(16)} are taken`);
    return wanted;
  }
  for (let base = 0x8000; base + size <= 0xc000; base += size) if (free(base)) return base;
  for (let base = 0x1000; base + size <= 0x8000; base += size) if (free(base)) return base;
  throw new VirtioSndError("ERR_INVALID_CONFIG", "no free I/O ports for the BAR");
}
