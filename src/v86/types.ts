/**
 * The parts of v86's internals (npm `v86` 0.5.x) this module uses. They are
 * reachable in v86's public build, though undocumented and absent from its
 * type declarations, so they are described here structurally: any object of
 * this shape will do (tests use the real emulator).
 */

/** One entry of v86's I/O port table (src/io.js). Read handlers get the port; write handlers only the value. */
export interface V86IoPortEntry {
  read8: (port: number) => number;
  read16: (port: number) => number;
  read32: (port: number) => number;
  write8: (value: number) => void;
  write16: (value: number) => void;
  write32: (value: number) => void;
  device: unknown;
}

export interface V86Io {
  readonly ports: V86IoPortEntry[];
  register_read(
    port: number,
    device: object,
    r8?: (port: number) => number,
    r16?: (port: number) => number,
    r32?: (port: number) => number,
  ): void;
  register_write(
    port: number,
    device: object,
    w8?: (value: number) => void,
    w16?: (value: number) => void,
    w32?: (value: number) => void,
  ): void;
  create_empty_entry(): V86IoPortEntry;
  port_read8?(port: number): number;
  port_read16?(port: number): number;
  port_read32?(port: number): number;
  port_write8?(port: number, value: number): void;
  port_write16?(port: number, value: number): void;
  port_write32?(port: number, value: number): void;
}

/** A PCI function as v86's src/pci.js registers it. */
export interface V86PciDevice {
  /** Bus, device and function: device number << 3. */
  pci_id: number;
  /** The initial configuration space (v86 copies it and owns it from then on). */
  pci_space: number[];
  /** Per BAR, its size; v86 moves an I/O BAR's port handlers when the firmware reprograms it. */
  pci_bars: ({ size: number } | undefined)[];
  name: string;
}

export interface V86Pci {
  register_device(device: V86PciDevice): Int32Array;
  raise_irq(pciId: number): void;
  lower_irq(pciId: number): void;
  readonly devices: (V86PciDevice | undefined)[];
  readonly device_spaces: (Int32Array | undefined)[];
}

/** What the guest-memory adapter needs of v86's CPU. */
export interface V86CpuMemory {
  /** Guest RAM: a Uint8Array, or a Proxy of one that re-creates it over the current wasm buffer. */
  readonly mem8: { readonly byteOffset: number; readonly length: number };
  readonly wasm_memory: { readonly buffer: ArrayBufferLike };
  /** Marks [start, end) of guest-physical memory as changed, so JIT-compiled code from it is dropped. */
  jit_dirty_cache(start: number, end: number): void;
}

export interface V86Cpu extends V86CpuMemory {
  readonly devices: { readonly pci: V86Pci };
  readonly io: V86Io;
  /** v86 resets its own devices here on a machine reset. */
  reboot_internal?: () => void;
  /** Copies the guest's time-stamp counter (which v86 saves and restores) into current_tsc. */
  store_current_tsc?: () => void;
  /** The counter as [low, high] 32-bit words, after store_current_tsc(). */
  readonly current_tsc?: ArrayLike<number>;
  /** Sets the counter to [low, high]; it runs on from there (restore_state() calls it). */
  set_tsc?: (low: number, high: number) => void;
}

/** A `V86` instance (the `V86` class of the `v86` package) once it has loaded. */
export interface V86Emulator {
  readonly v86?: { readonly cpu?: V86Cpu } | undefined;
  add_listener?(event: string, listener: (...args: unknown[]) => void): void;
  remove_listener?(event: string, listener: (...args: unknown[]) => void): void;
}
