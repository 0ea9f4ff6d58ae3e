// Microphone capture: node-record-lpcm16 running arecord (16 kHz, s16le,
// mono, raw). The library does not notice or restart a recorder that dies
// (unplugged USB mic, "Device or resource busy"), so this adapter does:
// it reports the failure once per outage and retries with back-off.
import { EventEmitter } from 'node:events';
import { fileURLToPath } from 'node:url';
import recorder, { type Recording } from 'node-record-lpcm16';
import type { Mic } from '../ports.js';
import { monotonicMs } from '../clock.js';

export interface CaptureOptions { device: string; rate: number; periodMs: number }

const RECORDER = fileURLToPath(new URL('./arecord-recorder.cjs', import.meta.url));
const BACKOFF_MS = [500, 1000, 2000, 5000, 10000, 30000];
const HEALTHY_MS = 10_000; // a recorder that ran this long resets the back-off

/** Events: 'started' (arecord's pid), 'frame' (Buffer, even length), 'failed' (reason: string), 'recovered', 'overrun'. */
export class ArecordMic extends EventEmitter implements Mic {
  private rec: Recording | null = null;
  private wanted = false;
  private failures = 0;
  private startedAt = 0;
  private retry: NodeJS.Timeout | null = null;
  private odd: Buffer | null = null;
  private down = false;
  bytes = 0;
  overruns = 0;

  constructor(private opts: CaptureOptions) { super(); }

  /** Used from the next (re)start of arecord. */
  setOptions(opts: CaptureOptions): void { this.opts = opts; }

  get running(): boolean { return this.rec !== null; }
  get pid(): number | undefined { return this.rec?.process.pid; }

  start(): void {
    if (this.wanted) return;
    this.wanted = true;
    this.spawn();
  }

  stop(): void {
    this.wanted = false;
    if (this.retry) { clearTimeout(this.retry); this.retry = null; }
    const rec = this.rec;
    this.rec = null;
    this.odd = null;
    if (rec) { rec.process.removeAllListeners('close'); rec.stop(); }
  }

  private spawn(): void {
    let rec: Recording;
    try {
      rec = recorder.record({ sampleRate: this.opts.rate, channels: 1, audioType: 'raw', device: this.opts.device, recorder: RECORDER, periodMs: this.opts.periodMs } as Parameters<typeof recorder.record>[0]);
    } catch (e) {
      this.onExit((e as Error).message);
      return;
    }
    this.rec = rec;
    this.startedAt = monotonicMs();
    this.emit('started', rec.process.pid);
    let stderr = '';
    rec.process.stderr?.on('data', (d: Buffer) => {
      const text = d.toString();
      if (/overrun/i.test(text)) { this.overruns++; this.emit('overrun'); } // audio was lost: arecord was starved of CPU
      stderr = (stderr + text).slice(-500);
    });
    rec.process.on('error', (e) => { stderr += e.message; }); // e.g. ENOENT: arecord missing
    rec.stream().on('error', () => { /* reported through 'close' below */ });
    rec.stream().on('data', (chunk: Buffer) => this.data(chunk));
    rec.process.on('close', (code, signal) => {
      if (this.rec !== rec) return;
      this.rec = null;
      const why = stderr.trim().split('\n').pop() || (signal ? `killed by ${signal}` : `exit code ${code}`);
      this.onExit(why);
    });
  }

  private data(chunk: Buffer): void {
    if (this.down) { this.down = false; this.failures = 0; this.emit('recovered'); }
    if (this.odd) { chunk = Buffer.concat([this.odd, chunk]); this.odd = null; }
    if (chunk.length % 2) { this.odd = chunk.subarray(chunk.length - 1); chunk = chunk.subarray(0, chunk.length - 1); }
    if (chunk.length === 0) return;
    this.bytes += chunk.length;
    this.emit('frame', chunk);
  }

  private onExit(why: string): void {
    if (!this.wanted) return;
    if (monotonicMs() - this.startedAt > HEALTHY_MS) this.failures = 0;
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures++;
    this.down = true;
    this.emit('failed', `arecord on '${this.opts.device}' stopped: ${why}; retrying in ${delay / 1000} s`);
    this.retry = setTimeout(() => { this.retry = null; if (this.wanted) this.spawn(); }, delay);
  }
}
