/**
 * An energy voice-activity detector, shared by the emulator (standing in for
 * the Live API's server VAD) and the daemon (barge-in / end of speech).
 *
 * It decides on sample positions, never on wall-clock time: audio pushed
 * faster or slower than real time gives the same events at the same sample
 * positions, and so does the same audio cut into frames of any size. It works
 * in fixed 20 ms blocks and carries a partial block over to the next push.
 */
import { rmsDbfs } from './pcm.js';

export interface VadOptions {
  /** Sample rate of the s16le mono input. */
  rate: number;
  /** A block counts as speech when its RMS is at or above this level. */
  thresholdDbfs: number;
  /** Consecutive speech needed before 'speech-start'. */
  minSpeechMs: number;
  /** Consecutive non-speech needed before 'speech-end'. */
  silenceMs: number;
}

export type VadEvent = 'speech-start' | 'speech-end' | null;

/** One state change with the sample positions it refers to (counted from construction / reset()). */
export interface VadTransition {
  type: 'speech-start' | 'speech-end';
  /** Sample index at which the VAD decided (end of the block that tipped it). */
  atSample: number;
  /**
   * Where the speech actually started (first sample of the loud run) or
   * ended (first sample of the quiet run), i.e. without the decision delay.
   */
  edgeSample: number;
}

/** Block length the VAD decides on. */
export const VAD_BLOCK_MS = 20;

export class EnergyVad {
  private readonly opts: VadOptions;
  private readonly blockBytes: number;
  private remainder: Buffer = Buffer.alloc(0);
  private processed = 0; // samples consumed into whole blocks
  private run = 0; // length in samples of the current run of blocks pointing the other way
  private runStart = 0; // first sample of that run
  private _speaking = false;

  constructor(opts: VadOptions) {
    if (!(opts.rate > 0)) throw new RangeError(`VAD rate must be > 0, got ${opts.rate}`);
    this.opts = { ...opts };
    this.blockBytes = Math.max(1, Math.round((opts.rate * VAD_BLOCK_MS) / 1000)) * 2;
  }

  get speaking(): boolean {
    return this._speaking;
  }

  /** Samples consumed so far (whole blocks only; a partial block is pending). */
  get position(): number {
    return this.processed;
  }

  /** Samples waiting in the partial block. */
  get pendingSamples(): number {
    return this.remainder.length >> 1;
  }

  /**
   * Feed audio; returns the last state change it caused, or null. A single
   * push longer than minSpeechMs + silenceMs can cause more than one change;
   * use process() when that matters (the emulator does).
   */
  push(frame: Buffer): VadEvent {
    const t = this.process(frame);
    return t.length ? t[t.length - 1].type : null;
  }

  /** Feed audio; returns every state change it caused, in order, with positions. */
  process(frame: Buffer): VadTransition[] {
    const out: VadTransition[] = [];
    const data = this.remainder.length ? Buffer.concat([this.remainder, frame]) : frame;
    let off = 0;
    while (data.length - off >= this.blockBytes) {
      const t = this.block(data.subarray(off, off + this.blockBytes));
      if (t) out.push(t);
      off += this.blockBytes;
    }
    // Copy: the caller may reuse its buffer, and an odd trailing byte is kept
    // too so that odd-length frames never shift the sample alignment.
    this.remainder = Buffer.from(data.subarray(off));
    return out;
  }

  /**
   * End of stream (e.g. the client's audioStreamEnd): if speaking, end the
   * speech now, at the start of the current quiet run if there is one, else
   * at the current position. The pending partial block is kept, not dropped.
   */
  flush(): VadTransition | null {
    if (!this._speaking) {
      this.run = 0;
      return null;
    }
    const edge = this.run > 0 ? this.runStart : this.processed;
    this._speaking = false;
    this.run = 0;
    return { type: 'speech-end', atSample: this.processed, edgeSample: edge };
  }

  reset(): void {
    this.remainder = Buffer.alloc(0);
    this.processed = 0;
    this.run = 0;
    this.runStart = 0;
    this._speaking = false;
  }

  private block(b: Buffer): VadTransition | null {
    const samples = b.length >> 1;
    const start = this.processed;
    this.processed += samples;
    const loud = rmsDbfs(b) >= this.opts.thresholdDbfs;
    // While quiet we count loud blocks, while speaking we count quiet ones;
    // a block of the other kind breaks the run.
    if (loud !== this._speaking) {
      if (this.run === 0) this.runStart = start;
      this.run += samples;
    } else {
      this.run = 0;
    }
    const needMs = this._speaking ? this.opts.silenceMs : this.opts.minSpeechMs;
    const need = Math.max(1, Math.round((needMs * this.opts.rate) / 1000));
    if (this.run > 0 && this.run >= need) {
      this._speaking = !this._speaking;
      this.run = 0;
      return {
        type: this._speaking ? 'speech-start' : 'speech-end',
        atSample: this.processed,
        edgeSample: this.runStart,
      };
    }
    return null;
  }
}
