/**
 * Every error the library raises carries a stable `code`, so callers can branch
 * on it without parsing messages.
 */
export type ErrorCode =
  /** An access fell outside guest memory. */
  | "ERR_GUEST_MEMORY"
  /** A ring is corrupt beyond one chain: the device needs a reset (virtio 1.3 §2.1.2). */
  | "ERR_VIRTQUEUE_BROKEN"
  /** The embedder gave the device an invalid configuration. */
  | "ERR_INVALID_CONFIG"
  /** The embedder called the device API in a way its state does not allow. */
  | "ERR_INVALID_STATE"
  /** An audio backend cannot open or keep a voice. */
  | "ERR_BACKEND"
  /** An audio backend does not support the requested parameters. */
  | "ERR_BACKEND_NOT_SUPPORTED"
  /**
   * The guest-side driver model (src/driver/: SimulatedGuest, play, record,
   * the driver queues) cannot go on: the device refused or failed a request,
   * a ring is full, the device returned a buffer the driver never gave it.
   */
  | "ERR_DRIVER"
  /** A recorded trace is malformed or cannot be replayed (src/trace/). */
  | "ERR_INVALID_TRACE"
  /** A saved device state is malformed or does not fit the device it is restored into. */
  | "ERR_INVALID_SNAPSHOT"
  /** Another process serves the vhost-user socket path (a live socket: it was left alone). */
  | "ERR_SOCKET_IN_USE"
  /** The vhost-user socket path holds something that is not a socket (a file, a folder), or cannot be used. */
  | "ERR_SOCKET_PATH"
  /**
   * The page cannot host WebAudioBackend: no SharedArrayBuffer (the page is not
   * cross-origin isolated) or no AudioWorklet (not a secure context).
   */
  | "ERR_BROWSER_UNSUPPORTED";

export class VirtioSndError extends Error {
  readonly code: ErrorCode;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "VirtioSndError";
    this.code = code;
  }
}

export class GuestMemoryError extends VirtioSndError {
  readonly addr: number;
  readonly length: number;

  constructor(addr: number, length: number) {
    super(
      "ERR_GUEST_MEMORY",
      `guest memory access outside memory: ${length} bytes at 0x${addr.toString(16)}`,
    );
    this.name = "GuestMemoryError";
    this.addr = addr;
    this.length = length;
  }
}

export class VirtqueueBrokenError extends VirtioSndError {
  constructor(message: string, options?: { cause?: unknown }) {
    super("ERR_VIRTQUEUE_BROKEN", message, options);
    this.name = "VirtqueueBrokenError";
  }
}

export class BackendError extends VirtioSndError {
  constructor(message: string, options?: { cause?: unknown; notSupported?: boolean }) {
    super(options?.notSupported ? "ERR_BACKEND_NOT_SUPPORTED" : "ERR_BACKEND", message, options);
    this.name = "BackendError";
  }
}
