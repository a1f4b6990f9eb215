/**
 * Default sink selection: speaker when its probe passes (proven in a child by
 * speaker-alsa.test.ts), WAV files otherwise, announced in one line.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import type { AudioBackend } from "../../src/audio/backend.js";
import { type Clock, VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { NullBackend } from "../../src/audio/null-backend.js";
import { chooseDefaultSink, resolveSink } from "../../src/node/default-sink.js";
import { WavFileBackend } from "../../src/node/file-backend.js";

const dir = mkdtempSync(join(tmpdir(), "virtio-snd-sink-"));
const badConfig = join(dir, "no-card.conf");
writeFileSync(badConfig, "pcm.!default {\n  type hw\n  card 7\n}\n");
const noDeviceEnv = { ...process.env, ALSA_CONFIG_PATH: badConfig };

afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Stands in for WavFileBackend: records what it was made with. */
function fakeWav(calls: { dir: string; clock: Clock | undefined }[]) {
  return (d: string, clock: Clock | undefined): AudioBackend => {
    calls.push({ dir: d, clock });
    return new MemoryBackend({ clock: clock ?? new VirtualClock(), retain: false });
  };
}

describe("chooseDefaultSink", () => {
  it("falls back to WAV files in the directory, announced in one line with the reason", async () => {
    const lines: string[] = [];
    const calls: { dir: string; clock: Clock | undefined }[] = [];
    const clock = new VirtualClock();
    const out = join(dir, "wavs");
    const backend = await chooseDefaultSink({
      dir: out,
      clock,
      env: noDeviceEnv,
      log: (l) => lines.push(l),
      wavBackend: fakeWav(calls),
    });
    expect(backend.name).toBe("memory");
    expect(calls).toEqual([{ dir: out, clock }]);
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(/^audio: no sound device \(.+\); writing WAV files to /);
    expect(lines[0]!.endsWith(`writing WAV files to ${out}`)).toBe(true);
    // The reason is the probe's, without the advice meant for an explicit "speaker".
    expect(lines[0]).not.toMatch(/choose another sink/);
  });

  it("defaults to the working directory, and says nothing without a log", async () => {
    const calls: { dir: string; clock: Clock | undefined }[] = [];
    await chooseDefaultSink({ env: noDeviceEnv, wavBackend: fakeWav(calls) });
    expect(calls.map((c) => c.dir)).toEqual([resolve(process.cwd())]);
  });
});

describe("chooseDefaultSink without a WAV factory", () => {
  it("makes a WavFileBackend", async () => {
    const backend = await chooseDefaultSink({ dir: join(dir, "own"), env: noDeviceEnv });
    expect(backend).toBeInstanceOf(WavFileBackend);
    backend.close?.();
  });
});

describe("resolveSink", () => {
  it('"wav:DIR" and "wav" use the factory with that directory', async () => {
    const calls: { dir: string; clock: Clock | undefined }[] = [];
    const clock = new VirtualClock();
    await resolveSink(`wav:${dir}`, { wavBackend: fakeWav(calls), clock });
    await resolveSink("wav", { wavBackend: fakeWav(calls) });
    expect(calls).toEqual([
      { dir, clock },
      { dir: resolve(process.cwd()), clock: undefined },
    ]);
  });

  it('"null" is the NullBackend', async () => {
    const backend = await resolveSink("null", { clock: new VirtualClock() });
    expect(backend).toBeInstanceOf(NullBackend);
  });

  it('"wav:DIR" without a factory loads WavFileBackend', async () => {
    const backend = await resolveSink(`wav:${join(dir, "real")}`, { clock: new VirtualClock() });
    expect(backend.name).toBe("wav");
    expect((backend as unknown as { dir: string }).dir).toBe(join(dir, "real"));
  });

  it("anything else is ERR_INVALID_CONFIG naming the valid specs", async () => {
    for (const spec of ["", "pulse", "null:x", "speaker:"]) {
      await expect(resolveSink(spec)).rejects.toMatchObject({ code: "ERR_INVALID_CONFIG" });
    }
    await expect(resolveSink("alsa")).rejects.toThrow(
      /"speaker", "speaker:DEVICE", "wav", "wav:DIR" or "null"/,
    );
  });
});
