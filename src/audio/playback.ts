// Reply playback through the `speaker` addon (ALSA). The queue of audio not
// yet written lives here, not in the stream, so a barge-in can drop it; and
// only `leadMs` of audio is ever ahead of the clock in the device, so what
// is already in ALSA's buffer when we drop it is short.
import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import type { Player } from '../conversation.js';
import type SpeakerType from 'speaker';
import { monotonicMs } from '../clock.js';

const require = createRequire(import.meta.url);
const STALL_MS = 3000;
const SPEAKER_PATH = require.resolve('speaker');
let Speaker: typeof SpeakerType | null = null;
let loading: Promise<void> | null = null;

/**
 * Load the `speaker` addon safely. When it loads, it opens ALSA's `default`
 * PCM to probe formats, and if that device does not exist (no sound card,
 * unplugged USB speaker) alsa-lib asserts and the whole process aborts. So
 * a child process loads it first; only if that child survives is it loaded
 * here. Rejects with the reason otherwise (the next reply tries again).
 */
export function loadSpeakerAddon(): Promise<void> {
  if (Speaker) return Promise.resolve();
  loading ??= new Promise<void>((resolve, reject) => {
    execFile(process.execPath, ['-e', `require(${JSON.stringify(SPEAKER_PATH)})`], { timeout: 10000 }, (err, _out, stderr) => {
      loading = null;
      if (err) {
        const why = stderr.split('\n').map((l) => l.trim()).filter(Boolean).find((l) => /cannot open|Unknown PCM|No such/.test(l)) ?? `probe exited ${err.code ?? err.signal}`;
        reject(new Error(`the ALSA default playback device cannot be opened (the speaker addon probes it when loading): ${why}`));
        return;
      }
      Speaker = require('speaker') as typeof SpeakerType;
      resolve();
    });
  });
  return loading;
}

export interface PlaybackOptions { device: string; rate: number; leadMs: number; chunkMs?: number }

export class SpeakerPlayer extends EventEmitter implements Player {
  private queue: Buffer[] = [];
  private speaker: SpeakerType | null = null;
  private inflight = false;
  private inflightTimer: NodeJS.Timeout | null = null;
  private playheadEnd = 0; // wall-clock ms when everything written so far will have played
  private onDrained: (() => void) | null = null;
  private timer: NodeJS.Timeout | null = null;
  private readonly chunkBytes: number;

  constructor(private opts: PlaybackOptions) {
    super();
    this.chunkBytes = Math.round((opts.rate * (opts.chunkMs ?? 20)) / 1000) * 2;
  }

  /** New device or lead (config reload): used from the next reply on. */
  configure(opts: PlaybackOptions): void { this.opts = opts; }

  play(pcm: Buffer): void {
    if (pcm.length === 0) return;
    for (let i = 0; i < pcm.length; i += this.chunkBytes) this.queue.push(pcm.subarray(i, i + this.chunkBytes));
    this.pump();
  }

  finish(onDrained: () => void): void {
    this.onDrained = onDrained;
    this.pump();
  }

  flush(): void {
    this.queue = [];
    this.onDrained = null;
    this.stopTimer();
    this.closeDevice();
  }

  private pump(): void {
    if (this.inflight) return;
    const now = monotonicMs();
    const ahead = this.playheadEnd - now;
    if (this.queue.length === 0) {
      if (!this.onDrained) return;
      // Everything written: wait for the device to play it out, then close it.
      if (this.speaker && ahead > 0) return this.schedule(ahead);
      const done = this.onDrained;
      this.onDrained = null;
      this.closeDevice();
      done();
      return;
    }
    if (ahead > this.opts.leadMs) return this.schedule(ahead - this.opts.leadMs);
    if (!Speaker) {
      loadSpeakerAddon().then(() => this.pump(), (e: Error) => this.failed(null, e));
      return;
    }
    const chunk = this.queue.shift()!;
    const spk = this.speaker ?? this.openDevice();
    if (!spk) return;
    this.inflight = true;
    this.playheadEnd = Math.max(now, this.playheadEnd) + (chunk.length / 2 / this.opts.rate) * 1000;
    // A write never takes longer than the ALSA buffer (0.5 s) to drain; one that does is a stuck device.
    this.inflightTimer = setTimeout(() => this.stalled(spk), STALL_MS);
    spk.write(chunk, () => {
      if (!this.inflight) return; // given up on by stalled()
      this.writeEnded();
      if (this.speaker !== spk) this.release(spk); // flushed while this write was in the addon
      this.pump();
    });
  }

  private openDevice(): SpeakerType | null {
    try {
      const spk = new Speaker!({ channels: 1, bitDepth: 16, sampleRate: this.opts.rate, signed: true, device: this.opts.device, samplesPerFrame: Math.max(64, this.chunkBytes / 2) });
      spk.on('error', (e: Error) => this.failed(spk, e));
      this.speaker = spk;
      this.playheadEnd = monotonicMs();
      return spk;
    } catch (e) {
      this.failed(null, e as Error);
      return null;
    }
  }

  /** The addon's write never came back: abandon that stream (closing it mid-write can crash) and say so. */
  private stalled(spk: SpeakerType): void {
    this.writeEnded();
    if (this.speaker === spk) this.speaker = null;
    this.failed(null, new Error(`the device stopped taking audio (a write took over ${STALL_MS} ms)`));
  }

  private failed(spk: SpeakerType | null, e: Error): void {
    if (spk && spk !== this.speaker) {
      // An old stream (already flushed) failed in its last write: the addon
      // reports that with 'error' and never calls the write back.
      if (this.inflight) this.writeEnded();
      this.release(spk);
      this.pump();
      return;
    }
    this.writeEnded();
    this.queue = [];
    this.onDrained = null;
    this.speaker = null;
    this.emit('error', new Error(`cannot play on ALSA device '${this.opts.device}': ${e.message}`));
  }

  /** The write in the addon is over (answered, failed or given up on). */
  private writeEnded(): void {
    this.inflight = false;
    if (this.inflightTimer) { clearTimeout(this.inflightTimer); this.inflightTimer = null; }
  }

  private closeDevice(): void {
    const spk = this.speaker;
    this.speaker = null;
    this.playheadEnd = 0;
    // Closing while the addon is mid-write can crash it: wait for that write (<= one chunk).
    if (spk && !this.inflight) this.release(spk);
  }

  private release(spk: SpeakerType): void {
    try { spk.close(true); } catch { /* already closed */ }
  }

  private schedule(ms: number): void {
    this.stopTimer();
    this.timer = setTimeout(() => { this.timer = null; this.pump(); }, Math.max(1, Math.ceil(ms)));
  }

  private stopTimer(): void { if (this.timer) { clearTimeout(this.timer); this.timer = null; } }
}
