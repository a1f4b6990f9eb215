/**
 * A real Linux guest inside v86 (in this process) with the card attached by
 * attachToV86: the driver probes it through v86's PCI bus, `aplay -D hw:0,0`
 * of three formats and rates (each twice) lands in the backend bit-exact,
 * `arecord` gets the source's bytes exactly, the driver can be unbound and
 * bound again, and both ring layouts work (packed, and split with the packed
 * offer withheld).
 *
 * Skips (saying why) when the v86 guest is unavailable, unless
 * VSND_REQUIRE_GUESTS=1, which turns that into a failure.
 */
import { createHash } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RealTimeClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import type { StreamEvent } from "../../src/stream/pcm-stream.js";
import { type V86Sound, attachToV86 } from "../../src/v86/attach.js";
import type { V86Emulator } from "../../src/v86/types.js";
import {
  type Sample,
  complaints,
  noise,
  playedExactly,
  wavFile,
  sample,
} from "../guest-helpers/cli-daemon.js";
import {
  type V86GuestImage,
  bootV86Guest,
  describeV86Boot,
  ensureV86Guest,
  v86GuestProblem,
} from "../guest-helpers/v86.js";
import { missing } from "../guest-helpers/required-parts.js";

const { problem, skipReason } = v86GuestProblem("v86 sound tests");

const SAMPLES: readonly Sample[] = [
  sample("s16", 2, 48_000, 0.5),
  sample("u8", 1, 8_000, 0.6),
  sample("s32", 2, 96_000, 0.3),
];
const REC_FRAMES = 12_000;
const REC_BYTES = REC_FRAMES * 4;

const unavailable = missing("guests", problem);
describe.skipIf(unavailable)("a Linux guest inside v86 with the sound card", () => {
  let guest: V86GuestImage;
  let dir: string;
  const inputs = new Map<string, { wav: Uint8Array; data: Uint8Array }>();
  const source = noise(sample("s16", 2, 48_000, 1), 0x5eed);

  beforeAll(async () => {
    guest = await ensureV86Guest(undefined, { log: (l) => console.log(l) });
    dir = mkdtempSync(join(tmpdir(), "vsnd-v86-"));
    SAMPLES.forEach((s, i) => {
      const data = noise(s, 0x1234_5678 + i);
      inputs.set(s.name, { wav: wavFile(join(dir, `${s.name}.wav`), s, data), data });
    });
  }, 25 * 60_000);

  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  /** Boots the guest with the card attached; returns what the guest and the backend saw. */
  async function run(script: string[], packed: boolean) {
    const clock = new RealTimeClock();
    const backend = new MemoryBackend({ clock, input: () => source });
    const events: StreamEvent[] = [];
    let snd: V86Sound | undefined;
    const files: Record<string, Uint8Array> = {};
    for (const [name, f] of inputs) files[`${name}.wav`] = f.wav;
    const r = await bootV86Guest({
      guest,
      payload: { script: script.join("\n"), files },
      timeoutMs: 150_000,
      payloadTimeoutMs: 120_000,
      setup: (emulator) => {
        snd = attachToV86(emulator as unknown as V86Emulator, {
          backend,
          clock,
          packed,
          onStreamEvent: (e) => events.push(e),
        });
      },
    });
    const context = `${describeV86Boot(r)}\n--- console ---\n${r.console}`;
    return { r, backend, events, snd: snd!, context };
  }

  function checkPlayed(backend: MemoryBackend, order: readonly Sample[], context: string): void {
    const sessions = backend.playbacksOf(0);
    expect(sessions.length, context).toBe(order.length);
    order.forEach((s, i) => {
      const p = sessions[i]!;
      expect(
        { format: p.params.format, channels: p.params.channels, rate: p.params.rate },
        `session ${i + 1}`,
      ).toEqual({
        format: s.format,
        channels: s.channels,
        rate: s.rate,
      });
      const input = inputs.get(s.name)!.data;
      const frameBytes = s.channels * s.width;
      expect(
        playedExactly(input, p.data.bytes(), frameBytes, s.silence),
        `session ${i + 1} (${s.alsa})`,
      ).toBe("");
      expect(p.data.length - input.length, "padding beyond one period").toBeLessThanOrEqual(
        p.params.periodBytes,
      );
    });
  }

  it(`packed rings: probes, plays three formats twice each bit-exact, records exactly, survives unbind and bind${skipReason}`, async () => {
    const plays = SAMPLES.flatMap((s) =>
      [1, 2].map((n) => `step play_${s.name}_${n} aplay -q -D hw:0,0 /payload/${s.name}.wav`),
    );
    const { r, backend, events, context } = await run(
      [
        'marker cards "$(head -n1 /proc/asound/cards)"',
        ...plays,
        `step arecord arecord -q -D hw:0,0 -f S16_LE -c 2 -r 48000 -s ${REC_FRAMES} -t raw /tmp/rec.raw`,
        'marker rec_sha "$(sha256sum /tmp/rec.raw | cut -d" " -f1)"',
        'dev="$(basename "$(readlink /sys/class/sound/card0/device)")"',
        'marker dev "$dev"',
        'step unbind sh -c "echo $dev > /sys/bus/virtio/drivers/virtio_snd/unbind"',
        'marker unbound "$(cat /proc/asound/cards | head -n1)"',
        'step bind sh -c "echo $dev > /sys/bus/virtio/drivers/virtio_snd/bind"',
        "step play_s16_after_bind aplay -q -D hw:0,0 /payload/s16.wav",
        "dmesg > /tmp/dmesg.txt; emit_file dmesg.txt /tmp/dmesg.txt",
      ],
      true,
    );
    console.log(`v86, packed: ${describeV86Boot(r)}`);
    console.log(`v86: boot to sound card ${((r.markerMs["cards"] ?? NaN) / 1000).toFixed(1)} s`);
    expect(r.timedOut, context).toBe(false);
    expect(r.markers["cards"], context).toMatch(/VirtIO SoundCard/);
    for (const s of SAMPLES)
      for (const n of [1, 2])
        expect(r.markers[`play_${s.name}_${n}`], `aplay ${s.name} #${n}\n${context}`).toBe("0");
    expect(r.markers["arecord"], context).toBe("0");
    const want = createHash("sha256").update(source.subarray(0, REC_BYTES)).digest("hex");
    expect(r.markers["rec_sha"], "arecord got the source's first frames exactly").toBe(want);
    expect(r.markers["unbind"], context).toBe("0");
    expect(r.markers["unbound"] ?? "", "no card while unbound").toMatch(/no soundcards/);
    expect(r.markers["bind"], context).toBe("0");
    expect(r.markers["play_s16_after_bind"], context).toBe("0");
    checkPlayed(backend, [...SAMPLES.flatMap((s) => [s, s]), SAMPLES[0]!], context);
    const dmesg = new TextDecoder().decode(r.files["dmesg.txt"] ?? new Uint8Array());
    expect(complaints(dmesg), dmesg).toEqual([]);
    expect(
      events.filter((e) => e.type === "error" || e.type === "dropped"),
      context,
    ).toEqual([]);
  }, 200_000);

  it(`split rings (the packed offer withheld): plays and records exactly${skipReason}`, async () => {
    const { r, backend, snd, context } = await run(
      [
        'marker features "$(cat /sys/bus/virtio/devices/*/features | head -n1)"',
        "step play_s16_1 aplay -q -D hw:0,0 /payload/s16.wav",
        "step play_s16_2 aplay -q -D hw:0,0 /payload/s16.wav",
        `step arecord arecord -q -D hw:0,0 -f S16_LE -c 2 -r 48000 -s ${REC_FRAMES} -t raw /tmp/rec.raw`,
        'marker rec_sha "$(sha256sum /tmp/rec.raw | cut -d" " -f1)"',
      ],
      false,
    );
    console.log(`v86, split: ${describeV86Boot(r)}`);
    expect(r.timedOut, context).toBe(false);
    expect((snd.device.negotiatedFeatures >> 34n) & 1n, "VIRTIO_F_RING_PACKED not negotiated").toBe(0n);
    expect(r.markers["play_s16_1"], context).toBe("0");
    expect(r.markers["play_s16_2"], context).toBe("0");
    expect(r.markers["arecord"], context).toBe("0");
    expect(r.markers["rec_sha"]).toBe(
      createHash("sha256").update(source.subarray(0, REC_BYTES)).digest("hex"),
    );
    checkPlayed(backend, [SAMPLES[0]!, SAMPLES[0]!], context);
  }, 200_000);
});
