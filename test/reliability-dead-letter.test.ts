import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { LocalJobQueue } from '../src/adapters/local/local-job-queue.js';
import { startLocalPlatform } from '../src/adapters/local/platform.js';
import { loadLocalConfig } from '../src/config.js';
import { failDeadLetteredJob, getJob, JOB_STAGES, updateJob } from '../src/core/jobs.js';
import { sweepDeadLetters } from '../src/core/queue-worker.js';
import { storageKeys } from '../src/core/storage-keys.js';
import { runCrashWorker } from './support/crash-runner.js';
import type { CrashPlan } from './support/crash-worker.js';
import { makeTextDataset, toJsonl } from './support/fixtures.js';
import { ADMIN_KEY, createTestApp, queuedJob, type TestApp } from './support/harness.js';

async function upload(ctx: TestApp, task: string, seed: number) {
  const rows = makeTextDataset({ perLabel: 30, seed }).map((r) => ({ ...r, text: `${r.text} s${seed}` }));
  const uploaded = await ctx.api.post(`/v1/tasks/${task}/datasets`, toJsonl(rows), 'application/x-ndjson');
  expect(uploaded.status, JSON.stringify(uploaded.body)).toBe(201);
  return uploaded.body.jobId as string;
}

/** Delivers the job's message until the queue dead-letters it, as workers that die right after receiving would. */
async function deadLetter(ctx: TestApp, jobId: string) {
  const queue = ctx.deps.queue as LocalJobQueue;
  // the job's own message, plus one sent now (a duplicate, or the only one when the job's was consumed)
  await queue.send({ type: 'train', jobId });
  for (;;) {
    const received = await queue.receive({ maxMessages: 10, visibilityTimeoutMs: 0 });
    if (received.length === 0) break;
  }
  return queue;
}

describe('dead letters: a job whose worker is SIGKILLed on every delivery', () => {
  it('ends failed with the reason, shown by the API, and a later upload trains normally', async () => {
    // given a queued job, and a worker process that is killed mid-training on each of the 3 deliveries
    const ctx = await createTestApp();
    await ctx.api.put('/v1/tasks/doomed', { strategy: 'logistic' });
    const jobId = await upload(ctx, 'doomed', 1);
    const plan: CrashPlan = {
      points: [1, 2, 3].map((attempt) => ({
        id: `doomed-${attempt}`,
        task: 'doomed',
        stage: 'training',
        attempt,
      })),
      visibilityTimeoutMs: 1_000,
      heartbeatMs: 100,
      deadLetterSweepMs: 100,
    };

    // when worker processes run on the data directory until one of them sees every job ended
    const runs: (string | number | null)[] = [];
    for (let run = 0; run < 5; run++) {
      const { code, signal, stderr } = await runCrashWorker(ctx.dataDir, plan, { timeoutMs: 20_000 });
      runs.push(signal ?? code);
      if (code === 0) break;
      expect(signal, stderr).toBe('SIGKILL');
    }

    // then three deaths, and the fourth worker found the message dead-lettered and ended the job
    expect(runs).toEqual(['SIGKILL', 'SIGKILL', 'SIGKILL', 0]);
    const shown = await ctx.api.get(`/v1/jobs/${jobId}`);
    expect(shown.status).toBe(200);
    expect(shown.body).toMatchObject({ status: 'failed', error: { code: 'DELIVERIES_EXHAUSTED' } });
    const stage = shown.body.stage as string;
    expect(JOB_STAGES.indexOf(stage as never)).toBeGreaterThanOrEqual(JOB_STAGES.indexOf('training'));
    expect(shown.body.error.message).toContain(
      `The worker stopped without finishing this job on all 3 deliveries (last stage: ${stage})`,
    );
    expect(shown.body.error.message).toContain('The dataset is kept: retry with POST /v1/tasks/doomed/jobs');
    expect(shown.body.events.filter((e: { message: string }) => e.message.startsWith('failed'))).toHaveLength(
      1,
    );
    expect((await getJob(ctx.deps, jobId)).attempts).toBe(3);
    // and nothing was published, the dataset is still there
    expect(await ctx.deps.store.list(storageKeys.modelsPrefix('doomed'))).toEqual([]);
    expect((await ctx.api.get('/v1/tasks/doomed/datasets')).body.datasets).toHaveLength(1);
    // and the dead letter is kept as evidence, handled once
    const queue = ctx.deps.queue as LocalJobQueue;
    expect((await queue.deadLetters()).map((letter) => JSON.parse(letter.body))).toEqual([
      { type: 'train', jobId },
    ]);
    expect(await queue.unhandledDeadLetters()).toEqual([]);
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0, deadLetter: 1 });

    // when the task gets a new upload, and a worker runs (every kill point has fired: it is a plain worker)
    const later = await upload(ctx, 'doomed', 2);
    const { code, stderr } = await runCrashWorker(ctx.dataDir, plan, { timeoutMs: 20_000 });

    // then it trains, is promoted and serves
    expect(code, stderr).toBe(0);
    const laterJob = (await ctx.api.get(`/v1/jobs/${later}`)).body;
    expect(laterJob, JSON.stringify(laterJob.error)).toMatchObject({ status: 'succeeded', promoted: true });
    const predicted = await ctx.api.post('/v1/tasks/doomed/predict', { inputs: ['goal for the team'] });
    expect(predicted.body).toMatchObject({ model: { version: laterJob.modelVersion } });
    expect(predicted.body.predictions[0].label).toBe('sports');
    // and the failed job stays as it ended
    expect((await ctx.api.get(`/v1/jobs/${jobId}`)).body).toMatchObject({ status: 'failed' });
  }, 120_000);
});

describe('sweepDeadLetters', () => {
  it('runs in the platform of `npm start`: a dead letter found on start fails its job', async () => {
    // given a data directory holding a dead-lettered job that never started
    const ctx = await createTestApp();
    const jobId = await queuedJob(ctx, 'restarted', { perLabel: 10 });
    await deadLetter(ctx, jobId);
    // when the platform starts on it
    const config = loadLocalConfig({
      GRAFT_DATA_DIR: ctx.dataDir,
      PORT: '0',
      GRAFT_API_KEY: ADMIN_KEY,
      GRAFT_LOG_LEVEL: 'silent',
    });
    const platform = await startLocalPlatform(config, { microBatch: false });
    try {
      const deadline = Date.now() + 10_000;
      while ((await getJob(ctx.deps, jobId)).status !== 'failed' && Date.now() < deadline) {
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      // then its API shows the job failed
      const shown = await fetch(`${platform.url}/v1/jobs/${jobId}`, {
        headers: { authorization: `Bearer ${ADMIN_KEY}` },
      });
      expect(await shown.json()).toMatchObject({ status: 'failed', error: { code: 'DELIVERIES_EXHAUSTED' } });
    } finally {
      await platform.close();
    }
  });

  it('fails a queued job that never started, once; the letter is kept and not handled again', async () => {
    // given
    const ctx = await createTestApp();
    const jobId = await queuedJob(ctx, 'never', { perLabel: 10 });
    const queue = await deadLetter(ctx, jobId);
    expect((await queue.unhandledDeadLetters()).length).toBeGreaterThan(0);

    // when
    await sweepDeadLetters(ctx.deps, queue);
    const first = await getJob(ctx.deps, jobId);
    await sweepDeadLetters(ctx.deps, queue);

    // then
    expect(first).toMatchObject({ status: 'failed', error: { code: 'DELIVERIES_EXHAUSTED' } });
    expect(first.error?.message).toMatch(/^The job was delivered 3 times and never started/);
    expect(await getJob(ctx.deps, jobId)).toEqual(first);
    expect(await queue.unhandledDeadLetters()).toEqual([]);
    expect((await queue.deadLetters()).length).toBeGreaterThan(0);
  });

  it('leaves a job a live worker holds until its heartbeat goes stale', async () => {
    // given a running job with a fresh heartbeat, and a duplicate of its message dead-lettered
    const ctx = await createTestApp();
    const jobId = await queuedJob(ctx, 'held', { perLabel: 10 });
    const claimedAt = new Date();
    await updateJob(ctx.deps, jobId, (job) => ({
      ...job,
      status: 'running',
      stage: 'embedding',
      attempts: 1,
      worker: { id: 'worker-alive', heartbeatAt: claimedAt.toISOString() },
    }));
    const queue = await deadLetter(ctx, jobId);
    const options = { worker: { heartbeatMs: 1_000 } };

    // when the sweep runs while the worker is alive
    await sweepDeadLetters(ctx.deps, queue, options);

    // then the job is its worker's, and the letter waits
    expect(await getJob(ctx.deps, jobId)).toMatchObject({
      status: 'running',
      worker: { id: 'worker-alive' },
    });
    const waiting = await queue.unhandledDeadLetters();
    expect(waiting.length).toBeGreaterThan(0);

    // when the heartbeat is older than four periods
    const later = { ...ctx.deps, now: () => new Date(claimedAt.getTime() + 4_001) };
    await sweepDeadLetters(later, queue, options);

    // then
    const job = await getJob(ctx.deps, jobId);
    expect(job).toMatchObject({ status: 'failed', error: { code: 'DELIVERIES_EXHAUSTED' } });
    expect(job.worker).toBeUndefined();
    expect(job.error?.message).toContain('on all 3 deliveries (last stage: embedding)');
    expect(await queue.unhandledDeadLetters()).toEqual([]);
  });

  it('leaves ended jobs, unknown jobs and letters that are not job messages as they are', async () => {
    // given a succeeded and a cancelled job, a message for a job that does not exist, and a damaged file
    const ctx = await createTestApp();
    const succeeded = await queuedJob(ctx, 'done', { perLabel: 10 });
    await updateJob(ctx.deps, succeeded, (job) => ({ ...job, status: 'succeeded', progress: 1 }));
    const cancelled = await queuedJob(ctx, 'stopped', { perLabel: 10 });
    expect((await ctx.api.post(`/v1/jobs/${cancelled}/cancel`, {})).status).toBe(200);
    const before = await Promise.all([succeeded, cancelled].map((id) => getJob(ctx.deps, id)));
    await ctx.deps.queue.send({ type: 'train', jobId: 'job-nope-00000000' });
    await writeFile(path.join(ctx.dataDir, 'queue', 'messages', 'damaged.json'), '{not json');
    const queue = await deadLetter(ctx, succeeded);
    await deadLetter(ctx, cancelled);

    // when
    await sweepDeadLetters(ctx.deps, queue);

    // then
    const after = await Promise.all([succeeded, cancelled].map((id) => getJob(ctx.deps, id)));
    expect(after).toEqual(before);
    expect(await queue.unhandledDeadLetters()).toEqual([]);
    expect((await queue.deadLetters()).map((letter) => letter.messageId)).toContain('damaged');
    expect(await failDeadLetteredJob(ctx.deps, 'job-nope-00000000')).toEqual({ outcome: 'unknown' });
  });
});
