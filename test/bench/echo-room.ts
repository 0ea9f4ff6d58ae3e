// The deterministic echo room (issue 11): a reply (espeak-ng speech at 24
// kHz, what the player hands the canceller as its reference) goes through a
// small speaker (tanh soft clipping), sox's resampler to the mic's 16 kHz,
// a synthetic room (impulse response: a direct path, a few early
// reflections, then exponentially decaying noise with the given RT60), a
// delay, and lands in the mic with the user's speech (another espeak-ng
// voice) and noise. Everything is seeded: the same call gives the same
// samples. The canceller is then driven as the daemon drives it: reference
// chunks of 20 ms handed over ~10 ms after their last sample was heard (the
// player's 'played' event), mic frames of varying length (20-100 ms, as
// arecord gives) with slightly jittered timestamps.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import FFT from 'fft.js';
import { rng } from './util.js';

export const MIC_RATE = 16000;
export const REF_RATE = 24000;

/** Standard normal samples (Box-Muller) from a seeded PRNG. */
export function gauss(r: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(r() + 1e-12)) * Math.cos(2 * Math.PI * r());
}

const speechCache = new Map<string, Float64Array>();
/** espeak-ng speech at `rate`, as floats (full scale 1), through sox's resampler. */
export function speech(text: string, voice: string, rate: number): Float64Array {
  const key = `${voice}|${rate}|${text}`;
  const hit = speechCache.get(key);
  if (hit) return hit;
  const dir = mkdtempSync(join(tmpdir(), 'echo-room-'));
  try {
    const wav = join(dir, 'x.wav'), raw = join(dir, 'x.raw');
    try {
      execFileSync('espeak-ng', ['-v', voice, '-s', '160', '-w', wav, '--', text], { stdio: 'pipe' });
      execFileSync('sox', [wav, '-r', String(rate), '-c', '1', '-b', '16', '-e', 'signed-integer', '-t', 'raw', raw], { stdio: 'pipe' });
    } catch (e) {
      throw new Error(`the echo room needs espeak-ng and sox (scripts/deps.sh test): ${(e as Error).message}`);
    }
    const b = readFileSync(raw);
    const x = new Float64Array(b.length >> 1);
    for (let i = 0; i < x.length; i++) x[i] = b.readInt16LE(2 * i) / 32768;
    speechCache.set(key, x);
    return x;
  } finally { rmSync(dir, { recursive: true, force: true }); }
}

/** sox's resampler (not the canceller's), floats in and out. */
export function soxResample(x: Float64Array, from: number, to: number): Float64Array {
  const dir = mkdtempSync(join(tmpdir(), 'echo-room-'));
  try {
    const a = join(dir, 'a.f32'), b = join(dir, 'b.f32');
    writeFileSync(a, Buffer.from(Float32Array.from(x).buffer));
    execFileSync('sox', ['-t', 'raw', '-r', String(from), '-e', 'floating-point', '-b', '32', '-c', '1', a, '-t', 'raw', '-r', String(to), '-e', 'floating-point', '-b', '32', '-c', '1', b], { stdio: 'pipe' });
    const buf = readFileSync(b);
    const f = new Float32Array(buf.buffer, buf.byteOffset, buf.length >> 2);
    return Float64Array.from(f);
  } finally { rmSync(dir, { recursive: true, force: true }); }
}

/**
 * A room impulse response at `rate`: direct path 1, six early reflections (2-22 ms, 0.1-0.35),
 * then exponentially decaying noise reaching -60 dB at rt60, scaled so the reverberant energy
 * is `drrDb` below the direct path's (0 dB: half of the echo comes through the room).
 */
export function roomImpulse(rate: number, rt60s: number, seed: number, drrDb = 0): Float64Array {
  const n = Math.round(rt60s * rate);
  const h = new Float64Array(n);
  const g = gauss(rng(seed));
  const r = rng(seed + 1);
  h[0] = 1;
  for (let k = 0; k < 6; k++) h[Math.round((0.002 + r() * 0.02) * rate)] += (r() < 0.5 ? -1 : 1) * (0.1 + 0.25 * r());
  const start = Math.round(0.003 * rate);
  let e = 0;
  for (let i = start; i < n; i++) e += Math.exp((-2 * 6.908 * i) / (rt60s * rate));
  const level = Math.sqrt(10 ** (-drrDb / 10) / e);
  for (let i = start; i < n; i++) h[i] += level * g() * Math.exp((-6.908 * i) / (rt60s * rate));
  return h;
}

/** Linear convolution by FFT (fft.js), output length x.length + h.length - 1. */
export function convolve(x: Float64Array, h: Float64Array): Float64Array {
  const len = x.length + h.length - 1;
  let n = 1;
  while (n < len) n <<= 1;
  const f = new FFT(n);
  const pad = (a: Float64Array) => { const p = new Array<number>(n).fill(0); for (let i = 0; i < a.length; i++) p[i] = a[i]; return p; };
  const X = f.createComplexArray(), H = f.createComplexArray(), Y = f.createComplexArray(), y = f.createComplexArray();
  f.realTransform(X, pad(x)); f.completeSpectrum(X);
  f.realTransform(H, pad(h)); f.completeSpectrum(H);
  for (let k = 0; k < n; k++) {
    const a = X[2 * k], b = X[2 * k + 1], c = H[2 * k], d = H[2 * k + 1];
    Y[2 * k] = a * c - b * d; Y[2 * k + 1] = a * d + b * c;
  }
  f.inverseTransform(y, Y);
  const out = new Float64Array(len);
  for (let i = 0; i < len; i++) out[i] = y[2 * i];
  return out;
}

export const rms = (x: ArrayLike<number>, from = 0, to = x.length): number => {
  let s = 0;
  for (let i = from; i < to; i++) s += x[i] * x[i];
  return Math.sqrt(s / Math.max(1, to - from));
};
export const db = (ratio: number): number => 20 * Math.log10(ratio);
export function scaleTo(x: Float64Array, rmsTarget: number): Float64Array {
  const k = rmsTarget / rms(x);
  return x.map((v) => v * k);
}

export function toS16(x: ArrayLike<number>, from = 0, to = x.length): Buffer {
  const b = Buffer.alloc((to - from) * 2);
  for (let i = from; i < to; i++) b.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(x[i] * 32768))), 2 * (i - from));
  return b;
}
export function fromS16(b: Buffer): Float64Array {
  const x = new Float64Array(b.length >> 1);
  for (let i = 0; i < x.length; i++) x[i] = b.readInt16LE(2 * i) / 32768;
  return x;
}

/** One reply heard in the room. */
export interface Reply {
  /** What the player played (the reference), 24 kHz floats. */ ref: Float64Array;
  /** When its first sample left the speaker, ms from the start of the run. */ atMs: number;
  /** Echo path delay (speaker -> mic sample), ms. */ delayMs: number;
}

export interface RoomSpec {
  /** Length of the whole run, ms. */ durationMs: number;
  replies: Reply[];
  rt60s?: number; seed?: number;
  /** tanh drive of the small speaker: y = tanh(drive x) / drive (default 1: a -2 dBFS peak comes out 1.6 dB low; 1.5: 3.2 dB). */ drive?: number;
  /** Echo level at the mic (rms dBFS over the loudest reply's span). */ echoDbfs?: number;
  /** The room's gain from speaker to mic instead (Room.gain of another room): the same room, whatever plays in it (echoDbfs ignored). */ echoGain?: number;
  noiseDbfs?: number;
  /** The user talking: 16 kHz speech placed at atMs (ms from the start), at levelDbfs rms. */
  user?: { speech: Float64Array; atMs: number; levelDbfs: number };
}

export interface Room {
  /** Mic signal and its parts, 16 kHz floats, all durationMs long. */
  mic: Float64Array; echo: Float64Array; user: Float64Array; noise: Float64Array;
  spec: RoomSpec;
  /** The gain the echo was scaled by (echoDbfs's, or echoGain). */ gain: number;
}

/** x delayed by `frac` (0..1) of a sample: a 64-tap Blackman-windowed sinc (a no-op for frac 0). */
function fractionalDelay(x: Float64Array, frac: number): Float64Array {
  if (frac < 1e-6) return x;
  const half = 32, taps: number[] = [];
  for (let k = -half + 1; k <= half; k++) {
    const t = k - frac, w = 0.42 + 0.5 * Math.cos((Math.PI * t) / half) + 0.08 * Math.cos((2 * Math.PI * t) / half);
    taps.push((t === 0 ? 1 : Math.sin(Math.PI * t) / (Math.PI * t)) * w);
  }
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    let acc = 0;
    for (let j = 0; j < taps.length; j++) { const k = i - (j - half + 1); if (k >= 0 && k < x.length) acc += taps[j] * x[k]; }
    y[i] = acc;
  }
  return y;
}

const rirCache = new Map<string, Float64Array>();
export function buildRoom(spec: RoomSpec): Room {
  const rt60 = spec.rt60s ?? 0.4, seed = spec.seed ?? 7, drive = spec.drive ?? 1;
  const n = Math.round((spec.durationMs * MIC_RATE) / 1000);
  const echo = new Float64Array(n), user = new Float64Array(n), noise = new Float64Array(n);
  const key = `${rt60}|${seed}`;
  let h = rirCache.get(key);
  if (!h) { h = roomImpulse(MIC_RATE, rt60, seed); rirCache.set(key, h); }
  for (const r of spec.replies) {
    // The small speaker: soft clipping of what the player played (normalised so small signals pass at gain 1).
    const spk = r.ref.map((v) => Math.tanh(drive * v) / drive);
    const at16 = soxResample(spk, REF_RATE, MIC_RATE);
    const pos = ((r.atMs + r.delayMs) * MIC_RATE) / 1000;
    // A path that is not a whole number of samples (as a real one is): the rest by a windowed-sinc fractional delay.
    const off = Math.floor(pos + 1e-9);
    const e = fractionalDelay(convolve(at16, h), pos - off);
    for (let i = 0; i < e.length && off + i < n; i++) if (off + i >= 0) echo[off + i] += e[i];
  }
  // Echo level: set on the loudest reply's span so quiet gaps do not inflate it.
  const target = 10 ** ((spec.echoDbfs ?? -20) / 20);
  const spans = spec.replies.map((r) => { const a = Math.round(((r.atMs + r.delayMs) * MIC_RATE) / 1000); return [a, Math.min(n, a + Math.round((r.ref.length * MIC_RATE) / REF_RATE))]; });
  const k = spec.echoGain ?? target / Math.max(...spans.map(([a, b]) => rms(echo, a, b)));
  for (let i = 0; i < n; i++) echo[i] *= k;
  if (spec.user) {
    const u = scaleTo(spec.user.speech, 10 ** (spec.user.levelDbfs / 20));
    const off = Math.round((spec.user.atMs * MIC_RATE) / 1000);
    for (let i = 0; i < u.length && off + i < n; i++) user[off + i] = u[i];
  }
  const g = gauss(rng(seed + 99));
  const nl = 10 ** ((spec.noiseDbfs ?? -65) / 20);
  for (let i = 0; i < n; i++) noise[i] = nl * g();
  const mic = new Float64Array(n);
  for (let i = 0; i < n; i++) mic[i] = echo[i] + user[i] + noise[i];
  return { mic, echo, user, noise, spec, gain: k };
}

/** What the tests drive: the canceller's two inputs and its output. */
export interface Canceller {
  pushReference(chunk: { atMs: number; pcm: Buffer }): void;
  processMic(frame: Buffer, atMs: number): Buffer;
}
/** Pass-through: the floor every bound must be out of reach of. */
export const passThrough: Canceller = { pushReference() {}, processMic: (f) => Buffer.from(f) };

const MIC_FRAMES_MS = [20, 32, 64, 100, 40, 20, 80];
/** The player's queue: a reply's first sample is written this long before it is heard (audio/playback.ts, 120 ms). */
const STREAM_LEAD_MS = 120;

/**
 * Drives `c` through the room starting at monotonic `t0Ms`: returns its output (16 kHz floats,
 * shifted back by `latencyMs` so it lines up with the mic). Timestamps jitter by up to +-3 ms.
 * `onStream`: called as each reply is written to the device, STREAM_LEAD_MS before it is heard, with when it is
 * heard, as the daemon's echo stage calls the canceller's newStream() (each reply a new playback stream: a new conversation).
 */
export function runRoom(room: Room, c: Canceller, opts: { t0Ms?: number; latencyMs?: number; seed?: number; onFrame?: (endMs: number) => void; onStream?: (audibleAtMs: number) => void } = {}): Float64Array {
  const t0 = opts.t0Ms ?? 100_000;
  const jit = rng(opts.seed ?? 3);
  const n = room.mic.length;
  const out = new Float64Array(n);
  const micPcm = toS16(room.mic);
  // Reference chunks: 20 ms each, in play order.
  const chunks: { atMs: number; endMs: number; pcm: Buffer }[] = [];
  for (const r of room.spec.replies) {
    const step = (REF_RATE * 20) / 1000;
    for (let i = 0; i < r.ref.length; i += step) {
      const j = Math.min(r.ref.length, i + step);
      chunks.push({ atMs: r.atMs + (i * 1000) / REF_RATE, endMs: r.atMs + (j * 1000) / REF_RATE, pcm: toS16(r.ref, i, j) });
    }
  }
  let ci = 0, pos = 0, f = 0, ri = 0;
  while (pos < n) {
    const len = Math.min(n - pos, (MIC_FRAMES_MS[f++ % MIC_FRAMES_MS.length] * MIC_RATE) / 1000);
    const startMs = (pos * 1000) / MIC_RATE, endMs = ((pos + len) * 1000) / MIC_RATE;
    while (ri < room.spec.replies.length && endMs >= room.spec.replies[ri].atMs - STREAM_LEAD_MS) { opts.onStream?.(t0 + room.spec.replies[ri].atMs); ri++; }
    // The frame is in the daemon's hands at endMs; the player has by then said what played until ~10 ms ago.
    while (ci < chunks.length && chunks[ci].endMs + 10 <= endMs) { c.pushReference({ atMs: t0 + chunks[ci].atMs, pcm: chunks[ci].pcm }); ci++; }
    const y = c.processMic(micPcm.subarray(pos * 2, (pos + len) * 2), t0 + startMs + (jit() * 6 - 3));
    if (y.length !== len * 2) throw new Error(`processMic returned ${y.length} bytes for ${len * 2}`);
    for (let i = 0; i < len; i++) out[pos + i] = y.readInt16LE(2 * i) / 32768;
    pos += len;
    opts.onFrame?.(endMs);
  }
  const lat = Math.round(((opts.latencyMs ?? 0) * MIC_RATE) / 1000);
  if (lat > 0) { out.copyWithin(0, lat); out.fill(0, n - lat); }
  return out;
}

/** Echo reduction (dB) over [fromMs, toMs): mic power over output power (noise counts in both: conservative). */
export function reductionDb(room: Room, out: Float64Array, fromMs: number, toMs: number): number {
  const a = Math.round((fromMs * MIC_RATE) / 1000), b = Math.min(out.length, Math.round((toMs * MIC_RATE) / 1000));
  return db(rms(room.mic, a, b) / rms(out, a, b));
}

/**
 * Convergence time (ms from `fromMs`): the end of the first `w` ms window (default 300, every
 * 50 ms) that holds echo (at least 20 dB above the noise) and is reduced by >= `targetDb`; so
 * `w` means "converged over its first w ms"; null: never before `toMs`.
 */
export function convergenceMs(room: Room, out: Float64Array, fromMs: number, toMs: number, targetDb = 20, w = 300): number | null {
  const noise = rms(room.noise);
  for (let t = fromMs; t + w <= toMs; t += 50) {
    const a = Math.round((t * MIC_RATE) / 1000), b = Math.round(((t + w) * MIC_RATE) / 1000);
    if (rms(room.echo, a, b) < noise * 10) continue;
    if (db(rms(room.mic, a, b) / rms(out, a, b)) >= targetDb) return t + w - fromMs;
  }
  return null;
}

export const REPLY1 = 'The weather tomorrow will be mostly sunny with a high of twenty one degrees. In the evening, clouds move in from the west, and there is a small chance of rain after midnight. Take a light jacket if you go out late.';
export const REPLY2 = 'Sure. I have set a timer for ten minutes. I will let you know when it is done, and you can ask me to cancel it at any time.';
export const USER = 'Hey, stop. What about the weekend?';
/** Silence between the two conversations' replies. */
export const GAP_MS = 3000;

/**
 * Two conversations in one room: REPLY1 from 500 ms, then after GAP_MS REPLY2, the same echo
 * delay for both; optionally the user (USER, another voice) talking into REPLY2. e1/e2: when each
 * reply's echo starts at the mic; l1/l2: their lengths (ms).
 */
export function twoReplies(delayMs: number, opts: { drive?: number; user?: { atInReply2Ms: number; levelDbfs: number } } = {}): { room: Room; e1: number; e2: number; l1: number; l2: number } {
  const r1 = speech(REPLY1, 'en-us', REF_RATE), r2 = speech(REPLY2, 'en-us', REF_RATE);
  const l1 = (r1.length * 1000) / REF_RATE, l2 = (r2.length * 1000) / REF_RATE;
  const a1 = 500, a2 = a1 + l1 + GAP_MS;
  const u = opts.user;
  const room = buildRoom({
    durationMs: a2 + l2 + delayMs + 600,
    drive: opts.drive,
    replies: [{ ref: r1, atMs: a1, delayMs }, { ref: r2, atMs: a2, delayMs }],
    user: u && { speech: speech(USER, 'en+f3', MIC_RATE), atMs: a2 + delayMs + u.atInReply2Ms, levelDbfs: u.levelDbfs },
  });
  return { room, e1: a1 + delayMs, e2: a2 + delayMs, l1, l2 };
}
