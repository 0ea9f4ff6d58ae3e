// GPIO behind a narrow interface: lines that can be set, and lines that
// report changes. The onoff (sysfs) backend lives here; the libgpiod
// (character device) backend is gpio/chardev.ts.
import { readdirSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export type Bias = 'pull-up' | 'pull-down' | 'none';

/**
 * An output line; `get` reads the line's level back (logical: true = on),
 * and throws with the reason when the line is not what was asked of it.
 * Backends that set a line through another process are asynchronous:
 * `whenSettled` then returns a promise until the last `set` is confirmed
 * (or failed), and null once it is; `get` answers for confirmed levels only.
 * `blink`, where offered, lets the backend time an on/off pattern itself
 * (periods in ms, starting on, repeated).
 */
export interface OutputLine {
  set(on: boolean): void;
  get(): boolean;
  release(): void;
  whenSettled?(): Promise<void> | null;
  blink?(periods: number[]): void;
  /** True when `set` takes effect before it returns (bit-banging needs that). */
  readonly synchronous?: boolean;
}
export interface InputLine { onChange(cb: (active: boolean) => void): void; release(): void }
export interface GpioBackend {
  readonly name: string;
  output(bcm: number, activeLow: boolean): OutputLine;
  /** `bias` is set where the backend can (chardev); sysfs cannot, so the firmware's gpio= line does it. */
  input(bcm: number, activeLow: boolean, debounceMs: number, bias?: Bias): InputLine;
  /** Anything the backend wants said once at start (e.g. that it cannot set a pull). */
  readonly notes?: string[];
  release?(): void;
}

export class GpioUnavailable extends Error {
  constructor(message: string) { super(message); this.name = 'GpioUnavailable'; }
}

// Labels of the SoC's own GPIO controller on Pi 3/4/5/Zero 2 W kernels.
const SOC_CHIP = /^pinctrl-(bcm2835|bcm2711|bcm2712|rp1)$|^raspberrypi-exp-gpio$/;

/**
 * Users write BCM numbers (what every pinout shows). Since kernel 6.6 sysfs
 * numbers are offset by the controller's base (512 on Pi 4, 571 on Pi 5), so
 * translate: find the SoC's gpiochip and add its base.
 */
export function sysfsNumber(bcm: number, sysfsRoot = '/sys/class/gpio'): number {
  const chips: { label: string; base: number; ngpio: number }[] = [];
  for (const name of existsSync(sysfsRoot) ? readdirSync(sysfsRoot) : []) {
    if (!name.startsWith('gpiochip')) continue;
    const dir = join(sysfsRoot, name);
    try {
      chips.push({
        label: readFileSync(join(dir, 'label'), 'utf8').trim(),
        base: Number(readFileSync(join(dir, 'base'), 'utf8').trim()),
        ngpio: Number(readFileSync(join(dir, 'ngpio'), 'utf8').trim()),
      });
    } catch { /* a chip we cannot read is not ours */ }
  }
  const soc = chips.find((c) => SOC_CHIP.test(c.label) && c.label !== 'raspberrypi-exp-gpio')
    ?? chips.find((c) => c.label.startsWith('pinctrl-'));
  if (soc) {
    if (bcm >= soc.ngpio) throw new GpioUnavailable(`BCM ${bcm} is not a line of ${soc.label} (it has ${soc.ngpio})`);
    return soc.base + bcm;
  }
  return bcm; // older kernels: sysfs numbers are the BCM numbers
}

/** The onoff backend; throws GpioUnavailable (with the reason) where sysfs GPIO is absent or not permitted. */
export async function onoffBackend(sysfsRoot = '/sys/class/gpio'): Promise<GpioBackend> {
  let Gpio: typeof import('onoff').Gpio;
  try {
    ({ Gpio } = await import('onoff'));
  } catch (e) {
    throw new GpioUnavailable(`the onoff package cannot load (${(e as Error).message.split('\n')[0]})`);
  }
  if (!Gpio.accessible || !existsSync(sysfsRoot)) {
    throw new GpioUnavailable(`no sysfs GPIO at ${sysfsRoot} (not a Raspberry Pi, or the kernel has no GPIO sysfs interface)`);
  }
  const open = (bcm: number, make: (n: number) => InstanceType<typeof Gpio>) => {
    const n = sysfsNumber(bcm, sysfsRoot);
    try {
      return make(n);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const hint = err.code === 'EACCES' ? ' (is the user in the gpio group?)' : err.code === 'EBUSY' ? ' (used by another program or driver)' : '';
      throw new GpioUnavailable(`cannot open BCM ${bcm} (sysfs gpio${n}): ${err.code ?? err.message}${hint}`);
    }
  };
  const notes: string[] = [];
  return {
    name: 'onoff (sysfs)',
    notes,
    output(bcm, activeLow) {
      const g = open(bcm, (n) => new Gpio(n, 'out', 'none', { activeLow }));
      return { synchronous: true, set: (on) => g.writeSync(on ? 1 : 0), get: () => g.readSync() === 1, release: () => { try { g.writeSync(0); g.unexport(); } catch { /* gone */ } } };
    },
    input(bcm, activeLow, debounceMs, bias = 'none') {
      // sysfs has no pull setting: the firmware's gpio= line (written by install.sh) sets it at boot.
      if (bias !== 'none') notes.push(`BCM ${bcm}: sysfs GPIO cannot set the ${bias}; it comes from the firmware line gpio=${bcm}=ip,${bias === 'pull-up' ? 'pu' : 'pd'} in config.txt (install.sh writes it; a reboot applies it)`);
      const g = open(bcm, (n) => new Gpio(n, 'in', 'both', { activeLow, debounceTimeout: debounceMs }));
      return {
        onChange: (cb) => g.watch((err, v) => { if (!err) cb(v === 1); }),
        release: () => { try { g.unwatchAll(); g.unexport(); } catch { /* gone */ } },
      };
    },
  };
}
