/**
 * Snapshot and restore (VirtioSound.saveState/restoreState) with real rings:
 * a device saved in the middle of a playback or a recording, retired, and
 * restored into a new device over the same guest memory carries on with no
 * frame lost or repeated; every pending message completes exactly once; the
 * rest of the state (features, controls, jacks, waiting events) comes back;
 * and bytes that are not a snapshot of this card are refused whole.
 */
import { describe, expect, it } from "vitest";
import { muteControl, volumeControl } from "../../src/device/controls.js";
import type { SoundConfig } from "../../src/device/config.js";
import { type Completion, type GuestOptions, SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { VirtioSndError } from "../../src/errors.js";
import {
  VIRTIO_SND_EVT_JACK_DISCONNECTED,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_S_OK,
} from "../../src/spec/constants.js";
import { PcmState } from "../../src/stream/pcm-state.js";
import { signal } from "../signal.js";

const OK = VIRTIO_SND_S_OK;
const S16 = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000, channels: 2 };
const PERIOD = 1920;
const PERIOD_NS = 10_000_000;

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Plays `data` as Linux does: `periods` messages in flight, each requeued when it completes. */
function feed(g: SimulatedGuest, data: Uint8Array, periods = 4): { done: Completion[]; tokens: number[] } {
  expect(g.setParams(0, { ...S16, bufferBytes: PERIOD * periods, periodBytes: PERIOD })).toBe(OK);
  expect(g.prepare(0)).toBe(OK);
  const dma = g.alloc(PERIOD * periods, 4096);
  const done: Completion[] = [];
  const tokens: number[] = [];
  let offset = 0;
  const queue = (slot: number): void => {
    if (offset >= data.length) return;
    const addr = dma + slot * PERIOD;
    g.memory.write(addr, data, offset, PERIOD);
    offset += PERIOD;
    // Odd cuts so the saved cursor sits inside a descriptor.
    tokens.push(
      g.queueIo(
        0,
        false,
        addr,
        PERIOD,
        (c) => {
          done.push(c);
          if (c.status === OK) queue(slot);
        },
        [333, 1001],
      ),
    );
  };
  for (let slot = 0; slot < periods; slot++) queue(slot);
  expect(g.start(0)).toBe(OK);
  return { done, tokens };
}

/** A probed guest `ns` into playing `periods` periods of noise (from `seed`) on stream 0, as feed() plays it. */
function playing(options: GuestOptions, periods: number, seed: number, ns: number) {
  const g = new SimulatedGuest(options);
  g.init();
  g.probe();
  const data = signal(periods * PERIOD, seed);
  const fed = feed(g, data);
  g.clock.advance(ns);
  return { g, data, ...fed };
}

/** "ok" when `f` returns, else the code of the VirtioSndError it throws. */
function outcome(f: () => void): string {
  try {
    f();
    return "ok";
  } catch (e) {
    if (e instanceof VirtioSndError) return e.code;
    throw e;
  }
}

const VARIANTS = [false, true].flatMap((packed) =>
  [false, true].flatMap((eventIdx) => [false, true].map((indirect) => ({ packed, eventIdx, indirect }))),
);

describe.each(VARIANTS)(
  "snapshot in the middle of a playback (packed $packed, eventIdx $eventIdx, indirect $indirect)",
  (v) => {
    it.each([0.37, 2.5, 5.91])(
      "cut at %f periods: every frame once, in order, every message completed once",
      (at) => {
        const { g, data, done, tokens } = playing(
          { ...v, memorySize: 4 << 20 },
          12,
          7,
          Math.round(at * PERIOD_NS),
        );
        const pendingBefore = g.device.streams[0]!.pendingCount;
        expect(pendingBefore).toBeGreaterThan(0);
        const { state, before } = g.snapshotAndRestore();
        // The new device is where the old one was.
        expect(g.device.streams[0]!.state).toBe(PcmState.Running);
        expect(g.device.streams[0]!.pendingCount).toBe(pendingBefore);
        expect(g.device.saveState()).toEqual(state);
        g.clock.advance(14 * PERIOD_NS);
        expect(g.stop(0)).toBe(OK);
        expect(g.release(0)).toBe(OK);
        const played = concat(
          before.playbacksOf(0)[0]!.data.bytes(),
          g.backend.playbacksOf(0)[0]!.data.bytes(),
        );
        expect(played.length).toBe(data.length);
        expect(Buffer.compare(played, data)).toBe(0);
        expect(done.map((c) => c.status)).toEqual(new Array<number>(12).fill(OK));
        // Every message queued completed once (the guest model throws on a token it did not queue).
        expect(tokens.length).toBe(12);
        expect(done.length).toBe(12);
        expect(g.pendingCount(false)).toBe(0);
        expect(g.needsReset).toBeNull();
      },
    );
  },
);

describe("where a restored voice starts", () => {
  // Cut 0.37 periods into a period: the voice was that far (3.7 ms) into its next chunk.
  const LAG = 3_700_000;
  const played = (g: SimulatedGuest) => g.backend.playbacksOf(0)[0]?.data.length ?? 0;

  it("a running voice keeps its place in the period: the next chunk comes when it was due", () => {
    const { g } = playing({ packed: true, memorySize: 4 << 20 }, 12, 5, 2 * PERIOD_NS + LAG);
    g.snapshotAndRestore();
    g.clock.advance(PERIOD_NS - LAG - 1);
    expect(played(g)).toBe(0);
    g.clock.advance(1);
    expect(played(g)).toBe(PERIOD);
  });

  it("time the guest's clock ran between save and restore is owed at once; time it will re-run is waited", () => {
    const { g } = playing({ packed: true, memorySize: 4 << 20 }, 12, 6, 2 * PERIOD_NS + LAG);
    // The guest's clock ran on two periods while the machine was restored (v86 restarts it early).
    g.snapshotAndRestore({ elapsedNs: 2 * PERIOD_NS });
    g.clock.advance(0);
    expect(played(g)).toBe(2 * PERIOD);
    g.clock.advance(PERIOD_NS - LAG);
    expect(played(g)).toBe(3 * PERIOD);

    const { g: h } = playing({ packed: true, memorySize: 4 << 20 }, 12, 6, 2 * PERIOD_NS + LAG);
    // Saved 5 ms after the machine: the guest lives those 5 ms again before the next chunk is due.
    h.snapshotAndRestore({ elapsedNs: -5_000_000 });
    h.clock.advance(PERIOD_NS - LAG + 5_000_000 - 1);
    expect(played(h)).toBe(0);
    h.clock.advance(1);
    expect(played(h)).toBe(PERIOD);
  });

  it("refuses a lag no live voice has, and an elapsed time that is not a number", () => {
    const good = playing({ packed: true, memorySize: 2 << 20 }, 8, 3, 1.5 * PERIOD_NS).g.device.saveState();
    const fresh = () => new SimulatedGuest({ packed: true, memorySize: 2 << 20 }).device;
    const lag = (v: unknown) =>
      edit(good, (j) => ((j["streams"] as Record<string, unknown>[])[0]!["lagNs"] = v));
    expect(outcome(() => fresh().restoreState(lag(61_000_000_000)))).toBe("ERR_INVALID_SNAPSHOT");
    expect(outcome(() => fresh().restoreState(lag(1.5)))).toBe("ERR_INVALID_SNAPSHOT");
    expect(outcome(() => fresh().restoreState(lag(-2_000_000)))).toBe("ok");
    expect(outcome(() => fresh().restoreState(good, { elapsedNs: Number.NaN }))).toBe("ERR_INVALID_CONFIG");
  });
});

describe.each([false, true])("snapshot in the middle of a recording (packed %s)", (packed) => {
  it("the guest gets exactly what the voices delivered, before and after the cut", () => {
    const g = new SimulatedGuest({
      packed,
      memorySize: 4 << 20,
      backend: { input: (id) => signal(40 * PERIOD, 100 + id) },
    });
    g.init();
    g.probe();
    expect(g.setParams(1, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    expect(g.prepare(1)).toBe(OK);
    const got: Uint8Array[] = [];
    const dma = g.alloc(4 * PERIOD, 4096);
    let left = 10;
    const queue = (slot: number): void => {
      if (left-- <= 0) return;
      g.queueIo(1, true, dma + slot * PERIOD, PERIOD, (c) => {
        expect(c.status).toBe(OK);
        got.push(c.data!);
        queue(slot);
      });
    };
    for (let slot = 0; slot < 4; slot++) queue(slot);
    expect(g.start(1)).toBe(OK);
    g.clock.advance(3.3 * PERIOD_NS);
    const { before } = g.snapshotAndRestore();
    g.clock.advance(12 * PERIOD_NS);
    expect(g.stop(1)).toBe(OK);
    expect(g.release(1)).toBe(OK);
    const delivered = concat(
      before.capturesOf(1)[0]!.delivered.bytes(),
      g.backend.capturesOf(1)[0]!.delivered.bytes(),
    );
    const received = concat(...got);
    expect(received.length).toBe(10 * PERIOD);
    expect(Buffer.compare(received, delivered.subarray(0, received.length))).toBe(0);
  });
});

describe("what else a snapshot keeps", () => {
  const config: SoundConfig = {
    streams: [{ direction: "output" }, { direction: "input" }],
    jacks: [{ connected: true, remap: true }],
    controls: [
      volumeControl("Master Playback Volume", "output"),
      muteControl("Master Playback Switch", "output"),
    ],
  };

  it("features, controls, jacks, waiting events and a prepared stream's parameters", () => {
    const g = new SimulatedGuest({ config, ctls: true, memorySize: 2 << 20 });
    g.init();
    g.probe(0); // no event buffers: events wait in the device
    const volume = g.device.controls.find("Master Playback Volume");
    g.device.setControlValue(volume, [37, 37]);
    g.device.setJackConnected(0, false);
    expect(g.setParams(0, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    expect(g.prepare(0)).toBe(OK);
    const features = g.device.negotiatedFeatures;
    g.snapshotAndRestore();
    expect(g.device.negotiatedFeatures).toBe(features);
    expect(g.device.controls.get(volume).value).toEqual({ kind: "integer", values: [37, 37] });
    expect(g.device.jacks[0]!.connected).toBe(false);
    expect(g.device.streams[0]!.state).toBe(PcmState.Prepared);
    expect(g.device.streams[0]!.params?.periodBytes).toBe(PERIOD);
    // The waiting events reach the driver once it offers buffers.
    g.probe(8);
    expect(g.events.map((e) => e.code)).toContain(VIRTIO_SND_EVT_JACK_DISCONNECTED);
  });

  it.each([
    ["garbage", () => new TextEncoder().encode("not a snapshot")],
    ["truncated", (s: Uint8Array) => s.subarray(0, s.length - 3)],
    [
      "another card",
      (s: Uint8Array) => edit(s, (j) => ((j["card"] as Record<string, number>)["streams"] = 3)),
    ],
    ["a newer version", (s: Uint8Array) => edit(s, (j) => (j["version"] = 2))],
    [
      "a pending buffer outside memory",
      (s: Uint8Array) =>
        edit(s, (j) => {
          const streams = j["streams"] as { pending: { segments: number[][] }[] }[];
          streams[0]!.pending[0]!.segments[1]![0] = 2 ** 40;
        }),
    ],
    [
      "a ring position outside the ring",
      (s: Uint8Array) =>
        edit(s, (j) => ((j["queues"] as { ring: Record<string, number> }[])[2]!.ring["availIdx"] = 99999)),
    ],
  ])("refuses %s whole: ERR_INVALID_SNAPSHOT, the device reset and usable", (_n, mangle) => {
    const good = playing({ packed: true, memorySize: 2 << 20 }, 8, 3, 1.5 * PERIOD_NS).g.device.saveState();
    const fresh = new SimulatedGuest({ packed: true, memorySize: 2 << 20 });
    expect(outcome(() => fresh.device.restoreState(mangle(good)))).toBe("ERR_INVALID_SNAPSHOT");
    expect(fresh.device.negotiatedFeatures).toBe(0n);
    for (let i = 0; i < 4; i++) expect(fresh.device.queue(i)).toBeNull();
    fresh.init();
    expect(fresh.probe().streams.length).toBe(2);
  });
});

function edit(state: Uint8Array, change: (json: Record<string, unknown>) => void): Uint8Array {
  const json = JSON.parse(new TextDecoder().decode(state)) as Record<string, unknown>;
  change(json);
  return new TextEncoder().encode(JSON.stringify(json));
}
