// The calls src/audio/aec/speex.ts makes, through koffi, on the libspeexdsp.so.1
// of the machine it runs on: load it, init an echo state, cancel one frame.
// Run inside a Debian root with `node -e "$(cat speex-frame.cjs)"` from a
// directory whose node_modules holds koffi (require resolves from there), by
// test/arm.test.ts (trixie roots) and test/bench/bookworm-engine.sh.
// Prints: speex ran on ARCH (node VERSION), 160 samples out
const k = require('koffi');
const l = k.load('libspeexdsp.so.1');
k.opaque('SpeexEchoState');
const init = l.func('SpeexEchoState *speex_echo_state_init(int, int)');
const run = l.func('void speex_echo_cancellation(SpeexEchoState *, const int16_t *, const int16_t *, _Out_ int16_t *)');
const st = init(160, 1600);
const ref = new Int16Array(160).map((_, i) => Math.round(8000 * Math.sin(i / 3)));
const out = new Int16Array(160);
run(st, ref, ref, out);
console.log('speex ran on ' + process.arch + ' (node ' + process.version + '), ' + out.length + ' samples out');
