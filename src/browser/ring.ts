/**
 * A single-producer single-consumer ring of interleaved float32 frames in a
 * SharedArrayBuffer, between the page's main thread and an AudioWorklet. No
 * locks: each side owns one index and publishes it with Atomics.store after
 * touching the data, so the other side never sees a frame before it is written.
 *
 * Loaded by the worklet too (audioWorklet.addModule follows its import), so it
 * uses nothing but the language and SharedArrayBuffer/Atomics.
 */

/** Int32 slots of the header, before the frames. */
export const Slot = {
  /** Frames written, over the ring's life (wraps at 2^32; differences are taken | 0). */
  Write: 0,
  /** Frames read. */
  Read: 1,
  /** 1 while the stream runs: the worklet plays (output) or captures (input). */
  Active: 2,
  /** Output: 1 when the stream last had fewer bytes than asked (the guest ran dry). */
  Dry: 3,
  /** Output: frames of silence the worklet played while active, the ring empty and the guest not dry. */
  UnderrunFrames: 4,
  /** Output: times the worklet found the ring empty while active and not dry. Input: overruns. */
  Underruns: 5,
  /** Frames the worklet played from the ring or captured into it (wraps at 2^32). */
  Frames: 6,
  /** 1 once the voice is closed: the output worklet plays what is left, then ends. */
  Closing: 7,
  /** Output: frames of silence played while active because the guest ran dry. */
  StarvedFrames: 8,
  /** Input: frames captured that had no room in the ring (the page was too slow). */
  OverrunFrames: 9,
} as const;
export type Slot = (typeof Slot)[keyof typeof Slot];
const HEADER_INTS = 16;
const HEADER_BYTES = HEADER_INTS * 4;

export class FloatRing {
  readonly header: Int32Array;
  readonly data: Float32Array;
  readonly capacity: number;

  constructor(
    readonly buffer: SharedArrayBuffer,
    readonly channels: number,
  ) {
    this.header = new Int32Array(buffer, 0, HEADER_INTS);
    this.data = new Float32Array(buffer, HEADER_BYTES);
    this.capacity = Math.floor(this.data.length / channels);
  }

  static create(channels: number, capacityFrames: number): FloatRing {
    return new FloatRing(new SharedArrayBuffer(HEADER_BYTES + capacityFrames * channels * 4), channels);
  }

  get(slot: Slot): number {
    return Atomics.load(this.header, slot);
  }

  set(slot: Slot, value: number): void {
    Atomics.store(this.header, slot, value);
  }

  add(slot: Slot, value: number): void {
    Atomics.add(this.header, slot, value);
  }

  /** Frames written and not yet read. */
  available(): number {
    return (Atomics.load(this.header, Slot.Write) - Atomics.load(this.header, Slot.Read)) | 0;
  }

  space(): number {
    return this.capacity - this.available();
  }

  /** Producer: appends `frames` interleaved frames from src; returns how many fitted. */
  write(src: Float32Array, frames: number): number {
    const w = Atomics.load(this.header, Slot.Write);
    const n = Math.min(frames, this.capacity - ((w - Atomics.load(this.header, Slot.Read)) | 0));
    if (n <= 0) return 0;
    const ch = this.channels;
    const at = (w >>> 0) % this.capacity;
    const first = Math.min(n, this.capacity - at);
    this.data.set(src.subarray(0, first * ch), at * ch);
    if (n > first) this.data.set(src.subarray(first * ch, n * ch), 0);
    Atomics.store(this.header, Slot.Write, (w + n) | 0);
    return n;
  }

  /** Producer, from the worklet: appends `frames` frames of planar channels (absent channels are silence). */
  writePlanar(planes: readonly Float32Array[], frames: number): number {
    const w = Atomics.load(this.header, Slot.Write);
    const n = Math.min(frames, this.capacity - ((w - Atomics.load(this.header, Slot.Read)) | 0));
    const ch = this.channels;
    const data = this.data;
    let p = ((w >>> 0) % this.capacity) * ch;
    const end = this.capacity * ch;
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < ch; c++) data[p + c] = planes[c]?.[i] ?? 0;
      p += ch;
      if (p === end) p = 0;
    }
    if (n > 0) Atomics.store(this.header, Slot.Write, (w + n) | 0);
    return Math.max(0, n);
  }

  /** Consumer: moves up to `frames` interleaved frames into dest; returns how many. */
  read(dest: Float32Array, frames: number): number {
    const r = Atomics.load(this.header, Slot.Read);
    const n = Math.min(frames, (Atomics.load(this.header, Slot.Write) - r) | 0);
    if (n <= 0) return 0;
    const ch = this.channels;
    const at = (r >>> 0) % this.capacity;
    const first = Math.min(n, this.capacity - at);
    dest.set(this.data.subarray(at * ch, (at + first) * ch), 0);
    if (n > first) dest.set(this.data.subarray(0, (n - first) * ch), first * ch);
    Atomics.store(this.header, Slot.Read, (r + n) | 0);
    return n;
  }

  /** Consumer, from the worklet: moves up to `frames` frames into planar channels from dest offset 0. */
  readPlanar(planes: readonly Float32Array[], frames: number): number {
    const r = Atomics.load(this.header, Slot.Read);
    const n = Math.min(frames, (Atomics.load(this.header, Slot.Write) - r) | 0);
    if (n <= 0) return 0;
    const ch = this.channels;
    const data = this.data;
    let p = ((r >>> 0) % this.capacity) * ch;
    const end = this.capacity * ch;
    for (let i = 0; i < n; i++) {
      for (let c = 0; c < ch; c++) {
        const plane = planes[c];
        if (plane !== undefined) plane[i] = data[p + c]!;
      }
      p += ch;
      if (p === end) p = 0;
    }
    Atomics.store(this.header, Slot.Read, (r + n) | 0);
    return n;
  }
}
