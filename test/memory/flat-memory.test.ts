import { describe, expect, it } from "vitest";
import { GuestMemoryError, VirtioSndError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import { dataViewU64, isSafeUint, setDataViewU64 } from "../../src/memory/guest-memory.js";

const BASE = 0x1000;
const SIZE = 0x100;
const END = BASE + SIZE;

/** A memory whose bytes are a recognisable pattern, so any stray write shows. */
function makeMem(): FlatMemory {
  const bytes = new Uint8Array(SIZE);
  for (let i = 0; i < SIZE; i++) bytes[i] = (i * 7 + 3) & 0xff;
  return new FlatMemory(bytes, BASE);
}

/** Addresses at which an access of `width` bytes must fail. */
function badAddrs(width: number): [string, number][] {
  const cases: [string, number][] = [
    ["below base", BASE - 1],
    ["far below base", 0],
    ["at the end", END],
    ["past the end", END + 100],
    ["negative", -1],
    ["negative inside by offset", -BASE],
    ["NaN", Number.NaN],
    ["fractional", BASE + 0.5],
    ["above 2^53", 2 ** 53 + 2],
    ["Infinity", Number.POSITIVE_INFINITY],
    ["-Infinity", Number.NEGATIVE_INFINITY],
  ];
  if (width > 1) cases.push(["straddling the end", END - width + 1]);
  if (width > 1) cases.push(["straddling the base", BASE - 1]);
  return cases;
}

/** Lengths that must fail at an in-bounds address. */
const BAD_LENGTHS: [string, number][] = [
  ["negative", -1],
  ["NaN", Number.NaN],
  ["fractional", 1.5],
  ["above 2^53", 2 ** 53 + 2],
  ["Infinity", Number.POSITIVE_INFINITY],
  ["one too many", SIZE + 1],
];

function expectGuestMemoryError(fn: () => unknown, addr?: number, length?: number): void {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  expect(caught).toBeInstanceOf(GuestMemoryError);
  expect(caught).toBeInstanceOf(VirtioSndError);
  const e = caught as GuestMemoryError;
  expect(e.code).toBe("ERR_GUEST_MEMORY");
  expect(e.name).toBe("GuestMemoryError");
  if (addr !== undefined) expect(Object.is(e.addr, addr)).toBe(true);
  if (length !== undefined) expect(Object.is(e.length, length)).toBe(true);
}

/** Runs `fn`, expects GuestMemoryError and that the memory's bytes did not change. */
function expectFailsUnchanged(mem: FlatMemory, fn: () => unknown): void {
  const before = mem.bytes.slice();
  expectGuestMemoryError(fn);
  expect(mem.bytes).toEqual(before);
}

describe("guest-memory helpers", () => {
  it("isSafeUint accepts only safe non-negative integers", () => {
    expect(isSafeUint(0)).toBe(true);
    expect(isSafeUint(1)).toBe(true);
    expect(isSafeUint(Number.MAX_SAFE_INTEGER)).toBe(true);
    expect(isSafeUint(-0)).toBe(true);
    for (const v of [-1, 0.5, Number.NaN, 2 ** 53, Infinity, -Infinity]) expect(isSafeUint(v)).toBe(false);
  });

  it("dataViewU64/setDataViewU64 round-trip values above 2^32, little-endian", () => {
    const dv = new DataView(new ArrayBuffer(16));
    for (const v of [0, 1, 0xffff_ffff, 0x1_0000_0000, 0x1_2345_6789, 2 ** 52 + 1, Number.MAX_SAFE_INTEGER]) {
      setDataViewU64(dv, 4, v);
      expect(dataViewU64(dv, 4)).toBe(v);
    }
    setDataViewU64(dv, 0, 0x000a_0b0c_0d0e_0f10);
    expect(Array.from(new Uint8Array(dv.buffer, 0, 8))).toEqual([
      0x10, 0x0f, 0x0e, 0x0d, 0x0c, 0x0b, 0x0a, 0,
    ]);
  });
});

describe("FlatMemory", () => {
  describe("construction", () => {
    it("wraps an ArrayBuffer, exposing base, size and bytes", () => {
      const buf = new ArrayBuffer(64);
      const mem = new FlatMemory(buf, 0x2000);
      expect(mem.base).toBe(0x2000);
      expect(mem.size).toBe(64);
      expect(mem.bytes.buffer).toBe(buf);
      mem.writeU8(0x2000, 0xab);
      expect(new Uint8Array(buf)[0]).toBe(0xab);
    });

    it("defaults the base to 0", () => {
      const mem = new FlatMemory(new Uint8Array(8));
      expect(mem.base).toBe(0);
      expect(mem.contains(0, 8)).toBe(true);
    });

    it("wraps a SharedArrayBuffer", () => {
      const sab = new SharedArrayBuffer(16);
      const mem = new FlatMemory(sab);
      mem.writeU32(4, 0xdeadbeef);
      expect(new DataView(sab).getUint32(4, true)).toBe(0xdeadbeef);
    });

    it("respects the byteOffset of a Uint8Array subarray for every access width", () => {
      const backing = new Uint8Array(32);
      const mem = new FlatMemory(backing.subarray(8, 24), 0x100);
      expect(mem.size).toBe(16);
      mem.writeU8(0x100, 0x11);
      mem.writeU16(0x102, 0x2233);
      mem.writeU32(0x104, 0x44556677);
      mem.writeU64(0x108, 0x1_8899_aabb);
      expect(Array.from(backing.subarray(0, 8))).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
      expect(Array.from(backing.subarray(8, 24))).toEqual([
        0x11, 0, 0x33, 0x22, 0x77, 0x66, 0x55, 0x44, 0xbb, 0xaa, 0x99, 0x88, 1, 0, 0, 0,
      ]);
      expect(mem.readU16(0x102)).toBe(0x2233);
      expect(mem.readU32(0x104)).toBe(0x44556677);
      expect(mem.readU64(0x108)).toBe(0x1_8899_aabb);
      expectGuestMemoryError(() => mem.readU8(0x110));
    });
  });

  describe("contains", () => {
    it("is true for ranges inside memory, including the whole of it", () => {
      const mem = makeMem();
      expect(mem.contains(BASE, SIZE)).toBe(true);
      expect(mem.contains(BASE, 1)).toBe(true);
      expect(mem.contains(END - 1, 1)).toBe(true);
      expect(mem.contains(BASE + 10, 20)).toBe(true);
    });

    it("accepts length 0 anywhere from base to the end inclusive, and nowhere else", () => {
      const mem = makeMem();
      expect(mem.contains(BASE, 0)).toBe(true);
      expect(mem.contains(END, 0)).toBe(true);
      expect(mem.contains(BASE - 1, 0)).toBe(false);
      expect(mem.contains(END + 1, 0)).toBe(false);
    });

    it.each(badAddrs(4))("is false for an address %s", (_name, addr) => {
      expect(makeMem().contains(addr, 4)).toBe(false);
    });

    it.each(BAD_LENGTHS)("is false for a length that is %s", (_name, length) => {
      expect(makeMem().contains(BASE, length)).toBe(false);
    });

    it("is false when a range is one byte too long", () => {
      const mem = makeMem();
      expect(mem.contains(BASE + 1, SIZE)).toBe(false);
      expect(mem.contains(END - 3, 4)).toBe(false);
    });
  });

  describe("read", () => {
    it("copies bytes into the destination at an offset", () => {
      const mem = makeMem();
      const dest = new Uint8Array(10).fill(0xee);
      mem.read(BASE + 4, dest, 3, 5);
      expect(Array.from(dest)).toEqual([0xee, 0xee, 0xee, ...mem.bytes.subarray(4, 9), 0xee, 0xee]);
    });

    it("reads the whole memory and the last byte", () => {
      const mem = makeMem();
      const dest = new Uint8Array(SIZE);
      mem.read(BASE, dest, 0, SIZE);
      expect(dest).toEqual(mem.bytes);
      const one = new Uint8Array(1);
      mem.read(END - 1, one, 0, 1);
      expect(one[0]).toBe(mem.bytes[SIZE - 1]);
    });

    it("reads length 0 at the end without touching the destination", () => {
      const mem = makeMem();
      const dest = new Uint8Array(4).fill(9);
      mem.read(END, dest, 4, 0);
      expect(Array.from(dest)).toEqual([9, 9, 9, 9]);
    });

    it("returns a copy, not a view", () => {
      const mem = makeMem();
      const dest = new Uint8Array(4);
      mem.read(BASE, dest, 0, 4);
      mem.fill(BASE, 4, 0);
      expect(dest[0]).not.toBe(0);
    });

    it.each(badAddrs(4))("throws GuestMemoryError for an address %s and leaves dest alone", (_name, addr) => {
      const mem = makeMem();
      const dest = new Uint8Array(4).fill(0x5a);
      expectGuestMemoryError(() => mem.read(addr, dest, 0, 4), addr, 4);
      expect(Array.from(dest)).toEqual([0x5a, 0x5a, 0x5a, 0x5a]);
    });

    it.each(BAD_LENGTHS)("throws GuestMemoryError for a length that is %s", (_name, length) => {
      const mem = makeMem();
      expectGuestMemoryError(() => mem.read(BASE, new Uint8Array(8), 0, length), BASE, length);
    });

    it("throws RangeError when the destination is too small", () => {
      const mem = makeMem();
      expect(() => mem.read(BASE, new Uint8Array(4), 2, 4)).toThrow(RangeError);
      expect(() => mem.read(BASE, new Uint8Array(4), -1, 2)).toThrow(RangeError);
    });
  });

  describe("write", () => {
    it("copies bytes from the source at an offset", () => {
      const mem = makeMem();
      const before = mem.bytes.slice();
      mem.write(BASE + 8, Uint8Array.of(1, 2, 3, 4, 5, 6), 2, 3);
      expect(Array.from(mem.bytes.subarray(8, 11))).toEqual([3, 4, 5]);
      expect(Array.from(mem.bytes.subarray(0, 8))).toEqual(Array.from(before.subarray(0, 8)));
      expect(Array.from(mem.bytes.subarray(11))).toEqual(Array.from(before.subarray(11)));
    });

    it("writes up to the last byte", () => {
      const mem = makeMem();
      mem.write(END - 2, Uint8Array.of(0xaa, 0xbb), 0, 2);
      expect(mem.readU16(END - 2)).toBe(0xbbaa);
    });

    it("writes length 0 at the end as a no-op", () => {
      const mem = makeMem();
      const before = mem.bytes.slice();
      mem.write(END, new Uint8Array(0), 0, 0);
      expect(mem.bytes).toEqual(before);
    });

    it.each(badAddrs(4))("throws for an address %s and writes nothing", (_name, addr) => {
      const mem = makeMem();
      expectFailsUnchanged(mem, () => mem.write(addr, Uint8Array.of(1, 2, 3, 4), 0, 4));
    });

    it.each(BAD_LENGTHS)("throws for a length that is %s and writes nothing", (_name, length) => {
      const mem = makeMem();
      expectFailsUnchanged(mem, () => mem.write(BASE, new Uint8Array(SIZE + 8), 0, length));
    });

    it("throws RangeError when the source is too small, writing nothing", () => {
      const mem = makeMem();
      const before = mem.bytes.slice();
      expect(() => mem.write(BASE, new Uint8Array(4), 1, 4)).toThrow(RangeError);
      expect(() => mem.write(BASE, new Uint8Array(4), -1, 2)).toThrow(RangeError);
      expect(mem.bytes).toEqual(before);
    });
  });

  describe("fill", () => {
    it("sets a range to a value", () => {
      const mem = makeMem();
      const before = mem.bytes.slice();
      mem.fill(BASE + 5, 10, 0x42);
      expect(Array.from(mem.bytes.subarray(5, 15))).toEqual(new Array<number>(10).fill(0x42));
      expect(mem.bytes[4]).toBe(before[4]);
      expect(mem.bytes[15]).toBe(before[15]);
    });

    it("fills the whole memory and length 0 at the end", () => {
      const mem = makeMem();
      mem.fill(BASE, SIZE, 0);
      expect(mem.bytes.every((b) => b === 0)).toBe(true);
      mem.fill(END, 0, 1);
      expect(mem.bytes.every((b) => b === 0)).toBe(true);
    });

    it.each(badAddrs(4))("throws for an address %s and fills nothing", (_name, addr) => {
      const mem = makeMem();
      expectFailsUnchanged(mem, () => mem.fill(addr, 4, 0));
    });

    it.each(BAD_LENGTHS)("throws for a length that is %s and fills nothing", (_name, length) => {
      const mem = makeMem();
      expectFailsUnchanged(mem, () => mem.fill(BASE, length, 0));
    });
  });

  describe("scalar accessors", () => {
    it("read and write little-endian U8/U16/U32", () => {
      const mem = makeMem();
      mem.writeU8(BASE, 0xfe);
      mem.writeU16(BASE + 1, 0xbeef);
      mem.writeU32(BASE + 3, 0xcafebabe);
      expect(Array.from(mem.bytes.subarray(0, 7))).toEqual([0xfe, 0xef, 0xbe, 0xbe, 0xba, 0xfe, 0xca]);
      expect(mem.readU8(BASE)).toBe(0xfe);
      expect(mem.readU16(BASE + 1)).toBe(0xbeef);
      expect(mem.readU32(BASE + 3)).toBe(0xcafebabe);
    });

    it("accepts accesses ending exactly at the end", () => {
      const mem = makeMem();
      mem.writeU8(END - 1, 1);
      mem.writeU16(END - 2, 0x0203);
      mem.writeU32(END - 4, 0x04050607);
      mem.writeU64(END - 8, 0x0809_0a0b_0c0d);
      expect(mem.readU8(END - 1)).toBe(0);
      expect(mem.readU16(END - 2)).toBe(0);
      expect(mem.readU32(END - 4)).toBe(0x0809);
      expect(mem.readU64(END - 8)).toBe(0x0809_0a0b_0c0d);
    });

    it("readU64/writeU64 handle values above 2^32 exactly up to 2^53", () => {
      const mem = makeMem();
      const values = [
        0,
        1,
        0xffff_ffff,
        0x1_0000_0000,
        0x1_2345_6789,
        0xdead_beef_cafe,
        2 ** 52,
        Number.MAX_SAFE_INTEGER,
      ];
      for (const v of values) {
        mem.writeU64(BASE + 16, v);
        expect(mem.readU64(BASE + 16)).toBe(v);
      }
      mem.writeU64(BASE + 16, 0x1_2345_6789);
      expect(mem.readU32(BASE + 16)).toBe(0x2345_6789);
      expect(mem.readU32(BASE + 20)).toBe(1);
    });

    it("writeU64 of powers of two beyond 2^53 round-trips (representable values)", () => {
      const mem = makeMem();
      for (const v of [2 ** 53, 2 ** 60, 2 ** 63]) {
        mem.writeU64(BASE, v);
        expect(mem.readU64(BASE)).toBe(v);
      }
      mem.writeU64(BASE, 2 ** 63);
      expect(mem.readU8(BASE + 7)).toBe(0x80);
    });

    it("readU64 of all-ones bytes is 2^64 (inexact, as documented)", () => {
      const mem = makeMem();
      mem.fill(BASE, 8, 0xff);
      expect(mem.readU64(BASE)).toBe(2 ** 64);
    });

    const widths: [
      string,
      number,
      (m: FlatMemory, a: number) => unknown,
      (m: FlatMemory, a: number) => void,
    ][] = [
      ["U8", 1, (m, a) => m.readU8(a), (m, a) => m.writeU8(a, 0x11)],
      ["U16", 2, (m, a) => m.readU16(a), (m, a) => m.writeU16(a, 0x1122)],
      ["U32", 4, (m, a) => m.readU32(a), (m, a) => m.writeU32(a, 0x11223344)],
      ["U64", 8, (m, a) => m.readU64(a), (m, a) => m.writeU64(a, 0x11_2233_4455)],
    ];

    for (const [name, width, read, write] of widths) {
      describe(name, () => {
        it.each(badAddrs(width))(`read${name} throws for an address %s`, (_n, addr) => {
          const mem = makeMem();
          expectGuestMemoryError(() => read(mem, addr), addr, width);
        });
        it.each(badAddrs(width))(`write${name} throws for an address %s and writes nothing`, (_n, addr) => {
          const mem = makeMem();
          expectFailsUnchanged(mem, () => write(mem, addr));
        });
      });
    }
  });

  describe("view", () => {
    it("returns a live view of the range", () => {
      const mem = makeMem();
      const v = mem.view(BASE + 16, 8)!;
      expect(v).not.toBeNull();
      expect(v.length).toBe(8);
      expect(Array.from(v)).toEqual(Array.from(mem.bytes.subarray(16, 24)));
      mem.writeU32(BASE + 16, 0x01020304);
      expect(Array.from(v.subarray(0, 4))).toEqual([4, 3, 2, 1]);
      v[7] = 0x99;
      expect(mem.readU8(BASE + 23)).toBe(0x99);
    });

    it("returns the whole memory, and an empty view for length 0 at the end", () => {
      const mem = makeMem();
      expect(mem.view(BASE, SIZE)!.length).toBe(SIZE);
      expect(mem.view(END, 0)!.length).toBe(0);
    });

    it.each(badAddrs(4))("returns null for an address %s", (_n, addr) => {
      expect(makeMem().view(addr, 4)).toBeNull();
    });

    it.each(BAD_LENGTHS)("returns null for a length that is %s", (_n, length) => {
      expect(makeMem().view(BASE, length)).toBeNull();
    });
  });

  it("GuestMemoryError carries the address and length in its message", () => {
    const err = new GuestMemoryError(0x1234, 8);
    expect(err.message).toContain("0x1234");
    expect(err.message).toContain("8 bytes");
    expect(err.addr).toBe(0x1234);
    expect(err.length).toBe(8);
    expect(err).toBeInstanceOf(Error);
  });
});
