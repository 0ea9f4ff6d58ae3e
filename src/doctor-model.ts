// `live-speaker doctor`: is live.model one the Live API serves? A retired
// model the docs list is named at once; otherwise one session setup is tried
// through the real SDK (as the daemon does it) and closed at once. A refusal
// names the setting to change and the file it is in.
import { existsSync, readFileSync } from 'node:fs';
import { readApiKey, type Config } from './config.js';
import type { Check } from './doctor-hw.js';
import { GeminiConnector } from './live/gemini.js';
import { DEFAULT_LIVE_MODEL, MODEL_REJECTED, RETIRED_LIVE_MODELS, bareModel } from './live/models.js';
import { createLogger } from './log.js';
import type { CloseInfo } from './ports.js';

const MODELS_PAGE = 'https://ai.google.dev/gemini-api/docs/models';

function apiKey(config: Config): string | null {
  try {
    const { key } = readApiKey(config);
    if (key) return key;
  } catch { /* the API key check says why */ }
  try { return existsSync('/etc/live-speaker/gemini-api-key') ? readFileSync('/etc/live-speaker/gemini-api-key', 'utf8').trim() || null : null; } catch { return null; }
}

export async function checkModel(config: Config, file: string | null, endpointOk: boolean): Promise<Check> {
  const name = 'Live model';
  const model = bareModel(config.live.model);
  const where = file ?? 'the config file (/etc/live-speaker/config.yaml)';
  const retired = RETIRED_LIVE_MODELS[model];
  if (retired) {
    return { name, verdict: 'fail', detail: `live.model '${model}' was shut down on ${retired.shutdown}`, fix: `set live.model in ${where} to ${retired.replacement} (current models: ${MODELS_PAGE})` };
  }
  const key = apiKey(config);
  if (!config.live.base_url && !key) return { name, verdict: 'info', detail: `${model} (not checked: no API key, so the built-in emulator is used)` };
  if (!endpointOk) return { name, verdict: 'info', detail: `${model} (not checked: the Live endpoint is not reachable)` };
  const endpoint = config.live.base_url ?? 'the Gemini Live API';
  const live = { ...config.live, connect_timeout_s: Math.min(config.live.connect_timeout_s, 5) };
  const connector = new GeminiConnector({ apiKey: key ?? 'no-key', baseUrl: config.live.base_url, live, silenceMs: 500, configFile: file, transcripts: false }, createLogger('silent'));
  const outcome = await new Promise<{ open: true } | { open: false; info: CloseInfo }>((resolve) => {
    const link = connector.connect({
      onOpen: () => { link.close(); resolve({ open: true }); },
      onClose: (info) => resolve({ open: false, info }),
      onAudio: () => undefined, onInterrupted: () => undefined, onTurnComplete: () => undefined,
      onResumeHandle: () => undefined, onGoAway: () => undefined,
    }, { resumeHandle: null });
  });
  if (outcome.open) return { name, verdict: 'ok', detail: `${model}: ${endpoint} accepted the session setup` };
  const { info } = outcome;
  if (MODEL_REJECTED.test(info.reason)) {
    return { name, verdict: 'fail', detail: `live.model '${model}' is refused by ${endpoint} (retired or unknown): ${info.reason}`,
      fix: `set live.model in ${where} to a current Live model (default ${DEFAULT_LIVE_MODEL}; list: ${MODELS_PAGE}), then \`sudo systemctl reload live-speaker\`` };
  }
  return { name, verdict: info.permanent ? 'fail' : 'info', detail: `${model}: no session with ${endpoint}: ${info.summary ?? 'closed'}: ${info.reason}`,
    ...(info.permanent ? { fix: 'see the API key line above' } : {}) };
}
