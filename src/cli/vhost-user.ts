/**
 * `virtio-snd vhost-user`: the vhost-user back-end daemon for QEMU's
 * vhost-user-snd-pci. It listens on one Unix socket per guest (each with its
 * own device, backend and files, all on one clock), serves one front-end per
 * socket at a time, prints one line per stream event, and on SIGINT or SIGTERM finishes
 * its files, prints a summary per stream and exits 0. With --record, each
 * front-end's session is recorded as a trace (src/trace/), one file per
 * connection.
 */
import { mkdirSync, unlinkSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, extname, join, resolve } from "node:path";
import type { AudioBackend, InputSink, OutputSource, Voice } from "../audio/backend.js";
import type { Clock } from "../audio/clock.js";
import { GainBackend } from "../audio/gain.js";
import { openCaptureVoice } from "../audio/paced-input-voice.js";
import { type PcmParams, frameBits } from "../audio/pcm-params.js";
import { type CaptureSource, SilenceSource, ToneSource } from "../audio/sources.js";
import {
  DEFAULT_CONFIG,
  CHMAP_PRESETS,
  type ChmapConfig,
  type JackConfig,
  type SoundConfig,
} from "../device/config.js";
import type { DeviceLimits } from "../device/limits.js";
import { VirtioSndError } from "../errors.js";
import { chooseDefaultSink, resolveSink } from "../node/default-sink.js";
import { WavFileBackend } from "../node/file-backend.js";
import { WavSource } from "../node/sources.js";
import { TraceFileWriter } from "../node/trace-file.js";
import { SessionTracer, TraceRecorder } from "../trace/recorder.js";
import { VhostUserDaemon, claimSocketPath } from "../vhost-user/daemon.js";
import { type NativeBinding, loadNative, nativeAvailable } from "../vhost-user/native.js";
import { NativeClock } from "../vhost-user/native-clock.js";
import { EXIT_USAGE, UsageError, parseCommandLine, usageLine } from "./args.js";
import { wavDirNotice } from "./wav-dir.js";
import { type StreamMixer, applyMixer, describeControl, mixerControls } from "./mixer.js";
import { describeStreamEvent } from "./stream-events.js";

export const VHOST_USER_HELP = `Usage: virtio-snd vhost-user --socket PATH [--socket PATH ...] [options]

Serves a virtio sound device to QEMU over vhost-user: run this, then start QEMU with
  -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem
  -chardev socket,id=snd,path=PATH -device vhost-user-snd-pci,chardev=snd
When QEMU goes away the device is reset and the next QEMU may connect.

Options:
  --socket PATH        the Unix socket to listen on (also --socket-path=PATH); give it again
                       for more guests: each socket is one guest with its own device, streams
                       and files (wav:DIR gets a folder per guest, named after its socket)
  --socket-dir DIR     serve --guests N guests (default 1) on DIR/guest-1.sock ... guest-N.sock
  --output SINK        where output streams play: speaker, speaker:DEVICE, wav:DIR, wav or null
                       (default: the sound device if speaker works here, else WAV files in
                       the working directory)
  --input SOURCE       what input streams record: wav:FILE, tone:HZ or silence (default)
  --streams OUT,IN     output and input streams (default 1,1)
  --jacks N            jacks, headphone and microphone in turn (default 2)
  --chmaps N           channel maps, of: stereo out, stereo in, mono out, mono in, 5.1 out,
                       7.1 out, for the directions that have streams (default all of those)
  --ring packed|split  the ring layouts offered: both (packed, the default: the driver picks
                       packed) or split only. QEMU's vhost-user-snd-pci passes this offer to
                       the guest whatever its own packed= property says
  --record FILE        record each front-end's session as a trace (JSON Lines, replayable with
                       replayTrace): the first connection to FILE, later ones to FILE with -2,
                       -3, ... before the extension (s.jsonl, s-2.jsonl, ...); files are replaced
  --controls           a mixer in the guest: per stream a volume (-60 to 0 dB in 0.5 dB steps,
                       an ALSA dB scale) and a mute switch, "PCM Playback Volume"/"Switch" or
                       "PCM Capture ...", index N for the Nth stream of its direction; applied
                       to the audio before the backend (QEMU: vhost-user-snd-pci,controls=on)
  --max-buffer-bytes N, --max-chain N, --max-control-bytes N
                       bounds on what a guest can make this process hold (the device's limits):
                       the largest PCM buffer a stream accepts (default one second of its
                       largest frames), descriptors in one message (default 1024 or what the
                       largest buffer needs), one control request's payload (default 65536)
  --record-audio full|hash
                       TX audio in the trace: its bytes (default full) or only their SHA-256,
                       far smaller (the replay then checks how much was played, not what)
  -h, --help           this text

Prints one line per stream event; SIGINT or SIGTERM finishes the files, prints what each
stream played or recorded, and exits 0. Exits 2 on a usage error, 3 when another process
already serves PATH (a stale socket file left by a process that is gone is replaced), 1 on
any other error.
`;

export interface VhostUserCommandIo {
  readonly out: { write(chunk: string): unknown };
  readonly err: { write(chunk: string): unknown };
  /** Ends the command as SIGINT or SIGTERM do. Default: those signals. */
  readonly stop?: Promise<unknown>;
  /** The native addon (tests); default the built one. */
  readonly binding?: NativeBinding;
  /** The clock for the device and the audio (tests); default real time. */
  readonly clock?: Clock;
  /** Called once the daemon listens (tests). */
  readonly onListening?: (daemon: VhostUserDaemon) => void;
}

/** One guest: the socket it is served on, and its name (for lines and its folder of WAV files). */
interface GuestSpec {
  socket: string;
  name: string;
}

/** Guests one process serves at most (each holds a device, a socket and its voices). */
const MAX_GUESTS = 256;

interface Options {
  guests: GuestSpec[];
  socketDir: string | undefined;
  output: string | undefined;
  input: string;
  outputs: number;
  inputs: number;
  jacks: number;
  chmaps: number | undefined;
  record: string | undefined;
  recordAudio: "full" | "hash";
  ring: "packed" | "split";
  controls: boolean;
  limits: DeviceLimits;
}

/** The exit code when another process serves the socket (distinct from 1, errors, and 2, usage). */
export const EXIT_SOCKET_IN_USE = 3;

function removeQuietly(path: string): void {
  try {
    unlinkSync(path);
  } catch {
    // Already gone.
  }
}

function integer(value: string, what: string, min: number, max: number): number {
  const n = /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < min || n > max)
    throw new UsageError(`${what} must be a whole number from ${min} to ${max}, not "${value}"`);
  return n;
}

const OPTIONS = {
  socket: { type: "string", multiple: true },
  "socket-path": { type: "string", multiple: true },
  "socket-dir": { type: "string" },
  guests: { type: "string" },
  output: { type: "string" },
  input: { type: "string" },
  streams: { type: "string" },
  jacks: { type: "string" },
  chmaps: { type: "string" },
  record: { type: "string" },
  "record-audio": { type: "string" },
  ring: { type: "string" },
  controls: { type: "boolean" },
  "max-buffer-bytes": { type: "string" },
  "max-chain": { type: "string" },
  "max-control-bytes": { type: "string" },
} as const;

function parse(args: readonly string[]): Options | "help" {
  const v = parseCommandLine(args, OPTIONS);
  if (v === "help") return "help";
  const text = (name: keyof typeof OPTIONS): string | undefined => {
    const value = v[name];
    return typeof value === "string" ? value : undefined;
  };
  const list = (name: "socket" | "socket-path"): string[] => {
    const value = v[name];
    return Array.isArray(value) ? value : [];
  };
  const sockets = [...list("socket"), ...list("socket-path")];
  const socketDir = text("socket-dir");
  const guestCount = text("guests");
  if (socketDir !== undefined) {
    if (sockets.length > 0) throw new UsageError("--socket-dir DIR and --socket PATH do not go together");
    const n = guestCount === undefined ? 1 : integer(guestCount, "--guests", 1, MAX_GUESTS);
    for (let i = 1; i <= n; i++) sockets.push(join(socketDir, `guest-${i}.sock`));
  } else if (guestCount !== undefined) {
    throw new UsageError("--guests N goes with --socket-dir DIR");
  }
  if (sockets.length === 0) throw new UsageError("--socket PATH is required");
  if (sockets.length > MAX_GUESTS) throw new UsageError(`at most ${MAX_GUESTS} guests (--socket)`);
  const guests: GuestSpec[] = [];
  for (const socket of sockets) {
    const name = basename(socket, extname(socket)) || "guest";
    if (guests.some((g) => resolve(g.socket) === resolve(socket)))
      throw new UsageError(`--socket ${socket} is given twice`);
    if (guests.some((g) => g.name === name))
      throw new UsageError(
        `two sockets are named "${name}": each guest's WAV folder is named after its socket`,
      );
    guests.push({ socket, name });
  }
  const ring = text("ring") ?? "packed";
  if (ring !== "packed" && ring !== "split")
    throw new UsageError(`--ring takes "packed" or "split", not "${ring}"`);
  const recordAudio = text("record-audio");
  if (recordAudio !== undefined && recordAudio !== "full" && recordAudio !== "hash")
    throw new UsageError(`--record-audio takes "full" or "hash", not "${recordAudio}"`);
  const record = text("record");
  if (record !== undefined && guests.length > 1) throw new UsageError("--record goes with one guest");
  if (recordAudio !== undefined && record === undefined)
    throw new UsageError("--record-audio goes with --record FILE");
  let outputs = 1;
  let inputs = 1;
  const streams = text("streams");
  if (streams !== undefined) {
    const m = /^(\d+),(\d+)$/.exec(streams);
    if (m === null) throw new UsageError(`--streams takes OUT,IN (two counts), not "${streams}"`);
    outputs = integer(m[1]!, "the number of output streams", 0, 16);
    inputs = integer(m[2]!, "the number of input streams", 0, 16);
    if (outputs + inputs === 0) throw new UsageError("--streams: the device needs at least one stream");
  }
  const jacks = text("jacks");
  const chmaps = text("chmaps");
  const limit = (name: "max-buffer-bytes" | "max-chain" | "max-control-bytes"): number | undefined => {
    const value = text(name);
    return value === undefined ? undefined : integer(value, `--${name}`, 1, 0xffff_ffff);
  };
  const maxBufferBytes = limit("max-buffer-bytes");
  const maxChain = limit("max-chain");
  const maxControlBytes = limit("max-control-bytes");
  return {
    guests,
    socketDir,
    output: text("output"),
    input: text("input") ?? "silence",
    outputs,
    inputs,
    jacks: jacks === undefined ? 2 : integer(jacks, "--jacks", 0, 32),
    chmaps: chmaps === undefined ? undefined : integer(chmaps, "--chmaps", 0, 6),
    record,
    recordAudio: recordAudio ?? "full",
    ring,
    controls: v.controls === true,
    limits: {
      ...(maxBufferBytes !== undefined ? { maxBufferBytes } : {}),
      ...(maxChain !== undefined ? { maxChain } : {}),
      ...(maxControlBytes !== undefined ? { maxControlBytes } : {}),
    },
  };
}

/**
 * The trace file of front-end connection `session` (1, 2, ...) for
 * `--record FILE`: FILE itself, then FILE with "-2", "-3", ... before its
 * extension ("s.jsonl", "s-2.jsonl"; "trace" and "trace-2" without one).
 */
export function sessionTracePath(file: string, session: number): string {
  if (session <= 1) return file;
  const ext = extname(file);
  return `${file.slice(0, file.length - ext.length)}-${session}${ext}`;
}

/** The device's streams, jacks and channel maps from the options. */
export function soundConfig(o: Pick<Options, "outputs" | "inputs" | "jacks" | "chmaps">): SoundConfig {
  const [headphone, mic] = DEFAULT_CONFIG.jacks!;
  const kinds: JackConfig[] = [];
  if (o.outputs > 0) kinds.push(headphone!);
  if (o.inputs > 0) kinds.push(mic!);
  const chmapOrder: ChmapConfig[] = [
    { direction: "output", positions: CHMAP_PRESETS.stereo },
    { direction: "input", positions: CHMAP_PRESETS.stereo },
    { direction: "output", positions: CHMAP_PRESETS.mono },
    { direction: "input", positions: CHMAP_PRESETS.mono },
    { direction: "output", positions: CHMAP_PRESETS["5.1"] },
    { direction: "output", positions: CHMAP_PRESETS["7.1"] },
  ].filter((c) => (c.direction === "output" ? o.outputs > 0 : o.inputs > 0)) as ChmapConfig[];
  const chmaps = o.chmaps ?? chmapOrder.length;
  if (chmaps > chmapOrder.length)
    throw new UsageError(
      `--chmaps: at most ${chmapOrder.length} channel maps for these streams, not ${chmaps}`,
    );
  return {
    streams: [
      ...Array.from({ length: o.outputs }, () => ({ direction: "output" as const })),
      ...Array.from({ length: o.inputs }, () => ({ direction: "input" as const })),
    ],
    jacks: Array.from({ length: o.jacks }, (_, i) => kinds[i % Math.max(1, kinds.length)] ?? headphone!),
    chmaps: chmapOrder.slice(0, chmaps),
  };
}

/** A capture source from "wav:FILE", "tone:HZ" or "silence". */
export function resolveSource(spec: string): CaptureSource {
  const colon = spec.indexOf(":");
  const kind = colon < 0 ? spec : spec.slice(0, colon);
  const arg = colon < 0 ? undefined : spec.slice(colon + 1);
  if (kind === "silence" && arg === undefined) return new SilenceSource();
  if (kind === "tone" && arg !== undefined) {
    const hz = Number(arg);
    if (arg === "" || !Number.isFinite(hz) || hz < 0)
      throw new VirtioSndError(
        "ERR_INVALID_CONFIG",
        `source "${spec}": the frequency must be a number of Hz`,
      );
    return new ToneSource({ frequency: hz });
  }
  if (kind === "wav" && arg !== undefined && arg !== "") return new WavSource(arg);
  throw new VirtioSndError(
    "ERR_INVALID_CONFIG",
    `unknown source "${spec}": expected "wav:FILE", "tone:HZ" or "silence"`,
  );
}

interface Tally {
  direction: "output" | "input";
  frames: number;
  xruns: number;
  /** Bits not yet a whole frame (formats whose frames are not whole bytes). */
  bits: number;
}

/**
 * Output streams to the sink, input streams from the capture source, on the
 * device's clock, counting the frames each stream moves.
 */
class CommandBackend implements AudioBackend {
  readonly name: string;

  constructor(
    private readonly output: AudioBackend,
    private readonly input: CaptureSource,
    private readonly clock: Clock,
    private readonly tally: (streamId: number, direction: "output" | "input") => Tally,
  ) {
    this.name = output.name;
  }

  openOutput(streamId: number, params: PcmParams, source: OutputSource): Voice {
    const t = this.tally(streamId, "output");
    const bits = frameBits(params.format, params.channels);
    return this.output.openOutput(streamId, params, new CountingSource(source, t, bits));
  }

  openInput(streamId: number, params: PcmParams, sink: InputSink): Voice {
    const t = this.tally(streamId, "input");
    const bits = frameBits(params.format, params.channels);
    return openCaptureVoice(this.input, this.clock, params, new CountingSink(sink, t, bits));
  }

  close(): void {
    this.output.close?.();
  }
}

// Classes, not objects of closures: the voice's calls through them then reach the same functions
// for every stream, so the JIT's code for one stream stays valid for the next.

/** An output stream's source, counting the frames it gives. */
class CountingSource implements OutputSource {
  constructor(
    private readonly source: OutputSource,
    private readonly tally: Tally,
    private readonly frameBits: number,
  ) {}

  read(dest: Uint8Array, offset: number, length: number): number {
    const n = this.source.read(dest, offset, length);
    count(this.tally, n, this.frameBits);
    return n;
  }

  fail(error: Error): void {
    this.source.fail(error);
  }
}

/** An input stream's sink, counting the frames it takes. */
class CountingSink implements InputSink {
  constructor(
    private readonly sink: InputSink,
    private readonly tally: Tally,
    private readonly frameBits: number,
  ) {}

  write(src: Uint8Array, offset: number, length: number): number {
    const n = this.sink.write(src, offset, length);
    count(this.tally, n, this.frameBits);
    return n;
  }

  fail(error: Error): void {
    this.sink.fail(error);
  }
}

function count(t: Tally, bytes: number, frameBitCount: number): void {
  if (frameBitCount <= 0 || bytes <= 0) return;
  const bits = t.bits + bytes * 8;
  const frames = Math.floor(bits / frameBitCount);
  t.frames += frames;
  t.bits = bits - frames * frameBitCount;
}

/** This package's version, for trace notes. */
function packageVersion(): string {
  try {
    return (createRequire(import.meta.url)("../../package.json") as { version: string }).version;
  } catch {
    return "(unknown version)";
  }
}

function waitForSignal(): { promise: Promise<string>; dispose: () => void } {
  let dispose = (): void => {};
  const promise = new Promise<string>((resolve) => {
    const on = (signal: NodeJS.Signals): void => resolve(signal);
    process.once("SIGINT", on);
    process.once("SIGTERM", on);
    dispose = () => {
      process.off("SIGINT", on);
      process.off("SIGTERM", on);
    };
  });
  return { promise, dispose };
}

export async function runVhostUser(args: readonly string[], io: VhostUserCommandIo): Promise<number> {
  const say = (line: string): void => void io.out.write(`${line}\n`);
  const complain = (line: string): void => void io.err.write(`virtio-snd vhost-user: ${line}\n`);
  let options: Options;
  let config: SoundConfig;
  let mixers: StreamMixer[] = [];
  try {
    const parsed = parse(args);
    if (parsed === "help") {
      io.out.write(VHOST_USER_HELP);
      return 0;
    }
    options = parsed;
    config = soundConfig(options);
    if (options.controls) {
      const m = mixerControls(config.streams ?? []);
      config = { ...config, controls: m.controls };
      mixers = m.mixers;
    }
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    complain(usageLine(err, "virtio-snd vhost-user"));
    return EXIT_USAGE;
  }

  // Before anything slow (the speaker probe) or visible (files): without the addon, or
  // with another daemon on a socket, nothing can work.
  if (io.binding === undefined) {
    const native = nativeAvailable();
    if (!native.ok) {
      complain(native.reason);
      return 1;
    }
  }
  const binding = io.binding ?? loadNative();
  if (options.socketDir !== undefined) {
    try {
      mkdirSync(options.socketDir, { recursive: true });
    } catch (err) {
      complain(`--socket-dir: cannot make ${options.socketDir}: ${(err as Error).message}`);
      return 1;
    }
  }
  for (const g of options.guests) {
    try {
      claimSocketPath(binding, g.socket);
    } catch (err) {
      complain(err instanceof Error ? err.message : String(err));
      return (err as { code?: unknown }).code === "ERR_SOCKET_IN_USE" ? EXIT_SOCKET_IN_USE : 1;
    }
  }

  // One timerfd for every voice of every guest: a wake-up per period, not a setTimeout per voice and period.
  const ownClock = io.clock === undefined ? new NativeClock(binding) : null;
  const clock = io.clock ?? ownClock!;
  const start = clock.now();
  const stamp = (ns: number): string => `[${((ns - start) / 1e9).toFixed(3).padStart(8)} s]`;
  const several = options.guests.length > 1;
  const notice = wavDirNotice(options.output);
  if (notice !== null) complain(notice);

  const guests: Guest[] = [];
  const closeAll = async (): Promise<void> => {
    for (const g of guests) await g.close();
    ownClock?.close();
  };
  for (const spec of options.guests) {
    const tag = several ? `${spec.name}: ` : "";
    let guest: Guest | number;
    try {
      guest = await startGuest(spec, {
        options,
        config,
        mixers,
        clock,
        binding: io.binding,
        say: (line) => say(several ? `[${spec.name}] ${line}` : line),
        complain: (line) => complain(`${tag}${line}`),
        stamp,
      });
    } catch (err) {
      complain(`${tag}${err instanceof Error ? err.message : String(err)}`);
      guest = 1;
    }
    if (typeof guest === "number") {
      await closeAll();
      return guest;
    }
    guests.push(guest);
  }

  // Before the line that says it listens: whoever reads it may signal at once.
  const signal = io.stop === undefined ? waitForSignal() : undefined;
  const sinkName = guests[0]!.sinkName;
  say(
    `virtio-snd vhost-user: listening on ${options.guests.map((g) => g.socket).join(", ")}: ` +
      `${several ? `${options.guests.length} guests, each with ` : ""}` +
      `${options.outputs} output and ${options.inputs} input ` +
      `streams, ${config.jacks?.length ?? 0} jacks, ${config.chmaps?.length ?? 0} channel maps` +
      `${mixers.length > 0 ? `, ${config.controls?.length ?? 0} mixer controls` : ""}; ` +
      `output to ${sinkName}${several && /^wav/.test(sinkName) ? " (a folder per guest)" : ""}, input from ${options.input}`,
  );
  for (const g of guests) io.onListening?.(g.daemon);

  const why = await (signal?.promise ?? io.stop);
  signal?.dispose();
  for (const g of guests) await g.stop();
  say(`${stamp(clock.now())} ${typeof why === "string" ? `${why}: ` : ""}stopped`);
  for (const g of guests) g.summary();
  ownClock?.close();
  return 0;
}

/** One guest of the daemon: its socket, device, backend and files. */
interface Guest {
  readonly daemon: VhostUserDaemon;
  readonly sinkName: string;
  /** Stops serving (the device resets: files get their final headers) and closes the backend. */
  stop(): Promise<void>;
  /** What each stream played or recorded. */
  summary(): void;
  /** stop() when it did not run yet (startup failed for a later guest). */
  close(): Promise<void>;
}

interface GuestContext {
  readonly options: Options;
  readonly config: SoundConfig;
  readonly mixers: readonly StreamMixer[];
  readonly clock: Clock;
  readonly binding: NativeBinding | undefined;
  readonly say: (line: string) => void;
  readonly complain: (line: string) => void;
  readonly stamp: (ns: number) => string;
}

/** The output of one guest: `--output` as given, with a folder of its own under a wav DIR when there are several. */
function guestOutput(output: string | undefined, spec: GuestSpec, several: boolean): string | undefined {
  if (!several || output === undefined) return output;
  if (output === "wav") return `wav:${spec.name}`;
  if (output.startsWith("wav:")) return `wav:${join(output.slice(4), spec.name)}`;
  return output;
}

/**
 * Serves one guest on its socket: a device, an audio backend (its own files),
 * its own capture source, event lines and trace. Returns an exit code when it cannot.
 */
async function startGuest(spec: GuestSpec, ctx: GuestContext): Promise<Guest | number> {
  const { options, config, mixers, clock, say, complain, stamp } = ctx;
  const several = options.guests.length > 1;
  let source: CaptureSource;
  let sink: AudioBackend;
  try {
    source = resolveSource(options.input);
    const output = guestOutput(options.output, spec, several);
    sink =
      output === undefined
        ? await chooseDefaultSink({
            clock,
            log: say,
            wavBackend: (dir, c) =>
              new WavFileBackend({
                dir: several ? join(dir, spec.name) : dir,
                ...(c !== undefined ? { clock: c } : {}),
              }),
          })
        : await resolveSink(output, { clock });
  } catch (err) {
    complain(err instanceof Error ? err.message : String(err));
    return 1;
  }

  const tallies = new Map<number, Tally>();
  const tally = (streamId: number, direction: "output" | "input"): Tally => {
    let t = tallies.get(streamId);
    if (t === undefined) {
      t = { direction, frames: 0, xruns: 0, bits: 0 };
      tallies.set(streamId, t);
    }
    return t;
  };
  // The gain (--controls) comes first: the sink and the frame counts get the audio as the guest's mixer left it.
  const backend = new GainBackend(new CommandBackend(sink, source, clock, tally));

  // --record: the first file is made now, so a path that cannot be written fails at once.
  const record = options.record;
  let firstWriter: TraceFileWriter | null = null;
  if (record !== undefined) {
    try {
      firstWriter = new TraceFileWriter(record);
    } catch (err) {
      backend.close();
      complain(`--record: cannot write ${record}: ${err instanceof Error ? err.message : String(err)}`);
      return 1;
    }
  }
  const tracer = record !== undefined ? new SessionTracer() : undefined;

  let daemon: VhostUserDaemon;
  try {
    daemon = new VhostUserDaemon({
      socketPath: spec.socket,
      backend,
      clock,
      config,
      limits: options.limits,
      packed: options.ring === "packed",
      ...(tracer !== undefined ? { recorder: tracer } : {}),
      ...(ctx.binding !== undefined ? { binding: ctx.binding } : {}),
    });
  } catch (err) {
    backend.close();
    firstWriter?.close();
    if (record !== undefined) removeQuietly(record);
    complain(err instanceof Error ? err.message : String(err));
    return (err as { code?: unknown }).code === "ERR_SOCKET_IN_USE" ? EXIT_SOCKET_IN_USE : 1;
  }

  // One trace per front-end connection.
  let sessions = 0;
  let recording: { path: string; writer: TraceFileWriter; recorder: TraceRecorder } | null = null;
  const beginRecording = (): void => {
    if (record === undefined || tracer === undefined) return;
    sessions++;
    const path = sessionTracePath(record, sessions);
    let writer: TraceFileWriter;
    try {
      writer = sessions === 1 && firstWriter !== null ? firstWriter : new TraceFileWriter(path);
    } catch (err) {
      complain(`--record: cannot write ${path}: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    const recorder = new TraceRecorder({
      sink: writer,
      txAudio: options.recordAudio,
      note:
        `virtio-snd vhost-user ${packageVersion()}: front-end connection ${sessions} on ${spec.socket}, ` +
        `${new Date().toISOString()}; ${options.outputs} output and ${options.inputs} input streams; ` +
        `output to ${sink.name}, input from ${options.input}; ` +
        `TX audio ${options.recordAudio === "full" ? "in full" : "as SHA-256"}`,
    });
    tracer.begin(recorder);
    recording = { path, writer, recorder };
    say(`${stamp(clock.now())} recording this front-end's session to ${path}`);
  };
  const endRecording = (): void => {
    const r = recording;
    if (r === null || tracer === undefined) return;
    recording = null;
    tracer.end();
    try {
      r.writer.close();
    } catch (err) {
      r.recorder.error ??= err;
    }
    if (r.recorder.error !== null) {
      const e = r.recorder.error;
      complain(`--record: ${r.path} is incomplete: ${e instanceof Error ? e.message : String(e)}`);
    }
    say(`${stamp(clock.now())} trace: ${r.recorder.events} events written to ${r.path}`);
  };
  const streams = config.streams ?? [];
  daemon.on("control", (change) => {
    if (change.kind !== "value") return;
    const mixer = mixers.find((m) => m.volumeId === change.controlId || m.muteId === change.controlId);
    if (mixer !== undefined) applyMixer(backend, mixer, (id) => daemon.device.controls.get(id));
    say(
      `${stamp(clock.now())} control ${describeControl(change.control)} (set by the ${change.source})` +
        (mixer !== undefined
          ? `: stream ${mixer.streamId} gain ${backend
              .gain(mixer.streamId)
              .map((g) => g.toFixed(4))
              .join(", ")}`
          : ""),
    );
  });
  daemon.on("stream", (e) => {
    if (e.type === "xrun") tally(e.streamId, streams[e.streamId]?.direction ?? "output").xruns++;
    const state = daemon.device.streams[e.streamId]?.state;
    say(`${stamp(e.time)} stream ${e.streamId} ${describeStreamEvent(e, state)}`);
  });
  daemon.on("connect", () => {
    say(`${stamp(clock.now())} front-end connected`);
    beginRecording();
  });
  daemon.on("disconnect", (reason) => {
    // The device was reset: the session's trace is complete.
    endRecording();
    say(
      `${stamp(clock.now())} front-end ${reason === null ? "disconnected" : `lost (${reason.message})`}; ` +
        "waiting for the next one",
    );
  });
  daemon.on("log", (e) => {
    if (e.level === "warn" || e.level === "error")
      complain(`${e.level === "warn" ? "warning" : "error"}: ${e.message}`);
    else if (e.level === "info" && /^(device reset|memory table)/.test(e.message))
      say(`${stamp(clock.now())} ${e.message}`);
  });

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Resetting the device stops every stream and closes its voice: files get their final headers.
    await daemon.close();
    endRecording();
    if (sessions === 0 && firstWriter !== null && record !== undefined) {
      // No front-end came: no trace, rather than an empty file.
      firstWriter.close();
      removeQuietly(record);
      say(`no front-end connected: nothing recorded to ${record}`);
    }
    try {
      backend.close();
    } catch (err) {
      complain(`closing the audio backend: ${err instanceof Error ? err.message : String(err)}`);
    }
  };
  return {
    daemon,
    sinkName: sink.name,
    stop,
    close: stop,
    summary: () => {
      streams.forEach((s, id) => {
        const t = tallies.get(id) ?? { direction: s.direction, frames: 0, xruns: 0, bits: 0 };
        const verb = s.direction === "output" ? "played" : "recorded";
        say(`stream ${id} (${s.direction}): ${verb} ${t.frames} frames, ${t.xruns} xruns`);
      });
    },
  };
}
