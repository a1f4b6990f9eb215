/**
 * The sample layout of every linear and G.711 PCM format (§5.14.6.6.2): how
 * many bytes a sample takes, its significant bits and sign, and how its value
 * is stored. Shared by conversion and gain. Core code: no Node built-ins.
 */
import {
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

export const KIND_INT = 0;
export const KIND_FLOAT32 = 1;
export const KIND_FLOAT64 = 2;
export const KIND_MU_LAW = 3;
export const KIND_A_LAW = 4;

export interface SampleFormat {
  readonly kind: number;
  /** Bytes in memory. */
  readonly bytes: number;
  /** Significant bits (16 for the G.711 formats: their linear value). */
  readonly bits: number;
  readonly signed: boolean;
}

function int(bytes: number, bits: number, signed: boolean): SampleFormat {
  return { kind: KIND_INT, bytes, bits, signed };
}

/** VIRTIO_SND_PCM_FMT_* to its sample layout, for the formats with linear samples. */
export const SAMPLE_FORMATS: ReadonlyMap<number, SampleFormat> = new Map([
  [VIRTIO_SND_PCM_FMT_MU_LAW, { kind: KIND_MU_LAW, bytes: 1, bits: 16, signed: true }],
  [VIRTIO_SND_PCM_FMT_A_LAW, { kind: KIND_A_LAW, bytes: 1, bits: 16, signed: true }],
  [VIRTIO_SND_PCM_FMT_S8, int(1, 8, true)],
  [VIRTIO_SND_PCM_FMT_U8, int(1, 8, false)],
  [VIRTIO_SND_PCM_FMT_S16, int(2, 16, true)],
  [VIRTIO_SND_PCM_FMT_U16, int(2, 16, false)],
  [VIRTIO_SND_PCM_FMT_S18_3, int(3, 18, true)],
  [VIRTIO_SND_PCM_FMT_U18_3, int(3, 18, false)],
  [VIRTIO_SND_PCM_FMT_S20_3, int(3, 20, true)],
  [VIRTIO_SND_PCM_FMT_U20_3, int(3, 20, false)],
  [VIRTIO_SND_PCM_FMT_S24_3, int(3, 24, true)],
  [VIRTIO_SND_PCM_FMT_U24_3, int(3, 24, false)],
  [VIRTIO_SND_PCM_FMT_S20, int(4, 20, true)],
  [VIRTIO_SND_PCM_FMT_U20, int(4, 20, false)],
  [VIRTIO_SND_PCM_FMT_S24, int(4, 24, true)],
  [VIRTIO_SND_PCM_FMT_U24, int(4, 24, false)],
  [VIRTIO_SND_PCM_FMT_S32, int(4, 32, true)],
  [VIRTIO_SND_PCM_FMT_U32, int(4, 32, false)],
  [VIRTIO_SND_PCM_FMT_FLOAT, { kind: KIND_FLOAT32, bytes: 4, bits: 32, signed: true }],
  [VIRTIO_SND_PCM_FMT_FLOAT64, { kind: KIND_FLOAT64, bytes: 8, bits: 64, signed: true }],
]);
