/**
 * The native half of vhost-user: what Node cannot do without native code
 * (nodejs/node#53391). A vhost-user back-end receives file descriptors over a
 * Unix socket (SCM_RIGHTS), maps the guest's memory from a memfd, and waits on
 * eventfds (kick) and signals others (call); none of that is reachable from
 * plain Node. The addon (native/src/vhost_user_native.c, plain N-API C, Linux
 * only) is built on install by scripts/build-native.mjs, which never fails an
 * installation: when the addon is missing, vhost-user is unavailable and
 * everything else works. {@link loadNative} says exactly why.
 *
 * Conventions of every {@link NativeBinding} function:
 *  - Arguments are checked: a wrong type throws a TypeError (code
 *    "ERR_INVALID_ARG_TYPE"); a number that is not an integer or out of range
 *    throws a RangeError (code "ERR_OUT_OF_RANGE"). fds are integers 0..2^31-1.
 *  - A failed system call throws a {@link NativeSystemError}: .code is the errno
 *    name ("EBADF"), .errno the negated errno, .syscall the call.
 *  - Every fd the addon creates (listen, accept, connect, eventfd, memfd, fds
 *    received by recvmsg) is close-on-exec; sockets and eventfds are
 *    non-blocking. Whoever gets an fd owns it and must close() it.
 */
import { constants as bufferConstants } from "node:buffer";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { VirtioSndError } from "../errors.js";

/** The package's native/ folder: the addon's sources, its build (build/Release) and prebuilds (prebuilds/). */
export const NATIVE_DIR = fileURLToPath(new URL("../../native/", import.meta.url));

/** Where scripts/build-native.mjs puts an addon built from source (same path from src/ and dist/). */
export const NATIVE_ADDON_PATH = join(NATIVE_DIR, "build", "Release", "vhost_user_native.node");

/** The command that builds the addon from source in this installation, whatever installed it. */
export const NATIVE_BUILD_COMMAND = `node ${JSON.stringify(fileURLToPath(new URL("../../scripts/build-native.mjs", import.meta.url)))}`;

/**
 * The addon file to load: node-gyp-build's choice in {@link NATIVE_DIR} (a
 * build from source in build/Release first, then the prebuilt one for this
 * platform, arch and libc in prebuilds/), or null when there is none.
 */
export function findNativeAddon(dir: string = NATIVE_DIR): string | null {
  try {
    const gypBuild = createRequire(import.meta.url)("node-gyp-build") as { path(dir: string): string };
    return gypBuild.path(dir);
  } catch {
    // node-gyp-build missing, or no file for this machine: the caller says what to do.
    return existsSync(join(dir, "build", "Release", "vhost_user_native.node"))
      ? join(dir, "build", "Release", "vhost_user_native.node")
      : null;
  }
}

/** {@link NativeBinding.poll} event bits (libuv's UV_READABLE and UV_WRITABLE). */
export const POLL_READABLE = 1;
export const POLL_WRITABLE = 2;

/** The kernel's SCM_MAX_FD: the most fds one message carries. */
export const MAX_FDS_PER_MESSAGE = 253;

/**
 * The largest mapping {@link NativeBinding.mmap} can return: 2^48, but also
 * no more than Node's largest Buffer (buffer.constants.MAX_LENGTH, 4 GiB on
 * Node 20), because Node makes external ArrayBuffers through Buffers. Map a
 * larger guest memory region in pieces of at most this size (page-aligned
 * offsets); a descriptor's buffer may then straddle two pieces.
 */
export const MMAP_MAX_SIZE = Math.min(2 ** 48, bufferConstants.MAX_LENGTH);

/** What a failed system call throws. */
export interface NativeSystemError extends Error {
  /** The errno name: "EBADF", "ECONNRESET", "EAGAIN"... */
  code: string;
  /** The negated errno (as Node's own system errors). */
  errno: number;
  /** The call that failed: "recvmsg", "mmap"... */
  syscall: string;
}

/** Is `error` a system error from the addon (with that errno name, if given)? */
export function isNativeSystemError(error: unknown, code?: string): error is NativeSystemError {
  return (
    error instanceof Error &&
    typeof (error as Partial<NativeSystemError>).code === "string" &&
    typeof (error as Partial<NativeSystemError>).errno === "number" &&
    typeof (error as Partial<NativeSystemError>).syscall === "string" &&
    (code === undefined || (error as NativeSystemError).code === code)
  );
}

/** A running {@link NativeBinding.poll}. */
export interface PollHandle {
  /**
   * Stops watching and closes the uv handle (uv_close): the loop no longer
   * waits for it and the callback is never called again, even for an event
   * already queued. Idempotent; may be called from inside the callback.
   */
  stop(): void;
}

/** A mapping made by {@link NativeBinding.mmapRegion}: opaque. */
export interface NativeRegion {
  readonly __nativeRegion: unique symbol;
}

export interface NativeBinding {
  /**
   * socket(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC|SOCK_NONBLOCK), then, when a
   * SOCKET file exists at path (a stale one from an earlier run), unlink it
   * (any other kind of file is left alone, and bind fails with EADDRINUSE),
   * bind, listen(backlog). Returns the listening fd. A path longer than
   * sun_path (107 bytes) throws ENAMETOOLONG; backlog is 0..2^31-1.
   */
  listen(path: string, backlog: number): number;
  /**
   * accept4(listenFd, SOCK_CLOEXEC|SOCK_NONBLOCK). The connection's fd is
   * NON-BLOCKING: a peer that sends half a message cannot block the event
   * loop; recvmsg returns what has arrived and -1 when nothing has, so the
   * protocol layer accumulates bytes until it has a whole message. Returns -1
   * when no connection is pending (EAGAIN). A connection that was aborted
   * before it was accepted (ECONNABORTED) is skipped.
   */
  accept(listenFd: number): number;
  /**
   * Client side (tests playing the front-end): a connected Unix stream socket
   * (non-blocking, cloexec). A Unix connect completes at once or fails:
   * ENOENT (no such path), ECONNREFUSED (nobody listens), EAGAIN (the
   * listener's backlog is full).
   */
  connect(path: string): number;
  /**
   * recvmsg(fd, MSG_DONTWAIT|MSG_CMSG_CLOEXEC) into buf (any TypedArray or
   * DataView, up to its byteLength; it must not be empty), collecting up to
   * maxFds (0..253) SCM_RIGHTS fds, which are close-on-exec. Returns
   * { bytes, fds }: bytes 0 = the peer closed; bytes -1 = nothing to read
   * (EAGAIN, fds []). Reads what is available: fewer bytes than asked is
   * normal. fds come with the first byte of the sendmsg that carried them,
   * and a read stops after that sendmsg's bytes, but it may START with bytes
   * of earlier messages sent without fds. So read exactly a header, then
   * exactly its payload (as libvhost-user does): the fds then belong to the
   * message whose header read returned them. Other errors throw (code "ECONNRESET"...). If the peer sent more fds than
   * maxFds (control data truncated, MSG_CTRUNC), every fd received is closed
   * and it throws code "EMSGSIZE"; the bytes read with them are lost, so treat
   * the connection as broken.
   */
  recvmsg(fd: number, buf: Uint8Array, maxFds: number): { bytes: number; fds: number[] };
  /**
   * sendmsg(fd, MSG_DONTWAIT|MSG_NOSIGNAL) of data (any TypedArray or
   * DataView) with, when fds is given (at most 253), one SCM_RIGHTS message.
   * Returns the bytes sent: on a non-blocking socket this may be fewer than
   * data.byteLength (the fds went with the first part; send the rest without
   * them), and -1 when nothing could be sent (EAGAIN: the socket buffer is
   * full; wait for POLL_WRITABLE). data must not be empty when fds are given.
   * Other errors throw ("EPIPE" when the peer is gone: no SIGPIPE).
   */
  sendmsg(fd: number, data: Uint8Array, fds?: readonly number[]): number;
  /**
   * close(fd). A poll still running on fd is stopped first (libuv must never
   * watch a closed fd; it aborts the process when it finds one). Do not close
   * an fd under a poll with anything but this function.
   */
  close(fd: number): void;
  /**
   * uv_poll on fd in the current event loop (libuv makes fd non-blocking, and
   * for a received fd that changes the sender's file description too). events:
   * POLL_READABLE | POLL_WRITABLE (1..3). cb(status, events) on every
   * readiness (level-triggered: read until EAGAIN, or it fires again), with
   * `this` = globalThis; status < 0 is a libuv error code (then events is 0).
   * cb runs as any Node I/O callback (napi_make_callback: async context;
   * nextTicks and microtasks run after it). If cb throws, the exception is an
   * ordinary uncaught exception: process 'uncaughtException' handlers get it,
   * or Node prints it and exits; the poll keeps running until stopped. The
   * handle keeps the loop alive until stop(). Throws EEXIST when the loop
   * already watches fd (another poll, or a Node stream on it), EPERM for a
   * regular file, EBADF. A worker's polls are closed when it exits.
   */
  poll(fd: number, events: number, cb: (status: number, events: number) => void): PollHandle;
  /**
   * mmap(NULL, size, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset) as an
   * external ArrayBuffer (its memory IS the mapping). offset must be a multiple
   * of the page size (RangeError otherwise; map from the aligned-down offset
   * and take a view). size: 1..{@link MMAP_MAX_SIZE} (RangeError otherwise).
   * When fd is a regular file (a memfd is), offset + size must not pass its
   * end: touching a shared mapping past the end of its file raises SIGBUS and
   * kills the process, so that throws code "EINVAL" (a peer that shrinks the
   * file afterwards can still cause it: QEMU seals its memfds). Failed calls
   * throw with their errno ("EBADF", "ENODEV" for an fd that cannot be mapped).
   * The mapping does not hold fd open: close fd whenever convenient.
   */
  mmap(fd: number, size: number, offset: number): ArrayBuffer;
  /**
   * munmap, after DETACHING the ArrayBuffer (napi_detach_arraybuffer): every
   * view of it becomes empty (length 0) instead of pointing at unmapped
   * memory. Idempotent. A buffer not made by mmap() throws a TypeError. A
   * buffer never unmapped is unmapped by its finalizer once garbage-collected.
   * Do not unmap while asynchronous I/O (fs.write...) still uses a view of it.
   */
  munmap(buf: ArrayBuffer): void;
  /**
   * mmap as {@link NativeBinding.mmap} does (same arguments, checks and
   * errors), without an ArrayBuffer over the whole mapping: buffers over parts
   * of it come from {@link NativeBinding.mmapWindow}. V8 counts each buffer's
   * length as external memory and collects garbage when that jumps, so a
   * region of guest RAM exposes only the windows in use.
   */
  mmapRegion(fd: number, size: number, offset: number): NativeRegion;
  /**
   * An external ArrayBuffer over bytes [offset, offset + length) of a region
   * (RangeError outside it; code "EINVAL" once it is unmapped).
   */
  mmapWindow(region: NativeRegion, offset: number, length: number): ArrayBuffer;
  /**
   * Detaches every window of the region (their views become empty), then
   * unmaps it; a window detached by someone else (moved to a worker) keeps
   * the mapping until its backing store is freed. Idempotent. A region never
   * unmapped is unmapped once it and all its windows are garbage-collected.
   */
  munmapRegion(region: NativeRegion): void;
  /** eventfd(initial, EFD_CLOEXEC|EFD_NONBLOCK); initial is 0..2^32-1. */
  eventfd(initial: number): number;
  /**
   * read(2) of the 8-byte counter (which resets it): its value, or 0 when it is
   * 0 (EAGAIN). Exact up to 2^53; larger counters are rounded.
   */
  eventfdRead(fd: number): number;
  /**
   * write(2) of value (0..2^53-1) to the counter. EAGAIN (the counter would
   * overflow) is ignored: the reader is signalled anyway.
   */
  eventfdWrite(fd: number, value: number): void;
  /**
   * memfd_create(name, MFD_CLOEXEC) + ftruncate(size) (size 0..2^48; name at
   * most 249 bytes): for tests playing the front-end (QEMU's
   * memory-backend-memfd). The file is sparse: pages cost memory once touched.
   */
  memfd(name: string, size: number): number;
  /**
   * timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC|TFD_NONBLOCK): a timer to
   * watch with {@link NativeBinding.poll}. Whoever gets it must close() it.
   */
  timerfd(): number;
  /**
   * Arms the timerfd to expire once at CLOCK_MONOTONIC time sec.nsec (nsec
   * 0..999999999), or disarms it (0, 0). Either also clears an expiry not yet
   * read, so the fd stops being readable.
   */
  timerfdSet(fd: number, sec: number, nsec: number): void;
  /** CLOCK_MONOTONIC (the clock of performance.now() and timerfd) in milliseconds. */
  monotonicNow(): number;
}

export interface LoadNativeOptions {
  /** The .node file to load. Default: {@link findNativeAddon}'s. */
  path?: string;
  /** The platform to judge by. Default: process.platform (tests pass another). */
  platform?: NodeJS.Platform;
}

const BINDING_FUNCTIONS = [
  "listen",
  "accept",
  "connect",
  "recvmsg",
  "sendmsg",
  "close",
  "poll",
  "mmap",
  "munmap",
  "mmapRegion",
  "mmapWindow",
  "munmapRegion",
  "eventfd",
  "eventfdRead",
  "eventfdWrite",
  "memfd",
  "timerfd",
  "timerfdSet",
  "monotonicNow",
] as const satisfies readonly (keyof NativeBinding)[];

const loaded = new Map<string, NativeBinding>();

function unavailable(reason: string, cause?: unknown): VirtioSndError {
  return new VirtioSndError(
    "ERR_BACKEND",
    `vhost-user is unavailable: ${reason}`,
    cause === undefined ? undefined : { cause },
  );
}

/**
 * The native addon, loaded once per path. Throws a VirtioSndError with code
 * "ERR_BACKEND" saying why it is unavailable and what to do: not Linux; no
 * addon for this machine (no prebuilt one for its platform, arch and libc, and
 * none built from source: the message gives the command that builds it); or
 * the loader's own error (an incompatible or corrupt file).
 */
export function loadNative(options: LoadNativeOptions = {}): NativeBinding {
  const platform = options.platform ?? process.platform;
  if (platform !== "linux") {
    throw unavailable(
      `it needs Linux (this is ${platform}): its native addon passes file descriptors over Unix sockets and maps memfd shared memory`,
    );
  }
  const path = options.path ?? findNativeAddon();
  const rebuild =
    `build it from source with: ${NATIVE_BUILD_COMMAND} ` +
    "(it compiles a small C addon with node-gyp: it needs a C compiler, make and python3)";
  if (path === null || !existsSync(path)) {
    throw unavailable(
      `its native addon is missing: ${path ?? `no prebuilt addon for ${process.platform}-${process.arch} in ${join(NATIVE_DIR, "prebuilds")} and none built in ${join(NATIVE_DIR, "build")}`}. ` +
        rebuild.charAt(0).toUpperCase() +
        rebuild.slice(1),
    );
  }
  const cached = loaded.get(path);
  if (cached !== undefined) return cached;
  let binding: NativeBinding;
  try {
    binding = createRequire(import.meta.url)(path) as NativeBinding;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    throw unavailable(`the native addon at ${path} does not load: ${message}. To ${rebuild}`, error);
  }
  const missing = BINDING_FUNCTIONS.filter(
    (name) => typeof (binding as unknown as Record<string, unknown>)[name] !== "function",
  );
  if (missing.length > 0) {
    throw unavailable(
      `the native addon at ${path} is out of date (it lacks ${missing.join(", ")}). To ${rebuild}`,
    );
  }
  loaded.set(path, binding);
  return binding;
}

/** Can {@link loadNative} load the addon? If not, why (its error message). */
export function nativeAvailable(
  options: LoadNativeOptions = {},
): { ok: true } | { ok: false; reason: string } {
  try {
    loadNative(options);
    return { ok: true };
  } catch (error) {
    return { ok: false, reason: error instanceof Error ? error.message : String(error) };
  }
}
