// A recorder for node-record-lpcm16 (loaded by absolute path through its
// `recorder` option): its built-in arecord recorder cannot set the period
// and buffer time, and arecord's default 125 ms periods would add that much
// latency to every frame. Small periods keep press-to-stream short.
interface Opts { sampleRate: number; channels: number; audioType: string; device?: string | null; periodMs?: number }

export = function arecordRecorder(options: Opts): { cmd: string; args: string[] } {
  const periodUs = Math.round((options.periodMs ?? 20) * 1000); // the daemon always passes audio.capture_period_ms (default 20)
  const args = [
    '-q', '-r', String(options.sampleRate), '-c', String(options.channels),
    '-t', options.audioType, '-f', 'S16_LE',
    // Latency comes from the period; the buffer only decides how long arecord
    // may be starved of CPU before it overruns and drops audio: keep it generous.
    `--period-time=${periodUs}`, `--buffer-time=${Math.max(periodUs * 8, 500_000)}`,
    '-',
  ];
  if (options.device) args.unshift('-D', options.device);
  return { cmd: 'arecord', args };
};
