import { describe, expect, it } from 'vitest';
import { createLocalDeps } from '../src/adapters/local/platform.js';
import { ingestIncoming, listDatasets, listRejectedUploads, parseIncomingKey } from '../src/core/datasets.js';
import { getJob } from '../src/core/jobs.js';
import { silentLogger } from '../src/core/logger.js';
import { putTask } from '../src/core/tasks.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';

describe('the incoming/ drop zone', () => {
  it('parses only keys of the form tasks/{task}/incoming/{file}', () => {
    expect(parseIncomingKey('tasks/support/incoming/a.jsonl')).toEqual({ task: 'support', file: 'a.jsonl' });
    for (const key of [
      'tasks/Support/incoming/a.jsonl',
      'tasks/s/incoming/',
      'tasks/s/incoming/a/b.csv',
      'x/s/incoming/a',
    ]) {
      expect(parseIncomingKey(key), key).toBeUndefined();
    }
  });

  it('turns a dropped file into a dataset version and a queued job, and removes it', async () => {
    // given
    const deps = createLocalDeps(await tempDir(), silentLogger);
    await putTask(deps, 'drop', {});
    await deps.store.put('tasks/drop/incoming/first.jsonl', toJsonl(makeTextDataset()));
    // when
    const result = await ingestIncoming(deps, 'tasks/drop/incoming/first.jsonl');
    // then
    expect(result.dataset).toMatchObject({ source: 'incoming/first.jsonl', rows: 36 });
    expect((await getJob(deps, result.job?.id ?? '')).status).toBe('queued');
    expect(await deps.store.find('tasks/drop/incoming/first.jsonl')).toBeUndefined();
  });

  it('moves a file that cannot become a dataset to rejected/, with the reason, and loses none of it', async () => {
    // given
    const deps = createLocalDeps(await tempDir(), silentLogger);
    await putTask(deps, 'drop', {});
    const body = 'text,label\n"unclosed,a\n';
    await deps.store.put('tasks/drop/incoming/broken.csv', body);
    // when
    await expect(ingestIncoming(deps, 'tasks/drop/incoming/broken.csv')).rejects.toMatchObject({
      code: 'INVALID_DATASET',
    });
    // then
    const [rejected] = await listRejectedUploads(deps, 'drop');
    expect(rejected).toMatchObject({ file: 'broken.csv', error: { code: 'INVALID_DATASET' } });
    expect(new TextDecoder().decode((await deps.store.get('tasks/drop/rejected/broken.csv')).body)).toBe(
      body,
    );
    expect(await deps.store.find('tasks/drop/incoming/broken.csv')).toBeUndefined();
    expect(await listDatasets(deps, 'drop')).toEqual([]);
  });
});
