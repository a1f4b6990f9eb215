import { DeviceTarget } from "./device-target.js";
import type { FuzzTarget } from "./engine.js";
import { VhostUserTarget } from "./vhost-user-target.js";

export const TARGET_NAMES = ["device", "vhost-user"] as const;
export type TargetName = (typeof TARGET_NAMES)[number];

export function makeTarget(name: string): FuzzTarget {
  switch (name) {
    case "device":
      return new DeviceTarget();
    case "vhost-user":
      return new VhostUserTarget();
    default:
      throw new Error(`unknown fuzz target ${name} (${TARGET_NAMES.join(", ")})`);
  }
}
