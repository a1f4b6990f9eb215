/**
 * The AudioWorklet processors of WebAudioBackend, loaded with
 * `audioWorklet.addModule(new URL("./worklet.js", import.meta.url))`. They run
 * on the audio rendering thread, so their consumption is the audio clock: the
 * page refills (or drains) a ring only when a processor says it has moved
 * frames, and that is what paces the stream.
 */
import { INPUT_PROCESSOR, OUTPUT_PROCESSOR, type RingNotice, type RingProcessorOptions } from "./protocol.js";
import { FloatRing, Slot } from "./ring.js";

// The AudioWorkletGlobalScope, which TypeScript's DOM library does not describe.
declare class AudioWorkletProcessor {
  readonly port: MessagePort;
  constructor(options?: unknown);
}
declare function registerProcessor(
  name: string,
  processor: new (options: { processorOptions: RingProcessorOptions }) => AudioWorkletProcessor,
): void;

const MOVED: RingNotice = { ended: false };
const ENDED: RingNotice = { ended: true };

/** Plays the ring's frames; silence when it is empty (counted as an underrun while the stream runs). */
class OutputProcessor extends AudioWorkletProcessor {
  private readonly ring: FloatRing;
  private readonly notifyFrames: number;
  private sinceNotice = 0;
  private inUnderrun = false;

  constructor(options: { processorOptions: RingProcessorOptions }) {
    super(options);
    const o = options.processorOptions;
    this.ring = new FloatRing(o.buffer, o.channels);
    this.notifyFrames = o.notifyFrames;
  }

  process(_inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const planes = outputs[0] ?? [];
    const frames = planes[0]?.length ?? 128;
    const ring = this.ring;
    const got = ring.readPlanar(planes, frames);
    for (const plane of planes) plane.fill(0, got);
    ring.add(Slot.Frames, got);
    if (got < frames && ring.get(Slot.Active) === 1) {
      if (ring.get(Slot.Dry) === 1) {
        ring.add(Slot.StarvedFrames, frames - got);
      } else {
        ring.add(Slot.UnderrunFrames, frames - got);
        if (!this.inUnderrun) ring.add(Slot.Underruns, 1);
        this.inUnderrun = true;
      }
    } else if (got === frames) {
      this.inUnderrun = false;
    }
    this.sinceNotice += frames;
    if (ring.get(Slot.Closing) === 1 && ring.available() === 0) {
      this.port.postMessage(ENDED);
      return false;
    }
    if (this.sinceNotice >= this.notifyFrames) {
      this.sinceNotice = 0;
      this.port.postMessage(MOVED);
    }
    return true;
  }
}

/** Captures its input into the ring while the stream runs. */
class InputProcessor extends AudioWorkletProcessor {
  private readonly ring: FloatRing;
  private readonly notifyFrames: number;
  private sinceNotice = 0;

  constructor(options: { processorOptions: RingProcessorOptions }) {
    super(options);
    const o = options.processorOptions;
    this.ring = new FloatRing(o.buffer, o.channels);
    this.notifyFrames = o.notifyFrames;
  }

  process(inputs: Float32Array[][], outputs: Float32Array[][]): boolean {
    const ring = this.ring;
    if (ring.get(Slot.Closing) === 1) return false;
    const frames = outputs[0]?.[0]?.length ?? 128;
    if (ring.get(Slot.Active) !== 1) return true;
    // An unconnected input has no channels: the audio clock still runs, so that is silence.
    const put = ring.writePlanar(inputs[0] ?? [], frames);
    ring.add(Slot.Frames, put);
    if (put < frames) {
      ring.add(Slot.OverrunFrames, frames - put);
      ring.add(Slot.Underruns, 1);
    }
    this.sinceNotice += frames;
    if (this.sinceNotice >= this.notifyFrames) {
      this.sinceNotice = 0;
      this.port.postMessage(MOVED);
    }
    return true;
  }
}

registerProcessor(OUTPUT_PROCESSOR, OutputProcessor);
registerProcessor(INPUT_PROCESSOR, InputProcessor);
