// The local control socket: one JSON request per line, one JSON answer per
// line. `live-speaker ctl ...` is its client. Permissions come from the
// socket file's mode and group (root and the live-speaker-ctl group only).
import { createServer, createConnection, type Server } from 'node:net';
import { chmodSync, existsSync, mkdirSync, unlinkSync } from 'node:fs';
import { dirname } from 'node:path';
import { socketSender } from './observe.js';

/** `volume`: `value` is a percent, `up` or `down`. */
export type ControlRequest = { cmd: 'press' | 'mute' | 'unmute' | 'status' } | { cmd: 'volume'; value: string };
export type ControlHandler = (req: ControlRequest) => unknown;
/** `watch` (issue 12): the connection stays open and gets event lines; `send` false = drop it. Returns the unsubscribe. */
export type WatchHandler = (send: (line: string) => boolean, end: () => void) => () => void;

const COMMANDS = new Set(['press', 'mute', 'unmute', 'status', 'volume']);

export async function startControlServer(path: string, mode: number, handle: ControlHandler, watch?: WatchHandler): Promise<Server> {
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
  const server = createServer((sock) => {
    let buf = '';
    sock.setEncoding('utf8');
    sock.on('error', () => { /* client went away */ });
    let watching = false;
    sock.on('data', (d: string) => {
      if (watching) return; // a watcher only listens
      buf += d;
      if (buf.length > 4096) { sock.destroy(); return; }
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        let answer: unknown;
        try {
          const req = JSON.parse(line) as ControlRequest | { cmd: 'watch' };
          // ---- watch (issue 12): same socket, same permissions; many at once; one that goes away is dropped.
          if (req?.cmd === 'watch' && watch) {
            watching = true;
            sock.write(JSON.stringify({ ok: true, result: { watching: true } }) + '\n');
            sock.once('close', watch(socketSender(sock), () => sock.end()));
            return;
          }
          if (!COMMANDS.has(req?.cmd) || req.cmd === 'watch') throw new Error(`unknown command '${String(req?.cmd)}' (known: ${[...COMMANDS].join(', ')})`);
          answer = { ok: true, result: handle(req) };
        } catch (e) {
          answer = { ok: false, error: (e as Error).message };
        }
        sock.write(JSON.stringify(answer) + '\n');
      }
    });
  });
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
