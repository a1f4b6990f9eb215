/** A growable byte array: appends amortise to O(1) and the bytes stay contiguous. */
export class ByteBuffer {
  private buf: Uint8Array;
  length = 0;

  constructor(initialCapacity = 4096) {
    this.buf = new Uint8Array(Math.max(16, initialCapacity));
  }

  /** Makes room for `n` more bytes and returns the backing array (write at `length`, then commit). */
  reserve(n: number): Uint8Array {
    const need = this.length + n;
    if (need > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < need) cap *= 2;
      const next = new Uint8Array(cap);
      next.set(this.buf.subarray(0, this.length));
      this.buf = next;
    }
    return this.buf;
  }

  commit(n: number): void {
    this.length += n;
  }

  append(src: Uint8Array, offset = 0, length = src.length - offset): void {
    this.reserve(length).set(src.subarray(offset, offset + length), this.length);
    this.length += length;
  }

  /** The bytes written so far (a view, valid until the next append). */
  bytes(): Uint8Array {
    return this.buf.subarray(0, this.length);
  }

  clear(): void {
    this.length = 0;
  }
}
