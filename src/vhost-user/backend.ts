/**
 * The vhost-user back-end of the virtio sound device: the protocol state
 * machine (QEMU docs/interop/vhost-user.rst) on a VirtioSound, over any
 * VhostTransport.
 *
 * The front-end (QEMU's vhost-user-snd-pci) owns the virtio transport; this
 * back-end owns the device. It maps the front-end's memory table into a
 * RegionMemory keyed by guest-physical address, translates ring addresses
 * (the front-end's own virtual addresses) through it, starts each ring once
 * it has a size, addresses, a kick and is enabled, turns kicks into
 * device.notify() and the device's interrupts into writes to the call
 * eventfds.
 *
 * Nothing a front-end sends makes a method throw: a message with a malformed
 * payload, missing or extra file descriptors, or a request this back-end does
 * not implement is refused (a failure reply when the front-end waits for one,
 * else a logged warning) and its file descriptors are closed.
 */
import { VirtioSndError } from "../errors.js";
import { RegionMemory } from "../memory/region-memory.js";
import { VirtioSound, type VirtioSoundOptions } from "../device/virtio-sound.js";
import {
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_RING_PACKED,
  VIRTIO_SND_VQ_MAX,
} from "../spec/constants.js";
import {
  type Decoded,
  type MemoryRegionDesc,
  VHOST_SET_CONFIG_TYPE_MIGRATION,
  VHOST_USER_ADD_MEM_REG,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_MAX_MEM_SLOTS,
  VHOST_USER_GET_PROTOCOL_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_GET_STATUS,
  VHOST_USER_GET_VRING_BASE,
  VHOST_USER_MAX_FDS,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_PROTOCOL_F_CONFIG,
  VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS,
  VHOST_USER_PROTOCOL_F_MQ,
  VHOST_USER_PROTOCOL_F_REPLY_ACK,
  VHOST_USER_PROTOCOL_F_RESET_DEVICE,
  VHOST_USER_PROTOCOL_F_STATUS,
  VHOST_USER_REM_MEM_REG,
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
  alwaysReplies,
  decodeConfig,
  decodeMemReg,
  decodeMemTable,
  decodeU64,
  decodeVringAddr,
  decodeVringFile,
  decodeVringState,
  encodeConfig,
  encodeReply,
  encodeU64,
  encodeVringState,
  requestName,
  safeNumber,
} from "./messages.js";
import type { MappedRegion, VhostMessage, VhostTransport } from "./transport.js";

export type LogLevel = "debug" | "info" | "warn" | "error";

export interface LogEntry {
  readonly level: LogLevel;
  readonly message: string;
}

export interface VhostUserBackendOptions extends Omit<
  VirtioSoundOptions,
  "memory" | "interrupt" | "onNeedsReset"
> {
  /** Diagnostics: every message (debug), connections (info), refusals (warn), device errors (error). */
  readonly log?: (entry: LogEntry) => void;
  /** Memory regions the front-end may add (GET_MAX_MEM_SLOTS); default 32, as libvhost-user. */
  readonly maxMemSlots?: number;
  /**
   * Regions are mapped in pieces of at most this many bytes (a multiple of
   * 64 KiB; default 1 GiB: one typed array cannot exceed 4 GiB). Tests make it
   * small so buffers straddle pieces.
   */
  readonly mapChunkBytes?: number;
  /** The front-end's connection closed (after the device was reset): null when it simply went away. */
  readonly onDisconnect?: (reason: Error | null) => void;
}

const bit = (n: number): bigint => 1n << BigInt(n);

/** The protocol features this back-end offers. */
export const BACKEND_PROTOCOL_FEATURES =
  bit(VHOST_USER_PROTOCOL_F_MQ) |
  bit(VHOST_USER_PROTOCOL_F_REPLY_ACK) |
  bit(VHOST_USER_PROTOCOL_F_CONFIG) |
  bit(VHOST_USER_PROTOCOL_F_RESET_DEVICE) |
  bit(VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS) |
  bit(VHOST_USER_PROTOCOL_F_STATUS);

/** The virtio sound device has four queues: control, event, tx, rx. */
export const BACKEND_QUEUE_NUM = VIRTIO_SND_VQ_MAX;

/** Regions are mapped in pieces of at most this size by default: a typed array cannot be longer than 4 GiB. */
const MAP_CHUNK = 1 << 30;
/** Largest virtqueue (split and packed). */
const MAX_QUEUE_SIZE = 32768;

interface RingAddr {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
}

interface Ring {
  num: number | null;
  /** Guest-physical addresses of the three areas. */
  addr: RingAddr | null;
  /** From SET_VRING_BASE (or the last stop): split, the next avail index; packed, vhost-user's 32-bit form. */
  base: number;
  /** A kick fd (or the no-fd flag) was given. */
  kickSet: boolean;
  kickFd: number | null;
  callFd: number | null;
  errFd: number | null;
  enabled: boolean;
  started: boolean;
  /** Kicked while disabled: processed on enable. */
  kickPending: boolean;
  /** Not started since the device was last reset (its streams hold none of this ring's buffers). */
  fresh: boolean;
}

/** A region's addresses, checked and in numbers. */
interface RegionSpan {
  readonly guestAddr: number;
  readonly size: number;
  readonly userAddr: number;
}

interface Region {
  readonly guestAddr: number;
  readonly size: number;
  readonly userAddr: number;
  readonly maps: readonly MappedRegion[];
}

type Outcome = { ok: true; reply?: Uint8Array } | { ok: false; reason: string; reply?: Uint8Array };

const OK: Outcome = { ok: true };
const fail = (reason: string): Outcome => ({ ok: false, reason });

function hex(v: bigint | number): string {
  return `0x${v.toString(16)}`;
}

/**
 * The vhost-user back-end: one VirtioSound, served to one front-end
 * connection at a time (attach a transport; on its close the device is reset
 * and the memory unmapped, ready for the next).
 */
export class VhostUserBackend {
  readonly device: VirtioSound;
  /** Guest memory as the memory table describes it; the device reads the rings and buffers through it. */
  readonly memory = new RegionMemory();

  private transport: VhostTransport | null = null;
  private readonly maxMemSlots: number;
  private readonly mapChunk: number;
  private protocolFeatures = 0n;
  private owner = false;
  /** SET_FEATURES was accepted since the last reset. */
  private featuresOk = false;
  private status = 0;
  /** A ring was started since the last reset: a stop of every ring then a new SET_FEATURES is a restart. */
  private everStarted = false;
  private regions: Region[] = [];
  private readonly rings: Ring[] = [];

  constructor(private readonly options: VhostUserBackendOptions) {
    const maxSlots = options.maxMemSlots ?? 32;
    if (!Number.isInteger(maxSlots) || maxSlots < 1 || maxSlots > 4096)
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `maxMemSlots must be an integer from 1 to 4096, not ${maxSlots}`,
      );
    this.maxMemSlots = maxSlots;
    const chunk = options.mapChunkBytes ?? MAP_CHUNK;
    if (!Number.isInteger(chunk) || chunk < 65536 || chunk > MAP_CHUNK || chunk % 65536 !== 0)
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `mapChunkBytes must be a multiple of 64 KiB up to 1 GiB, not ${chunk}`,
      );
    this.mapChunk = chunk;
    const {
      log: _log,
      maxMemSlots: _slots,
      mapChunkBytes: _chunk,
      onDisconnect: _disconnect,
      ...deviceOptions
    } = options;
    this.device = new VirtioSound({
      ...deviceOptions,
      memory: this.memory,
      interrupt: (index) => this.interrupt(index),
      onNeedsReset: (error) => this.needsReset(error),
    });
    for (let i = 0; i < BACKEND_QUEUE_NUM; i++) this.rings.push(this.freshRing());
  }

  /** The virtio features offered in GET_FEATURES (with VHOST_USER_F_PROTOCOL_FEATURES). */
  get features(): bigint {
    return this.device.deviceFeatures | bit(VHOST_USER_F_PROTOCOL_FEATURES);
  }

  get connected(): boolean {
    return this.transport !== null;
  }

  /** Protocol features the front-end enabled (SET_PROTOCOL_FEATURES). */
  get negotiatedProtocolFeatures(): bigint {
    return this.protocolFeatures;
  }

  /** Whether ring `index` is running on the device. */
  ringStarted(index: number): boolean {
    return this.rings[index]?.started ?? false;
  }

  /** Serves a front-end on `transport`. Throws ERR_INVALID_STATE while another one is attached. */
  attach(transport: VhostTransport): void {
    if (this.transport !== null)
      throw new VirtioSndError("ERR_INVALID_STATE", "a vhost-user front-end is already connected");
    this.transport = transport;
    this.log("info", "front-end connected");
    transport.start({
      message: (m) => this.onMessage(transport, m),
      kick: (i) => this.onKick(transport, i),
      closed: (reason) => this.onClosed(transport, reason),
    });
  }

  /** Disconnects the front-end, if any (the device is reset, the memory unmapped). */
  disconnect(): void {
    this.transport?.close();
  }

  // ---- connection events ----------------------------------------------------------------

  private onMessage(transport: VhostTransport, m: VhostMessage): void {
    if (transport !== this.transport) {
      for (const fd of m.fds) transport.closeFd(fd);
      return;
    }
    const kept = new Set<number>();
    let outcome: Outcome;
    try {
      outcome = this.handle(m, kept);
    } catch (err) {
      outcome = fail(`internal error: ${err instanceof Error ? err.message : String(err)}`);
    }
    for (const fd of m.fds) if (!kept.has(fd)) transport.closeFd(fd);
    const name = requestName(m.request);
    if (!outcome.ok) this.log("warn", `refused ${name}: ${outcome.reason}`);
    if (outcome.reply !== undefined) {
      transport.send(encodeReply(m.request, outcome.reply));
    } else if (alwaysReplies(m.request)) {
      // The front-end waits for a reply: an empty one is the spec's failure for GET_CONFIG and a bad size for the rest.
      transport.send(encodeReply(m.request));
    } else if ((m.flags & VHOST_USER_NEED_REPLY_MASK) !== 0 && this.has(VHOST_USER_PROTOCOL_F_REPLY_ACK)) {
      transport.send(encodeReply(m.request, encodeU64(outcome.ok ? 0n : 1n)));
    }
  }

  private onKick(transport: VhostTransport, index: number): void {
    if (transport !== this.transport) return;
    const ring = this.rings[index];
    if (ring === undefined || !ring.started) return;
    if (!ring.enabled) {
      ring.kickPending = true;
      return;
    }
    this.device.notify(index);
  }

  private onClosed(transport: VhostTransport, reason: Error | null): void {
    if (transport !== this.transport) return;
    this.resetDevice();
    this.unmapAll();
    this.protocolFeatures = 0n;
    this.owner = false;
    this.transport = null;
    this.log(
      "info",
      reason === null ? "front-end disconnected" : `front-end connection lost: ${reason.message}`,
    );
    this.options.onDisconnect?.(reason);
  }

  // ---- device callbacks -----------------------------------------------------------------------

  private interrupt(index: number): void {
    const fd = this.rings[index]?.callFd;
    if (fd !== null && fd !== undefined) this.transport?.signal(fd);
  }

  private needsReset(error: Error): void {
    this.log("error", `the device needs a reset: ${error.message}`);
    for (const ring of this.rings) if (ring.errFd !== null) this.transport?.signal(ring.errFd);
  }

  // ---- messages -----------------------------------------------------------------------------

  private handle(m: VhostMessage, kept: Set<number>): Outcome {
    this.log("debug", `${requestName(m.request)} (${m.payload.length} bytes, ${m.fds.length} fds)`);
    if (m.fds.length > VHOST_USER_MAX_FDS)
      return fail(`${m.fds.length} file descriptors (at most ${VHOST_USER_MAX_FDS})`);
    switch (m.request) {
      case VHOST_USER_GET_FEATURES:
        return this.noPayload(m) ?? { ok: true, reply: encodeU64(this.features) };
      case VHOST_USER_SET_FEATURES:
        return this.setFeatures(m);
      case VHOST_USER_GET_PROTOCOL_FEATURES:
        return this.noPayload(m) ?? { ok: true, reply: encodeU64(BACKEND_PROTOCOL_FEATURES) };
      case VHOST_USER_SET_PROTOCOL_FEATURES:
        return this.setProtocolFeatures(m);
      case VHOST_USER_SET_OWNER:
        return this.noPayload(m) ?? this.setOwner();
      case VHOST_USER_RESET_OWNER:
        // Deprecated; the spec recommends ignoring it or disabling the rings.
        return this.noPayload(m) ?? this.disableAll();
      case VHOST_USER_GET_QUEUE_NUM:
        return this.noPayload(m) ?? { ok: true, reply: encodeU64(BigInt(BACKEND_QUEUE_NUM)) };
      case VHOST_USER_GET_MAX_MEM_SLOTS:
        return this.noPayload(m) ?? { ok: true, reply: encodeU64(BigInt(this.maxMemSlots)) };
      case VHOST_USER_SET_MEM_TABLE:
        return this.setMemTable(m);
      case VHOST_USER_ADD_MEM_REG:
        return this.addMemReg(m);
      case VHOST_USER_REM_MEM_REG:
        return this.remMemReg(m);
      case VHOST_USER_SET_VRING_NUM:
        return this.setVringNum(m);
      case VHOST_USER_SET_VRING_ADDR:
        return this.setVringAddr(m);
      case VHOST_USER_SET_VRING_BASE:
        return this.setVringBase(m);
      case VHOST_USER_GET_VRING_BASE:
        return this.getVringBase(m);
      case VHOST_USER_SET_VRING_KICK:
      case VHOST_USER_SET_VRING_CALL:
      case VHOST_USER_SET_VRING_ERR:
        return this.setVringFile(m, kept);
      case VHOST_USER_SET_VRING_ENABLE:
        return this.setVringEnable(m);
      case VHOST_USER_GET_CONFIG:
        return this.getConfig(m);
      case VHOST_USER_SET_CONFIG:
        return this.setConfig(m);
      case VHOST_USER_RESET_DEVICE:
        return this.noPayload(m) ?? this.reset("RESET_DEVICE");
      case VHOST_USER_SET_STATUS:
        return this.setStatus(m);
      case VHOST_USER_GET_STATUS:
        return this.noPayload(m) ?? { ok: true, reply: encodeU64(BigInt(this.currentStatus())) };
      default:
        return fail("not supported by this back-end");
    }
  }

  private has(feature: number): boolean {
    return (this.protocolFeatures & bit(feature)) !== 0n;
  }

  /** A refusal when the message has a payload or fds it should not have. */
  private noPayload(m: VhostMessage): Outcome | null {
    if (m.payload.length !== 0) return fail(`unexpected payload of ${m.payload.length} bytes`);
    return this.noFds(m);
  }

  private noFds(m: VhostMessage): Outcome | null {
    return m.fds.length === 0 ? null : fail(`unexpected file descriptors (${m.fds.length})`);
  }

  private decoded<T>(d: Decoded<T>, m: VhostMessage, fds = 0): T | Outcome {
    if (!d.ok) return fail(d.reason);
    if (m.fds.length !== fds) return fail(`${m.fds.length} file descriptors, expected ${fds}`);
    return d.value;
  }

  private setFeatures(m: VhostMessage): Outcome {
    const v = this.decoded(decodeU64(m.payload, "features"), m);
    if (typeof v !== "bigint") return v;
    const unknown = v & ~this.features;
    if (unknown !== 0n) return fail(`features ${hex(unknown)} were not offered`);
    if (this.everStarted && this.rings.every((r) => !r.started)) {
      // Every ring stopped, then features again: QEMU restarting the device after the guest reset it
      // (or after a VM stop). QEMU's vhost-user-snd sends no status 0, so this is where the reset shows.
      this.reset("restart after every ring stopped");
    }
    const virtio = v & ~bit(VHOST_USER_F_PROTOCOL_FEATURES);
    this.featuresOk = this.device.setDriverFeatures(virtio);
    if (!this.featuresOk) return fail(`the device refuses features ${hex(virtio)} (VERSION_1 is required)`);
    if ((v & bit(VHOST_USER_F_PROTOCOL_FEATURES)) === 0n) {
      // Without VHOST_USER_F_PROTOCOL_FEATURES every ring is enabled at once.
      for (let i = 0; i < this.rings.length; i++) this.enable(i, true);
    }
    return OK;
  }

  private setProtocolFeatures(m: VhostMessage): Outcome {
    const v = this.decoded(decodeU64(m.payload, "protocol features"), m);
    if (typeof v !== "bigint") return v;
    const unknown = v & ~BACKEND_PROTOCOL_FEATURES;
    if (unknown !== 0n) return fail(`protocol features ${hex(unknown)} were not offered`);
    this.protocolFeatures = v;
    return OK;
  }

  private setOwner(): Outcome {
    if (this.owner) this.log("debug", "SET_OWNER again on the same connection");
    this.owner = true;
    return OK;
  }

  private disableAll(): Outcome {
    for (let i = 0; i < this.rings.length; i++) this.enable(i, false);
    return OK;
  }

  // ---- memory --------------------------------------------------------------------------------

  /** Checks a region's numbers; returns it in numbers or a refusal. */
  private region(r: MemoryRegionDesc, withOffset: boolean): (RegionSpan & { mmapOffset: number }) | Outcome {
    const guestAddr = safeNumber(r.guestAddr);
    const size = safeNumber(r.size);
    const userAddr = safeNumber(r.userAddr);
    const mmapOffset = withOffset ? safeNumber(r.mmapOffset) : 0;
    const what = `region ${hex(r.guestAddr)}+${hex(r.size)}`;
    if (guestAddr === null || size === null || userAddr === null || mmapOffset === null)
      return fail(`${what}: an address, size or offset is beyond 2^53`);
    if (size === 0) return fail(`${what} is empty`);
    if (!Number.isSafeInteger(guestAddr + size) || !Number.isSafeInteger(userAddr + size))
      return fail(`${what} ends beyond 2^53`);
    if (!Number.isSafeInteger(mmapOffset + size)) return fail(`${what}: its mmap offset ends beyond 2^53`);
    return { guestAddr, size, userAddr, mmapOffset };
  }

  /**
   * A refusal when `r` overlaps one of `others` in guest-physical address
   * space. (User addresses may overlap: the same memory can appear at two
   * guest addresses.)
   */
  private overlap(r: RegionSpan, others: readonly RegionSpan[]): Outcome | null {
    for (const o of others) {
      if (r.guestAddr < o.guestAddr + o.size && o.guestAddr < r.guestAddr + r.size)
        return fail(`region at guest address ${hex(r.guestAddr)} overlaps the one at ${hex(o.guestAddr)}`);
    }
    return null;
  }

  /** Maps a region from `fd`, in chunks; unmaps what it mapped and returns a refusal on failure. */
  private mapRegion(r: RegionSpan & { mmapOffset: number }, fd: number): Region | Outcome {
    const maps: MappedRegion[] = [];
    try {
      for (let off = 0; off < r.size; off += this.mapChunk) {
        maps.push(this.transport!.map(fd, Math.min(this.mapChunk, r.size - off), r.mmapOffset + off));
      }
    } catch (err) {
      for (const m of maps) m.unmap();
      return fail(err instanceof Error ? err.message : String(err));
    }
    return { guestAddr: r.guestAddr, size: r.size, userAddr: r.userAddr, maps };
  }

  private install(region: Region): void {
    let addr = region.guestAddr;
    for (const m of region.maps) {
      this.memory.add({ guestAddr: addr, bytes: m.bytes });
      addr += m.bytes.length;
    }
    this.regions.push(region);
  }

  private uninstall(region: Region): void {
    let addr = region.guestAddr;
    for (const m of region.maps) {
      this.memory.remove(addr);
      addr += m.bytes.length;
      m.unmap();
    }
    this.regions = this.regions.filter((r) => r !== region);
  }

  private unmapAll(): void {
    for (const r of [...this.regions]) this.uninstall(r);
  }

  private setMemTable(m: VhostMessage): Outcome {
    const table = decodeMemTable(m.payload);
    if (!table.ok) return fail(table.reason);
    const descs = table.value;
    if (m.fds.length !== descs.length)
      return fail(`${descs.length} regions but ${m.fds.length} file descriptors`);
    const checked: (RegionSpan & { mmapOffset: number })[] = [];
    for (const d of descs) {
      const r = this.region(d, true);
      if ("ok" in r) return r;
      const clash = this.overlap(r, checked);
      if (clash !== null) return clash;
      checked.push(r);
    }
    const mapped: Region[] = [];
    for (let i = 0; i < checked.length; i++) {
      const region = this.mapRegion(checked[i]!, m.fds[i]!);
      if ("ok" in region) {
        for (const r of mapped) for (const map of r.maps) map.unmap();
        return region;
      }
      mapped.push(region);
    }
    // The rings keep their guest-physical addresses; only the mapping behind them changes.
    this.unmapAll();
    for (const r of mapped) this.install(r);
    this.log("info", `memory table: ${this.describeRegions()}`);
    return OK;
  }

  private addMemReg(m: VhostMessage): Outcome {
    const d = this.decoded(decodeMemReg(m.payload), m, 1);
    if ("ok" in d) return d;
    const r = this.region(d, true);
    if ("ok" in r) return r;
    if (this.regions.length >= this.maxMemSlots)
      return fail(`all ${this.maxMemSlots} memory slots are in use`);
    const clash = this.overlap(r, this.regions);
    if (clash !== null) return clash;
    const region = this.mapRegion(r, m.fds[0]!);
    if ("ok" in region) return region;
    this.install(region);
    this.log("debug", `added region: ${this.describe(region)}`);
    return OK;
  }

  private remMemReg(m: VhostMessage): Outcome {
    // The spec allows (and says to close) one fd here, for old front-ends that sent one.
    const d = this.decoded(decodeMemReg(m.payload), m, m.fds.length === 1 ? 1 : 0);
    if ("ok" in d) return d;
    const r = this.region(d, false);
    if ("ok" in r) return r;
    const region = this.regions.find(
      (x) => x.guestAddr === r.guestAddr && x.userAddr === r.userAddr && x.size === r.size,
    );
    if (region === undefined)
      return fail(`no region ${hex(r.guestAddr)}+${hex(r.size)} at user address ${hex(r.userAddr)}`);
    this.uninstall(region);
    this.log("debug", `removed region: ${this.describe(region)}`);
    return OK;
  }

  private describe(r: Region): string {
    return `guest ${hex(r.guestAddr)}+${hex(r.size)} (user ${hex(r.userAddr)})`;
  }

  private describeRegions(): string {
    return this.regions.length === 0 ? "empty" : this.regions.map((r) => this.describe(r)).join(", ");
  }

  /** The guest-physical address of the front-end's virtual address `user`, or null. */
  private userToGuest(user: bigint): number | null {
    const u = safeNumber(user);
    if (u === null) return null;
    for (const r of this.regions) {
      if (u >= r.userAddr && u < r.userAddr + r.size) return r.guestAddr + (u - r.userAddr);
    }
    return null;
  }

  // ---- rings --------------------------------------------------------------------------------

  private freshRing(): Ring {
    return {
      num: null,
      addr: null,
      base: 0,
      kickSet: false,
      kickFd: null,
      callFd: null,
      errFd: null,
      enabled: false,
      started: false,
      kickPending: false,
      fresh: true,
    };
  }

  private ringOf(index: number): Ring | Outcome {
    return this.rings[index] ?? fail(`no ring ${index} (the device has ${BACKEND_QUEUE_NUM})`);
  }

  private get packed(): boolean {
    return (this.device.negotiatedFeatures & bit(VIRTIO_F_RING_PACKED)) !== 0n;
  }

  private setVringNum(m: VhostMessage): Outcome {
    const s = this.decoded(decodeVringState(m.payload, "SET_VRING_NUM"), m);
    if ("ok" in s) return s;
    const ring = this.ringOf(s.index);
    if ("ok" in ring) return ring;
    if (s.num < 1 || s.num > MAX_QUEUE_SIZE) return fail(`ring size ${s.num} is not in 1..${MAX_QUEUE_SIZE}`);
    if (ring.num === s.num) return OK;
    ring.num = s.num;
    this.restart(s.index);
    return OK;
  }

  private setVringAddr(m: VhostMessage): Outcome {
    const a = this.decoded(decodeVringAddr(m.payload), m);
    if ("ok" in a) return a;
    const ring = this.ringOf(a.index);
    if ("ok" in ring) return ring;
    const desc = this.userToGuest(a.descUser);
    const avail = this.userToGuest(a.availUser);
    const used = this.userToGuest(a.usedUser);
    if (desc === null || avail === null || used === null) {
      const which = desc === null ? a.descUser : avail === null ? a.availUser : a.usedUser;
      return fail(
        `ring ${a.index}: address ${hex(which)} is not in the memory table (${this.describeRegions()})`,
      );
    }
    const old = ring.addr;
    if (old !== null && old.desc === desc && old.avail === avail && old.used === used) return OK;
    ring.addr = { desc, avail, used };
    this.restart(a.index);
    return OK;
  }

  private setVringBase(m: VhostMessage): Outcome {
    const s = this.decoded(decodeVringState(m.payload, "SET_VRING_BASE"), m);
    if ("ok" in s) return s;
    const ring = this.ringOf(s.index);
    if ("ok" in ring) return ring;
    if (ring.started) this.log("warn", `SET_VRING_BASE on running ring ${s.index}: used at its next start`);
    ring.base = s.num;
    return OK;
  }

  private getVringBase(m: VhostMessage): Outcome {
    const s = this.decoded(decodeVringState(m.payload, "GET_VRING_BASE"), m);
    if ("ok" in s) return s;
    const ring = this.ringOf(s.index);
    if ("ok" in ring) return ring;
    this.stop(s.index);
    // The ring is stopped: like libvhost-user, forget its notifiers (the front-end sends new ones to restart it).
    this.setKick(s.index, null, false);
    this.replaceFd(ring, "callFd", null);
    this.replaceFd(ring, "errFd", null);
    ring.kickPending = false;
    return { ok: true, reply: encodeVringState({ index: s.index, num: ring.base }) };
  }

  private setVringFile(m: VhostMessage, kept: Set<number>): Outcome {
    const f = decodeVringFile(m.payload);
    if (!f.ok) return fail(f.reason);
    const { index, noFd } = f.value;
    const expected = noFd ? 0 : 1;
    if (m.fds.length !== expected)
      return fail(
        `${m.fds.length} file descriptors, expected ${expected}${noFd ? " (the no-fd flag is set)" : ""}`,
      );
    const ring = this.ringOf(index);
    if ("ok" in ring) return ring;
    const fd = noFd ? null : m.fds[0]!;
    if (m.request === VHOST_USER_SET_VRING_KICK) {
      try {
        this.setKick(index, fd, true);
      } catch (err) {
        return fail(err instanceof Error ? err.message : String(err));
      }
      if (fd !== null) kept.add(fd);
      this.maybeStart(index);
      return OK;
    }
    this.replaceFd(ring, m.request === VHOST_USER_SET_VRING_CALL ? "callFd" : "errFd", fd);
    if (fd !== null) kept.add(fd);
    return OK;
  }

  /**
   * Replaces ring `index`'s kick source (closing the old fd), or removes it
   * (`set` false). Throws, changing nothing, when the transport cannot watch `fd`.
   */
  private setKick(index: number, fd: number | null, set: boolean): void {
    const ring = this.rings[index]!;
    if (set) this.transport?.watchKick(index, fd);
    else this.transport?.unwatchKick(index);
    if (ring.kickFd !== null && ring.kickFd !== fd) this.transport?.closeFd(ring.kickFd);
    ring.kickFd = set ? fd : null;
    ring.kickSet = set;
  }

  private replaceFd(ring: Ring, which: "callFd" | "errFd", fd: number | null): void {
    const old = ring[which];
    if (old !== null && old !== fd) this.transport?.closeFd(old);
    ring[which] = fd;
  }

  private setVringEnable(m: VhostMessage): Outcome {
    const s = this.decoded(decodeVringState(m.payload, "SET_VRING_ENABLE"), m);
    if ("ok" in s) return s;
    const ring = this.ringOf(s.index);
    if ("ok" in ring) return ring;
    if (s.num > 1) return fail(`enable value ${s.num} is neither 0 nor 1`);
    this.enable(s.index, s.num === 1);
    return OK;
  }

  private enable(index: number, enabled: boolean): void {
    const ring = this.rings[index]!;
    const was = ring.enabled;
    ring.enabled = enabled;
    if (!enabled || was) return;
    if (!ring.started) {
      this.maybeStart(index);
    } else if (ring.kickPending) {
      ring.kickPending = false;
      this.device.notify(index);
    }
  }

  /** Starts ring `index` on the device when it has everything it needs. */
  private maybeStart(index: number): void {
    const ring = this.rings[index]!;
    if (ring.started || !ring.enabled || !ring.kickSet || ring.num === null || ring.addr === null) return;
    const why = this.cannotStart(ring);
    if (why !== null) {
      this.log("warn", `ring ${index} not started: ${why}`);
      if (ring.errFd !== null) this.transport?.signal(ring.errFd);
      return;
    }
    const layout = {
      size: ring.num,
      descAddr: ring.addr.desc,
      driverAddr: ring.addr.avail,
      deviceAddr: ring.addr.used,
    };
    const base = this.startBase(index, ring);
    try {
      // Packed: the low 16 bits are the available index and wrap counter; the device starts "used" there too.
      this.device.setupQueue(index, layout, base);
    } catch (err) {
      this.log("warn", `ring ${index} not started: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    ring.started = true;
    ring.kickPending = false;
    ring.fresh = false;
    this.everStarted = true;
    this.log(
      "debug",
      `ring ${index} started: ${ring.num} entries at ${hex(ring.addr.desc)}/${hex(ring.addr.avail)}/${hex(ring.addr.used)}, base ${hex(base)}`,
    );
    // Buffers may already be waiting (a restart, or a kick that came first).
    this.device.notify(index);
  }

  /**
   * Where the device starts reading ring `index`. A split ring whose used
   * index (in guest memory) lags the base by buffers the device took but never
   * returned (in flight when the front-end stopped the ring, then lost with
   * the device reset) starts at the used index instead, as libvhost-user
   * resumes in-order queues: the device takes those buffers again and returns
   * them, rather than leave the driver waiting on used slots never written.
   * Only on a ring's first start after a reset: otherwise the streams may still
   * hold those buffers.
   */
  private startBase(index: number, ring: Ring): number {
    const base = ring.base & 0xffff;
    if (this.packed || !ring.fresh) return base;
    let used: number;
    try {
      used = this.memory.readU16(ring.addr!.used + 2);
    } catch {
      return base; // The used ring is outside memory: the device reports that when it starts.
    }
    const lag = (base - used) & 0xffff;
    if (lag === 0 || lag > ring.num!) return base;
    this.log(
      "warn",
      `ring ${index}: ${lag} buffers were in flight when it stopped; taking them again from ${used}`,
    );
    return used;
  }

  private cannotStart(ring: Ring): string | null {
    if (!this.featuresOk) return "SET_FEATURES has not been accepted";
    const num = ring.num!;
    if (this.packed) {
      if ((ring.base & 0x7fff) >= num) return `packed base ${hex(ring.base)} is outside a ring of ${num}`;
    } else {
      if ((num & (num - 1)) !== 0) return `split ring size ${num} is not a power of 2`;
      if (ring.base > 0xffff) return `split base ${hex(ring.base)} is more than 16 bits`;
    }
    return null;
  }

  /** Stops ring `index` on the device, keeping its state in `base` (vhost-user's form). */
  private stop(index: number): void {
    const ring = this.rings[index]!;
    if (!ring.started) return;
    const b = this.device.stopQueue(index) & 0xffff;
    // Packed: avail index and wrap in the low half; the used half equals it (every buffer taken was used).
    ring.base = this.packed ? (b | (b << 16)) >>> 0 : b;
    ring.started = false;
  }

  /** A running ring whose size or addresses changed: stop it and start it again with its position. */
  private restart(index: number): void {
    const ring = this.rings[index]!;
    if (ring.started) {
      this.stop(index);
      this.log("debug", `ring ${index} reconfigured while running: restarting at base ${ring.base}`);
    }
    this.maybeStart(index);
  }

  // ---- config space, status, reset ------------------------------------------------------------------

  private getConfig(m: VhostMessage): Outcome {
    const c = this.decoded(decodeConfig(m.payload), m);
    if ("ok" in c) return c;
    const data = this.device.readConfig(c.offset, c.size);
    return { ok: true, reply: encodeConfig({ offset: c.offset, flags: c.flags, data }) };
  }

  private setConfig(m: VhostMessage): Outcome {
    const c = this.decoded(decodeConfig(m.payload), m);
    if ("ok" in c) return c;
    // virtio_snd_config is read-only for the driver; a migration restore holds nothing to restore.
    if (c.flags === VHOST_SET_CONFIG_TYPE_MIGRATION) return OK;
    return fail("the sound device's configuration space is read-only");
  }

  private setStatus(m: VhostMessage): Outcome {
    const v = this.decoded(decodeU64(m.payload, "status"), m);
    if (typeof v !== "bigint") return v;
    if (v > 0xffn) return fail(`status ${hex(v)} is more than 8 bits`);
    const status = Number(v);
    if (status === 0) return this.reset("status 0");
    // FEATURES_OK sticks only when the device accepted the features (virtio 1.3 §3.1.1).
    this.status = this.featuresOk ? status : status & ~VIRTIO_CONFIG_S_FEATURES_OK;
    return OK;
  }

  private currentStatus(): number {
    return this.status | (this.device.needsReset ? VIRTIO_CONFIG_S_NEEDS_RESET : 0);
  }

  private reset(why: string): Outcome {
    this.log("info", `device reset (${why})`);
    this.resetDevice();
    return OK;
  }

  /** Device reset: every stream stops, every ring is forgotten with its notifiers; memory and protocol features stay. */
  private resetDevice(): void {
    for (let i = 0; i < this.rings.length; i++) {
      const ring = this.rings[i]!;
      this.setKick(i, null, false);
      this.replaceFd(ring, "callFd", null);
      this.replaceFd(ring, "errFd", null);
      this.rings[i] = this.freshRing();
    }
    this.device.reset();
    this.featuresOk = false;
    this.status = 0;
    this.everStarted = false;
  }

  private log(level: LogLevel, message: string): void {
    this.options.log?.({ level, message });
  }
}
