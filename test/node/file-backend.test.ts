import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { OutputSource } from "../../src/audio/backend.js";
import { VirtualClock } from "../../src/audio/clock.js";
import type { PcmParams } from "../../src/audio/pcm-params.js";
import { ToneSource } from "../../src/audio/sources.js";
import type { SoundConfig } from "../../src/device/config.js";
import { BackendError } from "../../src/errors.js";
import { WavFileBackend } from "../../src/node/file-backend.js";
import { NODE_FILE_SYSTEM, type WavFileSystem, readWav } from "../../src/node/wav.js";
import * as C from "../../src/spec/constants.js";
import { type Completion, SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { play, record } from "../../src/driver/pcm-session.js";
import { prng, soxAvailable, soxInfo, soxSamples32, tempDir } from "./wav-helpers.js";

const HAVE_SOX = soxAvailable();
const MS = 1_000_000;
const S16_STEREO_48K = { format: C.VIRTIO_SND_PCM_FMT_S16, rate: 48000 as const, channels: 2 };
const PERIOD = 1920; // 10 ms

function signal(bytes: number, seed: number): Uint8Array {
  const r = prng(seed);
  return Uint8Array.from({ length: bytes }, () => r() & 0xff);
}

function params(over: Partial<PcmParams> = {}): PcmParams {
  return {
    direction: C.VIRTIO_SND_D_OUTPUT,
    ...S16_STEREO_48K,
    bufferBytes: 4 * PERIOD,
    periodBytes: PERIOD,
    features: 0,
    ...over,
  };
}

/** A TX queue stand-in: serves `data`, then runs dry; logs each read's time and size. */
class FakeSource implements OutputSource {
  pos = 0;
  reads: { time: number; length: number; got: number }[] = [];
  failures: Error[] = [];
  onRead: (() => void) | null = null;
  constructor(
    private readonly clock: VirtualClock,
    public data: Uint8Array,
  ) {}
  read(dest: Uint8Array, offset: number, length: number): number {
    const n = Math.min(length, this.data.length - this.pos);
    dest.set(this.data.subarray(this.pos, this.pos + n), offset);
    this.pos += n;
    this.reads.push({ time: this.clock.now(), length, got: n });
    this.onRead?.();
    return n;
  }
  fail(error: Error): void {
    this.failures.push(error);
  }
}

let tmp: ReturnType<typeof tempDir>;
beforeEach(() => {
  tmp = tempDir("wav-backend-");
});
afterEach(() => tmp.remove());

describe("WavFileBackend voices", () => {
  it("writes each period at its time, exactly the source's bytes, underruns not filled in", () => {
    const clock = new VirtualClock();
    const backend = new WavFileBackend({ dir: tmp.path, clock });
    const data = signal(PERIOD * 5 + 100, 1);
    const src = new FakeSource(clock, data);
    const voice = backend.openOutput(0, params(), src);
    const path = join(tmp.path, "stream0-1.wav");
    expect(readWav(path).frames).toBe(0); // created at PREPARE, with a valid header

    voice.start();
    clock.advance(30 * MS);
    expect(src.reads.map((r) => r.time)).toEqual([10 * MS, 20 * MS, 30 * MS]);
    expect(readWav(path).data.length).toBe(3 * PERIOD); // readable while playing
    clock.advance(50 * MS); // 5 more periods, the source runs dry in the 6th
    voice.close();

    const wav = readWav(path);
    expect(Buffer.from(wav.data).equals(Buffer.from(data.subarray(0, wav.data.length)))).toBe(true);
    expect(wav.data.length).toBe(data.length); // 5 periods + 100 bytes: no silence added
    const rec = backend.files[0]!;
    expect(rec).toMatchObject({
      streamId: 0,
      session: 1,
      path,
      bytes: data.length,
      closed: true,
      error: null,
    });
    expect(rec.underrunBytes).toBe(8 * PERIOD - data.length);
    expect(voice.latencyBytes()).toBe(0);
  });

  it("STOP and START append to the same file; the run restarts its pacing at START", () => {
    const clock = new VirtualClock();
    const backend = new WavFileBackend({ dir: tmp.path, clock, chunkFrames: 240 }); // 5 ms chunks
    const src = new FakeSource(clock, signal(PERIOD * 10, 2));
    const voice = backend.openOutput(3, params(), src);
    voice.start();
    clock.advance(10 * MS);
    voice.stop();
    clock.advance(7 * MS);
    voice.start();
    clock.advance(5 * MS);
    voice.close();
    expect(src.reads.map((r) => r.time)).toEqual([5 * MS, 10 * MS, 22 * MS]);
    expect(src.reads.every((r) => r.length === PERIOD / 2)).toBe(true);
    expect(readWav(join(tmp.path, "stream3-1.wav")).data.length).toBe((3 * PERIOD) / 2);
  });

  it("a close() from inside the source's read (RELEASE from an interrupt) still writes that chunk", () => {
    const clock = new VirtualClock();
    const backend = new WavFileBackend({ dir: tmp.path, clock });
    const src = new FakeSource(clock, signal(PERIOD * 3, 3));
    const voice = backend.openOutput(0, params(), src);
    src.onRead = () => {
      if (src.reads.length === 2) voice.close();
    };
    voice.start();
    clock.advance(100 * MS);
    expect(src.reads).toHaveLength(2);
    expect(readWav(join(tmp.path, "stream0-1.wav")).data.length).toBe(2 * PERIOD);
    expect(backend.files[0]!.closed).toBe(true);
  });

  it("names sessions stream<S>-<N>.wav per stream, skips names already taken, and takes a pattern or function", () => {
    const clock = new VirtualClock();
    writeFileSync(join(tmp.path, "stream1-1.wav"), "an earlier run");
    const backend = new WavFileBackend({ dir: join(tmp.path, "sub", "dir"), clock });
    const open = (s: number): string => {
      const v = backend.openOutput(s, params(), new FakeSource(clock, new Uint8Array(0)));
      v.close();
      return backend.files.at(-1)!.path;
    };
    expect(open(0)).toBe(join(tmp.path, "sub/dir/stream0-1.wav"));
    expect(open(0)).toBe(join(tmp.path, "sub/dir/stream0-2.wav"));
    expect(open(1)).toBe(join(tmp.path, "sub/dir/stream1-1.wav"));
    expect(backend.filesOf(0).map((f) => f.session)).toEqual([1, 2]);

    const skipping = new WavFileBackend({ dir: tmp.path, clock });
    const v = skipping.openOutput(1, params(), new FakeSource(clock, new Uint8Array(0)));
    v.close();
    expect(skipping.files[0]!.path).toBe(join(tmp.path, "stream1-2.wav"));
    expect(skipping.files[0]!.session).toBe(2);

    const patterned = new WavFileBackend({ dir: tmp.path, clock, name: "take-{n}-of-{stream}.wav" });
    patterned.openOutput(4, params(), new FakeSource(clock, new Uint8Array(0))).close();
    expect(existsSync(join(tmp.path, "take-1-of-4.wav"))).toBe(true);

    const fn = new WavFileBackend({
      dir: tmp.path,
      clock,
      name: (s, n) => `f${s}_${n}.wav`,
      overwrite: true,
    });
    fn.openOutput(1, params(), new FakeSource(clock, new Uint8Array(0))).close();
    expect(existsSync(join(tmp.path, "f1_1.wav"))).toBe(true);
  });

  it("refuses formats WAV cannot hold (NOT_SUPP) and input without a source", () => {
    const backend = new WavFileBackend({ dir: tmp.path, clock: new VirtualClock() });
    const src = new FakeSource(new VirtualClock(), new Uint8Array(0));
    for (const format of [C.VIRTIO_SND_PCM_FMT_IMA_ADPCM, C.VIRTIO_SND_PCM_FMT_DSD_U8]) {
      expect(() => backend.openOutput(0, params({ format }), src)).toThrow(
        expect.objectContaining({ code: "ERR_BACKEND_NOT_SUPPORTED" }),
      );
    }
    const sink = { write: () => 0, fail: () => undefined };
    expect(() => backend.openInput(1, params({ direction: C.VIRTIO_SND_D_INPUT }), sink)).toThrow(
      BackendError,
    );
    expect(() => backend.openInput(1, params({ direction: C.VIRTIO_SND_D_INPUT }), sink)).toThrow(
      expect.objectContaining({ code: "ERR_BACKEND_NOT_SUPPORTED" }),
    );
    expect(readdirSync(tmp.path)).toEqual([]);
  });

  it("close() of the backend closes every open file", () => {
    const clock = new VirtualClock();
    const backend = new WavFileBackend({ dir: tmp.path, clock });
    const a = backend.openOutput(0, params(), new FakeSource(clock, signal(PERIOD, 4)));
    backend.openOutput(
      1,
      params({ format: C.VIRTIO_SND_PCM_FMT_U8, channels: 1 }),
      new FakeSource(clock, signal(3, 5)),
    );
    a.start();
    clock.advance(10 * MS);
    backend.close();
    expect(backend.files.every((f) => f.closed)).toBe(true);
    expect(readWav(join(tmp.path, "stream0-1.wav")).data.length).toBe(PERIOD);
    clock.advance(100 * MS);
    expect(clock.pendingTimers).toBe(0);
  });

  it("a directory that cannot be made is a configuration error", () => {
    writeFileSync(join(tmp.path, "file"), "x");
    expect(() => new WavFileBackend({ dir: join(tmp.path, "file", "sub") })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_CONFIG" }),
    );
  });
});

// ---- through the device ------------------------------------------------------------------

const TWO_OUTPUTS: SoundConfig = {
  streams: [{ direction: "output" }, { direction: "output" }, { direction: "input" }],
};

/** Plays on several streams at once, as aplay would on each: returns each stream's completions. */
function playTogether(
  guest: SimulatedGuest,
  streams: { id: number; data: Uint8Array }[],
  periods = 4,
): Map<number, { completions: Completion[]; startTime: number }> {
  const out = new Map<number, { completions: Completion[]; startTime: number }>();
  const active = new Map<number, { outstanding: number; failed: boolean }>();
  for (const { id, data } of streams) {
    expect(
      guest.setParams(id, { ...S16_STEREO_48K, bufferBytes: periods * PERIOD, periodBytes: PERIOD }),
    ).toBe(C.VIRTIO_SND_S_OK);
    expect(guest.prepare(id)).toBe(C.VIRTIO_SND_S_OK);
    const dma = guest.alloc(periods * PERIOD, 4096);
    const completions: Completion[] = [];
    const st = { outstanding: 0, failed: false };
    active.set(id, st);
    let offset = 0;
    const queue = (slot: number): void => {
      const addr = dma + slot * PERIOD;
      guest.memory.write(addr, data, offset, PERIOD);
      offset += PERIOD;
      st.outstanding++;
      guest.queueIo(id, false, addr, PERIOD, (c) => {
        completions.push(c);
        st.outstanding--;
        if (c.status !== C.VIRTIO_SND_S_OK) st.failed = true;
        else if (!st.failed && offset < data.length) queue(slot);
      });
    };
    for (let slot = 0; slot < periods; slot++) queue(slot);
    out.set(id, { completions, startTime: guest.clock.now() });
  }
  for (const { id } of streams) expect(guest.start(id)).toBe(C.VIRTIO_SND_S_OK);
  guest.clock.runUntil(() => [...active.values()].every((s) => s.outstanding === 0));
  for (const { id } of streams) {
    expect(guest.stop(id)).toBe(C.VIRTIO_SND_S_OK);
    expect(guest.release(id)).toBe(C.VIRTIO_SND_S_OK);
  }
  return out;
}

describe("WavFileBackend behind a VirtioSound device", () => {
  it("records two PREPARE..RELEASE sessions of stream 0 as stream0-1.wav and stream0-2.wav, exactly", () => {
    let backend!: WavFileBackend;
    const guest = new SimulatedGuest({
      audioBackend: (clock) => (backend = new WavFileBackend({ dir: tmp.path, clock })),
    });
    guest.init();
    guest.probe();
    const first = signal(48 * PERIOD, 11);
    const second = signal(20 * PERIOD, 12);
    const r1 = play(guest, 0, first, { ...S16_STEREO_48K, periodBytes: PERIOD, periods: 4 });
    const r2 = play(guest, 0, second, { ...S16_STEREO_48K, periodBytes: PERIOD, periods: 4 });

    expect(readdirSync(tmp.path).sort()).toEqual(["stream0-1.wav", "stream0-2.wav"]);
    for (const [name, data] of [
      ["stream0-1.wav", first],
      ["stream0-2.wav", second],
    ] as const) {
      const path = join(tmp.path, name);
      const wav = readWav(path);
      expect(wav).toMatchObject({ format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000 as const });
      expect(Buffer.from(wav.data).equals(Buffer.from(data))).toBe(true);
      if (HAVE_SOX) {
        expect(soxInfo(path, "s")).toBe(String(data.length / 4));
        expect(soxSamples32(path).length).toBe(data.length / 2);
      }
    }
    // Paced on the guest's (virtual) clock: period k completes at START + (k+1) x 10 ms.
    for (const r of [r1, r2]) {
      r.completions.forEach((c, k) => {
        expect(c.status).toBe(C.VIRTIO_SND_S_OK);
        expect(c.time - r.startTime).toBe((k + 1) * 10 * MS);
      });
    }
    expect(r1.completions).toHaveLength(48);
    expect(backend.files.map((f) => [f.session, f.closed, f.bytes])).toEqual([
      [1, true, first.length],
      [2, true, second.length],
    ]);
    expect(guest.needsReset).toBeNull();
  });

  it("PREPARE then RELEASE without START leaves an empty, valid file", () => {
    const guest = new SimulatedGuest({
      audioBackend: (clock) => new WavFileBackend({ dir: tmp.path, clock }),
    });
    guest.init();
    guest.probe();
    expect(guest.setParams(0, { ...S16_STEREO_48K, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(
      C.VIRTIO_SND_S_OK,
    );
    expect(guest.prepare(0)).toBe(C.VIRTIO_SND_S_OK);
    expect(guest.prepare(0)).toBe(C.VIRTIO_SND_S_OK); // a second PREPARE keeps the session
    expect(guest.release(0)).toBe(C.VIRTIO_SND_S_OK);
    expect(readdirSync(tmp.path)).toEqual(["stream0-1.wav"]);
    expect(readWav(join(tmp.path, "stream0-1.wav")).frames).toBe(0);
    if (HAVE_SOX) expect(soxInfo(join(tmp.path, "stream0-1.wav"), "s")).toBe("0");
  });

  it("a full disk fails that stream's messages with IO_ERR; the other stream keeps playing; the next PREPARE starts a new file", () => {
    // ENOSPC once stream 0's file holds 10 periods of data.
    const paths = new Map<number, string>();
    let full = true;
    const fs: WavFileSystem = {
      ...NODE_FILE_SYSTEM,
      openSync(path, flags) {
        const fd = NODE_FILE_SYSTEM.openSync(path, flags);
        paths.set(fd, path);
        return fd;
      },
      writeSync(fd, buffer, offset, length, position) {
        if (full && paths.get(fd)!.endsWith("stream0-1.wav") && position + length > 44 + 10 * PERIOD)
          throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        return NODE_FILE_SYSTEM.writeSync(fd, buffer, offset, length, position);
      },
    };
    let backend!: WavFileBackend;
    const guest = new SimulatedGuest({
      config: TWO_OUTPUTS,
      audioBackend: (clock) => (backend = new WavFileBackend({ dir: tmp.path, clock, fs })),
    });
    guest.init();
    guest.probe();
    const a = signal(40 * PERIOD, 21);
    const b = signal(40 * PERIOD, 22);
    const r = playTogether(guest, [
      { id: 0, data: a },
      { id: 1, data: b },
    ]);

    // Stream 0: periods 1..11 complete OK (the 11th was taken from the queue before its write failed),
    // then everything pending fails with IO_ERR.
    const s0 = r.get(0)!.completions.map((c) => c.status);
    expect(s0.slice(0, 11).every((s) => s === C.VIRTIO_SND_S_OK)).toBe(true);
    expect(s0.slice(11).length).toBeGreaterThan(0);
    expect(s0.slice(11).every((s) => s === C.VIRTIO_SND_S_IO_ERR)).toBe(true);
    const errors = guest.streamEvents.filter((e) => e.type === "error");
    expect(errors.map((e) => e.streamId)).toEqual([0]);
    expect(errors[0]!.error!.message).toMatch(/stream 0: writing .*stream0-1\.wav failed: ENOSPC/);
    expect(backend.filesOf(0)[0]!.error).toBeInstanceOf(BackendError);
    // Its file is valid and holds the 10 periods written before the disk filled up.
    const w0 = readWav(join(tmp.path, "stream0-1.wav"));
    expect(Buffer.from(w0.data).equals(Buffer.from(a.subarray(0, 10 * PERIOD)))).toBe(true);
    if (HAVE_SOX) expect(soxInfo(join(tmp.path, "stream0-1.wav"), "s")).toBe(String((10 * PERIOD) / 4));

    // Stream 1 played everything, on time.
    const c1 = r.get(1)!.completions;
    expect(c1).toHaveLength(40);
    c1.forEach((c, k) => {
      expect(c.status).toBe(C.VIRTIO_SND_S_OK);
      expect(c.time - r.get(1)!.startTime).toBe((k + 1) * 10 * MS);
    });
    expect(Buffer.from(readWav(join(tmp.path, "stream1-1.wav")).data).equals(Buffer.from(b))).toBe(true);

    // Space again: the next session of stream 0 is a new file and works.
    full = false;
    const again = play(guest, 0, a.subarray(0, 8 * PERIOD), {
      ...S16_STEREO_48K,
      periodBytes: PERIOD,
      periods: 4,
    });
    expect(again.completions.every((c) => c.status === C.VIRTIO_SND_S_OK)).toBe(true);
    expect(readWav(join(tmp.path, "stream0-2.wav")).data.length).toBe(8 * PERIOD);
    expect(guest.needsReset).toBeNull();
  });

  it.skipIf(!existsSync("/dev/full"))(
    "a file that cannot be created (/dev/full) fails PREPARE with IO_ERR; the other stream keeps playing",
    () => {
      const guest = new SimulatedGuest({
        config: TWO_OUTPUTS,
        audioBackend: (clock) =>
          new WavFileBackend({
            dir: tmp.path,
            clock,
            overwrite: true,
            name: (s, n) => (s === 0 ? "/dev/full" : `stream${s}-${n}.wav`),
          }),
      });
      guest.init();
      guest.probe();
      expect(guest.setParams(0, { ...S16_STEREO_48K, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(
        C.VIRTIO_SND_S_OK,
      );
      expect(guest.prepare(0)).toBe(C.VIRTIO_SND_S_IO_ERR);
      const err = guest.streamEvents.find((e) => e.type === "error")!;
      expect(err.streamId).toBe(0);
      expect(err.error!.message).toMatch(/cannot create \/dev\/full: ENOSPC/);

      const data = signal(20 * PERIOD, 31);
      const r = play(guest, 1, data, { ...S16_STEREO_48K, periodBytes: PERIOD, periods: 4 });
      expect(r.completions.every((c) => c.status === C.VIRTIO_SND_S_OK)).toBe(true);
      expect(Buffer.from(readWav(join(tmp.path, "stream1-1.wav")).data).equals(Buffer.from(data))).toBe(true);
    },
  );

  it("records from its input source when it has one, and refuses input (NOT_SUPP) when it has none", () => {
    const without = new SimulatedGuest({
      audioBackend: (clock) => new WavFileBackend({ dir: tmp.path, clock }),
    });
    without.init();
    without.probe();
    expect(without.setParams(1, { ...S16_STEREO_48K, bufferBytes: 4 * PERIOD, periodBytes: PERIOD })).toBe(
      C.VIRTIO_SND_S_OK,
    );
    expect(without.prepare(1)).toBe(C.VIRTIO_SND_S_NOT_SUPP);

    const guest = new SimulatedGuest({
      audioBackend: (clock) =>
        new WavFileBackend({ dir: tmp.path, clock, input: new ToneSource({ frequency: 1000, level: 0.25 }) }),
    });
    guest.init();
    guest.probe();
    const r = record(guest, 1, 10 * PERIOD, { ...S16_STEREO_48K, periodBytes: PERIOD, periods: 4 });
    const dv = new DataView(r.data.buffer);
    // 1 kHz at 48 kHz: frame 12 is a quarter cycle in, at the peak.
    expect(dv.getInt16(12 * 4, true)).toBe(Math.round(0.25 * 32768));
    expect(dv.getInt16(12 * 4 + 2, true)).toBe(Math.round(0.25 * 32768));
    r.completions.slice(0, 10).forEach((c, k) => expect(c.time - r.startTime).toBe((k + 1) * 10 * MS));
  });
});
