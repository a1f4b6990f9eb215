/**
 * The bounds on what a guest can make the host hold. Every host allocation a
 * guest field can influence is bounded by one of these, never by the field
 * alone; an embedder may change them, and the defaults follow from the card's
 * configuration so that a Linux guest never meets them.
 */
import { VirtioSndError } from "../errors.js";
import { PCM_FORMAT_INFO, PCM_RATE_HZ } from "../spec/constants.js";
import { DEFAULT_MAX_CHAIN } from "../virtqueue/ring-constants.js";
import type { StreamInfo } from "./config.js";

export interface DeviceLimits {
  /**
   * Largest PCM buffer (SET_PARAMS buffer_bytes, and so period_bytes) a stream
   * accepts; larger requests are answered NOT_SUPP. Default, per stream: one
   * second at its highest rate, channel count and sample size. Linux asks for
   * at most 160 ms of that (its pcm_buffer_ms), so it never meets the bound.
   */
  readonly maxBufferBytes?: number;
  /**
   * Most descriptors in one chain, an indirect table's included. Default: 1024
   * (QEMU's bound), or more when the largest buffer, split into one
   * descriptor per 4 KiB page as Linux does, needs more.
   */
  readonly maxChain?: number;
  /**
   * Largest payload of one control request or response (the info arrays of
   * JACK_INFO, PCM_INFO, CHMAP_INFO, CTL_INFO, CTL_ENUM_ITEMS, and TLV data).
   * Larger ones are answered BAD_MSG. Default 64 KiB: 256 PCM infos, or 170
   * control infos, per request.
   */
  readonly maxControlBytes?: number;
}

export const DEFAULT_MAX_CONTROL_BYTES = 64 * 1024;

/** The page size Linux maps guest buffers with: one scatter-gather entry per page at worst. */
const GUEST_PAGE = 4096;

/** DeviceLimits with every default filled in for a card's streams. */
export interface ResolvedLimits {
  /** Per stream. */
  readonly maxBufferBytes: readonly number[];
  readonly maxChain: number;
  readonly maxControlBytes: number;
}

function positiveInt(v: number, name: string): number {
  if (!Number.isSafeInteger(v) || v < 1) {
    throw new VirtioSndError("ERR_INVALID_CONFIG", `limits.${name} must be a positive integer, not ${v}`);
  }
  return v;
}

/** One second of a stream's largest frames: the default bound on its buffer. */
export function secondOfLargestFrames(info: StreamInfo): number {
  let rate = 0;
  for (let i = 0; i < PCM_RATE_HZ.length; i++)
    if ((info.rates >> BigInt(i)) & 1n) rate = Math.max(rate, PCM_RATE_HZ[i]!);
  let bits = 0;
  for (let f = 0; f < PCM_FORMAT_INFO.length; f++) {
    if ((info.formats >> BigInt(f)) & 1n) bits = Math.max(bits, PCM_FORMAT_INFO[f]!.physicalBits);
  }
  return Math.ceil((rate * info.channelsMax * bits) / 8);
}

/** Descriptors Linux may use for one I/O message of `bytes`: header, a page each (plus one for an unaligned start), status. */
export function linuxDescriptorsFor(bytes: number): number {
  return Math.ceil(bytes / GUEST_PAGE) + 3;
}

export function resolveLimits(
  limits: DeviceLimits | undefined,
  streams: readonly StreamInfo[],
): ResolvedLimits {
  const l = limits ?? {};
  const maxBufferBytes = streams.map((s) =>
    l.maxBufferBytes !== undefined
      ? positiveInt(l.maxBufferBytes, "maxBufferBytes")
      : secondOfLargestFrames(s),
  );
  let needed = DEFAULT_MAX_CHAIN;
  for (const b of maxBufferBytes) needed = Math.max(needed, linuxDescriptorsFor(b));
  const maxChain = l.maxChain !== undefined ? positiveInt(l.maxChain, "maxChain") : needed;
  const maxControlBytes =
    l.maxControlBytes !== undefined
      ? positiveInt(l.maxControlBytes, "maxControlBytes")
      : DEFAULT_MAX_CONTROL_BYTES;
  return { maxBufferBytes, maxChain, maxControlBytes };
}

/**
 * How many buffers one stream's pending messages may hold: its whole buffer
 * queued one page a descriptor, plus a header, a status and a page-boundary
 * descriptor for every ring slot. What Linux holds stays below it. A stream
 * past it has further messages refused, so one stream cannot take the
 * queue's budget from the others.
 */
export function streamSegmentShare(limits: ResolvedLimits, streamIndex: number, queueSize: number): number {
  return Math.ceil(limits.maxBufferBytes[streamIndex]! / GUEST_PAGE) + 1 + 3 * queueSize;
}

/**
 * How many buffers the chains in flight on an I/O queue may hold together:
 * every stream's share, plus one longest chain (the one the device is looking
 * at before a stream takes or refuses it). The streams keep within their
 * shares, so a well-behaved stream never meets this bound; what a hostile
 * driver can make the host keep is linear in the configuration.
 */
export function ioSegmentBudget(
  limits: ResolvedLimits,
  streams: readonly StreamInfo[],
  direction: number,
  queueSize: number,
): number {
  let shares = 0;
  streams.forEach((s, i) => {
    if (s.direction === direction) shares += streamSegmentShare(limits, i, queueSize);
  });
  return shares + limits.maxChain;
}
