// Timers' scheduling logic with an injected clock: the monotonic deadline
// holds when NTP steps the wall clock, alarms follow the wall clock, saved
// timers come back after a restart with the time left re-derived, and one
// that fell due meanwhile rings once with a line saying so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Timers, nextOccurrence, type Clock, type Ringer, type TimerEntry } from '../src/timers.js';
import type { Logger } from '../src/log.js';

class FakeClock implements Clock {
  w: number; m = 1_000_000;
  private q: { at: number; fn: () => void; id: number }[] = [];
  private n = 0;
  constructor(wall: number) { this.w = wall; }
  wall = () => this.w;
  mono = () => this.m;
  setTimeout = (fn: () => void, ms: number) => { const id = ++this.n; this.q.push({ at: this.m + ms, fn, id }); return id; };
  clearTimeout = (id: unknown) => { this.q = this.q.filter((t) => t.id !== id); };
  /** Let `ms` pass on both clocks, running what falls due in order. */
  advance(ms: number): void {
    const end = this.m + ms;
    for (;;) {
      this.q.sort((a, b) => a.at - b.at);
      const t = this.q[0];
      if (!t || t.at > end) break;
      this.q.shift();
      this.w += t.at - this.m; this.m = t.at;
      t.fn();
    }
    this.w += end - this.m; this.m = end;
  }
  /** NTP sets the wall clock: the monotonic one does not move. */
  step(ms: number): void { this.w += ms; }
}

function fakeLog() {
  const lines: { level: string; msg: string; o: any }[] = [];
  const at = (level: string) => (o: any, msg?: string) => { lines.push({ level, msg: typeof o === 'string' ? o : msg ?? '', o }); };
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') } as unknown as Logger };
}

function fakeRinger() {
  const rings: { at: number; ids: string[]; once: boolean }[] = [];
  let clock: FakeClock;
  const r: Ringer & { rings: typeof rings; stops: number; bind(c: FakeClock): void } = {
    rings, stops: 0,
    bind(c) { clock = c; },
    start(entries: TimerEntry[], { once }) { rings.push({ at: clock.m, ids: entries.map((e) => e.id), once }); },
    stop() { r.stops++; },
  };
  return r;
}

function setup(dir: string, clock: FakeClock, ringMaxMs = 600_000) {
  const ringer = fakeRinger(); ringer.bind(clock);
  const { log, lines } = fakeLog();
  const timers = new Timers({ dir, ringMaxMs, clock, stepCheckMs: 1000 }, ringer, log);
  return { timers, ringer, lines };
}

test('a timer rings after its length on the monotonic clock, whatever NTP does to the wall clock meanwhile; its saved due time moves with the step', () => {
  const dir = mkdtempSync(join(tmpdir(), 'timers-'));
  try {
    const clock = new FakeClock(Date.UTC(2026, 10, 26, 12, 0, 0));
    const { timers, ringer } = setup(dir, clock);
    timers.start();
    const t0 = clock.m;
    timers.addTimer(60, 'tea');
    clock.advance(20_000);
    clock.step(3600_000); // NTP: an hour forward
    clock.advance(20_000);
    clock.step(-7200_000); // and two hours back
    clock.advance(19_000);
    assert.equal(ringer.rings.length, 0, 'not before 60 s have passed');
    const saved = JSON.parse(readFileSync(join(dir, 'timers.json'), 'utf8'));
    assert.equal(saved.timers[0].dueAt, clock.w + 1000, 'the stored wall-clock due time follows the steps (1 s left)');
    clock.advance(1_500);
    assert.equal(ringer.rings.length, 1);
    assert.ok(Math.abs(ringer.rings[0].at - t0 - 60_000) <= 1000, `rang ${ringer.rings[0].at - t0} ms after being set`);
    assert.equal(ringer.rings[0].once, false);
    assert.deepEqual(timers.list(), []);
    timers.stop();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('an alarm follows the wall clock: a step forward brings it nearer; ringing stops at the cap, or by a press', () => {
  const dir = mkdtempSync(join(tmpdir(), 'timers-'));
  const tz = process.env.TZ;
  process.env.TZ = 'UTC';
  try {
    const clock = new FakeClock(Date.UTC(2026, 10, 26, 6, 50, 0));
    const { timers, ringer } = setup(dir, clock, 30_000);
    timers.start();
    const a = timers.addAlarm('07:00', null);
    assert.equal(a.rings_at, '2026-11-26 07:00:00');
    assert.equal(a.remaining_s, 600);
    clock.advance(60_000);
    clock.step(300_000); // the clock was 5 minutes slow
    clock.advance(1_500); // the step is noticed
    assert.equal(timers.list()[0].remaining_s, Math.round(240 - 1.5), 'the alarm is re-derived from the wall clock');
    clock.advance(240_000);
    assert.equal(ringer.rings.length, 1, 'rang at 07:00 by the wall clock');
    assert.equal(timers.isRinging, true);
    clock.advance(30_500);
    assert.equal(timers.isRinging, false, 'stopped at the cap');
    assert.equal(ringer.stops, 1);
    timers.addTimer(5, null);
    clock.advance(6_000);
    assert.equal(timers.isRinging, true);
    assert.equal(timers.stopRinging('button'), true);
    assert.equal(timers.stopRinging('button'), false, 'a second press has nothing to stop');
    timers.stop();
  } finally { process.env.TZ = tz; if (tz === undefined) delete process.env.TZ; rmSync(dir, { recursive: true, force: true }); }
});

test('after a restart: the time left is re-derived from the saved wall-clock time; one that fell due while down rings once, with a log line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'timers-'));
  try {
    const clock = new FakeClock(Date.UTC(2026, 10, 26, 12, 0, 0));
    const a = setup(dir, clock);
    a.timers.start();
    a.timers.addTimer(120, 'eggs');
    a.timers.addTimer(600, 'bread');
    a.timers.stop();
    // Down for 5 minutes (a new process: a new monotonic origin).
    const later = new FakeClock(clock.w + 300_000);
    later.m = 42;
    const b = setup(dir, later);
    b.timers.start();
    assert.equal(b.ringer.rings.length, 1);
    assert.deepEqual(b.ringer.rings[0], { at: 42, ids: ['1'], once: true });
    const line = b.lines.find((l) => /fell due while the daemon was not running; ringing once/.test(l.msg));
    assert.ok(line, 'the log says the timer fell due while the daemon was down');
    assert.equal(line.o.timer, '1');
    assert.equal('label' in line.o, false, 'the label (what was said) is not in the journal unless log.transcripts');
    assert.equal(line.o.lateS, 180);
    assert.deepEqual(b.timers.list().map((t) => [t.id, t.label, t.remaining_s]), [['2', 'bread', 300]]);
    b.timers.rangOnce();
    assert.equal(b.timers.isRinging, false);
    later.advance(299_000);
    assert.equal(b.ringer.rings.length, 1);
    later.advance(2_000);
    assert.equal(b.ringer.rings.length, 2, 'bread rang 5 minutes after the restart (10 minutes after it was set)');
    // A third start finds nothing left: nothing rings twice.
    b.timers.stop();
    const c = setup(dir, new FakeClock(later.w + 1000));
    c.timers.start();
    assert.equal(c.ringer.rings.length, 0);
    c.timers.stop();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a Pi without a clock: timers restored at boot follow the wall clock when NTP steps it; one the step shows fell due while down rings once, with the log line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'timers-'));
  try {
    const clock = new FakeClock(Date.UTC(2026, 10, 26, 12, 0, 0));
    const a = setup(dir, clock);
    a.timers.start();
    a.timers.addTimer(600, 'pasta'); // due 12:10
    a.timers.addTimer(7200, 'bread'); // due 14:00
    a.timers.stop();
    // Power cut at 12:00; boot at 13:00 with the clock reading the last saved time (12:00) until NTP.
    const boot = new FakeClock(clock.w);
    boot.m = 7;
    const b = setup(dir, boot);
    b.timers.start();
    assert.equal(b.ringer.rings.length, 0, 'before NTP the saved times look not yet due');
    boot.advance(5_000);
    boot.step(3600_000); // NTP: the real time is 13:00
    boot.advance(1_500); // the step is noticed
    assert.equal(b.ringer.rings.length, 1, 'pasta fell due at 12:10, while the Pi was off');
    assert.equal(b.ringer.rings[0].once, true, 'it rings once, not a full ringing');
    assert.deepEqual(b.ringer.rings[0].ids, ['1']);
    const line = b.lines.find((l) => /fell due while the daemon was not running; ringing once/.test(l.msg));
    assert.ok(line, 'the log says it fell due while the daemon was down');
    assert.equal(line.o.timer, '1');
    b.timers.rangOnce();
    const left = b.timers.list();
    assert.deepEqual(left.map((t) => t.id), ['2']);
    assert.ok(Math.abs(left[0].remaining_s - 3600) <= 7, `bread rings at 14:00 by the corrected clock (${left[0].remaining_s} s left)`);
    const saved = JSON.parse(readFileSync(join(dir, 'timers.json'), 'utf8'));
    assert.equal(saved.timers[0].dueAt, Date.UTC(2026, 10, 26, 14, 0, 0), 'its stored due time is not pushed by the step');
    boot.advance(3600_000);
    assert.equal(b.ringer.rings.length, 2);
    assert.equal(b.ringer.rings[1].once, false);
    // A timer set after the step still keeps its length whatever the clock does.
    b.timers.stopRinging('test');
    const t0 = boot.m;
    b.timers.addTimer(60, 'tea');
    boot.advance(10_000);
    boot.step(-1800_000);
    boot.advance(49_000);
    assert.equal(b.ringer.rings.length, 2);
    boot.advance(2_000);
    assert.equal(b.ringer.rings.length, 3);
    assert.ok(b.ringer.rings[2].at - t0 >= 60_000);
    b.timers.stop();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('set_alarm: the next HH:MM in the local time zone, across a daylight-saving change', () => {
  const tz = process.env.TZ;
  try {
    process.env.TZ = 'Europe/Berlin';
    // 28 March 2026, 22:00 CET (UTC+1); clocks go forward at 02:00 on the 29th.
    const now = Date.UTC(2026, 2, 28, 21, 0);
    assert.equal(nextOccurrence('07:00', now), Date.UTC(2026, 2, 29, 5, 0), '07:00 CEST is 05:00 UTC');
    assert.equal(nextOccurrence('23:15', now), Date.UTC(2026, 2, 28, 22, 15), 'later today');
    assert.equal(nextOccurrence('22:00', now), Date.UTC(2026, 2, 29, 20, 0), 'now is not the next occurrence: tomorrow (CEST)');
    process.env.TZ = 'America/New_York';
    assert.equal(nextOccurrence('7:05', Date.UTC(2026, 10, 26, 13, 0)), Date.UTC(2026, 10, 27, 12, 5), '08:00 EST now: 07:05 tomorrow');
    assert.throws(() => nextOccurrence('25:00', now), /HH:MM/);
    assert.throws(() => nextOccurrence('seven', now), /HH:MM/);
  } finally { process.env.TZ = tz; if (tz === undefined) delete process.env.TZ; }
});
