// The echo canceller's engine on Debian 12 (bookworm), arm64 and armhf, under
// qemu-user: koffi's prebuilt binary for the arch loads bookworm's own
// libspeexdsp1 (1.2.1) and Speex cancels a frame, the calls
// src/audio/aec/speex.ts makes. test/bench/bookworm-engine.sh builds the
// root (mmdebstrap: nodejs and libspeexdsp1 only, cached) and runs it. Only
// the engine: the rest of the daemon on bookworm is not tested here
// (test/arm.test.ts runs all of it on trixie).
//
// Skipped, with the reason, where test/arm.test.ts is (LIVE_SPEAKER_SKIP_ARM_TEST=1,
// no root, no qemu-user-static or binfmt_misc) or without mmdebstrap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const has = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;

function skipReason(qemu: string): string | false {
  if (process.env.LIVE_SPEAKER_SKIP_ARM_TEST === '1') return 'LIVE_SPEAKER_SKIP_ARM_TEST=1';
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return 'needs root (mmdebstrap, chroot, binfmt_misc)';
  if (!has('mmdebstrap')) return 'mmdebstrap not installed (scripts/deps.sh test)';
  if (!existsSync(`/usr/bin/qemu-${qemu}-static`)) return `qemu-${qemu}-static not installed (Debian: qemu-user-static binfmt-support)`;
  if (!existsSync('/proc/sys/fs/binfmt_misc')) return 'this kernel has no binfmt_misc';
  return false;
}

for (const [deb, qemu, node] of [['arm64', 'aarch64', 'arm64'], ['armhf', 'arm', 'arm']] as const) {
  test(`bookworm ${deb}: the echo canceller's engine runs there (koffi's prebuilt binary loads bookworm's libspeexdsp1 and Speex cancels a frame)`,
    { skip: skipReason(qemu), timeout: 900_000 }, async () => {
      const r = await new Promise<{ code: number; out: string }>((resolve) => {
        execFile('bash', [join(REPO, 'test', 'bench', 'bookworm-engine.sh'), deb], { timeout: 840_000, killSignal: 'SIGKILL', maxBuffer: 16 << 20 },
          (err, stdout, stderr) => resolve({ code: err ? (typeof (err as { code?: unknown }).code === 'number' ? (err as { code: number }).code : -1) : 0, out: `${stdout}\n${stderr}` }));
      });
      assert.equal(r.code, 0, `bookworm-engine.sh ${deb} failed:\n${r.out}`);
      assert.match(r.out, new RegExp(`libc6 2\\.36[^,]* ${deb}, libspeexdsp1 1\\.2\\.1[^,]* ${deb}`), `a bookworm root of ${deb}:\n${r.out}`);
      assert.match(r.out, new RegExp(`speex ran on ${node} \\(node v\\d+[^)]*\\), 160 samples out`), r.out);
    });
}
