/**
 * The vhost-user target: an input is a front-end's life on the message layer
 * of VhostUserBackend, over the MockTransport (whose fake fds show leaks and
 * double closes). Usually it begins with a session set up as QEMU does it;
 * then come messages of every request type with payloads and fds well-formed
 * or not, kicks, guest traffic on the rings, clock ticks, disconnects and
 * reconnects. After every step: nothing thrown, no internal error, replies
 * well-formed, fds and mappings bounded (and none left after a disconnect),
 * the device's memory bounded, no access outside guest memory, no hang.
 */
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import type { DriverQueue } from "../../src/driver/driver-queue.js";
import { PackedDriverQueue } from "../../src/driver/packed-driver.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { VirtioSndError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_TX,
  PCM_RATE_HZ,
} from "../../src/spec/constants.js";
import { VhostUserBackend } from "../../src/vhost-user/backend.js";
import {
  VHOST_USER_ADD_MEM_REG,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_MAX_MEM_SLOTS,
  VHOST_USER_GET_PROTOCOL_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_GET_STATUS,
  VHOST_USER_GET_VRING_BASE,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_STATUS,
  VHOST_USER_REM_MEM_REG,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_RESET_DEVICE,
  VHOST_USER_RESET_OWNER,
  VHOST_USER_SET_CONFIG,
  VHOST_USER_SET_FEATURES,
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
  type MemoryRegionDesc,
  alwaysReplies,
  encodeConfig,
  encodeMemReg,
  encodeMemTable,
  encodeU64,
  encodeVringAddr,
  encodeVringFile,
  encodeVringState,
} from "../../src/vhost-user/messages.js";
import { MockTransport, type SentMessage } from "../../src/vhost-user/mock-transport.js";
import { ByteReader, opcodeTable } from "./bytes.js";
import { CARDS, describe, deviceMemoryProblem, rootCause } from "./device-target.js";
import type { Failure, FuzzTarget } from "./engine.js";

const RAM = 256 * 1024;
/** Guest RAM sits at this offset of its memory file, so mmap offsets matter. */
const FILE_OFFSET = 64 * 1024;
const GUEST_BASE = 0x4000_0000;
const USER_BASE = 0x7f40_0000_0000;
const QUEUE_AREA = 32 * 1024;
const DATA_BASE = 128 * 1024;
const MAP_CHUNK = 64 * 1024;
const HANG_MS = 1000;
const MAX_ACTIONS = 300;
/** Kick, call and error fds of four rings: all a back-end may hold between messages. */
const MAX_HELD_FDS = 12;

const bit = (n: number): bigint => 1n << BigInt(n);
const MEMORY_METHODS = [
  "read",
  "write",
  "fill",
  "readU8",
  "readU16",
  "readU32",
  "readU64",
  "writeU8",
  "writeU16",
  "writeU32",
  "writeU64",
  "view",
] as const;
/** Requests the back-end refuses without a state change: the rings stay as the session made them. */
const HARMLESS = new Set([
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_PROTOCOL_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_GET_MAX_MEM_SLOTS,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_STATUS,
  VHOST_USER_SET_CONFIG,
  VHOST_USER_SET_OWNER,
  6,
  7,
  19,
  20,
  21,
  22,
  23,
  26,
  27,
  28,
  29,
  30,
  31,
  32,
  33,
  35,
  41,
  42,
  43,
]);

const ACTIONS = ["random", "structured", "kick", "guest", "clock", "reconnect", "restart-ring"] as const;
const OPCODES = opcodeTable([5, 10, 3, 6, 3, 1, 1]);

class Abort {}

interface Ring {
  driver: DriverQueue;
  pending: Set<number>;
}

export class VhostUserTarget implements FuzzTarget {
  readonly name = "vhost-user";
  trace = false;
  private readonly file = new ArrayBuffer(FILE_OFFSET + RAM);
  private readonly ramBytes = new Uint8Array(this.file, FILE_OFFSET, RAM);
  private readonly guestMem = new FlatMemory(this.ramBytes, GUEST_BASE);

  private r = new ByteReader(new Uint8Array(0));
  private clock = new VirtualClock();
  private audio = new MemoryBackend({ clock: this.clock });
  private backend!: VhostUserBackend;
  private t = new MockTransport();
  private fds = { mem: 0, small: 0, kick: [0], call: [0], err: [0] };
  private failure: Failure | null = null;
  private outside: string | null = null;
  private note: (f: number) => void = () => undefined;
  private maxSlots = 32;
  /** The session's rings as the driver models built them, while no message changed them. */
  private rings: (Ring | null)[] = [];
  private packed = false;
  private memoryMoved = false;
  private eventIdx = false;

  run(input: Uint8Array, note?: (feature: number) => void): Failure | null {
    this.note = note ?? (() => undefined);
    this.failure = null;
    this.outside = null;
    this.memoryMoved = false;
    try {
      this.setup(input);
      let actions = 0;
      while (!this.r.done && actions++ < MAX_ACTIONS) {
        const op = OPCODES[this.r.u8()]!;
        this.note(op);
        if (this.trace) console.log(`[${this.r.pos}] ${ACTIONS[op]}`);
        const before = performance.now();
        try {
          this.act(op);
        } catch (err) {
          if (err instanceof Abort) throw err;
          this.fail("exception", `${ACTIONS[op]}: ${describe(err)}`);
        }
        this.check(ACTIONS[op]!);
        const took = performance.now() - before;
        if (took > HANG_MS) this.fail("hang", `${ACTIONS[op]} took ${took.toFixed(0)} ms`);
      }
      this.disconnect();
    } catch (err) {
      if (!(err instanceof Abort)) return { invariant: "harness", message: describe(err) };
    }
    return this.failure;
  }

  private fail(invariant: string, message: string): never {
    this.record(invariant, message);
    throw new Abort();
  }

  private record(invariant: string, message: string): void {
    this.failure ??= { invariant, message };
  }

  // ---- setup ---------------------------------------------------------------------------------

  private setup(input: Uint8Array): void {
    this.r = new ByteReader(input);
    const r = this.r;
    new Uint8Array(this.file).fill(0);
    this.clock = new VirtualClock();
    this.audio = new MemoryBackend({ clock: this.clock });
    const card = CARDS[r.below(CARDS.length)]!;
    this.maxSlots = r.u8() % 4 === 3 ? 1 + r.below(8) : 32;
    this.backend = new VhostUserBackend({
      backend: this.audio,
      clock: this.clock,
      config: card.config,
      packed: r.u8() % 4 !== 3,
      maxMemSlots: this.maxSlots,
      mapChunkBytes: MAP_CHUNK,
      log: (e) => {
        if (this.trace) console.log(`  ${e.level}: ${e.message}`);
        this.note(0x100 + (e.message.length & 0xff));
        if (e.message.includes("internal error")) this.record("internal-error", e.message);
      },
    });
    this.watchDevice();
    this.rings = [];
    this.connect();
    if (r.u8() % 4 !== 3) this.session();
  }

  /** Records accesses outside the memory table, and needs-resets that come from a bug rather than the guest. */
  private watchDevice(): void {
    const mem = this.backend.memory;
    const methods = mem as unknown as Record<string, (...a: unknown[]) => unknown>;
    for (const name of MEMORY_METHODS) {
      const orig = methods[name]!.bind(mem);
      const ranged = name === "read" || name === "write" || name === "fill" || name === "view";
      const size = name.endsWith("8") ? 1 : name.endsWith("16") ? 2 : name.endsWith("32") ? 4 : 8;
      methods[name] = (...a: unknown[]) => {
        // read/write(addr, buf, off, len), fill(addr, len, v), view(addr, len), the rest (addr[, value])
        const len = (name === "read" || name === "write" ? a[3] : ranged ? a[1] : size) as number;
        if (!mem.contains(a[0] as number, len)) this.outside ??= `${name} ${len} bytes at ${String(a[0])}`;
        return orig(...a);
      };
    }
    const device = this.backend.device as unknown as { fatal: (err: unknown) => void };
    const fatal = device.fatal.bind(device);
    device.fatal = (err: unknown) => {
      const root = rootCause(err);
      if (!(root instanceof VirtioSndError))
        this.record("internal-error", `needs-reset from ${describe(root)}`);
      fatal(err);
    };
  }

  private connect(): void {
    this.t = new MockTransport();
    const t = this.t;
    this.fds = {
      mem: t.memfd(this.file),
      small: t.memfd(new ArrayBuffer(4096)),
      kick: [t.eventfd(), t.eventfd(), t.eventfd(), t.eventfd()],
      call: [t.eventfd(), t.eventfd(), t.eventfd(), t.eventfd()],
      err: [t.eventfd(), t.eventfd(), t.eventfd(), t.eventfd()],
    };
    this.backend.attach(t);
  }

  private disconnect(): void {
    this.t.disconnect();
    const t = this.t;
    if (t.heldFds !== 0) this.fail("fd-leak", `${t.heldFds} fds still held after a disconnect`);
    if (t.liveMappings !== 0) this.fail("fd-leak", `${t.liveMappings} mappings left after a disconnect`);
    if (this.backend.connected)
      this.fail("fd-leak", "the back-end still has its front-end after a disconnect");
    this.rings = [];
  }

  private send(request: number, payload: Uint8Array, fds: number[] = [], needReply = false): SentMessage[] {
    const flags = VHOST_USER_VERSION | (needReply ? VHOST_USER_NEED_REPLY_MASK : 0);
    return this.deliver(request, payload, fds, flags);
  }

  private deliver(request: number, payload: Uint8Array, fds: number[], flags: number): SentMessage[] {
    const before = performance.now();
    const replies = this.t.deliver(request, payload, { fds, flags });
    const took = performance.now() - before;
    if (took > HANG_MS) this.fail("hang", `request ${request} took ${took.toFixed(0)} ms`);
    this.checkReplies(request, flags, replies);
    this.note(
      0x1000 +
        (request & 0xff) * 4 +
        Math.min(replies.length, 1) * 2 +
        (replies[0]?.payload.length === 8 ? 1 : 0),
    );
    return replies;
  }

  /** QEMU's order: backend init, device init, then vhost_dev_start (mock-front-end.ts does the same). */
  private session(): void {
    const r = this.r;
    const features = this.u64(VHOST_USER_GET_FEATURES) ?? 0n;
    const offered = this.u64(VHOST_USER_GET_PROTOCOL_FEATURES) ?? 0n;
    let protocol = offered;
    if (r.u8() % 4 === 3) protocol &= BigInt(r.u32());
    this.send(VHOST_USER_SET_PROTOCOL_FEATURES, encodeU64(protocol));
    if (protocol & bit(VHOST_USER_PROTOCOL_F_MQ)) this.u64(VHOST_USER_GET_QUEUE_NUM);
    const slots = (protocol & bit(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) !== 0n;
    if (slots) this.u64(VHOST_USER_GET_MAX_MEM_SLOTS);
    this.send(VHOST_USER_SET_OWNER, new Uint8Array(0));
    for (let i = 0; i < 4; i++)
      this.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: i, noFd: false }), [this.fds.call[i]!]);
    this.send(VHOST_USER_GET_CONFIG, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(16) }));
    let guest = bit(VIRTIO_F_VERSION_1);
    for (const b of [VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED])
      if (r.bool()) guest |= bit(b);
    guest &= features;
    this.packed = (guest & bit(VIRTIO_F_RING_PACKED)) !== 0n;
    this.eventIdx = (guest & bit(VIRTIO_F_EVENT_IDX)) !== 0n;
    this.send(VHOST_USER_SET_FEATURES, encodeU64(guest | bit(VHOST_USER_F_PROTOCOL_FEATURES)));
    const status = (protocol & bit(VHOST_USER_PROTOCOL_F_STATUS)) !== 0n;
    if (status) this.send(VHOST_USER_SET_STATUS, encodeU64(BigInt(VIRTIO_CONFIG_S_FEATURES_OK)));
    const ack = (protocol & bit(VHOST_USER_PROTOCOL_F_REPLY_ACK)) !== 0n;
    if (slots) this.send(VHOST_USER_ADD_MEM_REG, encodeMemReg(this.region()), [this.fds.mem], ack);
    else this.send(VHOST_USER_SET_MEM_TABLE, encodeMemTable([this.region()]), [this.fds.mem], ack);
    this.rings = [];
    for (let i = 0; i < 4; i++) {
      const size = this.packed ? 1 + r.below(64) : 1 << r.below(7);
      const bump = new BumpAllocator(GUEST_BASE + i * QUEUE_AREA, GUEST_BASE + (i + 1) * QUEUE_AREA);
      const opts = { mem: this.guestMem, alloc: bump.alloc, size, eventIdx: this.eventIdx };
      const driver = this.packed ? new PackedDriverQueue(opts) : new SplitDriverQueue(opts);
      this.rings.push({ driver, pending: new Set() });
      this.startRing(i, driver);
    }
    for (let i = 0; i < 4; i++)
      this.send(VHOST_USER_SET_VRING_ENABLE, encodeVringState({ index: i, num: 1 }), [], ack);
    const on =
      VIRTIO_CONFIG_S_ACKNOWLEDGE |
      VIRTIO_CONFIG_S_DRIVER |
      VIRTIO_CONFIG_S_DRIVER_OK |
      VIRTIO_CONFIG_S_FEATURES_OK;
    if (status) this.send(VHOST_USER_SET_STATUS, encodeU64(BigInt(on)));
    // Event buffers, as the driver's probe posts them.
    const ev = this.rings[1]!;
    for (let k = 0; k < Math.min(8, ev.driver.freeCount); k++) {
      ev.pending.add(ev.driver.add([], [{ addr: GUEST_BASE + DATA_BASE + 8 * k, len: 8 }]));
    }
    this.t.kick(this.fds.kick[1]!);
  }

  private startRing(i: number, driver: DriverQueue): void {
    const l = driver.layout;
    this.send(VHOST_USER_SET_VRING_NUM, encodeVringState({ index: i, num: l.size }));
    this.send(VHOST_USER_SET_VRING_BASE, encodeVringState({ index: i, num: this.packed ? 0x8000_8000 : 0 }));
    this.send(
      VHOST_USER_SET_VRING_ADDR,
      encodeVringAddr({
        index: i,
        flags: 0,
        descUser: this.user(l.descAddr),
        usedUser: this.user(l.deviceAddr),
        availUser: this.user(l.driverAddr),
        logGuest: 0n,
      }),
    );
    this.send(VHOST_USER_SET_VRING_KICK, encodeVringFile({ index: i, noFd: false }), [this.fds.kick[i]!]);
    this.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: i, noFd: false }), [this.fds.call[i]!]);
    this.send(VHOST_USER_SET_VRING_ERR, encodeVringFile({ index: i, noFd: false }), [this.fds.err[i]!]);
  }

  private user(guestAddr: number): bigint {
    return BigInt(USER_BASE + (guestAddr - GUEST_BASE));
  }

  private region(): MemoryRegionDesc {
    return {
      guestAddr: BigInt(GUEST_BASE),
      size: BigInt(RAM),
      userAddr: BigInt(USER_BASE),
      mmapOffset: BigInt(FILE_OFFSET),
    };
  }

  private u64(request: number): bigint | null {
    const replies = this.send(request, new Uint8Array(0));
    const p = replies[0]?.payload;
    return p !== undefined && p.length === 8
      ? new DataView(p.buffer, p.byteOffset).getBigUint64(0, true)
      : null;
  }

  // ---- actions -------------------------------------------------------------------------------

  private act(op: number): void {
    const r = this.r;
    switch (ACTIONS[op]) {
      case "random": {
        const request = r.u8() < 240 ? r.below(46) : r.u32();
        const payload = new Uint8Array(r.pick([0, 4, 8, 12, 16, 40, 48, 72, r.below(300), r.below(4200)]));
        for (let i = 0; i < Math.min(payload.length, 64); i++) payload[i] = r.u8();
        this.message(request, payload);
        return;
      }
      case "structured": {
        const { request, payload } = this.structured();
        this.message(request, payload);
        return;
      }
      case "kick": {
        const i = r.u8() % 5;
        if (r.u8() < 200) this.t.kick(i < 4 ? this.fds.kick[i]! : this.fds.call[0]!);
        else this.t.pollTick(i);
        this.drain();
        return;
      }
      case "guest":
        this.guest();
        return;
      case "clock":
        this.clock.advance(r.pick([0, 1_000_000, 5_000_000, 20_000_000, 100_000_000]));
        this.drain();
        return;
      case "reconnect":
        this.disconnect();
        this.connect();
        if (r.bool()) this.session();
        return;
      case "restart-ring": {
        // vhost_dev_stop and start of one ring: GET_VRING_BASE, then the same ring from where it stopped.
        const i = r.u8() % 4;
        const ring = this.rings[i];
        const replies = this.send(VHOST_USER_GET_VRING_BASE, encodeVringState({ index: i, num: 0 }));
        this.drain();
        if (ring === null || ring === undefined || replies[0]?.payload.length !== 8) {
          this.rings = [];
          return;
        }
        const base = new DataView(replies[0].payload.buffer, replies[0].payload.byteOffset).getUint32(
          4,
          true,
        );
        const l = ring.driver.layout;
        this.send(VHOST_USER_SET_VRING_BASE, encodeVringState({ index: i, num: base }));
        this.send(VHOST_USER_SET_VRING_KICK, encodeVringFile({ index: i, noFd: false }), [this.fds.kick[i]!]);
        this.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: i, noFd: false }), [this.fds.call[i]!]);
        if (l.size < 0) this.rings = [];
        return;
      }
      default:
        return;
    }
  }

  /** A message with fds chosen from the front-end's: none, the right ones, the wrong kind, too many. */
  private message(request: number, payload: Uint8Array): void {
    const r = this.r;
    const n = r.pick([0, 0, 0, 1, 1, 2, 8, 9]);
    const pool = [this.fds.mem, this.fds.small, ...this.fds.kick, ...this.fds.call, ...this.fds.err];
    const fds: number[] = [];
    for (let i = 0; i < n; i++) fds.push(r.u8() < 32 ? this.t.eventfd() : r.pick(pool));
    const k = r.u8();
    const flags =
      k < 200 ? VHOST_USER_VERSION : k < 240 ? VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK : r.u32();
    if (!HARMLESS.has(request)) this.rings = [];
    if (
      request === VHOST_USER_SET_MEM_TABLE ||
      request === VHOST_USER_ADD_MEM_REG ||
      request === VHOST_USER_REM_MEM_REG
    )
      this.noteMemoryChange();
    this.deliver(request, payload, fds, flags);
  }

  /** A request with a payload of its own shape, values from plausible to absurd. */
  private structured(): { request: number; payload: Uint8Array } {
    const r = this.r;
    const index = (): number => (r.u8() < 230 ? r.below(4) : r.u8() < 128 ? r.below(8) : r.u32());
    const user = (): bigint => {
      const k = r.u8();
      if (k < 200) return BigInt(USER_BASE + 16 * r.below(RAM / 16));
      if (k < 230) return BigInt(USER_BASE + RAM - r.below(64));
      return (BigInt(r.u32()) << 32n) | BigInt(r.u32());
    };
    const size = (): bigint => {
      const k = r.u8();
      if (k < 120) return BigInt(RAM);
      if (k < 200) return BigInt(4096 * (1 + r.below(64)));
      if (k < 230) return BigInt(RAM + FILE_OFFSET + r.below(3));
      return r.bool() ? 1n << 63n : (BigInt(r.u32()) << 32n) | BigInt(r.u32());
    };
    const region = (): MemoryRegionDesc => ({
      guestAddr:
        r.u8() < 200 ? BigInt(GUEST_BASE + 4096 * r.below(128)) : (BigInt(r.u32()) << 32n) | BigInt(r.u32()),
      size: size(),
      userAddr: user(),
      mmapOffset:
        r.u8() < 200
          ? BigInt(r.pick([0, FILE_OFFSET, FILE_OFFSET, 4096]))
          : (BigInt(r.u32()) << 32n) | BigInt(r.u32()),
    });
    const requests = [
      VHOST_USER_SET_FEATURES,
      VHOST_USER_SET_PROTOCOL_FEATURES,
      VHOST_USER_SET_MEM_TABLE,
      VHOST_USER_ADD_MEM_REG,
      VHOST_USER_REM_MEM_REG,
      VHOST_USER_SET_VRING_NUM,
      VHOST_USER_SET_VRING_ADDR,
      VHOST_USER_SET_VRING_BASE,
      VHOST_USER_GET_VRING_BASE,
      VHOST_USER_SET_VRING_KICK,
      VHOST_USER_SET_VRING_CALL,
      VHOST_USER_SET_VRING_ERR,
      VHOST_USER_SET_VRING_ENABLE,
      VHOST_USER_GET_CONFIG,
      VHOST_USER_SET_CONFIG,
      VHOST_USER_SET_STATUS,
      VHOST_USER_RESET_DEVICE,
      VHOST_USER_RESET_OWNER,
      VHOST_USER_GET_STATUS,
    ];
    const request = r.pick(requests);
    let payload: Uint8Array;
    switch (request) {
      case VHOST_USER_SET_FEATURES: {
        let f = bit(VIRTIO_F_VERSION_1) | bit(VHOST_USER_F_PROTOCOL_FEATURES);
        for (const b of [VIRTIO_F_EVENT_IDX, VIRTIO_F_INDIRECT_DESC, VIRTIO_F_RING_PACKED, 0, 31, 63])
          if (r.u8() >= 128) f ^= bit(b);
        payload = encodeU64(f);
        break;
      }
      case VHOST_USER_SET_PROTOCOL_FEATURES:
      case VHOST_USER_SET_STATUS:
        payload = encodeU64(BigInt(r.u8() < 200 ? r.u8() : r.u32()));
        break;
      case VHOST_USER_SET_MEM_TABLE:
        payload = encodeMemTable(Array.from({ length: r.below(10) }, region));
        break;
      case VHOST_USER_ADD_MEM_REG:
      case VHOST_USER_REM_MEM_REG:
        payload = encodeMemReg(region());
        break;
      case VHOST_USER_SET_VRING_NUM:
      case VHOST_USER_SET_VRING_BASE:
      case VHOST_USER_GET_VRING_BASE:
      case VHOST_USER_SET_VRING_ENABLE:
        payload = encodeVringState({
          index: index(),
          num: r.pick([0, 1, 2, 3, 64, 256, 32768, 32769, 0x8000_8000, 0x7fff, r.u32()]),
        });
        break;
      case VHOST_USER_SET_VRING_ADDR:
        payload = encodeVringAddr({
          index: index(),
          flags: r.u8() < 230 ? 0 : r.u32(),
          descUser: user(),
          usedUser: user(),
          availUser: user(),
          logGuest: 0n,
        });
        break;
      case VHOST_USER_SET_VRING_KICK:
      case VHOST_USER_SET_VRING_CALL:
      case VHOST_USER_SET_VRING_ERR:
        payload = encodeVringFile({ index: index() & 0xff, noFd: r.u8() >= 200 });
        if (r.u8() >= 240) new DataView(payload.buffer).setUint32(0, r.u32(), true);
        break;
      case VHOST_USER_GET_CONFIG:
      case VHOST_USER_SET_CONFIG:
        payload = encodeConfig({
          offset: r.u8() < 200 ? r.below(20) : r.u32(),
          flags: r.below(3),
          data: new Uint8Array(r.u8() < 200 ? r.below(20) : r.below(300)),
          ...(r.u8() >= 230 ? { size: r.u32() } : {}),
        });
        break;
      default:
        payload = new Uint8Array(r.u8() < 230 ? 0 : 8);
    }
    return { request, payload };
  }

  /** The guest's driver on the session's rings: control requests and TX messages. */
  private guest(): void {
    const r = this.r;
    const ctl = this.rings[VIRTIO_SND_VQ_CONTROL];
    const tx = this.rings[VIRTIO_SND_VQ_TX];
    if (ctl === undefined || ctl === null || tx === undefined || tx === null) return;
    const mem = this.guestMem;
    const k = r.u8() % 6;
    if (k < 5) {
      if (ctl.driver.freeCount < 2) return;
      const req = GUEST_BASE + DATA_BASE + 1024;
      const resp = req + 512;
      const codes = [
        VIRTIO_SND_R_PCM_INFO,
        VIRTIO_SND_R_PCM_SET_PARAMS,
        VIRTIO_SND_R_PCM_PREPARE,
        VIRTIO_SND_R_PCM_START,
        VIRTIO_SND_R_PCM_STOP,
      ];
      const code = codes[k]!;
      const stream = r.below(3);
      let len = 8;
      mem.writeU32(req, code);
      mem.writeU32(req + 4, stream);
      if (code === VIRTIO_SND_R_PCM_INFO) {
        mem.writeU32(req + 8, r.below(3));
        mem.writeU32(req + 12, 32);
        len = 16;
      } else if (code === VIRTIO_SND_R_PCM_SET_PARAMS) {
        mem.writeU32(req + 8, 3840);
        mem.writeU32(req + 12, 960);
        mem.writeU32(req + 16, 0);
        mem.writeU8(req + 20, 2);
        mem.writeU8(req + 21, VIRTIO_SND_PCM_FMT_S16);
        mem.writeU8(req + 22, PCM_RATE_HZ.indexOf(48000));
        mem.writeU8(req + 23, 0);
        len = 24;
      }
      ctl.pending.add(ctl.driver.add([{ addr: req, len }], [{ addr: resp, len: 4 + 64 }]));
      this.t.kick(this.fds.kick[VIRTIO_SND_VQ_CONTROL]!);
    } else {
      if (tx.driver.freeCount < 3) return;
      const hdr = GUEST_BASE + DATA_BASE + 4096 + 64 * r.below(16);
      mem.writeU32(hdr, r.below(3));
      tx.pending.add(
        tx.driver.add(
          [
            { addr: hdr, len: 4 },
            { addr: GUEST_BASE + DATA_BASE + 8192, len: 960 },
          ],
          [{ addr: hdr + 8, len: 8 }],
        ),
      );
      if (tx.driver.kickNeeded()) this.t.kick(this.fds.kick[VIRTIO_SND_VQ_TX]!);
    }
    this.drain();
  }

  // ---- invariants ----------------------------------------------------------------------------

  private drain(): void {
    for (let i = 0; i < this.rings.length; i++) {
      const ring = this.rings[i];
      if (ring === null || ring === undefined) continue;
      for (;;) {
        let used;
        try {
          used = ring.driver.getUsed();
        } catch (err) {
          this.fail("used-entry", `ring ${i}: ${describe(err)}`);
        }
        if (used === null) break;
        if (!ring.pending.delete(used.token))
          this.fail("used-entry", `ring ${i}: token ${used.token} used twice`);
      }
    }
  }

  private checkReplies(request: number, flags: number, replies: readonly SentMessage[]): void {
    const what = `request ${request} (flags 0x${flags.toString(16)})`;
    if (replies.length > 1) this.fail("reply", `${what}: ${replies.length} replies`);
    const reply = replies[0];
    if (reply !== undefined) {
      if (reply.request !== request) this.fail("reply", `${what}: reply names request ${reply.request}`);
      if (reply.flags !== (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK))
        this.fail("reply", `${what}: reply flags 0x${reply.flags.toString(16)}`);
    }
    if (alwaysReplies(request)) {
      if (reply === undefined) this.fail("reply", `${what}: no reply where the front-end waits for one`);
    } else if (
      (flags & VHOST_USER_NEED_REPLY_MASK) !== 0 &&
      (this.backend.negotiatedProtocolFeatures & bit(VHOST_USER_PROTOCOL_F_REPLY_ACK)) !== 0n &&
      this.backend.connected
    ) {
      if (reply === undefined) this.fail("reply", `${what}: no REPLY_ACK`);
      if (reply.payload.length !== 8)
        this.fail("reply", `${what}: REPLY_ACK of ${reply.payload.length} bytes`);
    }
    if (reply === undefined) return;
    const n = reply.payload.length;
    switch (request) {
      case VHOST_USER_GET_FEATURES:
      case VHOST_USER_GET_PROTOCOL_FEATURES:
      case VHOST_USER_GET_QUEUE_NUM:
      case VHOST_USER_GET_MAX_MEM_SLOTS:
      case VHOST_USER_GET_STATUS:
      case VHOST_USER_GET_VRING_BASE:
        if (n !== 0 && n !== 8) this.fail("reply", `${what}: reply of ${n} bytes`);
        break;
      case VHOST_USER_GET_CONFIG:
        if (
          n !== 0 &&
          (n < 12 ||
            new DataView(reply.payload.buffer, reply.payload.byteOffset).getUint32(4, true) !== n - 12)
        )
          this.fail("reply", `${what}: config reply of ${n} bytes`);
        break;
      default:
        break;
    }
  }

  /**
   * A new memory table may drop what a running ring or a queued buffer lies in:
   * the device then meets the hole when it next reads (and needs a reset, or
   * fails the message), which the memory layer refuses. Such attempts are
   * expected until every ring has stopped and started again on the new table.
   */
  private noteMemoryChange(): void {
    for (let i = 0; i < 4; i++) if (this.backend.ringStarted(i)) this.memoryMoved = true;
  }

  private check(action: string): void {
    const t = this.t;
    if (this.memoryMoved && ![0, 1, 2, 3].some((i) => this.backend.ringStarted(i))) this.memoryMoved = false;
    if (this.outside !== null && !this.memoryMoved) this.fail("outside-memory", `${action}: ${this.outside}`);
    this.outside = null;
    if (t.badCloses !== 0)
      this.fail("fd-leak", `${action}: ${t.badCloses} closes of fds the back-end did not hold`);
    if (t.heldFds > MAX_HELD_FDS) this.fail("fd-leak", `${action}: the back-end holds ${t.heldFds} fds`);
    const maps = Math.max(8, this.maxSlots) * Math.ceil((FILE_OFFSET + RAM) / MAP_CHUNK);
    if (t.liveMappings > maps) this.fail("fd-leak", `${action}: ${t.liveMappings} live mappings`);
    const problem = deviceMemoryProblem(this.backend.device, this.audio);
    if (problem !== null) this.fail("memory", `${action}: ${problem}`);
    this.drain();
  }
}
