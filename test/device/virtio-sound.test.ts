/**
 * The device's transport-facing API (virtio 1.3 §2, §5.14): feature
 * negotiation, configuration space, queue setup and teardown, the
 * needs-reset state, device reset, jacks, and audio backends that fail.
 */
import { describe, expect, it } from "vitest";
import type { AudioBackend, OutputSource, Voice } from "../../src/audio/backend.js";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import type { PcmParams } from "../../src/audio/pcm-params.js";
import type { SoundConfig } from "../../src/device/config.js";
import { muteControl } from "../../src/device/controls.js";
import { VirtioSound, type VirtioSoundOptions } from "../../src/device/virtio-sound.js";
import { play } from "../../src/driver/pcm-session.js";
import {
  type Completion,
  GUEST_BASE,
  type GuestOptions,
  SimulatedGuest,
} from "../../src/driver/simulated-guest.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { BackendError, VirtioSndError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import {
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_IN_ORDER,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_RING_RESET,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_SOUND,
  VIRTIO_SND_EVT_JACK_CONNECTED,
  VIRTIO_SND_EVT_JACK_DISCONNECTED,
  VIRTIO_SND_F_CTLS,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_PCM_F_MSG_POLLING,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import {
  VIRTIO_SND_JACK_INFO_SIZE,
  VIRTIO_SND_PCM_INFO_SIZE,
  decodeJackInfo,
  decodePcmInfo,
  encodeQueryInfo,
} from "../../src/spec/structs.js";
import { PcmState } from "../../src/stream/pcm-state.js";
import { PackedQueue } from "../../src/virtqueue/packed-ring.js";
import { SplitQueue } from "../../src/virtqueue/split-ring.js";
import type { QueueLayout } from "../../src/virtqueue/virtqueue.js";
import { signal } from "../signal.js";

const MEM = 1 << 20;
const OK = VIRTIO_SND_S_OK;
const IO_ERR = VIRTIO_SND_S_IO_ERR;
const PARAMS = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000 as const, channels: 2 };
const PERIOD = 1920; // 10 ms of 48 kHz S16 stereo
const PERIOD_NS = 10_000_000;
const bit = (n: number): bigint => 1n << BigInt(n);
const V1 = bit(VIRTIO_F_VERSION_1);
const OFFERED_RING_BITS = bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);

function newGuest(opts: GuestOptions = {}): SimulatedGuest {
  const g = new SimulatedGuest({ memorySize: MEM, ...opts });
  g.init();
  return g;
}

/** A device on its own, for what needs no rings. */
function bareDevice(options: Partial<VirtioSoundOptions> = {}): VirtioSound {
  const clock = new VirtualClock();
  return new VirtioSound({
    memory: new FlatMemory(new ArrayBuffer(64 * 1024), GUEST_BASE),
    backend: new MemoryBackend({ clock }),
    clock,
    interrupt: () => undefined,
    ...options,
  });
}

/** Every call of the device's onNeedsReset, as the guest records them. */
function watchNeedsReset(g: SimulatedGuest): Error[] {
  const calls: Error[] = [];
  let current: Error | null = g.needsReset;
  Object.defineProperty(g, "needsReset", {
    get: () => current,
    set: (e: Error | null) => {
      if (e !== null) calls.push(e);
      current = e;
    },
  });
  return calls;
}

/** What a driver does after a reset: negotiate features and set up fresh queues. */
function renegotiate(g: SimulatedGuest): void {
  g.queues.length = 0;
  g.init();
}

function snapshot(g: SimulatedGuest): Uint8Array {
  const bytes = new Uint8Array(MEM);
  g.memory.read(GUEST_BASE, bytes, 0, MEM);
  return bytes;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a).equals(Buffer.from(b));
}

interface Feed {
  done: Completion[];
  /** Bytes queued so far. */
  queued(): number;
}

/**
 * Starts playing `data` on an output stream the way aplay does (set params,
 * prepare, fill the buffer, start, refill each period as it completes) and
 * returns without running the clock.
 */
function startPlayback(g: SimulatedGuest, streamId: number, data: Uint8Array, periods = 4): Feed {
  expect(
    g.setParams(streamId, { ...PARAMS, bufferBytes: PERIOD * periods, periodBytes: PERIOD }),
    "SET_PARAMS",
  ).toBe(OK);
  const dma = g.alloc(PERIOD * periods, 4096);
  expect(g.prepare(streamId), "PREPARE").toBe(OK);
  const done: Completion[] = [];
  let offset = 0;
  const queue = (slot: number): void => {
    if (offset >= data.length) return;
    const addr = dma + slot * PERIOD;
    g.memory.write(addr, data, offset, PERIOD);
    offset += PERIOD;
    g.queueIo(streamId, false, addr, PERIOD, (c) => {
      done.push(c);
      if (c.status === OK) queue(slot);
    });
  };
  for (let slot = 0; slot < periods; slot++) queue(slot);
  expect(g.start(streamId), "START").toBe(OK);
  return { done, queued: () => offset };
}

function pcmInfoQuery(count: number): Uint8Array {
  const req = new Uint8Array(16);
  encodeQueryInfo(new DataView(req.buffer), 0, {
    code: VIRTIO_SND_R_PCM_INFO,
    startId: 0,
    count,
    size: VIRTIO_SND_PCM_INFO_SIZE,
  });
  return req;
}

function expectInvalidState(f: () => unknown): void {
  let caught: unknown;
  try {
    f();
  } catch (e) {
    caught = e;
  }
  expect(caught).toBeInstanceOf(VirtioSndError);
  expect((caught as VirtioSndError).code).toBe("ERR_INVALID_STATE");
}

// ---------------------------------------------------------------------------
// Feature negotiation (§2.2, §5.14.3)
// ---------------------------------------------------------------------------

describe("feature negotiation", () => {
  it("offers VERSION_1, INDIRECT_DESC, EVENT_IDX, RING_PACKED unless packed: false, and CTLS only with controls", () => {
    const controls: SoundConfig = { controls: [muteControl("Master Playback Switch", "output")] };
    expect(bareDevice().deviceFeatures).toBe(V1 | OFFERED_RING_BITS | bit(VIRTIO_F_RING_PACKED));
    expect(bareDevice({ packed: true }).deviceFeatures).toBe(
      V1 | OFFERED_RING_BITS | bit(VIRTIO_F_RING_PACKED),
    );
    expect(bareDevice({ packed: false }).deviceFeatures).toBe(V1 | OFFERED_RING_BITS);
    expect(bareDevice({ packed: false, config: controls }).deviceFeatures).toBe(
      V1 | OFFERED_RING_BITS | bit(VIRTIO_SND_F_CTLS),
    );
    const d = bareDevice();
    expect([d.deviceId, d.configSize]).toEqual([VIRTIO_ID_SOUND, 16]);
  });

  it.each([
    { name: "nothing", features: 0n },
    { name: "no VERSION_1", features: OFFERED_RING_BITS | bit(VIRTIO_F_RING_PACKED) },
    { name: "a device-specific bit not offered", features: V1 | bit(5) },
    { name: "CTLS without controls", features: V1 | bit(VIRTIO_SND_F_CTLS) },
    { name: "ACCESS_PLATFORM", features: V1 | bit(VIRTIO_F_ACCESS_PLATFORM) },
    { name: "IN_ORDER", features: V1 | bit(VIRTIO_F_IN_ORDER) },
    { name: "RING_RESET", features: V1 | bit(VIRTIO_F_RING_RESET) },
    { name: "a bit above 64", features: V1 | bit(70) },
  ])("refuses $name, and queues cannot be set up after the refusal", ({ features }) => {
    const g = new SimulatedGuest({ memorySize: MEM });
    // Accepted first: a refused set afterwards withdraws the acceptance (FEATURES_OK is not set).
    expect(g.device.setDriverFeatures(V1)).toBe(true);
    expect(g.device.setDriverFeatures(features)).toBe(false);
    const q = new SplitDriverQueue({ mem: g.memory, alloc: g.alloc, size: 8, eventIdx: false });
    // A queue enabled without FEATURES_OK is the driver's error (§3.1.1): needs-reset, nothing thrown.
    expect(() => g.device.setupQueue(VIRTIO_SND_VQ_CONTROL, q.layout)).not.toThrow();
    expect(g.device.queue(VIRTIO_SND_VQ_CONTROL)).toBeNull();
    expect(g.needsReset?.message).toMatch(/before feature negotiation/);
  });

  it("refuses RING_PACKED when it was not offered", () => {
    const d = bareDevice({ packed: false });
    expect(d.setDriverFeatures(V1 | bit(VIRTIO_F_RING_PACKED))).toBe(false);
    expect(d.setDriverFeatures(V1 | OFFERED_RING_BITS)).toBe(true);
  });

  const subsets = [false, true].flatMap((packed) =>
    [false, true].flatMap((eventIdx) => [false, true].map((indirect) => ({ packed, eventIdx, indirect }))),
  );
  it.each(subsets)(
    "accepts the subset packed=$packed eventIdx=$eventIdx indirect=$indirect and works with it",
    (v) => {
      const g = newGuest(v);
      let expected = V1;
      if (v.packed) expected |= bit(VIRTIO_F_RING_PACKED);
      if (v.eventIdx) expected |= bit(VIRTIO_F_EVENT_IDX);
      if (v.indirect) expected |= bit(VIRTIO_F_INDIRECT_DESC);
      expect(g.device.negotiatedFeatures).toBe(expected);
      for (let i = 0; i < 4; i++) {
        expect(g.device.queue(i)).toBeInstanceOf(v.packed ? PackedQueue : SplitQueue);
      }
      const info = g.probe();
      expect(info.streams.map((s) => s.direction)).toEqual([0, 1]);
      const r = play(g, 0, signal(4 * PERIOD, 3), { ...PARAMS, periodBytes: PERIOD, periods: 2 });
      expect(r.completions.map((c) => c.status)).toEqual([OK, OK, OK, OK]);
      expect(sameBytes(g.backend.playbacksOf(0)[0]!.data.bytes(), signal(4 * PERIOD, 3))).toBe(true);
    },
  );
});

// ---------------------------------------------------------------------------
// Configuration space (§5.14.4)
// ---------------------------------------------------------------------------

describe("configuration space", () => {
  const config: SoundConfig = {
    streams: [{ direction: "output" }, { direction: "input" }, { direction: "output" }],
    jacks: [{}],
    chmaps: [
      { direction: "output", positions: [2] },
      { direction: "output", positions: [3, 4] },
      { direction: "input", positions: [2] },
      { direction: "input", positions: [3, 4] },
    ],
    controls: [muteControl("Master Playback Switch", "output"), muteControl("Capture Switch", "input")],
  };
  // struct virtio_snd_config: le32 jacks, streams, chmaps, controls.
  const expected = new Uint8Array([1, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0]);

  it("reads at every offset and length, zero past the end of the 16 bytes", () => {
    const d = bareDevice({ config });
    for (let offset = 0; offset <= 24; offset++) {
      for (let length = 0; length <= 24; length++) {
        const want = new Uint8Array(length);
        want.set(expected.subarray(Math.min(offset, 16), Math.min(offset + length, 16)));
        expect(Array.from(d.readConfig(offset, length)), `offset ${offset} length ${length}`).toEqual(
          Array.from(want),
        );
      }
    }
    expect(d.readConfig(4, -1)).toHaveLength(0);
  });

  it("ignores writes", () => {
    const d = bareDevice({ config });
    for (let offset = 0; offset < 16; offset++) d.writeConfig(offset, new Uint8Array(16).fill(0xff));
    expect(Array.from(d.readConfig(0, 16))).toEqual(Array.from(expected));
    expect([d.jacks.length, d.streams.length, d.chmaps.length, d.controls.length]).toEqual([1, 3, 4, 2]);
  });
});

// ---------------------------------------------------------------------------
// Queues
// ---------------------------------------------------------------------------

describe("queue setup a driver gets wrong never throws", () => {
  it("before feature negotiation: the device needs a reset, and works after it", () => {
    const g = new SimulatedGuest({ memorySize: MEM });
    const q = new SplitDriverQueue({ mem: g.memory, alloc: g.alloc, size: 8, eventIdx: true });
    for (let i = 0; i < 4; i++) expect(() => g.device.setupQueue(i, q.layout)).not.toThrow();
    expect(g.device.queue(0)).toBeNull();
    expect(g.device.needsReset).toBe(true);
    g.device.reset();
    g.needsReset = null;
    g.init();
    expect(g.probe().streams.length).toBe(2);
    expect(g.needsReset).toBeNull();
  });

  it.each([-1, 4, 5, 1.5, Number.NaN, 2 ** 32])("for queue index %s: nothing happens", (index) => {
    const g = newGuest();
    const before = [0, 1, 2, 3].map((i) => g.device.queue(i));
    expect(() => g.device.setupQueue(index, g.queues[0]!.layout)).not.toThrow();
    expect([0, 1, 2, 3].map((i) => g.device.queue(i))).toEqual(before);
    expect(g.needsReset).toBeNull();
    expect(g.probe().streams.length).toBe(2);
  });
});

const BAD_LAYOUTS: { name: string; packed: boolean; layout: (good: QueueLayout) => QueueLayout }[] = [
  {
    name: "descriptor table past the end",
    packed: false,
    layout: (l) => ({ ...l, descAddr: GUEST_BASE + MEM - 8 }),
  },
  { name: "available ring below memory", packed: false, layout: (l) => ({ ...l, driverAddr: 0 }) },
  {
    name: "used ring straddling the end",
    packed: false,
    layout: (l) => ({ ...l, deviceAddr: GUEST_BASE + MEM - 64 }),
  },
  { name: "size not a power of 2", packed: false, layout: (l) => ({ ...l, size: 48 }) },
  {
    name: "packed descriptor ring past the end",
    packed: true,
    layout: (l) => ({ ...l, descAddr: GUEST_BASE + MEM - 8 }),
  },
  {
    name: "packed device event area outside",
    packed: true,
    layout: (l) => ({ ...l, deviceAddr: GUEST_BASE + MEM }),
  },
];

describe("a ring the device cannot use puts it into needs-reset", () => {
  it.each(BAD_LAYOUTS)("$name: once, then nothing, until reset and renegotiation", ({ packed, layout }) => {
    const g = newGuest({ packed });
    const calls = watchNeedsReset(g);
    g.probe();
    const tx = g.queues[VIRTIO_SND_VQ_TX]!.layout;
    expect(() => g.device.setupQueue(VIRTIO_SND_VQ_TX, layout(tx))).not.toThrow();
    expect(calls).toHaveLength(1);
    expect((calls[0] as VirtioSndError).code).toBe("ERR_VIRTQUEUE_BROKEN");
    expect(g.device.needsReset).toBe(true);

    // Nothing is processed any more: a control request stays unanswered, another bad ring is not
    // reported again, no event goes out, and the device writes nothing into guest memory.
    const ctl = g.queues[VIRTIO_SND_VQ_CONTROL]!;
    const req = g.alloc(16, 16);
    g.memory.write(req, pcmInfoQuery(1), 0, 16);
    ctl.add([{ addr: req, len: 16 }], [{ addr: g.alloc(64, 16), len: 64 }]);
    const before = snapshot(g);
    for (let i = 0; i < 4; i++) g.device.notify(i);
    g.device.setupQueue(VIRTIO_SND_VQ_RX, layout(g.queues[VIRTIO_SND_VQ_RX]!.layout));
    g.device.setJackConnected(0, false);
    g.clock.advance(10 * PERIOD_NS);
    expect(sameBytes(snapshot(g), before), "guest memory untouched").toBe(true);
    expect(ctl.getUsed()).toBeNull();
    expect(calls).toHaveLength(1);
    expect(g.interrupts[VIRTIO_SND_VQ_EVENT]).toBe(0);

    g.device.reset();
    expect(g.device.needsReset).toBe(false);
    renegotiate(g);
    const info = g.probe();
    expect(info.jacks.map((j) => j.connected)).toEqual([0, 1]);
    const data = signal(8 * PERIOD, 11);
    const r = play(g, 0, data, { ...PARAMS, periodBytes: PERIOD, periods: 4 });
    expect(r.completions.every((c) => c.status === OK)).toBe(true);
    expect(sameBytes(g.backend.playbacksOf(0).at(-1)!.data.bytes(), data)).toBe(true);
    expect(calls).toHaveLength(1);
  });

  it("an available index that jumps by more than the queue size: the voice stops, the streams go idle", () => {
    const g = newGuest();
    const calls = watchNeedsReset(g);
    g.probe();
    const feed = startPlayback(g, 0, signal(20 * PERIOD, 5));
    g.clock.advance(2 * PERIOD_NS + PERIOD_NS / 2);
    const playback = g.backend.playbacksOf(0)[0]!;
    const played = playback.data.length;
    expect(played).toBeGreaterThan(0);

    const ctl = g.queues[VIRTIO_SND_VQ_CONTROL]! as SplitDriverQueue;
    const size = ctl.layout.size;
    g.memory.writeU16(ctl.layout.driverAddr + 2, (ctl.availIndex + size + 1) & 0xffff);
    g.device.notify(VIRTIO_SND_VQ_CONTROL);
    expect(calls).toHaveLength(1);
    expect(calls[0]!.message).toMatch(/available index moved by/);
    expect(playback.closed).toBe(true);
    // Stream 0 keeps its parameters (a reset does not forget them), stream 1 was never configured.
    expect(g.device.streams.map((s) => s.state)).toEqual([PcmState.ParamsSet, PcmState.Idle]);
    expect(g.device.streams[0]!.pendingCount).toBe(0);
    const completed = feed.done.length;
    g.clock.advance(10 * PERIOD_NS);
    expect(playback.data.length).toBe(played);
    expect(feed.done).toHaveLength(completed);

    g.device.reset();
    renegotiate(g);
    g.probe();
    const data = signal(4 * PERIOD, 6);
    play(g, 0, data, { ...PARAMS, periodBytes: PERIOD, periods: 2 });
    expect(sameBytes(g.backend.playbacksOf(0).at(-1)!.data.bytes(), data)).toBe(true);
  });

  it("an event ring found broken when an event is raised: the host call does not throw", () => {
    const g = newGuest({ eventIdx: false });
    const calls = watchNeedsReset(g);
    const ev = g.queues[VIRTIO_SND_VQ_EVENT]! as SplitDriverQueue;
    g.memory.writeU16(ev.layout.driverAddr + 2, ev.layout.size + 1);
    expect(() => g.device.setJackConnected(0, false)).not.toThrow();
    expect(calls).toHaveLength(1);
    expect(g.device.needsReset).toBe(true);
    // The jack did change: JACK_INFO will say so after the reset.
    expect(g.device.jacks[0]!.connected).toBe(false);
  });

  it("a TX ring found broken by a polling stream's voice: needs-reset from the clock, nothing thrown", () => {
    const features = 1 << VIRTIO_SND_PCM_F_MSG_POLLING;
    const g = newGuest({ config: { streams: [{ direction: "output", features }] } });
    const calls = watchNeedsReset(g);
    g.probe();
    expect(g.setParams(0, { ...PARAMS, bufferBytes: 2 * PERIOD, periodBytes: PERIOD, features })).toBe(OK);
    expect(g.prepare(0)).toBe(OK);
    expect(g.start(0)).toBe(OK);
    const tx = g.queues[VIRTIO_SND_VQ_TX]! as SplitDriverQueue;
    g.memory.writeU16(tx.layout.driverAddr + 2, tx.layout.size + 1);
    expect(() => g.clock.advance(3 * PERIOD_NS)).not.toThrow();
    expect(calls).toHaveLength(1);
    expect(calls[0]!.message).toMatch(/available index moved by/);
    expect(g.backend.playbacksOf(0)[0]!.closed).toBe(true);
    expect(g.device.streams[0]!.state).toBe(PcmState.ParamsSet);
    expect(g.device.streams[0]!.pendingCount).toBe(0);
  });
});

describe("stopQueue and setupQueue with a base (vhost-user GET/SET_VRING_BASE)", () => {
  it("split: returns the next available index, stops processing, and resumes where it stopped", () => {
    const g = newGuest();
    g.probe();
    for (let i = 0; i < 5; i++) expect(g.control(pcmInfoQuery(2), 4 + 64).status).toBe(OK);
    const ctl = g.queues[VIRTIO_SND_VQ_CONTROL]! as SplitDriverQueue;
    const base = g.device.stopQueue(VIRTIO_SND_VQ_CONTROL);
    expect(base).toBe(ctl.availIndex);
    expect(base).toBe(8); // probe: JACK_INFO, PCM_INFO, CHMAP_INFO; then five more
    expect(g.device.queue(VIRTIO_SND_VQ_CONTROL)).toBeNull();

    const req = g.alloc(16, 16);
    const resp = g.alloc(4 + 64, 16);
    g.memory.write(req, pcmInfoQuery(2), 0, 16);
    const token = g.submit(VIRTIO_SND_VQ_CONTROL, [{ addr: req, len: 16 }], [{ addr: resp, len: 68 }]);
    g.device.notify(VIRTIO_SND_VQ_CONTROL);
    expect(ctl.getUsed()).toBeNull();

    g.device.setupQueue(VIRTIO_SND_VQ_CONTROL, ctl.layout, base);
    g.device.notify(VIRTIO_SND_VQ_CONTROL);
    expect(ctl.getUsed()).toEqual({ token, len: 68 });
    expect(g.memory.readU32(resp)).toBe(OK);
    const payload = new Uint8Array(64);
    g.memory.read(resp + 4, payload, 0, 64);
    expect([0, 1].map((i) => decodePcmInfo(new DataView(payload.buffer), i * 32).direction)).toEqual([0, 1]);
    // And it keeps going.
    expect(g.control(pcmInfoQuery(1), 4 + 32).status).toBe(OK);
    expect(g.needsReset).toBeNull();
  });

  it("packed: returns the next available slot with the wrap counter in bit 15, and resumes", () => {
    const g = newGuest({ packed: true, queueSize: 8 });
    // Each request takes two slots (request, response): 5 requests = 10 slots, one lap and 2.
    for (let i = 0; i < 5; i++) expect(g.control(pcmInfoQuery(1), 4 + 32).status).toBe(OK);
    const base = g.device.stopQueue(VIRTIO_SND_VQ_CONTROL);
    // The wrap counter starts at 1 and flipped once.
    expect(base).toBe(2 | (0 << 15));
    g.device.setupQueue(VIRTIO_SND_VQ_CONTROL, g.queues[VIRTIO_SND_VQ_CONTROL]!.layout, base);
    for (let i = 0; i < 5; i++) expect(g.control(pcmInfoQuery(2), 4 + 64).status).toBe(OK);
    expect(g.device.stopQueue(VIRTIO_SND_VQ_CONTROL)).toBe(4 | (1 << 15));
    expect(g.needsReset).toBeNull();
  });

  it.each([false, true])(
    "event queue (packed=%s): buffers queued before the stop carry the events raised after the restart",
    (packed) => {
      const g = newGuest({ packed });
      g.probe(4);
      g.device.setJackConnected(0, false);
      expect(g.events.map((e) => [e.code, e.data])).toEqual([[VIRTIO_SND_EVT_JACK_DISCONNECTED, 0]]);
      const layout = g.queues[VIRTIO_SND_VQ_EVENT]!.layout;
      const base = g.device.stopQueue(VIRTIO_SND_VQ_EVENT);
      // Raised while the queue is stopped: nowhere to go.
      g.device.setJackConnected(1, false);
      g.device.setupQueue(VIRTIO_SND_VQ_EVENT, layout, base);
      g.device.notify(VIRTIO_SND_VQ_EVENT);
      // More events than the guest had buffers outstanding: each is requeued as it is consumed.
      for (let i = 0; i < 6; i++) g.device.setJackConnected(0, i % 2 === 0);
      expect(g.events.slice(1).map((e) => [e.code, e.data])).toEqual(
        Array.from({ length: 6 }, (_, i) => [
          i % 2 === 0 ? VIRTIO_SND_EVT_JACK_CONNECTED : VIRTIO_SND_EVT_JACK_DISCONNECTED,
          0,
        ]),
      );
      expect(g.needsReset).toBeNull();
    },
  );

  it("stopping a queue that is not set up returns 0", () => {
    const g = new SimulatedGuest({ memorySize: MEM });
    expect(g.device.stopQueue(VIRTIO_SND_VQ_TX)).toBe(0);
    expect(g.device.stopQueue(9)).toBe(0);
  });

  it("a stopped TX queue is not read: messages wait for the restart", () => {
    const g = newGuest();
    g.probe();
    const layout = g.queues[VIRTIO_SND_VQ_TX]!.layout;
    const base = g.device.stopQueue(VIRTIO_SND_VQ_TX);
    expect(g.setParams(0, { ...PARAMS, bufferBytes: 2 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    expect(g.prepare(0)).toBe(OK);
    const data = signal(PERIOD, 9);
    const buf = g.alloc(PERIOD, 64);
    g.memory.write(buf, data, 0, PERIOD);
    const done: Completion[] = [];
    g.queueIo(0, false, buf, PERIOD, (c) => done.push(c));
    g.device.notify(VIRTIO_SND_VQ_TX);
    expect(g.device.streams[0]!.pendingCount).toBe(0);
    g.device.setupQueue(VIRTIO_SND_VQ_TX, layout, base);
    g.device.notify(VIRTIO_SND_VQ_TX);
    expect(g.device.streams[0]!.pendingCount).toBe(1);
    expect(g.start(0)).toBe(OK);
    g.clock.advance(PERIOD_NS);
    expect(done.map((c) => [c.status, c.used])).toEqual([[OK, 8]]);
    expect(sameBytes(g.backend.playbacksOf(0)[0]!.data.bytes(), data)).toBe(true);
  });

  it("messages a stream still holds are given back when its queue stops: TX failed, RX with what it recorded", () => {
    const g = newGuest();
    g.probe();
    for (const sid of [0, 1]) {
      expect(g.setParams(sid, { ...PARAMS, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
      expect(g.prepare(sid)).toBe(OK);
    }
    const done: { rx: boolean; c: Completion }[] = [];
    for (let i = 0; i < 3; i++) {
      g.queueIo(0, false, g.alloc(PERIOD, 64), PERIOD, (c) => done.push({ rx: false, c }));
      g.queueIo(1, true, g.alloc(PERIOD, 64), PERIOD, (c) => done.push({ rx: true, c }));
    }
    expect(g.start(0)).toBe(OK);
    expect(g.start(1)).toBe(OK);
    g.clock.advance(PERIOD_NS + PERIOD_NS / 2); // one period played and recorded, then half of the next
    expect(done).toHaveLength(2);
    const txLayout = g.queues[VIRTIO_SND_VQ_TX]!.layout;
    const txBase = g.device.stopQueue(VIRTIO_SND_VQ_TX);
    const rxBase = g.device.stopQueue(VIRTIO_SND_VQ_RX);
    // Every chain the device took is back with the driver: nothing is lost across the stop.
    expect(g.pendingCount(false)).toBe(0);
    expect(g.pendingCount(true)).toBe(0);
    expect(txBase).toBe(3);
    expect(rxBase).toBe(3);
    expect(done.filter((d) => !d.rx).map((d) => d.c.status)).toEqual([
      OK,
      VIRTIO_SND_S_IO_ERR,
      VIRTIO_SND_S_IO_ERR,
    ]);
    // The memory voice records whole periods: the second message got nothing before the stop.
    expect(done.filter((d) => d.rx).map((d) => d.c.used)).toEqual([8 + PERIOD, 8, 8]);
    // The restarted queue goes on from the base.
    g.device.setupQueue(VIRTIO_SND_VQ_TX, txLayout, txBase);
    const data = signal(PERIOD, 3);
    const buf = g.alloc(PERIOD, 64);
    g.memory.write(buf, data, 0, PERIOD);
    g.queueIo(0, false, buf, PERIOD, (c) => done.push({ rx: false, c }));
    g.clock.advance(2 * PERIOD_NS);
    expect(done.at(-1)!.c.status).toBe(OK);
    const played = g.backend.playbacksOf(0)[0]!.data.bytes();
    expect(sameBytes(played.subarray(played.length - PERIOD), data)).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// Device reset (§2.4)
// ---------------------------------------------------------------------------

describe("reset()", () => {
  it.each([false, true])(
    "mid-playback (packed=%s): the voice stops, the rings are left alone, the streams keep only their parameters",
    (packed) => {
      const g = newGuest({ packed });
      g.probe();
      const feed = startPlayback(g, 0, signal(20 * PERIOD, 21));
      g.clock.advance(2 * PERIOD_NS + PERIOD_NS / 2);
      const playback = g.backend.playbacksOf(0)[0]!;
      expect(g.device.streams[0]!.pendingCount).toBeGreaterThan(0);
      const before = snapshot(g);
      const interrupts = [...g.interrupts];
      const played = playback.data.length;
      const completed = feed.done.length;

      g.device.reset();
      expect(playback.closed).toBe(true);
      const [s0, s1] = g.device.streams;
      expect([s0!.state, s0!.params?.periodBytes, s0!.pendingCount]).toEqual([PcmState.ParamsSet, PERIOD, 0]);
      expect([s1!.state, s1!.params, s1!.pendingCount]).toEqual([PcmState.Idle, null, 0]);
      expect(g.device.negotiatedFeatures).toBe(0n);
      for (let i = 0; i < 4; i++) expect(g.device.queue(i)).toBeNull();
      g.clock.advance(10 * PERIOD_NS);
      expect(sameBytes(snapshot(g), before), "guest memory untouched").toBe(true);
      expect(g.interrupts).toEqual(interrupts);
      expect(playback.data.length).toBe(played);
      expect(feed.done).toHaveLength(completed);
      // A reset device needs a new negotiation before its queues; without one it needs a reset again.
      expect(() => g.device.setupQueue(0, g.queues[0]!.layout)).not.toThrow();
      expect(g.device.needsReset).toBe(true);
      g.device.reset();
      g.needsReset = null;

      renegotiate(g);
      g.probe();
      const data = signal(6 * PERIOD, 22);
      const r = play(g, 0, data, { ...PARAMS, periodBytes: PERIOD, periods: 3 });
      expect(r.completions.map((c) => c.status)).toEqual(Array<number>(6).fill(OK));
      expect(sameBytes(g.backend.playbacksOf(0).at(-1)!.data.bytes(), data)).toBe(true);
    },
  );
});

describe("notify", () => {
  it.each([4, 5, -1, 1000, Number.NaN])("on unknown queue %s is ignored", (index) => {
    const g = newGuest();
    g.probe();
    const before = snapshot(g);
    expect(() => g.device.notify(index)).not.toThrow();
    expect(g.needsReset).toBeNull();
    expect(sameBytes(snapshot(g), before)).toBe(true);
  });
});

// ---------------------------------------------------------------------------
// Jacks (§5.14.6.4)
// ---------------------------------------------------------------------------

describe("setJackConnected", () => {
  it.each([2, -1, 1.5])(
    "throws ERR_INVALID_STATE for unknown jack %s and tells the driver nothing",
    (jack) => {
      const g = newGuest();
      g.probe(4);
      expectInvalidState(() => g.device.setJackConnected(jack, false));
      expect(g.events).toEqual([]);
      expect(g.interrupts[VIRTIO_SND_VQ_EVENT]).toBe(0);
    },
  );

  it("sends an event with an interrupt only on a change; JACK_INFO then reports the new state", () => {
    const g = newGuest();
    g.probe(4);
    const jackInfo = (): number[] => {
      const r = g.queryInfo(VIRTIO_SND_R_JACK_INFO, 0, 2, VIRTIO_SND_JACK_INFO_SIZE);
      const dv = new DataView(r.payload.buffer, r.payload.byteOffset, r.payload.byteLength);
      return [0, 1].map((i) => decodeJackInfo(dv, i * VIRTIO_SND_JACK_INFO_SIZE).connected);
    };
    g.device.setJackConnected(1, true); // already connected
    expect([g.events.length, g.interrupts[VIRTIO_SND_VQ_EVENT]]).toEqual([0, 0]);
    g.device.setJackConnected(1, false);
    expect(g.events.map((e) => [e.code, e.data])).toEqual([[VIRTIO_SND_EVT_JACK_DISCONNECTED, 1]]);
    expect(g.interrupts[VIRTIO_SND_VQ_EVENT]).toBe(1);
    expect(jackInfo()).toEqual([1, 0]);
    g.device.setJackConnected(1, true);
    expect(g.events.map((e) => e.code).at(-1)).toBe(VIRTIO_SND_EVT_JACK_CONNECTED);
    expect(jackInfo()).toEqual([1, 1]);
    expect(g.interrupts[VIRTIO_SND_VQ_EVENT]).toBe(2);
  });
});

// ---------------------------------------------------------------------------
// Audio backends that fail (§5.14.6.6: IO_ERR / NOT_SUPP, never an exception out of the device)
// ---------------------------------------------------------------------------

/** A memory backend whose next openOutput or voice start() can be made to throw. */
class FaultyBackend implements AudioBackend {
  readonly name = "faulty";
  openError: unknown = null;
  startError: unknown = null;
  closeError: unknown = null;
  latencyError: unknown = null;
  readonly sources = new Map<number, OutputSource>();

  constructor(readonly inner: MemoryBackend) {}

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    const open = this.openError;
    this.openError = null;
    if (open !== null) throw open;
    this.sources.set(streamId, source);
    const voice = this.inner.openOutput(streamId, params, source);
    return {
      start: () => {
        const e = this.startError;
        this.startError = null;
        if (e !== null) throw e;
        voice.start();
      },
      stop: () => voice.stop(),
      close: () => {
        voice.close();
        if (this.closeError !== null) throw this.closeError;
      },
      latencyBytes: () => {
        if (this.latencyError !== null) throw this.latencyError;
        return voice.latencyBytes();
      },
    };
  }

  openInput(streamId: number, params: PcmParams, sink: Parameters<AudioBackend["openInput"]>[2]): Voice {
    return this.inner.openInput(streamId, params, sink);
  }
}

function faultyGuest(opts: GuestOptions = {}): { g: SimulatedGuest; backend: FaultyBackend } {
  let backend: FaultyBackend | undefined;
  const g = newGuest({
    ...opts,
    audioBackend: (clock) => (backend = new FaultyBackend(new MemoryBackend({ clock }))),
  });
  g.probe();
  return { g, backend: backend! };
}

describe("an audio backend that throws", () => {
  it.each([
    { name: "a plain Error", error: new Error("no card"), status: IO_ERR },
    { name: "BackendError", error: new BackendError("device busy"), status: IO_ERR },
    {
      name: "BackendError notSupported",
      error: new BackendError("no 48 kHz", { notSupported: true }),
      status: VIRTIO_SND_S_NOT_SUPP,
    },
    { name: "a string", error: "weird", status: IO_ERR },
  ])("from openOutput ($name): PREPARE answers $status, a retry can succeed", ({ error, status }) => {
    const { g, backend } = faultyGuest();
    expect(g.setParams(0, { ...PARAMS, bufferBytes: 2 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    backend.openError = error;
    expect(g.prepare(0)).toBe(status);
    expect(g.device.streams[0]!.state).toBe(PcmState.ParamsSet);
    const err = g.streamEvents.find((e) => e.type === "error");
    expect(err?.streamId).toBe(0);
    expect(err?.error?.message).toBe(error instanceof Error ? error.message : "weird");
    // An I/O message for the stream is refused while it is not prepared.
    const done: Completion[] = [];
    g.queueIo(0, false, g.alloc(PERIOD, 64), PERIOD, (c) => done.push(c));
    expect(done.map((c) => c.status)).toEqual([IO_ERR]);
    expect(g.prepare(0)).toBe(OK);
    expect(g.needsReset).toBeNull();
  });

  it("from the voice's start(): START answers IO_ERR, queued messages fail, and the stream recovers", () => {
    const { g, backend } = faultyGuest();
    expect(g.setParams(0, { ...PARAMS, bufferBytes: 2 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    expect(g.prepare(0)).toBe(OK);
    const done: Completion[] = [];
    const buf = g.alloc(2 * PERIOD, 64);
    g.queueIo(0, false, buf, PERIOD, (c) => done.push(c));
    g.queueIo(0, false, buf + PERIOD, PERIOD, (c) => done.push(c));
    backend.startError = new Error("underlying device vanished");
    expect(g.start(0)).toBe(IO_ERR);
    expect(done.map((c) => [c.status, c.used])).toEqual([
      [IO_ERR, 8],
      [IO_ERR, 8],
    ]);
    expect(g.streamEvents.filter((e) => e.type === "error").map((e) => e.error?.message)).toEqual([
      "underlying device vanished",
    ]);
    expect(backend.inner.playbacksOf(0)[0]!.closed).toBe(true);
    // Until a new PREPARE, messages fail at once.
    g.queueIo(0, false, buf, PERIOD, (c) => done.push(c));
    expect(done).toHaveLength(3);
    expect(done[2]!.status).toBe(IO_ERR);

    // What ALSA does after a failed trigger: STOP (undo), then sync_stop's RELEASE, PREPARE, START.
    g.stop(0);
    expect(g.release(0)).toBe(OK);
    const data = signal(4 * PERIOD, 31);
    const r = play(g, 0, data, { ...PARAMS, periodBytes: PERIOD, periods: 2 });
    expect(r.completions.map((c) => c.status)).toEqual([OK, OK, OK, OK]);
    expect(sameBytes(backend.inner.playbacksOf(0).at(-1)!.data.bytes(), data)).toBe(true);
    expect(g.needsReset).toBeNull();
  });

  it("from close() and latencyBytes(): RELEASE still answers OK, statuses report latency 0", () => {
    const { g, backend } = faultyGuest();
    backend.latencyError = new Error("latency unknown");
    const data = signal(2 * PERIOD, 41);
    backend.closeError = new Error("close failed");
    const r = play(g, 0, data, { ...PARAMS, periodBytes: PERIOD, periods: 2 });
    expect(r.completions.map((c) => [c.status, c.latency])).toEqual([
      [OK, 0],
      [OK, 0],
    ]);
    expect(g.streamEvents.filter((e) => e.type === "error").map((e) => e.error?.message)).toEqual([
      "close failed",
    ]);
    expect(g.device.streams[0]!.state).toBe(PcmState.Released);
    expect(g.needsReset).toBeNull();
  });

  it("a voice that fails mid-stream fails its own stream only: the other plays every byte", () => {
    const { g, backend } = faultyGuest({
      config: { streams: [{ direction: "output" }, { direction: "output" }] },
    });
    const a = signal(20 * PERIOD, 51);
    const b = signal(20 * PERIOD, 52);
    const feedA = startPlayback(g, 0, a);
    const feedB = startPlayback(g, 1, b);
    g.clock.advance(5 * PERIOD_NS + PERIOD_NS / 2);
    expect(feedA.done.map((c) => c.status)).toEqual(Array<number>(5).fill(OK));
    const pendingA = g.device.streams[0]!.pendingCount;
    expect(pendingA).toBe(4);

    const interrupts = g.interrupts[VIRTIO_SND_VQ_TX]!;
    backend.sources.get(0)!.fail(new Error("USB device unplugged"));
    // The pending messages come back at once, with IO_ERR, and the driver is interrupted.
    expect(feedA.done.slice(5).map((c) => [c.status, c.used])).toEqual(Array(pendingA).fill([IO_ERR, 8]));
    expect(g.interrupts[VIRTIO_SND_VQ_TX]).toBe(interrupts + 1);
    expect(backend.inner.playbacksOf(0)[0]!.closed).toBe(true);

    g.clock.runUntil(() => feedB.done.length === 20);
    expect(feedB.done.map((c) => c.status)).toEqual(Array<number>(20).fill(OK));
    expect(sameBytes(backend.inner.playbacksOf(1)[0]!.data.bytes(), b)).toBe(true);
    // Stream 0 played a prefix of its data (the parts that reached the voice before it failed).
    const playedA = backend.inner.playbacksOf(0)[0]!.data.bytes();
    expect(playedA.length).toBeGreaterThanOrEqual(5 * PERIOD);
    expect(sameBytes(playedA, a.subarray(0, playedA.length))).toBe(true);
    expect(g.needsReset).toBeNull();
    expect(g.device.streams[1]!.state).toBe(PcmState.Running);
  });
});

// ---------------------------------------------------------------------------
// VIRTIO_SND_PCM_F_MSG_POLLING (§5.14.6.6.2)
// ---------------------------------------------------------------------------

describe("TX kicks while a stream plays", () => {
  it.each([{ eventIdx: false }, { eventIdx: true }])(
    "are suppressed while it runs and asked for again at STOP, taking what came meanwhile (eventIdx $eventIdx)",
    ({ eventIdx }) => {
      const g = newGuest({ eventIdx });
      g.probe();
      const q = g.queues[VIRTIO_SND_VQ_TX]!;
      q.enableInterrupts(false);
      // The test reaps this queue itself (with EVENT_IDX one interrupt still comes: its handler must not).
      (g as unknown as { reapIo: () => number }).reapIo = () => 0;
      expect(g.setParams(0, { ...PARAMS, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
      expect(g.prepare(0)).toBe(OK);
      const add = (): number => {
        const hdr = g.alloc(4, 4);
        const buf = g.alloc(PERIOD, 64);
        const status = g.alloc(8, 8);
        g.memory.writeU32(hdr, 0);
        q.add(
          [
            { addr: hdr, len: 4 },
            { addr: buf, len: PERIOD },
          ],
          [{ addr: status, len: 8 }],
        );
        return status;
      };
      // Before START the driver is asked to kick.
      add();
      expect(q.kickNeeded()).toBe(true);
      g.device.notify(VIRTIO_SND_VQ_TX);
      expect(g.start(0)).toBe(OK);
      // Running: no kick asked for (EVENT_IDX: at most one more, at the stale avail_event).
      add();
      q.kickNeeded();
      add();
      expect(q.kickNeeded()).toBe(false);
      // Queued after the last tick, never kicked: STOP asks for kicks again and takes it.
      const late = add();
      expect(q.kickNeeded()).toBe(false);
      expect(g.stop(0)).toBe(OK);
      expect(g.device.streams[0]!.pendingCount).toBe(4);
      add();
      expect(q.kickNeeded()).toBe(true);
      g.device.notify(VIRTIO_SND_VQ_TX);
      expect(g.release(0)).toBe(OK);
      const used: number[] = [];
      for (let u = q.getUsed(); u !== null; u = q.getUsed()) used.push(u.len);
      expect(used).toEqual([8, 8, 8, 8, 8]);
      expect(g.memory.readU32(late)).toBe(OK);
      expect(g.needsReset).toBeNull();
    },
  );
});

describe("VIRTIO_SND_PCM_F_MSG_POLLING", () => {
  it.each([
    { polling: true },
    // Without MSG_POLLING too: while the stream runs the device suppresses kicks and looks on each tick.
    { polling: false },
  ])("messages queued without a kick while running are played (polling $polling)", ({ polling }) => {
    const features = (1 << VIRTIO_SND_PCM_F_MSG_POLLING) | (1 << VIRTIO_SND_PCM_F_EVT_XRUNS);
    const g = newGuest({ eventIdx: false, config: { streams: [{ direction: "output", features }] } });
    g.probe();
    const q = g.queues[VIRTIO_SND_VQ_TX]!;
    // The test reaps this queue itself.
    q.enableInterrupts(false);
    expect(
      g.setParams(0, {
        ...PARAMS,
        bufferBytes: 4 * PERIOD,
        periodBytes: PERIOD,
        features: polling ? 1 << VIRTIO_SND_PCM_F_MSG_POLLING : 0,
      }),
    ).toBe(OK);
    expect(g.prepare(0)).toBe(OK);
    expect(g.start(0)).toBe(OK);
    const data = signal(3 * PERIOD, 61);
    const statuses: number[] = [];
    for (let i = 0; i < 3; i++) {
      const hdr = g.alloc(4, 4);
      const buf = g.alloc(PERIOD, 64);
      const status = g.alloc(8, 8);
      statuses.push(status);
      g.memory.writeU32(hdr, 0);
      g.memory.write(buf, data, i * PERIOD, PERIOD);
      q.add(
        [
          { addr: hdr, len: 4 },
          { addr: buf, len: PERIOD },
        ],
        [{ addr: status, len: 8 }],
      );
    }
    g.clock.advance(5 * PERIOD_NS);
    const played = g.backend.playbacksOf(0)[0]!.data.bytes();
    const used: number[] = [];
    for (let u = q.getUsed(); u !== null; u = q.getUsed()) used.push(u.len);
    // The first period was due at START with nothing queued; the messages are taken from the next one on.
    expect(sameBytes(played, data)).toBe(true);
    expect(used).toEqual([8, 8, 8]);
    expect(statuses.map((s) => g.memory.readU32(s))).toEqual([OK, OK, OK]);
    expect(q.kickNeeded()).toBe(false);
    expect(g.needsReset).toBeNull();
  });
});
