// Announcements and questions from the home (issue 24): `announce TEXT` and
// `ask TEXT`, from MQTT (src/mqtt/link.ts) or `live-speaker ctl`. They are
// said one at a time, in the order they came, each once no conversation is
// open: a conversation is never cut by one, unless it says `priority` (then
// the conversation ends and the priority text goes before every other
// waiting one). At most MAX_WAITING wait; one more is refused with an error
// (the caller says so to whoever sent it). Nothing waiting is dropped while
// the daemon runs, except by `stop` (src/daemon.ts), which drops them and
// says how many. One that cannot be said (no network, the Live API refuses)
// is reported as failed and kept at the head of the queue: the queue holds
// for RETRY_MS (30 s, then 2 min, then 5 min) and it is tried again, the
// chime each time, up to four tries in about 8 minutes; then it is given up
// (reported so): "the washing is done" said when the network is back, but
// not an hour later, and never sixteen error sounds back to back. Muted: an announcement is said (the microphone
// stays off); a question is said as an announcement and reported as
// "muted: not listening".
//
// The decisions about the session itself (the chime, what is sent, when it
// ends) are the conversation's (speak() in src/conversation.ts); this file
// only decides which text goes next, and when.
import { EventEmitter } from 'node:events';
import type { Logger } from './log.js';
import { monotonicMs } from './clock.js';
import type { Speaker, SpokenOutcome, State } from './ports.js';

export const MAX_WAITING = 16;
/** The longest text, in characters (2 KiB of ASCII). */
export const MAX_TEXT_CHARS = 2048;
/** After a failed try, the queue holds this long before the same one is tried again; after the last, it is given up. */
export const RETRY_MS = [30_000, 120_000, 300_000];

export type SayKind = 'announce' | 'ask';
export interface SayRequest { kind: SayKind; text: string; priority?: boolean; from: string }
export interface SayItem extends SayRequest { id: number; tries: number }
/** What became of one: said, failed (reason), cut (by a press, mute, stop...), dropped (stop), or a note (muted: not listening). */
export interface SayReport { id: number; kind: SayKind; outcome: SpokenOutcome | 'dropped' | 'not-listening'; detail: string; from: string }

export class AnnounceQueue extends EventEmitter {
  private readonly waiting: SayItem[] = [];
  private current: SayItem | null = null;
  private nextId = 1;
  private pumpQueued = false;
  private holdUntil = 0; // monotonic ms: after a failed try, nothing is said before this
  private holdTimer: NodeJS.Timeout | null = null;
  readonly counters = { queued: 0, spoken: 0, failed: 0, cut: 0, refused: 0, dropped: 0 };

  constructor(private readonly speaker: Speaker, private readonly log: Logger, private readonly max = MAX_WAITING, private readonly retryMs = RETRY_MS) {
    super();
    speaker.on('state', (to: State) => { if (to === 'idle' || to === 'muted' || to === 'error') this.schedulePump(); });
    speaker.on('spoken', (id: number, outcome: SpokenOutcome, detail: string) => {
      const c = this.current;
      if (!c || c.id !== id) return;
      this.current = null;
      this.counters[outcome === 'spoken' ? 'spoken' : outcome === 'failed' ? 'failed' : 'cut']++;
      if (outcome === 'failed' && c.tries <= this.retryMs.length) {
        // Kept at the head; the queue holds, then the same one is tried again.
        const wait = this.retryMs[c.tries - 1];
        this.waiting.unshift(c);
        this.hold(wait);
        this.report({ id, kind: c.kind, outcome, detail: `${detail}; trying again in ${Math.round(wait / 1000)} s (try ${c.tries} of ${this.retryMs.length + 1})`, from: c.from });
        return;
      }
      this.report({ id, kind: c.kind, outcome, detail: outcome === 'failed' && c.tries > 1 ? `${detail}; given up after ${c.tries} tries` : detail, from: c.from });
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
    const item: SayItem = { ...req, text, id: this.nextId++, tries: 0 };
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
    this.hold(0);
    for (const d of dropped) { this.counters.dropped++; this.report({ id: d.id, kind: d.kind, outcome: 'dropped', detail: why, from: d.from }); }
    return dropped.length;
  }

  get status() {
    const held = this.holdUntil - monotonicMs();
    return { waiting: this.waiting.length, max: this.max, current: this.current ? { id: this.current.id, kind: this.current.kind } : null, retryInS: held > 0 ? Math.ceil(held / 1000) : null, ...this.counters };
  }

  /** Nothing is said for `ms` (0: the hold is lifted); then the queue goes on. */
  private hold(ms: number): void {
    if (this.holdTimer) { clearTimeout(this.holdTimer); this.holdTimer = null; }
    this.holdUntil = ms > 0 ? monotonicMs() + ms : 0;
    if (ms > 0) { this.holdTimer = setTimeout(() => { this.holdTimer = null; this.holdUntil = 0; this.schedulePump(); }, ms); this.holdTimer.unref(); }
  }

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
    if (this.current || this.waiting.length === 0 || this.speaker.inConversation || this.holdUntil > 0) return;
    const s = this.speaker.state;
    if (s !== 'idle' && s !== 'muted' && s !== 'error') return;
    const item = this.waiting.shift()!;
    item.tries++;
    const listen = item.kind === 'ask' && !this.speaker.muted;
    if (item.kind === 'ask' && !listen && item.tries === 1) {
      this.log.info({ id: item.id }, 'muted: the question is said as an announcement; not listening for the answer');
      this.report({ id: item.id, kind: item.kind, outcome: 'not-listening', detail: 'muted: not listening', from: item.from });
    }
    this.current = item;
    if (!this.speaker.speak(item.id, item.text, listen)) { this.current = null; item.tries--; this.waiting.unshift(item); }
  }
}
