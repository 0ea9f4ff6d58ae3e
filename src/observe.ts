// Observability (issue 12): what the conversation did, for people and tools.
// - transcripts (log.transcripts: true only): one "heard" and one "said" line
//   per turn in the journal;
// - token usage (the server's usageMetadata): summed per conversation and
//   logged at its end, totals since start for `ctl status`;
// - `ctl watch`: JSON lines to every watcher on the control socket: state
//   changes, transcripts (only with log.transcripts), tool calls and
//   cancellations (events 'tool' / 'tool-cancelled' on the conversation),
//   errors and per-conversation usage.
// Nothing here decides anything; it only listens to the conversation.
import type { EventEmitter } from 'node:events';
import { createConnection } from 'node:net';
import type { Logger } from './log.js';
import type { State, TurnText, UsageCounts } from './ports.js';

export interface UsageTotals {
  conversations: number; // conversations that ended (with or without usage reported)
  messages: number; // usageMetadata messages received
  promptTokens: number; responseTokens: number; totalTokens: number;
  cachedTokens: number; toolUsePromptTokens: number; thoughtsTokens: number;
}

const zero = (): UsageTotals => ({ conversations: 0, messages: 0, promptTokens: 0, responseTokens: 0, totalTokens: 0, cachedTokens: 0, toolUsePromptTokens: 0, thoughtsTokens: 0 });
const ACTIVE: ReadonlySet<State> = new Set(['connecting', 'listening', 'thinking', 'speaking', 'follow-up']);
/**
 * A watcher that has this much unread is too slow: it is dropped (its
 * connection destroyed, with what was queued for it) rather than let the
 * daemon buffer without bound. An event is a few hundred bytes: this is
 * hundreds of events, far more than a reader that keeps up ever leaves.
 */
export const MAX_UNREAD = 256 * 1024;

interface Watched extends EventEmitter { state: State; lastError: { message: string; permanent: boolean } | null }
interface Watcher { send(line: string): boolean; drop(): void }

export class Observer {
  readonly usage: UsageTotals = zero();
  private current: UsageTotals | null = null; // the conversation in progress
  private readonly watchers = new Set<Watcher>();

  constructor(private readonly conv: Watched, private readonly log: Logger, private readonly transcripts: () => boolean) {
    conv.on('state', (to: State, from: State) => this.state(to, from));
    conv.on('usage', (u: UsageCounts) => this.add(u));
    conv.on('transcript', (t: TurnText) => this.transcript(t));
    // Emitted by the tools (issue 12, function calling). The arguments, result and error text may hold what was
    // said: only with log.transcripts; otherwise name, id, ok, ms and the error's class.
    conv.on('tool', (e: { name: string; id: string; ok: boolean; ms: number; errorClass?: string }) => this.broadcast(this.transcripts()
      ? { type: 'tool', ...e }
      : { type: 'tool', name: e.name, id: e.id, ok: e.ok, ms: e.ms, ...(e.ok ? {} : { errorClass: e.errorClass ?? 'error' }) }));
    conv.on('tool-cancelled', (e: object) => this.broadcast({ type: 'tool-cancelled', ...e }));
  }

  /** A new `ctl watch` client (`drop` closes its connection at once); returns what to call when it goes away. */
  watch(send: (line: string) => boolean, drop: () => void): () => void {
    const w: Watcher = { send, drop };
    this.watchers.add(w);
    this.deliver(w, { type: 'watching', state: this.conv.state, transcripts: this.transcripts() });
    return () => { this.watchers.delete(w); };
  }

  get watcherCount(): number { return this.watchers.size; }

  /** Daemon shutdown: close every watch so the socket server can close. */
  closeWatchers(): void {
    for (const w of [...this.watchers]) { this.watchers.delete(w); try { w.drop(); } catch { /* gone */ } }
  }

  private state(to: State, from: State): void {
    if (!ACTIVE.has(from) && ACTIVE.has(to)) this.current = zero();
    this.broadcast({ type: 'state', from, to });
    if (to === 'error' && this.conv.lastError) this.broadcast({ type: 'error', message: this.conv.lastError.message, permanent: this.conv.lastError.permanent });
    if (ACTIVE.has(from) && !ACTIVE.has(to) && this.current) {
      const c = this.current;
      this.current = null;
      this.usage.conversations++;
      const { conversations: _n, ...tokens } = c;
      this.log.info({ usage: tokens }, 'conversation usage (tokens, as the server reported them)');
      this.broadcast({ type: 'usage', ...tokens });
    }
  }

  private add(u: UsageCounts): void {
    const n = (v: number | undefined) => (typeof v === 'number' && Number.isFinite(v) && v > 0 ? v : 0);
    for (const t of [this.usage, this.current]) {
      if (!t) continue;
      t.messages++;
      t.promptTokens += n(u.promptTokenCount);
      t.responseTokens += n(u.responseTokenCount);
      t.totalTokens += n(u.totalTokenCount);
      t.cachedTokens += n(u.cachedContentTokenCount);
      t.toolUsePromptTokens += n(u.toolUsePromptTokenCount);
      t.thoughtsTokens += n(u.thoughtsTokenCount);
    }
    this.log.debug({ usage: u }, 'usage from the Live API');
  }

  private transcript(t: TurnText): void {
    if (!this.transcripts()) return; // not asked for: never logged, never shown (privacy)
    if (t.heard) this.log.info({ heard: t.heard }, 'heard');
    if (t.said) this.log.info({ said: t.said, ...(t.interrupted ? { interrupted: true } : {}) }, 'said');
    this.broadcast({ type: 'transcript', heard: t.heard, said: t.said, ...(t.interrupted ? { interrupted: true } : {}) });
  }

  private broadcast(event: Record<string, unknown>): void {
    for (const w of [...this.watchers]) this.deliver(w, event);
  }

  private deliver(w: Watcher, event: Record<string, unknown>): void {
    let ok = false;
    try { ok = w.send(JSON.stringify({ at: new Date().toISOString(), ...event })); } catch { ok = false; }
    if (!ok) { this.watchers.delete(w); try { w.drop(); } catch { /* gone */ } }
  }
}

/**
 * The server side of one watcher on a control-socket connection: writes lines
 * while the client keeps up; false (drop it) when it has gone or fallen
 * behind (`onSlow` is told how far, once).
 */
export function socketSender(sock: { destroyed: boolean; writableLength: number; write(s: string): boolean }, onSlow?: (unreadBytes: number) => void): (line: string) => boolean {
  return (line) => {
    if (sock.destroyed) return false;
    if (sock.writableLength > MAX_UNREAD) { onSlow?.(sock.writableLength); return false; }
    sock.write(line + '\n');
    return true;
  };
}

/** `live-speaker ctl watch`: print each event line until the daemon closes the stream. */
export function controlWatch(path: string, onLine: (line: string) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    let first = true;
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify({ cmd: 'watch' }) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        if (first) {
          first = false;
          const answer = JSON.parse(line) as { ok: boolean; error?: string };
          if (!answer.ok) { sock.destroy(); reject(new Error(answer.error)); return; }
          continue;
        }
        onLine(line);
      }
    });
    sock.on('close', () => resolve());
    sock.on('error', (e: NodeJS.ErrnoException) => {
      const hint = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? ' (is live-speaker running?)' : e.code === 'EACCES' ? ' (run as root or as a member of the live-speaker-ctl group)' : '';
      reject(new Error(`cannot reach ${path}: ${e.code ?? e.message}${hint}`));
    });
  });
}
