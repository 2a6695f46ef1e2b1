// Schedules the demo's scenes (test/demo/scene-play.ts) on one cast inside the test VM. kube-proxy's syncs take tens of
// seconds under TCG and every scene step waits for one, so the scenes share them: every Service is created before
// kube-proxy starts (Cast.open); the new kernel's scenes then play every step together. The old kernel's finales never
// overlap: the IPVS sysctls are one per node, its emulation flips expire_nodest_conn when a scene's old real server
// leaves, and that must not reach a scene whose old real server is at weight 0 (6.1 would reschedule its reused
// tuples). A scene still at weight 1 is not affected, so while one finale plays, the next scene's traffic runs and its
// new pod joins the table (one sync for both slices).
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { applySysctls, type SysctlSetting } from '../../src/agent/sysctls.js';
import { deleteService } from '../support/kube-objects.js';
import { Cast, type ApiServerPlace } from './cast.js';
import type { ScenarioResult } from './report.js';
import { ScenePlay } from './scene-play.js';
import { EMULATIONS, flipsOnRemoval, NAMESPACE, sysctlsFor, type Scene, type Timings } from './scene.js';

export class Stage {
  private constructor(
    private readonly cast: Cast,
    private readonly progress: (line: string) => void,
    private readonly recordsDir: string | undefined,
  ) {}

  /** With `recordsDir`, each scene's raw records, marks and logs land there as scene-<index>.json. */
  static async open(scenes: readonly Scene[], api: ApiServerPlace, progress: (line: string) => void, recordsDir?: string): Promise<Stage> {
    return new Stage(await Cast.open(scenes, api, progress), progress, recordsDir);
  }

  /** Plays `scenes`, the old kernel's first; one result per scene, in the order played. */
  async play(scenes: readonly Scene[], t: Timings): Promise<ScenarioResult[]> {
    const plays = scenes.map((s) => new ScenePlay(s, this.cast, t, this.progress, this.recordsDir));
    const results: ScenarioResult[] = [];
    try {
      for (const p of plays) p.setUp();
      await Promise.all(plays.map((p) => p.programmed()));
      for (const emulation of EMULATIONS) {
        const group = plays.filter((p) => p.scene.emulation === emulation);
        if (group.length === 0) continue;
        // After kube-proxy wrote its own, before any traffic: the old kernel's reuse mode decides where each
        // tuple's connection entry sticks from the first request on.
        const sysctls = sysctlsFor(emulation, this.cast.kubeProxySysctls);
        await applySysctls(sysctls);
        results.push(...(flipsOnRemoval(emulation) ? await this.oneByOne(group, sysctls, t) : await this.together(group, t)));
      }
    } finally {
      for (const p of plays) p.tearDown();
      for (const s of scenes) await deleteService(this.cast.cluster, NAMESPACE, s.serviceName).catch(() => undefined);
    }
    return results;
  }

  /**
   * Finales one after the other, each with the sysctls set again (the previous one's flip undone); the next
   * scene's traffic starts and its new pod joins the table meanwhile.
   */
  private async oneByOne(group: readonly ScenePlay[], sysctls: SysctlSetting[], t: Timings): Promise<ScenarioResult[]> {
    const results: ScenarioResult[] = [];
    await group[0]!.startTraffic(t.concurrency);
    await group[0]!.newReady();
    for (const [i, play] of group.entries()) {
      await applySysctls(sysctls);
      const next = group[i + 1];
      await next?.startTraffic(t.concurrency);
      await play.watchOld();
      const [result] = await Promise.all([play.finale(), next?.newReady()]);
      results.push(result);
      play.tearDown();
    }
    return results;
  }

  /**
   * Every step of every scene at once: nothing changes the sysctls. The loops are shared out so that no more
   * run at once than while two scenes overlap one by one (the VM's two emulated CPUs serve them all).
   */
  private async together(group: readonly ScenePlay[], t: Timings): Promise<ScenarioResult[]> {
    const concurrency = Math.min(t.concurrency, Math.max(1, Math.floor((2 * t.concurrency) / group.length)));
    await Promise.all(group.map((p) => p.startTraffic(concurrency)));
    await Promise.all(group.map((p) => p.newReady()));
    await Promise.all(group.map((p) => p.watchOld()));
    const results = await Promise.all(group.map((p) => p.finale()));
    for (const p of group) p.tearDown();
    return results;
  }

  async close(): Promise<void> {
    if (this.recordsDir) writeFileSync(join(this.recordsDir, 'kube-proxy.log'), this.cast.kubeProxy.lines.map((l) => l.text).join('\n'));
    await this.cast.close();
  }
}
