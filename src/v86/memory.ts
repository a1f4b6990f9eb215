import { GuestMemoryError, VirtioSndError } from "../errors.js";
import { type GuestMemory, dataViewU64, isSafeUint, setDataViewU64 } from "../memory/guest-memory.js";
import { ViewCache, copyInto } from "../memory/view-cache.js";
import type { V86CpuMemory } from "./types.js";

/**
 * v86's guest RAM as the device's GuestMemory. RAM is a window of the
 * WebAssembly memory (at `mem8.byteOffset`, `mem8.length` bytes, guest-physical
 * address 0 upwards); the wasm memory's buffer is replaced when it grows, so the
 * views are rebuilt whenever `wasm_memory.buffer` is a new one. Every write
 * marks its range with `jit_dirty_cache`, as v86's own write_blob does, or code
 * the JIT compiled from those pages would keep running stale.
 *
 * view() returns null: a caller writing through a view would skip the JIT
 * dirtying, and the view would go stale when the memory grows.
 */
export class V86GuestMemory implements GuestMemory {
  /** Bytes of guest RAM. */
  readonly size: number;
  /** Where RAM starts in the wasm memory. */
  readonly offset: number;
  private buffer: ArrayBufferLike | null = null;
  private bytes: Uint8Array = new Uint8Array(0);
  private dv: DataView = new DataView(new ArrayBuffer(0));
  private views: ViewCache = new ViewCache(this.bytes);

  constructor(private readonly cpu: V86CpuMemory) {
    const offset = cpu.mem8.byteOffset;
    const size = cpu.mem8.length;
    if (!isSafeUint(offset) || !isSafeUint(size) || size === 0) {
      throw new VirtioSndError(
        "ERR_INVALID_STATE",
        "v86's guest memory is not allocated yet: attach after emulator-loaded",
      );
    }
    this.offset = offset;
    this.size = size;
    this.refresh();
  }

  /** The views over the wasm memory's current buffer. */
  private refresh(): void {
    const buffer = this.cpu.wasm_memory.buffer;
    if (buffer === this.buffer) return;
    if (this.offset + this.size > buffer.byteLength) {
      throw new VirtioSndError("ERR_INVALID_STATE", "v86's wasm memory no longer holds guest RAM");
    }
    this.buffer = buffer;
    this.bytes = new Uint8Array(buffer, this.offset, this.size);
    this.dv = new DataView(buffer, this.offset, this.size);
    this.views = new ViewCache(this.bytes);
  }

  contains(addr: number, length: number): boolean {
    return isSafeUint(addr) && isSafeUint(length) && addr + length <= this.size;
  }

  private check(addr: number, length: number): void {
    if (!this.contains(addr, length)) throw new GuestMemoryError(addr, length);
    this.refresh();
  }

  private dirty(addr: number, length: number): void {
    if (length > 0) this.cpu.jit_dirty_cache(addr, addr + length);
  }

  read(addr: number, dest: Uint8Array, destOffset: number, length: number): void {
    this.check(addr, length);
    if (destOffset < 0 || destOffset + length > dest.length) throw new RangeError("destination too small");
    dest.set(this.views.view(addr, length), destOffset);
  }

  write(addr: number, src: Uint8Array, srcOffset: number, length: number): void {
    this.check(addr, length);
    if (srcOffset < 0 || srcOffset + length > src.length) throw new RangeError("source too small");
    this.dirty(addr, length);
    copyInto(this.views.view(addr, length), 0, src, srcOffset, length);
  }

  fill(addr: number, length: number, value: number): void {
    this.check(addr, length);
    this.dirty(addr, length);
    this.bytes.fill(value, addr, addr + length);
  }

  readU8(addr: number): number {
    this.check(addr, 1);
    return this.bytes[addr]!;
  }
  readU16(addr: number): number {
    this.check(addr, 2);
    return this.dv.getUint16(addr, true);
  }
  readU32(addr: number): number {
    this.check(addr, 4);
    return this.dv.getUint32(addr, true);
  }
  readU64(addr: number): number {
    this.check(addr, 8);
    return dataViewU64(this.dv, addr);
  }
  writeU8(addr: number, value: number): void {
    this.check(addr, 1);
    this.dirty(addr, 1);
    this.bytes[addr] = value;
  }
  writeU16(addr: number, value: number): void {
    this.check(addr, 2);
    this.dirty(addr, 2);
    this.dv.setUint16(addr, value, true);
  }
  writeU32(addr: number, value: number): void {
    this.check(addr, 4);
    this.dirty(addr, 4);
    this.dv.setUint32(addr, value, true);
  }
  writeU64(addr: number, value: number): void {
    this.check(addr, 8);
    this.dirty(addr, 8);
    setDataViewU64(this.dv, addr, value);
  }

  view(): Uint8Array | null {
    return null;
  }
}
