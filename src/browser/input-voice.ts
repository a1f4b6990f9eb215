/// <reference lib="dom" />
import type { InputSink, Voice } from "../audio/backend.js";
import { StreamConverter } from "../audio/convert.js";
import type { PcmParams } from "../audio/pcm-params.js";
import { BackendError } from "../errors.js";
import { VIRTIO_SND_PCM_FMT_FLOAT } from "../spec/constants.js";
import type { VoiceStats } from "./output-voice.js";
import { INPUT_PROCESSOR, type RingProcessorOptions } from "./protocol.js";
import { FloatRing, Slot } from "./ring.js";

export interface InputVoiceOptions {
  /** Frames the worklet captures between two deliveries to the stream. */
  readonly notifyFrames: number;
  /** What is captured (a microphone's MediaStreamAudioSourceNode); null records silence. */
  readonly input: AudioNode | null;
}

/**
 * An input voice: the input processor captures its input (mixed to the
 * stream's channel count by Web Audio) into a FloatRing while the stream runs;
 * each time it says `notifyFrames` more are there, the page converts them to
 * the stream's format and rate and hands them to the stream. The audio clock
 * paces the capture, as a sound card's would.
 */
export class WebAudioInputVoice implements Voice {
  readonly ring: FloatRing;
  private readonly node: AudioWorkletNode;
  private readonly converter: StreamConverter;
  private readonly floats: Float32Array;
  private readonly bytes: Uint8Array;
  private readonly outFrameBytes: number;
  private readonly ratio: number;
  private running = false;
  private closed = false;
  private streamFrames = 0;

  constructor(
    context: BaseAudioContext,
    readonly streamId: number,
    params: PcmParams,
    private readonly sink: InputSink,
    private readonly options: InputVoiceOptions,
  ) {
    const rate = context.sampleRate;
    const channels = params.channels;
    this.converter = new StreamConverter(
      { format: VIRTIO_SND_PCM_FMT_FLOAT, channels, rate },
      { format: params.format, channels, rate: params.rate },
    );
    this.outFrameBytes = this.converter.outFrameBytes;
    this.ratio = params.rate / rate;
    // A second of audio: the page would have to stall that long to lose any.
    this.ring = FloatRing.create(channels, Math.max(rate, options.notifyFrames * 4));
    this.floats = new Float32Array(this.ring.capacity * channels);
    this.bytes = new Uint8Array(this.floats.buffer);
    const processorOptions: RingProcessorOptions = {
      buffer: this.ring.buffer,
      channels,
      notifyFrames: options.notifyFrames,
    };
    this.node = new AudioWorkletNode(context, INPUT_PROCESSOR, {
      numberOfInputs: 1,
      numberOfOutputs: 1,
      outputChannelCount: [1],
      channelCount: channels,
      channelCountMode: "explicit",
      channelInterpretation: "speakers",
      processorOptions,
    });
    this.node.port.onmessage = () => this.deliver();
    options.input?.connect(this.node);
    // Its output is silence; connected so that the graph renders the processor.
    this.node.connect(context.destination);
  }

  start(): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.ring.set(Slot.Active, 1);
  }

  stop(): void {
    if (!this.running) return;
    this.deliver();
    this.running = false;
    this.ring.set(Slot.Active, 0);
  }

  close(): void {
    if (this.closed) return;
    this.stop();
    this.closed = true;
    this.ring.set(Slot.Closing, 1);
    this.node.port.onmessage = null;
    this.node.port.close();
    this.options.input?.disconnect(this.node);
    this.node.disconnect();
  }

  latencyBytes(): number {
    const frames = Math.round(this.ring.available() * this.ratio) + this.converter.pendingFrames;
    return frames * this.outFrameBytes;
  }

  stats(): VoiceStats {
    const r = this.ring;
    return {
      streamId: this.streamId,
      direction: "input",
      streamFrames: this.streamFrames,
      contextFrames: r.get(Slot.Frames) >>> 0,
      underruns: 0,
      underrunFrames: 0,
      starvedFrames: 0,
      overrunFrames: r.get(Slot.OverrunFrames),
      queuedFrames: r.available(),
      targetFrames: 0,
    };
  }

  contextClosed(): void {
    if (this.closed) return;
    this.running = false;
    this.sink.fail(new BackendError(`stream ${this.streamId}: the AudioContext was closed`));
  }

  /** Hands what the worklet captured to the stream. */
  private deliver(): void {
    if (!this.running) return;
    const frames = this.ring.read(this.floats, this.ring.capacity);
    if (frames === 0) return;
    const out = this.converter.push(this.bytes.subarray(0, frames * this.ring.channels * 4));
    if (out.length === 0) return;
    // What the stream has no buffer for is an overrun it counts itself.
    const taken = this.sink.write(out, 0, out.length);
    this.streamFrames += Math.floor(taken / this.outFrameBytes);
  }
}
