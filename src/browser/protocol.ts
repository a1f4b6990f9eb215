/**
 * What the page and the AudioWorklet processors (./worklet.ts) agree on: the
 * processors' names, their options and their messages.
 */

export const OUTPUT_PROCESSOR = "virtio-snd-output";
export const INPUT_PROCESSOR = "virtio-snd-input";

/** processorOptions of both processors. */
export interface RingProcessorOptions {
  /** The FloatRing's SharedArrayBuffer. */
  readonly buffer: SharedArrayBuffer;
  readonly channels: number;
  /** Post a message to the page after this many frames moved. */
  readonly notifyFrames: number;
}

/** What a processor posts: frames moved since the last message; `ended` once an output has drained after close. */
export interface RingNotice {
  readonly ended: boolean;
}
