// Watches real servers in the kernel's table for the demo (one per scene in its finale; several at once when
// scenes play their finales together), in its own process so the orchestrator's synchronous iproute2 calls never
// delay it:  node watcher.js
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
  | { cmd: 'watch'; run: string; service: ServiceKey; dest: DestinationKey; flipExpireNodestConn: boolean }
  | { cmd: 'stop'; run: string };

export type WatchEvent =
  | { event: 'ready' }
  | { event: 'watching'; run: string }
  /** `at`: Date.now() of the first read that showed the real server at weight 0. */
  | { event: 'weight-zero'; run: string; at: number }
  /** `at`: Date.now() of the first read without the real server; `flippedAt`: when expire_nodest_conn became 1. */
  | { event: 'gone'; run: string; at: number; flippedAt?: number }
  /** Sent when the watch ends (before 'gone'): the counters from weight 0 on, one entry per change. */
  | { event: 'counters'; run: string; timeline: CounterChange[] }
  | { event: 'stopped'; run: string }
  | { event: 'error'; message: string };

/** [Date.now(), ActiveConn, InActConn] of the first read that showed these counts. */
export type CounterChange = [at: number, active: number, inactive: number];

const POLL_INTERVAL_MS = 10;

const emit = (event: WatchEvent): void => void process.stdout.write(`${JSON.stringify(event)}\n`);

const ipvs = await IpvsClient.open();
const watches = new Map<string, { stop: boolean; done: Promise<void> }>();

async function watch(w: { stop: boolean }, command: Extract<WatchCommand, { cmd: 'watch' }>): Promise<void> {
  const { run } = command;
  const wanted = destinationKeyString(command.dest);
  const read = async () => (await ipvs.listDestinations(command.service)).find((d) => destinationKeyString(d) === wanted);
  if (!(await read())) throw new Error(`${run}: ${wanted} is not in the table: nothing to watch`);
  emit({ event: 'watching', run });
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
      emit({ event: 'weight-zero', run, at: Date.now() });
    }
    if (dest && zeroSeen) record(dest.activeConnections, dest.inactiveConnections);
    if (dest) continue;
    const at = Date.now();
    // One synchronous write, before anything else: until it lands, SYNs of the deleted server's tuples are
    // dropped, which no real kernel with kube-proxy's settings would do.
    if (command.flipExpireNodestConn) setSysctl(sysctlKey('expireNodestConn'), 1);
    const flippedAt = command.flipExpireNodestConn ? { flippedAt: Date.now() } : {};
    emit({ event: 'counters', run, timeline });
    emit({ event: 'gone', run, at, ...flippedAt });
    return;
  }
  emit({ event: 'counters', run, timeline });
}

async function handle(command: WatchCommand): Promise<void> {
  const { run } = command;
  if (command.cmd === 'watch') {
    if (watches.has(run)) throw new Error(`${run} is watched already: stop it first`);
    const w: { stop: boolean; done: Promise<void> } = { stop: false, done: Promise.resolve() };
    w.done = watch(w, command).catch((err: unknown) => emit({ event: 'error', message: String(err) }));
    watches.set(run, w);
    return;
  }
  const w = watches.get(run);
  if (w) {
    w.stop = true;
    await w.done;
    watches.delete(run);
  }
  emit({ event: 'stopped', run });
}

createInterface({ input: process.stdin })
  .on('line', (line) => {
    if (line.trim() === '') return;
    void handle(JSON.parse(line) as WatchCommand).catch((err: unknown) => emit({ event: 'error', message: String(err) }));
  })
  .on('close', () => ipvs.close());
emit({ event: 'ready' });
