import type { Chain } from "./chain.js";

/** A split ring's device-side position (for a device snapshot). */
export interface SplitRingState {
  readonly kind: "split";
  readonly lastAvail: number;
  readonly usedIdx: number;
  readonly signalledUsed: number;
  readonly pushedSinceCheck: number;
  readonly notify: boolean;
}

/** A packed ring's device-side position (for a device snapshot). */
export interface PackedRingState {
  readonly kind: "packed";
  readonly availIdx: number;
  readonly availWrap: number;
  readonly usedIdx: number;
  readonly usedWrap: number;
  readonly pushedSlots: number;
  readonly notify: boolean;
}

export type RingState = SplitRingState | PackedRingState;

/** A chain in flight, as a snapshot keeps it: enough to hand it back to the driver later. */
export interface ChainState {
  readonly id: number;
  readonly ringSlots: number;
  readonly readableCount: number;
  /** Segments as [addr, len] pairs, readable ones first. */
  readonly segments: readonly (readonly [number, number])[];
}

/** Where the driver placed a queue's three areas (guest-physical addresses). */
export interface QueueLayout {
  /** Queue size: descriptors in the table (split: a power of 2, at most 32768). */
  readonly size: number;
  /** Descriptor table / descriptor ring. */
  readonly descAddr: number;
  /** Split: the available ring. Packed: the driver event suppression structure. */
  readonly driverAddr: number;
  /** Split: the used ring. Packed: the device event suppression structure. */
  readonly deviceAddr: number;
}

/** Ring features negotiated for the device (virtio 1.3 §6). */
export interface RingFeatures {
  /** VIRTIO_F_INDIRECT_DESC (28). */
  readonly indirect: boolean;
  /** VIRTIO_F_EVENT_IDX (29). */
  readonly eventIdx: boolean;
  /**
   * Most descriptors one chain may have, those of an indirect table included
   * (default DEFAULT_MAX_CHAIN, or the queue size when larger). Longer chains
   * are faulted TooLong.
   */
  readonly maxChain?: number;
  /**
   * Most buffers the chains in flight may hold together (default: maxChain
   * plus three times the queue size). A chain that would exceed it is faulted
   * OverBudget. This is what bounds the host memory a driver can make the
   * queue hold.
   */
  readonly maxSegments?: number;
}

/**
 * The device's side of one virtqueue, split or packed.
 *
 * pop() and push() never throw for anything a single chain contains: a
 * malformed chain comes back with `fault` set and no segments, and must be
 * pushed back with length 0. They throw VirtqueueBrokenError only when the
 * ring structure itself is unusable (its areas outside guest memory, an
 * available index that moved by more than the queue size): the device must
 * then set DEVICE_NEEDS_RESET and leave the queue alone.
 */
export interface DeviceQueue {
  readonly size: number;
  /** Takes the next available chain, or null when the driver has made none available. */
  pop(): Chain | null;
  /** Returns a chain to the driver with `written` bytes written into its writable part; the chain goes back to the pool. */
  push(chain: Chain, written: number): void;
  /**
   * Whether the driver wants an interrupt for what was pushed since the last
   * call (flags or EVENT_IDX). Call once after a batch of pushes.
   */
  needsInterrupt(): boolean;
  /**
   * Asks the driver to notify (kick) on new buffers, or not. With EVENT_IDX the
   * request names the current position, as §2.7.10 describes. Returns whether
   * buffers are already available, so the caller can re-check and not miss a kick.
   */
  enableNotifications(enabled: boolean): boolean;
  /** Chains popped and not yet pushed. */
  readonly inFlight: number;
  /**
   * The ring position as vhost-user's GET/SET_VRING_BASE carry it: split, the
   * next available index; packed, the next available index with the wrap counter in bit 15.
   */
  getBase(): number;
  setBase(base: number): void;
  /** The device-side position and suppression state, without the chains in flight. Reads no guest memory. */
  saveState(): RingState;
  /**
   * Puts a queue just made over the same layout back at a saved position,
   * writing nothing to guest memory (the restored guest memory already holds
   * what the device wrote). Throws VirtqueueBrokenError for a state that does
   * not fit the queue.
   */
  restoreState(state: RingState): void;
  /** Takes back a chain that was in flight at the snapshot (throws VirtqueueBrokenError if it cannot be). */
  adoptChain(state: ChainState): Chain;
}

/** The state of a chain in flight, for a snapshot. */
export function chainState(chain: Chain): ChainState {
  const segments: [number, number][] = [];
  for (let i = 0; i < chain.segmentCount; i++) segments.push([chain.addr[i]!, chain.len[i]!]);
  return { id: chain.id, ringSlots: chain.ringSlots, readableCount: chain.readableCount, segments };
}
