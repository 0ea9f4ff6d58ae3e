// The engine choice of issue 11, measured: WebRTC audio processing 0.3 (bookworm's; its AEC
// with the extended filter and delay-agnostic mode, at each suppression level) against the
// SpeexDSP canceller, on the same deterministic echo room (test/bench/echo-room.ts, 250 ms path).
// WebRTC gets the reference already shifted by the true delay minus 24 ms (what the canceller's
// delay estimator does for Speex) and a stream delay of 24 ms.
//
//   apt-get install libwebrtc-audio-processing-dev g++ && npm run build && node bench/webrtc-compare/compare.mjs
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const DIST = join(HERE, '../../dist');
const { twoReplies, reductionDb, convergenceMs, toS16, fromS16, rms, db, speech, runRoom, USER, MIC_RATE } = await import(join(DIST, 'test/bench/echo-room.js'));
const { SpeexResampler } = await import(join(DIST, 'src/audio/aec/speex.js'));
const { EchoCanceller } = await import(join(DIST, 'src/audio/aec/index.js'));
const tmp = mkdtempSync(join(tmpdir(), 'webrtc-compare-'));
const bin = join(tmp, 'apm03');
const pc = execFileSync('pkg-config', ['--cflags', '--libs', 'webrtc-audio-processing'], { encoding: 'utf8' }).trim().split(/\s+/);
execFileSync('g++', ['-O2', '-o', bin, join(HERE, 'apm03.cc'), ...pc], { stdio: 'inherit' });

const DELAY = 250;
function webrtc(room, level) {
  const n = room.mic.length, ref16 = new Float64Array(n);
  for (const r of room.spec.replies) {
    const x = new SpeexResampler(24000, 16000, 10).process(Int16Array.from(r.ref, (v) => Math.round(v * 32767)));
    const off = Math.round((r.atMs + DELAY - 24) * 16);
    for (let i = 0; i < x.length && off + i < n; i++) ref16[off + i] = x[i] / 32768;
  }
  writeFileSync(join(tmp, 'mic.raw'), toS16(room.mic)); writeFileSync(join(tmp, 'ref.raw'), toS16(ref16));
  execFileSync(bin, [join(tmp, 'mic.raw'), join(tmp, 'ref.raw'), join(tmp, 'out.raw'), '24'], { stdio: 'ignore', env: { ...process.env, LEVEL: level } });
  return fromS16(readFileSync(join(tmp, 'out.raw')));
}
function speex(room) { const c = EchoCanceller.open({}); try { return runRoom(room, c, { latencyMs: c.latencyMs }); } finally { c.close(); } }

const user = { atInReply2Ms: 2000, levelDbfs: -26 };
const base = twoReplies(DELAY), withUser = twoReplies(DELAY, { user }), hard = twoReplies(DELAY, { drive: 1.5 });
const a = Math.round(((withUser.e2 + user.atInReply2Ms) * MIC_RATE) / 1000), b = a + speech(USER, 'en+f3', MIC_RATE).length;
const f = (x) => (x === null ? '—' : x.toFixed(1));
const { room, e1, e2, l1, l2 } = base;
for (const [name, run] of [['speex', speex], ['webrtc-0.3 high', (r) => webrtc(r, 'high')], ['webrtc-0.3 moderate', (r) => webrtc(r, 'moderate')], ['webrtc-0.3 low', (r) => webrtc(r, 'low')]]) {
  const out = run(room), o1 = run(withUser.room), oh = run(hard.room);
  const userDb = db(rms(o1.map((v, i) => v - out[i]), a, b) / rms(withUser.room.user, a, b));
  console.log(`${name.padEnd(20)} first reply from 1 s ${f(reductionDb(room, out, e1 + 1000, e1 + l1))} dB (converged ${convergenceMs(room, out, e1, e1 + l1)} ms); ` +
    `next reply first 300 ms ${f(reductionDb(room, out, e2, e2 + 300))} dB, from 1 s ${f(reductionDb(room, out, e2 + 1000, e2 + l2))} dB; ` +
    `pushed speaker ${f(reductionDb(hard.room, oh, hard.e2 + 1000, hard.e2 + hard.l2))} dB; user voice ${f(userDb)} dB`);
}
