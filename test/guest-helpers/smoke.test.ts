/**
 * Smoke test of the real-guest harness, without our daemon: a Linux guest
 * plays a tone through QEMU's built-in virtio-sound-pci into a WAV file.
 * Skips (saying why) when QEMU >= 10 with virtio-sound-pci is not installed
 * (scripts/guest/install-qemu.sh installs it). Builds the guest on first use
 * (scripts/guest/build-guest.sh, about a minute).
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootGuest, describeBoot, ensureGuest, findQemu, type GuestImage } from "./qemu.js";
import { dominantHz, parseWav, rms, sineWav } from "./wav.js";
import { missing } from "./required-parts.js";

const qemu = findQemu({ minMajor: 10, devices: ["virtio-sound-pci"] });
const skipReason = qemu.ok ? "" : ` [skipped: ${qemu.reason}]`;
if (!qemu.ok) console.warn(`guest smoke test skipped: ${qemu.reason}`);

const RATE = 48_000;
const SECONDS = 1.5;
const HZ = 440;

const unavailable = missing("guests", qemu.ok ? null : qemu.reason);
describe.skipIf(unavailable)("real Linux guest under QEMU (TCG)", () => {
  let guest: GuestImage;
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), "vsnd-smoke-"));
    guest = await ensureGuest(undefined, { log: (l) => console.log(l) });
  }, 900_000);

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it(`plays a WAV through QEMU's virtio-sound-pci${skipReason}`, async () => {
    const outWav = join(dir, "out.wav");
    const tone = sineWav({ rate: RATE, channels: 2, seconds: SECONDS, hz: HZ });
    const r = await bootGuest({
      kernel: guest.kernel,
      initrd: guest.initrd,
      devices: ["-audiodev", `wav,id=snd0,path=${outWav}`, "-device", "virtio-sound-pci,audiodev=snd0"],
      payload: {
        script: [
          "cat /proc/asound/cards",
          "step aplay_l aplay -l",
          "step arecord_l arecord -l",
          "step aplay aplay -D hw:0,0 /payload/tone.wav",
          "dmesg | grep -i virtio",
          "dmesg > /tmp/dmesg.txt; emit_file dmesg.txt /tmp/dmesg.txt",
          "emit_file tone.wav /payload/tone.wav",
        ].join("\n"),
        files: { "tone.wav": tone },
      },
      outputDisk: 4 << 20,
      timeoutMs: 120_000,
      payloadTimeoutMs: 60_000,
      // VSND_GUEST_DEBUG=1 streams the guest console.
      ...(process.env["VSND_GUEST_DEBUG"] ? { onConsole: (s: string) => process.stdout.write(s) } : {}),
    });
    console.log(describeBoot(r));
    const context = `${describeBoot(r)}\n--- console ---\n${r.console}\n--- stderr ---\n${r.stderr}`;

    expect(r.timedOut, context).toBe(false);
    expect(r.exitCode, context).toBe(0);
    expect(r.markers["snd"], context).toBe("ready");
    expect(r.markers["insmod.failed"], context).toBeUndefined();
    expect(r.console).toMatch(/VirtIO SoundCard/);
    expect(r.markers["aplay_l"], context).toBe("0");
    expect(r.console).toMatch(/card 0: SoundCard \[VirtIO SoundCard\], device 0/);
    expect(r.markers["arecord_l"], context).toBe("0");
    expect(r.markers["aplay"], context).toBe("0");
    expect(r.markers["payload.exit"], context).toBe("0");

    // Files came back through the virtio-blk output disk intact.
    expect(r.errors, context).toEqual([]);
    expect(Buffer.from(r.files["tone.wav"] ?? [])).toEqual(Buffer.from(tone));
    expect(new TextDecoder().decode(r.files["dmesg.txt"])).toMatch(/virtio/i);

    // QEMU's wav audiodev recorded the tone: non-silent, ~SECONDS long (its
    // virtio-sound loses the last ~100-200 frames), at HZ.
    const wav = parseWav(new Uint8Array(await readFile(outWav)));
    const seconds = wav.frames / wav.rate;
    const level = rms(wav);
    const hz = dominantHz(wav);
    console.log(
      `out.wav: ${wav.rate} Hz x${wav.channels}, ${seconds.toFixed(3)} s, rms ${level.toFixed(0)}, ~${hz.toFixed(1)} Hz`,
    );
    expect(seconds).toBeGreaterThan(SECONDS - 0.2);
    expect(seconds).toBeLessThan(SECONDS + 0.3);
    expect(level).toBeGreaterThan((0.5 * 32767) / Math.SQRT2 / 2); // half the tone's rms
    expect(Math.abs(hz - HZ)).toBeLessThan(10);
  }, 180_000);
});
