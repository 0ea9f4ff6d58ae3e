// Tools (issue 12) end to end: the built daemon as a process, the real
// @google/genai SDK talking to the loopback emulator (which makes the
// function calls as the Live API does), and the real `speaker` addon playing
// on the simulated sound card, whose sink is recorded and compared with what
// the emulator sent.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard, findTone } from './bench/soundcard.js';
import { DaemonProcess, deepMerge, processAlive, startWithEmulator, waitUntil } from './bench/daemon.js';
import { markedReply, matchDelivery } from './bench/delivery.js';
import { LiveEmulator, type EmulatedSession } from '../src/emulator/emulator.js';
import { controlRequest } from '../src/control.js';
import { goertzelPower, tone } from '../src/audio/pcm.js';
import { ALARM_HZ } from '../src/audio/sounds.js';
import { TIMER_PATTERN, patternName } from '../src/leds/leds.js';
import { parseConfig } from '../src/config.js';
import { buildArgv } from '../src/tools/command.js';
import { controlWatch } from '../src/observe.js';

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

const SPK = 24000;
const msOf = (samples: number) => (samples * 1000) / SPK;
const quiet = { conversation: { follow_up_s: 120, no_speech_timeout_s: 120, max_conversation_s: 3600 }, feedback: { wake_sound: false, error_sound: false } };
const BUILTINS = ['end_conversation', 'set_volume', 'get_volume', 'set_timer', 'set_alarm', 'list_timers', 'cancel_timer'];

/** A conversation with the daemon, listening, and its emulated session. */
async function conversation(config: Record<string, any> = {}) {
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, config), card.env);
  const session = h.emu.waitFor('session', undefined, 5000);
  await h.daemon.pressAndWait('listening', 5000);
  const [s] = (await session) as [EmulatedSession];
  return { ...h, s };
}

/** One call, its answer. */
async function call(s: EmulatedSession, name: string, args: Record<string, unknown> = {}, timeoutMs = 5000) {
  const [id] = s.toolCall([{ name, args }]);
  const r = await s.toolResponse(id, timeoutMs);
  assert.equal(r.name, name);
  return r.response;
}

test('the tools are declared in the setup; parallel calls are each answered by id, in the order they finish; timers by tool, listed and cancelled; ctl watch shows each call', { timeout: 60_000 }, async () => {
  const { daemon, s, done } = await conversation({
    tools: { commands: [
      { name: 'slow_hello', description: 'Says hello, slowly.', argv: ['/bin/sh', '-c', 'sleep 1; echo hello'] },
      { name: 'background', description: 'Runs while the model talks.', argv: ['/bin/echo', 'done'], non_blocking: true },
    ] },
  });
  const watched: any[] = [];
  const watching = controlWatch(daemon.socket, (line) => watched.push(JSON.parse(line)));
  try {
    assert.deepEqual(s.declaredTools, [...BUILTINS, 'slow_hello', 'background']);
    const decls = s.setup.tools[0].functionDeclarations;
    assert.equal(decls.find((d: any) => d.name === 'background').behavior, 'NON_BLOCKING');
    assert.equal(decls.find((d: any) => d.name === 'slow_hello').behavior, 'BLOCKING', 'blocking unless non_blocking: true (said outright: the default gemini-3.8-live calls asynchronously unless told)');
    for (const n of ['end_conversation', 'get_volume', 'list_timers', 'slow_hello']) assert.equal(decls.find((d: any) => d.name === n).parameters, undefined, `${n} takes nothing: no empty OBJECT schema (the API refuses one)`);
    const [bgId] = s.toolCall([{ name: 'background' }]);
    const bg = await s.toolResponse(bgId, 5000);
    assert.deepEqual({ scheduling: bg.scheduling, response: bg.response }, { scheduling: 'WHEN_IDLE', response: { output: 'done\n' } });
    const decl = s.setup.tools[0].functionDeclarations.find((d: any) => d.name === 'set_alarm');
    assert.deepEqual(decl.parameters.required, ['time']);

    // One toolCall, four calls: the slow one is answered last, each answer carries its own call's id.
    const ids = s.toolCall([
      { name: 'slow_hello' }, { name: 'get_volume' },
      { name: 'set_timer', args: { minutes: 10, label: 'pasta' } }, { name: 'set_alarm', args: { time: '07:30', label: 'wake up' } },
    ]);
    const rs = await Promise.all(ids.map((id) => s.toolResponse(id, 5000)));
    assert.deepEqual(rs.map((r) => r.id), ids);
    assert.deepEqual(rs.map((r) => r.name), ['slow_hello', 'get_volume', 'set_timer', 'set_alarm']);
    assert.equal(s.toolResponses.at(-1).id, ids[0], 'the slow call was answered after the quick ones, not holding them up');
    assert.deepEqual(rs[0].response, { output: 'hello\n' });
    assert.deepEqual(rs[1].response, { volume_percent: 100 });
    assert.equal(rs[2].response.timer.label, 'pasta');
    assert.equal(rs[2].response.timer.remaining_s, 600);
    assert.match(rs[3].response.alarm.rings_at, / 07:30:00$/);

    const listed = await call(s, 'list_timers');
    // Soonest first: the alarm may come before the 10-minute timer when it is 07:20-07:30 now.
    const soonest = [['timer', 'pasta'], ['alarm', 'wake up']].sort((a, b) => (listed.timers.find((t: any) => t.label === a[1]).remaining_s - listed.timers.find((t: any) => t.label === b[1]).remaining_s));
    assert.deepEqual(listed.timers.map((t: any) => [t.kind, t.label]), soonest);
    const status = await daemon.ctl('status');
    assert.deepEqual(status.timers.list.map((t: any) => t.label).sort(), ['pasta', 'wake up']);
    const cancelled = await call(s, 'cancel_timer', { which: 'pasta' });
    assert.deepEqual(cancelled.cancelled.map((t: any) => t.label), ['pasta']);
    assert.deepEqual((await call(s, 'list_timers')).timers.map((t: any) => t.label), ['wake up']);
    assert.match((await call(s, 'cancel_timer', { which: 'nothing' })).error, /no timer or alarm matches 'nothing'/);
    assert.match((await call(s, 'set_timer', { seconds: 0 })).error, /1 second/);
    assert.match((await call(s, 'set_alarm', { time: '25:61' })).error, /HH:MM/);
    await daemon.waitLog((l) => l.msg === 'tool answered' && l.tool === 'slow_hello' && l.ok === true, 2000);
    // ctl watch: one 'tool' event per call answered, with its id, name and outcome.
    const answered = s.toolResponses.map((r: any) => r.id);
    assert.ok(await waitUntil(() => watched.filter((e) => e.type === 'tool').length >= answered.length, 3000), 'every answered call reached the watch');
    const toolEvents = watched.filter((e) => e.type === 'tool');
    assert.deepEqual(toolEvents.map((e) => e.id).sort(), [...answered].sort());
    const slow = toolEvents.find((e) => e.id === ids[0]);
    assert.deepEqual({ name: slow.name, ok: slow.ok }, { name: 'slow_hello', ok: true });
  } finally { await done(); await watching.catch(() => undefined); }
});

test('user commands: argv with whole-element arguments and no shell, output back to the model, the cap, timeout, non-zero exit and a missing program as errors; a cancelled call is killed and never answered', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tools-cmd-'));
  const pidFile = join(dir, 'pid');
  const { daemon, s, done } = await conversation({
    tools: {
      commands: [
        { name: 'weather', description: 'Weather for a city.', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, argv: ['/bin/echo', 'weather in', '{city}'] },
        { name: 'count', description: 'Counts.', argv: ['/usr/bin/seq', '1', '100000'], max_output_bytes: 100 },
        { name: 'stuck', description: 'Hangs.', argv: ['/bin/sleep', '30'], timeout_s: 1 },
        { name: 'broken', description: 'Fails.', argv: ['/bin/sh', '-c', 'echo oops >&2; exit 3'] },
        { name: 'absent', description: 'Not installed.', argv: ['/nonexistent/bin/tool'] },
        { name: 'sleeper', description: 'Sleeps in a child process.', argv: ['/bin/sh', '-c', 'echo $$ > "$0"; sleep 30 & echo $! >> "$0"; wait', pidFile], timeout_s: 60 },
      ],
    },
  });
  try {
    // The argument is one argv element: nothing in it is a shell.
    assert.deepEqual(await call(s, 'weather', { city: 'Lisbon; rm -rf / $(id)' }), { output: 'weather in Lisbon; rm -rf / $(id)\n' });
    assert.match((await call(s, 'weather', {})).error, /missing argument 'city'/);
    assert.match((await call(s, 'weather', { city: 3 })).error, /'city' must be a string/);

    const counted = await call(s, 'count');
    assert.equal(Buffer.byteLength(counted.output), 100, 'cut at max_output_bytes');
    assert.ok(counted.output.startsWith('1\n2\n3\n'));
    assert.equal(counted.truncated, true);

    const t0 = Date.now();
    const stuck = await call(s, 'stuck', {}, 5000);
    const took = Date.now() - t0;
    assert.match(stuck.error, /timed out after 1 s/);
    assert.ok(took >= 950 && took < 2500, `the timeout answered after ${took} ms (timeout_s: 1)`);
    assert.match((await call(s, 'broken')).error, /exited with code 3: oops/);
    assert.match((await call(s, 'absent')).error, /cannot run '\/nonexistent\/bin\/tool': no such program/);
    for (const name of ['stuck', 'broken', 'absent']) await daemon.waitLog((l) => l.msg === 'user command failed' && l.tool === name, 2000, `${name}'s failure in the log`);

    // Cancellation: the running command (and its child) is killed, its answer never sent; the call beside it is answered.
    const [sleeperId, volumeId] = s.toolCall([{ name: 'sleeper' }, { name: 'get_volume' }]);
    assert.ok(await waitUntil(() => existsSync(pidFile) && readFileSync(pidFile, 'utf8').trim().split('\n').length === 2, 5000), 'the command started');
    const pids = readFileSync(pidFile, 'utf8').trim().split('\n').map(Number);
    assert.ok(pids.every(processAlive));
    s.cancelToolCalls([sleeperId]);
    assert.ok(await waitUntil(() => !pids.some(processAlive), 2000), `the cancelled command's processes are gone (${pids.filter(processAlive)} alive)`);
    await daemon.waitLog((l) => l.msg === 'tool calls cancelled by the model', 2000);
    await s.toolResponse(volumeId, 2000);
    await sleep(1000);
    assert.equal(s.toolResponses.filter((r) => r.id === sleeperId).length, 0, 'no answer for the cancelled call');
    assert.equal(s.closed, false);
    assert.equal(daemon.exitCode, null);
  } finally { await done(); rmSync(dir, { recursive: true, force: true }); }
});

test('set_volume: the played level follows, ctl status and state.json say it, ctl volume and the tool are one volume', { timeout: 60_000 }, async () => {
  const { daemon, s, done } = await conversation();
  const sink = card.recordSpeaker();
  await sleep(400);
  try {
    const replyOf = async (pcm: Buffer) => {
      const played = daemon.waitState('follow-up', 10000);
      assert.equal(await s.sendAudio(pcm, { speed: 2 }), 'complete');
      await played;
    };
    await replyOf(tone(440, 1000, SPK));
    assert.deepEqual(await call(s, 'set_volume', { percent: 50 }), { volume_percent: 50, previous_percent: 100 });
    assert.equal((await daemon.ctl('status')).volume, 50);
    await replyOf(tone(660, 1000, SPK));
    await sleep(300);
    const rec = await sink.stop();
    const p440 = goertzelPower(rec, SPK, 440);
    const p660 = goertzelPower(rec, SPK, 660);
    assert.ok(p660 > 0 && p440 > 0);
    // Half the amplitude: a quarter of the power.
    assert.ok(Math.abs(p660 / p440 - 0.25) < 0.03, `power ratio after set_volume 50: ${(p660 / p440).toFixed(3)} (0.25 expected)`);
    assert.deepEqual(await call(s, 'set_volume', { direction: 'up', amount: 20 }), { volume_percent: 70, previous_percent: 50 });
    assert.deepEqual(await call(s, 'set_volume', { direction: 'down' }), { volume_percent: 60, previous_percent: 70 });
    assert.match((await call(s, 'set_volume', { percent: 151 })).error, /0 to 150/);
    await controlRequest(daemon.socket, { cmd: 'volume', value: '30' });
    assert.deepEqual(await call(s, 'get_volume'), { volume_percent: 30 }, 'ctl volume and the tool share one volume');
    await call(s, 'set_volume', { percent: 45 });
    const saved = JSON.parse(readFileSync(join(daemon.dir, 'state', 'state.json'), 'utf8'));
    assert.equal(saved.volume, 45, 'persisted as ctl volume is');
    assert.equal((await daemon.ctl('status')).volume, 45);
  } finally { await sink.stop().catch(() => undefined); await done(); }
});

test('end_conversation: the goodbye is heard to its last sample, then the session closes and the daemon is idle', { timeout: 60_000 }, async () => {
  const { emu, daemon, s, done } = await conversation();
  const sink = card.recordSpeaker();
  await sleep(400);
  try {
    const goodbye = markedReply(1500, 77);
    assert.deepEqual(await call(s, 'end_conversation'), { result: 'the conversation ends after your goodbye' });
    assert.equal((await daemon.ctl('status')).state, 'listening', 'not ended before the goodbye');
    const ended = daemon.waitNextLog((l) => l.msg === 'conversation ended', 10000);
    const closed = emu.waitFor('close', (x) => x === s, 10000);
    assert.equal(await s.sendAudio(goodbye, { speed: 2 }), 'complete');
    const end = await ended;
    await closed;
    assert.equal(end.reason, 'goodbye (end_conversation)');
    await daemon.waitLog((l) => l.msg === 'state' && l.to === 'idle', 2000);
    await sleep(400);
    const rec = await sink.stop();
    const m = matchDelivery(goodbye, rec);
    assert.equal(m.deliveredPct, 100, `the goodbye was heard whole: ${m.missingMs} ms missing at ${JSON.stringify(m.missing)}`);
    const lastHeardAt = sink.startedAt + msOf(m.endAt);
    const endedAt = Date.parse(end.time as string);
    assert.ok(endedAt - lastHeardAt > -40, `ended ${Math.round(lastHeardAt - endedAt)} ms before the goodbye's last sample was heard`);
    assert.ok(endedAt - lastHeardAt < 600, `ended ${Math.round(endedAt - lastHeardAt)} ms after the goodbye's last sample was heard`);
    assert.equal((await daemon.ctl('status')).session, 'none');
  } finally { await sink.stop().catch(() => undefined); await done(); }
});

test('a timer set by voice rings on the speaker with the LEDs until ctl press stops it; the press starts no conversation', { timeout: 60_000 }, async () => {
  const { emu, daemon, s, done } = await conversation();
  try {
    const r = await call(s, 'set_timer', { seconds: 3, label: 'tea' });
    assert.equal(r.timer.remaining_s, 3);
    await daemon.pressAndWait('idle', 3000); // the conversation ends; the timer is the daemon's
    const sink = card.recordSpeaker();
    await sink.ready(); // the recorder runs before anything plays
    await daemon.waitLog((l) => l.msg === 'timer ringing' && l.timer === r.timer.id, 6000); // by id: labels are not logged with log.transcripts off
    await sleep(3200); // more than two cycles
    const st = await daemon.ctl('status');
    assert.equal(st.timers.ringing, true);
    assert.equal(st.leds.activity, patternName(TIMER_PATTERN), 'the activity LED shows the timer pattern');
    const pressedAt = Date.now();
    const stopped = daemon.waitNextLog((l) => l.msg === 'timer ringing stopped', 3000);
    await daemon.ctl('press');
    assert.equal((await stopped).by, 'ctl');
    await sleep(1500);
    const rec = await sink.stop();
    const before = rec.subarray(0, Math.max(0, Math.round((pressedAt - sink.startedAt) * 24)) * 2);
    const afterPress = rec.subarray(Math.round((pressedAt + 300 - sink.startedAt) * 24) * 2);
    const ringing = findTone(before, ALARM_HZ, 10);
    assert.ok(ringing.totalMs >= 700, `the timer's sound was heard at the sink, more than one cycle of it (${JSON.stringify(ringing)})`);
    assert.equal(findTone(afterPress, ALARM_HZ, 10).totalMs, 0, 'silent once stopped');
    const st2 = await daemon.ctl('status');
    assert.equal(st2.timers.ringing, false);
    assert.equal(st2.state, 'idle', 'the press only stopped the ringing');
    assert.equal(st2.leds.activity, 'off');
    assert.equal(emu.sessions.length, 1, 'no new conversation');
  } finally { await done(); }
});

test('timers survive a restart: one that fell due while the daemon was down rings once, with a line in the log; the other keeps its time', { timeout: 90_000 }, async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'tools-state-'));
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const cfg = deepMerge(quiet, { live: { base_url: emu.url }, state: { dir: stateDir } });
  let d2: DaemonProcess | null = null;
  try {
    const d1 = await DaemonProcess.start({ env: card.env, config: cfg });
    const session = emu.waitFor('session', undefined, 5000);
    await d1.pressAndWait('listening', 5000);
    const [s] = (await session) as [EmulatedSession];
    await call(s, 'set_timer', { seconds: 2, label: 'eggs' });
    await call(s, 'set_timer', { minutes: 2, label: 'bread' });
    await d1.stop();
    assert.equal(d1.logs.some((l) => l.msg === 'timer ringing'), false, 'stopped before the timer was due');
    await sleep(3000); // eggs falls due while nothing runs
    const sink = card.recordSpeaker();
    await sleep(300);
    d2 = await DaemonProcess.start({ env: card.env, config: cfg });
    const line = await d2.waitLog((l) => /fell due while the daemon was not running; ringing once/.test(l.msg), 5000);
    assert.equal(line.timer, '1', 'eggs, by its id (labels are not logged with log.transcripts off)');
    assert.ok((line.lateS as number) >= 1 && (line.lateS as number) < 10, `late by ${line.lateS} s`);
    await sleep(4500);
    const rec = await sink.stop();
    const heard = findTone(rec, ALARM_HZ, 10);
    // One cycle: three 150 ms beeps.
    assert.ok(heard.totalMs >= 350 && heard.totalMs <= 600, `rang once: ${JSON.stringify(heard)}`);
    assert.ok(heard.lastMs! - heard.firstMs! < 1000, `one cycle, not repeated: ${JSON.stringify(heard)}`);
    const st = await d2.ctl('status');
    assert.equal(st.timers.ringing, false, 'a ring-once stops by itself');
    assert.deepEqual(st.timers.list.map((t: any) => t.label), ['bread']);
    const left = st.timers.list[0].remaining_s;
    assert.ok(left > 100 && left <= 113, `bread: ${left} s left`);
    assert.equal(d2.logs.filter((l) => /fell due while/.test(l.msg)).length, 1);
  } finally { await d2?.stop(); await emu.close(); rmSync(stateDir, { recursive: true, force: true }); }
});

test('parrot mode: a 1400 Hz tone said to the built-in emulator makes it call set_timer, and it answers once the call is answered', { timeout: 60_000 }, async () => {
  const d = await DaemonProcess.start({ env: card.env, config: deepMerge(quiet, {}) });
  try {
    await d.pressAndWait('listening', 5000);
    const speaking = d.waitState('speaking', 10000);
    await card.playIntoRoom(tone(1400, 1000, 16000));
    const speakingAt = Date.parse((await speaking).time as string);
    const answered = await d.waitLog((l) => l.msg === 'tool answered' && l.tool === 'set_timer', 2000);
    assert.equal(answered.ok, true);
    assert.ok(Date.parse(answered.time as string) <= speakingAt, 'set_timer was answered before the reply began');
    await d.waitLog((l) => l.msg === 'timer set', 2000);
    assert.deepEqual((await d.ctl('status')).timers.list.map((t: any) => t.label), ['demo']);
  } finally { await d.stop(); }
});

test('tools.commands in the config: bad names, schemas and placeholders are refused, naming the key and the file', () => {
  const file = '/etc/live-speaker/config.yaml';
  const bad = (commands: unknown[]) => { try { parseConfig({ tools: { commands } }, file, []); } catch (e) { return (e as Error).message; } return 'accepted'; };
  const ok = { name: 'weather', description: 'Weather.', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, argv: ['/usr/bin/curl', '-s', '{city}'] };
  assert.equal(parseConfig({ tools: { commands: [ok] } }, file, []).tools.commands[0].timeout_s, 10);
  assert.match(bad([{ ...ok, name: 'Weather-Now' }]), /invalid config in \/etc\/live-speaker\/config\.yaml: 'tools\.commands\.0\.name': a function name/);
  assert.match(bad([{ ...ok, name: 'set_volume' }]), /'tools\.commands\.0\.name': the name of a built-in tool/);
  assert.match(bad([ok, { ...ok }]), /'tools\.commands\.1\.name': 'weather' is used twice/);
  assert.match(bad([{ ...ok, argv: ['/usr/bin/curl', 'https://x/?q={city}'] }]), /'tools\.commands\.0\.argv\.1': a placeholder must be a whole argv element/);
  assert.match(bad([{ ...ok, argv: ['/usr/bin/curl', '{town}'] }]), /'tools\.commands\.0\.argv\.1': '\{town\}' names no parameter/);
  assert.match(bad([{ ...ok, argv: ['{city}'] }]), /'tools\.commands\.0\.argv\.0': the program itself cannot be a placeholder/);
  assert.match(bad([{ ...ok, parameters: { type: 'object', properties: { city: { type: 'text' } } } }]), /'tools\.commands\.0\.parameters\.properties\.city\.type'/);
  assert.match(bad([{ ...ok, parameters: { type: 'object', properties: {}, required: ['city'] } }]), /'tools\.commands\.0\.parameters\.required': 'city' is not in parameters\.properties/);
  assert.match(bad([{ ...ok, shell: true }]), /unknown key 'tools\.commands\.0\.shell'/);
  assert.deepEqual(buildArgv(['/bin/x', '{a}', '--', '{b}', '{c}'], { a: 'one two', c: 3 }), ['/bin/x', 'one two', '--', '3'], 'whole elements; an absent optional argument is left out');
  // A value that would be read as an option (prompt injection through a searched page) is refused...
  assert.throws(() => buildArgv(['/usr/bin/curl', '{url}'], { url: '-o/home/speaker/.bashrc' }), /argument 'url' must not start with '-'/);
  assert.throws(() => buildArgv(['/bin/x', '{n}'], { n: -5 }), /argument 'n' must not start with '-'/);
  // ...unless the argv ends the options with '--' before it.
  assert.deepEqual(buildArgv(['/bin/x', '--', '{n}'], { n: -5 }), ['/bin/x', '--', '-5']);
  assert.deepEqual(buildArgv(['/bin/x', '{a}'], { a: 'a-b' }), ['/bin/x', 'a-b']);
});

test('a tool that runs longer than no_speech_timeout_s does not end the conversation; the timeout starts again once it has answered', { timeout: 60_000 }, async () => {
  const speech = await card.say('hello there');
  const { daemon, s, done } = await conversation({
    conversation: { no_speech_timeout_s: 2 },
    tools: { commands: [{ name: 'slow', description: 'Slow.', argv: ['/bin/sleep', '3.5'] }] },
  });
  try {
    const thinking = daemon.waitState('thinking', 8000);
    await card.playIntoRoom(speech);
    await thinking;
    const [id] = s.toolCall([{ name: 'slow' }]);
    await s.toolResponse(id, 8000);
    const answeredAt = Date.now();
    assert.equal(daemon.logs.some((l) => l.msg === 'conversation ended'), false, 'still in the conversation while the tool ran (3.5 s > 2 s)');
    const ended = await daemon.waitNextLog((l) => l.msg === 'conversation ended', 5000);
    assert.equal(ended.reason, 'no reply from the server');
    const after = Date.parse(ended.time as string) - answeredAt;
    assert.ok(after > 1500 && after < 2600, `ended ${after} ms after the answer (no_speech_timeout_s: 2)`);
  } finally { await done(); }
});

test('a tool running when the session is lost is answered on the resumed session; a goAway while a tool runs waits for its answer', { timeout: 60_000 }, async () => {
  const { emu, daemon, s, done } = await conversation({
    tools: { commands: [{ name: 'slow', description: 'Slow.', argv: ['/bin/sleep', '1.5'] }] },
  });
  try {
    // The connection drops while the command runs: the answer goes to the resumed session.
    const [id] = s.toolCall([{ name: 'slow' }]);
    await daemon.waitLog((l) => l.msg === 'tool call' && l.id === id, 3000);
    const next = emu.waitFor('session', (x: EmulatedSession) => x !== s, 10_000);
    s.terminate();
    const [s2] = (await next) as [EmulatedSession];
    const r = await s2.toolResponse(id, 8000);
    assert.equal(r.name, 'slow');
    assert.deepEqual(r.response, { output: '' });
    // goAway while a command runs (listening): no resumption mid-call; the answer reaches the session that made the call.
    assert.equal((await daemon.ctl('status')).state, 'listening');
    const [id2] = s2.toolCall([{ name: 'slow' }]);
    await daemon.waitLog((l) => l.msg === 'tool call' && l.id === id2, 3000);
    s2.goAway(30);
    const r2 = await s2.toolResponse(id2, 8000);
    assert.deepEqual(r2.response, { output: '' });
    assert.equal(emu.sessions.length, 2, 'no new connection while the tool ran');
  } finally { await done(); }
});

test('log.transcripts off: what was said to a tool (a timer label, arguments, a command\'s stderr) is in neither the journal nor ctl watch', { timeout: 60_000 }, async () => {
  const { daemon, s, done } = await conversation({
    log: { level: 'info', transcripts: false },
    tools: { commands: [{ name: 'complain', description: 'Fails.', parameters: { type: 'object', properties: { what: { type: 'string' } }, required: ['what'] }, argv: ['/bin/sh', '-c', 'echo "$0" >&2; exit 2', '{what}'] }] },
  });
  const watched: any[] = [];
  const watching = controlWatch(daemon.socket, (line) => watched.push(JSON.parse(line)));
  try {
    await waitUntil(() => watched.length > 0, 2000);
    assert.equal((await call(s, 'set_timer', { seconds: 600, label: 'SECRET-pasta' })).timer.label, 'SECRET-pasta');
    assert.match((await call(s, 'cancel_timer', { which: 'SECRET-which' })).error, /SECRET-which/, 'the model still gets the whole error');
    assert.match((await call(s, 'complain', { what: 'SECRET-stderr' })).error, /exited with code 2: SECRET-stderr/);
    assert.equal((await call(s, 'cancel_timer', { which: 'SECRET-pasta' })).cancelled?.length ?? 1, 1);
    assert.ok(await waitUntil(() => watched.filter((e) => e.type === 'tool').length >= 4, 3000), 'every call reached the watch');
    const tools = watched.filter((e) => e.type === 'tool');
    assert.deepEqual(tools.map((e) => [e.name, e.ok]), [['set_timer', true], ['cancel_timer', false], ['complain', false], ['cancel_timer', true]]);
    assert.equal(tools[2].errorClass, 'exit code');
    for (const e of tools) assert.deepEqual(Object.keys(e).filter((k) => ['args', 'result', 'error'].includes(k)), [], `no args/result/error text: ${JSON.stringify(e)}`);
    assert.ok(daemon.logs.some((l) => l.msg === 'timer set' && l.timer === '1'), 'the timer is logged by its id');
    assert.doesNotMatch(JSON.stringify(daemon.logs), /SECRET/, 'nothing said is in the journal');
    assert.doesNotMatch(JSON.stringify(watched), /SECRET/, 'nothing said is in the watch');
  } finally { await done(); await watching.catch(() => undefined); }
});

test('a non_blocking command that runs longer than follow_up_s is answered: the follow-up window waits for it, then starts again', { timeout: 60_000 }, async () => {
  const { daemon, s, done } = await conversation({
    conversation: { follow_up_s: 1 },
    tools: { commands: [{ name: 'lights', description: 'Slow, in the background.', argv: ['/bin/sleep', '2.5'], non_blocking: true }] },
  });
  try {
    const [id] = s.toolCall([{ name: 'lights' }]);
    await daemon.waitLog((l) => l.msg === 'tool call' && l.id === id, 3000);
    const followUp = daemon.waitState('follow-up', 5000);
    assert.equal(await s.sendAudio(tone(440, 300, SPK)), 'complete'); // "I'm on it": then the follow-up window
    await followUp;
    const r = await s.toolResponse(id, 6000);
    const answeredAt = Date.now();
    assert.deepEqual(r.response, { output: '' });
    assert.equal(daemon.logs.some((l) => l.msg === 'conversation ended'), false, 'the conversation did not end under the command');
    const ended = await daemon.waitNextLog((l) => l.msg === 'conversation ended', 4000);
    assert.equal(ended.reason, 'follow-up window over');
    const after = Date.parse(ended.time as string) - answeredAt;
    assert.ok(after > 700 && after < 1800, `the window started again at the answer (${after} ms; follow_up_s: 1)`);
  } finally { await done(); }
});

test('the wake word stops a ringing timer and starts no conversation', { timeout: 60_000 }, async () => {
  const { emu, daemon, s, done } = await conversation({ wake: { engine: 'tone', tone_hz: 1000 } });
  try {
    await call(s, 'set_timer', { seconds: 1 });
    await daemon.pressAndWait('idle', 3000);
    await daemon.waitLog((l) => l.msg === 'timer ringing', 5000);
    await sleep(500);
    const stopped = daemon.waitNextLog((l) => l.msg === 'timer ringing stopped', 5000);
    await card.playIntoRoom(tone(1000, 700, 16000));
    assert.equal((await stopped).by, 'wake');
    await sleep(1000);
    const st = await daemon.ctl('status');
    assert.equal(st.timers.ringing, false);
    assert.equal(st.state, 'idle');
    assert.equal(emu.sessions.length, 1, 'no new conversation');
  } finally { await done(); }
});
