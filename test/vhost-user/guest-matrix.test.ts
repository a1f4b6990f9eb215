/**
 * The command users run, against real Linux guests: `node bin/virtio-snd.js
 * vhost-user --socket S --output wav:DIR --input wav:FILE` as a child process,
 * and two guests under QEMU 10 (TCG), one after the other, on the same
 * daemon process.
 *
 * Guest 1 lists the card, plays five WAV files in five sample formats with
 * `aplay -D hw:0,0`, each twice (a fault that strikes one playback in two,
 * such as one depending on where the guest's buffer lands in its memory,
 * cannot pass by luck), and records with `arecord`; guest 2 does it again with
 * `vhost-user-snd-pci,packed=on`. Each DIR/stream0-N.wav must hold its input
 * sample for sample (plus, at most, the silence aplay pads its last period
 * with), the recording must be the source's first frames exactly, the guest's
 * dmesg must have no virtio_snd complaint, and on SIGTERM the daemon must
 * print its summary, leave finished files and exit 0.
 *
 * The ring layout: QEMU 10's vhost-user-snd (hw/virtio/vhost-user-base.c)
 * offers the guest every feature the back-end offers; its own `packed`
 * property changes nothing. The command's device offers VIRTIO_F_RING_PACKED,
 * so the Linux driver takes packed rings on both guests. (Split rings with a
 * real guest are covered by qemu.test.ts, whose in-process daemon can turn
 * the packed offer off.) Guest 1 prints what it negotiated; guest 2 must have
 * bit 34 set.
 *
 * Skips, saying why, without QEMU >= 10 having vhost-user-snd-pci, or without
 * the native addon. Builds dist/ first when it is missing or older than src/.
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseWav, pcmFormatName } from "../../src/node/wav.js";
import { VIRTIO_SND_PCM_FMT_S16 } from "../../src/spec/constants.js";
import {
  CliDaemon,
  FEATURES_SCRIPT,
  type Sample,
  buildDistIfStale,
  complaints,
  finished,
  noise,
  playedExactly,
  wavFile,
  vhostUserGuestProblem,
  sample,
  guestDebug,
} from "../guest-helpers/cli-daemon.js";
import {
  type BootResult,
  type GuestImage,
  bootGuest,
  describeBoot,
  ensureGuest,
} from "../guest-helpers/qemu.js";
import { missing } from "../guest-helpers/required-parts.js";

const reason = vhostUserGuestProblem();
if (reason) console.warn(`guest matrix skipped: ${reason}`);
const suite = `virtio-snd vhost-user (the command) with real Linux guests${reason ? ` (skipped: ${reason})` : ""}`;

// -------------------------------------------------------------- signals --

const SAMPLES: readonly Sample[] = [
  sample("s16", 2, 48_000, 0.7),
  sample("u8", 1, 8_000, 0.9),
  sample("s32", 6, 96_000, 0.5),
  sample("float", 2, 44_100, 0.6),
  sample("s24_3", 2, 48_000, 0.6),
];

// ----------------------------------------------------------------- guest --

const REC_FRAMES = 24_000;
const REC_BYTES = REC_FRAMES * 4;

const unavailable = missing("guests", reason);
describe.skipIf(unavailable)(suite, () => {
  let guest: GuestImage;
  let dir: string;
  let outDir: string;
  let daemon: CliDaemon;
  const inputs = new Map<string, { wav: Uint8Array; data: Uint8Array }>();
  let source: Uint8Array;
  const timings: string[] = [];
  /** Output sessions expected so far: stream0-N.wav holds expected[N - 1]. */
  const expected: Sample[] = [];

  beforeAll(async () => {
    const t = Date.now();
    buildDistIfStale();
    guest = await ensureGuest(undefined, { log: (l) => console.log(l) });
    dir = mkdtempSync(join(tmpdir(), "vsnd-guest-matrix-"));
    outDir = join(dir, "out");
    SAMPLES.forEach((s, i) => {
      const data = noise(s, 0x9e37_79b9 + i);
      inputs.set(s.name, { wav: wavFile(join(dir, `${s.name}.wav`), s, data), data });
    });
    const src = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48_000, seconds: 1, width: 2 };
    source = noise(src, 0x5eed);
    wavFile(join(dir, "source.wav"), src, source);
    daemon = new CliDaemon([
      "--socket",
      join(dir, "snd.sock"),
      "--output",
      `wav:${outDir}`,
      "--input",
      `wav:${join(dir, "source.wav")}`,
    ]);
    await daemon.waitFor(/listening on/, 15_000);
    timings.push(`setup (build check, guest, daemon start): ${((Date.now() - t) / 1000).toFixed(1)} s`);
  }, 900_000);

  afterAll(() => {
    daemon?.kill();
    if (timings.length) console.log(`guest matrix timings:\n  ${timings.join("\n  ")}`);
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  async function boot(name: string, device: string, script: string[], files: Record<string, Uint8Array>) {
    const from = daemon.out.length;
    const r = await bootGuest({
      kernel: guest.kernel,
      initrd: guest.initrd,
      sharedMemory: true,
      memory: 256,
      devices: ["-chardev", `socket,id=vsnd,path=${join(dir, "snd.sock")}`, "-device", device],
      payload: { script: script.join("\n"), files },
      outputDisk: 4 << 20,
      timeoutMs: 100_000,
      payloadTimeoutMs: 60_000,
      ...guestDebug,
    });
    timings.push(`${name}: ${describeBoot(r)}`);
    console.log(`${name}: ${describeBoot(r)}`);
    const context = (): string =>
      `${describeBoot(r)}\n--- console ---\n${r.console}\n--- qemu stderr ---\n${r.stderr}\n${daemon.transcript()}`;
    // QEMU gone: the daemon resets the device (closing the files) and waits for the next front-end.
    await daemon.waitFor(/front-end (disconnected|lost)/, 10_000, from).catch((e: Error) => {
      throw new Error(`${e.message}\n${context()}`);
    });
    return { r, context };
  }

  function checkCommon(r: BootResult, context: () => string, steps: string[]): void {
    expect(r.timedOut, context()).toBe(false);
    expect(r.exitCode, context()).toBe(0);
    expect(r.markers["snd"], context()).toBe("ready");
    for (const s of steps) expect(r.markers[s], `step ${s}\n${context()}`).toBe("0");
    expect(r.markers["payload.exit"], context()).toBe("0");
    expect(r.errors, context()).toEqual([]);
    const dmesg = new TextDecoder().decode(r.files["dmesg.txt"] ?? new Uint8Array());
    expect(dmesg, context()).toMatch(/virtio/i);
    expect(complaints(dmesg), dmesg).toEqual([]);
    // arecord got the source's first frames, exactly.
    const rec = r.files["rec.raw"];
    expect(rec?.length, context()).toBe(REC_BYTES);
    expect(Buffer.from(rec!).equals(Buffer.from(source.subarray(0, REC_BYTES))), "recorded bytes").toBe(true);
  }

  /** The files of sessions first..expected.length match their inputs. */
  function checkSessions(first: number, context: () => string): void {
    const params = daemon.out.filter((l) => /stream 0 parameters set:/.test(l.text)).map((l) => l.text);
    for (let n = first; n <= expected.length; n++) {
      const s = expected[n - 1]!;
      const path = join(outDir, `stream0-${n}.wav`);
      expect(existsSync(path), `${path}\n${context()}`).toBe(true);
      const wav = parseWav(new Uint8Array(readFileSync(path)), path);
      expect(
        { format: pcmFormatName(wav.format), channels: wav.channels, rate: wav.rate },
        `session ${n}`,
      ).toEqual({ format: pcmFormatName(s.format), channels: s.channels, rate: s.rate });
      // The period of the last SET_PARAMS in this format bounds aplay's padding.
      const set = params.filter((p) =>
        p.includes(`${pcmFormatName(s.format)}, ${s.channels} ch, ${s.rate} Hz`),
      );
      expect(set.length, `a "parameters set" line for session ${n}\n${context()}`).toBeGreaterThan(0);
      const periodBytes = Number(/period (\d+) B/.exec(set.at(-1)!)?.[1]);
      const frameBytes = s.channels * s.width;
      const input = inputs.get(s.name)!.data;
      expect(playedExactly(input, wav.data, frameBytes, s.silence), `stream0-${n}.wav (${s.alsa})`).toBe("");
      const extra = wav.frames - input.length / frameBytes;
      expect(extra, `stream0-${n}.wav: padding beyond one period`).toBeLessThanOrEqual(
        periodBytes / frameBytes,
      );
      console.log(
        `stream0-${n}.wav: ${s.alsa} ${s.channels} ch ${s.rate} Hz, ${input.length / frameBytes} frames exact` +
          `${extra ? ` + ${extra} frames of aplay's padding` : ""}`,
      );
    }
  }

  it("guest 1: lists the card, plays S16, U8, S32 (6 ch), FLOAT and S24_3 exactly, twice each, records exactly", async () => {
    const files: Record<string, Uint8Array> = {};
    for (const [name, f] of inputs) files[`${name}.wav`] = f.wav;
    const order = SAMPLES.flatMap((s) => [s, s]);
    const steps = SAMPLES.flatMap((s) => [`play_${s.name}_1`, `play_${s.name}_2`]);
    const plays = order.map((s, i) => `step ${steps[i]} aplay -D hw:0,0 /payload/${s.name}.wav`);
    const { r, context } = await boot(
      "guest 1",
      "vhost-user-snd-pci,chardev=vsnd",
      [
        "step cards sh -c 'cat /proc/asound/cards > /tmp/cards.txt'",
        "step aplay_l sh -c 'aplay -l > /tmp/aplay-l.txt 2>&1'",
        "step arecord_l sh -c 'arecord -l > /tmp/arecord-l.txt 2>&1'",
        "emit_file cards.txt /tmp/cards.txt",
        "emit_file aplay-l.txt /tmp/aplay-l.txt",
        "emit_file arecord-l.txt /tmp/arecord-l.txt",
        FEATURES_SCRIPT,
        ...plays,
        `step arecord arecord -D hw:0,0 -f S16_LE -c 2 -r 48000 -s ${REC_FRAMES} -t raw /tmp/rec.raw`,
        "emit_file rec.raw /tmp/rec.raw",
        "dmesg > /tmp/dmesg.txt; emit_file dmesg.txt /tmp/dmesg.txt",
      ],
      files,
    );
    expected.push(...order);
    checkCommon(r, context, ["cards", "aplay_l", "arecord_l", ...steps, "arecord"]);
    const text = (name: string): string => new TextDecoder().decode(r.files[name] ?? new Uint8Array());
    expect(text("cards.txt"), context()).toMatch(/^ ?0 \[SoundCard\s*\]: virtio-snd - VirtIO SoundCard/m);
    expect(text("aplay-l.txt"), context()).toMatch(
      /PLAYBACK[\s\S]*card 0: SoundCard \[VirtIO SoundCard\], device 0/,
    );
    expect(text("arecord-l.txt"), context()).toMatch(
      /CAPTURE[\s\S]*card 0: SoundCard \[VirtIO SoundCard\], device 0/,
    );
    const features = r.markers["features"] ?? "";
    expect(features, context()).toMatch(/^[01]{64}$/);
    expect(features[32], "VIRTIO_F_VERSION_1").toBe("1");
    console.log(
      `guest 1 negotiated ${features[34] === "1" ? "packed" : "split"} rings (features ${features})`,
    );
    // One line per stream event: each playback set its parameters, prepared, started, stopped, released.
    for (const s of SAMPLES)
      await daemon.waitFor(
        new RegExp(`stream 0 parameters set: ${pcmFormatName(s.format)}, ${s.channels} ch, ${s.rate} Hz`),
        0,
      );
    for (const ev of ["prepare", "start", "stop", "release"]) {
      expect(
        daemon.out.filter((l) => new RegExp(`stream 0 ${ev}\\b`).test(l.text)).length,
        `"stream 0 ${ev}" lines\n${context()}`,
      ).toBeGreaterThanOrEqual(order.length);
    }
    expect(
      daemon.out.some((l) => /stream 1 start/.test(l.text)),
      context(),
    ).toBe(true);
    checkSessions(1, context);
  }, 150_000);

  it("guest 2, after guest 1, on the same daemon: packed=on negotiates packed rings, plays and records exactly", async () => {
    const s16 = SAMPLES[0]!;
    const { r, context } = await boot(
      "guest 2",
      "vhost-user-snd-pci,chardev=vsnd,packed=on",
      [
        FEATURES_SCRIPT,
        "step play_s16 aplay -D hw:0,0 /payload/s16.wav",
        `step arecord arecord -D hw:0,0 -f S16_LE -c 2 -r 48000 -s ${REC_FRAMES} -t raw /tmp/rec.raw`,
        "emit_file rec.raw /tmp/rec.raw",
        "dmesg > /tmp/dmesg.txt; emit_file dmesg.txt /tmp/dmesg.txt",
      ],
      { "s16.wav": inputs.get("s16")!.wav },
    );
    const first = expected.length + 1;
    expected.push(s16);
    checkCommon(r, context, ["play_s16", "arecord"]);
    const features = r.markers["features"] ?? "";
    expect(features, context()).toMatch(/^[01]{64}$/);
    expect(features[34], `VIRTIO_F_RING_PACKED (bit 34) in ${features}`).toBe("1");
    // Both front-ends connected to the one process; the second one found the device reset.
    expect(daemon.out.filter((l) => /front-end connected/.test(l.text)).length, context()).toBe(2);
    checkSessions(first, context);
  }, 150_000);

  it("SIGTERM: prints a summary, leaves finished files, exits 0", async () => {
    const t = Date.now();
    daemon.child.kill("SIGTERM");
    const exit = await Promise.race([
      daemon.exited,
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error("no exit within 10 s")), 10_000)),
    ]);
    timings.push(`daemon stop: ${Date.now() - t} ms`);
    const context = daemon.transcript();
    expect(exit, context).toEqual({ code: 0, signal: null });
    expect(
      daemon.out.some((l) => /SIGTERM: stopped/.test(l.text)),
      context,
    ).toBe(true);
    expect(
      daemon.err.filter((l) => /error/i.test(l.text)),
      context,
    ).toEqual([]);

    const names = readdirSync(outDir).sort((a, b) => a.localeCompare(b, "en", { numeric: true }));
    expect(names, context).toEqual(expected.map((_, i) => `stream0-${i + 1}.wav`));
    let frames = 0;
    for (const name of names) {
      const bytes = new Uint8Array(readFileSync(join(outDir, name)));
      expect(finished(bytes), name).toBe("");
      frames += parseWav(bytes, name).frames;
    }
    const played = /stream 0 \(output\): played (\d+) frames, (\d+) xruns/.exec(
      daemon.out.map((l) => l.text).join("\n"),
    );
    const recorded = /stream 1 \(input\): recorded (\d+) frames, (\d+) xruns/.exec(
      daemon.out.map((l) => l.text).join("\n"),
    );
    expect(played, context).not.toBeNull();
    expect(recorded, context).not.toBeNull();
    // Every frame the device took from the guest reached a file.
    expect(Number(played![1]), context).toBe(frames);
    // Two arecords of REC_FRAMES; the device may have filled a few more periods before STOP.
    expect(Number(recorded![1]), context).toBeGreaterThanOrEqual(2 * REC_FRAMES);
    console.log(`daemon summary: ${played![0]}; ${recorded![0]}`);
  }, 30_000);
});
