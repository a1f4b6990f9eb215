/**
 * A hang the per-action timer cannot see (an endless loop never returns to
 * it) would stop the fuzzer silently. The input being run is kept in shared
 * memory; a worker thread watches a heartbeat and, when one input runs for
 * more than HANG_S seconds, saves it as a reproducer and kills the process.
 */
import { Worker } from "node:worker_threads";

const HANG_S = 20;
const MAX_INPUT = 64 * 1024;
/** Int32 header: heartbeat, paused, input length, target name length. */
const HEADER = 16;
const NAME = 64;

const WORKER = `
const { workerData } = require("node:worker_threads");
const fs = require("node:fs");
const path = require("node:path");
const { shared, dir, seed, hangS } = workerData;
const head = new Int32Array(shared, 0, 4);
const bytes = new Uint8Array(shared);
let last = -1, since = Date.now();
setInterval(() => {
  const beat = Atomics.load(head, 0);
  if (beat !== last || Atomics.load(head, 1) !== 0) { last = beat; since = Date.now(); return; }
  if (Date.now() - since < hangS * 1000) return;
  const name = Buffer.from(bytes.subarray(${HEADER}, ${HEADER} + head[3])).toString();
  const input = Buffer.from(bytes.subarray(${HEADER + NAME}, ${HEADER + NAME} + head[2])).toString("hex");
  const hash = require("node:crypto").createHash("sha256").update(Buffer.from(input, "hex")).digest("hex").slice(0, 10);
  const file = path.join(dir, name + "-" + hash + ".json");
  fs.mkdirSync(dir, { recursive: true });
  const message = "one input ran for more than " + hangS + " s (not minimized)";
  fs.writeFileSync(file, JSON.stringify({ target: name, seed, input, invariant: "hang", message }, null, 2) + "\\n");
  console.log("fuzz " + name + ": FAILURE hang: " + message + " (" + file + ")");
  process.kill(process.pid, "SIGKILL");
}, 1000);
`;

export class Watchdog {
  private readonly head: Int32Array;
  private readonly bytes: Uint8Array;
  private readonly worker: Worker;
  private name = "";

  constructor(dir: string, seed: number) {
    const shared = new SharedArrayBuffer(HEADER + NAME + MAX_INPUT);
    this.head = new Int32Array(shared, 0, 4);
    this.bytes = new Uint8Array(shared);
    this.worker = new Worker(WORKER, { eval: true, workerData: { shared, dir, seed, hangS: HANG_S } });
    this.worker.unref();
  }

  /** The input about to run. */
  current(target: string, input: Uint8Array): void {
    if (target !== this.name) {
      this.name = target;
      const n = Buffer.from(target);
      this.bytes.set(n.subarray(0, NAME), HEADER);
      this.head[3] = Math.min(n.length, NAME);
    }
    const len = Math.min(input.length, MAX_INPUT);
    this.bytes.set(input.subarray(0, len), HEADER + NAME);
    this.head[2] = len;
    Atomics.add(this.head, 0, 1);
  }

  /** Minimization runs many inputs under one heartbeat: not a hang. */
  pause(): void {
    Atomics.store(this.head, 1, 1);
  }

  resume(): void {
    Atomics.store(this.head, 1, 0);
    Atomics.add(this.head, 0, 1);
  }

  stop(): void {
    void this.worker.terminate();
  }
}
