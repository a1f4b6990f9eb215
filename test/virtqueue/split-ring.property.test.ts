import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VirtqueueBrokenError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import { type Chain, ChainFault } from "../../src/virtqueue/chain.js";
import { SplitQueue } from "../../src/virtqueue/split-ring.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import type { Buf } from "../../src/driver/driver-queue.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { CheckedMemory } from "./checked-memory.js";

/** Guest memory starts at BASE; everything below it is unmapped. */
const BASE = 0x10000;
const MEM = 0x8000;
const DESC = BASE;
const AVAIL = BASE + 0x400;
const USED = BASE + 0x600;
/** Random descriptors that indirect descriptors tend to point into. */
const IND = BASE + 0x1000;
const IND_ENTRIES = 64;
const DATA = BASE + 0x2000;

interface RawDesc {
  lo: number;
  hi: number;
  len: number;
  flags: number;
  next: number;
}

const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

const addrArb = fc.oneof(
  { weight: 6, arbitrary: fc.integer({ min: DATA, max: BASE + MEM }).map((a) => ({ lo: a, hi: 0 })) },
  {
    weight: 3,
    arbitrary: fc.integer({ min: 0, max: IND_ENTRIES - 1 }).map((k) => ({ lo: IND + 16 * k, hi: 0 })),
  },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(
        0,
        BASE - 16,
        BASE - 1,
        BASE,
        BASE + MEM - 16,
        BASE + MEM - 1,
        BASE + MEM,
        BASE + MEM + 16,
      )
      .map((a) => ({ lo: a, hi: 0 })),
  },
  {
    weight: 1,
    arbitrary: fc.record({ lo: u32, hi: fc.oneof(fc.constantFrom(0, 0x1f_ffff, 0xffff_ffff), u32) }),
  },
);

const lenArb = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 256 }) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 40 }).map((n) => 16 * n) },
  { weight: 1, arbitrary: fc.constantFrom(1, 15, 17, MEM, 0x8000_0000, 0xffff_ffff) },
  { weight: 1, arbitrary: u32 },
);

const flagsArb = fc.oneof(
  // Mostly NEXT / WRITE combinations, so that long well-formed chains occur too.
  { weight: 6, arbitrary: fc.constantFrom(0, 1, 1, 2, 3, 3) },
  { weight: 1, arbitrary: fc.constantFrom(4, 6) },
  { weight: 2, arbitrary: fc.integer({ min: 0, max: 7 }) },
  { weight: 1, arbitrary: u16 },
);

/** A 16-bit value, or (`mod`) one reduced modulo a bound when used: a plausible index. */
interface MaybeMod {
  n: number;
  mod: boolean;
}
const maybeMod = (modWeight: number): fc.Arbitrary<MaybeMod> =>
  fc.oneof(
    { weight: modWeight, arbitrary: fc.record({ n: u16, mod: fc.constant(true) }) },
    { weight: 1, arbitrary: fc.record({ n: u16, mod: fc.constant(false) }) },
  );
const reduce = (v: MaybeMod, bound: number): number => (v.mod ? v.n % bound : v.n);

interface GenDesc {
  lo: number;
  hi: number;
  len: number;
  flags: number;
  next: MaybeMod;
  /** For an indirect descriptor: a plausible table (start entry, entries) in the IND area instead of addr/len. */
  table: { start: number; entries: number } | null;
}

const descArb: fc.Arbitrary<GenDesc> = fc
  .record({
    addr: addrArb,
    len: lenArb,
    flags: flagsArb,
    next: maybeMod(8),
    table: fc.option(fc.record({ start: fc.nat(IND_ENTRIES - 1), entries: fc.nat(70) }), { freq: 2 }),
  })
  .map(({ addr, len, flags, next, table }) => ({ lo: addr.lo, hi: addr.hi, len, flags, next, table }));

/**
 * `next` mostly lands below `entries`, sometimes exactly on it (one past the end);
 * a plausible indirect table has 0..2*size+1 entries (sometimes past the IND area).
 */
function resolve(d: GenDesc, entries: number, size: number): RawDesc {
  let { lo, len } = d;
  if (d.table !== null && (d.flags & 4) !== 0) {
    lo = IND + 16 * d.table.start;
    len = 16 * (d.table.entries % (2 * size + 2));
  }
  return { lo, hi: d.table !== null ? 0 : d.hi, len, flags: d.flags, next: reduce(d.next, entries + 1) };
}

const scenarioArb = fc.record({
  sizeLog: fc.integer({ min: 0, max: 5 }),
  indirect: fc.boolean(),
  eventIdx: fc.boolean(),
  descs: fc.array(descArb, { minLength: 32, maxLength: 32 }),
  ind: fc.array(descArb, { minLength: IND_ENTRIES, maxLength: IND_ENTRIES }),
  avail: fc.array(maybeMod(6), { minLength: 32, maxLength: 32 }),
  base: fc.oneof(fc.constantFrom(0, 0xfff0, 0xffff), u16),
  delta: maybeMod(8),
  usedEvent: u16,
  availFlags: u16,
  written: fc.array(fc.oneof(fc.integer({ min: 0, max: 600 }), u32), { minLength: 32, maxLength: 32 }),
  maxChain: fc.integer({ min: 1, max: 80 }),
  budgetExtra: fc.oneof(fc.nat(40), fc.constant(100_000)),
});

function writeRaw(mem: FlatMemory, at: number, d: RawDesc): void {
  mem.writeU32(at, d.lo);
  mem.writeU32(at + 4, d.hi);
  mem.writeU32(at + 8, d.len);
  mem.writeU16(at + 12, d.flags);
  mem.writeU16(at + 14, d.next);
}

type Expected = { ok: false } | { ok: true; segs: [number, number, boolean][] };

/**
 * A reference walker, written for clarity rather than speed: collect the chain
 * from the raw bytes (64-bit addresses as BigInt), then judge it.
 */
function referenceWalk(
  bytes: Uint8Array,
  size: number,
  indirectOk: boolean,
  head: number,
  maxChain: number,
): Expected {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lo = BigInt(BASE);
  const hi = BigInt(BASE + MEM);
  const inMem = (a: bigint, l: bigint): boolean => a >= lo && a + l <= hi;
  const at = (a: bigint): number => Number(a - lo);
  if (head >= size) return { ok: false };
  const collected: { addr: bigint; len: bigint; w: boolean }[] = [];
  let table = BigInt(DESC);
  let entries = size;
  let i = head;
  let nested = false;
  let inTable = 0;
  for (;;) {
    const off = at(table + BigInt(16 * i));
    const addr = dv.getBigUint64(off, true);
    const len = BigInt(dv.getUint32(off + 8, true));
    const flags = dv.getUint16(off + 12, true);
    const next = dv.getUint16(off + 14, true);
    if (flags & 4) {
      if (nested || !indirectOk || flags & 1) return { ok: false };
      if (len === 0n || len % 16n !== 0n) return { ok: false };
      if (BigInt(collected.length) + len / 16n > BigInt(maxChain)) return { ok: false };
      if (!inMem(addr, len)) return { ok: false };
      nested = true;
      table = addr;
      entries = Number(len / 16n);
      i = 0;
      inTable = 0;
      continue;
    }
    collected.push({ addr, len, w: (flags & 2) !== 0 });
    if (++inTable > entries || collected.length > maxChain) return { ok: false };
    if (!(flags & 1)) break;
    if (next >= entries) return { ok: false };
    i = next;
  }
  const firstWritable = collected.findIndex((c) => c.w);
  if (firstWritable >= 0 && collected.slice(firstWritable).some((c) => !c.w)) return { ok: false };
  // Zero-length buffers are never accessed, so they may point anywhere.
  if (collected.some((c) => c.len !== 0n && !inMem(c.addr, c.len))) return { ok: false };
  return { ok: true, segs: collected.map((c) => [Number(c.addr), Number(c.len), c.w]) };
}

function chainSegs(c: Chain): [number, number, boolean][] {
  const out: [number, number, boolean][] = [];
  for (let i = 0; i < c.segmentCount; i++) out.push([c.addr[i]!, c.len[i]!, i >= c.readableCount]);
  return out;
}

describe("SplitQueue against arbitrary rings", () => {
  it("never throws anything but VirtqueueBrokenError, and never touches memory it has not checked", () => {
    fc.assert(
      fc.property(scenarioArb, (s) => {
        const size = 1 << s.sizeLog;
        const flat = new FlatMemory(new ArrayBuffer(MEM), BASE);
        // All 32 are written, so that an index one past the table finds a descriptor too.
        for (let i = 0; i < 32; i++) writeRaw(flat, DESC + 16 * i, resolve(s.descs[i]!, size, size));
        // Indirect tables start anywhere in this area; plausible `next` values stay near.
        for (let i = 0; i < IND_ENTRIES; i++) writeRaw(flat, IND + 16 * i, resolve(s.ind[i]!, 8, size));
        const avail = s.avail.map((a) => reduce(a, size + 1));
        for (let i = 0; i < size; i++) flat.writeU16(AVAIL + 4 + 2 * i, avail[i]!);
        const delta = reduce(s.delta, size + 1);
        flat.writeU16(AVAIL, s.availFlags);
        flat.writeU16(AVAIL + 2, (s.base + delta) & 0xffff);
        flat.writeU16(AVAIL + 4 + 2 * size, s.usedEvent);

        const mem = new CheckedMemory(flat);
        const dev = new SplitQueue(
          mem,
          { size, descAddr: DESC, driverAddr: AVAIL, deviceAddr: USED },
          {
            indirect: s.indirect,
            eventIdx: s.eventIdx,
            maxChain: s.maxChain,
            maxSegments: s.maxChain + s.budgetExtra,
          },
        );
        dev.setBase(s.base);

        const popped: Chain[] = [];
        let held = 0;
        let broken = false;
        for (let n = 0; n < 2 * size + 2; n++) {
          let c: Chain | null;
          try {
            c = dev.pop();
          } catch (e) {
            expect(e).toBeInstanceOf(VirtqueueBrokenError);
            broken = true;
            break;
          }
          if (c === null) break;
          const slot = (s.base + popped.length) & (size - 1);
          expect(c.id).toBe(avail[slot]);
          const want = referenceWalk(flat.bytes, size, s.indirect, c.id, s.maxChain);
          if (want.ok && held + want.segs.length > s.maxChain + s.budgetExtra) {
            // Chains in flight would hold more than the budget.
            expect(c.fault).toBe(ChainFault.OverBudget);
            expect(c.segmentCount).toBe(0);
          } else if (want.ok) {
            expect(c.fault).toBe(ChainFault.None);
            expect(chainSegs(c)).toEqual(want.segs);
            held += want.segs.length;
            expect(dev.segmentsHeld).toBe(held);
          } else {
            expect(c.fault).not.toBe(ChainFault.None);
            expect(c.segmentCount).toBe(0);
          }
          for (let i = 0; i < c.segmentCount; i++) {
            if (c.len[i] !== 0) expect(mem.contains(c.addr[i]!, c.len[i]!)).toBe(true);
          }
          expect(c.segmentCount).toBeLessThanOrEqual(s.maxChain);
          popped.push(c);
        }
        // The available index moved by more than the size, or by at most the size: exactly one of them.
        const pending = delta;
        if (pending > size) expect(broken).toBe(true);
        else expect(popped.length).toBe(pending);
        expect(dev.inFlight).toBe(popped.length);

        for (let k = 0; k < popped.length; k++) {
          const c = popped[k]!;
          const id = c.id;
          const limit = c.fault === ChainFault.None ? c.writableBytes : 0;
          const written = s.written[k]!;
          dev.push(c, written);
          const elem = USED + 4 + 8 * ((s.base + k) & (size - 1));
          expect(flat.readU32(elem)).toBe(id);
          expect(flat.readU32(elem + 4)).toBe(Math.min(written, limit));
          expect(flat.readU16(USED + 2)).toBe((s.base + k + 1) & 0xffff);
        }
        expect(dev.inFlight).toBe(0);
        expect(dev.segmentsHeld).toBe(0);
        dev.needsInterrupt();
        dev.enableNotifications(false);
        dev.enableNotifications(true);
        expect(mem.outside).toEqual([]);
      }),
      { numRuns: 300 },
    );
  });

  it("accepts exactly the layouts whose areas lie in memory", () => {
    const edge = fc.oneof(
      { weight: 6, arbitrary: fc.integer({ min: BASE, max: BASE + MEM }) },
      { weight: 2, arbitrary: fc.integer({ min: BASE - 0x200, max: BASE + 0x200 }) },
      { weight: 2, arbitrary: fc.integer({ min: BASE + MEM - 0x400, max: BASE + MEM + 0x10 }) },
      { weight: 1, arbitrary: fc.integer({ min: 0, max: 2 ** 53 }) },
      { weight: 1, arbitrary: fc.constantFrom(-1, 0.5, Number.NaN, Infinity, 2 ** 64) },
    );
    fc.assert(
      fc.property(
        fc.record({
          size: fc.oneof(
            { weight: 6, arbitrary: fc.integer({ min: 0, max: 6 }).map((n) => 1 << n) },
            { weight: 1, arbitrary: fc.integer({ min: -1, max: 70000 }) },
          ),
          descAddr: edge,
          driverAddr: edge,
          deviceAddr: edge,
          eventIdx: fc.boolean(),
          seed: fc.integer({ min: 1, max: 0x7fff_ffff }),
          availIdx: u16,
        }),
        (l) => {
          const flat = new FlatMemory(new ArrayBuffer(MEM), BASE);
          // Fill memory with noise: the areas may overlap and hold anything.
          let x = l.seed;
          for (let i = 0; i < MEM; i += 4) {
            x ^= x << 13;
            x ^= x >>> 17;
            x ^= x << 5;
            flat.bytes[i] = x & 0xff;
            flat.bytes[i + 1] = (x >>> 8) & 0x0f;
            flat.bytes[i + 2] = (x >>> 16) & 0x07;
            flat.bytes[i + 3] = x >>> 24 < 0x20 ? 1 : 0;
          }
          if (flat.contains(l.driverAddr + 2, 2)) flat.writeU16(l.driverAddr + 2, l.availIdx);
          const mem = new CheckedMemory(flat);
          const ev = l.eventIdx ? 2 : 0;
          const sizeOk =
            Number.isInteger(l.size) && l.size >= 1 && l.size <= 32768 && (l.size & (l.size - 1)) === 0;
          const fits =
            sizeOk &&
            flat.contains(l.descAddr, 16 * l.size) &&
            flat.contains(l.driverAddr, 4 + 2 * l.size + ev) &&
            flat.contains(l.deviceAddr, 4 + 8 * l.size + ev);
          let dev: SplitQueue | null = null;
          try {
            dev = new SplitQueue(mem, l, { indirect: true, eventIdx: l.eventIdx });
          } catch (e) {
            expect(e).toBeInstanceOf(VirtqueueBrokenError);
          }
          expect(dev !== null).toBe(fits);
          if (dev === null) return;
          // Whatever the (possibly overlapping) areas hold, the queue stays within them.
          try {
            for (let n = 0; n < 2 * l.size + 2; n++) {
              const c = dev.pop();
              if (c === null) break;
              dev.push(c, 1);
            }
            dev.needsInterrupt();
            dev.enableNotifications(false);
            dev.enableNotifications(true);
          } catch (e) {
            expect(e).toBeInstanceOf(VirtqueueBrokenError);
          }
          expect(mem.outside).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });
});

type Op =
  | { t: "add"; out: number[]; inn: number[]; indirect: boolean }
  | { t: "pop" }
  | { t: "push"; which: number; written: number }
  | { t: "reap" }
  | { t: "devNotify"; on: boolean }
  | { t: "drvIntr"; on: boolean }
  | { t: "kick" }
  | { t: "irq" };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("add" as const),
      out: fc.array(fc.integer({ min: 0, max: 64 }), { maxLength: 3 }),
      inn: fc.array(fc.integer({ min: 0, max: 64 }), { maxLength: 3 }),
      indirect: fc.boolean(),
    }),
  },
  { weight: 4, arbitrary: fc.constant({ t: "pop" as const }) },
  {
    weight: 4,
    arbitrary: fc.record({
      t: fc.constant("push" as const),
      which: fc.nat(),
      written: fc.integer({ min: 0, max: 200 }),
    }),
  },
  { weight: 3, arbitrary: fc.constant({ t: "reap" as const }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("devNotify" as const), on: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ t: fc.constant("drvIntr" as const), on: fc.boolean() }) },
  { weight: 2, arbitrary: fc.constant({ t: "kick" as const }) },
  { weight: 2, arbitrary: fc.constant({ t: "irq" as const }) },
);

describe("SplitQueue with the driver, random operation sequences", () => {
  it("delivers every chain intact, returns used lengths, and never loses a notification", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 4 }),
        fc.boolean(),
        fc.boolean(),
        fc.array(opArb, { maxLength: 150 }),
        (sizeLog, eventIdx, indirect, ops) => {
          const size = 1 << sizeLog;
          const mem = new FlatMemory(new ArrayBuffer(MEM), BASE);
          const rings = new BumpAllocator(BASE, DATA);
          const drv = new SplitDriverQueue({ mem, alloc: rings.alloc, size, eventIdx, indirect });
          const dev = new SplitQueue(mem, drv.layout, { indirect, eventIdx });

          /** Added and not yet popped, in order. */
          const offered: { token: number; out: Buf[]; inn: Buf[] }[] = [];
          const inFlight: { chain: Chain; token: number; writable: number }[] = [];
          /** Pushed and not yet reaped, in order. */
          const used: { token: number; len: number }[] = [];
          let deviceWaiting = false;
          let addsWhileDeviceWaits = 0;
          let driverWaiting = false;
          let pushesWhileDriverWaits = 0;
          let addr = DATA;

          const reapOne = (): boolean => {
            const u = drv.getUsed();
            if (u === null) {
              expect(used.length).toBe(0);
              return false;
            }
            expect(u).toEqual(used.shift());
            return true;
          };

          for (const op of ops) {
            switch (op.t) {
              case "add": {
                const total = op.out.length + op.inn.length;
                const useIndirect = indirect && op.indirect;
                if (total === 0 || total > size || (useIndirect ? 1 : total) > drv.freeCount) break;
                const mk = (len: number): Buf => {
                  const b = { addr, len };
                  addr = DATA + ((addr - DATA + 64) % 0x4000);
                  return b;
                };
                const out = op.out.map(mk);
                const inn = op.inn.map(mk);
                const token = drv.add(out, inn, { indirect: useIndirect });
                offered.push({ token, out, inn });
                if (deviceWaiting) addsWhileDeviceWaits++;
                break;
              }
              case "pop": {
                const c = dev.pop();
                const want = offered.shift();
                if (want === undefined) {
                  expect(c).toBeNull();
                  break;
                }
                expect(c).not.toBeNull();
                const chain = c!;
                expect(chain.fault).toBe(ChainFault.None);
                expect(chainSegs(chain)).toEqual([
                  ...want.out.map((b): [number, number, boolean] => [b.addr, b.len, false]),
                  ...want.inn.map((b): [number, number, boolean] => [b.addr, b.len, true]),
                ]);
                inFlight.push({ chain, token: want.token, writable: chain.writableBytes });
                deviceWaiting = false;
                break;
              }
              case "push": {
                if (inFlight.length === 0) break;
                const [f] = inFlight.splice(op.which % inFlight.length, 1);
                dev.push(f!.chain, op.written);
                used.push({ token: f!.token, len: Math.min(op.written, f!.writable) });
                if (driverWaiting) pushesWhileDriverWaits++;
                break;
              }
              case "reap":
                if (reapOne()) driverWaiting = false;
                break;
              case "devNotify": {
                const pending = dev.enableNotifications(op.on);
                expect(pending).toBe(offered.length > 0);
                deviceWaiting = op.on && !pending;
                addsWhileDeviceWaits = 0;
                break;
              }
              case "drvIntr":
                drv.enableInterrupts(op.on);
                if (op.on) {
                  // Like virtqueue_enable_cb: only wait once nothing is left to reap.
                  let more = true;
                  while (more) more = reapOne();
                }
                driverWaiting = op.on;
                pushesWhileDriverWaits = 0;
                break;
              case "kick": {
                const kick = drv.kickNeeded();
                if (deviceWaiting && addsWhileDeviceWaits > 0) expect(kick).toBe(true);
                if (kick) deviceWaiting = false;
                break;
              }
              case "irq": {
                const irq = dev.needsInterrupt();
                if (driverWaiting && pushesWhileDriverWaits > 0) expect(irq).toBe(true);
                if (irq) driverWaiting = false;
                break;
              }
            }
            expect(dev.inFlight).toBe(inFlight.length);
          }
          // Drain: everything offered comes back.
          for (let c = dev.pop(); c !== null; c = dev.pop()) dev.push(c, 0);
          for (const f of inFlight) dev.push(f.chain, 0);
          let back = 0;
          while (drv.getUsed() !== null) back++;
          expect(back).toBe(used.length + offered.length + inFlight.length);
          expect(drv.freeCount).toBe(size);
        },
      ),
      { numRuns: 200 },
    );
  });
});
