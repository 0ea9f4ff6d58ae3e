// The composition root: builds each adapter from the config, wires their
// events to the conversation, and owns process-level concerns (signals,
// control socket, systemd notifications, reload, shutdown). No conversation
// behaviour is decided here.
import { readFileSync, unlinkSync } from 'node:fs';
import { checkMqttTlsFiles, ConfigError, loadConfig, mcpServers, readAccessKey, readApiKey, readMqttPassword, readTokenFile, stateDir, type Config } from './config.js';
import { MAX_VOLUME, StateStore } from './state.js';
import { createLogger, type Logger } from './log.js';
import { Conversation, type ConversationOptions } from './conversation.js';
import type { LiveConnector, State } from './ports.js';
import { ArecordMic, type CaptureOptions } from './audio/capture.js';
import { SpeakerPlayer, type PlaybackOptions } from './audio/playback.js';
import { checkPlaybackDevice, loadSpeakerAddon } from './audio/addon.js';
import { GeminiConnector, isSdkFrameParseError } from './live/gemini.js';
import { Leds, type LedRole } from './leds/leds.js';
import { Button } from './gpio/button.js';
import { GpioUnavailable, type GpioBackend, type OutputLine } from './gpio/gpio.js';
import { openGpioBackend } from './gpio/open.js';
import { Ring, parseColour, type RingColours } from './leds/ring.js';
import { bitbangTransport, spiTransport, type Apa102Transport } from './leds/apa102.js';
import { Indicators, MissingLight, type DeviceIndicator } from './leds/indicators.js';
import { applyMixer } from './mixer.js';
import { startControlServer, type ControlRequest, type ControlServer } from './control.js';
import type { LiveEmulator } from './emulator/emulator.js';
import { createNotifier, type Notifier } from './systemd.js';
import { CHIME_MS, errorSound, wakeChime } from './audio/sounds.js';
import { WakeWord, type WakeArmError } from './wake/engine.js';
import { porcupineFactory } from './wake/porcupine.js';
import { toneEngine } from './wake/tone.js';
import { monotonicMs } from './clock.js';
import { EchoRequiredError, EchoStage } from './audio/echo.js';
import { Observer } from './observe.js';
import { setupTools, type ToolsSetup } from './tools/setup.js';
import { McpHub } from './tools/mcp/client.js';
import { AnnounceQueue, type SayReport } from './announce.js';
import type { MqttLink, Command, SpeakerState } from './mqtt/link.js';
import { readIdentity } from './mqtt/discovery.js';

export const EXIT_CONFIG = 78; // EX_CONFIG: listed in RestartPreventExitStatus=, so no restart loop
export const CAPTURE_RATE = 16000;
export const PLAYBACK_RATE = 24000;
const STUCK_CAPTURE_MS = 5000;
const MIC_READY_WAIT_MS = 5000; // READY=1 waits this long for the first audio, then comes with the problem on the status line
const mib = (bytes: number) => Math.round((bytes / 1048576) * 10) / 10; // no audio for this long from a running arecord: the pipeline is stuck

const conversationOptions = (config: Config): ConversationOptions => ({
  rate: CAPTURE_RATE,
  prerollMs: config.audio.preroll_ms,
  vadThresholdDbfs: config.audio.vad_threshold_dbfs,
  endOfSpeechMs: config.audio.end_of_speech_ms,
  noSpeechTimeoutMs: config.conversation.no_speech_timeout_s * 1000,
  followUpMs: config.conversation.follow_up_s * 1000,
  maxConversationMs: config.conversation.max_conversation_s * 1000,
  errorDisplayMs: config.conversation.error_display_s * 1000,
  trimWakeWord: config.wake.trim_wake_word,
  wakeBeforeMs: config.wake.before_ms,
  wakeSound: config.feedback.wake_sound ? wakeChime(PLAYBACK_RATE, config.feedback.volume) : null,
  errorSound: config.feedback.error_sound ? errorSound(PLAYBACK_RATE, config.feedback.volume) : null,
  chimeGateMs: CHIME_MS + config.audio.playback_lead_ms + 300, // + device and capture latency
  resumeWithinMs: config.conversation.resume_within_s * 1000,
  echoTailMs: config.audio.echo_tail_ms,
});
const captureOptions = (config: Config): CaptureOptions =>
  ({ device: config.audio.capture_device, rate: CAPTURE_RATE, periodMs: config.audio.capture_period_ms });
const playbackOptions = (config: Config): PlaybackOptions =>
  ({ device: config.audio.playback_device, rate: PLAYBACK_RATE, leadMs: config.audio.playback_lead_ms, outputLatencyMs: config.audio.output_latency_ms });

/** `ctl volume` argument: a percent, `up` or `down` (10 points); the new volume, or an error naming what is allowed. */
export function nextVolume(current: number, arg: string): number {
  const a = arg.trim().toLowerCase();
  if (a === 'up') return Math.min(MAX_VOLUME, current + 10);
  if (a === 'down') return Math.max(0, current - 10);
  const n = Number(a.replace(/%$/, ''));
  if (a === '' || !Number.isInteger(n) || n < 0 || n > MAX_VOLUME) throw new Error(`volume must be a whole percent from 0 to ${MAX_VOLUME}, up or down (got '${arg}')`);
  return n;
}

/** The version in package.json (the device's sw_version in Home Assistant). */
function packageVersion(): string {
  try { return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: string }).version ?? 'unknown'; } catch { return 'unknown'; }
}

/** Where conversations go: Google with the key, live.base_url, or the built-in emulator when there is no key. */
class Endpoint {
  connector!: LiveConnector;
  description = '';
  private emulator: LiveEmulator | null = null;
  /** The function declarations each new session gets (tools, issue 12). */
  functions: () => import('@google/genai').FunctionDeclaration[] = () => [];

  constructor(private readonly log: Logger, private readonly interruptible: () => boolean) {}

  async configure(config: Config, configFile: string | null = null): Promise<void> {
    const { key, source } = readApiKey(config);
    let baseUrl = config.live.base_url;
    if (baseUrl) {
      this.description = baseUrl;
      this.log.info({ base_url: baseUrl, keySource: key ? source : 'none' }, 'Live API endpoint from live.base_url');
    } else if (key) {
      this.description = 'Gemini Live API';
      this.log.info({ keySource: source, model: config.live.model }, 'using the Gemini Live API');
    } else {
      this.emulator ??= await (await import('./emulator/emulator.js')).LiveEmulator.start({ mode: 'parrot', recordAudio: false, keepClosedSessions: 0 });
      baseUrl = this.emulator.url;
      this.description = `built-in emulator (parrot mode) at ${baseUrl}`;
      this.log.warn('no API key (set GEMINI_API_KEY or live.api_key_file): using the built-in Live API emulator in parrot mode, which says your own words back');
    }
    if (baseUrl !== this.emulator?.url && this.emulator) { await this.emulator.close(); this.emulator = null; }
    this.connector = new GeminiConnector({ apiKey: key ?? 'no-key', baseUrl, live: config.live, silenceMs: config.audio.end_of_speech_ms,
      interruptible: this.interruptible, configFile, transcripts: config.log.transcripts, functions: () => this.functions() }, this.log);
  }

  async close(): Promise<void> { await this.emulator?.close(); }
}

interface Hardware { state: string; indicator: DeviceIndicator; privacyLight: boolean; button: Button | null; release(): void }

/** Button, LEDs and ring, or none of them (said once, clearly). GPIO changes need a restart. */
async function openHardware(config: Config, log: Logger): Promise<Hardware> {
  const lines: Partial<Record<LedRole, OutputLine>> = {};
  const toolLog = (level: 'info' | 'warn' | 'error', msg: string) => log[level](`gpio: ${msg}`);
  let gpio: GpioBackend | null = null;
  let state = 'disabled in config';
  let button: Button | null = null;
  if (config.gpio.enabled) {
    try {
      gpio = await openGpioBackend(config.gpio.backend, { log: toolLog });
      for (const [role, led] of Object.entries(config.gpio.leds)) if (led) lines[role as LedRole] = gpio.output(led.pin, led.active_low);
      const b = config.gpio.button;
      button = b.pin === null ? null : new Button(gpio.input(b.pin, b.active_low, b.debounce_ms, b.bias), b.long_press_ms);
      for (const note of gpio.notes ?? []) log.info(`gpio: ${note}`);
      state = gpio.name;
    } catch (e) {
      if (!(e instanceof GpioUnavailable)) throw e;
      for (const l of Object.values(lines)) l?.release();
      for (const k of Object.keys(lines)) delete lines[k as LedRole];
      gpio?.release?.();
      gpio = null;
      log.warn(`no GPIO: ${e.message}; running without button and LEDs (ctl press and SIGUSR1 still work)`);
      state = `unavailable: ${e.message}`;
    }
  }
  const parts: DeviceIndicator[] = [];
  const opened = config.gpio.enabled ? await openRing(config, gpio, log) : null;
  const ring = opened instanceof Ring ? opened : null;
  if (Object.keys(lines).length > 0 || !ring) parts.push(new Leds(lines, (role, on) => log.debug({ led: role, on }, 'led')));
  if (ring) parts.push(ring);
  // A ring that is configured on a Pi (GPIO works) but cannot be driven is a privacy light that is not
  // there: nothing may be streamed while it stands (the SPI interface still off before the reboot
  // install.sh asks for, spi-device not built). Without GPIO at all (not a Pi) the daemon runs, saying so.
  let missing = false;
  if (typeof opened === 'string' && gpio) {
    parts.push(new MissingLight(`the LED ring cannot be driven (${opened})`));
    log.error(`the LED ring (the privacy light) cannot be driven (${opened}): no microphone audio will be sent until it can`);
    missing = true;
  }
  const indicator = parts.length === 1 ? parts[0] : new Indicators(parts);
  return {
    state: ring ? `${state}; ring: ${ring.snapshot().ring}` : state,
    indicator, privacyLight: !!lines.listening || !!ring || missing, button,
    release: () => { indicator.release(); button?.release(); gpio?.release?.(); },
  };
}

/** The APA102 ring; null when none is configured; why, when it cannot be driven (said once). */
async function openRing(config: Config, gpio: GpioBackend | null, log: Logger): Promise<Ring | string | null> {
  const r = config.gpio.ring;
  if (!r) return null;
  let transport: Apa102Transport | null = null;
  let power: OutputLine | null = null;
  try {
    if (r.power_pin !== null || r.spi === null) {
      if (!gpio) throw new Error(`it needs GPIO (${r.spi === null ? 'bit-banged clock and data' : `power on BCM ${r.power_pin}`}) and there is none`);
    }
    if (r.power_pin !== null) power = gpio!.output(r.power_pin, false);
    if (r.spi !== null) transport = await spiTransport(r.spi, r.speed_hz);
    else {
      if (r.clock_pin === null || r.data_pin === null) throw new Error('gpio.ring.spi is null: set gpio.ring.clock_pin and data_pin to bit-bang');
      transport = bitbangTransport(gpio!.output(r.clock_pin, false), gpio!.output(r.data_pin, false), r.clock_pin, r.data_pin);
    }
  } catch (e) {
    power?.release();
    log.warn(`no LED ring: ${(e as Error).message}`);
    return (e as Error).message;
  }
  const colours = Object.fromEntries(Object.entries(r.colours).map(([k, v]) => [k, parseColour(v)])) as RingColours;
  return new Ring(transport, { count: r.count, brightness: r.brightness, colours, power, onError: (m) => log.error(m) });
}

/** The wake word from the config, or null when none is configured. Arming is tried by the caller. */
function makeWakeWord(config: Config): WakeWord | null {
  const w = config.wake;
  const refractory = Math.round((w.refractory_ms * CAPTURE_RATE) / 1000);
  switch (w.engine) {
    case 'none': return null;
    case 'tone': return new WakeWord('tone (test stand-in)', () => toneEngine(w.tone_hz), refractory);
    case 'porcupine': {
      const { key } = readAccessKey(config);
      return new WakeWord('porcupine', porcupineFactory({ accessKey: key, keywords: w.keywords, modelPath: w.model_path }), refractory);
    }
  }
}

/** The echo stage for the config; audio.echo_cancel: on with no engine is a ConfigError naming the key and the file. */
export function openEcho(config: Config, file: string | null | undefined, log: Logger, open?: Parameters<typeof EchoStage.open>[3]): EchoStage {
  try {
    return EchoStage.open(config.audio.echo_cancel, config.audio.barge_in, log, open);
  } catch (e) {
    if (e instanceof EchoRequiredError) throw new ConfigError(`${file ?? 'built-in defaults'}: ${e.message}`, file ?? null);
    throw e;
  }
}

function statusLine(state: State, endpoint: string, problem: string | null, lastError: string | null, wake: WakeWord | null, fault: string | null = null, muteReason: string | null = null): string {
  if (fault && (state === 'idle' || state === 'error')) return `error: ${fault} (fix it, then press or reload)`;
  if (problem && (state === 'idle' || state === 'error')) return `degraded: ${problem}`;
  switch (state) {
    case 'idle':
      if (wake && !wake.armed) return `idle: wake word not armed (${wake.status().reason}); the button works`;
      if (wake) return `idle: say "${wake.status().keywords.join('" or "')}" or press the button; endpoint ${endpoint}`;
      return `idle: press the button (or live-speaker ctl press) to talk; endpoint ${endpoint}`;
    case 'connecting': return 'connecting to the Live API';
    case 'listening': return 'listening (microphone streaming)';
    case 'thinking': return 'thinking (microphone streaming)';
    case 'speaking': return 'speaking (microphone streaming for barge-in)';
    case 'follow-up': return 'waiting for a follow-up question (microphone streaming)';
    case 'muted': return muteReason ? `muted: microphone off (${muteReason})` : 'muted: microphone off';
    case 'error': return `error: ${lastError ?? 'unknown'}`;
  }
}

/**
 * What the steps of runDaemon share: the config and the log, the adapters built so far, and the few
 * values more than one concern reads. One object, filled in by the steps in order (each reads only what
 * an earlier step set); closures read it when they run, so what a reload replaces (config, echo, wake)
 * is what every concern sees from then on.
 */
interface Daemon {
  readonly configPath: string | undefined;
  config: Config; // replaced on reload; hardware, gpio, control and state keep their startup values
  readonly file: string | null;
  readonly log: Logger;
  readonly notify: Notifier;
  // openAdapters
  mic: ArecordMic;
  store: StateStore;
  player: SpeakerPlayer;
  echo: EchoStage; // replaced on reload when audio.echo_cancel or audio.barge_in change
  endpoint: Endpoint;
  wake: WakeWord | null; // replaced on reload when wake changes (or was not armed)
  gpio: Hardware;
  leds: DeviceIndicator;
  // wireConversation
  tools: ToolsSetup;
  conversation: Conversation;
  // startMcp
  mcp: McpHub;
  observer: Observer;
  // wireStatus
  micProblem: string | null;
  muteReason: string | null; // why the speaker is muted when the user did not say so; cleared by an unmute
  lastFrameAt: number;
  withEcho: (line: string) => string;
  updateStatus: () => void;
  // wireConversation (issue 24): announcements and questions from the home, one at a time
  announcer: AnnounceQueue;
  // wireControl
  control: ControlServer;
  setVolume: (arg: string) => number; // ctl volume, MQTT volume
  stopAll: (by: string) => void; // ctl stop, MQTT stop: what is being said, what waits, a ringing timer
  // openAdapters, wireMqtt (issue 24): null when mqtt is not configured
  mqttPassword: string | null;
  mqtt: MqttLink | null;
  // wireSignals: a stop has begun (a SIGTERM can come while a start-up step still awaits): the steps after it do nothing
  stopping: boolean;
}

/** The composition root: one step per concern, in the order they must happen (logging first, readiness last). */
export async function runDaemon(configPath?: string): Promise<void> {
  const d = boot(configPath); // config (exit 78 when wrong), log, crash handler, systemd notifier
  await openAdapters(d); // mic, state, player, echo stage, Live endpoint, wake word, GPIO; mixer
  wireConversation(d); // Live connector, tools, the conversation, echo reference, observer
  startMcp(d); // MCP servers' tools (tools.mcp): connected in the background, never waited for
  wireStatus(d); // the status line and the values it shows
  wireAudio(d); // wake word, microphone, player events
  wireButtonAndState(d); // button, state changes: status line, mute kept across restarts
  await wireControl(d); // the control socket: ctl status/press/mute/volume/watch/announce/ask/stop
  wireSignals(d); // SIGTERM/SIGINT stop, SIGUSR1 press, SIGHUP reload, unhandled rejections
  await wireMqtt(d); // MQTT and Home Assistant discovery (issue 24): its module is loaded here (only when configured); the connection is made in the background, never awaited
  await becomeReady(d); // start capture, wait for audio, watchdog, timers, READY=1
}

/** The config (a wrong one: exit 78), then the log, the handler for what nothing catches, the systemd notifier. */
function boot(configPath: string | undefined): Daemon {
  let config: Config;
  let file: string | null;
  try {
    ({ config, file } = loadConfig(configPath));
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`live-speaker: ${e.message}\n`);
      process.exit(EXIT_CONFIG);
    }
    throw e;
  }
  const log = createLogger(config.log.level);
  // A throw no code path catches is a bug: say what and where (the stack), then exit non-zero for systemd to
  // restart the daemon in a known state. pino writes the line out as the process exits.
  process.on('uncaughtException', (e) => {
    try {
      log.fatal({ error: e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e) }, 'unexpected error (uncaught exception); exiting so that systemd restarts the daemon');
    } catch { process.stderr.write(`live-speaker: uncaught exception: ${e instanceof Error ? e.stack : String(e)}\n`); }
    process.exit(1);
  });
  const notify: Notifier = createNotifier(log);
  log.info({ config: file ?? '(built-in defaults)' }, 'live-speaker starting');
  return { configPath, config, file, log, notify } as Daemon; // the steps below fill in the rest, in order
}

/** Each adapter the config asks for, in this order; one that cannot open is fatal (a config error: exit 78). */
async function openAdapters(d: Daemon): Promise<void> {
  const { config, file, log } = d;
  d.mic = new ArecordMic(captureOptions(config));
  d.store = new StateStore(stateDir(config), log);
  // The volume set with `ctl volume` holds across restarts; audio.volume until one is set.
  d.player = new SpeakerPlayer(playbackOptions(config), d.store.get().volume ?? config.audio.volume, log);
  try {
    // Between the microphone and everything that reads it; on and unavailable is a config error (exit 78, no restart loop).
    d.echo = openEcho(config, file, log);
    d.echo.tailMs = config.audio.echo_tail_ms;
    d.endpoint = new Endpoint(log, () => d.echo.interruptible());
    await d.endpoint.configure(config, file);
    d.wake = makeWakeWord(config);
    d.gpio = await openHardware(config, log);
    d.mqttPassword = readMqttPassword(config).key; // a configured file that cannot be read: a config error, like the API key's
    checkMqttTlsFiles(config); // so are its TLS files
  } catch (e) {
    log.fatal({ error: (e as Error).message }, 'cannot start');
    process.exit(e instanceof ConfigError ? EXIT_CONFIG : 1);
  }
  d.leds = d.gpio.indicator;
  if (!d.gpio.privacyLight) {
    log.warn({ gpio: d.gpio.state }, 'no listening (privacy) LED is fitted: nothing on the device shows when the microphone streams (gpio.leds.listening or gpio.ring)');
  }
  void applyMixer(config, log);
}

/** The conversation and what it talks to: the Live connector, the tools (issue 12), the echo stage's reference, the observer. */
function wireConversation(d: Daemon): void {
  const { config, log, endpoint, player, leds, store } = d;
  const live: LiveConnector = { connect: (h, o) => endpoint.connector.connect(h, o) }; // swapped on reload
  // ---- tools (issue 12): function calls, timers, volume by voice
  const tools = d.tools = setupTools({ config: () => d.config, stateDir: stateDir(config), player, leds, store, log, conversation: () => d.conversation });
  endpoint.functions = () => tools.dispatcher.declarations();
  const conversation = d.conversation = new Conversation(conversationOptions(config), { live, player, mic: d.mic, indicator: leds, echo: { halfDuplex: () => d.echo.halfDuplex(), residualEcho: () => d.echo.residualEcho() }, tools: tools.dispatcher }, log);
  // The reference: every sample the speaker played, when it was heard.
  player.timeline.on('played', (c) => d.echo.reference(c));
  player.timeline.on('wrote', (c) => d.echo.scheduled(c, PLAYBACK_RATE));
  // Transcripts (log.transcripts), token usage and `ctl watch` (src/observe.ts).
  d.observer = new Observer(conversation, log, () => d.config.log.transcripts);
  // Function calls reach `ctl watch` as the conversation's 'tool' / 'tool-cancelled' events.
  tools.dispatcher.on('tool', (e: object) => conversation.emit('tool', e));
  tools.dispatcher.on('tool-cancelled', (e: object) => conversation.emit('tool-cancelled', e));
  // Announcements and questions (ctl, MQTT): said when no conversation is open (src/announce.ts).
  d.announcer = new AnnounceQueue(conversation, log);
  d.announcer.on('report', (r: SayReport) => {
    if (r.outcome !== 'spoken') log[r.outcome === 'failed' ? 'warn' : 'info']({ id: r.id, kind: r.kind, outcome: r.outcome, detail: r.detail, from: r.from }, r.outcome === 'failed' ? `${r.kind} could not be said` : `${r.kind}: ${r.outcome}`);
  });
}

/** Each server's bearer token (tools.mcp token_file), read before anything changes: a file it cannot read is a config error. */
function mcpTokens(config: Config): Map<string, string | null> {
  return new Map(mcpServers(config).map((m, i) => [m.name, m.token_file ? readTokenFile(i >= config.tools.mcp.length ? 'tools.home_assistant.token_file' : `tools.mcp[${i}].token_file`, m.token_file) : null]));
}

/** MCP servers (issue 23): started in the background; each session declares the tools listed so far. A token file it cannot read: exit 78. */
function startMcp(d: Daemon): void {
  let tokens: Map<string, string | null>;
  try {
    tokens = mcpTokens(d.config);
  } catch (e) {
    d.log.fatal({ error: (e as Error).message }, 'cannot start');
    process.exit(e instanceof ConfigError ? EXIT_CONFIG : 1);
  }
  d.mcp = new McpHub(d.log);
  d.tools.dispatcher.setExtraTools(() => d.mcp.tools());
  d.mcp.configure(mcpServers(d.config), tokens);
}

/** The systemd status line (STATUS=) and what it shows beside the state: a microphone problem, why muted. */
function wireStatus(d: Daemon): void {
  d.micProblem = null;
  d.muteReason = d.store.problem ? `${d.store.file} cannot be used (${d.store.problem}); unmute to go on` : null; // an unusable state.json
  d.lastFrameAt = 0;
  // Idle, the status line also says how the echo is handled (engine, delay, converged; or why half-duplex).
  d.withEcho = (line: string) => (d.conversation.state === 'idle' && !line.startsWith('degraded') && !line.startsWith('error') ? `${line}; echo cancellation: ${d.echo.describe()}` : line);
  d.updateStatus = () => d.notify.status(d.withEcho(statusLine(d.conversation.state, d.endpoint.description, d.micProblem, d.conversation.lastError?.message ?? null, d.wake, d.conversation.fault, d.muteReason)));
}

/** The wake word's arming goes to the log and the status line (wired again for a new one after a reload). */
function wireWake(d: Daemon, w: WakeWord): void {
  w.on('armed', (keywords: string[]) => { d.log.info({ engine: w.name, keywords }, 'wake word armed'); d.updateStatus(); });
  w.on('not-armed', (e: WakeArmError, retryMs: number | null) => {
    // The error class and a scrubbed message, never a stack or the key.
    d.log.warn({ engine: w.name, errorClass: e.errorClass, reason: e.message, retryInS: retryMs === null ? null : retryMs / 1000 },
      retryMs === null ? 'wake word not armed; fix the cause and reload (the button works meanwhile)' : 'wake word not armed yet; retrying (the button works meanwhile)');
    d.updateStatus();
  });
}

/** Audio events: every capture chunk goes through the echo stage, then the wake word (a detection splits the chunk exactly there), then the conversation. */
function wireAudio(d: Daemon): void {
  const { log, mic, player, conversation } = d;
  if (d.wake) wireWake(d, d.wake);
  mic.on('frame', (raw: Buffer) => {
    d.lastFrameAt = monotonicMs();
    const f = d.echo.process(raw, d.lastFrameAt, CAPTURE_RATE); // what every reader of the mic gets
    if (d.micProblem !== null) { d.micProblem = null; d.updateStatus(); } // audio flows: whatever was wrong with the mic is over
    const wake = d.wake;
    const at = wake && conversation.state !== 'muted' ? wake.push(d.echo.forWake()) : null; // the same chunk, not notched (EchoStage.forWake)
    if (at === null) { conversation.micFrame(f); return; }
    conversation.micFrame(f.subarray(0, at));
    conversation.wake(wake!.status().keywords[0] ?? 'wake word');
    if (at < f.length) conversation.micFrame(f.subarray(at));
  });
  mic.on('failed', (reason: string) => {
    if (d.micProblem === null) log.error({ reason }, 'microphone failed'); else log.debug({ reason }, 'microphone still failing');
    d.micProblem = `microphone: ${reason}`;
    conversation.micFailed(reason);
    d.updateStatus();
  });
  let lastOverrunLog = 0;
  mic.on('overrun', () => {
    if (monotonicMs() - lastOverrunLog > 60_000) log.warn({ overruns: mic.overruns }, 'capture overrun: arecord was starved of CPU and dropped audio');
    lastOverrunLog = monotonicMs();
  });
  mic.on('started', (pid: number) => log.info({ pid, device: d.config.audio.capture_device }, 'capture started (arecord)'));
  mic.on('recovered', () => { log.info('microphone is back'); d.micProblem = null; conversation.micRecovered(); d.updateStatus(); });
  player.on('error', (e: Error) => { conversation.playerFailed(e.message); d.updateStatus(); });
}

/** The button (press: talk; long press: mute), and what follows every state change: the status line, the mute kept. */
function wireButtonAndState(d: Daemon): void {
  const { conversation, store } = d;
  d.gpio.button?.on('press', () => conversation.press('button'));
  d.gpio.button?.on('long-press', () => conversation.toggleMute());
  conversation.on('state', d.updateStatus);
  // Mute is the user's word: it holds across restarts, crashes and power cuts (and while a muted speaker says an announcement).
  let muted = conversation.muted;
  const keepMute = () => {
    if (conversation.muted === muted) return;
    muted = conversation.muted;
    if (!muted) d.muteReason = null;
    store.set({ muted });
  };
  conversation.on('state', keepMute);
  conversation.on('mute', keepMute);
}

/** The control socket (`live-speaker ctl`): status, press, mute, unmute, volume, watch. It cannot open: exit 1. */
async function wireControl(d: Daemon): Promise<void> {
  const { config, file, log, endpoint, leds, gpio, mic, player, tools, store, conversation, observer } = d;
  let control: Daemon['control'];
  // ---- control socket
  const started = monotonicMs();
  const status = ({ config, micProblem, muteReason, wake, echo } = d) => ({ // read at each call: a reload replaces them
    state: conversation.state,
    session: conversation.inConversation ? 'open' : 'none',
    endpoint: endpoint.description,
    model: config.live.model,
    micLive: leds.micLive,
    leds: leds.snapshot(),
    gpio: gpio.state,
    microphone: micProblem ?? (mic.running ? 'running' : conversation.state === 'muted' ? 'stopped (muted)' : 'starting'),
    muteReason: conversation.state === 'muted' ? muteReason : null,
    lastError: conversation.lastError,
    fault: conversation.fault,
    counters: conversation.counters,
    usage: observer.usage, // tokens since start, summed from the server's usageMetadata
    transcripts: config.log.transcripts,
    watchers: observer.watcherCount, // `ctl watch` clients connected now
    control: { clients: control.clients, ...control.counters }, // connections open now (this one too), refusals since start
    timing: conversation.timing,
    wake: wake?.status() ?? { engine: 'none', armed: false, keywords: [], reason: 'no wake word configured (wake.engine: none)', detections: 0 },
    echo: { ...echo.status(), summary: echo.describe(), cleaningNow: echo.cleaning(monotonicMs()), gatedFrames: conversation.gatedFrames, residualFrames: conversation.residualFrames },
    config: { file, conversation: config.conversation, audio: config.audio, wake: { ...config.wake } },
    uptimeS: Math.round((monotonicMs() - started) / 1000),
    memoryMiB: (({ rss, heapUsed, external }) => ({ rss: mib(rss), heapUsed: mib(heapUsed), external: mib(external) }))(process.memoryUsage()),
    pid: process.pid,
    capturePid: mic.pid ?? null,
    captureOverruns: mic.overruns,
    volume: player.volume,
    playback: player.status(),
    timers: { list: tools.timers.list(), ringing: tools.timers.isRinging }, // tools (issue 12)
    mcp: d.mcp.status(), // MCP servers (issue 23): state, tool count, last error; never a token or header
    announcements: d.announcer.status, // issue 24
    mqtt: d.mqtt?.status() ?? null, // connected, broker, last error: never the password
  });
  d.setVolume = (arg: string) => {
    const v = nextVolume(player.volume, arg);
    player.volume = v;
    store.set({ volume: v });
    log.info({ volume: v }, 'volume');
    return v;
  };
  d.stopAll = (by: string) => {
    const dropped = d.announcer.clear(`stopped by ${by}`);
    const rang = tools.timers.stopRinging(by);
    const open = conversation.inConversation;
    if (open) conversation.end(`stopped by ${by}`);
    log.info({ by, dropped, ringing: rang, conversation: open }, 'stop');
  };
  try {
    control = await startControlServer(config.control.socket, parseInt(config.control.mode, 8), (req: ControlRequest) => {
      switch (req.cmd) {
        case 'press': conversation.press('ctl'); break;
        case 'mute': conversation.mute(); break;
        case 'unmute': conversation.unmute(); break;
        case 'volume': d.setVolume(req.value); break;
        case 'announce':
        case 'ask': {
          const item = d.announcer.add({ kind: req.cmd, text: req.text, priority: req.priority === true, from: 'ctl' });
          return { ...status(), queued: { id: item.id, waiting: d.announcer.status.waiting } };
        }
        case 'stop': d.stopAll('ctl'); break;
        case 'status': break;
      }
      return status();
    }, (send, drop) => observer.watch(send, drop), log);
  } catch (e) {
    log.fatal({ error: (e as Error).message }, 'cannot start the control socket');
    process.exit(1);
  }
  d.control = control;
}

/**
 * MQTT (issue 24): the state out (retained, on every change and each connect), commands in (the same as
 * ctl's), conversation events. Connects in the background: a broker that is down, slow or refuses the
 * password never holds up anything here (src/mqtt/link.ts). mqtt changes need a restart.
 */
async function wireMqtt(d: Daemon): Promise<void> {
  d.mqtt = null;
  const mc = d.config.mqtt;
  if (!mc) return;
  const { MqttLink } = await import('./mqtt/link.js'); // the mqtt client (~100 ms, ~10 MiB here) only for a speaker that uses it
  if (d.stopping) return; // stopped while it loaded: nothing to connect
  const { log, conversation, player, tools, announcer } = d;
  const snapshot = (): SpeakerState => ({
    state: conversation.state, muted: conversation.muted, volume: player.volume,
    nextTimer: tools.timers.nextRingIso(), lastError: conversation.lastError?.message ?? null,
  });
  const onCommand = (c: Command) => {
    switch (c.cmd) {
      case 'announce':
      case 'ask': announcer.add({ kind: c.cmd, text: c.text, priority: c.priority, from: 'mqtt' }); break;
      case 'press': conversation.press('mqtt'); break;
      case 'stop': d.stopAll('mqtt'); break;
      case 'mute': if (c.on) conversation.mute(); else conversation.unmute(); break;
      case 'volume': d.setVolume(String(c.value)); break;
    }
    refresh();
  };
  const link = d.mqtt = new MqttLink({ config: mc, password: d.mqttPassword, identity: readIdentity(packageVersion()), log, transcripts: () => d.config.log.transcripts, snapshot, onCommand });
  // Only what changed is published; a connect publishes everything (the link asks for the snapshot).
  let last: Partial<SpeakerState> = {};
  const refresh = () => {
    const now = snapshot();
    const changed = Object.fromEntries(Object.entries(now).filter(([k, v]) => last[k as keyof SpeakerState] !== v)) as Partial<SpeakerState>;
    last = now;
    if (Object.keys(changed).length) link.publishState(changed);
  };
  link.on('status', () => { if (link.stats.connected) last = snapshot(); }); // a connect has just published all of it
  conversation.on('state', refresh);
  conversation.on('mute', refresh);
  setInterval(refresh, 2000).unref(); // volume by voice, timers set and rung
  // The event entity: started, ended, interrupted, tool_called; what was said only with log.transcripts on.
  let turn: { heard: string; said: string } | null = null;
  conversation.on('state', (to: State, from: State) => {
    const rest = (s: State) => s === 'idle' || s === 'muted' || s === 'error';
    if (from !== 'connecting' && to === 'connecting' && rest(from)) { turn = null; link.event('started'); }
    else if (rest(to) && !rest(from)) link.event('ended', { result: to === 'error' ? 'error' : 'ok' }, turn ? { heard: turn.heard, said: turn.said } : {});
  });
  conversation.on('interrupted', (by: string) => link.event('interrupted', { by }));
  conversation.on('tool', (e: { name: string; ok: boolean }) => link.event('tool_called', { tool: e.name, ok: e.ok }));
  conversation.on('transcript', (t: { heard: string; said: string }) => { turn = t; });
  announcer.on('report', (r: SayReport) => link.result(r));
  link.start();
}

/** SIGHUP. Whatever happens, a reload ends in READY=1 (systemctl reload waits for it), with the new config applied or the old one kept. */
async function reload(d: Daemon): Promise<void> {
  d.notify.reloading();
  try {
    await applyConfig(d);
  } catch (e) {
    d.log.error({ error: (e as Error).message }, 'config reload refused; keeping the running config');
    d.notify.status(`config reload refused: ${(e as Error).message}`);
    d.notify.ready();
    return;
  }
  d.notify.ready();
  d.updateStatus();
}

/** Re-read the config and apply what can change live. Everything that can throw (reading the file and the keys) happens before anything changes. */
async function applyConfig(d: Daemon): Promise<void> {
  const { configPath, file, log, endpoint, conversation, tools, player, store, mic } = d;
  const next = loadConfig(configPath).config;
  const needRestart = ['hardware', 'gpio', 'control', 'state', 'mqtt'].filter((k) => JSON.stringify(next[k as keyof Config]) !== JSON.stringify(d.config[k as keyof Config]));
  const captureChanged = JSON.stringify(captureOptions(next)) !== JSON.stringify(captureOptions(d.config));
  const rewake = JSON.stringify(next.wake) !== JSON.stringify(d.config.wake) || (d.wake !== null && !d.wake.armed);
  const nextWake = rewake ? makeWakeWord(next) : d.wake; // reads the AccessKey: may throw
  const reecho = next.audio.echo_cancel !== d.config.audio.echo_cancel || next.audio.barge_in !== d.config.audio.barge_in;
  const nextTokens = mcpTokens(next); // an unreadable token file: throws, the reload is refused
  const nextEcho = reecho ? openEcho(next, configPath ?? file, log) : d.echo; // on and unavailable: throws, the reload is refused
  try {
    await endpoint.configure(next, file); // reads the API key: may throw
  } catch (e) {
    if (nextEcho !== d.echo) nextEcho.close(); // the reload is refused: the stage it opened is not used
    throw e;
  }
  const previousVolume = d.config.audio.volume;
  const mixerChanged = JSON.stringify(next.mixer) !== JSON.stringify(d.config.mixer);
  const config = d.config = { ...next, hardware: d.config.hardware, gpio: d.config.gpio, control: d.config.control, state: d.config.state, mqtt: d.config.mqtt };
  if (mixerChanged) void applyMixer(config, log);
  if (nextEcho !== d.echo) { d.echo.close(); d.echo = nextEcho; void d.echo.warmUp(log); } // the next session's activityHandling follows it; warmed up in case echo cancellation was off until now
  d.echo.tailMs = config.audio.echo_tail_ms;
  log.level = config.log.level;
  conversation.configure(conversationOptions(config));
  tools.dispatcher.configure(config.tools.commands, config.tools.max_concurrent_commands); // the next session declares them
  d.mcp.configure(mcpServers(config), nextTokens); // changed servers reconnect; the next session declares what they list
  if (rewake) {
    // A reload is the user's action that may have fixed the cause: try again now.
    d.wake?.release();
    d.wake = nextWake;
    if (d.wake) { wireWake(d, d.wake); d.wake.arm(); }
  }
  player.configure(playbackOptions(config));
  if (next.audio.volume !== previousVolume) { player.volume = next.audio.volume; store.set({ volume: null }); } // the config's new volume takes over from `ctl volume`
  if (captureChanged && conversation.state !== 'muted') { mic.stop(); mic.setOptions(captureOptions(config)); mic.start(); } else mic.setOptions(captureOptions(config));
  log.info({ restartNeededFor: needRestart }, needRestart.length ? `config reloaded; ${needRestart.join(' and ')} changes need a restart` : 'config reloaded');
}

/** Signals (stop, press, reload) and the one unhandled rejection that is not a bug. */
function wireSignals(d: Daemon): void {
  const { log, notify, conversation, tools, observer, endpoint } = d;
  d.stopping = false;
  const stop = async (signal: string) => {
    if (d.stopping) return;
    d.stopping = true;
    notify.stopping();
    log.info({ signal }, 'stopping');
    conversation.shutdown();
    tools.stop();
    await d.mcp.stop(); // stdio servers get their stdin closed, then SIGTERM
    await d.mqtt?.stop(); // `offline` (retained), at most 1 s
    d.wake?.release();
    d.echo.close();
    d.gpio.release();
    observer.closeWatchers(); // open watches would keep the socket server from closing
    await new Promise<void>((res) => d.control.close(() => res()));
    try { unlinkSync(d.config.control.socket); } catch { /* gone */ }
    await endpoint.close();
    notify.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGUSR1', () => conversation.press('signal'));
  process.on('SIGHUP', () => void reload(d));
  // The SDK parses server frames in a promise nobody awaits: a malformed frame
  // rejects unhandled and, by Node's default, would kill the daemon. That one
  // case is logged and skipped (src/live/gemini.ts now refuses such frames
  // before the SDK sees them; this stays as the fallback). Anything else unexpected is a bug: say what,
  // exit non-zero, and systemd restarts the daemon in a known state.
  process.on('unhandledRejection', (reason) => {
    if (isSdkFrameParseError(reason)) {
      log.error({ error: `${reason.name}: ${reason.message}` }, 'ignored a malformed message from the Live API (the SDK could not parse it)');
      return;
    }
    log.fatal({ error: reason instanceof Error ? (reason.stack ?? `${reason.name}: ${reason.message}`) : String(reason) }, 'unexpected error (unhandled rejection); exiting so that systemd restarts the daemon');
    process.exit(1);
  });
}

/** Ready means ready: the pre-roll needs audio already flowing when the first press comes. Last: READY=1. */
async function becomeReady(d: Daemon): Promise<void> {
  const { log, notify, store, mic, conversation, endpoint, tools } = d;
  if (d.stopping) return; // a stop came during start-up: no mic, no timers, no READY=1 after STOPPING=1
  if (store.get().muted) {
    conversation.mute(); // before the mic ever starts: muted means the microphone is not opened
    if (!store.problem) log.info({ state: store.file }, 'muted before the restart: the microphone stays off until you unmute (long press or `live-speaker ctl unmute`)');
  } else {
    mic.start();
  }
  d.wake?.arm();
  const micUp = conversation.state === 'muted' || await new Promise<boolean>((res) => {
    const t = setTimeout(() => res(false), MIC_READY_WAIT_MS);
    mic.once('frame', () => { clearTimeout(t); res(true); });
    mic.once('failed', () => { clearTimeout(t); res(false); });
  });
  if (d.stopping) return;
  if (!micUp) {
    // Ready anyway (a speaker with a dead mic still answers ctl and shows why); the status line names the microphone.
    d.micProblem ??= `microphone: no audio from '${d.config.audio.capture_device}' within ${MIC_READY_WAIT_MS / 1000} s`;
    log.warn({ problem: d.micProblem }, 'the microphone is not delivering audio; ready anyway, with the problem on the status line');
  }
  // Load the playback addon now (with ALSA's default pointed away from any real device: see playback.ts),
  // and say at once if the speaker cannot be opened (each conversation tries again).
  loadSpeakerAddon()
    .then(() => checkPlaybackDevice(d.config.audio.playback_device, PLAYBACK_RATE))
    .then((problem) => {
      if (problem) log.warn({ error: problem }, 'playback not available yet; will retry at the first reply');
      else log.debug({ device: d.config.audio.playback_device }, 'playback device checked: the speaker addon is loaded and the device opens');
    },
      (e: Error) => log.warn({ error: e.message }, 'playback not available yet; will retry at the first reply'));
  // Alive = the event loop runs this check, and capture either flows or is known to be down and being retried.
  notify.startWatchdog(() => conversation.state === 'muted' || d.micProblem !== null || monotonicMs() - d.lastFrameAt < STUCK_CAPTURE_MS);
  tools.start(conversation); // saved timers: one that fell due while the daemon was down rings once now
  log.info({ endpoint: endpoint.description, gpio: d.gpio.state, socket: d.config.control.socket }, 'ready: press the button, send SIGUSR1 or run `live-speaker ctl press`');
  notify.ready(d.withEcho(statusLine(conversation.state, endpoint.description, d.micProblem, null, d.wake, null, d.muteReason)));
  void d.echo.warmUp(log); // after READY=1, in slices: start-up does not wait for it, nor a press
}
