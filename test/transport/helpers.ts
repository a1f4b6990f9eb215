import { FlatMemory } from "../../src/memory/flat-memory.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { VirtualClock } from "../../src/audio/clock.js";
import { VirtioSound } from "../../src/device/virtio-sound.js";
import type { VirtioDeviceHooks } from "../../src/transport/device.js";
export { signal } from "../signal.js";

/** A sound device over 1 MiB of guest RAM at 0, made with a transport's hooks. */
export function soundFactory(
  memory = new FlatMemory(new ArrayBuffer(1 << 20)),
): (hooks: VirtioDeviceHooks) => VirtioSound {
  const clock = new VirtualClock();
  return (hooks) => new VirtioSound({ memory, clock, backend: new MemoryBackend({ clock }), ...hooks });
}

/** A device that records what the transport asks of it. */
export class FakeDevice {
  deviceId: number = 25;
  deviceFeatures = (1n << 32n) | (1n << 34n) | (1n << 29n);
  readonly configSize = 16;
  readonly config = Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i);
  readonly calls: string[] = [];
  accept = true;
  needsReset = false;
  hooks: VirtioDeviceHooks | null = null;
  layouts = new Map<number, { size: number; descAddr: number; driverAddr: number; deviceAddr: number }>();

  readConfig(offset: number, length: number): Uint8Array {
    const out = new Uint8Array(length);
    for (let i = 0; i < length; i++) out[i] = this.config[offset + i] ?? 0;
    return out;
  }
  writeConfig(offset: number, data: Uint8Array): void {
    this.calls.push(`writeConfig ${offset} ${Array.from(data).join(",")}`);
  }
  setDriverFeatures(features: bigint): boolean {
    this.calls.push(`features 0x${features.toString(16)}`);
    return this.accept && (features & ~this.deviceFeatures) === 0n;
  }
  setupQueue(
    index: number,
    layout: { size: number; descAddr: number; driverAddr: number; deviceAddr: number },
  ): void {
    this.calls.push(`setup ${index} ${layout.size}`);
    this.layouts.set(index, layout);
  }
  stopQueue(index: number): number {
    this.calls.push(`stop ${index}`);
    return 0;
  }
  notify(index: number): void {
    this.calls.push(`notify ${index}`);
  }
  reset(): void {
    this.calls.push("reset");
    this.needsReset = false;
  }
}

/** A FakeDevice factory that keeps the hooks, so a test can raise interrupts as the device would. */
export function fake(): { device: FakeDevice; factory: (hooks: VirtioDeviceHooks) => FakeDevice } {
  const device = new FakeDevice();
  return {
    device,
    factory: (hooks) => {
      device.hooks = hooks;
      return device;
    },
  };
}
