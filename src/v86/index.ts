/**
 * virtio-snd/v86: a virtio sound card for the v86 emulator (npm `v86`), in
 * Node or a browser. No Node built-ins here: it runs wherever v86 runs.
 */
export { attachToV86, whenV86Loaded, type AttachToV86Options, type V86Sound } from "./attach.js";
export { V86GuestMemory } from "./memory.js";
export type {
  V86Cpu,
  V86CpuMemory,
  V86Emulator,
  V86Io,
  V86IoPortEntry,
  V86Pci,
  V86PciDevice,
} from "./types.js";
