// The tools this speaker has, and the dispatcher that runs the model's calls:
// every call of a toolCall at once (the model may make several in parallel;
// user commands up to tools.max_concurrent_commands, the rest wait their turn),
// each answered by its id as soon as it is done; a cancelled call's handler
// is aborted and its answer never sent. Events for `ctl watch`: 'tool' when a
// call finishes, 'tool-cancelled' when calls are cancelled.
import { EventEmitter } from 'node:events';
import type { FunctionDeclaration } from '@google/genai';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { monotonicMs } from '../clock.js';
import type { Tool, ToolCall, ToolResponse, ToolServices } from './types.js';
import { endConversation } from './end_conversation.js';
import { setVolume } from './set_volume.js';
import { getVolume } from './get_volume.js';
import { setTimer } from './set_timer.js';
import { setAlarm } from './set_alarm.js';
import { listTimers } from './list_timers.js';
import { cancelTimer } from './cancel_timer.js';
import { Slots, commandTool } from './command.js';

export type { ToolCall, ToolResponse } from './types.js';

export function builtinTools(s: ToolServices): Tool[] {
  return [endConversation(s), setVolume(s), getVolume(s), setTimer(s), setAlarm(s), listTimers(s), cancelTimer(s)];
}

/** What `ctl watch` gets for each finished call. */
export interface ToolEvent { name: string; id: string; args: Record<string, unknown>; ok: boolean; result?: unknown; error?: string; errorClass?: string; detail?: string; ms: number }

/** What kind of failure, without anything the user or the model said (for the journal and a watch without transcripts). */
export function errorClass(e: unknown): string {
  const k = (e as { errorClass?: unknown })?.errorClass;
  return typeof k === 'string' ? k : 'error';
}

export class ToolDispatcher extends EventEmitter {
  private tools = new Map<string, Tool>();
  /** Tools from elsewhere (MCP servers), read at each session start; the ones declared in the current session answer its calls. */
  private extra: () => Tool[] = () => [];
  private declaredExtra = new Map<string, Tool>();
  private clashLogged = new Set<string>();
  private running = new Map<string, AbortController>();
  /** tools.max_concurrent_commands: shared by every command, and by the calls of every message. */
  private readonly slots: Slots;

  constructor(private readonly services: ToolServices, commands: Config['tools']['commands'], private readonly log: Logger, private readonly transcripts: () => boolean = () => false, maxConcurrentCommands = 2) {
    super();
    this.slots = new Slots(maxConcurrentCommands);
    this.configure(commands, maxConcurrentCommands);
  }

  /** The built-ins and the config's commands (again on reload: the next session declares the new set; a new cap applies at once). */
  configure(commands: Config['tools']['commands'], maxConcurrentCommands: number): void {
    this.slots.limit = maxConcurrentCommands;
    this.tools = new Map([...builtinTools(this.services), ...commands.map((c) => commandTool(c, this.log, this.slots))].map((t) => [t.declaration.name!, t]));
  }

  /** Where the MCP tools come from (src/tools/mcp/): asked at each session start, never waited for. */
  setExtraTools(provider: () => Tool[]): void { this.extra = provider; }

  /** The declarations for a new session: the built-ins, the commands, and the MCP tools listed now (a name that clashes is dropped, said once). */
  declarations(): FunctionDeclaration[] {
    const extra = new Map<string, Tool>();
    for (const t of this.extra()) {
      const n = t.declaration.name!;
      if (this.tools.has(n) || extra.has(n)) {
        if (!this.clashLogged.has(n)) { this.clashLogged.add(n); this.log.warn({ tool: n }, 'MCP tool dropped: another tool has its name'); }
        continue;
      }
      extra.set(n, t);
    }
    this.declaredExtra = extra;
    return [...this.tools.values(), ...extra.values()].map((t) => t.declaration);
  }

  get names(): string[] { return [...this.tools.keys(), ...this.declaredExtra.keys()]; }

  /** Run every call; `respond` gets each answer (by id) when its handler is done, unless it was cancelled meanwhile. */
  call(calls: ToolCall[], respond: (r: ToolResponse[]) => void): void {
    for (const c of calls) void this.one(c, respond);
  }

  private async one(c: ToolCall, respond: (r: ToolResponse[]) => void): Promise<void> {
    const t0 = monotonicMs();
    const tool = this.tools.get(c.name) ?? this.declaredExtra.get(c.name);
    const ac = new AbortController();
    this.running.set(c.id, ac);
    let ev: ToolEvent;
    try {
      if (!tool) throw new Error(`unknown tool '${c.name}': this speaker has ${this.names.join(', ')}`);
      // The arguments may hold what the user said: only with log.transcripts, and at debug level (ctl watch gets them through the 'tool' event).
      this.log.info({ tool: c.name, id: c.id }, 'tool call');
      if (this.transcripts()) this.log.debug({ tool: c.name, id: c.id, args: c.args }, 'tool call arguments');
      const result = await tool.run(c.args ?? {}, { id: c.id, signal: ac.signal });
      ev = { name: c.name, id: c.id, args: c.args, ok: true, result, ms: Math.round(monotonicMs() - t0) };
    } catch (e) {
      const detail = (e as { detail?: unknown }).detail; // what a library said (an MCP answer that could not be read): may quote the answer
      ev = { name: c.name, id: c.id, args: c.args, ok: false, error: (e as Error).message, errorClass: errorClass(e), ...(typeof detail === 'string' ? { detail: detail.slice(0, 300) } : {}), ms: Math.round(monotonicMs() - t0) };
    }
    if (this.running.get(c.id) !== ac || ac.signal.aborted) return; // cancelled: the model no longer wants the answer
    this.running.delete(c.id);
    // An error's text may quote the arguments (a timer's label): in the journal only with log.transcripts.
    this.log.info({ tool: c.name, id: c.id, ok: ev.ok, ms: ev.ms, ...(ev.ok ? {} : this.transcripts() ? { error: ev.error, ...(ev.detail ? { detail: ev.detail } : {}) } : { errorClass: ev.errorClass }) }, 'tool answered');
    this.emit('tool', ev);
    const r: ToolResponse = { id: c.id, name: c.name, response: ev.ok ? toResponse(ev.result) : { error: ev.error } };
    if (tool?.scheduling) r.scheduling = tool.scheduling;
    respond([r]);
  }

  /** toolCallCancellation: abort those handlers; their answers are not sent. */
  cancel(ids: string[]): void {
    const hit = ids.filter((id) => this.running.has(id));
    for (const id of hit) { this.running.get(id)!.abort(); this.running.delete(id); }
    this.log.info({ ids, running: hit }, 'tool calls cancelled by the model');
    this.emit('tool-cancelled', { ids });
  }

  /** The conversation ended: abort whatever still runs. */
  cancelAll(): void {
    if (this.running.size === 0) return;
    const ids = [...this.running.keys()];
    for (const ac of this.running.values()) ac.abort();
    this.running.clear();
    this.log.info({ ids }, 'tool calls abandoned: the conversation ended');
    this.emit('tool-cancelled', { ids });
  }
}

/** A function response is a JSON object: results that are not one are wrapped. */
function toResponse(result: unknown): Record<string, unknown> {
  return result !== null && typeof result === 'object' && !Array.isArray(result) ? result as Record<string, unknown> : { result: result ?? 'ok' };
}
