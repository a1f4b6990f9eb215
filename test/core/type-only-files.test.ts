import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { compilesToNothing, typeOnlyFiles } from "../../scripts/type-only-files.js";

/** Coverage leaves out the files typeOnlyFiles() finds: it must never find one with code in it. */
const ROOT = join(import.meta.dirname, "../..");

describe("typeOnlyFiles (the files coverage leaves out)", () => {
  it.each([
    "export interface A { x: number }",
    "export type B = string | number;",
    'import type { A } from "./a.js";\nexport type { A };',
    "declare const x: number;\nexport declare function f(): void;",
    "/** comments */\nexport default interface C {}",
    "declare enum D { X }",
  ])("finds no code in %j", (source) => {
    expect(compilesToNothing(source)).toBe(true);
  });

  it.each([
    "export const a = 1;",
    "export enum E { X }",
    "export function f() {}",
    "export class K {}",
    'export { x } from "./x.js";',
    'export * from "./x.js";',
    'import "./side-effect.js";',
    "interface A {}\nconsole.log(1);",
  ])("finds code in %j", (source) => {
    expect(compilesToNothing(source)).toBe(false);
  });

  it("lists the interface-only files of src/, and none that exports a value", async () => {
    const found = typeOnlyFiles(ROOT);
    expect(found).toContain("src/audio/backend.ts");
    expect(found).not.toContain("src/audio/clock.ts");
    for (const file of found) {
      // Loaded for real, the module has nothing in it.
      const module = (await import(join(ROOT, file))) as Record<string, unknown>;
      expect(Object.keys(module), file).toEqual([]);
    }
  });
});
