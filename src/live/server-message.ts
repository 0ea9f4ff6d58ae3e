// What the daemon accepts from the Live API: one schema of the fields it
// uses (the Live API WebSocket protocol, BidiGenerateContent). The SDK hands over whatever JSON the
// server sent, typed but unchecked; a wrong shape (a null part, a number for
// audio, a string for a list) must cost that item, never the daemon. Each
// item that does not fit (a part, a function call, a cancelled id, a field)
// is dropped and reported once; the rest of the message is kept.
import { z } from 'zod';

/** Frames longer than this (characters of JSON) are refused whole, unparsed: real ones are a few KiB of audio. */
export const MAX_FRAME_CHARS = 4 * 1024 * 1024;
/** One reply audio part at most 10 s of 24 kHz s16le (480,000 bytes, 640,000 base64 characters); a bigger one is refused. */
export const MAX_AUDIO_PART_BYTES = 24000 * 2 * 10;
const MAX_AUDIO_PART_B64 = (MAX_AUDIO_PART_BYTES / 3) * 4;
/** Lines about malformed server input per connection; past this, one line says the rest go unlogged (a broken server must not flood the journal). */
export const MAX_DROP_LINES = 50;
/** One transcription fragment, and the most of a turn's transcript that is kept. */
export const MAX_TRANSCRIPT_CHARS = 10_000;

const count = z.number().int().nonnegative().optional();
const object = z.custom<Record<string, unknown>>((v) => v !== null && typeof v === 'object' && !Array.isArray(v), 'expected an object');
const transcription = z.object({ text: z.string().max(MAX_TRANSCRIPT_CHARS).optional() }).optional();

const Part = z.object({
  inlineData: z.object({ mimeType: z.string().max(200).optional(), data: z.base64().max(MAX_AUDIO_PART_B64) }).optional(),
  text: z.string().optional(),
});
const FunctionCall = z.object({ id: z.string().min(1).max(256), name: z.string().min(1).max(128), args: object.optional() });

export const ServerMessageSchema = z.object({
  setupComplete: object.optional(),
  serverContent: z.object({
    modelTurn: z.object({ parts: z.array(Part).optional() }).optional(),
    turnComplete: z.boolean().optional(),
    interrupted: z.boolean().optional(),
    generationComplete: z.boolean().optional(),
    inputTranscription: transcription,
    outputTranscription: transcription,
  }).optional(),
  toolCall: z.object({ functionCalls: z.array(FunctionCall).optional() }).optional(),
  toolCallCancellation: z.object({ ids: z.array(z.string().min(1).max(256)).optional() }).optional(),
  goAway: z.object({ timeLeft: z.string().max(64).optional() }).optional(),
  sessionResumptionUpdate: z.object({ newHandle: z.string().max(4096).optional(), resumable: z.boolean().optional() }).optional(),
  usageMetadata: z.object({
    promptTokenCount: count, responseTokenCount: count, totalTokenCount: count,
    cachedContentTokenCount: count, toolUsePromptTokenCount: count, thoughtsTokenCount: count,
  }).optional(),
});
export type ServerMessage = z.infer<typeof ServerMessageSchema>;

/** One item dropped: where (`serverContent.modelTurn.parts[2]`), what was wrong, and for a function call the id and name it gave (to answer it). */
export interface Dropped { what: string; problem: string; call?: { id: string; name: string } }

/** Lists whose items are dropped one by one; anything else is dropped at the field that is wrong. */
const LISTS = new Set(['parts', 'functionCalls', 'ids']);

const showPath = (p: readonly PropertyKey[]) => p.map((k, i) => (typeof k === 'number' ? `[${k}]` : `${i ? '.' : ''}${String(k)}`)).join('') || 'message';

/** The item an issue at `path` costs: the list item it is in, or else the field itself. */
function unitOf(path: readonly PropertyKey[]): PropertyKey[] {
  for (let i = path.length - 2; i >= 0; i--) if (LISTS.has(String(path[i])) && typeof path[i + 1] === 'number') return path.slice(0, i + 2);
  return [...path];
}

const at = (v: unknown, k: PropertyKey): unknown => (v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined);

/**
 * Check a server message against the schema. Returns what fits (fields the
 * daemon does not use are left out) and every item dropped. `msg` is null
 * only when nothing of it could be kept. `raw`'s nested objects are edited
 * in place (the SDK builds a fresh one per frame and keeps none).
 */
export function validateServerMessage(raw: unknown): { msg: ServerMessage | null; dropped: Dropped[] } {
  // Own fields only: a "__proto__" key in the JSON becomes the SDK object's prototype, not a field.
  let input: unknown = raw !== null && typeof raw === 'object' ? { ...raw } : raw;
  const dropped: Dropped[] = [];
  // Each round removes every item the last parse refused; a nested list can need one more.
  for (let round = 0; round < 4; round++) {
    const r = ServerMessageSchema.safeParse(input);
    if (r.success) return { msg: r.data, dropped };
    const units = new Map<string, { path: PropertyKey[]; problems: string[] }>();
    for (const issue of r.error.issues) {
      const path = unitOf(issue.path);
      const key = showPath(path);
      const u = units.get(key) ?? { path, problems: [] };
      const rest = issue.path.slice(path.length);
      u.problems.push(`${rest.length ? `${showPath(rest)}: ` : ''}${issue.message}`);
      units.set(key, u);
    }
    const splices: { list: unknown[]; index: number }[] = [];
    for (const [what, { path, problems }] of units) {
      if (path.length === 0) { dropped.push({ what, problem: clip(problems.join('; ')) }); return { msg: null, dropped }; }
      let parent: unknown = input;
      for (const k of path.slice(0, -1)) parent = at(parent, k);
      const last = path[path.length - 1];
      const item = at(parent, last);
      const d: Dropped = { what, problem: clip(problems.join('; ')) };
      if (path[path.length - 2] === 'functionCalls') {
        const id = at(item, 'id'); const name = at(item, 'name');
        if (typeof id === 'string' && id.length > 0 && id.length <= 256) d.call = { id, name: typeof name === 'string' ? name.slice(0, 128) : '' };
      }
      dropped.push(d);
      if (Array.isArray(parent) && typeof last === 'number') splices.push({ list: parent, index: last });
      else if (parent !== null && typeof parent === 'object') delete (parent as Record<PropertyKey, unknown>)[last];
      else return { msg: null, dropped };
    }
    for (const s of splices.sort((a, b) => b.index - a.index)) s.list.splice(s.index, 1);
  }
  dropped.push({ what: 'message', problem: 'still malformed after dropping the items above' });
  return { msg: null, dropped };
}

function clip(s: string, n = 200): string { return s.length > n ? `${s.slice(0, n)}...` : s; }
