// An APA102 / DotStar ring as the speaker's indicator: one animation per
// state. The privacy promise holds for rings as for single LEDs: in every
// state in which microphone audio may leave the device, the even pixels
// (0, 2, ...) show the listening colour and nothing else; animations use the
// odd pixels only. `micLive` reads back what was last written successfully:
// the last frame that went out must carry the listening colour on those
// pixels (and a power pin, where the board has one, must be confirmed high).
// A failed write makes `micLive` false with `ledProblem` set, as a failed
// GPIO write does for the single LED.
import type { Indicator, State } from '../ports.js';
import type { OutputLine } from '../gpio/gpio.js';
import { monotonicMs } from '../clock.js';
import { apa102Frame, pixelOf, type Apa102Transport, type Rgb } from './apa102.js';

export type RingColour = 'listening' | 'activity' | 'speaking' | 'muted' | 'error' | 'timer';
export type RingColours = Record<RingColour, Rgb>;

export interface RingPattern {
  /** Audio may leave the device in this state: the even pixels carry the listening colour. */
  privacy: boolean;
  /** Frame interval for animations; 0 = static. */
  tickMs: number;
  describe: string;
  /** The colours at time t (ms since the pattern started) for n pixels. */
  frame(t: number, n: number, c: RingColours): Rgb[];
}

const OFF: Rgb = [0, 0, 0];
const scale = (c: Rgb, k: number): Rgb => [c[0] * k, c[1] * k, c[2] * k];
const all = (n: number, c: Rgb) => Array.from({ length: n }, () => c);
const odd = (n: number) => Array.from({ length: n }, (_, i) => i).filter((i) => i % 2 === 1);
/** On during the first `onMs` of every `periodMs`. */
const flash = (t: number, onMs: number, periodMs: number) => t % periodMs < onMs;

/** Even pixels listening colour; each odd pixel coloured by `f` (its rank among the odd pixels, their count). */
function privacyFrame(n: number, c: RingColours, f: (rank: number, count: number) => Rgb): Rgb[] {
  const odds = odd(n);
  return Array.from({ length: n }, (_, i) => (i % 2 === 0 ? c.listening : f(odds.indexOf(i), odds.length)));
}
/** One odd pixel lit at a time, moving every stepMs; a single odd pixel (3-LED boards) blinks at that pace instead. */
const spin = (t: number, stepMs: number, colour: Rgb) => (rank: number, count: number) =>
  (count <= 1 ? flash(t, stepMs, 2 * stepMs) : Math.floor(t / stepMs) % count === rank) ? colour : OFF;

/** The documented table (docs/hardware.md, "LEDs"): state -> ring animation. */
export const RING_PATTERNS: Record<State, RingPattern> = {
  idle: { privacy: false, tickMs: 0, describe: 'off', frame: (_t, n) => all(n, OFF) },
  connecting: { privacy: true, tickMs: 50, describe: 'listening colour, fast white spin', frame: (t, n, c) => privacyFrame(n, c, spin(t, 100, c.activity)) },
  listening: { privacy: true, tickMs: 0, describe: 'listening colour, solid', frame: (_t, n, c) => all(n, c.listening) },
  thinking: { privacy: true, tickMs: 50, describe: 'listening colour, slow white spin', frame: (t, n, c) => privacyFrame(n, c, spin(t, 250, c.activity)) },
  speaking: {
    privacy: true, tickMs: 50, describe: 'listening colour, speaking colour pulsing',
    frame: (t, n, c) => privacyFrame(n, c, () => scale(c.speaking, 0.15 + 0.85 * (0.5 - 0.5 * Math.cos((2 * Math.PI * t) / 1400)))),
  },
  'follow-up': { privacy: true, tickMs: 50, describe: 'listening colour, white flash each second', frame: (t, n, c) => privacyFrame(n, c, () => (flash(t, 80, 1000) ? c.activity : OFF)) },
  muted: { privacy: false, tickMs: 0, describe: 'muted colour, solid', frame: (_t, n, c) => all(n, c.muted) },
  error: { privacy: false, tickMs: 50, describe: 'error colour, blink 200/200 ms', frame: (t, n, c) => all(n, flash(t, 200, 400) ? c.error : OFF) },
};

/** Idle with a fault only the user can fix: pixel 0 flashes the error colour every 3 s. */
export const RING_FAULT: RingPattern = {
  privacy: false, tickMs: 50, describe: 'error colour flash every 3 s', frame: (t, n, c) => all(n, OFF).map((x, i) => (i === 0 && flash(t, 100, 3000) ? c.error : x)),
};

/** A timer rings: a double flash in the timer colour, on the odd pixels only while audio may leave (the even ones stay the privacy light). */
export function withTimer(p: RingPattern): RingPattern {
  const on = (t: number) => { const k = t % 1000; return k < 150 || (k >= 300 && k < 450); };
  return {
    privacy: p.privacy, tickMs: 50, describe: `${p.describe}; timer ringing`,
    frame: (t, n, c) => p.frame(t, n, c).map((x, i) => ((!p.privacy || i % 2 === 1) && on(t) ? c.timer : (!p.privacy ? OFF : x))),
  };
}

export function parseColour(hex: string): Rgb {
  return [parseInt(hex.slice(1, 3), 16), parseInt(hex.slice(3, 5), 16), parseInt(hex.slice(5, 7), 16)];
}

export interface RingOptions {
  count: number;
  /** 0..1 of the 5-bit global brightness; at least 1 of 31, so the privacy light is never dark. */
  brightness: number;
  colours: RingColours;
  /** A line that powers the LEDs (ReSpeaker 4-Mic: BCM 5): set high at start, part of the read-back. */
  power?: OutputLine | null;
  onError?: (message: string) => void;
}

export class Ring implements Indicator {
  private state: State = 'idle';
  private faulty = false;
  private ringing = false;
  private pattern: RingPattern = RING_PATTERNS.idle;
  private startedAt = 0;
  private timer: NodeJS.Timeout | null = null;
  private lastWritten: Buffer | null = null;
  private readonly brightness5: number;
  private powerProblem: string | null = null; // lasting: the ring has no power
  private frameProblem: string | null = null; // judged afresh with each new pattern

  /** Why the ring is not showing what it should (a failed write, no power), or null. */
  get ledProblem(): string | null { return this.powerProblem ?? this.frameProblem; }

  constructor(private readonly transport: Apa102Transport, private readonly opts: RingOptions) {
    this.brightness5 = Math.max(1, Math.min(31, Math.round(opts.brightness * 31)));
    if (opts.power) {
      try { opts.power.set(true); } catch (e) { this.powerProblem = `cannot power the LED ring: ${(e as Error).message}`; }
    }
    this.apply();
  }

  show(state: State): void { this.state = state; this.apply(); }
  fault(on: boolean): void { if (on !== this.faulty) { this.faulty = on; this.apply(); } }
  timerRinging(on: boolean): void { if (on !== this.ringing) { this.ringing = on; this.apply(); } }

  /** True only when the last frame written successfully shows the listening colour on the privacy pixels. */
  get micLive(): boolean {
    if (!this.pattern.privacy || this.ledProblem || !this.lastWritten) return false;
    const power = this.opts.power;
    if (power) {
      if (power.whenSettled?.()) return false;
      try {
        if (!power.get()) { this.powerProblem = 'the LED ring\'s power line reads back off'; return false; }
      } catch (e) { this.powerProblem = `the LED ring's power line: ${(e as Error).message}`; return false; }
    }
    const want = this.opts.colours.listening;
    for (let i = 0; i < this.opts.count; i += 2) {
      const p = pixelOf(this.lastWritten, i);
      if (!p || p.brightness === 0 || p.rgb.some((v, k) => v !== Math.round(want[k]))) {
        this.frameProblem = `the LED ring's last frame does not show the listening colour on pixel ${i}`;
        return false;
      }
    }
    return true;
  }

  lighting(): Promise<void> | null {
    return this.pattern.privacy ? this.opts.power?.whenSettled?.() ?? null : null;
  }

  snapshot(): Record<string, string> {
    return { ring: `${this.pattern.describe} (${this.opts.count} LEDs, ${this.transport.description})` };
  }

  release(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    try { this.transport.write(apa102Frame(all(this.opts.count, OFF), 0)); } catch { /* going anyway */ }
    this.transport.close();
    this.opts.power?.release();
  }

  private apply(): void {
    let p = this.faulty && this.state === 'idle' ? RING_FAULT : RING_PATTERNS[this.state];
    if (this.ringing) p = withTimer(p);
    if (p !== this.pattern || this.ringing) {
      this.pattern = p;
      this.startedAt = monotonicMs();
    }
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
    this.frameProblem = null; // each new pattern's writes are judged afresh
    this.lastWritten = null;
    this.render();
    if (p.tickMs > 0) {
      this.timer = setInterval(() => this.render(), p.tickMs);
      this.timer.unref();
    }
  }

  private render(): void {
    const frame = apa102Frame(this.pattern.frame(monotonicMs() - this.startedAt, this.opts.count, this.opts.colours), this.brightness5);
    if (this.lastWritten && frame.equals(this.lastWritten)) return;
    try {
      this.transport.write(frame);
      this.lastWritten = frame;
    } catch (e) {
      this.lastWritten = null;
      const msg = `cannot write the LED ring (${this.transport.description}): ${(e as Error).message}`;
      if (msg !== this.frameProblem) this.opts.onError?.(msg);
      this.frameProblem = msg;
    }
  }
}
