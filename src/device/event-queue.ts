import { GuestMemoryError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { VIRTIO_SND_EVENT_SIZE } from "../spec/structs.js";
import { type Chain, writeToChain } from "../virtqueue/chain.js";
import type { DeviceQueue } from "../virtqueue/virtqueue.js";

/** Events kept while the driver has no event buffer queued; beyond this the oldest are dropped. */
const MAX_PENDING_EVENTS = 256;

/**
 * The event queue (§5.14.6.2): the driver fills it with empty buffers; the
 * device takes one from the ring only when it has something to say, so it
 * never holds a buffer between calls and the ring position it reports when
 * the queue stops (vhost-user GET_VRING_BASE) accounts for every buffer.
 * Events raised while no buffer is available wait, in order, for the next one.
 */
export class EventQueue {
  private readonly waiting: number[] = []; // pairs: code, data
  private readonly scratch = new Uint8Array(VIRTIO_SND_EVENT_SIZE);
  private readonly scratchView = new DataView(this.scratch.buffer);
  /** Events dropped because neither a buffer nor room to wait was available. */
  dropped = 0;

  constructor(
    private readonly queue: DeviceQueue,
    private readonly memory: () => GuestMemory,
    /** A buffer went back to the driver: an interrupt may be due. */
    private readonly markUsed: () => void,
  ) {}

  /** The driver made buffers available: delivers waiting events into them. */
  collect(): void {
    while (this.waiting.length > 0) {
      const chain = this.nextBuffer();
      if (chain === null) return;
      const code = this.waiting.shift()!;
      const data = this.waiting.shift()!;
      this.deliver(chain, code, data);
    }
  }

  post(code: number, data: number): void {
    this.waiting.push(code, data);
    this.collect();
    if (this.waiting.length > MAX_PENDING_EVENTS * 2) {
      this.waiting.splice(0, 2);
      this.dropped++;
    }
  }

  get waitingCount(): number {
    return this.waiting.length / 2;
  }

  /** The events waiting for a buffer, as (code, data) pairs: a snapshot keeps them. */
  waitingEvents(): number[] {
    return this.waiting.slice();
  }

  /** Puts saved waiting events back (delivered when the driver next offers buffers). */
  restoreWaiting(pairs: readonly number[], dropped: number): void {
    this.waiting.length = 0;
    for (let i = 0; i + 1 < pairs.length && this.waiting.length < MAX_PENDING_EVENTS * 2; i += 2) {
      this.waiting.push(pairs[i]!, pairs[i + 1]!);
    }
    this.dropped = dropped;
  }

  /** The next usable buffer from the ring, or null. */
  private nextBuffer(): Chain | null {
    for (let chain = this.queue.pop(); chain !== null; chain = this.queue.pop()) {
      // §5.14.4: event buffers are write-only and at least 8 bytes; anything else goes back unused.
      if (chain.fault !== 0 || chain.readableCount > 0 || chain.writableBytes < VIRTIO_SND_EVENT_SIZE) {
        this.queue.push(chain, 0);
        this.markUsed();
        continue;
      }
      return chain;
    }
    return null;
  }

  private deliver(chain: Chain, code: number, data: number): void {
    this.scratchView.setUint32(0, code, true);
    this.scratchView.setUint32(4, data >>> 0, true);
    let written = 0;
    try {
      written = writeToChain(this.memory(), chain, 0, this.scratch, 0, VIRTIO_SND_EVENT_SIZE);
    } catch (err) {
      if (!(err instanceof GuestMemoryError)) throw err;
    }
    this.queue.push(chain, written === VIRTIO_SND_EVENT_SIZE ? written : 0);
    this.markUsed();
  }
}
