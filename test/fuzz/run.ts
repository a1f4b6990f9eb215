/**
 * npm run fuzz -- --seconds N [--seed S] [--target device|vhost-user|all]
 *
 * Runs each target for its share of the time, prints a progress line about
 * every 10 s and a summary, minimizes every failure and saves it under
 * test/fuzz/regressions/ (one per distinct invariant and message). Exits 1
 * when anything failed.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Prng } from "./bytes.js";
import { type Failure, Fuzzer, minimize, reproducer, shortHash } from "./engine.js";
import { TARGET_NAMES, makeTarget } from "./targets.js";
import { Watchdog } from "./watchdog.js";

const REGRESSIONS = join(dirname(fileURLToPath(import.meta.url)), "regressions");
const PROGRESS_MS = 10_000;

interface Args {
  seconds: number;
  seed: number;
  targets: string[];
}

function parseArgs(argv: readonly string[]): Args {
  const args: Args = { seconds: 60, seed: Date.now() >>> 0, targets: [...TARGET_NAMES] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const value = argv[i + 1];
    if (a === "--seconds" && value !== undefined) args.seconds = Number(value);
    else if (a === "--seed" && value !== undefined) args.seed = Number(value) >>> 0;
    else if (a === "--target" && value !== undefined)
      args.targets = value === "all" ? [...TARGET_NAMES] : value.split(",");
    else if (a === "--help" || a === "-h") {
      console.log("usage: npm run fuzz -- --seconds N [--seed S] [--target device|vhost-user|all]");
      process.exit(0);
    } else {
      console.error(`unknown argument ${a}`);
      process.exit(2);
    }
    i++;
  }
  if (!(args.seconds > 0)) {
    console.error("--seconds must be a positive number");
    process.exit(2);
  }
  return args;
}

/** Failures with the same invariant and message (numbers aside) are one bug: saved once. */
function failureKey(f: Failure): string {
  return `${f.invariant}:${f.message.split("\n")[0]!.replace(/\d+/g, "#")}`;
}

function main(): void {
  const args = parseArgs(process.argv.slice(2));
  // The device makes (and catches) errors for every access outside memory a hostile guest
  // asks for; their stack traces would cost more than the rest of the run. Replays keep them.
  Error.stackTraceLimit = 0;
  const watchdog = new Watchdog(REGRESSIONS, args.seed);
  console.log(`fuzz: seed ${args.seed}, ${args.seconds} s over ${args.targets.join(", ")}`);
  let totalInputs = 0;
  let totalFailures = 0;
  let totalMs = 0;
  const share = (args.seconds * 1000) / args.targets.length;
  for (const [t, name] of args.targets.entries()) {
    const target = makeTarget(name);
    const fuzzer = new Fuzzer(target, new Prng(args.seed + t));
    const seen = new Set<string>();
    let failures = 0;
    const start = performance.now();
    let nextProgress = start + PROGRESS_MS;
    let now = start;
    let lastInputs = 0;
    let lastTime = start;
    const line = (n: number, ms: number, rate: number): string =>
      `fuzz ${name}: ${n} inputs in ${(ms / 1000).toFixed(1)} s (${Math.round(rate)} inputs/s), ${failures} failures`;
    while (now - start < share) {
      // Check the clock every few inputs: performance.now() is cheap but not free.
      for (let k = 0; k < 16; k++) {
        const input = fuzzer.next();
        watchdog.current(name, input);
        const failure = fuzzer.runOne(input);
        if (failure === null) continue;
        failures++;
        const key = failureKey(failure);
        if (seen.has(key)) continue;
        seen.add(key);
        watchdog.pause();
        const min = minimize(target, input, failure.invariant);
        const file = join(REGRESSIONS, `${name}-${shortHash(min.input)}.json`);
        mkdirSync(REGRESSIONS, { recursive: true });
        writeFileSync(
          file,
          `${JSON.stringify(reproducer(name, args.seed, min.input, min.failure), null, 2)}\n`,
        );
        console.log(
          `fuzz ${name}: FAILURE ${min.failure.invariant}: ${min.failure.message.split("\n")[0]} (${input.length} -> ${min.input.length} bytes, ${file})`,
        );
        watchdog.resume();
      }
      now = performance.now();
      if (now >= nextProgress) {
        const rate = ((fuzzer.inputs - lastInputs) * 1000) / (now - lastTime);
        console.log(`${line(fuzzer.inputs, now - start, rate)}, corpus ${fuzzer.corpus.length}`);
        lastInputs = fuzzer.inputs;
        lastTime = now;
        nextProgress = now + PROGRESS_MS;
      }
    }
    const ms = now - start;
    console.log(line(fuzzer.inputs, ms, (fuzzer.inputs * 1000) / ms));
    totalInputs += fuzzer.inputs;
    totalFailures += failures;
    totalMs += ms;
  }
  watchdog.stop();
  console.log(
    `fuzz total: ${totalInputs} inputs in ${(totalMs / 1000).toFixed(1)} s (${Math.round((totalInputs * 1000) / totalMs)} inputs/s), ${totalFailures} failures`,
  );
  process.exitCode = totalFailures > 0 ? 1 : 0;
}

main();
