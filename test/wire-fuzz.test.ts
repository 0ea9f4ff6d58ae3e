// Fuzz at the Live API border (issue 25): mutations of the frames the
// emulator really sends (wrong types, nulls, missing and extra fields, huge
// and odd-length audio, deep nesting), broken JSON and random bytes, fed
// through the real SDK to ONE built daemon across many conversations. Pass:
// it never dies, its memory stays bounded, each bad input is logged (frames
// that are not JSON objects exactly once each; items no more often than the
// mutations could have made them) and a normal press still gets its reply.
// Seeded (FUZZ_SEED) and bounded in time (FUZZ_MS): a failure names its seed.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard, findTone } from './bench/soundcard.js';
import { startWithEmulator, type DaemonProcess } from './bench/daemon.js';
import { rssMiB } from './bench/util.js';
import { brokenJson, int, junkBytes, mutateN, pick, rng } from './bench/fuzz.js';
import type { EmulatedSession } from '../src/emulator/emulator.js';
import { tone } from '../src/audio/pcm.js';
import { MAX_DROP_LINES } from '../src/live/server-message.js';

const SEED = Number(process.env.FUZZ_SEED ?? 2025);
const BUDGET_MS = Number(process.env.FUZZ_MS ?? 40_000);
/** Bad frames per connection: fewer than the daemon's log cap allows for (up to 3 lines each), so every one is logged. */
const CASES_PER_SESSION = Math.floor(MAX_DROP_LINES / 3) - 1;
/**
 * Growth of the daemon's resident memory that passes, from the 20th fuzzed
 * conversation (V8 has sized its heap for the 1 MB frames by then) to the
 * end. Measured (seed 2025, 40 s, ~100 conversations): 103-110 MiB after the
 * warm-up, 123-125 after 10, 145-147 after 20, then 138-156 to the end (heap
 * used 24-46 MiB, no trend); a leak of 1 MB per conversation would add ~80.
 */
const RSS_GROWTH_MAX_MIB = 32;
const RSS_BASELINE_AT = 20;

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });


/** Lines saying a bad input was dropped, by kind. */
const DROP_MSGS = {
  frame: 'ignored a malformed message from the Live API',
  item: 'dropped a malformed item of a Live API message',
  mime: 'ignoring reply data that is not 24 kHz PCM audio',
  odd: 'reply audio with an odd byte count; its last byte dropped',
  text: 'transcript of this turn too long; the rest of it is not kept',
};
const count = (d: DaemonProcess, msg: string) => d.logs.filter((l) => l.msg === msg).length;

/** Whether the daemon can take this frame as an object at all (else exactly one 'ignored a malformed message' line). */
function objectFrame(f: string | Buffer): boolean {
  try { const v = JSON.parse(f.toString()); return v !== null && typeof v === 'object' && !Array.isArray(v) && !Object.hasOwn(v, 'text') && !Object.hasOwn(v, 'data'); } catch { return false; }
}

test(`fuzz: mutated, broken and random server frames through the SDK to one daemon (seed ${SEED}, ${BUDGET_MS / 1000} s)`, async () => {
  const r = rng(SEED);
  const samples = new Map<string, object>(); // one real frame per shape, recorded from the emulator's normal output
  const shape = (m: any) => Object.keys(m).map((k) => (k === 'serverContent' ? `${k}.${Object.keys(m[k]).join('.')}` : k)).join(',');
  let fuzzing = false;
  const perSession = new Map<number, number>();
  const stats = { cases: 0, mutants: 0, rounds: 0, broken: 0, junk: 0, notObject: 0, hugeAudio: 0, oddAudio: 0, tooDeep: 0 };
  /** One bad frame (as sent: text or bytes), and how many mutation rounds made it. */
  const badFrame = (m: object): { frame: string | Buffer; rounds: number } => {
    const k = int(r, 20);
    if (k === 0) { stats.junk++; return { frame: junkBytes(r), rounds: 0 }; }
    if (k === 1) { stats.broken++; return { frame: brokenJson(r, m), rounds: 0 }; }
    if (k === 2) { // audio over the 10 s part cap, valid base64
      stats.hugeAudio++;
      return { frame: JSON.stringify({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: 'audio/pcm;rate=24000', data: Buffer.alloc(480_002 + 2 * int(r, 1000)).toString('base64') } }] } } }), rounds: 1 };
    }
    if (k === 3) { // odd-length audio, otherwise fine
      stats.oddAudio++;
      return { frame: JSON.stringify({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: 'audio/pcm;rate=24000', data: Buffer.alloc(2 * int(r, 500) + 1).toString('base64') } }] } } }), rounds: 1 };
    }
    const base = r() < 0.5 ? m : pick(r, [...samples.values()]);
    // mutateN's rounds one by one: fuzz.ts clones with structuredClone, which overflows the stack on a value a
    // round before nested thousands deep; the rounds stop there.
    let mutant: unknown = base;
    let rounds = 0;
    for (const want = 1 + int(r, 3); rounds < want; rounds++) {
      try { mutant = mutateN(r, mutant, 1); } catch (e) { if (e instanceof RangeError) break; throw e; }
    }
    stats.mutants++;
    stats.rounds += rounds;
    try { return { frame: JSON.stringify(mutant) ?? '', rounds }; } catch (e) {
      // Nested deeper than JSON.stringify can go (deep() of deep()): the same depth, written out.
      if (!(e instanceof RangeError)) throw e;
      stats.tooDeep++;
      const n = 20_000;
      return { frame: `{"serverContent":{"modelTurn":{"parts":${'['.repeat(n)}${']'.repeat(n)}}}}`, rounds };
    }
  };
  let maxLinesFromCases = 0; // the most drop lines the cases so far can justify
  const { emu, daemon, done } = await startWithEmulator({
    mode: 'scripted',
    replySpeed: Infinity,
    serverFrames: (m, s) => {
      if (!fuzzing) { samples.set(shape(m), m); return [m]; }
      const out: (object | string | Buffer)[] = [];
      const n = r() < 0.6 ? 1 + int(r, 2) : 0;
      for (let i = 0; i < n && (perSession.get(s.id) ?? 0) < CASES_PER_SESSION; i++) {
        perSession.set(s.id, (perSession.get(s.id) ?? 0) + 1);
        const { frame, rounds } = badFrame(m);
        stats.cases++;
        if (!objectFrame(frame)) stats.notObject++;
        else maxLinesFromCases += 3 * rounds; // one round can spoil up to 3 items (a list replaced by 1-3 odd values)
        out.push(frame);
      }
      return [...out, m];
    },
  }, { live: { connect_timeout_s: 3 }, log: { transcripts: true }, conversation: { follow_up_s: 1, error_display_s: 1, no_speech_timeout_s: 3 } }, card.env);

  /** End whatever the daemon is doing and come back to idle. */
  const toIdle = async () => {
    for (let i = 0; i < 20; i++) {
      const st = (await daemon.ctl('status')).state;
      if (st === 'idle') return;
      if (st !== 'error') await daemon.ctl('press'); // listening / follow-up / connecting: ends it; speaking: cuts the reply
      await sleep(150);
    }
    assert.fail(`not back to idle: ${JSON.stringify(daemon.logs.slice(-6))}`);
  };
  /** One conversation: a press, a reply (with its tool call and cancellation), then back to idle. */
  const converse = async () => {
    const opened = emu.waitFor('session', undefined, 5000);
    await daemon.ctl('press');
    const [s] = await opened as [EmulatedSession];
    s.toolCall([{ name: 'fuzz_probe', args: { n: 1 } }]);
    s.cancelToolCalls(['fc-none']);
    await s.sendAudio(tone(440, 120, 24000));
    await sleep(50);
    await toIdle();
  };

  try {
    // Warm-up: record the real frames (and check that none of them is dropped).
    await converse();
    assert.ok(samples.size >= 8, `shapes recorded: ${[...samples.keys()].join(' | ')}`);
    for (const msg of Object.values(DROP_MSGS)) assert.equal(count(daemon, msg), 0, `no real frame is dropped (${msg})`);
    const pid = daemon.child.pid!;
    const rssWarm = rssMiB(pid);
    let rss0 = NaN;
    const t0 = performance.now();
    fuzzing = true;
    let conversations = 0;
    const trajectory: number[][] = [];
    while (performance.now() - t0 < BUDGET_MS) {
      await converse();
      conversations++;
      if (conversations === RSS_BASELINE_AT) rss0 = rssMiB(pid);
      if (conversations % 10 === 0) { const m = (await daemon.ctl('status')).memoryMiB; trajectory.push([Math.round(rssMiB(pid)), Math.round(m?.heapUsed), Math.round(m?.external)]); }
      assert.equal(daemon.exitCode, null, `the daemon died (seed ${SEED}): ${daemon.stderr.slice(-2000)}`);
    }
    fuzzing = false;
    await sleep(500); // the last lines
    const rss1 = rssMiB(pid);

    // A normal press gets a normal reply, heard on the speaker.
    const sink = card.recordSpeaker();
    await sink.ready();
    const opened = emu.waitFor('session', undefined, 5000);
    await daemon.pressAndWait('listening'); // audio before the session is up on the daemon's side would be dropped, rightly
    const [s] = await opened as [EmulatedSession];
    const speaking = daemon.waitState('speaking', 5000);
    assert.equal(await s.sendAudio(tone(523, 600, 24000)), 'complete');
    await speaking;
    await daemon.waitState('follow-up', 5000);
    await sleep(200);
    const heard = findTone(await sink.stop(), 523).totalMs;
    assert.ok(heard > 450, `the reply after the fuzz was played: ${heard} ms of 600`);

    const lines = Object.fromEntries(Object.entries(DROP_MSGS).map(([k, msg]) => [k, count(daemon, msg)]));
    const itemLines = lines.item + lines.mime + lines.odd + lines.text;
    const fatal = daemon.logs.filter((l) => l.level === 'fatal');
    const capped = daemon.logs.filter((l) => /without a log line/.test(l.msg)).length;
    const report = { seed: SEED, conversations, ...stats, lines, rssMiB: [Math.round(rssWarm), Math.round(rss0), Math.round(rss1)], capped, trajectory };
    console.log(`# fuzz: ${JSON.stringify(report)}`);
    assert.deepEqual(fatal, [], 'nothing fatal');
    assert.equal(daemon.exitCode, null, 'the daemon is up');
    assert.ok(stats.cases >= 200, `enough cases ran: ${stats.cases}`);
    assert.equal(capped, 0, 'no connection hit the log cap: every bad input was logged');
    assert.equal(lines.frame, stats.notObject, 'each frame that is not a JSON object the SDK can take: exactly one line');
    assert.ok(itemLines > 0, 'bad items were logged');
    assert.ok(lines.odd >= stats.oddAudio, `each odd-length audio part was logged: ${lines.odd} lines for ${stats.oddAudio}`);
    assert.ok(lines.item >= stats.hugeAudio + stats.tooDeep, `each oversized audio part and each deep list was logged: ${lines.item} lines for ${stats.hugeAudio} + ${stats.tooDeep}`);
    assert.ok(itemLines <= maxLinesFromCases, `no more lines than bad items the mutations can have made: ${itemLines} > ${maxLinesFromCases}`);
    assert.ok(rss1 - rss0 < RSS_GROWTH_MAX_MIB, `memory bounded: RSS ${rss0.toFixed(1)} MiB after ${RSS_BASELINE_AT} conversations, ${rss1.toFixed(1)} at the end`);
  } finally { await done(); }
});
