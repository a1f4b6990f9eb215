/**
 * The test helpers' entries: "virtio-snd/testing" (src/testing/index.ts), the
 * driver model, and "virtio-snd/testing/vhost-user" (src/vhost-user/testing.ts),
 * the mock vhost-user front-end and the back-end it drives.
 */
import { describe, expect, it } from "vitest";
import * as testing from "../../src/testing/index.js";
import * as vhostTesting from "../../src/vhost-user/testing.js";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { play, record } from "../../src/driver/pcm-session.js";
import { MockTransport } from "../../src/vhost-user/mock-transport.js";
import { VhostUserBackend } from "../../src/vhost-user/backend.js";
import { VHOST_USER_GET_FEATURES, VHOST_USER_REPLY_MASK } from "../../src/vhost-user/messages.js";
import { NullBackend } from "../../src/audio/null-backend.js";
import { VirtualClock } from "../../src/audio/clock.js";
import { VIRTIO_F_VERSION_1, VIRTIO_SND_PCM_FMT_S16 } from "../../src/spec/constants.js";

const isClass = (value: unknown): boolean =>
  typeof value === "function" &&
  (value as { prototype?: { constructor: unknown } }).prototype?.constructor === value;

describe("virtio-snd/testing", () => {
  const exported = testing as Record<string, unknown>;

  it.each(["SimulatedGuest", "SplitDriverQueue", "PackedDriverQueue", "PciGuestDriver", "MmioGuestDriver"])(
    "exports the class %s",
    (name) => expect(isClass(exported[name]), name).toBe(true),
  );

  it.each(["play", "record", "periodBytesFor", "transportBus"])("exports the function %s", (name) => {
    expect(typeof exported[name]).toBe("function");
  });

  it("re-exports the very classes and functions the modules define", () => {
    expect(testing.SimulatedGuest).toBe(SimulatedGuest);
    expect(testing.play).toBe(play);
    expect(testing.record).toBe(record);
  });

  it("is enough to play through the device", () => {
    const guest = new testing.SimulatedGuest();
    guest.init();
    guest.probe();
    const stream = { format: VIRTIO_SND_PCM_FMT_S16, rate: 48000, channels: 2 } as const;
    const periodBytes = testing.periodBytesFor(stream, 10);
    expect(periodBytes).toBe(480 * 4);
    const params = { ...stream, periodBytes, periods: 4 };
    const result = testing.play(guest, 0, new Uint8Array(periodBytes * 4).fill(7), params);
    expect(result.queuedBytes).toBe(periodBytes * 4);
    expect(result.completions.length).toBe(4);
  });
});

describe("virtio-snd/testing/vhost-user", () => {
  it("exports MockTransport and VhostUserBackend, the modules' own", () => {
    expect(vhostTesting.MockTransport).toBe(MockTransport);
    expect(vhostTesting.VhostUserBackend).toBe(VhostUserBackend);
    expect(Object.keys(vhostTesting).sort()).toEqual(["MockTransport", "VhostUserBackend"]);
  });

  it("drives the back-end without a socket", () => {
    const clock = new VirtualClock();
    const backend = new vhostTesting.VhostUserBackend({ backend: new NullBackend({ clock }), clock });
    const t = new vhostTesting.MockTransport();
    backend.attach(t);
    const [reply] = t.deliver(VHOST_USER_GET_FEATURES);
    expect(reply?.request).toBe(VHOST_USER_GET_FEATURES);
    expect(reply!.flags & VHOST_USER_REPLY_MASK).toBe(VHOST_USER_REPLY_MASK);
    const features = new DataView(reply!.payload.buffer, reply!.payload.byteOffset).getBigUint64(0, true);
    expect(features & (1n << BigInt(VIRTIO_F_VERSION_1))).not.toBe(0n);
  });

  it("refuses a message on a closed connection with a VirtioSndError", () => {
    const t = new vhostTesting.MockTransport();
    expect(() => t.deliver(VHOST_USER_GET_FEATURES)).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_STATE" }),
    );
  });
});
