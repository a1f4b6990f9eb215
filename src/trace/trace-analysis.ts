/**
 * A recorded trace, worked out before it is replayed (replayer.ts): which
 * chains each queue took, which completions the recorded device made and in
 * what order, and what each capture session received.
 *
 * No Node built-ins: this is core code.
 */
import {
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../spec/constants.js";
import {
  VIRTIO_SND_PCM_HDR_SIZE,
  VIRTIO_SND_PCM_STATUS_SIZE,
  VIRTIO_SND_PCM_XFER_SIZE,
} from "../spec/structs.js";
import { type AvailEvent, type Trace, type TraceEvent, TraceError, type UsedEvent } from "./format.js";

/** A chain the recorded device took. */
export interface ChainInfo {
  readonly index: number;
  readonly ev: AvailEvent;
  /** tx/rx: the stream the xfer header names; -1 when unknown. */
  readonly stream: number;
}

/** A completion the recorded device made, and the chain it completed. */
export interface ExpectedUse {
  readonly index: number;
  readonly ev: UsedEvent;
  readonly chain: ChainInfo;
  /** tx: completed by a RELEASE or SET_PARAMS of its stream (it may have been played only in part). */
  readonly cut: boolean;
}

/** The events that are the driver's or host's actions, which the replay performs (the rest it checks). */
export const INPUT_EVENTS = new Set<TraceEvent["ev"]>([
  "features",
  "queue",
  "stop",
  "kick",
  "reset",
  "jack",
  "control",
]);

/** A little-endian u32 from bytes. */
export function u32le(b: Uint8Array, off: number): number {
  return ((b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16)) >>> 0) + b[off + 3]! * 0x100_0000;
}

/** The first `n` readable bytes of a chain, when they are recorded in full. */
function readablePrefix(ev: AvailEvent, n: number): Uint8Array | null {
  const out = new Uint8Array(n);
  let got = 0;
  for (const seg of ev.r) {
    if (got >= n) break;
    if (!("data" in seg)) return null;
    const k = Math.min(n - got, seg.len);
    out.set(seg.data.subarray(0, k), got);
    got += k;
  }
  return got >= n ? out : null;
}

/**
 * Where a completion is matched in order: its queue, and for tx/rx its stream
 * (the device completes each stream's messages in order, not a queue's).
 */
export function bucketOf(q: number, stream: number): string {
  return q === VIRTIO_SND_VQ_TX || q === VIRTIO_SND_VQ_RX ? `${q}:${stream}` : `${q}`;
}

/**
 * What the trace says, worked out before the replay: the chains each queue
 * took, the completions expected in each bucket in order, the rx data of each
 * capture session, and for each event where the next input event is and
 * whether a needs-reset comes before the next reset.
 */
export class Analysis {
  readonly avail: ChainInfo[][] = [[], [], [], []];
  readonly expected = new Map<string, ExpectedUse[]>();
  /** Per bucket: message seq → its position in `expected`. */
  readonly position = new Map<string, Map<number, number>>();
  /** Per input stream: the rx data of each capture session. */
  readonly rxSessions = new Map<number, Uint8Array[][]>();
  /** For each event: the index of the next input event after it. */
  readonly nextInput: Int32Array;
  /** For each event: whether a needs-reset event comes at or after it before the next reset. */
  readonly breakAhead: Uint8Array;

  constructor(readonly trace: Trace) {
    const events = trace.events;
    const bySeq = [0, 1, 2, 3].map(() => new Map<number, ChainInfo>());
    let control: { seq: number; code: number; stream: number } | null = null;
    const voiceOpen = new Map<number, boolean>();
    const session = new Map<number, number>();

    events.forEach((e, index) => {
      if (e.ev === "avail") {
        let stream = -1;
        if (e.q === VIRTIO_SND_VQ_TX || e.q === VIRTIO_SND_VQ_RX) {
          const hdr = readablePrefix(e, VIRTIO_SND_PCM_XFER_SIZE);
          if (hdr !== null) stream = u32le(hdr, 0);
        }
        const info: ChainInfo = { index, ev: e, stream };
        this.avail[e.q]!.push(info);
        bySeq[e.q]!.set(e.seq, info);
        if (e.q === VIRTIO_SND_VQ_CONTROL) {
          const req = readablePrefix(e, VIRTIO_SND_PCM_HDR_SIZE);
          control = req === null ? null : { seq: e.seq, code: u32le(req, 0), stream: u32le(req, 4) };
        }
      } else if (e.ev === "used") {
        const chain = bySeq[e.q]!.get(e.seq);
        if (chain === undefined) {
          throw new TraceError(trace.lines[index] ?? 0, `chain ${e.seq} of queue ${e.q} was never taken`);
        }
        const bucket = bucketOf(e.q, chain.stream);
        const cut =
          e.q === VIRTIO_SND_VQ_TX &&
          control !== null &&
          control.stream === chain.stream &&
          (control.code === VIRTIO_SND_R_PCM_RELEASE || control.code === VIRTIO_SND_R_PCM_SET_PARAMS);
        let list = this.expected.get(bucket);
        if (list === undefined) this.expected.set(bucket, (list = []));
        let pos = this.position.get(bucket);
        if (pos === undefined) this.position.set(bucket, (pos = new Map()));
        pos.set(e.seq, list.length);
        list.push({ index, ev: e, chain, cut });
        if (e.q === VIRTIO_SND_VQ_RX && chain.stream >= 0) {
          const s = chain.stream;
          let sessions = this.rxSessions.get(s);
          if (sessions === undefined) this.rxSessions.set(s, (sessions = []));
          const k = Math.max(0, session.get(s) ?? 0);
          while (sessions.length <= k) sessions.push([]);
          sessions[k]!.push(e.data.subarray(0, Math.max(0, e.data.length - VIRTIO_SND_PCM_STATUS_SIZE)));
        }
        if (e.q === VIRTIO_SND_VQ_CONTROL && control !== null && control.seq === e.seq) {
          // Voices open at a PREPARE after SET_PARAMS or RELEASE and close at those: capture sessions.
          const ok = e.len >= 4 && e.data.length >= 4 && u32le(e.data, 0) === VIRTIO_SND_S_OK;
          const s = control.stream;
          if (
            ok &&
            (control.code === VIRTIO_SND_R_PCM_SET_PARAMS || control.code === VIRTIO_SND_R_PCM_RELEASE)
          ) {
            voiceOpen.set(s, false);
          } else if (ok && control.code === VIRTIO_SND_R_PCM_PREPARE && voiceOpen.get(s) !== true) {
            voiceOpen.set(s, true);
            session.set(s, (session.get(s) ?? -1) + 1);
          }
          control = null;
        }
      } else if (e.ev === "reset") {
        control = null;
        voiceOpen.clear();
      }
    });

    this.nextInput = new Int32Array(events.length + 1);
    this.breakAhead = new Uint8Array(events.length + 1);
    let next = events.length;
    let breaks = 0;
    for (let i = events.length - 1; i >= 0; i--) {
      this.nextInput[i] = next;
      const ev = events[i]!.ev;
      if (INPUT_EVENTS.has(ev)) next = i;
      if (ev === "needs-reset") breaks = 1;
      else if (ev === "reset") breaks = 0;
      this.breakAhead[i] = breaks;
    }
    this.nextInput[events.length] = events.length;
    this.firstInput = next;
  }

  /** The index of the first input event. */
  readonly firstInput: number;

  rxSession(stream: number, k: number): Uint8Array {
    const parts = this.rxSessions.get(stream)?.[k] ?? [];
    const out = new Uint8Array(parts.reduce((a, p) => a + p.length, 0));
    let off = 0;
    for (const p of parts) {
      out.set(p, off);
      off += p.length;
    }
    return out;
  }
}
