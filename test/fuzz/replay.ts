/**
 * npx tsx test/fuzz/replay.ts FILE.json...: runs saved reproducers again and
 * prints what each one breaks now (with the stack), for investigating them.
 */
import { readFileSync } from "node:fs";
import { fromHex } from "./bytes.js";
import type { Reproducer } from "./engine.js";
import { makeTarget } from "./targets.js";

let failed = 0;
for (const file of process.argv.slice(2)) {
  const rep = JSON.parse(readFileSync(file, "utf8")) as Reproducer;
  const target = makeTarget(rep.target);
  Error.stackTraceLimit = 20;
  if (process.env.FUZZ_TRACE) (target as { trace?: boolean }).trace = true;
  const failure = target.run(fromHex(rep.input));
  if (failure !== null) failed++;
  console.log(`${file}: ${failure === null ? "passes" : `${failure.invariant}: ${failure.message}`}`);
}
process.exitCode = failed > 0 ? 1 : 0;
