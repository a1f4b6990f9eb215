/**
 * Control elements (virtio 1.3 §5.14.6.10, feature VIRTIO_SND_F_CTLS): the
 * mixer the device offers the guest. Linux turns each element into an ALSA
 * mixer control of the same name (sound/virtio/virtio_kctl.c), so ALSA names
 * such as "Master Playback Volume" or "Capture Switch" give them their meaning
 * in the guest.
 *
 * This module holds the model: the configuration and its checks (the device
 * requirements of §5.14.6.10.1), the current values in wire form, and what
 * the control queue needs (info records, enum items, value and metadata
 * reads and writes), each answering with a virtio status. The host side reads
 * and sets elements through the same object; a change from either side is
 * announced to the other (a CTL_NOTIFY event for the guest, `changed` for the
 * embedder).
 *
 * No Node built-ins: this is core code.
 */
import { VirtioSndError } from "../errors.js";
import {
  VIRTIO_SND_CTL_ACCESS_INACTIVE,
  VIRTIO_SND_CTL_ACCESS_READ,
  VIRTIO_SND_CTL_ACCESS_TLV_COMMAND,
  VIRTIO_SND_CTL_ACCESS_TLV_READ,
  VIRTIO_SND_CTL_ACCESS_TLV_WRITE,
  VIRTIO_SND_CTL_ACCESS_WRITE,
  VIRTIO_SND_CTL_EVT_MASK_INFO,
  VIRTIO_SND_CTL_EVT_MASK_TLV,
  VIRTIO_SND_CTL_EVT_MASK_VALUE,
  VIRTIO_SND_CTL_MAX_COUNT,
  VIRTIO_SND_CTL_ROLE_GAIN,
  VIRTIO_SND_CTL_ROLE_MUTE,
  VIRTIO_SND_CTL_ROLE_UNDEFINED,
  VIRTIO_SND_CTL_ROLE_VOLUME,
  VIRTIO_SND_CTL_TYPE_BOOLEAN,
  VIRTIO_SND_CTL_TYPE_BYTES,
  VIRTIO_SND_CTL_TYPE_ENUMERATED,
  VIRTIO_SND_CTL_TYPE_IEC958,
  VIRTIO_SND_CTL_TYPE_INTEGER,
  VIRTIO_SND_CTL_TYPE_INTEGER64,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
} from "../spec/constants.js";
import {
  type CtlIec958,
  type CtlInfo,
  type CtlInfoLayout,
  type CtlInfoValue,
  type CtlTlv,
  type CtlValue,
  VIRTIO_SND_CTL_ENUM_ITEM_SIZE,
  VIRTIO_SND_CTL_IEC958_SIZE,
  VIRTIO_SND_CTL_NAME_SIZE,
  VIRTIO_SND_CTL_TLV_HEADER_SIZE,
  VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE,
  VIRTIO_SND_CTL_VALUE_SIZE,
  decodeCtlIec958,
  encodeCtlEnumItem,
  encodeCtlIec958,
  encodeCtlInfo,
} from "../spec/structs.js";
import type { Direction } from "./config.js";

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

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

const ACCESS_RW = (1 << VIRTIO_SND_CTL_ACCESS_READ) | (1 << VIRTIO_SND_CTL_ACCESS_WRITE);

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

// ---------------------------------------------------------------------------
// The model
// ---------------------------------------------------------------------------

/** A control element as the host sees it (a snapshot: changing it changes nothing). */
export interface ControlElement {
  readonly id: number;
  readonly name: string;
  readonly index: number;
  readonly type: ControlType;
  /** The record CTL_INFO answers with (le32 fields as the driver reads them: unsigned). */
  readonly info: CtlInfo;
  /** ENUMERATED: the option names; otherwise empty. */
  readonly items: readonly string[];
  /** The current value; INTEGER and INTEGER64 members are signed. */
  readonly value: CtlValue;
  /** The metadata in wire form (type, length, value), or null. */
  readonly tlv: Uint8Array | null;
}

/** The guest changed an element (CTL_WRITE, CTL_TLV_WRITE) or sent a metadata command (CTL_TLV_COMMAND). */
export type ControlChange =
  | { readonly kind: "value"; readonly controlId: number; readonly control: ControlElement }
  | { readonly kind: "tlv"; readonly controlId: number; readonly control: ControlElement }
  | {
      readonly kind: "tlv-command";
      readonly controlId: number;
      readonly control: ControlElement;
      /** The command TLV in wire form. */
      readonly tlv: Uint8Array;
    };

/** How the model reaches the device: events for the guest and the embedder's callback. */
export interface ControlHooks {
  /** Tell the driver (VIRTIO_SND_EVT_CTL_NOTIFY) that element `controlId` changed; `mask` is 1 << EVT_MASK_*. */
  notify(controlId: number, mask: number): void;
  /** Tell the embedder about a guest change. Throwing refuses it: the change is undone, the guest gets IO_ERR. */
  changed(change: ControlChange): void;
}

const TYPE_CODES: Readonly<Record<ControlType, number>> = {
  boolean: VIRTIO_SND_CTL_TYPE_BOOLEAN,
  integer: VIRTIO_SND_CTL_TYPE_INTEGER,
  integer64: VIRTIO_SND_CTL_TYPE_INTEGER64,
  enumerated: VIRTIO_SND_CTL_TYPE_ENUMERATED,
  bytes: VIRTIO_SND_CTL_TYPE_BYTES,
  iec958: VIRTIO_SND_CTL_TYPE_IEC958,
};

const ACCESS_ALL = (1 << (VIRTIO_SND_CTL_ACCESS_TLV_COMMAND + 1)) - 1;
const ROLES = [
  VIRTIO_SND_CTL_ROLE_UNDEFINED,
  VIRTIO_SND_CTL_ROLE_VOLUME,
  VIRTIO_SND_CTL_ROLE_MUTE,
  VIRTIO_SND_CTL_ROLE_GAIN,
];
/** control_id in virtio_snd_ctl_event is le16: more elements could not be notified. */
const MAX_CONTROLS = 0x1_0000;
const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
/** Offset of the unused `pad` byte in virtio_snd_ctl_iec958. */
const IEC958_PAD = 171;

/** One element: its fixed description, its access bits, its value in wire form, its metadata. */
class Element {
  access: number;
  /** virtio_snd_ctl_value as the driver reads it; bytes past the members are 0. */
  readonly value = new Uint8Array(VIRTIO_SND_CTL_VALUE_SIZE);
  readonly valueView = new DataView(this.value.buffer);
  tlv: Uint8Array | null;

  constructor(
    readonly id: number,
    readonly kind: ControlType,
    readonly type: number,
    readonly name: string,
    readonly index: number,
    readonly role: number,
    readonly hdaFnNid: number,
    readonly count: number,
    access: number,
    /** INTEGER (BOOLEAN: 0, 1, 1): the range; unused otherwise. */
    readonly min: number,
    readonly max: number,
    readonly step: number,
    /** INTEGER64: the range. */
    readonly min64: bigint,
    readonly max64: bigint,
    readonly step64: bigint,
    readonly items: readonly string[],
    tlv: Uint8Array | null,
  ) {
    this.access = access;
    this.tlv = tlv;
  }

  /** Bytes of virtio_snd_ctl_value the members take. */
  get valueBytes(): number {
    switch (this.type) {
      case VIRTIO_SND_CTL_TYPE_INTEGER64:
        return 8 * this.count;
      case VIRTIO_SND_CTL_TYPE_BYTES:
        return this.count;
      case VIRTIO_SND_CTL_TYPE_IEC958:
        return VIRTIO_SND_CTL_IEC958_SIZE;
      default:
        return 4 * this.count;
    }
  }

  can(access: number): boolean {
    return (this.access & (1 << access)) !== 0;
  }
}

function invalid(message: string): never {
  throw new VirtioSndError("ERR_INVALID_CONFIG", message);
}

function badState(message: string): never {
  throw new VirtioSndError("ERR_INVALID_STATE", message);
}

function printable(s: string, maxLength: number, where: string): string {
  if (typeof s !== "string" || s.length < 1 || s.length > maxLength || !/^[\x20-\x7e]+$/.test(s)) {
    invalid(`${where} must be printable ASCII of 1 to ${maxLength} characters`);
  }
  return s;
}

function u32(v: number, where: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) invalid(`${where} must be a 32-bit unsigned integer`);
  return v;
}

function int32(v: number, where: string): number {
  if (!Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX)
    invalid(`${where} must be a 32-bit signed integer`);
  return v;
}

function int64(v: bigint, where: string): bigint {
  if (typeof v !== "bigint" || v < INT64_MIN || v > INT64_MAX)
    invalid(`${where} must be a 64-bit signed bigint`);
  return v;
}

/** A TLV in wire form, checked: 8-byte header, then `length` bytes, a multiple of 4 and at most 65536. */
function tlvBytes(tlv: CtlTlv | Uint8Array, where: string, fail: (message: string) => never): Uint8Array {
  if (tlv instanceof Uint8Array) {
    if (tlv.length < VIRTIO_SND_CTL_TLV_HEADER_SIZE) fail(`${where}: a TLV has an 8-byte header`);
    const length = new DataView(tlv.buffer, tlv.byteOffset, tlv.byteLength).getUint32(4, true);
    if (length !== tlv.length - VIRTIO_SND_CTL_TLV_HEADER_SIZE) {
      fail(`${where}: the TLV length field (${length}) does not match its ${tlv.length - 8} value bytes`);
    }
    if (length % 4 !== 0 || length > VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE) {
      fail(
        `${where}: TLV value length must be a multiple of 4, at most ${VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE}`,
      );
    }
    return tlv.slice();
  }
  const words = tlv.value;
  if (!Number.isInteger(tlv.type) || tlv.type < 0 || tlv.type > 0xffff_ffff) {
    fail(`${where}: TLV type must be a 32-bit unsigned integer`);
  }
  if (words.length * 4 > VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE) {
    fail(`${where}: TLV value is larger than ${VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE} bytes`);
  }
  const out = new Uint8Array(VIRTIO_SND_CTL_TLV_HEADER_SIZE + 4 * words.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, tlv.type, true);
  dv.setUint32(4, 4 * words.length, true);
  words.forEach((w, i) => {
    if (!Number.isInteger(w) || w < 0 || w > 0xffff_ffff) fail(`${where}: TLV words are 32-bit unsigned`);
    dv.setUint32(VIRTIO_SND_CTL_TLV_HEADER_SIZE + 4 * i, w, true);
  });
  return out;
}

function buildElement(c: ControlConfig, id: number): Element {
  const where = `controls[${id}]`;
  if (typeof c !== "object" || c === null) invalid(`${where} must be an object`);
  const kind = c.type;
  const type = Object.prototype.hasOwnProperty.call(TYPE_CODES, kind) ? TYPE_CODES[kind] : undefined;
  if (type === undefined) invalid(`${where}: unknown type ${String(kind)}`);
  const name = printable(c.name, VIRTIO_SND_CTL_NAME_SIZE - 1, `${where}.name`);
  const index = u32(c.index ?? 0, `${where}.index`);
  const hdaFnNid = u32(c.hdaFnNid ?? 0, `${where}.hdaFnNid`);

  const role = c.role ?? VIRTIO_SND_CTL_ROLE_UNDEFINED;
  if (!ROLES.includes(role)) invalid(`${where}: unknown role ${role}`);
  let wireRole = 0;
  if (role === VIRTIO_SND_CTL_ROLE_UNDEFINED) {
    if (c.direction !== undefined) invalid(`${where}: a direction needs a role`);
  } else {
    if (c.direction === "output") wireRole = (role << 1) | VIRTIO_SND_D_OUTPUT;
    else if (c.direction === "input") wireRole = (role << 1) | VIRTIO_SND_D_INPUT;
    else invalid(`${where}: a role needs a direction, "output" or "input"`);
  }

  const tlv = c.tlv === undefined ? null : tlvBytes(c.tlv, `${where}.tlv`, invalid);
  const access = c.access ?? ACCESS_RW | (tlv !== null ? 1 << VIRTIO_SND_CTL_ACCESS_TLV_READ : 0);
  if (!Number.isInteger(access) || access < 0 || (access & ~ACCESS_ALL) !== 0) {
    invalid(`${where}: access has bits no VIRTIO_SND_CTL_ACCESS_* defines`);
  }
  if ((access & (1 << VIRTIO_SND_CTL_ACCESS_TLV_READ)) !== 0 && tlv === null) {
    invalid(`${where}: TLV_READ access needs a tlv`);
  }

  const valueLength = c.value === undefined ? undefined : "length" in c.value ? c.value.length : undefined;
  const count = c.type === "iec958" ? (c.count ?? 1) : (c.count ?? valueLength ?? 1);
  const maxCount = VIRTIO_SND_CTL_MAX_COUNT[type]!;
  if (!Number.isInteger(count) || count < 1 || count > maxCount) {
    invalid(`${where}: count must be from 1 to ${maxCount} for a ${kind} element`);
  }

  let min = 0;
  let max = 0;
  let step = 0;
  let min64 = 0n;
  let max64 = 0n;
  let step64 = 0n;
  let items: readonly string[] = [];
  switch (c.type) {
    case "boolean":
      max = 1;
      step = 1;
      break;
    case "integer":
      min = int32(c.min, `${where}.min`);
      max = int32(c.max, `${where}.max`);
      step = c.step ?? 1;
      if (!Number.isInteger(step) || step < 0 || step > INT32_MAX) invalid(`${where}.step must be 0 or more`);
      if (min > max) invalid(`${where}: min is above max`);
      break;
    case "integer64":
      min64 = int64(c.min, `${where}.min`);
      max64 = int64(c.max, `${where}.max`);
      step64 = c.step ?? 1n;
      if (typeof step64 !== "bigint" || step64 < 0n || step64 > INT64_MAX) {
        invalid(`${where}.step must be a bigint, 0 or more`);
      }
      if (min64 > max64) invalid(`${where}: min is above max`);
      break;
    case "enumerated":
      if (!Array.isArray(c.items) || c.items.length < 1)
        invalid(`${where}: an enumerated element needs items`);
      items = c.items.map((s, i) => printable(s, VIRTIO_SND_CTL_ENUM_ITEM_SIZE - 1, `${where}.items[${i}]`));
      break;
    default:
      break;
  }
  const el = new Element(
    id,
    kind,
    type,
    name,
    index,
    wireRole,
    hdaFnNid,
    count,
    access,
    min,
    max,
    step,
    min64,
    max64,
    step64,
    items,
    tlv,
  );
  // Initial value: the default members, or the configured ones (checked like a host write).
  if (c.value !== undefined) {
    const wire = encodeValue(el, c.value, `${where}.value`, invalid);
    if (!valueValid(el, new DataView(wire.buffer), 0)) invalid(`${where}.value: outside the element's range`);
    copyValue(el, wire, 0);
  } else if (c.type === "integer") {
    for (let i = 0; i < count; i++) el.valueView.setInt32(4 * i, min, true);
  } else if (c.type === "integer64") {
    for (let i = 0; i < count; i++) el.valueView.setBigInt64(8 * i, min64, true);
  }
  return el;
}

/**
 * A host-side value in wire form (a fresh 512-byte virtio_snd_ctl_value).
 * Checks shape and widths; the range is valueValid's job.
 */
function encodeValue(
  el: Element,
  input: ControlValueInput,
  where: string,
  fail: (message: string) => never,
): Uint8Array {
  const out = new Uint8Array(VIRTIO_SND_CTL_VALUE_SIZE);
  const dv = new DataView(out.buffer);
  if (el.type === VIRTIO_SND_CTL_TYPE_IEC958) {
    const v = input as CtlIec958;
    if (
      typeof v !== "object" ||
      v === null ||
      !(v.status instanceof Uint8Array) ||
      !(v.subcode instanceof Uint8Array) ||
      !(v.digSubframe instanceof Uint8Array)
    ) {
      fail(`${where}: an IEC958 value is { status, subcode, digSubframe } byte arrays`);
    }
    try {
      encodeCtlIec958(dv, 0, v);
    } catch (err) {
      fail(`${where}: ${(err as Error).message}`);
    }
    return out;
  }
  const list = input as ArrayLike<unknown>;
  if (typeof list !== "object" || list === null || typeof list.length !== "number") {
    fail(`${where}: expected one value per member`);
  }
  if (list.length !== el.count) fail(`${where}: expected ${el.count} values, got ${list.length}`);
  for (let i = 0; i < el.count; i++) {
    const v = list[i];
    switch (el.type) {
      case VIRTIO_SND_CTL_TYPE_BOOLEAN: {
        const n = typeof v === "boolean" ? (v ? 1 : 0) : v;
        if (n !== 0 && n !== 1) fail(`${where}[${i}]: a boolean member is true/false or 0/1`);
        dv.setUint32(4 * i, n, true);
        break;
      }
      case VIRTIO_SND_CTL_TYPE_INTEGER:
        if (typeof v !== "number" || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
          fail(`${where}[${i}]: an integer member is a 32-bit signed integer`);
        }
        dv.setInt32(4 * i, v, true);
        break;
      case VIRTIO_SND_CTL_TYPE_INTEGER64:
        if (typeof v !== "bigint" || v < INT64_MIN || v > INT64_MAX) {
          fail(`${where}[${i}]: an integer64 member is a 64-bit signed bigint`);
        }
        dv.setBigInt64(8 * i, v, true);
        break;
      case VIRTIO_SND_CTL_TYPE_ENUMERATED:
        if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
          fail(`${where}[${i}]: an enumerated member is an item index`);
        }
        dv.setUint32(4 * i, v, true);
        break;
      default: // BYTES
        if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 255) {
          fail(`${where}[${i}]: a bytes member is 0 to 255`);
        }
        out[i] = v;
        break;
    }
  }
  return out;
}

/** Whether a wire value (at `offset` of `view`) is one the element can hold. BYTES and IEC958 take anything. */
function valueValid(el: Element, view: DataView, offset: number): boolean {
  for (let i = 0; i < el.count; i++) {
    switch (el.type) {
      case VIRTIO_SND_CTL_TYPE_BOOLEAN:
        if (view.getUint32(offset + 4 * i, true) > 1) return false;
        break;
      case VIRTIO_SND_CTL_TYPE_INTEGER: {
        const v = view.getInt32(offset + 4 * i, true);
        if (v < el.min || v > el.max) return false;
        if (el.step > 0 && (v - el.min) % el.step !== 0) return false;
        break;
      }
      case VIRTIO_SND_CTL_TYPE_INTEGER64: {
        const v = view.getBigInt64(offset + 8 * i, true);
        if (v < el.min64 || v > el.max64) return false;
        if (el.step64 > 0n && (v - el.min64) % el.step64 !== 0n) return false;
        break;
      }
      case VIRTIO_SND_CTL_TYPE_ENUMERATED:
        if (view.getUint32(offset + 4 * i, true) >= el.items.length) return false;
        break;
      default:
        return true;
    }
  }
  return true;
}

/** Stores a (valid) wire value; the IEC958 pad byte and bytes past the members stay 0. Returns whether it changed. */
function copyValue(el: Element, src: Uint8Array, offset: number): boolean {
  const n = el.valueBytes;
  const iec = el.type === VIRTIO_SND_CTL_TYPE_IEC958;
  let changed = false;
  for (let i = 0; i < n; i++) {
    const b = iec && i === IEC958_PAD ? 0 : src[offset + i]!;
    if (el.value[i] !== b) {
      el.value[i] = b;
      changed = true;
    }
  }
  return changed;
}

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const noHooks: ControlHooks = { notify: () => undefined, changed: () => undefined };

/**
 * The device's control elements, by id (0 to length - 1, the order of the
 * configuration). The control queue uses the wire methods (each answers
 * with a VIRTIO_SND_S_* status); the host uses get/find/set*.
 */
/** One control element's state in a device snapshot. */
export interface ControlState {
  readonly value: Uint8Array;
  readonly tlv: Uint8Array | null;
  readonly access: number;
}

export class ControlElements {
  private readonly elements: readonly Element[];
  /** Set by the device: where change notifications go. */
  hooks: ControlHooks = noHooks;

  constructor(configs: readonly ControlConfig[] = []) {
    if (!Array.isArray(configs)) invalid("controls must be an array");
    if (configs.length > MAX_CONTROLS) invalid(`at most ${MAX_CONTROLS} controls (control_id is 16-bit)`);
    this.elements = configs.map(buildElement);
    const seen = new Set<string>();
    for (const el of this.elements) {
      const key = `${el.index}:${el.name}`;
      if (seen.has(key)) invalid(`controls[${el.id}]: (name "${el.name}", index ${el.index}) is not unique`);
      seen.add(key);
    }
  }

  get length(): number {
    return this.elements.length;
  }

  /** A snapshot of element `id`; throws ERR_INVALID_STATE when there is none. */
  get(id: number): ControlElement {
    return this.snapshot(this.element(id));
  }

  /** The id of the element named (name, index), or -1. */
  find(name: string, index = 0): number {
    return this.elements.findIndex((e) => e.name === name && e.index === index);
  }

  // ---- host side -------------------------------------------------------------
  // Prefer VirtioSound.setControlValue/Tlv/Active: they also raise the event queue's interrupt.

  /**
   * Sets element `id`'s value from the host (any access rights; a read-only
   * meter is set this way). The driver hears of a change through a CTL_NOTIFY
   * event (mask VALUE). Returns whether the value changed. Throws
   * ERR_INVALID_STATE for an unknown id or a value the element cannot hold.
   */
  setValue(id: number, values: ControlValueInput): boolean {
    const el = this.element(id);
    const where = `control ${id} ("${el.name}")`;
    const wire = encodeValue(el, values, where, badState);
    if (!valueValid(el, new DataView(wire.buffer), 0))
      badState(`${where}: value outside the element's range`);
    if (!copyValue(el, wire, 0)) return false;
    this.hooks.notify(id, 1 << VIRTIO_SND_CTL_EVT_MASK_VALUE);
    return true;
  }

  /** Replaces element `id`'s metadata from the host; the driver hears of it (mask TLV). Returns whether it changed. */
  setTlv(id: number, tlv: CtlTlv | Uint8Array): boolean {
    const el = this.element(id);
    const bytes = tlvBytes(tlv, `control ${id} ("${el.name}")`, badState);
    if (sameBytes(el.tlv, bytes)) return false;
    el.tlv = bytes;
    this.hooks.notify(id, 1 << VIRTIO_SND_CTL_EVT_MASK_TLV);
    return true;
  }

  /** Sets or clears element `id`'s INACTIVE access bit; the driver hears of it (mask INFO). Returns whether it changed. */
  setActive(id: number, active: boolean): boolean {
    const el = this.element(id);
    const bit = 1 << VIRTIO_SND_CTL_ACCESS_INACTIVE;
    const access = active ? el.access & ~bit : el.access | bit;
    if (access === el.access) return false;
    el.access = access;
    this.hooks.notify(id, 1 << VIRTIO_SND_CTL_EVT_MASK_INFO);
    return true;
  }

  // ---- snapshot -------------------------------------------------------------------

  /** What the driver and host changed: each element's value, metadata and access bits. */
  saveState(): ControlState[] {
    return this.elements.map((el) => ({
      value: el.value.slice(),
      tlv: el.tlv?.slice() ?? null,
      access: el.access,
    }));
  }

  /** Takes saved states back, without notifying anyone (the driver saw them before). Throws ERR_INVALID_SNAPSHOT. */
  restoreState(states: readonly ControlState[]): void {
    if (states.length !== this.elements.length) {
      throw new VirtioSndError(
        "ERR_INVALID_SNAPSHOT",
        `saved ${states.length} controls, the device has ${this.elements.length}`,
      );
    }
    states.forEach((st, i) => {
      const el = this.elements[i]!;
      if (st.value.length !== VIRTIO_SND_CTL_VALUE_SIZE || !Number.isInteger(st.access)) {
        throw new VirtioSndError("ERR_INVALID_SNAPSHOT", `saved control ${i} is malformed`);
      }
      el.value.set(st.value);
      el.tlv = st.tlv === null ? null : st.tlv.slice();
      el.access = st.access >>> 0;
    });
  }

  // ---- wire side (the control queue) ----------------------------------------------

  /** The ctl_info record of element `id`. */
  info(id: number): CtlInfo {
    return this.infoOf(this.element(id));
  }

  /** Writes element `id`'s ctl_info record in the given layout. */
  encodeInfo(id: number, view: DataView, offset: number, layout: CtlInfoLayout): void {
    encodeCtlInfo(view, offset, this.infoOf(this.element(id)), layout);
  }

  /** CTL_ENUM_ITEMS: the items of an ENUMERATED element (NOT_SUPP for any other type). */
  enumItems(id: number): Uint8Array | number {
    const el = this.elements[id];
    if (el === undefined) return VIRTIO_SND_S_BAD_MSG;
    if (el.type !== VIRTIO_SND_CTL_TYPE_ENUMERATED) return VIRTIO_SND_S_NOT_SUPP;
    const out = new Uint8Array(el.items.length * VIRTIO_SND_CTL_ENUM_ITEM_SIZE);
    const dv = new DataView(out.buffer);
    el.items.forEach((item, i) => encodeCtlEnumItem(dv, i * VIRTIO_SND_CTL_ENUM_ITEM_SIZE, { item }));
    return out;
  }

  /** Bytes CTL_ENUM_ITEMS answers with for element `id` (0 when it has no items). */
  enumItemsSize(id: number): number {
    return (this.elements[id]?.items.length ?? 0) * VIRTIO_SND_CTL_ENUM_ITEM_SIZE;
  }

  /** CTL_READ: the 512-byte virtio_snd_ctl_value, or NOT_SUPP without READ access. */
  read(id: number): Uint8Array | number {
    const el = this.elements[id];
    if (el === undefined) return VIRTIO_SND_S_BAD_MSG;
    if (!el.can(VIRTIO_SND_CTL_ACCESS_READ)) return VIRTIO_SND_S_NOT_SUPP;
    return el.value.slice();
  }

  /**
   * CTL_WRITE with the 512-byte virtio_snd_ctl_value at `offset` of `src`:
   * NOT_SUPP without WRITE access, BAD_MSG for a value the element cannot
   * hold (out of range, off step, no such item, boolean not 0/1), IO_ERR when
   * the embedder refuses it; else OK. A change is announced both ways.
   */
  write(id: number, src: Uint8Array, offset: number): number {
    const el = this.elements[id];
    if (el === undefined) return VIRTIO_SND_S_BAD_MSG;
    if (!el.can(VIRTIO_SND_CTL_ACCESS_WRITE)) return VIRTIO_SND_S_NOT_SUPP;
    const view = new DataView(src.buffer, src.byteOffset, src.byteLength);
    if (offset + VIRTIO_SND_CTL_VALUE_SIZE > src.length || !valueValid(el, view, offset)) {
      return VIRTIO_SND_S_BAD_MSG;
    }
    const previous = el.value.slice();
    if (!copyValue(el, src, offset)) return VIRTIO_SND_S_OK;
    try {
      this.hooks.changed({ kind: "value", controlId: id, control: this.snapshot(el) });
    } catch {
      el.value.set(previous);
      return VIRTIO_SND_S_IO_ERR;
    }
    this.hooks.notify(id, 1 << VIRTIO_SND_CTL_EVT_MASK_VALUE);
    return VIRTIO_SND_S_OK;
  }

  /**
   * CTL_TLV_READ: the metadata, cut to `room` bytes (§5.14.6.10.3: write as
   * much as fits and succeed). NOT_SUPP without TLV_READ access.
   */
  tlvRead(id: number, room: number): Uint8Array | number {
    const el = this.elements[id];
    if (el === undefined) return VIRTIO_SND_S_BAD_MSG;
    if (!el.can(VIRTIO_SND_CTL_ACCESS_TLV_READ) || el.tlv === null) return VIRTIO_SND_S_NOT_SUPP;
    return el.tlv.slice(0, Math.max(0, room));
  }

  /**
   * CTL_TLV_WRITE (`command` false) or CTL_TLV_COMMAND (true) with a TLV in
   * wire form whose lengths the caller has checked. NOT_SUPP without the
   * access bit; IO_ERR when the embedder refuses it. A write replaces the
   * metadata (announced both ways when it changed); a command goes to the embedder.
   */
  tlvWrite(id: number, tlv: Uint8Array, command: boolean): number {
    const el = this.elements[id];
    if (el === undefined) return VIRTIO_SND_S_BAD_MSG;
    if (!el.can(command ? VIRTIO_SND_CTL_ACCESS_TLV_COMMAND : VIRTIO_SND_CTL_ACCESS_TLV_WRITE)) {
      return VIRTIO_SND_S_NOT_SUPP;
    }
    if (command) {
      try {
        this.hooks.changed({
          kind: "tlv-command",
          controlId: id,
          control: this.snapshot(el),
          tlv: tlv.slice(),
        });
      } catch {
        return VIRTIO_SND_S_IO_ERR;
      }
      return VIRTIO_SND_S_OK;
    }
    if (sameBytes(el.tlv, tlv)) return VIRTIO_SND_S_OK;
    const previous = el.tlv;
    el.tlv = tlv.slice();
    try {
      this.hooks.changed({ kind: "tlv", controlId: id, control: this.snapshot(el) });
    } catch {
      el.tlv = previous;
      return VIRTIO_SND_S_IO_ERR;
    }
    this.hooks.notify(id, 1 << VIRTIO_SND_CTL_EVT_MASK_TLV);
    return VIRTIO_SND_S_OK;
  }

  // ---- internals --------------------------------------------------------------------

  private element(id: number): Element {
    const el = Number.isInteger(id) ? this.elements[id] : undefined;
    if (el === undefined) badState(`no control ${id}`);
    return el;
  }

  private infoOf(el: Element): CtlInfo {
    let value: CtlInfoValue;
    switch (el.type) {
      case VIRTIO_SND_CTL_TYPE_BOOLEAN:
      case VIRTIO_SND_CTL_TYPE_INTEGER:
        value = { kind: "integer", min: el.min >>> 0, max: el.max >>> 0, step: el.step >>> 0 };
        break;
      case VIRTIO_SND_CTL_TYPE_INTEGER64:
        value = {
          kind: "integer64",
          min: BigInt.asUintN(64, el.min64),
          max: BigInt.asUintN(64, el.max64),
          step: BigInt.asUintN(64, el.step64),
        };
        break;
      case VIRTIO_SND_CTL_TYPE_ENUMERATED:
        value = { kind: "enumerated", items: el.items.length };
        break;
      default:
        value = { kind: "none" };
    }
    return {
      hdaFnNid: el.hdaFnNid,
      role: el.role,
      type: el.type,
      access: el.access,
      count: el.count,
      index: el.index,
      name: el.name,
      value,
    };
  }

  private snapshot(el: Element): ControlElement {
    return {
      id: el.id,
      name: el.name,
      index: el.index,
      type: el.kind,
      info: this.infoOf(el),
      items: el.items,
      value: valueOf(el),
      tlv: el.tlv === null ? null : el.tlv.slice(),
    };
  }
}

/** The current value, members signed for the integer types. */
function valueOf(el: Element): CtlValue {
  const dv = el.valueView;
  const ints = (read: (i: number) => number): number[] => Array.from({ length: el.count }, (_, i) => read(i));
  switch (el.type) {
    case VIRTIO_SND_CTL_TYPE_BOOLEAN:
      return { kind: "integer", values: ints((i) => dv.getUint32(4 * i, true)) };
    case VIRTIO_SND_CTL_TYPE_INTEGER:
      return { kind: "integer", values: ints((i) => dv.getInt32(4 * i, true)) };
    case VIRTIO_SND_CTL_TYPE_INTEGER64:
      return {
        kind: "integer64",
        values: Array.from({ length: el.count }, (_, i) => dv.getBigInt64(8 * i, true)),
      };
    case VIRTIO_SND_CTL_TYPE_ENUMERATED:
      return { kind: "enumerated", values: ints((i) => dv.getUint32(4 * i, true)) };
    case VIRTIO_SND_CTL_TYPE_BYTES:
      return { kind: "bytes", values: el.value.slice(0, el.count) };
    default:
      return { kind: "iec958", value: decodeCtlIec958(dv, 0) };
  }
}
