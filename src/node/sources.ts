import { BytesSource, type CaptureParams, type CaptureReader, type CaptureSource } from "../audio/sources.js";
import { type WavData, type WavFileSystem, readWav } from "./wav.js";

/**
 * Records from a WAV file: its samples in order from the first frame at START
 * (each PREPARE starts again from the top), then silence. A stream whose
 * format, channels or rate differ from the file's gets the samples through a
 * StreamConverter, a block at a time.
 *
 * The file is read whole when the source is made, so an unreadable or invalid
 * file fails at once (VirtioSndError ERR_INVALID_CONFIG), not at PREPARE.
 */
export class WavSource implements CaptureSource {
  readonly path: string;
  readonly wav: WavData;
  private readonly bytes: BytesSource;

  constructor(path: string, options: { fs?: WavFileSystem } = {}) {
    this.path = path;
    this.wav = readWav(path, options);
    const { format, channels, rate } = this.wav;
    this.bytes = new BytesSource(this.wav.data, { format, channels, rate });
  }

  open(params: CaptureParams): CaptureReader {
    return this.bytes.open(params);
  }
}
