// The local control socket: one JSON request per line, one JSON answer per
// line. `live-speaker ctl ...` is its client. Permissions come from the
// socket file's mode and group (root and the live-speaker-ctl group only).
//
// Bounds (issue 25): nothing a client does can make the daemon hold more than
// a few hundred KiB for it. A request line is at most LIMITS.maxLine
// characters (a longer one, ended or not, is answered with an error and the
// connection closed); a client's requests are no longer read while more than
// LIMITS.highWater of its answers wait unread (a client that sends without
// reading stalls itself); at most LIMITS.maxClients connections at once (the
// next is answered with an error and closed); a connection with nothing read
// or written for LIMITS.idleMs is closed (a watcher is exempt: it only
// listens); a `ctl watch` client that falls MAX_UNREAD behind is destroyed
// (src/observe.ts). Every refusal is logged once, at most 20 lines in 10 s:
// past that they are counted and the count is logged at the end of the 10 s.
import { createServer, createConnection, type Server, type Socket } from 'node:net';
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import type { Logger } from './log.js';
import { MAX_UNREAD, socketSender } from './observe.js';

/** `volume`: `value` is a percent, `up` or `down`. `announce`, `ask` (issue 24): the text to say; `priority` interrupts a conversation. */
export type ControlRequest = { cmd: 'press' | 'mute' | 'unmute' | 'status' | 'stop' } | { cmd: 'volume'; value: string } | { cmd: 'announce' | 'ask'; text: string; priority?: boolean };
export type ControlHandler = (req: ControlRequest) => unknown;
/** `watch` (issue 12): the connection stays open and gets event lines; `send` false = drop it, `drop` destroys the connection. Returns the unsubscribe. */
export type WatchHandler = (send: (line: string) => boolean, drop: () => void) => () => void;

export const LIMITS = {
  maxLine: 4096, // characters in one request line
  maxClients: 32, // connections open at once (watchers included)
  idleMs: 10_000, // a connection that neither sends nor takes anything for this long is closed
  highWater: 64 * 1024, // bytes of a client's unread answers before its requests are no longer read
  logBurst: 20, logWindowMs: 10_000, // refusals logged one by one per window; the rest counted
};

const COMMANDS = ['press', 'mute', 'unmute', 'status', 'volume', 'watch', 'announce', 'ask', 'stop'] as const;
const Request = z.discriminatedUnion('cmd', [
  z.object({ cmd: z.enum(['press', 'mute', 'unmute', 'status', 'watch', 'stop']) }),
  z.object({ cmd: z.literal('volume'), value: z.string().max(16) }),
  z.object({ cmd: z.enum(['announce', 'ask']), text: z.string().max(2048), priority: z.boolean().optional() }), // MAX_TEXT_CHARS (src/announce.ts)
]);

/** The request on a line, or what is wrong with it (in words a person can act on). */
function parseRequest(line: string): ControlRequest | { cmd: 'watch' } | { error: string } {
  let v: unknown;
  try { v = JSON.parse(line); } catch (e) { return { error: `not JSON (${(e as Error).message}); a request is one JSON object per line, e.g. {"cmd":"status"}` }; }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return { error: 'a request is a JSON object with a "cmd", e.g. {"cmd":"status"}' };
  const cmd = (v as { cmd?: unknown }).cmd;
  if (typeof cmd !== 'string' || !(COMMANDS as readonly string[]).includes(cmd)) {
    const shown = typeof cmd === 'string' ? `'${cmd.slice(0, 40)}'` : cmd === undefined ? 'none' : `a ${Array.isArray(cmd) ? 'array' : cmd === null ? 'null' : typeof cmd}`;
    return { error: `unknown command ${shown} (known: ${COMMANDS.join(', ')})` };
  }
  const r = Request.safeParse(v);
  if (r.success) return r.data;
  const i = r.error.issues[0];
  return { error: `${cmd}: ${i.path.length ? `'${i.path.join('.')}' ` : ''}${i.message}` };
}

/** What a client sent, short enough for the journal. */
const preview = (line: string) => (line.length > 80 ? `${line.slice(0, 80)}... (${line.length} characters)` : line);

/** Warnings about clients, at most LIMITS.logBurst per window; the rest counted and the count logged when the window ends. */
function limitedWarn(log: Logger | undefined) {
  let n = 0;
  let notLogged = 0;
  let window: NodeJS.Timeout | null = null;
  return (obj: Record<string, unknown>, msg: string) => {
    if (!log) return;
    if (!window) {
      window = setTimeout(() => {
        if (notLogged) log.warn({ notLogged }, `control clients: ${notLogged} more refusals in ${LIMITS.logWindowMs / 1000} s, not logged one by one`);
        n = 0; notLogged = 0; window = null;
      }, LIMITS.logWindowMs);
      window.unref();
    }
    if (n++ < LIMITS.logBurst) log.warn(obj, msg); else notLogged++;
  };
}

/** The control server; `clients` and `counters` are for `ctl status`. close() also destroys every open connection. */
export interface ControlServer extends Server {
  readonly clients: number;
  readonly counters: { badRequests: number; refusedConnections: number; idleClosed: number; watchersDropped: number };
}

export async function startControlServer(path: string, mode: number, handle: ControlHandler, watch?: WatchHandler, log?: Logger): Promise<ControlServer> {
  mkdirSync(dirname(path), { recursive: true, mode: 0o750 });
  if (existsSync(path)) {
    // A socket left by a daemon that died: reuse the path only if nobody answers on it.
    const alive = await new Promise<boolean>((res) => {
      const c = createConnection(path, () => { c.destroy(); res(true); });
      c.on('error', () => res(false));
    });
    if (alive) throw new Error(`another live-speaker is already running (control socket ${path} answers)`);
    unlinkSync(path);
  }
  const clients = new Set<Socket>();
  const counters = { badRequests: 0, refusedConnections: 0, idleClosed: 0, watchersDropped: 0 };
  const warn = limitedWarn(log);
  /** An error answer, then the connection closed (destroyed if the client does not take the answer within 1 s). */
  const closeWith = (sock: Socket, error: string) => {
    sock.end(JSON.stringify({ ok: false, error }) + '\n');
    setTimeout(() => sock.destroy(), 1000).unref();
  };

  const server = createServer((sock) => {
    sock.on('error', () => { /* client went away */ });
    if (clients.size >= LIMITS.maxClients) {
      counters.refusedConnections++;
      warn({ open: clients.size }, `control connection refused: too many connections (${LIMITS.maxClients} open, the most allowed)`);
      closeWith(sock, `too many control connections (${LIMITS.maxClients} open, the most allowed); try again later`);
      return;
    }
    clients.add(sock);
    sock.on('close', () => clients.delete(sock));
    sock.setEncoding('utf8');
    let buf = '';
    let watching = false;
    let closing = false;
    let stalled = false; // paused: its unread answers are over the high-water mark

    sock.setTimeout(LIMITS.idleMs);
    sock.on('timeout', () => {
      if (watching || closing) return;
      counters.idleClosed++;
      warn(stalled ? { unreadBytes: sock.writableLength } : {}, stalled
        ? `control client closed: idle ${LIMITS.idleMs / 1000} s, not reading its answers`
        : `control client closed: idle ${LIMITS.idleMs / 1000} s without a request`);
      closing = true;
      sock.destroy();
    });

    const tooLong = (chars: number) => {
      counters.badRequests++;
      warn({ chars }, `control request refused: line longer than ${LIMITS.maxLine} characters (connection closed)`);
      closing = true;
      buf = '';
      closeWith(sock, `request line longer than ${LIMITS.maxLine} characters; connection closed`);
    };

    const answer = (line: string) => {
      const req = parseRequest(line);
      let out: unknown;
      if ('error' in req) {
        counters.badRequests++;
        warn({ error: req.error, line: preview(line) }, 'control request refused: bad request');
        out = { ok: false, error: req.error };
      } else if (req.cmd === 'watch') {
        if (!watch) { out = { ok: false, error: 'watch is not available' }; } else {
          // ---- watch (issue 12): same socket, same permissions; the connection now only listens.
          watching = true;
          buf = '';
          sock.setTimeout(0);
          sock.write(JSON.stringify({ ok: true, result: { watching: true } }) + '\n');
          const send = socketSender(sock, (unread) => {
            counters.watchersDropped++;
            warn({ unreadBytes: unread }, `ctl watch client dropped: it fell ${MAX_UNREAD / 1024} KiB behind (connection closed)`);
          });
          sock.once('close', watch(send, () => sock.destroy()));
          return;
        }
      } else {
        try {
          out = { ok: true, result: handle(req) };
        } catch (e) {
          counters.badRequests++;
          warn({ error: (e as Error).message, line: preview(line) }, 'control request refused: bad request');
          out = { ok: false, error: (e as Error).message };
        }
      }
      sock.write(JSON.stringify(out) + '\n');
    };

    /** Answers the complete lines in `buf` until the client's unread answers pass the high-water mark. */
    const pump = () => {
      for (;;) {
        if (closing || watching || sock.destroyed) return;
        if (sock.writableLength > LIMITS.highWater) {
          // Backpressure: read nothing more from this client until it has taken its answers.
          stalled = true;
          sock.pause();
          sock.once('drain', () => { stalled = false; sock.resume(); pump(); });
          return;
        }
        const nl = buf.indexOf('\n');
        if (nl < 0) { if (buf.length > LIMITS.maxLine) tooLong(buf.length); return; }
        if (nl > LIMITS.maxLine) { tooLong(nl); return; }
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        answer(line);
      }
    };

    sock.on('data', (d: string) => {
      if (watching || closing) return; // a watcher only listens
      buf += d;
      if (!stalled) pump();
    });
  }) as ControlServer;
  Object.defineProperty(server, 'clients', { get: () => clients.size });
  Object.defineProperty(server, 'counters', { value: counters });
  const close = server.close.bind(server);
  server.close = (cb?: (err?: Error) => void) => { for (const s of clients) s.destroy(); return close(cb); };
  await new Promise<void>((res, rej) => { server.once('error', rej); server.listen(path, () => { server.off('error', rej); res(); }); });
  chmodSync(path, mode);
  return server;
}

export function controlRequest(path: string, req: ControlRequest, timeoutMs = 5000): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const sock = createConnection(path);
    let buf = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`no answer from ${path} within ${timeoutMs} ms`)); }, timeoutMs);
    sock.setEncoding('utf8');
    sock.on('connect', () => sock.write(JSON.stringify(req) + '\n'));
    sock.on('data', (d: string) => {
      buf += d;
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      clearTimeout(timer);
      sock.end();
      const answer = JSON.parse(buf.slice(0, nl)) as { ok: boolean; result?: unknown; error?: string };
      if (answer.ok) resolve(answer.result); else reject(new Error(answer.error));
    });
    sock.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      const hint = e.code === 'ENOENT' || e.code === 'ECONNREFUSED' ? ' (is live-speaker running?)' : e.code === 'EACCES' ? ' (run as root or as a member of the live-speaker-ctl group)' : '';
      reject(new Error(`cannot reach ${path}: ${e.code ?? e.message}${hint}`));
    });
  });
}
