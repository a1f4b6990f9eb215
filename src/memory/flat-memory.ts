import { GuestMemoryError } from "../errors.js";
import { type GuestMemory, dataViewU64, isSafeUint, setDataViewU64 } from "./guest-memory.js";
import { ViewCache, copyInto } from "./view-cache.js";

/**
 * Guest memory that is one host buffer, mapped at guest-physical `base`
 * (an emulator's RAM array, or a SharedArrayBuffer shared with a worker).
 */
export class FlatMemory implements GuestMemory {
  readonly base: number;
  readonly size: number;
  readonly bytes: Uint8Array;
  private readonly dv: DataView;
  private readonly views: ViewCache;

  constructor(buffer: ArrayBufferLike | Uint8Array, base = 0) {
    this.bytes = buffer instanceof Uint8Array ? buffer : new Uint8Array(buffer);
    this.dv = new DataView(this.bytes.buffer, this.bytes.byteOffset, this.bytes.byteLength);
    this.base = base;
    this.size = this.bytes.byteLength;
    this.views = new ViewCache(this.bytes);
  }

  contains(addr: number, length: number): boolean {
    // Written so that non-numbers, NaN, fractions and huge values all fail.
    return (
      isSafeUint(addr) && isSafeUint(length) && addr >= this.base && addr - this.base + length <= this.size
    );
  }

  private offset(addr: number, length: number): number {
    // contains(), written out: every ring and descriptor access comes here, and
    // V8 does not always inline the call. NaN fails every comparison.
    const off = addr - this.base;
    if (!(off >= 0 && length >= 0 && off + length <= this.size && isSafeUint(addr) && isSafeUint(length))) {
      throw new GuestMemoryError(addr, length);
    }
    return off;
  }

  read(addr: number, dest: Uint8Array, destOffset: number, length: number): void {
    const off = this.offset(addr, length);
    if (destOffset < 0 || destOffset + length > dest.length) throw new RangeError("destination too small");
    dest.set(this.views.view(off, length), destOffset);
  }

  write(addr: number, src: Uint8Array, srcOffset: number, length: number): void {
    const off = this.offset(addr, length);
    if (srcOffset < 0 || srcOffset + length > src.length) throw new RangeError("source too small");
    copyInto(this.views.view(off, length), 0, src, srcOffset, length);
  }

  fill(addr: number, length: number, value: number): void {
    const off = this.offset(addr, length);
    this.bytes.fill(value, off, off + length);
  }

  // The scalar accessors test the common case written out, without a call: before
  // V8 optimizes the device's code, every call costs. `(off | 0) === off` takes
  // integers in int32 only; anything else (beyond 2 GiB, a fraction, NaN) goes
  // through offset(), which checks it.

  readU8(addr: number): number {
    const off = addr - this.base;
    if ((off | 0) === off && off >= 0 && off < this.size) return this.bytes[off]!;
    return this.bytes[this.offset(addr, 1)]!;
  }
  readU16(addr: number): number {
    const off = addr - this.base;
    if ((off | 0) === off && off >= 0 && off + 2 <= this.size) return this.dv.getUint16(off, true);
    return this.dv.getUint16(this.offset(addr, 2), true);
  }
  readU32(addr: number): number {
    const off = addr - this.base;
    if ((off | 0) === off && off >= 0 && off + 4 <= this.size) return this.dv.getUint32(off, true);
    return this.dv.getUint32(this.offset(addr, 4), true);
  }
  readU64(addr: number): number {
    const off = addr - this.base;
    if ((off | 0) === off && off >= 0 && off + 8 <= this.size) return dataViewU64(this.dv, off);
    return dataViewU64(this.dv, this.offset(addr, 8));
  }
  writeU8(addr: number, value: number): void {
    const off = addr - this.base;
    this.bytes[(off | 0) === off && off >= 0 && off < this.size ? off : this.offset(addr, 1)] = value;
  }
  writeU16(addr: number, value: number): void {
    const off = addr - this.base;
    if ((off | 0) === off && off >= 0 && off + 2 <= this.size) return this.dv.setUint16(off, value, true);
    this.dv.setUint16(this.offset(addr, 2), value, true);
  }
  writeU32(addr: number, value: number): void {
    const off = addr - this.base;
    if ((off | 0) === off && off >= 0 && off + 4 <= this.size) return this.dv.setUint32(off, value, true);
    this.dv.setUint32(this.offset(addr, 4), value, true);
  }
  writeU64(addr: number, value: number): void {
    const off = addr - this.base;
    if ((off | 0) === off && off >= 0 && off + 8 <= this.size) return setDataViewU64(this.dv, off, value);
    setDataViewU64(this.dv, this.offset(addr, 8), value);
  }

  view(addr: number, length: number): Uint8Array | null {
    if (!this.contains(addr, length)) return null;
    const off = addr - this.base;
    return this.bytes.subarray(off, off + length);
  }
}
