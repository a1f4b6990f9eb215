// examples/mixer.ts: mixer controls the guest sees (VIRTIO_SND_F_CTLS), turned into a gain on the audio.
import {
  GainBackend,
  MemoryBackend,
  VIRTIO_SND_PCM_FMT_S16,
  VirtualClock,
  dbToGain,
  muteControl,
  volumeControl,
} from "virtio-snd";
import { SimulatedGuest, play } from "virtio-snd/testing";

const volume = volumeControl("PCM Playback Volume", "output", { db: { minDb: -60, maxDb: 0, stepDb: 0.5 } });
const mute = muteControl("PCM Playback Switch", "output");
let gain: GainBackend | undefined;
let memory: MemoryBackend | undefined;

const guest = new SimulatedGuest({
  ctls: true,
  config: { streams: [{ direction: "output" }], controls: [volume, mute] },
  audioBackend: (clock: VirtualClock) => {
    memory = new MemoryBackend({ clock });
    gain = new GainBackend(memory); // scales what the guest plays before the backend gets it
    return gain;
  },
  // What the guest's mixer set (CTL_WRITE): raw 108 on this scale is -6 dB.
  onControlChange: (change) => {
    const values = change.control.value;
    if (change.controlId === 0 && values.kind === "integer")
      gain?.setGain(
        0,
        values.values.map((raw) => dbToGain(-60 + raw * 0.5)),
      );
  },
});
guest.init();
guest.probe();

// The host sets a value: the guest hears of it through a CTL_NOTIFY event.
guest.device.setControlValue(0, [108, 108]);
gain?.setGain(0, [dbToGain(-6), dbToGain(-6)]);

const params = {
  format: VIRTIO_SND_PCM_FMT_S16,
  rate: 48000,
  channels: 2,
  periodBytes: 1920,
  periods: 4,
} as const;
play(guest, 0, new Uint8Array(new Int16Array(960 * 4).fill(10000).buffer), params);
const played = new Int16Array(memory!.playbacksOf(0)[0]!.data.bytes().slice().buffer);
console.log(`10000 at -6 dB plays as ${played[0]}`); // round(10000 * 10^(-6/20)) = 5012
