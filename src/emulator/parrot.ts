/**
 * Parrot mode (the default; the daemon's keyless mode and `live-speaker
 * emulator`): each utterance the turn detection (turns.ts) cuts is said back,
 * resampled 16 -> 24 kHz, unless options.reply scripts another reply. An
 * utterance that is a tool tone (tools.ts) first calls its function and says
 * the utterance back once the answer came. Scripted mode never gets here:
 * tests send replies themselves (session.sendAudio).
 */
import { resample } from '../audio/pcm.js';
import type { ResolvedOptions } from './options.js';
import { INPUT_RATE, OUTPUT_RATE } from './protocol.js';
import type { Session, Utterance } from './session.js';
import { toolToneOf } from './tools.js';

export function parrot(s: Session, u: Utterance, opts: ResolvedOptions): void {
  const echo = (): Buffer | null => (opts.reply ? opts.reply(u, s) : resample(u.pcm, INPUT_RATE, OUTPUT_RATE));
  const tone = opts.toolTones.length ? toolToneOf(u.pcm, opts.toolTones, s.declaredTools) : undefined;
  if (tone) {
    const [id] = s.toolCall([tone.call]);
    const reply = echo();
    void s.toolResponse(id, 30_000).then(() => { if (reply) void s.sendAudio(reply); }, () => undefined);
    return;
  }
  const reply = echo();
  if (reply) void s.sendAudio(reply);
}
