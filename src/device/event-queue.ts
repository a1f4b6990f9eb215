import { GuestMemoryError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { VIRTIO_SND_EVENT_SIZE } from "../spec/structs.js";
import { type Chain, writeToChain } from "../virtqueue/chain.js";
import type { DeviceQueue } from "../virtqueue/virtqueue.js";

/** Events kept while the driver has no event buffer queued; beyond this the oldest are dropped. */
const MAX_PENDING_EVENTS = 256;

/**
 * The event queue (§5.14.6.2): the driver fills it with empty buffers; the
 * device keeps them until it has something to say. Events raised while no
 * buffer is available wait, in order, for the next one.
 */
export class EventQueue {
  private readonly buffers: Chain[] = [];
  private readonly waiting: number[] = []; // pairs: code, data
  private readonly scratch = new Uint8Array(VIRTIO_SND_EVENT_SIZE);
  private readonly scratchView = new DataView(this.scratch.buffer);
  /** Events dropped because neither a buffer nor room to wait was available. */
  dropped = 0;

  constructor(
    private readonly queue: DeviceQueue,
    private readonly memory: () => GuestMemory,
    private readonly markUsed: (queue: DeviceQueue) => void,
  ) {}

  /** Takes the buffers the driver made available; delivers waiting events into them. */
  collect(): void {
    for (let chain = this.queue.pop(); chain !== null; chain = this.queue.pop()) {
      // §5.14.4: event buffers are write-only and at least 8 bytes; anything else goes back unused.
      if (chain.fault !== 0 || chain.readableCount > 0 || chain.writableBytes < VIRTIO_SND_EVENT_SIZE) {
        this.queue.push(chain, 0);
        this.markUsed(this.queue);
        continue;
      }
      this.buffers.push(chain);
    }
    while (this.waiting.length > 0 && this.buffers.length > 0) {
      const code = this.waiting.shift()!;
      const data = this.waiting.shift()!;
      this.deliver(code, data);
    }
  }

  post(code: number, data: number): void {
    if (this.buffers.length > 0 && this.waiting.length === 0) {
      this.deliver(code, data);
      return;
    }
    if (this.waiting.length >= MAX_PENDING_EVENTS * 2) {
      this.waiting.splice(0, 2);
      this.dropped++;
    }
    this.waiting.push(code, data);
  }

  get bufferCount(): number {
    return this.buffers.length;
  }

  get waitingCount(): number {
    return this.waiting.length / 2;
  }

  private deliver(code: number, data: number): void {
    const chain = this.buffers.shift()!;
    this.scratchView.setUint32(0, code, true);
    this.scratchView.setUint32(4, data >>> 0, true);
    let written = 0;
    try {
      written = writeToChain(this.memory(), chain, 0, this.scratch, 0, VIRTIO_SND_EVENT_SIZE);
    } catch (err) {
      if (!(err instanceof GuestMemoryError)) throw err;
    }
    this.queue.push(chain, written === VIRTIO_SND_EVENT_SIZE ? written : 0);
    this.markUsed(this.queue);
  }
}
