// Real-kernel test harness: boots Debian's kernel under QEMU (TCG, no network card), shares the
// host's root read-only over 9p, chroots into it and runs a bash script there. See
// shared/docs/kernel-vm.md for the recipe this follows.
//
// Layout of one run's results dir (host: `outDir`, guest: $VM_OUT = /run/vm-out):
//   .harness/script.sh   the caller's script
//   .harness/run.sh      wrapper run inside the chroot (env, cwd, lo up)
//   .harness/output.log  the script's stdout+stderr (streamed to onOutput by polling)
//   .harness/exit-code   written by run.sh after the script exits
//   anything else        artifacts the script wrote to $VM_OUT

import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  readdirSync,
  renameSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { fileURLToPath } from 'node:url';

export interface RunInVmOptions {
  /** bash script run inside the chroot, cwd = repo root (read-only). */
  script: string;
  /** Kill the VM after this long (default 20 min). */
  timeoutMs?: number;
  /** Guest memory (default 2048). */
  memoryMiB?: number;
  /** Receives the script's output (stdout+stderr merged) as it arrives, in whole lines where possible. */
  onOutput?: (chunk: string) => void;
  /** Extra environment for the script (HOME, PATH, VM_OUT, TMPDIR are set by the harness). */
  env?: Record<string, string>;
  /**
   * Gives the VM one network card on a restricted QEMU user network (restrict=on: it reaches nothing), through
   * which HOST_FORWARD_ADDRESS:`guestPort` inside the VM reaches 127.0.0.1:`hostPort` on the host, and only that.
   * The card is up at VM_NIC_ADDRESS before the script starts. Without this option the VM has no network card.
   */
  forwardToHost?: { guestPort: number; hostPort: number };
}

export interface RunInVmResult {
  /** Exit code of the script (read from the results share). */
  exitCode: number;
  /** The script's whole output. */
  output: string;
  /** Host path of the results share ($VM_OUT inside the VM). Not deleted by the harness. */
  outDir: string;
  /** Milliseconds from starting QEMU until the script was about to start. */
  bootMs: number;
  /** Milliseconds from starting QEMU until QEMU exited. */
  totalMs: number;
}

/** Thrown when the VM could not run the script to completion (timeout, crash, missing exit code). */
export class VmError extends Error {
  constructor(
    message: string,
    readonly output: string,
    readonly console: string,
    readonly outDir: string,
  ) {
    super(message);
    this.name = 'VmError';
  }
}

/** Path of the writable results share inside the VM (also exported to the script as $VM_OUT). */
export const VM_OUT_GUEST = '/run/vm-out';

/** With `forwardToHost`: the address inside the VM that leads to the host's loopback, and the VM's own. */
export const HOST_FORWARD_ADDRESS = '10.0.2.100';
export const VM_NIC_ADDRESS = '10.0.2.15/24';

/**
 * QEMU's -netdev argument for `forwardToHost`. A guestfwd to a chardev (`-tcp:127.0.0.1:port`) is ONE stream that
 * QEMU opens once: every connection the guest makes to the address would be written into it, so a second client
 * (kube-proxy and the agent each hold their own) corrupts both. `cmd:` starts one relay per guest connection; the
 * relay, bash's /dev/tcp, connects to 127.0.0.1 and nowhere else, and ends both sides when either closes.
 */
export function forwardNetdev(forward: { guestPort: number; hostPort: number }): string {
  for (const port of [forward.guestPort, forward.hostPort]) {
    if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`forwardToHost: bad port ${port}`);
  }
  // bash runs asynchronous commands with stdin from /dev/null: fd 4 keeps the guest connection for the writer.
  const relay =
    `exec 2>/dev/null 4<&0 3<>/dev/tcp/127.0.0.1/${forward.hostPort} || exit 1; ` +
    'cat <&3 & r=$!; cat <&4 >&3 & w=$!; wait -n; kill $r $w';
  return `user,id=n0,restrict=on,guestfwd=tcp:${HOST_FORWARD_ADDRESS}:${forward.guestPort}-cmd:/bin/bash -c '${relay}'`;
}

const DEFAULT_TIMEOUT_MS = 20 * 60 * 1000;
const QEMU = 'qemu-system-x86_64';
const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];
// Bump when init or the initramfs layout changes: part of the cache key.
const INITRAMFS_FORMAT = 5;

/** Modules the VM needs; dependencies (modules.dep) and soft dependencies are added automatically. */
export const REQUIRED_MODULES = [
  'crc32c_generic', // before libcrc32c (softdep "crc32c"), else "unknown symbol"
  'libcrc32c',
  'nf_defrag_ipv4',
  'nf_defrag_ipv6',
  'nf_conntrack',
  'ip_vs',
  'ip_vs_rr',
  'ip_vs_wrr',
  'veth',
  'dummy',
  'virtio',
  'virtio_ring',
  'virtio_pci',
  'netfs',
  'fscache',
  '9pnet',
  '9pnet_virtio',
  '9p',
] as const;

/** Loaded when the kernel ships them. (SCTP services need no `sctp` module: IP_VS_PROTO_SCTP is in ip_vs.) */
export const OPTIONAL_MODULES = [
  'ip_vs_sh',
  'ip_vs_lc',
  'ip_vs_wlc',
  'ip_vs_sed',
  'ip_vs_nq',
  'ip_vs_dh',
  'ip_vs_mh',
  'ip_vs_fo',
  'ip_vs_ovf',
] as const;

/**
 * What kube-proxy's IPVS mode needs (shared/docs/real-kubernetes.md): nf_tables for iptables' nft backend, the
 * xtables matches and targets its rules use, ip_set types. Loaded at boot from the host root with ONE
 * `modprobe -a` (one process per module over 9p took 82 s); names the kernel lacks are left out. Without
 * ipt_REJECT every iptables-restore fails ("Extension REJECT revision 0 not supported").
 */
export const KUBE_PROXY_MODULES = [
  'nf_tables',
  'nft_compat',
  'nft_chain_nat',
  'nft_ct',
  'nft_masq',
  'nft_nat',
  'nf_nat',
  'x_tables',
  'xt_comment',
  'xt_set',
  'xt_MASQUERADE',
  'xt_addrtype',
  'xt_mark',
  'xt_conntrack',
  'ipt_REJECT',
  'ip6t_REJECT',
  'ip_set',
  'ip_set_hash_ip',
  'ip_set_hash_ipport',
  'ip_set_hash_ipportip',
  'ip_set_hash_ipportnet',
  'ip_set_hash_net',
  'ip_set_bitmap_port',
] as const;

/** The repository root (nearest ancestor of this file with a package.json). */
export function repoRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('test/vm/harness: cannot find the repository root (package.json)');
    dir = up;
  }
}

function which(cmd: string): string | undefined {
  for (const d of (process.env.PATH ?? '/usr/bin:/bin').split(':')) {
    if (!d) continue;
    const p = join(d, cmd);
    try {
      if (statSync(p).isFile()) return p;
    } catch {
      /* next */
    }
  }
  return undefined;
}

/** The newest kernel in /boot that has a matching /lib/modules tree with IPVS. */
export function findKernel(): { version: string; image: string; modulesDir: string } | undefined {
  let names: string[];
  try {
    names = readdirSync('/boot');
  } catch {
    return undefined;
  }
  const versions = names
    .filter((n) => n.startsWith('vmlinuz-'))
    .map((n) => n.slice('vmlinuz-'.length))
    .filter((v) => existsSync(join('/lib/modules', v, 'modules.dep')))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
  const version = versions.at(-1);
  if (version === undefined) return undefined;
  return { version, image: join('/boot', `vmlinuz-${version}`), modulesDir: join('/lib/modules', version) };
}

/** Problems that prevent booting the test VM (empty when it can boot). */
export function vmPrerequisiteProblems(): string[] {
  const problems: string[] = [];
  if (process.platform !== 'linux' || process.arch !== 'x64') problems.push(`needs linux/x64 (have ${process.platform}/${process.arch})`);
  if (!which(QEMU)) problems.push(`${QEMU} not found (Debian package qemu-system-x86)`);
  const k = findKernel();
  if (!k) problems.push('no /boot/vmlinuz-<version> with /lib/modules/<version>/modules.dep (Debian package linux-image-amd64)');
  else if (!existsSync(join(k.modulesDir, 'kernel/net/netfilter/ipvs/ip_vs.ko')) && !/\bip_vs\.ko/.test(readFileSync(join(k.modulesDir, 'modules.dep'), 'utf8')))
    problems.push(`kernel ${k.version} has no ip_vs module`);
  if (!BUSYBOX_CANDIDATES.some((p) => existsSync(p))) problems.push('busybox not found (Debian package busybox-static)');
  else if (!isStatic(BUSYBOX_CANDIDATES.find((p) => existsSync(p))!)) problems.push('busybox is not statically linked (Debian package busybox-static)');
  return problems;
}

function isStatic(path: string): boolean {
  // A dynamically linked ELF has a PT_INTERP program header.
  const buf = readFileSync(path);
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2) return false;
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  for (let i = 0; i < phnum; i++) if (buf.readUInt32LE(phoff + i * phentsize) === 3) return false;
  return true;
}

// ---------------------------------------------------------------------------------------------
// Module resolution

interface ModuleDb {
  /** module name -> path relative to the modules dir */
  path: Map<string, string>;
  /** module name -> direct+indirect hard deps (names) as in modules.dep */
  deps: Map<string, string[]>;
  builtin: Set<string>;
  alias: Map<string, string[]>;
}

const modName = (p: string): string =>
  p.slice(p.lastIndexOf('/') + 1).replace(/\.ko(\.(xz|zst|gz))?$/, '').replace(/-/g, '_');

function loadModuleDb(modulesDir: string): ModuleDb {
  const path = new Map<string, string>();
  const deps = new Map<string, string[]>();
  for (const line of readFileSync(join(modulesDir, 'modules.dep'), 'utf8').split('\n')) {
    const i = line.indexOf(':');
    if (i < 0) continue;
    const mod = line.slice(0, i).trim();
    const name = modName(mod);
    path.set(name, mod);
    deps.set(name, line.slice(i + 1).trim().split(/\s+/).filter(Boolean).map(modName));
  }
  const builtin = new Set<string>();
  try {
    for (const l of readFileSync(join(modulesDir, 'modules.builtin'), 'utf8').split('\n')) if (l.trim()) builtin.add(modName(l.trim()));
  } catch {
    /* optional */
  }
  const alias = new Map<string, string[]>();
  try {
    for (const l of readFileSync(join(modulesDir, 'modules.alias'), 'utf8').split('\n')) {
      const m = /^alias (\S+) (\S+)$/.exec(l);
      if (!m) continue;
      const list = alias.get(m[1]!) ?? [];
      list.push(modName(m[2]!));
      alias.set(m[1]!, list);
    }
  } catch {
    /* optional */
  }
  return { path, deps, builtin, alias };
}

function softPreDeps(version: string, db: ModuleDb, name: string): string[] {
  let out: string;
  try {
    out = execFileSync('modinfo', ['-k', version, '-F', 'softdep', name], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  } catch {
    return [];
  }
  const result: string[] = [];
  for (const line of out.split('\n')) {
    const m = /pre:\s*(.*?)(\s+post:.*)?$/.exec(line.trim());
    if (!m) continue;
    for (const want of m[1]!.split(/\s+/).filter(Boolean)) {
      const n = want.replace(/-/g, '_');
      if (db.path.has(n)) result.push(n);
      else {
        const cands = (db.alias.get(want) ?? []).filter((c) => db.path.has(c));
        const pick = cands.find((c) => c.endsWith('_generic')) ?? cands[0];
        if (pick) result.push(pick);
      }
    }
  }
  return result;
}

/** Resolves the module list into a load order (dependencies first); builtins are dropped. */
export function resolveModules(version: string, modulesDir: string): string[] {
  const db = loadModuleDb(modulesDir);
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (name: string, chain: string[]): void => {
    if (state.get(name) === 'done' || db.builtin.has(name)) return;
    if (state.get(name) === 'visiting') return; // cycle through softdeps: ignore
    if (!db.path.has(name)) throw new Error(`kernel ${version}: module ${name} not found (needed by ${chain.join(' <- ') || 'harness'})`);
    state.set(name, 'visiting');
    for (const d of softPreDeps(version, db, name)) visit(d, [name, ...chain]);
    for (const d of db.deps.get(name) ?? []) visit(d, [name, ...chain]);
    state.set(name, 'done');
    order.push(name);
  };
  for (const m of REQUIRED_MODULES) visit(m, []);
  for (const m of OPTIONAL_MODULES) if (db.path.has(m)) visit(m, []);
  return order.map((n) => db.path.get(n)!);
}

// ---------------------------------------------------------------------------------------------
// initramfs (newc cpio, written here so no cpio/find tools are needed)

class Cpio {
  private parts: Buffer[] = [];
  private ino = 1;
  private entry(name: string, mode: number, data: Buffer, rdev: [number, number] = [0, 0]): void {
    const nameBuf = Buffer.from(name + '\0');
    const hex = (n: number): string => n.toString(16).padStart(8, '0');
    const header =
      '070701' +
      [this.ino++, mode, 0, 0, 1, 0, data.length, 0, 0, rdev[0], rdev[1], nameBuf.length, 0].map(hex).join('');
    this.parts.push(Buffer.from(header, 'ascii'), nameBuf);
    this.pad();
    this.parts.push(data);
    this.pad();
  }
  private size = (): number => this.parts.reduce((s, b) => s + b.length, 0);
  private pad(): void {
    const r = this.size() % 4;
    if (r) this.parts.push(Buffer.alloc(4 - r));
  }
  dir(name: string): void {
    this.entry(name, 0o040755, Buffer.alloc(0));
  }
  file(name: string, data: Buffer, perm = 0o644): void {
    this.entry(name, 0o100000 | perm, data);
  }
  chardev(name: string, major: number, minor: number, perm = 0o600): void {
    this.entry(name, 0o020000 | perm, Buffer.alloc(0), [major, minor]);
  }
  finish(): Buffer {
    this.entry('TRAILER!!!', 0, Buffer.alloc(0));
    const b = Buffer.concat(this.parts);
    const r = b.length % 512;
    return r ? Buffer.concat([b, Buffer.alloc(512 - r)]) : b;
  }
}

// Falls back to busybox's modprobe (initramfs modules only) until the host root is mounted.
const MODPROBE_HOST = `#!/bin/busybox sh
[ -d /host/lib/modules ] && exec /bin/busybox chroot /host /sbin/modprobe "$@"
exec /bin/busybox modprobe "$@"
`;

const INIT_SCRIPT = String.raw`#!/bin/busybox sh
/bin/busybox mkdir -p /proc /sys /dev /host /sbin /usr/bin /usr/sbin /tmp
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
echo "vm-init: kernel $(uname -r), loading modules"
while read -r m; do
  insmod "/lib/modules/$m" || echo "vm-init: insmod $m failed"
done < /etc/modules.order
die() { echo "vm-init: FATAL: $*"; sync; poweroff -f; }
mount9p() { # tag dir opts
  i=0
  until mount -t 9p -o "trans=virtio,version=9p2000.L,msize=262144$3" "$1" "$2"; do
    i=$((i+1)); [ "$i" -ge 50 ] && die "cannot mount 9p share $1"; sleep 0.1
  done
}
# cache=loose (not in the recipe): the root does not change during a run, and without it every
# stat/open/read is a 9p round trip; importing @kubernetes/client-node took minutes instead of ~1 min.
mount9p hostroot /host ,ro,cache=loose
mount -t proc proc /host/proc || die "mount /proc"
mount -t sysfs sysfs /host/sys || die "mount /sys"
mount -t devtmpfs devtmpfs /host/dev || die "mount /dev"
mkdir -p /host/dev/shm /host/dev/pts
mount -t tmpfs -o mode=1777,nosuid,nodev shm /host/dev/shm || die "mount /dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666 devpts /host/dev/pts || true
# The guest's /tmp is a fresh tmpfs, which would hide a checkout that lives under the host's /tmp (CI may
# clone there): keep the host's /tmp reachable at /run/host-tmp for run.sh to bind back.
mkdir -p /orig-tmp
mount -o bind /host/tmp /orig-tmp || die "bind the host's /tmp"
mount -t tmpfs -o mode=1777 tmpfs /host/tmp || die "mount /tmp"
mount -t tmpfs -o mode=0755 tmpfs /host/run || die "mount /run"
mkdir -p /host/run/host-tmp
mount -o bind /orig-tmp /host/run/host-tmp || die "bind the host's /tmp back"
mkdir -p /host${VM_OUT_GUEST}
mount9p out /host${VM_OUT_GUEST} ""
# Kernel module auto-loading (iptables extensions, ip_set types) runs /sbin/modprobe in this initramfs, whose
# busybox only knows the modules copied here: /lib/modprobe-host runs the host's modprobe in the chroot, where
# /lib/modules is the host's tree for this kernel and /sys is the VM's sysfs (mounted above).
ln -sf /lib/modprobe-host /sbin/modprobe
echo /sbin/modprobe > /proc/sys/kernel/modprobe
t0=$(date +%s)
chroot /host /sbin/modprobe -a $(cat /etc/kube-proxy-modules) || echo "vm-init: modprobe -a of kube-proxy's modules failed"
echo "vm-init: kube-proxy's modules loaded in $(( $(date +%s) - t0 )) s"
ip link set lo up || die "lo up"
[ -f /host${VM_OUT_GUEST}/.harness/run.sh ] || die "no run.sh on the results share"
echo "@@VM-READY@@"
chroot /host /bin/bash ${VM_OUT_GUEST}/.harness/run.sh </dev/null >/dev/console 2>&1
echo "vm-init: script finished (wrapper rc=$?), powering off"
sync
poweroff -f
sleep 10
`;

/** Builds (or reuses) the cached initramfs; returns its path. */
export function ensureInitramfs(): { path: string; kernel: NonNullable<ReturnType<typeof findKernel>>; modules: string[] } {
  const kernel = findKernel();
  if (!kernel) throw new Error('no kernel found in /boot: run .ci/setup');
  const modules = resolveModules(kernel.version, kernel.modulesDir);
  const db = loadModuleDb(kernel.modulesDir);
  const kubeProxyModules = KUBE_PROXY_MODULES.filter((m) => db.path.has(m) || db.builtin.has(m));
  const busybox = BUSYBOX_CANDIDATES.find((p) => existsSync(p));
  if (!busybox) throw new Error('busybox not found: run .ci/setup');
  const key = createHash('sha256')
    .update(
      JSON.stringify({ f: INITRAMFS_FORMAT, v: kernel.version, modules, kubeProxyModules, init: INIT_SCRIPT, mp: MODPROBE_HOST, bb: statSync(busybox).size }),
    )
    .digest('hex')
    .slice(0, 16);
  const cacheDir = join(repoRoot(), '.vm');
  const path = join(cacheDir, `initramfs-${kernel.version}-${key}.cpio`);
  if (existsSync(path)) return { path, kernel, modules };

  mkdirSync(cacheDir, { recursive: true });
  const cpio = new Cpio();
  for (const d of ['bin', 'dev', 'etc', 'lib', 'lib/modules', 'proc', 'sys', 'host', 'tmp', 'sbin', 'usr', 'usr/bin', 'usr/sbin'])
    cpio.dir(d);
  cpio.chardev('dev/console', 5, 1);
  cpio.chardev('dev/null', 1, 3, 0o666);
  cpio.file('bin/busybox', readFileSync(busybox), 0o755);
  cpio.file('init', Buffer.from(INIT_SCRIPT), 0o755);
  cpio.file('lib/modprobe-host', Buffer.from(MODPROBE_HOST), 0o755);
  cpio.file('etc/kube-proxy-modules', Buffer.from(kubeProxyModules.join(' ') + '\n'));
  const flat: string[] = [];
  for (const rel of modules) {
    let data = readFileSync(join(kernel.modulesDir, rel));
    let base = rel.slice(rel.lastIndexOf('/') + 1);
    if (base.endsWith('.xz') || base.endsWith('.zst') || base.endsWith('.gz')) {
      const tool = base.endsWith('.xz') ? 'xz' : base.endsWith('.zst') ? 'zstd' : 'gzip';
      data = execFileSync(tool, ['-dc', join(kernel.modulesDir, rel)], { maxBuffer: 256 << 20 });
      base = base.replace(/\.(xz|zst|gz)$/, '');
    }
    cpio.file(`lib/modules/${base}`, data);
    flat.push(base);
  }
  cpio.file('etc/modules.order', Buffer.from(flat.join('\n') + '\n'));
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, cpio.finish());
  renameSync(tmp, path);
  return { path, kernel, modules };
}

// ---------------------------------------------------------------------------------------------
// Running

const shq = (s: string): string => `'${s.replace(/'/g, `'\\''`)}'`;
const live = new Set<ChildProcess>();
let exitHookInstalled = false;

/** The last `n` lines of `s`, each cut to 400 characters. */
export function tailLines(s: string, n: number): string {
  // eslint-disable-next-line no-control-regex
  const lines = s.replace(/\x1b(\[[0-9;?]*[A-Za-z]|c)|\r/g, '').replace(/\n$/, '').split('\n');
  return lines
    .slice(-n)
    .map((l) => (l.length > 400 ? `${l.slice(0, 400)}... (${l.length - 400} more characters)` : l))
    .join('\n');
}

/**
 * Boots the test VM, runs `script` with bash inside the chroot of the host's root (cwd = repo root)
 * and powers off. Resolves with the script's exit code; rejects with VmError when the VM timed out,
 * crashed or ended without reporting an exit code.
 */
export async function runInVm(opts: RunInVmOptions): Promise<RunInVmResult> {
  const problems = vmPrerequisiteProblems();
  if (problems.length) throw new Error(`cannot boot the test VM: ${problems.join('; ')}. Run .ci/setup`);
  const { path: initrd, kernel } = ensureInitramfs();
  const root = repoRoot();
  const timeoutMs = opts.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  const memoryMiB = opts.memoryMiB ?? 2048;

  const outDir = mkdtempSync(join(tmpdir(), 'ipvs-janitor-vm-'));
  const hdir = join(outDir, '.harness');
  mkdirSync(hdir);
  chmodSync(outDir, 0o777);
  writeFileSync(join(hdir, 'script.sh'), opts.script);
  const env: Record<string, string> = {
    ...(opts.env ?? {}),
    HOME: '/tmp',
    TMPDIR: '/tmp',
    PATH: `${dirname(process.execPath)}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin`,
    LANG: 'C.UTF-8',
    TERM: 'dumb',
    VM_OUT: VM_OUT_GUEST,
    IN_TEST_VM: '1',
    NODE: process.execPath,
  };
  if (process.env.CI && !('CI' in env)) env.CI = process.env.CI;
  const H = `${VM_OUT_GUEST}/.harness`;
  writeFileSync(
    join(hdir, 'run.sh'),
    [
      '# generated by test/vm/harness.ts',
      'exec </dev/null',
      // The kernel's "(none)" is not a valid label value: kube-apiserver's identity lease is refused with it.
      'hostname ipvs-janitor-vm',
      `exec >${H}/output.log 2>&1`,
      'for v in $(env | sed -n "s/^\\([A-Za-z_][A-Za-z0-9_]*\\)=.*/\\1/p"); do unset "$v" 2>/dev/null; done',
      ...Object.entries(env).map(([k, v]) => `export ${k}=${shq(v)}`),
      ...(root.startsWith('/tmp/')
        ? [`mkdir -p ${shq(root)} && mount --bind ${shq(`/run/host-tmp/${root.slice('/tmp/'.length)}`)} ${shq(root)}`]
        : []),
      `cd ${shq(root)} || { echo "vm: cannot cd to the repo ${root}"; echo 125 > ${H}/exit-code; exit 125; }`,
      ...(opts.forwardToHost
        ? [
            // No udev: the card is whichever interface virtio_net drives.
            'modprobe virtio_net',
            'for d in /sys/class/net/*; do [ "$(basename "$(readlink -f "$d/device/driver" 2>/dev/null)")" = virtio_net ] && nic=${d##*/}; done',
            `[ -n "$nic" ] && ip link set "$nic" up && ip addr add ${VM_NIC_ADDRESS} dev "$nic" || ` +
              `{ echo "vm: no network card for forwardToHost"; echo 125 > ${H}/exit-code; exit 125; }`,
          ]
        : []),
      `/bin/bash ${H}/script.sh`,
      'rc=$?',
      `echo "$rc" > ${H}/exit-code.tmp && mv ${H}/exit-code.tmp ${H}/exit-code`,
      'exit 0',
      '',
    ].join('\n'),
  );

  const args = [
    '-accel', 'tcg,thread=multi',
    '-cpu', 'max',
    '-m', String(memoryMiB),
    '-smp', '2',
    '-nographic',
    '-no-reboot',
    ...(opts.forwardToHost ? ['-netdev', forwardNetdev(opts.forwardToHost), '-device', 'virtio-net-pci,netdev=n0,romfile='] : ['-nic', 'none']),
    '-kernel', kernel.image,
    '-initrd', initrd,
    '-append', 'console=ttyS0 quiet panic=-1',
    '-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap',
    '-virtfs', `local,path=${outDir},mount_tag=out,security_model=none`,
  ];

  const start = Date.now();
  // setpriv --pdeathsig: QEMU dies with us even when we are killed by a signal (no 'exit' event then).
  const setpriv = which('setpriv');
  const child = setpriv
    ? spawn(setpriv, ['--pdeathsig', 'KILL', '--', QEMU, ...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    : spawn(QEMU, args, { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(child);
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.on('exit', () => {
      for (const c of live) c.kill('SIGKILL');
    });
  }

  let consoleText = '';
  let bootMs = -1;
  const consoleDecoder = new StringDecoder('utf8');
  const onConsole = (b: Buffer): void => {
    consoleText += consoleDecoder.write(b);
    if (consoleText.length > 1 << 20) consoleText = consoleText.slice(-(1 << 19));
    if (bootMs < 0 && consoleText.includes('@@VM-READY@@')) bootMs = Date.now() - start;
  };
  child.stdout.on('data', onConsole);
  child.stderr.on('data', onConsole);

  // Stream output.log from the results share.
  let output = '';
  let pending = '';
  let offset = 0;
  const outDecoder = new StringDecoder('utf8');
  const logPath = join(hdir, 'output.log');
  const buf = Buffer.alloc(1 << 16);
  const emit = (text: string, final: boolean): void => {
    output += text;
    pending += text;
    const cut = final ? pending.length : pending.lastIndexOf('\n') + 1;
    if (cut > 0) {
      const chunk = pending.slice(0, cut);
      pending = pending.slice(cut);
      try {
        opts.onOutput?.(chunk);
      } catch {
        /* a throwing listener must not break the run */
      }
    }
  };
  const pump = (final: boolean): void => {
    let fd: number;
    try {
      fd = openSync(logPath, 'r');
    } catch {
      if (final) emit('', true);
      return;
    }
    try {
      for (;;) {
        const n = readSync(fd, buf, 0, buf.length, offset);
        if (n <= 0) break;
        offset += n;
        emit(outDecoder.write(buf.subarray(0, n)), false);
      }
    } finally {
      closeSync(fd);
    }
    if (final) emit(outDecoder.end(), true);
  };
  const poller = setInterval(() => pump(false), 200);

  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);

  const { code, signal, spawnError } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; spawnError?: Error }>(
    (res) => {
      child.once('error', (e) => res({ code: null, signal: null, spawnError: e }));
      child.once('close', (c, s) => res({ code: c, signal: s }));
    },
  );
  clearTimeout(timer);
  clearInterval(poller);
  live.delete(child);
  pump(true);
  consoleText += consoleDecoder.end();
  const totalMs = Date.now() - start;

  const fail = (why: string): never => {
    throw new VmError(
      `${why}\n--- last lines of the script's output ---\n${tailLines(output, 60)}\n` +
        `--- last lines of the VM console ---\n${tailLines(consoleText, 40)}\n--- results dir: ${outDir}`,
      output,
      consoleText,
      outDir,
    );
  };
  if (spawnError) fail(`could not start ${QEMU}: ${spawnError.message}`);
  if (timedOut) fail(`test VM timed out after ${Math.round(timeoutMs / 1000)} s and was killed`);
  let exitCode: number;
  try {
    exitCode = Number.parseInt(readFileSync(join(hdir, 'exit-code'), 'utf8').trim(), 10);
  } catch {
    return fail(`test VM ended (qemu exit ${code ?? signal}) without reporting the script's exit code`);
  }
  if (!Number.isInteger(exitCode)) fail('test VM reported a malformed exit code');
  return { exitCode, output, outDir, bootMs, totalMs };
}

/** For ad-hoc use: `node dist/test/vm/harness.js 'bash commands'` */
if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const script = process.argv.slice(2).join(' ') || 'uname -a; cat /proc/net/ip_vs';
  runInVm({ script, onOutput: (c) => process.stdout.write(c) }).then(
    (r) => {
      process.stderr.write(`[vm] exit ${r.exitCode}, boot ${r.bootMs} ms, total ${r.totalMs} ms, out ${r.outDir}\n`);
      process.exit(r.exitCode);
    },
    (e: unknown) => {
      process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
      process.exit(1);
    },
  );
}
