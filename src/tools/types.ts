// What a tool is: its declaration (sent in the session setup) and its handler.
// One file per tool in this directory; registry.ts lists them.
import type { FunctionDeclaration, FunctionResponseScheduling } from '@google/genai';
import type { Logger } from '../log.js';
import type { Timers } from '../timers.js';

/** A function call from the model, as the Live API sends it. */
export interface ToolCall { id: string; name: string; args: Record<string, unknown> }
/** One answer, by the call's id. `scheduling` only for NON_BLOCKING functions. */
export interface ToolResponse { id: string; name: string; response: Record<string, unknown>; scheduling?: FunctionResponseScheduling }

/** What the tools act on, from the daemon. */
export interface ToolServices {
  /** The reply volume, the same one as `ctl volume` (and persisted the same way). */
  volume: { get(): number; set(percent: number): void; max: number };
  timers: Timers;
  /** End the conversation once the current reply (the goodbye) has been heard to its last sample. */
  endConversation(): void;
  log: Logger;
}

export interface ToolContext {
  id: string;
  /** Aborted when the model cancels the call (toolCallCancellation) or the conversation ends. */
  signal: AbortSignal;
}

export interface Tool {
  declaration: FunctionDeclaration;
  /** For NON_BLOCKING declarations: how the answer is scheduled (default WHEN_IDLE). */
  scheduling?: FunctionResponseScheduling;
  /** The result for the model; a thrown Error's message is returned to it as the error. */
  run(args: Record<string, unknown>, ctx: ToolContext): Promise<unknown> | unknown;
}

/** An argument the model gave, checked. */
export function str(args: Record<string, unknown>, key: string, required: true): string;
export function str(args: Record<string, unknown>, key: string, required?: false): string | null;
export function str(args: Record<string, unknown>, key: string, required = false): string | null {
  const v = args[key];
  if (v === undefined || v === null || v === '') { if (required) throw new Error(`missing argument '${key}'`); return null; }
  if (typeof v !== 'string' && typeof v !== 'number') throw new Error(`argument '${key}' must be a string`);
  return String(v);
}
export function num(args: Record<string, unknown>, key: string): number | null {
  const v = args[key];
  if (v === undefined || v === null || v === '') return null;
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n)) throw new Error(`argument '${key}' must be a number (got ${JSON.stringify(v)})`);
  return n;
}
