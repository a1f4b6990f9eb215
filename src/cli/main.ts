import { runDemo } from "./demo.js";

const HELP = `virtio-snd: a virtio sound device for emulators

Usage:
  virtio-snd demo [--output SINK] [--virtual]  a trace of a real Linux guest playing a tune (aplay
                                             through the vhost-user daemon) replayed live through
                                             the device: control requests and stream events as they
                                             happen, the audio to the sound device (or a WAV file),
                                             and a check of every byte; see virtio-snd demo --help
  virtio-snd vhost-user --socket PATH [...]  serve the device to QEMU (vhost-user-snd-pci) on a Unix
                                             socket; see virtio-snd vhost-user --help
  virtio-snd --help                          this text
  virtio-snd --version                       the version
`;

export async function main(argv: readonly string[]): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case "--help":
      case "-h":
      case "help":
        process.stdout.write(HELP);
        return command === undefined ? 1 : 0;
      case "--version":
      case "-v": {
        const { createRequire } = await import("node:module");
        const pkg = createRequire(import.meta.url)("../../package.json") as { version: string };
        process.stdout.write(`${pkg.version}\n`);
        return 0;
      }
      case "demo":
        return await runDemo(rest, { out: process.stdout, err: process.stderr });
      case "vhost-user": {
        const { runVhostUser } = await import("./vhost-user.js");
        return await runVhostUser(rest, { out: process.stdout, err: process.stderr });
      }
      default:
        process.stderr.write(
          `virtio-snd: unknown ${command.startsWith("-") ? "option" : "command"} "${command}" (see virtio-snd --help)\n`,
        );
        return 2;
    }
  } catch (err) {
    const e = err as Error & { code?: string };
    process.stderr.write(`virtio-snd: ${e.code ? `${e.code}: ` : ""}${e.message}\n`);
    return 1;
  }
}
