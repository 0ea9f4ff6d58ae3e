// The logic behind the narrow interfaces, with fakes only where hardware
// does not exist here (GPIO lines) or where a test must control time.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseConfig, ConfigSchema, readApiKey, ConfigError } from '../src/config.js';
import { PrerollBuffer } from '../src/audio/preroll.js';
import { Button } from '../src/gpio/button.js';
import { sysfsNumber, onoffBackend, GpioUnavailable } from '../src/gpio/gpio.js';
import { Leds, PATTERNS } from '../src/leds/leds.js';
import { Conversation } from '../src/conversation.js';
import { STREAMING_STATES, type LiveHandlers, type State } from '../src/ports.js';
import { createLogger } from '../src/log.js';
import { tone, silence } from '../src/audio/pcm.js';

test('config: an empty file gives the documented defaults', () => {
  const c = parseConfig({}, null);
  assert.equal(c.audio.capture_device, 'default');
  assert.equal(c.gpio.button.pin, 17);
  assert.equal(c.conversation.follow_up_s, 8);
  assert.equal(c.control.socket, '/run/live-speaker/control.sock');
});

test('config: every wrong key and type is named, with the file', () => {
  assert.throws(() => parseConfig({ live: { modle: 'x' }, gpio: { leds: { listening: { pin: 99 } } } }, '/etc/live-speaker/config.yaml'), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /^invalid config in \/etc\/live-speaker\/config\.yaml: /);
    assert.match(e.message, /unknown key 'live\.modle'/);
    assert.match(e.message, /'gpio\.leds\.listening\.pin': /);
    return true;
  });
  // A playback lead under 100 ms cannot work: audio is only written behind 50 ms queued, and a reply would never finish.
  assert.throws(() => parseConfig({ audio: { playback_lead_ms: 60 } }, '/etc/live-speaker/config.yaml'), /'audio\.playback_lead_ms': .*100/);
  assert.equal(parseConfig({ audio: { playback_lead_ms: 100 } }, null).audio.playback_lead_ms, 100);
});

test('config: the shipped config.yaml is valid and matches the schema defaults', async () => {
  const { loadConfig } = await import('../src/config.js');
  const { config } = loadConfig(new URL('../../config.yaml', import.meta.url).pathname);
  assert.deepEqual(config, ConfigSchema.parse({}));
});

test('config: API key from the environment first, then the key file; a missing key file is an error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-key-'));
  writeFileSync(join(dir, 'key'), '  file-key\n', { mode: 0o600 });
  const c = parseConfig({ live: { api_key_file: join(dir, 'key') } }, null);
  assert.deepEqual(readApiKey(c, { GEMINI_API_KEY: 'env-key' }), { key: 'env-key', source: 'GEMINI_API_KEY' });
  assert.deepEqual(readApiKey(c, { GOOGLE_API_KEY: 'g' }), { key: 'g', source: 'GOOGLE_API_KEY' });
  assert.deepEqual(readApiKey(c, {}), { key: 'file-key', source: join(dir, 'key') });
  writeFileSync(join(dir, 'gemini-api-key'), 'cred-key');
  assert.equal(readApiKey(parseConfig({}, null), { CREDENTIALS_DIRECTORY: dir }).key, 'cred-key');
  assert.throws(() => readApiKey(parseConfig({ live: { api_key_file: join(dir, 'nope') } }, null), {}), /live\.api_key_file: .*nope does not exist/);
});

test('pre-roll keeps exactly the last N ms, across frame boundaries', () => {
  const p = new PrerollBuffer(16000, 100); // 3200 bytes
  const frames = Array.from({ length: 10 }, (_, i) => Buffer.alloc(1000, i));
  for (const f of frames) p.push(f);
  const got = Buffer.concat(p.drain());
  assert.equal(got.length, 3200);
  assert.deepEqual(got, Buffer.concat(frames).subarray(10000 - 3200));
  assert.equal(p.size, 0);
});

function fakeLine() {
  let cb: (active: boolean) => void = () => undefined;
  return { line: { onChange: (f: (a: boolean) => void) => { cb = f; }, release: () => undefined }, set: (v: boolean) => cb(v) };
}

test('button: short press, long press fires while held, bounce ignored', async () => {
  const { line, set } = fakeLine();
  const b = new Button(line, 80);
  const events: string[] = [];
  b.on('press', () => events.push('press'));
  b.on('long-press', () => events.push('long'));
  set(true); set(true); await sleep(10); set(false); set(false);
  assert.deepEqual(events, ['press']);
  set(true); await sleep(120);
  assert.deepEqual(events, ['press', 'long'], 'long press reported while still held');
  set(false);
  assert.deepEqual(events, ['press', 'long'], 'no short press after a long one');
  b.release();
});

test('gpio: BCM numbers are translated by the SoC gpiochip base (kernel >= 6.6), else used as they are', () => {
  const root = mkdtempSync(join(tmpdir(), 'ls-sysfs-'));
  const chip = (name: string, label: string, base: number, ngpio: number) => {
    mkdirSync(join(root, name));
    writeFileSync(join(root, name, 'label'), `${label}\n`);
    writeFileSync(join(root, name, 'base'), `${base}\n`);
    writeFileSync(join(root, name, 'ngpio'), `${ngpio}\n`);
  };
  assert.equal(sysfsNumber(17, root), 17);
  chip('gpiochip504', 'raspberrypi-exp-gpio', 504, 8);
  chip('gpiochip512', 'pinctrl-bcm2711', 512, 58);
  assert.equal(sysfsNumber(17, root), 529);
  assert.throws(() => sysfsNumber(60, root), /BCM 60 is not a line of pinctrl-bcm2711/);
  const pi5 = mkdtempSync(join(tmpdir(), 'ls-sysfs5-'));
  mkdirSync(join(pi5, 'gpiochip571'));
  writeFileSync(join(pi5, 'gpiochip571', 'label'), 'pinctrl-rp1\n');
  writeFileSync(join(pi5, 'gpiochip571', 'base'), '571\n');
  writeFileSync(join(pi5, 'gpiochip571', 'ngpio'), '54\n');
  assert.equal(sysfsNumber(17, pi5), 588);
});

test('gpio: on a machine without sysfs GPIO the real onoff backend says why', async () => {
  await assert.rejects(onoffBackend('/nonexistent/gpio'), (e: Error) => {
    assert.ok(e instanceof GpioUnavailable);
    assert.match(e.message, /no sysfs GPIO at \/nonexistent\/gpio/);
    return true;
  });
});

test('leds: the listening (privacy) LED is on in every streaming state and off otherwise; patterns are distinct', () => {
  const seen: Record<string, boolean> = {};
  const leds = new Leds({ listening: { set: (on) => { seen.listening = on; }, get: () => seen.listening ?? false, release: () => undefined } });
  for (const s of Object.keys(PATTERNS) as State[]) {
    leds.show(s);
    const expectOn = STREAMING_STATES.has(s) || s === 'connecting';
    assert.equal(leds.micLive, expectOn, `micLive in ${s}`);
    assert.equal(seen.listening ?? false, expectOn, `the LED line in ${s}`);
  }
  const shapes = new Set(Object.values(PATTERNS).map((p) => JSON.stringify(p)));
  assert.equal(shapes.size, Object.keys(PATTERNS).length, 'every state looks different');
  leds.release();
});

// A conversation with fake ports, to pin the rules that need no audio device. Each is shut down at the end (its
// timers, up to maxConversationMs, would otherwise hold the test process open for a minute).
const harnessed: Conversation[] = [];
after(() => { for (const c of harnessed) c.shutdown(); });
function harness(over: Partial<ConstructorParameters<typeof Conversation>[0]> = {}) {
  const sent: Buffer[] = [];
  const calls: string[] = [];
  let handlers: LiveHandlers | null = null;
  const leds = new Leds({});
  const c = new Conversation({
    rate: 16000, prerollMs: 200, vadThresholdDbfs: -45, endOfSpeechMs: 300,
    noSpeechTimeoutMs: 5000, followUpMs: 5000, maxConversationMs: 60000, errorDisplayMs: 50,
    trimWakeWord: true, wakeBeforeMs: 0, wakeSound: null, errorSound: null, chimeGateMs: 0, resumeWithinMs: 0, ...over,
  }, {
    live: { connect: (h) => { handlers = h; calls.push('connect'); return { sendAudio: (b) => sent.push(b), close: () => calls.push('close') }; } },
    player: { open: () => undefined, close: () => undefined, play: () => calls.push('play'), flush: () => calls.push('flush'), finish: (done) => { calls.push('finish'); done(); } },
    mic: { start: () => calls.push('mic-start'), stop: () => calls.push('mic-stop') },
    indicator: leds,
  }, createLogger('silent'));
  harnessed.push(c);
  return { c, sent, calls, leds, h: () => handlers! };
}

test('conversation: pre-roll then live audio are sent in order once the session is up, never before', () => {
  const { c, sent, h } = harness();
  const f = (n: number) => Buffer.alloc(640, n);
  for (let i = 0; i < 20; i++) c.micFrame(f(i)); // idle: kept locally (last 200 ms = 10 frames)
  assert.equal(sent.length, 0);
  c.press('ctl');
  c.micFrame(f(20)); c.micFrame(f(21)); // connecting: held
  assert.equal(sent.length, 0, 'nothing leaves before setupComplete');
  h().onOpen();
  c.micFrame(f(22));
  assert.deepEqual(sent.map((b) => b[0]), [10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22]);
});

test('conversation: refuses to send audio if the privacy LED is not on', () => {
  const { c, sent, h, leds } = harness();
  c.press('ctl');
  h().onOpen();
  (leds as unknown as { lit: { listening: boolean } }).lit.listening = false; // a broken indicator
  c.micFrame(Buffer.alloc(640));
  assert.equal(sent.length, 0);
});

test('conversation: press barge-in drops the rest of the cut turn, the next turn plays', () => {
  const { c, calls, h } = harness();
  c.press('ctl');
  h().onOpen();
  h().onAudio(Buffer.alloc(960));
  assert.equal(c.state, 'speaking');
  c.press('button');
  assert.equal(c.state, 'listening');
  assert.equal(calls.filter((x) => x === 'flush').length, 1);
  const plays = calls.filter((x) => x === 'play').length;
  h().onAudio(Buffer.alloc(960)); // the rest of the old turn
  assert.equal(calls.filter((x) => x === 'play').length, plays, 'old turn audio dropped');
  h().onTurnComplete(); // end of the cut turn
  assert.equal(c.state, 'listening');
  h().onAudio(Buffer.alloc(960)); // the new turn
  assert.equal(c.state, 'speaking');
  assert.equal(c.counters.bargeIns, 1);
});

test('conversation: speech during follow-up goes back to listening; silence ends it', async () => {
  const { c, calls, h } = harness({ followUpMs: 100 });
  c.press('ctl');
  h().onOpen();
  h().onAudio(Buffer.alloc(960));
  h().onTurnComplete();
  assert.equal(c.state, 'follow-up');
  c.micFrame(tone(300, 200, 16000));
  assert.equal(c.state, 'listening');
  c.micFrame(silence(400, 16000));
  assert.equal(c.state, 'thinking');
  h().onAudio(Buffer.alloc(960));
  h().onTurnComplete();
  await sleep(150);
  assert.equal(c.state, 'idle');
  assert.ok(calls.includes('close'));
});

test('conversation: a failed session shows error, then idle; a press from error starts again', async () => {
  const { c, h } = harness();
  c.press('ctl');
  h().onClose({ code: 1011, reason: 'Internal error' });
  assert.equal(c.state, 'error');
  assert.equal(c.lastError?.message, 'session closed: Internal error (code 1011)');
  await sleep(80);
  assert.equal(c.state, 'idle');
  c.press('ctl');
  assert.equal(c.state, 'connecting');
});

test('conversation: callbacks from an old session cannot touch the new one', () => {
  const { c, h } = harness();
  c.press('ctl');
  const old = h();
  c.press('ctl'); // cancel while connecting
  c.press('ctl'); // a new conversation
  old.onOpen();
  old.onClose({ reason: 'late' });
  assert.equal(c.state, 'connecting');
  assert.equal(c.lastError, null);
});

test('conversation (issue 24): a muted speaker saying an announcement keeps the muted LED on and the listening (privacy) LED off from start to end, micLive false; `mute` again does not cut it; the microphone is never started', () => {
  const { c, calls, leds, h } = harness();
  c.mute();
  const seen: string[] = [];
  c.on('state', (s: State) => { const l = leds.snapshot(); seen.push(`${s} listening=${l.listening} muted=${l.muted} micLive=${leds.micLive}`); });
  assert.equal(c.speak(1, 'The washing machine is done.', false), true);
  h().onOpen();
  h().onAudio(Buffer.alloc(960));
  c.mute(); // an automation sets Mute ON again
  assert.equal(c.state, 'speaking', 'mute while already muted does not cut the announcement');
  h().onTurnComplete(); // the player drains at once here: said to its end
  assert.equal(c.state, 'muted');
  assert.deepEqual(seen, ['connecting', 'thinking', 'speaking', 'muted'].map((s) => `${s} listening=off muted=on micLive=false`));
  assert.ok(!calls.includes('mic-start'), 'the microphone was never started');
  leds.release();
});

test('conversation (issue 24): a long press (toggle) while a muted speaker says an announcement unmutes it: the LEDs show the state again, the microphone starts, and it is idle afterwards', () => {
  const { c, calls, leds, h } = harness();
  c.mute();
  c.speak(1, 'Dinner is ready.', false);
  h().onOpen();
  h().onAudio(Buffer.alloc(960));
  assert.equal(leds.snapshot().muted, 'on');
  c.toggleMute();
  assert.equal(c.muted, false);
  assert.equal(c.state, 'speaking', 'the announcement goes on');
  assert.equal(leds.snapshot().muted, 'off');
  assert.equal(leds.snapshot().listening, 'on');
  assert.equal(calls.filter((x) => x === 'mic-start').length, 1);
  h().onTurnComplete();
  assert.equal(c.state, 'idle');
  leds.release();
});

test('conversation: never stuck speaking: if the player never reports the end of a reply, it moves on', async () => {
  const sent: string[] = [];
  const leds = new Leds({});
  const c = new Conversation({
    rate: 16000, prerollMs: 0, vadThresholdDbfs: -45, endOfSpeechMs: 300, noSpeechTimeoutMs: 5000, followUpMs: 5000,
    maxConversationMs: 60000, errorDisplayMs: 50, trimWakeWord: true, wakeBeforeMs: 0, wakeSound: null, errorSound: null, chimeGateMs: 0, resumeWithinMs: 0,
  }, {
    live: { connect: (h) => { queueMicrotask(() => h.onOpen()); (c as any)._h = h; return { sendAudio: () => undefined, close: () => sent.push('close') }; } },
    player: { open: () => undefined, close: () => undefined, play: () => undefined, flush: () => sent.push('flush'), finish: () => undefined /* never drains */ },
    mic: { start: () => undefined, stop: () => undefined },
    indicator: leds,
  }, createLogger('silent'));
  harnessed.push(c);
  c.press('ctl');
  await sleep(5);
  const h = (c as any)._h as LiveHandlers;
  h.onAudio(Buffer.alloc(4800)); // 100 ms
  h.onTurnComplete();
  assert.equal(c.state, 'speaking');
  await sleep(3300);
  assert.equal(c.state, 'follow-up');
  c.end('test');
});
