/**
 * The device's TX path before V8 has optimized it: what a vhost-user daemon
 * pays per period for its first few thousand periods (at 100 periods a
 * second V8 takes that long to compile the per-period code), and what each
 * call on that path costs there. Each row runs in a child process with V8's
 * tiers held back by flags: "interpreter" (--no-opt --no-sparkplug
 * --no-maglev: Ignition only), "baseline" (--no-opt --no-maglev: Ignition and
 * Sparkplug, which V8 reaches within a few calls), and "optimized" (no flags,
 * after 30,000 messages of warm-up), the same run's baseline for the ratio.
 * The guest is bench/rig.ts (10 ms periods of 48 kHz S16 stereo, 4 in
 * flight); "device" is the voice tick and the notify, timed per period as
 * `npm run bench` does (the guest driver's share left out). "windowed" hands
 * the device guest memory 1 MiB at a time, as the daemon maps a guest's RAM.
 *
 *   npx tsx bench/cold-path.ts [--runs 5] [--messages 5000]
 */
import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { type PhaseTimes, Rig, type RingKind } from "./rig.js";

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && i + 1 < process.argv.length ? process.argv[i + 1]! : fallback;
}

const TIERS: { name: string; flags: string[]; warmUp: number }[] = [
  { name: "interpreter", flags: ["--no-opt", "--no-sparkplug", "--no-maglev"], warmUp: 500 },
  { name: "baseline", flags: ["--no-opt", "--no-maglev"], warmUp: 500 },
  { name: "optimized", flags: [], warmUp: 30_000 },
];
const ROWS: { ring: RingKind; memory: "flat" | "windowed" }[] = [
  { ring: "packed", memory: "windowed" },
  { ring: "split", memory: "windowed" },
  { ring: "packed", memory: "flat" },
  { ring: "split", memory: "flat" },
];

/** In a child: device µs per message, one figure per run. */
function child(
  ring: RingKind,
  memory: "flat" | "windowed",
  warmUp: number,
  runs: number,
  messages: number,
): void {
  const rig = new Rig({ ring, direction: "tx", periodBytes: 1920, periods: 4, retain: false, memory });
  rig.open();
  rig.run(warmUp);
  const out: number[] = [];
  for (let r = 0; r < runs; r++) {
    // Unoptimized periods take tens of µs; 1 ms only clips a descheduled or collecting step.
    const p: PhaseTimes = { device: 0, driver: 0, steps: 0, clipped: 0, clipMs: 1 };
    rig.runTimed(messages, p);
    out.push((p.device * 1000) / Math.max(1, p.steps));
  }
  if (rig.errors + rig.xruns > 0) throw new Error(`${rig.errors} errors, ${rig.xruns} xruns`);
  rig.close();
  process.stdout.write(JSON.stringify(out));
}

function stats(xs: number[]): { median: number; min: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s.at(-1)! };
}

const self = fileURLToPath(import.meta.url);
if (process.argv[2] === "--child") {
  const [, , , ring, memory, warmUp, runs, messages] = process.argv;
  child(ring as RingKind, memory as "flat" | "windowed", Number(warmUp), Number(runs), Number(messages));
} else {
  const runs = Math.max(1, Number(arg("runs", "5")));
  const messages = Math.max(100, Number(arg("messages", "5000")));
  console.log(`device µs per 10 ms TX message, medians of ${runs} runs of ${messages} (range); ÷ optimized`);
  for (const row of ROWS) {
    const figures = TIERS.map((t) => {
      const text = execFileSync(
        process.execPath,
        [
          "--import",
          "tsx",
          ...t.flags,
          self,
          "--child",
          row.ring,
          row.memory,
          String(t.warmUp),
          String(runs),
          String(messages),
        ],
        { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] },
      );
      return stats(JSON.parse(text) as number[]);
    });
    const opt = figures.at(-1)!.median;
    console.log(
      `${`${row.ring}, ${row.memory}`.padEnd(18)} ` +
        TIERS.map((t, i) => {
          const f = figures[i]!;
          return `${t.name} ${f.median.toFixed(2)} (${f.min.toFixed(2)}–${f.max.toFixed(2)})${
            i < TIERS.length - 1 ? ` ${(f.median / opt).toFixed(1)}x` : ""
          }`;
        }).join(", "),
    );
  }
}
