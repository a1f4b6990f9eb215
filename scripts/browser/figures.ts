/**
 * The browser figures of the README: `npm run build && npx tsx scripts/browser/figures.ts [RUNS]`.
 * - bundle size of `virtio-snd` + `virtio-snd/browser` (esbuild, minified, gzipped): everything
 *   both export, and what an emulator embedding the card needs; and the worklet module;
 * - latency added between the guest's write and the worklet: the audio queued for the worklet
 *   (the ring, converted frames), sampled every 100 ms while the demo page plays;
 * - CPU of the page (every Chromium process) while it plays, from /proc, in both demo modes.
 * Median of RUNS (default 3) runs of each mode, with the range.
 */
import { readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { gzipSync } from "node:zlib";
import * as esbuild from "esbuild";
import { chromium } from "playwright-core";
import { startDemoServer } from "./demo.js";
import { REPO } from "./server.js";

const DIST = join(REPO, "dist");

async function size(contents: string): Promise<{ min: number; gz: number }> {
  const r = await esbuild.build({
    stdin: { contents, resolveDir: REPO, loader: "js" },
    bundle: true,
    write: false,
    minify: true,
    format: "esm",
    platform: "browser",
    logLevel: "silent",
    alias: {},
    plugins: [
      {
        name: "dist",
        setup(build) {
          build.onResolve({ filter: /^virtio-snd(\/(v86|browser))?$/ }, (a) => ({
            path: join(DIST, a.path === "virtio-snd" ? "index.js" : `${a.path.slice(11)}/index.js`),
          }));
        },
      },
    ],
  });
  const bytes = r.outputFiles[0]!.contents;
  return { min: bytes.length, gz: gzipSync(bytes, { level: 9 }).length };
}

const kb = (n: number) => `${(n / 1024).toFixed(1)} KiB`;

/** utime + stime (clock ticks) of a process's descendants (Chromium, which playwright starts as our child). */
function childTicks(root: number): number {
  const stats = new Map<number, { ppid: number; ticks: number }>();
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      stats.set(Number(d), { ppid: Number(f[1]), ticks: Number(f[11]) + Number(f[12]) });
    } catch {
      // gone
    }
  }
  let total = 0;
  const stack = [root];
  while (stack.length) {
    const p = stack.pop()!;
    if (p !== root) total += stats.get(p)?.ticks ?? 0;
    for (const [pid, s] of stats) if (s.ppid === p) stack.push(pid);
  }
  return total;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const range = (xs: number[], digits: number) =>
  `${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)}`;

async function runMode(mode: "trace" | "guest", url: string): Promise<{ cpu: number; queuedMs: number }> {
  const browser = await chromium.launch({
    executablePath: process.env["VSND_CHROMIUM"] ?? "/usr/bin/chromium",
    headless: true,
    args: ["--no-sandbox", "--autoplay-policy=no-user-gesture-required"],
  });
  try {
    const page = await browser.newPage();
    await page.goto(url);
    await page.check(`input[value=${mode}]`);
    await page.click("#start");
    const logHas = (re: string) =>
      page.waitForFunction((r) => new RegExp(r).test(document.getElementById("log")!.textContent!), re, {
        timeout: 180_000,
        polling: 50,
      });
    await logHas("stream 0 start");
    const t0 = performance.now();
    const c0 = childTicks(process.pid);
    await logHas("stream 0 stop");
    const c1 = childTicks(process.pid);
    const wall = (performance.now() - t0) / 1000;
    const queued = await page.evaluate(
      () => (window as unknown as { vsndFigures: { queuedMs: number[] } }).vsndFigures.queuedMs,
    );
    return { cpu: (c1 - c0) / 100 / wall, queuedMs: median(queued) };
  } finally {
    await browser.close();
  }
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 3);
  const all = await size('export * from "virtio-snd"; export * from "virtio-snd/browser";');
  const embed = await size(
    'export { VirtioSound, RealTimeClock } from "virtio-snd"; export { attachToV86 } from "virtio-snd/v86"; export { WebAudioBackend } from "virtio-snd/browser";',
  );
  const worklet = await size(
    readFileSync(join(DIST, "browser/worklet.js"), "utf8").replace(/\.\/(\w+)\.js/g, `${DIST}/browser/$1.js`),
  );
  console.log(
    `bundle, everything virtio-snd and virtio-snd/browser export: ${kb(all.min)} minified, ${kb(all.gz)} gzipped`,
  );
  console.log(
    `bundle, VirtioSound + attachToV86 + WebAudioBackend: ${kb(embed.min)} minified, ${kb(embed.gz)} gzipped`,
  );
  console.log(
    `worklet module (worklet.js with ring.js, protocol.js): ${kb(worklet.min)} minified, ${kb(worklet.gz)} gzipped`,
  );

  const server = await startDemoServer(0);
  try {
    for (const mode of ["trace", "guest"] as const) {
      const cpu: number[] = [];
      const queued: number[] = [];
      for (let i = 0; i < runs; i++) {
        const r = await runMode(mode, server.url);
        cpu.push(r.cpu * 100);
        queued.push(r.queuedMs);
        console.log(
          `  ${mode} run ${i + 1}: CPU ${(r.cpu * 100).toFixed(1)}% of a core, ${r.queuedMs.toFixed(1)} ms queued (median)`,
        );
      }
      console.log(
        `${mode === "trace" ? "trace replay (no VM)" : "Linux guest in v86"}: CPU while playing ${median(cpu).toFixed(1)}% of a core ` +
          `(${range(cpu, 1)}), queued for the worklet ${median(queued).toFixed(1)} ms (${range(queued, 1)}), ${runs} runs`,
      );
    }
  } finally {
    await server.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
