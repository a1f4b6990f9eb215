/**
 * What aplay and arecord make the Linux driver do, on a SimulatedGuest: one
 * message per period of the ALSA buffer, refilled from the completion handler.
 */
import { VirtioSndError } from "../errors.js";
import { frameBytes } from "../audio/pcm-params.js";
import { PCM_RATE_HZ, VIRTIO_SND_S_OK } from "../spec/constants.js";
import type { Completion, SimulatedGuest } from "./simulated-guest.js";

/**
 * A frame rate in Hz that the spec names (§5.14.6.6.2). Not a
 * VIRTIO_SND_PCM_RATE_* constant: those are indexes into the spec's table
 * (VIRTIO_SND_PCM_RATE_48000 is 7); PCM_RATE_HZ[index] is the rate in Hz.
 */
export type PcmRateHz =
  | 5512
  | 8000
  | 11025
  | 12000
  | 16000
  | 22050
  | 24000
  | 32000
  | 44100
  | 48000
  | 64000
  | 88200
  | 96000
  | 176400
  | 192000
  | 384000;

/** What play() and record() ask the device for, as aplay's and arecord's options would. */
export interface SessionParams {
  /** VIRTIO_SND_PCM_FMT_* */
  format: number;
  /** Frames per second, in Hz (48000), NOT a VIRTIO_SND_PCM_RATE_* index (7): the driver model converts. */
  rate: PcmRateHz;
  channels: number;
  periodBytes: number;
  /** Periods in the buffer (bufferBytes = periodBytes * periods). */
  periods: number;
  features?: number;
}

/** What play() did: every TX completion, when it started, how much it queued. */
export interface PlaybackResult {
  completions: Completion[];
  /** Clock time at START. */
  startTime: number;
  /** Bytes the guest queued (the input, padded to whole periods). */
  queuedBytes: number;
}

/** A rate that is not a spec rate in Hz (an index given for Hz, most likely) fails here, saying so. */
function checkRate(p: SessionParams): void {
  if (PCM_RATE_HZ.includes(p.rate)) return;
  const asIndex = PCM_RATE_HZ[p.rate];
  throw new VirtioSndError(
    "ERR_INVALID_CONFIG",
    `SessionParams.rate is ${p.rate}: it is in Hz (one of ${[...PCM_RATE_HZ].sort((a, b) => a - b).join(", ")})` +
      (asIndex !== undefined
        ? `; ${p.rate} is the VIRTIO_SND_PCM_RATE_* index of ${asIndex} Hz: give ${asIndex}`
        : ""),
  );
}

function check(what: string, status: number): void {
  if (status !== VIRTIO_SND_S_OK)
    throw new VirtioSndError("ERR_DRIVER", `${what} failed with status 0x${status.toString(16)}`);
}

/**
 * Plays `data` like aplay: set params, prepare, fill the whole buffer
 * (pre-buffering), start, refill each period as it completes, pad the last
 * period with `pad`, then stop and release once everything has completed.
 */
export function play(
  guest: SimulatedGuest,
  streamId: number,
  data: Uint8Array,
  p: SessionParams,
  opts: {
    pad?: number;
    splitData?: boolean;
    maxTimeNs?: number;
    onCompletion?: (c: Completion) => void;
  } = {},
): PlaybackResult {
  checkRate(p);
  const bufferBytes = p.periodBytes * p.periods;
  check("SET_PARAMS", guest.setParams(streamId, { ...p, bufferBytes, features: p.features ?? 0 }));
  const dma = guest.alloc(bufferBytes, 4096);
  check("PREPARE", guest.prepare(streamId));

  const completions: Completion[] = [];
  let offset = 0;
  let queued = 0;
  let outstanding = 0;
  const queuePeriod = (slot: number): void => {
    const addr = dma + slot * p.periodBytes;
    const n = Math.min(p.periodBytes, data.length - offset);
    guest.memory.write(addr, data, offset, n);
    if (n < p.periodBytes) guest.memory.fill(addr + n, p.periodBytes - n, opts.pad ?? 0);
    offset += n;
    queued += p.periodBytes;
    outstanding++;
    // Split each period across two descriptors, as pages that are not contiguous are.
    const split = opts.splitData ? [Math.floor(p.periodBytes / 2 / 4) * 4] : [];
    guest.queueIo(
      streamId,
      false,
      addr,
      p.periodBytes,
      (c) => {
        completions.push(c);
        opts.onCompletion?.(c);
        outstanding--;
        if (offset < data.length) queuePeriod(slot);
      },
      split,
    );
  };
  for (let slot = 0; slot < p.periods && offset < data.length; slot++) queuePeriod(slot);
  const startTime = guest.clock.now();
  check("START", guest.start(streamId));
  const limit = startTime + (opts.maxTimeNs ?? 600e9);
  guest.clock.runUntil(() => outstanding === 0 || guest.clock.now() > limit);
  check("STOP", guest.stop(streamId));
  check("RELEASE", guest.release(streamId));
  return { completions, startTime, queuedBytes: queued };
}

/** What record() did: every RX completion, when it started, the bytes recorded. */
export interface CaptureResult {
  completions: Completion[];
  startTime: number;
  data: Uint8Array;
}

/**
 * Records `bytes` like arecord: set params, prepare, queue every period of
 * the buffer (Linux does it in trigger START, before the START command),
 * start, requeue each completed period until enough is recorded, stop, release.
 */
export function record(
  guest: SimulatedGuest,
  streamId: number,
  bytes: number,
  p: SessionParams,
): CaptureResult {
  checkRate(p);
  const bufferBytes = p.periodBytes * p.periods;
  check("SET_PARAMS", guest.setParams(streamId, { ...p, bufferBytes, features: p.features ?? 0 }));
  const dma = guest.alloc(bufferBytes, 4096);
  check("PREPARE", guest.prepare(streamId));
  const completions: Completion[] = [];
  const out = new Uint8Array(bytes);
  let got = 0;
  let requested = 0;
  const queuePeriod = (slot: number): void => {
    requested += p.periodBytes;
    guest.queueIo(streamId, true, dma + slot * p.periodBytes, p.periodBytes, (c) => {
      completions.push(c);
      const d = c.data ?? new Uint8Array(0);
      const n = Math.min(d.length, bytes - got);
      out.set(d.subarray(0, n), got);
      got += n;
      if (requested < bytes) queuePeriod(slot);
    });
  };
  for (let slot = 0; slot < p.periods; slot++) queuePeriod(slot);
  const startTime = guest.clock.now();
  check("START", guest.start(streamId));
  guest.clock.runUntil(() => got >= bytes);
  check("STOP", guest.stop(streamId));
  check("RELEASE", guest.release(streamId));
  return { completions, startTime, data: out };
}

export function periodBytesFor(p: { format: number; channels: number; rate: number }, ms: number): number {
  return Math.round((p.rate * ms) / 1000) * frameBytes(p.format, p.channels);
}
