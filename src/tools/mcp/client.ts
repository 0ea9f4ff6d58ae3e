// MCP servers (tools.mcp, issue 23): one McpServer per config entry keeps a
// connection (Streamable HTTP, falling back to HTTP+SSE; or a stdio child) in
// the background, lists its tools and keeps the last good list. Nothing here
// is awaited by a conversation: a session declares whatever list is there
// when it starts; a server that is slow or down only means its tools are
// absent (the reason in the log and `ctl status`) while it is retried with
// back-off. A refresh (the server's notifications/tools/list_changed, a
// reconnect, every REFRESH_MS) applies from the next session.
import type { Client, Transport } from '@modelcontextprotocol/client';
import type { McpServerConfig } from '../../config.js';
import type { Logger } from '../../log.js';
import { monotonicMs } from '../../clock.js';
import { allowed, toDeclaration, type McpToolInfo } from './schema.js';
import { MAX_MESSAGE_BYTES, mcpTool, McpCallError, toMcpError } from './tool.js';
import type { Tool } from '../types.js';

type Sdk = typeof import('@modelcontextprotocol/client') & Pick<typeof import('@modelcontextprotocol/client/stdio'), 'StdioClientTransport'>;
let sdkP: Promise<Sdk> | null = null;
/** The MCP SDK is loaded when the first server is opened: a speaker without MCP servers never pays its start-up time and memory (~150 ms, ~10 MiB here). */
const loadSdk = (): Promise<Sdk> => (sdkP ??= Promise.all([import('@modelcontextprotocol/client'), import('@modelcontextprotocol/client/stdio')])
  .then(([client, stdio]) => ({ ...client, StdioClientTransport: stdio.StdioClientTransport })));

const BACKOFF_MS = [1000, 2000, 5000, 10_000, 30_000, 60_000];
/** A connection that stayed up this long starts its back-off from the beginning again. */
const STABLE_MS = 60_000;
export const REFRESH_MS = 5 * 60_000;
const CONNECT_TIMEOUT_MS = 10_000;
/** At most this many tools of one server are declared (the rest dropped, with a log line). */
export const MAX_TOOLS = 64;
export { MAX_MESSAGE_BYTES };
/** Environment variables never passed to a stdio server: the daemon's keys and anything named like a secret. */
const SECRET_ENV = /^(GEMINI_API_KEY|GOOGLE_API_KEY|PICOVOICE_ACCESS_KEY|CREDENTIALS_DIRECTORY)$|KEY$|_KEY_|TOKEN|SECRET|PASSW|CREDENTIAL/i;

export type McpState = 'connecting' | 'ready' | 'down' | 'stopped';
export interface McpServerStatus {
  name: string;
  endpoint: string; // the URL without query or credentials, or the program
  transport: 'streamable-http' | 'sse' | 'stdio' | null;
  state: McpState;
  tools: number; // declared in the next session
  listed: number; // as the server listed them
  lastError: string | null;
  retryInS: number | null;
}

/** The environment a stdio server gets: ours without secrets, plus its own `env`. */
export function childEnv(own: Record<string, string>, env: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(env)) if (v !== undefined && !SECRET_ENV.test(k)) out[k] = v;
  return { ...out, ...own };
}

/** A body (or one SSE event) over the cap: errors the stream it came in; the call that waited for it is told (tool.ts, mcp-too-large). */
const tooLarge = () => new Error(`the server's answer is larger than ${MAX_MESSAGE_BYTES} bytes`);

/** The whole body capped: a POST's answer (JSON or a short SSE stream), or any other answer that is not an event stream. */
const wholeCap = () => {
  let seen = 0;
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, ctl) { seen += chunk.byteLength; if (seen > MAX_MESSAGE_BYTES) ctl.error(tooLarge()); else ctl.enqueue(chunk); },
  });
};

/**
 * A long-lived event stream (the HTTP+SSE transport's GET, Streamable HTTP's GET) capped per event: the bytes
 * since the last blank line (an event's end) may not pass the cap, since the SSE parser holds an event whole.
 */
export const eventCap = (max = MAX_MESSAGE_BYTES, onTooLarge: () => void = () => undefined) => {
  let since = 0;
  let newline = false;
  return new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, ctl) {
      for (let i = 0; i < chunk.length; i++) {
        const b = chunk[i];
        if (b === 10) { if (newline) since = 0; newline = true; } else if (b !== 13) newline = false;
        since++;
      }
      if (since > max) { ctl.error(tooLarge()); onTooLarge(); } else ctl.enqueue(chunk);
    },
  });
};

/**
 * fetch whose answers cannot make us hold more than MAX_MESSAGE_BYTES: a POST's body whole (the call waiting for it
 * fails), an event stream per event (the stream is lost mid-message: `onEventTooLarge` drops the connection).
 */
const cappedFetch = (onEventTooLarge: () => void) => (async (url: string | URL, init?: RequestInit) => {
  const res = await fetch(url, init);
  if (!res.body) return res;
  const post = (init?.method ?? 'GET').toUpperCase() === 'POST';
  const stream = /^\s*text\/event-stream/i.test(res.headers.get('content-type') ?? '');
  const body = res.body.pipeThrough(!post && stream ? eventCap(MAX_MESSAGE_BYTES, onEventTooLarge) : wholeCap());
  return new Response(body, { status: res.status, statusText: res.statusText, headers: res.headers });
}) as typeof fetch;

function endpointOf(c: McpServerConfig): string {
  if (c.command) return c.command[0];
  const u = new URL(c.url!);
  return `${u.protocol}//${u.host}${u.pathname}`;
}

const httpStatus = (e: unknown): number | null => {
  const s = (e as { status?: unknown })?.status;
  return typeof s === 'number' ? s : null;
};

export class McpServer {
  state: McpState = 'connecting';
  lastError: string | null = null;
  transport: McpServerStatus['transport'] = null;
  private client: Client | null = null;
  private declared: Tool[] = [];
  private listed = 0;
  /** The server's names that allow/deny kept out (for doctor). */
  notAllowed: string[] = [];
  private stopped = false;
  private attempt = 0;
  private retryAt: number | null = null;
  private wake: (() => void) | null = null;
  private closed: (() => void) | null = null;
  private refreshTimer: NodeJS.Timeout | null = null;
  private oversized: Client | null = null;

  constructor(readonly config: McpServerConfig, private readonly token: string | null, private readonly log: Logger, private readonly refreshMs = REFRESH_MS) {}

  get name(): string { return this.config.name; }
  /** The tools to declare in the next session (the last good list). */
  get tools(): Tool[] { return this.declared; }

  start(): void { void this.run(); }

  async stop(): Promise<void> {
    this.stopped = true;
    this.state = 'stopped';
    this.wake?.();
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    const c = this.client;
    this.client = null;
    await c?.close().catch(() => undefined);
  }

  status(): McpServerStatus {
    return { name: this.name, endpoint: endpointOf(this.config), transport: this.transport, state: this.state, tools: this.declared.length, listed: this.listed,
      lastError: this.lastError, retryInS: this.retryAt === null ? null : Math.max(0, Math.round((this.retryAt - monotonicMs()) / 1000)) };
  }

  /** Call a tool by the server's own name; bounded by timeout_s, aborted (notifications/cancelled) with the signal. */
  async call(name: string, args: Record<string, unknown>, signal: AbortSignal): Promise<unknown> {
    const c = this.client;
    if (!c || this.state !== 'ready') throw new McpCallError('mcp-unavailable', `the ${this.name} server is not connected${this.lastError ? ` (${this.lastError})` : ''}`);
    try {
      return await c.callTool({ name, arguments: args }, { signal, timeout: this.config.timeout_s * 1000 });
    } catch (e) {
      // The stream it was to come on was cut for an event over the cap: most likely this call's answer.
      const err = toMcpError(this.oversized === c ? tooLarge() : e, this.name, this.config.timeout_s);
      if (err.errorClass === 'mcp-gone') this.drop(c, err.message); // reconnect in the background
      throw err;
    }
  }

  private async run(): Promise<void> {
    while (!this.stopped) {
      const t0 = monotonicMs();
      try {
        await this.open();
        await new Promise<void>((res) => { this.closed = res; });
        if (monotonicMs() - t0 > STABLE_MS) this.attempt = 0;
      } catch (e) {
        if (this.stopped) break;
        this.fail(e);
      }
      if (this.stopped) break;
      const delay = BACKOFF_MS[Math.min(this.attempt++, BACKOFF_MS.length - 1)];
      this.retryAt = monotonicMs() + delay;
      this.log.info({ mcp: this.name, retryInS: delay / 1000 }, 'MCP server: retrying');
      await new Promise<void>((res) => { const t = setTimeout(res, delay); this.wake = () => { clearTimeout(t); res(); }; });
      this.retryAt = null;
    }
  }

  private fail(e: unknown): void {
    this.state = 'down';
    this.lastError = describe(e, this.config);
    this.log.warn({ mcp: this.name, endpoint: endpointOf(this.config), error: this.lastError }, 'MCP server not available; its tools are absent until it is (retrying with back-off)');
  }

  private newClient({ Client }: Sdk): Client {
    const client: Client = new Client({ name: 'live-speaker', version: '1' }, {
      listMaxPages: 8,
      listChanged: { tools: { onChanged: (err, tools) => {
        if (this.client !== client) return;
        if (err) { this.log.warn({ mcp: this.name, error: err.message }, 'MCP server: the changed tool list could not be read; keeping the last one'); return; }
        if (tools) this.setTools(tools as McpToolInfo[], 'the server said its tools changed');
      } } },
    });
    client.onerror = (e) => this.log.debug({ mcp: this.name, error: e.message }, 'MCP transport error');
    return client;
  }

  private async open(): Promise<void> {
    this.state = 'connecting';
    const timeout = Math.min(CONNECT_TIMEOUT_MS, Math.max(2000, this.config.timeout_s * 1000));
    const sdk = await loadSdk();
    if (this.stopped) throw new Error('stopped');
    const { StdioClientTransport, StreamableHTTPClientTransport, SSEClientTransport } = sdk;
    let client = this.newClient(sdk);
    if (this.config.command) {
      const [command, ...args] = this.config.command;
      const t = new StdioClientTransport({ command, args, env: childEnv(this.config.env), stderr: 'pipe', maxBufferSize: MAX_MESSAGE_BYTES });
      let tail = '';
      t.stderr?.on('data', (d: Buffer) => {
        const s = d.toString('utf8');
        tail = (tail + s).slice(-300);
        for (const line of s.split('\n')) if (line.trim()) this.log.debug({ mcp: this.name, stderr: line.slice(0, 300) }, 'MCP server stderr');
      });
      t.onclose = () => { if (this.state === 'ready' && !this.stopped) this.lastError = `the program exited${tail.trim() ? `: ${tail.trim().split('\n').at(-1)}` : ''}`; };
      await this.connect(client, t, timeout);
      this.transport = 'stdio';
    } else {
      const url = new URL(this.config.url!);
      const headers: Record<string, string> = { ...this.config.headers, ...(this.token ? { Authorization: `Bearer ${this.token}` } : {}) };
      try {
        const first = client;
        await this.connect(client, new StreamableHTTPClientTransport(url, { requestInit: { headers }, fetch: cappedFetch(() => this.oversize(first)) }), timeout);
        this.transport = 'streamable-http';
      } catch (e) {
        const st = httpStatus(e);
        // Only a server that refuses the POST (404, 405, 400...) may be an HTTP+SSE one; a bad token or a dead host is not.
        if (st === null || st < 400 || st >= 500 || st === 401 || st === 403) throw e;
        const sse = client = this.newClient(sdk);
        try {
          await this.connect(client, new SSEClientTransport(url, { requestInit: { headers }, fetch: cappedFetch(() => this.oversize(sse)) }), timeout);
        } catch { throw e; }
        this.transport = 'sse';
      }
    }
    this.client = client;
    client.onclose = () => this.drop(client, this.lastError ?? 'the connection closed');
    const { tools } = await client.listTools(undefined, { timeout });
    this.setTools(tools as McpToolInfo[], 'connected');
    this.state = 'ready';
    this.lastError = null;
    if (this.refreshTimer) clearInterval(this.refreshTimer);
    this.refreshTimer = setInterval(() => void this.refresh(client, timeout), this.refreshMs);
    this.refreshTimer.unref();
  }

  private async connect(client: Client, t: Transport, timeout: number): Promise<void> {
    try {
      await client.connect(t, { timeout });
    } catch (e) {
      await client.close().catch(() => undefined);
      throw e;
    }
  }

  private async refresh(client: Client, timeout: number): Promise<void> {
    if (this.client !== client) return;
    try {
      const { tools } = await client.listTools(undefined, { timeout, cacheMode: 'refresh' });
      this.setTools(tools as McpToolInfo[], 'refreshed');
    } catch (e) {
      this.drop(client, describe(e, this.config));
    }
  }

  /** An event over the cap arrived on this client's stream: what is pending on it fails (said to the model), and it reconnects. */
  private oversize(client: Client): void {
    this.oversized = client;
    this.drop(client, `an answer larger than ${MAX_MESSAGE_BYTES} bytes was refused`);
  }

  /** The connection is lost (closed, or a call or refresh found it gone): reconnect in the background, keeping the list. */
  private drop(client: Client, why: string): void {
    if (this.client !== client) return;
    this.client = null;
    if (this.refreshTimer) { clearInterval(this.refreshTimer); this.refreshTimer = null; }
    if (!this.stopped) {
      this.state = 'down';
      this.lastError = why;
      this.log.warn({ mcp: this.name, error: why }, 'MCP server connection lost; reconnecting (its tools stay declared; calls fail until it is back)');
    }
    void client.close().catch(() => undefined);
    this.closed?.();
  }

  private setTools(list: McpToolInfo[], why: string): void {
    const out: Tool[] = [];
    const seen = new Set<string>();
    const notAllowed: string[] = [];
    let refused = 0;
    for (const t of list) {
      if (!t || typeof t.name !== 'string') { refused++; continue; }
      if (!allowed(t.name, this.config.allow, this.config.deny)) { refused++; if (notAllowed.length < MAX_TOOLS) notAllowed.push(t.name.slice(0, 80)); continue; }
      if (out.length >= MAX_TOOLS) { this.log.warn({ mcp: this.name, tool: t.name.slice(0, 80) }, `MCP tool dropped: more than ${MAX_TOOLS} allowed tools`); continue; }
      const d = toDeclaration(this.name, t);
      if ('error' in d) { this.log.warn({ mcp: this.name, tool: t.name.slice(0, 80), reason: d.error }, 'MCP tool dropped'); continue; }
      if (seen.has(d.declaration.name!)) { this.log.warn({ mcp: this.name, tool: t.name.slice(0, 80), as: d.declaration.name }, 'MCP tool dropped: its name clashes with another of this server\'s tools once made valid'); continue; }
      seen.add(d.declaration.name!);
      if (d.dropped.length) this.log.info({ mcp: this.name, tool: t.name, dropped: d.dropped.slice(0, 20) }, 'MCP tool: parts of its schema the Live API cannot take were left out');
      out.push(mcpTool(this, t.name, d.declaration, this.config.non_blocking));
    }
    this.declared = out;
    this.notAllowed = notAllowed;
    this.listed = list.length;
    this.log.info({ mcp: this.name, transport: this.transport, listed: list.length, declared: out.map((t) => t.declaration.name), notAllowed: refused, why }, 'MCP server tools');
  }
}

function describe(e: unknown, c: McpServerConfig): string {
  const st = httpStatus(e);
  if (st === 401 || st === 403) return `HTTP ${st}: the server refused the token${c.token_file ? ` in ${c.token_file}` : ' (no token_file is set)'}`;
  if (st === 404) return 'HTTP 404: no MCP endpoint at this URL (for Home Assistant: is the MCP Server integration added?)';
  const err = e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = err?.cause?.code ?? err?.code;
  if (code === 'ENOENT' && c.command) return `${c.command[0]} not found`;
  const msg = (e instanceof Error ? e.message : String(e)).slice(0, 300);
  return code && !msg.includes(String(code)) ? `${msg} (${code})` : msg;
}

/** Every configured server, its connection kept in the background; reconfigured on reload (changed servers restart). */
export class McpHub {
  private servers = new Map<string, McpServer>();

  constructor(private readonly log: Logger, private readonly refreshMs = REFRESH_MS) {}

  /** Start what is new or changed, stop what is gone. Tokens were read by the caller (a file it cannot read refuses the config before this). */
  configure(entries: McpServerConfig[], tokens: Map<string, string | null>): void {
    const next = new Map<string, McpServer>();
    for (const e of entries) {
      const old = this.servers.get(e.name);
      const token = tokens.get(e.name) ?? null;
      if (old && JSON.stringify(old.config) === JSON.stringify(e) && (old as unknown as { token: string | null }).token === token) { next.set(e.name, old); continue; }
      if (old) void old.stop();
      const s = new McpServer(e, token, this.log, this.refreshMs);
      next.set(e.name, s);
      s.start();
    }
    for (const [name, s] of this.servers) if (!next.has(name)) void s.stop();
    this.servers = next;
  }

  /** The tools to declare now (each server's last good list). */
  tools(): Tool[] { return [...this.servers.values()].flatMap((s) => s.tools); }

  status(): McpServerStatus[] { return [...this.servers.values()].map((s) => s.status()); }

  async stop(): Promise<void> { await Promise.all([...this.servers.values()].map((s) => s.stop())); this.servers.clear(); }
}

/** `live-speaker doctor`: connect once (bounded), list the tools, say which are declared; never prints the token. */
export async function probeServer(config: McpServerConfig, token: string | null, log: Logger, timeoutMs = 8000): Promise<{ ok: boolean; detail: string }> {
  const s = new McpServer({ ...config, timeout_s: Math.min(config.timeout_s, timeoutMs / 1000) }, token, log, REFRESH_MS);
  s.start();
  const t0 = monotonicMs();
  while (s.state === 'connecting' && monotonicMs() - t0 < timeoutMs) await new Promise((r) => setTimeout(r, 100));
  const st = s.status();
  await s.stop();
  if (st.state !== 'ready') return { ok: false, detail: `${st.endpoint}: ${st.lastError ?? `no answer within ${timeoutMs / 1000} s`}` };
  const names = s.tools.map((t) => t.declaration.name);
  return { ok: true, detail: `${st.endpoint} (${st.transport}): ${st.listed} tools listed, ${names.length} declared${names.length ? `: ${names.join(', ')}` : ''}`
    + (s.notAllowed.length ? `; not allowed: ${s.notAllowed.join(', ')}` : '') };
}
