// The one line of context the model gets at each session start: the local
// date, time and time zone, and the place if the config names one. One short
// line, because long system instructions are reported to break session
// resumption on some models. The wall clock is right here (it is what the
// user means by "now"); durations elsewhere use the monotonic clock.

/** "Thursday, 26 November 2026, 14:05, time zone Europe/Berlin (UTC+01:00); place: Berlin." */
export function contextLine(now: Date, location: string | null, timeZone?: string): string {
  const tz = timeZone ?? Intl.DateTimeFormat().resolvedOptions().timeZone ?? 'UTC';
  const date = new Intl.DateTimeFormat('en-GB', { timeZone: tz, weekday: 'long', day: 'numeric', month: 'long', year: 'numeric' }).format(now);
  const time = new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit', hourCycle: 'h23' }).format(now);
  const place = location?.trim() ? `; place: ${location.trim().replace(/\s+/g, ' ')}` : '';
  return `Now: ${date}, ${time}, time zone ${tz} (UTC${utcOffset(now, tz)})${place}.`;
}

/** "+01:00" for the zone at that moment (summer time included). */
export function utcOffset(now: Date, tz: string): string {
  const parts = Object.fromEntries(new Intl.DateTimeFormat('en-US', {
    timeZone: tz, hourCycle: 'h23', year: 'numeric', month: 'numeric', day: 'numeric', hour: 'numeric', minute: 'numeric', second: 'numeric',
  }).formatToParts(now).map((p) => [p.type, p.value]));
  const asUtc = Date.UTC(Number(parts.year), Number(parts.month) - 1, Number(parts.day), Number(parts.hour), Number(parts.minute), Number(parts.second));
  const minutes = Math.round((asUtc - Math.floor(now.getTime() / 1000) * 1000) / 60000);
  const sign = minutes < 0 ? '-' : '+';
  const a = Math.abs(minutes);
  return `${sign}${String(Math.floor(a / 60)).padStart(2, '0')}:${String(a % 60).padStart(2, '0')}`;
}

/** The configured instruction with the context line after it. */
export function systemInstructionWithContext(instruction: string, now: Date, location: string | null): string {
  const line = contextLine(now, location);
  return instruction.trim() ? `${instruction.trim()}\n${line}` : line;
}
