// Floors for the bench, measured with the bare `speaker` addon (run as a
// child with the sound card's env; prints one JSON line per mark):
//   onset  a fresh Speaker (as the daemon opens one per reply); `at` = the
//          moment a 300 ms 1 kHz tone is written. First tone sample in the
//          sink minus `at` = ALSA (pulse plugin) + PulseAudio latency.
//   stop   a Speaker kept full the naive way (writes as fast as accepted: the
//          addon's 0.5 s ALSA buffer fills); `at` = close(true) (snd_pcm_drop).
//          Last tone sample minus `at` = what a drop still lets out.
// usage: node probe.js onset|stop N
import { createRequire } from 'node:module';
import { setTimeout as sleep } from 'node:timers/promises';
import type SpeakerType from 'speaker';
import { tone } from '../src/audio/pcm.js';

const require = createRequire(import.meta.url);
const Speaker = require('speaker') as typeof SpeakerType;
const RATE = 24000;
const open = () => new Speaker({ channels: 1, bitDepth: 16, sampleRate: RATE, signed: true, device: 'default' });
const mark = (kind: string, at: number) => process.stdout.write(JSON.stringify({ kind, at }) + '\n');
const write = (s: SpeakerType, b: Buffer) => new Promise<void>((r) => s.write(b, () => r()));

const [mode, nArg] = process.argv.slice(2);
const n = Number(nArg ?? 5);
for (let i = 0; i < n; i++) {
  const spk = open();
  spk.on('error', (e: Error) => { process.stderr.write(`speaker: ${e.message}\n`); process.exit(1); });
  if (mode === 'onset') {
    const at = Date.now();
    await write(spk, tone(1000, 300, RATE));
    mark('onset', at);
    await sleep(700);
    spk.close(true);
  } else {
    const t0 = Date.now();
    const chunk = tone(1000, 40, RATE); // whole cycles: 40 periods per chunk
    while (Date.now() - t0 < 1200) await write(spk, chunk);
    const at = Date.now();
    spk.close(true);
    mark('stop', at);
  }
  await sleep(600);
}
process.exit(0);
