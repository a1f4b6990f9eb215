/**
 * The device's observer (src/device/observer.ts): what it is told and when.
 */
import { describe, expect, it } from "vitest";
import type { DeviceEvent, DeviceObserver, ObservedDevice } from "../../src/device/observer.js";
import { play } from "../../src/driver/pcm-session.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_VQ_CONTROL, VIRTIO_SND_VQ_TX } from "../../src/spec/constants.js";
import { VIRTIO_SND_PCM_STATUS_SIZE } from "../../src/spec/structs.js";
import type { Chain } from "../../src/virtqueue/chain.js";

const PERIOD = 1920;
const S16_STEREO_48K = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000 as const, channels: 2 };

class Log implements DeviceObserver {
  readonly attached: ObservedDevice[] = [];
  readonly events: DeviceEvent[] = [];
  /** "taking q", "taken q", "returning q len", in order. */
  readonly calls: string[] = [];
  readonly inFlight = new Set<Chain>();
  /** Chains returned that were never taken, or taken twice before a return. */
  errors = 0;

  attach(device: ObservedDevice): void {
    this.attached.push(device);
  }
  event(event: DeviceEvent): void {
    this.events.push(event);
  }
  taking(index: number): void {
    this.calls.push(`taking ${index}`);
  }
  taken(index: number, chain: Chain): void {
    if (this.inFlight.has(chain)) this.errors++;
    this.inFlight.add(chain);
    this.calls.push(`taken ${index}`);
  }
  returning(index: number, chain: Chain, written: number): void {
    if (!this.inFlight.delete(chain)) this.errors++;
    this.calls.push(`returning ${index} ${written}`);
  }
}

describe("device observer", () => {
  it("is told of every action, and of every chain taken and returned with its used length", () => {
    const log = new Log();
    const guest = new SimulatedGuest({ recorder: log, queueSize: 16 });
    guest.init();
    guest.probe();
    const data = new Uint8Array(6 * PERIOD).fill(0x11);
    play(guest, 0, data, { ...S16_STEREO_48K, periodBytes: PERIOD, periods: 3 });
    guest.device.setJackConnected(0, false);

    expect(log.attached).toHaveLength(1);
    expect(log.attached[0]!.features).toBe(guest.device.deviceFeatures);
    expect(log.attached[0]!.clock).toBe(guest.clock);
    const types = log.events.map((e) => e.type);
    expect(types[0]).toBe("features");
    expect(log.events[0]).toMatchObject({ accepted: true, features: guest.device.negotiatedFeatures });
    expect(log.events.filter((e) => e.type === "queue").map((e) => e.type === "queue" && e.index)).toEqual([
      0, 1, 2, 3,
    ]);
    expect(log.events).toContainEqual({ type: "jack", jackId: 0, connected: false });
    // Every interrupt the guest got, the observer was told of.
    const interrupts = [0, 1, 2, 3].map(
      (q) => log.events.filter((e) => e.type === "interrupt" && e.index === q).length,
    );
    expect(interrupts).toEqual(guest.interrupts);
    expect(log.events.filter((e) => e.type === "kick").length).toBeGreaterThan(0);

    // Each chain is taken once after the device looked for it, and returned once.
    expect(log.errors).toBe(0);
    expect(log.calls.filter((c) => c.startsWith("taken"))).not.toHaveLength(0);
    log.calls.forEach((c, i) => {
      if (c.startsWith("taken")) expect(log.calls[i - 1]).toBe(`taking ${c.split(" ")[1]}`);
    });
    // The six periods come back with a status each.
    const txReturns = log.calls.filter((c) => c.startsWith(`returning ${VIRTIO_SND_VQ_TX} `));
    expect(txReturns).toEqual(
      new Array(6).fill(`returning ${VIRTIO_SND_VQ_TX} ${VIRTIO_SND_PCM_STATUS_SIZE}`),
    );
  });

  it("is told of a reset and of a stopped queue", () => {
    const log = new Log();
    const guest = new SimulatedGuest({ recorder: log });
    guest.init();
    const base = guest.device.stopQueue(VIRTIO_SND_VQ_CONTROL);
    guest.device.reset();
    expect(log.events.slice(-2)).toEqual([
      { type: "stop", index: VIRTIO_SND_VQ_CONTROL, base },
      { type: "reset" },
    ]);
  });
});
