// The character-device GPIO backend (the interface the kernel supports; the
// only one that can set a pull), through libgpiod's own tools run as
// long-lived children: one `gpiomon` per input line, one `gpioset` holding
// each output line. Chosen over an npm binding because node-libgpiod (0.5.x)
// builds against libgpiod 1.x only, while Debian/Raspberry Pi OS trixie ship
// 2.x; the tools are packaged (`gpiod`) for both, on arm64 and armhf.
//
// Both tool generations are handled; their flags and output differ:
//   libgpiod 1.6 (bookworm): gpioset --mode=signal [-l] CHIP OFF=V
//                            gpiomon -b -B BIAS [-l] -F '%o %e' CHIP OFF   (%e: 1 rising, 0 falling)
//                            gpioinfo CHIP: "\tline  17:   \"GPIO17\"   unused   input  active-high [pull-up]"
//   libgpiod 2.x (trixie):   gpioset --banner -c CHIP -C CONSUMER [-l] OFF=V   (holds until killed)
//                            gpiomon --banner -c CHIP -b BIAS [-l] [-p MS] -e both -F '%o %E' OFF
//                            gpioinfo -c CHIP: "\tline  17:\t\"GPIO17\"  \tinput bias=pull-up consumer=\"x\""
//
// A held output cannot be read by another process while gpioset holds it
// (the kernel reports a requested line as busy, and Debian's gpioset is built
// without its interactive `get`). So an output's read-back is the kernel's
// own confirmation that the request with that level stands: v2's banner,
// printed only after the kernel granted the request with its output value,
// or (v1, which prints nothing) `gpioinfo` showing the line held as an
// output by gpioset; and the holder still running. A holder that dies makes
// `get` throw with its error at once. Setting a new level replaces the holder,
// so `whenSettled` tells the caller when the new level is confirmed.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { existsSync, readdirSync } from 'node:fs';
import { GpioUnavailable, type Bias, type GpioBackend, type InputLine, type OutputLine } from './gpio.js';

export type ToolsVersion = 1 | 2;
export interface ChipInfo { name: string; label: string; lines: number }
export interface LineInfo { offset: number; name: string | null; used: boolean; consumer: string | null; output: boolean; activeLow: boolean; bias: Bias | null }

export interface ChardevOptions {
  /** Environment for the tools (PATH finds them; tests put fakes first). */
  env?: NodeJS.ProcessEnv;
  /** Where gpiochip character devices live (to decide whether chardev GPIO exists at all). */
  devRoot?: string;
  /** How long a new output level may take to be confirmed before it counts as failed. */
  confirmTimeoutMs?: number;
  /** First and longest wait before a dead tool is restarted. */
  restartMs?: [number, number];
  /** The consumer name shown by gpioinfo (v2 only; v1's gpioset is always "gpioset"). */
  consumer?: string;
  log?: (level: 'info' | 'warn' | 'error', msg: string) => void;
}

// Labels of the SoC's own GPIO controller: Pi 3/Zero 2 W, Pi 4, Pi 5 (rp1 is gpiochip4 on older 6.1 kernels, gpiochip0 on newer).
const SOC_CHIP = /^pinctrl-(bcm2835|bcm2711|bcm2712|rp1)$/;

/** Whether any GPIO character device exists under devRoot. */
export function chardevPresent(devRoot = '/dev'): boolean {
  try { return readdirSync(devRoot).some((n) => /^gpiochip\d+$/.test(n)); } catch { return false; }
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv | undefined, timeoutMs = 3000): Promise<{ code: number | null; stdout: string; stderr: string; error?: NodeJS.ErrnoException }> {
  return new Promise((resolve) => {
    execFile(cmd, args, { env, timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: any }) | null;
      if (e && typeof e.code === 'string') resolve({ code: null, stdout: String(stdout ?? ''), stderr: String(stderr ?? ''), error: e });
      else resolve({ code: e ? (typeof e.code === 'number' ? e.code : 1) : 0, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

/** "gpioset (libgpiod) v1.6.3" -> 1; "... v2.2.1" -> 2. */
export function parseToolsVersion(text: string): ToolsVersion | null {
  const m = /libgpiod\)\s*v(\d+)\./.exec(text);
  if (!m) return null;
  return Number(m[1]) >= 2 ? 2 : 1;
}

/** gpiodetect, both versions: "gpiochip0 [pinctrl-bcm2711] (58 lines)". */
export function parseGpiodetect(text: string): ChipInfo[] {
  const chips: ChipInfo[] = [];
  for (const line of text.split('\n')) {
    const m = /^(\S+)\s+\[(.*)\]\s+\((\d+) lines\)/.exec(line.trim());
    if (m) chips.push({ name: m[1], label: m[2], lines: Number(m[3]) });
  }
  return chips;
}

/** The SoC's GPIO controller, by label (its number differs between Pi models and kernels). */
export function pickSocChip(chips: ChipInfo[]): ChipInfo | null {
  return chips.find((c) => SOC_CHIP.test(c.label)) ?? chips.find((c) => c.label.startsWith('pinctrl-')) ?? null;
}

/** gpioinfo's listing of one chip, either version. */
export function parseGpioinfo(text: string, version: ToolsVersion): Map<number, LineInfo> {
  const lines = new Map<number, LineInfo>();
  for (const raw of text.split('\n')) {
    if (version === 1) {
      const m = /^\s*line\s+(\d+):\s+(?:"([^"]*)"|unnamed)\s+(?:"([^"]*)"|(unused)|(kernel))\s+(input|output)\s+(active-high|active-low)\s*(?:\[([^\]]*)\])?/.exec(raw);
      if (!m) continue;
      const flags = (m[8] ?? '').split(/\s+/);
      lines.set(Number(m[1]), {
        offset: Number(m[1]), name: m[2] ?? null, used: flags.includes('used'), consumer: m[3] ?? (m[5] ? 'kernel' : null),
        output: m[6] === 'output', activeLow: m[7] === 'active-low',
        bias: flags.includes('pull-up') ? 'pull-up' : flags.includes('pull-down') ? 'pull-down' : flags.includes('bias-disabled') ? 'none' : null,
      });
    } else {
      const m = /^\s*line\s+(\d+):\s+(?:"([^"]*)"|(\S+))\s+(input|output)(.*)$/.exec(raw);
      if (!m) continue;
      const rest = m[5];
      const consumer = /consumer="([^"]*)"/.exec(rest)?.[1] ?? /consumer=(\S+)/.exec(rest)?.[1] ?? null;
      const bias = /bias=(\S+)/.exec(rest)?.[1];
      lines.set(Number(m[1]), {
        offset: Number(m[1]), name: m[2] ?? (m[3] === 'unnamed' ? null : m[3]), used: consumer !== null, consumer,
        output: m[4] === 'output', activeLow: /(^|\s)active-low(\s|$)/.test(rest),
        bias: bias === 'pull-up' ? 'pull-up' : bias === 'pull-down' ? 'pull-down' : bias === 'disabled' ? 'none' : null,
      });
    }
  }
  return lines;
}

/** A tool's own error line, made as clear as onoff's (what failed, the errno text, and the usual fix). */
export function describeToolError(tool: string, stderr: string, code: number | null, signal: NodeJS.Signals | null): string {
  const line = stderr.split('\n').map((l) => l.trim()).filter(Boolean).pop() ?? '';
  const hint = /busy/i.test(line) ? ' (used by another program or a driver)'
    : /permission denied/i.test(line) ? ' (is the user in the gpio group?)'
    : /cannot find GPIO chip|No such file or directory|looking up chip/i.test(line) ? ' (no such GPIO chip here)'
    : '';
  if (line) return `${line}${hint}`;
  return signal ? `${tool} was killed by ${signal}` : `${tool} exited with code ${code}`;
}

interface Want { on: boolean; blink: number[] | null }
const sameWant = (a: Want | null, b: Want | null) => !!a && !!b && a.on === b.on && (a.blink ?? []).join() === (b.blink ?? []).join();

class Settle {
  readonly promise: Promise<void>;
  resolve!: () => void;
  constructor() { this.promise = new Promise((r) => { this.resolve = r; }); }
}

interface Ctx {
  version: ToolsVersion; chip: string; env: NodeJS.ProcessEnv | undefined; consumer: string;
  confirmTimeoutMs: number; restartMs: [number, number]; log: NonNullable<ChardevOptions['log']>;
}

/** One output line held by one gpioset at a time. */
class HolderLine implements OutputLine {
  private want: Want | null = null;
  private child: ChildProcess | null = null;
  private childWant: Want | null = null;
  private switching = new WeakSet<ChildProcess>();
  private confirmed: boolean | null = null;
  private error: string | null = null;
  private settle: Settle | null = null;
  private settleTimer: NodeJS.Timeout | null = null;
  private restartDelay: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private released = false;

  constructor(private readonly ctx: Ctx, private readonly bcm: number, private readonly activeLow: boolean) {
    this.restartDelay = ctx.restartMs[0];
  }

  set(on: boolean): void { this.request({ on, blink: null }); }
  blink(periods: number[]): void {
    if (this.ctx.version === 1) throw new Error('gpioset 1.x cannot toggle by itself');
    this.request({ on: true, blink: periods.map((p) => Math.max(1, Math.round(p))) });
  }

  get(): boolean {
    if (this.error) throw new Error(this.error);
    return this.confirmed === true;
  }

  whenSettled(): Promise<void> | null { return this.settle?.promise ?? null; }

  release(): void {
    this.released = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.child?.kill('SIGTERM');
    this.finishSettle();
  }

  private request(w: Want): void {
    if (this.released) return;
    if (sameWant(w, this.want) && (this.child || this.restartTimer)) return;
    this.want = w;
    this.confirmed = null; // not confirmed until the new holder says so
    this.error = null;
    this.restartDelay = this.ctx.restartMs[0];
    if (this.restartTimer) { clearTimeout(this.restartTimer); this.restartTimer = null; }
    if (!this.settle) {
      this.settle = new Settle();
      this.settleTimer = setTimeout(() => {
        if (this.confirmed === null && !this.error) this.error = `BCM ${this.bcm}: gpioset did not confirm the level within ${this.ctx.confirmTimeoutMs / 1000} s`;
        this.finishSettle();
      }, this.ctx.confirmTimeoutMs);
      this.settleTimer.unref();
    }
    this.reconcile();
  }

  private finishSettle(): void {
    if (this.settleTimer) { clearTimeout(this.settleTimer); this.settleTimer = null; }
    const s = this.settle;
    this.settle = null;
    s?.resolve();
  }

  private reconcile(): void {
    if (this.released || !this.want) return;
    if (this.child) {
      if (sameWant(this.childWant, this.want)) return;
      this.switching.add(this.child);
      this.child.kill('SIGTERM'); // its exit starts the next holder
      return;
    }
    this.spawnHolder(this.want);
  }

  private args(w: Want): string[] {
    const v = w.on ? 1 : 0;
    if (this.ctx.version === 1) return ['--mode=signal', ...(this.activeLow ? ['-l'] : []), this.ctx.chip, `${this.bcm}=${v}`];
    return ['--banner', '-c', this.ctx.chip, '-C', this.ctx.consumer, ...(this.activeLow ? ['-l'] : []),
      ...(w.blink ? ['-t', w.blink.join(',')] : []), `${this.bcm}=${v}`];
  }

  private spawnHolder(w: Want): void {
    let child: ChildProcess;
    try {
      child = spawn('gpioset', this.args(w), { env: this.ctx.env, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      this.fail(`cannot start gpioset: ${(e as Error).message}`);
      return;
    }
    this.child = child;
    this.childWant = w;
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => { stderr += d; });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      if (this.ctx.version === 2 && /^Setting line/.test(line)) this.confirm(child);
    });
    if (this.ctx.version === 1) void this.confirmByInfo(child);
    let ended = false;
    const ended_ = (code: number | null, signal: NodeJS.Signals | null, spawnError?: NodeJS.ErrnoException) => {
      if (ended) return;
      ended = true;
      if (this.child !== child) return;
      this.child = null;
      this.childWant = null;
      this.confirmed = null;
      if (this.released) return;
      if (this.switching.has(child)) { this.reconcile(); return; }
      const why = spawnError?.code === 'ENOENT' ? 'gpioset not found (sudo apt install gpiod)' : describeToolError('gpioset', stderr, code, signal);
      this.fail(`cannot hold BCM ${this.bcm} (${this.ctx.chip} line ${this.bcm}): ${why}`);
    };
    child.on('error', (e: NodeJS.ErrnoException) => ended_(null, null, e));
    child.on('close', (code, signal) => ended_(code, signal));
  }

  /** v1 prints nothing on success: the kernel's line info says whether gpioset holds the line as an output. */
  private async confirmByInfo(child: ChildProcess): Promise<void> {
    const until = Date.now() + this.ctx.confirmTimeoutMs;
    while (this.child === child && Date.now() < until) {
      const r = await run('gpioinfo', [this.ctx.chip], this.ctx.env);
      const info = parseGpioinfo(r.stdout, 1).get(this.bcm);
      if (this.child !== child) return;
      if (info?.used && info.output && info.consumer === 'gpioset') { this.confirm(child); return; }
      await new Promise((res) => setTimeout(res, 25));
    }
  }

  private confirm(child: ChildProcess): void {
    if (child !== this.child || !this.childWant) return;
    this.confirmed = this.childWant.on;
    this.error = null;
    this.restartDelay = this.ctx.restartMs[0];
    this.finishSettle();
  }

  private fail(message: string): void {
    const first = this.error !== message;
    this.error = message;
    this.finishSettle();
    if (first) this.ctx.log('error', `${message}; retrying`);
    // Keep trying with back-off: a line held by someone else may be freed.
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (!this.released && !this.child && this.want) this.spawnHolder(this.want);
    }, this.restartDelay);
    this.restartTimer.unref();
    this.restartDelay = Math.min(this.restartDelay * 2, this.ctx.restartMs[1]);
  }
}

/** One input line watched by one gpiomon, restarted with back-off when it dies. */
class MonitorLine implements InputLine {
  private child: ChildProcess | null = null;
  private cb: (active: boolean) => void = () => undefined;
  private released = false;
  private restartDelay: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private debounceTimer: NodeJS.Timeout | null = null;
  private last: boolean | null = null;
  private lastError: string | null = null;

  constructor(private readonly ctx: Ctx, private readonly bcm: number, private readonly activeLow: boolean,
              private readonly debounceMs: number, private readonly bias: Bias) {
    this.restartDelay = ctx.restartMs[0];
    this.start();
  }

  onChange(cb: (active: boolean) => void): void { this.cb = cb; }

  release(): void {
    this.released = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.child?.kill('SIGTERM');
  }

  private args(): string[] {
    const al = this.activeLow ? ['-l'] : [];
    if (this.ctx.version === 1) {
      // -b: line-buffered, or events sit in stdio's buffer when stdout is a pipe.
      return ['-b', '-B', this.bias === 'none' ? 'disable' : this.bias, ...al, '-F', '%o %e', this.ctx.chip, String(this.bcm)];
    }
    return ['--banner', '-c', this.ctx.chip, '-C', this.ctx.consumer, '-b', this.bias === 'none' ? 'disabled' : this.bias, ...al,
      ...(this.debounceMs > 0 ? ['-p', `${this.debounceMs}ms`] : []), '-e', 'both', '-F', '%o %E', String(this.bcm)];
  }

  private start(): void {
    let child: ChildProcess;
    try {
      child = spawn('gpiomon', this.args(), { env: this.ctx.env, stdio: ['ignore', 'pipe', 'pipe'] });
    } catch (e) {
      this.died(`cannot start gpiomon: ${(e as Error).message}`);
      return;
    }
    this.child = child;
    let stderr = '';
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => { stderr += d; });
    createInterface({ input: child.stdout! }).on('line', (line) => {
      // v1: "17 1" (1 rising, 0 falling); v2: "17 rising". Anything else (the banner) is not an event.
      const m = /^(\d+)\s+(rising|falling|1|0)\s*$/.exec(line.trim());
      if (!m || Number(m[1]) !== this.bcm) {
        if (/^Monitoring line/.test(line) && this.lastError) { this.ctx.log('info', `BCM ${this.bcm}: watching again`); this.lastError = null; }
        return;
      }
      this.restartDelay = this.ctx.restartMs[0];
      this.event(m[2] === 'rising' || m[2] === '1');
    });
    let ended = false;
    const end = (code: number | null, signal: NodeJS.Signals | null, spawnError?: NodeJS.ErrnoException) => {
      if (ended) return;
      ended = true;
      if (this.child !== child) return;
      this.child = null;
      if (this.released) return;
      const why = spawnError?.code === 'ENOENT' ? 'gpiomon not found (sudo apt install gpiod)' : describeToolError('gpiomon', stderr, code, signal);
      this.died(`cannot watch BCM ${this.bcm} (${this.ctx.chip} line ${this.bcm}): ${why}`);
    };
    child.on('error', (e: NodeJS.ErrnoException) => end(null, null, e));
    child.on('close', (code, signal) => end(code, signal));
  }

  private event(active: boolean): void {
    // gpiomon 2.x debounces in the kernel (-p); 1.x cannot, so bounces are settled here.
    if (this.ctx.version === 2 || this.debounceMs === 0) { this.emit(active); return; }
    if (this.debounceTimer) clearTimeout(this.debounceTimer);
    this.debounceTimer = setTimeout(() => { this.debounceTimer = null; this.emit(active); }, this.debounceMs);
  }

  private emit(active: boolean): void {
    if (active === this.last) return;
    this.last = active;
    this.cb(active);
  }

  private died(message: string): void {
    if (message !== this.lastError) this.ctx.log('error', `${message}; retrying`);
    this.lastError = message;
    if (this.last) this.emit(false); // a press cannot outlive its watcher
    this.restartTimer = setTimeout(() => { this.restartTimer = null; if (!this.released) this.start(); }, this.restartDelay);
    this.restartTimer.unref();
    this.restartDelay = Math.min(this.restartDelay * 2, this.ctx.restartMs[1]);
  }
}

export interface ChardevBackend extends GpioBackend {
  readonly version: ToolsVersion;
  readonly chip: ChipInfo;
  /** The kernel's view of a line now (direction, user, bias), or null when gpioinfo cannot say. */
  lineInfo(bcm: number): Promise<LineInfo | null>;
}

/**
 * The chardev backend: finds the tools and their version, the SoC's chip by
 * label, and checks it can be opened; throws GpioUnavailable with the reason.
 */
export async function chardevBackend(opts: ChardevOptions = {}): Promise<ChardevBackend> {
  const env = opts.env;
  const devRoot = opts.devRoot ?? '/dev';
  if (!existsSync(devRoot) || !chardevPresent(devRoot)) throw new GpioUnavailable(`no GPIO character device (${devRoot}/gpiochip*): not a Raspberry Pi, or the kernel has no GPIO`);
  const ver = await run('gpioset', ['--version'], env);
  if (ver.error) {
    throw new GpioUnavailable(ver.error.code === 'ENOENT' ? 'the libgpiod tools are not installed (sudo apt install gpiod)' : `gpioset --version failed: ${ver.error.message}`);
  }
  const version = parseToolsVersion(ver.stdout);
  if (!version) throw new GpioUnavailable(`cannot tell the libgpiod version from \`gpioset --version\`: ${ver.stdout.split('\n')[0] || ver.stderr.trim()}`);
  const det = await run('gpiodetect', [], env);
  const chips = parseGpiodetect(det.stdout);
  const chip = pickSocChip(chips);
  if (!chip) {
    const why = describeToolError('gpiodetect', det.stderr, det.code, null);
    throw new GpioUnavailable(chips.length
      ? `no Raspberry Pi GPIO controller among ${chips.map((c) => `${c.name} [${c.label}]`).join(', ')}`
      : `gpiodetect lists no GPIO chip${det.stderr.trim() ? `: ${why}` : ''}`);
  }
  const infoArgs = version === 1 ? [chip.name] : ['-c', chip.name];
  const readInfo = async () => {
    const r = await run('gpioinfo', infoArgs, env);
    return { ...r, lines: parseGpioinfo(r.stdout, version) };
  };
  const first = await readInfo();
  if (first.lines.size === 0) throw new GpioUnavailable(`cannot read ${chip.name} [${chip.label}]: ${describeToolError('gpioinfo', first.stderr, first.code, null)}`);
  const ctx: Ctx = {
    version, chip: chip.name, env, consumer: opts.consumer ?? 'live-speaker',
    confirmTimeoutMs: opts.confirmTimeoutMs ?? 3000, restartMs: opts.restartMs ?? [500, 30_000],
    log: opts.log ?? (() => undefined),
  };
  const open = new Set<number>();
  const check = (bcm: number) => {
    if (bcm >= chip.lines) throw new GpioUnavailable(`BCM ${bcm} is not a line of ${chip.label} (it has ${chip.lines})`);
    if (open.has(bcm)) throw new GpioUnavailable(`BCM ${bcm} is configured twice`);
    const info = first.lines.get(bcm);
    if (info?.used) throw new GpioUnavailable(`cannot open BCM ${bcm} (${chip.name} line ${bcm}): in use by "${info.consumer ?? 'kernel'}" (used by another program or a driver)`);
    open.add(bcm);
  };
  const children: { release(): void }[] = [];
  return {
    name: `libgpiod ${version === 1 ? '1.x' : '2.x'} tools (chardev, ${chip.name} [${chip.label}])`,
    version, chip,
    output(bcm, activeLow) { check(bcm); const l = new HolderLine(ctx, bcm, activeLow); children.push(l); return l; },
    input(bcm, activeLow, debounceMs, bias = 'none') { check(bcm); const l = new MonitorLine(ctx, bcm, activeLow, debounceMs, bias); children.push(l); return l; },
    async lineInfo(bcm) { return (await readInfo()).lines.get(bcm) ?? null; },
    release() { for (const c of children) c.release(); },
  };
}
