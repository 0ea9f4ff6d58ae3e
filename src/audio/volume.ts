// Reply volume and a soft limiter, applied to everything the speaker plays.
// The gain is audio.volume (percent, `ctl volume`); the limiter then keeps
// every sample at or under LIMIT by riding the gain down over the 2 ms before
// a peak (look-ahead) and back up over ~100 ms, so a loud reply (or a volume
// above 100%) never clips. Clipping distorts, and it also defeats echo
// cancellation, which can only remove what it can model from the samples it
// is given. Below the limit the signal passes unchanged (bit-exact at 100%).

/** Peak level the limiter allows: -2 dBFS. */
export const LIMIT = 0.8;
const FULL = 32767;
const LOOKAHEAD_MS = 2;
const RELEASE_MS = 100; // the gain climbs from 0 back to 1 in this long
const VOLUME_RAMP_MS = 20; // a volume change glides over this long instead of clicking

export class Limiter {
  private readonly ahead: number; // look-ahead in samples (the delay the limiter adds)
  private readonly release: number;
  private readonly volumeStep: number;
  private readonly ceiling = LIMIT * FULL;
  private held: number[] = []; // scaled samples not yet output (at most `ahead`)
  private need: number[] = []; // the gain each of them needs (1 = none)
  private loud = 0; // how many of `need` are below 1
  private gain = 1;
  private volume: number;
  private target: number;

  constructor(percent: number, rate: number) {
    this.volume = this.target = percent / 100;
    this.ahead = Math.max(1, Math.round((rate * LOOKAHEAD_MS) / 1000));
    this.release = 1000 / (rate * RELEASE_MS);
    this.volumeStep = 1000 / (rate * VOLUME_RAMP_MS);
  }

  /** The volume in percent; a change glides in over 20 ms (at once when nothing is held, i.e. between replies). */
  set percent(p: number) {
    this.target = p / 100;
    if (this.held.length === 0) this.volume = this.target;
  }
  get percent(): number { return Math.round(this.target * 100); }

  /** Samples in, limited samples out, `ahead` samples later (they come out with the next call or drain()). */
  process(pcm: Buffer): Buffer {
    const n = pcm.length >> 1;
    const out = Buffer.alloc(Math.max(0, this.held.length + n - this.ahead) * 2);
    let o = 0;
    for (let i = 0; i < n; i++) {
      const d = this.target - this.volume;
      this.volume += d > this.volumeStep ? this.volumeStep : d < -this.volumeStep ? -this.volumeStep : d;
      const x = pcm.readInt16LE(i * 2) * this.volume;
      const a = Math.abs(x);
      const g = a > this.ceiling ? this.ceiling / a : 1;
      this.held.push(x);
      this.need.push(g);
      if (g < 1) this.loud++;
      if (this.held.length > this.ahead) o = this.emit(out, o);
    }
    return out;
  }

  /** The samples still held for look-ahead (the end of a reply, or before silence). */
  drain(): Buffer {
    const out = Buffer.alloc(this.held.length * 2);
    let o = 0;
    while (this.held.length > 0) o = this.emit(out, o);
    return out;
  }

  /** Forget held samples (barge-in); the volume stays. */
  reset(): void { this.held = []; this.need = []; this.loud = 0; this.gain = 1; }

  private emit(out: Buffer, o: number): number {
    // The gain for the oldest held sample: low enough for every peak in the
    // look-ahead window, reached by a straight ramp that ends at that peak.
    let g = 1;
    if (this.loud > 0) {
      for (let j = 0; j < this.need.length; j++) {
        const r = this.need[j];
        if (r < 1) g = Math.min(g, r + (j * (1 - r)) / this.ahead);
      }
    }
    g = Math.min(g, this.gain + this.release);
    this.gain = g;
    const x = this.held.shift()!;
    if (this.need.shift()! < 1) this.loud--;
    const y = Math.round(x * g);
    out.writeInt16LE(y > FULL ? FULL : y < -FULL - 1 ? -FULL - 1 : y, o);
    return o + 2;
  }
}
