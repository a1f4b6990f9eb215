import { readFileSync, readdirSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { sourceFiles } from "./source-files.js";

/**
 * One layer per folder, imports pointing down: a folder of src/ may import
 * only the folders below it in this list (and src/errors.ts, which every
 * layer uses). A cycle between two folders fails here, whichever way round.
 * src/index.ts, the core entry, sits above everything it re-exports.
 */
const LAYERS = [
  "spec",
  "memory",
  "virtqueue",
  "audio",
  "stream",
  "device",
  "transport",
  "driver",
  "trace",
  "v86",
  "browser",
  "vhost-user",
  "testing",
  "node",
  "cli",
];

const SRC = join(import.meta.dirname, "../../src");
const IMPORT = /(?:import|export)\s[^;]*?from\s*["'](\.[^"']+)["']|import\s*\(\s*["'](\.[^"']+)["']\s*\)/g;

/** The layer a path under src/ belongs to: its top folder, or the file name for top-level files. */
function layerOf(path: string): string {
  const rel = relative(SRC, path).split("/");
  return rel.length === 1 ? rel[0]!.replace(/\.(ts|js)$/, "") : rel[0]!;
}

/** Every import from one layer into another: [from file, layer imported]. */
function crossImports(): [string, string, string][] {
  const out: [string, string, string][] = [];
  for (const file of sourceFiles(SRC)) {
    const from = layerOf(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(IMPORT)) {
      const to = layerOf(resolve(dirname(file), m[1] ?? m[2]!));
      if (to !== from) out.push([relative(SRC, file), from, to]);
    }
  }
  return out;
}

describe("layers", () => {
  it("names every folder of src/", () => {
    const dirs = readdirSync(SRC).filter((n) => statSync(join(SRC, n)).isDirectory());
    for (const d of dirs) expect(LAYERS, `src/${d} has no place in the layers`).toContain(d);
  });

  it("imports point down, never across or up", () => {
    const wrong: string[] = [];
    for (const [file, from, to] of crossImports()) {
      if (from === "index" || to === "errors") continue;
      const ok = from !== "errors" && LAYERS.indexOf(to) >= 0 && LAYERS.indexOf(to) < LAYERS.indexOf(from);
      if (!ok) wrong.push(`${file} (${from}) imports ${to}`);
    }
    expect(wrong).toEqual([]);
  });

  it("finds an upward import when there is one (the check itself works)", () => {
    const sample = 'import type { X } from "../trace/recorder.js";';
    const m = [...sample.matchAll(IMPORT)][0]!;
    const to = layerOf(resolve(join(SRC, "device"), m[1]!));
    expect(to).toBe("trace");
    expect(LAYERS.indexOf(to)).toBeGreaterThan(LAYERS.indexOf("device"));
  });
});
