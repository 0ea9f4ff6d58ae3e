// Timers' scheduling logic with an injected clock: the monotonic deadline
// holds when NTP steps the wall clock, alarms follow the wall clock, saved
// timers come back after a restart with the time left re-derived, and one
// that fell due meanwhile rings once with a line saying so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Timers, nextOccurrence, type Ringer, type TimerEntry } from '../src/timers.js';
import { FakeClock, fakeLog } from './bench/util.js';
import { cancelTimer } from '../src/tools/cancel_timer.js';
import type { ToolServices } from '../src/tools/types.js';



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

test('a corrupt timers.json entry is dropped with a line naming it and why; the others are kept, the file as it was is kept as timers.json.bad, and new ids follow the restored ones', () => {
  const dir = mkdtempSync(join(tmpdir(), 'timers-'));
  try {
    const now = Date.UTC(2026, 10, 26, 12, 0, 0);
    const file = join(dir, 'timers.json');
    const text = JSON.stringify({
      nextId: 2, // stale: a new timer would get id 2 and overwrite the restored one
      timers: [
        { id: '1', kind: 'timer', label: 'eggs', dueAt: now + 60_000, seconds: 120 },
        { id: '2', kind: 'alarm', label: 'Bread', dueAt: now + 3600_000, time: '13:00' },
        { id: '3', kind: 'timer', label: null, dueAt: -1e300, seconds: 60 }, // out of Date's range: "Invalid time value" on every start
        { id: '4', kind: 'timer', label: 42, dueAt: now + 1000 }, // a non-string label: cancel threw
        { id: '5', kind: 'egg', label: null, dueAt: now + 1000 },
        { id: '1', kind: 'timer', label: 'again', dueAt: now + 5000 }, // a repeated id
        null,
      ],
    });
    writeFileSync(file, text);
    const clock = new FakeClock(now);
    const { timers, lines, ringer } = setup(dir, clock);
    timers.start();
    assert.deepEqual(timers.list().map((t) => [t.id, t.label]), [['1', 'eggs'], ['2', 'Bread']]);
    assert.equal(ringer.rings.length, 0, 'nothing bad rang');
    const dropped = lines.filter((l) => l.msg === 'a saved timer cannot be used: dropped, the others are kept');
    assert.deepEqual(dropped.map((l) => l.o.entry), [2, 3, 4, 5, 6], 'one line per bad entry, by its index');
    assert.deepEqual(dropped.map((l) => l.o.timer), ['3', '4', '5', '1', undefined]);
    assert.match(dropped[0].o.error, /dueAt/);
    assert.match(dropped[1].o.error, /label/);
    assert.match(dropped[2].o.error, /kind/);
    assert.match(dropped[3].o.error, /id 1 is used by an earlier entry/);
    assert.equal(readFileSync(`${file}.bad`, 'utf8'), text, 'the file as it was is kept');
    assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')).timers.map((t: TimerEntry) => t.id), ['1', '2'], 'saved again without the bad entries');
    const t = timers.addTimer(30, 'tea');
    assert.equal(t.id, '3', 'one past the highest restored id, whatever nextId said');
    assert.deepEqual(timers.list().map((v) => v.id).sort(), ['1', '2', '3'], 'nothing restored was overwritten');
    assert.deepEqual(timers.cancel(' bread ').map((v) => v.id), ['2']);
    timers.stop();
    // The next start finds a good file: no lines, nothing moved.
    const again = setup(dir, new FakeClock(now + 1000));
    again.timers.start();
    assert.deepEqual(again.lines.filter((l) => l.level === 'warn'), []);
    assert.deepEqual(again.timers.list().map((v) => v.id).sort(), ['1', '3']);
    again.timers.stop();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('a timers.json that cannot be used at all (not JSON, not a timers file, too large, a directory) starts with none, says why once, and is kept aside, not overwritten by the next save', () => {
  const cases: [string, (f: string) => void, RegExp][] = [
    ['not JSON', (f) => writeFileSync(f, '{"timers": [{"id": "1", "ki'), /not valid JSON/],
    ['not a timers file', (f) => writeFileSync(f, '[1, 2, 3]'), /"timers" list/],
    ['too large', (f) => writeFileSync(f, JSON.stringify({ timers: [], pad: 'x'.repeat(300 * 1024) })), /larger than/],
    ['a directory', (f) => mkdirSync(f), /not a regular file|EISDIR/],
  ];
  for (const [what, make, why] of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'timers-'));
    try {
      const file = join(dir, 'timers.json');
      make(file);
      const clock = new FakeClock(Date.UTC(2026, 10, 26, 12, 0, 0));
      const { timers, lines } = setup(dir, clock);
      timers.start();
      assert.deepEqual(timers.list(), [], what);
      const warns = lines.filter((l) => l.level === 'warn');
      assert.equal(warns.length, 1, `${what}: one line (${JSON.stringify(warns)})`);
      assert.equal(warns[0].msg, 'the saved timers cannot be used; starting with none');
      assert.match(warns[0].o.error, why, what);
      assert.equal(warns[0].o.keptAs, `${file}.bad`, what);
      assert.ok(existsSync(`${file}.bad`), `${what}: kept`);
      assert.equal(timers.addTimer(60, null).id, '1');
      assert.equal(JSON.parse(readFileSync(file, 'utf8')).timers.length, 1, `${what}: the new timer is saved`);
      timers.stop();
    } finally { rmSync(dir, { recursive: true, force: true }); }
  }
});

test('cancel_timer with a blank name is an error that cancels nothing (it cancelled every unlabelled timer and alarm)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'timers-'));
  try {
    const clock = new FakeClock(Date.UTC(2026, 10, 26, 12, 0, 0));
    const { timers } = setup(dir, clock);
    timers.start();
    timers.addTimer(60, null);
    timers.addAlarm('13:00', null);
    timers.addTimer(90, '  '); // a blank label is no label
    timers.addTimer(120, 'pasta');
    const tool = cancelTimer({ timers } as unknown as ToolServices);
    for (const which of [' ', '\t', '   \n']) {
      assert.throws(() => tool.run({ which }, { id: 'c1', signal: new AbortController().signal }), /say which timer or alarm to cancel/, JSON.stringify(which));
      assert.throws(() => timers.cancel(which), /say which/);
    }
    assert.equal(timers.list().length, 4, 'nothing was cancelled');
    assert.equal(timers.list().find((t) => t.id === '3')!.label, null);
    assert.deepEqual((tool.run({ which: 'Pasta' }, { id: 'c2', signal: new AbortController().signal }) as { cancelled: { id: string }[] }).cancelled.map((t) => t.id), ['4']);
    assert.equal(timers.cancel('all').length, 3);
    timers.stop();
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('the next ring time for Home Assistant is right in the repeated autumn hour (Europe/Berlin, 2026-10-25 02:00-03:00 twice)', () => {
  const tz = process.env.TZ;
  process.env.TZ = 'Europe/Berlin';
  const dir = mkdtempSync(join(tmpdir(), 'timers-'));
  try {
    const clock = new FakeClock(Date.UTC(2026, 9, 25, 0, 40, 0)); // 02:40 CEST, the first 02:40 of the night
    const { timers } = setup(dir, clock);
    timers.start();
    assert.equal(timers.nextRingIso(), null);
    const v = timers.addTimer(30 * 60, 'bread'); // rings at 01:10 UTC: 02:10 CET, the second 02:10
    assert.equal(v.rings_at, '2026-10-25 02:10:00', 'the local time the model says');
    assert.equal(timers.nextRingIso(), '2026-10-25T01:10:00.000Z'); // read back from rings_at it would be 00:10Z, an hour early
    timers.addTimer(10 * 60, null);
    assert.equal(timers.nextRingIso(), '2026-10-25T00:50:00.000Z', 'the earliest');
    timers.stop();
  } finally {
    if (tz === undefined) delete process.env.TZ; else process.env.TZ = tz;
    rmSync(dir, { recursive: true, force: true });
  }
});
