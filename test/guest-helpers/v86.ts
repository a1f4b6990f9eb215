/**
 * Boot a real Linux guest inside v86 (npm `v86`, a 32-bit x86 PC emulator in
 * WebAssembly) in this Node process, for end-to-end tests of the embedding API.
 *
 * The guest is built by scripts/guest-v86/build-v86-guest.sh: an i386 kernel
 * compiled with virtio_pci and the virtio sound driver built in, a busybox +
 * alsa-utils (i386) initramfs, and SeaBIOS. Its /init runs /payload/run.sh
 * with the same helpers and markers as the QEMU guest (see qemu.ts): marker,
 * step, emit_file; markers boot, kernel, snd (ready/timeout/absent), ready,
 * payload.exit (137: killed at payloadTimeoutMs), done. Emitted files come
 * back as base64 on the serial console, so keep them small (print checksums).
 *
 * bootV86Guest() calls `setup(emulator)` after v86 has built its machine and
 * before it runs: that is where a test attaches PCI devices, so that SeaBIOS
 * assigns their BARs and interrupt lines.
 */
import { execFile, execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import type { V86, V86Options } from "v86";
import { type GuestPayload, makePayload } from "./payload.js";
import { REPO_DIR, parseConsole } from "./qemu.js";

export const V86_VERSION = "0.5.462";
export const V86_BUILD_SCRIPT = join(REPO_DIR, "scripts/guest-v86/build-v86-guest.sh");
export const V86_INSTALL_SCRIPT = join(REPO_DIR, "scripts/guest-v86/install-deps.sh");
export const V86_KERNEL_CONFIG = join(REPO_DIR, "scripts/guest-v86/kernel.config");
/** The kernel source the build script compiles (a Debian package's tarball). */
const KERNEL_SOURCE = "/usr/src/linux-source-6.12.tar.xz";
/** Where the guest is built: $VSND_GUEST_CACHE_V86, else the user's cache folder. */
export const DEFAULT_V86_GUEST_DIR =
  process.env["VSND_GUEST_CACHE_V86"] ??
  join(process.env["XDG_CACHE_HOME"] ?? join(homedir(), ".cache"), "virtio-snd/v86");
/**
 * Kernel command line; bootV86Guest adds options.append after it. tsc=reliable:
 * v86's TSC and PIT drift apart by milliseconds under load, the kernel would
 * otherwise fall back to the (slow to read) PIT as its clock.
 */
export const DEFAULT_V86_CMDLINE = "console=ttyS0 tsc=reliable quiet loglevel=3";

// ------------------------------------------------------------------ probe --

export interface V86GuestImage {
  bzImage: string;
  initrd: string;
  bios: string;
  /** Contents of versions.txt: kernel release, source and package versions. */
  versions: string;
}

export type V86Probe =
  | {
      ok: true;
      /** build/v86.wasm of the installed package. */
      wasmPath: string;
      version: string;
      /** The built guest, or null when ensureV86Guest() still has to build it. */
      guest: V86GuestImage | null;
    }
  | { ok: false; reason: string };

function v86Package(): { wasmPath: string; version: string } | { reason: string } {
  let pkgJson: string;
  try {
    // The package has no "exports" map, so its package.json resolves directly.
    pkgJson = createRequire(import.meta.url).resolve("v86/package.json");
  } catch {
    return { reason: `the v86 package is not installed (npm install --save-dev v86@${V86_VERSION})` };
  }
  const version = (JSON.parse(readFileSync(pkgJson, "utf8")) as { version?: string }).version ?? "?";
  const wasmPath = join(dirname(pkgJson), "build/v86.wasm");
  if (!existsSync(wasmPath)) return { reason: `v86 ${version} has no ${wasmPath}` };
  return { wasmPath, version };
}

function guestFiles(cacheDir: string): V86GuestImage {
  const versions = join(cacheDir, "versions.txt");
  return {
    bzImage: join(cacheDir, "bzImage"),
    initrd: join(cacheDir, "initramfs.cpio.gz"),
    bios: join(cacheDir, "bios.bin"),
    versions: existsSync(versions) ? readFileSync(versions, "utf8") : "",
  };
}

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

/**
 * True when cacheDir holds a guest built by the current build script from the
 * current kernel.config. (The script also rebuilds when Debian has newer
 * packages; this check does not ask apt, so tests do not pay for it.)
 */
export function v86GuestIsCurrent(cacheDir: string = DEFAULT_V86_GUEST_DIR): boolean {
  const g = guestFiles(cacheDir);
  const stamp = join(cacheDir, "stamp");
  if (![g.bzImage, g.initrd, g.bios, stamp].every((f) => existsSync(f))) return false;
  const lines = readFileSync(stamp, "utf8").split("\n");
  return (
    lines[0] === `script=${sha256(V86_BUILD_SCRIPT)}` && lines[1] === `config=${sha256(V86_KERNEL_CONFIG)}`
  );
}

/** Why the build script cannot run here, or null when it can. */
function buildBlocker(): string | null {
  const fix = `run ${V86_INSTALL_SCRIPT} as root`;
  if (!existsSync(V86_BUILD_SCRIPT)) return `${V86_BUILD_SCRIPT} is missing`;
  const tools = [
    "apt-get",
    "dpkg-deb",
    "readelf",
    "cpio",
    "gzip",
    "xz",
    "make",
    "gcc",
    "bc",
    "flex",
    "bison",
  ];
  const missing = tools.filter((t) => {
    try {
      execFileSync("sh", ["-c", `command -v ${t}`], { stdio: "ignore" });
      return false;
    } catch {
      return true;
    }
  });
  if (missing.length) return `the v86 guest is not built and ${missing.join(", ")} not found (${fix})`;
  if (!existsSync(KERNEL_SOURCE))
    return `the v86 guest is not built and ${KERNEL_SOURCE} is missing (${fix})`;
  try {
    const archs = execFileSync("dpkg", ["--print-foreign-architectures"], { encoding: "utf8" });
    if (!archs.split("\n").includes("i386")) return `the v86 guest is not built and dpkg lacks i386 (${fix})`;
  } catch (e) {
    return `dpkg --print-foreign-architectures failed: ${(e as Error).message}`;
  }
  return null;
}

/**
 * Whether the v86 guest can run here: the v86 package, and a built guest or
 * the tools to build it. Never throws.
 */
export function findV86Guest(cacheDir: string = DEFAULT_V86_GUEST_DIR): V86Probe {
  try {
    const pkg = v86Package();
    if ("reason" in pkg) return { ok: false, reason: pkg.reason };
    if (v86GuestIsCurrent(cacheDir)) return { ok: true, ...pkg, guest: guestFiles(cacheDir) };
    const blocker = buildBlocker();
    if (blocker) return { ok: false, reason: blocker };
    return { ok: true, ...pkg, guest: null };
  } catch (e) {
    return { ok: false, reason: `probing the v86 guest failed: ${(e as Error).message}` };
  }
}

/**
 * For a test file that boots the v86 guest: why it cannot run here (null when
 * it can; else also logged as "`tests` skipped: ..."), and the suffix its
 * test names then carry.
 */
export function v86GuestProblem(tests: string): { problem: string | null; skipReason: string } {
  const probe = findV86Guest();
  if (probe.ok) return { problem: null, skipReason: "" };
  console.warn(`${tests} skipped: ${probe.reason}`);
  return { problem: probe.reason, skipReason: ` [skipped: ${probe.reason}]` };
}

/** Build the guest with build-v86-guest.sh unless the cache is current (a first build takes minutes). */
export async function ensureV86Guest(
  cacheDir: string = DEFAULT_V86_GUEST_DIR,
  options: { log?: (line: string) => void } = {},
): Promise<V86GuestImage> {
  if (!v86GuestIsCurrent(cacheDir)) {
    await new Promise<void>((resolveBuild, reject) => {
      execFile(
        "bash",
        [V86_BUILD_SCRIPT, cacheDir],
        { maxBuffer: 16 << 20, timeout: 20 * 60_000 },
        (err, stdout, stderr) => {
          for (const line of `${stdout}${stderr}`.split("\n")) if (line) options.log?.(line);
          if (err) reject(new Error(`build-v86-guest.sh failed: ${err.message}\n${stdout}${stderr}`));
          else resolveBuild();
        },
      );
    });
  }
  if (!v86GuestIsCurrent(cacheDir)) throw new Error(`no current v86 guest in ${cacheDir} after the build`);
  return guestFiles(cacheDir);
}

// ------------------------------------------------------------------- boot --

export interface V86BootOptions {
  payload: GuestPayload;
  /** The guest (default: the one in DEFAULT_V86_GUEST_DIR, which must be built). */
  guest?: V86GuestImage;
  /** Stop the emulator after this long (default 120 s). */
  timeoutMs?: number;
  /**
   * Kill the payload inside the guest after this long (kernel option
   * vsnd.timeout; payload.exit becomes 137), so that its output still comes back.
   */
  payloadTimeoutMs?: number;
  /** Guest RAM in MiB (default 128). */
  memoryMiB?: number;
  /** Appended to DEFAULT_V86_CMDLINE. */
  append?: string;
  /** Called with each console line (with its "\n") as it arrives. */
  onConsole?: (text: string) => void;
  /** Called once v86 has built the machine, before it runs: attach devices here. */
  setup?: (emulator: V86) => void | Promise<void>;
  /** Further V86 constructor options (they override the harness' own). */
  v86Options?: Partial<V86Options>;
  /** Called once the guest runs, with the means to move it to another emulator (a restored snapshot). */
  onRun?: (control: V86Control) => void;
}

/** The running guest's emulator, and how to replace it. */
export interface V86Control {
  /** The emulator the harness watches now. */
  readonly emulator: V86;
  /** The options the guest booted with: a V86 built from them has the same machine. */
  readonly config: V86Options;
  /**
   * Makes `next` the guest's emulator: the harness watches its console from
   * now on and destroys it at the end. The caller destroys the old one.
   */
  replace(next: V86): void;
}

export interface V86BootResult {
  markers: Record<string, string>;
  /** Host milliseconds from emulator.run() to each marker's first appearance. */
  markerMs: Record<string, number>;
  /** The serial console (ttyS0). */
  console: string;
  /** Files given to emit_file in the guest. */
  files: Record<string, Uint8Array>;
  /** Problems decoding returned files. */
  errors: string[];
  /** True when the guest did not report "done" in time. */
  timedOut: boolean;
  /** True when the kernel panicked (the console has the reason). */
  panicked: boolean;
  /** Host milliseconds from emulator.run() to the end. */
  elapsedMs: number;
}

const toArrayBuffer = (b: Uint8Array): ArrayBuffer => {
  const out = new ArrayBuffer(b.length);
  new Uint8Array(out).set(b);
  return out;
};

/**
 * Boot the guest with a payload in v86; resolves once /init reports done (or
 * the kernel panics, or at the timeout), after the emulator has been destroyed.
 */
export async function bootV86Guest(options: V86BootOptions): Promise<V86BootResult> {
  const pkg = v86Package();
  if ("reason" in pkg) throw new Error(pkg.reason);
  const guest = options.guest ?? guestFiles(DEFAULT_V86_GUEST_DIR);
  for (const f of [guest.bios, guest.bzImage, guest.initrd])
    if (!existsSync(f)) throw new Error(`${f} is missing: build the guest with ensureV86Guest() first`);
  const [bios, bzImage, base] = await Promise.all([
    readFile(guest.bios),
    readFile(guest.bzImage),
    readFile(guest.initrd),
  ]);
  let cmdline = DEFAULT_V86_CMDLINE;
  if (options.payloadTimeoutMs)
    cmdline += ` vsnd.timeout=${Math.max(1, Math.ceil(options.payloadTimeoutMs / 1000))}`;
  if (options.append) cmdline += ` ${options.append}`;

  // v86 is an optional peer dependency: load it only when a guest boots.
  const { V86: V86Class } = await import("v86");
  const config: V86Options = {
    wasm_path: pkg.wasmPath,
    bios: { buffer: toArrayBuffer(bios) },
    bzimage: { buffer: toArrayBuffer(bzImage) },
    // The kernel unpacks concatenated (compressed) cpio archives in order.
    initrd: { buffer: toArrayBuffer(Buffer.concat([base, makePayload(options.payload)])) },
    cmdline,
    memory_size: (options.memoryMiB ?? 128) << 20,
    autostart: false,
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
    // No NIC: v86 adds an NE2000 unless told otherwise ("none" is accepted
    // at runtime though v86.d.ts lists only "ne2k" | "virtio").
    net_device: { type: "none" } as unknown as NonNullable<V86Options["net_device"]>,
  };
  Object.assign(config, options.v86Options);
  let emulator = new V86Class(config);

  const lines: string[] = [];
  const markerMs: Record<string, number> = {};
  let pending: number[] = [];
  let started = 0;
  let panicked = false;
  let finish: (timedOut: boolean) => void = () => {};
  const finished = new Promise<boolean>((resolveDone) => (finish = resolveDone));
  const decoder = new TextDecoder();
  const onByte = (byte: number) => {
    pending.push(byte);
    if (byte !== 0x0a) return;
    const line = decoder.decode(Uint8Array.from(pending));
    pending = [];
    lines.push(line);
    options.onConsole?.(line);
    const m = /@@VSND ([A-Za-z0-9_.:-]+)=/.exec(line);
    if (m && !(m[1]! in markerMs)) markerMs[m[1]!] = Date.now() - started;
    if (m?.[1] === "done") finish(false);
    else if (!panicked && line.includes("Kernel panic - not syncing")) {
      panicked = true;
      // Let the rest of the panic message arrive.
      setTimeout(() => finish(false), 500);
    }
  };
  emulator.add_listener("serial0-output-byte", onByte);

  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolveReady, reject) => {
      const t = setTimeout(() => reject(new Error("v86 did not get ready in 30 s")), 30_000);
      emulator.add_listener("emulator-ready", () => {
        clearTimeout(t);
        resolveReady();
      });
    });
    await options.setup?.(emulator);
    timer = setTimeout(() => finish(true), options.timeoutMs ?? 120_000);
    started = Date.now();
    await emulator.run();
    options.onRun?.({
      get emulator() {
        return emulator;
      },
      config,
      replace(next: V86) {
        emulator.remove_listener("serial0-output-byte", onByte);
        emulator = next;
        next.add_listener("serial0-output-byte", onByte);
      },
    });
    const timedOut = await finished;
    const elapsedMs = Date.now() - started;
    if (pending.length) lines.push(decoder.decode(Uint8Array.from(pending)));
    const console = lines.join("");
    const parsed = parseConsole(console);
    return {
      markers: parsed.markers,
      markerMs,
      console,
      files: parsed.files,
      errors: parsed.errors,
      timedOut,
      panicked,
      elapsedMs,
    };
  } finally {
    clearTimeout(timer);
    await emulator.destroy();
  }
}

/** A one-line summary of a boot for test logs. */
export function describeV86Boot(r: V86BootResult): string {
  const s = (ms: number | undefined) => (ms === undefined ? "?" : (ms / 1000).toFixed(1));
  const m = r.markers;
  return (
    `v86 ${r.timedOut ? "timed out" : r.panicked ? "kernel panic" : "done"} in ${s(r.elapsedMs)} s; ` +
    `/init at ${s(r.markerMs["boot"])} s, payload at ${s(r.markerMs["ready"])} s, done at ${s(r.markerMs["done"])} s (host); ` +
    `guest uptime ${m["boot"] ?? "?"} / ${m["ready"] ?? "?"} / ${m["done"] ?? "?"} s`
  );
}
