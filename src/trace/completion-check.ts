/**
 * Checking a replay's completions against the recording's (replayer.ts): each
 * completion is matched in order within its bucket (a control or event queue,
 * or a tx/rx stream) and compared, used length, bytes and status; a tx
 * message's audio is checked against what the backend played.
 *
 * No Node built-ins: this is core code.
 */
import {
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../spec/constants.js";
import { VIRTIO_SND_PCM_STATUS_SIZE } from "../spec/structs.js";
import { firstDifference, toHex } from "./bytes.js";
import { hexAround } from "./replay-report.js";
import type { Divergence, PlayedSession } from "./replay-types.js";
import { type Analysis, type ChainInfo, type ExpectedUse, bucketOf, u32le } from "./trace-analysis.js";

/** What a CompletionCheck needs from the replay it checks. */
export interface CheckHost {
  /** Every output voice's bytes, in the order the voices were opened. */
  readonly played: readonly PlayedSession[];
  /** The trace line of event `index`. */
  lineOf(index: number): number;
  /** Trace time now (ns). */
  traceNow(): number;
  /** Reports a divergence (the replay keeps the first). */
  diverge(d: Divergence): void;
  /** A divergence or an error ended the checking. */
  done(): boolean;
  /** The replay is past the trace's last event. */
  afterEnd(): boolean;
  /** A completion past the end that the recording did not have (not a divergence). */
  extraCompletion(): void;
}

interface PlayCheck {
  readonly stream: number;
  readonly audio: Uint8Array;
  /** Played entirely (completed OK, not by a RELEASE). */
  readonly whole: boolean;
  /** Bytes the stream had played when the device returned the message. */
  readonly playedAtReturn: number;
  readonly use: ExpectedUse;
}

/** Matches and compares a replay's completions with the recording's. */
export class CompletionCheck {
  /** Per bucket: how many of its expected completions were matched. */
  private readonly matched = new Map<string, number>();
  private readonly plays: PlayCheck[] = [];
  /** Per output stream: how many played bytes were checked. */
  private readonly playPos = new Map<number, number>();

  constructor(
    private readonly a: Analysis,
    /** Also compare latency_bytes in tx/rx statuses. */
    private readonly compareLatency: boolean,
    private readonly host: CheckHost,
  ) {}

  /**
   * The device completed the chain `info` (len bytes used, `written` its writable part):
   * match it with the recording's next completion in its bucket, compare, and for tx
   * note the audio to check against what was played. `returned`: what each output
   * stream had played when the device returned it.
   */
  completed(
    q: number,
    info: ChainInfo,
    audio: Uint8Array | null,
    len: number,
    written: Uint8Array,
    returned: Record<number, number> | undefined,
  ): void {
    const seq = info.ev.seq;
    const bucket = bucketOf(q, info.stream);
    const list = this.a.expected.get(bucket) ?? [];
    const pos = this.matched.get(bucket) ?? 0;
    const exp = list[pos];
    const io = q === VIRTIO_SND_VQ_TX || q === VIRTIO_SND_VQ_RX;
    const stream = io ? { stream: info.stream } : {};
    const actual = toHex(written.subarray(0, Math.min(len, written.length)));
    if (exp === undefined || exp.ev.seq !== seq) {
      const later = this.a.position.get(bucket)?.get(seq);
      if (exp === undefined && later === undefined && this.host.afterEnd()) {
        this.host.extraCompletion();
        return;
      }
      if (exp !== undefined && later !== undefined && later > pos) {
        this.host.diverge({
          reason: "order",
          queue: q,
          message: exp.ev.seq,
          ...stream,
          actualMessage: seq,
          expected: toHex(exp.ev.data),
          actual,
          t: exp.ev.t,
          line: this.host.lineOf(exp.index),
          detail: `the recording completed message ${exp.ev.seq} next; the device completed message ${seq} first`,
        });
        return;
      }
      this.host.diverge({
        reason: "unexpected",
        queue: q,
        message: seq,
        ...stream,
        ...(exp !== undefined ? { expectedMessage: exp.ev.seq } : {}),
        expected: "",
        actual,
        t: this.host.traceNow(),
        line: this.host.lineOf(info.index),
        detail:
          `the device completed message ${seq} (used length ${len}), which the recording never completed` +
          (exp !== undefined ? `; it completed message ${exp.ev.seq} next` : ""),
      });
      return;
    }
    this.matched.set(bucket, pos + 1);
    if (this.compare(q, exp, len, written)) return;
    if (q === VIRTIO_SND_VQ_TX && audio !== null && info.stream >= 0) {
      const status =
        written.length >= VIRTIO_SND_PCM_STATUS_SIZE
          ? u32le(written, written.length - VIRTIO_SND_PCM_STATUS_SIZE)
          : -1;
      this.plays.push({
        stream: info.stream,
        audio: audio,
        whole: !exp.cut && status === VIRTIO_SND_S_OK && len >= VIRTIO_SND_PCM_STATUS_SIZE,
        playedAtReturn: returned?.[info.stream] ?? 0,
        use: exp,
      });
    }
  }

  /** Compares one completion with its recording; reports and returns true when they differ. */
  private compare(q: number, exp: ExpectedUse, len: number, written: Uint8Array): boolean {
    const e = exp.ev;
    const w = written.length;
    const base = {
      queue: q,
      message: e.seq,
      ...(q === VIRTIO_SND_VQ_TX || q === VIRTIO_SND_VQ_RX ? { stream: exp.chain.stream } : {}),
      t: e.t,
      line: this.host.lineOf(exp.index),
    };
    const prefix = written.subarray(0, Math.min(len, w));
    if (len !== e.len) {
      this.host.diverge({
        ...base,
        reason: "length",
        expected: toHex(e.data),
        actual: toHex(prefix),
        detail: `the used length is ${len}; the recording has ${e.len}`,
      });
      return true;
    }
    const io = q === VIRTIO_SND_VQ_TX || q === VIRTIO_SND_VQ_RX;
    if (!io || w < VIRTIO_SND_PCM_STATUS_SIZE || len < VIRTIO_SND_PCM_STATUS_SIZE) {
      const part = q === VIRTIO_SND_VQ_CONTROL ? "response" : q === VIRTIO_SND_VQ_EVENT ? "event" : "data";
      return this.compareBytes(base, part, e.data, prefix);
    }
    const dataLen = Math.min(len, w) - VIRTIO_SND_PCM_STATUS_SIZE;
    if (this.compareBytes(base, "data", e.data.subarray(0, dataLen), written.subarray(0, dataLen)))
      return true;
    const expStatus = e.status ?? e.data.subarray(w - VIRTIO_SND_PCM_STATUS_SIZE, w);
    const actStatus = written.subarray(w - VIRTIO_SND_PCM_STATUS_SIZE, w);
    const n = this.compareLatency ? VIRTIO_SND_PCM_STATUS_SIZE : 4;
    const at = firstDifference(expStatus.subarray(0, n), actStatus.subarray(0, n));
    if (at < 0) return false;
    this.host.diverge({
      ...base,
      reason: "bytes",
      part: "status",
      offset: at,
      expected: toHex(expStatus),
      actual: toHex(actStatus),
      detail:
        at < 4
          ? `the status is 0x${u32le(actStatus, 0).toString(16)}; the recording has 0x${u32le(expStatus, 0).toString(16)}`
          : `latency_bytes is ${u32le(actStatus, 4)}; the recording has ${u32le(expStatus, 4)}`,
    });
    return true;
  }

  private compareBytes(
    base: { queue: number; message: number; stream?: number; t: number; line: number },
    part: "response" | "event" | "data",
    expected: Uint8Array,
    actual: Uint8Array,
  ): boolean {
    const at = firstDifference(expected, actual);
    if (at < 0) return false;
    this.host.diverge({
      ...base,
      reason: "bytes",
      part,
      offset: at,
      expected: toHex(expected),
      actual: toHex(actual),
      detail: `byte ${at} of the ${part === "data" ? "rx data" : part} differs: expected ${hexAround(expected, at)}, got ${hexAround(actual, at)}`,
    });
    return true;
  }

  /** Checks the audio of the tx completions so far against what the backend played. */
  checkPlayed(): void {
    while (this.plays.length > 0 && !this.host.done()) {
      const c = this.plays.shift()!;
      const sessions = this.host.played.filter((p) => p.streamId === c.stream);
      const pos = this.playPos.get(c.stream) ?? 0;
      const n = c.audio.length;
      // Cut short (RELEASE, SET_PARAMS, a stopped queue, an error): played up to where the device returned it.
      const take = c.whole ? n : Math.max(0, Math.min(n, c.playedAtReturn - pos));
      const played = slicePlayed(sessions, pos, pos + take);
      const at = firstDifference(c.audio.subarray(0, take), played);
      if (at >= 0) {
        const e = c.use.ev;
        this.host.diverge({
          reason: "played",
          queue: VIRTIO_SND_VQ_TX,
          message: e.seq,
          stream: c.stream,
          part: "played",
          offset: at,
          expected: toHex(c.audio.subarray(0, take)),
          actual: toHex(played),
          t: e.t,
          line: this.host.lineOf(c.use.index),
          detail:
            played.length < take
              ? `the device completed the message but the backend played only ${played.length} of its ${take} bytes`
              : `byte ${at} of the message was played as ${hexAround(played, at)}; the message holds ${hexAround(c.audio, at)}`,
        });
        return;
      }
      this.playPos.set(c.stream, pos + take);
    }
  }

  /** Every completion the recording has was matched. */
  allMatched(): boolean {
    for (const [bucket, list] of this.a.expected)
      if ((this.matched.get(bucket) ?? 0) < list.length) return false;
    return true;
  }

  /** Reports the first completion the recording has that the replay never matched, if any. */
  reportMissing(): void {
    let first: ExpectedUse | null = null;
    for (const [bucket, list] of this.a.expected) {
      const e = list[this.matched.get(bucket) ?? 0];
      if (e !== undefined && (first === null || e.index < first.index)) first = e;
    }
    if (first !== null) {
      const q = first.ev.q;
      this.host.diverge({
        reason: "missing",
        queue: q,
        message: first.ev.seq,
        ...(q === VIRTIO_SND_VQ_TX || q === VIRTIO_SND_VQ_RX ? { stream: first.chain.stream } : {}),
        expected: toHex(first.ev.data),
        actual: "",
        t: first.ev.t,
        line: this.host.lineOf(first.index),
        detail: `the recording completed this message (used length ${first.ev.len}); the replayed device never did`,
      });
    }
  }
}

/** Bytes `from` to `to` of what a stream played, across the sessions (voices) it played in. */
function slicePlayed(sessions: readonly PlayedSession[], from: number, to: number): Uint8Array {
  const out = new Uint8Array(Math.max(0, to - from));
  let start = 0;
  let got = 0;
  for (const s of sessions) {
    const end = start + s.data.length;
    const a = Math.max(from, start);
    const b = Math.min(to, end);
    if (b > a) {
      out.set(s.data.bytes().subarray(a - start, b - start), a - from);
      got = Math.max(got, b - from);
    }
    start = end;
  }
  return out.subarray(0, got);
}
