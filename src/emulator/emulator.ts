/**
 * A loopback emulator of the Gemini Live API (BidiGenerateContent over a
 * WebSocket) that the real @google/genai SDK talks to when its baseUrl points
 * here. Used by the daemon's keyless "parrot" mode (it repeats what it heard),
 * by `live-speaker emulator`, and by tests/benchmarks that script replies.
 *
 * What it reproduces from the service (see docs live-api-protocol.md):
 * setup/setupComplete, server-side VAD turn detection on the received audio,
 * streamed 24 kHz modelTurn audio chunks, generationComplete/turnComplete,
 * barge-in ("interrupted"), session resumption handles, close codes for bad
 * keys, bad first frames and unknown models, input/output transcription and
 * usageMetadata per turn, function calls (toolCall, toolCallCancellation)
 * and their toolResponses. Turn detection runs on sample positions, not on
 * arrival time, so tests may send audio faster than real time.
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, WebSocket, type RawData } from 'ws';
import { EnergyVad, type VadOptions, type VadTransition } from '../audio/vad.js';
import { bytesForMs, goertzelPower, msForBytes, resample } from '../audio/pcm.js';
import { bareModel, modelRejectionReason } from '../live/models.js';

/** Input rate the Live API works at (client audio at other rates is resampled to it). */
export const INPUT_RATE = 16000;
/** Output rate of the Live API's audio. */
export const OUTPUT_RATE = 24000;
/** Audio kept before the detected start of speech, as the service's prefix padding does. */
export const UTTERANCE_PAD_MS = 200;

export const BAD_KEY_REASON = 'API key not valid. Please pass a valid API key.';

export interface EmulatorOptions {
  /** 0 = ephemeral (default). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** parrot (default): reply to each utterance automatically. scripted: never reply by itself. */
  mode?: 'parrot' | 'scripted';
  /**
   * VAD settings. Defaults: thresholdDbfs -45, minSpeechMs 60, silenceMs =
   * setup.realtimeInputConfig.automaticActivityDetection.silenceDurationMs or 500.
   * An explicit value here wins over the setup's.
   */
  vad?: Partial<VadOptions>;
  /** Audio per modelTurn message, in ms of 24 kHz audio. Default 40. */
  replyChunkMs?: number;
  /** How much faster than real time reply chunks are sent. Default 2; Infinity = all at once. */
  replySpeed?: number;
  /** 24 kHz s16le reply for an utterance (parrot mode). Default: the utterance resampled 16k->24k. null = no reply. */
  reply?: (u: Utterance, session: EmulatedSession) => Buffer | null;
  /** Default: any key. When false the socket is closed with 1008 BAD_KEY_REASON. */
  acceptKey?: (key: string) => boolean;
  log?: (msg: string, data?: object) => void;
  /** Delay before setupComplete, like a slow network or a cold server (tests of pre-roll). Default 0. */
  setupDelayMs?: number;
  /**
   * Keep every received byte in session.received (default true, for tests).
   * The long-running product emulator sets false: then only a rolling window
   * needed to cut utterances is kept and session.receivedBase says where it starts.
   */
  recordAudio?: boolean;
  /** How many closed sessions stay in `sessions` (default Infinity); older ones are dropped. */
  keepClosedSessions?: number;
  // ---- issue 12: models, transcription, usage
  /**
   * Models served (with or without "models/"). Any other is refused as the
   * service does: close 1008 "models/X is not found for API version v1beta, or
   * is not supported for bidiGenerateContent..." Default: any model.
   */
  knownModels?: string[];
  /**
   * What it "heard" (inputTranscription) for an utterance, sent in fragments
   * when the setup asks for inputAudioTranscription. Parrot mode cannot
   * recognise speech: default "(speech N.N s)"; tests script a text per turn.
   */
  heard?: (u: Utterance, session: EmulatedSession) => string | null;
  /** Fault test: send transcription even when the setup did not ask for it (a client must not log what it did not ask for). */
  transcribeUnasked?: boolean;
  /** What it "said" (outputTranscription) for a reply, when asked for. Default "(reply N.N s)"; sendAudio's `said` wins. */
  said?: (pcm24k: Buffer, session: EmulatedSession) => string | null;
  /** usageMetadata sent before each completed turn's turnComplete; false = none. Default: 25 tokens per second of audio. */
  usage?: false | ((turn: { session: EmulatedSession; inputBytes: number; replyBytes: number }) => Record<string, number>);
  /**
   * Parrot mode (tools, issue 12): an utterance that is mostly a pure tone of
   * `hz` stands for a spoken request: the emulator calls the function `call`
   * (if the session declared it) and, once it has the answer, says the
   * utterance back as its reply. Default PARROT_TOOL_TONES; [] = none.
   */
  toolTones?: ToolTone[];
  /**
   * Tests (fault and fuzz tests): every server message the emulator is about
   * to send is given to this hook first, and the frames it returns are sent
   * in its place: the message itself, others before or after it (objects are
   * sent as JSON, strings and Buffers as they are), or none.
   */
  serverFrames?: (msg: object, session: EmulatedSession) => (object | string | Buffer)[];
}

// ---- tools (issue 12)
export interface ToolTone { hz: number; call: { name: string; args?: Record<string, unknown> } }
/** The parrot's "keyword": a steady 1400 Hz tone sets a 5-second timer (the demo plays one). */
export const PARROT_TOOL_TONES: ToolTone[] = [{ hz: 1400, call: { name: 'set_timer', args: { seconds: 5, label: 'demo' } } }];
/** A function call the emulator makes (id made up when not given). */
export interface EmulatedCall { name: string; args?: Record<string, unknown>; id?: string }

export interface Utterance {
  index: number;
  /** 16 kHz s16le mono, from speech start minus UTTERANCE_PAD_MS to speech end. */
  pcm: Buffer;
  /** Absolute byte positions in the session's received audio. */
  startByte: number;
  endByte: number;
  /** Date.now() when the end of speech was detected. */
  detectedAt: number;
}

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

export interface EmulatedSession extends EventEmitter {
  id: number;
  model: string;
  /** The parsed setup message (contents of {"setup": ...}); null until it arrives. */
  setup: any;
  /** API key from the URL. */
  key: string;
  /** Every audio byte received (decoded, 16 kHz), or with recordAudio=false the retained tail. */
  readonly received: Buffer;
  /** Absolute byte position of received[0] (0 unless recordAudio=false trimmed it). */
  readonly receivedBase: number;
  /** Total audio bytes received. */
  readonly receivedBytes: number;
  /** Date.now() per audio message (empty when recordAudio=false). */
  receivedAt: number[];
  firstAudioAt: number | null;
  lastAudioAt: number | null;
  utterances: Utterance[];
  /** Every parsed client message except audio-only realtimeInput (counted in audioMessages). */
  messages: any[];
  audioMessages: number;
  replying: boolean;
  closed: boolean;
  closeCode: number | null;
  closeReason: string;
  /** Handle given in setup.sessionResumption.handle, if any. */
  resumedFrom: string | null;
  /** Last resumption handle sent, if any. */
  lastHandle: string | null;
  /** Every usageMetadata this session sent, in order. */
  usageSent: Record<string, number>[];
  /** Send a raw server message as a JSON text frame. */
  send(msg: object): void;
  sendRaw(data: string | Buffer): void;
  goAway(timeLeftS?: number): void;
  /**
   * Stream 24 kHz audio as modelTurn inlineData chunks, then generationComplete
   * + turnComplete unless interrupted. Calls are queued one after another.
   */
  sendAudio(pcm24k: Buffer, opts?: SendAudioOptions): Promise<ReplyResult>;
  /** Stop the current (and any queued) reply and send {serverContent:{interrupted:true}}. */
  interrupt(): void;
  close(code?: number, reason?: string): void;
  /** Drop the TCP connection without a close frame. */
  terminate(): void;
  // ---- tools (issue 12)
  /** Names of the functions declared in the setup (tools[].functionDeclarations). */
  readonly declaredTools: string[];
  /** Every functionResponse received (toolResponse), in order. */
  toolResponses: any[];
  /** Send one toolCall holding these calls (several = parallel calls); returns their ids. */
  toolCall(calls: EmulatedCall[]): string[];
  /** Send toolCallCancellation for these ids. */
  cancelToolCalls(ids: string[]): void;
  /** The functionResponse for `id` (already received, or the next one); rejects after timeoutMs. */
  toolResponse(id: string, timeoutMs?: number): Promise<any>;
}

interface ResolvedOptions {
  mode: 'parrot' | 'scripted';
  vad: Partial<VadOptions>;
  replyChunkMs: number;
  replySpeed: number;
  reply: ((u: Utterance, session: EmulatedSession) => Buffer | null) | undefined;
  acceptKey: (key: string) => boolean;
  log: (msg: string, data?: object) => void;
  recordAudio: boolean;
  keepClosedSessions: number;
  setupDelayMs: number;
  knownModels: string[] | null;
  transcribeUnasked: boolean;
  heard: ((u: Utterance, session: EmulatedSession) => string | null) | undefined;
  said: ((pcm24k: Buffer, session: EmulatedSession) => string | null) | undefined;
  usage: false | ((turn: { session: EmulatedSession; inputBytes: number; replyBytes: number }) => Record<string, number>);
  toolTones: ToolTone[];
  serverFrames: ((msg: object, session: EmulatedSession) => (object | string | Buffer)[]) | undefined;
}

/** Text in two fragments (as the service streams transcription in pieces). */
function fragments(text: string): string[] {
  const cut = text.indexOf(' ', Math.floor(text.length / 2));
  return cut > 0 ? [text.slice(0, cut), text.slice(cut)] : [text];
}

/** The default usage: 25 tokens per second of audio in (this turn) and out. */
const defaultUsage = ({ inputBytes, replyBytes }: { inputBytes: number; replyBytes: number }) => {
  const promptTokenCount = Math.ceil(msForBytes(inputBytes, INPUT_RATE) / 40);
  const responseTokenCount = Math.ceil(msForBytes(replyBytes, OUTPUT_RATE) / 40);
  return { promptTokenCount, responseTokenCount, totalTokenCount: promptTokenCount + responseTokenCount };
};

/** Rate from a mimeType like "audio/pcm;rate=16000"; null if absent. */
function mimeRate(mimeType: unknown): number | null {
  if (typeof mimeType !== 'string') return null;
  const m = /rate=(\d+)/.exec(mimeType);
  return m ? Number(m[1]) : null;
}

class Session extends EventEmitter implements EmulatedSession {
  model = '';
  setup: any = null;
  receivedAt: number[] = [];
  firstAudioAt: number | null = null;
  lastAudioAt: number | null = null;
  utterances: Utterance[] = [];
  messages: any[] = [];
  audioMessages = 0;
  replying = false;
  closed = false;
  closeCode: number | null = null;
  closeReason = '';
  resumedFrom: string | null = null;
  lastHandle: string | null = null;
  usageSent: Record<string, number>[] = [];
  private usageFrom = 0; // received bytes already counted in a usage message
  toolResponses: any[] = [];
  private callCount = 0;

  private chunks: Buffer[] = [];
  private base = 0; // absolute byte offset of chunks[0]
  private total = 0; // absolute bytes received
  private vad: EnergyVad | null = null;
  private manualActivity = false; // client-side VAD: activityStart/activityEnd mark turns
  private interruptOnSpeech = true;
  private speechStartByte: number | null = null;
  private handleCount = 0;
  // Bumped by interrupt()/close: a reply whose epoch is stale stops sending.
  private replyEpoch = 0;
  private replyChain: Promise<unknown> = Promise.resolve();
  private wake: (() => void) | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;

  constructor(
    readonly id: number,
    readonly key: string,
    private readonly ws: WebSocket,
    private readonly emu: LiveEmulator,
    private readonly opts: ResolvedOptions,
  ) {
    super();
  }

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

  send(msg: object): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    if (!this.opts.serverFrames) { this.ws.send(JSON.stringify(msg)); return; }
    for (const f of this.opts.serverFrames(msg, this)) this.ws.send(typeof f === 'string' || Buffer.isBuffer(f) ? f : JSON.stringify(f));
  }

  /** A raw frame, e.g. garbage that is not JSON (fault tests). */
  sendRaw(data: string | Buffer): void {
    if (this.ws.readyState !== WebSocket.OPEN) return;
    this.ws.send(data);
  }

  /** `goAway` with the time left, as the service sends about a minute before it closes. */
  goAway(timeLeftS = 50): void {
    this.send({ goAway: { timeLeft: `${timeLeftS}s` } });
  }

  sendAudio(pcm24k: Buffer, opts: SendAudioOptions = {}): Promise<ReplyResult> {
    const epoch = this.replyEpoch;
    const run = this.replyChain.then(() => this.streamReply(pcm24k, epoch, opts));
    this.replyChain = run.catch(() => undefined);
    return run;
  }

  interrupt(): void {
    this.replyEpoch++;
    this.replying = false;
    this.wakeUp();
    this.send({ serverContent: { interrupted: true } });
    const at = Date.now();
    this.opts.log('interrupted', { session: this.id, atByte: this.total });
    this.emit('interrupted', at, this.total);
    this.emu.emit('interrupted', this, at, this.total);
  }

  close(code = 1000, reason = ''): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(code, reason);
    }
  }

  terminate(): void {
    this.ws.terminate();
  }

  // ---- tools (issue 12) ---------------------------------------------------

  get declaredTools(): string[] {
    const tools: any[] = Array.isArray(this.setup?.tools) ? this.setup.tools : [];
    return tools.flatMap((t) => (Array.isArray(t?.functionDeclarations) ? t.functionDeclarations.map((d: any) => String(d?.name)) : []));
  }

  toolCall(calls: EmulatedCall[]): string[] {
    const functionCalls = calls.map((c) => ({ id: c.id ?? `fc-${this.id}-${++this.callCount}`, name: c.name, args: c.args ?? {} }));
    this.send({ toolCall: { functionCalls } });
    this.opts.log('tool-call', { session: this.id, calls: functionCalls.map((c) => `${c.id} ${c.name}`) });
    this.emit('tool-call', functionCalls);
    this.emu.emit('tool-call', this, functionCalls);
    return functionCalls.map((c) => c.id);
  }

  cancelToolCalls(ids: string[]): void {
    this.send({ toolCallCancellation: { ids } });
    this.opts.log('tool-call-cancellation', { session: this.id, ids });
  }

  toolResponse(id: string, timeoutMs = 5000): Promise<any> {
    const seen = this.toolResponses.find((r) => r?.id === id);
    if (seen) return Promise.resolve(seen);
    return this.emu.waitFor('tool-response', (s, r) => s === this && r?.id === id, timeoutMs).then(([, r]) => r);
  }

  private onToolResponse(msg: any): void {
    for (const r of Array.isArray(msg.toolResponse?.functionResponses) ? msg.toolResponse.functionResponses : []) {
      this.toolResponses.push(r);
      this.opts.log('tool-response', { session: this.id, id: r?.id, name: r?.name });
      this.emit('tool-response', r);
      this.emu.emit('tool-response', this, r);
    }
  }

  /** Parrot mode: an utterance that is mostly one of the tool tones calls its function, and replies once answered. */
  private parrotToolCall(u: Utterance): boolean {
    const declared = this.declaredTools;
    const x = u.pcm;
    let energy = 0;
    for (let i = 0; i + 1 < x.length; i += 2) energy += (x.readInt16LE(i) / 32767) ** 2;
    const mean = energy / Math.max(1, x.length / 2);
    for (const t of this.opts.toolTones) {
      if (!declared.includes(t.call.name) || mean < 1e-5) continue;
      // A pure tone of amplitude A has mean square A²/2 and Goertzel power about A²: most of the energy at hz.
      if (goertzelPower(x, INPUT_RATE, t.hz) < 0.5 * 2 * mean) continue;
      const [id] = this.toolCall([t.call]);
      const reply = this.opts.reply ? this.opts.reply(u, this) : resample(u.pcm, INPUT_RATE, OUTPUT_RATE);
      void this.toolResponse(id, 30_000).then(() => { if (reply) void this.sendAudio(reply); }, () => undefined);
      return true;
    }
    return false;
  }

  // ---- inbound ---------------------------------------------------------

  onFrame(data: RawData): void {
    let msg: any;
    try {
      // Text and binary frames both carry JSON.
      const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
      const text = buf.toString('utf8');
      msg = JSON.parse(text);
    } catch {
      this.opts.log('invalid JSON frame', { session: this.id });
      this.close(1007, 'Invalid JSON payload received.');
      return;
    }
    if (msg === null || typeof msg !== 'object') {
      this.close(1007, 'Invalid JSON payload received.');
      return;
    }
    if (this.setup === null) {
      if (!msg.setup || typeof msg.setup !== 'object') {
        this.messages.push(msg);
        this.close(1007, 'Request contains an invalid argument: the first message must be setup.');
        return;
      }
      this.messages.push(msg);
      this.onSetup(msg.setup);
      return;
    }
    if (msg.realtimeInput) {
      this.onRealtimeInput(msg);
      return;
    }
    if (msg.toolResponse) this.onToolResponse(msg);
    // toolResponse, clientContent, a second setup, anything else: record only.
    this.messages.push(msg);
    this.emit('message', msg);
    this.emu.emit('message', this, msg);
  }

  private onSetup(setup: any): void {
    this.setup = setup;
    this.model = typeof setup.model === 'string' ? setup.model : '';
    this.emu.setups.push(setup);
    if (this.opts.knownModels && !this.opts.knownModels.map(bareModel).includes(bareModel(this.model))) {
      // What the service does for a retired or unknown model: accept the socket, refuse the setup.
      this.opts.log('unknown model', { session: this.id, model: this.model });
      this.emu.emit('model-rejected', this.model);
      this.close(1008, modelRejectionReason(this.model));
      return;
    }
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
    if (typeof setup.sessionResumption?.handle === 'string') this.resumedFrom = setup.sessionResumption.handle;
    this.opts.log('setup', { session: this.id, model: this.model, resumedFrom: this.resumedFrom });
    const complete = () => {
      if (this.closed) return;
      this.send({ setupComplete: {} });
      this.sendResumptionUpdate();
    };
    if (this.opts.setupDelayMs > 0) setTimeout(complete, this.opts.setupDelayMs); else complete();
    this.emu.addSession(this);
  }

  private onRealtimeInput(msg: any): void {
    const ri = msg.realtimeInput;
    const blobs: any[] = [];
    if (ri.audio) blobs.push(ri.audio);
    if (Array.isArray(ri.mediaChunks)) blobs.push(...ri.mediaChunks);
    const audio = blobs.filter(
      (b) => b && typeof b.data === 'string' && (typeof b.mimeType !== 'string' || b.mimeType.startsWith('audio/')),
    );
    const otherKeys = Object.keys(ri).filter((k) => k !== 'audio' && k !== 'mediaChunks');
    // Keep the message log small: audio payloads are only counted.
    if (audio.length === 0 || otherKeys.length > 0) {
      this.messages.push(audio.length ? { realtimeInput: Object.fromEntries(otherKeys.map((k) => [k, ri[k]])) } : msg);
    }
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
    const rate = mimeRate(mimeType) ?? INPUT_RATE;
    if (rate !== INPUT_RATE) pcm = resample(pcm, rate, INPUT_RATE);
    const now = Date.now();
    this.audioMessages++;
    this.firstAudioAt ??= now;
    this.lastAudioAt = now;
    if (this.opts.recordAudio) this.receivedAt.push(now);
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
    this.opts.log('speech-start', { session: this.id, atByte });
    this.emit('speech-start', atByte);
    this.emu.emit('speech-start', this, atByte);
    // Barge-in: the service's default START_OF_ACTIVITY_INTERRUPTS.
    if (this.replying && this.interruptOnSpeech) this.interrupt();
  }

  private onSpeechEnd(startByte: number, endByte: number): void {
    this.speechStartByte = null;
    startByte = Math.max(startByte, this.base);
    const u: Utterance = {
      index: this.utterances.length,
      pcm: Buffer.from(this.received.subarray(startByte - this.base, Math.max(startByte, endByte) - this.base)),
      startByte,
      endByte,
      detectedAt: Date.now(),
    };
    this.utterances.push(u);
    this.opts.log('utterance', { session: this.id, index: u.index, ms: msForBytes(u.pcm.length, INPUT_RATE) });
    if (this.setup?.inputAudioTranscription || this.opts.transcribeUnasked) {
      const heard = this.opts.heard ? this.opts.heard(u, this) : `(speech ${(msForBytes(u.pcm.length, INPUT_RATE) / 1000).toFixed(1)} s)`;
      for (const text of heard ? fragments(heard) : []) this.send({ serverContent: { inputTranscription: { text } } });
    }
    this.emit('utterance', u);
    this.emu.emit('utterance', this, u);
    if (this.opts.mode === 'parrot' && this.opts.toolTones.length && this.parrotToolCall(u)) return;
    if (this.opts.mode === 'parrot') {
      const reply = this.opts.reply ? this.opts.reply(u, this) : resample(u.pcm, INPUT_RATE, OUTPUT_RATE);
      if (reply) void this.sendAudio(reply);
    }
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

  // ---- outbound audio ---------------------------------------------------

  private async streamReply(pcm: Buffer, epoch: number, opts: SendAudioOptions): Promise<ReplyResult> {
    if (this.closed) return 'closed';
    if (epoch !== this.replyEpoch) return 'interrupted';
    const chunkMs = opts.chunkMs ?? this.opts.replyChunkMs;
    const speed = opts.speed ?? this.opts.replySpeed;
    const chunkBytes = Math.max(2, bytesForMs(chunkMs, OUTPUT_RATE));
    this.replying = true;
    const t0 = Date.now();
    this.opts.log('reply-start', { session: this.id, bytes: pcm.length });
    this.emit('reply-start', t0);
    this.emu.emit('reply-start', this, t0);
    const said = this.setup?.outputAudioTranscription || this.opts.transcribeUnasked
      ? opts.said ?? (this.opts.said ? this.opts.said(pcm, this) : `(reply ${(msForBytes(pcm.length, OUTPUT_RATE) / 1000).toFixed(1)} s)`)
      : null;
    const saidParts = said ? fragments(said) : [];
    if (saidParts.length) this.send({ serverContent: { outputTranscription: { text: saidParts.shift() } } });
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
      if (this.closed) {
        result = 'closed';
        break;
      }
      if (epoch !== this.replyEpoch) {
        result = 'interrupted';
        break;
      }
      const chunk = pcm.subarray(off, Math.min(pcm.length, off + chunkBytes));
      this.send({
        serverContent: {
          modelTurn: { parts: [{ inlineData: { mimeType: `audio/pcm;rate=${OUTPUT_RATE}`, data: chunk.toString('base64') } }] },
        },
      });
      const at = Date.now();
      this.emit('reply-chunk', at, chunk.length);
      this.emu.emit('reply-chunk', this, at, chunk.length);
    }
    if (result === 'complete' && this.closed) result = 'closed';
    if (result === 'complete' && epoch !== this.replyEpoch) result = 'interrupted';
    if (result === 'complete') {
      for (const text of saidParts) this.send({ serverContent: { outputTranscription: { text } } });
      if (this.opts.usage) {
        const usage = this.opts.usage({ session: this, inputBytes: this.total - this.usageFrom, replyBytes: pcm.length });
        this.usageFrom = this.total;
        this.usageSent.push(usage);
        this.send({ usageMetadata: usage });
        this.emu.emit('usage', this, usage);
      }
      this.send({ serverContent: { generationComplete: true } });
      this.send({ serverContent: { turnComplete: true } });
      this.sendResumptionUpdate();
    }
    // interrupt() already cleared `replying`; a newer reply may own it now.
    if (epoch === this.replyEpoch) this.replying = false;
    this.opts.log('reply-end', { session: this.id, result });
    this.emit('reply-end', result);
    this.emu.emit('reply-end', this, result);
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

  private sendResumptionUpdate(): void {
    if (!this.setup?.sessionResumption) return;
    this.lastHandle = `h-${this.id}-${++this.handleCount}`;
    this.send({ sessionResumptionUpdate: { newHandle: this.lastHandle, resumable: true } });
  }

  onClosed(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCode = code;
    this.closeReason = reason;
    this.replyEpoch++;
    this.replying = false;
    this.wakeUp();
    this.opts.log('close', { session: this.id, code, reason });
    this.emit('close', code, reason);
    this.emu.emit('close', this, code, reason);
  }
}

/**
 * Events (all with the session first): 'session'(s) after setup,
 * 'speech-start'(s, atByte), 'utterance'(s, u), 'interrupted'(s, atMs, atByte),
 * 'reply-start'(s, atMs), 'reply-chunk'(s, atMs, bytes), 'reply-end'(s, result),
 * 'message'(s, msg) for non-audio client messages, 'close'(s, code, reason),
 * 'tool-call'(s, functionCalls) and 'tool-response'(s, functionResponse)
 * (tools, issue 12), 'rejected'(key) for refused keys, 'model-rejected'(model) for a model not in
 * knownModels, and 'usage'(s, usageMetadata) for each usage message sent. atMs values are Date.now().
 */
export class LiveEmulator extends EventEmitter {
  sessions: EmulatedSession[] = [];
  /** Every setup message received, in order, including those refused (unknown model). */
  setups: any[] = [];
  connections = 0;
  /** An outage that still accepts TCP: every new WebSocket is dropped at once, before its setup (tests). */
  dropNewConnections = false;
  readonly port: number;
  readonly url: string;

  private readonly server: http.Server;
  private readonly wss: WebSocketServer;
  private readonly opts: ResolvedOptions;
  private readonly sockets = new Set<WebSocket>();
  private nextId = 1;
  private closing: Promise<void> | null = null;

  private constructor(server: http.Server, wss: WebSocketServer, opts: ResolvedOptions, host: string) {
    super();
    this.server = server;
    this.wss = wss;
    this.opts = opts;
    this.port = (server.address() as AddressInfo).port;
    const urlHost = ['0.0.0.0', '::', 'localhost', '127.0.0.1'].includes(host) ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    this.url = `http://${urlHost}:${this.port}`;
  }

  static async start(options: EmulatorOptions = {}): Promise<LiveEmulator> {
    const opts: ResolvedOptions = {
      mode: options.mode ?? 'parrot',
      vad: options.vad ?? {},
      replyChunkMs: options.replyChunkMs ?? 40,
      replySpeed: options.replySpeed ?? 2,
      reply: options.reply,
      acceptKey: options.acceptKey ?? (() => true),
      log: options.log ?? (() => undefined),
      recordAudio: options.recordAudio ?? true,
      keepClosedSessions: options.keepClosedSessions ?? Infinity,
      setupDelayMs: options.setupDelayMs ?? 0,
      knownModels: options.knownModels ?? null,
      transcribeUnasked: options.transcribeUnasked ?? false,
      heard: options.heard,
      said: options.said,
      usage: options.usage === false ? false : options.usage ?? defaultUsage,
      toolTones: options.toolTones ?? PARROT_TOOL_TONES,
      serverFrames: options.serverFrames,
    };
    const host = options.host ?? '127.0.0.1';
    // Plain HTTP requests get 404 like an unknown path would.
    const server = http.createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n');
    });
    const wss = new WebSocketServer({ noServer: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const emu = new LiveEmulator(server, wss, opts, host);
    server.on('upgrade', (req, socket, head) => emu.onUpgrade(req, socket, head));
    opts.log('listening', { url: emu.url });
    return emu;
  }

  /**
   * Resolves with the event's arguments the next time `event` fires and
   * `pred` (if given) accepts them; rejects after timeoutMs (default 5000).
   * Only future events count: call it before triggering what it waits for.
   */
  waitFor(event: string, pred?: (...args: any[]) => boolean, timeoutMs = 5000): Promise<any[]> {
    return new Promise((resolve, reject) => {
      const onEvent = (...args: any[]): void => {
        let ok: boolean;
        try {
          ok = pred ? pred(...args) : true;
        } catch (err) {
          cleanup();
          reject(err);
          return;
        }
        if (ok) {
          cleanup();
          resolve(args);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`LiveEmulator.waitFor('${event}'${pred ? ', <predicate>' : ''}) timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off(event, onEvent);
      };
      this.on(event, onEvent);
    });
  }

  /** Close every session (1001), then the server. Leaves no handles open. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const open = [...this.sockets];
    const allClosed = Promise.all(
      open.map((ws) => new Promise<void>((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve() : ws.once('close', () => resolve())))),
    );
    for (const ws of open) ws.close(1001, 'Emulator shutting down');
    // A client that never answers the close frame must not hold us up.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([allClosed, new Promise<void>((r) => (timer = setTimeout(r, 500)))]);
    clearTimeout(timer);
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    // libuv releases the listening handle in its close phase, after the
    // 'close' callback: let two turns pass so callers that check for open
    // handles right after `await close()` see none.
    for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
    this.opts.log('closed');
  }

  /** @internal called by a session once its setup arrived. */
  addSession(s: EmulatedSession): void {
    this.sessions.push(s);
    this.emit('session', s);
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    // Not `new URL(req.url)`: the SDK's path starts with "//", which URL
    // would read as a host name.
    const raw = req.url ?? '';
    const q = raw.indexOf('?');
    const path = q >= 0 ? raw.slice(0, q) : raw;
    const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
    if (this.closing || !path.includes('BidiGenerateContent')) {
      this.opts.log('rejected upgrade', { path });
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      socket.destroy();
      return;
    }
    const headerKey = req.headers['x-goog-api-key'];
    const key = query.get('key') ?? query.get('access_token') ?? (typeof headerKey === 'string' ? headerKey : '');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, key));
  }

  /** WebSockets open right now (with or without a session). */
  get openConnections(): number { return this.sockets.size; }

  private onConnection(ws: WebSocket, key: string): void {
    this.connections++;
    this.sockets.add(ws);
    ws.on('close', () => this.sockets.delete(ws));
    ws.on('error', (err) => this.opts.log('socket error', { error: String(err) }));
    if (this.dropNewConnections) { ws.terminate(); return; }
    if (!this.opts.acceptKey(key)) {
      // The service accepts the WebSocket, then closes it with a policy error.
      this.opts.log('rejected key', { key });
      this.emit('rejected', key);
      ws.close(1008, BAD_KEY_REASON);
      return;
    }
    const s = new Session(this.nextId++, key, ws, this, this.opts);
    ws.on('message', (data) => s.onFrame(data));
    ws.on('close', (code, reason) => {
      s.onClosed(code, reason.toString('utf8'));
      this.pruneClosed();
    });
  }

  private pruneClosed(): void {
    const closed = this.sessions.filter((s) => s.closed);
    let excess = closed.length - this.opts.keepClosedSessions;
    if (excess <= 0) return;
    this.sessions = this.sessions.filter((s) => !(s.closed && excess-- > 0));
  }
}
