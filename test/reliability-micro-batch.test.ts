import { beforeAll, describe, expect, it } from 'vitest';
import { MicroBatcher } from '../src/core/micro-batch.js';
import { GraftError } from '../src/errors.js';
import { createTestApp, type TestApp, trainTask } from './support/harness.js';
import { expectError } from './support/http.js';

/** A model stand-in: doubles each number, records each call, and fails on a negative input. */
function fakeModel({ delayMs = 0 } = {}) {
  const calls: number[][] = [];
  const run = async (_key: string, inputs: number[]) => {
    calls.push([...inputs]);
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    if (inputs.some((x) => x < 0))
      throw new GraftError('BAD_REQUEST', `negative input in ${inputs.join(',')}`);
    return inputs.map((x) => x * 2);
  };
  return { calls, run };
}

describe('MicroBatcher', () => {
  it('coalesces concurrent calls into one run and gives each caller its own rows, in order', async () => {
    // given
    const model = fakeModel();
    const batcher = new MicroBatcher(model.run, { maxWaitMs: 2 });

    // when 20 callers with 1 to 3 inputs each arrive together
    const inputs = Array.from({ length: 20 }, (_, i) =>
      Array.from({ length: 1 + (i % 3) }, (_, j) => i * 10 + j),
    );
    const outputs = await Promise.all(inputs.map((xs) => batcher.submit('m', xs)));

    // then
    expect(outputs).toEqual(inputs.map((xs) => xs.map((x) => x * 2)));
    expect(model.calls).toHaveLength(1);
    expect(batcher.stats).toEqual({ requests: 20, runs: 1, rows: 39 });
  });

  it('keeps models apart: calls for different keys never share a run', async () => {
    const seen: string[] = [];
    const batcher = new MicroBatcher(
      async (key: string, xs: number[]) => {
        seen.push(`${key}:${xs.join(',')}`);
        return xs.map((x) => `${key}${x}`);
      },
      { maxWaitMs: 0 },
    );
    const [a, b, c] = await Promise.all([
      batcher.submit('a', [1]),
      batcher.submit('b', [2]),
      batcher.submit('a', [3]),
    ]);
    expect([a, b, c]).toEqual([['a1'], ['b2'], ['a3']]);
    expect(seen.sort()).toEqual(['a:1,3', 'b:2']);
  });

  it('sends a batch as soon as it holds maxBatchRows rows, and runs a large request alone', async () => {
    const model = fakeModel();
    const batcher = new MicroBatcher(model.run, { maxWaitMs: 1000, maxBatchRows: 4 });
    const started = Date.now();
    const results = await Promise.all([
      batcher.submit('m', [1, 2]),
      batcher.submit('m', [3]),
      batcher.submit('m', [4]),
      batcher.submit('m', [5, 6, 7, 8, 9]),
    ]);
    expect(Date.now() - started).toBeLessThan(500);
    expect(results).toEqual([[2, 4], [6], [8], [10, 12, 14, 16, 18]]);
    expect(model.calls.map((call) => call.join(',')).sort()).toEqual(['1,2,3,4', '5,6,7,8,9']);
  });

  it('gives an error only to the caller whose inputs caused it; the others get their rows', async () => {
    // given a batch with one bad request among good ones
    const model = fakeModel();
    const batcher = new MicroBatcher(model.run, { maxWaitMs: 2 });

    // when
    const results = await Promise.allSettled([
      batcher.submit('m', [1]),
      batcher.submit('m', [-1, 5]),
      batcher.submit('m', [2, 3]),
    ]);

    // then the batch ran, failed, and each request ran again on its own
    expect(results[0]).toEqual({ status: 'fulfilled', value: [2] });
    expect(results[1]).toMatchObject({ status: 'rejected', reason: { code: 'BAD_REQUEST' } });
    expect(results[2]).toEqual({ status: 'fulfilled', value: [4, 6] });
    expect(model.calls[0]).toEqual([1, -1, 5, 2, 3]);
    expect(model.calls.slice(1).sort()).toEqual([[-1, 5], [1], [2, 3]]);
  });

  it('fails every caller of a run that returns the wrong number of rows, and keeps working', async () => {
    let broken = true;
    const batcher = new MicroBatcher(async (_: string, xs: number[]) => (broken ? xs.slice(1) : xs), {
      maxWaitMs: 0,
    });
    const results = await Promise.allSettled([batcher.submit('m', [1]), batcher.submit('m', [2, 3])]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'INTERNAL' });
    broken = false;
    expect(await batcher.submit('m', [4])).toEqual([4]);
  });

  it('refuses nonsense options', () => {
    const run = async () => [];
    expect(() => new MicroBatcher(run, { maxWaitMs: Number.NaN })).toThrow(/maxWaitMs/);
    expect(() => new MicroBatcher(run, { maxBatchRows: 0 })).toThrow(/maxBatchRows/);
  });
});

describe('micro-batching in the predict path', () => {
  let plain: TestApp;
  let batched: TestApp;

  beforeAll(async () => {
    plain = await createTestApp();
    await trainTask(plain, 'topics');
    // the same data directory served by a second app with micro-batching on
    batched = await createTestApp({ dataDir: plain.dataDir, microBatch: { maxWaitMs: 5 } });
  });

  it('answers 32 concurrent requests each with its own predictions, in fewer ONNX Runtime runs', async () => {
    // given distinct inputs, and the answers of the unbatched server
    const words = ['storm', 'goal', 'bank', 'snow', 'league', 'loan', 'fog', 'coach'];
    const inputs = Array.from({ length: 32 }, (_, i) =>
      i % 4 === 3 ? [`${words[i % 8]} ${i}`, `${words[(i + 3) % 8]} today`] : [`${words[i % 8]} and ${i}`],
    );
    const expected = await Promise.all(
      inputs.map(async (texts) => (await plain.api.post('/v1/tasks/topics/predict', { inputs: texts })).body),
    );

    // when the batched server gets them all at once
    const answers = await Promise.all(
      inputs.map((texts) => batched.api.post('/v1/tasks/topics/predict', { inputs: texts })),
    );

    // then each caller got exactly its own rows, equal to the unbatched answers
    expect(answers.map((a) => a.status)).toEqual(inputs.map(() => 200));
    answers.forEach((answer, i) => {
      expect(answer.body.predictions).toHaveLength(inputs[i]?.length ?? 0);
      answer.body.predictions.forEach((p: { label: string; scores: Record<string, number> }, j: number) => {
        const want = expected[i].predictions[j];
        expect(p.label).toBe(want.label);
        for (const [label, score] of Object.entries(p.scores))
          expect(score).toBeCloseTo(want.scores[label], 6);
      });
    });
    const stats = batched.models.batcher?.stats;
    expect(stats?.requests).toBe(32);
    expect(stats?.runs).toBeLessThan(32);
  });

  it('still refuses a bad request on its own, while the others in flight succeed', async () => {
    const [good, bad, other] = await Promise.all([
      batched.api.post('/v1/tasks/topics/predict', { inputs: ['rain'] }),
      batched.api.post('/v1/tasks/topics/predict', { inputs: [42] }),
      batched.api.post('/v1/tasks/topics/predict', { inputs: ['goal'] }),
    ]);
    expect(good?.status).toBe(200);
    expect(other?.status).toBe(200);
    expectError(bad ?? { status: 0, body: {} }, 400, 'INVALID_OPTIONS');
  });

  it('is off unless asked for', () => {
    expect(plain.models.batcher).toBeUndefined();
  });
});
