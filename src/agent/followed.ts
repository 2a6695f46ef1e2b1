// The real servers the janitor re-reads on a short timer, because the kernel tells nobody when what they wait
// for happens: the last active connection of a draining real server ends, or kube-proxy writes weight 0 for
// a real server whose endpoint already left (measured 25-45 s after the slice change). A small set: only what
// decide() named, each awaiting-zero entry for a bounded time.
import type { FollowUp } from '../reconcile/decide.js';

interface FollowedVirtualService {
  /** The owning Service's work-queue key. */
  service: string;
  /** destinationKeyString() → what it waits for and since when (the caller's clock). */
  destinations: Map<string, { kind: FollowUp['kind']; since: number }>;
}

export class FollowedSet {
  private readonly byVirtualService = new Map<string, FollowedVirtualService>();

  /** @param awaitZeroLimitMs how long a weight > 0 real server is followed before the resync is left to it */
  constructor(private readonly awaitZeroLimitMs: number) {}

  /**
   * Records what decide() asked to follow for one virtual service (serviceKeyString() `vsKey`), replacing
   * what was recorded before. Returns the real servers no longer followed for waiting past the limit.
   */
  update(vsKey: string, service: string, followUps: readonly FollowUp[], now: number): string[] {
    const before = this.byVirtualService.get(vsKey)?.destinations;
    const destinations = new Map<string, { kind: FollowUp['kind']; since: number }>();
    const expired: string[] = [];
    for (const f of followUps) {
      const earlier = before?.get(f.key);
      const since = earlier?.kind === f.kind ? earlier.since : now;
      if (f.kind === 'awaiting-zero' && now - since > this.awaitZeroLimitMs) {
        // Keep it out: re-recording it would restart its clock. The next resync or event reads it again.
        if (earlier !== undefined) expired.push(f.key);
        continue;
      }
      destinations.set(f.key, { kind: f.kind, since });
    }
    if (destinations.size > 0) this.byVirtualService.set(vsKey, { service, destinations });
    else this.byVirtualService.delete(vsKey);
    return expired;
  }

  forget(vsKey: string): void {
    this.byVirtualService.delete(vsKey);
  }

  /** Forgets every virtual service `keep` does not name. */
  retainOnly(keep: ReadonlySet<string> | ReadonlyMap<string, unknown>): void {
    for (const vsKey of this.byVirtualService.keys()) if (!keep.has(vsKey)) this.byVirtualService.delete(vsKey);
  }

  get size(): number {
    return this.byVirtualService.size;
  }

  /** The work-queue keys of the Services that own something followed. */
  services(): Set<string> {
    return new Set([...this.byVirtualService.values()].map((f) => f.service));
  }

  /** serviceKeyString() of each followed virtual service of one Service. */
  virtualServicesOf(service: string): Set<string> {
    const keys = new Set<string>();
    for (const [vsKey, f] of this.byVirtualService) if (f.service === service) keys.add(vsKey);
    return keys;
  }

  /** Weight-0 real servers kept only for their active connections. */
  draining(): number {
    let n = 0;
    for (const f of this.byVirtualService.values()) {
      for (const d of f.destinations.values()) if (d.kind === 'draining') n++;
    }
    return n;
  }
}
