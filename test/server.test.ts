import { readFile, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { startLocalPlatform } from '../src/adapters/local/platform.js';
import { runCli } from '../src/cli/cli.js';
import { loadLocalConfig } from '../src/config.js';
import { silentLogger } from '../src/core/logger.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';
import { client, expectError } from './support/http.js';

const start = (dataDir: string, options: Parameters<typeof startLocalPlatform>[1] = {}) =>
  startLocalPlatform(loadLocalConfig({ PORT: '0', HOST: '127.0.0.1', GRAFT_DATA_DIR: dataDir }), {
    log: silentLogger,
    heartbeatMs: 200,
    ...options,
  });

function captureIo(url: string, dataDir: string) {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out,
    err,
    io: {
      config: { url, apiKey: undefined, dataDir },
      stdout: { write: (text: string) => out.push(text) },
      stderr: { write: (text: string) => err.push(text) },
      pollMs: 50,
    },
  };
}

describe('local platform over a real listening server', () => {
  it('creates an admin key in the data dir, and the CLI drives upload -> job -> predict -> models', async () => {
    // given a fresh platform
    const dataDir = await tempDir();
    let created: string | undefined;
    const platform = await start(dataDir, { onAdminKeyCreated: (key) => (created = key) });
    try {
      const key = (await readFile(path.join(dataDir, 'admin-key'), 'utf8')).trim();
      expect(created).toBe(key);
      expect(platform.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
      const api = client((p, init) => fetch(`${platform.url}${p}`, init), key);
      expect((await api.get('/health')).body).toEqual({ status: 'ok' });
      expect((await client((p, init) => fetch(`${platform.url}${p}`, init)).get('/v1/tasks')).status).toBe(
        401,
      );

      // when the CLI creates a task, uploads a CSV and waits for the job
      const csv = [
        'text,label',
        ...makeTextDataset({ perLabel: 10 }).map((r) => `"${r.text}",${r.label}`),
      ].join('\n');
      const file = path.join(dataDir, 'topics.csv');
      await writeFile(file, csv);
      const cli = captureIo(platform.url, dataDir);
      expect(await runCli(['tasks', 'create', 'topics'], cli.io)).toBe(0);
      expect(await runCli(['upload', 'topics', file, '--wait'], cli.io), cli.err.join('')).toBe(0);
      const output = cli.out.join('');
      expect(output).toMatch(/dataset ds-[0-9a-f]{16}: 30 rows, job job-[a-z0-9-]+ queued/);
      expect(output).toMatch(/\[#{30}\] 100% succeeded/);
      expect(output).toContain('v1: accuracy');

      // then predictions, versions and the model file are there
      cli.out.length = 0;
      expect(await runCli(['predict', 'topics', 'goal for the home team', 'rain and wind'], cli.io)).toBe(0);
      expect(cli.out.join('')).toMatch(/^sports\t[01]\.\d{3}\tgoal for the home team\nweather\t/);
      cli.out.length = 0;
      expect(await runCli(['models', 'list', 'topics'], cli.io)).toBe(0);
      expect(cli.out.join('')).toMatch(/^v1\tserving\tacc \d+\.\d%\tmacro-F1/);
      const onnx = path.join(dataDir, 'v1.onnx');
      expect(await runCli(['models', 'download', 'topics', 'v1', '--out', onnx], cli.io)).toBe(0);
      expect((await readFile(onnx)).byteLength).toBeGreaterThan(1000);

      // and --direct sends a file to a signed URL, which the local server ingests in that request
      cli.out.length = 0;
      const jsonl = path.join(dataDir, 'more topics.jsonl');
      await writeFile(jsonl, toJsonl(makeTextDataset({ perLabel: 12, seed: 5 })));
      expect(await runCli(['upload', 'topics', jsonl, '--direct'], cli.io), cli.err.join('')).toBe(0);
      expect(cli.out.join('')).toMatch(/^dataset ds-[0-9a-f]{16}: 36 rows, job job-[a-z0-9-]+ queued\n$/);

      // and errors come back as a message and exit code 1
      cli.err.length = 0;
      expect(await runCli(['predict', 'nope', 'x'], cli.io)).toBe(1);
      expect(cli.err.join('')).toContain('404 TASK_NOT_FOUND');
    } finally {
      await platform.close();
    }
  });

  it('runs a job that was queued when the server stopped, after a restart', async () => {
    // given a job accepted while no worker runs
    const dataDir = await tempDir();
    const first = await start(dataDir, { worker: false });
    const key = (await readFile(path.join(dataDir, 'admin-key'), 'utf8')).trim();
    const api1 = client((p, init) => fetch(`${first.url}${p}`, init), key);
    await api1.put('/v1/tasks/restart', {});
    const uploaded = await api1.post(
      '/v1/tasks/restart/datasets',
      toJsonl(makeTextDataset()),
      'application/x-ndjson',
    );
    expect(uploaded.status).toBe(201);
    await first.close();

    // when the platform starts again on the same data directory
    const second = await start(dataDir);
    try {
      const api2 = client((p, init) => fetch(`${second.url}${p}`, init), key);
      // then the job runs to completion and the model serves
      const job = await api2.waitForJob(uploaded.body.jobId);
      expect(job).toMatchObject({ status: 'succeeded', modelVersion: 'v1' });
      expect(
        (await api2.post('/v1/tasks/restart/predict', { inputs: ['stock market'] })).body.predictions[0]
          .label,
      ).toBe('finance');
    } finally {
      await second.close();
    }
  });

  it('reads predict bodies from the Node request: chunked, split inside a character, with a BOM, or too large', async () => {
    // given a server with a model
    const dataDir = await tempDir();
    const platform = await start(dataDir);
    try {
      const key = (await readFile(path.join(dataDir, 'admin-key'), 'utf8')).trim();
      const api = client((p, init) => fetch(`${platform.url}${p}`, init), key);
      await api.put('/v1/tasks/body', {});
      const uploaded = await api.post(
        '/v1/tasks/body/datasets',
        toJsonl(makeTextDataset()),
        'application/x-ndjson',
      );
      expect(uploaded.status, JSON.stringify(uploaded.body)).toBe(201);
      expect((await api.waitForJob(uploaded.body.jobId)).status).toBe('succeeded');
      const text = 'météo: pluie et vent';
      const whole = await api.post('/v1/tasks/body/predict', { inputs: [text] });
      expect(whole.status).toBe(200);

      /** POSTs the chunks with Transfer-Encoding: chunked (no Content-Length), one write each. */
      const chunked = (chunks: Buffer[]) =>
        new Promise<{ status: number; body: any }>((resolve, reject) => {
          const req = httpRequest(`${platform.url}/v1/tasks/body/predict`, {
            method: 'POST',
            headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
          });
          req.on('error', reject);
          req.on('response', (res) => {
            const parts: Buffer[] = [];
            res.on('data', (part: Buffer) => parts.push(part));
            res.on('end', () =>
              resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString()) }),
            );
          });
          for (const chunk of chunks) req.write(chunk);
          req.end();
        });
      const bytes = Buffer.from(`\uFEFF${JSON.stringify({ inputs: [text] })}`);
      const inside = bytes.indexOf(Buffer.from('é')) + 1; // between the two bytes of "é"

      // when the body comes in pieces that split a character, after a byte order mark
      const pieces = await chunked([bytes.subarray(0, inside), bytes.subarray(inside)]);
      // then it is the same request
      expect(pieces).toEqual({ status: 200, body: whole.body });

      // and a chunked body over the JSON limit is refused, while the server goes on serving
      const big = Buffer.alloc(256 * 1024, 0x20);
      const tooLarge = await chunked([
        Buffer.from('{"inputs":["'),
        big,
        big,
        big,
        big,
        big,
        Buffer.from('"]}'),
      ]);
      expectError(tooLarge, 413, 'PAYLOAD_TOO_LARGE');
      expect((await api.post('/v1/tasks/body/predict', { inputs: [text] })).body).toEqual(whole.body);
    } finally {
      await platform.close();
    }
  });
});
