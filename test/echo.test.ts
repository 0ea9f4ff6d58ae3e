// Echo cancellation end to end (issue 11): the daemon process with real
// arecord and the real speaker addon on the simulated card, the emulator
// over the real SDK, and an echo path: PulseAudio's module-loopback plays
// what the speaker says (spk.monitor) back into the room the mic hears, at
// 0 dB or -12 dB, with 30, 120 or 300 ms of path latency. The wake engine is
// the tone stand-in (Porcupine needs an online key); it runs in the daemon on
// whatever the echo stage hands on, so it hears the cancelled audio.
//
// The emulator's VAD is the judge of what was sent: echo that gets through
// is speech to it, and with START_OF_ACTIVITY_INTERRUPTS it interrupts the
// reply and answers the echo (issue 11 saw 27 replies to one question).
// LS_ECHO_CANCEL=off|on|auto overrides audio.echo_cancel for every test here,
// to show which bounds the wrong design fails; the control test at the end
// runs the room with echo cancellation off every time, so a broken echo
// path cannot make the other tests pass by hearing nothing. LS_ECHO_DUMP=PREFIX
// writes what the speaker played in each one-question room to PREFIX-<ms>.raw,
// what the server got (.sent.raw) and where its VAD heard speech (.json), and
// has the daemon's echo stage trace every mic chunk (.trace; the talk-over
// room's: PREFIX-talkover.trace).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard, wholeCorrelation } from './bench/soundcard.js';
import { DaemonProcess, deepMerge, startWithEmulator } from './bench/daemon.js';
import type { EmulatedSession, LiveEmulator } from '../src/emulator/emulator.js';
import { resample, tone } from '../src/audio/pcm.js';

const ECHO = (process.env.LS_ECHO_CANCEL ?? 'auto') as 'auto' | 'on' | 'off';
const FOLLOW_UP_S = 2;
/** The issue's bound: from the first sample of the user's speech in the room to the daemon acting on `interrupted`. */
const INTERRUPT_WITHIN_MS = 500;

let card: SoundCard;
let question: Buffer; // 16 kHz, said into the room
let talkOver: Buffer; // 16 kHz, said into the room over a reply
let answer: Buffer; // 24 kHz, the server's reply
let dense: Buffer; // 24 kHz, a reply with no pauses
let tonal: Buffer; // 24 kHz, a reply that is mostly one steady tone (see tonalReply)
const WAKE = tone(1000, 400, 16000, 0.3); // "jarvis"
/** The wake word said quietly: about -14 dB under the loudest of the reply's echo at 0 dB. */
const QUIET_WAKE = tone(1000, 400, 16000, 0.15);

before(async () => {
  card = await SoundCard.start();
  question = await card.say('what time is it');
  talkOver = await card.say('stop, stop, wait a moment please');
  const said = await card.say('It is ten past three in the afternoon. The weather today is sunny with a light breeze from the west, and tomorrow will be a little warmer.');
  answer = loud(resample(said, 16000, 24000));
  // Two voices at once, the second 350 ms behind: a reply with no pause a wake word could slip through unmasked.
  const a = resample(said, 16000, 24000);
  const b = Buffer.concat([Buffer.alloc(24 * 350 * 2), a]);
  const both = Buffer.alloc(b.length);
  for (let i = 0; i < b.length; i += 2) both.writeInt16LE(Math.max(-32768, Math.min(32767, (i < a.length ? a.readInt16LE(i) : 0) + b.readInt16LE(i))), i);
  dense = loud(both);
  tonal = tonalReply();
});

/**
 * A reply that is mostly tonal, as a chime, a timer's beeps or a sung answer are: a 200 ms marker tone (1000 Hz),
 * 3 s of a steady 600 Hz tone, a 200 ms marker (2000 Hz), at half scale (24 kHz). Periodic sound fits the echo at
 * every period: on it the delay estimator once wandered 43 -> 11 -> 2 -> 1199 ms within one reply (issue 25).
 */
function tonalReply(): Buffer {
  const part = (hz: number, ms: number) => tone(hz, ms, 24000, 0.5);
  return Buffer.concat([Buffer.alloc(24 * 100 * 2), part(1000, 200), part(600, 3000), part(2000, 200)]);
}
after(async () => { await card?.stop(); });

/** Speech brought to a 0.7 full-scale peak: a loud reply. */
function loud(pcm: Buffer): Buffer {
  let peak = 1;
  for (let i = 0; i < pcm.length; i += 2) peak = Math.max(peak, Math.abs(pcm.readInt16LE(i)));
  const g = (0.7 * 32767) / peak;
  const out = Buffer.alloc(pcm.length);
  for (let i = 0; i < pcm.length; i += 2) out.writeInt16LE(Math.round(pcm.readInt16LE(i) * g), i);
  return out;
}

/** The speaker audible in the room: a loopback spk.monitor -> room, `latencyMs` long, at `db`. Returns its unload. */
function echoPath(latencyMs: number, db: number): () => void {
  const env = card.env;
  const mod = execFileSync('pactl', ['load-module', 'module-loopback', 'source=spk.monitor', 'sink=room', `latency_msec=${latencyMs}`], { env, encoding: 'utf8' }).trim();
  // PulseAudio 16's module-loopback rejects volume=: set its sink input's level instead (shared/test-bench.md).
  const inputs = JSON.parse(execFileSync('pactl', ['-f', 'json', 'list', 'sink-inputs'], { env, encoding: 'utf8' })) as { index: number; owner_module: string }[];
  const input = inputs.find((i) => i.owner_module === mod);
  assert.ok(input, `the loopback's sink input (module ${mod})`);
  // An absolute raw volume (a leading '-' would make "-12dB" relative): PulseAudio's volume is cubic in amplitude.
  const raw = Math.round(65536 * Math.cbrt(10 ** (db / 20)));
  execFileSync('pactl', ['--', 'set-sink-input-volume', String(input.index), String(raw)], { env });
  const set = (JSON.parse(execFileSync('pactl', ['-f', 'json', 'list', 'sink-inputs'], { env, encoding: 'utf8' })) as { owner_module: string; volume: { mono: { db: string } } }[])
    .find((i) => i.owner_module === mod)!.volume.mono.db;
  assert.ok(Math.abs(parseFloat(set) - db) < 0.1, `the echo path is at ${set}, not ${db} dB`);
  return () => execFileSync('pactl', ['unload-module', mod], { env });
}

interface Run { emu: LiveEmulator; daemon: DaemonProcess; done(): Promise<void>; replies: () => number; interrupts: () => number[] }

async function daemonInRoom(config: Record<string, any> = {}, emu: Record<string, any> = {}, env: NodeJS.ProcessEnv = {}): Promise<Run> {
  // Parrot mode with a fixed answer: every utterance the server hears, echo included, gets a reply.
  const h = await startWithEmulator({ mode: 'parrot', reply: () => answer, ...emu },
    deepMerge({ audio: { echo_cancel: ECHO }, feedback: { wake_sound: false }, conversation: { follow_up_s: FOLLOW_UP_S } }, config), { ...card.env, ...env });
  let replies = 0;
  const interrupts: number[] = [];
  h.emu.on('reply-start', () => replies++);
  h.emu.on('interrupted', () => interrupts.push(Date.now()));
  return { ...h, replies: () => replies, interrupts: () => interrupts };
}

const when = (l: { [k: string]: unknown }) => Date.parse(l.time as string);

async function oneQuestion(latencyMs: number, db: number, config: Record<string, any> = {}, env: NodeJS.ProcessEnv = {}, reply: Buffer = answer): Promise<void> {
  const unload = echoPath(latencyMs, db);
  if (process.env.LS_ECHO_DUMP) (await import('node:fs')).rmSync(`${process.env.LS_ECHO_DUMP}-${latencyMs}.trace`, { force: true });
  const run = await daemonInRoom(config, { reply: () => reply }, { ...env, ...(process.env.LS_ECHO_DUMP ? { LS_ECHO_TRACE: `${process.env.LS_ECHO_DUMP}-${latencyMs}.trace` } : {}) });
  const { emu, daemon } = run;
  const speechStarts: { atByte: number; wall: number }[] = [];
  emu.on('speech-start', (_s: unknown, atByte: number) => speechStarts.push({ atByte, wall: Date.now() }));
  const sink = card.recordSpeaker();
  try {
    await sink.ready(); // the recorder runs before anything plays (the reply is judged whole on it)
    await daemon.pressAndWait('listening', 5000);
    const [s] = emu.sessions as EmulatedSession[];
    await card.playIntoRoom(question);
    // Question ~1 s, reply ~8 s, follow-up 2 s: a conversation still going after 30 s is answering itself.
    const ended = await daemon.waitLog((l) => l.msg === 'conversation ended', 30_000, 'the end of the conversation').catch(() => null);
    const played = await sink.stop();
    const st = await daemon.ctl('status');
    // A tone lines up with itself at every period, so its correlation says nothing of order: for the tonal reply,
    // how much of it was heard (its 10 ms blocks over -30 dBFS on the speaker, against those it has) stands in.
    const ncc = reply === tonal ? Math.min(1, audibleBlocks(played) / audibleBlocks(reply)) : wholeCorrelation(played, reply);
    if (process.env.LS_ECHO_DUMP) {
      // What the speaker played, what the server got (with when each chunk came), and where its VAD heard speech;
      // the daemon's stage wrote its own trace to PREFIX-<ms>.trace (LS_ECHO_TRACE).
      const fs = await import('node:fs');
      fs.writeFileSync(`${process.env.LS_ECHO_DUMP}-${latencyMs}.raw`, played);
      fs.writeFileSync(`${process.env.LS_ECHO_DUMP}-${latencyMs}.sent.raw`, s.received);
      fs.writeFileSync(`${process.env.LS_ECHO_DUMP}-${latencyMs}.json`, JSON.stringify({ speechStarts, utterances: s.utterances.map((u) => ({ startByte: u.startByte, endByte: u.endByte, detectedAt: u.detectedAt })), interrupts: run.interrupts(), receivedAt: s.receivedAt }));
    }
    const kind = reply === tonal ? 'tonal' : 'spoken';
    const moves = daemon.logs.filter((l) => /^echo delay (found|moved|settled)/.test(l.msg)).map((l) => l.delayMs);
    console.log(`# ${latencyMs} ms at ${db} dB, ${kind} reply, echo_cancel ${ECHO}, delay ${moves.join(' -> ') || 'never found'} (${st.echo.summary}): ${run.replies()} replies, ${run.interrupts().length} interrupted, ${s.utterances.length} utterances, reply on the speaker ncc ${ncc.toFixed(3)}, ${st.echo.gatedFrames} frames sent as silence (half-duplex), ${st.echo.residualFrames} as residual echo (full duplex; the tonal-leak guard notched ${st.echo.notchedChunks} chunks), playback underruns ${st.playback.underruns} stalls ${st.playback.stalls}, bargeIns ${st.counters.bargeIns}, ended: ${ended?.reason ?? 'not within 30 s'}`);
    // With a failure, what the server heard and when (s from the first byte it got), and what the echo stage said.
    const why = () => `\n  utterances (s into what was sent): ${s.utterances.map((u) => `${(u.startByte / 32000).toFixed(2)}-${(u.endByte / 32000).toFixed(2)}`).join(', ')}`
      + `\n  speech starts: ${speechStarts.map((x) => (x.atByte / 32000).toFixed(2)).join(', ')}; interrupts: ${run.interrupts().length}`
      + `\n  daemon: ${daemon.logs.filter((l) => /echo|duplex|ran dry|late|recount|held back|state/.test(l.msg)).map((l) => JSON.stringify({ ...l, pid: undefined, hostname: undefined })).join('\n          ')}`;
    // The journal is the daemon's JSON log: no raw line from a library (SpeexDSP's warnings go to stderr by themselves).
    assert.equal(daemon.stderr, '', 'every line the daemon wrote is JSON');
    assert.equal(run.interrupts().length, 0, `the server never interrupted the reply (it did not hear its echo as speech)${why()}`);
    assert.equal(s.utterances.length, 1, `the server heard one utterance: the question${why()}`);
    assert.equal(run.replies(), 1, `exactly one reply${why()}`);
    assert.ok(ncc > 0.9, `the reply was played whole: every sample of it on the speaker, in order (ncc ${ncc.toFixed(3)})`);
    assert.equal(ended?.reason, 'follow-up window over', 'the conversation ended after the follow-up window');
    // The session could be voice-interrupted exactly when an engine runs or the hardware is trusted (echo_cancel off).
    assert.equal(s.setup.realtimeInputConfig.activityHandling,
      st.echo.state === 'unavailable' ? 'NO_INTERRUPTION' : 'START_OF_ACTIVITY_INTERRUPTS');
  } finally { await sink.stop().catch(() => undefined); await run.done(); unload(); }
}

test('echo 0 dB, 30 ms path: one question then silence gives exactly one reply, played whole, no interrupted; the conversation ends after the follow-up window', { timeout: 60_000 }, () => oneQuestion(30, 0));
test('echo -12 dB, 120 ms path: one question, one reply, played whole, no interrupted, ends after the follow-up window', { timeout: 60_000 }, () => oneQuestion(120, -12));
test('echo 0 dB, 300 ms path: one question, one reply, played whole, no interrupted, ends after the follow-up window', { timeout: 60_000 }, () => oneQuestion(300, 0));
// The other three of the issue's six rooms (0 and -12 dB, each at 30, 120 and 300 ms).
test('echo 0 dB, 120 ms path: one question, one reply, played whole, no interrupted, ends after the follow-up window', { timeout: 60_000 }, () => oneQuestion(120, 0));
test('echo -12 dB, 30 ms path: one question, one reply, played whole, no interrupted, ends after the follow-up window', { timeout: 60_000 }, () => oneQuestion(30, -12));
test('echo -12 dB, 300 ms path: one question, one reply, played whole, no interrupted, ends after the follow-up window', { timeout: 60_000 }, () => oneQuestion(300, -12));

// A reply that is mostly one tone (issue 25: with the echo at -6 dB the delay wandered within the reply and its echo's
// last ~230 ms reached the server at ~-30 dBFS, 3 runs in 14 answered twice), and a spoken one at that level too.
// Over repeated runs: the -6 dB room, the one that answered itself in the issue, three times in every run of the
// file (each ~15 s: the three rooms twice would cost a test more and repeat the two that never failed).
for (const db of [0, -6, -12]) {
  const runs = db === -6 ? 3 : 1;
  for (let i = 1; i <= runs; i++) {
    test(`echo ${db} dB, 120 ms path, a tonal reply (marker tones around a steady tone)${runs > 1 ? ` (run ${i} of ${runs})` : ''}: one question, one reply, played whole, no interrupted`, { timeout: 60_000 }, () => oneQuestion(120, db, {}, {}, tonal));
  }
}
test('echo -6 dB, 120 ms path: one question, one reply, played whole, no interrupted, ends after the follow-up window', { timeout: 60_000 }, () => oneQuestion(120, -6));

test('echo_cancel on: every line the daemon writes, from its start through a conversation in a 0 dB room, is JSON (SpeexDSP printed "warning: The VAD has been replaced by a hack" at every start)', { timeout: 60_000 }, async () => {
  const unload = echoPath(120, 0);
  const run = await daemonInRoom({ audio: { echo_cancel: 'on' } });
  try {
    await run.daemon.pressAndWait('listening', 5000);
    await card.playIntoRoom(question);
    await run.daemon.waitLog((l) => l.msg === 'conversation ended', 30_000, 'the end of the conversation');
    assert.ok(run.daemon.logs.some((l) => l.msg === 'echo cancellation on'), 'the canceller ran');
  } finally { await run.done(); unload(); }
  // (stderr and stdout lines that do not parse as JSON both land in DaemonProcess.stderr.)
  assert.equal(run.daemon.stderr, '', 'a line the daemon wrote is not JSON');
});

// Where no engine can run (libspeexdsp1 not installed; LIVE_SPEAKER_SPEEXDSP names a file that is not there).
const NO_SPEEX = { LIVE_SPEAKER_SPEEXDSP: '/nonexistent/libspeexdsp.so.1' };

test('no SpeexDSP here, echo_cancel auto: the daemon runs half-duplex and says why; a 0 dB / 120 ms room still gets one reply per question, from a session that does not interrupt', { timeout: 60_000 }, async () => {
  await oneQuestion(120, 0, { audio: { echo_cancel: 'auto' } }, NO_SPEEX);
  // (oneQuestion asserted one reply, no interrupted, and NO_INTERRUPTION for an unavailable engine; with echo_cancel off this room answers itself.)
  const run = await daemonInRoom({ audio: { echo_cancel: 'auto' } }, {}, NO_SPEEX);
  try {
    const st = await run.daemon.ctl('status');
    assert.equal(st.echo.state, 'unavailable');
    assert.match(st.echo.summary, /unavailable \(echo cancellation needs SpeexDSP \(\/nonexistent\/libspeexdsp\.so\.1\), which could not be loaded: install the Debian package libspeexdsp1.*\): half-duplex/);
    const warned = run.daemon.logs.find((l) => l.msg.startsWith('no echo canceller can run: half-duplex'));
    assert.ok(warned && /libspeexdsp1/.test(String(warned.reason)), 'the log says why, and what to install');
  } finally { await run.done(); }
});

test('no SpeexDSP here, echo_cancel on: the daemon refuses to start (exit 78), naming audio.echo_cancel, the config file and the package', { timeout: 30_000 }, async () => {
  const d = await DaemonProcess.start({ env: { ...card.env, ...NO_SPEEX }, config: { audio: { echo_cancel: 'on' } }, waitReady: false });
  try {
    const code = await Promise.race([d.exited, sleep(15_000).then(() => 'still running')]);
    assert.equal(code, 78, `exit ${code}: ${d.stderr}`);
    const said = d.stderr + JSON.stringify(d.logs);
    assert.ok(said.includes(`${d.configFile}: audio.echo_cancel is on, but no echo canceller can run`), said);
    assert.match(said, /libspeexdsp1/);
  } finally { await d.stop(); }
});

test('echo 0 dB, 120 ms path: the user talking over the reply gets `interrupted` within 500 ms of starting to speak, and not before', { timeout: 90_000 }, async () => {
  const unload = echoPath(120, 0);
  // A long reply: the answer three times (the first conversation's reply is the answer once).
  if (process.env.LS_ECHO_DUMP) (await import('node:fs')).rmSync(`${process.env.LS_ECHO_DUMP}-talkover.trace`, { force: true });
  const run = await daemonInRoom({}, { reply: (_u: unknown, s: EmulatedSession) => (s.id === run.emu.sessions[0]?.id ? answer : Buffer.concat([answer, answer, answer])) },
    process.env.LS_ECHO_DUMP ? { LS_ECHO_TRACE: `${process.env.LS_ECHO_DUMP}-talkover.trace` } : {});
  const { daemon } = run;
  try {
    // A speaker in use: one conversation first, so the canceller starts this one with what it learnt (it keeps
    // its filter across conversations). The first reply after a start may be half-duplex (docs/audio.md).
    await daemon.pressAndWait('listening', 5000);
    await card.playIntoRoom(question);
    await daemon.waitLog((l) => l.msg === 'conversation ended', 30_000, 'the end of the first conversation');
    await daemon.pressAndWait('listening', 5000);
    const speaking = daemon.waitState('speaking', 10_000);
    await card.playIntoRoom(question);
    await speaking;
    await sleep(3000); // into the reply: what the issue asks of the canceller after 1 s
    const gatedBefore = (await daemon.ctl('status')).echo.gatedFrames;
    const cut = daemon.waitNextLog((l) => l.msg === 'state' && l.from === 'speaking' && l.to === 'listening', 8000, 'the reply cut').catch(() => null);
    const said = card.playIntoRoom(talkOver);
    const { startedAt } = await said;
    const cutLine = await cut;
    const cutAt = cutLine ? when(cutLine) : NaN;
    // pacat's first sample reaches the room 5-20 ms after it starts: counted from its start, the figure is if anything too long.
    const spokeAt = startedAt + onsetMs(talkOver);
    const before = run.interrupts().filter((t) => t < startedAt).length; // before a sample of the user's could be in the room
    const st = await daemon.ctl('status');
    const streamLines = daemon.logs.filter((l) => /new stream|kept echo filter|echo delay/.test(l.msg as string)).map((l) => `${l.msg} (${l.delayMs} ms${l.reductionDb === undefined ? '' : `, ${l.reductionDb} dB`})`);
    console.log(`# talk-over, the canceller on the new streams: ${streamLines.join('; ') || 'nothing said'}`);
    console.log(`# talk-over, echo_cancel ${ECHO} (${st.echo.summary}): interrupted ${cutLine ? `${cutAt - spokeAt} ms after the user started speaking` : 'never'}; ${before} interruptions before; the server's interruptions at ${run.interrupts().map((t) => t - spokeAt).join(', ')} ms; ${st.echo.gatedFrames - gatedBefore} frames sent as silence from 3 s into the reply (half-duplex), ${st.echo.residualFrames} as residual echo (full duplex), ${st.echo.notchedChunks} chunks notched by the tonal-leak guard`);
    assert.ok(cutLine, 'the reply was cut');
    assert.equal(before, 0, 'no interruption before the user spoke (the echo alone did not interrupt)');
    assert.ok(cutAt - spokeAt <= INTERRUPT_WITHIN_MS, `interrupted ${cutAt - spokeAt} ms after the user started speaking (bound ${INTERRUPT_WITHIN_MS})`);
  } finally { await run.done(); unload(); }
});

test('echo 0 dB, 120 ms path: the wake word said over the reply barges in (the wake engine hears the cancelled audio)', { timeout: 60_000 }, async () => {
  const unload = echoPath(120, 0);
  // barge_in press: only the wake word can cut the reply (the server hears nothing of it), so this is the wake engine's
  // hearing alone; the canceller still cleans what it hears. In voice mode the server may hear it as speech first.
  const run = await daemonInRoom({ audio: { barge_in: 'press' }, wake: { engine: 'tone', refractory_ms: 300 } }, { reply: () => Buffer.concat([dense, dense]) });
  const { daemon } = run;
  try {
    await daemon.pressAndWait('listening', 5000);
    const speaking = daemon.waitState('speaking', 10_000);
    await card.playIntoRoom(question);
    await speaking;
    await sleep(3000);
    const barged = daemon.waitNextLog((l) => l.msg === 'wake word', 5000, 'the wake word').catch(() => null);
    const cut = daemon.waitNextLog((l) => l.msg === 'state' && l.from === 'speaking' && l.to === 'listening', 5000, 'the reply cut').catch(() => null);
    const { startedAt } = await card.playIntoRoom(QUIET_WAKE);
    const [heard, cutLine] = await Promise.all([barged, cut]);
    const st = await daemon.ctl('status');
    console.log(`# wake over the reply, echo_cancel ${ECHO} (${st.echo.summary}): ${heard ? 'heard' : 'not heard'}; reply cut ${cutLine ? `${when(cutLine) - startedAt} ms after the wake word began` : 'never'}; bargeIns ${st.counters.bargeIns}, interrupted ${st.counters.interrupted}`);
    assert.ok(heard, 'the wake engine heard the wake word over the reply');
    assert.equal(st.wake.detections, 1, 'one detection: the wake word, not the reply');
    assert.equal(st.counters.bargeIns, 1, 'the wake word barged in');
    assert.equal(st.counters.interrupted, 0, 'the server did not interrupt (it heard none of it)');
    assert.ok(cutLine && when(cutLine) - startedAt < 1000, 'the reply stopped');
  } finally { await run.done(); unload(); }
});

test('barge_in: press: while the reply plays the server gets silence (paced, not nothing) and a session that does not interrupt; the wake word still barges in', { timeout: 60_000 }, async () => {
  const unload = echoPath(120, 0);
  const run = await daemonInRoom({ audio: { barge_in: 'press' }, wake: { engine: 'tone', refractory_ms: 300 } }, { reply: () => Buffer.concat([answer, answer]) });
  const { emu, daemon } = run;
  try {
    await daemon.pressAndWait('listening', 5000);
    const [s] = emu.sessions as EmulatedSession[];
    assert.equal(s.setup.realtimeInputConfig.activityHandling, 'NO_INTERRUPTION');
    const speaking = daemon.waitState('speaking', 10_000);
    await card.playIntoRoom(question);
    await speaking;
    await sleep(200); // the daemon's 'speaking' line and the audio it sent before it may cross: a margin
    const mark = s.receivedBytes;
    await sleep(2500);
    const before = { bytes: s.receivedBytes };
    const received = s.received.subarray(mark, before.bytes);
    // Everything sent while the reply played is zeros, and it kept coming at the mic's pace.
    let loudest = 0;
    for (let i = 0; i + 1 < received.length; i += 2) loudest = Math.max(loudest, Math.abs(received.readInt16LE(i)));
    await sleep(1000);
    const perSecond = s.receivedBytes - before.bytes;
    const barged = daemon.waitNextLog((l) => l.msg === 'wake word', 5000, 'the wake word').catch(() => null);
    await card.playIntoRoom(WAKE);
    const heard = await barged;
    const st = await daemon.ctl('status');
    console.log(`# barge_in press, echo_cancel ${ECHO} (${st.echo.summary}): loudest sample sent during the reply ${loudest}, ${perSecond} bytes/s sent, wake ${heard ? 'heard' : 'not heard'}`);
    assert.equal(loudest, 0, 'the server got silence while the reply played');
    assert.ok(perSecond > 28_000 && perSecond < 36_000, `the stream stayed paced: ${perSecond} bytes in 1 s (32000 expected)`);
    assert.equal(run.interrupts().length, 0);
    assert.equal(s.utterances.length, 1, 'the server heard only the question');
    // With a canceller the wake engine hears the wake word over the echo; without one (half-duplex) only if the echo does not drown it.
    if (st.echo.state !== 'unavailable') {
      assert.ok(heard, 'the wake word barged in');
      assert.equal(st.counters.bargeIns, 1);
    }
  } finally { await run.done(); unload(); }
});

test('live.vad is sent in the setup', { timeout: 30_000 }, async () => {
  const run = await daemonInRoom({ live: { vad: { start_sensitivity: 'low', end_sensitivity: 'high', prefix_padding_ms: 120, silence_duration_ms: 900 } } });
  try {
    await run.daemon.pressAndWait('listening', 5000);
    const [s] = run.emu.sessions as EmulatedSession[];
    assert.deepEqual(s.setup.realtimeInputConfig.automaticActivityDetection, {
      startOfSpeechSensitivity: 'START_SENSITIVITY_LOW', endOfSpeechSensitivity: 'END_SENSITIVITY_HIGH', prefixPaddingMs: 120, silenceDurationMs: 900,
    });
  } finally { await run.done(); }
});

test('control: the same room with echo cancellation off talks to itself (the tests above would see it)', { timeout: 60_000 }, async () => {
  const unload = echoPath(120, 0);
  const run = await daemonInRoom({ audio: { echo_cancel: 'off' } });
  const { daemon } = run;
  try {
    await daemon.pressAndWait('listening', 5000);
    await card.playIntoRoom(question);
    await sleep(10_000);
    console.log(`# control, echo_cancel off: ${run.replies()} replies and ${run.interrupts().length} interruptions to one question in 10 s`);
    assert.ok(run.replies() > 1 || run.interrupts().length > 0, `the echo reached the server as speech (${run.replies()} replies, ${run.interrupts().length} interrupted)`);
  } finally { await run.done(); unload(); }
});

/** 10 ms blocks (of 24 kHz audio) over -30 dBFS. */
function audibleBlocks(pcm: Buffer): number {
  let n = 0;
  for (let b = 0; (b + 1) * 480 <= pcm.length; b++) {
    let e = 0;
    for (let i = b * 480; i < (b + 1) * 480; i += 2) e += pcm.readInt16LE(i) ** 2;
    if (e / 240 > (32768 * 10 ** (-30 / 20)) ** 2) n++;
  }
  return n;
}

/** ms from the start of 16 kHz speech to its first sample louder than 5% of its peak (5 ms blocks). */
function onsetMs(pcm: Buffer): number {
  let peak = 0;
  for (let i = 0; i < pcm.length; i += 2) peak = Math.max(peak, Math.abs(pcm.readInt16LE(i)));
  for (let b = 0; (b + 1) * 160 <= pcm.length; b++) {
    let e = 0;
    for (let i = b * 160; i < (b + 1) * 160; i += 2) e += pcm.readInt16LE(i) ** 2;
    if (Math.sqrt(e / 80) >= Math.max(100, 0.05 * peak)) return b * 5;
  }
  return 0;
}
