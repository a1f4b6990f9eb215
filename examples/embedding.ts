// examples/embedding.ts: the device inside an emulator. The emulator owns the transport
// (virtio-pci or virtio-mmio); here a few lines stand in for it.
import { FlatMemory, MemoryBackend, RealTimeClock, VIRTIO_F_VERSION_1, VirtioSound } from "virtio-snd";

// What the emulator has: the guest's RAM and its interrupt lines.
const guestRam = new ArrayBuffer(16 << 20); // or a SharedArrayBuffer, or a Uint8Array
const raiseUsedBufferIrq = (queue: number): void => console.log(`interrupt: queue ${queue}`);
const setDeviceNeedsReset = (): void => console.log("DEVICE_NEEDS_RESET");

const clock = new RealTimeClock();
const device = new VirtioSound({
  memory: new FlatMemory(guestRam),
  backend: new MemoryBackend({ clock }), // or any AudioBackend
  clock,
  interrupt: (queue) => raiseUsedBufferIrq(queue),
  onNeedsReset: () => setDeviceNeedsReset(), // a ring the guest broke
});

// The transport forwards what the driver does:
const offered = device.deviceFeatures; // offer these to the driver
const driverBits = offered & (1n << BigInt(VIRTIO_F_VERSION_1)); // what the driver acked
console.log("FEATURES_OK:", device.setDriverFeatures(driverBits)); // false: refuse FEATURES_OK
console.log("config:", device.readConfig(0, 16)); // struct virtio_snd_config
device.setupQueue(0, { size: 64, descAddr: 0x1000, driverAddr: 0x1400, deviceAddr: 0x1600 }); // on queue enable
device.notify(0); // the driver kicked queue 0 (nothing is available yet)
device.setJackConnected(0, false); // unplug a jack: an event to the driver
device.reset(); // status written as 0
