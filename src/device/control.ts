import { frameBits } from "../audio/pcm-params.js";
import { GuestMemoryError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import {
  PCM_RATE_HZ,
  VIRTIO_SND_PCM_F_SHMEM_GUEST,
  VIRTIO_SND_PCM_F_SHMEM_HOST,
  VIRTIO_SND_R_CHMAP_INFO,
  VIRTIO_SND_R_CTL_ENUM_ITEMS,
  VIRTIO_SND_R_CTL_INFO,
  VIRTIO_SND_R_CTL_READ,
  VIRTIO_SND_R_CTL_TLV_COMMAND,
  VIRTIO_SND_R_CTL_TLV_READ,
  VIRTIO_SND_R_CTL_TLV_WRITE,
  VIRTIO_SND_R_CTL_WRITE,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_JACK_REMAP,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
} from "../spec/constants.js";
import {
  VIRTIO_SND_CHMAP_INFO_SIZE,
  VIRTIO_SND_CTL_HDR_SIZE,
  VIRTIO_SND_CTL_INFO_PACKED_SIZE,
  VIRTIO_SND_CTL_TLV_HEADER_SIZE,
  VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE,
  VIRTIO_SND_CTL_VALUE_SIZE,
  VIRTIO_SND_HDR_SIZE,
  VIRTIO_SND_JACK_INFO_SIZE,
  VIRTIO_SND_JACK_REMAP_SIZE,
  VIRTIO_SND_PCM_HDR_SIZE,
  VIRTIO_SND_PCM_INFO_SIZE,
  VIRTIO_SND_PCM_SET_PARAMS_SIZE,
  VIRTIO_SND_QUERY_INFO_SIZE,
  ctlInfoSize,
  decodeJackRemap,
  decodePcmSetParams,
  decodeQueryInfo,
  encodeChmapInfo,
  encodeJackInfo,
  encodePcmInfo,
} from "../spec/structs.js";
import type { PcmStream } from "../stream/pcm-stream.js";
import { type Chain, readFromChain, writeToChain } from "../virtqueue/chain.js";
import type { ChmapInfo, JackState, StreamInfo } from "./config.js";
import type { ControlElements } from "./controls.js";

/** Requests up to this size are read into a buffer kept for them (CTL_WRITE, 520 bytes, is the largest fixed-size one). */
const SMALL_REQUEST = 1024;
/** Largest control request the device reads: a CTL_TLV_WRITE/COMMAND with a 64 KiB value. */
const MAX_REQUEST =
  VIRTIO_SND_CTL_HDR_SIZE + VIRTIO_SND_CTL_TLV_HEADER_SIZE + VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE;

/** What the control handler works on: the device's items and streams. */
export interface ControlContext {
  readonly memory: GuestMemory;
  readonly streamInfos: readonly StreamInfo[];
  readonly streams: readonly PcmStream[];
  readonly jacks: readonly JackState[];
  readonly chmaps: readonly ChmapInfo[];
  /** A jack's configuration changed (remap). */
  jackChanged(jackId: number): void;
  /** Control elements (§5.14.6.10); absent when none are configured. */
  readonly controls?: ControlElements;
  /** Whether VIRTIO_SND_F_CTLS was negotiated: without it CTL_* requests are NOT_SUPP. */
  ctlsNegotiated?(): boolean;
  /** Largest buffer_bytes each stream accepts (DeviceLimits.maxBufferBytes); none when absent. */
  readonly maxBufferBytes?: readonly number[];
  /** Largest response payload one request may ask for (DeviceLimits.maxControlBytes); none when absent. */
  readonly maxControlBytes?: number;
}

/** The outcome of one control request: the status and the bytes of payload after the header. */
interface Answer {
  status: number;
  payload?: Uint8Array;
}

const ok: Answer = { status: VIRTIO_SND_S_OK };
const badMsg: Answer = { status: VIRTIO_SND_S_BAD_MSG };
const notSupp: Answer = { status: VIRTIO_SND_S_NOT_SUPP };

/**
 * Handles control requests (§5.14.6). Requests are synchronous: the response
 * is written before the chain is returned. Every field the guest wrote is
 * checked; a fault is answered with the status the spec gives for it.
 */
export class ControlHandler {
  private readonly small = new Uint8Array(SMALL_REQUEST);
  private readonly smallView = new DataView(this.small.buffer);
  /** For the rare request larger than `small` (a big TLV write): allocated once, on first use. */
  private large: Uint8Array | null = null;
  private largeView: DataView | null = null;
  /** The buffer holding the current request: `small`, or `large` for a big TLV write. */
  private request: Uint8Array = this.small;
  private requestView: DataView = this.smallView;

  constructor(private readonly ctx: ControlContext) {}

  /** Handles one chain and returns the number of bytes written into it. */
  handle(chain: Chain): number {
    // Without room for a status header there is nothing to answer with.
    if (chain.writableBytes < VIRTIO_SND_HDR_SIZE) return 0;
    let answer: Answer;
    if (chain.readableBytes < VIRTIO_SND_HDR_SIZE) {
      answer = badMsg;
    } else {
      const n = Math.min(chain.readableBytes, MAX_REQUEST);
      try {
        this.load(chain, n);
        answer = this.dispatch(chain.readableBytes, chain.writableBytes - VIRTIO_SND_HDR_SIZE);
      } catch (err) {
        if (!(err instanceof GuestMemoryError)) throw err;
        answer = badMsg;
      }
    }
    return this.respond(chain, answer);
  }

  /**
   * Reads the first `n` bytes of the request. Only a TLV write or command can
   * usefully be longer than SMALL_REQUEST; any other request that long is
   * refused on its length, so its tail is never read.
   */
  private load(chain: Chain, n: number): void {
    const head = Math.min(n, SMALL_REQUEST);
    this.request = this.small;
    this.requestView = this.smallView;
    readFromChain(this.ctx.memory, chain, 0, this.small, 0, head);
    if (n <= head) return;
    const code = this.smallView.getUint32(0, true);
    if (code !== VIRTIO_SND_R_CTL_TLV_WRITE && code !== VIRTIO_SND_R_CTL_TLV_COMMAND) return;
    // Nor is a TLV whose header length does not account for exactly the request.
    const length = this.smallView.getUint32(VIRTIO_SND_CTL_HDR_SIZE + 4, true);
    if (n !== VIRTIO_SND_CTL_HDR_SIZE + VIRTIO_SND_CTL_TLV_HEADER_SIZE + length) return;
    if (this.large === null || this.largeView === null) {
      this.large = new Uint8Array(MAX_REQUEST);
      this.largeView = new DataView(this.large.buffer);
    }
    this.large.set(this.small.subarray(0, head));
    readFromChain(this.ctx.memory, chain, head, this.large, head, n - head);
    this.request = this.large;
    this.requestView = this.largeView;
  }

  private respond(chain: Chain, answer: Answer): number {
    const payload = answer.payload;
    const total = VIRTIO_SND_HDR_SIZE + (payload?.length ?? 0);
    const out = new Uint8Array(total);
    new DataView(out.buffer).setUint32(0, answer.status, true);
    if (payload !== undefined) out.set(payload, VIRTIO_SND_HDR_SIZE);
    try {
      return writeToChain(this.ctx.memory, chain, 0, out, 0, total);
    } catch (err) {
      if (!(err instanceof GuestMemoryError)) throw err;
      return 0;
    }
  }

  private dispatch(reqLen: number, room: number): Answer {
    const v = this.requestView;
    const code = v.getUint32(0, true);
    switch (code) {
      case VIRTIO_SND_R_JACK_INFO:
        return this.queryInfo(
          reqLen,
          room,
          this.ctx.jacks.length,
          VIRTIO_SND_JACK_INFO_SIZE,
          (dv, off, i) => {
            const j = this.ctx.jacks[i]!;
            encodeJackInfo(dv, off, {
              hdaFnNid: j.hdaFnNid,
              features: j.features,
              hdaRegDefconf: j.hdaRegDefconf,
              hdaRegCaps: j.hdaRegCaps,
              connected: j.connected ? 1 : 0,
            });
          },
        );
      case VIRTIO_SND_R_JACK_REMAP:
        return this.jackRemap(reqLen);
      case VIRTIO_SND_R_PCM_INFO:
        return this.queryInfo(
          reqLen,
          room,
          this.ctx.streamInfos.length,
          VIRTIO_SND_PCM_INFO_SIZE,
          (dv, off, i) => {
            const s = this.ctx.streamInfos[i]!;
            encodePcmInfo(dv, off, s);
          },
        );
      case VIRTIO_SND_R_CHMAP_INFO:
        return this.queryInfo(
          reqLen,
          room,
          this.ctx.chmaps.length,
          VIRTIO_SND_CHMAP_INFO_SIZE,
          (dv, off, i) => {
            const c = this.ctx.chmaps[i]!;
            encodeChmapInfo(dv, off, {
              hdaFnNid: c.hdaFnNid,
              direction: c.direction,
              channels: c.positions.length,
              positions: c.positions,
            });
          },
        );
      case VIRTIO_SND_R_PCM_SET_PARAMS:
        return this.setParams(reqLen);
      case VIRTIO_SND_R_PCM_PREPARE:
      case VIRTIO_SND_R_PCM_RELEASE:
      case VIRTIO_SND_R_PCM_START:
      case VIRTIO_SND_R_PCM_STOP:
        return this.pcmCommand(code, reqLen);
      case VIRTIO_SND_R_CTL_INFO:
      case VIRTIO_SND_R_CTL_ENUM_ITEMS:
      case VIRTIO_SND_R_CTL_READ:
      case VIRTIO_SND_R_CTL_WRITE:
      case VIRTIO_SND_R_CTL_TLV_READ:
      case VIRTIO_SND_R_CTL_TLV_WRITE:
      case VIRTIO_SND_R_CTL_TLV_COMMAND:
        return this.controlElement(code, reqLen, room);
      default:
        // Unknown codes.
        return notSupp;
    }
  }

  /**
   * §5.14.6.10 control element requests; NOT_SUPP unless VIRTIO_SND_F_CTLS was
   * negotiated. Checked in this order: request and response sizes, then
   * control_id (BAD_MSG: a malformed message), then whether the element
   * offers the operation (NOT_SUPP: access bit missing, not ENUMERATED), then
   * the value itself (BAD_MSG) and the embedder's verdict (IO_ERR).
   */
  private controlElement(code: number, reqLen: number, room: number): Answer {
    const controls = this.ctx.controls;
    if (controls === undefined || this.ctx.ctlsNegotiated?.() !== true) return notSupp;
    const v = this.requestView;
    if (code === VIRTIO_SND_R_CTL_INFO) {
      // The driver's record size picks the layout: 92 is the packed (i386) one, anything else the aligned one.
      const packed =
        reqLen === VIRTIO_SND_QUERY_INFO_SIZE && v.getUint32(12, true) === VIRTIO_SND_CTL_INFO_PACKED_SIZE;
      const layout = packed ? "packed" : "aligned";
      return this.queryInfo(reqLen, room, controls.length, ctlInfoSize(layout), (dv, off, i) =>
        controls.encodeInfo(i, dv, off, layout),
      );
    }
    const answer = (r: Uint8Array | number): Answer =>
      typeof r === "number" ? { status: r } : { status: VIRTIO_SND_S_OK, payload: r };
    if (code === VIRTIO_SND_R_CTL_TLV_WRITE || code === VIRTIO_SND_R_CTL_TLV_COMMAND) {
      // ctl_hdr, then a TLV whose header length accounts for exactly the rest of the request.
      if (reqLen < VIRTIO_SND_CTL_HDR_SIZE + VIRTIO_SND_CTL_TLV_HEADER_SIZE) return badMsg;
      const length = v.getUint32(VIRTIO_SND_CTL_HDR_SIZE + 4, true);
      if (length % 4 !== 0 || length > VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE) return badMsg;
      if (reqLen !== VIRTIO_SND_CTL_HDR_SIZE + VIRTIO_SND_CTL_TLV_HEADER_SIZE + length) return badMsg;
      const id = v.getUint32(4, true);
      if (id >= controls.length) return badMsg;
      const tlv = this.request.subarray(VIRTIO_SND_CTL_HDR_SIZE, reqLen);
      return { status: controls.tlvWrite(id, tlv, code === VIRTIO_SND_R_CTL_TLV_COMMAND) };
    }
    const valueIn = code === VIRTIO_SND_R_CTL_WRITE ? VIRTIO_SND_CTL_VALUE_SIZE : 0;
    if (reqLen !== VIRTIO_SND_CTL_HDR_SIZE + valueIn) return badMsg;
    if (code === VIRTIO_SND_R_CTL_READ && room < VIRTIO_SND_CTL_VALUE_SIZE) return badMsg;
    const id = v.getUint32(4, true);
    if (id >= controls.length) return badMsg;
    switch (code) {
      case VIRTIO_SND_R_CTL_ENUM_ITEMS: {
        const items = controls.enumItems(id);
        if (typeof items !== "number" && items.length > room) return badMsg;
        return answer(items);
      }
      case VIRTIO_SND_R_CTL_READ:
        return answer(controls.read(id));
      case VIRTIO_SND_R_CTL_WRITE:
        return { status: controls.write(id, this.request, VIRTIO_SND_CTL_HDR_SIZE) };
      default: // CTL_TLV_READ: as much of the metadata as fits, and success (§5.14.6.10.3).
        return answer(controls.tlvRead(id, room));
    }
  }

  /**
   * §5.14.6.1 item information: start_id + count must lie within the items
   * the configuration announces, and the response must hold count * size bytes.
   * `size` is the driver's idea of the record size: shorter records get a
   * truncated copy of ours, longer ones are zero-filled.
   */
  private queryInfo(
    reqLen: number,
    room: number,
    total: number,
    recordSize: number,
    encode: (dv: DataView, offset: number, index: number) => void,
  ): Answer {
    if (reqLen !== VIRTIO_SND_QUERY_INFO_SIZE) return badMsg;
    const q = decodeQueryInfo(this.requestView, 0);
    if (q.startId > total || q.count > total - q.startId) return badMsg;
    if (q.count > 0 && q.size === 0) return badMsg;
    const bytes = q.count * q.size;
    // Both factors are the guest's: the device's bound comes first, so the
    // allocation below is never larger than it (room may count one small
    // buffer many times over, through aliased descriptors).
    if (bytes > (this.ctx.maxControlBytes ?? Infinity) || bytes > room) return badMsg;
    const payload = new Uint8Array(bytes);
    const record = new Uint8Array(recordSize);
    const rv = new DataView(record.buffer);
    for (let i = 0; i < q.count; i++) {
      record.fill(0);
      encode(rv, 0, q.startId + i);
      payload.set(q.size >= recordSize ? record : record.subarray(0, q.size), i * q.size);
    }
    return { status: VIRTIO_SND_S_OK, payload };
  }

  /** §5.14.6.4.2: only jacks that offer VIRTIO_SND_JACK_F_REMAP can be remapped. */
  private jackRemap(reqLen: number): Answer {
    if (reqLen !== VIRTIO_SND_JACK_REMAP_SIZE) return badMsg;
    const r = decodeJackRemap(this.requestView, 0);
    const jack = this.ctx.jacks[r.jackId];
    if (jack === undefined) return badMsg;
    if ((jack.features & 1) === 0) return notSupp;
    // Association and sequence are 4-bit fields of the HDA default configuration (HDA §7.3.3.31).
    if (r.association > 0xf || r.sequence > 0xf) return badMsg;
    jack.hdaRegDefconf = ((jack.hdaRegDefconf & ~0xff) | (r.association << 4) | r.sequence) >>> 0;
    this.ctx.jackChanged(r.jackId);
    return ok;
  }

  /** §5.14.6.6.3: every parameter must be one the stream offered. */
  private setParams(reqLen: number): Answer {
    if (reqLen !== VIRTIO_SND_PCM_SET_PARAMS_SIZE) return badMsg;
    const p = decodePcmSetParams(this.requestView, 0);
    const info = this.ctx.streamInfos[p.streamId];
    const stream = this.ctx.streams[p.streamId];
    if (info === undefined || stream === undefined) return badMsg;
    if (p.format > 63 || ((info.formats >> BigInt(p.format)) & 1n) === 0n) return notSupp;
    if (p.rate > 63 || ((info.rates >> BigInt(p.rate)) & 1n) === 0n) return notSupp;
    if (p.channels < info.channelsMin || p.channels > info.channelsMax) return notSupp;
    const shmem = (1 << VIRTIO_SND_PCM_F_SHMEM_HOST) | (1 << VIRTIO_SND_PCM_F_SHMEM_GUEST);
    if ((p.features & ~info.features) !== 0 || (p.features & shmem) !== 0) return notSupp;
    // The driver MUST make period_bytes divide buffer_bytes; periods hold whole frames.
    const bits = frameBits(p.format, p.channels);
    if (p.periodBytes === 0 || p.bufferBytes === 0 || p.bufferBytes % p.periodBytes !== 0) return badMsg;
    if ((p.periodBytes * 8) % bits !== 0) return badMsg;
    // Backends and capture sources hold a period in host memory: a buffer
    // larger than the device's bound is a size it does not support.
    if (p.bufferBytes > (this.ctx.maxBufferBytes?.[p.streamId] ?? Infinity)) return notSupp;
    return {
      status: stream.setParams({
        direction: info.direction,
        format: p.format,
        rate: PCM_RATE_HZ[p.rate]!,
        channels: p.channels,
        bufferBytes: p.bufferBytes,
        periodBytes: p.periodBytes,
        features: p.features,
      }),
    };
  }

  private pcmCommand(code: number, reqLen: number): Answer {
    if (reqLen !== VIRTIO_SND_PCM_HDR_SIZE) return badMsg;
    const stream = this.ctx.streams[this.requestView.getUint32(4, true)];
    if (stream === undefined) return badMsg;
    switch (code) {
      case VIRTIO_SND_R_PCM_PREPARE:
        return { status: stream.prepare() };
      case VIRTIO_SND_R_PCM_START:
        return { status: stream.start() };
      case VIRTIO_SND_R_PCM_STOP:
        return { status: stream.stop() };
      default:
        return { status: stream.release() };
    }
  }
}
