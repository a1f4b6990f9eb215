/**
 * What a hostile (or merely unusual) driver can make the device do, through
 * real rings: sizes that would become host allocations are bounded by the
 * device's limits, MSG_POLLING streams finish what the driver queued without
 * a kick, queues set up twice forget the old ring, messages that are not
 * whole frames are refused, and Linux's restore after suspend works.
 */
import { describe, expect, it } from "vitest";
import { VirtioSound } from "../../src/device/virtio-sound.js";
import { type Completion, SimulatedGuest } from "../../src/driver/simulated-guest.js";
import type { Buf } from "../../src/driver/driver-queue.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { PackedDriverQueue } from "../../src/driver/packed-driver.js";
import {
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_F_MSG_POLLING,
  VIRTIO_SND_R_CHMAP_INFO,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import { VIRTIO_SND_PCM_INFO_SIZE } from "../../src/spec/structs.js";
import { VirtioSndError } from "../../src/errors.js";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import { signal } from "../signal.js";

const OK = VIRTIO_SND_S_OK;
const S16 = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000, channels: 2 };
const PERIOD = 1920;
const PERIOD_NS = 10_000_000;
const POLLING = 1 << VIRTIO_SND_PCM_F_MSG_POLLING;

function guest(opts: ConstructorParameters<typeof SimulatedGuest>[0] = {}): SimulatedGuest {
  const g = new SimulatedGuest({ memorySize: 4 << 20, ...opts });
  g.init();
  return g;
}

/** A TX message of `data` for `streamId`, laid out as Linux does; returns its status address. */
function tx(
  g: SimulatedGuest,
  streamId: number,
  data: Uint8Array,
  onDone?: (c: Completion) => void,
  kick = true,
): number {
  const hdr = g.alloc(4, 4);
  g.memory.writeU32(hdr, streamId);
  const buf = g.alloc(Math.max(data.length, 1), 64);
  g.memory.write(buf, data, 0, data.length);
  const status = g.alloc(8, 8);
  g.memory.fill(status, 8, 0xee);
  const out: Buf[] = [
    { addr: hdr, len: 4 },
    { addr: buf, len: data.length },
  ];
  g.queueChain(false, out, [{ addr: status, len: 8 }], onDone, { kick });
  return status;
}

describe("host memory a guest field would size is bounded by the device's limits", () => {
  it("SET_PARAMS asking for a 2 GiB buffer gets NOT_SUPP; the stream and the one beside it keep working", () => {
    const g = guest({ config: { streams: [{ direction: "output" }, { direction: "output" }] } });
    g.probe();
    const huge = 0x7ff0_0000;
    expect(g.setParams(0, { ...S16, bufferBytes: huge, periodBytes: huge })).toBe(VIRTIO_SND_S_NOT_SUPP);
    expect(g.prepare(0)).toBe(VIRTIO_SND_S_BAD_MSG);
    // The default bound is a second of the stream's largest frames: 192 kHz x 8 ch x 8 bytes.
    expect(g.device.limits.maxBufferBytes).toEqual([12_288_000, 12_288_000]);
    expect(g.setParams(0, { ...S16, bufferBytes: 12_288_000 + 1920, periodBytes: 1920 })).toBe(
      VIRTIO_SND_S_NOT_SUPP,
    );
    for (const id of [0, 1]) {
      expect(g.setParams(id, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
      expect(g.prepare(id)).toBe(OK);
    }
    const data = [signal(2 * PERIOD, 1), signal(2 * PERIOD, 2)];
    for (const id of [0, 1]) {
      tx(g, id, data[id]!.subarray(0, PERIOD));
      tx(g, id, data[id]!.subarray(PERIOD));
      expect(g.start(id)).toBe(OK);
    }
    g.clock.advance(3 * PERIOD_NS);
    for (const id of [0, 1]) {
      expect(Buffer.compare(g.backend.playbacksOf(id)[0]!.data.bytes(), data[id]!)).toBe(0);
    }
  });

  it("an embedder's own buffer bound applies, and bad bounds are refused", () => {
    const g = guest({ limits: { maxBufferBytes: 8 * PERIOD } });
    expect(g.setParams(0, { ...S16, bufferBytes: 8 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    expect(g.setParams(0, { ...S16, bufferBytes: 9 * PERIOD, periodBytes: PERIOD })).toBe(
      VIRTIO_SND_S_NOT_SUPP,
    );
    const clock = new VirtualClock();
    for (const limits of [{ maxBufferBytes: 0 }, { maxChain: 1.5 }, { maxControlBytes: -1 }]) {
      expect(
        () =>
          new VirtioSound({
            memory: new FlatMemory(new ArrayBuffer(4096)),
            backend: new MemoryBackend({ clock }),
            clock,
            interrupt: () => undefined,
            limits,
          }),
      ).toThrow(VirtioSndError);
    }
  });

  it.each([
    ["JACK_INFO, count 2, size 0x0ffffff0", VIRTIO_SND_R_JACK_INFO, 2, 0x0fff_fff0],
    ["CHMAP_INFO, count 1, size 0xffffffff", VIRTIO_SND_R_CHMAP_INFO, 1, 0xffff_ffff],
    ["PCM_INFO, count 2, size 0x7fffffff", VIRTIO_SND_R_PCM_INFO, 2, 0x7fff_ffff],
  ])("%s answered BAD_MSG from a tiny buffer aliased many times", (_n, code, count, size) => {
    const g = guest();
    g.probe();
    // The response room: one 4 KiB buffer named by 64 descriptors, so the room check alone would pass.
    const req = new Uint8Array(16);
    const dv = new DataView(req.buffer);
    dv.setUint32(0, code, true);
    dv.setUint32(4, 0, true);
    dv.setUint32(8, count, true);
    dv.setUint32(12, size, true);
    const reqAddr = g.alloc(16, 8);
    g.memory.write(reqAddr, req, 0, 16);
    const resp = g.alloc(4096, 8);
    g.memory.fill(resp, 4096, 0xee);
    const ctl = new SplitDriverQueue({ mem: g.memory, alloc: g.alloc, size: 128, eventIdx: true });
    const before = process.memoryUsage().arrayBuffers;
    // A fresh control ring: the guest's own stays as it is.
    g.device.stopQueue(0);
    g.device.setupQueue(0, ctl.layout);
    ctl.add(
      [{ addr: reqAddr, len: 16 }],
      Array.from({ length: 100 }, () => ({ addr: resp, len: 4096 })),
    );
    g.device.notify(0);
    const used = ctl.getUsed();
    expect(used?.len).toBe(4);
    expect(g.memory.readU32(resp)).toBe(VIRTIO_SND_S_BAD_MSG);
    expect(g.device.needsReset).toBe(false);
    // Nothing near the request's size was allocated (it would be hundreds of MiB).
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(16 << 20);
    // A request within the bound still works.
    dv.setUint32(0, VIRTIO_SND_R_PCM_INFO, true);
    dv.setUint32(8, 2, true);
    dv.setUint32(12, VIRTIO_SND_PCM_INFO_SIZE, true);
    g.memory.write(reqAddr, req, 0, 16);
    ctl.add([{ addr: reqAddr, len: 16 }], [{ addr: resp, len: 4096 }]);
    g.device.notify(0);
    expect(ctl.getUsed()?.len).toBe(4 + 2 * VIRTIO_SND_PCM_INFO_SIZE);
    expect(g.memory.readU32(resp)).toBe(OK);
  });
});

describe.each([false, true])("MSG_POLLING (packed %s)", (packed) => {
  function pollingGuest(): SimulatedGuest {
    const g = guest({
      packed,
      eventIdx: false,
      config: { streams: [{ direction: "output", features: POLLING }] },
    });
    g.probe();
    expect(g.setParams(0, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD, features: POLLING })).toBe(
      OK,
    );
    expect(g.prepare(0)).toBe(OK);
    return g;
  }

  it("RELEASE completes a message queued after the last tick, before it answers", () => {
    const g = pollingGuest();
    const done: Completion[] = [];
    tx(g, 0, signal(PERIOD, 3), (c) => done.push(c), false);
    expect(g.start(0)).toBe(OK);
    g.clock.advance(2 * PERIOD_NS);
    expect(done.map((c) => c.status)).toEqual([OK]);
    // Queued without a kick after the voice's last tick: only the ring knows of it.
    tx(g, 0, signal(PERIOD, 4), (c) => done.push(c), false);
    expect(g.stop(0)).toBe(OK);
    expect(g.release(0)).toBe(OK);
    expect(done.map((c) => c.status)).toEqual([OK, OK]);
    expect(g.pendingCount(false)).toBe(0);
    // And the next cycle works (Linux's next RELEASE used to get BAD_MSG here).
    expect(g.setParams(0, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD, features: POLLING })).toBe(
      OK,
    );
    expect(g.prepare(0)).toBe(OK);
    expect(g.release(0)).toBe(OK);
  });

  it("a bad message the poll completes raises its interrupt", () => {
    const g = pollingGuest();
    const done: Completion[] = [];
    tx(g, 0, signal(PERIOD, 5), (c) => done.push(c), false);
    expect(g.start(0)).toBe(OK);
    g.clock.advance(2 * PERIOD_NS);
    expect(done.map((c) => c.status)).toEqual([OK]);
    const interrupts = g.interrupts[VIRTIO_SND_VQ_TX]!;
    // A message for a stream that does not exist, queued without a kick: the
    // next tick's poll answers it IO_ERR, and nothing else completes then.
    tx(g, 7, signal(PERIOD, 6), (c) => done.push(c), false);
    g.clock.advance(2 * PERIOD_NS);
    expect(g.interrupts[VIRTIO_SND_VQ_TX]!).toBeGreaterThan(interrupts);
    expect(done.map((c) => c.status)).toEqual([OK, VIRTIO_SND_S_IO_ERR]);
  });
});

describe.each([false, true])("a TX queue set up again while live (packed %s)", (packed) => {
  it("forgets the old ring's chains, never pushes them onto the new one, and holds nothing more each time", () => {
    const g = guest({ packed });
    g.probe();
    expect(g.setParams(0, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    expect(g.prepare(0)).toBe(OK);
    for (let round = 0; round < 20; round++) {
      // A prepared stream holds what it was given...
      for (let k = 0; k < 3; k++) tx(g, 0, signal(PERIOD, k));
      expect(g.device.streams[0]!.pendingCount).toBe(3);
      // ...and the embedder enables the queue again on a new ring.
      const opts = { mem: g.memory, alloc: g.alloc, size: 64, eventIdx: true };
      const q = packed ? new PackedDriverQueue(opts) : new SplitDriverQueue(opts);
      g.queues[VIRTIO_SND_VQ_TX] = q;
      expect(() => g.device.setupQueue(VIRTIO_SND_VQ_TX, q.layout)).not.toThrow();
      expect(g.device.streams[0]!.pendingCount).toBe(0);
      // Nothing comes back on the new ring that it never offered.
      expect(q.getUsed()).toBeNull();
    }
    expect(g.needsReset).toBeNull();
  });
});

describe("TX data that is not a whole number of frames", () => {
  it("is refused with BAD_MSG and leaves every later frame where it belongs", () => {
    const g = guest();
    g.probe();
    expect(g.setParams(0, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    expect(g.prepare(0)).toBe(OK);
    const done: Completion[] = [];
    const a = signal(PERIOD, 10);
    const b = signal(PERIOD, 11);
    tx(g, 0, a, (c) => done.push(c));
    tx(g, 0, signal(6, 12), (c) => done.push(c)); // one and a half S16 stereo frames
    tx(g, 0, b, (c) => done.push(c));
    expect(g.start(0)).toBe(OK);
    g.clock.advance(3 * PERIOD_NS);
    expect(done.map((c) => c.status).sort()).toEqual([OK, OK, VIRTIO_SND_S_BAD_MSG].sort());
    const want = new Uint8Array(2 * PERIOD);
    want.set(a, 0);
    want.set(b, PERIOD);
    expect(Buffer.compare(g.backend.playbacksOf(0)[0]!.data.bytes(), want)).toBe(0);
  });
});

describe.each([false, true])("Linux's restore after suspend (packed %s)", (packed) => {
  it("a stream prepared, not running, before the device reset plays after PREPARE alone", () => {
    const g = guest({ packed });
    g.probe();
    expect(g.setParams(0, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
    expect(g.prepare(0)).toBe(OK);
    // virtsnd_freeze / virtsnd_restore: the device is reset and set up again.
    g.device.reset();
    g.queues.length = 0;
    g.init();
    g.probe();
    // virtsnd_pcm_prepare for a stream that was not suspended: no SET_PARAMS.
    expect(g.prepare(0)).toBe(OK);
    const data = signal(2 * PERIOD, 20);
    tx(g, 0, data.subarray(0, PERIOD));
    tx(g, 0, data.subarray(PERIOD));
    expect(g.start(0)).toBe(OK);
    g.clock.advance(3 * PERIOD_NS);
    const played = g.backend.playbacksOf(0).at(-1)!.data.bytes();
    expect(Buffer.compare(played, data)).toBe(0);
  });
});

describe("one stream cannot take the queue's buffer budget from another", () => {
  it("a prepared stream flooded with many-descriptor messages is refused past its share; the stream beside it plays every frame", () => {
    const g = guest({
      indirect: true,
      config: { streams: [{ direction: "output" }, { direction: "output" }] },
      limits: { maxBufferBytes: 4 * PERIOD },
    });
    g.probe();
    for (const id of [0, 1]) {
      expect(g.setParams(id, { ...S16, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(OK);
      expect(g.prepare(id)).toBe(OK);
    }
    // Stream 1 never starts; each of its messages is 100 four-byte buffers (one frame each).
    const flood: Completion[] = [];
    const frame = g.alloc(4, 4);
    for (let k = 0; k < 30; k++) {
      const hdr = g.alloc(4, 4);
      g.memory.writeU32(hdr, 1);
      const status = g.alloc(8, 8);
      g.queueChain(
        false,
        [{ addr: hdr, len: 4 }, ...Array.from({ length: 100 }, () => ({ addr: frame, len: 4 }))],
        [{ addr: status, len: 8 }],
        (c) => flood.push(c),
      );
    }
    // Past its share the stream refuses them at once; what it holds stays within it.
    expect(flood.length).toBeGreaterThan(20);
    expect(flood.every((c) => c.status === VIRTIO_SND_S_IO_ERR)).toBe(true);
    expect(g.device.streams[1]!.pendingCount).toBeLessThan(10);
    const events = g.streamEvents.filter((e) => e.type === "dropped");
    expect(events.map((e) => e.streamId)).toEqual([1]);
    // Stream 0 plays as if nothing happened.
    const data = signal(4 * PERIOD, 30);
    const done: Completion[] = [];
    for (let k = 0; k < 4; k++) tx(g, 0, data.subarray(k * PERIOD, (k + 1) * PERIOD), (c) => done.push(c));
    expect(g.start(0)).toBe(OK);
    g.clock.advance(5 * PERIOD_NS);
    expect(done.map((c) => c.status)).toEqual([OK, OK, OK, OK]);
    expect(Buffer.compare(g.backend.playbacksOf(0)[0]!.data.bytes(), data)).toBe(0);
  });
});
