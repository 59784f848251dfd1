// Item 5 of `npm run bench`: process start to first prediction of the API Lambda (module load, model fetched
// from S3, first inference), against a bare `node` process started and ended in the same run.
import { execFile } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { CreateBucketCommand } from '@aws-sdk/client-s3';
import { createAwsClients } from '../src/adapters/aws/deps.js';
import { S3ObjectStore } from '../src/adapters/aws/s3-object-store.js';
import { DirObjectStore } from '../src/adapters/local/dir-object-store.js';
import { sha256Hex } from '../src/core/auth.js';
import { startLocalAws } from '../test/fixtures/aws/local-aws.js';
import { type Measured, measured, type Row } from './lib.js';

const ROOT = path.resolve(import.meta.dirname, '..');
const run = promisify(execFile);
const BUCKET = 'graft-bench';

export interface ColdStartCase {
  task: string;
  what: string;
  input: string;
  targetMs: number;
}

/** Bundles the entry like the CDK's NodejsFunction (esbuild, ESM, onnxruntime-node left out as a native module). */
async function bundle(): Promise<string> {
  const { build } = await import('esbuild');
  // Inside node_modules, so that the bundle resolves onnxruntime-node as the deployed function does.
  const outdir = path.join(ROOT, 'node_modules', '.cache', 'graft-bench');
  await mkdir(outdir, { recursive: true });
  const outfile = path.join(outdir, 'cold-start.mjs');
  await build({
    entryPoints: [path.join(ROOT, 'bench', 'cold-start-entry.ts')],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: 'node20',
    external: ['onnxruntime-node'],
    banner: {
      js: "import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);",
    },
    logLevel: 'error',
  });
  return outfile;
}

export async function coldStartBench({
  dataDir,
  cases,
  apiKey,
  repeats,
}: {
  dataDir: string;
  cases: ColdStartCase[];
  apiKey: string;
  repeats: number;
}): Promise<Row[]> {
  const aws = await startLocalAws();
  const clients = createAwsClients({ endpoint: aws.endpoint }, { credentials: aws.credentials });
  try {
    await clients.s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    const local = new DirObjectStore(path.join(dataDir, 'store'));
    const s3 = new S3ObjectStore(clients.s3, BUCKET);
    for (const { task } of cases) {
      for (const key of await local.list(`tasks/${task}/`)) {
        if (key.includes('/datasets/') || key.includes('/incoming/')) continue;
        await s3.put(key, (await local.get(key)).body);
      }
    }
    const bundled = await bundle();
    const env = {
      ...process.env,
      ...aws.env,
      GRAFT_BUCKET: BUCKET,
      GRAFT_QUEUE_URL: `${aws.endpoint}/123456789012/graft-bench`,
      GRAFT_AWS_ENDPOINT: aws.endpoint,
      GRAFT_API_KEY_SHA256: sha256Hex(apiKey),
      GRAFT_LOG_LEVEL: 'silent',
      BENCH_API_KEY: apiKey,
    };
    const bare: number[] = [];
    const runs = new Map<string, { total: number[]; module: number[] }>();
    // taking turns: a bare node start, then one cold start of each case
    for (let i = 0; i <= repeats; i++) {
      // both clocks start with their process (performance.timeOrigin): how long a bare node takes to its first line
      const bare0 = await run(process.execPath, ['-e', 'process.stdout.write(String(performance.now()))']);
      const bareMs = Number(bare0.stdout);
      if (i > 0) bare.push(bareMs);
      for (const c of cases) {
        process.stderr.write(
          `item 5: cold start of ${c.task}, ${i === 0 ? 'warm-up' : `run ${i}/${repeats}`}\n`,
        );
        // asynchronously: the local S3 server answering the child runs in this process
        const { stdout: out } = await run(process.execPath, [bundled], {
          env: { ...env, BENCH_TASK: c.task, BENCH_INPUT: c.input },
        });
        const result = JSON.parse(out.trim().split('\n').at(-1) ?? '{}');
        if (result.status !== 200) throw new Error(`cold start of ${c.task} answered ${result.status}`);
        if (i === 0) continue; // the first run also warms the disk cache and the local S3 server
        const entry = runs.get(c.task) ?? { total: [], module: [] };
        entry.total.push(result.firstPredictionMs);
        entry.module.push(result.moduleMs);
        runs.set(c.task, entry);
      }
    }
    const reference: Measured = measured(bare);
    return cases.map((c) => {
      const entry = runs.get(c.task) ?? { total: [], module: [] };
      const total = measured(entry.total);
      return {
        item: '5',
        what: `cold start to first prediction, ${c.what}`,
        value: total,
        unit: 'ms',
        reference: { what: 'bare node to its first line', value: reference },
        ratio: total.median / reference.median,
        target: `<= ${c.targetMs} ms`,
        pass: total.median <= c.targetMs,
        note: `Lambda handler bundled with esbuild; module load ${measured(entry.module).median.toFixed(0)} ms of it; model fetched from a local S3 server (fauxqs on 127.0.0.1), so no network latency`,
      } satisfies Row;
    });
  } finally {
    for (const client of Object.values(clients)) client.destroy();
    await aws.stop();
  }
}
