// Timers and alarms, kept by the daemon (the model only asks for them), so
// they ring with no network and survive a restart.
//
// Clocks. A Raspberry Pi has no real-time clock: at boot the wall clock is
// wherever fake-hwclock left it, and NTP steps it (by hours, or backwards)
// once the network is up. So:
//  - every timer is *scheduled* on the monotonic clock while the daemon runs
//    (src/clock.ts): a timer set for 10 minutes rings 10 minutes later,
//    whatever NTP does to the wall clock meanwhile;
//  - every timer is *stored* (timers.json in the state directory) with its
//    due time as wall-clock epoch ms, the only reference that survives a
//    restart; on start the remaining time is re-derived from it;
//  - a wall-clock step seen while running (checked every few seconds) moves
//    the stored due time of a timer set since start (a duration: it keeps
//    its monotonic deadline) and re-derives the monotonic deadline of an
//    alarm (a time of day: it follows the wall clock, as a person reading a
//    clock would) and of a timer restored from disk (its remaining time was
//    derived from a wall clock that may have read the last saved time at
//    boot, before NTP set it).
// A timer that fell due while the daemon was down rings once after the
// restart (or once NTP shows it had), and the log says so.
import { closeSync, constants, fstatSync, openSync, readSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { EventEmitter } from 'node:events';
import { z } from 'zod';
import type { Logger } from './log.js';
import { monotonicMs } from './clock.js';
import { writeAtomic } from './state.js';

export interface Clock {
  /** Wall clock, epoch ms (may step). */
  wall(): number;
  /** Monotonic ms (never steps). */
  mono(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(t: unknown): void;
}

export const systemClock: Clock = {
  wall: () => Date.now(),
  mono: monotonicMs,
  setTimeout: (fn, ms) => { const t = setTimeout(fn, ms); t.unref(); return t; },
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
};

export type TimerKind = 'timer' | 'alarm';

export interface TimerEntry {
  id: string;
  kind: TimerKind;
  label: string | null;
  /** Wall-clock epoch ms when it is due (persisted). */
  dueAt: number;
  /** For a timer: its length in seconds, as asked. */
  seconds?: number;
  /** For an alarm: the local time asked for (HH:MM). */
  time?: string;
}

interface Live extends TimerEntry {
  dueMono: number;
  /** Loaded from disk at start: its due time is a wall-clock reading, so it follows the wall clock (like an alarm). */
  restored?: boolean;
}

/** What a timer shows to the model (list_timers, set_timer). */
export interface TimerView {
  id: string; kind: TimerKind; label: string | null;
  /** Local date and time it rings, e.g. 2026-11-26 07:00 (local time zone). */
  rings_at: string;
  remaining_s: number;
}

/** Ringing: a sound and the LEDs; `once` for a timer that fell due while the daemon was down. */
export interface Ringer {
  start(entries: TimerEntry[], opts: { once: boolean }): void;
  stop(): void;
}

export interface TimersOptions {
  dir: string;
  /** Stop ringing by itself after this long (ms). */
  ringMaxMs: number;
  clock?: Clock;
  /** How often the wall clock is compared with the monotonic one (ms). */
  stepCheckMs?: number;
  /** Labels (what the user said) in the journal: only with log.transcripts (default: never; the id is logged). */
  logLabels?: () => boolean;
}

/** A wall-clock step larger than this is treated as NTP setting the clock. */
const STEP_MS = 2000;
export const MAX_TIMERS = 20;
export const MAX_TIMER_S = 7 * 24 * 3600;
/** The longest label a timer keeps (characters). */
export const MAX_LABEL = 200;
/** A timers.json larger than this is not one the daemon wrote (20 timers with the longest labels are under 30 KiB). */
export const MAX_TIMERS_FILE = 256 * 1024;
/** How many bad entries of timers.json get a line each; the rest are counted in one line. */
const MAX_BAD_LINES = 20;
/** Date's range (ECMA-262: ±8.64e15 ms around the epoch). */
const DATE_MAX_MS = 8.64e15;

/** One saved timer as timers.json holds it; unknown fields are ignored. */
const SavedEntry = z.object({
  id: z.string().regex(/^[1-9][0-9]{0,8}$/, 'a positive integer id (as a string, at most 9 digits)'),
  kind: z.enum(['timer', 'alarm']),
  label: z.string().max(MAX_LABEL).nullable().default(null),
  dueAt: z.number().finite().min(-DATE_MAX_MS).max(DATE_MAX_MS),
  seconds: z.number().int().min(1).max(MAX_TIMER_S).optional(),
  time: z.string().regex(/^([01][0-9]|2[0-3]):[0-5][0-9]$/, 'HH:MM').optional(),
});

/** What was wrong with a value, from zod's issues, short and without the value itself (a label is what the user said). */
function why(e: z.ZodError): string {
  return e.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(entry)'}: ${i.message}`).join('; ');
}

const pad = (n: number) => String(n).padStart(2, '0');
export function localTime(ms: number): string {
  const d = new Date(ms);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

/** Parse "HH:MM" (24 h, also "7:05"); null when it is not a time of day. */
export function parseHhMm(s: string): { h: number; m: number } | null {
  const m = /^\s*(\d{1,2}):(\d{2})\s*$/.exec(s);
  if (!m) return null;
  const h = Number(m[1]); const mi = Number(m[2]);
  return h <= 23 && mi <= 59 ? { h, m: mi } : null;
}

/**
 * The next time the local wall clock reads HH:MM after `now` (epoch ms), in
 * the process's time zone (TZ, else /etc/localtime). Built from local
 * calendar fields, so a daylight-saving change between now and then is
 * respected; a time that does not exist that day (skipped by a spring-forward)
 * is the first instant after the gap, as Date does.
 */
export function nextOccurrence(hhmm: string, now: number): number {
  const t = parseHhMm(hhmm);
  if (!t) throw new Error(`time must be HH:MM on a 24-hour clock (got '${hhmm}')`);
  const d = new Date(now);
  for (let add = 0; add <= 2; add++) {
    const c = new Date(d.getFullYear(), d.getMonth(), d.getDate() + add, t.h, t.m, 0, 0).getTime();
    if (c > now) return c;
  }
  throw new Error('unreachable: no next occurrence within two days');
}

export class Timers extends EventEmitter {
  readonly file: string;
  private entries = new Map<string, Live>();
  private nextId = 1;
  private handle: unknown = null;
  private stepTimer: unknown = null;
  private offset: number; // wall - mono at the last check
  private readonly clock: Clock;
  private ringing: { entries: TimerEntry[]; capTimer: unknown } | null = null;
  private warnedSave = false;

  constructor(private readonly opts: TimersOptions, private readonly ringer: Ringer, private readonly log: Logger) {
    super();
    this.clock = opts.clock ?? systemClock;
    this.file = join(opts.dir, 'timers.json');
    this.offset = this.clock.wall() - this.clock.mono();
  }

  /** Load what was saved: re-derive each deadline from its wall-clock due time; ring once for those that fell due meanwhile. */
  start(): void {
    const now = this.clock.wall();
    const mono = this.clock.mono();
    const missed: TimerEntry[] = [];
    for (const e of this.load()) {
      if (e.dueAt <= now) missed.push(e);
      else this.entries.set(e.id, { ...e, dueMono: mono + (e.dueAt - now), restored: true });
    }
    this.ringMissed(missed, now);
    if (this.entries.size) this.log.info({ timers: this.list().map((t) => `${t.id} ${t.kind} ${t.rings_at}`) }, 'timers restored');
    this.schedule();
    this.watchSteps();
  }

  /** Timers that fell due while the daemon was down: ring once, with a line saying so. */
  private ringMissed(missed: TimerEntry[], now: number): void {
    if (!missed.length) return;
    for (const e of missed) {
      this.log.warn({ timer: e.id, kind: e.kind, ...this.label(e), dueAt: new Date(e.dueAt).toISOString(), lateS: Math.round((now - e.dueAt) / 1000) },
        `${e.kind} fell due while the daemon was not running; ringing once now`);
    }
    this.save();
    this.ring(missed, true);
  }

  stop(): void {
    if (this.handle !== null) this.clock.clearTimeout(this.handle);
    if (this.stepTimer !== null) this.clock.clearTimeout(this.stepTimer);
    this.handle = this.stepTimer = null;
    this.stopRinging('shutdown');
  }

  /** The label for a log line, if labels may be logged. */
  private label(e: { label: string | null }): { label?: string | null } {
    return this.opts.logLabels?.() ? { label: e.label } : {};
  }

  get isRinging(): boolean { return this.ringing !== null; }

  /** A timer of `seconds`. */
  addTimer(seconds: number, label: string | null): TimerView {
    if (!Number.isFinite(seconds) || seconds < 1 || seconds > MAX_TIMER_S) throw new Error(`a timer must be 1 second to ${MAX_TIMER_S / 86400} days long (got ${seconds} s)`);
    const s = Math.round(seconds);
    return this.add({ kind: 'timer', label, seconds: s, dueAt: this.clock.wall() + s * 1000 }, this.clock.mono() + s * 1000);
  }

  /** An alarm at the next local HH:MM. */
  addAlarm(time: string, label: string | null): TimerView {
    const now = this.clock.wall();
    const dueAt = nextOccurrence(time, now);
    const t = parseHhMm(time)!;
    return this.add({ kind: 'alarm', label, time: `${pad(t.h)}:${pad(t.m)}`, dueAt }, this.clock.mono() + (dueAt - now));
  }

  private add(e: Omit<TimerEntry, 'id'>, dueMono: number): TimerView {
    if (e.label !== null && e.label.trim() === '') e = { ...e, label: null }; // a blank label is none: "unlabelled" has one meaning
    if (e.label !== null && e.label.length > MAX_LABEL) throw new Error(`a label is at most ${MAX_LABEL} characters`);
    if (this.entries.size >= MAX_TIMERS) throw new Error(`there are already ${MAX_TIMERS} timers and alarms; cancel one first`);
    const id = String(this.nextId++);
    const live: Live = { id, ...e, dueMono };
    this.entries.set(id, live);
    this.save();
    this.schedule();
    this.log.info({ timer: id, kind: e.kind, ...this.label(e), ringsAt: localTime(e.dueAt) }, `${e.kind} set`);
    return this.view(live);
  }

  list(): TimerView[] {
    return [...this.entries.values()].sort((a, b) => a.dueMono - b.dueMono).map((e) => this.view(e));
  }

  /**
   * When the next timer or alarm rings, as an ISO time in UTC (Home Assistant's timestamp sensor), or null. From the
   * due time itself, not from `rings_at`: a local time read back is an hour off in the repeated autumn hour.
   */
  nextRingIso(): string | null {
    let next: Live | null = null;
    for (const e of this.entries.values()) if (!next || e.dueMono < next.dueMono) next = e;
    return next ? new Date(Math.floor(next.dueAt / 1000) * 1000).toISOString() : null; // the second rings_at shows
  }

  /** Cancel by id, or by label (case-insensitive, spaces around it ignored), or 'all'. What was cancelled. A blank `which` names nothing: an error, never a mass cancel. */
  cancel(which: string): TimerView[] {
    const w = which.trim().toLowerCase();
    if (!w) throw new Error('say which timer or alarm to cancel: its id, its label, or "all"');
    const matches = (e: { id: string; label: string | null }) => w === 'all' || e.id === w || (e.label !== null && e.label.trim().toLowerCase() === w);
    const hit = [...this.entries.values()].filter(matches);
    for (const e of hit) this.entries.delete(e.id);
    if (hit.length) { this.save(); this.schedule(); this.log.info({ timers: hit.map((e) => e.id) }, 'timer cancelled'); }
    const views = hit.map((e) => this.view(e));
    if (this.ringing && (w === 'all' || this.ringing.entries.some(matches))) {
      this.stopRinging('cancel_timer');
    }
    return views;
  }

  /** Stop the ringing (a press, the wake word, cancel_timer, the cap). True if something was ringing. */
  stopRinging(by: string): boolean {
    const r = this.ringing;
    if (!r) return false;
    this.ringing = null;
    if (r.capTimer !== null) this.clock.clearTimeout(r.capTimer);
    this.ringer.stop();
    this.log.info({ by, timers: r.entries.map((e) => e.id) }, 'timer ringing stopped');
    this.emit('stopped', by);
    return true;
  }

  private view(e: Live): TimerView {
    return { id: e.id, kind: e.kind, label: e.label, rings_at: localTime(e.dueAt), remaining_s: Math.max(0, Math.round((e.dueMono - this.clock.mono()) / 1000)) };
  }

  private schedule(): void {
    if (this.handle !== null) this.clock.clearTimeout(this.handle);
    this.handle = null;
    let next = Infinity;
    for (const e of this.entries.values()) next = Math.min(next, e.dueMono);
    if (next === Infinity) return;
    // Long waits are re-checked at least every minute (timer limits, and a check that the schedule still holds).
    const wait = Math.max(0, Math.min(next - this.clock.mono(), 60_000));
    this.handle = this.clock.setTimeout(() => { this.handle = null; this.fire(); }, wait);
  }

  private fire(): void {
    const mono = this.clock.mono();
    const due = [...this.entries.values()].filter((e) => e.dueMono <= mono + 5);
    for (const e of due) this.entries.delete(e.id);
    if (due.length) {
      this.save();
      for (const e of due) this.log.info({ timer: e.id, kind: e.kind, ...this.label(e) }, `${e.kind} ringing`);
      this.ring(due.map(({ dueMono: _m, restored: _r, ...rest }) => rest), false);
    }
    this.schedule();
  }

  private ring(entries: TimerEntry[], once: boolean): void {
    const cap = () => this.clock.setTimeout(() => this.stopRinging(`cap (${Math.round(this.opts.ringMaxMs / 1000)} s)`), this.opts.ringMaxMs);
    if (this.ringing) {
      this.ringing.entries.push(...entries);
      if (!once) {
        this.ringing.capTimer ??= cap(); // a ring-once becomes a real ringing: it gets the cap
        this.ringer.start(this.ringing.entries, { once: false });
      }
      return;
    }
    const capTimer = once ? null : cap();
    this.ringing = { entries: [...entries], capTimer };
    this.emit('ringing', entries, once);
    this.ringer.start(entries, { once });
  }

  /** A ring-once has played its sound: nothing more to stop. */
  rangOnce(): void {
    if (this.ringing && this.ringing.capTimer === null) { this.ringing = null; this.emit('stopped', 'rang once'); }
  }

  /** Compare the wall clock with the monotonic one; a step moves timers' stored times and alarms' deadlines. */
  private watchSteps(): void {
    const every = this.opts.stepCheckMs ?? 5000;
    const tick = () => { this.checkStep(); this.stepTimer = this.clock.setTimeout(tick, every); };
    this.stepTimer = this.clock.setTimeout(tick, every);
  }

  checkStep(): void {
    const offset = this.clock.wall() - this.clock.mono();
    const step = offset - this.offset;
    this.offset = offset;
    if (Math.abs(step) < STEP_MS) return;
    this.log.info({ stepS: Math.round(step / 1000) }, 'the wall clock was set (NTP?): timers set since start keep their length, alarms and restored timers follow the clock');
    const mono = this.clock.mono();
    const wall = this.clock.wall();
    const missed: TimerEntry[] = [];
    for (const e of this.entries.values()) {
      if (e.kind === 'timer' && !e.restored) e.dueAt += step;
      else if (e.kind === 'timer' && e.dueAt <= wall) {
        // Restored at boot from a clock that read the last saved time (no RTC): the corrected clock says it fell due while down.
        this.entries.delete(e.id);
        const { dueMono: _m, restored: _r, ...rest } = e;
        missed.push(rest);
      } else e.dueMono = mono + (e.dueAt - wall); // an alarm now past (the clock jumped over it) rings at once
    }
    if (this.entries.size || missed.length) { this.save(); this.schedule(); }
    this.ringMissed(missed, wall);
  }

  /**
   * What timers.json holds, checked entry by entry: a bad entry (a due time
   * outside Date's range, a non-string label, an unknown kind, a repeated
   * id...) is dropped with a line naming it and why, the rest are kept.
   * A file that cannot be read or parsed at all starts with none. Either
   * way the file is never the reason the daemon does not start, and it is
   * moved to timers.json.bad (replacing an older one), so the next save
   * does not silently destroy what a person may want to look at.
   * The next id is one past the highest restored id, whatever the file says.
   */
  private load(): TimerEntry[] {
    const got = this.readFile();
    if (got === null) return [];
    const bad = (error: string) => {
      this.log.warn({ file: this.file, error, ...this.keepBad() }, 'the saved timers cannot be used; starting with none');
      return [];
    };
    if ('error' in got) return bad(got.error);
    let raw: unknown;
    try { raw = JSON.parse(got.text); } catch (e) { return bad(`not valid JSON (${(e as Error).message.slice(0, 200)})`); }
    const list = raw !== null && typeof raw === 'object' && !Array.isArray(raw) ? (raw as { timers?: unknown }).timers : undefined;
    if (!Array.isArray(list)) return bad('not an object with a "timers" list');
    const out: TimerEntry[] = [];
    const ids = new Set<string>();
    let dropped = 0;
    list.forEach((item: unknown, index) => {
      const r = SavedEntry.safeParse(item);
      let reason: string | null = null;
      if (!r.success) reason = why(r.error);
      else if (ids.has(r.data.id)) reason = `id ${r.data.id} is used by an earlier entry`;
      else if (out.length >= MAX_TIMERS) reason = `more than ${MAX_TIMERS} timers and alarms`;
      if (reason !== null) {
        if (dropped++ < MAX_BAD_LINES) {
          const id = (item as { id?: unknown } | null)?.id;
          this.log.warn({ file: this.file, entry: index, ...(typeof id === 'string' && id.length <= 20 ? { timer: id } : {}), error: reason },
            'a saved timer cannot be used: dropped, the others are kept');
        }
        return;
      }
      const e = r.data!;
      ids.add(e.id);
      out.push({ id: e.id, kind: e.kind, label: e.label, dueAt: e.dueAt, ...(e.seconds !== undefined ? { seconds: e.seconds } : {}), ...(e.time !== undefined ? { time: e.time } : {}) });
    });
    this.nextId = out.reduce((m, e) => Math.max(m, Number(e.id)), 0) + 1;
    if (dropped) {
      this.log.warn({ file: this.file, dropped, kept: out.length, ...this.keepBad() }, 'saved timers dropped; the file as it was is kept aside');
      this.save(out); // at once, without what was dropped
    }
    return out;
  }

  /** The file's text; null: there is none (nothing saved); an error: it cannot be read, or is too large to be one the daemon wrote. */
  private readFile(): { text: string } | { error: string } | null {
    let fd: number;
    try { fd = openSync(this.file, constants.O_RDONLY | constants.O_NONBLOCK); } catch (e) {
      return (e as NodeJS.ErrnoException).code === 'ENOENT' ? null : { error: (e as Error).message };
    }
    try {
      if (!fstatSync(fd).isFile()) return { error: 'not a regular file' };
      const buf = Buffer.alloc(MAX_TIMERS_FILE + 1);
      let n = 0;
      for (let got = 1; got > 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, null);
      if (n > MAX_TIMERS_FILE) return { error: `larger than the ${MAX_TIMERS_FILE} bytes a timers file can hold` };
      return { text: buf.toString('utf8', 0, n) };
    } catch (e) {
      return { error: (e as Error).message };
    } finally { closeSync(fd); }
  }

  /** Move the unusable timers.json aside (timers.json.bad, replacing an older one), so that saving the timers set from now on does not destroy it unseen. */
  private keepBad(): { keptAs: string } | { keptAs: null; moveError: string } {
    const to = `${this.file}.bad`;
    try { renameSync(this.file, to); return { keptAs: to }; } catch (e) {
      return { keptAs: null, moveError: `${(e as Error).message}: the next save replaces it` };
    }
  }

  private save(timers: TimerEntry[] = [...this.entries.values()].map(({ dueMono: _m, restored: _r, ...e }) => e)): void {
    try {
      writeAtomic(this.file, `${JSON.stringify({ nextId: this.nextId, timers }, null, 2)}\n`);
    } catch (e) {
      if (!this.warnedSave) this.log.warn({ file: this.file, error: (e as Error).message }, 'cannot save the timers: they will not survive a restart');
      this.warnedSave = true;
    }
  }
}
