// Issue 25, the control socket's bounds: the built daemon as a process, its
// real unix control socket, clients that misbehave (a flood of requests never
// read, a `ctl watch` that stops reading, a line that never ends, too many
// connections, connections that say nothing). Nothing a client does may make
// the daemon hold unbounded memory, and a press is still served afterwards.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createConnection, type Socket } from 'node:net';
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard } from './bench/soundcard.js';
import { deepMerge, startWithEmulator, waitUntil, type DaemonProcess } from './bench/daemon.js';
import { rssMiB } from './bench/util.js';
import type { EmulatedSession, EmulatorOptions } from '../src/emulator/emulator.js';

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

const setup = (emuOpts: EmulatorOptions = {}, config: Record<string, any> = {}) =>
  startWithEmulator({ mode: 'scripted', ...emuOpts }, deepMerge({ live: { connect_timeout_s: 2 }, conversation: { follow_up_s: 1, error_display_s: 1, no_speech_timeout_s: 8 } }, config), card.env);


/**
 * The daemon's end of every connection on its control socket, counted from the
 * kernel's side (/proc): accepted unix sockets carry the listening path in
 * /proc/net/unix; the ones among the daemon's file descriptors, less the
 * listener, are the connections it still holds.
 */
export function controlSockets(pid: number, path: string): number {
  const mine = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try { const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`)); if (m) mine.add(m[1]); } catch { /* closed meanwhile */ }
  }
  // Num RefCount Protocol Flags Type St Inode Path; the listener has flag __SO_ACCEPTCON (00010000).
  return readFileSync('/proc/net/unix', 'utf8').split('\n').slice(1).map((l) => l.trim().split(/\s+/))
    .filter((f) => f[7] === path && f[3] !== '00010000' && mine.has(f[6])).length;
}

/** A client that connects and reads nothing at all (the kernel's buffers fill, then the daemon's would). */
async function deaf(path: string): Promise<Socket> {
  const s = createConnection(path);
  s.on('error', () => undefined);
  await once(s, 'connect');
  s.pause();
  return s;
}

/** The daemon still serves: `ctl status` answers and a press starts a conversation. */
async function stillServes(daemon: DaemonProcess) {
  const st = await daemon.ctl('status', 3000);
  assert.equal(st.state, 'idle');
  await daemon.pressAndWait('listening', 5000);
  await daemon.pressAndWait('idle', 10_000); // ends it
}

test('a client that floods `status` requests and never reads stalls itself: the daemon grows by under 20 MiB in 3 s and serves others meanwhile', async () => {
  const { daemon, done } = await setup();
  try {
    const pid = (await daemon.ctl('status')).pid as number;
    await sleep(500);
    const base = rssMiB(pid);
    let peak = base;
    const sampler = setInterval(() => { try { peak = Math.max(peak, rssMiB(pid)); } catch { /* exited */ } }, 50);
    // The issue's repro: a client offering `status` lines, 4 a millisecond, and reading nothing. (Small writes:
    // the old daemon closed a client whose unread input passed 4 KiB, so a faster writer was cut off early.)
    const floods = [await deaf(daemon.socket)];
    let closedByDaemon = 0;
    for (const s of floods) s.on('close', () => { closedByDaemon++; });
    const per = 4;
    const chunk = Buffer.from('{"cmd":"status"}\n'.repeat(per));
    let lines = 0;
    const t0 = performance.now();
    const others: number[] = [];
    let lastOther = t0;
    while (performance.now() - t0 < 3000) {
      // Never more than 1 MiB queued in this process per client.
      for (const s of floods) if (!s.destroyed && s.writableLength < (1 << 20)) { s.write(chunk); lines += per; }
      await sleep(1);
      if (performance.now() - lastOther > 500) {
        lastOther = performance.now();
        const a = performance.now();
        await daemon.ctl('status', 2000);
        others.push(Math.round(performance.now() - a));
      }
    }
    clearInterval(sampler);
    peak = Math.max(peak, rssMiB(pid));
    const growth = peak - base;
    const queued = floods.reduce((a, s) => a + s.writableLength, 0);
    console.log(`flood: ${lines} status lines offered in 3 s (${queued} bytes still queued in them${closedByDaemon ? `, ${closedByDaemon} closed by the daemon` : ''}); daemon RSS ${base.toFixed(1)} -> peak ${peak.toFixed(1)} MiB (+${growth.toFixed(1)}); other clients' status answered in ${others.join(', ')} ms`);
    assert.equal(closedByDaemon, 0, 'a flooder, whose lines are all good, is not closed while it sends');
    assert.ok(growth < 20, `daemon RSS grew by ${growth.toFixed(1)} MiB under a 3 s flood (bound 20)`);
    assert.ok(others.length >= 4, 'other clients were answered during the flood');
    // The stalled flooders send nothing the daemon can read: they are closed as idle.
    await waitUntil(() => controlSockets(pid, daemon.socket) === 0, 14_000);
    assert.equal(controlSockets(pid, daemon.socket), 0, 'the stalled flooders were closed (idle 10 s)');
    await daemon.waitLog((l) => /control client closed: idle 10 s, not reading its answers/.test(l.msg), 2000, 'the closing logged');
    for (const s of floods) s.destroy();
    await stillServes(daemon);
  } finally { await done(); }
});

test('a `ctl watch` client that stops reading is destroyed at 256 KiB unread (its socket closed on the daemon side, logged once); the other watcher keeps its events', async () => {
  const { emu, daemon, done } = await setup();
  try {
    const pid = (await daemon.ctl('status')).pid as number;
    const slow = await deaf(daemon.socket);
    slow.write('{"cmd":"watch"}\n');
    // A reading watcher beside it.
    const good = createConnection(daemon.socket);
    let goodBytes = 0;
    let goodCancelled = 0;
    let rest = '';
    good.setEncoding('utf8');
    good.on('data', (d: string) => {
      goodBytes += d.length;
      const lines = (rest + d).split('\n');
      rest = lines.pop()!;
      goodCancelled += lines.filter((l) => l.includes('"type":"tool-cancelled"')).length;
    });
    good.write('{"cmd":"watch"}\n');
    await waitUntil(() => goodBytes > 0, 3000);
    assert.equal((await daemon.ctl('status')).watchers, 2);
    const opened = emu.waitFor('session', (x: EmulatedSession) => !x.closed, 5000);
    await daemon.pressAndWait('listening');
    const [session] = await opened as [EmulatedSession];
    // Each cancellation becomes one `tool-cancelled` event of ~12 KiB to every watcher.
    const ids = Array.from({ length: 200 }, (_, i) => `cancelled-call-${String(i).padStart(4, '0')}-${'c'.repeat(40)}`);
    const dropped = daemon.waitNextLog((l) => /ctl watch client dropped/.test(l.msg), 20_000, 'the slow watcher dropped');
    let sent = 0;
    for (let i = 0; i < 160 && !daemon.logs.some((l) => /ctl watch client dropped/.test(l.msg)) && (await daemon.ctl('status')).watchers === 2; i++) {
      session.cancelToolCalls(ids);
      sent++;
      await sleep(10);
    }
    const line = await dropped.catch(() => null);
    const st = await daemon.ctl('status');
    assert.equal(st.watchers, 1, 'the slow watcher left the hub');
    assert.ok(await waitUntil(() => controlSockets(pid, daemon.socket) === 1, 3000),
      `the daemon holds ${controlSockets(pid, daemon.socket)} control connections; only the reading watcher should be left (a dropped watcher that is only end()ed keeps its socket and its buffer)`);
    assert.ok(line, 'the drop is logged');
    assert.equal(daemon.logs.filter((l) => /ctl watch client dropped/.test(l.msg)).length, 1, 'logged once');
    assert.ok(await waitUntil(() => goodCancelled === sent, 3000), `the reading watcher got every event (${goodCancelled} of ${sent} cancellations, ${goodBytes} bytes)`);
    console.log(`slow watcher: dropped after ${sent} events of ~12 KiB (${JSON.stringify(line && { unreadBytes: line.unreadBytes })}); the reading watcher got ${goodBytes} bytes`);
    await daemon.pressAndWait('idle', 10_000);
    good.destroy(); slow.destroy();
    await stillServes(daemon);
  } finally { await done(); }
});

test('a line that never ends is refused at 4096 characters: an error answer, the connection closed, one log line; an over-long line with its newline too', async () => {
  const { daemon, done } = await setup();
  try {
    const pid = (await daemon.ctl('status')).pid as number;
    for (const tail of ['', '\n']) {
      const s = createConnection(daemon.socket);
      let got = '';
      s.setEncoding('utf8');
      s.on('data', (d: string) => { got += d; });
      s.on('error', () => undefined);
      await once(s, 'connect');
      const closed = new Promise((r) => s.on('close', r));
      // 1 MiB without a newline, in pieces, as a never-ending line would come.
      for (let i = 0; i < 16 && !s.destroyed; i++) { s.write('{"cmd":"status","pad":"' + 'x'.repeat(65536)); await sleep(5); }
      s.write(tail);
      const r = await Promise.race([closed.then(() => 'closed'), sleep(3000).then(() => 'open')]);
      assert.equal(r, 'closed', 'the daemon closed the connection');
      const answer = JSON.parse(got.split('\n')[0]);
      assert.equal(answer.ok, false);
      assert.match(answer.error, /longer than 4096/);
    }
    await waitUntil(() => controlSockets(pid, daemon.socket) === 0, 2000);
    assert.equal(controlSockets(pid, daemon.socket), 0);
    const logged = daemon.logs.filter((l) => /control request refused: line longer than 4096 characters/.test(l.msg));
    assert.equal(logged.length, 2, 'one log line per refused client');
    await stillServes(daemon);
  } finally { await done(); }
});

test('at most 32 control connections: the 33rd is refused with an error answer and a log line; connections that send nothing are closed after 10 s', async () => {
  const { daemon, done } = await setup();
  try {
    const pid = (await daemon.ctl('status')).pid as number;
    const idle: Socket[] = [];
    for (let i = 0; i < 32; i++) { const s = createConnection(daemon.socket); s.on('error', () => undefined); await once(s, 'connect'); idle.push(s); }
    const opened = performance.now();
    await waitUntil(() => controlSockets(pid, daemon.socket) === 32, 2000);
    assert.equal(controlSockets(pid, daemon.socket), 32);
    // One more: `ctl status` gets a clear refusal.
    await assert.rejects(daemon.ctl('status', 3000), /too many control connections \(32 open, the most allowed\)/);
    await daemon.waitLog((l) => /control connection refused: too many connections \(32 open/.test(l.msg), 2000, 'the refusal logged');
    assert.ok(await waitUntil(() => controlSockets(pid, daemon.socket) === 32, 2000), 'the daemon holds no 33rd');
    // Silence is not kept forever: all 32 are closed as idle after 10 s.
    const closed = idle.map((s) => once(s, 'close'));
    await Promise.race([Promise.all(closed), sleep(14_000)]);
    const after = (performance.now() - opened) / 1000;
    assert.equal(controlSockets(pid, daemon.socket), 0, `still open after ${after.toFixed(1)} s`);
    assert.ok(after >= 9.5, `closed after ${after.toFixed(1)} s, not before the 10 s idle timeout`);
    await stillServes(daemon);
  } finally { await done(); }
});
