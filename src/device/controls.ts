/**
 * Control elements (virtio 1.3 §5.14.6.10, feature VIRTIO_SND_F_CTLS): the
 * mixer the device offers the guest. Linux turns each element into an ALSA
 * mixer control of the same name (sound/virtio/virtio_kctl.c), so ALSA names
 * such as "Master Playback Volume" or "Capture Switch" give them their meaning
 * in the guest.
 *
 * This module holds the model: the elements (control-element.ts, built from
 * the configuration of control-config.ts, their types' differences in
 * control-types.ts), and what the control queue needs (info records, enum
 * items, value and metadata reads and writes), each answering with a virtio
 * status. The host side reads and sets elements through the same object; a
 * change from either side is announced to the other (a CTL_NOTIFY event for
 * the guest, `changed` for the embedder).
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
  VIRTIO_SND_CTL_TYPE_ENUMERATED,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
} from "../spec/constants.js";
import {
  type CtlInfo,
  type CtlInfoLayout,
  type CtlTlv,
  type CtlValue,
  VIRTIO_SND_CTL_ENUM_ITEM_SIZE,
  VIRTIO_SND_CTL_VALUE_SIZE,
  encodeCtlEnumItem,
  encodeCtlInfo,
} from "../spec/structs.js";
import type { ControlConfig, ControlType, ControlValueInput } from "./control-config.js";
import { type Element, buildElement, tlvBytes } from "./control-element.js";

export {
  ALSA_TLV_DB_SCALE,
  ALSA_TLV_DB_SCALE_MUTE,
  type BooleanControlConfig,
  type BytesControlConfig,
  type ControlConfig,
  type ControlType,
  type ControlValueInput,
  type EnumeratedControlConfig,
  type Iec958ControlConfig,
  type Integer64ControlConfig,
  type IntegerControlConfig,
  type MuteControlOptions,
  type VolumeControlOptions,
  dbScaleTlv,
  muteControl,
  volumeControl,
} from "./control-config.js";

/** control_id in virtio_snd_ctl_event is le16: more elements could not be notified. */
const MAX_CONTROLS = 0x1_0000;

function invalid(message: string): never {
  throw new VirtioSndError("ERR_INVALID_CONFIG", message);
}

function badState(message: string): never {
  throw new VirtioSndError("ERR_INVALID_STATE", message);
}

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

function sameBytes(a: Uint8Array | null, b: Uint8Array | null): boolean {
  if (a === null || b === null) return a === b;
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

const noHooks: ControlHooks = { notify: () => undefined, changed: () => undefined };

/** One control element's state in a device snapshot. */
export interface ControlState {
  readonly value: Uint8Array;
  readonly tlv: Uint8Array | null;
  readonly access: number;
}

/**
 * The device's control elements, by id (0 to length - 1, the order of the
 * configuration). The control queue uses the wire methods (each answers
 * with a VIRTIO_SND_S_* status); the host uses get/find/set*.
 */
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
    const wire = el.encode(values, where, badState);
    if (!el.valid(new DataView(wire.buffer), 0)) badState(`${where}: value outside the element's range`);
    if (!el.store(wire, 0)) return false;
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
    return this.element(id).info();
  }

  /** Writes element `id`'s ctl_info record in the given layout. */
  encodeInfo(id: number, view: DataView, offset: number, layout: CtlInfoLayout): void {
    encodeCtlInfo(view, offset, this.element(id).info(), layout);
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
    if (offset + VIRTIO_SND_CTL_VALUE_SIZE > src.length || !el.valid(view, offset)) {
      return VIRTIO_SND_S_BAD_MSG;
    }
    const previous = el.value.slice();
    if (!el.store(src, offset)) return VIRTIO_SND_S_OK;
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

  private snapshot(el: Element): ControlElement {
    return {
      id: el.id,
      name: el.name,
      index: el.index,
      type: el.kind,
      info: el.info(),
      items: el.items,
      value: el.read(),
      tlv: el.tlv === null ? null : el.tlv.slice(),
    };
  }
}
