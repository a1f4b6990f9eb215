import {
  PCM_FORMAT_INFO,
  VIRTIO_SND_PCM_FMT_A_LAW,
  VIRTIO_SND_PCM_FMT_DSD_U16,
  VIRTIO_SND_PCM_FMT_DSD_U32,
  VIRTIO_SND_PCM_FMT_DSD_U8,
  VIRTIO_SND_PCM_FMT_IMA_ADPCM,
  VIRTIO_SND_PCM_FMT_MU_LAW,
  VIRTIO_SND_PCM_FMT_U16,
  VIRTIO_SND_PCM_FMT_U18_3,
  VIRTIO_SND_PCM_FMT_U20,
  VIRTIO_SND_PCM_FMT_U20_3,
  VIRTIO_SND_PCM_FMT_U24,
  VIRTIO_SND_PCM_FMT_U24_3,
  VIRTIO_SND_PCM_FMT_U32,
  VIRTIO_SND_PCM_FMT_U8,
} from "../spec/constants.js";

/** What a stream was set to by SET_PARAMS, in host units. */
export interface PcmParams {
  /** VIRTIO_SND_D_OUTPUT or VIRTIO_SND_D_INPUT. */
  readonly direction: number;
  /** VIRTIO_SND_PCM_FMT_* */
  readonly format: number;
  /** Frames per second. */
  readonly rate: number;
  readonly channels: number;
  readonly bufferBytes: number;
  readonly periodBytes: number;
  /** VIRTIO_SND_PCM_F_* bits the driver selected. */
  readonly features: number;
}

/**
 * Bytes per frame. IMA ADPCM packs two 4-bit samples in a byte, so a mono
 * ADPCM frame is half a byte: callers that need whole bytes use frameBits.
 */
export function frameBits(format: number, channels: number): number {
  const info = PCM_FORMAT_INFO[format];
  return info === undefined ? 0 : info.physicalBits * channels;
}

export function frameBytes(format: number, channels: number): number {
  return frameBits(format, channels) / 8;
}

export function bytesPerSecond(p: Pick<PcmParams, "format" | "channels" | "rate">): number {
  return (frameBits(p.format, p.channels) * p.rate) / 8;
}

/** Whole frames in `bytes` (rounded down). */
export function bytesToFrames(p: Pick<PcmParams, "format" | "channels">, bytes: number): number {
  const bits = frameBits(p.format, p.channels);
  return bits === 0 ? 0 : Math.floor((bytes * 8) / bits);
}

export function framesToBytes(p: Pick<PcmParams, "format" | "channels">, frames: number): number {
  return (frames * frameBits(p.format, p.channels)) / 8;
}

/**
 * The byte pattern of silence, repeating every `physicalBits / 8` bytes
 * (little-endian). Unsigned formats are centred on half scale; µ-law and A-law
 * have their own codes for zero; DSD silence is the 0x69 idle pattern.
 */
export function silencePattern(format: number): Uint8Array {
  const info = PCM_FORMAT_INFO[format];
  const width = info === undefined ? 1 : Math.max(1, info.physicalBits / 8);
  const out = new Uint8Array(width);
  switch (format) {
    case VIRTIO_SND_PCM_FMT_U8:
      out[0] = 0x80;
      break;
    case VIRTIO_SND_PCM_FMT_U16:
    case VIRTIO_SND_PCM_FMT_U32:
      out[width - 1] = 0x80;
      break;
    case VIRTIO_SND_PCM_FMT_U18_3:
      out[2] = 0x02; // 2^17 in three bytes
      break;
    case VIRTIO_SND_PCM_FMT_U20_3:
      out[2] = 0x08; // 2^19
      break;
    case VIRTIO_SND_PCM_FMT_U24_3:
      out[2] = 0x80; // 2^23
      break;
    case VIRTIO_SND_PCM_FMT_U20:
      out[2] = 0x08; // 2^19 in the low 20 bits of 32
      break;
    case VIRTIO_SND_PCM_FMT_U24:
      out[2] = 0x80; // 2^23 in the low 24 bits of 32
      break;
    case VIRTIO_SND_PCM_FMT_MU_LAW:
      out[0] = 0xff;
      break;
    case VIRTIO_SND_PCM_FMT_A_LAW:
      out[0] = 0xd5;
      break;
    case VIRTIO_SND_PCM_FMT_DSD_U8:
    case VIRTIO_SND_PCM_FMT_DSD_U16:
    case VIRTIO_SND_PCM_FMT_DSD_U32:
      out.fill(0x69);
      break;
    case VIRTIO_SND_PCM_FMT_IMA_ADPCM:
    default:
      break;
  }
  return out;
}

/** Fills dest[offset, offset+length) with the format's silence, phase-aligned to `phase` bytes into the stream. */
export function fillSilence(
  dest: Uint8Array,
  offset: number,
  length: number,
  pattern: Uint8Array,
  phase = 0,
): void {
  const w = pattern.length;
  let uniform = true;
  for (let i = 1; i < w; i++) if (pattern[i] !== pattern[0]) uniform = false;
  if (uniform) {
    dest.fill(pattern[0]!, offset, offset + length);
    return;
  }
  for (let i = 0; i < length; i++) dest[offset + i] = pattern[(phase + i) % w]!;
}
