// list_timers: the timers and alarms still to ring, soonest first.
import type { Tool, ToolServices } from './types.js';

export const listTimers = (s: ToolServices): Tool => ({
  declaration: {
    name: 'list_timers',
    description: 'List the timers and alarms that have not rung yet, soonest first, with their id, label, local time they ring and seconds remaining.',
  },
  run: () => ({ timers: s.timers.list(), ringing_now: s.timers.isRinging }),
});
