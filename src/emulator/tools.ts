/**
 * The emulator's function calls (tools, issue 12): a session's toolCall /
 * toolCallCancellation, the toolResponses it receives, and the parrot's tool
 * "keywords": a steady tone that stands for a spoken request (1400 Hz sets a
 * 5-second timer). Parrot mode (parrot.ts) makes the call; tests call
 * session.toolCall themselves.
 */
import { goertzelPower } from '../audio/pcm.js';
import type { LiveEmulator } from './emulator.js';
import { INPUT_RATE, server } from './protocol.js';
import type { Session } from './session.js';

export interface ToolTone { hz: number; call: { name: string; args?: Record<string, unknown> } }
/** The parrot's "keyword": a steady 1400 Hz tone sets a 5-second timer (the demo plays one). */
export const PARROT_TOOL_TONES: ToolTone[] = [{ hz: 1400, call: { name: 'set_timer', args: { seconds: 5, label: 'demo' } } }];
/** A function call the emulator makes (id made up when not given). */
export interface EmulatedCall { name: string; args?: Record<string, unknown>; id?: string }

/** One session's calls and the answers to them. */
export class SessionTools {
  private callCount = 0;

  constructor(private readonly s: Session, private readonly emu: LiveEmulator) {}

  /** Send one toolCall holding these calls (several = parallel calls); returns their ids. */
  call(calls: EmulatedCall[]): string[] {
    const functionCalls = calls.map((c) => ({ id: c.id ?? `fc-${this.s.id}-${++this.callCount}`, name: c.name, args: c.args ?? {} }));
    this.s.send(server.toolCall(functionCalls));
    this.s.log('tool-call', { calls: functionCalls.map((c) => `${c.id} ${c.name}`) });
    this.s.announce('tool-call', functionCalls);
    return functionCalls.map((c) => c.id);
  }

  cancel(ids: string[]): void {
    this.s.send(server.toolCallCancellation(ids));
    this.s.log('tool-call-cancellation', { ids });
  }

  /** The functionResponse for `id` (already received, or the next one); rejects after timeoutMs. */
  response(id: string, timeoutMs: number): Promise<any> {
    const seen = this.s.toolResponses.find((r) => r?.id === id);
    if (seen) return Promise.resolve(seen);
    return this.emu.waitFor('tool-response', (s, r) => s === this.s && r?.id === id, timeoutMs).then(([, r]) => r);
  }

  /** A client toolResponse: record each functionResponse and tell listeners. */
  received(msg: any): void {
    for (const r of Array.isArray(msg.toolResponse?.functionResponses) ? msg.toolResponse.functionResponses : []) {
      this.s.toolResponses.push(r);
      this.s.log('tool-response', { id: r?.id, name: r?.name });
      this.s.announce('tool-response', r);
    }
  }
}

/**
 * The tool tone an utterance stands for, if any: one whose function the
 * session declared and that holds most of the utterance's energy.
 */
export function toolToneOf(pcm: Buffer, tones: ToolTone[], declared: string[]): ToolTone | undefined {
  let energy = 0;
  for (let i = 0; i + 1 < pcm.length; i += 2) energy += (pcm.readInt16LE(i) / 32767) ** 2;
  const mean = energy / Math.max(1, pcm.length / 2);
  for (const t of tones) {
    if (!declared.includes(t.call.name) || mean < 1e-5) continue;
    // A pure tone of amplitude A has mean square A²/2 and Goertzel power about A²: most of the energy at hz.
    if (goertzelPower(pcm, INPUT_RATE, t.hz) < 0.5 * 2 * mean) continue;
    return t;
  }
  return undefined;
}
