/**
 * The emulator's wire: the Gemini Live API's BidiGenerateContent messages as
 * JSON on a WebSocket (the Live API WebSocket protocol, BidiGenerateContent). Owns the
 * rates, the close reasons, how an upgrade request names its key, how a
 * client frame is parsed, and every server message the emulator sends
 * (`server.*`), so the vocabulary is in one place. No state: sessions
 * (session.ts) hold it.
 */
import type http from 'node:http';
import type { RawData } from 'ws';
import { modelRejectionReason } from '../live/models.js';

/** Input rate the Live API works at (client audio at other rates is resampled to it). */
export const INPUT_RATE = 16000;
/** Output rate of the Live API's audio. */
export const OUTPUT_RATE = 24000;

export const BAD_KEY_REASON = 'API key not valid. Please pass a valid API key.';
/** Close codes and reasons the service uses for bad client frames. */
export const INVALID_JSON = { code: 1007, reason: 'Invalid JSON payload received.' } as const;
export const SETUP_FIRST = { code: 1007, reason: 'Request contains an invalid argument: the first message must be setup.' } as const;
export const unknownModel = (model: string) => ({ code: 1008, reason: modelRejectionReason(model) });

// ---- client -> server ------------------------------------------------------

/**
 * Where an upgrade request goes: null unless its path is BidiGenerateContent;
 * the key from ?key=, ?access_token= or the x-goog-api-key header.
 */
export function upgradeKey(req: http.IncomingMessage): { path: string; key: string | null } {
  // Not `new URL(req.url)`: the SDK's path starts with "//", which URL
  // would read as a host name.
  const raw = req.url ?? '';
  const q = raw.indexOf('?');
  const path = q >= 0 ? raw.slice(0, q) : raw;
  if (!path.includes('BidiGenerateContent')) return { path, key: null };
  const query = new URLSearchParams(q >= 0 ? raw.slice(q + 1) : '');
  const headerKey = req.headers['x-goog-api-key'];
  return { path, key: query.get('key') ?? query.get('access_token') ?? (typeof headerKey === 'string' ? headerKey : '') };
}

/**
 * A client frame's JSON value (text and binary frames both carry JSON); null
 * when it is not JSON at all. The caller checks that it is an object.
 */
export function parseClientFrame(data: RawData): { json: unknown } | null {
  try {
    const buf = Array.isArray(data) ? Buffer.concat(data) : Buffer.isBuffer(data) ? data : Buffer.from(data);
    return { json: JSON.parse(buf.toString('utf8')) };
  } catch {
    return null;
  }
}

/**
 * The audio blobs of a realtimeInput (`audio` and the older `mediaChunks`),
 * and its other keys (activityStart, activityEnd, audioStreamEnd, text...).
 */
export function realtimeAudio(ri: any): { audio: { data: string; mimeType?: unknown }[]; otherKeys: string[] } {
  const blobs: any[] = [];
  if (ri.audio) blobs.push(ri.audio);
  if (Array.isArray(ri.mediaChunks)) blobs.push(...ri.mediaChunks);
  const audio = blobs.filter(
    (b) => b && typeof b.data === 'string' && (typeof b.mimeType !== 'string' || b.mimeType.startsWith('audio/')),
  );
  return { audio, otherKeys: Object.keys(ri).filter((k) => k !== 'audio' && k !== 'mediaChunks') };
}

/** Rate from a mimeType like "audio/pcm;rate=16000"; null if absent. */
export function mimeRate(mimeType: unknown): number | null {
  if (typeof mimeType !== 'string') return null;
  const m = /rate=(\d+)/.exec(mimeType);
  return m ? Number(m[1]) : null;
}

/** Names of the functions a setup declares (tools[].functionDeclarations). */
export function declaredFunctions(setup: any): string[] {
  const tools: any[] = Array.isArray(setup?.tools) ? setup.tools : [];
  return tools.flatMap((t) => (Array.isArray(t?.functionDeclarations) ? t.functionDeclarations.map((d: any) => String(d?.name)) : []));
}

// ---- server -> client ------------------------------------------------------

/** Every message the emulator sends by itself, as the service frames it. */
export const server = {
  setupComplete: () => ({ setupComplete: {} }),
  audio: (chunk: Buffer) => ({
    serverContent: {
      modelTurn: { parts: [{ inlineData: { mimeType: `audio/pcm;rate=${OUTPUT_RATE}`, data: chunk.toString('base64') } }] },
    },
  }),
  inputTranscription: (text: string) => ({ serverContent: { inputTranscription: { text } } }),
  outputTranscription: (text: string | undefined) => ({ serverContent: { outputTranscription: { text } } }),
  usage: (usageMetadata: Record<string, number>) => ({ usageMetadata }),
  generationComplete: () => ({ serverContent: { generationComplete: true } }),
  turnComplete: () => ({ serverContent: { turnComplete: true } }),
  interrupted: () => ({ serverContent: { interrupted: true } }),
  resumptionUpdate: (newHandle: string) => ({ sessionResumptionUpdate: { newHandle, resumable: true } }),
  goAway: (timeLeftS: number) => ({ goAway: { timeLeft: `${timeLeftS}s` } }),
  toolCall: (functionCalls: { id: string; name: string; args: Record<string, unknown> }[]) => ({ toolCall: { functionCalls } }),
  toolCallCancellation: (ids: string[]) => ({ toolCallCancellation: { ids } }),
};

/** Text in two fragments (as the service streams transcription in pieces). */
export function fragments(text: string): string[] {
  const cut = text.indexOf(' ', Math.floor(text.length / 2));
  return cut > 0 ? [text.slice(0, cut), text.slice(cut)] : [text];
}
