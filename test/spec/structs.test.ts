import { describe, it, expect } from "vitest";
import fc from "fast-check";
import {
  VIRTIO_SND_CHMAP_FL,
  VIRTIO_SND_CHMAP_FR,
  VIRTIO_SND_CTL_TYPE_BOOLEAN,
  VIRTIO_SND_CTL_TYPE_BYTES,
  VIRTIO_SND_CTL_TYPE_ENUMERATED,
  VIRTIO_SND_CTL_TYPE_IEC958,
  VIRTIO_SND_CTL_TYPE_INTEGER,
  VIRTIO_SND_CTL_TYPE_INTEGER64,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_EVT_CTL_NOTIFY,
  VIRTIO_SND_R_PCM_SET_PARAMS,
} from "../../src/spec/constants.js";
import * as S from "../../src/spec/structs.js";
import type {
  ChmapInfo,
  CtlIec958,
  CtlInfo,
  CtlInfoLayout,
  CtlInfoValue,
  PcmInfo,
  PcmSetParams,
  QueryInfo,
} from "../../src/spec/structs.js";

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

function mem(size: number, fill = 0): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(size).fill(fill);
  return { bytes, view: new DataView(bytes.buffer) };
}

function encodeToBytes<T>(
  size: number,
  encode: (view: DataView, offset: number, value: T) => void,
  value: T,
): number[] {
  const { bytes, view } = mem(size);
  encode(view, 0, value);
  return [...bytes];
}

/** Little-endian bytes of a u32, for writing expected arrays readably. */
function le32(v: number): number[] {
  return [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
}

function le64(v: bigint): number[] {
  const out: number[] = [];
  for (let i = 0n; i < 8n; i++) out.push(Number((v >> (8n * i)) & 0xffn));
  return out;
}

function ascii(text: string, field: number): number[] {
  const out = new Array<number>(field).fill(0);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

const zeros = (n: number): number[] => new Array<number>(n).fill(0);

/** A struct's codec, in method syntax so that differently typed codecs share one table. */
interface Codec<T> {
  name: string;
  size: number;
  encode(view: DataView, offset: number, value: T): void;
  decode(view: DataView, offset: number): T;
  sample: T;
  /** Byte offsets the spec names as padding (must be written 0). */
  padding?: readonly number[];
}

const iec958Sample: CtlIec958 = {
  status: Uint8Array.from({ length: 24 }, (_, i) => i + 1),
  subcode: Uint8Array.from({ length: 147 }, (_, i) => (i * 7 + 3) & 0xff),
  digSubframe: Uint8Array.from([0xa1, 0xb2, 0xc3, 0xd4]),
};

const ctlInfoSample: CtlInfo = {
  hdaFnNid: 3,
  role: (1 << 1) | VIRTIO_SND_D_OUTPUT,
  type: VIRTIO_SND_CTL_TYPE_INTEGER64,
  access: 0b11,
  count: 2,
  index: 1,
  name: "Master Playback Volume",
  value: { kind: "integer64", min: 0xfffffffffffff000n, max: 0x0102030405060708n, step: 16n },
};

const codecs: readonly Codec<unknown>[] = [
  {
    name: "virtio_snd_config",
    size: S.VIRTIO_SND_CONFIG_SIZE,
    encode: S.encodeSndConfig,
    decode: S.decodeSndConfig,
    sample: { jacks: 1, streams: 2, chmaps: 3, controls: 0xffffffff },
  } satisfies Codec<S.SndConfig>,
  {
    name: "virtio_snd_hdr",
    size: S.VIRTIO_SND_HDR_SIZE,
    encode: S.encodeSndHdr,
    decode: S.decodeSndHdr,
    sample: { code: 0x8001 },
  } satisfies Codec<S.SndHdr>,
  {
    name: "virtio_snd_event",
    size: S.VIRTIO_SND_EVENT_SIZE,
    encode: S.encodeSndEvent,
    decode: S.decodeSndEvent,
    sample: { code: 0x1100, data: 7 },
  } satisfies Codec<S.SndEvent>,
  {
    name: "virtio_snd_query_info",
    size: S.VIRTIO_SND_QUERY_INFO_SIZE,
    encode: S.encodeQueryInfo,
    decode: S.decodeQueryInfo,
    sample: { code: 0x0100, startId: 1, count: 2, size: 32 },
  } satisfies Codec<QueryInfo>,
  {
    name: "virtio_snd_info",
    size: S.VIRTIO_SND_INFO_SIZE,
    encode: S.encodeSndInfo,
    decode: S.decodeSndInfo,
    sample: { hdaFnNid: 0x01020304 },
  } satisfies Codec<S.SndInfo>,
  {
    name: "virtio_snd_jack_hdr",
    size: S.VIRTIO_SND_JACK_HDR_SIZE,
    encode: S.encodeJackHdr,
    decode: S.decodeJackHdr,
    sample: { code: 1, jackId: 9 },
  } satisfies Codec<S.JackHdr>,
  {
    name: "virtio_snd_jack_info",
    size: S.VIRTIO_SND_JACK_INFO_SIZE,
    encode: S.encodeJackInfo,
    decode: S.decodeJackInfo,
    sample: { hdaFnNid: 1, features: 1, hdaRegDefconf: 0x40211010, hdaRegCaps: 0x10, connected: 1 },
    padding: [17, 18, 19, 20, 21, 22, 23],
  } satisfies Codec<S.JackInfo>,
  {
    name: "virtio_snd_jack_remap",
    size: S.VIRTIO_SND_JACK_REMAP_SIZE,
    encode: S.encodeJackRemap,
    decode: S.decodeJackRemap,
    sample: { code: 2, jackId: 0, association: 4, sequence: 15 },
  } satisfies Codec<S.JackRemap>,
  {
    name: "virtio_snd_pcm_hdr",
    size: S.VIRTIO_SND_PCM_HDR_SIZE,
    encode: S.encodePcmHdr,
    decode: S.decodePcmHdr,
    sample: { code: 0x0104, streamId: 3 },
  } satisfies Codec<S.PcmHdr>,
  {
    name: "virtio_snd_pcm_info",
    size: S.VIRTIO_SND_PCM_INFO_SIZE,
    encode: S.encodePcmInfo,
    decode: S.decodePcmInfo,
    sample: {
      hdaFnNid: 0,
      features: 0x1f,
      formats: (1n << 24n) | 1n,
      rates: 0xffffn,
      direction: 1,
      channelsMin: 1,
      channelsMax: 18,
    },
    padding: [27, 28, 29, 30, 31],
  } satisfies Codec<PcmInfo>,
  {
    name: "virtio_snd_pcm_set_params",
    size: S.VIRTIO_SND_PCM_SET_PARAMS_SIZE,
    encode: S.encodePcmSetParams,
    decode: S.decodePcmSetParams,
    sample: {
      code: 0x0101,
      streamId: 0,
      bufferBytes: 16384,
      periodBytes: 4096,
      features: 0,
      channels: 2,
      format: 5,
      rate: 7,
    },
    padding: [23],
  } satisfies Codec<PcmSetParams>,
  {
    name: "virtio_snd_pcm_xfer",
    size: S.VIRTIO_SND_PCM_XFER_SIZE,
    encode: S.encodePcmXfer,
    decode: S.decodePcmXfer,
    sample: { streamId: 1 },
  } satisfies Codec<S.PcmXfer>,
  {
    name: "virtio_snd_pcm_status",
    size: S.VIRTIO_SND_PCM_STATUS_SIZE,
    encode: S.encodePcmStatus,
    decode: S.decodePcmStatus,
    sample: { status: 0x8000, latencyBytes: 1920 },
  } satisfies Codec<S.PcmStatus>,
  {
    name: "virtio_snd_chmap_info",
    size: S.VIRTIO_SND_CHMAP_INFO_SIZE,
    encode: S.encodeChmapInfo,
    decode: S.decodeChmapInfo,
    sample: { hdaFnNid: 0, direction: 0, channels: 3, positions: [3, 4, 8] },
    padding: [9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23],
  } satisfies Codec<ChmapInfo>,
  {
    name: "virtio_snd_ctl_hdr",
    size: S.VIRTIO_SND_CTL_HDR_SIZE,
    encode: S.encodeCtlHdr,
    decode: S.decodeCtlHdr,
    sample: { code: 0x0302, controlId: 5 },
  } satisfies Codec<S.CtlHdr>,
  {
    name: "virtio_snd_ctl_info",
    size: S.VIRTIO_SND_CTL_INFO_SIZE,
    encode: (v, o, x) => S.encodeCtlInfo(v, o, x),
    decode: (v, o) => S.decodeCtlInfo(v, o),
    sample: ctlInfoSample,
    padding: [24 + 22, 67, 68, 69, 70, 71],
  } satisfies Codec<CtlInfo>,
  {
    name: "virtio_snd_ctl_info (packed)",
    size: S.VIRTIO_SND_CTL_INFO_PACKED_SIZE,
    encode: (v, o, x) => S.encodeCtlInfo(v, o, x, "packed"),
    decode: (v, o) => S.decodeCtlInfo(v, o, "packed"),
    sample: {
      ...ctlInfoSample,
      type: VIRTIO_SND_CTL_TYPE_ENUMERATED,
      value: { kind: "enumerated", items: 4 },
    },
    padding: [72, 80, 91],
  } satisfies Codec<CtlInfo>,
  {
    name: "virtio_snd_ctl_enum_item",
    size: S.VIRTIO_SND_CTL_ENUM_ITEM_SIZE,
    encode: S.encodeCtlEnumItem,
    decode: S.decodeCtlEnumItem,
    sample: { item: "Line In" },
    padding: [7, 63],
  } satisfies Codec<S.CtlEnumItem>,
  {
    name: "virtio_snd_ctl_iec958",
    size: S.VIRTIO_SND_CTL_IEC958_SIZE,
    encode: S.encodeCtlIec958,
    decode: S.decodeCtlIec958,
    sample: iec958Sample,
    padding: [171],
  } satisfies Codec<CtlIec958>,
  {
    name: "virtio_snd_ctl_value",
    size: S.VIRTIO_SND_CTL_VALUE_SIZE,
    encode: S.encodeCtlValue,
    decode: (v, o) => S.decodeCtlValue(v, o, VIRTIO_SND_CTL_TYPE_INTEGER, 3),
    sample: { kind: "integer", values: [0, 0x7fffffff, 0xffffffff] },
    padding: [12, 511],
  } satisfies Codec<S.CtlValue>,
  {
    name: "virtio_snd_ctl_tlv header",
    size: S.VIRTIO_SND_CTL_TLV_HEADER_SIZE,
    encode: S.encodeCtlTlvHeader,
    decode: S.decodeCtlTlvHeader,
    sample: { type: 1, length: 8 },
  } satisfies Codec<S.CtlTlvHeader>,
  {
    name: "virtio_snd_ctl_tlv",
    size: 8 + 12,
    encode: S.encodeCtlTlv,
    decode: S.decodeCtlTlv,
    sample: { type: 4, value: [0xdeadbeef, 1, 2] },
  } satisfies Codec<S.CtlTlv>,
  {
    name: "virtio_snd_ctl_event",
    size: S.VIRTIO_SND_CTL_EVENT_SIZE,
    encode: S.encodeCtlEvent,
    decode: S.decodeCtlEvent,
    sample: { code: 0x1200, controlId: 0xffff, mask: 0b101 },
  } satisfies Codec<S.CtlEvent>,
];

// ---------------------------------------------------------------------------
// Sizes
// ---------------------------------------------------------------------------

describe("size constants", () => {
  it("match the spec's structure sizes", () => {
    expect(S.VIRTIO_SND_CONFIG_SIZE).toBe(16);
    expect(S.VIRTIO_SND_HDR_SIZE).toBe(4);
    expect(S.VIRTIO_SND_EVENT_SIZE).toBe(8);
    expect(S.VIRTIO_SND_QUERY_INFO_SIZE).toBe(16);
    expect(S.VIRTIO_SND_INFO_SIZE).toBe(4);
    expect(S.VIRTIO_SND_JACK_HDR_SIZE).toBe(8);
    expect(S.VIRTIO_SND_JACK_INFO_SIZE).toBe(24);
    expect(S.VIRTIO_SND_JACK_REMAP_SIZE).toBe(16);
    expect(S.VIRTIO_SND_PCM_HDR_SIZE).toBe(8);
    expect(S.VIRTIO_SND_PCM_INFO_SIZE).toBe(32);
    expect(S.VIRTIO_SND_PCM_SET_PARAMS_SIZE).toBe(24);
    expect(S.VIRTIO_SND_PCM_XFER_SIZE).toBe(4);
    expect(S.VIRTIO_SND_PCM_STATUS_SIZE).toBe(8);
    expect(S.VIRTIO_SND_CHMAP_INFO_SIZE).toBe(24);
    expect(S.VIRTIO_SND_CTL_HDR_SIZE).toBe(8);
    expect(S.VIRTIO_SND_CTL_ENUM_ITEM_SIZE).toBe(64);
    expect(S.VIRTIO_SND_CTL_IEC958_SIZE).toBe(176);
    expect(S.VIRTIO_SND_CTL_VALUE_SIZE).toBe(512);
    expect(S.VIRTIO_SND_CTL_TLV_HEADER_SIZE).toBe(8);
    expect(S.VIRTIO_SND_CTL_EVENT_SIZE).toBe(8);
  });

  it("add up from the fields", () => {
    // jack_info: hdr + 3 le32 + u8 + 7 padding; pcm_info: hdr + le32 + 2 le64 + 3 u8 + 5 padding.
    expect(S.VIRTIO_SND_JACK_INFO_SIZE).toBe(4 + 3 * 4 + 1 + 7);
    expect(S.VIRTIO_SND_PCM_INFO_SIZE).toBe(4 + 4 + 2 * 8 + 3 + 5);
    expect(S.VIRTIO_SND_PCM_SET_PARAMS_SIZE).toBe(8 + 3 * 4 + 3 + 1);
    expect(S.VIRTIO_SND_CHMAP_INFO_SIZE).toBe(4 + 2 + 18);
    expect(S.VIRTIO_SND_CTL_IEC958_SIZE).toBe(24 + 147 + 1 + 4);
    expect(S.VIRTIO_SND_CTL_VALUE_SIZE).toBe(128 * 4);
    expect(S.VIRTIO_SND_CTL_VALUE_SIZE).toBe(64 * 8);
  });

  it("lay ctl_info out with the union 8-byte aligned, or packed on request", () => {
    // hdr, role, type, access, count, index (6 le32) + name[44] = 68; the union is 3 le64 = 24.
    expect(6 * 4 + S.VIRTIO_SND_CTL_NAME_SIZE).toBe(68);
    expect(S.VIRTIO_SND_CTL_INFO_UNION_SIZE).toBe(24);
    expect(S.VIRTIO_SND_CTL_INFO_VALUE_OFFSET).toBe(72);
    expect(S.VIRTIO_SND_CTL_INFO_SIZE).toBe(72 + 24);
    expect(S.VIRTIO_SND_CTL_INFO_PACKED_VALUE_OFFSET).toBe(68);
    expect(S.VIRTIO_SND_CTL_INFO_PACKED_SIZE).toBe(68 + 24);
    expect(S.ctlInfoSize()).toBe(96);
    expect(S.ctlInfoSize("aligned")).toBe(96);
    expect(S.ctlInfoSize("packed")).toBe(92);
  });
});

// ---------------------------------------------------------------------------
// Generic properties of every codec
// ---------------------------------------------------------------------------

describe.each(codecs)("$name", (c) => {
  it("round-trips its sample at offset 0 and at an odd offset", () => {
    for (const offset of [0, 3]) {
      const { view } = mem(offset + c.size + 5);
      c.encode(view, offset, c.sample);
      expect(c.decode(view, offset)).toEqual(c.sample);
    }
  });

  it("writes exactly its own bytes, padding as zero", () => {
    const { bytes, view } = mem(c.size + 16, 0xff);
    c.encode(view, 8, c.sample);
    expect([...bytes.subarray(0, 8)]).toEqual(zeros(8).map(() => 0xff));
    expect([...bytes.subarray(8 + c.size)]).toEqual(zeros(8).map(() => 0xff));
    for (const p of c.padding ?? []) expect(bytes[8 + p], `byte ${p}`).toBe(0);
    // Same bytes as into a zeroed buffer: nothing is left over from the 0xff prefill.
    expect([...bytes.subarray(8, 8 + c.size)]).toEqual(encodeToBytes(c.size, c.encode, c.sample));
  });

  it("works on a DataView that does not start at its buffer's beginning", () => {
    const bytes = new Uint8Array(c.size + 20);
    const view = new DataView(bytes.buffer, 10, c.size);
    c.encode(view, 0, c.sample);
    expect(c.decode(new DataView(bytes.buffer, 10, c.size), 0)).toEqual(c.sample);
    expect([...bytes.subarray(0, 10)]).toEqual(zeros(10));
  });

  it("throws RangeError on a view one byte too short, touching nothing", () => {
    const { bytes, view } = mem(c.size - 1 + 4, 0xee);
    expect(() => c.decode(view, 4)).toThrow(RangeError);
    expect(() => c.decode(new DataView(bytes.buffer, 0, c.size - 1), 0)).toThrow(RangeError);
    expect(() => c.encode(view, 4, c.sample)).toThrow(RangeError);
    expect([...bytes].every((b) => b === 0xee)).toBe(true);
  });

  it("throws RangeError for a negative or fractional offset", () => {
    const { view } = mem(c.size + 8);
    expect(() => c.decode(view, -1)).toThrow(RangeError);
    expect(() => c.decode(view, 0.5)).toThrow(RangeError);
    expect(() => c.encode(view, -1, c.sample)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
// Known bytes
// ---------------------------------------------------------------------------

describe("known bytes", () => {
  it("virtio_snd_config", () => {
    expect(
      encodeToBytes(S.VIRTIO_SND_CONFIG_SIZE, S.encodeSndConfig, {
        jacks: 1,
        streams: 2,
        chmaps: 0x0304,
        controls: 0x05060708,
      }),
    ).toEqual([1, 0, 0, 0, 2, 0, 0, 0, 0x04, 0x03, 0, 0, 0x08, 0x07, 0x06, 0x05]);
  });

  it("virtio_snd_query_info", () => {
    const bytes = [0x00, 0x01, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 32, 0, 0, 0];
    expect(
      encodeToBytes(S.VIRTIO_SND_QUERY_INFO_SIZE, S.encodeQueryInfo, {
        code: 0x0100,
        startId: 0,
        count: 2,
        size: 32,
      }),
    ).toEqual(bytes);
    expect(S.decodeQueryInfo(new DataView(Uint8Array.from(bytes).buffer), 0)).toEqual({
      code: 0x0100,
      startId: 0,
      count: 2,
      size: 32,
    });
  });

  it("virtio_snd_jack_info", () => {
    expect(
      encodeToBytes(S.VIRTIO_SND_JACK_INFO_SIZE, S.encodeJackInfo, {
        hdaFnNid: 0x11,
        features: 1,
        hdaRegDefconf: 0x90a60130,
        hdaRegCaps: 0x00010014,
        connected: 1,
      }),
    ).toEqual([
      0x11, 0, 0, 0, 1, 0, 0, 0, 0x30, 0x01, 0xa6, 0x90, 0x14, 0x00, 0x01, 0x00, 1, 0, 0, 0, 0, 0, 0, 0,
    ]);
  });

  it("virtio_snd_pcm_info: the le64 bitmaps at 8 and 16, the u8 fields at 24..26", () => {
    const info: PcmInfo = {
      hdaFnNid: 0x11223344,
      features: 1 << 4,
      formats: 1n << 5n, // S16
      rates: (1n << 7n) | (1n << 15n), // 48000 and 24000
      direction: VIRTIO_SND_D_INPUT,
      channelsMin: 1,
      channelsMax: 2,
    };
    // prettier-ignore
    const expected = [
      0x44, 0x33, 0x22, 0x11, // hda_fn_nid
      0x10, 0x00, 0x00, 0x00, // features
      0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // formats
      0x80, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // rates
      0x01, 0x01, 0x02, // direction, channels_min, channels_max
      0x00, 0x00, 0x00, 0x00, 0x00, // padding
    ];
    expect(encodeToBytes(S.VIRTIO_SND_PCM_INFO_SIZE, S.encodePcmInfo, info)).toEqual(expected);
    expect(S.decodePcmInfo(new DataView(Uint8Array.from(expected).buffer), 0)).toEqual(info);
  });

  it("virtio_snd_pcm_info with the top bits of the bitmaps set", () => {
    const bytes = encodeToBytes(S.VIRTIO_SND_PCM_INFO_SIZE, S.encodePcmInfo, {
      hdaFnNid: 0,
      features: 0,
      formats: 1n << 63n,
      rates: 0xffffffffffffffffn,
      direction: 0,
      channelsMin: 0,
      channelsMax: 0,
    });
    expect(bytes.slice(8, 16)).toEqual([0, 0, 0, 0, 0, 0, 0, 0x80]);
    expect(bytes.slice(16, 24)).toEqual(zeros(8).map(() => 0xff));
  });

  it("virtio_snd_pcm_set_params", () => {
    const params: PcmSetParams = {
      code: VIRTIO_SND_R_PCM_SET_PARAMS,
      streamId: 2,
      bufferBytes: 0x4000,
      periodBytes: 0x1000,
      features: 1 << 2,
      channels: 2,
      format: 5,
      rate: 7,
    };
    // prettier-ignore
    const expected = [
      ...le32(0x0101),
      ...le32(2),
      0x00, 0x40, 0x00, 0x00,
      0x00, 0x10, 0x00, 0x00,
      0x04, 0x00, 0x00, 0x00,
      2, 5, 7, 0,
    ];
    expect(encodeToBytes(S.VIRTIO_SND_PCM_SET_PARAMS_SIZE, S.encodePcmSetParams, params)).toEqual(expected);
    expect(S.decodePcmSetParams(new DataView(Uint8Array.from(expected).buffer), 0)).toEqual(params);
  });

  it("virtio_snd_pcm_status and virtio_snd_pcm_xfer", () => {
    expect(
      encodeToBytes(S.VIRTIO_SND_PCM_STATUS_SIZE, S.encodePcmStatus, {
        status: 0x8003,
        latencyBytes: 0x1234,
      }),
    ).toEqual([0x03, 0x80, 0, 0, 0x34, 0x12, 0, 0]);
    expect(encodeToBytes(S.VIRTIO_SND_PCM_XFER_SIZE, S.encodePcmXfer, { streamId: 0x0102 })).toEqual([
      2, 1, 0, 0,
    ]);
  });

  it("virtio_snd_chmap_info: positions from byte 6, unused ones zero", () => {
    const chmap: ChmapInfo = {
      hdaFnNid: 1,
      direction: VIRTIO_SND_D_OUTPUT,
      channels: 2,
      positions: [VIRTIO_SND_CHMAP_FL, VIRTIO_SND_CHMAP_FR],
    };
    expect(encodeToBytes(S.VIRTIO_SND_CHMAP_INFO_SIZE, S.encodeChmapInfo, chmap)).toEqual([
      1,
      0,
      0,
      0,
      0,
      2,
      3,
      4,
      ...zeros(16),
    ]);
  });

  it("virtio_snd_ctl_info (aligned): name at 24, padding 68..71, integer64 union at 72", () => {
    const info: CtlInfo = {
      hdaFnNid: 0,
      role: (1 << 1) | VIRTIO_SND_D_OUTPUT,
      type: VIRTIO_SND_CTL_TYPE_INTEGER64,
      access: 0x13,
      count: 2,
      index: 0,
      name: "Master",
      value: { kind: "integer64", min: 0n, max: 0x0102030405060708n, step: 1n },
    };
    // prettier-ignore
    const expected = [
      ...le32(0),
      ...le32(2),
      ...le32(2),
      ...le32(0x13),
      ...le32(2),
      ...le32(0),
      ...ascii("Master", 44),
      0, 0, 0, 0,
      ...le64(0n),
      0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01,
      ...le64(1n),
    ];
    expect(expected).toHaveLength(96);
    expect(
      encodeToBytes(S.VIRTIO_SND_CTL_INFO_SIZE, (v, o, x: CtlInfo) => S.encodeCtlInfo(v, o, x), info),
    ).toEqual(expected);
    expect(S.decodeCtlInfo(new DataView(Uint8Array.from(expected).buffer), 0)).toEqual(info);
  });

  it("virtio_snd_ctl_info (packed): the union right after name, at 68", () => {
    const info: CtlInfo = {
      hdaFnNid: 0,
      role: 0,
      type: VIRTIO_SND_CTL_TYPE_INTEGER,
      access: 3,
      count: 1,
      index: 0,
      name: "Gain",
      value: { kind: "integer", min: 0, max: 100, step: 5 },
    };
    const bytes = encodeToBytes(
      S.VIRTIO_SND_CTL_INFO_PACKED_SIZE,
      (v, o, x: CtlInfo) => S.encodeCtlInfo(v, o, x, "packed"),
      info,
    );
    expect(bytes.slice(24, 68)).toEqual(ascii("Gain", 44));
    expect(bytes.slice(68)).toEqual([...le32(0), ...le32(100), ...le32(5), ...zeros(12)]);
  });

  it("virtio_snd_ctl_info integer and enumerated members zero the rest of the union", () => {
    const base = { hdaFnNid: 0, role: 0, access: 1, count: 1, index: 0, name: "x" };
    const { bytes, view } = mem(96, 0xff);
    S.encodeCtlInfo(view, 0, {
      ...base,
      type: VIRTIO_SND_CTL_TYPE_INTEGER,
      value: { kind: "integer", min: 1, max: 2, step: 3 },
    });
    expect([...bytes.subarray(68)]).toEqual([0, 0, 0, 0, ...le32(1), ...le32(2), ...le32(3), ...zeros(12)]);
    bytes.fill(0xff);
    S.encodeCtlInfo(view, 0, {
      ...base,
      type: VIRTIO_SND_CTL_TYPE_ENUMERATED,
      value: { kind: "enumerated", items: 7 },
    });
    expect([...bytes.subarray(68)]).toEqual([0, 0, 0, 0, ...le32(7), ...zeros(20)]);
    bytes.fill(0xff);
    S.encodeCtlInfo(view, 0, { ...base, type: VIRTIO_SND_CTL_TYPE_BYTES, value: { kind: "none" } });
    expect([...bytes.subarray(68)]).toEqual(zeros(28));
  });

  it("virtio_snd_ctl_enum_item", () => {
    expect(encodeToBytes(S.VIRTIO_SND_CTL_ENUM_ITEM_SIZE, S.encodeCtlEnumItem, { item: "Mic" })).toEqual(
      ascii("Mic", 64),
    );
  });

  it("virtio_snd_ctl_iec958: status 0..23, subcode 24..170, pad 171, dig_subframe 172..175", () => {
    const bytes = encodeToBytes(S.VIRTIO_SND_CTL_IEC958_SIZE, S.encodeCtlIec958, {
      status: Uint8Array.from([0x11, 0x22]),
      subcode: Uint8Array.from([0x33]),
      digSubframe: Uint8Array.from([0x44, 0x55, 0x66, 0x77]),
    });
    expect(bytes).toEqual([0x11, 0x22, ...zeros(22), 0x33, ...zeros(146), 0, 0x44, 0x55, 0x66, 0x77]);
  });

  it("virtio_snd_ctl_tlv", () => {
    expect(encodeToBytes(16, S.encodeCtlTlv, { type: 1, value: [0x0a0b0c0d, 2] })).toEqual([
      ...le32(1),
      ...le32(8),
      0x0d,
      0x0c,
      0x0b,
      0x0a,
      ...le32(2),
    ]);
  });

  it("virtio_snd_ctl_event: le16 control_id and mask", () => {
    expect(
      encodeToBytes(S.VIRTIO_SND_CTL_EVENT_SIZE, S.encodeCtlEvent, {
        code: VIRTIO_SND_EVT_CTL_NOTIFY,
        controlId: 0x0102,
        mask: 0b101,
      }),
    ).toEqual([0x00, 0x12, 0x00, 0x00, 0x02, 0x01, 0x05, 0x00]);
  });
});

// ---------------------------------------------------------------------------
// Strings and arrays
// ---------------------------------------------------------------------------

describe("strings", () => {
  it("truncates a long name to 43 characters and keeps the terminator", () => {
    const long = "A".repeat(50);
    const { bytes, view } = mem(96, 0xff);
    S.encodeCtlInfo(view, 0, { ...ctlInfoSample, name: long });
    expect(bytes[24 + 42]).toBe(0x41);
    expect(bytes[24 + 43]).toBe(0);
    expect(S.decodeCtlInfo(view, 0).name).toBe("A".repeat(43));
  });

  it("truncates a long enum item to 63 characters", () => {
    const { bytes, view } = mem(64, 0xff);
    S.encodeCtlEnumItem(view, 0, { item: "b".repeat(100) });
    expect(bytes[63]).toBe(0);
    expect(S.decodeCtlEnumItem(view, 0).item).toBe("b".repeat(63));
  });

  it("replaces non-ASCII characters and NUL with '?'", () => {
    const { view } = mem(64);
    S.encodeCtlEnumItem(view, 0, { item: "Gain\u00e9\u0000x\u{1f50a}" });
    expect(S.decodeCtlEnumItem(view, 0).item).toBe("Gain??x??");
  });

  it("stops decoding at the first 0 and ignores what follows", () => {
    const bytes = new Uint8Array(64);
    bytes.set([0x41, 0x42, 0, 0x43, 0x44]);
    expect(S.decodeCtlEnumItem(new DataView(bytes.buffer), 0).item).toBe("AB");
  });

  it("decodes an unterminated field as all its bytes", () => {
    const bytes = new Uint8Array(64).fill(0x5a);
    expect(S.decodeCtlEnumItem(new DataView(bytes.buffer), 0).item).toBe("Z".repeat(64));
  });
});

describe("chmap positions", () => {
  it("decodes exactly `channels` positions", () => {
    const { view } = mem(24);
    S.encodeChmapInfo(view, 0, { hdaFnNid: 0, direction: 0, channels: 1, positions: [2, 3, 4] });
    expect(S.decodeChmapInfo(view, 0).positions).toEqual([2]);
  });

  it("caps the decoded positions at 18 when `channels` claims more", () => {
    const bytes = new Uint8Array(24);
    for (let i = 0; i < 18; i++) bytes[6 + i] = i + 1;
    bytes[5] = 200;
    const info = S.decodeChmapInfo(new DataView(bytes.buffer), 0);
    expect(info.channels).toBe(200);
    expect(info.positions).toEqual(Array.from({ length: 18 }, (_, i) => i + 1));
  });

  it("refuses more than 18 positions without writing anything", () => {
    const { bytes, view } = mem(24, 0xee);
    expect(() =>
      S.encodeChmapInfo(view, 0, { hdaFnNid: 0, direction: 0, channels: 19, positions: zeros(19) }),
    ).toThrow(RangeError);
    expect([...bytes].every((b) => b === 0xee)).toBe(true);
  });
});

describe("virtio_snd_ctl_info union selection", () => {
  it("reads the member that `type` selects", () => {
    const { view } = mem(96);
    S.encodeCtlInfo(view, 0, {
      ...ctlInfoSample,
      type: VIRTIO_SND_CTL_TYPE_BOOLEAN,
      value: { kind: "integer", min: 0, max: 1, step: 1 },
    });
    expect(S.decodeCtlInfo(view, 0).value).toEqual({ kind: "integer", min: 0, max: 1, step: 1 });
    S.encodeCtlInfo(view, 0, { ...ctlInfoSample, type: VIRTIO_SND_CTL_TYPE_IEC958, value: { kind: "none" } });
    expect(S.decodeCtlInfo(view, 0).value).toEqual({ kind: "none" });
    S.encodeCtlInfo(view, 0, { ...ctlInfoSample, type: 99, value: { kind: "none" } });
    expect(S.decodeCtlInfo(view, 0)).toMatchObject({ type: 99, value: { kind: "none" } });
  });

  it("needs 96 bytes aligned but only 92 packed", () => {
    const { view } = mem(92);
    expect(() => S.decodeCtlInfo(view, 0)).toThrow(RangeError);
    expect(() => S.encodeCtlInfo(view, 0, ctlInfoSample)).toThrow(RangeError);
    S.encodeCtlInfo(view, 0, ctlInfoSample, "packed");
    expect(S.decodeCtlInfo(view, 0, "packed")).toEqual(ctlInfoSample);
  });
});

// ---------------------------------------------------------------------------
// ctl_value views
// ---------------------------------------------------------------------------

describe("virtio_snd_ctl_value", () => {
  it("integer view: le32 values, the rest zero", () => {
    const { bytes, view } = mem(512, 0xff);
    S.encodeCtlValueInteger(view, 0, [1, 0xfffffffe]);
    expect([...bytes.subarray(0, 8)]).toEqual([1, 0, 0, 0, 0xfe, 0xff, 0xff, 0xff]);
    expect([...bytes.subarray(8)]).toEqual(zeros(504));
    expect(S.decodeCtlValueInteger(view, 0, 2)).toEqual([1, 0xfffffffe]);
    expect(S.decodeCtlValueInteger(view, 0)).toHaveLength(128);
  });

  it("integer64 view: le64 values", () => {
    const { bytes, view } = mem(512, 0xff);
    const values = [0x0102030405060708n, 0xffffffffffffffffn, 0n];
    S.encodeCtlValueInteger64(view, 0, values);
    expect([...bytes.subarray(0, 8)]).toEqual([8, 7, 6, 5, 4, 3, 2, 1]);
    expect([...bytes.subarray(24)]).toEqual(zeros(488));
    expect(S.decodeCtlValueInteger64(view, 0, 3)).toEqual(values);
    expect(S.decodeCtlValueInteger64(view, 0)).toHaveLength(64);
  });

  it("enumerated view: le32 item indexes", () => {
    const { view } = mem(512, 0xff);
    S.encodeCtlValueEnumerated(view, 0, [3, 0, 2]);
    expect(S.decodeCtlValueEnumerated(view, 0, 4)).toEqual([3, 0, 2, 0]);
    expect(S.decodeCtlValueEnumerated(view, 0)).toHaveLength(128);
  });

  it("bytes view: copies, not views into the buffer", () => {
    const { bytes, view } = mem(512, 0xff);
    S.encodeCtlValueBytes(view, 0, Uint8Array.from([9, 8, 7]));
    const out = S.decodeCtlValueBytes(view, 0, 3);
    expect([...out]).toEqual([9, 8, 7]);
    bytes[0] = 0;
    expect(out[0]).toBe(9);
    expect(S.decodeCtlValueBytes(view, 0)).toHaveLength(512);
    expect([...bytes.subarray(3)]).toEqual(zeros(509));
  });

  it("iec958 view: the structure in the first 176 bytes, the rest zero", () => {
    const { bytes, view } = mem(512, 0xff);
    S.encodeCtlValueIec958(view, 0, iec958Sample);
    expect(bytes[171]).toBe(0);
    expect([...bytes.subarray(176)]).toEqual(zeros(336));
    expect(S.decodeCtlValueIec958(view, 0)).toEqual(iec958Sample);
  });

  it("refuses more elements than a view holds, writing nothing", () => {
    const { bytes, view } = mem(512, 0xee);
    expect(() => S.encodeCtlValueInteger(view, 0, zeros(129))).toThrow(RangeError);
    expect(() => S.encodeCtlValueInteger64(view, 0, new Array<bigint>(65).fill(0n))).toThrow(RangeError);
    expect(() => S.encodeCtlValueEnumerated(view, 0, zeros(129))).toThrow(RangeError);
    expect(() => S.encodeCtlValueBytes(view, 0, new Uint8Array(513))).toThrow(RangeError);
    expect(() => S.encodeCtlValueIec958(view, 0, { ...iec958Sample, status: new Uint8Array(25) })).toThrow(
      RangeError,
    );
    expect(() => S.encodeCtlIec958(view, 0, { ...iec958Sample, digSubframe: new Uint8Array(5) })).toThrow(
      RangeError,
    );
    expect([...bytes].every((b) => b === 0xee)).toBe(true);
  });

  it("refuses a count outside the view's capacity", () => {
    const { view } = mem(512);
    expect(() => S.decodeCtlValueInteger(view, 0, 129)).toThrow(RangeError);
    expect(() => S.decodeCtlValueInteger64(view, 0, 65)).toThrow(RangeError);
    expect(() => S.decodeCtlValueBytes(view, 0, -1)).toThrow(RangeError);
  });

  it("needs all 512 bytes even for a short value", () => {
    const { view } = mem(511);
    expect(() => S.decodeCtlValueInteger(view, 0, 1)).toThrow(RangeError);
    expect(() => S.encodeCtlValueInteger(view, 0, [1])).toThrow(RangeError);
  });

  it("decodes by element type", () => {
    const { view } = mem(512);
    S.encodeCtlValue(view, 0, { kind: "integer64", values: [5n, 6n] });
    expect(S.decodeCtlValue(view, 0, VIRTIO_SND_CTL_TYPE_INTEGER64, 2)).toEqual({
      kind: "integer64",
      values: [5n, 6n],
    });
    S.encodeCtlValue(view, 0, { kind: "integer", values: [1] });
    expect(S.decodeCtlValue(view, 0, VIRTIO_SND_CTL_TYPE_BOOLEAN, 1)).toEqual({
      kind: "integer",
      values: [1],
    });
    S.encodeCtlValue(view, 0, { kind: "enumerated", values: [2] });
    expect(S.decodeCtlValue(view, 0, VIRTIO_SND_CTL_TYPE_ENUMERATED, 1)).toEqual({
      kind: "enumerated",
      values: [2],
    });
    S.encodeCtlValue(view, 0, { kind: "bytes", values: Uint8Array.from([1, 2]) });
    expect(S.decodeCtlValue(view, 0, VIRTIO_SND_CTL_TYPE_BYTES, 2)).toEqual({
      kind: "bytes",
      values: Uint8Array.from([1, 2]),
    });
    S.encodeCtlValue(view, 0, { kind: "iec958", value: iec958Sample });
    expect(S.decodeCtlValue(view, 0, VIRTIO_SND_CTL_TYPE_IEC958, 1)).toEqual({
      kind: "iec958",
      value: iec958Sample,
    });
    expect(() => S.decodeCtlValue(view, 0, 6, 1)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
// TLV
// ---------------------------------------------------------------------------

describe("virtio_snd_ctl_tlv", () => {
  it("sizes a TLV as 8 + 4 per word", () => {
    expect(S.ctlTlvSize({ type: 0, value: [] })).toBe(8);
    expect(S.ctlTlvSize({ type: 0, value: [1, 2, 3] })).toBe(20);
    expect(S.VIRTIO_SND_CTL_TLV_VALUE_MAX_SIZE).toBe(65536);
  });

  it("round-trips an empty value", () => {
    const { view } = mem(8);
    S.encodeCtlTlv(view, 0, { type: 7, value: [] });
    expect(S.decodeCtlTlv(view, 0)).toEqual({ type: 7, value: [] });
  });

  it("refuses a length that is not a multiple of 4", () => {
    const { view } = mem(16);
    S.encodeCtlTlvHeader(view, 0, { type: 1, length: 6 });
    expect(() => S.decodeCtlTlv(view, 0)).toThrow(RangeError);
  });

  it("refuses a length that runs past the view, even a huge one", () => {
    const { view } = mem(16);
    S.encodeCtlTlvHeader(view, 0, { type: 1, length: 12 });
    expect(() => S.decodeCtlTlv(view, 0)).toThrow(RangeError);
    S.encodeCtlTlvHeader(view, 0, { type: 1, length: 0xfffffffc });
    expect(() => S.decodeCtlTlv(view, 0)).toThrow(RangeError);
  });
});

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

const u8 = fc.integer({ min: 0, max: 0xff });
const u16 = fc.integer({ min: 0, max: 0xffff });
const u32 = fc.integer({ min: 0, max: 0xffffffff });
const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const asciiChar = fc.integer({ min: 1, max: 0x7f }).map((c) => String.fromCharCode(c));
const name = fc.string({ unit: asciiChar, maxLength: S.VIRTIO_SND_CTL_NAME_SIZE - 1 });

const pcmInfoArb: fc.Arbitrary<PcmInfo> = fc.record({
  hdaFnNid: u32,
  features: u32,
  formats: u64,
  rates: u64,
  direction: u8,
  channelsMin: u8,
  channelsMax: u8,
});

const setParamsArb: fc.Arbitrary<PcmSetParams> = fc.record({
  code: u32,
  streamId: u32,
  bufferBytes: u32,
  periodBytes: u32,
  features: u32,
  channels: u8,
  format: u8,
  rate: u8,
});

const queryInfoArb: fc.Arbitrary<QueryInfo> = fc.record({ code: u32, startId: u32, count: u32, size: u32 });

const chmapArb: fc.Arbitrary<ChmapInfo> = fc.integer({ min: 0, max: 18 }).chain((channels) =>
  fc.record({
    hdaFnNid: u32,
    direction: u8,
    channels: fc.constant(channels),
    positions: fc.array(u8, { minLength: channels, maxLength: channels }),
  }),
);

const ctlInfoValueArb = (type: number): fc.Arbitrary<CtlInfoValue> => {
  switch (type) {
    case VIRTIO_SND_CTL_TYPE_BOOLEAN:
    case VIRTIO_SND_CTL_TYPE_INTEGER:
      return fc.record({ kind: fc.constant("integer" as const), min: u32, max: u32, step: u32 });
    case VIRTIO_SND_CTL_TYPE_INTEGER64:
      return fc.record({ kind: fc.constant("integer64" as const), min: u64, max: u64, step: u64 });
    case VIRTIO_SND_CTL_TYPE_ENUMERATED:
      return fc.record({ kind: fc.constant("enumerated" as const), items: u32 });
    default:
      return fc.constant({ kind: "none" as const });
  }
};

const ctlInfoArb: fc.Arbitrary<CtlInfo> = fc.integer({ min: 0, max: 7 }).chain((type) =>
  fc.record({
    hdaFnNid: u32,
    role: u32,
    type: fc.constant(type),
    access: u32,
    count: u32,
    index: u32,
    name,
    value: ctlInfoValueArb(type),
  }),
);

/** Encodes at a random offset inside a random-filled buffer; checks the round trip and that nothing else changed. */
function roundTripProperty<T>(
  arb: fc.Arbitrary<T>,
  size: number,
  encode: (view: DataView, offset: number, value: T) => void,
  decode: (view: DataView, offset: number) => T,
): void {
  fc.assert(
    fc.property(
      arb,
      fc.nat({ max: 16 }),
      fc.uint8Array({ minLength: 48, maxLength: 48 }),
      (value, offset, fill) => {
        const bytes = new Uint8Array(offset + size + 16);
        for (let i = 0; i < bytes.length; i++) bytes[i] = fill[i % fill.length] ?? 0;
        const before = bytes.slice();
        const view = new DataView(bytes.buffer);
        encode(view, offset, value);
        expect(decode(view, offset)).toEqual(value);
        expect([...bytes.subarray(0, offset)]).toEqual([...before.subarray(0, offset)]);
        expect([...bytes.subarray(offset + size)]).toEqual([...before.subarray(offset + size)]);
        // Encoding is a function of the value alone: prefilled garbage never leaks through.
        const clean = new Uint8Array(size);
        encode(new DataView(clean.buffer), 0, value);
        expect([...bytes.subarray(offset, offset + size)]).toEqual([...clean]);
      },
    ),
  );
}

describe("round-trip properties", () => {
  it("virtio_snd_pcm_info", () => {
    roundTripProperty(pcmInfoArb, S.VIRTIO_SND_PCM_INFO_SIZE, S.encodePcmInfo, S.decodePcmInfo);
  });

  it("virtio_snd_pcm_set_params", () => {
    roundTripProperty(
      setParamsArb,
      S.VIRTIO_SND_PCM_SET_PARAMS_SIZE,
      S.encodePcmSetParams,
      S.decodePcmSetParams,
    );
  });

  it("virtio_snd_query_info", () => {
    roundTripProperty(queryInfoArb, S.VIRTIO_SND_QUERY_INFO_SIZE, S.encodeQueryInfo, S.decodeQueryInfo);
  });

  it("virtio_snd_chmap_info", () => {
    roundTripProperty(chmapArb, S.VIRTIO_SND_CHMAP_INFO_SIZE, S.encodeChmapInfo, S.decodeChmapInfo);
  });

  it.each<CtlInfoLayout>(["aligned", "packed"])("virtio_snd_ctl_info (%s)", (layout) => {
    roundTripProperty(
      ctlInfoArb,
      S.ctlInfoSize(layout),
      (v, o, x) => S.encodeCtlInfo(v, o, x, layout),
      (v, o) => S.decodeCtlInfo(v, o, layout),
    );
  });

  it("virtio_snd_ctl_event", () => {
    roundTripProperty(
      fc.record({ code: u32, controlId: u16, mask: u16 }),
      S.VIRTIO_SND_CTL_EVENT_SIZE,
      S.encodeCtlEvent,
      S.decodeCtlEvent,
    );
  });

  it("virtio_snd_ctl_value integer64 view", () => {
    fc.assert(
      fc.property(fc.array(u64, { maxLength: 64 }), (values) => {
        const { view } = mem(512, 0xff);
        S.encodeCtlValueInteger64(view, 0, values);
        expect(S.decodeCtlValueInteger64(view, 0, values.length)).toEqual(values);
        expect(
          S.decodeCtlValueInteger64(view, 0)
            .slice(values.length)
            .every((v) => v === 0n),
        ).toBe(true);
      }),
    );
  });

  it("decoders only throw RangeError, on any bytes and any offset", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 600 }), fc.integer({ min: -2, max: 600 }), (raw, offset) => {
        const view = new DataView(raw.buffer);
        for (const c of codecs) {
          try {
            c.decode(view, offset);
          } catch (e) {
            expect(e).toBeInstanceOf(RangeError);
          }
        }
      }),
    );
  });
});
