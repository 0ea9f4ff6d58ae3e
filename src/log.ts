// JSON lines on stdout (journald keeps them); one logger for the whole daemon.
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(level = 'info'): Logger {
  return pino({
    level,
    base: undefined, // pid/hostname are journald's job
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    // Belt and braces: the key is never passed to the logger, but if an
    // object holding it ever is, it is masked.
    redact: { paths: ['apiKey', '*.apiKey', 'key', '*.key', 'accessKey', '*.accessKey'], censor: '[redacted]' },
  });
}
