// The Live API connector as the daemon holds it: src/live/gemini.ts, and with it
// the @google/genai SDK (~150 ms and ~18 MiB to load here, with
// google-auth-library; several times that on a Pi 3), is loaded after READY=1,
// not before: start-up does not wait for it. The daemon starts loading it right
// after READY=1 (daemon.ts becomeReady: preloadGemini()); a session asked for
// before it has loaded opens once it has (the microphone, its pre-roll and the
// LEDs do not wait: what is said meanwhile is held and sent when the session
// opens, as for any connect).
import type { LiveConnector, LiveHandlers, LiveLink } from '../ports.js';
import type { Logger } from '../log.js';
import type { GeminiOptions } from './gemini.js';

type Gemini = typeof import('./gemini.js');
let loading: Promise<Gemini> | null = null;

/**
 * src/live/gemini.ts, loaded once. A failed load is tried again on the next call: that helps where the package was
 * missing and is there now; a module that threw while it was evaluated throws the same again until a restart.
 */
export function loadGemini(): Promise<Gemini> {
  return (loading ??= import('./gemini.js').catch((e: unknown) => { loading = null; throw e; }));
}

/** Start loading the SDK now (after READY=1), so that the first press does not wait for it; rejects (logged) when it cannot load. */
export function preloadGemini(log: Logger): Promise<void> {
  const t = performance.now();
  return loadGemini().then(
    () => log.debug({ ms: Math.round(performance.now() - t) }, 'Live API client loaded'),
    (e: unknown) => { log.error({ error: (e as Error).message }, 'the Live API client (@google/genai) failed to load: conversations fail until it does'); throw e; });
}

/** A GeminiConnector made once the SDK has loaded; until then each link waits for it (sends before its session opens are dropped, as they are on any link). */
export class LazyGeminiConnector implements LiveConnector {
  private real: LiveConnector | null = null;
  /** `load`: how gemini.ts is loaded (tests give a failing or a fake one). */
  constructor(private readonly opts: GeminiOptions, private readonly log: Logger, private readonly load: () => Promise<Pick<Gemini, 'GeminiConnector'>> = loadGemini) {}

  connect(h: LiveHandlers, o: { resumeHandle: string | null; instruction?: string }): LiveLink {
    if (this.real) return this.real.connect(h, o);
    let link: LiveLink | null = null;
    let closed = false;
    this.load().then((m) => {
      this.real ??= new m.GeminiConnector(this.opts, this.log);
      if (!closed) link = this.real.connect(h, o);
    }, (e: unknown) => {
      if (closed) return;
      closed = true;
      h.onClose({ reason: `the Live API client (@google/genai) failed to load: ${(e as Error).message}`, summary: 'Live API client failed to load', permanent: true });
    });
    return {
      sendAudio: (pcm) => link?.sendAudio(pcm),
      sendToolResponse: (r) => link?.sendToolResponse?.(r),
      sendText: (t) => link?.sendText?.(t),
      close: () => { closed = true; link?.close(); },
    };
  }
}

/**
 * The one rejection the daemon expects: the SDK parses each server frame
 * (JSON.parse in its handleWebSocketMessage) in a promise nobody awaits, so a
 * malformed frame rejects unhandled. Anything else unhandled is a bug.
 * (Here, not in gemini.ts: the daemon's handler is set before the SDK is loaded.)
 */
export function isSdkFrameParseError(reason: unknown): reason is SyntaxError {
  return reason instanceof SyntaxError && /\bhandleWebSocketMessage\b/.test(reason.stack ?? '');
}
