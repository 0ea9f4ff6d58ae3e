// MQTT and Home Assistant discovery (issue 24) end to end: the built daemon
// as a process, a real Mosquitto broker (test/bench/mosquitto.ts) on a
// loopback port, a client in Home Assistant's place, the loopback Live API
// emulator and the simulated sound card.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { z } from 'zod';
import { SoundCard } from './bench/soundcard.js';
import { DaemonProcess, deepMerge, startWithEmulator } from './bench/daemon.js';
import { markedReply, matchDelivery } from './bench/delivery.js';
import { Broker, HaClient, freePort } from './bench/mosquitto.js';
import { LiveEmulator, type EmulatedSession } from '../src/emulator/emulator.js';
import { controlRequest } from '../src/control.js';
import { SAY_INSTRUCTION } from '../src/conversation.js';
import { MAX_WAITING } from '../src/announce.js';
import { MAX_PACKET_BYTES, PacketSizes } from '../src/mqtt/link.js';
import { rssMiB } from './bench/util.js';

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

const BASE = 'live-speaker/test';
const CLIENT_ID = 'ls-mqtt-test';
const quiet = { conversation: { follow_up_s: 0, no_speech_timeout_s: 20, max_conversation_s: 3600 }, feedback: { error_sound: false } };
const mqttConfig = (url: string, extra: Record<string, unknown> = {}) => ({ mqtt: { url, base_topic: BASE, client_id: CLIENT_ID, ...extra } });

// ---- Home Assistant's documented schema per component (home-assistant.io integrations/<component>.mqtt and mqtt "Discovery")
const availability = z.array(z.object({ topic: z.string().min(1), payload_available: z.string().optional(), payload_not_available: z.string().optional() })).min(1);
const device = z.object({ identifiers: z.array(z.string().min(1)).min(1), name: z.string().min(1), manufacturer: z.string().optional(), model: z.string().optional(), sw_version: z.string().optional() });
const common = {
  name: z.string().min(1).nullable(),
  unique_id: z.string().regex(/^[a-zA-Z0-9_-]+$/),
  default_entity_id: z.string().regex(/^[a-z_]+\.[a-z0-9_]+$/).optional(),
  availability, device, origin: z.object({ name: z.string().min(1), sw_version: z.string().optional() }),
  icon: z.string().regex(/^mdi:/).optional(),
  entity_category: z.enum(['config', 'diagnostic']).optional(),
};
const topic = z.string().regex(/^[^#+]+$/);
const SCHEMAS: Record<string, z.ZodType> = {
  sensor: z.strictObject({ ...common, state_topic: topic, device_class: z.enum(['enum', 'timestamp']).optional(), options: z.array(z.string()).min(1).optional() })
    .refine((c) => c.device_class !== 'enum' || (c.options?.length ?? 0) > 0, 'an enum sensor needs options'),
  switch: z.strictObject({ ...common, command_topic: topic, state_topic: topic.optional(), payload_on: z.string(), payload_off: z.string() }),
  number: z.strictObject({ ...common, command_topic: topic, state_topic: topic.optional(), min: z.number(), max: z.number(), step: z.number().positive(), mode: z.enum(['auto', 'box', 'slider']), unit_of_measurement: z.string().optional() })
    .refine((c) => c.min < c.max, 'min < max'),
  button: z.strictObject({ ...common, command_topic: topic, payload_press: z.string().optional() }),
  notify: z.strictObject({ ...common, command_topic: topic }),
  event: z.strictObject({ ...common, state_topic: topic, event_types: z.array(z.string().min(1)).min(1) }),
};
const CONFIG_TOPIC = /^homeassistant\/(sensor|switch|number|button|notify|event)\/([a-zA-Z0-9_-]+)\/([a-zA-Z0-9_-]+)\/config$/;

async function withBroker<T>(fn: (b: Broker) => Promise<T>, users: Record<string, string> | null = null): Promise<T> {
  const b = await Broker.start(await freePort(), users);
  try { return await fn(b); } finally { await b.stop(); }
}

/** The configs the daemon published (retained), by topic. */
function configs(ha: HaClient): Map<string, string> {
  const m = new Map<string, string>();
  for (const s of ha.seen) if (CONFIG_TOPIC.test(s.topic)) m.set(s.topic, s.payload);
  return m;
}

test('discovery: ten retained configs, each valid against Home Assistant\'s schema for its component, one device, unique ids, availability online; the state follows a real conversation; mute, volume and press from MQTT; discovery: false removes them', { timeout: 90_000 }, async () => {
  await withBroker(async (broker) => {
    const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(quiet, mqttConfig(broker.url)), card.env);
    let ha: HaClient | null = null;
    try {
      ha = await HaClient.connect(broker.url, ['homeassistant/#', `${BASE}/#`]);
      await ha.waitFor(() => configs(ha!).size >= 10, 10_000, 'ten discovery configs');
      await ha.waitFor((s) => s.topic === `${BASE}/availability` && s.payload === 'online', 5000, 'availability online');
      const cfgs = configs(ha);
      assert.equal(cfgs.size, 10);
      const byComponent: Record<string, number> = {};
      const uniq = new Set<string>();
      let dev: string | null = null;
      for (const [t, raw] of cfgs) {
        const [, component] = CONFIG_TOPIC.exec(t)!;
        byComponent[component] = (byComponent[component] ?? 0) + 1;
        const p = JSON.parse(raw);
        const r = SCHEMAS[component].safeParse(p);
        assert.ok(r.success, `${t}: ${r.success ? '' : JSON.stringify(r.error.issues)}`);
        uniq.add(p.unique_id);
        dev ??= JSON.stringify(p.device);
        assert.equal(JSON.stringify(p.device), dev, 'one device block for every entity');
        assert.deepEqual(p.availability, [{ topic: `${BASE}/availability`, payload_available: 'online', payload_not_available: 'offline' }]);
        assert.ok(ha.seen.find((s) => s.topic === t)!.retain, `${t} is retained`);
      }
      assert.deepEqual(byComponent, { sensor: 3, switch: 1, number: 1, button: 2, notify: 2, event: 1 });
      assert.equal(uniq.size, 10, 'unique ids are unique');
      const state = JSON.parse(cfgs.get([...cfgs.keys()].find((k) => k.endsWith('/state/config'))!)!);
      assert.deepEqual(state.options, ['idle', 'connecting', 'listening', 'thinking', 'speaking', 'follow-up', 'muted', 'error']);
      assert.equal(ha.last(`${BASE}/state`), 'idle');
      assert.equal(ha.last(`${BASE}/mute`), 'OFF');
      assert.equal(ha.last(`${BASE}/next_timer`), 'None');

      // A real conversation: press, the reply, the end; the state topic follows, and the event entity says started / ended.
      const from = ha.seen.length;
      const sessionP = h.emu.waitFor('session', undefined, 5000);
      await h.daemon.pressAndWait('listening', 5000);
      const [s] = (await sessionP) as [EmulatedSession];
      assert.equal(await s.sendAudio(markedReply(600, 3), { speed: 4 }), 'complete');
      await h.daemon.waitState('idle', 8000);
      await ha.waitFor((x) => x.topic === `${BASE}/state` && x.payload === 'idle', 3000, 'state idle again', from);
      const states = ha.seen.slice(from).filter((x) => x.topic === `${BASE}/state`).map((x) => x.payload);
      assert.deepEqual(states, ['connecting', 'listening', 'speaking', 'idle']);
      const events = ha.seen.slice(from).filter((x) => x.topic === `${BASE}/event`).map((x) => JSON.parse(x.payload).event_type);
      assert.deepEqual(events, ['started', 'ended']);

      // Commands from Home Assistant: mute (switch), volume (number), press (button).
      await ha.publish(`${BASE}/cmd/mute`, 'ON');
      await ha.waitFor((x) => x.topic === `${BASE}/mute` && x.payload === 'ON', 3000, 'mute ON', from);
      assert.equal((await h.daemon.ctl('status')).state, 'muted');
      await ha.publish(`${BASE}/cmd/mute`, 'OFF');
      await ha.waitFor((x) => x.topic === `${BASE}/mute` && x.payload === 'OFF', 3000, 'mute OFF', from);
      await ha.publish(`${BASE}/cmd/volume`, '35');
      await ha.waitFor((x) => x.topic === `${BASE}/volume` && x.payload === '35', 3000, 'volume 35', from);
      assert.equal((await h.daemon.ctl('status')).volume, 35);
      const listening = h.daemon.waitState('listening', 5000);
      await ha.publish(`${BASE}/cmd/press`, 'PRESS');
      await listening;
      await h.daemon.ctl('press'); // ends it
      const status = await h.daemon.ctl('status');
      assert.equal(status.mqtt.connected, true);
      assert.equal(status.mqtt.broker, `127.0.0.1:${broker.port}`);
    } finally { await ha?.close(); await h.done(); }

    // discovery: false: the retained configs are emptied (the entities disappear); availability says offline after a clean stop.
    const emu = await LiveEmulator.start({ mode: 'scripted' });
    const d = await DaemonProcess.start({ env: card.env, config: deepMerge({ live: { base_url: emu.url } }, mqttConfig(broker.url, { discovery: false })) });
    const ha2 = await HaClient.connect(broker.url, ['homeassistant/#', `${BASE}/#`]);
    try {
      await d.waitLog((l) => l.msg === 'mqtt: connected to the broker', 10_000);
      await sleep(500);
      const seen = new Set(ha2.seen.filter((s) => CONFIG_TOPIC.test(s.topic)).map((s) => s.topic));
      assert.equal(seen.size, 0, `no retained config is left: ${[...seen].join(', ')}`);
    } finally {
      await d.stop();
      await emu.close();
    }
    await ha2.waitFor((x) => x.topic === `${BASE}/availability` && x.payload === 'offline', 3000, 'offline after a clean stop');
    await ha2.close();
  });
});

/** A daemon with the emulator (scripted) and the broker; HA's client watching the speaker's topics. */
async function speaker(broker: Broker, config: Record<string, any> = {}) {
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge(deepMerge(quiet, mqttConfig(broker.url)), config), card.env);
  const ha = await HaClient.connect(broker.url, [`${BASE}/#`]);
  await h.daemon.waitLog((l) => l.msg === 'mqtt: connected to the broker', 10_000);
  return { ...h, ha, async close() { await ha.close(); await h.done(); } };
}

/** The next session's text turn: [session, text]. */
const nextText = (emu: LiveEmulator, timeoutMs = 8000) => emu.waitFor('client-text', undefined, timeoutMs) as Promise<[EmulatedSession, string]>;

test('announce and ask end to end: the server gets the text, the reply is played whole, no microphone audio is sent for an announcement; ask then listens and the answer reaches the server; an announcement waits for a conversation to end; the queue is bounded and stop empties it', { timeout: 120_000 }, async () => {
  await withBroker(async (broker) => {
    const sp = await speaker(broker);
    const { emu, daemon, ha } = sp;
    try {
      // announce, from Home Assistant's notify entity (the message as the payload)
      const sink = card.recordSpeaker();
      await sink.ready();
      const textP = nextText(emu);
      await ha.publish(`${BASE}/cmd/announce`, 'The washing machine is done.');
      const [s, text] = await textP;
      assert.equal(text, 'Say exactly: The washing machine is done.');
      assert.ok(JSON.stringify(s.setup.systemInstruction).includes(SAY_INSTRUCTION), 'the session is told to say exactly that');
      const reply = markedReply(1500, 11);
      const idle = daemon.waitState('idle', 10_000);
      assert.equal(await s.sendAudio(reply, { speed: 2 }), 'complete');
      await idle;
      await sleep(300);
      const rec = await sink.stop();
      const m = matchDelivery(reply, rec);
      assert.equal(m.deliveredPct, 100, `the announcement was heard whole: ${m.missingMs} ms missing at ${JSON.stringify(m.missing)}`);
      assert.equal(s.audioMessages, 0, 'no microphone audio was sent during the announcement');
      await ha.waitFor((x) => x.topic === `${BASE}/result` && JSON.parse(x.payload).outcome === 'spoken', 3000, 'result spoken');
      const annStates = daemon.logs.filter((l) => l.msg === 'state').map((l) => l.to);
      assert.deepEqual(annStates.slice(-4), ['connecting', 'thinking', 'speaking', 'idle'], 'then idle, never listening');

      // ask (JSON payload): said, then listening as after a press; the user's answer reaches that session.
      const askP = nextText(emu);
      const listening = daemon.waitState('listening', 10_000);
      await ha.publish(`${BASE}/cmd/ask`, JSON.stringify({ text: 'The garage is open. Shall I close it?' }));
      const [s2, asked] = await askP;
      assert.equal(asked, 'Say exactly: The garage is open. Shall I close it?');
      await s2.sendAudio(markedReply(800, 12), { speed: 2 });
      await listening;
      const answer = await card.say('Yes please close it');
      const utter = emu.waitFor('utterance', (x) => x === s2, 10_000);
      await card.playIntoRoom(answer);
      const [, u] = await utter;
      const answerMs = (answer.length / 2 / 16000) * 1000;
      const heardMs = (u.pcm.length / 2 / 16000) * 1000;
      assert.ok(heardMs > answerMs * 0.6 && heardMs < answerMs + 1500, `the answer reached the server (${Math.round(heardMs)} ms of ${Math.round(answerMs)} ms of speech)`);
      const idle2 = daemon.waitState('idle', 5000);
      await controlRequest(daemon.socket, { cmd: 'stop' }); // ends the conversation
      await idle2;

      // During a conversation an announcement waits until it ends.
      const conv = emu.waitFor('session', undefined, 5000);
      await daemon.pressAndWait('listening', 5000);
      await conv;
      let texts = 0;
      const count = () => { texts++; };
      emu.on('client-text', count);
      const queued = (await controlRequest(daemon.socket, { cmd: 'announce', text: 'Dinner is ready.' })) as any;
      assert.equal(queued.queued.waiting, 1);
      // The queue is bounded: MAX_WAITING wait, one more is refused with a clear error.
      for (let i = 1; i < MAX_WAITING; i++) await controlRequest(daemon.socket, { cmd: 'announce', text: `Filler ${i}` });
      await assert.rejects(controlRequest(daemon.socket, { cmd: 'announce', text: 'One too many' }), new RegExp(`${MAX_WAITING} announcements are already waiting \\(at most ${MAX_WAITING}\\)`));
      await sleep(1500);
      assert.equal(texts, 0, 'nothing said while the conversation is open');
      assert.equal((await daemon.ctl('status')).state, 'listening', 'the conversation was not cut');
      // stop: the conversation ends and what waits is dropped, except... nothing: all of it.
      await controlRequest(daemon.socket, { cmd: 'stop' });
      await daemon.waitState('idle', 5000);
      await sleep(1000);
      assert.equal(texts, 0, 'stop dropped the waiting announcements');
      const st = await daemon.ctl('status');
      assert.equal(st.announcements.waiting, 0);
      assert.equal(st.announcements.dropped, MAX_WAITING);

      // Wait, then said once the conversation ends by itself.
      const conv2 = emu.waitFor('session', undefined, 5000);
      await daemon.pressAndWait('listening', 5000);
      await conv2;
      await controlRequest(daemon.socket, { cmd: 'announce', text: 'Dinner is ready.' });
      await sleep(800);
      assert.equal(texts, 0, 'waits while the conversation is open');
      const dinner = nextText(emu);
      await daemon.ctl('press'); // the conversation ends
      const [, said] = await dinner;
      assert.equal(said, 'Say exactly: Dinner is ready.');
      emu.off('client-text', count);
    } finally { await sp.close(); }
  });
});

test('muted: a question (ask) is said as an announcement, whole, with the microphone never opened and no audio sent; reported "muted: not listening"; muted again after it, never reported unmuted', { timeout: 60_000 }, async () => {
  await withBroker(async (broker) => {
    const sp = await speaker(broker);
    const { emu, daemon, ha } = sp;
    try {
      await daemon.ctl('mute');
      const mutedAt = daemon.logs.length;
      await ha.waitFor((x) => x.topic === `${BASE}/mute` && x.payload === 'ON', 3000, 'mute ON');
      const from = ha.seen.length;
      const askP = nextText(emu);
      await ha.publish(`${BASE}/cmd/ask`, 'Shall I close the garage?');
      const [s, text] = await askP;
      assert.equal(text, 'Say exactly: Shall I close the garage?');
      const reply = markedReply(900, 21);
      const sink = card.recordSpeaker();
      await sink.ready();
      const back = daemon.waitState('muted', 10_000);
      await s.sendAudio(reply, { speed: 2 });
      await back;
      await sleep(300);
      const m = matchDelivery(reply, await sink.stop());
      assert.equal(m.deliveredPct, 100, 'said whole while muted');
      const r = await ha.waitFor((x) => x.topic === `${BASE}/result` && JSON.parse(x.payload).outcome === 'not-listening', 3000, 'not-listening', from);
      assert.equal(JSON.parse(r.payload).detail, 'muted: not listening');
      assert.equal(s.audioMessages, 0, 'no microphone audio left the device');
      const st = await daemon.ctl('status');
      assert.equal(st.state, 'muted');
      assert.equal(st.microphone, 'stopped (muted)', 'the microphone was never opened');
      assert.ok(!daemon.logs.slice(mutedAt).some((l) => l.msg === 'capture started (arecord)'), 'arecord was not started while muted');
      assert.ok(!ha.seen.slice(from).some((x) => x.topic === `${BASE}/mute` && x.payload === 'OFF'), 'never reported unmuted');
      assert.ok(!daemon.states().slice(-5).includes('listening'), 'never listening');
    } finally { await sp.close(); }
  });
});

test('never the broker\'s fault: a broker that accepts and never answers, then is down, never delays ready or a press; it comes up and the daemon connects within 6 s; killed mid-reply, the reply plays whole; back, state republished within 5 s; malformed and oversized commands are refused, logged, and nothing else happens', { timeout: 120_000 }, async () => {
  const port = await freePort();
  // A "broker" that takes the TCP connection and says nothing: a hung broker.
  const held = new Set<import('node:net').Socket>();
  const silent = (await import('node:net')).createServer((c) => { held.add(c); c.on('error', () => undefined); });
  await new Promise<void>((r) => silent.listen(port, '127.0.0.1', r));
  const emu = await LiveEmulator.start({ mode: 'scripted' });
  const t0 = Date.now();
  const daemon = await DaemonProcess.start({ env: card.env, config: deepMerge(deepMerge(quiet, { live: { base_url: emu.url } }), mqttConfig(`mqtt://127.0.0.1:${port}`)) });
  let broker: Broker | null = null;
  let ha: HaClient | null = null;
  try {
    const readyMs = Date.now() - t0;
    assert.ok(readyMs < 8000, `ready in ${readyMs} ms with a hung broker`);
    assert.ok(held.size >= 1, 'the daemon did reach the hung broker');
    const p0 = Date.now();
    const sess = emu.waitFor('session', undefined, 5000);
    await daemon.pressAndWait('listening', 5000);
    const pressMs = Date.now() - p0;
    assert.ok(pressMs < 1000, `press to listening in ${pressMs} ms while the broker hangs`);
    await sess;
    assert.equal((await daemon.ctl('status')).mqtt.connected, false);
    await daemon.pressAndWait('idle', 5000);

    // Down: the hung broker goes away (its connections drop), nothing listens for a while, then Mosquitto comes up on that port.
    for (const c of held) c.destroy();
    await new Promise<void>((r) => silent.close(() => r()));
    await daemon.waitNextLog((l) => l.msg.startsWith('mqtt: not connected'), 15_000, 'the link reports the failure');
    const p1 = Date.now();
    await daemon.pressAndWait('listening', 5000);
    assert.ok(Date.now() - p1 < 1000, `press to listening in ${Date.now() - p1} ms while the broker is down`);
    await daemon.pressAndWait('idle', 5000);
    broker = await Broker.start(port);
    const upAt = Date.now();
    await daemon.waitNextLog((l) => l.msg === 'mqtt: connected to the broker', 8000, 'connected');
    assert.ok(Date.now() - upAt < 6000, `connected ${Date.now() - upAt} ms after the broker came up`);
    ha = await HaClient.connect(broker.url, ['homeassistant/#', `${BASE}/#`]);
    await ha.waitFor((x) => x.topic === `${BASE}/state` && x.payload === 'idle', 3000, 'the state, retained');

    // Killed in the middle of a reply: the reply plays on unharmed.
    const sessionP = emu.waitFor('session', undefined, 5000);
    await daemon.pressAndWait('listening', 5000);
    const [s] = (await sessionP) as [EmulatedSession];
    const sink = card.recordSpeaker();
    await sink.ready();
    const reply = markedReply(2500, 31);
    const sent = s.sendAudio(reply, { speed: 1 });
    await sleep(600);
    await broker.kill();
    const killedAt = Date.now();
    assert.equal(await sent, 'complete');
    await daemon.waitState('idle', 8000);
    await sleep(300);
    const m = matchDelivery(reply, await sink.stop());
    assert.equal(m.deliveredPct, 100, `the reply was heard whole with the broker killed: ${m.missingMs} ms missing`);
    // Gaps before the kill (600 ms into a real-time reply) would be the loaded machine's, not the broker's: from 400 ms on, none.
    const after = m.gapList.filter((g) => g.atMs >= 400);
    assert.equal(after.length, 0, `no gap in the reply from the kill on: ${JSON.stringify(m.gapList)}`);
    await daemon.waitLog((l) => l.msg.startsWith('mqtt: not connected') && Date.parse(l.time as string) >= killedAt - 50, 5000, 'the loss is logged');

    // Back again: the daemon reconnects and publishes everything again (the broker kept nothing: persistence false).
    await broker.run();
    const backAt = Date.now();
    const from = ha.seen.length;
    await ha.waitFor((x) => x.topic === `${BASE}/availability` && x.payload === 'online', 5000, 'online again', from);
    await ha.waitFor((x) => x.topic === `${BASE}/state` && x.payload === 'idle', 5000, 'state again', from);
    await ha.waitFor((x) => CONFIG_TOPIC.test(x.topic), 5000, 'discovery again', from);
    assert.ok(Date.now() - backAt < 5000, `republished ${Date.now() - backAt} ms after the broker came back`);

    // Malformed and oversized commands: each refused with a log line naming what was wrong; nothing else happens.
    const before = await daemon.ctl('status');
    const sessions = emu.sessions.length;
    const bad: [string, string | Buffer, RegExp][] = [
      ['volume', 'loud', /number/],
      ['volume', '500', /150/],
      ['mute', 'maybe', /ON or OFF/],
      ['press', 'now', /PRESS/],
      ['announce', '', /empty/],
      ['announce', '{"text": 3}', /'text'/],
      ['announce', '{"text": "hi", "extra": 1}', /extra/],
      ['announce', '{not json', /not JSON/],
      ['announce', 'x'.repeat(5000), /5000 bytes, more than 4096/],
      ['ask', 'y'.repeat(3000), /longer than 2048/],
      ['announce', Buffer.from([0xff, 0xfe, 0x41]), /not UTF-8/],
      ['reboot', 'PRESS', /unknown command 'reboot'/],
    ];
    const logFrom = daemon.logs.length;
    for (const [cmd, payload] of bad) await ha.publish(`${BASE}/cmd/${cmd}`, payload);
    await ha.publish(`${BASE}/cmd/volume`, String(before.volume)); // a good one last: everything before it has been handled
    await daemon.waitLog((l) => l.msg === 'mqtt: command' && l.cmd === 'volume', 5000, 'the good command');
    const refused = daemon.logs.slice(logFrom).filter((l) => l.msg === 'mqtt: command refused');
    assert.equal(refused.length, bad.length, `one refusal per bad command: ${JSON.stringify(refused)}`);
    bad.forEach(([cmd, , why], i) => {
      assert.ok(String(refused[i].topic).endsWith(`/cmd/${cmd}`));
      assert.match(String(refused[i].error), why, `${cmd}: ${refused[i].error}`);
    });
    const now = await daemon.ctl('status');
    assert.equal(now.state, 'idle');
    assert.equal(now.volume, before.volume);
    assert.equal(now.announcements.queued, before.announcements.queued, 'nothing queued');
    assert.equal(emu.sessions.length, sessions, 'no session opened');
    assert.equal(now.mqtt.refusedCommands, bad.length);
    assert.equal(daemon.exitCode, null);
  } finally {
    await ha?.close();
    await daemon.stop();
    await emu.close();
    await broker?.stop();
    silent.close();
  }
});

test('PacketSizes follows MQTT packet boundaries across any chunking and names the first packet over the limit at its header', () => {
  const pkt = (bodyLen: number) => {
    const len: number[] = [];
    let n = bodyLen;
    do { let b = n % 128; n = Math.floor(n / 128); if (n > 0) b |= 0x80; len.push(b); } while (n > 0);
    return Buffer.concat([Buffer.from([0x30, ...len]), Buffer.alloc(bodyLen, 7)]);
  };
  const small = Buffer.concat([pkt(0), pkt(127), pkt(128), pkt(16383), pkt(16384), pkt(65530)]);
  for (const size of [1, 2, 3, 7, 1000, small.length]) {
    const p = new PacketSizes(65536);
    for (let i = 0; i < small.length; i += size) assert.equal(p.feed(small.subarray(i, i + size)), null, `chunks of ${size}`);
    // A 32 MiB packet is named by its header alone (5 bytes), whatever follows.
    assert.equal(p.feed(pkt(32 * 1024 * 1024).subarray(0, 5)), 1 + 4 + 32 * 1024 * 1024, `after chunks of ${size}`);
  }
  const q = new PacketSizes(65536);
  assert.equal(q.feed(Buffer.from([0x30, 0x80])), null); // the length continues in the next chunk
  assert.equal(q.feed(Buffer.from([0x80, 0x10])), 1 + 3 + 0x10 * 128 * 128);
});

test('a 32 MiB message on a command topic (MQTT 3.1.1, a broker without max_packet_size): the connection is dropped at its header with a log line, the daemon grows by under 8 MiB, reconnects, and the next command works', { timeout: 60_000 }, async () => {
  await withBroker(async (broker) => {
    const emu = await LiveEmulator.start({ mode: 'scripted' });
    const daemon = await DaemonProcess.start({ env: card.env, config: deepMerge(deepMerge(quiet, { live: { base_url: emu.url } }), mqttConfig(broker.url)) });
    const ha = await HaClient.connect(broker.url, [`${BASE}/#`]);
    let sampler: NodeJS.Timeout | undefined;
    try {
      await ha.waitFor((x) => x.topic === `${BASE}/availability` && x.payload === 'online', 10_000, 'online');
      const pid = (await daemon.ctl('status')).pid as number;
      const base = rssMiB(pid);
      let peak = base;
      sampler = setInterval(() => { try { peak = Math.max(peak, rssMiB(pid)); } catch { /* exited */ } }, 20);
      const dropped = daemon.waitNextLog((l) => l.msg.startsWith('mqtt: the broker sent a packet larger'), 10_000);
      await ha.publish(`${BASE}/cmd/announce`, Buffer.alloc(32 * 1024 * 1024, 0x41));
      const line = await dropped;
      assert.ok((line.bytes as number) > 32 * 1024 * 1024 && line.max === MAX_PACKET_BYTES, JSON.stringify(line));
      const from = ha.seen.length;
      await ha.waitFor((x) => x.topic === `${BASE}/availability` && x.payload === 'online', 10_000, 'online again', from);
      clearInterval(sampler);
      assert.ok(peak - base < 8, `the daemon grew by ${(peak - base).toFixed(1)} MiB (from ${base.toFixed(1)})`);
      await ha.publish(`${BASE}/cmd/volume`, '35');
      await daemon.waitLog((l) => l.msg === 'mqtt: command' && l.cmd === 'volume', 5000, 'the next command');
      assert.equal((await daemon.ctl('status')).volume, 35);
      assert.equal(daemon.exitCode, null);
      assert.equal(emu.sessions.length, 0, 'nothing was announced');
    } finally {
      clearInterval(sampler);
      await ha.close();
      await daemon.stop();
      await emu.close();
    }
  });
});

test('wrong password: a clear error in the log and ctl status (never the password), no crash, one connection attempt in 6 s (no retry storm), the speaker works', { timeout: 60_000 }, async () => {
  await withBroker(async (broker) => {
    const secret = 'wrong-pw-5c1f9e';
    const emu = await LiveEmulator.start({ mode: 'scripted' });
    const dir = (await import('node:fs')).mkdtempSync((await import('node:path')).join((await import('node:os')).tmpdir(), 'mqtt-pw-'));
    const pwFile = `${dir}/mqtt-password`;
    (await import('node:fs')).writeFileSync(pwFile, `${secret}\n`, { mode: 0o600 });
    const daemon = await DaemonProcess.start({ env: card.env, config: deepMerge(deepMerge(quiet, { live: { base_url: emu.url } }), mqttConfig(broker.url, { username: 'speaker', password_file: pwFile })) });
    try {
      const line = await daemon.waitLog((l) => l.msg.startsWith('mqtt: not connected'), 10_000, 'the refusal');
      assert.match(String(line.error), /wrong user name or password/);
      const firstAt = Date.now();
      await sleep(6000);
      assert.equal(broker.connectAttempts(), 1, `the daemon's connection attempts in ${Date.now() - firstAt} ms: ${broker.log}`);
      const st = await daemon.ctl('status');
      assert.equal(st.mqtt.connected, false);
      assert.match(st.mqtt.lastError, /wrong user name or password/);
      assert.ok(st.mqtt.nextRetryS >= 45, `next attempt in ${st.mqtt.nextRetryS} s`);
      assert.ok(!JSON.stringify(st).includes(secret), 'the password is not in ctl status');
      assert.ok(!JSON.stringify(daemon.logs).includes(secret) && !daemon.stderr.includes(secret), 'the password is not in the log');
      const p = Date.now();
      await daemon.pressAndWait('listening', 5000);
      assert.ok(Date.now() - p < 1000, 'the press is served at once');
      assert.equal(daemon.exitCode, null);
    } finally { await daemon.stop(); await emu.close(); (await import('node:fs')).rmSync(dir, { recursive: true, force: true }); }
  }, { speaker: 'right-pw', homeassistant: 'ha-pw' });
});

test('no network for the Live API: an announcement fails visibly (error state, a log line, a failed result and the Last error sensor over MQTT) and is held for a retry in 30 s with the next one behind it; stop drops both, and the next one is taken at once', { timeout: 60_000 }, async () => {
  await withBroker(async (broker) => {
    const dead = await freePort(); // nothing listens: connection refused
    const daemon = await DaemonProcess.start({ env: card.env, config: deepMerge(deepMerge(quiet, { live: { base_url: `http://127.0.0.1:${dead}` } }), mqttConfig(broker.url)) });
    const ha = await HaClient.connect(broker.url, [`${BASE}/#`]);
    try {
      await daemon.waitLog((l) => l.msg === 'mqtt: connected to the broker', 10_000);
      const from = ha.seen.length;
      const error = daemon.waitState('error', 10_000);
      await ha.publish(`${BASE}/cmd/announce`, 'The post has arrived.');
      await error;
      const r = await ha.waitFor((x) => x.topic === `${BASE}/result`, 5000, 'a result', from);
      const result = JSON.parse(r.payload);
      assert.deepEqual((({ kind, outcome, from: f }) => ({ kind, outcome, from: f }))(result), { kind: 'announce', outcome: 'failed', from: 'mqtt' });
      assert.match(result.detail, /; trying again in 30 s \(try 1 of 4\)$/);
      const le = await ha.waitFor((x) => x.topic === `${BASE}/last_error` && x.payload !== 'None', 5000, 'last_error', from);
      assert.match(le.payload, /cannot connect|connect failed|ECONNREFUSED|fetch failed/i);
      assert.ok(daemon.logs.some((l) => l.msg === 'announce could not be said' && l.outcome === 'failed'), 'a clear log line');
      await daemon.waitState('idle', 8000);
      await ha.publish(`${BASE}/cmd/announce`, 'Second.');
      await sleep(1500);
      assert.equal(daemon.logs.filter((l) => l.msg === 'announcing for the home').length, 1, 'held: neither tried again nor the next one said');
      const held = (await daemon.ctl('status')).announcements;
      assert.equal(held.waiting, 2, JSON.stringify(held));
      assert.ok(held.retryInS > 20 && held.retryInS <= 30, JSON.stringify(held));
      await controlRequest(daemon.socket, { cmd: 'stop' });
      assert.equal((await daemon.ctl('status')).announcements.waiting, 0, 'stop drops them');
      await ha.publish(`${BASE}/cmd/announce`, 'Third.');
      await daemon.waitNextLog((l) => l.msg === 'announcing for the home', 5000, 'the next one is taken at once');
    } finally { await ha.close(); await daemon.stop(); }
  });
});
