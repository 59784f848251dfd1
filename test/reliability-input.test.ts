import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type LocalPlatform, startLocalPlatform } from '../src/adapters/local/platform.js';
import { openApiDocument } from '../src/api/openapi.js';
import { loadLocalConfig } from '../src/config.js';
import { formatFromContentType, parseDataset, validateForTraining } from '../src/core/dataset-parse.js';
import { silentLogger } from '../src/core/logger.js';
import { GraftError, STATUS_BY_CODE } from '../src/errors.js';
import { checkName, NAME_PATTERN } from '../src/names.js';
import { makeTextDataset, tempDir, toJsonl } from './support/fixtures.js';
import {
  ADMIN_KEY,
  createTestApp,
  fillPath,
  type Route,
  routesOf,
  type TestApp,
  within,
} from './support/harness.js';
import { client } from './support/http.js';
import { rawRequest, rawSocket } from './support/raw-http.js';

const MAX_UPLOAD_BYTES = 8 * 1024 * 1024;
const AUTH = { authorization: `Bearer ${ADMIN_KEY}` };

/** An answer the contract allows for a bad request: a 4xx whose code maps to that very status. */
function expectClientError(answer: { status: number; body: any }, what: string) {
  const shown = `${what} -> ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`;
  expect(answer.status, shown).toBeGreaterThanOrEqual(400);
  expect(answer.status, shown).toBeLessThan(500);
  const code = answer.body?.error?.code as keyof typeof STATUS_BY_CODE;
  expect(STATUS_BY_CODE[code], shown).toBe(answer.status);
  expect(typeof answer.body.error.message, shown).toBe('string');
}

/** Any answer but a 5xx; an error always with a code that maps to its status. */
function expectNoServerError(answer: { status: number; body: any }, what: string) {
  const shown = `${what} -> ${answer.status} ${JSON.stringify(answer.body).slice(0, 300)}`;
  expect(answer.status, shown).toBeLessThan(500);
  if (answer.status >= 400) {
    const code = answer.body?.error?.code as keyof typeof STATUS_BY_CODE;
    expect(STATUS_BY_CODE[code], shown).toBe(answer.status);
  }
}

const HOSTILE_NAMES = [
  '..',
  '.',
  '%2e%2e',
  '..%2F..%2Fetc%2Fpasswd',
  '%2F',
  '....%2F%2F',
  '..%5C..%5Cwindows',
  '%00',
  'a%00b',
  '%252e%252e',
  '%EF%BC%8E%EF%BC%8E', // fullwidth full stops
  'con',
  '-leading-dash',
  'UPPER',
  'a'.repeat(64),
  'x'.repeat(5000),
  '%E2%80%AEevil', // right-to-left override
  'ta%CC%80sk', // combining grave accent
  '%F0%9F%98%80', // emoji
  '%ED%A0%80', // a lone surrogate, as UTF-8
  '.lock-current',
  '.tmp-x',
  'ds-..',
  'v1%2F..%2F..%2Fcurrent.json',
  'job-..%2F..%2Ftasks',
];

describe('bad input against a real listening server', () => {
  let platform: LocalPlatform;
  let url: string;
  let before: { keys: Record<string, string>; predictions: unknown };
  const send = (request: Parameters<typeof rawRequest>[1]) =>
    rawRequest(url, { ...request, headers: { ...AUTH, ...request.headers } });
  const upload = (body: string | Uint8Array, type = 'application/x-ndjson', task = 'corpus') =>
    send({ method: 'POST', path: `/v1/tasks/${task}/datasets`, headers: { 'content-type': type }, body });
  const json = (method: string, path: string, body: string) =>
    send({ method, path, headers: { 'content-type': 'application/json' }, body });

  async function keepSnapshot() {
    const keys = await platform.deps.store.list('tasks/keep/');
    const etags = Object.fromEntries(
      await Promise.all(keys.map(async (k) => [k, (await platform.deps.store.get(k)).etag] as const)),
    );
    const predictions = (
      await json('POST', '/v1/tasks/keep/predict', JSON.stringify({ inputs: ['storm and rain', 'goal'] }))
    ).body;
    return { keys: etags, predictions };
  }

  beforeAll(async () => {
    // given a server with a trained task whose data must survive everything below
    const dataDir = await tempDir('graft-input-');
    platform = await startLocalPlatform(
      loadLocalConfig({
        PORT: '0',
        HOST: '127.0.0.1',
        GRAFT_DATA_DIR: dataDir,
        GRAFT_API_KEY: ADMIN_KEY,
        GRAFT_MAX_UPLOAD_BYTES: String(MAX_UPLOAD_BYTES),
      }),
      { log: silentLogger, heartbeatMs: 200 },
    );
    url = platform.url;
    const api = client((p, init) => fetch(`${url}${p}`, init), ADMIN_KEY);
    await api.put('/v1/tasks/keep', { strategy: 'logistic' });
    const uploaded = await api.post(
      '/v1/tasks/keep/datasets',
      toJsonl(makeTextDataset()),
      'application/x-ndjson',
    );
    expect((await api.waitForJob(uploaded.body.jobId)).status).toBe('succeeded');
    await api.put('/v1/tasks/corpus', { autoTrain: false });
    before = await keepSnapshot();
  });

  afterAll(async () => {
    await platform?.close();
  });

  const line = (fields: Record<string, unknown>) => `${JSON.stringify(fields)}\n`;
  const good = toJsonl(makeTextDataset());
  const utf8 = (s: string) => Buffer.from(s, 'utf8');
  const bytes = (...parts: (string | number[])[]) =>
    Buffer.concat(parts.map((p) => (typeof p === 'string' ? utf8(p) : Buffer.from(p))));

  const uploads: [string, string | Uint8Array, string?][] = [
    // broken JSONL
    ['unterminated object', `${good}{"text": "a", "label": "b"`],
    ['an array line', `${good}[1, 2]\n`],
    ['a bare string line', '"just a string"\n'],
    ['text is a number', line({ text: 5, label: 'x' })],
    ['no text field', line({ label: 'x' })],
    ['trailing garbage', `${good}{"text":"a","label":"b"} xyz\n`],
    ['NUL bytes', bytes('{"text":"a', [0], '","label":"b"}\n')],
    ['label is an object', line({ text: 'a', label: { nested: true } })],
    ['label is NaN-ish', '{"text":"a","label":NaN}\n'],
    ['only blank lines', '\n\n   \n\t\n'],
    ['empty body', ''],
    // broken CSV
    ['CSV unclosed quote', 'text,label\n"hello,a\n', 'text/csv'],
    ['CSV ragged row', 'text,label\nhello,a,extra\n', 'text/csv'],
    ['CSV no header', 'hello,world\nfoo,bar\n', 'text/csv'],
    ['CSV header only', 'text,label\n', 'text/csv'],
    ['CSV duplicate column', 'text,text,label\na,b,c\n', 'text/csv'],
    ['CSV quote inside field', 'text,label\nhel"lo,a\n', 'text/csv'],
    ['CSV of one column', `text\n${'hello\n'.repeat(50)}`, 'text/csv'],
    // invalid UTF-8
    ['invalid UTF-8 0xFF', bytes('{"text":"', [0xff, 0xfe], '","label":"a"}\n')],
    ['overlong encoding', bytes('{"text":"', [0xc0, 0xaf], '","label":"a"}\n')],
    ['truncated sequence at the end', bytes(good, [0xe2, 0x82])],
    ['CESU-8 surrogate', bytes('{"text":"', [0xed, 0xa0, 0x80], '","label":"a"}\n')],
    // BOMs
    ['UTF-8 BOM before too few rows', bytes([0xef, 0xbb, 0xbf], line({ text: 'a', label: 'b' }))],
    ['UTF-8 BOM in the middle', bytes(good, [0xef, 0xbb, 0xbf], line({ text: 'a', label: 'b' }))],
    ['UTF-16LE with BOM', Buffer.concat([Buffer.from([0xff, 0xfe]), Buffer.from(good, 'utf16le')])],
    ['UTF-16BE with BOM', Buffer.concat([Buffer.from([0xfe, 0xff]), Buffer.from(good, 'utf16le').swap16()])],
    ['CSV with a BOM and a bad row', bytes([0xef, 0xbb, 0xbf], 'text,label\n"a,b\n'), 'text/csv'],
    // 1 MB lines
    ['a 1 MB text', line({ text: 'word '.repeat(210_000), label: 'a' })],
    ['a 1 MB label', line({ text: 'a', label: 'l'.repeat(1_048_576) })],
    ['a 1 MB line of garbage', `${'{'.repeat(1_048_576)}\n`],
    ['a 1 MB CSV field', `text,label\n"${'x'.repeat(1_048_576)}",a\n`, 'text/csv'],
    ['a 1 MB line without a newline', 'x'.repeat(1_048_576)],
    // 100k distinct labels, one example each
    [
      '100k distinct labels',
      Array.from({ length: 100_000 }, (_, i) => line({ text: `text ${i}`, label: `l${i}` })).join(''),
    ],
    // deeply nested JSON
    ['deeply nested label', `{"text":"a","label":${'['.repeat(100_000)}${']'.repeat(100_000)}}\n`],
    ['deeply nested line', `${'{"a":'.repeat(50_000)}1${'}'.repeat(50_000)}\n`],
    // unicode edge cases, still too small to train
    ['unicode texts, one label', line({ text: '\u202e\u0000 e\u0301 🏳️‍🌈 \ud800', label: 'ok' }).repeat(3)],
    ['label of only spaces and a lone surrogate', line({ text: 'a', label: '  \udfff  ' }).repeat(6)],
  ];

  for (const [name, body, type] of uploads) {
    it(`refuses an upload: ${name}`, async () => {
      const answer = await upload(body, type);
      expectClientError(answer, name);
      // small answers, whatever the input: no echo of a 1 MB line or of 100k labels
      expect(answer.bytes, name).toBeLessThan(64 * 1024);
    });
  }

  it('fails a job with too many labels to train, with a reason, instead of running out of memory', async () => {
    // given 2,000 labels of 5 examples each: a valid dataset, but a 65,536 x 2,000 head is 500 MiB of weights
    const api = client((p, init) => fetch(`${url}${p}`, init), ADMIN_KEY);
    await api.put('/v1/tasks/many-labels', { strategy: 'logistic' });
    const rows = Array.from({ length: 10_000 }, (_, i) => ({
      text: `example ${i} of ${i % 2000}`,
      label: `l${i % 2000}`,
    }));
    const uploaded = await upload(toJsonl(rows), 'application/x-ndjson', 'many-labels');
    expect(uploaded.status, JSON.stringify(uploaded.body).slice(0, 200)).toBe(201);

    // when / then
    const job = await api.waitForJob(uploaded.body.jobId, 30_000);
    expect(job).toMatchObject({ status: 'failed', error: { code: 'INVALID_DATASET' } });
    expect(job.error.message).toContain('2000 labels are too many');
  });

  it('refuses wrong content types on every route that takes a body', async () => {
    const types = [
      undefined,
      'text/plain',
      'application/x-www-form-urlencoded',
      'multipart/form-data; boundary=x',
      'application/xml',
      'application/jsonp',
      `text/plain; ${'p=x;'.repeat(1000)}`.slice(0, 4000),
    ];
    for (const type of types) {
      const headers: Record<string, string> = type ? { 'content-type': type } : {};
      for (const [method, path] of [
        ['POST', '/v1/tasks/keep/predict'],
        ['POST', '/v1/embeddings'],
        ['POST', '/v1/keys'],
        ['POST', '/v1/tasks/corpus/jobs'],
      ] as const) {
        expectClientError(
          await send({ method, path, headers, body: '{"inputs":["x"]}' }),
          `${method} ${path} as ${type}`,
        );
      }
      if (type !== undefined) expectClientError(await upload(good, type), `upload as ${type}`);
    }
    expectClientError(await upload(good, 'application/json'), 'upload as application/json');
  });

  it('refuses bodies over the limit, with and without a Content-Length', async () => {
    const big = `{"inputs":["${'x'.repeat(1_100_000)}"]}`;
    expectClientError(await json('POST', '/v1/tasks/keep/predict', big), 'predict over 1 MB');
    expectClientError(await upload('x'.repeat(MAX_UPLOAD_BYTES + 1)), 'upload over the limit');
    async function* chunks() {
      for (let i = 0; i < 10; i++) yield Buffer.alloc(1024 * 1024, 0x61);
    }
    const chunked = await send({
      method: 'POST',
      path: '/v1/tasks/corpus/datasets',
      headers: { 'content-type': 'application/x-ndjson', 'transfer-encoding': 'chunked' },
      body: chunks(),
    }).catch((err: Error) => ({ status: 0, body: { error: { code: err.message } }, headers: {}, bytes: 0 }));
    // the server may close the connection as soon as it has said 413
    if (chunked.status !== 0) expectClientError(chunked, 'chunked upload over the limit');
  });

  it('refuses path traversal and odd names in every parameter of every route', async () => {
    // every documented route (a test in api.test.ts holds the document to the app), each parameter in turn
    const valid: Record<string, string> = {
      task: 'keep',
      version: 'v1',
      name: 'hash-ngrams',
      id: 'x',
      token: 'x',
    };
    const templates = Object.entries(openApiDocument.paths).flatMap(([pattern, item]) =>
      Object.keys(item)
        .filter((method) => method !== 'parameters')
        .flatMap((method) =>
          [...pattern.matchAll(/\{(\w+)\}/g)].map(([, param = '']) => ({
            method: method.toUpperCase(),
            pattern,
            param,
          })),
        ),
    );
    templates.push({ method: 'GET', pattern: '/v1/jobs?task={task}', param: 'task' });
    expect(templates.length).toBeGreaterThan(15);
    for (const { method, pattern, param } of templates) {
      for (const name of [...HOSTILE_NAMES, '../../../etc/passwd', '..\\..\\x', './.']) {
        const path = pattern.replace(/\{(\w+)\}/g, (_, p: string) =>
          p === param ? name : (valid[p] ?? 'x'),
        );
        const answer = await send({
          method,
          path,
          headers: { 'content-type': 'application/json' },
          body: method === 'GET' ? undefined : '{}',
        });
        const what = `${method} ${pattern} with ${param} = ${name.slice(0, 40)}`;
        // a hostile-looking name that is a valid name after all ("con") may succeed, like any other; bytes that
        // cannot be in a request target (a backslash) are refused by Node's HTTP parser before the app sees them
        if (NAME_PATTERN.test(name)) expectNoServerError(answer, what);
        else if (/[\\\s]/.test(name)) expect(answer.status, what).toBe(400);
        else expectClientError(answer, what);
      }
    }
    // nothing was written outside the layout
    const keys = await platform.deps.store.list('');
    for (const key of keys) expect(key).toMatch(/^(tasks|jobs|auth|backbones|cache)\/[a-z0-9][a-z0-9./_-]*$/);
  });

  it('refuses NaN, infinities and huge numbers in options', async () => {
    const numbers = [
      'NaN',
      'Infinity',
      '-Infinity',
      '1e309',
      '-1e309',
      '1e308',
      '-1',
      '0',
      '2e53',
      '0.5',
      '-0',
    ];
    for (const n of numbers) {
      const bodies: [string, string, string][] = [
        ['POST', '/v1/tasks/corpus/jobs', `{"hyperparameters":{"learningRate":${n}}}`],
        ['POST', '/v1/tasks/corpus/jobs', `{"hyperparameters":{"maxEpochs":${n},"batchSize":${n}}}`],
        ['POST', '/v1/tasks/corpus/jobs', `{"hyperparameters":{"seed":${n}}}`],
        ['PUT', '/v1/tasks/corpus', `{"promotion":{"maxMacroF1Drop":${n},"maxClassF1Drop":${n}}}`],
        ['POST', '/v1/embeddings', `{"model":"hash-ngrams","input":"x","dimensions":${n}}`],
        ['POST', '/v1/tasks/keep/predict', `{"inputs":[${n}]}`],
      ];
      for (const [method, path, body] of bodies) {
        const answer = await json(method, path, body);
        // some of these numbers are valid options somewhere (0.5 as a drop), and then the request succeeds
        // or fails for another reason (no dataset yet): never a 5xx
        expectNoServerError(answer, `${method} ${path} ${body}`);
      }
    }
  });

  it('refuses deeply nested JSON on every JSON route', async () => {
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    const deepObject = `{"inputs":${'{"a":'.repeat(20_000)}1${'}'.repeat(20_000)}}`;
    for (const [method, path] of [
      ['PUT', '/v1/tasks/corpus'],
      ['POST', '/v1/tasks/corpus/jobs'],
      ['POST', '/v1/tasks/keep/predict'],
      ['POST', '/v1/embeddings'],
      ['POST', '/v1/keys'],
      ['POST', '/v1/tasks/corpus/uploads'],
    ] as const) {
      expectClientError(await json(method, path, deep), `${method} ${path} deep array`);
      expectClientError(await json(method, path, deepObject), `${method} ${path} deep object`);
    }
  });

  it('answers unicode edge cases in predictions without a server error', async () => {
    const texts = [
      '\ud800',
      '\udfff lone',
      '\u0000',
      'e\u0301'.repeat(5000),
      '🏳️‍🌈'.repeat(1000),
      '\u202egnirts',
      '',
    ];
    const answer = await json('POST', '/v1/tasks/keep/predict', JSON.stringify({ inputs: texts }));
    expect(answer.status, JSON.stringify(answer.body).slice(0, 300)).toBe(200);
    expect(answer.body.predictions).toHaveLength(texts.length);
  });

  it('answers malformed HTTP with a 400 and keeps serving', async () => {
    const lines = [
      'GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n',
      'GET /health HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello',
      'POST /v1/embeddings HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
      'GARBAGE\r\n\r\n',
      `GET /${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
    ];
    for (const raw of lines) {
      const status = await rawSocket(url, raw);
      expect(status, raw.slice(0, 60)).toMatch(/^HTTP\/1\.1 4\d\d/);
    }
  });

  it('stays up, and the earlier task, its data and its predictions are intact', async () => {
    expect((await rawRequest(url, { path: '/health' })).body).toEqual({ status: 'ok' });
    expect(await keepSnapshot()).toEqual(before);
    // nothing of the corpus was stored
    expect((await send({ path: '/v1/tasks/corpus/datasets' })).body.datasets).toEqual([]);
  });
});

describe('property-based fuzzing', () => {
  const loneSurrogate = fc.integer({ min: 0xd800, max: 0xdfff }).map((c) => String.fromCharCode(c));
  const text = fc.oneof(
    fc.string({ maxLength: 40 }),
    fc.string({ unit: 'binary', maxLength: 40 }),
    fc.array(fc.oneof(fc.string({ maxLength: 3 }), loneSurrogate), { maxLength: 10 }).map((p) => p.join('')),
  );
  const jsonlLine = fc.oneof(
    fc.json({ maxDepth: 3 }),
    fc
      .record({ text: fc.oneof(text, fc.integer(), fc.constant(null)), label: fc.oneof(text, fc.double()) })
      .map((r) => JSON.stringify(r)),
    text,
  );
  const datasetBody = fc.oneof(
    fc.uint8Array({ maxLength: 512 }),
    fc.array(jsonlLine, { maxLength: 30 }).map((lines) => Buffer.from(lines.join('\n'))),
    fc
      .array(fc.array(text, { minLength: 1, maxLength: 4 }), { maxLength: 30 })
      .map((rows) => Buffer.from(['text,label', ...rows.map((r) => r.join(','))].join('\r\n'))),
  );

  /** Only GraftErrors with a 4xx code may escape a parser. */
  const expectParserError = (err: unknown) => {
    expect(err).toBeInstanceOf(GraftError);
    const status = (err as GraftError).status;
    expect(status).toBeGreaterThanOrEqual(400);
    expect(status).toBeLessThan(500);
  };

  it('the dataset parsers return rows or a 4xx GraftError, for any bytes', () => {
    fc.assert(
      fc.property(
        datasetBody,
        fc.constantFrom('jsonl', 'csv') as fc.Arbitrary<'jsonl' | 'csv'>,
        (body, format) => {
          try {
            const rows = parseDataset(body, format);
            for (const row of rows) expect(typeof (row.text ?? row.image)).toBe('string');
            validateForTraining(rows);
          } catch (err) {
            expectParserError(err);
          }
        },
      ),
      { numRuns: 600 },
    );
  });

  it('content types and names are checked without surprises', () => {
    fc.assert(
      fc.property(fc.oneof(text, fc.constant(undefined)), (value) => {
        try {
          expect(['jsonl', 'csv']).toContain(formatFromContentType(value));
        } catch (err) {
          expectParserError(err);
        }
        try {
          expect(checkName(value ?? '')).toMatch(/^[a-z0-9][a-z0-9-]{0,62}$/);
        } catch (err) {
          expectParserError(err);
        }
      }),
      { numRuns: 500 },
    );
  });

  describe('every route, in-process', () => {
    let ctx: TestApp;
    let routes: Route[];
    let jobId: string;

    beforeAll(async () => {
      ctx = await createTestApp();
      await ctx.api.put('/v1/tasks/alpha', { autoTrain: false });
      await ctx.api.post('/v1/tasks/alpha/datasets', toJsonl(makeTextDataset()), 'application/x-ndjson');
      jobId = (await ctx.api.post('/v1/tasks/alpha/jobs', {})).body.id;
      routes = routesOf(ctx.app);
    });

    it('answers any request with a success or a 4xx with a code, never a 5xx, never a hang', async () => {
      const name = fc.oneof(
        fc.constantFrom('alpha', 'v1', 'hash-ngrams', 'zz-unknown', ...HOSTILE_NAMES.map(decodeSafe)),
        text,
      );
      const body = fc.oneof(
        fc.constant(undefined),
        fc.json({ maxDepth: 4 }),
        text,
        fc
          .record({ inputs: fc.array(fc.oneof(text, fc.json({ maxDepth: 2 })), { maxLength: 5 }) })
          .map((b) => JSON.stringify(b)),
        fc
          .record({
            model: fc.oneof(text, fc.constant('hash-ngrams')),
            input: fc.oneof(text, fc.array(text)),
          })
          .map((b) => JSON.stringify(b)),
        fc
          .record(
            {
              labels: fc.array(text, { maxLength: 4 }),
              strategy: text,
              hyperparameters: fc.dictionary(text, fc.oneof(fc.double(), fc.integer(), text), { maxKeys: 3 }),
              scopes: fc.array(fc.constantFrom('admin', 'predict', 'root', ''), { maxLength: 3 }),
            },
            { requiredKeys: [] },
          )
          .map((b) => JSON.stringify(b)),
        datasetBody,
      );
      const type = fc.oneof(
        fc.constantFrom(
          'application/json',
          'application/x-ndjson',
          'text/csv',
          'text/plain',
          'application/octet-stream',
        ),
        text,
        fc.constant(undefined),
      );
      await fc.assert(
        fc.asyncProperty(
          fc.constantFrom(...routes),
          name,
          name,
          body,
          type,
          async (route, a, b, payload, contentType) => {
            const id = route.path.includes('jobs') ? jobId : a;
            const path = fillPath(route.path, { task: a, version: b, id, name: a, token: b });
            const headers: Record<string, string> = { authorization: `Bearer ${ADMIN_KEY}` };
            if (contentType && /^[\t\x20-\x7e]*$/.test(contentType)) headers['content-type'] = contentType;
            const init: RequestInit = { method: route.method, headers };
            if (payload !== undefined && !['GET', 'HEAD'].includes(route.method))
              init.body = payload as string | Uint8Array<ArrayBuffer>;
            const response = await within(
              10_000,
              `${route.method} ${path}`,
              Promise.resolve(ctx.app.request(path, init)),
            );
            const raw = await response.text();
            let parsed: any = raw;
            try {
              parsed = JSON.parse(raw);
            } catch {}
            expectNoServerError(
              { status: response.status, body: parsed },
              `${route.method} ${path.slice(0, 120)}`,
            );
          },
        ),
        { numRuns: 400 },
      );
    });
  });
});

function decodeSafe(name: string): string {
  try {
    return decodeURIComponent(name);
  } catch {
    return name;
  }
}
