import type { BumpAllocator } from "../driver/allocator.js";

/**
 * Guest buffers for the chains a replay rebuilds, reused by size (rounded up
 * to 64 bytes) so a long trace does not exhaust the replay's guest memory.
 */
export class BufferPool {
  private readonly free = new Map<number, number[]>();

  constructor(private readonly bump: BumpAllocator) {}

  alloc(len: number): number {
    const size = Math.max(64, Math.ceil(len / 64) * 64);
    const list = this.free.get(size);
    if (list !== undefined && list.length > 0) return list.pop()!;
    return this.bump.alloc(size, 64);
  }

  release(addr: number, len: number): void {
    const size = Math.max(64, Math.ceil(len / 64) * 64);
    let list = this.free.get(size);
    if (list === undefined) this.free.set(size, (list = []));
    list.push(addr);
  }
}
