// User tools (tools.commands in the config): a program run with an argv, no
// shell. The model's arguments go in only as whole argv elements ("{city}"),
// so nothing it says can become a flag split or a shell expression. It runs
// as the daemon's own user (the service user), with the daemon's environment
// minus its secrets (the key files stay readable to it: same user), in its own process group, which is killed on timeout or
// cancellation. It is answered when it exits (a program it leaves running
// keeps running: see runCommand). Its stdout, up to the cap, goes back to the
// model; a failure (non-zero exit, timeout, missing program) goes back as a
// clear error. At most tools.max_concurrent_commands run at once (Slots).
import { spawn } from 'node:child_process';
import { getPriority, setPriority } from 'node:os';
import { Behavior, FunctionResponseScheduling, type Schema } from '@google/genai';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { Tool } from './types.js';

export type CommandConfig = Config['tools']['commands'][number];
type JsonSchema = { type: string; description?: string; enum?: string[]; items?: JsonSchema; properties?: Record<string, JsonSchema>; required?: string[] };

/** A whole argv element that is a placeholder: "{name}". */
export const PLACEHOLDER = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/;
const SECRET_ENV = ['GEMINI_API_KEY', 'GOOGLE_API_KEY', 'PICOVOICE_ACCESS_KEY', 'CREDENTIALS_DIRECTORY'];
const STDERR_KEEP = 300;

/** The config's JSON schema in the Live API's Schema form (types in capitals). */
export function toSchema(j: JsonSchema): Schema {
  return {
    type: j.type.toUpperCase() as Schema['type'],
    ...(j.description ? { description: j.description } : {}),
    ...(j.enum ? { enum: j.enum } : {}),
    ...(j.items ? { items: toSchema(j.items) } : {}),
    ...(j.properties ? { properties: Object.fromEntries(Object.entries(j.properties).map(([k, v]) => [k, toSchema(v)])) } : {}),
    ...(j.required?.length ? { required: j.required } : {}),
  };
}

/**
 * Check the model's arguments against the declared parameters, all the way down (array items, object properties,
 * required ones, enums); the error names the path: `argument 'rooms[2]' must be one of kitchen, hall`.
 * A handful of lines for the subset the config allows (six types, enum, items, properties, required): zod's
 * fromJSONSchema would need the schema rewritten (no extra keys at any depth) and its issues turned into sentences.
 */
export function checkArgs(c: CommandConfig, args: Record<string, unknown>): void {
  checkObject(c.parameters as JsonSchema, args, '');
}

function checkObject(p: JsonSchema, o: Record<string, unknown>, prefix: string): void {
  for (const r of p.required ?? []) if (o[r] === undefined || o[r] === null) throw new Error(`missing argument '${prefix}${r}'`);
  if (!p.properties) return; // an object declared without properties: any keys
  for (const [k, v] of Object.entries(o)) {
    const q = p.properties[k];
    if (!q) throw new Error(`unknown argument '${prefix}${k}' (${prefix ? `'${prefix.slice(0, -1)}' has` : 'this command takes'}: ${Object.keys(p.properties).join(', ') || 'none'})`);
    checkValue(q, v, prefix + k);
  }
}

function checkValue(p: JsonSchema, v: unknown, path: string): void {
  const ok = p.type === 'string' ? typeof v === 'string' : p.type === 'number' ? typeof v === 'number' : p.type === 'integer' ? Number.isInteger(v)
    : p.type === 'boolean' ? typeof v === 'boolean' : p.type === 'array' ? Array.isArray(v) : typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!ok) throw new Error(`argument '${path}' must be ${p.type === 'integer' || p.type === 'array' || p.type === 'object' ? 'an' : 'a'} ${p.type}`);
  if (p.enum && !p.enum.includes(String(v))) throw new Error(`argument '${path}' must be one of ${p.enum.join(', ')}`);
  if (p.type === 'array' && p.items) (v as unknown[]).forEach((x, i) => checkValue(p.items!, x, `${path}[${i}]`));
  if (p.type === 'object') checkObject(p, v as Record<string, unknown>, `${path}.`);
}

/**
 * The argv to run: each "{name}" element replaced by that argument (an element whose optional argument is absent is left out).
 * A value starting with '-' would be read as an option (the model's arguments may come from a web page through
 * Google Search): refused, unless a literal '--' (end of options) comes before the placeholder in the argv.
 */
export function buildArgv(argv: string[], args: Record<string, unknown>): string[] {
  const out: string[] = [];
  let endOfOptions = false;
  for (const a of argv) {
    const m = PLACEHOLDER.exec(a);
    if (!m) { out.push(a); if (a === '--') endOfOptions = true; continue; }
    const v = args[m[1]];
    if (v === undefined || v === null) continue;
    const s = typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'boolean' ? String(v) : JSON.stringify(v);
    if (s.startsWith('-') && !endOfOptions) {
      throw Object.assign(new Error(`argument '${m[1]}' must not start with '-' (it would be taken as an option)`), { errorClass: 'option-like argument', argument: m[1] });
    }
    out.push(s);
  }
  return out;
}

function childEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of SECRET_ENV) delete env[k];
  return env;
}

/** How long output the command wrote before it exited may take to be read, when a program it left running holds the pipes. */
const AFTER_EXIT_MS = 100;

/**
 * Run it; resolves with stdout (capped), rejects with a message for the model.
 * It answers when the command itself exits, not when its stdout and stderr close: a program it started and left
 * running (`setsid -f player`, `player &`) still holds copies of them, and may run for hours. What was written before
 * the exit is read (up to the cap), then the pipes are closed on our side, so such a program must not write to them
 * (a write would kill it with SIGPIPE): it redirects them. It keeps running, even in the command's process group;
 * only a timeout or a cancellation kills the group, and that answers at once too.
 */
export function runCommand(argv: string[], opts: { timeoutMs: number; maxBytes: number; signal: AbortSignal }): Promise<{ output: string; truncated: boolean; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    if (opts.signal.aborted) { reject(Object.assign(new Error('cancelled'), { errorClass: 'cancelled' })); return; }
    const child = spawn(argv[0], argv.slice(1), { shell: false, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv(), detached: true });
    // The service runs raised (the unit's Nice=, for audio); a user's program
    // is not audio and must not compete with it: back to the normal 0 (raising
    // a nice value needs no privilege). Set straight after the fork, before
    // the program has had time to start children of its own.
    if (child.pid !== undefined && getPriority() < 0) {
      try { setPriority(child.pid, 0); } catch { /* it has already exited */ }
    }
    const out: Buffer[] = [];
    let outBytes = 0;
    let truncated = false;
    let errTail = '';
    let settled = false;
    let afterExit: NodeJS.Timeout | undefined;
    const settle = (answer: () => void) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(afterExit);
      opts.signal.removeEventListener('abort', onAbort);
      child.stdout!.destroy();
      child.stderr!.destroy();
      answer();
    };
    const killGroup = (why: string) => {
      try { if (child.pid) process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
      settle(() => reject(Object.assign(new Error(why), { errorClass: why === 'cancelled' ? 'cancelled' : 'timeout' })));
    };
    const timer = setTimeout(() => killGroup(`timed out after ${opts.timeoutMs / 1000} s`), opts.timeoutMs);
    const onAbort = () => killGroup('cancelled');
    opts.signal.addEventListener('abort', onAbort, { once: true });
    child.stdout!.on('data', (d: Buffer) => {
      const room = opts.maxBytes - outBytes;
      if (room <= 0) { truncated = true; return; }
      if (d.length > room) truncated = true;
      const part = d.subarray(0, room);
      out.push(part);
      outBytes += part.length;
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => { errTail = (errTail + d).slice(-STDERR_KEEP); });
    child.on('error', (e: NodeJS.ErrnoException) => {
      settle(() => reject(Object.assign(new Error(e.code === 'ENOENT' ? `cannot run '${argv[0]}': no such program` : e.code === 'EACCES' ? `cannot run '${argv[0]}': permission denied` : `cannot run '${argv[0]}': ${e.message}`), { errorClass: 'cannot run' })));
    });
    const exited = (code: number | null, signal: NodeJS.Signals | null) => settle(() => {
      const ms = Math.round(performance.now() - t0);
      if (code !== 0) {
        const what = `'${argv[0]}' ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`;
        // The model gets the stderr tail; the journal only at debug (it may echo the arguments).
        reject(Object.assign(new Error(`${what}${errTail.trim() ? `: ${errTail.trim()}` : ''}`), { errorClass: signal ? 'killed' : 'exit code', logText: what, stderrTail: errTail.trim() }));
        return;
      }
      // A multi-byte character cut by the cap becomes U+FFFD: the model gets text either way.
      resolve({ output: Buffer.concat(out).toString('utf8'), truncated, ms });
    });
    // 'close': it exited and nothing else holds its pipes (the usual case), everything read. 'exit' alone: the
    // output it wrote is in the pipes, read within the next turns of the event loop; a program it left running may
    // hold them open for hours.
    child.on('close', exited);
    child.on('exit', (code, signal) => { afterExit = setTimeout(() => exited(code, signal), AFTER_EXIT_MS); });
  });
}

/** How many calls may wait for a free slot; one more is refused at once. */
export const MAX_WAITING = 16;

/**
 * At most `limit` user commands run at once (tools.max_concurrent_commands): a tool-call message with ten calls
 * does not start ten processes. The others wait their turn, in order (the model gets every answer, a little later),
 * up to MAX_WAITING; a call cancelled while it waits never starts. A command counts until it has answered: a
 * program it left running does not hold a slot.
 */
export class Slots {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private max: number) {}

  set limit(n: number) { this.max = n; this.next(); }
  get busy(): { running: number; waiting: number } { return { running: this.running, waiting: this.waiting.length }; }
  get full(): boolean { return this.running >= this.max; }

  /** Resolves, once a slot is free, with the function that frees it. */
  take(signal: AbortSignal): Promise<() => void> {
    return new Promise((resolve, reject) => {
      let freed = false;
      const go = () => { signal.removeEventListener('abort', onAbort); this.running++; resolve(() => { if (!freed) { freed = true; this.running--; this.next(); } }); };
      const onAbort = () => { const i = this.waiting.indexOf(go); if (i >= 0) this.waiting.splice(i, 1); reject(Object.assign(new Error('cancelled'), { errorClass: 'cancelled' })); };
      if (signal.aborted) { onAbort(); return; }
      if (this.running < this.max) { go(); return; }
      if (this.waiting.length >= MAX_WAITING) {
        reject(Object.assign(new Error(`too many commands at once (${this.running} running, ${this.waiting.length} waiting): ask again once they have answered`), { errorClass: 'busy' }));
        return;
      }
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(go);
    });
  }

  private next(): void { while (this.running < this.max && this.waiting.length) this.waiting.shift()!(); }
}

export function commandTool(c: CommandConfig, log: Logger, slots: Slots): Tool {
  const parameters = toSchema(c.parameters as JsonSchema);
  return {
    declaration: {
      name: c.name,
      description: c.description,
      ...(Object.keys(c.parameters.properties).length ? { parameters } : {}), // none: no empty OBJECT (the API refuses one)
      ...(c.non_blocking ? { behavior: Behavior.NON_BLOCKING } : {}),
    },
    ...(c.non_blocking ? { scheduling: FunctionResponseScheduling.WHEN_IDLE } : {}),
    run: async (args, ctx) => {
      checkArgs(c, args);
      let argv: string[];
      try { argv = buildArgv(c.argv, args); } catch (e) {
        log.warn({ tool: c.name, argument: (e as { argument?: string }).argument }, 'user command refused: an argument starts with \'-\'');
        throw e;
      }
      const busy = slots.busy;
      if (slots.full) log.info({ tool: c.name, ...busy }, 'user command waits: too many running');
      let free: () => void;
      try { free = await slots.take(ctx.signal); } catch (e) {
        if ((e as { errorClass?: string }).errorClass === 'busy') log.warn({ tool: c.name, ...busy }, 'user command refused: too many commands at once');
        throw e;
      }
      try {
        const r = await runCommand(argv, { timeoutMs: c.timeout_s * 1000, maxBytes: c.max_output_bytes, signal: ctx.signal });
        log.info({ tool: c.name, argv0: argv[0], ms: r.ms, bytes: Buffer.byteLength(r.output), truncated: r.truncated }, 'user command done');
        return r.truncated ? { output: r.output, truncated: true, note: `output cut at ${c.max_output_bytes} bytes` } : { output: r.output };
      } catch (e) {
        const x = e as Error & { logText?: string; stderrTail?: string };
        log.warn({ tool: c.name, argv0: argv[0], error: x.logText ?? x.message }, 'user command failed');
        if (x.stderrTail) log.debug({ tool: c.name, stderr: x.stderrTail }, 'user command stderr (tail)');
        throw e;
      } finally { free(); }
    },
  };
}
