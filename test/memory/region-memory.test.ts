import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { GuestMemoryError, VirtioSndError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import type { GuestMemory } from "../../src/memory/guest-memory.js";
import { type MemoryRegion, RegionMemory, type WindowedRegion } from "../../src/memory/region-memory.js";

function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = (i * 13 + seed * 31 + 1) & 0xff;
  return out;
}

function expectGuestMemoryError(fn: () => unknown): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GuestMemoryError);
  expect((caught as GuestMemoryError).code).toBe("ERR_GUEST_MEMORY");
}

function expectInvalidConfig(fn: () => unknown): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(VirtioSndError);
  expect(caught).not.toBeInstanceOf(GuestMemoryError);
  expect((caught as VirtioSndError).code).toBe("ERR_INVALID_CONFIG");
}

/** Snapshot of every region's bytes, to check a failed access changed nothing. */
function snapshot(regions: MemoryRegion[]): Uint8Array[] {
  return regions.map((r) => r.bytes.slice());
}

// Two adjacent regions A = [0x1000, 0x1010), B = [0x1010, 0x1020),
// then a hole [0x1020, 0x1030), then C = [0x1030, 0x1040).
const A_ADDR = 0x1000;
const B_ADDR = 0x1010;
const HOLE = 0x1020;
const C_ADDR = 0x1030;
const C_END = 0x1040;

function layout(): { mem: RegionMemory; a: MemoryRegion; b: MemoryRegion; c: MemoryRegion } {
  const a = { guestAddr: A_ADDR, bytes: pattern(16, 1) };
  const b = { guestAddr: B_ADDR, bytes: pattern(16, 2) };
  const c = { guestAddr: C_ADDR, bytes: pattern(16, 3) };
  return { mem: new RegionMemory([a, b, c]), a, b, c };
}

/** A windowed region over `bytes`, counting the windows it is asked for. */
function windowed(
  guestAddr: number,
  bytes: Uint8Array,
  windowBytes: number,
): { region: WindowedRegion; asked: [number, number][] } {
  const asked: [number, number][] = [];
  return {
    asked,
    region: {
      guestAddr,
      length: bytes.length,
      windowBytes,
      window(offset, length) {
        asked.push([offset, length]);
        return bytes.subarray(offset, offset + length);
      },
    },
  };
}

describe("RegionMemory", () => {
  describe("a single region behaves like flat memory", () => {
    it("reads, writes, fills and accesses scalars inside the region", () => {
      const bytes = new Uint8Array(64);
      const mem = new RegionMemory([{ guestAddr: 0x4000, bytes }]);
      mem.write(0x4000, Uint8Array.of(1, 2, 3), 0, 3);
      mem.fill(0x4003, 2, 9);
      mem.writeU8(0x4005, 0xaa);
      mem.writeU16(0x4006, 0xbbcc);
      mem.writeU32(0x4008, 0x11223344);
      mem.writeU64(0x4010, 0x12_3456_789a);
      expect(Array.from(bytes.subarray(0, 12))).toEqual([
        1, 2, 3, 9, 9, 0xaa, 0xcc, 0xbb, 0x44, 0x33, 0x22, 0x11,
      ]);
      expect(mem.readU8(0x4005)).toBe(0xaa);
      expect(mem.readU16(0x4006)).toBe(0xbbcc);
      expect(mem.readU32(0x4008)).toBe(0x11223344);
      expect(mem.readU64(0x4010)).toBe(0x12_3456_789a);
      const dest = new Uint8Array(5);
      mem.read(0x4001, dest, 1, 4);
      expect(Array.from(dest)).toEqual([0, 2, 3, 9, 9]);
    });

    it("handles 64-bit values above 2^32 and up to 2^53", () => {
      const mem = new RegionMemory([{ guestAddr: 0, bytes: new Uint8Array(16) }]);
      for (const v of [0x1_0000_0000, 0xffff_ffff_ffff, Number.MAX_SAFE_INTEGER, 2 ** 60]) {
        mem.writeU64(8, v);
        expect(mem.readU64(8)).toBe(v);
      }
    });

    it("contains() and length 0 at the region's ends", () => {
      const mem = new RegionMemory([{ guestAddr: 0x100, bytes: new Uint8Array(16) }]);
      expect(mem.contains(0x100, 16)).toBe(true);
      expect(mem.contains(0x100, 0)).toBe(true);
      expect(mem.contains(0x110, 0)).toBe(true);
      expect(mem.contains(0x111, 0)).toBe(false);
      expect(mem.contains(0xff, 0)).toBe(false);
      expect(mem.contains(0xff, 2)).toBe(false);
      expect(mem.contains(0x10f, 2)).toBe(false);
      mem.read(0x110, new Uint8Array(0), 0, 0);
      mem.write(0x110, new Uint8Array(0), 0, 0);
      mem.fill(0x110, 0, 1);
    });

    const badAddrs: [string, number][] = [
      ["below the region", 0xff],
      ["at the end", 0x110],
      ["straddling the end", 0x10e],
      ["negative", -1],
      ["NaN", Number.NaN],
      ["fractional", 0x100 + 0.5],
      ["above 2^53", 2 ** 53 + 2],
      ["Infinity", Infinity],
    ];
    const badLengths: [string, number][] = [
      ["negative", -1],
      ["NaN", Number.NaN],
      ["fractional", 2.5],
      ["above 2^53", 2 ** 53 + 2],
      ["too long", 17],
    ];

    it.each(badAddrs)("every method fails for an address %s and writes nothing", (_n, addr) => {
      const region = { guestAddr: 0x100, bytes: pattern(16, 7) };
      const mem = new RegionMemory([region]);
      const before = region.bytes.slice();
      const len = addr === 0x10e ? 4 : 3;
      expect(mem.contains(addr, len)).toBe(false);
      expect(mem.view(addr, len)).toBeNull();
      expectGuestMemoryError(() => mem.read(addr, new Uint8Array(8), 0, len));
      expectGuestMemoryError(() => mem.write(addr, new Uint8Array(8), 0, len));
      expectGuestMemoryError(() => mem.fill(addr, len, 0));
      if (addr !== 0x10e) {
        expectGuestMemoryError(() => mem.readU8(addr));
        expectGuestMemoryError(() => mem.writeU8(addr, 0));
      }
      expectGuestMemoryError(() => mem.readU16(addr === 0x10e ? 0x10f : addr));
      expectGuestMemoryError(() => mem.readU32(addr));
      expectGuestMemoryError(() => mem.readU64(addr === 0x10e ? 0x10a : addr));
      expectGuestMemoryError(() => mem.writeU16(addr === 0x10e ? 0x10f : addr, 0));
      expectGuestMemoryError(() => mem.writeU32(addr, 0));
      expectGuestMemoryError(() => mem.writeU64(addr === 0x10e ? 0x10a : addr, 0));
      expect(region.bytes).toEqual(before);
    });

    it.each(badLengths)("read/write/fill/contains/view fail for a length that is %s", (_n, length) => {
      const region = { guestAddr: 0x100, bytes: pattern(16, 7) };
      const mem = new RegionMemory([region]);
      const before = region.bytes.slice();
      expect(mem.contains(0x100, length)).toBe(false);
      expect(mem.view(0x100, length)).toBeNull();
      expectGuestMemoryError(() => mem.read(0x100, new Uint8Array(32), 0, length));
      expectGuestMemoryError(() => mem.write(0x100, new Uint8Array(32), 0, length));
      expectGuestMemoryError(() => mem.fill(0x100, length, 0));
      expect(region.bytes).toEqual(before);
    });

    it("throws RangeError for a too-small buffer and writes nothing", () => {
      const region = { guestAddr: 0, bytes: pattern(16, 1) };
      const mem = new RegionMemory([region]);
      const before = region.bytes.slice();
      expect(() => mem.read(0, new Uint8Array(2), 0, 4)).toThrow(RangeError);
      expect(() => mem.write(0, new Uint8Array(2), 0, 4)).toThrow(RangeError);
      expect(() => mem.write(0, new Uint8Array(8), -1, 4)).toThrow(RangeError);
      expect(region.bytes).toEqual(before);
    });

    it("an empty RegionMemory contains nothing", () => {
      const mem = new RegionMemory();
      expect(mem.regionCount).toBe(0);
      expect(mem.contains(0, 0)).toBe(false);
      expect(mem.contains(0, 1)).toBe(false);
      expect(mem.view(0, 0)).toBeNull();
      expectGuestMemoryError(() => mem.readU8(0));
      expectGuestMemoryError(() => mem.read(0, new Uint8Array(1), 0, 1));
    });
  });

  describe("adjacent regions", () => {
    it("contains() spans the boundary", () => {
      const { mem } = layout();
      expect(mem.contains(A_ADDR, 32)).toBe(true);
      expect(mem.contains(B_ADDR - 1, 2)).toBe(true);
      expect(mem.contains(B_ADDR, 0)).toBe(true);
    });

    it("read crosses the boundary", () => {
      const { mem, a, b } = layout();
      const dest = new Uint8Array(32);
      mem.read(A_ADDR, dest, 0, 32);
      expect(Array.from(dest)).toEqual([...a.bytes, ...b.bytes]);
      const mid = new Uint8Array(6);
      mem.read(B_ADDR - 3, mid, 0, 6);
      expect(Array.from(mid)).toEqual([...a.bytes.subarray(13), ...b.bytes.subarray(0, 3)]);
    });

    it("write crosses the boundary", () => {
      const { mem, a, b } = layout();
      mem.write(B_ADDR - 2, Uint8Array.of(0, 0xa1, 0xa2, 0xb1, 0xb2, 0), 1, 4);
      expect(Array.from(a.bytes.subarray(14))).toEqual([0xa1, 0xa2]);
      expect(Array.from(b.bytes.subarray(0, 2))).toEqual([0xb1, 0xb2]);
    });

    it("fill crosses the boundary", () => {
      const { mem, a, b } = layout();
      mem.fill(B_ADDR - 5, 10, 0x77);
      expect(Array.from(a.bytes.subarray(11))).toEqual([0x77, 0x77, 0x77, 0x77, 0x77]);
      expect(Array.from(b.bytes.subarray(0, 5))).toEqual([0x77, 0x77, 0x77, 0x77, 0x77]);
      expect(b.bytes[5]).not.toBe(0x77);
    });

    it("readU16/U32/U64 straddling the boundary at every split point", () => {
      for (let inA = 1; inA < 8; inA++) {
        const { mem, a, b } = layout();
        const off = 16 - inA;
        const byteAt = (i: number): [Uint8Array, number] => (i < 16 ? [a.bytes, i] : [b.bytes, i - 16]);
        // Keep the top bytes of the 64-bit value small so it stays below 2^53.
        const [top, ti] = byteAt(off + 7);
        top[ti] = 0;
        const [next, ni] = byteAt(off + 6);
        next[ni] = next[ni]! & 0x1f;
        const all = [...a.bytes, ...b.bytes];
        const le = (n: number): number => {
          let v = 0;
          for (let i = n - 1; i >= 0; i--) v = v * 256 + all[off + i]!;
          return v;
        };
        if (inA < 2) expect(mem.readU16(A_ADDR + off)).toBe(le(2));
        if (inA < 4) expect(mem.readU32(A_ADDR + off)).toBe(le(4));
        const v = mem.readU64(A_ADDR + off);
        expect(Number.isSafeInteger(v)).toBe(true);
        expect(v).toBe(le(8));
      }
    });

    it("writeU16/U32/U64 straddling the boundary land in both regions", () => {
      const { mem, a, b } = layout();
      mem.writeU16(B_ADDR - 1, 0xbbaa);
      expect(a.bytes[15]).toBe(0xaa);
      expect(b.bytes[0]).toBe(0xbb);
      mem.writeU32(B_ADDR - 3, 0x44332211);
      expect(Array.from(a.bytes.subarray(13))).toEqual([0x11, 0x22, 0x33]);
      expect(b.bytes[0]).toBe(0x44);
      mem.writeU64(B_ADDR - 5, 0x1_2345_6789_abcd);
      expect(Array.from(a.bytes.subarray(11))).toEqual([0xcd, 0xab, 0x89, 0x67, 0x45]);
      expect(Array.from(b.bytes.subarray(0, 3))).toEqual([0x23, 0x01, 0x00]);
      expect(mem.readU64(B_ADDR - 5)).toBe(0x1_2345_6789_abcd);
      expect(mem.readU32(B_ADDR - 3)).toBe(0x23456789);
      expect(mem.readU16(B_ADDR - 1)).toBe(0x2345);
    });

    it("an access through three adjacent regions works", () => {
      const r1 = { guestAddr: 0, bytes: pattern(5, 1) };
      const r2 = { guestAddr: 5, bytes: pattern(2, 2) };
      const r3 = { guestAddr: 7, bytes: pattern(5, 3) };
      const mem = new RegionMemory([r1, r2, r3]);
      mem.writeU64(3, 0x0001_0203_0405_0607);
      expect(Array.from(r1.bytes.subarray(3))).toEqual([7, 6]);
      expect(Array.from(r2.bytes)).toEqual([5, 4]);
      expect(Array.from(r3.bytes.subarray(0, 4))).toEqual([3, 2, 1, 0]);
      expect(mem.readU64(3)).toBe(0x0001_0203_0405_0607);
      const dest = new Uint8Array(12);
      mem.read(0, dest, 0, 12);
      expect(Array.from(dest)).toEqual([...r1.bytes, ...r2.bytes, ...r3.bytes]);
    });

    it("view() inside one region is live; across a boundary it is null", () => {
      const { mem, a } = layout();
      const v = mem.view(A_ADDR + 4, 8)!;
      expect(v).not.toBeNull();
      mem.writeU8(A_ADDR + 4, 0x99);
      expect(v[0]).toBe(0x99);
      v[1] = 0x98;
      expect(a.bytes[5]).toBe(0x98);
      expect(mem.view(B_ADDR - 1, 2)).toBeNull();
      expect(mem.view(A_ADDR, 16)!.length).toBe(16);
      expect(mem.view(B_ADDR, 0)!.length).toBe(0);
    });
  });

  describe("a hole between regions", () => {
    const touching: [string, number, number][] = [
      ["ending in the hole", B_ADDR + 12, 8],
      ["starting in the hole", HOLE + 4, 4],
      ["spanning the hole", B_ADDR + 8, C_ADDR - B_ADDR],
      ["from the hole into C", C_ADDR - 2, 4],
      ["from A through B and the hole into C", A_ADDR, C_END - A_ADDR],
    ];

    it.each(touching)("an access %s fails as a whole and writes nothing", (_n, addr, len) => {
      const { mem, a, b, c } = layout();
      const before = snapshot([a, b, c]);
      expect(mem.contains(addr, len)).toBe(false);
      expect(mem.view(addr, len)).toBeNull();
      const dest = new Uint8Array(len).fill(0xee);
      expectGuestMemoryError(() => mem.read(addr, dest, 0, len));
      expect(dest.every((x) => x === 0xee)).toBe(true);
      expectGuestMemoryError(() => mem.write(addr, new Uint8Array(len), 0, len));
      expectGuestMemoryError(() => mem.fill(addr, len, 0));
      expect(snapshot([a, b, c])).toEqual(before);
    });

    it("scalar accesses that touch the hole fail and write nothing", () => {
      const { mem, a, b, c } = layout();
      const before = snapshot([a, b, c]);
      for (const [addr, fns] of [
        [HOLE - 1, [(x: number) => mem.readU16(x), (x: number) => mem.writeU16(x, 0)]],
        [HOLE - 3, [(x: number) => mem.readU32(x), (x: number) => mem.writeU32(x, 0)]],
        [HOLE - 7, [(x: number) => mem.readU64(x), (x: number) => mem.writeU64(x, 0)]],
        [HOLE, [(x: number) => mem.readU8(x), (x: number) => mem.writeU8(x, 0)]],
        [C_ADDR - 1, [(x: number) => mem.readU16(x), (x: number) => mem.writeU16(x, 0)]],
        [C_ADDR - 2, [(x: number) => mem.readU32(x), (x: number) => mem.writeU32(x, 0)]],
        [C_ADDR - 4, [(x: number) => mem.readU64(x), (x: number) => mem.writeU64(x, 0)]],
      ] as const) {
        for (const fn of fns) expectGuestMemoryError(() => fn(addr));
      }
      expect(snapshot([a, b, c])).toEqual(before);
    });

    it("length 0 inside the hole is not contained", () => {
      const { mem } = layout();
      expect(mem.contains(HOLE, 0)).toBe(true); // the end of B
      expect(mem.contains(HOLE + 1, 0)).toBe(false);
      expect(mem.contains(C_ADDR, 0)).toBe(true);
      expect(mem.contains(C_END, 0)).toBe(true);
    });

    it("accesses on either side of the hole still work", () => {
      const { mem, c } = layout();
      mem.writeU32(HOLE - 4, 0x01020304);
      expect(mem.readU32(HOLE - 4)).toBe(0x01020304);
      mem.writeU64(C_ADDR, 0xabcdef);
      expect(mem.readU64(C_ADDR)).toBe(0xabcdef);
      expect(c.bytes[0]).toBe(0xef);
    });
  });

  describe("add / remove", () => {
    it.each([
      ["the same range", 0x1000, 16],
      ["overlapping the start", 0x0ff8, 16],
      ["overlapping the end", 0x100f, 4],
      ["inside", 0x1004, 4],
      ["containing", 0x0f00, 0x400],
    ])("rejects a region %s with ERR_INVALID_CONFIG", (_n, addr, len) => {
      const mem = new RegionMemory([{ guestAddr: 0x1000, bytes: new Uint8Array(16) }]);
      expectInvalidConfig(() => mem.add({ guestAddr: addr, bytes: new Uint8Array(len) }));
      expect(mem.regionCount).toBe(1);
    });

    it("rejects an overlapping region in the constructor", () => {
      expectInvalidConfig(
        () =>
          new RegionMemory([
            { guestAddr: 0, bytes: new Uint8Array(16) },
            { guestAddr: 8, bytes: new Uint8Array(16) },
          ]),
      );
    });

    it.each([
      ["negative", -16],
      ["NaN", Number.NaN],
      ["fractional", 0.5],
      ["ending beyond 2^53", Number.MAX_SAFE_INTEGER - 4],
    ])("rejects a region at a %s address with ERR_INVALID_CONFIG", (_n, addr) => {
      const mem = new RegionMemory();
      expectInvalidConfig(() => mem.add({ guestAddr: addr, bytes: new Uint8Array(16) }));
      expect(mem.regionCount).toBe(0);
    });

    it("accepts regions that touch on either side", () => {
      const mem = new RegionMemory([{ guestAddr: 0x1000, bytes: new Uint8Array(16) }]);
      mem.add({ guestAddr: 0x0ff0, bytes: new Uint8Array(16) });
      mem.add({ guestAddr: 0x1010, bytes: new Uint8Array(16) });
      expect(mem.regionCount).toBe(3);
      expect(mem.contains(0x0ff0, 48)).toBe(true);
    });

    it("regions added out of order work as if sorted", () => {
      const hi = { guestAddr: 0x2010, bytes: pattern(16, 2) };
      const lo = { guestAddr: 0x2000, bytes: pattern(16, 1) };
      const top = { guestAddr: 0x2020, bytes: pattern(16, 3) };
      const mem = new RegionMemory([hi]);
      mem.add(top);
      mem.add(lo);
      const dest = new Uint8Array(48);
      mem.read(0x2000, dest, 0, 48);
      expect(Array.from(dest)).toEqual([...lo.bytes, ...hi.bytes, ...top.bytes]);
      mem.writeU32(0x201e, 0xdeadbeef);
      expect(Array.from(hi.bytes.subarray(14))).toEqual([0xef, 0xbe]);
      expect(Array.from(top.bytes.subarray(0, 2))).toEqual([0xad, 0xde]);
      // Alternate between regions (defeats the last-region cache).
      expect(mem.readU8(0x2000)).toBe(lo.bytes[0]);
      expect(mem.readU8(0x202f)).toBe(top.bytes[15]);
      expect(mem.readU8(0x2010)).toBe(hi.bytes[0]);
      expect(mem.readU8(0x2001)).toBe(lo.bytes[1]);
    });

    it("remove() drops a region by its start address", () => {
      const { mem, a, c } = layout();
      expect(mem.regionCount).toBe(3);
      mem.readU8(B_ADDR); // warm the cache on B
      expect(mem.remove(B_ADDR)).toBe(true);
      expect(mem.regionCount).toBe(2);
      expect(mem.contains(B_ADDR, 1)).toBe(false);
      expect(mem.contains(A_ADDR, 17)).toBe(false);
      expectGuestMemoryError(() => mem.readU8(B_ADDR));
      expectGuestMemoryError(() => mem.readU16(B_ADDR - 1));
      expect(mem.readU8(A_ADDR)).toBe(a.bytes[0]);
      expect(mem.readU8(C_ADDR)).toBe(c.bytes[0]);
      expect(mem.remove(B_ADDR)).toBe(false);
      expect(mem.remove(B_ADDR + 1)).toBe(false);
      expect(mem.remove(0xdead)).toBe(false);
      // The freed range can be mapped again, with a different size.
      mem.add({ guestAddr: B_ADDR, bytes: new Uint8Array(32) });
      expect(mem.contains(A_ADDR, C_END - A_ADDR)).toBe(true);
    });
  });

  describe("windowed regions", () => {
    it("asks for a window only when an access first touches it, once", () => {
      const bytes = pattern(64, 3);
      const w = windowed(0x1000, bytes, 16);
      const mem = new RegionMemory([w.region]);
      expect(mem.windowCount).toBe(0);
      expect(mem.contains(0x1000, 64)).toBe(true);
      expect(w.asked).toEqual([
        [0, 16],
        [16, 16],
        [32, 16],
        [48, 16],
      ]);
      w.asked.length = 0;
      const out = new Uint8Array(64);
      mem.read(0x1000, out, 0, 64);
      expect(out).toEqual(bytes);
      mem.writeU32(0x100e, 0xdeadbeef); // straddles two windows
      expect(mem.readU32(0x100e)).toBe(0xdeadbeef);
      expect(Array.from(bytes.subarray(14, 18))).toEqual([0xef, 0xbe, 0xad, 0xde]);
      expect(w.asked).toEqual([]);
      expect(mem.windowCount).toBe(4);
    });

    it("a sparse touch makes only the windows it touches; the last window may be short", () => {
      const bytes = new Uint8Array(1000);
      const w = windowed(0, bytes, 128);
      const mem = new RegionMemory([w.region]);
      mem.writeU8(999, 7);
      mem.writeU16(300, 0x1234);
      expect(w.asked).toEqual([
        [896, 104],
        [256, 128],
      ]);
      expect(bytes[999]).toBe(7);
      expect(mem.view(256, 128)).not.toBeNull();
      expect(mem.view(250, 10)).toBeNull(); // across a window boundary
    });

    it("a window the host cannot give fails the access that needed it, and is asked again next time", () => {
      const bytes = new Uint8Array(64);
      let failing = true;
      const region: WindowedRegion = {
        guestAddr: 0,
        length: 64,
        windowBytes: 32,
        window(offset, length) {
          if (failing && offset === 32) throw new Error("ENOMEM");
          return bytes.subarray(offset, offset + length);
        },
      };
      const mem = new RegionMemory([region]);
      expectGuestMemoryError(() => mem.write(0, new Uint8Array(64).fill(1), 0, 64));
      expect(bytes.every((b) => b === 0)).toBe(true);
      expect(mem.contains(0, 32)).toBe(true);
      expect(mem.contains(0, 33)).toBe(false);
      failing = false;
      mem.write(0, new Uint8Array(64).fill(1), 0, 64);
      expect(bytes.every((b) => b === 1)).toBe(true);
    });

    it("a window of the wrong length is never used", () => {
      const mem = new RegionMemory([
        { guestAddr: 0, length: 64, windowBytes: 32, window: () => new Uint8Array(16) },
      ]);
      expectGuestMemoryError(() => mem.readU8(0));
      expect(mem.contains(0, 1)).toBe(false);
    });

    it("right after an access, the window it used answers only the accesses that lie in it", () => {
      const bytes = pattern(64, 5);
      const mem = new RegionMemory([windowed(0x1000, bytes, 16).region]);
      const prime = (): number => mem.readU8(0x1020); // the window [0x1020, 0x1030) serves the next access first
      prime();
      for (const addr of [0x1020 + 0.5, Number.NaN, Number.POSITIVE_INFINITY, -0x1020]) {
        expectGuestMemoryError(() => mem.readU16(addr));
        prime();
        expectGuestMemoryError(() => mem.writeU32(addr, 1));
        prime();
        expect(mem.contains(addr, 2)).toBe(false);
        prime();
        expectGuestMemoryError(() => mem.read(addr, new Uint8Array(4), 0, 4));
        prime();
      }
      for (const length of [1.5, -1, Number.NaN]) {
        expect(mem.contains(0x1020, length)).toBe(false);
        prime();
        expectGuestMemoryError(() => mem.write(0x1020, new Uint8Array(4), 0, length));
        prime();
      }
      expect(bytes).toEqual(pattern(64, 5));
      // Before it, and across its end: the bytes there, not the window's.
      expect(mem.readU8(0x101f)).toBe(bytes[0x1f]);
      prime();
      expect(mem.readU64(0x102c)).toBe(Number(new DataView(bytes.buffer).getBigUint64(0x2c, true)));
      prime();
      const out = new Uint8Array(8);
      mem.read(0x102c, out, 0, 8);
      expect(out).toEqual(bytes.subarray(0x2c, 0x34));
      prime();
      mem.writeU16(0x101f, 0xabcd);
      expect([bytes[0x1f], bytes[0x20]]).toEqual([0xcd, 0xab]);
      prime();
      expect(() => mem.read(0x1020, new Uint8Array(4), 2, 4)).toThrow(RangeError);
      expect(() => mem.write(0x1020, new Uint8Array(4), 2, 4)).toThrow(RangeError);
    });

    it("refuses windows that are not a positive whole number of bytes, and overlaps as plain regions do", () => {
      for (const windowBytes of [0, -1, 1.5, Number.NaN])
        expectInvalidConfig(
          () => new RegionMemory([{ guestAddr: 0, length: 8, windowBytes, window: () => new Uint8Array(8) }]),
        );
      const mem = new RegionMemory([windowed(0, new Uint8Array(64), 16).region]);
      expectInvalidConfig(() => mem.add({ guestAddr: 63, bytes: new Uint8Array(4) }));
      expect(mem.remove(0)).toBe(true);
      expect(mem.contains(0, 1)).toBe(false);
    });
  });

  describe("equivalence with FlatMemory (property)", () => {
    type Op =
      | { kind: "read"; addr: number; len: number }
      | { kind: "write"; addr: number; data: Uint8Array }
      | { kind: "fill"; addr: number; len: number; value: number }
      | { kind: "scalar"; addr: number; width: 1 | 2 | 4 | 8; value: number }
      | { kind: "readScalar"; addr: number; width: 1 | 2 | 4 | 8 }
      | { kind: "contains"; addr: number; len: number };

    /** Runs `fn`, returning its value or "GuestMemoryError"; any other error fails the test. */
    function outcome(fn: () => unknown): unknown {
      try {
        return fn();
      } catch (err) {
        if (err instanceof GuestMemoryError) return "GuestMemoryError";
        throw err;
      }
    }

    function apply(mem: GuestMemory, op: Op): unknown {
      switch (op.kind) {
        case "read": {
          const dest = new Uint8Array(op.len);
          return outcome(() => {
            mem.read(op.addr, dest, 0, op.len);
            return Array.from(dest);
          });
        }
        case "write":
          return outcome(() => mem.write(op.addr, op.data, 0, op.data.length));
        case "fill":
          return outcome(() => mem.fill(op.addr, op.len, op.value));
        case "contains":
          return mem.contains(op.addr, op.len);
        case "scalar":
          return outcome(() => {
            if (op.width === 1) mem.writeU8(op.addr, op.value & 0xff);
            else if (op.width === 2) mem.writeU16(op.addr, op.value & 0xffff);
            else if (op.width === 4) mem.writeU32(op.addr, op.value >>> 0);
            else mem.writeU64(op.addr, op.value);
          });
        case "readScalar":
          return outcome(() =>
            op.width === 1
              ? mem.readU8(op.addr)
              : op.width === 2
                ? mem.readU16(op.addr)
                : op.width === 4
                  ? mem.readU32(op.addr)
                  : mem.readU64(op.addr),
          );
      }
    }

    it("random reads and writes agree with a FlatMemory holding the same bytes", () => {
      const arb = fc
        .record({
          base: fc.integer({ min: 0, max: 2 ** 40 }),
          pieces: fc.array(fc.integer({ min: 1, max: 24 }), { minLength: 1, maxLength: 8 }),
          seed: fc.nat(255),
          window: fc.integer({ min: 0, max: 6 }),
        })
        .chain(({ base, pieces, seed, window }) => {
          const total = pieces.reduce((s, n) => s + n, 0);
          const addr = fc.integer({ min: base - 10, max: base + total + 10 });
          const len = fc.integer({ min: 0, max: total + 4 });
          const op: fc.Arbitrary<Op> = fc.oneof(
            fc.record({ kind: fc.constant("read" as const), addr, len }),
            fc.record({
              kind: fc.constant("write" as const),
              addr,
              data: fc.uint8Array({ maxLength: total + 4 }),
            }),
            fc.record({ kind: fc.constant("fill" as const), addr, len, value: fc.nat(255) }),
            fc.record({
              kind: fc.constant("scalar" as const),
              addr,
              width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
              value: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
            }),
            fc.record({
              kind: fc.constant("readScalar" as const),
              addr,
              width: fc.constantFrom(1 as const, 2 as const, 4 as const, 8 as const),
            }),
            fc.record({ kind: fc.constant("contains" as const), addr, len }),
          );
          const order = fc.shuffledSubarray(
            pieces.map((_, i) => i),
            { minLength: pieces.length, maxLength: pieces.length },
          );
          return fc.record({
            base: fc.constant(base),
            pieces: fc.constant(pieces),
            seed: fc.constant(seed),
            window: fc.constant(window),
            order,
            ops: fc.array(op, { minLength: 1, maxLength: 30 }),
          });
        });

      fc.assert(
        fc.property(arb, ({ base, pieces, seed, window, order, ops }) => {
          const total = pieces.reduce((s, n) => s + n, 0);
          const flat = new FlatMemory(pattern(total, seed), base);
          const regions: MemoryRegion[] = [];
          let off = 0;
          for (const n of pieces) {
            regions.push({ guestAddr: base + off, bytes: flat.bytes.slice(off, off + n) });
            off += n;
          }
          const mem = new RegionMemory();
          // With `window`, every other region is windowed (windows of that many bytes) over the same bytes.
          for (const i of order) {
            const r = regions[i]!;
            mem.add(window > 0 && i % 2 === window % 2 ? windowed(r.guestAddr, r.bytes, window).region : r);
          }
          for (const op of ops) {
            expect(apply(mem, op)).toEqual(apply(flat, op));
            const joined = new Uint8Array(total);
            let o = 0;
            for (const r of regions) {
              joined.set(r.bytes, o);
              o += r.bytes.length;
            }
            expect(joined).toEqual(flat.bytes);
            // A view, when RegionMemory can give one, shows the same bytes.
            if (op.kind === "read") {
              const v = mem.view(op.addr, op.len);
              if (v !== null) expect(Array.from(v)).toEqual(Array.from(flat.view(op.addr, op.len)!));
            }
          }
        }),
        { numRuns: 300 },
      );
    });
  });
});
