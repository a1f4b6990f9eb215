import { GuestMemoryError, VirtqueueBrokenError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { type Chain, ChainFault } from "./chain.js";
import { ChainPool, chainBounds } from "./chain-pool.js";
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_SPLIT_MAX_SIZE,
  VIRTQ_USED_ELEM_SIZE,
  VIRTQ_USED_F_NO_NOTIFY,
} from "./ring-constants.js";
import { checkArea, ringFault, usedLength } from "./ring-common.js";
import type { ChainState, DeviceQueue, QueueLayout, RingFeatures, RingState } from "./virtqueue.js";

/**
 * The device side of a split virtqueue (virtio 1.3 §2.7).
 *
 * The three areas are checked against guest memory once, in the constructor;
 * every descriptor buffer and indirect table is checked with `contains()`
 * before it is used, so a hostile or buggy driver can only produce faulted
 * chains. An access to the ring areas that still fails (the memory map changed
 * under the queue) is reported as VirtqueueBrokenError.
 *
 * Chains come from a pool of at most `size` chains, created on demand and
 * reused after push(), so steady operation allocates nothing.
 */
export class SplitQueue implements DeviceQueue {
  readonly size: number;
  private readonly mem: GuestMemory;
  private readonly mask: number;
  private readonly indirect: boolean;
  private readonly eventIdx: boolean;

  private readonly descAddr: number;
  private readonly availFlagsAddr: number;
  private readonly availIdxAddr: number;
  private readonly availRingAddr: number;
  private readonly usedEventAddr: number;
  private readonly usedFlagsAddr: number;
  private readonly usedIdxAddr: number;
  private readonly usedRingAddr: number;
  private readonly availEventAddr: number;

  /** Next available ring index to read (16 bits). */
  private lastAvail = 0;
  /** Next used ring index to write (16 bits). */
  private usedIdx = 0;
  /** Used index at the last needsInterrupt() call. */
  private signalledUsed = 0;
  /** Elements pushed since the last needsInterrupt() call (not wrapped). */
  private pushedSinceCheck = 0;
  /** Whether the device currently wants available buffer notifications. */
  private notify = true;

  /** Chains pushed back, ready for reuse; at most `size` chains ever exist. */
  private readonly pool: ChainPool;

  constructor(mem: GuestMemory, layout: QueueLayout, features: RingFeatures) {
    const size = layout.size;
    if (!Number.isInteger(size) || size < 1 || size > VIRTQ_SPLIT_MAX_SIZE || (size & (size - 1)) !== 0) {
      throw new VirtqueueBrokenError(`split virtqueue size ${size} is not a power of 2 in 1..32768`);
    }
    this.mem = mem;
    this.size = size;
    this.mask = size - 1;
    this.indirect = features.indirect;
    this.eventIdx = features.eventIdx;
    this.pool = new ChainPool(chainBounds(features, size), size);

    // The event fields at the ends of the rings exist only with EVENT_IDX (§2.7.6, §2.7.8).
    const eventBytes = features.eventIdx ? 2 : 0;
    checkArea("split", mem, "descriptor table", layout.descAddr, VIRTQ_DESC_SIZE * size);
    checkArea("split", mem, "available ring", layout.driverAddr, 4 + 2 * size + eventBytes);
    checkArea("split", mem, "used ring", layout.deviceAddr, 4 + VIRTQ_USED_ELEM_SIZE * size + eventBytes);

    this.descAddr = layout.descAddr;
    this.availFlagsAddr = layout.driverAddr;
    this.availIdxAddr = layout.driverAddr + 2;
    this.availRingAddr = layout.driverAddr + 4;
    this.usedEventAddr = layout.driverAddr + 4 + 2 * size;
    this.usedFlagsAddr = layout.deviceAddr;
    this.usedIdxAddr = layout.deviceAddr + 2;
    this.usedRingAddr = layout.deviceAddr + 4;
    this.availEventAddr = layout.deviceAddr + 4 + VIRTQ_USED_ELEM_SIZE * size;
  }

  get inFlight(): number {
    return this.pool.inFlight;
  }

  /** Segments held by chains in flight, and the segment capacity of every chain created (host memory). */
  get segmentsHeld(): number {
    return this.pool.segmentsHeld;
  }

  get segmentCapacity(): number {
    return this.pool.segmentCapacity;
  }

  pop(): Chain | null {
    const mem = this.mem;
    const last = this.lastAvail;
    let chain: Chain | null = null;
    try {
      const pending = (mem.readU16(this.availIdxAddr) - last) & 0xffff;
      if (pending === 0) return null;
      if (pending > this.size) {
        throw new VirtqueueBrokenError(
          `available index moved by ${pending}, more than the queue size ${this.size} (last seen ${last})`,
        );
      }
      // Every in-flight and every available chain holds at least one descriptor of its own.
      if (this.pool.inFlight + pending > this.size) {
        throw new VirtqueueBrokenError(
          `driver offers ${pending} chains with ${this.pool.inFlight} in flight, more than the queue size ${this.size}`,
        );
      }
      const head = mem.readU16(this.availRingAddr + 2 * (last & this.mask));
      const next = (last + 1) & 0xffff;
      this.lastAvail = next;
      if (this.eventIdx && this.notify) mem.writeU16(this.availEventAddr, next);

      // popped + pending <= size was checked above, so at most `size` chains are ever created.
      chain = this.pool.take();
      chain.id = head;
      chain.ringSlots = 1;
      this.walk(chain, head);
      this.pool.admit(chain);
      return chain;
    } catch (e) {
      if (chain !== null) this.release(chain);
      throw ringFault("split", e, "reading the available ring");
    }
  }

  /**
   * Flattens the chain at `head` into `chain`, or marks it faulted. Throws
   * GuestMemoryError only when the (already validated) descriptor table
   * cannot be read.
   */
  private walk(chain: Chain, head: number): void {
    const size = this.size;
    if (head >= size) {
      chain.fail(ChainFault.BadIndex);
      return;
    }
    const mem = this.mem;
    const maxChain = this.pool.bounds.maxChain;
    let table = this.descAddr;
    let entries = size;
    let i = head;
    /** Descriptors in the chain so far, and in the current table (a loop shows as more than the table holds). */
    let count = 0;
    let inTable = 0;
    let inIndirect = false;
    let sawWritable = false;
    try {
      while (true) {
        const d = table + i * VIRTQ_DESC_SIZE;
        const addr = mem.readU64(d);
        const len = mem.readU32(d + 8);
        const flags = mem.readU16(d + 12);

        if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
          // §2.7.5.3: only with the feature, never with NEXT, never inside a table;
          // the WRITE flag of this descriptor is ignored.
          if (inIndirect || !this.indirect || (flags & VIRTQ_DESC_F_NEXT) !== 0) {
            chain.fail(ChainFault.NestedIndirect);
            return;
          }
          if (len === 0 || len % VIRTQ_DESC_SIZE !== 0) {
            chain.fail(ChainFault.BadIndirectTable);
            return;
          }
          // Linux's tables may be longer than the queue (§2.7.5.3.1 notwithstanding):
          // the device's own bound applies, to the table and the chain together.
          if (count + len / VIRTQ_DESC_SIZE > maxChain) {
            chain.noteHead(mem, addr, 12, VIRTQ_DESC_F_WRITE);
            chain.fail(ChainFault.TooLong);
            return;
          }
          if (!mem.contains(addr, len)) {
            chain.fail(ChainFault.OutsideMemory);
            return;
          }
          table = addr;
          entries = len / VIRTQ_DESC_SIZE;
          i = 0;
          inTable = 0;
          inIndirect = true;
          continue;
        }

        // A loop in either table shows up as more descriptors than the table holds.
        if (++inTable > entries) {
          chain.fail(ChainFault.Loop);
          return;
        }
        if (++count > maxChain) {
          chain.fail(ChainFault.TooLong);
          return;
        }
        const writable = (flags & VIRTQ_DESC_F_WRITE) !== 0;
        if (writable) {
          sawWritable = true;
        } else if (sawWritable) {
          chain.fail(ChainFault.ReadableAfterWritable);
          return;
        }
        // A zero-length buffer is never accessed, wherever it points.
        if (len !== 0 && !mem.contains(addr, len)) {
          chain.fail(ChainFault.OutsideMemory);
          return;
        }
        chain.addSegment(addr, len, writable);

        if ((flags & VIRTQ_DESC_F_NEXT) === 0) return;
        i = mem.readU16(d + 14);
        if (i >= entries) {
          chain.fail(ChainFault.BadIndex);
          return;
        }
      }
    } catch (e) {
      // An indirect table was checked with contains() just before; if reading it
      // fails anyway, only this chain is lost.
      if (inIndirect && e instanceof GuestMemoryError) {
        chain.fail(ChainFault.Unreadable);
        return;
      }
      throw e;
    }
  }

  push(chain: Chain, written: number): void {
    // A chain that is not in flight (pushed twice) is ignored: writing it again
    // would hand the driver a head it may already have reused.
    if (chain.ringSlots === 0) return;
    const len = usedLength(chain, written);
    const id = chain.id;
    this.release(chain);

    const mem = this.mem;
    const idx = this.usedIdx;
    const elem = this.usedRingAddr + VIRTQ_USED_ELEM_SIZE * (idx & this.mask);
    try {
      mem.writeU32(elem, id);
      mem.writeU32(elem + 4, len);
      // The element is complete before the index that publishes it moves (§2.7.8).
      const next = (idx + 1) & 0xffff;
      mem.writeU16(this.usedIdxAddr, next);
      this.usedIdx = next;
      this.pushedSinceCheck++;
    } catch (e) {
      throw ringFault("split", e, "writing the used ring");
    }
  }

  needsInterrupt(): boolean {
    const pushed = this.pushedSinceCheck;
    if (pushed === 0) return false;
    const old = this.signalledUsed;
    const now = this.usedIdx;
    this.pushedSinceCheck = 0;
    this.signalledUsed = now;
    try {
      if (this.eventIdx) {
        // The 16-bit comparison below cannot see a full lap of the index.
        if (pushed >= 0x10000) return true;
        const usedEvent = this.mem.readU16(this.usedEventAddr);
        // vring_need_event: did the used index step past used_event since `old`?
        return ((now - usedEvent - 1) & 0xffff) < ((now - old) & 0xffff);
      }
      return (this.mem.readU16(this.availFlagsAddr) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
    } catch (e) {
      throw ringFault("split", e, "reading the available ring");
    }
  }

  enableNotifications(enabled: boolean): boolean {
    this.notify = enabled;
    const mem = this.mem;
    try {
      if (this.eventIdx) {
        // Disabling needs no write: the driver notifies at most once more, when it
        // reaches the stale avail_event.
        if (enabled) mem.writeU16(this.availEventAddr, this.lastAvail);
      } else {
        mem.writeU16(this.usedFlagsAddr, enabled ? 0 : VIRTQ_USED_F_NO_NOTIFY);
      }
      return mem.readU16(this.availIdxAddr) !== this.lastAvail;
    } catch (e) {
      throw ringFault("split", e, "updating notification suppression");
    }
  }

  getBase(): number {
    return this.lastAvail;
  }

  /**
   * Sets the next available index to read and, as vhost-user does for split
   * rings, the next used index to write. Chains in flight stay valid.
   */
  setBase(base: number): void {
    const b = base & 0xffff;
    this.lastAvail = b;
    this.usedIdx = b;
    this.signalledUsed = b;
    this.pushedSinceCheck = 0;
  }

  saveState(): RingState {
    return {
      kind: "split",
      lastAvail: this.lastAvail,
      usedIdx: this.usedIdx,
      signalledUsed: this.signalledUsed,
      pushedSinceCheck: this.pushedSinceCheck,
      notify: this.notify,
    };
  }

  restoreState(state: RingState): void {
    const u16 = (v: number): boolean => Number.isInteger(v) && v >= 0 && v <= 0xffff;
    if (
      state.kind !== "split" ||
      !u16(state.lastAvail) ||
      !u16(state.usedIdx) ||
      !u16(state.signalledUsed) ||
      !Number.isInteger(state.pushedSinceCheck) ||
      state.pushedSinceCheck < 0
    ) {
      throw new VirtqueueBrokenError("saved split ring state does not fit this queue");
    }
    this.lastAvail = state.lastAvail;
    this.usedIdx = state.usedIdx;
    this.signalledUsed = state.signalledUsed;
    this.pushedSinceCheck = state.pushedSinceCheck;
    this.notify = state.notify === true;
  }

  adoptChain(state: ChainState): Chain {
    if (!Number.isInteger(state.id) || state.id < 0 || state.id >= this.size || state.ringSlots !== 1) {
      throw new VirtqueueBrokenError(`saved chain ${state.id} does not fit this split ring`);
    }
    return this.pool.adopt(state, this.mem);
  }

  private release(chain: Chain): void {
    this.pool.release(chain);
  }
}
