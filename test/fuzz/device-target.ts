/**
 * The device target: an input is a card configuration and a sequence of
 * guest and host actions on the embedding API of VirtioSound, over real
 * rings built by the driver models in src/driver/. After every action the
 * device's promises are checked (see DeviceTarget.check).
 *
 * Guest memory (256 KiB) is laid out so that what a hostile driver points at
 * cannot be mistaken for a device bug: each queue's rings and indirect
 * tables have their own area, the well-behaved stream's buffers another,
 * and every buffer of a malformed message lies in the scratch area or
 * outside memory. Raw writes into a ring, or a ring placed by random
 * numbers, make every descriptor suspect: from then on the checks that
 * trust the rings (used entries, interrupts, the well-behaved stream) stop
 * for that input, the others go on.
 */
import { Buffer } from "node:buffer";
import { VirtualClock } from "../../src/audio/clock.js";
import { MemoryBackend } from "../../src/audio/memory-backend.js";
import { frameBits } from "../../src/audio/pcm-params.js";
import { CHMAP_PRESETS, DEFAULT_CONFIG, type SoundConfig } from "../../src/device/config.js";
import { dbScaleTlv, muteControl, volumeControl } from "../../src/device/controls.js";
import type { EventQueue } from "../../src/device/event-queue.js";
import { type DeviceLimits, ioSegmentBudget } from "../../src/device/limits.js";
import { VirtioSound } from "../../src/device/virtio-sound.js";
import { BumpAllocator } from "../../src/driver/allocator.js";
import type { Buf, DriverQueue } from "../../src/driver/driver-queue.js";
import { PackedDriverQueue } from "../../src/driver/packed-driver.js";
import { SplitDriverQueue } from "../../src/driver/split-driver.js";
import { VirtioSndError } from "../../src/errors.js";
import { FlatMemory } from "../../src/memory/flat-memory.js";
import {
  PCM_RATE_HZ,
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_PCM_FMT_S16,
  VIRTIO_SND_PCM_FMT_S24_3,
  VIRTIO_SND_PCM_FMT_S32,
  VIRTIO_SND_PCM_FMT_U8,
  VIRTIO_SND_PCM_FMT_FLOAT64,
  VIRTIO_SND_PCM_F_EVT_XRUNS,
  VIRTIO_SND_PCM_F_MSG_POLLING,
  VIRTIO_SND_R_CHMAP_INFO,
  VIRTIO_SND_R_CTL_ENUM_ITEMS,
  VIRTIO_SND_R_CTL_INFO,
  VIRTIO_SND_R_CTL_READ,
  VIRTIO_SND_R_CTL_TLV_COMMAND,
  VIRTIO_SND_R_CTL_TLV_READ,
  VIRTIO_SND_R_CTL_TLV_WRITE,
  VIRTIO_SND_R_CTL_WRITE,
  VIRTIO_SND_R_JACK_INFO,
  VIRTIO_SND_R_JACK_REMAP,
  VIRTIO_SND_R_PCM_INFO,
  VIRTIO_SND_R_PCM_PREPARE,
  VIRTIO_SND_R_PCM_RELEASE,
  VIRTIO_SND_R_PCM_SET_PARAMS,
  VIRTIO_SND_R_PCM_START,
  VIRTIO_SND_R_PCM_STOP,
  VIRTIO_SND_S_OK,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../../src/spec/constants.js";
import { PcmState, acceptsIo } from "../../src/stream/pcm-state.js";
import { chainBounds } from "../../src/virtqueue/chain-pool.js";
import { PackedQueue } from "../../src/virtqueue/packed-ring.js";
import { SplitQueue } from "../../src/virtqueue/split-ring.js";
import type { DeviceQueue, QueueLayout } from "../../src/virtqueue/virtqueue.js";
import { CheckedMemory } from "../virtqueue/checked-memory.js";
import { ByteReader, opcodeTable } from "./bytes.js";
import type { Failure, FuzzTarget } from "./engine.js";

const MEM_SIZE = 256 * 1024;
/** Queue i's rings and indirect tables: [i * QUEUE_AREA, (i + 1) * QUEUE_AREA). */
const QUEUE_AREA = 32 * 1024;
const GOOD_BASE = 128 * 1024;
const GOOD_SLOTS = 16;
const GOOD_SLOT = 1024;
const GOOD_CTL_REQ = GOOD_BASE + GOOD_SLOTS * GOOD_SLOT;
const GOOD_CTL_RESP = GOOD_CTL_REQ + 512;
const SCRATCH_BASE = 160 * 1024;
const SCRATCH_END = MEM_SIZE;

/** The well-behaved stream: stream 0, S16 stereo 48 kHz, 5 ms periods. */
const GOOD_STREAM = 0;
const GOOD_PERIOD = 960;
const GOOD_BUFFER = 4 * GOOD_PERIOD;
const GOOD_RATE_INDEX = PCM_RATE_HZ.indexOf(48000);
const GOOD_PERIOD_NS = 5_000_000;

/** Wall time one action may take before it counts as a hang. */
const HANG_MS = 1000;
/** Actions per input: an input's cost stays bounded whatever its length. */
const MAX_ACTIONS = 400;

const bit = (n: number): bigint => 1n << BigInt(n);

interface CardConfig {
  readonly config: SoundConfig;
  /** Stream 0 can be the well-behaved stream (an output offering S16 stereo at 48 kHz). */
  readonly goodCapable: boolean;
}

const S16_FAMILY = [VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_U8, VIRTIO_SND_PCM_FMT_S32];
const SMALL_RATES = [8000, 44100, 48000];

export const CARDS: readonly CardConfig[] = [
  {
    goodCapable: true,
    config: {
      streams: [
        { direction: "output", formats: S16_FAMILY, rates: SMALL_RATES, channelsMax: 2 },
        { direction: "input", formats: S16_FAMILY, rates: SMALL_RATES, channelsMax: 2 },
        { direction: "output", formats: S16_FAMILY, rates: SMALL_RATES, channelsMax: 2 },
      ],
      jacks: [{ connected: true, remap: true }, { connected: false }],
      chmaps: [
        { direction: "output", positions: CHMAP_PRESETS.stereo },
        { direction: "input", positions: CHMAP_PRESETS.mono },
      ],
      controls: [
        volumeControl("Master Playback Volume", "output", { db: { minDb: -60, maxDb: 0, stepDb: 1 } }),
        muteControl("Master Playback Switch", "output"),
      ],
    },
  },
  {
    goodCapable: true,
    config: {
      streams: [
        {
          direction: "output",
          formats: [VIRTIO_SND_PCM_FMT_S16],
          rates: [48000],
          channelsMin: 2,
          channelsMax: 2,
        },
        {
          direction: "output",
          formats: [VIRTIO_SND_PCM_FMT_S16, VIRTIO_SND_PCM_FMT_S24_3],
          rates: SMALL_RATES,
          channelsMax: 2,
          features: (1 << VIRTIO_SND_PCM_F_MSG_POLLING) | (1 << VIRTIO_SND_PCM_F_EVT_XRUNS),
        },
        {
          direction: "input",
          formats: S16_FAMILY,
          rates: SMALL_RATES,
          channelsMax: 2,
          features: 1 << VIRTIO_SND_PCM_F_MSG_POLLING,
        },
      ],
    },
  },
  {
    goodCapable: false,
    config: {
      streams: [
        {
          direction: "output",
          formats: [VIRTIO_SND_PCM_FMT_S24_3, VIRTIO_SND_PCM_FMT_U8, VIRTIO_SND_PCM_FMT_FLOAT64],
          rates: [8000, 48000],
          channelsMax: 6,
        },
        { direction: "input", formats: [VIRTIO_SND_PCM_FMT_S24_3], rates: [8000], channelsMax: 3 },
      ],
      jacks: [{ connected: true }],
      controls: [
        volumeControl("PCM Playback Volume", "output", { channels: 1 }),
        volumeControl("Capture Volume", "input"),
      ],
    },
  },
  { goodCapable: true, config: DEFAULT_CONFIG },
  { goodCapable: false, config: { streams: [] } },
];

/** A host control change the fuzzer may make: always a valid one (invalid ones are the embedder's error). */
type HostControl = (device: VirtioSound, r: ByteReader) => void;

function hostControls(card: CardConfig): HostControl[] {
  const out: HostControl[] = [];
  (card.config.controls ?? []).forEach((c, id) => {
    out.push((d, r) => void d.setControlActive(id, r.bool()));
    if (c.type === "boolean") {
      const n = c.count ?? 1;
      out.push(
        (d, r) =>
          void d.setControlValue(
            id,
            Array.from({ length: n }, () => r.bool()),
          ),
      );
    } else if (c.type === "integer") {
      const n = c.count ?? 1;
      const span = c.max - c.min + 1;
      out.push(
        (d, r) =>
          void d.setControlValue(
            id,
            Array.from({ length: n }, () => c.min + r.below(span)),
          ),
      );
      out.push((d, r) => void d.setControlTlv(id, dbScaleTlv(-1 - r.below(100), 1 + r.below(3))));
    }
  });
  return out;
}

interface Pending {
  readonly writable: number;
  readonly onUsed?: (len: number) => void;
}

/** A queue whose rings the fuzzer built with a driver model: its used entries can be checked. */
interface Model {
  readonly driver: DriverQueue;
  readonly layout: QueueLayout;
  readonly packed: boolean;
  readonly eventIdx: boolean;
  readonly indirect: boolean;
  readonly pending: Map<number, Pending>;
  interruptsOn: boolean;
}

interface GoodMessage {
  readonly slot: number;
  readonly seq: number;
  readonly epoch: number;
  /** The stream accepted I/O when the message was queued: it must play it. */
  readonly accepted: boolean;
  done: boolean;
}

const ACTIONS = [
  "features", // 0
  "setup-model", // 1
  "setup-random", // 2
  "stop-queue", // 3
  "reset", // 4
  "control", // 5
  "tx", // 6
  "rx", // 7
  "event-buffers", // 8
  "notify", // 9
  "raw-write", // 10
  "clock", // 11
  "jack", // 12
  "host-control", // 13
  "interrupts", // 14
  "good", // 15
  "config-space", // 16
] as const;
const OPCODES = opcodeTable([2, 3, 0.4, 1, 0.7, 12, 10, 5, 3, 3, 0.3, 7, 1, 1, 1, 9, 0.5]);

const CLOCK_STEPS = [0, 1_000, 100_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000, 50_000_000, 200_000_000];
const OUTSIDE = [MEM_SIZE, MEM_SIZE - 4, 2 ** 32, 2 ** 53 - 1, 2 ** 64 - 2 ** 12, 0xffff_fff0];

const COMMANDS = new Set(["set-params", "prepare", "start", "stop", "release"]);

class Abort {
  constructor(readonly failure: Failure) {}
}

export class DeviceTarget implements FuzzTarget {
  readonly name = "device";
  /** Print each action and the device's events (for investigating a reproducer). */
  trace = false;
  private readonly flat = new FlatMemory(new ArrayBuffer(MEM_SIZE));
  private readonly goodPattern = new Uint8Array(GOOD_PERIOD);

  // Per-input state, set by run().
  private r = new ByteReader(new Uint8Array(0));
  private mem = new CheckedMemory(this.flat);
  private clock = new VirtualClock();
  private audio = new MemoryBackend({ clock: this.clock });
  private device!: VirtioSound;
  private card!: CardConfig;
  private controls: HostControl[] = [];
  private models: (Model | null)[] = [null, null, null, null];
  private interrupts = [0, 0, 0, 0];
  private reaped = [0, 0, 0, 0];
  private tainted = false;
  private failure: Failure | null = null;
  private note: (f: number) => void = () => undefined;
  private scratchNext = SCRATCH_BASE;
  private lastAddr = SCRATCH_BASE;
  // The well-behaved stream.
  private good = false;
  private goodEpoch = 0;
  private goodSeq = 0;
  private goodSlots: (GoodMessage | null)[] = [];
  private goodCtlBusy = false;
  /** Something not the fuzzer's well-behaved driver acted on stream 0: its checks are off. */
  private goodSpoiled = false;
  private inGoodAction = false;
  private goodCtlStatus = -1;
  private goodSearch = { record: 0, offset: 0 };
  /** The current action may complete good messages unplayed (RELEASE, SET_PARAMS, a queue stop). */
  private disruptive = false;

  run(input: Uint8Array, note?: (feature: number) => void): Failure | null {
    this.note = note ?? (() => undefined);
    this.failure = null;
    try {
      this.setup(input);
      let actions = 0;
      while (!this.r.done && actions++ < MAX_ACTIONS) {
        const op = OPCODES[this.r.u8()]!;
        this.note(op);
        if (this.trace) console.log(`[${this.r.pos}] ${ACTIONS[op]}`);
        const before = performance.now();
        const wanted = this.models.map((m) => m !== null && !m.eventIdx && m.interruptsOn);
        const interruptsBefore = this.interrupts.slice();
        this.reaped.fill(0);
        this.disruptive = false;
        try {
          this.act(op);
        } catch (err) {
          if (err instanceof Abort) throw err;
          this.fail("exception", `${ACTIONS[op]}: ${describe(err)}`);
        }
        if (this.failure !== null) break;
        this.check(ACTIONS[op]!, wanted, interruptsBefore);
        const took = performance.now() - before;
        if (took > HANG_MS) this.fail("hang", `${ACTIONS[op]} took ${took.toFixed(0)} ms`);
      }
      if (this.failure === null) this.finalCheck();
    } catch (err) {
      if (!(err instanceof Abort)) return { invariant: "harness", message: describe(err) };
    }
    return this.failure;
  }

  private fail(invariant: string, message: string): never {
    this.record(invariant, message);
    throw new Abort(this.failure!);
  }

  /** For the device's callbacks: they must not throw into the device, which would catch it. */
  private record(invariant: string, message: string): void {
    this.failure ??= { invariant, message };
  }

  // ---- setup --------------------------------------------------------------------------------

  private setup(input: Uint8Array): void {
    this.r = new ByteReader(input);
    const r = this.r;
    this.flat.bytes.fill(0);
    this.mem = new CheckedMemory(this.flat);
    this.clock = new VirtualClock();
    this.audio = new MemoryBackend({ clock: this.clock });
    this.card = CARDS[r.below(CARDS.length)]!;
    this.controls = hostControls(this.card);
    const limits = this.limits(r);
    this.models = [null, null, null, null];
    this.interrupts = [0, 0, 0, 0];
    this.tainted = false;
    this.scratchNext = SCRATCH_BASE;
    this.goodEpoch = 0;
    this.goodSeq = 0;
    this.goodSlots = new Array<GoodMessage | null>(GOOD_SLOTS).fill(null);
    this.goodCtlBusy = false;
    this.goodSearch = { record: 0, offset: 0 };
    const packed = r.u8() % 4 !== 0;
    this.device = new VirtioSound({
      memory: this.mem,
      backend: this.audio,
      clock: this.clock,
      config: this.card.config,
      interrupt: (i) => {
        if (i >= 0 && i < 4) this.interrupts[i]!++;
        else this.record("interrupt-index", `interrupt for queue ${i}`);
      },
      onNeedsReset: (error) => {
        this.note(0x100);
        if (this.trace) console.log(`  needs-reset: ${error.message}`);
        const root = rootCause(error);
        if (!(root instanceof VirtioSndError) && !(root instanceof Abort))
          this.record("internal-error", `needs-reset from ${describe(root)}`);
      },
      onStreamEvent: (e) => {
        this.note(0x200 + e.type.length * 16 + e.streamId);
        if (this.trace) console.log(`  stream ${e.streamId} ${e.type} ${e.reason ?? ""}`);
        // A malformed request whose bytes the guest changed under it (aliased buffers, a
        // request left in the ring) may name the well-behaved stream: it is then not well-behaved.
        if (e.streamId === GOOD_STREAM && !this.inGoodAction && COMMANDS.has(e.type)) this.goodSpoiled = true;
        if (e.type === "error") this.record("stream-error", `stream ${e.streamId}: ${describe(e.error)}`);
      },
      ...(limits !== undefined ? { limits } : {}),
      packed,
    });
    const l = this.device.limits;
    this.goodSpoiled = false;
    this.inGoodAction = false;
    this.good =
      this.card.goodCapable &&
      r.u8() % 2 === 0 &&
      l.maxChain >= 3 &&
      (l.maxBufferBytes[GOOD_STREAM] ?? 0) >= GOOD_BUFFER;
    if (this.trace)
      console.log(
        `card ${CARDS.indexOf(this.card)}, limits ${JSON.stringify(limits)}, packed ${packed}, good ${this.good}`,
      );
    const s0 = this.device.streams[GOOD_STREAM];
    if (this.good && s0 !== undefined) {
      // Likewise a malformed message whose header came to name it: only the fuzzer's own messages may.
      const enqueue = s0.enqueue.bind(s0);
      s0.enqueue = (chain) => {
        const head = chain.readableCount > 0 ? chain.addr[0]! : -1;
        if (head < GOOD_BASE || head >= GOOD_CTL_REQ) this.goodSpoiled = true;
        return enqueue(chain);
      };
    }
    // Most inputs start from a driver that probed the device: the actions then reach the streams.
    if (r.u8() % 4 !== 3) this.boot();
  }

  private limits(r: ByteReader): DeviceLimits | undefined {
    switch (r.u8() % 6) {
      case 2:
        return { maxBufferBytes: 1 + r.below(8) * 4096 + r.below(64) };
      case 3:
        return { maxChain: 1 + r.below(64) };
      case 4:
        return { maxControlBytes: 1 + r.u16() };
      case 5:
        return { maxBufferBytes: 512 + r.u16(), maxChain: 3 + r.below(32), maxControlBytes: 1 + r.u8() * 8 };
      default:
        return undefined;
    }
  }

  /** Feature negotiation and all four queues, as a driver's probe does. */
  private boot(): void {
    const r = this.r;
    let f = bit(VIRTIO_F_VERSION_1);
    for (const b of [VIRTIO_F_INDIRECT_DESC, VIRTIO_F_EVENT_IDX, VIRTIO_F_RING_PACKED]) {
      if (r.bool()) f |= bit(b);
    }
    f |=
      this.device.deviceFeatures &
      ~(bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX) | bit(VIRTIO_F_RING_PACKED));
    this.device.setDriverFeatures(f & this.device.deviceFeatures);
    for (let i = 0; i < 4; i++) this.setupModel(i);
    this.eventBuffers(true);
  }

  // ---- actions ------------------------------------------------------------------------------

  private act(op: number): void {
    const r = this.r;
    const d = this.device;
    switch (ACTIONS[op]) {
      case "features": {
        let f: bigint;
        if (r.u8() % 4 === 3) {
          f = (BigInt(r.u32()) << 32n) | BigInt(r.u32());
        } else {
          f = bit(VIRTIO_F_VERSION_1);
          for (let b = 0; b < 64; b++) if ((d.deviceFeatures & bit(b)) !== 0n && r.bool()) f |= bit(b);
        }
        this.note(0x300 + (d.setDriverFeatures(f) ? 1 : 0));
        return;
      }
      case "setup-model":
        this.setupModel(this.queueIndex());
        return;
      case "setup-random": {
        const index = r.u8() % 8;
        const size = r.pick([0, 1, 3, 16, 100, 32768, 40000, r.u16()]);
        this.taint();
        if (index === VIRTIO_SND_VQ_TX) this.disruptive = true;
        if (index < 4) this.dropModel(index);
        d.setupQueue(index, {
          size,
          descAddr: this.anyAddr(),
          driverAddr: this.anyAddr(),
          deviceAddr: this.anyAddr(),
        });
        return;
      }
      case "stop-queue": {
        const index = r.u8() % 6;
        if (index === VIRTIO_SND_VQ_TX) this.disruptive = true;
        const base = d.stopQueue(index);
        if (this.trace) console.log(`  stopQueue(${index}) = ${base}`);
        this.drain();
        const model = index < 4 ? this.models[index] : null;
        // (Only with the ring format the model was built for: another would read the rings differently.)
        const f = d.negotiatedFeatures;
        const same =
          model !== undefined &&
          model !== null &&
          model.packed === ((f & bit(VIRTIO_F_RING_PACKED)) !== 0n) &&
          model.eventIdx === ((f & bit(VIRTIO_F_EVENT_IDX)) !== 0n) &&
          model.indirect === ((f & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n);
        if (model !== undefined && model !== null && same && !d.needsReset && r.bool()) {
          // Resume where it stopped, as vhost-user does after GET_VRING_BASE.
          d.setupQueue(index, model.layout, base);
        } else if (index < 4) {
          this.dropModel(index);
        }
        return;
      }
      case "reset":
        this.disruptive = true;
        d.reset();
        for (let i = 0; i < 4; i++) this.dropModel(i);
        return;
      case "control":
        this.badControl();
        return;
      case "tx":
        this.ioMessage(true);
        return;
      case "rx":
        this.ioMessage(false);
        return;
      case "event-buffers":
        this.eventBuffers(false);
        return;
      case "notify":
        d.notify(r.u8() < 224 ? r.u8() % 4 : r.u16());
        return;
      case "raw-write":
        this.rawWrite();
        return;
      case "clock":
        this.clock.advance(r.pick(CLOCK_STEPS) + r.below(1000));
        return;
      case "jack":
        if (d.jacks.length > 0) d.setJackConnected(r.below(d.jacks.length), r.bool());
        return;
      case "host-control":
        if (this.controls.length > 0) r.pick(this.controls)(d, r);
        return;
      case "interrupts": {
        const m = this.models[this.queueIndex()];
        if (m === null || m === undefined) return;
        m.interruptsOn = r.bool();
        m.driver.enableInterrupts(m.interruptsOn);
        return;
      }
      case "good":
        this.goodAction();
        return;
      case "config-space":
        d.readConfig(r.u32() % 64, r.below(17));
        d.writeConfig(r.u8(), new Uint8Array(r.below(8)));
        return;
      default:
        return;
    }
  }

  private queueIndex(): number {
    return this.r.u8() % 4;
  }

  private setupModel(index: number): void {
    const r = this.r;
    const d = this.device;
    if (index === VIRTIO_SND_VQ_TX) this.disruptive = true;
    this.dropModel(index);
    const f = d.negotiatedFeatures;
    const packed = (f & bit(VIRTIO_F_RING_PACKED)) !== 0n;
    const eventIdx = (f & bit(VIRTIO_F_EVENT_IDX)) !== 0n;
    const indirect = (f & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n;
    const size = packed ? 1 + r.below(128) : 1 << r.below(8);
    const bump = new BumpAllocator(index * QUEUE_AREA, (index + 1) * QUEUE_AREA);
    const opts = { mem: this.flat, alloc: bump.alloc, size, eventIdx };
    const driver = packed ? new PackedDriverQueue(opts) : new SplitDriverQueue(opts);
    d.setupQueue(index, driver.layout);
    if (this.trace)
      console.log(
        `  queue ${index}: ${packed ? "packed" : "split"} size ${size} eventIdx ${eventIdx} indirect ${indirect}`,
      );
    if (d.needsReset || d.queue(index) === null) return;
    this.models[index] = {
      driver,
      layout: driver.layout,
      packed,
      eventIdx,
      indirect,
      pending: new Map(),
      interruptsOn: true,
    };
  }

  private dropModel(index: number): void {
    this.models[index] = null;
    if (index === VIRTIO_SND_VQ_CONTROL) this.goodCtlBusy = false;
    if (index === VIRTIO_SND_VQ_TX) {
      this.goodSlots.fill(null);
      this.goodEpoch++;
    }
  }

  private taint(): void {
    this.tainted = true;
  }

  /** A buffer address for `len` bytes: the scratch area, aliased, or outside memory. */
  private addr(len: number): number {
    const r = this.r;
    const k = r.u8();
    if (k >= 244) return r.pick(OUTSIDE);
    if (k >= 232) return this.lastAddr;
    if (len > SCRATCH_END - SCRATCH_BASE) return MEM_SIZE + 64;
    if (this.scratchNext + len > SCRATCH_END) this.scratchNext = SCRATCH_BASE;
    const a = this.scratchNext + (k >= 224 ? 1 : 0);
    this.scratchNext = Math.min(SCRATCH_END, a + len + 8) & ~7;
    if (a + len > SCRATCH_END) return SCRATCH_BASE;
    this.lastAddr = a;
    return a;
  }

  /** Any ring address a random layout may name: scratch or outside memory, never another queue's area. */
  private anyAddr(): number {
    const r = this.r;
    return r.u8() < 64 ? r.pick(OUTSIDE) : SCRATCH_BASE + r.below(SCRATCH_END - SCRATCH_BASE);
  }

  /** Splits `len` bytes into buffers: usually one, sometimes many, with zero-length ones mixed in. */
  private split(len: number, maxPieces: number): Buf[] {
    const r = this.r;
    const k = r.u8();
    let pieces = k < 192 ? 1 : k < 240 ? 2 + r.below(7) : 1 + r.below(maxPieces);
    if (pieces > Math.max(1, len) + 2) pieces = Math.max(1, len) + 2;
    const out: Buf[] = [];
    let left = len;
    for (let i = 0; i < pieces; i++) {
      const n =
        i === pieces - 1 ? left : Math.min(left, r.below(Math.max(1, Math.ceil((2 * len) / pieces)) + 1));
      left -= n;
      out.push({ addr: this.addr(n), len: n });
    }
    return out;
  }

  /** Makes a chain available; null when the ring (or the queue's area) has no room. */
  private add(index: number, out: Buf[], inn: Buf[], pending: Pending, wellBehaved = false): number | null {
    const m = this.models[index];
    if (m === null || m === undefined) return null;
    const total = out.length + inn.length;
    if (total === 0) return null;
    const r = this.r;
    // An indirect table without the feature is malformed: only a misbehaving driver sends one.
    let indirect = m.indirect ? r.u8() < 160 : !wellBehaved && r.u8() >= 250;
    const size = m.layout.size;
    if (!indirect && (total > m.driver.freeCount || total > size)) {
      if (!m.indirect) return null;
      indirect = true;
    }
    if (m.driver.freeCount < 1) return null;
    let token: number;
    try {
      token = m.driver.add(out, inn, { indirect });
    } catch {
      return null; // The queue's area cannot hold the indirect table.
    }
    m.pending.set(token, pending);
    return token;
  }

  private writeBufs(bufs: readonly Buf[], data: Uint8Array): void {
    let at = 0;
    for (const b of bufs) {
      const n = Math.min(b.len, data.length - at);
      if (n > 0 && this.flat.contains(b.addr, n)) this.flat.write(b.addr, data, at, n);
      at += b.len;
    }
  }

  private kick(index: number, always: boolean): void {
    const m = this.models[index];
    if (m === null) return;
    if (always || m?.driver.kickNeeded() === true) this.device.notify(index);
  }

  // ---- control requests ---------------------------------------------------------------------

  private streamId(): number {
    const r = this.r;
    const n = this.device.streams.length;
    const k = r.u8();
    let id = k < 200 && n > 0 ? r.below(n) : k < 230 ? n + r.below(3) : r.u32();
    if (this.good && id === GOOD_STREAM) id = n > 1 ? 1 + r.below(n - 1) : 0xffff_ffff;
    return id;
  }

  private badControl(): void {
    const r = this.r;
    const codes = [
      VIRTIO_SND_R_JACK_INFO,
      VIRTIO_SND_R_JACK_REMAP,
      VIRTIO_SND_R_PCM_INFO,
      VIRTIO_SND_R_PCM_SET_PARAMS,
      VIRTIO_SND_R_PCM_PREPARE,
      VIRTIO_SND_R_PCM_RELEASE,
      VIRTIO_SND_R_PCM_START,
      VIRTIO_SND_R_PCM_STOP,
      VIRTIO_SND_R_CHMAP_INFO,
      VIRTIO_SND_R_CTL_INFO,
      VIRTIO_SND_R_CTL_ENUM_ITEMS,
      VIRTIO_SND_R_CTL_READ,
      VIRTIO_SND_R_CTL_WRITE,
      VIRTIO_SND_R_CTL_TLV_READ,
      VIRTIO_SND_R_CTL_TLV_WRITE,
      VIRTIO_SND_R_CTL_TLV_COMMAND,
    ];
    const k = r.u8();
    const code = k < 250 ? codes[k % codes.length]! : r.u32();
    let { req, room } = this.request(code);
    // Malformations: the request cut short or padded, a field overwritten, a response with no room.
    const mal = r.u8();
    if (mal >= 200) {
      switch (mal % 5) {
        case 0:
          req = req.subarray(0, r.below(req.length + 1));
          break;
        case 1: {
          const longer = new Uint8Array(req.length + 1 + r.below(16));
          longer.set(req);
          req = longer;
          break;
        }
        case 2:
          if (req.length > 0) req[r.below(req.length)] = r.u8();
          break;
        case 3:
          room = r.below(4);
          break;
        default:
          if (req.length >= 8) {
            const word = 1 + r.below(Math.floor(req.length / 4) - 1);
            new DataView(req.buffer, req.byteOffset).setUint32(4 * word, r.u32(), true);
          }
          break;
      }
      // The well-behaved stream's commands are its own: a malformed one never names it.
      if (this.good && req.length >= 8 && (code & 0xff00) === 0x0100 && code !== VIRTIO_SND_R_PCM_INFO) {
        const dv = new DataView(req.buffer, req.byteOffset);
        if (dv.getUint32(4, true) === GOOD_STREAM) dv.setUint32(4, 0xffff_ffff, true);
      }
    }
    const out = this.split(req.length, 40);
    this.writeBufs(out, req);
    if (req.length === 0 && r.bool()) out.length = 0;
    const inn = room === 0 && r.bool() ? [] : this.split(room, 40);
    const respAddr = inn[0]?.addr ?? -1;
    const token = this.add(VIRTIO_SND_VQ_CONTROL, out, inn, {
      writable: inn.reduce((a, b) => a + b.len, 0),
      onUsed: (len) => {
        let status = -1;
        if (len >= 4 && (inn[0]?.len ?? 0) >= 4 && this.flat.contains(respAddr, 4))
          status = this.flat.readU32(respAddr);
        this.note(0x1000 + ((code & 0xfff) << 4) + (status & 0xf));
      },
    });
    if (token !== null) this.kick(VIRTIO_SND_VQ_CONTROL, r.u8() < 230);
  }

  /** A well-formed request for `code`, mostly with sensible values, and the response room it needs. */
  private request(code: number): { req: Uint8Array; room: number } {
    const r = this.r;
    const d = this.device;
    const huge = (): number => r.pick([0x7fff_ffff, 0xffff_ffff, 0x1000_0000, 0x0fff_fff0, 65536]);
    const query = (total: number, size: number): { req: Uint8Array; room: number } => {
      const req = new Uint8Array(16);
      const dv = new DataView(req.buffer);
      const k = r.u8();
      const start = k < 230 ? r.below(total + 1) : r.u32();
      const count = k < 200 ? r.below(total - Math.min(start, total) + 1) : k < 230 ? huge() : r.u32();
      const sz = r.u8() < 220 ? size : r.u8() < 128 ? huge() : r.below(size * 2 + 1);
      dv.setUint32(0, code, true);
      dv.setUint32(4, start, true);
      dv.setUint32(8, count, true);
      dv.setUint32(12, sz, true);
      const need = 4 + Math.min(count * sz, 64 * 1024);
      return { req, room: r.u8() < 220 ? need : r.below(need * 2 + 1) };
    };
    switch (code) {
      case VIRTIO_SND_R_JACK_INFO:
        return query(d.jacks.length, 24);
      case VIRTIO_SND_R_PCM_INFO:
        return query(d.streams.length, 32);
      case VIRTIO_SND_R_CHMAP_INFO:
        return query(d.chmaps.length, 24);
      case VIRTIO_SND_R_CTL_INFO:
        return query(d.controls.length, r.bool() ? 96 : 92);
      case VIRTIO_SND_R_JACK_REMAP: {
        const req = new Uint8Array(16);
        const dv = new DataView(req.buffer);
        dv.setUint32(0, code, true);
        dv.setUint32(4, r.u8() < 220 ? r.below(d.jacks.length + 1) : r.u32(), true);
        dv.setUint32(8, r.u8() < 220 ? r.below(16) : r.u32(), true);
        dv.setUint32(12, r.u8() < 220 ? r.below(16) : r.u32(), true);
        return { req, room: 4 };
      }
      case VIRTIO_SND_R_PCM_SET_PARAMS:
        return { req: this.setParams(this.streamId()), room: 4 };
      case VIRTIO_SND_R_PCM_PREPARE:
      case VIRTIO_SND_R_PCM_RELEASE:
      case VIRTIO_SND_R_PCM_START:
      case VIRTIO_SND_R_PCM_STOP: {
        const req = new Uint8Array(8);
        const dv = new DataView(req.buffer);
        dv.setUint32(0, code, true);
        dv.setUint32(4, this.streamId(), true);
        return { req, room: 4 };
      }
      case VIRTIO_SND_R_CTL_ENUM_ITEMS:
      case VIRTIO_SND_R_CTL_READ:
      case VIRTIO_SND_R_CTL_WRITE:
      case VIRTIO_SND_R_CTL_TLV_READ: {
        const req = new Uint8Array(code === VIRTIO_SND_R_CTL_WRITE ? 8 + 512 : 8);
        const dv = new DataView(req.buffer);
        dv.setUint32(0, code, true);
        dv.setUint32(4, r.u8() < 230 ? r.below(d.controls.length + 1) : r.u32(), true);
        if (code === VIRTIO_SND_R_CTL_WRITE) {
          // Values near the elements' ranges: booleans, small integers, or anything.
          const mode = r.u8() % 3;
          for (let i = 0; i < 8; i++)
            dv.setInt32(
              8 + 4 * i,
              mode === 0 ? r.below(2) : mode === 1 ? r.below(120) - 10 : r.u32() | 0,
              true,
            );
        }
        const room =
          code === VIRTIO_SND_R_CTL_READ
            ? 4 + 512
            : code === VIRTIO_SND_R_CTL_ENUM_ITEMS
              ? 4 + 64 * r.below(8)
              : 4 + r.below(64);
        return { req, room: r.u8() < 220 ? room : r.below(1024) };
      }
      case VIRTIO_SND_R_CTL_TLV_WRITE:
      case VIRTIO_SND_R_CTL_TLV_COMMAND: {
        const k = r.u8();
        const length = k < 200 ? 4 * r.below(8) : k < 240 ? 4 * r.below(16385) : r.u32();
        const body = Math.min(length, 65536 + 16);
        const req = new Uint8Array(16 + body);
        const dv = new DataView(req.buffer);
        dv.setUint32(0, code, true);
        dv.setUint32(4, r.u8() < 230 ? r.below(d.controls.length + 1) : r.u32(), true);
        dv.setUint32(8, r.u8() < 128 ? 1 : r.u32(), true);
        dv.setUint32(12, length, true);
        // Only whole words fit: a body of any length may end mid-word.
        for (let i = 0; i + 4 <= Math.min(body, 16); i += 4) dv.setInt32(16 + i, r.u32() | 0, true);
        return { req, room: 4 };
      }
      default: {
        const req = new Uint8Array(4 + r.below(32));
        new DataView(req.buffer).setUint32(0, code, true);
        return { req, room: 4 + r.below(64) };
      }
    }
  }

  /** SET_PARAMS for `streamId`: mostly values the stream offers, in whole frames; sometimes huge ones. */
  private setParams(streamId: number): Uint8Array {
    const r = this.r;
    const info = this.device.streamInfos[streamId];
    const req = new Uint8Array(24);
    const dv = new DataView(req.buffer);
    const formats = info === undefined ? [VIRTIO_SND_PCM_FMT_S16] : bitsOf(info.formats);
    const rates = info === undefined ? [GOOD_RATE_INDEX] : bitsOf(info.rates);
    const format = r.u8() < 240 ? r.pick(formats) : r.u8();
    const rate = r.u8() < 240 ? r.pick(rates) : r.u8();
    const channels =
      info !== undefined && r.u8() < 240
        ? info.channelsMin + r.below(info.channelsMax - info.channelsMin + 1)
        : r.u8();
    const frame = Math.max(1, Math.ceil(frameBits(format, channels) / 8));
    const k = r.u8();
    let period = frame * r.pick([1, 2, 16, 64, 240, 480, 1024]);
    let buffer = period * (1 + r.below(8));
    if (k >= 200) {
      if (k < 215) buffer = period = r.pick([0x7ff0_0000, 0xffff_ffff, 0x0100_0000]);
      else if (k < 230) period += 1;
      else if (k < 240) buffer = 0;
      else {
        buffer = r.u32();
        period = r.u32();
      }
    }
    const fk = r.u8();
    const features = fk < 160 ? 0 : fk < 240 ? (info?.features ?? 0) : r.u32();
    dv.setUint32(0, VIRTIO_SND_R_PCM_SET_PARAMS, true);
    dv.setUint32(4, streamId, true);
    dv.setUint32(8, buffer >>> 0, true);
    dv.setUint32(12, period >>> 0, true);
    dv.setUint32(16, features >>> 0, true);
    dv.setUint8(20, channels);
    dv.setUint8(21, format);
    dv.setUint8(22, rate);
    return req;
  }

  // ---- I/O messages ---------------------------------------------------------------------------

  private ioMessage(tx: boolean): void {
    const r = this.r;
    const d = this.device;
    const index = tx ? VIRTIO_SND_VQ_TX : VIRTIO_SND_VQ_RX;
    // A stream of the queue's direction mostly (its params give the frame size), else any id.
    const ids = d.streams
      .filter((s) => (s.direction === VIRTIO_SND_D_OUTPUT) === tx && !(this.good && s.id === GOOD_STREAM))
      .map((s) => s.id);
    let id = ids.length > 0 && r.u8() < 220 ? r.pick(ids) : this.streamId();
    if (this.good && id === GOOD_STREAM) id = 0xffff_ffff;
    const params = d.streams[id]?.params ?? null;
    const frame = params === null ? 4 : Math.max(1, Math.ceil(frameBits(params.format, params.channels) / 8));
    const k = r.u8();
    let dataLen: number;
    if (k < 150) dataLen = params === null ? 4 * r.below(64) : Math.min(params.periodBytes, 64 * 1024);
    else if (k < 210) dataLen = frame * r.below(300);
    else if (k < 240) dataLen = r.below(4096);
    else dataLen = r.below(70_000);
    const hdr = new Uint8Array(4);
    new DataView(hdr.buffer).setUint32(0, id, true);
    const headerBufs = r.u8() < 230 ? [{ addr: this.addr(4), len: 4 }] : this.split(r.below(9), 4);
    this.writeBufs(headerBufs, hdr);
    const sk = r.u8();
    const statusBufs =
      sk < 220 ? [{ addr: this.addr(8), len: 8 }] : sk < 240 ? this.split(r.below(16), 4) : [];
    const dataBufs = this.split(dataLen, r.u8() < 250 ? 64 : 1100);
    const out = tx ? [...headerBufs, ...dataBufs] : headerBufs;
    const inn = tx ? statusBufs : [...dataBufs, ...statusBufs];
    const token = this.add(index, out, inn, {
      writable: inn.reduce((a, b) => a + b.len, 0),
      onUsed: (len) => this.note(0x2000 + (tx ? 0 : 0x800) + Math.min(len, 0x7ff)),
    });
    if (token !== null) this.kick(index, r.u8() < 200);
  }

  private eventBuffers(atBoot: boolean): void {
    const r = this.r;
    const m = this.models[VIRTIO_SND_VQ_EVENT];
    if (m === null || m === undefined) return;
    const n = atBoot ? m.layout.size : 1 + r.below(8);
    for (let i = 0; i < n && m.driver.freeCount > 0; i++) {
      const k = atBoot ? 0 : r.u8();
      const inn = k < 220 ? [{ addr: this.addr(8), len: 8 }] : this.split(r.below(12), 3);
      const out = k >= 245 ? [{ addr: this.addr(4), len: 4 }] : [];
      this.add(VIRTIO_SND_VQ_EVENT, out, inn, {
        writable: inn.reduce((a, b) => a + b.len, 0),
        onUsed: (len) => {
          if (len !== 0 && len !== 8) this.fail("used-entry", `event buffer used with length ${len}`);
        },
      });
    }
    this.kick(VIRTIO_SND_VQ_EVENT, true);
  }

  /** Random bytes into a ring's own areas: the ring is corrupt from here on. */
  private rawWrite(): void {
    const r = this.r;
    const m = this.models[this.queueIndex()];
    if (m === null || m === undefined) return;
    this.taint();
    const l = m.layout;
    const areas = [
      [l.descAddr, 16 * l.size],
      [l.driverAddr, 6 + 2 * l.size],
      [l.deviceAddr, 6 + 8 * l.size],
    ] as const;
    const [base, len] = r.pick(areas);
    const at = base + r.below(len);
    const n = 1 + r.below(8);
    for (let i = 0; i < n && at + i < MEM_SIZE; i++) this.flat.writeU8(at + i, r.u8());
    if (r.bool()) this.device.notify(r.u8() % 4);
  }

  // ---- the well-behaved stream --------------------------------------------------------------

  private goodAction(): void {
    if (!this.good || this.tainted) return;
    this.inGoodAction = true;
    try {
      this.goodActionIn();
    } finally {
      this.inGoodAction = false;
    }
  }

  private goodActionIn(): void {
    const r = this.r;
    switch (r.u8() % 8) {
      case 0:
        this.disruptive = true;
        this.goodEpoch++;
        this.goodControl(VIRTIO_SND_R_PCM_SET_PARAMS);
        return;
      case 1:
        this.goodControl(VIRTIO_SND_R_PCM_PREPARE);
        return;
      case 2:
        this.goodControl(VIRTIO_SND_R_PCM_START);
        return;
      case 3:
        this.goodControl(VIRTIO_SND_R_PCM_STOP);
        return;
      case 4:
        this.disruptive = true;
        this.goodEpoch++;
        this.goodControl(VIRTIO_SND_R_PCM_RELEASE);
        return;
      default: {
        const n = 1 + r.below(4);
        for (let i = 0; i < n; i++) this.goodTx();
        return;
      }
    }
  }

  private goodControl(code: number): void {
    if (this.goodCtlBusy || this.models[VIRTIO_SND_VQ_CONTROL] === null) return;
    const req = new Uint8Array(code === VIRTIO_SND_R_PCM_SET_PARAMS ? 24 : 8);
    const dv = new DataView(req.buffer);
    dv.setUint32(0, code, true);
    dv.setUint32(4, GOOD_STREAM, true);
    if (code === VIRTIO_SND_R_PCM_SET_PARAMS) {
      dv.setUint32(8, GOOD_BUFFER, true);
      dv.setUint32(12, GOOD_PERIOD, true);
      dv.setUint8(20, 2);
      dv.setUint8(21, VIRTIO_SND_PCM_FMT_S16);
      dv.setUint8(22, GOOD_RATE_INDEX);
    }
    this.flat.write(GOOD_CTL_REQ, req, 0, req.length);
    this.flat.fill(GOOD_CTL_RESP, 4, 0xee);
    const token = this.add(
      VIRTIO_SND_VQ_CONTROL,
      [{ addr: GOOD_CTL_REQ, len: req.length }],
      [{ addr: GOOD_CTL_RESP, len: 4 }],
      {
        writable: 4,
        onUsed: () => {
          this.goodCtlBusy = false;
          this.goodCtlStatus = this.flat.readU32(GOOD_CTL_RESP);
        },
      },
      true,
    );
    if (token === null) return;
    this.goodCtlBusy = true;
    if (this.trace) console.log(`  good control ${code.toString(16)}`);
    this.goodCtlStatus = -1;
    this.device.notify(VIRTIO_SND_VQ_CONTROL);
    this.drain();
    this.note(0x4000 + ((code & 0xf) << 4) + (this.goodCtlStatus & 0xf));
    if (this.trace) console.log(`  good control status ${this.goodCtlStatus}`);
  }

  private goodTx(): void {
    const m = this.models[VIRTIO_SND_VQ_TX];
    if (m === null || m === undefined || m.driver.freeCount < 3) return;
    const slot = this.goodSlots.indexOf(null);
    if (slot < 0) return;
    const seq = ++this.goodSeq;
    const base = GOOD_BASE + slot * GOOD_SLOT;
    this.fillGoodPattern(seq);
    this.flat.writeU32(base, GOOD_STREAM);
    this.flat.write(base + 8, this.goodPattern, 0, GOOD_PERIOD);
    this.flat.fill(base + 976, 8, 0xee);
    const state = this.device.streams[GOOD_STREAM]!.state;
    const msg: GoodMessage = { slot, seq, epoch: this.goodEpoch, accepted: acceptsIo(state), done: false };
    const token = this.add(
      VIRTIO_SND_VQ_TX,
      [
        { addr: base, len: 4 },
        { addr: base + 8, len: GOOD_PERIOD },
      ],
      [{ addr: base + 976, len: 8 }],
      { writable: 8, onUsed: (len) => this.goodDone(msg, len) },
      true,
    );
    if (token === null) return;
    this.goodSlots[slot] = msg;
    if (this.trace) console.log(`  good tx ${seq} token ${token} accepted ${msg.accepted}`);
    this.kick(VIRTIO_SND_VQ_TX, false);
  }

  private fillGoodPattern(seq: number): void {
    const p = this.goodPattern;
    let x = (seq * 0x9e3779b1) >>> 0 || 1;
    for (let i = 0; i < p.length; i += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      p[i] = x & 0xff;
      p[i + 1] = (x >>> 8) & 0xff;
      p[i + 2] = (x >>> 16) & 0xff;
      p[i + 3] = seq & 0xff;
    }
    p[0] = seq & 0xff;
    p[1] = (seq >>> 8) & 0xff;
  }

  private goodDone(msg: GoodMessage, len: number): void {
    msg.done = true;
    this.goodSlots[msg.slot] = null;
    const base = GOOD_BASE + msg.slot * GOOD_SLOT;
    const status = this.flat.readU32(base + 976);
    if (this.trace) console.log(`  good done ${msg.seq} len ${len} status ${status} t=${this.clock.now()}`);
    this.note(0x5000 + (status & 0xf) + (len === 8 ? 0x10 : 0));
    if (this.tainted || this.disruptive || this.goodSpoiled) return;
    if (len !== 8 || status !== VIRTIO_SND_S_OK) {
      if (msg.accepted && msg.epoch === this.goodEpoch && !this.device.needsReset) {
        this.fail(
          "lost-audio",
          `well-behaved message ${msg.seq} came back with length ${len}, status ${status}`,
        );
      }
      return;
    }
    // Played: its bytes are in the playback, in order after the last message's.
    this.fillGoodPattern(msg.seq);
    const records = this.audio.playbacksOf(GOOD_STREAM);
    const needle = Buffer.from(this.goodPattern.buffer, 0, GOOD_PERIOD);
    for (let i = this.goodSearch.record; i < records.length; i++) {
      const data = records[i]!.data.bytes();
      const hay = Buffer.from(data.buffer, data.byteOffset, data.byteLength);
      const at = hay.indexOf(needle, i === this.goodSearch.record ? this.goodSearch.offset : 0);
      if (at >= 0) {
        this.goodSearch = { record: i, offset: at + GOOD_PERIOD };
        return;
      }
    }
    this.fail("lost-audio", `well-behaved message ${msg.seq} completed OK but its audio was not played`);
  }

  // ---- invariants -----------------------------------------------------------------------------

  /** Reaps every used entry of the modelled queues: each must be a chain made available, once. */
  private drain(): void {
    for (let i = 0; i < 4; i++) {
      const m = this.models[i];
      if (m === null || m === undefined) continue;
      for (;;) {
        let used;
        try {
          used = m.driver.getUsed();
        } catch (err) {
          if (this.tainted) {
            this.dropModel(i);
            break;
          }
          this.fail("used-entry", `queue ${i}: ${describe(err)}`);
        }
        if (used === null) break;
        this.reaped[i]!++;
        if (this.trace) console.log(`  used q${i} token ${used.token} len ${used.len}`);
        const p = m.pending.get(used.token);
        m.pending.delete(used.token);
        if (this.tainted) continue;
        if (p === undefined) this.fail("used-entry", `queue ${i}: token ${used.token} used twice`);
        if (used.len > p.writable)
          this.fail("used-entry", `queue ${i}: used length ${used.len} > writable ${p.writable}`);
        p.onUsed?.(used.len);
      }
    }
  }

  private check(action: string, wanted: boolean[], interruptsBefore: number[]): void {
    const d = this.device;
    if (this.mem.outside.length > 0) this.fail("outside-memory", `${action}: ${this.mem.outside[0]}`);
    this.drain();
    if (d.needsReset) {
      this.goodEpoch++;
    } else if (!this.tainted) {
      for (let i = 0; i < 4; i++) {
        const m = this.models[i];
        if (
          wanted[i] &&
          m !== null &&
          m !== undefined &&
          this.reaped[i]! > 0 &&
          this.interrupts[i] === interruptsBefore[i]
        ) {
          this.fail(
            "lost-interrupt",
            `${action}: queue ${i} used ${this.reaped[i]} buffers without an interrupt`,
          );
        }
      }
    }
    this.checkMemory(action);
  }

  private checkMemory(action: string): void {
    const problem = deviceMemoryProblem(this.device, this.audio);
    if (problem !== null) this.fail("memory", `${action}: ${problem}`);
  }

  /** At the end: a running well-behaved stream plays everything it was given. */
  private finalCheck(): void {
    if (!this.good || this.tainted || this.goodSpoiled || this.device.needsReset) return;
    if (this.device.streams[GOOD_STREAM]!.state !== PcmState.Running) return;
    const waiting = this.goodSlots.filter(
      (m): m is GoodMessage => m !== null && m.accepted && m.epoch === this.goodEpoch,
    );
    if (waiting.length === 0 || this.models[VIRTIO_SND_VQ_TX] === null) return;
    // Every message ahead of them plays first, older ones included: those the
    // stream holds, and those still in the ring while TX kicks are suppressed
    // (taken on the voice's ticks). The ring holds at most its size.
    const tx = this.device.queue(VIRTIO_SND_VQ_TX);
    const bound = this.device.streams[GOOD_STREAM]!.pendingCount + (tx?.size ?? 0) + waiting.length + 2;
    for (let i = 0; i < bound && waiting.some((m) => !m.done); i++) this.clock.advance(GOOD_PERIOD_NS);
    this.clock.advance(2 * GOOD_PERIOD_NS);
    this.check("final drain", [false, false, false, false], this.interrupts.slice());
    const left = waiting.filter((m) => !m.done);
    if (left.length > 0)
      this.fail("lost-audio", `${left.length} well-behaved messages never completed while running`);
  }
}

/**
 * Host memory bounded by the configuration, never by a number the guest
 * chose: chains in flight, the segments they hold and the capacity kept for
 * them, the messages each stream holds, the voices the backend has open, and
 * the events waiting for a buffer. Returns what is over its bound, or null.
 */
export function deviceMemoryProblem(d: VirtioSound, audio: MemoryBackend): string | null {
  const l = d.limits;
  for (let i = 0; i < 4; i++) {
    const q = d.queue(i);
    if (q === null) continue;
    if (q.inFlight > q.size) return `queue ${i} has ${q.inFlight} chains in flight, size ${q.size}`;
    if (q instanceof SplitQueue || q instanceof PackedQueue) {
      const budget = queueBudget(d, i, q);
      if (q.segmentsHeld > budget) return `queue ${i} holds ${q.segmentsHeld} segments, budget ${budget}`;
      const capacity = 4 * budget + 16 * q.size + 4 * l.maxChain;
      if (q.segmentCapacity > capacity)
        return `queue ${i} segment capacity ${q.segmentCapacity} > ${capacity}`;
    }
  }
  for (const s of d.streams) {
    const q = d.queue(s.direction === VIRTIO_SND_D_OUTPUT ? VIRTIO_SND_VQ_TX : VIRTIO_SND_VQ_RX);
    if (s.pendingCount > (q?.size ?? 0))
      return `stream ${s.id} holds ${s.pendingCount} messages, queue size ${q?.size ?? 0}`;
  }
  const open = new Array<number>(d.streams.length).fill(0);
  for (const list of [audio.playbacks, audio.captures]) {
    for (let i = list.length - 1; i >= 0; i--) {
      const v = list[i]!;
      if (v.closed) continue;
      if (++open[v.streamId]! > 1) return `stream ${v.streamId} has more than one open voice`;
      if (v.params.bufferBytes > (l.maxBufferBytes[v.streamId] ?? 0))
        return `stream ${v.streamId} voice with a ${v.params.bufferBytes}-byte buffer`;
    }
  }
  const events = (d as unknown as { events: EventQueue | null }).events;
  if (events !== null && events.waitingCount > 256) return `${events.waitingCount} events waiting`;
  return null;
}

function queueBudget(d: VirtioSound, index: number, q: DeviceQueue): number {
  if (index === VIRTIO_SND_VQ_TX || index === VIRTIO_SND_VQ_RX) {
    const direction = index === VIRTIO_SND_VQ_TX ? VIRTIO_SND_D_OUTPUT : VIRTIO_SND_D_INPUT;
    return ioSegmentBudget(d.limits, d.streamInfos, direction, q.size);
  }
  return chainBounds({ indirect: true, eventIdx: true, maxChain: d.limits.maxChain }, q.size).maxSegments;
}

function bitsOf(mask: bigint): number[] {
  const out: number[] = [];
  for (let i = 0; i < 64; i++) if ((mask >> BigInt(i)) & 1n) out.push(i);
  return out;
}

export function rootCause(err: unknown): unknown {
  let e = err;
  for (let i = 0; i < 16 && e instanceof Error && e.cause !== undefined; i++) e = e.cause;
  return e;
}

export function describe(err: unknown): string {
  if (err instanceof Error)
    return `${err.name}: ${err.message}${err.stack ? `\n${err.stack.split("\n").slice(1, 4).join("\n")}` : ""}`;
  return String(err);
}
