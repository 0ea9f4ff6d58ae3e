// The MQTT parts that need no daemon (issue 24): doctor's MQTT check and the
// link against a real Mosquitto broker (test/bench/mosquitto.ts) on a loopback
// port, with a client in Home Assistant's place.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../src/config.js';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkMqtt } from '../src/doctor.js';
import { MqttLink, REFUSED_LOG_BURST } from '../src/mqtt/link.js';
import { Broker, HaClient, freePort } from './bench/mosquitto.js';
import { fakeLog } from './bench/util.js';

test('doctor (issue 24): an mqtt.ca_file that cannot be read is a failure naming the key and the file, not an exception out of doctor', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ls-mqtt-units-'));
  try {
    const ca = join(dir, 'no-such-ca.pem');
    const config = parseConfig({ mqtt: { url: 'mqtts://127.0.0.1:1', ca_file: ca } }, null, []);
    const c = await checkMqtt(config, null);
    assert.equal(c?.verdict, 'fail');
    assert.equal(c?.detail, `mqtt.ca_file: cannot read ${ca}: ENOENT`);
    assert.match(c?.fix ?? '', /mqtt\.ca_file/);
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('MQTT link (issue 24): when Home Assistant says `online` on homeassistant/status (its birth after a restart), every discovery config, `online` and every state are published again within 3 s (HA_BIRTH_DELAY_MS), once for a burst of three', { timeout: 30_000 }, async () => {
  const broker = await Broker.start(await freePort());
  const { log, lines } = fakeLog();
  const link = new MqttLink({
    config: parseConfig({ mqtt: { url: broker.url, base_topic: 'live-speaker/unit' } }, null, []).mqtt!,
    password: null, identity: { hostname: 'unit', uniqueId: 'live_speaker_unit', model: 'test', swVersion: '0' }, log,
    transcripts: () => false,
    snapshot: () => ({ state: 'idle', muted: false, volume: 40, nextTimer: null, lastError: null }),
    onCommand: () => undefined,
  });
  const ha = await HaClient.connect(broker.url, ['homeassistant/+/live_speaker_unit/+/config', 'live-speaker/unit/#']);
  try {
    link.start();
    await ha.waitFor((s) => s.topic === 'live-speaker/unit/last_error', 5000, 'the first states');
    await sleep(300);
    const from = ha.seen.length;
    const t0 = Date.now();
    for (let i = 0; i < 3; i++) await ha.publish('homeassistant/status', 'online');
    await ha.waitFor((s) => s.topic === 'live-speaker/unit/last_error', 4000, 'the states again', from);
    assert.ok(Date.now() - t0 < 3500, `republished within 3 s (+ delivery): ${Date.now() - t0} ms`);
    await sleep(3500); // the rest of the burst would have come by now
    const again = ha.seen.slice(from);
    const count = (re: RegExp) => again.filter((s) => re.test(s.topic)).length;
    assert.equal(count(/^homeassistant\/.*\/config$/), 10, 'the ten configs, once');
    assert.equal(again.filter((s) => s.topic === 'live-speaker/unit/availability' && s.payload === 'online').length, 1);
    assert.deepEqual(['state', 'mute', 'volume', 'next_timer', 'last_error'].map((k) => ha.last(`live-speaker/unit/${k}`)), ['idle', 'OFF', '40', 'None', 'None']);
    assert.equal(count(/^live-speaker\/unit\/(state|mute|volume|next_timer|last_error)$/), 5, 'each state once');
    assert.equal(link.stats.connects, 1, 'the same connection');
    assert.equal(lines.filter((l) => l.level === 'warn').length, 0);
  } finally { await link.stop(); await ha.close(); await broker.stop(); }
});

test('config (issue 24): a user name or password in mqtt.url is refused, naming mqtt.username and mqtt.password_file (the password is read from a file, never from config.yaml)', () => {
  assert.throws(() => parseConfig({ mqtt: { url: 'mqtt://speaker:s3cret@broker.local:1883' } }, '/etc/live-speaker/config.yaml', []), (e: Error) => {
    assert.match(e.message, /'mqtt\.url': no user name or password in the URL: mqtt\.username and mqtt\.password_file/);
    return true;
  });
  assert.equal(parseConfig({ mqtt: { url: 'mqtts://broker.local:8883' } }, null, []).mqtt?.url, 'mqtts://broker.local:8883');
});

test('MQTT link (issue 24): 200 malformed commands in a burst are all refused and counted, but only REFUSED_LOG_BURST are logged (and put on Last error) one by one, plus one line saying the rest are counted; a good command after them still works', { timeout: 60_000 }, async () => {
  const broker = await Broker.start(await freePort());
  const { log, lines } = fakeLog();
  const commands: unknown[] = [];
  const link = new MqttLink({
    config: parseConfig({ mqtt: { url: broker.url, base_topic: 'live-speaker/unit' } }, null, []).mqtt!,
    password: null, identity: { hostname: 'unit', uniqueId: 'live_speaker_unit', model: 'test', swVersion: '0' }, log,
    transcripts: () => false,
    snapshot: () => ({ state: 'idle', muted: false, volume: 40, nextTimer: null, lastError: null }),
    onCommand: (c) => { commands.push(c); },
  });
  const ha = await HaClient.connect(broker.url, ['live-speaker/unit/last_error']);
  try {
    link.start();
    await ha.waitFor((s) => s.topic === 'live-speaker/unit/last_error', 5000, 'connected');
    const from = ha.seen.length;
    for (let i = 0; i < 200; i++) await ha.publish('live-speaker/unit/cmd/volume', `loud${i}`);
    await ha.publish('live-speaker/unit/cmd/volume', '35');
    const until = Date.now() + 5000;
    while (commands.length < 1 && Date.now() < until) await sleep(20);
    assert.equal(link.stats.refusedCommands, 200);
    assert.deepEqual(commands, [{ cmd: 'volume', value: 35 }]);
    const refused = lines.filter((l) => l.msg === 'mqtt: command refused');
    assert.equal(refused.length, REFUSED_LOG_BURST, `${refused.length} refusals logged one by one`);
    assert.equal(refused[0].o.error, 'the payload must be a number');
    assert.equal(lines.filter((l) => /more commands refused than are logged/.test(l.msg)).length, 1);
    await sleep(300);
    assert.equal(ha.seen.slice(from).length, REFUSED_LOG_BURST, 'Last error published once per logged refusal');
  } finally { await link.stop(); await ha.close(); await broker.stop(); }
});
