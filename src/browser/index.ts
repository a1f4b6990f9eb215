/**
 * virtio-snd/browser: play and record a guest's streams through the Web Audio
 * API (AudioWorklet, getUserMedia). Browser only; the page must be
 * cross-origin isolated for SharedArrayBuffer.
 */
export {
  WebAudioBackend,
  type WebAudioBackendOptions,
  defaultWorkletUrl,
  webAudioUnsupported,
} from "./backend.js";
export type { VoiceStats } from "./output-voice.js";
export { FloatRing, Slot } from "./ring.js";
export { INPUT_PROCESSOR, OUTPUT_PROCESSOR, type RingNotice, type RingProcessorOptions } from "./protocol.js";
