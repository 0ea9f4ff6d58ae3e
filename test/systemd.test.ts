// The service under a real systemd (test-bench.md section 3): a cached
// Debian trixie root (test/bench/trixie-root.sh, derived from the pristine
// minbase root test/bench/trixie-minbase.sh) booted with systemd as PID 1
// in private PID/mount/cgroup namespaces (test/bench/boot-systemd.sh), the
// repo installed inside by scripts/install.sh, then start/status/reload/
// watchdog/stop/config-error checked through systemctl and journalctl.
// The daemon uses the bench's simulated sound card (PulseAudio on the host,
// its directory bind-mounted in, given to the unit by a drop-in) and its
// built-in emulator (no API key). Skipped, with the reason, without root or
// a program it calls (test/bench/needs.ts's NEEDS.systemd, which
// test/fresh-debian.test.ts checks in a fresh root);
// LIVE_SPEAKER_SKIP_SYSTEMD_TEST=1 skips it too.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard } from './bench/soundcard.js';
import { LiveEmulator, type EmulatedSession } from '../src/emulator/emulator.js';
import { NEEDS, rootTestSkip } from './bench/needs.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BENCH = join(REPO, 'test', 'bench');
const CACHE = process.env.LIVE_SPEAKER_TEST_CACHE ?? '/var/cache/live-speaker-test';

function skipReason(): string | false {
  return rootTestSkip(NEEDS.systemd, { skipWhy: 'e.g. inside test/fresh-debian.test.ts\'s root, where booting another root cannot nest', rootFor: 'namespaces, mounts, chroot',
    cachedStamp: join(CACHE, 'trixie-minbase', '.stamp'), unshare: ['--pid', '--fork', '--mount', '--cgroup'], cgroup2: true });
}
const skip = skipReason();

const GUEST_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LANG: 'C.UTF-8', HOME: '/root', TERM: 'dumb', SYSTEMD_PAGER: '', SYSTEMD_COLORS: '0',
  // npm in the guest trusts the bundle boot-systemd.sh copied from this machine.
  NPM_CONFIG_CAFILE: '/etc/ssl/certs/ca-certificates.crt' };

let run: string; // host dir holding the overlay, the card, the repo copy
let card: SoundCard | undefined;
let boot: ChildProcess | undefined;
let bootLog = '';
let initPid = 0; // the guest's systemd, as the host sees it
const timings: Record<string, number> = {};

/** Run a shell command inside the booted guest. */
function guest(cmd: string, timeoutMs = 30000): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile('nsenter', ['-t', String(initPid), '-m', '-p', '-C', '-r', '-w', '/bin/bash', '-c', cmd],
      { env: GUEST_ENV, timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 32 << 20 }, (err, stdout, stderr) => {
        const code = err ? (typeof (err as any).code === 'number' ? (err as any).code : (err as any).killed ? 124 : -1) : 0;
        resolve({ code, out: String(stdout), err: String(stderr) });
      });
  });
}
async function must(cmd: string, timeoutMs = 30000): Promise<string> {
  const r = await guest(cmd, timeoutMs);
  assert.equal(r.code, 0, `guest: ${cmd}\nexit ${r.code}\n${r.out}\n${r.err}`);
  return r.out;
}
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | null | undefined | false>): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try { const v = await probe(); if (v) return v; } catch (e) { last = e; }
    if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await sleep(250);
  }
}
async function show(props: string[]): Promise<Record<string, string>> {
  const out = await must(`systemctl show live-speaker.service -p ${props.join(',')}`);
  return Object.fromEntries(out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
}
/** The daemon's JSON log lines from the journal, oldest first. */
async function journal(): Promise<{ level?: string; msg?: string; [k: string]: unknown }[]> {
  const out = await must('journalctl -u live-speaker.service -o cat --no-pager');
  return out.split('\n').filter((l) => l.startsWith('{')).map((l) => { try { return JSON.parse(l); } catch { return {}; } });
}
async function waitLog(pred: (l: { msg?: string; [k: string]: unknown }) => boolean, after: number, what: string, timeoutMs = 20000) {
  return waitFor(what, timeoutMs, async () => (await journal()).slice(after).find(pred));
}
const CONFIG = '/etc/live-speaker/config.yaml';
/** conversation.follow_up_s as ctl status reports the running config. */
const followUp = (s: any): unknown => s.config?.conversation?.follow_up_s ?? s.config?.follow_up_s;
const setFollowUp = (v: number | string) => must(`sed -i -E 's/^(  follow_up_s:).*/\\1 ${v}/' ${CONFIG} && grep -q '^  follow_up_s: ${v}$' ${CONFIG}`);

before(async () => {
  if (skip) return;
  const t0 = Date.now();
  const root = spawnSync('bash', [join(BENCH, 'trixie-root.sh'), CACHE], { encoding: 'utf8', timeout: 20 * 60 * 1000 });
  assert.equal(root.status, 0, `trixie-root.sh failed: ${root.stderr}`);
  const rootDir = root.stdout.trim().split('\n').pop()!;
  timings.rootS = (Date.now() - t0) / 1000;

  mkdirSync(CACHE, { recursive: true });
  run = mkdtempSync(join(CACHE, 'run-'));
  chmodSync(run, 0o755);
  // The sound card lives outside /tmp: the unit has PrivateTmp=yes.
  const cardDir = join(run, 'card');
  mkdirSync(cardDir, { mode: 0o755 });
  card = await SoundCard.start(cardDir);
  chmodSync(cardDir, 0o755); // pulseaudio made its runtime dir 0700; the service user reads alsa.conf here
  chmodSync(join(cardDir, 'native'), 0o777);
  // The repo, without what the install builds.
  mkdirSync(join(run, 'src'));
  const tar = spawnSync('bash', ['-c', `tar -C "${REPO}" -cf - --exclude=./node_modules --exclude=./dist --exclude=./.git --exclude=./.bench . | tar -C "${join(run, 'src')}" -xf -`]);
  assert.equal(tar.status, 0, String(tar.stderr));

  boot = spawn('bash', [join(BENCH, 'boot-systemd.sh'), rootDir, run, cardDir], {
    env: { PATH: process.env.PATH, NPM_CACHE_DIR: join(CACHE, 'npm-cache') }, stdio: ['ignore', 'pipe', 'pipe'], detached: true,
  });
  boot.stdout!.on('data', (d) => { bootLog += d; });
  boot.stderr!.on('data', (d) => { bootLog += d; });
  // The host pid of the guest's PID 1: the child of unshare (which boot-systemd.sh became).
  initPid = await waitFor('systemd to be PID 1 of the namespace', 20000, async () => {
    const kids = readFileSync(`/proc/${boot!.pid}/task/${boot!.pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    for (const k of kids) if (readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'systemd') return Number(k);
    return null;
  }).catch((e) => { throw new Error(`${e.message}\n${bootLog}`); });
  const state = await waitFor('the guest system to finish booting', 90000, async () => {
    const r = await guest('systemctl is-system-running', 10000);
    const s = r.out.trim();
    return s === 'running' || s === 'degraded' ? s : null;
  }).catch(async (e) => { throw new Error(`${e.message}\n${bootLog.slice(-3000)}\n${(await guest('systemctl --failed --no-pager')).out}`); });
  timings.bootS = (Date.now() - t0) / 1000 - timings.rootS;

  // The test's drop-in: the simulated sound card, and a short watchdog so the hang test is quick.
  await must(`mkdir -p /etc/systemd/system/live-speaker.service.d && cat >/etc/systemd/system/live-speaker.service.d/test-bench.conf <<'EOF'
[Service]
Environment=PULSE_SERVER=${card.cardEnv.PULSE_SERVER} ALSA_CONFIG_PATH=${card.cardEnv.ALSA_CONFIG_PATH}
WatchdogSec=6s
EOF`);
  const t1 = Date.now();
  const inst = await guest('/srv/live-speaker-src/scripts/install.sh --source /srv/live-speaker-src 2>&1', 15 * 60 * 1000);
  timings.installS = (Date.now() - t1) / 1000;
  assert.equal(inst.code, 0, `install.sh failed (guest: ${state}):\n${inst.out.slice(-6000)}\n${(await guest('journalctl -u live-speaker -n 50 --no-pager -o cat')).out}`);
}, { timeout: 30 * 60 * 1000 });

after(async () => {
  if (skip) return;
  if (initPid) { try { process.kill(initPid, 'SIGKILL'); } catch { /* gone */ } }
  if (boot && boot.exitCode === null) {
    await Promise.race([new Promise((r) => boot!.once('exit', r)), sleep(10000)]);
    try { process.kill(-boot.pid!, 'SIGKILL'); } catch { /* gone */ }
  }
  // The namespace's cgroup: kill anything left, then remove it bottom-up.
  const cgFile = run ? join(run, 'cgroup') : '';
  if (cgFile && existsSync(cgFile)) {
    const cg = readFileSync(cgFile, 'utf8').trim();
    if (cg.includes('/live-speaker-test-')) {
      try { spawnSync('sh', ['-c', `echo 1 > "${cg}/cgroup.kill"`]); } catch { /* old kernel */ }
      await sleep(300);
      spawnSync('sh', ['-c', `find "${cg}" -depth -type d -exec rmdir {} \\; 2>/dev/null`]);
    }
  }
  await card?.stop();
  if (run) spawnSync('rm', ['-rf', '--one-file-system', run]);
  process.stderr.write(`systemd test timings (s): ${JSON.stringify(timings)}\n`);
});

test('install.sh starts the service and it becomes active through READY=1, with a STATUS= line', { skip }, async () => {
  const p = await show(['Type', 'NotifyAccess', 'ActiveState', 'SubState', 'StatusText', 'MainPID', 'NRestarts', 'User']);
  assert.equal(p.Type, 'notify-reload');
  assert.equal(p.NotifyAccess, 'main');
  assert.equal(p.ActiveState, 'active');
  assert.equal(p.SubState, 'running');
  assert.equal(p.User, 'live-speaker');
  assert.ok(Number(p.MainPID) > 0);
  // The daemon's own STATUS= line: idle, no wake word, the built-in emulator (the guest has no API key).
  assert.match(p.StatusText, /^idle: press the button \(or live-speaker ctl press\) to talk; endpoint built-in emulator \(parrot mode\)/);
  const status = await must('systemctl status live-speaker.service --no-pager --lines=0');
  assert.ok(status.includes(`Status: "${p.StatusText}`), status);
  const logs = await journal();
  assert.ok(logs.some((l) => l.msg === 'live-speaker starting'), 'the daemon\'s JSON log is in the journal');
  assert.ok(logs.some((l) => l.msg?.startsWith('ready')), 'ready logged');
  // Type=notify: systemd calls it started only after READY=1, which comes after the 'ready' log line.
  const entries = (await must('journalctl -u live-speaker.service -o json --no-pager')).trim().split('\n').map((l) => JSON.parse(l));
  const msg = (e: any) => (typeof e.MESSAGE === 'string' ? e.MESSAGE : '');
  // Compared by the daemon's own clock for its line (journald may take in the two streams in either order).
  const readyLine = entries.map(msg).filter((m) => m.startsWith('{')).map((m) => JSON.parse(m)).find((l) => l.msg?.startsWith('ready'));
  const startedAt = entries.find((e) => /^Started live-speaker\.service/.test(msg(e)))?.__REALTIME_TIMESTAMP;
  assert.ok(readyLine?.time && startedAt, 'both the ready line and systemd\'s "Started" are in the journal');
  const readyUs = BigInt(Date.parse(readyLine.time)) * 1000n;
  assert.ok(BigInt(startedAt) >= readyUs, `started (${startedAt}) only once the daemon was ready (${readyUs})`);
});

test('live-speaker ctl status answers through the installed command', { skip }, async () => {
  const out = await must('live-speaker ctl status --json');
  const s = JSON.parse(out);
  assert.equal(s.state, 'idle');
  assert.equal(s.microphone, 'running', 'arecord runs in the sandbox on the simulated card');
  assert.match(s.endpoint, /emulator/);
  // The process that answered is the one systemd supervises, and the arecord it reports is its child.
  const mainPid = (await show(['MainPID'])).MainPID;
  assert.equal(String(s.pid), mainPid, 'ctl status pid is systemd\'s MainPID');
  const ppid = (await must(`ps -o ppid= -p ${s.capturePid}`)).trim();
  assert.equal(ppid, mainPid, `arecord ${s.capturePid} is a child of the main process`);
});

/** The unit file as shipped (install.sh installs it with only ExecStart's node path changed). */
const UNIT_TEXT = readFileSync(join(REPO, 'systemd', 'live-speaker.service'), 'utf8');
const unitValue = (key: string): string => {
  const m = new RegExp(`^${key}=(.*)$`, 'm').exec(UNIT_TEXT);
  assert.ok(m, `${key}= in systemd/live-speaker.service`);
  return m[1].trim();
};
const bytes = (v: string) => { const m = /^(\d+)([KMG]?)$/.exec(v)!; return Number(m[1]) * 1024 ** ' KMG'.indexOf(m[2] || ' '); };
/** Field 19 of /proc/PID/stat (the nice value), for every thread of the process. */
async function niceOfThreads(pid: string | number): Promise<number[]> {
  const out = await must(`cat /proc/${pid}/task/*/stat`);
  return out.trim().split('\n').map((l) => Number(l.slice(l.lastIndexOf(')') + 2).split(' ')[16]));
}

test('the unit\'s priority and memory limits are in force: the daemon, each of its threads and its arecord at Nice=, best-effort I/O priority 0; MemoryHigh=/MemoryMax= set', { skip }, async () => {
  const want = Number(unitValue('Nice'));
  assert.ok(want <= -10, `the unit raises the daemon (Nice=${want})`);
  const p = await show(['MainPID', 'Nice', 'IOSchedulingClass', 'IOSchedulingPriority', 'MemoryHigh', 'MemoryMax', 'ControlGroup']);
  assert.equal(Number(p.Nice), want);
  const s = JSON.parse(await must('live-speaker ctl status --json'));
  assert.ok(Number(s.capturePid) > 0, 'arecord runs');
  for (const [what, pid] of [['daemon', p.MainPID], ['arecord', String(s.capturePid)]] as const) {
    const nices = await niceOfThreads(pid);
    assert.deepEqual([...new Set(nices)], [want], `${what} ${pid}: nice of its ${nices.length} thread(s) ${nices.join(' ')}`);
    // ionice reads the class and level back from the kernel (ioprio_get).
    assert.equal((await must(`ionice -p ${pid}`)).trim(), 'best-effort: prio 0', `${what} ${pid}'s I/O class`);
  }
  assert.equal(p.MemoryHigh, String(bytes(unitValue('MemoryHigh'))));
  assert.equal(p.MemoryMax, String(bytes(unitValue('MemoryMax'))));
  // In the service's cgroup too, where the memory controller reaches this guest (on a host
  // whose memory controller is on cgroup v1, the guest's systemd cannot apply it: said so).
  const cg = `/sys/fs/cgroup${p.ControlGroup}`;
  if ((await guest(`test -e ${cg}/memory.max`)).code === 0) {
    assert.equal((await must(`cat ${cg}/memory.max`)).trim(), p.MemoryMax);
    assert.equal((await must(`cat ${cg}/memory.high`)).trim(), p.MemoryHigh);
    timings.memoryInCgroup = 1;
  } else {
    timings.memoryInCgroup = 0;
    process.stderr.write(`systemd test: no memory controller in the guest's cgroup ${cg} (controllers: ${(await guest('cat /sys/fs/cgroup/cgroup.controllers')).out.trim() || 'none'}): MemoryHigh/MemoryMax checked as systemd holds them only\n`);
  }
});

test('members of live-speaker-ctl use ctl but cannot read the keys or the config; other users cannot use ctl', { skip }, async () => {
  await must('id ctl-user >/dev/null 2>&1 || useradd --no-create-home -G live-speaker-ctl ctl-user; id outsider >/dev/null 2>&1 || useradd --no-create-home outsider');
  assert.equal((await must('stat -c %a:%G /run/live-speaker/control.sock')).trim(), '660:live-speaker-ctl');
  // A token laid out as docs/tools.md says for a command's (root:live-speaker 0640).
  await must('printf "token\\n" > /etc/live-speaker/ha-auth && chown root:live-speaker /etc/live-speaker/ha-auth && chmod 0640 /etc/live-speaker/ha-auth');
  try {
    const r = await guest('runuser -u ctl-user -- live-speaker ctl status --json');
    assert.equal(r.code, 0, `ctl as a member of live-speaker-ctl: ${r.out}${r.err}`);
    assert.equal(JSON.parse(r.out).state, 'idle');
    // It cannot read the config either, says so and uses the default socket (docs/using.md).
    assert.match(r.err, /cannot read config file \/etc\/live-speaker\/config\.yaml: EACCES[\s\S]*trying the default socket \/run\/live-speaker\/control\.sock/);
    for (const f of ['/etc/live-speaker/gemini-api-key', '/etc/live-speaker/picovoice-access-key', '/etc/live-speaker/ha-auth', CONFIG]) {
      const c = await guest(`runuser -u ctl-user -- cat ${f}`);
      assert.notEqual(c.code, 0, `ctl-user read ${f}`);
      assert.match(c.err, /Permission denied/, f);
    }
    // The credentials systemd hands over: systemd 257 mounts them in the service's own
    // namespace only; wherever they are visible, only the service user may read them.
    const cred = '/run/credentials/live-speaker.service/gemini-api-key';
    const c = await guest(`runuser -u ctl-user -- cat ${cred}`);
    assert.notEqual(c.code, 0, `ctl-user read ${cred}`);
    assert.match(c.err, (await guest(`test -e ${cred}`)).code === 0 ? /Permission denied/ : /No such file/, cred);
    const o = await guest('runuser -u outsider -- live-speaker ctl status --socket /run/live-speaker/control.sock');
    assert.notEqual(o.code, 0, 'a user outside live-speaker-ctl cannot use ctl');
    assert.match(o.err, /EACCES.*live-speaker-ctl group/);
  } finally {
    await must('rm -f /etc/live-speaker/ha-auth');
  }
});

test('a command as another user: sudo -u fails under the unit (NoNewPrivileges=yes); the socket-activated service of systemd/examples runs it as that user', { skip }, async () => {
  const t0 = Date.now();
  // sudo, for this test only: the cached root does not have it.
  await must('command -v sudo >/dev/null || apt-get install -y -q --no-install-recommends sudo >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends sudo >/dev/null; }', 240000);
  timings.sudoInstallS = (Date.now() - t0) / 1000;
  await must('id homeauto >/dev/null 2>&1 || useradd --system --no-create-home homeauto');
  await must("echo 'live-speaker ALL=(homeauto) NOPASSWD: /usr/bin/id' > /etc/sudoers.d/live-speaker-test && chmod 0440 /etc/sudoers.d/live-speaker-test");
  // The rule is right: outside the unit, the service user becomes homeauto with it.
  assert.equal((await must('runuser -u live-speaker -- sudo -n -u homeauto /usr/bin/id -un')).trim(), 'homeauto');
  // The example, installed as its comments say. No Home Assistant here: a stand-in curl
  // (first on the instance's PATH) says who ran it and with what URL, and leaves a file as that user.
  const ex = '/srv/live-speaker-src/systemd/examples';
  await must([
    `install -m 0644 ${ex}/ha-light.socket ${ex}/ha-light@.service /etc/systemd/system/`,
    `install -m 0755 ${ex}/ask-socket ${ex}/ha-light-serve /usr/local/bin/`,
    'mkdir -p /etc/systemd/system/ha-light@.service.d /usr/local/lib/ha-test',
    `printf '#!/bin/sh\\nfor a; do last=$a; done\\necho "$(id -un) $last" | tee /var/tmp/ha-light-done\\n' > /usr/local/lib/ha-test/curl`,
    'chmod 755 /usr/local/lib/ha-test/curl',
    `printf '[Service]\\nEnvironment=PATH=/usr/local/lib/ha-test:/usr/bin:/bin\\n' > /etc/systemd/system/ha-light@.service.d/test.conf`,
    'rm -f /var/tmp/ha-light-done',
    'systemctl daemon-reload',
    'systemctl enable --now ha-light.socket',
  ].join(' && '));
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const good = await must(`cat ${CONFIG}`);
  const commands = [
    '  commands:',
    '    - name: light',
    '      description: Turn a light on or off.',
    '      parameters:',
    '        type: object',
    '        properties:',
    '          service: { type: string, enum: [turn_on, turn_off] }',
    '          entity: { type: string, enum: [light.kitchen] }',
    '        required: [service, entity]',
    '      argv: [/usr/local/bin/ask-socket, /run/ha-light.sock, "{service}", "{entity}"]',
    '    - name: sudo_id',
    '      description: Who sudo makes it.',
    '      argv: [/usr/bin/sudo, -n, -u, homeauto, /usr/bin/id, -un]',
    '',
  ].join('\n');
  assert.match(good, /^ {2}base_url: null$/m);
  assert.match(good, /^ {2}commands: \[\]$/m);
  const cfg = good.replace(/^ {2}base_url: null$/m, `  base_url: ${emu.url}`).replace(/^ {2}commands: \[\]\n/m, commands);
  const write = (text: string) => must(`base64 -d > ${CONFIG} <<< ${Buffer.from(text).toString('base64')}`);
  try {
    const n = (await journal()).length;
    await write(cfg);
    await must('systemctl reload live-speaker.service', 40000);
    await waitLog((l) => l.msg === 'config reloaded', n, "'config reloaded'");
    const sessionP = emu.waitFor('session', undefined, 20000);
    await must('live-speaker ctl press');
    const [s] = (await sessionP) as [EmulatedSession];
    assert.ok(s.declaredTools.includes('light') && s.declaredTools.includes('sudo_id'), String(s.declaredTools));
    const [lightId, sudoId] = s.toolCall([{ name: 'light', args: { service: 'turn_on', entity: 'light.kitchen' } }, { name: 'sudo_id', args: {} }]);
    const sudo = await s.toolResponse(sudoId, 20000);
    assert.match(String(sudo.response?.error), /"no new privileges" flag is set/, `sudo -u under the unit: ${JSON.stringify(sudo.response)}`);
    const light = await s.toolResponse(lightId, 20000);
    assert.equal(light.response?.output, 'homeauto http://homeassistant.local:8123/api/services/light/turn_on\n', JSON.stringify(light.response));
    assert.equal((await must('stat -c %U /var/tmp/ha-light-done')).trim(), 'homeauto', 'the effect happened as homeauto');
    await must('live-speaker ctl press'); // ends the conversation
  } finally {
    await write(good);
    await must('systemctl disable --now ha-light.socket; rm -f /etc/sudoers.d/live-speaker-test; systemctl reload live-speaker.service', 40000);
    await emu.close();
  }
});

test('systemctl reload applies a config change; a bad config is refused and the old one kept', { skip }, async () => {
  const pid = (await show(['MainPID'])).MainPID;
  let n = (await journal()).length;
  await setFollowUp(3);
  await must('systemctl reload live-speaker.service', 40000);
  await waitLog((l) => l.msg === 'config reloaded', n, "'config reloaded'");
  let s = JSON.parse(await must('live-speaker ctl status --json'));
  assert.equal(followUp(s), 3);
  assert.equal((await show(['MainPID'])).MainPID, pid, 'reloaded in place, not restarted');

  n = (await journal()).length;
  await must(`cp ${CONFIG} /root/config.good && printf 'bogus_key: 1\\n' >> ${CONFIG}`);
  try {
    // Type=notify-reload: systemctl waits for the daemon's READY=1, which it sends after refusing too.
    const r = await guest('systemctl reload live-speaker.service', 40000);
    await waitLog((l) => !!l.msg?.startsWith('config reload refused'), n, "'config reload refused'");
    const p = await show(['ActiveState', 'MainPID', 'StatusText']);
    assert.equal(p.ActiveState, 'active', `still running after a refused reload (reload exit ${r.code})`);
    assert.equal(p.MainPID, pid);
    assert.match(p.StatusText, /reload refused/, 'the STATUS= line says so');
    // --socket: ctl reads the (now bad) config file to find the socket otherwise.
    s = JSON.parse(await must('live-speaker ctl status --json --socket /run/live-speaker/control.sock'));
    assert.equal(followUp(s), 3, 'the old config is kept');
  } finally {
    await must(`cp /root/config.good ${CONFIG}`);
  }
});

test('a hung daemon (SIGSTOP) is killed by the watchdog and restarted', { skip }, async () => {
  const before = await show(['MainPID', 'NRestarts']);
  const t0 = Date.now();
  await must(`kill -STOP ${before.MainPID}`);
  const after = await waitFor('a new main pid, active again', 60000, async () => {
    const p = await show(['MainPID', 'ActiveState', 'NRestarts']);
    return p.ActiveState === 'active' && p.MainPID !== before.MainPID && Number(p.MainPID) > 0 ? p : null;
  });
  timings.watchdogRestartS = (Date.now() - t0) / 1000;
  assert.equal(Number(after.NRestarts), Number(before.NRestarts) + 1);
  const sys = await must('journalctl -u live-speaker.service --no-pager -o cat');
  assert.match(sys, /[Ww]atchdog timeout/);
});

test('systemctl stop is clean: exit 0, "stopped" logged, within TimeoutStopSec', { skip }, async () => {
  const n = (await journal()).length;
  const t0 = Date.now();
  await must('systemctl stop live-speaker.service', 30000);
  const took = (Date.now() - t0) / 1000;
  timings.stopS = took;
  const p = await show(['ActiveState', 'Result', 'ExecMainStatus', 'ExecMainCode']);
  assert.equal(p.ActiveState, 'inactive');
  assert.equal(p.Result, 'success');
  assert.equal(p.ExecMainStatus, '0');
  assert.ok(took < 15, `stopped in ${took} s`);
  const logs = (await journal()).slice(n);
  assert.ok(logs.some((l) => l.msg === 'stopping'), "'stopping' logged");
  assert.ok(logs.some((l) => l.msg === 'stopped'), "'stopped' logged");
});

test('the journal holds the daemon\'s JSON log lines', { skip }, async () => {
  const out = await must('journalctl -u live-speaker.service -o cat --no-pager');
  const json = out.split('\n').filter((l) => l.startsWith('{'));
  assert.ok(json.length >= 5, `${json.length} JSON lines`);
  for (const l of json) {
    const o = JSON.parse(l);
    assert.equal(typeof o.level, 'string');
    assert.equal(typeof o.msg, 'string');
  }
});

test('a config error exits 78 and is not restarted (no restart loop)', { skip }, async () => {
  await must(`cp ${CONFIG} /root/config.good && printf 'bogus_key: 1\\n' >> ${CONFIG}`);
  try {
    await must('systemctl reset-failed live-speaker.service || true');
    const r = await guest('systemctl start live-speaker.service', 40000);
    assert.equal(r.code, 1, `systemctl start reports the failed start (exit ${r.code})`);
    await sleep(5000); // longer than RestartSec=2s: a restart would have happened by now
    const p = await show(['ActiveState', 'Result', 'ExecMainStatus', 'NRestarts']);
    assert.equal(p.ActiveState, 'failed');
    assert.equal(p.ExecMainStatus, '78');
    assert.equal(p.NRestarts, '0');
    const out = await must('journalctl -u live-speaker.service -o cat --no-pager -n 30');
    assert.match(out, /unknown key 'bogus_key'/);
  } finally {
    await must(`cp /root/config.good ${CONFIG} && systemctl reset-failed live-speaker.service`);
  }
});

/** Start the service (if it is not running) and wait until it is active; returns its main pid. */
async function ensureActive(): Promise<string> {
  await must('systemctl reset-failed live-speaker.service 2>/dev/null; systemctl start live-speaker.service', 40000);
  const p = await waitFor('the service to be active', 30000, async () => {
    const q = await show(['ActiveState', 'MainPID']);
    return q.ActiveState === 'active' && Number(q.MainPID) > 0 ? q : null;
  });
  return p.MainPID;
}
/** The daemon's JSON lines logged by the process with this main pid (journald's _PID). */
async function journalOf(pid: string): Promise<{ msg?: string; [k: string]: unknown }[]> {
  const out = await must(`journalctl -u live-speaker.service _PID=${pid} -o cat --no-pager`);
  return out.split('\n').filter((l) => l.startsWith('{')).map((l) => { try { return JSON.parse(l); } catch { return {}; } });
}

test('mute survives systemctl restart: the restarted service comes up muted and never starts arecord', { skip }, async () => {
  await ensureActive();
  await must('live-speaker ctl mute --socket /run/live-speaker/control.sock');
  assert.match(await must('cat /var/lib/live-speaker/state.json'), /"muted": true/);
  try {
    await must('systemctl restart live-speaker.service', 40000);
    const pid = await ensureActive();
    const s = JSON.parse(await must('live-speaker ctl status --json --socket /run/live-speaker/control.sock'));
    assert.equal(s.state, 'muted');
    assert.equal(s.capturePid, null);
    assert.equal(String(s.pid), pid, 'ctl answers from the restarted main process');
    await sleep(1000);
    const logs = await journalOf(pid);
    assert.ok(logs.some((l) => l.msg === 'live-speaker starting'), 'the journal has the restarted process');
    assert.equal(logs.filter((l) => l.msg === 'capture started (arecord)').length, 0, 'arecord was never started');
    assert.equal((await guest('pgrep -u live-speaker -x arecord')).code, 1, 'no arecord runs as the service user');
    assert.match((await show(['StatusText'])).StatusText, /^muted/);
  } finally {
    await must('live-speaker ctl unmute --socket /run/live-speaker/control.sock');
  }
  await waitFor('arecord to start after unmute', 10000, async () => (await guest('pgrep -u live-speaker -x arecord')).code === 0);
  assert.match(await must('cat /var/lib/live-speaker/state.json'), /"muted": false/);
});

test('a key file the service\'s group can read works; a root-only one is a config error: exit 78, named, not restarted, and doctor says why', { skip }, async () => {
  const key = '/etc/live-speaker/other-gemini-key';
  await must(`cp ${CONFIG} /root/config.good && printf 'not-a-real-key\\n' > ${key} && chown root:live-speaker ${key} && chmod 0640 ${key}`);
  await must(`sed -i -E 's|^(  api_key_file:).*|\\1 ${key}|' ${CONFIG} && grep -q '^  api_key_file: ${key}$' ${CONFIG}`);
  try {
    await must('systemctl restart live-speaker.service', 40000);
    const pid = await ensureActive();
    const using = (await journalOf(pid)).find((l) => l.msg === 'using the Gemini Live API');
    assert.equal(using?.keySource, key, 'the key came from the group-readable file');

    await must(`chmod 0600 ${key}`);
    await guest('systemctl restart live-speaker.service', 40000);
    await sleep(5000); // longer than RestartSec=2s: a restart would have happened by now
    const p = await show(['ActiveState', 'ExecMainStatus', 'NRestarts']);
    assert.equal(p.ActiveState, 'failed');
    assert.equal(p.ExecMainStatus, '78');
    assert.equal(p.NRestarts, '0');
    const out = await must('journalctl -u live-speaker.service -o cat --no-pager -n 30');
    assert.match(out, new RegExp(`live.api_key_file: cannot read ${key} \\(EACCES\\) as user live-speaker`));
    assert.doesNotMatch(out, /not-a-real-key/);
    const doc = await guest('live-speaker doctor 2>&1', 90000);
    const line = doc.out.split('\n').find((l) => /\]\s+API key\s/.test(l)) ?? '';
    assert.match(line, new RegExp(`^\\[FAIL\\]\\s+API key\\s+${key} \\(live.api_key_file\\) cannot be read by the live-speaker user`), doc.out);
  } finally {
    await must(`cp /root/config.good ${CONFIG} && rm -f ${key}`);
    await ensureActive();
  }
});

test('systemd-analyze security rates the sandbox 1.6 OK, as docs/install.md says', { skip }, async () => {
  const out = await must('systemd-analyze security live-speaker.service --no-pager 2>&1');
  const m = /Overall exposure level for live-speaker\.service: ([\d.]+) (\w+)/.exec(out);
  assert.ok(m, out.slice(-500));
  timings.exposure = Number(m[1]);
  // A change to the unit's sandbox, either way, must update docs/install.md's figure too.
  assert.equal(`${m[1]} ${m[2]}`, '1.6 OK');
});

test('install.sh again upgrades in place: config kept, dependencies reused, service running; a user left in the service\'s group is warned about', { skip }, async () => {
  await must(`sed -i -E 's/^(  follow_up_s:).*/\\1 4/' ${CONFIG}`);
  // Someone who joined the service's group for ctl, as the README once said: the upgrade says what that group reads.
  await must('useradd -M -s /usr/sbin/nologin oldctl && usermod -aG live-speaker oldctl');
  const t0 = Date.now();
  const out = await must('/srv/live-speaker-src/scripts/install.sh --source /srv/live-speaker-src 2>&1', 10 * 60 * 1000);
  timings.reinstallS = (Date.now() - t0) / 1000;
  await must('userdel oldctl');
  assert.match(out, /warning: in group live-speaker, which can read the config and group-readable keys: oldctl\. For 'live-speaker ctl' use group live-speaker-ctl/);
  assert.match(out, /kept your \/etc\/live-speaker\/config\.yaml/);
  assert.match(out, /dependencies unchanged/);
  assert.match(await must(`grep follow_up_s ${CONFIG}`), /follow_up_s: 4/);
  assert.equal((await show(['ActiveState'])).ActiveState, 'active');
  assert.equal((await must('stat -c %a:%U /etc/live-speaker/gemini-api-key /etc/live-speaker/picovoice-access-key')).trim(), '600:root\n600:root');
});

test('install.sh --uninstall removes everything but /etc/live-speaker', { skip }, async () => {
  await must('/srv/live-speaker-src/scripts/install.sh --uninstall 2>&1', 60000);
  const r = await guest('systemctl cat live-speaker.service');
  assert.notEqual(r.code, 0, 'unit gone');
  for (const p of ['/opt/live-speaker', '/usr/local/bin/live-speaker', '/var/lib/live-speaker']) {
    assert.notEqual((await guest(`test -e ${p}`)).code, 0, `${p} removed`);
  }
  assert.notEqual((await guest('id live-speaker')).code, 0, 'user removed');
  await must(`test -f ${CONFIG} && test -f /etc/live-speaker/gemini-api-key`);
});
