/// <reference lib="dom" />
/**
 * The page the browser test drives (test/browser/run.ts): a real Linux guest
 * in v86 with the card on a WebAudioBackend. The card's output goes through a
 * tap worklet that records every rendered frame; the microphone is Chromium's
 * fake capture device. run() resolves when the guest's payload is done, with
 * the console, the stream events, the voices' counters and the rendered audio.
 */
import { RealTimeClock, type StreamEvent } from "virtio-snd";
import { type VoiceStats, WebAudioBackend, webAudioUnsupported } from "virtio-snd/browser";
import { bootPageGuest } from "../../scripts/browser/page-guest.js";

export interface PageRunOptions {
  /** Output sessions (0-based, in START order) during which the context is suspended for a while. */
  readonly suspendDuring: readonly number[];
  /** Seconds of output the tap can hold. */
  readonly tapSeconds: number;
  readonly timeoutMs: number;
  readonly sampleRate: number;
  /** WebAudioBackend's bufferMs. */
  readonly bufferMs: number;
}

/** What the tap recorded from one output session's START to the next one's, as base64 float32 stereo frames. */
export interface Segment {
  readonly startFrame: number;
  readonly frames: number;
  readonly base64: string;
}

export interface PageRunResult {
  readonly console: string[];
  readonly events: { type: string; streamId: number; atMs: number }[];
  readonly stats: VoiceStats[];
  readonly segments: Segment[];
  readonly suspensions: { session: number; suspendedMs: number }[];
  readonly sampleRate: number;
  readonly baseLatency: number;
  readonly outputLatency: number;
  /** Frames queued in the output ring, sampled every 10 ms while an output stream ran. */
  readonly queuedSamples: number[];
  readonly bootMs: number;
  readonly timedOut: boolean;
  /** The microphone track's settings (sample rate, channels, processing). */
  readonly micSettings: string;
}

function base64(bytes: Uint8Array): string {
  let s = "";
  for (let i = 0; i < bytes.length; i += 0x8000)
    s += String.fromCharCode(...bytes.subarray(i, Math.min(bytes.length, i + 0x8000)));
  return btoa(s);
}

function segmentsOf(data: Float32Array, starts: readonly number[], end: number): Segment[] {
  return starts.map((startFrame, i) => {
    const to = starts[i + 1] ?? end;
    const slice = data.slice(startFrame * 2, to * 2);
    return { startFrame, frames: to - startFrame, base64: base64(new Uint8Array(slice.buffer)) };
  });
}

async function run(options: PageRunOptions): Promise<PageRunResult> {
  const why = webAudioUnsupported();
  if (why !== null) throw new Error(why);
  const context = new AudioContext({ sampleRate: options.sampleRate, latencyHint: "interactive" });
  await context.audioWorklet.addModule("/tap-worklet.js");
  const capacity = Math.round(options.tapSeconds * context.sampleRate);
  const tapBuffer = new SharedArrayBuffer(16 + capacity * 2 * 4);
  new Int32Array(tapBuffer, 0, 4)[1] = capacity;
  const tap = new AudioWorkletNode(context, "vsnd-tap", {
    numberOfInputs: 1,
    numberOfOutputs: 1,
    outputChannelCount: [2],
    channelCount: 2,
    channelCountMode: "explicit",
    channelInterpretation: "discrete",
    processorOptions: { buffer: tapBuffer },
  });
  tap.connect(context.destination);
  const microphone = await WebAudioBackend.microphone(context, { channelCount: 2 });
  const backend = await WebAudioBackend.create(context, {
    workletUrl: "/virtio-snd/browser/worklet.js",
    destination: tap,
    input: microphone,
    bufferMs: options.bufferMs,
  });
  await backend.resume();

  const clock = new RealTimeClock();
  const t0 = performance.now();
  const lines: string[] = [];
  const events: PageRunResult["events"] = [];
  const stats: VoiceStats[] = [];
  const suspensions: PageRunResult["suspensions"] = [];
  const queuedSamples: number[] = [];
  let outputSessions = 0;
  const tapHeader = new Int32Array(tapBuffer, 0, 4);
  /** The tap's frame count at each output session's START: everything it renders comes after. */
  const sessionStarts: number[] = [];
  let sampler: ReturnType<typeof setInterval> | undefined;
  let bootMs = 0;

  const onStreamEvent = (e: StreamEvent) => {
    events.push({ type: e.type, streamId: e.streamId, atMs: performance.now() - t0 });
    if (e.streamId === 0 && e.type === "start") {
      const session = outputSessions++;
      sessionStarts.push(Atomics.load(tapHeader, 0));
      sampler ??= setInterval(() => {
        const s = backend.stats(0);
        if (s !== undefined) queuedSamples.push(s.queuedFrames);
      }, 10);
      if (options.suspendDuring.includes(session)) {
        // As a browser's autoplay policy or a hidden tab would: the audio clock stops, then goes on.
        setTimeout(() => {
          const from = performance.now();
          void context.suspend().then(() =>
            setTimeout(() => {
              void context
                .resume()
                .then(() => suspensions.push({ session, suspendedMs: performance.now() - from }));
            }, 300),
          );
        }, 100);
      }
    }
    if (e.streamId === 0 && e.type === "stop") {
      clearInterval(sampler);
      sampler = undefined;
    }
    if (e.type === "release") {
      const s = backend.stats(e.streamId);
      if (s !== undefined) stats.push(s);
    }
  };

  let finish: (timedOut: boolean) => void = () => {};
  const finished = new Promise<boolean>((resolve) => (finish = resolve));
  const guest = await bootPageGuest({
    backend,
    clock,
    onStreamEvent,
    onConsole: (line) => {
      lines.push(line);
      if (line.startsWith("@@VSND boot=") && bootMs === 0) bootMs = performance.now() - t0;
      if (line.startsWith("@@VSND done=")) finish(false);
    },
  });
  const timer = setTimeout(() => finish(true), options.timeoutMs);
  const timedOut = await finished;
  clearTimeout(timer);
  await guest.stop();
  // Let the last ring drain into the tap.
  await new Promise((r) => setTimeout(r, 300));
  const segments = segmentsOf(new Float32Array(tapBuffer, 16), sessionStarts, Atomics.load(tapHeader, 0));
  const result: PageRunResult = {
    console: lines,
    events,
    stats,
    segments,
    suspensions,
    sampleRate: context.sampleRate,
    baseLatency: context.baseLatency,
    outputLatency: context.outputLatency,
    queuedSamples,
    bootMs,
    timedOut,
    micSettings: JSON.stringify(microphone.mediaStream.getAudioTracks()[0]?.getSettings() ?? {}),
  };
  backend.close();
  await context.close();
  return result;
}

declare global {
  interface Window {
    vsndTest: { run: typeof run };
  }
}
window.vsndTest = { run };
document.body.dataset["ready"] = "1";
