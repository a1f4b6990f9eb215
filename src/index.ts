/**
 * virtio-snd: a virtio sound device (virtio 1.3 §5.14) for emulators.
 * Everything exported here is core: it imports no Node built-ins and runs
 * in any JavaScript engine.
 */
export * from "./errors.js";
export * from "./spec/constants.js";
export * from "./spec/structs.js";
export {
  PCM_FORMAT_NAMES,
  controlName,
  eventName,
  pcmFormatName,
  requestName,
  statusName,
} from "./spec/names.js";
export type { GuestMemory } from "./memory/guest-memory.js";
export { isSafeUint } from "./memory/guest-memory.js";
export { FlatMemory } from "./memory/flat-memory.js";
export { RegionMemory, type MemoryRegion, type WindowedRegion } from "./memory/region-memory.js";
export { Chain, ChainFault, readFromChain, writeToChain } from "./virtqueue/chain.js";
export type { DeviceQueue, QueueLayout, RingFeatures } from "./virtqueue/virtqueue.js";
export { SplitQueue } from "./virtqueue/split-ring.js";
export { PackedQueue } from "./virtqueue/packed-ring.js";
export type { AudioBackend, InputSink, OutputSource, Voice } from "./audio/backend.js";
export {
  type Clock,
  ClockTimer,
  NS_PER_SECOND,
  RealTimeClock,
  VirtualClock,
  framesToNs,
} from "./audio/clock.js";
export {
  type PcmParams,
  bytesPerSecond,
  bytesToFrames,
  fillSilence,
  frameBits,
  frameBytes,
  framesToBytes,
  silencePattern,
} from "./audio/pcm-params.js";
export { PacedVoice, periodFrames } from "./audio/paced-voice.js";
export { ByteBuffer } from "./audio/byte-buffer.js";
export {
  MemoryBackend,
  type MemoryBackendOptions,
  type MemoryCapture,
  type MemoryPlayback,
} from "./audio/memory-backend.js";
export { PcmState, PCM_STATE_NAMES } from "./stream/pcm-state.js";
export { PcmStream, type StreamEvent, type StreamEventType } from "./stream/pcm-stream.js";
export {
  CHMAP_PRESETS,
  DEFAULT_CONFIG,
  DEFAULT_FORMATS,
  DEFAULT_RATES,
  type ChmapConfig,
  type Direction,
  type JackConfig,
  type SoundConfig,
  type StreamConfig,
} from "./device/config.js";
export { VirtioSound, type VirtioSoundOptions } from "./device/virtio-sound.js";
export { type DeviceEvent, type DeviceObserver, type ObservedDevice } from "./device/observer.js";
export type { VirtioDevice, VirtioDeviceHooks, VirtioDeviceSource } from "./transport/device.js";
export {
  DEFAULT_QUEUE_SIZE_MAX,
  FEATURE_WINDOWS,
  TransportCore,
  type QueueRegisters,
  type TransportCoreOptions,
  type TransportCoreState,
} from "./transport/core.js";
export {
  PCI_CONFIG_SPACE_SIZE,
  VirtioPciTransport,
  type PciBarInfo,
  type PciBarKind,
  type VirtioPciTransportOptions,
} from "./transport/pci.js";
export {
  VIRTIO_MMIO_CONFIG_OFFSET,
  VirtioMmioTransport,
  type VirtioMmioTransportOptions,
} from "./transport/mmio.js";
export {
  ALSA_TLV_DB_SCALE,
  ALSA_TLV_DB_SCALE_MUTE,
  ControlElements,
  dbScaleTlv,
  muteControl,
  volumeControl,
  type BooleanControlConfig,
  type BytesControlConfig,
  type ControlChange,
  type ControlConfig,
  type ControlElement,
  type ControlHooks,
  type ControlType,
  type ControlValueInput,
  type EnumeratedControlConfig,
  type Iec958ControlConfig,
  type Integer64ControlConfig,
  type IntegerControlConfig,
  type MuteControlOptions,
  type VolumeControlOptions,
} from "./device/controls.js";
export {
  Resampler,
  StreamConverter,
  convertBuffer,
  downmixToStereo,
  isConvertible,
  type PcmFormatSpec,
  type StreamConverterOptions,
} from "./audio/convert.js";
export { NullBackend, type NullBackendOptions } from "./audio/null-backend.js";
export { GainBackend, applyGain, dbToGain, gainSupported } from "./audio/gain.js";
export { PacedInputVoice, openCaptureVoice } from "./audio/paced-input-voice.js";
export {
  BytesSource,
  SilenceSource,
  ToneSource,
  type CaptureParams,
  type CaptureReader,
  type CaptureSource,
  type ToneOptions,
} from "./audio/sources.js";
export {
  TRACE_FORMAT,
  TRACE_VERSION,
  TraceDecoder,
  TraceError,
  encodeEvent,
  encodeHeader,
  encodeTrace,
  parseTrace,
  type AvailEvent,
  type ControlEvent,
  type ControlOp,
  type RingKind,
  type Trace,
  type TraceEvent,
  type TraceEventType,
  type TraceHeader,
  type TraceSegment,
  type UsedEvent,
} from "./trace/format.js";
export {
  MemoryTraceSink,
  SessionTracer,
  TraceRecorder,
  type DeviceTracer,
  type TraceDeviceInfo,
  type TraceRecorderOptions,
  type TraceSink,
} from "./trace/recorder.js";
export { replayTrace } from "./trace/replayer.js";
export { describeDivergence } from "./trace/replay-report.js";
export type {
  Divergence,
  DivergenceReason,
  PlayedSession,
  ReplayCompletion,
  ReplayOptions,
  ReplayResult,
  ReplayStats,
} from "./trace/replay-types.js";
export {
  LiveReplay,
  traceTxAudio,
  type LiveReplayOptions,
  type LiveReplayRunOptions,
} from "./trace/live-replay.js";
