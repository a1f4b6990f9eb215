/**
 * The Node-only parts of virtio-snd: real audio (ALSA through `speaker`), WAV
 * files, file capture sources. Import from "virtio-snd/node".
 */
export {
  SpeakerBackend,
  SpeakerUnavailableError,
  type SpeakerBackendOptions,
  type SpeakerOutput,
} from "./speaker-backend.js";
export {
  clearSpeakerProbeCache,
  probeSpeaker,
  type SpeakerProbeOptions,
  type SpeakerProbeResult,
} from "./speaker-probe.js";
export {
  chooseDefaultSink,
  resolveSink,
  type DefaultSinkOptions,
  type ResolveSinkOptions,
} from "./default-sink.js";
export { WavFileBackend, type WavFileBackendOptions, type WavFileRecord } from "./file-backend.js";
export { WavSource } from "./sources.js";
export { WavWriter, parseWav, pcmFormatName, readWav, type WavData, type WavWriterOptions } from "./wav.js";
export { TraceFileWriter, readTraceFile, readTraceLines, type TraceFileWriterOptions } from "./trace-file.js";
export {
  VhostUserDaemon,
  claimSocketPath,
  type DaemonControlChange,
  type LogEntry,
  type VhostUserDaemonEvents,
  type VhostUserDaemonOptions,
} from "../vhost-user/daemon.js";
export { loadNative, nativeAvailable, type LoadNativeOptions } from "../vhost-user/native.js";
export { NativeClock } from "../vhost-user/native-clock.js";
