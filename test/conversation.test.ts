// The conversation loop end to end, through real parts: the built daemon as
// a process, real arecord and the real `speaker` addon on the simulated
// sound card (PulseAudio null sinks, paced in real time), and the real
// @google/genai SDK talking to the loopback emulator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard, findOnset, findTone, speechMs, speechPeakRms, wholeCorrelation } from './bench/soundcard.js';
import { BARGE_IN_MS, toneEndsAfter } from './bench/bargein.js';
import { arecordChildren, deepMerge, processAlive, startWithEmulator, waitUntil } from './bench/daemon.js';
import { jsonLines } from './bench/lines.js';
import { LiveEmulator, type EmulatorOptions } from '../src/emulator/emulator.js';
import { resample, tone, silence } from '../src/audio/pcm.js';

/** The built naive comparison client (dist/bench/naive-client.js). */
const NAIVE_CLIENT = join(dirname(fileURLToPath(import.meta.url)), '..', 'bench', 'naive-client.js');

let card: SoundCard;
let speech1: Buffer; // 16 kHz s16le
let speech2: Buffer;

before(async () => {
  card = await SoundCard.start();
  speech1 = await card.say('hey there, what time is it in Tokyo');
  speech2 = await card.say('no wait, tell me a joke');
});
after(async () => { await card?.stop(); });

const setup = (emuOpts: EmulatorOptions = {}, config: Record<string, any> = {}) =>
  startWithEmulator({ mode: 'parrot', ...emuOpts }, deepMerge({ conversation: { follow_up_s: 3, no_speech_timeout_s: 6 } }, config), card.env);

/** Replies: 440 Hz for the first utterance, 660 Hz for the next, so the sink tells them apart. */
const toneReplies = (firstMs: number, nextMs = 800) => (u: { index: number }) =>
  u.index === 0 ? tone(440, firstMs, 24000) : tone(660, nextMs, 24000);

test('a conversation started with `ctl press`: the server gets what was said, the speaker plays its reply whole, then idle', async () => {
  // (The GPIO button cannot be driven here: it is a fake at the unit level, test/units.test.ts.)
  const { emu, daemon, done } = await setup({}, { conversation: { follow_up_s: 2 } });
  const sink = card.recordSpeaker();
  const room = card.recordRoom(); // what the microphone is given: the reference (the simulated card can glitch under load)
  await Promise.all([sink.ready(), room.ready()]); // both recorders run before anything plays
  try {
    const ack = await daemon.ctl('press');
    assert.equal(ack.state, 'connecting');
    await card.playIntoRoom(speech1);
    const [, u] = await emu.waitFor('utterance', undefined, 10000);
    await daemon.waitState('speaking', 5000);
    await daemon.waitState('follow-up', 10000);
    await daemon.waitState('idle', 5000);
    const played = await sink.stop();
    const said = await room.stop();
    const bench = `room vs the spoken file: corr ${wholeCorrelation(said, speech1).toFixed(3)}`;
    const inUtterance = wholeCorrelation(u.pcm, said);
    assert.ok(inUtterance > 0.95, `the whole question is in the utterance the server cut (corr ${inUtterance.toFixed(3)}; ${bench})`);
    const status = await daemon.ctl('status');
    assert.equal(status.session, 'none');
    assert.equal(status.micLive, false);
    // Parrot mode says the user's words back (the utterance, resampled to 24 kHz): one reply, all of it played.
    assert.equal(emu.sessions[0].utterances.length, 1, 'one question, one utterance');
    assert.equal(status.counters.bytesPlayed, u.pcm.length * 1.5, 'every byte of the reply went to the speaker');
    // What reached the sound card is what was said: the same samples, and as many seconds of speech.
    const heard = resample(played, 24000, 16000);
    const corr = wholeCorrelation(heard, said);
    // (0.99-1.00 here, after the 16 -> 24 -> 16 kHz round trip; a player that lost the last 200 ms scored 0.90-0.91)
    assert.ok(corr > 0.97, `the speaker played the question back whole, in order (corr ${corr.toFixed(3)}; ${bench})`);
    const minRms = speechPeakRms(said) / 10;
    const saidMs = speechMs(said, minRms);
    const playedMs = speechMs(heard, minRms);
    console.log(`# played back: corr ${corr.toFixed(3)}, ${playedMs} ms of speech for ${saidMs} ms said; utterance corr ${inUtterance.toFixed(3)}; ${bench}`);
    // (within 1.1% here; a player that lost its last 200 ms played 16% less)
    assert.ok(Math.abs(playedMs - saidMs) <= 0.05 * saidMs, `${playedMs} ms of speech played for ${saidMs} ms said`);
    assert.deepEqual(daemon.states(), ['connecting', 'listening', 'thinking', 'speaking', 'follow-up', 'idle']);
    assert.equal(emu.sessions[0].closed, true, 'the session is closed after the follow-up window');
  } finally { await sink.stop().catch(() => undefined); await room.stop().catch(() => undefined); await done(); }
});

test('pre-roll: words spoken right at the press reach the server intact, even with a slow connect', async () => {
  const { emu, daemon, done } = await setup({ setupDelayMs: 800, mode: 'scripted' });
  const room = card.recordRoom(); // what the microphone is given: the reference for 'intact'
  await room.ready(); // the recorder runs before anything plays
  try {
    await sleep(600); // a daemon that has been listening locally for a moment: its pre-roll ring is full
    // Press and speak in the same instant: the session is not up for 800 ms.
    await Promise.all([daemon.ctl('press'), card.playIntoRoom(speech1)]);
    const [session] = await emu.waitFor('utterance', undefined, 10000);
    const hit = findOnset(session.received, speech1);
    assert.ok(hit, 'the speech onset is in what the server received');
    assert.ok(hit.correlation > 0.9, `onset correlation ${hit.correlation.toFixed(3)}`);
    // Audio from before the first word was sent too: the start of speech was not clipped.
    assert.ok(hit.offsetBytes >= 3200, `${hit.offsetBytes / 32} ms of audio preceded the first word`);
    // And all of it is intact: every sample that was in the room, in order.
    const said = await room.stop();
    const whole = wholeCorrelation(session.received, said);
    assert.ok(whole > 0.98, `the whole utterance reached the server (corr ${whole.toFixed(4)}; room vs the spoken file ${wholeCorrelation(said, speech1).toFixed(3)})`);
  } finally { await room.stop().catch(() => undefined); await done(); }
});

test('barge-in by the server: `interrupted` stops the reply at once and the new turn is heard', async () => {
  // This room has no echo path (the speaker is not heard by the mic), with the default audio.echo_cancel
  // (auto): the canceller has nothing to converge on, and full duplex is earned by the quiet room itself. On the
  // first reply after a start that takes QUIET_ROOM_AFTER_MS (1.6 s) of it: until an echo at the longest delay
  // searched would have been heard, a room with none looks like one with a long path (src/audio/echo.ts). So the
  // user talks over it 2 s in (test/echo-stage.test.ts: a room known quiet earns it after 400 ms of the next one),
  // and the reply is sent at twice real time, not four (the server interrupts only while it is still sending: at 4x
  // an 8 s reply has all been sent 2 s in).
  const { emu, daemon, done } = await setup({ reply: toneReplies(8000), replySpeed: 2 });
  const sink = card.recordSpeaker();
  await sink.ready(); // the recorder runs before anything plays
  try {
    await daemon.ctl('press');
    await card.playIntoRoom(speech1);
    await daemon.waitState('speaking', 8000);
    await sleep(2000);
    const said = card.playIntoRoom(speech2); // the user talks over the reply
    const [, interruptAt] = await emu.waitFor('interrupted', undefined, 5000);
    await daemon.waitState('listening', 2000);
    await said;
    await emu.waitFor('reply-end', (s, result) => result === 'complete', 10000);
    await daemon.waitState('follow-up', 8000);
    const played = await sink.stop();
    const old = findTone(played, 440);
    const next = findTone(played, 660);
    assert.ok(old.totalMs > 300, `the first reply was playing (${old.totalMs} ms)`);
    // Talked over 2 s in (was 0.8 s with 2.5 s here): the same margin after the user's words.
    assert.ok(old.totalMs < 3700, `the first reply was cut (${old.totalMs} of 8000 ms played)`);
    const stoppedIn = toneEndsAfter(played, sink, 440, interruptAt)!;
    console.log(`# daemon: the last sample of the interrupted reply reached the card ${stoppedIn} ms after interrupted (bound ${BARGE_IN_MS})`);
    assert.ok(stoppedIn <= BARGE_IN_MS, `the last sample of the old reply reached the card ${stoppedIn} ms after interrupted (bound ${BARGE_IN_MS}; a player that plays out its buffer takes ~200-550)`);
    assert.ok(next.totalMs >= 740 && next.totalMs <= 820, `the reply to the new turn was heard whole (${next.totalMs} of 800 ms)`);
    assert.ok(next.firstMs! > old.lastMs!, 'no old reply audio after the new one started');
    const st = await daemon.ctl('status');
    assert.equal(st.counters.interrupted, 1);
  } finally { await sink.stop().catch(() => undefined); await done(); }
});

test('barge-in by a press: the reply stops, the rest of that turn is dropped, and the daemon listens', async () => {
  // Sent at twice real time, as the service sends ahead: the player is a full lead ahead when the press
  // comes (at real time it never is, and a player that plays out its buffer would pass), and the
  // server is still streaming the old reply after the press.
  const { emu, daemon, done } = await setup({ reply: toneReplies(12000), replySpeed: 2 });
  const sink = card.recordSpeaker();
  await sink.ready(); // the recorder runs before anything plays
  try {
    await daemon.ctl('press');
    await card.playIntoRoom(speech1);
    await daemon.waitState('speaking', 8000);
    await sleep(1000);
    const pressAt = Date.now();
    const ack = await daemon.ctl('press');
    assert.equal(ack.state, 'listening');
    await sleep(1500); // the server keeps sending the old turn meanwhile
    assert.equal(emu.sessions[0].replying, true, 'the emulator was still sending the old reply');
    await card.playIntoRoom(speech2);
    await emu.waitFor('reply-end', (s, result) => result === 'complete', 10000);
    await daemon.waitState('follow-up', 8000);
    const played = await sink.stop();
    const old = findTone(played, 440);
    const stoppedIn = toneEndsAfter(played, sink, 440, pressAt)!;
    console.log(`# daemon: the last sample of the cut reply reached the card ${stoppedIn} ms after the press (bound ${BARGE_IN_MS})`);
    assert.ok(stoppedIn <= BARGE_IN_MS, `the last sample of the old reply reached the card ${stoppedIn} ms after the press (bound ${BARGE_IN_MS}; a player that plays out its buffer takes ~200-550)`);
    assert.ok(old.totalMs < 2200, `the old reply was cut (${old.totalMs} ms of 12000 played)`);
    const next = findTone(played, 660).totalMs;
    assert.ok(next >= 740 && next <= 820, `the new turn was answered and heard whole (${next} of 800 ms)`);
    const st = await daemon.ctl('status');
    assert.equal(st.counters.bargeIns, 1);
  } finally { await sink.stop().catch(() => undefined); await done(); }
});

test('the barge-in bound fails the naive client, which plays out its buffer: the bound tells the designs apart', async () => {
  // The same question, reply, talk-over and measurement as 'barge-in by the server' above, with the
  // naive client (bench/naive-client.ts: the Live API getting-started example) in the daemon's place.
  const emu = await LiveEmulator.start({ mode: 'parrot', reply: toneReplies(8000), replySpeed: 4 });
  const sink = card.recordSpeaker();
  await sink.ready(); // the recorder runs before anything plays
  const naive = spawn(process.execPath, [NAIVE_CLIENT, '--url', emu.url, '--style', 'interval'], { env: card.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  let arecordPid = 0;
  naive.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
  try {
    arecordPid = await new Promise<number>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`the naive client did not start: ${stderr}`)), 15000);
      jsonLines(naive.stdout!, (o) => { if (o.ready) { clearTimeout(t); res(o.arecordPid); } });
    });
    const firstChunk = emu.waitFor('reply-chunk', undefined, 10000);
    await card.playIntoRoom(speech1);
    await firstChunk;
    await sleep(800);
    const said = card.playIntoRoom(speech2);
    const [, interruptAt] = await emu.waitFor('interrupted', undefined, 5000);
    await said;
    await emu.waitFor('reply-end', (_s, result) => result === 'complete', 10000);
    await sleep(1500);
    const played = await sink.stop();
    const stoppedIn = toneEndsAfter(played, sink, 440, interruptAt);
    console.log(`# naive client: the last sample of the interrupted reply reached the card ${stoppedIn} ms after interrupted (bound ${BARGE_IN_MS})`);
    assert.ok(stoppedIn !== null, 'the naive client played the first reply');
    assert.ok(stoppedIn > BARGE_IN_MS, `the naive client passes the barge-in bound (${stoppedIn} <= ${BARGE_IN_MS} ms): the bound would not tell a client that plays out its buffer from one that drops it`);
  } finally {
    // SIGTERM: the client stops its arecord, which a SIGKILL would leave behind.
    if (naive.exitCode === null && naive.signalCode === null) {
      const gone = new Promise((r) => naive.once('exit', r));
      naive.kill('SIGTERM');
      await Promise.race([gone, sleep(3000)]);
      naive.kill('SIGKILL');
    }
    if (arecordPid && processAlive(arecordPid)) process.kill(arecordPid, 'SIGKILL');
    await sink.stop().catch(() => undefined);
    await emu.close();
  }
});

test('follow-up: a second question without a press, then idle after the window', async () => {
  const { emu, daemon, done } = await setup({ reply: toneReplies(600, 600) }, { conversation: { follow_up_s: 3 } });
  try {
    await daemon.ctl('press');
    await card.playIntoRoom(speech1);
    await daemon.waitState('follow-up', 10000);
    await card.playIntoRoom(speech2); // no press
    await emu.waitFor('utterance', (s, u) => u.index === 1, 8000);
    await daemon.waitState('speaking', 5000);
    const fu = await daemon.waitState('follow-up', 8000);
    const idle = await daemon.waitState('idle', 6000);
    const windowMs = Date.parse(idle.time as string) - Date.parse(fu.time as string);
    assert.ok(windowMs >= 2950 && windowMs < 3500, `follow-up window lasted ${windowMs} ms (configured 3000)`);
    assert.equal(emu.sessions.length, 1, 'both turns were one session');
    assert.equal(emu.sessions[0].utterances.length, 2);
    await emu.waitFor('close', undefined, 3000).catch(() => undefined);
    assert.equal(emu.sessions[0].closed, true, 'the session was closed when the window ended');
    const st = await daemon.ctl('status');
    assert.equal(st.state, 'idle');
    assert.equal(st.counters.turns, 2);
  } finally { await done(); }
});

test('privacy: while idle, speech in the room opens no connection and sends no audio', async () => {
  const { emu, daemon, done } = await setup();
  try {
    const st0 = await daemon.ctl('status');
    assert.equal(st0.microphone, 'running', 'the mic is running (for the pre-roll), locally');
    await card.playIntoRoom(Buffer.concat([speech1, silence(500, 16000), speech2]));
    await sleep(1000);
    assert.equal(emu.connections, 0, 'no connection was opened');
    const st = await daemon.ctl('status');
    assert.equal(st.state, 'idle');
    assert.equal(st.micLive, false);
    assert.equal(st.leds.listening, 'off');
    assert.equal(st.counters.bytesSent, 0);
    // And when it does stream, the listening LED says so.
    await daemon.pressAndWait('listening', 5000);
    const live = await daemon.ctl('status');
    assert.equal(live.micLive, true);
    assert.equal(live.leds.listening, 'on');
  } finally { await done(); }
});

test('no GPIO on the machine: said once, clearly, and the daemon serves ctl and SIGUSR1', async () => {
  const { emu, daemon, done } = await setup();
  try {
    const warnings = daemon.logs.filter((l) => /GPIO/.test(l.msg));
    assert.equal(warnings.length, 1, 'one clear message');
    assert.equal(warnings[0].level, 'warn');
    assert.match(warnings[0].msg, /no GPIO.*running without button and LEDs/);
    const st = await daemon.ctl('status');
    assert.match(st.gpio, /^unavailable/);
    daemon.child.kill('SIGUSR1');
    await daemon.waitState('listening', 5000);
    assert.equal(emu.connections, 1);
  } finally { await done(); }
});

test('mute stops capture entirely (arecord exits); a press while muted does nothing; unmute starts a new arecord', async () => {
  const { emu, daemon, done } = await setup();
  try {
    const daemonPid = daemon.child.pid!;
    const before = await daemon.ctl('status');
    assert.deepEqual(arecordChildren(daemonPid), [before.capturePid], 'while idle, one arecord runs: the daemon\'s capture');
    const muted = await daemon.ctl('mute');
    assert.equal(muted.state, 'muted');
    assert.equal(muted.leds.muted, 'on');
    assert.equal(muted.capturePid, null);
    // Not a flag: the arecord process itself is gone.
    const gone = await waitUntil(() => !processAlive(before.capturePid), 1000);
    assert.ok(gone, `arecord ${before.capturePid} still runs 1 s after mute`);
    await daemon.ctl('press');
    await sleep(300);
    const still = await daemon.ctl('status');
    assert.equal(still.state, 'muted', 'the press did nothing');
    assert.equal(emu.connections, 0);
    assert.deepEqual(arecordChildren(daemonPid), [], 'no arecord runs while muted');
    const idle = daemon.waitState('idle', 3000);
    await daemon.ctl('unmute');
    await idle;
    const back = await daemon.ctl('status');
    assert.notEqual(back.capturePid, null);
    assert.notEqual(back.capturePid, before.capturePid);
    assert.deepEqual(arecordChildren(daemonPid), [back.capturePid], 'unmuted: a new arecord runs');
    await daemon.pressAndWait('listening', 5000);
  } finally { await done(); }
});

test('a session the server ends for good mid-conversation shows the error, then the daemon is back in idle and serving', async () => {
  const { emu, daemon, done } = await setup({ mode: 'scripted' }, { conversation: { error_display_s: 1 } });
  try {
    await daemon.pressAndWait('listening', 5000);
    // (transient closes are resumed instead: test/resilience.test.ts)
    emu.sessions[0].close(1007, 'Request contains an invalid argument.');
    await daemon.waitState('error', 3000);
    const st = await daemon.ctl('status');
    assert.equal(st.leds.error, 'blink 200/200 ms');
    assert.match(st.lastError.message, /invalid argument.*1007/);
    await daemon.waitState('idle', 3000);
    await daemon.pressAndWait('listening', 5000);
    assert.equal(emu.connections, 2);
  } finally { await done(); }
});
