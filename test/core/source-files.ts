import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";

/** The library's sources. */
export const SRC = join(import.meta.dirname, "../../src");

/** Every .ts file below `dir`, depth first. */
export function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sourceFiles(p) : p.endsWith(".ts") ? [p] : [];
  });
}
