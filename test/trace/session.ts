/**
 * A recorded session for the trace tests: a SimulatedGuest (the Linux driver
 * model) probes the device, plays with pre-buffering, captures from a known
 * source, sees a jack change, stops and releases, and does it all again with
 * other parameters.
 */
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { play, record } from "../../src/driver/pcm-session.js";
import { VIRTIO_SND_PCM_FMT_S16 } from "../../src/spec/constants.js";
import { MemoryTraceSink, TraceRecorder } from "../../src/trace/recorder.js";
import { signal } from "../signal.js";

export { signal };

export const MS = 1_000_000;
export const PERIOD = 1920; // 10 ms of 48 kHz S16 stereo
const S16_STEREO_48K = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000 as const, channels: 2 };
const S16_MONO_44K = { format: VIRTIO_SND_PCM_FMT_S16, rate: 44100 as const, channels: 1 };

export interface RecordedSession {
  readonly text: string;
  readonly lines: string[];
  readonly guest: SimulatedGuest;
  /** What the capture source gives at each START (the known source). */
  readonly source: Uint8Array;
  /** Every byte the device played on stream 0, in order. */
  readonly played: Uint8Array;
  /** Every audio byte the guest sent on stream 0, in order (played or not). */
  readonly sent: Uint8Array;
  readonly recorder: TraceRecorder;
}

export interface SessionOptions {
  packed?: boolean;
  indirect?: boolean;
  txAudio?: "full" | "hash";
}

export function recordSession(o: SessionOptions = {}): RecordedSession {
  const sink = new MemoryTraceSink();
  const recorder = new TraceRecorder({
    sink,
    note: `simulated Linux guest, ${o.packed ? "packed" : "split"} ring`,
    ...(o.txAudio !== undefined ? { txAudio: o.txAudio } : {}),
  });
  const source = signal(64 * 1024, 7);
  const guest = new SimulatedGuest({
    packed: o.packed ?? false,
    indirect: o.indirect ?? false,
    queueSize: 16,
    recorder,
    backend: { input: () => source },
  });
  guest.init();
  guest.probe();

  // Cycle 1: 12 periods with 4 pre-buffered, a jack unplugged, 6 periods captured.
  const first = signal(12 * PERIOD, 1);
  play(guest, 0, first, { ...S16_STEREO_48K, periodBytes: PERIOD, periods: 4 }, { splitData: true });
  guest.clock.advance(3 * MS);
  guest.device.setJackConnected(0, false);
  guest.clock.advance(2 * MS);
  record(guest, 1, 6 * PERIOD, { ...S16_STEREO_48K, periodBytes: PERIOD, periods: 3 });

  // Cycle 2: other parameters, the jack back.
  guest.clock.advance(7 * MS);
  const period2 = 882; // 10 ms of 44.1 kHz S16 mono
  const second = signal(5 * period2, 3);
  play(guest, 0, second, { ...S16_MONO_44K, periodBytes: period2, periods: 2 });
  guest.device.setJackConnected(0, true);
  guest.clock.advance(1 * MS);
  record(guest, 1, 4 * period2, { ...S16_MONO_44K, periodBytes: period2, periods: 2 });
  guest.clock.advance(5 * MS);

  // Cycle 3, aborted like aplay and arecord on Ctrl-C: STOP and RELEASE with messages
  // of 1.5 and 2 periods half done, so RELEASE completes them short.
  const third = signal(3 * PERIOD, 5);
  const p3 = { ...S16_STEREO_48K, bufferBytes: 3 * PERIOD, periodBytes: PERIOD };
  guest.setParams(0, p3);
  guest.prepare(0);
  const tx = guest.alloc(3 * PERIOD, 4096);
  guest.memory.write(tx, third, 0, third.length);
  guest.queueIo(0, false, tx, 1.5 * PERIOD);
  guest.queueIo(0, false, tx + 1.5 * PERIOD, 1.5 * PERIOD);
  guest.setParams(1, p3);
  guest.prepare(1);
  const rx = guest.alloc(2 * PERIOD, 4096);
  guest.queueIo(1, true, rx, 2 * PERIOD);
  guest.start(0);
  guest.start(1);
  guest.clock.advance(15 * MS);
  guest.stop(0);
  guest.stop(1);
  guest.release(0);
  guest.release(1);
  guest.clock.advance(1 * MS);
  recorder.close();

  const played = new Uint8Array(first.length + second.length + PERIOD);
  played.set(first, 0);
  played.set(second, first.length);
  played.set(third.subarray(0, PERIOD), first.length + second.length);
  const sent = new Uint8Array(first.length + second.length + third.length);
  sent.set(played.subarray(0, first.length + second.length), 0);
  sent.set(third, first.length + second.length);
  return { text: sink.text(), lines: [...sink.lines], guest, source, played, sent, recorder };
}
