// `live-speaker doctor`: checks what the daemon needs on this machine, one
// line each, and says what to fix. Exit 0 when all is well, 1 otherwise.
// Every check is bounded in time; the API key is never printed.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ConfigError, findConfigFile, loadConfig, mcpServers, parseConfig, readAccessKey, readApiKey, readMqttPassword, readTokenFile, type Config } from './config.js';
import { probeServer } from './tools/mcp/client.js';
import mqtt from 'mqtt';
import { describeError } from './mqtt/link.js';
import { WakeArmError } from './wake/engine.js';
import { BUILTIN_KEYWORDS, porcupineFactory } from './wake/porcupine.js';
import { controlRequest } from './control.js';
import { checkBootConfig, checkGpio, checkRing, checkSoundCards, type Check, type Verdict } from './doctor-hw.js';
import { monotonicMs } from './clock.js';
import { deviceHolders } from './audio/devices.js';
import { EchoStage, EchoRequiredError } from './audio/echo.js';
import { pino } from 'pino';
import { checkModel } from './doctor-model.js';

export const CAPTURE_RATE = 16000;
export const PLAYBACK_RATE = 24000;
const GOOGLE_HOST = 'generativelanguage.googleapis.com';
const INSTALLED_KEY_FILE = '/etc/live-speaker/gemini-api-key';


interface RunResult { code: number | null; stdout: Buffer; stderr: string; timedOut: boolean; error?: string }

function run(cmd: string, args: string[], opts: { input?: Buffer; timeoutMs: number }): Promise<RunResult> {
  return new Promise((resolve) => {
    let child;
    try {
      child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    } catch (e) {
      resolve({ code: null, stdout: Buffer.alloc(0), stderr: '', timedOut: false, error: (e as Error).message });
      return;
    }
    const out: Buffer[] = [];
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => { timedOut = true; child.kill('SIGKILL'); }, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => { stderr += d; });
    child.stdin.on('error', () => { /* the tool exited early; its stderr says why */ });
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      resolve({ code: null, stdout: Buffer.alloc(0), stderr, timedOut, error: e.code === 'ENOENT' ? `${cmd} not found` : e.message });
    });
    child.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout: Buffer.concat(out), stderr, timedOut }); });
    child.stdin.end(opts.input ?? Buffer.alloc(0));
  });
}

/** The tool's own verdict ("arecord: main:831: audio open error: ...") rather than alsa-lib's chatter before it. */
function firstLines(s: string): string {
  const lines = s.split('\n').map((l) => l.trim()).filter(Boolean);
  const own = lines.filter((l) => /^(arecord|aplay):/.test(l));
  return (own.length ? own : lines.slice(-1)).slice(0, 2).join(' / ');
}

function audioHint(stderr: string, setting: string, daemonRunning: boolean, device: string): string {
  const busy = /busy/i.test(stderr);
  if (busy) {
    // Who holds it, where /proc/asound tells (a hw:/plughw: device): PipeWire or PulseAudio in a desktop session, another player.
    const held = deviceHolders(device, '/proc', setting === 'audio.capture_device' ? 'capture' : 'playback').map((h) => (h.name ? `${h.name} (pid ${h.pid})` : `pid ${h.pid}`)).join(', ');
    const server = /pipewire|wireplumber|pulseaudio/.test(held);
    if (server) return `${held} holds the card: a desktop sound server owns it; set ${setting} to \`default\` to play and record through it, or stop it for that user (\`systemctl --user stop pipewire pipewire-pulse wireplumber\`)`;
    return `${held ? `${held} holds the device` : 'another program holds the device'}${daemonRunning ? ' (the live-speaker daemon is running: stop it first, `sudo systemctl stop live-speaker`)' : ''}; ` +
      'or use a shared device (dsnoop/dmix, or the pulse/pipewire one) in ' + setting;
  }
  if (/cannot find card/i.test(stderr)) return `no sound card found: check \`aplay -l\` (USB card plugged in? HAT overlay in /boot/firmware/config.txt?) and ${setting}`;
  if (/no such|not found|unknown pcm/i.test(stderr)) return `set ${setting} to a device listed by \`arecord -L\` / \`aplay -L\` (e.g. plughw:CARD=Device,DEV=0)`;
  if (/permission|denied/i.test(stderr)) return 'the user needs the audio group (`sudo usermod -aG audio $USER`, then log in again)';
  return `check the sound card (\`arecord -l\`, \`aplay -l\`) and ${setting}`;
}

async function checkCapture(config: Config, daemonRunning: boolean): Promise<Check> {
  const dev = config.audio.capture_device;
  const samples = CAPTURE_RATE / 5; // 0.2 s
  const r = await run('arecord', ['-q', '-D', dev, '-f', 'S16_LE', '-r', String(CAPTURE_RATE), '-c', '1', '-t', 'raw', '-s', String(samples)], { timeoutMs: 5000 });
  const name = 'microphone';
  if (r.error) return { name, verdict: 'fail', detail: r.error, fix: 'install alsa-utils (sudo apt install alsa-utils)' };
  if (r.timedOut) return { name, verdict: 'fail', detail: `arecord -D ${dev} delivered no audio within 5 s`, fix: audioHint(r.stderr, 'audio.capture_device', daemonRunning, dev) };
  if (r.code !== 0 || r.stdout.length < samples * 2) {
    return { name, verdict: 'fail', detail: `arecord -D ${dev} at ${CAPTURE_RATE} Hz failed: ${firstLines(r.stderr) || `exit ${r.code}, ${r.stdout.length} bytes`}`, fix: audioHint(r.stderr, 'audio.capture_device', daemonRunning, dev) };
  }
  let peak = 0;
  for (let i = 0; i + 2 <= r.stdout.length; i += 2) peak = Math.max(peak, Math.abs(r.stdout.readInt16LE(i)));
  return { name, verdict: 'ok', detail: `${dev}: 0.2 s at ${CAPTURE_RATE} Hz mono (peak ${peak === 0 ? 'silent' : `${(20 * Math.log10(peak / 32768)).toFixed(0)} dBFS`})` };
}

async function checkPlayback(config: Config, daemonRunning: boolean): Promise<Check> {
  const dev = config.audio.playback_device;
  const silence = Buffer.alloc((PLAYBACK_RATE / 10) * 2); // 0.1 s
  const r = await run('aplay', ['-q', '-D', dev, '-f', 'S16_LE', '-r', String(PLAYBACK_RATE), '-c', '1', '-t', 'raw'], { input: silence, timeoutMs: 5000 });
  const name = 'speaker';
  if (r.error) return { name, verdict: 'fail', detail: r.error, fix: 'install alsa-utils (sudo apt install alsa-utils)' };
  if (r.timedOut) return { name, verdict: 'fail', detail: `aplay -D ${dev} did not finish 0.1 s of silence within 5 s`, fix: audioHint(r.stderr, 'audio.playback_device', daemonRunning, dev) };
  if (r.code !== 0) return { name, verdict: 'fail', detail: `aplay -D ${dev} at ${PLAYBACK_RATE} Hz failed: ${firstLines(r.stderr) || `exit ${r.code}`}`, fix: audioHint(r.stderr, 'audio.playback_device', daemonRunning, dev) };
  return { name, verdict: 'ok', detail: `${dev}: played 0.1 s of silence at ${PLAYBACK_RATE} Hz mono` };
}

const SERVICE_USER = 'live-speaker';

/**
 * Whether the service user (not whoever runs doctor, often root) can read
 * `path`, from its mode, owner and the user's groups; null when that user
 * does not exist here (not installed).
 */
export function serviceCanRead(path: string, user = SERVICE_USER, etc = '/etc'): boolean | null {
  let uid: number, gid: number;
  try {
    const pw = readFileSync(`${etc}/passwd`, 'utf8').split('\n').map((l) => l.split(':')).find((f) => f[0] === user);
    if (!pw) return null;
    uid = Number(pw[2]); gid = Number(pw[3]);
  } catch { return null; }
  const groups = new Set([gid]);
  try {
    for (const f of readFileSync(`${etc}/group`, 'utf8').split('\n').map((l) => l.split(':'))) {
      if (f.length >= 4 && f[3].split(',').includes(user)) groups.add(Number(f[2]));
    }
  } catch { /* primary group only */ }
  const st = statSync(path);
  if (uid === 0) return true;
  if (st.uid === uid) return (st.mode & 0o400) !== 0;
  if (groups.has(st.gid)) return (st.mode & 0o040) !== 0;
  return (st.mode & 0o004) !== 0;
}

/** A key file named in the config must be readable by the service, which does not run as root. */
function keyFileFix(path: string | null, setting: string): Check | null {
  if (!path || !existsSync(path)) return null;
  if (serviceCanRead(path) !== false) return null;
  return { name: setting, verdict: 'fail', detail: `${path} (${setting}) cannot be read by the ${SERVICE_USER} user the service runs as`,
    fix: `sudo chown root:${SERVICE_USER} ${path} && sudo chmod 0640 ${path}; or leave ${setting} unset and use the credential file in /etc/live-speaker` };
}

/** The listening LED is the privacy light: without one, nothing on the device shows that the microphone streams. */
function checkPrivacyLight(config: Config, gpio: Check, ring: Check | null): Check {
  const name = 'privacy light';
  const led = config.gpio.enabled ? config.gpio.leds.listening : null;
  if (ring && !led) {
    if (ring.verdict === 'fail') return { name, verdict: 'fail', detail: `missing: the LED ring cannot be driven (${ring.detail}); where GPIO works the daemon sends no microphone audio until it can (with no GPIO at all it runs without it, saying so)`, fix: ring.fix };
    return { name, verdict: 'ok', detail: 'the LED ring shows the listening colour; the last frame written is checked before audio is sent' };
  }
  if (!led) return { name, verdict: 'info', detail: 'missing: no listening LED is configured (gpio.leds.listening), so nothing on the device shows when the microphone streams', fix: 'wire an LED and set gpio.leds.listening.pin' };
  if (gpio.verdict === 'fail') return { name, verdict: 'fail', detail: `missing: the listening LED on BCM ${led.pin} cannot be driven (${gpio.detail}); without GPIO the daemon runs without it (its log says so), so nothing shows when the microphone streams`, fix: gpio.fix };
  return { name, verdict: 'ok', detail: `listening LED on BCM ${led.pin}; its line is read back before audio is sent` };
}

function checkKey(config: Config): { check: Check; key: boolean } {
  const name = 'API key';
  let key: string | null = null;
  let source = 'none';
  try {
    ({ key, source } = readApiKey(config));
  } catch (e) {
    return { key: false, check: { name, verdict: 'fail', detail: (e as Error).message, fix: 'point live.api_key_file at an existing file the service can read, or remove it' } };
  }
  const unreadable = keyFileFix(config.live.api_key_file, 'live.api_key_file');
  if (unreadable) return { key: false, check: { ...unreadable, name } };
  // doctor runs outside the service: look at the file systemd hands over as a credential too.
  if (!key && existsSync(INSTALLED_KEY_FILE)) {
    try {
      key = readFileSync(INSTALLED_KEY_FILE, 'utf8').trim() || null;
      source = INSTALLED_KEY_FILE;
    } catch (e) {
      return { key: false, check: { name, verdict: 'fail', detail: `cannot read ${INSTALLED_KEY_FILE} (${(e as NodeJS.ErrnoException).code}): it is root-only`, fix: 'run `sudo live-speaker doctor`' } };
    }
  }
  if (key) return { key: true, check: { name, verdict: 'ok', detail: `present (${key.length} characters, from ${source})` } };
  if (config.live.base_url) return { key: false, check: { name, verdict: 'info', detail: `none (live.base_url is set: ${config.live.base_url})` } };
  return {
    key: false,
    check: {
      name, verdict: 'fail',
      detail: 'none: the daemon runs its built-in emulator, which only says your words back',
      fix: `put your Gemini API key in ${INSTALLED_KEY_FILE} (root only, 0600) and \`sudo systemctl restart live-speaker\`, or set GEMINI_API_KEY`,
    },
  };
}

/** Each MCP server (tools.mcp, tools.home_assistant): its token file readable by the service, then one bounded connect and tools/list. */
async function checkMcp(config: Config): Promise<Check[]> {
  const quiet = pino({ level: 'silent' });
  return Promise.all(mcpServers(config).map(async (m, i): Promise<Check> => {
    const name = `MCP ${m.name}`;
    const setting = i >= config.tools.mcp.length ? 'tools.home_assistant.token_file' : `tools.mcp[${i}].token_file`;
    let token: string | null = null;
    if (m.token_file) {
      const unreadable = keyFileFix(m.token_file, setting);
      if (unreadable) return { ...unreadable, name };
      try { token = readTokenFile(setting, m.token_file); } catch (e) { return { name, verdict: 'fail', detail: (e as Error).message, fix: `put the token in ${m.token_file} (one line; owner root, group ${SERVICE_USER}, mode 0640)` }; }
    }
    const r = await probeServer(m, token, quiet);
    return r.ok ? { name, verdict: 'ok', detail: r.detail }
      : { name, verdict: 'fail', detail: r.detail, fix: m.url ? 'check the URL and the token (Home Assistant: docs/home-assistant.md); the daemon runs without these tools meanwhile' : 'check the command runs as the live-speaker user; the daemon runs without these tools meanwhile' };
  }));
}

function reach(host: string, port: number, tls: boolean, timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const started = monotonicMs();
    let sock: Socket;
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer within ${timeoutMs / 1000} s`)); }, timeoutMs);
    const done = (what: string) => { clearTimeout(timer); sock.end(); sock.destroy(); resolve(`${what} in ${monotonicMs() - started} ms`); };
    if (tls) sock = tlsConnect({ host, port, servername: /^[\d.:]+$/.test(host) ? undefined : host, ALPNProtocols: ['http/1.1'] }, () => done('TLS handshake'));
    else sock = tcpConnect({ host, port }, () => done('TCP connect'));
    sock.on('error', (e: NodeJS.ErrnoException) => { clearTimeout(timer); sock.destroy(); reject(new Error(e.code ?? e.message)); });
  });
}

async function checkEndpoint(config: Config, hasKey: boolean): Promise<Check> {
  const name = 'Live endpoint';
  let host = GOOGLE_HOST;
  let port = 443;
  let tls = true;
  if (config.live.base_url) {
    const u = new URL(config.live.base_url);
    host = u.hostname.replace(/^\[|\]$/g, '');
    tls = u.protocol === 'https:' || u.protocol === 'wss:';
    port = u.port ? Number(u.port) : tls ? 443 : 80;
  } else if (!hasKey) {
    return { name, verdict: 'info', detail: `not checked: no API key, so the built-in emulator is used (Google's endpoint is ${GOOGLE_HOST}:443)` };
  }
  try {
    const how = await reach(host, port, tls, 5000);
    return { name, verdict: 'ok', detail: `${host}:${port} reachable (${how})` };
  } catch (e) {
    const msg = (e as Error).message;
    const fix = /ENOTFOUND|EAI_AGAIN/.test(msg) ? 'no DNS answer: check the network (`ping -c1 ' + host + '`), /etc/resolv.conf'
      : /CERT|certificate/i.test(msg) ? 'TLS certificate problem: is the clock right (timedatectl)? ca-certificates installed?'
      : config.live.base_url ? 'is the endpoint in live.base_url running?' : 'check the network connection and any firewall (outgoing TCP 443)';
    return { name, verdict: 'fail', detail: `${host}:${port}: ${msg}`, fix };
  }
}

/** MQTT (issue 24): the password file, then what the running daemon says of its link, or a trial connection. */
export async function checkMqtt(config: Config, running: any): Promise<Check | null> {
  const mc = config.mqtt;
  if (!mc) return null;
  const name = 'MQTT';
  let password: string | null;
  try { password = readMqttPassword(config).key; } catch (e) {
    return { name, verdict: 'fail', detail: (e as Error).message, fix: 'point mqtt.password_file at an existing file the service can read, or remove it' };
  }
  const host = new URL(mc.url).host;
  if (running?.mqtt) {
    const m = running.mqtt;
    if (m.connected) return { name, verdict: 'ok', detail: `the daemon is connected to ${m.broker} (base topic ${m.baseTopic})` };
    return { name, verdict: 'fail', detail: `the daemon is not connected to ${m.broker}: ${m.lastError ?? 'connecting'}`, fix: mqttFix(m.lastError ?? '') };
  }
  // The TLS files: one that cannot be read is named (it used to throw out of doctor).
  const tls: Record<'ca' | 'cert' | 'key', Buffer | undefined> = { ca: undefined, cert: undefined, key: undefined };
  for (const k of ['ca', 'cert', 'key'] as const) {
    const path = mc[`${k}_file`];
    if (!path) continue;
    try { tls[k] = readFileSync(path); } catch (e) {
      return { name, verdict: 'fail', detail: `mqtt.${k}_file: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`, fix: `point mqtt.${k}_file at a PEM file the service can read, or remove it` };
    }
  }
  const client = mqtt.connect(mc.url, {
    protocolVersion: mc.protocol_version, username: mc.username ?? undefined, password: password ?? undefined, reconnectPeriod: 0, connectTimeout: 5000,
    clientId: `live-speaker-doctor-${process.pid}`, ...tls,
  });
  client.on('error', () => undefined); // only the first one is reported (below); a later one must not throw
  const result = await new Promise<string | null>((res) => {
    const t = setTimeout(() => res('no answer within 5 s'), 5500);
    client.once('connect', () => { clearTimeout(t); res(null); });
    client.once('error', (e) => { clearTimeout(t); res(describeError(e as Error & { code?: number }).reason); });
    client.once('close', () => { clearTimeout(t); res('the broker closed the connection'); });
  });
  client.end(true);
  if (result === null) return { name, verdict: 'ok', detail: `${host} accepts ${mc.username ? `user ${mc.username}` : 'this client (anonymous)'}` };
  return { name, verdict: 'fail', detail: `${host}: ${result}`, fix: mqttFix(result) };
}

const mqttFix = (reason: string) => /password|not authorized|client id/.test(reason)
  ? 'check mqtt.username and the file in mqtt.password_file against the broker (mosquitto_passwd), and its ACL (docs/mqtt.md)'
  : 'is the broker running and reachable from here? check mqtt.url (host and port), and the network';

const INSTALLED_ACCESS_KEY_FILE = '/etc/live-speaker/picovoice-access-key';

/** Whether the configured wake word can be armed: the engine loads, its keywords exist, and (Porcupine) the AccessKey is accepted. */
function checkWake(config: Config): Check {
  const name = 'wake word';
  const w = config.wake;
  if (w.engine === 'none') return { name, verdict: 'info', detail: 'not configured (wake.engine: none; the button, SIGUSR1 or `live-speaker ctl press` start a conversation)' };
  if (w.engine === 'tone') return { name, verdict: 'info', detail: `test stand-in: a ${w.tone_hz} Hz tone wakes it (wake.engine: tone)` };
  let key: string | null, source: string;
  try {
    ({ key, source } = readAccessKey(config));
  } catch (e) {
    return { name, verdict: 'fail', detail: (e as Error).message, fix: 'point wake.access_key_file at an existing file the service can read, or remove it' };
  }
  const unreadable = keyFileFix(config.wake.access_key_file, 'wake.access_key_file');
  if (unreadable) return { ...unreadable, name };
  if (!key && existsSync(INSTALLED_ACCESS_KEY_FILE)) {
    try {
      key = readFileSync(INSTALLED_ACCESS_KEY_FILE, 'utf8').trim() || null;
      source = INSTALLED_ACCESS_KEY_FILE;
    } catch (e) {
      return { name, verdict: 'fail', detail: `cannot read ${INSTALLED_ACCESS_KEY_FILE} (${(e as NodeJS.ErrnoException).code}): it is root-only`, fix: 'run `sudo live-speaker doctor`' };
    }
  }
  const names = w.keywords.map((k) => k.name);
  for (const k of names) {
    if (!BUILTIN_KEYWORDS.includes(k) && !existsSync(k)) {
      return { name, verdict: 'fail', detail: `keyword '${k}' is neither built in nor an existing .ppn file`, fix: `use one of ${BUILTIN_KEYWORDS.join(', ')}, or the path of a .ppn file` };
    }
  }
  if (!key) {
    return { name, verdict: 'fail', detail: 'Porcupine needs a Picovoice AccessKey and none is set',
      fix: `put it in ${INSTALLED_ACCESS_KEY_FILE} (root only, 0600) and \`sudo systemctl reload live-speaker\`, or set PICOVOICE_ACCESS_KEY (free at console.picovoice.ai)` };
  }
  try {
    // Arming validates the key online (Porcupine's own bounded request).
    const engine = porcupineFactory({ accessKey: key, keywords: w.keywords, modelPath: w.model_path })();
    engine.release();
    return { name, verdict: 'ok', detail: `porcupine armed with ${names.map((k) => `"${k}"`).join(', ')} (AccessKey from ${source})` };
  } catch (e) {
    const err = e instanceof WakeArmError ? e : new WakeArmError((e as Error).message, 'transient', 'Error');
    const fix = err.kind === 'permanent' ? 'check the AccessKey and wake.keywords / wake.model_path'
      : err.kind === 'slow' ? 'the AccessKey reached its activation limit: free a device at console.picovoice.ai'
      : 'no answer from Picovoice: check the network; the daemon keeps retrying';
    return { name, verdict: 'fail', detail: `porcupine cannot arm: ${err.message}`, fix };
  }
}

/** Which echo canceller can run here (and, from the running daemon, its delay estimate and whether it converged). */
function checkEcho(config: Config, running: string | null): Check {
  const name = 'echo cancellation';
  let stage: EchoStage;
  try {
    stage = EchoStage.open(config.audio.echo_cancel, config.audio.barge_in, pino({ level: 'silent' }));
  } catch (e) {
    if (!(e instanceof EchoRequiredError)) throw e;
    return { name, verdict: 'fail', detail: e.message, fix: 'set audio.echo_cancel: auto (half-duplex), or off for a speakerphone that cancels its own echo' };
  }
  const here = stage.describe();
  stage.close();
  return { name, verdict: 'info', detail: running ? `the daemon: ${running}` : here };
}

export async function runDoctor(configPath?: string, out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  const checks: Check[] = [];
  let config: Config;
  const file = findConfigFile(configPath);
  try {
    ({ config } = loadConfig(configPath));
    checks.push({ name: 'config', verdict: 'ok', detail: file ? `${file} loads` : 'no config file: built-in defaults' });
  } catch (e) {
    if (!(e instanceof ConfigError)) throw e;
    checks.push({ name: 'config', verdict: 'fail', detail: e.message, fix: `fix ${file ?? 'the config file'}; the remaining checks use the built-in defaults` });
    config = parseConfig({}, null);
  }

  let daemonRunning = false;
  let running: any = null;
  try { running = await controlRequest(config.control.socket, { cmd: 'status' }, 1000); daemonRunning = true; } catch { /* not running, or not ours to ask */ }

  checks.push(checkSoundCards(config));
  checks.push(await checkCapture(config, daemonRunning));
  checks.push(await checkPlayback(config, daemonRunning));
  const gpioChecks = await checkGpio(config);
  checks.push(...gpioChecks);
  if (config.gpio.enabled) checks.push(checkBootConfig(config));
  const ringCheck = checkRing(config);
  if (ringCheck) checks.push(ringCheck);
  checks.push(checkPrivacyLight(config, gpioChecks[0], ringCheck));
  const { check: keyCheck, key } = checkKey(config);
  checks.push(keyCheck);
  const endpointCheck = await checkEndpoint(config, key);
  checks.push(endpointCheck);
  checks.push(await checkModel(config, file, endpointCheck.verdict === 'ok')); // issue 12: a retired or unknown live.model
  checks.push(checkWake(config));
  checks.push(checkEcho(config, running?.echo?.summary ?? null));
  checks.push(...await checkMcp(config)); // issue 23: each MCP server connects, lists its tools, which are declared
  const mqttCheck = await checkMqtt(config, running); // issue 24
  if (mqttCheck) checks.push(mqttCheck);

  const mark: Record<Verdict, string> = { ok: '[ok]  ', fail: '[FAIL]', info: '[--]  ' };
  const width = Math.max(...checks.map((c) => c.name.length));
  const lines = [`live-speaker doctor${daemonRunning ? ' (the daemon is running)' : ''}`];
  for (const c of checks) {
    lines.push(`${mark[c.verdict]} ${c.name.padEnd(width)}  ${c.detail}`);
    if (c.verdict === 'fail' && c.fix) lines.push(`       ${' '.repeat(width)}  fix: ${c.fix}`);
  }
  const failed = checks.filter((c) => c.verdict === 'fail').length;
  lines.push(failed === 0 ? 'All good.' : `${failed} problem${failed > 1 ? 's' : ''} to fix (see "fix:" above).`);
  out(lines.join('\n') + '\n');
  return failed === 0 ? 0 : 1;
}
