/** What the commands say on stderr before `--output wav:DIR` makes a folder the user may not expect. */
import { existsSync } from "node:fs";
import { isAbsolute, relative, resolve } from "node:path";

/**
 * For a sink spec "wav:DIR" whose DIR does not exist yet: the line that says
 * it will be created, and, when it is outside the working directory (an
 * absolute path elsewhere, or "../.." up), says so with the full path, so a
 * mistyped path does not silently scatter files. Otherwise null.
 */
export function wavDirNotice(spec: string | undefined, cwd: string = process.cwd()): string | null {
  if (spec === undefined || !spec.startsWith("wav:") || spec.length === 4) return null;
  const dir = resolve(cwd, spec.slice(4));
  if (existsSync(dir)) return null;
  const rel = relative(cwd, dir);
  const outside = rel === ".." || rel.startsWith(`..${"/"}`) || isAbsolute(rel);
  return outside
    ? `creating ${dir} for the WAV files: it is outside the working directory (${cwd})`
    : `creating ${rel} for the WAV files`;
}
