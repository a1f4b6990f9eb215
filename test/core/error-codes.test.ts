/**
 * Every error the library raises has a stable `code`: the ones that had none
 * (the driver model, a closed trace file, a second LiveReplay run, a bad
 * tone), and a scan of src/ for bare `throw new Error(...)`.
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ToneSource } from "../../src/audio/sources.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import { type PcmRateHz, play, record } from "../../src/driver/pcm-session.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_RATE_48000 } from "../../src/spec/constants.js";
import { PackedDriverQueue } from "../../src/driver/packed-driver.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import { TraceFileWriter } from "../../src/node/trace-file.js";
import { sourceFiles } from "./source-files.js";

const SRC = join(import.meta.dirname, "../../src");
const dir = mkdtempSync(join(tmpdir(), "virtio-snd-codes-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const codeOf = (f: () => unknown): unknown => {
  try {
    f();
  } catch (err) {
    return (err as { code?: unknown }).code;
  }
  return "no error";
};

describe("error codes", () => {
  it("the driver model: ERR_DRIVER", () => {
    const mem = new FlatMemory(new ArrayBuffer(4096));
    const alloc = new BumpAllocator(0, 4096).alloc;
    expect(codeOf(() => new SplitDriverQueue({ mem, alloc, size: 3, eventIdx: false }))).toBe("ERR_DRIVER");
    expect(codeOf(() => new PackedDriverQueue({ mem, alloc, size: 0, eventIdx: false }))).toBe("ERR_DRIVER");
    expect(codeOf(() => alloc(1 << 20))).toBe("ERR_DRIVER");
    const q = new SplitDriverQueue({ mem, alloc, size: 4, eventIdx: false });
    expect(codeOf(() => q.add([], []))).toBe("ERR_DRIVER");
  });

  it("SessionParams.rate is in Hz: an index constant is refused, saying which rate it stands for", () => {
    const guest = new SimulatedGuest();
    guest.init();
    guest.probe();
    const p = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, periodBytes: 1920, periods: 4 };
    // Not PcmRateHz: TypeScript refuses it too.
    const rate = VIRTIO_SND_PCM_RATE_48000 as unknown as PcmRateHz;
    expect(() => play(guest, 0, new Uint8Array(1920), { ...p, rate })).toThrow(
      expect.objectContaining({
        code: "ERR_INVALID_CONFIG",
        message: expect.stringMatching(
          /rate is 7: it is in Hz .*; 7 is the VIRTIO_SND_PCM_RATE_\* index of 48000 Hz: give 48000/,
        ),
      }),
    );
    expect(codeOf(() => record(guest, 1, 4, { ...p, rate: 1234 as PcmRateHz }))).toBe("ERR_INVALID_CONFIG");
    expect(play(guest, 0, new Uint8Array(1920), { ...p, rate: 48000 }).completions).toHaveLength(1);
  });

  it("a trace file written after close: ERR_INVALID_STATE", () => {
    const w = new TraceFileWriter(join(dir, "t.jsonl"));
    w.close();
    expect(codeOf(() => w.write("{}\n"))).toBe("ERR_INVALID_STATE");
  });

  it("a tone out of range: ERR_INVALID_CONFIG", () => {
    expect(codeOf(() => new ToneSource({ frequency: -1 }))).toBe("ERR_INVALID_CONFIG");
    expect(codeOf(() => new ToneSource({ level: 2 }))).toBe("ERR_INVALID_CONFIG");
  });

  it("no module of src/ throws a bare Error", () => {
    const bare = sourceFiles(SRC).flatMap((f) =>
      readFileSync(f, "utf8")
        .split("\n")
        .map((line, i) => [`${relative(SRC, f)}:${i + 1}`, line] as const)
        // transport.ts's "poll status" is caught on the spot (control flow, never seen outside).
        .filter(([, line]) => /throw new (Error|TypeError)\(/.test(line) && !/poll status/.test(line))
        .map(([where]) => where),
    );
    expect(bare).toEqual([]);
  });
});
