import type { Chain } from "../virtqueue/chain.js";
import type { ChainState, DeviceQueue, RingState } from "../virtqueue/virtqueue.js";
import type { DeviceObserver } from "./observer.js";

/**
 * A device queue that tells an observer about every chain taken and returned.
 * Chains are completed in several places (the control handler, the event
 * queue, each stream), all through the queue, so the queue is where one sees
 * them all. The device puts it in front of a ring only when it has an
 * observer: without one, the ring is called directly.
 */
export class ObservedQueue implements DeviceQueue {
  constructor(
    private readonly inner: DeviceQueue,
    private readonly index: number,
    private readonly observer: DeviceObserver,
  ) {}

  get size(): number {
    return this.inner.size;
  }

  get inFlight(): number {
    return this.inner.inFlight;
  }

  pop(): Chain | null {
    this.observer.taking(this.index);
    const chain = this.inner.pop();
    if (chain !== null) this.observer.taken(this.index, chain);
    return chain;
  }

  push(chain: Chain, written: number): void {
    // Before the real push: the chain goes back to its pool there.
    this.observer.returning(this.index, chain, written);
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
