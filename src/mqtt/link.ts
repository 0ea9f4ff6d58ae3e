// The MQTT link (issue 24): one connection to the broker (the `mqtt` npm
// client, MQTT 3.1.1 or 5), Home Assistant discovery (src/mqtt/discovery.ts),
// the speaker's state out, commands in.
//
// Never the broker's fault: nothing here is awaited by the daemon. Connecting
// happens in the background; a publish is fire-and-forget and only while
// connected (nothing is queued offline: every state is published afresh on
// each connect, retained); the last will says `offline`. A lost connection
// is retried after RETRY_MS (1 s, doubling to 30 s, with jitter); a broker
// that refuses the user name or password (or the client) after AUTH_RETRY_MS
// (1 min, doubling to 15 min): no retry storm. Each attempt is a fresh client.
// Commands are checked (size, then zod) before anything happens; a bad one
// is logged and dropped.
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { z } from 'zod';
import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import type { State } from '../ports.js';
import { MAX_VOLUME } from '../state.js';
import { MAX_TEXT_CHARS } from '../announce.js';
import { monotonicMs } from '../clock.js';
import { COMMANDS, discoveryConfigs, topics, type CommandName, type ConversationEvent, type Identity, type Topics } from './discovery.js';

export const RETRY_MS = [1000, 2000, 4000, 8000, 16000, 30000];
export const AUTH_RETRY_MS = [60_000, 120_000, 300_000, 900_000];
/** A command's payload larger than this is refused before it is parsed. */
export const MAX_PAYLOAD_BYTES = 4096;
/** MQTT 5: the largest packet the broker may send us (it drops larger ones for this client). */
export const MAX_PACKET_BYTES = 64 * 1024;
const CONNECT_TIMEOUT_MS = 10_000;
/** Refused commands logged one by one per window (as the control socket's refusals); the rest counted. */
export const REFUSED_LOG_BURST = 20;
const REFUSED_LOG_WINDOW_MS = 10_000;
/** After Home Assistant says it is back online, the configs and states are sent again after up to this long (spread). */
const HA_BIRTH_DELAY_MS = 3000;

export type MqttConfig = NonNullable<Config['mqtt']>;
export type Command =
  | { cmd: 'announce' | 'ask'; text: string; priority: boolean }
  | { cmd: 'press' | 'stop' }
  | { cmd: 'mute'; on: boolean }
  | { cmd: 'volume'; value: number };

/** What is published as the speaker's state (retained). */
export interface SpeakerState { state: State; muted: boolean; volume: number; nextTimer: string | null; lastError: string | null }

const text = z.string().trim().min(1, 'the text is empty').max(MAX_TEXT_CHARS, `the text is longer than ${MAX_TEXT_CHARS} characters`);
const sayJson = z.strictObject({ text, priority: z.boolean().default(false) });
const press = z.literal('PRESS', { error: 'the payload must be PRESS' });

/** A command from its topic's last level and payload, or what is wrong with it. */
export function parseCommand(name: CommandName, payload: Buffer): Command | { error: string } {
  if (payload.length > MAX_PAYLOAD_BYTES) return { error: `payload of ${payload.length} bytes, more than ${MAX_PAYLOAD_BYTES}` };
  const s = payload.toString('utf8');
  if (s.includes('\uFFFD')) return { error: 'the payload is not UTF-8 text' };
  const issue = (r: z.ZodSafeParseError<unknown>) => r.error.issues.map((i) => `${i.path.length ? `'${i.path.join('.')}' ` : ''}${i.message}`).join('; ');
  switch (name) {
    case 'announce':
    case 'ask': {
      // Home Assistant's notify entity sends the message as it is; an automation may send JSON with a priority flag.
      if (s.trimStart().startsWith('{')) {
        let v: unknown;
        try { v = JSON.parse(s); } catch (e) { return { error: `not JSON (${(e as Error).message.slice(0, 80)}); send the text itself, or {"text": "...", "priority": true}` }; }
        const r = sayJson.safeParse(v);
        return r.success ? { cmd: name, text: r.data.text, priority: r.data.priority } : { error: issue(r) };
      }
      const r = text.safeParse(s);
      return r.success ? { cmd: name, text: r.data, priority: false } : { error: issue(r) };
    }
    case 'press':
    case 'stop': {
      const r = press.safeParse(s.trim());
      return r.success ? { cmd: name } : { error: issue(r) };
    }
    case 'mute': {
      const r = z.enum(['ON', 'OFF'], { error: 'the payload must be ON or OFF' }).safeParse(s.trim());
      return r.success ? { cmd: 'mute', on: r.data === 'ON' } : { error: issue(r) };
    }
    case 'volume': {
      const r = z.coerce.number({ error: 'the payload must be a number' }).int('the volume must be a whole percent').min(0, `the volume must be 0 to ${MAX_VOLUME}`).max(MAX_VOLUME, `the volume must be 0 to ${MAX_VOLUME}`).safeParse(s.trim() === '' ? NaN : s.trim());
      return r.success ? { cmd: 'volume', value: r.data } : { error: issue(r) };
    }
  }
}

export interface MqttLinkOptions {
  config: MqttConfig;
  password: string | null;
  identity: Identity;
  log: Logger;
  /** log.transcripts: whether event attributes may carry what was said. */
  transcripts: () => boolean;
  /** The state to publish, read at each (re)connect. */
  snapshot: () => SpeakerState;
  /** A valid command; a thrown Error is logged as refused (and published on last_error). */
  onCommand: (c: Command) => void;
}

/** Why the last attempt failed, in words; `auth`: the broker refused who we are. */
export function describeError(e: Error & { code?: string | number }): { reason: string; auth: boolean } {
  const code = e.code;
  // CONNACK: 3.1.1 return codes 4 (bad user name or password) and 5 (not authorized); MQTT 5 reason codes 134, 135, 133, 140.
  if (code === 4 || code === 134) return { reason: 'the broker refused the user name or password (check mqtt.username and mqtt.password_file)', auth: true };
  // Mosquitto answers a wrong password with 5 (3.1.1) / 135 (5): "not authorized".
  if (code === 5 || code === 135) return { reason: 'the broker refused the connection as not authorized: a wrong user name or password, or a user it does not allow (check mqtt.username, mqtt.password_file and the broker\'s password file)', auth: true };
  if (code === 133 || code === 2) return { reason: 'the broker refused the client id (mqtt.client_id)', auth: true };
  if (typeof code === 'string') return { reason: `${code}: ${e.message.slice(0, 160)}`, auth: false };
  return { reason: e.message.slice(0, 200), auth: false };
}

export class MqttLink extends EventEmitter {
  readonly topics: Topics;
  private client: MqttClient | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private birthTimer: NodeJS.Timeout | null = null;
  private failures = 0;
  private stopped = false;
  private readonly clientId: string;
  private readonly host: string;
  /** For `ctl status` and doctor: never the password. */
  readonly stats = { connected: false, attempts: 0, connects: 0, lastError: null as string | null, lastErrorAt: null as string | null, nextRetryS: null as number | null, refusedCommands: 0, commands: 0 };

  constructor(private readonly o: MqttLinkOptions) {
    super();
    this.topics = topics(o.config.base_topic ?? `live-speaker/${topicSafeHost(o.identity.hostname)}`, o.config.discovery_prefix);
    this.clientId = o.config.client_id ?? `live-speaker-${topicSafeHost(o.identity.hostname)}`;
    this.host = new URL(o.config.url).host;
  }

  /** Connect in the background; returns at once. */
  start(): void { this.attempt(); }

  status() {
    return { broker: this.host, clientId: this.clientId, baseTopic: this.topics.base, deviceId: this.o.identity.uniqueId, discovery: this.o.config.discovery, ...this.stats };
  }

  private options(): IClientOptions {
    const c = this.o.config;
    const file = (p: string | null) => (p ? readFileSync(p) : undefined); // read at each attempt: a renewed certificate is picked up
    return {
      clientId: this.clientId,
      protocolVersion: c.protocol_version,
      username: c.username ?? undefined,
      password: this.o.password ?? undefined,
      clean: true,
      keepalive: 30,
      connectTimeout: CONNECT_TIMEOUT_MS,
      reconnectPeriod: 0, // retries are ours (back-off, and a long one when the broker refuses the password)
      queueQoSZero: false, // nothing queued while offline: states are published afresh on connect
      ...(c.protocol_version === 5 ? { properties: { maximumPacketSize: MAX_PACKET_BYTES } } : {}),
      will: { topic: this.topics.availability, payload: Buffer.from('offline'), qos: 1, retain: true },
      ca: file(c.ca_file), cert: file(c.cert_file), key: file(c.key_file),
    };
  }

  private attempt(): void {
    this.retryTimer = null;
    if (this.stopped) return;
    this.stats.attempts++;
    this.stats.nextRetryS = null;
    let client: MqttClient;
    try {
      client = mqtt.connect(this.o.config.url, this.options());
    } catch (e) {
      this.failed({ reason: `cannot connect: ${(e as Error).message}`, auth: false });
      return;
    }
    this.client = client;
    let lastReason: string | null = null;
    let oversized = false; // dropped for a packet too large: the back-off is not started afresh (a retained one would come again)
    // MQTT 3.1.1 has no way to tell the broker the largest packet we take, and the client
    // buffers a packet whole before it parses it: the connection is dropped at the header
    // of one over MAX_PACKET_BYTES, so no publisher on the broker can make us hold more.
    const stream = (client as unknown as { stream?: NodeJS.ReadableStream & { destroy(e?: Error): void } }).stream;
    const sizes = new PacketSizes(MAX_PACKET_BYTES);
    stream?.on('data', (chunk: Buffer) => {
      const over = sizes.feed(chunk);
      if (over !== null) {
        this.o.log.warn({ bytes: over, max: MAX_PACKET_BYTES }, 'mqtt: the broker sent a packet larger than the speaker takes; connection dropped (set max_packet_size on the broker, or protocol_version 5)');
        lastReason = `the broker sent a ${over}-byte packet (at most ${MAX_PACKET_BYTES})`;
        oversized = true;
        stream.destroy();
      }
    });
    let authRefused = false;
    client.on('connect', () => this.connected(client));
    client.on('message', (topic, payload) => this.message(topic, payload));
    client.on('error', (e) => {
      const d = describeError(e as Error & { code?: string | number });
      authRefused ||= d.auth;
      lastReason = d.reason;
    });
    client.on('close', () => {
      if (this.client !== client) return; // an older client, already given up
      const wasConnected = this.stats.connected;
      this.stats.connected = false;
      this.client = null;
      client.removeAllListeners('close');
      client.on('error', () => undefined);
      client.end(true);
      if (this.stopped) return;
      if (wasConnected && !oversized) this.failures = 0; // it worked a while: start the back-off afresh
      this.failed({ reason: lastReason ?? (wasConnected ? 'the connection to the broker was lost' : 'the broker closed the connection'), auth: authRefused });
    });
  }

  private failed(d: { reason: string; auth: boolean }): void {
    const delays = d.auth ? AUTH_RETRY_MS : RETRY_MS;
    const base = delays[Math.min(this.failures, delays.length - 1)];
    this.failures++;
    const delay = Math.round(base * (0.8 + Math.random() * 0.4));
    this.stats.lastError = d.reason;
    this.stats.lastErrorAt = new Date().toISOString();
    this.stats.nextRetryS = Math.round(delay / 1000);
    // One warning per failure (at most one per back-off step: no storm in the journal either).
    this.o.log.warn({ broker: this.host, error: d.reason, retryInS: this.stats.nextRetryS, attempt: this.stats.attempts }, 'mqtt: not connected to the broker; retrying (the speaker works meanwhile)');
    this.emit('status');
    this.retryTimer = setTimeout(() => this.attempt(), delay);
    this.retryTimer.unref();
  }

  private connected(client: MqttClient): void {
    this.stats.connected = true;
    this.stats.connects++;
    this.stats.nextRetryS = null;
    this.failures = 0;
    this.o.log.info({ broker: this.host, clientId: this.clientId, base: this.topics.base }, 'mqtt: connected to the broker');
    const t = this.topics;
    client.subscribe([`${t.base}/cmd/+`, t.haStatus], { qos: 1 }, (e) => {
      if (e) this.o.log.warn({ error: e.message }, 'mqtt: cannot subscribe to the command topics (check the broker\'s ACL)');
    });
    this.announceAll(client);
    this.emit('status');
  }

  /** Discovery (or its removal), availability, and every state: on each connect and when Home Assistant comes back. */
  private announceAll(client: MqttClient): void {
    const configs = discoveryConfigs(this.o.identity, this.topics, this.o.config.discovery_prefix);
    for (const c of configs) {
      // discovery: false clears what an earlier start announced (an empty retained config removes the entity).
      client.publish(c.topic, this.o.config.discovery ? JSON.stringify(c.payload) : '', { qos: 1, retain: true });
    }
    client.publish(this.topics.availability, 'online', { qos: 1, retain: true });
    this.publishState(this.o.snapshot());
  }

  /** Fire-and-forget; nothing when not connected (the next connect publishes the state afresh). */
  private publish(topic: string, payload: string, retain: boolean): void {
    const c = this.client;
    if (!c || !this.stats.connected) return;
    c.publish(topic, payload, { qos: 0, retain }, () => undefined);
  }

  publishState(s: Partial<SpeakerState>): void {
    const t = this.topics;
    if (s.state !== undefined) this.publish(t.state, s.state, true);
    if (s.muted !== undefined) this.publish(t.mute, s.muted ? 'ON' : 'OFF', true);
    if (s.volume !== undefined) this.publish(t.volume, String(s.volume), true);
    // "None": Home Assistant's MQTT sensor takes it as unknown.
    if (s.nextTimer !== undefined) this.publish(t.nextTimer, s.nextTimer ?? 'None', true);
    if (s.lastError !== undefined) this.publish(t.lastError, s.lastError === null ? 'None' : s.lastError.slice(0, 255), true);
  }

  /** The conversation event entity; `attrs` are dropped unless log.transcripts is on when they carry text. */
  event(type: ConversationEvent, attrs: Record<string, unknown> = {}, text: Record<string, string> = {}): void {
    this.publish(this.topics.event, JSON.stringify({ event_type: type, ...attrs, ...(this.o.transcripts() ? text : {}) }), false);
  }

  /** An announcement's or question's outcome, for automations (not retained). */
  result(r: object): void { this.publish(this.topics.result, JSON.stringify(r), false); }

  private message(topic: string, payload: Buffer): void {
    const t = this.topics;
    if (topic === t.haStatus) {
      if (payload.toString() !== 'online') return;
      // Home Assistant restarted: configs and states again, a moment later (as its docs recommend).
      if (this.birthTimer) return;
      this.birthTimer = setTimeout(() => { this.birthTimer = null; if (this.client && this.stats.connected) this.announceAll(this.client); }, Math.random() * HA_BIRTH_DELAY_MS);
      this.birthTimer.unref();
      return;
    }
    const name = topic.startsWith(`${t.base}/cmd/`) ? topic.slice(t.base.length + 5) : '';
    if (!(COMMANDS as readonly string[]).includes(name)) { this.refuse(topic, payload, `unknown command '${name.slice(0, 40)}' (known: ${COMMANDS.join(', ')})`); return; }
    const c = parseCommand(name as CommandName, payload);
    if ('error' in c) { this.refuse(topic, payload, c.error); return; }
    this.stats.commands++;
    this.o.log.info({ cmd: c.cmd, topic }, 'mqtt: command');
    try { this.o.onCommand(c); } catch (e) { this.refuse(topic, payload, (e as Error).message); }
  }

  /** Refusals logged (and published on last_error) in the current window; past REFUSED_LOG_BURST only counted. */
  private refusedWindow = { start: -Infinity, logged: 0, notLogged: 0 };

  private refuse(topic: string, payload: Buffer, error: string): void {
    this.stats.refusedCommands++;
    // A client flooding bad commands must not flood the journal (nor echo each on last_error): REFUSED_LOG_BURST per window, the rest counted.
    const w = this.refusedWindow;
    const now = monotonicMs();
    if (now - w.start >= REFUSED_LOG_WINDOW_MS) { this.refusedWindow = { start: now, logged: 0, notLogged: 0 }; return this.refuse2(topic, payload, error, w.notLogged); }
    if (w.logged >= REFUSED_LOG_BURST) {
      if (w.notLogged++ === 0) this.o.log.warn({ burst: REFUSED_LOG_BURST, windowS: REFUSED_LOG_WINDOW_MS / 1000 }, 'mqtt: more commands refused than are logged; the rest of this window only counted (ctl status: mqtt.refusedCommands)');
      return;
    }
    this.refuse2(topic, payload, error, 0);
  }

  private refuse2(topic: string, payload: Buffer, error: string, notLoggedBefore: number): void {
    this.refusedWindow.logged++;
    this.o.log.warn({ topic: topic.slice(0, 200), bytes: payload.length, error, ...(notLoggedBefore ? { notLoggedBefore } : {}) }, 'mqtt: command refused');
    this.publishState({ lastError: `command refused (${topic.slice(this.topics.base.length + 1)}): ${error}` });
  }

  /** Clean stop: `offline` (retained) then disconnect; at most 1 s. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    if (this.birthTimer) clearTimeout(this.birthTimer);
    const c = this.client;
    this.client = null;
    if (!c) return;
    if (this.stats.connected) c.publish(this.topics.availability, 'offline', { qos: 0, retain: true });
    await new Promise<void>((res) => {
      const t = setTimeout(() => { c.end(true); res(); }, 1000);
      c.end(false, {}, () => { clearTimeout(t); res(); });
    });
  }
}

const topicSafeHost = (h: string) => h.toLowerCase().replace(/[^a-z0-9_-]+/g, '_') || 'speaker';

/**
 * Follows MQTT packet boundaries in the bytes a broker sends (the fixed
 * header: a type byte, then the remaining length in 1-4 bytes of 7 bits):
 * `feed` returns a packet's whole size as soon as its header says it is
 * over `max`, else null. Holds nothing but a few counters.
 */
export class PacketSizes {
  private left = 0; // bytes of the current packet's body still to come
  private inHeader = false; // reading the remaining length
  private len = 0;
  private mul = 1;
  private lenBytes = 0;
  constructor(private readonly max: number) {}

  feed(chunk: Buffer): number | null {
    let i = 0;
    while (i < chunk.length) {
      if (this.left > 0) { const n = Math.min(this.left, chunk.length - i); this.left -= n; i += n; continue; }
      if (!this.inHeader) { this.inHeader = true; this.len = 0; this.mul = 1; this.lenBytes = 0; i++; continue; } // the type byte
      const b = chunk[i++];
      this.len += (b & 0x7f) * this.mul;
      this.mul *= 128;
      this.lenBytes++;
      if (b & 0x80 && this.lenBytes < 4) continue;
      this.inHeader = false;
      const total = 1 + this.lenBytes + this.len;
      if (total > this.max) return total;
      this.left = this.len;
    }
    return null;
  }
}
