import { describe, expect, it } from 'vitest';
import type { LocalJobQueue } from '../src/adapters/local/local-job-queue.js';
import { createLocalDeps } from '../src/adapters/local/platform.js';
import { getJob } from '../src/core/jobs.js';
import { silentLogger } from '../src/core/logger.js';
import { listCards } from '../src/core/models.js';
import { processMessage, runQueueWorker } from '../src/core/queue-worker.js';
import { getTask } from '../src/core/tasks.js';
import { runJob } from '../src/core/worker.js';
import { createTestApp, queuedJob, type TestApp } from './support/harness.js';

/** One model version for the job, served, and the job's record says so once. */
async function expectOneVersion(ctx: TestApp, task: string, jobId: string) {
  const job = await getJob(ctx.deps, jobId);
  expect(job).toMatchObject({ status: 'succeeded', modelVersion: 'v1', promoted: true });
  expect(job.events.filter((e) => e.message.startsWith('succeeded'))).toHaveLength(1);
  expect((await listCards(ctx.deps, task)).map((card) => [card.version, card.jobId])).toEqual([
    ['v1', jobId],
  ]);
  expect(await ctx.deps.store.list(`tasks/${task}/models/`)).toEqual([
    `tasks/${task}/models/v1/card.json`,
    `tasks/${task}/models/v1/model.onnx`,
  ]);
  // no version number was taken by a duplicate
  expect((await getTask(ctx.deps, task)).nextVersion).toBe(2);
  expect((await ctx.api.get(`/v1/tasks/${task}`)).body.currentModel.version).toBe('v1');
}

describe('at-least-once delivery', () => {
  it('the same job delivered 3 times, one after another, trains one model version', async () => {
    // given a job whose message is on the queue three times
    const ctx = await createTestApp();
    const jobId = await queuedJob(ctx, 'thrice');
    await ctx.deps.queue.send({ type: 'train', jobId });
    await ctx.deps.queue.send({ type: 'train', jobId });

    // when each delivery is processed
    let deliveries = 0;
    for (;;) {
      const [message] = await ctx.deps.queue.receive({ maxMessages: 1 });
      if (!message) break;
      deliveries++;
      await processMessage(ctx.deps, message, {});
    }

    // then
    expect(deliveries).toBe(3);
    await expectOneVersion(ctx, 'thrice', jobId);
    expect((await getJob(ctx.deps, jobId)).attempts).toBe(1);
  });

  it('two workers racing on the same job (two processes on one data directory) train one version', async () => {
    // given three deliveries of one job, and two workers with their own store and queue instances, as two
    // `npm start` processes on the same data directory would have
    const ctx = await createTestApp();
    const jobId = await queuedJob(ctx, 'race');
    await ctx.deps.queue.send({ type: 'train', jobId });
    await ctx.deps.queue.send({ type: 'train', jobId });
    const workers = ['a', 'b'].map((id) => ({
      id,
      deps: createLocalDeps(ctx.dataDir, silentLogger, 300),
      stop: new AbortController(),
    }));

    // when both run their queue loops until the queue is empty
    const running = workers.map((w) =>
      runQueueWorker(w.deps, {
        signal: w.stop.signal,
        visibilityTimeoutMs: 300,
        pollWaitMs: 20,
        worker: { workerId: `worker-${w.id}`, heartbeatMs: 50 },
      }),
    );
    const queue = ctx.deps.queue as LocalJobQueue;
    const deadline = Date.now() + 30_000;
    for (;;) {
      const depth = await queue.depth();
      if (depth.visible + depth.inFlight === 0 && (await getJob(ctx.deps, jobId)).status === 'succeeded')
        break;
      if (Date.now() > deadline) throw new Error(`the queue did not drain: ${JSON.stringify(depth)}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    for (const w of workers) w.stop.abort();
    await Promise.all(running);

    // then one version; a duplicate received while the job ran may have gone to the dead-letter queue (as in
    // SQS, each refused receive counts), but never a job that has not ended
    await expectOneVersion(ctx, 'race', jobId);
    for (const letter of await queue.deadLetters()) {
      expect(JSON.parse(letter.body)).toEqual({ type: 'train', jobId });
    }
  });

  it('runJob called twice at the same moment trains once: the second is refused while the first runs', async () => {
    // given
    const ctx = await createTestApp();
    const jobId = await queuedJob(ctx, 'twice');

    // when
    const results = await Promise.allSettled([
      runJob(ctx.deps, jobId, { workerId: 'worker-1' }),
      runJob(ctx.deps, jobId, { workerId: 'worker-2' }),
    ]);

    // then one ran it, the other was told it is busy (its delivery is left for later, not deleted)
    const fulfilled = results.filter((r) => r.status === 'fulfilled');
    const rejected = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
    expect(fulfilled).toHaveLength(1);
    expect(rejected.map((r) => (r.reason as Error).name)).toEqual(['JobBusyError']);
    await expectOneVersion(ctx, 'twice', jobId);
  });
});
