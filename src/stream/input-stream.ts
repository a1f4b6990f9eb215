import type { InputSink, Voice } from "../audio/backend.js";
import type { PcmParams } from "../audio/pcm-params.js";
import { VIRTIO_SND_D_INPUT, VIRTIO_SND_S_IO_ERR, VIRTIO_SND_S_OK } from "../spec/constants.js";
import { VIRTIO_SND_PCM_STATUS_SIZE, VIRTIO_SND_PCM_XFER_SIZE } from "../spec/structs.js";
import type { Chain } from "../virtqueue/chain.js";
import type { IoCompleter } from "./io-completer.js";
import { PcmStream, type StreamHost } from "./pcm-stream.js";

/**
 * A capture stream (RX). Its voice writes bytes on its own clock; a message
 * completes when full, or at RELEASE with what it has (§5.14.6.8.2).
 */
export class InputStream extends PcmStream implements InputSink {
  constructor(id: number, host: StreamHost, completer: IoCompleter) {
    super(id, VIRTIO_SND_D_INPUT, host, completer);
  }

  /** InputSink.write: the voice captured `length` bytes. */
  write(src: Uint8Array, offset: number, length: number): number {
    try {
      if (this.polling || this.pollOnTick) this.host.poll(this.direction);
      return this.writeMessages(src, offset, length);
    } catch (err) {
      this.host.fatal(err);
      return 0;
    }
  }

  /** Messages go back with what they recorded. */
  returnPending(): void {
    this.failAll(VIRTIO_SND_S_OK);
  }

  protected openVoice(params: PcmParams): Voice {
    return this.host.backend.openInput(this.id, params, this);
  }

  /** The header alone readable, then room for data and the status. */
  protected wellFormed(chain: Chain): boolean {
    return (
      chain.readableBytes === VIRTIO_SND_PCM_XFER_SIZE && chain.writableBytes >= VIRTIO_SND_PCM_STATUS_SIZE
    );
  }

  /** The writable part before the status. */
  protected dataBytes(chain: Chain): number {
    return chain.writableBytes - VIRTIO_SND_PCM_STATUS_SIZE;
  }

  protected startCursor(chain: Chain): void {
    this.cursor.startInput(chain);
  }

  private writeMessages(src: Uint8Array, offset: number, length: number): number {
    let done = 0;
    const mem = this.host.memory;
    const cursor = this.cursor;
    while (done < length && this.count > 0) {
      done += cursor.copyIn(mem, src, offset + done, length - done);
      if (cursor.fault) this.completeHead(VIRTIO_SND_S_IO_ERR);
      else if (cursor.finished) this.completeHead(VIRTIO_SND_S_OK);
    }
    this.afterTransfer(done, length);
    return done;
  }
}
