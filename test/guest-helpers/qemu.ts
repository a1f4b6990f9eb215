/**
 * Boot a real Linux guest under QEMU (TCG) for end-to-end tests.
 *
 * The guest is built by scripts/guest/build-guest.sh: a Debian backports
 * kernel (virtio_snd as a module) and a busybox + alsa-utils initramfs whose
 * /init loads the sound modules, runs /payload/run.sh and powers off.
 * bootGuest() appends a second, gzipped cpio archive holding the payload to
 * that initramfs (the kernel unpacks concatenated archives in order).
 *
 * Inside run.sh these helpers exist (from /lib/guest-lib.sh):
 *   marker KEY VALUE...    print "@@VSND KEY=VALUE"; parsed into `markers`
 *   step KEY CMD ARGS...   run CMD, then print "@@VSND KEY=<exit code>"
 *   emit_file NAME PATH    return PATH to the host as files[NAME]
 * /init adds the markers boot, kernel, snd (ready/timeout/absent), ready,
 * payload.exit (137: killed at payloadTimeoutMs), done (and insmod.failed=MODULE
 * on a failed module).
 *
 * Emitted files come back as a tar written to a raw virtio-blk disk (serial
 * "vsnd-out") when `outputDisk` is given (use it for anything larger than a
 * few kilobytes), else base64 on the serial console.
 */
import { execFile, execFileSync, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type GuestPayload, makePayload } from "./payload.js";

export { type CpioEntry, type GuestPayload, makeCpio, makePayload } from "./payload.js";

export const REPO_DIR = resolve(import.meta.dirname, "../..");
export const BUILD_SCRIPT = join(REPO_DIR, "scripts/guest/build-guest.sh");
export const INSTALL_SCRIPT = join(REPO_DIR, "scripts/guest/install-qemu.sh");
/**
 * Where the guest is built: $VSND_GUEST_CACHE, else the user's cache folder,
 * so every checkout on a machine (and every CI run) shares one build.
 */
export const DEFAULT_GUEST_DIR =
  process.env["VSND_GUEST_CACHE"] ??
  join(process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "virtio-snd/guest");
/**
 * Kernel command line; bootGuest adds options.append after it. no_timer_check: under TCG on a
 * loaded host the kernel's boot-time check of the timer interrupt can miss its window and panic
 * ("IO-APIC + timer doesn't work!"), though the timer works.
 */
export const DEFAULT_APPEND = "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check";

// ------------------------------------------------------------------ QEMU --

export type QemuProbe =
  { ok: true; path: string; version: string; major: number; minor: number } | { ok: false; reason: string };

/**
 * Find qemu-system-x86_64 ($QEMU, else on PATH) of at least `minMajor`, and
 * optionally having the named -device types. Never throws.
 */
export function findQemu(options: { minMajor?: number; devices?: string[] } = {}): QemuProbe {
  const minMajor = options.minMajor ?? 10;
  const path = process.env["QEMU"] ?? "qemu-system-x86_64";
  let out: string;
  try {
    out = execFileSync(path, ["--version"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      ok: false,
      reason:
        code === "ENOENT"
          ? `${path} not found (run scripts/guest/install-qemu.sh)`
          : `${path} --version failed: ${(e as Error).message}`,
    };
  }
  const m = /version (\d+)\.(\d+)(?:\.(\d+))?/.exec(out);
  if (!m) return { ok: false, reason: `cannot parse the version of ${path}: ${out.trim()}` };
  const major = Number(m[1]);
  const minor = Number(m[2]);
  const version = `${m[1]}.${m[2]}.${m[3] ?? "0"}`;
  if (major < minMajor) {
    return {
      ok: false,
      reason: `${path} is QEMU ${version}, need >= ${minMajor} (run scripts/guest/install-qemu.sh)`,
    };
  }
  if (options.devices?.length) {
    let help: string;
    try {
      help = execFileSync(path, ["-device", "help"], { encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
    } catch (e) {
      return { ok: false, reason: `${path} -device help failed: ${(e as Error).message}` };
    }
    const missing = options.devices.filter((d) => !help.includes(`"${d}"`));
    if (missing.length) return { ok: false, reason: `QEMU ${version} lacks device(s) ${missing.join(", ")}` };
  }
  return { ok: true, path, version, major, minor };
}

// ----------------------------------------------------------------- guest --

export interface GuestImage {
  kernel: string;
  initrd: string;
  /** Contents of versions.txt: kernel release, modules, Debian package versions. */
  versions: string;
}

function guestFiles(cacheDir: string): GuestImage {
  return {
    kernel: join(cacheDir, "vmlinuz"),
    initrd: join(cacheDir, "initramfs.cpio.gz"),
    versions: existsSync(join(cacheDir, "versions.txt"))
      ? readFileSync(join(cacheDir, "versions.txt"), "utf8")
      : "",
  };
}

/**
 * True when cacheDir holds a guest built by the current build-guest.sh. (The
 * script itself also rebuilds when Debian has newer packages; this check does
 * not ask apt, so tests do not pay for it.)
 */
export function guestIsCurrent(cacheDir: string = DEFAULT_GUEST_DIR): boolean {
  const g = guestFiles(cacheDir);
  const stamp = join(cacheDir, "stamp");
  if (!existsSync(g.kernel) || !existsSync(g.initrd) || !existsSync(stamp)) return false;
  const hash = createHash("sha256").update(readFileSync(BUILD_SCRIPT)).digest("hex");
  return readFileSync(stamp, "utf8").split("\n")[0] === `script=${hash}`;
}

/** Build the guest with scripts/guest/build-guest.sh unless the cache is current. */
export async function ensureGuest(
  cacheDir: string = DEFAULT_GUEST_DIR,
  options: { log?: (line: string) => void } = {},
): Promise<GuestImage> {
  if (!guestIsCurrent(cacheDir)) {
    await new Promise<void>((resolveBuild, reject) => {
      execFile(
        "bash",
        [BUILD_SCRIPT, cacheDir],
        { maxBuffer: 16 << 20, timeout: 15 * 60_000 },
        (err, stdout, stderr) => {
          for (const line of `${stdout}${stderr}`.split("\n")) if (line) options.log?.(line);
          if (err) reject(new Error(`build-guest.sh failed: ${err.message}\n${stdout}${stderr}`));
          else resolveBuild();
        },
      );
    });
  }
  const g = guestFiles(cacheDir);
  if (!existsSync(g.kernel) || !existsSync(g.initrd)) throw new Error(`no guest in ${cacheDir} after build`);
  return g;
}

// ------------------------------------------------------------- results --

/** Files in a ustar archive (as busybox tar writes it). */
export function parseTar(buf: Uint8Array): Record<string, Uint8Array> {
  const files: Record<string, Uint8Array> = {};
  const text = (from: number, len: number) => {
    const b = buf.subarray(from, from + len);
    const end = b.indexOf(0);
    return Buffer.from(end < 0 ? b : b.subarray(0, end)).toString("utf8");
  };
  let off = 0;
  let longName: string | undefined;
  while (off + 512 <= buf.length) {
    if (buf.subarray(off, off + 512).every((b) => b === 0)) break;
    const size = parseInt(text(off + 124, 12).trim() || "0", 8);
    const type = String.fromCharCode(buf[off + 156] ?? 0);
    // POSIX ustar ("ustar\0") has a name prefix; GNU tar ("ustar  ", as busybox writes) does not.
    const prefix = text(off + 257, 6) === "ustar" ? text(off + 345, 155) : "";
    let name = longName ?? (prefix ? `${prefix}/${text(off, 100)}` : text(off, 100));
    longName = undefined;
    const data = buf.subarray(off + 512, off + 512 + size);
    if (type === "L") {
      longName = text(off + 512, size);
    } else if (type === "0" || type === "\0") {
      name = name.replace(/^\.\//, "");
      files[name] = Uint8Array.from(data);
    }
    off += 512 + Math.ceil(size / 512) * 512;
  }
  return files;
}

export interface ParsedConsole {
  markers: Record<string, string>;
  files: Record<string, Uint8Array>;
  errors: string[];
}

/** Markers ("@@VSND key=value") and base64 file blocks from a console log. */
export function parseConsole(console: string): ParsedConsole {
  const markers: Record<string, string> = {};
  const files: Record<string, Uint8Array> = {};
  const errors: string[] = [];
  let file: { name: string; size: number; b64: string[] } | undefined;
  for (const raw of console.split("\n")) {
    const line = raw.replace(/\r/g, "");
    if (file) {
      const end = /@@VSND-FILE-END (\S+)/.exec(line);
      if (end) {
        const data = Buffer.from(file.b64.join(""), "base64");
        if (data.length === file.size) files[file.name] = Uint8Array.from(data);
        else errors.push(`file ${file.name}: ${data.length} bytes decoded, ${file.size} announced`);
        file = undefined;
      } else if (/^[A-Za-z0-9+/=]+$/.test(line.trim())) {
        file.b64.push(line.trim());
      }
      continue;
    }
    const begin = /@@VSND-FILE-BEGIN (\S+) (\d+)/.exec(line);
    if (begin) {
      file = { name: begin[1]!, size: Number(begin[2]), b64: [] };
      continue;
    }
    const m = /@@VSND ([A-Za-z0-9_.:-]+)=(.*)$/.exec(line);
    if (m) markers[m[1]!] = m[2]!;
  }
  if (file) errors.push(`file ${file.name}: no end marker`);
  return { markers, files, errors };
}

// ------------------------------------------------------------------ boot --

export interface BootOptions {
  kernel: string;
  initrd: string;
  payload: GuestPayload;
  /** Extra QEMU arguments, e.g. ["-audiodev", "wav,id=a,path=x.wav", "-device", "virtio-sound-pci,audiodev=a"]. */
  devices?: string[];
  /** Guest RAM in MiB (default 512). */
  memory?: number;
  /**
   * Back guest RAM with a shared memfd (`-object memory-backend-memfd,share=on`
   * + `-machine memory-backend=mem`): needed by vhost-user devices.
   */
  sharedMemory?: boolean;
  /** Kill QEMU after this long (default 120 s). */
  timeoutMs?: number;
  /**
   * Kill the payload inside the guest after this long (kernel option
   * vsnd.timeout; payload.exit becomes 137), so that its output and emitted
   * files still come back. Keep it well under timeoutMs (boot takes 5-15 s).
   */
  payloadTimeoutMs?: number;
  /** Attach a raw virtio-blk disk of this many bytes for emit_file (serial vsnd-out). */
  outputDisk?: number;
  /** Appended to DEFAULT_APPEND. */
  append?: string;
  /** qemu-system-x86_64 to run (default: findQemu's). */
  qemu?: string;
  /** Called with console output as it arrives (e.g. process.stdout.write for debugging). */
  onConsole?: (text: string) => void;
  /** Keep the temporary directory (combined initrd, disk image) for inspection. */
  keepTemp?: boolean;
}

export interface BootResult {
  /** QEMU's exit code (null if it was killed). */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  durationMs: number;
  /** The serial console (QEMU's stdout with -nographic). */
  console: string;
  /** QEMU's own stderr (warnings, errors). */
  stderr: string;
  markers: Record<string, string>;
  /** Files given to emit_file in the guest. */
  files: Record<string, Uint8Array>;
  /** Problems decoding returned files. */
  errors: string[];
  /** The raw output disk, when outputDisk was given. */
  disk?: Uint8Array;
  /** The exact command run. */
  argv: string[];
  tempDir: string;
}

export function qemuArgs(
  o: Pick<BootOptions, "kernel" | "devices" | "memory" | "sharedMemory" | "append" | "payloadTimeoutMs">,
  initrd: string,
  disk?: string,
): string[] {
  const mem = o.memory ?? 512;
  const args = ["-accel", "tcg", "-cpu", "max", "-m", `${mem}M`, "-nographic", "-no-reboot", "-nic", "none"];
  args.push("-kernel", o.kernel, "-initrd", initrd);
  let append = DEFAULT_APPEND;
  if (o.payloadTimeoutMs) append += ` vsnd.timeout=${Math.max(1, Math.ceil(o.payloadTimeoutMs / 1000))}`;
  if (o.append) append += ` ${o.append}`;
  args.push("-append", append);
  if (o.sharedMemory) {
    args.push(
      "-object",
      `memory-backend-memfd,id=mem,size=${mem}M,share=on`,
      "-machine",
      "memory-backend=mem",
    );
  }
  if (disk) {
    args.push("-drive", `file=${disk},format=raw,if=none,id=vsndout`);
    args.push("-device", "virtio-blk-pci,drive=vsndout,serial=vsnd-out");
  }
  args.push(...(o.devices ?? []));
  return args;
}

/** Boot the guest with a payload; resolves when QEMU exits or is killed at the timeout. */
export async function bootGuest(options: BootOptions): Promise<BootResult> {
  let qemu = options.qemu;
  if (!qemu) {
    const probe = findQemu();
    if (!probe.ok) throw new Error(probe.reason);
    qemu = probe.path;
  }
  const tempDir = await mkdtemp(join(tmpdir(), "vsnd-guest-"));
  try {
    const initrd = join(tempDir, "initrd.cpio.gz");
    await writeFile(initrd, Buffer.concat([await readFile(options.initrd), makePayload(options.payload)]));
    let disk: string | undefined;
    if (options.outputDisk) {
      disk = join(tempDir, "out.img");
      const fh = await open(disk, "w");
      await fh.truncate(Math.ceil(options.outputDisk / 512) * 512);
      await fh.close();
    }
    const args = qemuArgs(options, initrd, disk);
    const timeoutMs = options.timeoutMs ?? 120_000;
    const start = Date.now();
    const { exitCode, signal, timedOut, stdout, stderr } = await new Promise<{
      exitCode: number | null;
      signal: NodeJS.Signals | null;
      timedOut: boolean;
      stdout: string;
      stderr: string;
    }>((resolveRun, reject) => {
      const child = spawn(qemu, args, { stdio: ["ignore", "pipe", "pipe"] });
      const out: string[] = [];
      const err: string[] = [];
      let timedOut = false;
      child.stdout.setEncoding("utf8").on("data", (s: string) => {
        out.push(s);
        options.onConsole?.(s);
      });
      child.stderr.setEncoding("utf8").on("data", (s: string) => err.push(s));
      const timer = setTimeout(() => {
        timedOut = true;
        child.kill("SIGKILL");
      }, timeoutMs);
      child.on("error", (e) => {
        clearTimeout(timer);
        reject(e);
      });
      child.on("close", (code, sig) => {
        clearTimeout(timer);
        resolveRun({ exitCode: code, signal: sig, timedOut, stdout: out.join(""), stderr: err.join("") });
      });
    });
    const durationMs = Date.now() - start;
    const parsed = parseConsole(stdout);
    const result: BootResult = {
      exitCode,
      signal,
      timedOut,
      durationMs,
      console: stdout,
      stderr,
      markers: parsed.markers,
      files: parsed.files,
      errors: parsed.errors,
      argv: [qemu, ...args],
      tempDir,
    };
    if (disk) {
      result.disk = new Uint8Array(await readFile(disk));
      const tarSize = Number(parsed.markers["out.tar"] ?? 0);
      if (tarSize > 0) Object.assign(result.files, parseTar(result.disk.subarray(0, tarSize)));
      if (parsed.markers["out.error"]) result.errors.push(parsed.markers["out.error"]);
    }
    return result;
  } finally {
    if (!options.keepTemp) await rm(tempDir, { recursive: true, force: true });
  }
}

/** A one-line summary of a boot for test logs. */
export function describeBoot(r: BootResult): string {
  const m = r.markers;
  return (
    `qemu exit=${r.exitCode ?? r.signal}${r.timedOut ? " (timed out)" : ""} in ${(r.durationMs / 1000).toFixed(1)} s; ` +
    `guest init at ${m["boot"] ?? "?"} s, payload at ${m["ready"] ?? "?"} s, done at ${m["done"] ?? "?"} s (guest uptime)`
  );
}
