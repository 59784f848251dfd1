import { GraftError, toGraftError } from '../errors.js';
import { JobMessageSchema, type JobQueue, type ReceivedMessage } from '../ports/job-queue.js';
import { MAX_DELIVERIES } from './delivery.js';
import type { CoreDeps } from './deps.js';
import { failDeadLetteredJob, staleAfter } from './jobs.js';
import { JobBusyError, runJob, type WorkerOptions } from './worker.js';

export interface QueueWorkerOptions {
  signal: AbortSignal;
  visibilityTimeoutMs?: number;
  /** The queue's dead-letter threshold: the delivery with this receive count is the last one. */
  maxReceives?: number;
  pollWaitMs?: number;
  /**
   * How often dead letters are looked at (first when the loop starts), when the queue keeps them here.
   * @default 5_000
   */
  deadLetterSweepMs?: number;
  worker?: Omit<WorkerOptions, 'lastAttempt'>;
}

/**
 * A queue that keeps its dead letters where this process can read them (the local queue). SQS keeps them in its
 * own dead-letter queue, which a Lambda function of its own consumes (src/adapters/aws/dead-letter-handler.ts).
 */
export interface DeadLetterBox {
  /** Dead letters not yet marked handled, oldest first. */
  unhandledDeadLetters(): Promise<{ messageId: string; body: string }[]>;
  /** Records that a dead letter was dealt with (`note` says how): later sweeps skip it; the letter is kept. */
  markDeadLetterHandled(messageId: string, note: string): Promise<void>;
}

function hasDeadLetterBox(queue: JobQueue): queue is JobQueue & DeadLetterBox {
  const box = queue as Partial<DeadLetterBox>;
  return typeof box.unhandledDeadLetters === 'function' && typeof box.markDeadLetterHandled === 'function';
}

/**
 * The local stand-in for SQS -> Batch: receives job messages and runs them in this process, one at a time,
 * keeping each message invisible while its job runs. When the queue keeps its dead letters here, it also fails
 * the job of each dead letter (see `sweepDeadLetters`): on start, and between messages every `deadLetterSweepMs`.
 * Resolves when `signal` aborts.
 */
export async function runQueueWorker(deps: CoreDeps, options: QueueWorkerOptions): Promise<void> {
  const { signal, visibilityTimeoutMs = 30_000, pollWaitMs = 1_000, deadLetterSweepMs = 5_000 } = options;
  const box = hasDeadLetterBox(deps.queue) ? deps.queue : undefined;
  let nextSweepAt = 0;
  while (!signal.aborted) {
    if (box && Date.now() >= nextSweepAt) {
      await sweepDeadLetters(deps, box, options);
      nextSweepAt = Date.now() + deadLetterSweepMs;
    }
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
  const { visibilityTimeoutMs = 30_000, maxReceives = MAX_DELIVERIES } = options;
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

/**
 * Deals with each dead letter once: a job message's job is failed with DELIVERIES_EXHAUSTED unless it has ended
 * (the worker died on every delivery, so nothing else would ever end it), and the letter is marked handled. A
 * job a live worker still holds (a duplicate message was dead-lettered) is left to it, and its letter looked at
 * again by a later sweep; so is a letter whose job could not be read or written now. Never throws.
 */
export async function sweepDeadLetters(
  deps: CoreDeps,
  box: DeadLetterBox,
  options: Pick<QueueWorkerOptions, 'maxReceives' | 'worker'> = {},
): Promise<void> {
  // As runJob judges a worker dead.
  const stale = staleAfter(options.worker);
  let letters: { messageId: string; body: string }[];
  try {
    letters = await box.unhandledDeadLetters();
  } catch (err) {
    deps.log.warn('dead letters could not be read; trying again later', { err: String(err) });
    return;
  }
  for (const { messageId, body } of letters) {
    try {
      const parsed = JobMessageSchema.safeParse(safeJson(body));
      if (!parsed.success) {
        await box.markDeadLetterHandled(messageId, 'not a job message: nothing to fail');
        continue;
      }
      const { jobId } = parsed.data;
      const result = await failDeadLetteredJob(deps, jobId, {
        deliveries: options.maxReceives ?? MAX_DELIVERIES,
        staleAfterMs: stale,
      });
      if (result.outcome === 'held') continue;
      if (result.outcome === 'failed') {
        deps.log.error('job failed: its message was dead-lettered', {
          jobId,
          messageId,
          message: result.job.error?.message,
        });
      }
      const note =
        result.outcome === 'unknown' ? `job ${jobId} does not exist` : `job ${jobId} ${result.job.status}`;
      await box.markDeadLetterHandled(messageId, note);
    } catch (err) {
      const error = toGraftError(err);
      deps.log.warn('dead letter not handled; trying again later', { messageId, code: error.code });
    }
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
