/** `--output wav:DIR`: a folder about to be made is announced on stderr, with its full path when it is outside the working directory. */
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { runDemo } from "../../src/cli/demo.js";
import { wavDirNotice } from "../../src/cli/wav-dir.js";
import { capture } from "./capture.js";

const dir = mkdtempSync(join(tmpdir(), "virtio-snd-wavdir-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("wavDirNotice", () => {
  const cwd = join(dir, "work");
  mkdirSync(join(cwd, "exists"), { recursive: true });

  it("says nothing for other sinks, a folder that exists, or plain wav", () => {
    expect(wavDirNotice(undefined, cwd)).toBeNull();
    expect(wavDirNotice("null", cwd)).toBeNull();
    expect(wavDirNotice("wav", cwd)).toBeNull();
    expect(wavDirNotice("wav:exists", cwd)).toBeNull();
    expect(wavDirNotice(`wav:${cwd}`, cwd)).toBeNull();
  });

  it("a new folder below the working directory: its relative name", () => {
    expect(wavDirNotice("wav:out/today", cwd)).toBe(`creating ${join("out", "today")} for the WAV files`);
  });

  it("a new folder outside it: the full path and the working directory", () => {
    expect(wavDirNotice("wav:../../elsewhere", cwd)).toBe(
      `creating ${join(dir, "..", "elsewhere")} for the WAV files: it is outside the working directory (${cwd})`,
    );
    expect(wavDirNotice(`wav:${join(dir, "abs")}`, cwd)).toMatch(/outside the working directory/);
  });
});

describe("the demo says so on stderr", () => {
  it("--output wav:DIR far away", async () => {
    const c = capture();
    const far = join(dir, "far", "away");
    expect(await runDemo(["--virtual", "--output", `wav:${far}`], c.io)).toBe(0);
    expect(c.err.join("")).toContain(
      `virtio-snd demo: creating ${far} for the WAV files: it is outside the working directory (${process.cwd()})\n`,
    );
  });
});
