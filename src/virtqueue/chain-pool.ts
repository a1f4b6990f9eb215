import { VirtqueueBrokenError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { CHAIN_INITIAL_CAPACITY, Chain, ChainFault } from "./chain.js";
import { DEFAULT_MAX_CHAIN } from "./ring-constants.js";
import type { ChainState, RingFeatures } from "./virtqueue.js";

/** The bounds a queue applies to its chains, resolved from RingFeatures and the queue size. */
export interface ChainBounds {
  /** Most descriptors in one chain, indirect ones included. */
  readonly maxChain: number;
  /** Most segments the chains in flight may hold together. */
  readonly maxSegments: number;
}

/** Fills in RingFeatures' defaults for a queue of `size` and checks them (a bad bound is the embedder's error). */
export function chainBounds(features: RingFeatures, size: number): ChainBounds {
  const maxChain = features.maxChain ?? Math.max(DEFAULT_MAX_CHAIN, size);
  // A queue full of queue-size-long direct chains, plus one full-length indirect chain.
  const maxSegments = features.maxSegments ?? maxChain + 3 * size;
  if (!Number.isInteger(maxChain) || maxChain < 1)
    throw new RangeError(`maxChain ${maxChain} is not a positive integer`);
  if (!Number.isInteger(maxSegments) || maxSegments < maxChain) {
    throw new RangeError(`maxSegments ${maxSegments} is not an integer of at least maxChain (${maxChain})`);
  }
  return { maxChain, maxSegments };
}

/**
 * The chains of one queue: reused after push(), so steady operation allocates
 * nothing, and bounded so that no driver can make the host hold memory beyond
 * what the queue's bounds allow.
 *
 * Two things are bounded. The segments that chains in flight hold together
 * (a prepared stream keeps every message it was given) stay within
 * `maxSegments`: a chain that would exceed it is faulted OverBudget. And the
 * segment arrays kept in the pool: a chain that grew for a long message is
 * shrunk when it comes back, once the queue's chains together have more
 * capacity than twice the budget. Memory is then linear in the bounds and the
 * queue size, never their product.
 */
export class ChainPool {
  private readonly free: Chain[] = [];
  /** Segments held by admitted chains in flight. */
  private held = 0;
  /** Segment capacity of every chain this pool created. */
  private capacityTotal = 0;
  private readonly capacityLimit: number;
  /** bounds.maxSegments, kept here for the hot path. */
  private readonly maxSegments: number;
  /** Chains taken and not yet released. */
  inFlight = 0;
  /** Chains created so far. */
  created = 0;

  constructor(
    readonly bounds: ChainBounds,
    size: number,
  ) {
    this.maxSegments = bounds.maxSegments;
    this.capacityLimit = 2 * bounds.maxSegments + CHAIN_INITIAL_CAPACITY * size;
  }

  /** A chain to walk into: from the pool, or new. */
  take(): Chain {
    let chain = this.free.pop();
    if (chain === undefined) {
      chain = new Chain();
      this.created++;
      this.capacityTotal += chain.capacity;
    }
    this.inFlight++;
    return chain;
  }

  /** After the walk of the chain last taken: counts its segments in, or faults it when over budget. */
  admit(chain: Chain): void {
    if (chain.grownBy !== 0) this.countGrowth(chain);
    if (chain.fault === ChainFault.None) {
      const n = chain.readableCount + chain.writableCount;
      if (this.held + n <= this.maxSegments) {
        this.held += n;
        chain.pooledSegments = n;
        return;
      }
      chain.fail(ChainFault.OverBudget);
    }
    // A faulted chain carries no segments: the arrays it grew to find that out go at once.
    this.trim(chain);
  }

  /**
   * A chain in flight at a snapshot, taken again: filled with its saved
   * segments and counted as the walk would have. Throws when the saved chain
   * does not fit the bounds (a snapshot from another configuration).
   */
  adopt(state: ChainState, mem: GuestMemory): Chain {
    const n = state.segments.length;
    if (n > this.bounds.maxChain || this.held + n > this.bounds.maxSegments) {
      throw new VirtqueueBrokenError(`a saved chain of ${n} buffers does not fit the queue's bounds`);
    }
    const chain = this.take();
    state.segments.forEach(([addr, len], i) => {
      if (!mem.contains(addr, len) && len !== 0) {
        this.release(chain);
        throw new VirtqueueBrokenError(
          `a saved chain's buffer 0x${addr.toString(16)}+${len} is outside guest memory`,
        );
      }
      chain.addSegment(addr, len, i >= state.readableCount);
    });
    chain.id = state.id;
    chain.ringSlots = state.ringSlots;
    this.admit(chain);
    return chain;
  }

  /** Takes a chain out of flight and back into the pool. */
  release(chain: Chain): void {
    // A chain whose walk threw was never admitted: its growth is counted here.
    if (chain.grownBy !== 0) this.countGrowth(chain);
    this.held -= chain.pooledSegments;
    this.trim(chain);
    chain.reset();
    this.free.push(chain);
    this.inFlight--;
  }

  private countGrowth(chain: Chain): void {
    this.capacityTotal += chain.grownBy;
    chain.grownBy = 0;
  }

  private trim(chain: Chain): void {
    if (chain.capacity > CHAIN_INITIAL_CAPACITY && this.capacityTotal > this.capacityLimit) {
      this.capacityTotal -= chain.capacity - CHAIN_INITIAL_CAPACITY;
      chain.shrink();
    }
  }

  /** Segments held by chains in flight. */
  get segmentsHeld(): number {
    return this.held;
  }

  /** Segment capacity of every chain created, pooled or in flight (what the host holds for them). */
  get segmentCapacity(): number {
    return this.capacityTotal;
  }
}
