import { createHash } from 'node:crypto';
import { z } from 'zod';
import { GraftError, STATUS_BY_CODE } from '../errors.js';
import { checkName } from '../names.js';
import { type DatasetFormat, type DatasetRow, parseDataset, validateForTraining } from './dataset-parse.js';
import { type CoreDeps, nowIso } from './deps.js';
import { createJob, type Job } from './jobs.js';
import { findJson, writeJson } from './json-objects.js';
import { storageKeys } from './storage-keys.js';
import { getTask } from './tasks.js';

export const DatasetManifestSchema = z.object({
  id: z.string(),
  task: z.string(),
  sha256: z.string(),
  format: z.enum(['jsonl', 'csv']),
  source: z.string(),
  rows: z.number().int(),
  labelled: z.number().int(),
  unlabelled: z.number().int(),
  labels: z.record(z.string(), z.number().int()),
  report: z.record(z.string(), z.unknown()),
  createdAt: z.string(),
});
export type DatasetManifest = z.infer<typeof DatasetManifestSchema>;

export interface IngestResult {
  dataset: DatasetManifest;
  /** True when the same rows were uploaded before: nothing new is stored. */
  existing: boolean;
  job?: Job;
}

/**
 * Validates an upload and stores it as an immutable dataset version (id = hash of its rows, so the same upload
 * twice is one version). The data file is written before the manifest: a version is visible only when complete.
 * When the task trains on upload, a job over all of the task's datasets is queued.
 */
export async function ingestDataset(
  deps: CoreDeps,
  taskName: string,
  body: Uint8Array,
  format: DatasetFormat,
  { source = 'api' }: { source?: string } = {},
): Promise<IngestResult> {
  const task = await getTask(deps, taskName);
  const earlier = await listDatasets(deps, task.name);
  const knownLabelCounts: Record<string, number> = {};
  for (const manifest of earlier) {
    for (const [label, count] of Object.entries(manifest.labels)) {
      knownLabelCounts[label] = (knownLabelCounts[label] ?? 0) + count;
    }
  }
  const { rows, report } = validateForTraining(parseDataset(body, format), { knownLabelCounts });
  if (task.labels) {
    const known = new Set(task.labels);
    const unknown = Object.keys(report.labels).filter((label) => !known.has(label));
    if (unknown.length > 0) {
      throw new GraftError(
        'INVALID_DATASET',
        `Labels ${unknown.map((l) => JSON.stringify(l)).join(', ')} are not among the task's labels (${task.labels.join(', ')}). Fix the rows, or add the labels with PUT /v1/tasks/${task.name}.`,
        { details: { unknownLabels: unknown } },
      );
    }
  }
  const data = `${rows.map((row) => JSON.stringify(row)).join('\n')}\n`;
  const sha256 = createHash('sha256').update(data).digest('hex');
  const id = `ds-${sha256.slice(0, 16)}`;
  const manifestKey = storageKeys.datasetManifest(task.name, id);

  const previous = await findJson(deps.store, manifestKey, DatasetManifestSchema);
  if (previous) return { dataset: previous.value, existing: true };

  const dataset: DatasetManifest = {
    id,
    task: task.name,
    sha256,
    format,
    source,
    rows: report.rows,
    labelled: report.labelled,
    unlabelled: report.unlabelled,
    labels: report.labels,
    report: { ...report },
    createdAt: nowIso(deps),
  };
  await deps.store.put(storageKeys.datasetData(task.name, id), data, { contentType: 'application/x-ndjson' });
  await writeJson(deps.store, manifestKey, dataset);
  deps.log.info('dataset stored', { task: task.name, dataset: id, rows: report.rows });

  const job = task.autoTrain
    ? await createJob(deps, task.name, { datasets: [...earlier.map((d) => d.id), id] })
    : undefined;
  return { dataset, existing: false, job };
}

export async function getDatasetManifest(
  deps: CoreDeps,
  taskName: string,
  id: string,
): Promise<DatasetManifest> {
  checkName(id, 'dataset id');
  const found = await findJson(deps.store, storageKeys.datasetManifest(taskName, id), DatasetManifestSchema);
  if (!found)
    throw new GraftError('DATASET_NOT_FOUND', `Dataset "${id}" of task "${taskName}" does not exist.`);
  return found.value;
}

/** The task's dataset versions, oldest first. */
export async function listDatasets(deps: CoreDeps, taskName: string): Promise<DatasetManifest[]> {
  const keys = await deps.store.list(storageKeys.datasetsPrefix(checkName(taskName, 'task name')));
  const manifests = await Promise.all(
    keys
      .filter((key) => key.endsWith('/manifest.json'))
      .map((key) => findJson(deps.store, key, DatasetManifestSchema)),
  );
  return manifests
    .flatMap((found) => (found ? [found.value] : []))
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
}

export interface StoredRow extends DatasetRow {
  dataset: string;
}

/** Reads the rows of the given dataset versions, in order. */
export async function loadDatasetRows(
  deps: CoreDeps,
  taskName: string,
  datasetIds: string[],
): Promise<StoredRow[]> {
  const rows: StoredRow[] = [];
  for (const id of datasetIds) {
    await getDatasetManifest(deps, taskName, id);
    const { body } = await deps.store.get(storageKeys.datasetData(taskName, id));
    for (const row of parseDataset(body, 'jsonl')) rows.push({ ...row, dataset: id });
  }
  return rows;
}

const INCOMING_KEY = /^tasks\/([a-z0-9][a-z0-9-]{0,62})\/incoming\/([^/]+)$/;

/** `{task, file}` of a key in a task's drop zone (`tasks/{task}/incoming/{file}`), or undefined. */
export function parseIncomingKey(key: string): { task: string; file: string } | undefined {
  const match = INCOMING_KEY.exec(key);
  return match?.[1] && match[2] ? { task: match[1], file: match[2] } : undefined;
}

export const RejectedUploadSchema = z.object({
  file: z.string(),
  at: z.string(),
  error: z.object({ code: z.string(), message: z.string() }),
});
export type RejectedUpload = z.infer<typeof RejectedUploadSchema>;

/**
 * Ingests a file dropped under `tasks/{task}/incoming/` (the S3 upload trigger), then removes it. The format
 * comes from the file name: `.jsonl`/`.ndjson` or `.csv`. A file that cannot become a dataset is moved to
 * `tasks/{task}/rejected/` beside a record of why, which `GET /v1/tasks/{task}/datasets` shows.
 */
export async function ingestIncoming(
  deps: CoreDeps,
  key: string,
  {
    size,
    maxBytes = Number.POSITIVE_INFINITY,
  }: { size?: number | undefined; maxBytes?: number | undefined } = {},
): Promise<IngestResult> {
  const parsed = parseIncomingKey(key);
  if (!parsed) {
    throw new GraftError('BAD_REQUEST', `Key "${key}" is not of the form tasks/{task}/incoming/{file}.`);
  }
  const { task, file } = parsed;
  if (size !== undefined && size > maxBytes) {
    // Too big to read here: the record says why, and the file stays where it is (copying it would cost as much).
    const error = new GraftError(
      'PAYLOAD_TOO_LARGE',
      `${file} is ${size} bytes; files of at most ${maxBytes} bytes are ingested. Split it into smaller files ` +
        `(each becomes a dataset version; raise the task's training.rehearsalPerLabel so that a retrain keeps ` +
        `all their rows), then delete ${key}.`,
    );
    await writeJson(deps.store, storageKeys.rejectedRecord(task, file), {
      file,
      at: nowIso(deps),
      error: { code: error.code, message: error.message },
    } satisfies RejectedUpload);
    deps.log.warn('incoming file too large; left in place', { key, size, maxBytes });
    throw error;
  }
  const { body } = await deps.store.get(key);
  let result: IngestResult;
  try {
    result = await ingestDataset(deps, task, body, formatFromFileName(file), { source: `incoming/${file}` });
  } catch (err) {
    if (!(err instanceof GraftError) || STATUS_BY_CODE[err.code] >= 500) throw err;
    const rejected: RejectedUpload = {
      file,
      at: nowIso(deps),
      error: { code: err.code, message: err.message },
    };
    await deps.store.put(storageKeys.rejectedFile(task, file), body);
    await writeJson(deps.store, storageKeys.rejectedRecord(task, file), rejected);
    await deps.store.delete(key);
    deps.log.warn('incoming file rejected', { key, code: err.code, message: err.message });
    throw err;
  }
  await deps.store.delete(key);
  return result;
}

/** Files dropped into the task's incoming/ that could not become datasets, with the reason. */
export async function listRejectedUploads(deps: CoreDeps, taskName: string): Promise<RejectedUpload[]> {
  const keys = await deps.store.list(storageKeys.rejectedPrefix(taskName));
  const records = await Promise.all(
    keys
      .filter((key) => key.endsWith('.error.json'))
      .map((key) => findJson(deps.store, key, RejectedUploadSchema)),
  );
  return records.flatMap((found) => (found ? [found.value] : []));
}

function formatFromFileName(file: string): DatasetFormat {
  if (/\.(jsonl|ndjson)$/i.test(file)) return 'jsonl';
  if (/\.csv$/i.test(file)) return 'csv';
  throw new GraftError(
    'UNSUPPORTED_MEDIA_TYPE',
    `Cannot tell the format of "${file}": name the file *.jsonl, *.ndjson or *.csv.`,
  );
}
