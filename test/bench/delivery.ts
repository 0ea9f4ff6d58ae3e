/**
 * Did every sample of a reply reach the speaker, in order? Replies made for
 * the question (a marked head and tail around a known random body) and a
 * sample-level matcher against the sink recording. Used by the playback
 * tests and the bench.
 *
 * The head (660 Hz) and tail (880 Hz) are tones with a little seeded noise
 * on them, so that `findTone` hears them and no stretch of the reply repeats
 * (a pure tone matches itself one period later, which would hide a loss).
 */

import { rng } from './util.js';

const RATE = 24000;

function markTone(freq: number, ms: number, seed: number): Buffer {
  const r = rng(seed);
  const n = Math.round((ms * RATE) / 1000);
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(0.3 * 32767 * Math.sin((2 * Math.PI * freq * i) / RATE) + (r() * 2 - 1) * 300), i * 2);
  return b;
}

/** `ms` of seeded random signal at `amplitude` (fraction of full scale), never silent. */
export function randomBody(ms: number, seed: number, amplitude = 0.3): Buffer {
  const r = rng(seed);
  const n = Math.round((ms * RATE) / 1000);
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round((r() * 2 - 1) * amplitude * 32767), i * 2);
  return b;
}

export const HEAD_HZ = 660;
export const TAIL_HZ = 880;

/** A reply of `ms` (24 kHz s16le): 100 ms 660 Hz head (less for very short ones), random body, the same length of 880 Hz tail. */
export function markedReply(ms: number, seed: number): Buffer {
  const mark = Math.min(100, Math.floor(ms / 3));
  return Buffer.concat([markTone(HEAD_HZ, mark, seed + 1), randomBody(ms - 2 * mark, seed), markTone(TAIL_HZ, mark, seed + 2)]);
}

export interface Delivery {
  /** Samples of the reply found in the recording, in order (100 = every one). */
  deliveredPct: number;
  missingMs: number;
  /** Where the first missing stretches are (ms into the reply). */
  missing: { atMs: number; ms: number }[];
  /** Silence (or anything else) inserted between consecutive reply samples: count and total. */
  gaps: number;
  gapMs: number;
  gapList: { atMs: number; ms: number }[];
  /** Sample positions in the recording of the reply's first found sample and just after its last; -1 when not found. */
  firstAt: number;
  endAt: number;
}

const view = (b: Buffer): Int16Array => {
  const c = b.byteOffset % 2 === 0 ? b : Buffer.from(b);
  return new Int16Array(c.buffer, c.byteOffset, c.length >> 1);
};

/**
 * Walks the reply sample by sample through the recording (from sample `from`
 * on): a sample that follows the previous one there counts as delivered; when
 * the next one is not there, the next `run` samples of the reply are looked
 * for further on (up to `maxGapMs`): found, the stretch between is a gap
 * (added audio); not found, `run` samples are missing. Samples must match
 * within `tolerance` (the sound server passes s16 through unchanged at 100%).
 * The reply's first stretch is looked for from `from` on (within `withinMs`).
 */
export function matchDelivery(sent: Buffer, recorded: Buffer, opts: { from?: number; withinMs?: number; tolerance?: number; run?: number; maxGapMs?: number } = {}): Delivery {
  const s = view(sent);
  const r = view(recorded);
  const tol = opts.tolerance ?? 2;
  const K = opts.run ?? 48;
  const maxGap = Math.round(((opts.maxGapMs ?? 3000) * RATE) / 1000);
  const runAt = (i: number, p: number, n: number) => {
    if (p < 0 || p + n > r.length) return false;
    for (let k = 0; k < n; k++) if (Math.abs(s[i + k] - r[p + k]) > tol) return false;
    return true;
  };
  const search = (i: number, lo: number, hi: number, n: number) => {
    for (let q = Math.max(0, lo); q <= Math.min(r.length - n, hi); q++) if (Math.abs(s[i] - r[q]) <= tol && runAt(i, q, n)) return q;
    return -1;
  };
  const missing: { at: number; n: number }[] = [];
  const gaps: { at: number; n: number }[] = [];
  let i = 0;
  let p = -1;
  while (i < s.length) { // the first stretch of the reply that is there anchors it
    const n = Math.min(K, s.length - i);
    const from = opts.from ?? 0;
    p = search(i, from, opts.withinMs === undefined ? r.length : from + Math.round((opts.withinMs * RATE) / 1000), n);
    if (p >= 0) break;
    missing.push({ at: i, n });
    i += n;
  }
  const firstAt = p;
  if (p >= 0) {
    let streak = 0; // missing runs in a row: past 50 the rest is taken as missing (a search per run would be slow)
    while (i < s.length) {
      if (p < r.length && Math.abs(s[i] - r[p]) <= tol) { i++; p++; streak = 0; continue; }
      const n = Math.min(K, s.length - i);
      const q = streak > 50 ? -1 : search(i, p + 1, p + maxGap, n);
      if (q >= 0) { gaps.push({ at: i, n: q - p }); p = q; streak = 0; continue; }
      missing.push({ at: i, n });
      i += n;
      streak++;
    }
  }
  const lost = missing.reduce((a, m) => a + m.n, 0);
  const ms = (n: number) => Math.round((n * 10000) / RATE) / 10;
  const merged: { atMs: number; ms: number }[] = [];
  for (const m of missing) {
    const last = merged[merged.length - 1];
    if (last && Math.abs(last.atMs + last.ms - ms(m.at)) < 0.2) last.ms = ms(m.at + m.n) - last.atMs; else merged.push({ atMs: ms(m.at), ms: ms(m.n) });
  }
  return {
    // 100 only when not one sample is missing (rounding must not turn a lost sample or two of a 20 s reply into 100).
    deliveredPct: lost === 0 ? 100 : Math.min(99.999, Math.round((100000 * (s.length - lost)) / s.length) / 1000),
    missingMs: ms(lost),
    missing: merged.slice(0, 5),
    gaps: gaps.length,
    gapMs: ms(gaps.reduce((a, g) => a + g.n, 0)),
    gapList: gaps.slice(0, 5).map((g) => ({ atMs: ms(g.at), ms: ms(g.n) })),
    firstAt,
    endAt: firstAt < 0 ? -1 : p,
  };
}
