import type { DeviceObserver } from "../device/observer.js";

/** The two moments of the device's work a replay acts on (Replay implements them). */
export interface ChainFeed {
  /** The device looks for a chain on queue `q`: make the next recorded one available if it is due. */
  beforePop(q: number): void;
  /** The device returns a chain to queue `q`. */
  beforeReturn(q: number): void;
}

/**
 * The replayed device's observer: before the device looks for a chain, the
 * replay makes the next recorded one available if it is due; before it returns
 * one, the replay notes what has been played.
 */
export class Feeder implements DeviceObserver {
  constructor(private readonly replay: ChainFeed) {}

  taking(index: number): void {
    this.replay.beforePop(index);
  }

  returning(index: number): void {
    this.replay.beforeReturn(index);
  }

  attach(): void {}
  event(): void {}
  taken(): void {}
}
