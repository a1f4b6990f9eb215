/**
 * Divergences in words, for the replay's result and its messages.
 *
 * No Node built-ins: this is core code.
 */
import { toHex } from "./bytes.js";
import type { Divergence } from "./replay-types.js";

const QUEUE_NAMES = ["control", "event", "tx", "rx"];

/** A few bytes of hex around `at`, for messages. */
export function hexAround(bytes: Uint8Array, at: number): string {
  if (at >= bytes.length) return "(nothing)";
  const from = Math.max(0, at - 4);
  const to = Math.min(bytes.length, at + 5);
  const s =
    toHex(bytes.subarray(from, at)) +
    "[" +
    toHex(bytes.subarray(at, at + 1)) +
    "]" +
    toHex(bytes.subarray(at + 1, to));
  return (from > 0 ? "…" : "") + s + (to < bytes.length ? "…" : "");
}

function fmtTime(ns: number): string {
  return `${(ns / 1e6).toFixed(3)} ms`;
}

/** One line for a divergence: where, then what. */
export function describeDivergence(d: Divergence): string {
  const where: string[] = [];
  if (d.queue >= 0) where.push(`${QUEUE_NAMES[d.queue] ?? `queue ${d.queue}`} queue`);
  if (d.stream !== undefined) where.push(`stream ${d.stream}`);
  if (d.message >= 0) where.push(`message ${d.message}`);
  where.push(`trace line ${d.line}`);
  where.push(`t=${fmtTime(d.t)}`);
  return `replay diverged (${d.reason}) at ${where.join(", ")}: ${d.detail}`;
}
