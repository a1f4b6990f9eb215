/**
 * Control elements (virtio 1.3 §5.14.6.10, VIRTIO_SND_F_CTLS): every request
 * with good and bad payloads (exact status, used length and bytes), the
 * host-side API and its CTL_NOTIFY events, the embedder callback, the
 * configuration checks, and a property: random CTL_* requests never throw
 * and always get a valid status.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG, type SoundConfig } from "../../src/device/config.js";
import {
  type ControlChange,
  type ControlConfig,
  dbScaleTlv,
  muteControl,
  volumeControl,
} from "../../src/device/controls.js";
import { VirtioSndError } from "../../src/errors.js";
import {
  VIRTIO_SND_CTL_ACCESS_INACTIVE,
  VIRTIO_SND_CTL_ACCESS_READ,
  VIRTIO_SND_CTL_ACCESS_TLV_COMMAND,
  VIRTIO_SND_CTL_ACCESS_TLV_READ,
  VIRTIO_SND_CTL_ACCESS_TLV_WRITE,
  VIRTIO_SND_CTL_ACCESS_VOLATILE,
  VIRTIO_SND_CTL_ACCESS_WRITE,
  VIRTIO_SND_CTL_EVT_MASK_INFO,
  VIRTIO_SND_CTL_EVT_MASK_TLV,
  VIRTIO_SND_CTL_EVT_MASK_VALUE,
  VIRTIO_SND_CTL_ROLE_GAIN,
  VIRTIO_SND_CTL_ROLE_MUTE,
  VIRTIO_SND_CTL_ROLE_VOLUME,
  VIRTIO_SND_CTL_TYPE_BOOLEAN,
  VIRTIO_SND_CTL_TYPE_BYTES,
  VIRTIO_SND_CTL_TYPE_ENUMERATED,
  VIRTIO_SND_CTL_TYPE_IEC958,
  VIRTIO_SND_CTL_TYPE_INTEGER,
  VIRTIO_SND_CTL_TYPE_INTEGER64,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_EVT_CTL_NOTIFY,
  VIRTIO_SND_F_CTLS,
  VIRTIO_SND_R_CTL_ENUM_ITEMS,
  VIRTIO_SND_R_CTL_INFO,
  VIRTIO_SND_R_CTL_READ,
  VIRTIO_SND_R_CTL_TLV_COMMAND,
  VIRTIO_SND_R_CTL_TLV_READ,
  VIRTIO_SND_R_CTL_TLV_WRITE,
  VIRTIO_SND_R_CTL_WRITE,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
} from "../../src/spec/constants.js";
import {
  type CtlInfo,
  type CtlInfoLayout,
  decodeCtlEnumItem,
  decodeCtlEvent,
  decodeCtlInfo,
  decodeCtlTlv,
  encodeQueryInfo,
} from "../../src/spec/structs.js";
import { type GuestOptions, SimulatedGuest } from "../../src/driver/simulated-guest.js";

const OK = VIRTIO_SND_S_OK;
const BAD_MSG = VIRTIO_SND_S_BAD_MSG;
const NOT_SUPP = VIRTIO_SND_S_NOT_SUPP;
const IO_ERR = VIRTIO_SND_S_IO_ERR;

const R = 1 << VIRTIO_SND_CTL_ACCESS_READ;
const W = 1 << VIRTIO_SND_CTL_ACCESS_WRITE;
const VOLATILE = 1 << VIRTIO_SND_CTL_ACCESS_VOLATILE;
const INACTIVE = 1 << VIRTIO_SND_CTL_ACCESS_INACTIVE;
const TLV_R = 1 << VIRTIO_SND_CTL_ACCESS_TLV_READ;
const TLV_W = 1 << VIRTIO_SND_CTL_ACCESS_TLV_WRITE;
const TLV_C = 1 << VIRTIO_SND_CTL_ACCESS_TLV_COMMAND;

const IEC_STATUS = Uint8Array.from({ length: 24 }, (_, i) => i + 1);
const IEC_SUBCODE = Uint8Array.from({ length: 147 }, (_, i) => (i * 7) & 0xff);
const IEC_SUBFRAME = Uint8Array.from([0xa1, 0xb2, 0xc3, 0xd4]);

/** Ids of the elements below. */
const VOL = 0;
const SWITCH = 1;
const CAP_VOL = 2;
const SOURCE = 3;
const COUNTER = 4;
const BLOB = 5;
const IEC = 6;
const METER = 7;
const WO = 8;
const PLAY = 9;
const STEPPED = 10;

const CONTROLS: readonly ControlConfig[] = [
  volumeControl("Master Playback Volume", "output"),
  muteControl("Master Playback Switch", "output"),
  volumeControl("Capture Volume", "input", { db: { minDb: -64, maxDb: 0, stepDb: 0.5 } }),
  { type: "enumerated", name: "Input Source", items: ["Mic", "Line", "Internal Mic"], value: [1] },
  {
    type: "integer64",
    name: "Frame Counter",
    role: VIRTIO_SND_CTL_ROLE_GAIN,
    direction: "input",
    min: -(1n << 40n),
    max: 1n << 40n,
    step: 2n,
    value: [0n, 1n << 40n],
    hdaFnNid: 7,
  },
  { type: "bytes", name: "Codec Blob", count: 16, value: Array.from({ length: 16 }, (_, i) => i + 1) },
  {
    type: "iec958",
    name: "IEC958 Playback Default",
    value: { status: IEC_STATUS, subcode: IEC_SUBCODE, digSubframe: IEC_SUBFRAME },
  },
  { type: "integer", name: "Peak Meter", min: 0, max: 1000, step: 0, access: R | VOLATILE },
  { type: "boolean", name: "Write Only Switch", access: W },
  {
    type: "integer",
    name: "Master Playback Volume",
    index: 1,
    min: 0,
    max: 10,
    value: [5],
    tlv: { type: 0x100, value: [1, 2, 3] },
    access: R | W | TLV_R | TLV_W | TLV_C,
  },
  { type: "integer", name: "Stepped Gain", min: -20, max: 20, step: 5, value: [-20, 0, 20] },
];

const CONFIG: SoundConfig = { ...DEFAULT_CONFIG, controls: CONTROLS };

/** What CTL_INFO must report for each element (worked out by hand from CONTROLS). */
const INFOS: readonly CtlInfo[] = [
  {
    hdaFnNid: 0,
    role: (VIRTIO_SND_CTL_ROLE_VOLUME << 1) | VIRTIO_SND_D_OUTPUT,
    type: VIRTIO_SND_CTL_TYPE_INTEGER,
    access: R | W,
    count: 2,
    index: 0,
    name: "Master Playback Volume",
    value: { kind: "integer", min: 0, max: 100, step: 1 },
  },
  {
    hdaFnNid: 0,
    role: (VIRTIO_SND_CTL_ROLE_MUTE << 1) | VIRTIO_SND_D_OUTPUT,
    type: VIRTIO_SND_CTL_TYPE_BOOLEAN,
    access: R | W,
    count: 2,
    index: 0,
    name: "Master Playback Switch",
    value: { kind: "integer", min: 0, max: 1, step: 1 },
  },
  {
    hdaFnNid: 0,
    role: (VIRTIO_SND_CTL_ROLE_VOLUME << 1) | VIRTIO_SND_D_INPUT,
    type: VIRTIO_SND_CTL_TYPE_INTEGER,
    access: R | W | TLV_R,
    count: 2,
    index: 0,
    name: "Capture Volume",
    value: { kind: "integer", min: 0, max: 128, step: 1 },
  },
  {
    hdaFnNid: 0,
    role: 0,
    type: VIRTIO_SND_CTL_TYPE_ENUMERATED,
    access: R | W,
    count: 1,
    index: 0,
    name: "Input Source",
    value: { kind: "enumerated", items: 3 },
  },
  {
    hdaFnNid: 7,
    role: (VIRTIO_SND_CTL_ROLE_GAIN << 1) | VIRTIO_SND_D_INPUT,
    type: VIRTIO_SND_CTL_TYPE_INTEGER64,
    access: R | W,
    count: 2,
    index: 0,
    name: "Frame Counter",
    value: { kind: "integer64", min: (1n << 64n) - (1n << 40n), max: 1n << 40n, step: 2n },
  },
  {
    hdaFnNid: 0,
    role: 0,
    type: VIRTIO_SND_CTL_TYPE_BYTES,
    access: R | W,
    count: 16,
    index: 0,
    name: "Codec Blob",
    value: { kind: "none" },
  },
  {
    hdaFnNid: 0,
    role: 0,
    type: VIRTIO_SND_CTL_TYPE_IEC958,
    access: R | W,
    count: 1,
    index: 0,
    name: "IEC958 Playback Default",
    value: { kind: "none" },
  },
  {
    hdaFnNid: 0,
    role: 0,
    type: VIRTIO_SND_CTL_TYPE_INTEGER,
    access: R | VOLATILE,
    count: 1,
    index: 0,
    name: "Peak Meter",
    value: { kind: "integer", min: 0, max: 1000, step: 0 },
  },
  {
    hdaFnNid: 0,
    role: 0,
    type: VIRTIO_SND_CTL_TYPE_BOOLEAN,
    access: W,
    count: 1,
    index: 0,
    name: "Write Only Switch",
    value: { kind: "integer", min: 0, max: 1, step: 1 },
  },
  {
    hdaFnNid: 0,
    role: 0,
    type: VIRTIO_SND_CTL_TYPE_INTEGER,
    access: R | W | TLV_R | TLV_W | TLV_C,
    count: 1,
    index: 1,
    name: "Master Playback Volume",
    value: { kind: "integer", min: 0, max: 10, step: 1 },
  },
  {
    hdaFnNid: 0,
    role: 0,
    type: VIRTIO_SND_CTL_TYPE_INTEGER,
    access: R | W,
    count: 3,
    index: 0,
    name: "Stepped Gain",
    value: { kind: "integer", min: -20 >>> 0, max: 20, step: 5 },
  },
];
const N = CONTROLS.length;

// ---------------------------------------------------------------------------
// Wire helpers
// ---------------------------------------------------------------------------

const u32s = (...values: number[]): Uint8Array => SimulatedGuest.u32s(...values);

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

const dv = (b: Uint8Array): DataView => new DataView(b.buffer, b.byteOffset, b.byteLength);

function query(code: number, startId: number, count: number, size: number): Uint8Array {
  const b = new Uint8Array(16);
  encodeQueryInfo(dv(b), 0, { code, startId, count, size });
  return b;
}

/** A 512-byte virtio_snd_ctl_value from le32, le64 or byte members. */
function value32(...members: number[]): Uint8Array {
  const b = new Uint8Array(512);
  members.forEach((m, i) => dv(b).setUint32(4 * i, m >>> 0, true));
  return b;
}
function value64(...members: bigint[]): Uint8Array {
  const b = new Uint8Array(512);
  members.forEach((m, i) => dv(b).setBigInt64(8 * i, m, true));
  return b;
}
function valueBytes(bytes: ArrayLike<number>): Uint8Array {
  const b = new Uint8Array(512);
  b.set(Array.from(bytes));
  return b;
}
function iecValue(status: Uint8Array, subcode: Uint8Array, sub: Uint8Array, pad = 0): Uint8Array {
  const b = new Uint8Array(512);
  b.set(status, 0);
  b.set(subcode, 24);
  b[171] = pad;
  b.set(sub, 172);
  return b;
}

const writeReq = (id: number, value: Uint8Array): Uint8Array =>
  concat(u32s(VIRTIO_SND_R_CTL_WRITE, id), value);

/** ctl_hdr + TLV; `length` overrides the header's length field. */
function tlvReq(
  code: number,
  id: number,
  type: number,
  words: readonly number[],
  length?: number,
): Uint8Array {
  return concat(u32s(code, id, type, length ?? 4 * words.length), u32s(...words));
}

const TLV_AREA = 80 * 1024;
const FILL = 0xee;
const areas = new WeakMap<SimulatedGuest, { req: number; resp: number }>();

interface Reply {
  status: number;
  used: number;
  /** The bytes after the status header, up to the used length. */
  payload: Uint8Array;
}

/** One control request; also checks that nothing past the used length was written. */
function ctl(g: SimulatedGuest, req: Uint8Array, respSize: number): Reply {
  let a = areas.get(g);
  if (a === undefined) {
    a = { req: g.alloc(TLV_AREA, 16), resp: g.alloc(TLV_AREA, 16) };
    areas.set(g, a);
  }
  g.memory.write(a.req, req, 0, req.length);
  g.memory.fill(a.resp, respSize + 16, FILL);
  const token = g.submit(
    VIRTIO_SND_VQ_CONTROL,
    req.length > 0 ? [{ addr: a.req, len: req.length }] : [],
    respSize > 0 ? [{ addr: a.resp, len: respSize }] : [],
  );
  const used = g.queues[VIRTIO_SND_VQ_CONTROL]!.getUsed();
  expect(used?.token).toBe(token);
  const resp = new Uint8Array(respSize + 16);
  g.memory.read(a.resp, resp, 0, resp.length);
  const len = used!.len;
  expect(len).toBeLessThanOrEqual(respSize);
  expect(resp.subarray(len).every((b) => b === FILL)).toBe(true);
  return {
    status: len >= 4 ? dv(resp).getUint32(0, true) : -1,
    used: len,
    payload: resp.slice(4, Math.max(4, len)),
  };
}

function guest(opts: GuestOptions = {}): SimulatedGuest {
  const g = new SimulatedGuest({ memorySize: 1 << 20, config: CONFIG, ctls: true, ...opts });
  g.init();
  return g;
}

/** Reads element `id`'s 512-byte value through CTL_READ. */
function readValue(g: SimulatedGuest, id: number): Uint8Array {
  const r = ctl(g, u32s(VIRTIO_SND_R_CTL_READ, id), 4 + 512);
  expect(r.status).toBe(OK);
  expect(r.used).toBe(516);
  return r.payload;
}

/** The CTL_NOTIFY events the guest has received, decoded. */
function ctlEvents(g: SimulatedGuest): { code: number; controlId: number; mask: number }[] {
  return g.events
    .filter((e) => e.code === VIRTIO_SND_EVT_CTL_NOTIFY)
    .map((e) => decodeCtlEvent(dv(u32s(e.code, e.data)), 0));
}

const bytesOf = (a: Uint8Array): number[] => Array.from(a);

// ---------------------------------------------------------------------------
// Feature and configuration space
// ---------------------------------------------------------------------------

describe("VIRTIO_SND_F_CTLS and the configuration space", () => {
  it("is offered, and controls counted, only when controls are configured", () => {
    const withCtls = guest();
    expect(withCtls.device.deviceFeatures & (1n << BigInt(VIRTIO_SND_F_CTLS))).not.toBe(0n);
    expect(withCtls.config()).toEqual({ jacks: 2, streams: 2, chmaps: 6, controls: N });

    const plain = new SimulatedGuest({ memorySize: 1 << 20 });
    expect(plain.device.deviceFeatures & (1n << BigInt(VIRTIO_SND_F_CTLS))).toBe(0n);
    expect(plain.config().controls).toBe(0);
    // A driver cannot negotiate what the device does not offer.
    expect(() => new SimulatedGuest({ memorySize: 1 << 20, ctls: true }).init()).toThrow("features refused");
  });

  it("reports the count even when the driver did not negotiate the feature", () => {
    expect(guest({ ctls: false }).config().controls).toBe(N);
  });

  it("answers every CTL_* request NOT_SUPP when the feature was not negotiated", () => {
    const g = guest({ ctls: false });
    const reqs: [Uint8Array, number][] = [
      [query(VIRTIO_SND_R_CTL_INFO, 0, N, 96), 4 + N * 96],
      [u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, SOURCE), 4 + 3 * 64],
      [u32s(VIRTIO_SND_R_CTL_READ, VOL), 4 + 512],
      [writeReq(VOL, value32(1, 1)), 4],
      [u32s(VIRTIO_SND_R_CTL_TLV_READ, CAP_VOL), 4 + 64],
      [tlvReq(VIRTIO_SND_R_CTL_TLV_WRITE, PLAY, 1, [1]), 4],
      [tlvReq(VIRTIO_SND_R_CTL_TLV_COMMAND, PLAY, 1, [1]), 4],
      [u32s(VIRTIO_SND_R_CTL_READ), 4 + 512],
    ];
    for (const [req, resp] of reqs) {
      expect(ctl(g, req, resp)).toEqual({ status: NOT_SUPP, used: 4, payload: new Uint8Array(0) });
    }
    expect(g.device.controls.get(VOL).value).toEqual({ kind: "integer", values: [100, 100] });
    // Other requests are unaffected.
    expect(ctl(g, query(VIRTIO_SND_R_JACK_INFO, 0, 2, 24), 4 + 48).status).toBe(OK);
  });

  it("does not send CTL_NOTIFY events to a driver that did not negotiate the feature", () => {
    const g = guest({ ctls: false });
    g.probe();
    expect(g.device.setControlValue(VOL, [1, 2])).toBe(true);
    expect(g.device.controls.get(VOL).value).toEqual({ kind: "integer", values: [1, 2] });
    expect(ctlEvents(g)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------
// CTL_INFO
// ---------------------------------------------------------------------------

describe("VIRTIO_SND_R_CTL_INFO", () => {
  it.each<[CtlInfoLayout, number]>([
    ["aligned", 96],
    ["packed", 92],
  ])("answers %s records (size %i) equal to the configuration", (layout, size) => {
    const g = guest();
    const r = ctl(g, query(VIRTIO_SND_R_CTL_INFO, 0, N, size), 4 + N * size);
    expect(r.status).toBe(OK);
    expect(r.used).toBe(4 + N * size);
    const infos = Array.from({ length: N }, (_, i) => decodeCtlInfo(dv(r.payload), i * size, layout));
    expect(infos).toEqual(INFOS);
    for (let i = 0; i < N; i++) expect(g.device.controls.info(i)).toEqual(INFOS[i]);
    if (layout === "aligned") {
      // Padding after name is 0; the union starts at 72.
      for (let i = 0; i < N; i++)
        expect(bytesOf(r.payload.subarray(i * 96 + 68, i * 96 + 72))).toEqual([0, 0, 0, 0]);
    }
  });

  it("places the union at 72 (aligned) or 68 (packed)", () => {
    const g = guest();
    const a = ctl(g, query(VIRTIO_SND_R_CTL_INFO, VOL, 1, 96), 4 + 96).payload;
    const p = ctl(g, query(VIRTIO_SND_R_CTL_INFO, VOL, 1, 92), 4 + 92).payload;
    expect(dv(a).getUint32(72 + 4, true)).toBe(100); // max
    expect(dv(p).getUint32(68 + 4, true)).toBe(100);
    expect(bytesOf(a.subarray(0, 68))).toEqual(bytesOf(p.subarray(0, 68)));
    expect(bytesOf(a.subarray(72))).toEqual(bytesOf(p.subarray(68)));
  });

  it("answers a sub-range, truncated records and zero-filled longer ones", () => {
    const g = guest();
    const full = ctl(g, query(VIRTIO_SND_R_CTL_INFO, 0, N, 96), 4 + N * 96).payload;
    const r = ctl(g, query(VIRTIO_SND_R_CTL_INFO, 3, 2, 96), 4 + 2 * 96);
    expect(r.status).toBe(OK);
    expect(bytesOf(r.payload)).toEqual(bytesOf(full.subarray(3 * 96, 5 * 96)));
    const short = ctl(g, query(VIRTIO_SND_R_CTL_INFO, 0, 2, 64), 4 + 128);
    expect(short.status).toBe(OK);
    expect(bytesOf(short.payload)).toEqual([...full.subarray(0, 64), ...full.subarray(96, 160)]);
    const long = ctl(g, query(VIRTIO_SND_R_CTL_INFO, N - 1, 1, 128), 4 + 128);
    expect(long.status).toBe(OK);
    expect(bytesOf(long.payload)).toEqual([...full.subarray((N - 1) * 96), ...new Array<number>(32).fill(0)]);
    expect(ctl(g, query(VIRTIO_SND_R_CTL_INFO, N, 0, 96), 4)).toEqual({
      status: OK,
      used: 4,
      payload: new Uint8Array(0),
    });
  });

  it.each<[string, Uint8Array, number]>([
    ["start_id past the end", query(VIRTIO_SND_R_CTL_INFO, N + 1, 0, 96), 4],
    ["start_id + count past the end", query(VIRTIO_SND_R_CTL_INFO, 1, N, 96), 4 + N * 96],
    ["count past the end", query(VIRTIO_SND_R_CTL_INFO, 0, N + 1, 96), 4 + (N + 1) * 96],
    ["start_id + count overflowing 32 bits", query(VIRTIO_SND_R_CTL_INFO, 0xffff_ffff, 2, 96), 4 + 192],
    ["response one byte short", query(VIRTIO_SND_R_CTL_INFO, 0, N, 96), 3 + N * 96],
    ["packed response one byte short", query(VIRTIO_SND_R_CTL_INFO, 0, 2, 92), 3 + 2 * 92],
    ["size 0", query(VIRTIO_SND_R_CTL_INFO, 0, 1, 0), 4 + 96],
    ["request of 12 bytes", query(VIRTIO_SND_R_CTL_INFO, 0, 1, 96).subarray(0, 12), 4 + 96],
    ["request of 20 bytes", concat(query(VIRTIO_SND_R_CTL_INFO, 0, 1, 96), u32s(0)), 4 + 96],
  ])("BAD_MSG: %s", (_name, req, resp) => {
    expect(ctl(guest(), req, resp)).toEqual({ status: BAD_MSG, used: 4, payload: new Uint8Array(0) });
  });
});

// ---------------------------------------------------------------------------
// CTL_ENUM_ITEMS
// ---------------------------------------------------------------------------

describe("VIRTIO_SND_R_CTL_ENUM_ITEMS", () => {
  it("answers the items of an ENUMERATED element", () => {
    const g = guest();
    const r = ctl(g, u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, SOURCE), 4 + 3 * 64);
    expect(r.status).toBe(OK);
    expect(r.used).toBe(4 + 192);
    expect([0, 1, 2].map((i) => decodeCtlEnumItem(dv(r.payload), i * 64).item)).toEqual([
      "Mic",
      "Line",
      "Internal Mic",
    ]);
    // Each item 0-terminated and zero-padded.
    expect(bytesOf(r.payload.subarray(64, 128))).toEqual(
      [..."Line"].map((c) => c.charCodeAt(0)).concat(new Array<number>(60).fill(0)),
    );
    // A larger response buffer is fine: only the items are written.
    const big = ctl(g, u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, SOURCE), 4 + 1000);
    expect(big.status).toBe(OK);
    expect(big.used).toBe(4 + 192);
    expect(g.device.controls.get(SOURCE).items).toEqual(["Mic", "Line", "Internal Mic"]);
  });

  it.each<[string, Uint8Array, number, number]>([
    ["not ENUMERATED", u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, VOL), 4 + 192, NOT_SUPP],
    ["response one item short", u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, SOURCE), 4 + 128, BAD_MSG],
    ["response one byte short", u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, SOURCE), 3 + 192, BAD_MSG],
    ["control_id out of range", u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, N), 4 + 192, BAD_MSG],
    ["control_id 0xffffffff", u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, 0xffff_ffff), 4 + 192, BAD_MSG],
    ["header only", u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS), 4 + 192, BAD_MSG],
    ["request of 12 bytes", u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, SOURCE, 0), 4 + 192, BAD_MSG],
  ])("%s", (_name, req, resp, status) => {
    expect(ctl(guest(), req, resp)).toEqual({ status, used: 4, payload: new Uint8Array(0) });
  });
});

// ---------------------------------------------------------------------------
// CTL_READ and CTL_WRITE
// ---------------------------------------------------------------------------

describe("VIRTIO_SND_R_CTL_READ", () => {
  it("answers each element's initial value as a full virtio_snd_ctl_value", () => {
    const g = guest();
    const expected: [number, Uint8Array][] = [
      [VOL, value32(100, 100)],
      [SWITCH, value32(1, 1)],
      [CAP_VOL, value32(128, 128)],
      [SOURCE, value32(1)],
      [COUNTER, value64(0n, 1n << 40n)],
      [BLOB, valueBytes(Array.from({ length: 16 }, (_, i) => i + 1))],
      [IEC, iecValue(IEC_STATUS, IEC_SUBCODE, IEC_SUBFRAME)],
      [METER, value32(0)],
      [PLAY, value32(5)],
      [STEPPED, value32(-20, 0, 20)],
    ];
    for (const [id, value] of expected)
      expect(bytesOf(readValue(g, id)), `control ${id}`).toEqual(bytesOf(value));
  });

  it("gives the host signed members", () => {
    const c = guest().device.controls;
    expect(c.get(STEPPED).value).toEqual({ kind: "integer", values: [-20, 0, 20] });
    expect(c.get(COUNTER).value).toEqual({ kind: "integer64", values: [0n, 1n << 40n] });
    expect(c.get(BLOB).value.kind).toBe("bytes");
    expect(c.find("Master Playback Volume", 1)).toBe(PLAY);
    expect(c.find("Master Playback Volume")).toBe(VOL);
    expect(c.find("Nope")).toBe(-1);
  });

  it.each<[string, Uint8Array, number, number]>([
    ["without READ access", u32s(VIRTIO_SND_R_CTL_READ, WO), 4 + 512, NOT_SUPP],
    ["response one byte short", u32s(VIRTIO_SND_R_CTL_READ, VOL), 3 + 512, BAD_MSG],
    ["status-only response", u32s(VIRTIO_SND_R_CTL_READ, VOL), 4, BAD_MSG],
    ["control_id out of range", u32s(VIRTIO_SND_R_CTL_READ, N), 4 + 512, BAD_MSG],
    ["header only", u32s(VIRTIO_SND_R_CTL_READ), 4 + 512, BAD_MSG],
    ["request of 12 bytes", u32s(VIRTIO_SND_R_CTL_READ, VOL, 0), 4 + 512, BAD_MSG],
    [
      "a write-sized request",
      concat(u32s(VIRTIO_SND_R_CTL_READ, VOL), new Uint8Array(512)),
      4 + 512,
      BAD_MSG,
    ],
  ])("%s", (_name, req, resp, status) => {
    expect(ctl(guest(), req, resp)).toEqual({ status, used: 4, payload: new Uint8Array(0) });
  });

  it("answers OK into a response larger than needed, writing only hdr + ctl_value", () => {
    const r = ctl(guest(), u32s(VIRTIO_SND_R_CTL_READ, VOL), 4 + 1024);
    expect(r.status).toBe(OK);
    expect(r.used).toBe(516);
  });
});

describe("VIRTIO_SND_R_CTL_WRITE", () => {
  const good: [string, number, Uint8Array][] = [
    ["INTEGER", VOL, value32(0, 55)],
    ["BOOLEAN", SWITCH, value32(0, 1)],
    ["INTEGER (dB)", CAP_VOL, value32(0, 128)],
    ["ENUMERATED", SOURCE, value32(2)],
    ["INTEGER64", COUNTER, value64(-(1n << 40n), 1234n)],
    ["BYTES", BLOB, valueBytes([9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 255, 254, 253, 252, 251, 250])],
    ["IEC958", IEC, iecValue(IEC_SUBCODE.subarray(0, 24), IEC_SUBCODE, Uint8Array.from([1, 2, 3, 4]))],
    ["write-only BOOLEAN", WO, value32(1)],
    ["INTEGER, negative on step", STEPPED, value32(-15, 5, -20)],
  ];

  it.each(good)("round-trips %s through CTL_WRITE and CTL_READ, notifying both sides", (_n, id, value) => {
    const changes: ControlChange[] = [];
    const g = guest({ onControlChange: (c) => changes.push(c) });
    g.probe();
    expect(ctl(g, writeReq(id, value), 4)).toEqual({ status: OK, used: 4, payload: new Uint8Array(0) });
    if (id !== WO) expect(bytesOf(readValue(g, id))).toEqual(bytesOf(value));
    expect(changes).toHaveLength(1);
    expect(changes[0]!.kind).toBe("value");
    expect(changes[0]!.controlId).toBe(id);
    expect(changes[0]!.control.value).toEqual(g.device.controls.get(id).value);
    expect(ctlEvents(g)).toEqual([
      { code: VIRTIO_SND_EVT_CTL_NOTIFY, controlId: id, mask: 1 << VIRTIO_SND_CTL_EVT_MASK_VALUE },
    ]);
  });

  it("decodes written values for the host", () => {
    const g = guest();
    ctl(g, writeReq(STEPPED, value32(-15, 5, -20)), 4);
    ctl(g, writeReq(COUNTER, value64(-(1n << 40n), 1234n)), 4);
    ctl(g, writeReq(IEC, iecValue(IEC_STATUS, IEC_SUBCODE, Uint8Array.from([1, 2, 3, 4]))), 4);
    const c = g.device.controls;
    expect(c.get(STEPPED).value).toEqual({ kind: "integer", values: [-15, 5, -20] });
    expect(c.get(COUNTER).value).toEqual({ kind: "integer64", values: [-(1n << 40n), 1234n] });
    const iec = c.get(IEC).value;
    expect(iec.kind === "iec958" && bytesOf(iec.value.digSubframe)).toEqual([1, 2, 3, 4]);
  });

  it("ignores the bytes past the members and the IEC958 pad byte", () => {
    const g = guest();
    const v = value32(7, 8);
    v.fill(0x55, 8); // garbage after the two members
    expect(ctl(g, writeReq(VOL, v), 4).status).toBe(OK);
    expect(bytesOf(readValue(g, VOL))).toEqual(bytesOf(value32(7, 8)));
    const iec = iecValue(IEC_STATUS, IEC_SUBCODE, IEC_SUBFRAME, 0x99);
    expect(ctl(g, writeReq(IEC, iec), 4).status).toBe(OK);
    expect(bytesOf(readValue(g, IEC))).toEqual(bytesOf(iecValue(IEC_STATUS, IEC_SUBCODE, IEC_SUBFRAME)));
  });

  it("answers OK without telling anyone when the value does not change", () => {
    const changes: ControlChange[] = [];
    const g = guest({ onControlChange: (c) => changes.push(c) });
    g.probe();
    expect(ctl(g, writeReq(VOL, value32(100, 100)), 4).status).toBe(OK);
    expect(changes).toEqual([]);
    expect(ctlEvents(g)).toEqual([]);
  });

  const bad: [string, number, Uint8Array, number][] = [
    ["INTEGER above max", VOL, value32(50, 101), BAD_MSG],
    ["INTEGER below min (le32 read signed)", VOL, value32(-1, 50), BAD_MSG],
    ["INTEGER off step", STEPPED, value32(-14, 0, 0), BAD_MSG],
    ["INTEGER below a negative min", STEPPED, value32(-25, 0, 0), BAD_MSG],
    ["INTEGER above max in the last member", STEPPED, value32(0, 0, 25), BAD_MSG],
    ["BOOLEAN 2", SWITCH, value32(1, 2), BAD_MSG],
    ["BOOLEAN 0xffffffff", SWITCH, value32(0xffff_ffff, 0), BAD_MSG],
    ["ENUMERATED index = items", SOURCE, value32(3), BAD_MSG],
    ["INTEGER64 off step", COUNTER, value64(1n, 0n), BAD_MSG],
    ["INTEGER64 above max", COUNTER, value64(0n, (1n << 40n) + 2n), BAD_MSG],
    ["INTEGER64 below min", COUNTER, value64(-(1n << 40n) - 2n, 0n), BAD_MSG],
    ["without WRITE access", METER, value32(10), NOT_SUPP],
    ["without WRITE access, even an invalid value", METER, value32(5000), NOT_SUPP],
  ];

  it.each(bad)("rejects %s and keeps the value", (_n, id, value, status) => {
    const changes: ControlChange[] = [];
    const g = guest({ onControlChange: (c) => changes.push(c) });
    g.probe();
    const before = readValue(g, id);
    const host = g.device.controls.get(id).value;
    expect(ctl(g, writeReq(id, value), 4)).toEqual({ status, used: 4, payload: new Uint8Array(0) });
    expect(bytesOf(readValue(g, id))).toEqual(bytesOf(before));
    expect(g.device.controls.get(id).value).toEqual(host);
    expect(changes).toEqual([]);
    expect(ctlEvents(g)).toEqual([]);
  });

  it.each<[string, Uint8Array]>([
    ["control_id out of range", writeReq(N, value32(0))],
    ["control_id 0xffffffff", writeReq(0xffff_ffff, value32(0))],
    ["value one byte short (519)", writeReq(VOL, value32(1, 1)).subarray(0, 519)],
    ["value one byte long (521)", concat(writeReq(VOL, value32(1, 1)), new Uint8Array(1))],
    ["header only", u32s(VIRTIO_SND_R_CTL_WRITE, VOL)],
    ["code only", u32s(VIRTIO_SND_R_CTL_WRITE)],
  ])("BAD_MSG: %s", (_n, req) => {
    const g = guest();
    expect(ctl(g, req, 4)).toEqual({ status: BAD_MSG, used: 4, payload: new Uint8Array(0) });
    expect(g.device.controls.get(VOL).value).toEqual({ kind: "integer", values: [100, 100] });
  });

  it("answers IO_ERR and undoes the change when the embedder refuses it", () => {
    const g = guest({
      onControlChange: () => {
        throw new Error("host mixer unavailable");
      },
    });
    g.probe();
    expect(ctl(g, writeReq(VOL, value32(1, 2)), 4)).toEqual({
      status: IO_ERR,
      used: 4,
      payload: new Uint8Array(0),
    });
    expect(bytesOf(readValue(g, VOL))).toEqual(bytesOf(value32(100, 100)));
    expect(ctlEvents(g)).toEqual([]);
    expect(g.needsReset).toBeNull();
  });

  it("writes into an INACTIVE element (ALSA allows it)", () => {
    const g = guest();
    expect(g.device.setControlActive(VOL, false)).toBe(true);
    expect(ctl(g, writeReq(VOL, value32(3, 4)), 4).status).toBe(OK);
    expect(bytesOf(readValue(g, VOL))).toEqual(bytesOf(value32(3, 4)));
  });
});

// ---------------------------------------------------------------------------
// Metadata: CTL_TLV_READ, CTL_TLV_WRITE, CTL_TLV_COMMAND
// ---------------------------------------------------------------------------

/** The capture volume's dB scale: -64 dB, 0.5 dB steps. */
const CAP_TLV = [1, 8, -6400 >>> 0, 50];

describe("VIRTIO_SND_R_CTL_TLV_READ", () => {
  it("answers the metadata (an ALSA dB scale)", () => {
    const g = guest();
    const r = ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, CAP_VOL), 4 + 16);
    expect(r).toEqual({ status: OK, used: 20, payload: u32s(...CAP_TLV) });
    expect(decodeCtlTlv(dv(r.payload), 0)).toEqual({ type: 1, value: [-6400 >>> 0, 50] });
    // A larger buffer (Linux passes the user's container size): only the TLV is written.
    expect(ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, CAP_VOL), 4 + 4096).used).toBe(20);
    expect(bytesOf(g.device.controls.get(CAP_VOL).tlv!)).toEqual(bytesOf(u32s(...CAP_TLV)));
  });

  it.each([0, 1, 4, 8, 10, 15])("writes as much as fits into %i bytes and succeeds", (room) => {
    const r = ctl(guest(), u32s(VIRTIO_SND_R_CTL_TLV_READ, CAP_VOL), 4 + room);
    expect(r.status).toBe(OK);
    expect(r.used).toBe(4 + room);
    expect(bytesOf(r.payload)).toEqual(bytesOf(u32s(...CAP_TLV).subarray(0, room)));
  });

  it.each<[string, Uint8Array, number]>([
    ["without TLV_READ access", u32s(VIRTIO_SND_R_CTL_TLV_READ, VOL), NOT_SUPP],
    ["control_id out of range", u32s(VIRTIO_SND_R_CTL_TLV_READ, N), BAD_MSG],
    ["header only", u32s(VIRTIO_SND_R_CTL_TLV_READ), BAD_MSG],
    ["request of 16 bytes", u32s(VIRTIO_SND_R_CTL_TLV_READ, CAP_VOL, 1, 0), BAD_MSG],
  ])("%s", (_n, req, status) => {
    expect(ctl(guest(), req, 4 + 64)).toEqual({ status, used: 4, payload: new Uint8Array(0) });
  });
});

describe("VIRTIO_SND_R_CTL_TLV_WRITE and VIRTIO_SND_R_CTL_TLV_COMMAND", () => {
  it("TLV_WRITE replaces the metadata, tells the embedder and the driver", () => {
    const changes: ControlChange[] = [];
    const g = guest({ onControlChange: (c) => changes.push(c) });
    g.probe();
    expect(ctl(g, tlvReq(VIRTIO_SND_R_CTL_TLV_WRITE, PLAY, 0x200, [7, 8]), 4)).toEqual({
      status: OK,
      used: 4,
      payload: new Uint8Array(0),
    });
    expect(ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, PLAY), 4 + 64).payload).toEqual(u32s(0x200, 8, 7, 8));
    expect(changes.map((c) => [c.kind, c.controlId])).toEqual([["tlv", PLAY]]);
    expect(changes[0]!.control.tlv).toEqual(u32s(0x200, 8, 7, 8));
    expect(ctlEvents(g)).toEqual([
      { code: VIRTIO_SND_EVT_CTL_NOTIFY, controlId: PLAY, mask: 1 << VIRTIO_SND_CTL_EVT_MASK_TLV },
    ]);
    // The same metadata again: OK, and nothing to tell.
    expect(ctl(g, tlvReq(VIRTIO_SND_R_CTL_TLV_WRITE, PLAY, 0x200, [7, 8]), 4).status).toBe(OK);
    expect(changes).toHaveLength(1);
    // An empty value is a valid TLV.
    expect(ctl(g, tlvReq(VIRTIO_SND_R_CTL_TLV_WRITE, PLAY, 3, []), 4).status).toBe(OK);
    expect(ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, PLAY), 4 + 64).payload).toEqual(u32s(3, 0));
  });

  it("TLV_WRITE takes a 65536-byte value (a request of 65552 bytes)", () => {
    const g = guest();
    const words = Array.from({ length: 16384 }, (_, i) => (i * 2654435761) >>> 0);
    expect(ctl(g, tlvReq(VIRTIO_SND_R_CTL_TLV_WRITE, PLAY, 9, words), 4).status).toBe(OK);
    const r = ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, PLAY), 4 + 8 + 65536);
    expect(r.status).toBe(OK);
    expect(r.used).toBe(4 + 8 + 65536);
    expect(decodeCtlTlv(dv(r.payload), 0)).toEqual({ type: 9, value: words });
    // And a normal request still works afterwards (the large buffer is not the request any more).
    expect(ctl(g, u32s(VIRTIO_SND_R_CTL_READ, PLAY), 4 + 512).status).toBe(OK);
  });

  it("TLV_COMMAND goes to the embedder and leaves the metadata alone", () => {
    const changes: ControlChange[] = [];
    const g = guest({ onControlChange: (c) => changes.push(c) });
    g.probe();
    expect(ctl(g, tlvReq(VIRTIO_SND_R_CTL_TLV_COMMAND, PLAY, 0x42, [1, 2, 3, 4]), 4).status).toBe(OK);
    expect(changes).toHaveLength(1);
    const c = changes[0]!;
    expect(c.kind).toBe("tlv-command");
    expect(c.kind === "tlv-command" && c.tlv).toEqual(u32s(0x42, 16, 1, 2, 3, 4));
    expect(ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, PLAY), 4 + 64).payload).toEqual(u32s(0x100, 12, 1, 2, 3));
    expect(ctlEvents(g)).toEqual([]);
  });

  it("answers IO_ERR when the embedder refuses a TLV write or command, keeping the metadata", () => {
    const g = guest({
      onControlChange: () => {
        throw new Error("no");
      },
    });
    expect(ctl(g, tlvReq(VIRTIO_SND_R_CTL_TLV_WRITE, PLAY, 5, [5]), 4).status).toBe(IO_ERR);
    expect(ctl(g, tlvReq(VIRTIO_SND_R_CTL_TLV_COMMAND, PLAY, 5, [5]), 4).status).toBe(IO_ERR);
    expect(ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, PLAY), 4 + 64).payload).toEqual(u32s(0x100, 12, 1, 2, 3));
  });

  for (const [name, code] of [
    ["TLV_WRITE", VIRTIO_SND_R_CTL_TLV_WRITE],
    ["TLV_COMMAND", VIRTIO_SND_R_CTL_TLV_COMMAND],
  ] as const) {
    it.each<[string, Uint8Array, number]>([
      ["without the access bit", tlvReq(code, CAP_VOL, 1, [1, 2]), NOT_SUPP],
      ["control_id out of range", tlvReq(code, N, 1, [1, 2]), BAD_MSG],
      ["length not a multiple of 4", concat(tlvReq(code, PLAY, 1, [1], 6), new Uint8Array(2)), BAD_MSG],
      ["length longer than the request", tlvReq(code, PLAY, 1, [1, 2], 12), BAD_MSG],
      ["length shorter than the request", tlvReq(code, PLAY, 1, [1, 2], 4), BAD_MSG],
      ["length 65540", tlvReq(code, PLAY, 1, [], 65540), BAD_MSG],
      ["length 0xfffffffc", tlvReq(code, PLAY, 1, [], 0xffff_fffc), BAD_MSG],
      ["no TLV header", u32s(code, PLAY), BAD_MSG],
      ["half a TLV header", u32s(code, PLAY, 1), BAD_MSG],
      ["code only", u32s(code), BAD_MSG],
    ])(`${name}: %s`, (_n, req, status) => {
      const g = guest();
      expect(ctl(g, req, 4)).toEqual({ status, used: 4, payload: new Uint8Array(0) });
      expect(g.device.controls.get(PLAY).tlv).toEqual(u32s(0x100, 12, 1, 2, 3));
    });
  }

  it("a value of 65540 bytes is refused even when the request carries it all", () => {
    const g = guest();
    const req = tlvReq(VIRTIO_SND_R_CTL_TLV_WRITE, PLAY, 1, new Array<number>(16385).fill(1));
    expect(req.length).toBe(16 + 65540);
    expect(ctl(g, req, 4).status).toBe(BAD_MSG);
  });

  it("a long request of another kind is refused on its length", () => {
    const g = guest();
    expect(ctl(g, concat(u32s(VIRTIO_SND_R_CTL_READ, VOL), new Uint8Array(4000)), 4 + 512).status).toBe(
      BAD_MSG,
    );
    expect(ctl(g, concat(writeReq(VOL, value32(1, 1)), new Uint8Array(60000)), 4).status).toBe(BAD_MSG);
    expect(g.device.controls.get(VOL).value).toEqual({ kind: "integer", values: [100, 100] });
  });
});

// ---------------------------------------------------------------------------
// Host side
// ---------------------------------------------------------------------------

describe("host-side control API", () => {
  it("setControlValue changes the value and sends CTL_NOTIFY (VALUE)", () => {
    const changes: ControlChange[] = [];
    const g = guest({ onControlChange: (c) => changes.push(c) });
    g.probe();
    expect(g.device.setControlValue(VOL, [30, 40])).toBe(true);
    expect(bytesOf(readValue(g, VOL))).toEqual(bytesOf(value32(30, 40)));
    expect(g.events).toHaveLength(1);
    const e = g.events[0]!;
    expect(decodeCtlEvent(dv(u32s(e.code, e.data)), 0)).toEqual({
      code: VIRTIO_SND_EVT_CTL_NOTIFY,
      controlId: VOL,
      mask: 1 << VIRTIO_SND_CTL_EVT_MASK_VALUE,
    });
    // The same value again: nothing changes, nothing is sent. The embedder is never told of its own changes.
    expect(g.device.setControlValue(VOL, [30, 40])).toBe(false);
    expect(g.events).toHaveLength(1);
    expect(changes).toEqual([]);
  });

  it("sets every type, read-only elements included", () => {
    const g = guest();
    g.probe();
    expect(g.device.setControlValue(SWITCH, [false, true])).toBe(true);
    expect(g.device.setControlValue(SOURCE, [2])).toBe(true);
    expect(g.device.setControlValue(COUNTER, [-2n, 2n])).toBe(true);
    expect(g.device.setControlValue(BLOB, new Uint8Array(16).fill(3))).toBe(true);
    expect(
      g.device.setControlValue(IEC, {
        status: new Uint8Array(24),
        subcode: new Uint8Array(0),
        digSubframe: new Uint8Array(4),
      }),
    ).toBe(true);
    expect(g.device.setControlValue(METER, [999])).toBe(true);
    expect(g.device.setControlValue(STEPPED, [-5, 5, 15])).toBe(true);
    expect(bytesOf(readValue(g, SWITCH))).toEqual(bytesOf(value32(0, 1)));
    expect(bytesOf(readValue(g, SOURCE))).toEqual(bytesOf(value32(2)));
    expect(bytesOf(readValue(g, COUNTER))).toEqual(bytesOf(value64(-2n, 2n)));
    expect(bytesOf(readValue(g, BLOB))).toEqual(bytesOf(valueBytes(new Array<number>(16).fill(3))));
    expect(bytesOf(readValue(g, IEC))).toEqual(bytesOf(new Uint8Array(512)));
    expect(bytesOf(readValue(g, METER))).toEqual(bytesOf(value32(999)));
    expect(bytesOf(readValue(g, STEPPED))).toEqual(bytesOf(value32(-5, 5, 15)));
    expect(ctlEvents(g).map((e) => e.controlId)).toEqual([
      SWITCH,
      SOURCE,
      COUNTER,
      BLOB,
      IEC,
      METER,
      STEPPED,
    ]);
  });

  it.each<[string, number, unknown]>([
    ["unknown element", N, [0]],
    ["negative id", -1, [0]],
    ["too few members", VOL, [1]],
    ["too many members", VOL, [1, 2, 3]],
    ["above max", VOL, [1, 101]],
    ["off step", STEPPED, [0, 0, 1]],
    ["not an integer", VOL, [1.5, 1]],
    ["boolean 2", SWITCH, [2, 0]],
    ["enumerated out of range", SOURCE, [3]],
    ["integer64 as number", COUNTER, [0, 0]],
    ["byte 256", BLOB, new Array<number>(16).fill(256)],
    ["IEC958 as an array", IEC, [0]],
    [
      "IEC958 status too long",
      IEC,
      { status: new Uint8Array(25), subcode: new Uint8Array(0), digSubframe: new Uint8Array(0) },
    ],
  ])("setControlValue throws ERR_INVALID_STATE: %s", (_n, id, value) => {
    const g = guest();
    g.probe();
    let error: unknown;
    try {
      g.device.setControlValue(id, value as number[]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(VirtioSndError);
    expect((error as VirtioSndError).code).toBe("ERR_INVALID_STATE");
    expect(ctlEvents(g)).toEqual([]);
    expect(g.device.controls.get(VOL).value).toEqual({ kind: "integer", values: [100, 100] });
  });

  it("setControlActive toggles INACTIVE and sends CTL_NOTIFY (INFO)", () => {
    const g = guest();
    g.probe();
    expect(g.device.setControlActive(SWITCH, false)).toBe(true);
    expect(g.device.setControlActive(SWITCH, false)).toBe(false);
    const r = ctl(g, query(VIRTIO_SND_R_CTL_INFO, SWITCH, 1, 96), 4 + 96);
    expect(decodeCtlInfo(dv(r.payload), 0).access).toBe(R | W | INACTIVE);
    expect(g.device.setControlActive(SWITCH, true)).toBe(true);
    expect(g.device.controls.info(SWITCH).access).toBe(R | W);
    const info = 1 << VIRTIO_SND_CTL_EVT_MASK_INFO;
    expect(ctlEvents(g)).toEqual([
      { code: VIRTIO_SND_EVT_CTL_NOTIFY, controlId: SWITCH, mask: info },
      { code: VIRTIO_SND_EVT_CTL_NOTIFY, controlId: SWITCH, mask: info },
    ]);
  });

  it("setControlTlv replaces the metadata and sends CTL_NOTIFY (TLV)", () => {
    const g = guest();
    g.probe();
    expect(g.device.setControlTlv(CAP_VOL, dbScaleTlv(-32, 0.25, true))).toBe(true);
    expect(g.device.setControlTlv(CAP_VOL, u32s(1, 8, -3200 >>> 0, 25 | 0x1_0000))).toBe(false);
    const r = ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, CAP_VOL), 4 + 64);
    expect(r.payload).toEqual(u32s(1, 8, -3200 >>> 0, 25 | 0x1_0000));
    expect(ctlEvents(g)).toEqual([
      { code: VIRTIO_SND_EVT_CTL_NOTIFY, controlId: CAP_VOL, mask: 1 << VIRTIO_SND_CTL_EVT_MASK_TLV },
    ]);
    expect(() => g.device.setControlTlv(CAP_VOL, u32s(1, 12, 0))).toThrow(VirtioSndError);
  });

  it("values survive a device reset", () => {
    const g = guest();
    g.device.setControlValue(VOL, [10, 20]);
    g.device.reset();
    expect(g.device.controls.get(VOL).value).toEqual({ kind: "integer", values: [10, 20] });
  });
});

// ---------------------------------------------------------------------------
// Presets
// ---------------------------------------------------------------------------

describe("volumeControl and muteControl", () => {
  it("build a mixer in one line each", () => {
    const g = guest({
      config: {
        controls: [
          volumeControl("PCM Playback Volume", "output", { channels: 1, value: 40 }),
          volumeControl("Mic Capture Volume", "input", {
            db: { minDb: -12, maxDb: 30, stepDb: 1.5 },
            index: 2,
          }),
          muteControl("Capture Switch", "input", { channels: 1, value: false }),
        ],
      },
    });
    const r = ctl(g, query(VIRTIO_SND_R_CTL_INFO, 0, 3, 96), 4 + 3 * 96);
    const infos = [0, 1, 2].map((i) => decodeCtlInfo(dv(r.payload), i * 96));
    expect(infos[0]).toMatchObject({ count: 1, value: { kind: "integer", min: 0, max: 100, step: 1 } });
    expect(infos[1]).toMatchObject({
      role: (VIRTIO_SND_CTL_ROLE_VOLUME << 1) | VIRTIO_SND_D_INPUT,
      index: 2,
      access: R | W | TLV_R,
      value: { kind: "integer", min: 0, max: 28, step: 1 },
    });
    expect(infos[2]).toMatchObject({
      role: (VIRTIO_SND_CTL_ROLE_MUTE << 1) | VIRTIO_SND_D_INPUT,
      type: VIRTIO_SND_CTL_TYPE_BOOLEAN,
    });
    expect(g.device.controls.get(0).value).toEqual({ kind: "integer", values: [40] });
    // Initially at 0 dB: (0 - -12) / 1.5 = 8.
    expect(g.device.controls.get(1).value).toEqual({ kind: "integer", values: [8, 8] });
    expect(g.device.controls.get(2).value).toEqual({ kind: "integer", values: [0] });
    expect(ctl(g, u32s(VIRTIO_SND_R_CTL_TLV_READ, 1), 4 + 16).payload).toEqual(u32s(1, 8, -1200 >>> 0, 150));
  });

  it("refuses a dB range that is not a whole number of steps", () => {
    expect(() => volumeControl("X", "output", { db: { minDb: -10, maxDb: 0, stepDb: 3 } })).toThrow(
      VirtioSndError,
    );
    expect(() => volumeControl("X", "output", { db: { minDb: 0, maxDb: 0, stepDb: 1 } })).toThrow(
      VirtioSndError,
    );
  });
});

// ---------------------------------------------------------------------------
// Configuration checks (§5.14.6.10.1 device requirements)
// ---------------------------------------------------------------------------

describe("control configuration checks", () => {
  const base = { type: "integer", name: "X", min: 0, max: 10 } as const;
  const cases: [string, ControlConfig[]][] = [
    ["count 0", [{ ...base, count: 0 }]],
    ["INTEGER count 129", [{ ...base, count: 129 }]],
    ["BOOLEAN count 129", [{ type: "boolean", name: "X", count: 129 }]],
    ["INTEGER64 count 65", [{ type: "integer64", name: "X", min: 0n, max: 1n, count: 65 }]],
    ["ENUMERATED count 129", [{ type: "enumerated", name: "X", items: ["a"], count: 129 }]],
    ["BYTES count 513", [{ type: "bytes", name: "X", count: 513 }]],
    ["IEC958 count 2", [{ type: "iec958", name: "X", count: 2 }]],
    ["count 1.5", [{ ...base, count: 1.5 }]],
    ["empty name", [{ ...base, name: "" }]],
    ["name of 44 characters", [{ ...base, name: "n".repeat(44) }]],
    ["non-ASCII name", [{ ...base, name: "Lautstärke" }]],
    ["name with a control character", [{ ...base, name: "a\u0000b" }]],
    ["duplicate (name, index)", [base, { type: "boolean", name: "X" }]],
    [
      "duplicate (name, index 3)",
      [
        { ...base, index: 3 },
        { ...base, index: 3 },
      ],
    ],
    ["unknown type", [{ ...base, type: "float" } as unknown as ControlConfig]],
    ["unknown role", [{ ...base, role: 4, direction: "output" }]],
    ["role without direction", [{ ...base, role: VIRTIO_SND_CTL_ROLE_VOLUME }]],
    ["direction without role", [{ ...base, direction: "output" }]],
    ["bad direction", [{ ...base, role: 1, direction: "sideways" as "output" }]],
    ["undefined access bit", [{ ...base, access: 1 << 7 }]],
    ["TLV_READ without tlv", [{ ...base, access: R | TLV_R }]],
    ["min above max", [{ ...base, min: 5, max: 4 }]],
    ["min not 32-bit", [{ ...base, min: -0x8000_0001 }]],
    ["negative step", [{ ...base, step: -1 }]],
    ["INTEGER64 min above max", [{ type: "integer64", name: "X", min: 2n, max: 1n }]],
    ["INTEGER64 max beyond 64 bits", [{ type: "integer64", name: "X", min: 0n, max: 1n << 63n }]],
    ["initial value above max", [{ ...base, value: [11] }]],
    ["initial value off step", [{ ...base, step: 2, value: [3] }]],
    ["initial value count mismatch", [{ ...base, count: 2, value: [1] }]],
    ["initial boolean 2", [{ type: "boolean", name: "X", value: [2] }]],
    ["ENUMERATED without items", [{ type: "enumerated", name: "X", items: [] }]],
    ["ENUMERATED empty item", [{ type: "enumerated", name: "X", items: ["a", ""] }]],
    ["ENUMERATED item of 64 characters", [{ type: "enumerated", name: "X", items: ["i".repeat(64)] }]],
    ["ENUMERATED initial index = items", [{ type: "enumerated", name: "X", items: ["a"], value: [1] }]],
    ["BYTES value 256", [{ type: "bytes", name: "X", value: [256] }]],
    ["tlv bytes with a wrong length field", [{ ...base, tlv: u32s(1, 8, 0) }]],
    ["tlv bytes shorter than a header", [{ ...base, tlv: new Uint8Array(4) }]],
    ["tlv bytes of unaligned length", [{ ...base, tlv: concat(u32s(1, 2), new Uint8Array(2)) }]],
    [
      "tlv value larger than 65536 bytes",
      [{ ...base, tlv: { type: 1, value: new Array<number>(16385).fill(0) } }],
    ],
    ["tlv word not 32-bit", [{ ...base, tlv: { type: 1, value: [-1] } }]],
  ];

  it.each(cases)("ERR_INVALID_CONFIG: %s", (_n, controls) => {
    let error: unknown;
    try {
      new SimulatedGuest({ memorySize: 1 << 20, config: { controls } });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(VirtioSndError);
    expect((error as VirtioSndError).code).toBe("ERR_INVALID_CONFIG");
  });

  it("accepts the limits", () => {
    const g = new SimulatedGuest({
      memorySize: 1 << 20,
      config: {
        controls: [
          { ...base, name: "n".repeat(43), count: 128 },
          { ...base, name: "n".repeat(43), index: 1 },
          { type: "integer64", name: "A", min: -(1n << 63n), max: (1n << 63n) - 1n, count: 64 },
          { type: "bytes", name: "B", count: 512 },
          { type: "enumerated", name: "E", items: ["i".repeat(63)], count: 128 },
          {
            type: "integer",
            name: "T",
            min: 0,
            max: 1,
            tlv: { type: 1, value: new Array<number>(16384).fill(0) },
          },
        ],
      },
    });
    expect(g.device.controls.length).toBe(6);
    expect(g.device.controls.info(5).access).toBe(R | W | TLV_R);
  });
});

// ---------------------------------------------------------------------------
// Property: random CTL_* requests
// ---------------------------------------------------------------------------

describe("random CTL_* requests", () => {
  const CODES = [
    VIRTIO_SND_R_CTL_INFO,
    VIRTIO_SND_R_CTL_ENUM_ITEMS,
    VIRTIO_SND_R_CTL_READ,
    VIRTIO_SND_R_CTL_WRITE,
    VIRTIO_SND_R_CTL_TLV_READ,
    VIRTIO_SND_R_CTL_TLV_WRITE,
    VIRTIO_SND_R_CTL_TLV_COMMAND,
  ];
  const STATUSES = [OK, BAD_MSG, NOT_SUPP, IO_ERR];
  const u32 = fc.integer({ min: 0, max: 0xffff_ffff });

  /** A request: code and control_id, then either random bytes or a plausible body. */
  const requestArb = fc
    .tuple(
      fc.constantFrom(...CODES),
      fc.oneof(fc.integer({ min: 0, max: N + 1 }), u32),
      fc.oneof(
        fc.uint8Array({ maxLength: 600 }),
        fc.constant(new Uint8Array(0)),
        // A query_info tail, a ctl_value, or a TLV with a random or a consistent length.
        fc
          .tuple(fc.nat(N + 2), fc.constantFrom(0, 1, 64, 92, 96, 200))
          .map(([count, size]) => u32s(count, size)),
        fc.uint8Array({ minLength: 512, maxLength: 512 }),
        fc.array(u32, { maxLength: 40 }).chain((words) =>
          fc.oneof(
            fc.constant(u32s(1, 4 * words.length, ...words)),
            u32.map((len) => u32s(1, len, ...words)),
          ),
        ),
      ),
      fc.oneof(fc.integer({ min: 0, max: 1200 }), fc.constantFrom(3, 4, 516, 4 + 11 * 96)),
      fc.boolean(),
    )
    .map(([code, id, body, resp, refuse]) => ({ req: concat(u32s(code, id), body), resp, refuse }));

  it("never throw and always answer a valid status", () => {
    let refuse = false;
    const g = guest({
      onControlChange: () => {
        if (refuse) throw new Error("refused");
      },
    });
    const plain = guest({ ctls: false });
    g.probe();
    fc.assert(
      fc.property(requestArb, ({ req, resp, refuse: r }) => {
        refuse = r;
        for (const target of [g, plain]) {
          const reply = ctl(target, req, resp);
          if (resp < 4) {
            expect(reply.used).toBe(0);
            continue;
          }
          expect(STATUSES).toContain(reply.status);
          if (reply.status !== OK) expect(reply.used).toBe(4);
          if (target === plain) expect(reply.status).toBe(NOT_SUPP);
        }
        expect(g.needsReset).toBeNull();
        // Every value the device holds is still one its element allows.
        for (let id = 0; id < N; id++) {
          const c = g.device.controls.get(id);
          if (c.value.kind === "integer" && c.info.value.kind === "integer") {
            const min = c.info.value.min | 0;
            const max = c.info.value.max | 0;
            for (const v of c.value.values) expect(v >= min && v <= max).toBe(true);
          }
          if (c.value.kind === "enumerated")
            for (const v of c.value.values) expect(v).toBeLessThan(c.items.length);
        }
      }),
      { numRuns: 300 },
    );
  });
});
