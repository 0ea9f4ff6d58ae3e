/**
 * A simulated sound card for tests, benchmarks and the demo: a private
 * PulseAudio instance with two null sinks (see scripts/soundcard.sh), reached
 * by child processes through real ALSA (`default` device) once they run with
 * `card.env`. PulseAudio's clock paces everything in real time.
 *
 *   room  16 kHz mono s16le. What is played into it (`playIntoRoom`) is what
 *         ALSA `default` captures (arecord, node-record-lpcm16).
 *   spk   24 kHz mono s16le. What ALSA `default` plays (aplay, the `speaker`
 *         addon) lands here; `recordSpeaker()` records it.
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOM_RATE = 16000;
const SPK_RATE = 24000;

/** scripts/soundcard.sh, found from this module (works from test/ and dist/test/). */
function scriptPath(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const p = join(d, 'scripts', 'soundcard.sh');
    if (existsSync(p)) return p;
    d = dirname(d);
  }
  throw new Error('soundcard: scripts/soundcard.sh not found above ' + fileURLToPath(import.meta.url));
}

function run(
  cmd: string,
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<{ stdout: string; stderr: string }> {
  return new Promise((res, rej) => {
    execFile(
      cmd,
      args,
      { env: opts.env, timeout: opts.timeoutMs, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
      (err, stdout, stderr) => {
        if (err) {
          const e = err as Error & { killed?: boolean };
          rej(
            new Error(
              `${cmd} ${args.join(' ')}: ${e.killed ? `timed out after ${opts.timeoutMs} ms` : e.message}` +
                (stderr ? `\n${String(stderr).trim()}` : ''),
            ),
          );
        } else res({ stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Parse the `export K='V'` lines that soundcard.sh writes to DIR/env. */
function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const m = /^export ([A-Za-z_][A-Za-z0-9_]*)=(?:'([^']*)'|"([^"]*)"|(\S*))\s*$/.exec(line.trim());
    if (m) out[m[1]] = m[2] ?? m[3] ?? m[4] ?? '';
  }
  return out;
}

/** Wait for a child to exit; SIGKILL it after timeoutMs. Resolves with its exit code (null if signalled). */
function waitExit(child: ChildProcess, timeoutMs: number): Promise<number | null> {
  return new Promise((res) => {
    if (child.exitCode !== null || child.signalCode !== null) return res(child.exitCode);
    const t = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('close', (code) => {
      clearTimeout(t);
      res(code);
    });
  });
}

export interface SinkRecorder {
  /**
   * Wall-clock (Date.now()) estimate of when byte 0 was recorded: the spawn
   * time until data arrives, then the minimum over received chunks of
   * (arrival time - duration of all bytes up to that chunk's end). Late by at
   * most parec's smallest delivery delay (a few ms), so `startedAt + ms` maps a
   * position in the recording to wall-clock time.
   */
  readonly startedAt: number;
  /**
   * Resolves once parec delivers its first bytes (it is connected and
   * recording), or after timeoutMs whatever happened: under load, spawning
   * parec can take longer than a reply takes to start.
   */
  ready(timeoutMs?: number): Promise<void>;
  /** Stops recording; resolves with every byte recorded (mono s16le at the device's rate) once the process has ended. */
  stop(): Promise<Buffer>;
}

export class SoundCard {
  readonly dir: string;
  /** process.env plus PULSE_SERVER and ALSA_CONFIG_PATH: give it to every child that must use this card. */
  readonly env: NodeJS.ProcessEnv;
  /** The variables soundcard.sh wrote to DIR/env (PULSE_SERVER, ALSA_CONFIG_PATH). */
  readonly cardEnv: Readonly<Record<string, string>>;
  private readonly ownsDir: boolean;
  private readonly children = new Set<ChildProcess>();
  private readonly sayCache = new Map<string, Promise<Buffer>>();
  private stopped = false;

  private constructor(dir: string, cardEnv: Record<string, string>, ownsDir: boolean) {
    this.dir = dir;
    this.cardEnv = cardEnv;
    this.env = { ...process.env, ...cardEnv };
    this.ownsDir = ownsDir;
  }

  /**
   * Starts (idempotently) the card in `dir` (default: a fresh temp dir, removed
   * by stop()). Resolves once `pactl info` answers.
   */
  static async start(dir?: string): Promise<SoundCard> {
    const ownsDir = dir === undefined;
    const d = resolve(dir ?? mkdtempSync(join(tmpdir(), 'soundcard-')));
    await mkdir(d, { recursive: true });
    try {
      await run('bash', [scriptPath(), 'start', d], { timeoutMs: 20_000 });
    } catch (e) {
      if (ownsDir) await rm(d, { recursive: true, force: true });
      throw e;
    }
    const cardEnv = parseEnvFile(await readFile(join(d, 'env'), 'utf8'));
    if (!cardEnv.PULSE_SERVER || !cardEnv.ALSA_CONFIG_PATH) {
      throw new Error(`soundcard: ${join(d, 'env')} lacks PULSE_SERVER or ALSA_CONFIG_PATH`);
    }
    const card = new SoundCard(d, cardEnv, ownsDir);
    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await run('pactl', ['info'], { env: card.env, timeoutMs: 3000 });
        return card;
      } catch (e) {
        if (Date.now() > deadline) {
          await card.stop().catch(() => undefined);
          throw new Error(`soundcard: pactl info does not answer in ${d}: ${(e as Error).message}`);
        }
        await sleep(50);
      }
    }
  }

  /** espeak-ng speech as 16 kHz mono s16le raw PCM, cached by text in dir. */
  say(text: string): Promise<Buffer> {
    let p = this.sayCache.get(text);
    if (!p) {
      p = this.synthesize(text);
      this.sayCache.set(text, p);
      p.catch(() => this.sayCache.delete(text));
    }
    return p;
  }

  private async synthesize(text: string): Promise<Buffer> {
    const key = createHash('sha1').update(text).digest('hex').slice(0, 16);
    const raw = join(this.dir, `say-${key}.raw`);
    try {
      return await readFile(raw);
    } catch {
      /* not cached yet */
    }
    const wav = join(this.dir, `say-${key}.${process.pid}.wav`);
    const tmp = `${raw}.${process.pid}.tmp`;
    try {
      await run('espeak-ng', ['-w', wav, '--', text], { timeoutMs: 30_000 });
      await run('sox', [wav, '-r', String(ROOM_RATE), '-c', '1', '-b', '16', '-e', 'signed-integer', '-t', 'raw', tmp], {
        timeoutMs: 30_000,
      });
      await rename(tmp, raw);
    } finally {
      await rm(wav, { force: true });
      await rm(tmp, { force: true });
    }
    return readFile(raw);
  }

  /**
   * Plays 16 kHz mono s16le PCM into the room (what ALSA `default` captures),
   * in real time. Resolves when pacat has drained it. startedAt: pacat spawned
   * (the first sample is in the room ~5-20 ms later); endedAt: pacat exited.
   * pacat keeps 200 ms queued in the server: with 40 ms, a loaded machine
   * starved it into underruns, i.e. gaps in the speech (seen here).
   */
  playIntoRoom(pcm16k: Buffer): Promise<{ startedAt: number; endedAt: number }> {
    this.assertRunning();
    const durationMs = (pcm16k.length / 2 / ROOM_RATE) * 1000;
    const child = spawn(
      'pacat',
      ['--playback', '--device=room', '--raw', `--rate=${ROOM_RATE}`, '--channels=1', '--format=s16le', '--latency-msec=200'],
      { env: this.env, stdio: ['pipe', 'ignore', 'pipe'] },
    );
    const startedAt = Date.now();
    this.track(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.stdin!.on('error', () => undefined); // reported through the exit code
    child.stdin!.end(pcm16k);
    return new Promise((res, rej) => {
      const timeoutMs = durationMs + 10_000;
      const t = setTimeout(() => {
        child.kill('SIGKILL');
        rej(new Error(`playIntoRoom: pacat did not finish ${durationMs.toFixed(0)} ms of audio within ${timeoutMs} ms`));
      }, timeoutMs);
      child.once('error', (e) => {
        clearTimeout(t);
        rej(new Error(`playIntoRoom: cannot run pacat: ${e.message}`));
      });
      child.once('close', (code, signal) => {
        clearTimeout(t);
        if (code === 0) res({ startedAt, endedAt: Date.now() });
        else rej(new Error(`playIntoRoom: pacat exited with ${code ?? signal}: ${stderr.trim()}`));
      });
    });
  }

  /** Records what the speaker plays (spk.monitor, 24 kHz mono s16le) until stop(). */
  recordSpeaker(): SinkRecorder {
    return this.record('spk.monitor', SPK_RATE);
  }

  /**
   * Records what is in the room (room.monitor, 16 kHz mono s16le) until stop():
   * what the microphone is given, glitches of the simulated card included.
   */
  recordRoom(): SinkRecorder {
    return this.record('room.monitor', ROOM_RATE);
  }

  private record(device: string, rate: number): SinkRecorder {
    this.assertRunning();
    const child = spawn(
      'parec',
      [`--device=${device}`, '--raw', `--rate=${rate}`, '--channels=1', '--format=s16le', '--latency-msec=20'],
      { env: this.env, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const spawnedAt = Date.now();
    this.track(child);
    const chunks: Buffer[] = [];
    let bytes = 0;
    let byte0At = Infinity;
    let stderr = '';
    let spawnError: Error | undefined;
    let recording!: () => void;
    const firstData = new Promise<void>((res) => (recording = res));
    child.once('exit', () => recording());
    child.stdout!.on('data', (d: Buffer) => {
      recording();
      chunks.push(d);
      bytes += d.length;
      byte0At = Math.min(byte0At, Date.now() - (bytes / 2 / rate) * 1000);
    });
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('error', (e) => (spawnError = e));
    let stopping: Promise<Buffer> | undefined;
    return {
      get startedAt() {
        return Number.isFinite(byte0At) ? Math.round(byte0At) : spawnedAt;
      },
      ready: (timeoutMs = 5000) => {
        let t: NodeJS.Timeout | undefined;
        return Promise.race([firstData, new Promise<void>((res) => (t = setTimeout(res, timeoutMs)))]).finally(() => clearTimeout(t));
      },
      stop: () => {
        stopping ??= (async () => {
          if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
          await waitExit(child, 3000);
          if (spawnError) throw new Error(`record ${device}: cannot run parec: ${spawnError.message}`);
          const all = Buffer.concat(chunks);
          if (all.length === 0 && stderr.trim()) throw new Error(`record ${device}: parec: ${stderr.trim()}`);
          return all.subarray(0, all.length - (all.length % 2));
        })();
        return stopping;
      },
    };
  }

  /** Kills children this card started, stops the daemon, removes dir if start() created it. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    for (const c of this.children) {
      if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    }
    await Promise.all([...this.children].map((c) => waitExit(c, 2000)));
    await run('bash', [scriptPath(), 'stop', this.dir], { timeoutMs: 10_000 });
    if (this.ownsDir) await rm(this.dir, { recursive: true, force: true });
  }

  private track(child: ChildProcess): void {
    this.children.add(child);
    child.once('close', () => this.children.delete(child));
  }

  private assertRunning(): void {
    if (this.stopped) throw new Error('soundcard: already stopped');
  }
}

// ---------------------------------------------------------------------------
// Analysis helpers (local on purpose: no dependency on src/).

function samplesOf(pcm: Buffer): Int16Array {
  const n = pcm.length >> 1;
  // Copy when unaligned: Int16Array views need an even byteOffset.
  if (pcm.byteOffset % 2 === 0) return new Int16Array(pcm.buffer, pcm.byteOffset, n);
  const copy = Buffer.from(pcm.subarray(0, n * 2));
  return new Int16Array(copy.buffer, copy.byteOffset, n);
}

/**
 * Where a sine tone of freqHz is present in 24 kHz mono s16le PCM, scanned in
 * blockMs blocks with a Goertzel detector. A block counts when its RMS is at
 * least 1% of full scale and at least half of its energy is at freqHz.
 * firstMs: start of the first such block; lastMs: end of the last one;
 * totalMs: number of such blocks * blockMs.
 */
export function findTone(
  pcm24k: Buffer,
  freqHz: number,
  blockMs = 20,
): { firstMs: number | null; lastMs: number | null; totalMs: number } {
  const x = samplesOf(pcm24k);
  const n = Math.max(1, Math.round((SPK_RATE * blockMs) / 1000));
  const coeff = 2 * Math.cos((2 * Math.PI * freqHz) / SPK_RATE);
  const minRms = 0.01 * 32768;
  let first: number | null = null;
  let last: number | null = null;
  let count = 0;
  for (let b = 0; (b + 1) * n <= x.length; b++) {
    let s1 = 0;
    let s2 = 0;
    let energy = 0;
    for (let i = b * n, end = i + n; i < end; i++) {
      const v = x[i];
      energy += v * v;
      const s0 = v + coeff * s1 - s2;
      s2 = s1;
      s1 = s0;
    }
    if (Math.sqrt(energy / n) < minRms) continue;
    const power = s1 * s1 + s2 * s2 - coeff * s1 * s2; // |X(f)|^2
    // A pure sine of amplitude A: |X|^2 ~ (A n / 2)^2 and energy ~ A^2 n / 2, so the ratio is ~1.
    const ratio = power / ((energy * n) / 2);
    if (ratio < 0.5) continue;
    if (first === null) first = b;
    last = b;
    count++;
  }
  return {
    firstMs: first === null ? null : first * blockMs,
    lastMs: last === null ? null : (last + 1) * blockMs,
    totalMs: count * blockMs,
  };
}

const ONSET_WINDOW_MS = 300;
const DECIMATE = 8;

/**
 * Normalised cross-correlation of `nd` at each of `positions` in `h`, stored
 * into `out` (0 where the haystack window is silent).
 */
function nccAll(h: Float64Array, nd: Float64Array, positions: Iterable<number>, out: Map<number, number>): void {
  const m = nd.length;
  let nn = 0;
  for (let i = 0; i < m; i++) nn += nd[i] * nd[i];
  for (const p of positions) {
    if (p < 0 || p + m > h.length || out.has(p)) continue;
    let dot = 0;
    let hh = 0;
    for (let i = 0; i < m; i++) {
      const v = h[p + i];
      dot += v * nd[i];
      hh += v * v;
    }
    out.set(p, hh > 0 && nn > 0 ? dot / Math.sqrt(hh * nn) : 0);
  }
}

function decimate(x: Int16Array, f: number): Float64Array {
  const out = new Float64Array(Math.floor(x.length / f));
  for (let j = 0; j < out.length; j++) {
    let s = 0;
    for (let k = 0; k < f; k++) s += x[j * f + k];
    out[j] = s / f;
  }
  return out;
}

/** First sample of speech in 16 kHz PCM: start of the first 5 ms block louder than 5% of the loudest block. */
function speechOnset(x: Int16Array): number | null {
  const n = 80;
  const rms: number[] = [];
  for (let b = 0; (b + 1) * n <= x.length; b++) {
    let e = 0;
    for (let i = b * n; i < (b + 1) * n; i++) e += x[i] * x[i];
    rms.push(Math.sqrt(e / n));
  }
  let peak = 0;
  for (const r of rms) if (r > peak) peak = r;
  const thr = Math.max(100, 0.05 * peak);
  const b = rms.findIndex((r) => r >= thr);
  return b < 0 ? null : b * n;
}

/**
 * Finds where the first 300 ms of speech in `needle16k` (its leading silence
 * skipped) best matches inside `haystack16k` (both 16 kHz mono s16le), by
 * normalised cross-correlation: coarse search on 8x decimated signals, then a
 * full-rate search around the best coarse candidates.
 * offsetBytes: haystack byte offset where the needle's speech onset sits;
 * needleOnsetBytes: byte offset of that onset inside the needle (so the
 * needle's byte 0 sits at offsetBytes - needleOnsetBytes); correlation: the
 * full-rate ncc there (1 = identical). null when the needle has no speech or
 * the haystack is shorter than the window.
 */
export function findOnset(
  haystack16k: Buffer,
  needle16k: Buffer,
): { offsetBytes: number; correlation: number; needleOnsetBytes: number } | null {
  const hx = samplesOf(haystack16k);
  const nx = samplesOf(needle16k);
  const onset = speechOnset(nx);
  if (onset === null) return null;
  const m = Math.min((ROOM_RATE * ONSET_WINDOW_MS) / 1000, nx.length - onset);
  if (m < DECIMATE * 4 || hx.length < m) return null;
  const win = nx.subarray(onset, onset + m);

  // Coarse: every position of the decimated signals.
  const hc = decimate(hx, DECIMATE);
  const nc = decimate(win, DECIMATE);
  const coarse = new Map<number, number>();
  const all: number[] = [];
  for (let p = 0; p + nc.length <= hc.length; p++) all.push(p);
  nccAll(hc, nc, all, coarse);
  // Up to 5 best coarse peaks, at least 4 coarse steps apart.
  const ranked = [...coarse.entries()].sort((a, b) => b[1] - a[1]);
  const picks: number[] = [];
  for (const [p] of ranked) {
    if (picks.length >= 5) break;
    if (picks.every((q) => Math.abs(q - p) >= 4)) picks.push(p);
  }

  // Fine: full rate, +-2 coarse steps around each pick.
  const h = Float64Array.from(hx);
  const nd = Float64Array.from(win);
  const fine = new Map<number, number>();
  for (const p of picks) {
    const c = p * DECIMATE;
    const around: number[] = [];
    for (let q = c - 2 * DECIMATE; q <= c + 2 * DECIMATE; q++) around.push(q);
    nccAll(h, nd, around, fine);
  }
  let best = -1;
  let bestC = -Infinity;
  for (const [p, c] of fine) {
    if (c > bestC) {
      bestC = c;
      best = p;
    }
  }
  if (best < 0) return null;
  return { offsetBytes: best * 2, correlation: bestC, needleOnsetBytes: onset * 2 };
}

/**
 * How well the whole of `said` is in `heard` (both 16 kHz mono s16le): the
 * normalised correlation of every sample of `said` against `heard`, aligned
 * where findOnset puts its onset. 1 = every sample, in order; a missing,
 * damaged or stretched part pulls it down. 0 when the onset is not found.
 */
export function wholeCorrelation(heard16k: Buffer, said16k: Buffer): number {
  const hit = findOnset(heard16k, said16k);
  if (!hit) return 0;
  const start = hit.offsetBytes - hit.needleOnsetBytes;
  const a = said16k.subarray(Math.max(0, -start));
  const b = heard16k.subarray(Math.max(0, start), Math.max(0, start) + a.length);
  let ab = 0, aa = 0, bb = 0;
  for (let i = 0; i + 1 < Math.min(a.length, b.length); i += 2) {
    const x = a.readInt16LE(i), y = b.readInt16LE(i);
    ab += x * y; aa += x * x; bb += y * y;
  }
  // Counted over the whole of `said`: a `heard` that ends early is missing that much.
  for (let i = b.length; i + 1 < a.length; i += 2) aa += a.readInt16LE(i) ** 2;
  return ab / Math.sqrt(aa * bb || 1);
}

/** RMS of each 20 ms window of 16 kHz mono s16le, one window per ms (so no block phase decides). */
function windowRms(pcm16k: Buffer): Float64Array {
  const x = samplesOf(pcm16k);
  const w = 320;
  const hop = 16;
  const n = x.length >= w ? Math.floor((x.length - w) / hop) + 1 : 0;
  const out = new Float64Array(n);
  let e = 0;
  for (let i = 0; i < Math.min(w, x.length); i++) e += x[i] * x[i];
  for (let k = 0; k < n; k++) {
    out[k] = Math.sqrt(Math.max(0, e) / w);
    for (let i = k * hop; i < (k + 1) * hop && i + w < x.length; i++) e += x[i + w] * x[i + w] - x[i] * x[i];
  }
  return out;
}

/**
 * Milliseconds of speech in 16 kHz mono s16le: how many 1 ms steps of a
 * 20 ms window have an RMS of at least `minRms`. Give two recordings the same
 * `minRms` (e.g. a tenth of speechPeakRms of the one said) to compare them.
 */
export function speechMs(pcm16k: Buffer, minRms: number): number {
  let count = 0;
  for (const r of windowRms(pcm16k)) if (r >= minRms) count++;
  return count;
}

/** RMS of the loudest 20 ms window of 16 kHz mono s16le. */
export function speechPeakRms(pcm16k: Buffer): number {
  let peak = 0;
  for (const r of windowRms(pcm16k)) if (r > peak) peak = r;
  return peak;
}

/**
 * The best normalised cross-correlation of the whole of `needle` inside
 * `haystack` (same rate, s16le), trying every sample offset in
 * [fromSample, toSample]. at: that offset in samples; ncc: 1 = identical.
 */
export function bestMatch(haystack: Buffer, needle: Buffer, fromSample: number, toSample: number): { at: number; ncc: number } {
  const h = samplesOf(haystack);
  const nd = samplesOf(needle);
  let nn = 0;
  for (let i = 0; i < nd.length; i++) nn += nd[i] * nd[i];
  let best = { at: -1, ncc: 0 };
  for (let p = Math.max(0, fromSample); p <= Math.min(toSample, h.length - nd.length); p++) {
    let dot = 0, hh = 0;
    for (let i = 0; i < nd.length; i++) { const v = h[p + i]; dot += v * nd[i]; hh += v * v; }
    const c = hh > 0 && nn > 0 ? dot / Math.sqrt(hh * nn) : 0;
    if (c > best.ncc) best = { at: p, ncc: c };
  }
  return best;
}
