import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { fromHex, isHex, sha256Hex, toHex } from "../../src/trace/bytes.js";
import {
  TRACE_FORMAT,
  TRACE_VERSION,
  TraceDecoder,
  TraceError,
  type TraceEvent,
  type TraceHeader,
  encodeEvent,
  encodeHeader,
  encodeTrace,
  parseTrace,
} from "../../src/trace/format.js";
import { replayTrace } from "../../src/trace/replayer.js";
import { recordSession } from "./session.js";

const HEADER: TraceHeader = {
  format: TRACE_FORMAT,
  version: TRACE_VERSION,
  device: {
    features: 0x5_3000_0000n,
    ring: "split",
    config: {
      streams: [{ direction: "output" }],
      controls: [
        { type: "integer64", name: "Counter", min: -5n, max: 1n << 40n, value: [3n] },
        { type: "bytes", name: "Blob", count: 2, value: new Uint8Array([1, 255]) },
      ],
    },
  },
  note: "unit test",
};

const EVENTS: TraceEvent[] = [
  { t: 0, ev: "features", features: 0x1_0000_0000n | (1n << 40n), accepted: false },
  { t: 0, ev: "features", features: 0x1_2000_0000n, accepted: true },
  { t: 1, ev: "queue", q: 0, size: 64 },
  { t: 1, ev: "queue", q: 2, size: 256, base: 0x8000 },
  { t: 2, ev: "kick", q: 0 },
  {
    t: 2,
    ev: "avail",
    q: 0,
    seq: 0,
    r: [{ len: 8, data: new Uint8Array([2, 1, 0, 0, 0, 0, 0, 0]) }],
    w: [4],
  },
  { t: 3, ev: "used", q: 0, seq: 0, len: 4, data: new Uint8Array([0, 0x80, 0, 0]) },
  { t: 3, ev: "interrupt", q: 0 },
  {
    t: 4,
    ev: "avail",
    q: 2,
    seq: 0,
    r: [
      { len: 4, data: new Uint8Array(4) },
      { len: 1920, sha256: "ab".repeat(32) },
    ],
    w: [8],
  },
  { t: 5, ev: "avail", q: 3, seq: 0, r: [{ len: 4, data: new Uint8Array([1, 0, 0, 0]) }], w: [6, 8] },
  {
    t: 6,
    ev: "used",
    q: 3,
    seq: 0,
    len: 8,
    data: new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]),
    status: new Uint8Array([0, 0x80, 0, 0, 9, 0, 0, 0]),
  },
  { t: 7, ev: "avail", q: 1, seq: 0, r: [], w: [], fault: 6 },
  { t: 7, ev: "used", q: 1, seq: 0, len: 0, data: new Uint8Array(0) },
  { t: 8, ev: "jack", jack: 1, connected: false },
  { t: 9, ev: "control", op: "value", id: 0, value: [7n] },
  { t: 9, ev: "control", op: "tlv", id: 1, value: new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]) },
  { t: 9, ev: "control", op: "active", id: 1, value: false },
  { t: 10, ev: "stop", q: 2, base: 1 },
  { t: 11, ev: "needs-reset", message: "ring broken" },
  { t: 12, ev: "reset" },
];

describe("bytes", () => {
  it("writes and reads lowercase hex", () => {
    const b = new Uint8Array([0, 1, 0x7f, 0x80, 0xab, 0xff]);
    expect(toHex(b)).toBe("00017f80abff");
    expect(fromHex("00017f80abff")).toEqual(b);
    expect(isHex("00ff")).toBe(true);
    for (const bad of ["0", "0G", "00FF", "0x00", " 00"]) expect(isHex(bad)).toBe(false);
  });

  it("computes SHA-256 as node:crypto does, at every padding boundary", () => {
    expect(sha256Hex(new Uint8Array(0))).toBe(
      "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    );
    expect(sha256Hex(new TextEncoder().encode("abc"))).toBe(
      "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
    );
    for (const n of [1, 55, 56, 63, 64, 65, 119, 120, 128, 1000, 4099]) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 31 + 7) & 0xff);
      expect(sha256Hex(data), `${n} bytes`).toBe(createHash("sha256").update(data).digest("hex"));
    }
  });
});

describe("encoding and decoding", () => {
  it("round-trips a header and every event type, keys in a fixed order", () => {
    const text = encodeTrace({ header: HEADER, events: EVENTS });
    const lines = text.split("\n");
    expect(lines).toHaveLength(EVENTS.length + 2);
    expect(lines.at(-1)).toBe("");
    expect(lines[0]).toMatch(
      /^\{"format":"virtio-snd-trace","version":1,"device":\{"features":"0x530000000",/,
    );
    expect(lines[0]).toContain('"value":[{"$bigint":"3"}]');
    expect(lines[0]).toContain('"value":{"$hex":"01ff"}');
    expect(lines[1]).toBe('{"t":0,"ev":"features","features":"0x10100000000","accepted":false}');
    expect(lines[6]).toBe(
      '{"t":2,"ev":"avail","q":0,"seq":0,"r":[{"len":8,"hex":"0201000000000000"}],"w":[4]}',
    );
    expect(lines[7]).toBe('{"t":3,"ev":"used","q":0,"seq":0,"len":4,"hex":"00800000"}');

    const trace = parseTrace(text);
    expect(trace.header).toEqual(HEADER);
    expect(trace.events).toEqual(EVENTS);
    expect(trace.lines).toEqual(EVENTS.map((_, i) => i + 2));
    expect(encodeTrace(trace)).toBe(text);
  });

  it("ignores blank lines and CRLF, and numbers lines as a text editor does", () => {
    const text = [encodeHeader(HEADER), "", encodeEvent(EVENTS[1]!), "  ", encodeEvent(EVENTS[2]!)].join(
      "\r\n",
    );
    const trace = parseTrace(text);
    expect(trace.events).toHaveLength(2);
    expect(trace.lines).toEqual([3, 5]);
  });

  it("decodes line by line (for streaming readers)", () => {
    const d = new TraceDecoder();
    expect(d.push(encodeHeader(HEADER))).toEqual(HEADER);
    expect(d.push("")).toBeNull();
    expect(d.push(encodeEvent(EVENTS[2]!))).toEqual(EVENTS[2]);
    expect(d.line).toBe(3);
  });
});

/** The trace of EVENTS with line `n` (1-based) replaced. */
function withLine(n: number, text: string): string {
  const lines = encodeTrace({ header: HEADER, events: EVENTS }).split("\n");
  lines[n - 1] = text;
  return lines.join("\n");
}

function parseError(text: string): TraceError {
  try {
    parseTrace(text);
  } catch (err) {
    expect(err).toBeInstanceOf(TraceError);
    return err as TraceError;
  }
  throw new Error("parsed without error");
}

describe("corrupt traces give a clear error with the line number", () => {
  const header = encodeHeader(HEADER);
  const cases: [string, string, number, RegExp][] = [
    ["bad JSON", withLine(5, '{"t":1,"ev":"kick",'), 5, /line 5: not JSON/],
    ["a JSON value that is not an object", withLine(4, "[1,2]"), 4, /line 4: not a JSON object/],
    [
      "a newer version",
      header.replace('"version":1', '"version":2'),
      1,
      /version 2 is not supported; this reader knows version 1/,
    ],
    ["no version", header.replace('"version":1,', ""), 1, /missing field "version"/],
    ["another format", header.replace("virtio-snd-trace", "pcap"), 1, /"format" must be "virtio-snd-trace"/],
    ["bad feature hex", header.replace('"0x530000000"', '"530000000"'), 1, /"features" must be a hex number/],
    [
      "a config that is not an object",
      header.replace(/"config":\{.*\}\}/, '"config":7}'),
      1,
      /"config" must be an object/,
    ],
    [
      "streams that are not an array",
      header.replace(/"streams":\[[^\]]*\]/, '"streams":"all"'),
      1,
      /config.streams must be an array/,
    ],
    [
      "a bad $bigint tag",
      header.replace('{"$bigint":"3"}', '{"$bigint":"three"}'),
      1,
      /\$bigint: not a decimal integer/,
    ],
    [
      "bad hex (upper case)",
      withLine(7, '{"t":2,"ev":"avail","q":0,"seq":0,"r":[{"len":8,"hex":"0201000000000ABC"}],"w":[4]}'),
      7,
      /avail.r\[0\]: "hex" is not lowercase hex/,
    ],
    [
      "bad hex (odd length)",
      withLine(8, '{"t":3,"ev":"used","q":0,"seq":0,"len":4,"hex":"0080000"}'),
      8,
      /"hex" is not lowercase hex of whole bytes/,
    ],
    [
      "hex that does not match len",
      withLine(7, '{"t":2,"ev":"avail","q":0,"seq":0,"r":[{"len":9,"hex":"0201000000000000"}],"w":[4]}'),
      7,
      /holds 8 bytes, expected 9/,
    ],
    [
      "used bytes longer than the used length",
      withLine(8, '{"t":3,"ev":"used","q":0,"seq":0,"len":2,"hex":"00800000"}'),
      8,
      /holds 4 bytes, expected 2/,
    ],
    [
      "missing seq",
      withLine(8, '{"t":3,"ev":"used","q":0,"len":4,"hex":"00800000"}'),
      8,
      /line 8: used: missing field "seq"/,
    ],
    ["missing t", withLine(6, '{"ev":"kick","q":0}'), 6, /kick: missing field "t"/],
    ["missing ev", withLine(6, '{"t":2,"q":0}'), 6, /missing field "ev"/],
    ["an unknown event", withLine(6, '{"t":2,"ev":"teleport","q":0}'), 6, /unknown event type "teleport"/],
    [
      "a queue that does not exist",
      withLine(6, '{"t":2,"ev":"kick","q":4}'),
      6,
      /"q" must be an integer from 0 to 3, not 4/,
    ],
    ["a fractional time", withLine(6, '{"t":2.5,"ev":"kick","q":0}'), 6, /"t" must be an integer/],
    [
      "time going backwards",
      withLine(6, '{"t":0,"ev":"kick","q":0}'),
      6,
      /time 0 is before the previous event's 1/,
    ],
    [
      "a gap in chain numbers",
      withLine(7, '{"t":2,"ev":"avail","q":0,"seq":1,"r":[{"len":8,"hex":"0201000000000000"}],"w":[4]}'),
      7,
      /"seq" 1 on queue 0: the next chain of that queue is 0/,
    ],
    [
      "a used chain that was never taken",
      withLine(8, '{"t":3,"ev":"used","q":0,"seq":9,"len":4,"hex":"00800000"}'),
      8,
      /chain 9 of queue 0 is not in flight/,
    ],
    [
      "an rx completion without its status",
      withLine(12, '{"t":6,"ev":"used","q":3,"seq":0,"len":8,"hex":"0102030405060708"}'),
      12,
      /missing field "status"/,
    ],
    [
      "a chain without descriptors",
      withLine(7, '{"t":2,"ev":"avail","q":0,"seq":0,"r":[],"w":[]}'),
      7,
      /needs at least one descriptor/,
    ],
    [
      "a bad sha256",
      withLine(
        10,
        '{"t":4,"ev":"avail","q":2,"seq":0,"r":[{"len":4,"hex":"00000000"},{"len":1920,"sha256":"xyz"}],"w":[8]}',
      ),
      10,
      /"sha256" must be 64 lowercase hex digits/,
    ],
    [
      "a bad control op",
      withLine(16, '{"t":9,"ev":"control","op":"poke","id":0,"value":1}'),
      16,
      /"op" must be "value", "tlv" or "active"/,
    ],
    [
      "a ring that contradicts the negotiation",
      withLine(1, header.replace('"ring":"split"', '"ring":"packed"')),
      3,
      /the driver chose the split ring, but the header says "packed"/,
    ],
  ];

  it.each(cases)("%s", (_name, text, line, message) => {
    const err = parseError(text);
    expect(err.code).toBe("ERR_INVALID_TRACE");
    expect(err.line).toBe(line);
    expect(err.message).toMatch(new RegExp(`^trace line ${line}: `));
    expect(err.message).toMatch(message);
    // The replayer refuses the same trace with the same error.
    expect(() => replayTrace(text)).toThrow(err.message);
  });

  it("a time too far for a replay: refused, not ticked through", () => {
    const lines = recordSession().lines.slice(0, 10);
    lines.push('{"t":9007199254740991,"ev":"kick","q":0}');
    expect(() => replayTrace(lines)).toThrow(
      /^trace line 11: time 9007199254740991 ns is past the replay's limit of 86400000000000 ns/,
    );
    expect(() => replayTrace(lines.slice(0, 10), { maxTimeNs: -1 })).toThrow(/^trace line 2: time 0 ns/);
  });

  it("an empty file", () => {
    expect(parseError("").message).toBe("trace: empty: no header line");
    expect(parseError("\n\n").message).toBe("trace: empty: no header line");
  });

  it("a header with a configuration the device refuses: line 1", () => {
    const text = encodeTrace({
      header: {
        ...HEADER,
        device: { ...HEADER.device, config: { streams: [{ direction: "sideways" as "input" }] } },
      },
      events: [],
    });
    expect(() => replayTrace(text)).toThrow(/^trace line 1: header.device.config: streams\[0\].direction/);
  });

  it("never throws anything but TraceError, whatever a line holds (fuzzed)", () => {
    const lines = recordSession().lines.slice(0, 60);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: lines.length - 1 }),
        fc.oneof(
          fc.string(),
          fc.json(),
          fc.record({ at: fc.nat(), cut: fc.nat({ max: 40 }), insert: fc.string({ maxLength: 8 }) }),
        ),
        (i, change) => {
          const copy = [...lines];
          const line = copy[i]!;
          if (typeof change === "string") copy[i] = change;
          else {
            const at = change.at % (line.length + 1);
            copy[i] = line.slice(0, at) + change.insert + line.slice(at + change.cut);
          }
          try {
            const r = replayTrace(copy);
            // A line left as it was replays as recorded; a divergence names a line of the trace.
            if (copy[i] === line) expect(r.ok).toBe(true);
            if (!r.ok) expect(r.divergence.line).toBeGreaterThanOrEqual(1);
            if (!r.ok) expect(r.divergence.line).toBeLessThanOrEqual(copy.length);
          } catch (err) {
            if (!(err instanceof TraceError)) throw err;
            // It names the line at fault (the header is line 1), and says so in its message.
            expect(err.line).toBeGreaterThanOrEqual(1);
            expect(err.line).toBeLessThanOrEqual(copy.length);
            expect(err.message).toMatch(new RegExp(`^trace line ${err.line}: `));
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});
