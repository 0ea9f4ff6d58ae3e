// The composition root: builds each adapter from the config, wires their
// events to the conversation, and owns process-level concerns (signals,
// control socket, shutdown). No behaviour is decided here.
import type { Server } from 'node:net';
import { unlinkSync } from 'node:fs';
import { ConfigError, loadConfig, readApiKey, type Config } from './config.js';
import { createLogger, type Logger } from './log.js';
import { Conversation } from './conversation.js';
import { ArecordMic } from './audio/capture.js';
import { SpeakerPlayer } from './audio/playback.js';
import { GeminiConnector } from './live/gemini.js';
import { Leds, type LedRole } from './leds.js';
import { Button } from './gpio/button.js';
import { GpioUnavailable, onoffBackend, type GpioBackend, type OutputLine } from './gpio/gpio.js';
import { startControlServer, type ControlRequest } from './control.js';
import { LiveEmulator } from './emulator/emulator.js';

export const EXIT_CONFIG = 78; // EX_CONFIG: systemd must not restart-loop on it
export const CAPTURE_RATE = 16000;
export const PLAYBACK_RATE = 24000;

interface Parts {
  conversation: Conversation; mic: ArecordMic; player: SpeakerPlayer; leds: Leds; button: Button | null;
  control: Server; emulator: LiveEmulator | null; gpio: string; endpoint: string;
}

export async function runDaemon(configPath?: string): Promise<void> {
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
  log.info({ config: file ?? '(built-in defaults)' }, 'live-speaker starting');
  let parts: Parts;
  try {
    parts = await build(config, log);
  } catch (e) {
    const code = e instanceof ConfigError ? EXIT_CONFIG : 1;
    log.fatal({ error: (e as Error).message }, 'cannot start');
    process.exit(code);
  }
  const { conversation, mic, control, emulator, leds, button } = parts;

  let stopping = false;
  const stop = async (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    conversation.shutdown();
    leds.release();
    button?.release();
    await new Promise<void>((res) => control.close(() => res()));
    try { unlinkSync(config.control.socket); } catch { /* gone */ }
    await emulator?.close();
    log.info('stopped');
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop('SIGTERM'));
  process.on('SIGINT', () => void stop('SIGINT'));
  process.on('SIGUSR1', () => conversation.press('signal'));
  process.on('SIGHUP', () => log.warn('reload (SIGHUP) is not supported yet: restart to apply config changes'));

  // Ready means ready: the pre-roll needs audio already flowing when the first press comes.
  mic.start();
  const micUp = await new Promise<boolean>((res) => {
    const t = setTimeout(() => res(false), 5000);
    mic.once('frame', () => { clearTimeout(t); res(true); });
    mic.once('failed', () => { clearTimeout(t); res(false); });
  });
  if (!micUp) log.warn('the microphone is not delivering audio yet; starting anyway (the button still answers)');
  log.info({ endpoint: parts.endpoint, gpio: parts.gpio, socket: config.control.socket }, 'ready: press the button, send SIGUSR1 or run `live-speaker ctl press`');
}

async function build(config: Config, log: Logger): Promise<Parts> {
  // ---- the Live endpoint: Google, a configured base_url, or the built-in emulator
  const { key, source } = readApiKey(config);
  let emulator: LiveEmulator | null = null;
  let baseUrl = config.live.base_url;
  let endpoint: string;
  if (baseUrl) {
    endpoint = baseUrl;
    log.info({ base_url: baseUrl, key: key ? source : 'none' }, 'Live API endpoint from live.base_url');
  } else if (key) {
    endpoint = 'Gemini Live API';
    log.info({ keySource: source, model: config.live.model }, 'using the Gemini Live API');
  } else {
    emulator = await LiveEmulator.start({ mode: 'parrot', recordAudio: false, keepClosedSessions: 0 });
    baseUrl = emulator.url;
    endpoint = `built-in emulator (parrot mode) at ${emulator.url}`;
    log.warn('no API key (set GEMINI_API_KEY or live.api_key_file): using the built-in Live API emulator in parrot mode, which says your own words back');
  }
  const live = new GeminiConnector({ apiKey: key ?? 'no-key', baseUrl, live: config.live, silenceMs: config.audio.end_of_speech_ms }, log);

  // ---- GPIO: button and LEDs, or none (said once, clearly)
  let gpio: GpioBackend | null = null;
  let gpioState = 'disabled in config';
  if (config.gpio.enabled) {
    try {
      gpio = await onoffBackend();
      gpioState = gpio.name;
    } catch (e) {
      if (!(e instanceof GpioUnavailable)) throw e;
      gpioState = `unavailable: ${e.message}`;
      log.warn(`no GPIO: ${e.message}; running without button and LEDs (ctl press and SIGUSR1 still work)`);
    }
  }
  const lines: Partial<Record<LedRole, OutputLine>> = {};
  let button: Button | null = null;
  if (gpio) {
    try {
      for (const [role, led] of Object.entries(config.gpio.leds)) {
        if (led) lines[role as LedRole] = gpio.output(led.pin, led.active_low);
      }
      const b = config.gpio.button;
      if (b.pin !== null) button = new Button(gpio.input(b.pin, b.active_low, b.debounce_ms), b.long_press_ms);
    } catch (e) {
      if (!(e instanceof GpioUnavailable)) throw e;
      gpioState = `unavailable: ${e.message}`;
      log.warn(`GPIO: ${e.message}; running without button and LEDs (ctl press and SIGUSR1 still work)`);
      for (const l of Object.values(lines)) l?.release();
      for (const k of Object.keys(lines)) delete lines[k as LedRole];
    }
  }
  const leds = new Leds(lines, (role, on) => log.debug({ led: role, on }, 'led'));

  // ---- audio
  const mic = new ArecordMic({ device: config.audio.capture_device, rate: CAPTURE_RATE, periodMs: config.audio.capture_period_ms });
  const player = new SpeakerPlayer({ device: config.audio.playback_device, rate: PLAYBACK_RATE, leadMs: config.audio.playback_lead_ms });

  // ---- the conversation
  const c = config.conversation;
  const conversation = new Conversation({
    rate: CAPTURE_RATE,
    prerollMs: config.audio.preroll_ms,
    vadThresholdDbfs: config.audio.vad_threshold_dbfs,
    endOfSpeechMs: config.audio.end_of_speech_ms,
    noSpeechTimeoutMs: c.no_speech_timeout_s * 1000,
    followUpMs: c.follow_up_s * 1000,
    maxConversationMs: c.max_conversation_s * 1000,
    errorDisplayMs: c.error_display_s * 1000,
  }, { live, player, mic, indicator: leds }, log);

  let micProblem: string | null = null;
  mic.on('frame', (f: Buffer) => conversation.micFrame(f));
  mic.on('failed', (reason: string) => {
    if (micProblem === null) log.error({ reason }, 'microphone failed'); else log.debug({ reason }, 'microphone still failing');
    micProblem = reason;
    conversation.micFailed(reason);
  });
  mic.on('recovered', () => { log.info('microphone is back'); micProblem = null; });
  player.on('error', (e: Error) => conversation.playerFailed(e.message));
  button?.on('press', () => conversation.press('button'));
  button?.on('long-press', () => conversation.toggleMute());

  const started = Date.now();
  const status = () => ({
    state: conversation.state,
    session: conversation.inConversation ? 'open' : 'none',
    endpoint,
    model: config.live.model,
    micLive: leds.micLive,
    leds: leds.snapshot(),
    gpio: gpioState,
    microphone: micProblem ?? (mic.running ? 'running' : conversation.state === 'muted' ? 'stopped (muted)' : 'starting'),
    lastError: conversation.lastError,
    counters: conversation.counters,
    timing: conversation.timing,
    uptimeS: Math.round((Date.now() - started) / 1000),
    pid: process.pid,
    capturePid: mic.pid ?? null,
  });
  const control = await startControlServer(config.control.socket, parseInt(config.control.mode, 8), (req: ControlRequest) => {
    switch (req.cmd) {
      case 'press': conversation.press('ctl'); break;
      case 'mute': conversation.mute(); break;
      case 'unmute': conversation.unmute(); break;
      case 'status': break;
    }
    return status();
  });
  return { conversation, mic, player, leds, button, control, emulator, gpio: gpioState, endpoint };
}
