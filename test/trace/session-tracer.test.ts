/**
 * SessionTracer: one device, a trace per session; each queue's chains go to
 * the session the queue was set up in.
 */
import { describe, expect, it } from "vitest";
import { SimulatedGuest } from "../../src/driver/simulated-guest.js";
import { MemoryTraceSink, SessionTracer, TraceRecorder } from "../../src/trace/recorder.js";

describe("SessionTracer", () => {
  it("records a queue's chains only in the session the queue was set up in", () => {
    const tracer = new SessionTracer();
    const guest = new SimulatedGuest({ recorder: tracer, queueSize: 16 });
    // Queues set up between sessions: a recorder begun later sees the kicks, not the chains.
    guest.init();
    const sink = new MemoryTraceSink();
    tracer.begin(new TraceRecorder({ sink }));
    guest.probe();
    tracer.end();
    const evs = sink.lines.slice(1).map((l) => (JSON.parse(l) as { ev: string }).ev);
    expect(evs).toContain("kick");
    expect(evs).not.toContain("avail");
    expect(evs).not.toContain("used");

    // Set up within a session: its chains are recorded.
    const other = new SessionTracer();
    const otherGuest = new SimulatedGuest({ recorder: other, queueSize: 16 });
    const otherSink = new MemoryTraceSink();
    other.begin(new TraceRecorder({ sink: otherSink }));
    otherGuest.init();
    otherGuest.probe();
    other.end();
    const otherEvs = otherSink.lines.slice(1).map((l) => (JSON.parse(l) as { ev: string }).ev);
    expect(otherEvs).toContain("avail");
    expect(otherEvs).toContain("used");
  });
});
