/**
 * Asking for speaker where no device works gives a BackendError, never an
 * abort: the probe lets a child process take the risk. These tests run in
 * the test runner's own process on purpose: if anything loaded speaker here,
 * the ALSA assertion would kill the whole run.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeEach, describe, expect, it } from "vitest";
import { BackendError } from "../../src/errors.js";
import { resolveSink } from "../../src/node/default-sink.js";
import { SpeakerBackend, SpeakerUnavailableError } from "../../src/node/speaker-backend.js";
import {
  clearSpeakerProbeCache,
  exactRates,
  probeSpeaker,
  resolveSpeakerModule,
} from "../../src/node/speaker-probe.js";
import { missing } from "../guest-helpers/required-parts.js";

const dir = mkdtempSync(join(tmpdir(), "virtio-snd-probe-"));
/** An ALSA configuration whose default device is a sound card that does not exist. */
const badConfig = join(dir, "no-card.conf");
writeFileSync(badConfig, "pcm.!default {\n  type hw\n  card 7\n}\n");
const noDeviceEnv = { ...process.env, ALSA_CONFIG_PATH: badConfig };
const speakerInstalled = resolveSpeakerModule() !== undefined;
const noSpeaker = (): boolean =>
  missing("alsa", speakerInstalled ? null : "the optional speaker package is not installed");

afterAll(() => rmSync(dir, { recursive: true, force: true }));
beforeEach(() => clearSpeakerProbeCache());

describe("probeSpeaker", () => {
  it.skipIf(noSpeaker())(
    "where the default device is a missing card: ok false, the abort explained, this process alive",
    async () => {
      const result = await probeSpeaker({ env: noDeviceEnv });
      expect(result.ok).toBe(false);
      if (result.ok) return;
      expect(result.reason).toMatch(
        /^no working ALSA device \(speaker aborts the process when loaded without a sound card\)/,
      );
      expect(result.reason).toMatch(/SIGABRT/);
      expect(result.reason).toMatch(/cannot open device default/);
      // The abort's own words, from the child process that took it (this one got here).
      expect(result.detail).toMatch(/Assertion/);
    },
  );

  it("a module that cannot be loaded: ok false, with what to do", async () => {
    const result = await probeSpeaker({ modulePath: join(dir, "no-such-speaker.js"), env: noDeviceEnv });
    expect(result).toMatchObject({ ok: false });
    if (result.ok) return;
    expect(result.reason).toMatch(
      /^the speaker module cannot be loaded \(Cannot find module .*\): install libasound2-dev and run npm ci$/,
    );
  });

  it("a device that hangs: ok false after the timeout", async () => {
    const hang = join(dir, "hang.js");
    // Blocks while loading, without burning CPU.
    writeFileSync(hang, "Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);\n");
    const t0 = performance.now();
    const result = await probeSpeaker({ modulePath: hang, timeoutMs: 300 });
    expect(performance.now() - t0).toBeLessThan(5000);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(/timed out after 300 ms/);
  });

  it("a crash while loading counts as an abort", async () => {
    const crash = join(dir, "crash.js");
    writeFileSync(crash, "process.abort();\n");
    const result = await probeSpeaker({ modulePath: crash });
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.reason).toMatch(/^no working ALSA device .*killed by SIGABRT/);
  });

  it("caches per ALSA environment and device; refresh asks again", async () => {
    const crash = join(dir, "crash.js");
    writeFileSync(crash, "process.abort();\n");
    const a = probeSpeaker({ modulePath: crash, env: { ALSA_CONFIG_PATH: "/x" } });
    expect(probeSpeaker({ modulePath: crash, env: { ALSA_CONFIG_PATH: "/x", UNRELATED: "1" } })).toBe(a);
    expect(probeSpeaker({ modulePath: crash, env: { ALSA_CONFIG_PATH: "/y" } })).not.toBe(a);
    expect(probeSpeaker({ modulePath: crash, env: { AUDIODEV: "hw:1" } })).not.toBe(a);
    expect(probeSpeaker({ modulePath: crash, env: { ALSA_CONFIG_PATH: "/x" }, device: "hw:1" })).not.toBe(a);
    expect(probeSpeaker({ modulePath: crash, env: { ALSA_CONFIG_PATH: "/x" }, refresh: true })).not.toBe(a);
    await a;
  });

  it("exactRates: a rate mpg123 substituted is not exact", () => {
    const stderr = [
      "",
      "@@virtio-snd-probe rate 44100",
      "",
      "@@virtio-snd-probe rate 48000",
      "[../deps/mpg123/src/output/alsa.c:103] error: initialize_device(): rate 48000 not available, using 44100",
      "",
      "@@virtio-snd-probe rate 96000",
      "",
      "@@virtio-snd-probe end",
    ].join("\n");
    expect(exactRates([44100, 48000, 96000], stderr)).toEqual([44100, 96000]);
    expect(exactRates([44100], stderr)).toEqual([44100]);
  });
});

describe("asking for speaker where no device works", () => {
  it.skipIf(noSpeaker())("SpeakerBackend.create rejects with ERR_BACKEND and advice", async () => {
    const err = await SpeakerBackend.create({ env: noDeviceEnv }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(BackendError);
    expect(err).toBeInstanceOf(SpeakerUnavailableError);
    expect((err as BackendError).code).toBe("ERR_BACKEND");
    expect((err as Error).message).toMatch(
      /^cannot play through speaker on the default audio device: no working ALSA device/,
    );
    expect((err as Error).message).toMatch(/choose another sink \("wav:DIR" or "null"\)/);
  });

  it.skipIf(noSpeaker())('resolveSink("speaker") rejects with code ERR_BACKEND', async () => {
    await expect(resolveSink("speaker", { env: noDeviceEnv })).rejects.toMatchObject({
      name: "SpeakerUnavailableError",
      code: "ERR_BACKEND",
    });
    await expect(resolveSink("speaker:hw:9,0", { env: noDeviceEnv })).rejects.toMatchObject({
      code: "ERR_BACKEND",
      message: expect.stringMatching(/audio device "hw:9,0"/) as unknown,
    });
  });
});
