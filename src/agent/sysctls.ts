// The IPVS sysctls that decide whether a reused source port can reach a weight-0 real server: read and,
// on explicit request only, written.
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

export const IPVS_SYSCTL_DIR = '/proc/sys/net/ipv4/vs';

/** Each sysctl by its file name under /proc/sys/net/ipv4/vs/. */
export const ipvsSysctlFiles = {
  connReuseMode: 'conn_reuse_mode',
  expireNodestConn: 'expire_nodest_conn',
  expireQuiescentTemplate: 'expire_quiescent_template',
  conntrack: 'conntrack',
} as const;

export type IpvsSysctlName = keyof typeof ipvsSysctlFiles;
export type IpvsSysctls = Record<IpvsSysctlName, number>;

/** A value a sysctl should have. */
export interface SysctlSetting {
  name: IpvsSysctlName;
  value: number;
}

/** A sysctl whose value differs (or differed) from a setting. */
export interface SysctlChange {
  name: IpvsSysctlName;
  from: number;
  to: number;
}

const sysctlNames = Object.keys(ipvsSysctlFiles) as IpvsSysctlName[];

/** The name `sysctl` and sysctl.conf use, e.g. net.ipv4.vs.conn_reuse_mode. */
export function sysctlKey(name: IpvsSysctlName): string {
  return `net.ipv4.vs.${ipvsSysctlFiles[name]}`;
}

export function sysctlCommand(change: SysctlSetting | SysctlChange): string {
  return `sysctl -w ${sysctlKey(change.name)}=${'to' in change ? change.to : change.value}`;
}

export function sysctlChanges(settings: readonly SysctlSetting[], current: IpvsSysctls): SysctlChange[] {
  return settings
    .filter((s) => current[s.name] !== s.value)
    .map((s) => ({ name: s.name, from: current[s.name], to: s.value }));
}

async function readOne(baseDir: string, name: IpvsSysctlName): Promise<number> {
  const path = join(baseDir, ipvsSysctlFiles[name]);
  const text = (await readFile(path, 'utf8')).trim();
  if (!/^-?\d+$/.test(text)) throw new Error(`${path}: expected an integer, read ${JSON.stringify(text)}`);
  return Number(text);
}

export async function readSysctls(baseDir = IPVS_SYSCTL_DIR): Promise<IpvsSysctls> {
  const values = await Promise.all(sysctlNames.map((name) => readOne(baseDir, name)));
  return Object.fromEntries(sysctlNames.map((name, i) => [name, values[i]])) as IpvsSysctls;
}

function writeFailure(path: string, err: unknown): Error {
  const code = (err as NodeJS.ErrnoException).code;
  // Container runtimes mount /proc/sys read-only unless the container is privileged; EACCES/EPERM mean no root.
  if (code === 'EROFS' || code === 'EACCES' || code === 'EPERM') {
    return new Error(
      `cannot write ${path} (${code}): /proc/sys is read-only or not ours to change here; run the agent as root in ` +
        'a privileged container (securityContext.privileged: true) with hostNetwork, or set the sysctls on the node',
      { cause: err },
    );
  }
  return new Error(`cannot write ${path}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/** Writes the settings whose current value differs, in order; returns what it changed. */
export async function applySysctls(settings: readonly SysctlSetting[], baseDir = IPVS_SYSCTL_DIR): Promise<SysctlChange[]> {
  const changes = sysctlChanges(settings, await readSysctls(baseDir));
  for (const change of changes) {
    const path = join(baseDir, ipvsSysctlFiles[change.name]);
    try {
      await writeFile(path, `${change.to}\n`);
    } catch (err) {
      throw writeFailure(path, err);
    }
  }
  return changes;
}
