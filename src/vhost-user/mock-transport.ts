/**
 * An in-memory VhostTransport for tests: the test plays the front-end. File
 * descriptors are fake numbers standing for eventfds and memory files (an
 * ArrayBuffer); "sending" one with a message gives the back-end a new number
 * for the same file, as SCM_RIGHTS does, so leaks and double closes show.
 */
import { VirtioSndError } from "../errors.js";
import { VHOST_USER_HDR_SIZE, VHOST_USER_VERSION, decodeHeader } from "./messages.js";
import type { MappedRegion, VhostMessage, VhostTransport, VhostTransportHandler } from "./transport.js";

interface FakeFile {
  readonly kind: "eventfd" | "memory";
  readonly buffer?: ArrayBuffer;
  /** Writes to an eventfd (call and error notifiers). */
  signals: number;
}

/** A message the back-end sent. */
export interface SentMessage {
  readonly request: number;
  readonly flags: number;
  readonly payload: Uint8Array;
}

export class MockTransport implements VhostTransport {
  /** Every message the back-end sent, oldest first. */
  readonly sent: SentMessage[] = [];
  /** Closes of fds the back-end did not hold (a bug in the back-end). */
  badCloses = 0;
  /** Mappings made and not yet unmapped. */
  liveMappings = 0;
  /** Windows of mappings handed out (guest memory is exposed a window at a time, when first touched). */
  windowsMade = 0;
  /** Set once the connection is closed (by either side). */
  closed = false;
  closeReason: Error | null = null;
  /** Called with the front-end's fd whenever the back-end signals it (an interrupt handler). */
  onSignal: ((fd: number) => void) | null = null;

  private handler: VhostTransportHandler | null = null;
  private nextFd = 1000;
  /** The front-end's fds. */
  private readonly files = new Map<number, FakeFile>();
  /** The fds the back-end received and has not closed. */
  private readonly held = new Map<number, FakeFile>();
  private readonly kicks = new Map<number, number | null>();

  // ---- the front-end's side ------------------------------------------------------------

  /** A new eventfd of the front-end. */
  eventfd(): number {
    const fd = this.nextFd++;
    this.files.set(fd, { kind: "eventfd", signals: 0 });
    return fd;
  }

  /** A memory file of the front-end backed by `buffer` (guest RAM). */
  memfd(buffer: ArrayBuffer): number {
    const fd = this.nextFd++;
    this.files.set(fd, { kind: "memory", buffer, signals: 0 });
    return fd;
  }

  /** Times the back-end signalled the front-end's eventfd `fd`. */
  signals(fd: number): number {
    return this.files.get(fd)?.signals ?? 0;
  }

  /** File descriptors the back-end holds (received and not closed). */
  get heldFds(): number {
    return this.held.size;
  }

  /**
   * Sends a message to the back-end, passing `fds` (front-end fds) with it,
   * and returns the messages the back-end sent in response.
   */
  deliver(
    request: number,
    payload: Uint8Array = new Uint8Array(0),
    options: { fds?: readonly number[]; flags?: number } = {},
  ): SentMessage[] {
    if (this.handler === null || this.closed)
      throw new VirtioSndError("ERR_INVALID_STATE", "the mock connection is not open");
    const fds = (options.fds ?? []).map((fd) => {
      const file = this.files.get(fd);
      if (file === undefined) throw new VirtioSndError("ERR_INVALID_STATE", `the front-end has no fd ${fd}`);
      const received = this.nextFd++;
      this.held.set(received, file);
      return received;
    });
    const before = this.sent.length;
    const message: VhostMessage = { request, flags: options.flags ?? VHOST_USER_VERSION, payload, fds };
    this.handler.message(message);
    return this.sent.slice(before);
  }

  /** Writes the front-end's kick eventfd `fd`: the back-end hears it if it watches that file. */
  kick(fd: number): boolean {
    const file = this.files.get(fd);
    for (const [index, watched] of this.kicks) {
      if (watched !== null && this.held.get(watched) === file) {
        this.handler?.kick(index);
        return true;
      }
    }
    return false;
  }

  /** A poll tick of ring `index` (watched without an fd). */
  pollTick(index: number): boolean {
    if (!this.kicks.has(index)) return false;
    this.handler?.kick(index);
    return true;
  }

  /** Whether ring `index` is being watched for kicks. */
  watching(index: number): boolean {
    return this.kicks.has(index);
  }

  /** The front-end goes away. */
  disconnect(): void {
    this.shutdown(null);
  }

  // ---- VhostTransport --------------------------------------------------------------------

  start(handler: VhostTransportHandler): void {
    this.handler = handler;
  }

  send(message: Uint8Array): void {
    if (this.closed) return;
    if (message.length < VHOST_USER_HDR_SIZE)
      throw new VirtioSndError("ERR_BACKEND", "the back-end sent a message shorter than a header");
    const header = decodeHeader(message);
    if (header.size !== message.length - VHOST_USER_HDR_SIZE)
      throw new VirtioSndError(
        "ERR_BACKEND",
        `the back-end sent a header saying ${header.size} bytes with ${message.length - VHOST_USER_HDR_SIZE}`,
      );
    this.sent.push({
      request: header.request,
      flags: header.flags,
      payload: message.slice(VHOST_USER_HDR_SIZE),
    });
  }

  watchKick(index: number, fd: number | null): void {
    if (fd !== null) {
      const file = this.held.get(fd);
      if (file === undefined) throw new VirtioSndError("ERR_BACKEND", `cannot watch fd ${fd}: not open`);
      if (file.kind !== "eventfd")
        throw new VirtioSndError("ERR_BACKEND", `cannot watch fd ${fd}: not pollable`);
    }
    this.kicks.set(index, fd);
  }

  unwatchKick(index: number): void {
    this.kicks.delete(index);
  }

  signal(fd: number): boolean {
    const file = this.held.get(fd);
    if (file === undefined || file.kind !== "eventfd") return false;
    file.signals++;
    if (this.onSignal !== null) {
      for (const [frontFd, f] of this.files) if (f === file) this.onSignal(frontFd);
    }
    return true;
  }

  map(fd: number, size: number, offset: number): MappedRegion {
    const file = this.held.get(fd);
    if (file?.buffer === undefined) throw new VirtioSndError("ERR_BACKEND", `cannot map fd ${fd}`);
    if (offset + size > file.buffer.byteLength)
      throw new VirtioSndError(
        "ERR_BACKEND",
        `cannot map ${size} bytes at ${offset}: past the end of the file`,
      );
    const buffer = file.buffer;
    let mapped = true;
    this.liveMappings++;
    return {
      length: size,
      window: (o: number, length: number) => {
        if (!mapped || o < 0 || length < 1 || o + length > size)
          throw new VirtioSndError("ERR_BACKEND", `no window ${o}+${length} of this mapping`);
        this.windowsMade++;
        return new Uint8Array(buffer, offset + o, length);
      },
      unmap: () => {
        if (!mapped) return;
        mapped = false;
        this.liveMappings--;
      },
    };
  }

  closeFd(fd: number): void {
    if (!this.held.delete(fd)) this.badCloses++;
  }

  close(): void {
    this.shutdown(null);
  }

  private shutdown(reason: Error | null): void {
    if (this.closed) return;
    this.closed = true;
    this.closeReason = reason;
    this.kicks.clear();
    const handler = this.handler;
    this.handler = null;
    handler?.closed(reason);
  }
}
