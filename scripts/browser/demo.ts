/**
 * `npm run demo:browser [-- --port N]`: serves the demo page (cross-origin
 * isolated) and prints the URL to open. In the page, Start boots a Linux guest
 * in v86 that plays a tune through the card to the speakers, or replays the
 * recorded trace without a VM.
 *
 * The guest comes from ~/.cache/virtio-snd/v86 (bash scripts/guest-v86/build-v86-guest.sh);
 * without it, only the trace mode works.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import { makePayload } from "../../test/guest-helpers/payload.js";
import { DEFAULT_V86_GUEST_DIR, v86GuestIsCurrent } from "../../test/guest-helpers/v86.js";
import { type GuestFiles, type PageServer, REPO, bundlePage, startPageServer } from "./server.js";

/** A few notes, 48 kHz S16 stereo, as a WAV file. */
export function tuneWav(notes: readonly number[], noteSeconds = 0.3, rate = 48_000): Uint8Array {
  const frames = Math.round(noteSeconds * rate);
  const wav = Buffer.alloc(44 + notes.length * frames * 4);
  wav.write("RIFF", 0);
  wav.writeUInt32LE(wav.length - 8, 4);
  wav.write("WAVEfmt ", 8);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20);
  wav.writeUInt16LE(2, 22);
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 4, 28);
  wav.writeUInt16LE(4, 32);
  wav.writeUInt16LE(16, 34);
  wav.write("data", 36);
  wav.writeUInt32LE(wav.length - 44, 40);
  notes.forEach((hz, n) => {
    for (let i = 0; i < frames; i++) {
      const fade = Math.min(1, i / 480, (frames - i) / 480); // no clicks between notes
      const v = Math.round(8000 * fade * Math.sin((2 * Math.PI * hz * i) / rate));
      wav.writeInt16LE(v, 44 + (n * frames + i) * 4);
      wav.writeInt16LE(v, 46 + (n * frames + i) * 4);
    }
  });
  return wav;
}

export const DEMO_HTML = `<!doctype html>
<html lang="en">
<meta charset="utf-8">
<title>virtio-snd in the browser</title>
<style>
  body { font: 14px system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; }
  #bar { height: 1rem; background: #eee; border: 1px solid #999; width: 30rem; }
  #meter { height: 100%; width: 0; background: linear-gradient(90deg, #3a3, #cc3 80%, #c33); }
  #log { background: #111; color: #ddd; height: 24rem; overflow: auto; padding: .5rem; font: 12px monospace; }
</style>
<h1>virtio-snd in the browser</h1>
<p>A virtio sound card in TypeScript, playing through an AudioWorklet. Choose what drives it, then Start.</p>
<p>
  <label><input type="radio" name="mode" value="guest" checked> a Linux guest booting in v86 in this page, playing a tune with aplay</label><br>
  <label><input type="radio" name="mode" value="trace"> the recorded trace of a real guest's aplay session, replayed without a VM (fast to load)</label>
</p>
<p><button id="start">Start</button></p>
<p>level <span id="bar" style="display:inline-block"><span id="meter" style="display:block"></span></span></p>
<p id="status"></p>
<pre id="log"></pre>
<script type="module" src="/page.js"></script>
</html>
`;

/** The demo's server: the page, the guest with the tune (when it is built), the trace. */
export async function startDemoServer(port: number): Promise<PageServer> {
  let guest: GuestFiles | undefined;
  if (v86GuestIsCurrent()) {
    const dir = DEFAULT_V86_GUEST_DIR;
    const payload = makePayload({
      script: "aplay -D hw:0,0 /payload/tune.wav",
      files: { "tune.wav": tuneWav([523.25, 659.25, 783.99, 1046.5, 783.99, 659.25, 523.25]) },
    });
    guest = {
      bios: readFileSync(join(dir, "bios.bin")),
      bzImage: readFileSync(join(dir, "bzImage")),
      initrd: Buffer.concat([readFileSync(join(dir, "initramfs.cpio.gz")), payload]),
    };
  } else {
    console.log(
      `no v86 guest in ${DEFAULT_V86_GUEST_DIR} (bash scripts/guest-v86/build-v86-guest.sh builds it): ` +
        "only the trace mode will work",
    );
  }
  return startPageServer({
    html: DEMO_HTML,
    script: await bundlePage(join(REPO, "scripts/browser/demo-page.ts")),
    files: { "/trace/demo-tune.jsonl": join(REPO, "traces/demo-tune.jsonl") },
    ...(guest !== undefined ? { guest } : {}),
    port,
  });
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const portAt = args.indexOf("--port");
  const server = await startDemoServer(portAt >= 0 ? Number(args[portAt + 1]) : 8086);
  console.log(`virtio-snd browser demo: open ${server.url} (Ctrl-C stops the server)`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href)
  main().catch((err: unknown) => {
    console.error(`demo:browser: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
