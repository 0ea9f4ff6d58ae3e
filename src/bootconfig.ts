// What the firmware's config.txt must hold for the configured hardware:
// the button's pull (sysfs GPIO cannot set one; the firmware sets it at boot
// with `gpio=PIN=ip,pu|pd|pn`) and SPI for an LED ring on SPI0. install.sh
// writes these lines in a marked block (scripts/boot-config.sh); doctor
// checks the block is there.
import { existsSync, readFileSync } from 'node:fs';
import type { Config } from './config.js';

export const BLOCK_BEGIN = '# >>> live-speaker: written by scripts/install.sh (removed by --uninstall); edit config.yaml instead';
export const BLOCK_END = '# <<< live-speaker';
export const BOOT_CONFIG_FILES = ['/boot/firmware/config.txt', '/boot/config.txt'];

const PULL = { 'pull-up': 'pu', 'pull-down': 'pd', none: 'pn' } as const;

export function bootConfigLines(config: Config): string[] {
  const lines: string[] = [];
  const b = config.gpio.button;
  if (config.gpio.enabled && b.pin !== null) lines.push(`gpio=${b.pin}=ip,${PULL[b.bias]}`);
  const ring = config.gpio.enabled ? config.gpio.ring : null;
  if (ring?.spi && /spidev0\.\d+$/.test(ring.spi)) lines.push('dtparam=spi=on');
  return lines;
}

/** Bookworm and later: /boot/firmware/config.txt; older: /boot/config.txt. */
export function findBootConfig(candidates = BOOT_CONFIG_FILES): string | null {
  return candidates.find((f) => existsSync(f)) ?? null;
}

/** The lines inside our marked block of a config.txt, or null when there is no block. */
export function readBlock(file: string): string[] | null {
  let text: string;
  try { text = readFileSync(file, 'utf8'); } catch { return null; }
  const all = text.split('\n');
  const start = all.indexOf(BLOCK_BEGIN);
  const end = all.indexOf(BLOCK_END, start + 1);
  if (start < 0 || end < 0) return null;
  return all.slice(start + 1, end).filter((l) => l.trim() && !l.startsWith('#') && !l.startsWith('['));
}
