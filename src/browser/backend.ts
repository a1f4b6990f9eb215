/// <reference lib="dom" />
import type { AudioBackend, InputSink, OutputSource, Voice } from "../audio/backend.js";
import type { PcmParams } from "../audio/pcm-params.js";
import { BackendError, VirtioSndError } from "../errors.js";
import { WebAudioInputVoice } from "./input-voice.js";
import { type VoiceStats, WebAudioOutputVoice } from "./output-voice.js";

export interface WebAudioBackendOptions {
  /**
   * Where the worklet module is: by default `worklet.js` beside this module
   * (`new URL("./worklet.js", import.meta.url)`), which is right when the page
   * loads the package's files as they are. A bundler that does not copy that
   * file needs it given here (copy `virtio-snd/dist/browser/worklet.js` and
   * `ring.js`, `protocol.js` beside it, or bundle it on its own).
   */
  readonly workletUrl?: string | URL;
  /** Where output voices play; default the context's destination. */
  readonly destination?: AudioNode;
  /** What input streams record (see WebAudioBackend.microphone); default silence. */
  readonly input?: AudioNode | null;
  /**
   * Milliseconds of audio kept queued for the worklet (default 100): what the
   * page's main thread may stall without a glitch (an emulator on that thread
   * stalls it for tens of milliseconds), and the latency it adds.
   */
  readonly bufferMs?: number;
  /** After an underrun a voice keeps half as much again, up to this (default 400 ms). */
  readonly maxBufferMs?: number;
  /** Frames the worklet moves between two messages to the page (default 256: 5.3 ms at 48 kHz). */
  readonly notifyFrames?: number;
}

/** Why a page cannot host the backend, or null when it can. */
export function webAudioUnsupported(): string | null {
  if (typeof SharedArrayBuffer === "undefined" || globalThis.crossOriginIsolated === false) {
    return (
      "SharedArrayBuffer is not available: the page must be cross-origin isolated " +
      "(serve it with the headers Cross-Origin-Opener-Policy: same-origin and " +
      "Cross-Origin-Embedder-Policy: require-corp)"
    );
  }
  if (typeof AudioWorkletNode === "undefined") {
    return "AudioWorklet is not available: the page must be a secure context (https, or http on localhost)";
  }
  return null;
}

/** The URL of the package's worklet module, beside this file. */
export function defaultWorkletUrl(): URL {
  return new URL("./worklet.js", import.meta.url);
}

/**
 * Plays and records through the Web Audio API. Output streams go through an
 * AudioWorklet fed by a lock-free ring in a SharedArrayBuffer; input streams
 * come from `input` (a microphone) through another worklet. Every format and
 * rate the device offers is converted to (or from) the context's float32 at
 * its rate. The worklet's consumption paces the streams: the guest follows
 * the sound card's clock, never performance.now(), so it does not drift, and
 * a suspended context (an autoplay policy, or suspend()) pauses the streams
 * without losing or repeating a frame.
 */
export class WebAudioBackend implements AudioBackend {
  readonly name = "webaudio";
  /** Each stream's current (or last) voice. */
  private readonly voices = new Map<number, WebAudioOutputVoice | WebAudioInputVoice>();
  private input: AudioNode | null;
  private readonly onStateChange = () => {
    if (this.context.state === "closed") for (const v of this.voices.values()) v.contextClosed();
  };

  private constructor(
    readonly context: BaseAudioContext,
    private readonly options: WebAudioBackendOptions,
  ) {
    this.input = options.input ?? null;
    context.addEventListener("statechange", this.onStateChange);
  }

  /**
   * Loads the worklet into the context. Fails with ERR_BROWSER_UNSUPPORTED when
   * the page is not cross-origin isolated or has no AudioWorklet, and with
   * ERR_BACKEND when the worklet module cannot be loaded.
   */
  static async create(
    context: BaseAudioContext,
    options: WebAudioBackendOptions = {},
  ): Promise<WebAudioBackend> {
    const why = webAudioUnsupported();
    if (why !== null) throw new VirtioSndError("ERR_BROWSER_UNSUPPORTED", why);
    const url = options.workletUrl ?? defaultWorkletUrl();
    try {
      await context.audioWorklet.addModule(url);
    } catch (err) {
      throw new BackendError(`cannot load the worklet module ${String(url)}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    return new WebAudioBackend(context, options);
  }

  /**
   * Asks for the microphone (getUserMedia) with the browser's echo cancellation,
   * noise suppression and gain control off, so the guest records what the
   * microphone hears; returns the node to give as `input`.
   */
  static async microphone(
    context: AudioContext,
    constraints: MediaTrackConstraints = {},
  ): Promise<MediaStreamAudioSourceNode> {
    const stream = await navigator.mediaDevices.getUserMedia({
      audio: { echoCancellation: false, noiseSuppression: false, autoGainControl: false, ...constraints },
    });
    return context.createMediaStreamSource(stream);
  }

  /** What input streams opened from now on record (null: silence). */
  setInput(node: AudioNode | null): void {
    this.input = node;
  }

  /** Resumes a suspended context (call it from a user gesture: autoplay policies). */
  async resume(): Promise<void> {
    if (this.context instanceof AudioContext) await this.context.resume();
  }

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    const rate = this.context.sampleRate;
    const bufferMs = this.options.bufferMs ?? 100;
    const maxBufferMs = Math.max(bufferMs, this.options.maxBufferMs ?? 400);
    const notifyFrames = this.options.notifyFrames ?? 256;
    const destination = this.options.destination ?? this.context.destination;
    const frames = (ms: number) => Math.max(notifyFrames + 256, Math.round((rate * ms) / 1000));
    const voice = new WebAudioOutputVoice(this.context, streamId, params, source, {
      targetFrames: frames(bufferMs),
      maxTargetFrames: frames(maxBufferMs),
      notifyFrames,
      destination,
      // More than the destination takes would be downmixed by Web Audio; the converter does it in the stream's chmap order.
      channels: Math.min(params.channels, Math.max(2, destination.channelCount)),
    });
    this.track(streamId, voice);
    return voice;
  }

  openInput(streamId: number, params: PcmParams, sink: InputSink): Voice {
    const voice = new WebAudioInputVoice(this.context, streamId, params, sink, {
      notifyFrames: this.options.notifyFrames ?? 256,
      input: this.input,
    });
    this.track(streamId, voice);
    return voice;
  }

  /** Counters of the stream's current (or last) voice. */
  stats(streamId: number): VoiceStats | undefined {
    return this.voices.get(streamId)?.stats();
  }

  close(): void {
    for (const v of this.voices.values()) v.close();
    this.context.removeEventListener("statechange", this.onStateChange);
  }

  private track(streamId: number, voice: WebAudioOutputVoice | WebAudioInputVoice): void {
    this.voices.set(streamId, voice);
  }
}
