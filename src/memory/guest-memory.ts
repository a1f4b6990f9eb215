import { GuestMemoryError } from "../errors.js";

/**
 * Guest-physical memory as the device sees it. Addresses are plain numbers:
 * anything that is not a safe non-negative integer is simply "outside memory".
 *
 * Every method is bounds-checked; an access that touches a byte outside memory
 * throws GuestMemoryError and changes nothing. Callers at a request boundary
 * turn that into the spec's failure for the request (never a host crash).
 */
export interface GuestMemory {
  /** True when every byte of [addr, addr + length) is guest memory. */
  contains(addr: number, length: number): boolean;
  /** Copies `length` bytes at `addr` into `dest` starting at `destOffset`. */
  read(addr: number, dest: Uint8Array, destOffset: number, length: number): void;
  /** Copies `length` bytes of `src` from `srcOffset` to guest memory at `addr`. */
  write(addr: number, src: Uint8Array, srcOffset: number, length: number): void;
  /** Sets `length` bytes at `addr` to `value`. */
  fill(addr: number, length: number, value: number): void;
  readU8(addr: number): number;
  readU16(addr: number): number;
  readU32(addr: number): number;
  /** A little-endian 64-bit value; values above 2^53 come back inexact but never inside memory. */
  readU64(addr: number): number;
  writeU8(addr: number, value: number): void;
  writeU16(addr: number, value: number): void;
  writeU32(addr: number, value: number): void;
  writeU64(addr: number, value: number): void;
  /**
   * A view of [addr, addr + length) without copying, when the range lies in one
   * contiguous host buffer; null otherwise (the caller then copies).
   */
  view(addr: number, length: number): Uint8Array | null;
}

/** True for a value usable as an address or length: a safe non-negative integer. */
export function isSafeUint(value: number): boolean {
  return Number.isSafeInteger(value) && value >= 0;
}

/** Reads a little-endian u64 from a DataView as a number (exact below 2^53). */
export function dataViewU64(dv: DataView, offset: number): number {
  return dv.getUint32(offset, true) + dv.getUint32(offset + 4, true) * 0x1_0000_0000;
}

/** Writes a number below 2^64 as a little-endian u64. */
export function setDataViewU64(dv: DataView, offset: number, value: number): void {
  dv.setUint32(offset, value >>> 0, true);
  dv.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000) >>> 0, true);
}

export { GuestMemoryError };
