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
 * libspeexdsp writes its warnings to C's stderr itself (os_support.h: speex_warning is fprintf(stderr, ...)), where a
 * daemon's journal takes them as raw lines among its JSON log. Two things keep them out. Nothing that makes it warn
 * for no reason is done: preprocess.c warns on every SPEEX_PREPROCESS_SET_VAD ("The VAD has been replaced by a
 * hack..."), even one that sets it off, so only what differs from its defaults is set (denoise on, AGC, VAD and
 * dereverb off are its defaults). And every call into it runs with C's stderr pointed at a private stream (StderrTrap):
 * what it printed there is handed to the caller (onPrint), to be logged as JSON. mdf.c's "The echo canceller started
 * acting funny and got slapped (reset)" is one it prints in use: on a filter whose output is over 4 times the mic's
 * power for 50 frames in a row, or at once on one whose powers blow up (a reference far louder than the one it learnt
 * its gain on); SpeexEcho.process reports that reset. A filter that adds echo is also reset here a little earlier
 * (FUNNY_FRAMES of output over FUNNY_RATIO times the mic).
 */
// Speex: 4 and 50, on its foreground filter's error before it may switch to the background filter; the output, after,
// can be far quieter (seen: Speex counted 50 frames in a row where the output was 0.1-29 dB over the mic).
const FUNNY_RATIO = 1;
const FUNNY_FRAMES = 25;
/** Speex's pre-emphasis (mdf.c: preemph = .9) and its floor on the mic's power (N * 10000 / 64, N = 2 frames). */
const PREEMPH = 0.9;

/** What libspeexdsp prints in one call is kept up to this many bytes (its warnings are one line of ~100 bytes). */
const PRINT_BUF = 512;

/**
 * C's `stderr` (glibc's global `FILE *stderr`, the variable speex_warning's fprintf reads) pointed at a private
 * stream around each call into libspeexdsp, and back right after, also when the call throws: Node's own fatal
 * messages go through the same variable. The variable is found in the process's global scope (dlopen(NULL)): that
 * is where libspeexdsp's reference to it was bound, to the executable's copy of it when it has one (node does: a
 * copy relocation), which libc's own symbol would miss. The private stream is an unbuffered fmemopen on
 * PRINT_BUF bytes of C memory that is also a typed array here, so a print lands there at once and is seen by
 * reading its first byte: per frame, the swap is two stores of pointers made at load and the check one load (no
 * call, no system call, no allocation; measured on x64: 0.03 us a frame, where an ftell on a tmpfile was 1.1 us, an lseek).
 * Not on musl (its stderr is a const pointer in read-only memory) nor where any of it cannot be found: there
 * libspeexdsp prints where it always did.
 */
class StderrTrap {
  private constructor(
    /** Store the private stream (enter) or the original one (leave) into the variable. */
    readonly enter: () => void,
    readonly leave: () => void,
    private readonly file: unknown,
    private readonly mem: Uint8Array,
    private readonly rewind: Fn,
    private readonly clearerr: Fn,
  ) {}

  static open(koffi: typeof Koffi): StderrTrap | null {
    try {
      const self = koffi.load(null);
      self.func('const char *gnu_get_libc_version(void)'); // glibc, or no swap (throws elsewhere)
      const at = self.symbol('stderr');
      if (!at) return null;
      const libc = koffi.load('libc.so.6');
      koffi.opaque('SpeexTrapFILE');
      const buf = libc.func('void *malloc(size_t n)')(PRINT_BUF);
      if (!buf) return null;
      const mem = new Uint8Array(koffi.view(buf, PRINT_BUF));
      mem.fill(0);
      const file = libc.func('SpeexTrapFILE *fmemopen(void *buf, size_t size, const char *mode)')(buf, PRINT_BUF, 'w');
      if (!file) return null;
      // Unbuffered: each fprintf reaches mem before it returns (_IONBF is 2 in glibc).
      if (libc.func('int setvbuf(SpeexTrapFILE *f, void *buf, int mode, size_t size)')(file, null, 2, 0) !== 0) return null;
      const rewind = libc.func('void rewind(SpeexTrapFILE *f)'), clearerr = libc.func('void clearerr(SpeexTrapFILE *f)');
      const priv = koffi.address(file);
      if (koffi.sizeof('void *') === 8) {
        const cell = new BigUint64Array(koffi.view(at, 8));
        const orig = cell[0];
        return new StderrTrap(() => { cell[0] = priv; }, () => { cell[0] = orig; }, file, mem, rewind, clearerr);
      }
      const cell = new Uint32Array(koffi.view(at, 4));
      const orig = cell[0], p = Number(priv);
      return new StderrTrap(() => { cell[0] = p; }, () => { cell[0] = orig; }, file, mem, rewind, clearerr);
    } catch {
      return null;
    }
  }

  /** What libspeexdsp printed since the last take (its first PRINT_BUF - 1 bytes, trimmed), or null. */
  take(): string | null {
    if (this.mem[0] === 0) return null;
    let n = this.mem.indexOf(0);
    if (n < 0) n = PRINT_BUF;
    const text = Buffer.from(this.mem.subarray(0, n)).toString('utf8').trim().replace(/\s*\n\s*/g, ' | ');
    this.rewind(this.file);
    this.clearerr(this.file); // a print past the end set its error flag
    this.mem.fill(0, 0, Math.min(PRINT_BUF, n + 1));
    return n >= PRINT_BUF - 1 ? `${text} [cut at ${PRINT_BUF - 1} bytes]` : text;
  }
}

let trap: StderrTrap | null = null;

/** Whether what libspeexdsp prints is routed (glibc) rather than left to go to the process's stderr (see StderrTrap). */
export function speexStderrRouted(): boolean { speexdsp(); return trap !== null; }

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
    trap = StderrTrap.open(koffi);
    return lib;
  }
  throw new EchoUnavailableError(
    `echo cancellation needs SpeexDSP (${SONAMES[0]}), which could not be loaded: install the Debian package libspeexdsp1 (apt-get install libspeexdsp1)`,
    errors,
  );
}

/** "acting funny": mdf.c's line as it resets its own filter. */
const SPEEX_RESET = /acting funny/;

/**
 * Runs `f` (calls into libspeexdsp) with C's stderr on StderrTrap's stream, restored even when `f` throws. Not a
 * closure per frame: the per-frame callers (SpeexEcho.process, SpeexResampler.process) inline the same.
 */
function trapped<T>(f: () => T): T {
  const t = trap;
  t?.enter();
  try { return f(); } finally { t?.leave(); }
}

/**
 * speex_echo_state + speex_preprocess (residual echo suppression) for one mono stream. onPrint: what libspeexdsp
 * printed during a call on this one (or on a resampler since), for the caller to log; without it, it is dropped.
 */
export class SpeexEcho {
  private echo: unknown;
  private pre: unknown;
  private destroyed = false;

  constructor(readonly frameSize: number, readonly filterLength: number, readonly rate: number, private readonly onPrint?: (text: string) => void) {
    const s = speexdsp();
    this.echo = trapped(() => s.echoInit(frameSize, filterLength));
    this.said();
    if (!this.echo) throw new EchoUnavailableError('speex_echo_state_init failed');
    trapped(() => {
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
    });
    this.said();
  }

  private funny = 0; // frames in a row whose output was over FUNNY_RATIO times the mic (pre-emphasised)
  private memMic = 0; private memOut = 0;

  /** Hands on what libspeexdsp printed (StderrTrap); true when it was its "acting funny" (it reset its filter itself). */
  private said(): boolean {
    const text = trap?.take();
    if (!text) return false;
    this.onPrint?.(text);
    return SPEEX_RESET.test(text);
  }

  /**
   * One frame: mic and aligned reference in, cleaned frame out (all frameSize samples). Returns who reset the
   * filter when it was reset because it had been adding echo: 'here' (see FUNNY_RATIO), 'speexdsp' (its "acting
   * funny", handed to onPrint), or null. The caller logs it.
   */
  process(mic: Int16Array, ref: Int16Array, out: Int16Array): 'here' | 'speexdsp' | null {
    const s = speexdsp();
    const t = trap;
    t?.enter();
    try { s.echoCancellation(this.echo, mic, ref, out); } finally { t?.leave(); }
    let pm = 0, po = 0;
    for (let i = 0; i < mic.length; i++) {
      const m = mic[i] - PREEMPH * this.memMic, o = out[i] - PREEMPH * this.memOut;
      this.memMic = mic[i]; this.memOut = out[i];
      pm += m * m; po += o * o;
    }
    t?.enter();
    try { s.ppRun(this.pre, out); } finally { t?.leave(); }
    if (this.said()) { this.funny = 0; return 'speexdsp'; }
    if (po > FUNNY_RATIO * (pm + (2 * this.frameSize * 10000) / 64)) this.funny++; else this.funny = 0;
    if (this.funny < FUNNY_FRAMES) return null;
    this.funny = 0;
    trapped(() => s.echoReset(this.echo));
    this.said();
    return 'here';
  }

  /**
   * The adapted filter as taps (filterLength of them, tap k for a delay of k samples), in Speex's own scale
   * (a float build: 32767 times a gain it does not define): the shape of the room's echo, to be fitted to a level.
   */
  impulseResponse(): Int32Array {
    const s = speexdsp();
    const n = [0];
    trapped(() => s.echoCtlInt(this.echo, SPEEX_ECHO_GET_IMPULSE_RESPONSE_SIZE, n));
    const taps = new Int32Array(n[0]);
    trapped(() => s.echoCtlTaps(this.echo, SPEEX_ECHO_GET_IMPULSE_RESPONSE, taps));
    this.said();
    return taps;
  }

  /** Forget the adapted filter (a new room). */
  resetFilter(): void { trapped(() => speexdsp().echoReset(this.echo)); this.said(); this.funny = 0; }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    const s = speexdsp();
    trapped(() => { s.ppDestroy(this.pre); s.echoDestroy(this.echo); });
    this.said();
  }
}

/**
 * speex_resampler for one mono s16 stream. Its calls run with C's stderr on StderrTrap's stream too (resample.c prints
 * nothing today); what they printed is handed on by the next SpeexEcho call (its onPrint).
 */
export class SpeexResampler {
  private st: unknown;
  private out = new Int16Array(0);

  constructor(readonly inRate: number, readonly outRate: number, quality = 5) {
    const s = speexdsp();
    const err = [0];
    this.st = trapped(() => s.rsInit(1, inRate, outRate, quality, err));
    if (!this.st) throw new EchoUnavailableError(`speex_resampler_init(${inRate} -> ${outRate}) failed: ${err[0]}`);
    trapped(() => s.rsSkipZeros(this.st));
  }

  /** Resamples `input` (continuing the stream); returns a view valid until the next call. */
  process(input: Int16Array): Int16Array {
    const s = speexdsp();
    const cap = Math.ceil((input.length * this.outRate) / this.inRate) + 16;
    if (this.out.length < cap) this.out = new Int16Array(cap);
    const inLen = [input.length];
    const outLen = [cap];
    const t = trap;
    t?.enter();
    try { s.rsProcessInt(this.st, 0, input, inLen, this.out, outLen); } finally { t?.leave(); }
    return this.out.subarray(0, outLen[0]);
  }

  /** A discontinuity: start the filter history afresh. */
  reset(): void { const s = speexdsp(); trapped(() => { s.rsReset(this.st); s.rsSkipZeros(this.st); }); }

  destroy(): void { if (this.st) { const s = speexdsp(); trapped(() => s.rsDestroy(this.st)); this.st = null; } }
}
