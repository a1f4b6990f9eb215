import { GuestMemoryError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { VIRTIO_SND_PCM_STATUS_SIZE } from "../spec/structs.js";
import { type Chain, writeToChain } from "../virtqueue/chain.js";
import type { DeviceQueue } from "../virtqueue/virtqueue.js";

/**
 * The completion end of one I/O queue (TX or RX): writes a message's
 * virtio_snd_pcm_status, returns the chain to the used ring, and remembers
 * that an interrupt may be due until the device asks (needsInterrupt), so
 * the interrupt decision is made once per batch of completions, not per
 * message.
 *
 * It lives as long as the device; the queue behind it comes and goes with the
 * driver's setup (attach). Streams hold the completer of their direction.
 */
export class IoCompleter {
  private queue: DeviceQueue | null = null;
  /** Chains were pushed since the last needsInterrupt(). */
  private used = false;
  /** A status that straddles descriptors is assembled here first. */
  private readonly scratch = new Uint8Array(VIRTIO_SND_PCM_STATUS_SIZE);
  private readonly scratchView = new DataView(this.scratch.buffer);

  /** `output`: the TX queue; otherwise RX. */
  constructor(
    private readonly memory: GuestMemory,
    readonly output: boolean,
  ) {}

  /** The queue completions go to from now on (null: none); what was pending on the old one is forgotten. */
  attach(queue: DeviceQueue | null): void {
    this.queue = queue;
    this.used = false;
  }

  /**
   * Completes `chain` with `status` and `latency` (latency_bytes). RX: the
   * device wrote `written` bytes of data before the status (a TX message's
   * writable part holds the status only; `written` is not used there). The
   * used length counts the status too. If the status cannot be written, the chain
   * is returned with length 0 so the driver still gets its buffer back.
   * Without a queue (it was stopped) the chain goes nowhere.
   */
  complete(chain: Chain, status: number, latency: number, written: number): void {
    const queue = this.queue;
    if (queue === null) return;
    // §5.14.6.8: the status follows the data. TX: the data is readable, so the
    // status is all the device writes, at the start of the writable part; RX:
    // it is the writable part's last bytes, after the data written.
    let statusOffset = 0;
    let data = 0;
    if (!this.output) {
      statusOffset = chain.writableBytes - VIRTIO_SND_PCM_STATUS_SIZE;
      data = written;
    }
    let used = 0;
    if (statusOffset >= 0 && chain.writableBytes >= statusOffset + VIRTIO_SND_PCM_STATUS_SIZE) {
      try {
        if (this.writeStatus(chain, statusOffset, status, latency >>> 0))
          used = data + VIRTIO_SND_PCM_STATUS_SIZE;
      } catch (err) {
        if (!(err instanceof GuestMemoryError)) throw err;
      }
    }
    queue.push(chain, used);
    this.used = true;
  }

  /**
   * Whether the driver wants an interrupt for the chains completed since the
   * last call (the ring's flags or EVENT_IDX); false when there were none.
   */
  needsInterrupt(): boolean {
    // Small enough for V8 to inline into every flush: most flushes find nothing completed.
    return this.used && this.askQueue();
  }

  private askQueue(): boolean {
    this.used = false;
    return this.queue !== null && this.queue.needsInterrupt();
  }

  private writeStatus(chain: Chain, statusOffset: number, status: number, latency: number): boolean {
    const mem = this.memory;
    // The common case: the status lies inside one descriptor; write it in place.
    let skip = statusOffset;
    const end = chain.readableCount + chain.writableCount;
    for (let i = chain.readableCount; i < end; i++) {
      const len = chain.len[i]!;
      if (skip < len) {
        if (len - skip >= VIRTIO_SND_PCM_STATUS_SIZE) {
          const addr = chain.addr[i]! + skip;
          mem.writeU32(addr, status);
          mem.writeU32(addr + 4, latency);
          return true;
        }
        break;
      }
      skip -= len;
    }
    this.scratchView.setUint32(0, status, true);
    this.scratchView.setUint32(4, latency, true);
    return (
      writeToChain(mem, chain, statusOffset, this.scratch, 0, VIRTIO_SND_PCM_STATUS_SIZE) ===
      VIRTIO_SND_PCM_STATUS_SIZE
    );
  }
}
