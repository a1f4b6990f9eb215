#!/usr/bin/env node
/**
 * Builds the optional vhost-user native addon (native/, a plain N-API C file)
 * with node-gyp. It is the package's "install" script, so it must never fail
 * an installation: on a platform other than Linux, or when anything goes wrong
 * (no compiler, no python3, no node-gyp, no headers), it prints ONE line saying
 * why and exits 0. Only vhost-user needs the addon; everything else works.
 *
 *   node scripts/build-native.mjs [--force]
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
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from "node:fs";
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

/** Every file under native/ except build/, sorted. */
function sourceFiles(dir = nativeDir) {
  const files = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) {
      if (path !== buildDir) files.push(...sourceFiles(path));
    } else if (entry.isFile()) {
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

function main() {
  if (process.platform !== "linux") giveUp(`vhost-user needs Linux, this is ${process.platform}`);
  if (process.env.VIRTIO_SND_SKIP_NATIVE && process.env.VIRTIO_SND_SKIP_NATIVE !== "0") {
    giveUp("VIRTIO_SND_SKIP_NATIVE is set");
  }
  if (!existsSync(join(nativeDir, "binding.gyp")))
    giveUp(`no sources: ${join(nativeDir, "binding.gyp")} is missing`);

  const force = process.argv.includes("--force");
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
