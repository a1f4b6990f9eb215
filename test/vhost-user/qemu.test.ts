/**
 * End to end: a real Linux guest under QEMU 10 (TCG) with
 * `-device vhost-user-snd-pci` connected to this process's VhostUserDaemon.
 * The guest's virtio_snd driver probes the device, aplay plays a WAV and
 * arecord records one; the bytes are compared with what the device's
 * MemoryBackend received and supplied.
 *
 * Skips, saying why, without QEMU >= 10 having vhost-user-snd-pci, or
 * without the native addon. Builds the guest on first use
 * (scripts/guest/build-guest.sh).
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RealTimeClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import type { StreamEvent } from "../../src/stream/pcm-stream.js";
import type { LogEntry } from "../../src/vhost-user/backend.js";
import { VhostUserDaemon } from "../../src/vhost-user/daemon.js";
import { type GuestImage, bootGuest, describeBoot, ensureGuest } from "../guest-helpers/qemu.js";
import { parseWav, sineWav } from "../guest-helpers/wav.js";
import { signal } from "./guest-side.js";
import { missing } from "../guest-helpers/required-parts.js";
import { vhostUserGuestProblem, guestDebug } from "../guest-helpers/cli-daemon.js";

const reason = vhostUserGuestProblem();
const name = `a real Linux guest on vhost-user-snd-pci${reason ? ` (skipped: ${reason})` : ""}`;

const RATE = 48_000;
/** Bytes of S16 stereo in `s` seconds. */
const bytesOf = (s: number): number => Math.round(RATE * s) * 4;

const unavailable = missing("guests", reason);
describe.skipIf(unavailable)(name, () => {
  let guest: GuestImage;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "vsnd-vhost-qemu-"));
    guest = await ensureGuest(undefined, { log: (l) => console.log(l) });
  }, 900_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  // QEMU's vhost-user-snd offers the guest what the back-end offers: the ring layout is the daemon's choice.
  it.each([
    { ring: "split", packed: false },
    { ring: "packed", packed: true },
  ])(
    "plays and records every byte ($ring rings)",
    async ({ ring, packed }) => {
      const socket = join(dir, `snd-${ring}.sock`);
      const clock = new RealTimeClock();
      const recordSource = signal(bytesOf(0.5), 77);
      const audio = new MemoryBackend({ clock, input: () => recordSource });
      const log: LogEntry[] = [];
      const events: StreamEvent[] = [];
      const daemon = new VhostUserDaemon({ socketPath: socket, backend: audio, clock, packed });
      daemon.on("log", (e) => log.push(e));
      daemon.on("stream", (e) => events.push(e));
      const tone = sineWav({ rate: RATE, channels: 2, seconds: 1, hz: 440 });
      try {
        const r = await bootGuest({
          kernel: guest.kernel,
          initrd: guest.initrd,
          sharedMemory: true,
          memory: 256,
          devices: [
            "-chardev",
            `socket,id=vsnd,path=${socket}`,
            "-device",
            "vhost-user-snd-pci,chardev=vsnd",
          ],
          payload: {
            script: [
              "cat /proc/asound/cards",
              "step aplay_l aplay -l",
              "step aplay aplay -D hw:0,0 /payload/tone.wav",
              "step arecord arecord -D hw:0,0 -f S16_LE -c 2 -r 48000 -s 24000 -t raw /tmp/rec.raw",
              "emit_file rec.raw /tmp/rec.raw",
              // Unbinding the driver resets the device (QEMU: GET_VRING_BASE, status 0); binding it starts over.
              "step rmmod rmmod virtio_snd",
              "step insmod insmod /lib/modules/virtio_snd.ko",
              "for i in 1 2 3 4 5 6 7 8 9 10; do [ -e /dev/snd/pcmC0D0p ] && break; sleep 0.5; done",
              "step aplay2 aplay -D hw:0,0 /payload/tone.wav",
              "dmesg | grep -i -E 'virtio|snd' | tail -20",
            ].join("\n"),
            files: { "tone.wav": tone },
          },
          outputDisk: 4 << 20,
          timeoutMs: 150_000,
          payloadTimeoutMs: 90_000,
          ...guestDebug,
        });
        const context =
          `${describeBoot(r)}\n--- console ---\n${r.console}\n--- stderr ---\n${r.stderr}\n` +
          `--- daemon ---\n${log.map((e) => `${e.level}: ${e.message}`).join("\n")}`;
        console.log(describeBoot(r));
        expect(r.timedOut, context).toBe(false);
        expect(r.markers["snd"], context).toBe("ready");
        expect(r.markers["aplay_l"], context).toBe("0");
        expect(r.markers["aplay"], context).toBe("0");
        expect(r.markers["arecord"], context).toBe("0");
        expect(r.markers["rmmod"], context).toBe("0");
        expect(r.markers["insmod"], context).toBe("0");
        expect(r.markers["aplay2"], context).toBe("0");
        expect(
          log.some((e) => /^device reset/.test(e.message)),
          context,
        ).toBe(true);
        expect(
          log.filter((e) => e.level === "error"),
          context,
        ).toEqual([]);

        // Both aplays' bytes reached the device in order; the last period may carry ALSA's padding.
        const data = parseWav(tone);
        expect(data.frames).toBe(RATE);
        const expected = Buffer.from(tone.subarray(44));
        const sessions = audio.playbacksOf(0).filter((p) => p.data.length > 0);
        expect(sessions.length, context).toBe(2);
        for (const p of sessions) {
          const bytes = p.data.bytes();
          expect(bytes.length, context).toBeGreaterThanOrEqual(expected.length);
          expect(Buffer.from(bytes.subarray(0, expected.length)).equals(expected), context).toBe(true);
        }

        // arecord got exactly the device's source, from its first frame.
        const rec = r.files["rec.raw"];
        expect(rec?.length, context).toBe(bytesOf(0.5));
        expect(Buffer.from(rec!).equals(Buffer.from(recordSource)), context).toBe(true);
        expect(events.some((e) => e.type === "start" && e.streamId === 0)).toBe(true);
        expect(events.some((e) => e.type === "start" && e.streamId === 1)).toBe(true);
        // QEMU starts a packed ring at slot 0 with its wrap counter set (0x8000 in the low half), a split ring at 0.
        const started = log.find((e) => /^ring 0 started/.test(e.message))?.message ?? "";
        expect(started, context).toMatch(packed ? /base 0x8000$/ : /base 0x0$/);
      } finally {
        daemon.close();
      }
    },
    200_000,
  );
});
