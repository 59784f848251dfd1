import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { ENV } from '../src/config.js';
import { functionUrlEvent } from './fixtures/aws/events.js';

const run = promisify(execFile);
const LAMBDA_UNZIPPED_LIMIT = 60 * 1024 * 1024; // the budget (Lambda's own is 250 MB)
const outDirs: string[] = [];

function bytesUnder(dir: string): number {
  let total = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    total += entry.isDirectory() ? bytesUnder(full) : statSync(full).size;
  }
  return total;
}

/** `npx cdk synth` as a user runs it: the CLI, esbuild bundling, the onnxruntime-node install and pruning. */
async function cdkSynth(architecture: 'arm64' | 'x86_64') {
  const out = mkdtempSync(path.join(tmpdir(), `graft-synth-${architecture}-`));
  outDirs.push(out);
  await run(
    path.join('node_modules', '.bin', 'cdk'),
    ['synth', '--quiet', '--no-notices', '-o', out, '-c', `graft:architecture=${architecture}`],
    // No AWS credentials or region: synth must not need an account.
    {
      env: { ...process.env, AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '', AWS_PROFILE: '' },
      maxBuffer: 64 << 20,
    },
  );
  const template = JSON.parse(readFileSync(path.join(out, 'Graft.template.json'), 'utf8')) as {
    Resources: Record<string, { Type: string; Properties: Record<string, unknown> }>;
  };
  const assets = readdirSync(out)
    .filter((name) => name.startsWith('asset.'))
    .map((name) => path.join(out, name));
  return { template, assets };
}

/** Imports a bundled handler in a fresh Node process with a Lambda-like environment and invokes it once. */
async function invokeBundle(file: string, event: unknown): Promise<unknown> {
  const script = `const { handler } = await import(${JSON.stringify(pathToFileURL(file).href)});
process.stdout.write(JSON.stringify(await handler(${JSON.stringify(event)}, {})));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], {
    cwd: path.dirname(file),
    env: {
      PATH: process.env.PATH,
      AWS_REGION: 'us-east-1',
      AWS_ACCESS_KEY_ID: 'test',
      AWS_SECRET_ACCESS_KEY: 'test',
      [ENV.bucket]: 'graft-bucket',
      [ENV.queueUrl]: 'https://sqs.us-east-1.amazonaws.com/123456789012/graft-jobs',
      [ENV.batchJobQueue]: 'graft-gpu',
      [ENV.batchJobDefinition]: 'graft-trainer',
      [ENV.logLevel]: 'silent',
    },
  });
  return JSON.parse(stdout);
}

afterAll(() => {
  for (const dir of outDirs) rmSync(dir, { recursive: true, force: true });
});

describe('npx cdk synth (real bundling; no Docker engine, no credentials)', () => {
  it.each(['arm64', 'x86_64'] as const)(
    'bundles the API for %s with onnxruntime-node pruned to that platform, under 60 MB unzipped',
    async (architecture) => {
      // when
      const { template, assets } = await cdkSynth(architecture);
      // then
      const counts: Record<string, number> = {};
      for (const resource of Object.values(template.Resources))
        counts[resource.Type] = (counts[resource.Type] ?? 0) + 1;
      console.info(
        `${architecture}: ${Object.keys(template.Resources).length} resources`,
        JSON.stringify(counts),
      );

      const api = assets.find((dir) => existsSync(path.join(dir, 'node_modules', 'onnxruntime-node')));
      expect(api, 'an asset with onnxruntime-node').toBeDefined();
      const apiDir = api as string;
      expect(existsSync(path.join(apiDir, 'index.mjs'))).toBe(true);
      const builds = path.join(apiDir, 'node_modules', 'onnxruntime-node', 'bin', 'napi-v6');
      const arch = architecture === 'arm64' ? 'arm64' : 'x64';
      expect(readdirSync(builds)).toEqual(['linux']);
      expect(readdirSync(path.join(builds, 'linux'))).toEqual([arch]);
      const size = bytesUnder(apiDir);
      const ort = bytesUnder(path.join(apiDir, 'node_modules'));
      console.info(
        `${architecture}: API asset ${(size / 1048576).toFixed(1)} MiB unzipped (node_modules ${(ort / 1048576).toFixed(1)} MiB, bundle ${((size - ort) / 1048576).toFixed(1)} MiB)`,
      );
      expect(size).toBeLessThan(LAMBDA_UNZIPPED_LIMIT);

      // The dispatcher, the dead-letter handler and the Batch events handler never load ONNX Runtime: their
      // assets are the bundle alone.
      const bundleOf = (description: string) => {
        const fn = Object.values(template.Resources).find(
          (r) =>
            r.Type === 'AWS::Lambda::Function' && String(r.Properties.Description).startsWith(description),
        );
        const key = (fn?.Properties.Code as { S3Key?: string } | undefined)?.S3Key ?? '';
        return assets.find((dir) => path.basename(dir) === `asset.${key.replace(/\.zip$/, '')}`) ?? '';
      };
      const sqsHandlers = ['Graft dispatcher', 'Graft dead letters'].map(bundleOf);
      const batchEvents = bundleOf('Graft Batch events');
      for (const dir of [...sqsHandlers, batchEvents]) {
        expect(existsSync(path.join(dir, 'index.mjs')), dir).toBe(true);
        expect(existsSync(path.join(dir, 'node_modules')), dir).toBe(false);
      }
      // The bundles load as Lambda loads them (ESM, onnxruntime-node from the asset's node_modules) and the API
      // answers; only the asset for this machine's CPU can load its native binary here.
      if (arch === process.arch) {
        const health = await invokeBundle(
          path.join(apiDir, 'index.mjs'),
          functionUrlEvent({ method: 'GET', path: '/health' }),
        );
        expect(health).toMatchObject({ statusCode: 200, body: JSON.stringify({ status: 'ok' }) });
        for (const dir of sqsHandlers) {
          const batch = await invokeBundle(path.join(dir, 'index.mjs'), { Records: [] });
          expect(batch, dir).toEqual({ batchItemFailures: [] });
        }
        // An event that is no Batch job failure is logged and ignored, not thrown (no S3 call needed).
        const ignored = await invokeBundle(path.join(batchEvents, 'index.mjs'), { source: 'aws.batch' });
        expect(ignored).toBe('ignored');
      }

      // The trainer image's build context holds only what the Dockerfile copies.
      const context = assets.find((dir) => existsSync(path.join(dir, 'docker', 'trainer.Dockerfile')));
      expect(context && readdirSync(context).sort()).toEqual(
        [
          '.npmrc',
          'cdk',
          'docker',
          'functions',
          'package-lock.json',
          'package.json',
          'src',
          'tsconfig.json',
        ].sort(),
      );
    },
    300_000,
  );
});
