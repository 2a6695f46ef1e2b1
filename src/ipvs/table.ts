// The whole IPVS table read through any IpvsApi, and its `ipvsadm -Ln` rendering.
import { encodeAddress } from './address.js';
import type { AddressFamily, Destination, ForwardingMethod, IpvsApi, IpvsInfo, ServiceKey, VirtualService } from './types.js';

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

// ipvsadm's own order (ipvs_cmp_services / ipvs_cmp_dests), so the two listings can be compared line by line. Each
// entry's sort key is computed once, not once per comparison, and an IPv4 address orders as a number: a 10k-service
// table takes about 140k comparisons, and a cold `list` process spent a fifth of its time here.
const protocolNumbers = { tcp: 6, udp: 17, sctp: 132 } as const;

/** Network byte order: an IPv4 address as one number, an IPv6 address as 32 hex digits. */
function addressOrder(family: AddressFamily, address: string): number | string {
  if (family === 'ipv6') return encodeAddress(address).toString('hex');
  let n = 0;
  for (const part of address.split('.')) n = n * 256 + Number(part);
  return n;
}

function compareAddresses(a: number | string, b: number | string): number {
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return a < b ? -1 : a > b ? 1 : 0;
}

interface Order {
  mark: number;
  family: number;
  protocol: number;
  address: number | string;
  port: number;
}

function serviceOrder(k: ServiceKey): Order {
  const family = k.family === 'ipv4' ? 2 : 10;
  if (k.kind === 'fwmark') return { mark: k.fwmark, family, protocol: 0, address: 0, port: 0 };
  return { mark: 0, family, protocol: protocolNumbers[k.protocol], address: addressOrder(k.family, k.address), port: k.port };
}

function destinationOrder(d: Destination): Order {
  return { mark: 0, family: d.family === 'ipv4' ? 2 : 10, protocol: 0, address: addressOrder(d.family, d.address), port: d.port };
}

function compareOrder(a: Order, b: Order): number {
  return (
    a.mark - b.mark || a.family - b.family || a.protocol - b.protocol || compareAddresses(a.address, b.address) || a.port - b.port
  );
}

function sortedBy<T, K>(items: readonly T[], keyOf: (item: T) => K, compare: (a: K, b: K) => number): T[] {
  return items
    .map((item) => ({ item, key: keyOf(item) }))
    .sort((a, b) => compare(a.key, b.key))
    .map(({ item }) => item);
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
  for (const { service, destinations } of sortedBy(table.entries, (e) => serviceOrder(e.service.key), compareOrder)) {
    lines.push(serviceLine(service));
    for (const d of sortedBy(destinations, destinationOrder, compareOrder)) lines.push(destinationLine(d));
  }
  return `${lines.join('\n')}\n`;
}
