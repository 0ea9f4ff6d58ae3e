// The kept filter, tried on a new playback stream's first echo (see
// EchoCanceller.newStream). Speex's adapted filter (its impulse response,
// SPEEX_ECHO_GET_IMPULSE_RESPONSE) predicts the echo from the reference; the
// trial fits that prediction to the microphone at every offset within
// +-lag samples of the delay in use (a least-squares gain per offset: Speex's
// scale does not matter) and subtracts the best fit so far. A new stream's
// path differs from the last one's by the anchoring of its first write (on
// the simulated card, PulseAudio: -20 to +47 ms in six runs), and the kept
// filter run even 1 ms off its offset left under 10 dB in the echo room; at
// the right offset, its linear prediction alone takes the echo down ~28 dB
// there (10-14 dB on the simulated card). Speex is not run meanwhile, so it is
// not taught the wrong offset; it takes over at the offset found.
import FFT from 'fft.js';

/**
 * The fit is K taps of the prediction around the best offset, not one: the path's delay is not a whole number of
 * samples, and the last stream's and this one's fractions differ (a single tap half a sample off left <1 dB in the
 * echo room; fitted over 5, ~28 dB).
 */
const K = 5;
const HALF = (K - 1) >> 1;
/** Diagonal loading of the fit (neighbouring offsets of a band-limited prediction are nearly the same regressor). */
const LOADING = 1e-4;
/** Offsets this far (samples, 1 ms) from the best are another fit, not its own neighbours (see ambiguity). */
const AMBIGUOUS_SAMPLES = 16;

export class FilterTrial {
  private readonly taps: number;
  /** The filter is all zeros (Speex had reset it): it predicts nothing, and there is nothing to try. */
  readonly empty: boolean;
  private readonly fft: FFT;
  private readonly H: number[]; // the taps' spectrum
  private readonly seg: Float32Array;
  private readonly segIn: number[];
  private readonly S: number[];
  private readonly y: number[];
  private readonly cf: FFT; // the mic against the prediction, at every offset (a correlation by FFT)
  private readonly A: number[]; private readonly B: number[]; private readonly P: number[]; private readonly q: number[];
  private readonly micIn: number[]; private readonly yIn: number[];
  private readonly cum: Float64Array; // running sums of the prediction's square (each offset's window energy)
  private readonly c: Float64Array; // per offset: sum of mic * prediction
  private readonly e: Float64Array; // per offset: sum of prediction^2
  private best: number; // index into c/e of the best fit so far (lag: offset 0, the delay in use)
  private readonly r = new Float64Array(K); // the prediction's autocorrelation at 0..K-1 samples
  private readonly w = new Float64Array(K); // the fit: gains on the prediction at offsets best - HALF .. best + HALF

  /**
   * taps: the filter, tap k for a delay of k samples; lag: the offsets tried either side; frame: samples per call;
   * read(from, out): the reference as the canceller feeds it to Speex (at the delay in use, its fraction included).
   */
  constructor(taps: ArrayLike<number>, readonly lag: number, private readonly frame: number, private readonly read: (from: number, out: Float32Array) => void) {
    this.taps = taps.length;
    this.best = lag;
    let energy = 0;
    for (let i = 0; i < taps.length; i++) energy += taps[i] * taps[i];
    this.empty = !(energy > 0);
    const w = frame + 2 * lag; // predictions per frame: the frame and lag either side
    let n = 1;
    while (n < w + this.taps - 1) n <<= 1;
    this.fft = new FFT(n);
    const h = new Array<number>(n).fill(0);
    for (let i = 0; i < taps.length; i++) h[i] = taps[i];
    this.H = this.fft.createComplexArray() as number[];
    this.fft.realTransform(this.H, h);
    this.fft.completeSpectrum(this.H);
    this.seg = new Float32Array(w + this.taps - 1);
    this.segIn = new Array<number>(n).fill(0);
    this.S = this.fft.createComplexArray() as number[];
    this.y = this.fft.createComplexArray() as number[];
    this.c = new Float64Array(2 * lag + 1);
    this.e = new Float64Array(2 * lag + 1);
    let m = 1;
    while (m < w) m <<= 1; // the correlation's lags 0..2 lag over a frame never wrap past w
    this.cf = new FFT(m);
    this.A = this.cf.createComplexArray() as number[]; this.B = this.cf.createComplexArray() as number[];
    this.P = this.cf.createComplexArray() as number[]; this.q = this.cf.createComplexArray() as number[];
    this.micIn = new Array<number>(m).fill(0); this.yIn = new Array<number>(m).fill(0);
    this.cum = new Float64Array(w + 1);
  }

  /**
   * One mic frame, whose first sample lines up with reference sample `refAt` at the delay in use: the frame less
   * the best-fitting prediction so far (into `out`). The fit learns from this frame first.
   */
  frameOut(mic: Int16Array, refAt: number, out: Int16Array): void {
    const { lag, taps, seg, segIn } = this;
    // Prediction for mic samples -lag .. frame + lag: the taps over the reference from refAt - lag - (taps - 1).
    this.read(refAt - lag - (taps - 1), seg);
    for (let i = 0; i < seg.length; i++) segIn[i] = seg[i];
    this.fft.realTransform(this.S, segIn);
    this.fft.completeSpectrum(this.S);
    const S = this.S, H = this.H;
    for (let k = 0; k < S.length; k += 2) {
      const sr = S[k], si = S[k + 1], hr = H[k], hi = H[k + 1];
      S[k] = sr * hr - si * hi; S[k + 1] = sr * hi + si * hr;
    }
    this.fft.inverseTransform(this.y, S);
    const y = this.y, off = taps - 1; // y[2 * (off + i)]: the prediction for mic sample i - lag (circular wrap stays below off)
    const c = this.c, e = this.e, n = this.frame;
    // Offset j - lag: the echo comes that much later than the delay in use, so mic sample i lines up with prediction
    // i - (j - lag), which is Y[i + 2 lag - j] with Y[k] = y[2 (off + k)]. Per offset, over the frame: sum mic * Y
    // (a cross-correlation: by FFT, 2 lag + 1 offsets at once) and sum Y^2 (from running sums). Done directly, this
    // was 2 ms of every 10 ms frame here at 80 ms either side, more than real time on a Pi 3.
    const { micIn, yIn, A, B, P, q, cum, cf } = this, w = n + 2 * lag;
    for (let i = 0; i < n; i++) micIn[i] = mic[i];
    cum[0] = 0;
    for (let k = 0; k < w; k++) { const v = y[2 * (off + k)]; yIn[k] = v; cum[k + 1] = cum[k] + v * v; }
    cf.realTransform(A, micIn); cf.completeSpectrum(A);
    cf.realTransform(B, yIn); cf.completeSpectrum(B);
    for (let k = 0; k < P.length; k += 2) { // conj(A) B: sum_i mic[i] Y[i + d] at lag d
      const ar = A[k], ai = A[k + 1], br = B[k], bi = B[k + 1];
      P[k] = ar * br + ai * bi; P[k + 1] = ar * bi - ai * br;
    }
    cf.inverseTransform(q, P);
    // A window's energy as a difference of running sums is off by ~1e-16 of the whole: one under 1e-6 of it (-60 dB)
    // is taken as none, or rounding passed for a window of prediction and won the fit (seen on the simulated card).
    const floor = 1e-6 * cum[w];
    for (let j = 0; j <= 2 * lag; j++) { const d = 2 * lag - j, ed = cum[d + n] - cum[d]; if (ed > floor) { c[j] += q[2 * d]; e[j] += ed; } }
    // The prediction's autocorrelation (at offset 0: the window's power does not depend on the offset).
    for (let k = 0; k < K; k++) {
      let acc = 0;
      for (let i = 0; i < n; i++) acc += y[2 * (off + lag + i)] * y[2 * (off + lag + i - k)];
      this.r[k] += acc;
    }
    let best = this.best, bestFit = this.fit(best);
    for (let j = HALF; j <= 2 * lag - HALF; j++) { const fit = this.fit(j); if (fit > bestFit) { bestFit = fit; best = j; } }
    this.best = best;
    this.solve();
    const wt = this.w;
    for (let i = 0; i < n; i++) {
      let p = 0;
      for (let a = 0; a < K; a++) p += wt[a] * y[2 * (off + i + 2 * lag - (best - HALF + a))];
      out[i] = Math.max(-32768, Math.min(32767, Math.round(mic[i] - p)));
    }
  }

  /** w = (R + loading)^-1 p: the least-squares taps over the trial so far, around the best offset. */
  private solve(): void {
    const A: number[][] = [];
    // The diagonal is each offset's own power (it changes with the offset where the echo starts); off it, that
    // power times the prediction's normalised autocorrelation (taken at offset 0).
    const e = this.e, j0 = this.best - HALF, rho = (k: number) => (this.r[0] > 0 ? this.r[k] / this.r[0] : 0);
    for (let a = 0; a < K; a++) {
      const row: number[] = [];
      for (let b = 0; b < K; b++) row.push(a === b ? e[j0 + a] * (1 + LOADING) + 1e-9 : rho(Math.abs(a - b)) * Math.sqrt(e[j0 + a] * e[j0 + b]));
      row.push(this.c[this.best - HALF + a]);
      A.push(row);
    }
    for (let col = 0; col < K; col++) { // Gaussian elimination: A is symmetric positive definite (loaded), no pivoting needed
      for (let row = col + 1; row < K; row++) {
        const f = A[row][col] / A[col][col];
        for (let k = col; k <= K; k++) A[row][k] -= f * A[col][k];
      }
    }
    for (let row = K - 1; row >= 0; row--) {
      let v = A[row][K];
      for (let k = row + 1; k < K; k++) v -= A[row][k] * this.w[k];
      this.w[row] = v / A[row][row];
    }
    if (!this.w.every(Number.isFinite)) this.w.fill(0); // nothing to fit yet (no prediction at these offsets): subtract nothing
  }

  /**
   * How well the best fit away from the best offset (more than AMBIGUOUS_SAMPLES either side) does, against the
   * best (0..1, by explained power): near 1, the echo fits as well elsewhere, as a steady tone (the wake chime) or a
   * held vowel does at every period, and the offset found says nothing.
   */
  get ambiguity(): number {
    const best = this.best, top = this.fit(best);
    if (!(top > 0)) return 1;
    let other = 0;
    for (let j = HALF; j <= 2 * this.lag - HALF; j++) if (Math.abs(j - best) > AMBIGUOUS_SAMPLES) other = Math.max(other, this.fit(j));
    return other / top;
  }

  /** The power the prediction explains at offset index j (c^2 / e: the least-squares gain's share of the mic). */
  private fit(j: number): number { return this.e[j] > 0 ? this.c[j] ** 2 / this.e[j] : 0; }

  /**
   * The offset (samples, with its fraction) at which the kept filter fits best so far: the echo comes that much
   * later than the delay in use. The fraction: the peak of the normalised correlation, by a parabola through the
   * best whole offset and its neighbours.
   */
  get offset(): number {
    const { c, e, best } = this;
    const rho = (j: number) => (e[j] > 0 ? c[j] / Math.sqrt(e[j]) : 0);
    const a = rho(best - 1), b = rho(best), d = rho(best + 1);
    const den = a - 2 * b + d;
    const frac = den < 0 ? Math.max(-0.5, Math.min(0.5, (0.5 * (a - d)) / den)) : 0;
    return best - this.lag + frac;
  }
}
