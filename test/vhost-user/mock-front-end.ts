/**
 * A QEMU-like vhost-user front-end over MockTransport: the messages QEMU 10's
 * vhost-user-snd-pci sends, in its order (vhost_user_backend_init and
 * vhost_dev_init at realize, vhost_dev_start at DRIVER_OK), with guest RAM in
 * an ArrayBuffer passed as a fake memfd.
 */
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import type { SoundConfig } from "../../src/device/config.js";
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../../src/spec/constants.js";
import {
  type LogEntry,
  VhostUserBackend,
  type VhostUserBackendOptions,
} from "../../src/vhost-user/backend.js";
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
  VHOST_USER_REPLY_MASK,
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
  decodeConfig,
  decodeU64,
  decodeVringState,
  encodeConfig,
  encodeMemReg,
  encodeMemTable,
  encodeU64,
  encodeVringAddr,
  encodeVringFile,
  encodeVringState,
} from "../../src/vhost-user/messages.js";
import { MockTransport, type SentMessage } from "../../src/vhost-user/mock-transport.js";
import { GUEST_BASE, GuestSide, USER_BASE } from "./guest-side.js";

const bit = (n: number): bigint => 1n << BigInt(n);

export interface MockFrontEndOptions {
  readonly packed?: boolean;
  readonly eventIdx?: boolean;
  readonly queueSize?: number;
  /** Guest RAM bytes (default 4 MiB). */
  readonly memorySize?: number;
  /** Protocol features to enable, of those offered (default: all offered). */
  readonly protocolFeatures?: (offered: bigint) => bigint;
  /** Ack VHOST_USER_F_PROTOCOL_FEATURES in SET_FEATURES (default true, as QEMU). */
  readonly ackProtocolFeatures?: boolean;
  /** Offset of guest RAM inside the memory file (default 0). */
  readonly mmapOffset?: number;
  /** Take over this front-end's guest (its RAM and rings), as QEMU reconnecting to a new back-end connection. */
  readonly sameGuestAs?: MockFrontEnd;
  /** Options for the back-end (when the front-end makes it). */
  readonly backend?: Partial<VhostUserBackendOptions>;
  readonly config?: SoundConfig;
}

export class MockFrontEnd {
  readonly clock: VirtualClock;
  readonly audio: MemoryBackend;
  readonly backend: VhostUserBackend;
  readonly t = new MockTransport();
  readonly ram: ArrayBuffer;
  readonly memFd: number;
  readonly guest: GuestSide;
  readonly kickFds: number[] = [];
  readonly callFds: number[] = [];
  readonly errFds: number[] = [];
  readonly log: LogEntry[];
  protocol = 0n;
  features = 0n;
  /** The memory table was sent (QEMU sends it again only when it changes). */
  memorySent = false;
  private readonly mmapOffset: number;

  /** A front-end with a fresh back-end, or (for reconnection tests) another front-end's back-end. */
  constructor(
    readonly options: MockFrontEndOptions = {},
    existing?: MockFrontEnd,
  ) {
    if (existing !== undefined) {
      this.clock = existing.clock;
      this.audio = existing.audio;
      this.backend = existing.backend;
      this.log = existing.log;
    } else {
      this.clock = new VirtualClock();
      this.audio = new MemoryBackend({ clock: this.clock });
      this.log = [];
      const log = this.log;
      this.backend = new VhostUserBackend({
        backend: this.audio,
        clock: this.clock,
        ...(options.config !== undefined ? { config: options.config } : {}),
        log: (e) => log.push(e),
        ...options.backend,
      });
    }
    const kick = (i: number): void => {
      this.t.kick(this.kickFds[i]!);
    };
    const other = options.sameGuestAs;
    if (other !== undefined) {
      this.mmapOffset = other.mmapOffset;
      this.ram = other.ram;
      this.guest = other.guest;
      this.guest.kick = kick;
    } else {
      const size = options.memorySize ?? 4 * 1024 * 1024;
      this.mmapOffset = options.mmapOffset ?? 0;
      this.ram = new ArrayBuffer(this.mmapOffset + size);
      this.guest = new GuestSide({
        ram: new Uint8Array(this.ram, this.mmapOffset, size),
        packed: options.packed ?? false,
        eventIdx: options.eventIdx ?? true,
        queueSize: options.queueSize ?? 64,
        kick,
      });
    }
    this.memFd = this.t.memfd(this.ram);
    for (let i = 0; i < 4; i++) {
      this.kickFds.push(this.t.eventfd());
      this.callFds.push(this.t.eventfd());
      this.errFds.push(this.t.eventfd());
    }
    this.backend.attach(this.t);
  }

  get region(): MemoryRegionDesc {
    return {
      guestAddr: BigInt(GUEST_BASE),
      size: BigInt(this.ram.byteLength - this.mmapOffset),
      userAddr: BigInt(USER_BASE),
      mmapOffset: BigInt(this.mmapOffset),
    };
  }

  /** Sends a message; with needReply, sets NEED_REPLY when REPLY_ACK is negotiated (as QEMU does). */
  send(
    request: number,
    payload?: Uint8Array,
    options: { fds?: readonly number[]; needReply?: boolean; flags?: number } = {},
  ): SentMessage[] {
    const needReply =
      options.needReply === true && (this.protocol & bit(VHOST_USER_PROTOCOL_F_REPLY_ACK)) !== 0n;
    const flags = options.flags ?? VHOST_USER_VERSION | (needReply ? VHOST_USER_NEED_REPLY_MASK : 0);
    const replies = this.t.deliver(request, payload, { flags, ...(options.fds ? { fds: options.fds } : {}) });
    for (const r of replies) {
      if (r.request !== request) throw new Error(`reply to ${request} names request ${r.request}`);
      if (r.flags !== (VHOST_USER_VERSION | VHOST_USER_REPLY_MASK))
        throw new Error(`reply flags 0x${r.flags.toString(16)}`);
    }
    if (needReply) {
      if (replies.length !== 1)
        throw new Error(`request ${request}: ${replies.length} replies to NEED_REPLY`);
      const ack = decodeU64(replies[0]!.payload);
      if (!ack.ok || ack.value !== 0n)
        throw new Error(`request ${request} was refused (ack ${String(ack.ok && ack.value)})`);
    }
    return replies;
  }

  /** A request whose reply is a u64. */
  u64(request: number): bigint {
    const replies = this.send(request);
    if (replies.length !== 1) throw new Error(`request ${request}: ${replies.length} replies`);
    const v = decodeU64(replies[0]!.payload);
    if (!v.ok) throw new Error(v.reason);
    return v.value;
  }

  /** QEMU's realize: vhost_user_backend_init, then vhost_dev_init (SET_OWNER, GET_FEATURES, a call fd per queue). */
  init(): void {
    this.features = this.u64(VHOST_USER_GET_FEATURES);
    if ((this.features & bit(VHOST_USER_F_PROTOCOL_FEATURES)) === 0n) throw new Error("no protocol features");
    const offered = this.u64(VHOST_USER_GET_PROTOCOL_FEATURES);
    this.protocol = this.options.protocolFeatures?.(offered) ?? offered;
    this.send(VHOST_USER_SET_PROTOCOL_FEATURES, encodeU64(this.protocol));
    if (this.protocol & bit(VHOST_USER_PROTOCOL_F_MQ)) {
      const n = this.u64(VHOST_USER_GET_QUEUE_NUM);
      if (n < 4n) throw new Error(`only ${n} queues`);
    }
    if (this.protocol & bit(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS))
      this.u64(VHOST_USER_GET_MAX_MEM_SLOTS);
    this.send(VHOST_USER_SET_OWNER);
    this.u64(VHOST_USER_GET_FEATURES);
    // vhost_virtqueue_init: the masked notifier as each queue's call fd.
    for (let i = 0; i < 4; i++) {
      this.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: i, noFd: false }), {
        fds: [this.callFds[i]!],
      });
    }
  }

  /** GET_CONFIG as vub_get_config does: `size` bytes from offset 0. */
  getConfig(size = 12): Uint8Array {
    const replies = this.send(
      VHOST_USER_GET_CONFIG,
      encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(size) }),
    );
    const c = decodeConfig(replies[0]!.payload);
    if (!c.ok) throw new Error(c.reason);
    return c.value.data;
  }

  /** The virtio features the guest acks (of those offered). */
  guestFeatures(): bigint {
    let f = bit(VIRTIO_F_VERSION_1);
    if (this.options.eventIdx ?? true) f |= bit(VIRTIO_F_EVENT_IDX);
    if (this.options.packed) f |= bit(VIRTIO_F_RING_PACKED);
    return f & this.features;
  }

  /** vhost_dev_start: features, memory, then per queue NUM/BASE/ADDR/KICK/CALL, then enable, then DRIVER_OK. */
  start(options: { memTable?: "set" | "add"; bases?: readonly number[] } = {}): void {
    const ackProtocol = this.options.ackProtocolFeatures ?? true;
    this.send(
      VHOST_USER_SET_FEATURES,
      encodeU64(this.guestFeatures() | (ackProtocol ? bit(VHOST_USER_F_PROTOCOL_FEATURES) : 0n)),
    );
    const status = (this.protocol & bit(VHOST_USER_PROTOCOL_F_STATUS)) !== 0n;
    if (status) {
      const s = this.u64(VHOST_USER_GET_STATUS);
      this.send(VHOST_USER_SET_STATUS, encodeU64(s | BigInt(VIRTIO_CONFIG_S_FEATURES_OK)));
    }
    const slots = (this.protocol & bit(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS)) !== 0n;
    const memTable = options.memTable ?? (slots ? "add" : "set");
    if (memTable === "set") {
      this.send(VHOST_USER_SET_MEM_TABLE, encodeMemTable([this.region]), {
        fds: [this.memFd],
        needReply: true,
      });
    } else if (!this.memorySent) {
      // QEMU's shadow table: ADD_MEM_REG only for regions the back-end does not have yet.
      this.send(VHOST_USER_ADD_MEM_REG, encodeMemReg(this.region), { fds: [this.memFd], needReply: true });
    }
    this.memorySent = true;
    for (let i = 0; i < 4; i++) this.startRing(i, options.bases?.[i] ?? this.initialBase);
    if (ackProtocol) {
      for (let i = 0; i < 4; i++)
        this.send(VHOST_USER_SET_VRING_ENABLE, encodeVringState({ index: i, num: 1 }), { needReply: true });
    }
    if (status) {
      const s = this.u64(VHOST_USER_GET_STATUS);
      const on = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_DRIVER_OK;
      this.send(VHOST_USER_SET_STATUS, encodeU64(s | BigInt(on)));
    }
  }

  /** A new ring's base: split 0; packed slot 0 with both wrap counters 1 (as QEMU sends it). */
  get initialBase(): number {
    return this.options.packed ? 0x8000_8000 : 0;
  }

  /** vhost_virtqueue_start for queue `i`. */
  startRing(i: number, base = this.initialBase): void {
    const size = this.options.queueSize ?? 64;
    this.send(VHOST_USER_SET_VRING_NUM, encodeVringState({ index: i, num: size }));
    this.send(VHOST_USER_SET_VRING_BASE, encodeVringState({ index: i, num: base }));
    this.send(VHOST_USER_SET_VRING_ADDR, encodeVringAddr(this.guest.vringAddr(i)));
    this.send(VHOST_USER_SET_VRING_KICK, encodeVringFile({ index: i, noFd: false }), {
      fds: [this.kickFds[i]!],
    });
    this.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: i, noFd: false }), {
      fds: [this.callFds[i]!],
    });
    this.send(VHOST_USER_SET_VRING_ERR, encodeVringFile({ index: i, noFd: false }), {
      fds: [this.errFds[i]!],
    });
  }

  /**
   * vhost_dev_stop: disable every ring, GET_VRING_BASE each (returning the
   * bases), then status 0 when STATUS was negotiated (`status0` false: as
   * QEMU 10's vhost-user-snd, which never sends it).
   */
  stop(options: { status0?: boolean } = {}): number[] {
    const ackProtocol = this.options.ackProtocolFeatures ?? true;
    if (ackProtocol) {
      for (let i = 0; i < 4; i++)
        this.send(VHOST_USER_SET_VRING_ENABLE, encodeVringState({ index: i, num: 0 }), { needReply: true });
    }
    const bases: number[] = [];
    for (let i = 0; i < 4; i++) bases.push(this.vringBase(i));
    if ((options.status0 ?? true) && (this.protocol & bit(VHOST_USER_PROTOCOL_F_STATUS)) !== 0n)
      this.send(VHOST_USER_SET_STATUS, encodeU64(0n));
    return bases;
  }

  vringBase(i: number): number {
    const replies = this.send(VHOST_USER_GET_VRING_BASE, encodeVringState({ index: i, num: 0 }));
    const s = decodeVringState(replies[0]!.payload);
    if (!s.ok || s.value.index !== i) throw new Error(`bad GET_VRING_BASE reply for ${i}`);
    return s.value.num;
  }

  /** init, GET_CONFIG and start: the device is ready for the guest driver. */
  connect(options: { memTable?: "set" | "add" } = {}): void {
    this.init();
    this.getConfig();
    this.start(options);
  }
}
