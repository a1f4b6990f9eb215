/**
 * The FloatRing between the page and the worklets (in Node: SharedArrayBuffer
 * and Atomics are the same there), and what WebAudioBackend says where it
 * cannot run. Playback and capture themselves are tested in Chromium by
 * test/browser/run.ts (npm run test:browser).
 */
import { afterEach, describe, expect, it } from "vitest";
import { WebAudioBackend, webAudioUnsupported } from "../../src/browser/backend.js";
import { FloatRing, Slot } from "../../src/browser/ring.js";

describe("FloatRing", () => {
  it("passes interleaved frames through, in order, across the wrap, and never more than it holds", () => {
    const ring = FloatRing.create(2, 5);
    const planes = [new Float32Array(8), new Float32Array(8)];
    let next = 0;
    let expectNext = 0;
    for (let round = 0; round < 50; round++) {
      const frames = (round % 4) + 1;
      const src = Float32Array.from({ length: frames * 2 }, (_, i) => next + Math.floor(i / 2) + (i % 2) / 2);
      const space = 5 - ring.available();
      const put = ring.write(src, frames);
      expect(put).toBe(Math.min(frames, space));
      next += put;
      expect(ring.available()).toBeLessThanOrEqual(5);
      const got = ring.readPlanar(planes, (round % 3) + 1);
      for (let i = 0; i < got; i++) {
        expect(planes[0]![i]).toBe(expectNext + i);
        expect(planes[1]![i]).toBe(expectNext + i + 0.5);
      }
      expectNext += got;
    }
    expect(ring.available()).toBe(next - expectNext);
  });

  it("carries planar capture to interleaved reads, absent channels as silence", () => {
    const ring = FloatRing.create(2, 4);
    expect(ring.writePlanar([Float32Array.of(1, 2, 3)], 3)).toBe(3);
    expect(ring.writePlanar([Float32Array.of(4, 5), Float32Array.of(-4, -5)], 2)).toBe(1);
    const out = new Float32Array(8);
    expect(ring.read(out, 4)).toBe(4);
    expect([...out]).toEqual([1, 0, 2, 0, 3, 0, 4, -4]);
    expect(ring.read(out, 1)).toBe(0);
  });

  it("keeps its counters in the shared header", () => {
    const ring = FloatRing.create(1, 16);
    const other = new FloatRing(ring.buffer, 1);
    ring.set(Slot.Active, 1);
    other.add(Slot.Underruns, 2);
    expect(other.get(Slot.Active)).toBe(1);
    expect(ring.get(Slot.Underruns)).toBe(2);
  });
});

describe("WebAudioBackend where it cannot run", () => {
  const g = globalThis as { crossOriginIsolated?: boolean };
  afterEach(() => {
    delete g.crossOriginIsolated;
  });

  it("names cross-origin isolation when SharedArrayBuffer is withheld", async () => {
    g.crossOriginIsolated = false;
    expect(webAudioUnsupported()).toMatch(/cross-origin isolated.*Cross-Origin-Opener-Policy: same-origin/);
    await expect(WebAudioBackend.create({} as BaseAudioContext)).rejects.toMatchObject({
      code: "ERR_BROWSER_UNSUPPORTED",
    });
  });

  it("names the AudioWorklet where there is none (Node)", async () => {
    expect(webAudioUnsupported()).toMatch(/AudioWorklet is not available/);
    await expect(WebAudioBackend.create({} as BaseAudioContext)).rejects.toMatchObject({
      code: "ERR_BROWSER_UNSUPPORTED",
    });
  });
});
