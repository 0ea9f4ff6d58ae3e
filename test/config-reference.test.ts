// One configuration reference, from the schema (issue 26): the shipped
// config.yaml and docs/configuration.md are generated from the descriptions in
// src/config.ts by `npm run config-docs` (scripts/config-reference.ts). These
// fail when a committed file drifts from what the schema generates, when a key
// has no description, or when what is generated does not load back to the
// schema's defaults.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse } from 'yaml';
import { ConfigSchema, loadConfig } from '../src/config.js';
import { renderConfigYaml, renderConfigDoc, walk, metaOf, commentLines, WIDTH } from '../scripts/config-reference.js';

const REPO = new URL('../../', import.meta.url).pathname;

/** null when equal; else where the two first differ, and what to do about it. */
function driftHint(file: string, committed: string, generated: string): string | null {
  if (committed === generated) return null;
  const a = committed.split('\n'), b = generated.split('\n');
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return `${file} is not what src/config.ts generates (first difference at line ${i + 1}):\n` +
    `  committed: ${JSON.stringify(a[i] ?? '(end of file)')}\n` +
    `  generated: ${JSON.stringify(b[i] ?? '(end of file)')}\n` +
    'Edit the description in src/config.ts (not the generated file), run `npm run config-docs` and commit both.';
}

for (const [file, render] of [['config.yaml', renderConfigYaml], ['docs/configuration.md', renderConfigDoc]] as const) {
  test(`config reference: the committed ${file} is what the schema generates`, () => {
    const hint = driftHint(file, readFileSync(join(REPO, file), 'utf8'), render());
    if (hint) assert.fail(hint);
  });
}

test('config reference: the drift hint names the file, the line and the command', () => {
  const hint = driftHint('config.yaml', 'a: 1\nb: 2\n', 'a: 1\nb: 3\n');
  assert.match(hint ?? '', /^config\.yaml is not what src\/config\.ts generates \(first difference at line 2\)/);
  assert.match(hint ?? '', /committed: "b: 2"\n {2}generated: "b: 3"/);
  assert.match(hint ?? '', /npm run config-docs/);
});

test('config reference: every key of the schema has a description, and the docs list it', () => {
  const keys = walk();
  assert.ok(keys.length > 100, `${keys.length} keys`);
  for (const path of ['hardware', 'live.vad.start_sensitivity', 'gpio.leds.error.active_low', 'gpio.ring.colours.timer', 'wake.keywords[].sensitivity',
    'tools.max_concurrent_commands', 'tools.commands[].parameters.required']) {
    assert.ok(keys.some((k) => k.path === path), `walk finds ${path}`);
  }
  const missing = keys.filter((k) => !metaOf(k.schema).description?.trim()).map((k) => k.path);
  assert.deepEqual(missing, [], `keys without a description in src/config.ts (.describe('...') after the default): ${missing.join(', ')}`);
  assert.ok(metaOf(ConfigSchema).description, 'the file header');
  const doc = renderConfigDoc();
  for (const k of keys) assert.ok(doc.includes(`**\`${k.path}\`**`) || doc.includes(`## \`${k.path}\``), `docs/configuration.md has ${k.path}`);
});

test('config reference: the generated config.yaml loads through the config loader to exactly the schema defaults', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-cfgref-'));
  try {
    const file = join(dir, 'config.yaml');
    writeFileSync(file, renderConfigYaml());
    const { config, file: read } = loadConfig(file);
    assert.equal(read, file);
    assert.deepEqual(config, ConfigSchema.parse({}));
    // Every key is written out: the file is the defaults, not an empty file that happens to load.
    const raw = parse(renderConfigYaml()) as Record<string, unknown>;
    assert.deepEqual(raw, ConfigSchema.parse({}));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('config reference: each example in the schema is valid config for its key', () => {
  const withExample = walk().filter((k) => metaOf(k.schema).example);
  assert.deepEqual(withExample.map((k) => k.path), ['gpio.ring', 'tools.commands', 'tools.mcp']);
  for (const k of withExample) {
    let value = parse(metaOf(k.schema).example!) as unknown;
    // An example may be written as `key:` and the value beneath it.
    if (value && typeof value === 'object' && !Array.isArray(value) && Object.keys(value).length === 1 && k.key in value) value = (value as Record<string, unknown>)[k.key];
    const r = (k.schema as unknown as { safeParse(v: unknown): { success: boolean; error?: unknown } }).safeParse(value);
    assert.ok(r.success, `${k.path} example: ${JSON.stringify(r.error)}`);
    assert.notEqual(value, null, `${k.path} example is not just the default`);
  }
});

test('config reference: comments are wrapped at the width, every word kept in order', () => {
  const text = 'A ' + 'word '.repeat(40) + 'https://example.invalid/' + 'x'.repeat(90) + ' end.\nNew line.';
  const lines = commentLines(text, 4);
  for (const l of lines) assert.ok(l.length <= WIDTH || !l.slice(6).includes(' '), `too long: ${l}`);
  assert.ok(lines.every((l) => l.startsWith('    # ')));
  assert.equal(lines.at(-1), '    # New line.');
  assert.equal(lines.map((l) => l.slice(6)).join(' '), text.replace('\n', ' ').replace(/ +/g, ' ').trim());
  // In the shipped file, only examples (kept as written) and values run past the width.
  for (const l of renderConfigYaml().split('\n')) {
    if (/^\s*# /.test(l) && !/^\s*# {3}/.test(l)) assert.ok(l.length <= WIDTH, `comment past ${WIDTH} columns: ${l}`);
  }
});
