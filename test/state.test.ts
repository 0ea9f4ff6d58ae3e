// state.json (mute, volume): a missing file is the defaults; one that exists
// but cannot be used starts the speaker MUTED, says why, and is kept (the
// README: a muted speaker never opens the microphone, and a file we cannot
// read may have said muted).
import { fakeLog } from './bench/util.js';
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { StateStore } from '../src/state.js';
import { SoundCard } from './bench/soundcard.js';
import { DaemonProcess, MAIN, arecordChildren } from './bench/daemon.js';
import { LiveEmulator } from '../src/emulator/emulator.js';


test('state.json: missing is the defaults (unmuted); a good file is used as written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'state-'));
  try {
    const a = fakeLog();
    const s = new StateStore(dir, a.log);
    assert.deepEqual(s.get(), { muted: false, volume: null });
    assert.equal(s.problem, null);
    assert.deepEqual(a.lines, []);
    for (const [text, want] of [['{}', { muted: false, volume: null }], ['{"muted": true}', { muted: true, volume: null }], ['{"muted": false, "volume": 40, "later": 1}', { muted: false, volume: 40 }]] as const) {
      writeFileSync(join(dir, 'state.json'), text);
      const b = fakeLog();
      const t = new StateStore(dir, b.log);
      assert.deepEqual(t.get(), want, text);
      assert.equal(t.problem, null, text);
      assert.deepEqual(b.lines, [], text);
    }
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('state.json that exists but cannot be used starts MUTED with one line saying why; the file stays until a change, which keeps it as state.json.bad', () => {
  const cases: [string, (f: string) => void, RegExp][] = [
    ['torn JSON', (f) => writeFileSync(f, '{"muted": tr'), /not valid JSON/],
    ['empty', (f) => writeFileSync(f, ''), /not valid JSON/],
    ['null', (f) => writeFileSync(f, 'null'), /not a state file/],
    ['a list', (f) => writeFileSync(f, '[true]'), /not a state file/],
    ['muted as a string', (f) => writeFileSync(f, '{"muted": "no"}'), /not a state file: muted/],
    ['volume out of range', (f) => writeFileSync(f, '{"muted": false, "volume": 900}'), /not a state file: volume/],
    ['too large', (f) => writeFileSync(f, JSON.stringify({ muted: false, pad: 'x'.repeat(10_000) })), /larger than/],
    ['a directory', (f) => mkdirSync(f), /not a regular file|EISDIR/],
  ];
  for (const [what, make, why] of cases) {
    const dir = mkdtempSync(join(tmpdir(), 'state-'));
    try {
      const file = join(dir, 'state.json');
      make(file);
      const { log, lines } = fakeLog();
      const s = new StateStore(dir, log);
      assert.deepEqual(s.get(), { muted: true, volume: null }, what);
      assert.match(s.problem ?? '', why, what);
      assert.equal(lines.length, 1, `${what}: one line`);
      assert.equal(lines[0].level, 'warn');
      assert.match(lines[0].msg, /cannot be used; starting MUTED/);
      s.set({ muted: true });
      assert.equal(existsSync(`${file}.bad`), false, `${what}: staying muted writes nothing: the file stays, a restart is muted again`);
      s.set({ muted: false });
      if (what !== 'a directory') {
        assert.ok(existsSync(`${file}.bad`), `${what}: kept before being replaced`);
        assert.deepEqual(JSON.parse(readFileSync(file, 'utf8')), { muted: false }, what);
      }
    } finally { rmSync(dir, { recursive: true, force: true }); }
  }
});

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

test('a daemon with an unreadable state.json comes up muted and says why: no arecord, a press opens no session; unmute, and a press reaches the server', { timeout: 60_000 }, async () => {
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const dir = mkdtempSync(join(tmpdir(), 'ls-daemon-'));
  mkdirSync(join(dir, 'state'));
  writeFileSync(join(dir, 'state', 'state.json'), '{"muted": tr'); // what it said cannot be known
  const d = await DaemonProcess.start({ env: card.env, dir, config: { live: { base_url: emu.url, connect_timeout_s: 2 }, conversation: { follow_up_s: 1 } } });
  try {
    const st = await d.ctl('status');
    assert.equal(st.state, 'muted');
    assert.equal(st.capturePid, null);
    assert.match(st.muteReason, /state\.json cannot be used \(not valid JSON/);
    const line = d.logs.find((l) => l.msg.startsWith('the saved state cannot be used; starting MUTED'));
    assert.ok(line, 'a line says why it is muted');
    assert.equal(line.level, 'warn');
    const human = spawnSync(process.execPath, [MAIN, 'ctl', 'status', '--socket', d.socket], { encoding: 'utf8', timeout: 10_000 });
    assert.match(human.stdout, /^muted: +.*state\.json cannot be used \(not valid JSON/m, `ctl status says why: ${human.stdout}${human.stderr}`);
    await d.ctl('press');
    await d.waitLog((l) => /^muted: press ignored/.test(l.msg), 3000, 'the press ignored');
    await sleep(800);
    assert.equal(emu.sessions.length, 0, 'a muted speaker opens no session');
    assert.deepEqual(arecordChildren(d.child.pid!), [], 'and no microphone');
    assert.equal(d.logs.filter((l) => l.msg === 'capture started (arecord)').length, 0);
    const idle = d.waitState('idle');
    await d.ctl('unmute');
    await idle;
    assert.equal((await d.ctl('status')).muteReason, null, 'the reason goes with the mute');
    assert.equal(readFileSync(join(dir, 'state', 'state.json.bad'), 'utf8'), '{"muted": tr', 'the bad file is kept');
    assert.deepEqual(JSON.parse(readFileSync(join(dir, 'state', 'state.json'), 'utf8')), { muted: false });
    await d.waitLog((l) => l.msg === 'capture started (arecord)', 5000, 'capture started');
    await d.pressAndWait('listening', 5000);
    assert.equal(emu.sessions.length, 1, 'the press reached the server');
  } finally { await d.stop(); await emu.close(); }
});
