/**
 * The spec's names of the request, status and event codes and of the PCM
 * formats (without the VIRTIO_SND_R_ / _S_ / _EVT_ / _PCM_FMT_ prefix), for
 * logs and messages. They are read off the names in constants.ts, which are
 * exactly the spec's, so the two cannot disagree.
 */
import * as constants from "./constants.js";
import { VIRTIO_SND_PCM_FMT_COUNT } from "./constants.js";

/** value → name of the constants called `prefix` + NAME (the `COUNT` marker left out). */
function namesOf(prefix: string): ReadonlyMap<number, string> {
  const names = new Map<number, string>();
  for (const [key, value] of Object.entries(constants)) {
    if (key.startsWith(prefix) && key !== `${prefix}COUNT` && typeof value === "number")
      names.set(value, key.slice(prefix.length));
  }
  return names;
}

const REQUESTS = namesOf("VIRTIO_SND_R_");
const STATUSES = namesOf("VIRTIO_SND_S_");
const EVENTS = namesOf("VIRTIO_SND_EVT_");
const FORMATS = namesOf("VIRTIO_SND_PCM_FMT_");

const hex = (code: number): string => `0x${(code >>> 0).toString(16)}`;

/** "PCM_SET_PARAMS" for VIRTIO_SND_R_PCM_SET_PARAMS; an unknown code in hex. */
export function requestName(code: number): string {
  return REQUESTS.get(code) ?? hex(code);
}

/** "BAD_MSG" for VIRTIO_SND_S_BAD_MSG; an unknown code in hex. */
export function statusName(code: number): string {
  return STATUSES.get(code) ?? hex(code);
}

/** "PCM_XRUN" for VIRTIO_SND_EVT_PCM_XRUN; an unknown code in hex. */
export function eventName(code: number): string {
  return EVENTS.get(code) ?? hex(code);
}

/** Whether `code` is one of the spec's event codes. */
export function isEventCode(code: number): boolean {
  return EVENTS.has(code);
}

/** The name of a request or a status code, whichever it is (what the control queue carries); an unknown code in hex. */
export function controlName(code: number): string {
  return REQUESTS.get(code) ?? STATUSES.get(code) ?? hex(code);
}

/** The names of the VIRTIO_SND_PCM_FMT_* values, by value. */
export const PCM_FORMAT_NAMES: readonly string[] = Array.from(
  { length: VIRTIO_SND_PCM_FMT_COUNT },
  (_, format) => FORMATS.get(format) ?? `format ${format}`,
);

/** "S16" for VIRTIO_SND_PCM_FMT_S16; an unknown format as "format N". */
export function pcmFormatName(format: number): string {
  return PCM_FORMAT_NAMES[format] ?? `format ${format}`;
}
