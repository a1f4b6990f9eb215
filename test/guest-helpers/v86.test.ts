/**
 * The v86 guest harness: a Linux guest boots inside v86 in this process, runs
 * a payload, and its i386 glibc programs (aplay, amixer) work; v86's own
 * virtio-console works over the same PCI transport a sound device uses. No
 * sound device is attached here, so the guest has no sound card.
 *
 * Skips (saying why) when the v86 package or the guest's build tools are
 * missing (scripts/guest-v86/install-deps.sh installs them), unless
 * VSND_REQUIRE_GUESTS=1, which turns the missing part into a failure. Builds
 * the guest on first use (scripts/guest-v86/build-v86-guest.sh: it compiles a
 * kernel, several minutes).
 */
import { createHash } from "node:crypto";
import { beforeAll, describe, expect, it } from "vitest";
import { type V86GuestImage, describeV86Boot, ensureV86Guest, v86GuestProblem, bootV86Guest } from "./v86.js";
import { missing } from "./required-parts.js";

const { problem, skipReason } = v86GuestProblem("v86 guest test");

const unavailable = missing("guests", problem);
describe.skipIf(unavailable)("Linux guest in v86", () => {
  let guest: V86GuestImage;

  beforeAll(async () => {
    guest = await ensureV86Guest(undefined, { log: (l) => console.log(l) });
  }, 25 * 60_000);

  it(`boots, runs a payload and i386 alsa-utils${skipReason}`, async () => {
    const data = createHash("sha256").update("v86 payload").digest(); // 32 arbitrary bytes
    let runningAtSetup: boolean | undefined;
    const r = await bootV86Guest({
      guest,
      payload: {
        script: [
          'marker uname "$(uname -r)"',
          "cat /proc/asound/cards",
          'marker cards "$(head -n1 /proc/asound/cards)"',
          "step aplay_version aplay --version",
          "step amixer_version amixer --version",
          'marker data_sha256 "$(sha256sum data.bin | cut -d" " -f1)"',
          "printf 'hello from v86\\n' >/tmp/hello.txt",
          "emit_file hello.txt /tmp/hello.txt",
        ].join("\n"),
        files: { "data.bin": data },
      },
      timeoutMs: 120_000,
      payloadTimeoutMs: 60_000,
      setup: (emulator) => {
        runningAtSetup = emulator.is_running();
      },
      // VSND_GUEST_DEBUG=1 streams the guest console.
      ...(process.env["VSND_GUEST_DEBUG"] ? { onConsole: (s: string) => process.stdout.write(s) } : {}),
    });
    console.log(describeV86Boot(r));
    const secs = (k: string) => ((r.markerMs[k] ?? NaN) / 1000).toFixed(1);
    console.log(`v86: emulator start to /init ${secs("boot")} s, to payload done ${secs("payload.exit")} s`);
    const context = `${describeV86Boot(r)}\n--- console ---\n${r.console}`;

    expect(runningAtSetup, context).toBe(false);
    expect(r.timedOut, context).toBe(false);
    expect(r.panicked, context).toBe(false);
    expect(r.markers["kernel"], context).toMatch(/^6\.12\./);
    expect(r.markers["uname"]).toBe(r.markers["kernel"]);
    expect(r.markers["snd"], context).toBe("absent");
    expect(r.markers["cards"], context).toMatch(/no soundcards/);
    // i386 glibc programs run (a kernel without COMPAT_32BIT_TIME aborts them
    // with "The futex facility returned an unexpected error code").
    expect(r.console).not.toMatch(/futex facility/);
    expect(r.markers["aplay_version"], context).toBe("0");
    expect(r.console).toMatch(/aplay: version 1\.2\./);
    expect(r.markers["amixer_version"], context).toBe("0");
    expect(r.console).toMatch(/amixer version 1\.2\./);
    expect(r.markers["data_sha256"], context).toBe(createHash("sha256").update(data).digest("hex"));
    expect(r.markers["payload.exit"], context).toBe("0");
    expect(r.errors, context).toEqual([]);
    expect(new TextDecoder().decode(r.files["hello.txt"])).toBe("hello from v86\n");
    expect(r.markers["done"], context).toBeDefined();
  }, 180_000);

  // v86's own virtio device on the same transport (modern virtio-pci, INTx
  // through the PIIX3 routing): when it works and another device does not,
  // the fault is in that device, not in the guest kernel or the harness.
  it(`exchanges data with v86's own virtio-console${skipReason}`, async () => {
    let fromGuest = "";
    let replied = false;
    const r = await bootV86Guest({
      guest,
      v86Options: { virtio_console: { type: "none" } },
      payload: {
        script: [
          // Open the port before writing: input that arrives while it is closed is dropped.
          "exec 3<>/dev/hvc0",
          "echo to-host >&3",
          'read -t 30 line <&3; marker from_host "$line"',
          'marker virtio_irqs "$(grep virtio /proc/interrupts)"',
        ].join("\n"),
      },
      timeoutMs: 120_000,
      payloadTimeoutMs: 60_000,
      setup: (emulator) => {
        // The event bus is not in v86.d.ts; the input event is.
        const { bus } = emulator as unknown as { bus: { send(event: string, data: Uint8Array): void } };
        emulator.add_listener("virtio-console0-output-bytes", (bytes) => {
          fromGuest += new TextDecoder().decode(bytes);
          // Once: the tty echoes the reply back ("to-host\r\n" then "to-guest\r\n").
          if (!replied && fromGuest.includes("to-host")) {
            replied = true;
            bus.send("virtio-console0-input-bytes", Buffer.from("to-guest\n"));
          }
        });
      },
      ...(process.env["VSND_GUEST_DEBUG"] ? { onConsole: (s: string) => process.stdout.write(s) } : {}),
    });
    console.log(describeV86Boot(r));
    const context = `${describeV86Boot(r)}\n--- console ---\n${r.console}`;
    expect(r.timedOut, context).toBe(false);
    expect(fromGuest, context).toContain("to-host");
    expect(r.markers["from_host"], context).toBe("to-guest");
    // The reply came by interrupt: the line's count is above zero.
    expect(r.markers["virtio_irqs"], context).toMatch(/^\s*\d+:\s+[1-9]\d*\s.*virtio/);
    expect(r.markers["payload.exit"], context).toBe("0");
  }, 180_000);
});
