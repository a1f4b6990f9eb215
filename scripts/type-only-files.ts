/**
 * The source files that compile to no JavaScript at all: only types,
 * interfaces, `import type`/`export type` and declarations. Coverage leaves
 * them out (vitest.config.ts): they have no statement to run, so listing them
 * says nothing about the tests but shows them as untested.
 *
 * A file is left out only when TypeScript's own emit of it holds nothing but
 * the `export {};` that marks it a module; one runtime statement (a const, an
 * enum, a re-export of a value) keeps it in.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join, relative, sep } from "node:path";
import ts from "typescript";

/** A line that declares a value: such a file has code, with no need to compile it. */
const VALUE_DECLARATION = /^\s*(export\s+)?(default\s+)?(async\s+)?(const|let|var|function|class|enum)\b/m;

/** True when `source` compiles to no runtime statement. */
export function compilesToNothing(source: string, fileName = "file.ts"): boolean {
  if (VALUE_DECLARATION.test(source)) return false;
  const js = ts.transpileModule(source, {
    fileName,
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
  }).outputText;
  const out = ts.createSourceFile("out.js", js, ts.ScriptTarget.ES2022, false, ts.ScriptKind.JS);
  return out.statements.every(
    (s) =>
      ts.isExportDeclaration(s) &&
      s.moduleSpecifier === undefined &&
      s.exportClause !== undefined &&
      ts.isNamedExports(s.exportClause) &&
      s.exportClause.elements.length === 0,
  );
}

/** The .ts files under `dir` (paths relative to `root`, with "/") that compile to nothing. */
export function typeOnlyFiles(root: string, dir = "src"): string[] {
  const found: string[] = [];
  for (const entry of readdirSync(join(root, dir), { recursive: true, encoding: "utf8" })) {
    if (!entry.endsWith(".ts") || entry.endsWith(".d.ts")) continue;
    const path = join(root, dir, entry);
    if (compilesToNothing(readFileSync(path, "utf8"), path))
      found.push(relative(root, path).split(sep).join("/"));
  }
  return found.sort();
}
