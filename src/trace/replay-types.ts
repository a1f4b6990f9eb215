/**
 * What a trace replay takes and gives back (replayer.ts, live-replay.ts): its
 * options, its result and divergences, and what a live replay's environment
 * supplies and is told.
 *
 * No Node built-ins: this is core code.
 */
import type { AudioBackend } from "../audio/backend.js";
import type { ByteBuffer } from "../audio/byte-buffer.js";
import type { Clock } from "../audio/clock.js";
import type { PcmParams } from "../audio/pcm-params.js";
import type { StreamEvent } from "../stream/pcm-stream.js";
import type { TraceEvent } from "./format.js";

export interface ReplayOptions {
  /**
   * What input stream `streamId` captures, as MemoryBackendOptions.input (the
   * bytes from START on, then silence). Default: the bytes the recorded guest
   * received in the same capture session.
   */
  readonly input?: (streamId: number, params: PcmParams) => Uint8Array;
  /**
   * For traces with TX audio stored as hashes: all the audio the guest sent on
   * stream `streamId`, in order. Each hashed descriptor is filled from it and
   * checked against its hash. Without it, hashed descriptors get a
   * deterministic pattern.
   */
  readonly txAudio?: (streamId: number) => Uint8Array;
  /** Also compare latency_bytes in tx/rx statuses (default false: it depends on timing). */
  readonly compareLatency?: boolean;
  /**
   * Virtual time (ns) the replay may run past the last event for the device to
   * complete what the recording completed (default 1 s).
   */
  readonly graceNs?: number;
  /** Replay guest memory in bytes (default 64 MiB): rings and every chain in flight. */
  readonly memorySize?: number;
  /**
   * Frames the replay's voices play or capture per tick (default: one period,
   * as the memory, null and paced capture backends do). Messages cut short by
   * STOP and RELEASE compare exactly only when this matches the recording's backend.
   */
  readonly chunkFrames?: number;
  /**
   * The longest trace replayed, in trace time (default 24 hours): a later
   * event is refused, as a running voice ticks through all the time in between.
   */
  readonly maxTimeNs?: number;
}

export type DivergenceReason =
  /** The used length differs. */
  | "length"
  /** The bytes written differ. */
  | "bytes"
  /** Another message completed first. */
  | "order"
  /** The device completed a message the recording never completed. */
  | "unexpected"
  /** The recording completed a message the replay did not (by the end, plus graceNs). */
  | "missing"
  /** The backend played other bytes than the messages held. */
  | "played"
  /** Hashed TX audio supplied by `txAudio` does not match its hash. */
  | "tx-audio"
  /** The device accepted or refused features differently, or offers other features. */
  | "features"
  /** One device needed a reset and the other did not. */
  | "needs-reset"
  /** The device broke the ring protocol (a used id not in flight). */
  | "ring";

export interface Divergence {
  readonly reason: DivergenceReason;
  /** The queue (0 control, 1 event, 2 tx, 3 rx), or -1. */
  readonly queue: number;
  /** The message (the chain's "seq") the divergence is about, or -1. */
  readonly message: number;
  /** tx/rx: the stream the message is for. */
  readonly stream?: number;
  /** "order": the message the replay completed instead. */
  readonly actualMessage?: number;
  /** "unexpected": the message the recording completed next. */
  readonly expectedMessage?: number;
  /** Lowercase hex of what the recording has and what the replay produced ("" when there are no bytes). */
  readonly expected: string;
  readonly actual: string;
  /** Which bytes were compared: a control response, an event, rx data, a tx/rx status, played audio. */
  readonly part?: "response" | "event" | "data" | "status" | "played" | "hash";
  /** The first byte that differs, within `part`. */
  readonly offset?: number;
  /**
   * Trace time (ns) and line of the recorded event the divergence is about
   * (for "unexpected": the replay's time, and the line where the chain was taken).
   */
  readonly t: number;
  readonly line: number;
  /** What went wrong, in words. */
  readonly detail: string;
}

export interface ReplayStats {
  /** Events in the trace. */
  readonly events: number;
  /** Chains made available to the device. */
  chains: number;
  /** Completions the device made. */
  completions: number;
  /** Completions past the end of the trace that the recording did not have (not divergences). */
  extraCompletions: number;
  /** Bytes played per output stream and captured per input stream. */
  readonly played: Record<number, number>;
  readonly captured: Record<number, number>;
  /** Virtual time at the end of the replay (ns). */
  endTime: number;
}

export type ReplayResult =
  | { readonly ok: true; readonly stats: ReplayStats }
  | {
      readonly ok: false;
      readonly divergence: Divergence;
      readonly message: string;
      readonly stats: ReplayStats;
    };

/** A message the replayed device completed (see LiveReplay's onCompletion). */
export interface ReplayCompletion {
  /** Trace time (ns) at which the replayed device completed it. */
  readonly t: number;
  /** The queue: 0 control, 1 event, 2 tx, 3 rx. */
  readonly queue: number;
  /** The chain's "seq" in the trace. */
  readonly message: number;
  /** tx/rx: the stream the xfer header names. */
  readonly stream?: number;
  /** The used length. */
  readonly len: number;
  /** The chain's readable bytes as recorded, up to the first descriptor recorded as a hash. */
  readonly request: Uint8Array;
  /** How many readable bytes the chain has (tx: the xfer header and the audio, hashed or not). */
  readonly readableBytes: number;
  /** The bytes the device wrote: the writable part's first min(len, writable) bytes. */
  readonly response: Uint8Array;
}

/** What one output voice of a replay was given, in order (a MemoryPlayback is one). */
export interface PlayedSession {
  readonly streamId: number;
  readonly data: ByteBuffer;
}

/**
 * How a replay runs, for LiveReplay (src/trace/live-replay.ts): its clock,
 * where output streams play, and what it reports. replayTrace runs on a
 * VirtualClock of its own into a MemoryBackend.
 * @internal
 */
export interface ReplayEnv {
  readonly clock: Clock;
  /** Where output streams play, and the bytes each of its voices took (checked against the trace). */
  readonly output?: { readonly backend: AudioBackend; readonly sessions: readonly PlayedSession[] };
  /** Every trace event, when the replay reaches its time (input events once applied). */
  readonly onEvent?: (event: TraceEvent, index: number) => void;
  readonly onCompletion?: (completion: ReplayCompletion) => void;
  readonly onStreamEvent?: (event: StreamEvent) => void;
}

/**
 * What a replay waits for next: trace time `t`; with `until`, time up to `t`
 * while `until()` is false (settling the replay as time passes).
 * @internal
 */
export interface ReplayWait {
  readonly t: number;
  readonly until?: () => boolean;
}
