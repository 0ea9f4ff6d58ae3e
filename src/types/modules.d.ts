// node-record-lpcm16 ships no types; this is the part we use.
declare module 'node-record-lpcm16' {
  import type { ChildProcess } from 'node:child_process';
  import type { Readable } from 'node:stream';
  export interface RecordOptions {
    sampleRate?: number; channels?: number; recorder?: string; device?: string | null;
    audioType?: string; threshold?: number; endOnSilence?: boolean; silence?: string;
  }
  export interface Recording { process: ChildProcess; stream(): Readable; stop(): void }
  export function record(opts?: RecordOptions): Recording;
  const recorder: { record: typeof record };
  export default recorder;
}
