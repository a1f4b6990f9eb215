/**
 * Legal but unusual I/O messages, as real drivers may build them, through the
 * whole device: every byte must reach the backend in order and every status
 * must be written. And messages the device must drop: reported once per
 * stream, the streams beside them unharmed.
 */
import { describe, expect, it } from "vitest";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import type { Buf } from "../../src/driver/driver-queue.js";
import { VIRTIO_SND_PCM_FMT_S32, VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_S_OK } from "../../src/spec/constants.js";
import type { SoundConfig } from "../../src/device/config.js";

const PAGE = 4096;

interface Variant {
  packed: boolean;
  indirect: boolean;
}
const VARIANTS: Variant[] = [
  { packed: false, indirect: false },
  { packed: false, indirect: true },
  { packed: true, indirect: false },
  { packed: true, indirect: true },
];
const name = (v: Variant): string => `${v.packed ? "packed" : "split"}${v.indirect ? " + indirect" : ""}`;

function guest(
  v: Variant,
  config?: SoundConfig,
  limits?: { maxChain?: number },
  queueSize = 64,
): SimulatedGuest {
  const g = new SimulatedGuest({
    packed: v.packed,
    indirect: v.indirect,
    queueSize,
    memorySize: 8 << 20,
    ...(config !== undefined ? { config } : {}),
    ...(limits !== undefined ? { limits } : {}),
  });
  g.init();
  return g;
}

/** The ways a driver may lay out one TX message of `data` for `streamId`. */
type Layout = (
  g: SimulatedGuest,
  streamId: number,
  data: Uint8Array,
) => { out: Buf[]; inn: Buf[]; status: number[] };

function put(g: SimulatedGuest, bytes: Uint8Array, align = 1): number {
  const a = g.alloc(Math.max(bytes.length, 1), align);
  g.memory.write(a, bytes, 0, bytes.length);
  return a;
}

function header(streamId: number): Uint8Array {
  const h = new Uint8Array(4);
  new DataView(h.buffer).setUint32(0, streamId, true);
  return h;
}

function statusBuf(g: SimulatedGuest, len: number): Buf {
  const a = g.alloc(len, 1);
  g.memory.fill(a, len, 0xee);
  return { addr: a, len };
}

const LAYOUTS: Record<string, Layout> = {
  "header in its own descriptor, data cut at odd offsets": (g, id, data) => {
    const cuts = [0, 1, 333, 1001, data.length];
    const out: Buf[] = [{ addr: put(g, header(id)), len: 4 }];
    for (let i = 0; i + 1 < cuts.length; i++) {
      out.push({ addr: put(g, data.subarray(cuts[i]!, cuts[i + 1]!)), len: cuts[i + 1]! - cuts[i]! });
    }
    const st = statusBuf(g, 8);
    return { out, inn: [st], status: [st.addr] };
  },
  "header and data in one descriptor": (g, id, data) => {
    const both = new Uint8Array(4 + data.length);
    both.set(header(id), 0);
    both.set(data, 4);
    const st = statusBuf(g, 8);
    return { out: [{ addr: put(g, both), len: both.length }], inn: [st], status: [st.addr] };
  },
  "header split across two descriptors": (g, id, data) => {
    const h = header(id);
    const first = new Uint8Array([h[0]!, h[1]!, h[2]!]);
    const rest = new Uint8Array(1 + data.length);
    rest[0] = h[3]!;
    rest.set(data, 1);
    const st = statusBuf(g, 8);
    return {
      out: [
        { addr: put(g, first), len: 3 },
        { addr: put(g, rest), len: rest.length },
      ],
      inn: [st],
      status: [st.addr],
    };
  },
  "status across two descriptors (3 + 5 bytes)": (g, id, data) => {
    const a = statusBuf(g, 3);
    const b = statusBuf(g, 5);
    return {
      out: [
        { addr: put(g, header(id)), len: 4 },
        { addr: put(g, data), len: data.length },
      ],
      inn: [a, b],
      status: [a.addr, a.addr + 1, a.addr + 2, b.addr, b.addr + 1, b.addr + 2, b.addr + 3, b.addr + 4],
    };
  },
  "zero-length descriptors among readable and writable ones": (g, id, data) => {
    const st = statusBuf(g, 8);
    const empty = g.alloc(1, 1);
    return {
      out: [
        { addr: empty, len: 0 },
        { addr: put(g, header(id)), len: 4 },
        { addr: empty, len: 0 },
        { addr: put(g, data), len: data.length },
        { addr: empty, len: 0 },
      ],
      inn: [{ addr: empty, len: 0 }, st, { addr: empty, len: 0 }],
      status: [st.addr],
    };
  },
};

function pattern(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  for (let i = 0; i < n; i++) b[i] = (seed * 131 + i * 7 + (i >> 8)) & 0xff;
  return b;
}

/** Reads a status laid out over `addrs` (one address per byte, or the start of 8 contiguous bytes). */
function readStatus(g: SimulatedGuest, addrs: number[]): number {
  if (addrs.length === 1) return g.memory.readU32(addrs[0]!);
  let v = 0;
  for (let i = 0; i < 4; i++) v |= g.memory.readU8(addrs[i]!) << (8 * i);
  return v >>> 0;
}

const S16_STEREO = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000, channels: 2 };
const PERIOD = 1920;

describe.each(VARIANTS)("unusual but legal TX messages ($packed, $indirect)", (v) => {
  it.each(Object.keys(LAYOUTS))(`${name(v)}: %s, every byte played and every status OK`, (layoutName) => {
    const layout = LAYOUTS[layoutName]!;
    const g = guest(v);
    expect(g.setParams(0, { ...S16_STEREO, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(
      VIRTIO_SND_S_OK,
    );
    expect(g.prepare(0)).toBe(VIRTIO_SND_S_OK);
    const sent: Uint8Array[] = [];
    const statuses: number[][] = [];
    const used: number[] = [];
    for (let k = 0; k < 4; k++) {
      const data = pattern(PERIOD, k + 1);
      sent.push(data);
      const m = layout(g, 0, data);
      statuses.push(m.status);
      g.queueChain(false, m.out, m.inn, (c) => used.push(c.used));
    }
    expect(g.start(0)).toBe(VIRTIO_SND_S_OK);
    g.clock.advance(4 * 10_000_000 + 20_000_000);
    expect(g.stop(0)).toBe(VIRTIO_SND_S_OK);
    expect(g.release(0)).toBe(VIRTIO_SND_S_OK);
    const played = g.backend.playbacksOf(0)[0]!.data.bytes();
    const want = new Uint8Array(4 * PERIOD);
    sent.forEach((d, i) => want.set(d, i * PERIOD));
    expect(played.length).toBe(want.length);
    expect(Buffer.compare(played, want)).toBe(0);
    for (const s of statuses) expect(readStatus(g, s)).toBe(VIRTIO_SND_S_OK);
    expect(used).toEqual([8, 8, 8, 8]);
    expect(g.streamEvents.filter((e) => e.type === "dropped")).toEqual([]);
  });

  it(`${name(v)}: a 288,000-byte period as 71 scattered pages on a 64-entry queue plays exactly`, () => {
    if (!v.indirect) return; // only an indirect table can be longer than the queue
    const g = guest(v, { streams: [{ direction: "output", channelsMax: 6 }] });
    const params = { format: VIRTIO_SND_PCM_FMT_S32, rate: 96000, channels: 6 };
    const period = 288_000;
    expect(g.setParams(0, { ...params, bufferBytes: 2 * period, periodBytes: period })).toBe(VIRTIO_SND_S_OK);
    expect(g.prepare(0)).toBe(VIRTIO_SND_S_OK);
    const want = new Uint8Array(2 * period);
    const statusAddrs: number[] = [];
    for (let k = 0; k < 2; k++) {
      const data = pattern(period, 7 + k);
      want.set(data, k * period);
      const pages = Math.ceil(period / PAGE);
      const area = g.alloc(2 * pages * PAGE, PAGE);
      const out: Buf[] = [{ addr: put(g, header(0)), len: 4 }];
      for (let p = 0; p < pages; p++) {
        const len = Math.min(PAGE, period - p * PAGE);
        const addr = area + 2 * (pages - 1 - p) * PAGE;
        g.memory.write(addr, data, p * PAGE, len);
        out.push({ addr, len });
      }
      const st = statusBuf(g, 8);
      statusAddrs.push(st.addr);
      expect(out.length + 1).toBeGreaterThan(64);
      g.queueChain(false, out, [st]);
    }
    expect(g.start(0)).toBe(VIRTIO_SND_S_OK);
    g.clock.advance(2 * 125_000_000 + 20_000_000);
    expect(g.stop(0)).toBe(VIRTIO_SND_S_OK);
    expect(g.release(0)).toBe(VIRTIO_SND_S_OK);
    const played = g.backend.playbacksOf(0)[0]!.data.bytes();
    expect(played.length).toBe(want.length);
    expect(Buffer.compare(played, want)).toBe(0);
    for (const a of statusAddrs) expect(g.memory.readU32(a)).toBe(VIRTIO_SND_S_OK);
  });
});

describe.each(VARIANTS)("messages the device must drop ($packed, $indirect)", (v) => {
  it(`${name(v)}: a message over the chain bound is returned unplayed, reported once, the other stream plays on`, () => {
    const g = guest(
      v,
      { streams: [{ direction: "output" }, { direction: "output" }] },
      { maxChain: 16 },
      128,
    );
    for (const id of [0, 1]) {
      expect(g.setParams(id, { ...S16_STEREO, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(
        VIRTIO_SND_S_OK,
      );
      expect(g.prepare(id)).toBe(VIRTIO_SND_S_OK);
    }
    const want = new Uint8Array(3 * PERIOD);
    const dropped: number[] = [];
    for (let k = 0; k < 3; k++) {
      // Stream 0: 20 descriptors (over the bound of 16). Stream 1: 3 descriptors.
      const data = pattern(PERIOD, k);
      const cuts = Array.from({ length: 19 }, (_, i) => Math.round((i * PERIOD) / 18));
      const out: Buf[] = [{ addr: put(g, header(0)), len: 4 }];
      for (let i = 0; i + 1 < cuts.length; i++) {
        out.push({ addr: put(g, data.subarray(cuts[i]!, cuts[i + 1]!)), len: cuts[i + 1]! - cuts[i]! });
      }
      expect(out.length).toBe(19);
      g.queueChain(false, out, [statusBuf(g, 8)], (c) => dropped.push(c.used));
      const good = pattern(PERIOD, 100 + k);
      want.set(good, k * PERIOD);
      g.queueChain(
        false,
        [
          { addr: put(g, header(1)), len: 4 },
          { addr: put(g, good), len: PERIOD },
        ],
        [statusBuf(g, 8)],
      );
    }
    expect(dropped).toEqual([0, 0, 0]);
    expect(g.start(0)).toBe(VIRTIO_SND_S_OK);
    expect(g.start(1)).toBe(VIRTIO_SND_S_OK);
    g.clock.advance(3 * 10_000_000 + 20_000_000);
    const events = g.streamEvents.filter((e) => e.type === "dropped");
    expect(events.map((e) => [e.streamId, e.reason])).toEqual([
      [0, "dropped a message of more than 16 descriptors (limits.maxChain)"],
    ]);
    expect(g.device.streams[0]!.dropped).toBe(3);
    const played = g.backend.playbacksOf(1)[0]!.data.bytes();
    expect(Buffer.compare(played, want)).toBe(0);
    expect(g.backend.playbacksOf(0)[0]!.data.length).toBe(0);
  });

  it(`${name(v)}: a dropped message that names no stream is reported once for the queue`, () => {
    const g = guest(v, undefined, { maxChain: 4 });
    const junk = g.alloc(64, 8);
    for (let k = 0; k < 2; k++) {
      const out: Buf[] = Array.from({ length: 5 }, (_, i) => ({ addr: junk + i, len: 1 }));
      g.queueChain(false, out, [statusBuf(g, 8)]);
    }
    const events = g.streamEvents.filter((e) => e.type === "dropped");
    expect(events.length).toBe(1);
    expect(events[0]!.streamId).toBe(-1);
    expect(events[0]!.reason).toMatch(/more than 4 descriptors.*TX queue; the message names no stream/);
  });
});
