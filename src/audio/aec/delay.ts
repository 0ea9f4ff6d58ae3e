// Bulk delay between the reference (what the speaker played) and the mic:
// GCC-PHAT on both streams decimated to 2 kHz. Every HOP of mic, the last
// BLOCK of it is cross-correlated with the reference over every lag from 0
// to maxLagMs; each block's cross-spectrum is whitened (PHAT: only the phase
// counts, so the talker's spectrum and the room's colour do not) and
// averaged with a leak, so the estimate follows a jump within about a
// second. Blocks where the reference was silent, or the mic was, teach
// nothing and are skipped. The peak is the direct path (the loudest arrival
// of a small speaker's sound at a mic a few cm away); the canceller's
// adaptive filter models everything after it.
import FFT from 'fft.js';

/**
 * lagMs: the direct path's delay; confidence: its correlation peak over the correlation's rms; ambiguity: the best
 * correlation at lags more than AMBIGUOUS_MS from the peak, over the peak (see DelayEstimator.block).
 */
export interface DelayEstimate { lagMs: number; confidence: number; ambiguity: number }

/**
 * Lags this far (ms) either side of the peak are its own: the direct path's main lobe and the room's early
 * reflections (the echo room's come 2-22 ms after it, the direct-path pick looks 40 ms back). Beyond, a peak near
 * as high is another delay that fits as well: periodic sound (a steady tone, a chime, a sung note) fits at every
 * period, and the peak among them is chance.
 */
export const AMBIGUOUS_MS = 50;
/** The peak's own lobe on the plain correlation (band-limited to 1 kHz and below: a few ms wide). */
const MAIN_LOBE_MS = 2;

/** A ring of samples indexed by absolute sample number; unwritten or overwritten positions read as 0. */
export class SampleRing {
  readonly buf: Float32Array;
  /** One past the highest absolute index written (everything below it, down to hw - size, is valid). */
  hw = 0;
  constructor(readonly size: number) { this.buf = new Float32Array(size); }
  write(at: number, x: ArrayLike<number>): void {
    if (at > this.hw) this.zero(this.hw, at);
    for (let i = 0; i < x.length; i++) this.buf[(at + i) % this.size] = x[i];
    if (at + x.length > this.hw) this.hw = at + x.length;
  }
  private zero(from: number, to: number): void {
    if (to - from >= this.size) { this.buf.fill(0); return; }
    for (let i = from; i < to; i++) this.buf[i % this.size] = 0;
  }
  read(from: number, out: Float32Array | Int16Array, n = out.length, offset = 0): void {
    for (let i = 0; i < n; i++) {
      const k = from + i;
      out[offset + i] = k >= 0 && k < this.hw && k >= this.hw - this.size ? this.buf[k % this.size] : 0;
    }
  }
  clear(): void { this.buf.fill(0); this.hw = 0; }
}

export class DelayEstimator {
  readonly rate = 2000;
  private readonly L: number; // mic block
  private readonly hop: number;
  private readonly maxLag: number;
  private readonly N: number;
  private readonly fft: FFT;
  private readonly ref: SampleRing;
  private readonly mic: SampleRing;
  private readonly sxy: Float64Array; // averaged cross-spectrum, complex interleaved
  private readonly sxx: Float64Array; private readonly syy: Float64Array; // averaged power spectra
  private nextEnd: number | null = null; // mic index at which the next block ends
  private blocks = 0;
  private readonly xs: Float32Array; private readonly ys: Float32Array;
  private readonly X: number[]; private readonly Y: number[]; private readonly r: number[];
  private readonly tmp: number[];

  constructor(maxLagMs: number, readonly leak = 0.75, blockMs = 256, hopMs = 128) {
    this.L = Math.round((blockMs * this.rate) / 1000);
    this.hop = Math.round((hopMs * this.rate) / 1000);
    this.maxLag = Math.round((maxLagMs * this.rate) / 1000);
    let n = 1;
    while (n < this.L + this.maxLag + this.L) n <<= 1;
    this.N = n;
    this.fft = new FFT(n);
    const ringSize = 1 << Math.ceil(Math.log2(this.L + this.maxLag + this.hop + 8 * this.rate));
    this.ref = new SampleRing(ringSize);
    this.mic = new SampleRing(ringSize);
    this.sxy = new Float64Array(2 * n);
    this.sxx = new Float64Array(n); this.syy = new Float64Array(n);
    this.xs = new Float32Array(n); this.ys = new Float32Array(n);
    this.X = this.fft.createComplexArray(); this.Y = this.fft.createComplexArray();
    this.r = this.fft.createComplexArray(); this.tmp = this.fft.createComplexArray();
  }

  pushRef(at: number, x: ArrayLike<number>): void { this.ref.write(at, x); }
  pushMic(at: number, x: ArrayLike<number>): void { this.mic.write(at, x); if (this.nextEnd === null) this.nextEnd = at + this.L; }

  /** Forget everything learnt (the averaged spectrum); the streams' history stays. */
  reset(): void { this.sxy.fill(0); this.sxx.fill(0); this.syy.fill(0); this.blocks = 0; this.nextEnd = null; }

  /** Blocks that went into the current average. */
  get learnt(): number { return this.blocks; }

  /** Runs every block the mic has completed; returns the newest estimate, or null when nothing new was learnt. */
  update(): DelayEstimate | null {
    let est: DelayEstimate | null = null;
    while (this.nextEnd !== null && this.mic.hw >= this.nextEnd) {
      const end = this.nextEnd;
      this.nextEnd += this.hop;
      if (end - this.L < this.mic.hw - this.mic.size) continue; // fell behind: that mic is gone
      const e = this.block(end);
      if (e) est = e;
    }
    return est;
  }

  private block(end: number): DelayEstimate | null {
    const { L, N, maxLag } = this;
    const xs = this.xs, ys = this.ys;
    xs.fill(0); ys.fill(0);
    this.ref.read(end - L - maxLag, xs, L + maxLag);
    this.mic.read(end - L, ys, L);
    let ex = 0, ey = 0;
    for (let i = 0; i < L + maxLag; i++) ex += xs[i] * xs[i];
    for (let i = 0; i < L; i++) ey += ys[i] * ys[i];
    // Silent reference (nothing to find) or a silent mic (nothing heard): skip.
    const rmsX = Math.sqrt(ex / (L + maxLag)), rmsY = Math.sqrt(ey / L);
    if (rmsX < 30 || rmsY < 3) return null;
    this.fft.realTransform(this.X, xs);
    this.fft.completeSpectrum(this.X);
    this.fft.realTransform(this.Y, ys);
    this.fft.completeSpectrum(this.Y);
    const X = this.X, Y = this.Y, sxy = this.sxy, sxx = this.sxx, syy = this.syy, leak = this.leak;
    for (let k = 0; k < N; k++) {
      const xr = X[2 * k], xi = X[2 * k + 1], yr = Y[2 * k], yi = Y[2 * k + 1];
      sxy[2 * k] = leak * sxy[2 * k] + xr * yr + xi * yi; // X * conj(Y)
      sxy[2 * k + 1] = leak * sxy[2 * k + 1] + xi * yr - xr * yi;
      sxx[k] = leak * sxx[k] + xr * xr + xi * xi;
      syy[k] = leak * syy[k] + yr * yr + yi * yi;
    }
    this.blocks++;
    // SCOT weighting: the averaged cross-spectrum over the averaged powers. Each
    // bin counts by its coherence, so loud blocks teach more than near-silent ones.
    const tmp = this.tmp;
    for (let k = 0; k < N; k++) {
      const d = Math.sqrt(sxx[k] * syy[k]) + 1e-3;
      tmp[2 * k] = sxy[2 * k] / d; tmp[2 * k + 1] = sxy[2 * k + 1] / d;
    }
    this.fft.inverseTransform(this.r, tmp);
    // r[j] = sum_n x[n + j] y[n]: the echo of reference sample maxLag - lag lines up at j = maxLag - lag.
    let best = -Infinity, bestJ = 0, sum2 = 0;
    for (let j = 0; j <= maxLag; j++) {
      const v = this.r[2 * j];
      sum2 += v * v;
      if (v > best) { best = v; bestJ = j; }
    }
    const rms = Math.sqrt(sum2 / (maxLag + 1)) + 1e-12;
    // The direct path is the earliest strong arrival: a reflection may correlate as well or better.
    const early = Math.round(0.04 * this.rate), strongJ = bestJ;
    for (let j = Math.min(maxLag, bestJ + early); j > bestJ; j--) if (this.r[2 * j] >= 0.5 * best) { bestJ = j; break; }
    // The best fit away from the peak (both the strongest and the direct path's, and their neighbourhoods), against
    // it, on the plain (unweighted) correlation: whitened, every bin counts alike, and over a tone the many bins
    // with nothing of the reference in them (their averaged cross-spectrum is noise) make up a peak by chance.
    for (let k = 0; k < 2 * N; k++) tmp[k] = sxy[k];
    this.fft.inverseTransform(this.r, tmp);
    const excl = Math.round((AMBIGUOUS_MS * this.rate) / 1000), lobe = Math.round((MAIN_LOBE_MS * this.rate) / 1000);
    let near = 0, other = 0;
    for (let j = 0; j <= maxLag; j++) {
      const v = this.r[2 * j];
      if (Math.abs(j - bestJ) <= lobe || Math.abs(j - strongJ) <= lobe) near = Math.max(near, v);
      else if (Math.abs(j - bestJ) > excl && Math.abs(j - strongJ) > excl) other = Math.max(other, v);
    }
    return { lagMs: ((maxLag - bestJ) * 1000) / this.rate, confidence: best / rms, ambiguity: near > 0 ? Math.min(1, other / near) : 1 };
  }
}
