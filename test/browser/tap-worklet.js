// The browser test's tap: an AudioWorklet processor that copies every frame
// it receives (two channels, the output of the card's worklets) into a
// SharedArrayBuffer the page reads, so the test sees exactly what was rendered.
/* global registerProcessor, AudioWorkletProcessor */
class TapProcessor extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const { buffer } = options.processorOptions;
    this.header = new Int32Array(buffer, 0, 4); // [frames recorded, capacity in frames]
    this.data = new Float32Array(buffer, 16);
  }

  process(inputs) {
    const planes = inputs[0] ?? [];
    const frames = planes[0]?.length ?? 128;
    const at = Atomics.load(this.header, 0);
    const n = Math.min(frames, this.header[1] - at);
    for (let i = 0; i < n; i++) {
      this.data[(at + i) * 2] = planes[0]?.[i] ?? 0;
      this.data[(at + i) * 2 + 1] = planes[1]?.[i] ?? 0;
    }
    Atomics.store(this.header, 0, at + n);
    return true;
  }
}
registerProcessor("vsnd-tap", TapProcessor);
