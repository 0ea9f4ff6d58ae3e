// The bound every barge-in test asserts, and how it is measured: from the cue
// (the server's `interrupted`, a press, a wake word) to the last sample of the
// cut reply that reached the sound card (spk.monitor), not to a log line.
import { findTone, type SinkRecorder } from './soundcard.js';

/**
 * At most this many ms from the cue to the last sample of the cut reply.
 *
 * It separates the designs with margin on both sides (bench/README.md):
 * - the daemon drops what is queued and what ALSA still holds (close(true)):
 *   median 6-8 ms, p95 28 ms in `npm run bench`;
 * - a player that only stops writing lets its device buffer play out: the
 *   naive client (bench/naive-client.ts, the Live API getting-started
 *   example) keeps 0.5 s in ALSA and measured 470-550 ms; the daemon with its
 *   200 ms lead but no drop would take ~200 ms (+ speaker onset);
 * - 'the barge-in bound fails the naive client' (conversation.test.ts) runs
 *   the naive client through the same measurement in every run.
 * The sink times use parec's raw byte->time mapping, which reads ~15-25 ms
 * early on this card (bench/README.md, "Recorder calibration"); the bound
 * leaves far more margin than that on either side.
 */
export const BARGE_IN_MS = 150;

/** ms from `cueAt` (Date.now() clock) to the last sample of the `hz` tone in what `sink` recorded; null if the tone never played. */
export function toneEndsAfter(played: Buffer, sink: SinkRecorder, hz: number, cueAt: number): number | null {
  const t = findTone(played, hz);
  return t.lastMs === null ? null : sink.startedAt + t.lastMs - cueAt;
}
