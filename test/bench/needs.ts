// What the tests that test/fresh-debian.test.ts's inner suite skips call on
// this machine, in one place: each of those tests reads its entry to decide
// whether to skip (and says which program is missing), and the fresh-root
// run reads the same entries to check, inside the fresh Debian root after
// `scripts/deps.sh test` ran there, that every program resolves (command -v)
// and belongs to the Debian package named here (dpkg -S). A test that cannot
// nest in that root is checked that way instead of by running; a program it
// starts calling goes here, or its test cannot see it.
//
// A program is named as the test or a bench script it runs calls it;
// programs of Debian's Essential set that every root has (bash, coreutils'
// cp/rm/mkdir, grep, sed, find) are left out.
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';

export interface TestNeeds {
  /** The test file. */ file: string;
  /** The variable that skips it (set in the fresh root, where it cannot nest). */ skipEnv: string;
  /**
   * Each program it calls (itself or through the bench scripts it runs) and
   * the Debian package that has it ("a|b": either; npm is Debian's npm
   * package, or part of NodeSource's nodejs).
   */
  programs: Record<string, string>;
}

/** util-linux's and coreutils' programs the root tests use to make their roots. */
const ROOT_TOOLS = { unshare: 'util-linux', mount: 'mount', chroot: 'coreutils', flock: 'util-linux' };
/** Running arm64 and armhf programs here (qemu-user through binfmt_misc). */
const QEMU = { 'qemu-aarch64-static': 'qemu-user-static', 'qemu-arm-static': 'qemu-user-static', 'update-binfmts': 'binfmt-support' };

export const NEEDS = {
  arm: {
    file: 'test/arm.test.ts', skipEnv: 'LIVE_SPEAKER_SKIP_ARM_TEST',
    programs: {
      ...ROOT_TOOLS, ...QEMU,
      debootstrap: 'debootstrap', // test/bench/arm-root.sh
      awk: 'mawk', comm: 'coreutils', // arm-root.sh: which of deps.sh's packages a root lacks
      pulseaudio: 'pulseaudio', pactl: 'pulseaudio-utils', pacat: 'pulseaudio-utils', parec: 'pulseaudio-utils', // the simulated card
      npm: 'npm|nodejs', patch: 'patch', diff: 'diffutils', tar: 'tar', gzip: 'gzip', // vendor/speaker/pack.sh --check
    },
  },
  bookworm: {
    file: 'test/bookworm.test.ts', skipEnv: 'LIVE_SPEAKER_SKIP_ARM_TEST',
    programs: {
      ...ROOT_TOOLS, ...QEMU,
      mmdebstrap: 'mmdebstrap', // test/bench/bookworm-engine.sh
      'arch-test': 'arch-test', // mmdebstrap, for a foreign architecture ("E: install arch-test for foreign architecture support")
      npm: 'npm|nodejs', tar: 'tar', // koffi's prebuilt binary for the arch (npm pack)
    },
  },
  systemd: {
    file: 'test/systemd.test.ts', skipEnv: 'LIVE_SPEAKER_SKIP_SYSTEMD_TEST',
    programs: {
      ...ROOT_TOOLS, nsenter: 'util-linux',
      debootstrap: 'debootstrap', // test/bench/trixie-minbase.sh
      tar: 'tar', awk: 'mawk',
      pulseaudio: 'pulseaudio', pactl: 'pulseaudio-utils', pacat: 'pulseaudio-utils', parec: 'pulseaudio-utils', // the simulated card
    },
  },
  freshDebian: {
    file: 'test/fresh-debian.test.ts', skipEnv: 'LIVE_SPEAKER_SKIP_FRESH_TEST',
    programs: {
      ...ROOT_TOOLS, mknod: 'coreutils', tar: 'tar',
      debootstrap: 'debootstrap', // test/bench/trixie-minbase.sh
      modprobe: 'kmod', // the overlay module, when the kernel has not loaded it
    },
  },
} satisfies Record<string, TestNeeds>;

export const ALL_NEEDS: TestNeeds[] = Object.values(NEEDS);

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
export function has(program: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', program], { env: { ...process.env, PATH: `${process.env.PATH ?? ''}:${PATH}` } }).status === 0;
}

/**
 * Why the test cannot run here for a missing program (the first one), or
 * false. `except`: programs it does without here (e.g. debootstrap when its
 * root is cached).
 */
export function missingProgram(n: TestNeeds, except: string[] = []): string | false {
  for (const [program, pkg] of Object.entries(n.programs)) {
    if (!except.includes(program) && !has(program)) return `${program} not installed (Debian package ${pkg}; scripts/deps.sh test installs what the tests need)`;
  }
  return false;
}

/**
 * A bash script that checks, on the machine it runs on, every program of
 * NEEDS: it resolves on the standard PATH and dpkg says it belongs to the
 * package named. One line per problem ("MISSING program package file" or
 * "OWNER program path owner package file"), then "checked N programs";
 * exit 1 on any problem.
 */
export function checkScript(needs: TestNeeds[] = ALL_NEEDS): string {
  const rows = needs.flatMap((n) => Object.entries(n.programs).map(([p, pkg]) => `${p} ${pkg} ${n.file}`));
  // One dpkg-query for all the paths: each call reads dpkg's whole file list.
  return `set -u
export PATH=${PATH}
progs=() pkgs=() files=() paths=() cands=()
while read -r prog pkg file; do
  path=$(command -v "$prog") || path=
  progs+=("$prog") pkgs+=("$pkg") files+=("$file") paths+=("$path")
  # With a merged /usr, dpkg may know /bin/X for /usr/bin/X; an alternative, its target.
  [ -n "$path" ] && cands+=("$path" "$(readlink -f "$path")" "\${path#/usr}")
done <<'EOF'
${rows.join('\n')}
EOF
declare -A own=()
if [ \${#cands[@]} -gt 0 ]; then
  while IFS= read -r line; do
    case "$line" in "diversion by "*) continue ;; esac
    own["\${line#*: }"]=\${line%%: /*}
  done < <(dpkg-query -S -- "\${cands[@]}" 2>/dev/null)
fi
arch=$(dpkg --print-architecture)
bad=0
for i in "\${!progs[@]}"; do
  prog=\${progs[i]} pkg=\${pkgs[i]} file=\${files[i]} path=\${paths[i]}
  [ -n "$path" ] || { echo "MISSING $prog $pkg $file"; bad=1; continue; }
  owner=
  for f in "$path" "$(readlink -f "$path")" "\${path#/usr}"; do
    [ -n "\${own[$f]:-}" ] && { owner=\${own[$f]}; break; }
  done
  ok=0
  for want in \${pkg//|/ }; do
    case ", \${owner//:$arch/}, " in *", $want, "*) ok=1 ;; esac
  done
  [ $ok = 1 ] || { echo "OWNER $prog $path \${owner:-none} $pkg $file"; bad=1; }
done
echo "checked \${#progs[@]} programs"
exit $bad
`;
}

/** What a root test needs of this machine beyond its programs. */
export interface RootTestNeeds {
  /** Why the skip variable may be set (said after `VAR=1`), if anything. */ skipWhy?: string;
  /** What root is needed for, as said in the skip reason. */ rootFor: string;
  /** A cached root's stamp: while it exists, debootstrap is not needed. */ cachedStamp?: string;
  /** Running foreign binaries: /proc/sys/fs/binfmt_misc must exist. */ binfmt?: boolean;
  /** The overlay filesystem (loaded with modprobe when the kernel has not yet). */ overlay?: boolean;
  /** unshare must be permitted with these flags (probed with `true`). */ unshare?: string[];
  /** A cgroup2 hierarchy must be mounted. */ cgroup2?: boolean;
}

/**
 * Why the root test `n` cannot run here (the first reason), or false: the
 * one skip check of the tests that build or boot Debian roots (arm,
 * bookworm, systemd, fresh-debian), in the order the reasons are cheapest
 * to find.
 */
export function rootTestSkip(n: TestNeeds, o: RootTestNeeds): string | false {
  if (process.env[n.skipEnv] === '1') return `${n.skipEnv}=1${o.skipWhy ? ` (${o.skipWhy})` : ''}`;
  if (process.platform !== 'linux') return 'needs Linux';
  if (process.getuid?.() !== 0) return `needs root (${o.rootFor})`;
  const missing = missingProgram(n, o.cachedStamp && existsSync(o.cachedStamp) ? ['debootstrap'] : []);
  if (missing) return missing;
  if (o.binfmt && !existsSync('/proc/sys/fs/binfmt_misc')) return 'this kernel has no binfmt_misc';
  if (o.overlay) {
    const overlay = () => readFileSync('/proc/filesystems', 'utf8').includes('\toverlay\n');
    if (!overlay()) spawnSync('modprobe', ['overlay']);
    if (!overlay()) return 'no overlay filesystem in this kernel';
  }
  if (o.unshare) {
    const probe = spawnSync('unshare', [...o.unshare, 'true'], { timeout: 10000 });
    const what = o.unshare.filter((f) => f !== '--fork').join(' ');
    if (probe.status !== 0) return `unshare ${what} is not permitted here (${String(probe.stderr).trim() || probe.status})`;
  }
  if (o.cgroup2 && !readFileSync('/proc/self/mounts', 'utf8').split('\n').some((l) => l.split(' ')[2] === 'cgroup2')) return 'no cgroup2 hierarchy mounted';
  return false;
}
