// The echo canceller between capture and everything that listens to the
// mic: the player's reference (24 kHz, what left the speaker and when) is
// resampled to 16 kHz onto a sample-numbered timeline (monotonic ms x 16),
// the bulk delay between it and the mic is estimated (./delay.ts), and
// SpeexDSP's adaptive filter + residual echo suppressor (./speex.ts) run on
// 10 ms frames with the reference shifted by that delay. The filter is kept
// for the canceller's life (a new conversation in the same room starts
// converged); a delay change moves the reference, not the filter, so after a
// jump the filter fits again as soon as the delay is found.
import type { Logger } from '../../log.js';
import { DelayEstimator, SampleRing } from './delay.js';
import { FilterTrial } from './trial.js';
import { EchoUnavailableError, SpeexEcho, SpeexResampler, speexdsp, speexStderrRouted } from './speex.js';

export { EchoUnavailableError };

/**
 * engine: 'speex'. delayMs: the echo path delay in use (estimated, or fixedDelayMs), null until
 * found. erleDb: mic over cleaned power while the reference plays, smoothed over ~200 ms (double
 * talk lowers it). converged: the delay is known and erleDb has held >= 15 dB for 200 ms; it
 * stays true through double talk and silence, and turns false on reset() and when the delay moves.
 * delayJumps: times the delay in use moved (by more than 10 ms) after it was first found.
 * residualDb: the reference over the cleaned power while the reference plays, smoothed the same way:
 * how far below what the speaker plays the microphone's cleaned signal is (an echo-free room: high at once).
 */
export interface EchoStats { engine: string; delayMs: number | null; erleDb: number | null; converged: boolean; framesProcessed: number; delayJumps: number; residualDb?: number | null }

export interface EchoOptions {
  engine?: 'auto' | 'speex' | 'webrtc';
  /** Length of the adaptive filter (the room's echo tail after the direct path), ms. Default 200. */
  tailMs?: number;
  log?: Logger;
  /** A known, fixed echo delay (ms): no estimation. For hardware with a fixed path, and for tests (0 = none). */
  fixedDelayMs?: number;
  /** Longest echo delay searched, ms (default MAX_DELAY_MS). */
  maxDelayMs?: number;
}

/** The longest echo delay searched by default, ms: an echo later than this is not looked for. */
export const MAX_DELAY_MS = 1200;
const RATE = 16000;
const REF_RATE = 24000;
const FRAME = 160; // 10 ms: speex's frame
const SPM = RATE / 1000; // samples per ms
/** The filter starts this long before the estimated direct path: room for the estimate's error and drift. */
const MARGIN_MS = 24;
/** A delay estimate this far from the one in use moves the reference (smaller drift the filter absorbs). */
const MOVE_MS = 10;
/** An estimate is taken when its peak stands this many times over the correlation's rms, twice in a row. */
const MIN_CONFIDENCE = 6;
/**
 * An estimate whose correlation peaks this high (or higher) elsewhere, against its own peak (DelayEstimate.ambiguity:
 * beyond 50 ms of it, on the plain correlation), is no evidence of a delay. In the echo room (20-950 ms paths): speech
 * 0.15-0.65 (median 0.28, 90% under 0.57); a steady tone (200-850 Hz, between marker tones) 1.00 for most of it (its
 * first estimates 0.44-0.74), where the peak wandered from the path by up to the edge of the search (121 -> 1 -> 944 ms).
 */
const MAX_AMBIGUITY = 0.6;
/** A line libspeexdsp printed is logged at most once this often (ms; its "acting funny" can come every 0.5 s). */
const SPEEX_PRINT_EVERY_MS = 60_000;
/** After a move, a steady estimate this far from it (but within MOVE_MS) is followed once. */
const SETTLE_MS = 3;
/** A mic frame this far from where the count says it belongs restarts the count (capture restarted, overrun). */
const MIC_RESYNC_MS = 150;
/** A reference chunk this far from where the last one ended starts a new stretch (the player re-anchored). */
const REF_RESYNC_MS = 2;
const CONVERGED_DB = 15;
/**
 * After newStream(), the kept filter is tried near the delay in use (TRIAL_LAG) on this much of the new stream's
 * echo (audible reference at that delay). Taking it down TRIAL_DB or more at the offset that fits best, it fits:
 * the delay moves by that offset, to a fraction of a sample, and Speex carries on from there. In the echo room the
 * kept filter run one ms off its offset left under 10 dB, against ~30 dB at the right one.
 */
const TRIAL_MS = 100;
/**
 * The trial looks for the kept filter's fit this far (samples) either side of the delay in use. On the simulated
 * card (PulseAudio) a new stream's path was -20 to +47 ms off the last one's (six runs).
 */
const TRIAL_LAG = 80 * SPM;
const TRIAL_DB = 10;
/**
 * ...and fits clearly better there than anywhere else (FilterTrial.ambiguity): not a tone, which fits at every
 * period (the wake chime that opens a stream: see TONE_MAX_MS).
 */
const TRIAL_AMBIGUITY = 0.85; // the chime: 0.89-0.98; speech: 0.05-0.08 in the echo room, 0.78-0.79 on the simulated card
/**
 * A tone the kept filter takes TRIAL_DB down (the wake chime that opens a stream, the error sound, a timer's beeps)
 * decides nothing: it goes on being cancelled by the kept filter, at whichever of its periods fits, and is never given
 * to Speex; once nothing is audible (the tone is over) the trial starts afresh on what plays next (the reply). A tone
 * that lasts this long without a pause is tried again as it goes (so sound that runs on from a tone is judged).
 * Held on the chime instead, as before, the chime's echo passed (1 dB down) and so did the reply's first 300 ms while
 * its delay was found; now 6-25 and 27-32 dB in the echo room.
 */
const TONE_MAX_MS = 3000;
/** A failed trial holds Speex at most this long of audible reference while the new stream's delay is found. */
const HOLD_MAX_MS = 1500;
/** A held stream's delay, once confirmed, is taken to this (0.5 ms, the estimator's 2 kHz step) when the kept filter did not fit it. */
const CONFIRM_SAMPLES = 8;
/** The fractional delay of the reference (under a sample): a Blackman-windowed sinc this long. */
const FRAC_TAPS = 16;
/** A reference sample above this (-72 dBFS) is sound the mic may hear. */
const SOUND = 8;
/** The cleaned mic lags the mic by this many samples (50 ms): one speex frame plus 40 ms of waiting for the reference. */
const LATENCY = FRAME + 40 * SPM;

export class EchoCanceller {
  readonly engine: string;
  private readonly log?: Logger;
  private readonly aec: SpeexEcho;
  private readonly filterLength: number; // samples
  private lastSound = -Infinity; // 16 kHz index just past the last reference sample above SOUND
  private readonly fixedDelay: number | null;
  private readonly est: DelayEstimator | null;
  private readonly ref = new SampleRing(1 << 17); // 16 kHz reference, ~8 s
  private readonly up: SpeexResampler; // 24 -> 16 kHz
  private readonly refDown: SpeexResampler; // 16 -> 2 kHz (estimator)
  private readonly micDown: SpeexResampler; // 16 -> 2 kHz (estimator)
  private refNext: number | null = null; // 16 kHz index where the next contiguous reference sample goes
  private refNextMs: number | null = null; // where the next contiguous reference chunk starts (its atMs)
  private refDownNext = 0;
  private micNext: number | null = null; // 16 kHz index of the next mic sample
  private micDownNext = 0;
  private inQ = new Int16Array(FRAME);
  private inAt = 0; // 16 kHz index of inQ[0]
  private pending: { at: number; x: Int16Array; used: number }[] = []; // mic not yet run through speex
  private pendingN = 0;
  private outQ: Int16Array;
  private outStart = 0; private outEnd = 0;
  private readonly refFrame = new Int16Array(FRAME);
  private readonly outFrame = new Int16Array(FRAME);
  private delaySamples: number | null = null; // the echo delay in use, whole samples ...
  private frac = 0; // ... and its fraction (-0.5..0.5], found by a new stream's trial: the reference is delayed by it too (FRAC_TAPS)
  private fracTaps: Float64Array | null = null;
  private fracSeg = new Float32Array(0);
  private candidate: number | null = null;
  private lastAmbiguousMs = NaN;
  /** Times Speex's filter was reset because it added echo (see filterReset). */
  filterResets = 0;
  private readonly printed = new Map<string, { at: number; since: number }>(); // speexPrinted's: when each text was last logged
  /** Estimates set aside as ambiguous (MAX_AMBIGUITY), counted once per run of them near one lag. */
  ambiguousEstimates = 0;
  private settleLeft = 0; // estimates left in which a small correction follows a move
  private settle: { lag: number; n: number } | null = null;
  private micPow = 0; private outPow = 0; private refPow = 0; private powFrames = 0;
  private convergedFor = 0;
  // newStream(): 'trial' while the kept filter is tried at the delay in use (TRIAL_MS); 'tone' while a tone it cancels
  // plays (tried again after it); 'held' when it did not fit: Speex not run (the filter kept as it is) until the delay
  // is found on this stream.
  private hold: 'off' | 'trial' | 'tone' | 'held' = 'off';
  private holdFrames = 0; // audible frames seen while held (HOLD_MAX_MS)
  private trialMic = 0; private trialOut = 0; private trialFrames = 0; // the trial's mic and output power, over frames of audible reference
  private trial: FilterTrial | null = null; // the kept filter, tried on the new stream
  private trialLog: { at: number; x: Int16Array }[] = []; // the trial's mic frames, replayed into Speex at the delay found
  private trialFrom = Infinity; // 16 kHz index of the new stream's first reference sample (set by its first stretch)
  private toneFrames = 0; // frames of the tone playing now, cancelled by the kept filter (TONE_MAX_MS)
  private _stats: EchoStats;
  private closed = false;

  private constructor(opts: EchoOptions) {
    this.log = opts.log;
    const tailMs = opts.tailMs ?? 200;
    if (!(tailMs >= 20 && tailMs <= 1000)) throw new RangeError(`tailMs ${tailMs} out of range (20..1000)`);
    this.filterLength = Math.round(((tailMs + MARGIN_MS) * SPM) / FRAME) * FRAME;
    this.aec = new SpeexEcho(FRAME, this.filterLength, RATE, (text) => this.speexPrinted(text));
    this.engine = 'speex';
    this.fixedDelay = opts.fixedDelayMs === undefined ? null : Math.round(opts.fixedDelayMs * SPM);
    this.delaySamples = this.fixedDelay;
    this.est = this.fixedDelay === null ? new DelayEstimator(opts.maxDelayMs ?? MAX_DELAY_MS) : null;
    this.up = new SpeexResampler(REF_RATE, RATE, 10); // the reference must match what the speaker made: best quality
    this.refDown = new SpeexResampler(RATE, 2000, 3);
    this.micDown = new SpeexResampler(RATE, 2000, 3);
    this.outQ = new Int16Array(1 << 17);
    // A fixed latency: frames of any length in, 10 ms frames to speex, run as late as the
    // output allows so the player's reference (handed over ~10-30 ms after it was heard)
    // is there even for the shortest echo paths.
    this.outEnd = LATENCY;
    this._stats = { engine: this.engine, delayMs: this.fixedDelay === null ? null : opts.fixedDelayMs!, erleDb: null, converged: false, framesProcessed: 0, delayJumps: 0 };
  }

  /** Throws EchoUnavailableError (naming the library and the package) when no engine can run. */
  static open(opts: EchoOptions = {}): EchoCanceller {
    const engine = opts.engine ?? 'auto';
    if (engine === 'webrtc') throw new EchoUnavailableError('the WebRTC echo engine is not built into this version; use engine "speex" or "auto" (SpeexDSP, Debian package libspeexdsp1)');
    speexdsp(); // throws with the package name when libspeexdsp is missing
    const c = new EchoCanceller(opts);
    opts.log?.info({ engine: c.engine, tailMs: opts.tailMs ?? 200, fixedDelayMs: opts.fixedDelayMs, speexStderrRouted: speexStderrRouted() }, 'echo canceller ready');
    return c;
  }

  /** A snapshot; `converged` false is the integrator's cue for half duplex. */
  get stats(): EchoStats { return { ...this._stats }; }

  /** What left the speaker: 24 kHz s16le mono, first sample heard at atMs (monotonic ms); gaps between chunks are silence. */
  pushReference(chunk: { atMs: number; pcm: Buffer }): void {
    if (this.closed) return;
    const n24 = chunk.pcm.length >> 1;
    if (n24 === 0) return;
    if (this.refNextMs === null || Math.abs(chunk.atMs - this.refNextMs) > REF_RESYNC_MS) {
      // A new stretch after silence (or a re-anchored player): gaps are silence.
      this.flushReference();
      if (this.hold === 'trial' && this.trialFrom === Infinity) this.trialFrom = Math.round(chunk.atMs * SPM); // the new stream's
      this.up.reset();
      this.refDown.reset();
      this.refNext = Math.round(chunk.atMs * SPM);
      this.refDownNext = Math.floor(this.refNext / 8);
    }
    this.refNextMs = chunk.atMs + (n24 * 1000) / REF_RATE;
    this.writeReference(this.up.process(samples(chunk.pcm)));
  }

  /** The resamplers hold the last few samples of a stretch back (their filters' length): push them out with silence. */
  private flushReference(): void {
    if (this.refNext === null) return;
    this.writeReference(this.up.process(new Int16Array(REF_RATE / 100)));
  }

  private writeReference(x: Int16Array): void {
    if (this.refNext === null) return;
    for (let i = x.length - 1; i >= 0; i--) if (x[i] > SOUND || x[i] < -SOUND) { this.lastSound = Math.max(this.lastSound, this.refNext + i + 1); break; }
    this.ref.write(this.refNext, x);
    this.refNext += x.length;
    if (this.est) {
      const d = this.refDown.process(x);
      this.est.pushRef(this.refDownNext, d);
      this.refDownNext += d.length;
    }
  }

  /**
   * A 16 kHz s16le mono mic frame (any length), its first sample captured at about atMs (the
   * count of samples is trusted over the stamps; a stamp 150 ms off the count restarts it).
   * Returns as many cleaned samples, in order, `latencyMs` (50 ms) behind the mic.
   */
  processMic(frame: Buffer, atMs: number): Buffer {
    const n = frame.length >> 1;
    const out = Buffer.alloc(n * 2);
    if (this.closed || n === 0) return out;
    const at = Math.round(atMs * SPM);
    if (this.micNext === null || Math.abs(at - this.micNext) > MIC_RESYNC_MS * SPM) {
      if (this.micNext !== null) this.log?.debug({ offMs: Math.round((at - this.micNext) / SPM) }, 'echo canceller: mic timestamps jumped; recounting');
      this.micNext = at;
      this.micDown.reset();
      this.micDownNext = Math.floor(at / 8);
    }
    const x = samples(frame);
    if (this.est) {
      const d = this.micDown.process(x);
      this.est.pushMic(this.micDownNext, d);
      this.micDownNext += d.length;
      const e = this.est.update();
      if (e) this.onEstimate(e.lagMs, e.confidence, e.ambiguity);
    }
    this.pending.push({ at: this.micNext, x: Int16Array.from(x), used: 0 });
    this.pendingN += n;
    this.micNext += n;
    // Run speex on whole frames, only as many as this call's output needs (see LATENCY).
    while (this.outEnd - this.outStart < n) {
      if (this.pendingN < FRAME) throw new Error('echo canceller: internal latency accounting broke');
      let k = 0;
      while (k < FRAME) {
        const p = this.pending[0];
        if (k === 0) this.inAt = p.at + p.used;
        const take = Math.min(FRAME - k, p.x.length - p.used);
        this.inQ.set(p.x.subarray(p.used, p.used + take), k);
        k += take; p.used += take;
        if (p.used === p.x.length) this.pending.shift();
      }
      this.pendingN -= FRAME;
      this.runFrame();
    }
    for (let i = 0; i < n; i++) out.writeInt16LE(this.outQ[(this.outStart + i) & (this.outQ.length - 1)], 2 * i);
    this.outStart += n;
    return out;
  }

  /** How far the cleaned audio lags the mic, ms (fixed). */
  get latencyMs(): number { return LATENCY / SPM; }

  private runFrame(): void {
    const d = this.delaySamples === null ? 0 : Math.max(0, this.delaySamples - MARGIN_MS * SPM);
    // Nothing the speaker said reaches this frame through the filter's window: no echo to
    // cancel, and the mic passes as it is (most of the day, between conversations, costs nothing).
    const quiet = this.inAt - d - this.filterLength > this.lastSound;
    // Held (a new playback stream on which the kept filter did not fit): the mic passes and Speex does not adapt
    // to an echo at an offset its filter was not learnt for.
    if (this.hold === 'held' && !quiet && ++this.holdFrames * FRAME > HOLD_MAX_MS * SPM) {
      this.release();
      this.log?.info({ delayMs: this._stats.delayMs }, 'echo delay not confirmed on the new stream: cancelling with the one in use');
    }
    const held = this.hold === 'held' && !quiet;
    if (quiet && this.hold === 'tone') { this.hold = 'trial'; this.startTrial(); } // the tone is over: the trial starts afresh on what plays next
    if (!quiet) {
      this.readRef(this.inAt - d, this.refFrame);
      // The trial starts with the new stream's reference: until then, what is in the mic is the last stream's echo.
      if (this.hold === 'trial' && this.inAt - d + FRAME > this.trialFrom) this.trialFrame(d);
      else if (this.hold === 'tone') this.toneFrame(d);
      else if (!held) {
        { const by = this.aec.process(this.inQ, this.refFrame, this.outFrame); if (by) this.filterReset(by); }
        // Never louder than the mic (as in the trial): a kept filter run where the stream is not heard, or at a delay
        // that is not this stream's, adds the echo it predicts (seen: a user's words 1.6 dB up, in a room that did not
        // hear the reply, once a stream's hold ran out at the delay in use).
        let pm = 0, po = 0;
        for (let i = 0; i < FRAME; i++) { pm += this.inQ[i] ** 2; po += this.outFrame[i] ** 2; }
        if (po > pm) this.outFrame.set(this.inQ);
      }
    }
    const y = quiet || held ? this.inQ : this.outFrame;
    const mask = this.outQ.length - 1;
    if (this.outEnd - this.outStart + FRAME > this.outQ.length) throw new Error('echo canceller: output queue overflow');
    for (let i = 0; i < FRAME; i++) this.outQ[(this.outEnd + i) & mask] = y[i];
    this.outEnd += FRAME;
    this._stats.framesProcessed++;
    if (!quiet) this.track(y);
  }

  /** One frame of a new stream's trial of the kept filter (see TRIAL_MS): when enough echo has been seen, it holds or not. */
  private trialFrame(d: number): void {
    const x = this.inQ;
    this.trial!.frameOut(x, this.inAt - d, this.outFrame);
    this.trialLog.push({ at: this.inAt, x: Int16Array.from(x) });
    let pr = 0, pm = 0, po = 0;
    for (let i = 0; i < FRAME; i++) { pr += this.refFrame[i] ** 2; pm += x[i] ** 2; po += this.outFrame[i] ** 2; }
    // Never louder than the mic: the first frames' fit rests on little data (seen: a frame 12 dB over the mic).
    if (po > pm) { this.outFrame.set(x); po = pm; }
    if (pr / FRAME < 100 ** 2) { // reference below -50 dBFS: no echo to judge it by
      // A reply too quiet to judge (or mostly pauses): decided on what was seen, at most HOLD_MAX_MS of it.
      if (this.trialLog.length * FRAME > HOLD_MAX_MS * SPM) this.endTrial();
      return;
    }
    this.trialMic += pm; this.trialOut += po;
    // A whole TRIAL_MS, not an early yes: over 20-30 ms a voiced reply fits the kept filter at a pitch period off
    // too (seen on the simulated card: 11 dB at 23 ms off the true path).
    if (++this.trialFrames * FRAME < TRIAL_MS * SPM) return;
    this.endTrial();
  }

  /** A frame of the tone that failed the trial (see TONE_MAX_MS): the kept filter cancels it, Speex does not see it. */
  private toneFrame(d: number): void {
    const x = this.inQ;
    this.trial!.frameOut(x, this.inAt - d, this.outFrame);
    let pm = 0, po = 0;
    for (let i = 0; i < FRAME; i++) { pm += x[i] ** 2; po += this.outFrame[i] ** 2; }
    if (po > pm) this.outFrame.set(x);
    if (++this.toneFrames * FRAME < TONE_MAX_MS * SPM) return;
    this.hold = 'trial';
    this.startTrial();
    this.log?.debug({}, 'a tone on the new stream goes on: the kept filter tried again');
  }

  private endTrial(): void {
    const trial = this.trial!;
    const db = Math.round(10 * Math.log10((this.trialMic + 1) / (this.trialOut + 1)) * 10) / 10;
    const lag = trial.offset, ambiguity = Math.round(trial.ambiguity * 100) / 100;
    const delayMs = this._stats.delayMs === null ? null : Math.round(this._stats.delayMs);
    const log = this.trialLog;
    this.trialLog = [];
    this.trial = null;
    const tone = db >= TRIAL_DB && ambiguity >= TRIAL_AMBIGUITY;
    if (tone) {
      this.hold = 'tone';
      this.toneFrames = 0;
      this.trial = trial; // it goes on cancelling the tone (toneFrame); its frames are not given to Speex
      this.log?.info({ delayMs, reductionDb: db, ambiguity }, 'the kept echo filter cancels a tone on the new stream: tried again after it');
      return;
    }
    if (db >= TRIAL_DB && !tone) {
      this.hold = 'off';
      // The new delay to the fraction of a sample: the kept filter fits only where it was learnt (half a sample off, under 1 dB).
      const total = this.delaySamples! + this.frac + lag;
      const whole = Math.round(total);
      if (whole !== this.delaySamples) this.moveTo(whole, 0, 'echo delay moved with the new stream (the kept filter fits there)');
      this.setFraction(total - whole);
      this.log?.info({ delayMs: Math.round((total / SPM) * 100) / 100, offsetSamples: Math.round(lag * 100) / 100, reductionDb: db, ambiguity }, 'echo delay holds on the new stream: the kept filter cancels it');
      // Speex catches up on the trial's frames at the delay found (its outputs were already handed on).
      const d = Math.max(0, this.delaySamples! - MARGIN_MS * SPM);
      const scratch = new Int16Array(FRAME);
      for (const { at, x } of log) { this.readRef(at - d, this.refFrame); const by = this.aec.process(x, this.refFrame, scratch); if (by) this.filterReset(by); }
    } else {
      this.hold = 'held';
      this.holdFrames = 0;
      this.log?.info({ delayMs, reductionDb: db, ambiguity }, 'the kept echo filter does not fit the new stream: paused until its delay is found');
    }
  }

  /**
   * Speex's filter was adding echo and was reset (SpeexEcho.process): 'here', its output over the mic's power for
   * 250 ms (a delay that moved under it, a stream not heard), logged now; or by libspeexdsp itself ("acting funny":
   * its own test, on its filter's powers), whose line speexPrinted logs.
   */
  private filterReset(by: 'here' | 'speexdsp'): void {
    this.filterResets++;
    this._stats.converged = false;
    this.convergedFor = 0;
    if (by === 'here') this.log?.warn({ delayMs: this._stats.delayMs === null ? null : Math.round(this._stats.delayMs), resets: this.filterResets }, 'echo filter reset: it was adding echo (its output over the microphone\'s power for 250 ms)');
  }

  /**
   * What libspeexdsp printed (on C's stderr, routed away from the journal: speex.ts, StderrTrap), as a JSON line:
   * once per text per SPEEX_PRINT_EVERY_MS, with how many times it was printed in between (not logged).
   */
  private speexPrinted(text: string): void {
    const now = performance.now();
    const seen = this.printed.get(text);
    if (seen && now - seen.at < SPEEX_PRINT_EVERY_MS) { seen.since++; return; }
    if (!seen && this.printed.size >= 8) this.printed.clear(); // a few texts: its warnings are fixed strings
    this.printed.set(text, { at: now, since: 0 });
    const d = this._stats?.delayMs; // (not set yet while the constructor makes the SpeexEcho)
    this.log?.warn({ delayMs: d == null ? null : Math.round(d), notLogged: seen?.since ?? 0 }, `speexdsp: ${text}`);
  }

  /** ERLE while the reference plays: mic power over output power (`y`: what was handed on), smoothed over ~200 ms. */
  private track(y: Int16Array): void {
    let pr = 0, pm = 0, po = 0;
    for (let i = 0; i < FRAME; i++) { pr += this.refFrame[i] ** 2; pm += this.inQ[i] ** 2; po += y[i] ** 2; }
    if (pr / FRAME < 100 ** 2) return; // reference below -50 dBFS: nothing to cancel
    const a = 0.95;
    this.micPow = a * this.micPow + (1 - a) * pm;
    this.outPow = a * this.outPow + (1 - a) * po;
    this.refPow = a * this.refPow + (1 - a) * pr;
    this.powFrames++;
    if (this.powFrames < 10) return;
    const erle = 10 * Math.log10((this.micPow + 1) / (this.outPow + 1));
    this._stats.erleDb = Math.round(erle * 10) / 10;
    this._stats.residualDb = Math.round(10 * Math.log10((this.refPow + 1) / (this.outPow + 1)) * 10) / 10;
    const located = this.delaySamples !== null;
    if (located && erle >= CONVERGED_DB) { if (++this.convergedFor >= 20) this._stats.converged = true; } else this.convergedFor = 0;
  }

  private onEstimate(lagMs: number, confidence: number, ambiguity: number): void {
    if (confidence < MIN_CONFIDENCE || (this.est?.learnt ?? 0) < 3) { this.candidate = null; return; }
    // Another lag fits near as well (a tone, a chime, a sung note: periodic sound fits at every period): the peak says
    // nothing, and the delay in use (and the filter learnt at it) stays. Not a candidate either, so two ambiguous
    // estimates that happen to agree do not move it.
    if (ambiguity >= MAX_AMBIGUITY) {
      if (this.candidate !== null || Math.abs(lagMs - this.lastAmbiguousMs) > MOVE_MS) this.ambiguousEstimates++;
      this.lastAmbiguousMs = lagMs;
      this.candidate = null;
      return;
    }
    const lag = Math.round(lagMs * SPM);
    const cur = this.delaySamples;
    // Once the echo of the last audible reference (at the delay in use) is over, what the mic hears is the room
    // (after a barge-in: the user), and a far lag is that against an older stretch of reply: seen here, the delay
    // moved from ~135 to ~1100 ms while the user talked on after the cut, and the next reply had to find it again.
    const echoOver = cur !== null && this.micNext !== null && this.micNext - cur > this.lastSound + this.filterLength;
    if (this.hold === 'trial' || this.hold === 'tone') { this.candidate = null; return; } // the trial decides first (see endTrial)
    if (this.hold !== 'off' && cur !== null) {
      if (echoOver) { this.candidate = null; return; }
      // A new stream's delay, from its own echo: seen twice in a row within SETTLE_MS, then taken to the half ms
      // (the kept filter fits only at the offset it was learnt at: 1 ms off, it failed the trial), and Speex runs.
      if (this.candidate === null || Math.abs(lag - this.candidate) > SETTLE_MS * SPM) { this.candidate = lag; return; }
      const seen = Math.round((lag + this.candidate) / 2);
      this.candidate = null;
      this.release();
      if (Math.abs(seen - cur) >= CONFIRM_SAMPLES) {
        if (Math.abs(seen - cur) > MOVE_MS * SPM) this._stats.delayJumps++;
        this.moveTo(seen, confidence, 'echo delay moved with the new stream');
        this.settleLeft = 16;
        this.settle = null;
      } else this.log?.info({ delayMs: Math.round(cur / SPM), seenMs: Math.round(seen / SPM) }, 'echo delay confirmed on the new stream');
      return;
    }
    if (cur !== null && Math.abs(lag - cur) <= MOVE_MS * SPM) {
      this.candidate = null;
      // Settling: right after a move the estimate may still be a few ms off (the old path's
      // correlation fading out); the filter fits best where it was before, at the same offset
      // from the direct path, so a steady estimate >= SETTLE_MS off is followed once.
      if (this.settleLeft > 0) {
        this.settleLeft--;
        if (Math.abs(lag - cur) >= SETTLE_MS * SPM && this.settle !== null && Math.abs(lag - this.settle.lag) <= SPM) {
          if (++this.settle.n >= 4) { this.moveTo(lag, confidence, 'echo delay settled'); this.settleLeft = 0; }
        } else this.settle = Math.abs(lag - cur) >= SETTLE_MS * SPM ? { lag, n: 1 } : null;
      }
      return;
    }
    if (echoOver) { this.candidate = null; return; }
    // A new delay must be seen twice in a row (within MOVE_MS) before the reference moves.
    if (this.candidate === null || Math.abs(lag - this.candidate) > MOVE_MS * SPM) { this.candidate = lag; return; }
    this.candidate = null;
    if (cur !== null) this._stats.delayJumps++;
    this.moveTo(lag, confidence, cur === null ? 'echo delay found' : 'echo delay moved');
    this.settleLeft = 16; // ~2 s of estimates
    this.settle = null;
  }

  private moveTo(lag: number, confidence: number, msg: string): void {
    const cur = this.delaySamples;
    this.log?.info({ delayMs: Math.round(lag / SPM), fromMs: cur === null ? null : Math.round(cur / SPM), confidence: Math.round(confidence * 10) / 10 }, msg);
    this.delaySamples = lag;
    this.setFraction(0); // the estimator's delay is whole samples (its step is 8)
    this._stats.converged = false;
    this.convergedFor = 0;
  }

  /** The delay's fraction of a sample (-0.5..0.5]: the reference is delayed by it through a windowed sinc. */
  private setFraction(f: number): void {
    this.frac = Math.abs(f) < 0.01 ? 0 : f;
    this._stats.delayMs = this.delaySamples === null ? null : (this.delaySamples + this.frac) / SPM;
    if (this.frac === 0) { this.fracTaps = null; return; }
    const half = FRAC_TAPS / 2, taps = new Float64Array(FRAC_TAPS);
    // taps[q] weighs the reference q - half + 1 samples back: y(t) = x(t - frac).
    for (let q = 0; q < FRAC_TAPS; q++) {
      const u = q - half + 1 - this.frac;
      const w = 0.42 + 0.5 * Math.cos((Math.PI * u) / half) + 0.08 * Math.cos((2 * Math.PI * u) / half);
      taps[q] = (Math.abs(u) < 1e-9 ? 1 : Math.sin(Math.PI * u) / (Math.PI * u)) * w;
    }
    this.fracTaps = taps;
  }

  /** The reference for mic samples from..from+n as Speex gets it (the whole-sample delay taken off by the caller): delayed by the fraction too. */
  private readRef(from: number, out: Int16Array | Float32Array): void {
    const taps = this.fracTaps, n = out.length;
    if (!taps) { this.ref.read(from, out); return; }
    const half = FRAC_TAPS / 2;
    if (this.fracSeg.length < n + FRAC_TAPS - 1) this.fracSeg = new Float32Array(n + FRAC_TAPS - 1);
    const seg = this.fracSeg;
    // seg[k] = x(from - half + k), so x(from + i - (q - half + 1)) = seg[i + 2 * half - 1 - q].
    this.ref.read(from - half, seg, n + FRAC_TAPS - 1);
    const round = out instanceof Int16Array;
    for (let i = 0; i < n; i++) {
      let acc = 0;
      for (let q = 0; q < FRAC_TAPS; q++) acc += taps[q] * seg[i + 2 * half - 1 - q];
      out[i] = round ? Math.max(-32768, Math.min(32767, Math.round(acc))) : acc;
    }
  }

  /**
   * A new playback stream (a new conversation, a barge-in's restart): its echo path may be the last one's (the same
   * room and device), or a few ms off it (seen on the simulated card: 131 ms, then 158 ms on the next conversation's
   * stream). The kept filter is tried at the delay in use on the first TRIAL_MS of the stream's echo: it cancels
   * from the first frame where the path is the same. Where it does not fit, Speex is not run (the mic passes as it
   * is, and the kept filter is not re-learnt at the wrong offset: run on, 5 and 10 ms off, the next reply took
   * 2.4-2.9 s to reach 20 dB in the echo room, and 6 s on the simulated card, in half-duplex all along) until the
   * estimator, started afresh, finds this stream's delay on its own echo, for at most HOLD_MAX_MS of audible
   * reference. Not converged meanwhile; the figures start afresh for the stream. Nothing to do before a delay was
   * ever found, or with a fixed one. audibleAtMs: when the stream's first audible sample is heard (monotonic ms);
   * until its echo can be in the mic, what is there is the last stream's, cancelled as before. Without it, the
   * stream is taken to start with the next reference chunk that does not follow on from the last.
   */
  newStream(audibleAtMs?: number): void {
    if (this.closed || this.est === null || this.delaySamples === null) return;
    this.est.reset();
    this.candidate = null;
    this.hold = 'trial';
    this.holdFrames = 0;
    this.trialFrom = audibleAtMs === undefined ? Infinity : Math.round(audibleAtMs * SPM);
    this.startTrial();
    if (this.trial!.empty) { this.trial = null; this.hold = 'held'; } // nothing learnt to try (Speex reset its filter)
    this._stats.converged = false;
    this.convergedFor = 0;
    this.freshFigures();
  }

  /** A trial of the kept filter from here on (Speex has not adapted since newStream): the sums and the frames to replay start afresh. */
  private startTrial(): void {
    this.trialMic = 0; this.trialOut = 0; this.trialFrames = 0;
    this.trialLog = [];
    this.trial = new FilterTrial(this.aec.impulseResponse(), TRIAL_LAG, FRAME, (from, out) => this.readRef(from, out));
  }

  /** Speex runs again after a hold. The figures start afresh: the held frames (the mic as it is) would keep the
   * smoothed ERLE near 0 dB for a second of echo already cancelled 25-45 dB down (seen here: full duplex 2.6 s into the reply). */
  private release(): void {
    this.hold = 'off';
    this.freshFigures();
  }

  private freshFigures(): void {
    this.micPow = 0; this.outPow = 0; this.refPow = 0; this.powFrames = 0;
    this._stats.erleDb = null;
    this._stats.residualDb = null;
  }

  /** Forget the delay (it is searched for afresh) and the streams' positions; the filter is kept. */
  reset(): void {
    if (this.fixedDelay === null) {
      this.delaySamples = null;
      this._stats.delayMs = null;
      this.est?.reset();
    }
    this.candidate = null;
    this._stats.converged = false;
    this.convergedFor = 0;
    this.micNext = null;
    this.refNext = null;
    this.refNextMs = null;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.aec.destroy();
    this.up.destroy(); this.refDown.destroy(); this.micDown.destroy();
  }
}

/** The s16le samples of a buffer as an Int16Array (copied when unaligned). */
function samples(b: Buffer): Int16Array {
  const n = b.length >> 1;
  if (b.byteOffset % 2 === 0) return new Int16Array(b.buffer, b.byteOffset, n);
  const c = Buffer.from(b.subarray(0, n * 2));
  return new Int16Array(c.buffer, c.byteOffset, n);
}

/**
 * Runs 1.5 s of a synthetic echo (noise, and itself 100 ms later at half level) through a scratch canceller,
 * then closes it: the JavaScript around Speex (the delay estimator's FFTs, the resampler glue, the rings) is
 * compiled at start-up rather than at the first audible sound after it, where the first wake chime after a
 * start was seen to lose a note to an event loop that stalled just then ("playback ran dry", 72 ms late).
 * The canceller in use is not touched. It runs in slices of 100 ms of audio, each in its own turn of the event loop,
 * so that a press or a control request waits at most one slice (~5 ms here). Resolves to the ms its slices ran
 * (not the waits between them).
 */
export async function warmUpEcho(): Promise<number> {
  let busy = 0;
  let started = performance.now();
  const c = EchoCanceller.open({});
  try {
    let seed = 12345;
    const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff * 2 - 1; };
    const refMs = 1500, t0 = 10_000;
    const ref = Buffer.alloc(24 * refMs * 2);
    for (let i = 0; i < ref.length; i += 2) ref.writeInt16LE(Math.round(rnd() * 8000), i);
    const micMs = refMs + 300;
    const mic = Buffer.alloc(16 * micMs * 2);
    for (let j = 0; j < 16 * micMs; j++) {
      const k = Math.floor((j - 1600) * 1.5); // 100 ms late, 16 from 24 kHz
      if (k >= 0 && k < ref.length / 2) mic.writeInt16LE(Math.round(ref.readInt16LE(2 * k) / 2), 2 * j);
    }
    for (let ms = 0; ms < micMs; ms += 20) {
      if (ms < refMs) c.pushReference({ atMs: t0 + ms, pcm: ref.subarray(ms * 48, (ms + 20) * 48) });
      if (ms >= 20) c.processMic(mic.subarray((ms - 20) * 32, ms * 32), t0 + ms - 20);
      if (ms % 100 === 80) {
        busy += performance.now() - started;
        await new Promise<void>((r) => setImmediate(r));
        started = performance.now();
      }
    }
  } finally { c.close(); }
  return busy + performance.now() - started;
}
