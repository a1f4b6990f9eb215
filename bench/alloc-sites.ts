/**
 * Where the data path allocates: V8's sampling heap profiler (through the
 * inspector, objects collected by GC included) over a run of messages, each
 * sample's JS stack mapped back to the TypeScript sources. Stacks show
 * functions, not lines: code the JIT inlined is billed to the function it was
 * inlined into, and V8 builtins (subarray) appear as their own frame.
 */
import { Session } from "node:inspector/promises";
import { findSourceMap } from "node:module";
import { fileURLToPath } from "node:url";

interface ProfileNode {
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number };
  selfSize: number;
  children: ProfileNode[];
}

export interface AllocationSite {
  bytesPerMessage: number;
  /** Innermost frame first: "function file:line". */
  stack: string[];
}

function frameName(cf: ProfileNode["callFrame"]): string {
  const name = cf.functionName === "" ? "(anonymous)" : cf.functionName;
  if (cf.url === "") return name;
  let where = `${cf.url}:${cf.lineNumber + 1}`;
  if (cf.url.startsWith("file:")) {
    const path = fileURLToPath(cf.url);
    where = `${path}:${cf.lineNumber + 1}`;
    const entry = findSourceMap(path)?.findEntry(cf.lineNumber, cf.columnNumber);
    if (entry !== undefined && "originalLine" in entry) {
      where = `${fileURLToPath(entry.originalSource)}:${entry.originalLine + 1}`;
    }
    where = where.replace(/^.*?\/(src|bench|test)\//, "$1/");
  } else if (cf.url.startsWith("node:")) {
    return `${name} ${cf.url}`;
  }
  return `${name} ${where}`;
}

/** Samples allocations while `run(messages)` executes; returns the sites above `minBytes` per message. */
export async function allocationSites(
  run: (n: number) => void,
  messages: number,
  minBytes = 1,
): Promise<AllocationSite[]> {
  const session = new Session();
  session.connect();
  try {
    await session.post("HeapProfiler.startSampling", {
      samplingInterval: 16,
      includeObjectsCollectedByMajorGC: true,
      includeObjectsCollectedByMinorGC: true,
    } as { samplingInterval: number });
    run(messages);
    const { profile } = (await session.post("HeapProfiler.stopSampling")) as unknown as {
      profile: { head: ProfileNode };
    };
    const sites: AllocationSite[] = [];
    const walk = (node: ProfileNode, stack: string[]): void => {
      const here = [frameName(node.callFrame), ...stack];
      if (node.selfSize / messages >= minBytes) {
        sites.push({ bytesPerMessage: node.selfSize / messages, stack: here });
      }
      for (const c of node.children) walk(c, here);
    };
    walk(profile.head, []);
    return sites.sort((a, b) => b.bytesPerMessage - a.bytesPerMessage);
  } finally {
    session.disconnect();
  }
}
