// APA102 rings at their interface: the frame bytes against the datasheet
// through a fake SPI transport, the state -> animation table, and the
// privacy promise read back from the last frame written.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { apa102Frame, bitbangTransport, endFrameBytes, pixelOf, type Apa102Transport, type Rgb } from '../src/leds/apa102.js';
import { RING_PATTERNS, Ring, parseColour, withTimer, type RingColours } from '../src/leds/ring.js';
import { STREAMING_STATES, type State } from '../src/ports.js';
import { fakeConversation } from './bench/fake-conversation.js';
import { Indicators, MissingLight } from '../src/leds/indicators.js';
import { Leds } from '../src/leds/leds.js';
import type { OutputLine } from '../src/gpio/gpio.js';

const COLOURS: RingColours = {
  listening: parseColour('#0060ff'), activity: parseColour('#ffffff'), speaking: parseColour('#00c040'),
  muted: parseColour('#ff0000'), error: parseColour('#ff3000'), timer: parseColour('#ffa000'),
};

function fakeSpi(fail = false): Apa102Transport & { frames: Buffer[]; fail: boolean } {
  const t = {
    description: 'fake SPI', frames: [] as Buffer[], fail,
    write(f: Buffer) { if (t.fail) throw new Error('EIO'); t.frames.push(Buffer.from(f)); },
    close() { /* nothing */ },
  };
  return t;
}

test('apa102: start frame, 0xE0|brightness then blue, green, red per LED, and a zero end frame long enough for the ring', () => {
  const f = apa102Frame([[0x11, 0x22, 0x33], [255, 0, 0], [0, 0, 255]], 31);
  assert.deepEqual([...f], [
    0x00, 0x00, 0x00, 0x00, // start frame: 32 zero bits
    0xff, 0x33, 0x22, 0x11, // 0xE0 | 31, then B, G, R
    0xff, 0x00, 0x00, 0xff, // red
    0xff, 0xff, 0x00, 0x00, // blue
    0x00, 0x00, 0x00, 0x00, // SK9822 reset frame
    0x00, // ceil(3/16) = 1 byte: n/2 more clock edges
  ]);
  assert.equal(apa102Frame([[1, 2, 3]], 8)[4], 0xe8, 'brightness 8 -> 0b11101000');
  for (const [n, end] of [[3, 5], [12, 5], [16, 5], [17, 6], [64, 8], [256, 20]]) {
    assert.equal(endFrameBytes(n), end, `${n} LEDs`);
    const frame = apa102Frame(Array.from({ length: n }, (): Rgb => [0, 0, 0]), 1);
    assert.equal(frame.length, 4 + 4 * n + end);
    assert.ok(frame.subarray(4 + 4 * n).every((b) => b === 0), 'the end frame is zeros: never read as an LED frame');
  }
});

test('apa102: brightness is the 5-bit global field, never 0 for a lit ring (0.25 -> 8, the minimum -> 1)', () => {
  const spi = fakeSpi();
  const r = new Ring(spi, { count: 3, brightness: 0.25, colours: COLOURS });
  r.show('listening');
  assert.equal(spi.frames.at(-1)![4], 0xe0 | 8);
  const dim = fakeSpi();
  new Ring(dim, { count: 3, brightness: 0.01, colours: COLOURS }).show('listening');
  assert.equal(dim.frames.at(-1)![4], 0xe0 | 1);
});

test('ring: the state -> animation table keeps the listening colour on the even pixels in every state audio may leave in, at every moment', () => {
  for (const s of Object.keys(RING_PATTERNS) as State[]) {
    const p = RING_PATTERNS[s];
    assert.equal(p.privacy, STREAMING_STATES.has(s) || s === 'connecting', `privacy flag of ${s}`);
    for (const n of [1, 3, 12]) {
      for (let t = 0; t < 3000; t += 37) {
        const px = p.frame(t, n, COLOURS);
        assert.equal(px.length, n);
        for (let i = 0; i < n; i += 2) {
          if (p.privacy) assert.deepEqual(px[i], COLOURS.listening, `${s}, ${n} LEDs, t=${t}, pixel ${i}`);
        }
        if (!p.privacy) assert.ok(px.every((c) => JSON.stringify(c) !== JSON.stringify(COLOURS.listening)), `${s} never shows the listening colour`);
        const timed = withTimer(p).frame(t, n, COLOURS);
        if (p.privacy) for (let i = 0; i < n; i += 2) assert.deepEqual(timed[i], COLOURS.listening, `timer over ${s} keeps pixel ${i}`);
      }
    }
  }
  assert.ok(RING_PATTERNS.idle.frame(0, 12, COLOURS).every((c) => c.every((v) => v === 0)), 'idle: dark');
  assert.ok(RING_PATTERNS.muted.frame(0, 12, COLOURS).every((c) => JSON.stringify(c) === JSON.stringify(COLOURS.muted)), 'muted: all muted colour');
  const shapes = new Set((Object.keys(RING_PATTERNS) as State[]).map((s) => JSON.stringify([0, 130, 260, 520].map((t) => RING_PATTERNS[s].frame(t, 3, COLOURS)))));
  assert.equal(shapes.size, Object.keys(RING_PATTERNS).length, 'every state looks different');
});

test('ring: the timer-ringing pattern flashes the timer colour over idle and over a conversation', () => {
  const idle = withTimer(RING_PATTERNS.idle);
  assert.ok(idle.frame(0, 3, COLOURS).every((c) => JSON.stringify(c) === JSON.stringify(COLOURS.timer)));
  assert.ok(idle.frame(200, 3, COLOURS).every((c) => c.every((v) => v === 0)));
  const listening = withTimer(RING_PATTERNS.listening).frame(0, 3, COLOURS);
  assert.deepEqual(listening, [COLOURS.listening, COLOURS.timer, COLOURS.listening]);
});

test('ring: micLive reads back the last frame written; a failed SPI write makes it false with the reason', () => {
  const spi = fakeSpi();
  const r = new Ring(spi, { count: 3, brightness: 0.25, colours: COLOURS });
  assert.equal(r.micLive, false, 'idle');
  r.show('listening');
  assert.equal(r.micLive, true);
  const last = spi.frames.at(-1)!;
  for (const i of [0, 2]) assert.deepEqual(pixelOf(last, i)!.rgb, COLOURS.listening);
  spi.fail = true;
  r.show('thinking');
  assert.equal(r.micLive, false);
  assert.equal(r.ledProblem, 'cannot write the LED ring (fake SPI): EIO');
  spi.fail = false;
  r.show('listening');
  assert.equal(r.micLive, true, 'a good write is judged afresh');
  r.show('idle');
  assert.equal(r.micLive, false);
  r.release();
});

test('ring: with a power pin (ReSpeaker 4-Mic), the pin is driven high and is part of the read-back', () => {
  const power: OutputLine & { level: boolean } = { level: false, set(on) { power.level = on; }, get() { return power.level; }, release() { power.level = false; } };
  const spi = fakeSpi();
  const r = new Ring(spi, { count: 12, brightness: 0.25, colours: COLOURS, power });
  assert.equal(power.level, true);
  r.show('listening');
  assert.equal(r.micLive, true);
  power.level = false; // the power line dropped
  assert.equal(r.micLive, false);
  assert.match(r.ledProblem!, /power line reads back off/);
});

test('privacy: a ring whose SPI write fails stops the stream before any audio leaves, and shows the error', () => {
  const spi = fakeSpi();
  const ring = new Ring(spi, { count: 3, brightness: 0.25, colours: COLOURS });
  const { c, sent, h } = fakeConversation(ring);
  spi.fail = true;
  c.press('ctl');
  h().onOpen();
  c.micFrame(Buffer.alloc(640, 1));
  assert.equal(sent.length, 0);
  assert.equal(c.state, 'error');
  assert.match(c.lastError!.message, /^privacy light: cannot write the LED ring \(fake SPI\): EIO/);
  c.shutdown();
  ring.release();
});

test('privacy: a ring that is configured but cannot be driven stands as a light that is never lit: nothing is streamed, and the error says why', () => {
  // What the daemon puts beside the GPIO LEDs when gpio.ring is set and its SPI device cannot be opened.
  const indicator = new Indicators([new Leds({}), new MissingLight('the LED ring cannot be driven (ENOENT /dev/spidev0.1)')]);
  const { c, sent, h } = fakeConversation(indicator);
  c.press('ctl');
  h().onOpen();
  c.micFrame(Buffer.alloc(640, 1));
  assert.equal(sent.length, 0, 'no audio left');
  assert.equal(c.state, 'error');
  assert.match(c.lastError!.message, /^privacy light: the LED ring cannot be driven \(ENOENT \/dev\/spidev0\.1\)/);
  c.shutdown();
});

test('apa102 bit-banged: each bit on the data line, clocked on the rising edge, MSB first; lines that are not synchronous are refused', () => {
  const bits: number[] = [];
  let data = false;
  const line = (onSet: (on: boolean) => void): OutputLine => ({ synchronous: true, set: onSet, get: () => false, release: () => undefined });
  let clk = false;
  const clock = line((on) => { if (on && !clk) bits.push(data ? 1 : 0); clk = on; });
  const dat = line((on) => { data = on; });
  const t = bitbangTransport(clock, dat, 6, 5);
  const frame = apa102Frame([[1, 2, 3]], 5);
  t.write(frame);
  const bytes = [];
  for (let i = 0; i < bits.length; i += 8) bytes.push(bits.slice(i, i + 8).reduce((a, b) => (a << 1) | b, 0));
  assert.deepEqual(bytes, [...frame]);
  const slow: OutputLine = { set: () => undefined, get: () => false, release: () => undefined };
  assert.throws(() => bitbangTransport(slow, slow, 6, 5), /need GPIO lines that switch at once \(gpio.backend: sysfs\)/);
});
