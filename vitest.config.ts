import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    coverage: {
      provider: "v8",
      include: ["src/**/*.ts"],
      // The core is what must run everywhere; Node-only folders are measured by their own tests.
      reporter: ["text-summary", "text"],
    },
  },
});
