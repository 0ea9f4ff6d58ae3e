// Small helpers for the bench: order statistics and per-process cost from /proc.
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

export interface Summary { n: number; median: number | null; p95: number | null; min: number | null; max: number | null }

/** Median and p95 (nearest rank) of the finite values; nulls when there are none. */
export function summarize(values: (number | null | undefined)[]): Summary {
  const v = values.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return { n: 0, median: null, p95: null, min: null, max: null };
  const rank = (p: number) => v[Math.min(v.length - 1, Math.max(0, Math.ceil(p * v.length) - 1))];
  const mid = v.length >> 1;
  const median = v.length % 2 ? v[mid] : (v[mid - 1] + v[mid]) / 2;
  return { n: v.length, median, p95: rank(0.95), min: v[0], max: v[v.length - 1] };
}

const TICK = (() => {
  try { return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100; } catch { return 100; }
})();

/** CPU seconds (user+system) a process has used so far; null when it is gone. */
export function cpuSeconds(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
    return (Number(f[11]) + Number(f[12])) / TICK;
  } catch { return null; }
}

/** Resident set size in MiB (VmRSS); null when the process is gone. */
export function rssMiB(pid: number): number | null {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : null;
  } catch { return null; }
}


/**
 * Samples CPU time of several processes at the start and end of a window.
 * cpuPerMin: CPU seconds used per minute of wall time; rss: VmRSS at the end (MiB).
 */
export class CostWindow {
  private readonly t0 = Date.now();
  private readonly c0: Map<string, number | null>;
  constructor(private readonly pids: Record<string, number>) {
    this.c0 = new Map(Object.entries(pids).map(([k, p]) => [k, cpuSeconds(p)]));
  }
  end(): Record<string, { cpuPerMin: number | null; rssMiB: number | null; windowS: number }> {
    const wall = (Date.now() - this.t0) / 1000;
    const out: Record<string, { cpuPerMin: number | null; rssMiB: number | null; windowS: number }> = {};
    for (const [k, p] of Object.entries(this.pids)) {
      const a = this.c0.get(k);
      const b = cpuSeconds(p);
      out[k] = { cpuPerMin: a == null || b == null ? null : ((b - a) * 60) / wall, rssMiB: rssMiB(p), windowS: wall };
    }
    return out;
  }
}

export const fmt = (x: number | null | undefined, digits = 0): string =>
  x == null || !Number.isFinite(x) ? '—' : x.toFixed(digits);
