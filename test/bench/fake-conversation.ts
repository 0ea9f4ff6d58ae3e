// The conversation state machine with fake ports (no audio device, no
// network), for unit tests of the rules and of the privacy light: what it
// sent, what it played, and the handlers the Live session would call.
import { Conversation, type ConversationOptions } from '../../src/conversation.js';
import type { Indicator, LiveHandlers } from '../../src/ports.js';
import { createLogger, type Logger } from '../../src/log.js';

export const FAKE_OPTIONS: ConversationOptions = {
  rate: 16000, prerollMs: 0, vadThresholdDbfs: -45, endOfSpeechMs: 300,
  noSpeechTimeoutMs: 60000, followUpMs: 5000, maxConversationMs: 600000, errorDisplayMs: 50,
  trimWakeWord: true, wakeBeforeMs: 0, wakeSound: null, errorSound: null, chimeGateMs: 0, resumeWithinMs: 0,
};

export function fakeConversation(indicator: Indicator, log: Logger = createLogger('silent')) {
  const sent: Buffer[] = [];
  const played: Buffer[] = [];
  let handlers: LiveHandlers | null = null;
  const c = new Conversation(FAKE_OPTIONS, {
    live: { connect: (h) => { handlers = h; return { sendAudio: (b) => sent.push(b), close: () => undefined }; } },
    player: { open: () => undefined, close: () => undefined, play: (b) => played.push(b), flush: () => undefined, finish: (done) => done() },
    mic: { start: () => undefined, stop: () => undefined },
    indicator,
  }, log);
  return { c, sent, played, h: () => handlers! };
}
