import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startLocalPlatform } from '../src/adapters/local/platform.js';
import { loadLocalConfig } from '../src/config.js';
import { silentLogger } from '../src/core/logger.js';
import { hasShared, SHARED_DIR, tempDir } from './support/fixtures.js';
import { client } from './support/http.js';

if (!hasShared) console.log('trec end-to-end test skipped: ../shared/datasets is not beside this checkout');

describe.skipIf(!hasShared)('trec end to end (../shared/datasets/trec)', () => {
  it('uploads train.jsonl, trains, and predicts test.jsonl with accuracy >= 85%', async () => {
    // given the real platform and the TREC question-type dataset
    const dataDir = await tempDir();
    const platform = await startLocalPlatform(
      loadLocalConfig({ PORT: '0', GRAFT_DATA_DIR: dataDir, GRAFT_API_KEY: 'trec-admin-key-0123456789' }),
      { log: silentLogger },
    );
    try {
      const api = client((p, init) => fetch(`${platform.url}${p}`, init), 'trec-admin-key-0123456789');
      const dir = path.join(SHARED_DIR, 'datasets/trec');
      await api.put('/v1/tasks/trec', {});

      // when
      const train = await readFile(path.join(dir, 'train.jsonl'), 'utf8');
      const uploaded = await api.post('/v1/tasks/trec/datasets', train, 'application/x-ndjson');
      expect(uploaded.status, JSON.stringify(uploaded.body)).toBe(201);
      const job = await api.waitForJob(uploaded.body.jobId, 240_000);
      expect(job.status, JSON.stringify(job.error)).toBe('succeeded');

      // then every test row is predicted over HTTP
      const test = (await readFile(path.join(dir, 'test.jsonl'), 'utf8'))
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { text: string; label: string });
      let correct = 0;
      for (let i = 0; i < test.length; i += 100) {
        const batch = test.slice(i, i + 100);
        const { body } = await api.post('/v1/tasks/trec/predict', { inputs: batch.map((r) => r.text) });
        body.predictions.forEach((p: { label: string }, j: number) => {
          if (p.label === batch[j]?.label) correct++;
        });
      }
      const accuracy = correct / test.length;
      console.log(
        `trec: accuracy ${(accuracy * 100).toFixed(1)}% on ${test.length} test rows (TF-IDF + LR: 88.2%)`,
      );
      expect(accuracy).toBeGreaterThanOrEqual(0.85);
    } finally {
      await platform.close();
    }
  }, 300_000);
});
