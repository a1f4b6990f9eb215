/**
 * `virtio-snd vhost-user --controls`: a guest mixer. Each stream gets a
 * volume with an ALSA dB scale and a mute switch (VIRTIO_SND_F_CTLS control
 * elements); their values become the stream's gain in a GainBackend, so what
 * the guest's `amixer` sets is what reaches the backend.
 */
import { type GainBackend, dbToGain } from "../audio/gain.js";
import type { StreamConfig } from "../device/config.js";
import { type ControlConfig, type ControlElement, muteControl, volumeControl } from "../device/controls.js";

/** The volume's range: -60 dB to 0 dB in 0.5 dB steps (raw 0..120, 120 = 0 dB, the default). */
export const MIXER_DB = { minDb: -60, maxDb: 0, stepDb: 0.5 } as const;
/** Members of each control: a stereo pair; channel c of a stream follows member c % 2. */
export const MIXER_CHANNELS = 2;

export interface StreamMixer {
  readonly streamId: number;
  readonly direction: "output" | "input";
  /** Control ids (the device's, in configuration order). */
  readonly volumeId: number;
  readonly muteId: number;
}

/**
 * The controls for `streams`: per stream, in stream order, "PCM Playback
 * Volume" and "PCM Playback Switch" (output) or "PCM Capture Volume" and
 * "PCM Capture Switch" (input), ALSA's names, so a guest's simple mixer shows
 * them as 'PCM',N with N the stream's rank among its direction's streams.
 * `first` is the id the first control will have (the controls before it).
 */
export function mixerControls(
  streams: readonly StreamConfig[],
  first = 0,
): { controls: ControlConfig[]; mixers: StreamMixer[] } {
  const controls: ControlConfig[] = [];
  const mixers: StreamMixer[] = [];
  const rank = { output: 0, input: 0 };
  streams.forEach((s, streamId) => {
    const index = rank[s.direction]++;
    const what = s.direction === "output" ? "Playback" : "Capture";
    const volumeId = first + controls.length;
    controls.push(
      volumeControl(`PCM ${what} Volume`, s.direction, { channels: MIXER_CHANNELS, index, db: MIXER_DB }),
    );
    const muteId = first + controls.length;
    controls.push(muteControl(`PCM ${what} Switch`, s.direction, { channels: MIXER_CHANNELS, index }));
    mixers.push({ streamId, direction: s.direction, volumeId, muteId });
  });
  return { controls, mixers };
}

/** A volume's raw values in dB (exact: the scale's steps are whole hundredths of a dB). */
export function volumeDb(control: ControlElement): number[] {
  const v = control.value;
  if (v.kind !== "integer") return [];
  return v.values.map(
    (raw) => (Math.round(MIXER_DB.minDb * 100) + raw * Math.round(MIXER_DB.stepDb * 100)) / 100,
  );
}

/** A switch's members: true = on (sound passes), ALSA's convention. */
export function switchOn(control: ControlElement): boolean[] {
  const v = control.value;
  return v.kind === "integer" ? v.values.map((x) => x !== 0) : [];
}

/** The linear gain per member for a stream from its volume and switch. */
export function mixerGains(volume: ControlElement, mute: ControlElement): number[] {
  const db = volumeDb(volume);
  const on = switchOn(mute);
  return Array.from({ length: Math.max(db.length, on.length) }, (_, i) =>
    on[i % on.length] === false ? 0 : dbToGain(db[i % db.length] ?? 0),
  );
}

/** Applies the stream's current controls to `gain`. */
export function applyMixer(
  gain: GainBackend,
  mixer: StreamMixer,
  control: (id: number) => ControlElement,
): void {
  gain.setGain(mixer.streamId, mixerGains(control(mixer.volumeId), control(mixer.muteId)));
}

/** "PCM Playback Volume",0: -6.00 dB, -6.00 dB (or "on, off" for a switch). */
export function describeControl(control: ControlElement): string {
  const values = /Volume$/.test(control.name)
    ? volumeDb(control).map((db) => `${db.toFixed(2)} dB`)
    : switchOn(control).map((on) => (on ? "on" : "off"));
  return `"${control.name}",${control.index}: ${values.join(", ")}`;
}
