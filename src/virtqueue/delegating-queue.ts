import type { Chain } from "./chain.js";
import type { ChainState, DeviceQueue, RingState } from "./virtqueue.js";

/**
 * A DeviceQueue that forwards every call to an inner queue: the base of the
 * decorators that watch or steer a queue (the trace recorder, the replayer).
 * A subclass overrides only the calls it changes and calls `super` (or
 * `this.inner`) for the real work.
 */
export class DelegatingQueue implements DeviceQueue {
  constructor(protected readonly inner: DeviceQueue) {}

  get size(): number {
    return this.inner.size;
  }

  get inFlight(): number {
    return this.inner.inFlight;
  }

  pop(): Chain | null {
    return this.inner.pop();
  }

  push(chain: Chain, written: number): void {
    this.inner.push(chain, written);
  }

  needsInterrupt(): boolean {
    return this.inner.needsInterrupt();
  }

  enableNotifications(enabled: boolean): boolean {
    return this.inner.enableNotifications(enabled);
  }

  getBase(): number {
    return this.inner.getBase();
  }

  setBase(base: number): void {
    this.inner.setBase(base);
  }

  saveState(): RingState {
    return this.inner.saveState();
  }

  restoreState(state: RingState): void {
    this.inner.restoreState(state);
  }

  adoptChain(state: ChainState): Chain {
    return this.inner.adoptChain(state);
  }
}
