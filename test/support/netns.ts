// Network-namespace helpers for tests that run INSIDE the test VM (see test/vm/harness.ts).
// They shell out to iproute2; every address lives only in the VM's namespaces:
//   pods     10.240.0.0/16 (one /30 per pod: .1 root side, .2 pod side) and fd00:240::/64 (one /112 per pod)
//   VIPs     10.240.255.0/24 and fd00:240::ffff:0/112 (see vip4/vip6)
// A pod is a netns with `eth0` (veth) whose peer `vh-<name>` stays in the root namespace (the "node");
// the pod's default routes point at the root side, so it can be an IPVS NAT real server or a client.

import { execFile, execFileSync, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { writeFileSync } from 'node:fs';

export interface Pod {
  /** Pod name, also the netns name. */
  readonly name: string;
  readonly netns: string;
  readonly index: number;
  /** veth end in the root namespace. */
  readonly hostIf: string;
  /** veth end in the pod (always `eth0`). */
  readonly podIf: string;
  readonly ipv4: string;
  /** Root-namespace side of the pod's /30, the pod's IPv4 default gateway. */
  readonly gatewayV4: string;
  readonly ipv6?: string;
  readonly gatewayV6?: string;
}

export interface CreatePodOptions {
  /** [a-z0-9-], at most 12 characters (interface names are limited to 15). */
  name: string;
  /** 1..16319; picks the pod's subnets. Default: the next unused index in this process. */
  index?: number;
  /** Also give the pod an IPv6 address and default route. */
  ipv6?: boolean;
}

const MAX_POD_INDEX = 16319; // keeps pod /30s below 10.240.255.0/24 (VIPs)
const pods = new Map<string, Pod>();
const dummies = new Set<string>();
const children = new Set<ChildProcess>();
let nextIndex = 1;

function run(cmd: string, args: readonly string[], input?: string): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', input, stdio: ['pipe', 'pipe', 'pipe'] });
  } catch (e) {
    const err = e as { stderr?: string; stdout?: string; status?: number | null; message: string };
    const detail = (err.stderr || err.stdout || err.message).trim();
    throw new Error(`${cmd} ${args.join(' ')}${input ? ` <<${JSON.stringify(input)}` : ''} failed (status ${err.status ?? '?'}): ${detail}`);
  }
}

/** Runs `ip ARGS...` in the root namespace and returns its stdout. */
export function ip(...args: string[]): string {
  return run('ip', args);
}

/** Runs several `ip` commands (one per line, without the leading `ip`) in one process, optionally in a netns. */
export function ipBatch(lines: readonly string[], netns?: string): void {
  if (lines.length === 0) return;
  run('ip', [...(netns ? ['-n', netns] : []), '-batch', '-'], lines.join('\n') + '\n');
}

/** Writes a sysctl (key in dotted or slash form) in the root namespace or in `netns`. */
export function setSysctl(key: string, value: string | number, netns?: string): void {
  const path = `/proc/sys/${key.replace(/\./g, '/')}`;
  if (!netns) writeFileSync(path, `${value}\n`);
  else run('ip', ['netns', 'exec', netns, 'sh', '-c', 'echo "$2" > "$1"', 'sh', path, String(value)]);
}

/** Turns on IPv4 and IPv6 forwarding in the root namespace. */
export function enableForwarding(): void {
  setSysctl('net.ipv4.ip_forward', 1);
  setSysctl('net.ipv6.conf.all.forwarding', 1);
}

function v4(n: number): string {
  return `10.240.${(n >> 8) & 255}.${n & 255}`;
}

/** Addresses of the pod with this index. */
export function podAddresses(index: number): { ipv4: string; gatewayV4: string; ipv6: string; gatewayV6: string } {
  if (!Number.isInteger(index) || index < 1 || index > MAX_POD_INDEX) throw new RangeError(`pod index ${index} not in 1..${MAX_POD_INDEX}`);
  const h = index.toString(16);
  return { ipv4: v4(index * 4 + 2), gatewayV4: v4(index * 4 + 1), ipv6: `fd00:240::${h}:2`, gatewayV6: `fd00:240::${h}:1` };
}

/** The n-th IPv4 virtual IP (n in 1..254): 10.240.255.n */
export function vip4(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 254) throw new RangeError(`vip index ${n} not in 1..254`);
  return `10.240.255.${n}`;
}

/** The n-th IPv6 virtual IP (n in 1..65535): fd00:240::ffff:<n hex> */
export function vip6(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 0xffff) throw new RangeError(`vip index ${n} not in 1..65535`);
  return `fd00:240::ffff:${n.toString(16)}`;
}

function netnsExists(name: string): boolean {
  return ip('netns', 'list').split('\n').some((l) => l.split(' ')[0] === name);
}

function linkExists(name: string): boolean {
  try {
    run('ip', ['link', 'show', 'dev', name]);
    return true;
  } catch {
    return false;
  }
}

/**
 * Creates a pod: netns `name`, veth `vh-<name>` (root) <-> `eth0` (pod), a /30 (and /112) between
 * them, default routes in the pod via the root side. A leftover pod of the same name is removed first.
 * Call enableForwarding() for traffic between pods or through IPVS.
 */
export function createPod(opts: CreatePodOptions): Pod {
  const { name } = opts;
  if (!/^[a-z0-9][a-z0-9-]{0,11}$/.test(name)) throw new Error(`bad pod name ${JSON.stringify(name)}: [a-z0-9-], max 12 chars`);
  let index = opts.index;
  if (index === undefined) {
    const used = new Set([...pods.values()].map((p) => p.index));
    while (used.has(nextIndex)) nextIndex++;
    index = nextIndex++;
  }
  const a = podAddresses(index);
  const hostIf = `vh-${name}`;
  if (netnsExists(name) || linkExists(hostIf)) removePodByName(name);

  ip('netns', 'add', name);
  const pod: Pod = {
    name,
    netns: name,
    index,
    hostIf,
    podIf: 'eth0',
    ipv4: a.ipv4,
    gatewayV4: a.gatewayV4,
    ...(opts.ipv6 ? { ipv6: a.ipv6, gatewayV6: a.gatewayV6 } : {}),
  };
  pods.set(name, pod);
  try {
    ipBatch([
      `link add ${hostIf} type veth peer name eth0 netns ${name}`,
      `addr add ${a.gatewayV4}/30 dev ${hostIf}`,
      ...(opts.ipv6 ? [`addr add ${a.gatewayV6}/112 dev ${hostIf} nodad`] : []),
      `link set ${hostIf} up`,
    ]);
    ipBatch(
      [
        'link set lo up',
        `addr add ${a.ipv4}/30 dev eth0`,
        ...(opts.ipv6 ? [`addr add ${a.ipv6}/112 dev eth0 nodad`] : []),
        'link set eth0 up',
        `route add default via ${a.gatewayV4}`,
        ...(opts.ipv6 ? [`route add ::/0 via ${a.gatewayV6}`] : []),
      ],
      name,
    );
  } catch (e) {
    deletePod(pod);
    throw e;
  }
  return pod;
}

function killProcessesIn(name: string): void {
  for (const c of children) if ((c as ChildProcess & { netns?: string }).netns === name) c.kill('SIGKILL');
}

function removePodByName(name: string): void {
  killProcessesIn(name);
  // Deleting the root end removes both ends at once; a netns deletion alone frees its veth later, asynchronously.
  try {
    run('ip', ['link', 'del', 'dev', `vh-${name}`]);
  } catch {
    /* already gone */
  }
  try {
    run('ip', ['netns', 'del', name]);
  } catch {
    /* already gone */
  }
  pods.delete(name);
}

/** Removes a pod (its veth pair and netns) and kills processes this module started in it. */
export function deletePod(pod: Pod | string): void {
  removePodByName(typeof pod === 'string' ? pod : pod.name);
}

/**
 * A pod's death as the node sees it, without blocking the event loop: the processes this module started in it
 * killed and its veth removed (deletePod removes the netns later). Two synchronous `ip` executions take seconds
 * under a loaded TCG VM, in which nothing else of the caller, e.g. an API request, could go out.
 */
export async function killPod(pod: Pod): Promise<void> {
  killProcessesIn(pod.name);
  // Unlike deletePod's cleanup, a veth that stays would leave the "dead" pod reachable: that is an error.
  await new Promise<void>((resolve, reject) =>
    execFile('ip', ['link', 'del', 'dev', pod.hostIf], (err, _stdout, stderr) =>
      err ? reject(new Error(`ip link del dev ${pod.hostIf} failed: ${stderr.trim() || err.message}`)) : resolve(),
    ),
  );
}

/** Adds (or replaces) a dummy interface in the root namespace carrying `vips` (as /32 and /128). */
export function addDummy(name: string, vips: readonly string[]): void {
  if (linkExists(name)) ip('link', 'del', 'dev', name);
  dummies.add(name);
  ipBatch([
    `link add ${name} type dummy`,
    ...vips.map((v) => (v.includes(':') ? `addr add ${v}/128 dev ${name} nodad` : `addr add ${v}/32 dev ${name}`)),
    `link set ${name} up`,
  ]);
}

/** Adds one more VIP to an existing dummy interface. */
export function addVip(dummy: string, vip: string): void {
  if (vip.includes(':')) ip('addr', 'add', `${vip}/128`, 'dev', dummy, 'nodad');
  else ip('addr', 'add', `${vip}/32`, 'dev', dummy);
}

export function deleteDummy(name: string): void {
  try {
    run('ip', ['link', 'del', 'dev', name]);
  } catch {
    /* already gone */
  }
  dummies.delete(name);
}

/** Spawns `command args...` inside `netns` (via `ip netns exec`); tracked and killed by teardown(). */
export function spawnInNetns(netns: string, command: string, args: readonly string[] = [], options: SpawnOptions = {}): ChildProcess {
  const child = spawn('ip', ['netns', 'exec', netns, command, ...args], { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  (child as ChildProcess & { netns?: string }).netns = netns;
  children.add(child);
  child.once('exit', () => children.delete(child));
  child.once('error', () => children.delete(child));
  return child;
}

/** Runs `command args...` inside `netns` and waits for it; rejects on a non-zero exit or after timeoutMs. */
export function execInNetns(
  netns: string,
  command: string,
  args: readonly string[] = [],
  opts: { timeoutMs?: number; input?: string } = {},
): Promise<{ stdout: string; stderr: string }> {
  const timeoutMs = opts.timeoutMs ?? 60_000;
  return new Promise((resolve, reject) => {
    const child = spawnInNetns(netns, command, args, { stdio: [opts.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) resolve({ stdout, stderr });
      else
        reject(
          new Error(
            `ip netns exec ${netns} ${command} ${args.join(' ')}: ${signal ? `killed by ${signal}${signal === 'SIGKILL' ? ` (timeout ${timeoutMs} ms?)` : ''}` : `exit ${code}`}\n${stderr}${stdout}`,
          ),
        );
    });
  });
}

/** Resolves when a line of the child's stdout (or stderr) matches `pattern`; rejects on exit or timeout. */
export function waitForOutput(child: ChildProcess, pattern: RegExp, timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    let seen = '';
    const onData = (d: Buffer | string): void => {
      seen += d.toString();
      const line = seen.split('\n').find((l) => pattern.test(l));
      if (line !== undefined) done(() => resolve(line));
    };
    const onExit = (code: number | null, signal: string | null): void =>
      done(() => reject(new Error(`process exited (${signal ?? code}) before printing ${pattern}; output:\n${seen}`)));
    const timer = setTimeout(() => done(() => reject(new Error(`no ${pattern} within ${timeoutMs} ms; output:\n${seen}`))), timeoutMs);
    const done = (f: () => void): void => {
      clearTimeout(timer);
      child.stdout?.off('data', onData);
      child.stderr?.off('data', onData);
      child.off('exit', onExit);
      f();
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    child.once('exit', onExit);
  });
}

/** Kills processes started here and removes every pod and dummy interface this process created. */
export function teardown(): void {
  for (const c of children) c.kill('SIGKILL');
  children.clear();
  for (const name of [...pods.keys()]) removePodByName(name);
  for (const name of [...dummies]) deleteDummy(name);
}
