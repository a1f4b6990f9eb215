// examples/v86-attach.ts: the sound card on a v86 emulator's PCI bus (attach before it runs).
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { V86 } from "v86";
import { NullBackend, RealTimeClock } from "virtio-snd";
import { attachToV86, whenV86Loaded } from "virtio-snd/v86";

const wasm_path = join(dirname(createRequire(import.meta.url).resolve("v86")), "v86.wasm");
// A real use gives bios, bzimage, initrd and cmdline too (see examples/v86.mjs).
const emulator = new V86({ wasm_path, memory_size: 32 << 20, autostart: false, disable_speaker: true });
await whenV86Loaded(emulator); // attach before the emulator runs, so SeaBIOS finds the card
const clock = new RealTimeClock();
const snd = attachToV86(emulator, { backend: new NullBackend({ clock }), clock });
console.log(`virtio-snd is PCI device ${snd.pciId >> 3} on v86's bus`);
const saved = snd.saveState(); // beside emulator.save_state(); snd.restoreState(saved) after restore_state()
console.log(`its state: ${saved.length} bytes`);
snd.detach();
await emulator.destroy();
