// Codec mixer settings a HAT needs (the WM8960 resets with its output and
// capture switches off), applied with amixer at start and on reload. A
// setting that fails is logged and the rest still applied: a speaker that
// is too quiet is better than one that does not start.
import { execFile } from 'node:child_process';
import { cardOfDevice } from './hardware.js';
import type { Config } from './config.js';

export interface MixerSetting { control: string; value: string }

/** The card the settings apply to: mixer.card, else the CARD= of the playback device, else of the capture device. */
export function mixerCard(config: Config): string | null {
  return config.mixer.card ?? cardOfDevice(config.audio.playback_device) ?? cardOfDevice(config.audio.capture_device);
}

/** amixer's arguments for each setting, in order ("80% unmute" becomes two value words). */
export function mixerCommands(card: string, settings: MixerSetting[]): string[][] {
  return settings.map((s) => ['-q', '-c', card, 'sset', s.control, ...s.value.split(/\s+/).filter(Boolean)]);
}

export type Runner = (args: string[]) => Promise<{ ok: boolean; error: string }>;

const amixer: Runner = (args) => new Promise((resolve) => {
  execFile('amixer', args, { timeout: 5000, encoding: 'utf8' }, (err, _out, stderr) => {
    const e = err as NodeJS.ErrnoException | null;
    resolve({ ok: !e, error: e ? (e.code === 'ENOENT' ? 'amixer not found (sudo apt install alsa-utils)' : String(stderr).trim().split('\n').pop() || e.message) : '' });
  });
});

/** Apply every setting; returns the failures (each also logged). */
export async function applyMixer(config: Config, log: { info(o: object, m: string): void; warn(o: object, m: string): void }, run: Runner = amixer): Promise<string[]> {
  const settings = config.mixer.settings;
  if (settings.length === 0) return [];
  const card = mixerCard(config);
  if (!card) {
    const why = 'mixer.settings are set but no card is known: set mixer.card or a CARD= audio device';
    log.warn({}, why);
    return [why];
  }
  const failed: string[] = [];
  for (const args of mixerCommands(card, settings)) {
    const r = await run(args);
    if (!r.ok) failed.push(`amixer ${args.slice(1).join(' ')}: ${r.error}`);
  }
  if (failed.length) log.warn({ card, failed }, `mixer: ${failed.length} of ${settings.length} settings failed on card ${card} (the rest were applied)`);
  else log.info({ card, settings: settings.length }, 'mixer settings applied');
  return failed;
}
