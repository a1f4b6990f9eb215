/**
 * SpeakerBackend's pacing, cushion, latency, format choices and error paths,
 * with a fake Speaker class (the `speakerClass` option: no probe, no ALSA),
 * so they run in-process and fast. The real speaker + ALSA path is in
 * speaker-alsa.test.ts.
 */
import { EventEmitter } from "node:events";
import { describe, expect, it } from "vitest";
import type { OutputSource } from "../../src/audio/backend.js";
import { type Clock, ClockTimer, VirtualClock } from "../../src/audio/clock.js";
import type { PcmParams } from "../../src/audio/pcm-params.js";
import { BackendError } from "../../src/errors.js";
import {
  type SpeakerBackendOptions,
  type SpeakerClass,
  type SpeakerConstructorOptions,
  type SpeakerLike,
  SpeakerBackend,
} from "../../src/node/speaker-backend.js";
import { SPEAKER_FORMATS } from "../../src/node/speaker-probe.js";
import * as C from "../../src/spec/constants.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { ForwardClock } from "./fixtures/speaker-cases.js";

interface FakeOptions {
  /** Virtio formats the fake device takes (default: all of speaker's). */
  formats?: readonly number[];
  /** _open() throws this. */
  openError?: string;
  /** The n-th write (1-based) fails. */
  failWrite?: number;
  /** Write callbacks wait for release() instead of running on the next tick. */
  holdWrites?: boolean;
}

interface FakeSpeaker extends SpeakerLike {
  readonly options: SpeakerConstructorOptions;
  readonly chunks: Uint8Array[];
  readonly closes: (boolean | undefined)[];
  opened: boolean;
  bytes(): Uint8Array;
  /** Completes held writes. */
  release(): void;
}

function fakeSpeakerClass(fake: FakeOptions = {}): SpeakerClass & { instances: FakeSpeaker[] } {
  const code = (f: { bitDepth: number; signed: boolean; float: boolean }): number =>
    f.bitDepth * 4 + (f.signed ? 2 : 0) + (f.float ? 1 : 0);
  const supported = new Set(
    [...SPEAKER_FORMATS].filter(([id]) => fake.formats?.includes(id) ?? true).map(([, f]) => code(f)),
  );
  const instances: FakeSpeaker[] = [];
  class Fake extends EventEmitter implements FakeSpeaker {
    static instances = instances;
    static module_name = "fake";
    static getFormat(f: { bitDepth: number; signed: boolean; float: boolean }): number {
      return code(f);
    }
    static isSupported(c: number): boolean {
      return supported.has(c);
    }
    readonly chunks: Uint8Array[] = [];
    readonly closes: (boolean | undefined)[] = [];
    opened = false;
    private writes = 0;
    private held: (() => void)[] = [];
    constructor(readonly options: SpeakerConstructorOptions) {
      super();
      instances.push(this);
    }
    _open(): void {
      if (fake.openError !== undefined) throw new Error(fake.openError);
      this.opened = true;
    }
    write(chunk: Uint8Array, cb: (error?: Error | null) => void): boolean {
      this.writes++;
      const fail = this.writes === fake.failWrite;
      if (!fail) this.chunks.push(Uint8Array.from(chunk));
      const done = (): void => {
        if (fail) {
          const err = new Error("write() failed: 0");
          cb(err);
          this.emit("error", err);
        } else {
          cb(null);
        }
      };
      if (fake.holdWrites) this.held.push(done);
      else process.nextTick(done);
      return false;
    }
    close(flush?: boolean): void {
      this.closes.push(flush);
    }
    bytes(): Uint8Array {
      return Buffer.concat(this.chunks);
    }
    release(): void {
      const h = this.held;
      this.held = [];
      for (const d of h) d();
    }
  }
  return Fake as unknown as SpeakerClass & { instances: FakeSpeaker[] };
}

function params(over: Partial<PcmParams> = {}): PcmParams {
  return {
    direction: C.VIRTIO_SND_D_OUTPUT,
    format: C.VIRTIO_SND_PCM_FMT_S16,
    rate: 48000,
    channels: 2,
    periodBytes: 1920, // 10 ms
    bufferBytes: 8 * 1920,
    features: 0,
    ...over,
  };
}

/** A TX queue stand-in: serves `data`, then runs dry. */
class FakeSource implements OutputSource {
  pos = 0;
  failures: Error[] = [];
  constructor(readonly data: Uint8Array) {}
  read(dest: Uint8Array, offset: number, length: number): number {
    const n = Math.min(length, this.data.length - this.pos);
    dest.set(this.data.subarray(this.pos, this.pos + n), offset);
    this.pos += n;
    return n;
  }
  fail(error: Error): void {
    this.failures.push(error);
  }
}

function ramp(n: number): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (i * 7 + (i >> 8)) & 0xff);
}

const MS = 1_000_000;
const tick = (): Promise<void> => new Promise((r) => setImmediate(r));

async function setup(
  fake: FakeOptions = {},
  options: SpeakerBackendOptions = {},
  clock: Clock = new VirtualClock(),
) {
  const Speaker = fakeSpeakerClass(fake);
  const backend = await SpeakerBackend.create({ clock, speakerClass: Speaker, ...options });
  return { Speaker, backend, clock };
}

describe("SpeakerBackend with a fake Speaker", () => {
  it("opens the Speaker at PREPARE with the stream's format, and never probes with a speakerClass", async () => {
    const { Speaker, backend } = await setup({}, { device: "hw:3,0" });
    expect(backend.name).toBe("speaker");
    expect(backend.probe).toBeUndefined();
    backend.openOutput(
      0,
      params({ format: C.VIRTIO_SND_PCM_FMT_S24_3, rate: 44100 }),
      new FakeSource(ramp(0)),
    );
    backend.openOutput(
      1,
      params({ format: C.VIRTIO_SND_PCM_FMT_FLOAT, channels: 1 }),
      new FakeSource(ramp(0)),
    );
    const [a, b] = Speaker.instances;
    expect(a!.opened).toBe(true);
    expect(a!.options).toEqual({
      channels: 2,
      sampleRate: 44100,
      bitDepth: 24,
      signed: true,
      float: false,
      device: "hw:3,0",
    });
    expect(b!.options).toMatchObject({
      channels: 1,
      sampleRate: 48000,
      bitDepth: 32,
      signed: true,
      float: true,
    });
  });

  it("writes a cushion at START, then one chunk per chunk duration; latencyBytes is written minus due", async () => {
    const { Speaker, backend, clock } = await setup();
    const vc = clock as VirtualClock;
    const data = ramp(48000);
    const voice = backend.openOutput(0, params(), new FakeSource(data));
    const sp = Speaker.instances[0]!;
    expect(backend.outputs[0]).toMatchObject({ chunkFrames: 480, cushionFrames: 4 * 480, converted: false });
    voice.start();
    expect(sp.chunks).toHaveLength(4);
    expect(voice.latencyBytes()).toBe(4 * 1920);
    vc.advance(10 * MS);
    expect(sp.chunks).toHaveLength(5);
    expect(voice.latencyBytes()).toBe(4 * 1920);
    vc.advance(5 * MS);
    expect(voice.latencyBytes()).toBe(3.5 * 1920);
    vc.advance(85 * MS);
    expect(sp.chunks).toHaveLength(14);
    expect(Buffer.from(sp.bytes()).equals(Buffer.from(data.subarray(0, 14 * 1920)))).toBe(true);
    voice.close();
  });

  it("completes a chunk the stream could not fill with the format's silence", async () => {
    const { Speaker, backend, clock } = await setup();
    const p = params({
      format: C.VIRTIO_SND_PCM_FMT_U8,
      channels: 1,
      rate: 8000,
      periodBytes: 80,
      bufferBytes: 640,
    });
    const voice = backend.openOutput(0, p, new FakeSource(ramp(100)));
    voice.start();
    (clock as VirtualClock).advance(10 * MS);
    const bytes = Speaker.instances[0]!.bytes();
    expect(bytes.length).toBe(5 * 80);
    expect(Buffer.from(bytes.subarray(0, 100)).equals(Buffer.from(ramp(100)))).toBe(true);
    expect(bytes.subarray(100).every((b) => b === 0x80)).toBe(true);
    expect(backend.outputs[0]!.underrunBytes).toBe(300);
    voice.close();
  });

  it("STOP leaves the device playing what it holds; START tops the cushion up only", async () => {
    const { Speaker, backend, clock } = await setup();
    const vc = clock as VirtualClock;
    const voice = backend.openOutput(0, params(), new FakeSource(ramp(96000)));
    voice.start();
    vc.advance(10 * MS); // 5 chunks written, 1 played
    voice.stop();
    vc.advance(20 * MS); // 3 played
    expect(voice.latencyBytes()).toBe(2 * 1920);
    voice.start();
    expect(Speaker.instances[0]!.chunks).toHaveLength(7);
    expect(voice.latencyBytes()).toBe(4 * 1920);
    voice.close();
  });

  it("drops a chunk whose play time has passed instead of adding delay", async () => {
    // A clock that fires late: the test fires the timer itself, long after its deadline.
    let time = 0;
    let armed: ClockTimer | null = null;
    const late: Clock = {
      now: () => time,
      arm: (t) => {
        armed = t;
      },
      disarm: () => {
        armed = null;
      },
    };
    const { Speaker, backend } = await setup({}, {}, late);
    const src = new FakeSource(ramp(96000));
    const voice = backend.openOutput(0, params(), src);
    voice.start(); // chunks 0-3 written: they play over 0-40 ms
    time = 100 * MS; // 60 ms past the cushion
    (armed as ClockTimer | null)!.fire();
    // PacedVoice caught up on 10 chunks (4-13); those ending by 100 ms (4-9) were dropped.
    expect(src.pos).toBe(14 * 1920);
    expect(backend.outputs[0]!.droppedChunks).toBe(6);
    expect(Speaker.instances[0]!.chunks).toHaveLength(4 + 4);
    voice.close();
  });

  it("a write error fails the stream's messages with IO_ERR; the device goes on and a new PREPARE opens a new Speaker", async () => {
    const Speaker = fakeSpeakerClass({ failWrite: 6 });
    const clock = new ForwardClock();
    const backend = await SpeakerBackend.create({ speakerClass: Speaker, clock });
    const guest = new SimulatedGuest({
      audioBackend: (c) => {
        clock.target = c;
        return backend;
      },
    });
    guest.init();
    guest.probe();
    const p = { format: C.VIRTIO_SND_PCM_FMT_S16, rate: 48000, channels: 2, periodBytes: 1920 };
    expect(guest.setParams(0, { ...p, bufferBytes: 8 * 1920 })).toBe(C.VIRTIO_SND_S_OK);
    expect(guest.prepare(0)).toBe(C.VIRTIO_SND_S_OK);
    const dma = guest.alloc(8 * 1920, 4096);
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) guest.queueIo(0, false, dma + i * 1920, 1920, (c) => statuses.push(c.status));
    expect(guest.start(0)).toBe(C.VIRTIO_SND_S_OK);
    guest.clock.advance(20 * MS); // writes 5 and 6 happen; 6 fails asynchronously
    await tick();
    expect(statuses.slice(0, 6).every((s) => s === C.VIRTIO_SND_S_OK)).toBe(true);
    expect(statuses.slice(6)).toEqual([C.VIRTIO_SND_S_IO_ERR, C.VIRTIO_SND_S_IO_ERR]);
    const out = backend.outputs[0]!;
    expect(out.error).toBeInstanceOf(Error);
    await backend.whenIdle();
    expect(out.closed).toBe(true);
    expect(Speaker.instances[0]!.closes).toEqual([true]); // failed: dropped, not drained
    expect(guest.needsReset).toBeNull();
    const errors = guest.streamEvents.filter((e) => e.type === "error");
    expect(errors.length).toBeGreaterThan(0);
    // Messages queued now fail at once, until the next PREPARE, which opens a new Speaker.
    guest.queueIo(0, false, dma, 1920, (c) => statuses.push(c.status));
    expect(statuses.at(-1)).toBe(C.VIRTIO_SND_S_IO_ERR);
    expect(guest.stop(0)).toBe(C.VIRTIO_SND_S_OK);
    expect(guest.release(0)).toBe(C.VIRTIO_SND_S_OK);
    expect(guest.prepare(0)).toBe(C.VIRTIO_SND_S_OK);
    expect(Speaker.instances).toHaveLength(2);
    expect(Speaker.instances[1]!.opened).toBe(true);
  });

  it("reports a failed write through source.fail as a BackendError and reads no more", async () => {
    const { backend, clock } = await setup({ failWrite: 2 });
    const src = new FakeSource(ramp(96000));
    const voice = backend.openOutput(0, params(), src);
    voice.start();
    await tick();
    expect(src.failures).toHaveLength(1);
    expect(src.failures[0]).toBeInstanceOf(BackendError);
    expect(src.failures[0]!.message).toBe("speaker: write() failed: 0");
    const pos = src.pos;
    (clock as VirtualClock).advance(100 * MS);
    expect(src.pos).toBe(pos);
    voice.close();
  });

  it("closes the Speaker only after its writes completed and the written audio played out (draining)", async () => {
    const { Speaker, backend } = await setup({ holdWrites: true });
    const voice = backend.openOutput(0, params(), new FakeSource(ramp(96000)));
    voice.start();
    voice.close();
    const sp = Speaker.instances[0]!;
    let idle = false;
    void backend.whenIdle().then(() => (idle = true));
    await tick();
    expect(sp.closes).toEqual([]); // 4 writes still pending
    // The 40 ms tail is timed from the moment the writes complete: t0 is taken before that, so a
    // loaded machine can only make the wait longer, never shorter.
    const t0 = performance.now();
    sp.release();
    await tick();
    expect(sp.closes).toEqual([]); // 40 ms of audio not yet played
    await backend.whenIdle();
    expect(performance.now() - t0).toBeGreaterThanOrEqual(30);
    expect(idle).toBe(true);
    expect(sp.closes).toEqual([false]);
  });

  it("a new voice makes a released one still playing its tail close its Speaker first (hw devices open once)", async () => {
    const { Speaker, backend } = await setup();
    const first = backend.openOutput(0, params(), new FakeSource(ramp(96000)));
    first.start();
    first.close();
    await tick();
    expect(Speaker.instances[0]!.closes).toEqual([]); // waiting for 40 ms of tail
    backend.openOutput(0, params(), new FakeSource(ramp(0)));
    expect(Speaker.instances[0]!.closes).toEqual([false]);
    expect(backend.outputs[0]!.closed).toBe(true);
  });

  it("a Speaker that cannot open fails PREPARE with ERR_BACKEND (the stream answers IO_ERR)", async () => {
    const { backend } = await setup({ openError: "Failed to open output device" });
    expect(() => backend.openOutput(0, params({ channels: 8 }), new FakeSource(ramp(0)))).toThrow(
      expect.objectContaining({
        code: "ERR_BACKEND",
        message: expect.stringMatching(
          /speaker cannot open the default device for S16, 8 ch at 48000 Hz: Failed to open output device/,
        ) as unknown,
      }),
    );
  });

  it("has no input: openInput is ERR_BACKEND_NOT_SUPPORTED", async () => {
    const { backend } = await setup();
    expect(() =>
      backend.openInput(1, params({ direction: C.VIRTIO_SND_D_INPUT }), { write: () => 0, fail: () => {} }),
    ).toThrow(expect.objectContaining({ code: "ERR_BACKEND_NOT_SUPPORTED" }));
  });

  it("close() closes every voice; whenIdle resolves once the Speakers are closed", async () => {
    const { Speaker, backend } = await setup();
    backend.openOutput(0, params(), new FakeSource(ramp(0)));
    backend.openOutput(1, params(), new FakeSource(ramp(0)));
    backend.close();
    await backend.whenIdle();
    expect(Speaker.instances.map((s) => s.closes)).toEqual([[false], [false]]);
    expect(() => backend.openOutput(2, params(), new FakeSource(ramp(0)))).toThrow(BackendError);
  });
});

describe("SpeakerBackend format and rate choices", () => {
  const spec = (format: number, rate = 48000) => ({ format, channels: 2, rate });

  it("takes speaker's formats as they are and converts the others exactly where it can", async () => {
    const { backend } = await setup();
    for (const f of SPEAKER_FORMATS.keys()) expect(backend.deviceFormatFor(spec(f))).toEqual(spec(f));
    expect(backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_S24))).toEqual(spec(C.VIRTIO_SND_PCM_FMT_S32));
    expect(backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_U20))).toEqual(spec(C.VIRTIO_SND_PCM_FMT_S32));
    expect(backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_S20_3))).toEqual(spec(C.VIRTIO_SND_PCM_FMT_S32));
    expect(backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_MU_LAW))).toEqual(
      spec(C.VIRTIO_SND_PCM_FMT_S16),
    );
    expect(backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_A_LAW))).toEqual(spec(C.VIRTIO_SND_PCM_FMT_S16));
    for (const f of [
      C.VIRTIO_SND_PCM_FMT_IMA_ADPCM,
      C.VIRTIO_SND_PCM_FMT_DSD_U8,
      C.VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME,
    ]) {
      expect(() => backend.deviceFormatFor(spec(f))).toThrow(
        expect.objectContaining({
          code: "ERR_BACKEND_NOT_SUPPORTED",
          message: expect.stringMatching(
            /^speaker: (IMA_ADPCM|DSD_U8|IEC958_SUBFRAME) cannot be played or converted$/,
          ) as unknown,
        }),
      );
    }
  });

  it("converts to what a device with few formats takes", async () => {
    const { backend } = await setup({ formats: [C.VIRTIO_SND_PCM_FMT_S16, C.VIRTIO_SND_PCM_FMT_S32] });
    expect(backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_U8))).toEqual(spec(C.VIRTIO_SND_PCM_FMT_S16));
    expect(backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_FLOAT))).toEqual(spec(C.VIRTIO_SND_PCM_FMT_S32));
    expect(backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_S24_3))).toEqual(spec(C.VIRTIO_SND_PCM_FMT_S32));
    const only16 = await setup({ formats: [C.VIRTIO_SND_PCM_FMT_S16] });
    expect(only16.backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_FLOAT64))).toEqual(
      spec(C.VIRTIO_SND_PCM_FMT_S16),
    );
  });

  it("plays U8 on an S16-only device through the converter, exactly", async () => {
    const { Speaker, backend, clock } = await setup({ formats: [C.VIRTIO_SND_PCM_FMT_S16] });
    const p = params({
      format: C.VIRTIO_SND_PCM_FMT_U8,
      channels: 1,
      rate: 8000,
      periodBytes: 80,
      bufferBytes: 640,
    });
    const data = ramp(400);
    const voice = backend.openOutput(0, p, new FakeSource(data));
    expect(backend.outputs[0]!.converted).toBe(true);
    voice.start();
    (clock as VirtualClock).advance(10 * MS);
    const out = Speaker.instances[0]!.bytes();
    expect(Speaker.instances[0]!.options).toMatchObject({ bitDepth: 16, signed: true, sampleRate: 8000 });
    const s16 = new Int16Array(out.buffer, out.byteOffset, out.length / 2);
    expect(Array.from(s16)).toEqual(Array.from(data, (u) => (u - 128) * 256));
    voice.close();
  });

  it("resamples a rate the device does not take exactly to 48000, or 44100, or forces one rate", async () => {
    const at48 = await setup({}, { rates: [48000, 96000] });
    expect(at48.backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_S16, 96000))).toEqual(
      spec(C.VIRTIO_SND_PCM_FMT_S16, 96000),
    );
    expect(at48.backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_S16, 44100))).toEqual(
      spec(C.VIRTIO_SND_PCM_FMT_S16, 48000),
    );
    const at44 = await setup({}, { rates: [44100] });
    expect(at44.backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_FLOAT, 8000))).toEqual(
      spec(C.VIRTIO_SND_PCM_FMT_FLOAT, 44100),
    );
    const forced = await setup({}, { rate: 48000 });
    expect(forced.backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_S16, 22050))).toEqual(
      spec(C.VIRTIO_SND_PCM_FMT_S16, 48000),
    );
    // Unknown rates (no probe): every rate is used as it is.
    const open = await setup();
    expect(open.backend.deviceFormatFor(spec(C.VIRTIO_SND_PCM_FMT_S16, 5512))).toEqual(
      spec(C.VIRTIO_SND_PCM_FMT_S16, 5512),
    );
  });
});
