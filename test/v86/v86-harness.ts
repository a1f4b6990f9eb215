/**
 * A real v86 emulator in Node for the v86 tests, and the guest's view of it:
 * PCI configuration through v86's own 0xCF8/0xCFC emulation, I/O through its
 * port table.
 */
import { existsSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { V86 } from "v86";
import type { PciBus } from "../../src/driver/transport-driver.js";
import type { V86Cpu, V86Emulator, V86Io } from "../../src/v86/types.js";
import { whenV86Loaded } from "../../src/v86/attach.js";

const require = createRequire(import.meta.url);
export const V86_WASM = join(dirname(require.resolve("v86")), "v86.wasm");

/** SeaBIOS (v86 ships none): VIRTIO_SND_SEABIOS, or Debian's seabios package. */
export function seabiosPath(): string | null {
  for (const p of [process.env["VIRTIO_SND_SEABIOS"], "/usr/share/seabios/bios.bin"]) {
    if (p !== undefined && p !== "" && existsSync(p)) return p;
  }
  return null;
}

export interface Emulator {
  emulator: V86;
  cpu: V86Cpu & { io: Required<V86Io> };
  destroy(): Promise<void>;
}

/** A loaded, not running V86 with 32 MiB of RAM; with `bios`, SeaBIOS to run later. */
export async function loadedV86(bios?: string): Promise<Emulator> {
  const emulator = new V86({
    wasm_path: V86_WASM,
    memory_size: 32 << 20,
    autostart: false,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
    ...(bios !== undefined ? { bios: { buffer: new Uint8Array(readFileSync(bios)).buffer } } : {}),
  });
  await whenV86Loaded(emulator);
  const cpu = (emulator as unknown as V86Emulator).v86!.cpu! as Emulator["cpu"];
  return { emulator, cpu, destroy: () => emulator.destroy() };
}

const CONFIG_ADDRESS = 0xcf8;
const CONFIG_DATA = 0xcfc;

/** Configuration mechanism #1 through v86's ports, for the function `pciId` (bus 0). */
export function configAccess(io: Required<V86Io>, pciId: number) {
  const select = (offset: number) =>
    io.port_write32(CONFIG_ADDRESS, 0x8000_0000 | (pciId << 8) | (offset & 0xfc) | 0);
  return {
    read(offset: number, width: number): number {
      select(offset);
      const port = CONFIG_DATA + (offset & 3);
      if (width === 1) return io.port_read8(port);
      if (width === 2) return io.port_read16(port);
      return io.port_read32(port) >>> 0;
    },
    write(offset: number, width: number, value: number): void {
      select(offset);
      const port = CONFIG_DATA + (offset & 3);
      if (width === 1) io.port_write8(port, value & 0xff);
      else if (width === 2) io.port_write16(port, value & 0xffff);
      else io.port_write32(port, value | 0);
    },
  };
}

/** The guest's PCI bus on v86: configuration cycles and I/O ports; v86 has no memory BARs to reach. */
export function v86Bus(io: Required<V86Io>, pciId: number): PciBus {
  const cfg = configAccess(io, pciId);
  return {
    configRead: cfg.read,
    configWrite: cfg.write,
    read: (space, address, width) => {
      if (space !== "io") throw new Error("memory space is not routed in these tests");
      if (width === 1) return io.port_read8(address);
      if (width === 2) return io.port_read16(address);
      return io.port_read32(address) >>> 0;
    },
    write: (space, address, width, value) => {
      if (space !== "io") throw new Error("memory space is not routed in these tests");
      if (width === 1) io.port_write8(address, value);
      else if (width === 2) io.port_write16(address, value);
      else io.port_write32(address, value | 0);
    },
  };
}

/** Records the IRQ numbers v86's PCI code raises and lowers, passing them on to v86. */
export function spyIrqs(cpu: V86Cpu): { raised: number[]; lowered: number[] } {
  const c = cpu as unknown as {
    device_raise_irq: (n: number) => void;
    device_lower_irq: (n: number) => void;
  };
  const raise = c.device_raise_irq;
  const lower = c.device_lower_irq;
  const out = { raised: [] as number[], lowered: [] as number[] };
  c.device_raise_irq = (n) => {
    out.raised.push(n);
    raise.call(cpu, n);
  };
  c.device_lower_irq = (n) => {
    out.lowered.push(n);
    lower.call(cpu, n);
  };
  return out;
}

/** Records every range v86 is told to drop JIT code for, passing it on. */
export function spyJit(cpu: V86Cpu): [number, number][] {
  const c = cpu as unknown as { jit_dirty_cache: (a: number, b: number) => void };
  const dirty = c.jit_dirty_cache;
  const ranges: [number, number][] = [];
  c.jit_dirty_cache = (a, b) => {
    ranges.push([a, b]);
    dirty.call(cpu, a, b);
  };
  return ranges;
}
