// One evaluation run = one real job on the platform: a fresh task, an upload of the training rows (which queues the
// job), the job followed to its end, the model card read, and every test row predicted over HTTP in batches.

import type { Strategy } from './args.js';
import { type ApiClient, ApiError, type JobView } from './client.js';
import { type DatasetSplits, labelDescriptions, pick, type Rows, toJsonl } from './datasets.js';
import { meanAndSd, type Scores, scorePredictions, sumConfusion } from './metrics.js';
import { deriveSeed, stratifiedSample } from './sample.js';

/** What one run trains: the dataset, backbone, head, training rows and options. */
export interface RunSpec {
  dataset: string;
  /** The platform's backbone name. */
  backbone: string;
  strategy: Strategy;
  /** Labelled examples per class, or every training row. */
  shots: number | 'all';
  /** Which seeded draw of `shots` rows per class; on all rows, which training seed (`trainingSeedFor`). */
  draw: number;
  /** `training.augment` of the task (the platform's default augmentation). */
  augment?: boolean;
}

export interface RunRecord {
  key: string;
  spec: RunSpec;
  task: string;
  /** Seed of the stratified subsample (null: every row). */
  sampleSeed: number | null;
  /** The task's `training.seed`. */
  trainingSeed: number;
  trainRows: number;
  testRows: number;
  status: 'succeeded' | 'failed' | 'error';
  /** The failed job's error, or the request that failed. */
  error?: { code: string; message: string; request?: string };
  jobId?: string;
  modelVersion?: string;
  /** The strategy the model card says was trained (what `auto` chose). */
  chosenStrategy?: string;
  /** Test-set figures computed here from the predictions (fractions 0..1). */
  accuracy?: number;
  macroF1?: number;
  /** The card's own validation figures. */
  validation?: { accuracy?: number; macroF1?: number; rows?: number };
  card?: {
    rows?: unknown;
    data?: unknown;
    hyperparameters?: unknown;
    candidates?: unknown;
    augment?: unknown;
    timingsMs?: Record<string, number>;
    /** The exported file's sha256 and size. */
    model?: unknown;
  };
  /** Wall-clock times seen by the client. */
  wallMs: { upload: number; job: number; predict: number; total: number };
  confusion?: number[][];
  labels?: string[];
  warnings?: string[];
}

function warn(record: RunRecord, message: string) {
  record.warnings = [...(record.warnings ?? []), message];
}

export interface RunnerOptions {
  /** Base seed of every subsample. */
  seed: number;
  /** Called with each job update while it runs (for a live status line). */
  onJobUpdate?: (spec: RunSpec, job: JobView) => void;
}

const PREDICT_BATCH = 256;
const PREDICT_CONCURRENCY = 2;

export const specKey = (s: RunSpec) =>
  [s.dataset, s.backbone, s.strategy, s.shots, s.draw, s.augment ? 'augment' : 'plain'].join('|');

/** The subsample seed of a (dataset, shots, draw): independent of backbone and strategy, so runs are paired. */
export const sampleSeedFor = (base: number, dataset: string, shots: number, draw: number) =>
  deriveSeed(base, dataset, shots, draw);

/** The platform's default training seed (a task's `training.seed`). */
export const DEFAULT_TRAINING_SEED = 42;

/**
 * The training seed of a run: on all rows, draw d trains with seed 42 + d (the rows are the same, the
 * initialisation, shuffling and folds differ); subsamples train with the default seed, their draws differ in rows.
 */
export const trainingSeedFor = (spec: RunSpec) =>
  spec.shots === 'all' ? DEFAULT_TRAINING_SEED + spec.draw : DEFAULT_TRAINING_SEED;

/** Runs specs as real jobs, each once (results are kept by spec). */
export class Runner {
  readonly records = new Map<string, RunRecord>();
  private taskCounter = 0;

  constructor(
    private readonly api: ApiClient,
    private readonly options: RunnerOptions,
  ) {}

  find(spec: RunSpec): RunRecord | undefined {
    return this.records.get(specKey(spec));
  }

  async run(spec: RunSpec, data: DatasetSplits): Promise<RunRecord> {
    const key = specKey(spec);
    const done = this.records.get(key);
    if (done) return done;
    const started = Date.now();
    const sampleSeed =
      spec.shots === 'all' ? null : sampleSeedFor(this.options.seed, spec.dataset, spec.shots, spec.draw);
    const train =
      sampleSeed === null || spec.shots === 'all'
        ? data.train
        : pick(data.train, stratifiedSample(data.train.labels, spec.shots, sampleSeed));
    this.taskCounter++;
    const task = `ev${this.taskCounter}-${spec.dataset}`.slice(0, 63);
    const record: RunRecord = {
      key,
      spec,
      task,
      sampleSeed,
      trainingSeed: trainingSeedFor(spec),
      trainRows: train.labels.length,
      testRows: data.test.labels.length,
      status: 'error',
      wallMs: { upload: 0, job: 0, predict: 0, total: 0 },
    };
    this.records.set(key, record);
    try {
      await this.execute(record, train, data);
    } catch (err) {
      record.status = 'error';
      record.error =
        err instanceof ApiError
          ? { code: err.code, message: err.detail, request: `${err.request} -> ${err.status}` }
          : { code: 'EVAL_ERROR', message: (err as Error).message };
    }
    record.wallMs.total = Date.now() - started;
    return record;
  }

  private async execute(record: RunRecord, train: Rows, data: DatasetSplits) {
    const { spec, task } = record;
    const { api } = this;
    const present = [...new Set(train.labels)];
    const classes = data.train.classes.filter((label) => present.includes(label));
    await api.put(`/v1/tasks/${task}`, {
      backbone: spec.backbone,
      strategy: spec.strategy,
      ...(train.kind === 'text'
        ? {
            labels: Object.entries(labelDescriptions(spec.dataset, classes)).map(([name, description]) => ({
              name,
              description,
            })),
          }
        : {}),
      training: { seed: record.trainingSeed, ...(spec.augment ? { augment: {} } : {}) },
    });
    let t = Date.now();
    const upload = await api.postNdjson<{ datasetId: string; jobId?: string }>(
      `/v1/tasks/${task}/datasets`,
      toJsonl(train),
    );
    record.wallMs.upload = Date.now() - t;
    t = Date.now();
    const jobId =
      upload.jobId ??
      (await api.post<{ id: string }>(`/v1/tasks/${task}/jobs`, { datasets: [upload.datasetId] })).id;
    record.jobId = jobId;
    const job = await api.waitForJob(jobId, {
      onUpdate: (j) => this.options.onJobUpdate?.(spec, j),
    });
    record.wallMs.job = Date.now() - t;
    record.modelVersion = job.modelVersion;
    if (job.status !== 'succeeded') {
      record.status = 'failed';
      record.error = job.error ?? { code: job.status.toUpperCase(), message: `the job ended ${job.status}` };
      return;
    }
    const card = await api.get<Card>(`/v1/tasks/${task}/models/${job.modelVersion}`);
    record.chosenStrategy = card.strategy;
    record.validation = {
      accuracy: num(card.metrics?.accuracy),
      macroF1: num(card.metrics?.macroF1),
      rows: num(card.metrics?.n),
    };
    record.card = {
      rows: card.rows,
      data: card.data,
      hyperparameters: card.hyperparameters,
      candidates: card.training?.candidates,
      ...(spec.augment ? { augment: (await api.get<Task>(`/v1/tasks/${task}`)).training?.augment } : {}),
      timingsMs: card.timingsMs,
      model: card.model,
    };
    if (!job.promoted) warn(record, `${job.modelVersion} was not promoted`);
    t = Date.now();
    const { predicted, versions } = await this.predictAll(task, data.test);
    record.wallMs.predict = Date.now() - t;
    const served = [...versions];
    if (served.length !== 1 || served[0] !== job.modelVersion) {
      warn(record, `predictions came from ${served.join(', ')}, the job trained ${job.modelVersion}`);
    }
    const scores: Scores = scorePredictions(data.test.labels, predicted, data.train.classes);
    record.accuracy = scores.accuracy;
    record.macroF1 = scores.macroF1;
    record.confusion = scores.confusion;
    record.labels = scores.labels;
    record.status = 'succeeded';
  }

  private async predictAll(task: string, test: Rows) {
    const predicted = new Array<string>(test.inputs.length);
    const versions = new Set<string>();
    const batches: number[] = [];
    for (let start = 0; start < test.inputs.length; start += PREDICT_BATCH) batches.push(start);
    let next = 0;
    const worker = async () => {
      for (;;) {
        const start = batches[next++];
        if (start === undefined) return;
        const slice = test.inputs.slice(start, start + PREDICT_BATCH);
        const inputs = test.kind === 'text' ? slice : slice.map((image) => ({ image }));
        const answer = await this.api.post<PredictAnswer>(`/v1/tasks/${task}/predict`, { inputs });
        versions.add(answer.model.version);
        if (answer.predictions.length !== slice.length) {
          throw new Error(
            `predict returned ${answer.predictions.length} predictions for ${slice.length} inputs`,
          );
        }
        answer.predictions.forEach((p, i) => {
          predicted[start + i] = p.label;
        });
      }
    };
    await Promise.all(Array.from({ length: PREDICT_CONCURRENCY }, worker));
    return { predicted, versions };
  }
}

interface Card {
  strategy: string;
  metrics?: Record<string, unknown>;
  rows?: unknown;
  data?: unknown;
  hyperparameters?: unknown;
  training?: { candidates?: unknown };
  timingsMs?: Record<string, number>;
  model?: unknown;
}

interface Task {
  training?: { augment?: unknown };
}

interface PredictAnswer {
  model: { task: string; version: string };
  predictions: { label: string; score: number }[];
}

const num = (v: unknown) => (typeof v === 'number' ? v : undefined);

/** Figures of several runs of one configuration (the draws), in % for display. */
export interface Aggregate {
  runs: number;
  succeeded: number;
  accuracy: { mean: number; sd: number };
  macroF1: { mean: number; sd: number };
  /** How often each strategy was chosen (what `auto` picked). */
  chosen: Record<string, number>;
  /** Mean of the card's totalMs (the job's own timing), and of the client's job wall time. */
  jobMs: { card: number; wall: number };
  trainRows: number;
  errors: string[];
  confusion?: number[][];
  labels?: string[];
  tasks: string[];
}

/** An aggregate without its confusion matrix and labels (kept once per dataset in results.json). */
export function withoutConfusion<T extends Aggregate>({
  confusion: _c,
  labels: _l,
  ...rest
}: T): Omit<T, 'confusion' | 'labels'> {
  return rest;
}

/** Of `keys`, the one whose runs reached the highest mean accuracy (the first on ties); none if none succeeded. */
export function mostAccurate<K>(keys: readonly K[], of: (key: K) => Aggregate | undefined): K | undefined {
  let best: { key: K; mean: number } | undefined;
  for (const key of keys) {
    const agg = of(key);
    if (!agg || agg.succeeded === 0) continue;
    if (!best || agg.accuracy.mean > best.mean) best = { key, mean: agg.accuracy.mean };
  }
  return best?.key;
}

export function aggregate(records: readonly RunRecord[]): Aggregate {
  const ok = records.filter((r) => r.status === 'succeeded');
  const chosen: Record<string, number> = {};
  for (const r of ok) if (r.chosenStrategy) chosen[r.chosenStrategy] = (chosen[r.chosenStrategy] ?? 0) + 1;
  const pct = (values: (number | undefined)[]) =>
    meanAndSd(values.filter((v): v is number => v !== undefined).map((v) => v * 100));
  const withConfusion = ok.filter((r) => r.confusion);
  const sameShape = withConfusion.every((r) => r.labels?.join('\n') === withConfusion[0]?.labels?.join('\n'));
  return {
    runs: records.length,
    succeeded: ok.length,
    accuracy: pct(ok.map((r) => r.accuracy)),
    macroF1: pct(ok.map((r) => r.macroF1)),
    chosen,
    jobMs: {
      card: meanAndSd(ok.map((r) => r.card?.timingsMs?.totalMs ?? Number.NaN)).mean,
      wall: meanAndSd(ok.map((r) => r.wallMs.job)).mean,
    },
    trainRows: meanAndSd(records.map((r) => r.trainRows)).mean,
    errors: records
      .filter((r) => r.status !== 'succeeded')
      .map((r) => `${r.task}: ${r.error?.code ?? r.status}: ${r.error?.message ?? ''}`),
    ...(withConfusion.length > 0 && sameShape
      ? {
          confusion: sumConfusion(withConfusion.map((r) => r.confusion as number[][])),
          labels: withConfusion[0]?.labels,
        }
      : {}),
    tasks: records.map((r) => r.task),
  };
}
