// doctor's hardware checks: which GPIO backend, each pin's level and pull,
// the firmware block for the pulls, the LED ring, the sound cards present and
// the profile that fits them. Every root is a parameter, so tests run them
// against fake trees and fake tools.
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync } from 'node:fs';
import type { Config } from './config.js';
import { GpioUnavailable, sysfsNumber, type Bias } from './gpio/gpio.js';
import { chardevBackend, parseGpioinfo, type ChardevBackend } from './gpio/chardev.js';
import { autoBackend, openGpioBackend } from './gpio/open.js';
import { bootConfigLines, findBootConfig, readBlock, BOOT_CONFIG_FILES } from './bootconfig.js';
import { HARDWARE_PROFILES, cardOfDevice, parseSoundCards, suggestProfile, type HardwareName } from './hardware.js';
import { mixerCard } from './mixer.js';

export type Verdict = 'ok' | 'fail' | 'info';
export interface Check { name: string; verdict: Verdict; detail: string; fix?: string }

export interface HwEnv {
  sysfsRoot: string;
  devRoot: string;
  cardsFile: string;
  bootConfigFiles: string[];
  /** Environment for the tools (gpio*, pinctrl). */
  env?: NodeJS.ProcessEnv;
}
export const REAL_HW: HwEnv = { sysfsRoot: '/sys/class/gpio', devRoot: '/dev', cardsFile: '/proc/asound/cards', bootConfigFiles: BOOT_CONFIG_FILES };

function tool(cmd: string, args: string[], env?: NodeJS.ProcessEnv): Promise<{ ok: boolean; out: string; err: string }> {
  return new Promise((resolve) => execFile(cmd, args, { env, timeout: 3000, encoding: 'utf8' },
    (e, out, err) => resolve({ ok: !e, out: String(out ?? ''), err: String(err ?? '') })));
}

/** Raspberry Pi's pinctrl: "17: ip    pu | hi // GPIO17 = input" (function, pull, level, read from the registers). */
export function parsePinctrl(line: string): { output: boolean; bias: Bias | null; high: boolean | null } | null {
  const m = /^\s*\d+:\s+(\S+)\s+(?:d[hl]\s+)?(pu|pd|pn)\s+\|\s+(hi|lo|--)/.exec(line);
  if (!m) return null;
  return { output: m[1] === 'op', bias: m[2] === 'pu' ? 'pull-up' : m[2] === 'pd' ? 'pull-down' : 'none', high: m[3] === '--' ? null : m[3] === 'hi' };
}

interface Pin { role: string; bcm: number; input: boolean; bias?: Bias }

export function configuredPins(config: Config): Pin[] {
  const pins: Pin[] = [];
  const b = config.gpio.button;
  if (b.pin !== null) pins.push({ role: 'button', bcm: b.pin, input: true, bias: b.bias });
  for (const [role, led] of Object.entries(config.gpio.leds)) if (led) pins.push({ role: `${role} LED`, bcm: led.pin, input: false });
  const r = config.gpio.ring;
  if (r?.power_pin != null) pins.push({ role: 'ring power', bcm: r.power_pin, input: false });
  if (r && r.spi === null) {
    if (r.clock_pin !== null) pins.push({ role: 'ring clock', bcm: r.clock_pin, input: false });
    if (r.data_pin !== null) pins.push({ role: 'ring data', bcm: r.data_pin, input: false });
  }
  return pins;
}

/** Level and pull of one pin, from whatever can tell here: pinctrl (registers), libgpiod (kernel), sysfs (value). */
async function readPin(pin: Pin, hw: HwEnv, chardev: ChardevBackend | null): Promise<{ text: string; bias: Bias | null }> {
  const pc = await tool('pinctrl', ['get', String(pin.bcm)], hw.env);
  const p = pc.ok ? parsePinctrl(pc.out.split('\n')[0] ?? '') : null;
  if (p) {
    return { bias: p.bias, text: `${p.output ? 'output' : 'input'}, ${p.bias === 'none' ? 'no pull' : p.bias}, level ${p.high === null ? 'unknown' : p.high ? 'high' : 'low'} (pinctrl)` };
  }
  if (chardev) {
    const info = await chardev.lineInfo(pin.bcm);
    let level = '';
    if (info && !info.used && pin.input) {
      const args = chardev.version === 1 ? [chardev.chip.name, String(pin.bcm)] : ['-c', chardev.chip.name, '-a', '--numeric', String(pin.bcm)];
      const g = await tool('gpioget', args, hw.env);
      const v = /(?:^|=)\s*(0|1|active|inactive)\s*$/m.exec(g.out.trim())?.[1];
      if (g.ok && v) level = `, level ${v === '1' || v === 'active' ? 'high' : 'low'}`;
    }
    if (!info) return { bias: null, text: 'no line info' };
    const use = info.used ? `, held by "${info.consumer ?? 'kernel'}"` : '';
    return { bias: info.bias, text: `${info.output ? 'output' : 'input'}, ${info.bias === null ? 'pull not reported' : info.bias === 'none' ? 'no pull' : info.bias}${level}${use} (libgpiod)` };
  }
  try {
    const n = sysfsNumber(pin.bcm, hw.sysfsRoot);
    const v = readFileSync(`${hw.sysfsRoot}/gpio${n}/value`, 'utf8').trim();
    return { bias: null, text: `sysfs gpio${n}, level ${v === '1' ? 'high' : 'low'}; pull not readable through sysfs` };
  } catch {
    return { bias: null, text: 'not exported; pull not readable through sysfs' };
  }
}

export async function checkGpio(config: Config, hw: HwEnv = REAL_HW): Promise<Check[]> {
  const name = 'gpio';
  if (!config.gpio.enabled) return [{ name, verdict: 'info', detail: 'disabled in config (no button or LEDs; `live-speaker ctl press` starts a conversation)' }];
  const auto = autoBackend({ sysfsRoot: hw.sysfsRoot, devRoot: hw.devRoot });
  const kind = config.gpio.backend === 'auto' ? auto.kind : config.gpio.backend;
  const how = config.gpio.backend === 'auto' ? `auto: ${kind} (${auto.why})` : kind;
  let chardev: ChardevBackend | null = null;
  try {
    if (kind === 'chardev') chardev = await chardevBackend({ env: hw.env, devRoot: hw.devRoot });
    else await openGpioBackend('sysfs', { sysfsRoot: hw.sysfsRoot });
  } catch (e) {
    if (!(e instanceof GpioUnavailable)) throw e;
    const fix = /not installed/.test(e.message) ? 'sudo apt install gpiod'
      : /permission|gpio group/i.test(e.message) ? 'the user needs the gpio group (`sudo usermod -aG gpio $USER`); the service user gets it from install.sh'
      : kind === 'sysfs' && existsSync(hw.devRoot) ? 'on a Raspberry Pi without sysfs GPIO: gpio.backend: chardev (needs the gpiod package); elsewhere, or with nothing wired: gpio.enabled: false'
      : 'on a Raspberry Pi: check the kernel\'s GPIO; elsewhere, or with nothing wired: set gpio.enabled: false';
    return [{ name, verdict: 'fail', detail: `${how}: ${e.message}`, fix }];
  }
  if (kind === 'sysfs') {
    try {
      accessSync(`${hw.sysfsRoot}/export`, constants.W_OK);
    } catch (e) {
      return [{ name, verdict: 'fail', detail: `cannot write ${hw.sysfsRoot}/export (${(e as NodeJS.ErrnoException).code})`, fix: 'the user needs the gpio group (`sudo usermod -aG gpio $USER`); the service user gets it from install.sh' }];
    }
  }
  const checks: Check[] = [{ name, verdict: 'ok', detail: chardev ? `${how}: libgpiod ${chardev.version}.x tools, ${chardev.chip.name} [${chardev.chip.label}]` : `${how}: sysfs GPIO writable` }];
  for (const pin of configuredPins(config)) {
    let r: { text: string; bias: Bias | null };
    try { r = await readPin(pin, hw, chardev); } catch (e) {
      checks.push({ name: `${pin.role} BCM ${pin.bcm}`, verdict: 'fail', detail: (e as Error).message, fix: 'use BCM numbers of the SoC header (0-27)' });
      continue;
    }
    const wrongPull = pin.bias && r.bias !== null && r.bias !== pin.bias;
    checks.push({
      name: `${pin.role} BCM ${pin.bcm}`, verdict: wrongPull ? 'fail' : 'info',
      detail: `${r.text}${pin.bias ? `; configured ${pin.bias}` : ''}`,
      fix: wrongPull ? (kind === 'sysfs' ? 'sysfs cannot set a pull: re-run scripts/install.sh (it writes gpio=PIN=ip,pu to config.txt) and reboot; or gpio.backend: chardev' : 'the daemon sets it when it runs: start it, then check again') : undefined,
    });
  }
  return checks;
}

/** The button's pull and SPI come from the firmware's config.txt block: is it there and current? */
export function checkBootConfig(config: Config, hw: HwEnv = REAL_HW): Check {
  const name = 'firmware config';
  const want = bootConfigLines(config);
  const file = findBootConfig(hw.bootConfigFiles);
  if (!file) return { name, verdict: 'info', detail: `no ${hw.bootConfigFiles.join(' or ')} (not Raspberry Pi OS)${want.length ? `: it would hold ${want.join(', ')}` : ''}` };
  const have = readBlock(file) ?? [];
  const missing = want.filter((l) => !have.includes(l));
  if (missing.length === 0) return { name, verdict: 'ok', detail: want.length ? `${file} holds ${want.join(', ')}` : `${file}: nothing needed` };
  return { name, verdict: 'fail', detail: `${file} lacks ${missing.join(', ')} (the button's pull / SPI for the ring)`, fix: 'sudo scripts/install.sh (it writes live-speaker\'s block), then reboot' };
}

export function checkRing(config: Config): Check | null {
  const r = config.gpio.enabled ? config.gpio.ring : null;
  if (!r) return null;
  const name = 'LED ring';
  if (r.spi === null) {
    return { name, verdict: 'info', detail: `${r.count} APA102 bit-banged on BCM ${r.clock_pin} (clock) / BCM ${r.data_pin} (data); needs the sysfs backend` };
  }
  if (!existsSync(r.spi)) return { name, verdict: 'fail', detail: `${r.spi} does not exist (SPI is off)`, fix: 'sudo scripts/install.sh writes dtparam=spi=on to config.txt; then reboot' };
  try { accessSync(r.spi, constants.W_OK); } catch (e) {
    return { name, verdict: 'fail', detail: `cannot write ${r.spi} (${(e as NodeJS.ErrnoException).code})`, fix: 'the user needs the spi group (`sudo usermod -aG spi $USER`); the service user gets it from install.sh' };
  }
  return { name, verdict: 'ok', detail: `${r.count} APA102 on ${r.spi}${r.power_pin !== null ? `, powered through BCM ${r.power_pin}` : ''}, brightness ${r.brightness}` };
}

/** The cards ALSA has, whether the configured devices name one of them, and which profile fits. */
export function checkSoundCards(config: Config, hw: HwEnv = REAL_HW): Check {
  const name = 'sound cards';
  let cards: ReturnType<typeof parseSoundCards> = [];
  try { cards = existsSync(hw.cardsFile) ? parseSoundCards(readFileSync(hw.cardsFile, 'utf8')) : []; } catch { /* none */ }
  const ids = cards.map((c) => c.id);
  const seen = cards.length ? cards.map((c) => `${c.index}: ${c.id} (${c.name})`).join('; ') : `none in ${hw.cardsFile}`;
  const prof = HARDWARE_PROFILES[config.hardware as HardwareName];
  if (config.hardware !== 'custom' && !prof.cards.some((c) => ids.includes(c))) {
    return { name, verdict: 'fail', detail: `hardware: ${config.hardware} expects card ${prof.cards.join(' or ')}; seen: ${seen}`,
      fix: `install the HAT's driver: ${prof.overlay ?? 'see docs/hardware.md, "Voice HATs"'}; then reboot` };
  }
  const wanted = [['audio.capture_device', config.audio.capture_device], ['audio.playback_device', config.audio.playback_device]]
    .map(([k, d]) => [k, cardOfDevice(d)] as const).filter(([, c]) => c !== null && cards.length > 0 && !ids.includes(c!));
  if (wanted.length) {
    return { name, verdict: 'fail', detail: `${wanted.map(([k, c]) => `${k} names card ${c}`).join(', ')}, not present; seen: ${seen}`, fix: 'use a card listed here (by name: plughw:CARD=NAME,DEV=0)' };
  }
  const mixer = config.mixer.settings.length ? `; mixer: ${config.mixer.settings.length} settings on card ${mixerCard(config) ?? '?'}` : '';
  if (config.hardware === 'custom') {
    const fits = suggestProfile(ids);
    if (fits.length) {
      const f = fits[0];
      return { name, verdict: 'info', detail: `seen: ${seen}; this looks like ${HARDWARE_PROFILES[f.name].description}: suggest \`hardware: ${f.name}\`` +
        ` (or audio.capture_device: plughw:CARD=${f.card},DEV=0 and audio.playback_device: plughw:CARD=${f.card},DEV=0)${mixer}` };
    }
  }
  return { name, verdict: 'info', detail: `seen: ${seen}${config.hardware !== 'custom' ? `; hardware: ${config.hardware}` : ''}${mixer}` };
}

export { parseGpioinfo };
