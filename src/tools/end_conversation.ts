// end_conversation: the user said goodbye. The goodbye the model speaks plays
// to its last sample (the player's timeline says when), then the session
// closes and the speaker goes idle. No parameters: the declaration has none
// at all (the Gemini API refuses an OBJECT with empty properties).
import type { Tool, ToolServices } from './types.js';

export const endConversation = (s: ToolServices): Tool => ({
  declaration: {
    name: 'end_conversation',
    description: 'End the conversation when the user says goodbye, thanks you and is done, or asks you to stop listening. Say a short goodbye; the speaker stops listening once it has been heard.',
  },
  run: () => { s.endConversation(); return { result: 'the conversation ends after your goodbye' }; },
});
