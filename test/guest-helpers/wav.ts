/** Minimal RIFF/WAVE helpers for the guest tests (PCM S16_LE only). */

export interface Wav {
  rate: number;
  channels: number;
  bits: number;
  /** Interleaved samples. */
  samples: Int16Array;
  frames: number;
}

/** A 16-bit PCM WAV file holding a sine tone on every channel. */
export function sineWav(opts: {
  rate: number;
  channels: number;
  seconds: number;
  hz: number;
  amplitude?: number;
}) {
  const frames = Math.round(opts.rate * opts.seconds);
  const amp = (opts.amplitude ?? 0.5) * 32767;
  const dataBytes = frames * opts.channels * 2;
  const buf = Buffer.alloc(44 + dataBytes);
  buf.write("RIFF", 0, "ascii");
  buf.writeUInt32LE(36 + dataBytes, 4);
  buf.write("WAVE", 8, "ascii");
  buf.write("fmt ", 12, "ascii");
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20); // PCM
  buf.writeUInt16LE(opts.channels, 22);
  buf.writeUInt32LE(opts.rate, 24);
  buf.writeUInt32LE(opts.rate * opts.channels * 2, 28);
  buf.writeUInt16LE(opts.channels * 2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36, "ascii");
  buf.writeUInt32LE(dataBytes, 40);
  for (let i = 0; i < frames; i++) {
    const v = Math.round(amp * Math.sin((2 * Math.PI * opts.hz * i) / opts.rate));
    for (let c = 0; c < opts.channels; c++) buf.writeInt16LE(v, 44 + (i * opts.channels + c) * 2);
  }
  return new Uint8Array(buf.buffer, buf.byteOffset, buf.length);
}

/**
 * Parse a WAV file. A data chunk whose size field is 0 or too large (a writer
 * that was killed before fixing up the header) is taken to run to the end.
 */
export function parseWav(bytes: Uint8Array): Wav {
  const buf = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length);
  if (buf.length < 12 || buf.toString("ascii", 0, 4) !== "RIFF" || buf.toString("ascii", 8, 12) !== "WAVE") {
    throw new Error("not a RIFF/WAVE file");
  }
  let off = 12;
  let fmt: { channels: number; rate: number; bits: number; format: number } | undefined;
  while (off + 8 <= buf.length) {
    const id = buf.toString("ascii", off, off + 4);
    let size = buf.readUInt32LE(off + 4);
    const body = off + 8;
    if (id === "fmt ") {
      fmt = {
        format: buf.readUInt16LE(body),
        channels: buf.readUInt16LE(body + 2),
        rate: buf.readUInt32LE(body + 4),
        bits: buf.readUInt16LE(body + 14),
      };
    } else if (id === "data") {
      if (!fmt) throw new Error("data chunk before fmt chunk");
      if (fmt.format !== 1 || fmt.bits !== 16)
        throw new Error(`unsupported WAV format ${fmt.format}/${fmt.bits}`);
      if (size === 0 || body + size > buf.length) size = buf.length - body;
      const frameBytes = fmt.channels * 2;
      const frames = Math.floor(size / frameBytes);
      const samples = new Int16Array(frames * fmt.channels);
      for (let i = 0; i < samples.length; i++) samples[i] = buf.readInt16LE(body + i * 2);
      return { rate: fmt.rate, channels: fmt.channels, bits: fmt.bits, samples, frames };
    }
    off = body + size + (size & 1);
  }
  throw new Error("no data chunk");
}

/** Root mean square of one channel (0..32768). */
export function rms(w: Wav, channel = 0): number {
  let sum = 0;
  for (let i = 0; i < w.frames; i++) sum += (w.samples[i * w.channels + channel] ?? 0) ** 2;
  return w.frames ? Math.sqrt(sum / w.frames) : 0;
}

/** Frequency estimate from rising zero crossings of one channel, over the non-silent frames. */
export function dominantHz(w: Wav, channel = 0): number {
  let crossings = 0;
  let first = -1;
  let last = -1;
  for (let i = 1; i < w.frames; i++) {
    const a = w.samples[(i - 1) * w.channels + channel] ?? 0;
    const b = w.samples[i * w.channels + channel] ?? 0;
    if (a < 0 && b >= 0) {
      if (first < 0) first = i;
      else crossings++;
      last = i;
    }
  }
  return last > first ? (crossings * w.rate) / (last - first) : 0;
}
