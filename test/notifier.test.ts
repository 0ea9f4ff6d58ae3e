// src/systemd.ts against a real unix datagram socket: a python3 listener
// binds a path (or an abstract name, as systemd may hand out) and reports
// every datagram with the sender's pid from SCM_CREDENTIALS, which is what
// systemd checks for NotifyAccess=main. No fake of the transport.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createNotifier, watchdogIntervalMs } from '../src/systemd.js';
import { NotifyListener as Listener } from './bench/notify-listener.js';

function recordingLog() {
  const warns: string[] = [];
  const debugs: string[] = [];
  const text = (a: object | string, b?: string) => (typeof a === 'string' ? a : `${b ?? ''} ${JSON.stringify(a)}`);
  return { warns, debugs, warn: (a: object | string, b?: string) => { warns.push(text(a, b)); }, debug: (a: object | string, b?: string) => { debugs.push(text(a, b)); } };
}

// The system python starts in tens of ms; a pyenv shim takes seconds.
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';
const ENV_KEYS = ['NOTIFY_SOCKET', 'WATCHDOG_USEC', 'WATCHDOG_PID'] as const;
let saved: Partial<Record<(typeof ENV_KEYS)[number], string>> = {};
let dir: string;
const python = spawnSync(PYTHON, ['-c', 'import socket; socket.SCM_CREDENTIALS'], { encoding: 'utf8' });
const skip = python.status === 0 ? false : `python3 with socket.SCM_CREDENTIALS is needed for the listener (${python.error?.message ?? python.stderr})`;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'ls-notify-'));
  for (const k of ENV_KEYS) saved[k] = process.env[k];
});
after(() => {
  for (const k of ENV_KEYS) { if (saved[k] === undefined) delete process.env[k]; else process.env[k] = saved[k]; }
  rmSync(dir, { recursive: true, force: true });
});

function setEnv(env: Partial<Record<(typeof ENV_KEYS)[number], string>>) {
  for (const k of ENV_KEYS) { if (env[k] === undefined) delete process.env[k]; else process.env[k] = env[k]; }
}

test('without NOTIFY_SOCKET the notifier does nothing and never throws', () => {
  setEnv({ WATCHDOG_USEC: '1000000' });
  const log = recordingLog();
  const n = createNotifier(log);
  n.ready('idle'); n.status('x'); n.reloading(); n.stopping();
  n.startWatchdog(() => { throw new Error('must not be called'); });
  n.close();
  assert.deepEqual(log.warns, []);
});

test('ready, status, reloading and stopping reach a socket path as sd_notify datagrams from this very process', { skip }, async () => {
  const path = join(dir, 'notify.sock');
  const l = await Listener.start(path);
  try {
    setEnv({ NOTIFY_SOCKET: path });
    const log = recordingLog();
    const n = createNotifier(log);
    n.ready('idle: say the wake word\nor press the button');
    n.status('listening');
    const before = process.hrtime.bigint() / 1000n;
    n.reloading();
    const afterUs = process.hrtime.bigint() / 1000n;
    n.ready();
    n.stopping();
    const got = await l.waitCount(5);
    assert.deepEqual(got.map((d) => d.msg.split('\n')[0]), ['READY=1', 'STATUS=listening', 'RELOADING=1', 'READY=1', 'STOPPING=1']);
    // A status is one line: systemd would take a second line as another assignment.
    assert.equal(got[0].msg, 'READY=1\nSTATUS=idle: say the wake word or press the button');
    // MONOTONIC_USEC is CLOCK_MONOTONIC, taken at the time of the call (systemd matches reloads by it).
    const m = /^RELOADING=1\nMONOTONIC_USEC=(\d+)$/.exec(got[2].msg);
    assert.ok(m, got[2].msg);
    const usec = BigInt(m[1]);
    assert.ok(usec >= before && usec <= afterUs, `${usec} within [${before}, ${afterUs}]`);
    // Sent by the main process itself, so the unit can keep NotifyAccess=main.
    for (const d of got) assert.equal(d.pid, process.pid);
    assert.deepEqual(log.warns, []);
    n.close();
    n.ready('after close');
    await sleep(100);
    assert.equal(l.datagrams.length, 5, 'nothing is sent after close()');
  } finally { l.stop(); }
});

test('an abstract NOTIFY_SOCKET (@name) works', { skip }, async () => {
  const name = `@live-speaker-test-${process.pid}-${Date.now()}`;
  const l = await Listener.start(name);
  try {
    setEnv({ NOTIFY_SOCKET: name });
    const log = recordingLog();
    const n = createNotifier(log);
    n.ready('up');
    const [d] = await l.waitCount(1);
    assert.equal(d.msg, 'READY=1\nSTATUS=up');
    assert.equal(d.pid, process.pid);
    assert.deepEqual(log.warns, []);
    n.close();
  } finally { l.stop(); }
});

test('the watchdog pings at half WATCHDOG_USEC only while healthy, and says so once when it stops', { skip }, async () => {
  const path = join(dir, 'wd.sock');
  const l = await Listener.start(path);
  try {
    setEnv({ NOTIFY_SOCKET: path, WATCHDOG_USEC: '200000', WATCHDOG_PID: String(process.pid) });
    const log = recordingLog();
    const n = createNotifier(log);
    let healthy = true;
    n.startWatchdog(() => healthy);
    await sleep(550); // pings at 0, 100, ..., 500 ms
    const pings = l.datagrams.filter((d) => d.msg === 'WATCHDOG=1').length;
    assert.ok(pings >= 4 && pings <= 8, `${pings} pings in 550 ms at a 100 ms period`);
    healthy = false;
    await sleep(120);
    const atStop = l.datagrams.length;
    await sleep(400);
    assert.equal(l.datagrams.length, atStop, 'no ping while unhealthy');
    assert.equal(log.warns.filter((w) => w.includes('not healthy')).length, 1, 'the stall is logged once');
    healthy = true;
    await l.waitCount(atStop + 1, 1000);
    n.close();
    await sleep(150);
    const atClose = l.datagrams.length;
    await sleep(300);
    assert.equal(l.datagrams.length, atClose, 'close() stops the pings');
    for (const d of l.datagrams) assert.equal(d.pid, process.pid);
  } finally { l.stop(); }
});

test('the watchdog stays off when WATCHDOG_PID names another process, or WATCHDOG_USEC is absent', { skip }, async () => {
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '3000000', WATCHDOG_PID: '1' }, 4242), null);
  assert.equal(watchdogIntervalMs({}, 4242), null);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '3000000' }, 4242), 3000);
  assert.equal(watchdogIntervalMs({ WATCHDOG_USEC: '3000000', WATCHDOG_PID: '4242' }, 4242), 3000);
  const path = join(dir, 'wd2.sock');
  const l = await Listener.start(path);
  try {
    setEnv({ NOTIFY_SOCKET: path, WATCHDOG_USEC: '100000', WATCHDOG_PID: '1' });
    const n = createNotifier(recordingLog());
    n.startWatchdog(() => true);
    n.status('probe');
    await l.waitCount(1);
    await sleep(300);
    assert.deepEqual(l.datagrams.map((d) => d.msg), ['STATUS=probe']);
    n.close();
  } finally { l.stop(); }
});

test('a NOTIFY_SOCKET that is not there is reported once, and nothing throws', () => {
  const path = join(dir, 'nobody-here.sock');
  setEnv({ NOTIFY_SOCKET: path });
  const log = recordingLog();
  const n = createNotifier(log);
  n.ready('x'); n.status('y'); n.stopping();
  n.close();
  assert.equal(log.warns.length, 1);
  assert.match(log.warns[0], /cannot be reached/);
  writeFileSync(join(dir, 'plain-file'), '');
  setEnv({ NOTIFY_SOCKET: join(dir, 'plain-file') });
  const log2 = recordingLog();
  createNotifier(log2).ready();
  assert.match(log2.warns[0] ?? '', /not a socket/);
});
