import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VirtqueueBrokenError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import { type Chain, ChainFault } from "../../src/virtqueue/chain.js";
import { PackedQueue } from "../../src/virtqueue/packed-ring.js";
import {
  VIRTQ_PACKED_DESC_F_AVAIL,
  VIRTQ_PACKED_DESC_F_INDIRECT,
  VIRTQ_PACKED_DESC_F_NEXT,
  VIRTQ_PACKED_DESC_F_USED,
  VIRTQ_PACKED_DESC_F_WRITE,
} from "../../src/virtqueue/ring-constants.js";
import type { QueueLayout } from "../../src/virtqueue/virtqueue.js";
import { CheckedMemory } from "./checked-memory.js";

const NEXT = VIRTQ_PACKED_DESC_F_NEXT;
const WRITE = VIRTQ_PACKED_DESC_F_WRITE;
const INDIRECT = VIRTQ_PACKED_DESC_F_INDIRECT;
const AVAIL = VIRTQ_PACKED_DESC_F_AVAIL;
const USED = VIRTQ_PACKED_DESC_F_USED;

const BASE = 0x7000_0000;
const MEM_SIZE = 0x4000;
const RING = BASE;
const DRIVER_EVENT = BASE + 0x200;
const DEVICE_EVENT = BASE + 0x204;
const TABLES = [BASE + 0x400, BASE + 0x500, BASE + 0x600];
const MAX_SIZE = 12;

interface RawDesc {
  /** Low and high 32 bits of the address (so values above 2^53 are possible). */
  lo: number;
  hi: number;
  len: number;
  id: number;
  flags: number;
}

/** Addresses: mostly inside memory, sometimes at a table, near the edges, or anywhere in 64 bits. */
const addrArb: fc.Arbitrary<[number, number]> = fc.oneof(
  { weight: 6, arbitrary: fc.nat(MEM_SIZE - 64).map((o): [number, number] => [BASE + o, 0]) },
  { weight: 1, arbitrary: fc.nat(MEM_SIZE + 64).map((o): [number, number] => [BASE - 32 + o, 0]) },
  { weight: 1, arbitrary: fc.constantFrom(...TABLES).map((a): [number, number] => [a, 0]) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(BASE - 1, BASE + MEM_SIZE, BASE + MEM_SIZE - 8, 0)
      .map((a): [number, number] => [a, 0]),
  },
  { weight: 1, arbitrary: fc.tuple(fc.nat(0xffff_ffff), fc.nat(0xffff_ffff)) },
);

const lenArb = fc.oneof(
  { weight: 6, arbitrary: fc.nat(64) },
  { weight: 1, arbitrary: fc.nat(10).map((n) => n * 16) },
  { weight: 1, arbitrary: fc.constantFrom(0, 8, 24, MEM_SIZE, 0xffff_ffff) },
  { weight: 1, arbitrary: fc.nat(0xffff_ffff) },
);

/** NEXT about a third of the time, WRITE half, INDIRECT a quarter. */
const lowFlagsArb = fc
  .record({ next: fc.nat(2), write: fc.boolean(), indirect: fc.nat(3) })
  .map(
    ({ next, write, indirect }) =>
      (next === 0 ? NEXT : 0) | (write ? WRITE : 0) | (indirect === 0 ? INDIRECT : 0),
  );

const rawArb: fc.Arbitrary<RawDesc> = fc
  .record({ addr: addrArb, len: lenArb, id: fc.nat(0xffff), flags: lowFlagsArb })
  .map(({ addr, len, id, flags }) => ({ lo: addr[0] >>> 0, hi: addr[1] >>> 0, len, id, flags }));

/** How a ring slot's AVAIL/USED bits relate to the lap the slot is in. */
const enum Avail {
  /** Available in the slot's lap. */
  Current,
  /** Available in the other lap. */
  Other,
  /** Neither bit. */
  None,
  /** Both bits: a used descriptor of an odd lap. */
  Used,
  /** The flags are 16 random bits. */
  Garbage,
}

interface RingSpec {
  desc: RawDesc;
  avail: Avail;
  garbage: number;
  /** For an INDIRECT descriptor: point it at this table with its exact length. */
  table: number | null;
}

const ringSpecArb: fc.Arbitrary<RingSpec> = fc.record({
  desc: rawArb,
  avail: fc.oneof(
    { weight: 8, arbitrary: fc.constant(Avail.Current) },
    { weight: 1, arbitrary: fc.constantFrom(Avail.Other, Avail.None, Avail.Used, Avail.Garbage) },
  ),
  garbage: fc.nat(0xffff),
  table: fc.option(fc.nat(TABLES.length - 1), { freq: 3 }),
});

function goodEntryArb(writable: boolean): fc.Arbitrary<RawDesc> {
  return fc
    .record({ off: fc.nat(MEM_SIZE - 64), len: fc.nat(64), id: fc.nat(0xffff) })
    .map(({ off, len, id }) => ({ lo: BASE + off, hi: 0, len, id, flags: writable ? WRITE : 0 }));
}

/** Table entries: mostly small buffers inside memory, readable then writable; sometimes anything. */
const entryArb: fc.Arbitrary<RawDesc> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc
      .record({ off: fc.nat(MEM_SIZE - 64), len: fc.nat(64), id: fc.nat(0xffff), w: fc.boolean() })
      .map(({ off, len, id, w }) => ({ lo: BASE + off, hi: 0, len, id, flags: w ? WRITE : 0 })),
  },
  { weight: 1, arbitrary: rawArb },
  {
    weight: 1,
    arbitrary: fc.record({
      lo: fc.nat(0xffff_ffff),
      hi: fc.nat(3),
      len: lenArb,
      id: fc.nat(0xffff),
      flags: fc.nat(0xffff),
    }),
  },
);

/** Well-formed tables (readable entries, then writable ones) or arbitrary ones. */
const tableArb: fc.Arbitrary<RawDesc[]> = fc.oneof(
  fc
    .tuple(fc.array(goodEntryArb(false), { maxLength: 6 }), fc.array(goodEntryArb(true), { maxLength: 6 }))
    .map(([r, w]) => [...r, ...w]),
  fc.array(entryArb, { maxLength: 16 }),
);

const caseArb = fc.integer({ min: 1, max: MAX_SIZE }).chain((size) =>
  fc.record({
    size: fc.constant(size),
    ring: fc.array(ringSpecArb, { minLength: size, maxLength: size }),
    tables: fc.tuple(tableArb, tableArb, tableArb),
    start: fc.nat(size - 1),
    wrap: fc.constantFrom(0, 1),
    indirect: fc.boolean(),
    eventIdx: fc.boolean(),
    driverEvent: fc.tuple(fc.nat(0xffff), fc.nat(0xffff)),
    written: fc.array(fc.oneof(fc.nat(200), fc.double()), {
      minLength: 2 * MAX_SIZE,
      maxLength: 2 * MAX_SIZE,
    }),
    order: fc.array(fc.nat(), { minLength: 2 * MAX_SIZE, maxLength: 2 * MAX_SIZE }),
    maxChain: fc.integer({ min: 1, max: 24 }),
  }),
);

/** The descriptor for ring slot `slot`, whose lap has wrap counter `wrap`. */
function place(spec: RingSpec, wrap: number, tables: readonly (readonly RawDesc[])[]): RawDesc {
  const d = { ...spec.desc };
  if ((d.flags & INDIRECT) !== 0 && spec.table !== null) {
    d.lo = TABLES[spec.table]!;
    d.hi = 0;
    d.len = 16 * tables[spec.table]!.length;
  }
  const cur = wrap === 1 ? AVAIL : USED;
  switch (spec.avail) {
    case Avail.Current:
      d.flags |= cur;
      break;
    case Avail.Other:
      d.flags |= cur ^ (AVAIL | USED);
      break;
    case Avail.None:
      break;
    case Avail.Used:
      d.flags |= AVAIL | USED;
      break;
    case Avail.Garbage:
      d.flags = spec.garbage;
      break;
  }
  return d;
}

function writeDesc(mem: FlatMemory, at: number, d: RawDesc): void {
  mem.writeU32(at, d.lo);
  mem.writeU32(at + 4, d.hi);
  mem.writeU32(at + 8, d.len);
  mem.writeU16(at + 12, d.id);
  mem.writeU16(at + 14, d.flags);
}

interface Expected {
  id: number;
  slots: number;
  faulted: boolean;
  segs: [number, number, boolean][];
}

/**
 * What the spec says the next pop must return, walking the ring as §2.8
 * describes it (an independent, unoptimized reading): null, or the chain.
 */
function model(
  mem: FlatMemory,
  size: number,
  features: { indirect: boolean; maxChain: number },
  start: number,
  startWrap: number,
): Expected | null {
  const isAvail = (f: number, w: number): boolean =>
    ((f & AVAIL) !== 0 ? 1 : 0) === w && ((f & USED) !== 0 ? 1 : 0) !== w;
  const read = (at: number) => ({
    addr: mem.readU64(at),
    len: mem.readU32(at + 8),
    id: mem.readU16(at + 12),
    flags: mem.readU16(at + 14),
  });
  let idx = start;
  let wrap = startWrap;
  const segs: [number, number, boolean][] = [];
  let faulted = false;
  let slots = 0;
  let id = 0;
  const add = (addr: number, len: number, w: boolean): void => {
    if (faulted) return;
    if (!w && segs.some((s) => s[2])) faulted = true;
    else if (len !== 0 && !mem.contains(addr, len)) faulted = true;
    else segs.push([addr, len, w]);
  };
  for (;;) {
    const d = read(RING + 16 * idx);
    if (!isAvail(d.flags, wrap)) return null;
    slots++;
    id = d.id;
    if ((d.flags & INDIRECT) !== 0) {
      if (!features.indirect || slots > 1 || (d.flags & NEXT) !== 0) faulted = true;
      else if (
        d.len === 0 ||
        d.len % 16 !== 0 ||
        d.len / 16 > features.maxChain ||
        !mem.contains(d.addr, d.len)
      )
        faulted = true;
      else {
        for (let e = 0; e < d.len / 16 && !faulted; e++) {
          const t = read(d.addr + 16 * e);
          if ((t.flags & INDIRECT) !== 0) faulted = true;
          else add(t.addr, t.len, (t.flags & WRITE) !== 0);
        }
      }
    } else if (slots > features.maxChain) {
      faulted = true;
    } else {
      add(d.addr, d.len, (d.flags & WRITE) !== 0);
    }
    idx = (idx + 1) % size;
    if (idx === 0) wrap ^= 1;
    if ((d.flags & NEXT) === 0) break;
    if (slots === size) {
      faulted = true;
      break;
    }
  }
  return { id, slots, faulted, segs: faulted ? [] : segs };
}

function segments(c: Chain): [number, number, boolean][] {
  const out: [number, number, boolean][] = [];
  for (let i = 0; i < c.segmentCount; i++) out.push([c.addr[i]!, c.len[i]!, i >= c.readableCount]);
  return out;
}

describe("PackedQueue on arbitrary rings", () => {
  it("pops only what the spec allows, never escapes memory, and pushes everything back", () => {
    fc.assert(
      fc.property(caseArb, (c) => {
        const flat = new FlatMemory(new ArrayBuffer(MEM_SIZE), BASE);
        const mem = new CheckedMemory(flat);
        // Slots before the start position belong to the next lap.
        c.ring.forEach((spec, i) =>
          writeDesc(flat, RING + 16 * i, place(spec, i >= c.start ? c.wrap : c.wrap ^ 1, c.tables)),
        );
        c.tables.forEach((entries, t) => entries.forEach((d, i) => writeDesc(flat, TABLES[t]! + 16 * i, d)));
        flat.writeU16(DRIVER_EVENT, c.driverEvent[0]);
        flat.writeU16(DRIVER_EVENT + 2, c.driverEvent[1]);
        const layout: QueueLayout = {
          size: c.size,
          descAddr: RING,
          driverAddr: DRIVER_EVENT,
          deviceAddr: DEVICE_EVENT,
        };
        // A budget this large never binds: the walk itself is under test here.
        const features = {
          indirect: c.indirect,
          eventIdx: c.eventIdx,
          maxChain: c.maxChain,
          maxSegments: 1e6,
        };
        const q = new PackedQueue(mem, layout, features);
        const base = c.start | (c.wrap << 15);
        q.setBase(base);

        // Phase 1: the ring as written. Pops must follow the model and stop within one lap.
        const popped: Chain[] = [];
        let idx = c.start;
        let wrap = c.wrap;
        let ended = false;
        for (let i = 0; i < 2 * c.size + 1; i++) {
          // enableNotifications() writes the device event structure, which an arbitrary
          // indirect table may overlap: the model reads memory as pop() will find it.
          const ready = q.enableNotifications(i % 2 === 0);
          const expected = model(flat, c.size, features, idx, wrap);
          const chain = q.pop();
          expect(ready).toBe(chain !== null);
          if (expected === null) {
            expect(chain).toBeNull();
            expect(q.getBase()).toBe(idx | (wrap << 15));
            ended = true;
            break;
          }
          expect(chain).not.toBeNull();
          const ch = chain!;
          expect(ch.id).toBe(expected.id);
          expect(ch.ringSlots).toBe(expected.slots);
          expect(ch.ringSlots).toBeLessThanOrEqual(c.size);
          expect(ch.fault !== ChainFault.None).toBe(expected.faulted);
          expect(segments(ch)).toEqual(expected.segs);
          if (ch.fault === ChainFault.None) {
            for (const [a, l] of expected.segs) if (l !== 0) expect(flat.contains(a, l)).toBe(true);
          } else {
            expect(ch.segmentCount).toBe(0);
          }
          popped.push(ch);
          idx += ch.ringSlots;
          if (idx >= c.size) {
            idx -= c.size;
            wrap ^= 1;
          }
        }
        expect(ended).toBe(true);
        expect(popped.reduce((s, ch) => s + ch.ringSlots, 0)).toBeLessThanOrEqual(c.size);
        expect(q.inFlight).toBe(popped.length);

        // Push everything back in an arbitrary order; used descriptors fill consecutive slots.
        let used = c.start;
        let usedWrap = c.wrap;
        while (popped.length > 0) {
          const [ch] = popped.splice(c.order[popped.length]! % popped.length, 1);
          const chain = ch!;
          const id = chain.id;
          const slots = chain.ringSlots;
          const limit = chain.fault === ChainFault.None ? chain.writableBytes : 0;
          const written = c.written[popped.length]!;
          q.push(chain, written);
          const at = RING + 16 * used;
          const len = flat.readU32(at + 8);
          expect(flat.readU16(at + 12)).toBe(id);
          expect(len).toBeLessThanOrEqual(limit);
          expect(len).toBe(written > 0 ? Math.min(Math.floor(written), limit, 0xffff_ffff) : 0);
          expect(flat.readU16(at + 14) & (AVAIL | USED)).toBe(usedWrap === 1 ? AVAIL | USED : 0);
          used += slots;
          if (used >= c.size) {
            used -= c.size;
            usedWrap ^= 1;
          }
        }
        expect(q.inFlight).toBe(0);
        q.needsInterrupt();

        // Phase 2: the ring now mixes used and stale descriptors; keep popping and
        // pushing: only VirtqueueBrokenError may come out, and everything terminates.
        try {
          for (let i = 0; i < 2 * c.size; i++) {
            const ch = q.pop();
            if (ch === null) break;
            expect(ch.ringSlots).toBeLessThanOrEqual(c.size);
            if (ch.fault === ChainFault.None) {
              for (let s = 0; s < ch.segmentCount; s++)
                if (ch.len[s] !== 0) expect(flat.contains(ch.addr[s]!, ch.len[s]!)).toBe(true);
            }
            q.push(ch, c.written[i]!);
            q.needsInterrupt();
          }
        } catch (e) {
          expect(e).toBeInstanceOf(VirtqueueBrokenError);
        }

        expect(mem.outside).toEqual([]);
        expect(q.chainsCreated).toBeLessThanOrEqual(c.size);
      }),
      { numRuns: 1500 },
    );
  });
});
