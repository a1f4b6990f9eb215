/**
 * The corpus: traces recorded from a real Linux guest (aplay and arecord in
 * the test guest under QEMU, through the vhost-user daemon with a
 * TraceRecorder; scripts/record-corpus.ts makes them), one *.jsonl file per
 * session, in test/traces/ and, for the demo's trace shipped with the
 * package, traces/. Each must replay against today's device without
 * divergence.
 */
import { existsSync, readdirSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { readTraceFile } from "../../src/node/trace-file.js";
import { replayTrace } from "../../src/trace/replayer.js";

const ROOT = join(import.meta.dirname, "../..");
const DIRS = [join(ROOT, "test/traces"), join(ROOT, "traces")];
const files = DIRS.flatMap((dir) =>
  existsSync(dir)
    ? readdirSync(dir, { recursive: true, encoding: "utf8" })
        .filter((f) => f.endsWith(".jsonl"))
        .map((f) => relative(ROOT, join(dir, f)))
    : [],
).sort();

describe("recorded traces in test/traces/ and traces/", () => {
  it("holds the recorded scenarios", () => {
    const names = files.map((f) => f.replace(/^.*\//, "").replace(/\.jsonl$/, ""));
    for (const scenario of [
      "probe",
      "arecord-s16-48k-stereo",
      "duplex",
      "aplay-interrupted",
      "aplay-repeated",
      "packed",
    ]) {
      expect(names).toContain(scenario);
    }
    expect(names.filter((n) => n.startsWith("aplay-")).length).toBeGreaterThanOrEqual(4);
  });

  it.each(files)("%s replays without divergence", async (file) => {
    const trace = await readTraceFile(join(ROOT, file));
    // The header says what was recorded: the scenario, the guest's kernel and alsa-utils.
    expect(trace.header.note).toMatch(/^scenario [a-z0-9-]+: /);
    expect(trace.header.note).toMatch(/Guest: Linux \S+ \(virtio_snd\), alsa-utils \S+;/);
    const result = replayTrace(trace);
    expect(result.ok ? "" : result.message).toBe("");
  });
});
