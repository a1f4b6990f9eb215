import { afterEach } from "vitest";

/**
 * The list a test file's front-ends (and whatever else a test opens) put their
 * release functions on: after each test they run, the last first, and the list empties.
 */
export function releasedAfterEach(): (() => void)[] {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const f of cleanup.splice(0).reverse()) {
      try {
        f();
      } catch {
        // Already released.
      }
    }
  });
  return cleanup;
}
