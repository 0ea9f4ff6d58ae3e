// The ports: the interfaces between the conversation state machine
// (src/conversation.ts) and the adapters around it. A port is the narrow
// shape one side needs of the other; both sides import it from here, so no
// adapter imports the state machine and the state machine imports no adapter.
// Which adapter implements each (daemon.ts, the composition root, wires them):
// - LiveConnector, LiveLink (with LiveHandlers, CloseInfo, UsageCounts,
//   TurnText reported back): GeminiConnector, src/live/gemini.ts;
// - Player: SpeakerPlayer, src/audio/playback.ts;
// - Mic: ArecordMic, src/audio/capture.ts;
// - Indicator: Leds (src/leds/leds.ts) and Ring (src/leds/ring.ts);
// - EchoGate: EchoStage, src/audio/echo.ts (through daemon.ts);
// - ToolPort: ToolDispatcher, src/tools/registry.ts;
// - ConversationHandle: the other way round, what src/tools/setup.ts uses of
//   the Conversation. State, STREAMING_STATES and Trigger are shared words;
// - Speaker: the Conversation as the announcement queue (src/announce.ts) uses it (issue 24).
import type { ToolCall, ToolResponse } from './tools/types.js';

export type State = 'idle' | 'connecting' | 'listening' | 'thinking' | 'speaking' | 'follow-up' | 'muted' | 'error';

/** States in which microphone audio is sent to the Live API (the privacy LED is on in all of them). */
export const STREAMING_STATES: ReadonlySet<State> = new Set(['listening', 'thinking', 'speaking', 'follow-up']);

/** How a session ended. `permanent`: retrying will not help (bad key, unknown model): wait for the user. */
export interface CloseInfo { code?: number; reason: string; permanent?: boolean; summary?: string }

/** What the Live session reports back. */
export interface LiveHandlers {
  onOpen(): void; // setupComplete: audio may flow
  onAudio(pcm24k: Buffer): void;
  onInterrupted(): void;
  onTurnComplete(): void;
  onClose(info: CloseInfo): void; // any end the conversation did not ask for
  onResumeHandle(handle: string): void; // the newest handle this session can be resumed with
  onGoAway(timeLeftMs: number): void; // the server will close this connection soon
  // ---- observability (issue 12): re-emitted as 'usage' and 'transcript' events for src/observe.ts
  onUsage?(usage: UsageCounts): void; // the server's usageMetadata, as sent
  onTurnText?(text: TurnText): void; // one turn's transcripts, assembled (only when transcription was asked for)
  // ---- tools (issue 12)
  onToolCall?(calls: ToolCall[]): void; // the model calls functions (several at once in parallel)
  onToolCancel?(ids: string[]): void; // toolCallCancellation: drop those calls' answers
}
/** Token counts as the server reports them (usageMetadata). */
export interface UsageCounts { promptTokenCount?: number; responseTokenCount?: number; totalTokenCount?: number; cachedContentTokenCount?: number; toolUsePromptTokenCount?: number; thoughtsTokenCount?: number }
/** What the user said and what the model said in one turn (transcripts). */
export interface TurnText { heard: string; said: string; interrupted?: boolean }
export interface LiveLink {
  sendAudio(pcm16k: Buffer): void; close(): void; sendToolResponse?(responses: ToolResponse[]): void;
  /** A user text turn (clientContent, turnComplete): an announcement or a question to say (issue 24). */
  sendText?(text: string): void;
}
/** Runs the model's function calls (src/tools/registry.ts). */
export interface ToolPort { call(calls: ToolCall[], respond: (r: ToolResponse[]) => void): void; cancel(ids: string[]): void; cancelAll(): void }
/** `instruction`: added to the system instruction of this session only (an announcement's "say exactly what you are given"). */
export interface LiveConnector { connect(handlers: LiveHandlers, opts: { resumeHandle: string | null; instruction?: string }): LiveLink }
/**
 * Half-duplex (src/audio/echo.ts): whether, right now, the server must not
 * hear the reply's echo. While it says so, every frame sent during a reply,
 * and for echoTailMs after the reply was last heard, is zeros.
 */
export interface EchoGate {
  halfDuplex(): boolean;
  /** Full duplex: the frame just handed over is only what the canceller left of the reply's echo (zeros go out for it). */
  residualEcho?(): boolean;
}

/**
 * Reply playback. `open`/`close` bracket a conversation: the device stays
 * open (fed silence between replies) from one to the other. `finish` says no
 * more audio comes for this turn; `onDrained` fires when its last sample has
 * left the speaker. Sounds played outside a conversation open the device for
 * as long as they play.
 */
export interface Player {
  open(): void;
  close(): void; // the conversation is over: close the device once what is queued has been heard
  play(pcm24k: Buffer): void;
  flush(): void; // stop now, drop everything queued
  finish(onDrained: () => void): void;
}
/** The microphone: frames arrive through Conversation.micFrame while started. */
export interface Mic { start(): void; stop(): void }
/**
 * The LEDs. `show` is synchronous, so the privacy LED is on before the first
 * frame is sent. `micLive` is true only while the listening (privacy) light
 * is lit, read back from its line where one is fitted; `ledProblem` says why
 * it is not when it should be.
 */
export interface Indicator {
  show(state: State): void; readonly micLive: boolean; readonly ledProblem?: string | null; fault?(on: boolean): void;
  /** A privacy light set through another process (libgpiod's tools) is confirmed later: until then a promise, and audio waits for it. */
  lighting?(): Promise<void> | null;
}

export type Trigger = 'button' | 'ctl' | 'signal' | 'mqtt';

/** The conversation as the tools use it (src/tools/setup.ts): its state, the press hook, its state changes, ending after the goodbye. */
export interface ConversationHandle {
  readonly state: State;
  /** A press or the wake word goes here first; true = taken (a ringing timer is stopped by it). */
  pressHook: ((trigger: string) => boolean) | null;
  endAfterReply(): void;
  on(event: 'state', listener: (to: State, from: State) => void): unknown;
}

/** How an announcement or a question asked by the home ended (issue 24). */
export type SpokenOutcome = 'spoken' | 'failed' | 'cut';
/**
 * The conversation as the announcement queue (src/announce.ts) drives it:
 * `speak` starts a short session that says `text` (then listens when
 * `listen`), only when no conversation is open (false otherwise); its end is
 * reported as the 'spoken' event (id, outcome, detail).
 */
export interface Speaker {
  readonly state: State;
  readonly inConversation: boolean;
  /** Muted by the user (also while a muted speaker says an announcement). */
  readonly muted: boolean;
  speak(id: number, text: string, listen: boolean): boolean;
  end(reason: string): void;
  on(event: 'state', listener: (to: State, from: State) => void): unknown;
  on(event: 'spoken', listener: (id: number, outcome: SpokenOutcome, detail: string) => void): unknown;
}
