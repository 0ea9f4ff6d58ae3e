/**
 * The emulator's options: what a test or the daemon may set (EmulatorOptions,
 * re-exported by emulator.ts) and their defaults (resolveOptions), in one
 * place so each "Default" in a comment sits next to the value that makes it true.
 */
import type { VadOptions } from '../audio/vad.js';
import { msForBytes, tone } from '../audio/pcm.js';
import { INPUT_RATE, OUTPUT_RATE } from './protocol.js';
import type { EmulatedSession, Utterance } from './session.js';
import { PARROT_TOOL_TONES, type ToolTone } from './tools.js';

export interface EmulatorOptions {
  /** 0 = ephemeral (default). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** parrot (default): reply to each utterance automatically. scripted: never reply by itself. */
  mode?: 'parrot' | 'scripted';
  /**
   * VAD settings. Defaults: thresholdDbfs -45, minSpeechMs 60, silenceMs =
   * setup.realtimeInputConfig.automaticActivityDetection.silenceDurationMs or 500.
   * An explicit value here wins over the setup's.
   */
  vad?: Partial<VadOptions>;
  /** Audio per modelTurn message, in ms of 24 kHz audio. Default 40. */
  replyChunkMs?: number;
  /** How much faster than real time reply chunks are sent. Default 2; Infinity = all at once. */
  replySpeed?: number;
  /** 24 kHz s16le reply for an utterance (parrot mode). Default: the utterance resampled 16k->24k. null = no reply. */
  reply?: (u: Utterance, session: EmulatedSession) => Buffer | null;
  /** Default: any key. When false the socket is closed with 1008 BAD_KEY_REASON. */
  acceptKey?: (key: string) => boolean;
  log?: (msg: string, data?: object) => void;
  /** Delay before setupComplete, like a slow network or a cold server (tests of pre-roll). Default 0. */
  setupDelayMs?: number;
  /**
   * Keep every received byte in session.received (default true, for tests).
   * The long-running product emulator sets false: then only a rolling window
   * needed to cut utterances is kept and session.receivedBase says where it starts.
   */
  recordAudio?: boolean;
  /** How many closed sessions stay in `sessions` (default Infinity); older ones are dropped. */
  keepClosedSessions?: number;
  // ---- issue 12: models, transcription, usage
  /**
   * Models served (with or without "models/"). Any other is refused as the
   * service does: close 1008 "models/X is not found for API version v1beta, or
   * is not supported for bidiGenerateContent..." Default: any model.
   */
  knownModels?: string[];
  /**
   * What it "heard" (inputTranscription) for an utterance, sent in fragments
   * when the setup asks for inputAudioTranscription. Parrot mode cannot
   * recognise speech: default "(speech N.N s)"; tests script a text per turn.
   */
  heard?: (u: Utterance, session: EmulatedSession) => string | null;
  /** Fault test: send transcription even when the setup did not ask for it (a client must not log what it did not ask for). */
  transcribeUnasked?: boolean;
  /** What it "said" (outputTranscription) for a reply, when asked for. Default "(reply N.N s)"; sendAudio's `said` wins. */
  said?: (pcm24k: Buffer, session: EmulatedSession) => string | null;
  /** usageMetadata sent before each completed turn's turnComplete; false = none. Default: 25 tokens per second of audio. */
  usage?: false | ((turn: { session: EmulatedSession; inputBytes: number; replyBytes: number }) => Record<string, number>);
  /**
   * Parrot mode (tools, issue 12): an utterance that is mostly a pure tone of
   * `hz` stands for a spoken request: the emulator calls the function `call`
   * (if the session declared it) and, once it has the answer, says the
   * utterance back as its reply. Default PARROT_TOOL_TONES; [] = none.
   */
  toolTones?: ToolTone[];
  /**
   * Tests (fault and fuzz tests): every server message the emulator is about
   * to send is given to this hook first, and the frames it returns are sent
   * in its place: the message itself, others before or after it (objects are
   * sent as JSON, strings and Buffers as they are), or none.
   */
  serverFrames?: (msg: object, session: EmulatedSession) => (object | string | Buffer)[];
  /**
   * Parrot mode (issue 24): the 24 kHz reply to a client text turn (an
   * announcement). Default: a 440 Hz tone of 60 ms per character, 0.3 to 6 s
   * (the emulator cannot speak); null = no reply.
   */
  textReply?: (text: string, session: EmulatedSession) => Buffer | null;
}

/** EmulatorOptions with every default filled in. */
export interface ResolvedOptions {
  mode: 'parrot' | 'scripted';
  vad: Partial<VadOptions>;
  replyChunkMs: number;
  replySpeed: number;
  reply: ((u: Utterance, session: EmulatedSession) => Buffer | null) | undefined;
  acceptKey: (key: string) => boolean;
  log: (msg: string, data?: object) => void;
  recordAudio: boolean;
  keepClosedSessions: number;
  setupDelayMs: number;
  knownModels: string[] | null;
  transcribeUnasked: boolean;
  heard: ((u: Utterance, session: EmulatedSession) => string | null) | undefined;
  said: ((pcm24k: Buffer, session: EmulatedSession) => string | null) | undefined;
  usage: false | ((turn: { session: EmulatedSession; inputBytes: number; replyBytes: number }) => Record<string, number>);
  toolTones: ToolTone[];
  serverFrames: ((msg: object, session: EmulatedSession) => (object | string | Buffer)[]) | undefined;
  textReply: (text: string, session: EmulatedSession) => Buffer | null;
}

/** The default usage: 25 tokens per second of audio in (this turn) and out. */
const defaultUsage = ({ inputBytes, replyBytes }: { inputBytes: number; replyBytes: number }) => {
  const promptTokenCount = Math.ceil(msForBytes(inputBytes, INPUT_RATE) / 40);
  const responseTokenCount = Math.ceil(msForBytes(replyBytes, OUTPUT_RATE) / 40);
  return { promptTokenCount, responseTokenCount, totalTokenCount: promptTokenCount + responseTokenCount };
};

export function resolveOptions(options: EmulatorOptions): ResolvedOptions {
  return {
    mode: options.mode ?? 'parrot',
    vad: options.vad ?? {},
    replyChunkMs: options.replyChunkMs ?? 40,
    replySpeed: options.replySpeed ?? 2,
    reply: options.reply,
    acceptKey: options.acceptKey ?? (() => true),
    log: options.log ?? (() => undefined),
    recordAudio: options.recordAudio ?? true,
    keepClosedSessions: options.keepClosedSessions ?? Infinity,
    setupDelayMs: options.setupDelayMs ?? 0,
    knownModels: options.knownModels ?? null,
    transcribeUnasked: options.transcribeUnasked ?? false,
    heard: options.heard,
    said: options.said,
    usage: options.usage === false ? false : options.usage ?? defaultUsage,
    toolTones: options.toolTones ?? PARROT_TOOL_TONES,
    serverFrames: options.serverFrames,
    textReply: options.textReply ?? ((text) => tone(440, Math.min(6000, Math.max(300, text.length * 60)), OUTPUT_RATE)),
  };
}
