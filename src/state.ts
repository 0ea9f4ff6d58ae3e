// What the user set at run time (mute, volume) and expects to find again
// after a restart, a crash or a power cut: one small JSON file in the state directory
// (systemd's StateDirectory=, /var/lib/live-speaker). Written atomically
// (temporary file, fsync, rename, fsync of the directory), so a power cut
// leaves the old or the new file, never half of one.
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Logger } from './log.js';

export interface PersistedState {
  /** The microphone was muted: it stays off until the user unmutes. */
  muted: boolean;
  /** The reply volume set with `ctl volume` (percent); null: audio.volume from the config. */
  volume: number | null;
}

/** The highest volume (percent) audio.volume and `ctl volume` allow. */
export const MAX_VOLUME = 150;

const DEFAULTS: PersistedState = { muted: false, volume: null };

export class StateStore {
  readonly file: string;
  private state: PersistedState;
  private warned = false;

  constructor(dir: string, private readonly log: Logger) {
    this.file = join(dir, 'state.json');
    this.state = this.load();
  }

  get(): Readonly<PersistedState> { return this.state; }

  /** Change and save at once. A save that fails is logged (once), and the daemon goes on with the new value. */
  set(patch: Partial<PersistedState>): void {
    const next = { ...this.state, ...patch };
    if (JSON.stringify(next) === JSON.stringify(this.state)) return;
    this.state = next;
    try {
      writeAtomic(this.file, `${JSON.stringify(next, (_k, v: unknown) => (v === null ? undefined : v), 2)}\n`); // unset (null) settings are left out
    } catch (e) {
      if (!this.warned) this.log.warn({ file: this.file, error: (e as Error).message }, 'cannot save the state: it will not survive a restart');
      this.warned = true;
    }
  }

  private load(): PersistedState {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ file: this.file, error: (e as Error).message }, 'cannot read the saved state; starting from the defaults');
      return { ...DEFAULTS };
    }
    try {
      const raw = JSON.parse(text) as Partial<PersistedState>;
      const volume = typeof raw.volume === 'number' && Number.isInteger(raw.volume) && raw.volume >= 0 && raw.volume <= MAX_VOLUME ? raw.volume : null;
      return { muted: raw.muted === true, volume };
    } catch {
      this.log.warn({ file: this.file }, 'the saved state is not valid JSON; starting from the defaults');
      return { ...DEFAULTS };
    }
  }
}

/** Write `file` so that a crash leaves the old or the new text, never a torn one (temp file, fsync, rename, fsync the directory). */
export function writeAtomic(file: string, text: string): void {
  const dir = join(file, '..');
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.tmp`;
  const fd = openSync(tmp, 'w', 0o640);
  try { writeSync(fd, text); fsyncSync(fd); } finally { closeSync(fd); }
  renameSync(tmp, file);
  const d = openSync(dir, 'r');
  try { fsyncSync(d); } finally { closeSync(d); }
}
