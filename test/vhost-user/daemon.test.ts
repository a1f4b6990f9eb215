/**
 * The daemon over the real native transport: the test plays QEMU on a real
 * Unix socket (guest RAM in a memfd passed with SET_MEM_TABLE or
 * ADD_MEM_REG, eventfds for kicks and calls), runs the Linux driver's probe
 * and a short playback on a virtual clock, checks every byte, disconnects and
 * connects a second front-end.
 *
 * Skipped, with the reason in the suite's name, when the native addon is
 * unavailable; VSND_REQUIRE_NATIVE=1 turns that into a failure.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import {
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import { PcmState } from "../../src/stream/pcm-state.js";
import type { LogEntry } from "../../src/vhost-user/backend.js";
import { VhostUserDaemon } from "../../src/vhost-user/daemon.js";
import {
  VHOST_USER_GET_FEATURES,
  VHOST_USER_GET_QUEUE_NUM,
  VHOST_USER_GET_VRING_BASE,
  VHOST_USER_SET_VRING_CALL,
  VHOST_USER_SET_VRING_KICK,
  VHOST_USER_VERSION,
  decodeU64,
  decodeVringState,
  encodeMessage,
  encodeVringFile,
  encodeVringState,
} from "../../src/vhost-user/messages.js";
import { type NativeBinding } from "../../src/vhost-user/native.js";
import { signal } from "./guest-side.js";
import { NativeFrontEnd, sleep, until } from "./native-front-end.js";
import { nativeSuite } from "./native-suite.js";
import { missing } from "../guest-helpers/required-parts.js";

/** cleanup: what the test must release (fds it made, mappings, daemons). */
const { status, native, dir, cleanup } = nativeSuite("virtio-snd-vhost-");

const PERIOD = 1920;

function makeDaemon(n: NativeBinding, name: string) {
  const clock = new VirtualClock();
  const audio = new MemoryBackend({ clock });
  const log: LogEntry[] = [];
  const path = join(dir, name);
  const daemon = new VhostUserDaemon({ socketPath: path, backend: audio, clock, binding: n });
  cleanup.push(() => daemon.close());
  let disconnects = 0;
  daemon.on("log", (e) => log.push(e));
  daemon.on("disconnect", () => disconnects++);
  return { daemon, clock, audio, log, path, disconnects: () => disconnects };
}

/** Stream 0 set up for `data` (whole periods, the buffer holding all of it), queued and started; waits until the daemon took every message. */
async function startPlayback(
  d: ReturnType<typeof makeDaemon>,
  fe: NativeFrontEnd,
  data: Uint8Array,
): Promise<void> {
  const g = fe.guest;
  const periods = data.length / PERIOD;
  const params = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: 48000, periodBytes: PERIOD };
  expect(await g.setParams(0, { ...params, bufferBytes: data.length })).toBe(VIRTIO_SND_S_OK);
  expect(await g.pcm("prepare", 0)).toBe(VIRTIO_SND_S_OK);
  g.queueTx(0, data, PERIOD);
  expect(await g.pcm("start", 0)).toBe(VIRTIO_SND_S_OK);
  await until("TX messages taken", () => d.daemon.device.queue(VIRTIO_SND_VQ_TX)?.inFlight === periods);
}

const suiteName = status.ok
  ? "the daemon on a real socket"
  : `the daemon on a real socket (skipped: ${status.reason})`;

const unavailable = missing("native", status.ok ? null : status.reason);
describe.skipIf(unavailable)(suiteName, () => {
  const n = native!;

  it("serves a QEMU-like front-end: probe, playback with every byte, then a second front-end", async () => {
    const d = makeDaemon(n, "snd.sock");
    expect(existsSync(d.path)).toBe(true);

    const fe = new NativeFrontEnd(n, d.path, cleanup);
    await fe.connect("set");
    await until("rings started", () => [0, 1, 2, 3].every((i) => d.daemon.backend.ringStarted(i)));
    fe.guest.queueEventBuffers(8);
    const info = await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    expect(info.streams).toHaveLength(2);
    expect(info.jacks).toHaveLength(2);
    expect(info.chmaps).toHaveLength(6);
    expect(n.eventfdRead(fe.callFds[VIRTIO_SND_VQ_CONTROL]!)).toBeGreaterThan(0);

    const g = fe.guest;
    const data = signal(PERIOD * 5, 11);
    await startPlayback(d, fe, data);
    const done: ReturnType<typeof g.reapTx> = [];
    d.clock.runUntil(() => {
      done.push(...g.reapTx());
      return done.length === 5;
    });
    expect(done.map((c) => c.status)).toEqual([0x8000, 0x8000, 0x8000, 0x8000, 0x8000]);
    await until("the TX interrupt", () => n.eventfdRead(fe.callFds[VIRTIO_SND_VQ_TX]!) > 0);
    expect(await g.pcm("stop", 0)).toBe(VIRTIO_SND_S_OK);
    expect(await g.pcm("release", 0)).toBe(VIRTIO_SND_S_OK);
    const pb = d.audio.playbacksOf(0);
    expect(Buffer.from(pb[0]!.data.bytes()).equals(Buffer.from(data))).toBe(true);

    // GET_VRING_BASE over the socket: 3 probe queries + 5 PCM commands on the control queue.
    fe.send(VHOST_USER_GET_VRING_BASE, encodeVringState({ index: VIRTIO_SND_VQ_CONTROL, num: 0 }));
    const base = decodeVringState((await fe.reply()).payload);
    expect(base).toEqual({ ok: true, value: { index: 0, num: 8 } });

    // The front-end goes away: the device is reset and the memory unmapped.
    fe.close();
    await until("the disconnect", () => d.disconnects() === 1);
    expect(d.daemon.connected).toBe(false);
    expect(d.daemon.backend.memory.regionCount).toBe(0);
    expect(d.daemon.device.streams[0]!.state).toBe(PcmState.ParamsSet); // reset: no voice, no messages, parameters kept

    // A second front-end (packed rings, ADD_MEM_REG) works from scratch.
    const fe2 = new NativeFrontEnd(n, d.path, cleanup, true);
    await fe2.connect("add");
    const info2 = await fe2.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    expect(info2.streams).toHaveLength(2);
    expect(d.log.filter((e) => e.level === "warn" || e.level === "error")).toEqual([]);
    fe2.close();
    await until("the second disconnect", () => d.disconnects() === 2);

    d.daemon.close();
    expect(existsSync(d.path)).toBe(false);
  });

  it("a 256 MiB guest costs V8 the windows the device touches, not its RAM: no collection per guest", async () => {
    const d = makeDaemon(n, "big.sock");
    const RAM = 256 * 1024 * 1024;
    const fe = new NativeFrontEnd(n, d.path, cleanup, false, RAM);
    // The front-end's own mapping of the RAM is counted by now; what follows is the daemon's.
    const before = process.memoryUsage().external;
    await fe.connect("set");
    await until("rings started", () => [0, 1, 2, 3].every((i) => d.daemon.backend.ringStarted(i)));
    fe.guest.queueEventBuffers(8);
    await fe.guest.probe({ jacks: 2, streams: 2, chmaps: 6 });
    const data = signal(PERIOD * 4, 5);
    await startPlayback(d, fe, data);
    d.clock.runUntil(() => d.audio.playbacksOf(0)[0]?.data.bytes().length === data.length);
    expect(Buffer.from(d.audio.playbacksOf(0)[0]!.data.bytes()).equals(Buffer.from(data))).toBe(true);
    const windows = d.daemon.backend.memory.windowCount;
    const grew = process.memoryUsage().external - before;
    expect(windows).toBeGreaterThan(0);
    expect(windows).toBeLessThanOrEqual(8);
    // V8 collects everything when external memory jumps by 64 MiB; one buffer over the RAM would be 256.
    expect(grew).toBeLessThan(windows * (1 << 20) + (4 << 20));
    fe.close();
    await until("the disconnect", () => d.disconnects() === 1);
    expect(d.daemon.backend.memory.windowCount).toBe(0);
  });

  it("serves one front-end at a time: the next waits in the backlog", async () => {
    const d = makeDaemon(n, "one.sock");
    const a = new NativeFrontEnd(n, d.path, cleanup);
    const b = new NativeFrontEnd(n, d.path, cleanup);
    expect(await a.u64(VHOST_USER_GET_QUEUE_NUM)).toBe(4n);
    b.send(VHOST_USER_GET_QUEUE_NUM);
    await sleep(20);
    expect(d.daemon.connected).toBe(true);
    a.close();
    const r = await b.reply();
    expect(decodeU64(r.payload)).toEqual({ ok: true, value: 4n });
  });

  it("drops a front-end whose framing is broken and accepts the next", async () => {
    const d = makeDaemon(n, "bad.sock");
    const a = new NativeFrontEnd(n, d.path, cleanup);
    a.send(VHOST_USER_GET_FEATURES, undefined, undefined, 0x2);
    await until("the disconnect", () => d.disconnects() === 1);
    expect(d.log.some((e) => /broken framing/.test(e.message))).toBe(true);
    const b = new NativeFrontEnd(n, d.path, cleanup);
    expect(await b.u64(VHOST_USER_GET_QUEUE_NUM)).toBe(4n);
  });

  it("answers a flood the socket cannot hold at once: replies wait for it to drain, in order", async () => {
    const d = makeDaemon(n, "flood.sock");
    const fe = new NativeFrontEnd(n, d.path, cleanup);
    const count = 30_000; // 600 KB of replies: more than a Unix socket buffers
    const batch = new Uint8Array(count * 12);
    for (let i = 0; i < count; i++)
      batch.set(encodeMessage(VHOST_USER_GET_QUEUE_NUM, VHOST_USER_VERSION), i * 12);
    let off = 0;
    let replies = 0;
    while (off < batch.length || replies < count) {
      if (off < batch.length) {
        const sent = n.sendmsg(fe.fd, batch.subarray(off));
        if (sent > 0) off += sent;
      }
      // Read slowly, so the back-end's socket buffer fills and it must wait for POLL_WRITABLE.
      if (off >= batch.length || replies < off / 24) {
        const r = await fe.reply();
        expect(decodeU64(r.payload)).toEqual({ ok: true, value: 4n });
        replies++;
      } else {
        await sleep(0);
      }
    }
    expect(replies).toBe(count);
    expect(d.daemon.connected).toBe(true);
  });

  it("drops a front-end that floods it with file descriptors, closing them all", async () => {
    const d = makeDaemon(n, "fds.sock");
    const fe = new NativeFrontEnd(n, d.path, cleanup);
    const fds = Array.from({ length: 70 }, () => n.eventfd(0));
    cleanup.push(() => fds.forEach((fd) => n.close(fd)));
    fe.send(VHOST_USER_GET_FEATURES, undefined, fds);
    await until("the disconnect", () => d.disconnects() === 1);
    expect(d.log.some((e) => /70 file descriptors/.test(e.message))).toBe(true);
  });

  it("polls a ring whose kick has no fd", async () => {
    const d = makeDaemon(n, "poll.sock");
    const fe = new NativeFrontEnd(n, d.path, cleanup);
    await fe.connect("set");
    fe.send(VHOST_USER_SET_VRING_KICK, encodeVringFile({ index: VIRTIO_SND_VQ_CONTROL, noFd: true }));
    // The guest's kicks now go to an eventfd nobody watches: only the poll finds the request.
    const r = await fe.guest.control(new Uint8Array([0, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 32, 0, 0, 0]), 36);
    expect(r.status).toBe(VIRTIO_SND_S_OK);
  });

  it("assembles messages sent a byte at a time, with their fds on the first byte", async () => {
    const d = makeDaemon(n, "bytes.sock");
    const fe = new NativeFrontEnd(n, d.path, cleanup);
    await fe.u64(VHOST_USER_GET_FEATURES);
    const k = n.eventfd(0);
    cleanup.push(() => n.close(k));
    const m = encodeMessage(
      VHOST_USER_SET_VRING_CALL,
      VHOST_USER_VERSION,
      encodeVringFile({ index: 1, noFd: false }),
    );
    for (let i = 0; i < m.length; i++) {
      n.sendmsg(fe.fd, m.subarray(i, i + 1), i === 0 ? [k] : undefined);
      await sleep(0);
    }
    expect(await fe.u64(VHOST_USER_GET_QUEUE_NUM)).toBe(4n);
    expect(d.log.filter((e) => e.level === "warn")).toEqual([]);
  });

  it("refuses to listen where a regular file is, saying why", () => {
    const path = join(dir, "not-a-socket");
    writeFileSync(path, "x");
    const clock = new VirtualClock();
    const make = () =>
      new VhostUserDaemon({ socketPath: path, backend: new MemoryBackend({ clock }), clock, binding: n });
    expect(make).toThrow(
      expect.objectContaining({
        code: "ERR_SOCKET_PATH",
        message: expect.stringMatching(/is a regular file, not a socket/),
      }),
    );
    expect(existsSync(path)).toBe(true);
  });
});
