// docs/architecture.md names files and, in backticks, the types and
// functions in them. A rename or a move that leaves the doc behind makes the
// doc wrong: this test fails instead. Each path must exist; each backticked
// identifier (a name with a capital letter, or written with its parentheses)
// must occur, as a word, in one of the files its paragraph, list item or
// table row names (in any file under src/ when that block names none).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

const REPO = new URL('../../', import.meta.url).pathname;
export const DOC = 'docs/architecture.md';


const PATH = /(?<![\w/.-])(?:src|test|scripts|docs|bench|systemd)\/[\w./<>-]*/g;

/** Paths named in a piece of text: placeholders (`src/tools/<name>.ts`) left out, a sentence's full stop taken off. */
export function pathsIn(text: string): string[] {
  return [...text.matchAll(PATH)].map((m) => m[0].replace(/[.,;:]+$/, '')).filter((p) => !p.includes('<'));
}

/** Backticked names that are code identifiers: `EchoStage.process`, `end()`, `HELD_AUDIO_MAX_MS`; not config keys or commands. */
export function identifiersIn(text: string): string[] {
  const out: string[] = [];
  for (const m of text.matchAll(/`([^`\n]+)`/g)) {
    const t = m[1].replace(/\([^()]*\)$/, '');
    const hadParens = t !== m[1];
    if (!/^[A-Za-z_$][\w$]*(\.[A-Za-z_$][\w$]*)*$/.test(t)) continue;
    if (!hadParens && !/[A-Z]/.test(t)) continue; // snake_case config keys, tool names, states
    out.push(t);
  }
  return out;
}

/** The doc's blocks: paragraphs, list items, table rows; a fenced block is one block. */
export function blocksOf(md: string): string[] {
  const blocks: string[] = [];
  let cur: string[] = [];
  let fenced = false;
  const flush = () => { if (cur.length) blocks.push(cur.join('\n')); cur = []; };
  for (const line of md.split('\n')) {
    if (line.startsWith('```')) { if (fenced) { cur.push(line); flush(); fenced = false; continue; } flush(); fenced = true; cur.push(line); continue; }
    if (fenced) { cur.push(line); continue; }
    if (line.trim() === '' || /^\s*(\d+\.|[-*]) /.test(line) || line.startsWith('|') || line.startsWith('#')) flush();
    if (line.trim() !== '') cur.push(line);
    if (line.startsWith('|') || line.startsWith('#')) flush();
  }
  flush();
  return blocks;
}

const here = (p: string) => join(REPO, p);
const word = (name: string) => new RegExp(`(?<![\\w$])${name.replace(/\$/g, '\\$')}(?![\\w$])`);

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((n) => { const p = join(dir, n); return statSync(p).isDirectory() ? filesUnder(p) : [p]; });
}

/** Every problem with the doc: a path that does not exist, an identifier in none of its block's files. */
export function problems(md: string): string[] {
  const out: string[] = [];
  const allSrc = filesUnder(join(REPO, 'src')).filter((f) => f.endsWith('.ts') || f.endsWith('.cts'));
  for (const block of blocksOf(md)) {
    const paths = [...new Set(pathsIn(block))];
    for (const p of paths) if (!existsSync(here(p))) out.push(`${p}: no such file or directory`);
    if (block.startsWith('```')) continue;
    const files = paths.map(here).filter((f) => existsSync(f) && statSync(f).isFile());
    const texts = (files.length ? files : allSrc).map((f) => readFileSync(f, 'utf8'));
    for (const id of identifiersIn(block)) {
      const parts = id.split('.');
      if (!texts.some((t) => parts.every((part) => word(part).test(t)))) {
        out.push(`\`${id}\` is in none of ${files.length ? paths.join(', ') : 'src/'} (${block.split('\n')[0].slice(0, 60)}...)`);
      }
    }
  }
  return out;
}

test('architecture doc: every path it names exists, every identifier is in a file it names beside it', () => {
  const md = readFileSync(join(REPO, DOC), 'utf8');
  assert.ok(pathsIn(md).length >= 40, 'the doc names the files it describes');
  assert.ok(identifiersIn(md).length >= 80, 'the doc names the types and functions it describes');
  assert.deepEqual(problems(md), []);
});

test('architecture doc: the check itself catches a moved file and a renamed function', () => {
  assert.deepEqual(problems('The state machine: `src/conversation.ts`.'), []);
  assert.deepEqual(problems('The state machine: `src/conversaton.ts`.'), ['src/conversaton.ts: no such file or directory']);
  assert.equal(problems('Barge-in: `bargeIn()` in `src/conversation.ts`.').length, 0);
  assert.match(problems('Barge-in: `bargeInNow()` in `src/conversation.ts`.')[0], /`bargeInNow` is in none of src\/conversation\.ts/);
  // In the wrong file: the file beside it is what is checked.
  assert.equal(problems('Barge-in: `bargeIn()` in `src/audio/vad.ts`.').length, 1);
  // Config keys, tool names and placeholders are not checked as code.
  assert.deepEqual(problems('`audio.echo_cancel`, `set_volume`, `src/tools/<name>.ts`.'), []);
});
