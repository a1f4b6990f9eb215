/**
 * QEMU's side of a real vhost-user socket, for tests: guest RAM in a memfd,
 * eventfds for kicks and calls, and the messages QEMU 10's
 * vhost-user-snd-pci sends at realize and at DRIVER_OK. Everything it opens
 * goes on the `cleanup` list it is given.
 */
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
} from "../../src/spec/constants.js";
import { decodeSndConfig } from "../../src/spec/structs.js";
import {
  VHOST_USER_ADD_MEM_REG,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_GET_CONFIG,
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_MAX_MEM_SLOTS,
  VHOST_USER_GET_PROTOCOL_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_HDR_SIZE,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_SET_FEATURES,
  VHOST_USER_SET_MEM_TABLE,
  VHOST_USER_SET_OWNER,
  VHOST_USER_SET_PROTOCOL_FEATURES,
  VHOST_USER_SET_VRING_ADDR,
  VHOST_USER_SET_VRING_BASE,
  VHOST_USER_SET_VRING_CALL,
  VHOST_USER_SET_VRING_ENABLE,
  VHOST_USER_SET_VRING_KICK,
  VHOST_USER_SET_VRING_NUM,
  VHOST_USER_VERSION,
  decodeConfig,
  decodeHeader,
  decodeU64,
  encodeConfig,
  encodeMemReg,
  encodeMemTable,
  encodeMessage,
  encodeU64,
  encodeVringAddr,
  encodeVringFile,
  encodeVringState,
} from "../../src/vhost-user/messages.js";
import type { NativeBinding } from "../../src/vhost-user/native.js";
import { GUEST_BASE, GuestSide, USER_BASE } from "./guest-side.js";

const bit = (n: number): bigint => 1n << BigInt(n);
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const RAM = 8 * 1024 * 1024;

/** Polls `cond` every millisecond (letting the event loop run) until it holds. */
export async function until(what: string, cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(1);
  }
}

/** The front-end checks what the back-end answers; a wrong answer fails the caller. */
function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`vhost-user front-end: ${what}`);
}

export interface Reply {
  request: number;
  flags: number;
  payload: Uint8Array;
}

/** QEMU's side of the socket, guest RAM and eventfds. */
export class NativeFrontEnd {
  readonly fd: number;
  readonly memFd: number;
  readonly ram: ArrayBuffer;
  readonly guest: GuestSide;
  readonly kickFds: number[] = [];
  readonly callFds: number[] = [];
  private closed = false;

  constructor(
    private readonly n: NativeBinding,
    path: string,
    cleanup: (() => void)[],
    readonly packed = false,
    /** Guest RAM, bytes (a sparse memfd: pages cost memory once touched). */
    ramBytes = RAM,
    /** Acks VIRTIO_F_INDIRECT_DESC and puts every chain of more than one buffer in an indirect table, as Linux does. */
    readonly indirect = false,
  ) {
    this.fd = n.connect(path);
    cleanup.push(() => this.close());
    this.memFd = n.memfd("guest-ram", ramBytes);
    cleanup.push(() => n.close(this.memFd));
    this.ram = n.mmap(this.memFd, ramBytes, 0);
    cleanup.push(() => n.munmap(this.ram));
    for (let i = 0; i < 4; i++) {
      const k = n.eventfd(0);
      const c = n.eventfd(0);
      cleanup.push(
        () => n.close(k),
        () => n.close(c),
      );
      this.kickFds.push(k);
      this.callFds.push(c);
    }
    this.guest = new GuestSide({
      ram: new Uint8Array(this.ram),
      packed,
      indirect,
      kick: (i) => n.eventfdWrite(this.kickFds[i]!, 1),
      settle: () => sleep(1),
    });
  }

  send(request: number, payload?: Uint8Array, fds?: number[], flags = VHOST_USER_VERSION): void {
    const m = encodeMessage(request, flags, payload);
    let off = 0;
    while (off < m.length) {
      const sent = this.n.sendmsg(this.fd, m.subarray(off), off === 0 ? fds : undefined);
      if (sent > 0) off += sent;
    }
  }

  async reply(timeoutMs = 3000): Promise<Reply> {
    const header = await this.read(VHOST_USER_HDR_SIZE, timeoutMs);
    const h = decodeHeader(header);
    const payload = h.size === 0 ? new Uint8Array(0) : await this.read(h.size, timeoutMs);
    return { request: h.request, flags: h.flags, payload };
  }

  private async read(n: number, timeoutMs: number): Promise<Uint8Array> {
    const buf = new Uint8Array(n);
    let got = 0;
    const deadline = Date.now() + timeoutMs;
    while (got < n) {
      const r = this.n.recvmsg(this.fd, buf.subarray(got), 8);
      for (const fd of r.fds) this.n.close(fd);
      if (r.bytes === 0) throw new Error("the back-end closed the connection");
      if (r.bytes > 0) got += r.bytes;
      else if (Date.now() > deadline) throw new Error("no reply");
      else await sleep(1);
    }
    return buf;
  }

  async u64(request: number): Promise<bigint> {
    this.send(request);
    const r = await this.reply();
    check(r.request === request, `reply to ${request} names request ${r.request}`);
    check(r.flags === 0x5, `reply flags 0x${r.flags.toString(16)}, not 0x5`);
    const v = decodeU64(r.payload);
    if (!v.ok) throw new Error(v.reason);
    return v.value;
  }

  /** A request with NEED_REPLY; resolves when the back-end acks it with 0. */
  async acked(request: number, payload: Uint8Array, fds?: number[]): Promise<void> {
    this.send(request, payload, fds, VHOST_USER_VERSION | VHOST_USER_NEED_REPLY_MASK);
    const r = await this.reply();
    check(r.request === request, `ack of ${request} names request ${r.request}`);
    const v = decodeU64(r.payload);
    check(v.ok && v.value === 0n, `request ${request} was not acked with 0`);
  }

  /** Realize and DRIVER_OK, as QEMU 10's vhost-user-snd-pci does them (for the default configuration). */
  async connect(
    memTable: "set" | "add",
    counts = { jacks: 2, streams: 2, chmaps: 6 },
    /** Further feature bits to ack (VIRTIO_SND_F_CTLS...). */
    extraFeatures = 0n,
  ): Promise<void> {
    const features = await this.u64(VHOST_USER_GET_FEATURES);
    const protocol = await this.u64(VHOST_USER_GET_PROTOCOL_FEATURES);
    this.send(VHOST_USER_SET_PROTOCOL_FEATURES, encodeU64(protocol));
    check((await this.u64(VHOST_USER_GET_QUEUE_NUM)) === 4n, "GET_QUEUE_NUM is not 4");
    check((await this.u64(VHOST_USER_GET_MAX_MEM_SLOTS)) >= 8n, "GET_MAX_MEM_SLOTS is below 8");
    this.send(VHOST_USER_SET_OWNER);
    await this.u64(VHOST_USER_GET_FEATURES);
    this.send(VHOST_USER_GET_CONFIG, encodeConfig({ offset: 0, flags: 0, data: new Uint8Array(16) }));
    const cfg = decodeConfig((await this.reply()).payload);
    check(cfg.ok, "GET_CONFIG answer malformed");
    if (cfg.ok) {
      const c = decodeSndConfig(new DataView(cfg.value.data.buffer), 0);
      check(
        c.jacks === counts.jacks && c.streams === counts.streams && c.chmaps === counts.chmaps,
        `config ${JSON.stringify(c)} is not ${JSON.stringify(counts)}`,
      );
    }

    let acked = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX) | bit(VHOST_USER_F_PROTOCOL_FEATURES);
    if (this.packed) acked |= bit(VIRTIO_F_RING_PACKED);
    if (this.indirect) acked |= bit(VIRTIO_F_INDIRECT_DESC);
    acked |= extraFeatures;
    check((acked & ~features) === 0n, "the back-end does not offer the features a guest acks");
    this.send(VHOST_USER_SET_FEATURES, encodeU64(acked));
    const region = {
      guestAddr: BigInt(GUEST_BASE),
      size: BigInt(this.ram.byteLength),
      userAddr: BigInt(USER_BASE),
      mmapOffset: 0n,
    };
    if (memTable === "set")
      await this.acked(VHOST_USER_SET_MEM_TABLE, encodeMemTable([region]), [this.memFd]);
    else await this.acked(VHOST_USER_ADD_MEM_REG, encodeMemReg(region), [this.memFd]);
    for (let i = 0; i < 4; i++) {
      this.send(VHOST_USER_SET_VRING_NUM, encodeVringState({ index: i, num: 64 }));
      this.send(
        VHOST_USER_SET_VRING_BASE,
        encodeVringState({ index: i, num: this.packed ? 0x8000_8000 : 0 }),
      );
      this.send(VHOST_USER_SET_VRING_ADDR, encodeVringAddr(this.guest.vringAddr(i)));
      this.send(VHOST_USER_SET_VRING_KICK, encodeVringFile({ index: i, noFd: false }), [this.kickFds[i]!]);
      this.send(VHOST_USER_SET_VRING_CALL, encodeVringFile({ index: i, noFd: false }), [this.callFds[i]!]);
    }
    for (let i = 0; i < 4; i++)
      await this.acked(VHOST_USER_SET_VRING_ENABLE, encodeVringState({ index: i, num: 1 }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.n.close(this.fd);
  }
}
