// A worker process that dies on purpose. Run with `node --import tsx test/support/crash-worker.ts <dataDir> <plan>`
// by test/reliability-crash.test.ts: the real queue worker over the data directory of `npm start`, which SIGKILLs
// itself at the first kill point of the plan that has not fired yet, and exits 0 once every job has ended.
import { mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { DirObjectStore } from '../../src/adapters/local/dir-object-store.js';
import { LocalJobQueue } from '../../src/adapters/local/local-job-queue.js';
import { boundedObjectStore } from '../../src/core/bounded-object-store.js';
import type { CoreDeps } from '../../src/core/deps.js';
import { isTerminal, JOB_STAGES, type Job, type JobStage, listJobs } from '../../src/core/jobs.js';
import { createLogger } from '../../src/core/logger.js';
import { type DeadLetterBox, runQueueWorker } from '../../src/core/queue-worker.js';
import type { JobQueue } from '../../src/ports/job-queue.js';
import { FaultyObjectStore } from './faulty-store.js';

/**
 * Where to die: when a job record of `task` is about to be written with `stage`, or once `key` is written; with
 * `attempt`, once a record of that attempt of the job at `stage` or later is written (so the record says so).
 */
export interface KillPoint {
  id: string;
  task: string;
  stage?: JobStage;
  key?: string;
  attempt?: number;
}

export interface CrashPlan {
  points: KillPoint[];
  visibilityTimeoutMs: number;
  heartbeatMs: number;
  /** @default the queue worker's */
  deadLetterSweepMs?: number;
}

/** The kill points that have fired, recorded in `<dataDir>/fired/` before each kill. */
function firedPoints(dataDir: string): string[] {
  try {
    return readdirSync(path.join(dataDir, 'fired')).sort();
  } catch {
    return [];
  }
}

async function main() {
  const [dataDir, planJson] = process.argv.slice(2);
  if (!dataDir || !planJson) throw new Error('usage: crash-worker.ts <dataDir> <plan json>');
  const plan = JSON.parse(planJson) as CrashPlan;
  const fired = new Set(firedPoints(dataDir));
  const armed = plan.points.filter((point) => !fired.has(point.id));

  const faulty = new FaultyObjectStore(new DirObjectStore(path.join(dataDir, 'store')));
  const queue = new LocalJobQueue({
    dir: path.join(dataDir, 'queue'),
    defaultVisibilityTimeoutMs: plan.visibilityTimeoutMs,
  });
  let queueCalls = 0;
  let dying = false;
  // Queue calls may hold the queue's lock file: counted, and held back once the process is about to die.
  const tracked = <A extends unknown[], R>(call: (...args: A) => Promise<R>) => {
    return async (...args: A): Promise<R> => {
      if (dying) return new Promise<R>(() => {});
      queueCalls++;
      try {
        return await call(...args);
      } finally {
        queueCalls--;
      }
    };
  };
  const trackedQueue: JobQueue & DeadLetterBox = {
    send: tracked((m) => queue.send(m)),
    receive: tracked((o) => queue.receive(o)),
    delete: tracked((h) => queue.delete(h)),
    extendVisibility: tracked((h, ms) => queue.extendVisibility(h, ms)),
    unhandledDeadLetters: tracked(() => queue.unhandledDeadLetters()),
    markDeadLetterHandled: tracked((id, note) => queue.markDeadLetterHandled(id, note)),
  };
  const deps: CoreDeps = {
    store: boundedObjectStore(faulty, { timeoutMs: 5_000 }),
    queue: trackedQueue,
    log: createLogger('warn'),
  };

  // Dies with no write in flight, so that no lock file is left behind (a stale lock costs its 30 s timeout).
  const die = async (point: KillPoint) => {
    dying = true;
    faulty.inject({ fault: 'hang', ops: ['put', 'delete'] });
    while (faulty.pendingWrites > 0 || queueCalls > 0) await sleep(1);
    mkdirSync(path.join(dataDir, 'fired'), { recursive: true });
    writeFileSync(path.join(dataDir, 'fired', point.id), '');
    process.kill(process.pid, 'SIGKILL');
  };
  // A stage is caught as its job record is about to be written (the pipeline is in that stage, and nothing it
  // does later reaches the store); a key once its write has landed.
  faulty.beforePut = async (key, body) => {
    if (dying || !key.startsWith('jobs/')) return;
    const job = JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8')) as Job;
    // Progress that comes while a write waits joins it: a stage may be entered and left within one write.
    const point = armed.find(
      (p) =>
        p.stage !== undefined &&
        p.attempt === undefined &&
        p.task === job.task &&
        job.status === 'running' &&
        job.events.some((e) => e.stage === p.stage),
    );
    // Only once the job is claimed (its record already says running): the claim itself enters "validating".
    const before = point && (await faulty.inner.find(key));
    if (point && before && JSON.parse(Buffer.from(before.body).toString('utf8')).status === 'running') {
      await die(point);
    }
  };
  faulty.onPut = async (key, body) => {
    if (dying) return;
    const point = armed.find((p) => p.key === key) ?? attemptPoint(key, body);
    if (point) await die(point);
  };
  const attemptPoint = (key: string, body: Uint8Array | string) => {
    if (!key.startsWith('jobs/')) return undefined;
    const job = JSON.parse(typeof body === 'string' ? body : Buffer.from(body).toString('utf8')) as Job;
    const reached = (stage: JobStage | undefined) =>
      job.stage !== undefined && JOB_STAGES.indexOf(job.stage) >= JOB_STAGES.indexOf(stage ?? 'validating');
    return armed.find(
      (p) =>
        p.attempt !== undefined &&
        p.task === job.task &&
        job.status === 'running' &&
        job.attempts === p.attempt &&
        reached(p.stage),
    );
  };

  const stop = new AbortController();
  const worker = runQueueWorker(deps, {
    signal: stop.signal,
    visibilityTimeoutMs: plan.visibilityTimeoutMs,
    pollWaitMs: 100,
    deadLetterSweepMs: plan.deadLetterSweepMs,
    worker: { heartbeatMs: plan.heartbeatMs },
  });
  for (;;) {
    await sleep(100);
    const jobs = await listJobs(deps, { limit: 10_000 });
    if (jobs.length > 0 && jobs.every(isTerminal)) break;
  }
  stop.abort();
  await worker;
}

await main();
