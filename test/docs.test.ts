// The README is the front door and docs/ holds one page per topic (issue 26).
// Here: every relative link and #anchor in README.md and docs/*.md lands on a
// file that exists and a heading it has (GitHub's slugs), the README stays
// short, its first screen still shows the two commands, and every docs page is
// reachable from its "Where to go next" list.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const README = join(REPO, 'README.md');
const DOCS = join(REPO, 'docs');
const pages = [README, ...readdirSync(DOCS).filter((f) => f.endsWith('.md')).sort().map((f) => join(DOCS, f))];

/** The lines of a markdown file outside fenced code blocks. */
function prose(text: string): string[] {
  let fence: string | null = null;
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(```+|~~~+)/.exec(line);
    if (m) {
      if (fence === null) fence = m[1]!.slice(0, 3);
      else if (m[1]!.startsWith(fence)) fence = null;
      out.push('');
      continue;
    }
    out.push(fence === null ? line : '');
  }
  return out;
}

/** GitHub's anchor for a heading (github-slugger): the rendered text, lower
 *  case, punctuation dropped, spaces to hyphens; a repeat gets -1, -2, ... */
export function slug(heading: string): string {
  const text = heading
    .replace(/!?\[([^\]]*)\]\([^)]*\)/g, '$1') // links: their text
    .replace(/<[^>]+>/g, '') // inline HTML tags
    .replace(/`/g, '')
    .trim()
    .toLowerCase();
  return text.replace(/[^\p{L}\p{M}\p{N}\p{Pc} -]/gu, '').replace(/ /g, '-');
}

export function anchors(text: string): Set<string> {
  const seen = new Map<string, number>();
  const out = new Set<string>();
  for (const line of prose(text)) {
    const m = /^#{1,6}\s+(.*?)\s*#*\s*$/.exec(line);
    if (!m) continue;
    const base = slug(m[1]!);
    const n = seen.get(base) ?? 0;
    seen.set(base, n + 1);
    out.add(n === 0 ? base : `${base}-${n}`);
  }
  return out;
}

/** Every inline link target in the prose (not in code), with its line. */
function links(text: string): { target: string; line: number }[] {
  const out: { target: string; line: number }[] = [];
  prose(text).forEach((line, i) => {
    const code = line.replace(/`[^`]*`/g, (s) => ' '.repeat(s.length)); // not inside inline code
    for (const m of code.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) out.push({ target: m[1]!, line: i + 1 });
    for (const m of code.matchAll(/^\s*\[[^\]]+\]:\s*(\S+)/g)) out.push({ target: m[1]!, line: i + 1 });
  });
  return out;
}

test('the slug of a heading is GitHub\'s', () => {
  assert.equal(slug('Echo cancellation: talking over the speaker'), 'echo-cancellation-talking-over-the-speaker');
  assert.equal(slug('Transcripts, `ctl watch` and usage'), 'transcripts-ctl-watch-and-usage');
  assert.equal(slug('GPIO: sysfs or the character device'), 'gpio-sysfs-or-the-character-device');
  assert.equal(slug('`audio.echo_cancel`'), 'audioecho_cancel');
  assert.deepEqual([...anchors('# A\n\n```\n# not a heading\n```\n## A\n')], ['a', 'a-1']);
});

test('every relative link and #anchor in README.md and docs/*.md resolves', () => {
  const bad: string[] = [];
  let checked = 0;
  for (const page of pages) {
    const text = readFileSync(page, 'utf8');
    for (const { target, line } of links(text)) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(target)) continue; // https:, mailto:, file:
      checked++;
      const where = `${relative(REPO, page)}:${line}: ${target}`;
      const [path, anchor] = target.split('#', 2) as [string, string | undefined];
      const file = path === '' ? page : resolve(dirname(page), decodeURIComponent(path));
      if (!existsSync(file)) { bad.push(`${where} (no such file)`); continue; }
      if (anchor === undefined) continue;
      if (!file.endsWith('.md') || statSync(file).isDirectory()) { bad.push(`${where} (an anchor into a file that is not markdown)`); continue; }
      if (!anchors(readFileSync(file, 'utf8')).has(decodeURIComponent(anchor))) bad.push(`${where} (no heading with that anchor in ${relative(REPO, file)})`);
    }
  }
  assert.ok(checked > 20, `links checked: ${checked}`);
  assert.deepEqual(bad, [], 'links that lead nowhere');
});

test('the README is short: at most 200 lines', () => {
  const lines = readFileSync(README, 'utf8').replace(/\n$/, '').split('\n').length;
  assert.ok(lines <= 200, `README.md has ${lines} lines; move the detail into a page of docs/ and link it`);
});

test('the README\'s first screen holds the two commands', () => {
  const first = readFileSync(README, 'utf8').split('\n').slice(0, 25).join('\n');
  assert.match(first, /^bash scripts\/demo\.sh\b/m);
  assert.match(first, /^bash scripts\/test\.sh\b/m);
});

test('every page of docs/ is linked from the README', () => {
  const text = readFileSync(README, 'utf8');
  const linked = new Set(links(text).map((l) => resolve(REPO, l.target.split('#')[0]!)));
  const missing = pages.slice(1).filter((p) => !linked.has(p)).map((p) => relative(REPO, p));
  assert.deepEqual(missing, [], 'docs pages the README does not link');
});
