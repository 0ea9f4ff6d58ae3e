// Which sample leaves the speaker when, on the monotonic clock. The player
// writes samples to the sound device in order and counts them; this turns
// the count into times, and hands out what has played as the reference
// signal that echo cancellation needs (what the speaker said, and when).
//
// The model: the device consumes samples at its rate from the moment the
// first one was written into it while it was empty (the anchor), and each
// sample is heard `outputLatencyMs` after the device consumed it (what comes
// after the ALSA queue: a sound server's mixing buffer, a DAC; calibrated per
// device kind, see audio.output_latency_ms). So sample n leaves the speaker at
//
//     anchor.atMs + (n - anchor.sample) / rate + outputLatencyMs
//
// and the device's delay for a sample written now is what is queued in it
// (samples written minus samples consumed) plus outputLatencyMs. The player
// never lets the device run dry while it is open (it feeds silence between
// replies), so the anchor holds for the whole conversation. When the device
// is dropped (barge-in) or did run dry (the daemon was stalled for longer
// than the queue), `cut` ends the old anchor and the next write sets a new one.
import { EventEmitter, on } from 'node:events';

/** Samples that left the speaker: `pcm` (s16le mono) from sample number `sample`, its first sample heard at `atMs` (monotonic). */
export interface PlayedChunk { sample: number; atMs: number; pcm: Buffer }

export class PlaybackTimeline extends EventEmitter {
  private written = 0; // samples written to the device, ever (never restarts)
  private anchor: { sample: number; atMs: number } | null = null;
  private inFlight: PlayedChunk[] = []; // written, not yet heard

  constructor(readonly rate: number, public outputLatencyMs: number) { super(); }

  /** Samples written so far (the number the next written sample gets). */
  get samplesWritten(): number { return this.written; }

  /** False until the first write after open, a drop or a run-dry: that write starts the device. */
  get anchored(): boolean { return this.anchor !== null; }

  /** When the device (re)started: the anchoring write (monotonic ms); NaN before. */
  get startedAtMs(): number { return this.anchor?.atMs ?? NaN; }

  /** When sample `n` leaves the speaker (monotonic ms); NaN before the device has started. */
  atMs(n: number): number {
    if (!this.anchor) return NaN;
    return this.anchor.atMs + ((n - this.anchor.sample) * 1000) / this.rate + this.outputLatencyMs;
  }

  /** Audio queued in the device at `now`, in ms (negative: it ran dry that long ago); 0 when not started. */
  queuedMs(now: number): number {
    if (!this.anchor) return 0;
    return this.atMs(this.written) - this.outputLatencyMs - now;
  }

  /** The device's delay for a sample written at `now`: its queue plus the output latency. */
  delayMs(now: number): number { return Math.max(0, this.queuedMs(now)) + this.outputLatencyMs; }

  /** `pcm` is being written to the device at `now`; returns when its first sample will be heard. */
  wrote(pcm: Buffer, now: number): number {
    if (!this.anchor) this.anchor = { sample: this.written, atMs: now };
    const chunk = { sample: this.written, atMs: this.atMs(this.written), pcm };
    this.inFlight.push(chunk);
    this.emit('wrote', chunk); // what will be heard, and when: the echo stage knows an echo may come before it does
    this.written += pcm.length >> 1;
    return chunk.atMs;
  }

  /** Hand out (event 'played') every chunk whose last sample has been heard by `now`. */
  advance(now: number): void {
    while (this.inFlight.length > 0) {
      const c = this.inFlight[0];
      if (c.atMs + ((c.pcm.length >> 1) * 1000) / this.rate > now) break;
      this.inFlight.shift();
      this.emit('played', c);
    }
  }

  /**
   * The device was emptied at `now` (dropped, closed) or ran dry: what was
   * heard before `now` is handed out, the rest never will be, and the next
   * write anchors the timeline again.
   */
  cut(now: number): void {
    for (const c of this.inFlight) {
      if (c.atMs >= now) break;
      const heard = Math.min(c.pcm.length >> 1, Math.floor(((now - c.atMs) * this.rate) / 1000));
      this.emit('played', heard * 2 === c.pcm.length ? c : { ...c, pcm: c.pcm.subarray(0, heard * 2) });
    }
    this.inFlight = [];
    this.anchor = null;
  }

  /** The played reference as an async iterator (for the echo canceller): ends when `signal` aborts. */
  reference(signal?: AbortSignal): AsyncIterable<PlayedChunk> {
    const events = on(this, 'played', { signal });
    return { async *[Symbol.asyncIterator]() { try { for await (const [c] of events) yield c as PlayedChunk; } catch (e) { if ((e as Error).name !== 'AbortError') throw e; } } };
  }
}
