// Feedback sounds, generated (nothing to ship or license): a two-note wake
// chime and a low falling error sound. The chime is made of pure tones on
// purpose: while it plays, the microphone audio passes through narrow notch
// filters at exactly those frequencies (ChimeNotch), so a chime the mic hears
// is not sent to the server, while the user's speech around it is.
export const CHIME_HZ = [1568, 2093]; // G6, C7: above most speech energy
const ERROR_HZ = [440, 330];

function notes(freqs: number[], noteMs: number, rate: number, volume: number): Buffer {
  const n = Math.round((rate * noteMs) / 1000);
  const out = Buffer.alloc(n * freqs.length * 2);
  freqs.forEach((f, k) => {
    for (let i = 0; i < n; i++) {
      const env = Math.min(1, i / (rate * 0.015), (n - i) / (rate * 0.025)); // soft 15 ms attack, 25 ms release: no clicks, a narrow spectrum
      out.writeInt16LE(Math.round(Math.sin((2 * Math.PI * f * i) / rate) * env * volume * 32767), (k * n + i) * 2);
    }
  });
  return out;
}

export const wakeChime = (rate: number, volume: number): Buffer => notes(CHIME_HZ, 80, rate, volume);
export const errorSound = (rate: number, volume: number): Buffer => notes(ERROR_HZ, 180, rate, volume);
export const CHIME_MS = 160;

/** Biquad notch filters (RBJ cookbook) in series, one per chime note; state carries across frames. */
export class ChimeNotch {
  private readonly stages: { b0: number; b1: number; b2: number; a1: number; a2: number; x1: number; x2: number; y1: number; y2: number }[];

  constructor(rate: number, freqs = CHIME_HZ, q = 5) {
    // Two stages per note: deeper and wider than one, still far from the speech fundamentals.
    this.stages = [...freqs, ...freqs].map((f) => {
      const w = (2 * Math.PI * f) / rate;
      const alpha = Math.sin(w) / (2 * q);
      const a0 = 1 + alpha;
      return { b0: 1 / a0, b1: (-2 * Math.cos(w)) / a0, b2: 1 / a0, a1: (-2 * Math.cos(w)) / a0, a2: (1 - alpha) / a0, x1: 0, x2: 0, y1: 0, y2: 0 };
    });
  }

  process(pcm: Buffer): Buffer {
    const out = Buffer.alloc(pcm.length);
    for (let i = 0; i + 1 < pcm.length; i += 2) {
      let v = pcm.readInt16LE(i);
      for (const s of this.stages) {
        const y = s.b0 * v + s.b1 * s.x1 + s.b2 * s.x2 - s.a1 * s.y1 - s.a2 * s.y2;
        s.x2 = s.x1; s.x1 = v; s.y2 = s.y1; s.y1 = y;
        v = y;
      }
      out.writeInt16LE(Math.max(-32768, Math.min(32767, Math.round(v))), i);
    }
    return out;
  }
}

// ---- timers (issue 12): the ringing sound, generated like the others.
/** The timer's note: B5, away from the chime's notes and from speech's strongest band. */
export const ALARM_HZ = 988;
/** One cycle of the ringing: three 150 ms beeps 100 ms apart, then 650 ms of silence (1.4 s), repeated until stopped. */
export function alarmSound(rate: number, volume: number): Buffer {
  const beep = notes([ALARM_HZ], 150, rate, volume);
  const gap = Buffer.alloc(Math.round((rate * 100) / 1000) * 2);
  const rest = Buffer.alloc(Math.round((rate * 650) / 1000) * 2);
  return Buffer.concat([beep, gap, beep, gap, beep, rest]);
}
export const ALARM_CYCLE_MS = 1400;
