/**
 * The README's TypeScript examples are the files in examples/, word for word:
 * each ```ts block starts with a comment naming its file and must equal it,
 * and every file is shown. The files are type-checked with the rest
 * (tsconfig.json includes examples/) and run here, importing "virtio-snd" as
 * users do (vitest.config.ts points the name at src/). scripts/check-package.mjs
 * compiles them again against the packed package.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it, vi } from "vitest";

const ROOT = join(import.meta.dirname, "..");
const EXAMPLES = join(ROOT, "examples");

/** The README's ```ts blocks, each as [file it names, text]. */
function readmeBlocks(readme: string): [string, string][] {
  return [...readme.matchAll(/^```ts\n([\s\S]*?)^```$/gm)].map((m) => {
    const text = m[1]!;
    const named = /^\/\/ (examples\/[\w-]+\.ts)\b/.exec(text)?.[1] ?? "";
    return [named, text];
  });
}

const blocks = readmeBlocks(readFileSync(join(ROOT, "README.md"), "utf8"));
const files = readdirSync(EXAMPLES)
  .filter((f) => f.endsWith(".ts"))
  .sort();

describe("the README's examples", () => {
  it("every ts block names its file in examples/ on its first line", () => {
    expect(blocks.length).toBeGreaterThan(0);
    for (const [named, text] of blocks) expect(named, text.split("\n")[0]).toMatch(/^examples\//);
  });

  it.each(blocks.map(([named, text]) => [named, text]))("%s is the file, word for word", (named, text) => {
    expect(text).toBe(readFileSync(join(ROOT, named), "utf8"));
  });

  it("every file in examples/ is shown in the README", () => {
    expect(blocks.map(([named]) => named).sort()).toEqual(files.map((f) => `examples/${f}`));
  });
});

describe("the examples run", () => {
  it.each(files)("examples/%s", async (file) => {
    const lines: string[] = [];
    const log = vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
      lines.push(args.map(String).join(" "));
    });
    try {
      await import(join(EXAMPLES, file));
    } finally {
      log.mockRestore();
    }
    const out = lines.join("\n");
    if (file === "traces.ts") expect(out).toMatch(/^replayed \d+ events: every answer as recorded$/);
    if (file === "mixer.ts") expect(out).toBe("10000 at -6 dB plays as 5012");
    if (file === "embedding.ts") expect(out).toMatch(/FEATURES_OK: true/);
    if (file === "vhost-user-daemon.ts")
      expect(out).toMatch(/listening on .*snd\.sock\ncontrol 0 set by the host|vhost-user is unavailable/);
  });
});

describe("the README's list of error codes", () => {
  it("is the ErrorCode type's, in its order", () => {
    const errors = readFileSync(join(ROOT, "src", "errors.ts"), "utf8");
    const union = errors.slice(errors.indexOf("export type ErrorCode"), errors.indexOf("export class"));
    const codes = [...union.matchAll(/\| "(ERR_[A-Z_]+)"/g)].map((m) => m[1]);
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const table = readme.slice(readme.indexOf("## Errors"), readme.indexOf("## Working on"));
    expect([...table.matchAll(/^\| `(ERR_[A-Z_]+)`/gm)].map((m) => m[1])).toEqual(codes);
  });
});
