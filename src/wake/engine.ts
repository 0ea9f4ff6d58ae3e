// Wake word behind one small interface. An engine takes fixed-size frames of
// 16 kHz samples and says which keyword (if any) ended in that frame. The
// WakeWord adapter re-frames the capture stream for it, keeps it armed
// (retrying where retrying can help), and enforces the refractory period.
import { EventEmitter } from 'node:events';

export interface WakeEngine {
  readonly frameLength: number; // samples per process() call (Porcupine: 512)
  readonly keywords: string[];
  process(frame: Int16Array): number; // keyword index, or -1
  release(): void;
}

/** Why an engine could not be made, and whether trying again can help. */
export class WakeArmError extends Error {
  constructor(message: string, readonly kind: 'permanent' | 'transient' | 'slow', readonly errorClass: string) {
    super(message);
    this.name = 'WakeArmError';
  }
}

export type WakeEngineFactory = () => WakeEngine; // throws WakeArmError

/**
 * Cuts a stream of chunks of any number of samples (even byte lengths: the
 * capture adapter guarantees whole samples) into exact frames: no sample
 * dropped or repeated at chunk boundaries.
 */
export class Reframer {
  private readonly frame: Int16Array;
  private fill = 0;
  /** Samples consumed so far (the stream position). */
  position = 0;

  constructor(readonly frameLength: number) { this.frame = new Int16Array(frameLength); }

  /** Calls onFrame(frame, endPosition) for every completed frame; the frame array is reused. */
  push(chunk: Buffer, onFrame: (frame: Int16Array, end: number) => void): void {
    for (let i = 0; i + 1 < chunk.length; i += 2) this.put(chunk.readInt16LE(i), onFrame);
  }

  private put(sample: number, onFrame: (frame: Int16Array, end: number) => void): void {
    this.frame[this.fill++] = sample;
    this.position++;
    if (this.fill === this.frameLength) {
      this.fill = 0;
      onFrame(this.frame, this.position);
    }
  }

  reset(): void { this.fill = 0; }
}

const RETRY_MS = { transient: [5_000, 15_000, 30_000, 60_000, 300_000], slow: [3_600_000] };

export interface WakeStatus { engine: string; armed: boolean; keywords: string[]; reason: string | null; detections: number }

/**
 * Events: 'armed', 'not-armed' (reason, kind), 'detected' (keyword).
 * push() returns, for a detection, the byte offset inside the chunk just
 * after the frame in which the keyword ended, so the caller can split the
 * chunk exactly there.
 */
export class WakeWord extends EventEmitter {
  private engine: WakeEngine | null = null;
  private reframer: Reframer | null = null;
  private retry: NodeJS.Timeout | null = null;
  private attempts = 0;
  private lastDetectionAt = -Infinity; // stream position, in samples
  private reason: string | null = 'not armed yet';
  detections = 0;

  constructor(
    readonly name: string,
    private readonly factory: WakeEngineFactory,
    private readonly refractorySamples: number,
  ) { super(); }

  /** Try to arm now (and keep trying in the background where that can help). */
  arm(): void {
    if (this.engine) return;
    if (this.retry) { clearTimeout(this.retry); this.retry = null; }
    try {
      this.engine = this.factory();
    } catch (e) {
      const err = e instanceof WakeArmError ? e : new WakeArmError((e as Error).message, 'transient', (e as Error).constructor?.name ?? 'Error');
      this.reason = err.message;
      const delays = err.kind === 'permanent' ? null : RETRY_MS[err.kind];
      const delay = delays ? delays[Math.min(this.attempts, delays.length - 1)] : null;
      this.attempts++;
      this.emit('not-armed', err, delay);
      if (delay !== null) {
        this.retry = setTimeout(() => { this.retry = null; this.arm(); }, delay);
        this.retry.unref();
      }
      return;
    }
    this.attempts = 0;
    this.reason = null;
    this.reframer = new Reframer(this.engine.frameLength);
    this.emit('armed', this.engine.keywords);
  }

  get armed(): boolean { return this.engine !== null; }

  push(chunk: Buffer): number | null {
    const engine = this.engine;
    const rf = this.reframer;
    if (!engine || !rf) return null;
    const chunkStart = rf.position; // samples consumed before this chunk
    let hit: number | null = null;
    rf.push(chunk, (frame, end) => {
      if (hit !== null) return;
      const k = engine.process(frame);
      if (k < 0) return;
      if (end - this.lastDetectionAt < this.refractorySamples) return; // the same utterance again
      this.lastDetectionAt = end;
      this.detections++;
      hit = (end - chunkStart) * 2;
      this.emit('detected', engine.keywords[k] ?? String(k));
    });
    return hit;
  }

  /** The mic restarted (mute, reload): frames do not continue across the gap. */
  resetStream(): void { this.reframer?.reset(); }

  status(): WakeStatus {
    return { engine: this.name, armed: this.armed, keywords: this.engine?.keywords ?? [], reason: this.reason, detections: this.detections };
  }

  release(): void {
    if (this.retry) { clearTimeout(this.retry); this.retry = null; }
    this.engine?.release();
    this.engine = null;
  }
}
