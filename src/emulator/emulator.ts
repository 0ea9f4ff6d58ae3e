/**
 * A loopback emulator of the Gemini Live API (BidiGenerateContent over a
 * WebSocket) that the real @google/genai SDK talks to when its baseUrl points
 * here. Used by the daemon's keyless "parrot" mode (it repeats what it heard),
 * by `live-speaker emulator`, and by tests/benchmarks that script replies.
 *
 * What it reproduces from the service (the Live API WebSocket protocol, BidiGenerateContent, as Google documents it):
 * setup/setupComplete, server-side VAD turn detection on the received audio,
 * streamed 24 kHz modelTurn audio chunks, generationComplete/turnComplete,
 * barge-in ("interrupted"), session resumption handles, close codes for bad
 * keys, bad first frames and unknown models, input/output transcription and
 * usageMetadata per turn, function calls (toolCall, toolCallCancellation)
 * and their toolResponses. Turn detection runs on sample positions, not on
 * arrival time, so tests may send audio faster than real time.
 *
 * This file is the entry: LiveEmulator (the HTTP/WebSocket server, its
 * sessions, events and shutdown) and every public name. The rooms:
 *   options.ts   EmulatorOptions and their defaults
 *   protocol.ts  the wire: rates, close reasons, client frame parsing, every server message
 *   session.ts   one connection: setup handshake, message dispatch, what tests read
 *   turns.ts     received audio, VAD / client activity, barge-in, utterances
 *   reply.ts     the model's turn: paced audio chunks, transcription, usage, turnComplete
 *   tools.ts     toolCall / toolCallCancellation / toolResponse, the parrot's tool tones
 *   parrot.ts    parrot mode: says each utterance back (or calls a tool first)
 */
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocketServer, WebSocket } from 'ws';
import { resolveOptions, type EmulatorOptions, type ResolvedOptions } from './options.js';
import { BAD_KEY_REASON, upgradeKey } from './protocol.js';
import { Session, type EmulatedSession } from './session.js';

export type { EmulatorOptions } from './options.js';
export { BAD_KEY_REASON, INPUT_RATE, OUTPUT_RATE } from './protocol.js';
export type { EmulatedSession, Utterance } from './session.js';
export type { ReplyResult, SendAudioOptions } from './reply.js';
export { PARROT_TOOL_TONES, type EmulatedCall, type ToolTone } from './tools.js';
export { UTTERANCE_PAD_MS } from './turns.js';

/**
 * Events (all with the session first): 'session'(s) after setup,
 * 'speech-start'(s, atByte), 'utterance'(s, u), 'interrupted'(s, atMs, atByte),
 * 'reply-start'(s, atMs), 'reply-chunk'(s, atMs, bytes), 'reply-end'(s, result),
 * 'message'(s, msg) for non-audio client messages, 'close'(s, code, reason),
 * 'tool-call'(s, functionCalls) and 'tool-response'(s, functionResponse)
 * (tools, issue 12), 'rejected'(key) for refused keys, 'model-rejected'(model) for a model not in
 * knownModels, and 'usage'(s, usageMetadata) for each usage message sent. atMs values are Date.now().
 */
export class LiveEmulator extends EventEmitter {
  sessions: EmulatedSession[] = [];
  /** Every setup message received, in order, including those refused (unknown model). */
  setups: any[] = [];
  connections = 0;
  /** An outage that still accepts TCP: every new WebSocket is dropped at once, before its setup (tests). */
  dropNewConnections = false;
  readonly port: number;
  readonly url: string;

  private readonly server: http.Server;
  private readonly wss: WebSocketServer;
  private readonly opts: ResolvedOptions;
  private readonly sockets = new Set<WebSocket>();
  private nextId = 1;
  private closing: Promise<void> | null = null;

  private constructor(server: http.Server, wss: WebSocketServer, opts: ResolvedOptions, host: string) {
    super();
    this.server = server;
    this.wss = wss;
    this.opts = opts;
    this.port = (server.address() as AddressInfo).port;
    const urlHost = ['0.0.0.0', '::', 'localhost', '127.0.0.1'].includes(host) ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
    this.url = `http://${urlHost}:${this.port}`;
  }

  static async start(options: EmulatorOptions = {}): Promise<LiveEmulator> {
    const opts = resolveOptions(options);
    const host = options.host ?? '127.0.0.1';
    // Plain HTTP requests get 404 like an unknown path would.
    const server = http.createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('Not Found\n');
    });
    const wss = new WebSocketServer({ noServer: true });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port ?? 0, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const emu = new LiveEmulator(server, wss, opts, host);
    server.on('upgrade', (req, socket, head) => emu.onUpgrade(req, socket, head));
    opts.log('listening', { url: emu.url });
    return emu;
  }

  /**
   * Resolves with the event's arguments the next time `event` fires and
   * `pred` (if given) accepts them; rejects after timeoutMs (default 5000).
   * Only future events count: call it before triggering what it waits for.
   */
  waitFor(event: string, pred?: (...args: any[]) => boolean, timeoutMs = 5000): Promise<any[]> {
    return new Promise((resolve, reject) => {
      const onEvent = (...args: any[]): void => {
        let ok: boolean;
        try {
          ok = pred ? pred(...args) : true;
        } catch (err) {
          cleanup();
          reject(err);
          return;
        }
        if (ok) {
          cleanup();
          resolve(args);
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`LiveEmulator.waitFor('${event}'${pred ? ', <predicate>' : ''}) timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = (): void => {
        clearTimeout(timer);
        this.off(event, onEvent);
      };
      this.on(event, onEvent);
    });
  }

  /** Close every session (1001), then the server. Leaves no handles open. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const open = [...this.sockets];
    const allClosed = Promise.all(
      open.map((ws) => new Promise<void>((resolve) => (ws.readyState === WebSocket.CLOSED ? resolve() : ws.once('close', () => resolve())))),
    );
    for (const ws of open) ws.close(1001, 'Emulator shutting down');
    // A client that never answers the close frame must not hold us up.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([allClosed, new Promise<void>((r) => (timer = setTimeout(r, 500)))]);
    clearTimeout(timer);
    for (const ws of this.sockets) ws.terminate();
    await new Promise<void>((resolve) => this.wss.close(() => resolve()));
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    // libuv releases the listening handle in its close phase, after the
    // 'close' callback: let two turns pass so callers that check for open
    // handles right after `await close()` see none.
    for (let i = 0; i < 2; i++) await new Promise<void>((r) => setImmediate(r));
    this.opts.log('closed');
  }

  /** @internal called by a session once its setup arrived. */
  addSession(s: EmulatedSession): void {
    this.sessions.push(s);
    this.emit('session', s);
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    const { path, key } = upgradeKey(req);
    if (this.closing || key === null) {
      this.opts.log('rejected upgrade', { path });
      socket.end('HTTP/1.1 404 Not Found\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      socket.destroy();
      return;
    }
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, key));
  }

  /** WebSockets open right now (with or without a session). */
  get openConnections(): number { return this.sockets.size; }

  private onConnection(ws: WebSocket, key: string): void {
    this.connections++;
    this.sockets.add(ws);
    ws.on('close', () => this.sockets.delete(ws));
    ws.on('error', (err) => this.opts.log('socket error', { error: String(err) }));
    if (this.dropNewConnections) { ws.terminate(); return; }
    if (!this.opts.acceptKey(key)) {
      // The service accepts the WebSocket, then closes it with a policy error.
      this.opts.log('rejected key', { key });
      this.emit('rejected', key);
      ws.close(1008, BAD_KEY_REASON);
      return;
    }
    const s = new Session(this.nextId++, key, ws, this, this.opts);
    ws.on('message', (data) => s.onFrame(data));
    ws.on('close', (code, reason) => {
      s.onClosed(code, reason.toString('utf8'));
      this.pruneClosed();
    });
  }

  private pruneClosed(): void {
    const closed = this.sessions.filter((s) => s.closed);
    let excess = closed.length - this.opts.keepClosedSessions;
    if (excess <= 0) return;
    this.sessions = this.sessions.filter((s) => !(s.closed && excess-- > 0));
  }
}
