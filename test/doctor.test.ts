// `live-speaker doctor` as a user runs it: the built command, real arecord and
// aplay on the simulated sound card, a real TCP connect to the loopback
// emulator as the Live endpoint.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { stringify } from 'yaml';
import { SoundCard } from './bench/soundcard.js';
import { MAIN, deepMerge } from './bench/daemon.js';
import { LiveEmulator } from '../src/emulator/emulator.js';

const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const BLACKHOLE = String.raw`
import socket, time
s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(0)
port = s.getsockname()[1]
fill = []
for i in range(3):
    c = socket.socket(); c.setblocking(False)
    try: c.connect(('127.0.0.1', port))
    except BlockingIOError: pass
    fill.append(c)
time.sleep(0.2)
print(port, flush=True)
time.sleep(60)
`;

let card: SoundCard;
let emu: LiveEmulator;
let dir: string;

before(async () => {
  card = await SoundCard.start();
  emu = await LiveEmulator.start({ mode: 'parrot' });
  dir = mkdtempSync(join(tmpdir(), 'ls-doctor-'));
});
after(async () => {
  await emu?.close();
  await card?.stop();
  rmSync(dir, { recursive: true, force: true });
});

let n = 0;
function doctor(config: Record<string, any> | string, env: NodeJS.ProcessEnv = {}): Promise<{ code: number; out: string }> {
  const file = join(dir, `config-${n++}.yaml`);
  const base = { live: { base_url: emu.url }, gpio: { enabled: false }, control: { socket: join(dir, 'control.sock') } };
  writeFileSync(file, typeof config === 'string' ? config : stringify(deepMerge(base, config)));
  const childEnv = { ...card.env, ...env };
  if (!('GEMINI_API_KEY' in env)) delete childEnv.GEMINI_API_KEY;
  if (!childEnv.PICOVOICE_ACCESS_KEY) delete childEnv.PICOVOICE_ACCESS_KEY;
  delete childEnv.GOOGLE_API_KEY;
  return new Promise((resolve) => {
    execFile(process.execPath, [MAIN, '--config', file, 'doctor'], { env: childEnv, timeout: 30000 }, (err, stdout, stderr) => {
      const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : -1) : 0;
      resolve({ code, out: String(stdout) + String(stderr) });
    });
  });
}

const line = (out: string, name: string) => out.split('\n').find((l) => new RegExp(`^\\[[^\\]]+\\]\\s+${name}\\s`).test(l)) ?? '';

test('doctor: all good on a working machine: exit 0, every check listed', async () => {
  const { code, out } = await doctor({});
  assert.equal(code, 0, out);
  assert.match(line(out, 'config'), /^\[ok\]/);
  assert.match(line(out, 'microphone'), /^\[ok\].*default: 0\.2 s at 16000 Hz/);
  assert.match(line(out, 'speaker'), /^\[ok\].*24000 Hz/);
  assert.match(line(out, 'gpio'), /^\[--\].*disabled in config/);
  assert.match(line(out, 'API key'), /^\[--\].*live\.base_url is set/);
  assert.match(line(out, 'Live endpoint'), /^\[ok\].*127\.0\.0\.1:\d+ reachable \(TCP connect/);
  assert.match(line(out, 'wake word'), /^\[--\].*not configured/);
  assert.match(out, /All good\./);
});

test('doctor: a microphone that cannot open fails with the setting to change', async () => {
  const { code, out } = await doctor({ audio: { capture_device: 'no_such_pcm' } });
  assert.equal(code, 1, out);
  assert.match(line(out, 'microphone'), /^\[FAIL\].*arecord -D no_such_pcm/);
  assert.match(out, /fix: .*audio\.capture_device/);
  assert.match(line(out, 'speaker'), /^\[ok\]/, 'the other checks still run');
  assert.match(out, /1 problem to fix/);
});

test('doctor: a config error is the first failure, and the rest is checked with defaults', async () => {
  const { code, out } = await doctor('conversation:\n  follow_upp_s: 3\n');
  assert.equal(code, 1, out);
  assert.match(line(out, 'config'), /^\[FAIL\].*unknown key 'conversation\.follow_upp_s'/);
  // The defaults name ALSA's default devices, which this machine's simulated card provides.
  assert.match(line(out, 'microphone'), /^\[ok\].*default: 0\.2 s at 16000 Hz/);
  assert.match(line(out, 'speaker'), /^\[ok\].*24000 Hz/);
  assert.equal(out.split('\n').find((l) => l.startsWith('[FAIL]')), line(out, 'config'), 'the config is the first failure');
});

test('doctor: a key is reported present without ever being printed', async () => {
  const key = 'AIzaDoctorTestKey-0123456789abcdef';
  const { out } = await doctor({}, { GEMINI_API_KEY: key });
  assert.match(line(out, 'API key'), /^\[ok\].*present \(34 characters, from GEMINI_API_KEY\)/);
  assert.ok(!out.includes(key), 'the key is not in the output');
  assert.ok(!out.includes(key.slice(0, 12)), 'no part of the key either');
});

test('doctor: an endpoint that refuses the connection fails, with a hint', async () => {
  // A port that was just free: connection refused at once.
  const port = await new Promise<number>((res) => { const s = createServer(); s.listen(0, '127.0.0.1', () => { const p = (s.address() as any).port; s.close(() => res(p)); }); });
  const { code, out } = await doctor({ live: { base_url: `http://127.0.0.1:${port}` } });
  assert.equal(code, 1, out);
  assert.match(line(out, 'Live endpoint'), /^\[FAIL\].*ECONNREFUSED/);
  assert.match(out, /fix: is the endpoint in live\.base_url running\?/);
});

test('doctor: an endpoint that never answers fails at its 5 s bound, not later, with a hint', async () => {
  // A listening socket whose accept queue is full: the kernel drops further SYNs, so connect() hangs.
  const hole = spawn(PYTHON, ['-c', BLACKHOLE], { stdio: ['ignore', 'pipe', 'inherit'] });
  try {
    const port = await new Promise<number>((res, rej) => { hole.stdout!.once('data', (d) => res(Number(String(d).trim()))); hole.once('exit', (c) => rej(new Error(`blackhole exited ${c}`))); });
    const t0 = Date.now();
    const { code, out } = await doctor({ live: { base_url: `http://127.0.0.1:${port}` } });
    const took = Date.now() - t0;
    assert.equal(code, 1, out);
    assert.match(line(out, 'Live endpoint'), /^\[FAIL\].*no answer within 5 s/);
    assert.match(out, /fix: is the endpoint in live\.base_url running\?/);
    // The 5 s wait plus the other checks (under 2 s here); a doctor without its own bound would hang.
    assert.ok(took >= 5000 && took < 9000, `doctor took ${took} ms`);
  } finally { hole.kill(); }
});

test('doctor: a Porcupine wake word without an AccessKey is not armable, and says where the key goes', async () => {
  const { code, out } = await doctor({ wake: { engine: 'porcupine' } }, { PICOVOICE_ACCESS_KEY: '' });
  assert.equal(code, 1, out);
  assert.match(line(out, 'wake word'), /^\[FAIL\].*needs a Picovoice AccessKey/);
  assert.match(out, /fix: put it in \/etc\/live-speaker\/picovoice-access-key/);
});

test('doctor (issue 24): MQTT with a wrong password fails with the fix, never printing the password; the right one is ok; an unreadable password file is a failure naming the setting', async () => {
  const { Broker, freePort } = await import('./bench/mosquitto.js');
  const broker = await Broker.start(await freePort(), { speaker: 'right-pw-7d2a' });
  try {
    const pw = join(dir, 'mqtt-password');
    writeFileSync(pw, 'wrong-pw-7d2a\n');
    const bad = await doctor({ mqtt: { url: broker.url, username: 'speaker', password_file: pw } });
    assert.equal(bad.code, 1, bad.out);
    assert.match(line(bad.out, 'MQTT'), /^\[FAIL\].*wrong user name or password/);
    assert.match(bad.out, /fix: check mqtt\.username and the file in mqtt\.password_file/);
    assert.ok(!bad.out.includes('wrong-pw-7d2a'), 'the password is not printed');
    writeFileSync(pw, 'right-pw-7d2a\n');
    const good = await doctor({ mqtt: { url: broker.url, username: 'speaker', password_file: pw } });
    assert.match(line(good.out, 'MQTT'), /^\[ok\].*accepts user speaker/);
    const missing = await doctor({ mqtt: { url: broker.url, username: 'speaker', password_file: join(dir, 'no-such-file') } });
    assert.match(line(missing.out, 'MQTT'), /^\[FAIL\].*mqtt\.password_file: .*no-such-file does not exist/);
  } finally { await broker.stop(); }
});
