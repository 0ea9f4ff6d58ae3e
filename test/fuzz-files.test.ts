// Fuzzing the files the daemon reads at start (issue 25): timers.json,
// state.json and config.yaml, mutated from valid samples with the seeded
// helpers of test/bench/fuzz.ts (FUZZ_SEED=n picks another seed; a failure
// names its seed and case). Most cases run in-process against the loaders
// (Timers, StateStore, loadConfig), time-bounded; then a few whole daemons
// start on bad files and still serve a press that reaches the server.
// Pass: no throw but the documented config error (exit 78, naming the file
// and key), nothing dropped without a line, no line or list that grows with
// the input, a muted start for any state.json that cannot be trusted.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { performance } from 'node:perf_hooks';
import { parse, stringify } from 'yaml';
import { rng, int, pick, mutateN, brokenJson, junkBytes, type Rand } from './bench/fuzz.js';
import { Timers, MAX_TIMERS, type Ringer, type TimerEntry } from '../src/timers.js';
import { FakeClock, fakeLog } from './bench/util.js';
import { StateStore, MAX_VOLUME } from '../src/state.js';
import { ConfigError, loadConfig, parseConfig, readApiKey, readAccessKey, stateDir } from '../src/config.js';
import { SoundCard } from './bench/soundcard.js';
import { DaemonProcess, MAIN } from './bench/daemon.js';
import { LiveEmulator } from '../src/emulator/emulator.js';
import { spawn } from 'node:child_process';

const SEED = Number(process.env.FUZZ_SEED ?? 25);
/** Each in-process border runs until this many cases or this long, whichever comes first. */
const MAX_CASES = 3000;
const BUDGET_MS = Number(process.env.FUZZ_MS ?? 5000);
/** Fewer cases than this in the budget (a machine far too busy) fails the test rather than pass on little. */
const MIN_CASES = 25;
const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const NOW = Date.UTC(2026, 10, 26, 12, 0, 0);
/** The in-process cases' files: in memory when there is a /dev/shm (the loaders are under test here, not the disk's fsync). */
const SCRATCH = existsSync('/dev/shm') ? '/dev/shm' : tmpdir();



/**
 * mutateN, and JSON of the result: fuzz.ts's structuredClone and JSON.stringify
 * run out of stack on a value nested deep twice over (15,000 levels); then one
 * round, and text built by hand for a deeper one.
 */
function mutatedValue(r: Rand, sample: unknown): unknown {
  try { return mutateN(r, sample); } catch (e) { if (!(e instanceof RangeError)) throw e; return mutateN(r, sample, 1); }
}
const safeJson = (v: unknown): string => { try { return JSON.stringify(v) ?? 'undefined'; } catch { return '(too deep for JSON)'; } };
function mutatedJson(r: Rand, sample: unknown): string {
  const v = mutatedValue(r, sample);
  try { return JSON.stringify(v) ?? ''; } catch (e) {
    if (!(e instanceof RangeError)) throw e;
    return `{"timers": ${'['.repeat(20_000)}${']'.repeat(20_000)}, "muted": ${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}`;
  }
}

const lineBytes = (l: { msg: string; o: unknown }) => JSON.stringify([l.msg, l.o]).length;

/** Run `one(r, i)` until MAX_CASES or BUDGET_MS; a throw is reported with the seed and case. */
function campaign(name: string, seed: number, one: (r: Rand, i: number) => void): { cases: number; ms: number } {
  const r = rng(seed);
  const t0 = performance.now();
  let i = 0;
  for (; i < MAX_CASES && performance.now() - t0 < BUDGET_MS; i++) {
    try { one(r, i); } catch (e) {
      (e as Error).message = `${name}, seed ${seed}, case ${i}: ${(e as Error).message}`;
      throw e;
    }
  }
  return { cases: i, ms: Math.round(performance.now() - t0) };
}

function timersText(r: Rand): string | Buffer {
  const entry = (id: number) => pick(r, [
    { id: String(id), kind: 'timer', label: 'pasta', dueAt: NOW + 600_000, seconds: 600 },
    { id: String(id), kind: 'alarm', label: null, dueAt: NOW + 3_600_000, time: '13:00' },
    { id: String(id), kind: 'timer', label: 'bread', dueAt: NOW - 60_000, seconds: 60 }, // fell due while down
  ]);
  const sample = { nextId: 4, timers: [entry(1), entry(2), entry(3)] };
  switch (int(r, 10)) {
    case 0: return brokenJson(r, sample);
    case 1: return junkBytes(r);
    case 2: case 3: // many entries, some mutated, some repeated ids: more than MAX_TIMERS, duplicates
      return `{"nextId": 1, "timers": [${Array.from({ length: int(r, 60) }, (_, i) => (r() < 0.3 ? mutatedJson(r, entry(1 + int(r, 40))) || 'null' : JSON.stringify(entry(i + 1)))).join(',')}]}`;
    default: return mutatedJson(r, sample);
  }
}

/** What a restart reads: the timers of a file, or null if it is not a timers file at all. */
function entriesIn(text: string | Buffer): number | null {
  try {
    const v = JSON.parse(text.toString());
    return v && typeof v === 'object' && !Array.isArray(v) && Array.isArray(v.timers) ? v.timers.length : null;
  } catch { return null; }
}

const ringer = (): Ringer & { once: string[] } => {
  const r = { once: [] as string[], start(entries: TimerEntry[], o: { once: boolean }) { if (o.once) r.once.push(...entries.map((e) => e.id)); }, stop() {} };
  return r;
};

let fuzzTimers: { text: string | Buffer; dropped: number; whole: boolean }[] = [];

test(`timers.json: mutated, broken and random files never stop a start; every bad entry has its line, the rest are kept (seed ${SEED})`, (t) => {
  const dir = mkdtempSync(join(SCRATCH, 'fuzz-timers-'));
  let withDrops = 0; let wholeBad = 0; let clean = 0;
  try {
    const res = campaign('timers.json', SEED, (r) => {
      rmSync(dir, { recursive: true, force: true }); mkdirSync(dir);
      const file = join(dir, 'timers.json');
      const text = timersText(r);
      writeFileSync(file, text);
      const clock = new FakeClock(NOW);
      const { log, lines } = fakeLog();
      const ring = ringer();
      const timers = new Timers({ dir, ringMaxMs: 10_000, clock, stepCheckMs: 60_000 }, ring, log);
      timers.start();
      const list = timers.list();
      const BAD = ['a saved timer cannot be used: dropped, the others are kept', 'the saved timers cannot be used; starting with none', 'saved timers dropped; the file as it was is kept aside'];
      const warns = lines.filter((l) => BAD.includes(l.msg));
      const dropped = warns.filter((l) => l.msg === 'a saved timer cannot be used: dropped, the others are kept');
      const whole = warns.filter((l) => l.msg === 'the saved timers cannot be used; starting with none');
      // Bounded: the list, the number of lines, each line.
      assert.ok(list.length <= MAX_TIMERS, `${list.length} timers restored`);
      assert.ok(lines.length <= 2 * MAX_TIMERS + 5, `${lines.length} lines`); // at most 20 bad entries by name (then a count), 20 fell-due lines
      for (const l of lines) assert.ok(lineBytes(l) < 2048, `a ${lineBytes(l)}-byte line: ${l.msg}`);
      // Each bad input logged once as what it is.
      assert.ok(whole.length <= 1);
      assert.equal(new Set(dropped.map((l) => l.o.entry)).size, dropped.length, 'one line per bad entry');
      if (whole.length) assert.equal(dropped.length, 0);
      // Nothing dropped without a line: no warning means every entry of the file came back (or rang once, fell due).
      const n = entriesIn(text);
      if (warns.length === 0) {
        assert.notEqual(n, null, 'a file that is not a timers file was taken silently');
        assert.equal(list.length + ring.once.length, n, 'entries went missing without a line');
      } else {
        assert.ok(existsSync(`${file}.bad`), 'the file as it was is kept');
      }
      for (const v of list) {
        assert.ok(v.label === null || typeof v.label === 'string');
        assert.match(v.rings_at, /^\d{4,}-\d\d-\d\d \d\d:\d\d:\d\d$/);
        assert.ok(Number.isFinite(v.remaining_s));
      }
      // Still works: a new timer gets an id no restored one has; what it saved loads clean; a blank cancel cancels nothing.
      if (list.length < MAX_TIMERS) {
        const added = timers.addTimer(30, 'tea');
        assert.ok(!list.some((v) => v.id === added.id), `new id ${added.id} overwrote a restored timer`);
      }
      assert.throws(() => timers.cancel(' '), /say which/);
      const again = fakeLog();
      const t2 = new Timers({ dir, ringMaxMs: 10_000, clock: new FakeClock(NOW), stepCheckMs: 1000 }, ringer(), again.log);
      t2.start();
      assert.deepEqual(again.lines.filter((l) => BAD.includes(l.msg)), [], 'the file the daemon wrote loads clean');
      t2.stop();
      for (const v of timers.list()) if (v.label?.trim() && timers.list().some((w) => w.id === v.id)) assert.ok(timers.cancel(v.label).length >= 1);
      clock.advance(2 * 3_600_000); // the samples' timers ring; the cap stops them
      timers.stop();
      if (whole.length) wholeBad++; else if (dropped.length) withDrops++; else clean++;
      if (fuzzTimers.length < 40 && (whole.length || dropped.length)) fuzzTimers.push({ text, dropped: dropped.length, whole: whole.length > 0 });
    });
    t.diagnostic(`timers.json: ${res.cases} cases in ${res.ms} ms (${wholeBad} whole file unusable, ${withDrops} with entries dropped, ${clean} clean)`);
    console.log(`# fuzz timers.json: ${res.cases} cases in ${res.ms} ms, seed ${SEED} (${wholeBad} whole file unusable, ${withDrops} with entries dropped, ${clean} clean)`);
    assert.ok(res.cases >= MIN_CASES, `only ${res.cases} cases ran`);
    assert.ok(wholeBad > 0 && withDrops > 0 && clean > 0, 'the cases reach every outcome');
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

/** An independent reading of state.json: usable, and what it says; or not usable. */
function stateOracle(text: string): { muted: boolean; volume: number | null } | null {
  if (Buffer.byteLength(text) > 4096) return null;
  let v: any;
  try { v = JSON.parse(text); } catch { return null; }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return null;
  if (v.muted !== undefined && typeof v.muted !== 'boolean') return null;
  if (v.volume !== undefined && v.volume !== null && !(Number.isInteger(v.volume) && v.volume >= 0 && v.volume <= MAX_VOLUME)) return null;
  return { muted: v.muted ?? false, volume: v.volume ?? null };
}

test(`state.json: any file that cannot be trusted starts muted, with one line; a good one is used as written (seed ${SEED})`, (t) => {
  const dir = mkdtempSync(join(SCRATCH, 'fuzz-state-'));
  let bad = 0; let good = 0;
  try {
    const res = campaign('state.json', SEED + 1, (r) => {
      rmSync(dir, { recursive: true, force: true }); mkdirSync(dir);
      const file = join(dir, 'state.json');
      const sample = pick(r, [{ muted: false, volume: 40 }, { muted: true }, {}, { muted: false }]);
      const k = int(r, 10);
      const raw = k === 0 ? brokenJson(r, sample) : k === 1 ? junkBytes(r) : mutatedJson(r, sample);
      writeFileSync(file, raw);
      const text = readFileSync(file, 'utf8');
      const { log, lines } = fakeLog();
      const s = new StateStore(dir, log);
      const want = stateOracle(text);
      assert.ok(lines.length <= 1 && lines.every((l) => lineBytes(l) < 2048), JSON.stringify(lines).slice(0, 500));
      if (want) {
        assert.deepEqual(s.get(), want);
        assert.equal(s.problem, null);
        assert.equal(lines.length, 0);
        good++;
      } else {
        assert.deepEqual(s.get(), { muted: true, volume: null }, `not muted for ${JSON.stringify(text.slice(0, 200))}`);
        assert.ok(s.problem);
        assert.equal(lines.length, 1);
        assert.equal(lines[0].level, 'warn');
        bad++;
      }
      s.set({ muted: false });
      const again = new StateStore(dir, fakeLog().log);
      assert.equal(again.problem, null, 'what it wrote loads clean');
      assert.equal(again.get().muted, false);
      if (!want && !existsSync(`${file}.bad`)) assert.fail('the bad file was replaced without a copy');
    });
    t.diagnostic(`state.json: ${res.cases} cases in ${res.ms} ms (${bad} unusable -> muted, ${good} usable)`);
    console.log(`# fuzz state.json: ${res.cases} cases in ${res.ms} ms, seed ${SEED + 1} (${bad} unusable -> muted, ${good} usable)`);
    assert.ok(res.cases >= MIN_CASES && bad > 0 && good > 0, `${res.cases} cases, ${bad} bad, ${good} good`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

const configSamples = (): unknown[] => [
  parse(readFileSync(join(REPO, 'config.yaml'), 'utf8')),
  {
    hardware: 'respeaker-2mic',
    gpio: { ring: { count: 3, colours: { timer: '#ffa000' } } },
    wake: { engine: 'tone', keywords: [{ name: 'jarvis', sensitivity: 0.4 }] },
    tools: { commands: [{ name: 'weather', description: 'the weather', parameters: { type: 'object', properties: { city: { type: 'string', enum: ['a', 'b'] } }, required: ['city'] }, argv: ['/bin/echo', '{city}'] }] },
    mixer: { settings: [{ control: 'Speaker', value: '80%' }] },
  },
  { live: { vad: { silence_duration_ms: 500 } }, audio: { volume: 90 }, conversation: { resume_within_s: 30 } },
];

/** config.yaml text: the mutated value as YAML (JSON when YAML cannot write it), sometimes with a stray byte or cut short. */
function configText(r: Rand, samples: unknown[]): string | Buffer {
  const v = mutatedValue(r, pick(r, samples));
  let text: string;
  try { text = stringify(v) ?? ''; } catch {
    try { text = JSON.stringify(v) ?? ''; } catch { text = `live:\n  model: ${'['.repeat(20_000)}${']'.repeat(20_000)}\n`; } // deeper than JSON.stringify goes
  }
  switch (int(r, 12)) {
    case 0: return text.slice(0, int(r, text.length + 1));
    case 1: { const i = int(r, text.length + 1); return text.slice(0, i) + pick(r, ['\t', ':', '- ', '{', '"', '\u0000', '&a *a', '<<: *x']) + text.slice(i); }
    case 2: return junkBytes(r);
    default: return text;
  }
}

let rejectedConfigs: { text: string | Buffer; message: string; file: string }[] = [];

test(`config.yaml: every mutated config loads or is refused with one clear error naming the file and the key, never a crash (seed ${SEED})`, (t) => {
  const dir = mkdtempSync(join(SCRATCH, 'fuzz-config-'));
  const file = join(dir, 'config.yaml');
  const samples = configSamples();
  for (const s of samples) loadConfig(writeAnd(file, stringify(s))); // the samples are valid
  let ok = 0; let refused = 0; let longest = 0; let files = 0;
  try {
    const res = campaign('config.yaml', SEED + 2, (r) => {
      // One case in four through the file and the YAML parser (slow: ~20-70 ms a case here); the rest are the parsed values, straight to the schema.
      const viaFile = r() < 0.25;
      const value = viaFile ? null : mutatedValue(r, pick(r, samples));
      const text = viaFile ? configText(r, samples) : `(parsed value) ${safeJson(value).slice(0, 300)}`;
      if (viaFile) { writeFileSync(file, text); files++; }
      try {
        const { config } = viaFile ? loadConfig(file) : { config: parseConfig(value, file) };
        stateDir(config, {});
        for (const read of [readApiKey, readAccessKey]) {
          try { read(config, {}); } catch (e) { if (!(e instanceof ConfigError)) throw e; }
        }
        ok++;
      } catch (e) {
        if (!(e instanceof ConfigError)) throw new Error(`not a ConfigError (${(e as Error).name}: ${(e as Error).message.slice(0, 300)}) for ${JSON.stringify(text.toString().slice(0, 300))}`);
        assert.ok(e.message.includes(file), `the error names the file: ${e.message.slice(0, 300)}`);
        assert.match(e.message, /^(invalid config in \S+: ('[^']*': .+|unknown keys? '.+)|invalid YAML in \S+( at line \d+, column \d+)?: .+)/s);
        assert.ok(!/\n\s+at /.test(e.message), 'no stack trace');
        longest = Math.max(longest, e.message.length);
        assert.ok(e.message.length <= 4096, `a ${e.message.length}-character error: ${e.message.slice(0, 300)}...`);
        refused++;
        if (viaFile && rejectedConfigs.length < 20) rejectedConfigs.push({ text, message: e.message, file });
      }
    });
    t.diagnostic(`config.yaml: ${res.cases} cases in ${res.ms} ms (${files} through the file and YAML; ${refused} refused, longest error ${longest} characters; ${ok} loaded)`);
    console.log(`# fuzz config.yaml: ${res.cases} cases in ${res.ms} ms, seed ${SEED + 2} (${files} through the file and YAML; ${refused} refused, longest error ${longest} characters; ${ok} loaded)`);
    assert.ok(res.cases >= MIN_CASES && refused > 0 && ok > 0, `${res.cases} cases, ${refused} refused, ${ok} loaded`);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

function writeAnd(file: string, text: string): string { writeFileSync(file, text); return file; }

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

test('whole daemons on bad timers.json and state.json start, log each bad entry once, and serve a press that reaches the server', { timeout: 120_000 }, async (t) => {
  assert.ok(fuzzTimers.length >= 3, 'the in-process timers campaign ran first and kept cases');
  const r = rng(SEED + 3);
  const cases = [
    { timers: fuzzTimers.find((c) => c.dropped > 0)!, state: null },
    { timers: fuzzTimers.find((c) => c.whole)!, state: brokenJson(r, { muted: false }) },
    { timers: fuzzTimers.filter((c) => c.dropped > 0)[1] ?? fuzzTimers[2], state: junkBytes(r, 64) },
  ];
  const t0 = performance.now();
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  try {
    for (const [i, c] of cases.entries()) {
      const dir = mkdtempSync(join(tmpdir(), 'ls-daemon-'));
      mkdirSync(join(dir, 'state'));
      writeFileSync(join(dir, 'state', 'timers.json'), c.timers.text);
      if (c.state !== null) writeFileSync(join(dir, 'state', 'state.json'), c.state);
      const d = await DaemonProcess.start({ env: card.env, dir, config: { live: { base_url: emu.url, connect_timeout_s: 2 }, conversation: { follow_up_s: 1 } } });
      try {
        const dropped = d.logs.filter((l) => l.msg === 'a saved timer cannot be used: dropped, the others are kept');
        const whole = d.logs.filter((l) => l.msg === 'the saved timers cannot be used; starting with none');
        assert.equal(dropped.length, c.timers.dropped, `case ${i}: each bad entry has its one line`);
        assert.equal(whole.length, c.timers.whole ? 1 : 0, `case ${i}`);
        assert.ok(existsSync(join(dir, 'state', 'timers.json.bad')), `case ${i}: kept aside`);
        let st = await d.ctl('status');
        if (c.state !== null && stateOracle(Buffer.from(c.state).toString('utf8')) === null) {
          assert.equal(st.state, 'muted', `case ${i}: an unusable state.json starts muted`);
          assert.ok(st.muteReason);
          const idle = d.waitState('idle');
          await d.ctl('unmute');
          await idle;
          await d.waitLog((l) => l.msg === 'capture started (arecord)', 5000, 'capture started');
          st = await d.ctl('status');
        }
        assert.ok(st.timers.list.length <= MAX_TIMERS);
        const before = emu.sessions.length;
        // A timer that fell due while down may be ringing: then a press only stops it (docs/tools.md), and the next one talks.
        const listening = d.waitState('listening', 10_000);
        const stopped = d.waitNextLog((l) => l.msg === 'timer ringing stopped', 10_000, 'ringing stopped');
        listening.catch(() => {}); stopped.catch(() => {});
        await d.ctl('press');
        if (await Promise.race([listening.then(() => 'talking'), stopped.then(() => 'stopped')]) === 'stopped') await d.ctl('press');
        await listening;
        assert.equal(emu.sessions.length, before + 1, `case ${i}: the press reached the server`);
      } finally { await d.stop(); }
    }
  } finally { await emu.close(); }
  t.diagnostic(`${cases.length} whole daemons in ${Math.round(performance.now() - t0)} ms`);
  console.log(`# fuzz whole daemons on bad files: ${cases.length} in ${Math.round(performance.now() - t0)} ms`);
});

test('whole daemons on mutated config.yaml files the loader refused: exit 78 with the one-line error naming the file and the key, no stack trace', { timeout: 60_000 }, async () => {
  assert.ok(rejectedConfigs.length >= 3, 'the in-process config campaign ran first and kept cases');
  for (const c of rejectedConfigs.slice(0, 3)) {
    const dir = mkdtempSync(join(tmpdir(), 'ls-daemon-'));
    const file = join(dir, 'config.yaml');
    writeFileSync(file, c.text);
    try {
      const child = spawn(process.execPath, [MAIN, '--config', file], { env: card.env, stdio: ['ignore', 'pipe', 'pipe'] });
      let err = ''; let out = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
      child.stdout.setEncoding('utf8').on('data', (d: string) => { out += d; });
      const code = await new Promise<number | null>((res) => child.on('exit', res));
      assert.equal(code, 78, `exit 78 (stderr: ${err.slice(0, 500)})`);
      assert.equal(err, `live-speaker: ${c.message.replaceAll(c.file, file)}\n`, 'the error the loader gave, one line');
      assert.equal(out, '');
      assert.ok(!/\n\s+at /.test(err));
    } finally { rmSync(dir, { recursive: true, force: true }); }
  }
});

test('YAML that parses but cannot be built (an alias to no anchor, a billion laughs) is a config error naming the file: exit 78, not a crash (exit 1)', { timeout: 30_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-config-'));
  try {
    const cases: [string, string, RegExp][] = [
      ['an alias to no anchor (the fuzz found it: seed 9, case 81)', '<<: *x\n', /Unresolved alias/],
      ['a billion laughs', `a: &a [1,1,1,1,1,1,1,1,1]\n${['b', 'c', 'd', 'e', 'f', 'g'].map((k, i) => `${k}: &${k} [${Array(9).fill(`*${'abcdefg'[i]}`).join(',')}]`).join('\n')}\n`, /Excessive alias count/],
    ];
    for (const [what, text, why] of cases) {
      const file = join(dir, 'config.yaml');
      writeFileSync(file, text);
      assert.throws(() => loadConfig(file), (e: Error) => e instanceof ConfigError && e.message.startsWith(`invalid YAML in ${file}: `) && why.test(e.message), what);
      const child = spawn(process.execPath, [MAIN, '--config', file], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => { err += d; });
      const code = await new Promise<number | null>((res) => child.on('exit', res));
      assert.equal(code, 78, `${what}: ${err}`);
      assert.match(err, new RegExp(`^live-speaker: invalid YAML in ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});
