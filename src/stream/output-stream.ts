import type { OutputSource, Voice } from "../audio/backend.js";
import type { PcmParams } from "../audio/pcm-params.js";
import { VIRTIO_SND_D_OUTPUT, VIRTIO_SND_S_IO_ERR, VIRTIO_SND_S_OK } from "../spec/constants.js";
import { VIRTIO_SND_PCM_STATUS_SIZE, VIRTIO_SND_PCM_XFER_SIZE } from "../spec/structs.js";
import type { Chain } from "../virtqueue/chain.js";
import type { IoCompleter } from "./io-completer.js";
import { PcmStream, type StreamHost } from "./pcm-stream.js";

/**
 * A playback stream (TX). Its voice reads bytes on its own clock; a message
 * completes when its last byte has been read (§5.14.6.8.1: not before it is
 * totally consumed). Messages queued before START wait for START.
 */
export class OutputStream extends PcmStream implements OutputSource {
  constructor(id: number, host: StreamHost, completer: IoCompleter) {
    super(id, VIRTIO_SND_D_OUTPUT, host, completer);
  }

  /** OutputSource.read: the voice wants the next `length` bytes. */
  read(dest: Uint8Array, offset: number, length: number): number {
    try {
      if (this.polling || this.pollOnTick) this.host.poll(this.direction);
      return this.readMessages(dest, offset, length);
    } catch (err) {
      this.host.fatal(err);
      return 0;
    }
  }

  /** OutputSource.queuedBytes: the data of the pending messages not yet read. */
  queuedBytes(): number {
    try {
      if (this.polling || this.pollOnTick) this.host.poll(this.direction);
    } catch (err) {
      this.host.fatal(err);
      return 0;
    }
    if (this.count === 0) return 0;
    let total = Math.max(0, this.cursor.left);
    for (let i = 1; i < this.count; i++) {
      total += this.dataBytes(this.pending[(this.head + i) % this.pending.length]!);
    }
    return total;
  }

  /** Unplayed messages fail: the driver must not take them for played. */
  returnPending(): void {
    this.failAll(VIRTIO_SND_S_IO_ERR);
  }

  protected openVoice(params: PcmParams): Voice {
    return this.host.backend.openOutput(this.id, params, this);
  }

  /** Header and data readable, then room for the status. */
  protected wellFormed(chain: Chain): boolean {
    return chain.writableBytes >= VIRTIO_SND_PCM_STATUS_SIZE;
  }

  /** The readable part after the xfer header. */
  protected dataBytes(chain: Chain): number {
    return chain.readableBytes - VIRTIO_SND_PCM_XFER_SIZE;
  }

  protected startCursor(chain: Chain): void {
    this.cursor.startOutput(chain);
  }

  private readMessages(dest: Uint8Array, offset: number, length: number): number {
    let done = 0;
    const mem = this.host.memory;
    const cursor = this.cursor;
    while (done < length && this.count > 0) {
      done += cursor.copyOut(mem, dest, offset + done, length - done);
      if (cursor.fault) this.completeHead(VIRTIO_SND_S_IO_ERR);
      else if (cursor.finished) this.completeHead(VIRTIO_SND_S_OK);
    }
    this.afterTransfer(done, length);
    return done;
  }
}
