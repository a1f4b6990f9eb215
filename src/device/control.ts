import { frameBits } from "../audio/pcm-params.js";
import { GuestMemoryError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import {
  PCM_RATE_HZ,
  VIRTIO_SND_PCM_F_SHMEM_GUEST,
  VIRTIO_SND_PCM_F_SHMEM_HOST,
  VIRTIO_SND_R_CHMAP_INFO,
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
  VIRTIO_SND_HDR_SIZE,
  VIRTIO_SND_JACK_INFO_SIZE,
  VIRTIO_SND_JACK_REMAP_SIZE,
  VIRTIO_SND_PCM_HDR_SIZE,
  VIRTIO_SND_PCM_INFO_SIZE,
  VIRTIO_SND_PCM_SET_PARAMS_SIZE,
  VIRTIO_SND_QUERY_INFO_SIZE,
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

/** Largest control request the device reads (set-params is the largest it handles). */
const MAX_REQUEST = 64;

/** What the control handler works on: the device's items and streams. */
export interface ControlContext {
  readonly memory: GuestMemory;
  readonly streamInfos: readonly StreamInfo[];
  readonly streams: readonly PcmStream[];
  readonly jacks: readonly JackState[];
  readonly chmaps: readonly ChmapInfo[];
  /** A jack's configuration changed (remap). */
  jackChanged(jackId: number): void;
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
  private readonly request = new Uint8Array(MAX_REQUEST);
  private readonly requestView = new DataView(this.request.buffer);

  constructor(private readonly ctx: ControlContext) {}

  /** Handles one chain and returns the number of bytes written into it. */
  handle(chain: Chain): number {
    const mem = this.ctx.memory;
    // Without room for a status header there is nothing to answer with.
    if (chain.writableBytes < VIRTIO_SND_HDR_SIZE) return 0;
    let answer: Answer;
    if (chain.readableBytes < VIRTIO_SND_HDR_SIZE) {
      answer = badMsg;
    } else {
      const n = Math.min(chain.readableBytes, MAX_REQUEST);
      try {
        readFromChain(mem, chain, 0, this.request, 0, n);
        answer = this.dispatch(chain.readableBytes, chain.writableBytes - VIRTIO_SND_HDR_SIZE);
      } catch (err) {
        if (!(err instanceof GuestMemoryError)) throw err;
        answer = badMsg;
      }
    }
    return this.respond(chain, answer);
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
      default:
        // Unknown codes, and control-element codes while VIRTIO_SND_F_CTLS is not offered.
        return notSupp;
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
    if (bytes > room) return badMsg;
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
    jack.hdaRegDefconf = (jack.hdaRegDefconf & ~0xff) | (r.association << 4) | r.sequence;
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
