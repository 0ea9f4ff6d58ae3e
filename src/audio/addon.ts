// The `speaker` addon: loading it without touching ALSA `default`, reaching
// its native binding, and checking a device from a child process.
import { createRequire } from 'node:module';
import { execFile } from 'node:child_process';
import { rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type SpeakerType from 'speaker';
import { explainOpenFailure } from './devices.js';

const require = createRequire(import.meta.url);
const SPEAKER_PATH = require.resolve('speaker');
/**
 * How long a probe child (node loading the addon, opening a device) may take.
 * 10 s by default; LIVE_SPEAKER_ADDON_PROBE_TIMEOUT_MS raises it where
 * everything is slower than on any Pi: under qemu-user (test/arm.test.ts) a
 * probe started beside the daemon's own start-up took longer than 10 s.
 */
const PROBE_TIMEOUT_MS = Number(process.env.LIVE_SPEAKER_ADDON_PROBE_TIMEOUT_MS) || 10000;

export type SpeakerClass = typeof SpeakerType;
/** The addon's native binding; `flush` is snd_pcm_drop + snd_pcm_prepare, without closing. */
export interface Binding { flush(handle: object): void }
let Speaker: SpeakerClass | null = null;
let binding: Binding | null = null;
let loading: Promise<void> | null = null;

/** The loaded addon (its Speaker class and native binding), or null until loadSpeakerAddon() has resolved. */
export function addon(): { Speaker: SpeakerClass; binding: Binding } | null {
  return Speaker && binding ? { Speaker, binding } : null;
}

/**
 * Run `fn` with ALSA's `default` PCM pointed at the null device. The addon
 * opens `default` when it loads (to list formats), and if that device is
 * missing alsa-lib asserts and aborts the process; the daemon may be told to
 * play on another device altogether. alsa-lib re-reads its configuration at
 * the next open when ALSA_CONFIG_PATH changes, so the real one is back for
 * every device the daemon opens.
 */
function withNullDefault<T>(env: NodeJS.ProcessEnv, fn: () => T): T {
  const file = join(tmpdir(), `live-speaker-alsa-null-default-${process.pid}.conf`);
  writeFileSync(file, 'pcm.!default { type null }\n');
  const before = env.ALSA_CONFIG_PATH;
  env.ALSA_CONFIG_PATH = file;
  try { return fn(); } finally {
    if (before === undefined) delete env.ALSA_CONFIG_PATH; else env.ALSA_CONFIG_PATH = before;
    rmSync(file, { force: true });
  }
}

/** withNullDefault, as a script for a child process: loads the addon into `S`. */
const LOAD_IN_CHILD = `const fs=require('fs');const f=require('path').join(require('os').tmpdir(),'live-speaker-alsa-null-default-'+process.pid+'.conf');` +
  `fs.writeFileSync(f,'pcm.!default { type null }\\n');const before=process.env.ALSA_CONFIG_PATH;process.env.ALSA_CONFIG_PATH=f;` +
  `const S=require(${JSON.stringify(SPEAKER_PATH)});fs.rmSync(f,{force:true});if(before===undefined)delete process.env.ALSA_CONFIG_PATH;else process.env.ALSA_CONFIG_PATH=before;`;

/**
 * Load the `speaker` addon, never through ALSA `default` (see withNullDefault).
 * A child process loads it first, the same way, so that an addon that still
 * aborts on this machine takes only the child down. Rejects with the reason
 * (the next reply tries again).
 */
export function loadSpeakerAddon(): Promise<void> {
  if (Speaker) return Promise.resolve();
  loading ??= new Promise<void>((resolve, reject) => {
    execFile(process.execPath, ['-e', LOAD_IN_CHILD], { timeout: PROBE_TIMEOUT_MS }, (err, _out, stderr) => {
      loading = null;
      if (err) {
        const why = stderr.split('\n').map((l) => l.trim()).filter(Boolean).slice(-1)[0] ?? `probe exited ${err.code ?? err.signal}`;
        reject(new Error(`the speaker addon cannot be loaded: ${why}`));
        return;
      }
      try {
        withNullDefault(process.env, () => {
          Speaker = require('speaker') as SpeakerClass;
          // The addon's own native binding, found the way its index.js finds it, for flush (drop + prepare, no close).
          binding = createRequire(SPEAKER_PATH)('bindings')({ bindings: 'binding', module_root: dirname(SPEAKER_PATH) }) as Binding;
        });
        resolve();
      } catch (e) {
        reject(new Error(`the speaker addon cannot be loaded: ${(e as Error).message}`));
      }
    });
  });
  return loading;
}

/**
 * Can `device` be opened and played on now? A child process opens it and
 * writes 10 ms of silence. null when it can; else why not (the daemon says so
 * at start-up, and tries again at the first reply).
 */
export function checkPlaybackDevice(device: string, rate: number): Promise<string | null> {
  const script = LOAD_IN_CHILD +
    `const s=new S({channels:1,bitDepth:16,sampleRate:${rate},signed:true,device:${JSON.stringify(device)}});` +
    `const fail=(e)=>{process.stderr.write('open failed: '+e.message+'\\n');process.exit(3)};s.on('error',fail);` +
    `s.write(Buffer.alloc(${Math.round(rate / 100) * 2}),(e)=>{if(e)fail(e);s.close(true);process.exit(0)})`;
  return new Promise((resolve) => {
    execFile(process.execPath, ['-e', script], { timeout: PROBE_TIMEOUT_MS }, (err, _out, stderr) => {
      if (!err) return resolve(null);
      const lines = stderr.split('\n').map((l) => l.trim()).filter(Boolean);
      // alsa-lib's own verdict, rather than its configuration chatter before it.
      const said = [/Unknown PCM \S+/, /Unable to connect: .*/, /busy/i, /cannot open device \S+/, /open failed: .*/]
        .map((re) => lines.map((l) => re.exec(l)?.[0]).find(Boolean)).find(Boolean);
      resolve(`cannot open ALSA device '${device}': ${explainOpenFailure(device) ?? said ?? `check exited ${err.code ?? err.signal}`}`);
    });
  });
}
