/**
 * Every reproducer the fuzzer saved (test/fuzz/regressions/*.json) must pass
 * now, and a few fixed seeds of both targets run as a smoke test: a change
 * that breaks an invariant the fuzzer checks shows here, deterministically.
 */
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { Prng, fromHex } from "./bytes.js";
import { Fuzzer, type Failure, type Reproducer } from "./engine.js";
import { TARGET_NAMES, makeTarget } from "./targets.js";

const dir = join(dirname(fileURLToPath(import.meta.url)), "regressions");
const saved = readdirSync(dir)
  .filter((f) => f.endsWith(".json"))
  .sort();

describe("saved fuzz reproducers", () => {
  it("are well-formed files for known targets", () => {
    for (const f of saved) {
      const rep = JSON.parse(readFileSync(join(dir, f), "utf8")) as Reproducer;
      expect(TARGET_NAMES as readonly string[]).toContain(rep.target);
      expect(rep.input).toMatch(/^([0-9a-f]{2})*$/);
    }
  });

  it.each(saved.map((f) => [f]))("%s no longer fails", (f) => {
    const rep = JSON.parse(readFileSync(join(dir, f), "utf8")) as Reproducer;
    expect(makeTarget(rep.target).run(fromHex(rep.input))).toBeNull();
  });
});

describe.each(TARGET_NAMES.map((t) => [t]))("fuzz smoke test: %s", (name) => {
  it.each([[1], [2]])("seed %i: 1000 inputs, no invariant broken", (seed) => {
    const fuzzer = new Fuzzer(makeTarget(name), new Prng(seed));
    const failures: { failure: Failure; input: string }[] = [];
    for (let i = 0; i < 1000; i++) {
      const input = fuzzer.next();
      const failure = fuzzer.runOne(input);
      if (failure !== null) failures.push({ failure, input: Buffer.from(input).toString("hex") });
    }
    expect(failures.slice(0, 1)).toEqual([]);
    expect(fuzzer.inputs).toBe(1000);
  });
});
