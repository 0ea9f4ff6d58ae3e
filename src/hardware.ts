// Voice HATs: one `hardware:` line in config.yaml sets the sound card, the
// button, the LEDs and the codec's mixer switches. A profile is applied
// beneath the user's own keys (any key in the file still wins), before
// validation, so a wrong key is still named with its file.
//
// Sources (checked for this table; see docs/hardware.md, "Voice HATs"):
// - ReSpeaker 2-Mics Pi HAT v1 (WM8960): seeed-voicecard names the card
//   `seeed2micvoicec`; the kernel's own wm8960-soundcard overlay names it
//   `wm8960soundcard`. Button BCM 17 (active low); 3 APA102 on SPI0, opened
//   by Seeed's driver as bus 0, device 1.
// - ReSpeaker 4-Mic Array (AC108, capture only): card `seeed4micvoicec`; 12
//   APA102 on SPI0 (bus 0, device 1) powered through BCM 5, which must be
//   driven high; no button on the board.
// - Adafruit Voice Bonnet (WM8960): card `wm8960soundcard` (kernel overlay)
//   or `seeed2micvoicec` (the seeed-voicecard driver Adafruit's guide
//   installs); button BCM 17; 3 DotStars on BCM 6 (clock) and BCM 5 (data),
//   not on the SPI pins, so they are bit-banged.
// - Google AIY Voice HAT (v1): card `sndrpigooglevoi` (googlevoicehat-
//   soundcard overlay); button BCM 23, the button's LED BCM 25.
import { existsSync, readFileSync } from 'node:fs';

export type HardwareName = 'custom' | 'respeaker-2mic' | 'respeaker-4mic' | 'voice-bonnet' | 'aiy-voice';

export interface HardwareProfile {
  description: string;
  /** ALSA card ids this board's driver may register, most likely first; the first one present is used. */
  cards: string[];
  /** Raw config keys (as in config.yaml) the profile sets; `CARD` in a string is replaced by the card id. */
  config: Record<string, any>;
  /** Lines for the firmware's config.txt the board needs besides the button's pull (shown by doctor). */
  overlay: string | null;
}

const NO_LEDS = { listening: null, activity: null, muted: null, error: null };
// WM8960: the DAC reaches the output mixers and the ADC is switched on only through these switches
// (the codec resets with them off and the speaker volume muted).
const WM8960_MIXER = [
  { control: 'Left Output Mixer PCM', value: 'on' },
  { control: 'Right Output Mixer PCM', value: 'on' },
  { control: 'Speaker', value: '80%' },
  { control: 'Headphone', value: '80%' },
  { control: 'Capture', value: 'cap' },
  { control: 'Left Input Mixer Boost', value: 'on' },
  { control: 'Right Input Mixer Boost', value: 'on' },
];
const CARD_DEVICE = 'plughw:CARD=CARD,DEV=0';

export const HARDWARE_PROFILES: Record<HardwareName, HardwareProfile> = {
  custom: { description: 'your own wiring: every key from config.yaml', cards: [], config: {}, overlay: null },
  'respeaker-2mic': {
    description: 'Seeed ReSpeaker 2-Mics Pi HAT (WM8960, 3 APA102 LEDs, button)',
    cards: ['seeed2micvoicec', 'wm8960soundcard'],
    config: {
      audio: { capture_device: CARD_DEVICE, playback_device: CARD_DEVICE },
      mixer: { settings: WM8960_MIXER },
      gpio: { button: { pin: 17, active_low: true, bias: 'pull-up' }, leds: NO_LEDS, ring: { count: 3, spi: '/dev/spidev0.1' } },
    },
    overlay: 'dtoverlay=wm8960-soundcard (or the seeed-voicecard driver)',
  },
  'respeaker-4mic': {
    description: 'Seeed ReSpeaker 4-Mic Array for Raspberry Pi (AC108, capture only, 12 APA102 LEDs)',
    cards: ['seeed4micvoicec'],
    config: {
      // The AC108 only captures: playback stays on the Pi's own output (or a USB card).
      audio: { capture_device: CARD_DEVICE },
      gpio: { button: { pin: null }, leds: NO_LEDS, ring: { count: 12, spi: '/dev/spidev0.1', power_pin: 5 } },
    },
    overlay: 'the seeed-voicecard driver (seeed-4mic-voicecard overlay)',
  },
  'voice-bonnet': {
    description: 'Adafruit Voice Bonnet (WM8960, 3 DotStar LEDs, button)',
    cards: ['wm8960soundcard', 'seeed2micvoicec'],
    config: {
      audio: { capture_device: CARD_DEVICE, playback_device: CARD_DEVICE },
      mixer: { settings: WM8960_MIXER },
      gpio: { button: { pin: 17, active_low: true, bias: 'pull-up' }, leds: NO_LEDS, ring: { count: 3, spi: null, clock_pin: 6, data_pin: 5 } },
    },
    overlay: 'dtoverlay=wm8960-soundcard',
  },
  'aiy-voice': {
    description: 'Google AIY Voice HAT v1 (button with its LED)',
    cards: ['sndrpigooglevoi'],
    config: {
      audio: { capture_device: CARD_DEVICE, playback_device: CARD_DEVICE },
      gpio: { button: { pin: 23, active_low: true, bias: 'pull-up' }, leds: { ...NO_LEDS, listening: { pin: 25, active_low: false } }, ring: null },
    },
    overlay: 'dtoverlay=googlevoicehat-soundcard',
  },
};

/** ALSA card ids as listed in /proc/asound/cards (" 1 [seeed2micvoicec]: ..."). */
export function parseSoundCards(text: string): { index: number; id: string; name: string }[] {
  const cards: { index: number; id: string; name: string }[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*(\d+)\s+\[([^\]\s]+)\s*\]:\s*(.*)$/.exec(line);
    if (m) cards.push({ index: Number(m[1]), id: m[2], name: m[3].replace(/^\S+\s+-\s+/, '').trim() });
  }
  return cards;
}

export function readSoundCards(file = '/proc/asound/cards'): string[] {
  try { return existsSync(file) ? parseSoundCards(readFileSync(file, 'utf8')).map((c) => c.id) : []; } catch { return []; }
}

/** The card a profile uses here: the first of its cards that is present, else its most likely one. */
export function profileCard(profile: HardwareProfile, soundCards: string[]): string | null {
  return profile.cards.find((c) => soundCards.includes(c)) ?? profile.cards[0] ?? null;
}

/** The ALSA card id in a device string (plughw:CARD=x,DEV=0, hw:x,0, sysdefault:CARD=x), or null. */
export function cardOfDevice(device: string): string | null {
  const m = /CARD=([^,\s]+)/.exec(device) ?? /^(?:plug)?hw:([^,\d][^,\s]*)/.exec(device);
  return m ? m[1] : null;
}

function substitute(v: unknown, card: string): unknown {
  if (typeof v === 'string') return v.replace('CARD=CARD', `CARD=${card}`);
  if (Array.isArray(v)) return v.map((x) => substitute(x, card));
  if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, substitute(x, card)]));
  return v;
}

const isPlain = (v: unknown): v is Record<string, unknown> => !!v && typeof v === 'object' && !Array.isArray(v);

/** `over` wins key by key; objects merge, anything else (arrays, null) replaces. */
function mergeBeneath(under: unknown, over: unknown): unknown {
  if (!isPlain(under) || !isPlain(over)) return over === undefined ? under : over;
  const out: Record<string, unknown> = { ...under };
  for (const [k, v] of Object.entries(over)) out[k] = k in under ? mergeBeneath(under[k], v) : v;
  return out;
}

/**
 * The raw config with its `hardware:` profile beneath it. An unknown profile
 * name, or a raw value that is not an object, is left for the schema to reject
 * (with the key and the file).
 */
export function applyProfile(raw: unknown, soundCards: string[]): unknown {
  if (!isPlain(raw) || typeof raw.hardware !== 'string') return raw;
  const profile = HARDWARE_PROFILES[raw.hardware as HardwareName];
  if (!profile || raw.hardware === 'custom') return raw;
  const card = profileCard(profile, soundCards) ?? '';
  return mergeBeneath(substitute(profile.config, card), raw);
}

/** A profile that fits the cards present, for doctor's suggestion. */
export function suggestProfile(soundCards: string[]): { name: HardwareName; card: string }[] {
  const out: { name: HardwareName; card: string }[] = [];
  for (const [name, p] of Object.entries(HARDWARE_PROFILES) as [HardwareName, HardwareProfile][]) {
    const card = p.cards.find((c) => soundCards.includes(c));
    if (card) out.push({ name, card });
  }
  return out;
}
