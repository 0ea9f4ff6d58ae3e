// set_timer: a countdown kept by the daemon; it rings on the speaker even
// with no network, until a press or the wake word stops it.
import { Type } from '@google/genai';
import { MAX_TIMER_S } from '../timers.js';
import { num, str, type Tool, type ToolServices } from './types.js';

export const setTimer = (s: ToolServices): Tool => ({
  declaration: {
    name: 'set_timer',
    description: 'Start a countdown timer on the speaker. It rings when it is done until the user presses the button or says the wake word. Give the length as hours, minutes and/or seconds (they add up), and an optional short label such as "pasta".',
    parameters: {
      type: Type.OBJECT,
      properties: {
        hours: { type: Type.NUMBER }, minutes: { type: Type.NUMBER }, seconds: { type: Type.NUMBER },
        label: { type: Type.STRING, description: 'What the timer is for (optional).' },
      },
    },
  },
  run: (args) => {
    const total = (num(args, 'hours') ?? 0) * 3600 + (num(args, 'minutes') ?? 0) * 60 + (num(args, 'seconds') ?? 0);
    if (total < 1 || total > MAX_TIMER_S) throw new Error(`the timer's length must be 1 second to ${MAX_TIMER_S / 86400} days (got ${total} s)`);
    return { timer: s.timers.addTimer(total, str(args, 'label')) };
  },
});
