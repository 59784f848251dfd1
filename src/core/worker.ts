import { createHash, randomBytes } from 'node:crypto';
import {
  computeMetrics,
  type Metrics,
  Predictor,
  type RawInput,
  type TrainedClassifier,
  type TrainStage,
  trainClassifier,
} from '../engine/index.js';
import { GraftError, isCode, toGraftError } from '../errors.js';
import { openNamedBackbone, resolveBackbone } from './backbones.js';
import { getDatasetManifest } from './datasets.js';
import { type CoreDeps, nowIso } from './deps.js';
import {
  DEFAULT_HEARTBEAT_MS,
  getJob,
  heldByLiveWorker,
  isTerminal,
  type Job,
  type JobStage,
  staleAfter,
  updateJob,
  withEvent,
} from './jobs.js';
import { writeJson } from './json-objects.js';
import {
  findCard,
  findCurrent,
  type ModelCard,
  metricsSummary,
  type PromotionDecision,
  setCurrent,
} from './models.js';
import { storageKeys } from './storage-keys.js';
import { getTask, type PromotionPolicy, type Task } from './tasks.js';
import { buildTrainingSet, type LabelledRows, type TrainingSet } from './training-set.js';

export interface WorkerOptions {
  /** Identifies this worker in the job record, so a second live worker leaves the job alone. */
  workerId?: string;
  /** How often a running job proves it is alive (and notices a cancel request). */
  heartbeatMs?: number;
  /** A running job whose heartbeat is older than this is taken over (its worker died). */
  staleAfterMs?: number;
  /** On the last delivery a transient failure fails the job instead of leaving it for a retry. */
  lastAttempt?: boolean;
}

/** Thrown when another live worker holds the job: the delivery should be left for later, not deleted. */
export class JobBusyError extends Error {
  override readonly name = 'JobBusyError';
}

const TRANSIENT_CODES = new Set(['STORAGE_UNAVAILABLE', 'QUEUE_UNAVAILABLE']);

// Overall progress at the start of each stage; a stage fills the span up to the next one.
const STAGE_START: Record<JobStage, number> = {
  validating: 0,
  embedding: 0.05,
  training: 0.15,
  evaluating: 0.8,
  exporting: 0.88,
  publishing: 0.96,
};

/**
 * Runs one training job to its end: validate the task's data, train a head on the frozen backbone, score it
 * against the model in service, publish one ONNX file with its card, and promote it if the policy allows.
 * Idempotent by job id: a finished job is returned as it is, and a retried job writes the same version.
 */
export async function runJob(deps: CoreDeps, jobId: string, options: WorkerOptions = {}): Promise<Job> {
  const { workerId = `worker-${randomBytes(4).toString('hex')}`, heartbeatMs = DEFAULT_HEARTBEAT_MS } =
    options;
  const staleAfterMs = staleAfter(options);
  const existing = await getJob(deps, jobId);
  if (isTerminal(existing)) return existing;

  const claimed = await claim(deps, jobId, workerId, staleAfterMs);
  if (isTerminal(claimed)) return claimed;
  const reporter = new JobReporter(deps, claimed, workerId, heartbeatMs);
  try {
    const outcome = await pipeline(deps, claimed, reporter);
    return await reporter.finish((job) =>
      withEvent(
        {
          ...job,
          status: 'succeeded',
          stage: undefined,
          progress: 1,
          promoted: outcome.promoted,
          metrics: outcome.metrics,
          error: undefined,
        },
        nowIso(deps),
        `succeeded: ${job.modelVersion} ${outcome.promoted ? 'promoted' : 'kept back'} (${outcome.reason})`,
      ),
    );
  } catch (err) {
    if (reporter.cancelled) {
      return reporter.finish((job) => withEvent({ ...job, status: 'cancelled' }, nowIso(deps), 'cancelled'));
    }
    const error = toGraftError(err);
    if (TRANSIENT_CODES.has(error.code) && !options.lastAttempt) {
      await reporter.stop();
      // Give the job up, so that the next delivery takes it at once instead of waiting for this worker's
      // heartbeat to go stale. When the store is what failed, this may fail too: staleness still frees it.
      await updateJob(deps, jobId, (job) =>
        job.worker?.id === workerId
          ? withEvent(
              { ...job, worker: undefined },
              nowIso(deps),
              `attempt ${job.attempts} failed (${error.code}); it will be retried`,
            )
          : job,
      ).catch(() => {});
      deps.log.warn('job attempt failed; the delivery will be retried', { jobId, code: error.code });
      throw error;
    }
    deps.log.error('job failed', { jobId, code: error.code, message: error.message });
    return reporter.finish((job) =>
      withEvent(
        { ...job, status: 'failed', error: { code: error.code, message: error.message } },
        nowIso(deps),
        `failed: ${error.code}`,
      ),
    );
  }
}

async function claim(deps: CoreDeps, jobId: string, workerId: string, staleAfterMs: number): Promise<Job> {
  const { value } = await updateJob(deps, jobId, (job) => {
    if (isTerminal(job)) return job;
    const now = deps.now?.() ?? new Date();
    if (heldByLiveWorker(job, now, staleAfterMs, [workerId])) {
      throw new JobBusyError(`job ${jobId} is running on ${job.worker?.id}`);
    }
    if (job.cancelRequested)
      return withEvent({ ...job, status: 'cancelled' }, now.toISOString(), 'cancelled');
    const attempts = job.attempts + 1;
    return withEvent(
      {
        ...job,
        status: 'running',
        stage: 'validating',
        progress: 0,
        attempts,
        worker: { id: workerId, heartbeatAt: now.toISOString() },
      },
      now.toISOString(),
      attempts === 1 ? `started on ${workerId}` : `restarted on ${workerId} (attempt ${attempts})`,
    );
  });
  return value;
}

/**
 * Writes progress and heartbeats to the job record, one write at a time, and turns a cancel request seen in
 * the record into an abort of the running stage.
 */
class JobReporter {
  readonly controller = new AbortController();
  cancelled = false;
  private chain: Promise<unknown> = Promise.resolve();
  private waiting: ((job: Job) => Job)[] | undefined;
  private timer: NodeJS.Timeout | undefined;
  private lastWrite = 0;
  private stage: JobStage = 'validating';

  constructor(
    private readonly deps: CoreDeps,
    readonly job: Job,
    private readonly workerId: string,
    heartbeatMs: number,
  ) {
    this.timer = setInterval(() => void this.write((j) => j).catch(() => {}), heartbeatMs);
    this.timer.unref();
  }

  /** Enters a stage (always recorded) or reports progress inside it (recorded at most twice a second). */
  progress(stage: JobStage, fraction: number, message?: string) {
    const changed = stage !== this.stage;
    this.stage = stage;
    if (!changed && !message && Date.now() - this.lastWrite < 500) return;
    const stages = Object.keys(STAGE_START) as JobStage[];
    const next = stages[stages.indexOf(stage) + 1];
    const end = next ? STAGE_START[next] : 1;
    const progress = STAGE_START[stage] + (end - STAGE_START[stage]) * Math.min(1, Math.max(0, fraction));
    void this.write((job) => {
      const updated = { ...job, stage, progress: Math.round(progress * 1000) / 1000 };
      return changed || message ? withEvent(updated, nowIso(this.deps), message ?? stage) : updated;
    }).catch((err) => this.deps.log.warn('progress not recorded', { jobId: this.job.id, err: String(err) }));
  }

  checkCancelled() {
    if (this.controller.signal.aborted) throw this.controller.signal.reason;
  }

  /** Resolves once every change made so far is in the record (or failed to get there). */
  async settle() {
    await this.chain.catch(() => {});
  }

  async stop() {
    clearInterval(this.timer);
    await this.chain.catch(() => {});
  }

  async finish(change: (job: Job) => Job): Promise<Job> {
    await this.stop();
    const { value } = await updateJob(this.deps, this.job.id, (job) => change({ ...job, worker: undefined }));
    return value;
  }

  // Changes made while a write is waiting join that write: the record then trails the pipeline by at most one
  // write, however fast progress comes (an epoch of a small dataset takes less than one store write).
  private write(change: (job: Job) => Job) {
    this.lastWrite = Date.now();
    if (this.waiting) {
      this.waiting.push(change);
      return this.chain;
    }
    const changes = [change];
    this.waiting = changes;
    this.chain = this.chain
      .catch(() => {})
      .then(() => {
        this.waiting = undefined;
        return updateJob(this.deps, this.job.id, (job) => {
          if (job.cancelRequested && !this.cancelled) {
            this.cancelled = true;
            this.controller.abort(new GraftError('CONFLICT', 'the job was cancelled'));
          }
          const alive: Job = { ...job, worker: { id: this.workerId, heartbeatAt: nowIso(this.deps) } };
          return changes.reduce((next: Job, apply) => apply(next), alive);
        });
      });
    return this.chain;
  }
}

interface Outcome {
  promoted: boolean;
  reason: string;
  metrics: Record<string, unknown>;
}

async function pipeline(deps: CoreDeps, job: Job, reporter: JobReporter): Promise<Outcome> {
  const timings: Record<string, number> = {};
  const started = Date.now();
  const task = await getTask(deps, job.task);
  const backbone = await openNamedBackbone(deps, task.backbone);
  const seed = job.hyperparameters?.seed ?? task.training.seed;

  // validating and embedding: dataset versions -> rehearsal sample, per-version splits, cached features
  reporter.progress('validating', 0, `reading ${job.datasets.length} dataset version(s)`);
  const manifests = await Promise.all(job.datasets.map((id) => getDatasetManifest(deps, task.name, id)));
  checkHeadSize(
    backbone,
    task.labels?.length ?? new Set(manifests.flatMap((m) => Object.keys(m.labels))).size,
  );
  timings.validatingMs = Date.now() - started;
  const set = await buildTrainingSet(deps, task, manifests, backbone, {
    seed,
    signal: reporter.controller.signal,
    onProgress: (fraction, message) => reporter.progress('embedding', fraction, message),
  });
  reporter.progress(
    'embedding',
    1,
    `${set.train.labels.length} training rows (${set.report.rehearsedRows} rehearsed from earlier versions), ${set.validation.labels.length} validation rows`,
  );
  reporter.checkCancelled();

  // training, evaluating, exporting (inside the engine, which also checks ONNX parity)
  const trained = await trainClassifier(set.train, set.validation, {
    backbone,
    labels: set.labels,
    ...(task.labelDescriptions ? { labelDescriptions: task.labelDescriptions } : {}),
    strategy: job.strategy ?? task.strategy,
    hyperparameters: job.hyperparameters,
    seed,
    ...(set.unlabelled ? { unlabelled: set.unlabelled, selfTraining: task.training.selfTraining } : {}),
    validationInputs: set.validation.inputs,
    executionProviders: deps.executionProviders,
    signal: reporter.controller.signal,
    onProgress: (stage: TrainStage, fraction: number, message?: string) =>
      reporter.progress(stage === 'embedding' ? 'training' : stage, fraction, message),
  });
  reporter.checkCancelled();

  // evaluating against the model in service, on the same rows
  reporter.progress('evaluating', 0.5, 'comparing with the model in service');
  const evaluation = await evaluateOnValidation(deps, trained, set.validation);
  const decision = await decidePromotion(deps, task, set.validation, trained, evaluation);
  reporter.checkCancelled();

  // publishing: the model file first, then its card (which makes the version visible), then the pointer
  reporter.progress('publishing', 0, `publishing ${job.modelVersion}`);
  // The record says "publishing" before any artifact is written: it never trails what the store holds.
  await reporter.settle();
  const card = await publish(deps, job, task, trained, decision, {
    seed,
    data: set.report,
    earlierMetrics: evaluation.earlier,
    timingsMs: { ...timings, ...trained.timingsMs, totalMs: Date.now() - started },
  });
  let promoted = false;
  let reason = card.promotion.reason;
  if (card.promotion.promote) {
    try {
      await setCurrent(deps, task.name, card.version, { reason, expected: card.promotion.against ?? null });
      promoted = true;
    } catch (err) {
      if (!isCode(err, 'CONFLICT')) throw err;
      // A retried delivery whose earlier attempt set the pointer and died before recording it.
      if ((await findCurrent(deps, task.name))?.version === card.version) promoted = true;
      else reason = `not promoted: ${(err as Error).message}`;
    }
  }
  return { promoted, reason, metrics: metricsSummary(trained.metrics) };
}

// A linear head is dims x labels float32 weights, held several times over while training (weights, best copy,
// AdamW moments, the exported file, the parity session): past this a worker runs out of memory instead of failing.
const MAX_HEAD_BYTES = 256 * 1024 * 1024;

function checkHeadSize(backbone: { dims: number; config: { name: string } }, labels: number) {
  const bytes = backbone.dims * labels * 4;
  if (bytes <= MAX_HEAD_BYTES) return;
  const maxLabels = Math.floor(MAX_HEAD_BYTES / (backbone.dims * 4));
  throw new GraftError(
    'INVALID_DATASET',
    `${labels} labels are too many for backbone "${backbone.config.name}" (${backbone.dims} features): its head would hold ${Math.round(bytes / 2 ** 20)} MiB of weights, at most ${MAX_HEAD_BYTES / 2 ** 20} MiB fit. Use at most ${maxLabels} labels (merge the rare ones), or a backbone with fewer features.`,
    { details: { labels, maxLabels } },
  );
}

export interface ValidationEvaluation {
  /** The candidate's metrics on the rows of earlier dataset versions alone (rehearsal check), when there are some. */
  earlier: Metrics | undefined;
}

/** Runs the exported candidate on the validation rows kept from earlier dataset versions. */
async function evaluateOnValidation(
  deps: CoreDeps,
  candidate: TrainedClassifier,
  validation: LabelledRows & { fromEarlier: boolean[] },
): Promise<ValidationEvaluation> {
  const rows = validation.fromEarlier.flatMap((earlier, i) => (earlier ? [i] : []));
  if (rows.length === 0) return { earlier: undefined };
  const predictor = await Predictor.load(candidate.onnx, { executionProviders: deps.executionProviders });
  try {
    const probabilities = await predictor.predict(rows.map((i) => validation.inputs[i] as RawInput));
    const labels = rows.map((i) => validation.labels[i] as string);
    return { earlier: metricsInLabelSpace(labels, probabilities, predictor.labels, candidate.labels) };
  } finally {
    await predictor.dispose();
  }
}

/** Scores the model in service on the candidate's validation rows and applies the task's promotion policy. */
export async function decidePromotion(
  deps: CoreDeps,
  task: Task,
  validation: LabelledRows,
  candidate: TrainedClassifier,
  evaluation: ValidationEvaluation = { earlier: undefined },
): Promise<PromotionDecision> {
  const current = await findCurrent(deps, task.name);
  if (!current) return { promote: true, reason: 'first model of the task' };
  const policy: PromotionPolicy = task.promotion;
  if (policy.mode === 'manual') {
    return {
      promote: false,
      against: current.version,
      reason: `the task's promotion policy is manual: promote with POST /v1/tasks/${task.name}/models/{version}/promote`,
    };
  }
  const { body } = await deps.store.get(storageKeys.modelFile(task.name, current.version));
  const predictor = await Predictor.load(body, { executionProviders: deps.executionProviders });
  let served: Metrics;
  try {
    const probabilities = await predictor.predict(validation.inputs);
    served = metricsInLabelSpace(validation.labels, probabilities, predictor.labels, candidate.labels);
  } finally {
    await predictor.dispose();
  }
  const n = validation.labels.length;
  const comparison = {
    candidate: {
      macroF1: candidate.metrics.macroF1,
      accuracy: candidate.metrics.accuracy,
      ...(evaluation.earlier ? { earlierRowsMacroF1: evaluation.earlier.macroF1 } : {}),
    },
    current: { version: current.version, macroF1: served.macroF1, accuracy: served.accuracy },
    rows: n,
  };
  if (policy.mode === 'always') {
    return {
      promote: true,
      against: current.version,
      comparison,
      reason: "the task's promotion policy is always",
    };
  }
  const drop = served.macroF1 - candidate.metrics.macroF1;
  if (drop > policy.maxMacroF1Drop) {
    return {
      promote: false,
      against: current.version,
      comparison,
      reason: `macro-F1 ${fmt(candidate.metrics.macroF1)} is below ${current.version}'s ${fmt(served.macroF1)} on the same ${n} validation rows`,
    };
  }
  const worse = candidate.labels.flatMap((label) => {
    const before = served.perClass[label];
    const after = candidate.metrics.perClass[label];
    if (!before || !after || before.support === 0) return [];
    const classDrop = before.f1 - after.f1;
    return classDrop > policy.maxClassF1Drop ? [`"${label}" F1 ${fmt(before.f1)} -> ${fmt(after.f1)}`] : [];
  });
  if (worse.length > 0) {
    return {
      promote: false,
      against: current.version,
      comparison,
      reason: `classes would get worse by more than ${fmt(policy.maxClassF1Drop)}: ${worse.join(', ')}`,
    };
  }
  return {
    promote: true,
    against: current.version,
    comparison,
    reason: `macro-F1 ${fmt(candidate.metrics.macroF1)} vs ${fmt(served.macroF1)} for ${current.version} on the same rows, no class worse by more than ${fmt(policy.maxClassF1Drop)}`,
  };
}

const fmt = (x: number) => x.toFixed(3);

/** The served model may know other labels than the candidate: score it in the union of both label sets. */
function metricsInLabelSpace(
  trueLabels: readonly string[],
  probabilities: Float32Array[],
  modelLabels: string[],
  labels: string[],
) {
  const space = [...labels, ...modelLabels.filter((label) => !labels.includes(label))];
  const column = modelLabels.map((label) => space.indexOf(label));
  const mapped = probabilities.map((p) => {
    const out = new Float32Array(space.length);
    p.forEach((value, i) => {
      out[column[i] ?? 0] = value;
    });
    return out;
  });
  return computeMetrics(
    trueLabels.map((label) => space.indexOf(label)),
    mapped,
    space,
  );
}

async function publish(
  deps: CoreDeps,
  job: Job,
  task: Task,
  trained: TrainedClassifier,
  promotion: PromotionDecision,
  extra: {
    seed: number;
    data: TrainingSet['report'];
    earlierMetrics: Metrics | undefined;
    timingsMs: Record<string, number>;
  },
): Promise<ModelCard> {
  const version = job.modelVersion;
  const already = await findCard(deps, task.name, version);
  if (already) {
    if (already.jobId !== job.id) {
      throw new GraftError('CONFLICT', `Model version ${version} already belongs to job ${already.jobId}.`);
    }
    return already; // a retried delivery after the card was written: the version stands as it is
  }
  const { onnx } = trained;
  await deps.store.put(storageKeys.modelFile(task.name, version), onnx, {
    contentType: 'application/octet-stream',
  });
  const card: ModelCard = {
    task: task.name,
    version,
    jobId: job.id,
    createdAt: nowIso(deps),
    backbone: { ...(await resolveBackbone(deps, task.backbone)) },
    strategy: trained.strategy,
    labels: trained.labels,
    datasets: job.datasets,
    rows: { train: extra.data.newRows + extra.data.rehearsedRows, validation: extra.data.validationRows },
    data: extra.data,
    metrics: { ...trained.metrics },
    ...(extra.earlierMetrics ? { earlierMetrics: { ...extra.earlierMetrics } } : {}),
    hyperparameters: { ...trained.hyperparameters },
    training: {
      requestedStrategy: job.strategy ?? task.strategy,
      candidates: trained.candidates,
      ...(trained.selection ? { selection: trained.selection } : {}),
      ...(trained.selfTraining ? { selfTraining: trained.selfTraining } : {}),
      seed: extra.seed,
      epochs: trained.epochs,
      temperature: trained.temperature,
      history: trained.history,
    },
    parity: trained.parity,
    promotion,
    model: { sha256: createHash('sha256').update(onnx).digest('hex'), bytes: onnx.byteLength },
    timingsMs: extra.timingsMs,
  };
  try {
    await writeJson(deps.store, storageKeys.modelCard(task.name, version), card, { ifNoneMatch: '*' });
  } catch (err) {
    if (!isCode(err, 'PRECONDITION_FAILED')) throw err;
    return (await findCard(deps, task.name, version)) ?? card;
  }
  return card;
}
