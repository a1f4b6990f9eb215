/**
 * LiveReplay: the replay of replayer.ts on a clock and into a backend the
 * caller gives, asynchronously, reporting as it goes. On a VirtualClock, fast
 * or paced in real time, it gives replayTrace's answer; paced, and on a
 * RealTimeClock, it takes the trace's own time (less the idle time it may
 * skip) and plays the same bytes.
 */
import { describe, expect, it } from "vitest";
import { RealTimeClock, VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { play } from "../../src/driver/pcm-session.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_VQ_CONTROL, VIRTIO_SND_VQ_TX } from "../../src/spec/constants.js";
import type { StreamEvent } from "../../src/stream/pcm-stream.js";
import { encodeTrace, parseTrace } from "../../src/trace/format.js";
import { LiveReplay, traceTxAudio } from "../../src/trace/live-replay.js";
import { MemoryTraceSink, TraceRecorder } from "../../src/trace/recorder.js";
import type { ReplayCompletion } from "../../src/trace/replay-types.js";
import { replayTrace } from "../../src/trace/replayer.js";
import { PERIOD, recordSession, signal } from "./session.js";

const s = recordSession();
const trace = parseTrace(s.text);
const lastT = trace.events.at(-1)!.t;

describe("LiveReplay", () => {
  it("on a VirtualClock: replayTrace's result, with every completion, event and stream event reported", async () => {
    const completions: ReplayCompletion[] = [];
    const events: number[] = [];
    const streamEvents: StreamEvent[] = [];
    const live = new LiveReplay(s.text, {
      clock: new VirtualClock(),
      onCompletion: (c) => completions.push(c),
      onEvent: (_e, i) => events.push(i),
      onStreamEvent: (e) => streamEvents.push(e),
    });
    const result = await live.run();
    const expected = replayTrace(trace);
    expect(result.ok ? "" : result.message).toBe("");
    expect(result.stats).toEqual(expected.stats);
    expect(events).toEqual(trace.events.map((_, i) => i));
    expect(completions).toHaveLength(expected.stats.completions);
    // Control completions carry the request as recorded and the device's answer.
    const jackInfo = completions.find((c) => c.queue === VIRTIO_SND_VQ_CONTROL)!;
    expect(Array.from(jackInfo.request.subarray(0, 4))).toEqual([1, 0, 0, 0]);
    expect(Array.from(jackInfo.response.subarray(0, 4))).toEqual([0, 0x80, 0, 0]);
    const tx = completions.filter((c) => c.queue === VIRTIO_SND_VQ_TX);
    expect(tx.every((c) => c.stream === 0 && c.readableBytes > 4)).toBe(true);
    expect(tx.map((c) => c.t)).toEqual([...tx.map((c) => c.t)].sort((a, b) => a - b));
    expect(streamEvents.filter((e) => e.streamId === 0).map((e) => e.type)).toContain("start");
    // What the voices took, over all sessions of stream 0.
    expect(Buffer.from(live.playedAudio(0)).equals(Buffer.from(s.played))).toBe(true);
    expect(live.playedBytes(0)).toBe(s.played.length);
    expect(live.skippedNs).toBe(0);
  });

  it("on a VirtualClock paced in real time, into a given backend: the trace's own time, replayTrace's answer", async () => {
    const clock = new VirtualClock();
    const speaker = new MemoryBackend({ clock });
    const live = new LiveReplay(trace, { clock, pace: "real-time", backend: speaker });
    const started = performance.now();
    const result = await live.run();
    const tookNs = (performance.now() - started) * 1e6;
    expect(result.ok ? "" : result.message).toBe("");
    expect(result.stats).toEqual(replayTrace(trace).stats);
    expect(tookNs).toBeGreaterThanOrEqual(lastT - 2e6);
    expect(tookNs).toBeLessThan(lastT + 2e9);
    expect(Buffer.from(live.playedAudio(0)).equals(Buffer.from(s.played))).toBe(true);
    const given = speaker.playbacksOf(0).map((p) => Buffer.from(p.data.bytes()));
    expect(Buffer.concat(given).equals(Buffer.from(s.played))).toBe(true);
    // The end of the run resets the device: every voice is closed.
    expect(speaker.playbacks.every((p) => p.closed)).toBe(true);
  });

  it("on a RealTimeClock: a playback whose events keep clear of the ticks, in its own time, every byte", async () => {
    // A simulated guest plays 12 periods (120 ms) with 4 queued ahead, then stops 100 ms after the
    // last one played (its model stops at that very instant: on host timers, that would race the tick).
    const sink = new MemoryTraceSink();
    const guest = new SimulatedGuest({ recorder: new TraceRecorder({ sink }) });
    guest.init();
    guest.probe();
    const audio = signal(12 * PERIOD, 21);
    const params = {
      format: VIRTIO_SND_PCM_FMT_S16,
      rate: 48000 as const,
      channels: 2,
      periodBytes: PERIOD,
      periods: 4,
    };
    play(guest, 0, audio, params);
    const recorded = parseTrace(sink.text());
    const lastTx = recorded.events.reduce(
      (last, e, i) => (e.ev === "used" && e.q === VIRTIO_SND_VQ_TX ? i : last),
      -1,
    );
    const events = recorded.events.map((e, i) => (i > lastTx ? { ...e, t: e.t + 100e6 } : e));
    const spaced = parseTrace(encodeTrace({ header: recorded.header, events }));
    const clock = new RealTimeClock();
    const live = new LiveReplay(spaced, { clock, backend: new MemoryBackend({ clock }) });
    const started = performance.now();
    const result = await live.run();
    expect(result.ok ? "" : result.message).toBe("");
    expect((performance.now() - started) * 1e6).toBeGreaterThanOrEqual(events.at(-1)!.t - 2e6);
    expect(Buffer.from(live.playedAudio(0)).equals(Buffer.from(audio))).toBe(true);
  });

  it("skips idle time (no stream running) beyond maxIdleNs, in real time", async () => {
    // The whole session a minute later: a minute of nothing first.
    const late = parseTrace(
      encodeTrace({ header: trace.header, events: trace.events.map((e) => ({ ...e, t: e.t + 60e9 })) }),
    );
    const live = new LiveReplay(late, { clock: new VirtualClock(), pace: "real-time", maxIdleNs: 1_000_000 });
    const started = performance.now();
    const result = await live.run();
    expect(result.ok ? "" : result.message).toBe("");
    expect(performance.now() - started).toBeLessThan(10_000);
    expect(live.skippedNs).toBeGreaterThanOrEqual(60e9 - 1e6);
    expect(live.traceTime).toBeGreaterThanOrEqual(60e9 + lastT);
  });

  it("reports a divergence as replayTrace does", async () => {
    const lines = s.lines.map((l) =>
      l.includes('"ev":"used","q":0') && l.includes('"len":52') ? l.replace('"hex":"0080', '"hex":"0180') : l,
    );
    const live = await new LiveReplay(lines, { clock: new VirtualClock() }).run();
    const expected = replayTrace(lines);
    expect(live.ok).toBe(false);
    expect(expected.ok).toBe(false);
    if (!live.ok && !expected.ok) expect(live.message).toBe(expected.message);
  });

  it("runs once: a second run(), concurrent or later, rejects with ERR_INVALID_STATE", async () => {
    const live = new LiveReplay(trace, { clock: new VirtualClock() });
    const first = live.run();
    await expect(live.run()).rejects.toMatchObject({ code: "ERR_INVALID_STATE", message: /runs once/ });
    expect((await first).ok).toBe(true);
    await expect(live.run()).rejects.toMatchObject({ code: "ERR_INVALID_STATE" });
  });

  it("an AbortSignal stops a paced run mid-wait: rejects with its reason, the device reset", async () => {
    const clock = new VirtualClock();
    const speaker = new MemoryBackend({ clock });
    const live = new LiveReplay(trace, { clock, pace: "real-time", backend: speaker });
    const controller = new AbortController();
    const started = performance.now();
    let opened = 0;
    const run = live.run({ signal: controller.signal });
    // Abort while audio is playing, well before the trace's end.
    const timer = setInterval(() => {
      opened = speaker.playbacks.length;
      if (opened > 0) controller.abort(new Error("enough"));
    }, 1);
    await expect(run).rejects.toThrow(/^enough$/);
    clearInterval(timer);
    expect(performance.now() - started).toBeLessThan(lastT / 1e6);
    expect(live.traceTime).toBeLessThan(lastT);
    expect(speaker.playbacks.every((p) => p.closed)).toBe(true);
  });

  it("an already aborted signal: run() rejects at once and the replay cannot run again", async () => {
    const live = new LiveReplay(trace, { clock: new VirtualClock() });
    await expect(live.run({ signal: AbortSignal.abort() })).rejects.toMatchObject({ name: "AbortError" });
    await expect(live.run()).rejects.toMatchObject({ code: "ERR_INVALID_STATE" });
  });

  it("an abort on a RealTimeClock cuts a long wait short", async () => {
    const late = parseTrace(
      encodeTrace({ header: trace.header, events: trace.events.map((e) => ({ ...e, t: e.t + 60e9 })) }),
    );
    const clock = new RealTimeClock();
    const live = new LiveReplay(late, { clock, backend: new MemoryBackend({ clock }) });
    const started = performance.now();
    const run = live.run({ signal: AbortSignal.timeout(50) });
    await expect(run).rejects.toMatchObject({ name: "TimeoutError" });
    expect(performance.now() - started).toBeLessThan(5_000);
  });
});

describe("traceTxAudio", () => {
  it("is every audio byte the guest sent on a stream, in order", () => {
    expect(Buffer.from(traceTxAudio(trace, 0)!).equals(Buffer.from(s.sent))).toBe(true);
    expect(traceTxAudio(trace, 1)).toEqual(new Uint8Array(0));
  });

  it("is null when the trace holds only hashes of the audio", () => {
    expect(traceTxAudio(parseTrace(recordSession({ txAudio: "hash" }).text), 0)).toBeNull();
  });
});
