import { VirtioSndError } from "../errors.js";
import {
  PCM_RATE_HZ,
  VIRTIO_SND_CHMAP_FC,
  VIRTIO_SND_CHMAP_FL,
  VIRTIO_SND_CHMAP_FR,
  VIRTIO_SND_CHMAP_LFE,
  VIRTIO_SND_CHMAP_MAX_SIZE,
  VIRTIO_SND_CHMAP_MONO,
  VIRTIO_SND_CHMAP_RL,
  VIRTIO_SND_CHMAP_RR,
  VIRTIO_SND_CHMAP_SL,
  VIRTIO_SND_CHMAP_SR,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_PCM_FMT_COUNT,
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_S8,
  VIRTIO_SND_PCM_FMT_U16,
  VIRTIO_SND_PCM_FMT_U24,
  VIRTIO_SND_PCM_FMT_U24_3,
  VIRTIO_SND_PCM_FMT_U32,
  VIRTIO_SND_PCM_FMT_U8,
  VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_PCM_F_MSG_POLLING,
} from "../spec/constants.js";
import type { ControlConfig } from "./controls.js";

export type Direction = "output" | "input";

/** A PCM stream the device offers (becomes a virtio_snd_pcm_info, §5.14.6.6.2). */
export interface StreamConfig {
  readonly direction: Direction;
  /** VIRTIO_SND_PCM_FMT_* values. Default: the linear formats from 8 to 64 bits. */
  readonly formats?: readonly number[];
  /** Frame rates in Hz, each one of the spec's sixteen. Default: 5512 to 192000. */
  readonly rates?: readonly number[];
  readonly channelsMin?: number;
  readonly channelsMax?: number;
  /**
   * VIRTIO_SND_PCM_F_* bits offered. Default: EVT_XRUNS. MSG_POLLING and
   * EVT_SHMEM_PERIODS may be offered too; the SHMEM transports are placeholders
   * in the spec and cannot be.
   */
  readonly features?: number;
  readonly hdaFnNid?: number;
}

/** A jack (becomes a virtio_snd_jack_info, §5.14.6.4.1). */
export interface JackConfig {
  readonly hdaFnNid?: number;
  /** HDA pin default configuration (HDA §7.3.3.31). */
  readonly hdaRegDefconf?: number;
  /** HDA pin capabilities (HDA §7.3.4.9). */
  readonly hdaRegCaps?: number;
  readonly connected?: boolean;
  /** Offer VIRTIO_SND_JACK_F_REMAP. */
  readonly remap?: boolean;
}

/** A channel map (becomes a virtio_snd_chmap_info, §5.14.6.9.1). */
export interface ChmapConfig {
  readonly direction: Direction;
  /** VIRTIO_SND_CHMAP_* per channel, at most 18. */
  readonly positions: readonly number[];
  readonly hdaFnNid?: number;
}

export interface SoundConfig {
  readonly streams?: readonly StreamConfig[];
  readonly jacks?: readonly JackConfig[];
  readonly chmaps?: readonly ChmapConfig[];
  /** Control elements (§5.14.6.10); VIRTIO_SND_F_CTLS is offered only when there are some. */
  readonly controls?: readonly ControlConfig[];
}

/** Channel maps from mono to 7.1, in ALSA's order for each layout. */
export const CHMAP_PRESETS = {
  mono: [VIRTIO_SND_CHMAP_MONO],
  stereo: [VIRTIO_SND_CHMAP_FL, VIRTIO_SND_CHMAP_FR],
  "2.1": [VIRTIO_SND_CHMAP_FL, VIRTIO_SND_CHMAP_FR, VIRTIO_SND_CHMAP_LFE],
  quad: [VIRTIO_SND_CHMAP_FL, VIRTIO_SND_CHMAP_FR, VIRTIO_SND_CHMAP_RL, VIRTIO_SND_CHMAP_RR],
  "5.0": [
    VIRTIO_SND_CHMAP_FL,
    VIRTIO_SND_CHMAP_FR,
    VIRTIO_SND_CHMAP_RL,
    VIRTIO_SND_CHMAP_RR,
    VIRTIO_SND_CHMAP_FC,
  ],
  "5.1": [
    VIRTIO_SND_CHMAP_FL,
    VIRTIO_SND_CHMAP_FR,
    VIRTIO_SND_CHMAP_RL,
    VIRTIO_SND_CHMAP_RR,
    VIRTIO_SND_CHMAP_FC,
    VIRTIO_SND_CHMAP_LFE,
  ],
  "7.1": [
    VIRTIO_SND_CHMAP_FL,
    VIRTIO_SND_CHMAP_FR,
    VIRTIO_SND_CHMAP_RL,
    VIRTIO_SND_CHMAP_RR,
    VIRTIO_SND_CHMAP_FC,
    VIRTIO_SND_CHMAP_LFE,
    VIRTIO_SND_CHMAP_SL,
    VIRTIO_SND_CHMAP_SR,
  ],
} as const satisfies Record<string, readonly number[]>;

export const DEFAULT_FORMATS: readonly number[] = [
  VIRTIO_SND_PCM_FMT_S8,
  VIRTIO_SND_PCM_FMT_U8,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_U16,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_U24_3,
  VIRTIO_SND_PCM_FMT_S24,
  VIRTIO_SND_PCM_FMT_U24,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_U32,
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
];

/** Every rate the spec names up to 192 kHz (Linux ignores higher ones). */
export const DEFAULT_RATES: readonly number[] = PCM_RATE_HZ.filter((hz) => hz <= 192000).sort(
  (a, b) => a - b,
);

/** HDA default configurations for the default jacks: a headphone out and a mic in, both jacks, connected. */
const DEFCONF_HEADPHONE = 0x0221_1010; // jack, external front; headphone; 1/8" jack; black; assoc 1 seq 0
const DEFCONF_MIC = 0x02a1_1020; // jack, external front; mic in; 1/8" jack; black; assoc 2 seq 0

export const DEFAULT_CONFIG: SoundConfig = {
  streams: [{ direction: "output" }, { direction: "input" }],
  jacks: [
    { hdaRegDefconf: DEFCONF_HEADPHONE, connected: true, remap: true },
    { hdaRegDefconf: DEFCONF_MIC, connected: true, remap: true },
  ],
  chmaps: [
    { direction: "output", positions: CHMAP_PRESETS.mono },
    { direction: "output", positions: CHMAP_PRESETS.stereo },
    { direction: "output", positions: CHMAP_PRESETS["5.1"] },
    { direction: "output", positions: CHMAP_PRESETS["7.1"] },
    { direction: "input", positions: CHMAP_PRESETS.mono },
    { direction: "input", positions: CHMAP_PRESETS.stereo },
  ],
};

/** A stream's offer, checked and in wire form. */
export interface StreamInfo {
  readonly direction: number;
  readonly formats: bigint;
  readonly rates: bigint;
  readonly channelsMin: number;
  readonly channelsMax: number;
  readonly features: number;
  readonly hdaFnNid: number;
}

export interface JackState {
  readonly hdaFnNid: number;
  hdaRegDefconf: number;
  readonly hdaRegCaps: number;
  connected: boolean;
  readonly features: number;
}

export interface ChmapInfo {
  readonly direction: number;
  readonly positions: readonly number[];
  readonly hdaFnNid: number;
}

const OFFERABLE_PCM_FEATURES =
  (1 << VIRTIO_SND_PCM_F_MSG_POLLING) |
  (1 << VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS) |
  (1 << VIRTIO_SND_PCM_F_EVT_XRUNS);

function invalid(message: string): never {
  throw new VirtioSndError("ERR_INVALID_CONFIG", message);
}

function dirValue(d: Direction, where: string): number {
  if (d === "output") return VIRTIO_SND_D_OUTPUT;
  if (d === "input") return VIRTIO_SND_D_INPUT;
  return invalid(`${where}.direction must be "output" or "input"`);
}

function u8(v: number, where: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 255) invalid(`${where} must be an integer from 0 to 255`);
  return v;
}

function u32(v: number, where: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) invalid(`${where} must be a 32-bit unsigned integer`);
  return v;
}

export function streamInfo(s: StreamConfig, i: number): StreamInfo {
  const where = `streams[${i}]`;
  let formats = 0n;
  for (const f of s.formats ?? DEFAULT_FORMATS) {
    if (!Number.isInteger(f) || f < 0 || f >= VIRTIO_SND_PCM_FMT_COUNT)
      invalid(`${where}.formats: unknown format ${f}`);
    formats |= 1n << BigInt(f);
  }
  let rates = 0n;
  for (const hz of s.rates ?? DEFAULT_RATES) {
    const idx = PCM_RATE_HZ.indexOf(hz);
    if (idx < 0) invalid(`${where}.rates: ${hz} Hz is not a rate the spec names`);
    rates |= 1n << BigInt(idx);
  }
  if (formats === 0n) invalid(`${where}.formats: none given`);
  if (rates === 0n) invalid(`${where}.rates: none given`);
  const channelsMin = u8(s.channelsMin ?? 1, `${where}.channelsMin`);
  const channelsMax = u8(s.channelsMax ?? 8, `${where}.channelsMax`);
  // Linux rejects a stream with channels_min 0 or min > max (virtio_pcm.c).
  if (channelsMin < 1 || channelsMin > channelsMax) invalid(`${where}: need 1 <= channelsMin <= channelsMax`);
  const features = u32(s.features ?? 1 << VIRTIO_SND_PCM_F_EVT_XRUNS, `${where}.features`);
  if ((features & ~OFFERABLE_PCM_FEATURES) !== 0) {
    invalid(`${where}.features: only MSG_POLLING, EVT_SHMEM_PERIODS and EVT_XRUNS can be offered`);
  }
  return {
    direction: dirValue(s.direction, where),
    formats,
    rates,
    channelsMin,
    channelsMax,
    features,
    hdaFnNid: u32(s.hdaFnNid ?? 0, `${where}.hdaFnNid`),
  };
}

export function jackState(j: JackConfig, i: number): JackState {
  const where = `jacks[${i}]`;
  return {
    hdaFnNid: u32(j.hdaFnNid ?? 0, `${where}.hdaFnNid`),
    hdaRegDefconf: u32(j.hdaRegDefconf ?? 0, `${where}.hdaRegDefconf`),
    hdaRegCaps: u32(j.hdaRegCaps ?? 0, `${where}.hdaRegCaps`),
    connected: j.connected ?? true,
    features: j.remap ? 1 : 0,
  };
}

export function chmapInfo(c: ChmapConfig, i: number): ChmapInfo {
  const where = `chmaps[${i}]`;
  if (c.positions.length < 1 || c.positions.length > VIRTIO_SND_CHMAP_MAX_SIZE) {
    invalid(`${where}.positions: need 1 to ${VIRTIO_SND_CHMAP_MAX_SIZE}, got ${c.positions.length}`);
  }
  for (const p of c.positions) {
    if (!Number.isInteger(p) || p < 0 || p > 36) invalid(`${where}.positions: unknown channel position ${p}`);
  }
  return {
    direction: dirValue(c.direction, where),
    positions: [...c.positions],
    hdaFnNid: u32(c.hdaFnNid ?? 0, `${where}.hdaFnNid`),
  };
}
