import type { PcmParams } from "./pcm-params.js";

/**
 * Where an output voice takes audio from: the stream's queue of TX messages.
 * A voice calls read() on its own clock ("give me the next N bytes").
 */
export interface OutputSource {
  /**
   * Copies up to `length` bytes of the stream into dest[offset...]. Returns the
   * number copied; fewer than asked means the stream ran dry (an underrun), and
   * the voice plays silence for the rest.
   */
  read(dest: Uint8Array, offset: number, length: number): number;
  /**
   * Bytes read() would return now (the guest's queued messages). A voice that
   * reads ahead of what it plays (a browser's ring) asks for no more than this
   * while it still has audio to play, so that the guest hears of an underrun
   * only when the sound would stop. Optional: wrappers may not forward it.
   */
  queuedBytes?(): number;
  /** The voice can no longer play: the stream fails its messages with IO_ERR. */
  fail(error: Error): void;
}

/** Where an input voice puts captured audio: the stream's queue of RX messages. */
export interface InputSink {
  /**
   * Delivers `length` captured bytes from src[offset...]. Returns how many the
   * stream took; the rest had no buffer to go to (an overrun) and is dropped.
   */
  write(src: Uint8Array, offset: number, length: number): number;
  fail(error: Error): void;
}

/** A playing or recording channel of a backend, for one prepared stream. */
export interface Voice {
  /**
   * Begins consuming (output) or producing (input) on the voice's clock.
   * `aheadNs` (a restored snapshot) starts the voice that far into its
   * schedule, as if it had started that long ago: it takes at once the audio
   * already due. A negative value delays the start.
   */
  start(aheadNs?: number): void;
  /** Pauses; start() resumes. Bytes already taken stay taken. */
  stop(): void;
  /** Frees the voice; it makes no further calls to its source or sink. */
  close(): void;
  /**
   * Output: bytes read from the source that are not yet audible.
   * Input: bytes captured and not yet written to the sink.
   * The stream reports this as latency_bytes (§5.14.6.8).
   */
  latencyBytes(): number;
  /**
   * Optional: how far a running voice is behind its clock, in ns: the audio
   * due and not yet taken (its timer is late), up to the chunk in progress.
   * A snapshot keeps it, so the restored voice owes the guest the same audio.
   */
  lagNs?(): number;
}

/**
 * An audio backend: something that can play and record PCM. Implementations
 * (memory, null, WAV files, ALSA through `speaker`, a browser's AudioWorklet)
 * pace themselves: an output voice asks for data when its clock says the next
 * bytes are due, an input voice delivers them when they have been captured.
 */
export interface AudioBackend {
  readonly name: string;
  /**
   * Opens a voice for an output stream with the given parameters (called at
   * PREPARE). Throws BackendError (code ERR_BACKEND_NOT_SUPPORTED when the
   * parameters cannot be played, ERR_BACKEND when the device fails).
   */
  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice;
  openInput(streamId: number, params: PcmParams, sink: InputSink): Voice;
  /** Releases everything the backend holds. */
  close?(): void;
}
