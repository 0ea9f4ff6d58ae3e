// MCP servers (issue 23) beyond the first call: the older HTTP+SSE transport,
// a server whose tool list changes, the size caps, a reload that adds and
// removes servers, and `live-speaker doctor`. The built daemon as a process,
// the loopback emulator, the simulated card, and servers built with the
// official SDKs (test/bench/mcp-servers.ts) or from npm (server-memory).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';
import { SoundCard } from './bench/soundcard.js';
import { MAIN, deepMerge, processAlive, startWithEmulator, waitUntil } from './bench/daemon.js';
import { haLike, pressForSession, sseOnly, untilState } from './bench/mcp-servers.js';
import { LiveEmulator } from '../src/emulator/emulator.js';
import { MAX_RESULT_TEXT } from '../src/tools/mcp/tool.js';

let card: SoundCard;
const dir = mkdtempSync(join(tmpdir(), 'mcp-life-'));
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); rmSync(dir, { recursive: true, force: true }); });

const quiet = { conversation: { follow_up_s: 120, no_speech_timeout_s: 120, max_conversation_s: 3600 }, feedback: { wake_sound: false, error_sound: false } };
const TOKEN = 'life-token-5d2e81';
const WRONG = 'life-wrong-c03b9e';
const tokenFile = join(dir, 'ha-token'); writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
const wrongFile = join(dir, 'wrong-token'); writeFileSync(wrongFile, `${WRONG}\n`, { mode: 0o600 });
const MEMORY_SERVER = join(dirname(fileURLToPath(import.meta.url)), '../../node_modules/@modelcontextprotocol/server-memory/dist/index.js');

const mcpNames = (names: string[], prefix: string) => names.filter((n) => n.startsWith(prefix)).sort();

test('a server that speaks only HTTP+SSE: Streamable HTTP refused with 404, then SSE; listed and called end to end; a tool it adds later (tools/list_changed) is declared from the next session, not the current one; no arguments or results in the log without log.transcripts', { timeout: 60_000 }, async () => {
  const old = await sseOnly();
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, { tools: { mcp: [{ name: 'old', url: old.url, timeout_s: 5 }] } }), card.env);
  try {
    const st = await untilState(h, 'old', 'ready', 10_000);
    assert.deepEqual({ transport: st.transport, tools: st.tools, listed: st.listed }, { transport: 'sse', tools: 2, listed: 2 });
    assert.deepEqual(old.seen.requests.slice(0, 2), ['POST /sse 404', 'GET /sse 200'], 'a Streamable HTTP POST first, refused as the SDK example server refuses it, then the SSE stream');

    const s = await pressForSession(h);
    assert.deepEqual(mcpNames(s.declaredTools, 'old__'), ['old__Big', 'old__echo']);
    const [c1] = s.toolCall([{ name: 'old__echo', args: { text: 'porch lantern 7f3a' } }]);
    assert.deepEqual((await s.toolResponse(c1, 5000)).response, { output: 'echo: porch lantern 7f3a' });
    assert.deepEqual(old.seen.calls, [{ name: 'echo', args: { text: 'porch lantern 7f3a' } }]);

    // The server adds a tool: it says so (notifications/tools/list_changed) over the open stream.
    const changed = h.daemon.waitNextLog((l) => l.msg === 'MCP server tools' && l.why === 'the server said its tools changed', 5000, 'the changed list read');
    old.addTool('later');
    assert.deepEqual((await changed).declared, ['old__echo', 'old__Big', 'old__later']);
    assert.equal((await untilState(h, 'old', 'ready', 1000)).tools, 3);
    // The current session keeps the set it declared: the new name is unknown to it, the old ones still answer.
    const [c2] = s.toolCall([{ name: 'old__later', args: {} }]);
    assert.match((await s.toolResponse(c2, 5000)).response.error, /^unknown tool 'old__later'/);
    const [c3] = s.toolCall([{ name: 'old__echo', args: { text: 'again' } }]);
    assert.deepEqual((await s.toolResponse(c3, 5000)).response, { output: 'echo: again' });
    assert.equal(old.seen.calls.some((c) => c.name === 'later'), false);

    // The next session declares it, and it reaches the server.
    await h.daemon.pressAndWait('idle', 5000);
    const s2 = await pressForSession(h);
    assert.deepEqual(mcpNames(s2.declaredTools, 'old__'), ['old__Big', 'old__echo', 'old__later']);
    assert.ok(s2.setup.tools[0].functionDeclarations.some((d: any) => d.name === 'old__later' && d.description === 'Added later: later'));
    const [c4] = s2.toolCall([{ name: 'old__later', args: { note: 'shed door b81c' } }]);
    assert.deepEqual((await s2.toolResponse(c4, 5000)).response, { output: 'later done' });
    assert.deepEqual(old.seen.calls.at(-1), { name: 'later', args: { note: 'shed door b81c' } });
    assert.equal((await h.daemon.ctl('status')).mcp[0].transport, 'sse');

    // log.transcripts is off (the default) and the level is debug: no argument or result of these calls in the log.
    const logText = JSON.stringify(h.daemon.logs);
    for (const secret of ['porch lantern 7f3a', 'shed door b81c', 'echo: again', 'later done']) assert.equal(logText.includes(secret), false, `"${secret}" is in the log`);
    assert.deepEqual(h.daemon.logs.filter((l) => l.msg === 'tool call').map((l) => l.tool), ['old__echo', 'old__echo', 'old__later'], 'the calls themselves are logged, by name (the unknown one is not run)');
  } finally {
    await h.done();
    await old.close();
  }
});

test('caps: a text answer over 64 KiB is cut and the model told; an answer over 4 MiB (Streamable HTTP body, or one SSE event) is refused as an error the model gets, and the daemon serves the next call', { timeout: 60_000 }, async () => {
  const ha = await haLike(TOKEN, { big: true });
  const old = await sseOnly();
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, { tools: {
    home_assistant: { url: ha.url.replace(/\/api\/mcp$/, ''), token_file: tokenFile, timeout_s: 5 },
    mcp: [{ name: 'old', url: old.url, timeout_s: 5 }],
  } }), card.env);
  try {
    await untilState(h, 'ha', 'ready', 10_000);
    await untilState(h, 'old', 'ready', 10_000);
    const s = await pressForSession(h);

    // 100 000 characters: the model gets the first 64 KiB and a note saying how long the answer was.
    const [a] = s.toolCall([{ name: 'ha__Big', args: { bytes: 100_000 } }]);
    const out = (await s.toolResponse(a, 5000)).response.output as string;
    assert.equal(out, `${'x'.repeat(MAX_RESULT_TEXT)}… (cut: the answer was 100000 characters)`);

    // Over 4 MiB in the HTTP body: refused, the model told why; the connection is kept.
    const rss0 = rssKiB(h.daemon.child.pid!);
    const [b] = s.toolCall([{ name: 'ha__Big', args: { bytes: 6 * 1024 * 1024 } }]);
    const rb = (await s.toolResponse(b, 8000)).response;
    assert.deepEqual(Object.keys(rb), ['error']);
    assert.equal(rb.error, "the ha server's answer was too large (over 4 MiB) and was refused");
    // The same over the SSE stream (one event larger than the cap).
    const [c] = s.toolCall([{ name: 'old__Big', args: { bytes: 6 * 1024 * 1024 } }]);
    const rc = (await s.toolResponse(c, 8000)).response;
    assert.deepEqual(Object.keys(rc), ['error']);
    assert.equal(rc.error, "the old server's answer was too large (over 4 MiB) and was refused");
    const grew = rssKiB(h.daemon.child.pid!) - rss0;
    console.log(JSON.stringify({ rssGrewKiB: grew }));

    // The daemon goes on serving: the HA server at once, the SSE one once it has reconnected.
    const [d] = s.toolCall([{ name: 'ha__HassTurnOff', args: { name: 'Kitchen' } }]);
    assert.equal(JSON.parse((await s.toolResponse(d, 5000)).response.output).response_type, 'action_done');
    await untilState(h, 'old', 'ready', 10_000);
    const [e] = s.toolCall([{ name: 'old__echo', args: { text: 'still here' } }]);
    assert.deepEqual((await s.toolResponse(e, 5000)).response, { output: 'echo: still here' });
    assert.equal((await h.daemon.ctl('status')).state, 'listening');
  } finally {
    await h.done();
    await ha.close();
    await old.close();
  }
});

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((x) => /^\d+$/.test(x))) {
    try { if (Number(readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1]) === pid) out.push(Number(p)); } catch { /* gone */ }
  }
  return out;
}
const isMemoryServer = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('server-memory'); } catch { return false; } };

test('reload (SIGHUP): a server added is connected and its tools declared from the next session; a server removed has its tools gone and its stdio program exits', { timeout: 60_000 }, async () => {
  const ha = await haLike(TOKEN);
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, { tools: { home_assistant: { url: ha.url.replace(/\/api\/mcp$/, ''), token_file: tokenFile } } }), card.env);
  const reload = async (edit: (c: any) => void) => {
    const c = parse(readFileSync(h.daemon.configFile, 'utf8'));
    edit(c);
    writeFileSync(h.daemon.configFile, stringify(c));
    const done = h.daemon.waitNextLog((l) => /^config reload/.test(l.msg), 5000, 'the reload');
    h.daemon.child.kill('SIGHUP');
    assert.equal((await done).msg, 'config reloaded');
  };
  try {
    await untilState(h, 'ha', 'ready', 10_000);
    const s1 = await pressForSession(h);
    assert.deepEqual(mcpNames(s1.declaredTools, 'memory__'), []);
    await h.daemon.pressAndWait('idle', 5000);

    await reload((c) => { c.tools.mcp = [{ name: 'memory', command: [process.execPath, MEMORY_SERVER], env: { MEMORY_FILE_PATH: join(dir, 'reload-memory.jsonl') }, allow: ['read_graph', 'search_nodes'] }]; });
    await untilState(h, 'memory', 'ready', 15_000);
    const [pid] = childPids(h.daemon.child.pid!).filter(isMemoryServer);
    assert.ok(pid, 'the new server runs as a child of the daemon');
    const s2 = await pressForSession(h);
    assert.deepEqual(mcpNames(s2.declaredTools, 'memory__'), ['memory__read_graph', 'memory__search_nodes']);
    assert.equal(mcpNames(s2.declaredTools, 'ha__').length, 6, 'the server kept is still declared');
    const [g] = s2.toolCall([{ name: 'memory__read_graph' }]);
    assert.deepEqual(JSON.parse((await s2.toolResponse(g, 5000)).response.output), { entities: [], relations: [] });
    await h.daemon.pressAndWait('idle', 5000);

    const haSessionsBefore = ha.seen.posts.filter((p) => p.method === 'initialize').length;
    await reload((c) => { c.tools.mcp = []; });
    assert.ok(await waitUntil(() => !processAlive(pid), 5000), `the removed server's program (pid ${pid}) exited`);
    assert.deepEqual((await h.daemon.ctl('status')).mcp.map((m: any) => m.name), ['ha']);
    const s3 = await pressForSession(h);
    assert.deepEqual(mcpNames(s3.declaredTools, 'memory__'), []);
    assert.equal(mcpNames(s3.declaredTools, 'ha__').length, 6);
    assert.equal(ha.seen.posts.filter((p) => p.method === 'initialize').length, haSessionsBefore, 'an unchanged server is not reconnected by a reload');
  } finally {
    await h.done();
    await ha.close();
  }
});

test('doctor: an HA-shaped server connects and its tools are listed, allowed and denied; a wrong token is reported as HTTP 401 without the token', { timeout: 60_000 }, async () => {
  const ha = await haLike(TOKEN);
  const emu = await LiveEmulator.start({ mode: 'parrot' });
  try {
    const file = join(dir, 'doctor.yaml');
    writeFileSync(file, stringify({ live: { base_url: emu.url }, gpio: { enabled: false }, control: { socket: join(dir, 'control.sock') }, tools: {
      home_assistant: { url: ha.url.replace(/\/api\/mcp$/, ''), token_file: tokenFile, deny: ['HassBroadcast', 'Slow*'] },
      mcp: [{ name: 'bad', url: ha.url, token_file: wrongFile }],
    } }));
    const env = { ...card.env };
    delete env.GEMINI_API_KEY; delete env.GOOGLE_API_KEY;
    const out = await new Promise<string>((resolve) => execFile(process.execPath, [MAIN, '--config', file, 'doctor'], { env, timeout: 30_000 }, (_e, o, e) => resolve(String(o) + String(e))));
    const line = (name: string) => out.split('\n').find((l) => new RegExp(`^\\[(ok|FAIL)\\]\\s+MCP ${name}\\s`).test(l)) ?? assert.fail(`no doctor line for MCP ${name}:\n${out}`);
    const okLine = line('ha');
    assert.match(okLine, /^\[ok\]/);
    assert.match(okLine, new RegExp(`${ha.url.replace(/[.]/g, '\\.')} \\(streamable-http\\): 6 tools listed, 4 declared: ha__HassTurnOn, ha__HassTurnOff, ha__GetLiveContext, ha__FailingLock; not allowed: HassBroadcast, SlowScene$`));
    const badLine = line('bad');
    assert.match(badLine, /^\[FAIL\]/);
    assert.match(badLine, /HTTP 401: the server refused the token in .*wrong-token/);
    assert.equal(out.includes(WRONG) || out.includes(TOKEN), false, 'no token in the output');
    assert.ok(ha.seen.refused >= 1);
  } finally {
    await emu.close();
    await ha.close();
  }
});
