// User commands (src/tools/command.ts) with real processes: a command answers
// when it exits even if a program it started holds its pipes (that program
// keeps running), a timeout answers at once, at most
// tools.max_concurrent_commands run at once (counted in /proc), and the
// model's arguments are checked all the way down the declared schema.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { runCommand, commandTool, Slots } from '../src/tools/command.js';
import { ToolDispatcher, type ToolResponse } from '../src/tools/registry.js';
import { Timers } from '../src/timers.js';
import { parseConfig } from '../src/config.js';
import { createLogger } from '../src/log.js';
import { processAlive, waitUntil } from './bench/daemon.js';

const log = createLogger('silent');
const dir = mkdtempSync(join(tmpdir(), 'commands-'));
const leftover: number[] = [];
after(() => {
  for (const pid of leftover) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
  rmSync(dir, { recursive: true, force: true });
});

interface Ran { ok: boolean; output?: string; error?: string; ms: number }
const run = (argv: string[], timeoutMs = 1000, signal = new AbortController().signal): Promise<Ran> => {
  const t0 = performance.now();
  return runCommand(argv, { timeoutMs, maxBytes: 1_000_000, signal }).then(
    (r) => ({ ok: true, output: r.output, ms: performance.now() - t0 }),
    (e: Error) => ({ ok: false, error: e.message, ms: performance.now() - t0 }));
};
const pidsIn = (text: string) => text.split('\n').filter((l) => /^\d+$/.test(l)).map(Number);
const cmdline = (pid: number) => { try { return readFileSync(`/proc/${pid}/cmdline`, 'utf8'); } catch { return ''; } };

test('a command that starts a program in its own session (setsid) answers when it exits; the program keeps running', async () => {
  const r = await run(['/bin/sh', '-c', 'setsid sleep 8 & echo $!; echo started']);
  assert.equal(r.ok, true, JSON.stringify(r));
  const [pid] = pidsIn(r.output!);
  leftover.push(pid);
  assert.ok(r.ms < 1500, `answered after ${Math.round(r.ms)} ms (timeout 1 s; the program it started runs 8 s)`);
  assert.match(r.output!, /started\n$/);
  assert.equal(cmdline(pid), 'sleep\x008\x00', 'the pid is the detached sleep');
  await sleep(700); // past the timeout
  assert.ok(processAlive(pid), 'the detached program still runs after the call answered');
});

test('a command that leaves a program in its own process group (`player &`) answers when it exits; the program is not killed, not even at the timeout', async () => {
  const r = await run(['/bin/sh', '-c', 'sleep 30 & echo $!; echo started']);
  assert.equal(r.ok, true, JSON.stringify(r));
  const [pid] = pidsIn(r.output!);
  leftover.push(pid);
  assert.ok(r.ms < 1500, `answered after ${Math.round(r.ms)} ms`);
  assert.equal(cmdline(pid), 'sleep\x0030\x00');
  await sleep(1200); // past the 1 s timeout, which no longer applies
  assert.ok(processAlive(pid), 'the background program still runs');
});

test('all the output written before the exit is read though a background program holds the pipes', async () => {
  const pidFile = join(dir, 'held');
  const r = await run(['/bin/sh', '-c', 'sleep 30 & echo $! > "$0"; seq 1 20000', pidFile]);
  leftover.push(Number(readFileSync(pidFile, 'utf8')));
  assert.equal(r.ok, true, JSON.stringify(r).slice(0, 300));
  assert.equal(Buffer.byteLength(r.output!), 108_894, 'seq 1 20000 in full (more than a pipe holds)');
  assert.ok(r.output!.endsWith('\n19999\n20000\n'));
  assert.ok(r.ms < 1500, `answered after ${Math.round(r.ms)} ms`);
});

test('a timeout answers at once though a program in its own session holds the pipes; the command\'s process group is killed', async () => {
  const pidFile = join(dir, 'timeout');
  const r = await run(['/bin/sh', '-c', 'setsid sleep 8 & echo $! > "$0"; sleep 30 & echo $! >> "$0"; wait', pidFile]);
  const [detached, inGroup] = readFileSync(pidFile, 'utf8').trim().split('\n').map(Number);
  leftover.push(detached, inGroup);
  assert.equal(r.ok, false);
  assert.match(r.error!, /timed out after 1 s/);
  assert.ok(r.ms >= 950 && r.ms < 1500, `answered after ${Math.round(r.ms)} ms (timeout 1 s)`);
  assert.ok(await waitUntil(() => !processAlive(inGroup), 1000), 'the sleep in its group is killed');
  assert.ok(processAlive(detached), 'a program in a session of its own is out of reach (docs/tools.md says so)');
});

test('a background program that writes to the command\'s stdout after the answer dies of SIGPIPE; redirected, it keeps running', async () => {
  const loop = '(while echo tick; do sleep 0.05; done)';
  const bare = await run(['/bin/sh', '-c', `${loop} & echo $!`]);
  const quiet = await run(['/bin/sh', '-c', `${loop} >/dev/null 2>&1 & echo $!`]);
  assert.equal(bare.ok && quiet.ok, true);
  const [b] = pidsIn(bare.output!);
  const [q] = pidsIn(quiet.output!);
  leftover.push(b, q);
  assert.ok(bare.output!.includes('tick'), 'its output before the exit went to the model');
  assert.ok(await waitUntil(() => !processAlive(b), 1000), 'writing to the closed pipe killed it');
  await sleep(300);
  assert.ok(processAlive(q), 'the redirected one still runs');
});

// ---- the cap on commands running at once

function dispatcher(commands: unknown[], max: number) {
  const config = parseConfig({ tools: { commands, max_concurrent_commands: max } }, null, []);
  const timers = new Timers({ dir, ringMaxMs: 1000 }, { start: () => undefined, stop: () => undefined }, log);
  const d = new ToolDispatcher({ volume: { get: () => 100, set: () => undefined, max: 150 }, timers, endConversation: () => undefined, log },
    config.tools.commands, log, () => false, config.tools.max_concurrent_commands);
  const responses: ToolResponse[] = [];
  return { d, responses, respond: (r: ToolResponse[]) => responses.push(...r) };
}

/** Samples /proc for processes with this exact cmdline until stopped: the most alive at once, and every pid seen. */
function watchProcesses(line: string) {
  let most = 0;
  const seen = new Set<number>();
  let on = true;
  const done = (async () => {
    while (on) {
      let n = 0;
      for (const e of readdirSync('/proc')) {
        if (!/^\d+$/.test(e) || cmdline(Number(e)) !== line) continue;
        n++;
        seen.add(Number(e));
      }
      most = Math.max(most, n);
      await sleep(3);
    }
  })();
  return { stop: async () => { on = false; await done; return { most, seen: seen.size }; } };
}

test('one message with 5 command calls runs at most max_concurrent_commands (2) processes at once; every call is answered', { timeout: 20_000 }, async () => {
  const secs = '0.4173'; // a cmdline no other process has
  const { d, responses, respond } = dispatcher([{ name: 'nap', description: 'Naps.', argv: ['sleep', secs] }], 2);
  const watch = watchProcesses(`sleep\x00${secs}\x00`);
  const t0 = performance.now();
  d.call([1, 2, 3, 4, 5].map((i) => ({ id: `fc-${i}`, name: 'nap', args: {} })), respond);
  assert.ok(await waitUntil(() => responses.length === 5, 10_000), `${responses.length} of 5 answered`);
  const ms = performance.now() - t0;
  const { most, seen } = await watch.stop();
  assert.equal(seen, 5, 'each call ran its process');
  assert.equal(most, 2, `at most 2 alive at once (saw ${most})`);
  assert.deepEqual(responses.map((r) => r.response), [1, 2, 3, 4, 5].map(() => ({ output: '' })));
  assert.ok(ms >= 1150, `3 rounds of 0.4 s, answered after ${Math.round(ms)} ms`);
});

test('the cap: a call cancelled while it waits never starts and is never answered; more than 16 waiting are refused at once with a clear error', { timeout: 20_000 }, async () => {
  const secs = '0.3271';
  const { d, responses, respond } = dispatcher([{ name: 'nap', description: 'Naps.', argv: ['sleep', secs] }], 1);
  const watch = watchProcesses(`sleep\x00${secs}\x00`);
  d.call([{ id: 'a', name: 'nap', args: {} }, { id: 'b', name: 'nap', args: {} }, { id: 'c', name: 'nap', args: {} }], respond);
  d.cancel(['b']);
  assert.ok(await waitUntil(() => responses.length === 2, 5000));
  await sleep(500);
  assert.deepEqual(responses.map((r) => r.id), ['a', 'c']);
  assert.deepEqual(await watch.stop(), { most: 1, seen: 2 }, 'the cancelled call started no process');

  responses.length = 0;
  const t0 = performance.now();
  d.call(Array.from({ length: 18 }, (_, i) => ({ id: `m-${i}`, name: 'nap', args: {} })), respond); // 1 runs, 16 wait
  assert.ok(await waitUntil(() => responses.length === 1, 1000));
  assert.ok(performance.now() - t0 < 250, 'refused at once');
  assert.equal(responses[0].id, 'm-17');
  assert.match(String(responses[0].response.error), /too many commands at once \(1 running, 16 waiting\)/);
  d.cancelAll();
});

test('the cap is shared by every command and follows a reload', { timeout: 20_000 }, async () => {
  const { d, responses, respond } = dispatcher([
    { name: 'nap', description: 'Naps.', argv: ['sleep', '0.3391'] },
    { name: 'doze', description: 'Dozes.', argv: ['sleep', '0.3391'] },
  ], 1);
  const watch = watchProcesses('sleep\x000.3391\x00');
  d.call([{ id: 'a', name: 'nap', args: {} }, { id: 'b', name: 'doze', args: {} }], respond);
  assert.ok(await waitUntil(() => responses.length === 2, 5000));
  assert.deepEqual(await watch.stop(), { most: 1, seen: 2 });
  const config = parseConfig({ tools: { commands: [{ name: 'nap', description: 'Naps.', argv: ['sleep', '0.3392'] }], max_concurrent_commands: 3 } }, null, []);
  d.configure(config.tools.commands, config.tools.max_concurrent_commands);
  const again = watchProcesses('sleep\x000.3392\x00');
  d.call([1, 2, 3].map((i) => ({ id: `r-${i}`, name: 'nap', args: {} })), respond);
  assert.ok(await waitUntil(() => responses.length === 5, 5000));
  assert.deepEqual(await again.stop(), { most: 3, seen: 3 });
});

test('Slots: a freed slot goes to the first waiting call; freeing twice frees once', async () => {
  const s = new Slots(1);
  const free = await s.take(new AbortController().signal);
  const order: string[] = [];
  const w1 = s.take(new AbortController().signal).then((f) => { order.push('1'); return f; });
  const w2 = s.take(new AbortController().signal).then((f) => { order.push('2'); return f; });
  free();
  free();
  (await w1)();
  (await w2)();
  assert.deepEqual(order, ['1', '2']);
  assert.deepEqual(s.busy, { running: 0, waiting: 0 });
});

// ---- nested arguments

test('arguments are checked all the way down: array items, object properties, required ones and enums, the error naming the path', async () => {
  const config = parseConfig({ tools: { commands: [{
    name: 'lights', description: 'Lights.', argv: ['/bin/echo', '{rooms}', '{scene}'],
    parameters: { type: 'object', required: ['rooms'], properties: {
      rooms: { type: 'array', items: { type: 'string', enum: ['kitchen', 'hall'] } },
      scene: { type: 'object', required: ['level'], properties: {
        level: { type: 'integer' },
        colours: { type: 'array', items: { type: 'object', properties: { name: { type: 'string', enum: ['red', 'blue'] } } } },
      } },
    } },
  }] } }, null, []);
  const tool = commandTool(config.tools.commands[0], log, new Slots(2));
  const ctx = { id: 'x', signal: new AbortController().signal };
  const bad: [Record<string, unknown>, RegExp][] = [
    [{ rooms: ['kitchen', 'hall', 'attic'] }, /^argument 'rooms\[2\]' must be one of kitchen, hall$/],
    [{ rooms: ['kitchen', 3] }, /^argument 'rooms\[1\]' must be a string$/],
    [{ rooms: 'kitchen' }, /^argument 'rooms' must be an array$/],
    [{ rooms: [], scene: {} }, /^missing argument 'scene.level'$/],
    [{ rooms: [], scene: { level: 1.5 } }, /^argument 'scene.level' must be an integer$/],
    [{ rooms: [], scene: [1] }, /^argument 'scene' must be an object$/],
    [{ rooms: [], scene: { level: 1, dim: true } }, /^unknown argument 'scene.dim' \('scene' has: level, colours\)$/],
    [{ rooms: [], scene: { level: 1, colours: [{ name: 'red' }, { name: 'green' }] } }, /^argument 'scene.colours\[1\].name' must be one of red, blue$/],
    [{ rooms: [], scene: { level: 1, colours: [{ name: 'red', hue: 3 }] } }, /^unknown argument 'scene.colours\[0\].hue'/],
  ];
  for (const [args, error] of bad) await assert.rejects(async () => tool.run(args, ctx), { message: error }, JSON.stringify(args));
  const good = await tool.run({ rooms: ['hall'], scene: { level: 3, colours: [{ name: 'blue' }] } }, ctx);
  assert.deepEqual(good, { output: '["hall"] {"level":3,"colours":[{"name":"blue"}]}\n' });
});

test('a command runs at the normal priority (nice 0) when the daemon runs raised (the unit\'s Nice=)', { skip: process.getuid?.() !== 0 && 'needs root to raise this process' }, async () => {
  const { getPriority, setPriority } = await import('node:os');
  const before = getPriority();
  setPriority(-7);
  try {
    const r = await run(['/bin/sh', '-c', 'cut -d" " -f19 /proc/$$/stat']);
    assert.equal(r.ok, true, JSON.stringify(r));
    assert.equal(r.output!.trim(), '0', 'the command\'s nice value');
  } finally { setPriority(before); }
});
