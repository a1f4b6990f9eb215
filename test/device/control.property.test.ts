/**
 * Property tests of the device against arbitrary guests (virtio 1.3 §5.14.6):
 * (a) arbitrary control requests, cut into arbitrary descriptors, checked
 *     byte for byte against a reference model of the control queue;
 * (b) arbitrary I/O messages on the TX and RX queues, interleaved with valid
 *     control commands and the passing of time.
 * Whatever the guest sends, the device must not throw, must not need a reset,
 * must write only where it may, and must keep the PCM lifecycle of §5.14.6.6.1.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import {
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
  VIRTIO_SND_PCM_F_EVT_XRUNS,
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
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import type { Buf } from "../../src/driver/driver-queue.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";

const OK = VIRTIO_SND_S_OK;
const BAD_MSG = VIRTIO_SND_S_BAD_MSG;
const NOT_SUPP = VIRTIO_SND_S_NOT_SUPP;
const IO_ERR = VIRTIO_SND_S_IO_ERR;
const TX = VIRTIO_SND_VQ_TX;
const RX = VIRTIO_SND_VQ_RX;

// ---------------------------------------------------------------------------
// The lifecycle (§5.14.6.6.1) and the reference model of the control queue
// ---------------------------------------------------------------------------

/** PcmState values: Idle, ParamsSet, Prepared, Running, Stopped, Released. */
const IDLE = 0;
const PARAMS_SET = 1;
const PREPARED = 2;
const RUNNING = 3;
const STOPPED = 4;
const RELEASED = 5;

type Cmd = "set-params" | "prepare" | "start" | "stop" | "release";
const LIFECYCLE: Record<Cmd, { from: readonly number[]; to: number }> = {
  "set-params": { from: [IDLE, PARAMS_SET, PREPARED, RELEASED], to: PARAMS_SET },
  prepare: { from: [PARAMS_SET, PREPARED, RELEASED], to: PREPARED },
  start: { from: [PREPARED, STOPPED], to: RUNNING },
  stop: { from: [RUNNING], to: STOPPED },
  release: { from: [PREPARED, STOPPED], to: RELEASED },
};
/** Every state change a command can make, as "from>to". */
const MOVES = new Set(
  Object.values(LIFECYCLE).flatMap((r) => r.from.filter((f) => f !== r.to).map((f) => `${f}>${r.to}`)),
);
const CMD_OF_CODE: Record<number, Cmd> = {
  [VIRTIO_SND_R_PCM_SET_PARAMS]: "set-params",
  [VIRTIO_SND_R_PCM_PREPARE]: "prepare",
  [VIRTIO_SND_R_PCM_START]: "start",
  [VIRTIO_SND_R_PCM_STOP]: "stop",
  [VIRTIO_SND_R_PCM_RELEASE]: "release",
};

/** Physical bits per sample of the formats DEFAULT_CONFIG offers. */
const FORMAT_BITS = new Map<number, number>([
  [VIRTIO_SND_PCM_FMT_S8, 8],
  [VIRTIO_SND_PCM_FMT_U8, 8],
  [VIRTIO_SND_PCM_FMT_S16, 16],
  [VIRTIO_SND_PCM_FMT_U16, 16],
  [VIRTIO_SND_PCM_FMT_S24_3, 24],
  [VIRTIO_SND_PCM_FMT_U24_3, 24],
  [VIRTIO_SND_PCM_FMT_S24, 32],
  [VIRTIO_SND_PCM_FMT_U24, 32],
  [VIRTIO_SND_PCM_FMT_S32, 32],
  [VIRTIO_SND_PCM_FMT_U32, 32],
  [VIRTIO_SND_PCM_FMT_FLOAT, 32],
  [VIRTIO_SND_PCM_FMT_FLOAT64, 64],
]);
const RATE_384000 = 13;
const STREAM_FEATURES = 1 << VIRTIO_SND_PCM_F_EVT_XRUNS;
const CHANNELS_MAX = 8;

const JACK_DEFCONF = [0x0221_1010, 0x02a1_1020];
const JACK_INFO_SIZE = 24;
const PCM_INFO_SIZE = 32;
const CHMAP_INFO_SIZE = 24;
const CHMAPS: readonly (readonly [number, readonly number[]])[] = [
  [0, [2]],
  [0, [3, 4]],
  [0, [3, 4, 5, 6, 7, 8]],
  [0, [3, 4, 5, 6, 7, 8, 9, 10]],
  [1, [2]],
  [1, [3, 4]],
];
const DEFAULT_FORMAT_BITS = [...FORMAT_BITS.keys()].reduce((m, f) => m | (1n << BigInt(f)), 0n);
const DEFAULT_RATE_BITS = 0xffffn & ~(1n << BigInt(RATE_384000));

/** What the model knows of the device: stream states and jack default configurations. */
interface Model {
  states: number[];
  defconf: number[];
}

function jackRecord(m: Model, i: number): Uint8Array {
  const b = new Uint8Array(JACK_INFO_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint32(4, 1, true);
  dv.setUint32(8, m.defconf[i]!, true);
  b[16] = 1;
  return b;
}

function pcmRecord(_m: Model, i: number): Uint8Array {
  const b = new Uint8Array(PCM_INFO_SIZE);
  const dv = new DataView(b.buffer);
  dv.setUint32(4, STREAM_FEATURES, true);
  dv.setBigUint64(8, DEFAULT_FORMAT_BITS, true);
  dv.setBigUint64(16, DEFAULT_RATE_BITS, true);
  b[24] = i;
  b[25] = 1;
  b[26] = CHANNELS_MAX;
  return b;
}

function chmapRecord(_m: Model, i: number): Uint8Array {
  const [direction, positions] = CHMAPS[i]!;
  const b = new Uint8Array(CHMAP_INFO_SIZE);
  b[4] = direction;
  b[5] = positions.length;
  b.set(positions, 6);
  return b;
}

const QUERIES: Record<number, { total: number; size: number; record: (m: Model, i: number) => Uint8Array }> =
  {
    [VIRTIO_SND_R_JACK_INFO]: { total: 2, size: JACK_INFO_SIZE, record: jackRecord },
    [VIRTIO_SND_R_PCM_INFO]: { total: 2, size: PCM_INFO_SIZE, record: pcmRecord },
    [VIRTIO_SND_R_CHMAP_INFO]: { total: 6, size: CHMAP_INFO_SIZE, record: chmapRecord },
  };

interface Expected {
  /** "none": no room for a status, used length 0. */
  status: number | "none";
  payload: Uint8Array;
  /** Applies the request's effect to the model (only called for OK). */
  apply?: (m: Model) => void;
}

const EMPTY = new Uint8Array(0);

/** The reference: what DEFAULT_CONFIG's device must answer to `req` with a `resp`-byte response buffer. */
function expected(m: Model, req: Uint8Array, resp: number): Expected {
  if (resp < 4) return { status: "none", payload: EMPTY };
  const fail = (status: number): Expected => ({ status, payload: EMPTY });
  if (req.length < 4) return fail(BAD_MSG);
  const dv = new DataView(req.buffer, req.byteOffset, req.byteLength);
  const u32 = (o: number): number => dv.getUint32(o, true);
  const code = u32(0);
  const query = QUERIES[code];
  if (query !== undefined) {
    if (req.length !== 16) return fail(BAD_MSG);
    const start = u32(4);
    const count = u32(8);
    const size = u32(12);
    if (start + count > query.total) return fail(BAD_MSG); // no u32 wrap: plain numbers
    if (count > 0 && size === 0) return fail(BAD_MSG);
    if (count * size > resp - 4) return fail(BAD_MSG);
    const payload = new Uint8Array(count * size);
    for (let k = 0; k < count; k++) {
      const rec = query.record(m, start + k);
      payload.set(rec.subarray(0, Math.min(size, rec.length)), k * size);
    }
    return { status: OK, payload };
  }
  if (code === VIRTIO_SND_R_JACK_REMAP) {
    if (req.length !== 16) return fail(BAD_MSG);
    const jack = u32(4);
    const assoc = u32(8);
    const seq = u32(12);
    if (jack >= 2 || assoc > 15 || seq > 15) return fail(BAD_MSG);
    return {
      status: OK,
      payload: EMPTY,
      apply: (mm) => {
        mm.defconf[jack] = ((mm.defconf[jack]! & ~0xff) | (assoc << 4) | seq) >>> 0;
      },
    };
  }
  const cmd = CMD_OF_CODE[code];
  if (cmd === undefined) return fail(NOT_SUPP);
  if (req.length !== (cmd === "set-params" ? 24 : 8)) return fail(BAD_MSG);
  const stream = u32(4);
  if (stream >= 2) return fail(BAD_MSG);
  if (cmd === "set-params") {
    const buffer = u32(8);
    const period = u32(12);
    const features = u32(16);
    const channels = req[20]!;
    const format = req[21]!;
    const rate = req[22]!;
    const bits = FORMAT_BITS.get(format);
    if (bits === undefined) return fail(NOT_SUPP);
    if (rate > 15 || rate === RATE_384000) return fail(NOT_SUPP);
    if (channels < 1 || channels > CHANNELS_MAX) return fail(NOT_SUPP);
    if ((features & ~STREAM_FEATURES) !== 0) return fail(NOT_SUPP);
    if (period === 0 || buffer === 0 || buffer % period !== 0) return fail(BAD_MSG);
    if ((period * 8) % (bits * channels) !== 0) return fail(BAD_MSG);
    // The default bound: one second of the default stream's largest frames (192 kHz, 8 ch, 64-bit).
    if (buffer > 192_000 * 8 * 8) return fail(NOT_SUPP);
  }
  const rule = LIFECYCLE[cmd];
  if (!rule.from.includes(m.states[stream]!)) return fail(BAD_MSG);
  return {
    status: OK,
    payload: EMPTY,
    apply: (mm) => {
      mm.states[stream] = rule.to;
    },
  };
}

// ---------------------------------------------------------------------------
// (a) arbitrary control requests
// ---------------------------------------------------------------------------

const u32 = fc.integer({ min: 0, max: 0xffff_ffff });
const small = (max: number): fc.Arbitrary<number> =>
  fc.oneof({ weight: 6, arbitrary: fc.integer({ min: 0, max }) }, { weight: 1, arbitrary: u32 });

const VALID_CODES = [
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_JACK_REMAP,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_R_CHMAP_INFO,
  VIRTIO_SND_R_CTL_INFO,
  VIRTIO_SND_R_CTL_ENUM_ITEMS,
  VIRTIO_SND_R_CTL_READ,
  VIRTIO_SND_R_CTL_WRITE,
  VIRTIO_SND_R_CTL_TLV_READ,
  VIRTIO_SND_R_CTL_TLV_WRITE,
  VIRTIO_SND_R_CTL_TLV_COMMAND,
];
/** PCM commands weigh more, so that streams travel through their lifecycle. */
const codeArb = fc.oneof(
  { weight: 10, arbitrary: fc.constantFrom(...VALID_CODES) },
  {
    weight: 10,
    arbitrary: fc.constantFrom(
      VIRTIO_SND_R_PCM_SET_PARAMS,
      VIRTIO_SND_R_PCM_PREPARE,
      VIRTIO_SND_R_PCM_START,
      VIRTIO_SND_R_PCM_STOP,
      VIRTIO_SND_R_PCM_RELEASE,
    ),
  },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 0x400 }) },
  { weight: 1, arbitrary: u32 },
);

function words(...values: number[]): Uint8Array {
  return SimulatedGuest.u32s(...values);
}

/** Mostly a good value, sometimes a bad one. */
const pick = <T>(good: fc.Arbitrary<T>, bad: fc.Arbitrary<T>): fc.Arbitrary<T> =>
  fc.oneof({ weight: 9, arbitrary: good }, { weight: 1, arbitrary: bad });
const streamIdArb = pick(fc.constantFrom(0, 1), fc.oneof(fc.constant(2), u32));

/** Fields that fit the request `code` (mostly valid values), as bytes of its natural length. */
function structured(code: number): fc.Arbitrary<Uint8Array> {
  const q = QUERIES[code] ?? (code === VIRTIO_SND_R_CTL_INFO ? { total: 1, size: 96 } : undefined);
  if (q !== undefined) {
    const range = pick(
      fc
        .integer({ min: 0, max: q.total })
        .chain((start) => fc.tuple(fc.constant(start), fc.integer({ min: 0, max: q.total - start }))),
      fc.tuple(small(q.total + 1), small(q.total + 1)),
    );
    const size = pick(
      fc.oneof(
        { weight: 4, arbitrary: fc.constant(q.size) },
        { weight: 1, arbitrary: fc.integer({ min: 1, max: q.size + 16 }) },
      ),
      fc.oneof(fc.constant(0), u32),
    );
    return fc.tuple(range, size).map(([[start, count], sz]) => words(code, start, count, sz));
  }
  if (code === VIRTIO_SND_R_JACK_REMAP) {
    const nibble = pick(fc.integer({ min: 0, max: 15 }), fc.oneof(fc.constant(16), u32));
    return fc
      .tuple(pick(fc.constantFrom(0, 1), fc.oneof(fc.constant(2), u32)), nibble, nibble)
      .map(([j, a, s]) => words(code, j, a, s));
  }
  if (code === VIRTIO_SND_R_PCM_SET_PARAMS) {
    return fc
      .record({
        stream: streamIdArb,
        period: pick(fc.constantFrom(1920, 960, 480, 4), small(2000)),
        periods: pick(fc.integer({ min: 1, max: 8 }), u32),
        features: pick(fc.constantFrom(0, STREAM_FEATURES), fc.oneof(fc.integer({ min: 0, max: 31 }), u32)),
        channels: pick(fc.constantFrom(1, 2), fc.nat(255)),
        format: pick(fc.constantFrom(VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_U8), fc.nat(255)),
        rate: pick(fc.constantFrom(7, 1), fc.nat(255)),
      })
      .map((p) => {
        const b = new Uint8Array(24);
        const dv = new DataView(b.buffer);
        dv.setUint32(0, code, true);
        dv.setUint32(4, p.stream, true);
        dv.setUint32(8, (p.period * p.periods) >>> 0, true);
        dv.setUint32(12, p.period, true);
        dv.setUint32(16, p.features, true);
        b[20] = p.channels;
        b[21] = p.format;
        b[22] = p.rate;
        return b;
      });
  }
  if (CMD_OF_CODE[code] !== undefined) return streamIdArb.map((s) => words(code, s));
  return fc.uint8Array({ minLength: 4, maxLength: 12 }).map((rest) => {
    const b = new Uint8Array(4 + rest.length);
    new DataView(b.buffer).setUint32(0, code, true);
    b.set(rest, 4);
    return b;
  });
}

/** A request: usually structured at its natural length, sometimes cut or extended, sometimes random bytes. */
const requestArb: fc.Arbitrary<Uint8Array> = fc.oneof(
  { weight: 12, arbitrary: codeArb.chain(structured) },
  {
    weight: 2,
    arbitrary: fc
      .tuple(codeArb.chain(structured), fc.integer({ min: 0, max: 80 }), fc.uint8Array({ maxLength: 80 }))
      .map(([b, len, fill]) => {
        const out = new Uint8Array(len);
        out.set(fill.subarray(0, len));
        out.set(b.subarray(0, len));
        return out;
      }),
  },
  {
    weight: 1,
    arbitrary: fc.tuple(codeArb, fc.uint8Array({ maxLength: 80 })).map(([code, bytes]) => {
      const out = bytes.slice();
      if (out.length >= 4) new DataView(out.buffer).setUint32(0, code, true);
      return out;
    }),
  },
);

const respArb = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(4, 4 + 2 * 24, 4 + 2 * 32, 4 + 6 * 24, 4 + 96) },
  { weight: 3, arbitrary: fc.integer({ min: 0, max: 600 }) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 8 }) },
);

/** Cut points: the part is split at these offsets (clamped; equal or end cuts give empty descriptors). */
const cutsArb = fc.array(fc.integer({ min: 0, max: 100 }), { maxLength: 3 });

function pieces(len: number, cuts: readonly number[]): number[] {
  const points = cuts.map((c) => Math.min(c, len)).sort((a, b) => a - b);
  const out: number[] = [];
  let prev = 0;
  for (const p of points) {
    out.push(p - prev);
    prev = p;
  }
  if (len - prev > 0 || out.length === 0) out.push(len - prev);
  return len === 0 && cuts.length === 0 ? [] : out;
}

/**
 * A request, or (a number) "the next command of this stream's lifecycle", built
 * when the step runs, so that sequences reach every state.
 */
const ctlStepArb = fc.record({
  req: fc.oneof({ weight: 3, arbitrary: requestArb }, { weight: 1, arbitrary: fc.constantFrom(0, 1) }),
  resp: respArb,
  reqCuts: cutsArb,
  respCuts: cutsArb,
});

/** The command that carries a stream on through its lifecycle towards running and back. */
const NEXT: readonly Cmd[] = ["set-params", "prepare", "start", "stop", "release", "prepare"];
const CODE_OF_CMD: Record<Cmd, number> = {
  "set-params": VIRTIO_SND_R_PCM_SET_PARAMS,
  prepare: VIRTIO_SND_R_PCM_PREPARE,
  start: VIRTIO_SND_R_PCM_START,
  stop: VIRTIO_SND_R_PCM_STOP,
  release: VIRTIO_SND_R_PCM_RELEASE,
};

function nextRequest(m: Model, stream: number): Uint8Array {
  const cmd = NEXT[m.states[stream]!]!;
  if (cmd !== "set-params") return words(CODE_OF_CMD[cmd], stream);
  const b = words(CODE_OF_CMD[cmd], stream, 4 * 1920, 1920, 0, 0);
  b.set([2, VIRTIO_SND_PCM_FMT_S16, 7], 20);
  return b;
}
const variantArb = fc.oneof(
  fc.record({ packed: fc.constant(false), eventIdx: fc.boolean(), indirect: fc.boolean() }),
  fc.record({ packed: fc.constant(true), eventIdx: fc.boolean(), indirect: fc.boolean() }),
);

const ARENA = 4096;
const RESP_BASE = 1024;
const GAP = 8;

describe("arbitrary control requests", () => {
  it("are answered exactly as the model says, write only their answer, and keep the lifecycle", () => {
    fc.assert(
      fc.property(
        variantArb,
        fc.array(ctlStepArb, { minLength: 1, maxLength: 30, size: "max" }),
        (variant, steps) => {
          const g = new SimulatedGuest({ ...variant, memorySize: 1 << 20 });
          g.init();
          const arena = g.alloc(ARENA, 16);
          const m: Model = { states: [IDLE, IDLE], defconf: [...JACK_DEFCONF] };
          const q = g.queues[VIRTIO_SND_VQ_CONTROL]!;

          steps.forEach((step, n) => {
            const resp = step.resp;
            const req = typeof step.req === "number" ? nextRequest(m, step.req) : step.req;
            // Lay the parts out in descriptors separated by gaps, over a known background.
            const background = (n * 37 + 11) & 0xff;
            g.memory.fill(arena, ARENA, background);
            const out: Buf[] = [];
            let at = arena;
            let off = 0;
            for (const len of pieces(req.length, step.reqCuts)) {
              g.memory.write(at, req, off, len);
              out.push({ addr: at, len });
              off += len;
              at += len + GAP;
            }
            const inn: Buf[] = [];
            at = arena + RESP_BASE;
            for (const len of pieces(resp, step.respCuts)) {
              inn.push({ addr: at, len });
              at += len + GAP;
            }
            if (out.length + inn.length === 0) out.push({ addr: arena, len: 0 });
            const before = new Uint8Array(ARENA);
            g.memory.read(arena, before, 0, ARENA);
            const states = g.device.streams.map((s) => s.state as number);

            const token = q.add(out, inn);
            g.device.notify(VIRTIO_SND_VQ_CONTROL);
            const used = q.getUsed();
            expect(used?.token).toBe(token);
            expect(q.getUsed()).toBeNull();
            const len = used!.len;

            // The answer, read back through the descriptors.
            const after = new Uint8Array(ARENA);
            g.memory.read(arena, after, 0, ARENA);
            const answer = new Uint8Array(len);
            const expectedArena = before.slice();
            let k = 0;
            for (const b of inn) {
              for (let i = 0; i < b.len && k < len; i++, k++) {
                const p = b.addr - arena + i;
                answer[k] = after[p]!;
                expectedArena[p] = after[p]!;
              }
            }
            expect(k, "used length within the response buffer").toBe(len);
            expect(
              Buffer.from(after).equals(Buffer.from(expectedArena)),
              "nothing written but the answer",
            ).toBe(true);

            const want = expected(m, req, resp);
            if (want.status === "none") {
              expect(len).toBe(0);
            } else {
              const status = len >= 4 ? new DataView(answer.buffer).getUint32(0, true) : -1;
              expect([OK, BAD_MSG, NOT_SUPP, IO_ERR]).toContain(status);
              expect(status.toString(16)).toBe(want.status.toString(16));
              expect(len).toBe(4 + want.payload.length);
              expect(Buffer.from(answer.subarray(4)).equals(Buffer.from(want.payload))).toBe(true);
              if (want.status === OK) want.apply?.(m);
            }

            const now = g.device.streams.map((s) => s.state as number);
            expect(now).toEqual(m.states);
            // At most one stream moved, and along a transition the lifecycle allows.
            const moved = now.filter((s, i) => s !== states[i]!).length;
            expect(moved).toBeLessThanOrEqual(1);
            now.forEach((s, i) => {
              if (s !== states[i]) expect(MOVES.has(`${states[i]}>${s}`)).toBe(true);
            });
            expect(g.device.jacks.map((j) => j.hdaRegDefconf)).toEqual(m.defconf);
            expect(g.needsReset).toBeNull();
            expect(g.device.needsReset).toBe(false);
          });
        },
      ),
      { numRuns: 150 },
    );
  });
});

// ---------------------------------------------------------------------------
// (b) arbitrary I/O messages
// ---------------------------------------------------------------------------

interface IoOp {
  kind: "io";
  queue: number;
  /** "own": the stream of the queue's direction (0 for TX, 1 for RX). */
  stream: "own" | number;
  hdrLen: number;
  hdrSplit: boolean;
  /** Linux's shape (header; data on the right side; status), or anything. */
  standard: boolean;
  readable: number[];
  writable: number[];
  statusLen: number;
}
interface CtlOp {
  kind: "ctl";
  stream: number;
  /** "next": the command that carries the stream on through its lifecycle towards running and back. */
  cmd: Cmd | "next";
  xruns: boolean;
  periodFrames: number;
}
interface AdvanceOp {
  kind: "advance";
  ns: number;
}
type Op = IoOp | CtlOp | AdvanceOp;

const sizeArb = fc.oneof(
  { weight: 4, arbitrary: fc.constantFrom(480, 1920, 3840) },
  { weight: 2, arbitrary: fc.integer({ min: 1, max: 4000 }) },
  { weight: 1, arbitrary: fc.constant(0) },
);

const ioOpArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constant("io" as const),
  queue: fc.constantFrom(TX, RX),
  stream: fc.oneof(
    { weight: 8, arbitrary: fc.constant("own" as const) },
    { weight: 2, arbitrary: fc.constantFrom(0, 1) },
    { weight: 1, arbitrary: fc.constantFrom(2, 0xffff_ffff) },
  ),
  hdrLen: fc.oneof(
    { weight: 8, arbitrary: fc.constant(4) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 8 }) },
  ),
  hdrSplit: fc.boolean(),
  standard: fc.oneof(
    { weight: 4, arbitrary: fc.constant(true) },
    { weight: 1, arbitrary: fc.constant(false) },
  ),
  readable: fc.array(sizeArb, { minLength: 0, maxLength: 3 }),
  writable: fc.array(sizeArb, { minLength: 0, maxLength: 3 }),
  statusLen: fc.oneof(
    { weight: 8, arbitrary: fc.constant(8) },
    { weight: 1, arbitrary: fc.integer({ min: 0, max: 12 }) },
  ),
});

const ctlOpArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constant("ctl" as const),
  stream: fc.constantFrom(0, 1),
  cmd: fc.oneof(
    { weight: 3, arbitrary: fc.constant("next" as const) },
    { weight: 2, arbitrary: fc.constantFrom<Cmd>("set-params", "prepare", "start", "stop", "release") },
  ),
  xruns: fc.boolean(),
  periodFrames: fc.constantFrom(120, 480),
});

const advanceArb: fc.Arbitrary<Op> = fc.record({
  kind: fc.constant("advance" as const),
  ns: fc.oneof(fc.integer({ min: 0, max: 40_000_000 }), fc.constantFrom(2_500_000, 10_000_000)),
});

const opArb = fc.oneof(
  { weight: 5, arbitrary: ioOpArb },
  { weight: 3, arbitrary: ctlOpArb },
  { weight: 2, arbitrary: advanceArb },
);

const FILL = 0xee;

interface Outstanding {
  queue: number;
  /** Readable buffers and the bytes they held. */
  readable: { buf: Buf; bytes: Uint8Array }[];
  writable: Buf[];
  writableBytes: number;
}

describe("arbitrary I/O messages", () => {
  it("always complete, by RELEASE at the latest, with lengths the spec allows", () => {
    const ioVariant = fc.oneof(
      // Split rings without EVENT_IDX, so that the TX/RX queues can be kept from interrupting.
      fc.record({ packed: fc.constant(false), eventIdx: fc.constant(false), indirect: fc.boolean() }),
      fc.record({ packed: fc.constant(true), eventIdx: fc.boolean(), indirect: fc.boolean() }),
    );
    fc.assert(
      fc.property(
        ioVariant,
        fc.array(opArb, { minLength: 1, maxLength: 30, size: "max" }),
        (variant, ops) => {
          const g = new SimulatedGuest({ ...variant, queueSize: 256, memorySize: 4 << 20 });
          g.init();
          // The test reaps the TX and RX queues itself: the SimulatedGuest only knows the chains it built.
          g.queues[TX]!.enableInterrupts(false);
          g.queues[RX]!.enableInterrupts(false);
          const outstanding = [new Map<number, Outstanding>(), new Map<number, Outstanding>()];
          const states = [IDLE, IDLE];

          const reap = (): void => {
            for (const queue of [TX, RX]) {
              const map = outstanding[queue === TX ? 0 : 1]!;
              for (let u = g.queues[queue]!.getUsed(); u !== null; u = g.queues[queue]!.getUsed()) {
                const o = map.get(u.token);
                expect(o, "a chain completes once").toBeDefined();
                map.delete(u.token);
                const w = new Uint8Array(o!.writableBytes);
                let at = 0;
                for (const b of o!.writable) {
                  g.memory.read(b.addr, w, at, b.len);
                  at += b.len;
                }
                const W = o!.writableBytes;
                if (queue === TX) {
                  // Only the status is written: 8 bytes when it fits, else nothing.
                  expect(u.len).toBe(W >= 8 ? 8 : 0);
                  // BAD_MSG: data that is not a whole number of frames.
                  if (u.len === 8)
                    expect([OK, IO_ERR, BAD_MSG]).toContain(new DataView(w.buffer).getUint32(0, true));
                  expect(w.subarray(u.len).every((b) => b === FILL)).toBe(true);
                } else {
                  expect(u.len).toBeLessThanOrEqual(W);
                  expect(u.len === 0 || u.len >= 8).toBe(true);
                  if (W < 8) expect(u.len).toBe(0);
                  if (u.len >= 8) {
                    expect([OK, IO_ERR, BAD_MSG]).toContain(new DataView(w.buffer).getUint32(W - 8, true));
                    // Recorded frames fill the data part from its start; the rest is untouched.
                    expect(w.subarray(u.len - 8, W - 8).every((b) => b === FILL)).toBe(true);
                  }
                }
                for (const r of o!.readable) {
                  const now = new Uint8Array(r.buf.len);
                  g.memory.read(r.buf.addr, now, 0, r.buf.len);
                  expect(
                    Buffer.from(now).equals(Buffer.from(r.bytes)),
                    "readable buffers are not written",
                  ).toBe(true);
                }
              }
            }
            expect(g.needsReset).toBeNull();
          };

          const submit = (op: IoOp): void => {
            const stream = op.stream === "own" ? (op.queue === TX ? 0 : 1) : op.stream;
            const header = new Uint8Array(Math.max(op.hdrLen, 4));
            new DataView(header.buffer).setUint32(0, stream, true);
            const hdrPieces =
              op.hdrLen === 0 ? [] : op.hdrSplit && op.hdrLen >= 2 ? [2, op.hdrLen - 2] : [op.hdrLen];
            const tx = op.queue === TX;
            const readData = tx || !op.standard ? op.readable : [];
            const writeData = !tx || !op.standard ? op.writable : [];
            const mk = (len: number): Buf => ({ addr: g.alloc(Math.max(len, 1), 4), len });
            const out: Buf[] = [];
            const readable: Outstanding["readable"] = [];
            let hoff = 0;
            for (const len of [...hdrPieces, ...readData]) {
              const b = mk(len);
              const bytes = new Uint8Array(len);
              for (let i = 0; i < len; i++)
                bytes[i] = hoff < op.hdrLen ? header[hoff++]! : (i * 13 + len) & 0xff;
              g.memory.write(b.addr, bytes, 0, len);
              out.push(b);
              readable.push({ buf: b, bytes });
            }
            const inn: Buf[] = [...writeData, ...(op.statusLen > 0 ? [op.statusLen] : [])].map(mk);
            for (const b of inn) g.memory.fill(b.addr, b.len, FILL);
            const total = out.length + inn.length;
            const q = g.queues[op.queue]!;
            if (total === 0 || (variant.indirect && total > 1 ? 1 : total) > q.freeCount) return;
            const token = q.add(out, inn);
            outstanding[tx ? 0 : 1]!.set(token, {
              queue: op.queue,
              readable,
              writable: inn,
              writableBytes: inn.reduce((a, b) => a + b.len, 0),
            });
            g.device.notify(op.queue);
          };

          const command = (stream: number, cmd: Cmd, xruns = false, periodFrames = 480): void => {
            const status =
              cmd === "set-params"
                ? g.setParams(stream, {
                    format: VIRTIO_SND_PCM_FMT_S16,
                    rate: 48000,
                    channels: 2,
                    periodBytes: periodFrames * 4,
                    bufferBytes: periodFrames * 16,
                    features: xruns ? STREAM_FEATURES : 0,
                  })
                : g.pcmCommand(CODE_OF_CMD[cmd], stream);
            const rule = LIFECYCLE[cmd];
            const allowed = rule.from.includes(states[stream]!);
            expect(status.toString(16)).toBe((allowed ? OK : BAD_MSG).toString(16));
            if (allowed) states[stream] = rule.to;
            expect(g.device.streams[stream]!.state as number).toBe(states[stream]);
          };

          for (const op of ops) {
            if (op.kind === "io") submit(op);
            else if (op.kind === "ctl") {
              const cmd = op.cmd === "next" ? NEXT[states[op.stream]!]! : op.cmd;
              command(op.stream, cmd, op.xruns, op.periodFrames);
            } else g.clock.advance(op.ns);
            reap();
          }
          // Messages to a stream that accepts none were answered at once.
          for (const stream of [0, 1]) {
            const s = states[stream]!;
            if (s === IDLE || s === PARAMS_SET || s === RELEASED)
              expect(g.device.streams[stream]!.pendingCount).toBe(0);
          }
          // Wind down: every message has completed once both streams are released.
          for (const stream of [0, 1]) {
            if (states[stream] === RUNNING) command(stream, "stop");
            if (states[stream] === PREPARED || states[stream] === STOPPED) command(stream, "release");
            reap();
          }
          expect(outstanding.map((o) => o.size)).toEqual([0, 0]);
          expect(g.device.streams.map((s) => s.pendingCount)).toEqual([0, 0]);
          expect(g.device.needsReset).toBe(false);
        },
      ),
      { numRuns: 150 },
    );
  });
});
