// `npm run eval`: the real job path of a local Graft on the shared datasets. Starts the platform in this process on
// 127.0.0.1 (random port, temporary data directory, fixed admin key), and for every run creates a task, uploads
// the training rows, waits for the job, reads the model card and predicts every test row over HTTP. Prints the
// figures beside the references of ../shared/datasets/SOURCES.md and writes eval/results.json and
// eval/figures/<dataset>.svg. See `npm run eval -- --help`.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { startLocalPlatform } from '../src/adapters/local/platform.js';
import { loadLocalConfig } from '../src/config.js';
import { type EvalOptions, parseEvalArgs, TEXT_DATASETS, USAGE, UsageError } from './args.js';
import { ApiError, apiClient, type JobView } from './client.js';
import { type DatasetSplits, loadFashionMnistDataset, loadTextDataset, pick } from './datasets.js';
import { planFashion, registerFashionBackbones, shuffleSeeds } from './fashion.js';
import { duration, seconds, shotsLabel, table } from './format.js';
import { SOURCES_FILE } from './references.js';
import { Runner, type RunRecord, type RunSpec } from './runner.js';
import { deriveSeed, randomSubset, stratifiedSample } from './sample.js';
import { type DatasetPlan, planText } from './text.js';

const repoRoot = path.resolve(import.meta.dirname, '..');
const ADMIN_KEY = 'graft-eval-admin-key-local-only';
/** --quick: training rows per class kept of a text dataset, test rows kept, Fashion-MNIST images read. */
const QUICK = { textPerClass: 16, textTest: 300, imageTrain: 6000, imageTest: 1000 };

const MAX_LABELS_PER_RUN_CONFUSION = 12;

const out = (line = '') => process.stdout.write(`${line}\n`);

async function main(): Promise<number> {
  let options: EvalOptions;
  try {
    options = parseEvalArgs(process.argv.slice(2));
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`eval: ${err.message}\n\n${USAGE}`);
    return 2;
  }
  if (options.help) {
    out(USAGE);
    return 0;
  }
  const sharedDir = path.resolve(repoRoot, '../shared');
  const datasetsDir = path.join(sharedDir, 'datasets');
  const missing = existsSync(datasetsDir)
    ? options.datasets
        .filter((d) => !existsSync(path.join(datasetsDir, d)))
        .map((d) => path.join(datasetsDir, d))
    : [datasetsDir];
  if (missing.length > 0) {
    process.stderr.write(
      `eval: missing ${missing.join(', ')}.\n` +
        `The evaluation reads the shared datasets from ../shared beside the checkout (see ${SOURCES_FILE}); ` +
        'put them there, or choose others with --dataset.\n',
    );
    return 1;
  }
  if (
    options.datasets.includes('fashion-mnist') &&
    !existsSync(path.join(sharedDir, 'models/mnist-8/mnist-8.onnx'))
  ) {
    process.stderr.write(
      `eval: ${path.join(sharedDir, 'models/mnist-8/mnist-8.onnx')} is missing (needed for fashion-mnist).\n`,
    );
    return 1;
  }

  const started = Date.now();
  const startedAt = new Date(started).toISOString();
  const code = await codeVersion();
  out(
    `Graft evaluation: ${options.datasets.join(', ')}${options.quick ? ' (QUICK: small subsets, a smoke run)' : ''}; ` +
      `${os.cpus().length} CPU(s), Node ${process.version}; base seed ${options.seed}, ${options.draws} draw(s) per few-shot figure`,
  );

  // Data first, so that a bad file fails before the platform starts.
  const loaded: DatasetSplits[] = [];
  for (const name of options.datasets) {
    const t = Date.now();
    let data: DatasetSplits;
    if (name === 'fashion-mnist') {
      data = await loadFashionMnistDataset(
        sharedDir,
        options.quick ? { trainLimit: QUICK.imageTrain, testLimit: QUICK.imageTest } : {},
      );
    } else {
      data = await loadTextDataset(sharedDir, name);
      if (options.quick) {
        const seed = deriveSeed(options.seed, name, 'quick');
        data = {
          ...data,
          train: pick(data.train, stratifiedSample(data.train.labels, QUICK.textPerClass, seed)),
          test: pick(data.test, randomSubset(data.test.labels.length, QUICK.textTest, seed)),
        };
      }
    }
    loaded.push(data);
    out(
      `  loaded ${name}: ${data.train.labels.length} train / ${data.test.labels.length} test rows (${seconds(Date.now() - t)} s)`,
    );
  }

  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'graft-eval-'));
  const config = loadLocalConfig({
    ...pickEnv(['HF_ENDPOINT', 'HF_HUB_OFFLINE', 'HF_TOKEN', 'GRAFT_HF_CACHE_DIR']),
    GRAFT_DATA_DIR: dataDir,
    GRAFT_API_KEY: ADMIN_KEY,
    HOST: '127.0.0.1',
    PORT: '0',
    GRAFT_LOG_LEVEL: process.env.GRAFT_LOG_LEVEL ?? 'error',
  });
  const platform = await startLocalPlatform(config);
  out(`  platform at ${platform.url} (data in ${dataDir})`);
  const api = apiClient(platform.url, ADMIN_KEY);
  const results: Record<string, unknown> = {
    tool: 'npm run eval',
    argv: process.argv.slice(2),
    quick: options.quick,
    startedAt,
    environment: {
      node: process.version,
      platform: `${os.platform()} ${os.arch()}`,
      cpus: os.cpus().length,
      cpuModel: os.cpus()[0]?.model ?? 'unknown',
    },
    code,
    options,
    seeds: {
      base: options.seed,
      subsample:
        'each stratified subsample uses deriveSeed(base, dataset, perClass, draw) (FNV-1a + mulberry32, eval/sample.ts); ' +
        'every run lists its sampleSeed',
      ...(options.quick
        ? { quick: "text: deriveSeed(base, dataset, 'quick'); Fashion-MNIST: the first images" }
        : {}),
      shuffleWeights: options.datasets.includes('fashion-mnist') ? shuffleSeeds(options.seed) : undefined,
      training:
        "each task's training.seed: 42 + draw on all rows (text datasets: one run per seed, the figure is their mean), 42 on subsamples; every run lists its trainingSeed",
    },
    datasets: {} as Record<string, unknown>,
    runs: [] as unknown[],
  };
  const runner = new Runner(api, { seed: options.seed, onJobUpdate: liveStatus });
  let exitCode = 0;
  try {
    if (options.backboneDir || options.backboneHub) {
      const source = options.backboneDir
        ? { dir: path.resolve(options.backboneDir) }
        : { hub: options.backboneHub };
      out(`  registering text backbone "${options.backbone}" from ${JSON.stringify(source)}`);
      await api.put(`/v1/backbones/${options.backbone}`, { kind: 'text', source });
    } else if (options.backbone !== 'hash-ngrams' && options.datasets.some((d) => isText(d))) {
      await api.get(`/v1/backbones/${options.backbone}`); // BACKBONE_NOT_FOUND says what is known
    }
    if (options.datasets.includes('fashion-mnist')) {
      const t = Date.now();
      await registerFashionBackbones(api, sharedDir, dataDir, shuffleSeeds(options.seed));
      out(
        `  registered mnist-8 backbones: features, pixels, features + pixels, ${shuffleSeeds(options.seed).length} shuffled (${seconds(Date.now() - t)} s)`,
      );
    }
    const plans: { plan: DatasetPlan; data: DatasetSplits }[] = loaded.map((data) => ({
      data,
      plan: data.name === 'fashion-mnist' ? planFashion(data, options) : planText(data, options),
    }));
    const total = plans.reduce((sum, p) => sum + p.plan.specs.length, 0);
    out(
      `  ${total} jobs planned: ${plans.map((p) => `${p.plan.dataset} ${p.plan.specs.length}`).join(', ')}`,
    );
    let done = 0;
    const summaries: string[][] = [];
    const figuresDir = path.join(repoRoot, 'eval', 'figures');
    await mkdir(figuresDir, { recursive: true });
    for (const { plan, data } of plans) {
      const datasetStart = Date.now();
      out('');
      out(`== ${plan.dataset} ==`);
      for (const spec of plan.specs) {
        const record = await runner.run(spec, data);
        done++;
        clearLive();
        out(`[${done}/${total} ${duration(Date.now() - started)}] ${describe(spec)}: ${outcome(record)}`);
      }
      const { json, text, svg, summary } = plan.report(runner);
      summaries.push(summary);
      out('');
      out(text);
      const figure = path.join(figuresDir, `${plan.dataset}.svg`);
      await writeFile(figure, svg);
      out(`figure: ${path.relative(repoRoot, figure)}`);
      (results.datasets as Record<string, unknown>)[plan.dataset] = {
        ...json,
        figure: path.relative(repoRoot, figure),
        durationS: (Date.now() - datasetStart) / 1000,
      };
      // Confusion matrices of every run where they are small; the 77-label ones only in the dataset's summary.
      results.runs = [...runner.records.values()].map(({ confusion, labels, ...rest }) =>
        (labels?.length ?? 0) <= MAX_LABELS_PER_RUN_CONFUSION ? { ...rest, labels, confusion } : rest,
      );
      await writeResults(results, started);
    }
    const failed = [...runner.records.values()].filter((r) => r.status !== 'succeeded');
    out('');
    out('Summary (test set, %):');
    out(
      table(
        ['dataset', 'main run', 'accuracy', 'macro-F1', 'strategy', 'job s', 'reference', 'target'],
        summaries,
      ),
    );
    out('');
    out(`Done in ${duration(Date.now() - started)}: ${runner.records.size} jobs, ${failed.length} failed.`);
    if (failed.length > 0) exitCode = 1;
  } catch (err) {
    clearLive();
    process.stderr.write(
      `eval: ${err instanceof ApiError ? err.message : ((err as Error).stack ?? String(err))}\n`,
    );
    exitCode = 1;
  } finally {
    await writeResults(results, started);
    out(`results: eval/results.json`);
    await platform.close();
    await rm(dataDir, { recursive: true, force: true });
  }
  return exitCode;
}

const isText = (dataset: string) => (TEXT_DATASETS as readonly string[]).includes(dataset);

async function writeResults(results: Record<string, unknown>, started: number) {
  results.finishedAt = new Date().toISOString();
  results.durationS = (Date.now() - started) / 1000;
  await writeFile(path.join(repoRoot, 'eval', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
}

/**
 * Which code was measured: the commit, whether src/ differs from it, and a hash of src/ as it was read (the engine
 * changes between runs; figures from different hashes are not comparable).
 */
async function codeVersion() {
  const git = (...args: string[]) => {
    try {
      return execFileSync('git', args, {
        cwd: repoRoot,
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      }).trim();
    } catch {
      return undefined;
    }
  };
  const src = path.join(repoRoot, 'src');
  const files = (await readdir(src, { recursive: true })).filter((f) => f.endsWith('.ts')).sort();
  const hash = createHash('sha256');
  for (const file of files)
    hash
      .update(file)
      .update('\0')
      .update(await readFile(path.join(src, file)))
      .update('\0');
  const status = git('status', '--porcelain', '--', 'src');
  return {
    commit: git('rev-parse', 'HEAD') ?? 'unknown',
    srcChangedSinceCommit: status === undefined ? 'unknown' : status !== '',
    srcSha256: hash.digest('hex'),
  };
}

function pickEnv(names: readonly string[]): Record<string, string> {
  return Object.fromEntries(names.flatMap((n) => (process.env[n] ? [[n, process.env[n] as string]] : [])));
}

function describe(spec: RunSpec): string {
  return [
    spec.dataset,
    spec.backbone,
    spec.strategy,
    shotsLabel(spec.shots),
    ...(spec.shots === 'all' ? [] : [`draw ${spec.draw}`]),
    ...(spec.augment ? ['augmented'] : []),
  ].join(' ');
}

function outcome(r: RunRecord): string {
  if (r.status !== 'succeeded') {
    return `FAILED ${r.error?.code ?? r.status}: ${r.error?.message ?? ''}${r.error?.request ? ` (${r.error.request})` : ''}`;
  }
  const acc = ((r.accuracy ?? 0) * 100).toFixed(2);
  const f1 = ((r.macroF1 ?? 0) * 100).toFixed(2);
  const chose = r.spec.strategy === 'auto' ? ` chose ${r.chosenStrategy}` : '';
  const warn = r.warnings?.length ? ` [${r.warnings.join('; ')}]` : '';
  return (
    `acc ${acc} macro-F1 ${f1}${chose}; ${r.trainRows} rows, job ${seconds(r.wallMs.job)} s ` +
    `(card ${seconds(r.card?.timingsMs?.totalMs)} s), predict ${seconds(r.wallMs.predict)} s${warn}`
  );
}

// A live status line while a job runs, on a terminal only.
let live = false;
function liveStatus(spec: RunSpec, job: JobView) {
  if (!process.stdout.isTTY) return;
  const stage =
    job.status === 'running' ? `${job.stage ?? ''} ${Math.round(job.progress * 100)}%` : job.status;
  process.stdout.write(`\r\x1b[K  … ${describe(spec)}: ${stage}`);
  live = true;
}
function clearLive() {
  if (live && process.stdout.isTTY) process.stdout.write('\r\x1b[K');
  live = false;
}

process.exitCode = await main();
