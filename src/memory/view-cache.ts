/** Slots in a view cache by default; a power of two. */
const SLOTS = 256;

/**
 * Remembers typed-array views of recently copied ranges of one buffer.
 *
 * Copying part of a typed array needs a view of the range (there is no
 * offset/length form of Uint8Array.prototype.set), and a view is a heap
 * object. A guest driver reuses the same buffers over and over (an ALSA
 * buffer's periods sit at fixed addresses), so caching views by range makes
 * the steady-state data path allocate nothing.
 */
export class ViewCache {
  private readonly offsets: Float64Array;
  private readonly lengths: Uint32Array;
  private readonly views: (Uint8Array | null)[];
  /** 32 - log2(slots): the hash's top bits pick the slot. */
  private readonly shift: number;

  /** `slots`: a power of two from 2 to 2^16 (fewer for a cache that sees few ranges, such as one window of RAM). */
  constructor(
    private readonly bytes: Uint8Array,
    slots = SLOTS,
  ) {
    this.offsets = new Float64Array(slots).fill(-1);
    this.lengths = new Uint32Array(slots);
    this.views = new Array<Uint8Array | null>(slots).fill(null);
    this.shift = 32 - Math.log2(slots);
  }

  /** A view of bytes[offset, offset + length); the caller has checked the range. */
  view(offset: number, length: number): Uint8Array {
    // Fibonacci hashing: buffers at large power-of-two strides must not share a slot.
    const slot = Math.imul((offset >>> 4) ^ Math.imul(length, 0x85ebca6b), 0x9e3779b1) >>> this.shift;
    if (this.offsets[slot] === offset && this.lengths[slot] === length) return this.views[slot]!;
    const v = this.bytes.subarray(offset, offset + length);
    this.offsets[slot] = offset;
    this.lengths[slot] = length;
    this.views[slot] = v;
    return v;
  }
}

/** Copies src[srcOffset, srcOffset + length) into dest at destOffset without a view when src is copied whole. */
export function copyInto(
  dest: Uint8Array,
  destOffset: number,
  src: Uint8Array,
  srcOffset: number,
  length: number,
): void {
  if (srcOffset === 0 && length === src.length) dest.set(src, destOffset);
  else dest.set(src.subarray(srcOffset, srcOffset + length), destOffset);
}
