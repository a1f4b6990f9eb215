/**
 * `virtio-snd vhost-user`: arguments, the device it builds, and (on the real
 * socket) a QEMU-like front-end playing and recording through it, with the
 * event lines and the summary it prints when stopped.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { SilenceSource, ToneSource } from "../../src/audio/sources.js";
import { VHOST_USER_HELP, resolveSource, runVhostUser, soundConfig } from "../../src/cli/vhost-user.js";
import { main } from "../../src/cli/main.js";
import {
  VIRTIO_F_RING_PACKED,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import type { VhostUserDaemon } from "../../src/vhost-user/daemon.js";
import { signal } from "./guest-side.js";
import { capture } from "../cli/capture.js";
import { NativeFrontEnd, until } from "./native-front-end.js";
import { nativeSuite } from "./native-suite.js";
import { missing } from "../guest-helpers/required-parts.js";

const { status, native, dir, cleanup } = nativeSuite("virtio-snd-cli-");

describe("arguments", () => {
  it("--help prints the usage and exits 0", async () => {
    const c = capture();
    expect(await runVhostUser(["--help"], c.io)).toBe(0);
    expect(c.out.join("")).toBe(VHOST_USER_HELP);
    expect(VHOST_USER_HELP).toMatch(/--socket PATH/);
    expect(VHOST_USER_HELP).toMatch(/vhost-user-snd-pci/);
  });

  it.each([
    [[], /--socket PATH is required/],
    [["--socket"], /--socket needs a value/],
    [["--socket", "x", "--bogus"], /unknown option "--bogus"/],
    [["--socket", "x", "--streams", "1"], /--streams takes OUT,IN/],
    [["--socket", "x", "--streams", "0,0"], /at least one stream/],
    [["--socket", "x", "--jacks=-1"], /--jacks must be a whole number/],
    [
      ["--socket", "x", "--jacks", "-1"],
      /--jacks needs a value \(one starting with "-" goes as --jacks=VALUE\)/,
    ],
    [["--socket", "x", "--chmaps", "9"], /--chmaps must be a whole number from 0 to 6/],
    [["--socket", "x", "--streams", "0,1", "--chmaps", "3"], /at most 2 channel maps/],
    [["--socket", "x", "--socket", "--output", "null"], /--socket needs a value/],
    [["--socket="], /--socket needs a value/],
    [["--socket", "x", "--controls=on"], /--controls takes no value/],
    [["--socket", "x", "extra"], /unexpected argument "extra"/],
    [["--socket", "x", "--record-audio", "hash"], /--record-audio goes with --record FILE/],
  ])("%j is a usage error: one line, a pointer to --help, exit 2", async (args, message) => {
    const c = capture();
    expect(await runVhostUser(args, c.io)).toBe(2);
    expect(c.err).toHaveLength(1);
    expect(c.err[0]).toMatch(message);
    expect(c.err[0]).toMatch(/^virtio-snd vhost-user: .* \(see virtio-snd vhost-user --help\)\n$/);
    expect(c.out).toEqual([]);
  });

  it("takes --opt=value and --opt value alike, and --socket-path for --socket", async () => {
    if (native === undefined) return;
    for (const args of [
      ["--socket-path", join(dir, "alias.sock"), "--streams=2,0", "--jacks", "0", "--controls"],
      [`--socket=${join(dir, "alias.sock")}`, "--streams", "2,0", "--jacks=0", "--controls"],
    ]) {
      const c = capture();
      let config = "";
      expect(
        await runVhostUser([...args, "--output", "null"], {
          ...c.io,
          binding: native,
          clock: new VirtualClock(),
          stop: Promise.resolve(),
          onListening: (d) => (config = `${d.device.streams.length} ${d.device.controls.length}`),
        }),
      ).toBe(0);
      expect(config).toBe("2 4");
      expect(c.text()).toMatch(
        /alias\.sock: 2 output and 0 input streams, 0 jacks, 4 channel maps, 4 mixer controls/,
      );
    }
  });

  it("--max-buffer-bytes, --max-chain and --max-control-bytes set the device's limits; bad values are usage errors", async () => {
    if (native === undefined) return;
    const c = capture();
    let limits = "";
    expect(
      await runVhostUser(
        [
          "--socket",
          join(dir, "limits.sock"),
          "--output",
          "null",
          "--max-buffer-bytes",
          "65536",
          "--max-chain=64",
          "--max-control-bytes",
          "4096",
        ],
        {
          ...c.io,
          binding: native,
          clock: new VirtualClock(),
          stop: Promise.resolve(),
          onListening: (d) => (limits = JSON.stringify(d.device.limits)),
        },
      ),
    ).toBe(0);
    expect(JSON.parse(limits)).toEqual({
      maxBufferBytes: [65536, 65536],
      maxChain: 64,
      maxControlBytes: 4096,
    });
    for (const bad of [
      ["--max-chain", "0"],
      ["--max-buffer-bytes", "lots"],
    ]) {
      const e = capture();
      expect(
        await runVhostUser(["--socket", join(dir, "bad.sock"), "--output", "null", ...bad], {
          ...e.io,
          binding: native,
          clock: new VirtualClock(),
          stop: Promise.resolve(),
        }),
      ).toBe(2);
      expect(e.err.join("")).toMatch(new RegExp(`${bad[0]} must be a whole number`));
    }
  });

  it("the main command knows it", async () => {
    const write = process.stdout.write;
    let printed = "";
    process.stdout.write = ((s: string) => {
      printed += s;
      return true;
    }) as typeof process.stdout.write;
    try {
      expect(await main(["vhost-user", "--help"])).toBe(0);
      expect(await main(["--help"])).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    expect(printed).toMatch(/Usage: virtio-snd vhost-user --socket PATH/);
    expect(printed).toMatch(/virtio-snd vhost-user --socket PATH \[\.\.\.\]/);
  });

  it("a bad source or sink says why and exits 1", async () => {
    const clock = new VirtualClock();
    for (const [args, message] of [
      [["--input", "tone:loud"], /frequency/],
      [["--input", "wav:/nonexistent/x.wav"], /x\.wav/],
      [["--input", "mic"], /unknown source "mic"/],
      [["--output", "cassette"], /unknown sink "cassette"/],
    ] as const) {
      const c = capture();
      const io = native === undefined ? c.io : { ...c.io, binding: native, clock };
      expect(await runVhostUser(["--socket", join(dir, "unused.sock"), ...args], io)).toBe(native ? 1 : 1);
      expect(c.err.join("")).toMatch(native ? message : /vhost-user is unavailable/);
    }
  });
});

describe("--ring", () => {
  it("offers the packed ring by default, the split ring only with --ring split, and refuses other values", async () => {
    const offers: Record<string, boolean> = {};
    for (const ring of ["default", "packed", "split"]) {
      if (native === undefined) break;
      const c = capture();
      let stop!: () => void;
      const stopped = new Promise<void>((r) => (stop = r));
      let packed: boolean | undefined;
      const args = ["--socket", join(dir, `ring-${ring}.sock`), "--output", "null"];
      if (ring !== "default") args.push("--ring", ring);
      const run = runVhostUser(args, {
        ...c.io,
        binding: native,
        clock: new VirtualClock(),
        stop: stopped,
        onListening: (d) => {
          packed = (d.device.deviceFeatures & (1n << BigInt(VIRTIO_F_RING_PACKED))) !== 0n;
          stop();
        },
      });
      expect(await run).toBe(0);
      offers[ring] = packed!;
    }
    if (native !== undefined) expect(offers).toEqual({ default: true, packed: true, split: false });
    const c = capture();
    expect(await runVhostUser(["--socket", join(dir, "x.sock"), "--ring", "round"], c.io)).toBe(2);
    expect(c.err.join("")).toMatch(/--ring takes "packed" or "split", not "round"/);
  });
});

describe("the device it builds", () => {
  it("defaults to one output and one input, two jacks, six channel maps", () => {
    const c = soundConfig({ outputs: 1, inputs: 1, jacks: 2, chmaps: undefined });
    expect(c.streams!.map((s) => s.direction)).toEqual(["output", "input"]);
    expect(c.jacks).toHaveLength(2);
    expect(c.jacks![0]!.hdaRegDefconf).not.toBe(c.jacks![1]!.hdaRegDefconf);
    expect(c.chmaps!.map((m) => `${m.direction} ${m.positions.length}`)).toEqual([
      "output 2",
      "input 2",
      "output 1",
      "input 1",
      "output 6",
      "output 8",
    ]);
  });

  it("offers only channel maps of directions that have streams", () => {
    const c = soundConfig({ outputs: 2, inputs: 0, jacks: 3, chmaps: 2 });
    expect(c.streams).toHaveLength(2);
    expect(c.jacks).toHaveLength(3);
    expect(c.chmaps!.map((m) => m.direction)).toEqual(["output", "output"]);
  });

  it("sources: silence, tone:HZ, wav:FILE", () => {
    expect(resolveSource("silence")).toBeInstanceOf(SilenceSource);
    expect((resolveSource("tone:440") as ToneSource).frequency).toBe(440);
    expect(() => resolveSource("wav:")).toThrow(/unknown source/);
    expect(() => resolveSource("silence:1")).toThrow(/unknown source/);
  });
});

const suiteName = status.ok ? "on a real socket" : `on a real socket (skipped: ${status.reason})`;

const unavailable = missing("native", status.ok ? null : status.reason);
describe.skipIf(unavailable)(suiteName, () => {
  const n = native!;

  it("prints each stream event, survives a disconnect, and on stop prints frames per stream", async () => {
    const clock = new VirtualClock();
    const socket = join(dir, "cli.sock");
    const wavDir = join(dir, "wav");
    const c = capture();
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    let daemon!: VhostUserDaemon;
    const run = runVhostUser(["--socket", socket, "--output", `wav:${wavDir}`, "--input", "tone:1000"], {
      ...c.io,
      binding: n,
      clock,
      stop: stopped,
      onListening: (d) => (daemon = d),
    });
    cleanup.push(() => stop());
    await until("the daemon", () => daemon !== undefined);
    expect(c.out.join("")).toMatch(
      /listening on .*cli\.sock: 1 output and 1 input streams, 2 jacks, 6 channel maps/,
    );

    const fe = new NativeFrontEnd(n, socket, cleanup);
    await fe.connect("add");
    const g = fe.guest;
    await g.probe({ jacks: 2, streams: 2, chmaps: 6 });
    const params = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000, periodBytes: 1920 };
    expect(await g.setParams(0, { ...params, bufferBytes: 1920 * 4 })).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("prepare", 0)).toBe(VIRTIO_SND_S_OK);
    g.queueTx(0, signal(1920 * 4), 1920);
    expect(await g.pcm("start", 0)).toBe(VIRTIO_SND_S_OK);
    await until("TX taken", () => daemon.device.queue(VIRTIO_SND_VQ_TX)?.inFlight === 4);
    const done: unknown[] = [];
    clock.runUntil(() => {
      done.push(...g.reapTx());
      return done.length === 4;
    });
    expect(await g.pcm("stop", 0)).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("release", 0)).toBe(VIRTIO_SND_S_OK);

    // Record two periods of the tone on stream 1.
    expect(await g.setParams(1, { ...params, bufferBytes: 1920 * 2 })).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("prepare", 1)).toBe(VIRTIO_SND_S_OK);
    const rx = g.queues[VIRTIO_SND_VQ_RX]!;
    g.queueRx(1, 2, 1920);
    expect(await g.pcm("start", 1)).toBe(VIRTIO_SND_S_OK);
    await until("RX taken", () => daemon.device.queue(VIRTIO_SND_VQ_RX)?.inFlight === 2);
    let recorded = 0;
    clock.runUntil(() => {
      for (let u = rx.getUsed(); u !== null; u = rx.getUsed()) recorded++;
      return recorded === 2;
    });
    expect(await g.pcm("stop", 1)).toBe(VIRTIO_SND_S_OK);

    fe.close();
    await until("the disconnect line", () => /waiting for the next one/.test(c.out.join("")));
    stop();
    expect(await run).toBe(0);

    const out = c.out.join("");
    expect(out).toMatch(/stream 0 parameters set: S16, 2 ch, 48000 Hz, period 1920 B, buffer 7680 B/);
    expect(out).toMatch(/stream 0 start/);
    expect(out).toMatch(/stream 0 stop/);
    expect(out).toMatch(/stream 0 release/);
    expect(out).toMatch(/stream 1 start/);
    expect(out).toMatch(/front-end connected/);
    expect(out).toMatch(/stream 0 \(output\): played 1920 frames, 0 xruns/);
    expect(out).toMatch(/stream 1 \(input\): recorded 960 frames, 0 xruns/);
    // Only the notice of the new folder (a temporary one, outside the working directory).
    expect(c.err.join("")).toBe(
      `virtio-snd vhost-user: creating ${wavDir} for the WAV files: it is outside the working directory (${process.cwd()})\n`,
    );
    expect(readdirSync(wavDir)).toEqual(["stream0-1.wav"]);
  });
});
