/**
 * A real Linux guest whose PCM buffer is scattered over physical memory: the
 * command (`node bin/virtio-snd.js vhost-user --socket S --output wav:DIR
 * --record TRACE --record-audio hash`) and one guest under QEMU 10 (TCG).
 *
 * Linux's virtio_snd allocates the PCM buffer with vmalloc at hw_params time
 * and sends each period as one descriptor per physically contiguous run of
 * pages. A 96 kHz, 6-channel S32_LE period is 288,000 B, about 71 pages: when
 * no two of its pages are adjacent, a period is one indirect table of 73
 * readable descriptors, longer than the queue (64). Whether the pages are
 * adjacent depends on the guest's free lists at that moment (in an idle guest
 * it alternates from one playback to the next: freed pages come back in
 * reverse order), so the guest scatters its free memory before each playback:
 *
 * vmalloc takes order-0 pages of the unmovable migrate type, which the page
 * allocator keeps apart from movable ones (per-CPU lists and buddy free lists
 * are per migrate type). tmpfs pages are movable, so holes among them do not
 * reach vmalloc (tried: the buffers stayed contiguous); ramfs pages are
 * unmovable. The payload creates
 * FRAG_FILES one-page files on a ramfs, which take consecutive unmovable
 * pages, then deletes every other one: the free unmovable pages the next
 * allocation gets first are FRAG_FILES / 2 pages, none of them next to
 * another, so every page of the buffer becomes its own descriptor.
 *
 * The guest then plays a second of noise with `aplay -D hw:0,0`, PLAYS times,
 * scattering again before each. Each DIR/stream0-N.wav must hold the input
 * exactly (plus at most one period of aplay's silence), every aplay must exit
 * 0, the guest's dmesg must have no virtio_snd complaint, and the trace must
 * show that each playback really sent TX chains of more than 64 readable
 * descriptors: without that, the test would prove nothing.
 *
 * Skips, saying why, without QEMU >= 10 having vhost-user-snd-pci, or without
 * the native addon. Builds dist/ first when it is missing or older than src/.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseWav } from "../../src/node/wav.js";
import {
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import { type AvailEvent, parseTrace } from "../../src/trace/format.js";
import {
  CliDaemon,
  type Sample,
  buildDistIfStale,
  complaints,
  finished,
  noise,
  playedExactly,
  wavFile,
  vhostUserGuestProblem,
  sample,
  guestDebug,
} from "../guest-helpers/cli-daemon.js";
import { type GuestImage, bootGuest, describeBoot, ensureGuest } from "../guest-helpers/qemu.js";
import { missing } from "../guest-helpers/required-parts.js";

const reason = vhostUserGuestProblem();
if (reason) console.warn(`guest fragmented-buffer test skipped: ${reason}`);
const suite = `virtio-snd vhost-user (the command) with a real guest's scattered PCM buffers${reason ? ` (skipped: ${reason})` : ""}`;

const SAMPLE: Sample = sample("s32", 6, 96_000, 1);
const PLAYS = 4;
/**
 * One-page files made per scattering; half become holes: 600, twice the 282
 * pages of aplay's buffer here (200 holes left a third of it contiguous).
 * 0.4-1 s under TCG.
 */
const FRAG_FILES = 1200;

/** Scatters the guest's free unmovable pages (see the top of this file); marks frag_N "start end" (guest uptime). */
const FRAG_SCRIPT = [
  "mkdir /frag",
  "step ramfs mount -t ramfs ramfs /frag",
  "frag() {",
  "  local t0 n",
  "  t0=$(cut -d' ' -f1 /proc/uptime)",
  "  rm -f /frag/*",
  "  n=0",
  `  while [ $n -lt ${FRAG_FILES} ]; do echo > /frag/$n; n=$((n + 1)); done`,
  "  rm /frag/*[02468] && marker frag_$1 \"$t0 $(cut -d' ' -f1 /proc/uptime)\"",
  "}",
];

interface Playback {
  /** Readable descriptors of each well-formed TX chain. */
  readable: number[];
  /** TX chains the device found malformed. */
  faults: number;
}

/** The TX chains of each playback (a playback begins with its stream's SET_PARAMS). */
function txChainsPerPlayback(traceText: string): {
  ring: string;
  txQueueSize: number;
  playbacks: Playback[];
} {
  const trace = parseTrace(traceText);
  const playbacks: Playback[] = [];
  let txQueueSize = 0;
  for (const e of trace.events) {
    if (e.ev === "queue" && e.q === VIRTIO_SND_VQ_TX) txQueueSize = e.size;
    if (e.ev !== "avail") continue;
    if (e.q === VIRTIO_SND_VQ_CONTROL && isSetParams(e, 0)) playbacks.push({ readable: [], faults: 0 });
    else if (e.q === VIRTIO_SND_VQ_TX) {
      const p = playbacks.at(-1);
      if (p === undefined) throw new Error(`TX chain ${e.seq} before any SET_PARAMS`);
      if (e.fault !== undefined) p.faults++;
      else p.readable.push(e.r.length);
    }
  }
  return { ring: trace.header.device.ring ?? "none", txQueueSize, playbacks };
}

function isSetParams(e: AvailEvent, streamId: number): boolean {
  const first = e.r[0];
  if (first === undefined || !("data" in first) || first.data.length < 8) return false;
  const v = new DataView(first.data.buffer, first.data.byteOffset, first.data.byteLength);
  return v.getUint32(0, true) === VIRTIO_SND_R_PCM_SET_PARAMS && v.getUint32(4, true) === streamId;
}

/** "72 ×6, 73 ×2": descriptors per message, and how many messages had that many. */
function distribution(counts: number[]): string {
  if (counts.length === 0) return "none";
  const by = new Map<number, number>();
  for (const n of counts) by.set(n, (by.get(n) ?? 0) + 1);
  return [...by]
    .sort((a, b) => a[0] - b[0])
    .map(([n, times]) => `${n} ×${times}`)
    .join(", ");
}

const unavailable = missing("guests", reason);
describe.skipIf(unavailable)(suite, () => {
  let guest: GuestImage;
  let dir: string;
  let outDir: string;
  let tracePath: string;
  let daemon: CliDaemon;
  let input: Uint8Array;
  let wav: Uint8Array;

  beforeAll(async () => {
    buildDistIfStale();
    guest = await ensureGuest(undefined, { log: (l) => console.log(l) });
    dir = mkdtempSync(join(tmpdir(), "vsnd-guest-frag-"));
    outDir = join(dir, "out");
    // Made here, so the daemon has no folder to announce and its stderr stays empty.
    mkdirSync(outDir);
    tracePath = join(dir, "trace.jsonl");
    input = noise(SAMPLE, 0x7f4a_7c15);
    wav = wavFile(join(dir, "noise.wav"), SAMPLE, input);
    daemon = new CliDaemon([
      "--socket",
      join(dir, "snd.sock"),
      "--output",
      `wav:${outDir}`,
      "--record",
      tracePath,
      "--record-audio",
      "hash",
    ]);
    await daemon.waitFor(/listening on/, 15_000);
  }, 900_000);

  afterAll(() => {
    daemon?.kill();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`plays a 96 kHz 6-channel S32_LE second exactly ${PLAYS} times from scattered buffers (TX chains longer than the queue)`, async () => {
    const plays = Array.from({ length: PLAYS }, (_, i) => i + 1);
    const r = await bootGuest({
      kernel: guest.kernel,
      initrd: guest.initrd,
      sharedMemory: true,
      memory: 256,
      devices: [
        "-chardev",
        `socket,id=vsnd,path=${join(dir, "snd.sock")}`,
        "-device",
        "vhost-user-snd-pci,chardev=vsnd",
      ],
      payload: {
        script: [
          ...FRAG_SCRIPT,
          ...plays.flatMap((n) => [`frag ${n}`, `step play_${n} aplay -D hw:0,0 /payload/noise.wav`]),
          "dmesg > /tmp/dmesg.txt; emit_file dmesg.txt /tmp/dmesg.txt",
        ].join("\n"),
        files: { "noise.wav": wav },
      },
      outputDisk: 1 << 20,
      timeoutMs: 100_000,
      payloadTimeoutMs: 60_000,
      ...guestDebug,
    });
    console.log(`guest: ${describeBoot(r)}`);
    const context = (): string =>
      `${describeBoot(r)}\n--- console ---\n${r.console}\n--- qemu stderr ---\n${r.stderr}\n${daemon.transcript()}`;
    // QEMU gone: the device is reset, which finishes the WAV files and the trace.
    await daemon.waitFor(/front-end (disconnected|lost)/, 10_000).catch((e: Error) => {
      throw new Error(`${e.message}\n${context()}`);
    });

    // The figures first: they explain any failure below.
    await daemon.waitFor(/trace: \d+ events written/, 0);
    const { ring, txQueueSize, playbacks } = txChainsPerPlayback(readFileSync(tracePath, "utf8"));
    const largest = playbacks.map((p) => Math.max(0, ...p.readable));
    const fragTime = (n: number): string => {
      const m = /^([\d.]+) ([\d.]+)$/.exec(r.markers[`frag_${n}`] ?? "");
      return m ? `${(Number(m[2]) - Number(m[1])).toFixed(2)} s` : "?";
    };
    playbacks.forEach((p, i) =>
      console.log(
        `playback ${i + 1} (scattered in ${fragTime(i + 1)}): ${p.readable.length} TX messages, ` +
          `readable descriptors per message: ${distribution(p.readable)}; largest ${largest[i]}` +
          `${p.faults ? `; ${p.faults} malformed` : ""}`,
      ),
    );
    console.log(
      `${ring} rings, TX queue of ${txQueueSize}; largest TX chain ${Math.max(0, ...largest)} readable descriptors`,
    );

    expect(r.timedOut, context()).toBe(false);
    expect(r.exitCode, context()).toBe(0);
    expect(r.markers["snd"], context()).toBe("ready");
    expect(r.markers["ramfs"], context()).toBe("0");
    for (const n of plays) {
      expect(fragTime(n), `scattering before playback ${n}\n${context()}`).not.toBe("?");
      expect(r.markers[`play_${n}`], `aplay ${n}\n${context()}`).toBe("0");
    }
    expect(r.markers["payload.exit"], context()).toBe("0");
    expect(r.errors, context()).toEqual([]);
    const dmesg = new TextDecoder().decode(r.files["dmesg.txt"] ?? new Uint8Array());
    expect(dmesg, context()).toMatch(/virtio/i);
    expect(complaints(dmesg), dmesg).toEqual([]);

    // Every playback, exactly.
    const frameBytes = SAMPLE.channels * SAMPLE.width;
    const periods = daemon.out
      .map((l) => /stream 0 parameters set: S32, 6 ch, 96000 Hz, period (\d+) B/.exec(l.text))
      .filter((m) => m !== null)
      .map((m) => Number(m[1]));
    expect(periods.length, `"parameters set" lines\n${context()}`).toBe(PLAYS);
    const names = existsSync(outDir) ? readdirSync(outDir).sort() : [];
    expect(names, context()).toEqual(plays.map((n) => `stream0-${n}.wav`));
    for (const n of plays) {
      const bytes = new Uint8Array(readFileSync(join(outDir, `stream0-${n}.wav`)));
      expect(finished(bytes), `stream0-${n}.wav`).toBe("");
      const out = parseWav(bytes, `stream0-${n}.wav`);
      expect(playedExactly(input, out.data, frameBytes, SAMPLE.silence), `stream0-${n}.wav`).toBe("");
      const extra = out.frames - input.length / frameBytes;
      expect(extra, `stream0-${n}.wav: padding`).toBeLessThanOrEqual(periods[n - 1]! / frameBytes);
      console.log(
        `stream0-${n}.wav: ${input.length / frameBytes} frames exact` +
          `${extra ? ` + ${extra} frames of aplay's padding` : ""}`,
      );
    }

    // The fragmented path really ran, in every playback: chains longer than QEMU's 64-entry
    // queue, which only an indirect table can hold.
    expect(playbacks.length, context()).toBe(PLAYS);
    expect(txQueueSize, `the TX queue's size in the trace\n${context()}`).toBeGreaterThan(0);
    playbacks.forEach((p, i) => {
      expect(p.faults, `playback ${i + 1}: malformed TX chains`).toBe(0);
      expect(
        largest[i],
        `playback ${i + 1}: largest TX chain (the buffer was not scattered)`,
      ).toBeGreaterThan(txQueueSize);
    });

    // The daemon saw nothing to complain about.
    expect(
      daemon.err.map((l) => l.text),
      context(),
    ).toEqual([]);
  }, 150_000);
});
