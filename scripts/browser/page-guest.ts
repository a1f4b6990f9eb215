/// <reference lib="dom" />
/**
 * In the page: boots the v86 guest the page server serves (/guest/bios.bin,
 * /guest/bzImage, /guest/initrd, /v86/v86.wasm) with the sound card attached
 * to it. Shared by the demo page and the page the browser tests drive.
 */
import { V86, type V86Options } from "v86";
import type { AudioBackend, Clock, StreamEvent } from "virtio-snd";
import { type V86Sound, attachToV86, whenV86Loaded } from "virtio-snd/v86";

export interface PageGuestOptions {
  readonly backend: AudioBackend;
  readonly clock: Clock;
  readonly onStreamEvent?: (event: StreamEvent) => void;
  /** Each line of the guest's serial console, without its newline. */
  readonly onConsole?: (line: string) => void;
}

export interface PageGuest {
  readonly emulator: V86;
  readonly snd: V86Sound;
  stop(): Promise<void>;
}

async function fetchBytes(path: string): Promise<ArrayBuffer> {
  const res = await fetch(path);
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.arrayBuffer();
}

export async function bootPageGuest(options: PageGuestOptions): Promise<PageGuest> {
  const [bios, bzimage, initrd] = await Promise.all(
    ["/guest/bios.bin", "/guest/bzImage", "/guest/initrd"].map(fetchBytes),
  );
  const emulator = new V86({
    wasm_path: "/v86/v86.wasm",
    bios: { buffer: bios! },
    bzimage: { buffer: bzimage! },
    initrd: { buffer: initrd! },
    cmdline: "console=ttyS0 tsc=reliable quiet loglevel=3",
    memory_size: 128 << 20,
    autostart: false, // the card goes on the PCI bus before the firmware runs
    disable_keyboard: true,
    disable_mouse: true,
    disable_speaker: true,
    // No NIC ("none" works though v86.d.ts does not list it).
    net_device: { type: "none" } as unknown as NonNullable<V86Options["net_device"]>,
  });
  await whenV86Loaded(emulator);
  const snd = attachToV86(emulator, {
    backend: options.backend,
    clock: options.clock,
    ...(options.onStreamEvent !== undefined ? { onStreamEvent: options.onStreamEvent } : {}),
  });
  let line: number[] = [];
  const decoder = new TextDecoder();
  emulator.add_listener("serial0-output-byte", (byte: number) => {
    if (byte !== 0x0a) {
      line.push(byte);
      return;
    }
    const text = decoder.decode(Uint8Array.from(line)).replace(/\r$/, "");
    line = [];
    options.onConsole?.(text);
  });
  await emulator.run();
  return {
    emulator,
    snd,
    async stop() {
      snd.detach();
      await emulator.destroy();
    },
  };
}
