import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BatchJobLauncher, batchJobName } from '../src/adapters/aws/batch-launcher.js';
import { createAwsClients } from '../src/adapters/aws/deps.js';
import { ENV } from '../src/config.js';
import { GraftError } from '../src/errors.js';
import { type FakeBatch, startFakeBatch } from './fixtures/aws/fake-batch.js';

let batch: FakeBatch;
const credentials = { accessKeyId: 'test', secretAccessKey: 'test' };

beforeAll(async () => {
  batch = await startFakeBatch();
});

afterAll(async () => {
  await batch?.stop();
});

function launcher() {
  const clients = createAwsClients({ endpoint: batch.endpoint }, { credentials, maxAttempts: 1 });
  return new BatchJobLauncher(clients.batch, { jobQueue: 'graft-gpu', jobDefinition: 'graft-trainer' });
}

describe('BatchJobLauncher over the Batch REST protocol', () => {
  it('submits one Batch job named after the job, with the job id as env var and parameter', async () => {
    // given
    const before = batch.submitted.length;
    // when
    const { batchJobId, jobName } = await launcher().submit('job-lz3k9x-0a1b2c3d');
    // then
    expect(batchJobId).toMatch(/^[0-9a-f-]{36}$/);
    expect(jobName).toBe('graft-job-lz3k9x-0a1b2c3d');
    expect(batch.submitted.slice(before)).toEqual([
      {
        jobName: 'graft-job-lz3k9x-0a1b2c3d',
        jobQueue: 'graft-gpu',
        jobDefinition: 'graft-trainer',
        parameters: { jobId: 'job-lz3k9x-0a1b2c3d' },
        containerOverrides: { environment: [{ name: ENV.jobId, value: 'job-lz3k9x-0a1b2c3d' }] },
      },
    ]);
  });

  it('says QUEUE_UNAVAILABLE when Batch throttles, INTERNAL when it refuses the request', async () => {
    // given
    batch.failNext(1, 429, 'TooManyRequestsException');
    const throttled = await launcher()
      .launch('job-a')
      .catch((e: unknown) => e);
    batch.failNext(1, 400, 'ClientException');
    const refused = await launcher()
      .launch('job-b')
      .catch((e: unknown) => e);
    // then
    expect(throttled).toBeInstanceOf(GraftError);
    expect((throttled as GraftError).code).toBe('QUEUE_UNAVAILABLE');
    expect((refused as GraftError).code).toBe('INTERNAL');
    expect((refused as GraftError).message).toContain('graft-gpu');
  });
});

describe('batchJobName', () => {
  it('keeps valid ids readable and makes any other id a valid, distinct Batch name', () => {
    expect(batchJobName('job-1')).toBe('graft-job-1');
    const odd = batchJobName('job/1 with spaces');
    expect(odd).toMatch(/^graft-job-1-with-spaces-[0-9a-f]{12}$/);
    expect(batchJobName('job 1')).not.toBe(batchJobName('job/1'));
    const long = batchJobName('x'.repeat(300));
    expect(long.length).toBeLessThanOrEqual(128);
    expect(long).toMatch(/^[A-Za-z0-9][A-Za-z0-9_-]*$/);
  });
});
