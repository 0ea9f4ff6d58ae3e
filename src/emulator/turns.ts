/**
 * The user's turns, as the service's server-side VAD finds them: the audio a
 * session receives (kept whole, or a rolling window with recordAudio=false),
 * speech start / end from an EnergyVad run on sample positions (not arrival
 * times, so tests may send faster than real time) or from the client's
 * activityStart/activityEnd, barge-in on speech during a reply, and the
 * utterances cut from it, handed to the session (session.onUtterance).
 */
import { EnergyVad, type VadTransition } from '../audio/vad.js';
import { bytesForMs, msForBytes, resample } from '../audio/pcm.js';
import type { ResolvedOptions } from './options.js';
import { INPUT_RATE, mimeRate } from './protocol.js';
import type { Session, Utterance } from './session.js';

/** Audio kept before the detected start of speech, as the service's prefix padding does. */
export const UTTERANCE_PAD_MS = 200;

/** One session's received audio and turn detection. */
export class Turns {
  private chunks: Buffer[] = [];
  private base = 0; // absolute byte offset of chunks[0]
  private total = 0; // absolute bytes received
  private vad: EnergyVad | null = null;
  private manualActivity = false; // client-side VAD: activityStart/activityEnd mark turns
  private interruptOnSpeech = true;
  private speechStartByte: number | null = null;

  constructor(private readonly s: Session, private readonly opts: ResolvedOptions) {}

  get received(): Buffer {
    // Concatenate lazily and cache, so appends stay O(1) per message.
    if (this.chunks.length !== 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0];
  }
  get receivedBase(): number {
    return this.base;
  }
  get receivedBytes(): number {
    return this.total;
  }

  /** From the setup: who marks turns (server VAD or the client), its silence, and whether speech interrupts a reply. */
  configure(setup: any): void {
    const rtc = setup.realtimeInputConfig ?? {};
    const aad = rtc.automaticActivityDetection ?? {};
    this.manualActivity = aad.disabled === true;
    this.interruptOnSpeech = rtc.activityHandling !== 'NO_INTERRUPTION';
    this.vad = new EnergyVad({
      rate: INPUT_RATE,
      thresholdDbfs: this.opts.vad.thresholdDbfs ?? -45,
      minSpeechMs: this.opts.vad.minSpeechMs ?? 60,
      silenceMs: this.opts.vad.silenceMs ?? (typeof aad.silenceDurationMs === 'number' ? aad.silenceDurationMs : 500),
    });
  }

  /** One realtimeInput: its audio blobs, then its activity marks. */
  onRealtimeInput(ri: any, audio: { data: string; mimeType?: unknown }[]): void {
    for (const b of audio) this.onAudio(Buffer.from(b.data, 'base64'), b.mimeType);

    if (ri.activityStart && this.manualActivity) this.onSpeechStart(this.total);
    if (ri.activityEnd && this.manualActivity && this.speechStartByte !== null) {
      this.onSpeechEnd(this.speechStartByte, this.total);
    }
    if (ri.audioStreamEnd && this.vad && !this.manualActivity) {
      // The mic paused: the service flushes its VAD and ends the turn.
      const t = this.vad.flush();
      if (t) this.onVadTransition(t);
    }
  }

  private onAudio(pcm: Buffer, mimeType: unknown): void {
    const s = this.s;
    const rate = mimeRate(mimeType) ?? INPUT_RATE;
    if (rate !== INPUT_RATE) pcm = resample(pcm, rate, INPUT_RATE);
    const now = Date.now();
    s.audioMessages++;
    s.firstAudioAt ??= now;
    s.lastAudioAt = now;
    if (this.opts.recordAudio) s.receivedAt.push(now);
    this.chunks.push(pcm);
    this.total += pcm.length;
    if (this.vad && !this.manualActivity) {
      for (const t of this.vad.process(pcm)) this.onVadTransition(t);
    }
    if (!this.opts.recordAudio) this.trim();
  }

  private onVadTransition(t: VadTransition): void {
    // The VAD has seen every received byte in order, so sample n is byte 2n.
    if (t.type === 'speech-start') this.onSpeechStart(t.edgeSample * 2);
    else if (this.speechStartByte !== null) {
      const pad = bytesForMs(UTTERANCE_PAD_MS, INPUT_RATE);
      this.onSpeechEnd(Math.max(0, this.speechStartByte - pad), t.edgeSample * 2);
    }
  }

  private onSpeechStart(atByte: number): void {
    this.speechStartByte = atByte;
    this.s.log('speech-start', { atByte });
    this.s.announce('speech-start', atByte);
    // Barge-in: the service's default START_OF_ACTIVITY_INTERRUPTS.
    if (this.s.replying && this.interruptOnSpeech) this.s.interrupt();
  }

  private onSpeechEnd(startByte: number, endByte: number): void {
    this.speechStartByte = null;
    startByte = Math.max(startByte, this.base);
    const u: Utterance = {
      index: this.s.utterances.length,
      pcm: Buffer.from(this.received.subarray(startByte - this.base, Math.max(startByte, endByte) - this.base)),
      startByte,
      endByte,
      detectedAt: Date.now(),
    };
    this.s.utterances.push(u);
    this.s.log('utterance', { index: u.index, ms: msForBytes(u.pcm.length, INPUT_RATE) });
    this.s.onUtterance(u);
  }

  /** recordAudio=false: drop audio that no future utterance can need. */
  private trim(): void {
    const pad = bytesForMs(UTTERANCE_PAD_MS, INPUT_RATE);
    // A loud run not yet confirmed as speech may have started up to
    // minSpeechMs ago; keep a generous second beyond that.
    const slack = bytesForMs(UTTERANCE_PAD_MS + (this.opts.vad.minSpeechMs ?? 60) + 1000, INPUT_RATE);
    let keepFrom = this.total - slack;
    if (this.speechStartByte !== null) keepFrom = Math.min(keepFrom, this.speechStartByte - pad);
    while (this.chunks.length > 1 && this.base + this.chunks[0].length <= keepFrom) {
      this.base += this.chunks[0].length;
      this.chunks.shift();
    }
  }
}
