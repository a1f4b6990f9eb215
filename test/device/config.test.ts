/**
 * The card's configuration (streams, jacks, channel maps): what the embedder
 * may give, the defaults, and what the driver reads back at probe
 * (§5.14.6.4.1 jack info, §5.14.6.6.2 PCM info, §5.14.6.9.1 chmap info).
 */
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import {
  CHMAP_PRESETS,
  type ChmapConfig,
  DEFAULT_CONFIG,
  DEFAULT_FORMATS,
  DEFAULT_RATES,
  type JackConfig,
  type SoundConfig,
  type StreamConfig,
  chmapInfo,
  jackState,
  streamInfo,
} from "../../src/device/config.js";
import { VirtioSound } from "../../src/device/virtio-sound.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { VirtioSndError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import {
  PCM_FORMAT_INFO,
  PCM_RATE_HZ,
  VIRTIO_SND_CHMAP_BRC,
  VIRTIO_SND_CHMAP_FC,
  VIRTIO_SND_CHMAP_FL,
  VIRTIO_SND_CHMAP_FR,
  VIRTIO_SND_CHMAP_LFE,
  VIRTIO_SND_CHMAP_MONO,
  VIRTIO_SND_CHMAP_RL,
  VIRTIO_SND_CHMAP_RR,
  VIRTIO_SND_CHMAP_SL,
  VIRTIO_SND_CHMAP_SR,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_PCM_FMT_A_LAW,
  VIRTIO_SND_PCM_FMT_DSD_U8,
  VIRTIO_SND_PCM_FMT_FLOAT,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME,
  VIRTIO_SND_PCM_FMT_IMA_ADPCM,
  VIRTIO_SND_PCM_FMT_MU_LAW,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_U8,
  VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_PCM_F_MSG_POLLING,
  VIRTIO_SND_PCM_F_SHMEM_GUEST,
  VIRTIO_SND_PCM_F_SHMEM_HOST,
} from "../../src/spec/constants.js";

function configError(f: () => unknown): VirtioSndError {
  try {
    f();
  } catch (e) {
    expect(e).toBeInstanceOf(VirtioSndError);
    expect((e as VirtioSndError).code).toBe("ERR_INVALID_CONFIG");
    return e as VirtioSndError;
  }
  throw new Error("no error thrown");
}

const out: StreamConfig = { direction: "output" };

describe("streamInfo refuses, with ERR_INVALID_CONFIG naming the field", () => {
  it.each<[string, Partial<StreamConfig>, RegExp]>([
    ["a negative format", { formats: [-1] }, /^streams\[3\]\.formats: unknown format -1/],
    ["a format past the spec's", { formats: [VIRTIO_SND_PCM_FMT_S16, 25] }, /^streams\[3\]\.formats: .*25/],
    ["a fractional format", { formats: [5.5] }, /^streams\[3\]\.formats: .*5\.5/],
    ["no formats", { formats: [] }, /^streams\[3\]\.formats/],
    ["a rate the spec does not name", { rates: [48000, 50000] }, /^streams\[3\]\.rates: 50000 Hz/],
    ["no rates", { rates: [] }, /^streams\[3\]\.rates/],
    ["channelsMin 0", { channelsMin: 0 }, /^streams\[3\].*channelsMin/],
    ["channelsMin 256", { channelsMin: 256, channelsMax: 255 }, /^streams\[3\]\.channelsMin/],
    ["channelsMax 256", { channelsMax: 256 }, /^streams\[3\]\.channelsMax/],
    ["channelsMax fractional", { channelsMax: 2.5 }, /^streams\[3\]\.channelsMax/],
    [
      "channelsMin above channelsMax",
      { channelsMin: 4, channelsMax: 2 },
      /^streams\[3\].*channelsMin <= channelsMax/,
    ],
    ["SHMEM_HOST", { features: 1 << VIRTIO_SND_PCM_F_SHMEM_HOST }, /^streams\[3\]\.features/],
    ["SHMEM_GUEST", { features: 1 << VIRTIO_SND_PCM_F_SHMEM_GUEST }, /^streams\[3\]\.features/],
    ["an undefined feature bit", { features: 1 << 5 }, /^streams\[3\]\.features/],
    [
      "a feature word past 32 bits",
      { features: 2 ** 32 + (1 << VIRTIO_SND_PCM_F_EVT_XRUNS) },
      /^streams\[3\]\.features/,
    ],
    ["fractional features", { features: 16.5 }, /^streams\[3\]\.features/],
    ["a bad direction", { direction: "sideways" as StreamConfig["direction"] }, /^streams\[3\]\.direction/],
    ["a negative hdaFnNid", { hdaFnNid: -1 }, /^streams\[3\]\.hdaFnNid/],
    ["a 33-bit hdaFnNid", { hdaFnNid: 2 ** 32 }, /^streams\[3\]\.hdaFnNid/],
  ])("%s", (_name, patch, message) => {
    expect(configError(() => streamInfo({ ...out, ...patch }, 3)).message).toMatch(message);
  });
});

describe("jackState refuses, with ERR_INVALID_CONFIG naming the field", () => {
  it.each<[string, JackConfig, RegExp]>([
    ["a negative hdaFnNid", { hdaFnNid: -1 }, /^jacks\[1\]\.hdaFnNid/],
    ["a fractional hdaRegDefconf", { hdaRegDefconf: 0.5 }, /^jacks\[1\]\.hdaRegDefconf/],
    ["a 33-bit hdaRegDefconf", { hdaRegDefconf: 2 ** 32 }, /^jacks\[1\]\.hdaRegDefconf/],
    ["a 33-bit hdaRegCaps", { hdaRegCaps: 2 ** 32 }, /^jacks\[1\]\.hdaRegCaps/],
    ["a NaN hdaRegCaps", { hdaRegCaps: Number.NaN }, /^jacks\[1\]\.hdaRegCaps/],
  ])("%s", (_name, jack, message) => {
    expect(configError(() => jackState(jack, 1)).message).toMatch(message);
  });
});

describe("chmapInfo refuses, with ERR_INVALID_CONFIG naming the field", () => {
  it.each<[string, ChmapConfig, RegExp]>([
    ["no positions", { direction: "output", positions: [] }, /^chmaps\[2\]\.positions/],
    [
      "19 positions",
      { direction: "output", positions: Array<number>(19).fill(3) },
      /^chmaps\[2\]\.positions/,
    ],
    ["a negative position", { direction: "output", positions: [3, -1] }, /^chmaps\[2\]\.positions: .*-1/],
    ["position 37", { direction: "input", positions: [37] }, /^chmaps\[2\]\.positions: .*37/],
    ["a fractional position", { direction: "input", positions: [3.5] }, /^chmaps\[2\]\.positions/],
    [
      "a bad direction",
      { direction: "up" as ChmapConfig["direction"], positions: [2] },
      /^chmaps\[2\]\.direction/,
    ],
    [
      "a 33-bit hdaFnNid",
      { direction: "output", positions: [2], hdaFnNid: 2 ** 32 },
      /^chmaps\[2\]\.hdaFnNid/,
    ],
  ])("%s", (_name, chmap, message) => {
    expect(configError(() => chmapInfo(chmap, 2)).message).toMatch(message);
  });
});

describe("the limits are accepted", () => {
  it("streams, jacks and chmaps at the edges of their ranges", () => {
    const s = streamInfo(
      {
        direction: "input",
        formats: [VIRTIO_SND_PCM_FMT_IMA_ADPCM, VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME],
        rates: [5512, 384000],
        channelsMin: 255,
        channelsMax: 255,
        features:
          (1 << VIRTIO_SND_PCM_F_MSG_POLLING) |
          (1 << VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS) |
          (1 << VIRTIO_SND_PCM_F_EVT_XRUNS),
        hdaFnNid: 0xffff_ffff,
      },
      0,
    );
    expect(s).toEqual({
      direction: VIRTIO_SND_D_INPUT,
      formats: (1n << 0n) | (1n << 24n),
      rates: (1n << 0n) | (1n << 13n),
      channelsMin: 255,
      channelsMax: 255,
      features: 0b11100,
      hdaFnNid: 0xffff_ffff,
    });
    expect(streamInfo({ direction: "output", features: 0 }, 0).features).toBe(0);
    expect(jackState({ hdaFnNid: 0xffff_ffff, hdaRegDefconf: 0xffff_ffff, hdaRegCaps: 0 }, 0)).toEqual({
      hdaFnNid: 0xffff_ffff,
      hdaRegDefconf: 0xffff_ffff,
      hdaRegCaps: 0,
      connected: true,
      features: 0,
    });
    expect(jackState({ connected: false, remap: true }, 0)).toMatchObject({ connected: false, features: 1 });
    const positions = Array.from({ length: 18 }, (_, i) => VIRTIO_SND_CHMAP_BRC - i);
    expect(chmapInfo({ direction: "output", positions }, 0)).toEqual({
      direction: VIRTIO_SND_D_OUTPUT,
      positions,
      hdaFnNid: 0,
    });
  });

  it("a stream's defaults: every default format and rate, 1 to 8 channels, EVT_XRUNS", () => {
    const s = streamInfo({ direction: "output" }, 0);
    expect(s.formats).toBe(DEFAULT_FORMATS.reduce((m, f) => m | (1n << BigInt(f)), 0n));
    expect(s.rates).toBe(DEFAULT_RATES.reduce((m, hz) => m | (1n << BigInt(PCM_RATE_HZ.indexOf(hz))), 0n));
    expect([s.channelsMin, s.channelsMax, s.features, s.hdaFnNid]).toEqual([
      1,
      8,
      1 << VIRTIO_SND_PCM_F_EVT_XRUNS,
      0,
    ]);
  });

  it("the device refuses a bad configuration when it is made, naming the item", () => {
    const clock = new VirtualClock();
    const make = (config: SoundConfig) => () =>
      new VirtioSound({
        memory: new FlatMemory(new ArrayBuffer(4096)),
        backend: new MemoryBackend({ clock }),
        clock,
        interrupt: () => undefined,
        config,
      });
    expect(configError(make({ streams: [out, { ...out, rates: [1] }] })).message).toMatch(
      /^streams\[1\]\.rates/,
    );
    expect(configError(make({ jacks: [{}, {}, { hdaFnNid: -5 }] })).message).toMatch(/^jacks\[2\]\.hdaFnNid/);
    expect(configError(make({ chmaps: [{ direction: "input", positions: [] }] })).message).toMatch(
      /^chmaps\[0\]\.positions/,
    );
  });
});

describe("defaults", () => {
  it("DEFAULT_FORMATS: distinct linear PCM formats of 8 to 64 bits, the common ones included", () => {
    expect(new Set(DEFAULT_FORMATS).size).toBe(DEFAULT_FORMATS.length);
    const nonLinear = [
      VIRTIO_SND_PCM_FMT_IMA_ADPCM,
      VIRTIO_SND_PCM_FMT_MU_LAW,
      VIRTIO_SND_PCM_FMT_A_LAW,
      VIRTIO_SND_PCM_FMT_DSD_U8,
      VIRTIO_SND_PCM_FMT_DSD_U8 + 1,
      VIRTIO_SND_PCM_FMT_DSD_U8 + 2,
      VIRTIO_SND_PCM_FMT_IEC958_SUBFRAME,
    ];
    for (const f of DEFAULT_FORMATS) {
      expect(nonLinear).not.toContain(f);
      const bits = PCM_FORMAT_INFO[f]!.bits;
      expect(bits >= 8 && bits <= 64, `format ${f}: ${bits} bits`).toBe(true);
    }
    for (const f of [
      VIRTIO_SND_PCM_FMT_U8,
      VIRTIO_SND_PCM_FMT_S16,
      VIRTIO_SND_PCM_FMT_S24,
      VIRTIO_SND_PCM_FMT_S32,
      VIRTIO_SND_PCM_FMT_FLOAT,
      VIRTIO_SND_PCM_FMT_FLOAT64,
    ])
      expect(DEFAULT_FORMATS).toContain(f);
  });

  it("DEFAULT_RATES: every rate the spec names up to 192 kHz, in ascending order", () => {
    expect(DEFAULT_RATES).toEqual([
      5512, 8000, 11025, 12000, 16000, 22050, 24000, 32000, 44100, 48000, 64000, 88200, 96000, 176400, 192000,
    ]);
    // PCM_RATE_HZ (index order) is left as it is.
    expect(PCM_RATE_HZ[13]).toBe(384000);
    expect(PCM_RATE_HZ[14]).toBe(12000);
  });

  it("CHMAP_PRESETS: 1, 2, 3, 4, 5, 6 and 8 channels in ALSA's order, each layout extending the last", () => {
    const FL = VIRTIO_SND_CHMAP_FL;
    const FR = VIRTIO_SND_CHMAP_FR;
    const RL = VIRTIO_SND_CHMAP_RL;
    const RR = VIRTIO_SND_CHMAP_RR;
    expect(CHMAP_PRESETS).toEqual({
      mono: [VIRTIO_SND_CHMAP_MONO],
      stereo: [FL, FR],
      "2.1": [FL, FR, VIRTIO_SND_CHMAP_LFE],
      quad: [FL, FR, RL, RR],
      "5.0": [FL, FR, RL, RR, VIRTIO_SND_CHMAP_FC],
      "5.1": [FL, FR, RL, RR, VIRTIO_SND_CHMAP_FC, VIRTIO_SND_CHMAP_LFE],
      "7.1": [
        FL,
        FR,
        RL,
        RR,
        VIRTIO_SND_CHMAP_FC,
        VIRTIO_SND_CHMAP_LFE,
        VIRTIO_SND_CHMAP_SL,
        VIRTIO_SND_CHMAP_SR,
      ],
    });
    expect(Object.values(CHMAP_PRESETS).map((p) => p.length)).toEqual([1, 2, 3, 4, 5, 6, 8]);
    const chain = [
      CHMAP_PRESETS.stereo,
      CHMAP_PRESETS.quad,
      CHMAP_PRESETS["5.0"],
      CHMAP_PRESETS["5.1"],
      CHMAP_PRESETS["7.1"],
    ];
    for (let i = 1; i < chain.length; i++)
      expect(chain[i]!.slice(0, chain[i - 1]!.length)).toEqual(chain[i - 1]);
    for (const p of Object.values(CHMAP_PRESETS)) expect(new Set(p).size).toBe(p.length);
  });

  it("DEFAULT_CONFIG probes as a card with a playback and a capture stream, two jacks and six maps", () => {
    const g = new SimulatedGuest({ memorySize: 1 << 20 });
    g.init();
    expect(g.config()).toEqual({ jacks: 2, streams: 2, chmaps: 6, controls: 0 });
    const info = g.probe();
    expect(info.streams.map((s) => s.direction)).toEqual([VIRTIO_SND_D_OUTPUT, VIRTIO_SND_D_INPUT]);
    expect(info.jacks.map((j) => [j.connected, j.features])).toEqual([
      [1, 1],
      [1, 1],
    ]);
    expect(info.chmaps.map((c) => [c.direction, c.channels])).toEqual([
      [VIRTIO_SND_D_OUTPUT, 1],
      [VIRTIO_SND_D_OUTPUT, 2],
      [VIRTIO_SND_D_OUTPUT, 6],
      [VIRTIO_SND_D_OUTPUT, 8],
      [VIRTIO_SND_D_INPUT, 1],
      [VIRTIO_SND_D_INPUT, 2],
    ]);
    expect(DEFAULT_CONFIG.streams).toHaveLength(2);
  });
});

describe("a card with several streams, jacks and 7.1 maps probes as configured", () => {
  const config: SoundConfig = {
    streams: [
      {
        direction: "output",
        formats: [VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_S32],
        rates: [44100, 48000],
        channelsMin: 2,
        channelsMax: 8,
        hdaFnNid: 3,
      },
      { direction: "output" },
      {
        direction: "input",
        formats: [VIRTIO_SND_PCM_FMT_S16],
        rates: [16000, 48000, 12000],
        channelsMin: 1,
        channelsMax: 1,
        features: (1 << VIRTIO_SND_PCM_F_MSG_POLLING) | (1 << VIRTIO_SND_PCM_F_EVT_XRUNS),
        hdaFnNid: 7,
      },
      {
        direction: "input",
        formats: [VIRTIO_SND_PCM_FMT_FLOAT],
        rates: [96000],
        channelsMax: 4,
        features: 0,
      },
      { direction: "output", rates: [384000], channelsMin: 8, channelsMax: 8 },
    ],
    jacks: [
      { hdaFnNid: 3, hdaRegDefconf: 0x0121_4010, hdaRegCaps: 0x10, connected: false },
      { hdaFnNid: 7, hdaRegDefconf: 0x90a7_0130, remap: true },
      { hdaRegDefconf: 0xffff_ffff, hdaRegCaps: 0xffff_ffff },
    ],
    chmaps: [
      { direction: "output", positions: CHMAP_PRESETS["7.1"], hdaFnNid: 3 },
      { direction: "output", positions: CHMAP_PRESETS["5.1"] },
      { direction: "output", positions: CHMAP_PRESETS.stereo, hdaFnNid: 3 },
      { direction: "input", positions: CHMAP_PRESETS.mono, hdaFnNid: 7 },
      { direction: "input", positions: CHMAP_PRESETS.quad },
      { direction: "output", positions: Array.from({ length: 18 }, (_, i) => 19 + i) },
    ],
  };

  const bits = (values: readonly number[]): bigint => values.reduce((m, v) => m | (1n << BigInt(v)), 0n);

  it.each([false, true])("packed ring: %s", (packed) => {
    const g = new SimulatedGuest({ memorySize: 1 << 20, packed, config });
    g.init();
    expect(g.config()).toEqual({ jacks: 3, streams: 5, chmaps: 6, controls: 0 });
    const info = g.probe();

    expect(info.streams).toEqual(
      config.streams!.map((s) => ({
        hdaFnNid: s.hdaFnNid ?? 0,
        features: s.features ?? 1 << VIRTIO_SND_PCM_F_EVT_XRUNS,
        formats: bits(s.formats ?? DEFAULT_FORMATS),
        rates: bits((s.rates ?? DEFAULT_RATES).map((hz) => PCM_RATE_HZ.indexOf(hz))),
        direction: s.direction === "output" ? VIRTIO_SND_D_OUTPUT : VIRTIO_SND_D_INPUT,
        channelsMin: s.channelsMin ?? 1,
        channelsMax: s.channelsMax ?? 8,
      })),
    );
    // Spot checks of the masks against the spec's numbering.
    expect(info.streams[0]!.formats).toBe((1n << 5n) | (1n << 17n));
    expect(info.streams[0]!.rates).toBe((1n << 6n) | (1n << 7n));
    expect(info.streams[2]!.rates).toBe((1n << 3n) | (1n << 7n) | (1n << 14n));
    expect(info.streams[4]!.rates).toBe(1n << 13n);

    expect(info.jacks).toEqual([
      { hdaFnNid: 3, features: 0, hdaRegDefconf: 0x0121_4010, hdaRegCaps: 0x10, connected: 0 },
      { hdaFnNid: 7, features: 1, hdaRegDefconf: 0x90a7_0130, hdaRegCaps: 0, connected: 1 },
      { hdaFnNid: 0, features: 0, hdaRegDefconf: 0xffff_ffff, hdaRegCaps: 0xffff_ffff, connected: 1 },
    ]);

    expect(info.chmaps).toEqual(
      config.chmaps!.map((c) => ({
        hdaFnNid: c.hdaFnNid ?? 0,
        direction: c.direction === "output" ? VIRTIO_SND_D_OUTPUT : VIRTIO_SND_D_INPUT,
        channels: c.positions.length,
        positions: [...c.positions],
      })),
    );
    expect(info.chmaps[0]!.positions).toEqual([
      VIRTIO_SND_CHMAP_FL,
      VIRTIO_SND_CHMAP_FR,
      VIRTIO_SND_CHMAP_RL,
      VIRTIO_SND_CHMAP_RR,
      VIRTIO_SND_CHMAP_FC,
      VIRTIO_SND_CHMAP_LFE,
      VIRTIO_SND_CHMAP_SL,
      VIRTIO_SND_CHMAP_SR,
    ]);
    expect(info.chmaps[5]!.positions.at(-1)).toBe(VIRTIO_SND_CHMAP_BRC);
  });
});
