/**
 * Chain bounds on both ring layouts: indirect tables longer than the queue
 * (what Linux sends for a fragmented period), the configured chain bound, and
 * host memory that stays linear in the bounds whatever the driver offers.
 */
import { describe, expect, it } from "vitest";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import type { Buf, DriverQueue } from "../../src/driver/driver-queue.js";
import { PackedDriverQueue } from "../../src/driver/packed-driver.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { type Chain, ChainFault, readFromChain } from "../../src/virtqueue/chain.js";
import { PackedQueue } from "../../src/virtqueue/packed-ring.js";
import { DEFAULT_MAX_CHAIN } from "../../src/virtqueue/ring-constants.js";
import { SplitQueue } from "../../src/virtqueue/split-ring.js";
import type { RingFeatures } from "../../src/virtqueue/virtqueue.js";

const PAGE = 4096;

type Layout = "split" | "packed";

interface Rig {
  mem: FlatMemory;
  driver: DriverQueue;
  dev: SplitQueue | PackedQueue;
  alloc: (size: number, align?: number) => number;
}

function rig(layout: Layout, size: number, memSize: number, bounds: Partial<RingFeatures> = {}): Rig {
  const mem = new FlatMemory(new ArrayBuffer(memSize));
  const { alloc } = new BumpAllocator(0, memSize);
  const opts = { mem, alloc, size, eventIdx: false, indirect: true };
  const driver = layout === "split" ? new SplitDriverQueue(opts) : new PackedDriverQueue(opts);
  const features = { indirect: true, eventIdx: false, ...bounds };
  const dev =
    layout === "split"
      ? new SplitQueue(mem, driver.layout, features)
      : new PackedQueue(mem, driver.layout, features);
  return { mem, driver, dev, alloc };
}

function mustPop(dev: SplitQueue | PackedQueue): Chain {
  const c = dev.pop();
  if (c === null) throw new Error("expected a chain");
  return c;
}

/**
 * A TX message as Linux builds it from a buffer that is not physically
 * contiguous: the 4-byte xfer header, one descriptor per page of the period
 * (pages scattered, every other page of an area), and the 8-byte status.
 */
function scatteredMessage(r: Rig, pages: number, seed: number): { out: Buf[]; inn: Buf[]; data: Uint8Array } {
  const header = r.alloc(4, 4);
  r.mem.writeU32(header, 0);
  const area = r.alloc(2 * pages * PAGE, PAGE);
  const out: Buf[] = [{ addr: header, len: 4 }];
  const data = new Uint8Array(pages * PAGE);
  for (let p = 0; p < pages; p++) {
    // Pages in reverse order, one apart: nothing merges into a contiguous run.
    const addr = area + 2 * (pages - 1 - p) * PAGE;
    for (let i = 0; i < PAGE; i++) data[p * PAGE + i] = (seed + p * 31 + i * 7) & 0xff;
    r.mem.write(addr, data, p * PAGE, PAGE);
    out.push({ addr, len: PAGE });
  }
  const inn: Buf[] = [{ addr: r.alloc(8, 8), len: 8 }];
  return { out, inn, data };
}

describe.each<Layout>(["split", "packed"])("%s ring: chain bounds", (layout) => {
  it("takes a 72-entry indirect table on a 64-entry queue, every byte in order", () => {
    const r = rig(layout, 64, 4 << 20);
    for (let round = 0; round < 3; round++) {
      const msg = scatteredMessage(r, 70, round);
      expect(msg.out.length + msg.inn.length).toBe(72);
      r.driver.add(msg.out, msg.inn, { indirect: true });
      const c = mustPop(r.dev);
      expect(c.fault).toBe(ChainFault.None);
      expect([c.readableCount, c.writableCount]).toEqual([71, 1]);
      expect([c.readableBytes, c.writableBytes]).toEqual([4 + 70 * PAGE, 8]);
      const got = new Uint8Array(70 * PAGE);
      expect(readFromChain(r.mem, c, 4, got, 0, got.length)).toBe(got.length);
      expect(Buffer.compare(got, msg.data)).toBe(0);
      r.dev.push(c, 8);
      const used = r.driver.getUsed();
      expect(used?.len).toBe(8);
    }
  });

  it(`accepts ${DEFAULT_MAX_CHAIN} descriptors by default and refuses one more`, () => {
    const r = rig(layout, 64, 24 << 20);
    const ok = scatteredMessage(r, DEFAULT_MAX_CHAIN - 2, 1);
    r.driver.add(ok.out, ok.inn, { indirect: true });
    const tooLong = scatteredMessage(r, DEFAULT_MAX_CHAIN - 1, 2);
    r.driver.add(tooLong.out, tooLong.inn, { indirect: true });
    const a = mustPop(r.dev);
    expect(a.fault).toBe(ChainFault.None);
    expect(a.segmentCount).toBe(DEFAULT_MAX_CHAIN);
    const b = mustPop(r.dev);
    expect(b.fault).toBe(ChainFault.TooLong);
    expect(b.segmentCount).toBe(0);
    // The refused message still says where its header is, so the device can name its stream.
    expect(b.headLen).toBe(4);
    expect(b.headAddr).toBe(tooLong.out[0]!.addr);
  });

  it("applies a configured chain bound", () => {
    const r = rig(layout, 64, 4 << 20, { maxChain: 40 });
    const ok = scatteredMessage(r, 38, 1);
    r.driver.add(ok.out, ok.inn, { indirect: true });
    const tooLong = scatteredMessage(r, 39, 2);
    r.driver.add(tooLong.out, tooLong.inn, { indirect: true });
    expect(mustPop(r.dev).fault).toBe(ChainFault.None);
    expect(mustPop(r.dev).fault).toBe(ChainFault.TooLong);
  });

  it("refuses bounds that cannot work", () => {
    expect(() => rig(layout, 64, 1 << 20, { maxChain: 0 })).toThrow(RangeError);
    expect(() => rig(layout, 64, 1 << 20, { maxChain: 100, maxSegments: 99 })).toThrow(RangeError);
  });

  it.each([1024, 2048, 4096])(
    "holds memory linear in the bounds: a %i-entry queue full of one shared table",
    (size) => {
      // Every available chain is the same indirect table of maxChain one-byte
      // buffers, and the device holds them all (a prepared stream that never starts).
      const maxChain = DEFAULT_MAX_CHAIN;
      const r = rig(layout, size, 1 << 20, { maxChain });
      const table = r.alloc(16 * maxChain, 16);
      const bufs = r.alloc(maxChain, 8);
      for (let i = 0; i < maxChain; i++) {
        const e = table + 16 * i;
        r.mem.writeU64(e, bufs + i);
        r.mem.writeU32(e + 8, 1);
        if (layout === "split") {
          r.mem.writeU16(e + 12, i < maxChain - 1 ? 1 : 0);
          r.mem.writeU16(e + 14, i + 1);
        } else {
          r.mem.writeU16(e + 14, 0);
        }
      }
      offerSharedTable(r, layout, size, table, maxChain);
      const held: Chain[] = [];
      let admitted = 0;
      for (let c = r.dev.pop(); c !== null; c = r.dev.pop()) {
        held.push(c);
        if (c.fault === ChainFault.None) admitted++;
        else expect(c.fault).toBe(ChainFault.OverBudget);
      }
      expect(held.length).toBe(size);
      const budget = maxChain + 3 * size;
      expect(admitted).toBe(Math.floor(budget / maxChain));
      expect(r.dev.segmentsHeld).toBeLessThanOrEqual(budget);
      // Before the bound: size x maxChain segments (4 M for 4096, 48 MiB of arrays).
      // Now the pool keeps at most twice the budget plus a small array per chain.
      const bound = 2 * budget + 16 * size + maxChain;
      expect(bound).toBeLessThan((size * maxChain) / 40);
      expect(r.dev.segmentCapacity).toBeLessThanOrEqual(bound);
      for (const c of held) r.dev.push(c, 0);
      expect(r.dev.segmentsHeld).toBe(0);
      expect(r.dev.segmentCapacity).toBeLessThanOrEqual(bound);
    },
  );
});

/** Makes `size` chains available that all point at one indirect table, written straight into the ring. */
function offerSharedTable(r: Rig, layout: Layout, size: number, table: number, entries: number): void {
  const { descAddr, driverAddr } = r.driver.layout;
  for (let i = 0; i < size; i++) {
    const d = descAddr + 16 * i;
    r.mem.writeU64(d, table);
    r.mem.writeU32(d + 8, 16 * entries);
    if (layout === "split") {
      r.mem.writeU16(d + 12, 4); // INDIRECT
      r.mem.writeU16(driverAddr + 4 + 2 * i, i);
    } else {
      r.mem.writeU16(d + 12, i); // buffer id
      r.mem.writeU16(d + 14, 4 | (1 << 7)); // INDIRECT, AVAIL in the first lap
    }
  }
  if (layout === "split") r.mem.writeU16(driverAddr + 2, size);
}
