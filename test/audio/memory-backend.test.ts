import { describe, expect, it } from "vitest";
import type { InputSink, OutputSource } from "../../src/audio/backend.js";
import { ByteBuffer } from "../../src/audio/byte-buffer.js";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import {
  type PcmParams,
  bytesPerSecond,
  bytesToFrames,
  fillSilence,
  frameBits,
  frameBytes,
  framesToBytes,
  silencePattern,
} from "../../src/audio/pcm-params.js";
import * as C from "../../src/spec/constants.js";

function params(over: Partial<PcmParams> = {}): PcmParams {
  return {
    direction: C.VIRTIO_SND_D_OUTPUT,
    format: C.VIRTIO_SND_PCM_FMT_U8,
    rate: 8000,
    channels: 1,
    bufferBytes: 320,
    periodBytes: 80, // 10 ms of U8 mono at 8 kHz
    features: 0,
    ...over,
  };
}

/** A TX queue stand-in: serves `data`, then runs dry. */
class FakeSource implements OutputSource {
  pos = 0;
  calls: number[] = [];
  failures: Error[] = [];
  constructor(public data: Uint8Array) {}
  read(dest: Uint8Array, offset: number, length: number): number {
    this.calls.push(length);
    const n = Math.min(length, this.data.length - this.pos);
    dest.set(this.data.subarray(this.pos, this.pos + n), offset);
    this.pos += n;
    return n;
  }
  fail(error: Error): void {
    this.failures.push(error);
  }
}

/** An RX queue stand-in: takes at most `capacity` bytes per call (Infinity: all). */
class FakeSink implements InputSink {
  got: number[] = [];
  constructor(public capacity = Infinity) {}
  write(src: Uint8Array, offset: number, length: number): number {
    const n = Math.min(length, this.capacity);
    for (let i = 0; i < n; i++) this.got.push(src[offset + i]!);
    return n;
  }
  fail(): void {}
}

function seq(n: number, start = 1): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
}

describe("pcm-params", () => {
  it("frameBits/frameBytes for several formats", () => {
    expect(frameBytes(C.VIRTIO_SND_PCM_FMT_U8, 1)).toBe(1);
    expect(frameBytes(C.VIRTIO_SND_PCM_FMT_S16, 2)).toBe(4);
    expect(frameBytes(C.VIRTIO_SND_PCM_FMT_S24_3, 2)).toBe(6);
    expect(frameBytes(C.VIRTIO_SND_PCM_FMT_S20_3, 1)).toBe(3);
    expect(frameBytes(C.VIRTIO_SND_PCM_FMT_S24, 2)).toBe(8);
    expect(frameBytes(C.VIRTIO_SND_PCM_FMT_FLOAT, 6)).toBe(24);
    expect(frameBytes(C.VIRTIO_SND_PCM_FMT_FLOAT64, 2)).toBe(16);
    expect(frameBytes(C.VIRTIO_SND_PCM_FMT_IMA_ADPCM, 1)).toBe(0.5);
    expect(frameBits(C.VIRTIO_SND_PCM_FMT_IMA_ADPCM, 1)).toBe(4);
    expect(frameBits(99, 2)).toBe(0);
    expect(frameBytes(99, 2)).toBe(0);
  });

  it("bytesPerSecond", () => {
    expect(bytesPerSecond({ format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 44100 })).toBe(176400);
    expect(bytesPerSecond({ format: C.VIRTIO_SND_PCM_FMT_U8, channels: 1, rate: 8000 })).toBe(8000);
    expect(bytesPerSecond({ format: C.VIRTIO_SND_PCM_FMT_S24_3, channels: 2, rate: 48000 })).toBe(288000);
    expect(bytesPerSecond({ format: C.VIRTIO_SND_PCM_FMT_FLOAT, channels: 2, rate: 96000 })).toBe(768000);
    expect(bytesPerSecond({ format: C.VIRTIO_SND_PCM_FMT_IMA_ADPCM, channels: 1, rate: 8000 })).toBe(4000);
  });

  it("bytesToFrames rounds down; framesToBytes is its inverse on whole frames", () => {
    const s16 = { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2 };
    expect(bytesToFrames(s16, 1764)).toBe(441);
    expect(bytesToFrames(s16, 1767)).toBe(441);
    expect(framesToBytes(s16, 441)).toBe(1764);
    const s24 = { format: C.VIRTIO_SND_PCM_FMT_S24_3, channels: 2 };
    expect(bytesToFrames(s24, 600)).toBe(100);
    expect(bytesToFrames(s24, 605)).toBe(100);
    expect(framesToBytes(s24, 100)).toBe(600);
    const adpcm = { format: C.VIRTIO_SND_PCM_FMT_IMA_ADPCM, channels: 1 };
    expect(bytesToFrames(adpcm, 10)).toBe(20);
    expect(framesToBytes(adpcm, 20)).toBe(10);
    expect(bytesToFrames({ format: 99, channels: 2 }, 100)).toBe(0);
    expect(framesToBytes({ format: 99, channels: 2 }, 100)).toBe(0);
    for (const f of [C.VIRTIO_SND_PCM_FMT_U8, C.VIRTIO_SND_PCM_FMT_S16, C.VIRTIO_SND_PCM_FMT_S32]) {
      for (const ch of [1, 2, 6]) {
        for (const n of [0, 1, 7, 480])
          expect(
            bytesToFrames({ format: f, channels: ch }, framesToBytes({ format: f, channels: ch }, n)),
          ).toBe(n);
      }
    }
  });

  it.each([
    ["U8", C.VIRTIO_SND_PCM_FMT_U8, [0x80]],
    ["S8", C.VIRTIO_SND_PCM_FMT_S8, [0]],
    ["S16", C.VIRTIO_SND_PCM_FMT_S16, [0, 0]],
    ["U16", C.VIRTIO_SND_PCM_FMT_U16, [0x00, 0x80]],
    ["S24_3", C.VIRTIO_SND_PCM_FMT_S24_3, [0, 0, 0]],
    ["U24_3", C.VIRTIO_SND_PCM_FMT_U24_3, [0, 0, 0x80]],
    ["U18_3", C.VIRTIO_SND_PCM_FMT_U18_3, [0, 0, 0x02]],
    ["U20_3", C.VIRTIO_SND_PCM_FMT_U20_3, [0, 0, 0x08]],
    ["U20", C.VIRTIO_SND_PCM_FMT_U20, [0, 0, 0x08, 0]],
    ["U24", C.VIRTIO_SND_PCM_FMT_U24, [0, 0, 0x80, 0]],
    ["S32", C.VIRTIO_SND_PCM_FMT_S32, [0, 0, 0, 0]],
    ["U32", C.VIRTIO_SND_PCM_FMT_U32, [0, 0, 0, 0x80]],
    ["FLOAT", C.VIRTIO_SND_PCM_FMT_FLOAT, [0, 0, 0, 0]],
    ["FLOAT64", C.VIRTIO_SND_PCM_FMT_FLOAT64, [0, 0, 0, 0, 0, 0, 0, 0]],
    ["MU_LAW", C.VIRTIO_SND_PCM_FMT_MU_LAW, [0xff]],
    ["A_LAW", C.VIRTIO_SND_PCM_FMT_A_LAW, [0xd5]],
    ["DSD_U16", C.VIRTIO_SND_PCM_FMT_DSD_U16, [0x69, 0x69]],
    ["IMA_ADPCM", C.VIRTIO_SND_PCM_FMT_IMA_ADPCM, [0]],
    ["unknown", 99, [0]],
  ])("silencePattern for %s", (_n, format, expected) => {
    expect(Array.from(silencePattern(format))).toEqual(expected);
  });

  it("fillSilence repeats the pattern phase-aligned to the stream position", () => {
    const dest = new Uint8Array(7).fill(0xee);
    fillSilence(dest, 1, 5, Uint8Array.of(0x00, 0x80), 1);
    expect(Array.from(dest)).toEqual([0xee, 0x80, 0x00, 0x80, 0x00, 0x80, 0xee]);
    const d2 = new Uint8Array(4);
    fillSilence(d2, 0, 4, Uint8Array.of(0xd5));
    expect(Array.from(d2)).toEqual([0xd5, 0xd5, 0xd5, 0xd5]);
    const d3 = new Uint8Array(6).fill(1);
    fillSilence(d3, 0, 6, new Uint8Array(3));
    expect(Array.from(d3)).toEqual([0, 0, 0, 0, 0, 0]);
  });
});

describe("ByteBuffer", () => {
  it("grows past its capacity and keeps its contents", () => {
    const b = new ByteBuffer(16);
    const all: number[] = [];
    for (let i = 0; i < 50; i++) {
      const chunk = seq(7, i * 7);
      b.append(chunk);
      all.push(...chunk);
    }
    expect(b.length).toBe(350);
    expect(Array.from(b.bytes())).toEqual(all);
  });

  it("appends a slice of a source", () => {
    const b = new ByteBuffer(0);
    b.append(seq(10), 3, 4);
    b.append(seq(10), 8);
    expect(Array.from(b.bytes())).toEqual([4, 5, 6, 7, 9, 10]);
  });

  it("reserve/commit writes in place; a big reserve grows at once and keeps contents", () => {
    const b = new ByteBuffer(16);
    b.append(seq(10));
    const arr = b.reserve(1000);
    expect(arr.length).toBeGreaterThanOrEqual(1010);
    arr.set(seq(5, 100), b.length);
    b.commit(5);
    expect(Array.from(b.bytes())).toEqual([...seq(10), ...seq(5, 100)]);
    // Reserving within capacity returns the same array.
    expect(b.reserve(1)).toBe(arr);
  });

  it("clear() empties it", () => {
    const b = new ByteBuffer();
    b.append(seq(100));
    b.clear();
    expect(b.length).toBe(0);
    expect(b.bytes().length).toBe(0);
    b.append(seq(3));
    expect(Array.from(b.bytes())).toEqual([1, 2, 3]);
  });
});

describe("MemoryBackend", () => {
  describe("output voices", () => {
    it("records the bytes the source gave, in order, one period per tick", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock, log: true });
      const src = new FakeSource(seq(200));
      const voice = backend.openOutput(3, params(), src);
      expect(backend.name).toBe("memory");
      expect(backend.playbacks).toHaveLength(1);
      const pb = backend.playbacksOf(3)[0]!;
      expect(pb.streamId).toBe(3);
      expect(pb.params.rate).toBe(8000);
      voice.start();
      clock.advanceTo(20e6);
      expect(src.calls).toEqual([80, 80]);
      expect(Array.from(pb.data.bytes())).toEqual(Array.from(seq(160)));
      expect(pb.underruns).toBe(0);
      expect(pb.chunks).toEqual([
        { time: 10e6, bytes: 80 },
        { time: 20e6, bytes: 80 },
      ]);
    });

    it("counts underruns and silence bytes when the source runs dry; silence is not recorded", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock });
      const src = new FakeSource(seq(200));
      const voice = backend.openOutput(0, params(), src);
      voice.start();
      clock.advanceTo(50e6); // 5 periods of 80 bytes = 400 wanted, 200 given
      const pb = backend.playbacks[0]!;
      expect(Array.from(pb.data.bytes())).toEqual(Array.from(seq(200)));
      expect(pb.underruns).toBe(3); // 40 short, then two empty periods
      expect(pb.underrunBytes).toBe(200);
      expect(pb.chunks).toEqual([]); // log is off
      // Refilled source: playback resumes.
      src.data = seq(280);
      clock.advanceTo(60e6);
      expect(pb.data.length).toBe(280);
      expect(pb.underruns).toBe(3);
    });

    it("uses chunkFrames when given instead of the period", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock, chunkFrames: 8 });
      const src = new FakeSource(seq(1000));
      const voice = backend.openOutput(
        0,
        params({ format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 8000, periodBytes: 320 }),
        src,
      );
      voice.start();
      clock.advanceTo(3e6); // 8 frames at 8 kHz = 1 ms
      expect(src.calls).toEqual([32, 32, 32]);
    });

    it("retain: false keeps nothing but still paces and counts underruns", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock, retain: false, log: true });
      const src = new FakeSource(seq(100));
      const voice = backend.openOutput(1, params(), src);
      voice.start();
      clock.advanceTo(30e6);
      const pb = backend.playbacks[0]!;
      expect(pb.data.length).toBe(0);
      expect(src.pos).toBe(100);
      expect(pb.underruns).toBe(2);
      expect(pb.underrunBytes).toBe(140);
      expect(pb.chunks.map((c) => c.bytes)).toEqual([80, 20, 0]);
    });

    it("close() marks the record closed and stops reading", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock });
      const src = new FakeSource(seq(1000));
      const voice = backend.openOutput(0, params(), src);
      voice.start();
      clock.advanceTo(10e6);
      voice.close();
      expect(backend.playbacks[0]!.closed).toBe(true);
      clock.advanceTo(1e9);
      // One period taken before the close, nothing after it.
      expect(src.pos).toBe(80);
      expect(Array.from(backend.playbacks[0]!.data.bytes())).toEqual(Array.from(seq(80)));
      expect(voice.latencyBytes()).toBe(0);
    });

    it("keeps one record per opened voice; playbacksOf filters by stream", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock });
      backend.openOutput(0, params(), new FakeSource(seq(1)));
      backend.openOutput(1, params(), new FakeSource(seq(1)));
      backend.openOutput(0, params(), new FakeSource(seq(1)));
      expect(backend.playbacksOf(0)).toHaveLength(2);
      expect(backend.playbacksOf(1)).toHaveLength(1);
      expect(backend.playbacksOf(2)).toHaveLength(0);
    });

    it("plays exactly rate x time bytes over a long run (no drift)", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock, retain: false, chunkFrames: 1000 });
      let total = 0;
      const src: OutputSource = {
        read: (_d, _o, n) => {
          total += n;
          return n;
        },
        fail: () => {},
      };
      const voice = backend.openOutput(
        0,
        params({ format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 44100 }),
        src,
      );
      voice.start();
      clock.advanceTo(600e9); // 10 minutes
      expect(total).toBe(44100 * 600 * 4);
      expect(backend.playbacks[0]!.underruns).toBe(0);
    });
  });

  describe("input voices", () => {
    it("delivers the input bytes in order, then the format's silence", () => {
      const clock = new VirtualClock();
      const input = seq(100);
      const backend = new MemoryBackend({ clock, input: (id) => (id === 2 ? input : new Uint8Array(0)) });
      const sink = new FakeSink();
      const voice = backend.openInput(2, params({ direction: C.VIRTIO_SND_D_INPUT }), sink);
      voice.start();
      clock.advanceTo(20e6);
      expect(sink.got).toEqual([...input, ...new Array<number>(60).fill(0x80)]);
      const cap = backend.capturesOf(2)[0]!;
      expect(Array.from(cap.delivered.bytes())).toEqual(sink.got);
      expect(cap.overruns).toBe(0);
    });

    it("captures silence by default, phase-aligned for multi-byte formats", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock, chunkFrames: 4 });
      const sink = new FakeSink();
      const voice = backend.openInput(
        0,
        params({ direction: C.VIRTIO_SND_D_INPUT, format: C.VIRTIO_SND_PCM_FMT_U16 }),
        sink,
      );
      voice.start();
      clock.advanceTo(1e6); // 8 frames of U16 mono
      expect(sink.got).toEqual([0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80, 0, 0x80]);
    });

    it("continues silence in phase after input that ends mid-chunk", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock, chunkFrames: 4, input: () => Uint8Array.of(1, 2, 3, 4) });
      const sink = new FakeSink();
      const voice = backend.openInput(
        0,
        params({ direction: C.VIRTIO_SND_D_INPUT, format: C.VIRTIO_SND_PCM_FMT_U16 }),
        sink,
      );
      voice.start();
      clock.advanceTo(500_000); // 4 frames = 8 bytes
      expect(sink.got).toEqual([1, 2, 3, 4, 0, 0x80, 0, 0x80]);
    });

    it("counts overruns when the sink takes fewer bytes; the dropped bytes are lost", () => {
      const clock = new VirtualClock();
      const input = seq(240);
      const backend = new MemoryBackend({ clock, input: () => input });
      const sink = new FakeSink(50);
      const voice = backend.openInput(0, params({ direction: C.VIRTIO_SND_D_INPUT }), sink);
      voice.start();
      clock.advanceTo(30e6);
      const cap = backend.captures[0]!;
      expect(cap.overruns).toBe(3);
      expect(cap.overrunBytes).toBe(90);
      expect(sink.got).toEqual([...seq(50, 1), ...seq(50, 81), ...seq(50, 161)]);
      expect(Array.from(cap.delivered.bytes())).toEqual(sink.got);
    });

    it("close() marks the capture closed and stops writing", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock });
      const sink = new FakeSink();
      const voice = backend.openInput(0, params({ direction: C.VIRTIO_SND_D_INPUT }), sink);
      voice.start();
      clock.advanceTo(10e6);
      voice.close();
      clock.advanceTo(1e9);
      // One period delivered before the close, nothing after it.
      expect(sink.got).toHaveLength(80);
      expect(backend.captures[0]!.delivered.length).toBe(80);
      expect(backend.captures[0]!.closed).toBe(true);
    });

    it("stop/start keeps the input position", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock, input: () => seq(200) });
      const sink = new FakeSink();
      const voice = backend.openInput(0, params({ direction: C.VIRTIO_SND_D_INPUT }), sink);
      voice.start();
      clock.advanceTo(10e6);
      voice.stop();
      clock.advanceTo(100e6);
      voice.start();
      clock.advanceTo(110e6);
      expect(sink.got).toEqual(Array.from(seq(160)));
    });
  });
});
