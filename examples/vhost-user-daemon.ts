// examples/vhost-user-daemon.ts: the vhost-user back-end in your own process (Linux; what
// `virtio-snd vhost-user` runs). QEMU connects with -device vhost-user-snd-pci,chardev=...
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { NullBackend, RealTimeClock, muteControl } from "virtio-snd";
import { VhostUserDaemon, nativeAvailable } from "virtio-snd/node";

const native = nativeAvailable();
if (!native.ok) {
  console.log(native.reason); // what is missing, and the command that builds it
} else {
  const clock = new RealTimeClock();
  const socketPath = join(mkdtempSync(join(tmpdir(), "vhost-")), "snd.sock");
  // Closed when the signal aborts (here after 200 ms; a real daemon would use SIGINT) or at the end of the block.
  await using daemon = new VhostUserDaemon({
    socketPath,
    backend: new NullBackend({ clock }),
    clock,
    config: { streams: [{ direction: "output" }], controls: [muteControl("PCM Playback Switch", "output")] },
    signal: AbortSignal.timeout(200),
  });
  daemon.on("connect", () => console.log("front-end connected"));
  daemon.on("stream", (e) => console.log(`stream ${e.streamId}: ${e.type}`));
  daemon.on("control", (c) => console.log(`control ${c.controlId} set by the ${c.source}`));
  console.log(`listening on ${daemon.socketPath}`);
  daemon.setControlValue(0, [true, false]); // the guest gets a CTL_NOTIFY
  await new Promise<void>((resolve) => daemon.once("close", () => resolve()));
}
