/**
 * Wire structures of the virtio sound device (virtio 1.3 §5.14): for each one
 * a size constant, an interface, an encoder and a decoder.
 *
 * Conventions, the same for every structure:
 * - `encodeX(view, offset, value)` writes exactly the structure's bytes at
 *   `offset`, little-endian, padding and unused bytes set to 0 (the spec
 *   requires zero padding). Numbers are stored modulo the field's width, as
 *   DataView does: the codec does not judge values, so tests can build
 *   malformed messages with it. Only what cannot fit (an array longer than its
 *   field) is refused.
 * - `decodeX(view, offset)` reads only the structure's own bytes and returns
 *   fresh values (byte arrays are copies, never views into guest memory).
 *   Padding is not checked: that is the caller's policy.
 * - Both throw RangeError, before touching anything, when the structure does
 *   not lie entirely inside the view.
 * - le64 fields are bigint; le32, le16 and u8 fields are unsigned numbers.
 *
 * No Node built-ins: this is core code that also runs in a browser.
 */

import {
  VIRTIO_SND_CHMAP_MAX_SIZE,
  VIRTIO_SND_CTL_TYPE_BOOLEAN,
  VIRTIO_SND_CTL_TYPE_BYTES,
  VIRTIO_SND_CTL_TYPE_ENUMERATED,
  VIRTIO_SND_CTL_TYPE_IEC958,
  VIRTIO_SND_CTL_TYPE_INTEGER,
  VIRTIO_SND_CTL_TYPE_INTEGER64,
} from "./constants.js";

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

/** struct virtio_snd_config (§5.14.4). */
export const VIRTIO_SND_CONFIG_SIZE = 16;
/** struct virtio_snd_hdr (§5.14.6). */
export const VIRTIO_SND_HDR_SIZE = 4;
/** struct virtio_snd_event (§5.14.6). */
export const VIRTIO_SND_EVENT_SIZE = 8;
/** struct virtio_snd_query_info (§5.14.6.1). */
export const VIRTIO_SND_QUERY_INFO_SIZE = 16;
/** struct virtio_snd_info (§5.14.6.1). */
export const VIRTIO_SND_INFO_SIZE = 4;
/** struct virtio_snd_jack_hdr (§5.14.6.4). */
export const VIRTIO_SND_JACK_HDR_SIZE = 8;
/** struct virtio_snd_jack_info (§5.14.6.4.1). */
export const VIRTIO_SND_JACK_INFO_SIZE = 24;
/** struct virtio_snd_jack_remap (§5.14.6.4.2). */
export const VIRTIO_SND_JACK_REMAP_SIZE = 16;
/** struct virtio_snd_pcm_hdr (§5.14.6.6). */
export const VIRTIO_SND_PCM_HDR_SIZE = 8;
/** struct virtio_snd_pcm_info (§5.14.6.6.2). */
export const VIRTIO_SND_PCM_INFO_SIZE = 32;
/** struct virtio_snd_pcm_set_params (§5.14.6.6.3). */
export const VIRTIO_SND_PCM_SET_PARAMS_SIZE = 24;
/** struct virtio_snd_pcm_xfer (§5.14.6.8). */
export const VIRTIO_SND_PCM_XFER_SIZE = 4;
/** struct virtio_snd_pcm_status (§5.14.6.8). */
export const VIRTIO_SND_PCM_STATUS_SIZE = 8;
/** struct virtio_snd_chmap_info (§5.14.6.9.1). */
export const VIRTIO_SND_CHMAP_INFO_SIZE = 24;
/** struct virtio_snd_ctl_hdr (§5.14.6.10). */
export const VIRTIO_SND_CTL_HDR_SIZE = 8;
/**
 * struct virtio_snd_ctl_info (§5.14.6.10.1) as C compilers lay it out on
 * every 64-bit ABI (and 32-bit Arm): the union holds le64 members, so it is
 * 8-byte aligned, which puts 4 padding bytes after `name` (68..71) and the
 * union at 72. The Linux driver asks for sizeof(struct virtio_snd_ctl_info),
 * which is this, and reads the union at 72. See VIRTIO_SND_CTL_INFO_PACKED_SIZE.
 */
export const VIRTIO_SND_CTL_INFO_SIZE = 96;
/**
 * struct virtio_snd_ctl_info read literally with §1.4's "no additional
 * padding" rule: the union right after `name`, at 68. It is also what i386
 * compilers produce (le64 aligned to 4 inside structs), so an i386 guest asks
 * for records of this size in its query (virtio_snd_query_info.size).
 */
export const VIRTIO_SND_CTL_INFO_PACKED_SIZE = 92;
/** Offset of ctl_info's `value` union in the aligned (default) layout. */
export const VIRTIO_SND_CTL_INFO_VALUE_OFFSET = 72;
/** Offset of ctl_info's `value` union in the packed layout. */
export const VIRTIO_SND_CTL_INFO_PACKED_VALUE_OFFSET = 68;
/** Size of ctl_info's `value` union: three le64 of `integer64`. */
export const VIRTIO_SND_CTL_INFO_UNION_SIZE = 24;
/** Size of ctl_info's `name` field, terminator included. */
export const VIRTIO_SND_CTL_NAME_SIZE = 44;
/** struct virtio_snd_ctl_enum_item (§5.14.6.10.1). */
export const VIRTIO_SND_CTL_ENUM_ITEM_SIZE = 64;
/** struct virtio_snd_ctl_iec958 (§5.14.6.10.2). */
export const VIRTIO_SND_CTL_IEC958_SIZE = 176;
/** struct virtio_snd_ctl_value (§5.14.6.10.2). */
export const VIRTIO_SND_CTL_VALUE_SIZE = 512;
/** The fixed part (type, length) of struct virtio_snd_ctl_tlv (§5.14.6.10.3). */
export const VIRTIO_SND_CTL_TLV_HEADER_SIZE = 8;
/** Largest TLV `value` a driver may submit, in bytes (§5.14.6.10.3 driver requirements). */
export const VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE = 65536;
/** struct virtio_snd_ctl_event (§5.14.6.10.4). */
export const VIRTIO_SND_CTL_EVENT_SIZE = 8;

/** Lengths of virtio_snd_ctl_iec958's byte arrays (§5.14.6.10.2). */
export const VIRTIO_SND_CTL_IEC958_STATUS_SIZE = 24;
export const VIRTIO_SND_CTL_IEC958_SUBCODE_SIZE = 147;
export const VIRTIO_SND_CTL_IEC958_DIG_SUBFRAME_SIZE = 4;

/** Element counts of virtio_snd_ctl_value's union views (§5.14.6.10.2). */
export const VIRTIO_SND_CTL_VALUE_INTEGER_COUNT = 128;
export const VIRTIO_SND_CTL_VALUE_INTEGER64_COUNT = 64;
export const VIRTIO_SND_CTL_VALUE_ENUMERATED_COUNT = 128;
export const VIRTIO_SND_CTL_VALUE_BYTES_COUNT = 512;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/** Throws RangeError unless [offset, offset + size) lies inside the view. */
function span(view: DataView, offset: number, size: number, what: string): void {
  if (!Number.isSafeInteger(offset) || offset < 0 || offset + size > view.byteLength) {
    throw new RangeError(
      `${what} needs ${size} bytes at offset ${offset}, but the view has ${view.byteLength}`,
    );
  }
}

function zero(view: DataView, offset: number, length: number): void {
  new Uint8Array(view.buffer, view.byteOffset + offset, length).fill(0);
}

function copyOut(view: DataView, offset: number, length: number): Uint8Array {
  return new Uint8Array(view.buffer, view.byteOffset + offset, length).slice();
}

/** Writes `src` into a fixed-size byte field, zero-filling the rest of it. */
function writeBytes(view: DataView, offset: number, field: number, src: Uint8Array, what: string): void {
  if (src.length > field) throw new RangeError(`${what}: ${src.length} bytes do not fit in ${field}`);
  new Uint8Array(view.buffer, view.byteOffset + offset, field).set(src);
  zero(view, offset + src.length, field - src.length);
}

function checkFits(length: number, field: number, what: string): void {
  if (length > field) throw new RangeError(`${what}: ${length} elements do not fit in ${field}`);
}

/**
 * Writes an ASCII string into a fixed-size field, 0-terminated. Longer strings
 * are cut to leave room for the terminator; characters that are not ASCII, or
 * are NUL (which would end the string early), become "?".
 */
function writeAscii(view: DataView, offset: number, field: number, text: string): void {
  const n = Math.min(text.length, field - 1);
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    view.setUint8(offset + i, c === 0 || c > 0x7f ? 0x3f : c);
  }
  zero(view, offset + n, field - n);
}

/**
 * Reads a 0-terminated string from a fixed-size field. A field with no
 * terminator (which the spec forbids) yields all its bytes rather than failing.
 */
function readAscii(view: DataView, offset: number, field: number): string {
  let s = "";
  for (let i = 0; i < field; i++) {
    const b = view.getUint8(offset + i);
    if (b === 0) break;
    s += String.fromCharCode(b);
  }
  return s;
}

// ---------------------------------------------------------------------------
// §5.14.4 configuration space
// ---------------------------------------------------------------------------

/** struct virtio_snd_config (§5.14.4): item counts in the device configuration space. */
export interface SndConfig {
  jacks: number;
  streams: number;
  chmaps: number;
  /** Only meaningful once VIRTIO_SND_F_CTLS is negotiated. */
  controls: number;
}

export function encodeSndConfig(view: DataView, offset: number, value: SndConfig): void {
  span(view, offset, VIRTIO_SND_CONFIG_SIZE, "virtio_snd_config");
  view.setUint32(offset, value.jacks, true);
  view.setUint32(offset + 4, value.streams, true);
  view.setUint32(offset + 8, value.chmaps, true);
  view.setUint32(offset + 12, value.controls, true);
}

export function decodeSndConfig(view: DataView, offset: number): SndConfig {
  span(view, offset, VIRTIO_SND_CONFIG_SIZE, "virtio_snd_config");
  return {
    jacks: view.getUint32(offset, true),
    streams: view.getUint32(offset + 4, true),
    chmaps: view.getUint32(offset + 8, true),
    controls: view.getUint32(offset + 12, true),
  };
}

// ---------------------------------------------------------------------------
// §5.14.6 common header and events
// ---------------------------------------------------------------------------

/** struct virtio_snd_hdr (§5.14.6): a request code (VIRTIO_SND_R_*) or a status (VIRTIO_SND_S_*). */
export interface SndHdr {
  code: number;
}

export function encodeSndHdr(view: DataView, offset: number, value: SndHdr): void {
  span(view, offset, VIRTIO_SND_HDR_SIZE, "virtio_snd_hdr");
  view.setUint32(offset, value.code, true);
}

export function decodeSndHdr(view: DataView, offset: number): SndHdr {
  span(view, offset, VIRTIO_SND_HDR_SIZE, "virtio_snd_hdr");
  return { code: view.getUint32(offset, true) };
}

/** struct virtio_snd_event (§5.14.6): an event (VIRTIO_SND_EVT_*) and its item id. */
export interface SndEvent {
  code: number;
  data: number;
}

export function encodeSndEvent(view: DataView, offset: number, value: SndEvent): void {
  span(view, offset, VIRTIO_SND_EVENT_SIZE, "virtio_snd_event");
  view.setUint32(offset, value.code, true);
  view.setUint32(offset + 4, value.data, true);
}

export function decodeSndEvent(view: DataView, offset: number): SndEvent {
  span(view, offset, VIRTIO_SND_EVENT_SIZE, "virtio_snd_event");
  return { code: view.getUint32(offset, true), data: view.getUint32(offset + 4, true) };
}

// ---------------------------------------------------------------------------
// §5.14.6.1 item information request
// ---------------------------------------------------------------------------

/** struct virtio_snd_query_info (§5.14.6.1): asks for `count` records of `size` bytes from `startId`. */
export interface QueryInfo {
  code: number;
  startId: number;
  count: number;
  /** The driver's record size; lets old and new record layouts coexist. */
  size: number;
}

export function encodeQueryInfo(view: DataView, offset: number, value: QueryInfo): void {
  span(view, offset, VIRTIO_SND_QUERY_INFO_SIZE, "virtio_snd_query_info");
  view.setUint32(offset, value.code, true);
  view.setUint32(offset + 4, value.startId, true);
  view.setUint32(offset + 8, value.count, true);
  view.setUint32(offset + 12, value.size, true);
}

export function decodeQueryInfo(view: DataView, offset: number): QueryInfo {
  span(view, offset, VIRTIO_SND_QUERY_INFO_SIZE, "virtio_snd_query_info");
  return {
    code: view.getUint32(offset, true),
    startId: view.getUint32(offset + 4, true),
    count: view.getUint32(offset + 8, true),
    size: view.getUint32(offset + 12, true),
  };
}

/** struct virtio_snd_info (§5.14.6.1): the header of every information record. */
export interface SndInfo {
  /** HDA function group node id; links jacks, streams and channel maps together. */
  hdaFnNid: number;
}

export function encodeSndInfo(view: DataView, offset: number, value: SndInfo): void {
  span(view, offset, VIRTIO_SND_INFO_SIZE, "virtio_snd_info");
  view.setUint32(offset, value.hdaFnNid, true);
}

export function decodeSndInfo(view: DataView, offset: number): SndInfo {
  span(view, offset, VIRTIO_SND_INFO_SIZE, "virtio_snd_info");
  return { hdaFnNid: view.getUint32(offset, true) };
}

// ---------------------------------------------------------------------------
// §5.14.6.4 jacks
// ---------------------------------------------------------------------------

/** struct virtio_snd_jack_hdr (§5.14.6.4): header of jack requests. */
export interface JackHdr {
  code: number;
  jackId: number;
}

export function encodeJackHdr(view: DataView, offset: number, value: JackHdr): void {
  span(view, offset, VIRTIO_SND_JACK_HDR_SIZE, "virtio_snd_jack_hdr");
  view.setUint32(offset, value.code, true);
  view.setUint32(offset + 4, value.jackId, true);
}

export function decodeJackHdr(view: DataView, offset: number): JackHdr {
  span(view, offset, VIRTIO_SND_JACK_HDR_SIZE, "virtio_snd_jack_hdr");
  return { code: view.getUint32(offset, true), jackId: view.getUint32(offset + 4, true) };
}

/** struct virtio_snd_jack_info (§5.14.6.4.1): one jack; 7 padding bytes after `connected`. */
export interface JackInfo {
  hdaFnNid: number;
  /** 1 << VIRTIO_SND_JACK_F_*. */
  features: number;
  /** HDA pin default configuration (HDA §7.3.3.31). */
  hdaRegDefconf: number;
  /** HDA pin capabilities (HDA §7.3.4.9). */
  hdaRegCaps: number;
  /** 1 connected, 0 disconnected (u8). */
  connected: number;
}

export function encodeJackInfo(view: DataView, offset: number, value: JackInfo): void {
  span(view, offset, VIRTIO_SND_JACK_INFO_SIZE, "virtio_snd_jack_info");
  view.setUint32(offset, value.hdaFnNid, true);
  view.setUint32(offset + 4, value.features, true);
  view.setUint32(offset + 8, value.hdaRegDefconf, true);
  view.setUint32(offset + 12, value.hdaRegCaps, true);
  view.setUint8(offset + 16, value.connected);
  zero(view, offset + 17, 7);
}

export function decodeJackInfo(view: DataView, offset: number): JackInfo {
  span(view, offset, VIRTIO_SND_JACK_INFO_SIZE, "virtio_snd_jack_info");
  return {
    hdaFnNid: view.getUint32(offset, true),
    features: view.getUint32(offset + 4, true),
    hdaRegDefconf: view.getUint32(offset + 8, true),
    hdaRegCaps: view.getUint32(offset + 12, true),
    connected: view.getUint8(offset + 16),
  };
}

/** struct virtio_snd_jack_remap (§5.14.6.4.2): new association and sequence for a jack. */
export interface JackRemap {
  code: number;
  jackId: number;
  association: number;
  sequence: number;
}

export function encodeJackRemap(view: DataView, offset: number, value: JackRemap): void {
  span(view, offset, VIRTIO_SND_JACK_REMAP_SIZE, "virtio_snd_jack_remap");
  view.setUint32(offset, value.code, true);
  view.setUint32(offset + 4, value.jackId, true);
  view.setUint32(offset + 8, value.association, true);
  view.setUint32(offset + 12, value.sequence, true);
}

export function decodeJackRemap(view: DataView, offset: number): JackRemap {
  span(view, offset, VIRTIO_SND_JACK_REMAP_SIZE, "virtio_snd_jack_remap");
  return {
    code: view.getUint32(offset, true),
    jackId: view.getUint32(offset + 4, true),
    association: view.getUint32(offset + 8, true),
    sequence: view.getUint32(offset + 12, true),
  };
}

// ---------------------------------------------------------------------------
// §5.14.6.6 PCM control messages
// ---------------------------------------------------------------------------

/** struct virtio_snd_pcm_hdr (§5.14.6.6): header of PCM requests (and all of PREPARE/RELEASE/START/STOP). */
export interface PcmHdr {
  code: number;
  streamId: number;
}

export function encodePcmHdr(view: DataView, offset: number, value: PcmHdr): void {
  span(view, offset, VIRTIO_SND_PCM_HDR_SIZE, "virtio_snd_pcm_hdr");
  view.setUint32(offset, value.code, true);
  view.setUint32(offset + 4, value.streamId, true);
}

export function decodePcmHdr(view: DataView, offset: number): PcmHdr {
  span(view, offset, VIRTIO_SND_PCM_HDR_SIZE, "virtio_snd_pcm_hdr");
  return { code: view.getUint32(offset, true), streamId: view.getUint32(offset + 4, true) };
}

/** struct virtio_snd_pcm_info (§5.14.6.6.2): one stream's capabilities; 5 padding bytes at the end. */
export interface PcmInfo {
  hdaFnNid: number;
  /** 1 << VIRTIO_SND_PCM_F_*. */
  features: number;
  /** 1n << VIRTIO_SND_PCM_FMT_* (le64). */
  formats: bigint;
  /** 1n << VIRTIO_SND_PCM_RATE_* (le64). */
  rates: bigint;
  /** VIRTIO_SND_D_*. */
  direction: number;
  channelsMin: number;
  channelsMax: number;
}

export function encodePcmInfo(view: DataView, offset: number, value: PcmInfo): void {
  span(view, offset, VIRTIO_SND_PCM_INFO_SIZE, "virtio_snd_pcm_info");
  view.setUint32(offset, value.hdaFnNid, true);
  view.setUint32(offset + 4, value.features, true);
  view.setBigUint64(offset + 8, value.formats, true);
  view.setBigUint64(offset + 16, value.rates, true);
  view.setUint8(offset + 24, value.direction);
  view.setUint8(offset + 25, value.channelsMin);
  view.setUint8(offset + 26, value.channelsMax);
  zero(view, offset + 27, 5);
}

export function decodePcmInfo(view: DataView, offset: number): PcmInfo {
  span(view, offset, VIRTIO_SND_PCM_INFO_SIZE, "virtio_snd_pcm_info");
  return {
    hdaFnNid: view.getUint32(offset, true),
    features: view.getUint32(offset + 4, true),
    formats: view.getBigUint64(offset + 8, true),
    rates: view.getBigUint64(offset + 16, true),
    direction: view.getUint8(offset + 24),
    channelsMin: view.getUint8(offset + 25),
    channelsMax: view.getUint8(offset + 26),
  };
}

/** struct virtio_snd_pcm_set_params (§5.14.6.6.3): the driver's chosen stream parameters; 1 padding byte. */
export interface PcmSetParams {
  code: number;
  streamId: number;
  bufferBytes: number;
  periodBytes: number;
  /** 1 << VIRTIO_SND_PCM_F_*. */
  features: number;
  channels: number;
  /** VIRTIO_SND_PCM_FMT_*. */
  format: number;
  /** VIRTIO_SND_PCM_RATE_*. */
  rate: number;
}

export function encodePcmSetParams(view: DataView, offset: number, value: PcmSetParams): void {
  span(view, offset, VIRTIO_SND_PCM_SET_PARAMS_SIZE, "virtio_snd_pcm_set_params");
  view.setUint32(offset, value.code, true);
  view.setUint32(offset + 4, value.streamId, true);
  view.setUint32(offset + 8, value.bufferBytes, true);
  view.setUint32(offset + 12, value.periodBytes, true);
  view.setUint32(offset + 16, value.features, true);
  view.setUint8(offset + 20, value.channels);
  view.setUint8(offset + 21, value.format);
  view.setUint8(offset + 22, value.rate);
  view.setUint8(offset + 23, 0);
}

export function decodePcmSetParams(view: DataView, offset: number): PcmSetParams {
  span(view, offset, VIRTIO_SND_PCM_SET_PARAMS_SIZE, "virtio_snd_pcm_set_params");
  return {
    code: view.getUint32(offset, true),
    streamId: view.getUint32(offset + 4, true),
    bufferBytes: view.getUint32(offset + 8, true),
    periodBytes: view.getUint32(offset + 12, true),
    features: view.getUint32(offset + 16, true),
    channels: view.getUint8(offset + 20),
    format: view.getUint8(offset + 21),
    rate: view.getUint8(offset + 22),
  };
}

// ---------------------------------------------------------------------------
// §5.14.6.8 PCM I/O messages
// ---------------------------------------------------------------------------

/** struct virtio_snd_pcm_xfer (§5.14.6.8): the header before PCM frames on the tx/rx queues. */
export interface PcmXfer {
  streamId: number;
}

export function encodePcmXfer(view: DataView, offset: number, value: PcmXfer): void {
  span(view, offset, VIRTIO_SND_PCM_XFER_SIZE, "virtio_snd_pcm_xfer");
  view.setUint32(offset, value.streamId, true);
}

export function decodePcmXfer(view: DataView, offset: number): PcmXfer {
  span(view, offset, VIRTIO_SND_PCM_XFER_SIZE, "virtio_snd_pcm_xfer");
  return { streamId: view.getUint32(offset, true) };
}

/** struct virtio_snd_pcm_status (§5.14.6.8): the device-written tail of an I/O message. */
export interface PcmStatus {
  /** VIRTIO_SND_S_OK or VIRTIO_SND_S_IO_ERR. */
  status: number;
  latencyBytes: number;
}

export function encodePcmStatus(view: DataView, offset: number, value: PcmStatus): void {
  span(view, offset, VIRTIO_SND_PCM_STATUS_SIZE, "virtio_snd_pcm_status");
  view.setUint32(offset, value.status, true);
  view.setUint32(offset + 4, value.latencyBytes, true);
}

export function decodePcmStatus(view: DataView, offset: number): PcmStatus {
  span(view, offset, VIRTIO_SND_PCM_STATUS_SIZE, "virtio_snd_pcm_status");
  return { status: view.getUint32(offset, true), latencyBytes: view.getUint32(offset + 4, true) };
}

// ---------------------------------------------------------------------------
// §5.14.6.9 channel maps
// ---------------------------------------------------------------------------

/** struct virtio_snd_chmap_info (§5.14.6.9.1): one channel map; positions beyond `channels` are 0. */
export interface ChmapInfo {
  hdaFnNid: number;
  /** VIRTIO_SND_D_*. */
  direction: number;
  channels: number;
  /** VIRTIO_SND_CHMAP_* per channel, at most VIRTIO_SND_CHMAP_MAX_SIZE. */
  positions: readonly number[];
}

export function encodeChmapInfo(view: DataView, offset: number, value: ChmapInfo): void {
  span(view, offset, VIRTIO_SND_CHMAP_INFO_SIZE, "virtio_snd_chmap_info");
  checkFits(value.positions.length, VIRTIO_SND_CHMAP_MAX_SIZE, "virtio_snd_chmap_info.positions");
  view.setUint32(offset, value.hdaFnNid, true);
  view.setUint8(offset + 4, value.direction);
  view.setUint8(offset + 5, value.channels);
  for (let i = 0; i < VIRTIO_SND_CHMAP_MAX_SIZE; i++) {
    view.setUint8(offset + 6 + i, value.positions[i] ?? 0);
  }
}

/** Returns `channels` positions, capped at VIRTIO_SND_CHMAP_MAX_SIZE (the field holds no more). */
export function decodeChmapInfo(view: DataView, offset: number): ChmapInfo {
  span(view, offset, VIRTIO_SND_CHMAP_INFO_SIZE, "virtio_snd_chmap_info");
  const channels = view.getUint8(offset + 5);
  const positions: number[] = [];
  for (let i = 0; i < Math.min(channels, VIRTIO_SND_CHMAP_MAX_SIZE); i++) {
    positions.push(view.getUint8(offset + 6 + i));
  }
  return {
    hdaFnNid: view.getUint32(offset, true),
    direction: view.getUint8(offset + 4),
    channels,
    positions,
  };
}

// ---------------------------------------------------------------------------
// §5.14.6.10 control elements
// ---------------------------------------------------------------------------

/** struct virtio_snd_ctl_hdr (§5.14.6.10): header of control element requests. */
export interface CtlHdr {
  code: number;
  controlId: number;
}

export function encodeCtlHdr(view: DataView, offset: number, value: CtlHdr): void {
  span(view, offset, VIRTIO_SND_CTL_HDR_SIZE, "virtio_snd_ctl_hdr");
  view.setUint32(offset, value.code, true);
  view.setUint32(offset + 4, value.controlId, true);
}

export function decodeCtlHdr(view: DataView, offset: number): CtlHdr {
  span(view, offset, VIRTIO_SND_CTL_HDR_SIZE, "virtio_snd_ctl_hdr");
  return { code: view.getUint32(offset, true), controlId: view.getUint32(offset + 4, true) };
}

/**
 * The `value` union of virtio_snd_ctl_info, tagged by which member is meant.
 * BOOLEAN and INTEGER elements use `integer`, INTEGER64 `integer64`,
 * ENUMERATED `enumerated`; BYTES and IEC958 elements use none (all zero).
 */
export type CtlInfoValue =
  | { readonly kind: "integer"; readonly min: number; readonly max: number; readonly step: number }
  | { readonly kind: "integer64"; readonly min: bigint; readonly max: bigint; readonly step: bigint }
  | { readonly kind: "enumerated"; readonly items: number }
  | { readonly kind: "none" };

/**
 * struct virtio_snd_ctl_info (§5.14.6.10.1): one control element.
 *
 * Layout (aligned, the default; offsets in bytes):
 *   0 hda_fn_nid, 4 role, 8 type, 12 access, 16 count, 20 index,
 *   24..67 name[44], 68..71 padding (0),
 *   72..95 value union: integer {min 72, max 76, step 80} |
 *   integer64 {min 72, max 80, step 88} | enumerated {items 72};
 *   union bytes a member does not use are 0. Size 96.
 * The packed layout is the same with the padding removed: union at 68, size 92.
 */
export interface CtlInfo {
  hdaFnNid: number;
  /** VIRTIO_SND_CTL_ROLE_* << 1 | VIRTIO_SND_D_*, or 0 (undefined). */
  role: number;
  /** VIRTIO_SND_CTL_TYPE_*. */
  type: number;
  /** 1 << VIRTIO_SND_CTL_ACCESS_*. */
  access: number;
  count: number;
  index: number;
  /** ASCII, at most VIRTIO_SND_CTL_NAME_SIZE - 1 characters. */
  name: string;
  value: CtlInfoValue;
}

/**
 * Which ctl_info layout: "aligned" (96 bytes, what the Linux driver on 64-bit
 * guests uses) or "packed" (92 bytes, the spec's literal no-padding reading
 * and the i386 layout). A device can pick by the driver's query `size`.
 */
export type CtlInfoLayout = "aligned" | "packed";

/** The size of a ctl_info record in the given layout. */
export function ctlInfoSize(layout: CtlInfoLayout = "aligned"): number {
  return layout === "packed" ? VIRTIO_SND_CTL_INFO_PACKED_SIZE : VIRTIO_SND_CTL_INFO_SIZE;
}

export function encodeCtlInfo(
  view: DataView,
  offset: number,
  value: CtlInfo,
  layout: CtlInfoLayout = "aligned",
): void {
  span(view, offset, ctlInfoSize(layout), "virtio_snd_ctl_info");
  view.setUint32(offset, value.hdaFnNid, true);
  view.setUint32(offset + 4, value.role, true);
  view.setUint32(offset + 8, value.type, true);
  view.setUint32(offset + 12, value.access, true);
  view.setUint32(offset + 16, value.count, true);
  view.setUint32(offset + 20, value.index, true);
  writeAscii(view, offset + 24, VIRTIO_SND_CTL_NAME_SIZE, value.name);
  let u = offset + VIRTIO_SND_CTL_INFO_PACKED_VALUE_OFFSET;
  if (layout === "aligned") {
    zero(view, u, VIRTIO_SND_CTL_INFO_VALUE_OFFSET - VIRTIO_SND_CTL_INFO_PACKED_VALUE_OFFSET);
    u = offset + VIRTIO_SND_CTL_INFO_VALUE_OFFSET;
  }
  zero(view, u, VIRTIO_SND_CTL_INFO_UNION_SIZE);
  const v = value.value;
  switch (v.kind) {
    case "integer":
      view.setUint32(u, v.min, true);
      view.setUint32(u + 4, v.max, true);
      view.setUint32(u + 8, v.step, true);
      break;
    case "integer64":
      view.setBigUint64(u, v.min, true);
      view.setBigUint64(u + 8, v.max, true);
      view.setBigUint64(u + 16, v.step, true);
      break;
    case "enumerated":
      view.setUint32(u, v.items, true);
      break;
    case "none":
      break;
  }
}

/** Reads the union member that `type` selects; an unknown type reads as "none". */
export function decodeCtlInfo(view: DataView, offset: number, layout: CtlInfoLayout = "aligned"): CtlInfo {
  span(view, offset, ctlInfoSize(layout), "virtio_snd_ctl_info");
  const type = view.getUint32(offset + 8, true);
  const u =
    offset +
    (layout === "packed" ? VIRTIO_SND_CTL_INFO_PACKED_VALUE_OFFSET : VIRTIO_SND_CTL_INFO_VALUE_OFFSET);
  let value: CtlInfoValue;
  switch (type) {
    case VIRTIO_SND_CTL_TYPE_BOOLEAN:
    case VIRTIO_SND_CTL_TYPE_INTEGER:
      value = {
        kind: "integer",
        min: view.getUint32(u, true),
        max: view.getUint32(u + 4, true),
        step: view.getUint32(u + 8, true),
      };
      break;
    case VIRTIO_SND_CTL_TYPE_INTEGER64:
      value = {
        kind: "integer64",
        min: view.getBigUint64(u, true),
        max: view.getBigUint64(u + 8, true),
        step: view.getBigUint64(u + 16, true),
      };
      break;
    case VIRTIO_SND_CTL_TYPE_ENUMERATED:
      value = { kind: "enumerated", items: view.getUint32(u, true) };
      break;
    default:
      value = { kind: "none" };
  }
  return {
    hdaFnNid: view.getUint32(offset, true),
    role: view.getUint32(offset + 4, true),
    type,
    access: view.getUint32(offset + 12, true),
    count: view.getUint32(offset + 16, true),
    index: view.getUint32(offset + 20, true),
    name: readAscii(view, offset + 24, VIRTIO_SND_CTL_NAME_SIZE),
    value,
  };
}

/** struct virtio_snd_ctl_enum_item (§5.14.6.10.1): one option name of an ENUMERATED element. */
export interface CtlEnumItem {
  /** ASCII, at most VIRTIO_SND_CTL_ENUM_ITEM_SIZE - 1 characters. */
  item: string;
}

export function encodeCtlEnumItem(view: DataView, offset: number, value: CtlEnumItem): void {
  span(view, offset, VIRTIO_SND_CTL_ENUM_ITEM_SIZE, "virtio_snd_ctl_enum_item");
  writeAscii(view, offset, VIRTIO_SND_CTL_ENUM_ITEM_SIZE, value.item);
}

export function decodeCtlEnumItem(view: DataView, offset: number): CtlEnumItem {
  span(view, offset, VIRTIO_SND_CTL_ENUM_ITEM_SIZE, "virtio_snd_ctl_enum_item");
  return { item: readAscii(view, offset, VIRTIO_SND_CTL_ENUM_ITEM_SIZE) };
}

/**
 * struct virtio_snd_ctl_iec958 (§5.14.6.10.2): AES/IEC958 bits, laid out as
 * ALSA's snd_aes_iec958: status 0..23, subcode 24..170, pad 171, dig_subframe
 * 172..175. Shorter arrays are zero-filled on encode; decode returns full-length copies.
 */
export interface CtlIec958 {
  /** Up to 24 channel status bytes. */
  status: Uint8Array;
  /** Up to 147 subcode bytes. */
  subcode: Uint8Array;
  /** Up to 4 subframe bytes. */
  digSubframe: Uint8Array;
}

export function encodeCtlIec958(view: DataView, offset: number, value: CtlIec958): void {
  span(view, offset, VIRTIO_SND_CTL_IEC958_SIZE, "virtio_snd_ctl_iec958");
  checkFits(value.status.length, VIRTIO_SND_CTL_IEC958_STATUS_SIZE, "virtio_snd_ctl_iec958.status");
  checkFits(value.subcode.length, VIRTIO_SND_CTL_IEC958_SUBCODE_SIZE, "virtio_snd_ctl_iec958.subcode");
  checkFits(
    value.digSubframe.length,
    VIRTIO_SND_CTL_IEC958_DIG_SUBFRAME_SIZE,
    "virtio_snd_ctl_iec958.dig_subframe",
  );
  writeBytes(view, offset, VIRTIO_SND_CTL_IEC958_STATUS_SIZE, value.status, "status");
  writeBytes(view, offset + 24, VIRTIO_SND_CTL_IEC958_SUBCODE_SIZE, value.subcode, "subcode");
  view.setUint8(offset + 171, 0);
  writeBytes(view, offset + 172, VIRTIO_SND_CTL_IEC958_DIG_SUBFRAME_SIZE, value.digSubframe, "dig_subframe");
}

export function decodeCtlIec958(view: DataView, offset: number): CtlIec958 {
  span(view, offset, VIRTIO_SND_CTL_IEC958_SIZE, "virtio_snd_ctl_iec958");
  return {
    status: copyOut(view, offset, VIRTIO_SND_CTL_IEC958_STATUS_SIZE),
    subcode: copyOut(view, offset + 24, VIRTIO_SND_CTL_IEC958_SUBCODE_SIZE),
    digSubframe: copyOut(view, offset + 172, VIRTIO_SND_CTL_IEC958_DIG_SUBFRAME_SIZE),
  };
}

/*
 * struct virtio_snd_ctl_value (§5.14.6.10.2): a 512-byte union read through
 * the view the element's type selects. Each encoder below writes all 512
 * bytes (unused ones 0) and refuses more elements than the view holds; each
 * decoder requires the full 512 bytes, since that is the structure's size.
 */

/** `integer` view (BOOLEAN and INTEGER elements): up to 128 le32. */
export function encodeCtlValueInteger(view: DataView, offset: number, values: readonly number[]): void {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  checkFits(values.length, VIRTIO_SND_CTL_VALUE_INTEGER_COUNT, "virtio_snd_ctl_value.integer");
  for (let i = 0; i < values.length; i++) view.setUint32(offset + 4 * i, values[i] ?? 0, true);
  zero(view, offset + 4 * values.length, VIRTIO_SND_CTL_VALUE_SIZE - 4 * values.length);
}

export function decodeCtlValueInteger(
  view: DataView,
  offset: number,
  count: number = VIRTIO_SND_CTL_VALUE_INTEGER_COUNT,
): number[] {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  const n = clampCount(count, VIRTIO_SND_CTL_VALUE_INTEGER_COUNT);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(view.getUint32(offset + 4 * i, true));
  return out;
}

/** `integer64` view (INTEGER64 elements): up to 64 le64. */
export function encodeCtlValueInteger64(view: DataView, offset: number, values: readonly bigint[]): void {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  checkFits(values.length, VIRTIO_SND_CTL_VALUE_INTEGER64_COUNT, "virtio_snd_ctl_value.integer64");
  for (let i = 0; i < values.length; i++) view.setBigUint64(offset + 8 * i, values[i] ?? 0n, true);
  zero(view, offset + 8 * values.length, VIRTIO_SND_CTL_VALUE_SIZE - 8 * values.length);
}

export function decodeCtlValueInteger64(
  view: DataView,
  offset: number,
  count: number = VIRTIO_SND_CTL_VALUE_INTEGER64_COUNT,
): bigint[] {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  const n = clampCount(count, VIRTIO_SND_CTL_VALUE_INTEGER64_COUNT);
  const out: bigint[] = [];
  for (let i = 0; i < n; i++) out.push(view.getBigUint64(offset + 8 * i, true));
  return out;
}

/** `enumerated` view (ENUMERATED elements): up to 128 le32 item indexes. */
export function encodeCtlValueEnumerated(view: DataView, offset: number, values: readonly number[]): void {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  checkFits(values.length, VIRTIO_SND_CTL_VALUE_ENUMERATED_COUNT, "virtio_snd_ctl_value.enumerated");
  for (let i = 0; i < values.length; i++) view.setUint32(offset + 4 * i, values[i] ?? 0, true);
  zero(view, offset + 4 * values.length, VIRTIO_SND_CTL_VALUE_SIZE - 4 * values.length);
}

export function decodeCtlValueEnumerated(
  view: DataView,
  offset: number,
  count: number = VIRTIO_SND_CTL_VALUE_ENUMERATED_COUNT,
): number[] {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  const n = clampCount(count, VIRTIO_SND_CTL_VALUE_ENUMERATED_COUNT);
  const out: number[] = [];
  for (let i = 0; i < n; i++) out.push(view.getUint32(offset + 4 * i, true));
  return out;
}

/** `bytes` view (BYTES elements): up to 512 u8. */
export function encodeCtlValueBytes(view: DataView, offset: number, bytes: Uint8Array): void {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  writeBytes(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, bytes, "virtio_snd_ctl_value.bytes");
}

export function decodeCtlValueBytes(
  view: DataView,
  offset: number,
  count: number = VIRTIO_SND_CTL_VALUE_BYTES_COUNT,
): Uint8Array {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  return copyOut(view, offset, clampCount(count, VIRTIO_SND_CTL_VALUE_BYTES_COUNT));
}

/** `iec958` view (IEC958 elements): the first 176 bytes; the other 336 are 0. */
export function encodeCtlValueIec958(view: DataView, offset: number, value: CtlIec958): void {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  encodeCtlIec958(view, offset, value);
  zero(view, offset + VIRTIO_SND_CTL_IEC958_SIZE, VIRTIO_SND_CTL_VALUE_SIZE - VIRTIO_SND_CTL_IEC958_SIZE);
}

export function decodeCtlValueIec958(view: DataView, offset: number): CtlIec958 {
  span(view, offset, VIRTIO_SND_CTL_VALUE_SIZE, "virtio_snd_ctl_value");
  return decodeCtlIec958(view, offset);
}

/** A count in [0, max]; anything else is a caller error. */
function clampCount(count: number, max: number): number {
  if (!Number.isInteger(count) || count < 0 || count > max) {
    throw new RangeError(`element count ${count} is outside 0..${max}`);
  }
  return count;
}

/**
 * struct virtio_snd_ctl_value (§5.14.6.10.2) tagged by the union member in
 * use. Arrays hold the element's `count` values (§5.14.6.10.2: "the array
 * contains count values"); IEC958 holds one structure.
 */
export type CtlValue =
  | { readonly kind: "integer"; readonly values: readonly number[] }
  | { readonly kind: "integer64"; readonly values: readonly bigint[] }
  | { readonly kind: "enumerated"; readonly values: readonly number[] }
  | { readonly kind: "bytes"; readonly values: Uint8Array }
  | { readonly kind: "iec958"; readonly value: CtlIec958 };

export function encodeCtlValue(view: DataView, offset: number, value: CtlValue): void {
  switch (value.kind) {
    case "integer":
      encodeCtlValueInteger(view, offset, value.values);
      break;
    case "integer64":
      encodeCtlValueInteger64(view, offset, value.values);
      break;
    case "enumerated":
      encodeCtlValueEnumerated(view, offset, value.values);
      break;
    case "bytes":
      encodeCtlValueBytes(view, offset, value.values);
      break;
    case "iec958":
      encodeCtlValueIec958(view, offset, value.value);
      break;
  }
}

/**
 * Reads a ctl_value as an element of `type` (VIRTIO_SND_CTL_TYPE_*) with
 * `count` members would hold it; the union carries no tag of its own.
 * Throws RangeError for an unknown type or a count the view cannot hold.
 */
export function decodeCtlValue(view: DataView, offset: number, type: number, count: number): CtlValue {
  switch (type) {
    case VIRTIO_SND_CTL_TYPE_BOOLEAN:
    case VIRTIO_SND_CTL_TYPE_INTEGER:
      return { kind: "integer", values: decodeCtlValueInteger(view, offset, count) };
    case VIRTIO_SND_CTL_TYPE_INTEGER64:
      return { kind: "integer64", values: decodeCtlValueInteger64(view, offset, count) };
    case VIRTIO_SND_CTL_TYPE_ENUMERATED:
      return { kind: "enumerated", values: decodeCtlValueEnumerated(view, offset, count) };
    case VIRTIO_SND_CTL_TYPE_BYTES:
      return { kind: "bytes", values: decodeCtlValueBytes(view, offset, count) };
    case VIRTIO_SND_CTL_TYPE_IEC958:
      return { kind: "iec958", value: decodeCtlValueIec958(view, offset) };
    default:
      throw new RangeError(`unknown control element type ${type}`);
  }
}

/** The fixed part of struct virtio_snd_ctl_tlv (§5.14.6.10.3); `length` counts value bytes. */
export interface CtlTlvHeader {
  type: number;
  length: number;
}

export function encodeCtlTlvHeader(view: DataView, offset: number, value: CtlTlvHeader): void {
  span(view, offset, VIRTIO_SND_CTL_TLV_HEADER_SIZE, "virtio_snd_ctl_tlv");
  view.setUint32(offset, value.type, true);
  view.setUint32(offset + 4, value.length, true);
}

export function decodeCtlTlvHeader(view: DataView, offset: number): CtlTlvHeader {
  span(view, offset, VIRTIO_SND_CTL_TLV_HEADER_SIZE, "virtio_snd_ctl_tlv");
  return { type: view.getUint32(offset, true), length: view.getUint32(offset + 4, true) };
}

/** A whole struct virtio_snd_ctl_tlv (§5.14.6.10.3): metadata as 4-byte words. */
export interface CtlTlv {
  type: number;
  /** le32 words; the header's `length` is 4 × their number. */
  value: readonly number[];
}

/** Bytes a TLV takes on the wire: header plus 4 per value word. */
export function ctlTlvSize(value: CtlTlv): number {
  return VIRTIO_SND_CTL_TLV_HEADER_SIZE + 4 * value.value.length;
}

export function encodeCtlTlv(view: DataView, offset: number, value: CtlTlv): void {
  const size = ctlTlvSize(value);
  span(view, offset, size, "virtio_snd_ctl_tlv");
  view.setUint32(offset, value.type, true);
  view.setUint32(offset + 4, size - VIRTIO_SND_CTL_TLV_HEADER_SIZE, true);
  for (let i = 0; i < value.value.length; i++) {
    view.setUint32(offset + VIRTIO_SND_CTL_TLV_HEADER_SIZE + 4 * i, value.value[i] ?? 0, true);
  }
}

/**
 * Reads a TLV whose value is `length` bytes after the header. Throws
 * RangeError when `length` is not a multiple of 4 (the spec has it aligned to
 * 4) or the value runs past the view; checked before anything is allocated.
 */
export function decodeCtlTlv(view: DataView, offset: number): CtlTlv {
  const { type, length } = decodeCtlTlvHeader(view, offset);
  if (length % 4 !== 0) throw new RangeError(`virtio_snd_ctl_tlv length ${length} is not a multiple of 4`);
  span(view, offset, VIRTIO_SND_CTL_TLV_HEADER_SIZE + length, "virtio_snd_ctl_tlv");
  const words: number[] = [];
  for (let i = 0; i < length / 4; i++) {
    words.push(view.getUint32(offset + VIRTIO_SND_CTL_TLV_HEADER_SIZE + 4 * i, true));
  }
  return { type, value: words };
}

/** struct virtio_snd_ctl_event (§5.14.6.10.4): a control element changed; le16 id and mask. */
export interface CtlEvent {
  /** VIRTIO_SND_EVT_CTL_NOTIFY. */
  code: number;
  controlId: number;
  /** 1 << VIRTIO_SND_CTL_EVT_MASK_*. */
  mask: number;
}

export function encodeCtlEvent(view: DataView, offset: number, value: CtlEvent): void {
  span(view, offset, VIRTIO_SND_CTL_EVENT_SIZE, "virtio_snd_ctl_event");
  view.setUint32(offset, value.code, true);
  view.setUint16(offset + 4, value.controlId, true);
  view.setUint16(offset + 6, value.mask, true);
}

export function decodeCtlEvent(view: DataView, offset: number): CtlEvent {
  span(view, offset, VIRTIO_SND_CTL_EVENT_SIZE, "virtio_snd_ctl_event");
  return {
    code: view.getUint32(offset, true),
    controlId: view.getUint16(offset + 4, true),
    mask: view.getUint16(offset + 6, true),
  };
}
