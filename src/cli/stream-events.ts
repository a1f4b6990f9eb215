/** How the commands (demo, vhost-user) print a stream event. */
import { pcmFormatName } from "../spec/names.js";
import { PCM_STATE_NAMES } from "../stream/pcm-state.js";
import type { StreamEvent } from "../stream/pcm-stream.js";

/**
 * "parameters set: S16, 2 ch, 48000 Hz, period 1920 B, buffer 7680 B",
 * "start (now running)" and the like; `state` is the stream's state after the event.
 */
export function describeStreamEvent(e: StreamEvent, state: number | undefined): string {
  switch (e.type) {
    case "set-params": {
      const p = e.params;
      return p === undefined
        ? "parameters set"
        : `parameters set: ${pcmFormatName(p.format)}, ${p.channels} ch, ${p.rate} Hz, ` +
            `period ${p.periodBytes} B, buffer ${p.bufferBytes} B`;
    }
    case "error":
      return `error: ${e.error?.message ?? "unknown"}`;
    case "dropped":
      return e.reason ?? "dropped a malformed message";
    default:
      return state === undefined ? e.type : `${e.type} (now ${PCM_STATE_NAMES[state] ?? state})`;
  }
}
