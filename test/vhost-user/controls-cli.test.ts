/**
 * `virtio-snd vhost-user --controls` on a real socket: the mixer controls it
 * offers, a guest's CTL_WRITE and the host's setControlValue each becoming the
 * stream's gain in the WAV file, sample for sample, and an event line each.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { dbToGain } from "../../src/audio/gain.js";
import { MIXER_DB, describeControl, mixerControls, mixerGains } from "../../src/cli/mixer.js";
import { runVhostUser } from "../../src/cli/vhost-user.js";
import { parseWav } from "../../src/node/wav.js";
import {
  ALSA_TLV_DB_SCALE,
  VIRTIO_SND_CTL_ROLE_MUTE,
  VIRTIO_SND_CTL_ROLE_VOLUME,
  VIRTIO_SND_F_CTLS,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_R_CTL_WRITE,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_TX,
} from "../../src/index.js";
import type { VhostUserDaemon } from "../../src/vhost-user/daemon.js";
import { capture } from "../cli/capture.js";
import { GuestSide, signal } from "./guest-side.js";
import { NativeFrontEnd, until } from "./native-front-end.js";
import { nativeSuite } from "./native-suite.js";
import { missing } from "../guest-helpers/required-parts.js";

const { status, native, dir, cleanup } = nativeSuite("virtio-snd-controls-");

const roundHalfAway = (y: number): number => Math.sign(y) * Math.floor(Math.abs(y) + 0.5) + 0;

describe("the mixer's controls", () => {
  it("a volume with a dB scale and a switch per stream, ALSA's names, indexed per direction", () => {
    const { controls, mixers } = mixerControls([
      { direction: "output" },
      { direction: "input" },
      { direction: "output" },
    ]);
    expect(controls.map((c) => `${c.name},${c.index ?? 0}`)).toEqual([
      "PCM Playback Volume,0",
      "PCM Playback Switch,0",
      "PCM Capture Volume,0",
      "PCM Capture Switch,0",
      "PCM Playback Volume,1",
      "PCM Playback Switch,1",
    ]);
    expect(controls.map((c) => c.role)).toEqual([
      VIRTIO_SND_CTL_ROLE_VOLUME,
      VIRTIO_SND_CTL_ROLE_MUTE,
      VIRTIO_SND_CTL_ROLE_VOLUME,
      VIRTIO_SND_CTL_ROLE_MUTE,
      VIRTIO_SND_CTL_ROLE_VOLUME,
      VIRTIO_SND_CTL_ROLE_MUTE,
    ]);
    const volume = controls[0]!;
    expect(volume.type === "integer" && [volume.min, volume.max, volume.value]).toEqual([0, 120, [120, 120]]);
    expect(volume.tlv).toEqual({ type: ALSA_TLV_DB_SCALE, value: [-6000 >>> 0, 50] });
    expect(mixers).toEqual([
      { streamId: 0, direction: "output", volumeId: 0, muteId: 1 },
      { streamId: 1, direction: "input", volumeId: 2, muteId: 3 },
      { streamId: 2, direction: "output", volumeId: 4, muteId: 5 },
    ]);
    expect(MIXER_DB).toEqual({ minDb: -60, maxDb: 0, stepDb: 0.5 });
  });
});

const suiteName = status.ok
  ? "--controls on a real socket"
  : `--controls on a real socket (skipped: ${status.reason})`;

const unavailable = missing("native", status.ok ? null : status.reason);
describe.skipIf(unavailable)(suiteName, () => {
  const n = native!;

  it("the guest's CTL_WRITE and the host's setControlValue set the gain the WAV file gets", async () => {
    const clock = new VirtualClock();
    const socket = join(dir, "mixer.sock");
    const wavDir = join(dir, "wav");
    const c = capture();
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    let daemon!: VhostUserDaemon;
    const run = runVhostUser(["--socket", socket, "--output", `wav:${wavDir}`, "--controls"], {
      ...c.io,
      binding: n,
      clock,
      stop: stopped,
      onListening: (d) => (daemon = d),
    });
    cleanup.push(() => stop());
    await until("the daemon", () => daemon !== undefined);
    expect(c.text()).toMatch(/2 jacks, 6 channel maps, 4 mixer controls/);
    expect(daemon.device.controls.get(0).name).toBe("PCM Playback Volume");

    const fe = new NativeFrontEnd(n, socket, cleanup);
    await fe.connect("add", undefined, 1n << BigInt(VIRTIO_SND_F_CTLS));
    const g = fe.guest;
    await g.probe({ jacks: 2, streams: 2, chmaps: 6 });

    // The guest: left at -6 dB (raw 108), right at -60 dB (raw 0).
    const value = new Uint8Array(512);
    new DataView(value.buffer).setUint32(0, 108, true);
    const req = new Uint8Array(8 + 512);
    req.set(GuestSide.u32s(VIRTIO_SND_R_CTL_WRITE, 0));
    req.set(value, 8);
    expect((await g.control(req, 4)).status).toBe(VIRTIO_SND_S_OK);
    await until("the guest's control line", () => /set by the guest/.test(c.text()));
    expect(c.text()).toMatch(
      /control "PCM Playback Volume",0: -6\.00 dB, -60\.00 dB \(set by the guest\): stream 0 gain 0\.5012, 0\.0010/,
    );

    const PERIOD = 1920;
    const audio = signal(PERIOD * 4, 5);
    const params = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000, periodBytes: PERIOD };
    const playOnce = async (): Promise<void> => {
      expect(await g.setParams(0, { ...params, bufferBytes: PERIOD * 4 })).toBe(VIRTIO_SND_S_OK);
      expect(await g.pcm("prepare", 0)).toBe(VIRTIO_SND_S_OK);
      g.queueTx(0, audio, PERIOD);
      expect(await g.pcm("start", 0)).toBe(VIRTIO_SND_S_OK);
      await until("TX taken", () => daemon.device.queue(VIRTIO_SND_VQ_TX)?.inFlight === 4);
      const done: unknown[] = [];
      clock.runUntil(() => {
        done.push(...g.reapTx());
        return done.length === 4;
      });
      expect(await g.pcm("stop", 0)).toBe(VIRTIO_SND_S_OK);
      expect(await g.pcm("release", 0)).toBe(VIRTIO_SND_S_OK);
    };
    await playOnce();

    // The host: both at -6 dB, then the right channel switched off.
    expect(daemon.setControlValue(0, [108, 108])).toBe(true);
    expect(daemon.setControlValue(1, [true, false])).toBe(true);
    expect(daemon.setControlValue(1, [true, false])).toBe(false);
    await playOnce();
    fe.close();
    await until("the disconnect line", () => /waiting for the next one/.test(c.out.join("")));
    stop();
    expect(await run).toBe(0);

    expect(c.text()).toMatch(
      /control "PCM Playback Switch",0: on, off \(set by the host\): stream 0 gain 0\.5012, 0\.0000/,
    );
    const input = new Int16Array(audio.buffer.slice(0));
    const played = (k: number): Int16Array =>
      new Int16Array(
        parseWav(new Uint8Array(readFileSync(join(wavDir, `stream0-${k}.wav`)))).data.slice().buffer,
      );
    const g6 = dbToGain(-6);
    const g60 = dbToGain(-60);
    expect(Array.from(played(1))).toEqual(
      Array.from(input, (v, i) => roundHalfAway(v * (i % 2 === 0 ? g6 : g60))),
    );
    expect(Array.from(played(2))).toEqual(
      Array.from(input, (v, i) => (i % 2 === 0 ? roundHalfAway(v * g6) : 0)),
    );
    // Only the notice of the new folder (a temporary one, outside the working directory).
    expect(c.err.join("")).toBe(
      `virtio-snd vhost-user: creating ${wavDir} for the WAV files: it is outside the working directory (${process.cwd()})\n`,
    );

    // The gains as the mixer computes them from the elements.
    const controls = daemon.device.controls;
    expect(mixerGains(controls.get(0), controls.get(1))).toEqual([g6, 0]);
    expect(describeControl(controls.get(0))).toBe('"PCM Playback Volume",0: -6.00 dB, -6.00 dB');
  });
});
