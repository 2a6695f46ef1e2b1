// A CPU profile of one call in this process, through the inspector, boiled down to self time per function.
import { writeFileSync } from 'node:fs';
import { Session, type Profiler } from 'node:inspector/promises';
import type { ProfileEntry } from './results.js';

const SAMPLING_INTERVAL_US = 200;
const TOP_FUNCTIONS = 12;

export async function profile(run: () => Promise<unknown>, saveTo: string): Promise<ProfileEntry[]> {
  const session = new Session();
  session.connect();
  try {
    await session.post('Profiler.enable');
    await session.post('Profiler.setSamplingInterval', { interval: SAMPLING_INTERVAL_US });
    await session.post('Profiler.start');
    await run();
    const { profile: result } = await session.post('Profiler.stop');
    writeFileSync(saveTo, JSON.stringify(result));
    return selfTime(result);
  } finally {
    session.disconnect();
  }
}

const shortUrl = (url: string): string => url.replace(/^file:\/\/.*?\/(dist|node_modules)\//, '');

function selfTime(p: Profiler.Profile): ProfileEntry[] {
  const byId = new Map(p.nodes.map((n) => [n.id, n]));
  const parentOf = new Map<number, Profiler.ProfileNode>();
  for (const n of p.nodes) for (const child of n.children ?? []) parentOf.set(child, n);
  const totals = new Map<string, ProfileEntry & { us: number }>();
  let all = 0;
  p.samples?.forEach((id, i) => {
    const us = p.timeDeltas?.[i + 1] ?? 0;
    all += us;
    const node = byId.get(id)!;
    let { functionName: fn, url, lineNumber } = node.callFrame;
    // FFI and other native callbacks have no script; V8 may even give every koffi function one name.
    if (url === '' && !fn.startsWith('(')) {
      const caller = parentOf.get(id)?.callFrame;
      fn = `native code called by ${caller?.functionName || '(anonymous)'}`;
      url = caller?.url ?? '';
      lineNumber = caller?.lineNumber ?? -1;
    }
    const location = url ? `${shortUrl(url)}:${lineNumber + 1}` : '';
    const key = `${fn} ${location}`;
    const entry = totals.get(key) ?? { function: fn || '(anonymous)', location, selfPercent: 0, us: 0 };
    entry.us += us;
    totals.set(key, entry);
  });
  return [...totals.values()]
    .map(({ us, ...entry }) => ({ ...entry, selfPercent: (100 * us) / all }))
    .sort((a, b) => b.selfPercent - a.selfPercent)
    .slice(0, TOP_FUNCTIONS);
}
