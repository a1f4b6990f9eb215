/**
 * `virtio-snd demo` (`npm start`): the bundled trace of a real guest playing
 * a tune, replayed live through a fresh device. Run here in-process with
 * --virtual (as fast as possible) into a WAV file: the file must hold exactly
 * the audio the trace's guest sent, and the output must show the control
 * requests and stream events.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { DEMO_HELP, DEMO_TRACE, DEMO_WAV, runDemo } from "../../src/cli/demo.js";
import { main } from "../../src/cli/main.js";
import { parseWav } from "../../src/node/wav.js";
import { readTraceFile } from "../../src/node/trace-file.js";
import { traceTxAudio } from "../../src/trace/live-replay.js";
import { capture } from "./capture.js";

const dir = mkdtempSync(join(tmpdir(), "virtio-snd-demo-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("virtio-snd demo", () => {
  it("bundles a real guest's trace with the tune's audio in full", async () => {
    expect(existsSync(DEMO_TRACE)).toBe(true);
    const trace = await readTraceFile(DEMO_TRACE);
    expect(trace.header.note).toMatch(/^scenario demo-tune: aplay of a .*Guest: Linux /);
    const audio = traceTxAudio(trace, 0);
    expect(audio).not.toBeNull();
    // A few seconds of 22.05 kHz S16 stereo.
    expect(audio!.length / (22050 * 4)).toBeGreaterThan(3);
    expect(audio!.length / (22050 * 4)).toBeLessThan(5);
  });

  it("--virtual --output wav:DIR: the WAV file is the trace's audio; the lines show requests and events", async () => {
    const out = join(dir, "wav");
    const c = capture();
    const code = await runDemo(["--virtual", "--output", `wav:${out}`], c.io);
    const text = c.text();
    // The one thing on stderr: the new folder (a temporary one, outside the working directory).
    expect(c.err.join(""), text).toBe(
      `virtio-snd demo: creating ${out} for the WAV files: it is outside the working directory (${process.cwd()})\n`,
    );
    expect(code, text).toBe(0);

    const trace = await readTraceFile(DEMO_TRACE);
    const expected = traceTxAudio(trace, 0)!;
    const wav = parseWav(new Uint8Array(readFileSync(join(out, DEMO_WAV))));
    expect([wav.format, wav.channels, wav.rate]).toEqual([5, 2, 22050]); // S16
    expect(Buffer.from(wav.data).equals(Buffer.from(expected))).toBe(true);

    // One line per control request and stream event, each with its time.
    const lines = text.split("\n");
    for (const request of ["JACK_INFO jacks 0..1", "PCM_INFO streams 0..1", "CHMAP_INFO chmaps 0..5"])
      expect(lines.some((l) => l.includes(`control ${request}`) && l.endsWith("-> OK"))).toBe(true);
    for (const request of ["PCM_SET_PARAMS", "PCM_PREPARE", "PCM_START", "PCM_STOP", "PCM_RELEASE"])
      expect(lines).toContainEqual(
        expect.stringMatching(new RegExp(`^\\[ +\\d+\\.\\d{3} s\\] control ${request} stream 0 +-> OK$`)),
      );
    for (const event of [
      "parameters set: S16, 2 ch, 22050 Hz",
      "prepare (now prepared)",
      "start (now running)",
      "stop (now stopped)",
      "release (now released)",
    ])
      expect(lines).toContainEqual(
        expect.stringMatching(
          new RegExp(`^\\[ +\\d+\\.\\d{3} s\\] stream 0 ${event.replace(/[()]/g, "\\$&")}`),
        ),
      );
    // Event order as the guest sent them.
    const order = ["PCM_SET_PARAMS", "PCM_PREPARE", "PCM_START", "PCM_STOP", "PCM_RELEASE"].map((r) =>
      lines.findIndex((l) => l.includes(`control ${r} `)),
    );
    expect(order).toEqual([...order].sort((a, b) => a - b));
    // Progress lines (no terminal: a line a second of audio), then the summary and the check.
    expect(
      lines.filter((l) => /playing stream 0: [\d.]+ s of [\d.]+ s \(\d+%\)/.test(l)).length,
    ).toBeGreaterThan(2);
    expect(text).toMatch(/playing stream 0: ([\d.]+) s of \1 s \(100%\)/);
    expect(text).toMatch(
      /replay: \d+ events, \d+ messages, \d+ completions: every answer as the recorded device gave it/,
    );
    expect(text).toContain(`stream 0: played ${expected.length} bytes`);
    expect(text).toContain(`identical to the ${expected.length} bytes the guest sent`);
    expect(text).toContain(`wrote ${join(out, DEMO_WAV)}`);
    expect(text).not.toContain("\r");
  });

  it("on a terminal: one progress line, rewritten in place", async () => {
    const c = capture(true);
    expect(await runDemo(["--virtual", "--output", "null"], c.io)).toBe(0);
    const text = c.text();
    const rewrite = "\r\x1b[K"; // back to the line's start, clear it
    expect(
      text.split(`${rewrite}[`).filter((p) => /^ +[\d.]+ s\] playing stream 0/.test(p)).length,
    ).toBeGreaterThan(10);
    // What a terminal shows: each line as left by its last rewrite.
    const screen = text.split("\n").map((l) => {
      const at = l.lastIndexOf(rewrite);
      return at < 0 ? l : l.slice(at + rewrite.length);
    });
    expect(screen.filter((l) => l.includes("playing stream 0"))).toEqual([
      expect.stringMatching(/^\[ +[\d.]+ s\] playing stream 0: ([\d.]+) s of \1 s \(100%\)$/),
    ]);
    const at = screen.findIndex((l) => l.includes("playing stream 0"));
    expect(screen[at - 1]).toMatch(/control PCM_START stream 0 +-> OK$/);
    expect(screen[at + 1]).toMatch(/stream 0 stop \(now stopped\)$/);
    expect(text).toMatch(/audio: null/);
  });

  it("--virtual with no --output writes the WAV file to the working directory", async () => {
    const cwd = join(dir, "cwd");
    const c = capture();
    expect(await runDemo(["--virtual"], { ...c.io, cwd })).toBe(0);
    expect(c.text()).toMatch(/writing WAV files to .*cwd/);
    expect(existsSync(join(cwd, DEMO_WAV))).toBe(true);
  });

  it("a trace the device no longer answers the same way: the divergence, exit 1", async () => {
    const lines = readFileSync(DEMO_TRACE, "utf8").trimEnd().split("\n");
    // The PCM_INFO answer, one byte changed.
    const i = lines.findIndex((l) => l.includes('"ev":"used","q":0') && l.includes('"len":68'));
    lines[i] = lines[i]!.replace('"hex":"00800000', '"hex":"00800001');
    const bad = join(dir, "changed.jsonl");
    writeFileSync(bad, lines.join("\n") + "\n");
    const c = capture();
    expect(await runDemo(["--virtual", "--output", "null", "--trace", bad], c.io)).toBe(1);
    expect(c.text()).toMatch(/replay: replay diverged \(bytes\) at control queue, message 1, trace line \d+/);
  });

  it("arguments: --help, unknown options, a missing trace", async () => {
    const help = capture();
    expect(await runDemo(["--help"], help.io)).toBe(0);
    expect(help.text()).toBe(DEMO_HELP);
    const bad = capture();
    expect(await runDemo(["--packed"], bad.io)).toBe(2);
    expect(bad.err).toEqual(['virtio-snd demo: unknown option "--packed" (see virtio-snd demo --help)\n']);
    const none = capture();
    expect(await runDemo(["--trace"], none.io)).toBe(2);
    expect(none.err).toEqual(["virtio-snd demo: --trace needs a value (see virtio-snd demo --help)\n"]);
    const flag = capture();
    expect(await runDemo(["--virtual=yes"], flag.io)).toBe(2);
    expect(flag.err.join("")).toMatch(/--virtual takes no value/);
    const stray = capture();
    expect(await runDemo(["tune"], stray.io)).toBe(2);
    expect(stray.err.join("")).toMatch(/unexpected argument "tune"/);
    const missing = capture();
    expect(await runDemo(["--virtual", "--trace", join(dir, "nope.jsonl")], missing.io)).toBe(1);
    expect(missing.err.join("")).toMatch(/cannot read the trace .*nope\.jsonl/);
  });

  it("is the main command's demo", async () => {
    const write = process.stdout.write;
    let printed = "";
    process.stdout.write = ((s: string) => {
      printed += s;
      return true;
    }) as typeof process.stdout.write;
    try {
      expect(await main(["demo", "--help"])).toBe(0);
      expect(await main(["--help"])).toBe(0);
    } finally {
      process.stdout.write = write;
    }
    expect(printed).toContain(DEMO_HELP);
    expect(printed).toMatch(/virtio-snd demo \[--output SINK\] \[--virtual\]/);
  });
});
