// APA102 / DotStar frames and the two ways to send them: an SPI device
// (spi-device, loaded only when a ring is configured, so machines without
// SPI run as before) or two GPIO lines bit-banged (the Voice Bonnet wires its
// DotStars to BCM 6/5, not to the SPI pins).
//
// Frame, per the APA102 datasheet: a start frame of 32 zero bits; one 32-bit
// frame per LED, 0b111 then 5 bits of global brightness, then blue, green,
// red; then the end frame. The clock reaches each LED half a cycle later than
// the one before, so the data of the last LED needs n/2 more clock edges:
// ceil(n/16) bytes. The end bytes are 0x00, not 0xFF: 0xFF bytes past the last
// counted LED form a valid LED frame (0b111, full brightness, white) and would
// light any LED beyond `count` full white, while zeros never form an LED frame.
// Four more zero bytes come first: the SK9822 (a common APA102 clone) latches
// new colours only on such a 32-bit zero "reset" frame; the APA102 takes them
// as another start frame.
import type { OutputLine } from '../gpio/gpio.js';

export type Rgb = [number, number, number];

export const START_FRAME_BYTES = 4;
export const RESET_FRAME_BYTES = 4;
export const endFrameBytes = (n: number) => RESET_FRAME_BYTES + Math.ceil(n / 16);

/** The bytes for n pixels at a 5-bit global brightness (0..31). */
export function apa102Frame(pixels: Rgb[], brightness5: number): Buffer {
  const b = Math.max(0, Math.min(31, Math.round(brightness5)));
  const buf = Buffer.alloc(START_FRAME_BYTES + pixels.length * 4 + endFrameBytes(pixels.length)); // zero-filled: start and end frames
  pixels.forEach(([r, g, bl], i) => {
    const o = START_FRAME_BYTES + i * 4;
    buf[o] = 0xe0 | b;
    buf[o + 1] = clamp(bl);
    buf[o + 2] = clamp(g);
    buf[o + 3] = clamp(r);
  });
  return buf;
}

const clamp = (v: number) => Math.max(0, Math.min(255, Math.round(v)));

/** Pixel i as written in a frame: its brightness field and colour, or null when the bytes there are not an LED frame. */
export function pixelOf(frame: Buffer, i: number): { brightness: number; rgb: Rgb } | null {
  const o = START_FRAME_BYTES + i * 4;
  if (o + 4 > frame.length || (frame[o] & 0xe0) !== 0xe0) return null;
  return { brightness: frame[o] & 0x1f, rgb: [frame[o + 3], frame[o + 2], frame[o + 1]] };
}

/** Where frames go. `write` is synchronous and throws when the frame did not go out. */
export interface Apa102Transport { readonly description: string; write(frame: Buffer): void; close(): void }

interface SpiDeviceModule {
  openSync(bus: number, device: number, options?: { mode?: number; maxSpeedHz?: number }): {
    transferSync(message: { byteLength: number; sendBuffer?: Buffer; speedHz?: number }[]): unknown;
    closeSync(): void;
  };
}

/** /dev/spidevB.D through spi-device; throws with the reason (no such device, no permission, addon missing). */
export async function spiTransport(path: string, speedHz: number): Promise<Apa102Transport> {
  const m = /spidev(\d+)\.(\d+)$/.exec(path);
  if (!m) throw new Error(`${path} is not an SPI device path like /dev/spidev0.1`);
  let spi: SpiDeviceModule;
  try {
    const mod = await import('spi-device') as unknown as { default?: SpiDeviceModule } & SpiDeviceModule;
    spi = (mod.default ?? mod) as SpiDeviceModule;
  } catch (e) {
    throw new Error(`the spi-device package cannot load (${(e as Error).message.split('\n')[0]}): reinstall with npm ci where it can build`);
  }
  let dev: ReturnType<SpiDeviceModule['openSync']>;
  try {
    dev = spi.openSync(Number(m[1]), Number(m[2]), { mode: 0, maxSpeedHz: speedHz });
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    const hint = err.code === 'ENOENT' ? ' (SPI is off: dtparam=spi=on in config.txt, then reboot)'
      : err.code === 'EACCES' ? ' (is the user in the spi group?)' : '';
    throw new Error(`cannot open ${path}: ${err.code ?? err.message}${hint}`);
  }
  return {
    description: `${path} at ${speedHz} Hz`,
    write: (frame) => { dev.transferSync([{ byteLength: frame.length, sendBuffer: frame, speedHz }]); },
    close: () => { try { dev.closeSync(); } catch { /* gone */ } },
  };
}

/** Clock and data on two GPIO lines, MSB first, data read by the LEDs on the rising clock edge. */
export function bitbangTransport(clock: OutputLine, data: OutputLine, clockPin: number, dataPin: number): Apa102Transport {
  if (!clock.synchronous || !data.synchronous) {
    throw new Error('bit-banged LEDs need GPIO lines that switch at once (gpio.backend: sysfs); libgpiod\'s tools set a line through another process');
  }
  clock.set(false);
  return {
    description: `bit-banged on BCM ${clockPin} (clock) and BCM ${dataPin} (data)`,
    write: (frame) => {
      for (const byte of frame) {
        for (let bit = 7; bit >= 0; bit--) {
          data.set(((byte >> bit) & 1) === 1);
          clock.set(true);
          clock.set(false);
        }
      }
    },
    close: () => { clock.release(); data.release(); },
  };
}
