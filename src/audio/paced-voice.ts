import type { Voice } from "./backend.js";
import { type Clock, ClockTimer, framesToNs } from "./clock.js";
import { type PcmParams, framesToBytes } from "./pcm-params.js";

/**
 * A voice driven by a Clock, chunk by chunk: chunk k of a run that started at
 * t0 is due at t0 + (k+1) * chunk duration, computed from frame counts so no
 * rounding error builds up. When the clock fires late, every chunk already due
 * is processed at once, so a late timer never loses or shifts audio.
 *
 * Subclasses say what a chunk does (play into memory, discard, write a file,
 * capture from a source).
 */
export abstract class PacedVoice implements Voice {
  protected readonly chunkFrames: number;
  protected readonly chunkBytes: number;
  private readonly timer: ClockTimer;
  private runStart = 0;
  private runFrames = 0;
  private running = false;
  private closed = false;
  /** Frames processed over the voice's life. */
  framesDone = 0;

  constructor(
    protected readonly clock: Clock,
    protected readonly params: PcmParams,
    chunkFrames: number,
  ) {
    this.chunkFrames = Math.max(1, Math.floor(chunkFrames));
    this.chunkBytes = framesToBytes(params, this.chunkFrames);
    this.timer = new ClockTimer(() => this.onTimer());
  }

  start(aheadNs = 0): void {
    if (this.running || this.closed) return;
    this.running = true;
    this.runStart = this.clock.now() - (Number.isFinite(aheadNs) ? Math.round(aheadNs) : 0);
    this.runFrames = 0;
    this.armNext();
  }

  stop(): void {
    if (!this.running) return;
    this.running = false;
    this.clock.disarm(this.timer);
  }

  close(): void {
    this.stop();
    this.closed = true;
    this.onClose();
  }

  latencyBytes(): number {
    return 0;
  }

  lagNs(): number {
    if (!this.running) return 0;
    return this.clock.now() - (this.runStart + framesToNs(this.runFrames, this.params.rate));
  }

  get isRunning(): boolean {
    return this.running;
  }

  /** Processes one chunk of chunkBytes. */
  protected abstract onChunk(): void;

  protected onClose(): void {}

  private armNext(): void {
    const due = this.runStart + framesToNs(this.runFrames + this.chunkFrames, this.params.rate);
    this.clock.arm(this.timer, due);
  }

  private onTimer(): void {
    const now = this.clock.now();
    do {
      this.runFrames += this.chunkFrames;
      this.framesDone += this.chunkFrames;
      this.onChunk();
      // onChunk may stop or close the voice (a failing backend).
      if (!this.running) return;
    } while (this.runStart + framesToNs(this.runFrames + this.chunkFrames, this.params.rate) <= now);
    this.armNext();
  }
}

/** Frames per chunk: the stream's period, so each tick is one period. */
export function periodFrames(params: PcmParams): number {
  const bytesPerFrame = framesToBytes(params, 1);
  return bytesPerFrame > 0 ? Math.max(1, Math.floor(params.periodBytes / bytesPerFrame)) : 1;
}
