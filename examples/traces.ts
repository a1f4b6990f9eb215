// examples/traces.ts: record a session as a trace, then replay it against a fresh device.
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { TraceRecorder, VIRTIO_SND_PCM_FMT_S16, replayTrace } from "virtio-snd";
import { SimulatedGuest, play } from "virtio-snd/testing";
import { TraceFileWriter, readTraceFile } from "virtio-snd/node";

const file = join(mkdtempSync(join(tmpdir(), "trace-")), "session.jsonl");
const writer = new TraceFileWriter(file); // or a MemoryTraceSink
const recorder = new TraceRecorder({ sink: writer }); // txAudio: "hash" for small traces

// A guest: here the model of the Linux driver; with an emulator, new VirtioSound({ ...options, recorder }).
const guest = new SimulatedGuest({ recorder });
guest.init();
guest.probe();
const params = {
  format: VIRTIO_SND_PCM_FMT_S16,
  rate: 48000,
  channels: 2,
  periodBytes: 1920,
  periods: 4,
} as const;
play(guest, 0, new Uint8Array(1920 * 10).fill(1), params);
recorder.close();
writer.close();

const result = replayTrace(await readTraceFile(file));
if (!result.ok) console.log(result.message, result.divergence);
else console.log(`replayed ${result.stats.events} events: every answer as recorded`);
