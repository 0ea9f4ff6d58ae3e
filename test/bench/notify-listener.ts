// A systemd notification socket for tests: a python3 listener binds a unix
// datagram socket (Node's dgram cannot) and reports each datagram as a JSON
// line, with the sender's pid from SCM_CREDENTIALS where python has it
// (what systemd checks for NotifyAccess=main). Give its path to a process
// as NOTIFY_SOCKET.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { jsonLines } from './lines.js';

const LISTENER = String.raw`
import json, socket, struct, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\0' + addr[1:] if addr.startswith('@') else addr)
creds = hasattr(socket, 'SO_PASSCRED') and hasattr(socket, 'SCM_CREDENTIALS')
if creds:
    s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
print(json.dumps({'listening': True}), flush=True)
while True:
    data, anc, _, _ = s.recvmsg(65536, socket.CMSG_SPACE(12))
    pid = None
    for level, kind, d in anc:
        if creds and level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
            pid = struct.unpack('iII', d[:12])[0]
    print(json.dumps({'msg': data.decode(), 'pid': pid}), flush=True)
`;
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

/** One datagram, with its sender's pid (null where SCM_CREDENTIALS is not available). */
export interface Datagram { msg: string; pid: number | null }

export class NotifyListener {
  /** Every datagram's text, in order. */
  readonly got: string[] = [];
  /** The same datagrams, with their senders' pids. */
  readonly datagrams: Datagram[] = [];
  private waiters: (() => void)[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async start(addr: string): Promise<NotifyListener> {
    const child = spawn(PYTHON, ['-u', '-c', LISTENER, addr], { stdio: ['ignore', 'pipe', 'pipe'] });
    const l = new NotifyListener(child);
    let err = '';
    child.stderr!.on('data', (d) => { err += d; });
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`notify listener did not start: ${err}`)), 5000);
      jsonLines(child.stdout!, (o: { listening?: boolean; msg?: string; pid?: number | null }) => {
        if (o.listening) { clearTimeout(t); res(); return; }
        l.got.push(o.msg ?? '');
        l.datagrams.push({ msg: o.msg ?? '', pid: o.pid ?? null });
        for (const w of l.waiters.splice(0)) w();
      });
      child.on('exit', (code) => { clearTimeout(t); rej(new Error(`notify listener exited ${code}: ${err}`)); });
    });
    return l;
  }

  /** The first datagram from index `from` on that `pred` accepts; rejects after timeoutMs. */
  async waitFor(pred: (msg: string) => boolean, timeoutMs = 5000, from = 0): Promise<string> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      const hit = this.got.slice(from).find(pred);
      if (hit !== undefined) return hit;
      if (Date.now() > until) throw new Error(`no matching notification within ${timeoutMs} ms; got ${JSON.stringify(this.got)}`);
      await new Promise<void>((res) => { this.waiters.push(res); setTimeout(res, 50); });
    }
  }

  /** Once `n` datagrams have come, all of them; rejects after timeoutMs. */
  async waitCount(n: number, timeoutMs = 3000): Promise<Datagram[]> {
    const until = Date.now() + timeoutMs;
    while (this.datagrams.length < n) {
      if (Date.now() > until) throw new Error(`expected ${n} datagrams within ${timeoutMs} ms, got ${JSON.stringify(this.datagrams)}`);
      await new Promise<void>((res) => { this.waiters.push(res); setTimeout(res, 50); });
    }
    return this.datagrams;
  }

  stop(): void { this.child.kill(); }
}
