// The echo canceller's engine on Debian 12 (bookworm), arm64 and armhf, under
// qemu-user: koffi's prebuilt binary for the arch loads bookworm's own
// libspeexdsp1 (1.2.1) and Speex cancels a frame, the calls
// src/audio/aec/speex.ts makes. test/bench/bookworm-engine.sh builds the
// root (mmdebstrap: nodejs and libspeexdsp1 only, cached) and runs it. Only
// the engine: the rest of the daemon on bookworm is not tested here
// (test/arm.test.ts runs all of it on trixie).
//
// Skipped, with the reason, where test/arm.test.ts is (LIVE_SPEAKER_SKIP_ARM_TEST=1,
// no root, no binfmt_misc) or without a program it calls: the list is
// test/bench/needs.ts's NEEDS.bookworm (mmdebstrap, arch-test, qemu-user-static,
// ...), which test/fresh-debian.test.ts checks in a fresh root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NEEDS, rootTestSkip } from './bench/needs.js';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
function skipReason(): string | false {
  return rootTestSkip(NEEDS.bookworm, { rootFor: 'mmdebstrap, chroot, binfmt_misc', binfmt: true });
}

for (const [deb, node] of [['arm64', 'arm64'], ['armhf', 'arm']] as const) {
  test(`bookworm ${deb}: the echo canceller's engine runs there (koffi's prebuilt binary loads bookworm's libspeexdsp1 and Speex cancels a frame)`,
    { skip: skipReason(), timeout: 900_000 }, async () => {
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile('bash', [join(REPO, 'test', 'bench', 'bookworm-engine.sh'), deb], { timeout: 840_000, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
          (err, stdout, stderr) => resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0, out: `${stdout}\n${stderr}` }));
      });
      assert.equal(r.code, 0, `bookworm-engine.sh ${deb} failed:\n${r.out}`);
      assert.match(r.out, new RegExp(`libc6 2\\.36[^,]* ${deb}, libspeexdsp1 1\\.2\\.1[^,]* ${deb}`), `a bookworm root of ${deb}:\n${r.out}`);
      assert.match(r.out, new RegExp(`speex ran on ${node} \\(node v\\d+[^)]*\\), 160 samples out`), r.out);
    });
}
