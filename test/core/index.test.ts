/**
 * The public entry point (package "virtio-snd", src/index.ts): the names the
 * README and the API promise, each one defined, and nothing Node-only.
 */
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import * as api from "../../src/index.js";
import * as errors from "../../src/errors.js";
import * as constants from "../../src/spec/constants.js";
import * as structs from "../../src/spec/structs.js";
import { VirtioSound } from "../../src/device/virtio-sound.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";

const CLASSES = [
  "VirtioSound",
  "FlatMemory",
  "RegionMemory",
  "Chain",
  "SplitQueue",
  "PackedQueue",
  "MemoryBackend",
  "NullBackend",
  "VirtualClock",
  "RealTimeClock",
  "ClockTimer",
  "PacedVoice",
  "PacedInputVoice",
  "ByteBuffer",
  "PcmStream",
  "ControlElements",
  "StreamConverter",
  "Resampler",
  "SilenceSource",
  "BytesSource",
  "ToneSource",
  "VirtioPciTransport",
  "VirtioMmioTransport",
  "TransportCore",
  "VirtioSndError",
  "GuestMemoryError",
  "VirtqueueBrokenError",
  "BackendError",
] as const;

const FUNCTIONS = [
  "isSafeUint",
  "readFromChain",
  "writeToChain",
  "framesToNs",
  "bytesPerSecond",
  "bytesToFrames",
  "fillSilence",
  "frameBits",
  "frameBytes",
  "framesToBytes",
  "silencePattern",
  "periodFrames",
  "dbScaleTlv",
  "muteControl",
  "volumeControl",
  "convertBuffer",
  "downmixToStereo",
  "isConvertible",
  "openCaptureVoice",
  "controlName",
  "encodeSndConfig",
  "decodeSndConfig",
  "encodePcmInfo",
  "decodePcmInfo",
  "encodePcmSetParams",
  "decodePcmSetParams",
  "encodeChmapInfo",
  "decodeChmapInfo",
  "encodeJackInfo",
  "decodeJackInfo",
  "encodeQueryInfo",
  "decodeQueryInfo",
] as const;

const VALUES = [
  "NS_PER_SECOND",
  "CHMAP_PRESETS",
  "DEFAULT_CONFIG",
  "DEFAULT_FORMATS",
  "DEFAULT_RATES",
  "PCM_STATE_NAMES",
  "PcmState",
  "ChainFault",
  "ALSA_TLV_DB_SCALE",
  "ALSA_TLV_DB_SCALE_MUTE",
  "PCM_RATE_HZ",
  "PCM_FORMAT_INFO",
  "VIRTIO_ID_SOUND",
  "VIRTIO_SND_VQ_CONTROL",
  "VIRTIO_SND_VQ_EVENT",
  "VIRTIO_SND_VQ_TX",
  "VIRTIO_SND_VQ_RX",
  "VIRTIO_SND_F_CTLS",
  "VIRTIO_F_VERSION_1",
  "VIRTIO_F_RING_PACKED",
  "VIRTIO_SND_S_OK",
  "VIRTIO_SND_S_BAD_MSG",
  "VIRTIO_SND_S_NOT_SUPP",
  "VIRTIO_SND_S_IO_ERR",
  "VIRTIO_SND_PCM_FMT_S16",
  "VIRTIO_SND_PCM_RATE_48000",
  "VIRTIO_SND_CHMAP_FL",
  "VIRTIO_SND_CONFIG_SIZE",
  "VIRTIO_SND_PCM_INFO_SIZE",
  "VIRTIO_PCI_VENDOR_ID",
  "VIRTIO_PCI_COMMON_CFG",
  "VIRTIO_MMIO",
  "VIRTIO_MSI_NO_VECTOR",
  "PCI_CONFIG_SPACE_SIZE",
  "VIRTIO_MMIO_CONFIG_OFFSET",
] as const;

const exported = api as Record<string, unknown>;

/** The core's modules that define things (not the index files that re-export them), by path under src/. */
const SRC = join(import.meta.dirname, "../../src");
const CORE = ["spec", "memory", "virtqueue", "audio", "stream", "device", "driver", "trace", "transport"];
const modules = new Map<string, Record<string, unknown>>();
beforeAll(async () => {
  const files = [
    "errors.ts",
    ...CORE.flatMap((dir) =>
      readdirSync(join(SRC, dir), { recursive: true, encoding: "utf8" }).map((f) => join(dir, f)),
    ),
  ].filter((f) => f.endsWith(".ts") && !f.endsWith("index.ts"));
  for (const f of files) modules.set(f, (await import(join(SRC, f))) as Record<string, unknown>);
});

/** The modules that define `name` as the very value the entry point exports under it. */
function definedBy(name: string): string[] {
  return [...modules].filter(([, m]) => name in m && m[name] === exported[name]).map(([f]) => f);
}

describe("the public entry point", () => {
  it.each(CLASSES)("exports the class %s", (name) => {
    const value = exported[name];
    expect(definedBy(name), name).not.toEqual([]);
    // A class, not a plain function: it has a prototype of its own with a constructor.
    expect((value as { prototype: { constructor: unknown } }).prototype.constructor).toBe(value);
  });

  it.each(FUNCTIONS)("exports the function %s", (name) => {
    expect(definedBy(name), name).not.toEqual([]);
    expect(exported[name]).toBeInstanceOf(Function);
  });

  it.each(VALUES)("exports the value %s", (name) => {
    expect(definedBy(name), name).not.toEqual([]);
    expect(exported[name]).not.toBeUndefined();
  });

  it("defines every name it exports (no re-export of something that does not exist)", () => {
    const undefinedNames = Object.entries(exported)
      .filter(([, v]) => v === undefined)
      .map(([k]) => k);
    expect(undefinedNames).toEqual([]);
    expect(Object.keys(exported).length).toBeGreaterThan(200);
  });

  it("re-exports all of the spec constants, the wire structs and the errors, unchanged", () => {
    for (const mod of [constants, structs, errors]) {
      for (const [name, value] of Object.entries(mod)) expect(exported[name], name).toBe(value);
    }
  });

  it("re-exports the very classes the modules define", () => {
    expect(api.VirtioSound).toBe(VirtioSound);
    expect(api.MemoryBackend).toBe(MemoryBackend);
    expect(api.FlatMemory).toBe(FlatMemory);
  });

  it("exports nothing of the Node-only entry (virtio-snd/node)", () => {
    for (const name of [
      "SpeakerBackend",
      "SpeakerUnavailableError",
      "probeSpeaker",
      "resolveSink",
      "chooseDefaultSink",
      "WavFileBackend",
      "WavSource",
      "WavWriter",
      "readWav",
      "parseWav",
      "attachToV86",
      "V86GuestMemory",
    ])
      expect(exported[name], name).toBeUndefined();
  });

  it("exports nothing of the test helpers' entry (virtio-snd/testing)", () => {
    for (const name of [
      "SimulatedGuest",
      "SplitDriverQueue",
      "PackedDriverQueue",
      "PciGuestDriver",
      "MmioGuestDriver",
      "transportBus",
      "play",
      "record",
      "periodBytesFor",
      "MockTransport",
      "VhostUserBackend",
    ])
      expect(exported[name], name).toBeUndefined();
  });

  it("is enough to embed the device as the README shows", () => {
    const clock = new api.VirtualClock();
    const interrupts: number[] = [];
    const device = new api.VirtioSound({
      memory: new api.FlatMemory(new ArrayBuffer(1 << 16)),
      backend: new api.MemoryBackend({ clock }),
      clock,
      interrupt: (q) => interrupts.push(q),
    });
    expect(device.deviceId).toBe(api.VIRTIO_ID_SOUND);
    expect(device.setDriverFeatures(1n << BigInt(api.VIRTIO_F_VERSION_1))).toBe(true);
    const cfg = api.decodeSndConfig(new DataView(device.readConfig(0, api.VIRTIO_SND_CONFIG_SIZE).buffer), 0);
    expect(cfg).toEqual({ jacks: 2, streams: 2, chmaps: 6, controls: 0 });
    expect(device.streams.map((s) => api.PCM_STATE_NAMES[s.state])).toEqual(["idle", "idle"]);
  });
});
