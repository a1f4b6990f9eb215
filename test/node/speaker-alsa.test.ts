/**
 * The speaker sink for real: real `speaker`, real alsa-lib, an ALSA `file`
 * device over `null` per case that stores exactly the bytes it receives. All
 * speaker work runs in a child process (fixtures/speaker-play.ts), so an ALSA
 * abort could only kill the child, never the test runner.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { StreamConverter } from "../../src/audio/convert.js";
import { framesToBytes, silencePattern } from "../../src/audio/pcm-params.js";
import { resolveSpeakerModule } from "../../src/node/speaker-probe.js";
import * as C from "../../src/spec/constants.js";
import { type ChildReport, SPEAKER_CASES, alsaConfig } from "./fixtures/speaker-cases.js";
import { missing } from "../guest-helpers/required-parts.js";

const here = dirname(fileURLToPath(import.meta.url));
const repo = resolve(here, "../..");
const modulePath = resolveSpeakerModule();
/** speaker installed and its native part built (with libasound2-dev present). */
const speakerBuilt =
  modulePath !== undefined && existsSync(join(dirname(modulePath), "build", "Release", "binding.node"));

const unavailable = missing(
  "alsa",
  speakerBuilt
    ? null
    : "speaker is not installed with its ALSA binding built (Debian: libasound2-dev, then npm ci)",
);
describe.skipIf(unavailable)("SpeakerBackend on a real ALSA file device (child process)", () => {
  let dir = "";
  let report: ChildReport;
  let childMs = 0;

  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "virtio-snd-speaker-"));
    writeFileSync(join(dir, "asound.conf"), alsaConfig(dir));
    const started = performance.now();
    const child = spawnSync(
      process.execPath,
      ["--import", "tsx", join(here, "fixtures", "speaker-play.ts"), dir],
      {
        cwd: repo,
        env: { ...process.env, ALSA_CONFIG_PATH: join(dir, "asound.conf") },
        encoding: "utf8",
        timeout: 60_000,
      },
    );
    childMs = performance.now() - started;
    if (child.status !== 0) {
      throw new Error(
        `speaker-play exited with ${child.status ?? child.signal}:\n${child.stderr}\n${child.stdout}`,
      );
    }
    report = JSON.parse(child.stdout.trim().split("\n").pop()!) as ChildReport;
  }, 60_000);

  afterAll(() => {
    if (dir !== "") rmSync(dir, { recursive: true, force: true });
  });

  const raw = (name: string): Uint8Array => new Uint8Array(readFileSync(join(dir, `${name}.raw`)));
  const played = (name: string): Uint8Array => new Uint8Array(readFileSync(join(dir, `${name}.played`)));
  const reportOf = (name: string) => report.cases.find((c) => c.name === name)!;

  /** The file holds `expected` first, then only the device format's silence (cushion chunks read past the end). */
  function expectPrefixThenSilence(file: Uint8Array, expected: Uint8Array, deviceFormat: number): void {
    expect(file.length).toBeGreaterThanOrEqual(expected.length);
    expect(Buffer.from(file.subarray(0, expected.length)).equals(Buffer.from(expected))).toBe(true);
    const silence = silencePattern(deviceFormat);
    const tail = file.subarray(expected.length);
    expect(tail.every((b, i) => b === silence[i % silence.length])).toBe(true);
  }

  it("the probe in the child passes and reports the formats speaker takes and the exact rates", () => {
    expect(report.probe.ok).toBe(true);
    expect(report.probe.module).toBe("alsa");
    expect([...report.probe.formats!].sort((a, b) => a - b)).toEqual([
      C.VIRTIO_SND_PCM_FMT_S8,
      C.VIRTIO_SND_PCM_FMT_U8,
      C.VIRTIO_SND_PCM_FMT_S16,
      C.VIRTIO_SND_PCM_FMT_U16,
      C.VIRTIO_SND_PCM_FMT_S24_3,
      C.VIRTIO_SND_PCM_FMT_U24_3,
      C.VIRTIO_SND_PCM_FMT_S32,
      C.VIRTIO_SND_PCM_FMT_U32,
      C.VIRTIO_SND_PCM_FMT_FLOAT,
      C.VIRTIO_SND_PCM_FMT_FLOAT64,
    ]);
    expect(report.probe.rates).toContain(48000);
    expect(report.probe.rates).toContain(44100);
  });

  it("every message completes OK, with latency within the cushion, and every Speaker is closed", () => {
    for (const c of report.cases) {
      expect(c.statuses.length, c.name).toBe(25);
      expect(
        c.statuses.every((s) => s === C.VIRTIO_SND_S_OK),
        c.name,
      ).toBe(true);
      expect(c.error, c.name).toBeNull();
      expect(c.closed, c.name).toBe(true);
      expect(c.droppedChunks, c.name).toBe(0);
      const spec = SPEAKER_CASES.find((s) => s.name === c.name)!;
      const cushionBytes = framesToBytes(spec, c.cushionFrames);
      expect(Math.max(...c.latencies), c.name).toBeGreaterThan(0);
      expect(Math.max(...c.latencies), c.name).toBeLessThanOrEqual(cushionBytes);
      // The device file got exactly what was written to the Speaker.
      expect(raw(c.name).length, c.name).toBe(c.bytesWritten);
    }
  });

  for (const name of ["s16", "float", "s24_3", "u8"]) {
    it(`${name}: the guest's bytes reach ALSA unchanged`, () => {
      const spec = SPEAKER_CASES.find((s) => s.name === name)!;
      const c = reportOf(name);
      expect(c.converted).toBe(false);
      expect(c.deviceFormat).toEqual({ format: spec.format, channels: spec.channels, rate: spec.rate });
      expectPrefixThenSilence(raw(name), played(name), spec.format);
    });
  }

  it("s24 (low 24 bits of 32): converted to S32, each sample moved to the top 24 bits, the junk byte dropped", () => {
    const c = reportOf("s24");
    expect(c.converted).toBe(true);
    expect(c.deviceFormat.format).toBe(C.VIRTIO_SND_PCM_FMT_S32);
    const src = played("s24");
    const expected = new Uint8Array(src.length);
    for (let i = 0; i < src.length; i += 4) {
      expected[i] = 0;
      expected[i + 1] = src[i]!;
      expected[i + 2] = src[i + 1]!;
      expected[i + 3] = src[i + 2]!;
    }
    expectPrefixThenSilence(raw("s24"), expected, C.VIRTIO_SND_PCM_FMT_S32);
  });

  it("resample: 44.1 kHz played at 48 kHz is the StreamConverter's output", () => {
    const spec = SPEAKER_CASES.find((s) => s.name === "resample")!;
    const c = reportOf("resample");
    expect(c.converted).toBe(true);
    expect(c.deviceFormat).toEqual({ format: C.VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000 });
    const conv = new StreamConverter(
      { format: spec.format, channels: spec.channels, rate: spec.rate },
      { format: spec.format, channels: spec.channels, rate: 48000 },
    );
    // What push() gives depends only on what it has seen, so it is a prefix of the file.
    const expected = Uint8Array.from(conv.push(played("resample")));
    const file = raw("resample");
    expect(Buffer.from(file.subarray(0, expected.length)).equals(Buffer.from(expected))).toBe(true);
    // 0.25 s at 48 kHz: 12000 frames of 4 bytes (the converter's tail included).
    expect(file.length).toBe(12000 * 4);
  });

  it("chooseDefaultSink picks speaker with one line, and resolveSink('speaker') works, where a device works", () => {
    expect(report.defaultSinkLog).toEqual(["audio: speaker (ALSA default device)"]);
    expect(report.defaultSinkName).toBe("speaker");
    expect(report.resolvedName).toBe("speaker");
    // Timing, for the record: the child (tsx start, seven probes, six plays) took this long.
    expect(childMs).toBeLessThan(60_000);
  });
});
