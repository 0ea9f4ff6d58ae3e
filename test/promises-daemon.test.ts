// Promises the README and docs/ make, kept by the real daemon: the built daemon as a
// process, real arecord and the `speaker` addon on the simulated sound card,
// the real @google/genai SDK against the loopback emulator. Each test here
// failed against the daemon before the fix it pins (see the note).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { stringify } from 'yaml';
import { SoundCard, findTone } from './bench/soundcard.js';
import { DaemonProcess, MAIN, deepMerge, startWithEmulator } from './bench/daemon.js';
import { NotifyListener } from './bench/notify-listener.js';
import { LiveEmulator, type EmulatorOptions } from '../src/emulator/emulator.js';
import { tone } from '../src/audio/pcm.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures');

let card: SoundCard;
let speech: Buffer;
const scratch: string[] = [];

before(async () => {
  card = await SoundCard.start();
  speech = await card.say('what is the capital of France');
});
after(async () => {
  await card?.stop();
  for (const d of scratch) rmSync(d, { recursive: true, force: true });
});

const tmp = (prefix: string) => { const d = mkdtempSync(join(tmpdir(), prefix)); scratch.push(d); return d; };

const setup = (emuOpts: EmulatorOptions = {}, config: Record<string, any> = {}, env: NodeJS.ProcessEnv = card.env) =>
  startWithEmulator({ mode: 'scripted', ...emuOpts }, deepMerge({ live: { connect_timeout_s: 2 }, conversation: { follow_up_s: 2, error_display_s: 1 } }, config), env);

const resumes = (d: DaemonProcess) => d.logs.filter((l) => l.msg === 'Live session lost; resuming').length;

// ---- reconnecting: a bounded number of tries for every shape of outage

test('after a long session, a server that accepts and drops every new connection gets exactly three resumption tries, then the error', async () => {
  const { emu, daemon, done } = await setup({}, { conversation: { no_speech_timeout_s: 30, max_conversation_s: 60 } });
  try {
    await daemon.pressAndWait('listening');
    await sleep(11_000); // a session that lived past the 10 s that earn a fresh set of tries
    emu.dropNewConnections = true;
    const failed = daemon.waitState('error', 10_000);
    emu.sessions[0].terminate();
    await failed;
    assert.equal(emu.connections, 4, 'the first connection and three tries, not a storm');
    assert.equal(resumes(daemon), 3);
    assert.equal(emu.openConnections, 0);
    emu.dropNewConnections = false;
    await daemon.waitState('idle', 3000);
    await daemon.pressAndWait('listening');
    assert.equal(emu.connections, 5, 'a press afterwards opens a new conversation');
  } finally { await done(); }
});

test('after a long session, a server that is gone (connection refused) gets exactly three resumption tries, then the error', async () => {
  const { emu, daemon, done } = await setup({}, { conversation: { no_speech_timeout_s: 30, max_conversation_s: 60 } });
  try {
    await daemon.pressAndWait('listening');
    await sleep(11_000);
    const failed = daemon.waitState('error', 10_000);
    await emu.close(); // the port now refuses
    await failed;
    assert.equal(resumes(daemon), 3);
    const lost = daemon.logs.filter((l) => /Live session lost|conversation failed/.test(l.msg));
    assert.equal(lost.length, 4, `three tries and one failure, nothing more: ${JSON.stringify(lost)}`);
    await sleep(1500);
    assert.equal(resumes(daemon), 3, 'and no tries after it gave up');
  } finally { await done(); }
});

test('a server that never answers the setup: the WebSocket is closed when the daemon gives up (no connection while idle)', async () => {
  const { emu, daemon, done } = await setup({ setupDelayMs: 60_000 });
  try {
    await daemon.pressAndWait('error', 5000);
    assert.match((await daemon.ctl('status')).lastError.message, /no answer to setup within 2 s/);
    for (let i = 0; i < 20 && emu.openConnections > 0; i++) await sleep(50);
    assert.equal(emu.openConnections, 0, 'the socket was closed');
    assert.equal(emu.connections, 1);
  } finally { await done(); }
});

// ---- a press while it thinks

test('a press while thinking: none of the reply that was coming is played, and the daemon listens', async () => {
  const { emu, daemon, done } = await setup();
  const sink = card.recordSpeaker();
  await sink.ready(); // the recorder runs before anything plays
  try {
    await daemon.pressAndWait('listening');
    const utterance = emu.waitFor('utterance', undefined, 10_000);
    await card.playIntoRoom(speech);
    await daemon.waitState('thinking', 5000);
    await utterance;
    await daemon.pressAndWait('listening', 3000);
    const result = await emu.sessions[0].sendAudio(tone(440, 1000, 24000)); // the reply the press cut, then turnComplete
    assert.equal(result, 'complete');
    await sleep(800);
    const played = await sink.stop();
    assert.equal(findTone(played, 440).totalMs, 0, 'no sample of the cut reply reached the speaker');
    assert.equal((await daemon.ctl('status')).state, 'listening');
    assert.ok(!daemon.states().includes('speaking'), `states: ${daemon.states().join(' ')}`);
  } finally { await sink.stop().catch(() => undefined); await done(); }
});

// ---- the process: unexpected errors, reloads, restarts

test('an unexpected unhandled rejection is logged and the daemon exits non-zero (for systemd to restart it)', async () => {
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const d = await DaemonProcess.start({
    env: { ...card.env, NODE_OPTIONS: `--import=${join(FIXTURES, 'reject-later.mjs')}`, REJECT_AFTER_MS: '2500' },
    config: { live: { base_url: emu.url } },
  });
  try {
    const code = await Promise.race([d.exited, sleep(8000).then(() => 'still running')]);
    assert.equal(code, 1);
    const fatal = d.logs.find((l) => l.level === 'fatal');
    assert.match(String(fatal?.msg), /^unexpected error \(unhandled rejection\)/);
    assert.match(String(fatal?.error), /test: an unexpected rejection/);
  } finally { await d.stop(); await emu.close(); }
});

test('a reload that fails reading a key file still ends in READY=1, with the old config kept', async () => {
  const dir = tmp('ls-reload-');
  const sock = join(dir, 'notify.sock');
  const listener = await NotifyListener.start(sock);
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const d = await DaemonProcess.start({ env: { ...card.env, NOTIFY_SOCKET: sock }, config: { live: { base_url: emu.url } } });
  try {
    await listener.waitFor((m) => m.includes('READY=1'));
    const base = readFileSync(d.configFile, 'utf8');
    // A key "file" that cannot be read (a directory: EISDIR, as EACCES would be for the service user).
    writeFileSync(d.configFile, base + stringify({ wake: { engine: 'porcupine', access_key_file: dir } }));
    const n = listener.got.length;
    d.child.kill('SIGHUP');
    await listener.waitFor((m) => m.includes('RELOADING=1'), 3000, n);
    const ready = await listener.waitFor((m) => m.includes('READY=1'), 3000, n);
    assert.ok(ready, 'READY=1 after RELOADING=1');
    const refused = await d.waitLog((l) => l.msg === 'config reload refused; keeping the running config', 3000);
    assert.match(String(refused.error), new RegExp(`^wake.access_key_file: cannot read ${dir} \\(EISDIR\\)`));
    const st = await d.ctl('status');
    assert.equal(st.wake.engine, 'none', 'the old config is still running');
    await d.pressAndWait('listening');
  } finally { listener.stop(); await d.stop(); await emu.close(); }
});

test('mute survives a restart: the restarted daemon comes up muted and never starts arecord; unmute starts it', async () => {
  const state = tmp('ls-state-');
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const config = { live: { base_url: emu.url }, state: { dir: state } };
  const d1 = await DaemonProcess.start({ env: card.env, config });
  try {
    const muted = d1.waitState('muted');
    await d1.ctl('mute');
    await muted;
    assert.deepEqual(JSON.parse(readFileSync(join(state, 'state.json'), 'utf8')), { muted: true });
  } finally { await d1.stop(); }
  const d2 = await DaemonProcess.start({ env: card.env, config });
  try {
    const st = await d2.ctl('status');
    assert.equal(st.state, 'muted');
    assert.equal(st.capturePid, null);
    await sleep(500);
    assert.equal(d2.logs.filter((l) => l.msg === 'capture started (arecord)').length, 0, 'arecord was never started');
    const arecords = readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((p) => {
      try { return readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1].split(' ')[1] === String(d2.child.pid) && readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'arecord'; } catch { return false; }
    });
    assert.deepEqual(arecords, [], 'no arecord child of the daemon');
    const idle = d2.waitState('idle');
    await d2.ctl('unmute');
    await idle;
    await d2.waitLog((l) => l.msg === 'capture started (arecord)', 3000);
    assert.deepEqual(JSON.parse(readFileSync(join(state, 'state.json'), 'utf8')), { muted: false });
  } finally { await d2.stop(); await emu.close(); }
});

/** Why the daemon cannot be run as user nobody here, or false: root is needed, and a checkout nobody can read (not under /root). */
function asNobody(): string | false {
  if (process.getuid?.() !== 0) return 'needs root (to run the daemon as another user)';
  const r = spawnSync(process.execPath, ['-e', `require('fs').accessSync(${JSON.stringify(MAIN)}, require('fs').constants.R_OK)`], { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10000 });
  return r.status === 0 ? false : `the checkout is not readable by user nobody (${MAIN}), so the daemon cannot run as another user here`;
}

test('a key file the service user cannot read is a config error naming the setting and the file: exit 78, no crash', { skip: asNobody() }, () => {
  const dir = tmp('ls-key-');
  chmodSync(dir, 0o755);
  const key = join(dir, 'gemini-api-key');
  writeFileSync(key, 'not-a-real-key\n', { mode: 0o600 }); // root-only, as the README once said
  const cfg = join(dir, 'config.yaml');
  writeFileSync(cfg, stringify({ live: { api_key_file: key }, control: { socket: join(dir, 'c.sock') }, gpio: { enabled: false } }), { mode: 0o644 });
  const env = { ...card.env };
  delete env.GEMINI_API_KEY; delete env.GOOGLE_API_KEY;
  const r = spawnSync(process.execPath, [MAIN, '--config', cfg], { uid: 65534, gid: 65534, env, encoding: 'utf8', timeout: 15000 });
  assert.equal(r.status, 78, `exit ${r.status}: ${r.stderr}${r.stdout}`);
  const out = r.stderr + r.stdout;
  assert.match(out, new RegExp(`live.api_key_file: cannot read ${key} \\(EACCES\\) as user nobody: make it readable by the service`));
  assert.doesNotMatch(out, /not-a-real-key/);
});

// ---- the wall clock is not a clock

const FAKETIME = ['/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib/arm-linux-gnueabihf', '/usr/lib']
  .map((d) => join(d, 'faketime', 'libfaketime.so.1')).find((p) => existsSync(p));

test('the wall clock stepping back an hour mid-reply changes nothing: the whole reply plays and the follow-up window ends on time', { skip: FAKETIME ? false : 'libfaketime not installed (apt-get install faketime)' }, async () => {
  const dir = tmp('ls-faketime-');
  const offset = join(dir, 'offset');
  writeFileSync(offset, '+0\n');
  const env = { ...card.env, LD_PRELOAD: FAKETIME!, FAKETIME_TIMESTAMP_FILE: offset, FAKETIME_NO_CACHE: '1', FAKETIME_DONT_FAKE_MONOTONIC: '1' };
  const { emu, daemon, done } = await setup({}, {}, env);
  const sink = card.recordSpeaker();
  try {
    await sink.ready(); // parec is recording before the reply can start: under load its start-up took the head (120-140 ms of 200 heard)
    await daemon.pressAndWait('listening');
    const reply = Buffer.concat([tone(660, 200, 24000), tone(440, 2500, 24000), tone(880, 200, 24000)]);
    const sent = emu.sessions[0].sendAudio(reply, { speed: 1 }); // real time, so the step lands mid-playback
    const speaking = await daemon.waitState('speaking', 3000);
    await sleep(1000);
    writeFileSync(offset, '-1h\n'); // NTP steps the clock back an hour
    await sent;
    const followUp = await daemon.waitState('follow-up', 6000);
    const idle = await daemon.waitState('idle', 4000);
    const stepped = Date.parse(String(followUp.time)) - Date.parse(String(speaking.time));
    assert.ok(stepped < -3_000_000, `the log times went back an hour (${stepped} ms): the step happened`);
    assert.ok(Date.parse(String(idle.time)) - Date.parse(String(followUp.time)) >= 1900, 'the follow-up window lasted its 2 s');
    await sleep(300);
    const played = await sink.stop();
    const head = findTone(played, 660), body = findTone(played, 440), tail = findTone(played, 880);
    const player = () => JSON.stringify(daemon.logs.filter((l) => /ran dry|late|held back|device (opened|closed)|stopped taking/.test(l.msg)).map((l) => ({ t: l.time, msg: l.msg, lateMs: l.lateMs, writeMs: l.writeMs })));
    assert.ok(head.totalMs >= 160, `head ${head.totalMs} ms; the player said: ${player()}`);
    assert.ok(Math.abs(body.totalMs - 2500) <= 60, `body ${body.totalMs} of 2500 ms; the player said: ${player()}`);
    assert.ok(tail.totalMs >= 160, `tail ${tail.totalMs} of 200 ms; the player said: ${player()}`);
    assert.equal(daemon.logs.filter((l) => /playback did not report the end/.test(l.msg)).length, 0, 'the reply ended by itself');
  } finally { await sink.stop().catch(() => undefined); await done(); }
});

// ---- honest start-up

test('no sound card: READY comes after the bounded wait, with the microphone named on the status line; no privacy LED fitted is said', async () => {
  const dir = tmp('ls-nocard-');
  const sock = join(dir, 'notify.sock');
  const listener = await NotifyListener.start(sock);
  const env: NodeJS.ProcessEnv = { ...process.env, NOTIFY_SOCKET: sock };
  delete env.PULSE_SERVER;
  delete env.ALSA_CONFIG_PATH;
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const d = await DaemonProcess.start({ env, config: { live: { base_url: emu.url } } });
  try {
    const ready = await listener.waitFor((m) => m.includes('READY=1'), 10_000);
    assert.match(ready, /STATUS=degraded: microphone: /);
    assert.match((await d.ctl('status')).microphone, /^microphone: /);
    const led = d.logs.find((l) => /no listening \(privacy\) LED is fitted/.test(l.msg));
    assert.ok(led, 'the start-up log says the privacy light is missing');
  } finally { listener.stop(); await d.stop(); await emu.close(); }
});

// ---- doctor says the privacy light is missing

test('doctor: no listening LED fitted is reported as a missing privacy light', () => {
  const dir = tmp('ls-doctor-led-');
  const cfg = join(dir, 'config.yaml');
  mkdirSync(dir, { recursive: true });
  writeFileSync(cfg, stringify({ gpio: { leds: { listening: null } }, control: { socket: join(dir, 'c.sock') } }));
  const r = spawnSync(process.execPath, [MAIN, 'doctor', '--config', cfg], { env: card.env, encoding: 'utf8', timeout: 60000 });
  const line = r.stdout.split('\n').find((l) => /\]\s+privacy light\s/.test(l));
  assert.ok(line, `doctor lists the privacy light:\n${r.stdout}`);
  assert.match(line!, /^\[--\]\s+privacy light\s+missing: no listening LED is configured/);
});
