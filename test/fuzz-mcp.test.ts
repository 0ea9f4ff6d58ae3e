// Fuzz (issue 25), the MCP border: a raw JSON-RPC server over HTTP (node:http,
// no SDK: it can say anything) answering the speaker's MCP client with
// seeded mutations of what a real server says (test/bench/fuzz.ts: wrong
// types, nulls, missing and extra fields, deep nesting, huge and odd values)
// in tools/list and tools/call results and in the JSON-RPC envelope, broken
// JSON, random bytes, HTTP errors, and answers that never come. Seeded
// (FUZZ_SEED; each request's answer is drawn from the seed and the request's
// number, so a failure names its seed), bounded in time (FUZZ_MS, default
// 16 s: half in-process, half end to end).
// 1. In-process, the real McpServer (src/tools/mcp/client.ts) refreshing its
//    list every 15 ms: every list it keeps declares only what the Live API
//    takes (valid names with the prefix, at most MAX_TOOLS, the schema subset,
//    `required` naming only declared properties, under the size cap), and
//    every call ends within timeout_s + 1.5 s, as an answer
//    (toResponse) or a McpCallError with a sentence.
// 2. End to end, the built daemon: the model (the emulator) makes calls whose
//    answers are fuzzed; each call gets exactly one function response and one
//    journal line (errors classed), every call reaches the server, the
//    daemon lives, its RSS stays bounded, and the next press is served.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';
import { Writable } from 'node:stream';
import pino from 'pino';
import { SoundCard } from './bench/soundcard.js';
import { startWithEmulator } from './bench/daemon.js';
import { pressForSession, untilState } from './bench/mcp-servers.js';
import { rssMiB } from './bench/util.js';
import { rng, int, pick, mutateN, oddValue, junkBytes, brokenJson, deep, type Rand } from './bench/fuzz.js';
import { McpServer, MAX_TOOLS } from '../src/tools/mcp/client.js';
import { McpCallError, MAX_RESULT_TEXT, toResponse } from '../src/tools/mcp/tool.js';
import { MAX_DECLARATION_BYTES, MAX_NAME, NAME_RE } from '../src/tools/mcp/schema.js';
import type { McpServerConfig } from '../src/config.js';

const SEED = Number(process.env.FUZZ_SEED ?? 23);
const BUDGET_MS = Number(process.env.FUZZ_MS ?? 16_000);
const TIMEOUT_S = 1;

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

// ---- what a real server says (Home Assistant's shapes), to mutate -------------------------------------------------

const target = { type: 'object', properties: { name: { type: 'string' }, area: { type: 'string' }, domain: { type: 'array', items: { type: 'string', enum: ['light', 'switch', 'fan'] } } }, required: ['name'] };
const TOOLS = [
  { name: 'HassTurnOn', description: 'Turns on/opens/presses a device or entity.', inputSchema: target },
  { name: 'HassTurnOff', description: 'Turns off/closes a device or entity.', inputSchema: target },
  { name: 'HassLightSet', description: 'Sets the brightness or color of a light', inputSchema: { type: 'object', properties: { name: { type: 'string' }, brightness: { type: 'integer', minimum: 0, maximum: 100 }, color: { anyOf: [{ type: 'string' }, { type: 'null' }] }, scene: { $ref: '#/$defs/scene' } }, $defs: { scene: { type: 'object', properties: { id: { type: 'string' } } } } } },
  { name: 'GetLiveContext', description: 'Provides real-time information about the CURRENT state of devices.', inputSchema: { type: 'object', properties: {} } },
];
const RESULTS: unknown[] = [
  { content: [{ type: 'text', text: '{"speech":{},"response_type":"action_done","data":{"success":[{"name":"Kitchen","id":"light.kitchen"}]}}' }] },
  { content: [{ type: 'text', text: 'Kitchen light: on' }, { type: 'resource', resource: { uri: 'ha://x', text: 'more' } }], structuredContent: { on: true, brightness: 40 } },
  { isError: true, content: [{ type: 'text', text: 'Error calling tool: no entity named Garage' }] },
  { content: [{ type: 'image', data: 'AAAA', mimeType: 'image/png' }, { type: 'resource_link', uri: 'ha://y', name: 'y' }] },
];

type Answer = { status: number; body: Buffer | string; type?: string } | 'never';

/** JSON text of a value, or of null when it is nested past JSON.stringify's stack (a mutation can nest that deep). */
function json(v: unknown): string {
  try { return JSON.stringify(v) ?? 'null'; } catch { return 'null'; }
}

/** The answer to one JSON-RPC request: mostly a mutation of a good one, sometimes something no server should say. */
function answer(r: Rand, msg: any, good: unknown, httpErrors = true): Answer {
  const ok = (v: unknown): Answer => { let s: string | undefined; try { s = JSON.stringify(v); } catch { s = undefined; } return { status: 200, body: s ?? 'null', type: 'application/json' }; };
  const env = { jsonrpc: '2.0', id: msg.id, result: good };
  switch (int(r, 40)) {
    case 0: return { status: 200, body: brokenJson(r, env), type: 'application/json' };
    case 1: return { status: 200, body: junkBytes(r, pick(r, [0, 16, 3000])), type: pick(r, ['application/json', 'text/plain', 'application/octet-stream']) };
    case 2: if (httpErrors) return { status: pick(r, [500, 502, 404, 400, 401, 429]), body: pick(r, ['', 'Internal Server Error', '{"error":"x"}']) };
      return { status: 200, body: json({ ...env, result: mutateN(r, good) }), type: 'application/json' };
    case 3: return 'never';
    case 4: return ok({ jsonrpc: '2.0', id: msg.id, error: mutateN(r, { code: -32602, message: 'Invalid params', data: { field: 'name' } }) });
    case 5: return ok({ jsonrpc: '2.0', id: msg.id, error: { code: -32603, message: 'x'.repeat(pick(r, [10, 100_000])) } });
    case 6: return ok(deep(pick(r, [50, 5000]), env, r() < 0.5));
    case 7: return { status: 200, body: `event: message\ndata: ${json(mutateN(r, env))}\n\n`, type: 'text/event-stream' };
    case 8: case 9: case 10: case 11: return ok(mutateN(r, env)); // the envelope: id, jsonrpc, result swapped or gone
    case 12: return ok({ ...env, result: { content: [{ type: 'text', text: 'x'.repeat(pick(r, [MAX_RESULT_TEXT - 1, MAX_RESULT_TEXT + 1, 1_000_000])) }] } });
    case 13: return ok({ ...env, result: { content: Array.from({ length: pick(r, [0, 1000, 20_000]) }, () => ({ type: 'text', text: 'ok' })), structuredContent: deep(20, oddValue(r)) } });
    default: return ok({ ...env, result: mutateN(r, good) });
  }
}

/**
 * A raw MCP server over Streamable HTTP (stateless, JSON answers). `list` and `call` give the good result for each
 * request; `fuzzList` / `fuzzCall` say whether it is mutated. Request n is answered from rng(seed * 1e6 + n).
 */
async function rawServer(seed: number, opts: { fuzzList: boolean; fuzzCall: boolean; httpErrors?: boolean; bigEvery?: number }) {
  let n = 0;
  const counts = { list: 0, call: 0, callsAnswered: 0, never: 0 };
  /** Each tools/call answer's size and when it was sent (performance.now()). */
  const sent: { at: number; bytes: number }[] = [];
  const hung = new Set<ServerResponse>();
  const http = createServer(async (req: IncomingMessage, res: ServerResponse) => {
    if (req.method !== 'POST') { res.writeHead(405).end(); return; }
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    let msg: any;
    try { msg = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { res.writeHead(400).end(); return; }
    if (msg.id === undefined) { res.writeHead(202).end(); return; } // a notification
    const r = rng(seed * 1e6 + n++);
    const send = (a: Answer) => {
      if (a === 'never') { counts.never++; hung.add(res); res.on('close', () => hung.delete(res)); return; }
      if (msg.method === 'tools/call') sent.push({ at: performance.now(), bytes: Buffer.byteLength(a.body) });
      res.writeHead(a.status, a.type ? { 'content-type': a.type } : {}).end(a.body);
    };
    if (msg.method === 'initialize') {
      send({ status: 200, type: 'application/json', body: JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { protocolVersion: msg.params?.protocolVersion ?? '2025-06-18', capabilities: { tools: { listChanged: false } }, serverInfo: { name: 'fuzz', version: '1' } } }) });
    } else if (msg.method === 'tools/list') {
      counts.list++;
      const good = { tools: TOOLS };
      send(opts.fuzzList ? (r() < 0.5 ? { status: 200, type: 'application/json', body: json({ jsonrpc: '2.0', id: msg.id, result: mutateN(r, good) }) } : answer(r, msg, good)) : { status: 200, type: 'application/json', body: JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: good }) });
    } else if (msg.method === 'tools/call') {
      counts.call++;
      // Every bigEvery-th call: a good answer of 1 MB of text (cut to 64 KiB for the model), so that a daemon keeping what
      // it reads would show in its RSS.
      if (opts.bigEvery && counts.call % opts.bigEvery === 0) send({ status: 200, type: 'application/json', body: JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: { content: [{ type: 'text', text: 'y'.repeat(1_000_000) }] } }) });
      else send(opts.fuzzCall ? answer(r, msg, pick(r, RESULTS), opts.httpErrors ?? true) : { status: 200, type: 'application/json', body: JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: RESULTS[0] }) });
    } else {
      send({ status: 200, type: 'application/json', body: JSON.stringify({ jsonrpc: '2.0', id: msg.id, result: {} }) });
    }
  });
  await new Promise<void>((res) => http.listen(0, '127.0.0.1', res));
  const url = `http://127.0.0.1:${(http.address() as { port: number }).port}/api/mcp`;
  return {
    url, counts, sent,
    async close() { for (const h of hung) h.destroy(); http.closeAllConnections(); await new Promise<void>((res) => http.close(() => res())); },
  };
}

const TYPES = new Set(['STRING', 'NUMBER', 'INTEGER', 'BOOLEAN', 'ARRAY', 'OBJECT']);
/** The Schema fields schema.ts may send (anything else, e.g. additionalProperties, $ref or format, would be a leak). */
const KEYS = new Set(['type', 'description', 'enum', 'items', 'properties', 'required', 'minimum', 'maximum', 'minLength', 'maxLength', 'minItems', 'maxItems', 'pattern', 'nullable', 'anyOf']);

/** What the Live API takes (the subset schema.ts promises): a reason it does not, or null. */
function badSchema(s: any, at: string, depth = 0): string | null {
  if (!s || typeof s !== 'object' || Array.isArray(s)) return `${at}: not an object`;
  if (depth > 12) return `${at}: deeper than 12`;
  const other = Object.keys(s).filter((k) => !KEYS.has(k));
  if (other.length) return `${at}: keywords the subset does not have: ${other.join(', ')}`;
  if (Array.isArray(s.anyOf)) {
    for (const [i, a] of s.anyOf.entries()) { const b = badSchema(a, `${at}|${i}`, depth + 1); if (b) return b; }
    return null;
  }
  if (!TYPES.has(s.type)) return `${at}: type ${JSON.stringify(s.type)}`;
  if (s.description !== undefined && typeof s.description !== 'string') return `${at}: description not a string`;
  if (s.enum !== undefined && !(Array.isArray(s.enum) && s.enum.every((e: unknown) => typeof e === 'string'))) return `${at}: enum not strings`;
  if (s.type === 'ARRAY') { const b = badSchema(s.items, `${at}[]`, depth + 1); if (b) return b; }
  if (s.type === 'OBJECT' && s.properties !== undefined) {
    if (typeof s.properties !== 'object' || Object.getPrototypeOf(s.properties) !== Object.prototype) return `${at}: properties not a plain object`;
    const keys = Object.keys(s.properties);
    if (!keys.length) return `${at}: no properties`;
    for (const k of keys) { if (!/^[A-Za-z_][A-Za-z0-9_]{0,63}$/.test(k)) return `${at}.${k}: a parameter name the API refuses`; const b = badSchema(s.properties[k], `${at}.${k}`, depth + 1); if (b) return b; }
    if (s.required !== undefined && !(Array.isArray(s.required) && s.required.every((q: unknown) => typeof q === 'string' && Object.hasOwn(s.properties, q)))) return `${at}: required names ${JSON.stringify(s.required)} not all among its properties`;
  }
  return null;
}

/** Why a declared tool is not one the Live API takes, or null. */
function badDeclaration(d: any, prefix: string): string | null {
  if (typeof d.name !== 'string' || !NAME_RE.test(d.name) || d.name.length > MAX_NAME || !d.name.startsWith(`${prefix}__`)) return `name ${JSON.stringify(d.name)}`;
  if (typeof d.description !== 'string' || !d.description) return `${d.name}: description ${JSON.stringify(d.description)?.slice(0, 80)}`;
  if (JSON.stringify(d).length > MAX_DECLARATION_BYTES) return `${d.name}: larger than ${MAX_DECLARATION_BYTES} bytes`;
  if (d.parameters !== undefined) { if (d.parameters.type !== 'OBJECT') return `${d.name}: parameters not an OBJECT`; return badSchema(d.parameters, d.name); }
  return null;
}

function collectingLogger() {
  const lines: any[] = [];
  const stream = new Writable({ write(chunk, _e, cb) { for (const l of String(chunk).split('\n')) if (l) lines.push(JSON.parse(l)); cb(); } });
  return { log: pino({ level: 'debug' }, stream), lines };
}

/** Arguments as the model might send them: mutated, but something JSON can carry (the Live API sends JSON). */
function modelArgs(r: Rand): Record<string, unknown> {
  const a = mutateN(r, { name: 'Kitchen', domain: ['light'] });
  try { if (a && typeof a === 'object' && !Array.isArray(a) && JSON.stringify(a).length < 200_000) return a as Record<string, unknown>; } catch { /* too deep */ }
  return { name: 'Kitchen' };
}

const config = (url: string): McpServerConfig => ({ name: 'fz', url, headers: {}, token_file: null, command: null, env: {}, allow: ['*'], deny: [], timeout_s: TIMEOUT_S, non_blocking: false } as unknown as McpServerConfig);

test(`MCP fuzz, in-process: seeded (${SEED}), ${BUDGET_MS / 2000} s of mutated tools/list and tools/call answers, broken JSON, HTTP errors and silence from a raw server to the real MCP client; every list kept declares only types, names, enums and fields the Live API takes, every call ends within timeout_s + 1.5 s as an answer or a sentence`, { timeout: BUDGET_MS / 2 + 60_000 }, async () => {
  const srv = await rawServer(SEED, { fuzzList: true, fuzzCall: true });
  const { log, lines } = collectingLogger();
  const r = rng(SEED);
  const stats = { servers: 0, ready: 0, lists: 0, calls: 0, answers: 0, errors: {} as Record<string, number>, declaredMax: 0 };
  const t0 = performance.now();
  try {
    while (performance.now() - t0 < BUDGET_MS / 2) {
      const s = new McpServer(config(srv.url), null, log, 15);
      stats.servers++;
      s.start();
      const c0 = performance.now();
      while (s.state === 'connecting') { await sleep(5); assert.ok(performance.now() - c0 < 12_000, 'connecting for over 12 s'); }
      if (s.state === 'ready') stats.ready++;
      for (let k = 0; k < 30 && s.state === 'ready' && performance.now() - t0 < BUDGET_MS / 2; k++) {
        const tools = s.tools;
        assert.ok(tools.length <= MAX_TOOLS, `${tools.length} tools declared`);
        stats.declaredMax = Math.max(stats.declaredMax, tools.length);
        for (const t of tools) { const why = badDeclaration(t.declaration, 'fz'); assert.equal(why, null, `seed ${SEED}: a declaration the Live API would refuse: ${why}\n${JSON.stringify(t.declaration).slice(0, 2000)}`); }
        stats.lists++;
        // Calls, a few at once, some cancelled: each settles once, in time, as an answer or a McpCallError.
        const calls = Array.from({ length: 1 + int(r, 3) }, async () => {
          const ac = new AbortController();
          if (r() < 0.15) setTimeout(() => ac.abort(), int(r, 300));
          const name = pick(r, [...TOOLS.map((x) => x.name), 'Nope']);
          const args = mutateN(r, { name: 'Kitchen', domain: ['light'] }) as Record<string, unknown>;
          const c1 = performance.now();
          try {
            const out = toResponse(await s.call(name, args && typeof args === 'object' ? args : {}, ac.signal), 'fz');
            stats.answers++;
            assert.equal(typeof out.output, 'string');
            assert.ok((out.output as string).length <= MAX_RESULT_TEXT + 100, `output of ${(out.output as string).length} characters`);
            assert.ok(JSON.stringify(out).length < MAX_RESULT_TEXT + 70 * 1024, 'the function response is bounded');
          } catch (e) {
            assert.ok(e instanceof McpCallError, `seed ${SEED}: a call failed with ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}, not a McpCallError`);
            assert.ok(e.message.length > 0 && e.message.length <= 2100, `a sentence: ${e.message.slice(0, 200)}`);
            stats.errors[e.errorClass] = (stats.errors[e.errorClass] ?? 0) + 1;
          }
          stats.calls++;
          const took = performance.now() - c1;
          assert.ok(took < TIMEOUT_S * 1000 + 1500, `a call took ${Math.round(took)} ms (timeout_s ${TIMEOUT_S})`);
        });
        await Promise.all(calls);
        await sleep(int(r, 20));
      }
      await s.stop();
    }
    const fatal = lines.filter((l) => l.level >= 50);
    assert.deepEqual(fatal, [], 'nothing logged as an error');
    console.log(`# MCP fuzz in-process: seed ${SEED}, ${srv.counts.list} tools/list and ${srv.counts.call} tools/call answered by the raw server (${srv.counts.never} never) in ${((performance.now() - t0) / 1000).toFixed(1)} s; ${stats.servers} clients (${stats.ready} reached ready), ${stats.lists} kept lists checked (up to ${stats.declaredMax} tools), ${stats.calls} calls: ${stats.answers} answers, errors ${JSON.stringify(stats.errors)}; ${lines.filter((l) => l.msg === 'MCP tool dropped').length} tools dropped with a reason`);
  } finally {
    await srv.close();
  }
});

test(`MCP fuzz, end to end: seeded (${SEED}), ${BUDGET_MS / 2000} s of tool calls from the model whose answers are fuzzed; each gets exactly one function response and one journal line and reaches the server (the connection is never dropped), the daemon lives, RSS bounded, the next press is served`, { timeout: BUDGET_MS / 2 + 90_000 }, async () => {
  // HTTP error statuses are left to the in-process part: each one rightly drops the connection (a server that answers
  // 500 is reconnected to), and the back-off would leave the rest of this run with calls that never reach the server.
  const srv = await rawServer(SEED + 1, { fuzzList: false, fuzzCall: true, httpErrors: false, bigEvery: 2 });
  const h = await startWithEmulator({ mode: 'scripted' }, {
    conversation: { follow_up_s: 120, no_speech_timeout_s: 120, max_conversation_s: 3600 }, feedback: { wake_sound: false, error_sound: false },
    tools: { mcp: [{ name: 'fz', url: srv.url, timeout_s: TIMEOUT_S }] },
  }, card.env);
  const r = rng(SEED + 2);
  try {
    await untilState(h, 'fz', 'ready', 10_000);
    const pid = (await h.daemon.ctl('status')).pid as number;
    const base = rssMiB(pid);
    let peak = base;
    const windows: number[] = []; // peak RSS per 2 s
    const tS = performance.now();
    const sampler = setInterval(() => { try { const m = rssMiB(pid); peak = Math.max(peak, m); const w = Math.floor((performance.now() - tS) / 2000); windows[w] = Math.max(windows[w] ?? 0, m); } catch { /* gone */ } }, 100);
    let s = await pressForSession(h);
    const ids: string[] = [];
    let sessions = 1;
    let made = 0;
    const logFrom = h.daemon.logs.length;
    const t0 = performance.now();
    while (performance.now() - t0 < BUDGET_MS / 2) {
      const batch = s.toolCall(Array.from({ length: 1 + int(r, 3) }, () => ({ name: pick(r, ['fz__HassTurnOn', 'fz__HassTurnOff', 'fz__HassLightSet', 'fz__GetLiveContext']), args: modelArgs(r) })));
      ids.push(...batch);
      made += batch.length;
      for (const id of batch) await s.toolResponse(id, TIMEOUT_S * 1000 + 4000);
      if (s.toolResponses.length > 150) { // a new session now and then: the next conversation declares the tools again
        await h.daemon.pressAndWait('idle', 5000);
        for (const id of ids.splice(0)) assert.equal(s.toolResponses.filter((x: any) => x.id === id).length, 1, `call ${id}: exactly one function response`);
        s = await pressForSession(h);
        sessions++;
      }
    }
    await sleep(TIMEOUT_S * 1000 + 500);
    for (const id of ids) assert.equal(s.toolResponses.filter((x: any) => x.id === id).length, 1, `call ${id}: exactly one function response`);
    clearInterval(sampler);
    peak = Math.max(peak, rssMiB(pid));
    assert.equal(h.daemon.exitCode, null, 'the daemon is running');
    assert.deepEqual(h.daemon.logs.filter((l) => l.level === 'fatal').map((l) => l.msg), [], 'nothing fatal');
    const st = await h.daemon.ctl('status');
    const fz = st.mcp.find((m: any) => m.name === 'fz');
    const lateMiB = srv.sent.filter((x) => x.at >= tS + 4000).reduce((n, x) => n + x.bytes, 0) / 2 ** 20;
    const answered = h.daemon.logs.slice(logFrom).filter((l) => l.msg === 'tool answered' && String(l.tool).startsWith('fz__'));
    console.log(`# MCP fuzz end to end: seed ${SEED + 1}, ${made} calls from the model, ${srv.counts.call} reached the raw server (${srv.counts.never} never answered; ${lateMiB.toFixed(1)} MiB of answers after the first 4 s) in ${sessions} sessions; ${answered.filter((l) => !l.ok).length} answered as errors ${JSON.stringify(Object.fromEntries([...new Set(answered.map((l) => l.errorClass))].filter(Boolean).map((k) => [k, answered.filter((l) => l.errorClass === k).length])))}; server now ${fz.state}; daemon RSS ${base.toFixed(1)} -> peak ${peak.toFixed(1)} MiB (+${(peak - base).toFixed(1)}), peak per 2 s ${windows.map((w) => w.toFixed(0)).join(', ')}`);
    // Each call is in the journal once ('tool answered'), an error with its class (log.transcripts off: no words).
    assert.equal(answered.length, made, 'one "tool answered" line per call');
    for (const l of answered) if (!l.ok) assert.match(String(l.errorClass), /^mcp-/, `an error answer is classed: ${JSON.stringify(l)}`);
    // A garbled answer does not take the server down (0b48745): every call reaches it. Before, a bad answer dropped the
    // connection, and 6 of the calls reached it in 8 s, the rest failing through the back-off.
    assert.equal(h.daemon.logs.slice(logFrom).filter((l) => l.msg.startsWith('MCP server connection lost')).length, 0, 'the connection was never dropped');
    assert.equal(srv.counts.call, made, 'every call reached the server');
    // Answers of up to 1 MB (every second call, and some fuzzed ones; the text cap applies after reading, over 4 MiB is
    // refused) are held a few times over while read: bounded, not flat, and under the unit's MemoryHigh=256M with room
    // for arecord and commands. A daemon that kept what it read would grow after the first 4 s by at least what was
    // sent after them: that is checked to be at least twice the bound, so the bound tells. Measured with a 1 MB answer
    // every second call (seeds 23, 40, 7): at most +3 MiB after the first 4 s, with 71-96 MiB of answers sent in that time; peaks 176-185 MiB.
    assert.ok(peak < 220, `daemon RSS peaked at ${peak.toFixed(1)} MiB (bound 220: MemoryHigh=256M less arecord and commands)`);
    const warm = Math.max(windows[0] ?? 0, windows[1] ?? 0);
    assert.ok(lateMiB >= 2 * 24, `only ${lateMiB.toFixed(1)} MiB of answers after the first 4 s: too little for the 24 MiB bound to tell a leak`);
    assert.ok(peak - warm < 24, `daemon RSS grew by ${(peak - warm).toFixed(1)} MiB after the first 4 s (bound 24): ${windows.map((w) => w.toFixed(0)).join(', ')}`);
    // Still serves: a new conversation that declares the server's tools again.
    await h.daemon.pressAndWait('idle', 5000);
    const s2 = await pressForSession(h);
    assert.ok(s2.declaredTools.includes('fz__HassTurnOff'), 'the tools are declared again');
  } finally {
    await h.done();
    await srv.close();
  }
});
