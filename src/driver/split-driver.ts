import { VirtioSndError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_DESC_SIZE,
  VIRTQ_USED_ELEM_SIZE,
  VIRTQ_USED_F_NO_NOTIFY,
} from "../virtqueue/ring-constants.js";
import type { QueueLayout } from "../virtqueue/virtqueue.js";
import type { Buf, DriverQueue, DriverQueueOptions, Used } from "./driver-queue.js";

/** vring_need_event (§2.7.10): did the index step past `event` going from `old` to `now`? */
export function needEvent(event: number, now: number, old: number): boolean {
  return ((now - event - 1) & 0xffff) < ((now - old) & 0xffff);
}

/**
 * A split-ring driver for tests, in the manner of Linux's virtio_ring: a free
 * list of descriptors kept on the driver side, direct chains or one indirect
 * table per chain, the avail ring published element-first, and EVENT_IDX or
 * the flags for notification suppression.
 *
 * The driver never trusts the descriptor table for its own bookkeeping (the
 * device could scribble on it); the free list and chain ends live in JS arrays.
 */
export class SplitDriverQueue implements DriverQueue {
  readonly layout: QueueLayout;
  private readonly mem: GuestMemory;
  private readonly alloc: (size: number, align: number) => number;
  private readonly size: number;
  private readonly mask: number;
  private readonly eventIdx: boolean;
  private readonly indirectDefault: boolean;

  /** Free list links: nextFree[i] is the descriptor after i (in the free list, or in i's chain). */
  private readonly nextFree: Uint16Array;
  private freeHead = 0;
  private free: number;
  /** Per head: the token handed out by add(), 0 when the head is not in use. */
  private readonly tokens: Float64Array;
  /** Per head: main-table descriptors the chain holds, and its last one. */
  private readonly descCount: Uint16Array;
  private readonly tail: Uint16Array;
  /** Per head: an indirect table kept for reuse, and its capacity in descriptors. */
  private readonly indirectAddr: Float64Array;
  private readonly indirectCap: Uint32Array;

  private nextToken = 1;
  private availIdx = 0;
  private numAdded = 0;
  private lastUsed = 0;
  private interrupts = true;

  constructor(opts: DriverQueueOptions & { indirect?: boolean }) {
    const size = opts.size;
    if (!Number.isInteger(size) || size < 1 || size > 32768 || (size & (size - 1)) !== 0) {
      throw new VirtioSndError("ERR_DRIVER", `bad split queue size ${size}`);
    }
    this.mem = opts.mem;
    this.alloc = opts.alloc;
    this.size = size;
    this.mask = size - 1;
    this.eventIdx = opts.eventIdx;
    this.indirectDefault = opts.indirect ?? false;

    const descBytes = VIRTQ_DESC_SIZE * size;
    const availBytes = 6 + 2 * size;
    const usedBytes = 6 + VIRTQ_USED_ELEM_SIZE * size;
    const descAddr = opts.alloc(descBytes, 16);
    const driverAddr = opts.alloc(availBytes, 2);
    const deviceAddr = opts.alloc(usedBytes, 4);
    this.mem.fill(descAddr, descBytes, 0);
    this.mem.fill(driverAddr, availBytes, 0);
    this.mem.fill(deviceAddr, usedBytes, 0);
    this.layout = { size, descAddr, driverAddr, deviceAddr };

    this.nextFree = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.nextFree[i] = (i + 1) & 0xffff;
    this.free = size;
    this.tokens = new Float64Array(size);
    this.descCount = new Uint16Array(size);
    this.tail = new Uint16Array(size);
    this.indirectAddr = new Float64Array(size);
    this.indirectCap = new Uint32Array(size);
  }

  get freeCount(): number {
    return this.free;
  }

  /** The driver's shadow of the available index (next entry it will publish). */
  get availIndex(): number {
    return this.availIdx;
  }

  /** The next used index the driver will read. */
  get lastUsedIndex(): number {
    return this.lastUsed;
  }

  add(out: readonly Buf[], inn: readonly Buf[], opts?: { indirect?: boolean }): number {
    const total = out.length + inn.length;
    if (total === 0) throw new VirtioSndError("ERR_DRIVER", "a chain needs at least one buffer");
    const indirect = opts?.indirect ?? (this.indirectDefault && total > 1);
    // §2.7.5.3.1 asks for no chain longer than the queue size; Linux keeps to it
    // for direct chains only, and puts longer scatter-gather lists in indirect tables.
    if (!indirect && total > this.size)
      throw new VirtioSndError(
        "ERR_DRIVER",
        `chain of ${total} buffers is longer than the queue size ${this.size}`,
      );
    const needed = indirect ? 1 : total;
    if (needed > this.free)
      throw new VirtioSndError("ERR_DRIVER", `ring full: ${needed} descriptors needed, ${this.free} free`);

    const mem = this.mem;
    const head = this.freeHead;
    let last = head;
    if (indirect) {
      const table = this.indirectTable(head, total);
      for (let k = 0; k < total; k++) {
        const writable = k >= out.length;
        const b = writable ? inn[k - out.length]! : out[k]!;
        const more = k < total - 1;
        this.writeDesc(
          table + k * VIRTQ_DESC_SIZE,
          b,
          (more ? VIRTQ_DESC_F_NEXT : 0) | (writable ? VIRTQ_DESC_F_WRITE : 0),
          more ? k + 1 : 0,
        );
      }
      this.writeDesc(
        this.layout.descAddr + head * VIRTQ_DESC_SIZE,
        { addr: table, len: total * VIRTQ_DESC_SIZE },
        VIRTQ_DESC_F_INDIRECT,
        0,
      );
    } else {
      let i = head;
      for (let k = 0; k < total; k++) {
        const writable = k >= out.length;
        const b = writable ? inn[k - out.length]! : out[k]!;
        const more = k < total - 1;
        const next = this.nextFree[i]!;
        this.writeDesc(
          this.layout.descAddr + i * VIRTQ_DESC_SIZE,
          b,
          (more ? VIRTQ_DESC_F_NEXT : 0) | (writable ? VIRTQ_DESC_F_WRITE : 0),
          next,
        );
        last = i;
        i = next;
      }
    }
    this.freeHead = this.nextFree[last]!;
    this.free -= needed;
    this.descCount[head] = needed;
    this.tail[head] = last;
    const token = this.nextToken++;
    this.tokens[head] = token;

    // The ring entry is written before the index that publishes it.
    mem.writeU16(this.layout.driverAddr + 4 + 2 * (this.availIdx & this.mask), head);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    mem.writeU16(this.layout.driverAddr + 2, this.availIdx);
    this.numAdded++;
    return token;
  }

  kickNeeded(): boolean {
    const added = this.numAdded;
    if (added === 0) return false;
    this.numAdded = 0;
    if (this.eventIdx) {
      if (added >= 0x10000) return true;
      const availEvent = this.mem.readU16(this.layout.deviceAddr + 4 + VIRTQ_USED_ELEM_SIZE * this.size);
      return needEvent(availEvent, this.availIdx, (this.availIdx - added) & 0xffff);
    }
    return (this.mem.readU16(this.layout.deviceAddr) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  getUsed(): Used | null {
    const mem = this.mem;
    const usedIdx = mem.readU16(this.layout.deviceAddr + 2);
    if (usedIdx === this.lastUsed) return null;
    const elem = this.layout.deviceAddr + 4 + VIRTQ_USED_ELEM_SIZE * (this.lastUsed & this.mask);
    const id = mem.readU32(elem);
    const len = mem.readU32(elem + 4);
    if (id >= this.size || this.tokens[id] === 0) {
      throw new VirtioSndError("ERR_DRIVER", `device returned id ${id}, which is not an outstanding head`);
    }
    const token = this.tokens[id]!;
    this.tokens[id] = 0;
    // The chain's descriptors are still linked in nextFree: splice them back.
    this.nextFree[this.tail[id]!] = this.freeHead;
    this.freeHead = id;
    this.free += this.descCount[id]!;
    this.lastUsed = (this.lastUsed + 1) & 0xffff;
    if (this.eventIdx && this.interrupts) this.writeUsedEvent(this.lastUsed);
    return { token, len };
  }

  /**
   * With EVENT_IDX, enabling asks for an interrupt at the next used entry;
   * disabling just stops moving used_event (the device interrupts at most once
   * more). Without it, the NO_INTERRUPT flag.
   */
  enableInterrupts(enabled: boolean): void {
    this.interrupts = enabled;
    if (this.eventIdx) {
      if (enabled) this.writeUsedEvent(this.lastUsed);
    } else {
      this.mem.writeU16(this.layout.driverAddr, enabled ? 0 : VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
  }

  /** Writes used_event directly (for tests of exact suppression points). */
  writeUsedEvent(value: number): void {
    this.mem.writeU16(this.layout.driverAddr + 4 + 2 * this.size, value & 0xffff);
  }

  private writeDesc(at: number, b: Buf, flags: number, next: number): void {
    const mem = this.mem;
    mem.writeU64(at, b.addr);
    mem.writeU32(at + 8, b.len);
    mem.writeU16(at + 12, flags);
    mem.writeU16(at + 14, next);
  }

  private indirectTable(head: number, entries: number): number {
    if (this.indirectCap[head]! < entries) {
      const cap = Math.max(entries, 8);
      this.indirectAddr[head] = this.alloc(cap * VIRTQ_DESC_SIZE, 16);
      this.indirectCap[head] = cap;
    }
    return this.indirectAddr[head]!;
  }
}
