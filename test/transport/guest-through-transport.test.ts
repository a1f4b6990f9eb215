/**
 * The driver model (SimulatedGuest) reaching the device through each
 * transport's registers: Linux's probe sequence (reset, ACKNOWLEDGE, DRIVER,
 * features, FEATURES_OK read back, queues, DRIVER_OK), then playback and
 * capture with real rings in guest memory, interrupts coming back as INTx
 * levels, MSI-X messages or the virtio-mmio line.
 */
import { describe, expect, it } from "vitest";
import { play, record } from "../../src/driver/pcm-session.js";
import { type GuestTransportKind, SimulatedGuest } from "../../src/driver/simulated-guest.js";
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_SND_EVT_JACK_DISCONNECTED,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import { signal } from "./helpers.js";

const S16_STEREO_48K = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000 as const, channels: 2 };
const PERIOD_10MS = 1920;
const MS = 1_000_000;
const RUNNING =
  VIRTIO_CONFIG_S_ACKNOWLEDGE |
  VIRTIO_CONFIG_S_DRIVER |
  VIRTIO_CONFIG_S_FEATURES_OK |
  VIRTIO_CONFIG_S_DRIVER_OK;

const kinds: GuestTransportKind[] = ["pci", "pci-io", "pci-msix", "mmio"];
const rings = [
  { ring: "split", packed: false, indirect: false },
  { ring: "packed, indirect", packed: true, indirect: true },
];

describe.each(kinds)("the driver model through %s", (transport) => {
  it.each(rings)("probes and plays 200 ms exactly, at the stream's pace ($ring)", ({ packed, indirect }) => {
    const guest = new SimulatedGuest({ transport, packed, indirect, backend: { log: true } });
    guest.init();
    expect(guest.link.status()).toBe(RUNNING);
    const info = guest.probe();
    expect(info.streams).toHaveLength(2);
    expect(info.jacks).toHaveLength(2);

    const input = signal(19_200);
    const r = play(guest, 0, input, { ...S16_STEREO_48K, periodBytes: PERIOD_10MS, periods: 4 });
    const pb = guest.backend.playbacksOf(0);
    expect(pb[0]!.data.length).toBe(19_200);
    expect(Buffer.from(pb[0]!.data.bytes()).equals(Buffer.from(input))).toBe(true);
    expect(r.completions).toHaveLength(10);
    r.completions.forEach((c, k) => {
      expect(c.time - r.startTime).toBe((k + 1) * 10 * MS);
      expect(c.status).toBe(VIRTIO_SND_S_OK);
    });
    // Every completion reached the guest through an interrupt, not a poll.
    expect(guest.interrupts[VIRTIO_SND_VQ_TX]).toBeGreaterThanOrEqual(10);
    expect(guest.needsReset).toBeNull();
    expect(guest.link.status()).toBe(RUNNING);
    expect(guest.transport!.irqLevel).toBe(false);
  });

  it("records 100 ms of the source", () => {
    const source = signal(9600, 3);
    const guest = new SimulatedGuest({ transport, backend: { input: () => source } });
    guest.init();
    guest.probe();
    const r = record(guest, 1, 9600, { ...S16_STEREO_48K, periodBytes: PERIOD_10MS, periods: 4 });
    expect(Buffer.from(r.data).equals(Buffer.from(source))).toBe(true);
  });

  it("delivers a jack event through the event queue's interrupt", () => {
    const guest = new SimulatedGuest({ transport });
    guest.init();
    guest.probe();
    guest.device.setJackConnected(0, false);
    expect(guest.events.map((e) => e.code)).toEqual([VIRTIO_SND_EVT_JACK_DISCONNECTED]);
    expect(guest.interrupts[VIRTIO_SND_VQ_EVENT]).toBe(1);
  });

  it("a ring outside memory sets DEVICE_NEEDS_RESET and sends a configuration interrupt", () => {
    const guest = new SimulatedGuest({ transport });
    guest.init();
    guest.probe();
    // The driver scribbles an impossible available index: the device cannot use the ring.
    const tx = guest.queues[VIRTIO_SND_VQ_TX]!.layout;
    guest.memory.writeU16(tx.driverAddr + 2, 0x8000);
    guest.link.notify(VIRTIO_SND_VQ_TX);
    expect(guest.needsReset?.message).toMatch(/available index moved by/);
    expect(guest.link.status() & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(VIRTIO_CONFIG_S_NEEDS_RESET);
    expect(guest.configInterrupts).toBe(1);
    // The driver resets the device and starts over.
    expect(guest.link.negotiate(1n << 32n)).toBe(true);
    expect(guest.link.status() & VIRTIO_CONFIG_S_NEEDS_RESET).toBe(0);
    expect(guest.device.needsReset).toBe(false);
  });
});
