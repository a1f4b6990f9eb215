import { describe, expect, it } from "vitest";
import { VirtqueueBrokenError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import type { GuestMemory } from "../../src/memory/guest-memory.js";
import { RegionMemory } from "../../src/memory/region-memory.js";
import { type Chain, ChainFault, readFromChain, writeToChain } from "../../src/virtqueue/chain.js";
import {
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  VIRTQ_USED_F_NO_NOTIFY,
} from "../../src/virtqueue/ring-constants.js";
import { SplitQueue } from "../../src/virtqueue/split-ring.js";
import type { QueueLayout, RingFeatures } from "../../src/virtqueue/virtqueue.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";

const MEM_SIZE = 0x40000;
/** Rings live below RING_END, data buffers above it. */
const RING_END = 0x10000;

interface Setup {
  mem: FlatMemory;
  drv: SplitDriverQueue;
  dev: SplitQueue;
  buf: (size: number) => number;
}

function setup(
  opts: { size?: number; eventIdx?: boolean; indirect?: boolean; base?: number; memSize?: number } = {},
): Setup {
  const base = opts.base ?? 0;
  const memSize = opts.memSize ?? MEM_SIZE;
  const mem = new FlatMemory(new ArrayBuffer(memSize), base);
  const rings = new BumpAllocator(base, base + RING_END);
  const data = new BumpAllocator(base + RING_END, base + memSize);
  const eventIdx = opts.eventIdx ?? false;
  const indirect = opts.indirect ?? false;
  const drv = new SplitDriverQueue({ mem, alloc: rings.alloc, size: opts.size ?? 8, eventIdx, indirect });
  const dev = new SplitQueue(mem, drv.layout, { indirect, eventIdx });
  return { mem, drv, dev, buf: (n) => data.alloc(n, 8) };
}

function mustPop(dev: SplitQueue): Chain {
  const c = dev.pop();
  if (c === null) throw new Error("expected a chain");
  return c;
}

function segments(c: Chain): { addr: number; len: number; w: boolean }[] {
  const out = [];
  for (let i = 0; i < c.segmentCount; i++) {
    out.push({ addr: c.addr[i]!, len: c.len[i]!, w: i >= c.readableCount });
  }
  return out;
}

function fillPattern(mem: GuestMemory, addr: number, len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (seed + i * 7) & 0xff;
  mem.write(addr, b, 0, len);
  return b;
}

describe("SplitQueue with SplitDriverQueue", () => {
  it("pops nothing from an empty ring", () => {
    const { dev } = setup();
    expect(dev.pop()).toBeNull();
    expect(dev.inFlight).toBe(0);
  });

  it("passes a single device-readable buffer and returns it with length 0", () => {
    const { mem, drv, dev, buf } = setup();
    const a = buf(100);
    const data = fillPattern(mem, a, 100, 3);
    const token = drv.add([{ addr: a, len: 100 }], []);
    const c = mustPop(dev);
    expect(c.fault).toBe(ChainFault.None);
    expect(c.id).toBe(0);
    expect(c.ringSlots).toBe(1);
    expect(segments(c)).toEqual([{ addr: a, len: 100, w: false }]);
    expect(c.readableBytes).toBe(100);
    expect(c.writableBytes).toBe(0);
    const got = new Uint8Array(100);
    expect(readFromChain(mem, c, 0, got, 0, 100)).toBe(100);
    expect(got).toEqual(data);
    expect(dev.inFlight).toBe(1);
    expect(dev.pop()).toBeNull();
    dev.push(c, 0);
    expect(dev.inFlight).toBe(0);
    expect(drv.getUsed()).toEqual({ token, len: 0 });
    expect(drv.getUsed()).toBeNull();
    expect(drv.freeCount).toBe(8);
  });

  it("passes a single device-writable buffer and reports the written length", () => {
    const { mem, drv, dev, buf } = setup();
    const a = buf(64);
    const token = drv.add([], [{ addr: a, len: 64 }]);
    const c = mustPop(dev);
    expect(segments(c)).toEqual([{ addr: a, len: 64, w: true }]);
    const src = Uint8Array.from({ length: 40 }, (_, i) => i + 1);
    expect(writeToChain(mem, c, 0, src, 0, 40)).toBe(40);
    dev.push(c, 40);
    expect(drv.getUsed()).toEqual({ token, len: 40 });
    const back = new Uint8Array(40);
    mem.read(a, back, 0, 40);
    expect(back).toEqual(src);
  });

  it("flattens a multi-segment chain, readable before writable", () => {
    const { mem, drv, dev, buf } = setup();
    const r = [buf(10), buf(20), buf(30)];
    const w = [buf(5), buf(50)];
    fillPattern(mem, r[0]!, 10, 0);
    fillPattern(mem, r[1]!, 20, 10);
    fillPattern(mem, r[2]!, 30, 30);
    const token = drv.add(
      [
        { addr: r[0]!, len: 10 },
        { addr: r[1]!, len: 20 },
        { addr: r[2]!, len: 30 },
      ],
      [
        { addr: w[0]!, len: 5 },
        { addr: w[1]!, len: 50 },
      ],
    );
    expect(drv.freeCount).toBe(3);
    const c = mustPop(dev);
    expect(segments(c)).toEqual([
      { addr: r[0], len: 10, w: false },
      { addr: r[1], len: 20, w: false },
      { addr: r[2], len: 30, w: false },
      { addr: w[0], len: 5, w: true },
      { addr: w[1], len: 50, w: true },
    ]);
    expect(c.readableBytes).toBe(60);
    expect(c.writableBytes).toBe(55);
    // Reading across the segment boundaries sees the three buffers back to back.
    const got = new Uint8Array(25);
    expect(readFromChain(mem, c, 5, got, 0, 25)).toBe(25);
    const expected = new Uint8Array(60);
    for (let i = 0; i < 10; i++) expected[i] = (i * 7) & 0xff;
    for (let i = 0; i < 20; i++) expected[10 + i] = (10 + i * 7) & 0xff;
    for (let i = 0; i < 30; i++) expected[30 + i] = (30 + i * 7) & 0xff;
    expect(got).toEqual(expected.subarray(5, 30));
    // Writing across the two writable buffers.
    const src = Uint8Array.from({ length: 55 }, (_, i) => 200 - i);
    expect(writeToChain(mem, c, 0, src, 0, 55)).toBe(55);
    dev.push(c, 55);
    expect(drv.getUsed()).toEqual({ token, len: 55 });
    expect(drv.freeCount).toBe(8);
    const w0 = new Uint8Array(5);
    const w1 = new Uint8Array(50);
    mem.read(w[0]!, w0, 0, 5);
    mem.read(w[1]!, w1, 0, 50);
    expect(w0).toEqual(src.subarray(0, 5));
    expect(w1).toEqual(src.subarray(5));
  });

  it("walks indirect chains, which use one main-table descriptor", () => {
    const { drv, dev, buf } = setup({ indirect: true });
    const bufs = [buf(16), buf(32), buf(48), buf(64)];
    const token = drv.add(
      [
        { addr: bufs[0]!, len: 16 },
        { addr: bufs[1]!, len: 32 },
      ],
      [
        { addr: bufs[2]!, len: 48 },
        { addr: bufs[3]!, len: 64 },
      ],
    );
    expect(drv.freeCount).toBe(7);
    const c = mustPop(dev);
    expect(c.fault).toBe(ChainFault.None);
    expect(segments(c)).toEqual([
      { addr: bufs[0], len: 16, w: false },
      { addr: bufs[1], len: 32, w: false },
      { addr: bufs[2], len: 48, w: true },
      { addr: bufs[3], len: 64, w: true },
    ]);
    dev.push(c, 100);
    expect(drv.getUsed()).toEqual({ token, len: 100 });
    expect(drv.freeCount).toBe(8);
  });

  it("fills the whole ring with indirect and direct chains", () => {
    const { drv, dev, buf } = setup({ indirect: true, size: 4 });
    const a = buf(4096);
    const tokens = [
      drv.add([{ addr: a, len: 1 }], [{ addr: a + 100, len: 2 }], { indirect: true }),
      drv.add([{ addr: a + 200, len: 3 }], []),
      drv.add([], [{ addr: a + 300, len: 4 }]),
      drv.add(
        [
          { addr: a, len: 1 },
          { addr: a, len: 1 },
          { addr: a, len: 1 },
        ],
        [{ addr: a, len: 1 }],
      ),
    ];
    expect(drv.freeCount).toBe(0);
    expect(() => drv.add([{ addr: a, len: 1 }], [])).toThrow(/ring full/);
    const chains = [mustPop(dev), mustPop(dev), mustPop(dev), mustPop(dev)];
    expect(dev.pop()).toBeNull();
    expect(chains.map((c) => c.segmentCount)).toEqual([2, 1, 1, 4]);
    expect(dev.inFlight).toBe(4);
    // Out of order completion.
    dev.push(chains[2]!, 4);
    dev.push(chains[0]!, 2);
    dev.push(chains[3]!, 1);
    dev.push(chains[1]!, 0);
    expect([drv.getUsed(), drv.getUsed(), drv.getUsed(), drv.getUsed(), drv.getUsed()]).toEqual([
      { token: tokens[2], len: 4 },
      { token: tokens[0], len: 2 },
      { token: tokens[3], len: 1 },
      { token: tokens[1], len: 0 },
      null,
    ]);
  });

  it("clamps the used length to the writable bytes", () => {
    const { mem, drv, dev, buf } = setup();
    const a = buf(64);
    drv.add([{ addr: a, len: 8 }], [{ addr: a + 8, len: 16 }]);
    dev.push(mustPop(dev), 1000);
    expect(drv.getUsed()?.len).toBe(16);
    drv.add([{ addr: a, len: 8 }], []);
    dev.push(mustPop(dev), 8);
    expect(drv.getUsed()?.len).toBe(0);
    drv.add([], [{ addr: a, len: 8 }]);
    dev.push(mustPop(dev), -5);
    expect(drv.getUsed()?.len).toBe(0);
    drv.add([], [{ addr: a, len: 8 }]);
    dev.push(mustPop(dev), Number.NaN);
    expect(drv.getUsed()?.len).toBe(0);
    drv.add([], [{ addr: a, len: 8 }]);
    dev.push(mustPop(dev), 7.9);
    expect(drv.getUsed()?.len).toBe(7);
    expect(mem.readU16(drv.layout.deviceAddr + 2)).toBe(5);
  });

  it("reuses pooled chains instead of allocating", () => {
    const { drv, dev, buf } = setup({ size: 4 });
    const a = buf(16);
    const seen = new Set<Chain>();
    for (let i = 0; i < 100; i++) {
      drv.add([{ addr: a, len: 16 }], []);
      drv.add([{ addr: a, len: 16 }], []);
      const c1 = mustPop(dev);
      const c2 = mustPop(dev);
      seen.add(c1).add(c2);
      dev.push(c1, 0);
      dev.push(c2, 0);
      drv.getUsed();
      drv.getUsed();
    }
    expect(seen.size).toBe(2);
  });

  it("ignores a chain pushed twice", () => {
    const { mem, drv, dev, buf } = setup();
    const a = buf(16);
    drv.add([], [{ addr: a, len: 16 }]);
    const c = mustPop(dev);
    dev.push(c, 4);
    dev.push(c, 4);
    expect(dev.inFlight).toBe(0);
    expect(mem.readU16(drv.layout.deviceAddr + 2)).toBe(1);
  });

  it("survives many laps of the 16-bit indices", () => {
    const { mem, drv, dev, buf } = setup({ size: 8, indirect: true });
    const a = buf(256);
    let nextExpected = 1;
    let round = 0;
    let completed = 0;
    while (completed < 140_000) {
      const batch = (round % 8) + 1;
      round++;
      for (let k = 0; k < batch; k++) {
        const n = (completed + k) % 3;
        if (n === 0) drv.add([{ addr: a, len: 8 }], [{ addr: a + 8, len: 32 }]);
        else if (n === 1) drv.add([], [{ addr: a + 64, len: 64 }]);
        else drv.add([{ addr: a, len: 1 }], [{ addr: a + 1, len: 1 }], { indirect: true });
      }
      for (let k = 0; k < batch; k++) {
        const c = mustPop(dev);
        dev.push(c, c.writableBytes);
      }
      expect(dev.pop()).toBeNull();
      for (let k = 0; k < batch; k++) {
        const u = drv.getUsed();
        const n = (completed + k) % 3;
        const len = n === 0 ? 32 : n === 1 ? 64 : 1;
        // Plain comparison: expect() per element would dominate the run time.
        if (u === null || u.token !== nextExpected || u.len !== len) {
          expect(u).toEqual({ token: nextExpected, len });
        }
        nextExpected++;
      }
      completed += batch;
    }
    expect(drv.getUsed()).toBeNull();
    expect(dev.getBase()).toBe(completed & 0xffff);
    expect(mem.readU16(drv.layout.driverAddr + 2)).toBe(completed & 0xffff);
    expect(mem.readU16(drv.layout.deviceAddr + 2)).toBe(completed & 0xffff);
    expect(drv.freeCount).toBe(8);
  });
});

describe("notification suppression with EVENT_IDX", () => {
  it("suppresses kicks through avail_event", () => {
    const { mem, drv, dev, buf } = setup({ eventIdx: true, size: 8 });
    const availEvent = (): number => mem.readU16(drv.layout.deviceAddr + 4 + 8 * 8);
    const a = buf(16);
    const add = (): number => drv.add([{ addr: a, len: 16 }], []);

    expect(drv.kickNeeded()).toBe(false); // nothing added
    add();
    expect(drv.kickNeeded()).toBe(true); // avail_event 0, idx 0 -> 1
    const c1 = mustPop(dev);
    expect(availEvent()).toBe(1); // kept current by pop while notifications are on
    add();
    add();
    expect(drv.kickNeeded()).toBe(true); // entry 1 written
    expect(dev.enableNotifications(false)).toBe(true); // buffers 1 and 2 are pending
    const c2 = mustPop(dev);
    const c3 = mustPop(dev);
    expect(availEvent()).toBe(1); // not moved while disabled
    add();
    expect(drv.kickNeeded()).toBe(false); // idx 3 -> 4 does not cross 1
    expect(dev.enableNotifications(true)).toBe(true); // buffer 3 is pending
    expect(availEvent()).toBe(3);
    const c4 = mustPop(dev);
    expect(availEvent()).toBe(4);
    expect(dev.enableNotifications(true)).toBe(false);
    add();
    add();
    expect(drv.kickNeeded()).toBe(true); // 4 -> 6 crosses 4
    for (const c of [c1, c2, c3, c4]) dev.push(c, 0);
    for (let i = 0; i < 4; i++) expect(drv.getUsed()).not.toBeNull();
    // A driver batch that does not reach avail_event gets no kick.
    dev.enableNotifications(false);
    mustPop(dev);
    mustPop(dev);
    mem.writeU16(drv.layout.deviceAddr + 4 + 8 * 8, 9);
    add();
    add();
    expect(drv.kickNeeded()).toBe(false); // 6 -> 8 does not write entry 9
    add();
    add();
    expect(drv.kickNeeded()).toBe(true); // 8 -> 10 writes entry 9
  });

  it("suppresses interrupts through used_event", () => {
    const { mem, drv, dev, buf } = setup({ eventIdx: true, size: 8 });
    const a = buf(16);
    for (let i = 0; i < 8; i++) drv.add([], [{ addr: a, len: 16 }]);
    const chains = Array.from({ length: 8 }, () => mustPop(dev));

    expect(dev.needsInterrupt()).toBe(false); // nothing pushed yet
    dev.push(chains[0]!, 1);
    expect(dev.needsInterrupt()).toBe(true); // used_event 0, used idx 0 -> 1
    expect(dev.needsInterrupt()).toBe(false); // nothing new
    dev.push(chains[1]!, 1);
    dev.push(chains[2]!, 1);
    expect(dev.needsInterrupt()).toBe(false); // 1 -> 3 with used_event still 0
    // The driver reaps and re-arms: used_event = 3.
    expect(drv.getUsed()).not.toBeNull();
    expect(drv.getUsed()).not.toBeNull();
    expect(drv.getUsed()).not.toBeNull();
    expect(mem.readU16(drv.layout.driverAddr + 4 + 2 * 8)).toBe(3);
    dev.push(chains[3]!, 1);
    dev.push(chains[4]!, 1);
    expect(dev.needsInterrupt()).toBe(true); // 3 -> 5 crosses 3
    // Interrupts off: used_event stays at 3 while the driver polls.
    drv.enableInterrupts(false);
    expect(drv.getUsed()).not.toBeNull();
    expect(drv.getUsed()).not.toBeNull();
    expect(mem.readU16(drv.layout.driverAddr + 4 + 2 * 8)).toBe(3);
    dev.push(chains[5]!, 1);
    expect(dev.needsInterrupt()).toBe(false);
    // An exact point: interrupt when used idx reaches 8 (entry 7 written).
    drv.writeUsedEvent(7);
    dev.push(chains[6]!, 1);
    expect(dev.needsInterrupt()).toBe(false); // 6 -> 7
    dev.push(chains[7]!, 1);
    expect(dev.needsInterrupt()).toBe(true); // 7 -> 8
  });

  it("ignores the NO_INTERRUPT flag and leaves the used flags alone", () => {
    const { mem, drv, dev, buf } = setup({ eventIdx: true });
    const a = buf(16);
    mem.writeU16(drv.layout.driverAddr, VIRTQ_AVAIL_F_NO_INTERRUPT);
    drv.add([], [{ addr: a, len: 16 }]);
    dev.enableNotifications(false);
    dev.push(mustPop(dev), 0);
    expect(dev.needsInterrupt()).toBe(true);
    expect(mem.readU16(drv.layout.deviceAddr)).toBe(0);
  });

  it("interrupts after a full lap of pushes between checks", () => {
    const { drv, dev, buf } = setup({ eventIdx: true, size: 1 });
    const a = buf(16);
    drv.writeUsedEvent(0xffff);
    drv.enableInterrupts(false);
    // Exactly 65536 pushes bring the used index back where it started.
    for (let i = 0; i < 0x10000; i++) {
      drv.add([], [{ addr: a, len: 16 }]);
      dev.push(mustPop(dev), 0);
      drv.getUsed();
    }
    expect(dev.needsInterrupt()).toBe(true);
  });
});

describe("notification suppression without EVENT_IDX", () => {
  it("uses the used ring NO_NOTIFY flag for kicks", () => {
    const { mem, drv, dev, buf } = setup();
    const a = buf(16);
    drv.add([{ addr: a, len: 16 }], []);
    expect(drv.kickNeeded()).toBe(true);
    expect(dev.enableNotifications(false)).toBe(true);
    expect(mem.readU16(drv.layout.deviceAddr) & VIRTQ_USED_F_NO_NOTIFY).toBe(1);
    drv.add([{ addr: a, len: 16 }], []);
    expect(drv.kickNeeded()).toBe(false);
    mustPop(dev);
    mustPop(dev);
    expect(dev.enableNotifications(true)).toBe(false);
    expect(mem.readU16(drv.layout.deviceAddr)).toBe(0);
    drv.add([{ addr: a, len: 16 }], []);
    expect(drv.kickNeeded()).toBe(true);
    expect(mem.readU16(drv.layout.deviceAddr + 4 + 8 * 8)).toBe(0); // avail_event untouched
  });

  it("uses the avail ring NO_INTERRUPT flag for interrupts", () => {
    const { drv, dev, buf } = setup();
    const a = buf(16);
    for (let i = 0; i < 4; i++) drv.add([], [{ addr: a, len: 16 }]);
    const cs = [mustPop(dev), mustPop(dev), mustPop(dev), mustPop(dev)];
    expect(dev.needsInterrupt()).toBe(false);
    dev.push(cs[0]!, 0);
    expect(dev.needsInterrupt()).toBe(true);
    dev.push(cs[1]!, 0);
    dev.push(cs[2]!, 0);
    expect(dev.needsInterrupt()).toBe(true);
    expect(dev.needsInterrupt()).toBe(false);
    drv.enableInterrupts(false);
    dev.push(cs[3]!, 0);
    expect(dev.needsInterrupt()).toBe(false);
    drv.enableInterrupts(true);
    expect(dev.needsInterrupt()).toBe(false); // nothing pushed since the last call
  });
});

describe("getBase / setBase", () => {
  it("reports the next available index", () => {
    const { drv, dev, buf } = setup();
    const a = buf(16);
    expect(dev.getBase()).toBe(0);
    for (let i = 0; i < 3; i++) drv.add([{ addr: a, len: 16 }], []);
    mustPop(dev);
    mustPop(dev);
    expect(dev.getBase()).toBe(2);
  });

  it("resumes at a base, moving the used index with it", () => {
    const mem = new FlatMemory(new ArrayBuffer(MEM_SIZE));
    const layout: QueueLayout = { size: 4, descAddr: 0x1000, driverAddr: 0x2000, deviceAddr: 0x3000 };
    const dev = new SplitQueue(mem, layout, { indirect: false, eventIdx: false });
    dev.setBase(0x1fffe);
    expect(dev.getBase()).toBe(0xfffe);
    // The driver had published entries up to 0xffff + 1 = 0 (wrapped).
    writeDesc(mem, 0x1000, 2, 0x8000, 4, VIRTQ_DESC_F_WRITE, 0);
    writeDesc(mem, 0x1000, 3, 0x8000, 8, VIRTQ_DESC_F_WRITE, 0);
    mem.writeU16(0x2000 + 4 + 2 * (0xfffe & 3), 2);
    mem.writeU16(0x2000 + 4 + 2 * (0xffff & 3), 3);
    mem.writeU16(0x2002, 0);
    const c1 = mustPop(dev);
    const c2 = mustPop(dev);
    expect([c1.id, c2.id]).toEqual([2, 3]);
    expect(dev.getBase()).toBe(0);
    dev.push(c1, 4);
    expect(mem.readU32(0x3004 + 8 * 2)).toBe(2);
    expect(mem.readU32(0x3004 + 8 * 2 + 4)).toBe(4);
    expect(mem.readU16(0x3002)).toBe(0xffff);
    dev.push(c2, 8);
    expect(mem.readU32(0x3004 + 8 * 3)).toBe(3);
    expect(mem.readU16(0x3002)).toBe(0);
  });
});

describe("ring structure errors", () => {
  const mem = new FlatMemory(new ArrayBuffer(0x10000), 0x1000);
  const none: RingFeatures = { indirect: false, eventIdx: false };
  const ev: RingFeatures = { indirect: false, eventIdx: true };
  const ok = (l: Partial<QueueLayout>, f = none): SplitQueue =>
    new SplitQueue(mem, { size: 16, descAddr: 0x1000, driverAddr: 0x2000, deviceAddr: 0x3000, ...l }, f);

  it("accepts areas inside memory", () => {
    expect(ok({}).size).toBe(16);
    expect(ok({}, ev).size).toBe(16);
    // A table that ends exactly at the end of memory.
    expect(ok({ descAddr: 0x11000 - 16 * 16 }).size).toBe(16);
  });

  it.each([0, 3, 6, 65536, 1.5, -4, Number.NaN])("rejects queue size %s", (size) => {
    expect(() => ok({ size })).toThrow(VirtqueueBrokenError);
  });

  it("rejects a size above 32768", () => {
    const big = new FlatMemory(new ArrayBuffer(0x200000));
    expect(
      () =>
        new SplitQueue(big, { size: 65536, descAddr: 0, driverAddr: 0x100000, deviceAddr: 0x120000 }, none),
    ).toThrow(/power of 2/);
  });

  it.each([
    ["descriptor table below memory", { descAddr: 0x0 }],
    ["descriptor table past the end", { descAddr: 0x11000 - 16 * 16 + 1 }],
    ["available ring past the end", { driverAddr: 0x11000 - 4 - 2 * 16 + 1 }],
    ["used ring past the end", { deviceAddr: 0x11000 - 4 - 8 * 16 + 2 }],
    ["unsafe address", { deviceAddr: 2 ** 60 }],
    ["fractional address", { descAddr: 0x1000 + 0.5 }],
  ] as const)("rejects a %s", (_name, l) => {
    expect(() => ok(l)).toThrow(VirtqueueBrokenError);
  });

  it("counts the event fields only with EVENT_IDX", () => {
    const availEnd = { driverAddr: 0x11000 - 4 - 2 * 16 };
    const usedEnd = { deviceAddr: 0x11000 - 4 - 8 * 16 };
    expect(ok(availEnd).size).toBe(16);
    expect(ok(usedEnd).size).toBe(16);
    expect(() => ok(availEnd, ev)).toThrow(VirtqueueBrokenError);
    expect(() => ok(usedEnd, ev)).toThrow(VirtqueueBrokenError);
  });

  it("breaks when the available index jumps by more than the queue size", () => {
    const m = new FlatMemory(new ArrayBuffer(0x10000));
    const dev = new SplitQueue(m, { size: 4, descAddr: 0x100, driverAddr: 0x200, deviceAddr: 0x300 }, none);
    for (let i = 0; i < 4; i++) writeDesc(m, 0x100, i, 0x1000, 16, 0, 0);
    for (let i = 0; i < 4; i++) m.writeU16(0x204 + 2 * i, i);
    m.writeU16(0x202, 5);
    expect(() => dev.pop()).toThrow(VirtqueueBrokenError);
    expect(() => dev.pop()).toThrow(/more than the queue size/);
    // Going backwards is a huge forward jump too.
    m.writeU16(0x202, 0xffff);
    expect(() => dev.pop()).toThrow(VirtqueueBrokenError);
    // Exactly the queue size is fine.
    m.writeU16(0x202, 4);
    for (let i = 0; i < 4; i++) expect(mustPop(dev).id).toBe(i);
    expect(dev.pop()).toBeNull();
  });

  it("breaks when the driver offers more chains than it has descriptors", () => {
    const m = new FlatMemory(new ArrayBuffer(0x10000));
    const dev = new SplitQueue(m, { size: 4, descAddr: 0x100, driverAddr: 0x200, deviceAddr: 0x300 }, none);
    for (let i = 0; i < 4; i++) writeDesc(m, 0x100, i, 0x1000, 16, 0, 0);
    m.writeU16(0x202, 3);
    mustPop(dev);
    mustPop(dev);
    const c = mustPop(dev);
    // Three in flight; re-offering three more heads cannot be legitimate.
    m.writeU16(0x202, 6);
    expect(() => dev.pop()).toThrow(VirtqueueBrokenError);
    dev.push(c, 0);
    m.writeU16(0x202, 4);
    expect(mustPop(dev).id).toBe(0);
  });

  it("wraps memory faults on the ring areas into VirtqueueBrokenError", () => {
    const rm = new RegionMemory([
      { guestAddr: 0, bytes: new Uint8Array(0x1000) },
      { guestAddr: 0x10000, bytes: new Uint8Array(0x1000) },
    ]);
    const dev = new SplitQueue(
      rm,
      { size: 4, descAddr: 0x100, driverAddr: 0x200, deviceAddr: 0x10000 },
      none,
    );
    writeDesc(rm, 0x100, 0, 0x800, 16, VIRTQ_DESC_F_WRITE, 0);
    rm.writeU16(0x202, 1);
    const c = mustPop(dev);
    rm.remove(0x10000);
    expect(() => dev.push(c, 0)).toThrow(VirtqueueBrokenError);
    expect(() => dev.enableNotifications(false)).toThrow(VirtqueueBrokenError);
    rm.remove(0);
    expect(() => dev.pop()).toThrow(VirtqueueBrokenError);
  });
});

/** Writes descriptor `index` of the table at `table`. */
function writeDesc(
  mem: GuestMemory,
  table: number,
  index: number,
  addr: number,
  len: number,
  flags: number,
  next: number,
): void {
  const d = table + 16 * index;
  mem.writeU64(d, addr);
  mem.writeU32(d + 8, len);
  mem.writeU16(d + 12, flags);
  mem.writeU16(d + 14, next);
}

describe("malformed chains", () => {
  const SIZE = 8;
  const DESC = 0x1000;
  const AVAIL = 0x2000;
  const USED = 0x3000;
  const IND = 0x4000;
  const BUF = 0x8000;
  const MEM = 0x10000;
  const N = VIRTQ_DESC_F_NEXT;
  const W = VIRTQ_DESC_F_WRITE;
  const I = VIRTQ_DESC_F_INDIRECT;

  function raw(features: Partial<RingFeatures> = {}): {
    mem: FlatMemory;
    dev: SplitQueue;
    d: (i: number, addr: number, len: number, flags: number, next?: number) => void;
    t: (i: number, addr: number, len: number, flags: number, next?: number) => void;
    offer: (...heads: number[]) => void;
  } {
    const mem = new FlatMemory(new ArrayBuffer(MEM));
    const dev = new SplitQueue(
      mem,
      { size: SIZE, descAddr: DESC, driverAddr: AVAIL, deviceAddr: USED },
      { ...features, indirect: features.indirect ?? true, eventIdx: features.eventIdx ?? false },
    );
    let idx = 0;
    return {
      mem,
      dev,
      d: (i, addr, len, flags, next = 0) => writeDesc(mem, DESC, i, addr, len, flags, next),
      t: (i, addr, len, flags, next = 0) => writeDesc(mem, IND, i, addr, len, flags, next),
      offer: (...heads) => {
        for (const h of heads) {
          mem.writeU16(AVAIL + 4 + 2 * (idx % SIZE), h);
          idx++;
        }
        mem.writeU16(AVAIL + 2, idx);
      },
    };
  }

  /** Pops one chain, checks its fault, pushes it back and checks the used element. */
  function expectFault(r: ReturnType<typeof raw>, fault: ChainFault, head: number): void {
    const c = mustPop(r.dev);
    expect(c.fault).toBe(fault);
    expect(c.id).toBe(head);
    expect(c.segmentCount).toBe(0);
    expect(c.readableBytes + c.writableBytes).toBe(0);
    const usedIdx = r.mem.readU16(USED + 2);
    r.dev.push(c, 1234);
    expect(r.mem.readU16(USED + 2)).toBe((usedIdx + 1) & 0xffff);
    const elem = USED + 4 + 8 * (usedIdx % SIZE);
    expect(r.mem.readU32(elem)).toBe(head);
    expect(r.mem.readU32(elem + 4)).toBe(0);
    expect(r.dev.inFlight).toBe(0);
  }

  it("accepts a well-formed hand-written chain, including zero-length buffers", () => {
    const r = raw();
    r.d(5, BUF, 0, N, 2);
    r.d(2, BUF + 16, 8, N | W, 7);
    r.d(7, MEM, 0, W); // zero-length at the very end of memory
    r.offer(5);
    const c = mustPop(r.dev);
    expect(c.fault).toBe(ChainFault.None);
    expect(segments(c)).toEqual([
      { addr: BUF, len: 0, w: false },
      { addr: BUF + 16, len: 8, w: true },
      { addr: MEM, len: 0, w: true },
    ]);
  });

  it("handles direct descriptors followed by an indirect table (§2.7.5.3.2)", () => {
    const r = raw();
    r.d(0, BUF, 4, N, 1);
    r.d(1, IND, 32, I | W); // the WRITE flag of an indirect descriptor is ignored
    r.t(0, BUF + 4, 4, N, 1);
    r.t(1, BUF + 8, 4, W);
    r.offer(0);
    const c = mustPop(r.dev);
    expect(c.fault).toBe(ChainFault.None);
    expect(segments(c)).toEqual([
      { addr: BUF, len: 4, w: false },
      { addr: BUF + 4, len: 4, w: false },
      { addr: BUF + 8, len: 4, w: true },
    ]);
  });

  it("BadIndex: head not below the queue size", () => {
    const r = raw();
    r.offer(SIZE);
    expectFault(r, ChainFault.BadIndex, SIZE);
    r.offer(0xffff);
    expectFault(r, ChainFault.BadIndex, 0xffff);
  });

  it("BadIndex: next not below the queue size", () => {
    const r = raw();
    r.d(1, BUF, 4, N, SIZE);
    r.offer(1);
    expectFault(r, ChainFault.BadIndex, 1);
  });

  it("BadIndex: next past the end of an indirect table", () => {
    const r = raw();
    r.d(0, IND, 32, I);
    r.t(0, BUF, 4, N, 2);
    r.offer(0);
    expectFault(r, ChainFault.BadIndex, 0);
  });

  it("Loop: a descriptor pointing at itself", () => {
    const r = raw();
    r.d(3, BUF, 4, N, 3);
    r.offer(3);
    expectFault(r, ChainFault.Loop, 3);
  });

  it("Loop: a cycle of two", () => {
    const r = raw();
    r.d(3, BUF, 4, N, 4);
    r.d(4, BUF, 4, W | N, 3);
    r.offer(4);
    // 4 (writable) -> 3 (readable): a loop that also breaks ordering; either fault refuses it.
    const c = mustPop(r.dev);
    expect([ChainFault.Loop, ChainFault.ReadableAfterWritable]).toContain(c.fault);
    r.dev.push(c, 0);
    r.d(4, BUF, 4, N, 3);
    r.offer(4);
    expectFault(r, ChainFault.Loop, 4);
  });

  it("Loop: a cycle inside an indirect table", () => {
    const r = raw();
    r.d(0, IND, 48, I);
    r.t(0, BUF, 4, N, 1);
    r.t(1, BUF, 4, N, 2);
    r.t(2, BUF, 4, N, 0);
    r.offer(0);
    expectFault(r, ChainFault.Loop, 0);
  });

  it("TooLong: direct plus indirect descriptors longer than the chain bound", () => {
    const r = raw({ maxChain: SIZE });
    r.d(0, BUF, 4, N, 1);
    r.d(1, IND, 16 * SIZE, I);
    for (let i = 0; i < SIZE; i++) r.t(i, BUF, 4, i < SIZE - 1 ? N : 0, i + 1);
    r.offer(0);
    expectFault(r, ChainFault.TooLong, 0);
    // The same table alone is exactly the bound: fine.
    r.offer(1);
    const c = mustPop(r.dev);
    expect(c.fault).toBe(ChainFault.None);
    expect(c.segmentCount).toBe(SIZE);
  });

  it("ReadableAfterWritable: in the main table and in an indirect table", () => {
    const r = raw();
    r.d(0, BUF, 4, W | N, 1);
    r.d(1, BUF, 4, 0);
    r.offer(0);
    expectFault(r, ChainFault.ReadableAfterWritable, 0);
    r.d(2, BUF, 4, W | N, 3);
    r.d(3, IND, 32, I);
    r.t(0, BUF, 4, N, 1);
    r.t(1, BUF, 4, W);
    r.offer(2);
    expectFault(r, ChainFault.ReadableAfterWritable, 2);
  });

  it("NestedIndirect: indirect not negotiated", () => {
    const r = raw({ indirect: false });
    r.d(0, IND, 16, I);
    r.t(0, BUF, 4, 0);
    r.offer(0);
    expectFault(r, ChainFault.NestedIndirect, 0);
  });

  it("NestedIndirect: INDIRECT together with NEXT", () => {
    const r = raw();
    r.d(0, IND, 16, I | N, 1);
    r.d(1, BUF, 4, 0);
    r.t(0, BUF, 4, 0);
    r.offer(0);
    expectFault(r, ChainFault.NestedIndirect, 0);
  });

  it("NestedIndirect: an indirect descriptor inside an indirect table", () => {
    const r = raw();
    r.d(0, IND, 32, I);
    r.t(0, BUF, 4, N, 1);
    r.t(1, IND, 32, I);
    r.offer(0);
    expectFault(r, ChainFault.NestedIndirect, 0);
  });

  it.each([
    ["length 0", 0],
    ["length not a multiple of 16", 24],
  ])("BadIndirectTable: %s", (_name, len) => {
    const r = raw();
    r.d(0, IND, len, I);
    for (let i = 0; i <= SIZE; i++) r.t(i, BUF, 4, 0);
    r.offer(0);
    expectFault(r, ChainFault.BadIndirectTable, 0);
  });

  it.each([
    ["past the end", MEM - 4, 5],
    ["length that wraps", BUF, 0xffff_ffff],
    ["address above 2^53", 2 ** 60, 4],
  ])("OutsideMemory: a buffer %s", (_name, addr, len) => {
    const r = raw();
    r.d(6, BUF, 4, N, 2);
    r.d(2, addr, len, W);
    r.offer(6);
    expectFault(r, ChainFault.OutsideMemory, 6);
  });

  it("OutsideMemory: a buffer at the top of the 64-bit address space", () => {
    const r = raw();
    r.d(0, 0, 16, W);
    r.mem.writeU32(DESC + 4, 0xffff_ffff); // addr 0xffff_ffff_0000_0000
    r.offer(0);
    expectFault(r, ChainFault.OutsideMemory, 0);
    r.mem.writeU32(DESC, 0xffff_fff0); // addr 0xffff_ffff_ffff_fff0: addr + len wraps to 0 in 64 bits
    r.offer(0);
    expectFault(r, ChainFault.OutsideMemory, 0);
  });

  it("OutsideMemory: a buffer below a nonzero memory base", () => {
    const mem = new FlatMemory(new ArrayBuffer(0x10000), 0x10000);
    const dev = new SplitQueue(
      mem,
      { size: 4, descAddr: 0x10000, driverAddr: 0x10100, deviceAddr: 0x10200 },
      { indirect: false, eventIdx: false },
    );
    writeDesc(mem, 0x10000, 0, 0xfff0, 0x20, 0, 0);
    writeDesc(mem, 0x10000, 1, 0x10000, 0, 0, 0);
    writeDesc(mem, 0x10000, 2, 0x20000, 1, 0, 0);
    mem.writeU16(0x10104, 0);
    mem.writeU16(0x10106, 1);
    mem.writeU16(0x10108, 2);
    mem.writeU16(0x10102, 3);
    expect(mustPop(dev).fault).toBe(ChainFault.OutsideMemory);
    expect(mustPop(dev).fault).toBe(ChainFault.None);
    expect(mustPop(dev).fault).toBe(ChainFault.OutsideMemory);
  });

  it("OutsideMemory: an indirect table outside memory, and a buffer inside one", () => {
    const r = raw();
    r.d(0, MEM - 16, 32, I);
    r.offer(0);
    expectFault(r, ChainFault.OutsideMemory, 0);
    r.d(1, IND, 32, I);
    r.t(0, BUF, 4, N, 1);
    r.t(1, MEM, 1, W);
    r.offer(1);
    expectFault(r, ChainFault.OutsideMemory, 1);
  });

  it("keeps working after faulted chains", () => {
    const r = raw();
    r.offer(SIZE + 3);
    r.d(0, BUF, 4, W);
    r.offer(0);
    expectFault(r, ChainFault.BadIndex, SIZE + 3);
    const c = mustPop(r.dev);
    expect(c.fault).toBe(ChainFault.None);
    r.dev.push(c, 4);
    expect(r.mem.readU32(USED + 4 + 8 * 1 + 4)).toBe(4);
  });
});

describe("RegionMemory", () => {
  it("passes a buffer that crosses two adjacent regions", () => {
    const low = new Uint8Array(0x10000);
    const high = new Uint8Array(0x10000);
    const mem = new RegionMemory([
      { guestAddr: 0, bytes: low },
      { guestAddr: 0x10000, bytes: high },
      { guestAddr: 0x40000, bytes: new Uint8Array(0x1000) },
    ]);
    const rings = new BumpAllocator(0, 0x4000);
    const drv = new SplitDriverQueue({ mem, alloc: rings.alloc, size: 8, eventIdx: true, indirect: true });
    const dev = new SplitQueue(mem, drv.layout, { indirect: true, eventIdx: true });
    const addr = 0x10000 - 10;
    const token = drv.add(
      [{ addr: 0x8000, len: 4 }],
      [
        { addr, len: 30 },
        { addr: 0x40000, len: 16 },
      ],
    );
    const c = mustPop(dev);
    expect(c.fault).toBe(ChainFault.None);
    expect(segments(c)).toEqual([
      { addr: 0x8000, len: 4, w: false },
      { addr, len: 30, w: true },
      { addr: 0x40000, len: 16, w: true },
    ]);
    const src = Uint8Array.from({ length: 46 }, (_, i) => i + 1);
    expect(writeToChain(mem, c, 0, src, 0, 46)).toBe(46);
    dev.push(c, 46);
    expect(drv.getUsed()).toEqual({ token, len: 46 });
    expect(Array.from(low.subarray(0x10000 - 10))).toEqual(Array.from(src.subarray(0, 10)));
    expect(Array.from(high.subarray(0, 20))).toEqual(Array.from(src.subarray(10, 30)));

    // A buffer that runs from the second region into the hole after it is refused.
    drv.add([], [{ addr: 0x20000 - 4, len: 8 }]);
    const bad = mustPop(dev);
    expect(bad.fault).toBe(ChainFault.OutsideMemory);
    dev.push(bad, 8);
    expect(drv.getUsed()?.len).toBe(0);
  });
});
