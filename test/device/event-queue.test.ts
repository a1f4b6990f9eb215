/**
 * The event queue (virtio 1.3 §5.14.6.2, §5.14.4): write-only buffers of at
 * least 8 bytes that the device fills with virtio_snd_event records, in order.
 */
import { describe, expect, it } from "vitest";
import { EventQueue } from "../../src/device/event-queue.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import type { Buf } from "../../src/driver/driver-queue.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { RegionMemory } from "../../src/memory/region-memory.js";
import {
  VIRTIO_SND_EVT_JACK_CONNECTED,
  VIRTIO_SND_EVT_JACK_DISCONNECTED,
  VIRTIO_SND_EVT_PCM_XRUN,
  VIRTIO_SND_VQ_EVENT,
} from "../../src/spec/constants.js";
import { SplitQueue } from "../../src/virtqueue/split-ring.js";

const FILL = 0xee;
const RING_BASE = 0x1_0000;
const RING_AREA = 0x2_0000;
const BUF_BASE = 0x10_0000;
const BUF_AREA = 0x1_0000;

/**
 * An EventQueue over a real split ring. The ring lives in one memory region
 * and the buffers in another, so that the buffers' region can be taken away.
 */
function rig(size = 16) {
  const ringBytes = new Uint8Array(RING_AREA);
  const bufBytes = new Uint8Array(BUF_AREA).fill(FILL);
  const mem = new RegionMemory([
    { guestAddr: RING_BASE, bytes: ringBytes },
    { guestAddr: BUF_BASE, bytes: bufBytes },
  ]);
  const ringAlloc = new BumpAllocator(RING_BASE, RING_BASE + RING_AREA).alloc;
  const bufAlloc = new BumpAllocator(BUF_BASE, BUF_BASE + BUF_AREA).alloc;
  const driver = new SplitDriverQueue({ mem, alloc: ringAlloc, size, eventIdx: false });
  const device = new SplitQueue(mem, driver.layout, { indirect: false, eventIdx: false });
  let memory = mem;
  /** How often the queue told the device an interrupt may be due. */
  const marked = { count: 0 };
  const events = new EventQueue(
    device,
    () => memory,
    () => marked.count++,
  );
  const addrs = new Map<number, Buf[]>();
  return {
    mem,
    driver,
    device,
    events,
    marked,
    /** Queues a chain of device-readable `out` and device-writable `inn` buffers of these sizes. */
    give(inn: number[], out: number[] = []): number {
      const o = out.map((len) => ({ addr: bufAlloc(len, 8), len }));
      const i = inn.map((len) => ({ addr: bufAlloc(len, 8), len }));
      const token = driver.add(o, i);
      addrs.set(token, i);
      return token;
    },
    /** Used elements: token, length, and the bytes written into the chain's writable buffers. */
    take(): { token: number; len: number; bytes: number[] }[] {
      const got = [];
      for (let u = driver.getUsed(); u !== null; u = driver.getUsed()) {
        const bytes: number[] = [];
        for (const b of addrs.get(u.token) ?? []) {
          const part = new Uint8Array(b.len);
          mem.read(b.addr, part, 0, b.len);
          bytes.push(...part);
        }
        got.push({ token: u.token, len: u.len, bytes });
      }
      return got;
    },
    useMemory(m: RegionMemory): void {
      memory = m;
    },
  };
}

/** The 8 bytes of a virtio_snd_event. */
function record(code: number, data: number): number[] {
  const b = new Uint8Array(8);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, code, true);
  dv.setUint32(4, data, true);
  return [...b];
}

describe("EventQueue", () => {
  it("returns device-readable buffers and buffers shorter than 8 bytes with length 0, untouched", () => {
    const r = rig();
    const bad = [
      r.give([], [8]), // device-readable only
      r.give([8], [8]), // readable, then writable
      r.give([4]), // too short
      r.give([1, 2, 4]), // too short in total
    ];
    const good = r.give([8]);
    r.events.collect();
    r.events.post(VIRTIO_SND_EVT_JACK_CONNECTED, 1);
    const used = r.take();
    expect(used.map((u) => [u.token, u.len])).toEqual([...bad.map((t) => [t, 0]), [good, 8]]);
    for (const u of used.slice(0, bad.length)) expect(u.bytes.every((b) => b === FILL)).toBe(true);
    expect(used.at(-1)!.bytes).toEqual(record(VIRTIO_SND_EVT_JACK_CONNECTED, 1));
    // Every buffer given back, used or not, may need an interrupt: none is returned silently.
    expect(r.marked.count).toBe(used.length);
  });

  it("fills a buffer split over descriptors, and only the first 8 bytes of a longer one", () => {
    const r = rig();
    const split = r.give([3, 5]);
    const long = r.give([16]);
    r.events.collect();
    r.events.post(VIRTIO_SND_EVT_PCM_XRUN, 0xfffffffe);
    r.events.post(VIRTIO_SND_EVT_JACK_DISCONNECTED, 7);
    const used = r.take();
    expect(used.map((u) => [u.token, u.len])).toEqual([
      [split, 8],
      [long, 8],
    ]);
    expect(used[0]!.bytes).toEqual(record(VIRTIO_SND_EVT_PCM_XRUN, 0xfffffffe));
    expect(used[1]!.bytes).toEqual([...record(VIRTIO_SND_EVT_JACK_DISCONNECTED, 7), ...Array(8).fill(FILL)]);
  });

  it("takes a buffer from the ring only when it has an event for it", () => {
    const r = rig();
    for (let i = 0; i < 4; i++) r.give([8]);
    r.events.collect();
    expect(r.device.inFlight).toBe(0);
    expect(r.device.getBase()).toBe(0);
    r.events.post(VIRTIO_SND_EVT_JACK_CONNECTED, 0);
    expect(r.device.inFlight).toBe(0);
    // The ring position accounts for exactly the buffers used: a queue stopped now loses none.
    expect(r.device.getBase()).toBe(1);
    expect(r.take()).toHaveLength(1);
  });

  it("keeps events raised without a buffer, in order, and delivers them as buffers come", () => {
    const r = rig();
    for (let i = 0; i < 5; i++) r.events.post(VIRTIO_SND_EVT_JACK_CONNECTED, i);
    expect(r.events.waitingCount).toBe(5);
    r.give([8]);
    r.give([8]);
    // Without a kick nothing happens: the device has not been told.
    expect(r.take()).toEqual([]);
    r.events.collect();
    expect(r.take().map((u) => u.bytes)).toEqual([0, 1].map((i) => record(VIRTIO_SND_EVT_JACK_CONNECTED, i)));
    expect(r.events.waitingCount).toBe(3);
    r.give([8]);
    r.events.collect();
    expect(r.take().map((u) => u.bytes)).toEqual([record(VIRTIO_SND_EVT_JACK_CONNECTED, 2)]);
    // A new event goes behind the waiting ones.
    r.events.post(VIRTIO_SND_EVT_JACK_DISCONNECTED, 9);
    expect(r.events.waitingCount).toBe(3);
    for (let i = 0; i < 3; i++) r.give([8]);
    r.events.collect();
    expect(r.take().map((u) => u.bytes)).toEqual([
      record(VIRTIO_SND_EVT_JACK_CONNECTED, 3),
      record(VIRTIO_SND_EVT_JACK_CONNECTED, 4),
      record(VIRTIO_SND_EVT_JACK_DISCONNECTED, 9),
    ]);
    expect([r.events.waitingCount, r.events.dropped]).toEqual([0, 0]);
  });

  it("keeps at most 256 waiting events, dropping the oldest and counting them", () => {
    const r = rig(512);
    for (let i = 0; i < 300; i++) r.events.post(VIRTIO_SND_EVT_JACK_CONNECTED, i);
    expect([r.events.waitingCount, r.events.dropped]).toEqual([256, 44]);
    for (let i = 0; i < 300; i++) r.give([8]);
    r.events.collect();
    const used = r.take();
    expect(used.map((u) => new DataView(new Uint8Array(u.bytes).buffer).getUint32(4, true))).toEqual(
      Array.from({ length: 256 }, (_, i) => 44 + i),
    );
    expect(r.events.waitingCount).toBe(0);
    // The buffers left over take the next events at once.
    r.events.post(VIRTIO_SND_EVT_JACK_DISCONNECTED, 1);
    expect(r.take().map((u) => u.bytes)).toEqual([record(VIRTIO_SND_EVT_JACK_DISCONNECTED, 1)]);
    expect(r.events.dropped).toBe(44);
  });

  it("a buffer whose memory went away is returned with length 0 and the queue goes on", () => {
    const r = rig();
    const lost = r.give([8]);
    const next = r.give([8]);
    r.events.collect();
    // The buffers' region disappears between the ring read and the write (a memory table change).
    r.useMemory(new RegionMemory([{ guestAddr: RING_BASE, bytes: new Uint8Array(RING_AREA) }]));
    expect(() => r.events.post(VIRTIO_SND_EVT_JACK_CONNECTED, 0)).not.toThrow();
    r.useMemory(r.mem);
    r.events.post(VIRTIO_SND_EVT_JACK_CONNECTED, 1);
    const used = r.take();
    expect(used.map((u) => [u.token, u.len])).toEqual([
      [lost, 0],
      [next, 8],
    ]);
    expect(used[1]!.bytes).toEqual(record(VIRTIO_SND_EVT_JACK_CONNECTED, 1));
  });

  it("a buffer outside guest memory is returned with length 0", () => {
    const r = rig();
    const outside = r.driver.add([], [{ addr: BUF_BASE + BUF_AREA - 4, len: 8 }]);
    const good = r.give([8]);
    r.events.collect();
    r.events.post(VIRTIO_SND_EVT_JACK_CONNECTED, 3);
    expect(r.take().map((u) => [u.token, u.len])).toEqual([
      [outside, 0],
      [good, 8],
    ]);
  });
});

describe("the device's event queue", () => {
  it("raises the event queue's interrupt for each event delivered, unless the driver suppressed it", () => {
    const g = new SimulatedGuest({ memorySize: 1 << 20, eventIdx: false });
    g.init();
    g.probe(4);
    const before = [...g.interrupts];
    g.device.setJackConnected(0, false);
    expect(g.interrupts[VIRTIO_SND_VQ_EVENT]).toBe(before[VIRTIO_SND_VQ_EVENT]! + 1);
    expect(g.events.map((e) => [e.code, e.data])).toEqual([[VIRTIO_SND_EVT_JACK_DISCONNECTED, 0]]);
    // Only the event queue's.
    expect(g.interrupts.filter((_, i) => i !== VIRTIO_SND_VQ_EVENT)).toEqual(
      before.filter((_, i) => i !== VIRTIO_SND_VQ_EVENT),
    );

    g.queues[VIRTIO_SND_VQ_EVENT]!.enableInterrupts(false);
    g.device.setJackConnected(0, true);
    expect(g.interrupts[VIRTIO_SND_VQ_EVENT]).toBe(before[VIRTIO_SND_VQ_EVENT]! + 1);
    expect(g.events).toHaveLength(1);
    g.reap();
    expect(g.events.map((e) => [e.code, e.data]).at(-1)).toEqual([VIRTIO_SND_EVT_JACK_CONNECTED, 0]);
  });

  it("keeps the last 256 jack events raised while the driver has no event buffer", () => {
    const g = new SimulatedGuest({ memorySize: 1 << 20, eventIdx: false, queueSize: 512 });
    g.init();
    for (let i = 0; i < 300; i++) g.device.setJackConnected(i % 2, i % 4 >= 2);
    const q = g.queues[VIRTIO_SND_VQ_EVENT]!;
    q.enableInterrupts(false);
    const bufs = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const addr = g.alloc(8, 8);
      bufs.set(q.add([], [{ addr, len: 8 }]), addr);
    }
    g.device.notify(VIRTIO_SND_VQ_EVENT);
    const got: number[][] = [];
    for (let u = q.getUsed(); u !== null; u = q.getUsed()) {
      const addr = bufs.get(u.token)!;
      got.push([g.memory.readU32(addr), g.memory.readU32(addr + 4)]);
    }
    expect(got).toEqual(
      Array.from({ length: 256 }, (_, k) => {
        const i = 44 + k;
        return [i % 4 >= 2 ? VIRTIO_SND_EVT_JACK_CONNECTED : VIRTIO_SND_EVT_JACK_DISCONNECTED, i % 2];
      }),
    );
  });
});
