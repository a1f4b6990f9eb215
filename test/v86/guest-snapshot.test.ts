/**
 * Snapshot and restore of a real guest in v86, in the middle of playback: the
 * guest's aplay plays 4 s of noise; once the host has received about 1 s of
 * it, the emulator stops, v86's state and the card's are saved in the same
 * tick, the emulator is destroyed, and a new V86 with a new card and a new
 * backend restores both and runs on. aplay must exit 0, and the audio before
 * the cut plus the audio after it must be the WAV's samples exactly: no frame
 * lost or repeated (xorshift noise never repeats a period, so either shows).
 *
 * Also measures the process's CPU per audio second while playing, against the
 * same guest idle, and the boot time to the sound card.
 *
 * Skips (saying why) when the v86 guest is unavailable, unless
 * VSND_REQUIRE_GUESTS=1.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { V86 } from "v86";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RealTimeClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { type V86Sound, attachToV86, whenV86Loaded } from "../../src/v86/attach.js";
import type { V86Emulator } from "../../src/v86/types.js";
import { complaints, noise, playedExactly, wavFile, sample } from "../guest-helpers/cli-daemon.js";
import {
  type V86Control,
  type V86GuestImage,
  bootV86Guest,
  describeV86Boot,
  ensureV86Guest,
  v86GuestProblem,
} from "../guest-helpers/v86.js";
import { missing } from "../guest-helpers/required-parts.js";

const { problem, skipReason } = v86GuestProblem("v86 snapshot test");

const SAMPLE = sample("s16", 2, 48_000, 4);
const FRAME_BYTES = SAMPLE.channels * SAMPLE.width;
/** Cut once the host has received this much audio. */
const CUT_AT_BYTES = SAMPLE.rate * FRAME_BYTES;

const asEmulator = (v: V86) => v as unknown as V86Emulator;

const unavailable = missing("guests", problem);
describe.skipIf(unavailable)("v86 guest snapshot mid-playback", () => {
  let guest: V86GuestImage;
  let dir: string;

  beforeAll(async () => {
    guest = await ensureV86Guest(undefined, { log: (l) => console.log(l) });
    dir = mkdtempSync(join(tmpdir(), "vsnd-v86snap-"));
  }, 1_200_000);
  afterAll(() => {
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it(`aplay carries on across save and restore into a new emulator, exactly${skipReason}`, async () => {
    const pcm = noise(SAMPLE, 0x5eed_0086);
    const wav = wavFile(join(dir, "noise.wav"), SAMPLE, pcm);
    // One clock for both cards: the restored voice paces from the moment it starts.
    const clock = new RealTimeClock();
    // Chunks of 10 ms, not aplay's periods, so the cut falls inside a message.
    // With a log of chunks, to say where an underrun fell.
    const before = new MemoryBackend({ clock, chunkFrames: 480, log: true });
    const after = new MemoryBackend({ clock, chunkFrames: 480, log: true });
    let card: V86Sound | undefined;
    let cut:
      { bytes: number; saveMs: number; restoreMs: number; vmBytes: number; cardBytes: number } | undefined;
    let cutError: unknown;

    // CPU windows: playing (from aplay's start to the cut) and idle (the guest sleeps after aplay).
    let idleStart: { cpu: NodeJS.CpuUsage; at: number } | undefined;
    let idle: { cpuMs: number; wallMs: number } | undefined;
    let playStart: { cpu: NodeJS.CpuUsage; at: number } | undefined;
    let playing: { cpuMs: number; wallMs: number; audioS: number } | undefined;
    // And playing again after the restore, to aplay's exit: the steady state.
    let resumed: { cpu: NodeJS.CpuUsage; at: number; bytes: number } | undefined;
    let playingAfter: { cpuMs: number; wallMs: number; audioS: number } | undefined;
    const cpuMs = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1000;
    const onConsole = (line: string) => {
      if (process.env["VSND_GUEST_DEBUG"]) process.stdout.write(line);
      if (line.startsWith("@@VSND play=")) playStart = { cpu: process.cpuUsage(), at: Date.now() };
      if (line.startsWith("@@VSND idle=")) idleStart = { cpu: process.cpuUsage(), at: Date.now() };
      if (line.startsWith("@@VSND idle_end=") && idleStart)
        idle = { cpuMs: cpuMs(process.cpuUsage(idleStart.cpu)), wallMs: Date.now() - idleStart.at };
      if (line.startsWith("@@VSND aplay=") && resumed) {
        const bytes = after.playbacksOf(0)[0]?.data.length ?? 0;
        playingAfter = {
          cpuMs: cpuMs(process.cpuUsage(resumed.cpu)),
          wallMs: Date.now() - resumed.at,
          audioS: (bytes - resumed.bytes) / FRAME_BYTES / SAMPLE.rate,
        };
      }
    };

    const swap = async (control: V86Control) => {
      const played = () => before.playbacksOf(0)[0]?.data.length ?? 0;
      while (played() < CUT_AT_BYTES) await new Promise((r) => setTimeout(r, 5));
      const old = control.emulator;
      const t0 = performance.now();
      await old.stop();
      // Both in one tick: v86's save_state() copies the machine synchronously
      // before its promise resolves, and the card cannot move in between.
      const vmState = old.save_state();
      const cardState = card!.saveState();
      const bytes = played();
      if (playStart) {
        playing = {
          cpuMs: cpuMs(process.cpuUsage(playStart.cpu)),
          wallMs: Date.now() - playStart.at,
          audioS: bytes / FRAME_BYTES / SAMPLE.rate,
        };
      }
      const vm = await vmState;
      const saveMs = performance.now() - t0;
      card!.detach();
      await old.destroy();

      const t1 = performance.now();
      const { V86: V86Class } = await import("v86");
      const next = new V86Class(control.config);
      await whenV86Loaded(asEmulator(next));
      // Same slot as before: v86's saved PCI state is per slot.
      card = attachToV86(asEmulator(next), { backend: after, clock, pciSlot: card!.pciId >> 3 });
      control.replace(next);
      await next.restore_state(vm);
      card.restoreState(cardState);
      await next.run();
      const restoreMs = performance.now() - t1;
      resumed = { cpu: process.cpuUsage(), at: Date.now(), bytes: after.playbacksOf(0)[0]?.data.length ?? 0 };
      cut = { bytes, saveMs, restoreMs, vmBytes: vm.byteLength, cardBytes: cardState.length };
    };

    const r = await bootV86Guest({
      guest,
      payload: {
        script: [
          "marker play 1",
          "step aplay aplay -D hw:0,0 noise.wav",
          "dmesg > /tmp/dmesg.txt; emit_file dmesg.txt /tmp/dmesg.txt",
          "marker idle 1",
          "sleep 3",
          "marker idle_end 1",
        ].join("\n"),
        files: { "noise.wav": wav },
      },
      timeoutMs: 150_000,
      payloadTimeoutMs: 90_000,
      setup: (emulator) => {
        card = attachToV86(asEmulator(emulator), { backend: before, clock });
      },
      onRun: (control) => {
        swap(control).catch((e: unknown) => (cutError = e));
      },
      onConsole,
    });
    const dmesg = new TextDecoder().decode(r.files["dmesg.txt"] ?? new Uint8Array());
    const context = `${describeV86Boot(r)}\n--- console ---\n${r.console}`;
    console.log(
      `markers: snd=${r.markers["snd"]} aplay=${r.markers["aplay"]} payload.exit=${r.markers["payload.exit"]}; ` +
        `cut ${cut ? "done" : "not done"}${cutError ? `, failed: ${String(cutError)}` : ""}`,
    );
    // The old card's audio up to the cut, then the new card's.
    const pb1 = before.playbacksOf(0);
    const pb2 = after.playbacksOf(0);
    expect(pb1.length, context).toBe(1);
    const head = pb1[0]!.data.bytes().subarray(0, cut?.bytes ?? 0);
    const tail = pb2[0]?.data.bytes() ?? new Uint8Array(0);
    const joined = new Uint8Array(head.length + tail.length);
    joined.set(head, 0);
    joined.set(tail, head.length);
    const inFrames = pcm.length / FRAME_BYTES;
    const beforeFrames = head.length / FRAME_BYTES;
    const afterFrames = tail.length / FRAME_BYTES;
    // Where the restored audio starts in the input (-1: nowhere), for the figures.
    const resumedAt = (() => {
      const probeLen = Math.min(tail.length, 64 * FRAME_BYTES);
      const needle = Buffer.from(tail.subarray(0, probeLen));
      return Buffer.from(pcm).indexOf(needle) / FRAME_BYTES;
    })();
    const lost = resumedAt < 0 ? NaN : resumedAt - beforeFrames;
    const secs = (k: string) => ((r.markerMs[k] ?? NaN) / 1000).toFixed(1);
    console.log(
      `v86 snapshot: guest boot to sound card ${secs("snd")} s; frames before the cut ${beforeFrames}, ` +
        `after ${afterFrames} (input ${inFrames}), restored audio starts at input frame ${resumedAt}: ` +
        `${lost} frames lost (negative: repeated); stop + save ${cut?.saveMs.toFixed(0)} ms ` +
        `(v86 ${((cut?.vmBytes ?? NaN) / 2 ** 20).toFixed(1)} MiB, card ${cut?.cardBytes} B), ` +
        `new emulator + restore ${cut?.restoreMs.toFixed(0)} ms; ` +
        `underruns before ${pb1[0]!.underruns}, after ${pb2[0]?.underruns}, ${pb2.length} stream(s) after`,
    );
    if (idle && playing) {
      const idlePerS = idle.cpuMs / idle.wallMs;
      const playPerAudioS = playing.cpuMs / 1000 / playing.audioS;
      console.log(
        `v86 CPU: idle guest ${idlePerS.toFixed(3)} CPU-s per s (${(idle.wallMs / 1000).toFixed(1)} s); ` +
          `playing ${playPerAudioS.toFixed(3)} CPU-s per audio s (${playing.audioS.toFixed(2)} audio s ` +
          `in ${(playing.wallMs / 1000).toFixed(1)} s, including aplay's start)` +
          (playingAfter
            ? `; after the restore ${(playingAfter.cpuMs / 1000 / playingAfter.audioS).toFixed(3)} CPU-s per audio s ` +
              `(${playingAfter.audioS.toFixed(2)} audio s in ${(playingAfter.wallMs / 1000).toFixed(1)} s)`
            : ""),
      );
    }
    // Input frames at which a chunk came short (the stream had no data): at the end, aplay draining.
    const shortAt = (chunks: readonly { bytes: number }[], from: number) => {
      const at: number[] = [];
      let frames = from;
      for (const c of chunks) {
        if (c.bytes < 480 * FRAME_BYTES) at.push(frames + c.bytes / FRAME_BYTES);
        frames += c.bytes / FRAME_BYTES;
      }
      return at;
    };
    console.log(
      `short chunks at input frames: before the cut [${shortAt(pb1[0]!.chunks, 0).join(", ")}], ` +
        `after [${shortAt(pb2[0]?.chunks ?? [], beforeFrames).join(", ")}] (input ${inFrames})`,
    );
    console.log(describeV86Boot(r));
    expect(cutError, context).toBeUndefined();
    expect(r.timedOut, context).toBe(false);
    expect(r.markers["snd"], context).toBe("ready");
    expect(cut, context).toBeDefined();
    expect(r.markers["aplay"], context).toBe("0");
    expect(r.markers["payload.exit"], context).toBe("0");
    expect(complaints(dmesg), dmesg).toEqual([]);

    expect(lost, context).toBe(0);
    expect(playedExactly(pcm, joined, FRAME_BYTES, [0]), context).toBe("");
  }, 200_000);
});
