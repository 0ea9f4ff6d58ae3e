// Small helpers the tests and the bench share, so that each is written once.

/**
 * mulberry32: a small seeded PRNG, uniform in [0, 1). The same seed gives
 * the same numbers: a failure names the seed that reproduces it. The one
 * PRNG of the tests (fuzz.ts, echo-room.ts, delivery.ts and arm.test.ts use
 * it): do not write another.
 */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
