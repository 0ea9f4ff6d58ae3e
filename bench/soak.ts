// Soak test (opt-in: `npm run soak`): hundreds of conversations against the
// emulator on the simulated sound card, with faults mixed in, and the
// daemon's RSS and open file descriptors at the start and the end.
// Usage: npm run soak -- [--conversations N]
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard } from '../test/bench/soundcard.js';
import { DaemonProcess } from '../test/bench/daemon.js';
import { LiveEmulator, type EmulatedSession } from '../src/emulator/emulator.js';
import { tone } from '../src/audio/pcm.js';

const arg = (name: string, dflt: number) => { const i = process.argv.indexOf(name); return i > 0 ? Number(process.argv[i + 1]) : dflt; };
const N = arg('--conversations', 300);

function usage(pid: number) {
  const rss = Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
  const fds = readdirSync(`/proc/${pid}/fd`).length;
  return { rssMiB: Math.round(rss * 10) / 10, fds };
}

type Fault = 'none' | 'drop' | 'goAway' | 'close1011' | 'garbage' | 'badKey' | 'micKill' | 'bargeIn';
const FAULTS: Fault[] = ['none', 'none', 'drop', 'none', 'goAway', 'none', 'close1011', 'garbage', 'none', 'badKey', 'bargeIn', 'none', 'micKill'];

/** Every step is bounded: a soak that hangs proves nothing. */
function within<T>(p: Promise<T>, what: string, ms = 15000): Promise<T> {
  return Promise.race([p, new Promise<T>((_, rej) => setTimeout(() => rej(new Error(`soak: ${what} took over ${ms} ms`)), ms).unref())]);
}

async function main() {
  const card = await SoundCard.start();
  let rejectKeys = false;
  const emu = await LiveEmulator.start({ mode: 'scripted', acceptKey: () => !rejectKeys, keepClosedSessions: 2, recordAudio: false });
  const d = await DaemonProcess.start({
    env: card.env,
    config: { live: { base_url: emu.url, connect_timeout_s: 3 }, conversation: { follow_up_s: 0, error_display_s: 0.2, no_speech_timeout_s: 3 }, log: { level: 'info' } },
  });
  const pid = (await d.ctl('status')).pid as number;
  const idle = async () => {
    for (let i = 0; i < 100; i++) { const st = await d.ctl('status'); if (st.state === 'idle' && st.microphone === 'running') return; await sleep(100); }
    throw new Error(`not back to idle: ${JSON.stringify(await d.ctl('status'))}`);
  };
  const reply = (s: EmulatedSession, ms = 300) => within(s.sendAudio(tone(440, ms, 24000), { speed: 4 }), 'reply sent');
  const counts: Record<string, number> = {};
  const trajectory: object[] = [];
  let start: ReturnType<typeof usage> | null = null;
  const t0 = Date.now();
  try {
  for (let i = 0; i < N; i++) {
    if (i === 10) start = usage(pid); // after warm-up
    if (i % 100 === 0) { const m = (await d.ctl('status')).memoryMiB; trajectory.push({ at: i, ...usage(pid), heapUsedMiB: m.heapUsed, externalMiB: m.external }); }
    const fault = FAULTS[i % FAULTS.length];
    counts[fault] = (counts[fault] ?? 0) + 1;
    if (fault === 'badKey') rejectKeys = true;
    const before = emu.connections;
    await d.ctl('press');
    if (fault === 'badKey') { await idle(); rejectKeys = false; continue; }
    const [s] = await emu.waitFor('session', (x: EmulatedSession) => emu.connections > before && !x.closed, 5000);
    await d.waitNextLog((l) => l.msg === 'state' && l.to === 'listening', 5000).catch(() => undefined);
    switch (fault) {
      case 'drop': s.terminate(); await emu.waitFor('session', undefined, 5000); break;
      case 'goAway': s.goAway(10); await emu.waitFor('session', undefined, 5000); break;
      case 'close1011': s.close(1011, 'Internal error'); await emu.waitFor('session', undefined, 5000); break;
      case 'garbage': s.sendRaw('{not json'); break;
      case 'micKill': process.kill((await d.ctl('status')).capturePid, 'SIGKILL'); await d.waitNextLog((l) => l.msg === 'microphone is back', 10000); await idle(); continue;
      case 'bargeIn': { void reply(s, 2000); await d.waitNextLog((l) => l.to === 'speaking', 5000); await d.ctl('press'); await d.ctl('press'); await idle(); continue; }
      default: break;
    }
    const live = emu.sessions.filter((x) => !x.closed).pop()!;
    await reply(live);
    await idle();
  }
  } catch (e) {
    const file = `/tmp/live-speaker-soak-failure-${process.pid}.log`;
    writeFileSync(file, d.logs.slice(-300).map((l) => JSON.stringify(l)).join('\n') + '\n');
    console.error(`soak failed: ${(e as Error).message}; the daemon's last 300 log lines: ${file}`);
    await d.stop(); await emu.close(); await card.stop();
    process.exit(1);
  }
  const end = usage(pid);
  const st = await d.ctl('status');
  const secs = (Date.now() - t0) / 1000;
  await d.stop();
  await emu.close();
  await card.stop();
  const out = {
    conversations: N, seconds: Math.round(secs), faults: counts,
    daemonCounters: st.counters,
    start, end, trajectory,
    growth: start ? { rssMiB: Math.round((end.rssMiB - start.rssMiB) * 10) / 10, fds: end.fds - start.fds } : null,
  };
  console.log(JSON.stringify(out, null, 2));
  console.log(`soak: ${N} conversations in ${out.seconds} s; RSS ${start?.rssMiB} -> ${end.rssMiB} MiB, fds ${start?.fds} -> ${end.fds}`);
}

main().catch((e) => { console.error(e); process.exit(1); });
