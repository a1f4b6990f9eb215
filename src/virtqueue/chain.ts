import type { GuestMemory } from "../memory/guest-memory.js";

/** Why a chain was refused by the walker (virtio 1.3 §2.7.5.3, §2.8.6). */
export enum ChainFault {
  None = 0,
  /** A descriptor index is not below the queue size. */
  BadIndex = 1,
  /** The chain revisits a descriptor, or is longer than the queue size. */
  Loop = 2,
  /** A device-readable descriptor follows a device-writable one. */
  ReadableAfterWritable = 3,
  /** An indirect table inside an indirect table, or an indirect descriptor with NEXT (split). */
  NestedIndirect = 4,
  /** An indirect table of length 0, or not a multiple of 16 bytes. */
  BadIndirectTable = 5,
  /** A buffer or an indirect table lies (partly) outside guest memory. */
  OutsideMemory = 6,
  /** The descriptor table itself could not be read. */
  Unreadable = 7,
  /** More descriptors than the queue's chain bound (RingFeatures.maxChain), counting indirect ones. */
  TooLong = 8,
  /**
   * Taking the chain would make the chains in flight hold more buffers than the
   * queue's bound (RingFeatures.maxSegments): host memory stays bounded however
   * the driver splits its buffers.
   */
  OverBudget = 9,
}

/** Segment capacity a fresh (or shrunk) chain has: enough for every message Linux sends from contiguous memory. */
export const CHAIN_INITIAL_CAPACITY = 8;

/**
 * One descriptor chain popped from a queue, flattened into segments: the
 * device-readable ones first, then the device-writable ones.
 *
 * Chains are pooled by their queue and reused; a chain is valid from pop()
 * until it is pushed back. Segment arrays grow on demand and are then kept,
 * so a steady stream of chains allocates nothing.
 */
export class Chain {
  /** What the used ring must name: the head index (split) or the buffer id (packed). */
  id = 0;
  /** Ring slots the chain occupies (packed ring: how far the used index advances). */
  ringSlots = 0;
  readableCount = 0;
  writableCount = 0;
  readableBytes = 0;
  writableBytes = 0;
  /** Non-zero when the chain is malformed: it carries no segments and must be returned with length 0. */
  fault: ChainFault = ChainFault.None;
  /**
   * For a chain that faulted: its first non-empty device-readable buffer
   * (length 0 when there is none, or it lies outside memory), where a
   * message's header is, so the device can say which stream lost a message it
   * had to drop.
   */
  headAddr = 0;
  headLen = 0;
  /** Segments its queue's pool counts against the budget (set by ChainPool). */
  pooledSegments = 0;
  /** Segment capacity added by growing since the pool last looked (ChainPool accounts for it). */
  grownBy = 0;
  addr: Float64Array;
  len: Uint32Array;

  constructor(capacity = CHAIN_INITIAL_CAPACITY) {
    this.addr = new Float64Array(capacity);
    this.len = new Uint32Array(capacity);
  }

  get segmentCount(): number {
    return this.readableCount + this.writableCount;
  }

  /** Segments the chain can hold before it must grow. */
  get capacity(): number {
    return this.addr.length;
  }

  reset(): void {
    this.id = 0;
    this.ringSlots = 0;
    this.readableCount = 0;
    this.writableCount = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
    this.fault = ChainFault.None;
    this.headAddr = 0;
    this.headLen = 0;
    this.pooledSegments = 0;
  }

  /** Drops grown segment arrays (the queue does this to keep its pool's memory bounded). */
  shrink(): void {
    if (this.addr.length <= CHAIN_INITIAL_CAPACITY) return;
    this.addr = new Float64Array(CHAIN_INITIAL_CAPACITY);
    this.len = new Uint32Array(CHAIN_INITIAL_CAPACITY);
  }

  /** Appends a segment; the walker has already checked it lies in guest memory. */
  addSegment(addr: number, len: number, writable: boolean): void {
    const i = this.readableCount + this.writableCount;
    if (i === this.addr.length) this.grow();
    this.addr[i] = addr;
    this.len[i] = len;
    if (writable) {
      this.writableCount++;
      this.writableBytes += len;
    } else {
      this.readableCount++;
      this.readableBytes += len;
    }
  }

  /**
   * Remembers where the header of a chain about to be refused is (its first
   * readable buffer), for a table the walker will not read: only the device's
   * report of the drop uses it.
   */
  noteHead(mem: GuestMemory, entry: number, flagsOffset: number, writeFlag: number): void {
    // A buffer gathered before the table comes first.
    if (this.noteGatheredHead() || !mem.contains(entry, 16)) return;
    // Both layouts' descriptors are 16 bytes with le64 addr, le32 len first.
    const addr = mem.readU64(entry);
    const len = mem.readU32(entry + 8);
    const flags = mem.readU16(entry + flagsOffset);
    if ((flags & writeFlag) === 0 && len !== 0 && mem.contains(addr, len)) {
      this.headAddr = addr;
      this.headLen = len;
    }
  }

  /** Marks the chain malformed and drops whatever segments were gathered. */
  fail(fault: ChainFault): void {
    // Where the header was is kept for the device's report of the drop; found
    // here, not in addSegment, so that well-formed chains do not pay for it.
    this.noteGatheredHead();
    this.fault = fault;
    this.readableCount = 0;
    this.writableCount = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
  }

  /** Takes the first non-empty readable buffer gathered so far as the head, unless one is noted already. */
  private noteGatheredHead(): boolean {
    if (this.headLen !== 0) return true;
    for (let i = 0; i < this.readableCount; i++) {
      const len = this.len[i]!;
      if (len !== 0) {
        this.headAddr = this.addr[i]!;
        this.headLen = len;
        return true;
      }
    }
    return false;
  }

  private grow(): void {
    this.grownBy += this.addr.length;
    const addr = new Float64Array(this.addr.length * 2);
    const len = new Uint32Array(this.len.length * 2);
    addr.set(this.addr);
    len.set(this.len);
    this.addr = addr;
    this.len = len;
  }
}

/**
 * Copies bytes of the chain's readable part, starting `offset` bytes into it,
 * into `dest`. Returns how many bytes were copied (fewer when the readable part ends).
 */
export function readFromChain(
  mem: GuestMemory,
  chain: Chain,
  offset: number,
  dest: Uint8Array,
  destOffset: number,
  length: number,
): number {
  return copyChain(mem, chain, 0, chain.readableCount, offset, dest, destOffset, length, false);
}

/**
 * Copies `length` bytes of `src` into the chain's writable part, starting
 * `offset` bytes into it. Returns how many bytes were written.
 */
export function writeToChain(
  mem: GuestMemory,
  chain: Chain,
  offset: number,
  src: Uint8Array,
  srcOffset: number,
  length: number,
): number {
  return copyChain(
    mem,
    chain,
    chain.readableCount,
    chain.readableCount + chain.writableCount,
    offset,
    src,
    srcOffset,
    length,
    true,
  );
}

function copyChain(
  mem: GuestMemory,
  chain: Chain,
  first: number,
  end: number,
  offset: number,
  buf: Uint8Array,
  bufOffset: number,
  length: number,
  toGuest: boolean,
): number {
  let skip = offset;
  let done = 0;
  for (let i = first; i < end && done < length; i++) {
    const segLen = chain.len[i]!;
    if (skip >= segLen) {
      skip -= segLen;
      continue;
    }
    const n = Math.min(segLen - skip, length - done);
    const a = chain.addr[i]! + skip;
    if (toGuest) mem.write(a, buf, bufOffset + done, n);
    else mem.read(a, buf, bufOffset + done, n);
    done += n;
    skip = 0;
  }
  return done;
}
