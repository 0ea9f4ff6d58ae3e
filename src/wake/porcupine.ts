// The Porcupine engine (@picovoice/porcupine-node). It validates its
// AccessKey online when it starts, so at boot without network, with a bad
// key or past the activation limit it fails; the errors are sorted here into
// permanent (wait for the user), transient (retry soon) and slow (retry
// hourly). Porcupine's messages quote the AccessKey: they are scrubbed
// before they go anywhere.
import { createRequire } from 'node:module';
import { existsSync, readFileSync } from 'node:fs';
import { arch } from 'node:os';
import { dirname, join } from 'node:path';
import { WakeArmError, type WakeEngineFactory } from './engine.js';

const require = createRequire(import.meta.url);

export const BUILTIN_KEYWORDS = ['alexa', 'americano', 'blueberry', 'bumblebee', 'computer', 'grapefruit', 'grasshopper',
  'hey google', 'hey siri', 'jarvis', 'ok google', 'picovoice', 'porcupine', 'terminator'];

export interface PorcupineConfig {
  accessKey: string | null;
  keywords: { name: string; sensitivity: number }[];
  modelPath: string | null;
}

/** Porcupine's error class -> what retrying can do. */
export function classify(e: Error, accessKey: string | null): WakeArmError {
  const cls = e.constructor?.name ?? 'Error';
  let msg = [e.message.split('\n')[0].trim(), ...(((e as { messageStack?: string[] }).messageStack) ?? []).slice(0, 2).map((m) => m.replace(/^\S+ [0-9A-F]+: /, ''))]
    .filter(Boolean).join(' ');
  if (accessKey) msg = msg.split(accessKey).join('[AccessKey]');
  msg = msg.replace(/AccessKey `[^`]*`/g, 'AccessKey');
  const kind = ({
    PorcupineActivationError: 'transient', // e.g. no network at boot
    PorcupineActivationThrottledError: 'transient',
    PorcupineIOError: 'transient',
    PorcupineRuntimeError: 'transient',
    PorcupineActivationLimitReachedError: 'slow',
    PorcupineActivationRefusedError: 'permanent',
    PorcupineInvalidArgumentError: 'permanent',
    PorcupineKeyError: 'permanent',
  } as Record<string, 'permanent' | 'transient' | 'slow'>)[cls] ?? 'transient';
  return new WakeArmError(`${cls}: ${msg}`, kind, cls);
}

/**
 * The package picks its native library from /proc/cpuinfo, but maps the
 * Pi 5's Cortex-A76 to the A72 build; pick the A76 build where it ships.
 */
export function libraryPath(pkgDir: string, cpuinfo: string | null, machineArch = arch()): string | undefined {
  if (machineArch !== 'arm' && machineArch !== 'arm64') return undefined;
  const part = /CPU part\s*:\s*(0x[0-9a-f]+)/i.exec(cpuinfo ?? '')?.[1]?.toLowerCase();
  const cpu = ({ '0xd03': 'cortex-a53', '0xd08': 'cortex-a72', '0xd0b': 'cortex-a76' } as Record<string, string>)[part ?? ''];
  if (!cpu) return undefined;
  const p = join(pkgDir, 'lib', 'raspberry-pi', `${cpu}${machineArch === 'arm64' ? '-aarch64' : ''}`, 'pv_porcupine.node');
  return existsSync(p) ? p : undefined;
}

export function porcupineFactory(cfg: PorcupineConfig): WakeEngineFactory {
  return () => {
    if (!cfg.accessKey) {
      throw new WakeArmError('no Picovoice AccessKey: set PICOVOICE_ACCESS_KEY, the systemd credential picovoice-access-key or wake.access_key_file (free at console.picovoice.ai)', 'permanent', 'NoAccessKey');
    }
    let pv: typeof import('@picovoice/porcupine-node');
    try {
      pv = require('@picovoice/porcupine-node');
    } catch (e) {
      throw new WakeArmError(`the Porcupine package cannot load: ${(e as Error).message.split('\n')[0]}`, 'permanent', 'LoadError');
    }
    const pkgDir = dirname(require.resolve('@picovoice/porcupine-node/package.json'));
    const paths: string[] = [];
    for (const k of cfg.keywords) {
      if (k.name.endsWith('.ppn')) {
        if (!existsSync(k.name)) throw new WakeArmError(`wake.keywords: ${k.name} does not exist`, 'permanent', 'NoKeywordFile');
        paths.push(k.name);
      } else if (BUILTIN_KEYWORDS.includes(k.name)) {
        paths.push(pv.getBuiltinKeywordPath(k.name as never));
      } else {
        throw new WakeArmError(`wake.keywords: '${k.name}' is neither a built-in keyword (${BUILTIN_KEYWORDS.join(', ')}) nor a .ppn file`, 'permanent', 'UnknownKeyword');
      }
    }
    let cpuinfo: string | null = null;
    try { cpuinfo = readFileSync('/proc/cpuinfo', 'utf8'); } catch { /* not Linux */ }
    const lib = libraryPath(pkgDir, cpuinfo);
    try {
      const p = new pv.Porcupine(cfg.accessKey, paths, cfg.keywords.map((k) => k.sensitivity), {
        ...(cfg.modelPath ? { modelPath: cfg.modelPath } : {}),
        ...(lib ? { libraryPath: lib } : {}),
      });
      return { frameLength: p.frameLength, keywords: cfg.keywords.map((k) => k.name), process: (f) => p.process(f), release: () => p.release() };
    } catch (e) {
      throw classify(e as Error, cfg.accessKey);
    }
  };
}
