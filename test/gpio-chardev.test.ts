// The chardev GPIO backend at its interface: the real backend code against
// fake libgpiod tools (test/fixtures/fake-gpiod) that take the real v1 and v2
// flags, print the real output formats and the real error texts, and keep
// the "kernel" state in files. Every behaviour is checked for both tool
// generations: bookworm ships libgpiod 1.6, trixie 2.x.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { appendFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import { chardevBackend, parseGpioinfo, parseGpiodetect, pickSocChip, type ChardevBackend } from '../src/gpio/chardev.js';
import { GpioUnavailable } from '../src/gpio/gpio.js';
import { autoBackend } from '../src/gpio/open.js';
import { Leds } from '../src/leds/leds.js';
import { fakeConversation } from './bench/fake-conversation.js';

const FAKES = join(dirname(fileURLToPath(import.meta.url)), '../../test/fixtures/fake-gpiod');
const dirs: string[] = [];
const backends: ChardevBackend[] = [];
after(() => { for (const b of backends) b.release?.(); for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

type Chip = { name: string; label: string; lines: number; denied?: boolean };
function bench(version: 1 | 2, chips: Chip[] = [{ name: 'gpiochip0', label: 'pinctrl-bcm2711', lines: 58 }]) {
  const dir = mkdtempSync(join(tmpdir(), 'ls-gpiod-'));
  dirs.push(dir);
  const dev = join(dir, 'dev');
  writeFileSync(join(dir, 'chips.json'), JSON.stringify(chips));
  mkdirSync(dev, { recursive: true });
  for (const c of chips) writeFileSync(join(dev, c.name), '');
  const env = { ...process.env, PATH: `${FAKES}:${process.env.PATH}`, FAKE_GPIOD_DIR: dir, FAKE_GPIOD_VERSION: String(version) };
  const line = (n: number) => { try { return JSON.parse(readFileSync(join(dir, `line-${n}.json`), 'utf8')); } catch { return null; } };
  const press = (n: number, level: 'low' | 'high') => appendFileSync(join(dir, `events-${n}`), `${level}\n`);
  const errors: string[] = [];
  const open = async (over: Record<string, unknown> = {}) => {
    const b = await chardevBackend({ env, devRoot: dev, restartMs: [50, 200], confirmTimeoutMs: 3000, log: (_l, m) => errors.push(m), ...over });
    backends.push(b);
    return b;
  };
  return { dir, dev, env, line, press, open, errors };
}

async function until(what: string, f: () => boolean, ms = 4000) {
  const end = Date.now() + ms;
  while (!f()) { if (Date.now() > end) assert.fail(`timed out waiting for ${what}`); await sleep(10); }
}

test('chardev: the chip is found by label, whatever its number (pinctrl-rp1 is gpiochip4 on older Pi 5 kernels, gpiochip0 on newer)', async () => {
  assert.deepEqual(pickSocChip(parseGpiodetect('gpiochip0 [gpio-brcmstb@107d508500] (32 lines)\ngpiochip4 [pinctrl-rp1] (54 lines)\n')), { name: 'gpiochip4', label: 'pinctrl-rp1', lines: 54 });
  assert.equal(pickSocChip(parseGpiodetect('gpiochip0 [pinctrl-rp1] (54 lines)\ngpiochip10 [gpio-brcmstb@107d508500] (32 lines)\n'))!.name, 'gpiochip0');
  assert.equal(pickSocChip(parseGpiodetect('gpiochip0 [pinctrl-bcm2711] (58 lines)\ngpiochip1 [raspberrypi-exp-gpio] (8 lines)\n'))!.name, 'gpiochip0');
  for (const v of [1, 2] as const) {
    const b = bench(v, [{ name: 'gpiochip0', label: 'gpio-brcmstb@107d508500', lines: 32 }, { name: 'gpiochip4', label: 'pinctrl-rp1', lines: 54 }]);
    const gpio = await b.open();
    assert.equal(gpio.chip.name, 'gpiochip4', `v${v}`);
    assert.equal(gpio.version, v);
  }
});

test('chardev: auto picks chardev only where sysfs GPIO is missing and a gpiochip exists', () => {
  const b = bench(2);
  assert.equal(autoBackend({ sysfsRoot: '/nonexistent', devRoot: b.dev }).kind, 'chardev');
  assert.equal(autoBackend({ sysfsRoot: b.dir, devRoot: b.dev }).kind, 'sysfs');
  assert.equal(autoBackend({ sysfsRoot: '/nonexistent', devRoot: b.dir }).kind, 'sysfs', 'no gpiochip: sysfs, which then says why it cannot');
});

for (const v of [1, 2] as const) {
  test(`chardev v${v}: the button line gets the configured pull, and a press to GND arrives as active (active low)`, async () => {
    const b = bench(v);
    const gpio = await b.open();
    const line = gpio.input(17, true, 20, 'pull-up');
    const seen: boolean[] = [];
    line.onChange((a) => seen.push(a));
    await until('gpiomon holds the line', () => b.line(17) !== null);
    assert.equal(b.line(17).bias, v === 1 ? 'pull-up' : 'pull-up');
    assert.equal(b.line(17).activeLow, true);
    assert.equal(b.line(17).output, false);
    b.press(17, 'low');
    await until('the press', () => seen.length === 1);
    b.press(17, 'high');
    await until('the release', () => seen.length === 2);
    assert.deepEqual(seen, [true, false]);
    const info = await gpio.lineInfo(17);
    assert.equal(info?.bias, 'pull-up', 'gpioinfo reports the pull the kernel holds');
    line.release();
    await until('released', () => b.line(17) === null);
  });

  test(`chardev v${v}: bias none and pull-down are asked for with this version's words`, async () => {
    const b = bench(v);
    const gpio = await b.open();
    gpio.input(22, false, 0, 'none');
    gpio.input(23, false, 0, 'pull-down');
    await until('both held', () => b.line(22) !== null && b.line(23) !== null);
    assert.equal(b.line(22).bias, v === 1 ? 'disable' : 'disabled');
    assert.equal(b.line(23).bias, 'pull-down');
  });

  test(`chardev v${v}: an LED level is confirmed through the tool before get() says on; a new level replaces the holder`, async () => {
    const b = bench(v);
    const gpio = await b.open();
    const led = gpio.output(5, false);
    led.set(true);
    assert.equal(led.get(), false, 'not confirmed yet');
    assert.ok(led.whenSettled?.(), 'a promise while unconfirmed');
    await led.whenSettled!();
    assert.equal(led.get(), true);
    assert.equal(led.whenSettled!(), null);
    assert.deepEqual([b.line(5).output, b.line(5).value, b.line(5).consumer], [true, 1, v === 1 ? 'gpioset' : 'live-speaker']);
    const firstPid = b.line(5).pid;
    led.set(false);
    await led.whenSettled!();
    assert.equal(led.get(), false);
    assert.equal(b.line(5).value, 0);
    assert.notEqual(b.line(5).pid, firstPid);
    led.release();
    await until('released', () => b.line(5) === null);
  });

  test(`chardev v${v}: a line another program holds is refused with who holds it, as clearly as onoff`, async () => {
    const b = bench(v);
    writeFileSync(join(b.dir, 'line-5.json'), JSON.stringify({ consumer: 'pigpio', output: true, value: 0, pid: 1 }));
    const gpio = await b.open();
    assert.throws(() => gpio.output(5, false), (e: Error) => {
      assert.ok(e instanceof GpioUnavailable);
      assert.equal(e.message, 'cannot open BCM 5 (gpiochip0 line 5): in use by "pigpio" (used by another program or a driver)');
      return true;
    });
  });

  test(`chardev v${v}: a line taken after start fails with the tool's own words, and get() throws them (the privacy light is not lit)`, async () => {
    const b = bench(v);
    const gpio = await b.open();
    writeFileSync(join(b.dir, 'line-6.json'), JSON.stringify({ consumer: 'other', output: true, value: 0, pid: 1 }));
    const led = gpio.output(6, false);
    led.set(true);
    await led.whenSettled!();
    const text = v === 1 ? 'gpioset: error setting the GPIO line values: Device or resource busy'
      : "gpioset: unable to request lines on chip '/dev/gpiochip0': Device or resource busy";
    assert.throws(() => led.get(), { message: `cannot hold BCM 6 (gpiochip0 line 6): ${text} (used by another program or a driver)` });
    assert.equal(b.errors.filter((m) => m.includes('Device or resource busy')).length, 1, 'said once, not at every retry');
    rmSync(join(b.dir, 'line-6.json'));
    await until('retried and confirmed', () => { try { return led.get(); } catch { return false; } });
  });

  test(`chardev v${v}: a holder that dies makes get() throw at once, and it is restarted and confirmed again`, async () => {
    const b = bench(v);
    const gpio = await b.open();
    const led = gpio.output(13, false);
    led.set(true);
    await led.whenSettled!();
    process.kill(b.line(13).pid, 'SIGKILL');
    await until('the death is seen', () => { try { led.get(); return false; } catch { return true; } });
    rmSync(join(b.dir, 'line-13.json'), { force: true }); // the kernel frees a dead process's lines
    await until('restarted and confirmed', () => { try { return led.get(); } catch { return false; } });
  });

  test(`chardev v${v}: no permission on the chip is said with the fix`, async () => {
    const b = bench(v, [{ name: 'gpiochip0', label: 'pinctrl-bcm2711', lines: 58, denied: true }]);
    await assert.rejects(b.open(), (e: Error) => {
      assert.ok(e instanceof GpioUnavailable);
      assert.match(e.message, /Permission denied \(is the user in the gpio group\?\)/);
      return true;
    });
  });
}

test('chardev: no tools installed, no chip, no Pi controller: each says why', async () => {
  const b = bench(2);
  await assert.rejects(chardevBackend({ env: { ...b.env, PATH: '/nonexistent' }, devRoot: b.dev }), /the libgpiod tools are not installed \(sudo apt install gpiod\)/);
  await assert.rejects(chardevBackend({ env: b.env, devRoot: join(b.dir, 'nodev') }), /no GPIO character device/);
  const other = bench(2, [{ name: 'gpiochip0', label: 'gpio-mockup-A', lines: 8 }]);
  await assert.rejects(other.open(), /no Raspberry Pi GPIO controller among gpiochip0 \[gpio-mockup-A\]/);
});

test('chardev v2: a blinking LED is timed by gpioset itself (-t), not by a process per blink', async () => {
  const b = bench(2);
  const gpio = await b.open();
  const led = gpio.output(6, false);
  const leds = new Leds({ activity: led });
  leds.show('thinking'); // activity blinks 250/250
  await until('the toggling holder', () => b.line(6)?.toggle === '250,250');
  const pid = b.line(6).pid;
  await sleep(600);
  assert.equal(b.line(6).pid, pid, 'one holder for the whole pattern');
  leds.show('idle');
  await until('off', () => b.line(6)?.value === 0 && b.line(6)?.toggle === null);
  leds.release();
});

test('gpioinfo: both formats parse to the same line info', () => {
  const v1 = '\tline   5:      "GPIO5"  "gpioset"  output  active-high [used]\n\tline  17:     "GPIO17"  "gpiomon"   input   active-low [used pull-up]\n\tline  18:     "GPIO18"       unused   input  active-high \n';
  const v2 = '\tline   5:\t"GPIO5"         \toutput consumer="live-speaker"\n\tline  17:\t"GPIO17"        \tinput active-low bias=pull-up edges=both consumer="live-speaker"\n\tline  18:\t"GPIO18"        \tinput\n';
  const a = parseGpioinfo(v1, 1), b = parseGpioinfo(v2, 2);
  for (const m of [a, b]) {
    assert.deepEqual([m.get(5)!.used, m.get(5)!.output], [true, true]);
    assert.deepEqual([m.get(17)!.used, m.get(17)!.output, m.get(17)!.activeLow, m.get(17)!.bias], [true, false, true, 'pull-up']);
    assert.deepEqual([m.get(18)!.used, m.get(18)!.bias], [false, null]);
  }
});

// The privacy promise with a light that is confirmed later: audio waits for it, nothing leaves before.
for (const v of [1, 2] as const) {
  test(`privacy v${v}: with a listening LED on libgpiod's tools, no audio leaves before the LED is confirmed lit; then all of it, in order`, async () => {
    const b = bench(v);
    const gpio = await b.open();
    const leds = new Leds({ listening: gpio.output(5, false) });
    const { c, sent, h: handlers } = fakeConversation(leds);
    c.press('ctl');
    handlers().onOpen(); // the session is up at once, before gpioset confirmed
    for (let i = 0; i < 3; i++) c.micFrame(Buffer.alloc(640, i));
    assert.equal(sent.length, 0, 'nothing left before the light was confirmed');
    assert.equal(c.state, 'connecting');
    await leds.lighting();
    await until('held audio sent', () => sent.length === 3);
    assert.deepEqual(sent.map((x) => x[0]), [0, 1, 2]);
    assert.equal(c.state, 'listening');
    assert.equal(leds.micLive, true);
    c.shutdown();
    leds.release();
  });
}
