/**
 * The front-end's memory table (SET_MEM_TABLE, ADD_MEM_REG, REM_MEM_REG):
 * its regions, each mapped from the file descriptor that came with it, laid
 * into a RegionMemory by guest-physical address, and the translation of the
 * front-end's virtual addresses (ring addresses) to guest-physical ones.
 *
 * The table owns the mappings, not the fds: the caller closes each region's
 * fd once it is mapped (a mapping outlives its fd). Every mapping is unmapped
 * exactly once, when its region is removed or replaced, or on clear().
 */
import { VirtioSndError } from "../errors.js";
import { RegionMemory } from "../memory/region-memory.js";
import type { Log } from "./log.js";
import { type MemoryRegionDesc, safeNumber } from "./messages.js";
import { ACCEPTED, type Outcome, type Refusal, type Result, hex, ok, reasonOf, refuse } from "./result.js";
import type { MappedRegion, VhostTransport } from "./transport.js";

/** Regions are mapped in pieces of at most this size by default: a typed array cannot be longer than 4 GiB. */
const MAP_CHUNK = 1 << 30;
/**
 * Guest memory is exposed to the device in windows of this size, each made
 * when an access first touches it (a driver's rings and buffers touch a few);
 * larger ones for a region that would otherwise have more than MAX_WINDOWS.
 * A window costs the daemon about 2 KiB (its buffer object, views and a small
 * view cache): a guest that touches all of its RAM costs it 0.2 % of that.
 */
const WINDOW_BYTES = 1 << 20;
const MAX_WINDOWS = 4096;

/** The window size for a mapping of `size` bytes: a power of two from WINDOW_BYTES. */
export function windowBytesFor(size: number): number {
  let w = WINDOW_BYTES;
  while (w * MAX_WINDOWS < size) w *= 2;
  return w;
}

/** A region's addresses, checked and in numbers. */
interface RegionSpan {
  readonly guestAddr: number;
  readonly size: number;
  readonly userAddr: number;
}

interface CheckedRegion extends RegionSpan {
  readonly mmapOffset: number;
}

interface Region extends RegionSpan {
  readonly maps: readonly MappedRegion[];
}

/** What maps a region's fd: the connection's transport. */
export type Mapper = Pick<VhostTransport, "map">;

export class MemoryTable {
  /** Guest memory as the table describes it; the device reads the rings and buffers through it. */
  readonly memory = new RegionMemory();
  /** Regions the front-end may add (GET_MAX_MEM_SLOTS); 32 by default, as libvhost-user. */
  readonly maxSlots: number;
  private readonly mapChunk: number;
  private regions: Region[] = [];

  /** Throws ERR_INVALID_CONFIG for a slot count or chunk size out of range. */
  constructor(
    private readonly log: Log,
    maxSlots = 32,
    mapChunk = MAP_CHUNK,
  ) {
    if (!Number.isInteger(maxSlots) || maxSlots < 1 || maxSlots > 4096)
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `maxMemSlots must be an integer from 1 to 4096, not ${maxSlots}`,
      );
    this.maxSlots = maxSlots;
    if (!Number.isInteger(mapChunk) || mapChunk < 65536 || mapChunk > MAP_CHUNK || mapChunk % 65536 !== 0)
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `mapChunkBytes must be a multiple of 64 KiB up to 1 GiB, not ${mapChunk}`,
      );
    this.mapChunk = mapChunk;
  }

  /**
   * SET_MEM_TABLE: replaces every region with `descs`, the i-th mapped from
   * `fds[i]`. All or nothing: on a refusal the old table stays.
   */
  replace(descs: readonly MemoryRegionDesc[], fds: readonly number[], mapper: Mapper): Outcome {
    if (fds.length !== descs.length)
      return refuse(`${descs.length} regions but ${fds.length} file descriptors`);
    const checked: CheckedRegion[] = [];
    for (const d of descs) {
      const r = this.check(d, true);
      if (!r.ok) return r;
      const clash = this.overlap(r.value, checked);
      if (clash !== null) return clash;
      checked.push(r.value);
    }
    const mapped: Region[] = [];
    for (let i = 0; i < checked.length; i++) {
      const region = this.map(checked[i]!, fds[i]!, mapper);
      if (!region.ok) {
        for (const r of mapped) for (const map of r.maps) map.unmap();
        return region;
      }
      mapped.push(region.value);
    }
    // The rings keep their guest-physical addresses; only the mapping behind them changes.
    this.clear();
    for (const r of mapped) this.install(r);
    this.log("info", `memory table: ${this.describe()}`);
    return ACCEPTED;
  }

  /** ADD_MEM_REG: one more region, mapped from `fd`. */
  add(desc: MemoryRegionDesc, fd: number, mapper: Mapper): Outcome {
    const r = this.check(desc, true);
    if (!r.ok) return r;
    if (this.regions.length >= this.maxSlots) return refuse(`all ${this.maxSlots} memory slots are in use`);
    const clash = this.overlap(r.value, this.regions);
    if (clash !== null) return clash;
    const region = this.map(r.value, fd, mapper);
    if (!region.ok) return region;
    this.install(region.value);
    this.log("debug", `added region: ${describeRegion(region.value)}`);
    return ACCEPTED;
  }

  /** REM_MEM_REG: the region with exactly these addresses and size (the mmap offset does not count). */
  remove(desc: MemoryRegionDesc): Outcome {
    const r = this.check(desc, false);
    if (!r.ok) return r;
    const { guestAddr, userAddr, size } = r.value;
    const region = this.regions.find(
      (x) => x.guestAddr === guestAddr && x.userAddr === userAddr && x.size === size,
    );
    if (region === undefined)
      return refuse(`no region ${hex(guestAddr)}+${hex(size)} at user address ${hex(userAddr)}`);
    this.uninstall(region);
    this.log("debug", `removed region: ${describeRegion(region)}`);
    return ACCEPTED;
  }

  /** Unmaps every region. */
  clear(): void {
    for (const r of [...this.regions]) this.uninstall(r);
  }

  /** The guest-physical address of the front-end's virtual address `user`, or null. */
  userToGuest(user: bigint): number | null {
    const u = safeNumber(user);
    if (u === null) return null;
    for (const r of this.regions) {
      if (u >= r.userAddr && u < r.userAddr + r.size) return r.guestAddr + (u - r.userAddr);
    }
    return null;
  }

  describe(): string {
    return this.regions.length === 0 ? "empty" : this.regions.map(describeRegion).join(", ");
  }

  /** Checks a region's numbers (the mmap offset only `withOffset`). */
  private check(r: MemoryRegionDesc, withOffset: boolean): Result<CheckedRegion> {
    const guestAddr = safeNumber(r.guestAddr);
    const size = safeNumber(r.size);
    const userAddr = safeNumber(r.userAddr);
    const mmapOffset = withOffset ? safeNumber(r.mmapOffset) : 0;
    const what = `region ${hex(r.guestAddr)}+${hex(r.size)}`;
    if (guestAddr === null || size === null || userAddr === null || mmapOffset === null)
      return refuse(`${what}: an address, size or offset is beyond 2^53`);
    if (size === 0) return refuse(`${what} is empty`);
    if (!Number.isSafeInteger(guestAddr + size) || !Number.isSafeInteger(userAddr + size))
      return refuse(`${what} ends beyond 2^53`);
    if (!Number.isSafeInteger(mmapOffset + size)) return refuse(`${what}: its mmap offset ends beyond 2^53`);
    return ok({ guestAddr, size, userAddr, mmapOffset });
  }

  /**
   * A refusal when `r` overlaps one of `others` in guest-physical address
   * space. (User addresses may overlap: the same memory can appear at two
   * guest addresses.)
   */
  private overlap(r: RegionSpan, others: readonly RegionSpan[]): Refusal | null {
    for (const o of others) {
      if (r.guestAddr < o.guestAddr + o.size && o.guestAddr < r.guestAddr + r.size)
        return refuse(`region at guest address ${hex(r.guestAddr)} overlaps the one at ${hex(o.guestAddr)}`);
    }
    return null;
  }

  /** Maps a region from `fd`, in chunks; on failure unmaps what it mapped. */
  private map(r: CheckedRegion, fd: number, mapper: Mapper): Result<Region> {
    const maps: MappedRegion[] = [];
    try {
      for (let off = 0; off < r.size; off += this.mapChunk) {
        maps.push(mapper.map(fd, Math.min(this.mapChunk, r.size - off), r.mmapOffset + off));
      }
    } catch (err) {
      for (const m of maps) m.unmap();
      return refuse(reasonOf(err));
    }
    return ok({ guestAddr: r.guestAddr, size: r.size, userAddr: r.userAddr, maps });
  }

  private install(region: Region): void {
    let addr = region.guestAddr;
    for (const m of region.maps) {
      this.memory.add({
        guestAddr: addr,
        length: m.length,
        windowBytes: windowBytesFor(m.length),
        window: (offset, length) => m.window(offset, length),
      });
      addr += m.length;
    }
    this.regions.push(region);
  }

  private uninstall(region: Region): void {
    let addr = region.guestAddr;
    for (const m of region.maps) {
      this.memory.remove(addr);
      addr += m.length;
      m.unmap();
    }
    this.regions = this.regions.filter((r) => r !== region);
  }
}

function describeRegion(r: RegionSpan): string {
  return `guest ${hex(r.guestAddr)}+${hex(r.size)} (user ${hex(r.userAddr)})`;
}
