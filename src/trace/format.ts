/**
 * The trace format: what a virtio-snd device saw a real driver do, as JSON
 * Lines, so the device can be tested against real traffic without a VM.
 *
 * A trace is a text file, one JSON object per line (UTF-8, "\n" ends every
 * line; blank lines are ignored).
 *
 * Line 1, the header:
 *
 *   {"format":"virtio-snd-trace","version":1,
 *    "device":{"features":"0x...","ring":"split","config":{...}},"note":"..."}
 *
 *   - device.features: the feature bits the device offered, hex.
 *   - device.ring: "split" or "packed", the ring layout of the first accepted
 *     feature negotiation (absent only when the trace has none).
 *   - device.config: the SoundConfig the device was built with (streams,
 *     jacks, chmaps, controls), so a replay builds the same device. Values
 *     JSON cannot hold are tagged: {"$hex":"..."} for bytes, {"$bigint":"-5"}
 *     for 64-bit integers.
 *   - note: free text (optional).
 *
 * Every further line is one event, in the order the device saw them; "t" is
 * the device clock in nanoseconds since the recorder was attached (never
 * decreasing) and "ev" says what happened. Queues ("q") are numbered as in
 * §5.14.2: 0 control, 1 event, 2 tx, 3 rx.
 *
 *   features   {"features":"0x...","accepted":false?}  driver feature selection;
 *              "accepted" appears only when the device refused it.
 *   queue      {"q","size","base"?}      the driver enabled queue q (base: vhost-user's ring position)
 *   stop       {"q","base"}              the transport stopped queue q (vhost-user GET_VRING_BASE)
 *   kick       {"q"}                     the driver notified queue q
 *   avail      {"q","seq","r":[...],"w":[...],"fault"?}
 *              the device took a chain from queue q. "seq" numbers the
 *              chains of each queue from 0 over the whole trace. "r" lists
 *              the device-readable descriptors in order, each
 *              {"len":n,"hex":"..."} with its bytes, or {"len":n,"sha256":"..."}
 *              (TX audio recorded as a hash, see below); "w" lists the lengths
 *              of the device-writable descriptors. Descriptor boundaries are
 *              kept; guest addresses are not (they mean nothing elsewhere).
 *              A malformed chain has "fault" (a ChainFault) and no descriptors.
 *   used       {"q","seq","len","hex","status"?}
 *              the device returned chain "seq" with used length "len";
 *              "hex" is the writable part's first min(len, writable) bytes.
 *              On tx and rx, when len does not reach the end of the writable
 *              part, "status" holds its last 8 bytes (the virtio_snd_pcm_status
 *              the driver reads there).
 *   interrupt  {"q"}                     the device interrupted the driver for queue q
 *   reset      {}                        device reset
 *   needs-reset {"message"}              the device found a ring unusable (DEVICE_NEEDS_RESET)
 *   jack       {"jack","connected"}      the host plugged or unplugged a jack
 *   control    {"op":"value"|"tlv"|"active","id","value"}  the host changed a control element
 *
 * A chain is recorded when the device takes it ("avail"), not when the driver
 * made it available, which the device cannot see; a replay makes each chain
 * available when the device looks for it.
 *
 * TX audio as hashes: audio makes traces big (48 kHz stereo S16 is 384 KiB/s
 * of hex). A recorder may store each TX descriptor that holds only audio (it
 * starts after the 4-byte xfer header) as {"len","sha256"}. Such a trace is
 * far smaller but no longer holds what the guest played: a replay fills those
 * descriptors with a deterministic pattern (or with audio the caller supplies
 * and checks against the hash) and verifies that every byte is played once,
 * in order; it cannot verify the audio itself.
 *
 * Versioning: "version" is 1. A reader rejects versions it does not know.
 * Optional fields may be added without a new version (readers ignore fields
 * they do not know); a new event type, a new required field or a change of
 * meaning makes a new version.
 *
 * No Node built-ins: this is core code.
 */
import type { SoundConfig } from "../device/config.js";
import type { ControlOp } from "../device/observer.js";
import { VirtioSndError } from "../errors.js";
import { VIRTIO_F_RING_PACKED, VIRTIO_SND_VQ_RX, VIRTIO_SND_VQ_TX } from "../spec/constants.js";
import { fromHex, isHex, toHex } from "./bytes.js";

/** A control event's op: which setter the host called (the device's own names). */
export type { ControlOp };

export const TRACE_FORMAT = "virtio-snd-trace";
export const TRACE_VERSION = 1;

/** Queues a virtio-snd device has (§5.14.2). */
const QUEUES = 4;
/** The longest chain any ring allows (a queue of 32768). */
const MAX_SEGMENTS = 32768;
const U32_MAX = 0xffff_ffff;

/** A malformed trace, or one that cannot be replayed; `line` is 1-based (0: not about one line). */
export class TraceError extends VirtioSndError {
  readonly line: number;

  constructor(line: number, message: string, options?: { cause?: unknown }) {
    super("ERR_INVALID_TRACE", line > 0 ? `trace line ${line}: ${message}` : `trace: ${message}`, options);
    this.name = "TraceError";
    this.line = line;
  }
}

export type RingKind = "split" | "packed";

export interface TraceHeader {
  readonly format: typeof TRACE_FORMAT;
  readonly version: typeof TRACE_VERSION;
  readonly device: {
    /** Features the device offered. */
    readonly features: bigint;
    /** The ring layout the driver first negotiated. */
    readonly ring?: RingKind;
    readonly config: SoundConfig;
  };
  readonly note?: string;
}

/** A device-readable descriptor: its bytes, or (TX audio) its length and SHA-256. */
export type TraceSegment =
  { readonly len: number; readonly data: Uint8Array } | { readonly len: number; readonly sha256: string };

export type TraceEvent =
  | { readonly t: number; readonly ev: "features"; readonly features: bigint; readonly accepted: boolean }
  | {
      readonly t: number;
      readonly ev: "queue";
      readonly q: number;
      readonly size: number;
      readonly base?: number;
    }
  | { readonly t: number; readonly ev: "stop"; readonly q: number; readonly base: number }
  | { readonly t: number; readonly ev: "kick"; readonly q: number }
  | AvailEvent
  | UsedEvent
  | { readonly t: number; readonly ev: "interrupt"; readonly q: number }
  | { readonly t: number; readonly ev: "reset" }
  | { readonly t: number; readonly ev: "needs-reset"; readonly message: string }
  | { readonly t: number; readonly ev: "jack"; readonly jack: number; readonly connected: boolean }
  | ControlEvent;

export interface AvailEvent {
  readonly t: number;
  readonly ev: "avail";
  readonly q: number;
  readonly seq: number;
  readonly r: readonly TraceSegment[];
  readonly w: readonly number[];
  readonly fault?: number;
}

export interface UsedEvent {
  readonly t: number;
  readonly ev: "used";
  readonly q: number;
  readonly seq: number;
  readonly len: number;
  /** The writable part's first min(len, writable bytes) bytes. */
  readonly data: Uint8Array;
  /** TX/RX with len short of the writable part: its last 8 bytes. */
  readonly status?: Uint8Array;
}

export interface ControlEvent {
  readonly t: number;
  readonly ev: "control";
  readonly op: ControlOp;
  readonly id: number;
  /** The value given to setControlValue / setControlTlv / setControlActive. */
  readonly value: unknown;
}

export type TraceEventType = TraceEvent["ev"];

/** A parsed trace; `lines[i]` is the 1-based line of `events[i]`. */
export interface Trace {
  readonly header: TraceHeader;
  readonly events: readonly TraceEvent[];
  readonly lines: readonly number[];
}

// ---- tagged JSON (configuration and control values) ------------------------------

/** A JSON-safe copy of `value`: bytes become {"$hex"}, bigints {"$bigint"}; undefined members are dropped. */
export function toTaggedJson(value: unknown): unknown {
  if (typeof value === "bigint") return { $bigint: value.toString() };
  if (value instanceof Uint8Array) return { $hex: toHex(value) };
  if (Array.isArray(value)) return value.map((v) => (v === undefined ? null : toTaggedJson(v)));
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toTaggedJson(v);
    return out;
  }
  if (typeof value === "number" && !Number.isFinite(value)) return null;
  return value;
}

/** Undoes toTaggedJson; throws TraceError for a malformed tag. */
export function fromTaggedJson(value: unknown, line: number, where: string): unknown {
  if (Array.isArray(value)) return value.map((v, i) => fromTaggedJson(v, line, `${where}[${i}]`));
  if (value !== null && typeof value === "object") {
    const o = value as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && keys[0] === "$hex") {
      const s = o.$hex;
      if (typeof s !== "string" || !isHex(s)) throw new TraceError(line, `${where}.$hex: not lowercase hex`);
      return fromHex(s);
    }
    if (keys.length === 1 && keys[0] === "$bigint") {
      const s = o.$bigint;
      if (typeof s !== "string" || !/^-?\d{1,40}$/.test(s))
        throw new TraceError(line, `${where}.$bigint: not a decimal integer`);
      return BigInt(s);
    }
    const out: Record<string, unknown> = {};
    for (const k of keys) {
      // defineProperty: a "__proto__" key stays a plain property.
      Object.defineProperty(out, k, {
        value: fromTaggedJson(o[k], line, `${where}.${k}`),
        enumerable: true,
        writable: true,
        configurable: true,
      });
    }
    return out;
  }
  return value;
}

// ---- encoding ----------------------------------------------------------------------

const hex64 = (v: bigint): string => `0x${v.toString(16)}`;

/** The header line (no trailing newline). */
export function encodeHeader(header: TraceHeader): string {
  const device: Record<string, unknown> = { features: hex64(header.device.features) };
  if (header.device.ring !== undefined) device.ring = header.device.ring;
  device.config = toTaggedJson(header.device.config);
  const out: Record<string, unknown> = { format: TRACE_FORMAT, version: TRACE_VERSION, device };
  if (header.note !== undefined) out.note = header.note;
  return JSON.stringify(out);
}

/** One event line (no trailing newline). Keys come in a fixed order, so traces diff well. */
export function encodeEvent(e: TraceEvent): string {
  const o: Record<string, unknown> = { t: e.t, ev: e.ev };
  switch (e.ev) {
    case "features":
      o.features = hex64(e.features);
      if (!e.accepted) o.accepted = false;
      break;
    case "queue":
      o.q = e.q;
      o.size = e.size;
      if (e.base !== undefined) o.base = e.base;
      break;
    case "stop":
      o.q = e.q;
      o.base = e.base;
      break;
    case "kick":
    case "interrupt":
      o.q = e.q;
      break;
    case "avail":
      o.q = e.q;
      o.seq = e.seq;
      o.r = e.r.map((s) =>
        "data" in s ? { len: s.len, hex: toHex(s.data) } : { len: s.len, sha256: s.sha256 },
      );
      o.w = e.w;
      if (e.fault !== undefined) o.fault = e.fault;
      break;
    case "used":
      o.q = e.q;
      o.seq = e.seq;
      o.len = e.len;
      o.hex = toHex(e.data);
      if (e.status !== undefined) o.status = toHex(e.status);
      break;
    case "reset":
      break;
    case "needs-reset":
      o.message = e.message;
      break;
    case "jack":
      o.jack = e.jack;
      o.connected = e.connected;
      break;
    case "control":
      o.op = e.op;
      o.id = e.id;
      o.value = toTaggedJson(e.value);
      break;
  }
  return JSON.stringify(o);
}

/** A whole trace as text, each line ended by "\n". */
export function encodeTrace(trace: { header: TraceHeader; events: readonly TraceEvent[] }): string {
  let s = encodeHeader(trace.header) + "\n";
  for (const e of trace.events) s += encodeEvent(e) + "\n";
  return s;
}

// ---- decoding ----------------------------------------------------------------------

type Obj = Record<string, unknown>;

/** Field readers that fail with the line number and the field's path. */
class Fields {
  constructor(
    readonly line: number,
    readonly where: string,
  ) {}

  fail(message: string): never {
    throw new TraceError(this.line, `${this.where}: ${message}`);
  }

  has(o: Obj, key: string): boolean {
    return Object.prototype.hasOwnProperty.call(o, key) && o[key] !== undefined;
  }

  get(o: Obj, key: string): unknown {
    if (!this.has(o, key)) this.fail(`missing field "${key}"`);
    return o[key];
  }

  uint(o: Obj, key: string, max: number): number {
    return this.uintValue(this.get(o, key), key, max);
  }

  uintValue(v: unknown, what: string, max: number): number {
    if (typeof v !== "number" || !Number.isInteger(v) || v < 0 || v > max)
      this.fail(`"${what}" must be an integer from 0 to ${max}, not ${short(v)}`);
    return v;
  }

  queue(o: Obj): number {
    return this.uint(o, "q", QUEUES - 1);
  }

  string(o: Obj, key: string): string {
    const v = this.get(o, key);
    if (typeof v !== "string") this.fail(`"${key}" must be a string, not ${short(v)}`);
    return v;
  }

  bool(o: Obj, key: string): boolean {
    const v = this.get(o, key);
    if (typeof v !== "boolean") this.fail(`"${key}" must be true or false, not ${short(v)}`);
    return v;
  }

  hex(o: Obj, key: string, bytes?: number): Uint8Array {
    const s = this.string(o, key);
    if (!isHex(s)) this.fail(`"${key}" is not lowercase hex of whole bytes`);
    if (bytes !== undefined && s.length !== 2 * bytes)
      this.fail(`"${key}" holds ${s.length / 2} bytes, expected ${bytes}`);
    return fromHex(s);
  }

  features(o: Obj, key: string): bigint {
    const s = this.string(o, key);
    if (!/^0x[0-9a-f]{1,16}$/.test(s)) this.fail(`"${key}" must be a hex number such as "0x100000000"`);
    return BigInt(s);
  }

  object(v: unknown, what: string): Obj {
    if (v === null || typeof v !== "object" || Array.isArray(v)) this.fail(`${what} must be an object`);
    return v as Obj;
  }

  array(o: Obj, key: string, maxLength: number): unknown[] {
    const v = this.get(o, key);
    if (!Array.isArray(v)) this.fail(`"${key}" must be an array`);
    if (v.length > maxLength) this.fail(`"${key}" has ${v.length} entries, at most ${maxLength} are allowed`);
    return v;
  }
}

function short(v: unknown): string {
  let s: string;
  try {
    s = JSON.stringify(v) ?? String(v);
  } catch {
    s = String(v);
  }
  return s.length > 40 ? `${s.slice(0, 37)}...` : s;
}

function parseJson(text: string, line: number): Obj {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new TraceError(line, `not JSON (${err instanceof Error ? err.message : String(err)})`);
  }
  if (v === null || typeof v !== "object" || Array.isArray(v))
    throw new TraceError(line, "not a JSON object");
  return v as Obj;
}

function decodeHeader(o: Obj, line: number): TraceHeader {
  const f: Fields = new Fields(line, "header");
  if (o.format !== TRACE_FORMAT) {
    f.fail(`"format" must be "${TRACE_FORMAT}" (is this a virtio-snd trace?), not ${short(o.format)}`);
  }
  const version = f.get(o, "version");
  if (version !== TRACE_VERSION) {
    f.fail(`version ${short(version)} is not supported; this reader knows version ${TRACE_VERSION}`);
  }
  const device = f.object(f.get(o, "device"), '"device"');
  const d: Fields = new Fields(line, "header.device");
  const features = d.features(device, "features");
  let ring: RingKind | undefined;
  if (d.has(device, "ring")) {
    const r = device.ring;
    if (r !== "split" && r !== "packed") d.fail(`"ring" must be "split" or "packed", not ${short(r)}`);
    ring = r;
  }
  const rawConfig = d.object(d.get(device, "config"), '"config"');
  for (const key of ["streams", "jacks", "chmaps", "controls"]) {
    if (!d.has(rawConfig, key)) continue;
    const list = rawConfig[key];
    if (!Array.isArray(list)) d.fail(`config.${key} must be an array`);
    list.forEach((item, i) => d.object(item, `config.${key}[${i}]`));
  }
  const config = fromTaggedJson(rawConfig, line, "header.device.config") as SoundConfig;
  let note: string | undefined;
  if (f.has(o, "note")) note = f.string(o, "note");
  return {
    format: TRACE_FORMAT,
    version: TRACE_VERSION,
    device: { features, ...(ring !== undefined ? { ring } : {}), config },
    ...(note !== undefined ? { note } : {}),
  };
}

/**
 * Reads a trace line by line, checking each line and the lines together
 * (times never decrease, chains are numbered without gaps, a "used" names a
 * chain in flight with bytes that fit it). Every problem is a TraceError
 * naming the line; nothing in a trace makes it throw anything else.
 */
export class TraceDecoder {
  /** Lines read so far (blank ones included). */
  line = 0;
  header: TraceHeader | null = null;
  private lastT = 0;
  private negotiated = false;
  private readonly nextSeq = new Array<number>(QUEUES).fill(0);
  /** Per queue: chains taken and not yet returned, with their writable length. */
  private readonly inFlight = Array.from({ length: QUEUES }, () => new Map<number, number>());

  /** Decodes the next line: the header first, then events; null for a blank line. */
  push(text: string): TraceHeader | TraceEvent | null {
    const line = ++this.line;
    if (text.trim() === "") return null;
    try {
      const o = parseJson(text, line);
      if (this.header === null) {
        this.header = decodeHeader(o, line);
        return this.header;
      }
      return this.event(o, line);
    } catch (err) {
      if (err instanceof TraceError) throw err;
      // Whatever else a hostile line manages (nesting deep enough to exhaust the stack).
      throw new TraceError(line, `cannot decode (${err instanceof Error ? err.message : String(err)})`, {
        cause: err,
      });
    }
  }

  /** Checks the end of the trace (it must at least have a header). */
  finish(): TraceHeader {
    if (this.header === null) throw new TraceError(0, "empty: no header line");
    return this.header;
  }

  private event(o: Obj, line: number): TraceEvent {
    const ev = o.ev;
    if (typeof ev !== "string") throw new TraceError(line, `missing field "ev" (the event type)`);
    const f: Fields = new Fields(line, ev);
    const t = f.uint(o, "t", Number.MAX_SAFE_INTEGER);
    if (t < this.lastT) f.fail(`time ${t} is before the previous event's ${this.lastT}`);
    this.lastT = t;
    switch (ev) {
      case "features": {
        const accepted = f.has(o, "accepted") ? f.bool(o, "accepted") : true;
        const features = f.features(o, "features");
        if (accepted && !this.negotiated) {
          this.negotiated = true;
          const ring = this.header?.device.ring;
          if (ring !== undefined && ring !== ringOf(features))
            f.fail(`the driver chose the ${ringOf(features)} ring, but the header says "${ring}"`);
        }
        return { t, ev, features, accepted };
      }
      case "queue": {
        const q = f.queue(o);
        const size = f.uint(o, "size", 32768);
        if (size === 0) f.fail(`"size" must be at least 1`);
        if (f.has(o, "base")) return { t, ev, q, size, base: f.uint(o, "base", U32_MAX) };
        return { t, ev, q, size };
      }
      case "stop":
        return { t, ev, q: f.queue(o), base: f.uint(o, "base", U32_MAX) };
      case "kick":
      case "interrupt":
        return { t, ev, q: f.queue(o) };
      case "avail":
        return this.avail(o, f, t);
      case "used":
        return this.used(o, f, t);
      case "reset":
        for (const m of this.inFlight) m.clear();
        return { t, ev };
      case "needs-reset":
        return { t, ev, message: f.string(o, "message") };
      case "jack":
        return { t, ev, jack: f.uint(o, "jack", U32_MAX), connected: f.bool(o, "connected") };
      case "control": {
        const op = f.string(o, "op");
        if (op !== "value" && op !== "tlv" && op !== "active")
          f.fail(`"op" must be "value", "tlv" or "active", not ${short(op)}`);
        const id = f.uint(o, "id", U32_MAX);
        const value = fromTaggedJson(f.get(o, "value"), line, "control.value");
        return { t, ev, op, id, value };
      }
      default:
        throw new TraceError(line, `unknown event type ${short(ev)}`);
    }
  }

  private avail(o: Obj, f: Fields, t: number): AvailEvent {
    const q = f.queue(o);
    const seq = f.uint(o, "seq", Number.MAX_SAFE_INTEGER);
    if (seq !== this.nextSeq[q]) {
      f.fail(
        `"seq" ${seq} on queue ${q}: the next chain of that queue is ${this.nextSeq[q]} (a line is missing?)`,
      );
    }
    this.nextSeq[q] = seq + 1;
    const r = f.array(o, "r", MAX_SEGMENTS).map((raw, i): TraceSegment => {
      const s: Fields = new Fields(f.line, `avail.r[${i}]`);
      const seg = s.object(raw, "a segment");
      const len = s.uint(seg, "len", U32_MAX);
      if (s.has(seg, "hex")) return { len, data: s.hex(seg, "hex", len) };
      if (s.has(seg, "sha256")) {
        const h = s.string(seg, "sha256");
        if (!/^[0-9a-f]{64}$/.test(h)) s.fail(`"sha256" must be 64 lowercase hex digits`);
        return { len, sha256: h };
      }
      return s.fail(`needs "hex" (its bytes) or "sha256"`);
    });
    const w = f.array(o, "w", MAX_SEGMENTS).map((v, i) => f.uintValue(v, `w[${i}]`, U32_MAX));
    if (r.length + w.length > MAX_SEGMENTS)
      f.fail(`a chain of ${r.length + w.length} descriptors is too long`);
    let fault: number | undefined;
    if (f.has(o, "fault")) {
      fault = f.uint(o, "fault", 255);
      if (fault === 0) f.fail(`"fault" must not be 0 (leave it out)`);
      if (r.length + w.length > 0) f.fail("a malformed chain has no descriptors");
    } else if (r.length + w.length === 0) {
      f.fail("a chain needs at least one descriptor");
    }
    this.inFlight[q]!.set(
      seq,
      w.reduce((a, b) => a + b, 0),
    );
    return fault === undefined ? { t, ev: "avail", q, seq, r, w } : { t, ev: "avail", q, seq, r, w, fault };
  }

  private used(o: Obj, f: Fields, t: number): UsedEvent {
    const q = f.queue(o);
    const seq = f.uint(o, "seq", Number.MAX_SAFE_INTEGER);
    const writable = this.inFlight[q]!.get(seq);
    if (writable === undefined)
      f.fail(`chain ${seq} of queue ${q} is not in flight (no "avail" for it, or used twice)`);
    this.inFlight[q]!.delete(seq);
    const len = f.uint(o, "len", U32_MAX);
    const data = f.hex(o, "hex", Math.min(len, writable));
    const io = q === VIRTIO_SND_VQ_TX || q === VIRTIO_SND_VQ_RX;
    const needsStatus = io && writable >= 8 && len < writable;
    if (f.has(o, "status")) {
      if (!needsStatus)
        f.fail(`"status" belongs only on tx and rx, when "len" is short of the writable part`);
      return { t, ev: "used", q, seq, len, data, status: f.hex(o, "status", 8) };
    }
    if (needsStatus) f.fail(`missing field "status" (len ${len} is short of the ${writable} writable bytes)`);
    return { t, ev: "used", q, seq, len, data };
  }
}

/** Splits text into lines ("\n" or "\r\n"). */
export function traceLines(text: string): string[] {
  const lines = text.split(/\r?\n/);
  if (lines.length > 0 && lines[lines.length - 1] === "") lines.pop();
  return lines;
}

/** Parses a whole trace (text, or its lines). Throws TraceError with the line number of the first problem. */
export function parseTrace(input: string | Iterable<string>): Trace {
  const decoder = new TraceDecoder();
  const events: TraceEvent[] = [];
  const lines: number[] = [];
  for (const text of typeof input === "string" ? traceLines(input) : input) {
    const item = decoder.push(text);
    if (item === null || "format" in item) continue;
    events.push(item);
    lines.push(decoder.line);
  }
  return { header: decoder.finish(), events, lines };
}

/** The ring layout a feature selection means. */
export function ringOf(features: bigint): RingKind {
  return (features & (1n << BigInt(VIRTIO_F_RING_PACKED))) !== 0n ? "packed" : "split";
}
