import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_VRING_BASE,
  VHOST_USER_MAX_PAYLOAD,
  VHOST_USER_SET_VRING_ADDR,
  VHOST_USER_VERSION,
  alwaysReplies,
  checkHeader,
  decodeConfig,
  decodeHeader,
  decodeMemReg,
  decodeMemTable,
  decodeU64,
  decodeVringAddr,
  decodeVringFile,
  decodeVringState,
  encodeConfig,
  encodeMemReg,
  encodeMemTable,
  encodeMessage,
  encodeReply,
  encodeU64,
  encodeVringAddr,
  encodeVringFile,
  encodeVringState,
  requestName,
  safeNumber,
} from "../../src/vhost-user/messages.js";

const hex = (b: Uint8Array): string => Buffer.from(b).toString("hex");
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

describe("the header", () => {
  it("is request, flags, size as little-endian u32s, then the payload", () => {
    const m = encodeMessage(VHOST_USER_SET_VRING_ADDR, 0x9, new Uint8Array([0xaa, 0xbb]));
    expect(hex(m)).toBe("09000000" + "09000000" + "02000000" + "aabb");
    expect(decodeHeader(m)).toEqual({ request: 9, flags: 9, size: 2 });
  });

  it("replies carry version 1 and the REPLY flag and nothing else (QEMU checks flags == 0x5)", () => {
    const r = encodeReply(VHOST_USER_GET_FEATURES, encodeU64(0x1_0000_0001n));
    expect(hex(r)).toBe("01000000" + "05000000" + "08000000" + "0100000001000000");
  });

  it("framing is refused for another version or an oversized payload", () => {
    expect(checkHeader({ request: 1, flags: VHOST_USER_VERSION, size: 0 })).toBeNull();
    expect(checkHeader({ request: 1, flags: 0x1 | 0x8, size: VHOST_USER_MAX_PAYLOAD })).toBeNull();
    expect(checkHeader({ request: 1, flags: 0, size: 0 })).toMatch(/version 0/);
    expect(checkHeader({ request: 1, flags: 2, size: 0 })).toMatch(/version 2/);
    expect(checkHeader({ request: 1, flags: 1, size: VHOST_USER_MAX_PAYLOAD + 1 })).toMatch(/payload/);
  });

  it("names requests, and knows which always get a reply", () => {
    expect(requestName(VHOST_USER_GET_VRING_BASE)).toBe("GET_VRING_BASE");
    expect(requestName(36)).toBe("GET_MAX_MEM_SLOTS");
    expect(requestName(1000)).toBe("request 1000");
    expect(alwaysReplies(VHOST_USER_GET_VRING_BASE)).toBe(true);
    expect(alwaysReplies(VHOST_USER_SET_VRING_ADDR)).toBe(false);
  });
});

describe("payloads, byte for byte", () => {
  it("vring state: index, num", () => {
    expect(hex(encodeVringState({ index: 2, num: 0x8000_8000 }))).toBe("02000000" + "00800080");
  });

  it("vring address: index, flags, desc, used, avail, log", () => {
    const b = encodeVringAddr({
      index: 1,
      flags: 1,
      descUser: 0x1122_3344_5566_7788n,
      usedUser: 0x10n,
      availUser: 0x20n,
      logGuest: 0x30n,
    });
    expect(b.length).toBe(40);
    expect(hex(b)).toBe(
      "01000000" +
        "01000000" +
        "8877665544332211" +
        "1000000000000000" +
        "2000000000000000" +
        "3000000000000000",
    );
  });

  it("memory table: count, padding, then {guest, size, user, mmap offset} per region", () => {
    const b = encodeMemTable([{ guestAddr: 0x1000n, size: 0x2000n, userAddr: 0x3000n, mmapOffset: 0x4000n }]);
    expect(hex(b)).toBe(
      "01000000" +
        "00000000" +
        "0010000000000000" +
        "0020000000000000" +
        "0030000000000000" +
        "0040000000000000",
    );
  });

  it("single region: 8 bytes of padding, then the region", () => {
    const b = encodeMemReg({ guestAddr: 1n, size: 2n, userAddr: 3n, mmapOffset: 4n });
    expect(hex(b)).toBe(
      "0000000000000000" + "0100000000000000" + "0200000000000000" + "0300000000000000" + "0400000000000000",
    );
  });

  it("config: offset, size, flags, then the bytes", () => {
    const b = encodeConfig({ offset: 4, flags: 1, data: new Uint8Array([9, 8]) });
    expect(hex(b)).toBe("04000000" + "02000000" + "01000000" + "0908");
  });

  it("vring file: index in bits 0-7, the no-fd flag in bit 8", () => {
    expect(hex(encodeVringFile({ index: 3, noFd: true }))).toBe("0301000000000000");
    expect(decodeVringFile(encodeU64(0x103n))).toEqual({ ok: true, value: { index: 3, noFd: true } });
  });
});

describe("round trips", () => {
  it("every encoder's output decodes to what it was given", () => {
    fc.assert(
      fc.property(u32, u32, u64, u64, u64, u64, (a, b, w, x, y, z) => {
        expect(decodeU64(encodeU64(w))).toEqual({ ok: true, value: w });
        expect(decodeVringState(encodeVringState({ index: a, num: b }))).toEqual({
          ok: true,
          value: { index: a, num: b },
        });
        const addr = { index: a, flags: b, descUser: w, usedUser: x, availUser: y, logGuest: z };
        expect(decodeVringAddr(encodeVringAddr(addr))).toEqual({ ok: true, value: addr });
        const region = { guestAddr: w, size: x, userAddr: y, mmapOffset: z };
        expect(decodeMemReg(encodeMemReg(region))).toEqual({ ok: true, value: region });
        expect(decodeMemTable(encodeMemTable([region, region]))).toEqual({
          ok: true,
          value: [region, region],
        });
      }),
    );
  });

  it("config messages of every size up to 256", () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 256 }), fc.integer({ min: 0, max: 256 }), (offset, size) => {
        const d = decodeConfig(encodeConfig({ offset, flags: 0, data: new Uint8Array(size) }));
        expect(d.ok).toBe(offset + size <= 256);
        if (d.ok) expect(d.value).toMatchObject({ offset, size, flags: 0 });
      }),
    );
  });
});

describe("decoders refuse", () => {
  it("payloads of the wrong size, with the reason", () => {
    expect(decodeU64(new Uint8Array(7))).toEqual({ ok: false, reason: "u64 payload is 7 bytes, not 8" });
    expect(decodeVringState(new Uint8Array(9)).ok).toBe(false);
    expect(decodeVringAddr(new Uint8Array(39)).ok).toBe(false);
    expect(decodeMemReg(new Uint8Array(41)).ok).toBe(false);
    expect(decodeMemTable(new Uint8Array(7)).ok).toBe(false);
    expect(decodeConfig(new Uint8Array(11)).ok).toBe(false);
  });

  it("memory tables of more than 8 regions, or not exactly as long as their count says", () => {
    const nine = new Uint8Array(8 + 9 * 32);
    new DataView(nine.buffer).setUint32(0, 9, true);
    expect(decodeMemTable(nine)).toMatchObject({ ok: false, reason: expect.stringMatching(/9 regions/) });
    const r = { guestAddr: 0n, size: 1n, userAddr: 0n, mmapOffset: 0n };
    const two = encodeMemTable([r, r]);
    expect(decodeMemTable(two.subarray(0, two.length - 1)).ok).toBe(false);
    const padded = new Uint8Array(two.length + 32);
    padded.set(two);
    expect(decodeMemTable(padded).ok).toBe(false);
    expect(decodeMemTable(encodeMemTable([])).ok).toBe(true);
  });

  it("config sizes above 256 and vring files with high bits", () => {
    const c = encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(0) });
    new DataView(c.buffer).setUint32(4, 257, true);
    expect(decodeConfig(c).ok).toBe(false);
    expect(decodeVringFile(encodeU64(1n << 9n)).ok).toBe(false);
    expect(decodeVringFile(encodeU64(1n << 63n)).ok).toBe(false);
  });

  it("u64 values past 2^53 as numbers", () => {
    expect(safeNumber(2n ** 53n - 1n)).toBe(Number.MAX_SAFE_INTEGER);
    expect(safeNumber(2n ** 53n)).toBeNull();
    expect(safeNumber(-1n)).toBeNull();
  });
});
