import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { TraceFileWriter, readTraceFile, readTraceLines } from "../../src/node/trace-file.js";
import { TraceError, encodeTrace, parseTrace } from "../../src/trace/format.js";
import { TraceRecorder } from "../../src/trace/recorder.js";
import { replayTrace } from "../../src/trace/replayer.js";
import { recordSession } from "./session.js";

const dir = mkdtempSync(join(tmpdir(), "virtio-snd-trace-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("trace files", () => {
  it("round-trips a recorded session through a file, and the file replays", async () => {
    const path = join(dir, "session.jsonl");
    const writer = new TraceFileWriter(path);
    const memory = recordSession();
    // The same lines, streamed to the file as a recorder would.
    for (const line of memory.lines) writer.write(line);
    writer.close();
    expect(readFileSync(path, "utf8")).toBe(memory.text);
    expect(writer.lines).toBe(memory.lines.length);

    const trace = await readTraceFile(path);
    expect(trace).toEqual(parseTrace(memory.text));
    expect(encodeTrace(trace)).toBe(memory.text);
    const r = replayTrace(trace);
    expect(r.ok ? "" : r.message).toBe("");
  });

  it("streams while the device runs: each line is in the file as soon as it is recorded", () => {
    const path = join(dir, "live.jsonl");
    const writer = new TraceFileWriter(path);
    const recorder = new TraceRecorder({ sink: writer, txAudio: "hash" });
    const guest = new SimulatedGuest({ recorder });
    guest.init();
    const afterInit = readFileSync(path, "utf8").split("\n");
    expect(afterInit).toHaveLength(writer.lines + 1);
    expect(JSON.parse(afterInit[0]!)).toMatchObject({ format: "virtio-snd-trace", version: 1 });
    guest.probe();
    expect(readFileSync(path, "utf8").split("\n")).toHaveLength(writer.lines + 1);
    recorder.close();
    writer.close();
    expect(() => writer.write("{}")).toThrow(/closed/);
  });

  it("buffers when asked, writing at flush and close", () => {
    const path = join(dir, "buffered.jsonl");
    const writer = new TraceFileWriter(path, { bufferBytes: 1 << 20, fsync: true });
    writer.write('{"a":1}');
    expect(readFileSync(path, "utf8")).toBe("");
    writer.flush();
    expect(readFileSync(path, "utf8")).toBe('{"a":1}\n');
    writer.write('{"b":2}');
    writer.close();
    writer.close();
    expect(readFileSync(path, "utf8")).toBe('{"a":1}\n{"b":2}\n');
  });

  it("reads lines as a stream, CRLF or LF", async () => {
    const path = join(dir, "crlf.txt");
    writeFileSync(path, "one\r\ntwo\nthree");
    const lines: string[] = [];
    for await (const l of readTraceLines(path)) lines.push(l);
    expect(lines).toEqual(["one", "two", "three"]);
  });

  it("a corrupt file gives a TraceError with the line number", async () => {
    const path = join(dir, "corrupt.jsonl");
    const lines = recordSession().lines.slice(0, 40);
    const i = lines.findIndex((l, k) => k > 0 && l.includes('"hex":"'));
    lines[i] = lines[i]!.replace('"hex":"', '"hex":"zz');
    writeFileSync(path, lines.join("\n") + "\n");
    const err = await readTraceFile(path).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TraceError);
    expect((err as TraceError).line).toBe(i + 1);
    expect((err as TraceError).message).toMatch(new RegExp(`^trace line ${i + 1}: .*not lowercase hex`));
  });
});
