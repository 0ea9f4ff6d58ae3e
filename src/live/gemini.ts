// The Live session, through the real @google/genai SDK. One connect() per
// WebSocket; what comes back is translated into the conversation's handler
// calls. Also here: how a close is classified (permanent: do not retry on
// your own; transient: resume), and answers to tool calls we do not know.
// Audio out is 16 kHz s16le, audio in 24 kHz.
import { ActivityHandling, Behavior, EndSensitivity, GoogleGenAI, LiveServerMessage, Modality, StartSensitivity, type FunctionDeclaration, type RealtimeInputConfig, type Session, type Tool } from '@google/genai';
import type { CloseInfo, LiveConnector, LiveHandlers, LiveLink, TurnText } from '../ports.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { MODEL_REJECTED, asyncCallsByDefault, modelFaultSummary } from './models.js';
import { systemInstructionWithContext } from './context.js';
import { MAX_DROP_LINES, MAX_FRAME_CHARS, MAX_TRANSCRIPT_CHARS, validateServerMessage, type ServerMessage } from './server-message.js';

export interface GeminiOptions {
  apiKey: string;
  baseUrl: string | null;
  live: Config['live'];
  silenceMs: number;
  /** Whether a session opened now may be interrupted by the user's voice (else NO_INTERRUPTION: half-duplex, see src/audio/echo.ts). */
  interruptible?: () => boolean;
  /** The config file, named in what the user is told to change (live.model). */
  configFile?: string | null;
  /** log.transcripts: ask for input/output transcription; without it none is requested, and any that comes is dropped. */
  transcripts?: boolean;
  /** Function declarations for the session setup (tools, issue 12); none: no tools declared. */
  functions?: () => FunctionDeclaration[];
}

/** The setup's realtimeInputConfig: the server VAD's settings (live.vad) and whether speech interrupts a reply. */
export function realtimeInputConfig(live: Config['live'], silenceMs: number, interruptible: boolean): RealtimeInputConfig {
  const v = live.vad;
  return {
    automaticActivityDetection: {
      silenceDurationMs: v.silence_duration_ms ?? silenceMs,
      ...(v.start_sensitivity === 'default' ? {} : { startOfSpeechSensitivity: v.start_sensitivity === 'low' ? StartSensitivity.START_SENSITIVITY_LOW : StartSensitivity.START_SENSITIVITY_HIGH }),
      ...(v.end_sensitivity === 'default' ? {} : { endOfSpeechSensitivity: v.end_sensitivity === 'low' ? EndSensitivity.END_SENSITIVITY_LOW : EndSensitivity.END_SENSITIVITY_HIGH }),
      ...(v.prefix_padding_ms === null ? {} : { prefixPaddingMs: v.prefix_padding_ms }),
    },
    activityHandling: interruptible ? ActivityHandling.START_OF_ACTIVITY_INTERRUPTS : ActivityHandling.NO_INTERRUPTION,
  };
}

/**
 * The session's `tools` array, built in this one place: the local tools'
 * function declarations (src/tools), and Google Search grounding when
 * live.google_search is on.
 */
export function sessionTools(live: Config['live'], functions: FunctionDeclaration[] = []): Tool[] {
  const tools: Tool[] = [];
  // A tool that must block (the model waits for its answer) says so where the model would otherwise not wait.
  const blocking = asyncCallsByDefault(live.model);
  if (functions.length) tools.push({ functionDeclarations: blocking ? functions.map((f) => (f.behavior ? f : { ...f, behavior: Behavior.BLOCKING })) : functions });
  if (live.google_search) tools.push({ googleSearch: {} });
  return tools;
}

/**
 * Close codes and reasons as the service sends them (the Live API WebSocket protocol, BidiGenerateContent).
 * Auth and model errors are permanent: retrying only hammers the service.
 * Quota, server errors and network drops are transient.
 */
export function classifyClose(code: number | undefined, reason: string): CloseInfo {
  const r = reason || '';
  if (/API key not valid|API_KEY_INVALID|invalid api key|unregistered callers|PERMISSION_DENIED|permission denied/i.test(r)) {
    return { code, reason: r, permanent: true, summary: 'bad API key' };
  }
  if (/models\/\S+ is not found|not found for API version|is not supported for|NOT_FOUND/i.test(r)) {
    return { code, reason: r, permanent: true, summary: 'model not available for the Live API' };
  }
  if (/quota|RESOURCE_EXHAUSTED|rate limit/i.test(r)) return { code, reason: r, permanent: false, summary: 'quota exceeded' };
  if (code === 1007 || (code === 1008 && !/deadline|timeout/i.test(r))) {
    return { code, reason: r, permanent: true, summary: `rejected by the Live API (code ${code})` };
  }
  return { code, reason: r || 'connection closed', permanent: false, summary: 'connection lost' };
}

/**
 * The one rejection the daemon expects: the SDK parses each server frame
 * (JSON.parse in its handleWebSocketMessage) in a promise nobody awaits, so a
 * malformed frame rejects unhandled. Anything else unhandled is a bug.
 */
export function isSdkFrameParseError(reason: unknown): reason is SyntaxError {
  return reason instanceof SyntaxError && /\bhandleWebSocketMessage\b/.test(reason.stack ?? '');
}

const parseSeconds = (s: string | undefined): number => {
  const m = /^([\d.]+)s$/.exec(s ?? '');
  return m ? Number(m[1]) * 1000 : 30_000;
};

/** The SDK's transport object for one WebSocket (not exported by the SDK). */
interface SdkSocket { connect(): void; close(): void }
interface SdkSocketCallbacks { onmessage(event: { data: unknown }): void; [k: string]: unknown }
interface SdkSocketFactory { create(url: string, headers: Record<string, string>, callbacks: SdkSocketCallbacks): SdkSocket }

/**
 * Top-level fields the SDK cannot copy into its LiveServerMessage: the
 * class's getters without setters (`text`, `data`); assigning one throws in
 * the SDK's unawaited promise.
 */
const SDK_READ_ONLY = Object.entries(Object.getOwnPropertyDescriptors(LiveServerMessage.prototype))
  .filter(([, d]) => d.get && !d.set).map(([k]) => k);

/**
 * Why a frame is not a JSON object the SDK can take, or null when it is.
 * Checked before the SDK sees it: the SDK parses it in a promise nobody
 * awaits (a parse error would reject unhandled) and copies whatever it got,
 * character by character for a string, into its message object.
 */
export function frameProblem(data: unknown): string | null {
  let text: string;
  if (typeof data === 'string') text = data;
  else if (Buffer.isBuffer(data)) text = data.toString('utf8');
  else if (data instanceof ArrayBuffer) text = Buffer.from(data).toString('utf8');
  else return null; // a Blob (not from Node's ws): left to the SDK
  if (text.length > MAX_FRAME_CHARS) return `${text.length} characters, more than ${MAX_FRAME_CHARS}`;
  let v: unknown;
  try { v = JSON.parse(text); } catch (e) { return `not JSON (${(e as Error).message.slice(0, 120)})`; }
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return `JSON ${v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v}, not an object`;
  const bad = SDK_READ_ONLY.filter((k) => Object.hasOwn(v, k));
  return bad.length ? `a top-level field the SDK cannot take: ${bad.join(', ')}` : null;
}

/**
 * A client whose WebSocket we can reach. The SDK's `live.connect()` resolves
 * only at setupComplete, so until then there is no Session to close: a server
 * that never answers the setup would keep the socket open after we gave up.
 * Each connect gets its own client, and its socket is handed to `onSocket`.
 */
function clientWithSocket(opts: GeminiOptions, onSocket: (s: SdkSocket) => void, onBadFrame: (problem: string) => void): GoogleGenAI {
  const ai = new GoogleGenAI({ apiKey: opts.apiKey, ...(opts.baseUrl ? { httpOptions: { baseUrl: opts.baseUrl } } : {}) });
  const live = ai.live as unknown as { webSocketFactory?: SdkSocketFactory };
  const inner = live.webSocketFactory;
  if (typeof inner?.create !== 'function') throw new Error('@google/genai changed: live.webSocketFactory is gone (pin the tested version)');
  live.webSocketFactory = {
    create: (url, headers, callbacks) => {
      const guarded: SdkSocketCallbacks = {
        ...callbacks,
        onmessage: (event) => {
          const problem = frameProblem(event?.data);
          if (problem) onBadFrame(problem); else callbacks.onmessage(event);
        },
      };
      const s = inner.create(url, headers, guarded);
      onSocket(s);
      return s;
    },
  };
  return ai;
}

/** A turn's transcripts as they come; `full`: the cap was reached (and said) this turn. */
type TextSoFar = TurnText & { full?: boolean };

export class GeminiConnector implements LiveConnector {
  constructor(private readonly opts: GeminiOptions, private readonly log: Logger) {}

  connect(h: LiveHandlers, { resumeHandle, instruction }: { resumeHandle: string | null; instruction?: string }): LiveLink {
    const { live } = this.opts;
    let session: Session | null = null;
    let socket: SdkSocket | null = null;
    let closed = false; // by us, or reported once
    /** Close the WebSocket whatever stage it is at (connecting, waiting for setupComplete, open). */
    const dispose = () => {
      try { if (session) session.close(); else socket?.close(); } catch { /* not connected yet, or already closed */ }
    };
    const end = (info: CloseInfo) => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      dispose();
      h.onClose(info);
    };
    const timer = setTimeout(() => end({ reason: `no answer to setup within ${live.connect_timeout_s} s`, permanent: false, summary: 'Live API not answering' }), live.connect_timeout_s * 1000);
    let lastError = '';
    // Malformed input from the server: one line per dropped item, at most MAX_DROP_LINES per connection.
    let dropLines = 0;
    const drop = (fields: Record<string, unknown>, msg: string) => {
      if (++dropLines <= MAX_DROP_LINES) this.log.warn(fields, msg);
      if (dropLines === MAX_DROP_LINES) this.log.warn({ max: MAX_DROP_LINES }, 'more malformed input from the Live API on this connection will be dropped without a log line');
    };

    const ai = clientWithSocket(this.opts, (s) => {
      socket = s;
      // Given up on before the socket existed: close it the moment it starts.
      const start = s.connect.bind(s);
      s.connect = () => { start(); if (closed) dispose(); };
    }, (problem) => drop({ error: problem }, 'ignored a malformed message from the Live API'));
    const tools = sessionTools(live, this.opts.functions?.() ?? []);
    const transcripts = this.opts.transcripts === true;
    const text: TextSoFar = { heard: '', said: '' };
    ai.live.connect({
      model: live.model,
      // Only fields the current Live models accept: no thinkingConfig, proactivity or
      // enableAffectiveDialog (gemini-3.8-live rejects or ignores them, per its migration notes).
      config: {
        responseModalities: [Modality.AUDIO],
        speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: live.voice } }, languageCode: live.language },
        // The configured instruction and one line of date, time, time zone (and place): wall clock, read at each session start.
        systemInstruction: { parts: [{ text: systemInstructionWithContext(instruction ? `${live.system_instruction}\n\n${instruction}` : live.system_instruction, new Date(), live.location) }] },
        ...(tools.length ? { tools } : {}),
        ...(transcripts ? { inputAudioTranscription: {}, outputAudioTranscription: {} } : {}),
        realtimeInputConfig: realtimeInputConfig(live, this.opts.silenceMs, this.opts.interruptible?.() ?? true),
        // Resumable sessions survive goAway and network drops; compression lifts the 15-minute audio cap.
        sessionResumption: resumeHandle ? { handle: resumeHandle } : {},
        contextWindowCompression: { slidingWindow: {} },
      },
      callbacks: {
        onmessage: (raw: LiveServerMessage) => {
          // The SDK calls this inside a promise nobody awaits: an error of ours
          // thrown here would pass for a bad frame. Throw it outside instead.
          try {
            // Only what fits the schema goes on; each item that does not is dropped with one line.
            const { msg, dropped } = validateServerMessage(raw);
            for (const d of dropped) drop({ field: d.what, problem: d.problem }, 'dropped a malformed item of a Live API message');
            if (closed) {
              // Closed by us (the conversation ended): a late usageMetadata still counts in the totals; nothing else matters now.
              if (msg?.usageMetadata) h.onUsage?.(msg.usageMetadata);
              return;
            }
            // A malformed call that still gave its id is answered, so the model does not wait for it.
            const bad = dropped.flatMap((d) => (d.call ? [{ ...d.call, response: { error: `malformed function call (${d.problem}): not run` } }] : []));
            if (bad.length) session?.sendToolResponse({ functionResponses: bad });
            if (msg) this.dispatch(msg, h, () => session, transcripts ? text : null, drop);
          } catch (e) { process.nextTick(() => { throw e; }); }
        },
        onerror: (e: { message?: string; error?: unknown }) => { lastError = e.message || String(e.error ?? 'websocket error'); },
        onclose: (e: { code?: number; reason?: string }) => {
          const info = classifyClose(e.code, e.reason || lastError);
          // A model the service does not serve: say which setting, in which file, to change.
          if (MODEL_REJECTED.test(info.reason)) Object.assign(info, { permanent: true, summary: modelFaultSummary(live.model, this.opts.configFile ?? null) });
          if (transcripts) flushText(text, h, false);
          end(info);
        },
      },
    }).then((s) => {
      if (closed) { s.close(); return; }
      session = s;
      clearTimeout(timer);
      h.onOpen();
    }, (e: Error) => end({ reason: `connect failed: ${e.message}`, permanent: false, summary: 'cannot connect' }));

    return {
      sendAudio: (pcm) => {
        if (closed || !session) return;
        session.sendRealtimeInput({ audio: { data: pcm.toString('base64'), mimeType: 'audio/pcm;rate=16000' } });
      },
      sendToolResponse: (functionResponses) => {
        if (closed || !session) return;
        session.sendToolResponse({ functionResponses });
      },
      sendText: (t) => {
        if (closed || !session) return;
        session.sendClientContent({ turns: [{ role: 'user', parts: [{ text: t }] }], turnComplete: true });
      },
      close: () => {
        if (closed) return;
        closed = true;
        clearTimeout(timer);
        dispose();
      },
    };
  }

  private dispatch(msg: ServerMessage, h: LiveHandlers, session: () => Session | null, text: TextSoFar | null, drop: (fields: Record<string, unknown>, msg: string) => void): void {
    // Token counts: top-level, possibly in a message with nothing else (newer models).
    if (msg.usageMetadata) h.onUsage?.(msg.usageMetadata);
    const sru = msg.sessionResumptionUpdate;
    if (sru?.resumable && sru.newHandle) h.onResumeHandle(sru.newHandle);
    if (msg.goAway) h.onGoAway(parseSeconds(msg.goAway.timeLeft));
    if (msg.toolCall?.functionCalls?.length && h.onToolCall) {
      h.onToolCall(msg.toolCall.functionCalls.map((c) => ({ id: c.id, name: c.name, args: c.args ?? {} })));
    } else if (msg.toolCall?.functionCalls?.length) {
      // No tools are declared, so any call is unexpected: answer each with an
      // error rather than leave the model waiting for a response forever.
      const calls = msg.toolCall.functionCalls;
      this.log.warn({ tools: calls.map((c) => c.name) }, 'the model called a tool this speaker does not have; answered with an error');
      session()?.sendToolResponse({
        functionResponses: calls.map((c) => ({ id: c.id, name: c.name, response: { error: `unknown tool '${c.name}': this device has no such function` } })),
      });
    }
    if (msg.toolCallCancellation?.ids?.length) h.onToolCancel?.(msg.toolCallCancellation.ids);
    const sc = msg.serverContent;
    if (!sc) return;
    // Transcription fragments (only when asked for): assembled per turn, reported at its end.
    if (text) {
      const heard = sc.inputTranscription?.text ?? '';
      const said = sc.outputTranscription?.text ?? '';
      // Kept up to MAX_TRANSCRIPT_CHARS each per turn: a server that never ends the turn must not grow it for ever.
      if (text.heard.length + heard.length > MAX_TRANSCRIPT_CHARS || text.said.length + said.length > MAX_TRANSCRIPT_CHARS) {
        if (!text.full) drop({ max: MAX_TRANSCRIPT_CHARS }, 'transcript of this turn too long; the rest of it is not kept');
        text.full = true;
      } else {
        text.heard += heard;
        text.said += said;
      }
    }
    for (const [i, part] of (sc.modelTurn?.parts ?? []).entries()) {
      const d = part.inlineData;
      if (!d?.data) continue;
      if (!/^audio\/pcm(;\s*rate=24000)?$/i.test(d.mimeType ?? '')) {
        drop({ mimeType: d.mimeType?.slice(0, 60) }, 'ignoring reply data that is not 24 kHz PCM audio');
        continue;
      }
      const pcm = Buffer.from(d.data, 'base64');
      if (pcm.length % 2) drop({ field: `serverContent.modelTurn.parts[${i}]`, bytes: pcm.length }, 'reply audio with an odd byte count; its last byte dropped');
      if (pcm.length > 1) h.onAudio(pcm.length % 2 ? pcm.subarray(0, pcm.length - 1) : pcm);
    }
    if (text && (sc.interrupted || sc.turnComplete)) flushText(text, h, sc.interrupted === true);
    if (sc.interrupted) h.onInterrupted();
    if (sc.turnComplete) h.onTurnComplete();
  }
}

/** Report the turn's assembled transcripts (if any) and start the next turn empty. */
function flushText(text: TextSoFar, h: LiveHandlers, interrupted: boolean): void {
  const heard = text.heard.replace(/\s+/g, ' ').trim();
  const said = text.said.replace(/\s+/g, ' ').trim();
  text.heard = '';
  text.said = '';
  text.full = false;
  if (heard || said) h.onTurnText?.({ heard, said, ...(interrupted ? { interrupted } : {}) });
}
