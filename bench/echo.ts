// The echo canceller's figures (issue 11), in this process, on the
// deterministic echo room (test/bench/echo-room.ts): echo reduction,
// convergence time, and CPU per minute of conversation. bench.ts adds them
// to its table with the capture floor (arecord alone) it measures; run
// alone (`node dist/bench/echo.js [--seconds N]`), this measures that floor
// itself, on the simulated sound card, for N s (default 20).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { EchoCanceller } from '../src/audio/aec/index.js';
import { EchoStage } from '../src/audio/echo.js';
import { createLogger } from '../src/log.js';
import { convergenceMs, db, passThrough, reductionDb, rms, runRoom, twoReplies, type Canceller } from '../test/bench/echo-room.js';
import { CostWindow, fmt } from './stats.js';

export interface EchoFigures {
  engine: string;
  delayMs: number;
  estimatedDelayMs: number | null;
  /** The first reply ever (nothing learnt): reduction from 1 s and from 3 s into it, dB. */
  coldFrom1sDb: number; coldFrom3sDb: number;
  /** The next reply, filter kept: over its first 300 ms, and from 1 s, dB. */
  keptFirst300Db: number; keptFrom1sDb: number;
  /** The same with a speaker pushed harder (tanh drive 1.5: peaks 3.2 dB low). */
  hardKeptFrom1sDb: number;
  passThroughDb: number;
  /** ms from a reply's echo onset until the delay was found / until the end of the first 300 ms window >= 20 dB down. */
  coldDelayFoundMs: number | null; coldConvergedMs: number | null; keptConvergedMs: number | null;
  /** Canceller CPU seconds per minute of conversation audio (both replies and the gaps), measured around its calls only. */
  cpuPerMin: number; audioMin: number;
  /** What is left of the echo in the kept reply, against the emulator's VAD (-45 dBFS, 60 ms): the loudest 20 ms (dBFS) and the 60 ms runs of 20 ms frames above -45. */
  keptResidualPeakDbfs: number; keptVadTrips: number;
  /** The same with nothing played (between conversations: the mic passes through), CPU s per minute. */
  idleCpuPerMin: number;
  /** The daemon's whole echo stage (src/audio/echo.ts: this canceller, the delayed raw mic, the levels and the residual gate, the half-duplex decision per chunk), CPU s per minute of the same conversation. */
  stageCpuPerMin: number;
}

export function echoFigures(opts: { delayMs?: number; audioMin?: number } = {}): EchoFigures {
  const delayMs = opts.delayMs ?? 250;
  const { room, e1, e2, l1, l2 } = twoReplies(delayMs);
  let c = EchoCanceller.open({});
  let found: number | null = null;
  const t0 = 100_000;
  // Each reply a new conversation, as in the daemon: a new playback stream (newStream), the filter kept.
  const out = runRoom(room, c, { t0Ms: t0, latencyMs: c.latencyMs, onStream: (at) => c.newStream(at), onFrame: (endMs) => { if (found === null && c.stats.delayMs !== null) found = endMs - e1; } });
  const st = c.stats;
  c.close();
  const hard = twoReplies(delayMs, { drive: 1.5 });
  c = EchoCanceller.open({});
  const outHard = runRoom(hard.room, c, { latencyMs: c.latencyMs, onStream: (at) => c.newStream(at) });
  c.close();
  const pass = runRoom(room, passThrough);

  // CPU: the same conversation over and over on one canceller, timed around its own calls.
  const audioMin = opts.audioMin ?? 1;
  c = EchoCanceller.open({});
  let us = 0;
  const timed: Canceller = {
    pushReference: (ch) => { const a = process.cpuUsage(); c.pushReference(ch); const b = process.cpuUsage(a); us += b.user + b.system; },
    processMic: (f, at) => { const a = process.cpuUsage(); const y = c.processMic(f, at); const b = process.cpuUsage(a); us += b.user + b.system; return y; },
  };
  const lenMs = room.mic.length / 16;
  runRoom(room, c, { t0Ms: 0 }); // warm-up (JIT), not counted
  us = 0;
  let audioMs = 0;
  // Each reply a new conversation (newStream): the kept filter's trial is in the figure.
  for (let k = 1; audioMs < audioMin * 60_000; k++) { runRoom(room, timed, { t0Ms: k * (lenMs + 1000), onStream: (at) => { const a = process.cpuUsage(); c.newStream(at); const b = process.cpuUsage(a); us += b.user + b.system; } }); audioMs += lenMs; }
  // Idle: 1 minute of the room's noise in 20 ms frames, nothing played (after the replies, so the
  // delay and the filter are learnt, as between two conversations).
  const noise = Buffer.alloc(640);
  for (let i = 0; i < 320; i++) noise.writeInt16LE(Math.round(room.noise[i] * 32768), 2 * i);
  let t = (audioMs + 10 * lenMs) * 2;
  for (let i = 0; i < 500; i++, t += 20) c.processMic(noise, t); // warm-up
  const i0 = process.cpuUsage();
  for (let i = 0; i < 3000; i++, t += 20) c.processMic(noise, t);
  const i1 = process.cpuUsage(i0);
  c.close();
  // The same conversation through the daemon's stage, as the daemon calls it: what is written and what played
  // (here one and the same chunk), each capture chunk on its arrival, then the conversation's two questions.
  c = EchoCanceller.open({});
  const stage = EchoStage.open('auto', 'voice', createLogger('silent'), () => c);
  let stageUs = 0;
  const staged: Canceller = {
    pushReference: (ch) => { const a = process.cpuUsage(); stage.scheduled({ sample: 0, ...ch }, 24000); stage.reference({ sample: 0, ...ch }); const b = process.cpuUsage(a); stageUs += b.user + b.system; },
    processMic: (f, at) => {
      const a = process.cpuUsage();
      const y = stage.process(f, at + (f.length >> 1) / 16, 16000);
      stage.halfDuplex(); stage.residualEcho();
      const b = process.cpuUsage(a); stageUs += b.user + b.system; return y;
    },
  };
  runRoom(room, staged, { t0Ms: 0 }); // warm-up
  stageUs = 0;
  let stageMs = 0;
  for (let k = 1; stageMs < audioMin * 60_000; k++) { runRoom(room, staged, { t0Ms: k * (lenMs + 1000) }); stageMs += lenMs; }
  stage.close();
  let peak = -200, runMs = 0, trips = 0;
  for (let t = e2; t + 20 <= e2 + l2; t += 20) {
    const d = db(rms(out, Math.round(t * 16), Math.round((t + 20) * 16)) + 1e-9);
    peak = Math.max(peak, d);
    if (d > -45) { runMs += 20; if (runMs === 60) trips++; } else runMs = 0;
  }
  return {
    keptResidualPeakDbfs: peak, keptVadTrips: trips,
    idleCpuPerMin: (i1.user + i1.system) / 1e6,
    stageCpuPerMin: stageUs / 1e6 / (stageMs / 60_000),
    engine: st.engine, delayMs, estimatedDelayMs: st.delayMs,
    coldFrom1sDb: reductionDb(room, out, e1 + 1000, e1 + l1), coldFrom3sDb: reductionDb(room, out, e1 + 3000, e1 + l1),
    keptFirst300Db: reductionDb(room, out, e2, e2 + 300), keptFrom1sDb: reductionDb(room, out, e2 + 1000, e2 + l2),
    hardKeptFrom1sDb: reductionDb(hard.room, outHard, hard.e2 + 1000, hard.e2 + hard.l2),
    passThroughDb: reductionDb(room, pass, e2 + 1000, e2 + l2),
    coldDelayFoundMs: found, coldConvergedMs: convergenceMs(room, out, e1, e1 + l1), keptConvergedMs: convergenceMs(room, out, e2, e2 + l2),
    cpuPerMin: us / 1e6 / (audioMs / 60_000), audioMin: audioMs / 60_000,
  };
}

/** The bench's rows: [label, value, floor name, floor value, note]. */
export function echoRows(f: EchoFigures, captureFloorPerMin: number | null): [string, number | null, string, number | null, string?][] {
  const room = `room: ${f.delayMs} ms path (estimated ${fmt(f.estimatedDelayMs, 1)}), RT60 0.4 s, DRR 0 dB, tanh speaker`;
  return [
    ['echo reduction dB: next reply, first 300 ms (kept)', f.keptFirst300Db, 'pass-through', f.passThroughDb, `target >= 20; ${room}`],
    ['echo reduction dB: next reply, after 1 s (kept)', f.keptFrom1sDb, 'pass-through', f.passThroughDb, 'target >= 30'],
    ['echo reduction dB: same, speaker pushed (drive 1.5)', f.hardKeptFrom1sDb, 'pass-through', f.passThroughDb, 'peaks 3.2 dB compressed: harmonics a linear filter cannot model'],
    ['echo reduction dB: first reply ever, after 1 s', f.coldFrom1sDb, 'pass-through', f.passThroughDb, `after 3 s: ${fmt(f.coldFrom3sDb, 1)}`],
    ['echo residual: 60 ms runs over -45 dBFS, next reply', f.keptVadTrips, 'none', 0, `what the emulator's VAD would hear of the echo (-20 dBFS at the mic); loudest 20 ms ${fmt(f.keptResidualPeakDbfs, 1)} dBFS`],
    ['echo convergence ms: first reply ever (>= 20 dB)', f.coldConvergedMs, 'delay found', f.coldDelayFoundMs, 'end of the first 300 ms window >= 20 dB down, from the echo onset'],
    ['echo convergence ms: next reply (kept)', f.keptConvergedMs, 'first window', 300, 'the delay and the filter are kept: 300 = converged from its first 300 ms'],
    [`echo canceller CPU s per min of conversation (${f.engine})`, f.cpuPerMin, 'arecord alone', captureFloorPerMin, `process.cpuUsage around its calls, ${fmt(f.audioMin, 1)} min of the room's audio`],
    ['echo canceller CPU s per min, nothing played', f.idleCpuPerMin, 'arecord alone', captureFloorPerMin, '1 min of 20 ms noise frames between conversations: the mic passes through, delay estimator idle'],
    ['echo stage CPU s per min of conversation', f.stageCpuPerMin, 'arecord alone', captureFloorPerMin, `src/audio/echo.ts as the daemon calls it: the canceller plus the residual gate and the half-duplex decision, ${fmt(f.audioMin, 1)} min`],
  ];
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const i = argv.indexOf('--seconds');
  const seconds = i >= 0 ? Number(argv[i + 1]) : 20;
  const { SoundCard } = await import('../test/bench/soundcard.js');
  const card = await SoundCard.start();
  let floor: number | null = null;
  try {
    const arecord = spawn('arecord', ['-D', 'default', '-f', 'S16_LE', '-r', '16000', '-c', '1', '-t', 'raw'], { env: card.env, stdio: ['ignore', 'ignore', 'ignore'] });
    await sleep(1000);
    const win = new CostWindow({ arecord: arecord.pid! });
    await sleep(seconds * 1000);
    floor = win.end().arecord.cpuPerMin;
    arecord.kill('SIGTERM');
  } finally { await card.stop(); }
  const f = echoFigures({ audioMin: 1 });
  for (const [label, v, fname, fv, note] of echoRows(f, floor)) {
    const dg = label.includes('CPU') ? 3 : label.includes('dB') ? 1 : 0;
    const ratio = v !== null && fv && !label.includes('dB') ? `${(v / fv).toFixed(2)}x` : '—';
    process.stdout.write(`${label.padEnd(56)} ${fmt(v, dg).padStart(8)}  ${fname.padEnd(14)} ${fmt(fv, dg).padStart(7)} ${ratio.padStart(7)}  ${note ?? ''}\n`);
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) main().catch((e) => { process.stderr.write(`${(e as Error).stack}\n`); process.exit(1); });
