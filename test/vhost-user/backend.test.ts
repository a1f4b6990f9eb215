import { describe, expect, it, vi } from "vitest";
import {
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import { decodeSndConfig } from "../../src/spec/structs.js";
import { PcmState } from "../../src/stream/pcm-state.js";
import { BACKEND_PROTOCOL_FEATURES, VhostUserBackend } from "../../src/vhost-user/backend.js";
import {
  VHOST_USER_ADD_MEM_REG,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_MAX_MEM_SLOTS,
  VHOST_USER_GET_PROTOCOL_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_GET_STATUS,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_RESET_DEVICE,
  VHOST_USER_PROTOCOL_F_STATUS,
  VHOST_USER_REM_MEM_REG,
  VHOST_USER_RESET_DEVICE,
  VHOST_USER_SET_FEATURES,
  VHOST_USER_SET_MEM_TABLE,
  VHOST_USER_SET_STATUS,
  VHOST_USER_SET_VRING_BASE,
  VHOST_USER_SET_VRING_ENABLE,
  VHOST_USER_SET_VRING_ERR,
  VHOST_USER_SET_VRING_KICK,
  VHOST_USER_SET_VRING_NUM,
  decodeU64,
  encodeMemReg,
  encodeMemTable,
  encodeU64,
  encodeVringFile,
  encodeVringState,
} from "../../src/vhost-user/messages.js";
import { windowBytesFor } from "../../src/vhost-user/memory-table.js";
import { MockTransport } from "../../src/vhost-user/mock-transport.js";
import { GUEST_BASE, GuestSide, USER_BASE, signal } from "./guest-side.js";
import { MockFrontEnd } from "./mock-front-end.js";

const bit = (n: number): bigint => 1n << BigInt(n);
const S16_STEREO_48K = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000 };
const PERIOD = 1920; // 10 ms

const without =
  (...features: number[]) =>
  (offered: bigint): bigint =>
    features.reduce((f, n) => f & ~bit(n), offered);

/** Plays `data` through stream 0 on the virtual clock; returns the TX completions. */
async function playback(fe: MockFrontEnd, data: Uint8Array) {
  const g = fe.guest;
  expect(await g.setParams(0, { ...S16_STEREO_48K, bufferBytes: data.length, periodBytes: PERIOD })).toBe(
    VIRTIO_SND_S_OK,
  );
  expect(await g.pcm("prepare", 0)).toBe(VIRTIO_SND_S_OK);
  const tokens = g.queueTx(0, data, PERIOD);
  expect(await g.pcm("start", 0)).toBe(VIRTIO_SND_S_OK);
  const done: ReturnType<typeof g.reapTx> = [];
  fe.clock.runUntil(() => {
    done.push(...g.reapTx());
    return done.length === tokens.length;
  });
  expect(await g.pcm("stop", 0)).toBe(VIRTIO_SND_S_OK);
  expect(await g.pcm("release", 0)).toBe(VIRTIO_SND_S_OK);
  return done;
}

describe("a QEMU-like negotiation", () => {
  it("answers vhost_user_backend_init and vhost_dev_init as QEMU 10 expects", () => {
    const fe = new MockFrontEnd();
    const features = fe.u64(VHOST_USER_GET_FEATURES);
    expect(features & bit(VHOST_USER_F_PROTOCOL_FEATURES)).not.toBe(0n);
    expect(features & bit(VIRTIO_F_VERSION_1)).not.toBe(0n);
    expect(features & bit(VIRTIO_F_EVENT_IDX)).not.toBe(0n);
    expect(features & bit(VIRTIO_F_INDIRECT_DESC)).not.toBe(0n);
    expect(features).toBe(fe.backend.device.deviceFeatures | bit(VHOST_USER_F_PROTOCOL_FEATURES));

    const protocol = fe.u64(VHOST_USER_GET_PROTOCOL_FEATURES);
    expect(protocol).toBe(BACKEND_PROTOCOL_FEATURES);
    // QEMU's vhost-user-snd requires CONFIG (it has a config space); MQ gives GET_QUEUE_NUM.
    for (const f of [
      VHOST_USER_PROTOCOL_F_MQ,
      VHOST_USER_PROTOCOL_F_REPLY_ACK,
      VHOST_USER_PROTOCOL_F_CONFIG,
      VHOST_USER_PROTOCOL_F_RESET_DEVICE,
      VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
      VHOST_USER_PROTOCOL_F_STATUS,
    ])
      expect(protocol & bit(f)).not.toBe(0n);
    fe.t.sent.length = 0;
    fe.init();
    expect(fe.u64(VHOST_USER_GET_QUEUE_NUM)).toBe(4n);
    expect(fe.u64(VHOST_USER_GET_MAX_MEM_SLOTS)).toBe(32n);
    expect(fe.backend.negotiatedProtocolFeatures).toBe(BACKEND_PROTOCOL_FEATURES);

    // vub_get_config with controls=off asks for 12 bytes, with controls=on 16.
    const cfg12 = fe.getConfig(12);
    expect(cfg12.length).toBe(12);
    const cfg = decodeSndConfig(new DataView(fe.getConfig(16).buffer), 0);
    expect(cfg).toEqual({ jacks: 2, streams: 2, chmaps: 6, controls: 0 });
    expect(fe.log.filter((e) => e.level === "warn" || e.level === "error")).toEqual([]);
  });

  const variants = [
    { name: "split ring, EVENT_IDX, ADD_MEM_REG", packed: false, eventIdx: true },
    { name: "split ring, no EVENT_IDX", packed: false, eventIdx: false },
    { name: "packed ring", packed: true, eventIdx: true },
    { name: "packed ring, no EVENT_IDX", packed: true, eventIdx: false },
    {
      name: "SET_MEM_TABLE, no REPLY_ACK, no STATUS",
      packed: false,
      eventIdx: true,
      protocolFeatures: without(
        VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
        VHOST_USER_PROTOCOL_F_REPLY_ACK,
        VHOST_USER_PROTOCOL_F_STATUS,
      ),
    },
    { name: "guest RAM at an offset in its memfd", packed: false, eventIdx: true, mmapOffset: 0x30000 },
    {
      name: "without VHOST_USER_F_PROTOCOL_FEATURES acked",
      packed: false,
      eventIdx: true,
      ackProtocolFeatures: false,
    },
  ];

  it.each(variants)("then serves the Linux driver: probe and playback ($name)", async (v) => {
    const fe = new MockFrontEnd(v);
    const calls = fe.callFds.map((fd) => fe.t.signals(fd));
    fe.connect();
    for (let i = 0; i < 4; i++) expect(fe.backend.ringStarted(i)).toBe(true);
    expect(fe.backend.device.negotiatedFeatures & bit(VIRTIO_F_RING_PACKED)).toBe(
      v.packed ? bit(VIRTIO_F_RING_PACKED) : 0n,
    );

    fe.guest.queueEventBuffers(8);
    const info = await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    expect(info.jacks).toHaveLength(2);
    expect(info.streams.map((s) => s.direction)).toEqual([VIRTIO_SND_D_OUTPUT, VIRTIO_SND_D_INPUT]);
    expect(info.chmaps).toHaveLength(6);
    // Each control answer raised the control queue's interrupt through its call eventfd.
    expect(fe.t.signals(fe.callFds[VIRTIO_SND_VQ_CONTROL]!)).toBeGreaterThan(calls[VIRTIO_SND_VQ_CONTROL]!);

    const data = signal(PERIOD * 6, 3);
    const done = await playback(fe, data);
    expect(done).toHaveLength(6);
    for (const c of done) {
      expect(c.status).toBe(VIRTIO_SND_S_OK);
      expect(c.used).toBe(8);
    }
    const pb = fe.audio.playbacksOf(0);
    expect(pb).toHaveLength(1);
    expect(Buffer.from(pb[0]!.data.bytes()).equals(Buffer.from(data))).toBe(true);
    expect(fe.t.signals(fe.callFds[VIRTIO_SND_VQ_TX]!)).toBeGreaterThan(0);
    expect(fe.backend.device.needsReset).toBe(false);
    expect(fe.log.filter((e) => e.level === "warn" || e.level === "error")).toEqual([]);
  });

  it("maps guest RAM in pieces when asked, and buffers that straddle pieces still play", async () => {
    const fe = new MockFrontEnd({ backend: { mapChunkBytes: 65536 }, memorySize: 1024 * 1024 });
    fe.connect();
    expect(fe.backend.memory.regionCount).toBe(16);
    const info = await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    expect(info.streams).toHaveLength(2);
    // Periods of 1920 bytes at 64-byte alignment: some cross a 64 KiB boundary.
    const data = signal(PERIOD * 20, 9);
    const done = await playback(fe, data);
    expect(done.every((c) => c.status === VIRTIO_SND_S_OK)).toBe(true);
    expect(Buffer.from(fe.audio.playbacksOf(0)[0]!.data.bytes()).equals(Buffer.from(data))).toBe(true);
  });
});

describe("ring start rules", () => {
  it("with VHOST_USER_F_PROTOCOL_FEATURES, a ring starts only once enabled; kicks while disabled wait", async () => {
    const fe = new MockFrontEnd();
    fe.init();
    fe.send(VHOST_USER_SET_FEATURES, encodeU64(fe.guestFeatures() | bit(VHOST_USER_F_PROTOCOL_FEATURES)));
    fe.send(VHOST_USER_ADD_MEM_REG, encodeMemReg(fe.region), { fds: [fe.memFd], needReply: true });
    for (let i = 0; i < 4; i++) fe.startRing(i);
    for (let i = 0; i < 4; i++) expect(fe.backend.ringStarted(i)).toBe(false);
    fe.send(VHOST_USER_SET_VRING_ENABLE, encodeVringState({ index: 0, num: 1 }), { needReply: true });
    expect(fe.backend.ringStarted(0)).toBe(true);

    // Disable: a control request waits, unanswered, until the ring is enabled again.
    fe.send(VHOST_USER_SET_VRING_ENABLE, encodeVringState({ index: 0, num: 0 }), { needReply: true });
    const pending = fe.guest.control(GuestSide.u32s(0x0100, 0, 1, 32), 36);
    const q = fe.guest.queues[VIRTIO_SND_VQ_CONTROL]!;
    expect(q.freeCount).toBeLessThan(64);
    fe.send(VHOST_USER_SET_VRING_ENABLE, encodeVringState({ index: 0, num: 1 }), { needReply: true });
    expect((await pending).status).toBe(VIRTIO_SND_S_OK);
  });

  it("without it, SET_FEATURES enables every ring and a ring starts with its kick", () => {
    const fe = new MockFrontEnd({ ackProtocolFeatures: false });
    fe.init();
    fe.send(VHOST_USER_SET_FEATURES, encodeU64(fe.guestFeatures()));
    fe.send(VHOST_USER_SET_MEM_TABLE, encodeMemTable([fe.region]), { fds: [fe.memFd] });
    fe.startRing(1);
    expect(fe.backend.ringStarted(1)).toBe(true);
    expect(fe.backend.ringStarted(0)).toBe(false);
  });

  it("a ring whose kick has no fd is polled", async () => {
    const fe = new MockFrontEnd();
    fe.connect();
    fe.send(VHOST_USER_SET_VRING_KICK, encodeVringFile({ index: 0, noFd: true }));
    expect(fe.t.watching(0)).toBe(true);
    // The guest kicks nothing (no fd): the poll tick finds the request.
    const q = fe.guest.queues[0]!;
    const req = fe.guest.alloc(16, 16);
    const resp = fe.guest.alloc(64, 16);
    fe.guest.memory.write(req, GuestSide.u32s(0x0100, 0, 1, 32), 0, 16);
    q.add([{ addr: req, len: 16 }], [{ addr: resp, len: 36 }]);
    expect(q.getUsed()).toBeNull();
    fe.t.pollTick(0);
    expect(q.getUsed()).not.toBeNull();
  });

  it("a ring is not started with a split size that is not a power of 2, and its error fd is signalled", () => {
    const fe = new MockFrontEnd();
    fe.connect();
    fe.vringBase(0);
    fe.send(VHOST_USER_SET_VRING_ERR, encodeVringFile({ index: 0, noFd: false }), { fds: [fe.errFds[0]!] });
    fe.send(VHOST_USER_SET_VRING_NUM, encodeVringState({ index: 0, num: 48 }));
    fe.send(VHOST_USER_SET_VRING_KICK, encodeVringFile({ index: 0, noFd: false }), { fds: [fe.kickFds[0]!] });
    expect(fe.backend.ringStarted(0)).toBe(false);
    expect(fe.t.signals(fe.errFds[0]!)).toBeGreaterThan(0);
    expect(fe.log.some((e) => e.level === "warn" && /power of 2/.test(e.message))).toBe(true);
  });
});

describe("GET_VRING_BASE", () => {
  it("stops a split ring and returns the next available index; the ring restarts from it", async () => {
    const fe = new MockFrontEnd();
    fe.connect();
    fe.guest.queueEventBuffers(8);
    await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    await fe.guest.control(GuestSide.u32s(0x0100, 0, 1, 32), 36);
    const bases = fe.stop();
    expect(bases[VIRTIO_SND_VQ_CONTROL]).toBe(4);
    // The device takes an event buffer only when it has an event: none is held.
    expect(bases[VIRTIO_SND_VQ_EVENT]).toBe(0);
    expect(bases[VIRTIO_SND_VQ_TX]).toBe(0);
    for (let i = 0; i < 4; i++) expect(fe.backend.ringStarted(i)).toBe(false);
    // GET_VRING_BASE forgot the notifiers: only the memory fd is gone too (closed after mapping).
    expect(fe.t.heldFds).toBe(0);

    // vhost_dev_start again, from those bases (the guest's rings keep going).
    fe.start({ bases });
    const r = await fe.guest.control(GuestSide.u32s(0x0100, 1, 1, 32), 36);
    expect(r.status).toBe(VIRTIO_SND_S_OK);
    expect(fe.vringBase(VIRTIO_SND_VQ_CONTROL)).toBe(5);
  });

  it("returns the packed form: avail index and wrap counter, and the same for used in the high half", async () => {
    const fe = new MockFrontEnd({ packed: true, queueSize: 8 });
    fe.connect();
    // 11 requests of 2 descriptors on an 8-slot ring: 22 slots, the wrap counter flipped twice.
    for (let i = 0; i < 11; i++) await fe.guest.control(GuestSide.u32s(0x0100, 0, 1, 32), 36);
    const base = fe.vringBase(VIRTIO_SND_VQ_CONTROL);
    const low = (22 % 8) | (1 << 15); // slot 6, wrap counter back to 1
    expect(base & 0xffff).toBe(low);
    expect(base >>> 16).toBe(low);
    expect(fe.backend.ringStarted(VIRTIO_SND_VQ_CONTROL)).toBe(false);
    // A ring that never started returns what SET_VRING_BASE set.
    fe.send(VHOST_USER_SET_VRING_BASE, encodeVringState({ index: 0, num: 0x8003 }));
    expect(fe.vringBase(VIRTIO_SND_VQ_CONTROL)).toBe(0x8003);
  });
});

describe("guest memory, a window at a time", () => {
  it("a session exposes only the windows the rings and buffers touch, and the table unmaps them all", async () => {
    const fe = new MockFrontEnd({ memorySize: 64 * 1024 * 1024 });
    fe.connect();
    await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    await fe.guest.setParams(0, { ...S16_STEREO_48K, bufferBytes: 4 * 1920, periodBytes: 1920 });
    await fe.guest.pcm("prepare", 0);
    const made = fe.t.windowsMade;
    expect(made).toBeGreaterThan(0);
    expect(made).toBeLessThanOrEqual(4); // of 64 windows of 1 MiB
    expect(fe.backend.memory.windowCount).toBe(made);
    expect(windowBytesFor(64 * 1024 * 1024)).toBe(1 << 20);
    // At most 4096 windows per region, in powers of two.
    expect(windowBytesFor(2 ** 32)).toBe(1 << 20);
    expect(windowBytesFor(2 ** 32 + 1)).toBe(1 << 21);
    expect(windowBytesFor(2 ** 40)).toBe(2 ** 28);
    fe.t.disconnect();
    expect(fe.t.liveMappings).toBe(0);
    expect(fe.backend.memory.windowCount).toBe(0);
  });
});

describe("device reset", () => {
  async function prepared(options: ConstructorParameters<typeof MockFrontEnd>[0] = {}) {
    const fe = new MockFrontEnd(options);
    fe.connect();
    await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    await fe.guest.setParams(0, { ...S16_STEREO_48K, bufferBytes: PERIOD * 4, periodBytes: PERIOD });
    await fe.guest.pcm("prepare", 0);
    expect(fe.backend.device.streams[0]!.state).toBe(PcmState.Prepared);
    return fe;
  }

  it("SET_STATUS 0 (QEMU's vhost_dev_stop) resets the streams and forgets the rings", async () => {
    const fe = await prepared();
    fe.stop();
    expect(fe.backend.device.streams[0]!.state).toBe(PcmState.ParamsSet); // reset: no voice, no messages, parameters kept
    expect(fe.u64(VHOST_USER_GET_STATUS)).toBe(0n);
    // The guest driver starts over on fresh rings.
    const fe2 = new MockFrontEnd({}, undefined);
    expect(fe2.backend).not.toBe(fe.backend);
    fe.start();
    expect(fe.backend.ringStarted(0)).toBe(true);
  });

  it("RESET_DEVICE resets the device and closes the ring notifiers", async () => {
    const fe = await prepared();
    fe.send(VHOST_USER_RESET_DEVICE, undefined, { needReply: true });
    expect(fe.backend.device.streams[0]!.state).toBe(PcmState.ParamsSet); // reset: no voice, no messages, parameters kept
    for (let i = 0; i < 4; i++) expect(fe.backend.ringStarted(i)).toBe(false);
    expect(fe.t.heldFds).toBe(0);
    expect(fe.t.liveMappings).toBe(1);
  });

  it.each([
    {
      name: "without STATUS",
      options: { protocolFeatures: without(VHOST_USER_PROTOCOL_F_STATUS) },
      status0: true,
    },
    { name: "with STATUS but no status 0 (QEMU 10's vhost-user-snd)", options: {}, status0: false },
  ])("$name, every ring stopped then SET_FEATURES again is a restart: the device resets", async (v) => {
    const fe = await prepared(v.options);
    fe.stop({ status0: v.status0 });
    expect(fe.backend.device.streams[0]!.state).toBe(PcmState.Prepared);
    const from = fe.log.length;
    fe.start();
    // The reset happens at SET_FEATURES. (What the stream does next depends on the
    // control requests this front-end's rings, restarted at base 0, still offer.)
    expect(fe.log.slice(from).some((e) => /device reset \(restart/.test(e.message))).toBe(true);
    expect(fe.backend.device.streams[0]!.pendingCount).toBe(0);
  });

  it("a VM stop with I/O in flight: GET_VRING_BASE hands the buffers back first, so its base is exact", async () => {
    const fe = await prepared();
    const g = fe.guest;
    const tokens = g.queueTx(0, signal(PERIOD * 3), PERIOD);
    expect(await g.pcm("start", 0)).toBe(VIRTIO_SND_S_OK);
    expect(fe.backend.device.queue(VIRTIO_SND_VQ_TX)!.inFlight).toBe(3);
    const calls = fe.t.signals(fe.callFds[VIRTIO_SND_VQ_TX]!);
    const bases = fe.stop({ status0: false });
    expect(bases[VIRTIO_SND_VQ_TX]).toBe(3);
    const back = g.reapTx();
    expect(back.map((c) => c.token)).toEqual(tokens);
    expect(back.every((c) => c.status === VIRTIO_SND_S_IO_ERR)).toBe(true);
    expect(fe.t.signals(fe.callFds[VIRTIO_SND_VQ_TX]!)).toBeGreaterThan(calls);
    // QEMU resumes the rings where they stopped; the device was reset, the driver sets the stream up again.
    fe.start({ bases });
    expect(fe.log.some((e) => /buffers were in flight/.test(e.message))).toBe(false);
    const data = signal(PERIOD * 2, 4);
    const done = await playback(fe, data);
    expect(done.every((c) => c.status === VIRTIO_SND_S_OK)).toBe(true);
    const pb = fe.audio.playbacksOf(0);
    expect(Buffer.from(pb[pb.length - 1]!.data.bytes()).equals(Buffer.from(data))).toBe(true);
  });

  it("a front-end resuming rings whose buffers a lost connection held: the device takes them again", async () => {
    const fe = await prepared();
    const g = fe.guest;
    const tokens = g.queueTx(0, signal(PERIOD * 3), PERIOD);
    expect(await g.pcm("start", 0)).toBe(VIRTIO_SND_S_OK);
    // The connection drops with three TX buffers taken and not returned.
    fe.t.disconnect();
    expect(g.reapTx()).toEqual([]);
    // A new connection resumes the same rings at avail index 3 (the used index in memory is still 0).
    const fe2 = new MockFrontEnd({ sameGuestAs: fe }, fe);
    fe2.init();
    fe2.start({ bases: [6, 0, 3, 0] });
    expect(
      fe2.log.some((e) =>
        /ring 2: 3 buffers were in flight when it stopped; taking them again from 0/.test(e.message),
      ),
    ).toBe(true);
    // They come back (IO_ERR: the stream was reset), in order, and the ring goes on.
    const back = g.reapTx();
    expect(back.map((c) => c.token)).toEqual(tokens);
    expect(back.every((c) => c.status === VIRTIO_SND_S_IO_ERR)).toBe(true);
  });

  it("a broken ring signals the error fds and GET_STATUS reports NEEDS_RESET", () => {
    const fe = new MockFrontEnd();
    fe.connect();
    // The available index jumps by more than the ring size: the ring is unusable.
    const l = fe.guest.queues[0]!.layout;
    fe.guest.memory.writeU16(l.driverAddr + 2, 1000);
    fe.t.kick(fe.kickFds[0]!);
    expect(fe.backend.device.needsReset).toBe(true);
    expect(fe.t.signals(fe.errFds[0]!)).toBe(1);
    expect(Number(fe.u64(VHOST_USER_GET_STATUS)) & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(
      VIRTIO_CONFIG_S_NEEDS_RESET,
    );
    expect(fe.log.some((e) => e.level === "error")).toBe(true);
    fe.send(VHOST_USER_SET_STATUS, encodeU64(0n));
    expect(fe.backend.device.needsReset).toBe(false);
  });
});

describe("disconnect", () => {
  it("resets the device, closes every fd, unmaps the memory, and the next front-end starts afresh", async () => {
    const fe = new MockFrontEnd();
    fe.connect();
    fe.guest.queueEventBuffers(4);
    await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    await fe.guest.setParams(0, { ...S16_STEREO_48K, bufferBytes: PERIOD * 4, periodBytes: PERIOD });
    await fe.guest.pcm("prepare", 0);
    fe.guest.queueTx(0, signal(PERIOD * 2), PERIOD);
    await fe.guest.pcm("start", 0);
    expect(fe.t.heldFds).toBe(12);
    expect(fe.t.liveMappings).toBe(1);

    fe.t.disconnect();
    expect(fe.backend.connected).toBe(false);
    expect(fe.t.heldFds).toBe(0);
    expect(fe.t.badCloses).toBe(0);
    expect(fe.t.liveMappings).toBe(0);
    expect(fe.backend.memory.regionCount).toBe(0);
    expect(fe.backend.device.streams[0]!.state).toBe(PcmState.ParamsSet); // reset: no voice, no messages, parameters kept
    expect(fe.backend.negotiatedProtocolFeatures).toBe(0n);
    // A timer the voice had armed fires into the reset device harmlessly.
    fe.clock.advance(100e6);

    const fe2 = new MockFrontEnd({ packed: true }, fe);
    fe2.connect();
    const info = await fe2.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    expect(info.streams).toHaveLength(2);
    const data = signal(PERIOD * 3, 5);
    const done = await playback(fe2, data);
    expect(done.every((c) => c.status === VIRTIO_SND_S_OK)).toBe(true);
    const pb = fe2.audio.playbacksOf(0);
    expect(Buffer.from(pb[pb.length - 1]!.data.bytes()).equals(Buffer.from(data))).toBe(true);
  });

  it("a ring whose start throws after taking its kick fd still closes that fd exactly once", () => {
    // Without protocol features SET_FEATURES enables every ring, so SET_VRING_KICK starts it.
    const fe = new MockFrontEnd({ ackProtocolFeatures: false });
    vi.spyOn(fe.backend.device, "notify").mockImplementation(() => {
      throw new Error("notify failed");
    });
    fe.connect();
    expect(fe.backend.ringStarted(0)).toBe(true);
    expect(fe.log.some((e) => e.level === "warn" && e.message.includes("notify failed"))).toBe(true);
    fe.t.disconnect();
    expect(fe.t.heldFds).toBe(0);
    expect(fe.t.badCloses).toBe(0);
  });

  it("refuses a second front-end while one is attached", () => {
    const fe = new MockFrontEnd();
    expect(() => fe.backend.attach(new MockTransport())).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_STATE" }),
    );
  });

  it("REM_MEM_REG unmaps the region it names", () => {
    const fe = new MockFrontEnd();
    fe.connect();
    expect(fe.t.liveMappings).toBe(1);
    const { mmapOffset: _ignored, ...rest } = fe.region;
    fe.send(VHOST_USER_REM_MEM_REG, encodeMemReg({ ...rest, mmapOffset: 0n }), { needReply: true });
    expect(fe.t.liveMappings).toBe(0);
    expect(fe.backend.memory.regionCount).toBe(0);
  });
});

describe("options", () => {
  it("refuses a map chunk that is not a multiple of 64 KiB", () => {
    const fe = new MockFrontEnd();
    expect(() => new VhostUserBackend({ backend: fe.audio, clock: fe.clock, mapChunkBytes: 1000 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_CONFIG" }),
    );
    expect(() => new VhostUserBackend({ backend: fe.audio, clock: fe.clock, maxMemSlots: 0 })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_CONFIG" }),
    );
  });

  it("NEED_REPLY without REPLY_ACK negotiated gets no reply", () => {
    const fe = new MockFrontEnd({ protocolFeatures: without(VHOST_USER_PROTOCOL_F_REPLY_ACK) });
    fe.init();
    const replies = fe.send(VHOST_USER_SET_FEATURES, encodeU64(fe.guestFeatures()), { flags: 0x1 | 0x8 });
    expect(replies).toEqual([]);
    const ack = decodeU64(new Uint8Array(8));
    expect(ack.ok).toBe(true);
  });

  it("addresses are translated through the user addresses of the table", async () => {
    const fe = new MockFrontEnd();
    fe.connect();
    const l = fe.guest.queues[0]!.layout;
    expect(GuestSide.userAddr(l.descAddr)).toBe(BigInt(USER_BASE + (l.descAddr - GUEST_BASE)));
    expect((await fe.guest.control(GuestSide.u32s(0x0100, 0, 2, 32), 68)).status).toBe(VIRTIO_SND_S_OK);
  });
});
