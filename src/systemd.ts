// systemd service notifications (sd_notify): READY=1, STATUS=, RELOADING=1,
// STOPPING=1 and the watchdog's WATCHDOG=1.
//
// Transport: the `sd-notify` npm package, used only for its raw
// `sendState(text)`, which is libsystemd's own sd_notify(3). Why that one:
// - Node's `dgram` cannot send to a unix datagram socket, so some native
//   code is needed either way.
// - libsystemd is the reference implementation: it handles every NOTIFY_SOCKET
//   form systemd hands out (paths, abstract names "@...", vsock), and sends
//   from the daemon's own pid, so the unit can keep NotifyAccess=main.
// - `unix-dgram` (zigbee2mqtt's choice) copies the address with strncpy and a
//   fixed sockaddr length, so abstract names ("@...", i.e. a leading NUL)
//   never reach the right socket; `node-unix-socket` was tried here and fails
//   the same way ("\0name" -> ECONNREFUSED).
// - the `systemd-notify` npm package, or spawning `systemd-notify` ourselves,
//   sends from a short-lived child: it needs NotifyAccess=all, has the
//   known race where systemd cannot attribute a message from a process that
//   already exited, and costs a fork per watchdog ping.
// The price: `sd-notify` builds with node-gyp against libsystemd-dev (an apt
// build dependency, added to scripts/install.sh and .ci/run), and sd_notify's
// return code is not passed back by the addon, so a send error cannot be seen
// per message: we check NOTIFY_SOCKET once up front and say once if it cannot
// work. The library's own helpers (ready(), startWatchdogMode()) are not used:
// the watchdog here pings only while the daemon reports itself healthy.
import { createRequire } from 'node:module';
import { statSync } from 'node:fs';

export interface Notifier {
  ready(status?: string): void;      // READY=1 (+ STATUS=)
  status(text: string): void;        // STATUS=
  reloading(): void;                 // RELOADING=1 + MONOTONIC_USEC= (systemd >= 253 Type=notify-reload semantics; harmless otherwise)
  stopping(): void;                  // STOPPING=1
  startWatchdog(isHealthy: () => boolean): void; // no-op unless WATCHDOG_USEC (and WATCHDOG_PID matches or unset); pings WATCHDOG=1 at half the interval only while isHealthy() is true; timer unref'd
  close(): void;
}

type NotifyLog = { warn(obj: object | string, msg?: string): void; debug(obj: object | string, msg?: string): void };

interface SdNotifyAddon { sendState(state: string): void }

const NOOP: Notifier = {
  ready() {}, status() {}, reloading() {}, stopping() {}, startWatchdog() {}, close() {},
};

/** One line: systemd reads the datagram as newline-separated KEY=VALUE assignments. */
function oneLine(text: string): string {
  return text.replace(/[\r\n]+/g, ' ').trim();
}

/** CLOCK_MONOTONIC in microseconds (libuv's hrtime is CLOCK_MONOTONIC on Linux), as systemd wants with RELOADING=1. */
export function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}

/** The watchdog interval in ms from the environment, or null when this process is not the one being watched. */
export function watchdogIntervalMs(env: NodeJS.ProcessEnv = process.env, pid = process.pid): number | null {
  const usec = Number(env.WATCHDOG_USEC);
  if (!env.WATCHDOG_USEC || !Number.isFinite(usec) || usec <= 0) return null;
  if (env.WATCHDOG_PID && Number(env.WATCHDOG_PID) !== pid) return null;
  return usec / 1000;
}

function loadAddon(): SdNotifyAddon {
  const require = createRequire(import.meta.url);
  const mod = require('sd-notify') as Partial<SdNotifyAddon>;
  if (typeof mod.sendState !== 'function') throw new Error('sd-notify has no sendState()');
  return mod as SdNotifyAddon;
}

/** A notifier for this process; a no-op one when systemd did not ask for notifications (NOTIFY_SOCKET unset). */
export function createNotifier(log: NotifyLog): Notifier {
  const socket = process.env.NOTIFY_SOCKET;
  if (!socket) return NOOP;

  let addon: SdNotifyAddon | null = null;
  let warned = false;
  const warnOnce = (msg: string) => {
    if (warned) return;
    warned = true;
    log.warn({ notifySocket: socket }, msg);
  };
  try {
    addon = loadAddon();
  } catch (e) {
    warnOnce(`cannot notify systemd: the sd-notify addon does not load (${(e as Error).message.split('\n')[0]}); ` +
      'install libsystemd-dev and run `npm rebuild sd-notify` (a Type=notify unit will time out starting)');
  }
  if (socket.startsWith('/')) {
    try {
      if (!statSync(socket).isSocket()) warnOnce(`NOTIFY_SOCKET ${socket} is not a socket: systemd will not hear from this daemon`);
    } catch (e) {
      warnOnce(`NOTIFY_SOCKET ${socket} cannot be reached (${(e as NodeJS.ErrnoException).code ?? e}): systemd will not hear from this daemon`);
    }
  } else if (!socket.startsWith('@') && !socket.startsWith('vsock')) {
    warnOnce(`NOTIFY_SOCKET '${socket}' is neither a path nor an abstract name: systemd will not hear from this daemon`);
  }

  let closed = false;
  let timer: NodeJS.Timeout | null = null;
  const send = (state: string, quiet = false) => {
    if (closed || !addon) return;
    try {
      addon.sendState(state);
      if (!quiet) log.debug({ sd_notify: state.replace(/\n/g, ' ') }, 'sd_notify');
    } catch (e) {
      warnOnce(`sd_notify failed: ${(e as Error).message}`);
    }
  };

  return {
    ready(status?: string) {
      send(status === undefined ? 'READY=1' : `READY=1\nSTATUS=${oneLine(status)}`);
    },
    status(text: string) {
      send(`STATUS=${oneLine(text)}`);
    },
    reloading() {
      send(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}`);
    },
    stopping() {
      send('STOPPING=1');
    },
    startWatchdog(isHealthy: () => boolean) {
      if (closed || timer) return;
      const intervalMs = watchdogIntervalMs();
      if (intervalMs === null) return;
      const every = Math.max(1, Math.floor(intervalMs / 2));
      let healthy = true;
      const tick = () => {
        let ok: boolean;
        try { ok = isHealthy(); } catch { ok = false; }
        if (ok !== healthy) {
          healthy = ok;
          if (ok) log.debug('watchdog: healthy again, pinging systemd');
          else log.warn({ watchdogMs: intervalMs }, 'watchdog: daemon not healthy, withholding WATCHDOG=1 (systemd restarts it if this lasts)');
        }
        if (ok) send('WATCHDOG=1', true);
      };
      log.debug({ watchdogMs: intervalMs, pingMs: every }, 'watchdog armed');
      tick();
      timer = setInterval(tick, every);
      timer.unref();
    },
    close() {
      if (timer) clearInterval(timer);
      timer = null;
      closed = true;
    },
  };
}
