/**
 * The socket side of a vhost-user connection, behind an interface so the
 * protocol state machine (backend.ts) can be driven by the real socket
 * (NativeTransport, over the native addon) or by tests (MockTransport).
 *
 * A transport delivers whole messages with the file descriptors that came
 * with them, sends replies, watches kick eventfds, signals call and error
 * eventfds, and maps memory regions. It never interprets a message.
 */
import { VirtioSndError } from "../errors.js";
import {
  VHOST_USER_HDR_SIZE,
  type VhostUserHeader,
  checkHeader,
  decodeHeader,
  requestName,
} from "./messages.js";
import {
  MAX_FDS_PER_MESSAGE,
  type NativeBinding,
  type NativeRegion,
  POLL_READABLE,
  POLL_WRITABLE,
  type PollHandle,
} from "./native.js";

/** One message from the front-end. */
export interface VhostMessage {
  readonly request: number;
  readonly flags: number;
  readonly payload: Uint8Array;
  /** File descriptors that came with the message. The receiver owns them: it keeps or closes each one. */
  readonly fds: readonly number[];
}

/**
 * A mapping of part of a file descriptor (a region of the front-end's
 * memory), whose bytes are taken a window at a time.
 */
export interface MappedRegion {
  readonly length: number;
  /**
   * The bytes [offset, offset + length) of the mapping; the view becomes empty
   * when the region is unmapped. Throws VirtioSndError (ERR_BACKEND) when it
   * cannot be made or the range is not inside the mapping.
   */
  window(offset: number, length: number): Uint8Array;
  /** Unmaps it; every window becomes empty. Idempotent. */
  unmap(): void;
}

/** What a transport reports to its user. None of these may throw. */
export interface VhostTransportHandler {
  message(message: VhostMessage): void;
  /** Ring `index` was kicked (its kick eventfd became readable, or its poll timer fired). */
  kick(index: number): void;
  /** The connection is gone (the front-end closed it, broken framing, or close()); nothing follows. */
  closed(reason: Error | null): void;
}

export interface VhostTransport {
  /** Starts delivering messages, kicks and the close to `handler`. */
  start(handler: VhostTransportHandler): void;
  /** Sends one whole message (header and payload). Ignored once closed. */
  send(message: Uint8Array): void;
  /**
   * Watches `fd` for kicks of ring `index`, replacing an earlier watch of that
   * ring (without closing its fd). `null`: the ring has no kick fd and is
   * polled instead. Throws VirtioSndError (ERR_BACKEND), keeping the earlier
   * watch, when `fd` cannot be watched.
   */
  watchKick(index: number, fd: number | null): void;
  /** Stops watching ring `index` (its fd stays open). */
  unwatchKick(index: number): void;
  /** Signals an eventfd (a call or error notifier). Returns false when the write failed. */
  signal(fd: number): boolean;
  /** Maps `size` bytes of `fd` from `offset`. Throws VirtioSndError (ERR_BACKEND) when it cannot. */
  map(fd: number, size: number, offset: number): MappedRegion;
  /** Closes a file descriptor received with a message. Never throws. */
  closeFd(fd: number): void;
  /** Disconnects; the handler's closed() follows (synchronously). */
  close(): void;
}

const READABLE = POLL_READABLE;
const WRITABLE = POLL_WRITABLE;
/** Offsets given to mmap() are aligned down to this (a multiple of every page size Linux uses). */
const MAP_ALIGN = 65536;
/** File descriptors recvmsg() may take at once: the kernel's SCM_MAX_FD, so a flood never desynchronizes the stream. */
const RECV_MAX_FDS = MAX_FDS_PER_MESSAGE;
/** Descriptors that may pile up before a message completes: past this the peer is not a vhost-user front-end. */
const MAX_PENDING_FDS = 64;

function errorOf(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

export interface NativeTransportOptions {
  /** How often a ring without a kick fd is polled, in ms (default 2). */
  readonly pollIntervalMs?: number;
}

/**
 * A vhost-user connection over a connected Unix socket, through the native
 * addon. The socket is non-blocking: reads assemble each message in two
 * steps (the 12-byte header, then exactly `size` bytes of payload), so every
 * file descriptor received belongs to the message being read (the kernel
 * attaches a sendmsg()'s descriptors to its first byte). Replies that do not
 * fit in the socket buffer wait for it to become writable.
 */
export class NativeTransport implements VhostTransport {
  private handler: VhostTransportHandler | null = null;
  private socketPoll: PollHandle | null = null;
  private pollEvents = 0;
  private readonly header = new Uint8Array(VHOST_USER_HDR_SIZE);
  private headerFill = 0;
  private current: VhostUserHeader | null = null;
  private payload: Uint8Array | null = null;
  private payloadFill = 0;
  private fds: number[] = [];
  private readonly out: Uint8Array[] = [];
  private readonly kicks = new Map<
    number,
    { poll: PollHandle | null; timer: ReturnType<typeof setInterval> | null }
  >();
  private closed = false;
  private readonly pollIntervalMs: number;

  constructor(
    private readonly native: NativeBinding,
    /** The connected socket; the transport owns it. */
    readonly fd: number,
    options: NativeTransportOptions = {},
  ) {
    this.pollIntervalMs = options.pollIntervalMs ?? 2;
  }

  get isClosed(): boolean {
    return this.closed;
  }

  start(handler: VhostTransportHandler): void {
    this.handler = handler;
    this.updatePoll();
  }

  send(message: Uint8Array): void {
    if (this.closed) return;
    if (this.out.length === 0) {
      const sent = this.write(message);
      if (sent < 0 || sent === message.length) return;
      this.out.push(message.subarray(sent));
    } else {
      this.out.push(message);
    }
    this.updatePoll();
  }

  watchKick(index: number, fd: number | null): void {
    if (this.closed) return;
    if (fd === null) {
      this.unwatchKick(index);
      const timer = setInterval(() => this.handler?.kick(index), this.pollIntervalMs);
      timer.unref();
      this.kicks.set(index, { poll: null, timer });
      return;
    }
    let poll: PollHandle;
    try {
      poll = this.native.poll(fd, READABLE, (status) => this.onKick(index, fd, status));
    } catch (err) {
      // The previous watch stays: a refused kick fd changes nothing.
      throw new VirtioSndError("ERR_BACKEND", `cannot watch fd ${fd} for kicks: ${errorOf(err).message}`, {
        cause: err,
      });
    }
    this.unwatchKick(index);
    this.kicks.set(index, { poll, timer: null });
  }

  unwatchKick(index: number): void {
    const k = this.kicks.get(index);
    if (k === undefined) return;
    this.kicks.delete(index);
    k.poll?.stop();
    if (k.timer !== null) clearInterval(k.timer);
  }

  signal(fd: number): boolean {
    try {
      this.native.eventfdWrite(fd, 1);
      return true;
    } catch {
      return false;
    }
  }

  map(fd: number, size: number, offset: number): MappedRegion {
    const aligned = offset - (offset % MAP_ALIGN);
    const delta = offset - aligned;
    let handle: NativeRegion;
    try {
      handle = this.native.mmapRegion(fd, size + delta, aligned);
    } catch (err) {
      throw new VirtioSndError(
        "ERR_BACKEND",
        `cannot map ${size} bytes at offset ${offset} of fd ${fd}: ${errorOf(err).message}`,
        { cause: err },
      );
    }
    return new NativeMappedRegion(this.native, handle, delta, size);
  }

  closeFd(fd: number): void {
    try {
      this.native.close(fd);
    } catch {
      // Already closed: nothing to release.
    }
  }

  close(): void {
    this.shutdown(null);
  }

  // ---- internals -------------------------------------------------------------------

  /** Bytes written, or -1 when the connection failed (and is now closed). */
  private write(data: Uint8Array): number {
    try {
      const n = this.native.sendmsg(this.fd, data);
      return n < 0 ? 0 : n;
    } catch (err) {
      this.shutdown(errorOf(err));
      return -1;
    }
  }

  private updatePoll(): void {
    if (this.closed || this.handler === null) return;
    const wanted = READABLE | (this.out.length > 0 ? WRITABLE : 0);
    if (wanted === this.pollEvents && this.socketPoll !== null) return;
    // libuv allows one poll per fd: replace it to change the events.
    this.socketPoll?.stop();
    this.socketPoll = null;
    try {
      this.socketPoll = this.native.poll(this.fd, wanted, (status, events) => this.onSocket(status, events));
      this.pollEvents = wanted;
    } catch (err) {
      this.shutdown(errorOf(err));
    }
  }

  private onSocket(status: number, events: number): void {
    if (this.closed) return;
    if (status < 0) {
      this.shutdown(new Error(`polling the vhost-user socket failed (status ${status})`));
      return;
    }
    if ((events & WRITABLE) !== 0) this.flush();
    if ((events & READABLE) !== 0) this.readAvailable();
  }

  private flush(): void {
    while (this.out.length > 0 && !this.closed) {
      const head = this.out[0]!;
      const sent = this.write(head);
      if (sent < 0) return;
      if (sent < head.length) {
        this.out[0] = head.subarray(sent);
        return;
      }
      this.out.shift();
    }
    this.updatePoll();
  }

  private readAvailable(): void {
    while (!this.closed) {
      const target =
        this.payload === null
          ? this.header.subarray(this.headerFill)
          : this.payload.subarray(this.payloadFill);
      let got: { bytes: number; fds: number[] };
      try {
        got = this.native.recvmsg(this.fd, target, RECV_MAX_FDS);
      } catch (err) {
        this.shutdown(errorOf(err));
        return;
      }
      for (const fd of got.fds) this.fds.push(fd);
      if (this.fds.length > MAX_PENDING_FDS) {
        this.shutdown(new Error(`the front-end sent ${this.fds.length} file descriptors with one message`));
        return;
      }
      if (got.bytes < 0) return;
      if (got.bytes === 0) {
        this.shutdown(null);
        return;
      }
      if (this.payload === null) {
        this.headerFill += got.bytes;
        if (this.headerFill < VHOST_USER_HDR_SIZE) continue;
        const header = decodeHeader(this.header);
        const wrong = checkHeader(header);
        if (wrong !== null) {
          this.shutdown(new Error(`broken framing in ${requestName(header.request)}: ${wrong}`));
          return;
        }
        this.current = header;
        this.payload = new Uint8Array(header.size);
        this.payloadFill = 0;
        if (header.size === 0) this.dispatch();
      } else {
        this.payloadFill += got.bytes;
        if (this.payloadFill === this.payload.length) this.dispatch();
      }
    }
  }

  private dispatch(): void {
    const header = this.current!;
    const message: VhostMessage = {
      request: header.request,
      flags: header.flags,
      payload: this.payload ?? new Uint8Array(0),
      fds: this.fds,
    };
    this.current = null;
    this.payload = null;
    this.headerFill = 0;
    this.payloadFill = 0;
    this.fds = [];
    try {
      this.handler?.message(message);
    } catch (err) {
      // The back-end answers everything itself; an exception here is a bug: drop the connection.
      this.shutdown(errorOf(err));
    }
  }

  private onKick(index: number, fd: number, status: number): void {
    if (this.closed) return;
    let count = 0;
    try {
      if (status < 0) throw new Error(`poll status ${status}`);
      count = this.native.eventfdRead(fd);
    } catch {
      // Not an eventfd, or it broke: stop watching rather than spin on it.
      this.unwatchKick(index);
      return;
    }
    if (count > 0) this.handler?.kick(index);
  }

  private shutdown(reason: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.socketPoll?.stop();
    this.socketPoll = null;
    for (const index of [...this.kicks.keys()]) this.unwatchKick(index);
    this.closeFd(this.fd);
    for (const fd of this.fds) this.closeFd(fd);
    this.fds = [];
    this.out.length = 0;
    const handler = this.handler;
    this.handler = null;
    handler?.closed(reason);
  }
}

/**
 * A listening Unix socket that hands over each accepted connection's fd. It
 * can stop accepting (pause) while a connection is served: later front-ends
 * wait in the kernel's backlog until resume().
 */
export class NativeListener {
  private readonly fd: number;
  private poll: PollHandle | null = null;
  private closed = false;

  /** Throws the addon's Error (code EADDRINUSE, EACCES, ...) when the socket cannot be made. */
  constructor(
    private readonly native: NativeBinding,
    readonly path: string,
    private readonly onConnection: (fd: number) => void,
    private readonly onError: (error: Error) => void = () => {},
    backlog = 8,
  ) {
    this.fd = native.listen(path, backlog);
  }

  get accepting(): boolean {
    return this.poll !== null;
  }

  resume(): void {
    if (this.closed || this.poll !== null) return;
    try {
      this.poll = this.native.poll(this.fd, READABLE, (status) => this.onReadable(status));
    } catch (err) {
      this.onError(errorOf(err));
      return;
    }
    // A connection may already be waiting: take it now rather than on the next poll.
    this.onReadable(0);
  }

  pause(): void {
    this.poll?.stop();
    this.poll = null;
  }

  close(): void {
    if (this.closed) return;
    this.pause();
    this.closed = true;
    try {
      this.native.close(this.fd);
    } catch {
      // Nothing to release.
    }
  }

  private onReadable(status: number): void {
    if (this.closed || this.poll === null) return;
    if (status < 0) {
      this.onError(new Error(`polling the listening socket failed (status ${status})`));
      return;
    }
    while (this.poll !== null && !this.closed) {
      let fd: number;
      try {
        fd = this.native.accept(this.fd);
      } catch (err) {
        this.onError(errorOf(err));
        return;
      }
      if (fd < 0) return;
      try {
        this.onConnection(fd);
      } catch (err) {
        this.onError(errorOf(err));
      }
    }
  }
}

/** A region mapped by the addon: each window an ArrayBuffer over part of the one mapping. */
class NativeMappedRegion implements MappedRegion {
  constructor(
    private readonly native: NativeBinding,
    private readonly handle: NativeRegion,
    /** Where the region starts in the mapping (which starts page-aligned). */
    private readonly delta: number,
    readonly length: number,
  ) {}

  window(offset: number, length: number): Uint8Array {
    if (
      !Number.isSafeInteger(offset) ||
      !Number.isSafeInteger(length) ||
      offset < 0 ||
      length < 1 ||
      offset + length > this.length
    )
      throw new VirtioSndError(
        "ERR_BACKEND",
        `no window ${offset}+${length} in a region of ${this.length} bytes`,
      );
    try {
      return new Uint8Array(this.native.mmapWindow(this.handle, this.delta + offset, length));
    } catch (err) {
      throw new VirtioSndError(
        "ERR_BACKEND",
        `cannot map a window of ${length} bytes: ${errorOf(err).message}`,
        {
          cause: err,
        },
      );
    }
  }

  unmap(): void {
    try {
      this.native.munmapRegion(this.handle);
    } catch {
      // Nothing mapped is left to release.
    }
  }
}
