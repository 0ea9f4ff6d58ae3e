// Announcements and questions from the home (issue 24): `announce TEXT` and
// `ask TEXT`, from MQTT (src/mqtt/link.ts) or `live-speaker ctl`. They are
// said one at a time, in the order they came, each once no conversation is
// open: a conversation is never cut by one, unless it says `priority` (then
// the conversation ends and the priority text goes before every other
// waiting one). At most MAX_WAITING wait; one more is refused with an error
// (the caller says so to whoever sent it). Nothing waiting is dropped while
// the daemon runs, except by `stop` (src/daemon.ts), which drops them and
// says how many. One that cannot be said (no network, the Live API refuses)
// is reported as failed and not tried again: a stale "the washing is done"
// an hour later helps nobody. Muted: an announcement is said (the microphone
// stays off); a question is said as an announcement and reported as
// "muted: not listening".
//
// The decisions about the session itself (the chime, what is sent, when it
// ends) are the conversation's (speak() in src/conversation.ts); this file
// only decides which text goes next, and when.
import { EventEmitter } from 'node:events';
import type { Logger } from './log.js';
import type { Speaker, SpokenOutcome, State } from './ports.js';

export const MAX_WAITING = 16;
/** The longest text, in characters (2 KiB of ASCII). */
export const MAX_TEXT_CHARS = 2048;

export type SayKind = 'announce' | 'ask';
export interface SayRequest { kind: SayKind; text: string; priority?: boolean; from: string }
export interface SayItem extends SayRequest { id: number }
/** What became of one: said, failed (reason), cut (by a press, mute, stop...), dropped (stop), or a note (muted: not listening). */
export interface SayReport { id: number; kind: SayKind; outcome: SpokenOutcome | 'dropped' | 'not-listening'; detail: string; from: string }

export class AnnounceQueue extends EventEmitter {
  private readonly waiting: SayItem[] = [];
  private current: SayItem | null = null;
  private nextId = 1;
  private pumpQueued = false;
  readonly counters = { queued: 0, spoken: 0, failed: 0, cut: 0, refused: 0, dropped: 0 };

  constructor(private readonly speaker: Speaker, private readonly log: Logger, private readonly max = MAX_WAITING) {
    super();
    speaker.on('state', (to: State) => { if (to === 'idle' || to === 'muted' || to === 'error') this.schedulePump(); });
    speaker.on('spoken', (id: number, outcome: SpokenOutcome, detail: string) => {
      const c = this.current;
      if (!c || c.id !== id) return;
      this.current = null;
      this.counters[outcome === 'spoken' ? 'spoken' : outcome === 'failed' ? 'failed' : 'cut']++;
      this.report({ id, kind: c.kind, outcome, detail, from: c.from });
      this.schedulePump();
    });
  }

  /** Queue one; throws (nothing queued) when the text is empty or too long, or MAX_WAITING already wait. */
  add(req: SayRequest): SayItem {
    const text = req.text.trim();
    if (!text) { this.counters.refused++; throw new Error(`${req.kind}: the text is empty`); }
    if (text.length > MAX_TEXT_CHARS) { this.counters.refused++; throw new Error(`${req.kind}: the text is ${text.length} characters, more than ${MAX_TEXT_CHARS}`); }
    if (this.waiting.length >= this.max) {
      this.counters.refused++;
      throw new Error(`${req.kind} refused: ${this.waiting.length} announcements are already waiting (at most ${this.max})`);
    }
    const item: SayItem = { ...req, text, id: this.nextId++ };
    if (item.priority) {
      const at = this.waiting.findIndex((w) => !w.priority); // after the other priority ones, before the rest
      this.waiting.splice(at < 0 ? this.waiting.length : at, 0, item);
    } else this.waiting.push(item);
    this.counters.queued++;
    this.log.info({ id: item.id, kind: item.kind, priority: item.priority === true, from: item.from, waiting: this.waiting.length, chars: text.length }, `${item.kind} queued`);
    // A priority one ends a conversation the user is having (not another announcement being said).
    if (item.priority && this.speaker.inConversation && !this.current) this.speaker.end(`interrupted by a priority ${item.kind}`);
    this.schedulePump();
    return item;
  }

  /** Drop everything waiting (stop); each is reported. The one being said is the caller's to cut. */
  clear(why: string): number {
    const dropped = this.waiting.splice(0);
    for (const d of dropped) { this.counters.dropped++; this.report({ id: d.id, kind: d.kind, outcome: 'dropped', detail: why, from: d.from }); }
    return dropped.length;
  }

  get status() { return { waiting: this.waiting.length, max: this.max, current: this.current ? { id: this.current.id, kind: this.current.kind } : null, ...this.counters }; }

  private report(r: SayReport): void {
    this.emit('report', r);
  }

  private schedulePump(): void {
    if (this.pumpQueued) return;
    this.pumpQueued = true;
    setImmediate(() => { this.pumpQueued = false; this.pump(); });
  }

  /** The next one, if nothing is being said and no conversation is open. */
  private pump(): void {
    if (this.current || this.waiting.length === 0 || this.speaker.inConversation) return;
    const s = this.speaker.state;
    if (s !== 'idle' && s !== 'muted' && s !== 'error') return;
    const item = this.waiting.shift()!;
    const listen = item.kind === 'ask' && !this.speaker.muted;
    if (item.kind === 'ask' && !listen) {
      this.log.info({ id: item.id }, 'muted: the question is said as an announcement; not listening for the answer');
      this.report({ id: item.id, kind: item.kind, outcome: 'not-listening', detail: 'muted: not listening', from: item.from });
    }
    this.current = item;
    if (!this.speaker.speak(item.id, item.text, listen)) { this.current = null; this.waiting.unshift(item); }
  }
}
