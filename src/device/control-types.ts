/**
 * What each control element type (virtio 1.3 §5.14.6.10.1, VIRTIO_SND_CTL_TYPE_*)
 * does differently, as one table: per type, the checks of its configured
 * range, and an object for the element's members that knows how many bytes
 * of virtio_snd_ctl_value they take, how a host value is written in wire
 * form, which wire values are valid, how the value reads back and what
 * ctl_info says of it.
 *
 * No Node built-ins: this is core code.
 */
import { VirtioSndError } from "../errors.js";
import {
  VIRTIO_SND_CTL_TYPE_BOOLEAN,
  VIRTIO_SND_CTL_TYPE_BYTES,
  VIRTIO_SND_CTL_TYPE_ENUMERATED,
  VIRTIO_SND_CTL_TYPE_IEC958,
  VIRTIO_SND_CTL_TYPE_INTEGER,
  VIRTIO_SND_CTL_TYPE_INTEGER64,
} from "../spec/constants.js";
import {
  type CtlIec958,
  type CtlInfoValue,
  type CtlValue,
  VIRTIO_SND_CTL_ENUM_ITEM_SIZE,
  VIRTIO_SND_CTL_IEC958_SIZE,
  decodeCtlIec958,
  encodeCtlIec958,
} from "../spec/structs.js";
import type { ControlConfig, ControlType, ControlValueInput } from "./control-config.js";

/** Reports a bad value or configuration: throws a VirtioSndError with the caller's code. */
export type Fail = (message: string) => never;

/** The members of one element: what its type does, with its configured range. */
export interface MemberType {
  /** VIRTIO_SND_CTL_TYPE_*. */
  readonly code: number;
  /** ENUMERATED: the option names; otherwise empty. */
  readonly items: readonly string[];
  /** A byte of the value that is always 0 (IEC958's pad), or -1. */
  readonly reservedByte: number;
  /** Bytes of virtio_snd_ctl_value that `count` members take. */
  valueBytes(count: number): number;
  /** Writes a host value in wire form at the start of `out`, checking shape and widths (the range is valid()'s job). */
  encode(input: ControlValueInput, count: number, out: DataView, where: string, fail: Fail): void;
  /** Whether the wire value at `offset` of `view` is one the element can hold. */
  valid(view: DataView, offset: number, count: number): boolean;
  /** The members before any write (the buffer is zeroed). */
  initialize(view: DataView, count: number): void;
  /** The value as the host sees it; INTEGER and INTEGER64 members are signed. */
  read(value: Uint8Array, view: DataView, count: number): CtlValue;
  /** ctl_info's value union (le32 fields as the driver reads them: unsigned). */
  info(): CtlInfoValue;
}

type ConfigOf<K extends ControlType> = Extract<ControlConfig, { readonly type: K }>;

/** One element type: its wire code and how its configuration becomes members. */
export interface ControlTypeEntry<K extends ControlType> {
  readonly code: number;
  /** Checks the type's own fields of `config` (range, items); ERR_INVALID_CONFIG when they are wrong. */
  members(config: ConfigOf<K>, where: string): MemberType;
}

const INT32_MIN = -0x8000_0000;
const INT32_MAX = 0x7fff_ffff;
const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;
/** Offset of the unused `pad` byte in virtio_snd_ctl_iec958. */
const IEC958_PAD = 171;

function invalid(message: string): never {
  throw new VirtioSndError("ERR_INVALID_CONFIG", message);
}

/** Printable ASCII of 1 to `maxLength` characters (names and enum items). */
export function printable(s: string, maxLength: number, where: string): string {
  if (typeof s !== "string" || s.length < 1 || s.length > maxLength || !/^[\x20-\x7e]+$/.test(s)) {
    invalid(`${where} must be printable ASCII of 1 to ${maxLength} characters`);
  }
  return s;
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

/** Members given one per entry of a list: the shape checked once, each member by the type. */
abstract class ListMembers implements MemberType {
  abstract readonly code: number;
  readonly items: readonly string[] = [];
  readonly reservedByte = -1;

  valueBytes(count: number): number {
    return 4 * count;
  }

  encode(input: ControlValueInput, count: number, out: DataView, where: string, fail: Fail): void {
    const list = input as ArrayLike<unknown>;
    if (typeof list !== "object" || list === null || typeof list.length !== "number") {
      fail(`${where}: expected one value per member`);
    }
    if (list.length !== count) fail(`${where}: expected ${count} values, got ${list.length}`);
    for (let i = 0; i < count; i++) this.put(list[i], i, out, `${where}[${i}]`, fail);
  }

  /** Writes member `i` in wire form, checking its type and width. */
  protected abstract put(v: unknown, i: number, out: DataView, where: string, fail: Fail): void;

  valid(view: DataView, offset: number, count: number): boolean {
    for (let i = 0; i < count; i++) if (!this.validMember(view, offset, i)) return false;
    return true;
  }

  protected abstract validMember(view: DataView, offset: number, i: number): boolean;

  initialize(_view: DataView, _count: number): void {
    // Zero is the default member.
  }

  abstract read(value: Uint8Array, view: DataView, count: number): CtlValue;
  abstract info(): CtlInfoValue;
}

function u32Members(view: DataView, count: number): number[] {
  return Array.from({ length: count }, (_, i) => view.getUint32(4 * i, true));
}

/** 0 or 1 per member, as an INTEGER range 0..1 step 1 in ctl_info. */
class BooleanMembers extends ListMembers {
  readonly code = VIRTIO_SND_CTL_TYPE_BOOLEAN;

  protected put(v: unknown, i: number, out: DataView, where: string, fail: Fail): void {
    const n = typeof v === "boolean" ? (v ? 1 : 0) : v;
    if (n !== 0 && n !== 1) fail(`${where}: a boolean member is true/false or 0/1`);
    out.setUint32(4 * i, n, true);
  }

  protected validMember(view: DataView, offset: number, i: number): boolean {
    return view.getUint32(offset + 4 * i, true) <= 1;
  }

  read(_value: Uint8Array, view: DataView, count: number): CtlValue {
    return { kind: "integer", values: u32Members(view, count) };
  }

  info(): CtlInfoValue {
    return { kind: "integer", min: 0, max: 1, step: 1 };
  }
}

/** Signed 32-bit members in [min, max], on `step` from min (0: any value). */
class IntegerMembers extends ListMembers {
  readonly code = VIRTIO_SND_CTL_TYPE_INTEGER;

  constructor(
    private readonly min: number,
    private readonly max: number,
    private readonly step: number,
  ) {
    super();
  }

  protected put(v: unknown, i: number, out: DataView, where: string, fail: Fail): void {
    if (typeof v !== "number" || !Number.isInteger(v) || v < INT32_MIN || v > INT32_MAX) {
      fail(`${where}: an integer member is a 32-bit signed integer`);
    }
    out.setInt32(4 * i, v, true);
  }

  protected validMember(view: DataView, offset: number, i: number): boolean {
    const v = view.getInt32(offset + 4 * i, true);
    if (v < this.min || v > this.max) return false;
    return !(this.step > 0 && (v - this.min) % this.step !== 0);
  }

  override initialize(view: DataView, count: number): void {
    for (let i = 0; i < count; i++) view.setInt32(4 * i, this.min, true);
  }

  read(_value: Uint8Array, view: DataView, count: number): CtlValue {
    return { kind: "integer", values: Array.from({ length: count }, (_, i) => view.getInt32(4 * i, true)) };
  }

  info(): CtlInfoValue {
    return { kind: "integer", min: this.min >>> 0, max: this.max >>> 0, step: this.step >>> 0 };
  }
}

/** Signed 64-bit members in [min, max], on `step` from min (0n: any value). */
class Integer64Members extends ListMembers {
  readonly code = VIRTIO_SND_CTL_TYPE_INTEGER64;

  constructor(
    private readonly min: bigint,
    private readonly max: bigint,
    private readonly step: bigint,
  ) {
    super();
  }

  override valueBytes(count: number): number {
    return 8 * count;
  }

  protected put(v: unknown, i: number, out: DataView, where: string, fail: Fail): void {
    if (typeof v !== "bigint" || v < INT64_MIN || v > INT64_MAX) {
      fail(`${where}: an integer64 member is a 64-bit signed bigint`);
    }
    out.setBigInt64(8 * i, v, true);
  }

  protected validMember(view: DataView, offset: number, i: number): boolean {
    const v = view.getBigInt64(offset + 8 * i, true);
    if (v < this.min || v > this.max) return false;
    return !(this.step > 0n && (v - this.min) % this.step !== 0n);
  }

  override initialize(view: DataView, count: number): void {
    for (let i = 0; i < count; i++) view.setBigInt64(8 * i, this.min, true);
  }

  read(_value: Uint8Array, view: DataView, count: number): CtlValue {
    return {
      kind: "integer64",
      values: Array.from({ length: count }, (_, i) => view.getBigInt64(8 * i, true)),
    };
  }

  info(): CtlInfoValue {
    return {
      kind: "integer64",
      min: BigInt.asUintN(64, this.min),
      max: BigInt.asUintN(64, this.max),
      step: BigInt.asUintN(64, this.step),
    };
  }
}

/** Members that are indexes into `items`. */
class EnumeratedMembers extends ListMembers {
  readonly code = VIRTIO_SND_CTL_TYPE_ENUMERATED;

  constructor(override readonly items: readonly string[]) {
    super();
  }

  protected put(v: unknown, i: number, out: DataView, where: string, fail: Fail): void {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 0xffff_ffff) {
      fail(`${where}: an enumerated member is an item index`);
    }
    out.setUint32(4 * i, v, true);
  }

  protected validMember(view: DataView, offset: number, i: number): boolean {
    return view.getUint32(offset + 4 * i, true) < this.items.length;
  }

  read(_value: Uint8Array, view: DataView, count: number): CtlValue {
    return { kind: "enumerated", values: u32Members(view, count) };
  }

  info(): CtlInfoValue {
    return { kind: "enumerated", items: this.items.length };
  }
}

/** Raw bytes: any wire value is valid. */
class BytesMembers extends ListMembers {
  readonly code = VIRTIO_SND_CTL_TYPE_BYTES;

  override valueBytes(count: number): number {
    return count;
  }

  protected put(v: unknown, i: number, out: DataView, where: string, fail: Fail): void {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > 255) {
      fail(`${where}: a bytes member is 0 to 255`);
    }
    out.setUint8(i, v);
  }

  protected validMember(): boolean {
    return true;
  }

  read(value: Uint8Array, _view: DataView, count: number): CtlValue {
    return { kind: "bytes", values: value.slice(0, count) };
  }

  info(): CtlInfoValue {
    return { kind: "none" };
  }
}

/** One virtio_snd_ctl_iec958 (AES/IEC958 status bits): any wire value is valid, its pad byte stays 0. */
class Iec958Members implements MemberType {
  readonly code = VIRTIO_SND_CTL_TYPE_IEC958;
  readonly items: readonly string[] = [];
  readonly reservedByte = IEC958_PAD;

  valueBytes(): number {
    return VIRTIO_SND_CTL_IEC958_SIZE;
  }

  encode(input: ControlValueInput, _count: number, out: DataView, where: string, fail: Fail): void {
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
      encodeCtlIec958(out, 0, v);
    } catch (err) {
      fail(`${where}: ${(err as Error).message}`);
    }
  }

  valid(): boolean {
    return true;
  }

  initialize(): void {
    // All zero.
  }

  read(_value: Uint8Array, view: DataView): CtlValue {
    return { kind: "iec958", value: decodeCtlIec958(view, 0) };
  }

  info(): CtlInfoValue {
    return { kind: "none" };
  }
}

const BOOLEAN_MEMBERS = new BooleanMembers();
const BYTES_MEMBERS = new BytesMembers();
const IEC958_MEMBERS = new Iec958Members();

/** Every element type, by its configuration name. */
export const CONTROL_TYPES: { readonly [K in ControlType]: ControlTypeEntry<K> } = {
  boolean: { code: VIRTIO_SND_CTL_TYPE_BOOLEAN, members: () => BOOLEAN_MEMBERS },
  integer: {
    code: VIRTIO_SND_CTL_TYPE_INTEGER,
    members(c, where) {
      const min = int32(c.min, `${where}.min`);
      const max = int32(c.max, `${where}.max`);
      const step = c.step ?? 1;
      if (!Number.isInteger(step) || step < 0 || step > INT32_MAX) invalid(`${where}.step must be 0 or more`);
      if (min > max) invalid(`${where}: min is above max`);
      return new IntegerMembers(min, max, step);
    },
  },
  integer64: {
    code: VIRTIO_SND_CTL_TYPE_INTEGER64,
    members(c, where) {
      const min = int64(c.min, `${where}.min`);
      const max = int64(c.max, `${where}.max`);
      const step = c.step ?? 1n;
      if (typeof step !== "bigint" || step < 0n || step > INT64_MAX) {
        invalid(`${where}.step must be a bigint, 0 or more`);
      }
      if (min > max) invalid(`${where}: min is above max`);
      return new Integer64Members(min, max, step);
    },
  },
  enumerated: {
    code: VIRTIO_SND_CTL_TYPE_ENUMERATED,
    members(c, where) {
      if (!Array.isArray(c.items) || c.items.length < 1)
        invalid(`${where}: an enumerated element needs items`);
      const items = c.items.map((s, i) =>
        printable(s, VIRTIO_SND_CTL_ENUM_ITEM_SIZE - 1, `${where}.items[${i}]`),
      );
      return new EnumeratedMembers(items);
    },
  },
  bytes: { code: VIRTIO_SND_CTL_TYPE_BYTES, members: () => BYTES_MEMBERS },
  iec958: { code: VIRTIO_SND_CTL_TYPE_IEC958, members: () => IEC958_MEMBERS },
};

/** The entry of `type`, or undefined for a name that is no element type. */
export function controlTypeEntry(type: string): ControlTypeEntry<ControlType> | undefined {
  return Object.prototype.hasOwnProperty.call(CONTROL_TYPES, type)
    ? (CONTROL_TYPES[type as ControlType] as ControlTypeEntry<ControlType>)
    : undefined;
}
