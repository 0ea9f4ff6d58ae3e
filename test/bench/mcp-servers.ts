// MCP servers for the tests (issue 23), built with the official SDKs:
// haLike, shaped like Home Assistant's /api/mcp (stateless Streamable HTTP,
// bearer token, Assist tool names and schemas; @modelcontextprotocol/server),
// and sseOnly, a server that speaks only the older HTTP+SSE transport
// (protocol 2024-11-05; the v1 line's SSEServerTransport, routed as the SDK's
// own simpleSseServer example is: GET <path> opens the stream, POST
// /messages?sessionId= carries the client's messages, anything else 404).
import { createServer, type Server } from 'node:http';
import { z } from 'zod';
import { McpServer, WebStandardStreamableHTTPServerTransport } from '@modelcontextprotocol/server';
import { McpServer as V1McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { SSEServerTransport } from '@modelcontextprotocol/sdk/server/sse.js';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import type { startWithEmulator } from './daemon.js';
import type { EmulatedSession } from '../../src/emulator/emulator.js';

type Harness = Awaited<ReturnType<typeof startWithEmulator>>;

/** What the Home-Assistant-like server saw: every JSON-RPC message POSTed with a good token, and each tool call. */
export interface Seen { posts: any[]; calls: { name: string; args: any }[]; refused: number }

/**
 * A stateless Streamable HTTP MCP server like HA's /api/mcp: a fresh server per POST, JSON answers, 401 without the token.
 * With `big`, one more tool, Big({ bytes }), answers that many characters of text.
 */
export async function haLike(token: string, opts: { big?: boolean } = {}): Promise<{ url: string; seen: Seen; release(): void; close(): Promise<void> }> {
  const seen: Seen = { posts: [], calls: [], refused: 0 };
  const hung: (() => void)[] = [];
  const target = { name: z.string().optional(), area: z.string().optional(), floor: z.string().optional(), domain: z.array(z.string()).optional() };
  const intent = (name: string) => async (args: any) => {
    seen.calls.push({ name, args });
    return { content: [{ type: 'text' as const, text: JSON.stringify({ speech: {}, response_type: 'action_done', data: { targets: [], success: [{ name: args.name ?? args.area, type: 'entity', id: 'light.kitchen' }], failed: [] } }) }] };
  };
  const build = () => {
    const s = new McpServer({ name: 'home-assistant', version: '2026.8' });
    s.registerTool('HassTurnOn', { description: 'Turns on/opens/presses a device or entity.', inputSchema: z.object(target) }, intent('HassTurnOn'));
    s.registerTool('HassTurnOff', { description: 'Turns off/closes a device or entity.', inputSchema: z.object(target) }, intent('HassTurnOff'));
    s.registerTool('GetLiveContext', { description: 'Provides real-time information about the CURRENT state of devices.', inputSchema: z.object({ name: z.string().optional(), domain: z.union([z.string(), z.array(z.string())]).optional(), area: z.string().optional() }) },
      async () => { seen.calls.push({ name: 'GetLiveContext', args: {} }); return { content: [{ type: 'text' as const, text: '{"success":true,"result":"Kitchen light: on"}' }] }; });
    s.registerTool('HassBroadcast', { description: 'Broadcast a message through the home', inputSchema: z.object({ message: z.string() }) }, async () => ({ content: [] }));
    s.registerTool('FailingLock', { description: 'A tool that fails as HA does (vol.Invalid)', inputSchema: z.object({ name: z.string().optional() }) },
      async () => ({ isError: true, content: [{ type: 'text' as const, text: 'Error calling tool: no entity named Garage' }] }));
    s.registerTool('SlowScene', { description: 'Never answers until the test ends', inputSchema: z.object({ name: z.string().optional() }) },
      async (args: any) => { seen.calls.push({ name: 'SlowScene', args }); await new Promise<void>((r) => hung.push(r)); return { content: [{ type: 'text' as const, text: 'late' }] }; });
    if (opts.big) s.registerTool('Big', { description: 'Answers that many characters', inputSchema: z.object({ bytes: z.number() }) },
      async (args: any) => { seen.calls.push({ name: 'Big', args }); return { content: [{ type: 'text' as const, text: 'x'.repeat(args.bytes) }] }; });
    return s;
  };
  const http: Server = createServer(async (req, res) => {
    if (req.headers.authorization !== `Bearer ${token}`) { seen.refused++; res.writeHead(401).end('401: Unauthorized'); return; }
    if (req.method !== 'POST') { res.writeHead(405).end(); return; }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = Buffer.concat(chunks).toString('utf8');
    try { seen.posts.push(JSON.parse(body)); } catch { /* not JSON */ }
    const server = build();
    const t = new WebStandardStreamableHTTPServerTransport({ sessionIdGenerator: undefined, enableJsonResponse: true });
    await server.connect(t);
    const r = await t.handleRequest(new Request(`http://127.0.0.1${req.url}`, { method: 'POST', headers: req.headers as Record<string, string>, body }));
    res.writeHead(r.status, Object.fromEntries(r.headers));
    res.end(Buffer.from(await r.arrayBuffer()));
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const port = (http.address() as { port: number }).port;
  return { url: `http://127.0.0.1:${port}/api/mcp`, seen, release: () => hung.splice(0).forEach((r) => r()),
    close: () => new Promise<void>((r) => { http.closeAllConnections(); http.close(() => r()); }) };
}

/** What the SSE-only server answered: each request line (method and path, status), and each tool call. */
export interface SseSeen { requests: string[]; calls: { name: string; args: any }[] }

/**
 * A server that speaks only HTTP+SSE (the v1 SDK's SSEServerTransport): tools echo({ text }) and Big({ bytes });
 * addTool(name) registers one more tool on every open connection (the SDK then sends notifications/tools/list_changed).
 */
export async function sseOnly(): Promise<{ url: string; seen: SseSeen; addTool(name: string): void; sessions(): number; close(): Promise<void> }> {
  const seen: SseSeen = { requests: [], calls: [] };
  const transports = new Map<string, SSEServerTransport>();
  const servers = new Set<V1McpServer>();
  const added: string[] = [];
  const register = (s: V1McpServer, name: string) => s.registerTool(name, { description: `Added later: ${name}`, inputSchema: { note: z.string().optional() } },
    async (args: any) => { seen.calls.push({ name, args }); return { content: [{ type: 'text' as const, text: `${name} done` }] }; });
  const build = () => {
    const s = new V1McpServer({ name: 'old-sse-server', version: '0.9' });
    s.registerTool('echo', { description: 'Says the text back', inputSchema: { text: z.string() } },
      async (args: any) => { seen.calls.push({ name: 'echo', args }); return { content: [{ type: 'text' as const, text: `echo: ${args.text}` }] }; });
    s.registerTool('Big', { description: 'Answers that many characters', inputSchema: { bytes: z.number() } },
      async (args: any) => { seen.calls.push({ name: 'Big', args }); return { content: [{ type: 'text' as const, text: 'x'.repeat(args.bytes) }] }; });
    for (const n of added) register(s, n);
    return s;
  };
  const http: Server = createServer(async (req, res) => {
    const u = new URL(req.url ?? '/', 'http://x');
    const line = `${req.method} ${u.pathname}`;
    if (req.method === 'GET' && u.pathname === '/sse') {
      seen.requests.push(`${line} 200`);
      const t = new SSEServerTransport('/messages', res);
      transports.set(t.sessionId, t);
      const s = build();
      servers.add(s);
      t.onclose = () => { transports.delete(t.sessionId); servers.delete(s); };
      await s.connect(t);
      return;
    }
    if (req.method === 'POST' && u.pathname === '/messages') {
      const t = transports.get(u.searchParams.get('sessionId') ?? '');
      if (!t) { seen.requests.push(`${line} 404`); res.writeHead(404).end('Session not found'); return; }
      seen.requests.push(`${line} 202`);
      await t.handlePostMessage(req, res);
      return;
    }
    seen.requests.push(`${line} 404`);
    res.writeHead(404, { 'content-type': 'text/html' }).end(`Cannot ${req.method} ${u.pathname}`); // as Express answers an unrouted request
  });
  await new Promise<void>((r) => http.listen(0, '127.0.0.1', r));
  const port = (http.address() as { port: number }).port;
  return {
    url: `http://127.0.0.1:${port}/sse`, seen,
    addTool: (name) => { added.push(name); for (const s of servers) register(s, name); },
    sessions: () => transports.size,
    close: () => new Promise<void>((r) => { http.closeAllConnections(); http.close(() => r()); }),
  };
}

/** The emulated session of the next press. */
export async function pressForSession(h: Harness): Promise<EmulatedSession> {
  const session = h.emu.waitFor('session', undefined, 5000);
  await h.daemon.pressAndWait('listening', 5000);
  return ((await session) as [EmulatedSession])[0];
}

export async function mcpStatus(h: Harness, name: string): Promise<any> {
  return ((await h.daemon.ctl('status')).mcp as any[]).find((m) => m.name === name);
}

export async function untilState(h: Harness, name: string, state: string, timeoutMs: number): Promise<any> {
  let last: any = null;
  const t0 = Date.now();
  while (Date.now() - t0 < timeoutMs) { last = await mcpStatus(h, name); if (last?.state === state) return last; await sleep(100); }
  assert.fail(`MCP server ${name} not ${state} within ${timeoutMs} ms: ${JSON.stringify(last)}`);
}

