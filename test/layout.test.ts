// The source tree's layout rules (issue 26), read from the .ts sources:
// - the state machine (src/conversation.ts) is imported only by the
//   composition root (src/daemon.ts): adapters meet it through src/ports.ts;
// - no file has a folder of the same name beside it (src/leds.ts next to
//   src/leds/): a module's parts live in one place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const SRC = join(REPO, 'src');
const STATE_MACHINE = join(SRC, 'conversation.ts');
/** Who may import the state machine: the composition root, which builds it and wires the adapters to it. */
const MAY_IMPORT_STATE_MACHINE = new Set([join(SRC, 'daemon.ts')]);

function sources(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return /\.[cm]?ts$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : [];
  });
}

/** The files a source imports (static, dynamic, re-exports), resolved to the .ts they were compiled from. */
function importsOf(file: string, text: string): string[] {
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)['"]([^'"]+)['"]/g)].map((m) => m[1]!);
  return specs.filter((s) => s.startsWith('.')).map((s) => resolve(dirname(file), s).replace(/\.([cm]?)js$/, '.$1ts'));
}

test('only the composition root imports the state machine: every adapter meets it through src/ports.ts', () => {
  const importers = sources(SRC).filter((f) => f !== STATE_MACHINE && importsOf(f, readFileSync(f, 'utf8')).includes(STATE_MACHINE));
  // The scan must see the one import that is allowed, or it proves nothing.
  for (const root of MAY_IMPORT_STATE_MACHINE) assert.ok(importers.includes(root), `${relative(REPO, root)} imports src/conversation.ts (the scan missed it)`);
  const wrong = importers.filter((f) => !MAY_IMPORT_STATE_MACHINE.has(f)).map((f) => relative(REPO, f));
  assert.deepEqual(wrong, [], `these import the state machine (src/conversation.ts); import the ports from src/ports.ts instead: ${wrong.join(', ')}`);
});

test('the import scan sees static, type-only, dynamic and re-export imports', () => {
  const f = join(SRC, 'x', 'a.ts');
  const text = "import type { A } from '../conversation.js';\nimport { B } from \"./b.js\";\nexport { C } from '../c.js';\nconst d = await import('./d.js');\nimport './e.js';\nimport { z } from 'zod';";
  assert.deepEqual(importsOf(f, text).map((p) => relative(SRC, p)), ['conversation.ts', join('x', 'b.ts'), 'c.ts', join('x', 'd.ts'), join('x', 'e.ts')]);
});

test('no source file has a folder of the same name beside it', () => {
  const clashes = sources(SRC).filter((f) => {
    const dir = f.replace(/\.[cm]?ts$/, '');
    try { return statSync(dir).isDirectory(); } catch { return false; }
  }).map((f) => relative(REPO, f));
  assert.deepEqual(clashes, [], `a file beside a folder of its name (move it into the folder): ${clashes.join(', ')}`);
});
