// User tools (tools.commands in the config): a program run with an argv, no
// shell. The model's arguments go in only as whole argv elements ("{city}"),
// so nothing it says can become a flag split or a shell expression. It runs
// as the daemon's own user (the service user), with the daemon's environment
// minus its secrets (the key files stay readable to it: same user), in its own process group, which is killed on timeout or
// cancellation. Its stdout, up to the cap, goes back to the model; a failure
// (non-zero exit, timeout, missing program) goes back as a clear error.
import { spawn } from 'node:child_process';
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

/** Check the model's arguments against the declared parameters (required ones present, simple types right). */
function checkArgs(c: CommandConfig, args: Record<string, unknown>): void {
  const props = (c.parameters.properties ?? {}) as Record<string, JsonSchema>;
  for (const r of c.parameters.required ?? []) if (args[r] === undefined || args[r] === null) throw new Error(`missing argument '${r}'`);
  for (const [k, v] of Object.entries(args)) {
    const p = props[k];
    if (!p) throw new Error(`unknown argument '${k}' (this command takes: ${Object.keys(props).join(', ') || 'none'})`);
    const ok = p.type === 'string' ? typeof v === 'string' : p.type === 'number' ? typeof v === 'number' : p.type === 'integer' ? Number.isInteger(v)
      : p.type === 'boolean' ? typeof v === 'boolean' : p.type === 'array' ? Array.isArray(v) : typeof v === 'object' && v !== null;
    if (!ok) throw new Error(`argument '${k}' must be ${p.type === 'integer' ? 'an' : 'a'} ${p.type}`);
    if (p.enum && !p.enum.includes(String(v))) throw new Error(`argument '${k}' must be one of ${p.enum.join(', ')}`);
  }
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

/** Run it; resolves with stdout (capped), rejects with a message for the model. */
export function runCommand(argv: string[], opts: { timeoutMs: number; maxBytes: number; signal: AbortSignal }): Promise<{ output: string; truncated: boolean; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    if (opts.signal.aborted) { reject(new Error('cancelled')); return; }
    const child = spawn(argv[0], argv.slice(1), { shell: false, stdio: ['ignore', 'pipe', 'pipe'], env: childEnv(), detached: true });
    const out: Buffer[] = [];
    let outBytes = 0;
    let truncated = false;
    let errTail = '';
    let why: string | null = null;
    const killGroup = (reason: string) => {
      why ??= reason;
      try { if (child.pid) process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ }
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
    const done = () => { clearTimeout(timer); opts.signal.removeEventListener('abort', onAbort); };
    child.on('error', (e: NodeJS.ErrnoException) => {
      done();
      reject(Object.assign(new Error(e.code === 'ENOENT' ? `cannot run '${argv[0]}': no such program` : e.code === 'EACCES' ? `cannot run '${argv[0]}': permission denied` : `cannot run '${argv[0]}': ${e.message}`), { errorClass: 'cannot run' }));
    });
    child.on('close', (code, signal) => {
      done();
      const ms = Math.round(performance.now() - t0);
      if (why) { reject(Object.assign(new Error(why), { errorClass: why === 'cancelled' ? 'cancelled' : 'timeout' })); return; }
      if (code !== 0) {
        const what = `'${argv[0]}' ${signal ? `was killed by ${signal}` : `exited with code ${code}`}`;
        // The model gets the stderr tail; the journal only at debug (it may echo the arguments).
        reject(Object.assign(new Error(`${what}${errTail.trim() ? `: ${errTail.trim()}` : ''}`), { errorClass: signal ? 'killed' : 'exit code', logText: what, stderrTail: errTail.trim() }));
        return;
      }
      // A multi-byte character cut by the cap becomes U+FFFD: the model gets text either way.
      resolve({ output: Buffer.concat(out).toString('utf8'), truncated, ms });
    });
  });
}

export function commandTool(c: CommandConfig, log: Logger): Tool {
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
      try {
        const r = await runCommand(argv, { timeoutMs: c.timeout_s * 1000, maxBytes: c.max_output_bytes, signal: ctx.signal });
        log.info({ tool: c.name, argv0: argv[0], ms: r.ms, bytes: Buffer.byteLength(r.output), truncated: r.truncated }, 'user command done');
        return r.truncated ? { output: r.output, truncated: true, note: `output cut at ${c.max_output_bytes} bytes` } : { output: r.output };
      } catch (e) {
        const x = e as Error & { logText?: string; stderrTail?: string };
        log.warn({ tool: c.name, argv0: argv[0], error: x.logText ?? x.message }, 'user command failed');
        if (x.stderrTail) log.debug({ tool: c.name, stderr: x.stderrTail }, 'user command stderr (tail)');
        throw e;
      }
    },
  };
}
