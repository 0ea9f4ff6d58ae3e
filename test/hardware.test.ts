// Voice HAT profiles, the firmware's config.txt block, the mixer and
// doctor's hardware checks, each at its interface: config objects, a temp
// config.txt run through the real scripts/boot-config.sh, a fake amixer
// runner, fake /proc/asound/cards and fake tools on PATH.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseConfig, ConfigError } from '../src/config.js';
import { HARDWARE_PROFILES, parseSoundCards } from '../src/hardware.js';
import { BLOCK_BEGIN, bootConfigLines, readBlock } from '../src/bootconfig.js';
import { applyMixer, mixerCommands } from '../src/mixer.js';
import { checkBootConfig, checkGpio, checkSoundCards, parsePinctrl, type HwEnv } from '../src/doctor-hw.js';

const ROOT = join(dirname(fileURLToPath(import.meta.url)), '../..');
const FAKES = join(ROOT, 'test/fixtures/fake-gpiod');
const dirs: string[] = [];
const tmp = () => { const d = mkdtempSync(join(tmpdir(), 'ls-hw-')); dirs.push(d); return d; };
after(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

const CARDS = ` 0 [Headphones     ]: bcm2835_headpho - bcm2835 Headphones
                      bcm2835 Headphones
 1 [seeed2micvoicec]: seeed-2mic-voic - seeed-2mic-voicecard
                      seeed-2mic-voicecard
`;

test('profiles: one hardware: line sets card, button, LEDs and mixer; the user\'s own keys still win', () => {
  const c = parseConfig({ hardware: 'respeaker-2mic' }, '/etc/live-speaker/config.yaml', []);
  assert.equal(c.audio.capture_device, 'plughw:CARD=seeed2micvoicec,DEV=0');
  assert.equal(c.audio.playback_device, 'plughw:CARD=seeed2micvoicec,DEV=0');
  assert.deepEqual(c.gpio.button, { pin: 17, active_low: true, bias: 'pull-up', debounce_ms: 20, long_press_ms: 1500 });
  assert.deepEqual(c.gpio.leds, { listening: null, activity: null, muted: null, error: null });
  assert.equal(c.gpio.ring!.count, 3);
  assert.equal(c.gpio.ring!.spi, '/dev/spidev0.1');
  assert.ok(c.mixer.settings.some((s) => s.control === 'Left Output Mixer PCM' && s.value === 'on'));
  const mine = parseConfig({ hardware: 'respeaker-2mic', gpio: { button: { pin: 22 }, ring: { brightness: 0.5 } }, audio: { playback_device: 'default' } }, null, []);
  assert.equal(mine.gpio.button.pin, 22);
  assert.equal(mine.gpio.button.bias, 'pull-up');
  assert.deepEqual([mine.gpio.ring!.count, mine.gpio.ring!.brightness], [3, 0.5]);
  assert.equal(mine.audio.playback_device, 'default');
  assert.equal(mine.audio.capture_device, 'plughw:CARD=seeed2micvoicec,DEV=0');
});

test('profiles: each named HAT gets its button, LEDs and card', () => {
  const p = (name: string, cards: string[] = []) => parseConfig({ hardware: name }, null, cards);
  const four = p('respeaker-4mic');
  assert.deepEqual([four.gpio.button.pin, four.gpio.ring!.count, four.gpio.ring!.power_pin, four.audio.capture_device, four.audio.playback_device],
    [null, 12, 5, 'plughw:CARD=seeed4micvoicec,DEV=0', 'default']);
  const bonnet = p('voice-bonnet');
  assert.deepEqual([bonnet.gpio.button.pin, bonnet.gpio.ring!.spi, bonnet.gpio.ring!.clock_pin, bonnet.gpio.ring!.data_pin], [17, null, 6, 5]);
  assert.equal(bonnet.audio.capture_device, 'plughw:CARD=wm8960soundcard,DEV=0');
  assert.equal(p('voice-bonnet', ['seeed2micvoicec']).audio.capture_device, 'plughw:CARD=seeed2micvoicec,DEV=0', 'the card its driver registered here');
  const aiy = p('aiy-voice');
  assert.deepEqual([aiy.gpio.button.pin, aiy.gpio.leds.listening, aiy.gpio.ring, aiy.audio.capture_device], [23, { pin: 25, active_low: false }, null, 'plughw:CARD=sndrpigooglevoi,DEV=0']);
  assert.equal(p('custom').gpio.button.pin, 17);
  assert.deepEqual(Object.keys(HARDWARE_PROFILES), ['custom', 'respeaker-2mic', 'respeaker-4mic', 'voice-bonnet', 'aiy-voice']);
});

test('profiles: a wrong key still names the key and the file; a wrong profile name lists the right ones', () => {
  assert.throws(() => parseConfig({ hardware: 'respeaker-2mic', gpio: { ring: { colour: 'red' }, button: { bias: 'up' } } }, '/etc/live-speaker/config.yaml', []), (e: Error) => {
    assert.ok(e instanceof ConfigError);
    assert.match(e.message, /^invalid config in \/etc\/live-speaker\/config\.yaml: /);
    assert.match(e.message, /unknown key 'gpio\.ring\.colour'/);
    assert.match(e.message, /'gpio\.button\.bias': /);
    return true;
  });
  assert.throws(() => parseConfig({ hardware: 'respeaker' }, 'x.yaml', []), /'hardware': .*"respeaker-2mic"/);
});

test('firmware block: the button pull and SPI lines follow the config', () => {
  assert.deepEqual(bootConfigLines(parseConfig({}, null, [])), ['gpio=17=ip,pu']);
  assert.deepEqual(bootConfigLines(parseConfig({ gpio: { button: { pin: 27, bias: 'pull-down' } } }, null, [])), ['gpio=27=ip,pd']);
  assert.deepEqual(bootConfigLines(parseConfig({ gpio: { button: { bias: 'none' } } }, null, [])), ['gpio=17=ip,pn']);
  assert.deepEqual(bootConfigLines(parseConfig({ hardware: 'respeaker-2mic' }, null, [])), ['gpio=17=ip,pu', 'dtparam=spi=on']);
  assert.deepEqual(bootConfigLines(parseConfig({ hardware: 'voice-bonnet' }, null, [])), ['gpio=17=ip,pu'], 'bit-banged: no SPI');
  assert.deepEqual(bootConfigLines(parseConfig({ hardware: 'aiy-voice' }, null, [])), ['gpio=23=ip,pu']);
  assert.deepEqual(bootConfigLines(parseConfig({ gpio: { enabled: false } }, null, [])), []);
});

test('install.sh\'s config.txt editing: written once under [all], replaced not duplicated, removed exactly', () => {
  const d = tmp();
  const file = join(d, 'config.txt');
  const original = '# Raspberry Pi config\ndtparam=audio=on\n\n[pi4]\narm_boost=1\n';
  writeFileSync(file, original);
  const run = (...a: string[]) => execFileSync('bash', [join(ROOT, 'scripts/boot-config.sh'), ...a], { encoding: 'utf8' }).trim();
  assert.equal(run('set', file, 'gpio=17=ip,pu', 'dtparam=spi=on'), 'changed');
  const once = readFileSync(file, 'utf8');
  assert.equal(once, `${original}\n${BLOCK_BEGIN}\n[all]\ngpio=17=ip,pu\ndtparam=spi=on\n# <<< live-speaker\n`);
  assert.deepEqual(readBlock(file), ['gpio=17=ip,pu', 'dtparam=spi=on']);
  assert.equal(run('set', file, 'gpio=17=ip,pu', 'dtparam=spi=on'), 'unchanged', 'idempotent');
  assert.equal(readFileSync(file, 'utf8'), once);
  assert.equal(run('set', file, 'gpio=23=ip,pu'), 'changed');
  assert.equal(readFileSync(file, 'utf8').split(BLOCK_BEGIN).length, 2, 'one block');
  assert.deepEqual(readBlock(file), ['gpio=23=ip,pu']);
  assert.equal(run('remove', file), 'changed');
  assert.equal(readFileSync(file, 'utf8'), original, 'exactly the block is gone');
  assert.equal(run('remove', file), 'unchanged');
});

test('doctor: the firmware block is checked against the config', () => {
  const d = tmp();
  const file = join(d, 'config.txt');
  writeFileSync(file, 'dtparam=audio=on\n');
  const hw: HwEnv = { sysfsRoot: join(d, 'nosys'), devRoot: join(d, 'nodev'), cardsFile: join(d, 'cards'), bootConfigFiles: [join(d, 'none.txt'), file] };
  const cfg = parseConfig({ hardware: 'respeaker-2mic' }, null, []);
  const bad = checkBootConfig(cfg, hw);
  assert.equal(bad.verdict, 'fail');
  assert.match(bad.detail, /lacks gpio=17=ip,pu, dtparam=spi=on/);
  assert.match(bad.fix!, /install\.sh.*reboot/);
  execFileSync('bash', [join(ROOT, 'scripts/boot-config.sh'), 'set', file, 'gpio=17=ip,pu', 'dtparam=spi=on']);
  assert.equal(checkBootConfig(cfg, hw).verdict, 'ok');
});

test('mixer: WM8960 switches become amixer sset commands on the profile\'s card; a failing one is logged and the rest applied', async () => {
  const cfg = parseConfig({ hardware: 'respeaker-2mic' }, null, ['seeed2micvoicec']);
  const cmds = mixerCommands('seeed2micvoicec', cfg.mixer.settings);
  assert.deepEqual(cmds[0], ['-q', '-c', 'seeed2micvoicec', 'sset', 'Left Output Mixer PCM', 'on']);
  assert.ok(cmds.some((c) => c.join(' ') === '-q -c seeed2micvoicec sset Capture cap'));
  const ran: string[][] = [];
  const warnings: string[] = [];
  const log = { info: () => undefined, warn: (_o: object, m: string) => { warnings.push(m); } };
  const failed = await applyMixer(cfg, log, async (args) => { ran.push(args); return args.includes('Speaker') ? { ok: false, error: "amixer: Unable to find simple control 'Speaker',0" } : { ok: true, error: '' }; });
  assert.equal(ran.length, cfg.mixer.settings.length, 'every setting tried');
  assert.deepEqual(failed, ["amixer -c seeed2micvoicec sset Speaker 80%: amixer: Unable to find simple control 'Speaker',0"]);
  assert.match(warnings[0], /1 of 7 settings failed on card seeed2micvoicec/);
  assert.deepEqual(await applyMixer(parseConfig({}, null, []), log, async () => assert.fail('nothing to run')), []);
});

test('doctor: the sound cards seen, and the profile and device lines that fit them', () => {
  const d = tmp();
  writeFileSync(join(d, 'cards'), CARDS);
  assert.deepEqual(parseSoundCards(CARDS).map((c) => [c.index, c.id]), [[0, 'Headphones'], [1, 'seeed2micvoicec']]);
  const hw: HwEnv = { sysfsRoot: d, devRoot: d, cardsFile: join(d, 'cards'), bootConfigFiles: [] };
  const c = checkSoundCards(parseConfig({}, null, []), hw);
  assert.equal(c.verdict, 'info');
  assert.match(c.detail, /seen: 0: Headphones \(bcm2835 Headphones\); 1: seeed2micvoicec \(seeed-2mic-voicecard\)/);
  assert.match(c.detail, /suggest `hardware: respeaker-2mic`/);
  assert.match(c.detail, /audio\.capture_device: plughw:CARD=seeed2micvoicec,DEV=0/);
  const missing = checkSoundCards(parseConfig({ hardware: 'aiy-voice' }, null, []), hw);
  assert.equal(missing.verdict, 'fail');
  assert.match(missing.detail, /hardware: aiy-voice expects card sndrpigooglevoi/);
  assert.match(missing.fix!, /googlevoicehat-soundcard/);
});

for (const v of [1, 2] as const) {
  test(`doctor v${v}: each pin's level and pull, from libgpiod where sysfs is missing, and a wrong pull is a failure`, async () => {
    const d = tmp();
    mkdirSync(join(d, 'dev'));
    writeFileSync(join(d, 'dev', 'gpiochip0'), '');
    writeFileSync(join(d, 'chips.json'), JSON.stringify([{ name: 'gpiochip0', label: 'pinctrl-bcm2711', lines: 58 }]));
    writeFileSync(join(d, 'level-17'), 'high');
    // The running daemon holds the LED; the button line is free.
    writeFileSync(join(d, 'line-5.json'), JSON.stringify({ consumer: v === 1 ? 'gpioset' : 'live-speaker', output: true, value: 1, pid: 1 }));
    const hw: HwEnv = { sysfsRoot: join(d, 'nosys'), devRoot: join(d, 'dev'), cardsFile: join(d, 'cards'), bootConfigFiles: [],
      env: { ...process.env, PATH: `${FAKES}:${process.env.PATH}`, FAKE_GPIOD_DIR: d, FAKE_GPIOD_VERSION: String(v) } };
    const cfg = parseConfig({ gpio: { leds: { activity: null, muted: null, error: null } } }, null, []);
    const checks = await checkGpio(cfg, hw);
    assert.equal(checks[0].verdict, 'ok');
    assert.match(checks[0].detail, new RegExp(`auto: chardev .*libgpiod ${v}\\.x tools, gpiochip0 \\[pinctrl-bcm2711\\]`));
    const button = checks.find((c) => c.name === 'button BCM 17')!;
    assert.match(button.detail, /^input, pull not reported, level high \(libgpiod\); configured pull-up$/);
    const led = checks.find((c) => c.name === 'listening LED BCM 5')!;
    assert.match(led.detail, new RegExp(`^output, .*held by "${v === 1 ? 'gpioset' : 'live-speaker'}" \\(libgpiod\\)`));
    // pinctrl (Raspberry Pi OS) reads the pull from the registers: a pull-down where pull-up is configured fails.
    writeFileSync(join(d, 'pinctrl-17'), '17: ip    pd | lo // GPIO17 = input\n');
    const again = (await checkGpio(cfg, hw)).find((c) => c.name === 'button BCM 17')!;
    assert.equal(again.verdict, 'fail');
    assert.equal(again.detail, 'input, pull-down, level low (pinctrl); configured pull-up');
  });
}

test('pinctrl: its get line gives function, pull and level', () => {
  assert.deepEqual(parsePinctrl('17: ip    pu | hi // GPIO17 = input'), { output: false, bias: 'pull-up', high: true });
  assert.deepEqual(parsePinctrl(' 5: op dh pn | hi // GPIO5 = output'), { output: true, bias: 'none', high: true });
  assert.equal(parsePinctrl('Unknown GPIO "99"'), null);
});
