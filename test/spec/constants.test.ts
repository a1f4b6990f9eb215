import { describe, it, expect } from "vitest";
import * as C from "../../src/spec/constants.js";

/*
 * Every expectation below is transcribed from the virtio 1.3 sound device
 * section (§5.14), not derived from constants.ts, so a wrong constant fails.
 */

const constants = C as unknown as Record<string, unknown>;

/** Checks that `prefix + names[i]` equals `start + i` for each name, as a C enum counts. */
function expectEnum(prefix: string, names: readonly string[], start = 0): void {
  names.forEach((name, i) => {
    expect(constants[`${prefix}${name}`], `${prefix}${name}`).toBe(start + i);
  });
}

describe("device id, queues and feature bits", () => {
  it("matches §5.14.1–§5.14.3", () => {
    expect(C.VIRTIO_ID_SOUND).toBe(25);
    expect(C.VIRTIO_SND_VQ_CONTROL).toBe(0);
    expect(C.VIRTIO_SND_VQ_EVENT).toBe(1);
    expect(C.VIRTIO_SND_VQ_TX).toBe(2);
    expect(C.VIRTIO_SND_VQ_RX).toBe(3);
    expect(C.VIRTIO_SND_VQ_MAX).toBe(4);
    expect(C.VIRTIO_SND_F_CTLS).toBe(0);
  });

  it("matches the §6 reserved feature bits", () => {
    expect(C.VIRTIO_F_INDIRECT_DESC).toBe(28);
    expect(C.VIRTIO_F_EVENT_IDX).toBe(29);
    expect(C.VIRTIO_F_VERSION_1).toBe(32);
    expect(C.VIRTIO_F_ACCESS_PLATFORM).toBe(33);
    expect(C.VIRTIO_F_RING_PACKED).toBe(34);
    expect(C.VIRTIO_F_IN_ORDER).toBe(35);
    expect(C.VIRTIO_F_NOTIFICATION_DATA).toBe(38);
    expect(C.VIRTIO_F_RING_RESET).toBe(40);
  });

  it("matches the §2.1 device status bits", () => {
    expect(C.VIRTIO_CONFIG_S_ACKNOWLEDGE).toBe(1);
    expect(C.VIRTIO_CONFIG_S_DRIVER).toBe(2);
    expect(C.VIRTIO_CONFIG_S_DRIVER_OK).toBe(4);
    expect(C.VIRTIO_CONFIG_S_FEATURES_OK).toBe(8);
    expect(C.VIRTIO_CONFIG_S_NEEDS_RESET).toBe(64);
    expect(C.VIRTIO_CONFIG_S_FAILED).toBe(128);
  });
});

describe("request, event and status codes (§5.14.6)", () => {
  it("numbers the jack requests from 1", () => {
    expectEnum("VIRTIO_SND_R_", ["JACK_INFO", "JACK_REMAP"], 1);
  });

  it("numbers the PCM requests from 0x0100", () => {
    expectEnum(
      "VIRTIO_SND_R_",
      ["PCM_INFO", "PCM_SET_PARAMS", "PCM_PREPARE", "PCM_RELEASE", "PCM_START", "PCM_STOP"],
      0x0100,
    );
    expect(C.VIRTIO_SND_R_PCM_STOP).toBe(0x0105);
  });

  it("numbers the channel map and control requests from 0x0200 and 0x0300", () => {
    expect(C.VIRTIO_SND_R_CHMAP_INFO).toBe(0x0200);
    expectEnum(
      "VIRTIO_SND_R_",
      [
        "CTL_INFO",
        "CTL_ENUM_ITEMS",
        "CTL_READ",
        "CTL_WRITE",
        "CTL_TLV_READ",
        "CTL_TLV_WRITE",
        "CTL_TLV_COMMAND",
      ],
      0x0300,
    );
    expect(C.VIRTIO_SND_R_CTL_TLV_COMMAND).toBe(0x0306);
  });

  it("numbers the events from 0x1000, 0x1100 and 0x1200", () => {
    expectEnum("VIRTIO_SND_EVT_", ["JACK_CONNECTED", "JACK_DISCONNECTED"], 0x1000);
    expectEnum("VIRTIO_SND_EVT_", ["PCM_PERIOD_ELAPSED", "PCM_XRUN"], 0x1100);
    expect(C.VIRTIO_SND_EVT_CTL_NOTIFY).toBe(0x1200);
  });

  it("numbers the status codes from 0x8000", () => {
    expectEnum("VIRTIO_SND_S_", ["OK", "BAD_MSG", "NOT_SUPP", "IO_ERR"], 0x8000);
  });

  it("has output = 0 and input = 1 directions", () => {
    expect(C.VIRTIO_SND_D_OUTPUT).toBe(0);
    expect(C.VIRTIO_SND_D_INPUT).toBe(1);
  });
});

describe("jack and PCM stream constants", () => {
  it("has the jack remap feature at bit 0 (§5.14.6.4.1)", () => {
    expect(C.VIRTIO_SND_JACK_F_REMAP).toBe(0);
  });

  it("numbers the PCM feature bits 0..4 (§5.14.6.6.2)", () => {
    expectEnum("VIRTIO_SND_PCM_F_", [
      "SHMEM_HOST",
      "SHMEM_GUEST",
      "MSG_POLLING",
      "EVT_SHMEM_PERIODS",
      "EVT_XRUNS",
    ]);
  });

  // §5.14.6.6.2, in enum order, with the "width / physical width" comments.
  const formats: readonly (readonly [string, number, number])[] = [
    ["IMA_ADPCM", 4, 4],
    ["MU_LAW", 8, 8],
    ["A_LAW", 8, 8],
    ["S8", 8, 8],
    ["U8", 8, 8],
    ["S16", 16, 16],
    ["U16", 16, 16],
    ["S18_3", 18, 24],
    ["U18_3", 18, 24],
    ["S20_3", 20, 24],
    ["U20_3", 20, 24],
    ["S24_3", 24, 24],
    ["U24_3", 24, 24],
    ["S20", 20, 32],
    ["U20", 20, 32],
    ["S24", 24, 32],
    ["U24", 24, 32],
    ["S32", 32, 32],
    ["U32", 32, 32],
    ["FLOAT", 32, 32],
    ["FLOAT64", 64, 64],
    ["DSD_U8", 8, 8],
    ["DSD_U16", 16, 16],
    ["DSD_U32", 32, 32],
    ["IEC958_SUBFRAME", 32, 32],
  ];

  it("numbers all 25 sample formats 0..24 in spec order", () => {
    expect(formats).toHaveLength(25);
    expectEnum(
      "VIRTIO_SND_PCM_FMT_",
      formats.map(([name]) => name),
    );
    expect(C.VIRTIO_SND_PCM_FMT_COUNT).toBe(25);
  });

  it("gives each format the spec's width and physical width", () => {
    expect(C.PCM_FORMAT_INFO).toHaveLength(25);
    formats.forEach(([name, bits, physicalBits], i) => {
      expect(C.PCM_FORMAT_INFO[i], name).toEqual({ bits, physicalBits });
    });
  });

  // §5.14.6.6.2, in enum order: 12000 and 24000 come last, after 384000.
  const rates: readonly number[] = [
    5512, 8000, 11025, 16000, 22050, 32000, 44100, 48000, 64000, 88200, 96000, 176400, 192000, 384000, 12000,
    24000,
  ];

  it("numbers all 16 frame rates 0..15 in spec order", () => {
    expectEnum(
      "VIRTIO_SND_PCM_RATE_",
      rates.map((hz) => String(hz)),
    );
    expect(C.VIRTIO_SND_PCM_RATE_12000).toBe(14);
    expect(C.VIRTIO_SND_PCM_RATE_24000).toBe(15);
    expect(C.VIRTIO_SND_PCM_RATE_COUNT).toBe(16);
  });

  it("maps each rate index to its frequency in PCM_RATE_HZ", () => {
    expect(C.PCM_RATE_HZ).toEqual(rates);
  });
});

describe("channel positions (§5.14.6.9.1)", () => {
  const positions = [
    "NONE",
    "NA",
    "MONO",
    "FL",
    "FR",
    "RL",
    "RR",
    "FC",
    "LFE",
    "SL",
    "SR",
    "RC",
    "FLC",
    "FRC",
    "RLC",
    "RRC",
    "FLW",
    "FRW",
    "FLH",
    "FCH",
    "FRH",
    "TC",
    "TFL",
    "TFR",
    "TFC",
    "TRL",
    "TRR",
    "TRC",
    "TFLC",
    "TFRC",
    "TSL",
    "TSR",
    "LLFE",
    "RLFE",
    "BC",
    "BLC",
    "BRC",
  ];

  it("numbers all 37 positions 0..36 in spec order", () => {
    expect(positions).toHaveLength(37);
    expectEnum("VIRTIO_SND_CHMAP_", positions);
  });

  it("puts the top-side, LFE pair and bottom positions at 30..36", () => {
    // Spelled out because another implementation got exactly these wrong.
    expect(C.VIRTIO_SND_CHMAP_TSL).toBe(30);
    expect(C.VIRTIO_SND_CHMAP_TSR).toBe(31);
    expect(C.VIRTIO_SND_CHMAP_LLFE).toBe(32);
    expect(C.VIRTIO_SND_CHMAP_RLFE).toBe(33);
    expect(C.VIRTIO_SND_CHMAP_BC).toBe(34);
    expect(C.VIRTIO_SND_CHMAP_BLC).toBe(35);
    expect(C.VIRTIO_SND_CHMAP_BRC).toBe(36);
  });

  it("allows at most 18 channels", () => {
    expect(C.VIRTIO_SND_CHMAP_MAX_SIZE).toBe(18);
  });
});

describe("control elements (§5.14.6.10)", () => {
  it("numbers the roles 0..3", () => {
    expectEnum("VIRTIO_SND_CTL_ROLE_", ["UNDEFINED", "VOLUME", "MUTE", "GAIN"]);
  });

  it("numbers the types 0..5", () => {
    expectEnum("VIRTIO_SND_CTL_TYPE_", ["BOOLEAN", "INTEGER", "INTEGER64", "ENUMERATED", "BYTES", "IEC958"]);
  });

  it("numbers the access bits 0..6", () => {
    expectEnum("VIRTIO_SND_CTL_ACCESS_", [
      "READ",
      "WRITE",
      "VOLATILE",
      "INACTIVE",
      "TLV_READ",
      "TLV_WRITE",
      "TLV_COMMAND",
    ]);
  });

  it("numbers the event mask bits 0..2", () => {
    expectEnum("VIRTIO_SND_CTL_EVT_MASK_", ["VALUE", "INFO", "TLV"]);
  });

  it("limits count per type as §5.14.6.10.1.1 lists", () => {
    const max = C.VIRTIO_SND_CTL_MAX_COUNT;
    expect(max[C.VIRTIO_SND_CTL_TYPE_BOOLEAN]).toBe(128);
    expect(max[C.VIRTIO_SND_CTL_TYPE_INTEGER]).toBe(128);
    expect(max[C.VIRTIO_SND_CTL_TYPE_INTEGER64]).toBe(64);
    expect(max[C.VIRTIO_SND_CTL_TYPE_ENUMERATED]).toBe(128);
    expect(max[C.VIRTIO_SND_CTL_TYPE_BYTES]).toBe(512);
    expect(max[C.VIRTIO_SND_CTL_TYPE_IEC958]).toBe(1);
    expect(max).toHaveLength(6);
  });
});
