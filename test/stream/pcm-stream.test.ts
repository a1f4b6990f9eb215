import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { AudioBackend, InputSink, OutputSource, Voice } from "../../src/audio/backend.js";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import type { PcmParams } from "../../src/audio/pcm-params.js";
import { BackendError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import type { GuestMemory } from "../../src/memory/guest-memory.js";
import {
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED,
  VIRTIO_SND_EVT_PCM_XRUN,
  VIRTIO_SND_PCM_FMT_IMA_ADPCM,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_U8,
  VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_PCM_F_MSG_POLLING,
  VIRTIO_SND_S_BAD_MSG,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_S_NOT_SUPP,
  VIRTIO_SND_S_OK,
} from "../../src/spec/constants.js";
import {
  PCM_STATE_NAMES,
  PcmCommand,
  PcmState,
  acceptsIo,
  commandAllowed,
} from "../../src/stream/pcm-state.js";
import { InputStream } from "../../src/stream/input-stream.js";
import { IoCompleter } from "../../src/stream/io-completer.js";
import { OutputStream } from "../../src/stream/output-stream.js";
import type { PcmStream, StreamEvent, StreamHost } from "../../src/stream/pcm-stream.js";
import { Chain } from "../../src/virtqueue/chain.js";
import type { DeviceQueue, RingState } from "../../src/virtqueue/virtqueue.js";

// ---- fakes ---------------------------------------------------------------------------

class FakeQueue implements DeviceQueue {
  readonly size = 256;
  readonly inFlight = 0;
  pushes: { chain: Chain; written: number }[] = [];
  /** needsInterrupt() calls: one per batch of pushes the completer hands over. */
  interruptChecks = 0;
  pop(): Chain | null {
    return null;
  }
  push(chain: Chain, written: number): void {
    this.pushes.push({ chain, written });
  }
  needsInterrupt(): boolean {
    this.interruptChecks++;
    return true;
  }
  enableNotifications(): boolean {
    return false;
  }
  getBase(): number {
    return 0;
  }
  setBase(): void {}
  saveState(): RingState {
    throw new Error("not used");
  }
  restoreState(): void {}
  adoptChain(): Chain {
    throw new Error("not used");
  }
}

class FakeVoice implements Voice {
  starts = 0;
  stops = 0;
  closes = 0;
  latency = 0;
  startError: Error | null = null;
  constructor(readonly peer: OutputSource | InputSink) {}
  start(): void {
    if (this.startError !== null) throw this.startError;
    this.starts++;
  }
  stop(): void {
    this.stops++;
  }
  close(): void {
    this.closes++;
  }
  latencyBytes(): number {
    return this.latency;
  }
}

class FakeBackend implements AudioBackend {
  readonly name = "fake";
  voices: FakeVoice[] = [];
  openError: unknown = null;
  latency = 0;
  openOutput(_id: number, _p: PcmParams, source: OutputSource): Voice {
    return this.open(source);
  }
  openInput(_id: number, _p: PcmParams, sink: InputSink): Voice {
    return this.open(sink);
  }
  private open(peer: OutputSource | InputSink): Voice {
    if (this.openError !== null) throw this.openError;
    const v = new FakeVoice(peer);
    v.latency = this.latency;
    this.voices.push(v);
    return v;
  }
  get voice(): FakeVoice {
    return this.voices.at(-1)!;
  }
}

class FakeHost implements StreamHost {
  time = 0;
  events: StreamEvent[] = [];
  posted: [number, number][] = [];
  flushes = 0;
  polls: number[] = [];
  fatals: unknown[] = [];
  constructor(
    readonly memory: GuestMemory,
    readonly backend: AudioBackend,
    private readonly clock?: VirtualClock,
  ) {}
  now(): number {
    return this.clock?.now() ?? this.time;
  }
  flush(): void {
    this.flushes++;
  }
  postEvent(code: number, data: number): void {
    this.posted.push([code, data]);
  }
  emit(event: StreamEvent): void {
    this.events.push(event);
  }
  poll(direction: number): void {
    this.polls.push(direction);
  }
  fatal(error: unknown): void {
    this.fatals.push(error);
  }
  eventTypes(): string[] {
    return this.events.map((e) => e.type);
  }
}

// ---- rig -------------------------------------------------------------------------------

const MEM_SIZE = 0x40000;
const STREAM_ID = 2;

interface Built {
  chain: Chain;
  /** Guest address of each writable segment. */
  writable: { addr: number; len: number }[];
}

class Rig {
  readonly mem = new FlatMemory(new Uint8Array(MEM_SIZE));
  readonly queue = new FakeQueue();
  readonly backend: FakeBackend | MemoryBackend;
  readonly host: FakeHost;
  readonly completer: IoCompleter;
  readonly stream: OutputStream | InputStream;
  private next = 0x1000;

  constructor(
    direction: number,
    opts: { backend?: MemoryBackend; clock?: VirtualClock; memory?: GuestMemory } = {},
  ) {
    this.backend = opts.backend ?? new FakeBackend();
    const memory = opts.memory ?? this.mem;
    this.host = new FakeHost(memory, this.backend, opts.clock);
    const output = direction === VIRTIO_SND_D_OUTPUT;
    this.completer = new IoCompleter(memory, output);
    this.completer.attach(this.queue);
    this.stream = output
      ? new OutputStream(STREAM_ID, this.host, this.completer)
      : new InputStream(STREAM_ID, this.host, this.completer);
  }

  get output(): OutputStream {
    if (!(this.stream instanceof OutputStream)) throw new Error("not an output rig");
    return this.stream;
  }

  get input(): InputStream {
    if (!(this.stream instanceof InputStream)) throw new Error("not an input rig");
    return this.stream;
  }

  get fake(): FakeBackend {
    return this.backend as FakeBackend;
  }

  /** Allocates `n` bytes, leaving a gap after so segments are never accidentally contiguous. */
  alloc(n: number): number {
    const a = this.next;
    this.next += n + 16;
    return a;
  }

  /**
   * A TX message: the readable part is split into segments of `layout` lengths
   * (summing to 4 + data.length), holding the xfer header then the data; then a
   * writable status segment of `statusLen` bytes, pre-filled with 0xee.
   */
  tx(data: Uint8Array, layout: number[] = [4 + data.length], statusLen = 8): Built {
    const stream = new Uint8Array(4 + data.length);
    new DataView(stream.buffer).setUint32(0, STREAM_ID, true);
    stream.set(data, 4);
    expect(layout.reduce((s, n) => s + n, 0)).toBe(stream.length);
    const chain = new Chain(2);
    let off = 0;
    for (const n of layout) {
      const a = this.alloc(n);
      this.mem.write(a, stream, off, n);
      chain.addSegment(a, n, false);
      off += n;
    }
    const status = this.alloc(statusLen);
    this.mem.fill(status, statusLen, 0xee);
    chain.addSegment(status, statusLen, true);
    return { chain, writable: [{ addr: status, len: statusLen }] };
  }

  /** An RX message: a 4-byte header, then writable segments of `writable` lengths (the status is the last 8 bytes). */
  rx(writable: number[]): Built {
    const chain = new Chain(2);
    const hdr = this.alloc(4);
    this.mem.writeU32(hdr, STREAM_ID);
    chain.addSegment(hdr, 4, false);
    const segs: { addr: number; len: number }[] = [];
    for (const n of writable) {
      const a = this.alloc(n);
      this.mem.fill(a, n, 0xee);
      chain.addSegment(a, n, true);
      segs.push({ addr: a, len: n });
    }
    return { chain, writable: segs };
  }

  /** The writable part of a built chain, as one array. */
  writableBytes(b: Built): number[] {
    const out: number[] = [];
    for (const s of b.writable) out.push(...this.mem.bytes.subarray(s.addr, s.addr + s.len));
    return out;
  }

  /** status and latency_bytes at `offset` into the writable part. */
  status(b: Built, offset: number): { status: number; latency: number } {
    const w = Uint8Array.from(this.writableBytes(b));
    const dv = new DataView(w.buffer);
    return { status: dv.getUint32(offset, true), latency: dv.getUint32(offset + 4, true) };
  }

  txStatus(b: Built): { status: number; latency: number } {
    return this.status(b, 0);
  }

  rxStatus(b: Built): { status: number; latency: number } {
    return this.status(b, b.chain.writableBytes - 8);
  }

  enqueue(b: Built): boolean {
    return this.stream.enqueue(b.chain);
  }

  /** What the voice would do: read `n` bytes from the stream. */
  read(n: number): number[] {
    const dest = new Uint8Array(n + 4).fill(0xcc);
    const got = this.output.read(dest, 2, n);
    expect(dest[0]).toBe(0xcc);
    expect(dest[1]).toBe(0xcc);
    expect(dest.subarray(2 + got).every((x) => x === 0xcc)).toBe(true);
    return Array.from(dest.subarray(2, 2 + got));
  }

  /** What an input voice would do: deliver `bytes`. */
  write(bytes: Uint8Array): number {
    return this.input.write(bytes, 0, bytes.length);
  }

  pushedChains(): Chain[] {
    return this.queue.pushes.map((p) => p.chain);
  }
}

function params(over: Partial<PcmParams> = {}): PcmParams {
  return {
    direction: VIRTIO_SND_D_OUTPUT,
    format: VIRTIO_SND_PCM_FMT_S16,
    rate: 48000,
    channels: 2,
    bufferBytes: 1600,
    periodBytes: 400,
    features: 0,
    ...over,
  };
}

function seq(n: number, start = 1): Uint8Array {
  return Uint8Array.from({ length: n }, (_, i) => (start + i) & 0xff);
}

/** Brings a stream to `state` through valid commands. */
function toState(s: PcmStream, state: PcmState, p: PcmParams = params()): void {
  if (state === PcmState.Idle) return;
  expect(s.setParams(p)).toBe(VIRTIO_SND_S_OK);
  if (state === PcmState.ParamsSet) return;
  expect(s.prepare()).toBe(VIRTIO_SND_S_OK);
  if (state === PcmState.Released) {
    expect(s.release()).toBe(VIRTIO_SND_S_OK);
    return;
  }
  if (state === PcmState.Prepared) return;
  expect(s.start()).toBe(VIRTIO_SND_S_OK);
  if (state === PcmState.Running) return;
  expect(s.stop()).toBe(VIRTIO_SND_S_OK);
}

/** One-byte frames (U8 mono), so that messages of any length are whole frames. */
const BYTE_FRAMES = { format: VIRTIO_SND_PCM_FMT_U8, channels: 1 };

function outputRig(features = 0, state = PcmState.Running): Rig {
  const rig = new Rig(VIRTIO_SND_D_OUTPUT);
  toState(rig.stream, state, params({ features, ...BYTE_FRAMES }));
  return rig;
}

function inputRig(features = 0, state = PcmState.Running): Rig {
  const rig = new Rig(VIRTIO_SND_D_INPUT);
  toState(rig.stream, state, params({ direction: VIRTIO_SND_D_INPUT, features, ...BYTE_FRAMES }));
  return rig;
}

const bit = (n: number): number => 1 << n;

// ---- state machine ------------------------------------------------------------------

const ALL_STATES = [
  PcmState.Idle,
  PcmState.ParamsSet,
  PcmState.Prepared,
  PcmState.Running,
  PcmState.Stopped,
  PcmState.Released,
];
const ALL_COMMANDS = [
  PcmCommand.SetParams,
  PcmCommand.Prepare,
  PcmCommand.Start,
  PcmCommand.Stop,
  PcmCommand.Release,
];
const COMMAND_NAMES = ["SET_PARAMS", "PREPARE", "START", "STOP", "RELEASE"];

/** §5.14.6.6.1, as "after X the valid commands are ...", plus SET_PARAMS first. */
const SPEC_TABLE: Record<PcmState, PcmCommand[]> = {
  [PcmState.Idle]: [PcmCommand.SetParams],
  [PcmState.ParamsSet]: [PcmCommand.SetParams, PcmCommand.Prepare],
  [PcmState.Prepared]: [PcmCommand.SetParams, PcmCommand.Prepare, PcmCommand.Start, PcmCommand.Release],
  [PcmState.Running]: [PcmCommand.Stop],
  [PcmState.Stopped]: [PcmCommand.Start, PcmCommand.Release],
  [PcmState.Released]: [PcmCommand.SetParams, PcmCommand.Prepare],
};
const RESULT_STATE: Record<PcmCommand, PcmState> = {
  [PcmCommand.SetParams]: PcmState.ParamsSet,
  [PcmCommand.Prepare]: PcmState.Prepared,
  [PcmCommand.Start]: PcmState.Running,
  [PcmCommand.Stop]: PcmState.Stopped,
  [PcmCommand.Release]: PcmState.Released,
};

function runCommand(s: PcmStream, c: PcmCommand): number {
  switch (c) {
    case PcmCommand.SetParams:
      return s.setParams(params());
    case PcmCommand.Prepare:
      return s.prepare();
    case PcmCommand.Start:
      return s.start();
    case PcmCommand.Stop:
      return s.stop();
    case PcmCommand.Release:
      return s.release();
  }
}

describe("pcm-state", () => {
  const cases = ALL_STATES.flatMap((state) =>
    ALL_COMMANDS.map(
      (command) =>
        [
          PCM_STATE_NAMES[state],
          COMMAND_NAMES[command]!,
          state,
          command,
          SPEC_TABLE[state].includes(command),
        ] as const,
    ),
  );

  it.each(cases)("in state %s, %s allowed: see table", (_s, _c, state, command, allowed) => {
    expect(commandAllowed(command, state)).toBe(allowed);
  });

  it.each(cases)("a PcmStream in state %s given %s follows the table", (_s, _c, state, command, allowed) => {
    const rig = new Rig(VIRTIO_SND_D_OUTPUT);
    toState(rig.stream, state);
    expect(rig.stream.state).toBe(state);
    const result = runCommand(rig.stream, command);
    if (allowed) {
      expect(result).toBe(VIRTIO_SND_S_OK);
      expect(rig.stream.state).toBe(RESULT_STATE[command]);
    } else {
      expect(result).toBe(VIRTIO_SND_S_BAD_MSG);
      expect(rig.stream.state).toBe(state);
    }
  });

  it("acceptsIo only between PREPARE and RELEASE", () => {
    expect(ALL_STATES.filter(acceptsIo)).toEqual([PcmState.Prepared, PcmState.Running, PcmState.Stopped]);
  });

  it("names every state", () => {
    expect(PCM_STATE_NAMES[PcmState.Running]).toBe("running");
    expect(PCM_STATE_NAMES).toHaveLength(ALL_STATES.length);
  });
});

// ---- the stream --------------------------------------------------------------------

describe("PcmStream", () => {
  describe("control commands", () => {
    it("PREPARE opens one voice, START/STOP drive it, RELEASE closes it; events are emitted", () => {
      const rig = new Rig(VIRTIO_SND_D_OUTPUT);
      rig.host.time = 7;
      const p = params();
      expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_BAD_MSG); // no params yet
      expect(rig.stream.setParams(p)).toBe(VIRTIO_SND_S_OK);
      expect(rig.stream.params).toBe(p);
      expect(rig.fake.voices).toHaveLength(0);
      expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voices).toHaveLength(1);
      expect(rig.fake.voice.peer).toBe(rig.stream);
      // PREPARE again keeps the voice.
      expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voices).toHaveLength(1);
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voice.starts).toBe(1);
      expect(rig.stream.stop()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voice.stops).toBe(1);
      expect(rig.stream.release()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voice.closes).toBe(1);
      expect(rig.host.eventTypes()).toEqual(["set-params", "prepare", "prepare", "start", "stop", "release"]);
      expect(rig.host.events[0]!.params).toBe(p);
      expect(rig.host.events.every((e) => e.streamId === STREAM_ID && e.time === 7)).toBe(true);
      // After RELEASE, PREPARE opens a new voice.
      expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voices).toHaveLength(2);
    });

    it("SET_PARAMS on a prepared stream closes the voice and fails queued messages with IO_ERR", () => {
      const rig = outputRig(0, PcmState.Prepared);
      const m = rig.tx(seq(10));
      expect(rig.enqueue(m)).toBe(true);
      expect(rig.stream.setParams(params())).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voice.closes).toBe(1);
      expect(rig.queue.pushes).toEqual([{ chain: m.chain, written: 8 }]);
      expect(rig.txStatus(m).status).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.stream.pendingCount).toBe(0);
    });

    it("an output stream opens an output voice, an input stream an input voice", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock });
      const out = new Rig(VIRTIO_SND_D_OUTPUT, { backend });
      toState(out.stream, PcmState.Prepared);
      const inp = new Rig(VIRTIO_SND_D_INPUT, { backend });
      toState(inp.stream, PcmState.Prepared, params({ direction: VIRTIO_SND_D_INPUT }));
      expect(backend.playbacks).toHaveLength(1);
      expect(backend.captures).toHaveLength(1);
      expect(backend.playbacks[0]!.streamId).toBe(STREAM_ID);
    });

    it.each([
      [
        "BackendError(notSupported)",
        new BackendError("no 384 kHz", { notSupported: true }),
        VIRTIO_SND_S_NOT_SUPP,
      ],
      ["BackendError", new BackendError("device gone"), VIRTIO_SND_S_IO_ERR],
      ["a plain Error", new Error("oops"), VIRTIO_SND_S_IO_ERR],
      ["a non-Error", "a string", VIRTIO_SND_S_IO_ERR],
    ])("PREPARE when opening the voice throws %s answers the right status", (_n, error, status) => {
      for (const direction of [VIRTIO_SND_D_OUTPUT, VIRTIO_SND_D_INPUT]) {
        const rig = new Rig(direction);
        toState(rig.stream, PcmState.ParamsSet, params({ direction }));
        rig.fake.openError = error;
        expect(rig.stream.prepare()).toBe(status);
        expect(rig.stream.state).toBe(PcmState.ParamsSet);
        const ev = rig.host.events.at(-1)!;
        expect(ev.type).toBe("error");
        expect(ev.error).toBeInstanceOf(Error);
        // Messages are not accepted; a later PREPARE that works does.
        expect(rig.enqueue(direction === VIRTIO_SND_D_OUTPUT ? rig.tx(seq(4)) : rig.rx([16]))).toBe(false);
        rig.fake.openError = null;
        expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_OK);
      }
    });

    it("START when the voice throws answers IO_ERR and fails the stream", () => {
      const rig = outputRig(0, PcmState.Prepared);
      const m = rig.tx(seq(8));
      rig.enqueue(m);
      rig.fake.voice.startError = new Error("cannot start");
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.txStatus(m).status).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.host.eventTypes()).toContain("error");
    });

    it("reset() drops everything without completing messages, and keeps the parameters", () => {
      const rig = outputRig();
      const p = rig.stream.params;
      rig.enqueue(rig.tx(seq(8)));
      rig.stream.reset();
      expect(rig.queue.pushes).toHaveLength(0);
      expect(rig.stream.pendingCount).toBe(0);
      expect(rig.stream.state).toBe(PcmState.ParamsSet);
      expect(rig.stream.params).toBe(p);
      expect(rig.fake.voice.closes).toBe(1);
      expect(rig.read(8)).toEqual([]);
    });

    it("after reset(), PREPARE alone brings the stream back (Linux's restore after suspend)", () => {
      const rig = outputRig();
      rig.stream.reset();
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_BAD_MSG);
      expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_OK);
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_OK);
      const m = rig.tx(seq(8));
      expect(rig.enqueue(m)).toBe(true);
      expect(rig.read(8)).toEqual(Array.from(seq(8)));
      expect(rig.pushedChains()).toEqual([m.chain]);
    });

    it("a stream never configured stays idle across reset()", () => {
      const rig = new Rig(VIRTIO_SND_D_OUTPUT);
      rig.stream.reset();
      expect(rig.stream.state).toBe(PcmState.Idle);
      expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_BAD_MSG);
    });
  });

  describe("TX messages", () => {
    it.each([
      ["TX, 2 bytes of S16 stereo", VIRTIO_SND_D_OUTPUT, 2],
      ["TX, 6 bytes of S16 stereo", VIRTIO_SND_D_OUTPUT, 6],
      ["RX, 3 bytes of S16 stereo", VIRTIO_SND_D_INPUT, 3],
    ])(
      "refuses data that is not a whole number of frames with BAD_MSG, unplayed (%s)",
      (_n, direction, bytes) => {
        const rig = new Rig(direction);
        toState(rig.stream, PcmState.Running, params({ direction }));
        const isTx = direction === VIRTIO_SND_D_OUTPUT;
        const bad = isTx ? rig.tx(seq(bytes)) : rig.rx([bytes + 8]);
        const good = isTx ? rig.tx(seq(8, 100)) : rig.rx([8 + 8]);
        expect(rig.enqueue(bad)).toBe(false);
        expect(rig.enqueue(good)).toBe(true);
        expect(isTx ? rig.txStatus(bad).status : rig.rxStatus(bad).status).toBe(VIRTIO_SND_S_BAD_MSG);
        expect(rig.queue.pushes[0]!.written).toBe(8);
        if (isTx) {
          // The next message starts on a frame boundary: nothing of the bad one was played.
          expect(rig.read(8)).toEqual(Array.from(seq(8, 100)));
        } else {
          expect(rig.write(seq(8, 50))).toBe(8);
          expect(rig.writableBytes(good).slice(0, 8)).toEqual(Array.from(seq(8, 50)));
        }
      },
    );

    // Frame sizes that are a power of two are checked with a mask, the others by division.
    it.each([
      ["S16 mono (2 bytes a frame)", VIRTIO_SND_PCM_FMT_S16, 1, [1, 3, 7], [2, 4, 12]],
      ["S16, 3 channels (6 bytes)", VIRTIO_SND_PCM_FMT_S16, 3, [2, 4, 8, 16], [6, 12, 18]],
      ["S24_3 stereo (6 bytes)", VIRTIO_SND_PCM_FMT_S24_3, 2, [3, 4, 10], [6, 24]],
      ["S16, 5 channels (10 bytes)", VIRTIO_SND_PCM_FMT_S16, 5, [2, 8, 16], [10, 20]],
      [
        "IMA ADPCM, 3 channels (12 bits: 3 bytes hold 2 frames)",
        VIRTIO_SND_PCM_FMT_IMA_ADPCM,
        3,
        [1, 2, 4],
        [3, 6, 9],
      ],
      ["IMA ADPCM mono (4 bits: any byte count)", VIRTIO_SND_PCM_FMT_IMA_ADPCM, 1, [], [1, 3, 5]],
    ])("takes whole frames and refuses the rest: %s", (_n, format, channels, bad, good) => {
      const rig = new Rig(VIRTIO_SND_D_OUTPUT);
      toState(
        rig.stream,
        PcmState.Running,
        params({ format, channels, bufferBytes: 1440, periodBytes: 360 }),
      );
      for (const bytes of bad) {
        const m = rig.tx(seq(bytes));
        expect(rig.enqueue(m), `${bytes} bytes`).toBe(false);
        expect(rig.txStatus(m).status).toBe(VIRTIO_SND_S_BAD_MSG);
      }
      for (const bytes of good) expect(rig.enqueue(rig.tx(seq(bytes))), `${bytes} bytes`).toBe(true);
    });

    it.each([
      ["header and data in one segment", [4 + 20]],
      ["header in the first segment with some data", [10, 7, 7]],
      ["header in a separate segment", [4, 20]],
      ["header split across segments", [2, 2, 20]],
      ["header split, data following in the same segment", [3, 9, 12]],
      ["one byte per segment", new Array<number>(24).fill(1)],
    ])("reads the data with %s", (_n, layout) => {
      const rig = outputRig();
      const m = rig.tx(seq(20), layout);
      expect(rig.enqueue(m)).toBe(true);
      expect(rig.stream.pendingCount).toBe(1);
      expect(rig.read(20)).toEqual(Array.from(seq(20)));
      expect(rig.queue.pushes).toEqual([{ chain: m.chain, written: 8 }]);
      expect(rig.txStatus(m).status).toBe(VIRTIO_SND_S_OK);
      expect(rig.stream.pendingCount).toBe(0);
    });

    it("queuedBytes() is what read() would return now, and asking for that much is no underrun", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_EVT_XRUNS));
      expect(rig.output.queuedBytes()).toBe(0);
      for (const m of [rig.tx(seq(100, 0), [30, 74]), rig.tx(seq(50, 100), [4, 25, 25])]) rig.enqueue(m);
      expect(rig.output.queuedBytes()).toBe(150);
      rig.read(40);
      expect(rig.output.queuedBytes()).toBe(110);
      rig.read(rig.output.queuedBytes());
      expect(rig.output.queuedBytes()).toBe(0);
      expect(rig.stream.xruns).toBe(0);
      rig.read(1);
      expect(rig.stream.xruns).toBe(1);
    });

    it("completes a message only once its last byte is read, with partial reads across boundaries", () => {
      const rig = outputRig();
      const a = rig.tx(seq(100, 0), [30, 74]);
      const b = rig.tx(seq(50, 100), [4, 25, 25]);
      const c = rig.tx(seq(70, 150), [74]);
      for (const m of [a, b, c]) expect(rig.enqueue(m)).toBe(true);
      const got: number[] = [];
      got.push(...rig.read(30));
      expect(rig.queue.pushes).toHaveLength(0);
      got.push(...rig.read(69));
      expect(rig.queue.pushes).toHaveLength(0);
      got.push(...rig.read(1)); // the last byte of a
      expect(rig.pushedChains()).toEqual([a.chain]);
      got.push(...rig.read(60)); // all of b and 10 of c
      expect(rig.pushedChains()).toEqual([a.chain, b.chain]);
      expect(rig.stream.pendingCount).toBe(1);
      got.push(...rig.read(100)); // only 60 left
      expect(got).toEqual(Array.from({ length: 220 }, (_, i) => i & 0xff));
      expect(rig.pushedChains()).toEqual([a.chain, b.chain, c.chain]);
      expect(rig.queue.pushes.every((p) => p.written === 8)).toBe(true);
      expect(rig.completer.needsInterrupt()).toBe(true);
      expect(rig.queue.interruptChecks).toBe(1);
      expect(rig.stream.bytesTotal).toBe(220);
    });

    it("a message with no data completes on the next read", () => {
      const rig = outputRig();
      const empty = rig.tx(new Uint8Array(0));
      const next = rig.tx(seq(4));
      rig.enqueue(empty);
      rig.enqueue(next);
      expect(rig.read(8)).toEqual([1, 2, 3, 4]);
      expect(rig.pushedChains()).toEqual([empty.chain, next.chain]);
    });

    it("writes status at writable offset 0 with latency_bytes, leaving the rest of the writable part alone", () => {
      const rig = outputRig(0, PcmState.Prepared);
      rig.fake.voice.latency = 0x1234;
      const m = rig.tx(seq(4), [8], 16);
      rig.enqueue(m);
      rig.read(4);
      const w = rig.writableBytes(m);
      expect(rig.txStatus(m)).toEqual({ status: VIRTIO_SND_S_OK, latency: 0x1234 });
      expect(w.slice(8)).toEqual(new Array<number>(8).fill(0xee));
      expect(rig.queue.pushes[0]!.written).toBe(8);
    });

    it("writes a status that straddles writable segments", () => {
      const rig = outputRig();
      const m = rig.tx(seq(4));
      // Replace the status segment with two of 3 and 5 bytes.
      const chain = new Chain();
      chain.addSegment(m.chain.addr[0]!, m.chain.len[0]!, false);
      const s1 = rig.alloc(3);
      const s2 = rig.alloc(5);
      chain.addSegment(s1, 3, true);
      chain.addSegment(s2, 5, true);
      const built = {
        chain,
        writable: [
          { addr: s1, len: 3 },
          { addr: s2, len: 5 },
        ],
      };
      rig.enqueue(built);
      rig.read(4);
      expect(rig.txStatus(built)).toEqual({ status: VIRTIO_SND_S_OK, latency: 0 });
      expect(rig.queue.pushes[0]!.written).toBe(8);
    });

    it("rejects a message without room for a status at once, returning it with length 0", () => {
      const rig = outputRig();
      const m = rig.tx(seq(4), [8], 4);
      expect(rig.enqueue(m)).toBe(false);
      expect(rig.queue.pushes).toEqual([{ chain: m.chain, written: 0 }]);
      expect(rig.writableBytes(m)).toEqual([0xee, 0xee, 0xee, 0xee]);
    });

    it.each([PcmState.Idle, PcmState.ParamsSet, PcmState.Released])(
      "completes a message with IO_ERR at once in state %s",
      (state) => {
        const rig = new Rig(VIRTIO_SND_D_OUTPUT);
        toState(rig.stream, state);
        const m = rig.tx(seq(4));
        expect(rig.enqueue(m)).toBe(false);
        expect(rig.queue.pushes).toEqual([{ chain: m.chain, written: 8 }]);
        expect(rig.txStatus(m).status).toBe(VIRTIO_SND_S_IO_ERR);
      },
    );

    it.each([PcmState.Prepared, PcmState.Stopped])("queues messages in state %s", (state) => {
      const rig = outputRig(0, state);
      expect(rig.enqueue(rig.tx(seq(4)))).toBe(true);
      expect(rig.stream.pendingCount).toBe(1);
    });

    it("keeps order across many queued messages (the pending ring grows and wraps)", () => {
      const rig = outputRig();
      const msgs: Built[] = [];
      for (let i = 0; i < 10; i++) {
        msgs.push(rig.tx(seq(3, i * 3)));
        rig.enqueue(msgs.at(-1)!);
      }
      expect(rig.read(15)).toHaveLength(15); // head moves to 5
      for (let i = 10; i < 60; i++) {
        msgs.push(rig.tx(seq(3, i * 3)));
        rig.enqueue(msgs.at(-1)!);
      }
      expect(rig.stream.pendingCount).toBe(55);
      const rest = rig.read(1000);
      expect(rest).toEqual(Array.from({ length: 165 }, (_, i) => (15 + i) & 0xff));
      expect(rig.pushedChains()).toEqual(msgs.map((m) => m.chain));
    });

    it("RELEASE completes every pending message with OK before answering", () => {
      const rig = outputRig(0, PcmState.Stopped);
      const msgs = [rig.tx(seq(10)), rig.tx(seq(20)), rig.tx(seq(30))];
      for (const m of msgs) rig.enqueue(m);
      rig.read(5);
      expect(rig.queue.pushes).toHaveLength(0);
      expect(rig.stream.release()).toBe(VIRTIO_SND_S_OK);
      expect(rig.pushedChains()).toEqual(msgs.map((m) => m.chain));
      expect(rig.queue.pushes.every((p) => p.written === 8)).toBe(true);
      expect(msgs.every((m) => rig.txStatus(m).status === VIRTIO_SND_S_OK)).toBe(true);
      expect(rig.stream.pendingCount).toBe(0);
      expect(rig.fake.voice.closes).toBe(1);
      expect(rig.enqueue(rig.tx(seq(4)))).toBe(false);
    });

    it("a GuestMemoryError while reading completes that message with IO_ERR and goes on", () => {
      const rig = outputRig();
      const good1 = rig.tx(seq(10));
      // Data segment outside guest memory (the walker would have caught it; the stream must not crash).
      const bad = rig.tx(seq(10), [4, 10]);
      bad.chain.addr[1] = MEM_SIZE - 4;
      const good2 = rig.tx(seq(10, 50));
      for (const m of [good1, bad, good2]) rig.enqueue(m);
      let got: number[] = [];
      expect(() => {
        got = rig.read(30);
      }).not.toThrow();
      expect(got).toEqual([...seq(10), ...seq(10, 50)]);
      expect(rig.pushedChains()).toEqual([good1.chain, bad.chain, good2.chain]);
      expect(rig.txStatus(good1).status).toBe(VIRTIO_SND_S_OK);
      expect(rig.txStatus(bad).status).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.txStatus(good2).status).toBe(VIRTIO_SND_S_OK);
      expect(rig.host.fatals).toHaveLength(0);
    });

    it("a GuestMemoryError part-way through a message fails it after the bytes already read", () => {
      const rig = outputRig();
      const m = rig.tx(seq(20), [14, 10]);
      m.chain.addr[1] = 2 ** 53 + 2; // not even an address
      rig.enqueue(m);
      expect(rig.read(20)).toEqual(Array.from(seq(10)));
      expect(rig.txStatus(m).status).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.host.fatals).toHaveLength(0);
    });

    it("a status outside memory still returns the chain, with length 0", () => {
      const rig = outputRig();
      const m = rig.tx(seq(4));
      m.chain.addr[1] = MEM_SIZE + 100;
      rig.enqueue(m);
      rig.read(4);
      expect(rig.queue.pushes).toEqual([{ chain: m.chain, written: 0 }]);
    });

    it("an unexpected error from memory is reported as fatal, not thrown", () => {
      const rig = new Rig(VIRTIO_SND_D_OUTPUT, {
        memory: new Proxy(new FlatMemory(new Uint8Array(MEM_SIZE)), {
          get(target, prop, receiver) {
            if (prop === "read")
              return () => {
                throw new TypeError("host bug");
              };
            return Reflect.get(target, prop, receiver) as unknown;
          },
        }),
      });
      toState(rig.stream, PcmState.Running);
      rig.enqueue(rig.tx(seq(8)));
      expect(rig.output.read(new Uint8Array(8), 0, 8)).toBe(0);
      expect(rig.host.fatals).toHaveLength(1);
      expect(rig.host.fatals[0]).toBeInstanceOf(TypeError);
    });

    it("with MSG_POLLING, every voice callback polls the queue first", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_MSG_POLLING));
      rig.read(4);
      rig.read(4);
      expect(rig.host.polls).toEqual([VIRTIO_SND_D_OUTPUT, VIRTIO_SND_D_OUTPUT]);
      const plain = outputRig();
      plain.read(4);
      expect(plain.host.polls).toEqual([]);
    });

    it("with MSG_POLLING, STOP and RELEASE take what the driver queued without a kick first", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_MSG_POLLING));
      // The fake host's poll() stands for the device taking the ring's messages:
      // one arrives during each poll, as if queued after the last voice tick.
      const arrived: Built[] = [];
      rig.host.poll = (direction: number): void => {
        rig.host.polls.push(direction);
        const m = rig.tx(seq(4, 10 * arrived.length));
        arrived.push(m);
        rig.enqueue(m);
      };
      expect(rig.stream.stop()).toBe(VIRTIO_SND_S_OK);
      expect(rig.stream.pendingCount).toBe(1);
      expect(rig.stream.release()).toBe(VIRTIO_SND_S_OK);
      expect(rig.host.polls).toEqual([VIRTIO_SND_D_OUTPUT, VIRTIO_SND_D_OUTPUT]);
      // Both were completed before RELEASE answered.
      expect(rig.pushedChains()).toEqual(arrived.map((m) => m.chain));
      expect(rig.stream.pendingCount).toBe(0);
      const plain = outputRig();
      plain.stream.stop();
      plain.stream.release();
      expect(plain.host.polls).toEqual([]);
    });

    it("flushes interrupts once per callback that completed something", () => {
      const rig = outputRig();
      rig.enqueue(rig.tx(seq(4)));
      rig.enqueue(rig.tx(seq(4)));
      rig.read(2);
      expect(rig.host.flushes).toBe(0);
      rig.read(10);
      expect(rig.host.flushes).toBe(1);
      expect(rig.queue.pushes).toHaveLength(2);
      // Both completions wait for one interrupt decision, which the device's flush takes.
      expect(rig.completer.needsInterrupt()).toBe(true);
      expect(rig.completer.needsInterrupt()).toBe(false);
      expect(rig.queue.interruptChecks).toBe(1);
    });

    it("reads the same bytes whatever the segmentation and read sizes (property)", () => {
      const msgArb = fc
        .record({ len: fc.integer({ min: 1, max: 40 }), cuts: fc.array(fc.nat(44), { maxLength: 4 }) })
        .map(({ len, cuts }) => {
          const total = 4 + len;
          const points = [...new Set(cuts.map((c) => c % total).filter((c) => c > 0))].sort((x, y) => x - y);
          const layout: number[] = [];
          let prev = 0;
          for (const p of [...points, total]) {
            layout.push(p - prev);
            prev = p;
          }
          return { len, layout };
        });
      fc.assert(
        fc.property(
          fc.array(msgArb, { minLength: 1, maxLength: 8 }),
          fc.array(fc.integer({ min: 1, max: 60 }), { minLength: 1, maxLength: 10 }),
          (msgs, reads) => {
            const rig = outputRig();
            let start = 0;
            const ends: number[] = [];
            const built = msgs.map(({ len, layout }) => {
              const b = rig.tx(seq(len, start + 1), layout);
              start += len;
              ends.push(start);
              return b;
            });
            for (const b of built) expect(rig.enqueue(b)).toBe(true);
            const got: number[] = [];
            for (let i = 0; got.length < start; i++) {
              const chunk = rig.read(reads[i % reads.length]!);
              // Data is pending: every read must make progress (no silent stall, no endless loop).
              expect(chunk.length).toBeGreaterThan(0);
              got.push(...chunk);
              // Exactly the messages whose last byte has been read are complete.
              expect(rig.queue.pushes).toHaveLength(ends.filter((e) => e <= got.length).length);
            }
            expect(got).toEqual(Array.from({ length: start }, (_, i) => (1 + i) & 0xff));
            expect(rig.pushedChains()).toEqual(built.map((b) => b.chain));
            expect(built.every((b) => rig.txStatus(b).status === VIRTIO_SND_S_OK)).toBe(true);
          },
        ),
        { numRuns: 200 },
      );
    });
  });

  describe("RX messages", () => {
    it("fills the data, writes the status at writableBytes - 8, used length = 8 + bytes", () => {
      const rig = inputRig();
      rig.fake.voice.latency = 77;
      const m = rig.rx([16, 8]);
      expect(rig.enqueue(m)).toBe(true);
      expect(rig.write(seq(10))).toBe(10);
      expect(rig.queue.pushes).toHaveLength(0);
      expect(rig.write(seq(10, 11))).toBe(6);
      expect(rig.queue.pushes).toEqual([{ chain: m.chain, written: 24 }]);
      expect(rig.writableBytes(m).slice(0, 16)).toEqual(Array.from(seq(16)));
      expect(rig.rxStatus(m)).toEqual({ status: VIRTIO_SND_S_OK, latency: 77 });
    });

    it.each([
      ["data and status in one segment", [24]],
      ["status split from the data", [16, 8]],
      ["status straddling two segments", [20, 4]],
      ["many small segments", [5, 5, 5, 5, 2, 2]],
    ])("works with %s", (_n, layout) => {
      const rig = inputRig();
      const m = rig.rx(layout);
      rig.enqueue(m);
      expect(rig.write(seq(16))).toBe(16);
      expect(rig.queue.pushes).toEqual([{ chain: m.chain, written: 24 }]);
      expect(rig.writableBytes(m).slice(0, 16)).toEqual(Array.from(seq(16)));
      expect(rig.rxStatus(m).status).toBe(VIRTIO_SND_S_OK);
    });

    it("spreads captured bytes over consecutive messages", () => {
      const rig = inputRig();
      const a = rig.rx([10, 8]);
      const b = rig.rx([6, 8]);
      const c = rig.rx([20, 8]);
      for (const m of [a, b, c]) rig.enqueue(m);
      expect(rig.write(seq(25))).toBe(25);
      expect(rig.queue.pushes).toEqual([
        { chain: a.chain, written: 18 },
        { chain: b.chain, written: 14 },
      ]);
      expect(rig.writableBytes(a).slice(0, 10)).toEqual(Array.from(seq(10)));
      expect(rig.writableBytes(b).slice(0, 6)).toEqual(Array.from(seq(6, 11)));
      expect(rig.writableBytes(c).slice(0, 9)).toEqual(Array.from(seq(9, 17)));
    });

    it("takes fewer bytes than offered when it runs out of buffers (an overrun)", () => {
      const rig = inputRig(bit(VIRTIO_SND_PCM_F_EVT_XRUNS));
      rig.enqueue(rig.rx([4, 8]));
      expect(rig.write(seq(10))).toBe(4);
      expect(rig.stream.xruns).toBe(1);
      expect(rig.host.posted).toEqual([[VIRTIO_SND_EVT_PCM_XRUN, STREAM_ID]]);
    });

    it("RELEASE completes a part-filled message with what it has, then empty ones", () => {
      const rig = inputRig(0, PcmState.Running);
      const a = rig.rx([16, 8]);
      const b = rig.rx([16, 8]);
      rig.enqueue(a);
      rig.enqueue(b);
      rig.write(seq(5));
      expect(rig.stream.stop()).toBe(VIRTIO_SND_S_OK);
      expect(rig.stream.release()).toBe(VIRTIO_SND_S_OK);
      expect(rig.queue.pushes).toEqual([
        { chain: a.chain, written: 13 },
        { chain: b.chain, written: 8 },
      ]);
      expect(rig.rxStatus(a).status).toBe(VIRTIO_SND_S_OK);
      expect(rig.rxStatus(b).status).toBe(VIRTIO_SND_S_OK);
      expect(rig.writableBytes(a).slice(0, 5)).toEqual(Array.from(seq(5)));
    });

    it("rejects a message whose readable part is not exactly the 4-byte header", () => {
      const rig = inputRig();
      const m = rig.rx([16, 8]);
      const chain = new Chain();
      chain.addSegment(m.chain.addr[0]!, 4, false);
      chain.addSegment(rig.alloc(4), 4, false);
      chain.addSegment(m.writable[0]!.addr, 16, true);
      chain.addSegment(m.writable[1]!.addr, 8, true);
      const built = { chain, writable: m.writable };
      expect(rig.enqueue(built)).toBe(false);
      expect(rig.queue.pushes).toEqual([{ chain, written: 8 }]);
      expect(rig.rxStatus(built).status).toBe(VIRTIO_SND_S_IO_ERR);
    });

    it("rejects a message with fewer than 8 writable bytes, returning length 0", () => {
      const rig = inputRig();
      const m = rig.rx([6]);
      expect(rig.enqueue(m)).toBe(false);
      expect(rig.queue.pushes).toEqual([{ chain: m.chain, written: 0 }]);
      expect(rig.writableBytes(m)).toEqual(new Array<number>(6).fill(0xee));
    });

    it("a GuestMemoryError while writing completes that message with IO_ERR and does not throw", () => {
      const rig = inputRig();
      const bad = rig.rx([8, 8, 8]);
      bad.chain.addr[2] = MEM_SIZE - 2; // second data segment outside memory
      const good = rig.rx([8, 8]);
      rig.enqueue(bad);
      rig.enqueue(good);
      let n = 0;
      expect(() => {
        n = rig.write(seq(20));
      }).not.toThrow();
      expect(rig.pushedChains()).toEqual([bad.chain, good.chain]);
      expect(rig.status(bad, 16).status).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.rxStatus(good).status).toBe(VIRTIO_SND_S_OK);
      // 8 bytes went into the first segment of `bad`; the ones after the failure went to the next message.
      expect(n).toBe(16);
      expect(rig.writableBytes(bad).slice(0, 8)).toEqual(Array.from(seq(8)));
      expect(rig.writableBytes(good).slice(0, 8)).toEqual(Array.from(seq(8, 9)));
      expect(rig.host.fatals).toHaveLength(0);
    });
  });

  describe("voice failure", () => {
    it("completes every pending message with IO_ERR, closes the voice and flushes", () => {
      const rig = outputRig();
      const msgs = [rig.tx(seq(10)), rig.tx(seq(10)), rig.tx(seq(10))];
      for (const m of msgs) rig.enqueue(m);
      rig.read(4);
      const flushes = rig.host.flushes;
      rig.stream.fail(new Error("device unplugged"));
      expect(rig.pushedChains()).toEqual(msgs.map((m) => m.chain));
      expect(msgs.map((m) => rig.txStatus(m).status)).toEqual([0x8003, 0x8003, 0x8003]);
      expect(rig.queue.pushes.every((p) => p.written === 8)).toBe(true);
      expect(rig.host.flushes).toBe(flushes + 1);
      expect(rig.fake.voice.closes).toBe(1);
      const err = rig.host.events.find((e) => e.type === "error")!;
      expect(err.error!.message).toBe("device unplugged");
    });

    it("later messages fail until PREPARE (running: STOP, RELEASE, PREPARE)", () => {
      const rig = outputRig();
      rig.stream.fail(new Error("x"));
      const m1 = rig.tx(seq(4));
      expect(rig.enqueue(m1)).toBe(false);
      expect(rig.txStatus(m1).status).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.stream.stop()).toBe(VIRTIO_SND_S_OK);
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.enqueue(rig.tx(seq(4)))).toBe(false);
      expect(rig.stream.release()).toBe(VIRTIO_SND_S_OK);
      expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voices).toHaveLength(2);
      const m2 = rig.tx(seq(4));
      expect(rig.enqueue(m2)).toBe(true);
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voice.starts).toBe(1);
      expect(rig.read(4)).toEqual([1, 2, 3, 4]);
      expect(rig.txStatus(m2).status).toBe(VIRTIO_SND_S_OK);
    });

    it("a failure while prepared: START fails, PREPARE reopens the voice", () => {
      const rig = outputRig(0, PcmState.Prepared);
      rig.stream.fail(new Error("x"));
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.enqueue(rig.tx(seq(4)))).toBe(false);
      expect(rig.stream.prepare()).toBe(VIRTIO_SND_S_OK);
      expect(rig.fake.voices).toHaveLength(2);
      expect(rig.enqueue(rig.tx(seq(4)))).toBe(true);
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_OK);
    });

    it("an input stream's failure completes part-filled messages with IO_ERR and what they hold", () => {
      const rig = inputRig();
      const a = rig.rx([16, 8]);
      rig.enqueue(a);
      rig.write(seq(3));
      rig.stream.fail(new Error("x"));
      expect(rig.queue.pushes).toEqual([{ chain: a.chain, written: 11 }]);
      expect(rig.rxStatus(a).status).toBe(VIRTIO_SND_S_IO_ERR);
      expect(rig.enqueue(rig.rx([16, 8]))).toBe(false);
    });
  });

  describe("events", () => {
    it("posts PERIOD_ELAPSED for every period moved when EVT_SHMEM_PERIODS is set", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS));
      for (let i = 0; i < 4; i++) rig.enqueue(rig.tx(seq(250)));
      rig.read(399);
      expect(rig.host.posted).toEqual([]);
      rig.read(1);
      expect(rig.host.posted).toEqual([[VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED, STREAM_ID]]);
      rig.read(600); // 1000 in all: marks at 800 too (not 1200)
      expect(rig.host.posted).toHaveLength(2);
      expect(
        rig.host.posted.every(([code, id]) => code === VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED && id === STREAM_ID),
      ).toBe(true);
    });

    it("posts several PERIOD_ELAPSED events when one callback moves several periods", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS));
      rig.enqueue(rig.tx(seq(1000)));
      rig.read(1000);
      expect(rig.host.posted).toHaveLength(2);
    });

    it("restarts period counting at PREPARE", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS));
      rig.enqueue(rig.tx(seq(300)));
      rig.read(300);
      rig.stream.stop();
      rig.stream.release();
      rig.stream.prepare();
      rig.stream.start();
      rig.enqueue(rig.tx(seq(300)));
      rig.read(300);
      expect(rig.host.posted).toEqual([]);
    });

    it("posts PERIOD_ELAPSED for input streams too", () => {
      const rig = inputRig(bit(VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS));
      rig.enqueue(rig.rx([400, 8]));
      rig.write(seq(400));
      expect(rig.host.posted).toEqual([[VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED, STREAM_ID]]);
    });

    it("posts no period events without the feature", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_EVT_XRUNS));
      rig.enqueue(rig.tx(seq(1000)));
      rig.read(1000);
      expect(rig.host.posted).toEqual([]);
    });

    it("posts one XRUN per starvation when EVT_XRUNS is set", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_EVT_XRUNS));
      rig.enqueue(rig.tx(seq(10)));
      expect(rig.read(20)).toHaveLength(10); // starves
      expect(rig.read(20)).toHaveLength(0); // still the same starvation
      expect(rig.read(20)).toHaveLength(0);
      expect(rig.host.posted).toEqual([[VIRTIO_SND_EVT_PCM_XRUN, STREAM_ID]]);
      expect(rig.stream.xruns).toBe(1);
      // New data ends the starvation; running dry again is a second one.
      rig.enqueue(rig.tx(seq(30)));
      expect(rig.read(20)).toHaveLength(20);
      expect(rig.host.posted).toHaveLength(1);
      expect(rig.read(20)).toHaveLength(10);
      expect(rig.host.posted).toEqual([
        [VIRTIO_SND_EVT_PCM_XRUN, STREAM_ID],
        [VIRTIO_SND_EVT_PCM_XRUN, STREAM_ID],
      ]);
      expect(rig.stream.xruns).toBe(2);
      expect(rig.host.eventTypes().filter((t) => t === "xrun")).toHaveLength(2);
    });

    it("counts xruns and emits them without posting an event when EVT_XRUNS is not set", () => {
      const rig = outputRig();
      rig.read(20);
      expect(rig.stream.xruns).toBe(1);
      expect(rig.host.eventTypes()).toContain("xrun");
      expect(rig.host.posted).toEqual([]);
    });

    it("does not count an xrun when the stream is not running", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_EVT_XRUNS), PcmState.Stopped);
      rig.read(20);
      expect(rig.stream.xruns).toBe(0);
      expect(rig.host.posted).toEqual([]);
    });

    it("START re-arms xrun reporting", () => {
      const rig = outputRig(bit(VIRTIO_SND_PCM_F_EVT_XRUNS));
      rig.read(20);
      rig.stream.stop();
      rig.stream.start();
      rig.read(20);
      expect(rig.host.posted).toHaveLength(2);
    });
  });

  describe("with a MemoryBackend on a VirtualClock", () => {
    it("plays queued messages period by period and completes each when consumed", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock });
      const rig = new Rig(VIRTIO_SND_D_OUTPUT, { backend, clock });
      // 48 kHz S16 stereo, 100-frame periods (400 bytes): one period every 2083333 ns.
      const p = params({
        features: bit(VIRTIO_SND_PCM_F_EVT_SHMEM_PERIODS) | bit(VIRTIO_SND_PCM_F_EVT_XRUNS),
      });
      toState(rig.stream, PcmState.Prepared, p);
      const msgs = [0, 1, 2].map((i) => rig.tx(seq(400, i * 400)));
      for (const m of msgs) rig.enqueue(m);
      clock.advance(1e9);
      expect(rig.queue.pushes).toHaveLength(0); // not started
      expect(rig.stream.start()).toBe(VIRTIO_SND_S_OK);
      const t0 = clock.now();
      clock.advanceTo(t0 + 2_083_333);
      expect(rig.pushedChains()).toEqual([msgs[0]!.chain]);
      clock.advanceTo(t0 + 3 * 2_083_334);
      expect(rig.pushedChains()).toEqual(msgs.map((m) => m.chain));
      expect(rig.host.posted.filter(([c]) => c === VIRTIO_SND_EVT_PCM_PERIOD_ELAPSED)).toHaveLength(3);
      expect(rig.host.posted.filter(([c]) => c === VIRTIO_SND_EVT_PCM_XRUN)).toHaveLength(0);
      clock.advanceTo(t0 + 10 * 2_083_334);
      expect(rig.host.posted.filter(([c]) => c === VIRTIO_SND_EVT_PCM_XRUN)).toHaveLength(1);
      const pb = backend.playbacks[0]!;
      expect(Array.from(pb.data.bytes())).toEqual(Array.from({ length: 1200 }, (_, i) => i & 0xff));
      expect(pb.underruns).toBe(7);
      expect(rig.stream.release()).toBe(VIRTIO_SND_S_BAD_MSG); // running
      rig.stream.stop();
      expect(rig.stream.release()).toBe(VIRTIO_SND_S_OK);
      expect(pb.closed).toBe(true);
    });

    it("captures input into RX messages", () => {
      const clock = new VirtualClock();
      const backend = new MemoryBackend({ clock, input: () => seq(600) });
      const rig = new Rig(VIRTIO_SND_D_INPUT, { backend, clock });
      toState(rig.stream, PcmState.Prepared, params({ direction: VIRTIO_SND_D_INPUT }));
      const a = rig.rx([400, 8]);
      const b = rig.rx([400, 8]);
      rig.enqueue(a);
      rig.enqueue(b);
      rig.stream.start();
      clock.advance(2 * 2_083_334);
      expect(rig.queue.pushes).toEqual([
        { chain: a.chain, written: 408 },
        { chain: b.chain, written: 408 },
      ]);
      expect(rig.writableBytes(a).slice(0, 400)).toEqual(Array.from(seq(400)));
      expect(rig.writableBytes(b).slice(0, 200)).toEqual(Array.from(seq(200, 401)));
      expect(rig.writableBytes(b).slice(200, 400)).toEqual(new Array<number>(200).fill(0));
    });
  });
});
