/**
 * Traces in files (Node only): a TraceSink that streams lines to a file as
 * they are recorded, and readers that parse a trace file line by line.
 */
import { closeSync, createReadStream, fsyncSync, openSync, writeSync } from "node:fs";
import { createInterface } from "node:readline";
import { type Trace, type TraceEvent, TraceDecoder, TraceError } from "../trace/format.js";
import type { TraceSink } from "../trace/recorder.js";
import { VirtioSndError } from "../errors.js";

export interface TraceFileWriterOptions {
  /**
   * Bytes to gather before writing (default 0: every line is written to the
   * file as it comes, so a crash loses nothing). A larger buffer costs fewer
   * system calls; flush() and close() write what is buffered.
   */
  readonly bufferBytes?: number;
  /** Append to an existing file instead of replacing it. */
  readonly append?: boolean;
  /** fsync at close, so the trace survives a power loss. */
  readonly fsync?: boolean;
}

/**
 * Writes trace lines to a file, in order, each ended by "\n". Usable for
 * sessions of any length: nothing is kept in memory beyond the write buffer.
 *
 *   const writer = new TraceFileWriter("session.jsonl");
 *   const recorder = new TraceRecorder({ sink: writer });
 *   // ... the device runs with { recorder } ...
 *   recorder.close();
 *   writer.close();
 */
export class TraceFileWriter implements TraceSink {
  readonly path: string;
  /** Lines written (or buffered) so far. */
  lines = 0;
  private fd: number | null;
  private buffer: string[] = [];
  private buffered = 0;
  private readonly bufferBytes: number;
  private readonly fsync: boolean;

  constructor(path: string, options: TraceFileWriterOptions = {}) {
    this.path = path;
    this.fd = openSync(path, options.append ? "a" : "w");
    this.bufferBytes = Math.max(0, options.bufferBytes ?? 0);
    this.fsync = options.fsync ?? false;
  }

  write(line: string): void {
    if (this.fd === null) throw new VirtioSndError("ERR_INVALID_STATE", `trace file ${this.path} is closed`);
    if (line.includes("\n")) throw new TraceError(0, "a trace line cannot contain a newline");
    this.buffer.push(line, "\n");
    this.buffered += line.length + 1;
    this.lines++;
    if (this.buffered >= this.bufferBytes) this.flush();
  }

  /** Writes buffered lines to the file. */
  flush(): void {
    if (this.fd === null || this.buffer.length === 0) return;
    const bytes = Buffer.from(this.buffer.join(""), "utf8");
    this.buffer = [];
    this.buffered = 0;
    let off = 0;
    while (off < bytes.length) off += writeSync(this.fd, bytes, off, bytes.length - off);
  }

  close(): void {
    if (this.fd === null) return;
    try {
      this.flush();
      if (this.fsync) fsyncSync(this.fd);
    } finally {
      closeSync(this.fd);
      this.fd = null;
    }
  }
}

/** The lines of a text file, read as a stream ("\n" or "\r\n"). */
export async function* readTraceLines(path: string): AsyncGenerator<string> {
  const input = createReadStream(path, { encoding: "utf8" });
  const lines = createInterface({ input, crlfDelay: Infinity });
  try {
    for await (const line of lines) yield line;
  } finally {
    lines.close();
    input.destroy();
  }
}

/**
 * Reads and checks a trace file line by line. A malformed trace throws
 * TraceError naming the line (and stops reading there).
 */
export async function readTraceFile(path: string): Promise<Trace> {
  const decoder = new TraceDecoder();
  const events: TraceEvent[] = [];
  const lines: number[] = [];
  for await (const text of readTraceLines(path)) {
    const item = decoder.push(text);
    if (item === null || "format" in item) continue;
    events.push(item);
    lines.push(decoder.line);
  }
  return { header: decoder.finish(), events, lines };
}
