/**
 * `live-speaker emulator`: run the Live API emulator in parrot mode so the
 * daemon (or any @google/genai client) can be pointed at it with
 * httpOptions.baseUrl and no real API key. The subcommand wiring lives elsewhere.
 */
import { LiveEmulator } from './emulator.js';

export async function runEmulator(opts: { port: number; host: string; models?: string[] }): Promise<LiveEmulator> {
  const emu = await LiveEmulator.start({
    port: opts.port,
    host: opts.host,
    mode: 'parrot',
    // A long-running process: keep only the audio needed to cut utterances,
    // and forget sessions once they are closed.
    recordAudio: false,
    keepClosedSessions: 0,
    // --models: refuse any other model as the service does (close 1008); default: any.
    ...(opts.models?.length ? { knownModels: opts.models } : {}),
  });
  process.stdout.write(`Gemini Live emulator (parrot mode) listening: baseUrl ${emu.url}\n`);
  return emu;
}
