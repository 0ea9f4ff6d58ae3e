// The built-in tools' names (no imports: config.ts checks user commands against them).
export const BUILTIN_TOOL_NAMES = [
  'end_conversation', 'set_volume', 'get_volume', 'set_timer', 'set_alarm', 'list_timers', 'cancel_timer',
] as const;
