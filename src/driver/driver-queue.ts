import type { GuestMemory } from "../memory/guest-memory.js";
import type { QueueLayout } from "../virtqueue/virtqueue.js";

/** One buffer of a chain the test driver makes available: guest address and length. */
export interface Buf {
  addr: number;
  len: number;
}

/** A used element the driver reaped. */
export interface Used {
  /** The token given to add(). */
  token: number;
  /** Bytes the device says it wrote. */
  len: number;
}

/**
 * The driver's side of a virtqueue, as the Linux virtio_ring does it, for
 * tests: it builds real descriptors in guest memory.
 */
export interface DriverQueue {
  readonly layout: QueueLayout;
  /**
   * Makes a chain available: `out` buffers are device-readable, `inn` device-writable.
   * With `indirect`, the chain is placed in an indirect table (needs VIRTIO_F_INDIRECT_DESC).
   * Returns a token that comes back in the used element; throws when the ring is full.
   */
  add(out: readonly Buf[], inn: readonly Buf[], opts?: { indirect?: boolean }): number;
  /** Whether the device asked to be notified about what was added since the last call. */
  kickNeeded(): boolean;
  /** The next used element, or null. */
  getUsed(): Used | null;
  /** Whether the device's interrupt suppression says the driver wants an interrupt (enable_cb). */
  enableInterrupts(enabled: boolean): void;
  /** Descriptors free for add(). */
  readonly freeCount: number;
}

export interface DriverQueueOptions {
  mem: GuestMemory;
  /** Allocates `size` bytes aligned to `align` in guest memory. */
  alloc: (size: number, align: number) => number;
  size: number;
  eventIdx: boolean;
}
