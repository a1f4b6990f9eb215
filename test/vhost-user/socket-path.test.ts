/**
 * The daemon's socket path and lifecycle on a real Unix socket: a live socket
 * is never taken over (a second daemon or command fails with
 * ERR_SOCKET_IN_USE / exit 3 and the first keeps serving), a stale one is
 * replaced, a file or folder is reported as such, and on close only the
 * daemon's own socket file is removed. close() is a promise, the daemon is
 * AsyncDisposable and closes when its AbortSignal aborts.
 */
import { lstatSync, mkdirSync, readFileSync, statSync, unlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { EXIT_SOCKET_IN_USE, runVhostUser } from "../../src/cli/vhost-user.js";
import { VirtioSndError } from "../../src/errors.js";
import { VhostUserDaemon as ExportedDaemon } from "../../src/node/index.js";
import { VhostUserDaemon, type VhostUserDaemonOptions } from "../../src/vhost-user/daemon.js";
import { type NativeBinding } from "../../src/vhost-user/native.js";
import { capture } from "../cli/capture.js";
import { NativeFrontEnd, sleep, until } from "./native-front-end.js";
import { nativeSuite } from "./native-suite.js";
import { missing } from "../guest-helpers/required-parts.js";

const { status, native, dir, cleanup } = nativeSuite("virtio-snd-socket-");

const suiteName = status.ok ? "the socket path" : `the socket path (skipped: ${status.reason})`;

function options(n: NativeBinding, socketPath: string, extra: Partial<VhostUserDaemonOptions> = {}) {
  const clock = new VirtualClock();
  return { socketPath, backend: new MemoryBackend({ clock }), clock, binding: n, ...extra };
}

function daemon(n: NativeBinding, socketPath: string, extra: Partial<VhostUserDaemonOptions> = {}) {
  const d = new VhostUserDaemon(options(n, socketPath, extra));
  cleanup.push(() => void d.close());
  return d;
}

function codeOf(f: () => unknown): string | undefined {
  try {
    f();
  } catch (err) {
    expect(err).toBeInstanceOf(VirtioSndError);
    return (err as VirtioSndError).code;
  }
  return undefined;
}

const unavailable = missing("native", status.ok ? null : status.reason);
describe.skipIf(unavailable)(suiteName, () => {
  const n = native!;

  it("is exported from virtio-snd/node", () => {
    expect(ExportedDaemon).toBe(VhostUserDaemon);
  });

  it("a second daemon on a live socket fails with ERR_SOCKET_IN_USE and the first keeps serving", async () => {
    const path = join(dir, "live.sock");
    const first = daemon(n, path);
    const events: string[] = [];
    first.on("connect", () => events.push("connect"));
    first.on("disconnect", () => events.push("disconnect"));
    const inode = statSync(path).ino;
    let message = "";
    try {
      new VhostUserDaemon(options(n, path));
    } catch (err) {
      expect((err as VirtioSndError).code).toBe("ERR_SOCKET_IN_USE");
      message = (err as Error).message;
    }
    expect(message).toBe(`${path} is in use: another process is listening on it`);
    expect(statSync(path).ino).toBe(inode);
    // The probe's connection, which says nothing, is no front-end to the first daemon.
    await sleep(50);
    expect(events).toEqual([]);
    const fe = new NativeFrontEnd(n, path, cleanup);
    await fe.connect("set");
    expect(first.connected).toBe(true);
    expect(events).toEqual(["connect"]);
    fe.close();
    await until("the disconnect", () => events.length === 2);
    expect(events).toEqual(["connect", "disconnect"]);
  });

  it("replaces a stale socket file (connect refused: its process is gone)", () => {
    const path = join(dir, "stale.sock");
    const fd = n.listen(path, 1);
    n.close(fd); // the file stays, nobody listens
    expect(() => n.connect(path)).toThrow(/ECONNREFUSED/);
    const d = daemon(n, path);
    // Listening now (the inode number may well be the old one's, reused).
    const client = n.connect(path);
    cleanup.push(() => n.close(client));
    void d.close();
    expect(() => lstatSync(path)).toThrow(/ENOENT/);
  });

  it("says what is there when it is not a socket, and leaves it alone", () => {
    const file = join(dir, "regular");
    writeFileSync(file, "keep me");
    expect(() => new VhostUserDaemon(options(n, file))).toThrow(`${file} is a regular file, not a socket`);
    expect(codeOf(() => new VhostUserDaemon(options(n, file)))).toBe("ERR_SOCKET_PATH");
    expect(readFileSync(file, "utf8")).toBe("keep me");
    const folder = join(dir, "folder");
    mkdirSync(folder);
    expect(() => new VhostUserDaemon(options(n, folder))).toThrow(`${folder} is a directory, not a socket`);
    expect(statSync(folder).isDirectory()).toBe(true);
  });

  it("on close removes the socket file only if it is still its own", async () => {
    const path = join(dir, "replaced.sock");
    const a = daemon(n, path);
    // Someone removed a's file and another daemon now serves the path.
    unlinkSync(path);
    const b = daemon(n, path);
    const inode = statSync(path).ino;
    await a.close();
    expect(statSync(path).ino).toBe(inode);
    await b.close();
    expect(() => lstatSync(path)).toThrow(/ENOENT/);
  });

  it("close() resolves after the close event, once; await using closes it; an abort closes it", async () => {
    const path = join(dir, "life.sock");
    const d = daemon(n, path);
    const events: string[] = [];
    d.on("close", () => events.push("close"));
    const p1 = d.close();
    const p2 = d.close();
    expect(p1).toBe(p2);
    await p1;
    expect(events).toEqual(["close"]);
    expect(d.closed).toBe(true);

    {
      await using scoped = new VhostUserDaemon(options(n, path));
      expect(lstatSync(path).isSocket()).toBe(true);
      expect(scoped.closed).toBe(false);
    }
    expect(() => lstatSync(path)).toThrow(/ENOENT/);

    const controller = new AbortController();
    const aborted = daemon(n, path, { signal: controller.signal });
    const closed = new Promise<void>((resolve) => aborted.once("close", resolve));
    controller.abort();
    await closed;
    expect(aborted.closed).toBe(true);
    expect(() => lstatSync(path)).toThrow(/ENOENT/);

    const already = daemon(n, path, { signal: AbortSignal.abort() });
    expect(already.closed).toBe(true);
    expect(() => lstatSync(path)).toThrow(/ENOENT/);
  });

  it("the command: a live socket is one line and exit 3; a regular file is exit 1 saying so", async () => {
    const path = join(dir, "cmd.sock");
    daemon(n, path);
    const c = capture();
    const io = { ...c.io, binding: n, clock: new VirtualClock(), stop: Promise.resolve() };
    expect(await runVhostUser(["--socket", path, "--output", "null"], io)).toBe(EXIT_SOCKET_IN_USE);
    expect(c.err).toEqual([`virtio-snd vhost-user: ${path} is in use: another process is listening on it\n`]);
    expect(c.out).toEqual([]);
    expect(lstatSync(path).isSocket()).toBe(true);

    const file = join(dir, "cmd-file");
    writeFileSync(file, "");
    const f = capture();
    expect(await runVhostUser(["--socket", file, "--output", "null"], { ...io, ...f.io })).toBe(1);
    expect(f.err.join("")).toBe(
      `virtio-snd vhost-user: ${file} is a regular file, not a socket: remove it or choose another path\n`,
    );
  });
});
