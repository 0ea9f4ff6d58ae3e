// The Raspberry Pi architectures, emulated (test-bench.md section 8): for
// arm64 (64-bit Raspberry Pi OS) and armhf (32-bit), a cached Debian trixie
// root of that architecture (test/bench/arm-root.sh; run through qemu-user
// and binfmt_misc) takes the repo's package.json, package-lock.json and the
// vendored speaker tarball into a fresh directory and runs the same clean
// `npm ci` as scripts/install.sh there; every native addon must have been
// built, as an ELF file of that architecture. Then the speaker addon built
// there plays a known signal (marker tones around a seeded random body) into
// the simulated sound card, whose PulseAudio runs on this machine with its
// directory bind-mounted into the root, and what reaches spk.monitor must be
// that signal, every sample, in order. Porcupine: for each Pi model's
// /proc/cpuinfo (a fake one bind-mounted over the root's), the library the
// daemon picks loads in the root's node (its init then refuses the test's
// key); the other architecture's file is refused. Then the built daemon
// (dist/, copied in) runs in the root and holds one whole conversation with
// the emulator (on the host, parrot mode) on the simulated card; a separate
// test follows its reply at the card against what the emulator sent.
// The root has scripts/deps.sh's runtime and demo packages (arm-root.sh).
//
// Skipped, with the reason, without root, binfmt_misc or a program it calls
// (test/bench/needs.ts's NEEDS.arm: qemu-user-static, debootstrap, PulseAudio,
// ..., which test/fresh-debian.test.ts checks in a fresh root);
// LIVE_SPEAKER_SKIP_ARM_TEST=1 skips it, LIVE_SPEAKER_ARM_ARCHES=arm64 runs
// one architecture only.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, closeSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard, findTone, speechMs, speechPeakRms, wholeCorrelation } from './bench/soundcard.js';
import { DaemonProcess } from './bench/daemon.js';
import { rng } from './bench/util.js';
import { LiveEmulator } from '../src/emulator/emulator.js';
import { resample } from '../src/audio/pcm.js';
import { NEEDS, rootTestSkip } from './bench/needs.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const BENCH = join(REPO, 'test', 'bench');
const CACHE = process.env.LIVE_SPEAKER_TEST_CACHE ?? '/var/cache/live-speaker-test';

interface Arch {
  /** Debian's name. */ deb: 'arm64' | 'armhf';
  /** qemu's name, as in binfmt_misc's qemu-NAME. */ qemu: string;
  /** Node's process.arch there. */ node: string;
  /** ELF class (1: 32-bit, 2: 64-bit) and e_machine of its binaries. */ elfClass: number; machine: number;
}
const ARCHES: Arch[] = [
  { deb: 'arm64', qemu: 'aarch64', node: 'arm64', elfClass: 2, machine: 183 /* EM_AARCH64 */ },
  { deb: 'armhf', qemu: 'arm', node: 'arm', elfClass: 1, machine: 40 /* EM_ARM */ },
];
const wanted = (process.env.LIVE_SPEAKER_ARM_ARCHES ?? 'arm64,armhf').split(',').map((s) => s.trim());

function skipReason(a: Arch): string | false {
  if (!wanted.includes(a.deb) && process.env[NEEDS.arm.skipEnv] !== '1') return `LIVE_SPEAKER_ARM_ARCHES=${wanted.join(',')}`;
  return rootTestSkip(NEEDS.arm, { rootFor: 'mounts, chroot, binfmt_misc', cachedStamp: join(CACHE, `${a.deb}-root`, '.stamp'), binfmt: true, unshare: ['--mount'] });
}

function sh(cmd: string, args: string[], opts: { timeoutMs: number; env?: NodeJS.ProcessEnv }): Promise<{ code: number; out: string; err: string }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 << 20, env: opts.env ?? process.env }, (err, stdout, stderr) => {
      const e = err as (Error & { code?: unknown; killed?: boolean }) | null;
      const code = !e ? 0 : typeof e.code === 'number' ? e.code : e.killed ? 124 : -1;
      resolve({ code, out: String(stdout), err: String(stderr) });
    });
  });
}

/** test/bench/arm-root.sh: the cached root's path; it also (re-)registers qemu in binfmt_misc. */
async function armRoot(a: Arch): Promise<string> {
  const r = await sh('bash', [join(BENCH, 'arm-root.sh'), a.deb, CACHE], { timeoutMs: 60 * 60 * 1000 });
  assert.equal(r.code, 0, `arm-root.sh ${a.deb} failed:\n${r.err.slice(-4000)}`);
  return r.out.trim().split('\n').pop()!;
}

/** ELF class, byte order, e_machine and e_flags of a file. */
function elfHeader(path: string): { cls: number; data: number; machine: number; flags: number } {
  const b = Buffer.alloc(52);
  const fd = openSync(path, 'r');
  try { readSync(fd, b, 0, 52, 0); } finally { closeSync(fd); }
  assert.ok(b.subarray(0, 4).equals(Buffer.from([0x7f, 0x45, 0x4c, 0x46])), `${path} is not an ELF file`);
  const cls = b[4];
  const le = b[5] === 1;
  const machine = le ? b.readUInt16LE(18) : b.readUInt16BE(18);
  const flags = cls === 1 ? (le ? b.readUInt32LE(36) : b.readUInt32BE(36)) : 0;
  return { cls, data: b[5], machine, flags };
}

/** Every package under node_modules with a binding.gyp (the ones npm ci builds with node-gyp). */
function gypPackages(nodeModules: string): string[] {
  const out: string[] = [];
  const walk = (dir: string) => {
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      if (!e.isDirectory() || e.name === '.bin') continue;
      const p = join(dir, e.name);
      if (e.name.startsWith('@')) { walk(p); continue; }
      if (existsSync(join(p, 'binding.gyp'))) out.push(p);
      if (existsSync(join(p, 'node_modules'))) walk(join(p, 'node_modules'));
    }
  };
  walk(nodeModules);
  return out;
}

// --- the signal: a marker tone, a seeded random body, another marker tone (24 kHz mono s16le),
// after a short silence. The first 0-20 ms of every new playback stream never
// reach spk.monitor on the simulated card (seen here on x86 too, with the
// x86 addon and with aplay: the card's start, not the addon's build); the
// lead-in silence is what that loses, so every sample of the signal counts.
const RATE = 24000;
const LEAD_MS = 100;
const HEAD_HZ = 1000;
const TAIL_HZ = 2000;
const MARK_MS = 200;
const BODY_MS = 2000;
function toneSamples(freq: number, ms: number): Int16Array {
  const n = (RATE * ms) / 1000;
  const x = new Int16Array(n);
  for (let i = 0; i < n; i++) x[i] = Math.round(0.5 * 32767 * Math.sin((2 * Math.PI * freq * i) / RATE));
  return x;
}
function bodySamples(seed: number): Int16Array {
  const rnd = rng(seed);
  const x = new Int16Array((RATE * BODY_MS) / 1000);
  for (let i = 0; i < x.length; i++) x[i] = Math.round((rnd() * 2 - 1) * 0.3 * 32767);
  return x;
}
const concat = (...parts: Int16Array[]) => {
  const out = new Int16Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
};
const bytesOf = (x: Int16Array) => Buffer.from(x.buffer, x.byteOffset, x.byteLength);
function samplesOf(b: Buffer): Int16Array {
  const c = Buffer.from(b.subarray(0, b.length - (b.length % 2)));
  return new Int16Array(c.buffer, c.byteOffset, c.length / 2);
}
/** Normalised cross-correlation of needle with hay at offset (0 where either is silent). */
function ncc(hay: Int16Array, needle: Int16Array, offset: number, n = needle.length): number {
  if (offset < 0 || offset + n > hay.length) return 0;
  let dot = 0, hh = 0, nn = 0;
  for (let i = 0; i < n; i++) {
    const h = hay[offset + i], k = needle[i];
    dot += h * k; hh += h * h; nn += k * k;
  }
  return hh > 0 && nn > 0 ? dot / Math.sqrt(hh * nn) : 0;
}

// The player, run by the root's node: the signal to `speaker` in one go (the
// way a reply is best written, test-bench.md section 7), then the addon's
// close, which drains ALSA.
const PLAY_CJS = `const Speaker = require('speaker');
const pcm = require('fs').readFileSync(process.argv[2]);
const s = new Speaker({ channels: 1, bitDepth: 16, sampleRate: ${RATE}, signed: true });
s.on('error', (e) => { console.error('speaker error:', e); process.exit(1); });
s.once('close', () => { console.log('played ' + pcm.length + ' bytes on ' + process.arch); process.exit(0); });
s.end(pcm);
`;

// --- Porcupine: each Raspberry Pi model as its kernel shows it in /proc/cpuinfo
// (64-bit kernel format for arm64; the 32-bit one, with Hardware, for armhf),
// put over the root's /proc/cpuinfo; the library the daemon picks for it must
// load there. Pi 1, Zero and early Pi 2 (ARM1176, Cortex-A7) have no
// Porcupine build, so nothing is picked for them (test/wake.test.ts).
interface PiModel { model: string; part: string; variant: string; rev: number; revision: string; cpu: string }
const PI_MODELS: PiModel[] = [
  { model: 'Raspberry Pi 3 Model B Rev 1.2', part: '0xd03', variant: '0x0', rev: 4, revision: 'a02082', cpu: 'cortex-a53' },
  { model: 'Raspberry Pi Zero 2 W Rev 1.0', part: '0xd03', variant: '0x0', rev: 4, revision: '902120', cpu: 'cortex-a53' },
  { model: 'Raspberry Pi 4 Model B Rev 1.4', part: '0xd08', variant: '0x0', rev: 3, revision: 'd03114', cpu: 'cortex-a72' },
  { model: 'Raspberry Pi 5 Model B Rev 1.0', part: '0xd0b', variant: '0x4', rev: 1, revision: 'd04170', cpu: 'cortex-a76' },
];
function cpuinfo(m: PiModel, deb: Arch['deb']): string {
  const cores = [0, 1, 2, 3].map((i) => deb === 'arm64'
    ? `processor\t: ${i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: ${m.variant}\nCPU part\t: ${m.part}\nCPU revision\t: ${m.rev}\n`
    : `processor\t: ${i}\nmodel name\t: ARMv7 Processor rev ${m.rev} (v7l)\nBogoMIPS\t: 108.00\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: ${m.variant}\nCPU part\t: ${m.part}\nCPU revision\t: ${m.rev}\n`);
  return `${cores.join('\n')}\n${deb === 'armhf' ? 'Hardware\t: BCM2835\n' : ''}Revision\t: ${m.revision}\nSerial\t\t: 00000000c0ffee42\nModel\t\t: ${m.model}\n`;
}
// Run by the root's node, with the fake cpuinfo in place: the daemon's own
// selection and engine factory (dist/src/wake/porcupine.js) with a key that is
// not one, then which native files that process loaded; and, as the control
// that a wrong-architecture file is refused, process.dlopen of argv[3].
const PORCUPINE_MJS = `import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
const [dist, other] = process.argv.slice(2);
const mod = join(dist, 'src', 'wake', 'porcupine.js');
const porcupine = await import(mod);
const require = createRequire(mod);
const pkgDir = dirname(require.resolve('@picovoice/porcupine-node/package.json'));
const out = { arch: process.arch, pkgDir, lib: porcupine.libraryPath(pkgDir, readFileSync('/proc/cpuinfo', 'utf8')) ?? null };
try {
  const engine = porcupine.porcupineFactory({ accessKey: 'not-a-picovoice-access-key', keywords: [{ name: 'jarvis', sensitivity: 0.5 }], modelPath: null })();
  out.started = true; engine.release();
} catch (e) { out.error = String(e.message); out.errorClass = e.errorClass ?? e.constructor.name; }
out.loaded = Object.keys(require.cache).filter((k) => k.endsWith('.node'));
try { process.dlopen({ exports: {} }, other); out.otherLoaded = true; } catch (e) { out.otherError = String(e.message); }
console.log(JSON.stringify(out));
`;

/**
 * Follow `sent` through `heard` (both 16 kHz) 100 ms at a time: each piece is
 * looked for from where the previous one ended (up to 40 ms earlier, 500 ms
 * later). A voiced piece (RMS >= minRms) counts as found at correlation >= 0.9,
 * or, where a gap fell inside it, as its two 50 ms halves found one after the
 * other at >= 0.9 each.
 * gapMs: how much longer the voiced span took to play than it lasts.
 */
function followInOrder(heard: Int16Array, sent: Int16Array, minRms: number): { voiced: number; found: number; worst: number; gapMs: number } {
  const N = 1600;
  const rms = (x: Int16Array, o: number) => { let e = 0; for (let i = 0; i < N; i++) e += x[o + i] ** 2; return Math.sqrt(e / N); };
  let voiced = 0, found = 0, worst = 1, first = -1, firstAt = 0, lastEnd = 0, lastSentEnd = 0;
  let expect = -1;
  for (let k = 0; k + N <= sent.length; k += N) {
    if (rms(sent, k) < minRms) { if (expect >= 0) expect += N; continue; }
    const piece = sent.subarray(k, k + N);
    voiced++;
    let best = -1, bestC = -1;
    const from = expect < 0 ? 0 : Math.max(0, expect - 640);
    const to = expect < 0 ? heard.length - N : Math.min(heard.length - N, expect + 8000);
    for (let o = from; o <= to; o++) { const c = ncc(heard, piece, o); if (c > bestC) { bestC = c; best = o; } }
    let end = best + N;
    if (bestC < 0.9 && expect >= 0) {
      // A piece with a gap inside it: its two halves, each found in order (the gap between them counts as gap).
      const half = N / 2;
      const find = (x: Int16Array, lo: number, hi: number) => {
        let bo = -1, bc = -1;
        for (let o = Math.max(0, lo); o <= Math.min(heard.length - half, hi); o++) { const c = ncc(heard, x, o); if (c > bc) { bc = c; bo = o; } }
        return { o: bo, c: bc };
      };
      const h1 = find(piece.subarray(0, half), expect - 640, expect + 8000);
      const h2 = find(piece.subarray(half), h1.o + half, h1.o + half + 8000);
      if (Math.min(h1.c, h2.c) >= 0.9) { bestC = Math.min(h1.c, h2.c); best = h1.o; end = h2.o + half; }
    }
    worst = Math.min(worst, bestC);
    if (bestC >= 0.9) {
      found++;
      if (first < 0) { first = best; firstAt = k; }
      lastEnd = end; lastSentEnd = k + N;
      expect = end;
    } else if (expect >= 0) expect += N;
  }
  const gapMs = first < 0 ? 0 : Math.round((((lastEnd - first) - (lastSentEnd - firstAt)) / 16000) * 1000);
  return { voiced, found, worst, gapMs };
}

// The question of scripts/demo.sh.
const QUESTION = 'Hello speaker, what is the weather like in Lisbon today?';

/** Kill what is left of a run's processes: those whose root is RUN/root (an emulated daemon's arecord, say). */
function killInRoot(run: string): void {
  const mine = join(run, 'root');
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try { if (readlinkSync(`/proc/${p}/root`) === mine) process.kill(Number(p), 'SIGKILL'); } catch { /* gone */ }
  }
}

test('the vendored speaker tarball is speaker@0.5.5 from the registry plus vendor/speaker/arm64.patch, nothing else', { timeout: 120_000 }, async () => {
  const r = await sh('bash', [join(REPO, 'vendor', 'speaker', 'pack.sh'), '--check'], { timeoutMs: 110_000 });
  assert.equal(r.code, 0, `${r.out}\n${r.err}`);
});

interface Prepared { root: string; run: string; app: string; npmCi: { code: number; out: string; err: string }; timings: Record<string, number | string> }

/**
 * The root (built once, cached), a fresh directory with what npm ci reads
 * (the manifest, the lock file and every local package they name), and the
 * same clean `npm ci` as scripts/install.sh, as root in the root, under qemu.
 */
async function prepare(a: Arch): Promise<Prepared> {
  const timings: Record<string, number | string> = {};
  let t = Date.now();
  const root = await armRoot(a);
  timings.rootS = (Date.now() - t) / 1000;
  mkdirSync(CACHE, { recursive: true });
  const run = mkdtempSync(join(CACHE, `run-${a.deb}-`));
  chmodSync(run, 0o755);
  const app = join(run, 'app');
  mkdirSync(app);
  const pkg = JSON.parse(readFileSync(join(REPO, 'package.json'), 'utf8'));
  copyFileSync(join(REPO, 'package.json'), join(app, 'package.json'));
  copyFileSync(join(REPO, 'package-lock.json'), join(app, 'package-lock.json'));
  for (const spec of Object.values({ ...pkg.dependencies, ...pkg.devDependencies }) as string[]) {
    if (!spec.startsWith('file:')) continue;
    const rel = relative(REPO, join(REPO, spec.slice('file:'.length)));
    mkdirSync(dirname(join(app, rel)), { recursive: true });
    copyFileSync(join(REPO, rel), join(app, rel));
  }
  // The daemon as tsc built it here (plain JavaScript, the same on every
  // architecture: install.sh's tsc step is not repeated under emulation).
  cpSync(join(REPO, 'dist', 'src'), join(app, 'dist', 'src'), { recursive: true });
  await armRoot(a); // binfmt may have been dropped meanwhile: re-check
  t = Date.now();
  const npmCi = await sh('bash', [join(BENCH, 'in-root.sh'), root, run, app, '--',
    'bash', '-c', `cd ${app} && env -u NODE_ENV npm ci --include=dev --no-audit --no-fund --loglevel=error </dev/null 2>&1`],
  { timeoutMs: 45 * 60 * 1000, env: { PATH: process.env.PATH, NPM_CACHE_DIR: join(CACHE, 'npm-cache-arm') } });
  timings.npmCiS = (Date.now() - t) / 1000;
  if (npmCi.code !== 0 && !existsSync(`/proc/sys/fs/binfmt_misc/qemu-${a.qemu}`)) {
    npmCi.err += `\nqemu-${a.qemu} was unregistered from binfmt_misc during the run (by a package install in some other root?)`;
  }
  return { root, run, app, npmCi, timings };
}

// Every architecture's root build and npm ci start together (each is mostly
// one emulated process, and a cold root is the slow part): the first suite
// to run starts them all; each suite waits for its own.
const prepared = new Map<string, Promise<Prepared>>();
function prepareAll(): void {
  for (const a of ARCHES) {
    if (skipReason(a) || prepared.has(a.deb)) continue;
    const p = prepare(a);
    p.catch(() => undefined); // reported by the suite that awaits it
    prepared.set(a.deb, p);
  }
}

for (const a of ARCHES) {
  const skip = skipReason(a);
  describe(`${a.deb} (Raspberry Pi OS ${a.deb === 'arm64' ? '64' : '32'}-bit userland under qemu)`, { skip }, () => {
    let root = '';
    let run = '';
    let app = '';
    let npmCi = { code: -1, out: '', err: '' };
    let timings: Record<string, number | string> = {};

    before(async () => {
      prepareAll();
      ({ root, run, app, npmCi, timings } = await prepared.get(a.deb)!);
    }, { timeout: 110 * 60 * 1000 });

    after(() => {
      process.stderr.write(`arm test ${a.deb} timings (s): ${JSON.stringify(timings)}\n`);
      if (run) spawnSync('rm', ['-rf', '--one-file-system', run]);
    });

    test(`a clean npm ci builds every native addon, each an ELF file for ${a.deb}`, () => {
      assert.equal(npmCi.code, 0, `npm ci failed under qemu (${a.deb}):\n${npmCi.out.slice(-6000)}\n${npmCi.err.slice(-2000)}`);
      const built = gypPackages(join(app, 'node_modules'));
      const names = built.map((p) => relative(join(app, 'node_modules'), p)).sort();
      // spi-device (APA102 rings) is optional in package.json, so a failed build would only be dropped: required here.
      for (const want of ['epoll', 'sd-notify', 'speaker', 'spi-device']) assert.ok(names.includes(want), `${want} is among the node-gyp packages (${names.join(', ')})`);
      for (const p of built) {
        const rel = join(p, 'build', 'Release');
        const nodes = existsSync(rel) ? readdirSync(rel).filter((f) => f.endsWith('.node')) : [];
        assert.ok(nodes.length > 0, `${relative(app, p)}: no build/Release/*.node (the addon did not build)`);
        for (const f of nodes) {
          const h = elfHeader(join(rel, f));
          assert.equal(h.cls, a.elfClass, `${f}: ELF class ${h.cls}, want ${a.elfClass}`);
          assert.equal(h.data, 1, `${f}: little-endian`);
          assert.equal(h.machine, a.machine, `${relative(app, join(rel, f))}: e_machine ${h.machine}, want ${a.machine} (${a.deb})`);
          // armhf: the hard-float EABI (EF_ARM_ABI_FLOAT_HARD), as Raspberry Pi OS 32-bit is.
          if (a.deb === 'armhf') assert.ok(h.flags & 0x400, `${f}: hard-float ABI (e_flags 0x${h.flags.toString(16)})`);
        }
      }
    });

    test(`the ${a.deb} echo canceller's engine runs there: koffi's prebuilt binary for ${a.deb} loads libspeexdsp1 and Speex cancels a frame`, { timeout: 300_000 }, async () => {
      assert.equal(npmCi.code, 0, 'npm ci failed (see the first test)');
      // koffi ships its native module per platform in an optional package: the one for this architecture, hard-float on armhf.
      const plat = join(app, 'node_modules', '@koromix', `koffi-linux-${a.node}`);
      const dirs = existsSync(plat) ? readdirSync(plat).filter((d) => d.startsWith('linux_')) : [];
      assert.ok(dirs.length === 1, `@koromix/koffi-linux-${a.node} installed with its linux_* binary (${dirs.join(', ') || 'none'})`);
      const h = elfHeader(join(plat, dirs[0], 'koffi.node'));
      assert.equal(h.machine, a.machine, `koffi.node e_machine ${h.machine}, want ${a.machine}`);
      if (a.deb === 'armhf') assert.ok(h.flags & 0x400, `koffi.node: hard-float ABI (e_flags 0x${h.flags.toString(16)})`);
      // The same calls src/audio/aec/speex.ts makes, on the root's own libspeexdsp1 (from scripts/deps.sh's runtime list).
      const script = readFileSync(join(BENCH, 'speex-frame.cjs'), 'utf8');
      const r = await sh('bash', [join(BENCH, 'in-root.sh'), root, run, app, '--', 'bash', '-c', 'cd "$1" && node -e "$2" 2>&1', '_', app, script],
        { timeoutMs: 240_000, env: { PATH: process.env.PATH } });
      assert.equal(r.code, 0, `loading libspeexdsp through koffi failed under qemu:\n${r.out}\n${r.err}`);
      assert.match(r.out, new RegExp(`speex ran on ${a.node} \\(node v\\d+[^)]*\\), 160 samples out`));
    });

    test(`the ${a.deb} speaker addon plays a known signal into the simulated sound card, every sample in order`, { timeout: 180_000 }, async () => {
      assert.equal(npmCi.code, 0, 'npm ci failed (see the test above)');
      const cardDir = join(run, 'card');
      mkdirSync(cardDir, { mode: 0o755 });
      const card = await SoundCard.start(cardDir);
      try {
        const head = toneSamples(HEAD_HZ, MARK_MS);
        const body = bodySamples(0x5eed_0000 + a.machine);
        const tail = toneSamples(TAIL_HZ, MARK_MS);
        const signal = concat(new Int16Array((RATE * LEAD_MS) / 1000), head, body, tail);
        writeFileSync(join(app, 'signal.raw'), bytesOf(signal));
        writeFileSync(join(app, 'play.cjs'), PLAY_CJS);

        await armRoot(a); // binfmt re-check before the emulated run
        const rec = card.recordSpeaker();
        await sleep(300);
        const t = Date.now();
        const play = await sh('bash', [join(BENCH, 'in-root.sh'), root, run, app, cardDir, '--',
          'env', `PULSE_SERVER=${card.cardEnv.PULSE_SERVER}`, `ALSA_CONFIG_PATH=${card.cardEnv.ALSA_CONFIG_PATH}`,
          'node', join(app, 'play.cjs'), join(app, 'signal.raw')], { timeoutMs: 120_000, env: { PATH: process.env.PATH } });
        timings.playS = (Date.now() - t) / 1000;
        await sleep(500);
        const got = samplesOf(await rec.stop());
        assert.equal(play.code, 0, `the player failed under qemu:\n${play.out}\n${play.err}`);
        assert.match(play.out, new RegExp(`played ${signal.length * 2} bytes on ${a.node}`));

        // Where the body sits in the recording: coarse by the head marker, then
        // sample-exact by correlating its first 100 ms.
        const gotBuf = bytesOf(got);
        const h = findTone(gotBuf, HEAD_HZ, 5);
        const tl = findTone(gotBuf, TAIL_HZ, 5);
        assert.ok(h.firstMs !== null && tl.lastMs !== null, `both marker tones recorded (head ${h.firstMs} ms, tail ${tl.lastMs} ms, recording ${(got.length / RATE).toFixed(2)} s)`);
        const guess = Math.round(((h.firstMs! + MARK_MS) * RATE) / 1000);
        const probe = body.subarray(0, RATE / 10);
        let best = -1, bestC = -1;
        for (let o = Math.max(0, guess - RATE / 20); o <= guess + RATE / 20; o++) {
          const c = ncc(got, probe, o);
          if (c > bestC) { bestC = c; best = o; }
        }
        const whole = ncc(got, body, best);
        timings.bodyCorrelation = Number(whole.toFixed(5));
        // The head marker right before it, the tail marker right after it: nothing cut at either end.
        const headC = ncc(got, head, best - head.length);
        const tailC = ncc(got, tail, best + body.length);
        let exact = 0;
        const sent = concat(head, body, tail);
        for (let i = 0, o = best - head.length; i < sent.length; i++) if (Math.abs(got[o + i] - sent[i]) <= 1) exact++;
        Object.assign(timings, { headCorrelation: Number(headC.toFixed(5)), tailCorrelation: Number(tailC.toFixed(5)), samplesExact: `${exact}/${sent.length}` });
        if (whole < 0.99 || headC < 0.99 || tailC < 0.99) writeFileSync(join(CACHE, `arm-test-${a.deb}-recording.raw`), bytesOf(got));
        assert.ok(whole >= 0.99, `the whole ${BODY_MS} ms body, at one offset, correlates ${whole.toFixed(4)} (>= 0.99: no sample lost, added or moved)`);
        assert.ok(headC >= 0.99, `the head marker precedes the body (correlation ${headC.toFixed(4)})`);
        assert.ok(tailC >= 0.99, `the tail marker follows the body (correlation ${tailC.toFixed(4)})`);
        // And sample by sample (the card mixes nothing else in at 100% volume): all of it, unchanged.
        assert.equal(exact, sent.length, `samples arrived unchanged (within 1 LSB): ${exact} of ${sent.length}`);
        const spanMs = tl.lastMs! - h.firstMs!;
        timings.spanMs = spanMs;
        assert.ok(Math.abs(spanMs - (2 * MARK_MS + BODY_MS)) <= 10, `marker to marker ${spanMs} ms, sent ${2 * MARK_MS + BODY_MS} ms`);
      } finally {
        await card.stop();
      }
    });

    test(`Porcupine: for each Pi model's /proc/cpuinfo, the daemon picks the ${a.deb} library for its CPU and that file loads (a wrong-arch one is refused)`, { timeout: 300_000 }, async () => {
      assert.equal(npmCi.code, 0, 'npm ci failed (see the first test)');
      writeFileSync(join(app, 'porcupine-check.mjs'), PORCUPINE_MJS);
      const pkgDir = join(app, 'node_modules', '@picovoice', 'porcupine-node');
      const t = Date.now();
      await armRoot(a);
      // The models side by side, each in its own overlay (a run directory of its own).
      await Promise.all(PI_MODELS.map(async (m, i) => {
        const want = join(pkgDir, 'lib', 'raspberry-pi', `${m.cpu}${a.deb === 'arm64' ? '-aarch64' : ''}`, 'pv_porcupine.node');
        const h = elfHeader(want);
        assert.equal(h.machine, a.machine, `${relative(app, want)} is an ELF file for ${a.deb}`);
        // The control: the same CPU's build for the other architecture.
        const other = join(pkgDir, 'lib', 'raspberry-pi', `${m.cpu}${a.deb === 'arm64' ? '' : '-aarch64'}`, 'pv_porcupine.node');
        const sub = join(run, `porcupine-${i}`);
        mkdirSync(sub, { mode: 0o755 });
        const fake = join(sub, 'cpuinfo');
        writeFileSync(fake, cpuinfo(m, a.deb));
        const r = await sh('bash', [join(BENCH, 'in-root.sh'), root, sub, app, `${fake}=/proc/cpuinfo`, '--',
          'node', join(app, 'porcupine-check.mjs'), join(app, 'dist'), other], { timeoutMs: 120_000, env: { PATH: process.env.PATH } });
        assert.equal(r.code, 0, `${m.model}: the check did not run:\n${r.out}\n${r.err}`);
        const got = JSON.parse(r.out.trim().split('\n').pop()!);
        timings[`porcupine ${m.model}`] = got.errorClass ?? (got.started ? 'started' : '?');
        assert.equal(got.arch, a.node);
        assert.equal(got.lib, want, `${m.model} (CPU part ${m.part}): the daemon picks ${relative(app, want)}`);
        // Loaded: the library is in that process's module cache, which Node fills only after dlopen succeeds and the
        // module registers. Without a key or the network, Porcupine's init then refuses the key: that is after the load.
        assert.deepEqual(got.loaded, [want], `${m.model}: the picked library, and only it, was loaded (error: ${got.error})`);
        // (Seen: "PorcupineInvalidArgumentError: Porcupine failed to initialize: Picovoice Error. Failed to parse AccessKey.")
        assert.match(`${got.errorClass}: ${got.error}`, /^Porcupine\w*Error: .*AccessKey/,
          `${m.model}: after loading, Porcupine's init fails on the key, not on the CPU or the file`);
        assert.doesNotMatch(String(got.error), /Unsupported CPU|ELF|cannot open shared object|undefined symbol/);
        assert.ok(!got.otherLoaded && /wrong ELF class|ELFCLASS|cannot open shared object|wrong ELF/i.test(got.otherError ?? ''),
          `the ${relative(app, other)} build is refused on ${a.deb} (${got.otherError ?? 'it loaded'})`);
      }));
      timings.porcupineS = (Date.now() - t) / 1000;
    });

    // Set by the conversation test: what reached the card, what the emulator sent, how often the daemon's player ran dry.
    let conversation: { played: Buffer; sent: Buffer; ranDry: number } | null = null;

    test(`the built daemon in the ${a.deb} root holds one whole conversation on the emulator and the simulated card: the server hears the whole question, every byte of the reply goes to the speaker addon, then idle`, { timeout: 600_000 }, async () => {
      assert.equal(npmCi.code, 0, 'npm ci failed (see the first test)');
      // Real time under emulation needs the CPU: the other architecture's npm ci (started together) is over first.
      await Promise.allSettled([...prepared.values()]);
      const cardDir = join(run, 'card-conversation');
      const daemonDir = join(run, 'daemon');
      mkdirSync(cardDir, { mode: 0o755 });
      mkdirSync(daemonDir, { mode: 0o755 });
      const card = await SoundCard.start(cardDir);
      // Parrot mode, as the demo's built-in emulator, here on the host so that what it sent is known.
      const sent: Buffer[] = [];
      const emu = await LiveEmulator.start({ mode: 'parrot', reply: (u) => { const r = resample(u.pcm, 16000, 24000); sent.push(r); return r; } });
      let daemon: DaemonProcess | undefined;
      const sink = card.recordSpeaker();
      const room = card.recordRoom();
      await Promise.all([sink.ready(), room.ready()]); // both recorders run before anything plays
      try {
        const speech = await card.say(QUESTION);
        await armRoot(a);
        let t = Date.now();
        daemon = await DaemonProcess.start({
          dir: daemonDir,
          env: { PATH: process.env.PATH },
          readyTimeoutMs: 180_000,
          // The most lead the config allows: the emulated daemon was seen late by up to 700 ms under load.
          // No echo canceller in this conversation: under qemu every instruction of SpeexDSP is emulated too, and with
          // it on every mic frame (the merged echo stage) the emulated daemon fell so far behind real time that its
          // player ran dry 10 times and kept 6 of 25 pieces of the reply (armhf), or the reply never ended (arm64),
          // where without it (CI's last run) none was lost. The engine itself is tested in this root above (koffi loads
          // libspeexdsp1, Speex cancels a frame); its cost on a Pi is docs/audio.md's estimate (bench/echo.ts), not this.
          config: { live: { base_url: emu.url }, conversation: { follow_up_s: 2, no_speech_timeout_s: 10 }, audio: { playback_lead_ms: 400, echo_cancel: 'off' } },
          command: (args) => ({ cmd: 'bash', args: [join(BENCH, 'in-root.sh'), root, run, app, cardDir, daemonDir, '--',
            'env', `PULSE_SERVER=${card.cardEnv.PULSE_SERVER}`, `ALSA_CONFIG_PATH=${card.cardEnv.ALSA_CONFIG_PATH}`,
            // Its speaker-addon probe (a child node) took over the default 10 s here under emulation.
            'LIVE_SPEAKER_ADDON_PROBE_TIMEOUT_MS=60000',
            'node', join(app, 'dist', 'src', 'main.js'), ...args] }),
        });
        timings.daemonReadyS = (Date.now() - t) / 1000;
        // Under emulation the start-up check of the speaker (a child node loading the addon, then opening the
        // device) ends well after 'ready' (on a Pi, within a second or two); a press before it ended was seen
        // to get its reply dropped silent ("playback did not report the end of the reply"): wait for it.
        await daemon.waitLog((l) => l.msg.startsWith('playback device checked') || l.msg.startsWith('playback not available'), 120_000, 'the playback check');
        timings.playbackCheckedS = (Date.now() - t) / 1000;
        t = Date.now();
        const stateReached = (s: string, ms: number) => daemon!.waitLog((l) => l.msg === 'state' && l.to === s, ms, `state ${s}`);
        // (Everything in the root runs 5-20x slower: the control socket is given 30 s, not 5.)
        const ack = await daemon.ctl('press', 30_000);
        timings.pressAnsweredS = (Date.now() - t) / 1000;
        assert.equal(ack.state, 'connecting');
        await card.playIntoRoom(speech);
        const [, u] = await emu.waitFor('utterance', undefined, 30_000);
        await stateReached('speaking', 30_000);
        await stateReached('follow-up', 60_000);
        await stateReached('idle', 30_000);
        timings.conversationS = (Date.now() - t) / 1000;
        await sleep(300);
        const played = await sink.stop();
        const said = await room.stop();
        assert.deepEqual(daemon.states(), ['connecting', 'listening', 'thinking', 'speaking', 'follow-up', 'idle']);
        // The server received what was said: the whole question is in the utterance it cut.
        const inUtterance = wholeCorrelation(u.pcm, said);
        timings.utteranceCorrelation = Number(inUtterance.toFixed(4));
        assert.ok(inUtterance > 0.95, `the whole question is in the utterance the server cut (corr ${inUtterance.toFixed(3)}; room vs the spoken file ${wholeCorrelation(said, speech).toFixed(3)})`);
        assert.equal(emu.sessions.length, 1);
        assert.equal(emu.sessions[0].utterances.length, 1, 'one question, one utterance');
        assert.equal(sent.length, 1, 'one reply sent');
        const status = await daemon.ctl('status', 30_000);
        assert.equal(status.session, 'none');
        assert.equal(status.micLive, false);
        assert.equal(status.counters.bytesPlayed, sent[0].length, 'every byte the emulator sent went to the speaker addon');
        const ranDry = daemon.logs.filter((l) => l.msg.startsWith('playback ran dry')).length;
        timings.playbackRanDry = ranDry;
        conversation = { played, sent: sent[0], ranDry };
        assert.equal(emu.sessions[0].closed, true, 'the session is closed after the follow-up window');
      } finally {
        await sink.stop().catch(() => undefined);
        await room.stop().catch(() => undefined);
        if (daemon) {
          // Its log, for when this fails: kept beside the roots.
          writeFileSync(join(CACHE, `arm-test-${a.deb}-daemon.log`), `${daemon.logs.map((l) => JSON.stringify(l)).join('\n')}\n${daemon.stderr}`);
          const code = await daemon.stop();
          if (code !== 0) process.stderr.write(`arm test ${a.deb}: the daemon exited with ${code}; stderr:\n${daemon.stderr.slice(-3000)}\n`);
        }
        killInRoot(run);
        await emu.close();
        await card.stop();
      }
    });

    test(`in that conversation the ${a.deb} daemon's reply reached the simulated card whole: what the emulator sent, every voiced 100 ms in order`, { timeout: 120_000 }, () => {
      assert.ok(conversation, 'the conversation ran (see the test above)');
      // What reached the sound card is what the emulator sent: the same samples, in order, and as many seconds of speech.
      const { played, sent, ranDry } = conversation;
      const heard = resample(played, 24000, 16000);
      const reply = resample(sent, 24000, 16000);
      const corr = wholeCorrelation(heard, reply);
      const minRms = speechPeakRms(reply) / 10;
      const sentMs = speechMs(reply, minRms);
      const playedMs = speechMs(heard, minRms);
      // Under emulation the player can fall behind for a moment (seen: one 160 ms gap 0.4 s into the reply, after
      // which every sample followed in order), which a single-offset correlation cannot pass: the reply is
      // followed 100 ms at a time instead, each piece found after the one before, and the gaps are added up.
      const pieces = followInOrder(samplesOf(heard), samplesOf(reply), minRms);
      Object.assign(timings, {
        replyCorrelation: Number(corr.toFixed(4)), replySpeechMs: `${playedMs} played / ${sentMs} sent`,
        replyPieces: `${pieces.found}/${pieces.voiced} voiced 100 ms pieces found in order (worst corr ${pieces.worst.toFixed(3)})`, replyGapsMs: pieces.gapMs,
      });
      if (pieces.found < pieces.voiced || corr <= 0.97) {
        writeFileSync(join(CACHE, `arm-test-${a.deb}-conversation.raw`), played);
        writeFileSync(join(CACHE, `arm-test-${a.deb}-conversation-sent.raw`), sent);
      }
      assert.ok(pieces.voiced >= 10, `the reply has speech to follow (${pieces.voiced} voiced pieces)`);
      assert.equal(pieces.found, pieces.voiced, `every voiced 100 ms piece of the emulator's reply reached the card, in order (worst corr ${pieces.worst.toFixed(3)}; whole-reply corr ${corr.toFixed(3)}; the emulated daemon's player ran dry ${ranDry} times)`);
      assert.ok(pieces.gapMs <= 1000, `gaps inside the played reply add up to ${pieces.gapMs} ms (bound 1000 under emulation)`);
      assert.ok(Math.abs(playedMs - sentMs) <= 0.05 * sentMs, `${playedMs} ms of speech played for ${sentMs} ms sent`);
    });
  });
}
