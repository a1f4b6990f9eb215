import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { aLawToLinear, muLawToLinear } from "../../src/audio/convert.js";
import { VirtioSndError } from "../../src/errors.js";
import {
  NODE_FILE_SYSTEM,
  PCM_FORMAT_NAMES,
  WAVE_FORMAT_EXTENSIBLE,
  WAVE_FORMAT_IEEE_FLOAT,
  WAVE_FORMAT_PCM,
  type WavFileSystem,
  WavWriter,
  defaultChannelMask,
  parseWav,
  pcmFormatName,
  readWav,
  wavLayoutFor,
} from "../../src/node/wav.js";
import * as C from "../../src/spec/constants.js";
import {
  intSample32,
  isIntFormat,
  pieces,
  readBytes,
  sox,
  soxAvailable,
  soxInfo,
  soxSamples32,
  soxVersion,
  tempDir,
  testSignal,
} from "./wav-helpers.js";
import { missing } from "../guest-helpers/required-parts.js";

const HAVE_SOX = soxAvailable();
const noSox = missing("sox", HAVE_SOX ? null : "sox is not installed");
if (!HAVE_SOX && process.env.CI) throw new Error("sox is required on CI (apt-get install -y sox)");

let tmp: ReturnType<typeof tempDir>;
beforeAll(() => {
  tmp = tempDir("wav-test-");
});
afterAll(() => tmp.remove());

const WRITABLE = PCM_FORMAT_NAMES.map((_, f) => f).filter((f) => wavLayoutFor(f) !== null);

/** What SoX says about each file format: `sox --i -e` and `-b`. */
const SOX_ENCODING: Record<number, [string, number]> = {
  [C.VIRTIO_SND_PCM_FMT_U8]: ["Unsigned Integer PCM", 8],
  [C.VIRTIO_SND_PCM_FMT_S16]: ["Signed Integer PCM", 16],
  [C.VIRTIO_SND_PCM_FMT_S24_3]: ["Signed Integer PCM", 24],
  [C.VIRTIO_SND_PCM_FMT_S32]: ["Signed Integer PCM", 32],
  [C.VIRTIO_SND_PCM_FMT_FLOAT]: ["Floating Point PCM", 32],
  [C.VIRTIO_SND_PCM_FMT_FLOAT64]: ["Floating Point PCM", 64],
  [C.VIRTIO_SND_PCM_FMT_A_LAW]: ["A-law", 8],
  [C.VIRTIO_SND_PCM_FMT_MU_LAW]: ["u-law", 8],
};

/** The value SoX should decode sample i of `input` to (32-bit, full scale = 2^31). */
function expected32(format: number, input: Uint8Array, i: number): number {
  if (isIntFormat(format)) return intSample32(format, input, i);
  const dv = new DataView(input.buffer, input.byteOffset, input.byteLength);
  if (format === C.VIRTIO_SND_PCM_FMT_FLOAT)
    return Math.min(2 ** 31 - 1, dv.getFloat32(i * 4, true) * 2 ** 31);
  if (format === C.VIRTIO_SND_PCM_FMT_FLOAT64)
    return Math.min(2 ** 31 - 1, dv.getFloat64(i * 8, true) * 2 ** 31);
  if (format === C.VIRTIO_SND_PCM_FMT_MU_LAW) return muLawToLinear(input[i]!) * 65536;
  return aLawToLinear(input[i]!) * 65536;
}

const FRAMES = 1001; // odd: U8 mono makes an odd data chunk, which must be padded
const RATES = [8000, 44100, 48000, 96000, 192000];

describe.each(WRITABLE.map((f) => [pcmFormatName(f), f] as const))("WAV writer: %s", (name, format) => {
  const l = wavLayoutFor(format)!;
  it.each([1, 2, 6, 8])(`%i channel(s): exact samples, read back by readWav and by SoX`, (channels) => {
    const rate = RATES[(format + channels) % RATES.length]!;
    const path = join(tmp.path, `${name}-${channels}.wav`);
    const input = testSignal(format, channels, FRAMES, format * 10 + channels);
    const w = new WavWriter(path, { format, channels, rate });
    for (const p of pieces(input)) w.write(p);
    w.close();
    expect(w.frames).toBe(FRAMES);

    // Our reader.
    const wav = readWav(path);
    expect(wav.format).toBe(l.fileFormat);
    expect(wav.channels).toBe(channels);
    expect(wav.rate).toBe(rate);
    expect(wav.frames).toBe(FRAMES);
    expect(wav.validBits).toBe(l.containerBits);
    const intPcm = l.tag === WAVE_FORMAT_PCM && l.containerBits > 16;
    expect(wav.formatTag).toBe(channels > 2 || intPcm ? WAVE_FORMAT_EXTENSIBLE : l.tag);
    if (wav.formatTag === WAVE_FORMAT_EXTENSIBLE) expect(wav.channelMask).toBe(defaultChannelMask(channels));
    expect(wav.comment).toBe(l.converted ? `converted from ${name}` : null);
    if (!l.converted) {
      expect(Buffer.from(wav.data).equals(Buffer.from(input))).toBe(true);
    } else {
      for (let i = 0; i < FRAMES * channels; i++)
        if (intSample32(l.fileFormat, wav.data, i) !== intSample32(format, input, i))
          expect.fail(
            `sample ${i}: ${intSample32(l.fileFormat, wav.data, i)} != ${intSample32(format, input, i)}`,
          );
    }
    // The file: RIFF size matches, even length.
    const file = readBytes(path);
    expect(file.length % 2).toBe(0);
    expect(new DataView(file.buffer, file.byteOffset).getUint32(4, true)).toBe(file.length - 8);

    if (!HAVE_SOX) return;
    // SoX: sox --i -r -c -s -e -b, then every sample through sox -t raw -e signed -b 32.
    expect(soxInfo(path, "r")).toBe(String(rate));
    expect(soxInfo(path, "c")).toBe(String(channels));
    expect(soxInfo(path, "s")).toBe(String(FRAMES));
    const [encoding, bits] = SOX_ENCODING[l.fileFormat]!;
    expect(soxInfo(path, "e")).toBe(encoding);
    expect(soxInfo(path, "b")).toBe(String(bits));
    const s = soxSamples32(path);
    expect(s.length).toBe(FRAMES * channels);
    const float = format === C.VIRTIO_SND_PCM_FMT_FLOAT || format === C.VIRTIO_SND_PCM_FMT_FLOAT64;
    for (let i = 0; i < s.length; i++) {
      const want = expected32(format, input, i);
      const ok = float ? Math.abs(s[i]! - want) <= 1 : s[i] === want;
      if (!ok) expect.fail(`sample ${i}: sox ${s[i]}, expected ${want}`);
    }
  });
});

describe("WAV writer", () => {
  it("keeps a valid header after every write: a writer that never closes leaves a readable file", () => {
    const path = join(tmp.path, "unclosed.wav");
    const input = testSignal(C.VIRTIO_SND_PCM_FMT_S16, 2, 4800, 3);
    const w = new WavWriter(path, { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000 });
    // At open: a header for 0 data bytes.
    let wav = readWav(path);
    expect(wav.frames).toBe(0);
    expect(readBytes(path).length).toBe(44);
    if (HAVE_SOX) expect(soxInfo(path, "s")).toBe("0");
    let written = 0;
    for (const p of pieces(input, [1920, 7, 3, 999])) {
      w.write(p);
      written += p.length;
      const file = readBytes(path);
      const dv = new DataView(file.buffer, file.byteOffset);
      expect(dv.getUint32(4, true)).toBe(36 + written);
      expect(dv.getUint32(40, true)).toBe(written);
      expect(file.length).toBe(44 + written);
    }
    // Not closed: what a killed process leaves.
    wav = readWav(path);
    expect(Buffer.from(wav.data).equals(Buffer.from(input))).toBe(true);
    if (HAVE_SOX) {
      expect(soxInfo(path, "s")).toBe("4800");
      const s = soxSamples32(path);
      for (let i = 0; i < s.length; i++) expect(s[i]).toBe(intSample32(C.VIRTIO_SND_PCM_FMT_S16, input, i));
    }
    w.abandon();
    expect(w.closed).toBe(true);
    expect(() => w.write(input)).toThrow(VirtioSndError);
    w.close(); // idempotent
  });

  it("leaves a readable file when its process is killed (SIGKILL) between writes", () => {
    const path = join(tmp.path, "killed.wav");
    const script = join(import.meta.dirname, "fixtures", "killed-writer.ts");
    const r = spawnSync(process.execPath, ["--import", "tsx", script, path], {
      encoding: "utf8",
      timeout: 60_000,
    });
    expect(r.signal, r.stderr).toBe("SIGKILL");
    const wav = readWav(path);
    // The fixture writes 1000 and 1001 frames of S16 stereo (the second a byte short), then kills itself.
    expect(wav.frames).toBe(2000);
    expect(wav.data[0]).toBe(3);
    expect(wav.data[wav.data.length - 1]).toBe(5);
    if (HAVE_SOX) {
      expect(soxInfo(path, "s")).toBe("2000");
      expect(soxSamples32(path).length).toBe(4000);
    }
  });

  it("pads an odd data chunk at close, and counts the pad in the RIFF size only", () => {
    const path = join(tmp.path, "odd.wav");
    const w = new WavWriter(path, { format: C.VIRTIO_SND_PCM_FMT_U8, channels: 1, rate: 8000 });
    w.write(new Uint8Array([1, 2, 3]));
    let file = readBytes(path);
    expect(file.length).toBe(47); // unpadded while open: the header never claims bytes that are not there
    expect(new DataView(file.buffer, file.byteOffset).getUint32(4, true)).toBe(39);
    w.close();
    file = readBytes(path);
    const dv = new DataView(file.buffer, file.byteOffset);
    expect(file.length).toBe(48);
    expect(dv.getUint32(4, true)).toBe(40);
    expect(dv.getUint32(40, true)).toBe(3);
    expect(file[47]).toBe(0);
    expect([...readWav(path).data]).toEqual([1, 2, 3]);
    if (HAVE_SOX) expect(soxInfo(path, "s")).toBe("3");
  });

  it("writes the guest's bytes as they come, partial frames included, when no conversion is needed", () => {
    const path = join(tmp.path, "partial.wav");
    const w = new WavWriter(path, { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 8000 });
    w.write(new Uint8Array([1, 2, 3, 4, 5]));
    expect(w.dataLength).toBe(5);
    expect(w.frames).toBe(1);
    w.close();
    const wav = readWav(path);
    expect(wav.frames).toBe(1); // the reader hands out whole frames
    expect([...wav.data]).toEqual([1, 2, 3, 4]);
  });

  it("converts a format WAV cannot hold exactly, holding partial frames until they are whole", () => {
    // S8 -> U8: each value + 128, whatever the chunking.
    const path = join(tmp.path, "s8.wav");
    const w = new WavWriter(path, { format: C.VIRTIO_SND_PCM_FMT_S8, channels: 2, rate: 8000 });
    w.write(new Uint8Array([0x80])); // half a frame: held
    expect(w.dataLength).toBe(0);
    w.write(new Uint8Array([0x7f, 0x00, 0xff, 0x01])); // completes it, one more frame, half a frame held
    expect(w.dataLength).toBe(4);
    w.close(); // the held half frame is dropped
    const wav = readWav(path);
    expect(wav.format).toBe(C.VIRTIO_SND_PCM_FMT_U8);
    expect([...wav.data]).toEqual([0x00, 0xff, 0x80, 0x7f]);
    expect(wav.comment).toBe("converted from S8");
  });

  it("declares 20 and 18 valid bits on request (exactValidBits), which readWav reports", () => {
    for (const [format, bits] of [
      [C.VIRTIO_SND_PCM_FMT_S20, 20],
      [C.VIRTIO_SND_PCM_FMT_U18_3, 18],
      [C.VIRTIO_SND_PCM_FMT_S24, 24],
    ] as const) {
      const path = join(tmp.path, `exact-${format}.wav`);
      const input = testSignal(format, 2, 100, 9);
      const w = new WavWriter(path, { format, channels: 2, rate: 48000 }, { exactValidBits: true });
      expect(w.validBits).toBe(bits);
      w.write(input);
      w.close();
      const wav = readWav(path);
      expect(wav.validBits).toBe(bits);
      expect(wav.format).toBe(C.VIRTIO_SND_PCM_FMT_S24_3);
      expect(wav.formatTag).toBe(WAVE_FORMAT_EXTENSIBLE);
      for (let i = 0; i < 200; i++)
        expect(intSample32(wav.format, wav.data, i)).toBe(intSample32(format, input, i));
      // The value lives in the high bits: the low 24 - bits bits are zero.
      for (let i = 0; i < 200; i++) expect(wav.data[i * 3]! & ((1 << (24 - bits)) - 1)).toBe(0);
    }
  });

  it("uses WAVE_FORMAT_IEEE_FLOAT (18-byte fmt, fact chunk) for mono and stereo float", () => {
    const path = join(tmp.path, "float.wav");
    const w = new WavWriter(path, { format: C.VIRTIO_SND_PCM_FMT_FLOAT, channels: 2, rate: 48000 });
    w.write(testSignal(C.VIRTIO_SND_PCM_FMT_FLOAT, 2, 10));
    const file = readBytes(path);
    const dv = new DataView(file.buffer, file.byteOffset);
    expect(String.fromCharCode(...file.subarray(12, 16))).toBe("fmt ");
    expect(dv.getUint32(16, true)).toBe(18);
    expect(dv.getUint16(20, true)).toBe(WAVE_FORMAT_IEEE_FLOAT);
    expect(String.fromCharCode(...file.subarray(38, 42))).toBe("fact");
    expect(dv.getUint32(46, true)).toBe(10); // frames so far
    w.close();
  });

  it("writes a custom channel mask and comment", () => {
    const path = join(tmp.path, "mask.wav");
    const w = new WavWriter(
      path,
      { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 3, rate: 8000 },
      { channelMask: 0x10b, comment: "hello" },
    );
    w.close();
    const wav = readWav(path);
    expect(wav.channelMask).toBe(0x10b);
    expect(wav.comment).toBe("hello");
    expect(defaultChannelMask(9)).toBe(0);
  });

  it("refuses formats it cannot hold and bad parameters", () => {
    const p = join(tmp.path, "never.wav");
    for (const format of [
      C.VIRTIO_SND_PCM_FMT_IMA_ADPCM,
      C.VIRTIO_SND_PCM_FMT_DSD_U8,
      C.VIRTIO_SND_PCM_FMT_DSD_U16,
      C.VIRTIO_SND_PCM_FMT_DSD_U32,
      C.VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME,
    ]) {
      expect(wavLayoutFor(format)).toBeNull();
      expect(() => new WavWriter(p, { format, channels: 2, rate: 48000 })).toThrow(/cannot hold/);
    }
    expect(() => new WavWriter(p, { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 0, rate: 48000 })).toThrow(
      /channels/,
    );
    expect(() => new WavWriter(p, { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 0 })).toThrow(
      /rate/,
    );
    expect(
      () => new WavWriter(p, { format: C.VIRTIO_SND_PCM_FMT_FLOAT64, channels: 9000, rate: 8000 }),
    ).toThrow(/65535 bytes/);
  });

  it("does not replace a file when told not to", () => {
    const path = join(tmp.path, "exists.wav");
    writeFileSync(path, "keep");
    expect(
      () =>
        new WavWriter(
          path,
          { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 1, rate: 8000 },
          { overwrite: false },
        ),
    ).toThrow(expect.objectContaining({ code: "EEXIST" }));
    expect(readFileSync(path, "utf8")).toBe("keep");
  });

  it("stops at the 4 GiB RIFF limit with ERR_BACKEND", () => {
    // A file system that writes nothing: only the sizes matter.
    const fake: WavFileSystem = {
      openSync: () => 99,
      writeSync: (_fd, _b, _o, length) => length,
      closeSync: () => undefined,
      readFileSync: () => new Uint8Array(0),
    };
    const w = new WavWriter(
      "fake.wav",
      { format: C.VIRTIO_SND_PCM_FMT_U8, channels: 2, rate: 8000 },
      { fs: fake },
    );
    const block = new Uint8Array(16 * 1024 * 1024);
    for (let i = 0; i < 255; i++) w.write(block);
    expect(w.dataLength).toBe(255 * block.length);
    expect(() => w.write(block)).toThrow(expect.objectContaining({ code: "ERR_BACKEND" }));
    w.write(block.subarray(0, 2 ** 32 - 2 - 36 - 255 * block.length)); // fills it exactly (even length)
    expect(() => w.write(block.subarray(0, 2))).toThrow(/4 GiB/);
    w.close();
  });

  it("records what reached the disk when a write fails part way, then reports the error", () => {
    let budget = 44 + 1000; // header + 1000 data bytes, then ENOSPC
    const failing: WavFileSystem = {
      ...NODE_FILE_SYSTEM,
      writeSync(fd, buffer, offset, length, position) {
        if (position === 0) return NODE_FILE_SYSTEM.writeSync(fd, buffer, offset, length, position);
        const room = Math.max(0, budget - position);
        if (room === 0) throw Object.assign(new Error("ENOSPC: no space left on device"), { code: "ENOSPC" });
        return NODE_FILE_SYSTEM.writeSync(fd, buffer, offset, Math.min(room, length), position);
      },
    };
    const path = join(tmp.path, "enospc.wav");
    const w = new WavWriter(
      path,
      { format: C.VIRTIO_SND_PCM_FMT_S16, channels: 1, rate: 8000 },
      { fs: failing },
    );
    w.write(new Uint8Array(600).fill(1));
    expect(() => w.write(new Uint8Array(600).fill(2))).toThrow(/ENOSPC/);
    expect(w.dataLength).toBe(1000);
    w.abandon();
    const wav = readWav(path);
    expect(wav.frames).toBe(500);
    budget = Infinity;
  });
});

// ---- the reader ------------------------------------------------------------------

function chunk(id: string, body: Uint8Array | number[]): Uint8Array {
  const b = body instanceof Uint8Array ? body : Uint8Array.from(body);
  const out = new Uint8Array(8 + b.length + (b.length % 2));
  out.set([...id].map((c) => c.charCodeAt(0)));
  new DataView(out.buffer).setUint32(4, b.length, true);
  out.set(b, 8);
  return out;
}

function fmt16(tag: number, channels: number, rate: number, blockAlign: number, bits: number): Uint8Array {
  const b = new Uint8Array(16);
  const v = new DataView(b.buffer);
  v.setUint16(0, tag, true);
  v.setUint16(2, channels, true);
  v.setUint32(4, rate, true);
  v.setUint32(8, rate * blockAlign, true);
  v.setUint16(12, blockAlign, true);
  v.setUint16(14, bits, true);
  return b;
}

function riff(...chunks: Uint8Array[]): Uint8Array {
  const size = 4 + chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(8 + size);
  out.set([..."RIFF"].map((c) => c.charCodeAt(0)));
  new DataView(out.buffer).setUint32(4, size, true);
  out.set(
    [..."WAVE"].map((c) => c.charCodeAt(0)),
    8,
  );
  let o = 12;
  for (const c of chunks) {
    out.set(c, o);
    o += c.length;
  }
  return out;
}

function expectInvalid(bytes: Uint8Array, message: RegExp): void {
  try {
    parseWav(bytes, "t.wav");
  } catch (err) {
    expect(err).toBeInstanceOf(VirtioSndError);
    expect((err as VirtioSndError).code).toBe("ERR_INVALID_CONFIG");
    expect((err as Error).message).toMatch(/^t\.wav: not a usable WAV file: /);
    expect((err as Error).message).toMatch(message);
    return;
  }
  expect.fail("parseWav accepted an invalid file");
}

describe("WAV reader", () => {
  const pcm = fmt16(WAVE_FORMAT_PCM, 2, 8000, 4, 16);
  const samples = Uint8Array.from({ length: 16 }, (_, i) => i + 1);

  it("skips unknown chunks, honours pad bytes and finds fmt after data", () => {
    const wav = parseWav(
      riff(chunk("JUNK", [1, 2, 3]), chunk("fmt ", pcm), chunk("odd!", [9]), chunk("data", samples)),
    );
    expect(wav.format).toBe(C.VIRTIO_SND_PCM_FMT_S16);
    expect(wav.channels).toBe(2);
    expect(wav.rate).toBe(8000);
    expect(wav.frames).toBe(4);
    expect([...wav.data]).toEqual([...samples]);
    const late = parseWav(
      riff(
        chunk("data", samples),
        chunk("LIST", [..."INFOICMT"].map((c) => c.charCodeAt(0)).concat([3, 0, 0, 0, 104, 105, 0, 0])),
        chunk("fmt ", pcm),
      ),
    );
    expect(late.frames).toBe(4);
    expect(late.comment).toBe("hi");
  });

  it("copes with a writer that forgot a pad byte", () => {
    const junk = chunk("JUNK", [1, 2, 3]).subarray(0, 11); // no pad byte
    const bytes = riff(junk, chunk("fmt ", pcm), chunk("data", samples));
    expect(parseWav(bytes).frames).toBe(4);
  });

  it("takes a data chunk that claims more than the file holds up to the end, in whole frames", () => {
    const bytes = riff(chunk("fmt ", pcm), chunk("data", samples)).subarray(0, 44 + 10);
    const dv = new DataView(bytes.buffer, bytes.byteOffset);
    dv.setUint32(40, 0xffff_ffff, true); // a streaming writer's "unknown length"
    dv.setUint32(4, 0, true);
    const wav = parseWav(bytes);
    expect(wav.frames).toBe(2);
    expect([...wav.data]).toEqual([...samples.subarray(0, 8)]);
  });

  it("reads 8-bit, 24-bit in a plain PCM header, A-law and µ-law, and fewer valid bits than the container", () => {
    expect(parseWav(riff(chunk("fmt ", fmt16(1, 1, 8000, 1, 8)), chunk("data", [1]))).format).toBe(
      C.VIRTIO_SND_PCM_FMT_U8,
    );
    expect(parseWav(riff(chunk("fmt ", fmt16(1, 1, 8000, 3, 24)), chunk("data", [1, 2, 3]))).format).toBe(
      C.VIRTIO_SND_PCM_FMT_S24_3,
    );
    expect(parseWav(riff(chunk("fmt ", fmt16(6, 1, 8000, 1, 8)), chunk("data", [1]))).format).toBe(
      C.VIRTIO_SND_PCM_FMT_A_LAW,
    );
    expect(parseWav(riff(chunk("fmt ", fmt16(7, 1, 8000, 1, 8)), chunk("data", [1]))).format).toBe(
      C.VIRTIO_SND_PCM_FMT_MU_LAW,
    );
    const twelve = parseWav(riff(chunk("fmt ", fmt16(1, 1, 8000, 2, 12)), chunk("data", [0x10, 0x20])));
    expect(twelve.format).toBe(C.VIRTIO_SND_PCM_FMT_S16);
    expect(twelve.validBits).toBe(12);
  });

  it("rejects what it cannot read with ERR_INVALID_CONFIG and a reason", () => {
    expectInvalid(new Uint8Array(4), /shorter than a RIFF header/);
    expectInvalid(new TextEncoder().encode("RIFX\0\0\0\0WAVE"), /RIFX/);
    expectInvalid(new TextEncoder().encode("RIFF\0\0\0\0AVI "), /signature/);
    expectInvalid(riff(chunk("data", samples)), /no fmt chunk/);
    expectInvalid(riff(chunk("fmt ", pcm)), /no data chunk/);
    expectInvalid(riff(chunk("fmt ", pcm.subarray(0, 14)), chunk("data", samples)), /too short/);
    expectInvalid(riff(chunk("fmt ", fmt16(2, 2, 8000, 4, 16)), chunk("data", samples)), /format tag 0x0002/);
    expectInvalid(riff(chunk("fmt ", fmt16(1, 0, 8000, 4, 16)), chunk("data", samples)), /0 channels/);
    expectInvalid(riff(chunk("fmt ", fmt16(1, 2, 0, 4, 16)), chunk("data", samples)), /rate of 0/);
    expectInvalid(riff(chunk("fmt ", fmt16(1, 2, 8000, 3, 16)), chunk("data", samples)), /block align/);
    expectInvalid(
      riff(chunk("fmt ", fmt16(1, 1, 8000, 2, 24)), chunk("data", samples)),
      /24 bits per sample in 16/,
    );
    expectInvalid(riff(chunk("fmt ", fmt16(1, 1, 8000, 8, 64)), chunk("data", samples)), /64-bit PCM/);
    expectInvalid(riff(chunk("fmt ", fmt16(3, 1, 8000, 2, 16)), chunk("data", samples)), /16-bit IEEE float/);
    expectInvalid(riff(chunk("fmt ", fmt16(7, 1, 8000, 2, 16)), chunk("data", samples)), /G\.711/);
    expectInvalid(
      riff(chunk("fmt ", fmt16(WAVE_FORMAT_EXTENSIBLE, 1, 8000, 2, 16)), chunk("data", samples)),
      /EXTENSIBLE/,
    );
    const ext = new Uint8Array(40);
    ext.set(fmt16(WAVE_FORMAT_EXTENSIBLE, 1, 8000, 2, 16));
    new DataView(ext.buffer).setUint16(16, 22, true);
    new DataView(ext.buffer).setUint16(24, 1, true); // SubFormat PCM, but the rest of the GUID is wrong
    expectInvalid(riff(chunk("fmt ", ext), chunk("data", samples)), /GUID/);
  });

  it("reports a missing file as ERR_INVALID_CONFIG", () => {
    expect(() => readWav(join(tmp.path, "no-such.wav"))).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_CONFIG", message: expect.stringMatching(/cannot read/) }),
    );
  });

  it.skipIf(noSox)("reads what SoX writes, sample for sample", () => {
    const cases: [string[], number][] = [
      [["-e", "unsigned-integer", "-b", "8"], C.VIRTIO_SND_PCM_FMT_U8],
      [["-e", "signed-integer", "-b", "16"], C.VIRTIO_SND_PCM_FMT_S16],
      [["-e", "signed-integer", "-b", "24"], C.VIRTIO_SND_PCM_FMT_S24_3],
      [["-e", "signed-integer", "-b", "32"], C.VIRTIO_SND_PCM_FMT_S32],
      [["-e", "floating-point", "-b", "32"], C.VIRTIO_SND_PCM_FMT_FLOAT],
      [["-e", "floating-point", "-b", "64"], C.VIRTIO_SND_PCM_FMT_FLOAT64],
      [["-e", "a-law"], C.VIRTIO_SND_PCM_FMT_A_LAW],
      [["-e", "u-law"], C.VIRTIO_SND_PCM_FMT_MU_LAW],
    ];
    for (const [args, format] of cases) {
      for (const channels of [1, 2, 3]) {
        const path = join(tmp.path, `sox-${format}-${channels}.wav`);
        sox(
          "-D",
          "-n",
          "-r",
          "22050",
          "-c",
          String(channels),
          ...args,
          path,
          "synth",
          "0.05",
          "sine",
          "300-3000",
          "gain",
          "-3",
        );
        const wav = readWav(path);
        expect(wav.format).toBe(format);
        expect(wav.channels).toBe(channels);
        expect(wav.rate).toBe(22050);
        expect(wav.frames).toBe(Number(soxInfo(path, "s")));
        const s = soxSamples32(path);
        expect(s.length).toBe(wav.frames * channels);
        for (let i = 0; i < s.length; i++) {
          const want = expected32(format, wav.data, i);
          if (Math.abs(s[i]! - want) > (isIntFormat(format) ? 0 : 1))
            expect.fail(`${args}: sample ${i}: ${s[i]} vs ${want}`);
        }
      }
    }
  });
});

it.runIf(HAVE_SOX)("SoX is there (version for the record)", () => {
  expect(soxVersion()).toMatch(/SoX v\d+\.\d+/);
});
