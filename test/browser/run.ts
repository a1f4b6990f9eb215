/**
 * `npm run test:browser`: the card on a WebAudioBackend in real headless
 * Chromium (Debian's `chromium`, driven by playwright-core), with a real Linux
 * guest in v86 inside the page. Checks, one line each:
 * - every aplay session (S16 44.1 kHz stereo, U8 8 kHz mono, S32 96 kHz stereo,
 *   each twice; one of them with the AudioContext suspended and resumed midway)
 *   renders, in the worklet's output, exactly the guest's samples converted to
 *   float32 at the context's 44.1 kHz: none lost, none repeated, in order;
 * - no underrun while a stream runs (counted by the worklet);
 * - a WAV given to Chromium as the fake microphone reaches the guest's arecord.
 *
 * Skips (exit 0, saying why) without Chromium or the v86 guest, unless
 * VSND_REQUIRE_GUESTS=1, VSND_REQUIRE_BROWSER=1 or VSND_REQUIRE_ALL=1: then that is a failure.
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { convertBuffer } from "../../src/audio/convert.js";
import { VIRTIO_SND_PCM_FMT_FLOAT, VIRTIO_SND_PCM_FMT_S16 } from "../../src/spec/constants.js";
import { REPO, bundlePage, startPageServer } from "../../scripts/browser/server.js";
import { type Sample, noise, wavFile, sample } from "../guest-helpers/cli-daemon.js";
import { makePayload } from "../guest-helpers/payload.js";
import { parseConsole } from "../guest-helpers/qemu.js";
import { ensureV86Guest, findV86Guest } from "../guest-helpers/v86.js";
import type { PageRunResult } from "./page.js";

const required = ["VSND_REQUIRE_GUESTS", "VSND_REQUIRE_BROWSER", "VSND_REQUIRE_ALL"].some(
  (v) => process.env[v] === "1",
);
/**
 * The AudioContext's rate: Chromium's fake microphone runs at 44.1 kHz, and at
 * the same rate nothing between the WAV file and the worklet resamples.
 */
const RATE = 44_100;

let failures = 0;
const check = (ok: boolean, line: string): void => {
  console.log(`${ok ? "ok  " : "FAIL"} browser: ${line}`);
  if (!ok) failures++;
};

/** Debian's chromium, or VSND_CHROMIUM. */
function findChromium(): string | null {
  const given = process.env["VSND_CHROMIUM"];
  if (given) return given;
  for (const name of ["chromium", "chromium-browser"]) {
    try {
      return execFileSync("sh", ["-c", `command -v ${name}`], { encoding: "utf8" }).trim() || null;
    } catch {
      // not this one
    }
  }
  return null;
}

function skip(reason: string): never {
  if (required) {
    console.log(`FAIL browser: required (VSND_REQUIRE_GUESTS/BROWSER/ALL) but ${reason}`);
    process.exit(1);
  }
  console.log(`browser tests skipped: ${reason}`);
  process.exit(0);
}

const SAMPLES: readonly Sample[] = [
  sample("s16", 2, 44_100, 0.8),
  sample("u8", 1, 8_000, 0.6),
  sample("s32", 2, 96_000, 0.3),
];
/** Output sessions in START order: each format twice; the context is suspended during the fourth. */
const ORDER = SAMPLES.flatMap((s) => [s, s]);
const SUSPEND_DURING = [3];
/**
 * The backend's queue: v86 runs the guest on the page's main thread, which
 * stalls for a long time when the machine is loaded (a load of 12 on 2 cores
 * here), and the queue must outlast those stalls.
 */
const BUFFER_MS = 400;
const REC_FRAMES = 24_000;
const MIC_SECONDS = 2;

/** The guest's samples as the worklet should render them: float32 at the context's rate, at most two channels. */
function expectedFloats(s: Sample, data: Uint8Array): Float32Array {
  const channels = Math.min(s.channels, 2);
  if (s.format === VIRTIO_SND_PCM_FMT_S16 && s.rate === RATE) {
    // Independently of the converter: v / 32768.
    const v = new Int16Array(data.buffer, data.byteOffset, data.length / 2);
    return Float32Array.from(v, (x) => x / 32768);
  }
  const bytes = convertBuffer(data, s, { format: VIRTIO_SND_PCM_FMT_FLOAT, channels, rate: RATE });
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
}

/**
 * A session's frames without the silent ones: the silence the worklet played
 * (before the stream's first frame, after its last, and whenever its ring was
 * empty, even for part of a render quantum). The guest's noise never has a
 * frame of exact zeros on every channel (resampled, not one in 2^32).
 */
function withoutSilence(frames: Float32Array, channels: number): { frames: Float32Array; removed: number } {
  const n = frames.length / channels;
  const out = new Float32Array(frames.length);
  let o = 0;
  for (let f = 0; f < n; f++) {
    let silent = true;
    for (let c = 0; c < channels; c++) silent &&= frames[f * channels + c] === 0;
    if (silent) continue;
    for (let c = 0; c < channels; c++) out[o++] = frames[f * channels + c]!;
  }
  return { frames: out.subarray(0, o), removed: n - o / channels };
}

/** Compares what a session rendered (stereo) with the expected frames; "" when they are all there, in order. */
function compare(rendered: Float32Array, expected: Float32Array, channels: number): string {
  const frames = expected.length / channels;
  const renderedFrames = rendered.length / 2;
  if (renderedFrames < frames) return `rendered ${renderedFrames} frames, expected at least ${frames}`;
  for (let f = 0; f < frames; f++) {
    for (let c = 0; c < 2; c++) {
      const want = c < channels ? expected[f * channels + c]! : 0;
      if (!Object.is(rendered[f * 2 + c], want))
        return `frame ${f} channel ${c}: rendered ${rendered[f * 2 + c]}, expected ${want}`;
    }
  }
  return "";
}

async function main(): Promise<void> {
  const executablePath = findChromium();
  if (executablePath === null) skip("no chromium (apt-get install chromium, or set VSND_CHROMIUM)");
  const probe = findV86Guest();
  if (!probe.ok) skip(probe.reason);
  const guest = await ensureV86Guest(undefined, { log: (l) => console.log(l) });

  const dir = mkdtempSync(join(tmpdir(), "vsnd-browser-"));
  const inputs = new Map<string, Uint8Array>();
  const files: Record<string, Uint8Array> = {};
  SAMPLES.forEach((s, i) => {
    const data = noise(s, 0x0b40_5e00 + i);
    inputs.set(s.name, data);
    files[`${s.name}.wav`] = wavFile(join(dir, `${s.name}.wav`), s, data);
  });
  const mic = { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate: RATE, seconds: MIC_SECONDS, width: 2 };
  const micData = noise(mic, 0x31c);
  const micWav = join(dir, "mic.wav");
  wavFile(micWav, mic, micData);

  const script = [
    'marker cards "$(head -n1 /proc/asound/cards)"',
    // A one-second buffer holds each file whole: the guest, slowed down by a loaded host, cannot
    // run dry and recover (an xrun drops what its buffer held), so every frame must reach the worklet.
    // The second's pause lets what the worklet still holds after the drain play out before the
    // next session starts (they would mix, and the tap could not tell them apart).
    ...ORDER.map(
      (s, i) => `step play_${i} aplay -q -D hw:0,0 --buffer-time=1000000 /payload/${s.name}.wav; sleep 1`,
    ),
    `step arecord arecord -q -D hw:0,0 -f S16_LE -c 2 -r ${RATE} -s ${REC_FRAMES} -t raw /tmp/rec.raw`,
    "emit_file rec.raw /tmp/rec.raw",
  ];
  const initrd = Buffer.concat([
    readFileSync(guest.initrd),
    makePayload({ script: script.join("\n"), files }),
  ]);
  const server = await startPageServer({
    html: '<!doctype html><meta charset="utf-8"><title>virtio-snd browser test</title><body><script type="module" src="/page.js"></script></body>',
    script: await bundlePage(join(REPO, "test/browser/page.ts")),
    files: { "/tap-worklet.js": join(REPO, "test/browser/tap-worklet.js") },
    guest: { bios: readFileSync(guest.bios), bzImage: readFileSync(guest.bzImage), initrd },
  });

  const browser = await chromium.launch({
    executablePath: executablePath!,
    headless: true,
    args: [
      "--no-sandbox", // as root in CI
      "--autoplay-policy=no-user-gesture-required",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${micWav}`,
    ],
  });
  let result: PageRunResult;
  try {
    const page = await browser.newPage();
    page.on("pageerror", (e) => console.log(`page error: ${e.message}`));
    page.on("console", (m) => {
      if (m.type() === "error") console.log(`page console: ${m.text()}`);
    });
    await page.goto(server.url);
    await page.waitForFunction(() => document.body.dataset["ready"] === "1", undefined, { timeout: 30_000 });
    const version = browser.version();
    check(
      await page.evaluate(() => crossOriginIsolated),
      `Chromium ${version} headless, page cross-origin isolated`,
    );
    result = await page.evaluate((o) => window.vsndTest.run(o), {
      suspendDuring: SUSPEND_DURING,
      tapSeconds: 60,
      timeoutMs: 240_000,
      sampleRate: RATE,
      bufferMs: BUFFER_MS,
    });
  } finally {
    await browser.close();
    await server.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const parsed = parseConsole(result.console.join("\n"));
  const m = parsed.markers;
  const context = () => `\n--- guest console ---\n${result.console.join("\n")}`;
  check(
    !result.timedOut && m["done"] !== undefined,
    `the guest ran its payload in v86 in the page (${(result.bootMs / 1000).toFixed(1)} s to /init)${result.timedOut ? context() : ""}`,
  );
  check(/VirtIO SoundCard/.test(m["cards"] ?? ""), `the guest found the card: ${m["cards"] ?? "(none)"}`);

  // Playback: what the tap recorded from each session's START to the next.
  const segments = result.segments;
  check(
    segments.length === ORDER.length,
    `${segments.length} output sessions started, ${ORDER.length} played`,
  );
  let sent = 0;
  let rendered = 0;
  let identical = true;
  ORDER.forEach((s, i) => {
    const status = m[`play_${i}`];
    const channels = Math.min(s.channels, 2);
    const expected = withoutSilence(expectedFloats(s, inputs.get(s.name)!), channels).frames;
    const frames = expected.length / channels;
    const seg = segments[i];
    const raw =
      seg === undefined
        ? new Float32Array(0)
        : new Float32Array(Buffer.from(seg.base64, "base64").buffer.slice(0));
    const got = withoutSilence(raw, 2);
    const diff = status !== "0" ? `aplay exited ${status ?? "?"}` : compare(got.frames, expected, channels);
    const suspended = result.suspensions.find((x) => x.session === i);
    const note =
      (suspended ? `, context suspended ${suspended.suspendedMs.toFixed(0)} ms midway` : "") +
      ` (${got.removed} frames of silence around and between)`;
    sent += frames;
    if (diff === "") rendered += frames;
    else identical = false;
    check(
      diff === "",
      `aplay ${s.alsa} ${s.channels} ch ${s.rate} Hz #${(i % 2) + 1}: ${frames} frames at ${RATE} Hz sent, ` +
        `${diff === "" ? `${frames} rendered, identical` : diff}${note}`,
    );
  });
  for (const i of SUSPEND_DURING)
    check(
      result.suspensions.some((x) => x.session === i),
      `the context was suspended and resumed during session ${i + 1}`,
    );

  // Underruns: the worklet counts silence it played while the stream ran and the guest had data.
  const outputs = result.stats.filter((s) => s.direction === "output");
  const underruns = outputs.reduce((a, s) => a + s.underruns, 0);
  const underrunFrames = outputs.reduce((a, s) => a + s.underrunFrames, 0);
  const starved = outputs.reduce((a, s) => a + s.starvedFrames, 0);
  check(
    outputs.length === ORDER.length && underruns === 0,
    `${underruns} underruns (${underrunFrames} frames) in ${outputs.length} output sessions; ` +
      `${starved} frames of silence while the guest had nothing queued (its drain at the end)`,
  );
  const xruns = result.events.filter((e) => e.type === "xrun" || e.type === "error" || e.type === "dropped");
  check(
    xruns.every((e) => e.type === "xrun"),
    `no stream errors or dropped messages (${xruns.length} xrun events: the guest draining its last period)`,
  );

  // Capture: arecord's frames are the microphone file's, from wherever Chromium's loop was.
  const rec = parsed.files["rec.raw"];
  check(
    m["arecord"] === "0" && rec !== undefined,
    `arecord exited ${m["arecord"] ?? "?"}, ${rec?.length ?? 0} bytes back`,
  );
  console.log(`browser: microphone track ${result.micSettings}`);
  if (rec !== undefined) check(...micMatch(rec, micData));

  const q = [...result.queuedSamples].sort((a, b) => a - b);
  const median = q[q.length >> 1] ?? 0;
  console.log(
    `browser: ring latency ${((median / result.sampleRate) * 1000).toFixed(1)} ms median ` +
      `(${q[0] ?? 0}..${q[q.length - 1] ?? 0} frames queued, ${q.length} samples); ` +
      `context baseLatency ${(result.baseLatency * 1000).toFixed(1)} ms, outputLatency ${(result.outputLatency * 1000).toFixed(1)} ms`,
  );
  console.log(
    `browser: ${sent} frames sent, ${rendered} frames rendered, ${identical && rendered === sent ? "identical" : "DIFFERENT"}`,
  );
  if (failures > 0) {
    console.log(`browser: ${failures} checks failed`);
    process.exit(1);
  }
}

/**
 * A microphone sample as the guest records it: Chromium turns a 16-bit sample
 * into float32 as v / 32767 when positive and v / 32768 when negative (so
 * positive samples of 16384 and up come back one higher), then the card's
 * converter rounds the float to 16 bits.
 */
function throughChromium(v: number): number {
  if (v < 0) return v;
  return Math.min(32767, Math.floor(Math.fround(v * Math.fround(1 / 32767)) * 32768 + 0.5));
}

/**
 * Where the recording sits in the looped microphone file, and whether it
 * matches. The alignment is found from the middle of the recording: Chromium
 * fades its capture in, so the first milliseconds are not the file's samples.
 */
function micMatch(rec: Uint8Array, mic: Uint8Array): [boolean, string] {
  const r = new Int16Array(rec.buffer.slice(rec.byteOffset, rec.byteOffset + rec.length));
  const w = new Int16Array(mic.buffer.slice(mic.byteOffset, mic.byteOffset + mic.length));
  const wFrames = w.length / 2;
  const rFrames = r.length / 2;
  const at = rFrames >> 1;
  const same = (j: number, off: number) => {
    const k = ((((off + j - at) % wFrames) + wFrames) % wFrames) * 2;
    return r[j * 2] === throughChromium(w[k]!) && r[j * 2 + 1] === throughChromium(w[k + 1]!);
  };
  for (let off = 0; off < wFrames; off++) {
    let ok = true;
    for (let j = at; j < at + 64 && ok; j++) ok = same(j, off);
    if (!ok) continue;
    let from = at;
    while (from > 0 && same(from - 1, off)) from--;
    let to = at;
    while (to < rFrames && same(to, off)) to++;
    return [
      to === rFrames && from < RATE / 10,
      `arecord from the fake microphone: frames ${from}..${to} of ${rFrames} are the WAV's ` +
        `(from its frame ${(((off - at + from) % wFrames) + wFrames) % wFrames}, looped) exactly as Chromium ` +
        `hands them to Web Audio; the first ${from} are Chromium's fade-in`,
    ];
  }
  return [false, `arecord's ${rFrames} frames are not the microphone file's`];
}

main().catch((err) => {
  console.log(`FAIL browser: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  process.exit(1);
});
