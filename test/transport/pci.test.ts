/**
 * VirtioPciTransport against virtio 1.3 §4.1 (and the PCI rules it builds on).
 * Expected values are transcribed from the spec, not read from the code.
 */
import { describe, expect, it } from "vitest";
import { VirtioSndError } from "../../src/errors.js";
import { VirtioPciTransport, type VirtioPciTransportOptions } from "../../src/transport/pci.js";
import { FakeDevice, fake, soundFactory } from "./helpers.js";

// §4.1.4.3 struct virtio_pci_common_cfg offsets, transcribed.
const DFSELECT = 0x00;
const DF = 0x04;
const GFSELECT = 0x08;
const GF = 0x0c;
const MSIX_CONFIG = 0x10;
const NUM_QUEUES = 0x12;
const STATUS = 0x14;
const GENERATION = 0x15;
const Q_SELECT = 0x16;
const Q_SIZE = 0x18;
const Q_MSIX = 0x1a;
const Q_ENABLE = 0x1c;
const Q_NOFF = 0x1e;
const Q_DESC = 0x20;
const Q_DRIVER = 0x28;
const Q_DEVICE = 0x30;
const NO_VECTOR = 0xffff;

const ACK = 1;
const DRIVER = 2;
const DRIVER_OK = 4;
const FEATURES_OK = 8;
const NEEDS_RESET = 0x40;

interface Cap {
  at: number;
  type: number;
  bar: number;
  offset: number;
  length: number;
  capLen: number;
  extra: number;
}

/** A transport with a recorded INTx line and MSI messages, and the guest's view of it. */
function harness(options: Partial<VirtioPciTransportOptions> = {}, dev = fake()) {
  const irqs: boolean[] = [];
  const msis: [number, number][] = [];
  const pci = new VirtioPciTransport({
    device: dev.factory,
    irq: (level) => irqs.push(level),
    msi: (a, d) => msis.push([a, d]),
    ...options,
  });
  const caps = (): Cap[] => {
    const out: Cap[] = [];
    for (let at = pci.configRead(0x34, 1); at !== 0; at = pci.configRead(at + 1, 1)) {
      if (pci.configRead(at, 1) !== 0x09) continue;
      out.push({
        at,
        type: pci.configRead(at + 3, 1),
        bar: pci.configRead(at + 4, 1),
        offset: pci.configRead(at + 8, 4),
        length: pci.configRead(at + 12, 4),
        capLen: pci.configRead(at + 2, 1),
        extra: pci.configRead(at + 16, 4),
      });
    }
    return out;
  };
  const cap = (type: number): Cap => caps().find((c) => c.type === type)!;
  const common = cap(1);
  const bar = common.bar;
  const rd = (off: number, w: number) => pci.barRead(bar, common.offset + off, w);
  const wr = (off: number, w: number, v: number) => pci.barWrite(bar, common.offset + off, w, v);
  const isr = () => pci.barRead(bar, cap(3).offset, 1);
  const kick = (q: number) => {
    const n = cap(2);
    wr(Q_SELECT, 2, q);
    pci.barWrite(bar, n.offset + rd(Q_NOFF, 2) * n.extra, 2, q);
  };
  /** ACK, DRIVER, VERSION_1 (+ more), FEATURES_OK. */
  const negotiate = (high = 1) => {
    wr(STATUS, 1, ACK);
    wr(STATUS, 1, ACK | DRIVER);
    wr(GFSELECT, 4, 1);
    wr(GF, 4, high);
    wr(STATUS, 1, ACK | DRIVER | FEATURES_OK);
  };
  const enable = (q: number, size = 16, base = 0x1000 * (q + 1)) => {
    wr(Q_SELECT, 2, q);
    wr(Q_SIZE, 2, size);
    wr(Q_DESC, 4, base);
    wr(Q_DRIVER, 4, base + 0x400);
    wr(Q_DEVICE, 4, base + 0x800);
    wr(Q_ENABLE, 2, 1);
  };
  return {
    pci,
    dev: dev.device,
    hooks: () => dev.device.hooks!,
    irqs,
    msis,
    caps,
    cap,
    bar,
    rd,
    wr,
    isr,
    kick,
    negotiate,
    enable,
  };
}

describe("PCI configuration header (§4.1.2)", () => {
  it("identifies a non-transitional virtio sound device", () => {
    const { pci } = harness();
    expect(pci.configRead(0x00, 2)).toBe(0x1af4);
    expect(pci.configRead(0x02, 2)).toBe(0x1040 + 25);
    expect(pci.configRead(0x00, 4)).toBe(((0x1040 + 25) << 16) | 0x1af4);
    expect(pci.configRead(0x08, 1)).toBeGreaterThanOrEqual(1); // revision 1 or more
    expect(pci.configRead(0x0b, 1)).toBe(0x04); // multimedia
    expect(pci.configRead(0x0a, 1)).toBe(0x01); // audio
    expect(pci.configRead(0x0e, 1)).toBe(0x00); // type 0 header
    expect(pci.configRead(0x2c, 2)).toBe(0x1af4);
    expect(pci.configRead(0x2e, 2)).toBeGreaterThanOrEqual(0x40); // §4.1.2.1
    expect(pci.configRead(0x3d, 1)).toBe(1); // INTA#
    expect(pci.configRead(0x06, 2) & 0x10).toBe(0x10); // capability list
    expect(pci.configRead(0x34, 1) & 3).toBe(0);
  });

  it("keeps read-only fields as they are", () => {
    const { pci } = harness();
    const before = pci.configSpace();
    for (const off of [0x00, 0x02, 0x08, 0x0a, 0x0e, 0x2c, 0x34, 0x3d, 0x40, 0x44, 0x48, 0x4c]) {
      pci.configWrite(off, 4, 0xdead_beef);
      pci.configWrite(off, 2, 0x1234);
      pci.configWrite(off, 1, 0x5a);
    }
    const after = pci.configSpace();
    for (const off of [0x00, 0x02, 0x08, 0x0a, 0x0e, 0x2c, 0x34, 0x3d, 0x40, 0x44, 0x48, 0x4c])
      expect(after[off], `0x${off.toString(16)}`).toBe(before[off]);
  });

  it("lets the command register take only I/O, memory, bus master and INTx disable", () => {
    const { pci } = harness();
    pci.configWrite(0x04, 2, 0xffff);
    expect(pci.configRead(0x04, 2)).toBe(0x0407);
    pci.configWrite(0x04, 2, 0);
    expect(pci.configRead(0x04, 2)).toBe(0);
    // Interrupt line, cache line size and latency timer are the firmware's to write.
    pci.configWrite(0x3c, 1, 11);
    pci.configWrite(0x0c, 1, 0x10);
    expect(pci.configRead(0x3c, 1)).toBe(11);
    expect(pci.configRead(0x0c, 1)).toBe(0x10);
  });

  it("sizes BARs the PCI way: all ones written, the size mask read back", () => {
    for (const kind of ["io", "mem32"] as const) {
      const { pci } = harness({ bar: { index: 2, kind } });
      const off = 0x10 + 4 * 2;
      expect(pci.configRead(off, 4) & 1).toBe(kind === "io" ? 1 : 0);
      pci.configWrite(off, 4, 0xffff_ffff);
      const mask = pci.configRead(off, 4);
      const size = (~(mask & (kind === "io" ? ~3 : ~0xf)) + 1) >>> 0;
      expect(size).toBe(pci.bars[0]!.size);
      expect(size & (size - 1)).toBe(0);
      expect(size).toBeGreaterThanOrEqual(kind === "io" ? 16 : 4096);
      if (kind === "io") expect(size).toBeLessThanOrEqual(256);
      // Unused BARs and the expansion ROM read 0 whatever is written.
      for (const other of [0x10, 0x14, 0x1c, 0x20, 0x24, 0x30]) {
        pci.configWrite(other, 4, 0xffff_ffff);
        expect(pci.configRead(other, 4)).toBe(0);
      }
    }
  });

  it("tells the embedder where a BAR is mapped once decoding is enabled", () => {
    const seen: string[] = [];
    const { pci } = harness({
      bar: { index: 0, kind: "io" },
      onBarChange: (b) => seen.push(`${b.index} ${b.kind} ${b.address.toString(16)} ${b.enabled}`),
    });
    pci.configWrite(0x10, 4, 0xc080);
    pci.configWrite(0x04, 2, 1);
    expect(seen).toEqual(["0 io c080 false", "0 io c080 true"]);
    expect(pci.decode("io", 0xc080 + 0x12)).toEqual({ bar: 0, offset: 0x12 });
    expect(pci.decode("mem", 0xc080)).toBeNull();
    pci.configWrite(0x04, 2, 0);
    expect(pci.decode("io", 0xc080)).toBeNull();
  });
});

describe("virtio capabilities (§4.1.4)", () => {
  it("lists common, notify, ISR, device and PCI access capabilities that fit their BAR", () => {
    const h = harness();
    const caps = h.caps();
    expect(caps.map((c) => c.type)).toEqual([1, 2, 3, 4, 5]);
    const barSize = h.pci.bars[0]!.size;
    for (const c of caps.filter((c) => c.type !== 5)) {
      expect(c.bar).toBe(0);
      expect(c.offset + c.length).toBeLessThanOrEqual(barSize);
      expect(c.capLen).toBe(c.type === 2 ? 20 : 16);
      expect(c.at % 4).toBe(0);
    }
    expect(h.cap(5).capLen).toBe(20);
    // §4.1.4.3: common configuration 4-byte aligned, long enough for every field.
    expect(h.cap(1).offset % 4).toBe(0);
    expect(h.cap(1).length).toBeGreaterThanOrEqual(0x38);
    // §4.1.4.4: notify 2-byte aligned, multiplier an even power of 2 or 0, room for every queue.
    const n = h.cap(2);
    expect(n.offset % 2).toBe(0);
    expect(n.extra === 0 || (n.extra % 2 === 0 && (n.extra & (n.extra - 1)) === 0)).toBe(true);
    for (let q = 0; q < 4; q++) {
      h.wr(Q_SELECT, 2, q);
      expect(h.rd(Q_NOFF, 2) * n.extra + 2).toBeLessThanOrEqual(n.length);
    }
    // §4.1.4.6: device configuration 4-byte aligned, holding struct virtio_snd_config.
    expect(h.cap(4).offset % 4).toBe(0);
    expect(h.cap(4).length).toBe(16);
    // Structures do not overlap.
    const spans = caps.filter((c) => c.type !== 5).sort((a, b) => a.offset - b.offset);
    for (let i = 1; i < spans.length; i++)
      expect(spans[i]!.offset).toBeGreaterThanOrEqual(spans[i - 1]!.offset + spans[i - 1]!.length);
  });

  it("carries the MSI-X capability when asked, with its table and PBA in a memory BAR", () => {
    const { pci } = harness({ msixVectors: 5, msixBar: 1 });
    let at = pci.configRead(0x34, 1);
    while (at !== 0 && pci.configRead(at, 1) !== 0x11) at = pci.configRead(at + 1, 1);
    expect(at).not.toBe(0);
    expect(pci.configRead(at + 2, 2) & 0x7ff).toBe(4); // table size - 1
    expect(pci.configRead(at + 4, 4) & 7).toBe(1); // BIR
    expect(pci.configRead(at + 8, 4) & 7).toBe(1);
    expect(pci.bars.map((b) => `${b.index}:${b.kind}:${b.role}`)).toEqual(["0:mem32:virtio", "1:mem32:msix"]);
    // Entries start masked.
    for (let v = 0; v < 5; v++) expect(pci.barRead(1, v * 16 + 12, 4) & 1).toBe(1);
  });

  it("refuses layouts the spec does not allow", () => {
    const f = () => new FakeDevice();
    const codes = (o: Partial<VirtioPciTransportOptions>) => {
      try {
        new VirtioPciTransport({ device: f(), ...o });
        return "ok";
      } catch (e) {
        return (e as VirtioSndError).code;
      }
    };
    expect(codes({ notifyOffMultiplier: 3 })).toBe("ERR_INVALID_CONFIG");
    expect(codes({ notifyOffMultiplier: 1 })).toBe("ERR_INVALID_CONFIG");
    expect(codes({ notifyOffMultiplier: 0 })).toBe("ok");
    expect(codes({ bar: { kind: "io" }, notifyOffMultiplier: 4096 })).toBe("ERR_INVALID_CONFIG");
    expect(codes({ bar: { index: 6 } })).toBe("ERR_INVALID_CONFIG");
    expect(codes({ msixVectors: 4, msixBar: 0 })).toBe("ERR_INVALID_CONFIG");
    expect(codes({ revision: 0 })).toBe("ERR_INVALID_CONFIG");
    const legacy = f();
    legacy.deviceFeatures = 1n << 29n;
    expect(codes({ device: legacy })).toBe("ERR_INVALID_CONFIG");
  });
});

describe("common configuration (§4.1.4.3)", () => {
  it("offers the device's features in 32-bit windows and reads 0 beyond them", () => {
    const { rd, wr, dev } = harness();
    wr(DFSELECT, 4, 0);
    expect(rd(DF, 4)).toBe(1 << 29);
    wr(DFSELECT, 4, 1);
    expect(rd(DF, 4)).toBe(0b101); // VERSION_1 (32), RING_PACKED (34)
    wr(DFSELECT, 4, 2);
    expect(rd(DF, 4)).toBe(0);
    wr(DFSELECT, 4, 0xffff_ffff);
    expect(rd(DF, 4)).toBe(0);
    expect(dev.calls).toEqual([]);
  });

  it("withholds NOTIFICATION_DATA and RING_RESET, which change the registers' meaning", () => {
    const d = fake();
    d.device.deviceFeatures |= (1n << 38n) | (1n << 40n);
    const { rd, wr } = harness({}, d);
    wr(DFSELECT, 4, 1);
    expect(rd(DF, 4)).toBe(0b101);
  });

  it("accepts features at FEATURES_OK only if the device does; the driver reads it back (§2.2.2, §3.1.1)", () => {
    const h = harness();
    h.negotiate(0b1); // VERSION_1
    expect(h.rd(STATUS, 1)).toBe(ACK | DRIVER | FEATURES_OK);
    expect(h.dev.calls).toEqual(["features 0x100000000"]);
    // Features are fixed from now on.
    h.wr(GFSELECT, 4, 0);
    h.wr(GF, 4, 0xffff_ffff);
    expect(h.rd(GF, 4)).toBe(0);

    const refused = harness();
    refused.negotiate(0b10); // bit 33, not offered, and no VERSION_1
    expect(refused.rd(STATUS, 1)).toBe(ACK | DRIVER);
    // A feature in a window beyond those that exist is refused too.
    const far = harness();
    far.wr(GFSELECT, 4, 9);
    far.wr(GF, 4, 1);
    far.negotiate(1);
    expect(far.rd(STATUS, 1) & FEATURES_OK).toBe(0);
    expect(far.dev.calls).toEqual([]);
  });

  it("keeps status bits once set, refuses DRIVER_OK without FEATURES_OK, leaves NEEDS_RESET to the device", () => {
    const h = harness();
    h.wr(STATUS, 1, ACK | DRIVER_OK);
    expect(h.rd(STATUS, 1)).toBe(ACK);
    h.wr(STATUS, 1, DRIVER | NEEDS_RESET);
    expect(h.rd(STATUS, 1)).toBe(ACK | DRIVER);
    h.negotiate();
    h.wr(STATUS, 1, ACK);
    expect(h.rd(STATUS, 1)).toBe(ACK | DRIVER | FEATURES_OK);
  });

  it("resets everything when 0 is written to device_status (§4.1.4.3.2)", () => {
    const h = harness({ msixVectors: 2 });
    h.negotiate();
    h.enable(0);
    h.wr(MSIX_CONFIG, 2, 1);
    h.wr(STATUS, 1, 0);
    expect(h.rd(STATUS, 1)).toBe(0);
    expect(h.dev.calls.at(-1)).toBe("reset");
    h.wr(Q_SELECT, 2, 0);
    expect(h.rd(Q_ENABLE, 2)).toBe(0);
    expect(h.rd(Q_SIZE, 2)).toBe(256);
    expect(h.rd(Q_DESC, 4)).toBe(0);
    expect(h.rd(MSIX_CONFIG, 2)).toBe(NO_VECTOR);
    h.wr(DFSELECT, 4, 1);
    h.wr(STATUS, 1, 0);
    expect(h.rd(DFSELECT, 4)).toBe(0);
  });

  it("describes the queues: num_queues, maximum size, unavailable queues, notify offsets", () => {
    const { rd, wr } = harness();
    expect(rd(NUM_QUEUES, 2)).toBe(4);
    for (let q = 0; q < 4; q++) {
      wr(Q_SELECT, 2, q);
      expect(rd(Q_SELECT, 2)).toBe(q);
      expect(rd(Q_SIZE, 2)).toBe(256);
      expect(rd(Q_NOFF, 2)).toBe(q);
      expect(rd(Q_ENABLE, 2)).toBe(0);
      expect(rd(Q_MSIX, 2)).toBe(NO_VECTOR);
    }
    wr(Q_SELECT, 2, 4);
    expect(rd(Q_SIZE, 2)).toBe(0); // "0 means the queue is unavailable"
    wr(Q_ENABLE, 2, 1);
    expect(rd(Q_ENABLE, 2)).toBe(0);
    expect(rd(GENERATION, 1)).toBe(0);
  });

  it("takes a smaller power-of-2 queue size for split rings, any size up to the maximum for packed", () => {
    const split = harness();
    split.negotiate(0b1);
    split.wr(Q_SELECT, 2, 0);
    for (const [v, expected] of [
      [64, 64],
      [100, 64],
      [512, 64],
      [0, 64],
      [1, 1],
    ] as const) {
      split.wr(Q_SIZE, 2, v);
      expect(split.rd(Q_SIZE, 2)).toBe(expected);
    }
    const packed = harness();
    packed.negotiate(0b101);
    packed.wr(Q_SELECT, 2, 0);
    packed.wr(Q_SIZE, 2, 100);
    expect(packed.rd(Q_SIZE, 2)).toBe(100);
  });

  it("enables a queue only after FEATURES_OK, handing the device the layout; later writes are ignored", () => {
    const h = harness();
    h.enable(1, 32);
    h.wr(Q_SELECT, 2, 1);
    expect(h.rd(Q_ENABLE, 2)).toBe(0);
    expect(h.dev.calls).toEqual([]);
    h.negotiate();
    h.wr(Q_SELECT, 2, 1);
    h.wr(Q_DESC, 8, 0x1_2345_6000);
    expect(h.rd(Q_DESC, 4)).toBe(0x2345_6000);
    expect(h.rd(Q_DESC + 4, 4)).toBe(1);
    expect(h.rd(Q_DESC, 8)).toBe(0x1_2345_6000);
    h.wr(Q_DRIVER, 4, 0x2000);
    h.wr(Q_DEVICE, 4, 0x3000);
    h.wr(Q_SIZE, 2, 32);
    h.wr(Q_ENABLE, 2, 1);
    expect(h.rd(Q_ENABLE, 2)).toBe(1);
    expect(h.dev.layouts.get(1)).toEqual({
      size: 32,
      descAddr: 0x1_2345_6000,
      driverAddr: 0x2000,
      deviceAddr: 0x3000,
    });
    h.wr(Q_SIZE, 2, 16);
    h.wr(Q_DESC, 4, 0);
    h.wr(Q_ENABLE, 2, 0); // the driver must not write 0 (§4.1.4.3.2): nothing happens
    expect(h.rd(Q_SIZE, 2)).toBe(32);
    expect(h.rd(Q_DESC, 4)).toBe(0x2345_6000);
    expect(h.rd(Q_ENABLE, 2)).toBe(1);
    expect(h.dev.calls.filter((c) => c.startsWith("setup"))).toEqual(["setup 1 32"]);
  });

  it("passes the device-specific configuration through (§4.1.4.6)", () => {
    const h = harness();
    const devOff = h.cap(4).offset;
    expect(h.pci.barRead(h.bar, devOff, 4)).toBe(0x13121110);
    expect(h.pci.barRead(h.bar, devOff + 5, 1)).toBe(0x15);
    expect(h.pci.barRead(h.bar, devOff + 14, 4)).toBe(0); // straddles the end of the structure
    h.pci.barWrite(h.bar, devOff + 2, 2, 0xbeef);
    expect(h.dev.calls).toEqual(["writeConfig 2 239,190"]);
  });
});

describe("notifications (§4.1.4.4)", () => {
  it("notifies the queue whose address was written, once DRIVER_OK is set", () => {
    const h = harness();
    h.negotiate();
    h.enable(0);
    h.enable(2);
    h.kick(2);
    h.kick(1); // not enabled: nothing to notify
    expect(h.dev.calls.filter((c) => c.startsWith("notify"))).toEqual([]);
    h.wr(STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    expect(h.dev.calls.filter((c) => c.startsWith("notify"))).toEqual(["notify 2"]);
    h.kick(0);
    h.kick(2);
    expect(h.dev.calls.filter((c) => c.startsWith("notify"))).toEqual(["notify 2", "notify 0", "notify 2"]);
    // A write between two queues' addresses notifies nobody.
    const n = h.cap(2);
    h.pci.barWrite(h.bar, n.offset + 1, 1, 0);
    expect(h.dev.calls.filter((c) => c.startsWith("notify"))).toHaveLength(3);
  });

  it("with a multiplier of 0, takes the queue from the value written", () => {
    const h = harness({ notifyOffMultiplier: 0 });
    h.negotiate();
    h.enable(3);
    h.wr(STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    h.pci.barWrite(h.bar, h.cap(2).offset, 2, 3);
    expect(h.dev.calls.at(-1)).toBe("notify 3");
  });
});

describe("INTx and the ISR (§4.1.4.5)", () => {
  function running(options: Partial<VirtioPciTransportOptions> = {}) {
    const h = harness(options);
    h.negotiate();
    for (let q = 0; q < 4; q++) h.enable(q);
    h.wr(STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    return h;
  }

  it("sets the queue bit and asserts INTA#; reading the ISR clears it and deasserts", () => {
    const h = running();
    h.hooks().interrupt(2);
    expect(h.irqs).toEqual([true]);
    expect(h.pci.configRead(0x06, 2) & 0x08).toBe(0x08);
    h.hooks().interrupt(3); // already asserted
    expect(h.irqs).toEqual([true]);
    expect(h.isr()).toBe(1);
    expect(h.irqs).toEqual([true, false]);
    expect(h.isr()).toBe(0);
    expect(h.pci.configRead(0x06, 2) & 0x08).toBe(0);
  });

  it("holds used buffer notifications until DRIVER_OK", () => {
    const h = harness();
    h.negotiate();
    h.enable(1);
    h.hooks().interrupt(1);
    expect(h.irqs).toEqual([]);
    h.wr(STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    expect(h.irqs).toEqual([true]);
  });

  it("keeps INTA# low while the command register disables INTx, with the status bit still set", () => {
    const h = running();
    h.pci.configWrite(0x04, 2, 0x0400);
    h.hooks().interrupt(0);
    expect(h.irqs).toEqual([]);
    expect(h.pci.configRead(0x06, 2) & 0x08).toBe(0x08);
    h.pci.configWrite(0x04, 2, 0);
    expect(h.irqs).toEqual([true]);
  });

  it("DEVICE_NEEDS_RESET: the status bit and a configuration interrupt (§2.1.2)", () => {
    const needs: string[] = [];
    const h = running({ onNeedsReset: (e) => needs.push(e.message) });
    h.hooks().onNeedsReset(new Error("ring broken"));
    expect(h.rd(STATUS, 1) & NEEDS_RESET).toBe(NEEDS_RESET);
    expect(h.isr()).toBe(2);
    expect(needs).toEqual(["ring broken"]);
    h.hooks().onNeedsReset(new Error("again")); // already set: nothing more
    expect(h.isr()).toBe(0);
    h.wr(STATUS, 1, 0);
    expect(h.rd(STATUS, 1)).toBe(0);
  });

  it("a new configuration generation comes with a configuration interrupt", () => {
    const h = running();
    h.pci.configChanged();
    expect(h.rd(GENERATION, 1)).toBe(1);
    expect(h.isr()).toBe(2);
  });
});

describe("MSI-X (§4.1.5.1.2)", () => {
  function msix() {
    const h = harness({ msixVectors: 3, msixBar: 1 });
    let at = h.pci.configRead(0x34, 1);
    while (h.pci.configRead(at, 1) !== 0x11) at = h.pci.configRead(at + 1, 1);
    const entry = (v: number, addr: number, data: number, masked = false) => {
      h.pci.barWrite(1, v * 16, 4, addr);
      h.pci.barWrite(1, v * 16 + 4, 4, 0);
      h.pci.barWrite(1, v * 16 + 8, 4, data);
      h.pci.barWrite(1, v * 16 + 12, 4, masked ? 1 : 0);
    };
    return { ...h, at, entry };
  }

  it("maps vectors the table has, and reads back NO_VECTOR for the others", () => {
    const h = msix();
    h.wr(MSIX_CONFIG, 2, 2);
    expect(h.rd(MSIX_CONFIG, 2)).toBe(2);
    h.wr(MSIX_CONFIG, 2, 3);
    expect(h.rd(MSIX_CONFIG, 2)).toBe(NO_VECTOR);
    h.wr(Q_SELECT, 2, 1);
    h.wr(Q_MSIX, 2, 1);
    expect(h.rd(Q_MSIX, 2)).toBe(1);
    h.wr(Q_MSIX, 2, 7);
    expect(h.rd(Q_MSIX, 2)).toBe(NO_VECTOR);
    // Without MSI-X every vector is refused.
    const plain = harness();
    plain.wr(MSIX_CONFIG, 2, 0);
    expect(plain.rd(MSIX_CONFIG, 2)).toBe(NO_VECTOR);
  });

  it("sends the table's message for the queue's vector, never INTx, and nothing for NO_VECTOR", () => {
    const h = msix();
    h.entry(0, 0xfee0_0000, 0x41);
    h.entry(1, 0xfee0_1000, 0x42);
    h.pci.configWrite(h.at + 2, 2, 0x8000);
    h.negotiate();
    h.wr(MSIX_CONFIG, 2, 0);
    h.enable(0);
    h.wr(Q_MSIX, 2, 1);
    h.enable(1);
    h.wr(Q_MSIX, 2, NO_VECTOR);
    h.wr(STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    h.hooks().interrupt(0);
    h.hooks().interrupt(1);
    h.pci.configChanged();
    expect(h.msis).toEqual([
      [0xfee0_1000, 0x42],
      [0xfee0_0000, 0x41],
    ]);
    expect(h.irqs).toEqual([]);
  });

  it("keeps a masked vector's message pending in the PBA and sends it when unmasked", () => {
    const h = msix();
    h.entry(1, 0xfee0_0000, 7, true);
    h.pci.configWrite(h.at + 2, 2, 0x8000);
    h.negotiate();
    h.enable(0);
    h.wr(Q_MSIX, 2, 1);
    h.wr(STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    h.hooks().interrupt(0);
    expect(h.msis).toEqual([]);
    const pba = h.pci.configRead(h.at + 8, 4) & ~7;
    expect(h.pci.barRead(1, pba, 8)).toBe(0b10);
    h.pci.barWrite(1, pba, 4, 0); // the PBA is read-only
    expect(h.pci.barRead(1, pba, 4)).toBe(0b10);
    h.pci.barWrite(1, 16 + 12, 4, 0);
    expect(h.msis).toEqual([[0xfee0_0000, 7]]);
    expect(h.pci.barRead(1, pba, 4)).toBe(0);
    // The function mask holds every vector.
    h.pci.configWrite(h.at + 2, 2, 0xc000);
    h.hooks().interrupt(0);
    expect(h.msis).toHaveLength(1);
    h.pci.configWrite(h.at + 2, 2, 0x8000);
    expect(h.msis).toHaveLength(2);
  });
});

describe("the PCI configuration access window (§4.1.4.9)", () => {
  it("reads and writes the BAR through pci_cfg_data", () => {
    const h = harness();
    const c = h.cap(5).at;
    h.pci.configWrite(c + 4, 1, h.bar);
    h.pci.configWrite(c + 8, 4, h.cap(1).offset + NUM_QUEUES);
    h.pci.configWrite(c + 12, 4, 2);
    expect(h.pci.configRead(c + 16, 2)).toBe(4);
    h.pci.configWrite(c + 8, 4, h.cap(1).offset + DFSELECT);
    h.pci.configWrite(c + 12, 4, 4);
    h.pci.configWrite(c + 16, 4, 1);
    expect(h.rd(DFSELECT, 4)).toBe(1);
    // A length of 3, or an offset not aligned to the length, is ignored.
    h.pci.configWrite(c + 12, 4, 3);
    h.pci.configWrite(c + 16, 4, 0);
    expect(h.rd(DFSELECT, 4)).toBe(1);
    h.pci.configWrite(c + 8, 4, h.cap(1).offset + 2);
    h.pci.configWrite(c + 12, 4, 4);
    h.pci.configWrite(c + 16, 4, 0);
    expect(h.rd(DFSELECT, 4)).toBe(1);
  });
});

describe("accesses of unexpected width and alignment", () => {
  it("reads the bytes of the common configuration at any offset, ignores writes that match no field", () => {
    const h = harness();
    h.negotiate();
    // num_queues (0x0004) and device_status (ACK|DRIVER|FEATURES_OK) read across.
    expect(h.rd(NUM_QUEUES + 1, 2)).toBe(0x0b00);
    expect(h.rd(NUM_QUEUES, 1)).toBe(4);
    h.wr(Q_SELECT + 1, 1, 2); // half of queue_select
    h.wr(Q_SELECT, 4, 2); // queue_select and queue_size at once
    h.wr(DFSELECT, 2, 1);
    expect(h.rd(Q_SELECT, 2)).toBe(0);
    expect(h.rd(DFSELECT, 4)).toBe(0);
    expect(h.rd(STATUS, 4)).toBe(0x0b); // device_status, generation 0, queue_select 0
  });

  it("never throws, and reads 0 for what is not there", () => {
    const h = harness({ msixVectors: 2 });
    for (const w of [0, 3, 5, 16, -1, NaN, 1.5]) {
      expect(h.pci.barRead(h.bar, 0, w)).toBe(0);
      expect(h.pci.configRead(0, w)).toBe(0);
      h.pci.barWrite(h.bar, 0, w, 1);
      h.pci.configWrite(0, w, 1);
    }
    for (const off of [-4, 1.5, NaN, Infinity, 2 ** 60, 0x1000, 0x10_0000]) {
      expect(h.pci.barRead(h.bar, off, 4)).toBe(0);
      h.pci.barWrite(h.bar, off, 4, 0xffff_ffff);
      h.pci.configWrite(off, 4, 0xffff_ffff);
    }
    expect(h.pci.configRead(0x100, 4)).toBe(0); // extended configuration space
    expect(h.pci.configRead(0xfe, 4)).toBe(h.pci.configRead(0xfe, 2));
    expect(h.pci.barRead(5, 0, 4)).toBe(0);
    for (const v of [NaN, -1, 2 ** 70, Infinity, 1n as unknown as number, "7" as unknown as number]) {
      h.wr(DFSELECT, 4, v);
      h.wr(Q_DESC, 8, v);
    }
    expect(h.rd(DFSELECT, 4)).toBe(0);
  });
});

describe("snapshots and resets of the transport", () => {
  it("restores the registers and the INTx level of a saved transport", () => {
    const a = harness({ msixVectors: 2 });
    a.pci.configWrite(0x10, 4, 0xfebf_0000);
    a.negotiate();
    a.enable(0, 64);
    a.enable(3, 8);
    a.wr(STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    a.hooks().interrupt(3);
    const saved = a.pci.saveState();

    const b = harness({ msixVectors: 2 });
    b.pci.restoreState(saved);
    expect(b.irqs).toEqual([true]);
    expect(b.pci.configSpace()).toEqual(a.pci.configSpace());
    for (const off of [STATUS, Q_SELECT, NUM_QUEUES]) expect(b.rd(off, 2)).toBe(a.rd(off, 2));
    b.wr(Q_SELECT, 2, 0);
    expect([b.rd(Q_SIZE, 2), b.rd(Q_ENABLE, 2), b.rd(Q_DESC, 4)]).toEqual([64, 1, 0x1000]);
    expect(b.dev.calls).toEqual([]); // the device restores itself
    expect(b.isr()).toBe(1);
  });

  it("refuses a snapshot that does not fit, changing nothing", () => {
    const a = harness({ msixVectors: 2 });
    const saved = a.pci.saveState();
    const b = harness();
    const code = (bytes: Uint8Array) => {
      try {
        b.pci.restoreState(bytes);
        return "ok";
      } catch (e) {
        return (e as VirtioSndError).code;
      }
    };
    expect(code(saved)).toBe("ERR_INVALID_SNAPSHOT"); // MSI-X table of another size
    expect(code(new Uint8Array([1, 2, 3]))).toBe("ERR_INVALID_SNAPSHOT");
    expect(code(new Uint8Array(0))).toBe("ERR_INVALID_SNAPSHOT");
    const other = harness({ bar: { kind: "io" } }).pci.saveState();
    expect(code(other)).toBe("ERR_INVALID_SNAPSHOT"); // a BAR of another kind
    expect(code(b.pci.saveState())).toBe("ok");
  });

  it("a platform reset returns the configuration space and the device to power-on", () => {
    const h = harness();
    const initial = h.pci.configSpace();
    h.pci.configWrite(0x04, 2, 7);
    h.pci.configWrite(0x10, 4, 0xfebf_0000);
    h.negotiate();
    h.pci.reset();
    expect(h.pci.configSpace()).toEqual(initial);
    expect(h.rd(STATUS, 1)).toBe(0);
  });
});

describe("with the real sound device", () => {
  it("reads struct virtio_snd_config through the device capability", () => {
    const h = harness({ device: soundFactory() });
    const off = h.cap(4).offset;
    // DEFAULT_CONFIG: 2 jacks, 2 streams, 6 chmaps, 0 controls.
    expect([0, 4, 8, 12].map((o) => h.pci.barRead(h.bar, off + o, 4))).toEqual([2, 2, 6, 0]);
  });

  it("an unusable ring at queue_enable puts the device into needs-reset, not the emulator into an exception", () => {
    const h = harness({ device: soundFactory() });
    h.negotiate();
    h.enable(0, 16, 0xffff_f000); // outside 1 MiB of RAM
    expect(h.rd(STATUS, 1) & NEEDS_RESET).toBe(NEEDS_RESET);
    expect(h.irqs).toEqual([]); // before DRIVER_OK: no interrupt
    h.wr(STATUS, 1, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
    expect(h.irqs).toEqual([true]); // now the driver hears of it
    expect(h.isr()).toBe(2);
  });
});
