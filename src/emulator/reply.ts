/**
 * The model's turn, as the emulator sends it: a reply's 24 kHz audio in
 * modelTurn chunks paced ahead of real time (with optional network gaps),
 * its outputTranscription, usageMetadata, generationComplete, turnComplete
 * and a new resumption handle; barge-in ("interrupted"). Replies of one
 * session are queued one after another. Parrot mode and scripted tests both
 * send through here (session.sendAudio / session.interrupt); streamReply is
 * the one place the messages of a turn are sent.
 */
import { bytesForMs, msForBytes } from '../audio/pcm.js';
import type { ResolvedOptions } from './options.js';
import { OUTPUT_RATE, fragments, server } from './protocol.js';
import type { Session } from './session.js';

export type ReplyResult = 'complete' | 'interrupted' | 'closed';

export interface SendAudioOptions {
  chunkMs?: number;
  speed?: number;
  /**
   * Network gaps: before the chunk holding audio position `atMs` (ms of reply
   * audio), nothing is sent for `ms`, and the pacing resumes from there (the
   * rest of the reply comes `ms` later).
   */
  pauses?: { atMs: number; ms: number }[];
  /** The outputTranscription text for this reply (when the setup asks for it). */
  said?: string;
}

/** One session's replies: the queue, the pacing, and what stops them. */
export class Replies {
  replying = false;
  private usageFrom = 0; // received bytes already counted in a usage message
  // Bumped by interrupt()/close: a reply whose epoch is stale stops sending.
  private epoch = 0;
  private chain: Promise<unknown> = Promise.resolve();
  private wake: (() => void) | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;

  constructor(private readonly s: Session, private readonly opts: ResolvedOptions) {}

  send(pcm24k: Buffer, opts: SendAudioOptions): Promise<ReplyResult> {
    const epoch = this.epoch;
    const run = this.chain.then(() => this.streamReply(pcm24k, epoch, opts));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Stop the current (and any queued) reply and send {serverContent:{interrupted:true}}. */
  interrupt(): void {
    this.stop();
    this.s.send(server.interrupted());
    const at = Date.now();
    this.s.log('interrupted', { atByte: this.s.receivedBytes });
    this.s.announce('interrupted', at, this.s.receivedBytes);
  }

  /** Stop the current and queued replies without a word (the socket closed). */
  stop(): void {
    this.epoch++;
    this.replying = false;
    this.wakeUp();
  }

  private async streamReply(pcm: Buffer, epoch: number, opts: SendAudioOptions): Promise<ReplyResult> {
    const s = this.s;
    if (s.closed) return 'closed';
    if (epoch !== this.epoch) return 'interrupted';
    const chunkMs = opts.chunkMs ?? this.opts.replyChunkMs;
    const speed = opts.speed ?? this.opts.replySpeed;
    const chunkBytes = Math.max(2, bytesForMs(chunkMs, OUTPUT_RATE));
    this.replying = true;
    const t0 = Date.now();
    s.log('reply-start', { bytes: pcm.length });
    s.announce('reply-start', t0);
    const said = s.setup?.outputAudioTranscription || this.opts.transcribeUnasked
      ? opts.said ?? (this.opts.said ? this.opts.said(pcm, s) : `(reply ${(msForBytes(pcm.length, OUTPUT_RATE) / 1000).toFixed(1)} s)`)
      : null;
    const saidParts = said ? fragments(said) : [];
    if (saidParts.length) s.send(server.outputTranscription(saidParts.shift()));
    let result: ReplyResult = 'complete';
    const pauses = [...(opts.pauses ?? [])].sort((a, b) => a.atMs - b.atMs);
    let paused = 0; // ms of network gaps so far: the pacing shifts by them
    for (let off = 0; off < pcm.length; off += chunkBytes) {
      const endMs = msForBytes(Math.min(pcm.length, off + chunkBytes), OUTPUT_RATE);
      let gap = 0;
      while (pauses.length > 0 && pauses[0].atMs < endMs) gap += pauses.shift()!.ms;
      if (gap > 0) {
        paused += gap;
        if (!Number.isFinite(speed) || speed <= 0) await this.sleep(gap);
      }
      // Pace chunk k at t0 + k*chunkMs/speed: the service sends ahead of real
      // time and the client buffers, which is what barge-in must cope with.
      if (Number.isFinite(speed) && speed > 0) {
        const due = t0 + paused + msForBytes(off, OUTPUT_RATE) / speed;
        const wait = due - Date.now();
        if (wait > 0) await this.sleep(wait);
      }
      if (s.closed) {
        result = 'closed';
        break;
      }
      if (epoch !== this.epoch) {
        result = 'interrupted';
        break;
      }
      const chunk = pcm.subarray(off, Math.min(pcm.length, off + chunkBytes));
      s.send(server.audio(chunk));
      s.announce('reply-chunk', Date.now(), chunk.length);
    }
    if (result === 'complete' && s.closed) result = 'closed';
    if (result === 'complete' && epoch !== this.epoch) result = 'interrupted';
    if (result === 'complete') {
      for (const text of saidParts) s.send(server.outputTranscription(text));
      if (this.opts.usage) {
        const usage = this.opts.usage({ session: s, inputBytes: s.receivedBytes - this.usageFrom, replyBytes: pcm.length });
        this.usageFrom = s.receivedBytes;
        s.usageSent.push(usage);
        s.send(server.usage(usage));
        s.emu.emit('usage', s, usage);
      }
      s.send(server.generationComplete());
      s.send(server.turnComplete());
      s.sendResumptionUpdate();
    }
    // interrupt() already cleared `replying`; a newer reply may own it now.
    if (epoch === this.epoch) this.replying = false;
    s.log('reply-end', { result });
    s.announce('reply-end', result);
    return result;
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.wakeTimer = setTimeout(() => this.wakeUp(), ms);
    });
  }

  /** End a pacing sleep early (interrupt/close) so the reply loop notices at once. */
  private wakeUp(): void {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    const w = this.wake;
    this.wake = null;
    w?.();
  }
}
