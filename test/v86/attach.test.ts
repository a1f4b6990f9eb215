/**
 * attachToV86 against a real v86 (npm `v86` 0.5.462) in Node: the card on
 * v86's PCI bus as its own 0xCF8/0xCFC emulation shows it, BAR accesses
 * through v86's port table (also after the BAR moves), INTx through v86's PCI
 * interrupt routing, guest RAM through the adapter with the JIT told of every
 * write, and a driver probing and playing through all of it.
 */
import { afterEach, describe, expect, it } from "vitest";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { PciGuestDriver } from "../../src/driver/transport-driver.js";
import type { VirtioSndError } from "../../src/errors.js";
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_VERSION_1,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_RATE_48000,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_S_OK,
} from "../../src/spec/constants.js";
import {
  VIRTIO_SND_PCM_INFO_SIZE,
  decodePcmInfo,
  encodePcmSetParams,
  encodeQueryInfo,
} from "../../src/spec/structs.js";
import { type V86Sound, attachToV86, whenV86Loaded } from "../../src/v86/attach.js";
import * as entry from "../../src/v86/index.js";
import { V86GuestMemory } from "../../src/v86/memory.js";
import {
  type Emulator,
  configAccess,
  loadedV86,
  seabiosPath,
  spyIrqs,
  spyJit,
  v86Bus,
} from "./v86-harness.js";
import { missing } from "../guest-helpers/required-parts.js";

let running: Emulator[] = [];
afterEach(async () => {
  for (const e of running) await e.destroy();
  running = [];
});

async function setup(
  bios?: string,
): Promise<{ v: Emulator; snd: V86Sound; clock: VirtualClock; backend: MemoryBackend }> {
  const v = await loadedV86(bios);
  running.push(v);
  const clock = new VirtualClock();
  const backend = new MemoryBackend({ clock, log: true });
  const snd = attachToV86(v.emulator, { backend, clock });
  return { v, snd, clock, backend };
}

const bit = (n: number) => 1n << BigInt(n);

describe("virtio-snd/v86", () => {
  it("exports attachToV86, whenV86Loaded and the guest-memory adapter", () => {
    expect(Object.keys(entry).sort()).toEqual(["V86GuestMemory", "attachToV86", "whenV86Loaded"]);
    expect(entry.attachToV86).toBe(attachToV86);
    expect(entry.whenV86Loaded).toBe(whenV86Loaded);
    expect(entry.V86GuestMemory).toBe(V86GuestMemory);
  });

  it("puts the card on v86's PCI bus, as 0xCF8/0xCFC show it", async () => {
    const { v, snd } = await setup();
    const pci = v.cpu.devices.pci;
    expect(pci.devices[snd.pciId]?.name).toBe("virtio-snd");
    const cfg = configAccess(v.cpu.io, snd.pciId);
    expect(cfg.read(0x00, 4)).toBe(((0x1040 + 25) << 16) | 0x1af4);
    expect(cfg.read(0x08, 4) >>> 8).toBe(0x040100); // class: multimedia audio
    expect(cfg.read(0x08, 1)).toBeGreaterThanOrEqual(1);
    expect(cfg.read(0x3d, 1)).toBe(1);
    const bar0 = cfg.read(0x10, 4);
    expect(bar0 & 1).toBe(1); // an I/O BAR, as v86's own virtio devices
    // The capability list, walked through v86's configuration ports.
    const types: number[] = [];
    for (let at = cfg.read(0x34, 1); at !== 0; at = cfg.read(at + 1, 1)) {
      if (cfg.read(at, 1) === 0x09) types.push(cfg.read(at + 3, 1));
    }
    expect(types).toEqual([1, 2, 3, 4, 5]);
    // BAR sizing through v86: all ones in, the size mask out.
    cfg.write(0x10, 4, 0xffff_ffff);
    expect(cfg.read(0x10, 4)).toBe((~(snd.transport.bars[0]!.size - 1) | 1) >>> 0);
    // Another slot is refused when taken; v86's own devices are still there.
    const devicesBefore = [...pci.devices];
    const clock = new VirtualClock();
    expect(() =>
      attachToV86(v.emulator, {
        backend: new MemoryBackend({ clock }),
        clock,
        pciSlot: snd.pciId >> 3,
      }),
    ).toThrow(expect.objectContaining({ code: "ERR_INVALID_CONFIG" }) as Error);
    expect(pci.devices.length).toBe(devicesBefore.length);
    devicesBefore.forEach((d, id) => expect(pci.devices[id], `PCI device ${id}`).toBe(d));
    // Its INTA# reaches a PIRQ no other device's pin does: v86's PIC cannot share a line.
    const pirq = (id: number) => (((pci.device_spaces[id]![15]! >> 8) & 0xff) - 1 + (id >> 3) - 1) & 3;
    const others = pci.devices
      .map((d, id) =>
        d !== undefined && id !== snd.pciId && ((pci.device_spaces[id]![15]! >> 8) & 0xff) !== 0
          ? pirq(id)
          : -1,
      )
      .filter((p) => p >= 0);
    expect(others.length).toBeGreaterThan(0);
    expect(others).not.toContain(pirq(snd.pciId));
  });

  it("routes BAR accesses to the transport, and follows the BAR when the firmware moves it", async () => {
    const { v, snd } = await setup();
    const io = v.cpu.io;
    const cfg = configAccess(io, snd.pciId);
    const old = cfg.read(0x10, 4) & ~3;
    expect(io.port_read16(old + 0x12)).toBe(4); // num_queues
    cfg.write(0x10, 4, 0xe000 | 1);
    expect(io.port_read16(0xe000 + 0x12)).toBe(4);
    expect(io.port_read16(old + 0x12)).toBe(0xffff); // nothing there any more
    io.port_write8(0xe000 + 0x14, 1); // device_status = ACKNOWLEDGE
    expect(snd.transport.core.status).toBe(1);
    io.port_write32(0xe000 + 0x00, 1); // device_feature_select
    expect(io.port_read32(0xe000 + 0x04) & 1).toBe(1); // VERSION_1
    expect(io.port_read8(0xe000 + 0x13)).toBe(0); // an odd byte of num_queues
  });

  it("guest memory: reads and writes v86 RAM, dirties the JIT over every write, checks bounds, survives growth", async () => {
    const { v, snd } = await setup();
    const ranges = spyJit(v.cpu);
    const m = snd.memory;
    expect(m.size).toBe(32 << 20);
    const mem8 = v.cpu.mem8 as unknown as { [i: number]: number };
    m.write(0x2000, Uint8Array.of(1, 2, 3, 4), 0, 4);
    expect([mem8[0x2000], mem8[0x2003]]).toEqual([1, 4]);
    m.writeU32(0x3000, 0xdeadbeef);
    m.writeU16(0x3004, 0xbeef);
    m.writeU8(0x3006, 7);
    m.writeU64(0x3008, 2 ** 40 + 5);
    m.fill(0x4000, 16, 0xaa);
    expect(ranges).toEqual([
      [0x2000, 0x2004],
      [0x3000, 0x3004],
      [0x3004, 0x3006],
      [0x3006, 0x3007],
      [0x3008, 0x3010],
      [0x4000, 0x4010],
    ]);
    mem8[0x5000] = 0x42; // v86 writes, the device reads
    expect(m.readU8(0x5000)).toBe(0x42);
    expect(m.readU32(0x3000)).toBe(0xdeadbeef);
    expect(m.readU64(0x3008)).toBe(2 ** 40 + 5);
    expect(m.contains(m.size - 4, 4)).toBe(true);
    expect(m.contains(m.size - 3, 4)).toBe(false);
    expect(() => m.readU32(m.size - 2)).toThrow(
      expect.objectContaining({ code: "ERR_GUEST_MEMORY" }) as Error,
    );
    expect(() => m.write(m.size, new Uint8Array(1), 0, 1)).toThrow();
    expect(ranges).toHaveLength(6); // a refused write dirties nothing
    expect(m.view()).toBeNull();

    // The wasm memory grows: the old buffer is detached, the adapter moves to the new one.
    const before = v.cpu.wasm_memory.buffer;
    (v.cpu.wasm_memory as unknown as { grow(pages: number): number }).grow(1);
    expect(v.cpu.wasm_memory.buffer).not.toBe(before);
    expect(m.readU32(0x3000)).toBe(0xdeadbeef);
    m.writeU8(0x5001, 0x43);
    expect(mem8[0x5001]).toBe(0x43);
  });

  it("a driver probes the card and plays through v86's ports, interrupts through v86's PCI routing", async () => {
    const { v, snd, clock, backend } = await setup();
    const io = v.cpu.io;
    // PIIX3 PIRQ routing as SeaBIOS sets it: PIRQA..D to IRQ 10, 10, 11, 11.
    const isa = configAccess(io, 1 << 3);
    isa.write(0x60, 4, 0x0b0b0a0a);
    const irqs = spyIrqs(v.cpu);
    const ranges = spyJit(v.cpu);

    let queueInterrupts = 0;
    const driver = new PciGuestDriver(v86Bus(io, snd.pciId), {
      queue: () => queueInterrupts++,
      config: () => undefined,
    });
    expect(driver.negotiate(bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_EVENT_IDX))).toBe(true);
    const alloc = new BumpAllocator(0x10_0000, 0x20_0000).alloc;
    const queues = [0, 1, 2, 3].map((i) => {
      const q = new SplitDriverQueue({ mem: snd.memory, alloc, size: 64, eventIdx: true });
      driver.setupQueue(i, q.layout);
      return q;
    });
    driver.driverOk();
    expect(driver.status()).toBe(0x0f);

    // PCM_INFO for both streams on the control queue.
    const req = alloc(64, 16);
    const resp = alloc(256, 16);
    const control = (bytes: Uint8Array, respLen: number): DataView => {
      snd.memory.write(req, bytes, 0, bytes.length);
      queues[0]!.add([{ addr: req, len: bytes.length }], [{ addr: resp, len: respLen }]);
      if (queues[0]!.kickNeeded()) driver.notify(0);
      expect(queues[0]!.getUsed()).not.toBeNull();
      const out = new Uint8Array(respLen);
      snd.memory.read(resp, out, 0, respLen);
      return new DataView(out.buffer);
    };
    const q = new Uint8Array(16);
    encodeQueryInfo(new DataView(q.buffer), 0, {
      code: VIRTIO_SND_R_PCM_INFO,
      startId: 0,
      count: 2,
      size: VIRTIO_SND_PCM_INFO_SIZE,
    });
    const info = control(q, 4 + 2 * VIRTIO_SND_PCM_INFO_SIZE);
    expect(info.getUint32(0, true)).toBe(VIRTIO_SND_S_OK);
    expect(decodePcmInfo(info, 4).channelsMax).toBeGreaterThanOrEqual(2);

    // The control answer raised INTx: v86 routed it to the IRQ of the slot's PIRQ.
    const slot = snd.pciId >> 3;
    const pirq = (1 - 1 + slot - 1) & 3; // INTA#, swizzled by device number as v86's PIIX3 does
    const irq = [10, 10, 11, 11][pirq]!;
    expect(irqs.raised).toEqual([irq]);
    driver.onIrq(true); // the CPU takes the interrupt: the handler reads the ISR, the line drops
    expect(irqs.lowered).toEqual([irq]);

    // Play two 10 ms periods of S16 stereo 48 kHz.
    const sp = new Uint8Array(24);
    encodePcmSetParams(new DataView(sp.buffer), 0, {
      code: VIRTIO_SND_R_PCM_SET_PARAMS,
      streamId: 0,
      bufferBytes: 3840,
      periodBytes: 1920,
      features: 0,
      channels: 2,
      format: VIRTIO_SND_PCM_FMT_S16,
      rate: VIRTIO_SND_PCM_RATE_48000,
    });
    const u32s = (...v: number[]) => new Uint8Array(new Uint32Array(v).buffer);
    expect(control(sp, 4).getUint32(0, true)).toBe(VIRTIO_SND_S_OK);
    expect(control(u32s(VIRTIO_SND_R_PCM_PREPARE, 0), 4).getUint32(0, true)).toBe(VIRTIO_SND_S_OK);
    const pcm = alloc(3840, 4096);
    const audio = Uint8Array.from({ length: 3840 }, (_, i) => (i * 7) & 0xff);
    snd.memory.write(pcm, audio, 0, 3840);
    const hdr = alloc(4, 4);
    snd.memory.writeU32(hdr, 0);
    const status = [alloc(8, 8), alloc(8, 8)];
    for (let p = 0; p < 2; p++) {
      queues[2]!.add(
        [
          { addr: hdr, len: 4 },
          { addr: pcm + 1920 * p, len: 1920 },
        ],
        [{ addr: status[p]!, len: 8 }],
      );
    }
    if (queues[2]!.kickNeeded()) driver.notify(2);
    expect(control(u32s(VIRTIO_SND_R_PCM_START, 0), 4).getUint32(0, true)).toBe(VIRTIO_SND_S_OK);
    driver.onIrq(true);
    ranges.length = 0;
    clock.advance(20_000_000);
    const used = [queues[2]!.getUsed(), queues[2]!.getUsed()];
    expect(used.every((u) => u !== null)).toBe(true);
    expect(snd.memory.readU32(status[0]!)).toBe(VIRTIO_SND_S_OK);
    expect(Buffer.from(backend.playbacksOf(0)[0]!.data.bytes()).equals(Buffer.from(audio))).toBe(true);
    // The device's writes to the status buffers and the used ring were all reported to the JIT.
    const usedRing = queues[2]!.layout.deviceAddr;
    const covered = (a: number, n: number) =>
      Array.from({ length: n }, (_, i) => a + i).every((b) => ranges.some(([s, e]) => s <= b && b < e));
    expect(covered(status[0]!, 8)).toBe(true);
    expect(covered(usedRing + 2, 2)).toBe(true); // used->idx
    expect(irqs.raised.length).toBeGreaterThan(1);
    expect(irqs.raised.every((n) => n === irq)).toBe(true);
    driver.onIrq(true);
    expect(queueInterrupts).toBeGreaterThan(0);
    expect(snd.transport.irqLevel).toBe(false);
  });

  it("detaches: off the bus and the ports, device reset, v86's reset hook restored", async () => {
    const { v, snd } = await setup();
    const io = v.cpu.io;
    const cfg = configAccess(io, snd.pciId);
    const port = cfg.read(0x10, 4) & ~3;
    const cpu = v.cpu as unknown as { reboot_internal: unknown };
    expect(Object.prototype.hasOwnProperty.call(cpu, "reboot_internal")).toBe(true);
    io.port_write8(port + 0x14, 1);
    snd.detach();
    expect(v.cpu.devices.pci.devices[snd.pciId]).toBeUndefined();
    expect(cfg.read(0x00, 4)).toBe(0xffff_ffff); // no function there
    expect(io.port_read16(port + 0x12)).toBe(0xffff);
    expect(snd.transport.core.status).toBe(0);
    expect(Object.prototype.hasOwnProperty.call(cpu, "reboot_internal")).toBe(false);
    snd.detach(); // twice is harmless
    // The slot is free again.
    const again = attachToV86(v.emulator, {
      backend: new MemoryBackend({ clock: new VirtualClock() }),
      clock: new VirtualClock(),
    });
    expect(again.pciId).toBe(snd.pciId);
  });

  it("a machine reset resets the card, as v86 resets its own virtio devices", async () => {
    const { v, snd } = await setup();
    const port = configAccess(v.cpu.io, snd.pciId).read(0x10, 4) & ~3;
    v.cpu.io.port_write8(port + 0x14, 3);
    expect(snd.transport.core.status).toBe(3);
    (v.cpu as unknown as { reboot_internal: () => void }).reboot_internal();
    expect(snd.transport.core.status).toBe(0);
  });

  it("snapshots: the card's state round-trips, and bytes that are not one are refused", async () => {
    const { snd } = await setup();
    const code = (f: () => unknown) => {
      try {
        f();
        return "ok";
      } catch (e) {
        return (e as VirtioSndError).code;
      }
    };
    const bytes = snd.saveState();
    expect(code(() => snd.restoreState(bytes))).toBe("ok");
    // All but the guest's time at the save (bytes 12..19).
    const untimed = (b: Uint8Array) => Uint8Array.from(b, (x, i) => (i >= 12 && i < 20 ? 0 : x));
    expect(untimed(snd.saveState())).toEqual(untimed(bytes));
    expect(code(() => snd.restoreState(new Uint8Array(3)))).toBe("ERR_INVALID_SNAPSHOT");
  });

  it("saves the transport and the device together, and refuses a damaged container", async () => {
    const { v, snd } = await setup();
    // A stand-in for the device's snapshot, to see the container carries it untouched.
    let restored: number[] = [];
    Object.assign(snd.device, {
      saveState: () => Uint8Array.of(7, 8, 9),
      restoreState: (b: Uint8Array) => (restored = Array.from(b)),
    });
    const port = configAccess(v.cpu.io, snd.pciId).read(0x10, 4) & ~3;
    v.cpu.io.port_write8(port + 0x14, 3);
    const bytes = snd.saveState();
    v.cpu.io.port_write8(port + 0x14, 0);
    snd.restoreState(bytes);
    expect(restored).toEqual([7, 8, 9]);
    expect(snd.transport.core.status).toBe(3);
    const code = (b: Uint8Array) => {
      try {
        snd.restoreState(b);
        return "ok";
      } catch (e) {
        return (e as VirtioSndError).code;
      }
    };
    expect(code(bytes.subarray(0, bytes.length - 1))).toBe("ERR_INVALID_SNAPSHOT");
    expect(code(Uint8Array.from(bytes, (b, i) => (i === 0 ? 0 : b)))).toBe("ERR_INVALID_SNAPSHOT");
    const wrongVersion = bytes.slice();
    wrongVersion[8] = 3;
    expect(code(wrongVersion)).toBe("ERR_INVALID_SNAPSHOT");
    // After the magic and the version: the guest's time at the save and when it stopped, then the lengths.
    const hugeLength = bytes.slice();
    new DataView(hugeLength.buffer).setUint32(28, 0xffff_ff00, true);
    expect(code(hugeLength)).toBe("ERR_INVALID_SNAPSHOT");
    for (const [at, time] of [
      [12, -1],
      [12, Number.POSITIVE_INFINITY],
      [20, -5],
    ] as const) {
      const badTime = bytes.slice();
      new DataView(badTime.buffer).setFloat64(at, time, true);
      expect(code(badTime)).toBe("ERR_INVALID_SNAPSHOT");
    }
    // Version 1: no times.
    const v1 = new Uint8Array(bytes.length - 16);
    v1.set(bytes.subarray(0, 12), 0);
    v1.set(bytes.subarray(28), 12);
    new DataView(v1.buffer).setUint32(8, 1, true);
    restored = [];
    expect(code(v1)).toBe("ok");
    expect(restored).toEqual([7, 8, 9]);
    expect(code(new Uint8Array(4))).toBe("ERR_INVALID_SNAPSHOT");
  });

  it("restored into a new emulator, the guest's clock resumes where the old one stopped", async () => {
    const a = await setup();
    const guestMs = (cpu: Emulator["cpu"]) => {
      cpu.store_current_tsc!();
      return (cpu.current_tsc![1]! * 2 ** 32 + cpu.current_tsc![0]!) / 1e6;
    };
    // No firmware: the CPU runs zeroed memory, enough to start and stop.
    await a.v.emulator.run();
    await a.v.emulator.stop();
    const stoppedAt = guestMs(a.v.cpu);
    const counter = Array.from(a.v.cpu.current_tsc!);
    const card = a.snd.saveState();

    const b = await loadedV86();
    running.push(b);
    const snd = attachToV86(b.emulator, { backend: a.backend, clock: a.clock, pciSlot: a.snd.pciId >> 3 });
    let elapsedNs: number | undefined;
    const restoreDevice = snd.device.restoreState.bind(snd.device);
    snd.device.restoreState = (d, options) => {
      elapsedNs = options?.elapsedNs;
      restoreDevice(d, options);
    };
    // What restore_state() does with the saved counter first; then it unpacks the memory, with
    // the guest's clock running (on a loaded host, as long as this).
    b.cpu.set_tsc!(counter[0]!, counter[1]!);
    await new Promise((resolve) => setTimeout(resolve, 300));
    expect(guestMs(b.cpu)).toBeGreaterThanOrEqual(stoppedAt + 300);
    snd.restoreState(card);
    const resumedAt = guestMs(b.cpu);
    // Where the card saw it stop, a moment before this test read it: not 300 ms on.
    expect(Math.abs(resumedAt - stoppedAt)).toBeLessThan(250);
    // The card was saved after the stop: the guest will live that time again before the streams go on.
    expect(elapsedNs).toBeLessThanOrEqual(0);
    expect(elapsedNs).toBeGreaterThan(-10_000_000_000);
  });

  it("takes the PCI slot and I/O ports it is given, refuses ones it cannot use", async () => {
    const v = await loadedV86();
    running.push(v);
    const clock = new VirtualClock();
    const opts = { backend: new MemoryBackend({ clock }), clock };
    const snd = attachToV86(v.emulator, { ...opts, pciSlot: 20, ioPort: 0x9100, name: "sound" });
    expect(snd.pciId).toBe(20 << 3);
    expect(v.cpu.devices.pci.devices[20 << 3]?.name).toBe("sound");
    expect(configAccess(v.cpu.io, 20 << 3).read(0x10, 4)).toBe(0x9101);
    const code = (o: object) => {
      try {
        attachToV86(v.emulator, { ...opts, ...o });
        return "ok";
      } catch (e) {
        return (e as VirtioSndError).code;
      }
    };
    expect(code({ pciSlot: 0 })).toBe("ERR_INVALID_CONFIG");
    expect(code({ pciSlot: 32 })).toBe("ERR_INVALID_CONFIG");
    expect(code({ pciSlot: 1 })).toBe("ERR_INVALID_CONFIG"); // the ISA bridge
    expect(code({ ioPort: 0x9100 })).toBe("ERR_INVALID_CONFIG"); // taken by the first card
    expect(code({ ioPort: 0x300 })).toBe("ERR_INVALID_CONFIG"); // v86 moves only ports from 0x1000
    expect(code({ ioPort: 0x9140 })).toBe("ERR_INVALID_CONFIG"); // not aligned to the BAR's size
  });

  it("waits for nothing but a v86 emulator", async () => {
    await expect(whenV86Loaded({})).rejects.toMatchObject({ code: "ERR_INVALID_STATE" });
  });

  it("refuses an emulator that has not loaded", () => {
    const clock = new VirtualClock();
    expect(() => attachToV86({} as never, { backend: new MemoryBackend({ clock }), clock })).toThrow(
      expect.objectContaining({ code: "ERR_INVALID_STATE" }) as Error,
    );
  });
});

const bios = seabiosPath();

const unavailable = missing(
  "guests",
  bios === null ? "no SeaBIOS image (Debian: apt-get install seabios)" : null,
);
describe.skipIf(unavailable)("virtio-snd/v86 with SeaBIOS (Debian's seabios bios.bin)", () => {
  it("SeaBIOS finds the card, gives it ports and an interrupt line that v86's routing agrees with", async () => {
    const { v, snd } = await setup(bios!);
    const pci = v.cpu.devices.pci;
    const initial = pci.device_spaces[snd.pciId]![4]! & ~3;
    v.emulator.run();
    // Until SeaBIOS has assigned the BAR and the interrupt line (it then looks for a boot device).
    const deadline = Date.now() + 30_000;
    const space = () => pci.device_spaces[snd.pciId]!;
    while (Date.now() < deadline && ((space()[4]! & ~3) === initial || (space()[15]! & 0xff) === 0)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    await v.emulator.stop();
    const io = v.cpu.io;
    const cfg = configAccess(io, snd.pciId);
    const port = cfg.read(0x10, 4) & ~3;
    const line = cfg.read(0x3c, 1);
    expect(port).not.toBe(initial);
    expect(port).toBeGreaterThanOrEqual(0x1000);
    expect(line).toBeGreaterThan(0);
    expect(line).toBeLessThan(16);
    expect(io.port_read16(port + 0x12)).toBe(4);
    // No other device with an interrupt pin got the same line.
    const lines = pci.devices
      .map((d, id) =>
        d !== undefined && id !== snd.pciId && ((pci.device_spaces[id]![15]! >> 8) & 0xff) !== 0
          ? pci.device_spaces[id]![15]! & 0xff
          : -1,
      )
      .filter((l) => l > 0);
    expect(lines.length).toBeGreaterThan(0);
    expect(lines).not.toContain(line);

    // Probe through the ports SeaBIOS chose; an interrupt arrives on the line SeaBIOS announced.
    const irqs = spyIrqs(v.cpu);
    const driver = new PciGuestDriver(
      v86Bus(io, snd.pciId),
      { queue: () => undefined, config: () => undefined },
      { firmware: false },
    );
    expect(driver.negotiate(bit(VIRTIO_F_VERSION_1))).toBe(true);
    const alloc = new BumpAllocator(0x10_0000, 0x20_0000).alloc;
    for (let i = 0; i < 4; i++)
      driver.setupQueue(
        i,
        new SplitDriverQueue({ mem: snd.memory, alloc, size: 16, eventIdx: false }).layout,
      );
    driver.driverOk();
    snd.transport.configChanged();
    expect(irqs.raised).toEqual([line]);
    driver.onIrq(true);
    expect(irqs.lowered).toEqual([line]);
  }, 60_000);
});
