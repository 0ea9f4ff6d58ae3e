// SpeexDSP (libspeexdsp, Debian's libspeexdsp1) through koffi, a C FFI with
// prebuilt binaries for linux x64/arm64/arm: no compiler and no -dev package
// on the Pi, only the runtime library. What is used of it:
//   - speex_echo_*: the MDF (multidelay block frequency-domain) adaptive echo
//     canceller, run on 16 kHz frames with the reference aligned by the bulk
//     delay estimator (./delay.ts), so its filter only has to model the room;
//   - speex_preprocess_* with SET_ECHO_STATE: the residual echo suppressor
//     fed by the canceller's own estimate of what it left (AGC, VAD and
//     dereverb off, as they are by default, noise suppression limited to 6 dB:
//     the level of the user's voice is not ours to change);
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
const SPEEX_PREPROCESS_SET_NOISE_SUPPRESS = 18;
const SPEEX_PREPROCESS_SET_ECHO_SUPPRESS = 20;
const SPEEX_PREPROCESS_SET_ECHO_STATE = 24;

/**
 * libspeexdsp writes its warnings to stderr itself (fprintf), where a daemon's journal takes them as raw lines among
 * its JSON log; nothing here can catch them. So nothing that makes it warn is done: preprocess.c warns on every
 * SPEEX_PREPROCESS_SET_VAD ("The VAD has been replaced by a hack..."), even one that sets it off, so only what
 * differs from its defaults is set (denoise on, AGC, VAD and dereverb off are its defaults); and mdf.c resets its
 * filter with "The echo canceller started acting funny and got slapped (reset)" once its output (the foreground
 * filter's error, pre-emphasised) has been over 4 times the mic's power for 50 frames in a row. A filter that adds
 * echo (a delay that moved under it) is reset here first (FUNNY_FRAMES of output over FUNNY_RATIO times the mic),
 * and SpeexEcho.process says so, for the canceller to log.
 */
// Speex: 4 and 50, on its foreground filter's error before it may switch to the background filter; the output, after,
// can be far quieter (seen: Speex counted 50 frames in a row where the output was 0.1-29 dB over the mic).
const FUNNY_RATIO = 1;
const FUNNY_FRAMES = 25;
/** Speex's pre-emphasis (mdf.c: preemph = .9) and its floor on the mic's power (N * 10000 / 64, N = 2 frames). */
const PREEMPH = 0.9;

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
    // The residual echo suppressor is part of speex's denoiser (on by default; with it off, its gains are
    // all 1 and nothing is suppressed), with at most 6 dB taken from steady noise. AGC, VAD and dereverb are
    // off by default, and left so (see FUNNY_RATIO for why they are not set), as is the suppression while the
    // near end talks too (-15 dB).
    set(SPEEX_PREPROCESS_SET_NOISE_SUPPRESS, -6);
    set(SPEEX_PREPROCESS_SET_ECHO_SUPPRESS, -45); // dB of residual echo suppression while only the far end talks (default -40)
    s.ppCtlPtr(this.pre, SPEEX_PREPROCESS_SET_ECHO_STATE, this.echo);
  }

  private funny = 0; // frames in a row whose output was over FUNNY_RATIO times the mic (pre-emphasised)
  private memMic = 0; private memOut = 0;

  /**
   * One frame: mic and aligned reference in, cleaned frame out (all frameSize samples). Returns true when the
   * filter was reset because it had been adding echo (see FUNNY_RATIO): the caller logs it.
   */
  process(mic: Int16Array, ref: Int16Array, out: Int16Array): boolean {
    const s = speexdsp();
    s.echoCancellation(this.echo, mic, ref, out);
    let pm = 0, po = 0;
    for (let i = 0; i < mic.length; i++) {
      const m = mic[i] - PREEMPH * this.memMic, o = out[i] - PREEMPH * this.memOut;
      this.memMic = mic[i]; this.memOut = out[i];
      pm += m * m; po += o * o;
    }
    s.ppRun(this.pre, out);
    if (po > FUNNY_RATIO * (pm + (2 * this.frameSize * 10000) / 64)) this.funny++; else this.funny = 0;
    if (this.funny < FUNNY_FRAMES) return false;
    this.funny = 0;
    s.echoReset(this.echo);
    return true;
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
  resetFilter(): void { speexdsp().echoReset(this.echo); this.funny = 0; }

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
