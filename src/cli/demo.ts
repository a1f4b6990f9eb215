import type { Writable } from "node:stream";
import { PCM_RATE_HZ, VIRTIO_SND_D_OUTPUT, VIRTIO_SND_PCM_FMT_S16 } from "../spec/constants.js";
import { PCM_STATE_NAMES } from "../stream/pcm-state.js";
import { SimulatedGuest, controlName } from "../driver/simulated-guest.js";
import { play } from "../driver/pcm-session.js";

const RATE = 48000;
const CHANNELS = 2;
const PERIOD_FRAMES = 480; // 10 ms
const PERIODS = 4;

/** A short tune (C major arpeggio and back) as S16 stereo, with soft note edges. */
export function tune(seconds: number): Uint8Array {
  const notes = [261.63, 329.63, 392.0, 523.25, 392.0, 329.63, 261.63, 196.0];
  const frames = Math.round(seconds * RATE);
  const out = new Uint8Array(frames * CHANNELS * 2);
  const dv = new DataView(out.buffer);
  const noteFrames = Math.max(1, Math.floor(frames / notes.length));
  for (let f = 0; f < frames; f++) {
    const n = Math.min(notes.length - 1, Math.floor(f / noteFrames));
    const t = (f - n * noteFrames) / noteFrames;
    const env = Math.min(1, t * 20, (1 - t) * 20);
    const v = Math.round(0.3 * 32767 * env * Math.sin((2 * Math.PI * notes[n]! * f) / RATE));
    dv.setInt16(f * 4, v, true);
    dv.setInt16(f * 4 + 2, v, true);
  }
  return out;
}

export function runDemo(args: readonly string[], out: Writable): number {
  const packed = args.includes("--packed");
  const si = args.indexOf("--seconds");
  const seconds = si >= 0 ? Number(args[si + 1]) : 2;
  if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 600)
    throw new Error("--seconds takes a number from 0 to 600");
  const say = (line: string): void => void out.write(`${line}\n`);
  const ts = (ns: number): string => `[${(ns / 1e9).toFixed(3).padStart(7)} s]`;

  const guest = new SimulatedGuest({
    packed,
    eventIdx: true,
    backend: { retain: true },
    log: (m) =>
      say(
        `${ts(guest.clock.now())} control ${controlName(m.code)}${m.detail ? ` ${m.detail}` : ""} -> ${controlName(m.status)}`,
      ),
  });
  say(`virtio-snd demo: a simulated Linux guest on a ${packed ? "packed" : "split"} ring, virtual clock`);
  guest.init();
  const cfg = guest.config();
  say(`config space: ${cfg.jacks} jacks, ${cfg.streams} streams, ${cfg.chmaps} channel maps`);
  const info = guest.probe();
  info.streams.forEach((s, i) =>
    say(
      `  stream ${i}: ${s.direction === VIRTIO_SND_D_OUTPUT ? "output" : "input"}, ${s.channelsMin}-${s.channelsMax} channels, ` +
        `rates ${PCM_RATE_HZ.filter((_, r) => ((s.rates >> BigInt(r)) & 1n) === 1n).join("/")}`,
    ),
  );

  const audio = tune(seconds);
  let lastProgress = -1;
  const progress = (): void => {
    const pb = guest.backend.playbacksOf(0)[0];
    const done = pb === undefined ? 0 : pb.data.length;
    const pct = Math.floor((100 * done) / audio.length);
    if (pct >= lastProgress + 10) {
      lastProgress = pct;
      say(
        `${ts(guest.clock.now())} playing: ${(done / (RATE * CHANNELS * 2)).toFixed(2)} s of ${seconds} s (${pct}%)`,
      );
    }
  };
  guest.onStreamEvent = (e) =>
    say(
      `${ts(e.time)} stream ${e.streamId} ${e.type}${e.type === "set-params" ? "" : ` (now ${PCM_STATE_NAMES[guest.device.streams[e.streamId]!.state]})`}`,
    );
  const r = play(
    guest,
    0,
    audio,
    {
      format: VIRTIO_SND_PCM_FMT_S16,
      rate: RATE,
      channels: CHANNELS,
      periodBytes: PERIOD_FRAMES * 4,
      periods: PERIODS,
    },
    { onCompletion: progress },
  );

  const pb = guest.backend.playbacksOf(0)[0]!;
  const played = pb.data.bytes().subarray(0, audio.length);
  const exact = played.length === audio.length && played.every((b, i) => b === audio[i]);
  const periodNs = (PERIOD_FRAMES * 1e9) / RATE;
  const onTime = r.completions.filter(
    (c, k) => Math.abs(c.time - r.startTime - (k + 1) * periodNs) < 1,
  ).length;
  say("");
  say(`played ${pb.data.length} bytes (${pb.data.length / 4} frames) in ${r.completions.length} messages`);
  say(
    `identical to the guest's audio: ${exact ? "yes" : "NO"}; underruns: ${pb.underruns}; completions on their period's time: ${onTime}/${r.completions.length}`,
  );
  return exact && onTime === r.completions.length ? 0 : 1;
}
