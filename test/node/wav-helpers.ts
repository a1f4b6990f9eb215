/**
 * Helpers for the Node tests: SoX as an independent WAV reader, a reference
 * decoder of integer samples (independent of src/audio/convert.ts), test
 * signals, temporary folders.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PCM_FORMAT_INFO } from "../../src/spec/constants.js";
import * as C from "../../src/spec/constants.js";

export function soxAvailable(): boolean {
  try {
    execFileSync("sox", ["--version"], { stdio: ["ignore", "pipe", "pipe"] });
    return true;
  } catch {
    return false;
  }
}

export function soxVersion(): string {
  return execFileSync("sox", ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] }).trim();
}

/** What `sox --i -<flag> FILE` prints, trimmed (r rate, c channels, s samples, b bits, e encoding, p precision). */
export function soxInfo(path: string, flag: "r" | "c" | "s" | "b" | "e" | "p" | "a"): string {
  return execFileSync("sox", ["--i", `-${flag}`, path], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
  }).trim();
}

/** Every sample of a file as SoX decodes it, as signed 32-bit integers: `sox -D FILE -t raw -e signed -b 32 -`. */
export function soxSamples32(path: string): Int32Array {
  const out = execFileSync("sox", ["-D", path, "-t", "raw", "-e", "signed-integer", "-b", "32", "-L", "-"], {
    stdio: ["ignore", "pipe", "pipe"],
    maxBuffer: 256 * 1024 * 1024,
  });
  const copy = new Uint8Array(out.length);
  copy.set(out);
  return new Int32Array(copy.buffer, 0, Math.floor(copy.length / 4));
}

/** Runs sox with `args` (to make reference files). */
export function sox(...args: string[]): void {
  execFileSync("sox", args, { stdio: ["ignore", "pipe", "pipe"] });
}

export function tempDir(prefix = "virtio-snd-"): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) };
}

export function readBytes(path: string): Uint8Array {
  const b = readFileSync(path);
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** A deterministic pseudo-random byte stream (xorshift32). */
export function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return x >>> 0;
  };
}

const INT_FORMATS = new Map<number, { signed: boolean }>([
  [C.VIRTIO_SND_PCM_FMT_S8, { signed: true }],
  [C.VIRTIO_SND_PCM_FMT_U8, { signed: false }],
  [C.VIRTIO_SND_PCM_FMT_S16, { signed: true }],
  [C.VIRTIO_SND_PCM_FMT_U16, { signed: false }],
  [C.VIRTIO_SND_PCM_FMT_S18_3, { signed: true }],
  [C.VIRTIO_SND_PCM_FMT_U18_3, { signed: false }],
  [C.VIRTIO_SND_PCM_FMT_S20_3, { signed: true }],
  [C.VIRTIO_SND_PCM_FMT_U20_3, { signed: false }],
  [C.VIRTIO_SND_PCM_FMT_S24_3, { signed: true }],
  [C.VIRTIO_SND_PCM_FMT_U24_3, { signed: false }],
  [C.VIRTIO_SND_PCM_FMT_S20, { signed: true }],
  [C.VIRTIO_SND_PCM_FMT_U20, { signed: false }],
  [C.VIRTIO_SND_PCM_FMT_S24, { signed: true }],
  [C.VIRTIO_SND_PCM_FMT_U24, { signed: false }],
  [C.VIRTIO_SND_PCM_FMT_S32, { signed: true }],
  [C.VIRTIO_SND_PCM_FMT_U32, { signed: false }],
]);

export function isIntFormat(format: number): boolean {
  return INT_FORMATS.has(format);
}

/** Sample i of integer `format` as a signed value of its bits (low bits of the container; the rest ignored). */
export function intSample(format: number, data: Uint8Array, i: number): number {
  const info = PCM_FORMAT_INFO[format]!;
  const width = info.physicalBits / 8;
  let u = 0;
  for (let b = width - 1; b >= 0; b--) u = u * 256 + data[i * width + b]!;
  const span = 2 ** info.bits;
  u %= span;
  const half = span / 2;
  if (INT_FORMATS.get(format)!.signed) return u >= half ? u - span : u;
  return u - half;
}

/** Sample i as SoX holds it: the value moved to the top of 32 bits. */
export function intSample32(format: number, data: Uint8Array, i: number): number {
  return intSample(format, data, i) * 2 ** (32 - PCM_FORMAT_INFO[format]!.bits);
}

/** Encodes signed value v (of the format's bits) as integer `format` would hold it (sign- or zero-extended). */
function putInt(format: number, out: Uint8Array, i: number, v: number): void {
  const info = PCM_FORMAT_INFO[format]!;
  const width = info.physicalBits / 8;
  const signed = INT_FORMATS.get(format)!.signed;
  let u = signed ? v : v + 2 ** (info.bits - 1);
  if (u < 0) u += 2 ** (8 * width);
  for (let b = 0; b < width; b++) {
    out[i * width + b] = u % 256;
    u = Math.floor(u / 256);
  }
}

/**
 * `frames` frames of test signal in `format`: the extremes, zero and -1 first,
 * then pseudo-random values. Integers are well-formed (sign- or zero-extended
 * in their container); floats lie in [-1, 1).
 */
export function testSignal(format: number, channels: number, frames: number, seed = 1): Uint8Array {
  const info = PCM_FORMAT_INFO[format]!;
  const n = frames * channels;
  const out = new Uint8Array((n * info.physicalBits) / 8);
  const rnd = prng(seed);
  if (isIntFormat(format)) {
    const half = 2 ** (info.bits - 1);
    const special = [-half, half - 1, 0, -1, 1];
    for (let i = 0; i < n; i++) {
      const r = (rnd() * 2 ** 21 + (rnd() >>> 11)) / 2 ** 53; // [0, 1)
      const v = i < special.length ? special[i]! : Math.floor(r * 2 * half) - half;
      putInt(format, out, i, v);
    }
  } else if (format === C.VIRTIO_SND_PCM_FMT_FLOAT || format === C.VIRTIO_SND_PCM_FMT_FLOAT64) {
    const dv = new DataView(out.buffer);
    const special = [-1, 0.5, 0, -0.25, 0.999];
    for (let i = 0; i < n; i++) {
      const v = i < special.length ? special[i]! : rnd() / 2 ** 31 - 1;
      if (format === C.VIRTIO_SND_PCM_FMT_FLOAT) dv.setFloat32(i * 4, v, true);
      else dv.setFloat64(i * 8, v, true);
    }
  } else {
    for (let i = 0; i < out.length; i++) out[i] = rnd() & 0xff;
  }
  return out;
}

/** Splits `data` into pieces of irregular sizes (to cut frames and samples in the middle). */
export function* pieces(
  data: Uint8Array,
  sizes: readonly number[] = [1, 7, 333, 2, 1024, 5, 4096],
): Generator<Uint8Array> {
  let off = 0;
  let k = 0;
  while (off < data.length) {
    const n = Math.min(sizes[k++ % sizes.length]!, data.length - off);
    yield data.subarray(off, off + n);
    off += n;
  }
}
