/**
 * The vhost-user daemon: a listening Unix socket that QEMU (-device
 * vhost-user-snd-pci, as the client) connects to, serving one front-end at a
 * time with one VirtioSound. When the front-end goes away the device is reset
 * and the daemon waits for the next one; front-ends that connect meanwhile
 * wait in the socket's backlog.
 */
import { EventEmitter } from "node:events";
import { type Stats, lstatSync, unlinkSync } from "node:fs";
import { VirtioSndError } from "../errors.js";
import type { ControlChange, ControlElement, ControlValueInput } from "../device/controls.js";
import type { VirtioSound } from "../device/virtio-sound.js";
import type { StreamEvent } from "../stream/pcm-stream.js";
import { type LogEntry, VhostUserBackend, type VhostUserBackendOptions } from "./backend.js";
import { type NativeBinding, isNativeSystemError, loadNative } from "./native.js";
import {
  type MappedRegion,
  NativeListener,
  NativeTransport,
  type VhostTransport,
  type VhostTransportHandler,
} from "./transport.js";

export type { LogEntry } from "./backend.js";

export interface VhostUserDaemonOptions extends Omit<VhostUserBackendOptions, "log" | "onDisconnect"> {
  /**
   * Where to listen. A socket file nobody serves (connecting is refused) is
   * replaced; a live one fails with ERR_SOCKET_IN_USE, anything else there (a
   * file, a folder) with ERR_SOCKET_PATH.
   */
  readonly socketPath: string;
  /** The native addon; default loadNative() (which throws ERR_BACKEND, saying why, when it is unavailable). */
  readonly binding?: NativeBinding;
  /** How often a ring without a kick fd is polled, in ms. */
  readonly pollIntervalMs?: number;
  /** Aborting it closes the daemon, as close() does. */
  readonly signal?: AbortSignal;
}

export interface VhostUserDaemonEvents {
  /** Diagnostics from the protocol and the daemon. */
  log: [entry: LogEntry];
  /** A front-end connected (at its first message: a connection that says nothing is not one). */
  connect: [];
  /** The front-end went away (null) or its connection broke; the daemon listens again. */
  disconnect: [reason: Error | null];
  /** A stream's state changed, an xrun, a backend error (also given to options.onStreamEvent). */
  stream: [event: StreamEvent];
  /** A control element changed: the guest wrote it, or the host through setControlValue(). */
  control: [change: DaemonControlChange];
  /** The daemon closed (close(), or its signal aborted): the socket file is gone. */
  close: [];
}

/** A control change as the daemon reports it: from the guest (as onControlChange gets it) or the host. */
export type DaemonControlChange =
  | (ControlChange & { readonly source: "guest" })
  | {
      readonly source: "host";
      readonly kind: "value";
      readonly controlId: number;
      readonly control: ControlElement;
    };

/** What is at a path, in words, for messages. */
function describeFile(st: Stats): string {
  if (st.isFile()) return "a regular file";
  if (st.isDirectory()) return "a directory";
  if (st.isSymbolicLink()) return "a symbolic link";
  if (st.isFIFO()) return "a FIFO";
  return "not a socket";
}

/**
 * Makes `path` free for a new listening socket, or throws: nothing there is
 * fine; a socket file whose connect is refused (ECONNREFUSED: its process is
 * gone) is stale and removed; a socket that accepts (or whose backlog is
 * full) belongs to a live process and is left alone (ERR_SOCKET_IN_USE);
 * anything else is not ours to remove (ERR_SOCKET_PATH).
 */
export function claimSocketPath(native: NativeBinding, path: string): void {
  let st: Stats;
  try {
    st = lstatSync(path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === "ENOENT") return;
    throw new VirtioSndError("ERR_SOCKET_PATH", `cannot use ${path}: ${(err as Error).message}`, {
      cause: err,
    });
  }
  if (!st.isSocket()) {
    throw new VirtioSndError(
      "ERR_SOCKET_PATH",
      `${path} is ${describeFile(st)}, not a socket: remove it or choose another path`,
    );
  }
  let fd: number;
  try {
    fd = native.connect(path);
  } catch (err) {
    if (isNativeSystemError(err, "ECONNREFUSED")) {
      try {
        unlinkSync(path);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== "ENOENT")
          throw new VirtioSndError(
            "ERR_SOCKET_PATH",
            `cannot remove the stale socket ${path}: ${(e as Error).message}`,
            {
              cause: e,
            },
          );
      }
      return;
    }
    if (isNativeSystemError(err, "ENOENT")) return;
    if (isNativeSystemError(err, "EAGAIN")) fd = -1;
    else
      throw new VirtioSndError(
        "ERR_SOCKET_PATH",
        `cannot probe the socket ${path}: ${(err as Error).message}`,
        {
          cause: err,
        },
      );
  }
  if (fd >= 0) native.close(fd);
  throw new VirtioSndError("ERR_SOCKET_IN_USE", `${path} is in use: another process is listening on it`);
}

export class VhostUserDaemon extends EventEmitter<VhostUserDaemonEvents> implements AsyncDisposable {
  readonly socketPath: string;
  readonly backend: VhostUserBackend;
  private readonly native: NativeBinding;
  private readonly listener: NativeListener;
  private readonly pollIntervalMs: number | undefined;
  /** The socket file this daemon made: only that one is removed on close. */
  private readonly socketFile: { dev: number; ino: number } | null;
  private readonly signal: AbortSignal | undefined;
  private readonly onAbort = (): void => void this.close();
  private closing: Promise<void> | null = null;
  /** The connected front-end has sent a message (it was announced with "connect"). */
  private spoke = false;

  /**
   * Listens at once. Throws VirtioSndError ERR_BACKEND when the native addon is
   * unavailable or the socket cannot be made, ERR_SOCKET_IN_USE when another
   * process serves socketPath, ERR_SOCKET_PATH when something else is there.
   * An already aborted signal gives a daemon that is closed at once.
   */
  constructor(options: VhostUserDaemonOptions) {
    super();
    const { socketPath, binding, pollIntervalMs, signal, ...backendOptions } = options;
    this.socketPath = socketPath;
    this.pollIntervalMs = pollIntervalMs;
    this.native = binding ?? loadNative();
    claimSocketPath(this.native, socketPath);
    this.backend = new VhostUserBackend({
      ...backendOptions,
      log: (entry) => this.emit("log", entry),
      onStreamEvent: (event) => {
        options.onStreamEvent?.(event);
        this.emit("stream", event);
      },
      onDisconnect: (reason) => this.onDisconnect(reason),
      onControlChange: (change) => {
        options.onControlChange?.(change);
        this.emit("control", { ...change, source: "guest" });
      },
    });
    try {
      this.listener = new NativeListener(
        this.native,
        socketPath,
        (fd) => this.onConnection(fd),
        (error) => this.emit("log", { level: "error", message: `listening socket: ${error.message}` }),
      );
    } catch (err) {
      throw new VirtioSndError(
        "ERR_BACKEND",
        `cannot listen on ${socketPath}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    let file: Stats | null = null;
    try {
      file = lstatSync(socketPath);
    } catch {
      // Removed already: then there is nothing to remove on close either.
    }
    this.socketFile = file !== null ? { dev: file.dev, ino: file.ino } : null;
    this.listener.resume();
    this.signal = signal;
    if (signal?.aborted) void this.close();
    else signal?.addEventListener("abort", this.onAbort, { once: true });
  }

  get device(): VirtioSound {
    return this.backend.device;
  }

  /** Whether a front-end is connected. */
  get connected(): boolean {
    return this.backend.connected;
  }

  /** Whether close() was called (or the signal aborted). */
  get closed(): boolean {
    return this.closing !== null;
  }

  /**
   * Sets control element `controlId` (see device.controls) as the host: the
   * guest is told (a CTL_NOTIFY event) and, when the value changed, a
   * "control" event says so. Returns whether it changed. Throws
   * ERR_INVALID_STATE for an unknown id or a value the element cannot hold.
   */
  setControlValue(controlId: number, values: ControlValueInput): boolean {
    const changed = this.device.setControlValue(controlId, values);
    if (changed)
      this.emit("control", {
        source: "host",
        kind: "value",
        controlId,
        control: this.device.controls.get(controlId),
      });
    return changed;
  }

  /**
   * Stops listening, disconnects the front-end (resetting the device: voices
   * close, files get their final headers) and removes the socket file if it
   * is still the one this daemon made (same device and inode). Idempotent;
   * resolves once all that is done, after the "close" event.
   */
  close(): Promise<void> {
    if (this.closing !== null) return this.closing;
    this.closing = Promise.resolve();
    this.signal?.removeEventListener("abort", this.onAbort);
    this.listener.close();
    this.backend.disconnect();
    this.removeSocketFile();
    this.emit("close");
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private removeSocketFile(): void {
    const mine = this.socketFile;
    if (mine === null) return;
    try {
      const st = lstatSync(this.socketPath);
      // Another daemon may have replaced it since (after ours was removed): leave that one.
      if (st.isSocket() && st.dev === mine.dev && st.ino === mine.ino) unlinkSync(this.socketPath);
    } catch {
      // Already gone.
    }
  }

  private onConnection(fd: number): void {
    if (this.closing !== null || this.backend.connected) {
      try {
        this.native.close(fd);
      } catch {
        // Nothing to release.
      }
      return;
    }
    // One front-end at a time: the next ones wait in the backlog.
    this.listener.pause();
    const transport = new NativeTransport(
      this.native,
      fd,
      this.pollIntervalMs !== undefined ? { pollIntervalMs: this.pollIntervalMs } : {},
    );
    // A front-end is one that speaks: a connection closed cleanly before its first message
    // (another daemon checking whether this socket is live) is neither announced nor mourned.
    this.spoke = false;
    this.backend.attach(new AnnouncingTransport(transport, () => this.announce()));
  }

  /** The front-end spoke for the first time: announce it (once per connection). */
  private announce(): void {
    if (this.spoke) return;
    this.spoke = true;
    this.emit("connect");
  }

  private onDisconnect(reason: Error | null): void {
    if (this.spoke) this.emit("disconnect", reason);
    this.spoke = false;
    if (this.closing === null) this.listener.resume();
  }
}

/**
 * The connection's transport, with "connect" emitted at its first message. A
 * class rather than an object of closures: the interrupt path (vrings → the
 * transport's signal) then calls the same functions in every session, so the
 * code the JIT optimized for one connection stays valid for the next.
 */
class AnnouncingTransport implements VhostTransport {
  constructor(
    private readonly inner: VhostTransport,
    /** Announces the front-end (once per connection). */
    private readonly announce: () => void,
  ) {}

  start(handler: VhostTransportHandler): void {
    const announce = this.announce;
    this.inner.start({
      message: (m) => {
        announce();
        handler.message(m);
      },
      kick: (i) => handler.kick(i),
      closed: (reason) => {
        // Broken framing, an fd flood: a front-end that went wrong, announced as such.
        if (reason !== null) announce();
        handler.closed(reason);
      },
    });
  }

  send(message: Uint8Array): void {
    this.inner.send(message);
  }

  watchKick(index: number, fd: number | null): void {
    this.inner.watchKick(index, fd);
  }

  unwatchKick(index: number): void {
    this.inner.unwatchKick(index);
  }

  signal(fd: number): boolean {
    return this.inner.signal(fd);
  }

  map(fd: number, size: number, offset: number): MappedRegion {
    return this.inner.map(fd, size, offset);
  }

  closeFd(fd: number): void {
    this.inner.closeFd(fd);
  }

  close(): void {
    this.inner.close();
  }
}
