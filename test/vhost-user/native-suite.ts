import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll } from "vitest";
import { type NativeBinding, loadNative, nativeAvailable } from "../../src/vhost-user/native.js";
import { releasedAfterEach } from "./released-after-each.js";

/**
 * What a test file of the native back end sets up first, at its top level:
 * whether the addon loads (and the addon when it does), a temporary folder
 * removed after the file, and the list of what to release after each test.
 */
export function nativeSuite(prefix: string): {
  status: ReturnType<typeof nativeAvailable>;
  native: NativeBinding | undefined;
  dir: string;
  cleanup: (() => void)[];
} {
  const status = nativeAvailable();
  const native = status.ok ? loadNative() : undefined;
  const dir = mkdtempSync(join(tmpdir(), prefix));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  return { status, native, dir, cleanup: releasedAfterEach() };
}
