export { EchoCanceller, EchoUnavailableError, MAX_DELAY_MS } from './canceller.js';
export type { EchoStats, EchoOptions } from './canceller.js';
