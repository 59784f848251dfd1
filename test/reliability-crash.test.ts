import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { getJob } from '../src/core/jobs.js';
import { CurrentSchema, ModelCardSchema } from '../src/core/models.js';
import { storageKeys } from '../src/core/storage-keys.js';
import type { ObjectStore } from '../src/ports/object-store.js';
import { runCrashWorker } from './support/crash-runner.js';
import type { CrashPlan, KillPoint } from './support/crash-worker.js';
import { makeTextDataset, toJsonl } from './support/fixtures.js';
import { createTestApp, type TestApp, trainTask } from './support/harness.js';

async function firedPoints(dataDir: string): Promise<string[]> {
  return (await readdir(path.join(dataDir, 'fired')).catch(() => [])).sort();
}

/** The one name in `names` not in `seen` (which it joins). */
function newest(names: string[], seen: Set<string>): string | undefined {
  const fresh = names.filter((name) => !seen.has(name));
  for (const name of fresh) seen.add(name);
  return fresh.length === 1 ? fresh[0] : undefined;
}

async function readJson(store: ObjectStore, key: string): Promise<unknown> {
  const found = await store.find(key);
  return found ? JSON.parse(Buffer.from(found.body).toString('utf8')) : undefined;
}

/**
 * What must hold whenever the worker stops, however abruptly: a version is visible (has a card) only with its
 * complete model file, and current.json names a visible version and that file's ETag.
 */
async function expectConsistentStore(store: ObjectStore, tasks: string[], when: string) {
  for (const task of tasks) {
    const keys = await store.list(storageKeys.modelsPrefix(task));
    const versions = keys.flatMap((key) => key.match(/\/models\/([^/]+)\/card\.json$/)?.[1] ?? []);
    for (const version of versions) {
      const card = ModelCardSchema.parse(await readJson(store, storageKeys.modelCard(task, version)));
      const file = await store.find(storageKeys.modelFile(task, version));
      expect(file, `${when}: ${task}/${version} has a card but no model file`).toBeDefined();
      const sha256 = createHash('sha256')
        .update(file?.body ?? new Uint8Array())
        .digest('hex');
      expect(sha256, `${when}: ${task}/${version} model file is not the one its card describes`).toBe(
        card.model.sha256,
      );
    }
    const current = await readJson(store, storageKeys.current(task));
    if (current === undefined) continue;
    const { version, etag } = CurrentSchema.parse(current);
    expect(versions, `${when}: ${task} current.json names ${version}, which is not visible`).toContain(
      version,
    );
    expect((await store.find(storageKeys.modelFile(task, version)))?.etag).toBe(etag);
  }
}

async function uploadJob(ctx: TestApp, task: string, seed: number) {
  const rows = makeTextDataset({ perLabel: 60, seed }).map((r) => ({ ...r, text: `${r.text} s${seed}` }));
  const uploaded = await ctx.api.post(`/v1/tasks/${task}/datasets`, toJsonl(rows), 'application/x-ndjson');
  expect(uploaded.status, JSON.stringify(uploaded.body)).toBe(201);
  return uploaded.body.jobId as string;
}

describe('crash safety: the worker killed with SIGKILL at every stage', () => {
  it('ends every job succeeded exactly once, and never shows a partial model', async () => {
    // given one task per kill point, each with a queued job; on the "gate" tasks v1 already serves, so their
    // job trains v2 and compares it with v1 before promoting it (promotion "always" so that it does promote)
    const ctx = await createTestApp();
    const stages = ['validating', 'embedding', 'training', 'evaluating', 'exporting', 'publishing'] as const;
    const points: KillPoint[] = [
      ...stages.map((stage) => ({ id: `stage-${stage}`, task: `crash-${stage}`, stage })),
      // the three writes of publishing: the model file, its card (which makes the version visible), the pointer
      { id: 'after-model-file', task: 'crash-file', key: storageKeys.modelFile('crash-file', 'v1') },
      { id: 'after-card', task: 'crash-card', key: storageKeys.modelCard('crash-card', 'v1') },
      { id: 'after-current', task: 'crash-current', key: storageKeys.current('crash-current') },
      { id: 'gate-training', task: 'gate-training', stage: 'training' },
      { id: 'gate-after-current', task: 'gate-current', key: storageKeys.current('gate-current') },
    ];
    const tasks = points.map((point) => point.task);
    for (const task of tasks.filter((t) => t.startsWith('gate-'))) {
      await trainTask(ctx, task);
      await ctx.api.put(`/v1/tasks/${task}`, { promotion: { mode: 'always' } });
    }
    const jobs = new Map<string, string>();
    for (const task of tasks) {
      await ctx.api.put(`/v1/tasks/${task}`, { strategy: 'logistic' });
      jobs.set(task, await uploadJob(ctx, task, 2));
    }
    const before = new Map(
      await Promise.all(tasks.map(async (t) => [t, (await ctx.api.get(`/v1/tasks/${t}`)).body] as const)),
    );

    // when worker processes run on the data directory until one of them finishes every job
    const plan: CrashPlan = { points, visibilityTimeoutMs: 1_000, heartbeatMs: 100 };
    const runs: { code: number | null; signal: string | null }[] = [];
    const seen = new Set<string>();
    for (let attempt = 0; attempt < points.length + 3; attempt++) {
      const { code, signal, stderr } = await runCrashWorker(ctx.dataDir, plan);
      runs.push({ code, signal });
      // then after every stop the store is consistent
      await expectConsistentStore(ctx.deps.store, tasks, `after run ${attempt + 1} (${signal ?? code})`);
      if (code === 0) break;
      expect(signal, stderr).toBe('SIGKILL');
      // and a worker killed before publishing has published nothing
      const firedNow = newest(await firedPoints(ctx.dataDir), seen);
      const point = points.find((p) => p.id === firedNow);
      expect(point, 'a kill point fired').toBeDefined();
      if (point?.stage && point.stage !== 'publishing') {
        const version = (await getJob(ctx.deps, jobs.get(point.task) ?? '')).modelVersion;
        expect(
          await ctx.deps.store.find(storageKeys.modelFile(point.task, version)),
          point.id,
        ).toBeUndefined();
      }
    }
    const fired = await firedPoints(ctx.dataDir);
    expect(fired).toEqual(points.map((point) => point.id).sort());
    expect(runs.at(-1)).toEqual({ code: 0, signal: null });
    expect(runs).toHaveLength(points.length + 1);

    // and every job succeeded once, with one new version, which is the one served
    for (const task of tasks) {
      const jobId = jobs.get(task) ?? '';
      const job = await getJob(ctx.deps, jobId);
      expect(job, `${task}: ${JSON.stringify(job.error)}`).toMatchObject({
        status: 'succeeded',
        progress: 1,
      });
      expect(job.attempts, task).toBe(2);
      expect(
        job.events.filter((e) => e.message.startsWith('succeeded')),
        task,
      ).toHaveLength(1);
      const models = (await ctx.api.get(`/v1/tasks/${task}/models`)).body;
      const wanted = task.startsWith('gate-') ? ['v1', 'v2'] : ['v1'];
      expect(models.models.map((m: { version: string }) => m.version)).toEqual(wanted);
      const card = (await ctx.api.get(`/v1/tasks/${task}/models/${job.modelVersion}`)).body;
      expect(card.jobId).toBe(jobId);
      expect(models.current, task).toBe(job.modelVersion);
      // the job's record tells the truth about the promotion, even when the pointer was written by the
      // attempt that died
      expect(job.promoted, `${task}: ${job.events.at(-1)?.message}`).toBe(true);
      const predicted = await ctx.api.post(`/v1/tasks/${task}/predict`, { inputs: ['goal for the team'] });
      expect(predicted.body).toMatchObject({ model: { version: job.modelVersion } });
      expect(predicted.body.predictions[0].label).toBe('sports');
      expect(before.get(task)?.name).toBe(task);
    }
    // and the queue holds nothing: no delivery was lost to the dead-letter queue
    const queue = ctx.deps.queue as unknown as { depth(): Promise<Record<string, number>> };
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0, deadLetter: 0 });
  }, 120_000);
});
