import type { Chain } from "./chain.js";

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
}
