/**
 * One benchmark row run for a fixed number of messages, with nothing else in
 * the process: what bench/instructions.ts counts under callgrind.
 *
 *   row-loop.ts <split|packed> <tx|rx> <period bytes> <messages> <warm-up messages> [flat|windowed]
 */
import { type Direction, Rig, type RingKind } from "./rig.js";

const [ring, direction, period, messages, warmup, memory] = process.argv.slice(2);
const rig = new Rig({
  ring: ring as RingKind,
  direction: direction as Direction,
  periodBytes: Number(period),
  periods: 4,
  retain: false,
  memory: memory === "windowed" ? "windowed" : "flat",
});
rig.open();
rig.run(Number(warmup));
rig.run(Number(messages));
if (rig.errors + rig.xruns > 0) {
  console.error(`row-loop: ${rig.errors} errors, ${rig.xruns} xruns`);
  process.exitCode = 1;
}
rig.close();
