export { EchoCanceller, EchoUnavailableError } from './canceller.js';
export type { EchoStats, EchoOptions } from './canceller.js';
