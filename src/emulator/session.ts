/**
 * One client connection of the emulator, as the service sees it: the setup
 * handshake (model check, turn settings, resumption handle, setupComplete),
 * the dispatch of client messages, what the session records for tests, and
 * its close. The session's parts live next door: turns.ts (received audio,
 * VAD, utterances), reply.ts (the model's turn), tools.ts (function calls),
 * parrot.ts (parrot mode's replies); protocol.ts frames every message.
 */
import { EventEmitter } from 'node:events';
import { WebSocket, type RawData } from 'ws';
import { msForBytes } from '../audio/pcm.js';
import { bareModel } from '../live/models.js';
import type { LiveEmulator } from './emulator.js';
import type { ResolvedOptions } from './options.js';
import { parrot } from './parrot.js';
import {
  INPUT_RATE, INVALID_JSON, SETUP_FIRST, declaredFunctions, fragments, parseClientFrame, realtimeAudio, server, unknownModel,
} from './protocol.js';
import { Replies, type ReplyResult, type SendAudioOptions } from './reply.js';
import { SessionTools, type EmulatedCall } from './tools.js';
import { Turns } from './turns.js';

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
  // ---- text turns (issue 24: announcements)
  /** The text of every user text turn received (clientContent turns' text parts, joined), in order; also the 'client-text' event. */
  clientTexts: string[];
}

export class Session extends EventEmitter implements EmulatedSession {
  model = '';
  setup: any = null;
  receivedAt: number[] = [];
  firstAudioAt: number | null = null;
  lastAudioAt: number | null = null;
  utterances: Utterance[] = [];
  messages: any[] = [];
  audioMessages = 0;
  closed = false;
  closeCode: number | null = null;
  closeReason = '';
  resumedFrom: string | null = null;
  lastHandle: string | null = null;
  usageSent: Record<string, number>[] = [];
  toolResponses: any[] = [];
  clientTexts: string[] = [];

  private readonly turns: Turns;
  private readonly replies: Replies;
  private readonly tools: SessionTools;
  private handleCount = 0;

  constructor(
    readonly id: number,
    readonly key: string,
    private readonly ws: WebSocket,
    /** @internal */ readonly emu: LiveEmulator,
    private readonly opts: ResolvedOptions,
  ) {
    super();
    this.turns = new Turns(this, opts);
    this.replies = new Replies(this, opts);
    this.tools = new SessionTools(this, emu);
  }

  get received(): Buffer {
    return this.turns.received;
  }
  get receivedBase(): number {
    return this.turns.receivedBase;
  }
  get receivedBytes(): number {
    return this.turns.receivedBytes;
  }
  get replying(): boolean {
    return this.replies.replying;
  }

  /** @internal An event on this session, then on the emulator with the session first. */
  announce(event: string, ...args: unknown[]): void {
    this.emit(event, ...args);
    this.emu.emit(event, this, ...args);
  }

  /** @internal The emulator's log, with this session's id. */
  log(msg: string, data: object = {}): void {
    this.opts.log(msg, { session: this.id, ...data });
  }

  // ---- what tests (and the parts) send -----------------------------------

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
    this.send(server.goAway(timeLeftS));
  }

  sendAudio(pcm24k: Buffer, opts: SendAudioOptions = {}): Promise<ReplyResult> {
    return this.replies.send(pcm24k, opts);
  }

  interrupt(): void {
    this.replies.interrupt();
  }

  close(code = 1000, reason = ''): void {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      this.ws.close(code, reason);
    }
  }

  terminate(): void {
    this.ws.terminate();
  }

  get declaredTools(): string[] {
    return declaredFunctions(this.setup);
  }

  toolCall(calls: EmulatedCall[]): string[] {
    return this.tools.call(calls);
  }

  cancelToolCalls(ids: string[]): void {
    this.tools.cancel(ids);
  }

  toolResponse(id: string, timeoutMs = 5000): Promise<any> {
    return this.tools.response(id, timeoutMs);
  }

  /** @internal A new session resumption handle, when the setup asked for them. */
  sendResumptionUpdate(): void {
    if (!this.setup?.sessionResumption) return;
    this.lastHandle = `h-${this.id}-${++this.handleCount}`;
    this.send(server.resumptionUpdate(this.lastHandle));
  }

  // ---- inbound -------------------------------------------------------------

  /** @internal One WebSocket frame from the client. */
  onFrame(data: RawData): void {
    const parsed = parseClientFrame(data);
    if (!parsed) this.log('invalid JSON frame');
    const msg: any = parsed?.json;
    if (msg === null || typeof msg !== 'object') {
      this.close(INVALID_JSON.code, INVALID_JSON.reason);
      return;
    }
    if (this.setup === null) {
      this.messages.push(msg);
      if (!msg.setup || typeof msg.setup !== 'object') this.close(SETUP_FIRST.code, SETUP_FIRST.reason);
      else this.onSetup(msg.setup);
      return;
    }
    if (msg.realtimeInput) {
      this.onRealtimeInput(msg);
      return;
    }
    if (msg.toolResponse) this.tools.received(msg);
    if (msg.clientContent) this.onClientContent(msg.clientContent);
    // toolResponse, clientContent, a second setup, anything else: record only.
    this.messages.push(msg);
    this.announce('message', msg);
  }

  private onSetup(setup: any): void {
    this.setup = setup;
    this.model = typeof setup.model === 'string' ? setup.model : '';
    this.emu.setups.push(setup);
    if (this.opts.knownModels && !this.opts.knownModels.map(bareModel).includes(bareModel(this.model))) {
      // What the service does for a retired or unknown model: accept the socket, refuse the setup.
      this.log('unknown model', { model: this.model });
      this.emu.emit('model-rejected', this.model);
      const refusal = unknownModel(this.model);
      this.close(refusal.code, refusal.reason);
      return;
    }
    this.turns.configure(setup);
    if (typeof setup.sessionResumption?.handle === 'string') this.resumedFrom = setup.sessionResumption.handle;
    this.log('setup', { model: this.model, resumedFrom: this.resumedFrom });
    const complete = () => {
      if (this.closed) return;
      this.send(server.setupComplete());
      this.sendResumptionUpdate();
    };
    if (this.opts.setupDelayMs > 0) setTimeout(complete, this.opts.setupDelayMs); else complete();
    this.emu.addSession(this);
  }

  private onRealtimeInput(msg: any): void {
    const ri = msg.realtimeInput;
    const { audio, otherKeys } = realtimeAudio(ri);
    // Keep the message log small: audio payloads are only counted.
    if (audio.length === 0 || otherKeys.length > 0) {
      this.messages.push(audio.length ? { realtimeInput: Object.fromEntries(otherKeys.map((k) => [k, ri[k]])) } : msg);
    }
    this.turns.onRealtimeInput(ri, audio);
  }

  /**
   * A client text turn (an announcement: "Say exactly: ..."): its text is recorded and announced
   * ('client-text'); parrot mode answers it with audio (options.textReply).
   */
  private onClientContent(cc: any): void {
    const turns: any[] = Array.isArray(cc?.turns) ? cc.turns : [];
    const text = turns.filter((t) => t?.role !== 'model').flatMap((t) => (Array.isArray(t?.parts) ? t.parts : []))
      .map((p: any) => (typeof p?.text === 'string' ? p.text : '')).join('');
    if (!text) return;
    this.clientTexts.push(text);
    this.log('client-text', { chars: text.length });
    this.announce('client-text', text);
    if (this.opts.mode === 'parrot' && cc.turnComplete !== false) {
      const reply = this.opts.textReply(text, this);
      if (reply) void this.sendAudio(reply);
    }
  }

  /** @internal An utterance turns.ts cut: its inputTranscription, then parrot mode's reply. */
  onUtterance(u: Utterance): void {
    if (this.setup?.inputAudioTranscription || this.opts.transcribeUnasked) {
      const heard = this.opts.heard ? this.opts.heard(u, this) : `(speech ${(msForBytes(u.pcm.length, INPUT_RATE) / 1000).toFixed(1)} s)`;
      for (const text of heard ? fragments(heard) : []) this.send(server.inputTranscription(text));
    }
    this.announce('utterance', u);
    if (this.opts.mode === 'parrot') parrot(this, u, this.opts);
  }

  /** @internal The socket closed (either side). */
  onClosed(code: number, reason: string): void {
    if (this.closed) return;
    this.closed = true;
    this.closeCode = code;
    this.closeReason = reason;
    this.replies.stop();
    this.log('close', { code, reason });
    this.announce('close', code, reason);
  }
}
