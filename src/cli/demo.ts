/**
 * `virtio-snd demo` (what `npm start` runs): a trace recorded from a real
 * Linux guest (aplay playing a short tune through the vhost-user daemon,
 * traces/demo-tune.jsonl, made by scripts/record-corpus.ts) replayed live
 * through a fresh device: the control requests and stream events as they
 * happen, the audio to the sound device (or a WAV file), and at the end a
 * check that the device played exactly the bytes the guest sent.
 */
import { relative } from "node:path";
import { fileURLToPath } from "node:url";
import type { AudioBackend } from "../audio/backend.js";
import { type Clock, VirtualClock } from "../audio/clock.js";
import { bytesPerSecond } from "../audio/pcm-params.js";
import { chooseDefaultSink, resolveSink } from "../node/default-sink.js";
import { WavFileBackend } from "../node/file-backend.js";
import { SpeakerBackend } from "../node/speaker-backend.js";
import { readTraceFile } from "../node/trace-file.js";
import { VIRTIO_SND_VQ_CONTROL, VIRTIO_SND_VQ_EVENT, VIRTIO_SND_VQ_TX } from "../spec/constants.js";
import { controlName, eventName, isEventCode, pcmFormatName } from "../spec/names.js";
import type { StreamEvent } from "../stream/pcm-stream.js";
import { firstDifference } from "../trace/bytes.js";
import { type Trace, ringOf } from "../trace/format.js";
import { LiveReplay, traceTxAudio } from "../trace/live-replay.js";
import type { ReplayCompletion } from "../trace/replay-types.js";
import { describeStreamEvent } from "./stream-events.js";
import { EXIT_USAGE, UsageError, parseCommandLine, usageLine } from "./args.js";
import { wavDirNotice } from "./wav-dir.js";

/** The trace `npm start` plays: shipped with the package (package.json "files"). */
export const DEMO_TRACE = fileURLToPath(new URL("../../traces/demo-tune.jsonl", import.meta.url));

/** The WAV file of stream 0's first session; other sessions get their own names. */
export const DEMO_WAV = "virtio-snd-demo.wav";

export const DEMO_HELP = `Usage: virtio-snd demo [--output SINK] [--virtual] [--trace FILE]

Replays a trace recorded from a real Linux guest (aplay playing a short tune through the
vhost-user daemon) through a fresh device, in real time: prints the control requests and
stream events as they happen, plays the audio, and checks that every byte played is the
guest's.

Options:
  --output SINK   where the audio goes: speaker, speaker:DEVICE, wav:DIR, wav or null
                  (default: the sound device if speaker works here, else ${DEMO_WAV}
                  in the working directory)
  --virtual       run on a virtual clock, as fast as the CPU allows (the default output
                  is then the WAV file: a sound device plays in real time)
  --trace FILE    replay another trace (default: the bundled traces/demo-tune.jsonl)
  -h, --help      this text
`;

export interface DemoIo {
  readonly out: { write(chunk: string): unknown; readonly isTTY?: boolean };
  readonly err: { write(chunk: string): unknown };
  /** Folder for the default WAV file (default: the working directory). */
  readonly cwd?: string;
  /** Environment for the speaker probe (tests). */
  readonly env?: NodeJS.ProcessEnv;
}

interface Options {
  output: string | undefined;
  virtual: boolean;
  trace: string;
}

function parse(args: readonly string[]): Options | "help" {
  const v = parseCommandLine(args, {
    output: { type: "string" },
    trace: { type: "string" },
    virtual: { type: "boolean" },
  });
  if (v === "help") return "help";
  return {
    output: typeof v.output === "string" ? v.output : undefined,
    virtual: v.virtual === true,
    trace: typeof v.trace === "string" ? v.trace : DEMO_TRACE,
  };
}

/** WAV files with clear names, replaced on each run. */
function demoWavBackend(dir: string, clock: Clock | undefined): WavFileBackend {
  return new WavFileBackend({
    dir,
    ...(clock !== undefined ? { clock } : {}),
    name: (stream, n) => (stream === 0 && n === 1 ? DEMO_WAV : `virtio-snd-demo-stream${stream}-${n}.wav`),
    overwrite: true,
  });
}

/** The words of `text` in lines of at most `width` characters, each starting with `indent`. */
function wrap(text: string, width: number, indent: string): string[] {
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(/\s+/)) {
    if (line !== "" && indent.length + line.length + 1 + word.length > width) {
      lines.push(indent + line);
      line = word;
    } else line = line === "" ? word : `${line} ${word}`;
  }
  if (line !== "") lines.push(indent + line);
  return lines;
}

const u32 = (b: Uint8Array, off: number): number =>
  b.length < off + 4 ? -1 : (b[off]! | (b[off + 1]! << 8) | (b[off + 2]! << 16)) + b[off + 3]! * 0x100_0000;

/** "PCM_SET_PARAMS stream 0", "JACK_INFO jacks 0..1" and the like. */
function describeRequest(req: Uint8Array): string {
  const code = u32(req, 0);
  if (code < 0) return "(request not recorded)";
  const name = controlName(code);
  const what = code < 0x100 ? "jack" : code < 0x200 ? "stream" : code < 0x300 ? "chmap" : "control";
  const isQuery = code === 0x0001 || code === 0x0100 || code === 0x0200 || code === 0x0300;
  if (isQuery && req.length >= 12) {
    const start = u32(req, 4);
    const count = u32(req, 8);
    return `${name} ${what}s ${start}..${start + count - 1}`;
  }
  return req.length >= 8 ? `${name} ${what} ${u32(req, 4)}` : name;
}

/** "PCM_PERIOD_ELAPSED stream 0", "JACK_CONNECTED jack 1" and the like. */
function describeEvent(type: number, data: number): string {
  if (!isEventCode(type)) return `0x${type.toString(16)} ${data}`;
  const what = type < 0x1100 ? "jack" : type < 0x1200 ? "stream" : "control";
  return `${eventName(type)} ${what} ${data}`;
}

function streamsOf(trace: Trace): { outputs: number; inputs: number } {
  const streams = trace.header.device.config.streams ?? [];
  return {
    outputs: streams.filter((s) => s.direction === "output").length,
    inputs: streams.filter((s) => s.direction === "input").length,
  };
}

export async function runDemo(args: readonly string[], io: DemoIo): Promise<number> {
  const write = (s: string): void => void io.out.write(s);
  const complain = (line: string): void => void io.err.write(`virtio-snd demo: ${line}\n`);
  let options: Options;
  try {
    const parsed = parse(args);
    if (parsed === "help") {
      write(DEMO_HELP);
      return 0;
    }
    options = parsed;
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    complain(usageLine(err, "virtio-snd demo"));
    return EXIT_USAGE;
  }

  // The progress line: rewritten in place on a terminal, an occasional line otherwise.
  const tty = io.out.isTTY === true;
  let progress = "";
  const say = (line: string): void => {
    write(tty && progress !== "" ? `\r\x1b[K${line}\n${progress}` : `${line}\n`);
  };
  const showProgress = (text: string): void => {
    progress = text;
    if (tty) write(`\r\x1b[K${text}`);
  };
  const endProgress = (): void => {
    if (tty && progress !== "") write("\r\x1b[K");
    progress = "";
  };

  let trace: Trace;
  try {
    trace = await readTraceFile(options.trace);
  } catch (err) {
    complain(`cannot read the trace ${options.trace}: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
  const cwd = io.cwd ?? process.cwd();
  const shown = relative(cwd, options.trace);
  say(`virtio-snd demo: replaying ${shown.startsWith("..") ? options.trace : shown}`);
  if (trace.header.note !== undefined) for (const l of wrap(trace.header.note, 96, "  ")) say(l);
  const { outputs, inputs } = streamsOf(trace);
  const cfg = trace.header.device.config;
  say(
    `device: ${outputs} output and ${inputs} input streams, ${cfg.jacks?.length ?? 0} jacks, ` +
      `${cfg.chmaps?.length ?? 0} channel maps; ${trace.events.length} events, ` +
      `${options.virtual ? "virtual time (as fast as possible)" : "in real time"}`,
  );

  // The device and the audio output run on a virtual clock, moved with the host's clock unless
  // --virtual: the device's timers meet the trace's events in the exact order a virtual replay
  // gives them, whatever the host's timer jitter, and the audio still plays in real time.
  const clock = new VirtualClock();
  let sink: AudioBackend;
  try {
    if (options.output !== undefined) {
      const notice = wavDirNotice(options.output);
      if (notice !== null) complain(notice);
      sink = await resolveSink(options.output, {
        clock,
        wavBackend: demoWavBackend,
        ...(io.env !== undefined ? { env: io.env } : {}),
      });
      say(`audio: ${sink.name}${sink instanceof WavFileBackend ? ` (WAV files in ${sink.dir})` : ""}`);
    } else if (options.virtual) {
      sink = demoWavBackend(cwd, clock);
      say(`audio: virtual time, so no sound device; writing WAV files to ${cwd}`);
    } else {
      sink = await chooseDefaultSink({
        clock,
        dir: cwd,
        log: say,
        wavBackend: demoWavBackend,
        ...(io.env !== undefined ? { env: io.env } : {}),
      });
    }
  } catch (err) {
    complain(err instanceof Error ? err.message : String(err));
    return 1;
  }

  // What each output stream plays, for the progress line.
  const expected = new Map<number, Uint8Array | null>();
  const byteRates = new Map<number, number>();
  const stamp = (clockNs: number): string =>
    `[${((clockNs - live.startTime) / 1e9).toFixed(3).padStart(8)} s]`;
  const seconds = (stream: number, bytes: number): string => {
    const perSecond = byteRates.get(stream);
    return perSecond === undefined ? `${bytes} B` : `${(bytes / perSecond).toFixed(2)} s`;
  };
  // Without a terminal: where the next progress line is due (a line a second of audio).
  const nextLine = new Map<number, number>();
  // Audio of the messages completed so far (the voice is still inside its read when one completes).
  const completed = new Map<number, number>();
  const onPlayed = (stream: number, bytes: number): void => {
    const played = (completed.get(stream) ?? 0) + bytes;
    completed.set(stream, played);
    const total = expected.get(stream)?.length;
    const pct = total === undefined || total === 0 ? "" : ` (${Math.floor((100 * played) / total)}%)`;
    const of = total === undefined ? "" : ` of ${seconds(stream, total)}`;
    const text = `${stamp(clock.now())} playing stream ${stream}: ${seconds(stream, played)}${of}${pct}`;
    if (tty) showProgress(text);
    else if (played >= (nextLine.get(stream) ?? 0) || (total !== undefined && played >= total)) {
      say(text);
      nextLine.set(stream, played + (byteRates.get(stream) ?? 1 << 20));
    }
  };
  const onCompletion = (c: ReplayCompletion): void => {
    if (c.queue === VIRTIO_SND_VQ_CONTROL) {
      const status = u32(c.response, 0);
      say(
        `${stamp(clock.now())} control ${describeRequest(c.request).padEnd(28)} -> ` +
          (status < 0 ? "(no status)" : controlName(status)),
      );
    } else if (c.queue === VIRTIO_SND_VQ_EVENT) {
      say(`${stamp(clock.now())} event ${describeEvent(u32(c.response, 0), u32(c.response, 4))}`);
    } else if (c.queue === VIRTIO_SND_VQ_TX && c.stream !== undefined) {
      onPlayed(c.stream, Math.max(0, c.readableBytes - 4));
    }
  };
  const onStreamEvent = (e: StreamEvent): void => {
    if (e.type === "set-params" && e.params !== undefined)
      byteRates.set(e.streamId, bytesPerSecond(e.params));
    if ((e.type === "stop" || e.type === "release") && progress !== "") {
      const last = progress;
      endProgress();
      if (tty) write(`${last}\n`);
    }
    say(
      `${stamp(e.time)} stream ${e.streamId} ${describeStreamEvent(e, live.device.streams[e.streamId]?.state)}`,
    );
  };

  const live = new LiveReplay(trace, {
    clock,
    pace: options.virtual ? "fast" : "real-time",
    backend: sink,
    // The guest's boot and the pause before aplay are not waited out (no stream runs then).
    maxIdleNs: 250_000_000,
    onCompletion,
    onStreamEvent,
    onEvent: (e) => {
      if (e.ev === "features" && e.accepted)
        say(
          `${stamp(clock.now())} features 0x${e.features.toString(16)} accepted: ${ringOf(e.features)} ring`,
        );
      else if (e.ev === "reset") say(`${stamp(clock.now())} device reset (the guest went away)`);
      else if (e.ev === "jack")
        say(`${stamp(clock.now())} jack ${e.jack} ${e.connected ? "plugged" : "unplugged"}`);
    },
  });
  for (let s = 0; s < outputs; s++) expected.set(s, traceTxAudio(trace, s));

  let result;
  try {
    result = await live.run();
  } catch (err) {
    endProgress();
    complain(err instanceof Error ? err.message : String(err));
    sink.close?.();
    return 1;
  }
  endProgress();
  try {
    sink.close?.();
    if (sink instanceof SpeakerBackend) await sink.whenIdle();
  } catch (err) {
    complain(`closing the audio output: ${err instanceof Error ? err.message : String(err)}`);
  }

  say("");
  const st = result.stats;
  let ok = result.ok;
  if (result.ok) {
    say(
      `replay: ${st.events} events, ${st.chains} messages, ${st.completions} completions: ` +
        "every answer as the recorded device gave it",
    );
  } else {
    say(`replay: ${result.message}`);
  }
  if (live.skippedNs > 0)
    say(
      `idle time skipped: ${(live.skippedNs / 1e9).toFixed(2)} s (no stream running: the guest booting, ...)`,
    );
  for (const [stream, audio] of expected) {
    const played = live.playedAudio(stream);
    if (audio === null) {
      say(`stream ${stream}: played ${played.length} bytes (the trace holds only hashes of the audio)`);
      continue;
    }
    if (audio.length === 0 && played.length === 0) continue;
    const at = firstDifference(audio, played);
    if (at < 0) {
      say(
        `stream ${stream}: played ${played.length} bytes (${seconds(stream, played.length)}), ` +
          `identical to the ${audio.length} bytes the guest sent`,
      );
    } else {
      ok = false;
      say(
        `stream ${stream}: played ${played.length} bytes; the guest sent ${audio.length}: ` +
          `they differ from byte ${at} on`,
      );
    }
  }
  if (sink instanceof WavFileBackend) {
    for (const f of sink.files) {
      say(
        `wrote ${f.path} (${f.bytes} bytes, ${seconds(f.streamId, f.bytes)}: ` +
          `${pcmFormatName(f.params.format)}, ${f.params.channels} ch, ${f.params.rate} Hz)`,
      );
    }
  }
  return ok ? 0 : 1;
}
