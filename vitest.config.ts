import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

/**
 * Files that compile to no JavaScript (types only) have nothing to cover. Found only when
 * coverage is asked for: the search loads the TypeScript compiler (about 2 s).
 */
async function typeOnly(): Promise<string[]> {
  if (!process.argv.some((a) => a === "--coverage" || a.startsWith("--coverage."))) return [];
  const { typeOnlyFiles } = await import("./scripts/type-only-files.js");
  return typeOnlyFiles(fileURLToPath(new URL(".", import.meta.url)));
}

export default defineConfig(async () => ({
  // The examples import the package by name, as its users do: run against the sources here.
  resolve: {
    alias: [
      {
        find: /^virtio-snd\/v86$/,
        replacement: fileURLToPath(new URL("./src/v86/index.ts", import.meta.url)),
      },
      {
        find: /^virtio-snd\/testing$/,
        replacement: fileURLToPath(new URL("./src/testing/index.ts", import.meta.url)),
      },
      {
        find: /^virtio-snd\/testing\/vhost-user$/,
        replacement: fileURLToPath(new URL("./src/vhost-user/testing.ts", import.meta.url)),
      },
      {
        find: /^virtio-snd\/node$/,
        replacement: fileURLToPath(new URL("./src/node/index.ts", import.meta.url)),
      },
      { find: /^virtio-snd$/, replacement: fileURLToPath(new URL("./src/index.ts", import.meta.url)) },
    ],
  },
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    coverage: {
      provider: "v8" as const,
      include: ["src/**/*.ts"],
      exclude: await typeOnly(),
      // scripts/coverage-core.mjs prints the core's share from the json summary.
      reporter: ["text", "json-summary"],
    },
  },
}));
