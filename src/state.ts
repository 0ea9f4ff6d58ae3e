// What the user set at run time (mute, volume) and expects to find again
// after a restart, a crash or a power cut: one small JSON file in the state directory
// (systemd's StateDirectory=, /var/lib/live-speaker). Written atomically
// (temporary file, fsync, rename, fsync of the directory), so a power cut
// leaves the old or the new file, never half of one.
import { closeSync, constants, copyFileSync, fstatSync, fsyncSync, mkdirSync, openSync, readSync, renameSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { z } from 'zod';
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
/** A state.json larger than this is not one the daemon wrote (it writes some 40 bytes). */
const MAX_STATE_FILE = 4096;

/** state.json as the daemon writes it (an unset volume is left out); unknown fields are ignored. */
const Saved = z.object({
  muted: z.boolean().default(false),
  volume: z.number().int().min(0).max(MAX_VOLUME).nullable().default(null),
});

export class StateStore {
  readonly file: string;
  private state: PersistedState;
  private warned = false;
  /**
   * Why the saved state could not be used (a state.json that exists but
   * cannot be read, is not JSON, or is not what the daemon writes), else
   * null. The speaker then starts muted: the file may have said muted, and a
   * muted speaker never opens the microphone. The bad file stays where it is
   * (a restart starts muted again) until the first change is saved; then it
   * is copied to state.json.bad first.
   */
  readonly problem: string | null;

  constructor(dir: string, private readonly log: Logger) {
    this.file = join(dir, 'state.json');
    const { state, problem } = this.load();
    this.state = state;
    this.problem = problem;
    if (problem) log.warn({ file: this.file, error: problem }, 'the saved state cannot be used; starting MUTED (it may have said muted): unmute with a long press or `live-speaker ctl unmute`');
  }

  get(): Readonly<PersistedState> { return this.state; }

  /** Change and save at once. A save that fails is logged (once), and the daemon goes on with the new value. */
  set(patch: Partial<PersistedState>): void {
    const next = { ...this.state, ...patch };
    if (JSON.stringify(next) === JSON.stringify(this.state)) return;
    this.state = next;
    if (this.problem && !this.keptBad) {
      this.keptBad = true;
      try { copyFileSync(this.file, `${this.file}.bad`); this.log.info({ file: this.file, keptAs: `${this.file}.bad` }, 'the unusable state file is kept for a person to look at'); } catch (e) {
        this.log.warn({ file: this.file, error: (e as Error).message }, 'cannot keep a copy of the unusable state file; replacing it');
      }
    }
    try {
      writeAtomic(this.file, `${JSON.stringify(next, (_k, v: unknown) => (v === null ? undefined : v), 2)}\n`); // unset (null) settings are left out
    } catch (e) {
      if (!this.warned) this.log.warn({ file: this.file, error: (e as Error).message }, 'cannot save the state: it will not survive a restart');
      this.warned = true;
    }
  }

  private keptBad = false;

  /** Missing: the defaults (unmuted). Present but unusable: muted, and why. */
  private load(): { state: PersistedState; problem: string | null } {
    const muted = (problem: string) => ({ state: { muted: true, volume: null }, problem });
    let fd: number;
    try { fd = openSync(this.file, constants.O_RDONLY | constants.O_NONBLOCK); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { state: { ...DEFAULTS }, problem: null };
      return muted(`cannot read it: ${(e as Error).message}`);
    }
    let text: string;
    try {
      if (!fstatSync(fd).isFile()) return muted('not a regular file');
      const buf = Buffer.alloc(MAX_STATE_FILE + 1);
      let n = 0;
      for (let got = 1; got > 0 && n < buf.length; n += got) got = readSync(fd, buf, n, buf.length - n, null);
      if (n > MAX_STATE_FILE) return muted(`larger than the ${MAX_STATE_FILE} bytes a state file can hold`);
      text = buf.toString('utf8', 0, n);
    } catch (e) {
      return muted(`cannot read it: ${(e as Error).message}`);
    } finally { closeSync(fd); }
    let raw: unknown;
    try { raw = JSON.parse(text); } catch (e) { return muted(`not valid JSON (${(e as Error).message.slice(0, 200)})`); }
    const r = Saved.safeParse(raw);
    if (!r.success) return muted(`not a state file: ${r.error.issues.slice(0, 3).map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`).join('; ')}`);
    return { state: r.data, problem: null };
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
