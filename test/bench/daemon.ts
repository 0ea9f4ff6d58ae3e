// Runs the BUILT daemon (dist/src/main.js) as a child process, the way
// systemd does, with a config written for the test and the simulated sound
// card's environment. Helpers wait on its JSON log lines and ctl status.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { controlRequest } from '../../src/control.js';
import { jsonLines } from './lines.js';
import { LiveEmulator, type EmulatorOptions } from '../../src/emulator/emulator.js';

export const MAIN = join(dirname(fileURLToPath(import.meta.url)), '../../src/main.js');
const UNIT = (() => {
  try { return readFileSync(join(dirname(fileURLToPath(import.meta.url)), '../../../systemd/live-speaker.service'), 'utf8'); } catch { return ''; } // a copy of the tree without systemd/ (none of the suite's)
})();
/** Node's flags as the unit's ExecStart gives them (systemd/live-speaker.service: --max-old-space-size, --max-semi-space-size), so tests run the daemon's heap as shipped. */
export const NODE_FLAGS: string[] = /^ExecStart=\/usr\/bin\/node ((?:--[a-z-]+=\S+ )*)/m.exec(UNIT)?.[1].trim().split(/\s+/).filter(Boolean) ?? [];
/** The unit's malloc settings (Environment=MALLOC_...), given to every daemon for the same reason. */
export const UNIT_MALLOC_ENV: Record<string, string> = Object.fromEntries([...UNIT.matchAll(/^Environment=(MALLOC_[A-Z_]+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));

export interface LogLine { level: string; msg: string; [k: string]: unknown }

export interface DaemonOptions {
  config?: Record<string, any>; // merged over the test defaults below
  env?: NodeJS.ProcessEnv;
  rawConfig?: string; // write this text as the config instead
  waitReady?: boolean; // default true
  readyTimeoutMs?: number; // default 15000
  /** Where the config, socket and state go (default: a fresh temp dir); removed by stop(). */
  dir?: string;
  /**
   * How to run it (default: this node, MAIN): given the daemon's arguments
   * (--config FILE), the command and its arguments, e.g. a wrapper that runs
   * another build of the daemon in a root of another architecture. stop()
   * signals that command's process.
   */
  command?: (daemonArgs: string[]) => { cmd: string; args: string[] };
}

export class DaemonProcess {
  readonly logs: LogLine[] = [];
  stderr = '';
  exitCode: number | null = null;
  private waiters: { pred: (l: LogLine) => boolean; resolve: (l: LogLine) => void }[] = [];
  readonly exited: Promise<number | null>;

  private constructor(readonly child: ChildProcess, readonly dir: string, readonly socket: string, readonly configFile: string) {
    jsonLines(child.stdout!, (l: LogLine) => {
      this.logs.push(l);
      this.waiters = this.waiters.filter((w) => (w.pred(l) ? (w.resolve(l), false) : true));
    }, (line) => { this.stderr += `[stdout] ${line}\n`; });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => { this.stderr += d; });
    this.exited = new Promise((res) => child.on('exit', (code) => { this.exitCode = code; res(code); }));
  }

  static async start(opts: DaemonOptions = {}): Promise<DaemonProcess> {
    const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'ls-daemon-'));
    const socket = join(dir, 'control.sock');
    const configFile = join(dir, 'config.yaml');
    const base = {
      control: { socket },
      log: { level: 'debug' },
      state: { dir: join(dir, 'state') }, // each daemon its own: a test that mutes must not mute the next one
    };
    writeFileSync(configFile, opts.rawConfig ?? stringify(deepMerge(base, opts.config ?? {})));
    const env = { ...(opts.env ?? process.env) };
    delete env.GEMINI_API_KEY;
    delete env.GOOGLE_API_KEY;
    const run = opts.command?.(['--config', configFile]) ?? { cmd: process.execPath, args: [...NODE_FLAGS, MAIN, '--config', configFile] };
    const child = spawn(run.cmd, run.args, { env: { ...UNIT_MALLOC_ENV, ...env, ...pick(opts.env, ['GEMINI_API_KEY', 'GOOGLE_API_KEY']) }, stdio: ['ignore', 'pipe', 'pipe'] });
    const d = new DaemonProcess(child, dir, socket, configFile);
    if (opts.waitReady !== false) {
      await Promise.race([
        d.waitLog((l) => l.msg.startsWith('ready'), opts.readyTimeoutMs ?? 15000),
        d.exited.then((code) => { throw new Error(`daemon exited (${code}) before ready: ${d.stderr}${JSON.stringify(d.logs)}`); }),
      ]);
    }
    return d;
  }

  waitLog(pred: (l: LogLine) => boolean, timeoutMs = 10000, what = 'log line'): Promise<LogLine> {
    const seen = this.logs.find(pred);
    if (seen) return Promise.resolve(seen);
    return this.waitNextLog(pred, timeoutMs, what);
  }

  /** Only lines logged from now on. */
  waitNextLog(pred: (l: LogLine) => boolean, timeoutMs = 10000, what = 'log line'): Promise<LogLine> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last logs: ${JSON.stringify(this.logs.slice(-8))}`)), timeoutMs);
      this.waiters.push({ pred, resolve: (l) => { clearTimeout(timer); resolve(l); } });
    });
  }

  waitState(state: string, timeoutMs = 10000): Promise<LogLine> {
    return this.waitNextLog((l) => l.msg === 'state' && l.to === state, timeoutMs, `state ${state}`);
  }

  ctl(cmd: 'press' | 'mute' | 'unmute' | 'status', timeoutMs?: number): Promise<any> {
    return controlRequest(this.socket, { cmd }, timeoutMs);
  }

  /** Press (ctl) and wait for the state it leads to; the wait starts before the press, so a fast change is not missed. */
  async pressAndWait(state = 'listening', timeoutMs = 5000): Promise<LogLine> {
    const reached = this.waitState(state, timeoutMs);
    await this.ctl('press');
    return reached;
  }

  states(): string[] { return this.logs.filter((l) => l.msg === 'state').map((l) => l.to as string); }

  async stop(): Promise<number | null> {
    if (this.exitCode === null) {
      this.child.kill('SIGTERM');
      const t = setTimeout(() => this.child.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(t);
    }
    rmSync(this.dir, { recursive: true, force: true });
    return this.exitCode;
  }
}

/** An emulator and a daemon pointed at it, with `config` merged over that; done() stops both. */
export async function startWithEmulator(emuOpts: EmulatorOptions, config: Record<string, any>, env: NodeJS.ProcessEnv) {
  const emu = await LiveEmulator.start(emuOpts);
  const daemon = await DaemonProcess.start({ env, config: deepMerge({ live: { base_url: emu.url } }, config) });
  return { emu, daemon, async done() { await daemon.stop(); await emu.close(); } };
}

/** Whether a process exists (a zombie counts as gone: it has exited). */
export function processAlive(pid: number): boolean {
  try { return !/^\d+ \(.*\) Z /.test(readFileSync(`/proc/${pid}/stat`, 'utf8')); } catch { return false; }
}

/** Pids of the arecord processes whose parent is `pid`. */
export function arecordChildren(pid: number): number[] {
  const out: number[] = [];
  for (const p of readdirSync('/proc').filter((d) => /^\d+$/.test(d))) {
    try {
      const stat = readFileSync(`/proc/${p}/stat`, 'utf8');
      const m = /^\d+ \((.*)\) (\S) (\d+) /.exec(stat);
      if (m && m[1] === 'arecord' && m[2] !== 'Z' && Number(m[3]) === pid) out.push(Number(p));
    } catch { /* exited meanwhile */ }
  }
  return out;
}

export async function waitUntil(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  while (!cond()) { if (Date.now() > until) return false; await new Promise((r) => setTimeout(r, 20)); }
  return true;
}

function pick(env: NodeJS.ProcessEnv | undefined, keys: string[]): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const k of keys) if (env?.[k] !== undefined) out[k] = env[k];
  return out;
}

export function deepMerge(a: Record<string, any>, b: Record<string, any>): Record<string, any> {
  const out: Record<string, any> = { ...a };
  for (const [k, v] of Object.entries(b)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && a[k] && typeof a[k] === 'object' ? deepMerge(a[k], v) : v;
  }
  return out;
}
