/**
 * A hostile or broken front-end: every malformed message gets a refusal
 * (a failure reply when the front-end waits for one, a warning otherwise),
 * its file descriptors are closed, nothing throws, and the device keeps
 * working for the messages that follow.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VIRTIO_F_VERSION_1, VIRTIO_SND_S_OK } from "../../src/spec/constants.js";
import {
  VHOST_USER_ADD_MEM_REG,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_GET_STATUS,
  VHOST_USER_GET_VRING_BASE,
  VHOST_USER_IOTLB_MSG,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_PROTOCOL_F_LOG_SHMFD,
  VHOST_USER_REM_MEM_REG,
  VHOST_USER_SET_BACKEND_REQ_FD,
  VHOST_USER_SET_CONFIG,
  VHOST_USER_SET_FEATURES,
  VHOST_USER_SET_LOG_BASE,
  VHOST_USER_SET_MEM_TABLE,
  VHOST_USER_SET_OWNER,
  VHOST_USER_SET_PROTOCOL_FEATURES,
  VHOST_USER_SET_STATUS,
  VHOST_USER_SET_VRING_ADDR,
  VHOST_USER_SET_VRING_BASE,
  VHOST_USER_SET_VRING_CALL,
  VHOST_USER_SET_VRING_ENABLE,
  VHOST_USER_SET_VRING_ERR,
  VHOST_USER_SET_VRING_KICK,
  VHOST_USER_SET_VRING_NUM,
  VHOST_USER_VERSION,
  VHOST_USER_VRING_KICK,
  type MemoryRegionDesc,
  alwaysReplies,
  decodeU64,
  encodeConfig,
  encodeMemReg,
  encodeMemTable,
  encodeU64,
  encodeVringAddr,
  encodeVringFile,
  encodeVringState,
  requestName,
} from "../../src/vhost-user/messages.js";
import { GUEST_BASE, GuestSide, USER_BASE } from "./guest-side.js";
import { MockFrontEnd } from "./mock-front-end.js";

const bit = (n: number): bigint => 1n << BigInt(n);
const NEED_REPLY = VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK;

interface Case {
  name: string;
  request: number;
  payload?: (fe: MockFrontEnd) => Uint8Array;
  /** Front-end fds to pass (made fresh for each case). */
  fds?: (fe: MockFrontEnd) => number[];
}

function region(fe: MockFrontEnd, over: Partial<MemoryRegionDesc> = {}): MemoryRegionDesc {
  return { ...fe.region, ...over };
}

const cases: Case[] = [
  { name: "GET_FEATURES with a payload", request: VHOST_USER_GET_FEATURES, payload: () => encodeU64(0n) },
  { name: "GET_FEATURES with an fd", request: VHOST_USER_GET_FEATURES, fds: (fe) => [fe.t.eventfd()] },
  { name: "SET_FEATURES too short", request: VHOST_USER_SET_FEATURES, payload: () => new Uint8Array(4) },
  { name: "SET_FEATURES too long", request: VHOST_USER_SET_FEATURES, payload: () => new Uint8Array(12) },
  {
    name: "SET_FEATURES with a feature not offered",
    request: VHOST_USER_SET_FEATURES,
    payload: () => encodeU64(bit(VIRTIO_F_VERSION_1) | bit(63)),
  },
  { name: "SET_FEATURES without VERSION_1", request: VHOST_USER_SET_FEATURES, payload: () => encodeU64(0n) },
  {
    name: "SET_PROTOCOL_FEATURES with one not offered",
    request: VHOST_USER_SET_PROTOCOL_FEATURES,
    payload: () => encodeU64(bit(VHOST_USER_PROTOCOL_F_LOG_SHMFD)),
  },
  { name: "SET_OWNER with a payload", request: VHOST_USER_SET_OWNER, payload: () => new Uint8Array(1) },
  {
    name: "SET_MEM_TABLE with 9 regions",
    request: VHOST_USER_SET_MEM_TABLE,
    payload: (fe) => {
      const p = new Uint8Array(8 + 32 * 9);
      new DataView(p.buffer).setUint32(0, 9, true);
      p.set(encodeMemTable([fe.region]).subarray(8), 8);
      return p;
    },
  },
  {
    name: "SET_MEM_TABLE shorter than its count",
    request: VHOST_USER_SET_MEM_TABLE,
    payload: (fe) => encodeMemTable([fe.region]).subarray(0, 30),
    fds: (fe) => [fe.memFd],
  },
  { name: "SET_MEM_TABLE of 4 bytes", request: VHOST_USER_SET_MEM_TABLE, payload: () => new Uint8Array(4) },
  {
    name: "SET_MEM_TABLE with its fds missing",
    request: VHOST_USER_SET_MEM_TABLE,
    payload: (fe) =>
      encodeMemTable([
        region(fe, { size: 0x10000n }),
        region(fe, { guestAddr: 0x1000_0000n, userAddr: 0x1000_0000n }),
      ]),
    fds: (fe) => [fe.memFd],
  },
  {
    name: "SET_MEM_TABLE with an empty region",
    request: VHOST_USER_SET_MEM_TABLE,
    payload: (fe) => encodeMemTable([region(fe, { size: 0n })]),
    fds: (fe) => [fe.memFd],
  },
  {
    name: "SET_MEM_TABLE with overlapping regions",
    request: VHOST_USER_SET_MEM_TABLE,
    payload: (fe) =>
      encodeMemTable([
        region(fe, { size: 0x10000n }),
        region(fe, { guestAddr: BigInt(GUEST_BASE + 0x8000), userAddr: 0x1000_0000n, size: 0x10000n }),
      ]),
    fds: (fe) => [fe.memFd, fe.t.memfd(new ArrayBuffer(0x10000))],
  },
  {
    name: "SET_MEM_TABLE with a region past the end of its file",
    request: VHOST_USER_SET_MEM_TABLE,
    payload: (fe) => encodeMemTable([region(fe, { size: 0x1000_0000n })]),
    fds: (fe) => [fe.memFd],
  },
  {
    name: "SET_MEM_TABLE with an address beyond 2^53",
    request: VHOST_USER_SET_MEM_TABLE,
    payload: (fe) => encodeMemTable([region(fe, { guestAddr: 1n << 60n })]),
    fds: (fe) => [fe.memFd],
  },
  {
    name: "SET_MEM_TABLE with an eventfd for memory",
    request: VHOST_USER_SET_MEM_TABLE,
    payload: (fe) => encodeMemTable([region(fe)]),
    fds: (fe) => [fe.t.eventfd()],
  },
  {
    name: "ADD_MEM_REG without its fd",
    request: VHOST_USER_ADD_MEM_REG,
    payload: (fe) => encodeMemReg(region(fe, { guestAddr: 0x1_0000_0000n, userAddr: 0x1_0000_0000n })),
  },
  {
    name: "ADD_MEM_REG overlapping the region there",
    request: VHOST_USER_ADD_MEM_REG,
    payload: (fe) => encodeMemReg(region(fe, { userAddr: 0x1_0000_0000n })),
    fds: (fe) => [fe.memFd],
  },
  { name: "ADD_MEM_REG of 32 bytes", request: VHOST_USER_ADD_MEM_REG, payload: () => new Uint8Array(32) },
  {
    name: "REM_MEM_REG of a region that is not there",
    request: VHOST_USER_REM_MEM_REG,
    payload: (fe) => encodeMemReg(region(fe, { size: 0x1000n })),
  },
  {
    name: "SET_VRING_NUM of ring 4",
    request: VHOST_USER_SET_VRING_NUM,
    payload: () => encodeVringState({ index: 4, num: 64 }),
  },
  {
    name: "SET_VRING_NUM of 0",
    request: VHOST_USER_SET_VRING_NUM,
    payload: () => encodeVringState({ index: 0, num: 0 }),
  },
  {
    name: "SET_VRING_NUM of 65536",
    request: VHOST_USER_SET_VRING_NUM,
    payload: () => encodeVringState({ index: 0, num: 65536 }),
  },
  { name: "SET_VRING_NUM of 4 bytes", request: VHOST_USER_SET_VRING_NUM, payload: () => new Uint8Array(4) },
  {
    name: "SET_VRING_ADDR outside the memory table",
    request: VHOST_USER_SET_VRING_ADDR,
    payload: (fe) => encodeVringAddr({ ...fe.guest.vringAddr(0), descUser: 0x1234n }),
  },
  {
    name: "SET_VRING_ADDR beyond 2^64 rounding",
    request: VHOST_USER_SET_VRING_ADDR,
    payload: (fe) => encodeVringAddr({ ...fe.guest.vringAddr(0), usedUser: (1n << 64n) - 1n }),
  },
  {
    name: "SET_VRING_ADDR of 32 bytes",
    request: VHOST_USER_SET_VRING_ADDR,
    payload: () => new Uint8Array(32),
  },
  {
    name: "SET_VRING_BASE of ring 200",
    request: VHOST_USER_SET_VRING_BASE,
    payload: () => encodeVringState({ index: 200, num: 0 }),
  },
  {
    name: "SET_VRING_KICK without its fd",
    request: VHOST_USER_SET_VRING_KICK,
    payload: () => encodeVringFile({ index: 0, noFd: false }),
  },
  {
    name: "SET_VRING_KICK with the no-fd flag and an fd",
    request: VHOST_USER_SET_VRING_KICK,
    payload: () => encodeVringFile({ index: 0, noFd: true }),
    fds: (fe) => [fe.t.eventfd()],
  },
  {
    name: "SET_VRING_KICK with bits above 8",
    request: VHOST_USER_SET_VRING_KICK,
    payload: () => encodeU64(0x200n),
    fds: (fe) => [fe.t.eventfd()],
  },
  {
    name: "SET_VRING_KICK with an fd that cannot be polled",
    request: VHOST_USER_SET_VRING_KICK,
    payload: () => encodeVringFile({ index: 0, noFd: false }),
    fds: (fe) => [fe.t.memfd(new ArrayBuffer(8))],
  },
  {
    name: "SET_VRING_CALL of ring 5",
    request: VHOST_USER_SET_VRING_CALL,
    payload: () => encodeVringFile({ index: 5, noFd: false }),
    fds: (fe) => [fe.t.eventfd()],
  },
  {
    name: "SET_VRING_ERR with two fds",
    request: VHOST_USER_SET_VRING_ERR,
    payload: () => encodeVringFile({ index: 0, noFd: false }),
    fds: (fe) => [fe.t.eventfd(), fe.t.eventfd()],
  },
  {
    name: "SET_VRING_ENABLE of 2",
    request: VHOST_USER_SET_VRING_ENABLE,
    payload: () => encodeVringState({ index: 0, num: 2 }),
  },
  {
    name: "GET_VRING_BASE of ring 9",
    request: VHOST_USER_GET_VRING_BASE,
    payload: () => encodeVringState({ index: 9, num: 0 }),
  },
  { name: "GET_VRING_BASE of 0 bytes", request: VHOST_USER_GET_VRING_BASE },
  {
    name: "GET_CONFIG of 300 bytes",
    request: VHOST_USER_GET_CONFIG,
    payload: () => {
      const p = encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(0) });
      new DataView(p.buffer).setUint32(4, 300, true);
      return p;
    },
  },
  {
    name: "GET_CONFIG whose size disagrees with its payload",
    request: VHOST_USER_GET_CONFIG,
    payload: () => encodeConfig({ offset: 0, flags: 0, size: 16, data: new Uint8Array(4) }),
  },
  {
    name: "GET_CONFIG past 256 bytes",
    request: VHOST_USER_GET_CONFIG,
    payload: () => encodeConfig({ offset: 250, flags: 0, data: new Uint8Array(12) }),
  },
  {
    name: "SET_CONFIG from the driver",
    request: VHOST_USER_SET_CONFIG,
    payload: () => encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(4) }),
  },
  { name: "SET_STATUS above 8 bits", request: VHOST_USER_SET_STATUS, payload: () => encodeU64(0x100n) },
  { name: "GET_STATUS with a payload", request: VHOST_USER_GET_STATUS, payload: () => new Uint8Array(8) },
  {
    name: "SET_LOG_BASE (no LOG_SHMFD)",
    request: VHOST_USER_SET_LOG_BASE,
    payload: () => new Uint8Array(16),
    fds: (fe) => [fe.t.memfd(new ArrayBuffer(4096))],
  },
  { name: "SET_BACKEND_REQ_FD", request: VHOST_USER_SET_BACKEND_REQ_FD, fds: (fe) => [fe.t.eventfd()] },
  {
    name: "VRING_KICK (no in-band notifications)",
    request: VHOST_USER_VRING_KICK,
    payload: () => new Uint8Array(8),
  },
  { name: "IOTLB_MSG", request: VHOST_USER_IOTLB_MSG, payload: () => new Uint8Array(32) },
  { name: "request 99", request: 99, fds: (fe) => [fe.t.eventfd()] },
  { name: "request 0", request: 0 },
  {
    name: "a message with 9 fds",
    request: VHOST_USER_SET_VRING_CALL,
    payload: () => encodeVringFile({ index: 0, noFd: false }),
    fds: (fe) => Array.from({ length: 9 }, () => fe.t.eventfd()),
  },
];

/** A connected front-end whose guest has probed the device (so the refusals land on a live device). */
async function live(): Promise<MockFrontEnd> {
  const fe = new MockFrontEnd();
  fe.connect();
  expect((await fe.guest.control(GuestSide.u32s(0x0100, 0, 1, 32), 36)).status).toBe(VIRTIO_SND_S_OK);
  return fe;
}

describe.each(cases)("$name", (c) => {
  it.each([
    { mode: "with NEED_REPLY", flags: NEED_REPLY },
    { mode: "without", flags: VHOST_USER_VERSION },
  ])("is refused $mode, closes its fds, and the device still works", async ({ flags }) => {
    const fe = await live();
    const held = fe.t.heldFds;
    const mappings = fe.t.liveMappings;
    const payload = c.payload?.(fe) ?? new Uint8Array(0);
    const fds = c.fds?.(fe) ?? [];
    const replies = fe.t.deliver(c.request, payload, { fds, flags });

    if (alwaysReplies(c.request)) {
      // The front-end waits for this reply: an empty one says "failed" (GET_CONFIG) or fails its size check.
      expect(replies).toHaveLength(1);
      expect(replies[0]!.payload.length).toBe(0);
    } else if (flags === NEED_REPLY) {
      expect(replies).toHaveLength(1);
      const ack = decodeU64(replies[0]!.payload);
      expect(ack.ok && ack.value).toBe(1n);
    } else {
      expect(replies).toEqual([]);
    }
    for (const r of replies) {
      expect(r.request).toBe(c.request);
      expect(r.flags).toBe(0x5);
    }
    expect(
      fe.log.some((e) => e.level === "warn" && e.message.startsWith(`refused ${requestName(c.request)}`)),
    ).toBe(true);
    expect(fe.t.heldFds).toBe(held);
    expect(fe.t.badCloses).toBe(0);
    expect(fe.t.liveMappings).toBe(mappings);
    expect(fe.t.closed).toBe(false);
    // Nothing changed for the guest.
    expect((await fe.guest.control(GuestSide.u32s(0x0100, 1, 1, 32), 36)).status).toBe(VIRTIO_SND_S_OK);
    expect(fe.backend.device.needsReset).toBe(false);
  });
});

describe("accepted edge cases", () => {
  it("REM_MEM_REG with one fd (old front-ends) closes that fd", async () => {
    const fe = await live();
    const { mmapOffset: _o, ...r } = fe.region;
    const held = fe.t.heldFds;
    fe.send(VHOST_USER_REM_MEM_REG, encodeMemReg({ ...r, mmapOffset: 0n }), {
      fds: [fe.memFd],
      needReply: true,
    });
    expect(fe.t.heldFds).toBe(held);
    expect(fe.t.liveMappings).toBe(0);
  });

  it("SET_CONFIG for a migration restore is accepted (there is nothing to restore)", async () => {
    const fe = await live();
    const read = () =>
      fe.send(VHOST_USER_GET_CONFIG, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(16) }))[0]!
        .payload;
    const before = read();
    const replies = fe.send(
      VHOST_USER_SET_CONFIG,
      encodeConfig({ offset: 0, flags: 1, data: new Uint8Array(12) }),
      { needReply: true },
    );
    // Acknowledged as done (0), and the device's configuration is what it was.
    expect(replies.map((r) => decodeU64(r.payload))).toEqual([{ ok: true, value: 0n }]);
    expect(read()).toEqual(before);
    expect(before.subarray(12).some((b) => b !== 0)).toBe(true);
    // The device goes on as it was: its rings still carry requests.
    expect((await fe.guest.control(GuestSide.u32s(0x0100, 0, 1, 32), 36)).status).toBe(VIRTIO_SND_S_OK);
  });

  it("GET_CONFIG reads zeros past the 16-byte config space, up to 256", async () => {
    const fe = await live();
    const replies = fe.send(
      VHOST_USER_GET_CONFIG,
      encodeConfig({ offset: 8, flags: 0, data: new Uint8Array(248) }),
    );
    expect(replies[0]!.payload.length).toBe(12 + 248);
    expect(replies[0]!.payload.subarray(12 + 8).every((b) => b === 0)).toBe(true);
  });

  it("a call fd replaced closes the old one", async () => {
    const fe = await live();
    const held = fe.t.heldFds;
    const fresh = fe.t.eventfd();
    fe.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: 0, noFd: false }), { fds: [fresh] });
    expect(fe.t.heldFds).toBe(held);
    expect((await fe.guest.control(GuestSide.u32s(0x0100, 0, 1, 32), 36)).status).toBe(VIRTIO_SND_S_OK);
    expect(fe.t.signals(fresh)).toBe(1);
  });

  it("a call fd removed (no-fd flag): completions raise no interrupt", async () => {
    const fe = await live();
    fe.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: 0, noFd: true }));
    const before = fe.t.signals(fe.callFds[0]!);
    expect((await fe.guest.control(GuestSide.u32s(0x0100, 0, 1, 32), 36)).status).toBe(VIRTIO_SND_S_OK);
    expect(fe.t.signals(fe.callFds[0]!)).toBe(before);
  });

  it("the queue count and status answer without REPLY_ACK flags", async () => {
    const fe = await live();
    expect(fe.u64(VHOST_USER_GET_QUEUE_NUM)).toBe(4n);
    expect(Number(fe.u64(VHOST_USER_GET_STATUS)) & 0x0f).toBe(0x0f);
  });

  it("SET_MEM_TABLE replaces the table; ring addresses keep working", async () => {
    const fe = await live();
    fe.send(VHOST_USER_SET_MEM_TABLE, encodeMemTable([fe.region]), { fds: [fe.memFd], needReply: true });
    expect(fe.t.liveMappings).toBe(1);
    expect((await fe.guest.control(GuestSide.u32s(0x0100, 0, 1, 32), 36)).status).toBe(VIRTIO_SND_S_OK);
    expect(USER_BASE).toBeGreaterThan(GUEST_BASE);
  });
});

describe("random messages", () => {
  it("never throw, never leak an fd, and leave the connection open", () => {
    const fe = new MockFrontEnd();
    fe.connect();
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 45 }),
        fc.uint8Array({ maxLength: 80 }),
        fc.integer({ min: 0, max: 3 }),
        fc.boolean(),
        (request, payload, nfds, needReply) => {
          const fds = Array.from({ length: nfds }, () => fe.t.eventfd());
          const flags = VHOST_USER_VERSION | (needReply ? VHOST_USER_NEED_REPLY_MASK : 0);
          // Disconnect-free: RESET_DEVICE and status 0 are fine; a closed connection is not.
          fe.t.deliver(request, payload, { fds, flags });
          expect(fe.t.closed).toBe(false);
          expect(fe.t.badCloses).toBe(0);
          expect(fe.t.heldFds).toBeLessThanOrEqual(12);
        },
      ),
      { numRuns: 2000 },
    );
    fe.t.disconnect();
    expect(fe.t.heldFds).toBe(0);
    expect(fe.t.liveMappings).toBe(0);
  });
});
