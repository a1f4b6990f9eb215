/**
 * The guest's side of a vhost-user sound device, for tests that play QEMU:
 * real split or packed rings in the guest RAM that the front-end shares with
 * the back-end, and the Linux driver's control requests and I/O messages on
 * them. Kicks go through a callback (a mock kick, or a write to the kick
 * eventfd); waits poll the used rings, so the same code serves a back-end
 * that answers at once (MockTransport) and one that answers on a later
 * event-loop turn (the real socket).
 */
import { BumpAllocator } from "../../src/driver/allocator.js";
import type { Buf, DriverQueue, Used } from "../../src/driver/driver-queue.js";
import { PackedDriverQueue } from "../../src/driver/packed-driver.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import {
  PCM_RATE_HZ,
  VIRTIO_SND_R_CHMAP_INFO,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import {
  type ChmapInfo,
  type JackInfo,
  type PcmInfo,
  VIRTIO_SND_CHMAP_INFO_SIZE,
  VIRTIO_SND_JACK_INFO_SIZE,
  VIRTIO_SND_PCM_INFO_SIZE,
  decodeChmapInfo,
  decodeJackInfo,
  decodePcmInfo,
  encodePcmSetParams,
  encodeQueryInfo,
} from "../../src/spec/structs.js";
import type { VringAddr } from "../../src/vhost-user/messages.js";
export { signal } from "../signal.js";

/** Guest-physical address of the first byte of guest RAM (non-zero, so address bugs show). */
export const GUEST_BASE = 0x4000_0000;
/** Where the front-end has guest RAM in its own address space (what SET_VRING_ADDR carries). */
export const USER_BASE = 0x7f40_0000_0000;

export interface GuestSideOptions {
  /** Guest RAM: guest-physical GUEST_BASE onwards. */
  readonly ram: Uint8Array;
  readonly packed?: boolean;
  readonly eventIdx?: boolean;
  /** Chains of more than one buffer go in an indirect table, as Linux's driver puts them (needs VIRTIO_F_INDIRECT_DESC). */
  readonly indirect?: boolean;
  readonly queueSize?: number;
  /** Notify the device that queue `index` has new buffers. */
  readonly kick: (index: number) => void;
  /** Lets the device run (an event-loop turn); default nothing (the device answers at once). */
  readonly settle?: () => Promise<void>;
}

export interface ControlReply {
  status: number;
  used: number;
  payload: Uint8Array;
}

export interface IoCompletion {
  token: number;
  used: number;
  status: number;
  latency: number;
}

export class GuestSide {
  readonly memory: FlatMemory;
  readonly alloc: (size: number, align: number) => number;
  readonly queues: DriverQueue[] = [];
  /** Events the device posted, in order. */
  readonly events: { code: number; data: number }[] = [];
  private readonly eventBufs = new Map<number, number>();
  private readonly txStatus = new Map<number, number>();
  private readonly txSlots = new Map<number, { hdr: number; buf: number; status: number; len: number }>();
  private readonly ctlReq: number;
  private readonly ctlResp: number;
  /** How the guest notifies the device (replaceable: a new front-end may take over the same guest). */
  kick: (index: number) => void;

  constructor(private readonly options: GuestSideOptions) {
    this.kick = options.kick;
    this.memory = new FlatMemory(options.ram, GUEST_BASE);
    const bump = new BumpAllocator(GUEST_BASE, GUEST_BASE + options.ram.length);
    this.alloc = bump.alloc;
    for (let i = 0; i < 4; i++) {
      const opts = {
        mem: this.memory,
        alloc: this.alloc,
        size: options.queueSize ?? 64,
        eventIdx: options.eventIdx ?? true,
        indirect: options.indirect ?? false,
      };
      this.queues.push(options.packed ? new PackedDriverQueue(opts) : new SplitDriverQueue(opts));
    }
    this.ctlReq = this.alloc(4096, 16);
    this.ctlResp = this.alloc(16384, 16);
  }

  static userAddr(guestAddr: number): bigint {
    return BigInt(USER_BASE + (guestAddr - GUEST_BASE));
  }

  /** SET_VRING_ADDR's payload for queue `index`: the front-end's virtual addresses of its areas. */
  vringAddr(index: number): VringAddr {
    const l = this.queues[index]!.layout;
    return {
      index,
      flags: 0,
      descUser: GuestSide.userAddr(l.descAddr),
      usedUser: GuestSide.userAddr(l.deviceAddr),
      availUser: GuestSide.userAddr(l.driverAddr),
      logGuest: 0n,
    };
  }

  /** Makes a chain available and kicks when the device asks for it. */
  submit(index: number, out: readonly Buf[], inn: readonly Buf[]): number {
    const q = this.queues[index]!;
    const token = q.add(out, inn);
    if (q.kickNeeded()) this.kick(index);
    return token;
  }

  /** The next used element of queue `index`, waiting (polling) up to `timeoutMs`. */
  async waitUsed(index: number, timeoutMs = 3000): Promise<Used> {
    const q = this.queues[index]!;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const u = q.getUsed();
      if (u !== null) return u;
      if (Date.now() > deadline) throw new Error(`queue ${index}: nothing used within ${timeoutMs} ms`);
      await (this.options.settle?.() ?? Promise.resolve());
    }
  }

  async control(request: Uint8Array, responseSize: number): Promise<ControlReply> {
    this.memory.write(this.ctlReq, request, 0, request.length);
    this.memory.fill(this.ctlResp, responseSize, 0xee);
    const token = this.submit(
      VIRTIO_SND_VQ_CONTROL,
      [{ addr: this.ctlReq, len: request.length }],
      [{ addr: this.ctlResp, len: responseSize }],
    );
    const used = await this.waitUsed(VIRTIO_SND_VQ_CONTROL);
    if (used.token !== token) throw new Error(`control queue returned token ${used.token}, not ${token}`);
    const resp = new Uint8Array(responseSize);
    this.memory.read(this.ctlResp, resp, 0, responseSize);
    const status = used.len >= 4 ? new DataView(resp.buffer).getUint32(0, true) : -1;
    return { status, used: used.len, payload: resp.subarray(4, Math.max(4, used.len)) };
  }

  static u32s(...values: number[]): Uint8Array {
    const b = new Uint8Array(values.length * 4);
    const dv = new DataView(b.buffer);
    values.forEach((v, i) => dv.setUint32(i * 4, v, true));
    return b;
  }

  /** Fills the event queue with 8-byte buffers, as virtsnd_event_send_* does at probe. */
  queueEventBuffers(n: number): void {
    for (let i = 0; i < n; i++) {
      const addr = this.alloc(8, 8);
      const token = this.submit(VIRTIO_SND_VQ_EVENT, [], [{ addr, len: 8 }]);
      this.eventBufs.set(token, addr);
    }
  }

  /** Collects posted events (and requeues their buffers). */
  reapEvents(): number {
    const q = this.queues[VIRTIO_SND_VQ_EVENT]!;
    let n = 0;
    for (let u = q.getUsed(); u !== null; u = q.getUsed()) {
      const addr = this.eventBufs.get(u.token)!;
      this.eventBufs.delete(u.token);
      this.events.push({ code: this.memory.readU32(addr), data: this.memory.readU32(addr + 4) });
      const token = this.submit(VIRTIO_SND_VQ_EVENT, [], [{ addr, len: 8 }]);
      this.eventBufs.set(token, addr);
      n++;
    }
    return n;
  }

  /** The Linux probe: JACK_INFO, PCM_INFO, CHMAP_INFO (each skipped when its count is 0). */
  async probe(counts: { jacks: number; streams: number; chmaps: number }): Promise<{
    jacks: JackInfo[];
    streams: PcmInfo[];
    chmaps: ChmapInfo[];
  }> {
    const read = async <T>(
      code: number,
      n: number,
      size: number,
      decode: (dv: DataView, o: number) => T,
    ): Promise<T[]> => {
      if (n === 0) return [];
      const req = new Uint8Array(16);
      encodeQueryInfo(new DataView(req.buffer), 0, { code, startId: 0, count: n, size });
      const r = await this.control(req, 4 + n * size);
      if (r.status !== VIRTIO_SND_S_OK)
        throw new Error(`query 0x${code.toString(16)}: status 0x${r.status.toString(16)}`);
      const dv = new DataView(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength);
      return Array.from({ length: n }, (_, i) => decode(dv, i * size));
    };
    return {
      jacks: await read(VIRTIO_SND_R_JACK_INFO, counts.jacks, VIRTIO_SND_JACK_INFO_SIZE, decodeJackInfo),
      streams: await read(VIRTIO_SND_R_PCM_INFO, counts.streams, VIRTIO_SND_PCM_INFO_SIZE, decodePcmInfo),
      chmaps: await read(VIRTIO_SND_R_CHMAP_INFO, counts.chmaps, VIRTIO_SND_CHMAP_INFO_SIZE, decodeChmapInfo),
    };
  }

  async setParams(
    streamId: number,
    p: { bufferBytes: number; periodBytes: number; channels: number; format: number; rate: number },
  ): Promise<number> {
    const req = new Uint8Array(24);
    encodePcmSetParams(new DataView(req.buffer), 0, {
      code: VIRTIO_SND_R_PCM_SET_PARAMS,
      streamId,
      bufferBytes: p.bufferBytes,
      periodBytes: p.periodBytes,
      features: 0,
      channels: p.channels,
      format: p.format,
      rate: PCM_RATE_HZ.indexOf(p.rate),
    });
    return (await this.control(req, 4)).status;
  }

  async pcm(code: "prepare" | "start" | "stop" | "release", streamId: number): Promise<number> {
    const codes = {
      prepare: VIRTIO_SND_R_PCM_PREPARE,
      start: VIRTIO_SND_R_PCM_START,
      stop: VIRTIO_SND_R_PCM_STOP,
      release: VIRTIO_SND_R_PCM_RELEASE,
    };
    return (await this.control(GuestSide.u32s(codes[code], streamId), 4)).status;
  }

  /** Queues `data` on the TX queue as one message per period (xfer header, data, status); returns the tokens. */
  queueTx(streamId: number, data: Uint8Array, periodBytes: number): number[] {
    const tokens: number[] = [];
    for (let off = 0; off < data.length; off += periodBytes) {
      const n = Math.min(periodBytes, data.length - off);
      const hdr = this.alloc(4, 4);
      const buf = this.alloc(n, 64);
      const status = this.alloc(8, 8);
      this.memory.writeU32(hdr, streamId);
      this.memory.write(buf, data, off, n);
      this.memory.fill(status, 8, 0xee);
      const token = this.queues[VIRTIO_SND_VQ_TX]!.add(
        [
          { addr: hdr, len: 4 },
          { addr: buf, len: n },
        ],
        [{ addr: status, len: 8 }],
      );
      this.txStatus.set(token, status);
      tokens.push(token);
    }
    if (this.queues[VIRTIO_SND_VQ_TX]!.kickNeeded()) this.kick(VIRTIO_SND_VQ_TX);
    return tokens;
  }

  /**
   * Queues one period of `data` from slot `slot` of a ring of period buffers
   * at fixed addresses (made on first use), as Linux's driver reuses its ALSA
   * buffer; kicks when asked. Returns the token.
   */
  queueTxSlot(streamId: number, slot: number, data: Uint8Array): number {
    let s = this.txSlots.get(slot);
    if (s === undefined || s.len !== data.length) {
      s = {
        hdr: this.alloc(4, 4),
        buf: this.alloc(data.length, 64),
        status: this.alloc(8, 8),
        len: data.length,
      };
      this.txSlots.set(slot, s);
      this.memory.write(s.buf, data, 0, data.length);
    }
    this.memory.writeU32(s.hdr, streamId);
    this.memory.fill(s.status, 8, 0xee);
    const token = this.queues[VIRTIO_SND_VQ_TX]!.add(
      [
        { addr: s.hdr, len: 4 },
        { addr: s.buf, len: s.len },
      ],
      [{ addr: s.status, len: 8 }],
    );
    this.txStatus.set(token, s.status);
    if (this.queues[VIRTIO_SND_VQ_TX]!.kickNeeded()) this.kick(VIRTIO_SND_VQ_TX);
    return token;
  }

  /**
   * Queues `count` RX messages for stream `streamId`, one period each (xfer
   * header readable; data and status writable), and kicks when asked; returns the tokens.
   */
  queueRx(streamId: number, count: number, periodBytes: number): number[] {
    const q = this.queues[VIRTIO_SND_VQ_RX]!;
    const tokens: number[] = [];
    for (let i = 0; i < count; i++) {
      const hdr = this.alloc(4, 4);
      this.memory.writeU32(hdr, streamId);
      tokens.push(
        q.add(
          [{ addr: hdr, len: 4 }],
          [
            { addr: this.alloc(periodBytes, 64), len: periodBytes },
            { addr: this.alloc(8, 8), len: 8 },
          ],
        ),
      );
    }
    if (q.kickNeeded()) this.kick(VIRTIO_SND_VQ_RX);
    return tokens;
  }

  /** TX messages the device has completed since the last call. */
  reapTx(): IoCompletion[] {
    const q = this.queues[VIRTIO_SND_VQ_TX]!;
    const out: IoCompletion[] = [];
    for (let u = q.getUsed(); u !== null; u = q.getUsed()) {
      const s = this.txStatus.get(u.token);
      if (s === undefined) throw new Error(`TX returned unknown token ${u.token}`);
      this.txStatus.delete(u.token);
      out.push({
        token: u.token,
        used: u.len,
        status: this.memory.readU32(s),
        latency: this.memory.readU32(s + 4),
      });
    }
    return out;
  }
}
