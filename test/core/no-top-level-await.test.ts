import { readFileSync } from "node:fs";
import { join, relative } from "node:path";
import ts from "typescript";
import { describe, expect, it } from "vitest";
import { sourceFiles } from "./source-files.js";

/**
 * `require("virtio-snd")` and `require("virtio-snd/node")` load the ESM build
 * through Node's require(esm), which refuses a module graph with top-level
 * await (ERR_REQUIRE_ASYNC_MODULE). No module of src/ may use it (nor
 * `for await` at the top level).
 */
const SRC = join(import.meta.dirname, "../../src");

/** Line numbers of awaits outside any function body. */
function topLevelAwaits(text: string, name = "x.ts"): number[] {
  const source = ts.createSourceFile(name, text, ts.ScriptTarget.ES2022, true);
  const found: number[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node)) return;
    if (ts.isAwaitExpression(node) || (ts.isForOfStatement(node) && node.awaitModifier !== undefined))
      found.push(source.getLineAndCharacterOfPosition(node.getStart()).line + 1);
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

describe("no module uses top-level await (require(esm) must work)", () => {
  it.each(sourceFiles(SRC).map((f) => [relative(SRC, f), f]))("%s", (name, file) => {
    expect(topLevelAwaits(readFileSync(file, "utf8"), name)).toEqual([]);
  });

  it("finds one when there is one (the check itself works)", () => {
    expect(topLevelAwaits("const a = 1;\nawait Promise.resolve(a);")).toEqual([2]);
    expect(topLevelAwaits("for await (const x of y) {}")).toEqual([1]);
    expect(topLevelAwaits("async function f() { await g(); }\nconst h = async () => await g();")).toEqual([]);
  });
});
