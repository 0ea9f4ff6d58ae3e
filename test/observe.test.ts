// Issue 12, observability, context and model: the built daemon as a process,
// real arecord and the `speaker` addon on the simulated sound card, the real
// @google/genai SDK against the loopback emulator (parrot mode: it answers
// each utterance with it, and scripted "heard" / "said" texts stand in for
// speech recognition, which it cannot do).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { execFile, spawn } from 'node:child_process';
import { createConnection } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { SoundCard } from './bench/soundcard.js';
import { DaemonProcess, MAIN, deepMerge, startWithEmulator, waitUntil } from './bench/daemon.js';
import { NotifyListener } from './bench/notify-listener.js';
import { jsonLines } from './bench/lines.js';
import { LiveEmulator, type EmulatorOptions } from '../src/emulator/emulator.js';
import { Observer, controlWatch } from '../src/observe.js';
import { contextLine } from '../src/live/context.js';
import { modelRejectionReason, DEFAULT_LIVE_MODEL } from '../src/live/models.js';
import { sessionTools } from '../src/live/gemini.js';
import { ConfigSchema } from '../src/config.js';
import { createLogger } from '../src/log.js';

const HEARD = 'what is the capital of France';
const SAID = 'Paris is the capital of France';

let card: SoundCard;
let speech: Buffer;
const scratch: string[] = [];

before(async () => {
  card = await SoundCard.start();
  speech = await card.say(HEARD);
});
after(async () => {
  await card?.stop();
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

const setup = (emuOpts: EmulatorOptions = {}, config: Record<string, any> = {}, env: NodeJS.ProcessEnv = card.env) =>
  startWithEmulator({ mode: 'parrot', heard: () => HEARD, said: () => SAID, ...emuOpts },
    deepMerge({ live: { connect_timeout_s: 2 }, conversation: { follow_up_s: 1, error_display_s: 1, no_speech_timeout_s: 8 } }, config), env);

/** Every line a `ctl watch` client gets, parsed; `stop()` ends the watch. */
function watch(socket: string) {
  const events: any[] = [];
  const done = controlWatch(socket, (line) => events.push(JSON.parse(line)));
  return { events, done };
}

/** One whole conversation: press, the question played into the room, the parrot's reply, follow-up, idle. */
async function converse(daemon: DaemonProcess) {
  const idle = daemon.waitNextLog((l) => l.msg === 'state' && l.to === 'idle', 20_000, 'back to idle');
  await daemon.pressAndWait('listening');
  await card.playIntoRoom(speech);
  await idle;
}

const usageSum = (emu: LiveEmulator, k: string) => emu.sessions.flatMap((s) => s.usageSent).reduce((a, u) => a + (u[k] ?? 0), 0);

// ---- units: the pieces the daemon tests below rely on

test('context line: date, time and zone of the given moment, one line, place when configured', () => {
  const at = new Date('2026-11-26T13:05:00Z');
  assert.equal(contextLine(at, null, 'Europe/Berlin'), 'Now: Thursday, 26 November 2026, 14:05, time zone Europe/Berlin (UTC+01:00).');
  assert.equal(contextLine(new Date('2026-07-01T23:30:00Z'), ' Lyon,\n France ', 'America/New_York'),
    'Now: Wednesday, 1 July 2026, 19:30, time zone America/New_York (UTC-04:00); place: Lyon, France.');
  assert.equal(contextLine(at, null, 'Asia/Kolkata'), 'Now: Thursday, 26 November 2026, 18:35, time zone Asia/Kolkata (UTC+05:30).');
});

test('the tools array: the function declarations (BLOCKING said outright to a model that calls asynchronously by default), Google Search only when live.google_search is on; the default model is the stable Live model', () => {
  const live = ConfigSchema.parse({}).live;
  assert.deepEqual(sessionTools(live), []);
  assert.deepEqual(sessionTools({ ...live, google_search: true }), [{ googleSearch: {} }]);
  // Function declarations: a blocking one says BLOCKING only to a model that would otherwise call it asynchronously.
  const fns = [{ name: 'get_volume', description: 'd' }, { name: 'bg', description: 'd', behavior: 'NON_BLOCKING' as any }];
  assert.deepEqual(sessionTools({ ...live, model: 'gemini-3.8-live' }, fns), [{ functionDeclarations: [{ ...fns[0], behavior: 'BLOCKING' }, fns[1]] }]);
  assert.deepEqual(sessionTools({ ...live, model: 'gemini-2.5-flash-native-audio-preview-12-2025' }, fns), [{ functionDeclarations: fns }]);
  assert.equal(live.model, 'gemini-3.8-live');
  assert.equal(live.model, DEFAULT_LIVE_MODEL);
  assert.equal(ConfigSchema.parse({}).log.transcripts, false, 'transcripts are off unless asked for');
  const reason = modelRejectionReason('gemini-nonexistent-live-model-with-a-long-name');
  assert.ok(Buffer.byteLength(reason) <= 123, 'a WebSocket close reason is at most 123 bytes');
  assert.match(reason, /^models\/gemini-nonexistent-live-model-with-a-long-name is not found for API version v1beta, or is not supported for bidi/);
});

test('watch hub: tool calls and cancellations are forwarded in order; a watcher that fails is dropped, the others keep getting events', () => {
  const conv = Object.assign(new EventEmitter(), { state: 'idle' as const, lastError: null });
  const observer = new Observer(conv as any, createLogger('silent'), () => false);
  const got: any[] = [];
  let ended = 0;
  observer.watch((line) => { got.push(JSON.parse(line)); return true; }, () => undefined);
  observer.watch(() => { throw new Error('gone'); }, () => { ended++; });
  assert.equal(observer.watcherCount, 1, 'the failing watcher was dropped at its first line');
  assert.equal(ended, 1);
  conv.emit('tool', { name: 'set_volume', id: 'fc-1', args: { level: 40 }, ok: true, result: { volume: 40 }, ms: 3 });
  conv.emit('tool-cancelled', { ids: ['fc-2'] });
  conv.emit('transcript', { heard: 'secret', said: 'secret' });
  assert.deepEqual(got.map((e) => e.type), ['watching', 'tool', 'tool-cancelled'], 'no transcript: log.transcripts is off');
  assert.deepEqual({ ...got[1], at: undefined }, { at: undefined, type: 'tool', name: 'set_volume', id: 'fc-1', ok: true, ms: 3 }, 'no args or result with log.transcripts off');
  assert.deepEqual(got[2].ids, ['fc-2']);
  assert.match(got[1].at, /^\d{4}-\d\d-\d\dT/);
  conv.emit('tool', { name: 'cancel_timer', id: 'fc-3', args: { which: 'secret' }, ok: false, error: "no timer or alarm matches 'secret'", errorClass: 'error', ms: 1 });
  assert.deepEqual({ ...got[3], at: undefined }, { at: undefined, type: 'tool', name: 'cancel_timer', id: 'fc-3', ok: false, errorClass: 'error', ms: 1 }, 'an error by its class only');
  // With log.transcripts on, the whole event.
  const open = new Observer(conv as any, createLogger('silent'), () => true);
  const all: any[] = [];
  open.watch((line) => { all.push(JSON.parse(line)); return true; }, () => undefined);
  conv.emit('tool', { name: 'set_volume', id: 'fc-4', args: { level: 40 }, ok: true, result: { volume: 40 }, ms: 3 });
  assert.deepEqual({ ...all[1], at: undefined }, { at: undefined, type: 'tool', name: 'set_volume', id: 'fc-4', args: { level: 40 }, ok: true, result: { volume: 40 }, ms: 3 });
});

// ---- the daemon

test('transcripts on: setup asks for them, with the date/time/zone line and Google Search; heard and said logged once per turn; ctl watch gets the state changes in order, the transcript and the usage; a watcher that leaves is dropped', async () => {
  const { emu, daemon, done } = await setup({}, { log: { transcripts: true }, live: { google_search: true, location: 'Lyon' } }, { ...card.env, TZ: 'Asia/Tokyo' });
  const w = watch(daemon.socket);
  // A second watcher that connects and goes away at once.
  const leaver = createConnection(daemon.socket);
  leaver.on('connect', () => leaver.write('{"cmd":"watch"}\n'));
  leaver.on('error', () => undefined);
  try {
    assert.ok(await waitUntil(() => w.events.length > 0, 5000), 'the watch started');
    for (let i = 0; i < 50 && (await daemon.ctl('status')).watchers !== 2; i++) await sleep(50);
    assert.equal((await daemon.ctl('status')).watchers, 2, 'two watchers at once');
    leaver.destroy();
    await converse(daemon);

    // The setup the emulator received.
    const s = emu.setups[0];
    assert.equal(s.model, 'models/gemini-3.8-live');
    assert.deepEqual(s.tools.map((t: any) => Object.keys(t)), [['functionDeclarations'], ['googleSearch']], 'the local tools, then Google Search');
    assert.deepEqual(s.tools[1], { googleSearch: {} });
    assert.deepEqual(s.inputAudioTranscription, {});
    assert.deepEqual(s.outputAudioTranscription, {});
    const text: string = s.systemInstruction.parts[0].text;
    const [instruction, line, ...rest] = text.split('\n');
    assert.equal(rest.length, 0, 'one line of context after the instruction');
    assert.match(instruction, /^You are a friendly voice assistant/);
    const tokyo = (d: Date) => new Intl.DateTimeFormat('en-GB', { timeZone: 'Asia/Tokyo', weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' }).format(d);
    assert.match(line, /^Now: .+, \d\d:\d\d, time zone Asia\/Tokyo \(UTC\+09:00\); place: Lyon\.$/);
    assert.ok(line.startsWith(`Now: ${tokyo(new Date())},`) || line.startsWith(`Now: ${tokyo(new Date(Date.now() - 60_000))},`), `${line}: today's date in Tokyo`);
    for (const k of ['thinkingConfig', 'proactivity', 'enableAffectiveDialog']) assert.equal(k in s || k in (s.generationConfig ?? {}), false, `no ${k} in the setup`);

    // The journal: one heard and one said line for the one turn, assembled from the fragments.
    const heard = daemon.logs.filter((l) => l.msg === 'heard');
    const said = daemon.logs.filter((l) => l.msg === 'said');
    assert.deepEqual(heard.map((l) => [l.level, l.heard]), [['info', HEARD]]);
    assert.deepEqual(said.map((l) => [l.level, l.said]), [['info', SAID]]);

    // ctl watch: the same state changes as the journal, in order, for the whole conversation.
    await sleep(200);
    const states = w.events.filter((e) => e.type === 'state').map((e) => e.to);
    assert.deepEqual(states, daemon.states());
    assert.deepEqual(states, ['connecting', 'listening', 'thinking', 'speaking', 'follow-up', 'idle']);
    const tr = w.events.filter((e) => e.type === 'transcript');
    assert.deepEqual(tr.map((e) => [e.heard, e.said]), [[HEARD, SAID]]);
    const thinking = w.events.findIndex((e) => e.type === 'state' && e.to === 'thinking');
    assert.ok(w.events.findIndex((e) => e.type === 'transcript') > thinking, 'the transcript comes after the question');

    // Usage: the conversation's sum in the journal and on the watch; the totals in ctl status; all equal to what the emulator sent.
    const sent = { prompt: usageSum(emu, 'promptTokenCount'), response: usageSum(emu, 'responseTokenCount'), total: usageSum(emu, 'totalTokenCount') };
    assert.ok(sent.total > 0 && emu.sessions[0].usageSent.length >= 1);
    const logged = daemon.logs.filter((l) => l.msg.startsWith('conversation usage'));
    assert.equal(logged.length, 1);
    assert.deepEqual([(logged[0].usage as any).promptTokens, (logged[0].usage as any).responseTokens, (logged[0].usage as any).totalTokens], [sent.prompt, sent.response, sent.total]);
    const onWatch = w.events.filter((e) => e.type === 'usage');
    assert.deepEqual(onWatch.map((e) => e.totalTokens), [sent.total]);
    const st = await daemon.ctl('status');
    assert.deepEqual([st.usage.promptTokens, st.usage.responseTokens, st.usage.totalTokens, st.usage.conversations], [sent.prompt, sent.response, sent.total, 1]);
    assert.equal(st.watchers, 1, 'the watcher that left was dropped; the other is still there');
  } finally {
    leaver.destroy();
    await done();
    await w.done; // the daemon's stop ends the watch
  }
  assert.equal(daemon.exitCode, 0, 'an open watch does not hold up a clean stop');
  assert.ok(daemon.logs.some((l) => l.msg === 'stopped'));
});

test('transcripts off (the default): not asked for, and what an over-eager server sends anyway is never logged or watched; usage totals add up over two conversations', async () => {
  const { emu, daemon, done } = await setup({ transcribeUnasked: true }, {}, { ...card.env, TZ: 'UTC' });
  const w = watch(daemon.socket);
  // The command a user runs, as a process.
  const cli = spawn(process.execPath, [MAIN, 'ctl', 'watch', '--socket', daemon.socket], { stdio: ['ignore', 'pipe', 'pipe'] });
  const cliLines: any[] = [];
  jsonLines(cli.stdout!, (o) => cliLines.push(o));
  try {
    assert.ok(await waitUntil(() => w.events.length > 0 && cliLines.length > 0, 5000));
    assert.equal(w.events[0].transcripts, false);
    await converse(daemon);
    await converse(daemon);
    const s = emu.setups[0];
    assert.equal('inputAudioTranscription' in s, false);
    assert.equal('outputAudioTranscription' in s, false);
    assert.equal(s.tools.some((t: any) => 'googleSearch' in t), false, 'no Google Search unless configured');
    assert.match(s.systemInstruction.parts[0].text, /\nNow: .+, \d\d:\d\d, time zone UTC \(UTC\+00:00\)\.$/, 'no place unless configured');
    const all = JSON.stringify(daemon.logs) + daemon.stderr;
    assert.ok(!all.includes('capital'), 'neither text appears anywhere in the journal');
    assert.equal(daemon.logs.filter((l) => l.msg === 'heard' || l.msg === 'said').length, 0);
    assert.ok(!JSON.stringify(w.events).includes('capital'), 'nor on the watch');
    assert.equal(w.events.filter((e) => e.type === 'transcript').length, 0);
    const st = await daemon.ctl('status');
    assert.equal(emu.sessions.length, 2);
    assert.equal(st.usage.conversations, 2);
    assert.equal(st.usage.totalTokens, usageSum(emu, 'totalTokenCount'));
    assert.equal(st.usage.promptTokens, usageSum(emu, 'promptTokenCount'));
    assert.equal(st.usage.responseTokens, usageSum(emu, 'responseTokenCount'));
    assert.equal(st.usage.messages, emu.sessions.reduce((a, x) => a + x.usageSent.length, 0));
    assert.deepEqual(cliLines.filter((e) => e.type === 'state').map((e) => e.to), daemon.states(), '`live-speaker ctl watch` printed the same state changes');
    assert.equal(cliLines.filter((e) => e.type === 'usage').length, 2);
  } finally {
    await done();
    await w.done;
  }
  const code = await new Promise((res) => (cli.exitCode !== null ? res(cli.exitCode) : cli.on('exit', res)));
  assert.equal(code, 0, 'ctl watch ends when the daemon stops, exit 0');
});

test('an unknown model: the status, the systemd status line and doctor name live.model and the file; no reconnect storm; a press tries once more', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-observe-'));
  scratch.push(dir);
  const sock = join(dir, 'notify.sock');
  const listener = await NotifyListener.start(sock);
  const model = 'gemini-2.5-flash-native-audio-preview-09-2025';
  const { emu, daemon, done } = await setup({ mode: 'scripted', knownModels: ['gemini-3.8-live'] }, { live: { model } }, { ...card.env, NOTIFY_SOCKET: sock });
  try {
    await daemon.pressAndWait('error', 5000);
    await daemon.waitState('idle', 3000);
    await sleep(2500);
    assert.equal(emu.connections, 1, 'one try, no reconnects');
    assert.equal(emu.sessions.length, 0, 'the setup was refused');
    const st = await daemon.ctl('status');
    const file = daemon.configFile;
    assert.ok(st.fault.startsWith(`model '${model}' is retired or unknown on this endpoint: set live.model in ${file} (current: gemini-3.8-live)`), st.fault);
    assert.ok(st.fault.includes(`: models/${model} is not found for API version v1beta, or is not supported for bidi`), 'the server\'s words follow (cut at 123 bytes, as the service cuts them)');
    assert.match(st.fault, /\(code 1008\)$/);
    assert.equal(st.lastError.permanent, true);
    const line = await listener.waitFor((m) => m.includes('STATUS=error: model'), 3000);
    assert.ok(line.includes(`set live.model in ${file}`), line);
    assert.equal(daemon.logs.filter((l) => /conversation failed/.test(l.msg)).length, 1, 'logged once');

    // doctor, run as a user would, against the same config and endpoint.
    const out = await new Promise<string>((res) => execFile(process.execPath, [MAIN, '--config', file, 'doctor'], { env: card.env, timeout: 30_000 }, (_e, so, se) => res(String(so) + String(se))));
    const modelLine = out.split('\n').findIndex((l) => /^\[FAIL\]\s+Live model\s/.test(l));
    assert.ok(modelLine >= 0, out);
    const lines = out.split('\n');
    assert.match(lines[modelLine], new RegExp(`live\\.model '${model}' is refused by http://127\\.0\\.0\\.1:\\d+ \\(retired or unknown\\)`));
    assert.ok(lines[modelLine + 1].includes(`fix: set live.model in ${file} to a current Live model (default gemini-3.8-live`), lines[modelLine + 1]);
    assert.equal(emu.connections, 2, 'doctor tried one session setup');

    await daemon.pressAndWait('error', 5000);
    assert.equal(emu.connections, 3, 'the user acted: one more try, and only one');
  } finally { listener.stop(); await done(); }
});

test('doctor names a model the docs list as shut down without asking the network, and passes the default model', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-observe-'));
  scratch.push(dir);
  const emu = await LiveEmulator.start({ mode: 'scripted', knownModels: ['gemini-3.8-live'] });
  try {
    const base = { live: { base_url: emu.url }, gpio: { enabled: false }, control: { socket: join(dir, 'no.sock') } };
    const run = (live: Record<string, any>) => {
      const file = join(dir, `c-${Math.random().toString(36).slice(2)}.yaml`);
      writeFileSync(file, stringify(deepMerge(base, { live })));
      return new Promise<{ out: string; file: string }>((res) => execFile(process.execPath, [MAIN, '--config', file, 'doctor'], { env: card.env, timeout: 30_000 }, (_e, so, se) => res({ out: String(so) + String(se), file })));
    };
    const before = emu.connections;
    const retired = await run({ model: 'gemini-2.0-flash-live-001' });
    assert.match(retired.out, /\[FAIL\]\s+Live model\s+live\.model 'gemini-2\.0-flash-live-001' was shut down on 2025-12-09/);
    assert.ok(retired.out.includes(`fix: set live.model in ${retired.file} to gemini-3.8-live`), retired.out);
    assert.equal(emu.connections, before, 'no session was opened for it');
    const ok = await run({});
    assert.match(ok.out, /\[ok\]\s+Live model\s+gemini-3\.8-live: http:\/\/127\.0\.0\.1:\d+ accepted the session setup/);
    assert.equal(emu.connections, before + 1);
  } finally { await emu.close(); }
});
