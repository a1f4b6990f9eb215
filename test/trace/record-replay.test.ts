import { describe, expect, it } from "vitest";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { muteControl, volumeControl } from "../../src/device/controls.js";
import { DEFAULT_CONFIG } from "../../src/device/config.js";
import {
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_R_CTL_READ,
  VIRTIO_SND_S_OK,
} from "../../src/spec/constants.js";
import { fromHex, toHex } from "../../src/trace/bytes.js";
import { type AvailEvent, type UsedEvent, parseTrace } from "../../src/trace/format.js";
import { MemoryTraceSink, TraceRecorder } from "../../src/trace/recorder.js";
import type { ReplayResult } from "../../src/trace/replay-types.js";
import { replayTrace } from "../../src/trace/replayer.js";
import { MS, PERIOD, recordSession, signal } from "./session.js";

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type J = Record<string, any>;

/** The index of the first line whose JSON object satisfies `pick`. */
function find(lines: readonly string[], pick: (o: J) => boolean): number {
  const i = lines.findIndex((l, k) => k > 0 && pick(JSON.parse(l) as J));
  if (i < 0) throw new Error("no such line");
  return i;
}

/** A copy of `lines` with line `i` changed. */
function edit(lines: readonly string[], i: number, change: (o: J) => void): string[] {
  const copy = [...lines];
  const o = JSON.parse(copy[i]!) as J;
  change(o);
  copy[i] = JSON.stringify(o);
  return copy;
}

/** `hex` with byte `at` changed (incremented). */
function flip(hex: string, at: number): string {
  const v = (parseInt(hex.slice(2 * at, 2 * at + 2), 16) + 1) & 0xff;
  return hex.slice(0, 2 * at) + v.toString(16).padStart(2, "0") + hex.slice(2 * at + 2);
}

function divergence(r: ReplayResult) {
  if (r.ok) throw new Error("the replay found no divergence");
  return r.divergence;
}

const is = (ev: string, q?: number, seq?: number) => (o: J) =>
  o.ev === ev && (q === undefined || o.q === q) && (seq === undefined || o.seq === seq);

describe.each([
  { ring: "split", packed: false, indirect: false },
  { ring: "packed", packed: true, indirect: false },
  { ring: "split, indirect", packed: false, indirect: true },
])("a session recorded from the Linux driver model ($ring ring)", ({ packed, indirect }) => {
  const s = recordSession({ packed, indirect });
  const trace = parseTrace(s.text);

  it("parses: the header, the negotiation and every chain the device took and returned", () => {
    const h = trace.header;
    expect(h.device.ring).toBe(packed ? "packed" : "split");
    expect(h.device.features).toBe(s.guest.device.deviceFeatures);
    expect(h.device.config).toEqual(DEFAULT_CONFIG);
    expect(h.note).toContain("simulated Linux guest");
    const first = trace.events[0]!;
    expect(first.ev).toBe("features");
    if (first.ev === "features") {
      expect(first.features & (1n << BigInt(VIRTIO_F_VERSION_1))).not.toBe(0n);
      expect((first.features & (1n << BigInt(VIRTIO_F_RING_PACKED))) !== 0n).toBe(packed);
    }
    expect(trace.events.filter((e) => e.ev === "queue").map((e) => e.ev === "queue" && e.q)).toEqual([
      0, 1, 2, 3,
    ]);

    const avail = (q: number) => trace.events.filter((e): e is AvailEvent => e.ev === "avail" && e.q === q);
    const used = (q: number) => trace.events.filter((e): e is UsedEvent => e.ev === "used" && e.q === q);
    // 12 + 5 + 2 playback messages, 6 + 4 + 1 capture messages, two jack events, every one completed.
    expect(avail(2)).toHaveLength(19);
    expect(used(2)).toHaveLength(19);
    expect(avail(3)).toHaveLength(11);
    expect(used(3)).toHaveLength(11);
    expect(used(1).map((e) => toHex(e.data))).toEqual(["0110000000000000", "0010000000000000"]);
    expect(trace.events.filter((e) => e.ev === "jack")).toHaveLength(2);
    expect(trace.events.some((e) => e.ev === "interrupt")).toBe(true);
    expect(trace.events.some((e) => e.ev === "kick")).toBe(true);
    // Descriptor boundaries are kept: header, then the period split in two (cycle 1).
    expect(avail(2)[0]!.r.map((r) => r.len)).toEqual([4, 960, 960]);
    expect(avail(2)[0]!.w).toEqual([8]);

    // The TX descriptors hold exactly what the guest sent.
    const audio = avail(2).flatMap((e) => e.r.slice(1).map((r) => ("data" in r ? toHex(r.data) : "?")));
    expect(audio.join("")).toBe(toHex(s.sent));
    // The RX completions hold what each capture session received: the source from its start.
    const rx = used(3).map((e) => toHex(e.data.subarray(0, e.len - 8)));
    const src = toHex(s.source);
    expect(rx.slice(0, 6).join("")).toBe(src.slice(0, 2 * 6 * PERIOD));
    expect(rx.slice(6, 10).join("")).toBe(src.slice(0, 2 * 4 * 882));
    expect(rx[10]).toBe(src.slice(0, 2 * PERIOD));
    // The capture cut short by RELEASE: used length short of its buffer, status recorded apart.
    const cut = used(3)[10]!;
    expect(cut.len).toBe(PERIOD + 8);
    expect(cut.status).toEqual(fromHex("0080000000000000"));
  });

  it("replays without divergence", () => {
    const r = replayTrace(s.text);
    expect(r.ok ? "" : r.message).toBe("");
    expect(r.stats.played[0]).toBe(s.played.length);
    expect(r.stats.captured[1]).toBe(6 * PERIOD + 4 * 882 + PERIOD);
    expect(r.stats.chains).toBe(trace.events.filter((e) => e.ev === "avail").length);
    expect(r.stats.completions).toBe(r.stats.chains);
    expect(r.stats.extraCompletions).toBe(0);
  });

  it("replays from its lines and from the parsed trace alike, and with the known capture source", () => {
    expect(replayTrace(s.lines).ok).toBe(true);
    expect(replayTrace(trace).ok).toBe(true);
    expect(replayTrace(s.text, { input: () => s.source }).ok).toBe(true);
  });

  it("reports a changed control response byte: queue, message and both byte strings", () => {
    const i = find(s.lines, (o) => is("used", 0)(o) && o.len === 52); // the JACK_INFO answer
    const before = JSON.parse(s.lines[i]!) as J;
    const lines = edit(s.lines, i, (o) => (o.hex = flip(o.hex, 12)));
    const d = divergence(replayTrace(lines));
    expect(d).toMatchObject({ reason: "bytes", queue: 0, message: before.seq, part: "response", offset: 12 });
    expect(d.line).toBe(i + 1);
    expect(d.expected).toBe(flip(before.hex, 12));
    expect(d.actual).toBe(before.hex);
    const r = replayTrace(lines);
    expect(r.ok).toBe(false);
    if (!r.ok) {
      expect(r.message).toContain(`control queue, message ${before.seq}, trace line ${i + 1}`);
      expect(r.message).toContain("byte 12 of the response differs");
    }
  });

  it("reports a changed rx data byte, against the known capture source", () => {
    const i = find(s.lines, is("used", 3, 1));
    const before = JSON.parse(s.lines[i]!) as J;
    const lines = edit(s.lines, i, (o) => (o.hex = flip(o.hex, 100)));
    const d = divergence(replayTrace(lines, { input: () => s.source }));
    expect(d).toMatchObject({ reason: "bytes", queue: 3, stream: 1, message: 1, part: "data", offset: 100 });
    expect(d.line).toBe(i + 1);
    expect(d.expected).toBe(flip(before.hex, 100).slice(0, 2 * PERIOD));
    expect(d.actual).toBe(before.hex.slice(0, 2 * PERIOD));
    // By design, the default capture input is the recorded rx data, so this change replays as recorded.
    expect(replayTrace(lines).ok).toBe(true);
  });

  it("reports a changed rx status byte (a status recorded apart, after a short capture)", () => {
    const i = find(s.lines, (o) => is("used", 3)(o) && o.status !== undefined);
    const before = JSON.parse(s.lines[i]!) as J;
    const lines = edit(s.lines, i, (o) => (o.status = flip(o.status, 0)));
    const d = divergence(replayTrace(lines));
    expect(d).toMatchObject({
      reason: "bytes",
      queue: 3,
      stream: 1,
      message: before.seq,
      part: "status",
      offset: 0,
    });
    expect(d.expected).toBe("0180000000000000");
    expect(d.actual).toBe("0080000000000000");
    expect(d.detail).toBe("the status is 0x8000; the recording has 0x8001");
  });

  it("reports a dropped tx completion", () => {
    const i = find(s.lines, is("used", 2, 5));
    const lines = s.lines.filter((_, k) => k !== i);
    const d = divergence(replayTrace(lines));
    expect(d).toMatchObject({ reason: "unexpected", queue: 2, stream: 0, message: 5, expectedMessage: 6 });
    expect(d.actual).toBe("0080000000000000");
    expect(d.expected).toBe("");
    expect(d.line).toBe(find(s.lines, is("avail", 2, 5)) + 1);
  });

  it("reports two swapped tx completions", () => {
    const a = find(s.lines, is("used", 2, 6));
    const b = find(s.lines, is("used", 2, 7));
    const lines = edit(
      edit(s.lines, a, (o) => (o.seq = 7)),
      b,
      (o) => (o.seq = 6),
    );
    const d = divergence(replayTrace(lines));
    expect(d).toMatchObject({ reason: "order", queue: 2, stream: 0, message: 7, actualMessage: 6 });
    expect(d.line).toBe(a + 1);
    expect(d.expected).toBe("0080000000000000");
    expect(d.actual).toBe("0080000000000000");
  });

  it("reports a changed used length, on the control queue and on tx", () => {
    const c = find(s.lines, (o) => is("used", 0)(o) && o.len === 4);
    const seq = (JSON.parse(s.lines[c]!) as J).seq as number;
    let d = divergence(replayTrace(edit(s.lines, c, (o) => ((o.len = 2), (o.hex = "0080")))));
    expect(d).toMatchObject({
      reason: "length",
      queue: 0,
      message: seq,
      expected: "0080",
      actual: "00800000",
    });
    expect(d.detail).toBe("the used length is 4; the recording has 2");

    const t = find(s.lines, is("used", 2, 3));
    const shorter = edit(s.lines, t, (o) => {
      o.len = 4;
      o.hex = "00800000";
      o.status = "0080000000000000";
    });
    d = divergence(replayTrace(shorter));
    expect(d).toMatchObject({ reason: "length", queue: 2, stream: 0, message: 3 });
    expect([d.expected, d.actual]).toEqual(["00800000", "0080000000000000"]);
  });

  it("reports a message the recording completed as played in full that the device cut short", () => {
    // Move the two completions RELEASE made (cycle 3) before the RELEASE request: the trace
    // then says they completed normally, so all their audio should have been played.
    const release = find(
      s.lines,
      (o) => is("avail", 0)(o) && o.r[0].hex === "0301000000000000" && o.t > 250e6,
    );
    const moved = s.lines.filter((l, k) => k > release && is("used", 2)(JSON.parse(l) as J));
    expect(moved).toHaveLength(2);
    const kick = release - 1;
    const others = s.lines.filter((l) => !moved.includes(l));
    const d = divergence(replayTrace([...others.slice(0, kick), ...moved, ...others.slice(kick)]));
    expect(d).toMatchObject({ reason: "played", queue: 2, stream: 0, part: "played", offset: PERIOD });
    expect(d.detail).toBe(
      "the device completed the message but the backend played only 1920 of its 2880 bytes",
    );
    expect(d.expected).toHaveLength(2 * 1.5 * PERIOD);
    expect(d.actual).toBe(d.expected.slice(0, 2 * PERIOD));
  });

  it("reports a completion the replay never made", () => {
    // Drop the kick that sent the last capture message: the device never sees it.
    const i = find(s.lines, is("avail", 3, 10)) - 1;
    expect(JSON.parse(s.lines[i]!)).toMatchObject({ ev: "kick", q: 3 });
    const d = divergence(replayTrace(s.lines.filter((_, k) => k !== i)));
    expect(d).toMatchObject({ reason: "missing", queue: 3, stream: 1, message: 10, actual: "" });
  });
});

describe("TX audio stored as hashes", () => {
  const full = recordSession();
  const hashed = recordSession({ txAudio: "hash" });

  it("keeps headers and lengths, replaces audio by SHA-256, and is much smaller", () => {
    const avail = parseTrace(hashed.text).events.filter(
      (e): e is AvailEvent => e.ev === "avail" && e.q === 2,
    );
    for (const e of avail) {
      expect("data" in e.r[0]!).toBe(true);
      for (const r of e.r.slice(1))
        expect(r).toMatchObject({ sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    }
    expect(hashed.text.length).toBeLessThan(full.text.length * 0.6);
  });

  it("replays: with a pattern in place of the audio, or with the audio itself", () => {
    expect(replayTrace(hashed.text).ok).toBe(true);
    const r = replayTrace(hashed.text, {
      txAudio: (stream) => (stream === 0 ? hashed.sent : new Uint8Array(0)),
    });
    expect(r.ok ? "" : r.message).toBe("");
  });

  it("reports supplied audio that does not match the hashes", () => {
    const wrong = hashed.sent.slice();
    wrong[5000]! ^= 1;
    const d = divergence(replayTrace(hashed.text, { txAudio: () => wrong }));
    // Byte 5000 is in message 2 (960-byte descriptors: 5000 = 5 x 960 + 200, the first of message 2).
    expect(d).toMatchObject({ reason: "tx-audio", queue: 2, stream: 0, message: 2, part: "hash" });
    expect(d.expected).toMatch(/^[0-9a-f]{64}$/);
    expect(d.actual).not.toBe(d.expected);
  });
});

describe("host actions and other device answers", () => {
  const CONFIG = {
    ...DEFAULT_CONFIG,
    controls: [
      volumeControl("Master Playback Volume", "output"),
      muteControl("Master Playback Switch", "output"),
      { type: "integer64" as const, name: "Counter", min: -(1n << 40n), max: 1n << 40n, value: [5n] },
      { type: "bytes" as const, name: "Blob", count: 4, value: new Uint8Array([1, 2, 3, 4]) },
    ],
  };

  function controlSession(): string {
    const sink = new MemoryTraceSink();
    const recorder = new TraceRecorder({ sink });
    const guest = new SimulatedGuest({ config: CONFIG, ctls: true, recorder });
    guest.init();
    guest.probe();
    const read = (id: number) => guest.control(SimulatedGuest.u32s(VIRTIO_SND_R_CTL_READ, id), 4 + 512);
    guest.clock.advance(1_000_000);
    guest.device.setControlValue(0, [40, 60]);
    expect(read(0).status).toBe(VIRTIO_SND_S_OK);
    guest.device.setControlValue(2, [-(1n << 39n)]);
    guest.device.setControlValue(3, new Uint8Array([9, 8, 7, 6]));
    guest.device.setControlActive(1, false);
    expect(read(2).status).toBe(VIRTIO_SND_S_OK);
    expect(read(3).status).toBe(VIRTIO_SND_S_OK);
    expect(() => guest.device.setControlValue(0, [1000, 0])).toThrow();
    recorder.close();
    return sink.text();
  }

  it("records control changes (with 64-bit and byte values) and replays them", () => {
    const text = controlSession();
    const controls = parseTrace(text).events.filter((e) => e.ev === "control");
    expect(controls).toEqual([
      { t: 1_000_000, ev: "control", op: "value", id: 0, value: [40, 60] },
      { t: 1_000_000, ev: "control", op: "value", id: 2, value: [-(1n << 39n)] },
      { t: 1_000_000, ev: "control", op: "value", id: 3, value: new Uint8Array([9, 8, 7, 6]) },
      { t: 1_000_000, ev: "control", op: "active", id: 1, value: false },
      { t: 1_000_000, ev: "control", op: "value", id: 0, value: [1000, 0] },
    ]);
    expect(text).toContain('"value":[{"$bigint":"-549755813888"}]');
    const r = replayTrace(text);
    expect(r.ok ? "" : r.message).toBe("");
  });

  it("a changed host value shows in the guest's next CTL_READ", () => {
    const lines = controlSession().trimEnd().split("\n");
    const i = find(lines, (o) => o.ev === "control" && o.id === 0);
    const d = divergence(replayTrace(edit(lines, i, (o) => (o.value = [41, 60]))));
    expect(d).toMatchObject({ reason: "bytes", queue: 0, part: "response" });
  });

  it("records refused feature negotiations and replays the same answer", () => {
    const sink = new MemoryTraceSink();
    const recorder = new TraceRecorder({ sink });
    const guest = new SimulatedGuest({ recorder });
    expect(guest.device.setDriverFeatures(1n << 60n)).toBe(false);
    guest.init();
    recorder.close();
    const events = parseTrace(sink.text()).events.filter((e) => e.ev === "features");
    expect(events.map((e) => e.ev === "features" && e.accepted)).toEqual([false, true]);
    expect(replayTrace(sink.text()).ok).toBe(true);
    // A device that answered otherwise diverges.
    const lines = sink.lines.map((l) => l.replace('"accepted":false', '"accepted":true'));
    expect(divergence(replayTrace(lines))).toMatchObject({ reason: "features", line: 2 });
  });

  it("records a ring the driver broke; the replay (with sound rings) reports the difference", () => {
    const sink = new MemoryTraceSink();
    const recorder = new TraceRecorder({ sink });
    const guest = new SimulatedGuest({ recorder });
    guest.init();
    guest.probe();
    // The avail index jumps by more than the queue size.
    guest.memory.writeU16(guest.queues[0]!.layout.driverAddr + 2, 1000);
    guest.device.notify(0);
    expect(guest.needsReset?.message).toMatch(/available index moved by/);
    guest.device.reset();
    recorder.close();
    const events = parseTrace(sink.text()).events.map((e) => e.ev);
    expect(events).toContain("needs-reset");
    expect(events).toContain("reset");
    // The replay cannot corrupt its ring the same way: the trace holds no ring addresses.
    expect(divergence(replayTrace(sink.text()))).toMatchObject({ reason: "needs-reset", queue: -1 });
    // Without that line, the rest replays as recorded.
    const rest = sink.lines.filter((l) => !l.includes('"needs-reset"'));
    expect(replayTrace(rest).ok).toBe(true);
  });

  it("records a queue stopped and restarted where it was (vhost-user), and replays it", () => {
    for (const packed of [false, true]) {
      const sink = new MemoryTraceSink();
      const recorder = new TraceRecorder({ sink });
      const guest = new SimulatedGuest({ recorder, packed });
      guest.init();
      guest.probe();
      const base = guest.device.stopQueue(0);
      guest.device.setupQueue(0, guest.queues[0]!.layout, base);
      guest.probe(0);
      recorder.close();
      const events = parseTrace(sink.text()).events;
      expect(events.filter((e) => e.ev === "stop")).toEqual([{ t: 0, ev: "stop", q: 0, base }]);
      expect(events.filter((e) => e.ev === "queue" && e.base !== undefined)).toHaveLength(1);
      const r = replayTrace(sink.text());
      expect(r.ok ? "" : r.message).toBe("");
    }
  });

  it("records a tx queue stopped mid-message (its messages come back) and restarted; replays it", () => {
    for (const packed of [false, true]) {
      const sink = new MemoryTraceSink();
      const recorder = new TraceRecorder({ sink });
      const guest = new SimulatedGuest({ recorder, packed });
      guest.init();
      guest.probe();
      const p = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000, channels: 2, periodBytes: PERIOD };
      guest.setParams(0, { ...p, bufferBytes: 4 * PERIOD });
      guest.prepare(0);
      const audio = signal(4 * PERIOD, 9);
      const dma = guest.alloc(audio.length, 4096);
      guest.memory.write(dma, audio, 0, audio.length);
      guest.queueIo(0, false, dma, 1.5 * PERIOD);
      guest.queueIo(0, false, dma + 1.5 * PERIOD, 1.5 * PERIOD);
      guest.start(0);
      guest.clock.advance(15 * MS);
      const base = guest.device.stopQueue(2); // 1920 of the first message played, none of the second
      guest.device.setupQueue(2, guest.queues[2]!.layout, base);
      guest.queueIo(0, false, dma + 3 * PERIOD, PERIOD);
      guest.clock.advance(30 * MS);
      guest.stop(0);
      guest.release(0);
      recorder.close();
      expect(guest.backend.playbacksOf(0)[0]!.data.length).toBe(2 * PERIOD);

      const used = parseTrace(sink.text()).events.filter((e): e is UsedEvent => e.ev === "used" && e.q === 2);
      expect(used.map((e) => toHex(e.data))).toEqual([
        "0380000000000000",
        "0380000000000000",
        "0080000000000000",
      ]);
      const r = replayTrace(sink.text());
      expect(r.ok ? "" : r.message).toBe("");
      expect(r.stats.played[0]).toBe(2 * PERIOD);
    }
  });

  it("a recorder whose sink fails stops recording and leaves the device running", () => {
    let n = 0;
    const recorder = new TraceRecorder({
      sink: {
        write: () => {
          if (++n > 10) throw new Error("disk full");
        },
      },
    });
    const guest = new SimulatedGuest({ recorder });
    guest.init();
    guest.probe();
    expect(guest.needsReset).toBeNull();
    expect(recorder.error).toBeInstanceOf(Error);
    expect(n).toBe(11);
  });
});
