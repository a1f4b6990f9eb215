import { GuestMemoryError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import { VIRTIO_SND_PCM_STATUS_SIZE, VIRTIO_SND_PCM_XFER_SIZE } from "../spec/structs.js";
import type { Chain } from "../virtqueue/chain.js";

/** A cursor as a snapshot keeps it (src/device/snapshot.ts). */
export type CursorState = readonly [seg: number, off: number, left: number, filled: number];

/**
 * Where a stream is in the data of the I/O message it is playing or filling:
 * a segment of the chain, an offset into it, the data bytes left, and (RX)
 * the bytes written so far. The data of a TX message is its readable part
 * after the xfer header; that of an RX message, its writable part before the
 * status (§5.14.6.8).
 */
export class MessageCursor {
  /** The message walked; null when there is none. */
  chain: Chain | null = null;
  /** Segment index into the chain, and offset into that segment. */
  seg = 0;
  off = 0;
  /** Data bytes not yet copied; -1 without a message. */
  left = -1;
  /** RX: data bytes written into the message so far (0 for TX). */
  filled = 0;
  /** The last copy stopped at guest memory it could not reach: the message must fail. */
  fault = false;

  /** Places the cursor at the start of a TX message's data: after the xfer header in the readable part. */
  startOutput(chain: Chain): void {
    this.chain = chain;
    this.filled = 0;
    this.fault = false;
    let skip = VIRTIO_SND_PCM_XFER_SIZE;
    let seg = 0;
    while (seg < chain.readableCount && skip >= chain.len[seg]!) {
      skip -= chain.len[seg]!;
      seg++;
    }
    this.seg = seg;
    this.off = skip;
    this.left = chain.readableBytes - VIRTIO_SND_PCM_XFER_SIZE;
  }

  /** Places the cursor at the start of an RX message's data: the start of the writable part. */
  startInput(chain: Chain): void {
    this.chain = chain;
    this.filled = 0;
    this.fault = false;
    this.seg = chain.readableCount;
    this.off = 0;
    this.left = chain.writableBytes - VIRTIO_SND_PCM_STATUS_SIZE;
  }

  /**
   * The message is done and none follows. The other fields keep their last
   * values, which a snapshot records as it always has.
   */
  end(): void {
    this.chain = null;
    this.left = -1;
    this.fault = false;
  }

  /** No message, nothing written: the pending messages were dropped. */
  clear(): void {
    this.end();
    this.filled = 0;
  }

  /** All of the message's data has been copied (or it has none). */
  get finished(): boolean {
    return this.left <= 0;
  }

  /**
   * Copies up to `length` bytes of the message's data into dest[offset...],
   * advancing. Returns the count; memory it cannot reach sets `fault` and
   * stops the copy there (what was copied before still counts).
   */
  copyOut(mem: GuestMemory, dest: Uint8Array, offset: number, length: number): number {
    const chain = this.chain!;
    let done = 0;
    try {
      while (done < length && this.left > 0) {
        const segLen = chain.len[this.seg]!;
        const n = Math.min(segLen - this.off, length - done, this.left);
        if (n > 0) {
          mem.read(chain.addr[this.seg]! + this.off, dest, offset + done, n);
          done += n;
          this.off += n;
          this.left -= n;
        }
        if (this.off >= segLen) {
          this.seg++;
          this.off = 0;
        }
      }
    } catch (err) {
      if (!(err instanceof GuestMemoryError)) throw err;
      this.fault = true;
    }
    return done;
  }

  /** As copyOut, the other way: src[offset...] into the message's data. */
  copyIn(mem: GuestMemory, src: Uint8Array, offset: number, length: number): number {
    const chain = this.chain!;
    let done = 0;
    try {
      while (done < length && this.left > 0) {
        const segLen = chain.len[this.seg]!;
        const n = Math.min(segLen - this.off, length - done, this.left);
        if (n > 0) {
          mem.write(chain.addr[this.seg]! + this.off, src, offset + done, n);
          done += n;
          this.off += n;
          this.left -= n;
          this.filled += n;
        }
        if (this.off >= segLen) {
          this.seg++;
          this.off = 0;
        }
      }
    } catch (err) {
      if (!(err instanceof GuestMemoryError)) throw err;
      this.fault = true;
    }
    return done;
  }

  saveState(): CursorState {
    return [this.seg, this.off, this.left, this.filled];
  }

  /** Puts a saved position back over `chain` (the message it was saved in; null when there was none). */
  restoreState(chain: Chain | null, saved: CursorState): void {
    [this.seg, this.off, this.left, this.filled] = saved;
    this.chain = chain;
    this.fault = false;
    if (chain === null) this.left = -1;
  }
}
