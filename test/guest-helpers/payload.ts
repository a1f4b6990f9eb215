/**
 * The payload archive both test guests (QEMU and v86) take: a gzipped "newc"
 * cpio holding /payload/run.sh and its files, appended to the guest's base
 * initramfs (the kernel unpacks concatenated archives in order).
 */
import { gzipSync } from "node:zlib";

export interface GuestPayload {
  /** /payload/run.sh, sourced by sh in /payload after /lib/guest-lib.sh. */
  script: string;
  /** Files placed at /payload/<name> (subdirectories allowed). */
  files?: Record<string, Uint8Array | string>;
}

export interface CpioEntry {
  name: string;
  /** Absent for a directory. */
  data?: Uint8Array;
  mode?: number;
}

/** An uncompressed "newc" cpio archive (the format the kernel's initramfs unpacker reads). */
export function makeCpio(entries: CpioEntry[]): Uint8Array {
  const chunks: Uint8Array[] = [];
  let length = 0;
  const push = (b: Uint8Array) => {
    chunks.push(b);
    length += b.length;
  };
  const pad4 = () => {
    if (length % 4) push(new Uint8Array(4 - (length % 4)));
  };
  const hex = (n: number) => n.toString(16).padStart(8, "0");
  let ino = 1;
  const write = (name: string, mode: number, data: Uint8Array) => {
    const nameBytes = Buffer.from(`${name}\0`, "utf8");
    const header =
      "070701" +
      hex(ino++) +
      hex(mode) +
      hex(0) + // uid
      hex(0) + // gid
      hex(mode & 0o040000 ? 2 : 1) + // nlink
      hex(0) + // mtime
      hex(data.length) +
      hex(0) + // devmajor
      hex(0) + // devminor
      hex(0) + // rdevmajor
      hex(0) + // rdevminor
      hex(nameBytes.length) +
      hex(0); // check
    push(Buffer.from(header, "ascii"));
    push(nameBytes);
    pad4();
    push(data);
    pad4();
  };
  const dirs = new Set<string>();
  const mkdirs = (path: string) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const dir = parts.slice(0, i).join("/");
      if (!dirs.has(dir)) {
        dirs.add(dir);
        write(dir, 0o040755, new Uint8Array(0));
      }
    }
  };
  for (const e of entries) {
    const name = e.name.replace(/^\/+/, "");
    if (!name || name.split("/").some((p) => p === ".." || p === ""))
      throw new Error(`bad cpio name ${e.name}`);
    mkdirs(name);
    if (e.data === undefined) {
      if (!dirs.has(name)) {
        dirs.add(name);
        write(name, 0o040000 | (e.mode ?? 0o755), new Uint8Array(0));
      }
    } else {
      write(name, 0o100000 | (e.mode ?? 0o644), e.data);
    }
  }
  write("TRAILER!!!", 0, new Uint8Array(0));
  const out = new Uint8Array(length);
  let off = 0;
  for (const c of chunks) {
    out.set(c, off);
    off += c.length;
  }
  return out;
}

/** The payload archive: /payload/run.sh and /payload/<name> for each file. */
export function makePayload(payload: GuestPayload): Uint8Array {
  const entries: CpioEntry[] = [
    { name: "payload" },
    { name: "payload/run.sh", data: Buffer.from(payload.script, "utf8"), mode: 0o755 },
  ];
  for (const [name, data] of Object.entries(payload.files ?? {})) {
    entries.push({ name: `payload/${name}`, data: typeof data === "string" ? Buffer.from(data) : data });
  }
  return gzipSync(makeCpio(entries));
}
