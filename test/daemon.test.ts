// The daemon as a process: config errors, reload, clean stop, secrets.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, writeFileSync, readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { SoundCard } from './bench/soundcard.js';
import { DaemonProcess, MAIN } from './bench/daemon.js';
import { LiveEmulator } from '../src/emulator/emulator.js';
import { checkMqttTlsFiles, ConfigError, parseConfig } from '../src/config.js';

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

test('a misspelt config key is named with its file, and the daemon exits 78 without starting', async () => {
  const d = await DaemonProcess.start({ env: card.env, rawConfig: 'audio:\n  capture_devic: hw:1\nconversation:\n  follow_up_s: soon\n', waitReady: false });
  const code = await d.exited;
  assert.equal(code, 78);
  assert.match(d.stderr, new RegExp(`invalid config in ${d.configFile.replace(/[/.]/g, '\\$&')}`));
  assert.match(d.stderr, /unknown key 'audio\.capture_devic'/);
  assert.match(d.stderr, /'conversation\.follow_up_s': .*expected number/);
  assert.equal(existsSync(d.socket), false, 'nothing was started');
  assert.equal(d.logs.length, 0);
  await d.stop();
});

test('broken YAML is reported with its line, exit 78', async () => {
  const d = await DaemonProcess.start({ env: card.env, rawConfig: 'audio:\n  capture_device: "hw:1\n  x: [\n', waitReady: false });
  assert.equal(await d.exited, 78);
  assert.match(d.stderr, /invalid YAML in .*config\.yaml at line \d+/);
  await d.stop();
});

test('a missing --config file is a clear error, exit 78', () => {
  const r = spawnSync(process.execPath, [MAIN, '--config', '/nonexistent/live-speaker.yaml'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 78);
  assert.match(r.stderr, /cannot read config file \/nonexistent\/live-speaker\.yaml: ENOENT/);
});

test('SIGHUP reloads the config and applies it; a bad config is refused and the old one kept', async () => {
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const d = await DaemonProcess.start({ env: card.env, config: { live: { base_url: emu.url }, conversation: { follow_up_s: 3 } } });
  try {
    const text = readFileSync(d.configFile, 'utf8');
    writeFileSync(d.configFile, text.replace('follow_up_s: 3', 'follow_up_s: 5'));
    d.child.kill('SIGHUP');
    await d.waitLog((l) => l.msg === 'config reloaded', 5000);
    assert.equal((await d.ctl('status')).config.conversation.follow_up_s, 5);

    writeFileSync(d.configFile, text.replace('follow_up_s: 3', 'follow_up_s: 5\n  folow_up: 2'));
    d.child.kill('SIGHUP');
    const refused = await d.waitLog((l) => /config reload refused/.test(l.msg), 5000);
    assert.match(String(refused.error), /unknown key 'conversation\.folow_up'/);
    const st = await d.ctl('status');
    assert.equal(st.config.conversation.follow_up_s, 5, 'the running config was kept');
    assert.equal(st.state, 'idle');
    await d.pressAndWait('listening', 5000);
  } finally { await d.stop(); await emu.close(); }
});

test('SIGTERM stops cleanly: session closed, socket removed, exit 0', async () => {
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const d = await DaemonProcess.start({ env: card.env, config: { live: { base_url: emu.url } } });
  await d.pressAndWait('listening', 5000);
  const code = await d.stop();
  assert.equal(code, 0);
  assert.ok(d.logs.some((l) => l.msg === 'stopped'));
  assert.equal(existsSync(d.socket), false);
  await emu.waitFor('close', undefined, 3000).catch(() => undefined);
  assert.equal(emu.sessions[0].closed, true, 'the Live session was closed');
  await emu.close();
});

test('the API key is never logged, and a rejected key shows as an error then idle', async () => {
  const secret = 'AIzaSy-test-secret-0123456789';
  const emu = await LiveEmulator.start({ mode: 'scripted', acceptKey: () => false });
  const d = await DaemonProcess.start({ env: { ...card.env, GEMINI_API_KEY: secret }, config: { live: { base_url: emu.url }, conversation: { error_display_s: 1 } } });
  try {
    await d.pressAndWait('error', 5000);
    const st = await d.ctl('status');
    assert.match(st.lastError.message, /API key not valid/);
    await d.waitState('idle', 3000);
  } finally { await d.stop(); await emu.close(); }
  const all = JSON.stringify(d.logs) + d.stderr;
  assert.ok(!all.includes(secret), 'the key does not appear in the logs');
  assert.ok(d.logs.some((l) => l.keySource === 'GEMINI_API_KEY'), 'the key source is named');
});

test('ctl against a daemon that is not running says so', () => {
  const r = spawnSync(process.execPath, [MAIN, 'ctl', 'status', '--socket', '/tmp/no-such-live-speaker.sock'], { encoding: 'utf8', timeout: 10000 });
  assert.equal(r.status, 1);
  assert.match(r.stderr, /cannot reach \/tmp\/no-such-live-speaker\.sock: ENOENT \(is live-speaker running\?\)/);
});

test('no sound card at all: the daemon keeps running, says the mic and speaker are missing, and a press shows the error', async () => {
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const env = { ...process.env };
  delete env.PULSE_SERVER;
  delete env.ALSA_CONFIG_PATH;
  const d = await DaemonProcess.start({ env, config: { live: { base_url: emu.url }, conversation: { error_display_s: 1 } } });
  try {
    const failed = await d.waitLog((l) => l.msg === 'microphone failed', 5000);
    assert.match(String(failed.reason), /arecord on 'default' stopped: .*retrying in/);
    await d.waitLog((l) => l.msg.startsWith('playback not available yet'), 10000);
    const st = await d.ctl('status');
    assert.match(st.microphone, /^microphone: arecord on 'default' stopped/);
    await d.pressAndWait('error', 3000);
    assert.equal(emu.connections, 0, 'no session is opened without a microphone');
    assert.match((await d.ctl('status')).lastError.message, /^microphone: /);
    await d.waitState('idle', 3000);
    assert.equal(d.exitCode, null, 'still running');
    assert.equal(d.logs.filter((l) => l.msg === 'microphone failed').length, 1, 'said once, not on every retry');
  } finally { await d.stop(); await emu.close(); }
});

test('a playback device that cannot be opened: the reply is dropped with a clear error, the conversation goes on', async () => {
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const d = await DaemonProcess.start({ env: card.env, config: { live: { base_url: emu.url }, audio: { playback_device: 'hw:CARD=NoSuchCard' } } });
  try {
    await d.pressAndWait('listening', 5000);
    void emu.sessions[0].sendAudio(Buffer.alloc(24000 * 2));
    const l = await d.waitLog((x) => x.msg === 'playback failed; reply dropped', 5000);
    assert.match(String(l.reason), /cannot play on ALSA device 'hw:CARD=NoSuchCard'/);
    assert.equal((await d.ctl('status')).state, 'listening');
    assert.equal(d.exitCode, null);
  } finally { await d.stop(); await emu.close(); }
});

test('ctl with a broken config still tries the default socket (status matters most then)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-ctl-'));
  writeFileSync(join(dir, 'config.yaml'), 'contrl: {}\n');
  const r = spawnSync(process.execPath, [MAIN, '--config', join(dir, 'config.yaml'), 'ctl', 'status'], { encoding: 'utf8', timeout: 10000 });
  assert.match(r.stderr, /unknown key 'contrl'/);
  assert.match(r.stderr, /trying the default socket \/run\/live-speaker\/control\.sock/);
  if (existsSync('/run/live-speaker/control.sock')) {
    // A live-speaker runs on this machine: the status came from it.
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /state/);
  } else {
    // It did try that socket: the connect itself failed there (not exit 78, the config error).
    assert.equal(r.status, 1);
    assert.match(r.stderr, /cannot reach \/run\/live-speaker\/control\.sock: ENOENT/);
  }
});

test('an mqtt.ca_file that does not exist is a config error naming the key and the file, exit 78, not a link retrying for ever (review of issue 24)', async () => {
  const missing = '/nonexistent/live-speaker-test/ca.pem';
  const d = await DaemonProcess.start({ env: card.env, config: { mqtt: { url: 'mqtts://127.0.0.1:1', ca_file: missing } }, waitReady: false });
  assert.equal(await d.exited, 78);
  assert.ok(d.logs.some((l) => l.level === 'fatal' && l.error === `mqtt.ca_file: ${missing} does not exist`), `the fatal line names the key and the file: ${JSON.stringify(d.logs.slice(-3))}`);
  await d.stop();
});

test('mqtt TLS files: a directory in place of a file is a config error naming the key, not a link retrying for ever', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-tls-'));
  try {
    assert.throws(() => checkMqttTlsFiles(parseConfig({ mqtt: { url: 'mqtts://127.0.0.1:1', cert_file: dir } }, null, [])), (e: Error) => e instanceof ConfigError && e.message.startsWith(`mqtt.cert_file: cannot read ${dir} (not a file)`));
    checkMqttTlsFiles(parseConfig({}, null, [])); // no mqtt block: nothing to check
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
