/**
 * WAV (RIFF WAVE) files: a writer that keeps its header valid at every moment
 * and a reader that accepts what other programs write.
 *
 * The writer stores the guest's samples as sent whenever a WAV file can hold
 * them, and otherwise converts them with a StreamConverter to the nearest
 * format a WAV file can hold, exactly (every value survives; integer widening
 * is a shift); the file then says "converted from <format>" in a LIST/INFO
 * ICMT comment.
 *
 *   guest format                       file                              bytes
 *   U8, S16, S24_3, S32                PCM 8, 16, 24, 32 bits            as sent
 *   FLOAT, FLOAT64                     IEEE float 32, 64 bits            as sent
 *   A_LAW, MU_LAW                      G.711 A-law, µ-law                as sent
 *   S8, U16, U24_3, U32                U8, S16, S24_3, S32 (sign flip)   converted
 *   S24, U24 (24 bits in 4 bytes)      PCM 24 bits (3 bytes)             converted
 *   S20, U20, S20_3, U20_3,            PCM 24 bits, the value in the     converted
 *   S18_3, U18_3                       high bits (shifted left 4 or 6)
 *
 * S24 in a 32-bit container is written as 24-bit PCM rather than as 32-bit
 * PCM with wValidBitsPerSample = 24: the value is the same, the file is a
 * quarter smaller, and SoX 14.4.2 (the version most distributions ship)
 * refuses files whose valid bits are fewer than their container's ("WAVE file
 * fmt with padded samples is not supported yet"). For the same reason 20- and
 * 18-bit samples are declared as 24-bit by default (their low bits are zero);
 * the `exactValidBits` option declares 20 or 18 instead. The top byte of an
 * S24/S20 container, which ALSA ignores, is not kept.
 *
 * IMA ADPCM, DSD and IEC958 subframes have no WAV form here (wavLayoutFor
 * returns null).
 *
 * WAVE_FORMAT_EXTENSIBLE is used for more than two channels, integer samples
 * of more than 16 bits and samples with fewer valid bits than their container,
 * with the default speaker mask for 1 to 8 channels (mono: FC; stereo: FL FR;
 * 3: FL FR FC; quad: FL FR BL BR; 5.0: FL FR FC BL BR; 5.1: FL FR FC LFE BL BR;
 * 6.1: + BC; 7.1: FL FR FC LFE BL BR SL SR). Float mono and stereo use
 * WAVE_FORMAT_IEEE_FLOAT (SoX warns, harmlessly, about extensible float).
 * Channels are written in the order they come; WAV's order for 5.0, 5.1 and
 * 7.1 puts FC and LFE before the rear pair, where ALSA's default puts them after.
 */
import * as nodeFs from "node:fs";
import { StreamConverter, type PcmFormatSpec } from "../audio/convert.js";
import { VirtioSndError } from "../errors.js";
import {
  PCM_FORMAT_INFO,
  VIRTIO_SND_PCM_FMT_A_LAW,
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_FMT_MU_LAW,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S18_3,
  VIRTIO_SND_PCM_FMT_S20,
  VIRTIO_SND_PCM_FMT_S20_3,
  VIRTIO_SND_PCM_FMT_S24,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_S8,
  VIRTIO_SND_PCM_FMT_U16,
  VIRTIO_SND_PCM_FMT_U18_3,
  VIRTIO_SND_PCM_FMT_U20,
  VIRTIO_SND_PCM_FMT_U20_3,
  VIRTIO_SND_PCM_FMT_U24,
  VIRTIO_SND_PCM_FMT_U24_3,
  VIRTIO_SND_PCM_FMT_U32,
  VIRTIO_SND_PCM_FMT_U8,
} from "../spec/constants.js";
import { pcmFormatName } from "../spec/names.js";

export type { PcmFormatSpec } from "../audio/convert.js";
export { PCM_FORMAT_NAMES, pcmFormatName } from "../spec/names.js";

/** WAVE format tags (the `wFormatTag` of the fmt chunk, and the first two bytes of an extensible SubFormat). */
export const WAVE_FORMAT_PCM = 0x0001;
export const WAVE_FORMAT_IEEE_FLOAT = 0x0003;
export const WAVE_FORMAT_ALAW = 0x0006;
export const WAVE_FORMAT_MULAW = 0x0007;
export const WAVE_FORMAT_EXTENSIBLE = 0xfffe;

/** How samples of one guest format are stored in a WAV file. */
export interface WavLayout {
  /** The guest's format. */
  readonly format: number;
  /** WAVE_FORMAT_PCM, _IEEE_FLOAT, _ALAW or _MULAW (before any EXTENSIBLE wrapping). */
  readonly tag: number;
  /** VIRTIO_SND_PCM_FMT_* of the bytes in the file (what readWav reports). */
  readonly fileFormat: number;
  /** Bits per sample in the file (wBitsPerSample). */
  readonly containerBits: number;
  /** Bits of the guest's format: the high ones of the container carry them. */
  readonly bits: number;
  /** The file's bytes differ from the guest's: a StreamConverter turns `format` into `fileFormat`. */
  readonly converted: boolean;
}

function layout(format: number, tag: number, fileFormat: number): WavLayout {
  return {
    format,
    tag,
    fileFormat,
    containerBits: PCM_FORMAT_INFO[fileFormat]!.physicalBits,
    bits: PCM_FORMAT_INFO[format]!.bits,
    converted: format !== fileFormat,
  };
}

const P = WAVE_FORMAT_PCM;
const LAYOUTS: ReadonlyMap<number, WavLayout> = new Map(
  [
    layout(VIRTIO_SND_PCM_FMT_U8, P, VIRTIO_SND_PCM_FMT_U8),
    layout(VIRTIO_SND_PCM_FMT_S16, P, VIRTIO_SND_PCM_FMT_S16),
    layout(VIRTIO_SND_PCM_FMT_S24_3, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_S32, P, VIRTIO_SND_PCM_FMT_S32),
    layout(VIRTIO_SND_PCM_FMT_FLOAT, WAVE_FORMAT_IEEE_FLOAT, VIRTIO_SND_PCM_FMT_FLOAT),
    layout(VIRTIO_SND_PCM_FMT_FLOAT64, WAVE_FORMAT_IEEE_FLOAT, VIRTIO_SND_PCM_FMT_FLOAT64),
    layout(VIRTIO_SND_PCM_FMT_A_LAW, WAVE_FORMAT_ALAW, VIRTIO_SND_PCM_FMT_A_LAW),
    layout(VIRTIO_SND_PCM_FMT_MU_LAW, WAVE_FORMAT_MULAW, VIRTIO_SND_PCM_FMT_MU_LAW),
    layout(VIRTIO_SND_PCM_FMT_S8, P, VIRTIO_SND_PCM_FMT_U8),
    layout(VIRTIO_SND_PCM_FMT_U16, P, VIRTIO_SND_PCM_FMT_S16),
    layout(VIRTIO_SND_PCM_FMT_U24_3, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_U32, P, VIRTIO_SND_PCM_FMT_S32),
    layout(VIRTIO_SND_PCM_FMT_S24, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_U24, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_S20, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_U20, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_S20_3, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_U20_3, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_S18_3, P, VIRTIO_SND_PCM_FMT_S24_3),
    layout(VIRTIO_SND_PCM_FMT_U18_3, P, VIRTIO_SND_PCM_FMT_S24_3),
  ].map((l) => [l.format, l]),
);

/** How `format` is stored in a WAV file, or null when it cannot be. */
export function wavLayoutFor(format: number): WavLayout | null {
  return LAYOUTS.get(format) ?? null;
}

const SPEAKER_MASKS = [0, 0x4, 0x3, 0x7, 0x33, 0x37, 0x3f, 0x13f, 0x63f];

/** The default WAVE_FORMAT_EXTENSIBLE speaker mask for `channels` channels (0, "not given", beyond 8). */
export function defaultChannelMask(channels: number): number {
  return SPEAKER_MASKS[channels] ?? 0;
}

/** The node:fs calls the WAV code makes; tests substitute failing ones. */
export interface WavFileSystem {
  openSync(path: string, flags: string): number;
  writeSync(fd: number, buffer: Uint8Array, offset: number, length: number, position: number): number;
  closeSync(fd: number): void;
  readFileSync(path: string): Uint8Array;
}

export const NODE_FILE_SYSTEM: WavFileSystem = nodeFs;

export interface WavWriterOptions {
  /** Replace an existing file (default true); false fails with EEXIST instead. */
  overwrite?: boolean;
  /** WAVE_FORMAT_EXTENSIBLE speaker mask; default: defaultChannelMask(channels). */
  channelMask?: number;
  /**
   * Declare 20- and 18-bit samples as such (wValidBitsPerSample 20 or 18 in a
   * 24-bit container) instead of as 24-bit. Exact, but SoX 14.4.2 cannot read
   * such files. Default false.
   */
  exactValidBits?: boolean;
  /** A comment for the LIST/INFO ICMT field (after the "converted from" note, if any). */
  comment?: string;
  fs?: WavFileSystem;
}

/** RIFF sizes are 32-bit: the largest data chunk a file can have, given its header. */
const RIFF_MAX = 0xffff_ffff;

function invalid(message: string, cause?: unknown): never {
  throw new VirtioSndError("ERR_INVALID_CONFIG", message, cause === undefined ? undefined : { cause });
}

/**
 * Writes one WAV file from a stream of samples.
 *
 * The header is written at open with a data size of 0 and rewritten (one
 * positional write of the whole header, 44 to about 100 bytes) after every
 * write, after the data: whatever happens to the process, the file on disk is
 * a valid WAV file holding every byte written so far. close() pads the data
 * chunk to an even length, as RIFF requires, and fixes the final sizes.
 *
 * All I/O is synchronous on one descriptor (node:fs openSync/writeSync), so
 * writes land in order and an error reaches the caller of write().
 */
export class WavWriter {
  readonly path: string;
  readonly spec: Readonly<PcmFormatSpec>;
  readonly layout: WavLayout;
  /** wValidBitsPerSample (wBitsPerSample when the file is not EXTENSIBLE). */
  readonly validBits: number;
  /** The LIST/INFO comment, or "" when the file has none. */
  readonly comment: string;
  /** Bytes per frame in the file. */
  readonly blockAlign: number;
  private readonly fs: WavFileSystem;
  private fd: number | null;
  private readonly header: Uint8Array;
  private readonly headerView: DataView;
  private readonly factOffset: number;
  private readonly dataSizeOffset: number;
  private dataBytes = 0;
  private padded = false;
  private readonly converter: StreamConverter | null;
  private progress = 0;

  constructor(path: string, spec: PcmFormatSpec, options: WavWriterOptions = {}) {
    const l = wavLayoutFor(spec.format);
    if (l === null) invalid(`a WAV file cannot hold ${pcmFormatName(spec.format)} samples`);
    if (!Number.isInteger(spec.channels) || spec.channels < 1 || spec.channels > 0xffff)
      invalid(`WAV channels must be 1 to 65535, not ${spec.channels}`);
    if (!Number.isInteger(spec.rate) || spec.rate < 1 || spec.rate > 0xffff_ffff)
      invalid(`WAV rate must be a positive 32-bit integer, not ${spec.rate}`);
    this.path = path;
    this.spec = { format: spec.format, channels: spec.channels, rate: spec.rate };
    this.layout = l;
    this.fs = options.fs ?? NODE_FILE_SYSTEM;
    this.blockAlign = (l.containerBits / 8) * spec.channels;
    if (this.blockAlign > 0xffff) invalid(`WAV frames are at most 65535 bytes, not ${this.blockAlign}`);
    this.validBits = options.exactValidBits ? l.bits : l.containerBits;
    const notes = [
      ...(l.converted ? [`converted from ${pcmFormatName(spec.format)}`] : []),
      ...(options.comment ? [options.comment] : []),
    ];
    this.comment = notes.join("; ");
    this.converter = l.converted
      ? new StreamConverter(this.spec, { format: l.fileFormat, channels: spec.channels, rate: spec.rate })
      : null;
    const h = buildHeader(
      l,
      this.spec,
      this.validBits,
      options.channelMask ?? defaultChannelMask(spec.channels),
      this.comment,
    );
    this.header = h.bytes;
    this.headerView = new DataView(h.bytes.buffer);
    this.factOffset = h.factOffset;
    this.dataSizeOffset = h.dataSizeOffset;

    this.fd = this.fs.openSync(path, options.overwrite === false ? "wx" : "w");
    try {
      this.writeHeader();
    } catch (err) {
      this.closeFd();
      throw err;
    }
  }

  /** Bytes in the data chunk (without the pad byte). */
  get dataLength(): number {
    return this.dataBytes;
  }

  /** Whole frames in the data chunk. */
  get frames(): number {
    return Math.floor(this.dataBytes / this.blockAlign);
  }

  /** Bytes of the header, before the data. */
  get headerLength(): number {
    return this.header.length;
  }

  get closed(): boolean {
    return this.fd === null;
  }

  /**
   * Appends samples in the guest's format. Any length is accepted; when the
   * samples are converted, a partial frame waits for the rest (and is dropped
   * at close); otherwise the bytes go to the file as they are. Throws the
   * file system's error (ENOSPC...) after fixing the header to cover what did
   * reach the file.
   */
  write(data: Uint8Array, offset = 0, length = data.length - offset): void {
    if (this.fd === null) throw new VirtioSndError("ERR_INVALID_STATE", `${this.path}: WAV writer is closed`);
    const bytes = data.subarray(offset, offset + length);
    this.append(this.converter === null ? bytes : this.converter.push(bytes));
  }

  /** Fixes the final sizes, pads the data chunk to even length and closes the file. Idempotent. */
  close(): void {
    if (this.fd === null) return;
    try {
      if (this.converter !== null) this.append(this.converter.flush());
      if (this.dataBytes % 2 === 1) {
        this.writeAll(new Uint8Array(1), this.header.length + this.dataBytes);
        this.padded = true;
        this.writeHeader();
      }
    } finally {
      this.closeFd();
    }
  }

  /** Closes the descriptor without writing anything more: the file stays as the last write left it. */
  abandon(): void {
    this.closeFd();
  }

  private closeFd(): void {
    const fd = this.fd;
    this.fd = null;
    if (fd !== null) this.fs.closeSync(fd);
  }

  private append(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const total = this.header.length - 8 + this.dataBytes + bytes.length;
    if (total + (total % 2) > RIFF_MAX)
      throw new VirtioSndError("ERR_BACKEND", `${this.path}: a WAV file cannot grow beyond 4 GiB`);
    try {
      this.writeAll(bytes, this.header.length + this.dataBytes);
    } catch (err) {
      // Whatever reached the file goes into the header, so the file stays whole.
      if (this.progress > 0) {
        this.dataBytes += this.progress;
        try {
          this.writeHeader();
        } catch {
          // The write error is the one to report.
        }
      }
      throw err;
    }
    this.dataBytes += bytes.length;
    this.writeHeader();
  }

  /** Writes all of `bytes` at `position`; `progress` counts the bytes written, for when it throws. */
  private writeAll(bytes: Uint8Array, position: number): void {
    this.progress = 0;
    while (this.progress < bytes.length) {
      const done = this.progress;
      const n = this.fs.writeSync(this.fd!, bytes, done, bytes.length - done, position + done);
      if (n <= 0) throw new VirtioSndError("ERR_BACKEND", `${this.path}: write made no progress`);
      this.progress += n;
    }
  }

  private writeHeader(): void {
    const v = this.headerView;
    const riff = this.header.length - 8 + this.dataBytes + (this.padded ? 1 : 0);
    v.setUint32(4, riff, true);
    if (this.factOffset >= 0) v.setUint32(this.factOffset, this.frames, true);
    v.setUint32(this.dataSizeOffset, this.dataBytes, true);
    this.writeAll(this.header, 0);
  }
}

const GUID_TAIL = [0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xaa, 0x00, 0x38, 0x9b, 0x71];

function ascii(view: DataView, offset: number, text: string): void {
  for (let i = 0; i < text.length; i++) view.setUint8(offset + i, text.charCodeAt(i) & 0x7f);
}

/**
 * RIFF header, fmt chunk (PCM: 16 bytes; other tags: 18; EXTENSIBLE: 40),
 * fact chunk (any tag but PCM), LIST/INFO with ICMT (when there is a comment),
 * and the data chunk's header.
 */
function buildHeader(
  l: WavLayout,
  spec: PcmFormatSpec,
  validBits: number,
  channelMask: number,
  comment: string,
): { bytes: Uint8Array; factOffset: number; dataSizeOffset: number } {
  const extensible =
    spec.channels > 2 || (l.tag === WAVE_FORMAT_PCM && l.containerBits > 16) || validBits !== l.containerBits;
  const tag = extensible ? WAVE_FORMAT_EXTENSIBLE : l.tag;
  const fmtSize = extensible ? 40 : tag === WAVE_FORMAT_PCM ? 16 : 18;
  const hasFact = tag !== WAVE_FORMAT_PCM;
  // ICMT text: ASCII, NUL-terminated, the chunk padded to even length.
  const text = comment.replace(/[^\x20-\x7e]/g, "?");
  const icmtSize = text.length + 1;
  const listSize = comment === "" ? 0 : 4 + 8 + icmtSize + (icmtSize % 2);
  const size = 12 + 8 + fmtSize + (hasFact ? 12 : 0) + (listSize > 0 ? 8 + listSize : 0) + 8;
  const bytes = new Uint8Array(size);
  const v = new DataView(bytes.buffer);
  const blockAlign = (l.containerBits / 8) * spec.channels;
  ascii(v, 0, "RIFF");
  ascii(v, 8, "WAVE");
  let o = 12;
  ascii(v, o, "fmt ");
  v.setUint32(o + 4, fmtSize, true);
  v.setUint16(o + 8, tag, true);
  v.setUint16(o + 10, spec.channels, true);
  v.setUint32(o + 12, spec.rate, true);
  v.setUint32(o + 16, Math.min(RIFF_MAX, spec.rate * blockAlign), true);
  v.setUint16(o + 20, blockAlign, true);
  v.setUint16(o + 22, l.containerBits, true);
  if (fmtSize >= 18) v.setUint16(o + 24, fmtSize - 18, true);
  if (extensible) {
    v.setUint16(o + 26, validBits, true);
    v.setUint32(o + 28, channelMask >>> 0, true);
    v.setUint16(o + 32, l.tag, true);
    GUID_TAIL.forEach((b, i) => v.setUint8(o + 34 + i, b));
  }
  o += 8 + fmtSize;
  let factOffset = -1;
  if (hasFact) {
    ascii(v, o, "fact");
    v.setUint32(o + 4, 4, true);
    factOffset = o + 8;
    o += 12;
  }
  if (listSize > 0) {
    ascii(v, o, "LIST");
    v.setUint32(o + 4, listSize, true);
    ascii(v, o + 8, "INFO");
    ascii(v, o + 12, "ICMT");
    v.setUint32(o + 16, icmtSize, true);
    ascii(v, o + 20, text);
    o += 8 + listSize;
  }
  ascii(v, o, "data");
  return { bytes, factOffset, dataSizeOffset: o + 4 };
}

// ---- reading ------------------------------------------------------------------

/** A WAV file's samples and what they are. */
export interface WavData {
  /** VIRTIO_SND_PCM_FMT_* of `data`: U8, S16, S24_3, S32, FLOAT, FLOAT64, A_LAW or MU_LAW (the container). */
  readonly format: number;
  readonly channels: number;
  readonly rate: number;
  /** Bits that carry the value (the high ones of each container), from wValidBitsPerSample or wBitsPerSample. */
  readonly validBits: number;
  /** Whole frames of sample data (a view of the file's bytes). */
  readonly data: Uint8Array;
  readonly frames: number;
  /** wFormatTag of the fmt chunk (WAVE_FORMAT_EXTENSIBLE for extensible files). */
  readonly formatTag: number;
  /** The extensible speaker mask, or null when the file has none. */
  readonly channelMask: number | null;
  /** LIST/INFO ICMT text, when present. */
  readonly comment: string | null;
}

function bad(name: string, why: string): never {
  throw new VirtioSndError("ERR_INVALID_CONFIG", `${name}: not a usable WAV file: ${why}`);
}

/** Reads a WAV file (PCM 8/16/24/32, IEEE float 32/64, A-law, µ-law; plain or EXTENSIBLE). */
export function readWav(path: string, options: { fs?: WavFileSystem } = {}): WavData {
  let bytes: Uint8Array;
  try {
    bytes = (options.fs ?? NODE_FILE_SYSTEM).readFileSync(path);
  } catch (err) {
    return invalid(`${path}: cannot read WAV file: ${(err as Error).message}`, err);
  }
  return parseWav(bytes, path);
}

function isChunkId(b: Uint8Array, o: number): boolean {
  if (o + 4 > b.length) return false;
  for (let i = 0; i < 4; i++) {
    const c = b[o + i]!;
    if (c < 0x20 || c > 0x7e) return false;
  }
  return true;
}

/**
 * Parses WAV bytes. Unknown chunks are skipped; odd-sized chunks are followed
 * by their pad byte (and, as some writers forget it, by none when the next
 * chunk ID is found right after the data instead). A data chunk that claims
 * more bytes than the file has (a writer that died before fixing its header)
 * is taken up to the end of the file.
 */
export function parseWav(bytes: Uint8Array, name = "WAV data"): WavData {
  const v = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const id = (o: number): string =>
    String.fromCharCode(bytes[o]!, bytes[o + 1]!, bytes[o + 2]!, bytes[o + 3]!);
  if (bytes.length < 12) bad(name, "shorter than a RIFF header");
  const riffId = id(0);
  if (riffId === "RIFX" || riffId === "RF64" || riffId === "BW64")
    bad(name, `${riffId} files (big-endian or 64-bit RIFF) are not supported`);
  if (riffId !== "RIFF" || id(8) !== "WAVE") bad(name, "no RIFF/WAVE signature");
  const riffSize = v.getUint32(4, true);
  // Trust the RIFF size when it is plausible; writers that died early leave it short or zero.
  const end = riffSize >= 4 && 8 + riffSize <= bytes.length ? 8 + riffSize : bytes.length;

  let fmt: { off: number; size: number } | null = null;
  let data: { off: number; size: number } | null = null;
  let comment: string | null = null;
  let o = 12;
  while (o + 8 <= end) {
    const cid = id(o);
    const size = v.getUint32(o + 4, true);
    const body = o + 8;
    if (cid === "fmt " && fmt === null) fmt = { off: body, size };
    else if (cid === "data" && data === null) data = { off: body, size: Math.min(size, bytes.length - body) };
    else if (cid === "LIST" && size >= 4 && body + size <= bytes.length && id(body) === "INFO")
      comment ??= readInfoComment(bytes, v, body + 4, body + size);
    if (cid === "data" && body + size > end) break; // truncated: the data runs to the end
    let next = body + size;
    if (size % 2 === 1 && !(isChunkId(bytes, next + 1) || next + 1 >= end) && isChunkId(bytes, next)) {
      // A writer that left out the pad byte.
    } else if (size % 2 === 1) next++;
    o = next;
  }
  if (fmt === null) bad(name, "no fmt chunk");
  if (data === null) bad(name, "no data chunk");
  if (fmt.size < 16 || fmt.off + fmt.size > bytes.length)
    bad(name, `fmt chunk of ${fmt.size} bytes is too short`);

  const f = fmt.off;
  const formatTag = v.getUint16(f, true);
  const channels = v.getUint16(f + 2, true);
  const rate = v.getUint32(f + 4, true);
  const blockAlign = v.getUint16(f + 12, true);
  const bitsPerSample = v.getUint16(f + 14, true);
  if (channels === 0) bad(name, "0 channels");
  if (rate === 0) bad(name, "a rate of 0");
  if (blockAlign === 0 || blockAlign % channels !== 0)
    bad(name, `block align ${blockAlign} is not a whole number of bytes per channel (${channels} channels)`);
  const containerBits = (blockAlign / channels) * 8;
  let tag = formatTag;
  let validBits = bitsPerSample === 0 ? containerBits : bitsPerSample;
  let channelMask: number | null = null;
  if (formatTag === WAVE_FORMAT_EXTENSIBLE) {
    const cbSize = fmt.size >= 18 ? v.getUint16(f + 16, true) : 0;
    if (fmt.size < 40 || cbSize < 22) bad(name, "WAVE_FORMAT_EXTENSIBLE without its 22 extra bytes");
    const valid = v.getUint16(f + 18, true);
    if (valid !== 0) validBits = valid;
    channelMask = v.getUint32(f + 20, true);
    tag = v.getUint16(f + 24, true);
    const tailOk = v.getUint16(f + 26, true) === 0 && GUID_TAIL.every((b, i) => bytes[f + 24 + 2 + i] === b);
    if (!tailOk) bad(name, "unknown WAVE_FORMAT_EXTENSIBLE SubFormat GUID");
  }
  if (validBits > containerBits) bad(name, `${validBits} bits per sample in ${containerBits}-bit containers`);

  let format: number;
  if (tag === WAVE_FORMAT_PCM) {
    const pcm = new Map([
      [8, VIRTIO_SND_PCM_FMT_U8],
      [16, VIRTIO_SND_PCM_FMT_S16],
      [24, VIRTIO_SND_PCM_FMT_S24_3],
      [32, VIRTIO_SND_PCM_FMT_S32],
    ]).get(containerBits);
    if (pcm === undefined) bad(name, `${containerBits}-bit PCM containers are not supported`);
    format = pcm;
  } else if (tag === WAVE_FORMAT_IEEE_FLOAT) {
    if (containerBits === 32) format = VIRTIO_SND_PCM_FMT_FLOAT;
    else if (containerBits === 64) format = VIRTIO_SND_PCM_FMT_FLOAT64;
    else bad(name, `${containerBits}-bit IEEE float is not supported`);
  } else if (tag === WAVE_FORMAT_ALAW || tag === WAVE_FORMAT_MULAW) {
    if (containerBits !== 8) bad(name, `${containerBits}-bit G.711 samples`);
    format = tag === WAVE_FORMAT_ALAW ? VIRTIO_SND_PCM_FMT_A_LAW : VIRTIO_SND_PCM_FMT_MU_LAW;
  } else {
    bad(name, `unsupported encoding (format tag 0x${tag.toString(16).padStart(4, "0")})`);
  }
  const frames = Math.floor(data.size / blockAlign);
  return {
    format,
    channels,
    rate,
    validBits,
    data: bytes.subarray(data.off, data.off + frames * blockAlign),
    frames,
    formatTag,
    channelMask,
    comment,
  };
}

function readInfoComment(bytes: Uint8Array, v: DataView, start: number, end: number): string | null {
  let o = start;
  while (o + 8 <= end) {
    const size = v.getUint32(o + 4, true);
    const cid = String.fromCharCode(bytes[o]!, bytes[o + 1]!, bytes[o + 2]!, bytes[o + 3]!);
    if (cid === "ICMT" && o + 8 + size <= end) {
      let text = "";
      for (let i = o + 8; i < o + 8 + size && bytes[i] !== 0; i++) text += String.fromCharCode(bytes[i]!);
      return text;
    }
    o += 8 + size + (size % 2);
  }
  return null;
}
