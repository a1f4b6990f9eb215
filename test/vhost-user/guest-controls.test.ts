/**
 * `virtio-snd vhost-user --controls` (the command, in this process) with a
 * real Linux guest under QEMU 10 (`vhost-user-snd-pci,controls=on`):
 *   - the guest's `amixer` lists the volume (with its dB scale) and the switch;
 *   - `aplay` at the default 0 dB lands in the WAV file bit for bit;
 *   - after `amixer sset PCM -6dB`, every sample is the input's times
 *     10^(-6/20), rounded half away from zero;
 *   - the host then switches the right channel off (daemon.setControlValue):
 *     the guest's `amixer events` sees the CTL_NOTIFY and `amixer cget` the
 *     new value, and the next playback has a silent right channel.
 *
 * Skips, saying why, without QEMU >= 10 having vhost-user-snd-pci, or without
 * the native addon.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { dbToGain } from "../../src/audio/gain.js";
import { runVhostUser } from "../../src/cli/vhost-user.js";
import { WavWriter, parseWav } from "../../src/node/wav.js";
import { VIRTIO_SND_PCM_FMT_S16 } from "../../src/spec/constants.js";
import type { VhostUserDaemon } from "../../src/vhost-user/daemon.js";
import { type GuestImage, bootGuest, describeBoot, ensureGuest } from "../guest-helpers/qemu.js";
import { signal } from "./guest-side.js";
import { missing } from "../guest-helpers/required-parts.js";
import { vhostUserGuestProblem, guestDebug } from "../guest-helpers/cli-daemon.js";

const reason = vhostUserGuestProblem();
const name = `--controls with a real Linux guest's amixer${reason ? ` (skipped: ${reason})` : ""}`;

const FRAMES = 24_000;
const roundHalfAway = (y: number): number => Math.sign(y) * Math.floor(Math.abs(y) + 0.5) + 0;

/** "" when `out` is `expected` followed by nothing but zero samples (aplay's padding), else what differs. */
function matches(out: Int16Array, expected: readonly number[]): string {
  if (out.length < expected.length) return `${out.length} samples, expected ${expected.length}`;
  for (let i = 0; i < expected.length; i++)
    if (out[i] !== expected[i]) return `sample ${i} (frame ${i >> 1}) is ${out[i]}, expected ${expected[i]}`;
  for (let i = expected.length; i < out.length; i++)
    if (out[i] !== 0) return `sample ${i} after the input is ${out[i]}`;
  return "";
}

const unavailable = missing("guests", reason);
describe.skipIf(unavailable)(name, () => {
  let guest: GuestImage;
  let dir: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "vsnd-guest-controls-"));
    guest = await ensureGuest(undefined, { log: (l) => console.log(l) });
  }, 900_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("amixer lists and sets the volume, the output follows exactly, a host change reaches amixer", async () => {
    const socket = join(dir, "snd.sock");
    const outDir = join(dir, "out");
    const data = signal(FRAMES * 4, 0x51ed);
    const w = new WavWriter(join(dir, "noise.wav"), {
      format: VIRTIO_SND_PCM_FMT_S16,
      channels: 2,
      rate: 48_000,
    });
    w.write(data);
    w.close();
    const input = Array.from(new Int16Array(data.buffer.slice(0)));

    const out: string[] = [];
    const err: string[] = [];
    let stop!: () => void;
    const stopped = new Promise<void>((resolve) => (stop = resolve));
    let daemon: VhostUserDaemon | undefined;
    let releases = 0;
    const run = runVhostUser(
      ["--socket", socket, "--output", `wav:${outDir}`, "--controls", "--streams", "1,1"],
      {
        out: { write: (s: string) => out.push(s) },
        err: { write: (s: string) => err.push(s) },
        stop: stopped,
        onListening: (d) => {
          daemon = d;
          // After the second playback, the host mutes the right channel of stream 0's switch.
          d.on("stream", (e) => {
            if (e.streamId === 0 && e.type === "release" && ++releases === 2)
              d.setControlValue(d.device.controls.find("PCM Playback Switch"), [true, false]);
          });
        },
      },
    );
    const transcript = (): string => `--- daemon ---\n${out.join("")}${err.join("")}`;
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
          "vhost-user-snd-pci,chardev=vsnd,controls=on",
        ],
        payload: {
          script: [
            // On the console (a tty: amixer's output is line-buffered there, not lost when it is killed).
            "amixer -c 0 events &",
            "EVENTS=$!",
            "step controls sh -c 'amixer -c 0 contents > /tmp/contents.txt 2>&1; amixer -c 0 scontents >> /tmp/contents.txt 2>&1'",
            "emit_file contents.txt /tmp/contents.txt",
            "step play_0db aplay -D hw:0,0 /payload/noise.wav",
            "step set_6db sh -c 'amixer -c 0 -- sset PCM,0 playback -6dB > /tmp/sset.txt 2>&1'",
            "emit_file sset.txt /tmp/sset.txt",
            "step play_6db aplay -D hw:0,0 /payload/noise.wav",
            // The host switches the right channel off after that playback: wait for amixer to see it.
            'step host_change sh -c \'i=0; while [ $i -lt 150 ]; do amixer -c 0 cget name="PCM Playback Switch" | grep -q ": values=on,off" && exit 0; i=$((i+1)); sleep 0.2; done; exit 1\'',
            "step play_muted aplay -D hw:0,0 /payload/noise.wav",
            "sleep 0.5; kill $EVENTS",
            "dmesg > /tmp/dmesg.txt; emit_file dmesg.txt /tmp/dmesg.txt",
          ].join("\n"),
          files: { "noise.wav": new Uint8Array(readFileSync(join(dir, "noise.wav"))) },
        },
        outputDisk: 4 << 20,
        timeoutMs: 150_000,
        payloadTimeoutMs: 100_000,
        ...guestDebug,
      });
      const text = (f: string): string => new TextDecoder().decode(r.files[f] ?? new Uint8Array());
      const context = (): string =>
        `${describeBoot(r)}\n--- console ---\n${r.console}\n--- qemu stderr ---\n${r.stderr}\n${transcript()}\n` +
        `--- contents ---\n${text("contents.txt")}\n--- sset ---\n${text("sset.txt")}`;
      console.log(describeBoot(r));
      expect(r.timedOut, context()).toBe(false);
      expect(r.markers["snd"], context()).toBe("ready");
      for (const s of ["controls", "play_0db", "set_6db", "play_6db", "host_change", "play_muted"])
        expect(r.markers[s], `step ${s}\n${context()}`).toBe("0");

      // amixer lists the elements, with the dB scale of the volume.
      const contents = text("contents.txt");
      expect(contents, context()).toMatch(/name='PCM Playback Volume'/);
      expect(contents, context()).toMatch(/name='PCM Playback Switch'/);
      expect(contents, context()).toMatch(/name='PCM Capture Volume'/);
      expect(contents, context()).toMatch(/type=INTEGER,access=rw---R--,values=2,min=0,max=120,step=1/);
      expect(contents, context()).toMatch(/dBscale-min=-60\.00dB,step=0\.50dB,mute=0/);
      expect(contents, context()).toMatch(/Simple mixer control 'PCM',0/);
      // The guest's setting, and the host's, as the daemon reported them.
      const lines = out.join("");
      expect(lines, context()).toMatch(
        /control "PCM Playback Volume",0: -6\.00 dB, -6\.00 dB \(set by the guest\)/,
      );
      expect(lines, context()).toMatch(/control "PCM Playback Switch",0: on, off \(set by the host\)/);
      // amixer events saw the host's change (a CTL_NOTIFY: the guest itself never wrote the switch).
      expect(r.console, context()).toMatch(/event value: numid=\d+,iface=MIXER,name='PCM Playback Switch'/);

      // What reached the backend.
      const g = dbToGain(-6);
      const wav = (k: number): Int16Array =>
        new Int16Array(
          parseWav(new Uint8Array(readFileSync(join(outDir, `stream0-${k}.wav`)))).data.slice().buffer,
        );
      expect(matches(wav(1), input), "0 dB: bit for bit").toBe("");
      expect(
        matches(
          wav(2),
          input.map((v) => roundHalfAway(v * g)),
        ),
        "-6 dB",
      ).toBe("");
      expect(
        matches(
          wav(3),
          input.map((v, i) => (i % 2 === 0 ? roundHalfAway(v * g) : 0)),
        ),
        "-6 dB, right channel off",
      ).toBe("");
      // Nothing on stderr but the notice of the new (temporary) folder.
      expect(
        err.filter((l) => !/creating .* for the WAV files/.test(l)),
        transcript(),
      ).toEqual([]);
      expect(daemon).toBeDefined();
    } finally {
      stop();
      await run;
    }
  }, 300_000);
});
