/**
 * Small pure helpers for raw PCM: signed 16-bit little-endian, mono, in Node
 * Buffers. Shared by the emulator, the daemon's audio path and the tests.
 * Nothing here allocates more than the result and nothing keeps state.
 */

/** Level reported for silence or an empty block, so callers never see -Infinity. */
export const SILENCE_DBFS = -120;

const FULL_SCALE = 32768;

/** Number of whole s16 samples in a buffer (a trailing odd byte is ignored). */
export function sampleCount(pcm: Buffer): number {
  return pcm.length >> 1;
}

/**
 * RMS level in dBFS (0 dBFS = a full-scale square wave; a full-scale sine is
 * about -3 dBFS). Silence and empty input give SILENCE_DBFS (-120) rather than
 * -Infinity so thresholds and JSON logs stay finite.
 */
export function rmsDbfs(pcm: Buffer): number {
  const n = sampleCount(pcm);
  if (n === 0) return SILENCE_DBFS;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const s = pcm.readInt16LE(i * 2);
    sum += s * s;
  }
  const rms = Math.sqrt(sum / n) / FULL_SCALE;
  if (rms <= 0) return SILENCE_DBFS;
  return Math.max(SILENCE_DBFS, 20 * Math.log10(rms));
}

/** Bytes of s16 mono audio for `ms` at `rate` (always even: whole samples). */
export function bytesForMs(ms: number, rate: number): number {
  return Math.max(0, Math.round((ms * rate) / 1000)) * 2;
}

/** Duration in ms of s16 mono audio of `bytes` bytes at `rate`. */
export function msForBytes(bytes: number, rate: number): number {
  return ((bytes >> 1) * 1000) / rate;
}

function clampS16(v: number): number {
  return v > 32767 ? 32767 : v < -32768 ? -32768 : Math.round(v);
}

/**
 * Resample by linear interpolation. Good enough for speech between 16 and 24
 * kHz (what the Live API uses); it does no anti-alias filtering, so it is not
 * meant for large downsampling ratios. Output length = round(n * to / from).
 */
export function resample(pcm: Buffer, fromRate: number, toRate: number): Buffer {
  if (!(fromRate > 0) || !(toRate > 0)) throw new RangeError(`bad sample rates ${fromRate} -> ${toRate}`);
  const n = sampleCount(pcm);
  if (fromRate === toRate) return Buffer.from(pcm.subarray(0, n * 2));
  const outN = Math.round((n * toRate) / fromRate);
  const out = Buffer.alloc(outN * 2);
  if (n === 0) return out;
  const step = fromRate / toRate;
  for (let i = 0; i < outN; i++) {
    const pos = i * step;
    const i0 = Math.floor(pos);
    const frac = pos - i0;
    const a = pcm.readInt16LE(Math.min(i0, n - 1) * 2);
    // Past the last input sample, hold it rather than read beyond the buffer.
    const b = pcm.readInt16LE(Math.min(i0 + 1, n - 1) * 2);
    out.writeInt16LE(clampS16(a + (b - a) * frac), i * 2);
  }
  return out;
}

/** A sine tone; `amplitude` is a fraction of full scale (0..1). */
export function tone(freqHz: number, ms: number, rate: number, amplitude = 0.3): Buffer {
  const bytes = bytesForMs(ms, rate);
  const out = Buffer.alloc(bytes);
  const w = (2 * Math.PI * freqHz) / rate;
  for (let i = 0; i < bytes / 2; i++) {
    out.writeInt16LE(clampS16(amplitude * 32767 * Math.sin(w * i)), i * 2);
  }
  return out;
}

/** Digital silence (all zero samples). */
export function silence(ms: number, rate: number): Buffer {
  return Buffer.alloc(bytesForMs(ms, rate));
}

/**
 * Power of one frequency in the block (Goertzel algorithm), normalised so a
 * pure sine of amplitude A (fraction of full scale) at exactly that frequency
 * gives about A*A: a full-scale tone ~1, amplitude 0.3 ~0.09, other
 * frequencies and silence ~0. Lets tests tell a 440 Hz reply from a 660 Hz one
 * without an FFT. The frequency need not fall on an FFT bin.
 */
export function goertzelPower(pcm: Buffer, rate: number, freqHz: number): number {
  const n = sampleCount(pcm);
  if (n === 0) return 0;
  const coeff = 2 * Math.cos((2 * Math.PI * freqHz) / rate);
  let s1 = 0;
  let s2 = 0;
  for (let i = 0; i < n; i++) {
    const x = pcm.readInt16LE(i * 2) / 32767;
    const s0 = x + coeff * s1 - s2;
    s2 = s1;
    s1 = s0;
  }
  const power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
  // |X(f)| of a sine of amplitude A over n samples is about A*n/2.
  return power / ((n * n) / 4);
}
