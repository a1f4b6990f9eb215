import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, expect, it } from "vitest";
import { sourceFiles } from "./source-files.js";

/**
 * package.json says which modules have side effects ("sideEffects"), so that
 * bundlers drop every module an application does not use. A module that does
 * something when merely imported (registers a processor, sets a global) must
 * be listed, or a bundler drops it even from a bare `import "..."`; the list
 * holds nothing else. What counts here: a call or an assignment to a global
 * as a top-level statement. Top-level declarations are fine: `const X = f()`
 * only matters to whoever uses X.
 */
const ROOT = join(import.meta.dirname, "../..");
const SRC = join(ROOT, "src");

const TOP_LEVEL_EFFECT =
  /^(?!(?:if|for|while|switch|return|await|typeof|void|new)\b)[A-Za-z_$][\w$.]*\s*\(|^(?:globalThis|window|self)\b[\w$.[\]"']*\s*=[^=]/;

/** The top-level statements of `text` that act when the module is imported. */
function topLevelEffects(text: string): string[] {
  const code = text
    .replace(/\/\*[\s\S]*?\*\/|\/\/.*$/gm, "")
    // Template literals (help texts, a child process's script) are data, not statements.
    .replace(/`(?:\\[\s\S]|[^`\\])*`/g, "``");
  return code.split("\n").filter((line) => TOP_LEVEL_EFFECT.test(line));
}

const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { sideEffects?: unknown };

describe("the package's sideEffects", () => {
  it("lists exactly the modules with top-level effects, as their dist paths", () => {
    const withEffects = sourceFiles(SRC)
      .filter((f) => topLevelEffects(readFileSync(f, "utf8")).length > 0)
      .map((f) => `./dist/${relative(SRC, f).replace(/\.ts$/, ".js")}`)
      .sort();
    expect(withEffects).toEqual(["./dist/browser/worklet.js"]);
    expect(pkg.sideEffects).toEqual(withEffects);
  });

  it("finds a top-level registration or global, and not a declaration (the check itself works)", () => {
    expect(topLevelEffects('registerProcessor("x", X);\n')).toHaveLength(1);
    expect(topLevelEffects("globalThis.thing = 1;\n")).toHaveLength(1);
    expect(topLevelEffects("const table = build();\nexport function f() {}\n")).toEqual([]);
    expect(topLevelEffects("const HELP = `\nUsage(\n`;\n")).toEqual([]);
  });
});
