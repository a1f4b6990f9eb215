/**
 * The vhost-user wire format (QEMU docs/interop/vhost-user.rst): request
 * codes, flags, protocol feature bits, and an encoder and a checked decoder
 * for every payload the back-end uses.
 *
 * A message is a 12-byte header (request u32, flags u32, size u32) and
 * `size` bytes of payload. The spec says "machine native byte order"; every
 * host vhost-user runs on (x86-64, AArch64, RISC-V, little-endian POWER) is
 * little-endian, and so is this codec.
 *
 * Decoders never throw: they return `{ ok: false, reason }` for a payload of
 * the wrong size or with values no well-behaved front-end sends, so a hostile
 * front-end's message becomes a refusal with a reason to log. u64 fields are
 * bigint; addresses and sizes the back-end computes with are checked against
 * Number.MAX_SAFE_INTEGER where they are turned into numbers.
 *
 * No Node built-ins here.
 */

import { type Refusal, type Result, ok, refuse } from "./result.js";

// ---- header ---------------------------------------------------------------------

export const VHOST_USER_HDR_SIZE = 12;
/** Bits 0-1 of flags: the protocol version. */
export const VHOST_USER_VERSION_MASK = 0x3;
export const VHOST_USER_VERSION = 0x1;
/** Bit 2: set on every reply from the back-end. */
export const VHOST_USER_REPLY_MASK = 0x4;
/** Bit 3: the front-end wants a REPLY_ACK answer (VHOST_USER_PROTOCOL_F_REPLY_ACK). */
export const VHOST_USER_NEED_REPLY_MASK = 0x8;
/**
 * The largest payload accepted. QEMU's largest (a crypto session) is about
 * 1.1 KiB; anything past this is treated as broken framing.
 */
export const VHOST_USER_MAX_PAYLOAD = 4096;
/** File descriptors a single message may carry. */
export const VHOST_USER_MAX_FDS = 8;

// ---- features -------------------------------------------------------------------

/** The reserved virtio feature bit vhost-user uses to announce protocol features. */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;
/** vhost's dirty-page logging feature bit (migration). */
export const VHOST_F_LOG_ALL = 26;

export const VHOST_USER_PROTOCOL_F_MQ = 0;
export const VHOST_USER_PROTOCOL_F_LOG_SHMFD = 1;
export const VHOST_USER_PROTOCOL_F_RARP = 2;
export const VHOST_USER_PROTOCOL_F_REPLY_ACK = 3;
export const VHOST_USER_PROTOCOL_F_NET_MTU = 4;
export const VHOST_USER_PROTOCOL_F_BACKEND_REQ = 5;
export const VHOST_USER_PROTOCOL_F_CROSS_ENDIAN = 6;
export const VHOST_USER_PROTOCOL_F_CRYPTO_SESSION = 7;
export const VHOST_USER_PROTOCOL_F_PAGEFAULT = 8;
export const VHOST_USER_PROTOCOL_F_CONFIG = 9;
export const VHOST_USER_PROTOCOL_F_BACKEND_SEND_FD = 10;
export const VHOST_USER_PROTOCOL_F_HOST_NOTIFIER = 11;
export const VHOST_USER_PROTOCOL_F_INFLIGHT_SHMFD = 12;
export const VHOST_USER_PROTOCOL_F_RESET_DEVICE = 13;
export const VHOST_USER_PROTOCOL_F_INBAND_NOTIFICATIONS = 14;
export const VHOST_USER_PROTOCOL_F_CONFIGURE_MEM_SLOTS = 15;
export const VHOST_USER_PROTOCOL_F_STATUS = 16;
export const VHOST_USER_PROTOCOL_F_SHARED_OBJECT = 17;
export const VHOST_USER_PROTOCOL_F_DEVICE_STATE = 18;

// ---- front-end requests -----------------------------------------------------------

export const VHOST_USER_GET_FEATURES = 1;
export const VHOST_USER_SET_FEATURES = 2;
export const VHOST_USER_SET_OWNER = 3;
export const VHOST_USER_RESET_OWNER = 4;
export const VHOST_USER_SET_MEM_TABLE = 5;
export const VHOST_USER_SET_LOG_BASE = 6;
export const VHOST_USER_SET_LOG_FD = 7;
export const VHOST_USER_SET_VRING_NUM = 8;
export const VHOST_USER_SET_VRING_ADDR = 9;
export const VHOST_USER_SET_VRING_BASE = 10;
export const VHOST_USER_GET_VRING_BASE = 11;
export const VHOST_USER_SET_VRING_KICK = 12;
export const VHOST_USER_SET_VRING_CALL = 13;
export const VHOST_USER_SET_VRING_ERR = 14;
export const VHOST_USER_GET_PROTOCOL_FEATURES = 15;
export const VHOST_USER_SET_PROTOCOL_FEATURES = 16;
export const VHOST_USER_GET_QUEUE_NUM = 17;
export const VHOST_USER_SET_VRING_ENABLE = 18;
export const VHOST_USER_SEND_RARP = 19;
export const VHOST_USER_NET_SET_MTU = 20;
export const VHOST_USER_SET_BACKEND_REQ_FD = 21;
export const VHOST_USER_IOTLB_MSG = 22;
export const VHOST_USER_SET_VRING_ENDIAN = 23;
export const VHOST_USER_GET_CONFIG = 24;
export const VHOST_USER_SET_CONFIG = 25;
export const VHOST_USER_CREATE_CRYPTO_SESSION = 26;
export const VHOST_USER_CLOSE_CRYPTO_SESSION = 27;
export const VHOST_USER_POSTCOPY_ADVISE = 28;
export const VHOST_USER_POSTCOPY_LISTEN = 29;
export const VHOST_USER_POSTCOPY_END = 30;
export const VHOST_USER_GET_INFLIGHT_FD = 31;
export const VHOST_USER_SET_INFLIGHT_FD = 32;
export const VHOST_USER_GPU_SET_SOCKET = 33;
export const VHOST_USER_RESET_DEVICE = 34;
export const VHOST_USER_VRING_KICK = 35;
export const VHOST_USER_GET_MAX_MEM_SLOTS = 36;
export const VHOST_USER_ADD_MEM_REG = 37;
export const VHOST_USER_REM_MEM_REG = 38;
export const VHOST_USER_SET_STATUS = 39;
export const VHOST_USER_GET_STATUS = 40;
export const VHOST_USER_GET_SHARED_OBJECT = 41;
export const VHOST_USER_SET_DEVICE_STATE_FD = 42;
export const VHOST_USER_CHECK_DEVICE_STATE = 43;

const REQUEST_NAMES: readonly string[] = [
  "NONE",
  "GET_FEATURES",
  "SET_FEATURES",
  "SET_OWNER",
  "RESET_OWNER",
  "SET_MEM_TABLE",
  "SET_LOG_BASE",
  "SET_LOG_FD",
  "SET_VRING_NUM",
  "SET_VRING_ADDR",
  "SET_VRING_BASE",
  "GET_VRING_BASE",
  "SET_VRING_KICK",
  "SET_VRING_CALL",
  "SET_VRING_ERR",
  "GET_PROTOCOL_FEATURES",
  "SET_PROTOCOL_FEATURES",
  "GET_QUEUE_NUM",
  "SET_VRING_ENABLE",
  "SEND_RARP",
  "NET_SET_MTU",
  "SET_BACKEND_REQ_FD",
  "IOTLB_MSG",
  "SET_VRING_ENDIAN",
  "GET_CONFIG",
  "SET_CONFIG",
  "CREATE_CRYPTO_SESSION",
  "CLOSE_CRYPTO_SESSION",
  "POSTCOPY_ADVISE",
  "POSTCOPY_LISTEN",
  "POSTCOPY_END",
  "GET_INFLIGHT_FD",
  "SET_INFLIGHT_FD",
  "GPU_SET_SOCKET",
  "RESET_DEVICE",
  "VRING_KICK",
  "GET_MAX_MEM_SLOTS",
  "ADD_MEM_REG",
  "REM_MEM_REG",
  "SET_STATUS",
  "GET_STATUS",
  "GET_SHARED_OBJECT",
  "SET_DEVICE_STATE_FD",
  "CHECK_DEVICE_STATE",
];

/** "GET_FEATURES" for 1, "request 99" for a code the spec does not define. */
export function requestName(request: number): string {
  return REQUEST_NAMES[request] ?? `request ${request}`;
}

/**
 * Requests whose reply the spec mandates whatever the flags say: the
 * front-end waits for it, so a refusal must still answer.
 */
export function alwaysReplies(request: number): boolean {
  switch (request) {
    case VHOST_USER_GET_FEATURES:
    case VHOST_USER_GET_PROTOCOL_FEATURES:
    case VHOST_USER_GET_VRING_BASE:
    case VHOST_USER_GET_QUEUE_NUM:
    case VHOST_USER_GET_CONFIG:
    case VHOST_USER_GET_MAX_MEM_SLOTS:
    case VHOST_USER_GET_STATUS:
    case VHOST_USER_IOTLB_MSG:
    case VHOST_USER_CREATE_CRYPTO_SESSION:
    case VHOST_USER_POSTCOPY_ADVISE:
    case VHOST_USER_POSTCOPY_END:
    case VHOST_USER_GET_INFLIGHT_FD:
    case VHOST_USER_GET_SHARED_OBJECT:
    case VHOST_USER_SET_DEVICE_STATE_FD:
    case VHOST_USER_CHECK_DEVICE_STATE:
      return true;
    default:
      return false;
  }
}

// ---- results ---------------------------------------------------------------------

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function sizeIs(payload: Uint8Array, size: number, what: string): Refusal | null {
  return payload.length === size ? null : refuse(`${what} payload is ${payload.length} bytes, not ${size}`);
}

/** A u64 as a number, or null when it is above Number.MAX_SAFE_INTEGER. */
export function safeNumber(value: bigint): number | null {
  return value >= 0n && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : null;
}

// ---- header ----------------------------------------------------------------------------

export interface VhostUserHeader {
  readonly request: number;
  readonly flags: number;
  /** Payload bytes that follow. */
  readonly size: number;
}

/** The header in bytes[0..12) (the caller has 12 bytes). */
export function decodeHeader(bytes: Uint8Array): VhostUserHeader {
  const dv = view(bytes);
  return { request: dv.getUint32(0, true), flags: dv.getUint32(4, true), size: dv.getUint32(8, true) };
}

/** Why a header cannot start a message (broken framing), or null when it can. */
export function checkHeader(header: VhostUserHeader): string | null {
  if ((header.flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION)
    return `protocol version ${header.flags & VHOST_USER_VERSION_MASK}, not ${VHOST_USER_VERSION}`;
  if (header.size > VHOST_USER_MAX_PAYLOAD)
    return `payload of ${header.size} bytes (at most ${VHOST_USER_MAX_PAYLOAD})`;
  return null;
}

/** A whole message: header then payload. */
export function encodeMessage(
  request: number,
  flags: number,
  payload: Uint8Array = new Uint8Array(0),
): Uint8Array {
  const out = new Uint8Array(VHOST_USER_HDR_SIZE + payload.length);
  const dv = view(out);
  dv.setUint32(0, request >>> 0, true);
  dv.setUint32(4, flags >>> 0, true);
  dv.setUint32(8, payload.length, true);
  out.set(payload, VHOST_USER_HDR_SIZE);
  return out;
}

/** A back-end reply: version 1 with the REPLY flag, as QEMU requires exactly. */
export function encodeReply(request: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  return encodeMessage(request, VHOST_USER_VERSION | VHOST_USER_REPLY_MASK, payload);
}

// ---- u64 --------------------------------------------------------------------------------

export const VHOST_USER_U64_SIZE = 8;

export function encodeU64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  view(out).setBigUint64(0, BigInt.asUintN(64, value), true);
  return out;
}

export function decodeU64(payload: Uint8Array, what = "u64"): Result<bigint> {
  return sizeIs(payload, 8, what) ?? ok(view(payload).getBigUint64(0, true));
}

// ---- vring state ----------------------------------------------------------------------

export const VHOST_VRING_STATE_SIZE = 8;

/** struct vhost_vring_state: a ring index and a number (size, base, enable). */
export interface VringState {
  readonly index: number;
  readonly num: number;
}

export function encodeVringState(s: VringState): Uint8Array {
  const out = new Uint8Array(8);
  const dv = view(out);
  dv.setUint32(0, s.index >>> 0, true);
  dv.setUint32(4, s.num >>> 0, true);
  return out;
}

export function decodeVringState(payload: Uint8Array, what = "vring state"): Result<VringState> {
  const wrong = sizeIs(payload, 8, what);
  if (wrong !== null) return wrong;
  const dv = view(payload);
  return ok({ index: dv.getUint32(0, true), num: dv.getUint32(4, true) });
}

// ---- vring address ------------------------------------------------------------------------

export const VHOST_VRING_ADDR_SIZE = 40;
/** Bit of vhost_vring_addr.flags: log writes to the used ring (migration). */
export const VHOST_VRING_F_LOG = 0;

/**
 * struct vhost_vring_addr. The three ring addresses are the front-end's own
 * virtual addresses (without VIRTIO_F_IOMMU_PLATFORM): the back-end
 * translates them through the memory table's user addresses.
 */
export interface VringAddr {
  readonly index: number;
  readonly flags: number;
  readonly descUser: bigint;
  readonly usedUser: bigint;
  readonly availUser: bigint;
  readonly logGuest: bigint;
}

export function encodeVringAddr(a: VringAddr): Uint8Array {
  const out = new Uint8Array(VHOST_VRING_ADDR_SIZE);
  const dv = view(out);
  dv.setUint32(0, a.index >>> 0, true);
  dv.setUint32(4, a.flags >>> 0, true);
  dv.setBigUint64(8, BigInt.asUintN(64, a.descUser), true);
  dv.setBigUint64(16, BigInt.asUintN(64, a.usedUser), true);
  dv.setBigUint64(24, BigInt.asUintN(64, a.availUser), true);
  dv.setBigUint64(32, BigInt.asUintN(64, a.logGuest), true);
  return out;
}

export function decodeVringAddr(payload: Uint8Array): Result<VringAddr> {
  const wrong = sizeIs(payload, VHOST_VRING_ADDR_SIZE, "vring address");
  if (wrong !== null) return wrong;
  const dv = view(payload);
  return ok({
    index: dv.getUint32(0, true),
    flags: dv.getUint32(4, true),
    descUser: dv.getBigUint64(8, true),
    usedUser: dv.getBigUint64(16, true),
    availUser: dv.getBigUint64(24, true),
    logGuest: dv.getBigUint64(32, true),
  });
}

// ---- vring file (KICK, CALL, ERR) -------------------------------------------------------

/** Bits 0-7 of the u64: the ring index. */
export const VHOST_USER_VRING_IDX_MASK = 0xff;
/** Bit 8: no file descriptor comes with the message (poll instead). */
export const VHOST_USER_VRING_NOFD_MASK = 0x100;

export interface VringFile {
  readonly index: number;
  /** True when the message says it carries no fd (the invalid-FD flag). */
  readonly noFd: boolean;
}

export function encodeVringFile(f: VringFile): Uint8Array {
  return encodeU64(BigInt((f.index & VHOST_USER_VRING_IDX_MASK) | (f.noFd ? VHOST_USER_VRING_NOFD_MASK : 0)));
}

export function decodeVringFile(payload: Uint8Array): Result<VringFile> {
  const u = decodeU64(payload, "vring file");
  if (!u.ok) return u;
  if (u.value >> 9n !== 0n) return refuse(`vring file value 0x${u.value.toString(16)} has bits above 8 set`);
  const v = Number(u.value);
  return ok({ index: v & VHOST_USER_VRING_IDX_MASK, noFd: (v & VHOST_USER_VRING_NOFD_MASK) !== 0 });
}

// ---- memory regions --------------------------------------------------------------------

/** The regions SET_MEM_TABLE can carry (VHOST_MEMORY_BASELINE_NREGIONS). */
export const VHOST_MEMORY_BASELINE_NREGIONS = 8;
export const VHOST_USER_MEMORY_REGION_SIZE = 32;
/** Single memory region message (ADD_MEM_REG, REM_MEM_REG): 8 bytes of padding, then a region. */
export const VHOST_USER_MEM_REG_SIZE = 40;

/** One region of the front-end's memory: VhostUserMemoryRegion. */
export interface MemoryRegionDesc {
  readonly guestAddr: bigint;
  readonly size: bigint;
  /** Where the front-end has the region in its own address space. */
  readonly userAddr: bigint;
  /** Offset of the region in the file descriptor that comes with it. */
  readonly mmapOffset: bigint;
}

function writeRegion(dv: DataView, offset: number, r: MemoryRegionDesc): void {
  dv.setBigUint64(offset, BigInt.asUintN(64, r.guestAddr), true);
  dv.setBigUint64(offset + 8, BigInt.asUintN(64, r.size), true);
  dv.setBigUint64(offset + 16, BigInt.asUintN(64, r.userAddr), true);
  dv.setBigUint64(offset + 24, BigInt.asUintN(64, r.mmapOffset), true);
}

function readRegion(dv: DataView, offset: number): MemoryRegionDesc {
  return {
    guestAddr: dv.getBigUint64(offset, true),
    size: dv.getBigUint64(offset + 8, true),
    userAddr: dv.getBigUint64(offset + 16, true),
    mmapOffset: dv.getBigUint64(offset + 24, true),
  };
}

/** SET_MEM_TABLE's payload: nregions u32, padding u32, then exactly nregions regions. */
export function encodeMemTable(regions: readonly MemoryRegionDesc[]): Uint8Array {
  const out = new Uint8Array(8 + VHOST_USER_MEMORY_REGION_SIZE * regions.length);
  const dv = view(out);
  dv.setUint32(0, regions.length, true);
  regions.forEach((r, i) => writeRegion(dv, 8 + i * VHOST_USER_MEMORY_REGION_SIZE, r));
  return out;
}

export function decodeMemTable(payload: Uint8Array): Result<MemoryRegionDesc[]> {
  if (payload.length < 8) return refuse(`memory table payload is ${payload.length} bytes, less than 8`);
  const dv = view(payload);
  const n = dv.getUint32(0, true);
  if (n > VHOST_MEMORY_BASELINE_NREGIONS)
    return refuse(`memory table has ${n} regions (at most ${VHOST_MEMORY_BASELINE_NREGIONS})`);
  const size = 8 + n * VHOST_USER_MEMORY_REGION_SIZE;
  if (payload.length !== size)
    return refuse(`memory table of ${n} regions is ${payload.length} bytes, not ${size}`);
  const regions: MemoryRegionDesc[] = [];
  for (let i = 0; i < n; i++) regions.push(readRegion(dv, 8 + i * VHOST_USER_MEMORY_REGION_SIZE));
  return ok(regions);
}

export function encodeMemReg(region: MemoryRegionDesc): Uint8Array {
  const out = new Uint8Array(VHOST_USER_MEM_REG_SIZE);
  writeRegion(view(out), 8, region);
  return out;
}

export function decodeMemReg(payload: Uint8Array): Result<MemoryRegionDesc> {
  return sizeIs(payload, VHOST_USER_MEM_REG_SIZE, "memory region") ?? ok(readRegion(view(payload), 8));
}

// ---- device configuration space -----------------------------------------------------------

export const VHOST_USER_CONFIG_HDR_SIZE = 12;
export const VHOST_USER_MAX_CONFIG_SIZE = 256;
/** VhostUserConfig.flags: a write from the driver. */
export const VHOST_SET_CONFIG_TYPE_FRONTEND = 0;
/** VhostUserConfig.flags: restoring state after live migration. */
export const VHOST_SET_CONFIG_TYPE_MIGRATION = 1;

/** VhostUserConfig: offset, size, flags, then `size` bytes (GET_CONFIG's request carries them zeroed). */
export interface ConfigMsg {
  readonly offset: number;
  readonly size: number;
  readonly flags: number;
  readonly data: Uint8Array;
}

export function encodeConfig(c: Omit<ConfigMsg, "size"> & { size?: number }): Uint8Array {
  const size = c.size ?? c.data.length;
  const out = new Uint8Array(VHOST_USER_CONFIG_HDR_SIZE + c.data.length);
  const dv = view(out);
  dv.setUint32(0, c.offset >>> 0, true);
  dv.setUint32(4, size >>> 0, true);
  dv.setUint32(8, c.flags >>> 0, true);
  out.set(c.data, VHOST_USER_CONFIG_HDR_SIZE);
  return out;
}

export function decodeConfig(payload: Uint8Array): Result<ConfigMsg> {
  if (payload.length < VHOST_USER_CONFIG_HDR_SIZE)
    return refuse(`config payload is ${payload.length} bytes, less than ${VHOST_USER_CONFIG_HDR_SIZE}`);
  const dv = view(payload);
  const offset = dv.getUint32(0, true);
  const size = dv.getUint32(4, true);
  const flags = dv.getUint32(8, true);
  if (size > VHOST_USER_MAX_CONFIG_SIZE)
    return refuse(`config size ${size} (at most ${VHOST_USER_MAX_CONFIG_SIZE})`);
  if (offset > VHOST_USER_MAX_CONFIG_SIZE - size)
    return refuse(`config range ${offset}+${size} is past ${VHOST_USER_MAX_CONFIG_SIZE} bytes`);
  if (payload.length !== VHOST_USER_CONFIG_HDR_SIZE + size)
    return refuse(
      `config payload of size ${size} is ${payload.length} bytes, not ${VHOST_USER_CONFIG_HDR_SIZE + size}`,
    );
  return ok({ offset, size, flags, data: payload.slice(VHOST_USER_CONFIG_HDR_SIZE) });
}
