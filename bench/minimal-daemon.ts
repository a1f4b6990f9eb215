/**
 * The minimal C daemon (minimal-daemon.c), the baseline the daemon benches
 * compare with: built with cc into the temporary folder (once per source
 * change), so a fresh clone needs only a C compiler.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

export interface BaselineResult {
  periods: number;
  cpu: number;
  user: number;
  sys: number;
  wakeups: number;
  kicks: number;
}

/** Builds bench/minimal-daemon.c with cc (once per source change); null when there is no compiler. */
export function buildBaseline(): string | null {
  const source = fileURLToPath(new URL("./minimal-daemon.c", import.meta.url));
  const text = readFileSync(source);
  const out = join(
    tmpdir(),
    `virtio-snd-minimal-daemon-${createHash("sha256").update(text).digest("hex").slice(0, 12)}`,
  );
  if (existsSync(out)) return out;
  const cc = process.env["CC"] ?? "cc";
  const r = spawnSync(cc, ["-O2", "-o", `${out}.tmp`, source], { stdio: ["ignore", "inherit", "inherit"] });
  if (r.status !== 0) return null;
  renameSync(`${out}.tmp`, out);
  return out;
}

/** The minimal C daemon, kicks suppressed while it plays (one wake-up per period: the floor). */
export function runBaseline(exe: string, periodMs: number, seconds: number): BaselineResult {
  const r = spawnSync(exe, [String(periodMs), String(seconds), "0"], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`the C baseline failed: ${r.stderr}`);
  return JSON.parse(r.stdout) as BaselineResult;
}
