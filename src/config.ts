// Config: YAML file -> validated, typed object. The zod schema below is the
// single source of defaults and of what each key means; config.yaml at the
// top of the repo and docs/configuration.md are generated from it.
import { readFileSync, existsSync, accessSync, statSync, constants as fsConstants } from 'node:fs';
import { resolve } from 'node:path';
import { userInfo } from 'node:os';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { MAX_VOLUME } from './state.js';
import { HARDWARE_PROFILES, applyProfile, readSoundCards } from './hardware.js';
import { DEFAULT_LIVE_MODEL } from './live/models.js';
import { BUILTIN_TOOL_NAMES } from './tools/names.js';

const pin = z.number().int().min(0).max(63);
// Every key's meaning lives next to its default: `.describe(text)` (or
// `.meta({ description, example })`), after the default. The shipped
// config.yaml (as comments above each key) and docs/configuration.md are
// generated from these by `npm run config-docs` (scripts/config-reference.ts);
// test/config-reference.test.ts fails when they drift or a key has none.
// Developer notes stay in // comments.
const led = z.strictObject({
  pin: pin.describe('BCM pin number.'),
  active_low: z.boolean().default(false).describe('true: the LED lights when the pin is low (LED wired to 3.3 V).'),
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
// MCP servers whose tools the model may call (issue 23; src/tools/mcp/).
const mcpCommon = {
  allow: z.array(z.string().min(1)).default(['*'])
    .describe('Globs over the server\'s own tool names (`*` any characters, `?` one): only matching tools are declared to the model.'),
  deny: z.array(z.string().min(1)).default([])
    .describe('Globs over its tool names that are never declared, even when allowed (deny wins).'),
  timeout_s: z.number().positive().max(300).default(15)
    .describe('Seconds a call may take before the model is told the server did not answer (the server is sent notifications/cancelled).'),
  non_blocking: z.boolean().default(false)
    .describe('true: its tools are declared NON_BLOCKING, as a user command with non_blocking is: the model keeps talking while a call runs, and the answer is given to it when it is idle. false: the model waits for the answer (right for quick actions such as turning a light off).'),
};
const mcpServer = z.strictObject({
  name: z.string().regex(/^[a-z][a-z0-9]{0,15}$/, 'a short prefix: a lower-case letter, then lower-case letters and digits, at most 16')
    .describe('A short name (lower-case letters and digits, at most 16): each of its tools is declared as `<name>__<tool>` (e.g. `ha__HassTurnOff`), so two servers cannot clash.'),
  url: z.url().nullable().default(null)
    .describe('Streamable HTTP endpoint (e.g. http://homeassistant.local:8123/api/mcp); a server that only speaks the older HTTP+SSE transport is tried with that when Streamable HTTP is refused. Either url or command.'),
  headers: z.record(z.string(), z.string()).default({})
    .describe('Extra HTTP headers for url (not for secrets: those go in token_file).'),
  token_file: z.string().nullable().default(null)
    .describe('A file holding a bearer token for url (sent as `Authorization: Bearer <token>`), e.g. a Home Assistant long-lived access token. Same rules as live.api_key_file: readable by the live-speaker user (owner root, group live-speaker, mode 0640); one it cannot read is a config error naming the file. Never logged, never in `ctl status`.'),
  command: z.array(z.string().min(1)).min(1).nullable().default(null)
    .describe('A stdio server: the program and its arguments, run directly (no shell) as the service user, with the API keys and anything named like a key, token, secret or password removed from its environment; restarted with back-off when it exits. Either url or command.'),
  env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({})
    .describe('Environment variables added for command.'),
  ...mcpCommon,
}).superRefine((m, ctx) => {
  if ((m.url === null) === (m.command === null)) ctx.addIssue({ code: 'custom', path: ['url'], message: 'give exactly one of url and command' });
  if (m.command !== null && m.token_file !== null) ctx.addIssue({ code: 'custom', path: ['token_file'], message: 'token_file is for url servers (pass a stdio server its secrets through env or its own config)' });
  if (m.url !== null && !/^https?:$/.test(new URL(m.url).protocol)) ctx.addIssue({ code: 'custom', path: ['url'], message: 'an http:// or https:// URL' });
});
export type McpServerConfig = z.infer<typeof mcpServer>;
const homeAssistant = z.strictObject({
  url: z.url().describe('Home Assistant\'s base URL, e.g. http://homeassistant.local:8123 (the MCP endpoint is <url>/api/mcp).'),
  token_file: z.string().describe('A file holding a long-lived access token (your profile → Security); same rules as tools.mcp token_file.'),
  ...mcpCommon,
});

const toolCommand = z.strictObject({
  name: z.string().regex(/^[a-z_][a-z0-9_]{0,63}$/, 'a function name: lower-case letters, digits and _, at most 64')
    .refine((n) => !(BUILTIN_TOOL_NAMES as readonly string[]).includes(n), 'the name of a built-in tool')
    .describe("The function's name, as the model calls it: lower-case letters, digits and _, at most 64, not a built-in tool's name."),
  description: z.string().min(1)
    .describe('What the function does, as the model is told (it decides from this when to call it).'),
  parameters: z.strictObject({
    type: z.literal('object').describe('Always object.'),
    properties: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'a parameter name (letters, digits, _)'), jsonProp).default({})
      .describe('Each argument by name (letters, digits, _): a JSON schema with a type (string, number, integer, boolean, array or object) and, as needed, description, enum (of strings), items, properties and required.'),
    required: z.array(z.string()).default([])
      .describe('The arguments the model must give; each must be one of properties.'),
  }).default({ type: 'object', properties: {}, required: [] })
    .describe('Its arguments, as a JSON schema: type object, properties, required.'),
  argv: z.array(z.string().min(1)).min(1)
    .describe('The program and its arguments, run directly (no shell). An element that is exactly "{name}" is replaced by that argument (left out when an optional one is not given); a placeholder inside a longer element, or as the program itself, is a config error.'),
  timeout_s: z.number().positive().max(600).default(10)
    .describe('Seconds after which the command is killed (with its children).'),
  max_output_bytes: z.number().int().min(64).max(1_000_000).default(4000)
    .describe('Stdout beyond this many bytes is dropped (and the model told).'),
  non_blocking: z.boolean().default(false)
    .describe('true: declared NON_BLOCKING; the model keeps talking while it runs.'),
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
  hardware: z.enum(Object.keys(HARDWARE_PROFILES) as [string, ...string[]]).default('custom')
    .describe('A voice HAT: one line sets its sound card (by ALSA card name), button (pin and pull), LEDs or LED ring, and the codec\'s mixer switches, beneath this file: any key you set below still wins. custom: your own wiring, every key as below. respeaker-2mic: Seeed ReSpeaker 2-Mics Pi HAT (WM8960, 3 APA102, button BCM 17). respeaker-4mic: ReSpeaker 4-Mic Array (AC108, capture only, 12 APA102 powered by BCM 5, no button). voice-bonnet: Adafruit Voice Bonnet (WM8960, 3 DotStars bit-banged on BCM 6/5, button BCM 17). aiy-voice: Google AIY Voice HAT v1 (button BCM 23, its LED BCM 25). `live-speaker doctor` lists the sound cards it sees and suggests one. docs/hardware.md, "Voice HATs".'),
  live: z.strictObject({
    model: z.string().min(1).default(DEFAULT_LIVE_MODEL) // src/live/models.ts: the current stable native-audio Live model
      .describe('The Live API model. The default is the current stable native-audio Live model on the Gemini API (checked 2026-11-26 against https://ai.google.dev/gemini-api/docs/models and .../deprecations). Model names change: when Google retires the one set here, the service refuses it, `ctl status`, `systemctl status` and `live-speaker doctor` say so and name this setting; set a current one and `systemctl reload live-speaker`.'),
    voice: z.string().min(1).default('Kore')
      .describe('Prebuilt voice name (Kore, Puck, Charon, Aoede, Fenrir, ...).'),
    language: z.string().min(2).default('en-US')
      .describe('BCP-47 language of the spoken replies.'),
    system_instruction: z.string().default(
      'You are a friendly voice assistant on a smart speaker in a home. Answer briefly and conversationally.')
      .describe('What the assistant is told about itself at the start of each conversation.'),
    base_url: z.url().nullable().default(null)
      .describe('Another Live endpoint, e.g. `live-speaker emulator` (http://127.0.0.1:8765). null = Google\'s endpoint with the API key; with no key at all the daemon runs the built-in emulator in parrot mode (it says your words back).'),
    api_key_file: z.string().nullable().default(null)
      .describe('A file holding the API key, if not given by GEMINI_API_KEY / GOOGLE_API_KEY or the systemd credential `gemini-api-key` (the installed root-only /etc/live-speaker/gemini-api-key). The service runs as the live-speaker user, so the file must be readable by it: owner root, group live-speaker, mode 0640. One it cannot read stops the daemon with a config error naming the file (exit 78). Never put the key itself here.'),
    connect_timeout_s: z.number().positive().max(120).default(10)
      .describe('How long to wait for the Live API to answer the session setup.'),
    // The server's voice activity detection (realtimeInputConfig.automaticActivityDetection in the setup).
    vad: z.strictObject({
      start_sensitivity: z.enum(['default', 'low', 'high']).default('default') // default: not sent (the server's own)
        .describe('How readily the server hears the start of speech: low, high, or default (not sent: the server\'s own). A low start sensitivity makes residual echo and noise less likely to interrupt a reply.'),
      end_sensitivity: z.enum(['default', 'low', 'high']).default('default')
        .describe('How readily the server hears the end of speech: low, high, or default (not sent: the server\'s own).'),
      prefix_padding_ms: z.number().int().min(0).max(2000).nullable().default(null) // null: not sent
        .describe('Speech needed before a start is counted, ms; null = the server\'s default.'),
      silence_duration_ms: z.number().int().min(100).max(5000).nullable().default(null) // null: audio.end_of_speech_ms
        .describe('Silence that ends the user\'s turn, ms; null = audio.end_of_speech_ms.'),
    }).prefault({}).describe('The server\'s voice activity detection, sent in the session setup.'),
    // issue 12: Google Search grounding (news, weather); a place for the context line (null = none).
    google_search: z.boolean().default(false)
      .describe('Google Search grounding: the model may search the web for news, weather and other current answers.'),
    location: z.string().max(100).nullable().default(null)
      .describe('A place told to the model at each session start, after the local date, time and time zone (always sent), e.g. "Lyon, France"; null = none.'),
  }).prefault({}).describe('The Live API session: the model, its voice and language, what it is told, where it is reached.'),
  audio: z.strictObject({
    capture_device: z.string().min(1).default('default')
      .describe('ALSA capture device (`arecord -L` lists them), e.g. plughw:CARD=Device,DEV=0.'),
    playback_device: z.string().min(1).default('default')
      .describe('ALSA playback device (`aplay -L`). Opened when a conversation starts, closed when it ends. A hw:/plughw: card is exclusive: in a desktop session PipeWire holds it, so use `default` there.'),
    capture_period_ms: z.number().int().min(5).max(200).default(20)
      .describe('arecord period: audio reaches the daemon in frames this long. Every frame costs the daemon and arecord a wake-up, so idle CPU falls as it grows (measured: 32 ms frames cost about two thirds of 20 ms ones), and each frame adds up to this much to what the server hears late. The echo tests are run at 20; with 32, one of them (a -12 dB, 30 ms echo path) once let the echo through under load.'),
    preroll_ms: z.number().int().min(0).max(5000).default(300)
      .describe('Audio from just before a press that is sent first, so no word is lost.'),
    playback_lead_ms: z.number().int().min(100).max(400).default(200) // under the addon's 0.5 s ALSA buffer: writes never block; at least 100: audio is only written behind 50 ms queued (playback.ts GUARD_MS) and the idle queue is 120 ms
      .describe('Reply audio kept queued in the sound device while a reply plays (100-400; under the `speaker` addon\'s 0.5 s ALSA buffer): the daemon may be late by this much without a gap. Barge-in does not wait for it: it drops what the device holds. Between replies 120 ms of silence is kept queued (less if this is less): a reply\'s first sample waits behind that.'),
    output_latency_ms: z.number().min(0).max(500).default(0)
      .describe('What follows the ALSA queue before a sample is heard (a sound server\'s mixing, a DAC\'s buffer), in ms: added to the daemon\'s count of the queue to tell when each sample leaves the speaker (when a reply has finished, and the reference for echo cancellation). With 0, a reply\'s last sample was heard 9-17 ms after the daemon said on the simulated PulseAudio card (npm run bench, "timeline" row: a constant per run that moves with the machine\'s load); 0 suits a hw:/plughw: device.'),
    volume: z.number().int().min(0).max(MAX_VOLUME).default(100)
      .describe('Reply volume in percent (0-150), for everything the speaker plays. Above 100 a soft limiter keeps peaks at -2 dBFS, so nothing clips. `live-speaker ctl volume N|up|down` changes it at run time and that is kept across restarts (state.dir); a changed value here (and a reload) takes over again.'),
    vad_threshold_dbfs: z.number().min(-100).max(0).default(-45)
      .describe('Level above which the microphone counts as speech (local VAD: LEDs and timeouts only; the server decides turns).'),
    end_of_speech_ms: z.number().int().min(100).max(5000).default(700)
      .describe('Silence that ends the user\'s turn (sent to the server\'s VAD as well, unless live.vad.silence_duration_ms is set).'),
    // Echo cancellation between capture and everything that reads the mic (src/audio/echo.ts).
    echo_cancel: z.enum(['auto', 'on', 'off']).default('auto')
      .describe('Echo cancellation between the microphone and everything that reads it (wake word, local VAD, what is sent), against the exact samples the speaker played. auto: when an engine can run here, else half-duplex. on: an engine is required (the daemon will not start without one). off: none, for hardware that cancels its own echo (USB speakerphones). `live-speaker ctl status` and `doctor` say which engine runs, its delay estimate and whether it has converged. docs/audio.md, "Echo cancellation".'),
    // voice: talking over a reply interrupts it (needs a converged canceller); press: only the button or the wake word do.
    barge_in: z.enum(['voice', 'press']).default('voice')
      .describe('What may interrupt a reply. voice: talking over it (once the canceller has converged and taken the echo 20 dB down; what it leaves of the echo is gated), the button and the wake word. press: only the button and the wake word; the server gets silence while a reply plays.'),
    // Half-duplex: silence is sent for this long after a reply's last sample was heard (the echo still on its way).
    echo_tail_ms: z.number().int().min(0).max(3000).default(1000)
      .describe('How long after a sample is heard its echo may still reach the mic (the echo\'s delay plus the room\'s reverberation). The canceller\'s output is used until then (the mic passes untouched otherwise); half-duplex (no engine, barge_in: press, or the echo not yet 20 dB down) sends silence in place of the mic while a reply plays and for this long after it. The simulated PulseAudio card needs about 1000; a speaker and mic on one hw: card less.'),
  }).prefault({}).describe('The microphone and the speaker: ALSA devices and timing, volume, local speech detection, echo cancellation and barge-in.'),
  // amixer settings applied at start (codec switches a HAT needs); failures are logged, never fatal.
  mixer: z.strictObject({
    card: z.string().min(1).nullable().default(null) // null: the CARD= of audio.playback_device, else of audio.capture_device
      .describe('The ALSA card name; null = the CARD= of audio.playback_device (else of audio.capture_device).'),
    settings: z.array(z.strictObject({
      control: z.string().min(1).describe('The control\'s name, as `amixer -c CARD scontrols` lists it.'),
      value: z.string().min(1).describe('Its value, as amixer takes it (words separated by spaces are separate arguments), e.g. on, off, 80%.'),
    })).default([])
      .describe('The settings, applied in order, e.g. - { control: "Left Output Mixer PCM", value: "on" }'),
  }).prefault({})
    .describe('Mixer settings applied with `amixer -c CARD sset CONTROL VALUE` at start and on reload (a HAT\'s codec may start with its outputs or capture switched off). A setting that fails is logged; the rest still apply.'),
  gpio: z.strictObject({
    enabled: z.boolean().default(true)
      .describe('false: run without button and LEDs (ctl press / SIGUSR1 still work).'),
    backend: z.enum(['auto', 'sysfs', 'chardev']).default('auto')
      .describe('sysfs: onoff over /sys/class/gpio (deprecated upstream; cannot set a pull, so install.sh writes the firmware line gpio=PIN=ip,pu to config.txt and a reboot applies it). chardev: the GPIO character device through libgpiod\'s tools (Debian package gpiod; sets the pull itself). auto: sysfs where /sys/class/gpio exists, else chardev.'),
    button: z.strictObject({
      pin: pin.nullable().default(17)
        .describe('BCM pin number (as on every pinout); null = no button.'),
      active_low: z.boolean().default(true)
        .describe('true: pressed pulls the pin low (button to GND).'),
      bias: z.enum(['pull-up', 'pull-down', 'none']).default('pull-up')
        .describe('The pin\'s pull resistor: pull-up (button to GND), pull-down (button to 3.3 V) or none (the board has its own resistor). BCM 17 comes out of reset pulled down, so a button to GND needs pull-up.'),
      debounce_ms: z.number().int().min(0).max(500).default(20)
        .describe('Contact bounce: a change of the pin counts once it has held this long, ms (0 = off).'),
      long_press_ms: z.number().int().min(300).max(10000).default(1500)
        .describe('Holding the button this long toggles mute.'),
    }).prefault({}).describe('A push button. A press starts a conversation, ends one that is listening, interrupts a reply, or stops a ringing timer; holding it toggles mute.'),
    leds: z.strictObject({
      listening: led.nullable().default({ pin: 5, active_low: false })
        .describe('The privacy light: on whenever microphone audio may leave the device.'),
      activity: led.nullable().default({ pin: 6, active_low: false })
        .describe('Connecting, thinking, speaking, follow-up patterns.'),
      muted: led.nullable().default({ pin: 13, active_low: false })
        .describe('On while the microphone is muted.'),
      error: led.nullable().default({ pin: 19, active_low: false })
        .describe('Blinks when a conversation fails; a short flash every 3 s while idle with a problem only you can fix (bad key, unknown model).'),
    }).prefault({}).describe('One LED per role, BCM pin; null = not fitted. Patterns per state: docs/hardware.md, "LEDs".'),
    // An APA102 / DotStar ring (or strip); null = none.
    ring: z.strictObject({
      count: z.number().int().min(1).max(256).describe('LEDs on the ring.'),
      // SPI device (e.g. /dev/spidev0.1), or null to bit-bang over clock_pin/data_pin (sysfs GPIO only).
      spi: z.string().min(1).nullable().default('/dev/spidev0.1')
        .describe('SPI device (e.g. /dev/spidev0.1); null = bit-bang clock_pin/data_pin (sysfs GPIO only).'),
      clock_pin: pin.nullable().default(null).describe('The clock line\'s BCM pin, when bit-banged (spi: null).'),
      data_pin: pin.nullable().default(null).describe('The data line\'s BCM pin, when bit-banged (spi: null).'),
      speed_hz: z.number().int().min(10_000).max(32_000_000).default(4_000_000).describe('The SPI clock, Hz.'),
      // A pin that must be high for the LEDs to get power (ReSpeaker 4-Mic: BCM 5); null = none.
      power_pin: pin.nullable().default(null)
        .describe('A pin driven high to power the LEDs (ReSpeaker 4-Mic: BCM 5); null = none.'),
      // 0..1 of the LEDs' 5-bit global brightness; never 0, or the privacy light would be dark.
      brightness: z.number().min(0.04).max(1).default(0.25)
        .describe('0.04..1 of the LEDs\' 5-bit global brightness; never 0, or the privacy light would be dark.'),
      colours: z.strictObject({
        listening: colour.default('#0060ff').describe('Listening, and the even pixels whenever audio may leave the device (the privacy light).'),
        activity: colour.default('#ffffff').describe('The spin or flash on the odd pixels while connecting, thinking and in a follow-up.'),
        speaking: colour.default('#00c040').describe('Pulses on the odd pixels while a reply plays.'),
        muted: colour.default('#ff0000').describe('Every pixel while muted.'),
        error: colour.default('#ff3000').describe('Blinks when a conversation fails; pixel 0 flashes it every 3 s while idle with a problem only you can fix.'),
        timer: colour.default('#ffa000').describe('A double flash while a timer or alarm rings (on the odd pixels only while audio may leave).'),
      }).prefault({}).describe('The colour of each state, "#rrggbb".'),
    }).nullable().default(null).meta({
      description: 'An APA102 / DotStar ring or strip (the voice HATs\' LEDs); null = none. Patterns per state: docs/hardware.md, "LEDs". The even pixels (0, 2, ...) show the listening colour whenever audio may leave the device: the privacy light.\nFor example (what hardware: respeaker-2mic sets):',
      example: [
        'ring:',
        '  count: 3                  # LEDs on the ring',
        '  spi: /dev/spidev0.1       # SPI device; null = bit-bang clock_pin/data_pin (sysfs only)',
        '  clock_pin: null',
        '  data_pin: null',
        '  speed_hz: 4000000',
        '  power_pin: null           # a pin driven high to power the LEDs (ReSpeaker 4-Mic: 5)',
        '  brightness: 0.25          # 0.04..1 of the LEDs\' 5-bit global brightness',
        '  colours: { listening: "#0060ff", activity: "#ffffff", speaking: "#00c040",',
        '             muted: "#ff0000", error: "#ff3000", timer: "#ffa000" }',
      ].join('\n'),
    }),
  }).prefault({}).describe('The button and the LEDs, on the Pi\'s GPIO header (BCM pin numbers). Changes here need a restart.'),
  wake: z.strictObject({
    engine: z.enum(['none', 'porcupine', 'tone']).default('none')
      .describe('none: button only. porcupine: Picovoice Porcupine (needs a free AccessKey: PICOVOICE_ACCESS_KEY, the systemd credential picovoice-access-key, or access_key_file). tone: a test stand-in that takes a steady pure tone of tone_hz as the wake word.'),
    keywords: z.array(z.strictObject({
      name: z.string().min(1) // a built-in keyword (jarvis, computer, ...) or a path to a .ppn file
        .describe('A built-in keyword (jarvis, computer, ...) or the path of a custom .ppn file.'),
      sensitivity: z.number().min(0).max(1).default(0.5)
        .describe('0..1: higher wakes more easily (and falsely more often).'),
    })).min(1).default([{ name: 'jarvis', sensitivity: 0.5 }])
      .describe('Built-in keywords: alexa, americano, blueberry, bumblebee, computer, grapefruit, grasshopper, hey google, hey siri, jarvis, ok google, picovoice, porcupine, terminator; or the path of a custom .ppn file. Sensitivity 0..1: higher wakes more easily (and falsely more often).'),
    access_key_file: z.string().nullable().default(null)
      .describe('A file holding the Picovoice AccessKey, readable by the service (root:live-speaker, 0640), if not in PICOVOICE_ACCESS_KEY or the systemd credential (/etc/live-speaker/picovoice-access-key). Never the key here.'),
    model_path: z.string().nullable().default(null)
      .describe('Porcupine model (.pv) for another language; null = the English one shipped.'),
    trim_wake_word: z.boolean().default(true)
      .describe('true: send audio from the end of the wake word; false: from before_ms before its end (so the wake word itself is sent too).'),
    before_ms: z.number().int().min(0).max(3000).default(1000)
      .describe('With trim_wake_word: false, how long before the end of the wake word the audio sent starts, ms.'),
    refractory_ms: z.number().int().min(0).max(10000).default(1500)
      .describe('After a detection, further detections are ignored for this long.'),
    tone_hz: z.number().positive().max(7000).default(1000)
      .describe('Only for engine: tone.'),
  }).prefault({}).describe('The wake word: saying it starts a conversation, interrupts a reply or stops a ringing timer.'),
  feedback: z.strictObject({
    wake_sound: z.boolean().default(true)
      .describe('A short two-note chime when the wake word is heard. Its notes are filtered out of the microphone audio while it plays, so the server never hears it.'),
    error_sound: z.boolean().default(true)
      .describe('A low two-note sound when a conversation fails.'),
    volume: z.number().min(0).max(1).default(0.25)
      .describe('Level of these sounds, 0..1 of full scale (audio.volume applies on top).'),
  }).prefault({}).describe('Sounds of the speaker\'s own.'),
  conversation: z.strictObject({
    no_speech_timeout_s: z.number().positive().max(120).default(8)
      .describe('Ends the conversation if nobody speaks (or no reply comes) this long. Not while a tool call runs: it starts again once the tools have answered.'),
    follow_up_s: z.number().min(0).max(120).default(8)
      .describe('After a reply, listen this long for a follow-up without a new press (0 = off). Likewise put off while a tool call runs.'),
    max_conversation_s: z.number().positive().max(3600).default(600)
      .describe('A conversation is closed after this long, whatever happens.'),
    error_display_s: z.number().min(0).max(60).default(3)
      .describe('How long the error pattern shows before going back to idle.'),
    resume_within_s: z.number().min(0).max(7200).default(0)
      .describe('Continuity: a new conversation started within this many seconds of the last one continues it (the model remembers what was said). 0 = off: every conversation starts fresh, which is the private default.'),
  }).prefault({}).describe('How long a conversation lasts, in seconds.'),
  control: z.strictObject({
    socket: z.string().min(1).default('/run/live-speaker/control.sock')
      .describe('Local control socket for `live-speaker ctl`.'),
    mode: z.string().regex(/^0?[0-7]{3}$/).default('0660')
      .describe('Its file mode: root and the service\'s group only.'),
  }).prefault({}).describe('`live-speaker ctl` talks to the daemon over a local socket. Changes here need a restart.'),
  log: z.strictObject({
    level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal']).default('info')
      .describe('trace, debug, info, warn, error or fatal. JSON lines on stdout (journald).'),
    // What was heard and said, in the journal and `ctl watch`: off for privacy unless asked for.
    transcripts: z.boolean().default(false)
      .describe('What you said and what it answered, as text: false (private default) asks the Live API for no transcription and logs none. true asks for it and writes one "heard" and one "said" line per turn to the journal (at info), and shows them to `live-speaker ctl watch`. It also covers the tools: with false, timer labels, tool arguments, results and error text stay out of the journal and the watch (a timer is logged by its id).'),
  }).prefault({}).describe('The log: JSON lines on stdout, which systemd keeps in the journal (`journalctl -u live-speaker`).'),
  state: z.strictObject({
    // null: $STATE_DIRECTORY (systemd's StateDirectory=), else /var/lib/live-speaker
    dir: z.string().min(1).nullable().default(null)
      .describe('Where what you set at run time is kept across restarts and power cuts (mute and `ctl volume`, in state.json). null = $STATE_DIRECTORY (the unit\'s StateDirectory=, /var/lib/live-speaker), else /var/lib/live-speaker.'),
  }).prefault({}).describe('What the daemon keeps across restarts. Changes here need a restart.'),
  // ---- tools (issue 12)
  tools: z.strictObject({
    timer_ring_max_s: z.number().int().min(5).max(3600).default(600)
      .describe('A ringing timer or alarm stops by itself after this many seconds if nobody presses the button or says the wake word (5-3600). A reload applies a new value from the next ringing on.'),
    // user commands running at once; further calls wait their turn (src/tools/command.ts Slots)
    max_concurrent_commands: z.number().int().min(1).max(16).default(2)
      .describe('At most this many of your commands run at once (1-16); a message from the model with more calls runs the rest as these answer, in order (up to 16 waiting; one more is answered with an error). A program a command leaves running in the background does not count.'),
    commands: z.array(toolCommand).default([]).superRefine((cs, ctx) => {
      cs.forEach((c, i) => { if (cs.findIndex((d) => d.name === c.name) !== i) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `'${c.name}' is used twice` }); });
    }).meta({
      description: 'Your own commands, each declared to the model as a function. When the model calls one, argv is run directly (no shell), as the service user, inside the service\'s sandbox (read-only system, no home directories). An argv element that is exactly "{name}" is replaced by that argument (left out when an optional one is not given); a placeholder inside a longer element is a config error. Its stdout, cut at max_output_bytes, goes back to the model when it exits; a non-zero exit, a timeout or a missing program goes back as an error (and to the log). A program it starts in the background keeps running (docs/tools.md, "Your own commands").',
      example: [
        '- name: lights                      # lower-case letters, digits, _ (not a built-in\'s name)',
        '  description: Turn the living-room lights on or off.',
        '  parameters:                       # JSON schema: type object, properties, required',
        '    type: object',
        '    properties:',
        '      state: { type: string, enum: ["on", "off"] }',
        '    required: [state]',
        '  argv: [/usr/local/bin/lights.sh, "{state}"]',
        '  timeout_s: 10                     # killed (with its children) after this long',
        '  max_output_bytes: 4000            # stdout beyond this is dropped (and the model told)',
        '  non_blocking: false               # true: declared NON_BLOCKING; the model keeps talking while it runs',
      ].join('\n'),
    }),
    mcp: z.array(mcpServer).default([]).superRefine((ms, ctx) => {
      ms.forEach((m, i) => { if (ms.findIndex((n) => n.name === m.name) !== i) ctx.addIssue({ code: 'custom', path: [i, 'name'], message: `'${m.name}' is used twice` }); });
    }).meta({
      description: 'MCP servers (Model Context Protocol) whose tools the model may call, each declared as `<name>__<tool>` (docs/tools.md, "MCP servers"). Their tool lists are fetched in the background at start and kept: a server that is slow or down never delays a conversation; it is retried with back-off and its state is in `ctl status` and `live-speaker doctor`. A server is trusted code: its tool descriptions go to the model as they are.',
      example: [
        '- name: ha                          # tools become ha__HassTurnOn, ...',
        '  url: http://homeassistant.local:8123/api/mcp',
        '  token_file: /etc/live-speaker/ha-token',
        '  deny: ["HassBroadcast"]',
        '- name: memory',
        '  command: [/usr/bin/npx, -y, "@modelcontextprotocol/server-memory"]',
        '  env: { MEMORY_FILE_PATH: /var/lib/live-speaker/memory.jsonl }',
        '  allow: ["*"]',
        '  timeout_s: 15',
      ].join('\n'),
    }),
    home_assistant: homeAssistant.nullable().default(null)
      .describe('Shorthand for Home Assistant\'s MCP Server integration (docs/home-assistant.md): url and token_file become a tools.mcp entry named `ha` at <url>/api/mcp.'),
  }).superRefine((t, ctx) => {
    if (t.home_assistant && t.mcp.some((m) => m.name === 'ha')) ctx.addIssue({ code: 'custom', path: ['home_assistant'], message: 'tools.mcp already has a server named ha' });
  }).prefault({}).describe('Tools the model may call (docs/tools.md and the README, "What you can ask it"). The built-in ones (end_conversation, set_volume, get_volume, set_timer, set_alarm, list_timers, cancel_timer) are always declared.'),
  // ---- MQTT and Home Assistant discovery (issue 24): src/mqtt/, docs/mqtt.md
  mqtt: z.strictObject({
    url: z.string().regex(/^mqtts?:\/\/[^\s/]+/, 'mqtt://host[:port] or mqtts://host[:port]')
      .refine((u) => !/^mqtts?:\/\/[^/]*@/.test(u), 'no user name or password in the URL: mqtt.username and mqtt.password_file (a password here would sit in the config file)')
      .describe('The broker: mqtt://host:1883, or mqtts://host:8883 for TLS (then ca_file, cert_file, key_file as needed).'),
    username: z.string().min(1).nullable().default(null)
      .describe('The user name on the broker; null = none (anonymous).'),
    password_file: z.string().nullable().default(null)
      .describe('A file holding the broker password, readable by the service (root:live-speaker, 0640); a systemd credential named mqtt-password (LoadCredential=mqtt-password:FILE in a drop-in) wins over it. Never the password here; never logged, never in `ctl status`.'),
    ca_file: z.string().nullable().default(null)
      .describe('mqtts: a PEM file of the CA that signed the broker\'s certificate; null = the system\'s CAs.'),
    cert_file: z.string().nullable().default(null)
      .describe('mqtts: this device\'s client certificate (PEM), when the broker asks for one (with key_file).'),
    key_file: z.string().nullable().default(null)
      .describe('mqtts: the client certificate\'s private key (PEM), readable by the service (root:live-speaker, 0640). Each of these three files must be readable when the daemon starts (one that is not is a config error naming it, exit 78); they are read again at each connection, so a renewed certificate needs no restart.'),
    client_id: z.string().min(1).max(64).nullable().default(null)
      .describe('The MQTT client id; null = live-speaker-<hostname>.'),
    base_topic: z.string().regex(/^[^#+\s]+[^/#+\s]$/, 'a topic without wildcards, spaces or a trailing /').nullable().default(null)
      .describe('Where this speaker\'s state and commands live (<base_topic>/state, <base_topic>/cmd/announce, ...); null = live-speaker/<hostname>.'),
    discovery_prefix: z.string().regex(/^[^#+\s/]+$/, 'one topic level').default('homeassistant')
      .describe('Home Assistant\'s discovery prefix (its MQTT integration\'s setting).'),
    discovery: z.boolean().default(true)
      .describe('true: the device and its entities are announced to Home Assistant (retained). false: the retained announcements this speaker made are removed at the next start, so the entities disappear; commands still work.'),
    protocol_version: z.union([z.literal(4), z.literal(5)]).default(4)
      .describe('4 = MQTT 3.1.1, 5 = MQTT 5.'),
  }).nullable().default(null).describe('MQTT, and Home Assistant\'s MQTT discovery: the speaker\'s state, mute, volume and the announcement target appear as one device in Home Assistant, and automations make it speak and ask (docs/mqtt.md). null (the default) = off.'),
}).describe('live-speaker configuration. Installed as /etc/live-speaker/config.yaml (kept on upgrade). Every key is optional: the values below are the defaults. A misspelt key or a wrong type stops the daemon with an error that names the key and this file. `systemctl reload live-speaker` re-reads it; a bad file is refused and the running config kept. The docs/ pages named below are in /opt/live-speaker/docs on an installed speaker (and in the repository).');

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

/**
 * mqtt.ca_file, cert_file and key_file must be readable at start: a file that is missing or unreadable is a config
 * error naming the key and the file (exit 78), not a link retrying for ever. The link reads them again at each
 * connection attempt, so a renewed certificate is picked up without a restart.
 */
export function checkMqttTlsFiles(config: Config): void {
  if (!config.mqtt) return;
  for (const k of ['ca_file', 'cert_file', 'key_file'] as const) {
    const p = config.mqtt[k];
    if (!p) continue;
    let code: string | null = null;
    try {
      accessSync(p, fsConstants.R_OK); // before existsSync: a file in a directory we cannot search is unreadable, not missing
      if (!statSync(p).isFile()) code = 'not a file';
    } catch (e) {
      code = (e as NodeJS.ErrnoException).code ?? String(e);
    }
    if (code === 'ENOENT') throw new ConfigError(`mqtt.${k}: ${p} does not exist`, null);
    if (code) throw new ConfigError(`mqtt.${k}: cannot read ${p} (${code}) as user ${userName()}: make it a PEM file the service can read (for a private key: sudo chown root:live-speaker ${p} && sudo chmod 0640 ${p})`, null);
  }
}

/** The MQTT broker's password: the systemd credential mqtt-password, or mqtt.password_file (as live.api_key_file is read). Never logged. */
export function readMqttPassword(config: Config, env: NodeJS.ProcessEnv = process.env): { key: string | null; source: string } {
  if (!config.mqtt) return { key: null, source: 'none' };
  return readKey([], 'mqtt-password', 'mqtt.password_file', config.mqtt.password_file, env);
}

/** Gemini API key: GEMINI_API_KEY or GOOGLE_API_KEY, the systemd credential, or live.api_key_file. Never logged. */
export function readApiKey(config: Config, env: NodeJS.ProcessEnv = process.env): { key: string | null; source: string } {
  return readKey(['GEMINI_API_KEY', 'GOOGLE_API_KEY'], 'gemini-api-key', 'live.api_key_file', config.live.api_key_file, env);
}

/** tools.mcp with tools.home_assistant expanded into the server `ha` at <url>/api/mcp. */
export function mcpServers(config: Config): McpServerConfig[] {
  const ha = config.tools.home_assistant;
  const base = config.tools.mcp;
  if (!ha) return base;
  return [...base, { name: 'ha', url: `${ha.url.replace(/\/+$/, '')}/api/mcp`, headers: {}, token_file: ha.token_file, command: null, env: {}, allow: ha.allow, deny: ha.deny, timeout_s: ha.timeout_s, non_blocking: ha.non_blocking }];
}

/** A bearer token from the file the config names (tools.mcp token_file): the same rules as live.api_key_file. Never logged. */
export function readTokenFile(setting: string, file: string): string {
  if (!existsSync(file)) throw new ConfigError(`${setting}: ${file} does not exist`, null);
  let token: string;
  try {
    token = readFileSync(file, 'utf8').trim();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? String(e);
    throw new ConfigError(`${setting}: cannot read ${file} (${code}) as user ${userName()}: make it readable by the service (sudo chown root:live-speaker ${file} && sudo chmod 0640 ${file})`, null);
  }
  if (!token) throw new ConfigError(`${setting}: ${file} is empty`, null);
  if (/[\r\n]/.test(token)) throw new ConfigError(`${setting}: ${file} holds more than one line`, null);
  return token;
}
