// Small helpers the tests and the bench share, so that each is written once.
import type { Clock } from '../../src/timers.js';
import type { Logger } from '../../src/log.js';
import { readFileSync } from 'node:fs';

/** A process's resident memory, MiB (/proc/PID/status VmRSS). */
export function rssMiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
}

/**
 * mulberry32: a small seeded PRNG, uniform in [0, 1). The same seed gives
 * the same numbers: a failure names the seed that reproduces it. The one
 * PRNG of the tests (fuzz.ts, echo-room.ts, delivery.ts and arm.test.ts use
 * it): do not write another.
 */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A clock for the timers' tests: wall and monotonic time move only when told, running what falls due in order. */
export class FakeClock implements Clock {
  w: number; m = 1_000_000;
  private q: { at: number; fn: () => void; id: number }[] = [];
  private n = 0;
  constructor(wall: number) { this.w = wall; }
  wall = () => this.w;
  mono = () => this.m;
  setTimeout = (fn: () => void, ms: number) => { const id = ++this.n; this.q.push({ at: this.m + ms, fn, id }); return id; };
  clearTimeout = (id: unknown) => { this.q = this.q.filter((t) => t.id !== id); };
  /** Let `ms` pass on both clocks, running what falls due in order. */
  advance(ms: number): void {
    const end = this.m + ms;
    for (;;) {
      this.q.sort((a, b) => a.at - b.at);
      const t = this.q[0];
      if (!t || t.at > end) break;
      this.q.shift();
      this.w += t.at - this.m; this.m = t.at;
      t.fn();
    }
    this.w += end - this.m; this.m = end;
  }
  /** NTP sets the wall clock: the monotonic one does not move. */
  step(ms: number): void { this.w += ms; }
}

/** A logger that keeps each line (level, message, fields) for a test to read. */
export function fakeLog() {
  const lines: { level: string; msg: string; o: any }[] = [];
  const at = (level: string) => (o: any, msg?: string) => { lines.push({ level, msg: typeof o === 'string' ? o : msg ?? '', o }); };
  return { lines, log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug'), fatal: at('fatal'), trace: at('trace') } as unknown as Logger };
}
