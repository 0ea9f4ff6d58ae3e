// cancel_timer: by id, by label, or all; also stops one that is ringing.
import { Type } from '@google/genai';
import { str, type Tool, type ToolServices } from './types.js';

export const cancelTimer = (s: ToolServices): Tool => ({
  declaration: {
    name: 'cancel_timer',
    description: 'Cancel a timer or alarm by its id or its label (from list_timers), or "all". Also stops a timer that is ringing.',
    parameters: {
      type: Type.OBJECT,
      properties: { which: { type: Type.STRING, description: 'The id, the label, or "all".' } },
      required: ['which'],
    },
  },
  run: (args) => {
    const which = str(args, 'which', true);
    const wasRinging = s.timers.isRinging;
    const cancelled = s.timers.cancel(which);
    const stopped = wasRinging && !s.timers.isRinging;
    if (cancelled.length === 0 && !stopped) throw new Error(`no timer or alarm matches '${which}'`);
    return { cancelled, stopped_ringing: stopped };
  },
});
