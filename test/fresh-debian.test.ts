// The README's two commands, as a newcomer runs them, on a fresh Debian:
// a throwaway overlay over a pristine `debootstrap --variant=minbase trixie`
// root (test/bench/trixie-minbase.sh, cached; no Node.js, no compiler, no
// ca-certificates), in private PID and mount namespaces
// (test/bench/fresh-root.sh). A clean copy of the repo (its tracked files,
// no node_modules or dist) goes to /root/live-speaker; then, as root:
// `bash scripts/demo.sh`, then `bash scripts/test.sh` on the same machine.
// Everything either needs must be installed by the commands themselves; only
// npm's and apt's download caches are shared with the host. The tests that
// cannot nest in there (they make roots of their own: test/bench/needs.ts
// names them, their skip variables and the programs they call) are skipped
// inside, and checked instead: after `scripts/deps.sh test`, each of their
// programs must resolve there and belong to the package named (the third
// test; alone, with --test-name-pattern='skipped tests call', it takes minutes, not
// the whole suite's time). No test inside may skip for something not
// installed.
// Skipped, with the reason, without root or the tools;
// LIVE_SPEAKER_SKIP_FRESH_TEST=1 skips it too (the inner suite sets it: it
// cannot nest). Logs of the inner runs: CACHE/logs/ (their tail is printed
// on failure).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, createWriteStream, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALL_NEEDS, NEEDS, checkScript, rootTestSkip } from './bench/needs.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BENCH = join(REPO, 'test', 'bench');
const CACHE = process.env.LIVE_SPEAKER_TEST_CACHE ?? '/var/cache/live-speaker-test';
const LOGS = join(CACHE, 'logs');
const GUEST_REPO = '/root/live-speaker';

function skipReason(): string | false {
  return rootTestSkip(NEEDS.freshDebian, { skipWhy: 'set inside the fresh Debian root by this test itself: it cannot nest', rootFor: 'namespaces, mounts, chroot',
    cachedStamp: join(CACHE, 'trixie-minbase', '.stamp'), overlay: true, unshare: ['--pid', '--fork', '--mount'] });
}
const skip = skipReason();
/** The variables that skip the tests which cannot nest in the fresh root. */
const NEST_SKIPS = Object.fromEntries(ALL_NEEDS.map((n) => [n.skipEnv, '1']));

let rootDir = '';
let run = '';
const stamp = new Date().toISOString().replace(/[:.]/g, '-');
const timings: Record<string, number> = {};

type Run = { code: number | null; signal: string | null; log: string; logFile: string; lines: { t: number; text: string }[]; seconds: number };

/**
 * COMMAND as root in the fresh root (same RUNDIR: the same machine each
 * time); every output line is logged with the seconds since the start.
 */
function inFreshRoot(name: string, command: string, env: Record<string, string>, timeoutMs: number): Promise<Run> {
  mkdirSync(LOGS, { recursive: true });
  const logFile = join(LOGS, `fresh-debian-${stamp}-${name}.log`);
  const out = createWriteStream(logFile);
  const lines: { t: number; text: string }[] = [];
  const t0 = Date.now();
  out.write(`# ${command}\n`);
  return new Promise((resolve) => {
    const child = spawn('bash', [join(BENCH, 'fresh-root.sh'), rootDir, run, command], {
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', NPM_CACHE_DIR: join(CACHE, 'npm-cache'), APT_ARCHIVES_DIR: join(CACHE, 'apt-archives'), ...env },
      stdio: ['ignore', 'pipe', 'pipe'], detached: true,
    });
    let partial = '';
    const onData = (d: Buffer) => {
      const parts = (partial + d.toString('utf8')).split('\n');
      partial = parts.pop()!;
      for (const p of parts) {
        const t = (Date.now() - t0) / 1000;
        // Without the terminal colours the demo prints.
        const text = p.replace(/\x1b\[[0-9;]*m/g, '');
        lines.push({ t, text });
        out.write(`[${t.toFixed(1).padStart(6)}s] ${text}\n`);
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    const timer = setTimeout(() => {
      out.write(`# timed out after ${timeoutMs / 1000} s: killing it\n`);
      try { process.kill(-child.pid!, 'SIGKILL'); } catch { /* gone */ }
    }, timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (partial) onData(Buffer.from('\n'));
      const seconds = (Date.now() - t0) / 1000;
      out.end(`# exit ${code ?? signal} after ${seconds.toFixed(1)} s\n`, () =>
        resolve({ code, signal, log: lines.map((l) => l.text).join('\n'), logFile, lines, seconds }));
    });
  });
}
const tail = (r: Run, n = 60) => `--- last ${n} lines of ${r.logFile}:\n${r.lines.slice(-n).map((l) => `[${l.t.toFixed(1)}s] ${l.text}`).join('\n')}`;
/** Seconds from the start of the run to the first line matching re. */
const at = (r: Run, re: RegExp) => r.lines.find((l) => re.test(l.text))?.t;

before(() => {
  if (skip) return;
  const t0 = Date.now();
  const root = spawnSync('bash', [join(BENCH, 'trixie-minbase.sh'), CACHE], { encoding: 'utf8', timeout: 20 * 60 * 1000 });
  assert.equal(root.status, 0, `trixie-minbase.sh failed: ${root.stderr}`);
  rootDir = root.stdout.trim().split('\n').pop()!;
  timings.minbaseS = (Date.now() - t0) / 1000;

  mkdirSync(CACHE, { recursive: true });
  run = mkdtempSync(join(CACHE, 'run-fresh-'));
  // The clone a newcomer would have: the tracked files, as they are in this
  // working tree; without git (an unpacked tarball), everything but what
  // the commands build.
  const dest = join(run, 'upper', GUEST_REPO);
  mkdirSync(join(run, 'upper', 'root'), { recursive: true, mode: 0o700 });
  chmodSync(join(run, 'upper', 'root'), 0o700); // as in the lower root
  mkdirSync(dest);
  const ls = spawnSync('git', ['-C', REPO, 'ls-files', '-z'], { encoding: 'utf8' });
  let tar;
  if (ls.status === 0 && ls.stdout.length > 0) {
    const files = ls.stdout.split('\0').filter((f) => f && existsSync(join(REPO, f)));
    writeFileSync(join(run, 'files'), files.join('\0'));
    tar = spawnSync('bash', ['-c', `tar -C "${REPO}" --null -T "${join(run, 'files')}" --owner=0 --group=0 -cf - | tar -C "${dest}" -xf -`]);
  } else {
    tar = spawnSync('bash', ['-c', `tar -C "${REPO}" --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./.bench --owner=0 --group=0 -cf - . | tar -C "${dest}" -xf -`]);
  }
  assert.equal(tar.status, 0, String(tar.stderr));
  assert.ok(existsSync(join(dest, 'scripts', 'demo.sh')) && !existsSync(join(dest, 'node_modules')), 'a clean copy of the repo');
  // Speed only, nothing installed: dpkg skips its fsync per file (this
  // machine is thrown away after the test).
  mkdirSync(join(run, 'upper', 'etc', 'dpkg', 'dpkg.cfg.d'), { recursive: true });
  writeFileSync(join(run, 'upper', 'etc', 'dpkg', 'dpkg.cfg.d', 'unsafe-io'), 'force-unsafe-io\n');
});

const started = Date.now();
after(() => {
  if (skip) return;
  const t0 = Date.now();
  if (run) spawnSync('rm', ['-rf', '--one-file-system', run]);
  timings.cleanupS = (Date.now() - t0) / 1000;
  timings.totalS = (Date.now() - started) / 1000;
  // Keep the logs of the last few runs only.
  try {
    const old = readdirSync(LOGS).filter((f) => f.startsWith('fresh-debian-')).sort().reverse().slice(20);
    for (const f of old) rmSync(join(LOGS, f), { force: true });
  } catch { /* no logs */ }
  process.stderr.write(`fresh Debian test timings (s): ${JSON.stringify(timings)}; logs: ${join(LOGS, `fresh-debian-${stamp}-*.log`)}\n`);
});

test('on a fresh Debian, `bash scripts/demo.sh` installs what it needs and runs one whole conversation', { skip, timeout: 30 * 60 * 1000 }, async () => {
  for (const f of ['usr/bin/node', 'usr/bin/npm', 'usr/bin/g++', 'usr/include/alsa', 'usr/include/systemd']) {
    assert.ok(!existsSync(join(rootDir, f)), `the pristine root has no /${f}`);
  }
  const r = await inFreshRoot('demo', `cd ${GUEST_REPO} && bash scripts/demo.sh`, {}, 25 * 60 * 1000);
  timings.demoS = r.seconds;
  const npmAt = at(r, /installing npm dependencies/);
  const daemonAt = at(r, /starting the daemon/);
  if (npmAt !== undefined) timings.demoAptS = npmAt;
  if (npmAt !== undefined && daemonAt !== undefined) timings.demoNpmCiAndBuildS = daemonAt - npmAt;
  if (daemonAt !== undefined) timings.demoConversationS = r.seconds - daemonAt;
  assert.equal(r.code, 0, `demo.sh exited ${r.code ?? r.signal}\n${tail(r)}`);

  // It started from nothing: it installed Node.js and the addons' build
  // dependencies itself, then the npm packages.
  const apt = /installing Debian packages: (.*)/.exec(r.log);
  assert.ok(apt, `it installed Debian packages\n${tail(r)}`);
  for (const p of ['nodejs', 'npm', 'g++', 'libasound2-dev', 'libsystemd-dev', 'espeak-ng', 'pulseaudio']) {
    assert.ok(apt[1].split(' ').includes(p), `${p} among the packages it installed: ${apt[1]}`);
  }
  assert.ok(npmAt !== undefined, 'it ran npm ci');

  // What it did: the states it went through, and how much the speaker said.
  const states = /^\s*(idle(?: -> [a-z-]+)+)\s*$/m.exec(r.log);
  assert.ok(states, `the demo printed the states it went through\n${tail(r)}`);
  const seq = states[1].split(' -> ');
  for (const s of ['connecting', 'listening', 'speaking']) assert.ok(seq.includes(s), `went through ${s}: ${states[1]}`);
  assert.ok(seq.indexOf('connecting') < seq.indexOf('listening') && seq.indexOf('listening') < seq.indexOf('speaking'), `in order: ${states[1]}`);
  assert.equal(seq[seq.length - 1], 'idle', `back to idle at the end: ${states[1]}`);
  const said = /the speaker said ([\d.]+) s of audio \(the question was ([\d.]+) s\)/.exec(r.log);
  assert.ok(said, `the demo said how much audio it heard\n${tail(r)}`);
  const [reply, question] = [Number(said[1]), Number(said[2])];
  timings.questionS = question;
  timings.replyS = reply;
  assert.ok(question > 1, `the question is speech (${question} s)`);
  // Parrot mode says the question back: about as long (the emulator's
  // end-of-speech detection may clip or pad a little).
  assert.ok(Math.abs(reply - question) <= Math.max(0.5, 0.25 * question), `the speaker said ${reply} s for a ${question} s question`);
});

test('then `bash scripts/test.sh` on the same machine installs the rest and the whole suite passes', { skip, timeout: 60 * 60 * 1000 }, async () => {
  // Tests that make a root of their own cannot nest in this one (the third
  // test checks the programs they call instead).
  const r = await inFreshRoot('test', `cd ${GUEST_REPO} && bash scripts/test.sh`, NEST_SKIPS, 50 * 60 * 1000);
  timings.testShS = r.seconds;
  const suiteAt = at(r, /^> live-speaker@[^ ]+ test$/);
  if (suiteAt !== undefined) timings.innerSuiteS = r.seconds - suiteAt;
  const count = (k: string) => { const m = new RegExp(`^(?:#|ℹ) ${k} (\\d+)$`, 'm').exec(r.log); return m ? Number(m[1]) : undefined; };
  const [pass, fail, skipped] = [count('pass'), count('fail'), count('skipped')];
  timings.innerPass = pass ?? -1;
  // The failing tests first, with their errors (CI shows only the head of a long message).
  const failed = r.log.split('\n').flatMap((l, i, all) => (/^(\[[ \d.]+s\] )?not ok \d+ - /.test(l) ? [all.slice(i, i + 14).join('\n')] : []));
  assert.equal(r.code, 0, `test.sh exited ${r.code ?? r.signal} (pass ${pass}, fail ${fail})\n--- failed:\n${failed.join('\n') || '(none named)'}\n${tail(r, 120)}`);
  assert.equal(fail, 0, `node's test runner reported failures 0\n${tail(r)}`);
  assert.ok(pass !== undefined && pass > 50, `more than 50 tests passed (${pass})\n${tail(r)}`);
  // What the demo had not installed, test.sh did (debootstrap, for the root tests).
  assert.match(r.log, /installing Debian packages: .*\bdebootstrap\b/);
  // The tests that cannot nest here said why they skipped.
  assert.ok((skipped ?? 0) >= 1, 'the nested-root tests skipped');
  for (const v of Object.keys(NEST_SKIPS)) assert.match(r.log, new RegExp(`# SKIP ${v}=1`));
  // A test that skips for want of a program here would pass unseen: none may.
  const notInstalled = r.log.split('\n').filter((l) => /# SKIP .*not installed/.test(l));
  assert.deepEqual(notInstalled, [], 'no test inside skipped for something not installed');
});

test('inside, after `scripts/deps.sh test`, every program the skipped tests call (test/bench/needs.ts) is installed, from the package named', { skip, timeout: 30 * 60 * 1000 }, async () => {
  // After test.sh this deps.sh installs nothing; run alone, it installs the test group.
  writeFileSync(join(run, 'upper', 'root', 'needs-check.sh'), checkScript(ALL_NEEDS));
  const r = await inFreshRoot('needs', `cd ${GUEST_REPO} && bash scripts/deps.sh test && bash /root/needs-check.sh`, {}, 25 * 60 * 1000);
  timings.needsS = r.seconds;
  const problems = r.lines.map((l) => l.text).filter((t) => /^(MISSING|OWNER) /.test(t));
  const n = ALL_NEEDS.reduce((s, x) => s + Object.keys(x.programs).length, 0);
  assert.deepEqual(problems, [], `programs the tests skipped in the fresh root call, missing there after scripts/deps.sh test (MISSING program package test) or from another package (OWNER program path owner package test)\n${tail(r, 30)}`);
  assert.equal(r.code, 0, `deps.sh test or the check failed (exit ${r.code ?? r.signal})\n${tail(r)}`);
  assert.match(r.log, new RegExp(`^checked ${n} programs$`, 'm'), `all ${n} programs checked\n${tail(r)}`);
});
