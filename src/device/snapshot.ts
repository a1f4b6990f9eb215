/**
 * A device snapshot's wire form: JSON in UTF-8, so a saved state can be read
 * by a person and checked field by field when it is restored. Bytes are hex;
 * the 64-bit feature word is a hex string.
 *
 *   {"format":"virtio-snd-state","version":1,
 *    "card":{"streams":2,"jacks":2,"chmaps":6,"controls":0},
 *    "features":"0x...","accepted":true,"broken":null,
 *    "queues":[{"layout":{...},"ring":{...}} | null, x4],
 *    "events":[code,data,...], "eventsDropped":0,
 *    "jacks":[{"connected":true,"defconf":N}], "controls":[{"value":"hex","tlv":"hex"|null,"access":N}],
 *    "streams":[PcmStreamState], "dropsReported":[false x4]}
 *
 * Restoring validates every field: a snapshot from another card or a corrupt
 * one is refused with ERR_INVALID_SNAPSHOT, never half applied.
 *
 * No Node built-ins: this is core code.
 */
import type { PcmParams } from "../audio/pcm-params.js";
import { VirtioSndError } from "../errors.js";
import { PcmState } from "../stream/pcm-state.js";
import { MAX_LAG_NS, type PcmStreamState } from "../stream/pcm-stream.js";
import type { ChainState, QueueLayout, RingState } from "../virtqueue/virtqueue.js";
import type { ControlState } from "./controls.js";

export const SNAPSHOT_FORMAT = "virtio-snd-state";
export const SNAPSHOT_VERSION = 1;

export interface DeviceSnapshot {
  readonly card: { streams: number; jacks: number; chmaps: number; controls: number };
  readonly features: bigint;
  readonly accepted: boolean;
  readonly broken: string | null;
  readonly queues: readonly ({ layout: QueueLayout; ring: RingState } | null)[];
  readonly events: readonly number[];
  readonly eventsDropped: number;
  readonly jacks: readonly { connected: boolean; defconf: number }[];
  readonly controls: readonly ControlState[];
  readonly streams: readonly PcmStreamState[];
  readonly dropsReported: readonly boolean[];
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function bad(what: string): never {
  throw new VirtioSndError("ERR_INVALID_SNAPSHOT", `device snapshot: ${what}`);
}

export function encodeSnapshot(s: DeviceSnapshot): Uint8Array {
  const json = {
    format: SNAPSHOT_FORMAT,
    version: SNAPSHOT_VERSION,
    card: s.card,
    features: `0x${s.features.toString(16)}`,
    accepted: s.accepted,
    broken: s.broken,
    queues: s.queues,
    events: s.events,
    eventsDropped: s.eventsDropped,
    jacks: s.jacks,
    controls: s.controls.map((c) => ({
      value: hex(c.value),
      tlv: c.tlv === null ? null : hex(c.tlv),
      access: c.access,
    })),
    streams: s.streams,
    dropsReported: s.dropsReported,
  };
  return new TextEncoder().encode(JSON.stringify(json));
}

// ---- decoding, every field checked -------------------------------------------------

type Obj = Record<string, unknown>;

function obj(v: unknown, where: string): Obj {
  if (typeof v !== "object" || v === null || Array.isArray(v)) bad(`${where} is not an object`);
  return v as Obj;
}

function arr(v: unknown, where: string): unknown[] {
  if (!Array.isArray(v)) bad(`${where} is not an array`);
  return v;
}

function int(v: unknown, where: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < min || v > max)
    bad(`${where} is not an integer in ${min}..${max}`);
  return v;
}

function bool(v: unknown, where: string): boolean {
  if (typeof v !== "boolean") bad(`${where} is not a boolean`);
  return v;
}

function bytes(v: unknown, where: string): Uint8Array {
  if (typeof v !== "string" || v.length % 2 !== 0 || !/^[0-9a-f]*$/.test(v)) bad(`${where} is not hex`);
  const out = new Uint8Array(v.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(v.slice(2 * i, 2 * i + 2), 16);
  return out;
}

const U32 = 0xffff_ffff;
const ADDR = Number.MAX_SAFE_INTEGER;

function layout(v: unknown, where: string): QueueLayout {
  const o = obj(v, where);
  return {
    size: int(o["size"], `${where}.size`, 1, 32768),
    descAddr: int(o["descAddr"], `${where}.descAddr`, 0, ADDR),
    driverAddr: int(o["driverAddr"], `${where}.driverAddr`, 0, ADDR),
    deviceAddr: int(o["deviceAddr"], `${where}.deviceAddr`, 0, ADDR),
  };
}

function ring(v: unknown, where: string): RingState {
  const o = obj(v, where);
  if (o["kind"] === "split") {
    return {
      kind: "split",
      lastAvail: int(o["lastAvail"], `${where}.lastAvail`, 0, 0xffff),
      usedIdx: int(o["usedIdx"], `${where}.usedIdx`, 0, 0xffff),
      signalledUsed: int(o["signalledUsed"], `${where}.signalledUsed`, 0, 0xffff),
      pushedSinceCheck: int(o["pushedSinceCheck"], `${where}.pushedSinceCheck`),
      notify: bool(o["notify"], `${where}.notify`),
    };
  }
  if (o["kind"] === "packed") {
    return {
      kind: "packed",
      availIdx: int(o["availIdx"], `${where}.availIdx`, 0, 32767),
      availWrap: int(o["availWrap"], `${where}.availWrap`, 0, 1),
      usedIdx: int(o["usedIdx"], `${where}.usedIdx`, 0, 32767),
      usedWrap: int(o["usedWrap"], `${where}.usedWrap`, 0, 1),
      pushedSlots: int(o["pushedSlots"], `${where}.pushedSlots`),
      notify: bool(o["notify"], `${where}.notify`),
    };
  }
  return bad(`${where}.kind is neither "split" nor "packed"`);
}

function chain(v: unknown, where: string): ChainState {
  const o = obj(v, where);
  const segments = arr(o["segments"], `${where}.segments`).map((p, i) => {
    const pair = arr(p, `${where}.segments[${i}]`);
    if (pair.length !== 2) bad(`${where}.segments[${i}] is not [addr, len]`);
    return [
      int(pair[0], `${where}.segments[${i}][0]`, 0, ADDR),
      int(pair[1], `${where}.segments[${i}][1]`, 0, U32),
    ] as const;
  });
  return {
    id: int(o["id"], `${where}.id`, 0, 0xffff),
    ringSlots: int(o["ringSlots"], `${where}.ringSlots`, 1, 32768),
    readableCount: int(o["readableCount"], `${where}.readableCount`, 0, segments.length),
    segments,
  };
}

function params(v: unknown, where: string): PcmParams | null {
  if (v === null) return null;
  const o = obj(v, where);
  return {
    direction: int(o["direction"], `${where}.direction`, 0, 1),
    format: int(o["format"], `${where}.format`, 0, 63),
    rate: int(o["rate"], `${where}.rate`, 1, 10_000_000),
    channels: int(o["channels"], `${where}.channels`, 1, 255),
    bufferBytes: int(o["bufferBytes"], `${where}.bufferBytes`, 1, U32),
    periodBytes: int(o["periodBytes"], `${where}.periodBytes`, 1, U32),
    features: int(o["features"], `${where}.features`, 0, U32),
  };
}

function stream(v: unknown, where: string): PcmStreamState {
  const o = obj(v, where);
  const cursor = arr(o["cursor"], `${where}.cursor`);
  if (cursor.length !== 4) bad(`${where}.cursor is not [seg, off, left, filled]`);
  return {
    state: int(o["state"], `${where}.state`, PcmState.Idle, PcmState.Released) as PcmState,
    params: params(o["params"], `${where}.params`),
    failed: bool(o["failed"], `${where}.failed`),
    pending: arr(o["pending"], `${where}.pending`).map((c, i) => chain(c, `${where}.pending[${i}]`)),
    cursor: [
      int(cursor[0], `${where}.cursor[0]`),
      int(cursor[1], `${where}.cursor[1]`),
      int(cursor[2], `${where}.cursor[2]`, -1),
      int(cursor[3], `${where}.cursor[3]`),
    ],
    bytesMoved: int(o["bytesMoved"], `${where}.bytesMoved`),
    nextPeriodMark: int(o["nextPeriodMark"], `${where}.nextPeriodMark`),
    starved: bool(o["starved"], `${where}.starved`),
    dropReported: bool(o["dropReported"], `${where}.dropReported`),
    dropped: int(o["dropped"], `${where}.dropped`),
    bytesTotal: int(o["bytesTotal"], `${where}.bytesTotal`),
    xruns: int(o["xruns"], `${where}.xruns`),
    // Absent in states saved before it was kept: no lag.
    lagNs: o["lagNs"] === undefined ? 0 : int(o["lagNs"], `${where}.lagNs`, -MAX_LAG_NS, MAX_LAG_NS),
  };
}

export function decodeSnapshot(data: Uint8Array): DeviceSnapshot {
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(data));
  } catch (e) {
    return bad(`not JSON (${e instanceof Error ? e.message : String(e)})`);
  }
  const o = obj(json, "the snapshot");
  if (o["format"] !== SNAPSHOT_FORMAT) bad(`format is not "${SNAPSHOT_FORMAT}"`);
  if (o["version"] !== SNAPSHOT_VERSION) bad(`version ${String(o["version"])} is not ${SNAPSHOT_VERSION}`);
  const card = obj(o["card"], "card");
  const features = o["features"];
  if (typeof features !== "string" || !/^0x[0-9a-f]{1,16}$/.test(features))
    bad("features is not a 64-bit hex word");
  const broken = o["broken"];
  if (broken !== null && typeof broken !== "string") bad("broken is neither null nor a message");
  const queues = arr(o["queues"], "queues");
  if (queues.length !== 4) bad("queues does not have 4 entries");
  const events = arr(o["events"], "events").map((e, i) => int(e, `events[${i}]`, 0, U32));
  if (events.length % 2 !== 0) bad("events is not a list of (code, data) pairs");
  const dropsReported = arr(o["dropsReported"], "dropsReported").map((b, i) =>
    bool(b, `dropsReported[${i}]`),
  );
  if (dropsReported.length !== 4) bad("dropsReported does not have 4 entries");
  return {
    card: {
      streams: int(card["streams"], "card.streams"),
      jacks: int(card["jacks"], "card.jacks"),
      chmaps: int(card["chmaps"], "card.chmaps"),
      controls: int(card["controls"], "card.controls"),
    },
    features: BigInt(features),
    accepted: bool(o["accepted"], "accepted"),
    broken,
    queues: queues.map((q, i) =>
      q === null
        ? null
        : {
            layout: layout(obj(q, `queues[${i}]`)["layout"], `queues[${i}].layout`),
            ring: ring(obj(q, `queues[${i}]`)["ring"], `queues[${i}].ring`),
          },
    ),
    events,
    eventsDropped: int(o["eventsDropped"], "eventsDropped"),
    jacks: arr(o["jacks"], "jacks").map((j, i) => {
      const jo = obj(j, `jacks[${i}]`);
      return {
        connected: bool(jo["connected"], `jacks[${i}].connected`),
        defconf: int(jo["defconf"], `jacks[${i}].defconf`, 0, U32),
      };
    }),
    controls: arr(o["controls"], "controls").map((c, i) => {
      const co = obj(c, `controls[${i}]`);
      return {
        value: bytes(co["value"], `controls[${i}].value`),
        tlv: co["tlv"] === null ? null : bytes(co["tlv"], `controls[${i}].tlv`),
        access: int(co["access"], `controls[${i}].access`, 0, U32),
      };
    }),
    streams: arr(o["streams"], "streams").map((s, i) => stream(s, `streams[${i}]`)),
    dropsReported,
  };
}
