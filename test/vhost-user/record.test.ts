/**
 * `virtio-snd vhost-user --record FILE`: each front-end connection is
 * recorded to its own trace file (FILE, then FILE-2, ...), through a
 * TraceFileWriter, and every file replays without divergence. The front-end
 * is the QEMU-like one of native-front-end.ts on a real Unix socket; the
 * daemon runs in this process on a virtual clock.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { runVhostUser, sessionTracePath } from "../../src/cli/vhost-user.js";
import { readTraceFile } from "../../src/node/trace-file.js";
import {
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import { traceTxAudio } from "../../src/trace/live-replay.js";
import { replayTrace } from "../../src/trace/replayer.js";
import type { VhostUserDaemon } from "../../src/vhost-user/daemon.js";
import { signal } from "./guest-side.js";
import { capture } from "../cli/capture.js";
import { NativeFrontEnd, until } from "./native-front-end.js";
import { nativeSuite } from "./native-suite.js";
import { missing } from "../guest-helpers/required-parts.js";

const { status, native, dir, cleanup } = nativeSuite("virtio-snd-record-");

const PERIOD = 1920;
const S16_48K_STEREO = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000, periodBytes: PERIOD };

describe("--record FILE: the file of each session", () => {
  it("is FILE, then FILE with -2, -3, ... before the extension", () => {
    expect(sessionTracePath("session.jsonl", 1)).toBe("session.jsonl");
    expect(sessionTracePath("session.jsonl", 2)).toBe("session-2.jsonl");
    expect(sessionTracePath("/var/tmp/a.b/run.trace.jsonl", 3)).toBe("/var/tmp/a.b/run.trace-3.jsonl");
    expect(sessionTracePath("./out/trace", 2)).toBe("./out/trace-2");
    expect(sessionTracePath("dir.d/trace", 10)).toBe("dir.d/trace-10");
  });

  it.each([
    [["--socket", "x", "--record-audio", "hash"], /--record-audio goes with --record FILE/],
    [
      ["--socket", "x", "--record", "t.jsonl", "--record-audio", "mp3"],
      /--record-audio takes "full" or "hash"/,
    ],
    [["--socket", "x", "--record"], /--record needs a value/],
  ])("%j is a usage error (exit 2)", async (args, message) => {
    const c = capture();
    expect(await runVhostUser(args, c.io)).toBe(2);
    expect(c.err.join("")).toMatch(message);
  });
});

const suiteName = status.ok
  ? "recording sessions on a real socket"
  : `recording sessions on a real socket (skipped: ${status.reason})`;

const unavailable = missing("native", status.ok ? null : status.reason);
describe.skipIf(unavailable)(suiteName, () => {
  const n = native!;

  /** Runs the command until the returned stop() is called. */
  async function start(args: string[]) {
    const clock = new VirtualClock();
    const c = capture();
    let stop!: () => void;
    const stopped = new Promise<void>((r) => (stop = r));
    let daemon: VhostUserDaemon | undefined;
    const run = runVhostUser(args, {
      ...c.io,
      binding: n,
      clock,
      stop: stopped,
      onListening: (d) => (daemon = d),
    });
    cleanup.push(() => stop());
    await until("the daemon", () => daemon !== undefined || c.err.length > 0);
    return { clock, c, stop, run, daemon: daemon! };
  }

  /** Probe, play `periods` periods of `data` on stream 0, record two periods on stream 1. */
  async function session(fe: NativeFrontEnd, clock: VirtualClock, daemon: VhostUserDaemon, data: Uint8Array) {
    const g = fe.guest;
    await g.probe({ jacks: 2, streams: 2, chmaps: 6 });
    expect(await g.setParams(0, { ...S16_48K_STEREO, bufferBytes: data.length })).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("prepare", 0)).toBe(VIRTIO_SND_S_OK);
    const periods = g.queueTx(0, data, PERIOD).length;
    expect(await g.pcm("start", 0)).toBe(VIRTIO_SND_S_OK);
    await until("TX taken", () => daemon.device.queue(VIRTIO_SND_VQ_TX)?.inFlight === periods);
    const done: unknown[] = [];
    clock.runUntil(() => {
      done.push(...g.reapTx());
      return done.length === periods;
    });
    expect(await g.pcm("stop", 0)).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("release", 0)).toBe(VIRTIO_SND_S_OK);

    expect(await g.setParams(1, { ...S16_48K_STEREO, bufferBytes: PERIOD * 2 })).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("prepare", 1)).toBe(VIRTIO_SND_S_OK);
    const rx = g.queues[VIRTIO_SND_VQ_RX]!;
    g.queueRx(1, 2, PERIOD);
    expect(await g.pcm("start", 1)).toBe(VIRTIO_SND_S_OK);
    await until("RX taken", () => daemon.device.queue(VIRTIO_SND_VQ_RX)?.inFlight === 2);
    let recorded = 0;
    clock.runUntil(() => {
      for (let u = rx.getUsed(); u !== null; u = rx.getUsed()) recorded++;
      return recorded === 2;
    });
    expect(await g.pcm("stop", 1)).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("release", 1)).toBe(VIRTIO_SND_S_OK);
  }

  it("records each front-end connection to its own file, and each file replays", async () => {
    const file = join(dir, "session.jsonl");
    const { clock, c, stop, run, daemon } = await start([
      "--socket",
      join(dir, "rec.sock"),
      "--output",
      "null",
      "--input",
      "tone:1000",
      "--record",
      file,
    ]);
    const first = signal(PERIOD * 4, 3);
    const second = signal(PERIOD * 3, 5);

    const fe = new NativeFrontEnd(n, daemon.socketPath, cleanup);
    await fe.connect("set");
    await session(fe, clock, daemon, first);
    fe.close();
    await until("the first disconnect", () =>
      /trace: \d+ events written to .*session\.jsonl/.test(c.out.join("")),
    );

    // The second connection: packed rings this time.
    const fe2 = new NativeFrontEnd(n, daemon.socketPath, cleanup, true);
    await fe2.connect("add");
    await session(fe2, clock, daemon, second);
    fe2.close();
    await until("the second disconnect", () =>
      /trace: \d+ events written to .*session-2\.jsonl/.test(c.out.join("")),
    );
    stop();
    expect(await run).toBe(0);
    expect(c.err.join("")).toBe("");
    const out = c.out.join("");
    expect(out).toMatch(/recording this front-end's session to .*session\.jsonl\n/);
    expect(out).toMatch(/recording this front-end's session to .*session-2\.jsonl\n/);
    expect(existsSync(join(dir, "session-3.jsonl"))).toBe(false);

    for (const [path, ring, audio, k] of [
      [file, "split", first, 1],
      [join(dir, "session-2.jsonl"), "packed", second, 2],
    ] as const) {
      const trace = await readTraceFile(path);
      expect(trace.header.device.ring).toBe(ring);
      expect(trace.header.note).toMatch(new RegExp(`front-end connection ${k} on .*rec\\.sock`));
      expect(trace.header.note).toMatch(/1 output and 1 input streams; output to null, input from tone:1000/);
      expect(trace.header.note).toMatch(/TX audio in full/);
      // The session from its first negotiation to the reset at the disconnect.
      expect(trace.events[0]!.ev).toBe("features");
      expect(trace.events.at(-1)!.ev).toBe("reset");
      // TX audio in full: the trace holds exactly what the guest played.
      expect(Buffer.from(traceTxAudio(trace, 0)!).equals(Buffer.from(audio))).toBe(true);
      const result = replayTrace(trace);
      expect(result.ok ? "" : result.message).toBe("");
      expect(result.stats.played[0]).toBe(audio.length);
      expect(result.stats.captured[1]).toBe(PERIOD * 2);
    }
  });

  it("--record-audio hash keeps only hashes: the replay checks them against the audio given", async () => {
    const file = join(dir, "hashed.jsonl");
    const { clock, stop, run, daemon } = await start([
      "--socket",
      join(dir, "hash.sock"),
      "--output",
      "null",
      "--record",
      file,
      "--record-audio",
      "hash",
    ]);
    const data = signal(PERIOD * 4, 9);
    const fe = new NativeFrontEnd(n, daemon.socketPath, cleanup);
    await fe.connect("set");
    await session(fe, clock, daemon, data);
    fe.close();
    await until("the disconnect", () => !daemon.connected);
    stop();
    expect(await run).toBe(0);

    const text = readFileSync(file, "utf8");
    expect(text).toMatch(/"sha256":"[0-9a-f]{64}"/);
    const trace = await readTraceFile(file);
    expect(trace.header.note).toMatch(/TX audio as SHA-256/);
    expect(traceTxAudio(trace, 0)).toBeNull();
    const plain = replayTrace(trace);
    expect(plain.ok ? "" : plain.message).toBe("");
    const checked = replayTrace(trace, { txAudio: () => data });
    expect(checked.ok ? "" : checked.message).toBe("");
    const wrong = replayTrace(trace, { txAudio: () => signal(data.length, 10) });
    expect(wrong.ok ? null : wrong.divergence.reason).toBe("tx-audio");
  });

  it("writes no file when no front-end came, and says so", async () => {
    const file = join(dir, "nobody.jsonl");
    const { c, stop, run } = await start([
      "--socket",
      join(dir, "nobody.sock"),
      "--output",
      "null",
      "--record",
      file,
    ]);
    expect(existsSync(file)).toBe(true);
    stop();
    expect(await run).toBe(0);
    expect(existsSync(file)).toBe(false);
    expect(c.out.join("")).toMatch(/no front-end connected: nothing recorded to .*nobody\.jsonl/);
  });

  it("a FILE that cannot be written fails at once (exit 1)", async () => {
    const c = capture();
    const file = join(dir, "missing-dir", "x.jsonl");
    const code = await runVhostUser(
      ["--socket", join(dir, "bad.sock"), "--output", "null", "--record", file],
      { ...c.io, binding: n, clock: new VirtualClock() },
    );
    expect(code).toBe(1);
    expect(c.err.join("")).toMatch(/--record: cannot write .*missing-dir.*x\.jsonl/);
    expect(existsSync(join(dir, "bad.sock"))).toBe(false);
  });
});
