import { GuestMemoryError, VirtioSndError } from "../errors.js";
import { type GuestMemory, dataViewU64, isSafeUint, setDataViewU64 } from "./guest-memory.js";
import { ViewCache, copyInto } from "./view-cache.js";

export interface MemoryRegion {
  /** Guest-physical address of the region's first byte. */
  readonly guestAddr: number;
  /** The host bytes backing it (for vhost-user, a mapping of the front-end's memory). */
  readonly bytes: Uint8Array;
}

/**
 * A region whose host bytes are asked for a window at a time, when an access
 * first touches it: a host that pays for every byte it exposes (V8 counts
 * each ArrayBuffer's length as external memory and collects garbage when
 * that jumps) exposes only the windows the device uses.
 */
export interface WindowedRegion {
  /** Guest-physical address of the region's first byte. */
  readonly guestAddr: number;
  readonly length: number;
  /** Bytes per window (the last may be shorter); a positive integer. */
  readonly windowBytes: number;
  /**
   * The bytes [offset, offset + length) of the region. May throw: the access
   * that needed the window then fails as one outside guest memory.
   */
  window(offset: number, length: number): Uint8Array;
}

/** Bytes of one region, or of one window of a windowed region, as accesses use them. */
interface Window {
  start: number;
  end: number;
  bytes: Uint8Array;
  dv: DataView;
  views: ViewCache;
}

interface Region {
  start: number;
  end: number;
  windowBytes: number;
  /** Made on first use (a windowed region), or the one window of a plain region. */
  windows: (Window | undefined)[];
  source: WindowedRegion | null;
}

/** View-cache slots of one window of a windowed region: it holds a few of the driver's buffers, not all. */
const WINDOW_VIEW_SLOTS = 64;

function windowOver(start: number, bytes: Uint8Array, viewSlots?: number): Window {
  return {
    start,
    end: start + bytes.byteLength,
    bytes,
    dv: new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength),
    views: new ViewCache(bytes, viewSlots),
  };
}

/**
 * Guest memory made of several regions, as a memory table describes it
 * (RAM below and above a PCI hole, hot-plugged slots, vhost-user regions).
 * An access that crosses from one region (or window) into an adjacent one is
 * split; an access that touches a hole fails as a whole.
 */
export class RegionMemory implements GuestMemory {
  private regions: Region[] = [];
  /** The window that served the last access: ring accesses cluster. */
  private last: Window | null = null;

  constructor(regions: readonly (MemoryRegion | WindowedRegion)[] = []) {
    for (const r of regions) this.add(r);
  }

  /** Adds a region; it must not overlap an existing one. */
  add(region: MemoryRegion | WindowedRegion): void {
    const start = region.guestAddr;
    const windowed = "window" in region;
    const length = windowed ? region.length : region.bytes.byteLength;
    const end = start + length;
    if (!isSafeUint(start) || !isSafeUint(end)) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `memory region at ${start} is outside the address space`,
      );
    }
    if (windowed && (!Number.isSafeInteger(region.windowBytes) || region.windowBytes < 1)) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `memory region windows must be a positive number of bytes, not ${region.windowBytes}`,
      );
    }
    for (const r of this.regions) {
      if (start < r.end && r.start < end) {
        throw new VirtioSndError(
          "ERR_INVALID_CONFIG",
          `memory region 0x${start.toString(16)}+0x${length.toString(16)} overlaps another`,
        );
      }
    }
    this.regions.push(
      windowed
        ? { start, end, windowBytes: region.windowBytes, windows: [], source: region }
        : {
            start,
            end,
            windowBytes: Math.max(1, length),
            windows: [windowOver(start, region.bytes)],
            source: null,
          },
    );
    this.regions.sort((a, c) => a.start - c.start);
    this.last = null;
  }

  /** Removes the region that starts at `guestAddr`; returns whether one did. */
  remove(guestAddr: number): boolean {
    const i = this.regions.findIndex((r) => r.start === guestAddr);
    if (i < 0) return false;
    this.regions.splice(i, 1);
    this.last = null;
    return true;
  }

  get regionCount(): number {
    return this.regions.length;
  }

  /** Windows made so far, over every region (a plain region is one). */
  get windowCount(): number {
    let n = 0;
    for (const r of this.regions) for (const w of r.windows) if (w !== undefined) n++;
    return n;
  }

  private find(addr: number): Window | undefined {
    const cached = this.last;
    if (cached !== null && addr >= cached.start && addr < cached.end) return cached;
    for (let i = 0; i < this.regions.length; i++) {
      const r = this.regions[i]!;
      if (addr >= r.start && addr < r.end) {
        const w = this.windowAt(r, addr);
        if (w !== undefined) this.last = w;
        return w;
      }
    }
    return undefined;
  }

  private windowAt(r: Region, addr: number): Window | undefined {
    const index = Math.floor((addr - r.start) / r.windowBytes);
    const w = r.windows[index];
    if (w !== undefined || r.source === null) return w;
    const offset = index * r.windowBytes;
    const length = Math.min(r.windowBytes, r.end - r.start - offset);
    let bytes: Uint8Array;
    try {
      bytes = r.source.window(offset, length);
    } catch {
      return undefined;
    }
    // A window shorter than asked (a host that could not give it all) is never trusted.
    if (bytes.byteLength !== length) return undefined;
    const made = windowOver(r.start + offset, bytes, WINDOW_VIEW_SLOTS);
    r.windows[index] = made;
    return made;
  }

  contains(addr: number, length: number): boolean {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && (length | 0) === length && length > 0 && addr + length <= w.end)
        return true;
    }
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
  private single(addr: number, length: number): Window | undefined {
    if (!isSafeUint(addr)) throw new GuestMemoryError(addr, length);
    const r = this.find(addr);
    if (r === undefined) throw new GuestMemoryError(addr, length);
    return addr + length <= r.end ? r : undefined;
  }

  read(addr: number, dest: Uint8Array, destOffset: number, length: number): void {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && (length | 0) === length && length > 0 && addr + length <= w.end) {
        if (destOffset < 0 || destOffset + length > dest.length)
          throw new RangeError("destination too small");
        dest.set(w.views.view(off, length), destOffset);
        return;
      }
    }
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
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && (length | 0) === length && length > 0 && addr + length <= w.end) {
        if (srcOffset < 0 || srcOffset + length > src.length) throw new RangeError("source too small");
        copyInto(w.views.view(off, length), 0, src, srcOffset, length);
        return;
      }
    }
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

  // The scalar accessors first try the window that served the last access,
  // with the test written out in each: ring and buffer accesses cluster, and
  // before V8 optimizes the device's code (a daemon's first few thousand
  // periods) every call costs. `(off | 0) === off` takes integers in int32
  // only; anything else (an access beyond 2 GiB into a plain region, a
  // non-integer address) takes the general path, which checks it.

  readU8(addr: number): number {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && addr < w.end) return w.bytes[off]!;
    }
    const r = this.single(addr, 1)!;
    return r.bytes[addr - r.start]!;
  }
  readU16(addr: number): number {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && addr + 2 <= w.end) return w.dv.getUint16(off, true);
    }
    const r = this.single(addr, 2);
    if (r !== undefined) return r.dv.getUint16(addr - r.start, true);
    this.read(addr, this.scratch, 0, 2);
    return this.scratchDv.getUint16(0, true);
  }
  readU32(addr: number): number {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && addr + 4 <= w.end) return w.dv.getUint32(off, true);
    }
    const r = this.single(addr, 4);
    if (r !== undefined) return r.dv.getUint32(addr - r.start, true);
    this.read(addr, this.scratch, 0, 4);
    return this.scratchDv.getUint32(0, true);
  }
  readU64(addr: number): number {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && addr + 8 <= w.end) return dataViewU64(w.dv, off);
    }
    const r = this.single(addr, 8);
    if (r !== undefined) return dataViewU64(r.dv, addr - r.start);
    this.read(addr, this.scratch, 0, 8);
    return dataViewU64(this.scratchDv, 0);
  }
  writeU8(addr: number, value: number): void {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && addr < w.end) {
        w.bytes[off] = value;
        return;
      }
    }
    const r = this.single(addr, 1)!;
    r.bytes[addr - r.start] = value;
  }
  writeU16(addr: number, value: number): void {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && addr + 2 <= w.end) return w.dv.setUint16(off, value, true);
    }
    const r = this.single(addr, 2);
    if (r !== undefined) return r.dv.setUint16(addr - r.start, value, true);
    this.scratchDv.setUint16(0, value, true);
    this.write(addr, this.scratch, 0, 2);
  }
  writeU32(addr: number, value: number): void {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && addr + 4 <= w.end) return w.dv.setUint32(off, value, true);
    }
    const r = this.single(addr, 4);
    if (r !== undefined) return r.dv.setUint32(addr - r.start, value, true);
    this.scratchDv.setUint32(0, value, true);
    this.write(addr, this.scratch, 0, 4);
  }
  writeU64(addr: number, value: number): void {
    const w = this.last;
    if (w !== null) {
      const off = addr - w.start;
      if ((off | 0) === off && off >= 0 && addr + 8 <= w.end) return setDataViewU64(w.dv, off, value);
    }
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
