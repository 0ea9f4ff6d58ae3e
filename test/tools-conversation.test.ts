// end_conversation in the state machine, with the real dispatcher and fake
// audio/network ports: the conversation ends only once the goodbye's last
// sample has been heard (the player says so), a turn that ends with no audio
// keeps waiting for the goodbye, and talking over the goodbye cancels the end.
import { test, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Conversation } from '../src/conversation.js';
import type { LiveHandlers } from '../src/ports.js';
import { FAKE_OPTIONS } from './bench/fake-conversation.js';
import { createLogger } from '../src/log.js';
import { Timers } from '../src/timers.js';
import { ToolDispatcher, type ToolResponse } from '../src/tools/registry.js';
import { tone, silence } from '../src/audio/pcm.js';
import { Observer } from '../src/observe.js';

const cleanup: (() => void)[] = [];
afterEach(() => { for (const f of cleanup.splice(0)) f(); });

function harness() {
  const log = createLogger('silent');
  const dir = mkdtempSync(join(tmpdir(), 'tools-conv-'));
  let handlers: LiveHandlers | null = null;
  const responses: ToolResponse[] = [];
  const drains: (() => void)[] = [];
  const flushes = { n: 0 };
  const timers = new Timers({ dir, ringMaxMs: 1000 }, { start: () => undefined, stop: () => undefined }, log);
  let c: Conversation;
  const tools = new ToolDispatcher({ volume: { get: () => 100, set: () => undefined, max: 150 }, timers, endConversation: () => c.endAfterReply(), log }, [], log);
  c = new Conversation({ ...FAKE_OPTIONS, followUpMs: 60_000 }, {
    live: { connect: (h) => { handlers = h; return { sendAudio: () => undefined, close: () => undefined, sendToolResponse: (r) => responses.push(...r) }; } },
    player: { open: () => undefined, close: () => undefined, play: () => undefined, flush: () => { flushes.n++; drains.length = 0; }, finish: (done) => { drains.push(done); } },
    mic: { start: () => undefined, stop: () => undefined },
    indicator: { show: () => undefined, micLive: true },
    tools,
  }, log);
  cleanup.push(() => { c.shutdown(); timers.stop(); rmSync(dir, { recursive: true, force: true }); });
  c.press('ctl');
  handlers!.onOpen();
  c.micFrame(tone(300, 300, 16000));
  c.micFrame(silence(400, 16000));
  assert.equal(c.state, 'thinking');
  const answered = () => new Promise<void>((r) => setImmediate(r));
  return { c, h: () => handlers!, responses, drains, flushes, answered };
}

test('end_conversation: a turn with no audio keeps waiting; the goodbye plays, and only when its last sample is heard does the conversation end, without dropping what the device still holds', async () => {
  const { c, h, responses, drains, flushes, answered } = harness();
  h().onToolCall!([{ id: 'fc-1', name: 'end_conversation', args: {} }]);
  await answered();
  assert.deepEqual(responses.map((r) => r.id), ['fc-1']);
  h().onTurnComplete(); // the call's turn, with no audio: the goodbye is still to come
  assert.equal(c.inConversation, true);
  h().onAudio(Buffer.alloc(4800, 1));
  assert.equal(c.state, 'speaking');
  h().onTurnComplete();
  assert.equal(c.state, 'speaking', 'not ended while the goodbye is still playing');
  assert.equal(drains.length, 1);
  const flushed = flushes.n;
  drains[0](); // the player: its last sample has been heard
  assert.equal(c.state, 'idle');
  assert.equal(c.inConversation, false);
  // Heard by the player's timeline; a loaded sound server may still hold its last milliseconds: they play out.
  assert.equal(flushes.n, flushed, 'the player is not flushed at the end of a heard goodbye');
  c.press('ctl');
  h().onOpen();
  h().onAudio(Buffer.alloc(4800, 1));
  c.press('ctl'); // a press over a reply: that one is cut at once
  assert.equal(c.state, 'listening');
  assert.ok(flushes.n > flushed, 'a reply cut by a press is flushed');
});

test('end_conversation after the goodbye has already played (follow-up): the conversation ends at once, the mic is not held open for the window', async () => {
  const { c, h, drains, answered } = harness();
  h().onAudio(Buffer.alloc(4800, 1)); // "bye!"
  h().onTurnComplete();
  drains.at(-1)!(); // heard to its last sample
  assert.equal(c.state, 'follow-up');
  h().onToolCall!([{ id: 'fc-3', name: 'end_conversation', args: {} }]);
  await answered();
  assert.equal(c.state, 'idle', 'ended at once, not after follow_up_s');
  assert.equal(c.inConversation, false);
});

test('end_conversation in a follow-up after a turn with no audio still waits for the goodbye', async () => {
  const { c, h, drains, answered } = harness();
  h().onTurnComplete(); // a turn with no audio
  assert.equal(c.state, 'follow-up');
  h().onToolCall!([{ id: 'fc-4', name: 'end_conversation', args: {} }]);
  await answered();
  assert.equal(c.inConversation, true, 'no goodbye heard yet');
  h().onAudio(Buffer.alloc(4800, 1));
  h().onTurnComplete();
  drains.at(-1)!();
  assert.equal(c.state, 'idle');
});

test('a usageMetadata that arrives after the conversation ended still counts in the totals since start', () => {
  const { c, h } = harness();
  const observer = new Observer(c, createLogger('silent'), () => false);
  h().onUsage!({ promptTokenCount: 10, responseTokenCount: 5, totalTokenCount: 15 });
  c.end('test');
  assert.equal(c.inConversation, false);
  h().onUsage!({ promptTokenCount: 3, responseTokenCount: 4, totalTokenCount: 7 }); // the server's last count, after the close
  assert.equal(observer.usage.totalTokens, 22);
  assert.equal(observer.usage.promptTokens, 13);
  assert.equal(observer.usage.messages, 2);
});

test('end_conversation: a press over the goodbye cancels the end; the next reply leads to a follow-up, not to idle', async () => {
  const { c, h, drains, answered } = harness();
  h().onAudio(Buffer.alloc(4800, 1)); // goodbye spoken first, then the call
  h().onToolCall!([{ id: 'fc-2', name: 'end_conversation', args: {} }]);
  await answered();
  c.press('button');
  assert.equal(c.state, 'listening');
  h().onTurnComplete(); // the end of the cut reply
  c.micFrame(tone(300, 300, 16000));
  c.micFrame(silence(400, 16000));
  h().onAudio(Buffer.alloc(4800, 2));
  h().onTurnComplete();
  drains.at(-1)!();
  assert.equal(c.state, 'follow-up');
  assert.equal(c.inConversation, true);
});
