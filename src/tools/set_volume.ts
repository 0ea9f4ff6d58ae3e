// set_volume: the reply volume, absolute (percent) or relative (up/down by a
// step), the same volume as `live-speaker ctl volume` and kept across restarts.
import { Type } from '@google/genai';
import { num, str, type Tool, type ToolServices } from './types.js';

/** Up/down step when no amount is given, as `ctl volume up|down`. */
export const VOLUME_STEP = 10;

export const setVolume = (s: ToolServices): Tool => ({
  declaration: {
    name: 'set_volume',
    description: `Set the speaker's volume. Either an absolute level in percent (0 to ${s.volume.max}; 100 is normal), or a direction up or down by an optional amount in percentage points (default ${VOLUME_STEP}).`,
    parameters: {
      type: Type.OBJECT,
      properties: {
        percent: { type: Type.INTEGER, description: `Absolute volume, 0 to ${s.volume.max}.` },
        direction: { type: Type.STRING, enum: ['up', 'down'], description: 'Relative change instead of an absolute level.' },
        amount: { type: Type.INTEGER, description: `Percentage points for up/down (default ${VOLUME_STEP}).` },
      },
    },
  },
  run: (args) => {
    const before = s.volume.get();
    const percent = num(args, 'percent');
    const direction = str(args, 'direction');
    let next: number;
    if (percent !== null) {
      if (!Number.isInteger(percent) || percent < 0 || percent > s.volume.max) throw new Error(`percent must be a whole number from 0 to ${s.volume.max} (got ${percent})`);
      next = percent;
    } else if (direction === 'up' || direction === 'down') {
      const amount = num(args, 'amount') ?? VOLUME_STEP;
      if (amount <= 0 || amount > s.volume.max) throw new Error(`amount must be 1 to ${s.volume.max} (got ${amount})`);
      next = Math.round(Math.max(0, Math.min(s.volume.max, before + (direction === 'up' ? amount : -amount))));
    } else {
      throw new Error("give either percent, or direction 'up' or 'down'");
    }
    s.volume.set(next);
    return { volume_percent: next, previous_percent: before };
  },
});
