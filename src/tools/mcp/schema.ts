// MCP tools as Live API function declarations: the name (a prefix per
// server, characters the API takes, at most 64) and the argument schema (JSON
// Schema turned into the Live API's OpenAPI-style `parameters`). Why
// `parameters` and not `parametersJsonSchema`: the Live docs and the SDK's
// own examples declare functions with `parameters`; reports against the 2.5
// native-audio Live models (python-genai#1147, livekit/agents#2940) say calls
// came with empty arguments when the schema was sent as
// `parametersJsonSchema`, and that `additionalProperties` inside `parameters`
// closes the session (1007). So: convert, and drop what the subset lacks.
import type { FunctionDeclaration, Schema } from '@google/genai';

/** Gemini function names: a letter or underscore first, then a-z A-Z 0-9 _ . : -, at most 64 (the older, stricter limit; genai 2.32 says 128). */
export const MAX_NAME = 64;
export const NAME_RE = /^[A-Za-z_][A-Za-z0-9_.:-]*$/;
/** Parameter (property) names: a letter or underscore first, then a-z A-Z 0-9 _, at most 64. */
const PARAM_RE = /^[A-Za-z_][A-Za-z0-9_]{0,63}$/;
const MAX_DEPTH = 8;
const MAX_DESCRIPTION = 1024;
/** A declaration bigger than this (JSON) is dropped: a server cannot fill the setup with one tool. */
export const MAX_DECLARATION_BYTES = 16 * 1024;

/** The declared name for a server's tool: `<prefix>__<tool>` with characters the API refuses made `_`; null when it cannot be made valid. */
export function declaredName(prefix: string, tool: string): string | null {
  if (!tool) return null;
  const name = `${prefix}__${tool.replace(/[^A-Za-z0-9_.:-]/g, '_')}`;
  return name.length <= MAX_NAME && NAME_RE.test(name) ? name : null;
}

/** A glob over tool names: `*` any run of characters, `?` one; the rest literal. Matches the server's own tool name. */
export function globMatch(glob: string, name: string): boolean {
  const re = new RegExp(`^${glob.split('').map((c) => (c === '*' ? '.*' : c === '?' ? '.' : c.replace(/[\\^$.+()|[\]{}]/g, '\\$&'))).join('')}$`);
  return re.test(name);
}

/** Allowed = matches an allow glob and no deny glob (deny wins). */
export function allowed(name: string, allow: string[], deny: string[]): boolean {
  return allow.some((g) => globMatch(g, name)) && !deny.some((g) => globMatch(g, name));
}

type Json = Record<string, any>;
export interface Converted { schema: Schema | null; dropped: string[] }

const TYPES = new Set(['string', 'number', 'integer', 'boolean', 'array', 'object']);

/**
 * A tool's JSON Schema (`inputSchema`) in the Live API's subset: `type` in capitals; kept: description,
 * enum (strings), items, properties, required (only properties that are kept), minimum/maximum,
 * minLength/maxLength, minItems/maxItems, pattern, nullable. Converted: `type: [X, "null"]` and
 * `anyOf: [X, {type: null}]` → X with nullable; `oneOf` → anyOf; `const` → a one-value enum; a one-element
 * `allOf` → that schema; local `$ref`s (#/$defs, #/definitions) inlined. Dropped (named in `dropped`):
 * additionalProperties, $schema, $id, $defs, title, default, examples, format, not, if/then/else, patternProperties,
 * a property whose name the API refuses, an argument with no type the API can take (a free-form object too: the
 * API refuses an OBJECT without properties). A top-level schema with no properties left gives null (no `parameters`).
 */
export function toLiveSchema(input: unknown): Converted {
  const dropped: string[] = [];
  const root = (input && typeof input === 'object' ? input : {}) as Json;
  const defs = { ...(root.definitions ?? {}), ...(root.$defs ?? {}) } as Json;
  const conv = (s: unknown, path: string, depth: number, refs: string[]): Schema | null => {
    if (!s || typeof s !== 'object' || Array.isArray(s)) { dropped.push(`${path || '(root)'}: not a schema`); return null; }
    let j = s as Json;
    if (depth > MAX_DEPTH) { dropped.push(`${path}: nested deeper than ${MAX_DEPTH}`); return null; }
    if (typeof j.$ref === 'string') {
      const m = /^#\/(?:\$defs|definitions)\/(.+)$/.exec(j.$ref);
      if (!m || !defs[m[1]] || refs.includes(j.$ref)) { dropped.push(`${path}: $ref ${j.$ref} (${m && defs[m[1]] ? 'recursive' : 'not a local definition'})`); return null; }
      return conv({ ...defs[m[1]], ...(j.description ? { description: j.description } : {}) }, path, depth + 1, [...refs, j.$ref]);
    }
    if (Array.isArray(j.allOf)) {
      if (j.allOf.length === 1) j = { ...j.allOf[0], ...j, allOf: undefined };
      else { dropped.push(`${path}: allOf with ${j.allOf.length} parts`); const { allOf: _a, ...rest } = j; j = rest; }
    }
    const alts = Array.isArray(j.anyOf) ? j.anyOf : Array.isArray(j.oneOf) ? j.oneOf : null;
    let nullable = false;
    let type: unknown = j.type;
    if (Array.isArray(type)) {
      nullable = type.includes('null');
      const rest = type.filter((t) => t !== 'null');
      if (rest.length === 1) type = rest[0];
      else { dropped.push(`${path}: type ${JSON.stringify(j.type)}`); return null; }
    }
    if (alts) {
      const real = alts.filter((a: Json) => !(a && a.type === 'null'));
      nullable ||= real.length < alts.length;
      if (real.length === 1) return withNullable(conv({ ...real[0], ...(j.description ? { description: j.description } : {}) }, path, depth + 1, refs), nullable);
      const any = real.map((a: unknown, i: number) => conv(a, `${path}|${i}`, depth + 1, refs)).filter((x: Schema | null): x is Schema => x !== null);
      if (!any.length) { dropped.push(`${path}: no usable alternative`); return null; }
      return { anyOf: any, ...desc(j), ...(nullable ? { nullable: true } : {}) };
    }
    if (type === undefined) type = j.properties ? 'object' : j.items ? 'array' : j.enum || j.const !== undefined ? 'string' : undefined;
    if (typeof type !== 'string' || !TYPES.has(type)) { dropped.push(`${path || '(root)'}: ${type === undefined ? 'no type' : `type ${String(type)}`}`); return null; }
    const out: Schema = { type: type.toUpperCase() as Schema['type'], ...desc(j) };
    if (nullable || j.nullable === true) out.nullable = true;
    const en = j.const !== undefined ? [j.const] : Array.isArray(j.enum) ? j.enum : null;
    if (en) {
      if (type === 'string' && en.every((v: unknown) => typeof v === 'string')) out.enum = en;
      else dropped.push(`${path}: enum of non-strings`);
    }
    for (const k of ['minimum', 'maximum'] as const) if (typeof j[k] === 'number' && (type === 'number' || type === 'integer')) out[k] = j[k];
    if (type === 'string') {
      if (Number.isInteger(j.minLength)) out.minLength = String(j.minLength);
      if (Number.isInteger(j.maxLength)) out.maxLength = String(j.maxLength);
      if (typeof j.pattern === 'string') out.pattern = j.pattern;
    }
    if (type === 'array') {
      if (Number.isInteger(j.minItems)) out.minItems = String(j.minItems);
      if (Number.isInteger(j.maxItems)) out.maxItems = String(j.maxItems);
      const items = j.items === undefined ? null : conv(j.items, `${path}[]`, depth + 1, refs);
      if (!items) { if (j.items === undefined) dropped.push(`${path}: array without items`); return null; }
      out.items = items;
    }
    if (type === 'object') {
      const kept: [string, Schema][] = [];
      for (const [k, v] of Object.entries((j.properties ?? {}) as Json)) {
        const p = path ? `${path}.${k}` : k;
        if (!PARAM_RE.test(k)) { dropped.push(`${p}: a parameter name the API refuses`); continue; }
        const c = conv(v, p, depth + 1, refs);
        if (c) kept.push([k, c]);
      }
      // Own properties whatever the names: `props[k] = c` with k '__proto__' would set the prototype instead.
      const props: Record<string, Schema> = Object.fromEntries(kept);
      if (!kept.length) {
        if (path) { dropped.push(`${path}: an object without properties`); return null; }
        return null; // the top level: no parameters at all
      }
      out.properties = props;
      const req = Array.isArray(j.required) ? j.required.filter((r: unknown) => typeof r === 'string' && Object.hasOwn(props, r)) : [];
      if (req.length) out.required = req;
    }
    return out;
  };
  const schema = conv(root, '', 0, []);
  return { schema, dropped };
}

function withNullable(s: Schema | null, nullable: boolean): Schema | null { return s && nullable ? { ...s, nullable: true } : s; }
function desc(j: Json): { description?: string } {
  return typeof j.description === 'string' && j.description ? { description: j.description.slice(0, MAX_DESCRIPTION) } : {};
}

/** One MCP tool as it is listed (tools/list), the part we read. */
export interface McpToolInfo { name: string; description?: string; inputSchema?: unknown }

/** The declaration for a listed tool, or why it cannot be declared. */
export function toDeclaration(prefix: string, t: McpToolInfo): { declaration: FunctionDeclaration; dropped: string[] } | { error: string } {
  const name = declaredName(prefix, t.name);
  if (!name) return { error: `its name '${t.name.slice(0, 80)}' cannot be made a valid function name (letters, digits, _ . : -, at most ${MAX_NAME} with the prefix)` };
  const { schema, dropped } = toLiveSchema(t.inputSchema);
  const declaration: FunctionDeclaration = { name, description: (t.description ?? '').slice(0, MAX_DESCRIPTION) || `${t.name} (from the ${prefix} MCP server)`, ...(schema ? { parameters: schema } : {}) };
  if (JSON.stringify(declaration).length > MAX_DECLARATION_BYTES) return { error: `its declaration is larger than ${MAX_DECLARATION_BYTES} bytes` };
  return { declaration, dropped };
}
