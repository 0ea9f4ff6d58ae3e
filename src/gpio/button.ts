// A push button: a short press and a long press (held past longPressMs,
// reported while still held so the user sees the mute LED change at once).
import { EventEmitter } from 'node:events';
import type { InputLine } from './gpio.js';
import { monotonicMs } from '../clock.js';

/** Events: 'press', 'long-press'. */
export class Button extends EventEmitter {
  private downAt: number | null = null;
  private longTimer: NodeJS.Timeout | null = null;
  private longFired = false;

  constructor(private readonly line: InputLine, private readonly longPressMs: number) {
    super();
    line.onChange((active) => (active ? this.down() : this.up()));
  }

  private down(): void {
    if (this.downAt !== null) return; // bounce the debouncer let through
    this.downAt = monotonicMs();
    this.longFired = false;
    this.longTimer = setTimeout(() => { this.longFired = true; this.emit('long-press'); }, this.longPressMs);
  }

  private up(): void {
    if (this.downAt === null) return;
    this.downAt = null;
    if (this.longTimer) { clearTimeout(this.longTimer); this.longTimer = null; }
    if (!this.longFired) this.emit('press');
  }

  release(): void {
    if (this.longTimer) clearTimeout(this.longTimer);
    this.line.release();
  }
}
