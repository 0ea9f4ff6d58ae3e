// A real Mosquitto broker for the MQTT tests (issue 24): Debian's
// /usr/sbin/mosquitto (scripts/deps.sh), started on a loopback port with a
// config written for the test (anonymous, or a password file made with
// /usr/bin/mosquitto_passwd), its verbose log kept so a test can count
// connection attempts. Plus a client standing in for Home Assistant.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';

export const MOSQUITTO = '/usr/sbin/mosquitto';
export const MOSQUITTO_PASSWD = '/usr/bin/mosquitto_passwd';

/** A free loopback port (the broker is restarted on the same one). */
export function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => res(p)); });
  });
}

export class Broker {
  log = '';
  private child: ChildProcess | null = null;
  readonly dir = mkdtempSync(join(tmpdir(), 'mosquitto-'));

  private constructor(readonly port: number, private readonly users: Record<string, string> | null) {}

  /** Starts a broker on `port`; `users` (name → password): a password file and no anonymous clients. */
  static async start(port: number, users: Record<string, string> | null = null): Promise<Broker> {
    const b = new Broker(port, users);
    await b.run();
    return b;
  }

  get url(): string { return `mqtt://127.0.0.1:${this.port}`; }

  /** How many MQTT CONNECTs clients sent: mosquitto answers each with a CONNACK, accepted or refused (logged with -v). */
  connectAttempts(): number {
    return this.log.split('\n').filter((l) => l.includes('Sending CONNACK')).length;
  }

  async run(): Promise<void> {
    const conf = join(this.dir, 'mosquitto.conf');
    const lines = [`listener ${this.port} 127.0.0.1`, 'persistence false', 'log_dest stderr', 'log_type all', 'user root'];
    if (this.users) {
      const pw = join(this.dir, 'passwd');
      let first = true;
      for (const [u, p] of Object.entries(this.users)) {
        const r = spawnSync(MOSQUITTO_PASSWD, [...(first ? ['-c'] : []), '-b', pw, u, p], { encoding: 'utf8' });
        if (r.status !== 0) throw new Error(`mosquitto_passwd: ${r.stderr}`);
        first = false;
      }
      lines.push('allow_anonymous false', `password_file ${pw}`);
    } else lines.push('allow_anonymous true');
    writeFileSync(conf, lines.join('\n') + '\n');
    const child = this.child = spawn(MOSQUITTO, ['-c', conf, '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
    child.stdout!.setEncoding('utf8').on('data', (d: string) => { this.log += d; });
    child.stderr!.setEncoding('utf8').on('data', (d: string) => { this.log += d; });
    const until = Date.now() + 5000;
    for (;;) {
      const up = await new Promise<boolean>((res) => { const s = createConnection(this.port, '127.0.0.1', () => { s.destroy(); res(true); }); s.on('error', () => res(false)); });
      if (up) return;
      if (child.exitCode !== null || Date.now() > until) throw new Error(`mosquitto did not start: ${this.log}`);
      await sleep(30);
    }
  }

  /** SIGKILL: the broker dies without a word (its clients' connections drop). */
  async kill(): Promise<void> {
    const c = this.child;
    this.child = null;
    if (!c || c.exitCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGKILL');
    await gone;
  }

  async stop(): Promise<void> { await this.kill(); rmSync(this.dir, { recursive: true, force: true }); }
}

export interface Seen { topic: string; payload: string; retain: boolean; at: number }

/** A client standing in for Home Assistant: subscribes to `topics`, keeps every message. */
export class HaClient {
  readonly seen: Seen[] = [];
  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => { this.seen.push({ topic, payload: payload.toString('utf8'), retain: packet.retain, at: Date.now() }); });
  }

  static async connect(url: string, topicsToWatch: string[], opts: { username?: string; password?: string } = {}): Promise<HaClient> {
    const client = await mqtt.connectAsync(url, { clientId: `ha-test-${process.pid}-${Math.random().toString(36).slice(2, 8)}`, reconnectPeriod: 500, ...opts });
    const h = new HaClient(client);
    await client.subscribeAsync(topicsToWatch, { qos: 1 });
    return h;
  }

  /** The last payload on `topic`, or undefined. */
  last(topic: string): string | undefined { return this.seen.filter((s) => s.topic === topic).at(-1)?.payload; }

  async waitFor(pred: (s: Seen) => boolean, timeoutMs: number, what: string, from = 0): Promise<Seen> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.seen.slice(from).find(pred);
      if (hit) return hit;
      if (Date.now() > until) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last seen: ${JSON.stringify(this.seen.slice(-6))}`);
      await sleep(20);
    }
  }

  publish(topic: string, payload: string | Buffer): Promise<unknown> { return this.client.publishAsync(topic, payload, { qos: 1 }); }

  async close(): Promise<void> { await this.client.endAsync(true).catch(() => undefined); }
}
