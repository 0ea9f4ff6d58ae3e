// The simulated sound card works through the real parts: real arecord and the
// real `speaker` addon over real ALSA, paced by a private PulseAudio.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SoundCard, findOnset, findTone } from './bench/soundcard.js';

const require = createRequire(import.meta.url);

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  return Promise.race([
    p,
    new Promise<never>((_, rej) => {
      t = setTimeout(() => rej(new Error(`${what}: no result within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(t));
}

function exited(child: ChildProcess, ms: number, what: string): Promise<number | null> {
  return withTimeout(
    new Promise<number | null>((res, rej) => {
      if (child.exitCode !== null || child.signalCode !== null) return res(child.exitCode);
      child.once('error', rej);
      child.once('close', (code) => res(code));
    }),
    ms,
    what,
  ).catch((e: unknown) => {
    child.kill('SIGKILL');
    throw e;
  });
}

/** A sine tone as s16le mono. */
function tone(freq: number, ms: number, rate: number, amp = 0.3): Buffer {
  const n = Math.round((rate * ms) / 1000);
  const b = Buffer.alloc(n * 2);
  for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(amp * 32767 * Math.sin((2 * Math.PI * freq * i) / rate)), i * 2);
  return b;
}

describe('soundcard (simulated sound card through real ALSA)', { timeout: 180_000 }, () => {
  let card: SoundCard | undefined;
  const running: ChildProcess[] = [];

  before(async () => {
    card = await withTimeout(SoundCard.start(), 30_000, 'SoundCard.start');
  });

  after(async () => {
    for (const c of running) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await card?.stop();
  });

  it('analysis helpers: findTone tells 440 Hz from 660 Hz, findOnset finds an exact copy', { timeout: 20_000 }, async () => {
    const pcm = Buffer.concat([tone(0, 200, 24000), tone(440, 1000, 24000), tone(660, 500, 24000), tone(0, 300, 24000)]);
    const a = findTone(pcm, 440);
    assert.equal(a.firstMs, 200);
    assert.equal(a.lastMs, 1200);
    assert.equal(a.totalMs, 1000);
    const b = findTone(pcm, 660);
    assert.equal(b.firstMs, 1200);
    assert.equal(b.totalMs, 500);
    assert.equal(findTone(tone(0, 1000, 24000), 440).firstMs, null);

    const speech = await withTimeout(card!.say('hey jarvis, what time is it'), 15_000, 'say');
    assert.ok(speech.length > 16000, 'espeak-ng produced speech');
    assert.equal(await card!.say('hey jarvis, what time is it'), speech, 'cached');
    // ~10 s haystack: noise, the speech at a known place, noise.
    let seed = 1;
    const noise = (ms: number) => {
      const b = Buffer.alloc(Math.round(16 * ms) * 2);
      for (let i = 0; i < b.length; i += 2) {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        b.writeInt16LE(((seed >> 8) % 600) - 300, i);
      }
      return b;
    };
    const lead = noise(6000);
    const hay = Buffer.concat([lead, speech, noise(10_000 - 6000 - speech.length / 32)]);
    const t0 = performance.now();
    const found = findOnset(hay, speech);
    const ms = performance.now() - t0;
    assert.ok(found);
    assert.equal(found.offsetBytes - found.needleOnsetBytes, lead.length);
    assert.ok(found.correlation > 0.99, `correlation ${found.correlation}`);
    console.log(`# findOnset on a ${(hay.length / 32000).toFixed(1)} s haystack: ${ms.toFixed(0)} ms`);
    assert.ok(ms < 5000, `findOnset took ${ms} ms`);
  });

  it('real arecord on ALSA default hears speech played into the room', { timeout: 30_000 }, async () => {
    const speech = await withTimeout(card!.say('hey jarvis, what time is it'), 15_000, 'say');
    const rec = spawn('arecord', ['-D', 'default', '-f', 'S16_LE', '-r', '16000', '-c', '1', '-t', 'raw', '-q'], {
      env: card!.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.push(rec);
    const spawnedAt = Date.now();
    const chunks: Buffer[] = [];
    const arrivals: { end: number; at: number }[] = [];
    let total = 0;
    let stderr = '';
    let firstData: () => void = () => undefined;
    const gotData = new Promise<void>((r) => (firstData = r));
    rec.stdout.on('data', (d: Buffer) => {
      chunks.push(d);
      total += d.length;
      arrivals.push({ end: total, at: Date.now() });
      firstData();
    });
    rec.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    await withTimeout(gotData, 5000, `arecord produced no data (${stderr.trim()})`);
    const firstDataMs = Date.now() - spawnedAt;

    const played = await card!.playIntoRoom(speech);
    await new Promise((r) => setTimeout(r, 400));
    rec.kill('SIGINT');
    await exited(rec, 5000, 'arecord exit');
    const heard = Buffer.concat(chunks);

    const found = findOnset(heard, speech);
    assert.ok(found, 'speech found in the recording');
    assert.ok(found.correlation > 0.9, `correlation ${found.correlation.toFixed(3)}; arecord: ${stderr.trim()}`);
    // Latency: when the onset's bytes reached this process, against when the
    // onset was played into the room (pacat start + the needle's own lead-in).
    const arrival = arrivals.find((a) => a.end > found.offsetBytes)!.at;
    const inRoom = played.startedAt + found.needleOnsetBytes / 32;
    const latency = arrival - inRoom;
    const chunkMs = (arrivals.length > 2 ? (arrivals[2].end - arrivals[1].end) / 32 : NaN).toFixed(0);
    console.log(
      `# arecord: first data ${firstDataMs} ms after spawn, chunks of ~${chunkMs} ms; ` +
        `speech onset reached node ${latency} ms after pacat started playing it; ` +
        `correlation ${found.correlation.toFixed(4)}; ` +
        `pacat took ${played.endedAt - played.startedAt} ms for ${(speech.length / 32).toFixed(0)} ms of audio`,
    );
    assert.ok(latency > 0 && latency < 1500, `capture latency ${latency} ms`);
  });

  it('the real speaker addon on ALSA default plays into spk, heard on spk.monitor', { timeout: 30_000 }, async () => {
    const speakerPath = require.resolve('speaker');
    const script = `
      const Speaker = require(${JSON.stringify(speakerPath)});
      const rate = 24000, n = rate;
      const b = Buffer.alloc(n * 2);
      for (let i = 0; i < n; i++) b.writeInt16LE(Math.round(0.3 * 32767 * Math.sin(2 * Math.PI * 440 * i / rate)), i * 2);
      const s = new Speaker({ channels: 1, bitDepth: 16, sampleRate: rate, signed: true });
      const t = { start: Date.now() };
      s.once('open', () => { t.open = Date.now(); });
      s.once('close', () => { t.close = Date.now(); console.log(JSON.stringify(t)); process.exit(0); });
      s.once('error', (e) => { console.error(String(e)); process.exit(1); });
      s.end(b);
    `;
    const recorder = card!.recordSpeaker();
    await new Promise((r) => setTimeout(r, 200));
    const child = spawn(process.execPath, ['-e', script], { env: card!.env, stdio: ['ignore', 'pipe', 'pipe'] });
    running.push(child);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    const code = await exited(child, 15_000, 'speaker child');
    assert.equal(code, 0, `speaker child failed: ${err}`);
    await new Promise((r) => setTimeout(r, 300));
    const heard = await withTimeout(recorder.stop(), 5000, 'recorder.stop');

    const t = JSON.parse(out.trim().split('\n').pop()!) as { start: number; open: number; close: number };
    const f = findTone(heard, 440);
    assert.ok(f.totalMs >= 800 && f.totalMs <= 1200, `440 Hz heard for ${f.totalMs} ms`);
    assert.equal(findTone(heard, 660).totalMs, 0, 'no 660 Hz');
    const onsetAt = recorder.startedAt + f.firstMs!;
    const endAt = recorder.startedAt + f.lastMs!;
    console.log(
      `# speaker: 440 Hz heard for ${f.totalMs} ms; tone reached spk ${onsetAt - t.start} ms after the write ` +
        `(open took ${t.open - t.start} ms); close() fired ${t.close - endAt} ms after the tone ended on spk ` +
        `(whole play ${t.close - t.start} ms for 1000 ms of audio)`,
    );
  });

  it('is paced in real time', { timeout: 30_000 }, async () => {
    const played = await card!.playIntoRoom(tone(0, 2000, 16000));
    const wall = played.endedAt - played.startedAt;
    console.log(`# pacat: 2000 ms of audio took ${wall} ms`);
    // Not faster than real time (the unpaced ALSA file plugin takes a few ms), and not far slower
    // (pacat's 200 ms queue drains after the last sample: 2.0-2.4 s here).
    assert.ok(wall >= 1800, `2 s played in ${wall} ms`);
    assert.ok(wall < 3000, `2 s played in ${wall} ms`);

    const t0 = Date.now();
    const rec = spawn('arecord', ['-D', 'default', '-f', 'S16_LE', '-r', '16000', '-c', '1', '-t', 'raw', '-q', '-d', '1'], {
      env: card!.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.push(rec);
    let bytes = 0;
    rec.stdout.on('data', (d: Buffer) => (bytes += d.length));
    assert.equal(await exited(rec, 10_000, 'arecord -d 1'), 0);
    const took = Date.now() - t0;
    console.log(`# arecord -d 1: ${bytes} bytes in ${took} ms`);
    assert.equal(bytes, 32000);
    assert.ok(took >= 900 && took < 2000, `1 s recorded in ${took} ms`);
  });

  it('start and stop are idempotent, also with a stale socket', { timeout: 60_000 }, async () => {
    const dir = mkdtempSync(join(tmpdir(), 'soundcard-idem-'));
    try {
      const a = await SoundCard.start(dir);
      const b = await SoundCard.start(dir); // already running: same daemon
      assert.equal(a.env.PULSE_SERVER, b.env.PULSE_SERVER);
      await b.stop();
      await a.stop(); // already stopped: fine
      const c = await SoundCard.start(dir); // again after stop
      // Daemon dies hard: pid file and socket stay behind.
      const pid = Number(readFileSync(join(dir, 'pid'), 'utf8').trim());
      process.kill(pid, 'SIGKILL');
      for (let i = 0; i < 100 && existsSync(`/proc/${pid}`); i++) await new Promise((r) => setTimeout(r, 20));
      assert.ok(existsSync(join(dir, 'native')), 'stale socket left behind');
      const d = await SoundCard.start(dir);
      await d.stop();
      await c.stop();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
