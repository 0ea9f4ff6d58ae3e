export { EchoCanceller, EchoUnavailableError, MAX_DELAY_MS, warmUpEcho } from './canceller.js';
export type { EchoStats, EchoOptions } from './canceller.js';
