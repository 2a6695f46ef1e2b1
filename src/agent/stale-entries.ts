// Real servers for which kube-proxy may hold a stale graceful-termination entry because of one of our deletions.
//
// kube-proxy (pkg/proxy/ipvs, v1.37) puts a real server it sets to weight 0 on a list that it checks once a minute
// (rsCheckDeleteInterval). When we delete that real server, the entry lives on until the next check finds it
// missing. If the address comes back as a serving endpoint of the same virtual service before that check,
// kube-proxy adds a fresh real server but leaves the entry on the list (it moves entries off the list only for
// real servers still in the kernel). From then on, for as long as the fresh real server has connections, its
// sync skips it when the endpoint leaves again ("in termination list"): it stays at weight 1, and new connections
// keep going to a pod that is gone (seen in the churn test: 10 minutes at weight 1). The agent then applies its
// policy as if the weight were 0, since kube-proxy never will write it.
//   Which way it went is invisible from here: kube-proxy's check may have run between our deletion and the return
// (then the entry is gone and kube-proxy zeroes the real server as usual). So a returned real server counts as
// stuck only once its endpoint has been out for longer than kube-proxy takes to apply a change; acting earlier
// deleted real servers kube-proxy was about to zero, and some its sync in progress then added back (churn test,
// 2026-12-03).
import type { ObservedDestination } from '../reconcile/decide.js';
import { addressPortKey } from '../reconcile/keys.js';
import type { DesiredEndpoint } from '../reconcile/types.js';

/**
 * How long after our deletion kube-proxy's entry may still be on its list: its check runs a minute after the
 * previous one ended, and takes a while itself on a loaded node.
 */
export const KUBE_PROXY_CHECK_WINDOW_MS = 90_000;
/**
 * How long a returned real server's endpoint must have been out (not serving, or gone) with the real server still in
 * the kernel before kube-proxy is taken to have skipped it: longer than a kube-proxy sync takes to apply a change
 * (about a second on a real node; 25-45 s measured under TCG in the demo's VM).
 */
export const KUBE_PROXY_SYNC_ALLOWANCE_MS = 60_000;
/** A returned address kube-proxy never re-added in this long will not be re-added on that entry's account. */
const RETURN_LIMIT_MS = 10 * 60_000;

type Record =
  | { state: 'deleted'; at: number }
  /**
   * Came back within the window: `seen` once the kernel had it again; `outSince` while the kernel has it and the
   * endpoint is out again, the first read that saw so.
   */
  | { state: 'returned'; at: number; seen: boolean; outSince?: number };

export class StaleEntries {
  /** serviceKeyString() → addressPortKey() → what we know of that real server. */
  private readonly byVirtualService = new Map<string, Map<string, Record>>();

  /** Our deletion of a real server: its kube-proxy entry, if any, is stale from now until kube-proxy's check. */
  deleted(vsKey: string, destination: Pick<ObservedDestination, 'address' | 'port'>, now: number): void {
    let records = this.byVirtualService.get(vsKey);
    if (records === undefined) this.byVirtualService.set(vsKey, (records = new Map()));
    records.set(addressPortKey(destination.address, destination.port), { state: 'deleted', at: now });
  }

  /**
   * Updates what is known of one virtual service from a fresh kernel read and the endpoints as the cache has them,
   * and returns the addressPortKey() of each real server kube-proxy may hold a stale entry for.
   */
  observe(
    vsKey: string,
    endpoints: readonly DesiredEndpoint[],
    kernel: readonly ObservedDestination[],
    now: number,
  ): ReadonlySet<string> {
    const records = this.byVirtualService.get(vsKey);
    if (records === undefined) return new Set();
    const serving = new Set(endpoints.filter((e) => e.condition !== 'not-serving').map((e) => addressPortKey(e.address, e.port)));
    const present = new Set(kernel.map((d) => addressPortKey(d.address, d.port)));
    for (const [key, known] of records) {
      let r = known;
      if (r.state === 'deleted') {
        // kube-proxy re-adds only for a serving endpoint; the kernel having it again means it already did.
        const expired = now - r.at > KUBE_PROXY_CHECK_WINDOW_MS;
        if (expired) records.delete(key);
        if (expired || !(serving.has(key) || present.has(key))) continue;
        r = { state: 'returned', at: now, seen: false };
        records.set(key, r);
      }
      if (present.has(key)) {
        r.seen = true;
        if (serving.has(key)) delete r.outSince;
        else r.outSince ??= now;
      } else if (r.seen || now - r.at > RETURN_LIMIT_MS) {
        // Gone from the kernel after it came back: kube-proxy's entry left with it (its check deletes the real
        // server, or finds it missing and drops the entry).
        records.delete(key);
      }
    }
    if (records.size === 0) this.byVirtualService.delete(vsKey);
    return this.suspects(vsKey, now);
  }

  /**
   * The real servers of the virtual service whose endpoint has been out for longer than kube-proxy's sync takes,
   * as of the last observe(): for a re-check that does not read the kernel.
   */
  suspects(vsKey: string, now: number): ReadonlySet<string> {
    const suspects = new Set<string>();
    for (const [key, r] of this.byVirtualService.get(vsKey) ?? [])
      if (r.state === 'returned' && r.outSince !== undefined && now - r.outSince >= KUBE_PROXY_SYNC_ALLOWANCE_MS) suspects.add(key);
    return suspects;
  }

  /** Forgets every virtual service `keep` does not name. */
  retainOnly(keep: ReadonlySet<string> | ReadonlyMap<string, unknown>): void {
    for (const vsKey of this.byVirtualService.keys()) if (!keep.has(vsKey)) this.byVirtualService.delete(vsKey);
  }
}
