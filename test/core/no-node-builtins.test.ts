import { readFileSync, readdirSync, statSync } from "node:fs";
import { builtinModules } from "node:module";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { sourceFiles } from "./source-files.js";

/**
 * The core must run in any JavaScript engine (a browser, an emulator's
 * worker): no Node built-in may be imported from it, directly or through
 * Node-only globals. Node-only code lives in the folders listed below.
 */
const SRC = join(import.meta.dirname, "../../src");
const CORE_DIRS = [
  "spec",
  "memory",
  "virtqueue",
  "audio",
  "stream",
  "device",
  "driver",
  "testing",
  "trace",
  "transport",
  "v86",
  "browser",
];
const NODE_DIRS = ["node", "vhost-user", "cli", "trace-node"];

const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
const IMPORT =
  /(?:import|export)\s[^;]*?from\s*["']([^"']+)["']|import\s*\(\s*["']([^"']+)["']\s*\)|require\s*\(\s*["']([^"']+)["']\s*\)/g;
const NODE_GLOBALS = /\b(?:process\.|Buffer\.|Buffer\(|__dirname|__filename|setImmediate\s*\()/;

function coreFiles(): string[] {
  const top = readdirSync(SRC);
  return [
    ...top.filter((n) => n.endsWith(".ts")).map((n) => join(SRC, n)),
    ...CORE_DIRS.filter((d) => top.includes(d)).flatMap((d) => sourceFiles(join(SRC, d))),
  ];
}

describe("the core imports no Node built-ins", () => {
  it("classifies every folder of src/ as core or Node-only", () => {
    const dirs = readdirSync(SRC).filter((n) => statSync(join(SRC, n)).isDirectory());
    for (const d of dirs)
      expect([...CORE_DIRS, ...NODE_DIRS], `src/${d} is neither core nor Node-only`).toContain(d);
  });

  it.each(coreFiles().map((f) => [relative(SRC, f), f]))("%s", (_name, file) => {
    const text = readFileSync(file, "utf8");
    const imports = [...text.matchAll(IMPORT)].map((m) => m[1] ?? m[2] ?? m[3] ?? "");
    for (const spec of imports) {
      expect(builtins.has(spec), `imports Node built-in ${spec}`).toBe(false);
      // Core may import only other core modules by relative path.
      expect(spec.startsWith("."), `imports package ${spec}`).toBe(true);
      for (const d of NODE_DIRS)
        expect(spec, `imports Node-only folder ${d}`).not.toMatch(new RegExp(`(^|/)${d}/`));
    }
    const code = text.replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "");
    expect(NODE_GLOBALS.test(code), "uses a Node-only global").toBe(false);
  });

  it("detects a Node import when there is one (the check itself works)", () => {
    const sample = 'import { readFileSync } from "node:fs";\nimport x from "./y.js";';
    const found = [...sample.matchAll(IMPORT)].map((m) => m[1]);
    expect(found.some((s) => builtins.has(s!))).toBe(true);
  });
});
