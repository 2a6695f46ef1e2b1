// The node addresses NodePort virtual services sit on, kept current: listed over rtnetlink at start and again
// whenever the kernel reports an address change that can matter (an interface that gets its IP with the first pod).
import type { Logger } from './log.js';
import { decodeAddress } from '../ipvs/address.js';
import {
  carriesNodePorts,
  followsNodeAddresses,
  IPVS_DUMMY_INTERFACE,
  nodePortAddresses,
  parseNodePortAddresses,
  primaryIPs,
  resolveNodePortAddresses,
  type LocalAddress,
  type NodePortSelection,
} from '../k8s/nodeport-addresses.js';
import type { KubeProxySettings } from '../k8s/kube-proxy-config.js';
import { AddressSubscription, RouteNetlink, type AddressEvent, type AddressMessage } from '../netlink/rtnetlink.js';

export interface NodeAddressChange {
  readonly added: readonly string[];
  readonly removed: readonly string[];
  readonly current: readonly string[];
}

const describe = (err: unknown) => (err instanceof Error ? err.message : String(err));

export class NodeAddresses {
  private addresses: readonly string[];
  private dummyIndexes = new Set<number>();
  private route: RouteNetlink | undefined;
  private subscription: AddressSubscription | undefined;
  /** One refresh at a time; a change reported during one asks for one more after it. */
  private refreshing: Promise<void> | undefined;
  private again = false;
  private listener: ((change: NodeAddressChange) => void) | undefined;

  private constructor(
    private readonly selection: NodePortSelection,
    private readonly log: Logger,
  ) {
    this.addresses = nodePortAddresses(selection, []);
  }

  /**
   * Subscribes before the first listing, so no change falls between the two. With exact addresses (bare IPs)
   * there is nothing to follow.
   */
  static async start(selection: NodePortSelection, log: Logger): Promise<NodeAddresses> {
    const self = new NodeAddresses(selection, log);
    if (!followsNodeAddresses(selection)) return self;
    self.route = RouteNetlink.open();
    self.subscription = AddressSubscription.open((event) => self.onEvent(event));
    await self.refresh();
    return self;
  }

  current(): readonly string[] {
    return this.addresses;
  }

  /** Changes from now on go to `listener` (before, they only update current()). */
  onChange(listener: (change: NodeAddressChange) => void): void {
    this.listener = listener;
  }

  /** Lists the kernel's addresses again; reports a change once the listing differs. */
  refresh(): Promise<void> {
    if (!this.route) return Promise.resolve();
    if (this.refreshing) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = (async () => {
      do {
        this.again = false;
        await this.list().catch((err: unknown) =>
          this.log.warn('could not list node addresses: NodePort addresses unchanged', { error: describe(err) }),
        );
      } while (this.again);
    })().finally(() => {
      this.refreshing = undefined;
    });
    return this.refreshing;
  }

  async close(): Promise<void> {
    await this.subscription?.close();
    await this.refreshing;
    this.route?.close();
  }

  private async list(): Promise<void> {
    const route = this.route!;
    const messages = await route.addresses();
    // kube-ipvs0 may appear at any time (kube-proxy creates it); IPv4 addresses also name it in their label.
    const dummy = await route.linkIndex(IPVS_DUMMY_INTERFACE);
    this.dummyIndexes = new Set(messages.filter((m) => m.label === IPVS_DUMMY_INTERFACE).map((m) => m.ifindex));
    if (dummy !== undefined) this.dummyIndexes.add(dummy);
    const next = nodePortAddresses(this.selection, messages.map((m) => this.local(m)));
    const before = new Set(this.addresses);
    const after = new Set(next);
    const added = next.filter((a) => !before.has(a));
    const removed = this.addresses.filter((a) => !after.has(a));
    this.addresses = next;
    if (added.length > 0 || removed.length > 0) this.listener?.({ added, removed, current: next });
  }

  private local(message: AddressMessage): LocalAddress {
    return {
      address: decodeAddress(message.family, message.address),
      onIpvsDummy: this.dummyIndexes.has(message.ifindex) || message.label === IPVS_DUMMY_INTERFACE,
    };
  }

  private onEvent(event: AddressEvent): void {
    switch (event.kind) {
      case 'address': {
        // kube-proxy binds every Service IP to kube-ipvs0: those notifications change nothing here.
        const local = this.local(event.message);
        if (carriesNodePorts(this.selection, local) || this.addresses.includes(local.address)) void this.refresh();
        return;
      }
      case 'overrun':
        void this.refresh();
        return;
      case 'failed':
        this.log.warn('stopped following node address changes: NodePort addresses are listed again on each resync', {
          error: describe(event.error),
        });
    }
  }
}

/**
 * The selection --nodeport-addresses, or kube-proxy's own file, makes; "primary" is resolved with the node's IPs
 * and the file's bindAddress, as kube-proxy resolves it.
 * @throws InvalidNodePortAddresses
 */
export function nodePortSelection(
  options: { readonly nodePortAddresses?: readonly string[]; readonly nodeIPs?: readonly string[] },
  kubeProxy: KubeProxySettings | undefined,
): NodePortSelection {
  const spec = kubeProxy?.nodePortAddresses ?? parseNodePortAddresses(options.nodePortAddresses ?? []);
  return resolveNodePortAddresses(spec, primaryIPs(options.nodeIPs ?? [], kubeProxy?.bindAddress));
}
