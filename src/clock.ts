// Every duration in the daemon is measured on this clock. A Raspberry Pi has
// no real-time clock: the wall clock starts wherever the last shutdown left
// it and NTP steps it (by hours, or backwards) once the network is up. Only
// timestamps meant for people (log times, `lastError.at`) use the wall clock.
import { performance } from 'node:perf_hooks';

/** Milliseconds on a monotonic clock (CLOCK_MONOTONIC via libuv): never steps. */
export const monotonicMs = (): number => performance.now();
