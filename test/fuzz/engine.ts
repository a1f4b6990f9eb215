/**
 * The fuzzing engine: makes inputs from a seeded PRNG, keeps the ones that
 * showed a behaviour not seen before (the targets report small integers for
 * what they saw: statuses, stream events, faults; no code coverage), mutates
 * those, and minimizes an input that breaks an invariant.
 */
import { createHash } from "node:crypto";
import { type Prng, toHex } from "./bytes.js";

export interface Failure {
  /** Which promise broke: "exception", "outside-memory", "used-entry", "lost-interrupt", ... */
  readonly invariant: string;
  readonly message: string;
}

export interface FuzzTarget {
  readonly name: string;
  /**
   * Runs one input on fresh state and returns the first invariant it broke,
   * or null. `note` receives behaviour features (any integers).
   */
  run(input: Uint8Array, note?: (feature: number) => void): Failure | null;
}

/** Longer inputs find little more than short ones and cost more: a few dozen actions reach most states. */
const MAX_INPUT = 512;
const MAX_CORPUS = 4096;
const FEATURE_BITS = 1 << 20;

/** What the targets treat as "interesting" bytes: edges of the fields they read. */
const INTERESTING = [0, 1, 2, 3, 4, 7, 8, 15, 16, 31, 32, 63, 64, 127, 128, 254, 255];

export class Fuzzer {
  readonly corpus: Uint8Array[] = [];
  private readonly seen = new Uint8Array(FEATURE_BITS);
  private fresh = false;
  private readonly noteFn = (f: number): void => {
    const h = (Math.imul(f | 0, 0x9e3779b1) >>> 12) & (FEATURE_BITS - 1);
    if (this.seen[h] === 0) {
      this.seen[h] = 1;
      this.fresh = true;
    }
  };
  inputs = 0;

  constructor(
    readonly target: FuzzTarget,
    private readonly rng: Prng,
  ) {}

  /** The next input: new random bytes, or a mutation of a kept one. */
  next(): Uint8Array {
    if (this.corpus.length === 0 || this.rng.below(4) === 0) return this.generate();
    return this.mutate(this.corpus[this.rng.below(this.corpus.length)]!);
  }

  /** Runs one input, keeping it when it showed something new. */
  runOne(input: Uint8Array): Failure | null {
    this.fresh = false;
    const failure = this.target.run(input, this.noteFn);
    this.inputs++;
    if (this.fresh && failure === null) {
      if (this.corpus.length < MAX_CORPUS) this.corpus.push(input);
      else this.corpus[this.rng.below(MAX_CORPUS)] = input;
    }
    return failure;
  }

  private generate(): Uint8Array {
    const n = 8 + this.rng.below(this.rng.below(8) === 0 ? MAX_INPUT - 8 : 160);
    return this.rng.bytes(n);
  }

  private mutate(src: Uint8Array): Uint8Array {
    let b = Array.from(src);
    const rounds = 1 + this.rng.below(4);
    for (let r = 0; r < rounds; r++) {
      const at = this.rng.below(b.length + 1);
      switch (this.rng.below(8)) {
        case 0:
          if (b.length > 0) b[at % b.length]! ^= 1 << this.rng.below(8);
          break;
        case 1:
          if (b.length > 0) b[at % b.length] = INTERESTING[this.rng.below(INTERESTING.length)]!;
          break;
        case 2:
          if (b.length > 0) b[at % b.length] = this.rng.below(256);
          break;
        case 3: {
          const n = 1 + this.rng.below(Math.min(64, b.length + 1));
          b.splice(at, n);
          break;
        }
        case 4: {
          const n = 1 + this.rng.below(32);
          b.splice(at, 0, ...this.rng.bytes(n));
          break;
        }
        case 5: {
          // Repeat a stretch: the same actions again, as a driver in a loop would.
          if (b.length === 0) break;
          const start = this.rng.below(b.length);
          const n = 1 + this.rng.below(Math.min(64, b.length - start));
          b.splice(at, 0, ...b.slice(start, start + n));
          break;
        }
        case 6: {
          // Splice in part of another kept input.
          const other = this.corpus[this.rng.below(this.corpus.length)];
          if (other === undefined || other.length === 0) break;
          const start = this.rng.below(other.length);
          const n = 1 + this.rng.below(Math.min(128, other.length - start));
          b.splice(at, 0, ...other.subarray(start, start + n));
          break;
        }
        default: {
          // Crossover: this input's head, another's tail.
          const other = this.corpus[this.rng.below(this.corpus.length)];
          if (other === undefined) break;
          b = b.slice(0, at).concat(Array.from(other.subarray(this.rng.below(other.length + 1))));
          break;
        }
      }
    }
    if (b.length > MAX_INPUT) b.length = MAX_INPUT;
    return Uint8Array.from(b);
  }
}

/**
 * Delta debugging: drops chunks of the input, halving the chunk size, then
 * lowers single bytes (to 0, then halves), keeping every change under which
 * the same invariant still fails. Bounded in time: a big input is still
 * smaller than it was when the budget runs out.
 */
export function minimize(
  target: FuzzTarget,
  input: Uint8Array,
  invariant: string,
  budgetMs = 30_000,
): { input: Uint8Array; failure: Failure } {
  const deadline = performance.now() + budgetMs;
  let best = input;
  let bestFailure = target.run(input);
  if (bestFailure === null || bestFailure.invariant !== invariant) {
    return { input, failure: bestFailure ?? { invariant, message: "(did not fail again)" } };
  }
  const fails = (candidate: Uint8Array): boolean => {
    const f = target.run(candidate);
    if (f !== null && f.invariant === invariant) {
      best = candidate;
      bestFailure = f;
      return true;
    }
    return false;
  };
  for (let chunk = best.length >> 1; chunk >= 1 && performance.now() < deadline;) {
    let removed = false;
    for (let at = 0; at < best.length && performance.now() < deadline;) {
      const candidate = new Uint8Array(best.length - Math.min(chunk, best.length - at));
      candidate.set(best.subarray(0, at), 0);
      candidate.set(best.subarray(at + chunk), at);
      if (fails(candidate)) removed = true;
      else at += chunk;
    }
    if (!removed) chunk >>= 1;
  }
  for (let i = 0; i < best.length && performance.now() < deadline; i++) {
    for (;;) {
      const v = best[i]!;
      if (v === 0) break;
      let changed = false;
      for (const w of [0, v >> 1, v - 1]) {
        if (w >= v) continue;
        const candidate = best.slice();
        candidate[i] = w;
        if (fails(candidate)) {
          changed = true;
          break;
        }
      }
      if (!changed) break;
    }
  }
  return { input: best, failure: bestFailure };
}

export interface Reproducer {
  readonly target: string;
  readonly seed: number;
  readonly input: string;
  readonly invariant: string;
  readonly message: string;
}

export function reproducer(target: string, seed: number, input: Uint8Array, failure: Failure): Reproducer {
  return { target, seed, input: toHex(input), invariant: failure.invariant, message: failure.message };
}

export function shortHash(input: Uint8Array): string {
  return createHash("sha256").update(input).digest("hex").slice(0, 10);
}
