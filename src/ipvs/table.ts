// The whole IPVS table read through any IpvsApi, and its `ipvsadm -Ln` rendering.
import { encodeAddress } from './address.js';
import type { Destination, ForwardingMethod, IpvsApi, IpvsInfo, ServiceKey, VirtualService } from './types.js';

export interface TableEntry {
  service: VirtualService;
  destinations: Destination[];
}

export interface Table {
  info: IpvsInfo;
  entries: TableEntry[];
}

/** One service dump plus one destination dump per service: mainline IPVS has no single dump of both. */
export async function readTable(api: IpvsApi): Promise<Table> {
  const info = await api.info();
  const entries: TableEntry[] = [];
  for (const service of await api.listServices()) {
    entries.push({ service, destinations: await api.listDestinations(service.key) });
  }
  return { info, entries };
}

function compareBytes(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

// ipvsadm's own order (ipvs_cmp_services / ipvs_cmp_dests), so the two listings can be compared line by line.
function compareServices(a: ServiceKey, b: ServiceKey): number {
  const mark = (k: ServiceKey) => (k.kind === 'fwmark' ? k.fwmark : 0);
  const family = (k: ServiceKey) => (k.family === 'ipv4' ? 2 : 10);
  if (mark(a) !== mark(b)) return mark(a) - mark(b);
  if (family(a) !== family(b)) return family(a) - family(b);
  if (a.kind !== 'address' || b.kind !== 'address') return 0;
  const protocol = { tcp: 6, udp: 17, sctp: 132 };
  if (a.protocol !== b.protocol) return protocol[a.protocol] - protocol[b.protocol];
  return compareBytes(encodeAddress(a.address), encodeAddress(b.address)) || a.port - b.port;
}

function compareDestinations(a: Destination, b: Destination): number {
  if (a.family !== b.family) return a.family === 'ipv4' ? -1 : 1;
  return compareBytes(encodeAddress(a.address), encodeAddress(b.address)) || a.port - b.port;
}

function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

const forwardingNames: Record<ForwardingMethod, string> = {
  masq: 'Masq',
  localnode: 'Local',
  tunnel: 'Tunnel',
  route: 'Route',
  bypass: 'Bypass',
};

function schedulerFlags(service: VirtualService): string {
  const { sched1, sched2, sched3 } = service.flags;
  const names =
    service.scheduler === 'sh' || service.scheduler === 'mh'
      ? [`${service.scheduler}-fallback`, `${service.scheduler}-port`, 'flag-3']
      : ['flag-1', 'flag-2', 'flag-3'];
  const set = names.filter((_, i) => [sched1, sched2, sched3][i]);
  return set.length ? ` (${set.join(',')})` : '';
}

function serviceLine(service: VirtualService): string {
  const { key } = service;
  const name =
    key.kind === 'fwmark'
      ? `FWM  ${key.fwmark}${key.family === 'ipv6' ? ' IPv6' : ''}`
      : `${key.protocol.toUpperCase()}  ${hostPort(key.address, key.port)}`;
  let line = `${name} ${service.scheduler}${schedulerFlags(service)}`;
  if (service.flags.persistent) {
    line += ` persistent ${service.timeoutSeconds}`;
    const fullMask = key.family === 'ipv4' ? '255.255.255.255' : '128';
    if (service.netmask !== fullMask) line += ` mask ${service.netmask}`;
    if (service.persistenceEngine) line += ` pe ${service.persistenceEngine}`;
  }
  if (service.flags.onePacket) line += ' ops';
  return line;
}

function destinationLine(d: Destination): string {
  const cols = [
    hostPort(d.address, d.port).padEnd(28),
    forwardingNames[d.forwarding].padEnd(7),
    String(d.weight).padEnd(6),
    String(d.activeConnections).padEnd(10),
    String(d.inactiveConnections).padEnd(10),
  ];
  return `  -> ${cols.join(' ')}`;
}

/** The same text `ipvsadm -Ln` prints for the same table. */
export function formatTable(table: Table): string {
  const lines = [
    `IP Virtual Server version ${table.info.version} (size=${table.info.connectionTableSize})`,
    'Prot LocalAddress:Port Scheduler Flags',
    '  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn',
  ];
  const entries = [...table.entries].sort((a, b) => compareServices(a.service.key, b.service.key));
  for (const { service, destinations } of entries) {
    lines.push(serviceLine(service));
    for (const d of [...destinations].sort(compareDestinations)) lines.push(destinationLine(d));
  }
  return `${lines.join('\n')}\n`;
}
