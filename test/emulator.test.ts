/**
 * The Live API emulator driven by the real @google/genai SDK, plus unit tests
 * of the PCM helpers and the energy VAD it is built on.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GoogleGenAI, Modality, type LiveServerMessage, type Session } from '@google/genai';
import { WebSocket } from 'ws';
import { bytesForMs, goertzelPower, resample, rmsDbfs, silence, tone } from '../src/audio/pcm.js';
import { EnergyVad, type VadTransition } from '../src/audio/vad.js';
import { BAD_KEY_REASON, LiveEmulator, type EmulatorOptions, type Utterance } from '../src/emulator/emulator.js';

const MODEL = 'gemini-2.5-flash-native-audio-preview-09-2025';
const IN = 16000;
const OUT = 24000;

// 300 ms silence, 800 ms of a 300 Hz "speech" tone, 700 ms silence.
function speechClip(toneMs = 800): Buffer {
  return Buffer.concat([silence(300, IN), tone(300, toneMs, IN, 0.3), silence(700, IN)]);
}

interface Client {
  session: Session;
  messages: LiveServerMessage[];
  closed: Promise<{ code: number; reason: string }>;
  /** Resolves with the first message (already received or future) matching pred. */
  waitMsg(pred: (m: LiveServerMessage) => boolean, timeoutMs?: number, from?: number): Promise<LiveServerMessage>;
}

/** Connect through the real SDK; resolves once connect() has (i.e. after setupComplete). */
async function connectSdk(emu: LiveEmulator, apiKey = 'test-key', config: object = {}): Promise<Client> {
  const messages: LiveServerMessage[] = [];
  const waiters = new Set<() => void>();
  let onClose!: (e: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((r) => (onClose = r));
  const ai = new GoogleGenAI({ apiKey, httpOptions: { baseUrl: emu.url } });
  const session = await ai.live.connect({
    model: MODEL,
    config: { responseModalities: [Modality.AUDIO], ...config },
    callbacks: {
      onmessage: (m) => {
        messages.push(m);
        for (const w of [...waiters]) w();
      },
      onclose: (e) => onClose({ code: e.code, reason: e.reason }),
      onerror: () => undefined,
    },
  });
  const waitMsg = (pred: (m: LiveServerMessage) => boolean, timeoutMs = 5000, from = 0): Promise<LiveServerMessage> =>
    new Promise((resolve, reject) => {
      const check = (): void => {
        const m = messages.slice(from).find(pred);
        if (m) {
          waiters.delete(check);
          clearTimeout(timer);
          resolve(m);
        }
      };
      const timer = setTimeout(() => {
        waiters.delete(check);
        reject(new Error(`no matching server message within ${timeoutMs} ms`));
      }, timeoutMs);
      waiters.add(check);
      check();
    });
  return { session, messages, closed, waitMsg };
}

/** Send audio through the SDK in 20 ms frames, as fast as the socket takes it. */
function sendPcm(session: Session, pcm: Buffer, frameMs = 20): void {
  const frame = bytesForMs(frameMs, IN);
  for (let off = 0; off < pcm.length; off += frame) {
    session.sendRealtimeInput({
      audio: { data: pcm.subarray(off, off + frame).toString('base64'), mimeType: `audio/pcm;rate=${IN}` },
    });
  }
}

function audioParts(m: LiveServerMessage): { mimeType: string; data: Buffer }[] {
  return (m.serverContent?.modelTurn?.parts ?? [])
    .filter((p) => p.inlineData?.data)
    .map((p) => ({ mimeType: p.inlineData!.mimeType ?? '', data: Buffer.from(p.inlineData!.data!, 'base64') }));
}

async function withEmulator(opts: EmulatorOptions, fn: (emu: LiveEmulator) => Promise<void>): Promise<void> {
  const emu = await LiveEmulator.start(opts);
  try {
    await fn(emu);
  } finally {
    await emu.close();
  }
}

// ---------------------------------------------------------------- pcm ----

test('pcm: sizes, levels, resample and goertzel', () => {
  assert.equal(bytesForMs(20, IN), 640);
  assert.equal(bytesForMs(40, OUT), 1920);
  assert.equal(bytesForMs(10.03, 44100) % 2, 0);
  assert.equal(silence(100, IN).length, 3200);

  assert.equal(rmsDbfs(Buffer.alloc(0)), -120);
  assert.equal(rmsDbfs(silence(20, IN)), -120);
  // A sine's RMS is amplitude/sqrt(2): 0.3 -> about -13.5 dBFS.
  assert.ok(Math.abs(rmsDbfs(tone(300, 100, IN, 0.3)) - 20 * Math.log10(0.3 / Math.SQRT2)) < 0.2);

  const t = tone(300, 800, IN, 0.3);
  const up = resample(t, IN, OUT);
  assert.equal(up.length, t.length * 1.5);
  const down = resample(up, OUT, IN);
  assert.equal(down.length, t.length);
  // The tone survives resampling, in frequency and level.
  const p = goertzelPower(up, OUT, 300);
  assert.ok(Math.abs(p - 0.09) < 0.01, `300 Hz power after resample ${p}`);
  assert.ok(goertzelPower(up, OUT, 500) < 0.001);
  assert.ok(Math.abs(rmsDbfs(down) - rmsDbfs(t)) < 0.2);

  // Telling a 440 Hz reply from a 660 Hz one.
  const a = tone(440, 400, OUT);
  const b = tone(660, 400, OUT);
  assert.ok(goertzelPower(a, OUT, 440) > 50 * goertzelPower(a, OUT, 660));
  assert.ok(goertzelPower(b, OUT, 660) > 50 * goertzelPower(b, OUT, 440));
  assert.equal(goertzelPower(Buffer.alloc(0), OUT, 440), 0);
});

// ---------------------------------------------------------------- vad ----

const VAD_OPTS = { rate: IN, thresholdDbfs: -45, minSpeechMs: 60, silenceMs: 500 };

function runVad(pcm: Buffer, sizes: number[]): VadTransition[] {
  const vad = new EnergyVad(VAD_OPTS);
  const out: VadTransition[] = [];
  let i = 0;
  for (let off = 0; off < pcm.length; i++) {
    const n = sizes[i % sizes.length];
    out.push(...vad.process(pcm.subarray(off, off + n)));
    off += n;
  }
  return out;
}

test('vad: start and end on sample positions', () => {
  const clip = speechClip();
  const vad = new EnergyVad(VAD_OPTS);
  const t = vad.process(clip);
  assert.deepEqual(
    t.map((x) => [x.type, x.edgeSample, x.atSample]),
    [
      ['speech-start', 300 * 16, 360 * 16], // tone starts at 300 ms, confirmed 60 ms later
      ['speech-end', 1100 * 16, 1600 * 16], // tone stops at 1100 ms, confirmed 500 ms later
    ],
  );
  assert.equal(vad.speaking, false);

  // push() reports the change of the call that caused it.
  const v2 = new EnergyVad(VAD_OPTS);
  const events = [];
  for (let off = 0; off < clip.length; off += 640) events.push(v2.push(clip.subarray(off, off + 640)));
  assert.deepEqual(
    events.filter((e) => e !== null),
    ['speech-start', 'speech-end'],
  );
  assert.equal(events.indexOf('speech-start'), 17); // block 17 ends at 360 ms
});

test('vad: same events whatever the frame sizes', () => {
  const clip = Buffer.concat([speechClip(), tone(300, 90, IN), silence(40, IN), tone(300, 30, IN), silence(600, IN)]);
  const reference = runVad(clip, [640]);
  assert.equal(reference.length, 4);
  // Odd sample counts (even byte lengths) that never line up with 20 ms blocks,
  // single samples, big chunks, and odd byte lengths.
  for (const sizes of [[2], [6], [2, 318, 1000, 42], [322], [642, 638, 2], [4098], [3], [1, 5, 641], [clip.length]]) {
    assert.deepEqual(runVad(clip, sizes), reference, `frame sizes ${sizes.join(',')}`);
  }
  // Flush ends speech at the start of the quiet run and keeps the partial block.
  const vad = new EnergyVad(VAD_OPTS);
  vad.process(Buffer.concat([tone(300, 200, IN), silence(105, IN)]));
  assert.equal(vad.speaking, true);
  assert.equal(vad.pendingSamples, 5 * 16);
  assert.deepEqual(vad.flush(), { type: 'speech-end', atSample: 300 * 16, edgeSample: 200 * 16 });
  assert.equal(vad.speaking, false);
  assert.equal(vad.flush(), null);
  vad.reset();
  assert.equal(vad.position, 0);
  assert.equal(vad.pendingSamples, 0);
});

// ------------------------------------------------------- emulator + SDK ----

test('parrot: SDK setup, utterance, reply audio, turnComplete, resumption, close', { timeout: 20000 }, async () => {
  await withEmulator({}, async (emu) => {
    const sessionEv = emu.waitFor('session');
    const c = await connectSdk(emu, 'test-key', { sessionResumption: {} });
    // connect() in this SDK resolves only after setupComplete; it is then replayed to onmessage.
    assert.ok(c.messages[0]?.setupComplete, 'first message is setupComplete');
    const [s] = await sessionEv;
    assert.equal(s.model, `models/${MODEL}`);
    assert.deepEqual(s.setup.generationConfig.responseModalities, ['AUDIO']);
    assert.equal(s.key, 'test-key');
    await c.waitMsg((m) => m.sessionResumptionUpdate?.newHandle === 'h-1-1');

    const uttEv = emu.waitFor('utterance');
    const replyEnd = emu.waitFor('reply-end');
    const clip = speechClip();
    sendPcm(c.session, clip);
    const [, u] = (await uttEv) as [unknown, Utterance];
    assert.equal(u.index, 0);
    // From 200 ms before the tone to its end.
    assert.equal(u.startByte, bytesForMs(100, IN));
    assert.equal(u.endByte, bytesForMs(1100, IN));
    assert.ok(goertzelPower(u.pcm, IN, 300) > 0.05, 'utterance holds the tone');

    const turn = await c.waitMsg((m) => m.serverContent?.turnComplete === true);
    const [, result] = await replyEnd;
    assert.equal(result, 'complete');
    const turnIdx = c.messages.indexOf(turn);
    const audio = c.messages.slice(0, turnIdx).flatMap(audioParts);
    assert.ok(audio.length > 10, `reply in many chunks (${audio.length})`);
    for (const a of audio) assert.equal(a.mimeType, 'audio/pcm;rate=24000');
    const reply = Buffer.concat(audio.map((a) => a.data));
    assert.equal(reply.length, u.pcm.length * 1.5);
    assert.ok(goertzelPower(reply, OUT, 300) > 0.05, 'parrot reply holds the tone');
    assert.ok(c.messages.slice(0, turnIdx).some((m) => m.serverContent?.generationComplete));
    assert.ok(c.messages.slice(turnIdx + 1).every((m) => audioParts(m).length === 0), 'no audio after turnComplete');
    await c.waitMsg((m) => m.sessionResumptionUpdate?.newHandle === 'h-1-2');

    assert.equal(s.received.length, clip.length);
    assert.equal(s.audioMessages, clip.length / 640);
    assert.ok(s.firstAudioAt !== null);

    // The SDK's Session.close() takes no arguments: a close frame without a code (1005).
    const closeEv = emu.waitFor('close');
    c.session.close();
    const [, code] = await closeEv;
    assert.equal(code, 1005);
    assert.equal((await c.closed).code, 1005);
    assert.equal(s.closed, true);
  });
});

test('barge-in: speech during the reply interrupts it', { timeout: 20000 }, async () => {
  // Real-time pacing so the reply is still streaming when the user talks.
  await withEmulator({ replySpeed: 1 }, async (emu) => {
    const c = await connectSdk(emu);
    const firstChunk = emu.waitFor('reply-chunk');
    sendPcm(c.session, speechClip(1500));
    await firstChunk;
    const interrupted = emu.waitFor('interrupted');
    const replyEnd = emu.waitFor('reply-end');
    sendPcm(c.session, tone(300, 200, IN));
    const msg = await c.waitMsg((m) => m.serverContent?.interrupted === true);
    await interrupted;
    assert.equal((await replyEnd)[1], 'interrupted');
    const at = c.messages.indexOf(msg);
    const before = c.messages.slice(0, at).flatMap(audioParts).reduce((n, a) => n + a.data.length, 0);
    assert.ok(before > 0 && before < emu.sessions[0].utterances[0].pcm.length * 1.5, `partial reply (${before} bytes)`);
    // Nothing more for that turn: no audio, no turnComplete.
    await new Promise((r) => setTimeout(r, 300));
    const after = c.messages.slice(at + 1);
    assert.ok(after.every((m) => audioParts(m).length === 0), 'no audio after interrupted');
    assert.ok(after.every((m) => !m.serverContent?.turnComplete), 'no turnComplete after interrupted');
    assert.equal(emu.sessions[0].replying, false);
    c.session.close();
    await c.closed;
  });
});

test('scripted: no automatic reply; test-driven audio, 440 vs 660 Hz', { timeout: 20000 }, async () => {
  await withEmulator({ mode: 'scripted', replySpeed: Infinity }, async (emu) => {
    const c = await connectSdk(emu);
    const uttEv = emu.waitFor('utterance');
    sendPcm(c.session, speechClip());
    const [s] = await uttEv;
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(c.messages.flatMap(audioParts).length, 0, 'scripted mode does not reply by itself');

    const from = c.messages.length;
    assert.equal(await s.sendAudio(tone(660, 300, OUT)), 'complete');
    await c.waitMsg((m) => m.serverContent?.turnComplete === true, 5000, from);
    const reply = Buffer.concat(c.messages.slice(from).flatMap(audioParts).map((a) => a.data));
    assert.equal(reply.length, bytesForMs(300, OUT));
    assert.ok(goertzelPower(reply, OUT, 660) > 20 * goertzelPower(reply, OUT, 440));

    // Raw messages and tool responses are recorded.
    s.send({ toolCall: { functionCalls: [{ id: 'fc-1', name: 'set_volume', args: { level: 40 } }] } });
    const call = await c.waitMsg((m) => m.toolCall !== undefined, 5000, from);
    assert.equal(call.toolCall?.functionCalls?.[0].id, 'fc-1');
    const got = emu.waitFor('message', (_s, m) => m.toolResponse !== undefined);
    c.session.sendToolResponse({ functionResponses: [{ id: 'fc-1', name: 'set_volume', response: { result: 'ok' } }] });
    await got;
    assert.ok(s.messages.some((m: any) => m.toolResponse?.functionResponses?.[0]?.id === 'fc-1'));

    // Server-side close reaches the SDK with its code and reason.
    s.close(1011, 'Internal error');
    assert.deepEqual(await c.closed, { code: 1011, reason: 'Internal error' });
  });
});

test('rejected key: the SDK sees close 1008 with the service text', { timeout: 10000 }, async () => {
  await withEmulator({ acceptKey: (k) => k === 'good-key' }, async (emu) => {
    let onClose!: (e: { code: number; reason: string }) => void;
    const closed = new Promise<{ code: number; reason: string }>((r) => (onClose = r));
    const ai = new GoogleGenAI({ apiKey: 'bad-key', httpOptions: { baseUrl: emu.url } });
    // connect() waits for setupComplete and never settles here: watch onclose instead.
    void ai.live
      .connect({
        model: MODEL,
        config: { responseModalities: [Modality.AUDIO] },
        callbacks: { onmessage: () => undefined, onclose: (e) => onClose({ code: e.code, reason: e.reason }), onerror: () => undefined },
      })
      .catch(() => undefined);
    assert.deepEqual(await closed, { code: 1008, reason: BAD_KEY_REASON });
    assert.equal(emu.connections, 1);
    assert.equal(emu.sessions.length, 0);
  });
});

test('protocol errors: non-setup first frame 1007, binary frames, wrong path 404', { timeout: 10000 }, async () => {
  await withEmulator({}, async (emu) => {
    const wsUrl = emu.url.replace('http', 'ws') + '//ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent?key=k';

    const bad = new WebSocket(wsUrl);
    await new Promise((r) => bad.once('open', r));
    bad.send(JSON.stringify({ realtimeInput: { audioStreamEnd: true } }));
    const [code] = await new Promise<[number, Buffer]>((r) => bad.once('close', (c, why) => r([c, why])));
    assert.equal(code, 1007);

    // The setup may come as a binary frame; answers are JSON text frames.
    const bin = new WebSocket(wsUrl);
    await new Promise((r) => bin.once('open', r));
    bin.send(Buffer.from(JSON.stringify({ setup: { model: 'models/x' } })), { binary: true });
    const [data, isBinary] = await new Promise<[Buffer, boolean]>((r) => bin.once('message', (d, b) => r([d as Buffer, b])));
    assert.equal(isBinary, false);
    assert.deepEqual(JSON.parse(data.toString()), { setupComplete: {} });
    bin.close();
    await new Promise((r) => bin.once('close', r));

    const other = new WebSocket(emu.url.replace('http', 'ws') + '/ws/SomethingElse?key=k');
    const status = await new Promise<number>((r) => {
      other.once('unexpected-response', (_req, res) => r(res.statusCode ?? 0));
      other.once('error', () => r(-1));
    });
    assert.equal(status, 404);
    other.terminate();
  });
});

test('emu.close() closes SDK sessions (1001) and leaves no open handles', { timeout: 10000 }, async () => {
  const kinds = (): string[] => process.getActiveResourcesInfo().filter((k) => k !== 'TTYWrap');
  const before = kinds();
  const emu = await LiveEmulator.start();
  const c = await connectSdk(emu);
  sendPcm(c.session, speechClip());
  await emu.waitFor('reply-chunk');
  await emu.close();
  assert.equal((await c.closed).code, 1001);
  // The SDK's client socket is released by ws shortly after the close handshake.
  for (let i = 0; i < 50 && kinds().join() !== before.join(); i++) await new Promise((r) => setTimeout(r, 10));
  assert.deepEqual(kinds(), before);
});
