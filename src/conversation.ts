// The conversation state machine: the only place that decides what happens
// next. Hardware and network adapters report events to it and obey its
// commands through the narrow ports of src/ports.ts; nothing here imports a hardware
// package, so every transition can be read (and tested) in this one file.
import { EventEmitter } from 'node:events';
import { EnergyVad } from './audio/vad.js';
import { PrerollBuffer } from './audio/preroll.js';
import { ChimeNotch } from './audio/sounds.js';
import type { Logger } from './log.js';
import { monotonicMs } from './clock.js';
import type { ToolCall, ToolResponse } from './tools/types.js';
import { STREAMING_STATES, type SpokenOutcome, type CloseInfo, type EchoGate, type Indicator, type LiveConnector, type LiveLink, type Mic, type Player, type State, type ToolPort, type Trigger, type TurnText, type UsageCounts } from './ports.js';

export interface ConversationOptions {
  rate: number; // capture rate (16000)
  prerollMs: number;
  vadThresholdDbfs: number;
  endOfSpeechMs: number;
  noSpeechTimeoutMs: number;
  followUpMs: number;
  maxConversationMs: number;
  errorDisplayMs: number;
  /** Wake word: send from the end of the wake word (trim) or from wakeBeforeMs before it. */
  trimWakeWord: boolean;
  wakeBeforeMs: number;
  /** Feedback sounds at the playback rate, or null when switched off. */
  wakeSound: Buffer | null;
  errorSound: Buffer | null;
  /** How long after a chime starts the mic audio is notch-filtered (chime length + device latency). */
  chimeGateMs: number;
  /** A new conversation within this long of the last one resumes it (0 = never: each starts fresh). */
  resumeWithinMs: number;
  /** Half-duplex: zeros are sent for this long after a reply stopped being heard (its echo is still on the way). */
  echoTailMs?: number;
}

/** Back-off before each resumption attempt after a drop; then the conversation fails. */
const RESUME_DELAYS_MS = [0, 500, 2000];
/** Stands in for the link between a drop and the next connect. */
const WAITING_LINK: LiveLink = { sendAudio: () => undefined, close: () => undefined };
/** A connection that lived this long has earned a fresh set of attempts. */
const STABLE_MS = 10_000;
/** Mic audio held while (re)connecting: at most this much, the newest kept (the cap is logged). */
export const HELD_AUDIO_MAX_MS = 15_000;
/** Added to the system instruction of a session that says the home's text (issue 24). */
export const SAY_INSTRUCTION = 'This session was started by the home, not by a person speaking: the first user turn gives you a text to say aloud. Say exactly that text, word for word, in your own voice, adding nothing before or after it.';
/** The user text turn of such a session. */
export const sayTurn = (text: string) => `Say exactly: ${text}`;

export interface Counters {
  conversations: number; turns: number; interrupted: number; bargeIns: number; errors: number;
  bytesSent: number; bytesPlayed: number; resumed: number;
}
export class Conversation extends EventEmitter {
  state: State = 'idle';
  lastError: { at: string; message: string; permanent: boolean } | null = null;
  /** A problem only the user can fix (bad key, unknown model): shown until a session opens again. */
  fault: string | null = null;
  readonly counters: Counters = { conversations: 0, turns: 0, interrupted: 0, bargeIns: 0, errors: 0, bytesSent: 0, bytesPlayed: 0, resumed: 0 };
  /** When the current conversation was started, and when its first audio frame was sent (for the bench). */
  timing: { pressAt: number | null; firstSentAt: number | null } = { pressAt: null, firstSentAt: null };

  private link: LiveLink | null = null;
  private held: PrerollBuffer; // audio captured while connecting, sent first once the session is up
  private heldCapLogged = false;
  private preroll: PrerollBuffer;
  private vad: EnergyVad;
  private discardTurn = false; // a press cut this reply: ignore the rest of its audio
  private discardUntilQuestion = false; // ...or, cut before it began, until the user's next question is complete
  private replyAudio = false; // this turn has produced audio
  private turnBytes = 0; // reply audio of this turn (for the drain guard)
  private stateTimer: NodeJS.Timeout | null = null;
  private maxTimer: NodeJS.Timeout | null = null;
  private micDown: string | null = null;
  private notch: { filter: ChimeNotch; until: number } | null = null;
  private linkGen = 0; // callbacks from any older link are ignored
  private handle: string | null = null; // newest resumption handle of this conversation
  private attempts = 0; // resumption attempts since the last stable connection
  private linkSentBytes = 0; // mic audio handed to the current link
  private everOpened = false; // this conversation has had a session up
  private linkOpenedAt = 0; // when the current link's session came up (0: not up)
  private goAwayDue = false; // resume at the next quiet moment
  private resumeTimer: NodeJS.Timeout | null = null;
  private lastEnded: { at: number; handle: string | null } | null = null;
  /** end_conversation was called: end once the goodbye has been heard (tools, issue 12). */
  private ending = false;
  /** In follow-up after a reply that was heard to its end (not after a turn with no audio). */
  private followUpAfterReply = false;
  /** Calls the model waits for: while any runs, no "no reply" timeout. */
  private toolsPending = new Set<string>();
  /** Answers that came while the session was being resumed: sent on the new link once it is open. */
  private toolAnswersHeld: ToolResponse[] = [];
  /** A no-speech or follow-up timeout put off while tools run: armed afresh once they have all answered. */
  private deferredTimer: { ms: number; endReason: string } | null = null;
  private stateTimerSpec: { ms: number; endReason: string | null } | null = null;
  private convGen = 0; // answers from the tools of an ended conversation are dropped
  /** A press or the wake word goes here first; true = taken (a ringing timer is stopped by it). */
  pressHook: ((trigger: string) => boolean) | null = null;
  private replyHeardUntil = -Infinity; // when the speaking state was last left (monotonic): the reply's echo may come until echoTailMs after
  /** Frames replaced by zeros (half-duplex), for the status. */
  gatedFrames = 0;
  /** Frames replaced by zeros in full duplex: only the canceller's residual of the echo (EchoGate.residualEcho). */
  residualFrames = 0;
  /**
   * The home's text being said (announce, ask: issue 24). While set, no microphone audio leaves the device;
   * once it has been heard, an announcement ends and a question listens as after a press.
   */
  private saying: { id: number; text: string; listen: boolean } | null = null;
  /** A muted speaker says an announcement: back to muted (never listening) when it is over. */
  private returnToMuted = false;

  constructor(
    private opts: ConversationOptions,
    private readonly ports: { live: LiveConnector; player: Player; mic: Mic; indicator: Indicator; echo?: EchoGate; tools?: ToolPort },
    private readonly log: Logger,
  ) {
    super();
    this.preroll = this.makePreroll();
    this.held = new PrerollBuffer(opts.rate, HELD_AUDIO_MAX_MS);
    this.vad = this.makeVad();
    ports.indicator.show('idle');
  }

  /** New settings (config reload). Timers already running keep their length; the next ones use the new values. */
  configure(opts: ConversationOptions): void {
    this.opts = opts;
    if (this.fault) { this.fault = null; this.ports.indicator.fault?.(false); } // the user acted: the next press tries again
    this.preroll = this.makePreroll();
    if (!this.link) this.vad = this.makeVad(); // mid-conversation the current VAD keeps its state
  }

  private makePreroll(): PrerollBuffer {
    return new PrerollBuffer(this.opts.rate, Math.max(this.opts.prerollMs, this.opts.trimWakeWord ? 0 : this.opts.wakeBeforeMs));
  }

  private makeVad(): EnergyVad {
    return new EnergyVad({ rate: this.opts.rate, thresholdDbfs: this.opts.vadThresholdDbfs, minSpeechMs: 60, silenceMs: this.opts.endOfSpeechMs });
  }

  get inConversation(): boolean { return this.link !== null; }

  /** Muted by the user: the state, or a muted speaker saying an announcement (it goes back to muted). */
  get muted(): boolean { return this.state === 'muted' || this.returnToMuted; }

  // ---- the home speaks (issue 24) ---------------------------------------------

  /**
   * Say `text` (an announcement, or with `listen` a question): the chime, a
   * short session told to say exactly that, no microphone audio sent while it
   * is said; then idle (announce) or listening as after a press (ask). Only
   * when no conversation is open (false otherwise: src/announce.ts waits).
   * Muted: said, and the microphone stays off (never listens). The end is the
   * 'spoken' event: spoken (heard to its end), failed (with the error sound and
   * pattern) or cut (a press, mute, stop, shutdown).
   */
  speak(id: number, text: string, listen: boolean): boolean {
    if (this.link) return false;
    this.returnToMuted = this.state === 'muted';
    this.saying = { id, text, listen: listen && !this.returnToMuted };
    this.log.info({ id, listen: this.saying.listen, muted: this.returnToMuted }, listen ? 'asking for the home' : 'announcing for the home');
    this.start(0);
    this.chime();
    return true;
  }

  private finishSaying(outcome: SpokenOutcome, detail: string): void {
    const s = this.saying;
    if (!s) return;
    this.saying = null;
    this.log.info({ id: s.id, outcome, detail }, outcome === 'spoken' ? 'the home\'s text was said' : 'the home\'s text was not said to its end');
    this.emit('spoken', s.id, outcome, detail);
  }

  // ---- user actions -------------------------------------------------------

  /** A short press (button, `ctl press`, SIGUSR1) or a wake word. */
  press(trigger: Trigger = 'button'): void {
    this.log.info({ trigger, state: this.state }, 'press');
    if (this.pressHook?.(trigger)) return;
    if (this.returnToMuted) { // a muted speaker saying an announcement: a press stops it, and it never listens
      if (this.link) this.end(`announcement stopped by ${trigger}`);
      else this.log.info('muted: press ignored (long press or `live-speaker ctl unmute` to unmute)');
      return;
    }
    switch (this.state) {
      case 'muted':
        this.log.info('muted: press ignored (long press or `live-speaker ctl unmute` to unmute)');
        return;
      case 'idle':
      case 'error':
        if (this.micDown) { this.fail(`microphone: ${this.micDown}`); return; } // nothing to send: say so at once
        this.start(this.opts.prerollMs);
        return;
      case 'connecting':
      case 'listening':
      case 'follow-up':
        this.end(`cancelled by ${trigger}`);
        return;
      case 'thinking':
      case 'speaking':
        this.bargeIn();
        return;
    }
  }

  /**
   * The wake word ended just now (the caller has fed every sample up to that
   * point and none after). Idle: start, sending from the end of the wake
   * word, or from wakeBeforeMs before it. During a reply: barge-in. Already
   * listening: nothing to do. Muted: never (the mic is off anyway).
   */
  wake(keyword: string): void {
    this.log.info({ trigger: 'wake', keyword, state: this.state }, 'wake word');
    if (this.pressHook?.('wake')) return;
    switch (this.state) {
      case 'idle':
      case 'error':
        if (this.micDown) return;
        this.start(this.opts.trimWakeWord ? 0 : this.opts.wakeBeforeMs);
        this.chime();
        return;
      case 'thinking':
      case 'speaking':
        this.bargeIn();
        this.chime();
        return;
      default:
        return;
    }
  }

  /**
   * Stop the reply at once and listen to the new turn (press or wake word
   * over a reply, or while it is thinking). The rest of the cut reply, or the
   * whole reply still coming, is dropped until the server ends that turn
   * (turnComplete or interrupted) or the user has finished a new question.
   */
  private bargeIn(): void {
    this.counters.bargeIns++;
    this.emit('interrupted', 'press');
    this.finishSaying('cut', 'the user pressed or spoke over it'); // from now on an ordinary conversation
    this.ending = false; // the user has more to say
    this.ports.player.flush();
    // A turn in flight (its audio so far was played): drop the rest until the server ends it.
    // One not begun (thinking) may never come: drop it until then, or until the user's next question is complete.
    if (this.replyAudio || this.state === 'thinking') {
      this.discardTurn = true;
      this.discardUntilQuestion = !this.replyAudio;
    }
    this.replyAudio = false;
    this.listen();
    // The user cut the reply to speak: their words go out at once, not after echo_tail_ms of zeros (half-duplex).
    // What may still arrive is the echo of what was heard before the cut, at most the echo path's delay.
    this.replyHeardUntil = -Infinity;
  }

  private chime(): void {
    if (!this.opts.wakeSound) return;
    this.notch = { filter: new ChimeNotch(this.opts.rate), until: monotonicMs() + this.opts.chimeGateMs };
    this.ports.player.play(this.opts.wakeSound);
    this.ports.player.finish(() => undefined);
  }

  toggleMute(): void { if (this.muted) this.unmute(); else this.mute(); }

  mute(): void {
    if (this.muted) return; // already muted (a muted speaker saying an announcement too: mute again does not cut it)
    if (this.link) this.end('muted');
    this.clearStateTimer();
    this.ports.mic.stop();
    this.preroll.clear();
    this.setState('muted');
  }

  unmute(): void {
    if (this.returnToMuted) { this.returnToMuted = false; this.ports.indicator.show(this.state); this.ports.mic.start(); this.emit('mute', false); return; } // saying an announcement: idle after it
    if (this.state !== 'muted') return;
    this.setState('idle');
    this.ports.mic.start();
  }

  // ---- audio in -----------------------------------------------------------

  micFrame(frame: Buffer): void {
    if (this.state === 'muted') return;
    if (this.saying) { this.preroll.push(frame); return; } // the home's text is being said: no audio leaves the device
    if (this.notch) {
      // The chime is playing: take its notes out of what the mic heard.
      if (monotonicMs() > this.notch.until) this.notch = null; else frame = this.notch.filter.process(frame);
    }
    if (this.state === 'connecting') { this.hold(frame); return; }
    if (!STREAMING_STATES.has(this.state)) { this.preroll.push(frame); return; }
    this.stream(frame);
  }

  /** Hold mic audio while the session is not up; past the cap the oldest goes, and that is logged once. */
  private hold(frame: Buffer): void {
    this.held.push(frame);
    if (this.held.dropped > 0 && !this.heldCapLogged) {
      this.heldCapLogged = true;
      this.log.warn({ heldMs: HELD_AUDIO_MAX_MS }, `still not connected: holding only the newest ${HELD_AUDIO_MAX_MS / 1000} s of microphone audio`);
    }
  }

  /** Send a frame and follow the user's speech on it (timeouts, listening/thinking). */
  private stream(frame: Buffer): void {
    if (this.replyEchoGated()) { frame = Buffer.alloc(frame.length); this.gatedFrames++; } // paced silence, not nothing
    else if (this.ports.echo?.residualEcho?.()) { frame = Buffer.alloc(frame.length); this.residualFrames++; }
    if (!this.send(frame)) return;
    const ev = this.vad.push(frame);
    if (ev === 'speech-start' && (this.state === 'listening' || this.state === 'follow-up' || this.state === 'thinking')) {
      this.clearStateTimer(); // someone is talking: no timeout while they do
      if (this.state !== 'listening') this.setState('listening');
    } else if (ev === 'speech-end' && this.state === 'listening') {
      if (this.discardUntilQuestion) this.discardTurn = false; // a new question is complete: what comes next answers it
      this.setState('thinking');
      if (this.toolsPending.size === 0) this.armStateTimer(this.opts.noSpeechTimeoutMs, 'no reply from the server'); // else: when the tools have answered
    }
  }

  /** The capture device failed (arecord exited; the adapter retries). */
  micFailed(reason: string): void {
    this.micDown = reason;
    if (this.link) this.fail(`microphone: ${reason}`);
  }

  micRecovered(): void { this.micDown = null; }

  /** The playback device failed: end this reply, keep the conversation. */
  playerFailed(reason: string): void {
    this.log.warn({ reason }, 'playback failed; reply dropped');
    this.lastError = { at: new Date().toISOString(), message: `speaker: ${reason}`, permanent: false };
    this.ports.player.flush();
    // The rest of a turn still coming is dropped; a turn the server has already completed has nothing more to drop.
    if (this.state === 'speaking') { if (this.replyAudio) this.discardTurn = true; this.discardUntilQuestion = false; this.replyAudio = false; this.listen(); }
  }

  // ---- conversation lifecycle ---------------------------------------------

  private start(prerollMs: number): void {
    this.counters.conversations++;
    this.timing = { pressAt: Date.now(), firstSentAt: null }; // wall-clock timestamps, for the bench to compare across processes; nothing is timed by them
    // The moment just before the trigger: the user may already be talking.
    this.held.clear();
    this.heldCapLogged = false;
    if (!this.saying) for (const f of this.preroll.drain(Math.floor((this.opts.rate * prerollMs) / 1000) * 2)) this.held.push(f);
    this.discardTurn = false;
    this.replyAudio = false;
    this.ending = false;
    this.attempts = 0;
    this.everOpened = false;
    this.linkOpenedAt = 0;
    this.goAwayDue = false;
    // Continuity (off by default, for privacy): a new conversation soon after the last one picks it up again.
    const recent = this.lastEnded && this.opts.resumeWithinMs > 0 && monotonicMs() - this.lastEnded.at < this.opts.resumeWithinMs;
    this.handle = recent && !this.saying ? this.lastEnded!.handle : null;
    this.vad.reset();
    this.ports.player.open(); // one stream for the whole conversation: open now, while the session connects
    this.setState('connecting');
    this.connectLink();
    this.maxTimer = setTimeout(() => this.end('conversation too long'), this.opts.maxConversationMs);
  }

  /** Open a connection for the current conversation (a new one, or resuming with the handle). */
  private connectLink(): void {
    const gen = ++this.linkGen;
    this.linkSentBytes = 0;
    const mine = (fn: (...a: any[]) => void) => (...a: any[]) => { if (gen === this.linkGen && this.link) fn(...a); };
    this.link = this.ports.live.connect({
      onOpen: mine(() => this.opened()),
      onAudio: mine((pcm: Buffer) => this.replyChunk(pcm)),
      onInterrupted: mine(() => this.interrupted()),
      onTurnComplete: mine(() => this.turnComplete()),
      onClose: mine((info: CloseInfo) => this.dropped(info)),
      onResumeHandle: mine((h: string) => { this.handle = h; }),
      onGoAway: mine((ms: number) => this.goAway(ms)),
      // Token counts are billed whenever they come: one after the end (or from a link left by a resume) still counts in the totals.
      onUsage: (u: UsageCounts) => this.emit('usage', u),
      onTurnText: mine((t: TurnText) => this.emit('transcript', t)),
      onToolCall: mine((calls: ToolCall[]) => this.toolCall(calls)),
      onToolCancel: mine((ids: string[]) => { this.ports.tools?.cancel(ids); for (const id of ids) this.toolsPending.delete(id); this.toolAnswersHeld = this.toolAnswersHeld.filter((r) => !ids.includes(r.id)); this.toolsSettled(); }),
    }, { resumeHandle: this.handle, ...(this.saying ? { instruction: SAY_INSTRUCTION } : {}) });
  }

  /**
   * The connection ended without us asking. Permanent causes fail at once
   * (no hammering); others resume the same conversation with the newest
   * handle, buffering the microphone meanwhile so nothing said is lost.
   */
  private dropped(info: CloseInfo): void {
    const what = `${info.summary ?? 'session closed'}: ${info.reason}${info.code !== undefined ? ` (code ${info.code})` : ''}`;
    if (info.permanent) { this.fail(what, true); return; }
    if (this.saying) { this.fail(what); return; } // resuming would say it again, or half of it: reported, not retried
    if (!this.everOpened) { this.fail(what); return; } // never got going: say so now rather than keep the user waiting
    // Only a link that itself came up and lived a while earns a fresh set of
    // attempts; reconnects that fail before (or right after) setup do not.
    if (this.linkOpenedAt > 0 && monotonicMs() - this.linkOpenedAt > STABLE_MS) this.attempts = 0;
    if (this.attempts >= RESUME_DELAYS_MS.length) { this.fail(what); return; }
    this.resume(what);
  }

  private resume(why: string): void {
    const delay = RESUME_DELAYS_MS[Math.min(this.attempts, RESUME_DELAYS_MS.length - 1)] * (0.75 + Math.random() * 0.5);
    this.attempts++;
    // sentBytes: mic audio handed to the link being left. After a drop, what of it the server had not yet read is lost:
    // the Developer API acknowledges no audio (transparent resumption, which would, is Vertex-only), so there is nothing to resend from.
    this.log.warn({ reason: why, attempt: this.attempts, handle: this.handle ? 'yes' : 'none', inMs: Math.round(delay), sentBytes: this.linkSentBytes }, 'Live session lost; resuming');
    this.linkGen++; // whatever the old link still says is ignored
    // Tools still running keep running: their answers are held and sent on the resumed session once it is open (opened()).
    const old = this.link;
    this.link = null;
    this.linkOpenedAt = 0;
    old?.close();
    this.goAwayDue = false;
    // A reply that was playing plays out; anything after it comes from the resumed session.
    if (this.replyAudio) this.ports.player.finish(() => undefined);
    this.replyAudio = false;
    this.discardTurn = false;
    this.clearStateTimer();
    this.setState('connecting'); // mic audio is held in `held` until the new connection is up
    this.link = WAITING_LINK; // still in a conversation while waiting (teardown clears the timer)
    this.resumeTimer = setTimeout(() => {
      this.resumeTimer = null;
      if (this.state === 'connecting' && this.link) { this.counters.resumed++; this.connectLink(); }
    }, delay);
  }

  /** The server will close soon: move to a new connection at the next quiet moment (not mid-reply). */
  private goAway(timeLeftMs: number): void {
    this.log.info({ timeLeftMs }, 'goAway from the Live API');
    if (this.state === 'speaking' || this.state === 'thinking' || this.toolsPending.size > 0) {
      this.goAwayDue = true;
      this.armResumeDeadline(timeLeftMs);
      return;
    }
    this.attempts = 0;
    this.resume('goAway');
  }

  private armResumeDeadline(timeLeftMs: number): void {
    const gen = this.linkGen;
    setTimeout(() => { if (gen === this.linkGen && this.goAwayDue && this.link) { this.attempts = 0; this.resume('goAway deadline'); } }, Math.max(0, timeLeftMs - 2000)).unref();
  }

  private opened(): void {
    if (this.state !== 'connecting') return;
    // The privacy light may still be on its way (a backend that confirms asynchronously):
    // stay connecting, holding the audio, until it is confirmed lit or has failed.
    const lighting = this.ports.indicator.lighting?.();
    if (lighting) { const gen = this.linkGen; void lighting.then(() => { if (gen === this.linkGen) this.opened(); }); return; }
    this.linkOpenedAt = monotonicMs();
    this.everOpened = true;
    this.heldCapLogged = false;
    if (this.fault) { this.fault = null; this.ports.indicator.fault?.(false); }
    if (this.saying) {
      // The home's text: sent as a user text turn; nothing from the microphone.
      this.setState('thinking');
      this.armStateTimer(this.opts.noSpeechTimeoutMs, 'no reply from the server');
      this.link?.sendText?.(sayTurn(this.saying.text));
      return;
    }
    this.setState('listening'); // LED first, then audio
    this.armStateTimer(this.opts.noSpeechTimeoutMs, 'no speech'); // before the held audio: speech in it clears it
    if (this.toolAnswersHeld.length) {
      const r = this.toolAnswersHeld;
      this.toolAnswersHeld = [];
      this.log.info({ ids: r.map((x) => x.id) }, 'tool answers sent on the resumed session');
      this.link?.sendToolResponse?.(r);
    }
    for (const f of this.held.drain()) this.stream(f);
  }

  /** Send one frame; false when it was refused (and the conversation ended). */
  private send(frame: Buffer): boolean {
    if (!this.link) return false;
    // The privacy promise, enforced where audio leaves: no lit listening LED, no audio.
    if (!this.ports.indicator.micLive) {
      this.log.error({ state: this.state, led: this.ports.indicator.ledProblem ?? null }, 'refusing to send audio: the listening (privacy) LED is not lit');
      this.fail(`privacy light: ${this.ports.indicator.ledProblem ?? 'the listening LED is not lit'}; refusing to stream`);
      return false;
    }
    if (this.timing.firstSentAt === null) this.timing.firstSentAt = Date.now();
    this.counters.bytesSent += frame.length;
    this.linkSentBytes += frame.length;
    this.link.sendAudio(frame);
    return true;
  }

  private replyChunk(pcm: Buffer): void {
    if (this.discardTurn) return;
    if (this.state === 'connecting' || this.state === 'idle') return;
    this.replyAudio = true;
    this.clearStateTimer();
    this.counters.bytesPlayed += pcm.length;
    this.turnBytes += pcm.length;
    if (this.state !== 'speaking') this.setState('speaking');
    this.ports.player.play(pcm);
  }

  // ---- tools (issue 12) ------------------------------------------------------

  /** The model calls functions: run them; each answer goes back on the link it came from, if that is still the current one. */
  private toolCall(calls: ToolCall[]): void {
    const tools = this.ports.tools;
    const conv = this.convGen;
    // To the current link if its session is up; while resuming, held until the new one is (the model still waits for them).
    const send = (r: ToolResponse[]) => {
      if (conv !== this.convGen || !this.link) return;
      if (this.linkOpenedAt > 0 && this.link !== WAITING_LINK) this.link.sendToolResponse?.(r);
      else this.toolAnswersHeld.push(...r);
    };
    if (!tools) { send(calls.map((c) => ({ id: c.id, name: c.name, response: { error: `unknown tool '${c.name}': this device has no tools` } }))); return; }
    // The model waits for the answers: no "no reply" timeout while a tool runs; re-armed once every call is answered or cancelled.
    for (const c of calls) this.toolsPending.add(c.id);
    // A timeout that would end the conversation (no speech, follow-up window, no reply) waits for the tools.
    const spec = this.stateTimerSpec;
    if (this.stateTimer && spec?.endReason) this.armStateTimer(spec.ms, spec.endReason);
    tools.call(calls, (r) => {
      if (conv !== this.convGen) return;
      send(r);
      for (const x of r) this.toolsPending.delete(x.id);
      this.toolsSettled();
    });
  }

  private toolsSettled(): void {
    if (this.toolsPending.size > 0) return;
    const d = this.deferredTimer;
    if (d) this.armStateTimer(d.ms, d.endReason);
    else if (this.state === 'thinking') this.armStateTimer(this.opts.noSpeechTimeoutMs, 'no reply from the server');
  }

  /** end_conversation: the goodbye being (or about to be) spoken plays to its last sample, then the conversation ends. */
  endAfterReply(): void {
    if (!this.link) return;
    // The goodbye already played to its end (the call came after it): end now rather than hold the mic open for the window.
    if (this.state === 'follow-up' && this.followUpAfterReply) { this.end('goodbye (end_conversation)', true); return; }
    this.ending = true;
    // Never at once: the goodbye may still come (after the answer). A turn that ends with no audio keeps waiting; the follow-up window bounds that.
    this.log.info({ state: this.state }, 'end_conversation: ending once the goodbye has been heard');
  }

  private interrupted(): void {
    this.counters.interrupted++;
    this.emit('interrupted', 'voice');
    this.ending = false; // the user spoke over the goodbye: they have more to say
    this.ports.player.flush();
    this.discardTurn = false; // the server has ended that turn itself
    this.replyAudio = false;
    this.turnBytes = 0;
    if (this.state === 'speaking' || this.state === 'thinking') this.listen();
    // The server heard the user start a new turn: the rest of their words must go out at once, not be replaced by
    // echo_tail_ms of zeros (half-duplex may be back on for the new playback stream the flush starts). Seen here: the
    // turn cut to 320 ms of a 1.6 s sentence, answered before the user had finished.
    this.replyHeardUntil = -Infinity;
    if (this.goAwayDue) { this.attempts = 0; this.resume('goAway'); }
  }

  private turnComplete(): void {
    this.counters.turns++;
    if (this.discardTurn) { this.discardTurn = false; return; } // the end of a reply we cut: keep listening
    const hadAudio = this.replyAudio;
    this.replyAudio = false;
    if (!hadAudio) this.followUp(false);
    else {
      this.ports.player.finish(() => { if (this.state === 'speaking') this.followUp(); });
      // Never stuck in 'speaking': if the player does not report the end in time, move on anyway.
      const gen = this.linkGen;
      const turn = this.counters.turns;
      const guardMs = (this.turnBytes / 2 / 24000) * 1000 + 3000;
      setTimeout(() => {
        if (gen !== this.linkGen || turn !== this.counters.turns || this.state !== 'speaking' || this.replyAudio) return;
        this.log.warn({ guardMs: Math.round(guardMs) }, 'playback did not report the end of the reply; moving on');
        this.ports.player.flush();
        this.followUp();
      }, guardMs).unref();
    }
    this.turnBytes = 0;
    if (this.goAwayDue) { this.attempts = 0; this.resume('goAway'); } // the reply plays out meanwhile
  }

  private listen(): void {
    this.vad.reset();
    this.setState('listening');
    this.armStateTimer(this.opts.noSpeechTimeoutMs, 'no speech');
  }

  private followUp(heardReply = true): void {
    if (this.saying) {
      // A turn with no audio (a tool call first): still waiting for the text to be said.
      if (!heardReply) { this.armStateTimer(this.opts.noSpeechTimeoutMs, 'no reply from the server'); return; }
      const { listen } = this.saying;
      this.finishSaying('spoken', 'heard to its end');
      if (!listen) { this.end('announcement said', true); return; }
      this.listen(); // ask: the answer, as after a press (then the follow-up rules)
      return;
    }
    if (this.ending && heardReply) { this.end('goodbye (end_conversation)', true); return; } // the goodbye's last sample has been heard
    if (this.opts.followUpMs <= 0) { this.end('reply done', heardReply); return; }
    this.vad.reset();
    this.followUpAfterReply = heardReply;
    this.setState('follow-up');
    this.armStateTimer(this.opts.followUpMs, 'follow-up window over');
  }

  /**
   * Close the session and go back to idle: the normal end of a conversation.
   * `heard`: the reply was played to its end by the player's timeline; what
   * the device still holds is then let play out, never dropped (the timeline
   * may run ahead of a loaded sound server by up to its slack).
   */
  end(reason: string, heard = false): void {
    this.log.info({ reason }, 'conversation ended');
    this.finishSaying('cut', reason);
    if (this.link) this.lastEnded = { at: monotonicMs(), handle: this.handle };
    this.teardown(heard);
    if (this.state !== 'muted') this.setState(this.returnToMuted ? 'muted' : 'idle');
  }

  /** Something went wrong: show the error pattern for a while, then idle. */
  private fail(message: string, permanent = false): void {
    this.counters.errors++;
    this.finishSaying('failed', message);
    this.lastError = { at: new Date().toISOString(), message, permanent };
    if (permanent) { this.fault = message; this.ports.indicator.fault?.(true); } // until a session opens again, or a reload
    this.log.warn({ error: message, permanent }, permanent ? 'conversation failed; not retrying until you act (press, or reload the config)' : 'conversation failed');
    this.teardown();
    this.setState('error');
    if (this.opts.errorSound) { this.ports.player.play(this.opts.errorSound); this.ports.player.finish(() => undefined); }
    this.armStateTimer(this.opts.errorDisplayMs, null);
  }

  private teardown(playOut = false): void {
    this.clearStateTimer();
    if (this.resumeTimer) { clearTimeout(this.resumeTimer); this.resumeTimer = null; }
    this.linkGen++;
    this.goAwayDue = false;
    this.handle = null;
    if (this.maxTimer) { clearTimeout(this.maxTimer); this.maxTimer = null; }
    const link = this.link;
    this.link = null;
    this.ending = false;
    this.toolsPending.clear();
    this.toolAnswersHeld = [];
    this.convGen++;
    this.ports.tools?.cancelAll();
    this.held.clear();
    this.discardTurn = false;
    this.replyAudio = false;
    if (!playOut) this.ports.player.flush();
    this.ports.player.close();
    link?.close();
  }

  /** Stop everything (daemon shutdown). */
  shutdown(): void {
    this.finishSaying('cut', 'shutdown');
    this.teardown();
    this.ports.mic.stop();
  }

  // ---- helpers --------------------------------------------------------------

  /** Half-duplex and a reply is playing, or its echo may still be arriving. */
  private replyEchoGated(): boolean {
    if (!this.ports.echo?.halfDuplex()) return false;
    return this.state === 'speaking' || monotonicMs() < this.replyHeardUntil + (this.opts.echoTailMs ?? 0);
  }

  private setState(s: State): void {
    if (s === this.state) return;
    const from = this.state;
    if (from === 'speaking') this.replyHeardUntil = monotonicMs(); // the reply was heard to its end, or dropped just now
    if (s === 'muted') this.returnToMuted = false; // back to muted: the state says it again
    this.state = s;
    // A muted speaker saying an announcement keeps showing muted (the listening LED off, micLive false: the
    // microphone is stopped); only a failure shows the error pattern.
    this.ports.indicator.show(this.returnToMuted && s !== 'error' ? 'muted' : s);
    this.log.info({ from, to: s }, 'state');
    this.emit('state', s, from);
  }

  private armStateTimer(ms: number, endReason: string | null): void {
    this.clearStateTimer();
    // While a tool runs (a non_blocking command may outlast the follow-up window) nothing ends the conversation under it.
    if (endReason !== null && this.toolsPending.size > 0) { this.deferredTimer = { ms, endReason }; return; }
    this.stateTimerSpec = { ms, endReason };
    this.stateTimer = setTimeout(() => {
      this.stateTimer = null;
      if (endReason === null) { if (this.state === 'error') this.setState(this.returnToMuted ? 'muted' : 'idle'); return; }
      if (this.saying) { this.fail(`announcement: ${endReason}`); return; } // the text never came: the error sound and pattern
      this.end(endReason);
    }, ms);
  }

  private clearStateTimer(): void {
    this.deferredTimer = null;
    if (this.stateTimer) { clearTimeout(this.stateTimer); this.stateTimer = null; }
  }
}
