// Watches one real server in the kernel's table for the demo, in its own process so the orchestrator's
// synchronous iproute2 calls never delay it:  node watcher.js
// JSON commands on stdin (WatchCommand), JSON events on stdout (WatchEvent); exits when stdin closes.
// For the old-kernel emulation it sets expire_nodest_conn=1 the moment the real server is gone. From weight 0 on it
// records the real server's connection counters, so the demo can tell how often ActiveConn is 0 under its load.
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { sysctlKey } from '../../src/agent/sysctls.js';
import { IpvsClient } from '../../src/ipvs/client.js';
import type { DestinationKey, ServiceKey } from '../../src/ipvs/types.js';
import { destinationKeyString } from '../../src/reconcile/keys.js';
import { setSysctl } from '../support/netns.js';

export type WatchCommand =
  | { cmd: 'watch'; service: ServiceKey; dest: DestinationKey; flipExpireNodestConn: boolean }
  | { cmd: 'stop' };

export type WatchEvent =
  | { event: 'ready' }
  | { event: 'watching' }
  /** `at`: Date.now() of the first read that showed the real server at weight 0. */
  | { event: 'weight-zero'; at: number }
  /** `at`: Date.now() of the first read without the real server; `flippedAt`: when expire_nodest_conn became 1. */
  | { event: 'gone'; at: number; flippedAt?: number }
  /** Sent when the watch ends (before 'gone'): the counters from weight 0 on, one entry per change. */
  | { event: 'counters'; timeline: CounterChange[] }
  | { event: 'stopped' }
  | { event: 'error'; message: string };

/** [Date.now(), ActiveConn, InActConn] of the first read that showed these counts. */
export type CounterChange = [at: number, active: number, inactive: number];

const POLL_INTERVAL_MS = 10;

const emit = (event: WatchEvent): void => void process.stdout.write(`${JSON.stringify(event)}\n`);

const ipvs = await IpvsClient.open();
let watching: { stop: boolean; done: Promise<void> } | undefined;

async function watch(w: { stop: boolean }, command: Extract<WatchCommand, { cmd: 'watch' }>): Promise<void> {
  const wanted = destinationKeyString(command.dest);
  const read = async () => (await ipvs.listDestinations(command.service)).find((d) => destinationKeyString(d) === wanted);
  if (!(await read())) throw new Error(`${wanted} is not in the table: nothing to watch`);
  emit({ event: 'watching' });
  let zeroSeen = false;
  const timeline: CounterChange[] = [];
  const record = (active: number, inactive: number) => {
    const last = timeline[timeline.length - 1];
    if (!last || last[1] !== active || last[2] !== inactive) timeline.push([Date.now(), active, inactive]);
  };
  while (!w.stop) {
    await sleep(POLL_INTERVAL_MS);
    const dest = await read();
    if (dest && dest.weight === 0 && !zeroSeen) {
      zeroSeen = true;
      emit({ event: 'weight-zero', at: Date.now() });
    }
    if (dest && zeroSeen) record(dest.activeConnections, dest.inactiveConnections);
    if (dest) continue;
    const at = Date.now();
    // One synchronous write, before anything else: until it lands, SYNs of the deleted server's tuples are
    // dropped, which no real kernel with kube-proxy's settings would do.
    if (command.flipExpireNodestConn) setSysctl(sysctlKey('expireNodestConn'), 1);
    const flippedAt = command.flipExpireNodestConn ? { flippedAt: Date.now() } : {};
    emit({ event: 'counters', timeline });
    emit({ event: 'gone', at, ...flippedAt });
    return;
  }
  emit({ event: 'counters', timeline });
}

async function handle(command: WatchCommand): Promise<void> {
  if (command.cmd === 'watch') {
    if (watching) throw new Error('already watching: stop first');
    const w: { stop: boolean; done: Promise<void> } = { stop: false, done: Promise.resolve() };
    w.done = watch(w, command).catch((err: unknown) => emit({ event: 'error', message: String(err) }));
    watching = w;
    return;
  }
  if (watching) {
    watching.stop = true;
    await watching.done;
    watching = undefined;
  }
  emit({ event: 'stopped' });
}

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === '') return;
    void handle(JSON.parse(line) as WatchCommand).catch((err: unknown) => emit({ event: 'error', message: String(err) }));
  })
  .on('close', () => ipvs.close());
emit({ event: 'ready' });
