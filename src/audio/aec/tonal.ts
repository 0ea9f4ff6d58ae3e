// The tonal-leak guard's two parts (issue 25; wired in ../echo.ts): whether what the speaker played over the
// recent echo window is tonal (a few narrow peaks hold nearly all its energy: a chime, timer beeps, a sung
// answer), and a bank of narrow IIR notches at those peaks for the cleaned microphone. A tone leaked past a
// misaligned canceller is taken out wherever its delay went (a tone's frequency does not move with the echo
// path); someone talking over it, broadband, loses only those narrow bands. Deterministic: no randomness, the
// same samples in give the same samples out.
import FFT from 'fft.js';

/** Analysis block of the reference (24 kHz): 4096 samples, 5.9 Hz bins, a new block every TONAL_HOP samples. */
export const TONAL_BLOCK = 4096;
const TONAL_HOP = 1024;
/** A peak claims its bin and this many either side (a Hann window's main lobe is +-2 bins). */
const NEIGHBOURS = 2;
/** At most this many peaks, with their neighbours 2% of the spectrum's bins (8 x 5 of 2048). */
export const TONAL_PEAKS = Math.floor((0.02 * TONAL_BLOCK) / 2 / (2 * NEIGHBOURS + 1));
/**
 * Tonal: the peaks (TONAL_PEAKS, with neighbours) hold this share of the window's energy. Measured on the tests'
 * replies over 1.45 s windows: the tonal reply (pure tones) 0.999+ wherever it plays; espeak speech at most ~0.5.
 */
export const TONAL_SHARE = 0.9;
/** Quieter than this (mean power over the window, dBFS) is no reference to speak of: not tonal. */
const TONAL_FLOOR_DB = -70;
/**
 * Tonal only with this many blocks of the window audible (over TONAL_FLOOR_DB; each block spans 170 ms, so a tone of
 * ~160 ms alone makes 7: the wake chime does, a 130 ms one does not): a window holding
 * the first syllable of a spoken reply alone (a vowel's few harmonics) had 86% of its energy in 8 peaks.
 */
const TONAL_MIN_BLOCKS = 7;
/** A peak under this share of the window's energy is not notched (-30 dB: its echo is under the VAD's threshold). */
const PEAK_MIN_SHARE = 1e-3;
/**
 * Each notch: its -3 dB width (each biquad's), and how many biquads are cascaded. Wide because what leaks past a
 * misaligned canceller is the tone modulated by the canceller's own adaptation: measured, sidebands 15-25 Hz either side
 * holding most of the leak (a 40 Hz notch took 7 dB off it, and 100 ms went out at -28 to -39 dBFS).
 */
export const NOTCH_BW_HZ = 160;
const NOTCH_STAGES = 2;

/** A pause in the reference longer than this is silence in the analysis (the ring of samples starts again from zeros). */
const GAP_MS = 20;

/** Blocks kept (40 hops: 1.7 s, over the longest echo searched and its filter, MAX_DELAY_MS + 250 ms; 320 KiB). */
const MAX_BLOCKS = 40;

interface Block { endMs: number; power: Float32Array; audible: boolean; inSum: boolean }

/** What the speaker played, analysed in overlapping blocks: is the recent window tonal, and at which frequencies. */
export class TonalDetector {
  private readonly fft = new FFT(TONAL_BLOCK);
  private readonly win = Float64Array.from({ length: TONAL_BLOCK }, (_, i) => 0.5 - 0.5 * Math.cos((2 * Math.PI * i) / TONAL_BLOCK));
  private readonly buf = new Float64Array(TONAL_BLOCK); // a ring of the last TONAL_BLOCK samples (zeros before the first)
  private pos = 0; // where the next sample goes in buf
  private fill = 0; // samples since the last block
  private readonly spec: number[];
  private readonly inp: Float64Array;
  private blocks: Block[] = [];
  private readonly sum = new Float64Array(TONAL_BLOCK / 2); // the power spectra of the blocks in the window, summed
  private hops = 0;
  private lastEndMs = -Infinity; // when the last sample pushed is heard
  /** When the last analysed block's last sample is heard (monotonic ms; -Infinity before the first): the verdict below is of the window ending there. */
  analysedUntilMs = -Infinity;
  /** The last analysis: tonal or not, the peaks' share of the window's energy (0 with under TONAL_MIN_BLOCKS audible), and their frequencies (Hz) when tonal. */
  tonal = false;
  freqs: number[] = [];
  share = 0;

  constructor(readonly rate = 24000) {
    this.spec = this.fft.createComplexArray() as number[];
    this.inp = new Float64Array(TONAL_BLOCK);
  }

  /** Reference samples (s16le) whose last is heard at endMs; windowMs: how far back an echo can come from. */
  push(pcm: Buffer, endMs: number, windowMs: number): void {
    const n = pcm.length >> 1;
    let changed = false;
    // A gap in what was played (between replies, a new stream): it was silence, not the last reply's samples run on
    // into the next one's first blocks.
    if (endMs - (n * 1000) / this.rate > this.lastEndMs + GAP_MS) { this.buf.fill(0); this.fill = 0; }
    this.lastEndMs = endMs;
    for (let i = 0; i < n; i++) {
      this.buf[this.pos] = pcm.readInt16LE(2 * i) / 32768;
      this.pos = (this.pos + 1) & (TONAL_BLOCK - 1); // a power of two
      if (++this.fill === TONAL_HOP) {
        this.fill = 0;
        this.block(endMs - ((n - 1 - i) * 1000) / this.rate);
        changed = true;
      }
    }
    if (changed) this.analyse(windowMs);
  }

  private block(endMs: number): void {
    this.analysedUntilMs = endMs;
    for (let i = 0; i < TONAL_BLOCK; i++) this.inp[i] = this.buf[(this.pos + i) & (TONAL_BLOCK - 1)] * this.win[i];
    this.fft.realTransform(this.spec, this.inp as unknown as number[]);
    const half = TONAL_BLOCK / 2, p = new Float32Array(half);
    let e = 0;
    for (let k = 0; k < half; k++) { p[k] = this.spec[2 * k] ** 2 + this.spec[2 * k + 1] ** 2; e += p[k]; }
    this.blocks.push({ endMs, power: p, audible: TonalDetector.meanDb(e, 1) > TONAL_FLOOR_DB, inSum: false });
    if (this.blocks.length > MAX_BLOCKS) this.toSum(this.blocks.shift()!, false);
  }

  /** The window's spectrum is a running sum: a block is added as it comes in and taken off as it leaves. */
  private toSum(b: Block, add: boolean): void {
    if (b.inSum === add) return;
    b.inSum = add;
    const k0 = add ? 1 : -1;
    for (let k = 0; k < this.sum.length; k++) this.sum[k] += k0 * b.power[k];
  }

  /** Mean power per sample (dBFS) of `blocks` blocks whose half spectra sum to e (Hann: sum of w^2 is 3/8 N; Parseval). */
  private static meanDb(e: number, blocks: number): number {
    return 10 * Math.log10((2 * e) / (blocks * TONAL_BLOCK * TONAL_BLOCK * 0.375) + 1e-20);
  }

  private analyse(windowMs: number): void {
    const last = this.blocks[this.blocks.length - 1];
    const half = TONAL_BLOCK / 2, s = this.sum;
    if (++this.hops % 256 === 0) { s.fill(0); for (const b of this.blocks) b.inSum = false; } // rounding, from scratch now and then
    let used = 0, audible = 0;
    for (const b of this.blocks) {
      const inWindow = b.endMs >= last.endMs - windowMs;
      this.toSum(b, inWindow);
      if (!inWindow) continue;
      used++;
      if (b.audible) audible++;
    }
    let total = 0;
    for (let k = 1; k < half; k++) total += s[k] = Math.max(0, s[k]);
    const meanDb = TonalDetector.meanDb(total, used);
    const claimed = new Uint8Array(half), peaks: { k: number; e: number }[] = [];
    let held = 0;
    for (let p = 0; p < TONAL_PEAKS && meanDb > TONAL_FLOOR_DB; p++) {
      let best = -1;
      for (let k = 1; k < half; k++) if (!claimed[k] && (best < 0 || s[k] > s[best])) best = k;
      let e = 0;
      for (let k = Math.max(1, best - NEIGHBOURS); k <= Math.min(half - 1, best + NEIGHBOURS); k++) if (!claimed[k]) { claimed[k] = 1; e += s[k]; }
      held += e;
      peaks.push({ k: best, e });
    }
    this.share = total > 0 && audible >= TONAL_MIN_BLOCKS ? held / total : 0; // too little to weigh: 0
    this.tonal = meanDb > TONAL_FLOOR_DB && audible >= TONAL_MIN_BLOCKS && this.share >= TONAL_SHARE;
    this.freqs = !this.tonal ? [] : peaks.filter((q) => q.e >= PEAK_MIN_SHARE * total).map((q) => {
      // Where between bins: a parabola through the log powers (a Hann window's peak is close to one).
      const a = Math.log(s[q.k - 1] + 1e-30), b = Math.log(s[q.k] + 1e-30), c = Math.log(s[Math.min(half - 1, q.k + 1)] + 1e-30);
      const d = a - 2 * b + c < 0 ? (0.5 * (a - c)) / (a - 2 * b + c) : 0;
      return ((q.k + Math.max(-0.5, Math.min(0.5, d))) * this.rate) / TONAL_BLOCK;
    });
  }
}

/** Narrow notches (RBJ biquads, NOTCH_STAGES each) at given frequencies, on s16le audio at `rate`; state kept across chunks. */
export class NotchBank {
  private filters: { hz: number; c: Float64Array; z: Float64Array }[] = [];

  constructor(readonly rate = 16000) {}

  /** The frequencies to notch (those at or over 0.45 x rate are left: the microphone does not carry them). A notch kept keeps its state. */
  set(freqs: number[]): void {
    // A peak within half a notch of a stronger one is that one's (a short tone's spectrum has side peaks).
    const want: number[] = [];
    for (const f of freqs) if (f > 20 && f < 0.45 * this.rate && want.every((w) => Math.abs(w - f) > NOTCH_BW_HZ / 2)) want.push(f);
    this.filters = want.map((hz) => this.filters.find((f) => Math.abs(f.hz - hz) < 0.05) ?? NotchBank.make(hz, this.rate));
  }

  get frequencies(): number[] { return this.filters.map((f) => f.hz); }

  reset(): void { this.filters = []; }

  private static make(hz: number, rate: number): { hz: number; c: Float64Array; z: Float64Array } {
    const w = (2 * Math.PI * hz) / rate, alpha = Math.sin(w) / (2 * (hz / NOTCH_BW_HZ)), a0 = 1 + alpha;
    // b0 b1 b2 a1 a2, normalised by a0.
    const c = Float64Array.from([1 / a0, (-2 * Math.cos(w)) / a0, 1 / a0, (-2 * Math.cos(w)) / a0, (1 - alpha) / a0]);
    return { hz, c, z: new Float64Array(2 * NOTCH_STAGES) };
  }

  /** The chunk through every notch (a new buffer). */
  process(pcm: Buffer): Buffer {
    const n = pcm.length >> 1, out = Buffer.alloc(pcm.length);
    const x = new Float64Array(n);
    for (let i = 0; i < n; i++) x[i] = pcm.readInt16LE(2 * i);
    for (const f of this.filters) {
      const [b0, b1, b2, a1, a2] = f.c;
      for (let s = 0; s < NOTCH_STAGES; s++) {
        let z1 = f.z[2 * s], z2 = f.z[2 * s + 1];
        for (let i = 0; i < n; i++) { // transposed direct form II
          const v = x[i], y = b0 * v + z1;
          z1 = b1 * v - a1 * y + z2; z2 = b2 * v - a2 * y;
          x[i] = y;
        }
        f.z[2 * s] = z1; f.z[2 * s + 1] = z2;
      }
    }
    for (let i = 0; i < n; i++) out.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(x[i]))), 2 * i);
    return out;
  }
}
