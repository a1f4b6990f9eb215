import { describe, expect, it } from "vitest";
import * as api from "../../src/index.js";
import { controlName as guestControlName } from "../../src/driver/simulated-guest.js";
import { PCM_FORMAT_NAMES as wavFormatNames, pcmFormatName as wavFormatName } from "../../src/node/wav.js";
import {
  PCM_FORMAT_NAMES,
  controlName,
  eventName,
  isEventCode,
  pcmFormatName,
  requestName,
  statusName,
} from "../../src/spec/names.js";

/* The names below are transcribed from the spec (§5.14.6), not derived from constants.ts. */

describe("the spec's names of codes and formats", () => {
  it("names every request code", () => {
    const requests: [number, string][] = [
      [0x0001, "JACK_INFO"],
      [0x0002, "JACK_REMAP"],
      [0x0100, "PCM_INFO"],
      [0x0101, "PCM_SET_PARAMS"],
      [0x0102, "PCM_PREPARE"],
      [0x0103, "PCM_RELEASE"],
      [0x0104, "PCM_START"],
      [0x0105, "PCM_STOP"],
      [0x0200, "CHMAP_INFO"],
      [0x0300, "CTL_INFO"],
      [0x0301, "CTL_ENUM_ITEMS"],
      [0x0302, "CTL_READ"],
      [0x0303, "CTL_WRITE"],
      [0x0304, "CTL_TLV_READ"],
      [0x0305, "CTL_TLV_WRITE"],
      [0x0306, "CTL_TLV_COMMAND"],
    ];
    for (const [code, name] of requests) {
      expect(requestName(code)).toBe(name);
      expect(controlName(code)).toBe(name);
    }
  });

  it("names every status code", () => {
    const statuses: [number, string][] = [
      [0x8000, "OK"],
      [0x8001, "BAD_MSG"],
      [0x8002, "NOT_SUPP"],
      [0x8003, "IO_ERR"],
    ];
    for (const [code, name] of statuses) {
      expect(statusName(code)).toBe(name);
      expect(controlName(code)).toBe(name);
    }
  });

  it("names every event code", () => {
    const events: [number, string][] = [
      [0x1000, "JACK_CONNECTED"],
      [0x1001, "JACK_DISCONNECTED"],
      [0x1100, "PCM_PERIOD_ELAPSED"],
      [0x1101, "PCM_XRUN"],
      [0x1200, "CTL_NOTIFY"],
    ];
    for (const [code, name] of events) {
      expect(eventName(code)).toBe(name);
      expect(isEventCode(code)).toBe(true);
    }
    expect(isEventCode(0x1102)).toBe(false);
    expect(isEventCode(0x8000)).toBe(false);
  });

  it("gives an unknown code in hex, and keeps the kinds apart", () => {
    expect(requestName(0x0106)).toBe("0x106");
    expect(requestName(0x8000)).toBe("0x8000");
    expect(statusName(0x0101)).toBe("0x101");
    expect(eventName(0x8001)).toBe("0x8001");
    expect(controlName(0x1100)).toBe("0x1100");
    expect(controlName(-1)).toBe("0xffffffff");
  });

  it("names the PCM formats by value", () => {
    expect(PCM_FORMAT_NAMES).toEqual([
      "IMA_ADPCM",
      "MU_LAW",
      "A_LAW",
      "S8",
      "U8",
      "S16",
      "U16",
      "S18_3",
      "U18_3",
      "S20_3",
      "U20_3",
      "S24_3",
      "U24_3",
      "S20",
      "U20",
      "S24",
      "U24",
      "S32",
      "U32",
      "FLOAT",
      "FLOAT64",
      "DSD_U8",
      "DSD_U16",
      "DSD_U32",
      "IEC958_SUBFRAME",
    ]);
    expect(pcmFormatName(5)).toBe("S16");
    expect(pcmFormatName(25)).toBe("format 25");
    expect(pcmFormatName(-1)).toBe("format -1");
  });

  it("is the one table behind the older places these names were exported from", () => {
    expect(guestControlName).toBe(controlName);
    expect(wavFormatName).toBe(pcmFormatName);
    expect(wavFormatNames).toBe(PCM_FORMAT_NAMES);
    const exported = api as Record<string, unknown>;
    for (const [name, value] of Object.entries({
      controlName,
      requestName,
      statusName,
      eventName,
      pcmFormatName,
      PCM_FORMAT_NAMES,
    }))
      expect(exported[name], name).toBe(value);
  });
});
