// Prints the line coverage of the core (the folders that must run in any
// JavaScript engine) from vitest's json-summary, after `vitest run --coverage`.
import { readFileSync } from "node:fs";
import { relative, sep } from "node:path";

const CORE = [
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
];
const summary = JSON.parse(readFileSync("coverage/coverage-summary.json", "utf8"));
const totals = { lines: [0, 0], statements: [0, 0], branches: [0, 0], functions: [0, 0] };
const perFolder = new Map();
for (const [file, data] of Object.entries(summary)) {
  if (file === "total") continue;
  const parts = relative("src", relative(process.cwd(), file)).split(sep);
  const folder = parts.length === 1 ? "." : parts[0];
  if (folder !== "." && !CORE.includes(folder)) continue;
  for (const k of Object.keys(totals)) {
    totals[k][0] += data[k].covered;
    totals[k][1] += data[k].total;
  }
  const f = perFolder.get(folder) ?? [0, 0];
  f[0] += data.lines.covered;
  f[1] += data.lines.total;
  perFolder.set(folder, f);
}
const pct = ([c, t]) => (t === 0 ? "100.00" : ((100 * c) / t).toFixed(2));
console.log("\nCoverage of the core (src/" + CORE.join(", src/") + " and src/*.ts):");
for (const [folder, f] of [...perFolder].sort())
  console.log(`  ${folder.padEnd(10)} lines ${pct(f).padStart(6)}%`);
console.log(
  `  core total  lines ${pct(totals.lines)}%  statements ${pct(totals.statements)}%  ` +
    `branches ${pct(totals.branches)}%  functions ${pct(totals.functions)}%`,
);
