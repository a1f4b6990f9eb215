/// <reference lib="dom" />
/**
 * The demo page (`npm run demo:browser`): the sound card on a WebAudioBackend,
 * fed either by a Linux guest booting in v86 in this page (it plays a tune
 * with aplay), or by the recorded trace replayed without a VM. Shows the
 * stream events as they happen and a level meter.
 */
import { LiveReplay, RealTimeClock, type StreamEvent, VirtualClock } from "virtio-snd";
import { WebAudioBackend, webAudioUnsupported } from "virtio-snd/browser";
import { bootPageGuest } from "./page-guest.js";

/** What the page measured, for scripts/browser/figures.ts: ms queued for the worklet while stream 0 played. */
const figures = { queuedMs: [] as number[], outputLatencyMs: 0 };
(window as unknown as { vsndFigures: typeof figures }).vsndFigures = figures;

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const log = $("log");
const startButton = $<HTMLButtonElement>("start");
const meter = $("meter");
const status = $("status");
let t0 = performance.now();

function say(line: string): void {
  const stamp = ((performance.now() - t0) / 1000).toFixed(3).padStart(8);
  log.textContent += `[${stamp} s] ${line}\n`;
  log.scrollTop = log.scrollHeight;
}

function describe(e: StreamEvent): string {
  const p = e.params;
  const what = p !== undefined ? ` (format ${p.format}, ${p.channels} ch, ${p.rate} Hz)` : "";
  return `stream ${e.streamId} ${e.type}${e.type === "set-params" ? what : ""}${e.reason !== undefined ? `: ${e.reason}` : ""}`;
}

/** Peak level of what the card plays, drawn every frame. */
function startMeter(analyser: AnalyserNode): void {
  const data = new Float32Array(analyser.fftSize);
  const draw = () => {
    analyser.getFloatTimeDomainData(data);
    let peak = 0;
    for (const v of data) peak = Math.max(peak, Math.abs(v));
    const db = peak > 0 ? 20 * Math.log10(peak) : -Infinity;
    const width = Math.max(0, Math.min(100, ((db + 60) / 60) * 100));
    meter.style.width = `${width}%`;
    meter.title = Number.isFinite(db) ? `${db.toFixed(1)} dBFS` : "silence";
    requestAnimationFrame(draw);
  };
  requestAnimationFrame(draw);
}

async function start(): Promise<void> {
  startButton.disabled = true;
  t0 = performance.now();
  const why = webAudioUnsupported();
  if (why !== null) {
    say(`cannot play here: ${why}`);
    return;
  }
  const mode = (document.querySelector("input[name=mode]:checked") as HTMLInputElement).value;
  // Created in the click, so autoplay policies let it run.
  const context = new AudioContext({ latencyHint: "interactive" });
  const mix = context.createGain();
  const analyser = context.createAnalyser();
  analyser.fftSize = 2048;
  mix.connect(analyser);
  analyser.connect(context.destination);
  startMeter(analyser);
  const backend = await WebAudioBackend.create(context, {
    workletUrl: "/virtio-snd/browser/worklet.js",
    destination: mix,
  });
  await backend.resume();
  say(`AudioContext at ${context.sampleRate} Hz (${context.state}); worklet loaded`);
  let playing = false;
  const timer = setInterval(() => {
    const s = backend.stats(0);
    if (s === undefined) return;
    if (playing) figures.queuedMs.push((s.queuedFrames / context.sampleRate) * 1000);
    status.textContent =
      `stream 0: ${s.streamFrames} frames taken from the guest, ${s.contextFrames} played at ${context.sampleRate} Hz, ` +
      `${((s.queuedFrames / context.sampleRate) * 1000).toFixed(0)} ms queued, ${s.underruns} underruns`;
  }, 100);
  const onStreamEvent = (e: StreamEvent) => {
    if (e.streamId === 0 && (e.type === "start" || e.type === "stop")) playing = e.type === "start";
    say(describe(e));
  };
  figures.outputLatencyMs = (context.baseLatency + context.outputLatency) * 1000;

  if (mode === "trace") {
    say("replaying traces/demo-tune.jsonl (a real Linux guest's aplay session) without a VM");
    const text = await (await fetch("/trace/demo-tune.jsonl")).text();
    // The replay's own clock follows the host's; the audio's pace comes from the worklet.
    const live = new LiveReplay(text, {
      clock: new VirtualClock(),
      pace: "real-time",
      backend,
      maxIdleNs: 250_000_000,
      onStreamEvent,
    });
    const result = await live.run();
    say(result.ok ? "replay done: every answer as the recorded device gave it" : `replay: ${result.message}`);
  } else {
    say("booting a Linux guest in v86 (about 10 s), then it plays a tune with aplay");
    let finish = () => {};
    const done = new Promise<void>((resolve) => (finish = resolve));
    const guest = await bootPageGuest({
      backend,
      clock: new RealTimeClock(),
      onStreamEvent,
      onConsole: (line) => {
        if (line.trim() !== "" && !line.startsWith("@@VSND")) say(`guest: ${line}`);
        const m = /^@@VSND (\w+)=(.*)$/.exec(line);
        if (m?.[1] === "snd") say(`guest: sound card ${m[2]}`);
        if (m?.[1] === "done") finish();
      },
    });
    await done;
    await guest.stop();
    say("the guest is done");
  }
  // Let the last frames play out.
  await new Promise((r) => setTimeout(r, 500));
  clearInterval(timer);
  backend.close();
  startButton.disabled = false;
}

startButton.addEventListener("click", () => {
  start().catch((err: unknown) => {
    say(`error: ${err instanceof Error ? err.message : String(err)}`);
    startButton.disabled = false;
  });
});
