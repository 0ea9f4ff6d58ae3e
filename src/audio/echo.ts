// The echo-cancelling stage: every capture chunk passes through here before
// anything reads it (wake word, local VAD, what is sent), and every sample
// the speaker played (the timeline's 'played' chunks) is its reference.
// The DSP is the canceller in ./aec; this file only wires it in, and says
// when the daemon must fall back to half-duplex:
//
//   audio.echo_cancel  off   no canceller: for hardware that cancels its own
//                            echo (speakerphones). Full duplex, trusted.
//                      auto  the canceller when one can run, else half-duplex.
//                      on    the canceller is required: the daemon refuses to
//                            start (exit 78) or to reload when none can run.
//   audio.barge_in     press half-duplex always (the canceller still cleans
//                            what the wake word hears).
//
// Half-duplex means: while a reply plays (and echo_tail_ms after its last
// sample was heard) the server gets zeros, paced like the microphone; the
// session is opened with activityHandling NO_INTERRUPTION when it can never
// be voice-interrupted (no engine, or barge_in: press). A running canceller
// that has not converged (and taken the echo FULL_DUPLEX_ERLE_DB down) also gets zeros sent during replies, but its
// session may be interrupted, so voice barge-in works once it converges.
// In full duplex the residual gate (RESIDUAL_GATE_DB) still sends zeros for
// the chunks that are only what the canceller left of the echo, and on a tonal
// reply the tonal-leak guard (TONAL_GUARD) notches the tones out of the cleaned audio.
//
// The canceller sees every frame (its filter and its count of time go on),
// but its output is used only while an echo can be in the microphone: from
// when audible reference is written to the speaker until echo_tail_ms after
// it is heard. At other times (the question, the room between replies) the
// microphone passes untouched, delayed by the canceller's own latency so the
// stream stays continuous when the two are swapped: the canceller's residual
// suppression and filters leave their mark on speech even with nothing to
// cancel (seen here: a spoken question correlated 0.95-0.975 with itself).
import { EchoCanceller, EchoUnavailableError, MAX_DELAY_MS, warmUpEcho, type EchoStats } from './aec/index.js';
import type { PlayedChunk } from './timeline.js';
import type { Logger } from '../log.js';
import { monotonicMs } from '../clock.js';
import { NotchBank, TonalDetector } from './aec/tonal.js';
import { appendFileSync } from 'node:fs';

/**
 * LS_ECHO_TRACE=FILE: one JSON line per capture chunk (and per playback stream start) appended to FILE,
 * for finding out why a reply interrupted itself (test/echo.test.ts sets it with LS_ECHO_DUMP). Off by default.
 */
const TRACE = process.env.LS_ECHO_TRACE || null;
function trace(o: object): void { if (TRACE) appendFileSync(TRACE, JSON.stringify(o) + '\n'); }

export type EchoMode = 'auto' | 'on' | 'off';
export type BargeIn = 'voice' | 'press';

export interface EchoStatus {
  mode: EchoMode;
  bargeIn: BargeIn;
  /** cancelling: an engine runs; off: audio.echo_cancel off; unavailable: no engine could run (auto). */
  state: 'cancelling' | 'off' | 'unavailable';
  engine: string | null;
  delayMs: number | null;
  erleDb: number | null;
  converged: boolean;
  framesProcessed: number;
  delayJumps: number;
  /** Why there is no engine (unavailable), else null. */
  reason: string | null;
  /** Right now, replies are answered with silence to the server (see halfDuplex() and FULL_DUPLEX_ERLE_DB). */
  halfDuplex: boolean;
  /** Mic chunks the tonal-leak guard notched (see TONAL_GUARD): the reply's echo window was tonal. */
  notchedChunks: number;
}

/** audio.echo_cancel is on and no engine can run. */
export class EchoRequiredError extends Error {
  constructor(reason: string) {
    super(`audio.echo_cancel is on, but no echo canceller can run: ${reason} (set audio.echo_cancel: auto to run half-duplex instead)`);
    this.name = 'EchoRequiredError';
  }
}

type Opener = typeof EchoCanceller.open;

/**
 * Full duplex needs more than the canceller's own `converged` (its filter has
 * learnt the room, 15 dB): what it leaves of a loud reply must not pass for
 * speech. With the echo at full level (0 dB) and 15-25 dB taken off, the
 * emulator's VAD heard the rest and the reply interrupted itself (seen here
 * at 30 and 300 ms paths, before the residual gate); even 30 dB down, Speex
 * left 60 ms stretches at -35 to -45 dBFS (0 dB, 30 ms path: 7 and 3 replies
 * to one question). So the residual gate (RESIDUAL_GATE_DB) takes those out,
 * and once converged, replies stay half-duplex until the echo has been seen
 * this far down: with the gate, no chunk of the echo alone got through at
 * 20 dB and over in the 0 dB rooms measured (at 30 dB, the talk-over room at
 * 120 ms often stayed half-duplex for the whole reply, at ~20 dB). That
 * holds until the canceller is no longer converged (a delay jump), or the
 * playback device restarts (a new conversation, a barge-in), after which the
 * delay may have changed before the canceller has noticed (seen here: the
 * second conversation's reply interrupted itself every 1.4 s).
 */
export const FULL_DUPLEX_ERLE_DB = 20;
/**
 * A room with no echo to cancel (a speaker the microphone does not hear, a
 * headset): the canceller never converges, as there is nothing to converge
 * on, but the microphone stays far below what the speaker plays (the raw
 * microphone: the cleaned one's level over the reply, less what the
 * canceller took off; a canceller that takes a tone far down with no delay
 * located, as on a mostly tonal reply, is cancelling an echo, and what it
 * has not learnt, the next note, would go out raw in full duplex).
 * Full duplex is earned on such a stream once that has held for the last
 * QUIET_ROOM_MS (the canceller's figure is smoothed over ~200 ms), and not
 * before QUIET_ROOM_AFTER_MS of the stream's audible audio: an echo may come
 * up to the longest delay searched (MAX_DELAY_MS) after the first sample is
 * heard, and until it has, a room with a long echo path looks like a room
 * with none. Seen here: with QUIET_ROOM_MS alone, the 0 dB / 300 ms room
 * (delay ~310 ms) was taken for an echo-free one 430-515 ms into the first
 * reply, before the smoothed figure had seen the echo arrive; full duplex
 * sent the echo, raw, and the reply interrupted itself (2 runs in 12).
 * Whether a delay was located does not matter: an echo 40 dB under what
 * plays, after cleaning, is no echo to the server either. Once a stream has
 * shown the room quiet over that whole window, the room is known to be
 * quiet, and later streams earn full duplex after QUIET_ROOM_MS (so in a
 * headset room only the first reply after a start is half-duplex for its
 * first QUIET_ROOM_AFTER_MS, and a user's words over it, which also break
 * the quiet, do not reach the server then); a converged canceller (an echo
 * found and cancelled) makes the room not known to be quiet again.
 */
export const QUIET_ROOM_DB = 40;
export const QUIET_ROOM_MS = 400;
export const QUIET_ROOM_AFTER_MS = MAX_DELAY_MS + QUIET_ROOM_MS;
/**
 * The residual gate, in full duplex while an echo may be in the microphone: a
 * chunk of the cleaned audio this far (or further) below the loudest the raw
 * microphone has been lately (RESIDUAL_ENV_DECAY_DB per second) is what the
 * canceller left of the echo, and the server gets zeros for it. Someone
 * talking over the reply is in the raw microphone as loud as in the cleaned
 * audio, so their words pass. Measured on the simulated card's 0 dB rooms
 * (30 and 120 ms paths, converged, echo 20-45 dB down): Speex left 60 ms
 * stretches of -35 to -45 dBFS (what the emulator's VAD hears as speech), the
 * loudest of them 14.2 dB under that envelope; the user's talk-over reached
 * the server 1-5 dB over it within 60 ms of its onset, then 0-8 dB under the
 * envelope's own level. Quiet words under a loud reply (more than this far
 * under its echo) do not reach the server while the reply plays.
 */
export const RESIDUAL_GATE_DB = 12;
/**
 * The tonal-leak guard (issue 25), while an echo may be in the microphone: when what the speaker played over the
 * echo window (the last echoSpanMs(): echo_tail_ms, or the delay plus the filter when longer; at most 1.7 s) is tonal, a few narrow peaks holding
 * TONAL_SHARE (90%) of its energy (a chime, timer beeps, a sung answer), the cleaned microphone goes through narrow
 * notches at those peaks (./aec/tonal.ts), for the server only (the wake word hears forWake()). On a tone the delay estimator rightly holds; if the echo path then moves
 * (the card's delay or gain), the canceller is misaligned and the tone's echo leaks, at any delay, but always at the
 * tone's frequency: the notches take it out. A user talking over it, broadband, loses those narrow bands only. A
 * spoken reply is not tonal (its peaks held at most 77% of its energy in the tests' rooms, test/echo-room.test.ts), so
 * the guard does not engage on it. Measured in that room (a tonal reply whose path moves mid-reply while the estimator
 * holds: 120 -> 350 ms, 6 dB down, both): 35, 59 and 76 20 ms blocks over -45 dBFS sent in 60 ms runs without the guard,
 * none with it; a user talking over it keeps -1.1 dB of their level (+0.3 dB with the guard off). Not caught: what of a tonal reply's echo is not at its peaks (the clicks where a tone starts or
 * stops, harmonics the speaker adds), and a reply that is not tonal (speech; a chord of more than 8 notes).
 */
export const TONAL_GUARD = true;
/** How long the canceller's filter models the room after the echo's bulk delay (its 200 ms tail plus a margin). */
const ECHO_FILTER_MS = 250;
const RESIDUAL_ENV_DECAY_DB = 20;

export class EchoStage {
  private earned = false; // converged and the echo seen FULL_DUPLEX_ERLE_DB down since, or a room with no echo (QUIET_ROOM_DB)
  private earnedBy: 'erle' | 'quiet' | null = null;
  private streamChanged = false; // the device (re)started and nothing audible has been written on it yet
  private heardUntil = -Infinity; // when the last audible sample written is heard (monotonic ms)
  private nextAt: number | null = null; // when the sample after the last one written will be heard
  private audibleFrom: number | null = null; // when this device stream's first audible sample is heard // monotonic ms: until then an echo of what was written can reach the mic
  private held: Buffer; // the raw microphone, delayed by the canceller's latency
  private envDb = -120; // the raw (delayed) microphone's level, peak-held with a decay (RESIDUAL_ENV_DECAY_DB)
  private residualNow = false; // the last chunk processed is what the canceller left of an echo (RESIDUAL_GATE_DB)
  private roomQuiet = false; // a stream has shown the room quiet over the whole QUIET_ROOM_AFTER_MS window, and no echo has been cancelled since
  private quietSince: number | null = null; // since when (monotonic ms) the cleaned mic has stayed QUIET_ROOM_DB under the reply, unconverged, on this stream
  private readonly tonal = new TonalDetector(24000); // what the speaker played (the player's 24 kHz), over the echo window
  private readonly notches = new NotchBank(16000);
  private notchedNow = false; // the last chunk processed went through the notches
  private forWakeChunk: Buffer = Buffer.alloc(0); // the last chunk processed, cleaned but not notched (forWake())
  /** Chunks the residual gate has marked (see residualEcho()). */
  residualChunks = 0;
  /** Chunks the tonal-leak guard has notched (TONAL_GUARD). */
  notchedChunks = 0;
  /** The tonal-leak guard is on (tests turn it off to measure what it does). */
  tonalGuard = TONAL_GUARD;
  /** How long after a sample is heard its echo may still arrive (audio.echo_tail_ms). */
  tailMs = 1000;

  private constructor(
    readonly mode: EchoMode,
    readonly bargeIn: BargeIn,
    private readonly canceller: EchoCanceller | null,
    private readonly reason: string | null,
  ) {
    // The agreed interface has no latency; the SpeexDSP canceller reports it (its output lags the mic by that much).
    const latencyMs = (canceller as { latencyMs?: number } | null)?.latencyMs ?? 0;
    this.held = Buffer.alloc(Math.round(latencyMs * 16) * 2);
  }

  /**
   * Compiles the JavaScript around the canceller on a scratch one (warmUpEcho), so that the first sound after a
   * start does not stall the event loop. The daemon calls it once it is ready (about 100 ms of CPU here that
   * start-up does not wait for; in slices, so that a press meanwhile waits at most one, ~5 ms here), and after a
   * reload that opened a new stage.
   */
  async warmUp(log: Logger): Promise<void> {
    if (!(this.canceller instanceof EchoCanceller)) return;
    try { log.debug({ ms: Math.round(await warmUpEcho()) }, 'echo canceller warmed up'); } catch (e) { log.debug({ error: (e as Error).message }, 'echo canceller warm-up failed (no harm: the first sound compiles it instead)'); }
  }

  /** Throws EchoRequiredError when mode is on and no engine can run. */
  static open(mode: EchoMode, bargeIn: BargeIn, log: Logger, open: Opener = EchoCanceller.open.bind(EchoCanceller)): EchoStage {
    if (mode === 'off') {
      log.info({ bargeIn }, 'echo cancellation off (audio.echo_cancel: off): the hardware is trusted to cancel its own echo');
      return new EchoStage(mode, bargeIn, null, null);
    }
    try {
      const c = open({ engine: 'auto', log });
      log.info({ engine: c.stats.engine, bargeIn }, 'echo cancellation on');
      return new EchoStage(mode, bargeIn, c, null);
    } catch (err) {
      // Whatever went wrong (a missing library, or an engine that failed to start), the daemon goes on half-duplex in auto.
      const why = err instanceof EchoUnavailableError ? err.message : `the echo canceller failed to start: ${(err as Error).message}`;
      if (mode === 'on') throw new EchoRequiredError(why);
      log.warn({ reason: why }, 'no echo canceller can run: half-duplex (the server gets silence while a reply plays; the button and the wake word still barge in)');
      return new EchoStage(mode, bargeIn, null, why);
    }
  }

  /** A stretch written to the speaker (the timeline's 'wrote' event), first heard at c.atMs: if it is not silence, an echo may come. */
  scheduled(c: PlayedChunk, rate: number): void {
    // The device (re)started (a new conversation's stream, a barge-in's drop): its delay may differ, and the
    // canceller only says so once it has found the new one. Full duplex is earned again on this stream.
    if (this.nextAt !== null && Math.abs(c.atMs - this.nextAt) > 2) {
      this.earned = false; this.earnedBy = null; this.audibleFrom = null; this.quietSince = null;
      this.streamChanged = true;
      if (TRACE) trace({ ev: 'stream', t: Math.round(c.atMs) });
    }
    this.nextAt = c.atMs + ((c.pcm.length >> 1) * 1000) / rate;
    if (!this.canceller || c.pcm.every((b) => b === 0)) return;
    // The kept filter is tried on the new stream's own echo before Speex adapts again (EchoCanceller.newStream), from
    // its first audible sample on: until then Speex goes on cancelling what is still coming of the last stream's echo
    // (after a barge-in's drop, the cut reply's echo is in the mic for one echo delay more; held, it went out raw).
    if (this.streamChanged) { this.streamChanged = false; this.canceller.newStream?.(c.atMs); }
    if (TRACE && this.audibleFrom === null) trace({ ev: 'audible', t: Math.round(c.atMs) });
    this.audibleFrom ??= c.atMs;
    this.heardUntil = Math.max(this.heardUntil, c.atMs + ((c.pcm.length >> 1) * 1000) / rate);
  }

  /** A stretch of what the speaker played (the timeline's 'played' event). */
  reference(c: PlayedChunk): void {
    if (!this.canceller) return;
    this.canceller.pushReference({ atMs: c.atMs, pcm: c.pcm });
    this.tonal.push(c.pcm, c.atMs + ((c.pcm.length >> 1) * 1000) / 24000, this.echoSpanMs());
  }

  /** A capture chunk that arrived at `arrivedMs` (monotonic): the cleaned chunk for the server, same length (see forWake()). */
  process(frame: Buffer, arrivedMs: number, rate: number): Buffer {
    if (!this.canceller) { this.forWakeChunk = frame; return frame; }
    // The chunk's first sample was captured about its own length before it arrived (the engine estimates the rest of the delay).
    let cleaned = this.canceller.processMic(frame, arrivedMs - ((frame.length >> 1) * 1000) / rate);
    const raw = this.delayed(frame);
    const n = frame.length >> 1;
    const rawDb = levelDb(raw);
    this.envDb = Math.max(rawDb, this.envDb - (RESIDUAL_ENV_DECAY_DB * n) / rate);
    this.residualNow = false;
    this.notchedNow = false;
    this.forWakeChunk = raw;
    if (arrivedMs > this.echoUntil()) {
      this.notches.reset();
      if (TRACE) trace({ t: Math.round(arrivedMs), wall: Date.now(), raw: r1(rawDb), pass: true });
      return raw;
    }
    this.forWakeChunk = cleaned;
    // The tonal-leak guard (TONAL_GUARD): a tonal echo window's peaks notched out of what goes on to the server. Only a
    // verdict on reference whose echo can still be in the mic: after a pause, the last reply's is no longer this one's.
    if (this.tonalGuard && this.tonal.tonal && this.tonal.analysedUntilMs + this.echoSpanMs() >= arrivedMs) {
      this.notches.set(this.tonal.freqs);
      cleaned = this.notches.process(cleaned);
      this.notchedNow = true;
      this.notchedChunks++;
    } else this.notches.reset();
    // Only where it matters: what the emulator's VAD could take for speech (-45 dBFS) is never below -60 dBFS.
    const cleanDb = levelDb(cleaned);
    const st = this.canceller.stats;
    // The raw microphone (not only the cleaned one) far under the reply: the reference over the mic is the reference over
    // the cleaned mic less what the canceller took off. A canceller that takes a tone far down without a delay it could
    // confirm (issue 25: a mostly tonal reply) is no quiet room, and what it does not take (the next note) goes out raw.
    const micUnderDb = (st.residualDb ?? 0) - Math.max(0, st.erleDb ?? 0);
    if (!st.converged && micUnderDb >= QUIET_ROOM_DB && this.audibleFrom !== null) this.quietSince ??= arrivedMs;
    else this.quietSince = null;
    if (st.converged) this.roomQuiet = false;
    this.residualNow = cleanDb > -60 && cleanDb <= this.envDb - RESIDUAL_GATE_DB;
    if (this.residualNow) this.residualChunks++;
    if (TRACE) {
      const s = this.canceller.stats;
      trace({ t: Math.round(arrivedMs), wall: Date.now(), raw: r1(rawDb), clean: r1(cleanDb), env: r1(this.envDb), gate: this.residualNow, notch: this.notchedNow ? this.notches.frequencies.map(Math.round) : null, half: this.halfDuplex(), by: this.earnedBy,
        delay: s.delayMs === null ? null : Math.round(s.delayMs), erle: s.erleDb, res: s.residualDb, conv: s.converged, aud: this.audibleFrom === null ? null : Math.round(arrivedMs - this.audibleFrom) });
    }
    return cleaned;
  }

  /**
   * The chunk process() returned last is, by its level, what the canceller left of the echo (RESIDUAL_GATE_DB):
   * in full duplex the server gets zeros for it. Not for the wake word, which hears the cleaned audio as it is.
   */
  residualEcho(): boolean { return this.residualNow && this.bargeIn === 'voice'; }

  /**
   * The chunk process() returned last as the wake word hears it: cleaned, without the tonal-leak guard's notches (as it
   * is without the residual gate). A notch at a ringing timer's 988 Hz took a wake word said over it out with the echo
   * (the tone stand-in at 1000 Hz never fired); a wake word is no tone, and a tone's leak is no wake word.
   */
  forWake(): Buffer { return this.forWakeChunk; }

  /** Whether the canceller's output is in use now (an echo may be in the microphone). */
  cleaning(nowMs: number): boolean { return this.canceller !== null && nowMs <= this.echoUntil(); }

  /**
   * Until when an echo of what was heard can be in the microphone: audio.echo_tail_ms after the last audible
   * sample, and never less than the echo path's delay (the longest searched while none is known) plus the
   * canceller's filter: an echo_tail_ms set below the real delay must not send the tail of every reply's echo
   * raw to the wake word and, in full duplex, to the server.
   */
  private echoUntil(): number {
    return this.heardUntil + this.echoSpanMs();
  }

  /** How long after a sample is heard its echo may be in the microphone (see echoUntil()). */
  private echoSpanMs(): number {
    const delayMs = this.canceller?.stats.delayMs ?? MAX_DELAY_MS;
    return Math.max(this.tailMs, delayMs + ECHO_FILTER_MS);
  }

  /** The chunk process() returned last went through the tonal-leak guard's notches (TONAL_GUARD). */
  get notchedNowFlag(): boolean { return this.notchedNow; }

  /** The tonal-leak guard's view of the echo window: its peaks' share of the energy, and whether that is tonal. */
  get tonalWindow(): { tonal: boolean; share: number; freqs: number[] } { return { tonal: this.tonal.tonal, share: this.tonal.share, freqs: this.tonal.freqs }; }

  private delayed(frame: Buffer): Buffer {
    if (this.held.length === 0) return frame;
    const all = Buffer.concat([this.held, frame]);
    this.held = Buffer.from(all.subarray(frame.length));
    return all.subarray(0, frame.length);
  }

  /** Replies must not be heard by the server now: no engine, barge_in: press, or an engine not converged. Never with echo_cancel off. */
  halfDuplex(): boolean {
    if (this.mode === 'off') return this.bargeIn === 'press';
    if (!this.canceller) return true;
    const s = this.canceller.stats;
    const now = monotonicMs();
    if (this.earnedBy === 'erle' && !s.converged) { this.earned = false; this.earnedBy = null; }
    // Measured on this stream: after a second of it heard (the canceller's figure is smoothed, and may be the last stream's).
    if (!this.earned && s.converged && s.erleDb !== null && s.erleDb >= FULL_DUPLEX_ERLE_DB && this.audibleFrom !== null && now >= this.audibleFrom + 1000) { this.earned = true; this.earnedBy = 'erle'; }
    // No echo to speak of: the cleaned microphone far below the reply (whatever delay the estimator may have taken
    // from the user's voice against a reply: seen here, 619 ms in a room with no echo path, and never forgotten).
    // Only once an echo at the longest delay searched would have been heard, and with it seen held for QUIET_ROOM_MS since (see QUIET_ROOM_AFTER_MS).
    // A room already known quiet: QUIET_ROOM_MS of this stream.
    if (!this.earned && !s.converged && this.quietSince !== null && now >= this.quietSince + QUIET_ROOM_MS && this.audibleFrom !== null
      && now >= this.audibleFrom + (this.roomQuiet ? QUIET_ROOM_MS : QUIET_ROOM_AFTER_MS)) { this.earned = true; this.earnedBy = 'quiet'; this.roomQuiet = true; }
    return this.bargeIn === 'press' || !this.earned;
  }

  /** A new session may be voice-interrupted (activityHandling START_OF_ACTIVITY_INTERRUPTS), else NO_INTERRUPTION. */
  interruptible(): boolean {
    return this.bargeIn === 'voice' && (this.mode === 'off' || this.canceller !== null);
  }

  status(): EchoStatus {
    const s: EchoStats | null = this.canceller?.stats ?? null;
    return {
      mode: this.mode, bargeIn: this.bargeIn,
      state: this.canceller ? 'cancelling' : this.mode === 'off' ? 'off' : 'unavailable',
      engine: s?.engine ?? null, delayMs: s?.delayMs ?? null, erleDb: s?.erleDb ?? null, converged: s?.converged ?? false,
      framesProcessed: s?.framesProcessed ?? 0, delayJumps: s?.delayJumps ?? 0,
      reason: this.reason, halfDuplex: this.halfDuplex(), notchedChunks: this.notchedChunks,
    };
  }

  /** One line for the status and doctor. */
  describe(): string {
    const s = this.status();
    const duplex = s.bargeIn === 'press' ? 'half-duplex (audio.barge_in: press)'
      : !s.halfDuplex ? 'full duplex' : s.converged ? `half-duplex until the echo is ${FULL_DUPLEX_ERLE_DB} dB down` : 'half-duplex until it converges';
    switch (s.state) {
      case 'off': return `off (audio.echo_cancel: off): ${s.bargeIn === 'press' ? 'half-duplex (audio.barge_in: press)' : 'full duplex, the hardware cancels'}`;
      case 'unavailable': return `unavailable (${s.reason}): half-duplex`;
      case 'cancelling': return `${s.engine}, delay ${s.delayMs === null ? 'not estimated yet' : `${Math.round(s.delayMs)} ms`}, ${s.converged ? 'converged' : 'not converged'}${s.erleDb === null ? '' : ` (echo reduced ${s.erleDb} dB)`}: ${duplex}`;
    }
  }

  close(): void { this.canceller?.close(); }
}

const r1 = (x: number) => Math.round(x * 10) / 10;

/** A chunk's level, dBFS (s16le). */
function levelDb(b: Buffer): number {
  const n = b.length >> 1;
  if (n === 0) return -120;
  let e = 0;
  for (let i = 0; i < n; i++) { const v = b.readInt16LE(2 * i); e += v * v; }
  return 10 * Math.log10(e / n / 32768 ** 2 + 1e-12);
}
