// The Live session, through the real @google/genai SDK. One connect() per
// conversation; what comes back is translated into the conversation's
// handler calls, nothing more. Audio out is 16 kHz s16le, audio in 24 kHz.
import { GoogleGenAI, Modality, type LiveServerMessage, type Session } from '@google/genai';
import type { CloseInfo, LiveConnector, LiveHandlers, LiveLink } from '../conversation.js';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';

export interface GeminiOptions {
  apiKey: string;
  baseUrl: string | null;
  live: Config['live'];
  silenceMs: number;
}

export class GeminiConnector implements LiveConnector {
  private readonly ai: GoogleGenAI;

  constructor(private readonly opts: GeminiOptions, private readonly log: Logger) {
    this.ai = new GoogleGenAI({
      apiKey: opts.apiKey,
      ...(opts.baseUrl ? { httpOptions: { baseUrl: opts.baseUrl } } : {}),
    });
  }

  connect(h: LiveHandlers): LiveLink {
    const { live } = this.opts;
    let session: Session | null = null;
    let closed = false; // by us, or reported once
    const end = (info: CloseInfo) => {
      if (closed) return;
      closed = true;
      clearTimeout(timer);
      try { session?.close(); } catch { /* already closed */ }
      h.onClose(info);
    };
    const timer = setTimeout(() => end({ reason: `no answer to setup within ${live.connect_timeout_s} s` }), live.connect_timeout_s * 1000);
    let lastError = '';

    this.ai.live.connect({
      model: live.model,
      config: {
        responseModalities: [Modality.AUDIO],
        speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: live.voice } }, languageCode: live.language },
        systemInstruction: { parts: [{ text: live.system_instruction }] },
        realtimeInputConfig: { automaticActivityDetection: { silenceDurationMs: this.opts.silenceMs } },
      },
      callbacks: {
        onmessage: (msg: LiveServerMessage) => { if (!closed) this.dispatch(msg, h); },
        onerror: (e: { message?: string; error?: unknown }) => { lastError = e.message || String(e.error ?? 'websocket error'); },
        onclose: (e: { code?: number; reason?: string }) => {
          end({ code: e.code, reason: e.reason || lastError || 'connection closed' });
        },
      },
    }).then((s) => {
      if (closed) { s.close(); return; }
      session = s;
      clearTimeout(timer);
      h.onOpen();
    }, (e: Error) => end({ reason: `connect failed: ${e.message}` }));

    return {
      sendAudio: (pcm) => {
        if (closed || !session) return;
        session.sendRealtimeInput({ audio: { data: pcm.toString('base64'), mimeType: 'audio/pcm;rate=16000' } });
      },
      close: () => {
        if (closed) return;
        closed = true;
        clearTimeout(timer);
        try { session?.close(); } catch { /* already closed */ }
      },
    };
  }

  private dispatch(msg: LiveServerMessage, h: LiveHandlers): void {
    const sc = msg.serverContent;
    if (!sc) return;
    for (const part of sc.modelTurn?.parts ?? []) {
      const d = part.inlineData;
      if (d?.data && d.mimeType?.startsWith('audio/pcm')) {
        const pcm = Buffer.from(d.data, 'base64');
        h.onAudio(pcm.length % 2 ? pcm.subarray(0, pcm.length - 1) : pcm);
      }
    }
    if (sc.interrupted) h.onInterrupted();
    if (sc.turnComplete) h.onTurnComplete();
  }
}
