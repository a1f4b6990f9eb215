/**
 * The vhost-user daemon: a listening Unix socket that QEMU (-device
 * vhost-user-snd-pci, as the client) connects to, serving one front-end at a
 * time with one VirtioSound. When the front-end goes away the device is reset
 * and the daemon waits for the next one; front-ends that connect meanwhile
 * wait in the socket's backlog.
 */
import { EventEmitter } from "node:events";
import { lstatSync, unlinkSync } from "node:fs";
import { VirtioSndError } from "../errors.js";
import type { VirtioSound } from "../device/virtio-sound.js";
import type { StreamEvent } from "../stream/pcm-stream.js";
import { type LogEntry, VhostUserBackend, type VhostUserBackendOptions } from "./backend.js";
import { type NativeBinding, loadNative } from "./native.js";
import { NativeListener, NativeTransport } from "./transport.js";

export interface VhostUserDaemonOptions extends Omit<VhostUserBackendOptions, "log" | "onDisconnect"> {
  /** Where to listen. A stale socket file there is replaced; any other file makes the daemon fail. */
  readonly socketPath: string;
  /** The native addon; default loadNative() (which throws ERR_BACKEND, saying why, when it is unavailable). */
  readonly binding?: NativeBinding;
  /** How often a ring without a kick fd is polled, in ms. */
  readonly pollIntervalMs?: number;
}

export interface VhostUserDaemonEvents {
  /** Diagnostics from the protocol and the daemon. */
  log: [entry: LogEntry];
  /** A front-end connected. */
  connect: [];
  /** The front-end went away (null) or its connection broke; the daemon listens again. */
  disconnect: [reason: Error | null];
  /** A stream's state changed, an xrun, a backend error (also given to options.onStreamEvent). */
  stream: [event: StreamEvent];
}

export class VhostUserDaemon extends EventEmitter<VhostUserDaemonEvents> {
  readonly socketPath: string;
  readonly backend: VhostUserBackend;
  private readonly native: NativeBinding;
  private readonly listener: NativeListener;
  private readonly pollIntervalMs: number | undefined;
  private closed = false;

  /**
   * Listens at once. Throws VirtioSndError ERR_BACKEND when the native addon is
   * unavailable or the socket cannot be made (with the reason).
   */
  constructor(options: VhostUserDaemonOptions) {
    super();
    const { socketPath, binding, pollIntervalMs, ...backendOptions } = options;
    this.socketPath = socketPath;
    this.pollIntervalMs = pollIntervalMs;
    this.native = binding ?? loadNative();
    this.backend = new VhostUserBackend({
      ...backendOptions,
      log: (entry) => this.emit("log", entry),
      onStreamEvent: (event) => {
        options.onStreamEvent?.(event);
        this.emit("stream", event);
      },
      onDisconnect: (reason) => this.onDisconnect(reason),
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
    this.listener.resume();
  }

  get device(): VirtioSound {
    return this.backend.device;
  }

  /** Whether a front-end is connected. */
  get connected(): boolean {
    return this.backend.connected;
  }

  /** Stops listening, disconnects the front-end (resetting the device) and removes the socket file. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.listener.close();
    this.backend.disconnect();
    try {
      if (lstatSync(this.socketPath).isSocket()) unlinkSync(this.socketPath);
    } catch {
      // Already gone.
    }
  }

  private onConnection(fd: number): void {
    if (this.closed || this.backend.connected) {
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
    this.emit("connect");
    this.backend.attach(transport);
  }

  private onDisconnect(reason: Error | null): void {
    this.emit("disconnect", reason);
    if (!this.closed) this.listener.resume();
  }
}
