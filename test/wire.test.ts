// Server frames of the right JSON but the wrong shapes (issue 25), through the
// real @google/genai SDK and the loopback emulator to the built daemon: each
// bad item is dropped with one log line, the rest of the conversation goes
// on. And an exception nothing catches is logged as fatal before the exit.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard, findTone } from './bench/soundcard.js';
import { DaemonProcess, startWithEmulator } from './bench/daemon.js';
import { LiveEmulator, type EmulatorOptions } from '../src/emulator/emulator.js';
import { tone } from '../src/audio/pcm.js';
import { MAX_AUDIO_PART_BYTES, validateServerMessage } from '../src/live/server-message.js';

test('the server-message schema: each bad part, call, id or field is dropped and named, the rest kept', () => {
  const good = { inlineData: { mimeType: 'audio/pcm;rate=24000', data: Buffer.alloc(4).toString('base64') } };
  const { msg, dropped } = validateServerMessage(JSON.parse(JSON.stringify({
    serverContent: { modelTurn: { parts: [null, good, { inlineData: { data: 'QQ' } }, good] }, turnComplete: 'yes' },
    toolCall: { functionCalls: [{ id: 'fc-1', name: 'set_volume', args: [] }, { id: 'fc-2', name: 'set_volume', args: { level: 4 } }] },
    toolCallCancellation: { ids: ['fc-0', 7] },
    usageMetadata: { promptTokenCount: 3, responseTokenCount: '9', extra: 'x'.repeat(10) },
  })));
  assert.deepEqual(dropped.map((d) => d.what), ['serverContent.modelTurn.parts[0]', 'serverContent.modelTurn.parts[2]', 'serverContent.turnComplete', 'toolCall.functionCalls[0]', 'toolCallCancellation.ids[1]', 'usageMetadata.responseTokenCount']);
  assert.equal(dropped[3].call?.id, 'fc-1');
  assert.deepEqual(msg?.serverContent?.modelTurn?.parts, [good, good]);
  assert.deepEqual(msg?.toolCall?.functionCalls?.map((c) => c.id), ['fc-2']);
  assert.deepEqual(msg?.toolCallCancellation?.ids, ['fc-0']);
  assert.deepEqual(msg?.usageMetadata, { promptTokenCount: 3 });
  // A part over the 10 s cap is refused; a "__proto__" key is not a field.
  const huge = validateServerMessage({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: 'audio/pcm;rate=24000', data: Buffer.alloc(MAX_AUDIO_PART_BYTES + 3).toString('base64') } }] } } });
  assert.match(huge.dropped[0].problem, /Too big/);
  assert.deepEqual(validateServerMessage(JSON.parse('{"__proto__":{"goAway":{"timeLeft":1}}}')), { msg: {}, dropped: [] });
});

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), '..', '..', 'test', 'fixtures');

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

const setup = (emuOpts: EmulatorOptions = {}) =>
  startWithEmulator({ mode: 'scripted', replySpeed: 1, ...emuOpts }, { live: { connect_timeout_s: 2 }, conversation: { follow_up_s: 2, error_display_s: 1 } }, card.env);

const drops = (d: DaemonProcess) => d.logs.filter((l) => l.msg === 'dropped a malformed item of a Live API message');
const isAudio = (m: any) => Array.isArray(m?.serverContent?.modelTurn?.parts);

/** The four frames (and one more like them), each sent in the middle of a reply, before its third audio chunk. */
const CASES: { name: string; frame: (chunk: any) => object; field: RegExp; problem: RegExp }[] = [
  { name: 'functionCalls:[null]', frame: () => ({ toolCall: { functionCalls: [null] } }), field: /^toolCall\.functionCalls\[0\]$/, problem: /expected object, received null/ },
  { name: 'parts:[null]', frame: () => ({ serverContent: { modelTurn: { parts: [null] } } }), field: /^serverContent\.modelTurn\.parts\[0\]$/, problem: /expected object, received null/ },
  { name: 'parts:{}', frame: () => ({ serverContent: { modelTurn: { parts: {} } } }), field: /^serverContent\.modelTurn\.parts$/, problem: /expected array, received object/ },
  // The chunk it is sent with comes second in the same message: kept and played.
  { name: 'inlineData.data:123', frame: (chunk) => ({ serverContent: { modelTurn: { parts: [{ inlineData: { mimeType: 'audio/pcm;rate=24000', data: 123 } }, ...chunk.serverContent.modelTurn.parts] } } }), field: /^serverContent\.modelTurn\.parts\[0\]$/, problem: /inlineData\.data: .*expected string, received number/ },
  { name: 'toolCallCancellation.ids:"a"', frame: () => ({ toolCallCancellation: { ids: 'a' } }), field: /^toolCallCancellation\.ids$/, problem: /expected array, received string/ },
];

for (const c of CASES) {
  test(`a server frame with ${c.name}: dropped with one log line, the reply after it is played, the next press works`, async () => {
    let chunks = 0;
    const { emu, daemon, done } = await setup({
      serverFrames: (m) => (isAudio(m) && ++chunks === 3 ? [c.frame(m), ...(c.name.startsWith('inlineData') ? [] : [m])] : [m]),
    });
    const sink = card.recordSpeaker();
    await sink.ready();
    try {
      await daemon.pressAndWait('listening');
      const s = emu.sessions[0];
      const followUp = daemon.waitState('follow-up', 8000);
      const result = await s.sendAudio(tone(440, 1200, 24000));
      assert.equal(result, 'complete');
      await followUp;
      await sleep(300);
      const played = await sink.stop();
      const heard = findTone(played, 440).totalMs;
      assert.ok(heard > 1000, `the reply around the bad frame was played: ${heard} ms of its 1200 ms tone`);
      const lines = drops(daemon);
      assert.equal(lines.length, 1, `one line for the one bad item: ${JSON.stringify(lines)}`);
      assert.match(String(lines[0].field), c.field);
      assert.match(String(lines[0].problem), c.problem);
      assert.ok(JSON.stringify(lines[0]).length < 400, 'a short line');
      assert.equal(daemon.exitCode, null, 'the daemon is up');
      assert.equal(s.closed, false, 'the session survived');
      // The conversation goes on: end it, and a new one starts.
      await daemon.pressAndWait('idle');
      await daemon.pressAndWait('listening');
      assert.equal(emu.connections, 2);
      assert.ok(!daemon.logs.some((l) => l.level === 'fatal' || l.level === 'error'), `no error: ${JSON.stringify(daemon.logs.filter((l) => l.level === 'fatal' || l.level === 'error'))}`);
    } finally { await sink.stop().catch(() => undefined); await done(); }
  });
}

test('a frame with a top-level "text" or "data" field (the SDK\'s read-only getters) is refused with one line, not a crash', async () => {
  const { emu, daemon, done } = await setup();
  try {
    await daemon.pressAndWait('listening');
    const s = emu.sessions[0];
    s.send({ text: 'hello', serverContent: { turnComplete: true } });
    s.send({ data: 1 });
    await sleep(300);
    void s.sendAudio(tone(440, 300, 24000));
    await daemon.waitState('follow-up', 5000);
    const lines = daemon.logs.filter((l) => l.msg === 'ignored a malformed message from the Live API');
    assert.deepEqual(lines.map((l) => l.error), ['a top-level field the SDK cannot take: text', 'a top-level field the SDK cannot take: data']);
    assert.equal(daemon.exitCode, null);
    assert.ok(!daemon.logs.some((l) => l.level === 'fatal'));
  } finally { await done(); }
});

test('a malformed function call that gives its id is answered with an error (the model does not wait); the good call beside it runs', async () => {
  const { emu, daemon, done } = await setup();
  try {
    await daemon.pressAndWait('listening');
    const volume = (await daemon.ctl('status')).volume;
    const s = emu.sessions[0];
    s.send({ toolCall: { functionCalls: [{ id: 'fc-bad', name: 'set_volume', args: 'loud' }, { id: 'fc-good', name: 'open_pod_bay_doors', args: {} }] } });
    const bad = await s.toolResponse('fc-bad', 5000);
    assert.match(bad.response.error, /malformed function call \(args: expected an object\)/);
    const good = await s.toolResponse('fc-good', 5000);
    assert.match(good.response.error, /unknown tool 'open_pod_bay_doors'/);
    await daemon.waitLog((l) => l.msg === 'dropped a malformed item of a Live API message', 3000); // stdout may come after the answer
    assert.equal(drops(daemon).length, 1);
    assert.equal((await daemon.ctl('status')).volume, volume, 'the malformed set_volume was not run');
    assert.equal(daemon.exitCode, null);
  } finally { await done(); }
});

test('an exception nothing catches is logged as fatal, with its stack, before the daemon exits non-zero', async () => {
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const d = await DaemonProcess.start({
    env: { ...card.env, NODE_OPTIONS: `--import=${join(FIXTURES, 'throw-later.mjs')}`, THROW_AFTER_MS: '4000' },
    config: { live: { base_url: emu.url } },
    waitReady: false,
  });
  try {
    const code = await Promise.race([d.exited, sleep(8000).then(() => 'still running')]);
    assert.equal(code, 1);
    const fatal = d.logs.find((l) => l.level === 'fatal');
    assert.match(String(fatal?.msg), /^unexpected error \(uncaught exception\)/, `logs: ${JSON.stringify(d.logs.slice(-3))} stderr: ${d.stderr}`);
    assert.match(String(fatal?.error), /Error: test: an uncaught exception\n\s+at .*throw-later\.mjs/);
  } finally { await d.stop(); await emu.close(); }
});
