// Fuzz (issue 25), the MQTT border: the built daemon, a real Mosquitto
// (test/bench/mosquitto.ts), for a bounded time (FUZZ_MS, default 20 s, half for each protocol)
// seeded cases (FUZZ_SEED, default 25; a failure names the seed and the
// case), each a message published as Home Assistant would: mutated valid
// command payloads (test/bench/fuzz.ts: announce/ask text and JSON, volume,
// mute, press, stop, priority flags; wrong types, nulls, extra fields, deep
// nesting, strings around the 4 KiB cap, invalid UTF-8, random bytes) on the
// command topics, random topic levels under cmd/ (valid MQTT topic names:
// a broker disconnects a client that publishes U+0000 or a control
// character), and homeassistant/status.
// Each case is classified before it is sent by the daemon's own parser
// (parseCommand, the same zod schemas); what it must be refused for (size,
// UTF-8) is checked against a reference written here. Valid press, stop,
// announce and ask are not sent (they would open sessions: the fuzz is about
// refusals, and the end checks that no session was opened); valid volume and
// mute are sent and must be applied.
// Pass: no crash; every bad message refused and counted once (ctl status),
// by the parser for the reference's reason where it gives one (size, UTF-8);
// each 'mqtt: command refused' line (at most REFUSED_LOG_BURST per 10 s, the
// rest counted and said so) matched in order to its message: its topic, its
// size, and the reason (the reference's, 'unknown command', or another short
// one);
// every valid one logged as a command and applied (the last volume and mute
// win); nothing from homeassistant/status refused; RSS bounded; no session
// opened; afterwards a press starts a conversation.
import { test, before, after } from 'node:test';
import { readFileSync } from 'node:fs';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SoundCard } from './bench/soundcard.js';
import { deepMerge, startWithEmulator } from './bench/daemon.js';
import { Broker, HaClient, freePort } from './bench/mosquitto.js';
import { rssMiB } from './bench/util.js';
import { rng, int, pick, mutateN, oddValue, junkBytes, brokenJson, deep, type Rand } from './bench/fuzz.js';
import { parseCommand, MAX_PACKET_BYTES, MAX_PAYLOAD_BYTES, REFUSED_LOG_BURST } from '../src/mqtt/link.js';
import { COMMANDS, type CommandName } from '../src/mqtt/discovery.js';

const SEED = Number(process.env.FUZZ_SEED ?? 25);
const BUDGET_MS = Number(process.env.FUZZ_MS ?? 20_000);
const BASE = 'live-speaker/fuzz';

let card: SoundCard;
before(async () => { card = await SoundCard.start(); });
after(async () => { await card?.stop(); });

const TEXTS = ['The washing machine is done.', 'Dinner is ready', 'é漢🙂 ok', 'PRESS', '40'];
const JSON_SAMPLES: object[] = [
  { text: 'The washing machine is done.' }, { text: 'The garage is open. Shall I close it?', priority: true }, { text: 'Dinner', priority: false },
];
const PLAIN: Record<CommandName, string[]> = {
  announce: TEXTS, ask: TEXTS, press: ['PRESS'], stop: ['PRESS'], mute: ['ON', 'OFF'], volume: ['40', '0', '150', '35', '100'],
};

/** A string made odd: cut, cased, padded, grown around the cap, a stray character, or something else altogether. */
function oddText(r: Rand, s: string): string {
  switch (int(r, 12)) {
    case 0: return s.slice(0, int(r, s.length + 1));
    case 1: return r() < 0.5 ? s.toLowerCase() : s.toUpperCase();
    case 2: return pick(r, [' ', '\n', '\t', '\u00a0', '\u0000']) + s + pick(r, ['', ' ', '\r\n']);
    case 3: return s.repeat(Math.ceil(pick(r, [2047, 2048, 2049, MAX_PAYLOAD_BYTES - 1, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES + 1, 10_000]) / Math.max(1, s.length))).slice(0, pick(r, [2048, 2049, MAX_PAYLOAD_BYTES, MAX_PAYLOAD_BYTES + 1, 9000]));
    case 4: { const i = int(r, s.length + 1); return s.slice(0, i) + pick(r, ['\ufffd', '\ud800', '\u0000', '"', '{', '%s', '🙂', '\u200b']) + s.slice(i); }
    case 5: return pick(r, ['40.5', '1e2', '0x20', '-0', '-1', '151', 'Infinity', 'NaN', '', ' ', '４０', '40%', 'true', 'null', '[]', '{}', 'on', 'Press', 'ON ', 'OFF\n']);
    case 6: return String(oddValue(r));
    case 7: return JSON.stringify(oddValue(r)) ?? '';
    case 8: return '{' + s;
    default: return s;
  }
}

/** One case: the topic's last level (null: homeassistant/status) and the payload. */
function oneCase(r: Rand): { name: string | null; payload: Buffer } {
  const k = int(r, 20);
  if (k === 0) return { name: null, payload: pick(r, [Buffer.from('online'), Buffer.from('offline'), Buffer.from('ONLINE'), Buffer.from(''), junkBytes(r, 64), Buffer.from('online'.repeat(700))]) };
  const name: string = k === 1
    ? pick(r, ['', 'reboot', 'Press', 'volume ', 'ANNOUNCE', 'announce ', 'é漢🙂', 'x'.repeat(300), '..', 'cmd', '$SYS', 'volume_', '__proto__'])
    : pick(r, COMMANDS);
  const known = (COMMANDS as readonly string[]).includes(name) ? name as CommandName : 'announce';
  let payload: Buffer;
  switch (int(r, 11)) {
    case 9: payload = Buffer.alloc(20_000 + int(r, 40_000), pick(r, ['x', '{', ' '])); break; // under the packet cap, over the command's: refused for its size
    case 0: case 1: case 2: payload = Buffer.from(oddText(r, pick(r, PLAIN[known]))); break;
    case 3: case 4: {
      let v: unknown;
      try { v = JSON.stringify(mutateN(r, pick(r, JSON_SAMPLES))); } catch { v = undefined; }
      payload = Buffer.from(typeof v === 'string' ? v : '{"text":' + '['.repeat(3000) + ']'.repeat(3000) + '}');
      break;
    }
    case 5: payload = Buffer.from(JSON.stringify({ text: deep(pick(r, [10, 500, 2000]), 'hi', r() < 0.5) })); break;
    case 6: payload = Buffer.from(brokenJson(r, pick(r, JSON_SAMPLES))); break;
    case 7: payload = junkBytes(r, pick(r, [16, 300, 5000])); break;
    case 8: { const b = Buffer.from(pick(r, PLAIN[known])); const i = int(r, b.length + 1); payload = Buffer.concat([b.subarray(0, i), Buffer.from([pick(r, [0xff, 0xc3, 0x80, 0xed, 0xf0])]), b.subarray(i)]); break; }
    default: payload = Buffer.from(pick(r, PLAIN[known])); break; // valid as it is
  }
  return { name, payload };
}

/** The reference for why a bad payload must be refused, where that does not depend on the command: size first, then UTF-8. */
function mustSay(payload: Buffer): RegExp | null {
  if (payload.length > MAX_PAYLOAD_BYTES) return new RegExp(`${payload.length} bytes, more than ${MAX_PAYLOAD_BYTES}`);
  try { new TextDecoder('utf-8', { fatal: true }).decode(payload); } catch { return /not UTF-8/; }
  return null;
}

/**
 * Where a message stands against the daemon's packet cap (MAX_PACKET_BYTES) once the broker sends it on at QoS 1: a
 * PUBLISH is 1 type byte, 1-4 length bytes, 2 + the topic, a 2-byte packet id, (MQTT 5) 1+ bytes of properties, the payload.
 */
function packet(topic: string, payload: Buffer): 'under' | 'over' | 'edge' {
  const body = 2 + Buffer.byteLength(topic) + 2 + payload.length;
  if (body + 1 + 4 + 8 <= MAX_PACKET_BYTES) return 'under';
  if (body + 1 + 1 > MAX_PACKET_BYTES) return 'over';
  return 'edge';
}

// Two runs, a daemon each, half the budget each:
// - MQTT 3.1.1 (the default): 3.1.1 has no way to tell the broker the largest packet the client takes, so the daemon
//   drops the connection at the header of one over its cap (mqtt.test.ts, the 32 MiB case), and a command sent while it
//   reconnects is lost (clean session). Those cases are made but not sent here (counted), or nothing else could be checked.
// - MQTT 5: the daemon says its maximum packet size in CONNECT; over-cap messages are not sent either (see below).
for (const proto of [4, 5] as const) test(`MQTT fuzz (MQTT ${proto === 4 ? '3.1.1' : '5'}): seeded (${SEED + proto}), ${BUDGET_MS / 2000} s of mutated command payloads, random topic levels under cmd/ and homeassistant/status through a real Mosquitto; every bad one refused for the reference's reason and counted once, each logged one matched to its message, every valid volume/mute applied, RSS bounded, no session opened, a press served afterwards`, { timeout: BUDGET_MS / 2 + 90_000 }, async () => {
  const SEED_P = SEED + proto;
  const broker = await Broker.start(await freePort());
  const h = await startWithEmulator({ mode: 'scripted' }, deepMerge({ conversation: { follow_up_s: 0, no_speech_timeout_s: 20 }, feedback: { error_sound: false } }, { mqtt: { url: broker.url, base_topic: BASE, client_id: 'ls-fuzz', protocol_version: proto } }), card.env);
  const { daemon, emu } = h;
  let ha: HaClient | null = null;
  let sampler: NodeJS.Timeout | undefined;
  try {
    await daemon.waitLog((l) => l.msg === 'mqtt: connected to the broker', 10_000);
    ha = await HaClient.connect(broker.url, [`${BASE}/availability`]);
    const pid = (await daemon.ctl('status')).pid as number;
    const st0 = await daemon.ctl('status');
    // The RSS figures below hold for the heap as the unit caps it (ExecStart's --max-old-space-size): the daemon runs so.
    assert.ok(readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').some((a) => /^--max-old-space-size=\d+$/.test(a)), 'the daemon runs with the unit\'s heap cap');
    const base = rssMiB(pid);
    let peak = base;
    const windows: number[] = []; // peak RSS per 2 s of fuzzing
    const tStart = performance.now();
    sampler = setInterval(() => { try { const m = rssMiB(pid); peak = Math.max(peak, m); const w = Math.floor((performance.now() - tStart) / 2000); windows[w] = Math.max(windows[w] ?? 0, m); } catch { /* gone */ } }, 100);
    const sessions = emu.sessions.length;
    const logFrom = daemon.logs.length;
    const r = rng(SEED_P);
    const expected: { topic: string; bytes: number; why: RegExp | null; at: string; t: number }[] = []; // the refusals, in order
    const accepted: string[] = [];
    let volume = st0.volume as number;
    let muted = st0.state === 'muted';
    let cases = 0;
    let skipped = 0;
    let haStatus = 0;
    let notSent = 0;
    const t0 = performance.now();
    // The broker queues at most max_queued_messages (1000 by default) for a client that falls behind, and drops the rest:
    // on a loaded machine the daemon can fall that far behind a publisher that only waits for the broker's PUBACK. So
    // the publisher waits, every 200 cases, until at most 500 of its command messages are still to reach the daemon.
    const handled0 = (st0.mqtt.commands as number) + (st0.mqtt.refusedCommands as number);
    while (performance.now() - t0 < BUDGET_MS / 2) {
      if (cases % 200 === 0) {
        const behind = async () => { const m = (await daemon.ctl('status')).mqtt; return expected.length + accepted.length - (m.commands + m.refusedCommands - handled0); };
        const w0 = performance.now();
        while (await behind() > 500) { assert.ok(performance.now() - w0 < 30_000, 'the daemon did not catch up within 30 s'); await sleep(20); }
      }
      const { name, payload } = oneCase(r);
      const at = `seed ${SEED_P}, case ${cases}`;
      cases++;
      // A publish the broker does not acknowledge within 5 s fails the case (it would otherwise be retried for ever).
      const send = (t: string) => Promise.race([ha!.publish(t, payload), sleep(5000).then(() => { throw new Error(`${at}: the broker did not take a publish on ${JSON.stringify(t.slice(0, 80))}`); })]);
      const topic = name === null ? 'homeassistant/status' : `${BASE}/cmd/${name}`;
      const size = packet(topic, payload);
      // Not sent over the cap with MQTT 5 either: in the fresh-Debian (trixie) root, Mosquitto stopped delivering to the
      // daemon after such messages (the publisher waited 30 s for it to catch up), while Debian 12's 2.0.11 drops them
      // for the client as MQTT 5 says. Left to be understood (the closing note of this stop says so).
      if (size !== 'under') { notSent++; continue; }
      if (name === null) { haStatus++; await send(topic); continue; }
      if (!(COMMANDS as readonly string[]).includes(name)) {
        expected.push({ topic, bytes: payload.length, why: /unknown command/, at, t: performance.now() - t0 });
      } else {
        const c = parseCommand(name as CommandName, payload);
        const must = mustSay(payload);
        // Every case, not only the logged ones: the parser refuses for the reason the reference gives, where it gives one.
        if (must) assert.ok('error' in c && must.test(c.error), `${at}: must be refused as ${must}, parser says ${JSON.stringify(c).slice(0, 200)}`);
        if ('error' in c) expected.push({ topic, bytes: payload.length, why: must, at, t: performance.now() - t0 });
        else if (c.cmd === 'volume') { volume = c.value; accepted.push('volume'); }
        else if (c.cmd === 'mute') { muted = c.on; accepted.push('mute'); }
        else { skipped++; continue; } // a valid press, stop, announce or ask: not sent (it would open or end a session)
      }
      await send(topic);
    }
    const elapsed = (performance.now() - t0) / 1000;
    // A good command last: everything before it has been handled when it is.
    await ha.publish(`${BASE}/cmd/volume`, String(volume));
    accepted.push('volume');
    const lastCmd = () => daemon.logs.slice(logFrom).filter((l) => l.msg === 'mqtt: command').length;
    await daemon.waitLog(() => lastCmd() >= accepted.length, 20_000, `${accepted.length} commands`);
    clearInterval(sampler);
    peak = Math.max(peak, rssMiB(pid));
    assert.equal(daemon.exitCode, null, 'the daemon is running');
    const lines = daemon.logs.slice(logFrom);
    const refused = lines.filter((l) => l.msg === 'mqtt: command refused');
    const commands = lines.filter((l) => l.msg === 'mqtt: command').map((l) => String(l.cmd));
    assert.deepEqual(commands, accepted, 'every valid command taken, once, in order');
    // The daemon logs at most REFUSED_LOG_BURST refusals per window (a flood must not flood the journal); a line after a
    // silent stretch says how many were only counted (notLoggedBefore). Each logged line is matched to its message by that.
    let j = 0;
    refused.forEach((l) => {
      j += Number(l.notLoggedBefore ?? 0);
      const e = expected[j++];
      assert.ok(e, `more refusal lines than bad messages (${refused.length} lines, ${expected.length} sent)`);
      assert.equal(l.topic, e.topic.slice(0, 200), `${e.at}: the topic`);
      assert.equal(l.bytes, e.bytes, `${e.at}: the size`);
      assert.ok(typeof l.error === 'string' && l.error.length > 0 && l.error.length < 500, `${e.at}: a clear reason, got ${JSON.stringify(l.error)?.slice(0, 300)}`);
      if (e.why) assert.match(String(l.error), e.why, `${e.at}: refused as what it is`);
      else assert.doesNotMatch(String(l.error), /not UTF-8|more than \d+$/, `${e.at}: valid UTF-8 under the cap, refused for ${l.error}`);
    });
    assert.ok(refused.length >= Math.min(expected.length, REFUSED_LOG_BURST), 'the first refusals of a window are each logged');
    assert.equal(lines.filter((l) => l.level === 'fatal' || l.level === 'error').length, 0, 'nothing fatal');
    const st = await daemon.ctl('status');
    assert.equal(st.mqtt.refusedCommands - st0.mqtt.refusedCommands, expected.length, 'refusals counted once each');
    assert.equal(st.volume, volume, 'the last valid volume was applied');
    assert.equal(st.state === 'muted', muted, 'the last valid mute was applied');
    assert.equal(st.mqtt.connected, true, 'still connected');
    assert.doesNotMatch(broker.log, /Outgoing messages are being dropped/, 'the broker dropped nothing for the daemon');
    assert.equal(st.mqtt.connects, st0.mqtt.connects, 'the connection never dropped');
    assert.equal(emu.sessions.length, sessions, 'no session was opened');
    const growth = peak - base;
    console.log(`# MQTT fuzz (protocol ${proto}): seed ${SEED_P}, ${cases} cases in ${elapsed.toFixed(1)} s: ${expected.length} refused (${Math.round(expected.reduce((n, e) => n + e.bytes, 0) / Math.max(1, expected.length))} bytes on average, ${(expected.filter((e) => e.t >= 4000).reduce((n, e) => n + e.bytes, 0) / 2 ** 20).toFixed(0)} MiB after the first 4 s), ${accepted.length - 1} valid volume/mute applied, ${skipped} valid press/stop/announce/ask not sent, ${haStatus} on homeassistant/status, ${notSent} over or at the packet cap not sent; daemon RSS ${base.toFixed(1)} -> peak ${peak.toFixed(1)} MiB (+${growth.toFixed(1)}), peak per 2 s ${windows.map((w) => w.toFixed(0)).join(', ')}`);
    // From the start: V8 sizes its heap for the 20-60 KiB payloads in the first seconds (+13 to +20.2 MiB measured, the
    // last in CI on a loaded machine); the bound that tells a leak is the one after warm-up, below.
    assert.ok(growth < 40, `daemon RSS grew by ${growth.toFixed(1)} MiB (bound 40)`);
    // After the first 4 s (V8 has sized its heap): measured +1 to +4 MiB to the end of 10 s, with 53-55 MiB refused in that
    // time (payloads average ~5.8 KiB, some 20-60 KiB). The bound means something only
    // if the payloads refused after that are well over it (a daemon keeping them would grow by as much): checked.
    const lateMiB = expected.filter((e) => e.t >= 4000).reduce((n, e) => n + e.bytes, 0) / 2 ** 20;
    assert.ok(lateMiB >= 2 * 8, `only ${lateMiB.toFixed(1)} MiB refused after the first 4 s: too little for the 8 MiB bound to tell a leak`);
    const warm = Math.max(windows[0] ?? 0, windows[1] ?? 0);
    assert.ok(peak - warm < 8, `daemon RSS grew by ${(peak - warm).toFixed(1)} MiB after the first 4 s (bound 8): ${windows.map((w) => w.toFixed(0)).join(', ')}`);
    // Still serves: unmuted, a press starts a conversation.
    if (muted) await daemon.ctl('unmute');
    await sleep(200);
    await daemon.pressAndWait('listening', 8000);
    assert.equal(emu.sessions.length, sessions + 1, 'the press opened a session');
  } finally {
    clearInterval(sampler);
    await ha?.close();
    await h.done();
    await broker.stop();
  }
});
