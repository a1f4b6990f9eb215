import { VirtioSndError } from "../errors.js";
import { VIRTIO_ID_SOUND, VIRTIO_SND_VQ_MAX } from "../spec/constants.js";
import type { QueueLayout } from "../virtqueue/virtqueue.js";

/**
 * What a transport needs of a virtio device: the transport-independent part
 * of the device (virtio 1.3 §2). `VirtioSound` satisfies it as it is.
 *
 * A transport calls these only with values it has checked (a queue index
 * below the queue count, a queue set up after FEATURES_OK), so a device may
 * throw for misuse by its embedder; it must not throw for anything the guest
 * put in memory (an unusable ring is the device's needs-reset state).
 */
export interface VirtioDevice {
  /** The virtio device ID (§5): 25 for sound. */
  readonly deviceId: number;
  /** Feature bits the device offers (§2.2, §6). Must include VIRTIO_F_VERSION_1. */
  readonly deviceFeatures: bigint;
  /** Bytes of device-specific configuration space. */
  readonly configSize: number;
  /** Virtqueues the device has; when absent, the transport knows it from the device ID or its options. */
  readonly numQueues?: number;
  readConfig(offset: number, length: number): Uint8Array;
  writeConfig(offset: number, data: Uint8Array): void;
  /** The driver's features at FEATURES_OK; false refuses them (FEATURES_OK stays clear). */
  setDriverFeatures(features: bigint): boolean;
  /** The driver enabled queue `index` with this layout. */
  setupQueue(index: number, layout: QueueLayout): void;
  /** The driver disabled queue `index` (virtio-mmio QueueReady = 0). */
  stopQueue(index: number): number;
  /** The driver notified queue `index`. */
  notify(index: number): void;
  /** Device reset (§2.4). */
  reset(): void;
  /** Whether the device is in an error state only a reset clears (§2.1.2). */
  readonly needsReset: boolean;
}

/** What the device calls back into its transport: give these to the device's constructor. */
export interface VirtioDeviceHooks {
  /** A used buffer notification for queue `index` (VirtioSoundOptions.interrupt). */
  readonly interrupt: (index: number) => void;
  /** The device needs a reset (VirtioSoundOptions.onNeedsReset). */
  readonly onNeedsReset: (error: Error) => void;
}

/**
 * The device a transport carries: the device itself (the embedder then wires
 * `transport.interrupt` and `transport.deviceNeedsReset` into it), or a factory
 * given the hooks to pass to its constructor:
 *
 * ```ts
 * new VirtioPciTransport({ device: (hooks) => new VirtioSound({ memory, backend, clock, ...hooks }) });
 * ```
 */
export type VirtioDeviceSource<D extends VirtioDevice = VirtioDevice> = D | ((hooks: VirtioDeviceHooks) => D);

/** The device of a source, made with `hooks` when the source is a factory. */
export function resolveDevice<D extends VirtioDevice>(
  source: VirtioDeviceSource<D>,
  hooks: VirtioDeviceHooks,
): D {
  const device = typeof source === "function" ? source(hooks) : source;
  if (device === null || typeof device !== "object" || typeof device.notify !== "function") {
    throw new VirtioSndError("ERR_INVALID_CONFIG", "the transport's device is not a virtio device");
  }
  return device;
}

/** The number of virtqueues of `device`: its own count, the embedder's, or what its device type defines. */
export function queueCount(device: VirtioDevice, configured: number | undefined): number {
  const n =
    configured ?? device.numQueues ?? (device.deviceId === VIRTIO_ID_SOUND ? VIRTIO_SND_VQ_MAX : undefined);
  if (n === undefined) {
    throw new VirtioSndError(
      "ERR_INVALID_CONFIG",
      `device type ${device.deviceId} does not say how many queues it has: give numQueues`,
    );
  }
  if (!Number.isInteger(n) || n < 1 || n > 0xffff) {
    throw new VirtioSndError("ERR_INVALID_CONFIG", `numQueues ${n} is not in 1..65535`);
  }
  return n;
}
