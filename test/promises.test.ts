// The rules behind promises the README and docs/ make, pinned on the conversation and
// the LEDs with fake ports (GPIO lines do not exist here; the rest of these
// promises are tested through the real daemon in promises-daemon.test.ts).
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { Leds } from '../src/leds/leds.js';
import { HELD_AUDIO_MAX_MS, type Conversation } from '../src/conversation.js';
import { fakeConversation } from './bench/fake-conversation.js';
import type { OutputLine } from '../src/gpio/gpio.js';
import { createLogger } from '../src/log.js';
import { tone, silence } from '../src/audio/pcm.js';
import { isSdkFrameParseError } from '../src/live/gemini.js';

function harness(lines: ConstructorParameters<typeof Leds>[0] = {}) {
  const warnings: string[] = [];
  const leds = new Leds(lines);
  const log = createLogger('silent');
  log.warn = ((a: unknown, b?: string) => { warnings.push(typeof a === 'string' ? a : b ?? ''); }) as typeof log.warn;
  const t = { ...fakeConversation(leds, log), warnings, leds };
  all.push(t.c);
  return t;
}
const all: Conversation[] = [];
afterEach(() => { for (const c of all.splice(0)) c.shutdown(); });

test('held audio while connecting is capped at HELD_AUDIO_MAX_MS: the newest is kept, in order, and the cap is logged once', () => {
  const { c, sent, h, warnings } = harness();
  c.press('ctl');
  const frameMs = 20;
  const frames = (HELD_AUDIO_MAX_MS + 5000) / frameMs; // 20 s held against a 15 s cap
  for (let i = 0; i < frames; i++) { const f = Buffer.alloc(640); f.writeUInt32LE(i, 0); c.micFrame(f); }
  assert.equal(warnings.filter((w) => /holding only the newest 15 s/.test(w)).length, 1, 'the cap is logged once');
  h().onOpen();
  const total = sent.reduce((n, b) => n + b.length, 0);
  assert.equal(total, (16000 * HELD_AUDIO_MAX_MS / 1000) * 2, 'exactly the cap was sent');
  const ids = sent.map((b) => b.readUInt32LE(0));
  assert.equal(ids[0], frames - HELD_AUDIO_MAX_MS / frameMs, 'the oldest were dropped');
  assert.deepEqual(ids, ids.map((_, i) => ids[0] + i), 'in order, none missing');
});

test('a press while thinking drops the reply still to come; the reply to the next question plays', () => {
  const { c, h, played } = harness();
  c.press('ctl');
  h().onOpen();
  c.micFrame(tone(300, 300, 16000));
  c.micFrame(silence(400, 16000));
  assert.equal(c.state, 'thinking');
  c.press('button');
  assert.equal(c.state, 'listening');
  h().onAudio(Buffer.alloc(960, 1)); // the reply to the question the press cut
  h().onTurnComplete();
  assert.equal(played.length, 0, 'none of the cut reply is played');
  assert.equal(c.state, 'listening');
  c.micFrame(tone(300, 300, 16000)); // a new question
  c.micFrame(silence(400, 16000));
  h().onAudio(Buffer.alloc(960, 2));
  assert.equal(played.length, 1, 'the next reply plays');
  assert.equal(c.state, 'speaking');
});

test('a press while thinking, when no reply was coming: the next question is answered all the same', () => {
  const { c, h, played } = harness();
  c.press('ctl');
  h().onOpen();
  c.micFrame(tone(300, 300, 16000));
  c.micFrame(silence(400, 16000));
  c.press('button'); // the server never answered that one
  c.micFrame(tone(300, 300, 16000));
  c.micFrame(silence(400, 16000));
  h().onAudio(Buffer.alloc(960, 2));
  assert.equal(played.length, 1);
});

/** A GPIO line as the LED code sees it; `stuck` lines ignore writes, `broken` ones throw. */
function line(mode: 'ok' | 'stuck' | 'broken'): OutputLine & { level: boolean } {
  const l = {
    level: false,
    set(on: boolean) { if (mode === 'broken') throw new Error('EIO'); if (mode === 'ok') l.level = on; },
    get() { return l.level; },
    release() { /* nothing */ },
  };
  return l;
}

for (const mode of ['stuck', 'broken'] as const) {
  test(`privacy: a listening LED that is not lit (${mode === 'stuck' ? 'reads back off' : 'write fails'}) stops the stream before any audio leaves, and shows the error`, () => {
    const { c, sent, h, leds } = harness({ listening: line(mode) });
    c.press('ctl');
    h().onOpen();
    c.micFrame(Buffer.alloc(640, 1));
    assert.equal(sent.length, 0, 'no audio left');
    assert.equal(c.state, 'error');
    assert.match(c.lastError!.message, mode === 'stuck' ? /^privacy light: the listening LED line reads back off/ : /^privacy light: cannot set the listening LED: EIO/);
    assert.equal(leds.micLive, false);
  });
}

test('privacy: a working listening LED is read back on, and audio flows', () => {
  const l = line('ok');
  const { c, sent, h, leds } = harness({ listening: l });
  c.press('ctl');
  h().onOpen();
  c.micFrame(Buffer.alloc(640, 1));
  assert.equal(l.level, true);
  assert.equal(leds.micLive, true);
  assert.equal(sent.length, 1);
  c.end('test');
  assert.equal(l.level, false);
  assert.equal(leds.micLive, false);
});

test('only the SDK\'s own frame parse error counts as a malformed frame; any other rejection does not', () => {
  const parse = (() => { try { JSON.parse('not json {'); } catch (e) { return e as SyntaxError; } })()!;
  assert.equal(isSdkFrameParseError(parse), false, 'a SyntaxError from anywhere else is not the SDK\'s');
  const fromSdk = Object.assign(new SyntaxError('Unexpected token'), { stack: 'SyntaxError: Unexpected token\n    at JSON.parse (<anonymous>)\n    at handleWebSocketMessage (file:///x/node_modules/@google/genai/dist/node/index.mjs:14840:23)' });
  assert.equal(isSdkFrameParseError(fromSdk), true);
  assert.equal(isSdkFrameParseError(new Error('boom')), false);
  assert.equal(isSdkFrameParseError('a string'), false);
});
