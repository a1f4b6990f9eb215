/**
 * The corpus: traces recorded from real guests (a Linux guest through the
 * vhost-user daemon, given a TraceRecorder) live in test/traces/, one
 * *.jsonl file per session. Each must replay against today's device without
 * divergence. With no traces there yet, this file checks nothing.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readTraceFile } from "../../src/node/trace-file.js";
import { replayTrace } from "../../src/trace/replayer.js";

const DIR = join(import.meta.dirname, "../traces");
const files = existsSync(DIR)
  ? readdirSync(DIR, { recursive: true, encoding: "utf8" })
      .filter((f) => f.endsWith(".jsonl"))
      .sort()
  : [];

describe("recorded traces in test/traces/", () => {
  it.skipIf(files.length > 0)("(none recorded yet)", () => undefined);

  it.each(files)("%s replays without divergence", async (file) => {
    const result = replayTrace(await readTraceFile(join(DIR, file)));
    expect(result.ok ? "" : result.message).toBe("");
  });
});
