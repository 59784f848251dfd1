// `npm run bench`: speed and memory as measured facts, each against a reference measured in the same run.
// Prints a table and writes bench/results.json. Flags: --quick (one short repeat, to check the bench itself),
// --only=1,2,4,6 (items to run). Not part of `npm test`.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { apiClient } from '../eval/client.js';
import { loadTextDataset, type Rows } from '../eval/datasets.js';
import { DirObjectStore } from '../src/adapters/local/dir-object-store.js';
import { softmax } from '../src/engine/calibration.js';
import { HASH_NGRAMS, HashNgramsFeaturizer, type SparseVector } from '../src/engine/hash-ngrams.js';
import { computeMetrics } from '../src/engine/metrics.js';
import { Predictor } from '../src/engine/predictor.js';
import { balancedClassWeights } from '../src/engine/softmax-head.js';
import { stratifiedSplit } from '../src/engine/split.js';
import { DEFAULT_HYPERPARAMETERS } from '../src/engine/train.js';
import { fitLogistic } from '../src/engine/train-logistic.js';
import { type ChildServer, startChildServer } from '../test/support/child-server.js';
import { makeTextDataset, SHARED_DIR, toJsonl } from '../test/support/fixtures.js';
import { type ColdStartCase, coldStartBench } from './cold-start.js';
import { embeddingsBench, writeMiniLm } from './embeddings.js';
import {
  closedLoop,
  interleaved,
  type LoadResult,
  measured,
  medianOf,
  postLoad,
  type RepeatedLoad,
  type Row,
  table,
  writeNpy,
} from './lib.js';

const args = process.argv.slice(2);
const QUICK = args.includes('--quick');
const ONLY = args
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',')
  .map(Number);
const wants = (item: number) => !ONLY || ONLY.includes(item);
const LOAD = QUICK
  ? { repeats: 1, durationMs: 1000, warmUpMs: 500 }
  : { repeats: 3, durationMs: 3000, warmUpMs: 1500 };
const TRAIN_REPEATS = QUICK ? 1 : 3;
const API_KEY = 'bench-admin-key-0123456789';
const RESULTS = path.resolve(import.meta.dirname, 'results.json');

interface SklearnRun {
  fitSeconds: number[];
  accuracy: number;
  macroF1: number;
  iterations: number;
  converged: boolean;
  sklearn: string;
}

interface Example {
  text: string;
  label: string;
}

const rows: Row[] = [];
const log = (message: string) => process.stderr.write(`${message}\n`);
const mib = (bytes: number) => bytes / 2 ** 20;

const examples = ({ inputs, labels }: Rows): Example[] =>
  inputs.map((text, i) => ({ text, label: labels[i] as string }));

/** banking77 from ../shared when this checkout has it (CI does), else a synthetic set of the same shape. */
async function loadDataset(): Promise<{ name: string; train: Example[]; test: Example[] }> {
  if (existsSync(path.join(SHARED_DIR, 'datasets', 'banking77', 'train.jsonl'))) {
    const { train, test } = await loadTextDataset(SHARED_DIR, 'banking77');
    return { name: 'banking77', train: examples(train), test: examples(test) };
  }
  const labels = Array.from({ length: 77 }, (_, i) => `intent-${i}`);
  const all = makeTextDataset({ labels, perLabel: 170 }).map((r) => ({ ...r, text: `${r.text} ${r.label}` }));
  log('../shared/datasets/banking77 is missing: using a synthetic 77-label dataset');
  return {
    name: 'synthetic-77',
    train: all.filter((_, i) => i % 5 !== 0),
    test: all.filter((_, i) => i % 5 === 0),
  };
}

function startServer(dataDir: string, env: Record<string, string>) {
  return startChildServer({
    script: 'bench/serve.ts',
    env: { GRAFT_DATA_DIR: dataDir, GRAFT_API_KEY: API_KEY, GRAFT_LOG_LEVEL: 'error', ...env },
  });
}

/** Item 6b, and the model the others serve: banking77 trained by the real worker inside a server process. */
async function trainModel(dataDir: string, dataset: { train: Example[] }) {
  const server = await startServer(dataDir, { BENCH_WORKER: 'on', BENCH_MICRO_BATCH: 'off' });
  try {
    const idle = server.rss();
    const api = apiClient(server.url, API_KEY);
    await api.put('/v1/tasks/bench', {});
    const started = Date.now();
    const uploaded = await api.postNdjson<{ jobId: string }>(
      '/v1/tasks/bench/datasets',
      toJsonl(dataset.train),
    );
    const job = await api.waitForJob(uploaded.jobId);
    if (job.status !== 'succeeded')
      throw new Error(`the bench model did not train: ${JSON.stringify(job.error)}`);
    const seconds = (Date.now() - started) / 1000;
    // VmHWM, the process's peak RSS so far: nothing to sample while the job runs.
    const peak = server.peakRss();
    rows.push({
      item: '6',
      what: `worker peak RSS while training ${dataset.train.length} rows (upload to model, ${seconds.toFixed(1)} s)`,
      value: mib(peak),
      unit: 'MiB',
      reference: { what: 'same process idle', value: mib(idle) },
      ratio: peak / idle,
      note: `accuracy on the validation rows ${((job.metrics?.accuracy as number) * 100).toFixed(1)}%`,
    });
    return { version: job.modelVersion };
  } finally {
    await server.stop();
  }
}

async function modelBytes(dataDir: string, version: string, task = 'bench'): Promise<Uint8Array> {
  const store = new DirObjectStore(path.join(dataDir, 'store'));
  return (await store.get(`tasks/${task}/models/${version}/model.onnx`)).body;
}

const serverLoad = (
  server: ChildServer,
  route: string,
  body: string,
  connections: number,
  durationMs: number,
) => postLoad(`${server.url}${route}`, API_KEY, body, { connections, durationMs });

interface TextTask {
  task: string;
  version: string;
  /** Size of its model file. */
  mb: number;
}

/**
 * A text model (items 1 and 5): a MiniLM-shaped backbone `layers` deep with a logistic head on 40 rows, trained
 * through the API.
 */
async function trainTextTask(
  dataDir: string,
  dataset: { train: Example[] },
  { task, layers }: { task: string; layers: number },
): Promise<TextTask> {
  const backbone = `minilm-l${layers}`;
  const dir = await writeMiniLm(dataDir, backbone, { layers });
  const server = await startServer(dataDir, { BENCH_WORKER: 'on', BENCH_MICRO_BATCH: 'off' });
  try {
    const api = apiClient(server.url, API_KEY);
    await api.put(`/v1/backbones/${backbone}`, { kind: 'text', source: { dir } });
    await api.put(`/v1/tasks/${task}`, { backbone, strategy: 'logistic' });
    const labels = [...new Set(dataset.train.map((r) => r.label))].slice(0, 4);
    const rows = labels.flatMap((label) => dataset.train.filter((r) => r.label === label).slice(0, 10));
    log(`training text task ${task} (${backbone}) on ${rows.length} rows`);
    const uploaded = await api.postNdjson<{ jobId: string }>(`/v1/tasks/${task}/datasets`, toJsonl(rows));
    const job = await api.waitForJob(uploaded.jobId, { intervalMs: 300 });
    if (job.status !== 'succeeded') throw new Error(JSON.stringify(job.error));
    const mb = (await modelBytes(dataDir, job.modelVersion, task)).byteLength / 2 ** 20;
    return { task, version: job.modelVersion, mb };
  } finally {
    await server.stop();
  }
}

/**
 * Items 1, 2 and 6a. The direct session, the server, (for item 2) the server without micro-batching and (at batch 1)
 * the HTTP floor take turns run by run, each server in its own process (idle while the others run). Then, when
 * given, the text model at batch 1: the same server against its own direct session.
 */
async function servingBench(dataDir: string, version: string, texts: string[], text?: TextTask) {
  const predictor = await Predictor.load(await modelBytes(dataDir, version));
  const on = await startServer(dataDir, { BENCH_WORKER: 'off' });
  const off = wants(2)
    ? await startServer(dataDir, { BENCH_WORKER: 'off', BENCH_MICRO_BATCH: 'off' })
    : undefined;
  const startRss = on.rss();
  const route = '/v1/tasks/bench/predict';
  // The floor answers as many bytes as the server's batch-1 answer (the size of its JSON hardly varies by text).
  const answerBytes = (
    await (
      await fetch(`${on.url}${route}`, {
        method: 'POST',
        headers: { authorization: `Bearer ${API_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ inputs: texts.slice(0, 1) }),
      })
    ).arrayBuffer()
  ).byteLength;
  const floor = wants(1)
    ? await startChildServer({
        script: 'bench/http-floor.ts',
        env: { FLOOR_BODY_BYTES: String(answerBytes) },
      })
    : undefined;
  let peakRss = startRss;
  const results = new Map<string, Record<string, RepeatedLoad>>();
  let textResults: Record<string, RepeatedLoad> | undefined;
  try {
    for (const batch of [1, 32]) {
      const inputs = texts.slice(0, batch);
      const body = JSON.stringify({ inputs });
      for (const concurrency of [1, 8, 32]) {
        const contenders: Record<string, (ms: number) => Promise<LoadResult>> = {
          direct: (ms) => closedLoop(() => predictor.predict(inputs), { concurrency, durationMs: ms }),
          server: (ms) => serverLoad(on, route, body, concurrency, ms),
        };
        if (off && batch === 1 && concurrency === 32)
          contenders.off = (ms) => serverLoad(off, route, body, concurrency, ms);
        if (floor && batch === 1) contenders.floor = (ms) => serverLoad(floor, route, body, concurrency, ms);
        results.set(
          `${batch}/${concurrency}`,
          await interleaved(contenders, LOAD, (name, repeat) =>
            log(
              `items 1-2: ${name}, batch ${batch}, ${concurrency} concurrent, run ${repeat + 1}/${LOAD.repeats}`,
            ),
          ),
        );
      }
    }
    // item 6 is the hash model's server: taken before the text model is loaded into it
    peakRss = on.peakRss();
    if (text && wants(1)) {
      const direct = await Predictor.load(await modelBytes(dataDir, text.version, text.task));
      try {
        const inputs = texts.slice(0, 1);
        const body = JSON.stringify({ inputs });
        const once = { concurrency: 1 };
        textResults = await interleaved(
          {
            direct: (ms) => closedLoop(() => direct.predict(inputs), { ...once, durationMs: ms }),
            server: (ms) => serverLoad(on, `/v1/tasks/${text.task}/predict`, body, 1, ms),
          },
          LOAD,
          (name, repeat) => log(`item 1: ${name}, text model, batch 1, run ${repeat + 1}/${LOAD.repeats}`),
        );
      } finally {
        await direct.dispose();
      }
    }
  } finally {
    await predictor.dispose();
    await on.stop();
    await off?.stop();
    await floor?.stop();
  }
  rows.push({
    item: '6',
    what: 'server peak RSS, model loaded, after the item-1 load',
    value: mib(peakRss),
    unit: 'MiB',
    reference: { what: 'same process at start', value: mib(startRss) },
    ratio: peakRss / startRss,
  });

  const predictRows = (what: string, s: RepeatedLoad, d: RepeatedLoad, target: boolean) => {
    const ratio = medianOf(s.requestsPerSecond) / medianOf(d.requestsPerSecond);
    rows.push({
      item: '1',
      what,
      value: s.requestsPerSecond,
      unit: 'req/s',
      reference: { what: 'direct session', value: d.requestsPerSecond },
      ratio,
      ...(target ? { target: 'overhead <= 15% (ratio >= 0.85)', pass: ratio >= 0.85 } : {}),
      ...(s.errors > 0 ? { note: `${s.errors} errors` } : {}),
    });
    rows.push({
      item: '1',
      what: '  latency p50 / p99 (autocannon: whole ms)',
      value: `${wholeMs(s.p50Ms.median)} / ${wholeMs(s.p99Ms.median)}`,
      unit: 'ms',
      reference: { what: 'direct', value: `${d.p50Ms.median.toFixed(2)} / ${d.p99Ms.median.toFixed(2)}` },
    });
  };
  for (const batch of [1, 32]) {
    for (const concurrency of [1, 8, 32]) {
      const { server: s, direct: d, floor: f } = results.get(`${batch}/${concurrency}`) ?? {};
      if (!s || !d) continue;
      const clients = `${concurrency} client${concurrency > 1 ? 's' : ''}`;
      predictRows(`predict, batch ${batch}, ${clients}: requests/s`, s, d, batch === 1);
      if (!f) continue;
      rows.push({
        item: '1',
        what: `  HTTP floor, ${clients}: requests/s`,
        value: f.requestsPerSecond,
        unit: 'req/s',
        ...(f.errors > 0 ? { note: `${f.errors} errors` } : {}),
      });
      if (concurrency !== 1) continue;
      // One client waits for each answer: the server's time per request is at best the floor's plus the direct
      // session's, so the platform's own cost is what separates it from that sum.
      const inSeries = 1 / (1 / medianOf(f.requestsPerSecond) + 1 / medianOf(d.requestsPerSecond));
      rows.push({
        item: '1',
        what: '  server vs HTTP floor + direct session in series',
        value: s.requestsPerSecond,
        unit: 'req/s',
        reference: { what: '1 / (1/floor + 1/direct)', value: inSeries },
        ratio: medianOf(s.requestsPerSecond) / inSeries,
        note: `HTTP floor: node:http in its own process answering ${answerBytes} bytes of JSON (the size of the batch-1 answer) with no work, under the same autocannon settings. With one client, per request: server ${(1e6 / medianOf(s.requestsPerSecond)).toFixed(0)} µs, floor ${(1e6 / medianOf(f.requestsPerSecond)).toFixed(0)} µs, direct session ${(1e6 / medianOf(d.requestsPerSecond)).toFixed(0)} µs. The direct session has both cores to itself; the server shares them with the load generator.`,
      });
    }
  }
  if (text && textResults?.server && textResults.direct) {
    predictRows(
      `predict, text model (MiniLM-L6 shape, ${text.mb.toFixed(0)} MB), batch 1, 1 client: requests/s`,
      textResults.server,
      textResults.direct,
      true,
    );
  }

  // item 2: the same server without micro-batching, at 32 clients sending one input each
  const { server: withIt, off: without } = results.get('1/32') ?? {};
  if (withIt && without) {
    const throughput = medianOf(withIt.requestsPerSecond) / medianOf(without.requestsPerSecond);
    const p99 = medianOf(withIt.p99Ms) / medianOf(without.p99Ms);
    rows.push({
      item: '2',
      what: 'micro-batching on, 32 clients x 1 input: requests/s',
      value: withIt.requestsPerSecond,
      unit: 'req/s',
      reference: { what: 'off', value: without.requestsPerSecond },
      ratio: throughput,
      target: '>= 2x',
      pass: throughput >= 2,
    });
    rows.push({
      item: '2',
      what: '  p99 latency',
      value: withIt.p99Ms,
      unit: 'ms',
      reference: { what: 'off', value: without.p99Ms },
      ratio: p99,
      target: '<= 2x',
      pass: p99 <= 2,
    });
  }
}

/** Item 4: time to a trained head and its accuracy, against scikit-learn on the same hashed features. */
async function trainingBench(dataset: { train: Example[]; test: Example[] }) {
  const labels = [...new Set(dataset.train.map((r) => r.label))].sort();
  const index = new Map(labels.map((label, i) => [label, i]));
  const featurizer = new HashNgramsFeaturizer(HASH_NGRAMS);
  const { train, validation } = stratifiedSplit(dataset.train, { validationFraction: 0.2, seed: 42 });
  const featurize = (set: Example[]) => ({
    rows: set.map((r) => featurizer.featurize(r.text)),
    labels: Int32Array.from(set.map((r) => index.get(r.label) ?? 0)),
  });
  const trainSet = featurize(train);
  const validationSet = featurize(validation);
  const testSet = featurize(dataset.test.filter((r) => index.has(r.label)));

  const trainHead = () =>
    fitLogistic(trainSet, validationSet, {
      dims: HASH_NGRAMS.dims,
      classes: labels.length,
      hyperparameters: DEFAULT_HYPERPARAMETERS,
      classWeights: balancedClassWeights(trainSet.labels, labels.length),
      seed: 42,
    });
  const python = findSklearn();
  const dir = await mkdtemp(path.join(os.tmpdir(), 'graft-bench-features-'));
  try {
    if (python) {
      await exportCsr(dir, 'train', trainSet.rows, trainSet.labels);
      await exportCsr(dir, 'test', testSet.rows, testSet.labels);
      await writeFile(path.join(dir, 'meta.json'), JSON.stringify({ dims: HASH_NGRAMS.dims, labels }));
    }
    // one fit each in turn (the Python process starts and loads the features outside the timed fit)
    log('item 4: Graft fitLogistic (warm-up)');
    let result = await trainHead();
    const seconds: number[] = [];
    const sk: SklearnRun[] = [];
    for (let i = 0; i < TRAIN_REPEATS; i++) {
      log(`item 4: Graft fitLogistic ${i + 1}/${TRAIN_REPEATS}`);
      const t0 = performance.now();
      result = await trainHead();
      seconds.push((performance.now() - t0) / 1000);
      if (python) {
        log(`item 4: scikit-learn LogisticRegression ${i + 1}/${TRAIN_REPEATS} (${python})`);
        const out = execFileSync(
          python,
          [path.resolve(import.meta.dirname, 'sklearn_reference.py'), dir, '1'],
          {
            encoding: 'utf8',
            maxBuffer: 1 << 20,
          },
        );
        sk.push(JSON.parse(out.trim().split('\n').at(-1) ?? '{}') as SklearnRun);
      }
    }
    const logits = result.head.logits(testSet.rows);
    const graft = computeMetrics(
      Array.from(testSet.labels),
      logits.map((z) => softmax(z)),
      labels,
    );
    const graftSeconds = measured(seconds);
    const what = `train a head on ${trainSet.rows.length} rows x ${labels.length} labels (${HASH_NGRAMS.dims} hashed features)`;
    const reference = sk[0];
    if (!reference) {
      rows.push({
        item: '4',
        what,
        value: graftSeconds,
        unit: 's',
        note: `test accuracy ${(graft.accuracy * 100).toFixed(2)}%. The scikit-learn reference was skipped: python3 with scikit-learn, scipy and numpy is not installed (Debian: apt-get install python3-sklearn).`,
      });
      console.log('\nitem 4: scikit-learn reference skipped (python3-sklearn is not installed)');
      return;
    }
    const skSeconds = measured(sk.flatMap((run) => run.fitSeconds));
    const timeRatio = graftSeconds.median / skSeconds.median;
    const accuracyPoints = (graft.accuracy - reference.accuracy) * 100;
    rows.push({
      item: '4',
      what,
      value: graftSeconds,
      unit: 's',
      reference: { what: `scikit-learn ${reference.sklearn} LogisticRegression(C=10)`, value: skSeconds },
      ratio: timeRatio,
      target: 'no more time (<= 1x)',
      pass: timeRatio <= 1,
      note: `scikit-learn: ${reference.iterations} lbfgs iterations${reference.converged ? '' : ' (not converged)'}, its BLAS may use every core; Graft trains on one thread with early stopping on the validation rows (epoch ${result.bestEpoch}).`,
    });
    rows.push({
      item: '4',
      what: `  test accuracy (${testSet.rows.length} rows)`,
      value: graft.accuracy * 100,
      unit: '%',
      reference: { what: 'scikit-learn', value: reference.accuracy * 100 },
      ratio: graft.accuracy / reference.accuracy,
      target: 'within 0.5 point',
      pass: accuracyPoints >= -0.5,
      note: `macro-F1 ${(graft.macroF1 * 100).toFixed(2)} vs ${(reference.macroF1 * 100).toFixed(2)}; difference ${accuracyPoints.toFixed(2)} points`,
    });
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function findSklearn(): string | undefined {
  for (const candidate of ['/usr/bin/python3', 'python3']) {
    const probe = spawnSync(candidate, ['-c', 'import sklearn, scipy, numpy'], { stdio: 'ignore' });
    if (probe.status === 0) return candidate;
  }
  return undefined;
}

async function exportCsr(dir: string, name: string, rowsOf: readonly SparseVector[], labels: Int32Array) {
  const nnz = rowsOf.reduce((sum, row) => sum + row.indices.length, 0);
  const indptr = new Int32Array(rowsOf.length + 1);
  const indices = new Int32Array(nnz);
  const values = new Float32Array(nnz);
  let at = 0;
  rowsOf.forEach((row, i) => {
    indices.set(row.indices, at);
    values.set(row.values, at);
    at += row.indices.length;
    indptr[i + 1] = at;
  });
  await writeNpy(path.join(dir, `${name}-indptr.npy`), indptr);
  await writeNpy(path.join(dir, `${name}-indices.npy`), indices);
  await writeNpy(path.join(dir, `${name}-values.npy`), values);
  await writeNpy(path.join(dir, `${name}-labels.npy`), labels);
}

async function main() {
  const started = Date.now();
  const dataset = await loadDataset();
  log(`dataset ${dataset.name}: ${dataset.train.length} training rows, ${dataset.test.length} test rows`);
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'graft-bench-'));
  try {
    const trained =
      wants(1) || wants(2) || wants(5) || wants(6) ? await trainModel(dataDir, dataset) : undefined;
    if (trained && (wants(1) || wants(2) || wants(6))) {
      const text = wants(1)
        ? await trainTextTask(dataDir, dataset, { task: 'text-l6', layers: 6 }).catch((err: Error) => {
            rows.push({
              item: '1',
              what: 'predict, text model',
              value: 'not measured',
              unit: '',
              note: `the text task could not be trained: ${err.message.slice(0, 300)}`,
            });
            return undefined;
          })
        : undefined;
      await servingBench(
        dataDir,
        trained.version,
        dataset.test.map((r) => r.text),
        text,
      );
    }
    if (wants(3)) {
      rows.push(
        ...(await embeddingsBench({
          root: dataDir,
          texts: dataset.test.map((r) => r.text),
          server: () => startServer(dataDir, { BENCH_WORKER: 'off' }),
          apiKey: API_KEY,
          load: LOAD,
        })),
      );
    }
    if (wants(4)) await trainingBench(dataset);
    if (wants(5)) {
      const cases: ColdStartCase[] = [];
      const input = dataset.test[0]?.text ?? 'hello';
      if (trained) {
        const mb = (await modelBytes(dataDir, trained.version)).byteLength / 2 ** 20;
        cases.push({
          task: 'bench',
          what: `built-in backbone (${mb.toFixed(0)} MB model)`,
          input,
          targetMs: 1000,
        });
      }
      try {
        const text = await trainTextTask(dataDir, dataset, { task: 'text', layers: 12 });
        cases.push({
          task: 'text',
          what: `MiniLM-L12-shaped text model (${text.mb.toFixed(0)} MB)`,
          input,
          targetMs: 3000,
        });
      } catch (err) {
        rows.push({
          item: '5',
          what: 'cold start, text model',
          value: 'not measured',
          unit: '',
          note: `the text task could not be trained: ${(err as Error).message.slice(0, 300)}`,
        });
      }
      if (cases.length > 0) {
        rows.push(...(await coldStartBench({ dataDir, cases, apiKey: API_KEY, repeats: QUICK ? 1 : 5 })));
      }
    }
  } finally {
    await rm(dataDir, { recursive: true, force: true });
  }

  const cpus = os.cpus();
  const machine = {
    cpus: cpus.length,
    cpu: cpus[0]?.model ?? 'unknown',
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    node: process.version,
    platform: `${process.platform}-${process.arch}`,
  };
  const settings = { quick: QUICK, load: LOAD, trainRepeats: TRAIN_REPEATS, dataset: dataset.name };
  console.log(`\nGraft bench (${machine.cpus} x ${machine.cpu}, Node ${machine.node}, ${dataset.name})\n`);
  console.log(table(rows.sort((a, b) => Number(a.item) - Number(b.item))));
  await writeFile(
    RESULTS,
    `${JSON.stringify({ generatedAt: new Date().toISOString(), seconds: (Date.now() - started) / 1000, machine, settings, rows }, null, 2)}\n`,
  );
  console.log(
    `\nwritten to ${path.relative(process.cwd(), RESULTS)} in ${((Date.now() - started) / 1000).toFixed(0)} s`,
  );
}

await main();

/** autocannon measures latency in whole milliseconds: 0 is "under 1 ms". */
function wholeMs(ms: number): string {
  return ms === 0 ? '<1' : ms.toFixed(0);
}
