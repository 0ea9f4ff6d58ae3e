// More than one indicator at once (a ring and a GPIO LED): each shows every
// state, and audio may leave only when every one of them says its privacy
// light is lit.
import type { Indicator, State } from '../ports.js';

export interface DeviceIndicator extends Indicator {
  snapshot(): Record<string, string>;
  release(): void;
  timerRinging?(on: boolean): void;
}

export class Indicators implements DeviceIndicator {
  constructor(private readonly parts: DeviceIndicator[]) {}
  show(state: State): void { for (const p of this.parts) p.show(state); }
  fault(on: boolean): void { for (const p of this.parts) p.fault?.(on); }
  /** A timer is ringing (for the timer tool): its pattern over whatever the state shows; privacy lights keep their promise. */
  timerRinging(on: boolean): void { for (const p of this.parts) p.timerRinging?.(on); }
  get micLive(): boolean { return this.parts.every((p) => p.micLive); }
  get ledProblem(): string | null { return this.parts.map((p) => p.ledProblem ?? null).find((x) => x !== null) ?? null; }
  lighting(): Promise<void> | null {
    const waits = this.parts.map((p) => p.lighting?.() ?? null).filter((x): x is Promise<void> => x !== null);
    return waits.length ? Promise.all(waits).then(() => undefined) : null;
  }
  snapshot(): Record<string, string> { return Object.assign({}, ...this.parts.map((p) => p.snapshot())); }
  release(): void { for (const p of this.parts) p.release(); }
}

/**
 * A privacy light that is configured but cannot be driven (an LED ring whose
 * SPI device is missing, spi-device that did not build): it is never lit,
 * so no audio leaves while it stands in for the light, and it says why.
 */
export class MissingLight implements DeviceIndicator {
  constructor(readonly ledProblem: string) {}
  show(): void { /* nothing to show it on */ }
  get micLive(): boolean { return false; }
  snapshot(): Record<string, string> { return { privacyLight: `missing: ${this.ledProblem}` }; }
  release(): void { /* nothing held */ }
}
