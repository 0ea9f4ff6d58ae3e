// One configuration reference, from the schema (issue 26). Each key's meaning
// lives next to its default in src/config.ts (`.describe()`, or `.meta()` with
// an `example`); this writes the shipped config.yaml (the defaults, each key's
// description as a comment above it) and docs/configuration.md (a reference
// with each key's type, allowed values, default and description) from it.
//
//   npm run config-docs      regenerate both (after editing src/config.ts)
//
// test/config-reference.test.ts regenerates both in memory and fails when the
// committed files differ, or a key has no description.
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { z } from 'zod';
import { ConfigSchema, DEFAULT_CONFIG_PATHS } from '../src/config.js';

/** Column at which comments in config.yaml are wrapped. */
export const WIDTH = 78;

// zod's internals, read-only: the walker needs each schema's kind and inner parts.
type Schema = z.core.$ZodType;
interface Def {
  type: string;
  innerType?: Schema;
  shape?: Record<string, Schema>;
  element?: Schema;
  keyType?: Schema;
  valueType?: Schema;
  entries?: Record<string, string | number>;
  values?: unknown[];
  format?: string;
  checks?: { _zod: { def: CheckDef } }[];
  getter?: () => Schema;
}
interface CheckDef { check: string; value?: number; inclusive?: boolean; minimum?: number; maximum?: number; format?: string; pattern?: RegExp }
const def = (s: Schema) => s._zod.def as unknown as Def;

export interface KeyMeta { description?: string; example?: string }
export const metaOf = (s: Schema): KeyMeta => (z.globalRegistry.get(s) ?? {}) as KeyMeta;

const WRAPPERS = new Set(['default', 'prefault', 'nullable', 'optional', 'readonly', 'catch', 'nonoptional']);
/** The schema under defaults, nullable and optional, and whether null / absence are allowed. */
export function unwrap(s: Schema): { inner: Schema; nullable: boolean; optional: boolean } {
  let inner = s, nullable = false, optional = false;
  for (;;) {
    const d = def(inner);
    if (d.type === 'nullable') nullable = true;
    if (d.type === 'optional') optional = true;
    if (d.type === 'lazy' && d.getter) { inner = d.getter(); continue; }
    if (!WRAPPERS.has(d.type) || !d.innerType) return { inner, nullable, optional };
    inner = d.innerType;
  }
}
const shapeOf = (s: Schema): Record<string, Schema> | null => {
  const { inner } = unwrap(s);
  return def(inner).type === 'object' ? def(inner).shape! : null;
};
/** For a list of mappings, the mapping's keys. */
const itemShapeOf = (s: Schema): Record<string, Schema> | null => {
  const { inner } = unwrap(s);
  return def(inner).type === 'array' ? shapeOf(def(inner).element!) : null;
};

/** Every key of the schema, depth first in schema order: `path` as written in the docs (`a.b`, `a[].b`). */
export interface KeyInfo { path: string; key: string; schema: Schema; kind: 'block' | 'list' | 'leaf'; depth: number }
export function walk(root: z.ZodObject = ConfigSchema): KeyInfo[] {
  const out: KeyInfo[] = [];
  const visit = (shape: Record<string, Schema>, prefix: string, depth: number) => {
    for (const [key, schema] of Object.entries(shape)) {
      const path = prefix + key;
      const sub = shapeOf(schema), items = itemShapeOf(schema);
      out.push({ path, key, schema, kind: sub ? 'block' : items ? 'list' : 'leaf', depth });
      if (sub) visit(sub, `${path}.`, depth + 1);
      if (items) visit(items, `${path}[].`, depth + 1);
    }
  };
  visit(root.shape as Record<string, Schema>, '', 0);
  return out;
}

/** Greedy word wrap of `text` as `# ` comment lines at `indent`; a newline in the text starts a new line. */
export function commentLines(text: string, indent: number, width = WIDTH): string[] {
  const prefix = `${' '.repeat(indent)}# `;
  const out: string[] = [];
  for (const para of text.split('\n')) {
    let line = '';
    for (const word of para.split(/\s+/).filter(Boolean)) {
      if (line && prefix.length + line.length + 1 + word.length > width) { out.push(prefix + line); line = word; }
      else line = line ? `${line} ${word}` : word;
    }
    out.push((prefix + line).trimEnd());
  }
  return out;
}

// ---- config.yaml

/**
 * The shipped config.yaml: the schema's defaults in schema order, each key's
 * description as comments above it (once per schema: the four LEDs share one,
 * so `pin` and `active_low` are explained under the first), an example (as
 * `#   ` lines) where the schema has one, a blank line between top-level keys.
 * Mappings are written key by key; everything else, null and lists included,
 * as YAML gives it.
 */
export function renderConfigYaml(): string {
  const defaults = ConfigSchema.parse({}) as Record<string, unknown>;
  const out = [...commentLines(metaOf(ConfigSchema).description ?? '', 0), ''];
  const explained = new Set<Schema>();
  const object = (shape: Record<string, Schema>, value: Record<string, unknown>, indent: number) => {
    const pad = ' '.repeat(indent);
    Object.entries(shape).forEach(([key, schema], i) => {
      if (indent === 0 && i > 0) out.push('');
      const { description, example } = metaOf(schema);
      if (description && !explained.has(schema)) out.push(...commentLines(description, indent));
      explained.add(schema);
      if (example) out.push(...example.split('\n').map((l) => `${pad}#   ${l}`.trimEnd()));
      const v = value[key], sub = shapeOf(schema);
      if (sub && v !== null && typeof v === 'object' && !Array.isArray(v)) {
        out.push(`${pad}${key}:`);
        object(sub, v as Record<string, unknown>, indent + 2);
      } else {
        out.push(...stringify({ [key]: v }, { lineWidth: 0 }).trimEnd().split('\n').map((l) => pad + l));
      }
    });
  };
  object(ConfigSchema.shape as Record<string, Schema>, defaults, 0);
  return out.join('\n') + '\n';
}

// ---- docs/configuration.md

const flow = (v: unknown) => stringify(v, { lineWidth: 0, collectionStyle: 'flow' }).trim();
const code = (s: string) => (s.includes('`') ? `\`\` ${s} \`\`` : `\`${s}\``);
const plural = (n: number, one: string) => `${n} ${one}${n === 1 ? '' : 's'}`;

/** What values a schema takes, in words, from its kind and checks (refinements in code are not shown). */
export function typeText(s: Schema): string {
  const { inner, nullable, optional } = unwrap(s);
  const d = def(inner);
  const checks = (d.checks ?? []).map((c) => c._zod.def);
  let t: string;
  switch (d.type) {
    case 'boolean': t = '`true` or `false`'; break;
    case 'enum': t = `one of ${Object.values(d.entries!).map((v) => code(String(v))).join(', ')}`; break;
    case 'literal': t = d.values!.map((v) => code(String(v))).join(' or '); break;
    case 'number': {
      const int = checks.some((c) => c.check === 'number_format' && (c.format === 'safeint' || c.format === 'int32'));
      const lo = checks.find((c) => c.check === 'greater_than'), hi = checks.find((c) => c.check === 'less_than');
      const range = lo?.inclusive && hi?.inclusive ? `${lo.value} to ${hi.value}`
        : [lo && `${lo.inclusive ? 'at least' : 'more than'} ${lo.value}`, hi && `${hi.inclusive ? 'at most' : 'less than'} ${hi.value}`].filter(Boolean).join(', ');
      t = `${int ? 'integer' : 'number'}${range ? `, ${range}` : ''}`;
      break;
    }
    case 'string': {
      const parts: string[] = [];
      if (d.format === 'url') parts.push('a URL');
      for (const c of checks) {
        if (c.check === 'min_length') parts.push(c.minimum === 1 ? 'not empty' : `at least ${plural(c.minimum!, 'character')}`);
        if (c.check === 'max_length') parts.push(`at most ${plural(c.maximum!, 'character')}`);
        if (c.check === 'string_format' && c.format === 'regex') parts.push(`matching ${code(String(c.pattern))}`);
      }
      t = ['string', ...parts].join(', ');
      break;
    }
    case 'array': {
      const min = checks.find((c) => c.check === 'min_length')?.minimum, max = checks.find((c) => c.check === 'max_length')?.maximum;
      const count = [min && `at least ${min}`, max && `at most ${max}`].filter(Boolean).join(', ');
      t = shapeOf(d.element!) ? `a list of entries (keys below)${count ? `, ${count}` : ''}` : `a list (each: ${typeText(d.element!)}${count ? `; ${count}` : ''})`;
      break;
    }
    case 'object': t = `a mapping of ${Object.keys(d.shape!).map(code).join(', ')}`; break;
    case 'record': t = `a mapping from names (${typeText(d.keyType!)}) to ${typeText(d.valueType!)}`; break;
    default: t = d.type;
  }
  return `${t}${nullable ? ', or `null`' : ''}${optional ? ' (optional)' : ''}`;
}

/** The default in words: the value a missing key gets, or that the key is required. */
export function defaultText(s: Schema): string {
  const r = (s as z.ZodType).safeParse(undefined);
  if (!r.success) return 'Required.';
  return r.data === undefined ? 'Default: not set.' : `Default: ${code(flow(r.data))}.`;
}

function generalRules(): string[] {
  const [etc, local] = DEFAULT_CONFIG_PATHS;
  return [
    '## Where it lives, and what happens when it is wrong',
    '',
    `- The daemon reads \`--config FILE\` if given, else \`${etc}\`, else \`${local}\`; with none of them, the built-in defaults below.`,
    `- \`scripts/install.sh\` installs the repository's [\`config.yaml\`](../config.yaml) as \`${etc}\` once and keeps yours on upgrade (the new default lands beside it as \`config.yaml.dist\`). That file is generated from the same schema as this page: every key with its default, and its description as a comment.`,
    '- Every key is optional: a missing one gets its default. Where a key takes `null`, null is a value of its own (its description says what it means).',
    '- A misspelt key, a wrong type or a value out of range stops the daemon with an error that names every bad key and the file, and exit code 78 (EX_CONFIG), which the systemd unit does not restart-loop on (`RestartPreventExitStatus=78`). So does a file that is not valid YAML (the error gives the line and column), and a key file that is configured but cannot be read.',
    '- `systemctl reload live-speaker` (SIGHUP) applies a changed file without a restart. A broken one is refused and the running config kept (the journal and `systemctl status` say why). Changes to `hardware`, `gpio`, `control` and `state` need a restart; the log line of the reload names them.',
    '- `hardware:` applies a voice HAT\'s settings beneath the file: any key the file sets still wins.',
    '',
  ];
}

/**
 * docs/configuration.md: the general rules, then a section per block (a
 * sub-section per nested block and per list of mappings), each key with its
 * type and allowed values (from the schema's checks), default and description.
 */
export function renderConfigDoc(): string {
  const keys = walk();
  const out: string[] = [
    '# Configuration reference',
    '',
    '<!-- Generated from the schema in src/config.ts by `npm run config-docs`: edit the',
    '     descriptions there, not here. test/config-reference.test.ts fails when this drifts. -->',
    '',
    'Every key of `config.yaml`: what it does, the values it takes (from the schema\'s checks;',
    'some keys are checked further in code, and the error says so) and its default.',
    '',
    ...generalRules(),
    '## Keys',
    '',
    ...keys.filter((k) => k.depth === 0).map((k) => `- [\`${k.path}\`](#${anchor(k.path)})`),
    '',
  ];
  const entry = (k: KeyInfo) => {
    const { description, example } = metaOf(k.schema);
    out.push(`- **\`${k.path}\`**: ${typeText(k.schema)}. ${defaultText(k.schema)}`, '');
    if (description) out.push(`  ${description.replace(/\n/g, ' ')}`, '');
    if (example) out.push('  ```yaml', ...example.split('\n').map((l) => `  ${l}`), '  ```', '');
  };
  const section = (k: KeyInfo | null, children: KeyInfo[]) => {
    if (k) {
      const { description, example } = k.kind === 'list' ? {} as KeyMeta : metaOf(k.schema); // a list's own entry has them
      out.push(`${k.depth === 0 ? '##' : '###'} \`${k.path}\``, '');
      if (description) out.push(description.replace(/\n/g, ' '), '');
      if (example) out.push('```yaml', ...example.split('\n'), '```', '');
      if (k.kind === 'list') out.push(`Each entry of \`${k.path.replace(/\[\]$/, '')}\`:`, '');
      else if (unwrap(k.schema).nullable) out.push(`A mapping of the keys below, or \`null\`. ${defaultText(k.schema)}`, '');
    }
    for (const c of children) if (c.kind !== 'block') entry(c);
    for (const c of children) {
      const prefix = c.kind === 'list' ? `${c.path}[].` : `${c.path}.`;
      const below = keys.filter((x) => x.depth === c.depth + 1 && x.path.startsWith(prefix));
      if (c.kind === 'block') section(c, below);
      if (c.kind === 'list' && below.length) section({ ...c, path: `${c.path}[]` }, below);
    }
  };
  // Top-level leaves (hardware) get a section of their own, like the blocks.
  for (const k of keys.filter((x) => x.depth === 0)) {
    if (k.kind === 'leaf') { out.push(`## \`${k.path}\``, ''); entry(k); }
    else section(null, [k]);
  }
  return out.join('\n').replace(/\n{3,}/g, '\n\n').trimEnd() + '\n';
}

/** GitHub's heading anchor for a heading that is just `path` in backticks. */
function anchor(path: string): string {
  return path.toLowerCase().replace(/[^a-z0-9_\- ]/g, '').replace(/ /g, '-');
}

export const REPO = fileURLToPath(new URL('../..', import.meta.url));
export const OUTPUTS = { 'config.yaml': renderConfigYaml, 'docs/configuration.md': renderConfigDoc } as const;

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  for (const [file, render] of Object.entries(OUTPUTS)) {
    const text = render();
    mkdirSync(dirname(REPO + file), { recursive: true });
    writeFileSync(REPO + file, text);
    process.stdout.write(`wrote ${file} (${text.length} bytes)\n`);
  }
}
