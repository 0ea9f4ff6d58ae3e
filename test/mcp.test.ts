// MCP servers as tools (issue 23) end to end: the built daemon as a process,
// the real @google/genai SDK talking to the loopback emulator (which makes
// the function calls as the Live API does), and real MCP servers: one built
// here with the official SDK (@modelcontextprotocol/server), shaped like Home
// Assistant's (stateless Streamable HTTP, bearer token, Assist tool names and
// schemas), and the third-party @modelcontextprotocol/server-memory over stdio.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createTcpServer, type Socket } from 'node:net';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard } from './bench/soundcard.js';
import { deepMerge, startWithEmulator, waitUntil } from './bench/daemon.js';
import { haLike, pressForSession, untilState } from './bench/mcp-servers.js';

let card: SoundCard;
const dir = mkdtempSync(join(tmpdir(), 'mcp-test-'));
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); rmSync(dir, { recursive: true, force: true }); });

const quiet = { conversation: { follow_up_s: 120, no_speech_timeout_s: 120, max_conversation_s: 3600 }, feedback: { wake_sound: false, error_sound: false } };
const TOKEN = 'test-token-4f1c9a';
const WRONG = 'wrong-token-77aa02';
const tokenFile = join(dir, 'ha-token'); writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
const wrongFile = join(dir, 'wrong-token'); writeFileSync(wrongFile, `${WRONG}\n`, { mode: 0o600 });

async function closedPort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test('Home Assistant over Streamable HTTP: "turn off the kitchen lights" reaches HassTurnOff with the model\'s arguments; isError, a timeout, a cancellation, a wrong token and a server that is down each end as stated; the next press is served', { timeout: 90_000 }, async () => {
  const ha = await haLike(TOKEN);
  const gonePort = await closedPort();
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, { tools: {
    home_assistant: { url: ha.url.replace(/\/api\/mcp$/, ''), token_file: tokenFile, deny: ['HassBroadcast'], timeout_s: 2 },
    mcp: [{ name: 'bad', url: ha.url, token_file: wrongFile }, { name: 'gone', url: `http://127.0.0.1:${gonePort}/api/mcp` }],
  } }), card.env);
  try {
    const st = await untilState(h, 'ha', 'ready', 10_000);
    assert.deepEqual({ transport: st.transport, tools: st.tools, listed: st.listed }, { transport: 'streamable-http', tools: 5, listed: 6 });
    const bad = await untilState(h, 'bad', 'down', 10_000);
    assert.match(bad.lastError, /HTTP 401: the server refused the token in .*wrong-token/);
    const gone = await untilState(h, 'gone', 'down', 10_000);
    assert.match(gone.lastError, /ECONNREFUSED|fetch failed/);
    const statusText = JSON.stringify(await h.daemon.ctl('status'));
    assert.equal(statusText.includes(TOKEN) || statusText.includes(WRONG), false, 'no token in ctl status');

    const s = await pressForSession(h);
    const mcpNames = s.declaredTools.filter((n: string) => n.includes('__'));
    assert.deepEqual(mcpNames.sort(), ['ha__FailingLock', 'ha__GetLiveContext', 'ha__HassTurnOff', 'ha__HassTurnOn', 'ha__SlowScene'], 'HassBroadcast denied; bad and gone absent');
    const decls = s.setup.tools[0].functionDeclarations;
    const off = decls.find((d: any) => d.name === 'ha__HassTurnOff');
    assert.deepEqual(off.parameters, { type: 'OBJECT', properties: { name: { type: 'STRING' }, area: { type: 'STRING' }, floor: { type: 'STRING' }, domain: { type: 'ARRAY', items: { type: 'STRING' } } } });
    assert.equal(off.behavior, 'BLOCKING');
    assert.equal(off.parametersJsonSchema, undefined);

    // "Turn off the kitchen lights": the model calls HassTurnOff; HA records it with exactly those arguments; the model gets HA's answer.
    const [id] = s.toolCall([{ name: 'ha__HassTurnOff', args: { name: 'Kitchen', domain: ['light'] } }]);
    const r = await s.toolResponse(id, 5000);
    assert.deepEqual(ha.seen.calls.filter((c) => c.name === 'HassTurnOff'), [{ name: 'HassTurnOff', args: { name: 'Kitchen', domain: ['light'] } }]);
    assert.equal(r.name, 'ha__HassTurnOff');
    assert.deepEqual(JSON.parse(r.response.output).data.success, [{ name: 'Kitchen', type: 'entity', id: 'light.kitchen' }]);

    // isError: the server's own sentence, as the error.
    const [e1] = s.toolCall([{ name: 'ha__FailingLock', args: { name: 'Garage' } }]);
    assert.deepEqual((await s.toolResponse(e1, 5000)).response, { error: 'Error calling tool: no entity named Garage' });

    // A call that hangs past timeout_s (2 s): an error the model can say, in about 2 s.
    const t0 = Date.now();
    const [e2] = s.toolCall([{ name: 'ha__SlowScene', args: { name: 'Movie' } }]);
    assert.deepEqual((await s.toolResponse(e2, 6000)).response, { error: 'the ha server did not answer within 2 s' });
    const took = Date.now() - t0;
    assert.ok(took >= 1900 && took < 4000, `answered after ${took} ms`);

    // toolCallCancellation: the server is sent notifications/cancelled for that request; no answer goes to the model.
    const before = ha.seen.posts.length;
    const [e3] = s.toolCall([{ name: 'ha__SlowScene', args: { name: 'Party' } }]);
    assert.ok(await waitUntil(() => ha.seen.calls.some((c) => c.name === 'SlowScene' && c.args.name === 'Party'), 3000), 'the call reached the server');
    const callMsg = ha.seen.posts.slice(before).find((p) => p.method === 'tools/call' && p.params?.arguments?.name === 'Party');
    s.cancelToolCalls([e3]);
    assert.ok(await waitUntil(() => ha.seen.posts.some((p) => p.method === 'notifications/cancelled' && p.params?.requestId === callMsg.id), 3000), 'the server saw notifications/cancelled for that request id');
    await sleep(2500);
    assert.equal(s.toolResponses.some((x: any) => x.id === e3), false, 'a cancelled call is not answered');

    // The daemon goes on: the next conversation (a new session) turns the light on again.
    await h.daemon.pressAndWait('idle', 5000);
    const s2 = await pressForSession(h);
    assert.notEqual(s2, s);
    const [id2] = s2.toolCall([{ name: 'ha__HassTurnOn', args: { area: 'Kitchen' } }]);
    assert.equal(JSON.parse((await s2.toolResponse(id2, 5000)).response.output).response_type, 'action_done');
    assert.deepEqual(ha.seen.calls.filter((c) => c.name === 'HassTurnOn'), [{ name: 'HassTurnOn', args: { area: 'Kitchen' } }]);
    assert.ok(ha.seen.refused >= 1, 'the wrong token was sent and refused');
    const logText = JSON.stringify(h.daemon.logs);
    assert.equal(logText.includes(TOKEN) || logText.includes(WRONG), false, 'no token in the log');
  } finally {
    ha.release();
    await h.done();
    await ha.close();
  }
});

test('non_blocking: true on a server declares its tools NON_BLOCKING and its answers come WHEN_IDLE, as a user command with non_blocking; the default stays BLOCKING', { timeout: 60_000 }, async () => {
  const ha = await haLike(TOKEN);
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, { tools: { mcp: [
    { name: 'bg', url: ha.url, token_file: tokenFile, allow: ['HassTurnOn'], non_blocking: true },
    { name: 'fg', url: ha.url, token_file: tokenFile, allow: ['HassTurnOn'] },
  ] } }), card.env);
  try {
    await untilState(h, 'bg', 'ready', 10_000);
    await untilState(h, 'fg', 'ready', 10_000);
    const s = await pressForSession(h);
    const decls = s.setup.tools[0].functionDeclarations;
    assert.equal(decls.find((d: any) => d.name === 'bg__HassTurnOn').behavior, 'NON_BLOCKING');
    assert.equal(decls.find((d: any) => d.name === 'fg__HassTurnOn').behavior, 'BLOCKING');
    const [bg, fg] = s.toolCall([{ name: 'bg__HassTurnOn', args: { area: 'Hall' } }, { name: 'fg__HassTurnOn', args: { area: 'Porch' } }]);
    const rb = await s.toolResponse(bg, 5000);
    const rf = await s.toolResponse(fg, 5000);
    assert.equal(rb.scheduling, 'WHEN_IDLE');
    assert.equal(rf.scheduling, undefined);
    assert.equal(JSON.parse(rb.response.output).response_type, 'action_done');
    assert.deepEqual(ha.seen.calls.map((c) => c.args.area).sort(), ['Hall', 'Porch']);
  } finally {
    ha.release();
    await h.done();
    await ha.close();
  }
});

const MEMORY_SERVER = join(dirname(fileURLToPath(import.meta.url)), '../../node_modules/@modelcontextprotocol/server-memory/dist/index.js');

function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try { if (Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === pid) out.push(Number(p)); } catch { /* gone */ }
  }
  return out;
}
const isMemoryServer = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('server-memory'); } catch { return false; } };

test('a third-party server over stdio (@modelcontextprotocol/server-memory): listed, called end to end (create_entities then read_graph), killed and restarted', { timeout: 60_000 }, async () => {
  const memFile = join(dir, 'memory.jsonl');
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, { tools: { mcp: [{ name: 'memory', command: [process.execPath, MEMORY_SERVER], env: { MEMORY_FILE_PATH: memFile }, allow: ['create_entities', 'read_graph', 'search_nodes'] }] } }),
    { ...card.env, GEMINI_API_KEY: '', SOME_SERVICE_TOKEN: 'x' });
  try {
    const st = await untilState(h, 'memory', 'ready', 15_000);
    assert.equal(st.transport, 'stdio');
    assert.equal(st.tools, 3);
    const s = await pressForSession(h);
    assert.deepEqual(s.declaredTools.filter((n: string) => n.startsWith('memory__')).sort(), ['memory__create_entities', 'memory__read_graph', 'memory__search_nodes']);
    const [c] = s.toolCall([{ name: 'memory__create_entities', args: { entities: [{ name: 'Kitchen', entityType: 'room', observations: ['the lights are LED strips'] }] } }]);
    const created = await s.toolResponse(c, 5000);
    assert.equal(created.response.error, undefined, JSON.stringify(created.response));
    const [g] = s.toolCall([{ name: 'memory__read_graph' }]);
    const graph = JSON.parse((await s.toolResponse(g, 5000)).response.output);
    assert.deepEqual(graph.entities.map((e: any) => [e.name, e.entityType, e.observations]), [['Kitchen', 'room', ['the lights are LED strips']]]);
    assert.match(readFileSync(memFile, 'utf8'), /"name":"Kitchen"/);

    // Killed: restarted with back-off, and the same file answers again.
    const [pid] = childPids(h.daemon.child.pid!).filter(isMemoryServer);
    assert.ok(pid, 'the server runs as a child of the daemon');
    const env = readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
    assert.equal(env.some((e) => e.startsWith('SOME_SERVICE_TOKEN=') || e.startsWith('GEMINI_API_KEY=')), false, 'no secrets in its environment');
    assert.ok(env.includes(`MEMORY_FILE_PATH=${memFile}`));
    process.kill(pid, 'SIGKILL');
    await untilState(h, 'memory', 'down', 5000);
    await untilState(h, 'memory', 'ready', 10_000);
    const [pid2] = childPids(h.daemon.child.pid!).filter(isMemoryServer);
    assert.ok(pid2 && pid2 !== pid, `restarted as a new process (${pid} → ${pid2})`);
    const [g2] = s.toolCall([{ name: 'memory__read_graph' }]);
    assert.deepEqual(JSON.parse((await s.toolResponse(g2, 5000)).response.output).entities.map((e: any) => e.name), ['Kitchen']);
  } finally {
    await h.done();
  }
});

test('start-up and the first session are not delayed by a server that never answers (press to first audio frame sent, with and without it)', { timeout: 60_000 }, async () => {
  const held: Socket[] = [];
  const silent = createTcpServer((sock) => { held.push(sock); sock.on('error', () => undefined); }); // accepts, never replies
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  const port = (silent.address() as { port: number }).port;
  const measure = async (tools: Record<string, unknown>) => {
    const t0 = Date.now();
    const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, { tools }), card.env);
    const readyMs = Date.now() - t0;
    try {
      await pressForSession(h);
      await waitUntil(() => false, 300); // the first frames go out
      const st = await h.daemon.ctl('status');
      return { readyMs, pressToFirstSentMs: st.timing.firstSentAt - st.timing.pressAt, mcp: st.mcp };
    } finally { await h.done(); }
  };
  try {
    const without = await measure({});
    const withSilent = await measure({ mcp: [{ name: 'silent', url: `http://127.0.0.1:${port}/mcp`, timeout_s: 30 }] });
    assert.equal(withSilent.mcp[0].state, 'connecting', 'the server never answered: still connecting while the session ran');
    // An awaiting design waits for the connect timeout (10 s) before ready or before the session's setup.
    assert.ok(withSilent.pressToFirstSentMs < without.pressToFirstSentMs + 500 && withSilent.pressToFirstSentMs < 3000,
      `press to first frame sent: ${withSilent.pressToFirstSentMs} ms with a silent server, ${without.pressToFirstSentMs} ms without`);
    assert.ok(withSilent.readyMs < without.readyMs + 2000 && withSilent.readyMs < 9000, `ready after ${withSilent.readyMs} ms with, ${without.readyMs} ms without`);
    console.log(JSON.stringify({ without: { readyMs: without.readyMs, pressToFirstSentMs: without.pressToFirstSentMs }, withSilent: { readyMs: withSilent.readyMs, pressToFirstSentMs: withSilent.pressToFirstSentMs } }));
  } finally {
    for (const s of held) s.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
  }
});
