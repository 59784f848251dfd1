import { augmentImages } from '../engine/augment.js';
import { decodeImage } from '../engine/backbones/image.js';
import {
  type Backbone,
  concatFeatures,
  configSha256,
  type FeatureMatrix,
  type RawInput,
  selectRows,
  stratifiedSplit,
} from '../engine/index.js';
import { createRng, shuffleInPlace } from '../engine/rng.js';
import { GraftError, isCode } from '../errors.js';
import { type DatasetManifest, loadDatasetRows, type StoredRow } from './datasets.js';
import type { CoreDeps } from './deps.js';
import { decodeBase64Image } from './inputs.js';
import { storageKeys } from './storage-keys.js';
import type { Task } from './tasks.js';

/** Rows with their raw inputs (texts or image bytes), labels and backbone features. */
export interface LabelledRows {
  inputs: RawInput[];
  labels: string[];
  features: FeatureMatrix;
}

export interface TrainingSet {
  labels: string[];
  train: LabelledRows;
  /** The validation rows of every dataset version: the newest version's and the earlier ones'. */
  validation: LabelledRows & { fromEarlier: boolean[] };
  unlabelled: FeatureMatrix | undefined;
  report: {
    newRows: number;
    rehearsedRows: number;
    augmentedRows: number;
    validationRows: number;
    earlierValidationRows: number;
    unlabelledRows: number;
    supersededRows: number;
  };
}

export interface BuildOptions {
  seed: number;
  signal?: AbortSignal;
  onProgress?: (fraction: number, message?: string) => void;
}

/** The validation share of each dataset version's labelled rows, per label. */
export const VALIDATION_FRACTION = 0.2;
/** The seed of every version's split: fixed, so that a job with another seed keeps the same validation rows. */
export const SPLIT_SEED = 42;

// Unlabelled rows used for self-training, at most.
const MAX_UNLABELLED = 20_000;

/**
 * Assembles what a job trains and validates on, the continual-learning way:
 * - each dataset version is split the same way in every job (stratified, SPLIT_SEED, whatever the job's own
 *   seed), so the rows an earlier model was validated on are validated on again and never trained on (no silent
 *   forgetting goes unmeasured);
 * - the newest version trains in full; earlier versions contribute a stratified sample of at most
 *   `rehearsalPerLabel` training rows per label (rehearsal);
 * - an input labelled again in a later version takes the later label;
 * - features come from the frozen backbone, cached per (backbone, dataset) for ONNX backbones, so a retrain that
 *   only changes the head does not run the backbone again.
 */
export async function buildTrainingSet(
  deps: CoreDeps,
  task: Task,
  datasets: DatasetManifest[],
  backbone: Backbone,
  { seed, signal, onProgress }: BuildOptions,
): Promise<TrainingSet> {
  const seen = new Set<string>();
  const parts: {
    manifest: DatasetManifest;
    rows: StoredRow[];
    train: number[];
    validation: number[];
    unlabelled: number[];
  }[] = [];
  let superseded = 0;
  // Newest first, so that a later label of the same input wins.
  for (const manifest of [...datasets].reverse()) {
    const rows = await loadDatasetRows(deps, task.name, [manifest.id]);
    const labelled = rows.flatMap((row, index) =>
      row.label === undefined ? [] : [{ index, label: row.label }],
    );
    const split = stratifiedSplit(labelled, { validationFraction: VALIDATION_FRACTION, seed: SPLIT_SEED });
    const keep = (index: number) => {
      const key = rowKey(rows[index] as StoredRow);
      if (seen.has(key)) {
        superseded++;
        return false;
      }
      return true;
    };
    const part = {
      manifest,
      rows,
      train: split.train.map((r) => r.index).filter(keep),
      validation: split.validation.map((r) => r.index).filter(keep),
      unlabelled: rows.flatMap((row, index) => (row.label === undefined ? [index] : [])).filter(keep),
    };
    for (const index of [...part.train, ...part.validation, ...part.unlabelled])
      seen.add(rowKey(rows[index] as StoredRow));
    parts.unshift(part);
  }

  // Rehearsal: a stratified sample of the earlier versions' training rows.
  const newest = parts.at(-1);
  if (!newest) throw new GraftError('DATASET_NOT_FOUND', `Task "${task.name}" has no datasets to train on.`);
  const rng = createRng(seed);
  const earlierByLabel = new Map<string, { part: number; index: number }[]>();
  parts.slice(0, -1).forEach((part, p) => {
    for (const index of part.train) {
      const label = part.rows[index]?.label as string;
      const group = earlierByLabel.get(label) ?? [];
      group.push({ part: p, index });
      earlierByLabel.set(label, group);
    }
  });
  const rehearsed = new Map<number, number[]>();
  for (const group of earlierByLabel.values()) {
    for (const { part, index } of shuffleInPlace([...group], rng).slice(0, task.training.rehearsalPerLabel)) {
      rehearsed.set(part, [...(rehearsed.get(part) ?? []), index]);
    }
  }

  // Features, per dataset version.
  const train: LabelledRows[] = [];
  const validation: (LabelledRows & { fromEarlier: boolean[] })[] = [];
  const unlabelled: FeatureMatrix[] = [];
  let unlabelledCount = 0;
  for (const [p, part] of parts.entries()) {
    onProgress?.(p / parts.length, `embedding dataset ${part.manifest.id}`);
    const isNewest = part === newest;
    const trainIdx = isNewest ? part.train : (rehearsed.get(p) ?? []).sort((a, b) => a - b);
    const unlabelledIdx = task.training.selfTraining
      ? part.unlabelled.slice(0, Math.max(0, MAX_UNLABELLED - unlabelledCount))
      : [];
    unlabelledCount += unlabelledIdx.length;
    if (trainIdx.length + part.validation.length + unlabelledIdx.length === 0) continue;
    const features = await datasetFeatures(deps, task, part.manifest, part.rows, backbone, signal);
    const take = (indices: number[]): LabelledRows => ({
      inputs: indices.map((i) => rawInput(part.rows[i] as StoredRow, i)),
      labels: indices.map((i) => part.rows[i]?.label as string),
      features: selectRows(features, indices),
    });
    train.push(take(trainIdx));
    validation.push({ ...take(part.validation), fromEarlier: part.validation.map(() => !isNewest) });
    if (unlabelledIdx.length) unlabelled.push(selectRows(features, unlabelledIdx));
  }
  const trainSet = mergeRows(train);
  const validationSet = { ...mergeRows(validation), fromEarlier: validation.flatMap((v) => v.fromEarlier) };

  const augmented = await augmentTraining(task, trainSet, backbone, seed, signal);
  const labels = task.labels ?? [...new Set([...trainSet.labels, ...validationSet.labels])].sort();
  onProgress?.(1);
  return {
    labels,
    train: augmented ? mergeRows([trainSet, augmented]) : trainSet,
    validation: validationSet,
    unlabelled: unlabelled.length ? unlabelled.reduce((a, b) => concatFeatures(a, b)) : undefined,
    report: {
      newRows: newest.train.length,
      rehearsedRows: trainSet.labels.length - newest.train.length,
      augmentedRows: augmented?.labels.length ?? 0,
      validationRows: validationSet.labels.length,
      earlierValidationRows: validationSet.fromEarlier.filter(Boolean).length,
      unlabelledRows: unlabelledCount,
      supersededRows: superseded,
    },
  };
}

/** The identity of a row's input: a text, or an image's bytes as sent. */
const rowKey = (row: StoredRow) => (row.text !== undefined ? `t:${row.text}` : `i:${row.image ?? ''}`);

function rawInput(row: StoredRow, index: number): RawInput {
  if (row.text !== undefined) return row.text;
  return decodeBase64Image(row.image ?? '', `row ${index + 1}: image`);
}

function mergeRows<T extends LabelledRows>(parts: T[]): LabelledRows {
  const [first, ...rest] = parts;
  if (!first) throw new GraftError('DATASET_TOO_SMALL', 'There are no labelled rows to train on.');
  return rest.reduce<LabelledRows>(
    (all, part) => ({
      inputs: [...all.inputs, ...part.inputs],
      labels: [...all.labels, ...part.labels],
      features: concatFeatures(all.features, part.features),
    }),
    { inputs: first.inputs, labels: first.labels, features: first.features },
  );
}

/**
 * The backbone's features of every row of a dataset version. ONNX backbones are slow enough to cache: the
 * features are stored under cache/embeddings/{backbone config sha}/{dataset sha}.f32 (float32 rows, little
 * endian) and read back by the next job on the same data.
 */
async function datasetFeatures(
  deps: CoreDeps,
  task: Task,
  manifest: DatasetManifest,
  rows: StoredRow[],
  backbone: Backbone,
  signal: AbortSignal | undefined,
): Promise<FeatureMatrix> {
  const inputs = rows.map((row, i) => rawInput(row, i));
  if (backbone.config.kind === 'hash') return backbone.extract(inputs, { signal });
  const key = storageKeys.embeddingsCache(configSha256(backbone.config), manifest.sha256);
  const cached = await deps.store.find(key).catch(() => undefined);
  const dims = backbone.dims;
  if (cached && cached.body.byteLength === rows.length * dims * 4) {
    const data = new Float32Array(
      cached.body.buffer.slice(cached.body.byteOffset, cached.body.byteOffset + cached.body.byteLength),
    );
    return { kind: 'dense', dims, rows: rows.length, data };
  }
  const features = await backbone.extract(inputs, { signal });
  if (features.kind === 'dense') {
    try {
      await deps.store.put(
        key,
        new Uint8Array(features.data.buffer, features.data.byteOffset, features.data.byteLength),
      );
    } catch (err) {
      // A cache that cannot be written only costs time on the next job.
      if (!isCode(err, 'STORAGE_UNAVAILABLE')) throw err;
      deps.log.warn('embeddings not cached', { task: task.name, dataset: manifest.id });
    }
  }
  return features;
}

/** Augmented copies of the training images, when the task asks for them (images only). */
async function augmentTraining(
  task: Task,
  train: LabelledRows,
  backbone: Backbone,
  seed: number,
  signal: AbortSignal | undefined,
): Promise<LabelledRows | undefined> {
  const options = task.training.augment;
  if (!options || backbone.config.kind !== 'image') return undefined;
  const images = train.inputs.map((input) => (input instanceof Uint8Array ? decodeImage(input) : input));
  if (images.some((image) => typeof image === 'string')) return undefined;
  const copies = augmentImages(images as Exclude<(typeof images)[number], string>[], { ...options, seed });
  const labels = train.labels.flatMap((label) => Array.from({ length: options.copies }, () => label));
  return { inputs: copies, labels, features: await backbone.extract(copies, { signal }) };
}
