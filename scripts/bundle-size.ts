/**
 * What the core costs in a browser bundle: `npm run build && npx tsx scripts/bundle-size.ts [PACKAGE_DIR]`.
 *
 * Bundles small entries that import the package by name, as an application would, with
 * esbuild (minified, ESM, platform browser) and prints their size minified and gzipped
 * (level 9). The package is resolved through a node_modules link to PACKAGE_DIR (default:
 * this repository; another checkout, built, gives the figures of another version), so its
 * package.json applies as it does for users: `exports`, and `sideEffects`, which lets the
 * bundler drop whole modules nothing uses.
 */
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";

const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "..");

/** The entries: a name and the module text an application would write. */
const ENTRIES: readonly (readonly [string, string])[] = [
  [
    "`VirtioSound`, `FlatMemory`, `NullBackend`, `VirtualClock`",
    'import { VirtioSound, FlatMemory, NullBackend, VirtualClock } from "virtio-snd";\n' +
      "console.log(VirtioSound, FlatMemory, NullBackend, VirtualClock);\n",
  ],
  ['`export * from "virtio-snd"`', 'export * from "virtio-snd";\n'],
];
const TESTING_ENTRY: readonly [string, string] = [
  '`export * from "virtio-snd/testing"`',
  'export * from "virtio-snd/testing";\n',
];

async function size(dir: string, contents: string): Promise<{ min: number; gz: number }> {
  const r = await esbuild.build({
    stdin: { contents, resolveDir: dir, loader: "js" },
    absWorkingDir: dir,
    bundle: true,
    write: false,
    minify: true,
    format: "esm",
    platform: "browser",
    logLevel: "silent",
  });
  const bytes = r.outputFiles[0]!.contents;
  return { min: bytes.length, gz: gzipSync(bytes, { level: 9 }).length };
}

async function main(): Promise<void> {
  const pkgDir = resolve(process.argv[2] ?? REPO);
  const pkg = JSON.parse(readFileSync(join(pkgDir, "package.json"), "utf8")) as {
    version: string;
    sideEffects?: unknown;
    exports?: Record<string, unknown>;
  };
  if (!existsSync(join(pkgDir, "dist", "index.js"))) {
    console.error(`${pkgDir}/dist/index.js is missing: run npm run build there first`);
    process.exitCode = 1;
    return;
  }
  const tmp = mkdtempSync(join(tmpdir(), "virtio-snd-bundle-"));
  try {
    mkdirSync(join(tmp, "node_modules"));
    symlinkSync(pkgDir, join(tmp, "node_modules", "virtio-snd"), "dir");
    const entries = pkg.exports?.["./testing"] !== undefined ? [...ENTRIES, TESTING_ENTRY] : ENTRIES;
    console.log(
      `virtio-snd ${pkg.version} at ${pkgDir}, sideEffects: ${JSON.stringify(pkg.sideEffects ?? "(not set)")}`,
    );
    console.log("| bundle (esbuild, minified, ESM, browser) | minified bytes | gzipped bytes |");
    console.log("| --- | --: | --: |");
    for (const [name, contents] of entries) {
      const s = await size(tmp, contents);
      console.log(`| ${name} | ${s.min} | ${s.gz} |`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

await main();
