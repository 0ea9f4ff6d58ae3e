// Who holds a sound device. A hw:/plughw: device is exclusive: while another
// program (PipeWire or PulseAudio in a desktop session, another player) has
// it open, opening it fails, and the `speaker` addon only says "Failed to
// open output device". The kernel says who has it: /proc/asound/cardN/
// pcmDp/subS/status names the owner_pid of each open substream (readable by
// everyone, also under the service's ProtectProc=invisible, which hides the
// process's name but not the pid).
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface Holder { pid: number; name: string | null }

/** Card index and device of an ALSA device name that maps to one card (hw, plughw, sysdefault, front, ...); null for `default` and other virtual ones. */
export function alsaCard(device: string, proc = '/proc'): { card: number; dev: number } | null {
  const m = /^(?:plughw|hw|sysdefault|front|iec958|dmix|default):(?:CARD=)?([^,\s]+)(?:,(?:DEV=)?(\d+))?/.exec(device.trim());
  if (!m) return null;
  const dev = m[2] === undefined ? 0 : Number(m[2]);
  if (/^\d+$/.test(m[1])) return { card: Number(m[1]), dev };
  try {
    // /proc/asound/<id> is a symlink to cardN.
    const target = readlinkSync(join(proc, 'asound', m[1]));
    const n = /card(\d+)$/.exec(target);
    return n ? { card: Number(n[1]), dev } : null;
  } catch {
    return null;
  }
}

/** The processes that have `device` open for playback (or capture), as far as /proc tells (empty when free or unknown). */
export function deviceHolders(device: string, proc = '/proc', side: 'playback' | 'capture' = 'playback'): Holder[] {
  const c = alsaCard(device, proc);
  if (!c) return [];
  const dir = join(proc, 'asound', `card${c.card}`, `pcm${c.dev}${side === 'playback' ? 'p' : 'c'}`);
  let subs: string[];
  try { subs = readdirSync(dir).filter((s) => /^sub\d+$/.test(s)); } catch { return []; }
  const pids = new Set<number>();
  for (const s of subs) {
    try {
      const m = /owner_pid\s*:\s*(\d+)/.exec(readFileSync(join(dir, s, 'status'), 'utf8'));
      if (m) pids.add(Number(m[1]));
    } catch { /* gone meanwhile */ }
  }
  return [...pids].map((pid) => {
    let name: string | null = null;
    try { name = readFileSync(join(proc, String(pid), 'comm'), 'utf8').trim() || null; } catch { /* hidden or gone */ }
    return { pid, name };
  });
}

/** Whether `device` names a card that does not exist (so that is why it could not be opened). */
export function cardMissing(device: string, proc = '/proc'): boolean {
  if (!/^(?:plughw|hw|sysdefault|front):/.test(device.trim())) return false;
  const c = alsaCard(device, proc);
  if (!c) return true; // a card id with no /proc/asound/<id>, or no sound cards at all
  try { readdirSync(join(proc, 'asound', `card${c.card}`)); return false; } catch { return true; }
}

const SERVERS = /^(pipewire|wireplumber|pulseaudio|jackd|jackdbus)/;

/**
 * Why `device` could not be opened, for a log line and the status: who
 * holds it (and what to do about it), or that the card does not exist.
 * null when /proc tells nothing (a virtual device, or no kernel sound).
 */
export function explainOpenFailure(device: string, proc = '/proc', self = process.pid): string | null {
  const all = deviceHolders(device, proc);
  const holders = all.filter((h) => h.pid !== self);
  // Only this daemon: its own abandoned stream (a stalled write) still holds an exclusive device until that write returns.
  if (all.length > 0 && holders.length === 0) return 'the device is busy: still held by this daemon\'s previous stream, which stalled; it is released when its last write returns';
  if (holders.length > 0) {
    const who = holders.map((h) => (h.name ? `${h.name} (pid ${h.pid})` : `pid ${h.pid} (name hidden from this user: \`ps -p ${h.pid}\`)`)).join(', ');
    const server = holders.some((h) => h.name && SERVERS.test(h.name));
    return `the device is busy: held by ${who}` + (server
      ? '; a sound server owns the card: play through it (audio.playback_device: default) or stop it for this user'
      : '; stop that program, or use a shared device (dmix, or the pulse/pipewire one) in audio.playback_device');
  }
  if (cardMissing(device, proc)) return 'no such card (`aplay -l` lists the cards; `aplay -L` the device names)';
  return null;
}
