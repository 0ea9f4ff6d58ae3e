#!/usr/bin/env node
// The `live-speaker` command: run the daemon, talk to it, or run the emulator.
import { Command, Option } from 'commander';
import { ConfigError, ConfigSchema, loadConfig } from './config.js';
import { controlRequest } from './control.js';
import { controlWatch } from './observe.js';
// Each command loads only what it uses (import() in its action): `ctl status` does not load the daemon, `run` not the doctor or the emulator's CLI.

const program = new Command('live-speaker')
  .description('A smart speaker daemon for the Gemini Live API')
  .option('-c, --config <file>', 'config file (default: /etc/live-speaker/config.yaml, then ./config.yaml)')
  .showHelpAfterError();

program.command('run', { isDefault: true })
  .description('run the daemon (what systemd starts)')
  .action(async () => { const { runDaemon } = await import('./daemon.js'); await runDaemon(program.opts().config); });

program.command('boot-config')
  .description('print the lines the firmware\'s config.txt needs for this config (button pull, SPI); install.sh writes them')
  .action(async () => {
    const { bootConfigLines } = await import('./bootconfig.js');
    try {
      const lines = bootConfigLines(loadConfig(program.opts().config).config);
      if (lines.length) process.stdout.write(lines.join('\n') + '\n');
    } catch (e) {
      if (!(e instanceof ConfigError)) throw e;
      process.stderr.write(`live-speaker: ${e.message}\n`);
      process.exit(78);
    }
  });

program.command('ctl')
  .description('control the running daemon through its control socket')
  .addArgument(new Command().createArgument('<command>', 'press | mute | unmute | status | volume | watch | announce | ask | stop').choices(['press', 'mute', 'unmute', 'status', 'volume', 'watch', 'announce', 'ask', 'stop']))
  .argument('[value...]', 'for volume: a percent (0-150), up or down; for announce and ask: the text to say')
  .option('--json', 'print the status as JSON')
  .option('--priority', 'announce, ask: interrupt a conversation rather than wait for it to end')
  .option('--socket <path>', 'control socket (default: control.socket from the config)')
  .action(async (cmd: 'press' | 'mute' | 'unmute' | 'status' | 'volume' | 'watch' | 'announce' | 'ask' | 'stop', values: string[], opts: { json?: boolean; socket?: string; priority?: boolean }) => {
    const value = values.length ? values.join(' ') : undefined;
    if (cmd === 'volume' && value === undefined) { process.stderr.write('live-speaker ctl: volume needs a value: a percent (0-150), up or down\n'); process.exit(2); }
    if ((cmd === 'announce' || cmd === 'ask') && value === undefined) { process.stderr.write(`live-speaker ctl: ${cmd} needs the text to say\n`); process.exit(2); }
    let socket = opts.socket;
    if (!socket) {
      try { socket = loadConfig(program.opts().config).config.control.socket; } catch (e) {
        if (!(e instanceof ConfigError)) throw e;
        // A broken config is when status matters most: the running daemon still has its old one.
        socket = ConfigSchema.parse({}).control.socket;
        process.stderr.write(`live-speaker: ${e.message}\nlive-speaker: trying the default socket ${socket}\n`);
      }
    }
    if (cmd === 'watch') {
      // JSON lines until the daemon stops (or Ctrl-C).
      try { await controlWatch(socket, (line) => process.stdout.write(line + '\n')); } catch (e) {
        process.stderr.write(`live-speaker ctl: ${(e as Error).message}\n`);
        process.exit(1);
      }
      return;
    }
    try {
      const status = await controlRequest(socket, cmd === 'volume' ? { cmd, value: value! } : cmd === 'announce' || cmd === 'ask' ? { cmd, text: value!, priority: opts.priority === true } : { cmd }) as Record<string, any>;
      if (opts.json) { process.stdout.write(JSON.stringify(status, null, 2) + '\n'); return; }
      if (cmd === 'volume') { process.stdout.write(`volume: ${status.volume}%\n`); return; }
      if (cmd !== 'status') { process.stdout.write(`${cmd}: ok (state: ${status.state})\n`); return; }
      process.stdout.write(formatStatus(status));
    } catch (e) {
      process.stderr.write(`live-speaker ctl: ${(e as Error).message}\n`);
      process.exit(1);
    }
  });

program.command('doctor')
  .description('check config, microphone, speaker, GPIO, API key and the Live endpoint; say what to fix')
  .action(async () => { const { runDoctor } = await import('./doctor.js'); process.exitCode = await runDoctor(program.opts().config); });

program.command('emulator')
  .description('run the loopback Live API emulator in parrot mode (point live.base_url at it)')
  .addOption(new Option('--port <n>', 'TCP port').default('8765').argParser((v) => Number(v)))
  .option('--host <addr>', 'address to listen on', '127.0.0.1')
  .option('--models <list>', 'comma-separated models it serves; any other is refused as the Live API refuses a retired one (default: any)', (v: string) => v.split(',').map((m) => m.trim()).filter(Boolean))
  .action(async (opts: { port: number; host: string; models?: string[] }) => {
    const { runEmulator } = await import('./emulator/cli.js');
    const emu = await runEmulator(opts);
    const stop = () => { void emu.close().then(() => process.exit(0)); };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });

function formatStatus(s: Record<string, any>): string {
  const c = s.counters ?? {};
  const lines = [
    `state:       ${s.state}${s.session === 'open' ? ' (session open)' : ''}`,
    ...(s.muteReason ? [`muted:       ${s.muteReason}`] : []),
    `endpoint:    ${s.endpoint} (model ${s.model})`,
    `microphone:  ${s.microphone}${s.micLive ? ', streaming (listening LED on)' : ''}`,
    `gpio:        ${s.gpio}`,
    `leds:        ${Object.entries(s.leds ?? {}).map(([k, v]) => `${k}=${v}`).join(' ')}`,
    `speaker:     ${s.playback ? `${s.playback.device}, ${s.playback.open ? `open (delay ${s.playback.delayMs ?? '?'} ms)` : 'closed'}, volume ${s.volume}%` : `volume ${s.volume}%`}`,
    ...(s.fault ? [`fault:       ${s.fault} (fix it, then press or reload)`] : []),
    `last error:  ${s.lastError ? `${s.lastError.message} (${s.lastError.at})` : 'none'}`,
    ...(s.timers ? [`timers:      ${s.timers.ringing ? 'RINGING (press to stop); ' : ''}${s.timers.list.length ? s.timers.list.map((t: any) => `${t.kind} ${t.id}${t.label ? ` "${t.label}"` : ''} at ${t.rings_at} (${t.remaining_s} s)`).join(', ') : 'none set'}`] : []),
    ...(s.mqtt ? [`mqtt:        ${s.mqtt.connected ? 'connected to' : 'NOT connected to'} ${s.mqtt.broker} (${s.mqtt.baseTopic})${s.mqtt.lastError ? `; last error: ${s.mqtt.lastError}${s.mqtt.nextRetryS !== null ? `, retrying in ${s.mqtt.nextRetryS} s` : ''}` : ''}`] : []),
    ...(s.announcements && (s.announcements.waiting || s.announcements.current) ? [`announce:    ${s.announcements.current ? `saying #${s.announcements.current.id}; ` : ''}${s.announcements.waiting} waiting`] : []),
    `counters:    ${c.conversations} conversations, ${c.turns} turns, ${c.bargeIns} barge-ins by press, ${c.interrupted} interrupted by voice, ${c.errors} errors`,
    ...(s.usage ? [`tokens:      ${s.usage.totalTokens} total (${s.usage.promptTokens} prompt, ${s.usage.responseTokens} response) since start, as the Live API reported them`] : []),
    `uptime:      ${s.uptimeS} s (pid ${s.pid})`,
  ];
  return lines.join('\n') + '\n';
}

program.parseAsync(process.argv).catch((e: Error) => {
  process.stderr.write(`live-speaker: ${e.message}\n`);
  process.exit(1);
});
