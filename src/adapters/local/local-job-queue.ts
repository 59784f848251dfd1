import { randomBytes, randomUUID } from 'node:crypto';
import { mkdir, readdir, readFile, rename, unlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { z } from 'zod';
import { MAX_DELIVERIES } from '../../core/delivery.js';
import type { DeadLetterBox } from '../../core/queue-worker.js';
import { GraftError } from '../../errors.js';
import type { JobMessage, JobQueue, ReceivedMessage, ReceiveOptions } from '../../ports/job-queue.js';
import { errnoCode, FileLocks, fsyncDir, LOCK_PREFIX, TEMP_PREFIX, writeFileAtomic } from './file-lock.js';

const POLL_MS = 50;
// SQS's own limit; keeping it here means code that works locally also works on AWS.
const MAX_MESSAGES_PER_RECEIVE = 10;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

// One file per message, `messages/<messageId>.json`; dead letters keep the same file under `dead-letter/`, and
// `dead-letter-handled/<messageId>.json` records that a dead letter was dealt with (the letter stays as evidence).
const MessageRecordSchema = z.object({
  messageId: z.string().regex(UUID),
  body: z.string(),
  sentAt: z.number(),
  // Orders messages sent in the same millisecond by one queue instance.
  seq: z.number(),
  receiveCount: z.number().int().nonnegative(),
  visibleAt: z.number(),
  // The handle of the latest delivery; only it may delete the message or extend its visibility.
  receiptHandle: z.string().optional(),
});
type MessageRecord = z.infer<typeof MessageRecordSchema>;

/** A message moved aside after `maxReceives` deliveries without a delete (or found unreadable on disk). */
export interface DeadLetter {
  messageId: string;
  body: string;
  receiveCount: number;
}

/** Message counts for the API and health checks. */
export interface QueueDepth {
  /** Ready for delivery now. */
  visible: number;
  /** Delivered and neither deleted nor past their visibility timeout. */
  inFlight: number;
  deadLetter: number;
}

export interface LocalJobQueueOptions {
  /** Directory holding the queue; created on first use. */
  dir: string;
  /** Deliveries without a delete before a message moves to `dead-letter/`. @default MAX_DELIVERIES (3) */
  maxReceives?: number;
  /** @default 30_000 */
  defaultVisibilityTimeoutMs?: number;
  /** Clock for visibility timeouts (tests); long-poll waits always use real time. @default Date.now */
  now?: () => number;
}

/**
 * A durable job queue on local disk with SQS semantics: at-least-once delivery, visibility timeouts, a receive
 * count, and a dead-letter directory after `maxReceives` deliveries. Messages survive restarts: a new instance
 * on the same directory sees every message not yet deleted.
 *
 * Receipt handles are `<messageId>:<random>` and change on every delivery. As in SQS, `delete` with a stale
 * handle (the message was delivered again, dead-lettered or already deleted) succeeds without deleting
 * anything, while `extendVisibility` with a stale handle throws PRECONDITION_FAILED, so that a worker
 * heartbeat learns it no longer owns the message.
 *
 * Dead letters are kept; `unhandledDeadLetters` and `markDeadLetterHandled` let the in-process worker deal with
 * each one once (it fails the job a dead letter names).
 *
 * Receives, deletes and visibility changes run under one lock (in-process queue plus a lock file in `dir`), so
 * consumers in this process or others never get the same message within one visibility window. Ordering is
 * oldest first, best effort (like an SQS standard queue).
 */
export class LocalJobQueue implements JobQueue, DeadLetterBox {
  readonly #messagesDir: string;
  readonly #deadLetterDir: string;
  readonly #handledDir: string;
  readonly #lockPath: string;
  readonly #maxReceives: number;
  readonly #defaultVisibilityTimeoutMs: number;
  readonly #now: () => number;
  readonly #locks = new FileLocks({ errorCode: 'QUEUE_UNAVAILABLE' });
  readonly #waiters = new Set<() => void>();
  #seq = 0;
  #ready: Promise<void> | undefined;

  constructor({
    dir,
    maxReceives = MAX_DELIVERIES,
    defaultVisibilityTimeoutMs = 30_000,
    now = Date.now,
  }: LocalJobQueueOptions) {
    if (!Number.isInteger(maxReceives) || maxReceives < 1) {
      throw new GraftError('INVALID_OPTIONS', `maxReceives must be a positive integer, got ${maxReceives}.`);
    }
    checkDuration('defaultVisibilityTimeoutMs', defaultVisibilityTimeoutMs);
    this.#messagesDir = join(dir, 'messages');
    this.#deadLetterDir = join(dir, 'dead-letter');
    this.#handledDir = join(dir, 'dead-letter-handled');
    this.#lockPath = join(dir, `${LOCK_PREFIX}queue`);
    this.#maxReceives = maxReceives;
    this.#defaultVisibilityTimeoutMs = defaultVisibilityTimeoutMs;
    this.#now = now;
  }

  async send(message: JobMessage): Promise<{ messageId: string }> {
    const now = this.#now();
    const record: MessageRecord = {
      messageId: randomUUID(),
      body: JSON.stringify(message),
      sentAt: now,
      seq: this.#seq++,
      receiveCount: 0,
      visibleAt: now,
    };
    await this.#guard('send a message', async () => {
      await this.#ensureDirs();
      await writeFileAtomic(this.#pathOf(record.messageId), JSON.stringify(record));
    });
    for (const wake of [...this.#waiters]) wake();
    return { messageId: record.messageId };
  }

  async receive({
    maxMessages = 1,
    visibilityTimeoutMs = this.#defaultVisibilityTimeoutMs,
    waitMs = 0,
  }: ReceiveOptions = {}): Promise<ReceivedMessage[]> {
    if (!Number.isInteger(maxMessages) || maxMessages < 1 || maxMessages > MAX_MESSAGES_PER_RECEIVE) {
      throw new GraftError(
        'INVALID_OPTIONS',
        `maxMessages must be an integer from 1 to ${MAX_MESSAGES_PER_RECEIVE}, got ${maxMessages}.`,
      );
    }
    checkDuration('visibilityTimeoutMs', visibilityTimeoutMs);
    checkDuration('waitMs', waitMs);
    const deadline = Date.now() + waitMs;
    for (;;) {
      const received = await this.#guard('receive messages', () =>
        this.#receiveOnce(maxMessages, visibilityTimeoutMs),
      );
      const remainingMs = deadline - Date.now();
      if (received.length > 0 || remainingMs <= 0) return received;
      await this.#waitForSend(Math.min(POLL_MS, remainingMs));
    }
  }

  async delete(receiptHandle: string): Promise<void> {
    const messageId = messageIdOf(receiptHandle);
    await this.#guard('delete a message', async () => {
      await this.#ensureDirs();
      await this.#locks.run(this.#lockPath, async () => {
        const record = await this.#readRecord(messageId);
        if (record?.receiptHandle !== receiptHandle) return;
        await unlink(this.#pathOf(messageId)).catch(ignoreMissing);
      });
    });
  }

  async extendVisibility(receiptHandle: string, visibilityTimeoutMs: number): Promise<void> {
    const messageId = messageIdOf(receiptHandle);
    checkDuration('visibilityTimeoutMs', visibilityTimeoutMs);
    await this.#guard('extend a message visibility', async () => {
      await this.#ensureDirs();
      await this.#locks.run(this.#lockPath, async () => {
        const record = await this.#readRecord(messageId);
        if (record?.receiptHandle !== receiptHandle) {
          throw new GraftError(
            'PRECONDITION_FAILED',
            `Receipt handle ${receiptHandle} is stale: the message was deleted, dead-lettered or delivered again.`,
            { details: { messageId } },
          );
        }
        const updated: MessageRecord = { ...record, visibleAt: this.#now() + visibilityTimeoutMs };
        await writeFileAtomic(this.#pathOf(messageId), JSON.stringify(updated));
      });
    });
  }

  /** Messages in `dead-letter/`, oldest first. */
  async deadLetters(): Promise<DeadLetter[]> {
    return this.#readDeadLetters(new Set());
  }

  /**
   * Dead letters not yet marked handled, oldest first. Only their files are read: the handled ones, kept as
   * evidence, pile up, and the worker asks every few seconds.
   */
  async unhandledDeadLetters(): Promise<DeadLetter[]> {
    const handled = await this.#guard('read handled dead letters', () => readEntryNames(this.#handledDir));
    return this.#readDeadLetters(new Set(handled));
  }

  /** The dead letters whose file names are not in `skip`, oldest first. */
  #readDeadLetters(skip: ReadonlySet<string>): Promise<DeadLetter[]> {
    return this.#guard('read dead letters', async () => {
      const entries = await readEntries(this.#deadLetterDir, skip);
      return entries
        .sort((a, b) => compareRecords(a.record, b.record))
        .map(({ name, raw, record }) =>
          record
            ? { messageId: record.messageId, body: record.body, receiveCount: record.receiveCount }
            : { messageId: name.slice(0, -'.json'.length), body: raw, receiveCount: 0 },
        );
    });
  }

  /** Records that a dead letter was dealt with (`note` says how): it is kept, but no longer unhandled. */
  async markDeadLetterHandled(messageId: string, note: string): Promise<void> {
    // A dead letter's id is its file name in `dead-letter/` (a UUID, or the name of a file damaged by hand).
    if (!messageId || basename(messageId) !== messageId || messageId.startsWith('.')) {
      throw new GraftError('BAD_REQUEST', `${JSON.stringify(messageId)} is not a dead letter of this queue.`);
    }
    await this.#guard('mark a dead letter handled', async () => {
      await mkdir(this.#handledDir, { recursive: true });
      const record = { messageId, handledAt: new Date(this.#now()).toISOString(), note };
      await writeFileAtomic(join(this.#handledDir, `${messageId}.json`), JSON.stringify(record));
    });
  }

  /** How many messages are visible, in flight and dead-lettered. */
  async depth(): Promise<QueueDepth> {
    return this.#guard('count messages', async () => {
      const now = this.#now();
      const [messages, deadLetters] = await Promise.all([
        readEntries(this.#messagesDir),
        readEntryNames(this.#deadLetterDir),
      ]);
      let visible = 0;
      let inFlight = 0;
      for (const { record } of messages) {
        if (record && record.visibleAt > now) inFlight++;
        else visible++;
      }
      return { visible, inFlight, deadLetter: deadLetters.length };
    });
  }

  async #receiveOnce(maxMessages: number, visibilityTimeoutMs: number): Promise<ReceivedMessage[]> {
    await this.#ensureDirs();
    // A look without the lock first: an idle long poll then costs one directory read per tick.
    const glance = await readEntries(this.#messagesDir);
    if (!glance.some(({ record }) => !record || record.visibleAt <= this.#now())) return [];

    return this.#locks.run(this.#lockPath, async () => {
      const now = this.#now();
      const entries = await readEntries(this.#messagesDir);
      const received: ReceivedMessage[] = [];
      for (const { name, record } of entries) {
        // Written atomically, so unreadable means damaged by hand: set it aside instead of failing every receive.
        if (!record) await this.#moveToDeadLetter(name);
      }
      const visible = entries
        .flatMap(({ record }) => (record && record.visibleAt <= now ? [record] : []))
        .sort(compareRecords);
      for (const record of visible) {
        if (received.length >= maxMessages) break;
        if (record.receiveCount >= this.#maxReceives) {
          await this.#moveToDeadLetter(`${record.messageId}.json`);
          continue;
        }
        const receiptHandle = `${record.messageId}:${randomBytes(8).toString('hex')}`;
        const delivered: MessageRecord = {
          ...record,
          receiveCount: record.receiveCount + 1,
          visibleAt: now + visibilityTimeoutMs,
          receiptHandle,
        };
        await writeFileAtomic(this.#pathOf(record.messageId), JSON.stringify(delivered));
        received.push({
          messageId: record.messageId,
          receiptHandle,
          body: record.body,
          receiveCount: delivered.receiveCount,
        });
      }
      return received;
    });
  }

  async #moveToDeadLetter(name: string): Promise<void> {
    await rename(join(this.#messagesDir, name), join(this.#deadLetterDir, name));
    await fsyncDir(this.#deadLetterDir);
  }

  async #readRecord(messageId: string): Promise<MessageRecord | undefined> {
    try {
      return parseRecord(await readFile(this.#pathOf(messageId), 'utf8'));
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw err;
    }
  }

  #pathOf(messageId: string): string {
    return join(this.#messagesDir, `${messageId}.json`);
  }

  #waitForSend(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.#waiters.delete(done);
        resolve();
      };
      const timer = setTimeout(done, ms);
      this.#waiters.add(done);
    });
  }

  #ensureDirs(): Promise<void> {
    this.#ready ??= Promise.all([
      mkdir(this.#messagesDir, { recursive: true }),
      mkdir(this.#deadLetterDir, { recursive: true }),
    ]).then(
      () => {},
      (err: unknown) => {
        // Not cached on failure: the next call tries again.
        this.#ready = undefined;
        throw err;
      },
    );
    return this.#ready;
  }

  async #guard<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      if (err instanceof GraftError) throw err;
      const message = err instanceof Error ? err.message : String(err);
      throw new GraftError('QUEUE_UNAVAILABLE', `Cannot ${what} in the local queue: ${message}`, {
        cause: err,
      });
    }
  }
}

interface Entry {
  name: string;
  raw: string;
  record: MessageRecord | undefined;
}

/** The message files of `dir` (but those named in `skip`), read and parsed. */
async function readEntries(dir: string, skip: ReadonlySet<string> = new Set()): Promise<Entry[]> {
  const names = await readEntryNames(dir);
  const entries = await Promise.all(
    names
      .filter((name) => !skip.has(name))
      .map(async (name): Promise<Entry | undefined> => {
        try {
          const raw = await readFile(join(dir, name), 'utf8');
          return { name, raw, record: parseRecord(raw) };
        } catch (err) {
          // Deleted or moved by another consumer between readdir and readFile.
          if (errnoCode(err) === 'ENOENT') return undefined;
          throw err;
        }
      }),
  );
  return entries.filter((entry) => entry !== undefined);
}

/** The names of the message files in `dir` (none when it does not exist). */
async function readEntryNames(dir: string): Promise<string[]> {
  try {
    return (await readdir(dir)).filter((name) => name.endsWith('.json') && !name.startsWith(TEMP_PREFIX));
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
}

function parseRecord(raw: string): MessageRecord | undefined {
  try {
    const parsed = MessageRecordSchema.safeParse(JSON.parse(raw));
    return parsed.success ? parsed.data : undefined;
  } catch {
    return undefined;
  }
}

function compareRecords(a: MessageRecord | undefined, b: MessageRecord | undefined): number {
  return (a?.sentAt ?? 0) - (b?.sentAt ?? 0) || (a?.seq ?? 0) - (b?.seq ?? 0);
}

function messageIdOf(receiptHandle: string): string {
  const colon = typeof receiptHandle === 'string' ? receiptHandle.indexOf(':') : -1;
  const messageId = colon > 0 ? receiptHandle.slice(0, colon) : '';
  if (!UUID.test(messageId)) {
    throw new GraftError(
      'BAD_REQUEST',
      `${JSON.stringify(receiptHandle)} is not a receipt handle from this queue.`,
    );
  }
  return messageId;
}

function checkDuration(name: string, ms: number): void {
  if (!Number.isFinite(ms) || ms < 0) {
    throw new GraftError('INVALID_OPTIONS', `${name} must be a number of milliseconds >= 0, got ${ms}.`);
  }
}

function ignoreMissing(err: unknown): void {
  if (errnoCode(err) !== 'ENOENT') throw err;
}
