// Config: YAML file -> validated, typed object. The zod schema below is the
// single source of defaults; config.yaml at the top of the repo documents it.
import { readFileSync, existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { userInfo } from 'node:os';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { MAX_VOLUME } from './state.js';
import { HARDWARE_PROFILES, applyProfile, readSoundCards } from './hardware.js';
import { DEFAULT_LIVE_MODEL } from './live/models.js';
import { BUILTIN_TOOL_NAMES } from './tools/names.js';

const pin = z.number().int().min(0).max(63);
const led = z.strictObject({
  pin,
  active_low: z.boolean().default(false),
});
const colour = z.string().regex(/^#[0-9a-fA-F]{6}$/, 'a colour like "#00a0ff"');

// ---- tools (issue 12): user commands the model may call; README "What you can ask it"
interface JsonProp { type: 'string' | 'number' | 'integer' | 'boolean' | 'array' | 'object'; description?: string; enum?: string[]; items?: JsonProp; properties?: Record<string, JsonProp>; required?: string[] }
const jsonProp: z.ZodType<JsonProp> = z.lazy(() => z.strictObject({
  type: z.enum(['string', 'number', 'integer', 'boolean', 'array', 'object']),
  description: z.string().optional(),
  enum: z.array(z.string()).min(1).optional(),
  items: jsonProp.optional(),
  properties: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a parameter name (letters, digits, _)'), jsonProp).optional(),
  required: z.array(z.string()).optional(),
}));
const toolCommand = z.strictObject({
  name: z.string().regex(/^[a-z_][a-z0-9_]{0,63}$/, 'a function name: lower-case letters, digits and _, at most 64')
    .refine((n) => !(BUILTIN_TOOL_NAMES as readonly string[]).includes(n), 'the name of a built-in tool'),
  description: z.string().min(1),
  parameters: z.strictObject({
    type: z.literal('object'),
    properties: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a parameter name (letters, digits, _)'), jsonProp).default({}),
    required: z.array(z.string()).default([]),
  }).default({ type: 'object', properties: {}, required: [] }),
  argv: z.array(z.string().min(1)).min(1),
  timeout_s: z.number().positive().max(600).default(10),
  max_output_bytes: z.number().int().min(64).max(1_000_000).default(4000),
  non_blocking: z.boolean().default(false),
}).superRefine((c, ctx) => {
  const props = Object.keys(c.parameters.properties);
  for (const r of c.parameters.required) if (!props.includes(r)) ctx.addIssue({ code: 'custom', path: ['parameters', 'required'], message: `'${r}' is not in parameters.properties` });
  c.argv.forEach((a, i) => {
    const whole = /^\{([A-Za-z_][A-Za-z0-9_]*)\}$/.exec(a);
    if (whole) { if (!props.includes(whole[1])) ctx.addIssue({ code: 'custom', path: ['argv', i], message: `'{${whole[1]}}' names no parameter (have: ${props.join(', ') || 'none'})` }); }
    else if (/\{[A-Za-z_][A-Za-z0-9_]*\}/.test(a)) ctx.addIssue({ code: 'custom', path: ['argv', i], message: 'a placeholder must be a whole argv element ("{city}"), not part of one' });
  });
  if (i0(c.argv[0])) ctx.addIssue({ code: 'custom', path: ['argv', 0], message: 'the program itself cannot be a placeholder' });
});
const i0 = (a: string) => /^\{.*\}$/.test(a);

export const ConfigSchema = z.strictObject({
  // A voice HAT: sets the sound card, button, LEDs and mixer beneath this file (src/hardware.ts); any key here still wins.
  hardware: z.enum(Object.keys(HARDWARE_PROFILES) as [string, ...string[]]).default('custom'),
  live: z.strictObject({
    model: z.string().min(1).default(DEFAULT_LIVE_MODEL), // src/live/models.ts: the current stable native-audio Live model
    voice: z.string().min(1).default('Kore'),
    language: z.string().min(2).default('en-US'),
    system_instruction: z.string().default(
      'You are a friendly voice assistant on a smart speaker in a home. Answer briefly and conversationally.'),
    base_url: z.url().nullable().default(null),
    api_key_file: z.string().nullable().default(null),
    connect_timeout_s: z.number().positive().max(120).default(10),
    // The server's voice activity detection (realtimeInputConfig.automaticActivityDetection in the setup).
    vad: z.strictObject({
      start_sensitivity: z.enum(['default', 'low', 'high']).default('default'), // default: not sent (the server's own)
      end_sensitivity: z.enum(['default', 'low', 'high']).default('default'),
      prefix_padding_ms: z.number().int().min(0).max(2000).nullable().default(null), // null: not sent
      silence_duration_ms: z.number().int().min(100).max(5000).nullable().default(null), // null: audio.end_of_speech_ms
    }).prefault({}),
    // issue 12: Google Search grounding (news, weather); a place for the context line (null = none).
    google_search: z.boolean().default(false),
    location: z.string().max(100).nullable().default(null),
  }).prefault({}),
  audio: z.strictObject({
    capture_device: z.string().min(1).default('default'),
    playback_device: z.string().min(1).default('default'),
    capture_period_ms: z.number().int().min(5).max(200).default(20),
    preroll_ms: z.number().int().min(0).max(5000).default(300),
    playback_lead_ms: z.number().int().min(100).max(400).default(200), // under the addon's 0.5 s ALSA buffer: writes never block; at least 100: audio is only written behind 50 ms queued (playback.ts GUARD_MS) and the idle queue is 120 ms
    output_latency_ms: z.number().min(0).max(500).default(0),
    volume: z.number().int().min(0).max(MAX_VOLUME).default(100),
    vad_threshold_dbfs: z.number().min(-100).max(0).default(-45),
    end_of_speech_ms: z.number().int().min(100).max(5000).default(700),
    // Echo cancellation between capture and everything that reads the mic (src/audio/echo.ts).
    echo_cancel: z.enum(['auto', 'on', 'off']).default('auto'),
    // voice: talking over a reply interrupts it (needs a converged canceller); press: only the button or the wake word do.
    barge_in: z.enum(['voice', 'press']).default('voice'),
    // Half-duplex: silence is sent for this long after a reply's last sample was heard (the echo still on its way).
    echo_tail_ms: z.number().int().min(0).max(3000).default(1000),
  }).prefault({}),
  // amixer settings applied at start (codec switches a HAT needs); failures are logged, never fatal.
  mixer: z.strictObject({
    card: z.string().min(1).nullable().default(null), // null: the CARD= of audio.playback_device, else of audio.capture_device
    settings: z.array(z.strictObject({ control: z.string().min(1), value: z.string().min(1) })).default([]),
  }).prefault({}),
  gpio: z.strictObject({
    enabled: z.boolean().default(true),
    backend: z.enum(['auto', 'sysfs', 'chardev']).default('auto'),
    button: z.strictObject({
      pin: pin.nullable().default(17),
      active_low: z.boolean().default(true),
      bias: z.enum(['pull-up', 'pull-down', 'none']).default('pull-up'),
      debounce_ms: z.number().int().min(0).max(500).default(20),
      long_press_ms: z.number().int().min(300).max(10000).default(1500),
    }).prefault({}),
    leds: z.strictObject({
      listening: led.nullable().default({ pin: 5, active_low: false }),
      activity: led.nullable().default({ pin: 6, active_low: false }),
      muted: led.nullable().default({ pin: 13, active_low: false }),
      error: led.nullable().default({ pin: 19, active_low: false }),
    }).prefault({}),
    // An APA102 / DotStar ring (or strip); null = none.
    ring: z.strictObject({
      count: z.number().int().min(1).max(256),
      // SPI device (e.g. /dev/spidev0.1), or null to bit-bang over clock_pin/data_pin (sysfs GPIO only).
      spi: z.string().min(1).nullable().default('/dev/spidev0.1'),
      clock_pin: pin.nullable().default(null),
      data_pin: pin.nullable().default(null),
      speed_hz: z.number().int().min(10_000).max(32_000_000).default(4_000_000),
      // A pin that must be high for the LEDs to get power (ReSpeaker 4-Mic: BCM 5); null = none.
      power_pin: pin.nullable().default(null),
      // 0..1 of the LEDs' 5-bit global brightness; never 0, or the privacy light would be dark.
      brightness: z.number().min(0.04).max(1).default(0.25),
      colours: z.strictObject({
        listening: colour.default('#0060ff'),
        activity: colour.default('#ffffff'),
        speaking: colour.default('#00c040'),
        muted: colour.default('#ff0000'),
        error: colour.default('#ff3000'),
        timer: colour.default('#ffa000'),
      }).prefault({}),
    }).nullable().default(null),
  }).prefault({}),
  wake: z.strictObject({
    engine: z.enum(['none', 'porcupine', 'tone']).default('none'),
    keywords: z.array(z.strictObject({
      name: z.string().min(1), // a built-in keyword (jarvis, computer, ...) or a path to a .ppn file
      sensitivity: z.number().min(0).max(1).default(0.5),
    })).min(1).default([{ name: 'jarvis', sensitivity: 0.5 }]),
    access_key_file: z.string().nullable().default(null),
    model_path: z.string().nullable().default(null),
    trim_wake_word: z.boolean().default(true),
    before_ms: z.number().int().min(0).max(3000).default(1000),
    refractory_ms: z.number().int().min(0).max(10000).default(1500),
    tone_hz: z.number().positive().max(7000).default(1000),
  }).prefault({}),
  feedback: z.strictObject({
    wake_sound: z.boolean().default(true),
    error_sound: z.boolean().default(true),
    volume: z.number().min(0).max(1).default(0.25),
  }).prefault({}),
  conversation: z.strictObject({
    no_speech_timeout_s: z.number().positive().max(120).default(8),
    follow_up_s: z.number().min(0).max(120).default(8),
    max_conversation_s: z.number().positive().max(3600).default(600),
    error_display_s: z.number().min(0).max(60).default(3),
    resume_within_s: z.number().min(0).max(7200).default(0),
  }).prefault({}),
  control: z.strictObject({
    socket: z.string().min(1).default('/run/live-speaker/control.sock'),
    mode: z.string().regex(/^0?[0-7]{3}$/).default('0660'),
  }).prefault({}),
  log: z.strictObject({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info'),
    // What was heard and said, in the journal and `ctl watch`: off for privacy unless asked for.
    transcripts: z.boolean().default(false),
  }).prefault({}),
  state: z.strictObject({
    // null: $STATE_DIRECTORY (systemd's StateDirectory=), else /var/lib/live-speaker
    dir: z.string().min(1).nullable().default(null),
  }).prefault({}),
  // ---- tools (issue 12)
  tools: z.strictObject({
    timer_ring_max_s: z.number().int().min(5).max(3600).default(600),
    commands: z.array(toolCommand).default([]).superRefine((cs, ctx) => {
      cs.forEach((c, i) => { if (cs.findIndex((d) => d.name === c.name) !== i) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `'${c.name}' is used twice` }); });
    }),
  }).prefault({}),
});

export type Config = z.infer<typeof ConfigSchema>;

export class ConfigError extends Error {
  constructor(message: string, readonly file: string | null) { super(message); this.name = 'ConfigError'; }
}

export const DEFAULT_CONFIG_PATHS = ['/etc/live-speaker/config.yaml', './config.yaml'];

/** The file to read: --config if given, else the first default path that exists, else none (built-in defaults). */
export function findConfigFile(explicit?: string): string | null {
  if (explicit) return resolve(explicit);
  for (const p of DEFAULT_CONFIG_PATHS) if (existsSync(p)) return resolve(p);
  return null;
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.join('.');
  if (issue.code === 'unrecognized_keys') {
    const keys = issue.keys.map((k) => (path ? `${path}.${k}` : k));
    return `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => `'${k}'`).join(', ')}`;
  }
  return `'${path || '(top level)'}': ${issue.message}`;
}

/**
 * Validate an already-parsed object; errors name every bad key and the file.
 * A `hardware:` profile is applied beneath the file's own keys first;
 * `soundCards` (ALSA card ids present) picks the profile's card name.
 */
export function parseConfig(raw: unknown, file: string | null, soundCards: string[] = readSoundCards()): Config {
  const where = file ?? 'built-in defaults';
  const result = ConfigSchema.safeParse(applyProfile(raw ?? {}, soundCards));
  if (!result.success) {
    const lines = result.error.issues.map(describeIssue);
    throw new ConfigError(`invalid config in ${where}: ${lines.join('; ')}`, file);
  }
  return result.data;
}

export function loadConfig(explicit?: string): { config: Config; file: string | null } {
  const file = findConfigFile(explicit);
  if (!file) return { config: parseConfig({}, null), file: null };
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config file ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`, file);
  }
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    const e = doc.errors[0];
    const pos = e.linePos?.[0];
    throw new ConfigError(`invalid YAML in ${file}${pos ? ` at line ${pos.line}, column ${pos.col}` : ''}: ${e.message.split('\n')[0]}`, file);
  }
  // Building the value can still fail: an alias to no anchor, or so many aliases that expanding them would eat the memory ("billion laughs").
  let raw: unknown;
  try { raw = doc.toJS({ maxAliasCount: 100 }); } catch (e) {
    throw new ConfigError(`invalid YAML in ${file}: ${(e as Error).message.split('\n')[0]}`, file);
  }
  return { config: parseConfig(raw, file), file };
}

/** The directory for what must survive a restart (mute, ...): state.dir, else $STATE_DIRECTORY, else /var/lib/live-speaker. */
export function stateDir(config: Config, env: NodeJS.ProcessEnv = process.env): string {
  return config.state.dir ?? env.STATE_DIRECTORY?.split(':')[0] ?? '/var/lib/live-speaker';
}

/**
 * A key from the environment, else the systemd credential (LoadCredential=,
 * read by systemd as root and handed to the service), else the file named in
 * the config. A configured file that is missing or that this process cannot
 * read is a config error naming the setting, the file and the fix: the
 * service runs as its own user, not root. Keys are never logged.
 */
function readKey(envNames: string[], credential: string, setting: string, file: string | null, env: NodeJS.ProcessEnv): { key: string | null; source: string } {
  for (const name of envNames) {
    const v = env[name]?.trim();
    if (v) return { key: v, source: name };
  }
  const candidates = [env.CREDENTIALS_DIRECTORY ? `${env.CREDENTIALS_DIRECTORY}/${credential}` : null, file];
  for (const p of candidates) {
    if (!p) continue;
    const configured = p === file;
    if (!existsSync(p)) {
      if (configured) throw new ConfigError(`${setting}: ${p} does not exist`, null);
      continue;
    }
    let key: string;
    try {
      key = readFileSync(p, 'utf8').trim();
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? String(e);
      throw new ConfigError(`${setting}: cannot read ${p} (${code}) as user ${userName()}: make it readable by the service ` +
        `(sudo chown root:live-speaker ${p} && sudo chmod 0640 ${p}), or put the key in /etc/live-speaker/${credential}, which systemd hands over as a credential`, null);
    }
    if (key) return { key, source: p };
  }
  return { key: null, source: 'none' };
}

function userName(): string {
  try { return userInfo().username; } catch { return `uid ${process.getuid?.() ?? '?'}`; }
}

/** Picovoice AccessKey: PICOVOICE_ACCESS_KEY, the systemd credential, or wake.access_key_file. Never logged. */
export function readAccessKey(config: Config, env: NodeJS.ProcessEnv = process.env): { key: string | null; source: string } {
  return readKey(['PICOVOICE_ACCESS_KEY'], 'picovoice-access-key', 'wake.access_key_file', config.wake.access_key_file, env);
}

/** Gemini API key: GEMINI_API_KEY or GOOGLE_API_KEY, the systemd credential, or live.api_key_file. Never logged. */
export function readApiKey(config: Config, env: NodeJS.ProcessEnv = process.env): { key: string | null; source: string } {
  return readKey(['GEMINI_API_KEY', 'GOOGLE_API_KEY'], 'gemini-api-key', 'live.api_key_file', config.live.api_key_file, env);
}
