// SpeexDSP (libspeexdsp, Debian's libspeexdsp1) through koffi, a C FFI with
// prebuilt binaries for linux x64/arm64/arm: no compiler and no -dev package
// on the Pi, only the runtime library. What is used of it:
//   - speex_echo_*: the MDF (multidelay block frequency-domain) adaptive echo
//     canceller, run on 16 kHz frames with the reference aligned by the bulk
//     delay estimator (./delay.ts), so its filter only has to model the room;
//   - speex_preprocess_* with SET_ECHO_STATE: the residual echo suppressor
//     fed by the canceller's own estimate of what it left (AGC, VAD and
//     dereverb off, noise suppression limited to 6 dB: the level of the user's
//     voice is not ours to change);
//   - speex_resampler_*: 24 kHz reference -> 16 kHz, and both streams ->
//     2 kHz for the delay estimator (band-limited, unlike pcm.ts's linear one).
import { createRequire } from 'node:module';
import type Koffi from 'koffi';

/** No echo engine can run here; the message names the library and the Debian package. */
export class EchoUnavailableError extends Error {
  constructor(message: string, readonly causes: string[] = []) { super(message); this.name = 'EchoUnavailableError'; }
}

const SPEEX_ECHO_SET_SAMPLING_RATE = 24;
const SPEEX_ECHO_GET_IMPULSE_RESPONSE_SIZE = 27;
const SPEEX_ECHO_GET_IMPULSE_RESPONSE = 29;
const SPEEX_PREPROCESS_SET_DENOISE = 0;
const SPEEX_PREPROCESS_SET_AGC = 2;
const SPEEX_PREPROCESS_SET_VAD = 4;
const SPEEX_PREPROCESS_SET_DEREVERB = 8;
const SPEEX_PREPROCESS_SET_NOISE_SUPPRESS = 18;
const SPEEX_PREPROCESS_SET_ECHO_SUPPRESS = 20;
const SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE = 22;
const SPEEX_PREPROCESS_SET_ECHO_STATE = 24;

type Fn = (...args: unknown[]) => unknown;
interface SpeexLib {
  echoInit: Fn; echoDestroy: Fn; echoCancellation: Fn; echoCtlInt: Fn; echoCtlTaps: Fn; echoReset: Fn;
  ppInit: Fn; ppDestroy: Fn; ppRun: Fn; ppCtlInt: Fn; ppCtlPtr: Fn;
  rsInit: Fn; rsDestroy: Fn; rsProcessInt: Fn; rsReset: Fn; rsSkipZeros: Fn;
}

/**
 * Where Debian puts it (multiarch dirs differ per architecture; the soname is
 * enough for dlopen). LIVE_SPEAKER_SPEEXDSP names another file instead (tests
 * use it to see the daemon without the library).
 */
const SONAMES = process.env.LIVE_SPEAKER_SPEEXDSP ? [process.env.LIVE_SPEAKER_SPEEXDSP] : ['libspeexdsp.so.1', 'libspeexdsp.so'];
let lib: SpeexLib | null = null;
let typesDeclared = false;

/**
 * koffi, loaded when a canceller is first wanted, not when this module is:
 * its native binary comes from an optional dependency that npm may have
 * skipped, and a daemon with echo_cancel auto or off (or doctor, or ctl) must
 * still run without it.
 */
function loadKoffi(): typeof Koffi {
  try {
    return createRequire(import.meta.url)('koffi') as typeof Koffi;
  } catch (e) {
    throw new EchoUnavailableError(
      `echo cancellation needs the koffi FFI (an npm dependency), which could not be loaded: ${(e as Error).message.split('\n')[0]}; reinstall the dependencies (npm ci)`,
      [(e as Error).message],
    );
  }
}

/** Loads libspeexdsp once; throws EchoUnavailableError naming the package when it (or koffi) cannot be loaded or bound. */
export function speexdsp(): SpeexLib {
  if (lib) return lib;
  const koffi = loadKoffi();
  const errors: string[] = [];
  for (const name of SONAMES) {
    let h: ReturnType<typeof koffi.load>;
    try { h = koffi.load(name); } catch (e) { errors.push(`${name}: ${(e as Error).message}`); continue; }
    try {
      if (!typesDeclared) {
        for (const t of ['SpeexEchoState', 'SpeexPreprocessState', 'SpeexResamplerState']) koffi.opaque(t);
        typesDeclared = true;
      }
      lib = {
        echoInit: h.func('SpeexEchoState *speex_echo_state_init(int frame_size, int filter_length)'),
        echoDestroy: h.func('void speex_echo_state_destroy(SpeexEchoState *st)'),
        echoCancellation: h.func('void speex_echo_cancellation(SpeexEchoState *st, const int16_t *rec, const int16_t *play, _Out_ int16_t *out)'),
        echoCtlInt: h.func('int speex_echo_ctl(SpeexEchoState *st, int request, _Inout_ int *ptr)'),
        echoCtlTaps: h.func('speex_echo_ctl', 'int', ['SpeexEchoState *', 'int', '_Out_ int32_t *']),
        echoReset: h.func('void speex_echo_state_reset(SpeexEchoState *st)'),
        ppInit: h.func('SpeexPreprocessState *speex_preprocess_state_init(int frame_size, int sampling_rate)'),
        ppDestroy: h.func('void speex_preprocess_state_destroy(SpeexPreprocessState *st)'),
        ppRun: h.func('int speex_preprocess_run(SpeexPreprocessState *st, _Inout_ int16_t *x)'),
        ppCtlInt: h.func('int speex_preprocess_ctl(SpeexPreprocessState *st, int request, _Inout_ int *ptr)'),
        ppCtlPtr: h.func('speex_preprocess_ctl', 'int', ['SpeexPreprocessState *', 'int', 'SpeexEchoState *']),
        rsInit: h.func('SpeexResamplerState *speex_resampler_init(uint32_t nb_channels, uint32_t in_rate, uint32_t out_rate, int quality, _Out_ int *err)'),
        rsDestroy: h.func('void speex_resampler_destroy(SpeexResamplerState *st)'),
        rsProcessInt: h.func('int speex_resampler_process_int(SpeexResamplerState *st, uint32_t channel_index, const int16_t *in, _Inout_ uint32_t *in_len, _Out_ int16_t *out, _Inout_ uint32_t *out_len)'),
        rsReset: h.func('int speex_resampler_reset_mem(SpeexResamplerState *st)'),
        rsSkipZeros: h.func('int speex_resampler_skip_zeros(SpeexResamplerState *st)'),
      };
    } catch (e) {
      // A library of that name without the functions this needs (another build, another version).
      errors.push(`${name}: ${(e as Error).message}`);
      continue;
    }
    return lib;
  }
  throw new EchoUnavailableError(
    `echo cancellation needs SpeexDSP (${SONAMES[0]}), which could not be loaded: install the Debian package libspeexdsp1 (apt-get install libspeexdsp1)`,
    errors,
  );
}

/** speex_echo_state + speex_preprocess (residual echo suppression) for one mono stream. */
export class SpeexEcho {
  private echo: unknown;
  private pre: unknown;
  private destroyed = false;

  constructor(readonly frameSize: number, readonly filterLength: number, readonly rate: number) {
    const s = speexdsp();
    this.echo = s.echoInit(frameSize, filterLength);
    if (!this.echo) throw new EchoUnavailableError('speex_echo_state_init failed');
    s.echoCtlInt(this.echo, SPEEX_ECHO_SET_SAMPLING_RATE, [rate]);
    this.pre = s.ppInit(frameSize, rate);
    const set = (req: number, v: number) => s.ppCtlInt(this.pre, req, [v]);
    // The residual echo suppressor is part of speex's denoiser (with it off, its gains are
    // all 1 and nothing is suppressed): on, with at most 6 dB taken from steady noise.
    set(SPEEX_PREPROCESS_SET_DENOISE, 1);
    set(SPEEX_PREPROCESS_SET_NOISE_SUPPRESS, -6);
    set(SPEEX_PREPROCESS_SET_AGC, 0);
    set(SPEEX_PREPROCESS_SET_VAD, 0);
    set(SPEEX_PREPROCESS_SET_DEREVERB, 0);
    set(SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, -45); // dB of residual echo suppression while only the far end talks
    set(SPEEX_PREPROCESS_SET_ECHO_SUPPRESS_ACTIVE, -15); // ... and while the near end talks too (speex's default)
    s.ppCtlPtr(this.pre, SPEEX_PREPROCESS_SET_ECHO_STATE, this.echo);
  }

  /** One frame: mic and aligned reference in, cleaned frame out (all frameSize samples). */
  process(mic: Int16Array, ref: Int16Array, out: Int16Array): void {
    const s = speexdsp();
    s.echoCancellation(this.echo, mic, ref, out);
    s.ppRun(this.pre, out);
  }

  /**
   * The adapted filter as taps (filterLength of them, tap k for a delay of k samples), in Speex's own scale
   * (a float build: 32767 times a gain it does not define): the shape of the room's echo, to be fitted to a level.
   */
  impulseResponse(): Int32Array {
    const s = speexdsp();
    const n = [0];
    s.echoCtlInt(this.echo, SPEEX_ECHO_GET_IMPULSE_RESPONSE_SIZE, n);
    const taps = new Int32Array(n[0]);
    s.echoCtlTaps(this.echo, SPEEX_ECHO_GET_IMPULSE_RESPONSE, taps);
    return taps;
  }

  /** Forget the adapted filter (a new room). */
  resetFilter(): void { speexdsp().echoReset(this.echo); }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const s = speexdsp();
    s.ppDestroy(this.pre);
    s.echoDestroy(this.echo);
  }
}

/** speex_resampler for one mono s16 stream. */
export class SpeexResampler {
  private st: unknown;
  private out = new Int16Array(0);

  constructor(readonly inRate: number, readonly outRate: number, quality = 5) {
    const s = speexdsp();
    const err = [0];
    this.st = s.rsInit(1, inRate, outRate, quality, err);
    if (!this.st) throw new EchoUnavailableError(`speex_resampler_init(${inRate} -> ${outRate}) failed: ${err[0]}`);
    s.rsSkipZeros(this.st);
  }

  /** Resamples `input` (continuing the stream); returns a view valid until the next call. */
  process(input: Int16Array): Int16Array {
    const s = speexdsp();
    const cap = Math.ceil((input.length * this.outRate) / this.inRate) + 16;
    if (this.out.length < cap) this.out = new Int16Array(cap);
    const inLen = [input.length];
    const outLen = [cap];
    s.rsProcessInt(this.st, 0, input, inLen, this.out, outLen);
    return this.out.subarray(0, outLen[0]);
  }

  /** A discontinuity: start the filter history afresh. */
  reset(): void { const s = speexdsp(); s.rsReset(this.st); s.rsSkipZeros(this.st); }

  destroy(): void { if (this.st) { speexdsp().rsDestroy(this.st); this.st = null; } }
}
