#!/usr/bin/env node
/**
 * Builds the optional vhost-user native addon (native/, a plain N-API C file)
 * with node-gyp. It is the package's "install" script, so it must never fail
 * an installation: on a platform other than Linux, or when anything goes wrong
 * (no compiler, no python3, no node-gyp, no headers), it prints ONE line saying
 * why and exits 0. Only vhost-user needs the addon; everything else works.
 *
 * The published package carries a prebuilt addon for linux-x64 (glibc) in
 * native/prebuilds/ (made by `--prebuild`, the prepack script, with
 * prebuildify). When one for this machine loads, the install builds nothing;
 * otherwise (another platform, or VIRTIO_SND_BUILD_FROM_SOURCE=1) it builds
 * from source. At run time src/vhost-user/native.ts loads whichever exists
 * (node-gyp-build: native/build/Release first, then native/prebuilds/).
 *
 *   node scripts/build-native.mjs [--force]   install: prebuilt, else from source
 *   node scripts/build-native.mjs --prebuild  (prepack) native/prebuilds/ for this platform
 *
 * The output is native/build/Release/vhost_user_native.node. A hash of the
 * sources (and of this script) is kept in native/build/source-hash: when it
 * matches and the addon exists, nothing is rebuilt (keeps `npm ci` fast).
 * --force rebuilds anyway. VIRTIO_SND_SKIP_NATIVE=1 skips the build.
 *
 * node-gyp is, in order: $npm_config_node_gyp (npm sets it in lifecycle
 * scripts), the copy bundled with npm (next to $npm_execpath, or in the
 * prefix of the running node), `node-gyp` on PATH. Headers: npm's
 * $npm_config_nodedir when set, else the running node's own prefix when it
 * has include/node/common.gypi (distribution and official builds do), else
 * node-gyp's default (a download). The full node-gyp output goes to
 * native/build/build-native.log.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { createRequire } from "node:module";
import { dirname, join, relative } from "node:path";
import process from "node:process";
import { fileURLToPath } from "node:url";

const scriptPath = fileURLToPath(import.meta.url);
const root = join(dirname(scriptPath), "..");
const nativeDir = join(root, "native");
const buildDir = join(nativeDir, "build");
const addonPath = join(buildDir, "Release", "vhost_user_native.node");
const stampPath = join(buildDir, "source-hash");
const prebuildsDir = join(nativeDir, "prebuilds");
/** The sources a prebuild was made from (a prebuild of other sources is not used). */
const prebuildStampPath = join(prebuildsDir, "source-hash");
const logPath = join(buildDir, "build-native.log");
const BUILD_TIMEOUT_MS = 10 * 60 * 1000;

function say(line) {
  process.stdout.write(`${line}\n`);
}

function giveUp(reason) {
  process.stderr.write(
    `virtio-snd: native addon not built (${reason}); vhost-user unavailable, everything else works\n`,
  );
  process.exit(0);
}

/** Every file under native/ except build/, prebuilds/ and dot files, sorted. */
function sourceFiles(dir = nativeDir) {
  const files = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (path !== buildDir && path !== prebuildsDir) files.push(...sourceFiles(path));
    } else if (entry.isFile() && !entry.name.startsWith(".")) {
      // Dot files (.npmignore) are not sources, and the published package has none.
      files.push(path);
    }
  }
  return files.sort();
}

function sourceHash() {
  const hash = createHash("sha256");
  hash.update(`${process.platform} ${process.arch}\n`);
  for (const file of [...sourceFiles(), scriptPath]) {
    hash.update(`${relative(root, file)}\n`);
    hash.update(readFileSync(file));
  }
  return hash.digest("hex");
}

function findNodeGyp() {
  const bundled = "node_modules/node-gyp/bin/node-gyp.js";
  const candidates = [];
  if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
  // npm_execpath is npm's bin/npm-cli.js: node-gyp is bundled beside it.
  if (process.env.npm_execpath) candidates.push(join(dirname(process.env.npm_execpath), "..", bundled));
  const prefix = dirname(dirname(process.execPath));
  candidates.push(join(prefix, "lib", "node_modules", "npm", bundled));
  candidates.push(join(dirname(process.execPath), "node_modules", "npm", bundled));
  for (const candidate of candidates) {
    if (existsSync(candidate) && statSync(candidate).isFile()) {
      // A .js file runs under this node; anything else (a shell wrapper) runs as it is.
      return /\.[cm]?js$/.test(candidate)
        ? { command: process.execPath, args: [candidate], name: candidate }
        : { command: candidate, args: [], name: candidate };
    }
  }
  return { command: "node-gyp", args: [], name: "node-gyp on PATH" };
}

/** --nodedir for node-gyp when npm does not give one: the running node's own headers. */
function nodedirArgs() {
  if (process.env.npm_config_nodedir) return [];
  const prefix = dirname(dirname(process.execPath));
  const headers = join(prefix, "include", "node");
  return existsSync(join(headers, "common.gypi")) && existsSync(join(headers, "node_api.h"))
    ? [`--nodedir=${prefix}`]
    : [];
}

/** The most telling line of a failed node-gyp run. */
function failureReason(output) {
  if (/gyp ERR! find Python|Could not find any Python/.test(output))
    return "python3 not found: install python3";
  const missing =
    /No such file or directory: '([^']+)'/.exec(output) ??
    /Error: not found: (\S+)/.exec(output) ??
    /(?:^|\s)(\S+): (?:command )?not found/m.exec(output);
  if (missing) {
    const tool = missing[1];
    if (/(^|\/)make$/.test(tool)) return "make not found: install make";
    if (/(^|\/)(cc|gcc|c\+\+|g\+\+|clang|clang\+\+)(-\d+)?$/.test(tool)) {
      return `no C/C++ compiler (${tool} not found): install gcc and g++`;
    }
    return `${tool} not found`;
  }
  const lines = output.split("\n").map((line) => line.trim());
  const line =
    lines.find((l) => /: (fatal )?error: /.test(l)) ??
    lines.find((l) => /^gyp ERR! stack Error: /.test(l))?.replace(/^gyp ERR! stack /, "") ??
    lines.filter(Boolean).pop() ??
    "no output";
  return line.length > 200 ? `${line.slice(0, 197)}...` : line;
}

/**
 * The prebuilt addon for this machine in native/prebuilds/, chosen by
 * node-gyp-build's own rules (platform, arch, libc, runtime), or null. Only
 * prebuilds: a build in native/build/ is this script's own business.
 */
function prebuiltAddon() {
  let gypBuild;
  try {
    gypBuild = createRequire(import.meta.url)("node-gyp-build");
  } catch {
    return null;
  }
  const dir = join(prebuildsDir, `${process.platform}-${process.arch}`);
  if (!existsSync(dir)) return null;
  if (!existsSync(prebuildStampPath) || readFileSync(prebuildStampPath, "utf8").trim() !== sourceHash())
    return null;
  const runtime = process.versions.electron ? "electron" : "node";
  const best = readdirSync(dir)
    .map((file) => gypBuild.parseTags(file))
    .filter(gypBuild.matchTags(runtime, process.versions.modules))
    .sort(gypBuild.compareTags(runtime))[0];
  return best === undefined ? null : join(dir, best.file);
}

/** --prebuild: prebuildify in a copy of native/ (so a dev build in native/build/ stays), into native/prebuilds/. */
function prebuild() {
  if (process.platform !== "linux") {
    say(`virtio-snd: no prebuilt addon made: vhost-user needs Linux, this is ${process.platform}`);
    return;
  }
  const require = createRequire(import.meta.url);
  const bin = join(dirname(require.resolve("prebuildify/package.json")), "bin.js");
  const work = mkdtempSync(join(tmpdir(), "virtio-snd-prebuild-"));
  try {
    cpSync(join(nativeDir, "binding.gyp"), join(work, "binding.gyp"));
    cpSync(join(nativeDir, "src"), join(work, "src"), { recursive: true });
    const gyp = findNodeGyp();
    const nodedir = nodedirArgs()[0]?.slice("--nodedir=".length);
    const result = spawnSync(
      process.execPath,
      [bin, "--napi", "--strip", "--tag-libc", "--cwd", work, "--node-gyp", gyp.args[0] ?? gyp.command],
      {
        encoding: "utf8",
        stdio: ["ignore", "pipe", "pipe"],
        timeout: BUILD_TIMEOUT_MS,
        // Headers from the running node (no download), as for the install build.
        env: nodedir !== undefined ? { ...process.env, npm_config_nodedir: nodedir } : process.env,
      },
    );
    if (result.status !== 0) {
      process.stderr.write(`${result.stdout ?? ""}${result.stderr ?? ""}`);
      process.stderr.write(
        `virtio-snd: prebuildify failed: ${failureReason(`${result.stdout}${result.stderr}`)}\n`,
      );
      process.exit(1);
    }
    const target = prebuildsDir;
    rmSync(target, { recursive: true, force: true });
    cpSync(join(work, "prebuilds"), target, { recursive: true });
    writeFileSync(prebuildStampPath, `${sourceHash()}\n`);
    for (const file of readdirSync(target, { recursive: true, encoding: "utf8" }))
      if (file.endsWith(".node")) say(`virtio-snd: prebuilt native/prebuilds/${file}`);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

function main() {
  if (process.argv.includes("--prebuild")) {
    prebuild();
    return;
  }
  if (process.platform !== "linux") giveUp(`vhost-user needs Linux, this is ${process.platform}`);
  if (process.env.VIRTIO_SND_SKIP_NATIVE && process.env.VIRTIO_SND_SKIP_NATIVE !== "0") {
    giveUp("VIRTIO_SND_SKIP_NATIVE is set");
  }
  if (!existsSync(join(nativeDir, "binding.gyp")))
    giveUp(`no sources: ${join(nativeDir, "binding.gyp")} is missing`);

  const force = process.argv.includes("--force");
  const fromSource =
    process.env.VIRTIO_SND_BUILD_FROM_SOURCE && process.env.VIRTIO_SND_BUILD_FROM_SOURCE !== "0";
  if (!force && !fromSource) {
    const prebuilt = prebuiltAddon();
    if (prebuilt !== null) {
      try {
        createRequire(import.meta.url)(prebuilt);
        // A build of other sources in native/build/ would be loaded first (node-gyp-build's order).
        const stamp = existsSync(stampPath) ? readFileSync(stampPath, "utf8").trim() : "";
        if (existsSync(addonPath) && stamp !== sourceHash()) rmSync(addonPath, { force: true });
        say(`virtio-snd: using the prebuilt native addon (${relative(root, prebuilt)})`);
        return;
      } catch (error) {
        say(
          `virtio-snd: the prebuilt addon ${relative(root, prebuilt)} does not load here ` +
            `(${error instanceof Error ? error.message : String(error)}); building from source`,
        );
      }
    }
  }
  const hash = sourceHash();
  const addon = relative(root, addonPath);
  if (
    !force &&
    existsSync(addonPath) &&
    existsSync(stampPath) &&
    readFileSync(stampPath, "utf8").trim() === hash
  ) {
    say(`virtio-snd: native addon up to date (${addon})`);
    return;
  }

  const started = process.hrtime.bigint();
  const gyp = findNodeGyp();
  const result = spawnSync(gyp.command, [...gyp.args, "rebuild", "--release", ...nodedirArgs()], {
    cwd: nativeDir,
    encoding: "utf8",
    stdio: ["ignore", "pipe", "pipe"],
    timeout: BUILD_TIMEOUT_MS,
    maxBuffer: 64 * 1024 * 1024,
    env: process.env,
  });
  const output = `${result.stdout ?? ""}${result.stderr ?? ""}`;
  try {
    mkdirSync(buildDir, { recursive: true });
    writeFileSync(logPath, `$ ${gyp.name} rebuild --release ${nodedirArgs().join(" ")}\n${output}`);
  } catch {
    // The log is a convenience; its absence changes nothing.
  }
  const log = `see ${relative(root, logPath)}`;
  if (result.error) {
    const error = result.error;
    if (error.code === "ENOENT")
      giveUp(`node-gyp not found (${gyp.name}): install node-gyp or run through npm`);
    if (error.code === "ETIMEDOUT")
      giveUp(`node-gyp took longer than ${BUILD_TIMEOUT_MS / 60000} minutes; ${log}`);
    giveUp(`node-gyp could not run: ${error.message}`);
  }
  if (result.status !== 0) {
    giveUp(
      `node-gyp ${result.signal ? `killed by ${result.signal}` : `exited with ${result.status}`}: ${failureReason(output)}; ${log}`,
    );
  }
  if (!existsSync(addonPath)) giveUp(`node-gyp succeeded but ${addon} is missing; ${log}`);
  try {
    createRequire(import.meta.url)(addonPath);
  } catch (error) {
    giveUp(`${addon} was built but does not load: ${error instanceof Error ? error.message : String(error)}`);
  }
  writeFileSync(stampPath, `${hash}\n`);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  say(`virtio-snd: native addon built in ${seconds.toFixed(1)} s (${addon})`);
}

try {
  main();
} catch (error) {
  giveUp(`unexpected error: ${error instanceof Error ? error.message : String(error)}`);
}
