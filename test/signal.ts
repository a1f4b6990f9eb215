/**
 * A deterministic, non-repeating test signal (xorshift32 from `seed`, one byte
 * of each step): every byte position is distinguishable, so a byte lost,
 * repeated or reordered shows.
 */
export function signal(bytes: number, seed = 1): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
