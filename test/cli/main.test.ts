/** The top-level command: an unknown command or option is one line and a pointer to --help, exit 2. */
import { describe, expect, it, vi } from "vitest";
import { main } from "../../src/cli/main.js";

async function run(args: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = "";
  let err = "";
  const o = vi.spyOn(process.stdout, "write").mockImplementation((s) => ((out += String(s)), true));
  const e = vi.spyOn(process.stderr, "write").mockImplementation((s) => ((err += String(s)), true));
  try {
    return { code: await main(args), out, err };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

describe("virtio-snd", () => {
  it("an unknown command: one line, exit 2", async () => {
    expect(await run(["play"])).toEqual({
      code: 2,
      out: "",
      err: 'virtio-snd: unknown command "play" (see virtio-snd --help)\n',
    });
  });

  it("an unknown option: one line, exit 2", async () => {
    expect(await run(["--bogus"])).toEqual({
      code: 2,
      out: "",
      err: 'virtio-snd: unknown option "--bogus" (see virtio-snd --help)\n',
    });
  });

  it("--version", async () => {
    const r = await run(["--version"]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/^\d+\.\d+\.\d+\n$/);
  });
});
