import { describe, expect, it } from "vitest";
import { VirtqueueBrokenError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import type { GuestMemory } from "../../src/memory/guest-memory.js";
import { RegionMemory } from "../../src/memory/region-memory.js";
import { type Chain, ChainFault, readFromChain, writeToChain } from "../../src/virtqueue/chain.js";
import { PackedQueue } from "../../src/virtqueue/packed-ring.js";
import {
  RING_EVENT_FLAGS_DESC,
  RING_EVENT_FLAGS_DISABLE,
  RING_EVENT_FLAGS_ENABLE,
  VIRTQ_PACKED_DESC_F_AVAIL,
  VIRTQ_PACKED_DESC_F_INDIRECT,
  VIRTQ_PACKED_DESC_F_NEXT,
  VIRTQ_PACKED_DESC_F_USED,
  VIRTQ_PACKED_DESC_F_WRITE,
} from "../../src/virtqueue/ring-constants.js";
import type { QueueLayout } from "../../src/virtqueue/virtqueue.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import type { Buf } from "../../src/driver/driver-queue.js";
import { PackedDriverQueue } from "../../src/driver/packed-driver.js";

const BASE = 0x10_0000;
const MEM_SIZE = 1 << 20;

const NEXT = VIRTQ_PACKED_DESC_F_NEXT;
const WRITE = VIRTQ_PACKED_DESC_F_WRITE;
const INDIRECT = VIRTQ_PACKED_DESC_F_INDIRECT;
const AVAIL = VIRTQ_PACKED_DESC_F_AVAIL;
const USED = VIRTQ_PACKED_DESC_F_USED;

interface Setup {
  mem: FlatMemory;
  alloc: (size: number, align?: number) => number;
  driver: PackedDriverQueue;
  dev: PackedQueue;
  buf: (len: number) => Buf;
}

function setup(
  size: number,
  opts: { eventIdx?: boolean; indirect?: boolean; driverIndirect?: boolean } = {},
): Setup {
  const mem = new FlatMemory(new ArrayBuffer(MEM_SIZE), BASE);
  const { alloc } = new BumpAllocator(BASE, BASE + MEM_SIZE);
  const eventIdx = opts.eventIdx ?? false;
  const indirect = opts.indirect ?? false;
  const driver = new PackedDriverQueue({
    mem,
    alloc,
    size,
    eventIdx,
    indirect: opts.driverIndirect ?? false,
  });
  const dev = new PackedQueue(mem, driver.layout, { indirect, eventIdx });
  const buf = (len: number): Buf => ({ addr: alloc(Math.max(len, 1), 8), len });
  return { mem, alloc, driver, dev, buf };
}

function fillPattern(mem: FlatMemory, b: Buf, seed: number): void {
  for (let i = 0; i < b.len; i++) mem.writeU8(b.addr + i, (seed + i * 7) & 0xff);
}

function pop(dev: PackedQueue): Chain {
  const c = dev.pop();
  if (c === null) throw new Error("expected a chain");
  return c;
}

/** Writes raw descriptors into a packed ring, for malformed chains. */
class RawRing {
  readonly layout: QueueLayout;
  constructor(
    readonly mem: GuestMemory,
    readonly alloc: (size: number, align?: number) => number,
    size: number,
  ) {
    const descAddr = alloc(16 * size, 16);
    const driverAddr = alloc(4, 4);
    const deviceAddr = alloc(4, 4);
    this.layout = { size, descAddr, driverAddr, deviceAddr };
  }

  /** Writes descriptor `slot`; `avail` adds AVAIL/USED bits for a lap with wrap counter `wrap`. */
  desc(slot: number, addr: number, len: number, id: number, flags: number, wrap: number | null = 1): void {
    const d = this.layout.descAddr + 16 * slot;
    this.mem.writeU64(d, addr);
    this.mem.writeU32(d + 8, len);
    this.mem.writeU16(d + 12, id);
    const bits = wrap === null ? 0 : wrap === 1 ? AVAIL : USED;
    this.mem.writeU16(d + 14, flags | bits);
  }

  /** Writes an indirect table of (addr, len, flags) entries and returns its address. */
  table(entries: readonly [number, number, number][]): number {
    const t = this.alloc(16 * Math.max(entries.length, 1), 16);
    entries.forEach(([addr, len, flags], i) => {
      this.mem.writeU64(t + 16 * i, addr);
      this.mem.writeU32(t + 16 * i + 8, len);
      this.mem.writeU16(t + 16 * i + 12, 0xbeef);
      this.mem.writeU16(t + 16 * i + 14, flags);
    });
    return t;
  }

  used(slot: number): { len: number; id: number; flags: number } {
    const d = this.layout.descAddr + 16 * slot;
    return { len: this.mem.readU32(d + 8), id: this.mem.readU16(d + 12), flags: this.mem.readU16(d + 14) };
  }
}

function raw(size: number, features: { indirect?: boolean; eventIdx?: boolean } = {}) {
  const mem = new FlatMemory(new ArrayBuffer(MEM_SIZE), BASE);
  const { alloc } = new BumpAllocator(BASE, BASE + MEM_SIZE);
  const ring = new RawRing(mem, alloc, size);
  const dev = new PackedQueue(mem, ring.layout, {
    indirect: features.indirect ?? true,
    eventIdx: features.eventIdx ?? false,
  });
  const buf = alloc(4096, 16);
  return { mem, alloc, ring, dev, buf };
}

describe("PackedQueue with a packed driver", () => {
  it("carries a single readable buffer", () => {
    const { mem, driver, dev, buf } = setup(8);
    expect(dev.pop()).toBeNull();
    const b = buf(32);
    fillPattern(mem, b, 3);
    const token = driver.add([b], []);
    expect(driver.freeCount).toBe(7);

    const c = pop(dev);
    expect(dev.inFlight).toBe(1);
    expect(c.fault).toBe(ChainFault.None);
    expect(c.ringSlots).toBe(1);
    expect(c.readableCount).toBe(1);
    expect(c.writableCount).toBe(0);
    expect(c.addr[0]).toBe(b.addr);
    expect(c.len[0]).toBe(32);
    const data = new Uint8Array(32);
    expect(readFromChain(mem, c, 0, data, 0, 32)).toBe(32);
    expect(data[5]).toBe((3 + 35) & 0xff);
    expect(dev.pop()).toBeNull();

    expect(driver.getUsed()).toBeNull();
    dev.push(c, 100); // nothing writable: clamped to 0
    expect(dev.inFlight).toBe(0);
    expect(driver.getUsed()).toEqual({ token, len: 0 });
    expect(driver.getUsed()).toBeNull();
    expect(driver.freeCount).toBe(8);
  });

  it("carries a multi-segment chain, readable before writable", () => {
    const { mem, driver, dev, buf } = setup(8);
    const out = [buf(10), buf(20)];
    const inn = [buf(4), buf(12)];
    fillPattern(mem, out[0]!, 1);
    fillPattern(mem, out[1]!, 2);
    const token = driver.add(out, inn);
    expect(driver.freeCount).toBe(4);

    const c = pop(dev);
    expect(c.fault).toBe(ChainFault.None);
    expect(c.ringSlots).toBe(4);
    expect([c.readableCount, c.writableCount]).toEqual([2, 2]);
    expect([c.readableBytes, c.writableBytes]).toEqual([30, 16]);
    expect(Array.from(c.addr.subarray(0, 4))).toEqual([...out, ...inn].map((b) => b.addr));
    expect(Array.from(c.len.subarray(0, 4))).toEqual([10, 20, 4, 12]);

    const got = new Uint8Array(30);
    readFromChain(mem, c, 0, got, 0, 30);
    expect(got[12]).toBe((2 + 14) & 0xff);
    const reply = Uint8Array.from({ length: 16 }, (_, i) => 100 + i);
    expect(writeToChain(mem, c, 0, reply, 0, 16)).toBe(16);
    dev.push(c, 16);
    expect(driver.getUsed()).toEqual({ token, len: 16 });
    expect(mem.readU8(inn[1]!.addr + 11)).toBe(115);
    expect(driver.freeCount).toBe(8);
  });

  it("carries an indirect chain in one ring slot", () => {
    const { driver, dev, buf } = setup(4, { indirect: true, driverIndirect: true });
    const out = [buf(8), buf(8), buf(8)];
    const inn = [buf(64)];
    const t1 = driver.add(out, inn);
    expect(driver.freeCount).toBe(3);
    const t2 = driver.add([buf(2)], []); // a single buffer stays direct
    const c1 = pop(dev);
    expect(c1.fault).toBe(ChainFault.None);
    expect(c1.ringSlots).toBe(1);
    expect([c1.readableCount, c1.writableCount, c1.writableBytes]).toEqual([3, 1, 64]);
    expect(c1.addr[3]).toBe(inn[0]!.addr);
    const c2 = pop(dev);
    expect(c2.readableCount).toBe(1);
    dev.push(c1, 40);
    dev.push(c2, 0);
    expect(driver.getUsed()).toEqual({ token: t1, len: 40 });
    expect(driver.getUsed()).toEqual({ token: t2, len: 0 });
    const t3 = driver.add([buf(1)], [buf(1)], { indirect: true });
    const c3 = pop(dev);
    expect([c3.readableCount, c3.writableCount, c3.ringSlots]).toEqual([1, 1, 1]);
    dev.push(c3, 1);
    expect(driver.getUsed()).toEqual({ token: t3, len: 1 });
  });

  it("completes chains out of order", () => {
    const { driver, dev, buf } = setup(8);
    const tA = driver.add([buf(4)], [buf(4), buf(4)]); // 3 slots
    const tB = driver.add([], [buf(8)]); // 1 slot
    const tC = driver.add([buf(4)], [buf(16)]); // 2 slots
    const a = pop(dev);
    const b = pop(dev);
    const c = pop(dev);
    expect([a.ringSlots, b.ringSlots, c.ringSlots]).toEqual([3, 1, 2]);
    expect(new Set([a.id, b.id, c.id]).size).toBe(3);
    expect(dev.inFlight).toBe(3);

    dev.push(b, 5);
    expect(driver.getUsed()).toEqual({ token: tB, len: 5 });
    expect(driver.getUsed()).toBeNull();
    dev.push(c, 16);
    dev.push(a, 1);
    expect(driver.getUsed()).toEqual({ token: tC, len: 16 });
    expect(driver.getUsed()).toEqual({ token: tA, len: 1 });
    expect(driver.getUsed()).toBeNull();
    expect(driver.freeCount).toBe(8);
    expect(dev.inFlight).toBe(0);

    // The ring keeps working across the wrap after an out-of-order lap.
    const tD = driver.add([buf(1)], [buf(1), buf(1)]);
    const d = pop(dev);
    expect(d.ringSlots).toBe(3);
    dev.push(d, 2);
    expect(driver.getUsed()).toEqual({ token: tD, len: 2 });
  });

  it("ignores a second push of the same chain", () => {
    const { driver, dev, buf } = setup(4);
    const t = driver.add([], [buf(4)]);
    const c = pop(dev);
    dev.push(c, 4);
    dev.push(c, 4);
    expect(dev.inFlight).toBe(0);
    expect(driver.getUsed()).toEqual({ token: t, len: 4 });
    expect(driver.getUsed()).toBeNull();
  });

  for (const [size, indirect] of [
    [1, false],
    [7, false],
    [7, true],
    [256, false],
    [256, true],
  ] as const) {
    it(`survives thousands of round trips at size ${size}${indirect ? " with indirect tables" : ""}`, () => {
      const { mem, driver, dev, buf } = setup(size, { indirect, driverIndirect: indirect, eventIdx: true });
      // A deterministic PRNG (xorshift32).
      let seed = 0x9e3779b9 ^ size;
      const rnd = (n: number): number => {
        seed ^= seed << 13;
        seed ^= seed >>> 17;
        seed ^= seed << 5;
        return (seed >>> 0) % n;
      };
      const pool = Array.from({ length: 8 }, () => buf(64));
      const pending = new Map<number, { outLen: number; inLen: number; seed: number }>();
      const held: { chain: Chain; token: number }[] = [];
      const addOrder: number[] = [];
      let popOrder = 0;
      let completed = 0;
      const rounds = 6000;

      for (let round = 0; round < rounds; round++) {
        // Add a few chains while there is room.
        const adds = rnd(4);
        for (let k = 0; k < adds; k++) {
          const maxSlots = indirect ? 6 : Math.min(size, 4);
          const nOut = rnd(Math.min(maxSlots, 3));
          const nIn = Math.max(1 - nOut, rnd(maxSlots - nOut + 1));
          const slots = indirect && nOut + nIn > 1 ? 1 : nOut + nIn;
          if (slots > driver.freeCount) break;
          const out = pool.slice(0, nOut).map((b) => ({ addr: b.addr, len: 1 + rnd(64) }));
          const inn = pool.slice(nOut, nOut + nIn).map((b) => ({ addr: b.addr, len: 1 + rnd(64) }));
          const s = rnd(256);
          for (const b of out) fillPattern(mem, b, s);
          const token = driver.add(out, inn);
          pending.set(token, {
            outLen: out.reduce((a, b) => a + b.len, 0),
            inLen: inn.reduce((a, b) => a + b.len, 0),
            seed: s,
          });
          addOrder.push(token);
          // The device pops in ring order, so it checks the first readable byte now.
          for (let c = dev.pop(); c !== null; c = dev.pop()) {
            const token2 = addOrder[popOrder++]!;
            const p = pending.get(token2)!;
            expect(c.fault).toBe(ChainFault.None);
            expect([c.readableBytes, c.writableBytes]).toEqual([p.outLen, p.inLen]);
            if (p.outLen > 0) {
              const first = new Uint8Array(1);
              readFromChain(mem, c, 0, first, 0, 1);
              expect(first[0]).toBe(p.seed & 0xff);
            }
            held.push({ chain: c, token: token2 });
          }
        }
        // Complete some of the held chains in a random order.
        const completes = rnd(held.length + 1);
        for (let k = 0; k < completes; k++) {
          const [h] = held.splice(rnd(held.length), 1);
          const p = pending.get(h!.token)!;
          const written = rnd(p.inLen + 10);
          dev.push(h!.chain, written);
          // Remember what the driver must see: written clamped to the writable bytes.
          pending.set(h!.token, { ...p, inLen: Math.min(written, p.inLen), outLen: -1 });
        }
        dev.needsInterrupt();
        for (let u = driver.getUsed(); u !== null; u = driver.getUsed()) {
          const p = pending.get(u.token);
          expect(p?.outLen).toBe(-1);
          expect(u.len).toBe(p!.inLen);
          pending.delete(u.token);
          completed++;
        }
        expect(dev.inFlight).toBe(held.length);
      }
      expect(completed).toBeGreaterThan(rounds / 3);
      expect(dev.chainsCreated).toBeLessThanOrEqual(size);
    });
  }

  it("reuses pooled chains", () => {
    const { driver, dev, buf } = setup(4);
    const b = buf(8);
    driver.add([b], []);
    const c1 = pop(dev);
    dev.push(c1, 0);
    driver.getUsed();
    driver.add([], [b]);
    const c2 = pop(dev);
    expect(c2).toBe(c1);
    expect([c2.readableCount, c2.writableCount, c2.fault]).toEqual([0, 1, ChainFault.None]);
    expect(dev.chainsCreated).toBe(1);
  });
});

describe("PackedQueue event suppression", () => {
  it("interrupts by flags without EVENT_IDX", () => {
    const { mem, driver, dev, buf } = setup(4);
    const reap = (): void => {
      while (driver.getUsed() !== null);
    };
    expect(dev.needsInterrupt()).toBe(false); // nothing pushed
    driver.add([buf(1)], []);
    driver.add([buf(1)], []);
    dev.push(pop(dev), 0);
    expect(dev.needsInterrupt()).toBe(true);
    expect(dev.needsInterrupt()).toBe(false);

    driver.enableInterrupts(false);
    expect(mem.readU16(driver.layout.driverAddr + 2)).toBe(RING_EVENT_FLAGS_DISABLE);
    dev.push(pop(dev), 0);
    expect(dev.needsInterrupt()).toBe(false);

    driver.enableInterrupts(true);
    expect(mem.readU16(driver.layout.driverAddr + 2)).toBe(RING_EVENT_FLAGS_ENABLE);
    expect(dev.needsInterrupt()).toBe(false); // the push was reported (suppressed) already
    reap();
    driver.add([buf(1)], []);
    dev.push(pop(dev), 0);
    expect(dev.needsInterrupt()).toBe(true);

    // DESC without EVENT_IDX is not valid: it counts as ENABLE.
    mem.writeU16(driver.layout.driverAddr, 0x8003);
    mem.writeU16(driver.layout.driverAddr + 2, RING_EVENT_FLAGS_DESC);
    reap();
    driver.add([buf(1)], []);
    dev.push(pop(dev), 0);
    expect(dev.needsInterrupt()).toBe(true);
    // The reserved value 3 also counts as ENABLE.
    mem.writeU16(driver.layout.driverAddr + 2, 3);
    reap();
    driver.add([buf(1)], []);
    dev.push(pop(dev), 0);
    expect(dev.needsInterrupt()).toBe(true);
  });

  it("interrupts when the used position crosses the descriptor event with EVENT_IDX", () => {
    const { mem, driver, dev, buf } = setup(7, { eventIdx: true });
    const ev = driver.layout.driverAddr;
    driver.enableInterrupts(true);
    expect(mem.readU16(ev)).toBe(0x8000); // slot 0, wrap 1
    expect(mem.readU16(ev + 2)).toBe(RING_EVENT_FLAGS_DESC);

    for (let i = 0; i < 5; i++) driver.add([buf(1)], []);
    const chains = Array.from({ length: 5 }, () => pop(dev));
    dev.push(chains[0]!, 0); // used position 0 -> 1 crosses slot 0
    expect(dev.needsInterrupt()).toBe(true);
    dev.push(chains[1]!, 0); // 1 -> 2
    expect(dev.needsInterrupt()).toBe(false);
    expect(driver.getUsed()).not.toBeNull();
    expect(driver.getUsed()).not.toBeNull();
    driver.enableInterrupts(true); // event at slot 2
    expect(mem.readU16(ev)).toBe(0x8002);
    dev.push(chains[2]!, 0);
    dev.push(chains[3]!, 0); // 2 -> 4 in one batch crosses slot 2
    expect(dev.needsInterrupt()).toBe(true);

    // An event ahead (slot 6): not before the used position passes it.
    mem.writeU16(ev, 0x8006);
    dev.push(chains[4]!, 0); // 4 -> 5
    expect(dev.needsInterrupt()).toBe(false);
    for (let i = 0; i < 3; i++) expect(driver.getUsed()).not.toBeNull();
    driver.add([buf(1)], []); // slot 5
    driver.add([buf(1)], []); // slot 6
    driver.add([buf(1)], []); // slot 0, next lap
    const more = Array.from({ length: 3 }, () => pop(dev));
    dev.push(more[0]!, 0); // 5 -> 6
    expect(dev.needsInterrupt()).toBe(false);
    dev.push(more[1]!, 0); // 6 -> 0, wrap now 0: crossed slot 6 of lap 1
    expect(dev.needsInterrupt()).toBe(true);
    // An event in the next lap's slot 1 (wrap 0).
    mem.writeU16(ev, 0x0001);
    dev.push(more[2]!, 0); // 0 -> 1 of lap 0
    expect(dev.needsInterrupt()).toBe(false);
    for (let i = 0; i < 3; i++) expect(driver.getUsed()).not.toBeNull();
    driver.add([buf(1)], []);
    dev.push(pop(dev), 0); // 1 -> 2 of lap 0 crosses slot 1
    expect(dev.needsInterrupt()).toBe(true);

    // DISABLE wins.
    driver.enableInterrupts(false);
    expect(driver.getUsed()).not.toBeNull();
    driver.add([buf(1)], []);
    dev.push(pop(dev), 0);
    expect(dev.needsInterrupt()).toBe(false);
    // ENABLE works with EVENT_IDX too.
    mem.writeU16(ev + 2, RING_EVENT_FLAGS_ENABLE);
    expect(driver.getUsed()).not.toBeNull();
    driver.add([buf(1)], []);
    dev.push(pop(dev), 0);
    expect(dev.needsInterrupt()).toBe(true);
  });

  it("interrupts after a full lap whatever the event says", () => {
    const { mem, driver, dev, buf } = setup(4, { eventIdx: true });
    mem.writeU16(driver.layout.driverAddr, 0x0003); // slot 3 of the other lap
    mem.writeU16(driver.layout.driverAddr + 2, RING_EVENT_FLAGS_DESC);
    for (let i = 0; i < 4; i++) driver.add([buf(1)], []);
    const cs = Array.from({ length: 4 }, () => pop(dev));
    for (const c of cs) dev.push(c, 0);
    expect(dev.needsInterrupt()).toBe(true);
  });

  it("asks for kicks by flags without EVENT_IDX", () => {
    const { mem, driver, dev, buf } = setup(4);
    const ev = driver.layout.deviceAddr;
    expect(driver.kickNeeded()).toBe(false); // nothing added
    driver.add([buf(1)], []);
    expect(driver.kickNeeded()).toBe(true);
    expect(driver.kickNeeded()).toBe(false);

    expect(dev.enableNotifications(false)).toBe(true); // a chain is waiting
    expect(mem.readU16(ev + 2)).toBe(RING_EVENT_FLAGS_DISABLE);
    driver.add([buf(1)], []);
    expect(driver.kickNeeded()).toBe(false);
    dev.push(pop(dev), 0);
    dev.push(pop(dev), 0);
    expect(dev.enableNotifications(true)).toBe(false);
    expect(mem.readU16(ev + 2)).toBe(RING_EVENT_FLAGS_ENABLE);
    driver.add([buf(1)], []);
    expect(driver.kickNeeded()).toBe(true);
  });

  it("asks for a kick at the next available slot with EVENT_IDX", () => {
    const { mem, driver, dev, buf } = setup(5, { eventIdx: true });
    const ev = driver.layout.deviceAddr;
    expect(dev.enableNotifications(true)).toBe(false);
    expect(mem.readU16(ev)).toBe(0x8000);
    expect(mem.readU16(ev + 2)).toBe(RING_EVENT_FLAGS_DESC);

    driver.add([buf(1)], []); // slot 0: the event
    expect(driver.kickNeeded()).toBe(true);
    driver.add([buf(1)], [buf(1)]); // slots 1-2: past the event already
    expect(driver.kickNeeded()).toBe(false);
    const a = pop(dev);
    expect(mem.readU16(ev)).toBe(0x8001); // each pop moves the request to the next slot
    const b = pop(dev);
    expect(mem.readU16(ev)).toBe(0x8003);
    expect(dev.pop()).toBeNull();
    expect(dev.enableNotifications(true)).toBe(false);
    expect(mem.readU16(ev)).toBe(0x8003);
    driver.add([buf(1)], [buf(1)]); // slots 3-4 cross slot 3
    expect(driver.kickNeeded()).toBe(true);
    const c = pop(dev);
    dev.push(a, 0);
    dev.push(b, 0);
    dev.push(c, 0);
    for (let i = 0; i < 3; i++) expect(driver.getUsed()).not.toBeNull();
    expect(dev.enableNotifications(true)).toBe(false);
    expect(mem.readU16(ev)).toBe(0x0000); // slot 0 of the next lap, wrap 0
    driver.add([buf(1)], []);
    expect(driver.kickNeeded()).toBe(true);
    expect(dev.enableNotifications(true)).toBe(true); // the chain at slot 0 is waiting

    expect(dev.enableNotifications(false)).toBe(true);
    expect(mem.readU16(ev + 2)).toBe(RING_EVENT_FLAGS_DISABLE);
    dev.push(pop(dev), 0);
    expect(mem.readU16(ev)).toBe(0x0000); // disabled: pops leave the request alone
    expect(driver.getUsed()).not.toBeNull();
    driver.add([buf(1)], []);
    expect(driver.kickNeeded()).toBe(false);
  });

  it("keeps asking for kicks while the device drains the ring, as a device loop does", () => {
    const { driver, dev, buf } = setup(6, { eventIdx: true });
    dev.enableNotifications(true);
    let kicks = 0;
    let served = 0;
    for (let round = 0; round < 50; round++) {
      driver.add([buf(1)], [buf(1)]);
      if (round % 3 === 0) driver.add([buf(1)], []);
      if (driver.kickNeeded()) {
        kicks++;
        for (let c = dev.pop(); c !== null; c = dev.pop()) {
          dev.push(c, 1);
          served++;
        }
      }
      while (driver.getUsed() !== null);
    }
    // Every add lands on the slot the device asked about, so every batch kicks.
    expect(kicks).toBe(50);
    expect(served).toBe(50 + 17);
  });
});

describe("PackedQueue base and layout", () => {
  it("reports and restores the vhost-user base", () => {
    const { driver, dev, buf, mem } = setup(7);
    expect(dev.getBase()).toBe(0x8000);
    for (let i = 0; i < 10; i++) {
      driver.add([buf(1)], [buf(1)]);
      dev.push(pop(dev), 1);
      expect(driver.getUsed()).not.toBeNull();
    }
    // 20 slots: lap 1 (wrap 1) held 0-6, lap 2 (wrap 0) 7-13, lap 3 (wrap 1) 14-19.
    expect(dev.getBase()).toBe(0x8006);
    expect(driver.availOffWrap).toBe(0x8006);

    // A new device picks the ring up where the old one stopped.
    const dev2 = new PackedQueue(mem, driver.layout, { indirect: false, eventIdx: false });
    dev2.setBase(dev.getBase());
    expect(dev2.getBase()).toBe(0x8006);
    for (let i = 0; i < 10; i++) {
      const t = driver.add([buf(1)], i % 2 === 0 ? [] : [buf(4)]);
      const c = pop(dev2);
      dev2.push(c, 4);
      expect(driver.getUsed()).toEqual({ token: t, len: i % 2 === 0 ? 0 : 4 });
    }
    expect(dev2.getBase()).toBe(driver.availOffWrap);

    expect(() => dev2.setBase(7)).toThrow(VirtqueueBrokenError);
    expect(() => dev2.setBase(0x8007)).toThrow(VirtqueueBrokenError);
    dev2.setBase(0x0003);
    expect(dev2.getBase()).toBe(0x0003);
  });

  it("refuses areas outside guest memory and bad sizes", () => {
    const mem = new FlatMemory(new ArrayBuffer(0x1000), BASE);
    const f = { indirect: false, eventIdx: false };
    const ok = { size: 16, descAddr: BASE, driverAddr: BASE + 0x100, deviceAddr: BASE + 0x104 };
    const fits = new PackedQueue(mem, ok, f);
    expect(fits.size).toBe(16);
    expect(fits.pop()).toBeNull(); // a zeroed ring offers nothing
    const bad: QueueLayout[] = [
      { ...ok, descAddr: BASE - 16 },
      { ...ok, descAddr: BASE + 0x1000 - 16 * 15 }, // last descriptor past the end
      { ...ok, driverAddr: BASE + 0x1000 - 2 },
      { ...ok, deviceAddr: 0 },
      { ...ok, deviceAddr: Number.NaN },
      { ...ok, size: 0 },
      { ...ok, size: 32769 },
      { ...ok, size: 1.5 },
      { ...ok, size: 257 }, // a ring one descriptor larger than memory
    ];
    for (const layout of bad) expect(() => new PackedQueue(mem, layout, f)).toThrow(VirtqueueBrokenError);
    const big = new FlatMemory(new ArrayBuffer(32768 * 16 + 8), 0);
    const q = new PackedQueue(
      big,
      { size: 32768, descAddr: 0, driverAddr: 32768 * 16, deviceAddr: 32768 * 16 + 4 },
      f,
    );
    expect(q.size).toBe(32768);
    expect(q.pop()).toBeNull();
  });

  it("reports a ring that left guest memory as broken", () => {
    const bytes = new Uint8Array(0x1000);
    const mem = new RegionMemory([{ guestAddr: 0x4000, bytes }]);
    const ring = new RawRing(mem, new BumpAllocator(0x4000, 0x5000).alloc, 4);
    ring.desc(0, 0x4800, 8, 0, WRITE);
    ring.desc(1, 0x4800, 8, 1, WRITE);
    const dev = new PackedQueue(mem, ring.layout, { indirect: false, eventIdx: false });
    const a = pop(dev);
    const b = pop(dev);
    dev.push(a, 1);
    mem.remove(0x4000);
    expect(() => dev.pop()).toThrow(VirtqueueBrokenError);
    expect(() => dev.push(b, 1)).toThrow(VirtqueueBrokenError);
    expect(() => dev.enableNotifications(true)).toThrow(VirtqueueBrokenError);
    expect(() => dev.needsInterrupt()).toThrow(VirtqueueBrokenError);
  });
});

describe("PackedQueue with raw descriptors", () => {
  it("takes the buffer id from the last descriptor and walks across the ring end", () => {
    const { ring, dev, buf } = raw(4);
    dev.setBase(0x8002); // start at slot 2, wrap 1
    ring.desc(3, buf + 16, 8, 6, NEXT);
    ring.desc(0, buf + 32, 8, 2, WRITE, 0); // after the wrap: the lap-0 bits
    ring.desc(2, buf, 16, 5, NEXT);
    const c = pop(dev);
    expect(c.fault).toBe(ChainFault.None);
    expect(c.id).toBe(2);
    expect(c.ringSlots).toBe(3);
    expect([c.readableCount, c.writableCount]).toEqual([2, 1]);
    expect(dev.getBase()).toBe(0x0001);
    dev.push(c, 3);
    // The used descriptor goes at the used position (slot 2, wrap 1).
    expect(ring.used(2)).toEqual({ len: 3, id: 2, flags: AVAIL | USED | WRITE });
  });

  it("writes used descriptors with the wrap counter of their lap", () => {
    const { ring, dev, buf } = raw(2);
    ring.desc(0, buf, 8, 0, 0);
    ring.desc(1, buf, 8, 1, 0);
    const a = pop(dev);
    const b = pop(dev);
    dev.push(b, 0);
    dev.push(a, 0);
    expect(ring.used(0)).toEqual({ len: 0, id: 1, flags: AVAIL | USED });
    expect(ring.used(1)).toEqual({ len: 0, id: 0, flags: AVAIL | USED });
    expect(dev.pop()).toBeNull(); // used descriptors are not available
    ring.desc(0, buf, 8, 1, WRITE, 0);
    const c = pop(dev);
    dev.push(c, 8);
    expect(ring.used(0)).toEqual({ len: 8, id: 1, flags: WRITE }); // lap 0: both bits clear
  });

  it("sees nothing while the slot has the previous lap's bits or none", () => {
    const { ring, dev, buf } = raw(4);
    ring.desc(0, buf, 8, 0, 0, null); // zero-initialized flags: not available
    expect(dev.pop()).toBeNull();
    ring.desc(0, buf, 8, 0, AVAIL | USED, null); // looks used in lap 1
    expect(dev.pop()).toBeNull();
    ring.desc(0, buf, 8, 0, 0, 0); // available in lap 0, not lap 1
    expect(dev.pop()).toBeNull();
    expect(dev.enableNotifications(true)).toBe(false);
    ring.desc(0, buf, 8, 0, 0, 1);
    expect(dev.enableNotifications(true)).toBe(true);
    expect(pop(dev).id).toBe(0);
  });

  it("waits for a chain whose NEXT runs into a slot that is not available", () => {
    const { ring, dev, buf } = raw(4);
    ring.desc(1, buf, 8, 0, 0, null); // not yet made available
    ring.desc(0, buf, 8, 0, NEXT);
    expect(dev.pop()).toBeNull();
    expect(dev.enableNotifications(true)).toBe(false);
    expect(dev.getBase()).toBe(0x8000);
    expect(dev.inFlight).toBe(0);
    ring.desc(1, buf + 8, 8, 9, WRITE);
    expect(dev.enableNotifications(true)).toBe(true);
    const c = pop(dev);
    expect([c.id, c.ringSlots, c.fault]).toEqual([9, 2, ChainFault.None]);
    expect(dev.chainsCreated).toBe(1);
  });

  it("faults a chain longer than the ring as a Loop, consuming one lap", () => {
    const { ring, dev, buf } = raw(4);
    for (let i = 3; i >= 0; i--) ring.desc(i, buf, 8, 10 + i, NEXT);
    expect(dev.enableNotifications(true)).toBe(true);
    const c = pop(dev);
    expect(c.fault).toBe(ChainFault.Loop);
    expect([c.id, c.ringSlots, c.segmentCount]).toEqual([13, 4, 0]);
    expect(dev.getBase()).toBe(0x0000);
    expect(dev.pop()).toBeNull();
    dev.push(c, 100);
    expect(ring.used(0)).toEqual({ len: 0, id: 13, flags: AVAIL | USED });
  });

  it("faults readable after writable, in the ring and in a table", () => {
    const { ring, dev, buf } = raw(8);
    ring.desc(1, buf, 8, 1, 0);
    ring.desc(0, buf, 8, 0, WRITE | NEXT);
    const t = ring.table([
      [buf, 8, 0],
      [buf, 8, WRITE],
      [buf, 8, 0],
    ]);
    ring.desc(2, t, 48, 2, INDIRECT);
    ring.desc(3, buf, 8, 3, 0);
    const a = pop(dev);
    expect([a.fault, a.id, a.ringSlots, a.segmentCount, a.writableBytes]).toEqual([
      ChainFault.ReadableAfterWritable,
      1,
      2,
      0,
      0,
    ]);
    const b = pop(dev);
    expect([b.fault, b.id, b.ringSlots]).toEqual([ChainFault.ReadableAfterWritable, 2, 1]);
    const c = pop(dev); // the chain after the faulted ones is fine
    expect([c.fault, c.id]).toEqual([ChainFault.None, 3]);
    dev.push(a, 8);
    dev.push(b, 8);
    expect(ring.used(0)).toEqual({ len: 0, id: 1, flags: AVAIL | USED });
    expect(ring.used(2)).toEqual({ len: 0, id: 2, flags: AVAIL | USED });
  });

  it("faults indirect descriptors the feature or the spec does not allow", () => {
    const { ring, dev, buf } = raw(8);
    const t = ring.table([[buf, 8, 0]]);
    ring.desc(1, buf, 8, 1, 0); // the chain goes on past the bad indirect
    ring.desc(0, t, 16, 0, INDIRECT | NEXT);
    ring.desc(3, t, 16, 3, INDIRECT); // indirect after a direct descriptor
    ring.desc(2, buf, 8, 2, NEXT);
    const nested = ring.table([
      [buf, 8, 0],
      [t, 16, INDIRECT],
    ]);
    ring.desc(4, nested, 32, 4, INDIRECT);
    const a = pop(dev);
    expect([a.fault, a.id, a.ringSlots]).toEqual([ChainFault.NestedIndirect, 1, 2]);
    const b = pop(dev);
    expect([b.fault, b.id, b.ringSlots]).toEqual([ChainFault.NestedIndirect, 3, 2]);
    const c = pop(dev);
    expect([c.fault, c.id, c.ringSlots]).toEqual([ChainFault.NestedIndirect, 4, 1]);

    const off = raw(4, { indirect: false });
    const t2 = off.ring.table([[off.buf, 8, 0]]);
    off.ring.desc(0, t2, 16, 7, INDIRECT);
    const d = pop(off.dev);
    expect([d.fault, d.id, d.ringSlots]).toEqual([ChainFault.NestedIndirect, 7, 1]);
  });

  it("faults bad indirect table lengths", () => {
    const { ring, dev, buf } = raw(4);
    const t = ring.table([
      [buf, 8, 0],
      [buf, 8, 0],
    ]);
    ring.desc(0, t, 0, 0, INDIRECT);
    ring.desc(1, t, 24, 1, INDIRECT);
    for (const id of [0, 1]) {
      const c = pop(dev);
      expect([c.fault, c.id]).toEqual([ChainFault.BadIndirectTable, id]);
    }
  });

  it("honours table entries and ignores their reserved bits and the ring WRITE flag", () => {
    const { ring, dev, buf } = raw(4);
    const t = ring.table([
      [buf, 8, NEXT],
      [buf + 8, 8, WRITE | NEXT | AVAIL | USED],
      [buf + 16, 8, WRITE],
    ]);
    ring.desc(0, t, 48, 3, INDIRECT | WRITE);
    const c = pop(dev);
    expect(c.fault).toBe(ChainFault.None);
    expect([c.id, c.ringSlots, c.readableCount, c.writableCount]).toEqual([3, 1, 1, 2]);
    expect(Array.from(c.addr.subarray(0, 3))).toEqual([buf, buf + 8, buf + 16]);
  });

  it("faults buffers and tables outside guest memory", () => {
    const { ring, dev, buf } = raw(16);
    const end = BASE + MEM_SIZE;
    const t = ring.table([
      [buf, 8, 0],
      [end - 4, 8, WRITE],
    ]);
    const cases: [number, number, number][] = [
      [0, 8, 0], // below memory
      [end - 4, 8, 0], // straddles the end
      [2 ** 60, 1, WRITE], // far outside
      [end, 1, 0],
      [BASE - 1, 2, WRITE],
      [end - 16, 32, INDIRECT], // table straddles the end
      [0x10, 16, INDIRECT], // table below memory
      [t, 32, INDIRECT], // table inside, a buffer outside
    ];
    cases.forEach(([addr, len, flags], i) => ring.desc(i, addr, len, i, flags));
    // An all-ones address (above 2^53, read back inexact).
    ring.desc(cases.length, 0, 1, cases.length, 0);
    ring.mem.writeU32(ring.layout.descAddr + 16 * cases.length, 0xffff_ffff);
    ring.mem.writeU32(ring.layout.descAddr + 16 * cases.length + 4, 0xffff_ffff);
    cases.push([0, 0, 0]);
    for (let i = 0; i < cases.length; i++) {
      const c = pop(dev);
      expect([c.fault, c.id, c.segmentCount]).toEqual([ChainFault.OutsideMemory, i, 0]);
      dev.push(c, 8);
      expect(ring.used(i)).toEqual({ len: 0, id: i, flags: AVAIL | USED });
    }
    // A zero-length buffer at the very end of memory is inside.
    ring.desc(cases.length, end, 0, 99, WRITE);
    const z = pop(dev);
    expect([z.fault, z.writableCount, z.writableBytes]).toEqual([ChainFault.None, 1, 0]);
  });

  it("clamps the written length", () => {
    const { ring, dev, buf } = raw(8);
    const lens = [1e9, -5, Number.NaN, 3.7, 12, Number.POSITIVE_INFINITY];
    const expected = [16, 0, 0, 3, 12, 16];
    lens.forEach((_, i) => {
      ring.desc(i, buf, 16, i, WRITE);
    });
    lens.forEach((written, i) => {
      const c = pop(dev);
      expect(c.writableBytes).toBe(16);
      dev.push(c, written);
      expect(ring.used(i).len).toBe(expected[i]);
      expect(ring.used(i).flags).toBe(AVAIL | USED | (expected[i]! > 0 ? WRITE : 0));
    });
  });

  it("reports a driver that reuses slots still in flight as broken", () => {
    const { ring, dev, buf } = raw(2);
    ring.desc(0, buf, 8, 0, 0);
    ring.desc(1, buf, 8, 1, 0);
    pop(dev);
    pop(dev);
    ring.desc(0, buf, 8, 0, 0, 0); // lap 0 before the device used anything
    expect(() => dev.pop()).toThrow(VirtqueueBrokenError);
    expect(dev.inFlight).toBe(2);
  });
});
