import { VirtioSndError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
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
} from "../virtqueue/ring-constants.js";
import type { QueueLayout } from "../virtqueue/virtqueue.js";
import type { Buf, DriverQueue, DriverQueueOptions, Used } from "./driver-queue.js";
import { needEvent } from "./split-driver.js";

const OFF_MASK = (1 << VIRTQ_PACKED_EVENT_F_WRAP_CTR) - 1;

/**
 * The driver side of a packed virtqueue (virtio 1.3 §2.8), after Linux's
 * virtio_ring: descriptors are written in ring order with the head's flags
 * last, each buffer id remembers how many ring slots its chain took, and
 * notifications follow the two event suppression structures.
 */
export class PackedDriverQueue implements DriverQueue {
  readonly layout: QueueLayout;
  private readonly mem: GuestMemory;
  private readonly alloc: (size: number, align: number) => number;
  private readonly size: number;
  private readonly eventIdx: boolean;
  private readonly useIndirect: boolean;

  /** Next slot to make available, and the driver ring wrap counter. */
  private nextAvail = 0;
  private availWrap = 1;
  /** Next slot to look for a used descriptor in, and its wrap counter. */
  private nextUsed = 0;
  private usedWrap = 1;
  /** Ring slots not held by a chain the device has not used yet. */
  private numFree: number;
  /** Ring slots made available since the last kickNeeded(). */
  private numAdded = 0;

  private readonly freeIds: number[] = [];
  /** Per buffer id: ring slots its chain occupies (0 when the id is free). */
  private readonly slotsOf: Int32Array;
  private readonly tokenOf: Float64Array;
  /** Per buffer id: its indirect table (reused), and how many entries it holds. */
  private readonly tableAddr: Float64Array;
  private readonly tableCap: Int32Array;
  private nextToken = 1;

  /**
   * `indirect` makes add() put chains of more than one buffer into an indirect
   * table unless the call says otherwise (as Linux does once the feature is negotiated).
   */
  constructor(opts: DriverQueueOptions & { indirect?: boolean }) {
    const { mem, alloc, size } = opts;
    if (!Number.isInteger(size) || size < 1 || size > 32768)
      throw new VirtioSndError("ERR_DRIVER", `bad packed queue size ${size}`);
    this.mem = mem;
    this.alloc = alloc;
    this.size = size;
    this.eventIdx = opts.eventIdx;
    this.useIndirect = opts.indirect ?? false;
    this.numFree = size;

    const descAddr = alloc(VIRTQ_PACKED_DESC_SIZE * size, 16);
    const driverAddr = alloc(VIRTQ_PACKED_EVENT_SUPPRESS_SIZE, 4);
    const deviceAddr = alloc(VIRTQ_PACKED_EVENT_SUPPRESS_SIZE, 4);
    // The descriptor ring starts zeroed (§2.8.13); both structures say ENABLE.
    mem.fill(descAddr, VIRTQ_PACKED_DESC_SIZE * size, 0);
    mem.fill(driverAddr, VIRTQ_PACKED_EVENT_SUPPRESS_SIZE, 0);
    mem.fill(deviceAddr, VIRTQ_PACKED_EVENT_SUPPRESS_SIZE, 0);
    this.layout = { size, descAddr, driverAddr, deviceAddr };

    for (let id = size - 1; id >= 0; id--) this.freeIds.push(id);
    this.slotsOf = new Int32Array(size);
    this.tokenOf = new Float64Array(size);
    this.tableAddr = new Float64Array(size);
    this.tableCap = new Int32Array(size);
  }

  get freeCount(): number {
    return this.numFree;
  }

  /** The next slot to make available, with the wrap counter in bit 15 (vhost-user's form). */
  get availOffWrap(): number {
    return this.nextAvail | (this.availWrap << VIRTQ_PACKED_EVENT_F_WRAP_CTR);
  }

  /** The next slot a used descriptor is expected in, with the wrap counter in bit 15. */
  get usedOffWrap(): number {
    return this.nextUsed | (this.usedWrap << VIRTQ_PACKED_EVENT_F_WRAP_CTR);
  }

  add(out: readonly Buf[], inn: readonly Buf[], opts?: { indirect?: boolean }): number {
    const total = out.length + inn.length;
    if (total === 0) throw new VirtioSndError("ERR_DRIVER", "a chain needs at least one buffer");
    const indirect = opts?.indirect ?? (this.useIndirect && total > 1);
    const slots = indirect ? 1 : total;
    if (slots > this.numFree || this.freeIds.length === 0)
      throw new VirtioSndError("ERR_DRIVER", "packed ring full");
    const id = this.freeIds.pop()!;
    const mem = this.mem;
    const desc = this.layout.descAddr;

    const head = this.nextAvail;
    let headFlags = 0;
    if (indirect) {
      const table = this.table(id, total);
      for (let i = 0; i < total; i++) {
        const b = i < out.length ? out[i]! : inn[i - out.length]!;
        const e = table + i * VIRTQ_PACKED_DESC_SIZE;
        mem.writeU64(e, b.addr);
        mem.writeU32(e + 8, b.len);
        mem.writeU16(e + 12, 0);
        mem.writeU16(e + 14, i < out.length ? 0 : VIRTQ_PACKED_DESC_F_WRITE);
      }
      const d = desc + head * VIRTQ_PACKED_DESC_SIZE;
      mem.writeU64(d, table);
      mem.writeU32(d + 8, total * VIRTQ_PACKED_DESC_SIZE);
      mem.writeU16(d + 12, id);
      headFlags = VIRTQ_PACKED_DESC_F_INDIRECT | this.availBits();
      this.advanceAvail();
    } else {
      for (let i = 0; i < total; i++) {
        const b = i < out.length ? out[i]! : inn[i - out.length]!;
        const d = desc + this.nextAvail * VIRTQ_PACKED_DESC_SIZE;
        mem.writeU64(d, b.addr);
        mem.writeU32(d + 8, b.len);
        // Linux writes the id into every descriptor; the device reads the last one's.
        mem.writeU16(d + 12, id);
        const flags =
          (i < out.length ? 0 : VIRTQ_PACKED_DESC_F_WRITE) |
          (i < total - 1 ? VIRTQ_PACKED_DESC_F_NEXT : 0) |
          this.availBits();
        if (i === 0) headFlags = flags;
        else mem.writeU16(d + 14, flags);
        this.advanceAvail();
      }
    }
    // The head's flags publish the whole chain, so they go last (§2.8.6).
    mem.writeU16(desc + head * VIRTQ_PACKED_DESC_SIZE + 14, headFlags);

    const token = this.nextToken++;
    this.slotsOf[id] = slots;
    this.tokenOf[id] = token;
    this.numFree -= slots;
    this.numAdded += slots;
    return token;
  }

  kickNeeded(): boolean {
    const added = this.numAdded;
    this.numAdded = 0;
    if (added === 0) return false;
    const ev = this.layout.deviceAddr;
    const flags = this.mem.readU16(ev + 2) & 3;
    if (flags === RING_EVENT_FLAGS_DISABLE) return false;
    if (flags !== RING_EVENT_FLAGS_DESC || !this.eventIdx) return true;
    if (added >= this.size) return true;
    const offWrap = this.mem.readU16(ev);
    let event = offWrap & OFF_MASK;
    if (offWrap >>> VIRTQ_PACKED_EVENT_F_WRAP_CTR !== this.availWrap) event -= this.size;
    return needEvent(event, this.nextAvail, this.nextAvail - added);
  }

  getUsed(): Used | null {
    const mem = this.mem;
    const d = this.layout.descAddr + this.nextUsed * VIRTQ_PACKED_DESC_SIZE;
    const flags = mem.readU16(d + 14);
    const avail = (flags >>> 7) & 1;
    const used = (flags >>> 15) & 1;
    if (avail !== used || used !== this.usedWrap) return null;
    const id = mem.readU16(d + 12);
    const len = mem.readU32(d + 8);
    if (id >= this.size || this.slotsOf[id] === 0)
      throw new VirtioSndError("ERR_DRIVER", `device used buffer id ${id}, which is not in flight`);
    const slots = this.slotsOf[id]!;
    const token = this.tokenOf[id]!;
    this.slotsOf[id] = 0;
    this.freeIds.push(id);
    this.numFree += slots;
    let u = this.nextUsed + slots;
    if (u >= this.size) {
      u -= this.size;
      this.usedWrap ^= 1;
    }
    this.nextUsed = u;
    return { token, len };
  }

  enableInterrupts(enabled: boolean): void {
    const ev = this.layout.driverAddr;
    if (!enabled) {
      this.mem.writeU16(ev + 2, RING_EVENT_FLAGS_DISABLE);
    } else if (this.eventIdx) {
      this.mem.writeU16(ev, this.usedOffWrap);
      this.mem.writeU16(ev + 2, RING_EVENT_FLAGS_DESC);
    } else {
      this.mem.writeU16(ev + 2, RING_EVENT_FLAGS_ENABLE);
    }
  }

  /** AVAIL set to the driver wrap counter, USED to its inverse. */
  private availBits(): number {
    return this.availWrap === 1 ? VIRTQ_PACKED_DESC_F_AVAIL : VIRTQ_PACKED_DESC_F_USED;
  }

  private advanceAvail(): void {
    if (++this.nextAvail === this.size) {
      this.nextAvail = 0;
      this.availWrap ^= 1;
    }
  }

  /** The indirect table of buffer id `id`, grown to hold at least `entries` descriptors. */
  private table(id: number, entries: number): number {
    if (this.tableCap[id]! < entries) {
      this.tableAddr[id] = this.alloc(entries * VIRTQ_PACKED_DESC_SIZE, 16);
      this.tableCap[id] = entries;
    }
    return this.tableAddr[id]!;
  }
}
