/**
 * Tests that need a real part of the machine skip, with the reason, where it
 * is missing. On a machine that is meant to have it (CI), a skip would hide a
 * broken install step, so a variable turns it into a failure:
 *
 * | variable               | part                                                    |
 * |------------------------|---------------------------------------------------------|
 * | VSND_REQUIRE_GUESTS=1  | QEMU 10 with its Linux guest, and the v86 Linux guest    |
 * | VSND_REQUIRE_NATIVE=1  | the vhost-user native addon, built and loading          |
 * | VSND_REQUIRE_ALSA=1    | `speaker` built against ALSA                            |
 * | VSND_REQUIRE_SOX=1     | the `sox` command                                       |
 * | VSND_REQUIRE_ALL=1     | every one of them (what .ci/run sets)                    |
 *
 * `npm run test:browser` (test/browser/run.ts, outside vitest) reads
 * VSND_REQUIRE_BROWSER, VSND_REQUIRE_GUESTS and VSND_REQUIRE_ALL the same way.
 */
import { it } from "vitest";

export type Part = "guests" | "native" | "alsa" | "sox";

const VARIABLES: Record<Part, string> = {
  guests: "VSND_REQUIRE_GUESTS",
  native: "VSND_REQUIRE_NATIVE",
  alsa: "VSND_REQUIRE_ALSA",
  sox: "VSND_REQUIRE_SOX",
};

/** The variable that requires `part`, when it is set to 1 (directly or through VSND_REQUIRE_ALL). */
export function requiredBy(part: Part): string | null {
  if (process.env[VARIABLES[part]] === "1") return VARIABLES[part];
  if (process.env["VSND_REQUIRE_ALL"] === "1") return "VSND_REQUIRE_ALL";
  return null;
}

/**
 * For `describe.skipIf(missing(part, problem))` and `it.skipIf(...)`: false
 * when the part is there (`problem` is null or ""); true when it is not, so
 * the tests that need it skip. When the part is also required, a failing test
 * named for it is registered in their place, saying what is missing.
 */
export function missing(part: Part, problem: string | null | undefined): boolean {
  if (problem === null || problem === undefined || problem === "") return false;
  const variable = requiredBy(part);
  if (variable !== null) {
    it(`has ${part} (${variable}=1)`, () => {
      throw new Error(`${variable}=1 but ${part} is unavailable: ${problem}`);
    });
  }
  return true;
}
