import { GuestMemoryError, VirtioSndError } from "../errors.js";
import { type GuestMemory, dataViewU64, isSafeUint, setDataViewU64 } from "./guest-memory.js";
import { ViewCache, copyInto } from "./view-cache.js";

export interface MemoryRegion {
  /** Guest-physical address of the region's first byte. */
  readonly guestAddr: number;
  /** The host bytes backing it (for vhost-user, a mapping of the front-end's memory). */
  readonly bytes: Uint8Array;
}

interface Region {
  start: number;
  end: number;
  bytes: Uint8Array;
  dv: DataView;
  views: ViewCache;
}

/**
 * Guest memory made of several regions, as a memory table describes it
 * (RAM below and above a PCI hole, hot-plugged slots, vhost-user regions).
 * An access that crosses from one region into an adjacent one is split;
 * an access that touches a hole fails as a whole.
 */
export class RegionMemory implements GuestMemory {
  private regions: Region[] = [];
  /** Index of the region that served the last access: ring accesses cluster. */
  private last = 0;

  constructor(regions: readonly MemoryRegion[] = []) {
    for (const r of regions) this.add(r);
  }

  /** Adds a region; it must not overlap an existing one. */
  add(region: MemoryRegion): void {
    const start = region.guestAddr;
    const end = start + region.bytes.byteLength;
    if (!isSafeUint(start) || !isSafeUint(end)) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `memory region at ${start} is outside the address space`,
      );
    }
    for (const r of this.regions) {
      if (start < r.end && r.start < end) {
        throw new VirtioSndError(
          "ERR_INVALID_CONFIG",
          `memory region 0x${start.toString(16)}+0x${region.bytes.byteLength.toString(16)} overlaps another`,
        );
      }
    }
    const b = region.bytes;
    this.regions.push({
      start,
      end,
      bytes: b,
      dv: new DataView(b.buffer, b.byteOffset, b.byteLength),
      views: new ViewCache(b),
    });
    this.regions.sort((a, c) => a.start - c.start);
    this.last = 0;
  }

  /** Removes the region that starts at `guestAddr`; returns whether one did. */
  remove(guestAddr: number): boolean {
    const i = this.regions.findIndex((r) => r.start === guestAddr);
    if (i < 0) return false;
    this.regions.splice(i, 1);
    this.last = 0;
    return true;
  }

  get regionCount(): number {
    return this.regions.length;
  }

  private find(addr: number): Region | undefined {
    const cached = this.regions[this.last];
    if (cached !== undefined && addr >= cached.start && addr < cached.end) return cached;
    for (let i = 0; i < this.regions.length; i++) {
      const r = this.regions[i]!;
      if (addr >= r.start && addr < r.end) {
        this.last = i;
        return r;
      }
    }
    return undefined;
  }

  contains(addr: number, length: number): boolean {
    if (!isSafeUint(addr) || !isSafeUint(length) || !isSafeUint(addr + length)) return false;
    let a = addr;
    const end = addr + length;
    if (length === 0) return this.find(addr) !== undefined || this.regions.some((r) => r.end === addr);
    while (a < end) {
      const r = this.find(a);
      if (r === undefined) return false;
      a = r.end;
    }
    return true;
  }

  /** The region holding all of [addr, addr+length), or throws. */
  private single(addr: number, length: number): Region | undefined {
    if (!isSafeUint(addr)) throw new GuestMemoryError(addr, length);
    const r = this.find(addr);
    if (r === undefined) throw new GuestMemoryError(addr, length);
    return addr + length <= r.end ? r : undefined;
  }

  read(addr: number, dest: Uint8Array, destOffset: number, length: number): void {
    if (!this.contains(addr, length)) throw new GuestMemoryError(addr, length);
    if (destOffset < 0 || destOffset + length > dest.length) throw new RangeError("destination too small");
    let a = addr;
    let o = destOffset;
    let left = length;
    while (left > 0) {
      const r = this.find(a)!;
      const n = Math.min(left, r.end - a);
      dest.set(r.views.view(a - r.start, n), o);
      a += n;
      o += n;
      left -= n;
    }
  }

  write(addr: number, src: Uint8Array, srcOffset: number, length: number): void {
    if (!this.contains(addr, length)) throw new GuestMemoryError(addr, length);
    if (srcOffset < 0 || srcOffset + length > src.length) throw new RangeError("source too small");
    let a = addr;
    let o = srcOffset;
    let left = length;
    while (left > 0) {
      const r = this.find(a)!;
      const n = Math.min(left, r.end - a);
      copyInto(r.views.view(a - r.start, n), 0, src, o, n);
      a += n;
      o += n;
      left -= n;
    }
  }

  fill(addr: number, length: number, value: number): void {
    if (!this.contains(addr, length)) throw new GuestMemoryError(addr, length);
    let a = addr;
    let left = length;
    while (left > 0) {
      const r = this.find(a)!;
      const n = Math.min(left, r.end - a);
      const off = a - r.start;
      r.bytes.fill(value, off, off + n);
      a += n;
      left -= n;
    }
  }

  /** Small scalar accesses that straddle two regions go through a scratch buffer. */
  private readonly scratch = new Uint8Array(8);
  private readonly scratchDv = new DataView(this.scratch.buffer);

  readU8(addr: number): number {
    const r = this.single(addr, 1)!;
    return r.bytes[addr - r.start]!;
  }
  readU16(addr: number): number {
    const r = this.single(addr, 2);
    if (r !== undefined) return r.dv.getUint16(addr - r.start, true);
    this.read(addr, this.scratch, 0, 2);
    return this.scratchDv.getUint16(0, true);
  }
  readU32(addr: number): number {
    const r = this.single(addr, 4);
    if (r !== undefined) return r.dv.getUint32(addr - r.start, true);
    this.read(addr, this.scratch, 0, 4);
    return this.scratchDv.getUint32(0, true);
  }
  readU64(addr: number): number {
    const r = this.single(addr, 8);
    if (r !== undefined) return dataViewU64(r.dv, addr - r.start);
    this.read(addr, this.scratch, 0, 8);
    return dataViewU64(this.scratchDv, 0);
  }
  writeU8(addr: number, value: number): void {
    const r = this.single(addr, 1)!;
    r.bytes[addr - r.start] = value;
  }
  writeU16(addr: number, value: number): void {
    const r = this.single(addr, 2);
    if (r !== undefined) return r.dv.setUint16(addr - r.start, value, true);
    this.scratchDv.setUint16(0, value, true);
    this.write(addr, this.scratch, 0, 2);
  }
  writeU32(addr: number, value: number): void {
    const r = this.single(addr, 4);
    if (r !== undefined) return r.dv.setUint32(addr - r.start, value, true);
    this.scratchDv.setUint32(0, value, true);
    this.write(addr, this.scratch, 0, 4);
  }
  writeU64(addr: number, value: number): void {
    const r = this.single(addr, 8);
    if (r !== undefined) return setDataViewU64(r.dv, addr - r.start, value);
    setDataViewU64(this.scratchDv, 0, value);
    this.write(addr, this.scratch, 0, 8);
  }

  view(addr: number, length: number): Uint8Array | null {
    if (!isSafeUint(addr) || !isSafeUint(length)) return null;
    const r = this.find(addr);
    if (r === undefined || addr + length > r.end) return null;
    const off = addr - r.start;
    return r.bytes.subarray(off, off + length);
  }
}
