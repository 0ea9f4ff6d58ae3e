// STAND-IN (branch aecx) for the echo canceller being built on branch `aec`,
// which replaces this file. It has no engine: open() always throws
// EchoUnavailableError, so the daemon runs half-duplex (audio.echo_cancel:
// auto) or refuses with a clear status (on). Only the interface is real.
import type { Logger } from '../../log.js';

export interface EchoStats { engine: string; delayMs: number | null; erleDb: number | null; converged: boolean; framesProcessed: number; delayJumps: number }

export class EchoUnavailableError extends Error {
  constructor(message: string) { super(message); this.name = 'EchoUnavailableError'; }
}

export class EchoCanceller {
  static open(_opts: { engine?: 'auto' | 'speex' | 'webrtc'; tailMs?: number; log?: Logger } = {}): EchoCanceller {
    throw new EchoUnavailableError('no echo-cancelling engine is built into this version');
  }
  private constructor() { /* never made: see open() */ }
  pushReference(_chunk: { atMs: number; pcm: Buffer }): void { /* no engine */ }
  processMic(frame: Buffer, _atMs: number): Buffer { return frame; }
  readonly stats: EchoStats = { engine: 'none', delayMs: null, erleDb: null, converged: false, framesProcessed: 0, delayJumps: 0 };
  reset(): void { /* no engine */ }
  close(): void { /* no engine */ }
}
