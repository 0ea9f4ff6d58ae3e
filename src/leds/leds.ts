// The LEDs: one pattern per state, played by software timing on plain on/off
// lines. The "listening" LED is the privacy light: it is on in every state
// in which microphone audio may leave the device, and `micLive` reads its
// line back from the hardware, so the conversation refuses to send audio
// while the light is not really lit (a failed write, a line that did not
// take the level). Where no listening LED is fitted, `micLive` is the
// software state, and the start-up log and `doctor` say the light is missing.
import type { Indicator, State } from '../ports.js';
import type { OutputLine } from '../gpio/gpio.js';

export type LedRole = 'listening' | 'activity' | 'muted' | 'error';
/** on/off durations in ms, repeated; [1] = solid on, [] = off. */
export type Pattern = number[];

const OFF: Pattern = [];
const SOLID: Pattern = [1];
/** The documented table (docs/hardware.md, "LEDs"): state -> pattern per LED. Unlisted LEDs are off. */
export const PATTERNS: Record<State, Partial<Record<LedRole, Pattern>>> = {
  idle: {},
  connecting: { listening: SOLID, activity: [100, 100] }, // fast blink
  listening: { listening: SOLID },
  thinking: { listening: SOLID, activity: [250, 250] }, // blink
  speaking: { listening: SOLID, activity: [700, 150] }, // slow pulse
  'follow-up': { listening: SOLID, activity: [80, 920] }, // short flash each second
  muted: { muted: SOLID },
  error: { error: [200, 200] }, // blink until back to idle
};

/** While idle with a problem only the user can fix (bad key, unknown model): a short error flash every 3 s. */
export const FAULT_PATTERN: Pattern = [100, 2900];
/** A timer is ringing (tools: timers): a double flash on the activity LED, over whatever the state shows. */
export const TIMER_PATTERN: Pattern = [150, 150, 150, 550];

export function patternName(p: Pattern): string {
  if (p.length === 0) return 'off';
  if (p.length === 1) return 'on';
  return `blink ${p.join('/')} ms`;
}

export class Leds implements Indicator {
  private current: Record<LedRole, Pattern> = { listening: OFF, activity: OFF, muted: OFF, error: OFF };
  private timers = new Map<LedRole, NodeJS.Timeout>();
  private lit: Record<LedRole, boolean> = { listening: false, activity: false, muted: false, error: false };
  private blinking = new Set<LedRole>();

  constructor(private readonly lines: Partial<Record<LedRole, OutputLine>>, private readonly onChange?: (role: LedRole, on: boolean) => void) {}

  private faulty = false;
  private ringing = false;
  private state: State = 'idle';

  /** A lasting fault: shown on the error LED whenever the speaker is idle. */
  fault(on: boolean): void {
    if (on === this.faulty) return;
    this.faulty = on;
    this.show(this.state);
  }

  /** A timer rings: its pattern on the activity LED until it is stopped; the listening LED keeps its promise. */
  timerRinging(on: boolean): void {
    if (on === this.ringing) return;
    this.ringing = on;
    this.show(this.state);
  }

  show(state: State): void {
    this.state = state;
    let want = this.faulty && state === 'idle' ? { ...PATTERNS.idle, error: FAULT_PATTERN } : PATTERNS[state];
    if (this.ringing) want = { ...want, activity: TIMER_PATTERN };
    for (const role of Object.keys(this.current) as LedRole[]) {
      const p = want[role] ?? OFF;
      if (patternName(p) === patternName(this.current[role])) continue;
      this.current[role] = p;
      this.play(role, p);
    }
  }

  /** Why the privacy light is not lit when it should be (a failed write or read-back), or null. */
  ledProblem: string | null = null;

  /** True when the privacy LED is on: only then may audio be sent. Read back from the line where one is fitted. */
  get micLive(): boolean {
    if (!this.lit.listening) return false;
    const line = this.lines.listening;
    if (!line) return true; // none fitted: said at start-up and by doctor
    if (this.ledProblem) return false;
    if (line.whenSettled?.()) return false; // set, not yet confirmed: `lighting` says when
    try {
      if (line.get()) return true;
      this.ledProblem = 'the listening LED line reads back off after it was set on';
    } catch (e) {
      this.ledProblem = `cannot read the listening LED line back: ${(e as Error).message}`;
    }
    return false;
  }

  /** While the listening LED's last level is not yet confirmed (an asynchronous backend), a promise; else null. */
  lighting(): Promise<void> | null {
    if (!this.lit.listening) return null;
    return this.lines.listening?.whenSettled?.() ?? null;
  }

  snapshot(): Record<LedRole, string> {
    const out = {} as Record<LedRole, string>;
    for (const role of Object.keys(this.current) as LedRole[]) out[role] = patternName(this.current[role]);
    return out;
  }

  private play(role: LedRole, p: Pattern): void {
    const t = this.timers.get(role);
    if (t) { clearTimeout(t); this.timers.delete(role); }
    const wasBlinking = this.blinking.delete(role); // the line runs a pattern of its own: the next level must be written
    if (p.length <= 1) { this.set(role, p.length === 1, wasBlinking); return; }
    const line = this.lines[role];
    if (line?.blink && role !== 'listening' && p.length % 2 === 0) {
      // The backend times the pattern itself (gpioset -t): no process per blink.
      try { line.blink(p); this.blinking.add(role); this.lit[role] = true; this.onChange?.(role, true); return; } catch { /* step it here */ }
    }
    const step = (i: number) => {
      this.set(role, i % 2 === 0, i === 0 && wasBlinking);
      const timer = setTimeout(() => step(i + 1), p[i % p.length]);
      timer.unref();
      this.timers.set(role, timer);
    };
    step(0);
  }

  private set(role: LedRole, on: boolean, force = false): void {
    if (this.lit[role] === on && !force) return;
    this.lit[role] = on;
    if (role === 'listening') this.ledProblem = null; // each write is judged afresh
    try {
      this.lines[role]?.set(on);
    } catch (e) {
      // A dead LED must not stop the speaker, except the privacy light: then nothing is streamed.
      if (role === 'listening') this.ledProblem = `cannot set the listening LED: ${(e as Error).message}`;
    }
    this.onChange?.(role, on);
  }

  release(): void {
    for (const t of this.timers.values()) clearTimeout(t);
    this.timers.clear();
    for (const line of Object.values(this.lines)) line?.release();
  }
}
