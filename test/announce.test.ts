// The announcement queue (src/announce.ts, issue 24) on a fake Speaker port:
// order, priority, the cap, and what becomes of one that cannot be said
// (held, tried again, then given up). The session itself is the
// conversation's (test/mqtt.test.ts runs it end to end).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { AnnounceQueue, type SayReport } from '../src/announce.js';
import type { Speaker, SpokenOutcome, State } from '../src/ports.js';
import { fakeLog } from './bench/util.js';

class FakeSpeaker extends EventEmitter implements Speaker {
  state: State = 'idle';
  inConversation = false;
  muted = false;
  said: { id: number; text: string; listen: boolean }[] = [];
  speak(id: number, text: string, listen: boolean): boolean {
    this.said.push({ id, text, listen });
    this.inConversation = true;
    this.state = 'connecting';
    return true;
  }
  ended: string[] = [];
  end(reason: string): void { this.ended.push(reason); }
  /** The session for `id` ended with `outcome`; the speaker is idle (or in error) again. */
  finish(id: number, outcome: SpokenOutcome, detail = ''): void {
    this.inConversation = false;
    this.state = outcome === 'failed' ? 'error' : 'idle';
    this.emit('spoken', id, outcome, detail);
    this.emit('state', this.state, 'speaking');
  }
}

const tick = () => sleep(5);

test('announcements are said one at a time, in order; a priority one goes before the others waiting; one more than the cap is refused', async () => {
  const sp = new FakeSpeaker();
  const q = new AnnounceQueue(sp, fakeLog().log, 3, []);
  q.add({ kind: 'announce', text: 'one', from: 'ctl' });
  await tick();
  q.add({ kind: 'announce', text: 'two', from: 'ctl' });
  q.add({ kind: 'ask', text: 'three?', from: 'mqtt' });
  q.add({ kind: 'announce', text: 'urgent', priority: true, from: 'mqtt' });
  assert.throws(() => q.add({ kind: 'announce', text: 'five', from: 'ctl' }), /3 announcements are already waiting/);
  for (let i = 0; i < 4; i++) { await tick(); sp.finish(sp.said.at(-1)!.id, 'spoken'); }
  assert.deepEqual(sp.said.map((s) => [s.text, s.listen]), [['one', false], ['urgent', false], ['two', false], ['three?', true]]);
});

test('one that cannot be said is held and tried again after each wait (the others wait behind it), then given up with the reason; stop drops a held one', async () => {
  const sp = new FakeSpeaker();
  const reports: SayReport[] = [];
  const q = new AnnounceQueue(sp, fakeLog().log, 16, [60, 120]);
  q.on('report', (r: SayReport) => reports.push(r));
  const a = q.add({ kind: 'announce', text: 'the washing is done', from: 'mqtt' });
  q.add({ kind: 'announce', text: 'next', from: 'mqtt' });
  await tick();
  sp.finish(a.id, 'failed', 'cannot connect');
  assert.match(reports.at(-1)!.detail, /^cannot connect; trying again in 0 s \(try 1 of 3\)$/);
  assert.ok(q.status.retryInS !== null && q.status.waiting === 2, JSON.stringify(q.status));
  await sleep(30);
  assert.equal(sp.said.length, 1, 'held: nothing said during the wait');
  await sleep(60);
  assert.deepEqual(sp.said.map((s) => s.text), ['the washing is done', 'the washing is done'], 'the same one again, before the next');
  sp.finish(a.id, 'failed', 'cannot connect');
  await sleep(60);
  assert.equal(sp.said.length, 2, 'the second wait is longer');
  await sleep(100);
  assert.equal(sp.said.length, 3);
  sp.finish(a.id, 'failed', 'cannot connect');
  assert.deepEqual({ outcome: reports.at(-1)!.outcome, detail: reports.at(-1)!.detail }, { outcome: 'failed', detail: 'cannot connect; given up after 3 tries' });
  await tick();
  assert.deepEqual(sp.said.map((s) => s.text).slice(3), ['next'], 'then the next one');
  sp.finish(sp.said.at(-1)!.id, 'failed', 'cannot connect');
  assert.equal(q.status.waiting, 1);
  assert.equal(q.clear('stopped by ctl'), 1, 'stop drops the held one');
  assert.equal(q.status.retryInS, null);
  await sleep(100);
  assert.equal(sp.said.length, 4, 'nothing tried after stop');
  assert.deepEqual(reports.at(-1)!.outcome, 'dropped');
});

test('a conversation during the hold is left alone; the held one is said once the wait is over and no conversation is open', async () => {
  const sp = new FakeSpeaker();
  const q = new AnnounceQueue(sp, fakeLog().log, 16, [40]);
  const a = q.add({ kind: 'announce', text: 'door open', from: 'mqtt' });
  await tick();
  sp.finish(a.id, 'failed', 'no network');
  sp.inConversation = true; // the user pressed meanwhile
  sp.state = 'listening';
  await sleep(80);
  assert.equal(sp.said.length, 1, 'not over a conversation');
  sp.inConversation = false;
  sp.state = 'idle';
  sp.emit('state', 'idle', 'follow-up');
  await tick();
  assert.equal(sp.said.length, 2);
});

test('during a conversation an announcement waits; a priority one ends the conversation (not an announcement being said) and goes first', async () => {
  const sp = new FakeSpeaker();
  const q = new AnnounceQueue(sp, fakeLog().log, 16, []);
  sp.inConversation = true;
  sp.state = 'listening';
  q.add({ kind: 'announce', text: 'later', from: 'mqtt' });
  await tick();
  assert.deepEqual([sp.said.length, sp.ended.length], [0, 0], 'waits; the conversation goes on');
  q.add({ kind: 'announce', text: 'smoke alarm', priority: true, from: 'mqtt' });
  assert.deepEqual(sp.ended, ['interrupted by a priority announce']);
  sp.inConversation = false;
  sp.state = 'idle';
  sp.emit('state', 'idle', 'listening');
  await tick();
  assert.deepEqual(sp.said.map((x) => x.text), ['smoke alarm']);
  q.add({ kind: 'announce', text: 'also urgent', priority: true, from: 'mqtt' });
  assert.equal(sp.ended.length, 1, 'an announcement being said is not ended by another');
  sp.finish(sp.said[0].id, 'spoken');
  await tick();
  sp.finish(sp.said[1].id, 'spoken');
  await tick();
  assert.deepEqual(sp.said.map((x) => x.text), ['smoke alarm', 'also urgent', 'later']);
});
