/**
 * VirtioMmioTransport against virtio 1.3 §4.2 (version 2 register layout).
 * Offsets and values are transcribed from the spec's table 4.1.
 */
import { describe, expect, it } from "vitest";
import type { VirtioSndError } from "../../src/errors.js";
import { VirtioMmioTransport, type VirtioMmioTransportOptions } from "../../src/transport/mmio.js";
import { FakeDevice, fake, soundFactory } from "./helpers.js";

const MAGIC = 0x000;
const VERSION = 0x004;
const DEVICE_ID = 0x008;
const VENDOR_ID = 0x00c;
const DEVICE_FEATURES = 0x010;
const DEVICE_FEATURES_SEL = 0x014;
const DRIVER_FEATURES = 0x020;
const DRIVER_FEATURES_SEL = 0x024;
const QUEUE_SEL = 0x030;
const QUEUE_NUM_MAX = 0x034;
const QUEUE_NUM = 0x038;
const QUEUE_READY = 0x044;
const QUEUE_NOTIFY = 0x050;
const INTERRUPT_STATUS = 0x060;
const INTERRUPT_ACK = 0x064;
const STATUS = 0x070;
const QUEUE_DESC_LOW = 0x080;
const QUEUE_DESC_HIGH = 0x084;
const QUEUE_DRIVER_LOW = 0x090;
const QUEUE_DEVICE_LOW = 0x0a0;
const SHM_SEL = 0x0ac;
const SHM_LEN_LOW = 0x0b0;
const SHM_LEN_HIGH = 0x0b4;
const SHM_BASE_LOW = 0x0b8;
const SHM_BASE_HIGH = 0x0bc;
const QUEUE_RESET = 0x0c0;
const CONFIG_GENERATION = 0x0fc;
const CONFIG = 0x100;

const ACK = 1;
const DRIVER = 2;
const DRIVER_OK = 4;
const FEATURES_OK = 8;
const NEEDS_RESET = 0x40;

function harness(options: Partial<VirtioMmioTransportOptions> = {}) {
  const dev = fake();
  const irqs: boolean[] = [];
  const mmio = new VirtioMmioTransport({ device: dev.factory, irq: (l) => irqs.push(l), ...options });
  const rd = (off: number) => mmio.read(off, 4);
  const wr = (off: number, v: number) => mmio.write(off, 4, v);
  const negotiate = (high = 1) => {
    wr(STATUS, ACK);
    wr(STATUS, ACK | DRIVER);
    wr(DRIVER_FEATURES_SEL, 1);
    wr(DRIVER_FEATURES, high);
    wr(STATUS, ACK | DRIVER | FEATURES_OK);
  };
  const ready = (q: number, size = 16) => {
    wr(QUEUE_SEL, q);
    wr(QUEUE_NUM, size);
    wr(QUEUE_DESC_LOW, 0x1000 * (q + 1));
    wr(QUEUE_DRIVER_LOW, 0x1000 * (q + 1) + 0x400);
    wr(QUEUE_DEVICE_LOW, 0x1000 * (q + 1) + 0x800);
    wr(QUEUE_READY, 1);
  };
  const running = () => {
    negotiate();
    for (let q = 0; q < 4; q++) ready(q);
    wr(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
  };
  return { mmio, dev: dev.device, hooks: () => dev.device.hooks!, irqs, rd, wr, negotiate, ready, running };
}

describe("virtio-mmio registers (§4.2.2)", () => {
  it("identifies itself: magic, version 2, device ID 25, vendor", () => {
    const { rd } = harness({ vendorId: 0x554d4551 });
    expect(rd(MAGIC)).toBe(0x74726976);
    expect(rd(VERSION)).toBe(2);
    expect(rd(DEVICE_ID)).toBe(25);
    expect(rd(VENDOR_ID)).toBe(0x554d4551);
    expect(harness().rd(VENDOR_ID)).toBe(0x1af4);
  });

  it("takes only aligned 32-bit accesses to the control registers (§4.2.2.2)", () => {
    const h = harness();
    expect(h.mmio.read(MAGIC, 2)).toBe(0);
    expect(h.mmio.read(MAGIC + 1, 4)).toBe(0);
    expect(h.mmio.read(MAGIC, 8)).toBe(0);
    h.mmio.write(STATUS, 1, ACK);
    h.mmio.write(STATUS + 1, 4, ACK);
    expect(h.rd(STATUS)).toBe(0);
    for (const w of [0, 3, -4, NaN]) {
      expect(h.mmio.read(MAGIC, w)).toBe(0);
      h.mmio.write(STATUS, w, ACK);
    }
    for (const off of [-4, NaN, 2 ** 60, 1.5]) {
      expect(h.mmio.read(off, 4)).toBe(0);
      h.mmio.write(off, 4, 1);
    }
    expect(h.rd(STATUS)).toBe(0);
  });

  it("reads 0 from write-only and reserved registers, and ignores writes to read-only ones", () => {
    const h = harness();
    h.wr(QUEUE_SEL, 2);
    h.wr(DEVICE_FEATURES_SEL, 1);
    for (const off of [
      DEVICE_FEATURES_SEL,
      DRIVER_FEATURES,
      QUEUE_SEL,
      QUEUE_NUM,
      QUEUE_NOTIFY,
      QUEUE_DESC_LOW,
      0x028,
      0x0f0,
    ])
      expect(h.rd(off)).toBe(0);
    for (const off of [
      MAGIC,
      VERSION,
      DEVICE_ID,
      VENDOR_ID,
      QUEUE_NUM_MAX,
      INTERRUPT_STATUS,
      CONFIG_GENERATION,
    ]) {
      const before = h.rd(off);
      h.wr(off, 0x1234_5678);
      expect(h.rd(off)).toBe(before);
    }
  });

  it("offers the features in windows, accepts them at FEATURES_OK if the device does", () => {
    const h = harness();
    h.wr(DEVICE_FEATURES_SEL, 0);
    expect(h.rd(DEVICE_FEATURES)).toBe(1 << 29);
    h.wr(DEVICE_FEATURES_SEL, 1);
    expect(h.rd(DEVICE_FEATURES)).toBe(0b101);
    h.wr(DEVICE_FEATURES_SEL, 7);
    expect(h.rd(DEVICE_FEATURES)).toBe(0);
    h.negotiate();
    expect(h.rd(STATUS)).toBe(ACK | DRIVER | FEATURES_OK);
    const refused = harness();
    refused.negotiate(0b10);
    expect(refused.rd(STATUS)).toBe(ACK | DRIVER);
  });

  it("describes queues and takes their size and addresses until QueueReady", () => {
    const h = harness();
    h.wr(QUEUE_SEL, 0);
    expect(h.rd(QUEUE_NUM_MAX)).toBe(256);
    expect(h.rd(QUEUE_READY)).toBe(0);
    h.wr(QUEUE_SEL, 4);
    expect(h.rd(QUEUE_NUM_MAX)).toBe(0); // no such queue
    h.wr(QUEUE_SEL, 0x1_0000);
    expect(h.rd(QUEUE_NUM_MAX)).toBe(0);
    h.ready(0); // before FEATURES_OK: refused
    expect(h.rd(QUEUE_READY)).toBe(0);
    h.negotiate();
    h.wr(QUEUE_SEL, 1);
    h.wr(QUEUE_DESC_HIGH, 2);
    h.ready(1, 100); // not a power of 2 for a split ring: the size stays 256
    expect(h.rd(QUEUE_READY)).toBe(1);
    expect(h.dev.layouts.get(1)).toEqual({
      size: 256,
      descAddr: 0x2_0000_2000,
      driverAddr: 0x2400,
      deviceAddr: 0x2800,
    });
  });

  it("QueueReady 0 gives the queue back to the driver", () => {
    const h = harness();
    h.negotiate();
    h.ready(2);
    h.wr(QUEUE_READY, 0);
    expect(h.rd(QUEUE_READY)).toBe(0);
    expect(h.dev.calls.slice(-1)).toEqual(["stop 2"]);
    h.wr(QUEUE_READY, 0);
    expect(h.dev.calls.filter((c) => c.startsWith("stop"))).toHaveLength(1);
  });

  it("notifies the queue written to QueueNotify, held until DRIVER_OK", () => {
    const h = harness();
    h.negotiate();
    h.ready(0);
    h.wr(QUEUE_NOTIFY, 0);
    h.wr(QUEUE_NOTIFY, 9);
    expect(h.dev.calls.filter((c) => c.startsWith("notify"))).toEqual([]);
    h.wr(STATUS, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    h.wr(QUEUE_NOTIFY, 0);
    expect(h.dev.calls.filter((c) => c.startsWith("notify"))).toEqual(["notify 0", "notify 0"]);
  });

  it("raises the line with InterruptStatus bits; InterruptACK clears them", () => {
    const h = harness();
    h.running();
    h.hooks().interrupt(1);
    expect(h.irqs).toEqual([true]);
    expect(h.rd(INTERRUPT_STATUS)).toBe(1);
    h.hooks().onNeedsReset(new Error("bad ring"));
    expect(h.rd(INTERRUPT_STATUS)).toBe(3);
    expect(h.rd(STATUS) & NEEDS_RESET).toBe(NEEDS_RESET);
    h.wr(INTERRUPT_ACK, 1);
    expect(h.irqs).toEqual([true]);
    h.wr(INTERRUPT_ACK, 2);
    expect(h.irqs).toEqual([true, false]);
    h.mmio.configChanged();
    expect(h.rd(CONFIG_GENERATION)).toBe(1);
    expect(h.rd(INTERRUPT_STATUS)).toBe(2);
    h.wr(STATUS, 0);
    expect(h.rd(INTERRUPT_STATUS)).toBe(0);
    expect(h.rd(STATUS)).toBe(0);
    expect(h.irqs).toEqual([true, false, true, false]);
  });

  it("has no shared memory regions: SHMLen and SHMBase read all ones", () => {
    const h = harness();
    for (const sel of [0, 1, 0xffff_ffff]) {
      h.wr(SHM_SEL, sel);
      for (const off of [SHM_LEN_LOW, SHM_LEN_HIGH, SHM_BASE_LOW, SHM_BASE_HIGH])
        expect(h.rd(off)).toBe(0xffff_ffff);
    }
    expect(h.rd(QUEUE_RESET)).toBe(0);
  });

  it("reads the device-specific configuration at 0x100 at any width", () => {
    const h = harness();
    expect(h.mmio.read(CONFIG, 4)).toBe(0x13121110);
    expect(h.mmio.read(CONFIG + 3, 1)).toBe(0x13);
    expect(h.mmio.read(CONFIG + 2, 2)).toBe(0x1312);
    expect(h.mmio.read(CONFIG + 0x40, 4)).toBe(0);
    h.mmio.write(CONFIG + 1, 1, 9);
    expect(h.dev.calls).toEqual(["writeConfig 1 9"]);
    expect(h.mmio.size).toBeGreaterThanOrEqual(0x200);
  });

  it("reads struct virtio_snd_config from the sound device", () => {
    const h = harness({ device: soundFactory() });
    expect([0, 4, 8, 12].map((o) => h.mmio.read(CONFIG + o, 4))).toEqual([2, 2, 6, 0]);
  });

  it("saves and restores its registers, refuses what does not fit", () => {
    const a = harness();
    a.running();
    a.hooks().interrupt(0);
    const b = harness();
    b.mmio.restoreState(a.mmio.saveState());
    expect(b.irqs).toEqual([true]);
    expect(b.rd(STATUS)).toBe(a.rd(STATUS));
    b.wr(QUEUE_SEL, 3);
    expect(b.rd(QUEUE_READY)).toBe(1);
    const code = (bytes: Uint8Array) => {
      try {
        b.mmio.restoreState(bytes);
        return "ok";
      } catch (e) {
        return (e as VirtioSndError).code;
      }
    };
    expect(code(new Uint8Array([0xff]))).toBe("ERR_INVALID_SNAPSHOT");
    expect(code(harness({ queueSizeMax: 64 }).mmio.saveState())).toBe("ok");
    const wrongSize = harness({ queueSizeMax: 1024 });
    expect(code(wrongSize.mmio.saveState())).toBe("ERR_INVALID_SNAPSHOT");
    b.mmio.reset();
    expect(b.rd(STATUS)).toBe(0);
    expect(b.mmio.irqLevel).toBe(false);
  });
});

describe("a device made by the embedder rather than by the factory", () => {
  it("is wired through the transport's interrupt and deviceNeedsReset methods", () => {
    const device = new FakeDevice();
    const irqs: boolean[] = [];
    const mmio = new VirtioMmioTransport({ device, irq: (l) => irqs.push(l) });
    mmio.write(STATUS, 4, ACK | DRIVER);
    mmio.write(DRIVER_FEATURES_SEL, 4, 1);
    mmio.write(DRIVER_FEATURES, 4, 1);
    mmio.write(STATUS, 4, ACK | DRIVER | FEATURES_OK);
    mmio.write(QUEUE_SEL, 4, 0);
    mmio.write(QUEUE_READY, 4, 1);
    mmio.write(STATUS, 4, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    mmio.interrupt(0);
    mmio.interrupt(1); // not ready: nothing
    expect(mmio.read(INTERRUPT_STATUS, 4)).toBe(1);
    mmio.deviceNeedsReset(new Error("x"));
    expect(mmio.read(INTERRUPT_STATUS, 4)).toBe(3);
    expect(irqs).toEqual([true]);
  });

  it("refuses what is not a device, or a device whose queue count is unknown", () => {
    const code = (f: () => unknown) => {
      try {
        f();
        return "ok";
      } catch (e) {
        return (e as VirtioSndError).code;
      }
    };
    expect(code(() => new VirtioMmioTransport({ device: {} as never }))).toBe("ERR_INVALID_CONFIG");
    const other = Object.assign(new FakeDevice(), { deviceId: 1 });
    expect(code(() => new VirtioMmioTransport({ device: other }))).toBe("ERR_INVALID_CONFIG");
    expect(code(() => new VirtioMmioTransport({ device: other, numQueues: 3 }))).toBe("ok");
    expect(code(() => new VirtioMmioTransport({ device: new FakeDevice(), numQueues: 0 }))).toBe(
      "ERR_INVALID_CONFIG",
    );
    expect(code(() => new VirtioMmioTransport({ device: new FakeDevice(), queueSizeMax: 100 }))).toBe(
      "ERR_INVALID_CONFIG",
    );
    expect(code(() => new VirtioMmioTransport({ device: new FakeDevice(), vendorId: -1 }))).toBe(
      "ERR_INVALID_CONFIG",
    );
  });
});
