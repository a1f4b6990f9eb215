// examples/v86.mjs: a Linux guest in v86 plays a short tune through virtio-snd.
//
//   npm run build && node examples/v86.mjs
//
// The guest (an i386 kernel with virtio_snd, busybox and alsa-utils, and
// SeaBIOS) is built once by `bash scripts/guest-v86/build-v86-guest.sh` into
// ~/.cache/virtio-snd/v86. The tune plays on the speaker where `speaker`
// works, else it lands in WAV files in the working directory.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { gzipSync } from "node:zlib";
import { V86 } from "v86";
import { RealTimeClock } from "virtio-snd";
import { chooseDefaultSink } from "virtio-snd/node";
import { attachToV86, whenV86Loaded } from "virtio-snd/v86";

const guestDir = process.env.VSND_GUEST_CACHE_V86 ?? join(homedir(), ".cache/virtio-snd/v86");
const file = (name) => {
  try {
    return readFileSync(join(guestDir, name));
  } catch {
    console.error(`no v86 guest in ${guestDir}: build it with bash scripts/guest-v86/build-v86-guest.sh`);
    process.exit(1);
  }
};
const buffer = (bytes) => bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.length);

// The tune: a few notes, 48 kHz S16 stereo, as a WAV file.
function tuneWav(notes, noteSeconds = 0.25, rate = 48000) {
  const frames = Math.round(noteSeconds * rate);
  const wav = Buffer.alloc(44 + notes.length * frames * 4);
  wav.write("RIFF", 0);
  wav.writeUInt32LE(wav.length - 8, 4);
  wav.write("WAVEfmt ", 8);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20); // PCM
  wav.writeUInt16LE(2, 22); // channels
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 4, 28);
  wav.writeUInt16LE(4, 32);
  wav.writeUInt16LE(16, 34);
  wav.write("data", 36);
  wav.writeUInt32LE(wav.length - 44, 40);
  notes.forEach((hz, n) => {
    for (let i = 0; i < frames; i++) {
      const fade = Math.min(1, i / 480, (frames - i) / 480); // no clicks between notes
      const v = Math.round(8000 * fade * Math.sin((2 * Math.PI * hz * i) / rate));
      wav.writeInt16LE(v, 44 + (n * frames + i) * 4);
      wav.writeInt16LE(v, 46 + (n * frames + i) * 4);
    }
  });
  return wav;
}

// A "newc" cpio archive: the kernel unpacks it over the guest's own initramfs.
function cpio(files) {
  const parts = [];
  const entry = (name, mode, data = Buffer.alloc(0)) => {
    const fields = [1, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length + 1, 0];
    const header = `070701${fields.map((f) => f.toString(16).padStart(8, "0")).join("")}${name}\0`;
    parts.push(Buffer.from(header), Buffer.alloc(-header.length & 3), data, Buffer.alloc(-data.length & 3));
  };
  entry("payload", 0o040755);
  for (const [name, data] of Object.entries(files)) entry(`payload/${name}`, 0o100755, Buffer.from(data));
  entry("TRAILER!!!", 0);
  return Buffer.concat(parts);
}

// The guest's /init waits for the sound card, then runs /payload/run.sh.
const payload = cpio({
  "run.sh": "aplay -D hw:0,0 tune.wav\n",
  "tune.wav": tuneWav([523.25, 659.25, 783.99, 1046.5, 783.99, 1046.5]),
});

const emulator = new V86({
  wasm_path: join(dirname(createRequire(import.meta.url).resolve("v86")), "v86.wasm"),
  bios: { buffer: buffer(file("bios.bin")) },
  bzimage: { buffer: buffer(file("bzImage")) },
  initrd: { buffer: buffer(Buffer.concat([file("initramfs.cpio.gz"), gzipSync(payload)])) },
  cmdline: "console=ttyS0 tsc=reliable quiet loglevel=3",
  memory_size: 128 << 20,
  autostart: false, // the card goes on the PCI bus before the firmware runs
  disable_keyboard: true,
  disable_mouse: true,
  disable_speaker: true,
  net_device: { type: "none" },
});
await whenV86Loaded(emulator);
const clock = new RealTimeClock();
const backend = await chooseDefaultSink({ clock, log: console.log });
const snd = attachToV86(emulator, { backend, clock });

// Show the guest's console; /init prints "@@VSND done=" when the payload has finished.
const started = Date.now();
let line = "";
emulator.add_listener("serial0-output-byte", async (byte) => {
  if (byte !== 10) return void (line += String.fromCharCode(byte));
  const text = line.trimEnd();
  line = "";
  if (text) console.log(`guest ${((Date.now() - started) / 1000).toFixed(1)} s: ${text}`);
  if (text.startsWith("@@VSND done=")) {
    snd.detach(); // closes the stream, which finishes a WAV file
    backend.close?.();
    await emulator.destroy();
  }
});
await emulator.run();
