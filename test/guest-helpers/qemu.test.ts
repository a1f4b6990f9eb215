/** The guest harness' pure parts: no QEMU needed. */
import { gunzipSync } from "node:zlib";
import { describe, expect, it } from "vitest";
import { makeCpio, makePayload, parseConsole, parseTar, qemuArgs } from "./qemu.js";
import { dominantHz, parseWav, rms, sineWav } from "./wav.js";

function cpioNames(archive: Uint8Array): { name: string; mode: number; size: number }[] {
  const buf = Buffer.from(archive);
  const out: { name: string; mode: number; size: number }[] = [];
  let off = 0;
  for (;;) {
    expect(off % 4).toBe(0);
    expect(buf.toString("ascii", off, off + 6)).toBe("070701");
    const field = (i: number) => parseInt(buf.toString("ascii", off + 6 + i * 8, off + 14 + i * 8), 16);
    const mode = field(1);
    const size = field(6);
    const nameSize = field(11);
    const name = buf.toString("utf8", off + 110, off + 110 + nameSize - 1);
    if (name === "TRAILER!!!") return out;
    out.push({ name, mode, size });
    off = Math.ceil((off + 110 + nameSize) / 4) * 4;
    off = Math.ceil((off + size) / 4) * 4;
  }
}

describe("guest harness", () => {
  it("writes newc cpio archives with parent directories", () => {
    const entries = cpioNames(
      makeCpio([
        { name: "payload" },
        { name: "payload/run.sh", data: new Uint8Array([0x65, 0x63, 0x68, 0x6f, 0x0a]), mode: 0o755 },
        { name: "payload/a/b/c.bin", data: new Uint8Array(7) },
      ]),
    );
    expect(entries).toEqual([
      { name: "payload", mode: 0o040755, size: 0 },
      { name: "payload/run.sh", mode: 0o100755, size: 5 },
      { name: "payload/a", mode: 0o040755, size: 0 },
      { name: "payload/a/b", mode: 0o040755, size: 0 },
      { name: "payload/a/b/c.bin", mode: 0o100644, size: 7 },
    ]);
    expect(() => makeCpio([{ name: "../x", data: new Uint8Array(1) }])).toThrow();
  });

  it("packs the payload as a gzipped cpio", () => {
    const names = cpioNames(gunzipSync(makePayload({ script: "true\n", files: { "t.wav": "abc" } })));
    expect(names.map((e) => e.name)).toEqual(["payload", "payload/run.sh", "payload/t.wav"]);
  });

  it("parses markers and base64 files from a noisy console", () => {
    const data = Buffer.from("hello\nworld\n\x00\xff");
    const b64 = data.toString("base64");
    const parsed = parseConsole(
      [
        "\x1bc\x1b[?7l\x1b[2J@@VSND boot=7.5\r",
        "[    8.1] some kernel line",
        "@@VSND aplay=0",
        "@@VSND note=a=b c",
        `@@VSND-FILE-BEGIN x.bin ${data.length}`,
        b64.slice(0, 8),
        b64.slice(8),
        "@@VSND-FILE-END x.bin",
        "@@VSND-FILE-BEGIN bad.bin 99",
        "AAAA",
        "@@VSND-FILE-END bad.bin",
      ].join("\n"),
    );
    expect(parsed.markers).toEqual({ boot: "7.5", aplay: "0", note: "a=b c" });
    expect(Buffer.from(parsed.files["x.bin"]!)).toEqual(data);
    expect(parsed.errors).toEqual(["file bad.bin: 3 bytes decoded, 99 announced"]);
  });

  it("reads ustar archives", () => {
    const header = (name: string, size: number, type = "0") => {
      const h = Buffer.alloc(512);
      h.write(name, 0, "utf8");
      h.write(size.toString(8).padStart(11, "0"), 124, "ascii");
      h.write(type, 156, "ascii");
      h.write("ustar  ", 257, "ascii");
      return h;
    };
    const body = (s: string) => {
      const b = Buffer.alloc(Math.ceil(s.length / 512) * 512);
      b.write(s);
      return b;
    };
    const long = "l".repeat(150);
    const tar = Buffer.concat([
      header("a.txt", 3),
      body("abc"),
      header("./dir/", 0, "5"),
      header("././@LongLink", long.length + 1, "L"),
      body(`${long}\0`),
      header(long.slice(0, 100), 2),
      body("xy"),
      Buffer.alloc(1024),
    ]);
    const files = parseTar(tar);
    expect(Object.keys(files)).toEqual(["a.txt", long]);
    expect(Buffer.from(files[long]!).toString()).toBe("xy");
  });

  it("passes the payload time limit and extra kernel options", () => {
    const args = qemuArgs({ kernel: "k", payloadTimeoutMs: 2500, append: "vsnd.shell" }, "i");
    expect(args[args.indexOf("-append") + 1]).toBe(
      "console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check vsnd.timeout=3 vsnd.shell",
    );
  });

  it("builds the QEMU command line", () => {
    const args = qemuArgs({ kernel: "k", sharedMemory: true, devices: ["-device", "x"] }, "i", "d.img");
    expect(args.join(" ")).toBe(
      "-accel tcg -cpu max -m 512M -nographic -no-reboot -nic none -kernel k -initrd i " +
        "-append console=ttyS0 quiet loglevel=3 panic=-1 no_timer_check " +
        "-object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem " +
        "-drive file=d.img,format=raw,if=none,id=vsndout -device virtio-blk-pci,drive=vsndout,serial=vsnd-out " +
        "-device x",
    );
  });

  it("writes and analyses WAV files", () => {
    const w = parseWav(sineWav({ rate: 8000, channels: 2, seconds: 0.5, hz: 500, amplitude: 0.5 }));
    expect(w).toMatchObject({ rate: 8000, channels: 2, bits: 16, frames: 4000 });
    expect(rms(w)).toBeCloseTo((0.5 * 32767) / Math.SQRT2, -2);
    expect(dominantHz(w, 1)).toBeCloseTo(500, 0);
  });
});
