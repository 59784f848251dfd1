import { GraftError } from '../errors.js';
import { JobMessageSchema, type ReceivedMessage } from '../ports/job-queue.js';
import type { CoreDeps } from './deps.js';
import { JobBusyError, runJob, type WorkerOptions } from './worker.js';

export interface QueueWorkerOptions {
  signal: AbortSignal;
  visibilityTimeoutMs?: number;
  /** The queue's dead-letter threshold: the delivery with this receive count is the last one. */
  maxReceives?: number;
  pollWaitMs?: number;
  worker?: Omit<WorkerOptions, 'lastAttempt'>;
}

/**
 * The local stand-in for SQS -> Batch: receives job messages and runs them in this process, one at a time,
 * keeping each message invisible while its job runs. Resolves when `signal` aborts.
 */
export async function runQueueWorker(deps: CoreDeps, options: QueueWorkerOptions): Promise<void> {
  const { signal, visibilityTimeoutMs = 30_000, pollWaitMs = 1_000 } = options;
  while (!signal.aborted) {
    let messages: ReceivedMessage[];
    try {
      messages = await deps.queue.receive({ maxMessages: 1, waitMs: pollWaitMs, visibilityTimeoutMs });
    } catch (err) {
      deps.log.warn('queue receive failed; retrying', { err: String(err) });
      await sleep(pollWaitMs, signal);
      continue;
    }
    for (const message of messages) {
      if (signal.aborted) return; // undeleted: it is delivered again after its visibility timeout
      await processMessage(deps, message, options);
    }
  }
}

/** Runs the job a message names; deletes the message unless the job should be tried again. */
export async function processMessage(
  deps: CoreDeps,
  message: ReceivedMessage,
  options: Omit<QueueWorkerOptions, 'signal'>,
) {
  const { visibilityTimeoutMs = 30_000, maxReceives = 3 } = options;
  const parsed = JobMessageSchema.safeParse(safeJson(message.body));
  if (!parsed.success) {
    deps.log.error('dropping a message that is not a job message', { body: message.body.slice(0, 200) });
    await deps.queue.delete(message.receiptHandle);
    return;
  }
  const { jobId } = parsed.data;
  const keepAlive = setInterval(
    () => void deps.queue.extendVisibility(message.receiptHandle, visibilityTimeoutMs).catch(() => {}),
    Math.max(50, visibilityTimeoutMs / 3),
  );
  try {
    await runJob(deps, jobId, { ...options.worker, lastAttempt: message.receiveCount >= maxReceives });
    await deps.queue.delete(message.receiptHandle);
  } catch (err) {
    if (err instanceof JobBusyError) {
      deps.log.info('job is running elsewhere; leaving the message', { jobId });
    } else if (
      err instanceof GraftError &&
      (err.code === 'STORAGE_UNAVAILABLE' || err.code === 'QUEUE_UNAVAILABLE')
    ) {
      deps.log.warn('job attempt failed; it will be delivered again', {
        jobId,
        receiveCount: message.receiveCount,
      });
    } else {
      deps.log.error('job message could not be processed; dropping it', { jobId, err: String(err) });
      await deps.queue.delete(message.receiptHandle);
    }
  } finally {
    clearInterval(keepAlive);
  }
}

function safeJson(body: string): unknown {
  try {
    return JSON.parse(body);
  } catch {
    return undefined;
  }
}

function sleep(ms: number, signal: AbortSignal) {
  return new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}
