/**
 * Host memory a hostile driver can make one queue hold: every chain of a full
 * queue points at one shared 1024-entry indirect table of one-byte buffers,
 * and the device holds them all (a prepared stream that never starts).
 *
 *   npx tsx bench/chain-memory.ts
 */
import { FlatMemory } from "../src/memory/flat-memory.js";
import { SplitQueue } from "../src/virtqueue/split-ring.js";
import { PackedQueue } from "../src/virtqueue/packed-ring.js";
import type { Chain } from "../src/virtqueue/chain.js";
for (const layout of ["split", "packed"] as const)
  for (const size of [1024, 2048, 4096]) {
    const mem = new FlatMemory(new ArrayBuffer(1 << 20));
    const desc = 0,
      drv = 16 * size + 64,
      dev = drv + 4 + 2 * size + 64;
    const table = 0x80000,
      bufs = 0x90000,
      n = 1024;
    for (let i = 0; i < n; i++) {
      const e = table + 16 * i;
      mem.writeU64(e, bufs + i);
      mem.writeU32(e + 8, 1);
      if (layout === "split") {
        mem.writeU16(e + 12, i < n - 1 ? 1 : 0);
        mem.writeU16(e + 14, i + 1);
      }
    }
    for (let i = 0; i < size; i++) {
      const d = desc + 16 * i;
      mem.writeU64(d, table);
      mem.writeU32(d + 8, 16 * n);
      if (layout === "split") {
        mem.writeU16(d + 12, 4);
        mem.writeU16(drv + 4 + 2 * i, i);
      } else {
        mem.writeU16(d + 12, i);
        mem.writeU16(d + 14, 4 | 128);
      }
    }
    if (layout === "split") mem.writeU16(drv + 2, size);
    const f = { indirect: true, eventIdx: false };
    const q =
      layout === "split"
        ? new SplitQueue(mem, { size, descAddr: desc, driverAddr: drv, deviceAddr: dev }, f)
        : new PackedQueue(mem, { size, descAddr: desc, driverAddr: drv, deviceAddr: dev }, f);
    const held: Chain[] = [];
    for (let c = q.pop(); c !== null; c = q.pop()) held.push(c);
    console.log(
      `${layout} ${size}: ${held.length} chains held, ${q.segmentsHeld} segments admitted, capacity ${q.segmentCapacity} segments = ${((q.segmentCapacity * 12) / 1048576).toFixed(2)} MiB (before the bounds, a queue-size table in every chain held ${((size * size * 12) / 1048576).toFixed(0)} MiB)`,
    );
  }
