import { spawn } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { CliConfig } from '../config.js';

export interface CliIo {
  config: CliConfig;
  stdout: { write(text: string): unknown; isTTY?: boolean };
  stderr: { write(text: string): unknown };
  /** How often `--wait` and `jobs watch` poll the job. */
  pollMs?: number;
  /** Runs a command with the terminal attached and resolves to its exit code (tests replace it). */
  run?: (command: string, args: string[], options: { cwd: string }) => Promise<number>;
}

/** The checkout the CLI belongs to: `graft deploy` runs the CDK app (cdk.json) from here. */
const PROJECT_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

const HELP = `graft — transfer learning as an API

Usage: graft [--url URL] [--key KEY] <command> [arguments]

  health                                  is the server up?
  tasks list | tasks show TASK
  tasks create TASK [--labels a,b] [--strategy auto|logistic] [--no-auto-train] [--promotion gate|always|manual]
  upload TASK FILE [--wait] [--direct]    upload .jsonl/.ndjson/.csv; --wait draws the training job's progress;
                                          --direct sends it to a signed URL (past the API's size limit:
                                          6 MB in AWS)
  train TASK [--wait]                     queue a job on all of the task's datasets
  jobs list [--task TASK] | jobs show ID | jobs watch ID | jobs cancel ID
  predict TASK TEXT [TEXT ...]            label, calibrated score
  embed TEXT [TEXT ...] [--model hash-ngrams]
  models list TASK | models show TASK VERSION | models promote TASK VERSION
  models download TASK VERSION [--out FILE]
  rollback TASK                           serve the previous version again
  keys create --scopes predict[,admin] [--name NAME] | keys list | keys revoke ID
  backbones list | backbones show NAME
  backbones add NAME --hub ORG/REPO [--revision REV] | --dir DIR | --store
                [--kind text|image] [--pooling mean|cls] [--cut-at TENSOR --input JSON]
                                          register a sentence-transformer (text) or a cut CNN (image)
  deploy [-c graft:KEY=VALUE ...] [-- CDK_OPTIONS]
                                          npx cdk deploy into your AWS account (README "Deploy to AWS")

Settings: --url or GRAFT_URL (default http://127.0.0.1:8787); --key or GRAFT_API_KEY, else the admin key that
\`npm start\` keeps in GRAFT_DATA_DIR/admin-key (default ./.graft/admin-key).
`;

class CliError extends Error {}

/** Runs one `graft` command; returns the process exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      url: { type: 'string' },
      key: { type: 'string' },
      labels: { type: 'string' },
      strategy: { type: 'string' },
      promotion: { type: 'string' },
      'no-auto-train': { type: 'boolean' },
      wait: { type: 'boolean' },
      direct: { type: 'boolean' },
      task: { type: 'string' },
      out: { type: 'string', short: 'o' },
      scopes: { type: 'string' },
      name: { type: 'string' },
      model: { type: 'string' },
      json: { type: 'boolean' },
      context: { type: 'string', short: 'c', multiple: true },
      hub: { type: 'string' },
      revision: { type: 'string' },
      dir: { type: 'string' },
      store: { type: 'boolean' },
      kind: { type: 'string' },
      pooling: { type: 'string' },
      'cut-at': { type: 'string' },
      input: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, ...args] = positionals;
  if (!command || values.help || command === 'help') {
    io.stdout.write(HELP);
    return command || values.help ? 0 : 1;
  }
  const client = new Client(values.url ?? io.config.url, values.key ?? io.config.apiKey, io.config.dataDir);
  const print = (value: unknown) =>
    io.stdout.write(`${typeof value === 'string' ? value : JSON.stringify(value, null, 2)}\n`);
  const need = (count: number, usage: string) => {
    if (args.length < count) throw new CliError(`usage: graft ${usage}`);
    return args as [string, ...string[]];
  };
  const watch = (id: string) => watchJob(client, id, io);

  try {
    // `tasks`, `jobs`, `models` and `keys` take a sub-command; the rest are single words.
    const name = ['tasks', 'jobs', 'models', 'keys', 'backbones'].includes(command)
      ? `${command} ${args.shift() ?? ''}`
      : command;
    switch (name.trim()) {
      case 'health':
        print(await client.call('GET', '/health'));
        return 0;
      case 'tasks list': {
        const { tasks } = await client.call<{
          tasks: { name: string; currentModel: { version: string } | null }[];
        }>('GET', '/v1/tasks');
        print(
          tasks.length
            ? tasks.map((t) => `${t.name}\t${t.currentModel?.version ?? '(no model yet)'}`).join('\n')
            : 'no tasks yet',
        );
        return 0;
      }
      case 'tasks show':
        print(await client.call('GET', `/v1/tasks/${need(1, 'tasks show TASK')[0]}`));
        return 0;
      case 'tasks create': {
        const [task] = need(1, 'tasks create TASK [--labels a,b]');
        const body: Record<string, unknown> = {};
        if (values.labels) body.labels = values.labels.split(',').map((l) => l.trim());
        if (values.strategy) body.strategy = values.strategy;
        if (values['no-auto-train']) body.autoTrain = false;
        if (values.promotion) body.promotion = { mode: values.promotion };
        print(await client.call('PUT', `/v1/tasks/${task}`, body));
        return 0;
      }
      case 'upload': {
        const [task, file = ''] = need(2, 'upload TASK FILE [--wait] [--direct]');
        const body = await readFile(file);
        const result = values.direct
          ? await uploadDirect(client, task, file, body, io)
          : await client.call<Uploaded>(
              'POST',
              `/v1/tasks/${task}/datasets`,
              body,
              /\.csv$/i.test(file) ? 'text/csv' : 'application/x-ndjson',
            );
        print(
          `dataset ${result.datasetId}: ${result.rows} rows${result.existing ? ' (already uploaded)' : ''}${result.jobId ? `, job ${result.jobId} queued` : ''}`,
        );
        return values.wait && result.jobId ? watch(result.jobId) : 0;
      }
      case 'train': {
        const [task] = need(1, 'train TASK [--wait]');
        const job = await client.call<{ id: string }>('POST', `/v1/tasks/${task}/jobs`, {});
        print(`job ${job.id} queued`);
        return values.wait ? watch(job.id) : 0;
      }
      case 'jobs list': {
        const query = values.task ? `?task=${encodeURIComponent(values.task)}` : '';
        const { jobs } = await client.call<{ jobs: JobView[] }>('GET', `/v1/jobs${query}`);
        print(
          jobs.length
            ? jobs.map((j) => `${j.id}\t${j.task}\t${j.status}\t${j.modelVersion}`).join('\n')
            : 'no jobs yet',
        );
        return 0;
      }
      case 'jobs show':
        print(await client.call('GET', `/v1/jobs/${need(1, 'jobs show ID')[0]}`));
        return 0;
      case 'jobs watch':
        return watch(need(1, 'jobs watch ID')[0]);
      case 'jobs cancel':
        print(await client.call('POST', `/v1/jobs/${need(1, 'jobs cancel ID')[0]}/cancel`));
        return 0;
      case 'predict': {
        const [task, ...texts] = need(2, 'predict TASK TEXT [TEXT ...]');
        const result = await client.call<{
          model: { version: string };
          predictions: { label: string; score: number }[];
        }>('POST', `/v1/tasks/${task}/predict`, { inputs: texts });
        if (values.json) print(result);
        else
          print(
            result.predictions.map((p, i) => `${p.label}\t${p.score.toFixed(3)}\t${texts[i]}`).join('\n'),
          );
        return 0;
      }
      case 'embed': {
        const texts = need(1, 'embed TEXT [TEXT ...]');
        print(
          await client.call('POST', '/v1/embeddings', { model: values.model ?? 'hash-ngrams', input: texts }),
        );
        return 0;
      }
      case 'models list': {
        const [task] = need(1, 'models list TASK');
        const { models } = await client.call<{ models: ModelRow[] }>('GET', `/v1/tasks/${task}/models`);
        print(
          models.length
            ? models
                .map(
                  (m) =>
                    `${m.version}\t${m.status}\tacc ${pct(m.metrics?.accuracy)}\tmacro-F1 ${pct(m.metrics?.macroF1)}\t${m.promotion.reason}`,
                )
                .join('\n')
            : 'no model versions yet',
        );
        return 0;
      }
      case 'models show': {
        const [task, version] = need(2, 'models show TASK VERSION');
        print(await client.call('GET', `/v1/tasks/${task}/models/${version}`));
        return 0;
      }
      case 'models promote': {
        const [task, version] = need(2, 'models promote TASK VERSION');
        print(await client.call('POST', `/v1/tasks/${task}/models/${version}/promote`));
        return 0;
      }
      case 'models download': {
        const [task, version] = need(2, 'models download TASK VERSION [--out FILE]');
        const bytes = await client.download(`/v1/tasks/${task}/models/${version}/model.onnx`);
        const out = values.out ?? `${task}-${version}.onnx`;
        await writeFile(out, bytes);
        print(`wrote ${out} (${bytes.byteLength} bytes)`);
        return 0;
      }
      case 'deploy': {
        // Everything after `--` goes to cdk as is, e.g. `-- --require-approval never`.
        const cdkArgs = [
          'cdk',
          'deploy',
          ...(values.context ?? []).flatMap((entry) => ['-c', entry]),
          ...args,
        ];
        io.stderr.write(`running: npx ${cdkArgs.join(' ')}\n`);
        return await (io.run ?? runAttached)('npx', cdkArgs, { cwd: PROJECT_ROOT });
      }
      case 'rollback':
        print(await client.call('POST', `/v1/tasks/${need(1, 'rollback TASK')[0]}/rollback`));
        return 0;
      case 'keys create': {
        if (!values.scopes)
          throw new CliError('usage: graft keys create --scopes predict[,admin] [--name NAME]');
        const scopes = values.scopes.split(',').map((s) => s.trim());
        print(await client.call('POST', '/v1/keys', { scopes, name: values.name ?? 'api key' }));
        return 0;
      }
      case 'backbones list': {
        const { backbones } = await client.call<{
          backbones: { name: string; kind: string; dims: number }[];
        }>('GET', '/v1/backbones');
        print(backbones.map((b) => `${b.name}\t${b.kind}\t${b.dims} dims`).join('\n'));
        return 0;
      }
      case 'backbones show':
        print(await client.call('GET', `/v1/backbones/${need(1, 'backbones show NAME')[0]}`));
        return 0;
      case 'backbones add': {
        const [name] = need(1, 'backbones add NAME --hub ORG/REPO | --dir DIR | --store [--kind text|image]');
        const source = values.hub
          ? { hub: values.hub, ...(values.revision ? { revision: values.revision } : {}) }
          : values.dir
            ? { dir: path.resolve(values.dir) }
            : values.store
              ? { store: true }
              : undefined;
        if (!source)
          throw new CliError('backbones add needs one source: --hub ORG/REPO, --dir DIR or --store');
        const kind = values.kind ?? 'text';
        const body: Record<string, unknown> = { kind, source };
        if (values.pooling) body.pooling = values.pooling;
        if (kind === 'image') {
          if (!values['cut-at'] || !values.input) {
            throw new CliError(
              'an image backbone needs --cut-at TENSOR and --input JSON (name, width, height, ...)',
            );
          }
          body.cutAt = values['cut-at'];
          body.input = JSON.parse(values.input);
        }
        print(await client.call('PUT', `/v1/backbones/${name}`, body));
        return 0;
      }
      case 'keys list':
        print(await client.call('GET', '/v1/keys'));
        return 0;
      case 'keys revoke':
        print(await client.call('DELETE', `/v1/keys/${need(1, 'keys revoke ID')[0]}`));
        return 0;
      default:
        throw new CliError(`unknown command "${[command, ...args].join(' ')}"; run graft --help`);
    }
  } catch (err) {
    io.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    return 1;
  }
}

interface JobView {
  id: string;
  task: string;
  status: string;
  stage?: string;
  progress: number;
  modelVersion: string;
  promoted?: boolean;
  metrics?: { accuracy?: number; macroF1?: number };
  error?: { code: string; message: string };
  events: { message: string }[];
}

interface Uploaded {
  datasetId: string;
  rows: number;
  jobId?: string;
  existing?: boolean;
}

/** How long `upload --direct` waits for the platform to ingest a file sent to a signed URL. */
const INGEST_TIMEOUT_MS = 120_000;

/**
 * Sends a file to a signed upload URL (`POST /v1/tasks/{task}/uploads`). The local server ingests it in that
 * request and answers like `POST …/datasets`; S3 answers with nothing, and the platform ingests the file when
 * its upload event arrives, so this polls the task's datasets for it (or for its rejection).
 */
async function uploadDirect(
  client: Client,
  task: string,
  file: string,
  body: Uint8Array,
  io: CliIo,
): Promise<Uploaded> {
  // The drop zone takes [A-Za-z0-9._-] names; the extension says the format.
  const name = path
    .basename(file)
    .replace(/[^A-Za-z0-9._-]/g, '-')
    .slice(-100);
  const ticket = await client.call<{
    method: string;
    url: string;
    key: string;
    headers?: Record<string, string>;
  }>('POST', `/v1/tasks/${task}/uploads`, { file: name });
  let response: Response;
  try {
    response = await fetch(ticket.url, {
      method: ticket.method,
      headers: ticket.headers ?? {},
      body: body as Uint8Array<ArrayBuffer>,
    });
  } catch (err) {
    throw new CliError(
      `cannot reach the upload URL ${new URL(ticket.url).origin}: ${(err as Error).message}`,
    );
  }
  const text = await response.text();
  if (!response.ok) throw new CliError(`${response.status} from the upload URL: ${errorText(text)}`);
  const answer = parseJson(text) as Partial<Uploaded> | undefined;
  if (answer?.datasetId) return answer as Uploaded;
  const source = path.basename(ticket.key);
  const deadline = Date.now() + INGEST_TIMEOUT_MS;
  for (;;) {
    const { datasets, rejected } = await client.call<{
      datasets: { id: string; rows: number; source?: string }[];
      rejected: { file: string; error: { code: string; message: string } }[];
    }>('GET', `/v1/tasks/${task}/datasets`);
    const refused = rejected.find((r) => path.basename(r.file) === source);
    if (refused)
      throw new CliError(`the upload was rejected: ${refused.error.code}: ${refused.error.message}`);
    const dataset = datasets.find((d) => d.source === `incoming/${source}`);
    if (dataset) {
      const { jobs } = await client.call<{ jobs: { id: string; datasets?: string[] }[] }>(
        'GET',
        `/v1/jobs?task=${encodeURIComponent(task)}`,
      );
      const job = jobs.find((j) => j.datasets?.includes(dataset.id));
      return { datasetId: dataset.id, rows: dataset.rows, ...(job ? { jobId: job.id } : {}) };
    }
    if (Date.now() > deadline) {
      throw new CliError(
        `${ticket.key} was uploaded but is not ingested after ${INGEST_TIMEOUT_MS / 1000} s: see \`graft jobs list --task ${task}\` later, or the dispatcher's log.`,
      );
    }
    await new Promise((resolve) => setTimeout(resolve, io.pollMs ?? 500));
  }
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** The `CODE: message` of a Graft error body, or the text itself. */
function errorText(text: string): string {
  const parsed = parseJson(text) as { error?: { code: string; message: string } } | undefined;
  return parsed?.error ? `${parsed.error.code}: ${parsed.error.message}` : text;
}

interface ModelRow {
  version: string;
  status: string;
  metrics?: { accuracy?: number; macroF1?: number };
  promotion: { reason: string };
}

function runAttached(command: string, args: string[], { cwd }: { cwd: string }): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, stdio: 'inherit', shell: process.platform === 'win32' });
    child.on('error', reject);
    child.on('exit', (code, signal) => resolve(code ?? (signal ? 1 : 0)));
  });
}

const pct = (x: number | undefined) => (x === undefined ? '-' : `${(x * 100).toFixed(1)}%`);

/** Polls a job and draws a live progress bar until it ends; exit code 0 only when it succeeded. */
async function watchJob(client: Client, id: string, io: CliIo): Promise<number> {
  const tty = Boolean(io.stdout.isTTY);
  let lastLine = '';
  for (;;) {
    const job = await client.call<JobView>('GET', `/v1/jobs/${id}`);
    const width = 30;
    const filled = Math.round(job.progress * width);
    const detail = job.events.at(-1)?.message ?? '';
    const line = `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.round(job.progress * 100)).padStart(3)}% ${job.status}${job.stage ? `/${job.stage}` : ''}  ${detail}`;
    if (tty) io.stdout.write(`\r\x1b[2K${line.slice(0, 120)}`);
    else if (line !== lastLine) io.stdout.write(`${line}\n`);
    lastLine = line;
    if (['succeeded', 'failed', 'cancelled'].includes(job.status)) {
      if (tty) io.stdout.write('\n');
      if (job.status === 'succeeded') {
        io.stdout.write(
          `${job.modelVersion}: accuracy ${pct(job.metrics?.accuracy)}, macro-F1 ${pct(job.metrics?.macroF1)} — ${job.promoted ? 'now serving' : 'not promoted'}\n`,
        );
        return 0;
      }
      io.stderr.write(`job ${job.status}${job.error ? `: ${job.error.code}: ${job.error.message}` : ''}\n`);
      return 1;
    }
    await new Promise((resolve) => setTimeout(resolve, io.pollMs ?? 500));
  }
}

class Client {
  private key: Promise<string | undefined>;

  constructor(
    private readonly url: string,
    key: string | undefined,
    dataDir: string,
  ) {
    this.key = key
      ? Promise.resolve(key)
      : readFile(path.join(dataDir, 'admin-key'), 'utf8').then(
          (text) => text.trim(),
          () => undefined,
        );
  }

  async call<T = unknown>(
    method: string,
    route: string,
    body?: unknown,
    contentType = 'application/json',
  ): Promise<T> {
    const response = await this.send(method, route, body, contentType);
    return (await response.json()) as T;
  }

  async download(route: string): Promise<Uint8Array> {
    return new Uint8Array(await (await this.send('GET', route)).arrayBuffer());
  }

  private async send(method: string, route: string, body?: unknown, contentType = 'application/json') {
    const headers: Record<string, string> = {};
    const key = await this.key;
    if (key) headers.authorization = `Bearer ${key}`;
    let payload: string | Uint8Array<ArrayBuffer> | undefined;
    if (body instanceof Uint8Array) payload = body as Uint8Array<ArrayBuffer>;
    else if (body !== undefined) payload = JSON.stringify(body);
    if (payload !== undefined) headers['content-type'] = contentType;
    let response: Response;
    try {
      response = await fetch(new URL(route, this.url), { method, headers, body: payload });
    } catch (err) {
      throw new CliError(
        `cannot reach Graft at ${this.url} (${(err as Error).message}); is \`npm start\` running?`,
      );
    }
    if (!response.ok) {
      const message = errorText(await response.text());
      const hint =
        response.status === 413 && route.endsWith('/datasets')
          ? ' (graft upload --direct takes bigger files)'
          : '';
      throw new CliError(`${response.status} ${message}${hint}`);
    }
    return response;
  }
}
