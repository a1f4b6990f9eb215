// examples/transports.ts: the registers a guest driver sees, for an emulator without virtio of its own.
import {
  FlatMemory,
  MemoryBackend,
  VirtioMmioTransport,
  VirtioPciTransport,
  VirtioSound,
  VirtualClock,
} from "virtio-snd";

const memory = new FlatMemory(new ArrayBuffer(1 << 20)); // the guest's RAM
const clock = new VirtualClock();
const backend = new MemoryBackend({ clock });

// virtio-pci (modern): the emulator routes configuration cycles and BAR accesses here.
const pci = new VirtioPciTransport({
  device: (hooks) => new VirtioSound({ memory, backend, clock, ...hooks }),
  bar: { index: 0, kind: "io" }, // or "mem32": the BAR holding the virtio structures
  irq: (level) => console.log(`INTx ${level ? "raised" : "lowered"}`), // reading the ISR lowers it
  onBarChange: (bar) => console.log(`BAR${bar.index} (${bar.kind}) at 0x${bar.address.toString(16)}`),
});
const vendor = pci.configRead(0x00, 2); // 0x1af4
const device = pci.configRead(0x02, 2); // 0x1040 + 25
console.log(
  `PCI ${vendor.toString(16)}:${device.toString(16)}, class 0x${(pci.configRead(0x0a, 2) >>> 0).toString(16)}`,
);
pci.configWrite(0x10, 4, 0xc000); // the firmware places BAR0 at port 0xc000...
pci.configWrite(0x04, 2, 0x1); // ...and enables I/O decoding
const hit = pci.decode("io", 0xc000); // which BAR claims a port: { bar, offset } or null
console.log(`port 0xc000 is ${hit === null ? "nobody's" : `BAR${hit.bar} + ${hit.offset}`}`);

// virtio-mmio (version 2), for boards without PCI.
const mmio = new VirtioMmioTransport({
  device: (hooks) => new VirtioSound({ memory, backend, clock, ...hooks }),
  irq: (level) => console.log(`mmio line ${level ? "raised" : "lowered"}`),
});
const magic = mmio.read(0x000, 4); // "virt"
console.log(
  `mmio magic 0x${magic.toString(16)}, version ${mmio.read(0x004, 4)}, device ${mmio.read(0x008, 4)}`,
);
mmio.write(0x070, 4, 1); // Status: ACKNOWLEDGE
