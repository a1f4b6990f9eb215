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
}

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
  addr: Float64Array;
  len: Uint32Array;

  constructor(capacity = 8) {
    this.addr = new Float64Array(capacity);
    this.len = new Uint32Array(capacity);
  }

  get segmentCount(): number {
    return this.readableCount + this.writableCount;
  }

  reset(): void {
    this.id = 0;
    this.ringSlots = 0;
    this.readableCount = 0;
    this.writableCount = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
    this.fault = ChainFault.None;
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

  /** Marks the chain malformed and drops whatever segments were gathered. */
  fail(fault: ChainFault): void {
    this.fault = fault;
    this.readableCount = 0;
    this.writableCount = 0;
    this.readableBytes = 0;
    this.writableBytes = 0;
  }

  private grow(): void {
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
