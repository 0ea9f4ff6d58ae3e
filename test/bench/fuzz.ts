// Seeded mutation of JSON-like values, for the fuzz tests at each border
// (server frames, timers.json / state.json, config values, control lines).
// The same seed gives the same cases, so a failure names the seed that
// reproduces it. Nothing here knows any border's schema: a test passes its
// own valid samples and gets back mutations of them (wrong types, nulls,
// missing and extra fields, huge and odd-sized values, deep nesting).
import { rng } from './util.js';

export type Rand = () => number;

export { rng };

/** An integer in [0, n). */
export const int = (r: Rand, n: number): number => Math.floor(r() * n);
export const pick = <T>(r: Rand, xs: readonly T[]): T => xs[int(r, xs.length)];

/** Values of every JSON type, and a few no JSON parser makes but a bad producer could. */
export function oddValue(r: Rand, depth = 0): unknown {
  switch (int(r, depth > 3 ? 14 : 17)) {
    case 0: return null;
    case 1: return undefined;
    case 2: return true;
    case 3: return 0;
    case 4: return -1;
    case 5: return pick(r, [1e308, -1e308, 2 ** 53 + 1, 8.64e15 + 1, -8.64e15 - 1, 0.5, -0]);
    case 6: return pick(r, [Number.NaN, Number.POSITIVE_INFINITY]);
    case 7: return '';
    case 8: return ' ';
    case 9: return pick(r, ['a', '0', 'null', '{}', '\u0000', '\ud800', '../../etc/passwd', '%s%n', 'é漢🙂']);
    case 10: return 'x'.repeat(pick(r, [1000, 65_537, 1_000_001]));
    case 11: return Buffer.alloc(int(r, 4) * 2 + 1, 0x41).toString('base64'); // odd-length audio once decoded
    case 12: return '!!not base64!!';
    case 13: return [];
    case 14: return {};
    case 15: return Array.from({ length: 1 + int(r, 3) }, () => oddValue(r, depth + 1));
    default: return { [pick(r, ['x', 'data', 'id', '__proto__', 'constructor'])]: oddValue(r, depth + 1) };
  }
}

/** A value nested `n` deep in arrays or objects (a stack-eater). */
export function deep(n: number, leaf: unknown = 1, asArray = true): unknown {
  let v: unknown = leaf;
  for (let i = 0; i < n; i++) v = asArray ? [v] : { a: v };
  return v;
}

/** Every path to a value inside `v` (objects and arrays, at most 64 deep), the root being []. */
export function paths(v: unknown, at: (string | number)[] = [], out: (string | number)[][] = []): (string | number)[][] {
  out.push(at);
  if (at.length >= 64) return out;
  if (Array.isArray(v)) v.forEach((x, i) => paths(x, [...at, i], out));
  else if (v && typeof v === 'object') for (const k of Object.keys(v)) paths((v as Record<string, unknown>)[k], [...at, k], out);
  return out;
}

function clone<T>(v: T): T { return v === undefined ? v : structuredClone(v); }

/**
 * One mutation of `sample`: at a random place, the value is replaced by an
 * odd one, removed, wrapped, given an extra field, nested deep, or the
 * container is swapped for another kind. Returns the new value (the sample
 * is left alone).
 */
export function mutate(r: Rand, sample: unknown): unknown {
  const root = { v: clone(sample) } as Record<string | number, unknown>;
  const all = paths(root.v).map((p) => ['v', ...p]);
  const path = pick(r, all);
  const key = path[path.length - 1];
  let parent: any = root;
  for (const k of path.slice(0, -1)) parent = parent[k];
  const here = parent[key];
  switch (int(r, 7)) {
    case 0: parent[key] = oddValue(r); break;
    case 1: if (Array.isArray(parent)) parent.splice(Number(key), 1); else delete parent[key]; break;
    case 2: parent[key] = [here]; break;
    case 3: parent[key] = { value: here }; break;
    case 4:
      if (here && typeof here === 'object' && !Array.isArray(here)) (here as Record<string, unknown>)[pick(r, ['extra', 'unknownField', '__proto__'])] = oddValue(r);
      else parent[key] = oddValue(r);
      break;
    case 5: parent[key] = deep(pick(r, [50, 500, 2000]), here, r() < 0.5); break; // twice over stays within structuredClone's and JSON's stack
    default:
      if (Array.isArray(here)) parent[key] = Object.fromEntries(here.map((x, i) => [String(i), x]));
      else if (here && typeof here === 'object') parent[key] = Object.values(here);
      else parent[key] = String(here);
  }
  return root.v;
}

/** `rounds` mutations applied one after the other (1 to 3 is typical). */
export function mutateN(r: Rand, sample: unknown, rounds = 1 + int(r, 3)): unknown {
  let v = sample;
  for (let i = 0; i < rounds; i++) {
    try { v = mutate(r, v); } catch (e) { if (!(e instanceof RangeError)) throw e; } // nested past structuredClone's stack: keep the last one
  }
  return v;
}

/** Random bytes (not JSON at all), up to `max` long. */
export function junkBytes(r: Rand, max = 512): Buffer {
  const b = Buffer.alloc(int(r, max + 1));
  for (let i = 0; i < b.length; i++) b[i] = int(r, 256);
  return b;
}

/** JSON text that no longer parses: truncated, an extra brace, a stray byte. */
export function brokenJson(r: Rand, sample: unknown): string {
  const s = JSON.stringify(sample) ?? 'null';
  switch (int(r, 4)) {
    case 0: return s.slice(0, int(r, Math.max(1, s.length)));
    case 1: return s + '}';
    case 2: { const i = int(r, s.length + 1); return s.slice(0, i) + pick(r, ['\u0000', '"', ',', '\n']) + s.slice(i); }
    default: return '';
  }
}
