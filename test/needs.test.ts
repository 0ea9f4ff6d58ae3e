// test/bench/needs.ts names, for each test that test/fresh-debian.test.ts's
// inner suite skips, the programs it calls and their Debian packages. Here,
// in seconds and on any Debian: each of those packages is one a fresh
// Debian has (Essential, or Priority required: debootstrap's minbase) or
// one scripts/deps.sh's test group installs; and each program installed on
// this machine comes from the package named. The fresh-root run checks the
// same list where nothing was installed by hand (slow: a root of its own).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ALL_NEEDS, checkScript } from './bench/needs.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const hasApt = spawnSync('sh', ['-c', 'command -v apt-cache && command -v dpkg-query']).status === 0;
const skip = hasApt ? false : 'needs Debian (apt-cache, dpkg-query)';

test('every package a skipped test needs is in a fresh Debian or in scripts/deps.sh\'s test group', { skip }, () => {
  const list = spawnSync('bash', [join(REPO, 'scripts', 'deps.sh'), '--list', 'test'], { encoding: 'utf8' });
  assert.equal(list.status, 0, list.stderr);
  const group = new Set(list.stdout.split('\n').filter(Boolean));
  // One apt-cache call for all the packages (each call reads apt's whole cache).
  const names = [...new Set(ALL_NEEDS.flatMap((x) => Object.values(x.programs).flatMap((p) => p.split('|'))))];
  const show = spawnSync('apt-cache', ['show', '--no-all-versions', ...names], { encoding: 'utf8' });
  const base = new Map<string, string>();
  for (const stanza of show.stdout.split(/\n\n+/)) {
    const field = (k: string) => new RegExp(`^${k}: (.*)$`, 'm').exec(stanza)?.[1]?.trim();
    const pkg = field('Package');
    if (pkg) base.set(pkg, field('Essential') === 'yes' ? 'Essential' : field('Priority') === 'required' ? 'Priority required' : `Priority ${field('Priority') ?? 'none'}`);
  }
  /** Why PKG is on every Debian ('Essential', 'Priority required'), or what it is instead. */
  const inBase = (pkg: string): string => base.get(pkg) ?? 'unknown to apt-cache (misspelt? apt-get update?)';
  const wrong: string[] = [];
  let n = 0;
  for (const needs of ALL_NEEDS) {
    for (const [program, pkgs] of Object.entries(needs.programs)) {
      n++;
      const alts = pkgs.split('|');
      if (alts.some((p) => group.has(p) || /^(Essential|Priority required)$/.test(inBase(p)))) continue;
      wrong.push(`${needs.file} calls ${program}: ${alts.map((p) => `${p} (${inBase(p)})`).join(' or ')} is neither in scripts/deps.sh's test group nor on every Debian`);
    }
  }
  assert.ok(n >= 40, `the list names the programs (${n})`);
  assert.deepEqual(wrong, []);
});

test('each of those programs that is installed here comes from the package named', { skip }, () => {
  const r = spawnSync('bash', ['-c', checkScript(ALL_NEEDS)], { encoding: 'utf8' });
  const lines = r.stdout.split('\n');
  assert.match(r.stdout, /^checked \d+ programs$/m, r.stdout + r.stderr);
  // MISSING is what the fresh-root run judges (a machine may lack what a skipped test needs).
  assert.deepEqual(lines.filter((l) => l.startsWith('OWNER ')), [], 'OWNER program path owner package test');
});
