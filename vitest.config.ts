import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

export default defineConfig({
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
      provider: "v8",
      include: ["src/**/*.ts"],
      // scripts/coverage-core.mjs prints the core's share from the json summary.
      reporter: ["text", "json-summary"],
    },
  },
});
