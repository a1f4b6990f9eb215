/**
 * The configuration of control elements (virtio 1.3 §5.14.6.10, feature
 * VIRTIO_SND_F_CTLS): one config type per element type, the value the host
 * may give, and ready-made volume and mute controls with their ALSA names'
 * conventions.
 *
 * No Node built-ins: this is core code.
 */
import { VirtioSndError } from "../errors.js";
import {
  VIRTIO_SND_CTL_ACCESS_READ,
  VIRTIO_SND_CTL_ACCESS_TLV_READ,
  VIRTIO_SND_CTL_ACCESS_WRITE,
  VIRTIO_SND_CTL_ROLE_MUTE,
  VIRTIO_SND_CTL_ROLE_VOLUME,
} from "../spec/constants.js";
import type { CtlIec958, CtlTlv } from "../spec/structs.js";
import type { Direction } from "./config.js";

export type ControlType = "boolean" | "integer" | "integer64" | "enumerated" | "bytes" | "iec958";

interface ControlCommon {
  /** Printable ASCII, 1 to 43 characters (ctl_info.name holds 44 bytes with the terminator). */
  readonly name: string;
  /** Tells apart elements with the same name (default 0); (name, index) is unique. */
  readonly index?: number;
  /** VIRTIO_SND_CTL_ROLE_* (default UNDEFINED). */
  readonly role?: number;
  /**
   * The data flow the role is for; required with a defined role and not
   * allowed without one. The wire `role` is (role << 1) | direction (§5.14.6.10.1).
   */
  readonly direction?: Direction;
  /**
   * 1 << VIRTIO_SND_CTL_ACCESS_* bits. Default READ | WRITE, plus TLV_READ
   * when `tlv` is given. TLV_READ needs `tlv`.
   */
  readonly access?: number;
  /**
   * Metadata (§5.14.6.10.3), e.g. an ALSA dB scale (see dbScaleTlv): a TLV or
   * its wire bytes (le32 type, le32 length, value; length a multiple of 4, at
   * most 65536).
   */
  readonly tlv?: CtlTlv | Uint8Array;
  readonly hdaFnNid?: number;
}

/** 0 (off) or 1 (on) per member. */
export interface BooleanControlConfig extends ControlCommon {
  readonly type: "boolean";
  /** Members, 1 to 128 (default: the length of `value`, else 1). */
  readonly count?: number;
  /** Initial values (default all 0). */
  readonly value?: readonly (boolean | number)[];
}

/**
 * Signed 32-bit members in [min, max], on `step` from min. Note: Linux on a
 * 64-bit guest reads the le32 fields zero-extended, so negative ranges show
 * up there as large numbers; prefer non-negative ranges (with a dB TLV).
 */
export interface IntegerControlConfig extends ControlCommon {
  readonly type: "integer";
  /** 1 to 128 (default: the length of `value`, else 1). */
  readonly count?: number;
  readonly min: number;
  readonly max: number;
  /** 0 means any value in range (the spec's "variable size"). Default 1. */
  readonly step?: number;
  /** Initial values (default all `min`). */
  readonly value?: readonly number[];
}

/** Signed 64-bit members in [min, max], on `step` from min. */
export interface Integer64ControlConfig extends ControlCommon {
  readonly type: "integer64";
  /** 1 to 64 (default: the length of `value`, else 1). */
  readonly count?: number;
  readonly min: bigint;
  readonly max: bigint;
  /** 0n means any value in range. Default 1n. */
  readonly step?: bigint;
  readonly value?: readonly bigint[];
}

/** Members that are indexes into `items`. */
export interface EnumeratedControlConfig extends ControlCommon {
  readonly type: "enumerated";
  /** 1 to 128 (default: the length of `value`, else 1). */
  readonly count?: number;
  /** Option names: at least one, each printable ASCII of 1 to 63 characters. */
  readonly items: readonly string[];
  /** Initial item indexes (default all 0). */
  readonly value?: readonly number[];
}

/** Raw bytes. */
export interface BytesControlConfig extends ControlCommon {
  readonly type: "bytes";
  /** 1 to 512 (default: the length of `value`, else 1). */
  readonly count?: number;
  readonly value?: Uint8Array | readonly number[];
}

/** AES/IEC958 status bits (one virtio_snd_ctl_iec958). */
export interface Iec958ControlConfig extends ControlCommon {
  readonly type: "iec958";
  /** Always 1. */
  readonly count?: number;
  readonly value?: CtlIec958;
}

/** A control element the device offers (becomes a virtio_snd_ctl_info, §5.14.6.10.1). */
export type ControlConfig =
  | BooleanControlConfig
  | IntegerControlConfig
  | Integer64ControlConfig
  | EnumeratedControlConfig
  | BytesControlConfig
  | Iec958ControlConfig;

/** What the host may give as a value: one entry per member, or an IEC958 structure. */
export type ControlValueInput = readonly (number | boolean)[] | readonly bigint[] | Uint8Array | CtlIec958;

/** The ALSA TLV type of a dB scale (SNDRV_CTL_TLVT_DB_SCALE). */
export const ALSA_TLV_DB_SCALE = 1;
/** The "lowest step mutes" flag of an ALSA dB scale (SNDRV_CTL_TLVD_DB_SCALE_MUTE). */
export const ALSA_TLV_DB_SCALE_MUTE = 0x1_0000;

/**
 * An ALSA dB scale (SNDRV_CTL_TLVT_DB_SCALE): raw value 0 is `minDb`, each
 * step adds `stepDb`; both are rounded to 0.01 dB. With `mute`, the lowest
 * value means silence.
 */
export function dbScaleTlv(minDb: number, stepDb: number, mute = false): CtlTlv {
  const min = Math.round(minDb * 100);
  const step = Math.round(stepDb * 100);
  if (!Number.isFinite(min) || min < -0x8000_0000 || min > 0x7fff_ffff) {
    throw new VirtioSndError("ERR_INVALID_CONFIG", `dB scale: minimum ${minDb} dB is out of range`);
  }
  if (!Number.isFinite(step) || step < 0 || step > 0xffff) {
    throw new VirtioSndError("ERR_INVALID_CONFIG", "dB scale: step must be from 0 to 655.35 dB");
  }
  return { type: ALSA_TLV_DB_SCALE, value: [min >>> 0, step | (mute ? ALSA_TLV_DB_SCALE_MUTE : 0)] };
}

/** READ | WRITE: the access of an element the guest reads and sets. */
export const ACCESS_RW = (1 << VIRTIO_SND_CTL_ACCESS_READ) | (1 << VIRTIO_SND_CTL_ACCESS_WRITE);

export interface VolumeControlOptions {
  /** Members, one per channel (default 2). */
  readonly channels?: number;
  readonly index?: number;
  readonly hdaFnNid?: number;
  /**
   * A dB range instead of 0..100: raw values 0..(maxDb - minDb) / stepDb with
   * an ALSA dB scale TLV, which lets the guest's mixer show and map dB.
   */
  readonly db?: { readonly minDb: number; readonly maxDb: number; readonly stepDb: number };
  /** Initial raw value of every channel (default: 100, or the value nearest 0 dB). */
  readonly value?: number;
}

/**
 * A volume control: INTEGER, role VOLUME, one member per channel, 0..100
 * step 1 (or a dB range with a dB-scale TLV), readable and writable.
 */
export function volumeControl(
  name: string,
  direction: Direction,
  options: VolumeControlOptions = {},
): IntegerControlConfig {
  const channels = options.channels ?? 2;
  let max = 100;
  let initial = 100;
  let tlv: CtlTlv | undefined;
  const db = options.db;
  if (db !== undefined) {
    const steps = (db.maxDb - db.minDb) / db.stepDb;
    if (!(db.stepDb > 0) || !Number.isInteger(Math.round(steps * 1e6) / 1e6) || steps < 1) {
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `${name}: the dB range must be a whole, positive number of steps`,
      );
    }
    max = Math.round(steps);
    initial = Math.min(max, Math.max(0, Math.round(-db.minDb / db.stepDb)));
    tlv = dbScaleTlv(db.minDb, db.stepDb);
  }
  const value = options.value ?? initial;
  return {
    type: "integer",
    name,
    role: VIRTIO_SND_CTL_ROLE_VOLUME,
    direction,
    count: channels,
    min: 0,
    max,
    step: 1,
    value: new Array<number>(channels).fill(value),
    access: ACCESS_RW | (tlv !== undefined ? 1 << VIRTIO_SND_CTL_ACCESS_TLV_READ : 0),
    ...(tlv !== undefined ? { tlv } : {}),
    ...(options.index !== undefined ? { index: options.index } : {}),
    ...(options.hdaFnNid !== undefined ? { hdaFnNid: options.hdaFnNid } : {}),
  };
}

export interface MuteControlOptions {
  /** Members, one per channel (default 2). */
  readonly channels?: number;
  readonly index?: number;
  readonly hdaFnNid?: number;
  /** Initial value of every channel (default true: sound on). */
  readonly value?: boolean;
}

/**
 * A mute switch: BOOLEAN, role MUTE, one member per channel. Values follow
 * ALSA's switch convention, which is what the guest's mixer applies to a
 * "... Switch" name: 1 = on (sound passes), 0 = muted. Initially on.
 */
export function muteControl(
  name: string,
  direction: Direction,
  options: MuteControlOptions = {},
): BooleanControlConfig {
  const channels = options.channels ?? 2;
  return {
    type: "boolean",
    name,
    role: VIRTIO_SND_CTL_ROLE_MUTE,
    direction,
    count: channels,
    value: new Array<boolean>(channels).fill(options.value ?? true),
    access: ACCESS_RW,
    ...(options.index !== undefined ? { index: options.index } : {}),
    ...(options.hdaFnNid !== undefined ? { hdaFnNid: options.hdaFnNid } : {}),
  };
}
