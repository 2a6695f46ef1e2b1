// Which node addresses carry NodePort virtual services, computed as kube-proxy v1.37's IPVS proxier computes them
// (cmd/kube-proxy/app/server.go expandNodePortAddressKeywords, pkg/proxy/util/nodeport_addresses.go, and the
// proxier's syncProxyRules), so that the agent and the kube-proxy beside it never disagree. Pure: the caller
// lists the node's addresses.
import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { AddressFamily } from '../ipvs/types.js';

/** kube-proxy's dummy interface: it holds the Service IPs, which are not node addresses. */
export const IPVS_DUMMY_INTERFACE = 'kube-ipvs0';

/** kube-proxy's keywords (pkg/proxy/apis/config/types.go NodePortAddresses*). */
const KEYWORDS = ['primary', 'localhost', 'all'] as const;
type Keyword = (typeof KEYWORDS)[number];

export interface Cidr {
  readonly family: AddressFamily;
  readonly address: string;
  readonly prefix: number;
}

type KubeProxyEntry = { readonly kind: 'keyword'; readonly keyword: Keyword } | { readonly kind: 'cidr'; readonly cidr: Cidr };

/**
 * A parsed --nodeport-addresses. `kube-proxy`: its syntax and meaning (CIDRs and keywords matched against the
 * node's addresses; no entries = every node address). `exact`: bare IPs, this project's earlier form, taken as
 * they are whether or not the node holds them.
 */
export type NodePortAddresses =
  | { readonly kind: 'kube-proxy'; readonly entries: readonly KubeProxyEntry[] }
  | { readonly kind: 'exact'; readonly addresses: readonly string[] };

export class InvalidNodePortAddresses extends Error {
  override readonly name = 'InvalidNodePortAddresses';
}

/** The family of an IP address in text form; undefined for anything else, zoned IPv6 ("fe80::1%eth0") included. */
export function familyOf(ip: string): AddressFamily | undefined {
  if (ip.includes('%')) return undefined;
  return isIPv4(ip) ? 'ipv4' : isIPv6(ip) ? 'ipv6' : undefined;
}

/** Go's ParseCIDRSloppy takes IPv4 octets with leading zeros as decimal ("010.0.0.0/8" is 10.0.0.0/8). */
function unsloppy(address: string): string {
  return /^[\d.]+$/.test(address) ? address.split('.').map((o) => (/^\d+$/.test(o) ? String(Number(o)) : o)).join('.') : address;
}

function parseCidr(text: string): Cidr | undefined {
  const m = /^([^/%]+)\/(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const address = unsloppy(m[1]!);
  const family = familyOf(address);
  const prefix = Number(m[2]);
  if (!family || prefix > (family === 'ipv4' ? 32 : 128)) return undefined;
  return { family, address, prefix };
}

/**
 * Parses the entries of --nodeport-addresses (or a KubeProxyConfiguration's nodePortAddresses) with kube-proxy's
 * validation: each a CIDR or one keyword, no keyword twice. A list of bare IPs is the exact form.
 * @throws InvalidNodePortAddresses naming the entry and what is accepted
 */
export function parseNodePortAddresses(entries: readonly string[]): NodePortAddresses {
  if (entries.length > 0 && entries.every((e) => familyOf(e) !== undefined)) {
    return { kind: 'exact', addresses: [...new Set(entries)] };
  }
  const parsed: KubeProxyEntry[] = [];
  const seen = new Set<string>();
  for (const entry of entries) {
    if ((KEYWORDS as readonly string[]).includes(entry)) {
      if (seen.has(entry)) throw new InvalidNodePortAddresses(`keyword ${JSON.stringify(entry)} given twice`);
      seen.add(entry);
      parsed.push({ kind: 'keyword', keyword: entry as Keyword });
      continue;
    }
    const cidr = parseCidr(entry);
    if (cidr) {
      parsed.push({ kind: 'cidr', cidr });
      continue;
    }
    const hint = familyOf(entry)
      ? `; bare IPs cannot be mixed with CIDRs or keywords (write ${entry}/${isIPv4(entry) ? 32 : 128})`
      : entry.includes('%')
        ? '; zoned addresses (with %) are not accepted'
        : '';
    throw new InvalidNodePortAddresses(
      `${JSON.stringify(entry)} is not a CIDR nor one of the keywords primary, localhost, all${hint}`,
    );
  }
  return { kind: 'kube-proxy', entries: parsed };
}

/** The node's primary IP per family, as kube-proxy knows them (its Node object, or its bindAddress). */
export interface PrimaryIPs {
  readonly ipv4?: string;
  readonly ipv6?: string;
}

/**
 * kube-proxy's detectNodeIPs: the Node's host IPs (one per family, as status.hostIPs lists them), then a
 * specified bindAddress overrides the primary of its family.
 */
export function primaryIPs(nodeIPs: readonly string[], bindAddress?: string): PrimaryIPs {
  const byFamily: { ipv4?: string; ipv6?: string } = {};
  for (const ip of nodeIPs) {
    const family = familyOf(ip);
    if (family && byFamily[family] === undefined) byFamily[family] = ip;
  }
  const bindFamily = bindAddress === undefined ? undefined : familyOf(bindAddress);
  // 0.0.0.0 and :: (all zeros in any spelling) mean "unspecified".
  if (bindFamily && !/^[0:.]+$/.test(bindAddress!)) byFamily[bindFamily] = bindAddress;
  return byFamily;
}

/** For one family: every node address, CIDRs to match, or fixed addresses. */
export type FamilySelection =
  | { readonly kind: 'all' }
  | { readonly kind: 'cidrs'; readonly cidrs: readonly Cidr[]; readonly blocks: BlockList }
  | { readonly kind: 'exact'; readonly addresses: readonly string[] };

export type NodePortSelection = Readonly<Record<AddressFamily, FamilySelection>>;

function isLoopback(ip: string): boolean {
  return isIPv4(ip) ? ip.startsWith('127.') : ip === '::1';
}

function isLinkLocalV6(ip: string): boolean {
  return isIPv6(ip) && /^fe[89ab]/i.test(ip);
}

/** expandNodePortAddressKeywords. A primary IP that is loopback or unknown adds nothing, as in kube-proxy. */
function expand(entry: KubeProxyEntry, primary: PrimaryIPs): Cidr[] {
  if (entry.kind === 'cidr') return [entry.cidr];
  switch (entry.keyword) {
    case 'primary': {
      const cidrs: Cidr[] = [];
      if (primary.ipv4 && !isLoopback(primary.ipv4)) cidrs.push({ family: 'ipv4', address: primary.ipv4, prefix: 32 });
      if (primary.ipv6 && !isLoopback(primary.ipv6)) cidrs.push({ family: 'ipv6', address: primary.ipv6, prefix: 128 });
      return cidrs;
    }
    case 'localhost':
      return [
        { family: 'ipv4', address: '127.0.0.0', prefix: 8 },
        { family: 'ipv6', address: '::1', prefix: 128 },
      ];
    case 'all':
      return [
        { family: 'ipv4', address: '0.0.0.0', prefix: 0 },
        { family: 'ipv6', address: '::', prefix: 0 },
      ];
  }
}

/**
 * NewNodePortAddresses for each family: no CIDR of a family, or a zero-length prefix, matches all of it.
 * @throws InvalidNodePortAddresses for "primary" without any primary IP: kube-proxy reads them from its Node object,
 * which this agent is not allowed to read
 */
export function resolveNodePortAddresses(spec: NodePortAddresses, primary: PrimaryIPs): NodePortSelection {
  const usesPrimary = spec.kind === 'kube-proxy' && spec.entries.some((e) => e.kind === 'keyword' && e.keyword === 'primary');
  if (usesPrimary && primary.ipv4 === undefined && primary.ipv6 === undefined) {
    throw new InvalidNodePortAddresses(
      '"primary" needs the node\'s IPs: set --node-ips (the chart sets NODE_IPS from the pod\'s status.hostIPs)',
    );
  }
  if (spec.kind === 'exact') {
    const of = (family: AddressFamily): FamilySelection =>
      ({ kind: 'exact', addresses: spec.addresses.filter((a) => familyOf(a) === family) });
    return { ipv4: of('ipv4'), ipv6: of('ipv6') };
  }
  const cidrs = spec.entries.flatMap((e) => expand(e, primary));
  const of = (family: AddressFamily): FamilySelection => {
    const mine = cidrs.filter((c) => c.family === family);
    if (mine.length === 0 || mine.some((c) => c.prefix === 0)) return { kind: 'all' };
    const blocks = new BlockList();
    for (const c of mine) blocks.addSubnet(c.address, c.prefix, family);
    return { kind: 'cidrs', cidrs: mine, blocks };
  };
  return { ipv4: of('ipv4'), ipv6: of('ipv6') };
}

/** One address the kernel holds, and whether it is on kube-proxy's dummy interface. */
export interface LocalAddress {
  readonly address: string;
  readonly onIpvsDummy: boolean;
}

/**
 * Whether a local address carries NodePorts. Every-address mode (MatchAll) takes all addresses off kube-ipvs0
 * except loopback and IPv6 link-local (isValidForSet); CIDR mode matches addresses on any interface, loopback
 * excepted (syncProxyRules drops it after GetNodeIPs).
 */
export function carriesNodePorts(selection: NodePortSelection, local: LocalAddress): boolean {
  const family = familyOf(local.address);
  if (!family || isLoopback(local.address)) return false;
  const s = selection[family];
  switch (s.kind) {
    case 'all':
      return !local.onIpvsDummy && !isLinkLocalV6(local.address);
    case 'cidrs':
      return s.blocks.check(local.address, family);
    case 'exact':
      return false;
  }
}

/** The addresses NodePort virtual services sit on, given everything the kernel holds now. */
export function nodePortAddresses(selection: NodePortSelection, locals: readonly LocalAddress[]): string[] {
  const result = new Set<string>();
  for (const family of ['ipv4', 'ipv6'] as const) {
    const s = selection[family];
    if (s.kind === 'exact') for (const a of s.addresses) result.add(a);
  }
  for (const local of locals) if (carriesNodePorts(selection, local)) result.add(local.address);
  return [...result];
}

/** Whether the node's address changes can change the result (the exact form ignores them). */
export function followsNodeAddresses(selection: NodePortSelection): boolean {
  return selection.ipv4.kind !== 'exact' || selection.ipv6.kind !== 'exact';
}
