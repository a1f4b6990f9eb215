import type { AudioBackend } from "../audio/backend.js";
import type { Clock } from "../audio/clock.js";
import { VirtioSndError, VirtqueueBrokenError } from "../errors.js";
import type { GuestMemory } from "../memory/guest-memory.js";
import {
  VIRTIO_F_EVENT_IDX,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_RING_PACKED,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_SOUND,
  VIRTIO_SND_D_INPUT,
  VIRTIO_SND_D_OUTPUT,
  VIRTIO_SND_EVT_JACK_CONNECTED,
  VIRTIO_SND_EVT_CTL_NOTIFY,
  VIRTIO_SND_EVT_JACK_DISCONNECTED,
  VIRTIO_SND_F_CTLS,
  VIRTIO_SND_S_IO_ERR,
  VIRTIO_SND_VQ_CONTROL,
  VIRTIO_SND_VQ_EVENT,
  VIRTIO_SND_VQ_MAX,
  VIRTIO_SND_VQ_RX,
  VIRTIO_SND_VQ_TX,
} from "../spec/constants.js";
import {
  type CtlTlv,
  VIRTIO_SND_CONFIG_SIZE,
  VIRTIO_SND_PCM_XFER_SIZE,
  encodeSndConfig,
} from "../spec/structs.js";
import { InputStream } from "../stream/input-stream.js";
import { IoCompleter } from "../stream/io-completer.js";
import { OutputStream } from "../stream/output-stream.js";
import { MAX_LAG_NS, type PcmStream, type StreamEvent, type StreamHost } from "../stream/pcm-stream.js";
import { type Chain, ChainFault, readFromChain } from "../virtqueue/chain.js";
import { PackedQueue } from "../virtqueue/packed-ring.js";
import { SplitQueue } from "../virtqueue/split-ring.js";
import type { DeviceQueue, QueueLayout } from "../virtqueue/virtqueue.js";
import {
  type ChmapInfo,
  DEFAULT_CONFIG,
  type JackState,
  type SoundConfig,
  type StreamInfo,
  chmapInfo,
  jackState,
  streamInfo,
} from "./config.js";
import { ControlHandler } from "./control.js";
import {
  type DeviceLimits,
  type ResolvedLimits,
  ioSegmentBudget,
  resolveLimits,
  streamSegmentShare,
} from "./limits.js";
import { type ControlChange, ControlElements, type ControlValueInput } from "./controls.js";
import { EventQueue } from "./event-queue.js";
import { ObservedQueue } from "./observed-queue.js";
import type { DeviceObserver } from "./observer.js";
import { type DeviceSnapshot, decodeSnapshot, encodeSnapshot } from "./snapshot.js";

export interface VirtioSoundOptions {
  /** The guest's memory. A RegionMemory may be changed in place (vhost-user memory tables). */
  readonly memory: GuestMemory;
  readonly backend: AudioBackend;
  readonly clock: Clock;
  /** Streams, jacks and channel maps; DEFAULT_CONFIG when absent. */
  readonly config?: SoundConfig;
  /** Raise the used-buffer interrupt of queue `index` (the transport's job). */
  readonly interrupt: (index: number) => void;
  /**
   * The device entered an error state the driver must reset it from (a ring
   * it cannot use): the transport sets DEVICE_NEEDS_RESET and raises a
   * configuration change interrupt (virtio 1.3 §2.1.2).
   */
  readonly onNeedsReset?: (error: Error) => void;
  /** Stream state changes, xruns and backend errors. */
  readonly onStreamEvent?: (event: StreamEvent) => void;
  /** Bounds on the host memory a guest can make the device hold (./limits.ts); defaults follow from `config`. */
  readonly limits?: DeviceLimits;
  /** Offer VIRTIO_F_RING_PACKED (default true). */
  readonly packed?: boolean;
  /**
   * The guest changed a control element (CTL_WRITE, CTL_TLV_WRITE) or sent a
   * metadata command (CTL_TLV_COMMAND). Throwing refuses the request: the
   * change is undone and the guest gets VIRTIO_SND_S_IO_ERR.
   */
  readonly onControlChange?: (change: ControlChange) => void;
  /**
   * Watches the device (./observer.ts): driver and host actions, and every
   * chain taken and returned. A TraceRecorder (src/trace/) records them as a
   * trace. Costs nothing when absent.
   */
  readonly recorder?: DeviceObserver;
}

const bit = (n: number): bigint => 1n << BigInt(n);

/**
 * The virtio sound device (virtio 1.3 §5.14), transport-independent: an
 * emulator (or the vhost-user back-end) feeds it feature negotiation, queue
 * addresses and notifications, and it calls back to raise interrupts.
 *
 * Nothing the guest writes can make a method of this class throw: malformed
 * requests get the spec's status, unusable rings put the device into the
 * needs-reset state.
 */
export class VirtioSound {
  readonly deviceId = VIRTIO_ID_SOUND;
  readonly deviceFeatures: bigint;
  readonly configSize = VIRTIO_SND_CONFIG_SIZE;
  readonly streams: readonly PcmStream[];
  readonly streamInfos: readonly StreamInfo[];
  readonly jacks: readonly JackState[];
  readonly chmaps: readonly ChmapInfo[];
  /** Control elements (§5.14.6.10): read them here; set them with setControl*. */
  readonly controls: ControlElements;
  /** The bounds in force, every default filled in. */
  readonly limits: ResolvedLimits;

  private driverFeatures = 0n;
  /** Dropped messages no stream could be named for, reported once per queue. */
  private readonly unattributedDropReported: boolean[] = [false, false, false, false];
  private featuresAccepted = false;
  private readonly queues: (DeviceQueue | null)[] = new Array<DeviceQueue | null>(VIRTIO_SND_VQ_MAX).fill(
    null,
  );
  /**
   * Control and event queues with used entries not yet considered for an
   * interrupt, one bit per queue index. The I/O queues' completers keep their own.
   */
  private dirty = 0;
  /** Where TX and RX messages are completed; each batches its queue's interrupt decision. */
  private readonly txCompleter: IoCompleter;
  private readonly rxCompleter: IoCompleter;
  /**
   * Per queue: a stream of its direction ticks, so its notifications are
   * suppressed and new messages are taken on the voices' ticks (see ioTicking).
   */
  private readonly tickPolled: boolean[] = new Array<boolean>(VIRTIO_SND_VQ_MAX).fill(false);
  /** Where each queue's areas are, as the driver set them up (kept for snapshots). */
  private readonly layouts: (QueueLayout | null)[] = new Array<QueueLayout | null>(VIRTIO_SND_VQ_MAX).fill(
    null,
  );
  private events: EventQueue | null = null;
  private readonly control: ControlHandler;
  private readonly host: StreamHost;
  private readonly xfer = new Uint8Array(VIRTIO_SND_PCM_XFER_SIZE);
  private readonly xferView = new DataView(this.xfer.buffer);
  private broken: Error | null = null;
  private readonly memory: GuestMemory;

  constructor(private readonly options: VirtioSoundOptions) {
    this.memory = options.memory;
    const config = options.config ?? DEFAULT_CONFIG;
    this.streamInfos = (config.streams ?? []).map(streamInfo);
    this.jacks = (config.jacks ?? []).map(jackState);
    this.chmaps = (config.chmaps ?? []).map(chmapInfo);
    this.controls = new ControlElements(config.controls ?? []);
    this.limits = resolveLimits(options.limits, this.streamInfos);
    let features = bit(VIRTIO_F_VERSION_1) | bit(VIRTIO_F_INDIRECT_DESC) | bit(VIRTIO_F_EVENT_IDX);
    if (options.packed !== false) features |= bit(VIRTIO_F_RING_PACKED);
    if (this.controls.length > 0) features |= bit(VIRTIO_SND_F_CTLS);
    this.deviceFeatures = features;
    options.recorder?.attach({ features, config, clock: options.clock, memory: this.memory });

    this.txCompleter = new IoCompleter(this.memory, true);
    this.rxCompleter = new IoCompleter(this.memory, false);
    this.host = {
      memory: this.memory,
      backend: options.backend,
      now: () => options.clock.now(),
      flush: () => this.flush(),
      postEvent: (code, data) => this.postEvent(code, data),
      emit: (event) => this.options.onStreamEvent?.(event),
      poll: (direction) => {
        if (this.broken !== null) return;
        this.processIo(direction === VIRTIO_SND_D_OUTPUT ? VIRTIO_SND_VQ_TX : VIRTIO_SND_VQ_RX);
        // What the poll completed (a bad message answered at once) needs its interrupt too.
        this.flush();
      },
      fatal: (error) => this.fatal(error),
      runningChanged: (direction) => this.ioTicking(direction),
    };
    this.streams = this.streamInfos.map((info, i) =>
      info.direction === VIRTIO_SND_D_OUTPUT
        ? new OutputStream(i, this.host, this.txCompleter)
        : new InputStream(i, this.host, this.rxCompleter),
    );
    this.control = new ControlHandler({
      memory: this.memory,
      streamInfos: this.streamInfos,
      streams: this.streams,
      jacks: this.jacks,
      chmaps: this.chmaps,
      jackChanged: () => undefined,
      controls: this.controls,
      ctlsNegotiated: () => this.ctlsNegotiated,
      maxBufferBytes: this.limits.maxBufferBytes,
      maxControlBytes: this.limits.maxControlBytes,
    });
    this.controls.hooks = {
      notify: (controlId, mask) => {
        // The driver knows of no control elements unless it negotiated VIRTIO_SND_F_CTLS.
        if (this.ctlsNegotiated && this.broken === null)
          this.postEvent(VIRTIO_SND_EVT_CTL_NOTIFY, controlId | (mask << 16));
      },
      changed: (change) => this.options.onControlChange?.(change),
    };
  }

  // ---- configuration space (§5.14.4) ---------------------------------------------

  /** The configuration space: jacks, streams, chmaps, controls (driver-read-only). */
  readConfig(offset: number, length: number): Uint8Array {
    const cfg = new Uint8Array(VIRTIO_SND_CONFIG_SIZE);
    encodeSndConfig(new DataView(cfg.buffer), 0, {
      jacks: this.jacks.length,
      streams: this.streams.length,
      chmaps: this.chmaps.length,
      controls: this.controls.length,
    });
    const out = new Uint8Array(Math.max(0, length));
    for (let i = 0; i < out.length; i++) out[i] = cfg[offset + i] ?? 0;
    return out;
  }

  /** The configuration space is read-only for the driver; writes are ignored. */
  writeConfig(_offset: number, _data: Uint8Array): void {}

  // ---- feature negotiation (§2.2) -------------------------------------------------

  /**
   * The driver's feature selection. Returns false (FEATURES_OK must not be
   * set) when it names features the device did not offer or lacks VERSION_1.
   */
  setDriverFeatures(features: bigint): boolean {
    const refused = (features & ~this.deviceFeatures) !== 0n || (features & bit(VIRTIO_F_VERSION_1)) === 0n;
    this.options.recorder?.event({ type: "features", features, accepted: !refused });
    if (refused) {
      this.featuresAccepted = false;
      return false;
    }
    this.driverFeatures = features;
    this.featuresAccepted = true;
    return true;
  }

  get negotiatedFeatures(): bigint {
    return this.driverFeatures;
  }

  // ---- queues -----------------------------------------------------------------------

  /**
   * Queue `index` was enabled by the driver with this layout. Ring addresses
   * come from the guest: an unusable ring puts the device into needs-reset
   * rather than throwing.
   */
  setupQueue(index: number, layout: QueueLayout, base?: number): void {
    // A queue index beyond the four is not a queue: nothing to set up (the
    // transport reports num_queues; a driver that ignores it gets nothing).
    if (!Number.isInteger(index) || index < 0 || index >= VIRTIO_SND_VQ_MAX) return;
    if (this.broken !== null) return;
    if (!this.featuresAccepted) {
      // §3.1.1: queues come after FEATURES_OK. A driver that skips it gets a device that needs a reset.
      this.fatal(new VirtioSndError("ERR_INVALID_STATE", "queue enabled before feature negotiation"));
      return;
    }
    if (this.queues[index] !== null && (index === VIRTIO_SND_VQ_TX || index === VIRTIO_SND_VQ_RX)) {
      // The queue is set up again over a live one: its chains belong to the old
      // ring, whose ids mean nothing on the new one. Forget them.
      const direction = index === VIRTIO_SND_VQ_TX ? VIRTIO_SND_D_OUTPUT : VIRTIO_SND_D_INPUT;
      for (const s of this.streams) if (s.direction === direction) s.forgetPending();
    }
    try {
      this.makeQueue(index, layout, base).enableNotifications(!this.tickPolled[index]);
    } catch (err) {
      this.fatal(err);
    }
  }

  /** Builds queue `index` over `layout` with the negotiated ring features and the device's bounds; writes no guest memory. */
  private makeQueue(index: number, layout: QueueLayout, base?: number): DeviceQueue {
    const io = index === VIRTIO_SND_VQ_TX || index === VIRTIO_SND_VQ_RX;
    const size = Number.isInteger(layout.size) && layout.size > 0 ? layout.size : 1;
    const direction = index === VIRTIO_SND_VQ_TX ? VIRTIO_SND_D_OUTPUT : VIRTIO_SND_D_INPUT;
    const features = {
      indirect: (this.driverFeatures & bit(VIRTIO_F_INDIRECT_DESC)) !== 0n,
      eventIdx: (this.driverFeatures & bit(VIRTIO_F_EVENT_IDX)) !== 0n,
      maxChain: this.limits.maxChain,
      ...(io ? { maxSegments: ioSegmentBudget(this.limits, this.streamInfos, direction, size) } : {}),
    };
    if (io) {
      this.streams.forEach((s, i) => {
        if (s.direction === direction) s.segmentShare = streamSegmentShare(this.limits, i, size);
      });
    }
    const packed = (this.driverFeatures & bit(VIRTIO_F_RING_PACKED)) !== 0n;
    let queue: DeviceQueue = packed
      ? new PackedQueue(this.memory, layout, features)
      : new SplitQueue(this.memory, layout, features);
    if (base !== undefined) queue.setBase(base);
    const observer = this.options.recorder;
    if (observer !== undefined) {
      observer.event(
        base === undefined
          ? { type: "queue", index, size: queue.size }
          : { type: "queue", index, size: queue.size, base },
      );
      queue = new ObservedQueue(queue, index, observer);
    }
    this.queues[index] = queue;
    this.layouts[index] = { ...layout };
    this.ioCompleter(index)?.attach(queue);
    if (index === VIRTIO_SND_VQ_EVENT) {
      this.events = new EventQueue(
        queue,
        () => this.memory,
        () => this.markUsed(VIRTIO_SND_VQ_EVENT),
      );
    }
    return queue;
  }

  /** Stops queue `index` and returns its ring position (vhost-user GET_VRING_BASE). */
  stopQueue(index: number): number {
    const queue = this.queues[index];
    if (queue === null || queue === undefined) return 0;
    if (index === VIRTIO_SND_VQ_TX || index === VIRTIO_SND_VQ_RX) {
      // Chains the streams still hold would otherwise be lost to the driver: return them first.
      const direction = index === VIRTIO_SND_VQ_TX ? VIRTIO_SND_D_OUTPUT : VIRTIO_SND_D_INPUT;
      try {
        for (const s of this.streams) if (s.direction === direction) s.returnPending();
        this.flush();
      } catch (err) {
        this.fatal(err);
      }
    }
    const base = queue.getBase();
    this.options.recorder?.event({ type: "stop", index, base });
    this.queues[index] = null;
    this.layouts[index] = null;
    this.ioCompleter(index)?.attach(null);
    if (index === VIRTIO_SND_VQ_EVENT) this.events = null;
    return base;
  }

  queue(index: number): DeviceQueue | null {
    return this.queues[index] ?? null;
  }

  /** The driver notified queue `index` (a "kick"). */
  notify(index: number): void {
    this.options.recorder?.event({ type: "kick", index });
    if (this.broken !== null) return;
    try {
      switch (index) {
        case VIRTIO_SND_VQ_CONTROL:
          this.processControl();
          break;
        case VIRTIO_SND_VQ_EVENT:
          this.events?.collect();
          break;
        case VIRTIO_SND_VQ_TX:
        case VIRTIO_SND_VQ_RX:
          this.processIo(index);
          break;
        default:
          return;
      }
      this.flush();
    } catch (err) {
      this.fatal(err);
    }
  }

  /** Device reset (§2.4): every stream stops and forgets, queues are dropped. */
  reset(): void {
    this.options.recorder?.event({ type: "reset" });
    for (const s of this.streams) s.reset();
    this.queues.fill(null);
    this.layouts.fill(null);
    this.dirty = 0;
    this.txCompleter.attach(null);
    this.rxCompleter.attach(null);
    this.tickPolled.fill(false);
    this.events = null;
    this.driverFeatures = 0n;
    this.featuresAccepted = false;
    this.broken = null;
    this.unattributedDropReported.fill(false);
  }

  get needsReset(): boolean {
    return this.broken !== null;
  }

  // ---- snapshot ------------------------------------------------------------------------

  /**
   * The device's state as bytes (./snapshot.ts): negotiated features, queue
   * positions, stream states and parameters, pending messages with their
   * cursors, jacks, controls, waiting events. With the guest's memory saved at
   * the same moment, restoreState() on a new device (same config) carries on
   * exactly: no frame lost or repeated. Call it between two device calls, as
   * an emulator's save does. A running voice's lag behind its clock is kept,
   * so a late timer at the save costs the restored stream no time.
   */
  saveState(): Uint8Array {
    const snapshot: DeviceSnapshot = {
      card: {
        streams: this.streams.length,
        jacks: this.jacks.length,
        chmaps: this.chmaps.length,
        controls: this.controls.length,
      },
      features: this.driverFeatures,
      accepted: this.featuresAccepted,
      broken: this.broken?.message ?? null,
      queues: this.queues.map((q, i) =>
        q === null || this.layouts[i] === null ? null : { layout: this.layouts[i]!, ring: q.saveState() },
      ),
      events: this.events?.waitingEvents() ?? [],
      eventsDropped: this.events?.dropped ?? 0,
      jacks: this.jacks.map((j) => ({ connected: j.connected, defconf: j.hdaRegDefconf })),
      controls: this.controls.saveState(),
      streams: this.streams.map((s) => s.saveState()),
      dropsReported: [...this.unattributedDropReported],
    };
    return encodeSnapshot(snapshot);
  }

  /**
   * Takes a state saveState() produced, on a device built with the same
   * config over the restored guest memory. Writes nothing to guest memory;
   * opens a voice for every stream that had one (started if it was running).
   * `elapsedNs`: how long the guest's clock ran between the save and now
   * (negative when the guest will re-run time the device already played, as
   * when the device was saved after the machine); a running voice starts that
   * much further into its schedule, so its audio stays in step with the
   * guest's clock. Default 0: the guest's clock stood still as long as the
   * device. Throws ERR_INVALID_SNAPSHOT for bytes that are not such a state
   * or do not fit this device, leaving the device reset; ERR_INVALID_CONFIG
   * for an elapsedNs that is not a finite number.
   */
  restoreState(data: Uint8Array, options: { readonly elapsedNs?: number } = {}): void {
    const elapsed = options.elapsedNs ?? 0;
    if (typeof elapsed !== "number" || !Number.isFinite(elapsed)) {
      throw new VirtioSndError("ERR_INVALID_CONFIG", `elapsedNs ${String(elapsed)} is not a finite number`);
    }
    const elapsedNs = Math.max(-MAX_LAG_NS, Math.min(MAX_LAG_NS, Math.round(elapsed)));
    const s = decodeSnapshot(data);
    const card = {
      streams: this.streams.length,
      jacks: this.jacks.length,
      chmaps: this.chmaps.length,
      controls: this.controls.length,
    };
    if (JSON.stringify(s.card) !== JSON.stringify(card)) {
      throw new VirtioSndError(
        "ERR_INVALID_SNAPSHOT",
        `saved card ${JSON.stringify(s.card)} is not this device's ${JSON.stringify(card)}`,
      );
    }
    if ((s.features & ~this.deviceFeatures) !== 0n) {
      throw new VirtioSndError("ERR_INVALID_SNAPSHOT", "saved features were not offered by this device");
    }
    this.reset();
    try {
      this.driverFeatures = s.features;
      this.featuresAccepted = s.accepted;
      s.queues.forEach((q, i) => {
        if (q === null) return;
        this.makeQueue(i, q.layout).restoreState(q.ring);
      });
      this.events?.restoreWaiting(s.events, s.eventsDropped);
      s.jacks.forEach((j, i) => {
        const jack = this.jacks[i]!;
        jack.connected = j.connected;
        jack.hdaRegDefconf = j.defconf;
      });
      this.controls.restoreState(s.controls);
      s.streams.forEach((st, i) => {
        const stream = this.streams[i]!;
        const queue =
          this.queues[stream.direction === VIRTIO_SND_D_OUTPUT ? VIRTIO_SND_VQ_TX : VIRTIO_SND_VQ_RX] ?? null;
        stream.restoreState(st, queue, elapsedNs);
      });
      s.dropsReported.forEach((b, i) => (this.unattributedDropReported[i] = b));
      // The rings' saved suppression state already says what the driver sees; only the streams need telling.
      const ticking = this.streams.some((st) => st.direction === VIRTIO_SND_D_OUTPUT && st.ticking);
      this.tickPolled[VIRTIO_SND_VQ_TX] = ticking;
      for (const st of this.streams) if (st.direction === VIRTIO_SND_D_OUTPUT) st.pollOnTick = ticking;
      if (s.broken !== null) this.broken = new VirtqueueBrokenError(s.broken);
    } catch (err) {
      this.reset();
      if (err instanceof VirtioSndError && err.code === "ERR_INVALID_SNAPSHOT") throw err;
      throw new VirtioSndError(
        "ERR_INVALID_SNAPSHOT",
        `device snapshot does not fit: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }

  // ---- jacks (§5.14.6.4.3) ----------------------------------------------------------

  /** Plugs or unplugs jack `jackId`, notifying the driver. */
  setJackConnected(jackId: number, connected: boolean): void {
    this.options.recorder?.event({ type: "jack", jackId, connected });
    const jack = this.jacks[jackId];
    if (jack === undefined) throw new VirtioSndError("ERR_INVALID_STATE", `no jack ${jackId}`);
    if (jack.connected === connected) return;
    jack.connected = connected;
    this.postEvent(connected ? VIRTIO_SND_EVT_JACK_CONNECTED : VIRTIO_SND_EVT_JACK_DISCONNECTED, jackId);
    this.flush();
  }

  // ---- control elements (§5.14.6.10) --------------------------------------------------

  /**
   * Sets control element `controlId`'s value (one entry per member, or an
   * IEC958 structure) and, when it changed, notifies the driver
   * (VIRTIO_SND_EVT_CTL_NOTIFY, mask VALUE). Returns whether it changed.
   * Throws ERR_INVALID_STATE for an unknown element or a value it cannot hold.
   */
  setControlValue(controlId: number, values: ControlValueInput): boolean {
    this.options.recorder?.event({ type: "control", op: "value", controlId, value: values });
    return this.controlChange(() => this.controls.setValue(controlId, values));
  }

  /** Replaces control element `controlId`'s metadata (mask TLV). Returns whether it changed. */
  setControlTlv(controlId: number, tlv: CtlTlv | Uint8Array): boolean {
    this.options.recorder?.event({ type: "control", op: "tlv", controlId, value: tlv });
    return this.controlChange(() => this.controls.setTlv(controlId, tlv));
  }

  /** Marks control element `controlId` active or INACTIVE (mask INFO). Returns whether it changed. */
  setControlActive(controlId: number, active: boolean): boolean {
    this.options.recorder?.event({ type: "control", op: "active", controlId, value: active });
    return this.controlChange(() => this.controls.setActive(controlId, active));
  }

  private get ctlsNegotiated(): boolean {
    return (this.driverFeatures & bit(VIRTIO_SND_F_CTLS)) !== 0n;
  }

  private controlChange(change: () => boolean): boolean {
    const changed = change();
    if (changed) this.flush();
    return changed;
  }

  // ---- internals -----------------------------------------------------------------------

  private processControl(): void {
    const queue = this.queues[VIRTIO_SND_VQ_CONTROL];
    if (queue === null || queue === undefined) return;
    for (let chain = queue.pop(); chain !== null; chain = queue.pop()) {
      const written = chain.fault !== 0 ? 0 : this.control.handle(chain);
      // A RELEASE may have completed I/O messages: their interrupts go out before the answer's.
      this.flush();
      queue.push(chain, written);
      this.markUsed(VIRTIO_SND_VQ_CONTROL);
      this.flush();
    }
  }

  private processIo(index: number): void {
    const queue = this.queues[index];
    if (queue === null || queue === undefined) return;
    const isTx = index === VIRTIO_SND_VQ_TX;
    const completer = isTx ? this.txCompleter : this.rxCompleter;
    for (let chain = queue.pop(); chain !== null; chain = queue.pop()) {
      if (chain.fault !== ChainFault.None) this.reportDrop(index, chain);
      const stream = this.ioStream(chain, isTx);
      if (stream === null) {
        // Bad header or stream: IO_ERR where a status fits (§5.14.6.8), else length 0.
        completer.complete(chain, VIRTIO_SND_S_IO_ERR, 0, 0);
        continue;
      }
      stream.enqueue(chain);
    }
  }

  /** The completer of queue `index`, when it is an I/O queue. */
  private ioCompleter(index: number): IoCompleter | null {
    return index === VIRTIO_SND_VQ_TX
      ? this.txCompleter
      : index === VIRTIO_SND_VQ_RX
        ? this.rxCompleter
        : null;
  }

  /**
   * A message the device cannot parse goes back to the driver unplayed (length
   * 0, no status): say so, once per stream, so a user sees why audio is missing.
   */
  private reportDrop(index: number, chain: Chain): void {
    const reason = chainFaultReason(chain.fault, this.limits.maxChain);
    let stream: PcmStream | undefined;
    if (chain.headLen >= VIRTIO_SND_PCM_XFER_SIZE) {
      try {
        stream = this.streams[this.memory.readU32(chain.headAddr)];
      } catch {
        stream = undefined;
      }
    }
    const isTx = index === VIRTIO_SND_VQ_TX;
    if (stream !== undefined && (stream.direction === VIRTIO_SND_D_OUTPUT) === isTx) {
      stream.reportDrop(reason);
    } else if (!this.unattributedDropReported[index]) {
      this.unattributedDropReported[index] = true;
      this.options.onStreamEvent?.({
        type: "dropped",
        streamId: -1,
        time: this.options.clock.now(),
        reason: `${reason} (${isTx ? "TX" : "RX"} queue; the message names no stream)`,
      });
    }
  }

  /** The stream an I/O message is for, when its header names a stream of the right direction. */
  private ioStream(chain: Chain, isTx: boolean): PcmStream | null {
    if (chain.fault !== 0 || chain.readableBytes < VIRTIO_SND_PCM_XFER_SIZE) return null;
    let streamId: number;
    try {
      if (chain.len[0]! >= VIRTIO_SND_PCM_XFER_SIZE) {
        streamId = this.memory.readU32(chain.addr[0]!);
      } else {
        readFromChain(this.memory, chain, 0, this.xfer, 0, VIRTIO_SND_PCM_XFER_SIZE);
        streamId = this.xferView.getUint32(0, true);
      }
    } catch {
      return null;
    }
    const stream = this.streams[streamId];
    if (stream === undefined) return null;
    if ((stream.direction === VIRTIO_SND_D_OUTPUT) !== isTx) return null;
    return stream;
  }

  /**
   * While a stream of `direction` runs, its voice calls back every period and
   * takes the messages the driver queued since (as with MSG_POLLING), so the
   * driver's notifications for that queue are suppressed: a kick per period
   * would cost the host a wake-up for nothing. When no stream of the direction
   * runs any more, notifications are asked for again and the ring re-checked
   * after that, so a message queued in between is taken now, not lost.
   */
  private ioTicking(direction: number): void {
    // Playback only: TX is where a message comes every period; capture keeps its kicks.
    if (direction !== VIRTIO_SND_D_OUTPUT) return;
    const index = VIRTIO_SND_VQ_TX;
    let ticking = false;
    for (const s of this.streams) if (s.direction === direction && s.ticking) ticking = true;
    for (const s of this.streams) if (s.direction === direction) s.pollOnTick = ticking;
    if (ticking === this.tickPolled[index] || this.broken !== null) return;
    this.tickPolled[index] = ticking;
    const queue = this.queues[index];
    if (queue === null || queue === undefined) return;
    try {
      if (queue.enableNotifications(!ticking) && !ticking) this.processIo(index);
      this.flush();
    } catch (err) {
      this.fatal(err);
    }
  }

  private postEvent(code: number, data: number): void {
    // A device that needs a reset leaves its rings alone (and the driver re-reads everything after the reset).
    if (this.broken !== null) return;
    try {
      // Takes a buffer from the ring: an unusable ring puts the device into needs-reset, it does not throw.
      this.events?.post(code, data);
    } catch (err) {
      this.fatal(err);
    }
  }

  /** A buffer was pushed to control or event queue `index`: an interrupt may be due. */
  private markUsed(index: number): void {
    this.dirty |= 1 << index;
  }

  /** Raises the interrupts due for what was pushed since the last flush, in queue order. */
  private flush(): void {
    // Most calls find nothing to do (a kick that only queued messages): a test each, not a loop.
    if (this.dirty !== 0) {
      for (let i = 0; i < VIRTIO_SND_VQ_TX; i++) {
        const bit = 1 << i;
        if ((this.dirty & bit) === 0) continue;
        this.dirty &= ~bit;
        const queue = this.queues[i];
        if (queue !== null && queue !== undefined && queue.needsInterrupt()) this.raise(i);
      }
    }
    if (this.txCompleter.needsInterrupt()) this.raise(VIRTIO_SND_VQ_TX);
    if (this.rxCompleter.needsInterrupt()) this.raise(VIRTIO_SND_VQ_RX);
  }

  private raise(index: number): void {
    this.options.recorder?.event({ type: "interrupt", index });
    this.options.interrupt(index);
  }

  private fatal(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.broken !== null) return;
    this.broken =
      error instanceof VirtqueueBrokenError
        ? error
        : new VirtqueueBrokenError(`device error: ${error.message}`, { cause: error });
    for (const s of this.streams) s.reset();
    this.tickPolled.fill(false);
    this.options.recorder?.event({ type: "needs-reset", error: this.broken });
    this.options.onNeedsReset?.(this.broken);
  }
}

/** Why a malformed chain was dropped, for the drop report. */
function chainFaultReason(fault: ChainFault, maxChain: number): string {
  switch (fault) {
    case ChainFault.TooLong:
      return `dropped a message of more than ${maxChain} descriptors (limits.maxChain)`;
    case ChainFault.OverBudget:
      return "dropped a message: the queue holds as many buffers as its bound allows";
    case ChainFault.OutsideMemory:
      return "dropped a message with a buffer outside guest memory";
    case ChainFault.Loop:
      return "dropped a message whose descriptors loop";
    case ChainFault.ReadableAfterWritable:
      return "dropped a message with a device-readable buffer after a writable one";
    case ChainFault.NestedIndirect:
      return "dropped a message with a misplaced indirect table";
    case ChainFault.BadIndirectTable:
      return "dropped a message with a malformed indirect table";
    default:
      return "dropped a malformed message";
  }
}
