// Which Live API model to use, and what to say when the service refuses one.
// Checked on 2026-11-26 against the Gemini API docs (docs/using.md, "The model"):
// gemini-3.8-live is the stable Live model (released 2026-09-15, "Stable:
// gemini-3.8-live", no shutdown date announced), an audio-to-audio model.
// Model names change often: the server's close is the authority, this file
// only gives the default and the words around a refusal.

/** The default `live.model`: the current stable native-audio Live model on the Gemini API. */
export const DEFAULT_LIVE_MODEL = 'gemini-3.8-live';

/**
 * Live models the Gemini API's deprecations page and changelog list as shut
 * down (2025-12-09), with the date and the model to use now (the docs named
 * gemini-2.5-flash-native-audio-preview-12-2025 then; the default now).
 */
export const RETIRED_LIVE_MODELS: Readonly<Record<string, { shutdown: string; replacement: string }>> = {
  'gemini-2.0-flash-live-001': { shutdown: '2025-12-09', replacement: DEFAULT_LIVE_MODEL },
  'gemini-live-2.5-flash-preview': { shutdown: '2025-12-09', replacement: DEFAULT_LIVE_MODEL },
};

/** `models/x` -> `x`. */
export const bareModel = (model: string): string => model.replace(/^models\//, '');

/**
 * The service's words for a model it does not serve on bidiGenerateContent:
 * close 1008 "models/X is not found for API version v1beta, or is not
 * supported for bidiGenerateContent. Call ListModels ..." (cut at the
 * WebSocket limit of 123 bytes).
 */
export const MODEL_REJECTED = /models\/\S+ is not found|not found for API version|is not supported for bidiGenerateContent/i;

/** The close reason the service sends for an unknown or retired model (the emulator sends the same). */
export function modelRejectionReason(model: string): string {
  const text = `models/${bareModel(model)} is not found for API version v1beta, or is not supported for bidiGenerateContent. Call ListModels to see the list of available models and their supported methods.`;
  // A close reason is at most 123 bytes: the service cuts it there.
  return Buffer.from(text).subarray(0, 123).toString('utf8').replace(/\uFFFD+$/, '');
}

/** What to tell the user: the model, that it is refused, and the setting and file to change. */
export function modelFaultSummary(model: string, configFile: string | null): string {
  const retired = RETIRED_LIVE_MODELS[bareModel(model)];
  const why = retired ? `was shut down on ${retired.shutdown}` : 'is retired or unknown on this endpoint';
  return `model '${bareModel(model)}' ${why}: set live.model in ${configFile ?? 'the config file (/etc/live-speaker/config.yaml)'} (current: ${retired?.replacement ?? DEFAULT_LIVE_MODEL})`;
}

/**
 * Models whose function calls are asynchronous (NON_BLOCKING) unless a
 * declaration says `behavior: BLOCKING` (gemini-3.8-live's migration notes:
 * "NON_BLOCKING is now the default"). Older Live models block by default,
 * and gemini-3.1-flash-live-preview takes only blocking calls, so they get
 * no `behavior` on a blocking declaration.
 */
export const asyncCallsByDefault = (model: string): boolean => /^gemini-3\.8-live/.test(bareModel(model));
