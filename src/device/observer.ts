/**
 * What a VirtioSound tells an observer (VirtioSoundOptions.recorder): the
 * driver's and host's actions, and every chain it takes and returns. The trace
 * recorder (src/trace/) writes these down; the replayer uses the queue hooks to
 * make recorded chains available when the device looks for one.
 *
 * The device owns this interface so that nothing here depends on who watches.
 * Without an observer the device makes none of these calls.
 */
import type { Clock } from "../audio/clock.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import type { Chain } from "../virtqueue/chain.js";
import type { SoundConfig } from "./config.js";

/** What the device tells its observer about itself when it is built. */
export interface ObservedDevice {
  /** Features the device offers. */
  readonly features: bigint;
  readonly config: SoundConfig;
  readonly clock: Clock;
  readonly memory: GuestMemory;
}

/** Which control-element setter the host called. */
export type ControlOp = "value" | "tlv" | "active";

/** A driver or host action on the device, or a change of its state. */
export type DeviceEvent =
  /** setDriverFeatures, with the device's answer. */
  | { readonly type: "features"; readonly features: bigint; readonly accepted: boolean }
  /** Queue `index` was set up (or rebuilt by restoreState); `base` when the transport gave a ring position. */
  | { readonly type: "queue"; readonly index: number; readonly size: number; readonly base?: number }
  /** The transport stopped queue `index` at ring position `base`. */
  | { readonly type: "stop"; readonly index: number; readonly base: number }
  /** The driver notified queue `index`. */
  | { readonly type: "kick"; readonly index: number }
  /** The device raised queue `index`'s used-buffer interrupt. */
  | { readonly type: "interrupt"; readonly index: number }
  | { readonly type: "reset" }
  /** The device entered the needs-reset state (virtio 1.3 §2.1.2). */
  | { readonly type: "needs-reset"; readonly error: Error }
  /** setJackConnected. */
  | { readonly type: "jack"; readonly jackId: number; readonly connected: boolean }
  /** setControlValue, setControlTlv or setControlActive, with the value given. */
  | { readonly type: "control"; readonly op: ControlOp; readonly controlId: number; readonly value: unknown };

/**
 * The hooks a VirtioSound calls when given an observer. None may throw: the
 * device does not expect them to.
 */
export interface DeviceObserver {
  /** Once, when the device is built. */
  attach(device: ObservedDevice): void;
  event(event: DeviceEvent): void;
  /** The device is about to look for a chain on queue `index` (it may find none). */
  taking(index: number): void;
  /** The device took `chain` from queue `index`. */
  taken(index: number, chain: Chain): void;
  /**
   * The device returns `chain` to queue `index` with `written` bytes written.
   * Called before the ring gets it back, while its segments are still the chain's.
   */
  returning(index: number, chain: Chain, written: number): void;
}
