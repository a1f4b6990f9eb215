/**
 * One control element (virtio 1.3 §5.14.6.10): its fixed description, its
 * access bits, its value in wire form and its metadata; and how an element
 * is built from its configuration, with the device requirements of
 * §5.14.6.10.1 checked. What depends on the element's type is its
 * MemberType (control-types.ts).
 *
 * No Node built-ins: this is core code.
 */
import { VirtioSndError } from "../errors.js";
import {
  VIRTIO_SND_CTL_ACCESS_TLV_COMMAND,
  VIRTIO_SND_CTL_ACCESS_TLV_READ,
  VIRTIO_SND_CTL_MAX_COUNT,
  VIRTIO_SND_CTL_ROLE_GAIN,
  VIRTIO_SND_CTL_ROLE_MUTE,
  VIRTIO_SND_CTL_ROLE_UNDEFINED,
  VIRTIO_SND_CTL_ROLE_VOLUME,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
} from "../spec/constants.js";
import {
  type CtlInfo,
  type CtlTlv,
  type CtlValue,
  VIRTIO_SND_CTL_NAME_SIZE,
  VIRTIO_SND_CTL_TLV_HEADER_SIZE,
  VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE,
  VIRTIO_SND_CTL_VALUE_SIZE,
} from "../spec/structs.js";
import { ACCESS_RW, type ControlConfig, type ControlType, type ControlValueInput } from "./control-config.js";
import { type Fail, type MemberType, controlTypeEntry, printable } from "./control-types.js";

export interface ElementOptions {
  /** Its position in the configuration: control_id on the wire. */
  readonly id: number;
  /** The configuration's type name (the wire code is the members'). */
  readonly kind: ControlType;
  readonly name: string;
  readonly index: number;
  /** The wire role: (role << 1) | direction. */
  readonly role: number;
  readonly hdaFnNid: number;
  readonly count: number;
  /** 1 << VIRTIO_SND_CTL_ACCESS_* bits. */
  readonly access: number;
  readonly members: MemberType;
  /** The metadata in wire form, or null. */
  readonly tlv: Uint8Array | null;
}

/** One element: its fixed description, its access bits, its value in wire form, its metadata. */
export class Element {
  readonly id: number;
  readonly kind: ControlType;
  readonly name: string;
  readonly index: number;
  readonly role: number;
  readonly hdaFnNid: number;
  readonly count: number;
  readonly members: MemberType;
  access: number;
  /** virtio_snd_ctl_value as the driver reads it; bytes past the members are 0. */
  readonly value = new Uint8Array(VIRTIO_SND_CTL_VALUE_SIZE);
  readonly valueView = new DataView(this.value.buffer);
  tlv: Uint8Array | null;

  constructor(o: ElementOptions) {
    this.id = o.id;
    this.kind = o.kind;
    this.name = o.name;
    this.index = o.index;
    this.role = o.role;
    this.hdaFnNid = o.hdaFnNid;
    this.count = o.count;
    this.members = o.members;
    this.access = o.access;
    this.tlv = o.tlv;
    this.members.initialize(this.valueView, this.count);
  }

  /** VIRTIO_SND_CTL_TYPE_*. */
  get type(): number {
    return this.members.code;
  }

  /** ENUMERATED: the option names; otherwise empty. */
  get items(): readonly string[] {
    return this.members.items;
  }

  can(access: number): boolean {
    return (this.access & (1 << access)) !== 0;
  }

  /**
   * A host-side value in wire form (a fresh 512-byte virtio_snd_ctl_value).
   * Checks shape and widths; the range is valid()'s job.
   */
  encode(input: ControlValueInput, where: string, fail: Fail): Uint8Array {
    const out = new Uint8Array(VIRTIO_SND_CTL_VALUE_SIZE);
    this.members.encode(input, this.count, new DataView(out.buffer), where, fail);
    return out;
  }

  /** Whether a wire value (at `offset` of `view`) is one the element can hold. */
  valid(view: DataView, offset: number): boolean {
    return this.members.valid(view, offset, this.count);
  }

  /** Stores a (valid) wire value; a reserved byte and bytes past the members stay 0. Returns whether it changed. */
  store(src: Uint8Array, offset: number): boolean {
    const n = this.members.valueBytes(this.count);
    const reserved = this.members.reservedByte;
    let changed = false;
    for (let i = 0; i < n; i++) {
      const b = i === reserved ? 0 : src[offset + i]!;
      if (this.value[i] !== b) {
        this.value[i] = b;
        changed = true;
      }
    }
    return changed;
  }

  /** The current value, members signed for the integer types. */
  read(): CtlValue {
    return this.members.read(this.value, this.valueView, this.count);
  }

  /** The record CTL_INFO answers with. */
  info(): CtlInfo {
    return {
      hdaFnNid: this.hdaFnNid,
      role: this.role,
      type: this.type,
      access: this.access,
      count: this.count,
      index: this.index,
      name: this.name,
      value: this.members.info(),
    };
  }
}

const ACCESS_ALL = (1 << (VIRTIO_SND_CTL_ACCESS_TLV_COMMAND + 1)) - 1;
const ROLES = [
  VIRTIO_SND_CTL_ROLE_UNDEFINED,
  VIRTIO_SND_CTL_ROLE_VOLUME,
  VIRTIO_SND_CTL_ROLE_MUTE,
  VIRTIO_SND_CTL_ROLE_GAIN,
];

function invalid(message: string): never {
  throw new VirtioSndError("ERR_INVALID_CONFIG", message);
}

function u32(v: number, where: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xffff_ffff) invalid(`${where} must be a 32-bit unsigned integer`);
  return v;
}

/** A TLV in wire form, checked: 8-byte header, then `length` bytes, a multiple of 4 and at most 65536. */
export function tlvBytes(tlv: CtlTlv | Uint8Array, where: string, fail: Fail): Uint8Array {
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

/** Element `id` from its configuration; throws ERR_INVALID_CONFIG for anything §5.14.6.10.1 does not allow. */
export function buildElement(c: ControlConfig, id: number): Element {
  const where = `controls[${id}]`;
  if (typeof c !== "object" || c === null) invalid(`${where} must be an object`);
  const kind = c.type;
  const entry = controlTypeEntry(kind);
  if (entry === undefined) invalid(`${where}: unknown type ${String(kind)}`);
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
  // An IEC958 value is one structure, whatever its fields' lengths.
  const count = c.type === "iec958" ? (c.count ?? 1) : (c.count ?? valueLength ?? 1);
  const maxCount = VIRTIO_SND_CTL_MAX_COUNT[entry.code]!;
  if (!Number.isInteger(count) || count < 1 || count > maxCount) {
    invalid(`${where}: count must be from 1 to ${maxCount} for a ${kind} element`);
  }

  const members = entry.members(c, where);
  const el = new Element({ id, kind, name, index, role: wireRole, hdaFnNid, count, access, members, tlv });
  // A configured initial value is checked like a host write; without one the members keep their defaults.
  if (c.value !== undefined) {
    const wire = el.encode(c.value, `${where}.value`, invalid);
    if (!el.valid(new DataView(wire.buffer), 0)) invalid(`${where}.value: outside the element's range`);
    el.store(wire, 0);
  }
  return el;
}
