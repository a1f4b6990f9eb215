/**
 * Instructions per message on the data path, counted by valgrind's callgrind:
 * a figure a shared, noisy machine does not move, for comparing two versions
 * of the code where CPU times swing by tens of percent between runs.
 *
 *   npx tsx bench/instructions.ts [--base <git ref>] [--rows split:tx:1920,packed:tx:1920:windowed] [--messages N] [--tier optimized|baseline|interpreter]
 *
 * Each tree (the working tree, and with --base that commit's src/ under this
 * tree's bench/) is bundled with esbuild and runs bench/row-loop.ts under callgrind twice:
 * with W warm-up + N and W + 3N messages. The difference over 2N messages is
 * the steady per-message cost (JIT-compiled device and the benchmark's guest
 * driver); start-up and compilation cancel out. Repeated runs agree within
 * about 0.3 %. Instructions are not time (a division costs more than an add,
 * memory stalls are not counted), so this complements `npm run bench`.
 * A row's fourth field, "windowed", hands the device guest memory 1 MiB at a
 * time, as the vhost-user daemon sees it. --tier holds V8 back, as
 * bench/cold-path.ts does: "interpreter" (--no-opt --no-sparkplug
 * --no-maglev) and "baseline" (--no-opt --no-maglev) count the path a daemon
 * runs before V8 has optimized it; their warm-up is 1,000 messages. With
 * --base, both trees run this tree's bench/ (the rig is the harness) on their
 * own src/.
 */
import { execFile, execFileSync, spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs, promisify } from "node:util";
import { build } from "esbuild";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const { values } = parseArgs({
  options: {
    base: { type: "string" },
    rows: { type: "string", default: "split:tx:1920,packed:tx:1920,split:rx:1920,split:tx:65536" },
    messages: { type: "string", default: "100000" },
    tier: { type: "string", default: "optimized" },
  },
});
const N = Number(values.messages);
const TIER_FLAGS: Record<string, string[]> = {
  optimized: [],
  baseline: ["--no-opt", "--no-maglev"],
  interpreter: ["--no-opt", "--no-sparkplug", "--no-maglev"],
};
if (!Object.hasOwn(TIER_FLAGS, values.tier)) {
  console.error(`bench/instructions: --tier ${values.tier}: optimized, baseline or interpreter`);
  process.exit(2);
}
const tierFlags = TIER_FLAGS[values.tier] ?? [];
// Unoptimized tiers have no compiler to warm up; the rings and the stream still settle.
const WARMUP = values.tier === "optimized" ? 100_000 : 1_000;

if (spawnSync("valgrind", ["--version"]).status !== 0) {
  console.error("bench/instructions: valgrind is not installed (Debian: apt-get install valgrind)");
  process.exit(2);
}

/** Bundles row-loop.ts of the tree at `dir` into one file. */
async function bundle(dir: string, out: string): Promise<void> {
  await build({
    entryPoints: [join(dir, "bench/row-loop.ts")],
    bundle: true,
    platform: "node",
    format: "esm",
    outfile: out,
    logLevel: "warning",
  });
}

/** Instructions callgrind counts for one process running `messages` after the warm-up. */
async function count(script: string, row: string[], messages: number): Promise<number> {
  const args = [
    "--tool=callgrind",
    "--callgrind-out-file=/dev/null",
    // V8 writes and rewrites machine code: valgrind must notice.
    "--smc-check=all-non-file",
    "node",
    // No background compiler or GC threads: the same work in the same order every run.
    "--single-threaded",
    ...tierFlags,
    script,
    ...row.slice(0, 3),
    String(messages),
    String(WARMUP),
    row[3] ?? "flat",
  ];
  let stderr: string;
  try {
    ({ stderr } = await promisify(execFile)("valgrind", args, { encoding: "utf8" }));
  } catch (e) {
    throw new Error(`callgrind failed on ${script} ${row.join(" ")}: ${(e as Error).message}`);
  }
  const m = /Collected : (\d+)/.exec(stderr);
  if (m === null) throw new Error(`callgrind printed no count for ${script} ${row.join(" ")}`);
  return Number(m[1]);
}

/** The two trees run side by side (one process each); each tree's two counts one after the other. */
async function perMessage(script: string, row: string[]): Promise<number> {
  const small = await count(script, row, N);
  const large = await count(script, row, 3 * N);
  return (large - small) / (2 * N);
}

const work = mkdtempSync(join(tmpdir(), "vsnd-instr-"));
try {
  const trees: { name: string; script: string }[] = [];
  if (values.base !== undefined) {
    const dir = join(work, "base");
    cpSync(join(root, "bench"), join(dir, "bench"), { recursive: true });
    // The base's own sources, with this tree's harness (row loop, rig, lean rings).
    execFileSync("sh", ["-c", `git -C "${root}" archive "$1" src | tar -x -C "${dir}"`, "-", values.base]);
    trees.push({ name: values.base, script: join(work, "base.mjs") });
    await bundle(dir, trees[0]!.script);
  }
  trees.push({ name: "working tree", script: join(work, "current.mjs") });
  await bundle(root, trees[trees.length - 1]!.script);

  const rows = values.rows.split(",").map((r) => r.split(":"));
  console.log(
    `instructions per message (callgrind, ${2 * N} messages after ${WARMUP + N}; 48 kHz S16 stereo, 4 periods; ` +
      `V8 tier: ${values.tier})`,
  );
  console.log(
    [
      "ring",
      "dir",
      "period B",
      ...trees.map((t) => t.name.slice(0, 14).padStart(14)),
      trees.length > 1 ? "change" : "",
    ]
      .join("  ")
      .trimEnd(),
  );
  for (const row of rows) {
    const figures = await Promise.all(trees.map((t) => perMessage(t.script, row)));
    const change =
      figures.length > 1
        ? `${(((figures[1]! - figures[0]!) / figures[0]!) * 100).toFixed(1).padStart(5)} %`
        : "";
    console.log(
      [
        row[0]!.padEnd(6),
        row[1]!.padEnd(3),
        `${row[2]!}${row[3] === "windowed" ? " w" : ""}`.padStart(8),
        ...figures.map((f) => Math.round(f).toString().padStart(14)),
        change,
      ]
        .join("  ")
        .trimEnd(),
    );
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
