// Which GPIO backend: gpio.backend auto|sysfs|chardev. `auto` keeps sysfs
// (onoff) where the kernel still has it, and uses the character device
// (libgpiod's tools) where sysfs is missing.
import { existsSync } from 'node:fs';
import { GpioUnavailable, onoffBackend, type GpioBackend } from './gpio.js';
import { chardevBackend, chardevPresent, type ChardevOptions } from './chardev.js';

export type BackendChoice = 'auto' | 'sysfs' | 'chardev';

export interface OpenOptions extends ChardevOptions { sysfsRoot?: string }

/** The backend auto would pick here, and why. */
export function autoBackend(opts: OpenOptions = {}): { kind: 'sysfs' | 'chardev'; why: string } {
  const sysfs = opts.sysfsRoot ?? '/sys/class/gpio';
  if (existsSync(sysfs)) return { kind: 'sysfs', why: `${sysfs} exists` };
  if (chardevPresent(opts.devRoot)) return { kind: 'chardev', why: `no ${sysfs}; ${opts.devRoot ?? '/dev'}/gpiochip* present` };
  return { kind: 'sysfs', why: 'neither sysfs GPIO nor a GPIO character device exists' };
}

export async function openGpioBackend(choice: BackendChoice, opts: OpenOptions = {}): Promise<GpioBackend> {
  const kind = choice === 'auto' ? autoBackend(opts).kind : choice;
  if (kind === 'chardev') return chardevBackend(opts);
  try {
    return await onoffBackend(opts.sysfsRoot);
  } catch (e) {
    if (choice === 'auto' && e instanceof GpioUnavailable && !chardevPresent(opts.devRoot)) {
      throw new GpioUnavailable(`${e.message}; no GPIO character device either`);
    }
    throw e;
  }
}
