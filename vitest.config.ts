import { defineConfig } from "vitest/config";

export default defineConfig({
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
