// set_alarm: rings at the next time the local clock reads HH:MM (today or
// tomorrow), in the speaker's time zone.
import { Type } from '@google/genai';
import { str, type Tool, type ToolServices } from './types.js';

export const setAlarm = (s: ToolServices): Tool => ({
  declaration: {
    name: 'set_alarm',
    description: "Set an alarm for the next time the speaker's local clock shows the given time (today if still ahead, else tomorrow). Time as HH:MM on a 24-hour clock, e.g. 07:30 or 18:05.",
    parameters: {
      type: Type.OBJECT,
      properties: {
        time: { type: Type.STRING, description: 'Local time, HH:MM, 24-hour clock.' },
        label: { type: Type.STRING, description: 'What the alarm is for (optional).' },
      },
      required: ['time'],
    },
  },
  run: (args) => ({ alarm: s.timers.addAlarm(str(args, 'time', true), str(args, 'label')) }),
});
