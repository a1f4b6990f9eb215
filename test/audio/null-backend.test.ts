import { describe, expect, it } from "vitest";
import type { InputSink, OutputSource } from "../../src/audio/backend.js";
import { RealTimeClock, VirtualClock } from "../../src/audio/clock.js";
import { NullBackend } from "../../src/audio/null-backend.js";
import { PacedInputVoice, openCaptureVoice } from "../../src/audio/paced-input-voice.js";
import type { PcmParams } from "../../src/audio/pcm-params.js";
import { BytesSource, type CaptureSource, ToneSource } from "../../src/audio/sources.js";
import { BackendError } from "../../src/errors.js";
import * as C from "../../src/spec/constants.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { play, record } from "../../src/driver/pcm-session.js";

const MS = 1_000_000;
const PERIOD = 1920;

function params(over: Partial<PcmParams> = {}): PcmParams {
  return {
    direction: C.VIRTIO_SND_D_OUTPUT,
    format: C.VIRTIO_SND_PCM_FMT_S16,
    rate: 48000 as const,
    channels: 2,
    bufferBytes: 4 * PERIOD,
    periodBytes: PERIOD,
    features: 0,
    ...over,
  };
}

class LogSource implements OutputSource {
  reads: { time: number; length: number }[] = [];
  constructor(
    private readonly clock: VirtualClock,
    private available: number,
  ) {}
  read(_dest: Uint8Array, _offset: number, length: number): number {
    this.reads.push({ time: this.clock.now(), length });
    const n = Math.min(length, this.available);
    this.available -= n;
    return n;
  }
  fail(): void {}
}

class LogSink implements InputSink {
  got: number[] = [];
  failures: Error[] = [];
  constructor(private capacity = Infinity) {}
  write(src: Uint8Array, offset: number, length: number): number {
    const n = Math.min(length, this.capacity);
    for (let i = 0; i < n; i++) this.got.push(src[offset + i]!);
    return n;
  }
  fail(error: Error): void {
    this.failures.push(error);
  }
}

describe("NullBackend", () => {
  it("takes one period from the stream at each period's time and discards it", () => {
    const clock = new VirtualClock();
    const backend = new NullBackend({ clock });
    expect(backend.name).toBe("null");
    const src = new LogSource(clock, 2.5 * PERIOD);
    const voice = backend.openOutput(0, params(), src);
    voice.start();
    clock.advance(40 * MS);
    expect(src.reads).toEqual([10, 20, 30, 40].map((t) => ({ time: t * MS, length: PERIOD })));
    expect(backend.bytesPlayed).toBe(2.5 * PERIOD);
    expect(backend.underrunBytes).toBe(1.5 * PERIOD);
    voice.close();
    clock.advance(100 * MS);
    expect(src.reads).toHaveLength(4);
    expect(voice.latencyBytes()).toBe(0);
  });

  it("catches up every chunk when its clock fires late, and follows chunkFrames", () => {
    const clock = new VirtualClock();
    const backend = new NullBackend({ clock, chunkFrames: 48 }); // 1 ms
    const src = new LogSource(clock, 1e9);
    backend.openOutput(0, params(), src).start();
    clock.advanceTo(10 * MS); // one jump: ten chunks due
    expect(src.reads).toHaveLength(10);
    expect(src.reads.every((r) => r.length === 192)).toBe(true);
  });

  it("records silence by default, or its input source", () => {
    const clock = new VirtualClock();
    const silent = new NullBackend({ clock });
    const sink = new LogSink();
    const v = silent.openInput(
      1,
      params({ direction: C.VIRTIO_SND_D_INPUT, format: C.VIRTIO_SND_PCM_FMT_U8 }),
      sink,
    );
    v.start();
    clock.advance(20 * MS); // a period of 1920 U8 stereo bytes lasts 20 ms
    expect(sink.got).toHaveLength(1920);
    expect(sink.got.every((b) => b === 0x80)).toBe(true);

    const data = Uint8Array.from({ length: 3000 }, (_, i) => i & 0xff);
    const fed = new NullBackend({ clock, input: new BytesSource(data) });
    const sink2 = new LogSink();
    fed.openInput(1, params({ direction: C.VIRTIO_SND_D_INPUT }), sink2).start();
    clock.advance(20 * MS);
    expect(sink2.got.slice(0, 3000)).toEqual([...data]);
    expect(sink2.got.slice(3000).every((b) => b === 0)).toBe(true);
  });

  it("defaults to a real-time clock", () => {
    expect(new NullBackend().clock).toBeInstanceOf(RealTimeClock);
  });

  it("behind a VirtioSound: playback completes on the clock, capture delivers silence", () => {
    const guest = new SimulatedGuest({ audioBackend: (clock) => new NullBackend({ clock }) });
    guest.init();
    guest.probe();
    const p = {
      format: C.VIRTIO_SND_PCM_FMT_S16,
      rate: 48000 as const,
      channels: 2,
      periodBytes: PERIOD,
      periods: 4,
    };
    const r = play(guest, 0, new Uint8Array(50 * PERIOD).fill(7), p);
    expect(r.completions).toHaveLength(50);
    r.completions.forEach((c, k) => {
      expect(c.status).toBe(C.VIRTIO_SND_S_OK);
      expect(c.time - r.startTime).toBe((k + 1) * 10 * MS);
    });
    expect(guest.backend.playbacks).toHaveLength(0); // the MemoryBackend was not used
    const rec = record(guest, 1, 10 * PERIOD, p);
    expect(rec.data.every((b) => b === 0)).toBe(true);
    rec.completions.slice(0, 10).forEach((c, k) => expect(c.time - rec.startTime).toBe((k + 1) * 10 * MS));
  });
});

describe("PacedInputVoice", () => {
  it("counts overruns when the stream has no buffer for the bytes", () => {
    const clock = new VirtualClock();
    const sink = new LogSink(1000);
    const v = new PacedInputVoice(clock, params(), sink, new ToneSource().open(params()));
    v.start();
    clock.advance(30 * MS);
    expect(v.bytesDelivered).toBe(3000);
    expect(v.overruns).toBe(3);
    expect(v.overrunBytes).toBe(3 * (PERIOD - 1000));
  });

  it("fails the stream with a BackendError when its reader throws, and closes the reader once", () => {
    const clock = new VirtualClock();
    let closes = 0;
    const sink = new LogSink();
    const v = new PacedInputVoice(clock, params(), sink, {
      fill() {
        throw new Error("device unplugged");
      },
      close() {
        closes++;
      },
    });
    v.start();
    clock.advance(10 * MS);
    expect(sink.failures).toHaveLength(1);
    expect(sink.failures[0]).toBeInstanceOf(BackendError);
    expect(sink.failures[0]!.message).toBe("capture source failed: device unplugged");
    v.close();
    v.close();
    expect(closes).toBe(1);
  });

  it("openCaptureVoice turns a source that cannot open into a BackendError (its own kept as is)", () => {
    const clock = new VirtualClock();
    const broken: CaptureSource = {
      open() {
        throw new TypeError("no such device");
      },
    };
    expect(() => openCaptureVoice(broken, clock, params(), new LogSink())).toThrow(
      expect.objectContaining({ code: "ERR_BACKEND", message: "capture source cannot open: no such device" }),
    );
    const unsupported = new ToneSource();
    expect(() =>
      openCaptureVoice(unsupported, clock, params({ format: C.VIRTIO_SND_PCM_FMT_DSD_U16 }), new LogSink()),
    ).toThrow(expect.objectContaining({ code: "ERR_BACKEND_NOT_SUPPORTED" }));
  });
});
