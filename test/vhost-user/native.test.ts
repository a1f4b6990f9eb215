/**
 * The vhost-user native addon: Unix sockets with fd passing, shared memory,
 * eventfd and uv_poll. Every test closes every fd it opens (afterEach closes
 * what a failed test left) and stops every poll, or vitest would never exit.
 * What only a separate process can show (that it exits once polls stop, an
 * uncaught exception from a poll callback, a worker torn down with a poll
 * running, finalizers that unmap) runs in child processes.
 *
 * The addon must build here (Linux with a compiler): the tests skip, with the
 * reason in the suite's name, only when it is unavailable, and
 * VSND_REQUIRE_NATIVE=1 turns that skip into a failure.
 */
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { afterAll, afterEach, describe, expect, it } from "vitest";
import { VirtioSndError } from "../../src/errors.js";
import {
  isNativeSystemError,
  loadNative,
  MMAP_MAX_SIZE,
  NATIVE_ADDON_PATH,
  NATIVE_BUILD_COMMAND,
  findNativeAddon,
  nativeAvailable,
  POLL_READABLE,
  POLL_WRITABLE,
  type NativeBinding,
  type PollHandle,
} from "../../src/vhost-user/native.js";
import { missing } from "../guest-helpers/required-parts.js";

const status = nativeAvailable();
const native: NativeBinding | undefined = status.ok ? loadNative() : undefined;
const REPO = resolve(import.meta.dirname, "../..");
const dir = mkdtempSync(join(tmpdir(), "virtio-snd-native-"));
const PAGE = 4096;

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function n(): NativeBinding {
  if (native === undefined) throw new Error("native addon unavailable");
  return native;
}

// ---- fd and poll bookkeeping: nothing outlives its test ----

const openFds = new Set<number>();
const openPolls = new Set<PollHandle>();
const openMaps = new Set<ArrayBuffer>();

function track(fd: number): number {
  // A new descriptor: stdin, stdout and stderr (0-2) stay open, so a real one is above them.
  expect(Number.isInteger(fd) && fd > 2, `fd ${fd}`).toBe(true);
  openFds.add(fd);
  return fd;
}

function closeFd(fd: number): void {
  openFds.delete(fd);
  n().close(fd);
}

function map(fd: number, size: number, offset = 0): ArrayBuffer {
  const buffer = n().mmap(fd, size, offset);
  openMaps.add(buffer);
  return buffer;
}

function startPoll(fd: number, events: number, cb: (status: number, events: number) => void): PollHandle {
  const handle = n().poll(fd, events, cb);
  openPolls.add(handle);
  return handle;
}

afterEach(() => {
  for (const handle of openPolls) handle.stop();
  for (const buffer of openMaps) n().munmap(buffer);
  for (const fd of openFds) n().close(fd);
  openPolls.clear();
  openMaps.clear();
  openFds.clear();
});

let socketCounter = 0;
function socketPath(): string {
  return join(dir, `s${socketCounter++}.sock`);
}

/** A listening socket, a client connected to it and the accepted server side. */
function connectedPair(): { listenFd: number; client: number; server: number; path: string } {
  const path = socketPath();
  const listenFd = track(n().listen(path, 4));
  const client = track(n().connect(path));
  const server = track(n().accept(listenFd));
  return { listenFd, client, server, path };
}

/** The first poll callback, then the poll stopped (or a timeout). */
function firstEvent(
  fd: number,
  events: number,
  timeoutMs = 2000,
): Promise<{ status: number; events: number }> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      handle.stop();
      reject(new Error(`no poll event on fd ${fd} within ${timeoutMs} ms`));
    }, timeoutMs);
    const handle = startPoll(fd, events, (s, e) => {
      clearTimeout(timer);
      handle.stop();
      resolve({ status: s, events: e });
    });
  });
}

function fdCount(): number {
  return readdirSync("/proc/self/fd").length;
}

function expectSystemError(fn: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    fn();
  } catch (error) {
    thrown = error;
  }
  expect(thrown, `expected ${code}`).toBeInstanceOf(Error);
  expect(isNativeSystemError(thrown, code), String(thrown)).toBe(true);
}

/** Runs a CommonJS script with the addon's path in ADDON; resolves with its exit and output. */
function runChild(
  script: string,
  args: readonly string[] = [],
  timeoutMs = 10_000,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...args, "-e", script], {
      env: { ...process.env, ADDON: NATIVE_ADDON_PATH },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(
          `child still running after ${timeoutMs} ms (a handle kept it alive?)\n${stdout}\n${stderr}`,
        ),
      );
    }, timeoutMs);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

// ---- loading ----

describe("loadNative / nativeAvailable", () => {
  it("says why when the .node file is absent, and the exact command that builds it (a C compiler)", () => {
    const path = join(dir, "absent", "vhost_user_native.node");
    let thrown: unknown;
    try {
      loadNative({ path });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(VirtioSndError);
    const error = thrown as VirtioSndError;
    expect(error.code).toBe("ERR_BACKEND");
    expect(error.message).toContain(`its native addon is missing: ${path}`);
    // Whatever installed the package (npm ci, npm install -g, a tarball): this command builds it.
    expect(NATIVE_BUILD_COMMAND).toBe(`node ${JSON.stringify(join(REPO, "scripts", "build-native.mjs"))}`);
    expect(error.message).toContain(`Build it from source with: ${NATIVE_BUILD_COMMAND}`);
    expect(error.message).toMatch(/C addon with node-gyp: it needs a C compiler, make and python3/);
    expect(error.message).not.toMatch(/npm ci|npm rebuild|C\+\+/);
    expect(nativeAvailable({ path })).toEqual({ ok: false, reason: error.message });
  });

  it("finds the addon as node-gyp-build does: a build from source first, then a prebuilt one", () => {
    const fake = join(dir, "fake-native");
    expect(findNativeAddon(fake)).toBeNull();
    const prebuilt = join(fake, "prebuilds", `${process.platform}-${process.arch}`, "node.napi.node");
    mkdirSync(dirname(prebuilt), { recursive: true });
    writeFileSync(prebuilt, "");
    expect(findNativeAddon(fake)).toBe(prebuilt);
    const built = join(fake, "build", "Release", "vhost_user_native.node");
    mkdirSync(dirname(built), { recursive: true });
    writeFileSync(built, "");
    expect(findNativeAddon(fake)).toBe(built);
    // This checkout's own.
    expect(findNativeAddon()).toMatch(/native\/(build\/Release\/vhost_user_native|prebuilds\/.*)\.node$/);
  });

  it("says it needs Linux elsewhere", () => {
    expect(() => loadNative({ platform: "darwin" })).toThrow(/needs Linux \(this is darwin\)/);
    const result = nativeAvailable({ platform: "win32" });
    expect(result.ok).toBe(false);
  });

  it("passes on the loader's error for a file that is not an addon", () => {
    const path = join(dir, "garbage.node");
    writeFileSync(path, "not an ELF file");
    let thrown: unknown;
    try {
      loadNative({ path });
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(VirtioSndError);
    expect((thrown as VirtioSndError).code).toBe("ERR_BACKEND");
    expect((thrown as VirtioSndError).message).toMatch(/does not load: .*(invalid ELF header|too short)/);
    expect((thrown as VirtioSndError).cause).toBeInstanceOf(Error);
  });
});

const unavailable = missing("native", status.ok ? null : status.reason);
describe.skipIf(unavailable)(status.ok ? "native addon" : `native addon (SKIPPED: ${status.reason})`, () => {
  it("loads once: the same object every time, with every function", () => {
    expect(loadNative()).toBe(native);
    for (const name of ["listen", "accept", "connect", "recvmsg", "sendmsg", "close", "poll"] as const) {
      expect(typeof n()[name]).toBe("function");
    }
  });

  describe("sockets", () => {
    it("listen, connect, accept: -1 when no connection is pending", () => {
      const path = socketPath();
      const listenFd = track(n().listen(path, 4));
      expect(n().accept(listenFd)).toBe(-1);
      const client = track(n().connect(path));
      const server = track(n().accept(listenFd));
      expect(server).not.toBe(client);
      expect(n().accept(listenFd)).toBe(-1);
      expect(n().sendmsg(client, new Uint8Array([1, 2, 3]))).toBe(3);
      const buf = new Uint8Array(8);
      expect(n().recvmsg(server, buf, 0)).toEqual({ bytes: 3, fds: [] });
      expect([...buf.subarray(0, 3)]).toEqual([1, 2, 3]);
      // And the other way.
      expect(n().sendmsg(server, Buffer.from("pong"))).toBe(4);
      expect(n().recvmsg(client, buf, 0).bytes).toBe(4);
      expect(Buffer.from(buf.subarray(0, 4)).toString()).toBe("pong");
    });

    it("sends bytes with a memfd and an eventfd; the received memfd maps the same memory", () => {
      const { client, server } = connectedPair();
      const memfd = track(n().memfd("guest-ram", 4 * PAGE));
      const kick = track(n().eventfd(0));
      const senderView = new Uint8Array(map(memfd, 4 * PAGE));
      senderView.set([0xde, 0xad, 0xbe, 0xef], PAGE + 10);

      const header = new Uint8Array([1, 0, 0, 0, 1, 0, 0, 0, 8, 0, 0, 0]);
      expect(n().sendmsg(client, header, [memfd, kick])).toBe(header.length);
      const buf = new Uint8Array(64);
      const { bytes, fds } = n().recvmsg(server, buf, 8);
      expect(bytes).toBe(header.length);
      expect([...buf.subarray(0, bytes)]).toEqual([...header]);
      expect(fds).toHaveLength(2);
      const [memfd2, kick2] = fds.map(track) as [number, number];
      expect(memfd2).not.toBe(memfd);
      expect(kick2).not.toBe(kick);

      // Shared memory really is shared: what the sender wrote is there, and back.
      const receiverMap = map(memfd2, 4 * PAGE);
      const receiverView = new Uint8Array(receiverMap);
      expect([...receiverView.subarray(PAGE + 10, PAGE + 14)]).toEqual([0xde, 0xad, 0xbe, 0xef]);
      receiverView[3 * PAGE] = 0x5a;
      expect(senderView[3 * PAGE]).toBe(0x5a);
      // The mapping outlives the fd it came from.
      closeFd(memfd2);
      receiverView[5] = 7;
      expect(senderView[5]).toBe(7);

      // munmap detaches: the buffer and its views become empty.
      n().munmap(receiverMap);
      expect(receiverMap.byteLength).toBe(0);
      expect(receiverView.length).toBe(0);
      expect(receiverView[5]).toBeUndefined();
      n().munmap(receiverMap); // idempotent
      expect(senderView[5]).toBe(7);

      // The received eventfd is the sender's: a write there is read here.
      n().eventfdWrite(kick, 3);
      n().eventfdWrite(kick, 4);
      expect(n().eventfdRead(kick2)).toBe(7);
      expect(n().eventfdRead(kick)).toBe(0);
    });

    it("recvmsg: -1 when nothing is there (EAGAIN), 0 once the peer closed", () => {
      const { client, server } = connectedPair();
      const buf = new Uint8Array(16);
      expect(n().recvmsg(server, buf, 4)).toEqual({ bytes: -1, fds: [] });
      n().sendmsg(client, new Uint8Array([9]));
      closeFd(client);
      expect(n().recvmsg(server, buf, 4)).toEqual({ bytes: 1, fds: [] });
      expect(n().recvmsg(server, buf, 4)).toEqual({ bytes: 0, fds: [] });
    });

    it("recvmsg reads what is available, in as many pieces as the buffer needs", () => {
      const { client, server } = connectedPair();
      n().sendmsg(client, new Uint8Array([1, 2, 3, 4, 5]));
      const small = new Uint8Array(2);
      const got: number[] = [];
      for (let r = n().recvmsg(server, small, 0); r.bytes > 0; r = n().recvmsg(server, small, 0)) {
        got.push(...small.subarray(0, r.bytes));
      }
      expect(got).toEqual([1, 2, 3, 4, 5]);
      // A view into a larger buffer receives into its own window only.
      const big = new Uint8Array(8).fill(0xff);
      n().sendmsg(client, new Uint8Array([7, 7]));
      expect(n().recvmsg(server, big.subarray(2, 6), 0).bytes).toBe(2);
      expect([...big]).toEqual([0xff, 0xff, 7, 7, 0xff, 0xff, 0xff, 0xff]);
    });

    it("a header-sized read returns the fds of its own message only", () => {
      const { client, server } = connectedPair();
      const efd = track(n().eventfd(0));
      n().sendmsg(client, new Uint8Array([1, 1, 1]));
      n().sendmsg(client, new Uint8Array([2, 2, 2]), [efd]);
      const buf = new Uint8Array(3);
      expect(n().recvmsg(server, buf, 4)).toEqual({ bytes: 3, fds: [] });
      const second = n().recvmsg(server, buf, 4);
      second.fds.forEach(track);
      expect(second.bytes).toBe(3);
      expect(second.fds).toHaveLength(1);
      expect([...buf]).toEqual([2, 2, 2]);
    });

    it("more fds than maxFds: every received fd is closed and it throws EMSGSIZE", () => {
      const { client, server } = connectedPair();
      const fds = [track(n().eventfd(0)), track(n().eventfd(0)), track(n().eventfd(0))];
      const before = fdCount();
      n().sendmsg(client, new Uint8Array([1]), fds);
      expectSystemError(() => n().recvmsg(server, new Uint8Array(8), 1), "EMSGSIZE");
      expect(fdCount()).toBe(before);
      n().sendmsg(client, new Uint8Array([2]), fds);
      expectSystemError(() => n().recvmsg(server, new Uint8Array(8), 0), "EMSGSIZE");
      expect(fdCount()).toBe(before);
      // The connection still works for what comes next.
      n().sendmsg(client, new Uint8Array([3]));
      expect(n().recvmsg(server, new Uint8Array(8), 0).bytes).toBe(1);
    });

    it("sendmsg on a full socket: partial counts, then -1 (EAGAIN); EPIPE once the peer is gone", () => {
      const { client, server } = connectedPair();
      const chunk = new Uint8Array(256 * 1024).fill(0xab);
      let sent = 0;
      let last = 0;
      for (let i = 0; i < 1000; i++) {
        last = n().sendmsg(client, chunk);
        if (last === -1) break;
        expect(last).toBeGreaterThan(0);
        expect(last).toBeLessThanOrEqual(chunk.length);
        sent += last;
      }
      expect(last).toBe(-1);
      expect(sent).toBeGreaterThan(0);
      let received = 0;
      const buf = new Uint8Array(64 * 1024);
      for (let r = n().recvmsg(server, buf, 0); r.bytes > 0; r = n().recvmsg(server, buf, 0))
        received += r.bytes;
      expect(received).toBe(sent);
      closeFd(server);
      expectSystemError(() => n().sendmsg(client, chunk), "EPIPE");
      expect(n().recvmsg(client, buf, 0).bytes).toBe(0);
    });

    it("recvmsg: ECONNRESET when the peer closed without reading what it was sent", () => {
      const { client, server } = connectedPair();
      n().sendmsg(client, new Uint8Array([1, 2, 3]));
      closeFd(server);
      expectSystemError(() => n().recvmsg(client, new Uint8Array(8), 0), "ECONNRESET");
    });

    it("listen replaces a stale socket file but never unlinks another kind of file", () => {
      const path = socketPath();
      const first = track(n().listen(path, 1));
      closeFd(first); // the socket file stays behind
      expectSystemError(() => n().connect(path), "ECONNREFUSED");
      const second = track(n().listen(path, 1));
      const client = track(n().connect(path));
      // The new socket is the one listening: what the client sends reaches the accepted end.
      const accepted = track(n().accept(second));
      expect(n().sendmsg(client, Uint8Array.of(7, 8, 9))).toBe(3);
      const got = new Uint8Array(8);
      expect(n().recvmsg(accepted, got, 0).bytes).toBe(3);
      expect(Array.from(got.subarray(0, 3))).toEqual([7, 8, 9]);
      closeFd(client);

      const regular = join(dir, "regular-file");
      writeFileSync(regular, "keep me");
      expectSystemError(() => n().listen(regular, 1), "EADDRINUSE");
      expect(readdirSync(dir)).toContain("regular-file");
    });

    it("connect and listen errors carry the errno name", () => {
      expectSystemError(() => n().connect(join(dir, "nobody-here")), "ENOENT");
      expectSystemError(() => n().listen(join(dir, "no-such-dir", "s"), 1), "ENOENT");
      expectSystemError(() => n().connect(join(dir, "x".repeat(200))), "ENAMETOOLONG");
      try {
        n().connect(join(dir, "nobody-here"));
      } catch (error) {
        expect(error).toMatchObject({ code: "ENOENT", errno: -2, syscall: "connect" });
        expect((error as Error).message).toMatch(/^ENOENT: no such file or directory, connect /);
      }
      expectSystemError(() => n().accept(track(n().eventfd(0))), "ENOTSOCK");
    });
  });

  describe("memory", () => {
    it("mmap at a page-aligned offset sees that part of the file", () => {
      const memfd = track(n().memfd("offsets", 8 * PAGE));
      const whole = new Uint8Array(map(memfd, 8 * PAGE));
      whole[2 * PAGE] = 42;
      whole[2 * PAGE + 100] = 43;
      const part = new Uint8Array(map(memfd, 2 * PAGE, 2 * PAGE));
      expect(part.length).toBe(2 * PAGE);
      expect(part[0]).toBe(42);
      expect(part[100]).toBe(43);
      part[PAGE] = 44;
      expect(whole[3 * PAGE]).toBe(44);
    });

    it("mmap refuses what would fault or cannot be mapped", () => {
      const memfd = track(n().memfd("small", 2 * PAGE));
      // Past the end of the file: SIGBUS on access, so refused up front.
      expectSystemError(() => n().mmap(memfd, 3 * PAGE, 0), "EINVAL");
      expectSystemError(() => n().mmap(memfd, PAGE, 2 * PAGE), "EINVAL");
      // Not page-aligned.
      expect(() => n().mmap(memfd, PAGE, 100)).toThrow(RangeError);
      // Size 0, beyond 2^48, not an integer.
      expect(() => n().mmap(memfd, 0, 0)).toThrow(RangeError);
      expect(() => n().mmap(memfd, 2 ** 48 + PAGE, 0)).toThrow(RangeError);
      expect(() => n().mmap(memfd, 1.5, 0)).toThrow(RangeError);
      // An fd that cannot be mapped, and one that is not open.
      const efd = track(n().eventfd(0));
      expectSystemError(() => n().mmap(efd, PAGE, 0), "ENODEV");
      const closed = n().eventfd(0);
      n().close(closed);
      expectSystemError(() => n().mmap(closed, PAGE, 0), "EBADF");
    });

    it("mmap past Node's largest Buffer says to map in pieces", () => {
      const size = MMAP_MAX_SIZE + 16 * PAGE;
      if (size > 2 ** 48) return; // no such limit on this Node
      const memfd = track(n().memfd("huge-sparse", size));
      expect(() => n().mmap(memfd, size, 0)).toThrow(/smaller pieces/);
      // Pieces work (the file is sparse: nothing is allocated).
      const tail = new Uint8Array(map(memfd, 16 * PAGE, MMAP_MAX_SIZE));
      tail[0] = 1;
      expect(tail[0]).toBe(1);
    });

    it("mmapRegion: windows over parts of one mapping share its bytes; munmapRegion empties them all", () => {
      const memfd = track(n().memfd("region", 8 * PAGE));
      const whole = new Uint8Array(map(memfd, 8 * PAGE));
      const region = n().mmapRegion(memfd, 6 * PAGE, 2 * PAGE);
      const a = new Uint8Array(n().mmapWindow(region, 0, 2 * PAGE));
      // Windows need not be page-aligned, and may overlap.
      const b = new Uint8Array(n().mmapWindow(region, PAGE + 3, 10));
      const last = new Uint8Array(n().mmapWindow(region, 6 * PAGE - 1, 1));
      expect([a.length, b.length, last.length]).toEqual([2 * PAGE, 10, 1]);
      a[PAGE + 3] = 7;
      expect(b[0]).toBe(7);
      expect(whole[3 * PAGE + 3]).toBe(7);
      whole[8 * PAGE - 1] = 9;
      expect(last[0]).toBe(9);
      // Outside the region, or not a region.
      expect(() => n().mmapWindow(region, 6 * PAGE, 1)).toThrow(RangeError);
      expect(() => n().mmapWindow(region, 0, 6 * PAGE + 1)).toThrow(RangeError);
      expect(() => n().mmapWindow(region, 0, 0)).toThrow(RangeError);
      expect(() => n().mmapWindow(region, -1, 1)).toThrow(RangeError);
      expect(() => n().mmapWindow({} as never, 0, 1)).toThrow(TypeError);
      expect(() => n().munmapRegion(new ArrayBuffer(8) as never)).toThrow(TypeError);
      expect(() => n().munmap(region as never)).toThrow(TypeError);
      // The same checks as mmap.
      expectSystemError(() => n().mmapRegion(memfd, 9 * PAGE, 0), "EINVAL");
      expect(() => n().mmapRegion(memfd, PAGE, 100)).toThrow(RangeError);
      n().munmapRegion(region);
      expect([a.byteLength, b.byteLength, last.byteLength]).toEqual([0, 0, 0]);
      expectSystemError(() => n().mmapWindow(region, 0, 1), "EINVAL");
      n().munmapRegion(region);
      expect(whole[3 * PAGE + 3]).toBe(7);
    });

    it("mmapRegion: V8 counts only the windows made as external memory, not the whole mapping", () => {
      const size = 256 * 1024 * 1024;
      const memfd = track(n().memfd("region-external", size));
      const before = process.memoryUsage().external;
      const region = n().mmapRegion(memfd, size, 0);
      const windows = [0, 100, 255].map((i) => new Uint8Array(n().mmapWindow(region, i << 20, 1 << 20)));
      const grew = process.memoryUsage().external - before;
      expect(grew).toBeGreaterThanOrEqual(3 << 20);
      expect(grew).toBeLessThan(8 << 20);
      windows[2]![(1 << 20) - 1] = 1;
      n().munmapRegion(region);
      expect(windows.map((w) => w.byteLength)).toEqual([0, 0, 0]);
    });

    it("munmap takes only buffers from mmap", () => {
      expect(() => n().munmap(new ArrayBuffer(8))).toThrow(TypeError);
      expect(() => n().munmap(new Uint8Array(8) as unknown as ArrayBuffer)).toThrow(TypeError);
      expect(() => n().munmap(undefined as unknown as ArrayBuffer)).toThrow(TypeError);
    });

    it("memfd: size 0 is fine; sizes out of range are not", () => {
      const empty = track(n().memfd("empty", 0));
      expectSystemError(() => n().mmap(empty, PAGE, 0), "EINVAL");
      expect(() => n().memfd("too-big", 2 ** 48 + 1)).toThrow(RangeError);
      expect(() => n().memfd("negative", -1)).toThrow(RangeError);
      expectSystemError(() => n().memfd("n".repeat(300), PAGE), "ENAMETOOLONG");
    });
  });

  describe("eventfd", () => {
    it("counts writes; a read returns the sum and resets it; 0 when empty", () => {
      const efd = track(n().eventfd(5));
      expect(n().eventfdRead(efd)).toBe(5);
      expect(n().eventfdRead(efd)).toBe(0);
      n().eventfdWrite(efd, 1);
      n().eventfdWrite(efd, 1);
      n().eventfdWrite(efd, 40);
      expect(n().eventfdRead(efd)).toBe(42);
      n().eventfdWrite(efd, 2 ** 53 - 1);
      expect(n().eventfdRead(efd)).toBe(2 ** 53 - 1);
    });

    it("a saturated counter ignores further writes (EAGAIN) instead of throwing", () => {
      const efd = track(n().eventfd(0));
      // 2^64 - 2 is the most an eventfd counts: about 2048 writes of 2^53 - 1.
      for (let i = 0; i < 2100; i++) n().eventfdWrite(efd, 2 ** 53 - 1);
      expect(n().eventfdRead(efd)).toBeGreaterThan(1.8e19);
      expect(n().eventfdRead(efd)).toBe(0);
    });

    it("eventfdRead of something that is not an eventfd", () => {
      const { client, server } = connectedPair();
      n().sendmsg(client, new Uint8Array([1, 2]));
      expectSystemError(() => n().eventfdRead(server), "EINVAL");
      expectSystemError(() => n().eventfdRead(2 ** 31 - 1), "EBADF");
    });
  });

  describe("poll", () => {
    it("fires when an eventfd becomes readable", async () => {
      const efd = track(n().eventfd(0));
      const event = firstEvent(efd, POLL_READABLE);
      setTimeout(() => n().eventfdWrite(efd, 3), 10);
      expect(await event).toEqual({ status: 0, events: POLL_READABLE });
      expect(n().eventfdRead(efd)).toBe(3);
    });

    it("fires when a socket has data, and for writability", async () => {
      const { client, server } = connectedPair();
      const readable = firstEvent(server, POLL_READABLE);
      n().sendmsg(client, new Uint8Array([1, 2, 3, 4]));
      expect(await readable).toEqual({ status: 0, events: POLL_READABLE });
      expect(n().recvmsg(server, new Uint8Array(8), 0).bytes).toBe(4);
      expect(await firstEvent(client, POLL_WRITABLE)).toEqual({ status: 0, events: POLL_WRITABLE });
      const both = await firstEvent(client, POLL_READABLE | POLL_WRITABLE);
      expect(both.events & POLL_WRITABLE).toBe(POLL_WRITABLE);
    });

    it("reports readability when the peer closes", async () => {
      const { client, server } = connectedPair();
      const event = firstEvent(server, POLL_READABLE);
      closeFd(client);
      expect((await event).events & POLL_READABLE).toBe(POLL_READABLE);
      expect(n().recvmsg(server, new Uint8Array(8), 0).bytes).toBe(0);
    });

    it("keeps firing (level-triggered) until stopped; stop is idempotent and works inside the callback", async () => {
      const efd = track(n().eventfd(1)); // readable and never read
      let calls = 0;
      await new Promise<void>((resolve) => {
        const handle = startPoll(efd, POLL_READABLE, () => {
          calls++;
          if (calls === 5) {
            handle.stop();
            handle.stop();
            setTimeout(resolve, 30);
          }
        });
      });
      expect(calls).toBe(5);
    });

    it("runs microtasks after each callback, as Node I/O does", async () => {
      const efd = track(n().eventfd(1));
      const order: string[] = [];
      await new Promise<void>((resolve) => {
        const handle = startPoll(efd, POLL_READABLE, () => {
          handle.stop();
          order.push("callback");
          void Promise.resolve().then(() => order.push("microtask"));
          setImmediate(() => {
            order.push("immediate");
            resolve();
          });
        });
      });
      expect(order).toEqual(["callback", "microtask", "immediate"]);
    });

    it("close(fd) stops a poll on fd first; stop() afterwards does nothing", async () => {
      const efd = n().eventfd(1);
      let calls = 0;
      const handle = startPoll(efd, POLL_READABLE, () => calls++);
      n().close(efd);
      await new Promise((resolve) => setTimeout(resolve, 30));
      expect(calls).toBe(0);
      handle.stop();
    });

    it("refuses an fd the loop already watches (EEXIST), a regular file (EPERM), a closed fd (EBADF)", () => {
      const efd = track(n().eventfd(0));
      startPoll(efd, POLL_READABLE, () => {});
      expectSystemError(() => n().poll(efd, POLL_READABLE, () => {}), "EEXIST");
      const memfd = track(n().memfd("regular", PAGE));
      expectSystemError(() => n().poll(memfd, POLL_READABLE, () => {}), "EPERM");
      const closed = n().eventfd(0);
      n().close(closed);
      expectSystemError(() => n().poll(closed, POLL_READABLE, () => {}), "EBADF");
    });

    it("lets the process exit once stopped (and keeps it alive until then)", async () => {
      const result = await runChild(`
          const n = require(process.env.ADDON);
          const efd = n.eventfd(0);
          let fired = 0;
          const handle = n.poll(efd, 1, (status, events) => {
            fired++;
            n.eventfdRead(efd);
            if (fired === 2) { handle.stop(); n.close(efd); console.log("stopped", status, events); }
          });
          // Nothing else keeps the loop alive between these writes: only the poll does.
          setTimeout(() => n.eventfdWrite(efd, 1), 20);
          setTimeout(() => n.eventfdWrite(efd, 1), 60);
        `);
      expect(result).toMatchObject({ code: 0, signal: null });
      expect(result.stdout.trim()).toBe("stopped 0 1");
    });

    it("a callback that throws raises an ordinary uncaught exception", async () => {
      const handled = await runChild(`
          const n = require(process.env.ADDON);
          const efd = n.eventfd(1);
          const handle = n.poll(efd, 1, () => { throw new Error("boom from poll"); });
          process.on("uncaughtException", (error) => {
            console.log("caught:", error.message);
            handle.stop();
            n.close(efd);
          });
        `);
      expect(handled).toMatchObject({ code: 0, stdout: "caught: boom from poll\n" });
      const unhandled = await runChild(`
          const n = require(process.env.ADDON);
          n.poll(n.eventfd(1), 1, () => { throw new Error("unhandled boom"); });
        `);
      expect(unhandled.code).toBe(1);
      expect(unhandled.signal).toBeNull();
      expect(unhandled.stderr).toContain("unhandled boom");
    });

    it("a worker torn down with polls running closes them cleanly", async () => {
      const result = await runChild(`
          const { Worker } = require("node:worker_threads");
          const code = \`
            const n = require(process.env.ADDON);
            const { parentPort } = require("node:worker_threads");
            n.poll(n.eventfd(0), 1, () => {});
            n.poll(n.eventfd(0), 2, () => {}); // writable: fires all the time
            const memfd = n.memfd("w", 4096);
            new Uint8Array(n.mmap(memfd, 4096, 0))[0] = 1;
            parentPort.postMessage("ready");
          \`;
          let left = 5;
          const next = () => {
            const worker = new Worker(code, { eval: true });
            worker.on("message", () => setTimeout(() => worker.terminate(), 5));
            worker.on("exit", () => (--left > 0 ? next() : console.log("all workers gone")));
          };
          next();
        `);
      expect(result).toMatchObject({ code: 0, signal: null, stdout: "all workers gone\n" });
    });
  });

  it("unmaps buffers dropped without munmap once garbage-collected", async () => {
    const result = await runChild(
      `
          const n = require(process.env.ADDON);
          const memfd = n.memfd("gc-probe", 1 << 20);
          const mapped = () => require("fs").readFileSync("/proc/self/maps", "utf8").split("\\n")
            .filter((line) => line.includes("memfd:gc-probe")).length;
          for (let i = 0; i < 20; i++) new Uint8Array(n.mmap(memfd, 1 << 20, 0))[i] = i;
          const before = mapped();
          n.close(memfd);
          (async () => {
            for (let i = 0; i < 10 && mapped() > 0; i++) {
              globalThis.gc();
              await new Promise((resolve) => setImmediate(resolve));
            }
            console.log(before, mapped());
          })();
        `,
      ["--expose-gc"],
    );
    expect(result).toMatchObject({ code: 0, stdout: "20 0\n" });
  });

  it("unmaps a region once it is unmapped or dropped, and not before its last window is gone", async () => {
    const result = await runChild(
      `
          const n = require(process.env.ADDON);
          const memfd = n.memfd("region-probe", 1 << 20);
          const mapped = () => require("fs").readFileSync("/proc/self/maps", "utf8").split("\\n")
            .filter((line) => line.includes("memfd:region-probe")).length;
          const settle = async (until) => {
            for (let i = 0; i < 20 && !until(); i++) {
              globalThis.gc();
              await new Promise((resolve) => setImmediate(resolve));
            }
          };
          (async () => {
            // munmapRegion with windows alive: unmapped at once, the windows emptied.
            let r = n.mmapRegion(memfd, 1 << 20, 0);
            const w = new Uint8Array(n.mmapWindow(r, 4096, 4096));
            w[0] = 1;
            const a = mapped();
            n.munmapRegion(r);
            const b = mapped();
            // Dropped without munmapRegion, a window still held: mapped until the window goes too.
            r = n.mmapRegion(memfd, 1 << 20, 0);
            let kept = new Uint8Array(n.mmapWindow(r, 0, 4096));
            r = null;
            await settle(() => false);
            const c = mapped();
            kept[1] = 2;
            kept = null;
            await settle(() => mapped() === 0);
            const d = mapped();
            // Many regions dropped without any call: all unmapped once collected.
            for (let i = 0; i < 20; i++) new Uint8Array(n.mmapWindow(n.mmapRegion(memfd, 1 << 20, 0), i, 1))[0] = i;
            const e = mapped();
            await settle(() => mapped() === 0);
            n.close(memfd);
            console.log(a, b, w.byteLength, c, d, e, mapped());
          })();
        `,
      ["--expose-gc"],
    );
    expect(result).toMatchObject({ code: 0, stdout: "1 0 0 1 0 20 0\n" });
  });

  it("bad arguments throw TypeError or RangeError, never crash", () => {
    const efd = track(n().eventfd(0));
    const buf = new Uint8Array(8);
    const typeErrors: [string, () => unknown][] = [
      ["listen(number)", () => n().listen(1 as unknown as string, 1)],
      ["listen(path, string)", () => n().listen(join(dir, "t"), "1" as unknown as number)],
      ["listen()", () => (n().listen as () => number)()],
      ["listen(NUL)", () => n().listen(join(dir, "a\0b"), 1)],
      ["accept(string)", () => n().accept("3" as unknown as number)],
      ["connect(undefined)", () => n().connect(undefined as unknown as string)],
      ["recvmsg(string buf)", () => n().recvmsg(efd, "abc" as unknown as Uint8Array, 0)],
      ["recvmsg(ArrayBuffer)", () => n().recvmsg(efd, new ArrayBuffer(8) as unknown as Uint8Array, 0)],
      ["recvmsg(no maxFds)", () => (n().recvmsg as (fd: number, b: Uint8Array) => unknown)(efd, buf)],
      ["sendmsg(fds object)", () => n().sendmsg(efd, buf, { length: 1 } as unknown as number[])],
      ["sendmsg(fds of strings)", () => n().sendmsg(efd, buf, ["1"] as unknown as number[])],
      ["sendmsg(array data)", () => n().sendmsg(efd, [1, 2] as unknown as Uint8Array)],
      ["close(null)", () => n().close(null as unknown as number)],
      ["close(bigint)", () => n().close(3n as unknown as number)],
      ["poll(no callback)", () => n().poll(efd, 1, undefined as unknown as () => void)],
      ["poll(events string)", () => n().poll(efd, "1" as unknown as number, () => {})],
      ["mmap(string size)", () => n().mmap(efd, "4096" as unknown as number, 0)],
      ["eventfd({})", () => n().eventfd({} as unknown as number)],
      ["eventfdWrite(no value)", () => (n().eventfdWrite as (fd: number) => void)(efd)],
      ["memfd(number name)", () => n().memfd(5 as unknown as string, 0)],
    ];
    for (const [name, call] of typeErrors) expect(call, name).toThrow(TypeError);

    const rangeErrors: [string, () => unknown][] = [
      ["close(-1)", () => n().close(-1)],
      ["close(2^31)", () => n().close(2 ** 31)],
      ["close(1.5)", () => n().close(1.5)],
      ["close(NaN)", () => n().close(NaN)],
      ["accept(Infinity)", () => n().accept(Infinity)],
      ["recvmsg(empty buf)", () => n().recvmsg(efd, new Uint8Array(0), 0)],
      ["recvmsg(maxFds 254)", () => n().recvmsg(efd, buf, 254)],
      ["recvmsg(maxFds -1)", () => n().recvmsg(efd, buf, -1)],
      ["sendmsg(254 fds)", () => n().sendmsg(efd, buf, new Array<number>(254).fill(efd))],
      ["sendmsg(fd -1 in fds)", () => n().sendmsg(efd, buf, [-1])],
      ["sendmsg(fds, no data)", () => n().sendmsg(efd, new Uint8Array(0), [efd])],
      ["poll(events 0)", () => n().poll(efd, 0, () => {})],
      ["poll(events 4)", () => n().poll(efd, 4, () => {})],
      ["mmap(negative offset)", () => n().mmap(efd, PAGE, -PAGE)],
      ["eventfd(-1)", () => n().eventfd(-1)],
      ["eventfd(2^32)", () => n().eventfd(2 ** 32)],
      ["eventfdWrite(-1)", () => n().eventfdWrite(efd, -1)],
      ["eventfdWrite(2^53)", () => n().eventfdWrite(efd, 2 ** 53)],
      ["listen(backlog -1)", () => n().listen(join(dir, "t"), -1)],
    ];
    for (const [name, call] of rangeErrors) expect(call, name).toThrow(RangeError);
    try {
      n().close(-1);
    } catch (error) {
      expect(error).toMatchObject({ code: "ERR_OUT_OF_RANGE" });
    }
    try {
      n().close("x" as unknown as number);
    } catch (error) {
      expect(error).toMatchObject({ code: "ERR_INVALID_ARG_TYPE" });
    }
    // Other TypedArrays and DataViews are fine as buffers.
    const { client, server } = connectedPair();
    expect(n().sendmsg(client, new Uint32Array([0x01020304]) as unknown as Uint8Array)).toBe(4);
    const view = new DataView(new ArrayBuffer(8));
    expect(n().recvmsg(server, view as unknown as Uint8Array, 0).bytes).toBe(4);
    expect(view.getUint32(0, true)).toBe(0x01020304);
  });

  it("leaks no fds over many full rounds", () => {
    const round = (): void => {
      const path = socketPath();
      const listenFd = n().listen(path, 1);
      const client = n().connect(path);
      const server = n().accept(listenFd);
      const memfd = n().memfd("round", PAGE);
      const efd = n().eventfd(0);
      const mapped = n().mmap(memfd, PAGE, 0);
      n().sendmsg(client, new Uint8Array([1]), [memfd, efd]);
      const { fds } = n().recvmsg(server, new Uint8Array(4), 2);
      const handle = n().poll(efd, POLL_READABLE, () => {});
      handle.stop();
      n().munmap(mapped);
      for (const fd of [...fds, listenFd, client, server, memfd, efd]) n().close(fd);
    };
    round();
    const before = fdCount();
    for (let i = 0; i < 50; i++) round();
    expect(fdCount()).toBe(before);
  });
});
