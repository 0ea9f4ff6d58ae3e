// The echo stage's decisions (src/audio/echo.ts) and the half-duplex gate in
// the conversation, without a sound card: when a reply must not be heard by
// the server, what is sent instead (zeros, same length, same pace), and what
// the session setup says. The canceller is faked at its interface (its DSP is
// tested on branch aec's deterministic room); end to end: echo.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { EchoStage, EchoRequiredError, FULL_DUPLEX_ERLE_DB, QUIET_ROOM_AFTER_MS, QUIET_ROOM_DB, QUIET_ROOM_MS, RESIDUAL_GATE_DB } from '../src/audio/echo.js';
import { EchoCanceller, EchoUnavailableError, MAX_DELAY_MS, type EchoStats } from '../src/audio/aec/index.js';
import { Conversation } from '../src/conversation.js';
import type { Indicator, LiveHandlers } from '../src/ports.js';
import { parseConfig } from '../src/config.js';
import { openEcho } from '../src/daemon.js';
import { realtimeInputConfig } from '../src/live/gemini.js';
import { createLogger } from '../src/log.js';
import { tone } from '../src/audio/pcm.js';
import { monotonicMs } from '../src/clock.js';
import { FAKE_OPTIONS } from './bench/fake-conversation.js';

const log = createLogger('silent');

/** A canceller at its interface: says what stats it is given, marks each frame it cleaned. */
function fakeCanceller(stats: Partial<EchoStats>) {
  const refs: { atMs: number; pcm: Buffer }[] = [];
  const c = {
    stats: { engine: 'fake', delayMs: 123, erleDb: 31, converged: false, framesProcessed: 0, delayJumps: 0, ...stats },
    pushReference: (r: { atMs: number; pcm: Buffer }) => refs.push(r),
    processMic: (f: Buffer, _atMs: number) => Buffer.alloc(f.length, 1),
    reset: () => undefined, close: () => undefined,
  };
  return { c, refs, open: () => c as unknown as EchoCanceller };
}
const none = () => { throw new EchoUnavailableError('no engine here'); };

test('echo stage: which mode cancels, which falls back to half-duplex, which sessions may be interrupted', () => {
  const off = EchoStage.open('off', 'voice', log, none);
  assert.deepEqual([off.status().state, off.halfDuplex(), off.interruptible()], ['off', false, true], 'off: full duplex, the hardware is trusted');
  const unavailable = EchoStage.open('auto', 'voice', log, none);
  assert.deepEqual([unavailable.status().state, unavailable.halfDuplex(), unavailable.interruptible()], ['unavailable', true, false], 'auto with no engine: half-duplex, NO_INTERRUPTION');
  assert.match(unavailable.status().reason!, /no engine here/);
  const f = fakeCanceller({ converged: false });
  const learning = EchoStage.open('auto', 'voice', log, f.open);
  assert.deepEqual([learning.status().state, learning.halfDuplex(), learning.interruptible()], ['cancelling', true, true], 'an engine not converged yet: zeros during replies, an interruptible session');
  f.c.stats.converged = true;
  f.c.stats.erleDb = 31;
  const loud = Buffer.alloc(480, 1);
  const t0 = monotonicMs();
  learning.scheduled({ sample: 0, atMs: t0 - 500, pcm: loud }, 24000); // a reply heard for half a second
  assert.equal(learning.halfDuplex(), true, 'not yet a second of this stream heard: its figure may be the last stream\'s');
  learning.scheduled({ sample: 0, atMs: t0 - 2000, pcm: loud }, 24000); // (a restart: this stream started 2 s ago)
  f.c.stats.erleDb = FULL_DUPLEX_ERLE_DB - 3;
  assert.equal(learning.halfDuplex(), true, 'converged, but what is left of a loud echo could pass for speech: still half-duplex');
  assert.match(learning.describe(), new RegExp(`half-duplex until the echo is ${FULL_DUPLEX_ERLE_DB} dB down$`));
  f.c.stats.erleDb = 31;
  assert.equal(learning.halfDuplex(), false, 'converged and the echo FULL_DUPLEX_ERLE_DB down: the cleaned audio goes out during replies');
  f.c.stats.erleDb = 2; // the user talks over the reply: the measured reduction drops
  assert.equal(learning.halfDuplex(), false, 'and stays out while the canceller stays converged (double talk must get through)');
  f.c.stats.erleDb = 31;
  assert.match(learning.describe(), /^fake, delay 123 ms, converged \(echo reduced 31 dB\): full duplex$/);
  learning.scheduled({ sample: 240, atMs: t0 - 1990, pcm: Buffer.alloc(480) }, 24000); // 10 ms on
  assert.equal(learning.halfDuplex(), false, 'the stream goes on: full duplex holds');
  learning.scheduled({ sample: 480, atMs: t0 - 300, pcm: loud }, 24000);
  assert.equal(learning.halfDuplex(), true, 'the device restarted (its delay may differ): half-duplex until a second of it is heard with the echo FULL_DUPLEX_ERLE_DB down');
  learning.scheduled({ sample: 0, atMs: t0 - 1500, pcm: loud }, 24000);
  assert.equal(learning.halfDuplex(), false);
  f.c.stats.converged = false;
  assert.equal(learning.halfDuplex(), true, 'no longer converged (a delay jump): half-duplex again');
  f.c.stats.converged = true;
  f.c.stats.erleDb = FULL_DUPLEX_ERLE_DB - 3;
  assert.equal(learning.halfDuplex(), true, 'until the echo is FULL_DUPLEX_ERLE_DB down again');
  const press = EchoStage.open('on', 'press', log, fakeCanceller({ converged: true }).open);
  assert.deepEqual([press.halfDuplex(), press.interruptible()], [true, false], 'barge_in press: half-duplex and NO_INTERRUPTION even when converged');
  assert.throws(() => EchoStage.open('on', 'voice', log, none), (e: Error) => e instanceof EchoRequiredError && /audio\.echo_cancel is on/.test(e.message) && /no engine here/.test(e.message));
});

test('echo stage: the reference goes to the canceller as played; every mic chunk is cleaned, stamped with its capture time', () => {
  const f = fakeCanceller({});
  let stampedAt = NaN;
  f.c.processMic = (frame: Buffer, atMs: number) => { stampedAt = atMs; return Buffer.alloc(frame.length, 7); };
  const stage = EchoStage.open('auto', 'voice', log, f.open);
  stage.reference({ sample: 0, atMs: 1000, pcm: Buffer.alloc(960) });
  assert.deepEqual(f.refs.map((r) => [r.atMs, r.pcm.length]), [[1000, 960]]);
  const mic = Buffer.alloc(640, 3);
  assert.equal(stage.process(mic, 5000, 16000)[0], 3, 'nothing audible written to the speaker: the microphone as it is');
  assert.equal(stampedAt, 4980, 'the canceller still saw it, its first sample stamped 20 ms before it arrived');
  stage.tailMs = 500;
  stage.scheduled({ sample: 0, atMs: 5100, pcm: Buffer.alloc(4800) }, 24000);
  assert.equal(stage.process(mic, 5020, 16000)[0], 3, 'silence written: no echo can come');
  const loudRef = Buffer.alloc(4800); loudRef.writeInt16LE(1000, 100);
  stage.scheduled({ sample: 2400, atMs: 5200, pcm: loudRef }, 24000); // heard 5200-5300
  const out = stage.process(mic, 5040, 16000);
  assert.equal(out.length, 640);
  assert.equal(out[0], 7, 'an echo may come: what the canceller returned is what the readers get');
  assert.equal(stage.process(mic, 5800, 16000)[0], 7, 'until echo_tail_ms after the last audible sample is heard');
  assert.equal(stage.process(mic, 5801, 16000)[0], 3, 'then the microphone again');
  // echo_tail_ms below the echo path's delay: the canceller's output is still used until that delay plus its filter (250 ms) have passed.
  stage.tailMs = 0;
  assert.equal(stage.process(mic, 5670, 16000)[0], 7, 'echo_tail_ms 0, delay 123 ms: cleaned until 5300 + 123 + 250');
  assert.equal(stage.process(mic, 5674, 16000)[0], 3, 'then the microphone again');
  f.c.stats.delayMs = null as unknown as number;
  assert.equal(stage.process(mic, 6750, 16000)[0], 7, 'no delay known yet: the longest searched (MAX_DELAY_MS) plus the filter');
  assert.equal(stage.process(mic, 6751, 16000)[0], 3);
  const raw = Buffer.alloc(640, 3);
  assert.equal(EchoStage.open('auto', 'voice', log, none).process(raw, 5000, 16000), raw, 'no engine: the raw audio');
});

test('echo stage: a room with no echo (the cleaned mic far under the reply, never converged) earns full duplex on its own, once an echo at the longest delay searched would have been heard', () => {
  const f = fakeCanceller({ converged: false, delayMs: null, erleDb: 0, residualDb: QUIET_ROOM_DB + 5 });
  const stage = EchoStage.open('auto', 'voice', log, f.open);
  const t0 = monotonicMs();
  const loud = Buffer.alloc(480, 1);
  const mic = Buffer.alloc(640);
  stage.scheduled({ sample: 0, atMs: t0 - 100, pcm: loud }, 24000);
  stage.process(mic, t0 - 90, 16000);
  assert.equal(stage.halfDuplex(), true, 'not yet QUIET_ROOM_MS of the reply heard');
  // A stream heard for 1 s, quiet all along: a room whose echo takes longer than that (the simulated card's 0 dB /
  // 300 ms room took ~310 ms, and its smoothed figure saw the echo only after ~500 ms) looks just like this so far.
  stage.scheduled({ sample: 0, atMs: t0 - 1000, pcm: loud }, 24000); // (a restart: this stream started 1 s ago)
  stage.process(mic, t0 - 990, 16000);
  assert.ok(QUIET_ROOM_AFTER_MS >= MAX_DELAY_MS + QUIET_ROOM_MS);
  assert.equal(stage.halfDuplex(), true, 'quiet for 1 s, but an echo up to MAX_DELAY_MS late may not have come yet');
  // The same stream, now QUIET_ROOM_AFTER_MS old.
  stage.scheduled({ sample: 0, atMs: t0 - QUIET_ROOM_AFTER_MS - 10, pcm: loud }, 24000);
  stage.process(mic, t0 - QUIET_ROOM_AFTER_MS, 16000);
  f.c.stats.residualDb = QUIET_ROOM_DB - 5;
  stage.process(mic, t0 - 100, 16000); // the echo arrived late: the cleaned mic is no longer far under the reply
  f.c.stats.residualDb = QUIET_ROOM_DB + 5;
  stage.process(mic, t0 - 80, 16000);
  assert.equal(stage.halfDuplex(), true, 'something was heard under the reply in the last QUIET_ROOM_MS');
  stage.scheduled({ sample: 0, atMs: t0 - QUIET_ROOM_AFTER_MS - 10, pcm: loud }, 24000);
  f.c.stats.residualDb = QUIET_ROOM_DB - 5;
  stage.process(mic, t0 - QUIET_ROOM_AFTER_MS, 16000);
  assert.equal(stage.halfDuplex(), true, 'the cleaned mic not far enough under the reply: something is heard');
  f.c.stats.residualDb = QUIET_ROOM_DB + 5;
  stage.process(mic, t0 - QUIET_ROOM_MS - 1, 16000);
  f.c.stats.delayMs = 619 as unknown as null; // a delay taken from the user's voice against the reply, in a room with no echo
  assert.equal(stage.halfDuplex(), false, 'not converged, but the cleaned mic far under the reply since long enough: full duplex');
  assert.equal(stage.status().converged, false);
  stage.scheduled({ sample: 0, atMs: t0 - 100, pcm: loud }, 24000);
  assert.equal(stage.halfDuplex(), true, 'earned again on each playback stream');
  // The room is now known to be quiet: the next stream earns it after QUIET_ROOM_MS of quiet, not QUIET_ROOM_AFTER_MS.
  stage.scheduled({ sample: 0, atMs: t0 - QUIET_ROOM_MS - 20, pcm: loud }, 24000);
  stage.process(mic, t0 - QUIET_ROOM_MS - 10, 16000);
  assert.equal(stage.halfDuplex(), false, 'a room known quiet: full duplex after QUIET_ROOM_MS of the next stream');
  // An echo found and cancelled (converged) means the room is not known quiet any more.
  f.c.stats.converged = true;
  stage.process(mic, t0 - 5, 16000);
  f.c.stats.converged = false; f.c.stats.erleDb = 0;
  stage.scheduled({ sample: 0, atMs: t0 - QUIET_ROOM_MS - 20, pcm: loud }, 24000);
  stage.process(mic, t0 - QUIET_ROOM_MS - 10, 16000);
  assert.equal(stage.halfDuplex(), true, 'after an echo was cancelled, the whole window again');
});

test('echo stage: the residual gate marks cleaned chunks far under the raw microphone while an echo may come (full duplex sends zeros for them)', () => {
  const f = fakeCanceller({ converged: true });
  let gain = 1;
  f.c.processMic = (frame: Buffer) => { const o = Buffer.alloc(frame.length); for (let i = 0; i < frame.length; i += 2) o.writeInt16LE(Math.round(frame.readInt16LE(i) * gain), i); return o; };
  const stage = EchoStage.open('auto', 'voice', log, f.open);
  const mic = tone(300, 20, 16000, 0.3); // -13.5 dBFS in the raw microphone
  stage.process(mic, 4000, 16000);
  assert.equal(stage.residualEcho(), false, 'nothing played: no gate');
  const loudRef = Buffer.alloc(4800); loudRef.writeInt16LE(1000, 100);
  stage.scheduled({ sample: 0, atMs: 4100, pcm: loudRef }, 24000); // an echo may come until 5200
  gain = 10 ** (-(RESIDUAL_GATE_DB + 10) / 20); // the canceller took what the mic heard 22 dB down: its residual
  stage.process(mic, 4120, 16000);
  assert.equal(stage.residualEcho(), true, 'what the canceller left of the echo is marked');
  gain = 10 ** (-(RESIDUAL_GATE_DB - 6) / 20); // someone talks over the reply: the cleaned audio is near the microphone's level
  stage.process(mic, 4140, 16000);
  assert.equal(stage.residualEcho(), false, 'speech over the reply passes');
  gain = 10 ** (-(RESIDUAL_GATE_DB + 10) / 20);
  stage.process(Buffer.alloc(640), 4160, 16000); // the raw microphone falls silent: its envelope decays slowly
  assert.equal(stage.residualEcho(), false, 'a cleaned chunk under -60 dBFS is nothing the server could hear: not counted');
  stage.process(mic, 5300, 16000);
  assert.equal(stage.residualEcho(), false, 'after echo_tail_ms the microphone passes as it is');
  assert.equal(stage.residualChunks, 1);
  const press = EchoStage.open('auto', 'press', log, f.open);
  press.scheduled({ sample: 0, atMs: 4100, pcm: loudRef }, 24000);
  press.process(mic, 4120, 16000);
  assert.equal(press.residualEcho(), false, 'barge_in press: half-duplex sends zeros anyway');
});

test('audio.echo_cancel: on with no engine is a config error naming the key and the file', () => {
  const config = parseConfig({ audio: { echo_cancel: 'on' } }, '/etc/live-speaker/config.yaml', []);
  assert.throws(() => openEcho(config, '/etc/live-speaker/config.yaml', log, none), (e: Error) =>
    e.name === 'ConfigError' && /^\/etc\/live-speaker\/config\.yaml: audio\.echo_cancel is on, but no echo canceller can run: no engine here/.test(e.message));
  assert.throws(() => parseConfig({ audio: { echo_cancel: 'yes' } }, '/etc/live-speaker/config.yaml', []), /'audio\.echo_cancel'/);
  assert.throws(() => parseConfig({ live: { vad: { start_sensitivity: 'medium' } } }, '/etc/live-speaker/config.yaml', []), /'live\.vad\.start_sensitivity'/);
});

test('live.vad and the echo mode in the setup: sensitivities, prefix padding, silence, activityHandling', () => {
  const defaults = parseConfig({}, null, []);
  assert.deepEqual(realtimeInputConfig(defaults.live, 700, true), { automaticActivityDetection: { silenceDurationMs: 700 }, activityHandling: 'START_OF_ACTIVITY_INTERRUPTS' });
  const set = parseConfig({ live: { vad: { start_sensitivity: 'high', end_sensitivity: 'low', prefix_padding_ms: 40, silence_duration_ms: 1200 } } }, null, []);
  assert.deepEqual(realtimeInputConfig(set.live, 700, false), {
    automaticActivityDetection: { silenceDurationMs: 1200, startOfSpeechSensitivity: 'START_SENSITIVITY_HIGH', endOfSpeechSensitivity: 'END_SENSITIVITY_LOW', prefixPaddingMs: 40 },
    activityHandling: 'NO_INTERRUPTION',
  });
});

let residual = false;
function gated(halfDuplex: () => boolean, echoTailMs: number) {
  const sent: Buffer[] = [];
  let h: LiveHandlers | null = null;
  let drained: (() => void) | null = null;
  const indicator: Indicator = { show: () => undefined, micLive: true };
  const c = new Conversation({ ...FAKE_OPTIONS, echoTailMs }, {
    live: { connect: (handlers) => { h = handlers; return { sendAudio: (b) => sent.push(b), close: () => undefined }; } },
    player: { open: () => undefined, close: () => undefined, play: () => undefined, flush: () => undefined, finish: (done) => { drained = done; } },
    mic: { start: () => undefined, stop: () => undefined },
    indicator, echo: { halfDuplex, residualEcho: () => residual },
  }, log);
  return { c, sent, h: () => h!, drain: () => drained!() };
}
const loudest = (b: Buffer) => { let m = 0; for (let i = 0; i < b.length; i += 2) m = Math.max(m, Math.abs(b.readInt16LE(i))); return m; };

test('half-duplex: during a reply and echo_tail_ms after it was heard, zeros of the same length go out; then the microphone again', async () => {
  let half = true;
  const { c, sent, h, drain } = gated(() => half, 150);
  const mic = tone(300, 20, 16000, 0.5); // what the microphone hears: the echo, or the user
  c.press('ctl');
  h().onOpen();
  c.micFrame(mic);
  assert.ok(loudest(sent.at(-1)!) > 10000, 'listening: the microphone goes out');
  h().onAudio(Buffer.alloc(4800));
  assert.equal(c.state, 'speaking');
  for (let i = 0; i < 5; i++) c.micFrame(mic);
  assert.deepEqual(sent.slice(-5).map((b) => [b.length, loudest(b)]), Array(5).fill([640, 0]), 'speaking: a zero frame for every microphone frame');
  h().onTurnComplete();
  drain(); // the reply's last sample was heard
  assert.equal(c.state, 'follow-up');
  c.micFrame(mic);
  assert.equal(loudest(sent.at(-1)!), 0, 'its echo may still be on the way: zeros');
  await sleep(200);
  c.micFrame(mic);
  assert.ok(loudest(sent.at(-1)!) > 10000, 'after echo_tail_ms the microphone goes out again');
  assert.equal(c.gatedFrames, 6);
  // A press (or the wake word) cuts a reply: what the user says next goes out at once.
  h().onAudio(Buffer.alloc(4800));
  c.micFrame(mic);
  assert.equal(loudest(sent.at(-1)!), 0);
  c.press('ctl');
  assert.equal(c.state, 'listening');
  c.micFrame(mic);
  assert.ok(loudest(sent.at(-1)!) > 10000, 'after a barge-in by press the microphone goes out at once, not after echo_tail_ms');
  // The server interrupts a reply (it heard the user start a new turn): the rest of their words go out at once too.
  h().onTurnComplete(); // (the end of the turn the press cut)
  h().onAudio(Buffer.alloc(4800));
  assert.equal(c.state, 'speaking');
  c.micFrame(mic);
  assert.equal(loudest(sent.at(-1)!), 0);
  h().onInterrupted();
  assert.equal(c.state, 'listening');
  c.micFrame(mic);
  assert.ok(loudest(sent.at(-1)!) > 10000, 'after the server\'s interrupted the microphone goes out at once, not after echo_tail_ms');
  // Converged (halfDuplex false): a reply no longer silences the microphone.
  half = false;
  h().onAudio(Buffer.alloc(4800));
  c.micFrame(mic);
  assert.ok(loudest(sent.at(-1)!) > 10000, 'full duplex: the (cleaned) microphone goes out during a reply');
  residual = true;
  c.micFrame(mic);
  assert.deepEqual([sent.at(-1)!.length, loudest(sent.at(-1)!)], [640, 0], 'full duplex: a frame that is only the echo\'s residual goes out as zeros');
  assert.deepEqual([c.gatedFrames, c.residualFrames], [8, 1]);
  residual = false;
  c.micFrame(mic);
  assert.ok(loudest(sent.at(-1)!) > 10000);
  c.end('test');
});

test('echo stage: a new playback stream (a barge-in\'s drop, a new conversation) asks the canceller to confirm its delay only at the stream\'s first audible sample, so the cut reply\'s echo is still cancelled meanwhile', () => {
  const f = fakeCanceller({});
  let newStreams = 0;
  (f.c as unknown as { newStream: () => void }).newStream = () => { newStreams++; };
  const stage = EchoStage.open('auto', 'voice', log, f.open);
  const loud = Buffer.alloc(4800); loud.writeInt16LE(1000, 100);
  stage.scheduled({ sample: 0, atMs: 1000, pcm: loud }, 24000); // a reply, heard 1000-1100
  stage.scheduled({ sample: 2400, atMs: 1100, pcm: loud }, 24000); // the same stream, 1100-1200
  assert.equal(newStreams, 0, 'one continuous stream: nothing to confirm');
  // The barge-in: the device is dropped at 1150 and restarts with a pad of silence.
  stage.scheduled({ sample: 4800, atMs: 1170, pcm: Buffer.alloc(4800) }, 24000);
  stage.scheduled({ sample: 7200, atMs: 1270, pcm: Buffer.alloc(4800) }, 24000);
  assert.equal(newStreams, 0, 'silence on the new stream: Speex goes on cancelling the cut reply\'s echo');
  assert.equal(stage.process(Buffer.alloc(640, 3), 1400, 16000)[0], 1, 'the echo still coming is cleaned');
  stage.scheduled({ sample: 9600, atMs: 1370, pcm: loud }, 24000); // the next reply's first audible sample
  assert.equal(newStreams, 1, 'the new stream\'s delay is confirmed from its first audible sample');
  stage.scheduled({ sample: 12000, atMs: 1470, pcm: loud }, 24000);
  assert.equal(newStreams, 1, 'once per stream');
});

// Issue 25: on a mostly tonal reply the canceller took the tone far down (the cleaned mic 40 dB under the reply) with
// no delay it could confirm; counted as a quiet room, full duplex sent what it had not learnt (the next note) raw.
test('echo stage: a canceller that takes an echo far down without having converged (a tone, no delay confirmed) does not make the room a quiet one: replies stay half-duplex', () => {
  const f = fakeCanceller({ converged: false, delayMs: null, erleDb: 30, residualDb: QUIET_ROOM_DB + 5 });
  const stage = EchoStage.open('auto', 'voice', log, f.open);
  const t0 = monotonicMs();
  const loud = Buffer.alloc(480, 1);
  const mic = Buffer.alloc(640);
  stage.scheduled({ sample: 0, atMs: t0 - QUIET_ROOM_AFTER_MS - 10, pcm: loud }, 24000);
  stage.process(mic, t0 - QUIET_ROOM_AFTER_MS, 16000);
  stage.process(mic, t0 - 5, 16000);
  assert.equal(stage.halfDuplex(), true, 'the echo is in the mic 15 dB under the reply (cancelled 30 dB): not a quiet room');
  // The same figures with nothing taken off (the mic itself 45 dB under the reply): a quiet room, as before.
  f.c.stats.erleDb = 0;
  const quiet = EchoStage.open('auto', 'voice', log, f.open);
  quiet.scheduled({ sample: 0, atMs: t0 - QUIET_ROOM_AFTER_MS - 10, pcm: loud }, 24000);
  quiet.process(mic, t0 - QUIET_ROOM_AFTER_MS, 16000);
  quiet.process(mic, t0 - 5, 16000);
  assert.equal(quiet.halfDuplex(), false, 'the mic itself far under the reply: full duplex');
});
