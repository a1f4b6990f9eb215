/**
 * virtio-snd/testing: a guest-side model of the Linux driver, to test an
 * emulator's use of the device without booting a guest. SimulatedGuest builds
 * real split or packed rings in guest memory, probes the device through
 * virtio-pci or virtio-mmio registers and sends every control request; play()
 * and record() run whole PCM sessions. Core, like "virtio-snd": no Node
 * built-ins. Kept out of the main entry so applications do not ship it.
 */
export {
  SimulatedGuest,
  type GuestTransportKind,
  type Completion,
  type ControlLogEntry,
  type ControlReply,
  type GuestOptions,
} from "../driver/simulated-guest.js";
export {
  play,
  record,
  periodBytesFor,
  type CaptureResult,
  type PcmRateHz,
  type PlaybackResult,
  type SessionParams,
} from "../driver/pcm-session.js";
export { SplitDriverQueue } from "../driver/split-driver.js";
export { PackedDriverQueue } from "../driver/packed-driver.js";
export type { Buf, DriverQueue, DriverQueueOptions, Used } from "../driver/driver-queue.js";
export {
  MmioGuestDriver,
  PciGuestDriver,
  transportBus,
  type DeviceLink,
  type LinkHandlers,
  type PciBus,
} from "../driver/transport-driver.js";
