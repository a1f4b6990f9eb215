/**
 * Regenerates the trace corpus: each scenario boots the real Linux test guest
 * (test/guest-helpers/qemu.ts) under QEMU with -device vhost-user-snd-pci,
 * connected to an in-process VhostUserDaemon whose device records the session
 * with a TraceRecorder, runs aplay/arecord in it, and writes
 * test/traces/<scenario>.jsonl (the demo's trace: traces/demo-tune.jsonl,
 * shipped with the package for `npm start`). The header note names the
 * scenario, the guest kernel, alsa-utils and QEMU.
 *
 *   npx tsx scripts/record-corpus.ts                 every scenario
 *   npx tsx scripts/record-corpus.ts probe aplay-u8  only these (names or prefixes)
 *   npx tsx scripts/record-corpus.ts --list          the scenarios
 *   npx tsx scripts/record-corpus.ts --out DIR       write every trace to DIR instead
 *
 * A trace is written only when the guest's steps succeeded, the daemon logged
 * no warning, the device played the clip's bytes, the scenario's own check
 * passed (some are recorded again until it does) and the trace replays
 * without divergence; otherwise the reason is printed and the work folder
 * (with the trace) is kept.
 *
 * Needs QEMU >= 10 with vhost-user-snd-pci, the native addon, and the guest
 * (built on first use by scripts/guest/build-guest.sh). Each boot takes 5-15 s
 * under TCG.
 *
 * Reproducible inputs: the clips the guest plays are generated here, and the
 * device captures a 1 kHz tone (ToneSource), so a new recording differs only
 * in timing. Played audio goes to a MemoryBackend and is checked against the
 * clip. TX audio is kept as SHA-256 except where the bytes are the point
 * (aplay-u8-8k-mono, and demo-tune, which the demo plays).
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, statSync } from "node:fs";
import { readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import type { AudioBackend, InputSink, OutputSource, Voice } from "../src/audio/backend.js";
import { RealTimeClock } from "../src/audio/clock.js";
import { StreamConverter } from "../src/audio/convert.js";
import { MemoryBackend } from "../src/audio/memory-backend.js";
import { openCaptureVoice } from "../src/audio/paced-input-voice.js";
import { type PcmParams, frameBytes } from "../src/audio/pcm-params.js";
import { ToneSource } from "../src/audio/sources.js";
import { TraceFileWriter, readTraceFile } from "../src/node/trace-file.js";
import { WavWriter } from "../src/node/wav.js";
import {
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_U8,
  VIRTIO_SND_VQ_EVENT,
} from "../src/spec/constants.js";
import type { Trace } from "../src/trace/format.js";
import { TraceRecorder } from "../src/trace/recorder.js";
import { replayTrace } from "../src/trace/replayer.js";
import type { LogEntry } from "../src/vhost-user/backend.js";
import { VhostUserDaemon } from "../src/vhost-user/daemon.js";
import { nativeAvailable } from "../src/vhost-user/native.js";
import { type BootResult, bootGuest, ensureGuest, findQemu } from "../test/guest-helpers/qemu.js";

const REPO = resolve(import.meta.dirname, "..");

// ---- audio clips ----------------------------------------------------------------------

interface ClipSpec {
  readonly format: number;
  readonly rate: number;
  readonly channels: number;
}

/** A WAV file's bytes holding `pcm` (already in spec's format). */
function wavBytes(dir: string, name: string, spec: ClipSpec, pcm: Uint8Array): Uint8Array {
  const path = join(dir, name);
  const w = new WavWriter(path, spec);
  w.write(pcm);
  w.close();
  return new Uint8Array(readFileSync(path));
}

/** `seconds` of a sine tone at `hz` in any format (one ToneSource reader, level 0.4). */
function tonePcm(spec: ClipSpec, seconds: number, hz: number): Uint8Array {
  const out = new Uint8Array(Math.round(spec.rate * seconds) * frameBytes(spec.format, spec.channels));
  new ToneSource({ frequency: hz, level: 0.4 }).open(spec).fill(out, 0, out.length);
  return out;
}

/**
 * A short tune for the demo: a C-major arpeggio up and down and a final chord,
 * soft attacks and releases, the notes of the arpeggio a little left and right
 * in turn. S16 stereo at `rate`.
 */
function tunePcm(rate: number): Uint8Array {
  // [start beat, length in beats, frequencies]
  const beat = 0.25;
  const C4 = 261.63,
    E4 = 329.63,
    G4 = 392.0,
    C5 = 523.25,
    E5 = 659.25,
    G5 = 783.99,
    C6 = 1046.5;
  const notes: [number, number, number[]][] = [
    [0, 1, [C4]],
    [1, 1, [E4]],
    [2, 1, [G4]],
    [3, 1, [C5]],
    [4, 1, [E5]],
    [5, 1, [G5]],
    [6, 1, [C6]],
    [7, 1, [G5]],
    [8, 1, [E5]],
    [9, 1, [C5]],
    [10, 4, [C4, E4, G4, C5]],
  ];
  const seconds = 14 * beat;
  const frames = Math.round(seconds * rate);
  const f64 = new Float64Array(frames * 2);
  notes.forEach(([start, length, freqs], i) => {
    const from = Math.round(start * beat * rate);
    const n = Math.round(length * beat * rate);
    const pan = freqs.length > 1 ? 0 : i % 2 === 0 ? 0.2 : -0.2;
    for (let k = 0; k < n && from + k < frames; k++) {
      const t = k / rate;
      const dur = n / rate;
      // 10 ms attack, exponential decay, 30 ms release to zero at the note's end.
      const env = Math.min(1, t / 0.01) * Math.exp(-2.2 * t) * Math.min(1, (dur - t) / 0.03);
      let v = 0;
      for (const f of freqs) v += Math.sin(2 * Math.PI * f * t) + 0.25 * Math.sin(4 * Math.PI * f * t);
      v *= (0.32 * env) / freqs.length;
      f64[2 * (from + k)]! += v * (1 - pan);
      f64[2 * (from + k) + 1]! += v * (1 + pan);
    }
  });
  const conv = new StreamConverter(
    { format: VIRTIO_SND_PCM_FMT_FLOAT64, channels: 2, rate },
    { format: VIRTIO_SND_PCM_FMT_S16, channels: 2, rate },
  );
  const a = conv.push(new Uint8Array(f64.buffer));
  const b = conv.flush();
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

// ---- scenarios ------------------------------------------------------------------------

interface Scenario {
  readonly name: string;
  /** What the trace shows, for its header note. */
  readonly description: string;
  /** Offer (and have QEMU use) packed rings. */
  readonly packed?: boolean;
  /** TX audio in the trace: "hash" (default) or the full bytes. */
  readonly txAudio?: "full" | "hash";
  /** The guest's run.sh (after the probe). */
  readonly script: string[];
  /** Payload files: name -> [spec, pcm] clips as WAV. */
  readonly clips?: Record<string, [ClipSpec, Uint8Array]>;
  /** Steps (marker names) that must exit 0. */
  readonly steps: string[];
  /** What the trace must show, else a reason to record again. */
  readonly check?: (trace: Trace) => string | null;
  /** Recordings to try until `check` passes (default 1). */
  readonly attempts?: number;
  /** The folder, from the repository's root (default test/traces). */
  readonly dir?: string;
}

const S16_48K_2 = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000, channels: 2 };
const U8_8K_1 = { format: VIRTIO_SND_PCM_FMT_U8, rate: 8000, channels: 1 };
const S32_96K_6 = { format: VIRTIO_SND_PCM_FMT_S32, rate: 96000, channels: 6 };
const FLOAT_44K_2 = { format: VIRTIO_SND_PCM_FMT_FLOAT, rate: 44100, channels: 2 };
const TUNE_RATE = 22050;
const TUNE_SPEC = { format: VIRTIO_SND_PCM_FMT_S16, rate: TUNE_RATE, channels: 2 };

const APLAY = "aplay -D hw:0,0";
const ARECORD = "arecord -D hw:0,0";

const SCENARIOS: Scenario[] = [
  {
    name: "probe",
    description:
      "the driver probes the device (queries of jacks, streams and channel maps); aplay -l and arecord -l",
    script: ["step aplay_l aplay -l", "step arecord_l arecord -l"],
    steps: ["aplay_l", "arecord_l"],
  },
  {
    name: "aplay-s16-48k-stereo",
    description: "aplay of a 0.3 s 440 Hz tone, S16_LE, 48000 Hz, 2 channels",
    script: [`step aplay ${APLAY} /payload/clip.wav`],
    clips: { "clip.wav": [S16_48K_2, tonePcm(S16_48K_2, 0.3, 440)] },
    steps: ["aplay"],
  },
  {
    name: "aplay-u8-8k-mono",
    description: "aplay of a 0.5 s 440 Hz tone, U8, 8000 Hz, 1 channel (TX audio in full)",
    txAudio: "full",
    script: [`step aplay ${APLAY} /payload/clip.wav`],
    clips: { "clip.wav": [U8_8K_1, tonePcm(U8_8K_1, 0.5, 440)] },
    steps: ["aplay"],
  },
  {
    name: "aplay-s32-96k-6ch",
    description: "aplay of a 0.2 s 440 Hz tone, S32_LE, 96000 Hz, 6 channels",
    script: [`step aplay ${APLAY} /payload/clip.wav`],
    clips: { "clip.wav": [S32_96K_6, tonePcm(S32_96K_6, 0.2, 440)] },
    steps: ["aplay"],
  },
  {
    name: "aplay-float-44k-stereo",
    description: "aplay of a 0.3 s 440 Hz tone, FLOAT_LE, 44100 Hz, 2 channels",
    script: [`step aplay ${APLAY} /payload/clip.wav`],
    clips: { "clip.wav": [FLOAT_44K_2, tonePcm(FLOAT_44K_2, 0.3, 440)] },
    steps: ["aplay"],
  },
  {
    name: "arecord-s16-48k-stereo",
    description: "arecord of 0.25 s, S16_LE, 48000 Hz, 2 channels (the device captures a 1 kHz tone)",
    script: [`step arecord ${ARECORD} -f S16_LE -c 2 -r 48000 -s 12000 -t raw /tmp/rec.raw`],
    steps: ["arecord"],
  },
  {
    name: "arecord-interrupted",
    description:
      "arecord of S16_LE 48000 Hz mono for up to 2 s, interrupted with SIGINT after 0.3 s (the device captures a 1 kHz tone)",
    script: [
      `${ARECORD} -f S16_LE -c 1 -r 48000 -s 96000 -t raw /tmp/rec.raw & p=$!`,
      "sleep 0.3",
      "kill -INT $p",
      "wait $p; marker arecord $?",
    ],
    steps: [],
  },
  {
    name: "aplay-small-periods",
    description:
      "aplay of a 0.4 s tone, S16_LE 48000 Hz stereo, with 5 ms periods and a 20 ms buffer (many small messages)",
    script: [`step aplay ${APLAY} --period-size=240 --buffer-size=960 /payload/clip.wav`],
    clips: { "clip.wav": [S16_48K_2, tonePcm(S16_48K_2, 0.4, 550)] },
    steps: ["aplay"],
  },
  {
    name: "duplex",
    description: "aplay (0.4 s, S16_LE 48000 Hz stereo) and arecord (0.3 s, S16_LE 48000 Hz mono) at once",
    script: [
      `${APLAY} /payload/clip.wav & p=$!`,
      `${ARECORD} -f S16_LE -c 1 -r 48000 -s 14400 -t raw /tmp/rec.raw & r=$!`,
      "wait $p; marker aplay $?",
      "wait $r; marker arecord $?",
    ],
    clips: { "clip.wav": [S16_48K_2, tonePcm(S16_48K_2, 0.4, 660)] },
    steps: ["aplay", "arecord"],
  },
  {
    name: "aplay-interrupted",
    description: "aplay of a 2 s clip (S16_LE 48000 Hz stereo) interrupted with SIGINT after 0.3 s",
    script: [`${APLAY} /payload/clip.wav & p=$!`, "sleep 0.3", "kill -INT $p", "wait $p; marker aplay $?"],
    clips: { "clip.wav": [S16_48K_2, tonePcm(S16_48K_2, 2, 440)] },
    steps: [],
  },
  {
    name: "aplay-repeated",
    description: "four short aplays in a row (0.1 s each, S16_LE 48000 Hz stereo): open and close repeated",
    script: [1, 2, 3, 4].map((i) => `step aplay${i} ${APLAY} /payload/clip${i}.wav`),
    clips: Object.fromEntries(
      [1, 2, 3, 4].map((i) => [`clip${i}.wav`, [S16_48K_2, tonePcm(S16_48K_2, 0.1, 220 * (i + 1))]]),
    ) as Record<string, [ClipSpec, Uint8Array]>,
    steps: ["aplay1", "aplay2", "aplay3", "aplay4"],
  },
  {
    name: "aplay-xrun",
    description:
      "aplay with 1.3 ms periods and a 4 ms buffer (S16_LE 48000 Hz stereo, 0.3 s) while two busy loops " +
      "starve the guest's CPU: underruns, XRUN events and the driver's recovery (STOP, RELEASE, PREPARE, " +
      "START); aplay may give up with an I/O error",
    script: [
      "(while :; do :; done) & h1=$!",
      "(while :; do :; done) & h2=$!",
      `${APLAY} --period-size=64 --buffer-size=192 /payload/clip.wav; marker aplay $?`,
      "kill $h1 $h2",
    ],
    clips: { "clip.wav": [S16_48K_2, tonePcm(S16_48K_2, 0.3, 550)] },
    steps: [],
    check: (trace) =>
      trace.events.some(
        (e) => e.ev === "used" && e.q === VIRTIO_SND_VQ_EVENT && e.data[0] === 0x01 && e.data[1] === 0x11,
      )
        ? null
        : "no XRUN event: the guest kept up this time",
    attempts: 4,
  },
  {
    name: "packed",
    description:
      "packed rings (QEMU packed=on): aplay of 0.3 s (S16_LE 48000 Hz stereo), then arecord of 0.2 s (S16_LE 48000 Hz stereo)",
    packed: true,
    script: [
      `step aplay ${APLAY} /payload/clip.wav`,
      `step arecord ${ARECORD} -f S16_LE -c 2 -r 48000 -s 9600 -t raw /tmp/rec.raw`,
    ],
    clips: { "clip.wav": [S16_48K_2, tonePcm(S16_48K_2, 0.3, 440)] },
    steps: ["aplay", "arecord"],
  },
  {
    name: "demo-tune",
    description: `aplay of a 3.5 s tune (a C-major arpeggio and chord), S16_LE, ${TUNE_RATE} Hz, 2 channels, TX audio in full: the npm start demo`,
    txAudio: "full",
    script: [`step aplay ${APLAY} /payload/tune.wav`],
    clips: { "tune.wav": [TUNE_SPEC, tunePcm(TUNE_RATE)] },
    steps: ["aplay"],
    // Package data: `npm start` (virtio-snd demo) replays it.
    dir: "traces",
  },
];

// ---- recording ------------------------------------------------------------------------

/** Outputs into memory (kept, to check), inputs from a 1 kHz tone; both paced by `clock`. */
class CorpusBackend implements AudioBackend {
  readonly name = "corpus";
  readonly memory: MemoryBackend;
  private readonly tone = new ToneSource({ frequency: 1000, level: 0.5 });

  constructor(private readonly clock: RealTimeClock) {
    this.memory = new MemoryBackend({ clock });
  }

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    return this.memory.openOutput(streamId, params, source);
  }

  openInput(_streamId: number, params: PcmParams, sink: InputSink): Voice {
    return openCaptureVoice(this.tone, this.clock, params, sink);
  }
}

function guestVersions(versions: string): { kernel: string; alsa: string } {
  const get = (key: string): string =>
    new RegExp(`^${key.replace(/[.+]/g, "\\$&")}=(.*)$`, "m").exec(versions)?.[1]?.trim() ?? "unknown";
  return { kernel: get("kernel"), alsa: get("alsa-utils") };
}

interface Outcome {
  readonly name: string;
  readonly ok: boolean;
  /** Worth recording again (the scenario's check failed). */
  readonly retry?: boolean;
  readonly path?: string;
  readonly bytes?: number;
  readonly detail: string;
}

async function record(
  s: Scenario,
  env: {
    kernel: string;
    initrd: string;
    versions: string;
    qemu: string;
    outDir: string | null;
    work: string;
  },
): Promise<Outcome> {
  const { kernel: kernelVersion, alsa } = guestVersions(env.versions);
  const ring = s.packed ? "packed" : "split";
  const note =
    `scenario ${s.name}: ${s.description}. Guest: Linux ${kernelVersion} (virtio_snd), alsa-utils ${alsa}; ` +
    `QEMU ${env.qemu} vhost-user-snd-pci (${ring} rings${s.packed ? ", packed=on" : ""}) to the virtio-snd ` +
    `vhost-user daemon; TX audio ${s.txAudio === "full" ? "in full" : "as SHA-256"}; ` +
    `recorded by scripts/record-corpus.ts`;
  const tmpTrace = join(env.work, `${s.name}.jsonl`);
  const socket = join(env.work, `${s.name}.sock`);
  const clock = new RealTimeClock();
  const backend = new CorpusBackend(clock);
  const writer = new TraceFileWriter(tmpTrace);
  const recorder = new TraceRecorder({ sink: writer, txAudio: s.txAudio ?? "hash", note });
  const log: LogEntry[] = [];
  const daemon = new VhostUserDaemon({
    socketPath: socket,
    backend,
    clock,
    packed: s.packed ?? false,
    recorder,
  });
  daemon.on("log", (e) => log.push(e));
  const disconnected = new Promise<void>((r) => daemon.once("disconnect", () => r()));
  const files: Record<string, Uint8Array> = {};
  for (const [name, [spec, pcm]] of Object.entries(s.clips ?? {}))
    files[name] = wavBytes(env.work, name, spec, pcm);
  let boot: BootResult;
  try {
    boot = await bootGuest({
      kernel: env.kernel,
      initrd: env.initrd,
      sharedMemory: true,
      memory: 256,
      devices: [
        "-chardev",
        `socket,id=vsnd,path=${socket}`,
        "-device",
        `vhost-user-snd-pci,chardev=vsnd${s.packed ? ",packed=on" : ""}`,
      ],
      payload: { script: s.script.join("\n"), files },
      timeoutMs: 150_000,
      payloadTimeoutMs: 60_000,
      ...(process.env["VSND_GUEST_DEBUG"] ? { onConsole: (t: string) => process.stdout.write(t) } : {}),
    });
    await Promise.race([disconnected, new Promise((r) => setTimeout(r, 5000))]);
  } finally {
    daemon.close();
    recorder.close();
    writer.close();
  }
  const problems: string[] = [];
  if (boot.timedOut) problems.push("QEMU timed out");
  if (boot.markers["snd"] !== "ready") problems.push(`snd=${boot.markers["snd"] ?? "?"}`);
  if (boot.markers["kernel"] !== kernelVersion) problems.push(`guest kernel ${boot.markers["kernel"]}`);
  for (const step of s.steps)
    if (boot.markers[step] !== "0") problems.push(`${step} exited ${boot.markers[step] ?? "?"}`);
  for (const e of log)
    if (e.level === "error" || e.level === "warn") problems.push(`daemon ${e.level}: ${e.message}`);
  if (recorder.error !== null) problems.push(`recorder: ${String(recorder.error)}`);
  // What was played must be the clip (the last period may carry ALSA's silence padding).
  const clip = Object.values(s.clips ?? {});
  if (clip.length === 1 && s.steps.includes("aplay")) {
    const pcm = clip[0]![1];
    const played = backend.memory.playbacksOf(0).filter((p) => p.data.length > 0);
    const bytes = played[0]?.data.bytes() ?? new Uint8Array(0);
    if (
      played.length !== 1 ||
      bytes.length < pcm.length ||
      !Buffer.from(bytes.subarray(0, pcm.length)).equals(pcm)
    )
      problems.push(
        `played ${played.map((p) => p.data.length).join("+")} bytes, not the clip's ${pcm.length}`,
      );
  }
  if (problems.length > 0) {
    return {
      name: s.name,
      ok: false,
      detail: `${problems.join("; ")}\n--- console ---\n${boot.console}\n--- stderr ---\n${boot.stderr}`,
    };
  }
  const trace = await readTraceFile(tmpTrace);
  const missing = s.check?.(trace) ?? null;
  if (missing !== null) return { name: s.name, ok: false, retry: true, detail: missing };
  const result = replayTrace(trace);
  if (!result.ok) {
    const kept = join(env.work, `${s.name}.diverged.jsonl`);
    renameSync(tmpTrace, kept);
    return { name: s.name, ok: false, detail: `replay: ${result.message} (trace kept at ${kept})` };
  }
  const outDir = env.outDir ?? join(REPO, s.dir ?? "test/traces");
  mkdirSync(outDir, { recursive: true });
  const dest = join(outDir, `${s.name}.jsonl`);
  renameSync(tmpTrace, dest);
  return {
    name: s.name,
    ok: true,
    path: dest,
    bytes: statSync(dest).size,
    detail: `${trace.events.length} events, ${result.stats.completions} completions; guest ${(boot.durationMs / 1000).toFixed(1)} s`,
  };
}

async function main(argv: string[]): Promise<number> {
  let outDir: string | null = null;
  const wanted: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === "--list") {
      for (const s of SCENARIOS) console.log(`${s.name.padEnd(24)} ${s.description}`);
      return 0;
    }
    if (a === "--out") outDir = resolve(argv[++i] ?? ".");
    else if (a === "-h" || a === "--help") {
      console.log("usage: npx tsx scripts/record-corpus.ts [--list] [--out DIR] [SCENARIO...]");
      return 0;
    } else wanted.push(a);
  }
  const chosen =
    wanted.length === 0 ? SCENARIOS : SCENARIOS.filter((s) => wanted.some((w) => s.name.startsWith(w)));
  if (chosen.length === 0) {
    console.error(`no scenario matches ${wanted.join(", ")} (see --list)`);
    return 2;
  }
  const qemu = findQemu({ minMajor: 10, devices: ["vhost-user-snd-pci"] });
  if (!qemu.ok) {
    console.error(`record-corpus: ${qemu.reason}`);
    return 1;
  }
  const native = nativeAvailable();
  if (!native.ok) {
    console.error(`record-corpus: ${native.reason}`);
    return 1;
  }
  const guest = await ensureGuest(undefined, { log: (l) => console.log(l) });
  const work = mkdtempSync(join(tmpdir(), "vsnd-corpus-"));
  let failed = 0;
  try {
    for (const s of chosen) {
      process.stdout.write(`${s.name}: recording... `);
      let o = await record(s, { ...guest, qemu: qemu.version, outDir, work });
      for (let k = 1; !o.ok && o.retry === true && k < (s.attempts ?? 1); k++) {
        process.stdout.write(`${o.detail}; again... `);
        o = await record(s, { ...guest, qemu: qemu.version, outDir, work });
      }
      if (o.ok) console.log(`${o.bytes} bytes, ${o.detail}`);
      else {
        failed++;
        console.log(`FAILED: ${o.detail}`);
      }
    }
  } finally {
    if (failed === 0) rmSync(work, { recursive: true, force: true });
    else console.log(`(work folder kept: ${work})`);
  }
  return failed === 0 ? 0 : 1;
}

process.exitCode = await main(process.argv.slice(2));
