// Wake-word logic: framing, detection position, refractory, arming with the
// real Porcupine package's error paths. The engine is faked at its interface
// (Porcupine validates its key online; no key can be used here).
import { test, mock } from 'node:test';
import assert from 'node:assert/strict';
import { Reframer, WakeWord, WakeArmError, type WakeEngine } from '../src/wake/engine.js';
import { porcupineFactory, classify, libraryPath } from '../src/wake/porcupine.js';
import { toneEngine } from '../src/wake/tone.js';
import { ChimeNotch, CHIME_HZ, wakeChime } from '../src/audio/sounds.js';
import { goertzelPower, tone, silence, resample } from '../src/audio/pcm.js';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const pv = require('@picovoice/porcupine-node').PorcupineErrors;

function ramp(samples: number): Buffer {
  const b = Buffer.alloc(samples * 2);
  for (let i = 0; i < samples; i++) b.writeInt16LE((i % 30000) - 15000, i * 2);
  return b;
}
function chunks(buf: Buffer, sizes: number[]): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0, k = 0; i < buf.length; k++) { const n = sizes[k % sizes.length] * 2; out.push(buf.subarray(i, i + n)); i += n; }
  return out;
}

test('reframer: chunks of any size become exact 512-sample frames, nothing dropped or repeated', () => {
  const input = ramp(16000);
  for (const sizes of [[320], [1], [511, 513, 7], [1024], [100, 2000, 3]]) {
    const rf = new Reframer(512);
    const frames: Int16Array[] = [];
    const ends: number[] = [];
    for (const c of chunks(input, sizes)) rf.push(c, (f, end) => { frames.push(Int16Array.from(f)); ends.push(end); });
    assert.equal(frames.length, Math.floor(16000 / 512));
    const joined = Buffer.from(new Int16Array(frames.flatMap((f) => [...f])).buffer);
    assert.deepEqual(joined, input.subarray(0, frames.length * 1024), `chunk sizes ${sizes}`);
    assert.deepEqual(ends, frames.map((_, i) => (i + 1) * 512));
  }
});

/** An engine that "hears" the keyword in the frame ending at a given sample. */
function fakeEngine(endsAt: number[]): WakeEngine & { seen: number } {
  const e = { frameLength: 512, keywords: ['jarvis'], seen: 0, process: () => { e.seen += 512; return endsAt.includes(e.seen) ? 0 : -1; }, release: () => undefined };
  return e;
}

test('wake word: the detection offset splits the chunk exactly where the keyword frame ended', () => {
  const at = 512 * 20; // the 20th frame
  for (const sizes of [[320], [333, 1000], [7]]) {
    const w = new WakeWord('fake', () => fakeEngine([at]), 0);
    w.arm();
    let consumed = 0;
    let found: number | null = null;
    for (const c of chunks(ramp(16000), sizes)) {
      const off = w.push(c);
      if (off !== null) { found = consumed + off / 2; break; }
      consumed += c.length / 2;
    }
    assert.equal(found, at, `chunk sizes ${sizes}`);
  }
});

test('wake word: refractory period swallows repeats of the same utterance', () => {
  const w = new WakeWord('fake', () => fakeEngine([5120, 5632, 6144, 512 * 80]), 16000 * 1); // 1 s
  w.arm();
  const hits: number[] = [];
  w.on('detected', () => hits.push(1));
  for (const c of chunks(ramp(16000 * 3), [320])) w.push(c);
  assert.equal(hits.length, 2);
  assert.equal(w.status().detections, 2);
});

test('arming: transient errors (real Porcupine error classes) are retried with back-off; permanent ones wait for the user', () => {
  mock.timers.enable({ apis: ['setTimeout'] });
  try {
    let calls = 0;
    const w = new WakeWord('porcupine', () => {
      calls++;
      if (calls <= 2) throw classify(new pv.PorcupineActivationError('Porcupine failed to initialize: network'), null);
      return fakeEngine([]);
    }, 0);
    const delays: (number | null)[] = [];
    w.on('not-armed', (_e: WakeArmError, d: number | null) => delays.push(d));
    w.arm();
    assert.equal(w.armed, false);
    assert.match(w.status().reason!, /^PorcupineActivationError: /);
    mock.timers.tick(5000);
    mock.timers.tick(15000);
    assert.equal(w.armed, true);
    assert.deepEqual(delays, [5000, 15000]);
    assert.equal(w.status().reason, null);

    let permanentCalls = 0;
    const p = new WakeWord('porcupine', () => { permanentCalls++; throw classify(new pv.PorcupineActivationRefusedError('refused'), null); }, 0);
    const pd: (number | null)[] = [];
    p.on('not-armed', (_e: WakeArmError, d: number | null) => pd.push(d));
    p.arm();
    mock.timers.tick(3_600_000);
    assert.deepEqual(pd, [null]);
    assert.equal(permanentCalls, 1, 'no hammering');
    const limit = classify(new pv.PorcupineActivationLimitReachedError('limit'), null);
    assert.equal(limit.kind, 'slow');
  } finally { mock.timers.reset(); }
});

test('real Porcupine: no AccessKey is a clear, permanent reason', () => {
  const f = porcupineFactory({ accessKey: null, keywords: [{ name: 'jarvis', sensitivity: 0.5 }], modelPath: null });
  assert.throws(f, (e: WakeArmError) => e.kind === 'permanent' && /no Picovoice AccessKey: set PICOVOICE_ACCESS_KEY/.test(e.message));
});

test('real Porcupine: a malformed AccessKey fails with its error class, permanent, and the key is not in the message', () => {
  const key = 'not-a-real-key-1234';
  const f = porcupineFactory({ accessKey: key, keywords: [{ name: 'jarvis', sensitivity: 0.5 }], modelPath: null });
  assert.throws(f, (e: WakeArmError) => {
    assert.equal(e.errorClass, 'PorcupineInvalidArgumentError');
    assert.equal(e.kind, 'permanent');
    assert.ok(!e.message.includes(key), e.message);
    assert.match(e.message, /Failed to parse AccessKey/);
    return true;
  });
});

test('real Porcupine: an unknown keyword or missing .ppn is named', () => {
  assert.throws(porcupineFactory({ accessKey: 'x', keywords: [{ name: 'hey pi', sensitivity: 0.5 }], modelPath: null }), /'hey pi' is neither a built-in keyword/);
  assert.throws(porcupineFactory({ accessKey: 'x', keywords: [{ name: '/nope/hey-pi.ppn', sensitivity: 0.5 }], modelPath: null }), /\/nope\/hey-pi\.ppn does not exist/);
});

test('platform library: Pi 5 (Cortex-A76) gets the A76 build, Pi 3 32-bit the A53 one, x86_64 the package default', () => {
  const pkg = require.resolve('@picovoice/porcupine-node/package.json').replace(/\/package\.json$/, '');
  assert.match(libraryPath(pkg, 'CPU part\t: 0xd0b\n', 'arm64')!, /raspberry-pi\/cortex-a76-aarch64\/pv_porcupine\.node$/);
  assert.match(libraryPath(pkg, 'CPU part\t: 0xd03\n', 'arm')!, /raspberry-pi\/cortex-a53\/pv_porcupine\.node$/);
  assert.match(libraryPath(pkg, 'CPU part\t: 0xd08\n', 'arm64')!, /cortex-a72-aarch64/);
  assert.equal(libraryPath(pkg, null, 'x64'), undefined);
});

test('tone stand-in engine fires once per steady tone, at its frame rate', () => {
  const e = toneEngine(1000);
  const audio = Buffer.concat([silence(300, 16000), tone(1000, 400, 16000), silence(300, 16000), tone(1000, 400, 16000)]);
  const rf = new Reframer(512);
  const hits: number[] = [];
  rf.push(audio, (f, end) => { if (e.process(f) >= 0) hits.push(end); });
  assert.equal(hits.length, 2);
  assert.ok(hits[0] > 300 * 16 + 200 * 16 && hits[0] <= 300 * 16 + 256 * 16 + 512, `first at ${hits[0]}`);
});

test('chime notch: removes the chime heard by the mic, keeps speech-band audio', () => {
  const chime16k = resample(wakeChime(24000, 0.3), 24000, 16000);
  const speech = tone(300, chime16k.length / 32, 16000, 0.3);
  const mixed = Buffer.alloc(chime16k.length);
  for (let i = 0; i < mixed.length; i += 2) mixed.writeInt16LE(Math.max(-32768, Math.min(32767, chime16k.readInt16LE(i) + speech.readInt16LE(i))), i);
  const out = new ChimeNotch(16000).process(mixed);
  const tail = (b: Buffer) => b.subarray(b.length / 2); // after the filters settle
  for (const hz of CHIME_HZ) {
    const before = goertzelPower(tail(mixed), 16000, hz) + goertzelPower(mixed.subarray(0, mixed.length / 2), 16000, hz);
    const after = goertzelPower(tail(out), 16000, hz) + goertzelPower(out.subarray(0, out.length / 2), 16000, hz);
    assert.ok(after < before / 100, `${hz} Hz: ${after} vs ${before} (> 20 dB down)`);
  }
  const keep = goertzelPower(tail(out), 16000, 300) / goertzelPower(tail(speech), 16000, 300);
  assert.ok(keep > 0.9, `300 Hz kept (${keep.toFixed(3)})`);
});
