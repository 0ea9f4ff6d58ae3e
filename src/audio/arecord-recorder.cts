// A recorder for node-record-lpcm16 (loaded by absolute path through its
// `recorder` option): its built-in arecord recorder cannot set the period
// and buffer time, and arecord's default 125 ms periods would add that much
// latency to every frame. Small periods keep press-to-stream short.
interface Opts { sampleRate: number; channels: number; audioType: string; device?: string | null; periodMs?: number }

export = function arecordRecorder(options: Opts): { cmd: string; args: string[] } {
  const periodUs = Math.round((options.periodMs ?? 20) * 1000);
  const args = [
    '-q', '-r', String(options.sampleRate), '-c', String(options.channels),
    '-t', options.audioType, '-f', 'S16_LE',
    `--period-time=${periodUs}`, `--buffer-time=${periodUs * 8}`,
    '-',
  ];
  if (options.device) args.unshift('-D', options.device);
  return { cmd: 'arecord', args };
};
