/**
 * Two real Linux guests at once on one `virtio-snd vhost-user` process (two
 * --socket), booted together: each plays its own S16 stereo noise with
 * `aplay -D hw:0,0` (the playbacks overlap as the boots allow); each lands sample for sample in its own folder
 * (DIR/a/, DIR/b/), neither guest's dmesg complains, and on SIGTERM the
 * daemon prints both summaries and exits 0.
 *
 * Skips, saying why, without QEMU >= 10 having vhost-user-snd-pci or without
 * the native addon; fails instead when VSND_REQUIRE_GUESTS=1 (or VSND_REQUIRE_ALL=1).
 */
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseWav } from "../../src/node/wav.js";
import {
  CliDaemon,
  buildDistIfStale,
  complaints,
  noise,
  playedExactly,
  wavFile,
  vhostUserGuestProblem,
  sample,
} from "../guest-helpers/cli-daemon.js";
import { type GuestImage, bootGuest, describeBoot, ensureGuest } from "../guest-helpers/qemu.js";
import { missing } from "../guest-helpers/required-parts.js";

const reason = vhostUserGuestProblem();
const suite = `two real guests at once on one daemon${reason ? ` (skipped: ${reason})` : ""}`;

const S16 = sample("s16", 2, 48_000, 4);

describe.skipIf(missing("guests", reason))(suite, () => {
  let guest: GuestImage;
  let dir: string;
  let daemon: CliDaemon;
  const inputs: { wav: Uint8Array; data: Uint8Array }[] = [];

  beforeAll(async () => {
    buildDistIfStale();
    guest = await ensureGuest(undefined, { log: (l) => console.log(l) });
    dir = mkdtempSync(join(tmpdir(), "vsnd-two-guests-"));
    for (const [i, name] of ["a", "b"].entries()) {
      const data = noise(S16, 0x2545_f491 + i);
      inputs.push({ wav: wavFile(join(dir, `${name}.wav`), S16, data), data });
    }
    daemon = new CliDaemon([
      "--socket",
      join(dir, "a.sock"),
      "--socket",
      join(dir, "b.sock"),
      "--output",
      `wav:${join(dir, "out")}`,
    ]);
    await daemon.waitFor(/listening on/, 15_000);
  }, 900_000);

  afterAll(() => {
    daemon?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("each plays into its own folder bit for bit", async () => {
    const boots = ["a", "b"].map((name, i) =>
      bootGuest({
        kernel: guest.kernel,
        initrd: guest.initrd,
        sharedMemory: true,
        memory: 256,
        devices: [
          "-chardev",
          `socket,id=vsnd,path=${join(dir, `${name}.sock`)}`,
          "-device",
          "vhost-user-snd-pci,chardev=vsnd",
        ],
        payload: {
          script: [
            "step play aplay -D hw:0,0 /payload/in.wav",
            "dmesg > /tmp/dmesg.txt; emit_file dmesg.txt /tmp/dmesg.txt",
          ].join("\n"),
          files: { "in.wav": inputs[i]!.wav },
        },
        outputDisk: 1 << 20,
        timeoutMs: 120_000,
        payloadTimeoutMs: 60_000,
      }),
    );
    const results = await Promise.all(boots);
    for (const [i, r] of results.entries()) {
      const context = `${describeBoot(r)}\n--- console ---\n${r.console}\n${daemon.transcript()}`;
      expect(r.timedOut, context).toBe(false);
      expect(r.markers["play"], context).toBe("0");
      const dmesg = new TextDecoder().decode(r.files["dmesg.txt"] ?? new Uint8Array());
      expect(complaints(dmesg), dmesg).toEqual([]);
      await daemon.waitFor(new RegExp(`\\[${"ab"[i]}\\] .*front-end (disconnected|lost)`), 10_000);
    }
    // Whether the two playbacks overlapped depends on the boots' timing: said, not asserted.
    const at = (re: RegExp): number => daemon.out.find((l) => re.test(l.text))?.at ?? NaN;
    const overlap =
      Math.min(at(/\[a\] .*stream 0 stop/), at(/\[b\] .*stream 0 stop/)) -
      Math.max(at(/\[a\] .*stream 0 start/), at(/\[b\] .*stream 0 start/));
    console.log(`two guests: the playbacks overlapped for ${Math.max(0, overlap)} ms`);
    for (const [i, name] of ["a", "b"].entries()) {
      const path = join(dir, "out", name, "stream0-1.wav");
      expect(existsSync(path), daemon.transcript()).toBe(true);
      const wav = parseWav(new Uint8Array(readFileSync(path)), path);
      expect(playedExactly(inputs[i]!.data, wav.data, 4, [0, 0]), path).toBe("");
    }
    daemon.child.kill("SIGTERM");
    const { code } = await daemon.exited;
    expect(code, daemon.transcript()).toBe(0);
    const out = daemon.out.map((l) => l.text).join("\n");
    expect(out).toMatch(/\[a\] stream 0 \(output\): played \d+ frames, 0 xruns/);
    expect(out).toMatch(/\[b\] stream 0 \(output\): played \d+ frames, 0 xruns/);
  }, 300_000);
});
