/**
 * A small static server for the browser pages (the demo, and the page the
 * browser tests drive): it sends the headers that make a page cross-origin
 * isolated (COOP same-origin, COEP require-corp), so SharedArrayBuffer exists,
 * and serves the page's bundle (esbuild, from the built package in dist/),
 * the package's worklet modules as they are in dist/browser/, v86's wasm, the
 * v86 guest (~/.cache/virtio-snd/v86) with a payload archive, and the demo trace.
 *
 * Node only (run with tsx). Run `npm run build` first: the pages use dist/.
 */
import { existsSync, readFileSync } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { dirname, extname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as esbuild from "esbuild";

export const REPO = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const DIST = join(REPO, "dist");

const TYPES: Record<string, string> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".mjs": "text/javascript; charset=utf-8",
  ".wasm": "application/wasm",
  ".jsonl": "text/plain; charset=utf-8",
  ".map": "application/json",
};

/** The package's entry points, resolved to the built files as a user's bundler would. */
const PACKAGE_ENTRIES: Record<string, string> = {
  "virtio-snd": join(DIST, "index.js"),
  "virtio-snd/v86": join(DIST, "v86/index.js"),
  "virtio-snd/browser": join(DIST, "browser/index.js"),
};

/** Bundles a page's script: the package from dist/, v86 from node_modules. */
export async function bundlePage(entry: string, options: { minify?: boolean } = {}): Promise<Uint8Array> {
  for (const f of Object.values(PACKAGE_ENTRIES))
    if (!existsSync(f)) throw new Error(`${f} is missing: run npm run build first`);
  const result = await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    write: false,
    format: "esm",
    platform: "browser",
    target: "es2022",
    minify: options.minify ?? false,
    // v86's Node paths, behind runtime checks that a page never passes.
    external: ["node:*", "fs", "crypto", "perf_hooks", "ws"],
    logLevel: "silent",
    plugins: [
      {
        name: "virtio-snd-dist",
        setup(build) {
          build.onResolve({ filter: /^virtio-snd(\/(v86|browser))?$/ }, (args) => ({
            path: PACKAGE_ENTRIES[args.path]!,
          }));
        },
      },
    ],
  });
  return result.outputFiles[0]!.contents;
}

export interface GuestFiles {
  bios: Uint8Array;
  bzImage: Uint8Array;
  /** The guest's initramfs with the payload archive appended. */
  initrd: Uint8Array;
}

export interface PageServerOptions {
  /** The page's HTML. */
  html: string;
  /** The page's script (served as /page.js), already bundled. */
  script: Uint8Array;
  /** Further files: URL path to bytes, or to a file on disk. */
  files?: Record<string, Uint8Array | string>;
  /** The guest, served as /guest/bios.bin, /guest/bzImage, /guest/initrd (the last can be changed with setGuest). */
  guest?: GuestFiles;
  port?: number;
  host?: string;
}

export interface PageServer {
  readonly url: string;
  setGuest(guest: GuestFiles): void;
  close(): Promise<void>;
}

/** v86's wasm, from the installed package. */
export function v86WasmPath(): string {
  return join(dirname(createRequire(import.meta.url).resolve("v86")), "v86.wasm");
}

export async function startPageServer(options: PageServerOptions): Promise<PageServer> {
  let guest = options.guest;
  const files = new Map<string, Uint8Array | string>(Object.entries(options.files ?? {}));
  files.set("/", options.html);
  files.set("/favicon.ico", new Uint8Array(0));
  files.set("/page.js", options.script);
  files.set("/v86/v86.wasm", v86WasmPath());
  // The package's worklet modules, as npm ships them.
  for (const name of ["worklet.js", "ring.js", "protocol.js"])
    files.set(`/virtio-snd/browser/${name}`, join(DIST, "browser", name));

  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = new URL(req.url ?? "/", "http://x").pathname;
    let body: Uint8Array | string | undefined = files.get(path);
    if (body === undefined && guest !== undefined) {
      if (path === "/guest/bios.bin") body = guest.bios;
      else if (path === "/guest/bzImage") body = guest.bzImage;
      else if (path === "/guest/initrd") body = guest.initrd;
    }
    // A file on disk is named by an absolute path; the page's own HTML is a string that starts with "<".
    let type = TYPES[extname(path)] ?? "application/octet-stream";
    if (path === "/") type = TYPES[".html"]!;
    else if (typeof body === "string") {
      try {
        body = readFileSync(body);
      } catch {
        body = undefined;
      }
    }
    const headers = {
      "Cross-Origin-Opener-Policy": "same-origin",
      "Cross-Origin-Embedder-Policy": "require-corp",
      "Cross-Origin-Resource-Policy": "same-origin",
      "Cache-Control": "no-store",
    };
    if (body === undefined) {
      res.writeHead(404, { ...headers, "Content-Type": "text/plain" }).end(`${path}: not found\n`);
      return;
    }
    res.writeHead(200, { ...headers, "Content-Type": type, "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  };

  const server: Server = createServer(handle);
  await new Promise<void>((ok, fail) => {
    server.once("error", fail);
    server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => ok());
  });
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://${options.host === "0.0.0.0" || options.host === undefined ? "127.0.0.1" : options.host}:${port}/`,
    setGuest(g) {
      guest = g;
    },
    close: () =>
      new Promise<void>((ok) => {
        server.closeAllConnections();
        server.close(() => ok());
      }),
  };
}
