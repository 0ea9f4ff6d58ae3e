// The echo canceller (src/audio/aec/) in the deterministic echo room
// (test/bench/echo-room.ts): the reply the player played, through a small
// soft-clipping speaker and a reverberant room (RT60 0.4 s, as much
// reverberant energy as direct), delayed 20-950 ms, plus noise and the
// user's voice, fed as the daemon feeds it. Issue 11's targets: echo
// reduced by >= 30 dB after 1 s of reply and >= 20 dB within the first
// 300 ms with the filter kept from the last conversation; the user's voice
// over the reply keeps >= -6 dB of its level; the delay is found and found
// again after it jumps. Each echo bound is checked out of reach of a
// pass-through, and where the delay matters, of the same canceller without
// delay estimation. Pure computation: SpeexDSP, espeak-ng and sox, no sound card.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { EchoCanceller, EchoUnavailableError } from '../src/audio/aec/index.js';
import { FilterTrial } from '../src/audio/aec/trial.js';
import { alarmSound, wakeChime } from '../src/audio/sounds.js';
import { EchoStage } from '../src/audio/echo.js';
import { TonalDetector } from '../src/audio/aec/tonal.js';
import { createLogger } from '../src/log.js';
import { toneEngine } from '../src/wake/tone.js';
import type { WakeEngine } from '../src/wake/engine.js';
import { REF_RATE, MIC_RATE, REPLY1, REPLY2, USER, buildRoom, db, passThrough, reductionDb, rms, runRoom, speech, toS16, twoReplies, type Room } from './bench/echo-room.js';

const r1 = () => speech(REPLY1, 'en-us', REF_RATE);
const r2 = () => speech(REPLY2, 'en-us', REF_RATE);
const ms = (x: Float64Array, rate: number) => (x.length * 1000) / rate;

/** Each reply is a new conversation: the canceller's newStream() is called as the daemon's echo stage calls it. */
function run(room: Room, opts: Parameters<typeof EchoCanceller.open>[0] = {}): { out: Float64Array; c: EchoCanceller } {
  const c = EchoCanceller.open(opts);
  try { return { out: runRoom(room, c, { latencyMs: c.latencyMs, onStream: (at) => c.newStream(at) }), c }; } finally { c.close(); }
}

const f1 = (x: number) => x.toFixed(1);

for (const delayMs of [20, 250, 500, 950]) { // 950: the far end of what the simulated card's loopback measured (test-bench.md section 6)
  test(`echo room, ${delayMs} ms echo path: the delay is found, and with the filter kept from the last conversation the next conversation's reply (a new playback stream) has its echo down >= 20 dB over its first 300 ms and >= 30 dB after 1 s`, (t) => {
    const { room, e1, e2, l1, l2 } = twoReplies(delayMs);
    const { out, c } = run(room);
    const st = c.stats;
    const cold = { from1s: reductionDb(room, out, e1 + 1000, e1 + l1), from3s: reductionDb(room, out, e1 + 3000, e1 + l1) };
    const warm = { first300: reductionDb(room, out, e2, e2 + 300), from1s: reductionDb(room, out, e2 + 1000, e2 + l2) };
    t.diagnostic(`delay ${delayMs} ms: estimated ${st.delayMs} ms, jumps ${st.delayJumps}, erle(stats) ${st.erleDb} dB, converged ${st.converged}; ` +
      `first reply (cold): ${f1(cold.from1s)} dB from 1 s, ${f1(cold.from3s)} dB from 3 s; next reply (kept): ${f1(warm.first300)} dB over 0-300 ms, ${f1(warm.from1s)} dB from 1 s`);
    assert.ok(st.delayMs !== null && Math.abs(st.delayMs - delayMs) <= 5, `delay estimated ${st.delayMs} ms, true ${delayMs} ms`);
    assert.equal(st.delayJumps, 0, 'a steady echo path gives no delay jumps');
    assert.ok(st.converged, 'stats.converged after two replies');
    assert.ok(warm.first300 >= 20, `next reply, first 300 ms: ${f1(warm.first300)} dB < 20 dB`);
    assert.ok(warm.from1s >= 30, `next reply, after 1 s: ${f1(warm.from1s)} dB < 30 dB`);
    // The first reply ever (nothing learnt yet; no target in the issue): the filter converges within seconds.
    assert.ok(cold.from3s >= 20, `first reply, after 3 s: ${f1(cold.from3s)} dB < 20 dB`);

    // The bounds are out of reach of doing nothing...
    const pass = runRoom(room, passThrough);
    assert.ok(reductionDb(room, pass, e2, e2 + 300) < 20 && reductionDb(room, pass, e2 + 1000, e2 + l2) < 30, 'a pass-through meets the bounds: they prove nothing');
    // ... and, where the echo path is longer than the filter, of the canceller without delay estimation.
    if (delayMs >= 250) {
      const { out: fixed } = run(room, { fixedDelayMs: 0 });
      const a = reductionDb(room, fixed, e2, e2 + 300), b = reductionDb(room, fixed, e2 + 1000, e2 + l2);
      t.diagnostic(`without delay estimation: ${f1(a)} dB over 0-300 ms, ${f1(b)} dB from 1 s`);
      assert.ok(a < 20 && b < 30, `without delay estimation the bounds are met too (${f1(a)}, ${f1(b)} dB): they do not test the estimator`);
    }
  });
}

test('echo room: the user talking over a loud reply keeps >= -6 dB of their level, and the echo stays cancelled around them', (t) => {
  const user = { atInReply2Ms: 2000, levelDbfs: -26 }; // 6 dB under the echo: a loud reply
  const withUser = twoReplies(250, { user });
  const without = twoReplies(250);
  const { out: o1 } = run(withUser.room);
  const { out: o0 } = run(without.room);
  // What of the user reached the output: the difference the user made to it.
  const a = Math.round(((withUser.e2 + user.atInReply2Ms) * MIC_RATE) / 1000);
  const b = a + speech(USER, 'en+f3', MIC_RATE).length;
  const diff = o1.map((v, i) => v - o0[i]);
  const level = db(rms(diff, a, b) / rms(withUser.room.user, a, b));
  const echoAfter = reductionDb(withUser.room, o1, (b * 1000) / MIC_RATE + 500, withUser.e2 + withUser.l2);
  t.diagnostic(`user level through the canceller: ${f1(level)} dB; echo after the user stopped: ${f1(echoAfter)} dB down`);
  assert.ok(level >= -6, `the user's voice lost ${f1(-level)} dB (> 6)`);
  assert.ok(echoAfter >= 20, `echo after the double talk only ${f1(echoAfter)} dB down`);
});

test('echo room: after the echo delay jumps mid-reply (120 -> 450 ms), the canceller finds the new delay and the echo is >= 20 dB down again 3 s later', (t) => {
  const ref = r1();
  const cut = 5 * REF_RATE; // the path changes 5 s into the reply
  const partA = ref.subarray(0, cut), partB = ref.subarray(cut);
  const at = 500, jumpAt = at + 5000;
  const warm = r2(); // an earlier reply (same room, 120 ms), so the filter is converged when the jump comes
  const room = buildRoom({
    durationMs: at + ms(ref, REF_RATE) + 1000,
    replies: [{ ref: partA, atMs: at, delayMs: 120 }, { ref: partB, atMs: jumpAt, delayMs: 450 }],
  });
  const c = EchoCanceller.open({});
  // The earlier reply happened before this room's t=0: play it first, through its own room run.
  const pre = buildRoom({ durationMs: ms(warm, REF_RATE) + 1000, replies: [{ ref: warm, atMs: 200, delayMs: 120 }] });
  runRoom(pre, c, { t0Ms: 100_000, latencyMs: c.latencyMs });
  const out = runRoom(room, c, { t0Ms: 100_000 + ms(warm, REF_RATE) + 3000, latencyMs: c.latencyMs });
  const st = c.stats;
  c.close();
  const end = jumpAt + 450 + ms(partB, REF_RATE);
  const before = reductionDb(room, out, at + 120 + 1000, jumpAt + 120);
  const after = reductionDb(room, out, jumpAt + 450 + 3000, end);
  const steps: string[] = [];
  for (let s = jumpAt + 450; s + 500 <= end; s += 500) steps.push(f1(reductionDb(room, out, s, s + 500)));
  t.diagnostic(`before the jump ${f1(before)} dB; per 0.5 s after it: ${steps.join(' ')}; from 3 s after: ${f1(after)} dB; delay ${st.delayMs} ms, jumps ${st.delayJumps}`);
  assert.ok(st.delayJumps >= 1, 'the jump was seen');
  assert.ok(st.delayMs !== null && Math.abs(st.delayMs - 450) <= 5, `delay after the jump ${st.delayMs} ms, true 450`);
  assert.ok(before >= 30, `before the jump ${f1(before)} dB`);
  assert.ok(after >= 20, `3 s after the jump only ${f1(after)} dB`);
  // A canceller that keeps the old delay (no re-estimation) does not recover: 450 ms is past its filter.
  const c2 = EchoCanceller.open({ fixedDelayMs: 120 });
  runRoom(pre, c2, { t0Ms: 100_000, latencyMs: c2.latencyMs });
  const stuck = runRoom(room, c2, { t0Ms: 100_000 + ms(warm, REF_RATE) + 3000, latencyMs: c2.latencyMs });
  c2.close();
  const stuckAfter = reductionDb(room, stuck, jumpAt + 450 + 3000, end);
  t.diagnostic(`with the delay fixed at the old 120 ms: ${f1(stuckAfter)} dB from 3 s after the jump`);
  assert.ok(stuckAfter < 20, `without re-estimation the canceller recovers too (${f1(stuckAfter)} dB): the bound does not test it`);
});

/** A canceller that has learnt the room on one reply at `fromMs` of path, then newStream() and a reply at `toMs`: its output. */
function secondStream(fromMs: number, toMs: number, opts: { user?: boolean; echo?: boolean } = {}) {
  const warm = r1(), ref = r2();
  const c = EchoCanceller.open({});
  const pre = buildRoom({ durationMs: ms(warm, REF_RATE) + 1000, replies: [{ ref: warm, atMs: 200, delayMs: fromMs }] });
  runRoom(pre, c, { t0Ms: 100_000, latencyMs: c.latencyMs });
  const learnt = c.stats.converged, learntDelayMs = c.stats.delayMs;
  const t0 = 100_000 + ms(warm, REF_RATE) + 3000, at = 300;
  c.newStream(t0 + at);
  const fresh = { converged: c.stats.converged, erleDb: c.stats.erleDb };
  const room = buildRoom({
    durationMs: at + ms(ref, REF_RATE) + 1000,
    // No echo: a room where this stream is not heard (the same reply, far below the noise).
    replies: [{ ref, atMs: at, delayMs: toMs }], echoDbfs: opts.echo === false ? -140 : undefined,
    user: opts.user ? { speech: speech(USER, 'en+f3', MIC_RATE), atMs: at + 200, levelDbfs: -26 } : undefined,
  });
  const out = runRoom(room, c, { t0Ms: t0, latencyMs: c.latencyMs });
  const st = c.stats;
  c.close();
  return { room, out, st, learnt, learntDelayMs, fresh, e: at + toMs, len: ms(ref, REF_RATE) };
}

test('echo room: a new playback stream (newStream) whose path is the last one\'s, or off it by as much as the simulated card\'s streams were (-20 to +47 ms), is cancelled with the kept filter from its first frames: >= 20 dB over its first 300 ms, the delay taken to the ms', (t) => {
  const rows: string[] = [];
  for (const shift of [0, 1, 5, 27, -15, 47, -20]) {
    const d = 120 + shift;
    const { room, out, st, learnt, learntDelayMs, fresh, e } = secondStream(120, d);
    assert.equal(learnt, true, 'converged on the first stream');
    assert.equal(fresh.converged, false, 'not converged on a new stream until it has shown the echo cancelled on it');
    assert.equal(fresh.erleDb, null, 'the figures start afresh for the stream');
    const first = reductionDb(room, out, e, e + 300);
    const from1s = reductionDb(room, out, e + 1000, e + 3000);
    rows.push(`${d} ms: delay ${learntDelayMs} -> ${st.delayMs?.toFixed(2)} ms, first 300 ms ${f1(first)} dB, 1-3 s ${f1(from1s)} dB`);
    // The delay moves with the path, to the half sample: measured from the first stream's (whose estimate may be a
    // ms off the true path; the kept filter is learnt at that offset, so the move is what must be exact).
    assert.ok(learntDelayMs !== null && st.delayMs !== null && Math.abs(st.delayMs - learntDelayMs - shift) <= 1 / 32, `the new stream's delay ${st.delayMs} ms, the first stream's ${learntDelayMs} ms, the path moved ${shift} ms`);
    assert.ok(first >= 20, `path 120 -> ${d} ms, kept filter: only ${f1(first)} dB over the first 300 ms`);
    assert.ok(from1s >= 20, `path 120 -> ${d} ms: from 1 s to 3 s only ${f1(from1s)} dB`);
  }
  t.diagnostic(`path 120 -> ${rows.join('; ')}`);
});

test('echo room: a new stream whose path moved further than the kept filter is tried (80 ms) is paused until its delay is found (the mic as it is, not the filter at the wrong offset), and is >= 20 dB down from 1 s', (t) => {
  const d = 230;
  const { room, out, st, e } = secondStream(120, d);
  const first = reductionDb(room, out, e, e + 300);
  const from1s = reductionDb(room, out, e + 1000, e + 3000);
  t.diagnostic(`path 120 -> ${d} ms: delay ${st.delayMs} ms, first 300 ms ${f1(first)} dB, 1-3 s ${f1(from1s)} dB`);
  assert.ok(Math.abs(first) < 3, `the first 300 ms: ${f1(first)} dB (the mic should pass as it is)`);
  assert.ok(st.delayMs !== null && Math.abs(st.delayMs - d) <= 1, `the new stream's delay ${st.delayMs} ms, true ${d}`);
  assert.ok(from1s >= 20, `from 1 s to 3 s only ${f1(from1s)} dB`);
});

test('echo room: the kept filter\'s trial on a new stream takes nothing from a user talking in a room where the stream is not heard', (t) => {
  const { room, out } = secondStream(120, 120, { user: true, echo: false });
  const a = 300 + 200, b = a + ms(speech(USER, 'en+f3', MIC_RATE), MIC_RATE);
  const level = reductionDb(room, out, a, b); // mic over output while the user talks: 0 dB is untouched
  t.diagnostic(`the user's words through the trial: ${f1(-level)} dB`);
  assert.ok(Math.abs(level) < 1, `the user's words changed by ${f1(-level)} dB`);
});

test('echo room: the bounds of the newStream test are out of reach of a canceller that runs the kept filter on at a path 5 ms off (no pause), and of one that cancels nothing until it has found the stream\'s delay (what pausing every new stream does)', (t) => {
  // What each wrong design does, built from the canceller itself: "run on" is a canceller that is never told of
  // the new stream; pausing every new stream cancels nothing before the estimator has seen ~0.5 s of its echo,
  // as a canceller that knows no delay yet.
  const warm = r1(), ref = r2();
  const pre = buildRoom({ durationMs: ms(warm, REF_RATE) + 1000, replies: [{ ref: warm, atMs: 200, delayMs: 120 }] });
  const at = 300, d = 125;
  const room = buildRoom({ durationMs: at + ms(ref, REF_RATE) + 1000, replies: [{ ref, atMs: at, delayMs: d }] });
  const c = EchoCanceller.open({});
  runRoom(pre, c, { t0Ms: 100_000, latencyMs: c.latencyMs });
  const out = runRoom(room, c, { t0Ms: 100_000 + ms(warm, REF_RATE) + 3000, latencyMs: c.latencyMs }); // no newStream()
  c.close();
  const runOn = reductionDb(room, out, at + d + 1000, at + d + 3000);
  t.diagnostic(`kept filter run on at a path 5 ms off: ${f1(runOn)} dB from 1 to 3 s`);
  assert.ok(runOn < 20, `running the kept filter on at the wrong offset recovers too (${f1(runOn)} dB): the 1 s bound does not test the pause`);
  // Always pausing: the estimator needs this much echo to find a delay; nothing is cancelled before it.
  const same = buildRoom({ durationMs: at + ms(ref, REF_RATE) + 1000, replies: [{ ref, atMs: at, delayMs: 120 }] });
  const fresh = EchoCanceller.open({});
  const o2 = runRoom(same, fresh, { t0Ms: 100_000, latencyMs: fresh.latencyMs });
  fresh.close();
  const firstCold = reductionDb(same, o2, at + 120, at + 420);
  t.diagnostic(`before the delay is found (a canceller that knows none): ${f1(firstCold)} dB over the first 300 ms`);
  assert.ok(firstCold < 20, 'a canceller that must find the delay first meets the 300 ms bound: it does not test the kept filter');
});

test('echo room: the kept filter\'s trial fits the same at every offset as the sums done directly, on a loud reply with pauses (the sizes the canceller uses)', () => {
  // What the trial computes by FFT and running sums, per offset j: sum mic * prediction and sum prediction^2, must
  // give each offset the fit the direct sums give, from the 100 ms on which the trial first decides. (It does not
  // reproduce the rounding of the running sums that once let a near-silent window win on the simulated card; that
  // was found, and its fix checked, by replaying recorded runs.)
  const ref16 = speech(REPLY2, 'en-us', MIC_RATE).map((v) => v * 30000);
  let seed = 11;
  const rnd = () => { seed = (seed * 1103515245 + 12345) & 0x7fffffff; return seed / 0x7fffffff - 0.5; };
  const taps = new Int32Array(3520); // Speex's length here: 200 ms of room plus 24 ms before the direct path
  for (let i = 0; i < taps.length; i++) taps[i] = i < 384 ? 0 : Math.round(rnd() * 30000 * Math.exp(-(i - 384) / 400));
  const read = (from: number, out: Float32Array) => { for (let i = 0; i < out.length; i++) { const k = from + i; out[i] = k >= 0 && k < ref16.length ? ref16[k] : 0; } };
  const lag = 80 * 16, n = 160, frames = 60;
  // The prediction p(k) = sum taps[q] ref(k - q), once for the whole stretch (by FFT: the direct sums below are the check).
  const len = frames * n + 2 * lag + taps.length;
  let size = 1; while (size < len + taps.length) size <<= 1;
  const base = 4000 - lag; // the stretch starts here (ref index), in the first words
  const X = new Float64Array(size), pred = new Float64Array(len);
  for (let k = 0; k < len; k++) { const r = base - taps.length + k; X[k] = r >= 0 && r < ref16.length ? ref16[r] : 0; }
  for (let k = taps.length; k < len; k++) { let y = 0; for (let q = 0; q < taps.length; q += 1) y += taps[q] * X[k - q]; pred[k] = y; }
  const P = (refIndex: number) => pred[refIndex - base + taps.length];
  const t = new FilterTrial(taps, lag, n, read);
  const c = new Float64Array(2 * lag + 1), e = new Float64Array(2 * lag + 1);
  const out = new Int16Array(n);
  let worst = 0, where = '';
  for (let f = 0; f < frames; f++) {
    const refAt = base + lag + f * n, mic = new Int16Array(n);
    // The echo: the prediction 3 ms later than the delay in use, at a level a microphone hears, plus noise.
    for (let i = 0; i < n; i++) mic[i] = Math.max(-32768, Math.min(32767, Math.round(P(refAt + i - 48) * 2e-9 + rnd() * 4)));
    t.frameOut(mic, refAt, out);
    // Offset j - lag lines mic sample i up with p(refAt + i - (j - lag)).
    for (let j = 0; j <= 2 * lag; j++) {
      let cs = 0, es = 0;
      for (let i = 0; i < n; i++) { const v = P(refAt + i - (j - lag)); cs += mic[i] * v; es += v * v; }
      c[j] += cs; e[j] += es;
    }
    if (f < 10) continue; // the trial decides on 100 ms at the least (before, -60 dB windows are left out by design)
    const fit = (cc: ArrayLike<number>, ee: ArrayLike<number>, j: number) => (ee[j] > 0 ? cc[j] ** 2 / ee[j] : 0);
    let top = 0;
    for (let j = 0; j <= 2 * lag; j++) top = Math.max(top, fit(c, e, j));
    const tt = t as unknown as { c: Float64Array; e: Float64Array };
    for (let j = 0; j <= 2 * lag; j++) {
      const dd = Math.abs(fit(tt.c, tt.e, j) - fit(c, e, j)) / (top || 1);
      if (dd > worst) { worst = dd; where = `frame ${f}, offset ${j - lag}: trial c ${tt.c[j].toExponential(3)} e ${tt.e[j].toExponential(3)}, direct c ${c[j].toExponential(3)} e ${e[j].toExponential(3)}`; }
    }
  }
  assert.ok(worst < 1e-3, `an offset's fit differs from the direct sums' by ${worst.toExponential(2)} of the best (${where})`);
  assert.ok(Math.abs(t.offset - 48) < 0.5, `the trial's offset ${t.offset.toFixed(2)}, true 48 samples`);
});

/** A canceller that learnt the room, then one new stream: the wake chime (or another tone), the user's question (2 s), the reply. */
function chimeThenReply(shift: number, ch = wakeChime(REF_RATE, 0.5)) {
  const warm = r1(), ref = r2();
  const chime = new Float64Array(ch.length / 2);
  for (let i = 0; i < chime.length; i++) chime[i] = ch.readInt16LE(2 * i) / 32768;
  const said: string[] = [];
  const c = EchoCanceller.open({ log: { info: (o: object, m: string) => { if (/stream|kept/.test(m)) said.push(`${m} ${JSON.stringify(o)}`); }, debug() {}, warn() {}, error() {} } as never });
  const pre = buildRoom({ durationMs: ms(warm, REF_RATE) + 1000, replies: [{ ref: warm, atMs: 200, delayMs: 120 }] });
  runRoom(pre, c, { t0Ms: 100_000, latencyMs: c.latencyMs });
  const d0 = c.stats.delayMs!;
  const t0 = 100_000 + ms(warm, REF_RATE) + 3000, at = 300, replyAt = at + ms(chime, REF_RATE) + 2340, d = 120 + shift;
  c.newStream(t0 + at);
  // The same room as the first stream's (its gain): set on its loudest span instead, the chime, the reply's echo came
  // 9 dB quieter than the kept filter had learnt, a change of room that looked like the chime's harm to Speex.
  const room = buildRoom({ durationMs: replyAt + ms(ref, REF_RATE) + 1000, echoGain: pre.gain, replies: [{ ref: chime, atMs: at, delayMs: d }, { ref, atMs: replyAt, delayMs: d }] });
  const out = runRoom(room, c, { t0Ms: t0, latencyMs: c.latencyMs });
  const st = c.stats;
  c.close();
  const e = replyAt + d, l = ms(ref, REF_RATE);
  return { said, d0, d, st, chimeDb: reductionDb(room, out, at + d, at + d + ms(chime, REF_RATE)), first300: reductionDb(room, out, e, e + 300), from1s: reductionDb(room, out, e + 1000, e + l) };
}

test('echo room: a new stream that opens with the wake chime (a tone, which fits the kept filter at every period) does not decide the trial on the tone: the kept filter cancels it, and the reply after it decides the delay', (t) => {
  const rows: string[] = [];
  for (const shift of [0, 5, -15]) {
    const { said, d0, d, st, chimeDb } = chimeThenReply(shift);
    rows.push(`${d} ms: delay ${d0} -> ${st.delayMs?.toFixed(2)}, the chime's echo ${f1(chimeDb)} dB down (${said.join('; ')})`);
    assert.ok(said.some((l) => l.startsWith('the kept echo filter cancels a tone on the new stream')), `the tone was not told apart: ${said.join('; ')}`);
    assert.ok(said.some((l) => l.startsWith('echo delay holds on the new stream')), `the reply did not decide the trial: ${said.join('; ')}`);
    assert.ok(st.delayMs !== null && Math.abs(st.delayMs - d0 - shift) <= 1, `the delay ${st.delayMs} ms after the chime and the reply, the first stream's ${d0} ms, the path moved ${shift} ms`);
    // The kept filter at one of the tone's periods: some of its echo taken off (a pass-through, or a stream held, 0-1 dB).
    assert.ok(chimeDb >= 3, `the chime's echo only ${f1(chimeDb)} dB down`);
  }
  t.diagnostic(`path 120 -> ${rows.join('; ')}`);
});

// Before the tone was told apart, the chime failed the trial, Speex was held until the estimator found the delay on
// the reply's own echo, and the reply's first 300 ms passed as they were (0 dB; 4-5 dB over 300-1000 ms).
test('echo room: the reply after a wake chime on the same stream is >= 20 dB down over its first 300 ms and >= 30 dB from 1 s', (t) => {
  const rows: string[] = [];
  for (const shift of [0, 5, -15]) {
    const { d, first300, from1s, said } = chimeThenReply(shift);
    rows.push(`${d} ms: ${f1(first300)} dB over 0-300 ms, ${f1(from1s)} dB from 1 s`);
    assert.ok(first300 >= 20, `path 120 -> ${d} ms: the reply after the chime only ${f1(first300)} dB over its first 300 ms (${said.join('; ')})`);
    assert.ok(from1s >= 30, `path 120 -> ${d} ms: the reply after the chime only ${f1(from1s)} dB from 1 s (${said.join('; ')})`);
  }
  t.diagnostic(`path 120 -> ${rows.join('; ')}`);
});

// A ring is a tone with pauses: each beep group is cancelled by the kept filter and kept from Speex. Held and then
// run on the tone instead (before), Speex took the ring only 6.6-7.9 dB down over its 14 s; the reply after it was fine either way.
test('echo room: a timer ringing for 14 s on a new stream (beeps of one tone) is >= 12 dB down, and the reply after it >= 20 dB over its first 300 ms and >= 30 dB from 1 s', (t) => {
  const ring = Buffer.concat(Array.from({ length: 10 }, () => alarmSound(REF_RATE, 0.5)));
  const rows: string[] = [];
  for (const shift of [0, 5, -15]) {
    const { d, first300, from1s, chimeDb, said } = chimeThenReply(shift, ring);
    rows.push(`${d} ms: the ring ${f1(chimeDb)} dB down; the reply ${f1(first300)} dB over 0-300 ms, ${f1(from1s)} dB from 1 s`);
    assert.ok(chimeDb >= 12, `path 120 -> ${d} ms: the ring only ${f1(chimeDb)} dB down (${said.join('; ')})`);
    assert.ok(first300 >= 20 && from1s >= 30, `path 120 -> ${d} ms: the reply after the ring ${f1(first300)} dB over 0-300 ms, ${f1(from1s)} dB from 1 s (${said.join('; ')})`);
  }
  t.diagnostic(`path 120 -> ${rows.join('; ')}`);
});

test('EchoCanceller.open: an engine that cannot run is refused with EchoUnavailableError naming what is missing', () => {
  assert.throws(() => EchoCanceller.open({ engine: 'webrtc' }), (e: Error) => e instanceof EchoUnavailableError && /speex/i.test(e.message));
  const c = EchoCanceller.open({ engine: 'auto' });
  assert.equal(c.stats.engine, 'speex');
  const frame = Buffer.alloc(640);
  assert.equal(c.processMic(frame, 1000).length, 640, 'same length out');
  c.close();
});

test('EchoCanceller: with nothing played the mic comes out untouched, latencyMs (50 ms) later, whatever the frame sizes', () => {
  const c = EchoCanceller.open({});
  const n = 16000; // 1 s of a seeded noise-like signal
  const x = Buffer.alloc(n * 2);
  let s = 7;
  for (let i = 0; i < n; i++) { s = (s * 1103515245 + 12345) >>> 0; x.writeInt16LE(((s >>> 16) & 0x7fff) - 16384, 2 * i); }
  const parts: Buffer[] = [];
  let pos = 0, k = 0;
  while (pos < n) {
    const len = Math.min(n - pos, [37, 320, 1600, 513, 160, 800][k++ % 6]);
    const y = c.processMic(x.subarray(2 * pos, 2 * (pos + len)), 5000 + pos / 16);
    assert.equal(y.length, 2 * len);
    parts.push(y);
    pos += len;
  }
  c.close();
  const y = Buffer.concat(parts);
  const lat = c.latencyMs * 16;
  assert.equal(c.latencyMs, 50);
  assert.ok(y.subarray(0, 2 * lat).equals(Buffer.alloc(2 * lat)), 'the first 50 ms out are silence');
  assert.ok(y.subarray(2 * lat).equals(x.subarray(0, 2 * (n - lat))), 'then the mic, sample for sample');
});

/**
 * A reply that is mostly tonal (issue 25: a chime, a timer's beeps, a sung answer): a 200 ms marker tone (1000 Hz), 3 s
 * of a steady tone, a 200 ms marker (2000 Hz), at half scale. Below the estimator's 1 kHz band only the steady tone is
 * left, which fits the echo at every period.
 */
function tonalReply(hz: number): Float64Array {
  const part = (f: number, ms: number) => Float64Array.from({ length: (REF_RATE * ms) / 1000 }, (_, i) => 0.5 * Math.sin((2 * Math.PI * f * i) / REF_RATE));
  const parts = [new Float64Array(REF_RATE / 10), part(1000, 200), part(hz, 3000), part(2000, 200)];
  const x = new Float64Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { x.set(p, o); o += p.length; }
  return x;
}

// Before: on the 600 Hz reply the delay went 121 -> 1 -> 944 -> 121 ms within the reply (3 jumps; the same wandering the
// simulated card showed, 43 -> 11 -> 2 -> 1199 ms), and Speex reset itself with a line on stderr on the 300 and 850 Hz ones.
test('echo room: a tonal reply (marker tones around a steady tone) moves no delay: not on a canceller that knows none, nor on one that learnt the room (the same stream, or a new one)', (t) => {
  const rows: string[] = [];
  const d = 120;
  for (const hz of [300, 600, 850]) {
    const tonal = tonalReply(hz);
    const room = buildRoom({ durationMs: 300 + ms(tonal, REF_RATE) + 1500, replies: [{ ref: tonal, atMs: 300, delayMs: d }] });
    // Cold: the first reply after a start.
    const cold = EchoCanceller.open({});
    runRoom(room, cold, { latencyMs: cold.latencyMs });
    const c0 = { ...cold.stats, ambiguous: cold.ambiguousEstimates };
    cold.close();
    // Warm: the room learnt on speech, then the tonal reply on the same stream, and on a new one.
    const warm = r1();
    const pre = buildRoom({ durationMs: ms(warm, REF_RATE) + 1000, replies: [{ ref: warm, atMs: 200, delayMs: d }], echoGain: room.gain });
    const res: string[] = [];
    for (const fresh of [false, true]) {
      const c = EchoCanceller.open({});
      runRoom(pre, c, { t0Ms: 100_000, latencyMs: c.latencyMs });
      const learnt = c.stats.delayMs!;
      const out = runRoom(room, c, { t0Ms: 100_000 + ms(warm, REF_RATE) + 3000, latencyMs: c.latencyMs, onStream: fresh ? (at) => c.newStream(at) : undefined });
      const st = c.stats;
      c.close();
      const down = reductionDb(room, out, 300 + d, 300 + d + ms(tonal, REF_RATE));
      res.push(`${fresh ? 'new' : 'same'} stream: ${learnt} -> ${st.delayMs} ms, ${st.delayJumps} jumps, ${f1(down)} dB down`);
      assert.equal(st.delayJumps, 0, `${hz} Hz, ${fresh ? 'a new' : 'the same'} stream: the delay jumped (${learnt} -> ${st.delayMs} ms)`);
      assert.ok(st.delayMs !== null && Math.abs(st.delayMs - learnt) <= 1, `${hz} Hz, ${fresh ? 'a new' : 'the same'} stream: the delay moved ${learnt} -> ${st.delayMs} ms`);
    }
    rows.push(`${hz} Hz: cold: delay ${c0.delayMs} ms, ${c0.delayJumps} jumps, ${c0.ambiguous} runs of ambiguous estimates set aside; warm: ${res.join(', ')}`);
    assert.equal(c0.delayJumps, 0, `${hz} Hz, cold: the delay jumped ${c0.delayJumps} times within one reply`);
    assert.ok(c0.delayMs === null || Math.abs(c0.delayMs - d) <= 5, `${hz} Hz, cold: delay ${c0.delayMs} ms taken from a tone, true ${d}`);
  }
  t.diagnostic(rows.join('; '));
});

/**
 * The daemon's echo stage (src/audio/echo.ts) on the room, as the daemon drives it: each reply chunk scheduled as it is
 * written (120 ms before it is heard: a gap between replies is a new stream), handed over as played, every mic chunk
 * processed; what full duplex would send: zeros where the stage says the chunk is echo (residualEcho()), else the
 * cleaned chunk (lined up with the mic). `guard: false`: the stage with its tonal-leak guard off. maxShare: the
 * largest share of the echo window's energy its peaks held (the tonal test's figure) while an echo could be in the mic.
 */
function runStage(room: Room, guard = true, wake?: WakeEngine): { sent: Float64Array; stage: EchoStage; c: EchoCanceller; maxShare: number; notchedAt: number[]; wakeAt: number[] } {
  let c: EchoCanceller | null = null;
  const stage = EchoStage.open('auto', 'voice', createLogger('silent'), (o) => (c = EchoCanceller.open(o)));
  stage.tonalGuard = guard;
  const t0 = 100_000, n = room.mic.length, sent = new Float64Array(n), mic = toS16(room.mic);
  const chunks: { atMs: number; endMs: number; pcm: Buffer }[] = [];
  for (const r of room.spec.replies) {
    for (let i = 0; i < r.ref.length; i += 480) {
      const j = Math.min(r.ref.length, i + 480);
      chunks.push({ atMs: t0 + r.atMs + (i * 1000) / REF_RATE, endMs: t0 + r.atMs + (j * 1000) / REF_RATE, pcm: toS16(r.ref, i, j) });
    }
  }
  let wi = 0, ci = 0, pos = 0, f = 0, maxShare = 0;
  const notchedAt: number[] = [], wakeAt: number[] = []; // ms from the room's start: each chunk notched (its end), each wake detection (its frame's end)
  let wakeFrame: number[] = [];
  while (pos < n) {
    const len = Math.min(n - pos, ([20, 32, 64, 100, 40, 20, 80][f++ % 7] * MIC_RATE) / 1000);
    const end = t0 + ((pos + len) * 1000) / MIC_RATE;
    while (wi < chunks.length && end >= chunks[wi].atMs - 120) { stage.scheduled({ sample: 0, ...chunks[wi] }, REF_RATE); wi++; }
    while (ci < chunks.length && chunks[ci].endMs + 10 <= end) { stage.reference({ sample: 0, ...chunks[ci] }); ci++; }
    const notched = stage.notchedChunks;
    const y = stage.process(mic.subarray(2 * pos, 2 * (pos + len)), end, MIC_RATE);
    if (stage.notchedChunks > notched) notchedAt.push(end - t0);
    if (wake) { // what the daemon hands the wake word (src/daemon.ts wireAudio), in the engine's frames
      const heard = stage.forWake();
      for (let i = 0; i < len; i++) {
        wakeFrame.push(heard.readInt16LE(2 * i));
        if (wakeFrame.length === wake.frameLength) { if (wake.process(Int16Array.from(wakeFrame)) >= 0) wakeAt.push(end - t0); wakeFrame = []; }
      }
    }
    if (stage.cleaning(end)) maxShare = Math.max(maxShare, stage.tonalWindow.share);
    const zero = stage.residualEcho();
    for (let i = 0; i < len; i++) sent[pos + i] = zero ? 0 : y.readInt16LE(2 * i) / 32768;
    pos += len;
  }
  stage.close();
  const lat = Math.round((c!.latencyMs * MIC_RATE) / 1000);
  sent.copyWithin(0, lat); sent.fill(0, n - lat);
  return { sent, stage, c: c!, maxShare, notchedAt, wakeAt };
}

/**
 * 20 ms blocks of `x` over -45 dBFS (the emulator's VAD threshold) within [fromMs, toMs): how many, the longest run,
 * and how many are in runs of 3 or more (60 ms: what the emulator's VAD takes for speech, src/emulator/turns.ts).
 */
function overVad(x: Float64Array, fromMs: number, toMs: number): { blocks: number; longest: number; inSpeech: number } {
  let blocks = 0, run = 0, longest = 0, inSpeech = 0;
  const close = () => { if (run >= 3) inSpeech += run; run = 0; };
  for (let t = fromMs; t + 20 <= toMs; t += 20) {
    const a = Math.round((t * MIC_RATE) / 1000);
    if (db(rms(x, a, a + 320) + 1e-12) > -45) { blocks++; longest = Math.max(longest, ++run); } else close();
  }
  close();
  return { blocks, longest, inSpeech };
}

/**
 * A room that learnt its echo path on a spoken reply (the canceller converged, the stage earned its figures), then a
 * new conversation's tonal reply whose echo path changes 2 s in: the delay 120 -> 350 ms, or the gain 6 dB down, or
 * both. On the tone the estimator rightly moves nothing, so the canceller is misaligned until the reply ends.
 * `user`: someone talking over it (USER, 16 kHz) from `atMs` into the tonal reply's echo.
 */
function pathChangesInTonalReply(change: { delayMs?: number; gainDb?: number }, user?: { atMs: number; levelDbfs: number }) {
  const warm = r1(), tonal = tonalReply(600), d = 120;
  const a1 = 300, a2 = a1 + ms(warm, REF_RATE) + 3000, cut = 2 * REF_RATE;
  const partA = tonal.subarray(0, cut), partB = tonal.subarray(cut);
  const room = buildRoom({
    durationMs: a2 + ms(tonal, REF_RATE) + 3000, // room for the user's words after the reply
    replies: [{ ref: warm, atMs: a1, delayMs: d }, { ref: partA, atMs: a2, delayMs: d }, { ref: partB, atMs: a2 + ms(partA, REF_RATE), delayMs: change.delayMs ?? d }],
    user: user && { speech: speech(USER, 'en+f3', MIC_RATE), atMs: a2 + d + user.atMs, levelDbfs: user.levelDbfs },
  });
  if (change.gainDb) { // the card's gain moves: the echo from the change on
    const k = 10 ** (change.gainDb / 20);
    for (let i = Math.round(((a2 + ms(partA, REF_RATE) + d) * MIC_RATE) / 1000); i < room.mic.length; i++) { room.echo[i] *= k; room.mic[i] = room.echo[i] + room.user[i] + room.noise[i]; }
  }
  return { room, from: a2, to: a2 + ms(tonal, REF_RATE) + 1400, userAt: a2 + d + (user?.atMs ?? 0) };
}

// Issue 25's second half: what is sent stays under the server's speech threshold whatever the estimator does. The
// emulator's VAD takes 60 ms over -45 dBFS for speech (src/emulator/turns.ts: thresholdDbfs -45, minSpeechMs 60).
// Measured (blocks over it / in 60 ms runs / longest run), delay / gain / both: without the tonal-leak guard 35/35/26,
// 61/59/59, 76/76/47 (0.5-1.2 s: a new question); with it 0 in all three (the tone notched, wherever its echo went).
test('echo stage: a tonal reply whose echo path changes mid-reply (delay 120 -> 350 ms, gain -6 dB, both) while the estimator holds sends no 60 ms run over -45 dBFS (the stage without its tonal-leak guard: 20 or more blocks in such runs)', (t) => {
  const rows: string[] = [];
  for (const change of [{ delayMs: 350 }, { gainDb: -6 }, { delayMs: 350, gainDb: -6 }]) {
    const { room, from, to } = pathChangesInTonalReply(change);
    const { sent, stage, c } = runStage(room);
    const { sent: unguarded, stage: off } = runStage(room, false);
    const g = overVad(sent, from, to), u = overVad(unguarded, from, to), raw = overVad(room.mic, from, to);
    rows.push(`${JSON.stringify(change)}: delay ${c.stats.delayMs} ms, ${c.stats.delayJumps} jumps; over -45 dBFS: mic ${raw.blocks} blocks, without the guard ${u.blocks} (${u.inSpeech} in 60 ms runs, longest ${u.longest}), with it ${g.blocks} (${g.inSpeech} in 60 ms runs, longest ${g.longest}), ${stage.notchedChunks} chunks notched`);
    assert.equal(c.stats.delayJumps, 0, 'the estimator held on the tone (the case the guard is for)');
    assert.equal(g.inSpeech, 0, `${JSON.stringify(change)}: ${g.inSpeech} blocks over -45 dBFS sent in runs of 60 ms or more (longest ${g.longest})`);
    assert.ok(u.inSpeech >= 20, `${JSON.stringify(change)}: without the guard only ${u.inSpeech} blocks in 60 ms runs: the room does not test it`);
    assert.equal(off.notchedChunks, 0);
    assert.ok(stage.notchedChunks > 0);
    assert.equal(stage.status().notchedChunks, stage.notchedChunks, 'counted in the status');
  }
  t.diagnostic(rows.join('; '));
});

// Someone talking over a tonal reply (the path moved, as above, so the canceller is not hiding anything either): what
// is sent, less what is sent without them, against their voice at the mic, over their words; and the emulator's VAD
// hears them (a 60 ms run over -45 dBFS). Their voice's own energy at the notched frequencies (+-NOTCH_BW_HZ) is what
// the guard takes: measured, a few tenths of a dB.
test('echo stage: the user talking over a tonal reply (6 dB under its echo) keeps >= -6 dB of their level through the tonal-leak guard, and would be heard by the VAD', (t) => {
  const user = { atMs: 2600, levelDbfs: -26 };
  const change = { delayMs: 350 };
  const withUser = pathChangesInTonalReply(change, user), without = pathChangesInTonalReply(change);
  const a0 = runStage(without.room), a1 = runStage(withUser.room), b0 = runStage(without.room, false), b1 = runStage(withUser.room, false);
  const a = Math.round((withUser.userAt * MIC_RATE) / 1000), b = a + speech(USER, 'en+f3', MIC_RATE).length;
  const level = db(rms(a1.sent.map((v, i) => v - a0.sent[i]), a, b) / rms(withUser.room.user, a, b));
  const off = db(rms(b1.sent.map((v, i) => v - b0.sent[i]), a, b) / rms(withUser.room.user, a, b));
  const heard = overVad(a1.sent, withUser.userAt, withUser.userAt + (1000 * (b - a)) / MIC_RATE);
  t.diagnostic(`the user's level in what is sent: ${f1(level)} dB (${f1(off)} dB with the guard off); ${heard.inSpeech} 20 ms blocks over -45 dBFS in 60 ms runs over their words; ${a1.stage.notchedChunks} chunks notched, ${a1.stage.residualChunks} residual`);
  assert.ok(a1.stage.notchedChunks > 0, 'the guard was engaged over the user');
  assert.ok(level >= -6, `the user's voice lost ${f1(-level)} dB (> 6)`);
  assert.ok(heard.inSpeech >= 3, 'the VAD would hear the user');
});

// Spoken replies are never tonal: the guard must not touch them (nor a user talking over them).
test('echo stage: on spoken replies (two conversations at 30/120/250 ms paths, one with the user talking over it) the tonal-leak guard never engages', (t) => {
  const rows: string[] = [];
  for (const [d, user] of [[30, undefined], [120, undefined], [250, { atInReply2Ms: 2000, levelDbfs: -26 }]] as const) {
    const { room } = twoReplies(d, { user });
    const { stage, maxShare } = runStage(room);
    rows.push(`${d} ms${user ? ' with the user' : ''}: peaks held at most ${f1(100 * maxShare)}% of the echo window, ${stage.notchedChunks} chunks notched`);
    assert.equal(stage.notchedChunks, 0, `${d} ms: ${stage.notchedChunks} chunks notched on a spoken reply`);
  }
  t.diagnostic(rows.join('; '));
});

// The guard's notches are for what is sent to the server. The wake word hears the cleaned audio without them: a timer
// rings at 988 Hz, and a notch there (160 Hz wide) took the wake word said over it out with the ring's echo. Before
// (the wake word heard the notched chunk): the tone stand-in at 1000 Hz (tone_hz's default, as test/tools.test.ts's
// "the wake word stops a ringing timer") never fired, at -20 and -30 dBFS; with the guard off it fired once at each.
test('echo stage: the wake word (the tone stand-in, 1000 Hz) said over a ringing timer (988 Hz) is heard once, while the tonal-leak guard notches the ring for the server', (t) => {
  const ringB = Buffer.concat(Array.from({ length: 4 }, () => alarmSound(REF_RATE, 0.5)));
  const ring = Float64Array.from({ length: ringB.length >> 1 }, (_, i) => ringB.readInt16LE(2 * i) / 32768);
  const said = Float64Array.from({ length: (MIC_RATE * 700) / 1000 }, (_, i) => Math.sin((2 * Math.PI * 1000 * i) / MIC_RATE));
  const rows: string[] = [];
  for (const levelDbfs of [-20, -30]) {
    const spec = { durationMs: 300 + ms(ring, REF_RATE) + 1500, echoDbfs: -30, replies: [{ ref: ring, atMs: 300, delayMs: 120 }] };
    const withWake = runStage(buildRoom({ ...spec, user: { speech: said, atMs: 3000, levelDbfs } }), true, toneEngine(1000));
    const ringOnly = runStage(buildRoom(spec), true, toneEngine(1000));
    rows.push(`wake at ${levelDbfs} dBFS: heard at ${withWake.wakeAt.map(Math.round).join(', ') || 'never'} ms (said at 3000-3700), ${withWake.stage.notchedChunks} chunks notched; the ring alone: ${ringOnly.wakeAt.length} detections`);
    assert.ok(withWake.stage.notchedChunks > 0 && withWake.notchedAt.some((x) => x >= 3000 && x <= 3700), 'the guard was notching the ring while the wake word was said');
    assert.equal(withWake.wakeAt.length, 1, `the wake word at ${levelDbfs} dBFS over the ring: ${withWake.wakeAt.length} detections`);
    assert.ok(withWake.wakeAt[0] > 3000 && withWake.wakeAt[0] < 3700 + 200, `detected at ${withWake.wakeAt[0]} ms, said at 3000-3700`);
    assert.equal(ringOnly.wakeAt.length, 0, 'the ring alone is no wake word');
  }
  t.diagnostic(rows.join('; '));
});

// The guard's verdict is on what played over the echo window: after a pause longer than that window, the last reply's
// tones are no echo of the next. Before: a spoken reply 5 s after a tonal one had its first chunks (-40 to +20 ms from
// its first sample heard) notched at the tonal reply's 600/1000/2000 Hz, before its own audio had been analysed.
test('echo stage: a spoken reply 5 s after a tonal one is never notched (the guard keeps no verdict across a pause)', (t) => {
  const tonal = tonalReply(600), spoken = speech(REPLY1, 'en-us', REF_RATE);
  const a2 = 300 + ms(tonal, REF_RATE) + 5000;
  const room = buildRoom({ durationMs: a2 + ms(spoken, REF_RATE) + 1500, replies: [{ ref: tonal, atMs: 300, delayMs: 120 }, { ref: spoken, atMs: a2, delayMs: 120 }] });
  const { notchedAt } = runStage(room);
  const first = notchedAt.filter((x) => x < a2 - 1000), second = notchedAt.filter((x) => x >= a2 - 1000).map((x) => Math.round(x - a2));
  t.diagnostic(`${first.length} chunks notched over the tonal reply; over the spoken one, at ${second.join(', ') || 'none'} ms from its start`);
  assert.ok(first.length > 50, `the tonal reply was notched (${first.length} chunks)`);
  assert.deepEqual(second, [], 'chunks of the spoken reply notched');
});

// The detector's ring of the last 4096 reference samples ran on across a pause: a spoken reply 5 s after a loud tone
// had the tone's last 170 ms in its first four blocks, and a quiet reply (-40 dBFS) was tonal by that measure for
// 1.3 s (hops 14-78 of its first 2 s), so notched at 600 Hz. Now a pause in the reference is silence.
test('TonalDetector: a quiet spoken reply 5 s after a loud steady tone is never tonal (the pause is silence, not the tone run on)', () => {
  const d = new TonalDetector(REF_RATE);
  const tone = toS16(Float64Array.from({ length: 3 * REF_RATE }, (_, i) => 0.5 * Math.sin((2 * Math.PI * 600 * i) / REF_RATE)));
  for (let i = 0; i < tone.length; i += 960) d.push(tone.subarray(i, i + 960), 100_000 + (i + 960) / 48, 1450);
  assert.equal(d.tonal, true, 'the tone is tonal');
  const quiet = toS16(speech(REPLY1, 'en-us', REF_RATE).map((v) => 0.03 * v)), t1 = 100_000 + 3000 + 5000;
  const seen: string[] = [];
  for (let i = 0; i < 2 * 2 * REF_RATE; i += 960) {
    d.push(quiet.subarray(i, i + 960), t1 + (i + 960) / 48, 1450);
    if (d.analysedUntilMs > t1) seen.push(d.tonal ? 'T' : '.');
  }
  assert.ok(seen.length > 40, 'analysed');
  assert.equal(seen.join('').indexOf('T'), -1, `tonal at hops: ${seen.join('')}`);
});

test('echo stage: the user talking over a loud spoken reply (6 dB under its echo) keeps >= -6 dB of their level through the residual gate, in full duplex', (t) => {
  const user = { atInReply2Ms: 2000, levelDbfs: -26 };
  const withUser = twoReplies(250, { user }), without = twoReplies(250);
  const { sent: o1, stage } = runStage(withUser.room), { sent: o0 } = runStage(without.room);
  const a = Math.round(((withUser.e2 + user.atInReply2Ms) * MIC_RATE) / 1000), b = a + speech(USER, 'en+f3', MIC_RATE).length;
  const level = db(rms(o1.map((v, i) => v - o0[i]), a, b) / rms(withUser.room.user, a, b));
  t.diagnostic(`the user's level in what is sent: ${f1(level)} dB (${stage.notchedChunks} chunks notched, ${stage.residualChunks} marked as residual)`);
  assert.ok(level >= -6, `the user's voice lost ${f1(-level)} dB (> 6)`);
});

// libspeexdsp prints its own warnings on stderr (a raw line among the daemon's JSON log): the VAD line on every
// SPEEX_PREPROCESS_SET_VAD, and "acting funny" when its filter adds echo for 50 frames. A child process, so its stderr is its own.
test('SpeexDSP says nothing on stderr: not on opening a canceller, nor when the kept filter adds echo in a room that does not hear the stream (reset and logged instead)', () => {
  const url = (p: string) => new URL(p, import.meta.url).href;
  const script = `
    const { EchoCanceller } = await import(${JSON.stringify(url('../src/audio/aec/index.js'))});
    const { REF_RATE, MIC_RATE, REPLY1, REPLY2, USER, buildRoom, runRoom, speech } = await import(${JSON.stringify(url('./bench/echo-room.js'))});
    const ms = (x, r) => (x.length * 1000) / r;
    const warns = [];
    const c = EchoCanceller.open({ log: { info() {}, debug() {}, error() {}, warn: (o, m) => warns.push(m) } });
    const warm = speech(REPLY1, 'en-us', REF_RATE), ref = speech(REPLY2, 'en-us', REF_RATE);
    runRoom(buildRoom({ durationMs: ms(warm, REF_RATE) + 1000, replies: [{ ref: warm, atMs: 200, delayMs: 120 }] }), c, { t0Ms: 100000, latencyMs: c.latencyMs });
    const t0 = 100000 + ms(warm, REF_RATE) + 3000;
    c.newStream(t0 + 300);
    runRoom(buildRoom({ durationMs: 300 + ms(ref, REF_RATE) + 1000, replies: [{ ref, atMs: 300, delayMs: 120 }], echoDbfs: -140,
      user: { speech: speech(USER, 'en+f3', MIC_RATE), atMs: 500, levelDbfs: -26 } }), c, { t0Ms: t0, latencyMs: c.latencyMs });
    c.close();
    console.log(JSON.stringify({ warns, resets: c.filterResets }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const said = JSON.parse(r.stdout.trim().split('\n').pop()!) as { warns: string[]; resets: number };
  assert.equal(r.stderr, '', 'libspeexdsp wrote to stderr');
  // The case does make a filter add echo (else it proves nothing about "acting funny"): it was reset, and said so in the log.
  assert.ok(said.resets >= 1 && said.warns.some((m) => m.startsWith('echo filter reset')), `no reset logged: ${JSON.stringify(said)}`);
});

// Issue 25: SpeexDSP's own reset ("The echo canceller started acting funny and got slapped (reset)"), printed by
// libspeexdsp with fprintf(stderr): the watchdog that resets first (SpeexEcho.process) only narrowed it, and ~1 end-to-end
// tonal room in 4 still had it on stderr. Here Speex resets itself at once, every time: in a room whose echo comes in 30
// times louder than a quiet reply (-50 dB) its filter learns that gain, then the reply turns up 50 dB and the echo it
// predicts blows past its bounds. Before: its line on stderr twice per run (3 runs of 3), nothing in the log. Now the
// line is the daemon's (pino, JSON on stdout), once (the second within SPEEX_PRINT_EVERY_MS is counted, not logged),
// stderr stays empty, and C's stderr is back where it was after each call, also after one that threw.
test('SpeexDSP\'s own "acting funny" reset, forced (a filter learnt on a quiet reply, then the reply 50 dB louder): a JSON warn line in the daemon\'s log, nothing on stderr, and C\'s stderr restored after a call that throws', () => {
  const url = (p: string) => new URL(p, import.meta.url).href;
  const script = `
    const { createRequire } = await import('node:module');
    const koffi = createRequire(${JSON.stringify(url('../../package.json'))})('koffi');
    const { EchoCanceller } = await import(${JSON.stringify(url('../src/audio/aec/index.js'))});
    const { SpeexEcho } = await import(${JSON.stringify(url('../src/audio/aec/speex.js'))});
    const { createLogger } = await import(${JSON.stringify(url('../src/log.js'))});
    const { REF_RATE, REPLY1, buildRoom, runRoom, speech } = await import(${JSON.stringify(url('./bench/echo-room.js'))});
    const c = EchoCanceller.open({ log: createLogger('info') });
    const ref = speech(REPLY1, 'en-us', REF_RATE).map((v, i) => v * (i < 3 * REF_RATE ? 10 ** (-50 / 20) : 1));
    runRoom(buildRoom({ durationMs: 300 + (ref.length * 1000) / REF_RATE + 500, replies: [{ ref, atMs: 300, delayMs: 120 }], echoGain: 30 }), c, { t0Ms: 100000, latencyMs: c.latencyMs });
    c.close();
    // C's stderr (the variable libspeexdsp's fprintf reads) before and after a call into it that throws (bad arguments).
    const cell = new BigUint64Array(koffi.view(koffi.load(null).symbol('stderr'), 8));
    const before = cell[0], e = new SpeexEcho(160, 3840, 16000);
    let threw = false;
    try { e.process({}, new Int16Array(160), new Int16Array(160)); } catch { threw = true; }
    e.destroy();
    await new Promise((r) => setTimeout(r, 100)); // pino's stdout
    console.log(JSON.stringify({ resets: c.filterResets, threw, restored: cell[0] === before }));`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stderr, '', 'libspeexdsp wrote to stderr');
  const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
  const end = lines.pop() as { resets: number; threw: boolean; restored: boolean };
  const funny = lines.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('speexdsp: warning: The echo canceller started acting funny'));
  assert.equal(funny.length, 1, `one JSON line for Speex's reset: ${JSON.stringify(lines)}`);
  assert.equal(funny[0].level, 'warn');
  // Speex's own resets are counted with the canceller's (the watchdog's): at least as many as Speex said. How many
  // it makes in this room depends on the build (bookworm x86_64: 2, trixie's libspeexdsp in the fresh root: 1).
  assert.ok(end.resets >= funny.length, `Speex reset its filter (${funny.length} line) and the canceller counted it: ${end.resets}`);
  assert.ok(end.threw && end.restored, `C's stderr restored after a call that threw: ${JSON.stringify(end)}`);
});
