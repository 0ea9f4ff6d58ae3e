// A systemd notification socket for tests: a python3 listener binds a unix
// datagram socket (Node's dgram cannot) and reports each datagram as a JSON
// line. Give its path to a process as NOTIFY_SOCKET.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { jsonLines } from './lines.js';

const LISTENER = String.raw`
import json, socket, sys
addr = sys.argv[1]
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind('\0' + addr[1:] if addr.startswith('@') else addr)
print(json.dumps({'listening': True}), flush=True)
while True:
    data = s.recv(65536)
    print(json.dumps({'msg': data.decode()}), flush=True)
`;
const PYTHON = existsSync('/usr/bin/python3') ? '/usr/bin/python3' : 'python3';

export class NotifyListener {
  readonly got: string[] = [];
  private waiters: (() => void)[] = [];
  private constructor(private readonly child: ChildProcess) {}

  static async start(addr: string): Promise<NotifyListener> {
    const child = spawn(PYTHON, ['-u', '-c', LISTENER, addr], { stdio: ['ignore', 'pipe', 'pipe'] });
    const l = new NotifyListener(child);
    let err = '';
    child.stderr!.on('data', (d) => { err += d; });
    await new Promise<void>((res, rej) => {
      const t = setTimeout(() => rej(new Error(`notify listener did not start: ${err}`)), 5000);
      jsonLines(child.stdout!, (o: { listening?: boolean; msg?: string }) => {
        if (o.listening) { clearTimeout(t); res(); return; }
        l.got.push(o.msg ?? '');
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

  stop(): void { this.child.kill(); }
}
