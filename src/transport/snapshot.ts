import { VirtioSndError } from "../errors.js";

/**
 * Transport snapshots are small JSON documents of ASCII characters (numbers,
 * booleans, hex strings), stored one byte per character: no text codec needed,
 * so the same code runs in any JavaScript engine.
 */
export function encodeSnapshot(value: unknown): Uint8Array {
  const json = JSON.stringify(value);
  const out = new Uint8Array(json.length);
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c > 0x7e) throw new VirtioSndError("ERR_INVALID_SNAPSHOT", "snapshot text is not ASCII");
    out[i] = c;
  }
  return out;
}

/** The document of encodeSnapshot; ERR_INVALID_SNAPSHOT for bytes that are not one. */
export function decodeSnapshot(bytes: Uint8Array, format: string): Record<string, unknown> {
  let text = "";
  const CHUNK = 8192;
  for (let i = 0; i < bytes.length; i += CHUNK) {
    const part = bytes.subarray(i, i + CHUNK);
    for (const b of part) {
      if (b > 0x7e) throw new VirtioSndError("ERR_INVALID_SNAPSHOT", `${format} snapshot is not ASCII JSON`);
    }
    text += String.fromCharCode(...part);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch (err) {
    throw new VirtioSndError("ERR_INVALID_SNAPSHOT", `${format} snapshot is not JSON`, { cause: err });
  }
  const d = doc as { format?: unknown; version?: unknown } | null;
  if (d === null || typeof d !== "object" || d.format !== format || d.version !== 1) {
    throw new VirtioSndError("ERR_INVALID_SNAPSHOT", `not a version 1 ${format} snapshot`);
  }
  return d as Record<string, unknown>;
}

export function toHex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/** Bytes of a hex string of exactly `length` bytes, or null. */
export function fromHex(hex: unknown, length: number): Uint8Array | null {
  if (typeof hex !== "string" || hex.length !== length * 2 || !/^[0-9a-f]*$/.test(hex)) return null;
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return out;
}
