// A stand-in wake-word engine for machines and tests without Porcupine (it
// needs an online-validated key): a steady pure tone of `hz` held for
// `minMs` counts as the wake word. It runs at Porcupine's frame size and rate,
// so the bench measures the same framing work. Not for real use.
import type { WakeEngine } from './engine.js';

export function toneEngine(hz: number, minMs = 200, frameLength = 512, rate = 16000): WakeEngine {
  const need = Math.ceil((minMs * rate) / 1000 / frameLength);
  const coeff = 2 * Math.cos((2 * Math.PI * hz) / rate);
  let run = 0;
  return {
    frameLength,
    keywords: [`tone ${hz} Hz`],
    process(frame: Int16Array): number {
      let s1 = 0, s2 = 0, energy = 0;
      for (let i = 0; i < frame.length; i++) {
        const v = frame[i] / 32768;
        energy += v * v;
        const s0 = v + coeff * s1 - s2;
        s2 = s1; s1 = s0;
      }
      const power = (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (frame.length * frame.length / 4); // ~ amplitude^2
      const toneLike = energy / frame.length > 1e-4 && power > 0.5 * (2 * energy / frame.length);
      run = toneLike ? run + 1 : 0;
      if (run === need) return 0;
      return -1;
    },
    release() { /* nothing held */ },
  };
}
