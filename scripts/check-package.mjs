#!/usr/bin/env node
/**
 * The package as its users meet it: `npm pack` (which runs prepack and
 * prepare), then, in a temporary folder, a consumer project that installs the
 * tarball offline (dependencies from the npm cache `npm ci` filled) and uses
 * it four ways:
 *   - an ESM consumer: `import` of "virtio-snd", "virtio-snd/node" and the
 *     test helpers' entries, "virtio-snd/testing" and "virtio-snd/testing/vhost-user";
 *   - a CommonJS consumer: `require` of each (Node's require(esm));
 *   - a TypeScript consumer compiled by tsc as CommonJS (`module: nodenext`,
 *     package type commonjs), whose output must `require` them and run;
 *   - the `virtio-snd` command from node_modules/.bin: --version, and
 *     `vhost-user` listening with the native addon (npm does not run a
 *     dependency's install script unless approved, so this needs the
 *     prebuilt binary shipped in the package).
 * It also checks the tarball's contents: no test-only code, source maps that
 * carry their sources, the prebuilt addon, every path the README names.
 *
 *   node scripts/check-package.mjs [--keep]
 *
 * Prints one line per check and facts (tarball size, require() time); exits 1
 * when a check fails. --keep leaves the temporary folder.
 */
import { spawn, spawnSync } from "node:child_process";
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import process from "node:process";
import { setTimeout, clearTimeout } from "node:timers";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const keep = process.argv.includes("--keep");
const tmp = mkdtempSync(join(tmpdir(), "virtio-snd-package-"));
const npmEnv = {
  ...process.env,
  npm_config_update_notifier: "false",
  npm_config_fund: "false",
  npm_config_audit: "false",
};
let failures = 0;

function ok(what) {
  process.stdout.write(`ok   ${what}\n`);
}
function fail(what, detail = "") {
  failures++;
  process.stdout.write(
    `FAIL ${what}${detail ? `\n     ${detail.trim().split("\n").join("\n     ")}` : ""}\n`,
  );
}
function check(condition, what, detail) {
  if (condition) ok(what);
  else fail(what, detail);
}
function fact(line) {
  process.stdout.write(`     ${line}\n`);
}

/** Runs a command; returns { status, out } (stdout + stderr). */
function run(command, args, options = {}) {
  const r = spawnSync(command, args, { encoding: "utf8", env: npmEnv, timeout: 600_000, ...options });
  return { status: r.status, out: `${r.stdout ?? ""}${r.stderr ?? ""}`, stdout: r.stdout ?? "" };
}

function write(path, text) {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, text);
}

// ------------------------------------------------------------------ pack --

const packed = run("npm", ["pack", "--json", "--pack-destination", tmp], { cwd: root });
if (packed.status !== 0) {
  fail("npm pack", packed.out);
  process.exit(1);
}
const info = JSON.parse(packed.stdout.slice(packed.stdout.indexOf("[")))[0];
const tarball = join(tmp, info.filename);
const files = info.files.map((f) => f.path);
ok(`npm pack: ${info.filename}`);
fact(
  `tarball ${(info.size / 1024).toFixed(0)} KiB, unpacked ${(info.unpackedSize / 1024).toFixed(0)} KiB, ${files.length} files`,
);

check(
  !files.some((f) => /(^|\/)test\//.test(f)),
  "none of the repository's tests in the package",
  files.filter((f) => /(^|\/)test\//.test(f)).join("\n"),
);
const prebuilt = files.filter((f) => /^native\/prebuilds\/linux-x64\/.+\.node$/.test(f));
check(prebuilt.length > 0, `a prebuilt addon for linux-x64 (${prebuilt.join(", ") || "none"})`);
for (const entry of [
  "dist/index.js",
  "dist/index.d.ts",
  "dist/node/index.js",
  "dist/node/index.d.ts",
  "dist/testing/index.js",
  "dist/testing/index.d.ts",
  "dist/vhost-user/testing.js",
  "dist/vhost-user/testing.d.ts",
  "dist/vhost-user/mock-transport.js",
  "bin/virtio-snd.js",
])
  check(files.includes(entry), `ships ${entry}`);

// ------------------------------------------------------------ consumers --

const consumer = join(tmp, "consumer");
write(join(consumer, "package.json"), `${JSON.stringify({ name: "consumer", private: true }, null, 2)}\n`);
// --ignore-scripts: as where install scripts do not run (not approved, or disabled): the prebuilt addon must do.
const installed = run(
  "npm",
  ["install", "--offline", "--no-audit", "--no-fund", "--ignore-scripts", tarball, "v86@0.5.462"],
  {
    cwd: consumer,
  },
);
if (installed.status !== 0) {
  fail("npm install --offline --ignore-scripts of the tarball", installed.out);
  finish();
}
ok("npm install --offline --ignore-scripts of the tarball");
const pkgDir = join(consumer, "node_modules", "virtio-snd");

// Source maps: each one must carry its sources or point at files that are there.
{
  const bad = [];
  for (const f of files.filter((f) => f.endsWith(".map"))) {
    const map = JSON.parse(readFileSync(join(pkgDir, f), "utf8"));
    const sources = map.sources ?? [];
    const content = map.sourcesContent ?? [];
    sources.forEach((s, i) => {
      if (typeof content[i] !== "string" && !existsSync(join(pkgDir, dirname(f), s))) bad.push(`${f}: ${s}`);
    });
  }
  check(
    bad.length === 0,
    "every source map carries its sources (or points at shipped files)",
    bad.slice(0, 5).join("\n"),
  );
}

// Every file path the README names (in backticks) is in the package.
{
  // The part for the package's users; the last part, for a clone, names the repository's own files.
  const readme = readFileSync(join(pkgDir, "README.md"), "utf8").split(/^## Working on virtio-snd/m)[0];
  const named = new Set();
  for (const m of readme.matchAll(/`([^`\s]+)`/g)) {
    const p = m[1].replace(/^\.\//, "");
    // Paths in this repository: a known top folder, or a file at the top.
    if (
      /^(src|dist|bin|native|scripts|traces|test|bench|examples|\.ci)\//.test(p) ||
      /^[\w.-]+\.(md|json|js|mjs|ts)$/.test(p)
    )
      named.add(p.replace(/[.,:;]$/, ""));
  }
  const missing = [...named].filter(
    (p) =>
      !existsSync(join(pkgDir, p)) &&
      !/^(virtio-snd-demo\.wav|package-lock\.json|session[\w.-]*|s[\w.-]*\.jsonl)$/.test(p),
  );
  check(
    missing.length === 0,
    `every path the README names is in the package (${named.size} named)`,
    missing.join("\n"),
  );
}

const tsc = join(root, "node_modules", "typescript", "bin", "tsc");
const typeRoots = join(root, "node_modules", "@types");

const esm = `import * as core from "virtio-snd";
import { VirtioSound, FlatMemory, MemoryBackend, VirtualClock } from "virtio-snd";
import { WavFileBackend, chooseDefaultSink, VhostUserDaemon } from "virtio-snd/node";
import { SimulatedGuest, play } from "virtio-snd/testing";
import { MockTransport, VhostUserBackend } from "virtio-snd/testing/vhost-user";
const clock = new VirtualClock();
const device = new VirtioSound({ memory: new FlatMemory(new ArrayBuffer(1 << 16)), backend: new MemoryBackend({ clock }), clock, interrupt: () => {} });
if (typeof device.deviceFeatures !== "bigint") throw new Error("no device");
for (const f of [WavFileBackend, chooseDefaultSink, VhostUserDaemon, SimulatedGuest, play, MockTransport, VhostUserBackend]) if (typeof f !== "function") throw new Error("missing export");
for (const name of ["SimulatedGuest", "play", "SplitDriverQueue", "MockTransport"]) if (name in core) throw new Error(\`virtio-snd exports \${name}\`);
const guest = new SimulatedGuest();
guest.init();
guest.probe();
console.log("esm ok");
`;
write(join(consumer, "esm", "package.json"), '{ "type": "module" }\n');
write(join(consumer, "esm", "index.js"), esm);

const cjs = `const t0 = process.hrtime.bigint();
const core = require("virtio-snd");
const t1 = process.hrtime.bigint();
const node = require("virtio-snd/node");
const t2 = process.hrtime.bigint();
const testing = require("virtio-snd/testing");
const vhostTesting = require("virtio-snd/testing/vhost-user");
const clock = new core.VirtualClock();
const device = new core.VirtioSound({ memory: new core.FlatMemory(new ArrayBuffer(1 << 16)), backend: new core.MemoryBackend({ clock }), clock, interrupt: () => {} });
if (typeof device.deviceFeatures !== "bigint") throw new Error("no device");
for (const f of [node.WavFileBackend, node.chooseDefaultSink, node.VhostUserDaemon, testing.SimulatedGuest, testing.record, vhostTesting.MockTransport]) if (typeof f !== "function") throw new Error("missing export");
if ("SimulatedGuest" in core) throw new Error("virtio-snd exports SimulatedGuest");
console.log(\`cjs ok \${Number(t1 - t0) / 1e6} \${Number(t2 - t1) / 1e6}\`);
`;
write(join(consumer, "cjs", "package.json"), '{ "type": "commonjs" }\n');
write(join(consumer, "cjs", "index.js"), cjs);

const ts = `import { FlatMemory, MemoryBackend, VirtualClock, VirtioSound, type SoundConfig } from "virtio-snd";
import { VhostUserDaemon, WavFileBackend, type VhostUserDaemonOptions } from "virtio-snd/node";
import { SimulatedGuest, type GuestOptions } from "virtio-snd/testing";
import { MockTransport, type VhostTransport } from "virtio-snd/testing/vhost-user";

const clock = new VirtualClock();
const config: SoundConfig = { streams: [{ direction: "output" }] };
const device = new VirtioSound({
  memory: new FlatMemory(new ArrayBuffer(1 << 16)),
  backend: new MemoryBackend({ clock }),
  clock,
  config,
  interrupt: (queue: number) => void queue,
});
const features: bigint = device.deviceFeatures;
const options: Pick<VhostUserDaemonOptions, "socketPath"> = { socketPath: "/tmp/x.sock" };
if (typeof WavFileBackend !== "function" || typeof VhostUserDaemon !== "function") throw new Error("missing export");
const guestOptions: GuestOptions = { transport: "mmio" };
new SimulatedGuest(guestOptions).init();
const transport: VhostTransport = new MockTransport();
void transport;
console.log(\`ts-cjs ok \${features > 0n} \${options.socketPath}\`);
`;
write(join(consumer, "ts", "package.json"), '{ "type": "commonjs" }\n');
write(
  join(consumer, "ts", "tsconfig.json"),
  `${JSON.stringify(
    {
      compilerOptions: {
        target: "ES2022",
        module: "nodenext",
        moduleResolution: "nodenext",
        strict: true,
        exactOptionalPropertyTypes: true,
        skipLibCheck: false,
        outDir: "out",
        typeRoots: [typeRoots],
        types: ["node"],
      },
      include: ["index.ts"],
    },
    null,
    2,
  )}\n`,
);
write(join(consumer, "ts", "index.ts"), ts);

{
  const r = run(process.execPath, ["index.js"], { cwd: join(consumer, "esm") });
  check(
    r.status === 0 && /esm ok/.test(r.out),
    "ESM consumer: import of virtio-snd, virtio-snd/node, virtio-snd/testing, virtio-snd/testing/vhost-user; virtio-snd has no test helpers",
    r.out,
  );
}
{
  const r = run(process.execPath, ["index.js"], { cwd: join(consumer, "cjs") });
  const m = /cjs ok ([\d.]+) ([\d.]+)/.exec(r.out);
  check(
    r.status === 0 && m !== null,
    "CommonJS consumer: require of virtio-snd, virtio-snd/node, virtio-snd/testing, virtio-snd/testing/vhost-user",
    r.out,
  );
  check(!/ExperimentalWarning/.test(r.out), "require() prints no warning", r.out);
  if (m)
    fact(
      `require("virtio-snd") ${Number(m[1]).toFixed(0)} ms, then require("virtio-snd/node") ${Number(m[2]).toFixed(0)} ms`,
    );
}
{
  const c = run(process.execPath, [tsc, "-p", "."], { cwd: join(consumer, "ts") });
  check(c.status === 0, "TypeScript consumer (module nodenext, CommonJS) type-checks with tsc", c.out);
  if (c.status === 0) {
    const js = readFileSync(join(consumer, "ts", "out", "index.js"), "utf8");
    check(
      /require\("virtio-snd"\)/.test(js) &&
        /require\("virtio-snd\/node"\)/.test(js) &&
        /require\("virtio-snd\/testing"\)/.test(js) &&
        /require\("virtio-snd\/testing\/vhost-user"\)/.test(js),
      "tsc emitted require() calls",
    );
    const r = run(process.execPath, ["out/index.js"], { cwd: join(consumer, "ts") });
    check(r.status === 0 && /ts-cjs ok true/.test(r.out), "the compiled TypeScript consumer runs", r.out);
  }
}

// The core and its test helpers as a browser project sees them: no @types/node, DOM's lib.
{
  const dir = join(consumer, "web");
  write(join(dir, "package.json"), '{ "type": "module" }\n');
  write(
    join(dir, "tsconfig.json"),
    `${JSON.stringify(
      {
        compilerOptions: {
          target: "ES2022",
          lib: ["ES2022", "DOM"],
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          types: [],
        },
        include: ["index.ts"],
      },
      null,
      2,
    )}\n`,
  );
  write(
    join(dir, "index.ts"),
    `import { VirtualClock, VirtioSound } from "virtio-snd";
import { SimulatedGuest, play, type SessionParams } from "virtio-snd/testing";
const guest = new SimulatedGuest({ transport: "pci" });
const clock: VirtualClock = guest.clock;
const device: VirtioSound = guest.device;
const run: (p: SessionParams) => unknown = (p) => play(guest, 0, new Uint8Array(0), p);
console.log(clock, device, run);
`,
  );
  const c = run(process.execPath, [tsc, "-p", "."], { cwd: dir });
  check(
    c.status === 0,
    "TypeScript without @types/node type-checks virtio-snd and virtio-snd/testing",
    c.out,
  );
}

// As a bundler sees the package (esbuild, for the browser): "sideEffects" lets it leave out every
// module an application does not use, the test helpers with them, but never the worklet module,
// whose import registers its processors.
{
  const esbuild = createRequire(join(root, "package.json"))("esbuild");
  const bundle = (contents) =>
    esbuild.buildSync({
      stdin: { contents, resolveDir: consumer, loader: "js" },
      absWorkingDir: consumer,
      bundle: true,
      write: false,
      metafile: true,
      minify: true,
      format: "esm",
      platform: "browser",
      logLevel: "silent",
    });
  const core = bundle(
    'import { VirtioSound, NullBackend } from "virtio-snd"; console.log(VirtioSound, NullBackend);',
  );
  const inputs = Object.values(core.metafile.outputs)[0].inputs;
  const unwanted = Object.keys(inputs).filter(
    (f) => /dist\/(driver|testing|trace|vhost-user)\//.test(f) && inputs[f].bytesInOutput > 0,
  );
  check(
    unwanted.length === 0,
    `a bundle of VirtioSound and NullBackend has nothing of the driver model, traces or vhost-user (${core.outputFiles[0].contents.length} bytes minified)`,
    unwanted.join("\n"),
  );
  const worklet = bundle('import "virtio-snd/browser/worklet.js";').outputFiles[0].text;
  check(
    (worklet.match(/registerProcessor\(/g) ?? []).length === 2,
    "a bundle that imports the worklet module for its effect keeps its registerProcessor calls",
    worklet.slice(0, 300),
  );
}

// The README's examples (examples/*.ts), compiled against the installed package and run.
{
  const dir = join(consumer, "examples");
  write(join(dir, "package.json"), '{ "type": "module" }\n');
  write(
    join(dir, "tsconfig.json"),
    `${JSON.stringify(
      {
        compilerOptions: {
          target: "ES2022",
          module: "nodenext",
          moduleResolution: "nodenext",
          strict: true,
          noUncheckedIndexedAccess: true,
          exactOptionalPropertyTypes: true,
          skipLibCheck: false,
          outDir: "out",
          typeRoots: [typeRoots],
          types: ["node"],
        },
        include: ["*.ts"],
      },
      null,
      2,
    )}\n`,
  );
  const names = readdirSync(join(root, "examples")).filter((f) => f.endsWith(".ts"));
  for (const name of names) write(join(dir, name), readFileSync(join(root, "examples", name), "utf8"));
  const c = run(process.execPath, [tsc, "-p", "."], { cwd: dir });
  check(c.status === 0, `the README's ${names.length} examples type-check against the package`, c.out);
  for (const name of c.status === 0 ? names : []) {
    const r = run(process.execPath, [join("out", name.replace(/\.ts$/, ".js"))], {
      cwd: dir,
      timeout: 60_000,
    });
    check(r.status === 0, `examples/${name} runs against the package`, r.out);
  }
}

// The command from node_modules/.bin, and vhost-user with the shipped addon.
const bin = join(consumer, "node_modules", ".bin", "virtio-snd");
{
  const r = run(bin, ["--version"], { cwd: consumer });
  check(
    r.status === 0 && r.out.trim() === info.version,
    `virtio-snd --version prints ${info.version}`,
    r.out,
  );
}
check(
  !existsSync(join(pkgDir, "native", "build")),
  "nothing was built at install: the addon is the prebuilt one",
);
await new Promise((resolveDone) => {
  const socket = join(tmp, "snd.sock");
  const child = spawn(bin, ["vhost-user", "--socket", socket, "--output", "null"], {
    cwd: consumer,
    env: npmEnv,
  });
  let out = "";
  const timer = setTimeout(() => child.kill("SIGKILL"), 20_000);
  let stopping = false;
  const onData = (chunk) => {
    out += chunk;
    if (!stopping && /listening on/.test(out)) {
      stopping = true;
      child.kill("SIGINT");
    }
  };
  child.stdout.setEncoding("utf8").on("data", onData);
  child.stderr.setEncoding("utf8").on("data", onData);
  child.on("close", (code) => {
    clearTimeout(timer);
    check(
      code === 0 && /listening on/.test(out) && /SIGINT: stopped/.test(out),
      "virtio-snd vhost-user listens with the prebuilt addon and stops on SIGINT",
      out,
    );
    check(!existsSync(socket), "its socket file is gone after it stopped");
    resolveDone();
  });
});

// A second daemon on the same live socket: refused, one line, exit 3; the first keeps its socket.
await new Promise((resolveDone) => {
  const socket = join(tmp, "live.sock");
  const first = spawn(bin, ["vhost-user", "--socket", socket, "--output", "null"], {
    cwd: consumer,
    env: npmEnv,
  });
  let out = "";
  const timer = setTimeout(() => first.kill("SIGKILL"), 20_000);
  let probed = false;
  first.stdout.setEncoding("utf8").on("data", (chunk) => {
    out += chunk;
    if (probed || !/listening on/.test(out)) return;
    probed = true;
    const second = run(bin, ["vhost-user", "--socket", socket, "--output", "null"], {
      cwd: consumer,
      timeout: 20_000,
    });
    check(
      second.status === 3 &&
        second.out === `virtio-snd vhost-user: ${socket} is in use: another process is listening on it\n`,
      "a second daemon on a live socket: one line, exit 3",
      `exit ${second.status}: ${second.out}`,
    );
    check(existsSync(socket), "the first daemon's socket is still there");
    first.kill("SIGTERM");
  });
  first.on("close", (code) => {
    clearTimeout(timer);
    check(code === 0 && !existsSync(socket), "the first daemon stops cleanly and removes its socket", out);
    check(
      !/front-end/.test(out),
      "the second one's probe was no front-end to the first (no line about it)",
      out,
    );
    resolveDone();
  });
});

// The install script: the prebuilt addon when it loads, else a build from source.
{
  const script = join(pkgDir, "scripts", "build-native.mjs");
  const r = run(process.execPath, [script], { cwd: pkgDir });
  check(
    r.status === 0 &&
      /using the prebuilt native addon \(native\/prebuilds\/linux-x64\/[\w.]+\.node\)/.test(r.out),
    "the install script takes the prebuilt addon",
    r.out,
  );
  const t = Date.now();
  const s = run(process.execPath, [script], {
    cwd: pkgDir,
    env: { ...npmEnv, VIRTIO_SND_BUILD_FROM_SOURCE: "1" },
  });
  check(
    s.status === 0 &&
      /native addon built in/.test(s.out) &&
      existsSync(join(pkgDir, "native", "build", "Release", "vhost_user_native.node")),
    `VIRTIO_SND_BUILD_FROM_SOURCE=1 builds it from the shipped sources (${((Date.now() - t) / 1000).toFixed(1)} s)`,
    s.out,
  );
  const loaded = run(
    process.execPath,
    [
      "-e",
      'const n = require("virtio-snd/node"); const r = n.nativeAvailable(); console.log(r.ok ? "ok" : r.reason)',
    ],
    { cwd: consumer },
  );
  check(loaded.out.trim() === "ok", "the addon built from source loads", loaded.out);

  // Neither prebuilt nor built (another platform without a compiler): the command says what to run.
  rmSync(join(pkgDir, "native", "build"), { recursive: true, force: true });
  rmSync(join(pkgDir, "native", "prebuilds"), { recursive: true, force: true });
  const none = run(bin, ["vhost-user", "--socket", join(tmp, "none.sock")], { cwd: consumer });
  const command = `node ${JSON.stringify(script)}`;
  check(
    none.status === 1 &&
      none.out.includes(`Build it from source with: ${command} (it compiles a small C addon`) &&
      none.out.split("\n").filter(Boolean).length === 1,
    "without an addon, vhost-user says in one line the exact command that builds it",
    none.out,
  );
}

finish();

function finish() {
  if (keep) fact(`kept ${tmp}`);
  else rmSync(tmp, { recursive: true, force: true });
  process.stdout.write(failures === 0 ? "package checks passed\n" : `${failures} package check(s) failed\n`);
  process.exit(failures === 0 ? 0 : 1);
}
