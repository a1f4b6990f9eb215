/**
 * Guest-side drivers for the TX/RX queues of the benchmark: real split and
 * packed rings in guest memory, driven as Linux's virtio_ring and
 * sound/virtio do it, but without the test driver's conveniences (it returns a
 * fresh object per used element and takes arrays of buffers per add), so that
 * the measured loop allocates nothing on the guest side.
 *
 * Every I/O message is a fixed slot: [xfer header (R), data (R for TX, W for
 * RX), status (W)], three descriptors, the data one contiguous, as
 * virtsnd_pcm_msg_alloc builds it for a physically contiguous buffer.
 */
import type { GuestMemory } from "../src/memory/guest-memory.js";
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_PACKED_DESC_F_AVAIL,
  VIRTQ_PACKED_DESC_F_NEXT,
  VIRTQ_PACKED_DESC_F_USED,
  VIRTQ_PACKED_DESC_F_WRITE,
  VIRTQ_PACKED_DESC_SIZE,
  VIRTQ_PACKED_EVENT_F_WRAP_CTR,
  VIRTQ_PACKED_EVENT_SUPPRESS_SIZE,
  VIRTQ_USED_ELEM_SIZE,
} from "../src/virtqueue/ring-constants.js";
import type { QueueLayout } from "../src/virtqueue/virtqueue.js";

/** The guest addresses of the message slots (one per period of the ALSA buffer). */
export interface MessageSlots {
  readonly hdr: Float64Array;
  readonly data: Float64Array;
  readonly status: Float64Array;
  readonly dataLen: number;
  /** RX: the data descriptor is device-writable. */
  readonly rx: boolean;
}

/** The driver side of one I/O queue. */
export interface IoRing {
  readonly layout: QueueLayout;
  /** Makes message `slot` available (virtqueue_add_sgs with 2 out + 1 in, or 1 out + 2 in). */
  add(slot: number): void;
  /** virtqueue_kick_prepare: whether the device wants a notification for what was added. */
  kickNeeded(): boolean;
  /** virtqueue_get_buf: the slot of the next used message, or -1; its used length in `usedLen`. */
  getUsed(): number;
  usedLen: number;
  /** virtqueue_enable_cb: ask for an interrupt at the next used message; true if one is already there. */
  enableCb(): boolean;
}

const OFF_MASK = (1 << VIRTQ_PACKED_EVENT_F_WRAP_CTR) - 1;
const DESCS_PER_MSG = 3;

/** A split ring (§2.7) with EVENT_IDX: free list of descriptors, avail ring, used_event/avail_event. */
export class LeanSplitRing implements IoRing {
  readonly layout: QueueLayout;
  usedLen = 0;
  private readonly mask: number;
  private readonly next: Uint16Array;
  private readonly slotOfHead: Int32Array;
  private readonly tailOfHead: Uint16Array;
  private freeHead = 0;
  private free: number;
  private availIdx = 0;
  private added = 0;
  private lastUsed = 0;
  private readonly availIdxAddr: number;
  private readonly availRing: number;
  private readonly usedEventAddr: number;
  private readonly usedIdxAddr: number;
  private readonly usedRing: number;
  private readonly availEventAddr: number;

  constructor(
    private readonly mem: GuestMemory,
    alloc: (size: number, align: number) => number,
    private readonly size: number,
    private readonly slots: MessageSlots,
  ) {
    const desc = alloc(VIRTQ_DESC_SIZE * size, 16);
    const avail = alloc(6 + 2 * size, 2);
    const used = alloc(6 + VIRTQ_USED_ELEM_SIZE * size, 4);
    mem.fill(desc, VIRTQ_DESC_SIZE * size, 0);
    mem.fill(avail, 6 + 2 * size, 0);
    mem.fill(used, 6 + VIRTQ_USED_ELEM_SIZE * size, 0);
    this.layout = { size, descAddr: desc, driverAddr: avail, deviceAddr: used };
    this.mask = size - 1;
    this.next = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.next[i] = (i + 1) & 0xffff;
    this.free = size;
    this.slotOfHead = new Int32Array(size).fill(-1);
    this.tailOfHead = new Uint16Array(size);
    this.availIdxAddr = avail + 2;
    this.availRing = avail + 4;
    this.usedEventAddr = avail + 4 + 2 * size;
    this.usedIdxAddr = used + 2;
    this.usedRing = used + 4;
    this.availEventAddr = used + 4 + VIRTQ_USED_ELEM_SIZE * size;
  }

  add(slot: number): void {
    if (this.free < DESCS_PER_MSG) throw new Error("split ring full");
    const mem = this.mem;
    const s = this.slots;
    const head = this.freeHead;
    const d1 = this.next[head]!;
    const d2 = this.next[d1]!;
    const desc = this.layout.descAddr;
    this.writeDesc(desc + head * VIRTQ_DESC_SIZE, s.hdr[slot]!, 4, VIRTQ_DESC_F_NEXT, d1);
    this.writeDesc(
      desc + d1 * VIRTQ_DESC_SIZE,
      s.data[slot]!,
      s.dataLen,
      VIRTQ_DESC_F_NEXT | (s.rx ? VIRTQ_DESC_F_WRITE : 0),
      d2,
    );
    this.writeDesc(desc + d2 * VIRTQ_DESC_SIZE, s.status[slot]!, 8, VIRTQ_DESC_F_WRITE, 0);
    this.freeHead = this.next[d2]!;
    this.free -= DESCS_PER_MSG;
    this.slotOfHead[head] = slot;
    this.tailOfHead[head] = d2;
    // The ring entry before the index that publishes it.
    mem.writeU16(this.availRing + 2 * (this.availIdx & this.mask), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    mem.writeU16(this.availIdxAddr, this.availIdx);
    this.added++;
  }

  kickNeeded(): boolean {
    const added = this.added;
    if (added === 0) return false;
    this.added = 0;
    const event = this.mem.readU16(this.availEventAddr);
    const now = this.availIdx;
    // vring_need_event(event, new, old)
    return ((now - event - 1) & 0xffff) < (added & 0xffff);
  }

  getUsed(): number {
    const mem = this.mem;
    if (mem.readU16(this.usedIdxAddr) === this.lastUsed) return -1;
    const elem = this.usedRing + VIRTQ_USED_ELEM_SIZE * (this.lastUsed & this.mask);
    const id = mem.readU32(elem);
    this.usedLen = mem.readU32(elem + 4);
    const slot = id < this.size ? this.slotOfHead[id]! : -1;
    if (slot < 0) throw new Error(`device used head ${id}, which is not in flight`);
    this.slotOfHead[id] = -1;
    this.next[this.tailOfHead[id]!] = this.freeHead;
    this.freeHead = id;
    this.free += DESCS_PER_MSG;
    this.lastUsed = (this.lastUsed + 1) & 0xffff;
    return slot;
  }

  enableCb(): boolean {
    const mem = this.mem;
    mem.writeU16(this.usedEventAddr, this.lastUsed);
    return mem.readU16(this.usedIdxAddr) !== this.lastUsed;
  }

  private writeDesc(at: number, addr: number, len: number, flags: number, next: number): void {
    const mem = this.mem;
    mem.writeU64(at, addr);
    mem.writeU32(at + 8, len);
    mem.writeU16(at + 12, flags);
    mem.writeU16(at + 14, next);
  }
}

/** A packed ring (§2.8) with EVENT_IDX: the buffer id is the message slot. */
export class LeanPackedRing implements IoRing {
  readonly layout: QueueLayout;
  usedLen = 0;
  private nextAvail = 0;
  private availWrap = 1;
  private nextUsed = 0;
  private usedWrap = 1;
  private numFree: number;
  private added = 0;
  private readonly inFlight: Uint8Array;

  constructor(
    private readonly mem: GuestMemory,
    alloc: (size: number, align: number) => number,
    private readonly size: number,
    private readonly slots: MessageSlots,
  ) {
    const desc = alloc(VIRTQ_PACKED_DESC_SIZE * size, 16);
    const driverEv = alloc(VIRTQ_PACKED_EVENT_SUPPRESS_SIZE, 4);
    const deviceEv = alloc(VIRTQ_PACKED_EVENT_SUPPRESS_SIZE, 4);
    mem.fill(desc, VIRTQ_PACKED_DESC_SIZE * size, 0);
    mem.fill(driverEv, VIRTQ_PACKED_EVENT_SUPPRESS_SIZE, 0);
    mem.fill(deviceEv, VIRTQ_PACKED_EVENT_SUPPRESS_SIZE, 0);
    this.layout = { size, descAddr: desc, driverAddr: driverEv, deviceAddr: deviceEv };
    this.numFree = size;
    this.inFlight = new Uint8Array(size);
    // EVENT_IDX negotiated: Linux switches the driver event structure to DESC mode.
    mem.writeU16(driverEv, this.usedOffWrap());
    mem.writeU16(driverEv + 2, RING_EVENT_FLAGS_DESC);
  }

  add(slot: number): void {
    if (this.numFree < DESCS_PER_MSG) throw new Error("packed ring full");
    const s = this.slots;
    const head = this.nextAvail;
    const headFlags = this.availBits() | VIRTQ_PACKED_DESC_F_NEXT;
    this.desc(s.hdr[slot]!, 4, slot, -1);
    this.desc(
      s.data[slot]!,
      s.dataLen,
      slot,
      this.availBits() | VIRTQ_PACKED_DESC_F_NEXT | (s.rx ? VIRTQ_PACKED_DESC_F_WRITE : 0),
    );
    this.desc(s.status[slot]!, 8, slot, this.availBits() | VIRTQ_PACKED_DESC_F_WRITE);
    // The head's flags publish the chain, so they go last (§2.8.6).
    this.mem.writeU16(this.layout.descAddr + head * VIRTQ_PACKED_DESC_SIZE + 14, headFlags);
    this.inFlight[slot] = 1;
    this.numFree -= DESCS_PER_MSG;
    this.added += DESCS_PER_MSG;
  }

  kickNeeded(): boolean {
    const added = this.added;
    if (added === 0) return false;
    this.added = 0;
    const ev = this.layout.deviceAddr;
    const flags = this.mem.readU16(ev + 2) & 3;
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    if (flags !== RING_EVENT_FLAGS_DESC) return true;
    const offWrap = this.mem.readU16(ev);
    let event = offWrap & OFF_MASK;
    if (offWrap >>> VIRTQ_PACKED_EVENT_F_WRAP_CTR !== this.availWrap) event -= this.size;
    const now = this.nextAvail;
    return ((now - event - 1) & 0xffff) < (added & 0xffff);
  }

  getUsed(): number {
    const mem = this.mem;
    const d = this.layout.descAddr + this.nextUsed * VIRTQ_PACKED_DESC_SIZE;
    const flags = mem.readU16(d + 14);
    const avail = (flags >>> 7) & 1;
    const used = (flags >>> 15) & 1;
    if (avail !== used || used !== this.usedWrap) return -1;
    const id = mem.readU16(d + 12);
    this.usedLen = mem.readU32(d + 8);
    if (id >= this.size || this.inFlight[id] === 0) throw new Error(`device used id ${id}, not in flight`);
    this.inFlight[id] = 0;
    this.numFree += DESCS_PER_MSG;
    let u = this.nextUsed + DESCS_PER_MSG;
    if (u >= this.size) {
      u -= this.size;
      this.usedWrap ^= 1;
    }
    this.nextUsed = u;
    return id;
  }

  enableCb(): boolean {
    this.mem.writeU16(this.layout.driverAddr, this.usedOffWrap());
    const flags = this.mem.readU16(this.layout.descAddr + this.nextUsed * VIRTQ_PACKED_DESC_SIZE + 14);
    return ((flags >>> 7) & 1) === this.usedWrap && ((flags >>> 15) & 1) === this.usedWrap;
  }

  private usedOffWrap(): number {
    return this.nextUsed | (this.usedWrap << VIRTQ_PACKED_EVENT_F_WRAP_CTR);
  }

  private availBits(): number {
    return this.availWrap === 1 ? VIRTQ_PACKED_DESC_F_AVAIL : VIRTQ_PACKED_DESC_F_USED;
  }

  /** Writes the descriptor at the next ring slot; flags -1 leaves them for the caller (the head). */
  private desc(addr: number, len: number, id: number, flags: number): void {
    const mem = this.mem;
    const d = this.layout.descAddr + this.nextAvail * VIRTQ_PACKED_DESC_SIZE;
    mem.writeU64(d, addr);
    mem.writeU32(d + 8, len);
    mem.writeU16(d + 12, id);
    if (flags >= 0) mem.writeU16(d + 14, flags);
    if (++this.nextAvail === this.size) {
      this.nextAvail = 0;
      this.availWrap ^= 1;
    }
  }
}
