/**
 * The vhost-user back-end of the virtio sound device: the protocol state
 * machine (QEMU docs/interop/vhost-user.rst) on a VirtioSound, over any
 * VhostTransport.
 *
 * The front-end (QEMU's vhost-user-snd-pci) owns the virtio transport; this
 * back-end owns the device. This module decodes each message and dispatches
 * it: the memory table (memory-table.ts) maps the front-end's regions into
 * the RegionMemory the device reads, the rings (vrings.ts) keep what the
 * front-end configured and the notifier fds it handed over and start each
 * ring on the device once it has a size, addresses, a kick and is enabled;
 * kicks become device.notify() and the device's interrupts writes to the
 * call eventfds.
 *
 * Nothing a front-end sends makes a method throw: a message with a malformed
 * payload, missing or extra file descriptors, or a request this back-end does
 * not implement is refused (a failure reply when the front-end waits for one,
 * else a logged warning) and its file descriptors are closed.
 */
import { VirtioSndError } from "../errors.js";
import type { RegionMemory } from "../memory/region-memory.js";
import { VirtioSound, type VirtioSoundOptions } from "../device/virtio-sound.js";
import { VIRTIO_CONFIG_S_FEATURES_OK, VIRTIO_CONFIG_S_NEEDS_RESET } from "../spec/constants.js";
import type { LogEntry, LogLevel } from "./log.js";
import { MemoryTable } from "./memory-table.js";
import {
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
} from "./messages.js";
import { ACCEPTED, type Outcome, type Refusal, type Result, hex, reasonOf, refuse, reply } from "./result.js";
import type { VhostMessage, VhostTransport } from "./transport.js";
import { BACKEND_QUEUE_NUM, Vrings } from "./vrings.js";

export type { LogEntry, LogLevel } from "./log.js";
export { BACKEND_QUEUE_NUM } from "./vrings.js";

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

/**
 * The vhost-user back-end: one VirtioSound, served to one front-end
 * connection at a time (attach a transport; on its close the device is reset
 * and the memory unmapped, ready for the next).
 */
export class VhostUserBackend {
  readonly device: VirtioSound;

  private transport: VhostTransport | null = null;
  /** The front-end's memory regions, mapped. */
  private readonly table: MemoryTable;
  private readonly rings: Vrings;
  private protocolFeatures = 0n;
  private owner = false;
  /** SET_FEATURES was accepted since the last reset. */
  private featuresOk = false;
  private status = 0;

  constructor(private readonly options: VhostUserBackendOptions) {
    const log = (level: LogLevel, message: string): void => this.log(level, message);
    this.table = new MemoryTable(log, options.maxMemSlots, options.mapChunkBytes);
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
    this.rings = new Vrings({
      device: this.device,
      memory: this.memory,
      transport: () => this.transport,
      featuresOk: () => this.featuresOk,
      log,
    });
  }

  /** Guest memory as the memory table describes it; the device reads the rings and buffers through it. */
  get memory(): RegionMemory {
    return this.table.memory;
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
    return this.rings.started(index);
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
      outcome = refuse(`internal error: ${reasonOf(err)}`);
    }
    for (const fd of m.fds) if (!kept.has(fd)) transport.closeFd(fd);
    const name = requestName(m.request);
    if (!outcome.ok) this.log("warn", `refused ${name}: ${outcome.reason}`);
    if (outcome.ok && outcome.value !== undefined) {
      transport.send(encodeReply(m.request, outcome.value));
    } else if (alwaysReplies(m.request)) {
      // The front-end waits for a reply: an empty one is the spec's failure for GET_CONFIG and a bad size for the rest.
      transport.send(encodeReply(m.request));
    } else if ((m.flags & VHOST_USER_NEED_REPLY_MASK) !== 0 && this.has(VHOST_USER_PROTOCOL_F_REPLY_ACK)) {
      transport.send(encodeReply(m.request, encodeU64(outcome.ok ? 0n : 1n)));
    }
  }

  private onKick(transport: VhostTransport, index: number): void {
    if (transport !== this.transport) return;
    this.rings.kicked(index);
  }

  private onClosed(transport: VhostTransport, reason: Error | null): void {
    if (transport !== this.transport) return;
    this.resetDevice();
    this.table.clear();
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
    this.rings.call(index);
  }

  private needsReset(error: Error): void {
    this.log("error", `the device needs a reset: ${error.message}`);
    this.rings.signalErrors();
  }

  // ---- messages -----------------------------------------------------------------------------

  private handle(m: VhostMessage, kept: Set<number>): Outcome {
    this.log("debug", `${requestName(m.request)} (${m.payload.length} bytes, ${m.fds.length} fds)`);
    if (m.fds.length > VHOST_USER_MAX_FDS)
      return refuse(`${m.fds.length} file descriptors (at most ${VHOST_USER_MAX_FDS})`);
    switch (m.request) {
      case VHOST_USER_GET_FEATURES:
        return this.noPayload(m) ?? reply(encodeU64(this.features));
      case VHOST_USER_SET_FEATURES:
        return this.setFeatures(m);
      case VHOST_USER_GET_PROTOCOL_FEATURES:
        return this.noPayload(m) ?? reply(encodeU64(BACKEND_PROTOCOL_FEATURES));
      case VHOST_USER_SET_PROTOCOL_FEATURES:
        return this.setProtocolFeatures(m);
      case VHOST_USER_SET_OWNER:
        return this.noPayload(m) ?? this.setOwner();
      case VHOST_USER_RESET_OWNER:
        // Deprecated; the spec recommends ignoring it or disabling the rings.
        return this.noPayload(m) ?? this.disableAll();
      case VHOST_USER_GET_QUEUE_NUM:
        return this.noPayload(m) ?? reply(encodeU64(BigInt(BACKEND_QUEUE_NUM)));
      case VHOST_USER_GET_MAX_MEM_SLOTS:
        return this.noPayload(m) ?? reply(encodeU64(BigInt(this.table.maxSlots)));
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
        return this.noPayload(m) ?? reply(encodeU64(BigInt(this.currentStatus())));
      default:
        return refuse("not supported by this back-end");
    }
  }

  private has(feature: number): boolean {
    return (this.protocolFeatures & bit(feature)) !== 0n;
  }

  /** A refusal when the message has a payload or fds it should not have. */
  private noPayload(m: VhostMessage): Refusal | null {
    if (m.payload.length !== 0) return refuse(`unexpected payload of ${m.payload.length} bytes`);
    return m.fds.length === 0 ? null : refuse(`unexpected file descriptors (${m.fds.length})`);
  }

  /** A decoded payload, refused unless the message came with exactly `fds` file descriptors. */
  private decoded<T>(d: Result<T>, m: VhostMessage, fds = 0): Result<T> {
    if (!d.ok) return d;
    if (m.fds.length !== fds) return refuse(`${m.fds.length} file descriptors, expected ${fds}`);
    return d;
  }

  private setFeatures(m: VhostMessage): Outcome {
    const d = this.decoded(decodeU64(m.payload, "features"), m);
    if (!d.ok) return d;
    const v = d.value;
    const unknown = v & ~this.features;
    if (unknown !== 0n) return refuse(`features ${hex(unknown)} were not offered`);
    if (this.rings.allStoppedAfterStart) {
      // Every ring stopped, then features again: QEMU restarting the device after the guest reset it
      // (or after a VM stop). QEMU's vhost-user-snd sends no status 0, so this is where the reset shows.
      this.reset("restart after every ring stopped");
    }
    const virtio = v & ~bit(VHOST_USER_F_PROTOCOL_FEATURES);
    this.featuresOk = this.device.setDriverFeatures(virtio);
    if (!this.featuresOk) return refuse(`the device refuses features ${hex(virtio)} (VERSION_1 is required)`);
    if ((v & bit(VHOST_USER_F_PROTOCOL_FEATURES)) === 0n) {
      // Without VHOST_USER_F_PROTOCOL_FEATURES every ring is enabled at once.
      this.rings.enableAll(true);
    }
    return ACCEPTED;
  }

  private setProtocolFeatures(m: VhostMessage): Outcome {
    const d = this.decoded(decodeU64(m.payload, "protocol features"), m);
    if (!d.ok) return d;
    const unknown = d.value & ~BACKEND_PROTOCOL_FEATURES;
    if (unknown !== 0n) return refuse(`protocol features ${hex(unknown)} were not offered`);
    this.protocolFeatures = d.value;
    return ACCEPTED;
  }

  private setOwner(): Outcome {
    if (this.owner) this.log("debug", "SET_OWNER again on the same connection");
    this.owner = true;
    return ACCEPTED;
  }

  private disableAll(): Outcome {
    this.rings.enableAll(false);
    return ACCEPTED;
  }

  // ---- memory table ------------------------------------------------------------------------

  private setMemTable(m: VhostMessage): Outcome {
    const table = decodeMemTable(m.payload);
    if (!table.ok) return table;
    return this.table.replace(table.value, m.fds, this.transport!);
  }

  private addMemReg(m: VhostMessage): Outcome {
    const d = this.decoded(decodeMemReg(m.payload), m, 1);
    if (!d.ok) return d;
    return this.table.add(d.value, m.fds[0]!, this.transport!);
  }

  private remMemReg(m: VhostMessage): Outcome {
    // The spec allows (and says to close) one fd here, for old front-ends that sent one.
    const d = this.decoded(decodeMemReg(m.payload), m, m.fds.length === 1 ? 1 : 0);
    if (!d.ok) return d;
    return this.table.remove(d.value);
  }

  // ---- rings --------------------------------------------------------------------------------

  private setVringNum(m: VhostMessage): Outcome {
    const s = this.decoded(decodeVringState(m.payload, "SET_VRING_NUM"), m);
    if (!s.ok) return s;
    return this.rings.setNum(s.value.index, s.value.num);
  }

  private setVringAddr(m: VhostMessage): Outcome {
    const d = this.decoded(decodeVringAddr(m.payload), m);
    if (!d.ok) return d;
    const a = d.value;
    const known = this.rings.check(a.index);
    if (!known.ok) return known;
    // Ring addresses are the front-end's virtual addresses: the memory table turns them into guest-physical ones.
    const desc = this.table.userToGuest(a.descUser);
    const avail = this.table.userToGuest(a.availUser);
    const used = this.table.userToGuest(a.usedUser);
    if (desc === null || avail === null || used === null) {
      const which = desc === null ? a.descUser : avail === null ? a.availUser : a.usedUser;
      return refuse(
        `ring ${a.index}: address ${hex(which)} is not in the memory table (${this.table.describe()})`,
      );
    }
    return this.rings.setAddr(a.index, { desc, avail, used });
  }

  private setVringBase(m: VhostMessage): Outcome {
    const s = this.decoded(decodeVringState(m.payload, "SET_VRING_BASE"), m);
    if (!s.ok) return s;
    return this.rings.setBase(s.value.index, s.value.num);
  }

  private getVringBase(m: VhostMessage): Outcome {
    const s = this.decoded(decodeVringState(m.payload, "GET_VRING_BASE"), m);
    if (!s.ok) return s;
    const { index } = s.value;
    const base = this.rings.getBase(index);
    if (!base.ok) return base;
    return reply(encodeVringState({ index, num: base.value }));
  }

  /** SET_VRING_KICK, _CALL, _ERR: an fd the ring keeps (in `kept`) when accepted, else the caller closes it. */
  private setVringFile(m: VhostMessage, kept: Set<number>): Outcome {
    const f = decodeVringFile(m.payload);
    if (!f.ok) return f;
    const { index, noFd } = f.value;
    const expected = noFd ? 0 : 1;
    if (m.fds.length !== expected)
      return refuse(
        `${m.fds.length} file descriptors, expected ${expected}${noFd ? " (the no-fd flag is set)" : ""}`,
      );
    const fd = noFd ? null : m.fds[0]!;
    const kick = m.request === VHOST_USER_SET_VRING_KICK;
    const outcome = kick
      ? this.rings.setKickFd(index, fd)
      : this.rings.setNotifierFd(index, m.request === VHOST_USER_SET_VRING_CALL ? "call" : "err", fd);
    if (!outcome.ok) return outcome;
    // The ring owns the fd from here: noted before anything that may throw, so it is closed once.
    if (fd !== null) kept.add(fd);
    if (kick) this.rings.startIfReady(index);
    return outcome;
  }

  private setVringEnable(m: VhostMessage): Outcome {
    const s = this.decoded(decodeVringState(m.payload, "SET_VRING_ENABLE"), m);
    if (!s.ok) return s;
    return this.rings.setEnable(s.value.index, s.value.num);
  }

  // ---- config space, status, reset ------------------------------------------------------------------

  private getConfig(m: VhostMessage): Outcome {
    const d = this.decoded(decodeConfig(m.payload), m);
    if (!d.ok) return d;
    const c = d.value;
    const data = this.device.readConfig(c.offset, c.size);
    return reply(encodeConfig({ offset: c.offset, flags: c.flags, data }));
  }

  private setConfig(m: VhostMessage): Outcome {
    const d = this.decoded(decodeConfig(m.payload), m);
    if (!d.ok) return d;
    // virtio_snd_config is read-only for the driver; a migration restore holds nothing to restore.
    if (d.value.flags === VHOST_SET_CONFIG_TYPE_MIGRATION) return ACCEPTED;
    return refuse("the sound device's configuration space is read-only");
  }

  private setStatus(m: VhostMessage): Outcome {
    const d = this.decoded(decodeU64(m.payload, "status"), m);
    if (!d.ok) return d;
    const v = d.value;
    if (v > 0xffn) return refuse(`status ${hex(v)} is more than 8 bits`);
    const status = Number(v);
    if (status === 0) return this.reset("status 0");
    // FEATURES_OK sticks only when the device accepted the features (virtio 1.3 §3.1.1).
    this.status = this.featuresOk ? status : status & ~VIRTIO_CONFIG_S_FEATURES_OK;
    return ACCEPTED;
  }

  private currentStatus(): number {
    return this.status | (this.device.needsReset ? VIRTIO_CONFIG_S_NEEDS_RESET : 0);
  }

  private reset(why: string): Outcome {
    this.log("info", `device reset (${why})`);
    this.resetDevice();
    return ACCEPTED;
  }

  /** Device reset: every stream stops, every ring is forgotten with its notifiers; memory and protocol features stay. */
  private resetDevice(): void {
    this.rings.reset();
    this.device.reset();
    this.featuresOk = false;
    this.status = 0;
  }

  private log(level: LogLevel, message: string): void {
    this.options.log?.({ level, message });
  }
}
