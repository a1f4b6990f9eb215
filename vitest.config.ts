import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";
import { typeOnlyFiles } from "./scripts/type-only-files.js";

export default defineConfig({
  // The examples import the package by name, as its users do: run against the sources here.
  resolve: {
    alias: [
      {
        find: /^virtio-snd\/v86$/,
        replacement: fileURLToPath(new URL("./src/v86/index.ts", import.meta.url)),
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
      provider: "v8",
      include: ["src/**/*.ts"],
      // Files that compile to no JavaScript (types only) have nothing to cover.
      exclude: typeOnlyFiles(fileURLToPath(new URL(".", import.meta.url))),
      // scripts/coverage-core.mjs prints the core's share from the json summary.
      reporter: ["text", "json-summary"],
    },
  },
});
