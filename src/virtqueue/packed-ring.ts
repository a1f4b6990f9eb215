import { GuestMemoryError, VirtqueueBrokenError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { type Chain, ChainFault } from "./chain.js";
import { ChainPool, chainBounds } from "./chain-pool.js";
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  VIRTQ_PACKED_DESC_F_AVAIL,
  VIRTQ_PACKED_DESC_F_INDIRECT,
  VIRTQ_PACKED_DESC_F_NEXT,
  VIRTQ_PACKED_DESC_F_USED,
  VIRTQ_PACKED_DESC_F_WRITE,
  VIRTQ_PACKED_DESC_SIZE,
  VIRTQ_PACKED_EVENT_F_WRAP_CTR,
  VIRTQ_PACKED_EVENT_SUPPRESS_SIZE,
  VIRTQ_PACKED_MAX_SIZE,
} from "./ring-constants.js";
import { checkArea, ringFault, usedLength } from "./ring-common.js";
import type { ChainState, DeviceQueue, QueueLayout, RingFeatures, RingState } from "./virtqueue.js";

/** Offsets inside a descriptor: le64 addr, le32 len, le16 id, le16 flags. */
const DESC_LEN = 8;
const DESC_ID = 12;
const DESC_FLAGS = 14;
/** Offsets inside an event suppression structure: le16 off_wrap, le16 flags. */
const EVENT_OFF_WRAP = 0;
const EVENT_FLAGS = 2;
const EVENT_OFF_MASK = (1 << VIRTQ_PACKED_EVENT_F_WRAP_CTR) - 1;
/** Both availability bits: set together in a used descriptor written in an odd lap. */
const USED_BOTH = VIRTQ_PACKED_DESC_F_AVAIL | VIRTQ_PACKED_DESC_F_USED;

/**
 * Whether `flags` mark a descriptor available in the lap where the wrap
 * counter is `wrap` (0 or 1): AVAIL equals the counter and USED does not (§2.8.1).
 */
function isAvail(flags: number, wrap: number): boolean {
  return ((flags >>> 7) & 1) === wrap && ((flags >>> 15) & 1) !== wrap;
}

/**
 * The device side of a packed virtqueue (virtio 1.3 §2.8).
 *
 * The device keeps two positions in the one descriptor ring, each an index
 * plus a wrap counter that starts at 1 and flips whenever the index wraps:
 * the next slot to read an available descriptor from, and the next slot to
 * write a used descriptor into. A chain occupies consecutive slots; the used
 * descriptor names its buffer id (the id of the chain's last descriptor) and
 * the used position then skips as many slots as the chain occupied.
 *
 * The three areas are checked against guest memory once, in the constructor;
 * every buffer and indirect table is checked with `contains()` before it is
 * used, so a hostile or buggy driver can only produce faulted chains. An
 * access to the ring areas that still fails (the memory map changed under the
 * queue) is reported as VirtqueueBrokenError.
 *
 * Chains come from a pool of at most `size` chains (every chain in flight
 * holds at least one ring slot), created on demand and reused after push().
 */
export class PackedQueue implements DeviceQueue {
  readonly size: number;
  private readonly mem: GuestMemory;
  private readonly indirect: boolean;
  private readonly eventIdx: boolean;

  private readonly descAddr: number;
  /** Driver event suppression: read by the device, controls used buffer notifications. */
  private readonly driverEventAddr: number;
  /** Device event suppression: written by the device, controls available buffer notifications. */
  private readonly deviceEventAddr: number;

  /** Next ring slot to read an available descriptor from, and its wrap counter. */
  private availIdx = 0;
  private availWrap = 1;
  /** Next ring slot to write a used descriptor into, and its wrap counter. */
  private usedIdx = 0;
  private usedWrap = 1;
  /** Ring slots the used position advanced since the last needsInterrupt() call. */
  private pushedSlots = 0;
  /** Ring slots held by chains in flight. */
  private slotsInFlight = 0;
  /**
   * Whether the device wants available buffer notifications. The device event
   * structure starts zeroed (ENABLE), so they start wanted.
   */
  private notify = true;

  private readonly pool: ChainPool;

  constructor(mem: GuestMemory, layout: QueueLayout, features: RingFeatures) {
    const size = layout.size;
    if (!Number.isInteger(size) || size < 1 || size > VIRTQ_PACKED_MAX_SIZE) {
      throw new VirtqueueBrokenError(`packed virtqueue size ${size} is not in 1..32768`);
    }
    this.mem = mem;
    this.size = size;
    this.indirect = features.indirect;
    this.eventIdx = features.eventIdx;
    this.pool = new ChainPool(chainBounds(features, size), size);

    checkArea("packed", mem, "descriptor ring", layout.descAddr, VIRTQ_PACKED_DESC_SIZE * size);
    checkArea("packed", mem, "driver event suppression", layout.driverAddr, VIRTQ_PACKED_EVENT_SUPPRESS_SIZE);
    checkArea("packed", mem, "device event suppression", layout.deviceAddr, VIRTQ_PACKED_EVENT_SUPPRESS_SIZE);

    this.descAddr = layout.descAddr;
    this.driverEventAddr = layout.driverAddr;
    this.deviceEventAddr = layout.deviceAddr;
  }

  get inFlight(): number {
    return this.pool.inFlight;
  }

  /** Chains created so far (the pool never holds more than `size`). */
  get chainsCreated(): number {
    return this.pool.created;
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
    const size = this.size;
    const base = this.descAddr;
    let idx = this.availIdx;
    let wrap = this.availWrap;
    let chain: Chain | null = null;
    try {
      // Flags first: only once they say "available" do the other fields belong
      // to this lap (the driver writes them before the flags, §2.8.21.1).
      let flags = mem.readU16(base + idx * VIRTQ_PACKED_DESC_SIZE + DESC_FLAGS);
      if (!isAvail(flags, wrap)) return null;

      chain = this.pool.take();
      let slots = 0;
      let id = 0;
      let fault: ChainFault = ChainFault.None;
      while (true) {
        const d = base + idx * VIRTQ_PACKED_DESC_SIZE;
        id = mem.readU16(d + DESC_ID);
        slots++;
        if (fault === ChainFault.None) fault = this.descriptor(chain, d, flags, slots);
        if (++idx === size) {
          idx = 0;
          wrap ^= 1;
        }
        if ((flags & VIRTQ_PACKED_DESC_F_NEXT) === 0) break;
        if (slots === size) {
          // NEXT still set after a whole ring of descriptors: the chain is longer
          // than the queue (§2.8.6). Its end is unknowable; consuming one full lap
          // is the only position that keeps the used side in step with a driver
          // that believes the ring holds nothing else.
          if (fault === ChainFault.None) fault = ChainFault.Loop;
          break;
        }
        flags = mem.readU16(base + idx * VIRTQ_PACKED_DESC_SIZE + DESC_FLAGS);
        if (!isAvail(flags, wrap)) {
          // The chain's NEXT flags run into a slot that is not available.
          //
          // A driver that follows §2.8.6/§2.8.21.1 writes every later descriptor of
          // a chain before it flips the head's flags, so this is either a driver
          // that publishes the head early and is still writing the rest, or a
          // broken driver. In the first case the chain will be complete on a
          // later pop; in the second the device cannot tell where the chain ends,
          // so any used descriptor it wrote would skip a wrong number of slots and
          // it might consume slots the driver still owns. Either way the right
          // answer is "nothing available yet": the position does not move, no
          // state changes, the caller sees null (never a hang: this returns at
          // once, and enableNotifications() applies the same test so a
          // "re-check after enabling" loop terminates). A driver that never
          // completes the chain only stalls its own queue.
          this.release(chain);
          chain = null;
          return null;
        }
      }

      // A valid ring never offers more slots than the device has not yet used:
      // the driver reuses a slot only after the device wrote a used descriptor
      // over it. More means the driver overwrote descriptors in flight.
      if (this.slotsInFlight + slots > size) {
        throw new VirtqueueBrokenError(
          `packed virtqueue: driver offers a ${slots}-slot chain with ${this.slotsInFlight} of ${size} slots in flight`,
        );
      }
      if (fault !== ChainFault.None) chain.fail(fault);
      this.pool.admit(chain);
      chain.id = id;
      chain.ringSlots = slots;
      this.slotsInFlight += slots;
      this.availIdx = idx;
      this.availWrap = wrap;
      // With EVENT_IDX the request follows the device: the driver is to notify when
      // it makes the slot after this chain available (as the split ring's avail_event does).
      if (this.eventIdx && this.notify) {
        mem.writeU16(this.deviceEventAddr + EVENT_OFF_WRAP, idx | (wrap << VIRTQ_PACKED_EVENT_F_WRAP_CTR));
      }
      return chain;
    } catch (e) {
      if (chain !== null) this.release(chain);
      throw ringFault("packed", e, "reading the descriptor ring");
    }
  }

  /**
   * Adds the ring descriptor at `d` (whose flags were already read) to the
   * chain, or returns the fault that stops it. `n` is its 1-based position in the chain.
   */
  private descriptor(chain: Chain, d: number, flags: number, n: number): ChainFault {
    const mem = this.mem;
    const addr = mem.readU64(d);
    const len = mem.readU32(d + DESC_LEN);
    if ((flags & VIRTQ_PACKED_DESC_F_INDIRECT) !== 0) {
      // §2.8.7: only with the feature, and only as the single descriptor of its
      // chain (never with NEXT, never after direct descriptors). Its WRITE flag is ignored.
      if (!this.indirect || n > 1 || (flags & VIRTQ_PACKED_DESC_F_NEXT) !== 0)
        return ChainFault.NestedIndirect;
      return this.indirectTable(chain, addr, len);
    }
    const writable = (flags & VIRTQ_PACKED_DESC_F_WRITE) !== 0;
    if (!writable && chain.writableCount > 0) return ChainFault.ReadableAfterWritable;
    if (n > this.pool.bounds.maxChain) return ChainFault.TooLong;
    // A zero-length buffer is never accessed, wherever it points.
    if (len !== 0 && !mem.contains(addr, len)) return ChainFault.OutsideMemory;
    chain.addSegment(addr, len, writable);
    return ChainFault.None;
  }

  /**
   * Adds the elements of an indirect table (§2.8.7): consecutive descriptors
   * filling `len` bytes, where only WRITE means anything. NEXT and the buffer
   * id are reserved and ignored; INDIRECT (reserved too) is refused as a
   * nested table, since a driver that sets it cannot mean a plain buffer.
   */
  private indirectTable(chain: Chain, table: number, len: number): ChainFault {
    if (len === 0 || len % VIRTQ_PACKED_DESC_SIZE !== 0) return ChainFault.BadIndirectTable;
    // §2.8.5 bounds a table by the queue size, but Linux's scatter-gather tables
    // can be longer: the device's own bound applies instead.
    const mem = this.mem;
    if (len / VIRTQ_PACKED_DESC_SIZE > this.pool.bounds.maxChain) {
      chain.noteHead(mem, table, DESC_FLAGS, VIRTQ_PACKED_DESC_F_WRITE);
      return ChainFault.TooLong;
    }
    if (!mem.contains(table, len)) return ChainFault.OutsideMemory;
    const end = table + len;
    try {
      for (let e = table; e < end; e += VIRTQ_PACKED_DESC_SIZE) {
        const flags = mem.readU16(e + DESC_FLAGS);
        if ((flags & VIRTQ_PACKED_DESC_F_INDIRECT) !== 0) return ChainFault.NestedIndirect;
        const addr = mem.readU64(e);
        const elen = mem.readU32(e + DESC_LEN);
        const writable = (flags & VIRTQ_PACKED_DESC_F_WRITE) !== 0;
        if (!writable && chain.writableCount > 0) return ChainFault.ReadableAfterWritable;
        if (elen !== 0 && !mem.contains(addr, elen)) return ChainFault.OutsideMemory;
        chain.addSegment(addr, elen, writable);
      }
    } catch (e) {
      // The table was checked with contains() just before; if reading it fails
      // anyway, only this chain is lost.
      if (e instanceof GuestMemoryError) return ChainFault.Unreadable;
      throw e;
    }
    return ChainFault.None;
  }

  push(chain: Chain, written: number): void {
    const slots = chain.ringSlots;
    // A chain that is not in flight (pushed twice) is ignored: writing it again
    // would hand the driver a buffer id it may already have reused.
    if (slots === 0) return;
    const len = usedLength(chain, written);
    const id = chain.id;
    this.release(chain);
    this.slotsInFlight -= slots;

    const d = this.descAddr + this.usedIdx * VIRTQ_PACKED_DESC_SIZE;
    // AVAIL and USED both equal the device's wrap counter; WRITE says data was written (§2.8.3).
    const flags = (this.usedWrap === 1 ? USED_BOTH : 0) | (len > 0 ? VIRTQ_PACKED_DESC_F_WRITE : 0);
    try {
      const mem = this.mem;
      mem.writeU32(d + DESC_LEN, len);
      mem.writeU16(d + DESC_ID, id);
      // The flags publish the descriptor, so they go last.
      mem.writeU16(d + DESC_FLAGS, flags);
    } catch (e) {
      throw ringFault("packed", e, "writing a used descriptor");
    }
    let u = this.usedIdx + slots;
    // slots <= size, so one subtraction is enough.
    if (u >= this.size) {
      u -= this.size;
      this.usedWrap ^= 1;
    }
    this.usedIdx = u;
    this.pushedSlots += slots;
  }

  needsInterrupt(): boolean {
    const pushed = this.pushedSlots;
    if (pushed === 0) return false;
    this.pushedSlots = 0;
    const mem = this.mem;
    let flags: number;
    let offWrap = 0;
    try {
      flags = mem.readU16(this.driverEventAddr + EVENT_FLAGS) & 3;
      if (flags === RING_EVENT_FLAGS_DESC && this.eventIdx)
        offWrap = mem.readU16(this.driverEventAddr + EVENT_OFF_WRAP);
    } catch (e) {
      throw ringFault("packed", e, "reading the driver event suppression structure");
    }
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    // ENABLE, the reserved value 3, and DESC without EVENT_IDX (where it is not
    // valid, §2.8.10) all mean "interrupt": a spurious interrupt is harmless, a missing one is not.
    if (flags !== RING_EVENT_FLAGS_DESC || !this.eventIdx) return true;
    // With a full lap pushed, the used position crossed every slot.
    if (pushed >= this.size) return true;
    // DESC: interrupt when the used position stepped over the named slot since the
    // last call, i.e. when it lies in [now - pushed, now). An offset in the other
    // lap is taken as the previous one (vring_need_event with the packed offset).
    let event = offWrap & EVENT_OFF_MASK;
    if (offWrap >>> VIRTQ_PACKED_EVENT_F_WRAP_CTR !== this.usedWrap) event -= this.size;
    const behind = this.usedIdx - event - 1;
    return behind >= 0 && behind < pushed;
  }

  enableNotifications(enabled: boolean): boolean {
    this.notify = enabled;
    const mem = this.mem;
    const ev = this.deviceEventAddr;
    try {
      if (!enabled) {
        mem.writeU16(ev + EVENT_FLAGS, RING_EVENT_FLAGS_DISABLE);
      } else if (this.eventIdx) {
        // Ask for a notification when the driver makes the next slot available
        // (the offset is written before the flags that make it meaningful);
        // pop() keeps the offset at the next slot while notifications stay enabled.
        mem.writeU16(ev + EVENT_OFF_WRAP, this.availIdx | (this.availWrap << VIRTQ_PACKED_EVENT_F_WRAP_CTR));
        mem.writeU16(ev + EVENT_FLAGS, RING_EVENT_FLAGS_DESC);
      } else {
        mem.writeU16(ev + EVENT_FLAGS, RING_EVENT_FLAGS_ENABLE);
      }
      return this.chainReady();
    } catch (e) {
      throw ringFault("packed", e, "updating the device event suppression structure");
    }
  }

  /**
   * Whether pop() would find a chain: the next slot and every slot its NEXT
   * flags lead to are available (the same test pop() applies, flags only).
   */
  private chainReady(): boolean {
    const mem = this.mem;
    const size = this.size;
    let idx = this.availIdx;
    let wrap = this.availWrap;
    let flags = mem.readU16(this.descAddr + idx * VIRTQ_PACKED_DESC_SIZE + DESC_FLAGS);
    if (!isAvail(flags, wrap)) return false;
    for (let n = 1; (flags & VIRTQ_PACKED_DESC_F_NEXT) !== 0 && n < size; n++) {
      if (++idx === size) {
        idx = 0;
        wrap ^= 1;
      }
      flags = mem.readU16(this.descAddr + idx * VIRTQ_PACKED_DESC_SIZE + DESC_FLAGS);
      if (!isAvail(flags, wrap)) return false;
    }
    return true;
  }

  /** vhost-user's packed form: bits 0-14 the next available slot, bit 15 its wrap counter. */
  getBase(): number {
    return this.availIdx | (this.availWrap << VIRTQ_PACKED_EVENT_F_WRAP_CTR);
  }

  /**
   * Sets the next available slot and wrap counter from vhost-user's packed
   * form, and the used position to the same values (the front-end restores a
   * ring with everything made available also used). Meant for a stopped
   * queue: chains in flight keep their slots in the accounting.
   */
  setBase(base: number): void {
    const idx = base & EVENT_OFF_MASK;
    if (!Number.isInteger(base) || idx >= this.size) {
      throw new VirtqueueBrokenError(
        `packed virtqueue base 0x${Number(base).toString(16)} is outside the ring`,
      );
    }
    const wrap = (base >>> VIRTQ_PACKED_EVENT_F_WRAP_CTR) & 1;
    this.availIdx = idx;
    this.availWrap = wrap;
    this.usedIdx = idx;
    this.usedWrap = wrap;
    this.pushedSlots = 0;
    if (this.eventIdx && this.notify) {
      try {
        this.mem.writeU16(this.deviceEventAddr + EVENT_OFF_WRAP, this.getBase());
      } catch (e) {
        throw ringFault("packed", e, "updating the device event suppression structure");
      }
    }
  }

  saveState(): RingState {
    return {
      kind: "packed",
      availIdx: this.availIdx,
      availWrap: this.availWrap,
      usedIdx: this.usedIdx,
      usedWrap: this.usedWrap,
      pushedSlots: this.pushedSlots,
      notify: this.notify,
    };
  }

  restoreState(state: RingState): void {
    const slot = (v: number): boolean => Number.isInteger(v) && v >= 0 && v < this.size;
    const bit = (v: number): boolean => v === 0 || v === 1;
    if (
      state.kind !== "packed" ||
      !slot(state.availIdx) ||
      !slot(state.usedIdx) ||
      !bit(state.availWrap) ||
      !bit(state.usedWrap) ||
      !Number.isInteger(state.pushedSlots) ||
      state.pushedSlots < 0
    ) {
      throw new VirtqueueBrokenError("saved packed ring state does not fit this queue");
    }
    this.availIdx = state.availIdx;
    this.availWrap = state.availWrap;
    this.usedIdx = state.usedIdx;
    this.usedWrap = state.usedWrap;
    this.pushedSlots = state.pushedSlots;
    this.notify = state.notify === true;
  }

  adoptChain(state: ChainState): Chain {
    const slots = state.ringSlots;
    if (!Number.isInteger(slots) || slots < 1 || this.slotsInFlight + slots > this.size) {
      throw new VirtqueueBrokenError(`saved chain ${state.id} does not fit this packed ring`);
    }
    const chain = this.pool.adopt(state, this.mem);
    this.slotsInFlight += slots;
    return chain;
  }

  /** Takes a chain out of flight and back into the pool (slotsInFlight <= size keeps the pool at `size` chains at most). */
  private release(chain: Chain): void {
    this.pool.release(chain);
  }
}
