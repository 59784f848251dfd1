import { readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { LocalJobQueue, type LocalJobQueueOptions } from '../src/adapters/local/local-job-queue.js';
import { JobMessageSchema, type ReceivedMessage } from '../src/ports/job-queue.js';
import { rejection, tempDir } from './support/fixtures.js';

const train = (jobId: string) => ({ type: 'train' as const, jobId });
const jobIdOf = (message: ReceivedMessage) => JobMessageSchema.parse(JSON.parse(message.body)).jobId;

/** A queue on a fresh directory with a clock the test moves by hand. */
async function newQueue(options: Partial<LocalJobQueueOptions> = {}) {
  const dir = path.join(await tempDir('graft-queue-'), 'queue');
  const clock = { now: 1_000_000 };
  const make = (more: Partial<LocalJobQueueOptions> = {}) =>
    new LocalJobQueue({ dir, now: () => clock.now, ...options, ...more });
  return { dir, clock, queue: make(), make };
}

describe('LocalJobQueue', () => {
  it('sends, receives and deletes', async () => {
    // given
    const { queue } = await newQueue();
    const { messageId } = await queue.send(train('job-1'));

    // when
    const [message, ...more] = await queue.receive();

    // then
    expect(more).toEqual([]);
    expect(message).toMatchObject({ messageId, receiveCount: 1 });
    expect(message?.receiptHandle.startsWith(`${messageId}:`)).toBe(true);
    expect(message && jobIdOf(message)).toBe('job-1');
    expect(await queue.receive()).toEqual([]);
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 1, deadLetter: 0 });

    await queue.delete(message?.receiptHandle ?? '');
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0, deadLetter: 0 });
    expect(await queue.receive()).toEqual([]);
  });

  it('delivers oldest first, up to maxMessages', async () => {
    const { queue } = await newQueue();
    for (const id of ['a', 'b', 'c']) await queue.send(train(id));

    const first = await queue.receive({ maxMessages: 2 });
    const second = await queue.receive({ maxMessages: 10 });

    expect(first.map(jobIdOf)).toEqual(['a', 'b']);
    expect(second.map(jobIdOf)).toEqual(['c']);
    expect((await rejection(queue.receive({ maxMessages: 11 }))).code).toBe('INVALID_OPTIONS');
    expect((await rejection(queue.receive({ maxMessages: 0 }))).code).toBe('INVALID_OPTIONS');
  });

  it('redelivers after the visibility timeout with receiveCount 2 and a new handle', async () => {
    // given
    const { queue, clock } = await newQueue();
    await queue.send(train('job-1'));
    const [first] = await queue.receive({ visibilityTimeoutMs: 1_000 });

    // when
    clock.now += 999;
    const early = await queue.receive();
    clock.now += 1;
    const [second] = await queue.receive();

    // then
    expect(early).toEqual([]);
    expect(second).toMatchObject({ messageId: first?.messageId, receiveCount: 2 });
    expect(second?.receiptHandle).not.toBe(first?.receiptHandle);
  });

  it('uses the default visibility timeout from the options', async () => {
    const { queue, clock } = await newQueue({ defaultVisibilityTimeoutMs: 5_000 });
    await queue.send(train('job-1'));
    await queue.receive();
    clock.now += 4_999;
    expect(await queue.receive()).toEqual([]);
    clock.now += 1;
    expect(await queue.receive()).toHaveLength(1);
  });

  it('ignores a stale handle on delete, and refuses it on extendVisibility', async () => {
    // given: the first delivery timed out and the message went to another consumer
    const { queue, clock } = await newQueue();
    await queue.send(train('job-1'));
    const [first] = await queue.receive({ visibilityTimeoutMs: 1_000 });
    clock.now += 1_000;
    const [second] = await queue.receive({ visibilityTimeoutMs: 1_000 });

    // when
    await queue.delete(first?.receiptHandle ?? '');
    const err = await rejection(queue.extendVisibility(first?.receiptHandle ?? '', 60_000));

    // then
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 1, deadLetter: 0 });
    expect(err.code).toBe('PRECONDITION_FAILED');
    await queue.extendVisibility(second?.receiptHandle ?? '', 60_000);
    await queue.delete(second?.receiptHandle ?? '');
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0, deadLetter: 0 });
    // a handle whose message is gone cannot extend either
    expect((await rejection(queue.extendVisibility(second?.receiptHandle ?? '', 1)))?.code).toBe(
      'PRECONDITION_FAILED',
    );
  });

  it('extends visibility from now, and 0 releases the message at once', async () => {
    const { queue, clock } = await newQueue();
    await queue.send(train('job-1'));
    const [message] = await queue.receive({ visibilityTimeoutMs: 1_000 });
    const handle = message?.receiptHandle ?? '';

    clock.now += 900;
    await queue.extendVisibility(handle, 1_000);
    clock.now += 999;
    expect(await queue.receive()).toEqual([]);

    await queue.extendVisibility(handle, 0);
    expect(await queue.receive()).toMatchObject([{ messageId: message?.messageId, receiveCount: 2 }]);
  });

  it('rejects receipt handles it did not issue', async () => {
    const { queue } = await newQueue();
    for (const handle of ['', 'nonsense', '../../etc/passwd:x', `${'0'.repeat(36)}:x`]) {
      expect((await rejection(queue.delete(handle))).code).toBe('BAD_REQUEST');
    }
  });

  it('moves a message to dead-letter/ instead of a fourth delivery', async () => {
    // given
    const { queue, clock, dir } = await newQueue();
    const { messageId } = await queue.send(train('poison'));
    for (let delivery = 1; delivery <= 3; delivery++) {
      const [message] = await queue.receive({ visibilityTimeoutMs: 100 });
      expect(message?.receiveCount).toBe(delivery);
      clock.now += 100;
    }
    await queue.send(train('healthy'));

    // when
    const received = await queue.receive({ maxMessages: 10 });

    // then: the healthy message behind it still arrives in the same receive
    expect(received.map(jobIdOf)).toEqual(['healthy']);
    expect(await queue.deadLetters()).toEqual([
      { messageId, body: JSON.stringify(train('poison')), receiveCount: 3 },
    ]);
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 1, deadLetter: 1 });
    expect(await readdir(path.join(dir, 'dead-letter'))).toEqual([`${messageId}.json`]);
  });

  it('keeps a dead letter marked handled, and lists it as unhandled only until then (across restarts)', async () => {
    // given two dead letters
    const { queue, clock, dir, make } = await newQueue({ maxReceives: 1 });
    await queue.send(train('first'));
    await queue.send(train('second'));
    await queue.receive({ maxMessages: 10, visibilityTimeoutMs: 10 });
    clock.now += 10;
    await queue.receive({ maxMessages: 10 });
    const [first, second] = await queue.unhandledDeadLetters();

    // when one is marked handled
    await queue.markDeadLetterHandled(first?.messageId ?? '', 'job first failed');

    // then both are kept, one is still to handle, also for a new queue instance on the same directory
    expect((await queue.deadLetters()).map((letter) => letter.messageId)).toEqual([
      first?.messageId,
      second?.messageId,
    ]);
    expect(await make().unhandledDeadLetters()).toEqual([second]);
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0, deadLetter: 2 });
    expect(await readdir(path.join(dir, 'dead-letter-handled'))).toEqual([`${first?.messageId}.json`]);
    for (const bad of ['../messages/x', '.lock-queue', '']) {
      expect((await rejection(queue.markDeadLetterHandled(bad, 'no'))).code).toBe('BAD_REQUEST');
    }
  });

  it('takes maxReceives from the options', async () => {
    const { queue, clock } = await newQueue({ maxReceives: 1 });
    await queue.send(train('once'));
    expect(await queue.receive({ visibilityTimeoutMs: 10 })).toHaveLength(1);
    clock.now += 10;
    expect(await queue.receive()).toEqual([]);
    expect(await queue.deadLetters()).toHaveLength(1);
  });

  it('keeps unacknowledged messages across a restart', async () => {
    // given: one message in flight, one done, one waiting
    const { queue, clock, make } = await newQueue();
    await queue.send(train('in-flight'));
    await queue.send(train('done'));
    await queue.send(train('waiting'));
    const [inFlight, done] = await queue.receive({ maxMessages: 2, visibilityTimeoutMs: 10_000 });
    await queue.delete(done?.receiptHandle ?? '');

    // when: a new process opens the same directory
    const restarted = make();

    // then
    expect(await restarted.depth()).toEqual({ visible: 1, inFlight: 1, deadLetter: 0 });
    const [waiting] = await restarted.receive();
    expect(waiting && jobIdOf(waiting)).toBe('waiting');
    expect(waiting?.receiveCount).toBe(1);
    clock.now += 10_000;
    const [redelivered] = await restarted.receive();
    expect(redelivered).toMatchObject({ messageId: inFlight?.messageId, receiveCount: 2 });
    expect(redelivered && jobIdOf(redelivered)).toBe('in-flight');
  });

  it('accepts a handle issued by another instance on the same directory', async () => {
    const { queue, make } = await newQueue();
    await queue.send(train('job-1'));
    const [message] = await queue.receive();
    await make().delete(message?.receiptHandle ?? '');
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 0, deadLetter: 0 });
  });

  it('long-polls: a send wakes a waiting receive at once', async () => {
    // given
    const { queue } = await newQueue({ now: Date.now });
    const started = Date.now();
    const waiting = queue.receive({ waitMs: 10_000 });

    // when
    await new Promise((resolve) => setTimeout(resolve, 100));
    await queue.send(train('job-1'));
    const received = await waiting;

    // then
    expect(received.map(jobIdOf)).toEqual(['job-1']);
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('long-polls: a send from another instance is found by polling', async () => {
    const { queue, make } = await newQueue({ now: Date.now });
    const waiting = queue.receive({ waitMs: 10_000 });
    await new Promise((resolve) => setTimeout(resolve, 100));
    await make().send(train('job-2'));
    expect((await waiting).map(jobIdOf)).toEqual(['job-2']);
  });

  it('long-polls: returns nothing when the wait ends empty', async () => {
    const { queue } = await newQueue({ now: Date.now });
    const started = Date.now();
    expect(await queue.receive({ waitMs: 200 })).toEqual([]);
    expect(Date.now() - started).toBeGreaterThanOrEqual(190);
  });

  it('never gives one message to two concurrent receivers', async () => {
    // given: 40 messages, 12 consumers on two instances (only the lock file separates those)
    const { queue, make } = await newQueue({ now: Date.now });
    const other = make();
    for (let i = 0; i < 40; i++) await queue.send(train(`job-${i}`));

    // when
    const consumer = async (q: LocalJobQueue) => {
      const got: string[] = [];
      for (;;) {
        const messages = await q.receive({ maxMessages: 3, visibilityTimeoutMs: 60_000 });
        if (messages.length === 0) return got;
        got.push(...messages.map((message) => message.messageId));
      }
    };
    const results = await Promise.all(
      Array.from({ length: 12 }, (_, i) => consumer(i % 2 === 0 ? queue : other)),
    );

    // then
    const all = results.flat();
    expect(all).toHaveLength(40);
    expect(new Set(all).size).toBe(40);
    expect(await queue.depth()).toEqual({ visible: 0, inFlight: 40, deadLetter: 0 });
  });

  it('sets aside a damaged message file and skips temp files', async () => {
    // given
    const { queue, dir } = await newQueue();
    await queue.send(train('job-1'));
    await writeFile(path.join(dir, 'messages', '.tmp-0123456789abcdef'), '{"half":');
    await writeFile(path.join(dir, 'messages', 'damaged.json'), 'not json');

    // when
    const received = await queue.receive({ maxMessages: 10 });

    // then
    expect(received.map(jobIdOf)).toEqual(['job-1']);
    expect(await queue.deadLetters()).toEqual([{ messageId: 'damaged', body: 'not json', receiveCount: 0 }]);
  });
});
