/**
 * What the split and packed rings (the device side) share: the length a used
 * element reports, the check of the ring areas, and how a guest memory fault
 * on a ring becomes VirtqueueBrokenError.
 */
import { GuestMemoryError, VirtqueueBrokenError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { type Chain, ChainFault } from "./chain.js";

type RingKind = "split" | "packed";

/** Largest value a used element's (or used descriptor's) le32 `len` can carry. */
const MAX_USED_LEN = 0xffff_ffff;

/**
 * The `len` the used ring reports when the device wrote `written` bytes into
 * the chain: 0 for a faulted chain, otherwise a whole number of bytes within
 * its writable part and le32.
 */
export function usedLength(chain: Chain, written: number): number {
  let len = chain.fault === ChainFault.None && written > 0 ? Math.floor(written) : 0;
  if (len > chain.writableBytes) len = chain.writableBytes;
  if (len > MAX_USED_LEN) len = MAX_USED_LEN;
  return len;
}

/** Throws VirtqueueBrokenError unless the ring area `name` lies in guest memory. */
export function checkArea(
  kind: RingKind,
  mem: GuestMemory,
  name: string,
  addr: number,
  length: number,
): void {
  if (!mem.contains(addr, length)) {
    throw new VirtqueueBrokenError(
      `${kind} virtqueue ${name} (${length} bytes at 0x${Number(addr).toString(16)}) is outside guest memory`,
    );
  }
}

/** What to throw for `e`, caught while `what` on the ring: a guest memory fault breaks the queue. */
export function ringFault(kind: RingKind, e: unknown, what: string): unknown {
  if (e instanceof GuestMemoryError) {
    return new VirtqueueBrokenError(`${kind} virtqueue: guest memory fault ${what}`, { cause: e });
  }
  return e;
}
