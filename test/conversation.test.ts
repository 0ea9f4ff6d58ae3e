// The conversation loop end to end, through real parts: the built daemon as
// a process, real arecord and the real `speaker` addon on the simulated
// sound card (PulseAudio null sinks, paced in real time), and the real
// @google/genai SDK talking to the loopback emulator.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard, findOnset, findTone } from './bench/soundcard.js';
import { deepMerge, startWithEmulator } from './bench/daemon.js';
import type { EmulatorOptions } from '../src/emulator/emulator.js';
import { tone, silence } from '../src/audio/pcm.js';

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

test('a button-started conversation plays the reply on the speaker, then returns to idle', async () => {
  const { emu, daemon, done } = await setup({}, { conversation: { follow_up_s: 2 } });
  const sink = card.recordSpeaker();
  try {
    const ack = await daemon.ctl('press');
    assert.equal(ack.state, 'connecting');
    await card.playIntoRoom(speech1);
    const [, u] = await emu.waitFor('utterance', undefined, 10000);
    assert.ok(u.pcm.length > 16000, 'the utterance reached the emulator');
    await daemon.waitState('speaking', 5000);
    await daemon.waitState('follow-up', 10000);
    await daemon.waitState('idle', 5000);
    const played = await sink.stop();
    // Parrot mode says the user's words back: the sink holds about as much speech as was said.
    const status = await daemon.ctl('status');
    assert.equal(status.session, 'none');
    assert.equal(status.micLive, false);
    assert.ok(status.counters.bytesPlayed > 0);
    let loud = 0;
    for (let i = 0; i + 2 <= played.length; i += 2) if (Math.abs(played.readInt16LE(i)) > 1000) loud++;
    assert.ok(loud > 2400, `reply audio reached the sink (${loud} loud samples)`);
    assert.deepEqual(daemon.states().slice(0, 2), ['connecting', 'listening']);
    assert.equal(emu.sessions[0].closed, true, 'the session is closed after the follow-up window');
  } finally { await sink.stop().catch(() => undefined); await done(); }
});

test('pre-roll: words spoken right at the press reach the server intact, even with a slow connect', async () => {
  const { emu, daemon, done } = await setup({ setupDelayMs: 800, mode: 'scripted' });
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
    // And the rest of it is intact too: the last 300 ms of speech are found, in order.
    const tail = speech1.subarray(speech1.length - 16000);
    const tailHit = findOnset(session.received, tail);
    assert.ok(tailHit && tailHit.correlation > 0.9 && tailHit.offsetBytes > hit.offsetBytes, 'the end of the utterance arrived after its start');
  } finally { await done(); }
});

test('barge-in by the server: `interrupted` stops the reply at once and the new turn is heard', async () => {
  const { emu, daemon, done } = await setup({ reply: toneReplies(4000), replySpeed: 4 });
  const sink = card.recordSpeaker();
  try {
    await daemon.ctl('press');
    await card.playIntoRoom(speech1);
    await daemon.waitState('speaking', 8000);
    await sleep(800);
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
    assert.ok(old.totalMs < 2500, `the first reply was cut (${old.totalMs} of 4000 ms played)`);
    const lastOldAt = sink.startedAt + old.lastMs!;
    assert.ok(lastOldAt - interruptAt < 500, `old reply audio ended ${lastOldAt - interruptAt} ms after interrupted`);
    assert.ok(next.totalMs > 500, 'the reply to the new turn was heard');
    assert.ok(next.firstMs! > old.lastMs!, 'no old reply audio after the new one started');
    const st = await daemon.ctl('status');
    assert.equal(st.counters.interrupted, 1);
  } finally { await sink.stop().catch(() => undefined); await done(); }
});

test('barge-in by a press: the reply stops, the rest of that turn is dropped, and the daemon listens', async () => {
  // Real-time sending: the server is still streaming the old reply after the press.
  const { emu, daemon, done } = await setup({ reply: toneReplies(5000), replySpeed: 1 });
  const sink = card.recordSpeaker();
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
    const lastOldAt = sink.startedAt + old.lastMs!;
    assert.ok(lastOldAt - pressAt < 500, `old reply audio ended ${lastOldAt - pressAt} ms after the press`);
    assert.ok(old.totalMs < 2200, `the old reply was cut (${old.totalMs} ms of 5000 played)`);
    assert.ok(findTone(played, 660).totalMs > 500, 'the new turn was answered and heard');
    const st = await daemon.ctl('status');
    assert.equal(st.counters.bargeIns, 1);
  } finally { await sink.stop().catch(() => undefined); await done(); }
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
    assert.ok(windowMs >= 2900 && windowMs < 4500, `follow-up window lasted ${windowMs} ms (configured 3000)`);
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

test('mute stops capture entirely; a press while muted does nothing; unmute restores it', async () => {
  const { emu, daemon, done } = await setup();
  try {
    await daemon.ctl('mute');
    const st = await daemon.ctl('status');
    assert.equal(st.state, 'muted');
    assert.equal(st.microphone, 'stopped (muted)');
    assert.equal(st.leds.muted, 'on');
    await daemon.ctl('press');
    await sleep(300);
    assert.equal(emu.connections, 0);
    await daemon.ctl('unmute');
    await daemon.waitLog((l) => l.msg === 'state' && l.to === 'idle', 3000);
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
