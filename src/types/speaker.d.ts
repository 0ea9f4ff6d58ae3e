// Minimal types for the `speaker` addon (it ships none).
declare module 'speaker' {
  import { Writable } from 'node:stream';
  interface SpeakerOptions {
    channels?: number;
    bitDepth?: number;
    sampleRate?: number;
    signed?: boolean;
    float?: boolean;
    device?: string;
    samplesPerFrame?: number;
    highWaterMark?: number;
  }
  class Speaker extends Writable {
    constructor(opts?: SpeakerOptions);
    close(flush?: boolean): void;
  }
  export = Speaker;
}
