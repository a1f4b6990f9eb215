/**
 * Random register traffic against both transports, over the real sound device
 * and guest memory full of random bytes: no access of any width, offset or
 * value throws into the emulator, and the device never touches a byte outside
 * guest memory.
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { VirtioSound } from "../../src/device/virtio-sound.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import { VIRTIO_MMIO, VIRTIO_PCI_COMMON_CFG } from "../../src/spec/constants.js";
import { VirtioMmioTransport } from "../../src/transport/mmio.js";
import { VirtioPciTransport } from "../../src/transport/pci.js";
import type { VirtioDeviceHooks } from "../../src/transport/device.js";
import { CheckedMemory } from "../virtqueue/checked-memory.js";

const RAM = 0x8000;

const width = fc.constantFrom(1, 2, 4, 8, 1, 2, 4, 3, 0, -1, NaN, 16);
const value = fc.oneof(
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0xffff_ffff }) },
  { weight: 4, arbitrary: fc.integer({ min: 0, max: 0x10 }) },
  // Addresses in RAM, at its edges and beyond it, so rings land everywhere.
  { weight: 3, arbitrary: fc.integer({ min: 0, max: RAM + 0x100 }) },
  {
    weight: 1,
    arbitrary: fc.constantFrom(-1, NaN, Infinity, 2 ** 53, 2 ** 64, 0x8000_0000, RAM - 16, 1.5),
  },
);
const smallOffset = (max: number) =>
  fc.oneof(
    { weight: 8, arbitrary: fc.integer({ min: 0, max }) },
    { weight: 1, arbitrary: fc.constantFrom(-1, NaN, 2 ** 40, 0x10_0000) },
  );

function soundDevice(memory: CheckedMemory, clock: VirtualClock) {
  return (hooks: VirtioDeviceHooks) =>
    new VirtioSound({ memory, clock, backend: new MemoryBackend({ clock }), ...hooks });
}

function guestMemory(bytes: Uint8Array): CheckedMemory {
  const flat = new FlatMemory(new ArrayBuffer(RAM));
  flat.bytes.set(bytes);
  return new CheckedMemory(flat);
}

const commonOffsets = Object.values(VIRTIO_PCI_COMMON_CFG);

/** Reset, ACK, DRIVER, features, FEATURES_OK, four 16-entry queues in RAM, DRIVER_OK, through BAR 0. */
function probe(pci: VirtioPciTransport, packed: boolean): void {
  const C = VIRTIO_PCI_COMMON_CFG;
  const w = (off: number, width: number, v: number) => pci.barWrite(0, off, width, v);
  w(C.device_status, 1, 0);
  w(C.device_status, 1, 3);
  w(C.driver_feature_select, 4, 1);
  w(C.driver_feature, 4, packed ? 0b101 : 0b1);
  w(C.driver_feature_select, 4, 0);
  w(C.driver_feature, 4, 3 << 28);
  w(C.device_status, 1, 11);
  for (let q = 0; q < 4; q++) {
    w(C.queue_select, 2, q);
    w(C.queue_size, 2, 16);
    w(C.queue_desc, 8, q * 0x1000);
    w(C.queue_driver, 8, q * 0x1000 + 0x200);
    w(C.queue_device, 8, q * 0x1000 + 0x400);
    w(C.queue_enable, 2, 1);
  }
  w(C.device_status, 1, 15);
}
const mmioOffsets = Object.values(VIRTIO_MMIO);

describe("random register traffic", () => {
  it("virtio-pci: never throws, never reaches outside guest memory", () => {
    const op = fc.oneof(
      fc.record({ k: fc.constant("cfgRead" as const), off: smallOffset(0x110), w: width }),
      fc.record({ k: fc.constant("cfgWrite" as const), off: smallOffset(0x110), w: width, v: value }),
      fc.record({
        k: fc.constant("barRead" as const),
        bar: fc.integer({ min: -1, max: 6 }),
        off: fc.oneof(fc.constantFrom(...commonOffsets), smallOffset(0x1100)),
        w: width,
      }),
      {
        weight: 4,
        arbitrary: fc.record({
          k: fc.constant("common" as const),
          off: fc.constantFrom(...commonOffsets),
          w: fc.constantFrom(1, 2, 4, 8),
          v: value,
        }),
      },
      fc.record({
        k: fc.constant("barWrite" as const),
        bar: fc.integer({ min: -1, max: 6 }),
        off: smallOffset(0x1100),
        w: width,
        v: value,
      }),
      fc.record({ k: fc.constant("notify" as const), q: fc.integer({ min: 0, max: 5 }) }),
      fc.record({ k: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 50 }) }),
      fc.record({ k: fc.constant("probe" as const), packed: fc.boolean() }),
    );
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: RAM, maxLength: RAM }),
        fc.constantFrom("io", "mem32"),
        fc.boolean(),
        fc.array(op, { minLength: 1, maxLength: 120 }),
        (bytes, kind, msix, ops) => {
          const memory = guestMemory(bytes);
          const clock = new VirtualClock();
          const pci = new VirtioPciTransport({
            device: soundDevice(memory, clock),
            bar: { index: 0, kind },
            irq: () => undefined,
            msi: () => undefined,
            ...(msix ? { msixVectors: 5 } : {}),
          });
          const notifyOff = 0x40;
          for (const o of ops) {
            switch (o.k) {
              case "cfgRead":
                pci.configRead(o.off, o.w);
                break;
              case "cfgWrite":
                pci.configWrite(o.off, o.w, o.v);
                break;
              case "barRead":
                pci.barRead(o.bar, o.off, o.w);
                break;
              case "barWrite":
                pci.barWrite(o.bar, o.off, o.w, o.v);
                break;
              case "common":
                pci.barWrite(0, o.off, o.w, o.v);
                break;
              case "notify":
                pci.barWrite(0, notifyOff + 4 * o.q, 2, o.q);
                break;
              case "tick":
                clock.advance(o.ms * 1_000_000);
                break;
              case "probe":
                // The sequence a driver follows, so random traffic also meets a running device.
                probe(pci, o.packed);
                break;
            }
          }
          expect(memory.outside).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("virtio-mmio: never throws, never reaches outside guest memory", () => {
    const op = fc.oneof(
      fc.record({
        k: fc.constant("read" as const),
        off: fc.oneof(fc.constantFrom(...mmioOffsets), smallOffset(0x140)),
        w: width,
      }),
      {
        weight: 4,
        arbitrary: fc.record({
          k: fc.constant("write" as const),
          off: fc.oneof(fc.constantFrom(...mmioOffsets), smallOffset(0x140)),
          w: fc.oneof(fc.constant(4), width),
          v: value,
        }),
      },
      fc.record({ k: fc.constant("tick" as const), ms: fc.integer({ min: 1, max: 50 }) }),
    );
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: RAM, maxLength: RAM }),
        fc.array(op, { maxLength: 150 }),
        (bytes, ops) => {
          const memory = guestMemory(bytes);
          const clock = new VirtualClock();
          const mmio = new VirtioMmioTransport({ device: soundDevice(memory, clock), irq: () => undefined });
          for (const o of ops) {
            if (o.k === "read") mmio.read(o.off, o.w);
            else if (o.k === "write") mmio.write(o.off, o.w, o.v);
            else clock.advance(o.ms * 1_000_000);
          }
          expect(memory.outside).toEqual([]);
        },
      ),
      { numRuns: 300 },
    );
  });

  it("a guest that follows the probe sequence then scribbles on the rings keeps the emulator safe", () => {
    // Status and queue registers written in a sensible order, so the device really runs on random rings.
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: RAM, maxLength: RAM }),
        fc.boolean(),
        fc.array(
          fc.record({
            q: fc.integer({ min: 0, max: 3 }),
            ms: fc.integer({ min: 0, max: 20 }),
            idx: fc.option(fc.integer({ min: 0, max: 20 })),
          }),
          { maxLength: 40 },
        ),
        (bytes, packed, kicks) => {
          const memory = guestMemory(bytes);
          const clock = new VirtualClock();
          const mmio = new VirtioMmioTransport({ device: soundDevice(memory, clock), irq: () => undefined });
          const w = (off: number, v: number) => mmio.write(off, 4, v);
          w(VIRTIO_MMIO.Status, 3);
          w(VIRTIO_MMIO.DriverFeaturesSel, 1);
          w(VIRTIO_MMIO.DriverFeatures, packed ? 0b101 : 0b1);
          w(VIRTIO_MMIO.DriverFeaturesSel, 0);
          w(VIRTIO_MMIO.DriverFeatures, 3 << 28);
          w(VIRTIO_MMIO.Status, 11);
          for (let q = 0; q < 4; q++) {
            w(VIRTIO_MMIO.QueueSel, q);
            w(VIRTIO_MMIO.QueueNum, 16);
            w(VIRTIO_MMIO.QueueDescLow, q * 0x1000);
            w(VIRTIO_MMIO.QueueDriverLow, q * 0x1000 + 0x200);
            w(VIRTIO_MMIO.QueueDeviceLow, q * 0x1000 + 0x400);
            w(VIRTIO_MMIO.QueueReady, 1);
          }
          w(VIRTIO_MMIO.Status, 15);
          expect(mmio.read(VIRTIO_MMIO.Status, 4) & 0x0f).toBe(15);
          for (const k of kicks) {
            // A split ring's available index within reach, so the device walks the random descriptors.
            if (!packed && k.idx !== null) memory.inner.writeU16(k.q * 0x1000 + 0x202, k.idx);
            w(VIRTIO_MMIO.QueueNotify, k.q);
            clock.advance(k.ms * 1_000_000);
          }
          expect(memory.outside).toEqual([]);
        },
      ),
      { numRuns: 200 },
    );
  });
});
