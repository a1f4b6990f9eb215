/**
 * The control queue as a table (virtio 1.3 §5.14.6): every request, with a
 * good payload and with bad ones, in every state of the PCM lifecycle
 * (§5.14.6.6.1), for the output stream (0) and the input stream (1) of
 * DEFAULT_CONFIG. Each row checks the exact status, the used length, the bytes
 * of the answer, that nothing outside the answer was written, and the state of
 * both streams afterwards. Then the I/O message rules (§5.14.6.8) and the
 * events (§5.14.6.5, §5.14.6.7) that the control commands drive.
 */
import { describe, expect, it } from "vitest";
import { DEFAULT_CONFIG } from "../../src/device/config.js";
import {
  VIRTIO_SND_CHMAP_FL,
  VIRTIO_SND_CHMAP_FR,
  VIRTIO_SND_CHMAP_LFE,
  VIRTIO_SND_CHMAP_MONO,
  VIRTIO_SND_CHMAP_RL,
  VIRTIO_SND_CHMAP_RR,
  VIRTIO_SND_CHMAP_FC,
  VIRTIO_SND_CHMAP_SL,
  VIRTIO_SND_CHMAP_SR,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_EVT_JACK_CONNECTED,
  VIRTIO_SND_EVT_JACK_DISCONNECTED,
  VIRTIO_SND_EVT_PCM_XRUN,
  VIRTIO_SND_PCM_FMT_A_LAW,
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_FMT_IMA_ADPCM,
  VIRTIO_SND_PCM_FMT_MU_LAW,
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
  VIRTIO_SND_PCM_FMT_DSD_U8,
  VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME,
  VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_PCM_F_MSG_POLLING,
  VIRTIO_SND_PCM_F_SHMEM_GUEST,
  VIRTIO_SND_PCM_F_SHMEM_HOST,
  VIRTIO_SND_PCM_RATE_384000,
  VIRTIO_SND_PCM_RATE_48000,
  VIRTIO_SND_PCM_RATE_8000,
  VIRTIO_SND_R_CHMAP_INFO,
  VIRTIO_SND_R_CTL_ENUM_ITEMS,
  VIRTIO_SND_R_CTL_INFO,
  VIRTIO_SND_R_CTL_READ,
  VIRTIO_SND_R_CTL_TLV_COMMAND,
  VIRTIO_SND_R_CTL_TLV_READ,
  VIRTIO_SND_R_CTL_TLV_WRITE,
  VIRTIO_SND_R_CTL_WRITE,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_JACK_REMAP,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import { type Completion, type GuestOptions, SimulatedGuest } from "../../src/driver/simulated-guest.js";

// ---------------------------------------------------------------------------
// States, commands and the lifecycle of §5.14.6.6.1
// ---------------------------------------------------------------------------

/** PcmState values (src/stream/pcm-state.ts), spelled out so the table does not depend on the enum. */
const IDLE = 0;
const PARAMS_SET = 1;
const PREPARED = 2;
const RUNNING = 3;
const STOPPED = 4;
const RELEASED = 5;
type State = 0 | 1 | 2 | 3 | 4 | 5;
const STATE_NAMES = ["idle", "params-set", "prepared", "running", "stopped", "released"] as const;
const ALL_STATES: readonly State[] = [IDLE, PARAMS_SET, PREPARED, RUNNING, STOPPED, RELEASED];

type Cmd = "set-params" | "prepare" | "start" | "stop" | "release";

/** "After X, possible valid transitions: ..." read as: the states a command may be sent in, and where it leads. */
const LIFECYCLE: Record<Cmd, { from: readonly State[]; to: State }> = {
  "set-params": { from: [IDLE, PARAMS_SET, PREPARED, RELEASED], to: PARAMS_SET },
  prepare: { from: [PARAMS_SET, PREPARED, RELEASED], to: PREPARED },
  start: { from: [PREPARED, STOPPED], to: RUNNING },
  stop: { from: [RUNNING], to: STOPPED },
  release: { from: [PREPARED, STOPPED], to: RELEASED },
};

const OK = VIRTIO_SND_S_OK;
const BAD_MSG = VIRTIO_SND_S_BAD_MSG;
const NOT_SUPP = VIRTIO_SND_S_NOT_SUPP;
const IO_ERR = VIRTIO_SND_S_IO_ERR;
const statusName = (s: number): string =>
  ({ [OK]: "OK", [BAD_MSG]: "BAD_MSG", [NOT_SUPP]: "NOT_SUPP", [IO_ERR]: "IO_ERR" })[s] ??
  `0x${s.toString(16)}`;

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

/** The first `n` bytes of `b`, or `b` padded with zeros to `n`. */
function resize(b: Uint8Array, n: number): Uint8Array {
  const out = new Uint8Array(n);
  out.set(b.subarray(0, n));
  return out;
}

interface SetParamsFields {
  stream: number;
  buffer: number;
  period: number;
  features: number;
  channels: number;
  format: number;
  rate: number;
}

const PERIOD = 1920; // 10 ms of 48 kHz S16 stereo
const PERIOD_NS = 10_000_000;
const GOOD_PARAMS = {
  buffer: 4 * PERIOD,
  period: PERIOD,
  features: 0,
  channels: 2,
  format: VIRTIO_SND_PCM_FMT_S16,
  rate: VIRTIO_SND_PCM_RATE_48000,
};

function setParamsReq(f: SetParamsFields): Uint8Array {
  const b = new Uint8Array(24);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, VIRTIO_SND_R_PCM_SET_PARAMS, true);
  dv.setUint32(4, f.stream, true);
  dv.setUint32(8, f.buffer, true);
  dv.setUint32(12, f.period, true);
  dv.setUint32(16, f.features, true);
  dv.setUint8(20, f.channels);
  dv.setUint8(21, f.format);
  dv.setUint8(22, f.rate);
  return b;
}

const goodSetParams = (stream: number, over: Partial<SetParamsFields> = {}): Uint8Array =>
  setParamsReq({ stream, ...GOOD_PARAMS, ...over });

interface Reply {
  /** The status, or -1 when fewer than 4 bytes were written. */
  status: number;
  used: number;
  /** The whole response buffer after the request. */
  response: Uint8Array;
}

const GUARD = 32;
const FILL = 0xee;

/**
 * Sends one control request with its own buffers: the response buffer sits
 * between two guard areas, all filled with 0xee. Checks that the device wrote
 * nothing but the first `used` bytes of the response, and left the request alone.
 */
function ctl(g: SimulatedGuest, req: Uint8Array, respSize: number): Reply {
  const reqArea = g.alloc(req.length + 2 * GUARD, 16);
  g.memory.fill(reqArea, req.length + 2 * GUARD, FILL);
  g.memory.write(reqArea + GUARD, req, 0, req.length);
  const respArea = g.alloc(respSize + 2 * GUARD, 16);
  g.memory.fill(respArea, respSize + 2 * GUARD, FILL);
  const token = g.submit(
    VIRTIO_SND_VQ_CONTROL,
    req.length > 0 ? [{ addr: reqArea + GUARD, len: req.length }] : [],
    respSize > 0 ? [{ addr: respArea + GUARD, len: respSize }] : [],
  );
  const used = g.queues[VIRTIO_SND_VQ_CONTROL]!.getUsed();
  expect(used?.token, "control request answered synchronously").toBe(token);
  expect(g.queues[VIRTIO_SND_VQ_CONTROL]!.getUsed()).toBeNull();
  const len = used!.len;
  expect(len).toBeLessThanOrEqual(respSize);

  const reqAfter = new Uint8Array(req.length + 2 * GUARD);
  g.memory.read(reqArea, reqAfter, 0, reqAfter.length);
  expect(Array.from(reqAfter.subarray(GUARD, GUARD + req.length)), "request untouched").toEqual(
    Array.from(req),
  );
  const respAll = new Uint8Array(respSize + 2 * GUARD);
  g.memory.read(respArea, respAll, 0, respAll.length);
  const untouched = [...respAll.subarray(0, GUARD), ...respAll.subarray(GUARD + len)];
  expect(
    untouched.every((b) => b === FILL),
    "nothing written outside the used part",
  ).toBe(true);
  const response = respAll.slice(GUARD, GUARD + respSize);
  const status = len >= 4 ? new DataView(response.buffer).getUint32(0, true) : -1;
  return { status, used: len, response };
}

const MEM = 1 << 20;

function newGuest(opts: GuestOptions = {}): SimulatedGuest {
  const g = new SimulatedGuest({ memorySize: MEM, ...opts });
  g.init();
  return g;
}

const COMMAND_CODE: Record<Exclude<Cmd, "set-params">, number> = {
  prepare: VIRTIO_SND_R_PCM_PREPARE,
  start: VIRTIO_SND_R_PCM_START,
  stop: VIRTIO_SND_R_PCM_STOP,
  release: VIRTIO_SND_R_PCM_RELEASE,
};

const PATH: Record<State, readonly Cmd[]> = {
  [IDLE]: [],
  [PARAMS_SET]: ["set-params"],
  [PREPARED]: ["set-params", "prepare"],
  [RUNNING]: ["set-params", "prepare", "start"],
  [STOPPED]: ["set-params", "prepare", "start", "stop"],
  [RELEASED]: ["set-params", "prepare", "start", "stop", "release"],
};

function commandReq(cmd: Cmd, stream: number, params: Partial<SetParamsFields> = {}): Uint8Array {
  return cmd === "set-params" ? goodSetParams(stream, params) : u32s(COMMAND_CODE[cmd], stream);
}

/** Drives stream `stream` into `state` with real control requests, each answered OK. */
function reach(g: SimulatedGuest, stream: number, state: State, params: Partial<SetParamsFields> = {}): void {
  for (const cmd of PATH[state]) {
    const r = ctl(g, commandReq(cmd, stream, params), 4);
    expect(statusName(r.status), `${cmd} on the way to ${STATE_NAMES[state]}`).toBe("OK");
  }
  expect(g.device.streams[stream]!.state).toBe(state);
}

const stateOf = (g: SimulatedGuest, stream: number): number => g.device.streams[stream]!.state;

// ---------------------------------------------------------------------------
// What the device must answer to the information requests (from DEFAULT_CONFIG, by hand)
// ---------------------------------------------------------------------------

const JACK_INFO_SIZE = 24;
const PCM_INFO_SIZE = 32;
const CHMAP_INFO_SIZE = 24;
const JACKS = DEFAULT_CONFIG.jacks!.length;
const STREAMS = DEFAULT_CONFIG.streams!.length;
const CHMAPS = DEFAULT_CONFIG.chmaps!.length;

/** HDA default configurations of the default jacks (headphone, mic), features = 1 << REMAP. */
const JACK_DEFCONF = [0x0221_1010, 0x02a1_1020];

function jackRecord(i: number, connected = 1, defconf = JACK_DEFCONF[i]!): Uint8Array {
  const b = new Uint8Array(JACK_INFO_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0, true); // hda_fn_nid
  dv.setUint32(4, 1, true); // features: REMAP
  dv.setUint32(8, defconf, true);
  dv.setUint32(12, 0, true); // hda_reg_caps
  dv.setUint8(16, connected); // then 7 bytes of padding, 0
  return b;
}

const DEFAULT_FORMAT_BITS = [
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
].reduce((m, f) => m | (1n << BigInt(f)), 0n);
/** Every rate up to 192 kHz: all sixteen but 384000. */
const DEFAULT_RATE_BITS = 0xffffn & ~(1n << BigInt(VIRTIO_SND_PCM_RATE_384000));

function pcmRecord(i: number): Uint8Array {
  const b = new Uint8Array(PCM_INFO_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 0, true);
  dv.setUint32(4, 1 << VIRTIO_SND_PCM_F_EVT_XRUNS, true);
  dv.setBigUint64(8, DEFAULT_FORMAT_BITS, true);
  dv.setBigUint64(16, DEFAULT_RATE_BITS, true);
  dv.setUint8(24, i === 0 ? VIRTIO_SND_D_OUTPUT : VIRTIO_SND_D_INPUT);
  dv.setUint8(25, 1);
  dv.setUint8(26, 8); // then 5 bytes of padding, 0
  return b;
}

const CHMAP_POSITIONS: readonly (readonly [number, readonly number[]])[] = [
  [VIRTIO_SND_D_OUTPUT, [VIRTIO_SND_CHMAP_MONO]],
  [VIRTIO_SND_D_OUTPUT, [VIRTIO_SND_CHMAP_FL, VIRTIO_SND_CHMAP_FR]],
  [
    VIRTIO_SND_D_OUTPUT,
    [
      VIRTIO_SND_CHMAP_FL,
      VIRTIO_SND_CHMAP_FR,
      VIRTIO_SND_CHMAP_RL,
      VIRTIO_SND_CHMAP_RR,
      VIRTIO_SND_CHMAP_FC,
      VIRTIO_SND_CHMAP_LFE,
    ],
  ],
  [
    VIRTIO_SND_D_OUTPUT,
    [
      VIRTIO_SND_CHMAP_FL,
      VIRTIO_SND_CHMAP_FR,
      VIRTIO_SND_CHMAP_RL,
      VIRTIO_SND_CHMAP_RR,
      VIRTIO_SND_CHMAP_FC,
      VIRTIO_SND_CHMAP_LFE,
      VIRTIO_SND_CHMAP_SL,
      VIRTIO_SND_CHMAP_SR,
    ],
  ],
  [VIRTIO_SND_D_INPUT, [VIRTIO_SND_CHMAP_MONO]],
  [VIRTIO_SND_D_INPUT, [VIRTIO_SND_CHMAP_FL, VIRTIO_SND_CHMAP_FR]],
];

function chmapRecord(i: number): Uint8Array {
  const [direction, positions] = CHMAP_POSITIONS[i]!;
  const b = new Uint8Array(CHMAP_INFO_SIZE);
  b[4] = direction;
  b[5] = positions.length;
  b.set(positions, 6); // unused positions stay 0
  return b;
}

/** The answer payload for records start..start+count, each cut or zero-extended to `size`. */
function records(make: (i: number) => Uint8Array, start: number, count: number, size: number): Uint8Array {
  return concat(...Array.from({ length: count }, (_, k) => resize(make(start + k), size)));
}

const query = (code: number, start: number, count: number, size: number): Uint8Array =>
  u32s(code, start, count, size);

// ---------------------------------------------------------------------------
// The table
// ---------------------------------------------------------------------------

interface Row {
  name: string;
  req: Uint8Array;
  resp: number;
  /** Expected status, or "none" for an answer of used length 0. Absent when `cmd` decides. */
  status?: number | "none";
  /** A well-formed PCM command on the stream under test: status and next state come from LIFECYCLE. */
  cmd?: Cmd;
  /** Expected payload after the 4-byte status (its length fixes the used length); none: used 4. */
  payload?: Uint8Array;
}

function queryRows(
  what: string,
  code: number,
  total: number,
  size: number,
  make: (i: number) => Uint8Array,
): Row[] {
  const all = records(make, 0, total, size);
  return [
    {
      name: `${what}: all ${total} records`,
      req: query(code, 0, total, size),
      resp: 4 + total * size,
      payload: all,
    },
    {
      name: `${what}: the last record`,
      req: query(code, total - 1, 1, size),
      resp: 4 + size,
      payload: records(make, total - 1, 1, size),
    },
    {
      name: `${what}: records 1.. into a larger buffer (used counts only the records)`,
      req: query(code, 1, total - 1, size),
      resp: 4 + total * size + 100,
      payload: records(make, 1, total - 1, size),
    },
    {
      name: `${what}: size smaller than the struct (records cut)`,
      req: query(code, 0, total, size - 4),
      resp: 4 + total * (size - 4),
      payload: records(make, 0, total, size - 4),
    },
    {
      name: `${what}: size 1`,
      req: query(code, 0, total, 1),
      resp: 4 + total,
      payload: records(make, 0, total, 1),
    },
    {
      name: `${what}: size larger than the struct (records zero-filled)`,
      req: query(code, 0, total, size + 8),
      resp: 4 + total * (size + 8),
      payload: records(make, 0, total, size + 8),
    },
    { name: `${what}: count 0`, req: query(code, 0, 0, size), resp: 4, payload: new Uint8Array(0) },
    {
      name: `${what}: count 0 at start_id = total`,
      req: query(code, total, 0, size),
      resp: 4,
      payload: new Uint8Array(0),
    },
    { name: `${what}: count 0, size 0`, req: query(code, 0, 0, 0), resp: 4, payload: new Uint8Array(0) },
    { name: `${what}: start_id = total`, req: query(code, total, 1, size), resp: 4 + size, status: BAD_MSG },
    {
      name: `${what}: start_id > total, count 0`,
      req: query(code, total + 1, 0, size),
      resp: 4,
      status: BAD_MSG,
    },
    {
      name: `${what}: count = total + 1`,
      req: query(code, 0, total + 1, size),
      resp: 4 + 64 * size,
      status: BAD_MSG,
    },
    {
      name: `${what}: start_id + count one past the end`,
      req: query(code, 1, total, size),
      resp: 4 + total * size,
      status: BAD_MSG,
    },
    {
      name: `${what}: start_id 1, count 0xffffffff (u32 sum wraps to 0)`,
      req: query(code, 1, 0xffff_ffff, size),
      resp: 600,
      status: BAD_MSG,
    },
    {
      name: `${what}: start_id 0xffffffff, count 1 (u32 sum wraps to 0)`,
      req: query(code, 0xffff_ffff, 1, size),
      resp: 600,
      status: BAD_MSG,
    },
    {
      name: `${what}: start_id 0xffffffff, count 2 (u32 sum wraps to 1)`,
      req: query(code, 0xffff_ffff, 2, size),
      resp: 600,
      status: BAD_MSG,
    },
    {
      name: `${what}: count 0x80000000, size 2 (u32 product wraps to 0)`,
      req: query(code, 0, 0x8000_0000, 2),
      resp: 600,
      status: BAD_MSG,
    },
    {
      name: `${what}: count 1, size 0xffffffff (huge record)`,
      req: query(code, 0, 1, 0xffff_ffff),
      resp: 600,
      status: BAD_MSG,
    },
    // A record size of 0 with count > 0 asks for nothing meaningful: the device's policy is BAD_MSG.
    { name: `${what}: count > 0 with size 0`, req: query(code, 0, 1, 0), resp: 4, status: BAD_MSG },
    {
      name: `${what}: response one byte short of count * size`,
      req: query(code, 0, total, size),
      resp: 4 + total * size - 1,
      status: BAD_MSG,
    },
    {
      name: `${what}: response holds only the status`,
      req: query(code, 0, 1, size),
      resp: 4,
      status: BAD_MSG,
    },
    { name: `${what}: response of 3 bytes`, req: query(code, 0, total, size), resp: 3, status: "none" },
    { name: `${what}: no response buffer`, req: query(code, 0, total, size), resp: 0, status: "none" },
    {
      name: `${what}: request 12 bytes (short)`,
      req: query(code, 0, 1, size).subarray(0, 12),
      resp: 4 + size,
      status: BAD_MSG,
    },
    {
      name: `${what}: request 20 bytes (long)`,
      req: resize(query(code, 0, 1, size), 20),
      resp: 4 + size,
      status: BAD_MSG,
    },
    { name: `${what}: header only`, req: u32s(code), resp: 4 + size, status: BAD_MSG },
  ];
}

function jackRemapRows(): Row[] {
  const remap = (jack: number, assoc: number, seq: number): Uint8Array =>
    u32s(VIRTIO_SND_R_JACK_REMAP, jack, assoc, seq);
  return [
    { name: "JACK_REMAP: jack 0", req: remap(0, 1, 2), resp: 4, status: OK },
    { name: "JACK_REMAP: jack 1, into a larger buffer", req: remap(1, 15, 15), resp: 64, status: OK },
    { name: "JACK_REMAP: jack_id = jacks", req: remap(JACKS, 1, 0), resp: 4, status: BAD_MSG },
    { name: "JACK_REMAP: jack_id 0xffffffff", req: remap(0xffff_ffff, 1, 0), resp: 4, status: BAD_MSG },
    // Association and sequence are 4-bit fields of the HDA pin default configuration.
    { name: "JACK_REMAP: association 16", req: remap(0, 16, 0), resp: 4, status: BAD_MSG },
    { name: "JACK_REMAP: sequence 0xffffffff", req: remap(0, 0, 0xffff_ffff), resp: 4, status: BAD_MSG },
    {
      name: "JACK_REMAP: jack_hdr only (8 bytes)",
      req: u32s(VIRTIO_SND_R_JACK_REMAP, 0),
      resp: 4,
      status: BAD_MSG,
    },
    {
      name: "JACK_REMAP: 12 bytes (short)",
      req: remap(0, 1, 2).subarray(0, 12),
      resp: 4,
      status: BAD_MSG,
    },
    { name: "JACK_REMAP: 20 bytes (long)", req: resize(remap(0, 1, 2), 20), resp: 4, status: BAD_MSG },
    { name: "JACK_REMAP: header only", req: u32s(VIRTIO_SND_R_JACK_REMAP), resp: 4, status: BAD_MSG },
    { name: "JACK_REMAP: response of 3 bytes", req: remap(0, 1, 2), resp: 3, status: "none" },
  ];
}

function setParamsRows(s: number): Row[] {
  const sp = (over: Partial<SetParamsFields>): Uint8Array => goodSetParams(s, over);
  const bit = (n: number): number => 1 << n;
  return [
    { name: "SET_PARAMS: S16 stereo 48 kHz", req: sp({}), resp: 4, cmd: "set-params" },
    {
      name: "SET_PARAMS: with EVT_XRUNS (offered)",
      req: sp({ features: bit(VIRTIO_SND_PCM_F_EVT_XRUNS) }),
      resp: 4,
      cmd: "set-params",
    },
    {
      name: "SET_PARAMS: U8 mono 8 kHz, buffer = 1 period of 1 byte",
      req: sp({
        format: VIRTIO_SND_PCM_FMT_U8,
        channels: 1,
        rate: VIRTIO_SND_PCM_RATE_8000,
        buffer: 1,
        period: 1,
      }),
      resp: 4,
      cmd: "set-params",
    },
    {
      name: "SET_PARAMS: FLOAT64, 8 channels (channels_max)",
      req: sp({ format: VIRTIO_SND_PCM_FMT_FLOAT64, channels: 8, period: 64 * 10, buffer: 64 * 20 }),
      resp: 4,
      cmd: "set-params",
    },
    {
      name: "SET_PARAMS: S24_3 stereo, period of whole 6-byte frames",
      req: sp({ format: VIRTIO_SND_PCM_FMT_S24_3, period: 6 * 100, buffer: 6 * 400 }),
      resp: 4,
      cmd: "set-params",
    },
    { name: "SET_PARAMS: stream_id = streams", req: sp({ stream: STREAMS }), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: stream_id 0xffffffff", req: sp({ stream: 0xffff_ffff }), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: 23 bytes (short)", req: sp({}).subarray(0, 23), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: pcm_hdr only (8 bytes)", req: sp({}).subarray(0, 8), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: 25 bytes (long)", req: resize(sp({}), 25), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: 32 bytes (long)", req: resize(sp({}), 32), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: header only", req: u32s(VIRTIO_SND_R_PCM_SET_PARAMS), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: response of 3 bytes", req: sp({}), resp: 3, status: "none" },
    { name: "SET_PARAMS: no response buffer", req: sp({}), resp: 0, status: "none" },
    {
      name: "SET_PARAMS: IMA_ADPCM (not offered)",
      req: sp({ format: VIRTIO_SND_PCM_FMT_IMA_ADPCM }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: MU_LAW (not offered)",
      req: sp({ format: VIRTIO_SND_PCM_FMT_MU_LAW }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: A_LAW (not offered)",
      req: sp({ format: VIRTIO_SND_PCM_FMT_A_LAW }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: DSD_U8 (not offered)",
      req: sp({ format: VIRTIO_SND_PCM_FMT_DSD_U8 }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: IEC958_SUBFRAME (not offered)",
      req: sp({ format: VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME }),
      resp: 4,
      status: NOT_SUPP,
    },
    { name: "SET_PARAMS: format 25 (undefined)", req: sp({ format: 25 }), resp: 4, status: NOT_SUPP },
    { name: "SET_PARAMS: format 255", req: sp({ format: 255 }), resp: 4, status: NOT_SUPP },
    {
      name: "SET_PARAMS: rate 384000 (not offered)",
      req: sp({ rate: VIRTIO_SND_PCM_RATE_384000 }),
      resp: 4,
      status: NOT_SUPP,
    },
    { name: "SET_PARAMS: rate index 16 (> 15)", req: sp({ rate: 16 }), resp: 4, status: NOT_SUPP },
    { name: "SET_PARAMS: rate index 64", req: sp({ rate: 64 }), resp: 4, status: NOT_SUPP },
    { name: "SET_PARAMS: rate index 255", req: sp({ rate: 255 }), resp: 4, status: NOT_SUPP },
    { name: "SET_PARAMS: 0 channels (< channels_min)", req: sp({ channels: 0 }), resp: 4, status: NOT_SUPP },
    { name: "SET_PARAMS: 9 channels (> channels_max)", req: sp({ channels: 9 }), resp: 4, status: NOT_SUPP },
    { name: "SET_PARAMS: 255 channels", req: sp({ channels: 255 }), resp: 4, status: NOT_SUPP },
    {
      name: "SET_PARAMS: SHMEM_HOST",
      req: sp({ features: bit(VIRTIO_SND_PCM_F_SHMEM_HOST) }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: SHMEM_GUEST",
      req: sp({ features: bit(VIRTIO_SND_PCM_F_SHMEM_GUEST) }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: SHMEM_HOST | SHMEM_GUEST",
      req: sp({ features: bit(VIRTIO_SND_PCM_F_SHMEM_HOST) | bit(VIRTIO_SND_PCM_F_SHMEM_GUEST) }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: MSG_POLLING (not offered)",
      req: sp({ features: bit(VIRTIO_SND_PCM_F_MSG_POLLING) }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: EVT_SHMEM_PERIODS (not offered)",
      req: sp({ features: bit(VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS) }),
      resp: 4,
      status: NOT_SUPP,
    },
    {
      name: "SET_PARAMS: feature bit 5 (undefined)",
      req: sp({ features: bit(5) }),
      resp: 4,
      status: NOT_SUPP,
    },
    { name: "SET_PARAMS: feature bit 31", req: sp({ features: 0x8000_0000 }), resp: 4, status: NOT_SUPP },
    {
      name: "SET_PARAMS: buffer not a multiple of period",
      req: sp({ buffer: 4 * PERIOD + 4 }),
      resp: 4,
      status: BAD_MSG,
    },
    {
      name: "SET_PARAMS: buffer smaller than period",
      req: sp({ buffer: PERIOD / 2 }),
      resp: 4,
      status: BAD_MSG,
    },
    { name: "SET_PARAMS: period 0", req: sp({ period: 0 }), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: period 0, buffer 0", req: sp({ period: 0, buffer: 0 }), resp: 4, status: BAD_MSG },
    { name: "SET_PARAMS: buffer 0", req: sp({ buffer: 0 }), resp: 4, status: BAD_MSG },
    {
      name: "SET_PARAMS: period not whole frames (1922 bytes of 4-byte frames)",
      req: sp({ period: 1922, buffer: 2 * 1922 }),
      resp: 4,
      status: BAD_MSG,
    },
    {
      name: "SET_PARAMS: period not whole S24_3 stereo frames (6 bytes)",
      req: sp({ format: VIRTIO_SND_PCM_FMT_S24_3, period: 1920 + 4, buffer: 2 * 1924 }),
      resp: 4,
      status: BAD_MSG,
    },
    {
      name: "SET_PARAMS: period and buffer 0xffffffff (one byte, not a frame)",
      req: sp({ period: 0xffff_ffff, buffer: 0xffff_ffff }),
      resp: 4,
      status: BAD_MSG,
    },
  ];
}

function pcmCommandRows(s: number): Row[] {
  const rows: Row[] = [];
  for (const cmd of ["prepare", "start", "stop", "release"] as const) {
    const code = COMMAND_CODE[cmd];
    const N = cmd.toUpperCase();
    rows.push(
      { name: `${N}`, req: u32s(code, s), resp: 4, cmd },
      { name: `${N}: into a 64-byte response (used 4)`, req: u32s(code, s), resp: 64, cmd },
      { name: `${N}: stream_id = streams`, req: u32s(code, STREAMS), resp: 4, status: BAD_MSG },
      { name: `${N}: stream_id 0xffffffff`, req: u32s(code, 0xffff_ffff), resp: 4, status: BAD_MSG },
      { name: `${N}: header only`, req: u32s(code), resp: 4, status: BAD_MSG },
      { name: `${N}: 7 bytes (short)`, req: u32s(code, s).subarray(0, 7), resp: 4, status: BAD_MSG },
      { name: `${N}: 12 bytes (long)`, req: u32s(code, s, 0), resp: 4, status: BAD_MSG },
      // A PCM_INFO-sized request for a simple command: the tail is not a payload this request has.
      { name: `${N}: 24 bytes (long)`, req: resize(u32s(code, s), 24), resp: 4, status: BAD_MSG },
      // No room for the status: nothing can be answered, so nothing is done.
      { name: `${N}: response of 3 bytes`, req: u32s(code, s), resp: 3, status: "none" },
      { name: `${N}: no response buffer`, req: u32s(code, s), resp: 0, status: "none" },
    );
  }
  return rows;
}

function otherRows(): Row[] {
  const ctl = [
    ["CTL_INFO", query(VIRTIO_SND_R_CTL_INFO, 0, 1, 96), 4 + 96],
    ["CTL_ENUM_ITEMS", u32s(VIRTIO_SND_R_CTL_ENUM_ITEMS, 0), 4 + 64],
    ["CTL_READ", u32s(VIRTIO_SND_R_CTL_READ, 0), 4 + 512],
    ["CTL_WRITE", concat(u32s(VIRTIO_SND_R_CTL_WRITE, 0), new Uint8Array(512)), 4],
    ["CTL_TLV_READ", u32s(VIRTIO_SND_R_CTL_TLV_READ, 0), 4 + 8 + 64],
    ["CTL_TLV_WRITE", u32s(VIRTIO_SND_R_CTL_TLV_WRITE, 0, 0, 4, 0), 4],
    ["CTL_TLV_COMMAND", u32s(VIRTIO_SND_R_CTL_TLV_COMMAND, 0, 0, 4, 0), 4],
  ] as const;
  const rows: Row[] = [];
  for (const [name, req, resp] of ctl) {
    rows.push(
      { name: `${name} (VIRTIO_SND_F_CTLS not offered)`, req, resp, status: NOT_SUPP },
      { name: `${name}: header only`, req: req.subarray(0, 4), resp: 4, status: NOT_SUPP },
      { name: `${name}: response of 3 bytes`, req, resp: 3, status: "none" },
    );
  }
  for (const code of [0, 3, 0x00ff, 0x0106, 0x0201, 0x0307, 0x1000, 0x1101, 0x8000, 0xffff_ffff]) {
    rows.push({
      name: `unknown code 0x${code.toString(16)}`,
      req: u32s(code, 0, 0, 0),
      resp: 4,
      status: NOT_SUPP,
    });
  }
  rows.push(
    { name: "unknown code, header only", req: u32s(0x0400), resp: 4, status: NOT_SUPP },
    { name: "empty readable part", req: new Uint8Array(0), resp: 4, status: BAD_MSG },
    { name: "empty readable part, 64-byte response", req: new Uint8Array(0), resp: 64, status: BAD_MSG },
    { name: "request of 1 byte", req: new Uint8Array([1]), resp: 4, status: BAD_MSG },
    {
      name: "request of 3 bytes (PCM_INFO's code cut)",
      req: u32s(VIRTIO_SND_R_PCM_INFO).subarray(0, 3),
      resp: 4,
      status: BAD_MSG,
    },
    {
      name: "request of 80 bytes",
      req: resize(u32s(VIRTIO_SND_R_PCM_PREPARE, 0), 80),
      resp: 4,
      status: BAD_MSG,
    },
  );
  return rows;
}

/** Requests that name no stream: the same answer whatever state the streams are in. */
function commonRows(): Row[] {
  return [
    ...queryRows("JACK_INFO", VIRTIO_SND_R_JACK_INFO, JACKS, JACK_INFO_SIZE, (i) => jackRecord(i)),
    ...jackRemapRows(),
    ...queryRows("PCM_INFO", VIRTIO_SND_R_PCM_INFO, STREAMS, PCM_INFO_SIZE, pcmRecord),
    ...queryRows("CHMAP_INFO", VIRTIO_SND_R_CHMAP_INFO, CHMAPS, CHMAP_INFO_SIZE, chmapRecord),
    ...otherRows(),
  ];
}

/** Requests for stream `s`. */
function streamRows(s: number): Row[] {
  return [...setParamsRows(s), ...pcmCommandRows(s)];
}

const STREAM_CASES = [
  { stream: 0, direction: "output" },
  { stream: 1, direction: "input" },
] as const;
const STATE_CASES = ALL_STATES.map((state) => ({ state, name: STATE_NAMES[state] }));

/** Sends `row` and checks the answer; returns the state the row's stream must be in afterwards. */
function check(g: SimulatedGuest, row: Row, state: State): number {
  const r = ctl(g, row.req, row.resp);
  let status: number | "none";
  let next: number = state;
  if (row.cmd !== undefined) {
    const rule = LIFECYCLE[row.cmd];
    const allowed = rule.from.includes(state);
    status = allowed ? OK : BAD_MSG;
    if (allowed) next = rule.to;
  } else {
    status = row.status ?? OK;
  }
  if (status === "none") {
    expect(r.used).toBe(0);
  } else {
    expect(statusName(r.status)).toBe(statusName(status));
    const payload = status === OK ? (row.payload ?? new Uint8Array(0)) : new Uint8Array(0);
    expect(r.used).toBe(4 + payload.length);
    expect(Array.from(r.response.subarray(4, r.used))).toEqual(Array.from(payload));
  }
  expect(g.needsReset).toBeNull();
  return next;
}

describe.each(STATE_CASES)("control requests naming no stream, both streams $name", ({ state }) => {
  it.each(commonRows())("$name", (row) => {
    const g = newGuest();
    reach(g, 0, state);
    reach(g, 1, state);
    check(g, row, state);
    expect([stateOf(g, 0), stateOf(g, 1)].map((s) => STATE_NAMES[s])).toEqual([
      STATE_NAMES[state],
      STATE_NAMES[state],
    ]);
  });
});

describe.each(STREAM_CASES)("control requests for stream $stream ($direction)", ({ stream }) => {
  const other = 1 - stream;
  describe.each(STATE_CASES)("in state $name", ({ state }) => {
    it.each(streamRows(stream))("$name", (row) => {
      const g = newGuest();
      reach(g, stream, state);
      const next = check(g, row, state);
      expect(STATE_NAMES[stateOf(g, stream)]).toBe(STATE_NAMES[next]);
      expect(STATE_NAMES[stateOf(g, other)]).toBe("idle");
    });
  });
});

// ---------------------------------------------------------------------------
// Information requests that depend on the configuration or on earlier requests
// ---------------------------------------------------------------------------

describe("information records follow the device's state and configuration", () => {
  it("JACK_INFO reports a jack's connection as it changes", () => {
    const g = newGuest();
    g.device.setJackConnected(1, false);
    const r = ctl(g, query(VIRTIO_SND_R_JACK_INFO, 0, 2, JACK_INFO_SIZE), 4 + 2 * JACK_INFO_SIZE);
    expect(statusName(r.status)).toBe("OK");
    expect(Array.from(r.response.subarray(4))).toEqual(Array.from(concat(jackRecord(0), jackRecord(1, 0))));
  });

  it.each([
    { jack: 0, assoc: 3, seq: 7 },
    { jack: 1, assoc: 15, seq: 15 },
    { jack: 1, assoc: 0, seq: 0 },
  ])(
    "JACK_REMAP of jack $jack to association $assoc, sequence $seq shows in JACK_INFO",
    ({ jack, assoc, seq }) => {
      const g = newGuest();
      expect(statusName(ctl(g, u32s(VIRTIO_SND_R_JACK_REMAP, jack, assoc, seq), 4).status)).toBe("OK");
      const defconf = ((JACK_DEFCONF[jack]! & ~0xff) | (assoc << 4) | seq) >>> 0;
      const r = ctl(g, query(VIRTIO_SND_R_JACK_INFO, jack, 1, JACK_INFO_SIZE), 4 + JACK_INFO_SIZE);
      expect(Array.from(r.response.subarray(4))).toEqual(Array.from(jackRecord(jack, 1, defconf)));
      expect(g.device.jacks[jack]!.hdaRegDefconf).toBe(defconf);
    },
  );

  it("JACK_REMAP keeps a default configuration with bit 31 set an unsigned 32-bit value", () => {
    // An internal (fixed-function) mic: port connectivity 10b in bits 31:30.
    const g = newGuest({
      config: { ...DEFAULT_CONFIG, jacks: [{ hdaRegDefconf: 0x90a6_0110, remap: true }] },
    });
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_JACK_REMAP, 0, 2, 3), 4).status)).toBe("OK");
    expect(g.device.jacks[0]!.hdaRegDefconf).toBe(0x90a6_0123);
    const r = ctl(g, query(VIRTIO_SND_R_JACK_INFO, 0, 1, JACK_INFO_SIZE), 4 + JACK_INFO_SIZE);
    expect(new DataView(r.response.buffer).getUint32(4 + 8, true)).toBe(0x90a6_0123);
  });

  const NO_REMAP = {
    ...DEFAULT_CONFIG,
    jacks: [
      { hdaRegDefconf: JACK_DEFCONF[0]!, remap: false },
      { hdaRegDefconf: JACK_DEFCONF[1]!, remap: true },
    ],
  };
  it.each([
    { name: "a jack without VIRTIO_SND_JACK_F_REMAP", jack: 0, status: NOT_SUPP },
    { name: "a jack with it", jack: 1, status: OK },
    // The id is checked before the feature.
    { name: "a jack id out of range", jack: 2, status: BAD_MSG },
  ])("JACK_REMAP of $name", ({ jack, status }) => {
    const g = newGuest({ config: NO_REMAP });
    const before = g.device.jacks.map((j) => j.hdaRegDefconf);
    const r = ctl(g, u32s(VIRTIO_SND_R_JACK_REMAP, jack, 5, 5), 4);
    expect(statusName(r.status)).toBe(statusName(status));
    expect(r.used).toBe(4);
    if (status !== OK) expect(g.device.jacks.map((j) => j.hdaRegDefconf)).toEqual(before);
    const info = ctl(g, query(VIRTIO_SND_R_JACK_INFO, 0, 1, JACK_INFO_SIZE), 4 + JACK_INFO_SIZE);
    expect(new DataView(info.response.buffer).getUint32(4 + 4, true)).toBe(0); // jack 0 features: none
  });

  it.each([
    {
      name: "no jacks",
      config: { ...DEFAULT_CONFIG, jacks: [] },
      code: VIRTIO_SND_R_JACK_INFO,
      size: JACK_INFO_SIZE,
    },
    {
      name: "no chmaps",
      config: { ...DEFAULT_CONFIG, chmaps: [] },
      code: VIRTIO_SND_R_CHMAP_INFO,
      size: CHMAP_INFO_SIZE,
    },
  ])("with $name: count 0 is OK, count 1 is BAD_MSG", ({ config, code, size }) => {
    const g = newGuest({ config });
    const empty = ctl(g, query(code, 0, 0, size), 4);
    expect([statusName(empty.status), empty.used]).toEqual(["OK", 4]);
    const one = ctl(g, query(code, 0, 1, size), 4 + size);
    expect([statusName(one.status), one.used]).toEqual(["BAD_MSG", 4]);
  });
});

// ---------------------------------------------------------------------------
// Lifecycle details beyond one request
// ---------------------------------------------------------------------------

describe("lifecycle details", () => {
  it.each(STREAM_CASES)("PREPARE after RELEASE reuses the parameters (stream $stream)", ({ stream }) => {
    const g = newGuest();
    reach(g, stream, RELEASED);
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_PREPARE, stream), 4).status)).toBe("OK");
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_START, stream), 4).status)).toBe("OK");
    expect(stateOf(g, stream)).toBe(RUNNING);
  });

  it.each(STREAM_CASES)(
    "a refused SET_PARAMS keeps the previous parameters (stream $stream)",
    ({ stream }) => {
      const g = newGuest();
      reach(g, stream, PREPARED);
      const before = g.device.streams[stream]!.params;
      expect(statusName(ctl(g, goodSetParams(stream, { channels: 9 }), 4).status)).toBe("NOT_SUPP");
      expect(g.device.streams[stream]!.params).toBe(before);
      expect(stateOf(g, stream)).toBe(PREPARED);
    },
  );

  it("commands on one stream leave the other alone", () => {
    const g = newGuest();
    reach(g, 0, RUNNING);
    reach(g, 1, STOPPED);
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_STOP, 0), 4).status)).toBe("OK");
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_RELEASE, 1), 4).status)).toBe("OK");
    expect([stateOf(g, 0), stateOf(g, 1)]).toEqual([STOPPED, RELEASED]);
  });
});

// ---------------------------------------------------------------------------
// I/O messages (§5.14.6.8)
// ---------------------------------------------------------------------------

const TX = VIRTIO_SND_VQ_TX;
const RX = VIRTIO_SND_VQ_RX;

describe.each(STREAM_CASES)("I/O messages for stream $stream ($direction) by state", ({ stream }) => {
  const rx = stream === 1;
  it.each(ALL_STATES.map((state) => ({ state, name: STATE_NAMES[state] })))("in state $name", ({ state }) => {
    const g = newGuest();
    reach(g, stream, state);
    const buf = g.alloc(PERIOD, 16);
    const done: Completion[] = [];
    g.queueIo(stream, rx, buf, PERIOD, (c) => done.push(c));
    if (state === IDLE || state === PARAMS_SET || state === RELEASED) {
      // No PREPARE in effect: the message is refused at once.
      expect(done.map((c) => [statusName(c.status), c.used])).toEqual([["IO_ERR", 8]]);
      expect(g.pendingCount(rx)).toBe(0);
    } else {
      expect(done).toEqual([]);
      expect(g.pendingCount(rx)).toBe(1);
      g.clock.advance(PERIOD_NS);
      if (state === RUNNING) {
        // One period later the message has been played / filled.
        expect(done.map((c) => [statusName(c.status), c.used])).toEqual([["OK", rx ? 8 + PERIOD : 8]]);
      } else {
        expect(done).toEqual([]);
        expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_RELEASE, stream), 4).status)).toBe("OK");
        expect(done.map((c) => [statusName(c.status), c.used])).toEqual([["OK", 8]]);
      }
    }
    const after = state === PREPARED || state === STOPPED ? RELEASED : state;
    expect(STATE_NAMES[stateOf(g, stream)]).toBe(STATE_NAMES[after]);
    expect(g.needsReset).toBeNull();
  });
});

describe("I/O messages naming the wrong stream", () => {
  it.each([
    { name: "TX message for the input stream", stream: 1, rx: false },
    { name: "RX message for the output stream", stream: 0, rx: true },
    { name: "TX message for stream_id = streams", stream: STREAMS, rx: false },
    { name: "RX message for stream_id = streams", stream: STREAMS, rx: true },
    { name: "TX message for stream_id 0xffffffff", stream: 0xffff_ffff, rx: false },
    { name: "RX message for stream_id 0xffffffff", stream: 0xffff_ffff, rx: true },
  ])("$name completes at once with IO_ERR", ({ stream, rx }) => {
    const g = newGuest();
    reach(g, 0, PREPARED);
    reach(g, 1, PREPARED);
    const done: Completion[] = [];
    g.queueIo(stream, rx, g.alloc(PERIOD, 16), PERIOD, (c) => done.push(c));
    expect(done.map((c) => [statusName(c.status), c.used])).toEqual([["IO_ERR", 8]]);
    expect(g.device.streams.map((s) => s.pendingCount)).toEqual([0, 0]);
    expect(g.needsReset).toBeNull();
  });
});

interface Seg {
  len: number;
}

/**
 * I/O chains of any shape, on a guest whose TX and RX queues do not interrupt
 * (the test reaps them itself; the SimulatedGuest only knows chains it built).
 */
function rawIoGuest(): SimulatedGuest {
  const g = newGuest({ eventIdx: false });
  g.queues[TX]!.enableInterrupts(false);
  g.queues[RX]!.enableInterrupts(false);
  return g;
}

interface RawResult {
  token: number;
  used: number | null;
  status: number;
  /** Bytes of the writable part after completion. */
  writable: Uint8Array;
}

/**
 * Submits a chain: readable segments (the first ones carrying `header` bytes,
 * the rest PCM data), writable segments filled with 0xee. Returns a function
 * that reaps it.
 */
function rawIo(
  g: SimulatedGuest,
  queue: number,
  header: Uint8Array,
  readable: readonly number[],
  writable: readonly Seg[],
): () => RawResult {
  const out = readable.map((len) => ({ addr: g.alloc(Math.max(len, 1), 4), len }));
  const bytes = concat(
    header,
    new Uint8Array(Math.max(0, readable.reduce((a, b) => a + b, 0) - header.length)),
  );
  let o = 0;
  for (const b of out) {
    g.memory.write(b.addr, bytes, o, b.len);
    o += b.len;
  }
  const inn = writable.map((s) => ({ addr: g.alloc(Math.max(s.len, 1), 4), len: s.len }));
  for (const b of inn) g.memory.fill(b.addr, b.len, FILL);
  const token = g.queues[queue]!.add(out, inn);
  g.device.notify(queue);
  return () => {
    const u = g.queues[queue]!.getUsed();
    const total = inn.reduce((a, b) => a + b.len, 0);
    const w = new Uint8Array(total);
    let off = 0;
    for (const b of inn) {
      g.memory.read(b.addr, w, off, b.len);
      off += b.len;
    }
    if (u !== null) expect(u.token).toBe(token);
    const statusAt = queue === TX ? 0 : total - 8;
    const status = statusAt >= 0 && total >= 8 ? new DataView(w.buffer).getUint32(statusAt, true) : -1;
    return { token, used: u?.len ?? null, status, writable: w };
  };
}

describe("I/O messages of unusual shapes (stream prepared)", () => {
  const sid = (id: number): Uint8Array => u32s(id);
  it.each([
    {
      name: "TX: xfer header of 3 bytes",
      queue: TX,
      header: sid(0).subarray(0, 3),
      readable: [3],
      writable: [8],
      status: IO_ERR,
      used: 8,
    },
    {
      name: "TX: xfer header of 0 bytes (no readable part)",
      queue: TX,
      header: sid(0).subarray(0, 0),
      readable: [],
      writable: [8],
      status: IO_ERR,
      used: 8,
    },
    {
      name: "RX: xfer header of 2 bytes",
      queue: RX,
      header: sid(1).subarray(0, 2),
      readable: [2],
      writable: [PERIOD, 8],
      status: IO_ERR,
      used: 8,
    },
    {
      name: "TX: xfer header split 2 + 2, then data",
      queue: TX,
      header: sid(0),
      readable: [2, 2, PERIOD],
      writable: [8],
      status: "pending",
      used: 8,
    },
    {
      name: "TX: header and data in one descriptor",
      queue: TX,
      header: sid(0),
      readable: [4 + PERIOD],
      writable: [8],
      status: "pending",
      used: 8,
    },
    {
      name: "TX: header only, no data",
      queue: TX,
      header: sid(0),
      readable: [4],
      writable: [8],
      status: "pending",
      used: 8,
    },
    {
      name: "TX: status buffer of 4 bytes (no room for the status)",
      queue: TX,
      header: sid(0),
      readable: [4, PERIOD],
      writable: [4],
      status: "none",
      used: 0,
    },
    {
      name: "TX: no writable part",
      queue: TX,
      header: sid(0),
      readable: [4, PERIOD],
      writable: [],
      status: "none",
      used: 0,
    },
    {
      name: "TX: status split 4 + 4",
      queue: TX,
      header: sid(0),
      readable: [4, PERIOD],
      writable: [4, 4],
      status: "pending",
      used: 8,
    },
    {
      name: "RX: header of 8 bytes (readable part too long)",
      queue: RX,
      header: sid(1),
      readable: [8],
      writable: [PERIOD, 8],
      status: IO_ERR,
      used: 8,
    },
    {
      name: "RX: readable data after the header",
      queue: RX,
      header: sid(1),
      readable: [4, PERIOD],
      writable: [8],
      status: IO_ERR,
      used: 8,
    },
    {
      name: "RX: writable part of 7 bytes",
      queue: RX,
      header: sid(1),
      readable: [4],
      writable: [7],
      status: "none",
      used: 0,
    },
    {
      name: "RX: status only, no data",
      queue: RX,
      header: sid(1),
      readable: [4],
      writable: [8],
      status: "pending",
      used: 8,
    },
    {
      name: "RX: data and status in one descriptor",
      queue: RX,
      header: sid(1),
      readable: [4],
      writable: [PERIOD + 8],
      status: "pending",
      used: 8,
    },
    {
      name: "RX: status straddling two descriptors",
      queue: RX,
      header: sid(1),
      readable: [4],
      writable: [PERIOD + 3, 5],
      status: "pending",
      used: 8,
    },
  ] as const)("$name", ({ queue, header, readable, writable, status, used }) => {
    const g = rawIoGuest();
    reach(g, 0, PREPARED);
    reach(g, 1, PREPARED);
    const reap = rawIo(
      g,
      queue,
      header,
      readable,
      writable.map((len) => ({ len })),
    );
    let r = reap();
    if (status === "pending") {
      expect(r.used).toBeNull();
      // Completed, with what was recorded (nothing, as the stream never ran), by RELEASE.
      const stream = queue === TX ? 0 : 1;
      expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_RELEASE, stream), 4).status)).toBe("OK");
      r = reap();
      expect([r.used, statusName(r.status)]).toEqual([used, "OK"]);
    } else if (status === "none") {
      expect(r.used).toBe(0);
      expect(r.writable.every((b) => b === FILL)).toBe(true);
    } else {
      expect([r.used, statusName(r.status)]).toEqual([used, statusName(status)]);
    }
    expect(g.device.streams.map((s) => s.pendingCount)).toEqual([0, 0]);
    expect(g.needsReset).toBeNull();
  });
});

describe("RELEASE completes every pending message before it is answered (§5.14.6.6.5)", () => {
  it.each([
    { name: "queued in PREPARED, never started", path: [] as Cmd[], advance: 0, played: 0 },
    { name: "started, one period played, stopped", path: ["start", "stop"] as Cmd[], advance: 1, played: 1 },
    { name: "started, two periods played, stopped", path: ["start", "stop"] as Cmd[], advance: 2, played: 2 },
  ])("TX: $name", ({ path, advance, played }) => {
    const g = newGuest();
    reach(g, 0, PREPARED);
    const done: Completion[] = [];
    const buf = g.alloc(4 * PERIOD, 16);
    for (let k = 0; k < 4; k++) g.queueIo(0, false, buf + k * PERIOD, PERIOD, (c) => done.push(c));
    const interruptsAt: number[] = [];
    for (const cmd of path) {
      expect(statusName(ctl(g, commandReq(cmd, 0), 4).status)).toBe("OK");
      if (cmd === "start") g.clock.advance(advance * PERIOD_NS);
    }
    expect(done).toHaveLength(played);
    // One more message while stopped / prepared: it is pending too.
    g.queueIo(0, false, buf, PERIOD, (c) => done.push(c));
    expect(g.pendingCount(false)).toBe(5 - played);
    interruptsAt.push(g.interrupts[TX]!);
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_RELEASE, 0), 4).status)).toBe("OK");
    expect(g.pendingCount(false)).toBe(0);
    expect(done).toHaveLength(5);
    expect(done.every((c) => c.status === OK && c.used === 8)).toBe(true);
    expect(g.interrupts[TX]).toBeGreaterThan(interruptsAt[0]!);
    expect(stateOf(g, 0)).toBe(RELEASED);
  });

  it("TX completions reach the used ring and are signalled before the RELEASE answer", () => {
    const g = newGuest();
    reach(g, 0, PREPARED);
    const buf = g.alloc(2 * PERIOD, 16);
    g.queueIo(0, false, buf, PERIOD);
    g.queueIo(0, false, buf + PERIOD, PERIOD);
    const order: number[] = [];
    // Watch the interrupt line: the SimulatedGuest's handler runs as before.
    const target = g as unknown as { onInterrupt: (i: number) => void };
    const original = target.onInterrupt.bind(g);
    target.onInterrupt = (i) => {
      order.push(i);
      original(i);
    };
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_RELEASE, 0), 4).status)).toBe("OK");
    expect(order.indexOf(TX)).toBeGreaterThanOrEqual(0);
    expect(order.indexOf(TX)).toBeLessThan(order.indexOf(VIRTIO_SND_VQ_CONTROL));
  });

  it("RX: messages pending at RELEASE complete with 8 + the bytes recorded", () => {
    const source = Uint8Array.from({ length: 8 * PERIOD }, (_, i) => (i * 7 + 3) & 0xff);
    const g = newGuest({ backend: { input: () => source } });
    reach(g, 1, PREPARED);
    const done: Completion[] = [];
    const big = g.alloc(3 * PERIOD, 16);
    const small = g.alloc(PERIOD, 16);
    g.queueIo(1, true, big, 3 * PERIOD, (c) => done.push(c)); // room for three periods
    g.queueIo(1, true, small, PERIOD, (c) => done.push(c));
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_START, 1), 4).status)).toBe("OK");
    g.clock.advance(2 * PERIOD_NS); // two periods recorded into the big message
    expect(done).toEqual([]);
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_STOP, 1), 4).status)).toBe("OK");
    expect(done).toEqual([]);
    expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_RELEASE, 1), 4).status)).toBe("OK");
    expect(g.pendingCount(true)).toBe(0);
    expect(done.map((c) => [statusName(c.status), c.used])).toEqual([
      ["OK", 8 + 2 * PERIOD],
      ["OK", 8],
    ]);
    expect(Array.from(done[0]!.data!)).toEqual(Array.from(source.subarray(0, 2 * PERIOD)));
  });

  it("SET_PARAMS from PREPARED fails the messages queued for the old parameters with IO_ERR", () => {
    const g = newGuest();
    reach(g, 0, PREPARED);
    const done: Completion[] = [];
    g.queueIo(0, false, g.alloc(PERIOD, 16), PERIOD, (c) => done.push(c));
    expect(statusName(ctl(g, goodSetParams(0), 4).status)).toBe("OK");
    expect(done.map((c) => [statusName(c.status), c.used])).toEqual([["IO_ERR", 8]]);
  });
});

// ---------------------------------------------------------------------------
// Events (§5.14.6.5 jacks, §5.14.6.7 PCM)
// ---------------------------------------------------------------------------

describe("events", () => {
  it("plugging and unplugging a jack delivers JACK_DISCONNECTED / JACK_CONNECTED with the jack id", () => {
    const g = newGuest();
    g.probe(4);
    g.device.setJackConnected(0, false);
    g.device.setJackConnected(0, false); // no change, no event
    g.device.setJackConnected(1, false);
    g.device.setJackConnected(0, true);
    expect(g.events.map((e) => [e.code, e.data])).toEqual([
      [VIRTIO_SND_EVT_JACK_DISCONNECTED, 0],
      [VIRTIO_SND_EVT_JACK_DISCONNECTED, 1],
      [VIRTIO_SND_EVT_JACK_CONNECTED, 0],
    ]);
  });

  it("events raised before any event buffer is queued wait, in order, for the next buffers", () => {
    // Event buffers of the test's own, reaped by the test: the event queue does not interrupt.
    // (SimulatedGuest.probe cannot be used here: it registers a buffer only after the kick that
    // already delivers the waiting event into it, and its interrupt handler throws.)
    const g = newGuest({ eventIdx: false });
    const q = g.queues[VIRTIO_SND_VQ_EVENT]!;
    q.enableInterrupts(false);
    const bufs = new Map<number, number>();
    const give = (n: number): void => {
      for (let i = 0; i < n; i++) {
        const addr = g.alloc(8, 8);
        g.memory.fill(addr, 8, FILL);
        bufs.set(q.add([], [{ addr, len: 8 }]), addr);
      }
      g.device.notify(VIRTIO_SND_VQ_EVENT);
    };
    const take = (): number[][] => {
      const got: number[][] = [];
      for (let u = q.getUsed(); u !== null; u = q.getUsed()) {
        expect(u.len).toBe(8);
        const addr = bufs.get(u.token)!;
        got.push([g.memory.readU32(addr), g.memory.readU32(addr + 4)]);
      }
      return got;
    };
    g.device.setJackConnected(0, false);
    g.device.setJackConnected(1, false);
    g.device.setJackConnected(0, true);
    expect(take()).toEqual([]);
    give(2);
    expect(take()).toEqual([
      [VIRTIO_SND_EVT_JACK_DISCONNECTED, 0],
      [VIRTIO_SND_EVT_JACK_DISCONNECTED, 1],
    ]);
    give(2);
    expect(take()).toEqual([[VIRTIO_SND_EVT_JACK_CONNECTED, 0]]);
    // The spare buffer takes the next event at once.
    g.device.setJackConnected(1, true);
    expect(take()).toEqual([[VIRTIO_SND_EVT_JACK_CONNECTED, 1]]);
  });

  it.each([
    { stream: 0, rx: false, features: 1 << VIRTIO_SND_PCM_F_EVT_XRUNS, xruns: 1 },
    { stream: 1, rx: true, features: 1 << VIRTIO_SND_PCM_F_EVT_XRUNS, xruns: 1 },
    { stream: 0, rx: false, features: 0, xruns: 0 },
    { stream: 1, rx: true, features: 0, xruns: 0 },
  ])(
    "stream $stream with features $features: $xruns XRUN event(s) when two periods run out",
    ({ stream, rx, features, xruns }) => {
      const g = newGuest();
      g.probe(4);
      reach(g, stream, PREPARED, { features });
      const buf = g.alloc(2 * PERIOD, 16);
      const done: Completion[] = [];
      g.queueIo(stream, rx, buf, PERIOD, (c) => done.push(c));
      g.queueIo(stream, rx, buf + PERIOD, PERIOD, (c) => done.push(c));
      expect(statusName(ctl(g, u32s(VIRTIO_SND_R_PCM_START, stream), 4).status)).toBe("OK");
      g.clock.advance(2 * PERIOD_NS);
      expect(done).toHaveLength(2);
      expect(g.events).toEqual([]);
      // Starved from the third period on: one event for the whole starvation, not one per period.
      g.clock.advance(5 * PERIOD_NS);
      expect(g.events.map((e) => [e.code, e.data])).toEqual(
        Array.from({ length: xruns }, () => [VIRTIO_SND_EVT_PCM_XRUN, stream]),
      );
      expect(g.events.every((e) => e.time === 3 * PERIOD_NS)).toBe(true);
      expect(g.device.streams[stream]!.xruns).toBe(1);
    },
  );
});
