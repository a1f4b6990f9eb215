/**
 * Several guests in one `virtio-snd vhost-user` process: each socket its own
 * device, streams and WAV folder; one guest's failure never touches another.
 * QEMU-like front-ends on the real sockets, the device's clock virtual.
 */
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { runVhostUser } from "../../src/cli/vhost-user.js";
import { readWav } from "../../src/node/wav.js";
import type { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_S_OK, VIRTIO_SND_VQ_TX } from "../../src/spec/constants.js";
import type { VhostUserDaemon } from "../../src/vhost-user/daemon.js";
import { type NativeBinding, loadNative, nativeAvailable } from "../../src/vhost-user/native.js";
import { capture } from "../cli/capture.js";
import { signal } from "./guest-side.js";
import { NativeFrontEnd, until } from "./native-front-end.js";
import { releasedAfterEach } from "./released-after-each.js";

const status = nativeAvailable();
const dir = mkdtempSync(join(tmpdir(), "virtio-snd-guests-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const cleanup = releasedAfterEach();

describe("arguments for several guests", () => {
  it.each([
    [["--socket", "a.sock", "--socket", "a.sock"], /--socket a\.sock is given twice/],
    [["--socket", "x/a.sock", "--socket", "y/a.sock"], /two sockets are named "a"/],
    [["--socket-dir", "d", "--socket", "a.sock"], /do not go together/],
    [["--socket", "a.sock", "--guests", "2"], /--guests N goes with --socket-dir DIR/],
    [["--socket-dir", "d", "--guests", "0"], /--guests must be a whole number from 1 to 256/],
    [["--socket", "a.sock", "--socket", "b.sock", "--record", "t.jsonl"], /--record goes with one guest/],
  ])("%j: %s", async (args, message) => {
    const c = capture();
    expect(await runVhostUser(args, c.io)).toBe(2);
    expect(c.err.join("")).toMatch(message);
  });
});

const suiteName = status.ok ? "on real sockets" : `on real sockets (skipped: ${status.reason})`;

describe.skipIf(!status.ok)(suiteName, () => {
  const n: NativeBinding = status.ok ? loadNative() : (undefined as never);
  const PERIOD = 1920;
  const params = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000, periodBytes: PERIOD };

  it("--socket-dir with 3 guests: each plays into its own folder bit for bit while another breaks", async () => {
    const clock = new VirtualClock();
    const sockets = join(dir, "sockets");
    const wavDir = join(dir, "wav");
    const c = capture();
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    const daemons: VhostUserDaemon[] = [];
    const run = runVhostUser(["--socket-dir", sockets, "--guests", "3", "--output", `wav:${wavDir}`], {
      ...c.io,
      binding: n,
      clock,
      stop: stopped,
      onListening: (d) => daemons.push(d),
    });
    cleanup.push(() => stop());
    await until("the daemons", () => daemons.length === 3);
    expect(c.out.join("")).toMatch(
      /listening on .*guest-1\.sock, .*guest-2\.sock, .*guest-3\.sock: 3 guests/,
    );

    const fes = [1, 2, 3].map((i) => new NativeFrontEnd(n, join(sockets, `guest-${i}.sock`), cleanup));
    for (const fe of fes) await fe.connect("add");
    const data = fes.map((_, i) => signal(PERIOD * 6, 101 + i));
    for (const [i, fe] of fes.entries()) {
      const g = fe.guest;
      await g.probe({ jacks: 2, streams: 2, chmaps: 6 });
      expect(await g.setParams(0, { ...params, bufferBytes: PERIOD * 6 })).toBe(VIRTIO_SND_S_OK);
      expect(await g.pcm("prepare", 0)).toBe(VIRTIO_SND_S_OK);
      g.queueTx(0, data[i]!, PERIOD);
      expect(await g.pcm("start", 0)).toBe(VIRTIO_SND_S_OK);
    }
    await until("TX taken", () => daemons.every((d) => d.device.queue(VIRTIO_SND_VQ_TX)?.inFlight === 6));
    // Two periods in, two guests go wrong.
    const done = [0, 0, 0];
    clock.runUntil(() => {
      for (const [i, fe] of fes.entries()) done[i]! += fe.guest.reapTx().length;
      return done.every((d) => d >= 2);
    });
    // Guest 2 breaks its TX ring (an available index 1000 ahead): its device needs a reset.
    const tx2 = fes[1]!.guest.queues[VIRTIO_SND_VQ_TX] as SplitDriverQueue;
    const availIdx = tx2.layout.driverAddr + 2;
    fes[1]!.guest.memory.writeU16(availIdx, (fes[1]!.guest.memory.readU16(availIdx) + 1000) & 0xffff);
    // and kicks, as a driver does after publishing (the device takes TX messages on kicks).
    loadNative().eventfdWrite(fes[1]!.kickFds[VIRTIO_SND_VQ_TX]!, 1);
    // And guest 3's front-end goes away mid-stream, without a word.
    fes[2]!.close();
    await until("guest 3 gone", () => !daemons[2]!.connected);
    clock.runUntil(() => {
      done[0]! += fes[0]!.guest.reapTx().length;
      return done[0] === 6;
    });
    await until("guest 2's device to need a reset", () => daemons[1]!.device.needsReset);
    const g = fes[0]!.guest;
    expect(await g.pcm("stop", 0)).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("release", 0)).toBe(VIRTIO_SND_S_OK);
    fes[0]!.close();
    fes[1]!.close();
    await until("disconnects", () => daemons.every((d) => !d.connected));
    stop();
    expect(await run).toBe(0);

    expect(readdirSync(wavDir).sort()).toEqual(["guest-1", "guest-2", "guest-3"]);
    const wav = readWav(join(wavDir, "guest-1", "stream0-1.wav"));
    expect(Buffer.from(wav.data).equals(Buffer.from(data[0]!))).toBe(true);
    // Guest 3 played what was due before it left: a prefix of its signal, nothing else.
    const third = readWav(join(wavDir, "guest-3", "stream0-1.wav"));
    expect(Buffer.from(third.data).equals(Buffer.from(data[2]!.subarray(0, third.data.length)))).toBe(true);
    const out = c.out.join("");
    expect(out).toMatch(/\[guest-1\] .* stream 0 start/);
    expect(out).toMatch(/\[guest-3\] .* front-end disconnected; waiting for the next one/);
    expect(out).toMatch(/\[guest-1\] stream 0 \(output\): played 2880 frames, 0 xruns/);
    // A new front-end on guest 3's socket is served again.
    expect(readdirSync(sockets).sort()).toEqual([]);
  });
});
