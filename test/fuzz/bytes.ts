/**
 * The fuzzer's two sources of choices: a seeded PRNG (which makes and mutates
 * inputs) and a reader that turns an input's bytes into the decisions a
 * target makes. A target decides only from its input, so an input replays
 * the same way every time, and a shorter input is a shorter run.
 */

/** xoshiro128** seeded through splitmix32: fast, and the same sequence for a seed on every platform. */
export class Prng {
  private a: number;
  private b: number;
  private c: number;
  private d: number;

  constructor(seed: number) {
    let s = seed >>> 0;
    const next = (): number => {
      s = (s + 0x9e3779b9) >>> 0;
      let z = s;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
      return (z ^ (z >>> 16)) >>> 0;
    };
    this.a = next();
    this.b = next();
    this.c = next();
    this.d = next() | 1;
  }

  u32(): number {
    const r = Math.imul(rotl(Math.imul(this.b, 5), 7), 9) >>> 0;
    const t = this.b << 9;
    this.c ^= this.a;
    this.d ^= this.b;
    this.b ^= this.c;
    this.a ^= this.d;
    this.c ^= t;
    this.d = rotl(this.d, 11);
    return r;
  }

  /** An integer in [0, n). */
  below(n: number): number {
    return n <= 1 ? 0 : Math.floor((this.u32() / 0x1_0000_0000) * n);
  }

  bytes(n: number): Uint8Array {
    const out = new Uint8Array(n);
    for (let i = 0; i < n; i++) out[i] = this.u32() & 0xff;
    return out;
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/**
 * Reads decisions from an input. Past its end every read is 0, so any byte
 * string is a valid input and the zero choice is always the plainest one
 * (which is what minimization pushes bytes towards).
 */
export class ByteReader {
  pos = 0;
  constructor(readonly bytes: Uint8Array) {}

  get done(): boolean {
    return this.pos >= this.bytes.length;
  }

  u8(): number {
    return this.pos < this.bytes.length ? this.bytes[this.pos++]! : (this.pos++, 0);
  }

  u16(): number {
    return this.u8() | (this.u8() << 8);
  }

  u32(): number {
    return (this.u16() | (this.u16() << 16)) >>> 0;
  }

  /** An integer in [0, n) from one byte (two when n > 256). */
  below(n: number): number {
    if (n <= 1) {
      this.u8();
      return 0;
    }
    return (n <= 256 ? this.u8() : this.u16()) % n;
  }

  bool(): boolean {
    return (this.u8() & 1) === 1;
  }

  /** True with probability about k/256 (0 reads as false). */
  chance(k: number): boolean {
    return this.u8() >= 256 - k;
  }

  pick<T>(items: readonly T[]): T {
    return items[this.below(items.length)]!;
  }
}

/**
 * An opcode table: `weights[i]` of 256 byte values select action i, so the
 * common actions stay common however the bytes come.
 */
export function opcodeTable(weights: readonly number[]): Uint8Array {
  const total = weights.reduce((a, b) => a + b, 0);
  const table = new Uint8Array(256);
  let at = 0;
  weights.forEach((w, i) => {
    const n = i === weights.length - 1 ? 256 - at : Math.round((w / total) * 256);
    table.fill(i, at, Math.min(256, at + n));
    at = Math.min(256, at + n);
  });
  return table;
}

export function toHex(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("hex");
}

export function fromHex(hex: string): Uint8Array {
  return new Uint8Array(Buffer.from(hex, "hex"));
}
