import { FlatMemory } from "../../src/memory/flat-memory.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { VirtualClock } from "../../src/audio/clock.js";
import { VirtioSound } from "../../src/device/virtio-sound.js";
import type { VirtioDeviceHooks } from "../../src/transport/device.js";

/** A deterministic, non-repeating test signal: every byte position is distinguishable. */
export function signal(bytes: number, seed = 1): Uint8Array {
  const out = new Uint8Array(bytes);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < bytes; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}

/** A sound device over 1 MiB of guest RAM at 0, made with a transport's hooks. */
export function soundFactory(
  memory = new FlatMemory(new ArrayBuffer(1 << 20)),
): (hooks: VirtioDeviceHooks) => VirtioSound {
  const clock = new VirtualClock();
  return (hooks) => new VirtioSound({ memory, clock, backend: new MemoryBackend({ clock }), ...hooks });
}
