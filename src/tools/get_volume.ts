// get_volume: the reply volume in percent (the same as `ctl status`).
import type { Tool, ToolServices } from './types.js';

export const getVolume = (s: ToolServices): Tool => ({
  declaration: {
    name: 'get_volume',
    description: `The speaker's current volume in percent (0 to ${s.volume.max}; 100 is normal).`,
  },
  run: () => ({ volume_percent: s.volume.get() }),
});
