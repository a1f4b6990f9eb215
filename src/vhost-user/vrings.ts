/**
 * The back-end's view of the device's rings: what the front-end configured
 * for each (size, addresses, base, enable), the notifier eventfds it handed
 * over, and starting and stopping each ring on the device once it has
 * everything it needs.
 *
 * The rings own their kick, call and error fds: each is closed exactly once,
 * when it is replaced, when the ring is stopped by GET_VRING_BASE, or on
 * reset().
 */
import type { VirtioSound } from "../device/virtio-sound.js";
import type { RegionMemory } from "../memory/region-memory.js";
import { VIRTIO_F_RING_PACKED, VIRTIO_SND_VQ_MAX } from "../spec/constants.js";
import type { Log } from "./log.js";
import { ACCEPTED, type Outcome, type Result, hex, ok, reasonOf, refuse } from "./result.js";
import type { VhostTransport } from "./transport.js";

/** The virtio sound device has four queues: control, event, tx, rx. */
export const BACKEND_QUEUE_NUM = VIRTIO_SND_VQ_MAX;

/** Largest virtqueue (split and packed). */
const MAX_QUEUE_SIZE = 32768;

/** Guest-physical addresses of a ring's three areas. */
export interface RingAddr {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
}

interface Ring {
  num: number | null;
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

function freshRing(): Ring {
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

const bit = (n: number): bigint => 1n << BigInt(n);

/** What the rings work with. */
export interface VringsHost {
  readonly device: VirtioSound;
  /** Guest memory, where a split ring's used index is read at its first start. */
  readonly memory: RegionMemory;
  /** The front-end's connection (null between connections): watches kicks, signals and closes fds. */
  transport(): VhostTransport | null;
  /** SET_FEATURES was accepted since the last reset: no ring starts before. */
  featuresOk(): boolean;
  readonly log: Log;
}

export class Vrings {
  private readonly rings: Ring[] = [];
  private startedSinceReset = false;

  constructor(private readonly host: VringsHost) {
    for (let i = 0; i < BACKEND_QUEUE_NUM; i++) this.rings.push(freshRing());
  }

  get count(): number {
    return this.rings.length;
  }

  /** Whether ring `index` is running on the device. */
  started(index: number): boolean {
    return this.rings[index]?.started ?? false;
  }

  /**
   * Every ring was stopped after one was started (since the last reset):
   * what a front-end restarting the device looks like.
   */
  get allStoppedAfterStart(): boolean {
    return this.startedSinceReset && this.rings.every((r) => !r.started);
  }

  /** `index` when there is such a ring, else a refusal. */
  check(index: number): Result<number> {
    const ring = this.ring(index);
    return ring.ok ? ok(index) : ring;
  }

  // ---- configuration (SET_VRING_*, GET_VRING_BASE) ---------------------------------------

  setNum(index: number, num: number): Outcome {
    const ring = this.ring(index);
    if (!ring.ok) return ring;
    if (num < 1 || num > MAX_QUEUE_SIZE) return refuse(`ring size ${num} is not in 1..${MAX_QUEUE_SIZE}`);
    if (ring.value.num === num) return ACCEPTED;
    ring.value.num = num;
    this.restart(index);
    return ACCEPTED;
  }

  /** Ring `index` (checked with check()) gets new guest-physical addresses. */
  setAddr(index: number, addr: RingAddr): Outcome {
    const ring = this.ring(index);
    if (!ring.ok) return ring;
    const old = ring.value.addr;
    if (old !== null && old.desc === addr.desc && old.avail === addr.avail && old.used === addr.used)
      return ACCEPTED;
    ring.value.addr = addr;
    this.restart(index);
    return ACCEPTED;
  }

  setBase(index: number, base: number): Outcome {
    const ring = this.ring(index);
    if (!ring.ok) return ring;
    if (ring.value.started)
      this.host.log("warn", `SET_VRING_BASE on running ring ${index}: used at its next start`);
    ring.value.base = base;
    return ACCEPTED;
  }

  /** GET_VRING_BASE: stops the ring and forgets its notifiers; the base to restart it from. */
  getBase(index: number): Result<number> {
    const ring = this.ring(index);
    if (!ring.ok) return ring;
    this.stop(index);
    // The ring is stopped: like libvhost-user, forget its notifiers (the front-end sends new ones to restart it).
    this.setKick(index, null, false);
    this.replaceFd(ring.value, "callFd", null);
    this.replaceFd(ring.value, "errFd", null);
    ring.value.kickPending = false;
    return ok(ring.value.base);
  }

  /**
   * SET_VRING_KICK: the ring takes `fd` (null: no fd, the ring is polled)
   * unless this refuses. A refusal leaves `fd` to the caller to close. The
   * ring starts on startIfReady(), once the caller has noted that the ring
   * owns `fd` (starting may throw; the fd must not then be closed twice).
   */
  setKickFd(index: number, fd: number | null): Outcome {
    const ring = this.ring(index);
    if (!ring.ok) return ring;
    try {
      this.setKick(index, fd, true);
    } catch (err) {
      return refuse(reasonOf(err));
    }
    return ACCEPTED;
  }

  /** SET_VRING_CALL / SET_VRING_ERR: the ring takes `fd` (null: none) unless this refuses. */
  setNotifierFd(index: number, which: "call" | "err", fd: number | null): Outcome {
    const ring = this.ring(index);
    if (!ring.ok) return ring;
    this.replaceFd(ring.value, which === "call" ? "callFd" : "errFd", fd);
    return ACCEPTED;
  }

  setEnable(index: number, value: number): Outcome {
    const ring = this.ring(index);
    if (!ring.ok) return ring;
    if (value > 1) return refuse(`enable value ${value} is neither 0 nor 1`);
    this.enable(index, value === 1);
    return ACCEPTED;
  }

  /** Enables or disables every ring. */
  enableAll(enabled: boolean): void {
    for (let i = 0; i < this.rings.length; i++) this.enable(i, enabled);
  }

  // ---- notifications -----------------------------------------------------------------------

  /** Ring `index` was kicked: the device looks at it, or later if the ring is disabled. */
  kicked(index: number): void {
    const ring = this.rings[index];
    if (ring === undefined || !ring.started) return;
    if (!ring.enabled) {
      ring.kickPending = true;
      return;
    }
    this.host.device.notify(index);
  }

  /** The device interrupts ring `index`: signal its call fd. */
  call(index: number): void {
    const fd = this.rings[index]?.callFd;
    if (fd !== null && fd !== undefined) this.host.transport()?.signal(fd);
  }

  /** The device needs a reset: signal every error fd. */
  signalErrors(): void {
    for (const ring of this.rings) if (ring.errFd !== null) this.host.transport()?.signal(ring.errFd);
  }

  /** Device reset: every ring is forgotten, its fds closed. (The device itself is reset by the caller.) */
  reset(): void {
    for (let i = 0; i < this.rings.length; i++) {
      const ring = this.rings[i]!;
      this.setKick(i, null, false);
      this.replaceFd(ring, "callFd", null);
      this.replaceFd(ring, "errFd", null);
      this.rings[i] = freshRing();
    }
    this.startedSinceReset = false;
  }

  // ---- internals ------------------------------------------------------------------------------

  private ring(index: number): Result<Ring> {
    const ring = this.rings[index];
    return ring !== undefined ? ok(ring) : refuse(`no ring ${index} (the device has ${BACKEND_QUEUE_NUM})`);
  }

  private get packed(): boolean {
    return (this.host.device.negotiatedFeatures & bit(VIRTIO_F_RING_PACKED)) !== 0n;
  }

  /**
   * Replaces ring `index`'s kick source (closing the old fd), or removes it
   * (`set` false). Throws, changing nothing, when the transport cannot watch `fd`.
   */
  private setKick(index: number, fd: number | null, set: boolean): void {
    const ring = this.rings[index]!;
    const transport = this.host.transport();
    if (set) transport?.watchKick(index, fd);
    else transport?.unwatchKick(index);
    if (ring.kickFd !== null && ring.kickFd !== fd) transport?.closeFd(ring.kickFd);
    ring.kickFd = set ? fd : null;
    ring.kickSet = set;
  }

  private replaceFd(ring: Ring, which: "callFd" | "errFd", fd: number | null): void {
    const old = ring[which];
    if (old !== null && old !== fd) this.host.transport()?.closeFd(old);
    ring[which] = fd;
  }

  private enable(index: number, enabled: boolean): void {
    const ring = this.rings[index]!;
    const was = ring.enabled;
    ring.enabled = enabled;
    if (!enabled || was) return;
    if (!ring.started) {
      this.startIfReady(index);
    } else if (ring.kickPending) {
      ring.kickPending = false;
      this.host.device.notify(index);
    }
  }

  /** Starts ring `index` on the device when it has everything it needs. */
  startIfReady(index: number): void {
    const ring = this.rings[index]!;
    if (ring.started || !ring.enabled || !ring.kickSet || ring.num === null || ring.addr === null) return;
    const why = this.cannotStart(ring);
    if (why !== null) {
      this.host.log("warn", `ring ${index} not started: ${why}`);
      if (ring.errFd !== null) this.host.transport()?.signal(ring.errFd);
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
      this.host.device.setupQueue(index, layout, base);
    } catch (err) {
      this.host.log("warn", `ring ${index} not started: ${reasonOf(err)}`);
      return;
    }
    ring.started = true;
    ring.kickPending = false;
    ring.fresh = false;
    this.startedSinceReset = true;
    this.host.log(
      "debug",
      `ring ${index} started: ${ring.num} entries at ${hex(ring.addr.desc)}/${hex(ring.addr.avail)}/${hex(ring.addr.used)}, base ${hex(base)}`,
    );
    // Buffers may already be waiting (a restart, or a kick that came first).
    this.host.device.notify(index);
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
      used = this.host.memory.readU16(ring.addr!.used + 2);
    } catch {
      return base; // The used ring is outside memory: the device reports that when it starts.
    }
    const lag = (base - used) & 0xffff;
    if (lag === 0 || lag > ring.num!) return base;
    this.host.log(
      "warn",
      `ring ${index}: ${lag} buffers were in flight when it stopped; taking them again from ${used}`,
    );
    return used;
  }

  private cannotStart(ring: Ring): string | null {
    if (!this.host.featuresOk()) return "SET_FEATURES has not been accepted";
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
    const b = this.host.device.stopQueue(index) & 0xffff;
    // Packed: avail index and wrap in the low half; the used half equals it (every buffer taken was used).
    ring.base = this.packed ? (b | (b << 16)) >>> 0 : b;
    ring.started = false;
  }

  /** A running ring whose size or addresses changed: stop it and start it again with its position. */
  private restart(index: number): void {
    const ring = this.rings[index]!;
    if (ring.started) {
      this.stop(index);
      this.host.log("debug", `ring ${index} reconfigured while running: restarting at base ${ring.base}`);
    }
    this.startIfReady(index);
  }
}
